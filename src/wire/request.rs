//! Requests derived from another request: CANCEL (RFC 3261 §9.1) and the ACK for a
//! non-2xx final (§17.1.1.3). The fields that must match the original are copied
//! byte-for-byte from it, which a typed re-serialisation cannot promise.

use super::edit::{eol, write_decimal};
use super::header::{HeaderName, Line, Lines};
use super::scan::Message;

fn write_derived(method: &[u8], req: &Message<'_>, to_line: Option<&[u8]>, out: &mut Vec<u8>) {
    let buf = req.as_bytes();
    let eol = eol(req);
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(req.request_uri().unwrap_or_default());
    out.extend_from_slice(b" SIP/2.0");
    out.extend_from_slice(eol);
    // Only the top Via: the CANCEL/ACK goes exactly one hop, with the INVITE's branch.
    out.extend_from_slice(b"Via: ");
    out.extend_from_slice(req.top_via().value);
    out.extend_from_slice(eol);
    out.extend_from_slice(&buf[req.from_line.range()]);
    match to_line {
        Some(line) => out.extend_from_slice(line),
        None => out.extend_from_slice(&buf[req.to_line.range()]),
    }
    out.extend_from_slice(&buf[req.call_id_line.range()]);
    out.extend_from_slice(b"CSeq: ");
    write_decimal(out, req.cseq().number);
    out.push(b' ');
    out.extend_from_slice(method);
    out.extend_from_slice(eol);
    if req.route().is_some() {
        let mut lines = Lines::new(buf, req.headers_start());
        while let Line::Header(h) = lines.next_line() {
            if h.kind == HeaderName::Route {
                out.extend_from_slice(&buf[h.line.range()]);
            }
        }
    }
    out.extend_from_slice(b"Max-Forwards: 70");
    out.extend_from_slice(eol);
    out.extend_from_slice(b"Content-Length: 0");
    out.extend_from_slice(eol);
    out.extend_from_slice(eol);
}

/// Appends the CANCEL for `invite`: same Request-URI, top Via, From, To, Call-ID, CSeq
/// number and Route headers; CSeq method CANCEL.
pub fn write_cancel(invite: &Message<'_>, out: &mut Vec<u8>) {
    write_derived(b"CANCEL", invite, None, out);
}

/// Appends the ACK for the non-2xx final `response` to `invite`: as the CANCEL, but To
/// comes from the response (it carries the tag).
pub fn write_ack(invite: &Message<'_>, response: &Message<'_>, out: &mut Vec<u8>) {
    let to = &response.as_bytes()[response.to_line.range()];
    write_derived(b"ACK", invite, Some(to), out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Limits, Method, scan};

    const INVITE: &[u8] = b"INVITE sip:+18005550199@192.0.2.20:5080 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKrf1.0.abc;rport\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKup\r\n\
Route: <sip:192.0.2.30;lr>\r\n\
Max-Forwards: 69\r\n\
f: \"A\" <sip:+14155550123@carrier.example>;tag=ft-1\r\n\
t: <sip:+18005550199@192.0.2.10>\r\n\
i: call-1@carrier.example\r\n\
CSeq: 7 INVITE\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn cancel_copies_the_fields_that_must_match() {
        let inv = scan(INVITE, &Limits::default()).unwrap();
        let mut out = Vec::new();
        write_cancel(&inv, &mut out);
        let c = scan(&out, &Limits::default()).unwrap();
        assert_eq!(c.method(), Some(Method::Cancel));
        assert_eq!(c.request_uri(), inv.request_uri());
        assert_eq!(c.via_count(), 1);
        assert_eq!(c.branch(), inv.branch());
        assert_eq!(c.from().value, inv.from().value);
        assert_eq!(c.to().value, inv.to().value);
        assert_eq!(c.call_id(), inv.call_id());
        assert_eq!((c.cseq().number, c.cseq().method), (7, Method::Cancel));
        assert_eq!(c.route(), Some(&b"<sip:192.0.2.30;lr>"[..]));
        assert_eq!(c.max_forwards(), Some(70));
    }

    #[test]
    fn ack_takes_to_from_the_response() {
        let inv = scan(INVITE, &Limits::default()).unwrap();
        let resp = b"SIP/2.0 486 Busy Here\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKrf1.0.abc;rport=5060\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKup\r\n\
f: \"A\" <sip:+14155550123@carrier.example>;tag=ft-1\r\n\
t: <sip:+18005550199@192.0.2.10>;tag=callee-9\r\n\
i: call-1@carrier.example\r\n\
CSeq: 7 INVITE\r\n\
Content-Length: 0\r\n\r\n";
        let r = scan(resp, &Limits::default()).unwrap();
        let mut out = Vec::new();
        write_ack(&inv, &r, &mut out);
        let a = scan(&out, &Limits::default()).unwrap();
        assert_eq!(a.method(), Some(Method::Ack));
        assert_eq!(a.to_tag(), Some(&b"callee-9"[..]));
        assert_eq!(a.branch(), inv.branch());
        assert_eq!((a.cseq().number, a.cseq().method), (7, Method::Ack));
    }
}
