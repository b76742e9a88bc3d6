//! Forwarding edits as byte splices: every byte the edits do not name is copied exactly
//! as received (unknown headers, parameter case, folding, bodies).

use super::scan::Message;

/// Why an edit could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// Max-Forwards is zero: the request must be answered `483 Too Many Hops`.
    #[error("Max-Forwards is zero")]
    MaxForwardsExhausted,
    /// The edit needs a request (Request-URI, Max-Forwards) or a response.
    #[error("edit does not apply to this kind of message")]
    WrongKind,
    /// There is no such header to edit (no Route to remove, no Via left).
    #[error("the header to edit is absent")]
    Absent,
}

/// Text an edit writes: a fixed prefix, caller bytes, an optional number, an optional
/// line end. Enough for every edit without formatting into a temporary buffer.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Text<'b> {
    pub(crate) pre: &'static [u8],
    pub(crate) body: &'b [u8],
    pub(crate) num: Option<u32>,
    pub(crate) eol: bool,
}

impl<'b> Text<'b> {
    pub(crate) fn bytes(body: &'b [u8]) -> Self {
        Text {
            body,
            ..Text::default()
        }
    }
}

/// Replace `remove` bytes at offset `at` with `text`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Edit<'b> {
    at: u32,
    remove: u32,
    text: Text<'b>,
}

impl<'b> Edit<'b> {
    pub(crate) fn new(at: usize, remove: usize, text: Text<'b>) -> Self {
        Edit {
            at: at as u32,
            remove: remove as u32,
            text,
        }
    }
}

// Slot order is the write order of edits at the same offset: new header lines go in
// before anything that removes or rewrites what was at that offset.
const VIA: usize = 0;
const RECORD_ROUTE: usize = 1;
const MAX_FORWARDS: usize = 2;
const REQUEST_URI: usize = 3;
const REMOVE_VIA: usize = 4;
const REMOVE_ROUTE: usize = 5;
const VIA_RPORT: usize = 6;
const VIA_RECEIVED: usize = 7;
const TO_TAG: usize = 8;
const SLOTS: usize = 9;

/// A set of edits to one message, applied in a single copy by [`Splice::write_to`].
///
/// Each operation may be set once (setting it again replaces it). Inserted header lines
/// go at the top of the header section, which puts a new Via above every other Via and a
/// new Record-Route above every other Record-Route, as RFC 3261 §16.6 requires.
#[derive(Clone, Debug)]
#[must_use = "a Splice does nothing until written"]
pub struct Splice<'m, 'b> {
    msg: &'m Message<'m>,
    edits: [Option<Edit<'b>>; SLOTS],
}

impl<'m, 'b> Splice<'m, 'b> {
    /// No edits yet.
    pub fn new(msg: &'m Message<'m>) -> Self {
        Splice {
            msg,
            edits: [None; SLOTS],
        }
    }

    fn set(&mut self, slot: usize, at: usize, remove: usize, text: Text<'b>) {
        self.edits[slot] = Some(Edit::new(at, remove, text));
    }

    /// Inserts `line` (a whole header line such as `Via: SIP/2.0/UDP h;branch=z9hG4bK1`,
    /// without line end) above every other header.
    pub fn insert_via(mut self, line: &'b [u8]) -> Self {
        let at = self.msg.headers_start();
        self.set(VIA, at, 0, line_text(line));
        self
    }

    /// Inserts a Record-Route header line (without line end) above every other header.
    pub fn insert_record_route(mut self, line: &'b [u8]) -> Self {
        let at = self.msg.headers_start();
        self.set(RECORD_ROUTE, at, 0, line_text(line));
        self
    }

    /// Replaces the Request-URI.
    pub fn rewrite_request_uri(mut self, uri: &'b [u8]) -> Result<Self, EditError> {
        let span = self.msg.request_uri_span().ok_or(EditError::WrongKind)?;
        self.set(
            REQUEST_URI,
            span.start(),
            span.len(),
            Text {
                body: uri,
                ..Text::default()
            },
        );
        Ok(self)
    }

    /// Decrements Max-Forwards, or adds `Max-Forwards: 70` when absent (RFC 3261 §16.6
    /// step 3). Fails when it is already zero.
    pub fn decrement_max_forwards(mut self) -> Result<Self, EditError> {
        if !self.msg.is_request() {
            return Err(EditError::WrongKind);
        }
        match self.msg.max_forwards {
            Some((0, _)) => return Err(EditError::MaxForwardsExhausted),
            Some((n, span)) => self.set(
                MAX_FORWARDS,
                span.start(),
                span.len(),
                Text {
                    num: Some(n as u32 - 1),
                    ..Text::default()
                },
            ),
            None => self.set(
                MAX_FORWARDS,
                self.msg.headers_start(),
                0,
                Text {
                    pre: b"Max-Forwards: 70",
                    eol: true,
                    ..Text::default()
                },
            ),
        }
        Ok(self)
    }

    /// Removes the top Via value: the whole line when it holds one value, else the first
    /// value and its comma. Responses only (RFC 3261 §16.7 step 3).
    pub fn remove_top_via(mut self) -> Result<Self, EditError> {
        if self.msg.is_request() {
            return Err(EditError::WrongKind);
        }
        let first = self.msg.top_via_line;
        let (at, end) = match first.next {
            None => (first.line.start(), first.line.end()),
            Some(next) => (first.value.start(), next as usize),
        };
        self.set(REMOVE_VIA, at, end - at, Text::default());
        Ok(self)
    }

    /// Removes the first Route value (loose routing, RFC 3261 §16.4).
    pub fn remove_top_route(mut self) -> Result<Self, EditError> {
        let first = self.msg.route_first().ok_or(EditError::Absent)?;
        let (at, end) = match first.next {
            None => (first.line.start(), first.line.end()),
            Some(next) => (first.value.start(), next as usize),
        };
        self.set(REMOVE_ROUTE, at, end - at, Text::default());
        Ok(self)
    }

    /// Records on the top Via where the request really came from (RFC 3261 §18.2.1,
    /// RFC 3581): `received` is added (or replaced) when given; an `rport` parameter the
    /// client sent is given the source port, unless that is 0 (unknown). An `rport` the
    /// client did not ask for is never added.
    pub fn set_via_received(mut self, received: Option<&'b [u8]>, rport: u16) -> Self {
        let via = self.msg.top_via;
        if let Some(param) = via.rport.filter(|_| rport != 0) {
            self.set(
                VIA_RPORT,
                param.start(),
                param.len(),
                Text {
                    pre: b"rport=",
                    num: Some(rport as u32),
                    ..Text::default()
                },
            );
        }
        if let Some(ip) = received {
            match via.received {
                Some(old) => self.set(
                    VIA_RECEIVED,
                    old.start(),
                    old.len(),
                    Text {
                        body: ip,
                        ..Text::default()
                    },
                ),
                None => self.set(
                    VIA_RECEIVED,
                    via.value.end(),
                    0,
                    Text {
                        pre: b";received=",
                        body: ip,
                        ..Text::default()
                    },
                ),
            }
        }
        self
    }

    /// Sets the To tag: replaces the existing tag's value, or appends `;tag=` to To.
    pub fn set_to_tag(mut self, tag: &'b [u8]) -> Self {
        let to = self.msg.to;
        match to.tag {
            Some(old) => self.set(
                TO_TAG,
                old.start(),
                old.len(),
                Text {
                    body: tag,
                    ..Text::default()
                },
            ),
            None => self.set(
                TO_TAG,
                to.value.end(),
                0,
                Text {
                    pre: b";tag=",
                    body: tag,
                    ..Text::default()
                },
            ),
        }
        self
    }

    /// Appends the edited message to `out`. Bytes outside the edits are copied verbatim;
    /// the output ends where the message does (bytes beyond Content-Length are dropped).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut edits = [Edit::default(); SLOTS];
        let mut n = 0;
        for e in self.edits.iter().flatten() {
            edits[n] = *e;
            n += 1;
        }
        sort(&mut edits[..n]);
        let buf = self.msg.as_bytes();
        apply(buf, 0..buf.len(), &edits[..n], eol(self.msg), out);
    }
}

fn line_text(line: &[u8]) -> Text<'_> {
    Text {
        body: line,
        eol: true,
        ..Text::default()
    }
}

pub(crate) fn eol(msg: &Message<'_>) -> &'static [u8] {
    if msg.uses_bare_lf() { b"\n" } else { b"\r\n" }
}

/// Sorts edits by offset: insertion sort, stable (slot order holds for edits at the
/// same offset) and allocation-free.
pub(crate) fn sort(edits: &mut [Edit<'_>]) {
    for i in 1..edits.len() {
        let mut j = i;
        while j > 0 && edits[j - 1].at > edits[j].at {
            edits.swap(j - 1, j);
            j -= 1;
        }
    }
}

/// Copies `buf[range]` into `out` with `edits` (sorted, offsets absolute, inside
/// `range`) applied. An edit that starts inside bytes an earlier edit removed is
/// skipped: only contradictory operations (patching the Via being removed) make one.
pub(crate) fn apply(
    buf: &[u8],
    range: std::ops::Range<usize>,
    edits: &[Edit<'_>],
    eol: &[u8],
    out: &mut Vec<u8>,
) {
    out.reserve(range.len() + edits.iter().map(|e| e.text.body.len() + 24).sum::<usize>());
    let mut cursor = range.start;
    for e in edits {
        let at = e.at as usize;
        if at < cursor || at > range.end {
            continue;
        }
        out.extend_from_slice(&buf[cursor..at]);
        out.extend_from_slice(e.text.pre);
        out.extend_from_slice(e.text.body);
        if let Some(n) = e.text.num {
            write_decimal(out, n);
        }
        if e.text.eol {
            out.extend_from_slice(eol);
        }
        cursor = (at + e.remove as usize).min(range.end);
    }
    out.extend_from_slice(&buf[cursor..range.end]);
}

/// Appends the decimal form of `n` without allocating.
pub(crate) fn write_decimal(out: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::scan::{Limits, scan};

    const INVITE: &[u8] = b"INVITE sip:+15551230000@example.net SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;rport\r\n\
        Max-Forwards: 0068\r\n\
        Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n\
        X-Odd:   KeepMe ;Case=AsIs\r\n\
        f: <sip:a@carrier.example>;tag=1928\r\n\
        t: <sip:+15551230000@example.net>\r\n\
        i: call-1\r\n\
        CSeq: 1 INVITE\r\n\
        l: 4\r\n\r\nbodyTRAILING";

    const RESPONSE: &[u8] = b"SIP/2.0 200 OK\r\n\
        v: SIP/2.0/UDP proxy.example;branch=z9hG4bKp, SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK776\r\n\
        Via: SIP/2.0/UDP upstream.example;branch=z9hG4bKu\r\n\
        From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\
        Content-Length: 0\r\n\r\n";

    fn written(s: &Splice<'_, '_>) -> Vec<u8> {
        let mut out = b"PREFIX".to_vec();
        s.write_to(&mut out);
        assert!(out.starts_with(b"PREFIX"), "write_to appends");
        out.split_off(6)
    }

    /// The message with `find` replaced by `with` (the only place it occurs).
    fn replaced(msg: &[u8], find: &str, with: &str) -> Vec<u8> {
        let s = String::from_utf8(msg.to_vec()).unwrap();
        assert_eq!(s.matches(find).count(), 1, "{find}");
        s.replacen(find, with, 1).into_bytes()
    }

    fn without_trailing(msg: &[u8]) -> &[u8] {
        &msg[..msg.len() - "TRAILING".len()]
    }

    #[test]
    fn no_edits_copy_the_message_and_drop_bytes_beyond_content_length() {
        let m = scan(INVITE, &Limits::default()).unwrap();
        assert_eq!(written(&Splice::new(&m)), without_trailing(INVITE));
    }

    #[test]
    fn insert_via_goes_above_every_header_and_changes_nothing_else() {
        let m = scan(INVITE, &Limits::default()).unwrap();
        let out = written(&Splice::new(&m).insert_via(b"Via: SIP/2.0/UDP us;branch=z9hG4bKus"));
        let want = replaced(
            without_trailing(INVITE),
            "SIP/2.0\r\nVia:",
            "SIP/2.0\r\nVia: SIP/2.0/UDP us;branch=z9hG4bKus\r\nVia:",
        );
        assert_eq!(out, want);
        let again = scan(&out, &Limits::default()).unwrap();
        assert_eq!(again.branch(), Some(&b"z9hG4bKus"[..]));
        assert_eq!(again.via_count(), 2);
    }

    #[test]
    fn record_route_and_a_missing_max_forwards_are_inserted_in_slot_order() {
        let plain = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:x@y>;tag=1\r\n\
            To: <sip:a@b>\r\nCall-ID: o\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let m = scan(plain, &Limits::default()).unwrap();
        let out = written(
            &Splice::new(&m)
                .decrement_max_forwards()
                .unwrap()
                .insert_record_route(b"Record-Route: <sip:us;lr>")
                .insert_via(b"Via: SIP/2.0/UDP us"),
        );
        let want = replaced(
            plain,
            "SIP/2.0\r\nVia:",
            "SIP/2.0\r\nVia: SIP/2.0/UDP us\r\nRecord-Route: <sip:us;lr>\r\nMax-Forwards: 70\r\nVia:",
        );
        assert_eq!(out, want);
    }

    #[test]
    fn max_forwards_is_decremented_in_place_and_zero_is_refused() {
        let m = scan(INVITE, &Limits::default()).unwrap();
        let out = written(&Splice::new(&m).decrement_max_forwards().unwrap());
        assert_eq!(
            out,
            replaced(
                without_trailing(INVITE),
                "Max-Forwards: 0068",
                "Max-Forwards: 67"
            )
        );
        let zero = replaced(INVITE, "0068", "0");
        let m = scan(&zero, &Limits::default()).unwrap();
        assert_eq!(
            Splice::new(&m).decrement_max_forwards().unwrap_err(),
            EditError::MaxForwardsExhausted
        );
        let r = scan(RESPONSE, &Limits::default()).unwrap();
        assert_eq!(
            Splice::new(&r).decrement_max_forwards().unwrap_err(),
            EditError::WrongKind
        );
    }

    #[test]
    fn the_request_uri_is_rewritten_in_place() {
        let m = scan(INVITE, &Limits::default()).unwrap();
        let out = written(
            &Splice::new(&m)
                .rewrite_request_uri(b"sip:+15551230000@10.0.0.9:5080")
                .unwrap(),
        );
        assert_eq!(
            out,
            replaced(
                without_trailing(INVITE),
                "sip:+15551230000@example.net SIP",
                "sip:+15551230000@10.0.0.9:5080 SIP"
            )
        );
        let r = scan(RESPONSE, &Limits::default()).unwrap();
        assert_eq!(
            Splice::new(&r).rewrite_request_uri(b"sip:x").unwrap_err(),
            EditError::WrongKind
        );
    }

    #[test]
    fn the_top_route_value_or_line_is_removed() {
        let m = scan(INVITE, &Limits::default()).unwrap();
        let out = written(&Splice::new(&m).remove_top_route().unwrap());
        assert_eq!(
            out,
            replaced(without_trailing(INVITE), "<sip:p1.example;lr>, ", "")
        );
        let once = scan(&out, &Limits::default()).unwrap();
        let out = written(&Splice::new(&once).remove_top_route().unwrap());
        assert_eq!(
            out,
            replaced(
                without_trailing(INVITE),
                "Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n",
                ""
            )
        );
        let none = scan(&out, &Limits::default()).unwrap();
        assert_eq!(
            Splice::new(&none).remove_top_route().unwrap_err(),
            EditError::Absent
        );
    }

    #[test]
    fn the_top_via_value_or_line_is_removed_from_responses() {
        let r = scan(RESPONSE, &Limits::default()).unwrap();
        let out = written(&Splice::new(&r).remove_top_via().unwrap());
        assert_eq!(
            out,
            replaced(RESPONSE, "SIP/2.0/UDP proxy.example;branch=z9hG4bKp, ", "")
        );
        let r2 = scan(&out, &Limits::default()).unwrap();
        assert_eq!(r2.top_via().host, b"192.0.2.1");
        let out = written(&Splice::new(&r2).remove_top_via().unwrap());
        assert_eq!(
            out,
            replaced(
                RESPONSE,
                "v: SIP/2.0/UDP proxy.example;branch=z9hG4bKp, SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK776\r\n",
                ""
            )
        );
        let m = scan(INVITE, &Limits::default()).unwrap();
        assert_eq!(
            Splice::new(&m).remove_top_via().unwrap_err(),
            EditError::WrongKind
        );
    }

    #[test]
    fn removing_a_via_with_a_trailing_comma_removes_its_whole_line() {
        let odd = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1 , \r\n\
            From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n";
        let r = scan(odd, &Limits::default()).unwrap();
        let popped = written(&Splice::new(&r).remove_top_via().unwrap());
        assert_eq!(
            popped,
            replaced(odd, "Via: SIP/2.0/UDP h;branch=z9hG4bK1 , \r\n", "")
        );
    }

    #[test]
    fn received_and_rport_are_recorded_on_the_top_via_only() {
        let m = scan(INVITE, &Limits::default()).unwrap();
        let out = written(&Splice::new(&m).set_via_received(Some(b"203.0.113.9"), 40123));
        assert_eq!(
            out,
            replaced(
                without_trailing(INVITE),
                ";rport\r\n",
                ";rport=40123;received=203.0.113.9\r\n"
            )
        );
        // An existing received is replaced; an rport the client did not ask for is not added.
        let r = scan(RESPONSE, &Limits::default()).unwrap();
        let with_received = replaced(RESPONSE, "z9hG4bKp,", "z9hG4bKp;received=1.1.1.1,");
        let m2 = scan(&with_received, &Limits::default()).unwrap();
        let out = written(&Splice::new(&m2).set_via_received(Some(b"2.2.2.2"), 1));
        assert_eq!(
            out,
            replaced(&with_received, "received=1.1.1.1", "received=2.2.2.2")
        );
        let out = written(&Splice::new(&r).set_via_received(None, 9));
        assert_eq!(out, RESPONSE);
        // Source port 0 is unknown: the client's rport stays as it was.
        let out = written(&Splice::new(&m).set_via_received(None, 0));
        assert_eq!(out, without_trailing(INVITE));
    }

    #[test]
    fn the_to_tag_is_added_or_replaced() {
        let m = scan(INVITE, &Limits::default()).unwrap();
        let out = written(&Splice::new(&m).set_to_tag(b"ours"));
        assert_eq!(
            out,
            replaced(
                without_trailing(INVITE),
                "example.net>\r\ni:",
                "example.net>;tag=ours\r\ni:"
            )
        );
        let r = scan(RESPONSE, &Limits::default()).unwrap();
        let out = written(&Splice::new(&r).set_to_tag(b"new"));
        assert_eq!(out, replaced(RESPONSE, "tag=2", "tag=new"));
    }

    #[test]
    fn all_request_edits_at_once_leave_every_other_byte_alone() {
        let m = scan(INVITE, &Limits::default()).unwrap();
        let out = written(
            &Splice::new(&m)
                .insert_via(b"Via: SIP/2.0/UDP us;branch=z9hG4bKus")
                .insert_record_route(b"Record-Route: <sip:us;lr>")
                .decrement_max_forwards()
                .unwrap()
                .rewrite_request_uri(b"sip:target")
                .unwrap()
                .remove_top_route()
                .unwrap()
                .set_via_received(Some(b"198.51.100.1"), 5060),
        );
        let want = "INVITE sip:target SIP/2.0\r\n\
            Via: SIP/2.0/UDP us;branch=z9hG4bKus\r\n\
            Record-Route: <sip:us;lr>\r\n\
            Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;rport=5060;received=198.51.100.1\r\n\
            Max-Forwards: 67\r\n\
            Route: <sip:p2.example;lr>\r\n\
            X-Odd:   KeepMe ;Case=AsIs\r\n\
            f: <sip:a@carrier.example>;tag=1928\r\n\
            t: <sip:+15551230000@example.net>\r\n\
            i: call-1\r\n\
            CSeq: 1 INVITE\r\n\
            l: 4\r\n\r\nbody";
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    #[test]
    fn setting_an_edit_twice_keeps_the_last() {
        let m = scan(INVITE, &Limits::default()).unwrap();
        let out = written(&Splice::new(&m).set_to_tag(b"one").set_to_tag(b"two"));
        assert_eq!(
            out,
            replaced(
                without_trailing(INVITE),
                "example.net>\r\ni:",
                "example.net>;tag=two\r\ni:"
            )
        );
    }

    #[test]
    fn patching_the_via_being_removed_is_skipped_not_spliced_twice() {
        let r = scan(RESPONSE, &Limits::default()).unwrap();
        let s = Splice::new(&r).remove_top_via().unwrap();
        let plain = written(&s);
        let s = s.set_via_received(Some(b"9.9.9.9"), 1);
        assert_eq!(written(&s), plain);
    }

    #[test]
    fn inserted_lines_end_like_the_message_does() {
        let lf = String::from_utf8(without_trailing(INVITE).to_vec())
            .unwrap()
            .replace("\r\n", "\n");
        let m = scan(lf.as_bytes(), &Limits::default()).unwrap();
        let out = written(&Splice::new(&m).insert_via(b"Via: SIP/2.0/UDP us"));
        assert!(out.starts_with(
            b"INVITE sip:+15551230000@example.net SIP/2.0\nVia: SIP/2.0/UDP us\nVia:"
        ));
        assert!(!out.contains(&b'\r'));
    }

    #[test]
    fn write_decimal_writes_every_digit() {
        for n in [0u32, 7, 10, 70, 65535, 1_000_000, u32::MAX] {
            let mut out = Vec::new();
            write_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }
}
