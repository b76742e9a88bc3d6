//! Local responses built from a request's own bytes: Via, From, To, Call-ID and CSeq are
//! copied byte-exactly (RFC 3261 §8.2.6.2), a To tag is added where one is needed.

use super::edit::{self, Edit, Text};
use super::header::{HeaderName, Line, Lines};
use super::scan::{Message, VIA_LINES, parse_name_addr};

/// A response the engine answers with itself.
#[derive(Clone, Copy, Debug)]
pub struct Reply<'b> {
    /// Status code, 100..=699.
    pub status: u16,
    /// Reason phrase.
    pub reason: &'b [u8],
    /// To tag to add when the request's To has none (ignored for 100, which carries no
    /// tag of ours).
    pub to_tag: Option<&'b [u8]>,
    /// Extra header lines, each already ending in CRLF (`Retry-After: 5\r\n`...).
    pub headers: &'b [u8],
    /// Parameters appended to the top Via, starting with `;` (RFC 7339 `oc` feedback).
    pub via_params: &'b [u8],
    /// Where the request really came from (RFC 3261 §18.2.1 `received`), if the top
    /// Via's sent-by differs from it or `rport` was asked for.
    pub received: Option<&'b [u8]>,
    /// The request's source port, written into an `rport` the client sent (RFC 3581).
    /// 0 (never a real source port) means unknown: the `rport` is then copied as sent.
    pub source_port: u16,
}

impl<'b> Reply<'b> {
    /// A bare response: no tag, no extra headers, no Via changes.
    pub fn new(status: u16, reason: &'b [u8]) -> Self {
        Reply {
            status,
            reason,
            to_tag: None,
            headers: b"",
            via_params: b"",
            received: None,
            source_port: 0,
        }
    }
}

/// Appends the response to `req` described by `reply` to `out`: status line, the Via
/// lines in order, From, To, Call-ID, CSeq (and Timestamp for a 100), `reply.headers`,
/// `Content-Length: 0`.
pub fn write_response(req: &Message<'_>, reply: &Reply<'_>, out: &mut Vec<u8>) {
    let buf = req.as_bytes();
    let eol = edit::eol(req);
    write_status_line(reply, eol, out);
    let via = req.top_via;
    let mut via_edits = [Edit::default(); 8];
    let mut nv = 0;
    if let Some(param) = via.rport.filter(|_| reply.source_port != 0) {
        via_edits[nv] = Edit::new(
            param.start(),
            param.len(),
            Text {
                pre: b"rport=",
                num: Some(reply.source_port as u32),
                ..Text::default()
            },
        );
        nv += 1;
    }
    if let Some(ip) = reply.received {
        via_edits[nv] = match via.received {
            Some(old) => Edit::new(old.start(), old.len(), Text::bytes(ip)),
            None => Edit::new(
                via.value.end(),
                0,
                Text {
                    pre: b";received=",
                    body: ip,
                    ..Text::default()
                },
            ),
        };
        nv += 1;
    }
    if !reply.via_params.is_empty() {
        // Our parameters replace the client's own RFC 7339 ones (each appears once).
        for span in via.oc_param_spans(buf).take(4) {
            via_edits[nv] = Edit::new(span.start(), span.len(), Text::default());
            nv += 1;
        }
        via_edits[nv] = Edit::new(via.value.end(), 0, Text::bytes(reply.via_params));
        nv += 1;
    }
    edit::sort(&mut via_edits[..nv]);
    let via_edits = &via_edits[..nv];
    let top = req.top_via_line.line;
    if req.via_lines as usize <= VIA_LINES {
        for &line in &req.via_line_spans[..req.via_lines as usize] {
            let edits = if line == top { via_edits } else { &[] };
            edit::apply(buf, line.range(), edits, eol, out);
        }
    } else {
        let mut lines = Lines::new(buf, req.headers_start());
        while let Line::Header(h) = lines.next_line() {
            if h.kind == HeaderName::Via {
                let edits = if h.line == top { via_edits } else { &[] };
                edit::apply(buf, h.line.range(), edits, eol, out);
            }
        }
    }
    out.extend_from_slice(&buf[req.from_line.range()]);
    match (reply.to_tag, req.to.tag) {
        (Some(tag), None) if reply.status > 100 => {
            let tag_edit = Edit::new(
                req.to.value.end(),
                0,
                Text {
                    pre: b";tag=",
                    body: tag,
                    ..Text::default()
                },
            );
            edit::apply(buf, req.to_line.range(), &[tag_edit], eol, out)
        }
        _ => out.extend_from_slice(&buf[req.to_line.range()]),
    }
    out.extend_from_slice(&buf[req.call_id_line.range()]);
    out.extend_from_slice(&buf[req.cseq_line.range()]);
    // RFC 3261 §8.2.6.1: a 100 echoes the request's Timestamp.
    if let (100, Some(ts)) = (reply.status, req.timestamp_line) {
        out.extend_from_slice(&buf[ts.range()]);
    }
    write_tail(reply, eol, out);
}

/// Answers a request that could not be scanned, if enough of it is legible: the start
/// line must be a request line and Via, From, To, Call-ID and CSeq must each be found.
/// Appends the response to `out` and returns true, or returns false and leaves `out`
/// untouched. Every Via line is copied as is (the request was not understood well enough
/// to amend it); of From, To, Call-ID and CSeq only the first is copied, so a request
/// refused for repeating one (RFC 4475 §3.3.8) is not answered with the same fault.
pub fn write_response_to_unparsed(buf: &[u8], reply: &Reply<'_>, out: &mut Vec<u8>) -> bool {
    let start = buf
        .iter()
        .position(|&c| c != b'\r' && c != b'\n')
        .unwrap_or(buf.len());
    let buf = &buf[start..];
    if buf.len() < 4 || buf[..4].eq_ignore_ascii_case(b"SIP/") {
        return false;
    }
    let Some(lf) = memchr::memchr(b'\n', buf) else {
        return false;
    };
    let eol: &[u8] = if lf > 0 && buf[lf - 1] == b'\r' {
        b"\r\n"
    } else {
        b"\n"
    };
    // Header lines that matter, in order; malformed lines are stepped over.
    const MAX_LINES: usize = 512;
    let mut seen = 0u8;
    let mut lines = Lines::new(buf, lf + 1);
    for _ in 0..MAX_LINES {
        match lines.next_line() {
            Line::Header(h) => {
                seen |= match h.kind {
                    HeaderName::Via => 1,
                    HeaderName::From => 2,
                    HeaderName::To => 4,
                    HeaderName::CallId => 8,
                    HeaderName::CSeq => 16,
                    _ => 0,
                }
            }
            Line::Malformed { .. } if lines.skip_line() => {}
            _ => break,
        }
    }
    if seen != 31 {
        return false;
    }
    write_status_line(reply, eol, out);
    let mut copied = 0u8;
    let mut lines = Lines::new(buf, lf + 1);
    for _ in 0..MAX_LINES {
        match lines.next_line() {
            Line::Header(h) => {
                let line = h.line.range();
                let bit = match h.kind {
                    HeaderName::From => 2,
                    HeaderName::To => 4,
                    HeaderName::CallId => 8,
                    HeaderName::CSeq => 16,
                    _ => 0,
                };
                if copied & bit != 0 {
                    continue;
                }
                copied |= bit;
                match h.kind {
                    HeaderName::To => {
                        let v = h.value(buf);
                        let tag_edit = match (reply.to_tag, reply.status > 100) {
                            (Some(tag), true) => match parse_name_addr(buf, v.start(), v.end()) {
                                Ok(to) if to.tag.is_none() => Some(Edit::new(
                                    to.value.end(),
                                    0,
                                    Text {
                                        pre: b";tag=",
                                        body: tag,
                                        ..Text::default()
                                    },
                                )),
                                _ => None,
                            },
                            _ => None,
                        };
                        edit::apply(buf, line, tag_edit.as_slice(), eol, out)
                    }
                    HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                        out.extend_from_slice(&buf[line])
                    }
                    _ => {}
                }
            }
            Line::Malformed { .. } if lines.skip_line() => {}
            _ => break,
        }
    }
    write_tail(reply, eol, out);
    true
}

fn write_status_line(reply: &Reply<'_>, eol: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"SIP/2.0 ");
    edit::write_decimal(out, reply.status as u32);
    out.push(b' ');
    out.extend_from_slice(reply.reason);
    out.extend_from_slice(eol);
}

fn write_tail(reply: &Reply<'_>, eol: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(reply.headers);
    out.extend_from_slice(b"Content-Length: 0");
    out.extend_from_slice(eol);
    out.extend_from_slice(eol);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::scan::{Limits, scan};

    const INVITE: &str = "INVITE sip:+15551230000@example.net SIP/2.0\r\n\
        v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;rport, SIP/2.0/UDP second;branch=z9hG4bK2\r\n\
        Max-Forwards: 70\r\n\
        Via: SIP/2.0/TCP third\r\n  ;branch=z9hG4bK3\r\n\
        f: \"Caller\" <sip:a@carrier.example>;tag=1928\r\n\
        To:   <sip:+15551230000@example.net>  \r\n\
        i: call-1\r\n\
        Timestamp: 54.3 0.5\r\n\
        CSeq: 1 INVITE\r\n\
        Content-Type: application/sdp\r\n\
        l: 4\r\n\r\nbody";

    const VIAS: &str = "v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;rport, SIP/2.0/UDP second;branch=z9hG4bK2\r\n\
        Via: SIP/2.0/TCP third\r\n  ;branch=z9hG4bK3\r\n";
    const REST: &str = "f: \"Caller\" <sip:a@carrier.example>;tag=1928\r\n\
        To:   <sip:+15551230000@example.net>  \r\n\
        i: call-1\r\n";

    fn respond(req: &str, reply: &Reply<'_>) -> String {
        let m = scan(req.as_bytes(), &Limits::default()).unwrap();
        let mut out = b"KEEP".to_vec();
        write_response(&m, reply, &mut out);
        assert!(out.starts_with(b"KEEP"), "write_response appends");
        String::from_utf8(out.split_off(4)).unwrap()
    }

    #[test]
    fn a_response_copies_via_from_to_call_id_and_cseq_byte_for_byte() {
        let out = respond(INVITE, &Reply::new(486, b"Busy Here"));
        let want = format!(
            "SIP/2.0 486 Busy Here\r\n{VIAS}{REST}CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(out, want);
        let m = scan(out.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(m.status(), Some(486));
        assert_eq!(m.via_count(), 3);
    }

    #[test]
    fn a_final_response_gets_our_to_tag_unless_the_request_had_one() {
        let reply = Reply {
            to_tag: Some(b"ours"),
            ..Reply::new(404, b"Not Found")
        };
        let out = respond(INVITE, &reply);
        assert!(
            out.contains("To:   <sip:+15551230000@example.net>;tag=ours  \r\n"),
            "{out}"
        );
        let tagged = INVITE.replace("example.net>  \r\n", "example.net>;tag=theirs\r\n");
        let out = respond(&tagged, &reply);
        assert!(out.contains("To:   <sip:+15551230000@example.net>;tag=theirs\r\n"));
        assert!(!out.contains("ours"));
    }

    #[test]
    fn a_100_carries_no_tag_of_ours_and_echoes_the_timestamp() {
        let reply = Reply {
            to_tag: Some(b"ours"),
            ..Reply::new(100, b"Trying")
        };
        let out = respond(INVITE, &reply);
        let want = format!(
            "SIP/2.0 100 Trying\r\n{VIAS}{REST}CSeq: 1 INVITE\r\nTimestamp: 54.3 0.5\r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(out, want);
        // Only a 100 echoes it (RFC 3261 §8.2.6.1).
        assert!(!respond(INVITE, &Reply::new(180, b"Ringing")).contains("Timestamp"));
    }

    #[test]
    fn rport_received_and_via_params_amend_the_top_via_value_only() {
        let reply = Reply {
            received: Some(b"203.0.113.7"),
            source_port: 40999,
            via_params: b";oc=20;oc-validity=500",
            headers: b"Retry-After: 5\r\n",
            ..Reply::new(503, b"Service Unavailable")
        };
        let out = respond(INVITE, &reply);
        assert!(out.contains(
            "v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;rport=40999;received=203.0.113.7;oc=20;oc-validity=500, SIP/2.0/UDP second;branch=z9hG4bK2\r\n"
        ), "{out}");
        assert!(out.contains("Via: SIP/2.0/TCP third\r\n  ;branch=z9hG4bK3\r\n"));
        assert!(out.ends_with("Retry-After: 5\r\nContent-Length: 0\r\n\r\n"));
        // Source port 0 is unknown: the rport is copied as the client sent it.
        let unknown = Reply {
            source_port: 0,
            ..reply
        };
        assert!(respond(INVITE, &unknown).contains(";rport;received=203.0.113.7;oc=20"));
        // A received already there is replaced, not repeated.
        let had = INVITE.replace(";rport,", ";received=10.0.0.1;rport,");
        let out = respond(&had, &reply);
        assert!(
            out.contains(";branch=z9hG4bK776;received=203.0.113.7;rport=40999;oc=20"),
            "{out}"
        );
    }

    #[test]
    fn more_via_lines_than_remembered_are_all_copied_in_order() {
        let mut req = String::from("OPTIONS sip:a@b SIP/2.0\r\n");
        for i in 0..7 {
            req.push_str(&format!(
                "Via: SIP/2.0/UDP h{i};branch=z9hG4bK{i}\r\nX-Between: {i}\r\n"
            ));
        }
        req.push_str(
            "From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 9 OPTIONS\r\n\r\n",
        );
        let out = respond(&req, &Reply::new(200, b"OK"));
        let vias: Vec<&str> = out.lines().filter(|l| l.starts_with("Via")).collect();
        assert_eq!(vias.len(), 7);
        for (i, v) in vias.iter().enumerate() {
            assert_eq!(*v, format!("Via: SIP/2.0/UDP h{i};branch=z9hG4bK{i}"));
        }
        assert!(!out.contains("X-Between"));
    }

    #[test]
    fn a_bare_lf_request_is_answered_with_bare_lf() {
        let lf = INVITE.replace("\r\n", "\n");
        let out = respond(&lf, &Reply::new(200, b"OK"));
        assert!(!out.contains('\r'));
        assert!(out.starts_with("SIP/2.0 200 OK\nv: "));
        assert!(out.ends_with("Content-Length: 0\n\n"));
    }

    #[test]
    fn an_unparsed_request_is_answered_from_the_lines_that_are_legible() {
        let broken = "\r\nINVITE  sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
            this line is junk\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nMax-Forwards: 70\r\n\
            Call-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
        let reply = Reply {
            to_tag: Some(b"t9"),
            ..Reply::new(400, b"Bad Request - Malformed Request-Line")
        };
        let mut out = Vec::new();
        assert!(write_response_to_unparsed(
            broken.as_bytes(),
            &reply,
            &mut out
        ));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "SIP/2.0 400 Bad Request - Malformed Request-Line\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
             From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>;tag=t9\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
             Content-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn an_unparsed_request_keeps_its_to_tag_and_its_line_ends() {
        let lf = "BYE sip:a@b SIP/7.0\nVia: SIP/2.0/UDP h\nFrom: <sip:x@y>;tag=1\n\
            To: <sip:a@b>;tag=old\nCall-ID: c\nCSeq: 1 BYE\n\n";
        let reply = Reply {
            to_tag: Some(b"new"),
            ..Reply::new(505, b"Version Not Supported")
        };
        let mut out = Vec::new();
        assert!(write_response_to_unparsed(lf.as_bytes(), &reply, &mut out));
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("To: <sip:a@b>;tag=old\n"));
        assert!(!out.contains('\r') && !out.contains("new"));
    }

    #[test]
    fn repeated_single_value_headers_are_answered_with_the_first_of_each() {
        let dup = "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 5 INVITE\r\n\
            Call-ID: c1\r\nCSeq: 59 INVITE\r\nCall-ID: c2\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\n\
            To: <sip:o@p>\r\nFrom: <sip:z@y>;tag=2\r\nVia: SIP/2.0/UDP second\r\n\r\n";
        let mut out = Vec::new();
        assert!(write_response_to_unparsed(
            dup.as_bytes(),
            &Reply::new(400, b"Bad Request"),
            &mut out
        ));
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "SIP/2.0 400 Bad Request\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 5 INVITE\r\n\
             Call-ID: c1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nVia: SIP/2.0/UDP second\r\n\
             Content-Length: 0\r\n\r\n"
        );
        assert!(scan(&out, &Limits::default()).is_ok());
    }

    #[test]
    fn what_cannot_be_answered_is_left_alone() {
        let reply = Reply::new(400, b"Bad Request");
        for buf in [
            // A response is never answered.
            &b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n"[..],
            // Call-ID missing.
            b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCSeq: 1 INVITE\r\n\r\n",
            // No line end at all.
            b"INVITE sip:a@b SIP/2.0",
            b"",
            b"\r\n",
        ] {
            let mut out = b"untouched".to_vec();
            assert!(!write_response_to_unparsed(buf, &reply, &mut out));
            assert_eq!(out, b"untouched");
        }
    }
}
