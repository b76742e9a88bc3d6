//! RFC 7339 SIP overload control, server side: a client that puts `oc` on its Via is
//! told, on the same Via in our responses, what share of its new requests to drop
//! (the mandatory "loss" algorithm), for how long, and in which order the feedback
//! was issued.

/// Whether a Via's overload-control parameters ask for feedback we can give: `oc`
/// present and, if `oc-algo` is present, a well-formed list that includes `loss`.
pub(crate) fn wants_loss_feedback(oc: Option<&[u8]>, oc_algo: Option<&[u8]>) -> bool {
    if oc.is_none() {
        return false;
    }
    match oc_algo {
        None => true,
        Some(v) => algorithms(v).is_some_and(|mut a| a.any(|x| x.eq_ignore_ascii_case(b"loss"))),
    }
}

/// The algorithms in an `oc-algo` value (`"loss,A"`), or `None` if it is not
/// DQUOTE algo *(COMMA algo) DQUOTE with algo = "loss" / 1*ALPHANUM.
pub(crate) fn algorithms(v: &[u8]) -> Option<impl Iterator<Item = &[u8]>> {
    let inner = v.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let valid = inner
        .split(|&c| c == b',')
        .all(|a| !a.is_empty() && a.iter().all(u8::is_ascii_alphanumeric));
    valid.then(|| inner.split(|&c| c == b','))
}

/// Appends `;oc=<loss>;oc-algo="loss";oc-validity=<ms>;oc-seq=<s>.<ms>`.
pub(crate) fn write_params(out: &mut Vec<u8>, loss_percent: u8, validity_ms: u32, seq_ms: u64) {
    out.extend_from_slice(b";oc=");
    crate::wire::write_decimal(out, loss_percent.min(100) as u32);
    out.extend_from_slice(b";oc-algo=\"loss\";oc-validity=");
    crate::wire::write_decimal(out, validity_ms);
    out.extend_from_slice(b";oc-seq=");
    // 1*12DIGIT "." 1*5DIGIT: seconds (wrapping at 12 digits) and milliseconds.
    let secs = (seq_ms / 1000) % 1_000_000_000_000;
    out.extend_from_slice(crate::engine::SmallText::new(secs).as_bytes());
    out.push(b'.');
    let ms = (seq_ms % 1000) as u32;
    out.extend_from_slice(&[
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_is_given_only_to_clients_that_can_use_it() {
        assert!(wants_loss_feedback(Some(b""), None));
        assert!(wants_loss_feedback(Some(b""), Some(b"\"loss,A\"")));
        assert!(wants_loss_feedback(Some(b"20"), Some(b"\"LOSS\"")));
        assert!(!wants_loss_feedback(None, Some(b"\"loss\"")));
        assert!(!wants_loss_feedback(Some(b""), Some(b"\"rate\"")));
        assert!(
            !wants_loss_feedback(Some(b""), Some(b"loss")),
            "must be quoted"
        );
        assert!(!wants_loss_feedback(Some(b""), Some(b"\"loss,,A\"")));
        assert!(!wants_loss_feedback(Some(b""), Some(b"\"lo-ss\"")));
    }

    #[test]
    fn parameters_follow_the_rfc_grammar() {
        let mut out = Vec::new();
        write_params(&mut out, 37, 1000, 12_345);
        assert_eq!(
            out,
            b";oc=37;oc-algo=\"loss\";oc-validity=1000;oc-seq=12.345"
        );
        let mut out = Vec::new();
        write_params(&mut out, 250, 500, 7);
        assert_eq!(
            out,
            b";oc=100;oc-algo=\"loss\";oc-validity=500;oc-seq=0.007"
        );
    }
}
