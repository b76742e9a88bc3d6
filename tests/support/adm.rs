//! Admission test helpers: new calls from any source (each with its own caller number,
//! so re-attempt detection never merges them), the caller's and callee's in-dialog
//! requests, and readers for what admission answered.

use super::sip::Req;
use super::{CARRIER, Sent, statuses};

/// The number the admission tests dial.
pub const DIALLED: &str = "+18005550199";

/// New call `n` from the carrier at `via` (`host:port`, also where it sends from).
/// Branch, Call-ID, caller number and From tag are all unique to `n`.
pub fn call_via(via: &str, n: u32) -> Req {
    Req::invite(DIALLED, &format!("adm{n}")).with(|r| {
        r.via = vec![format!("SIP/2.0/UDP {via};branch=z9hG4bKadm{n}")];
        r.from = format!("<sip:+1415{n:07}@carrier.example>;tag=f{n}");
    })
}

/// New call `n` from the default carrier.
pub fn call(n: u32) -> Req {
    call_via(CARRIER, n)
}

/// New call `n` from the default carrier to `dialled`.
pub fn call_to(dialled: &str, n: u32) -> Req {
    let mut r = call(n);
    r.uri = format!("sip:{dialled}@192.0.2.10");
    r.to = format!("<sip:{dialled}@192.0.2.10>");
    r
}

/// `req` with `params` (e.g. `;oc;oc-algo="loss"`) appended to its top Via.
pub fn with_via_params(mut req: Req, params: &str) -> Req {
    req.via[0].push_str(params);
    req
}

/// A caller's in-dialog request `method` for call `inv` answered with To tag `tag`.
pub fn caller_request(inv: &Req, method: &str, tag: &str, cseq: u32, branch: &str) -> Req {
    let via = inv.via[0].split(";branch=").next().expect("via").to_owned();
    Req {
        method: method.into(),
        uri: "sip:callee@192.0.2.20:5080".into(),
        via: vec![format!("{via};branch=z9hG4bK{branch}")],
        to: format!("{};tag={tag}", inv.to),
        cseq,
        cseq_method: None,
        extra: Vec::new(),
        body: String::new(),
        ..inv.clone()
    }
}

/// The caller's ACK for the 2xx that answered `inv` with To tag `tag`.
pub fn caller_ack(inv: &Req, tag: &str) -> Req {
    let b = inv.via[0].rsplit("branch=z9hG4bK").next().unwrap_or("x");
    caller_request(inv, "ACK", tag, inv.cseq, &format!("{b}-ack"))
}

/// The caller's BYE for call `inv` answered with To tag `tag`.
pub fn caller_bye(inv: &Req, tag: &str) -> Req {
    let b = inv.via[0].rsplit("branch=z9hG4bK").next().unwrap_or("x");
    caller_request(inv, "BYE", tag, inv.cseq + 1, &format!("{b}-bye"))
}

/// The callee's BYE (sent from `fwd.to`) for the call whose forwarded INVITE is `fwd`,
/// answered with To tag `tag`.
pub fn callee_bye(fwd: &Sent, tag: &str) -> Vec<u8> {
    let to = fwd.header("To").expect("To");
    let from = fwd.header("From").expect("From");
    let call_id = fwd.header("Call-ID").expect("Call-ID");
    let b: u64 = call_id.bytes().map(u64::from).sum();
    Req {
        method: "BYE".into(),
        uri: "sip:caller@192.0.2.1:5060".into(),
        via: vec![format!("SIP/2.0/UDP {};branch=z9hG4bKcbye{b}{tag}", fwd.to)],
        from: format!("{to};tag={tag}"),
        to: from,
        call_id,
        cseq: 1,
        cseq_method: None,
        max_forwards: Some(70),
        extra: Vec::new(),
        body: String::new(),
    }
    .bytes()
}

/// Whether the engine admitted the new call it was just sent: a 100 Trying went back.
pub fn is_admitted(out: &[Sent]) -> bool {
    statuses(out).contains(&100)
}

/// The refusal in `out` (a final response and no 100 Trying), if it is one.
pub fn refusal(out: &[Sent]) -> Option<&Sent> {
    if is_admitted(out) {
        return None;
    }
    out.iter().find(|s| s.status().is_some_and(|st| st >= 300))
}

/// The first response with `status` in `out`.
pub fn response(out: &[Sent], status: u16) -> Option<&Sent> {
    out.iter().find(|s| s.status() == Some(status))
}

/// The Retry-After seconds of a response.
pub fn retry_after(s: &Sent) -> Option<u32> {
    s.header("Retry-After")
        .map(|v| v.trim().parse().expect("Retry-After seconds"))
}

/// RFC 7339 parameters on a response's top Via: (`oc`, `oc-algo`, `oc-validity`,
/// `oc-seq`), each as text.
#[derive(Clone, Debug, PartialEq)]
pub struct OcParams {
    pub oc: Option<String>,
    pub algo: Option<String>,
    pub validity: Option<String>,
    pub seq: Option<String>,
}

pub fn oc_params(s: &Sent) -> OcParams {
    let msg = s.msg();
    let via = msg.top_via();
    let text = |v: Option<&[u8]>| v.map(|b| String::from_utf8_lossy(b).into_owned());
    OcParams {
        oc: text(via.oc),
        algo: text(via.oc_algo),
        validity: text(via.oc_validity),
        seq: text(via.oc_seq),
    }
}

/// The `oc` loss percentage on a response's top Via.
pub fn oc_loss(s: &Sent) -> Option<u32> {
    oc_params(s).oc.map(|v| v.parse().expect("oc value"))
}

/// The `oc-seq` of a response as milliseconds.
pub fn oc_seq_ms(s: &Sent) -> Option<u64> {
    let seq = oc_params(s).seq?;
    let (secs, ms) = seq.split_once('.').expect("oc-seq is secs.ms");
    Some(secs.parse::<u64>().unwrap() * 1000 + ms.parse::<u64>().unwrap())
}
