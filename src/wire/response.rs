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
    let mut via_edits = [Edit::default(); 3];
    let mut nv = 0;
    if let Some(param) = via.rport {
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
/// untouched. The Via is copied as is (the request was not understood well enough to
/// amend it).
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
    let mut lines = Lines::new(buf, lf + 1);
    for _ in 0..MAX_LINES {
        match lines.next_line() {
            Line::Header(h) => {
                let line = h.line.range();
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
