//! The lean scan for the hot path: the keys that match a message to a transaction (RFC
//! 3261 §17.1.3, §17.2.3), read by walking header lines only until they are all found.
//! A retransmission is recognised and answered from these alone: for a request that is
//! the start line and the top Via (usually the first header), for a response the top
//! Via and CSeq.

use super::error::{ParseError, ParseErrorKind as K};
use super::header::{HeaderName, Line, Lines};
use super::method::Method;
use super::scan::{Limits, StartLine, Transport, parse_cseq, parse_start_line, parse_via};
use super::span::Span;

/// Transaction-matching keys: start line, top Via branch and sent-by, and for a
/// response its CSeq.
///
/// Only the lines up to the last of those headers are read, so nothing is promised
/// about the rest of the message: scan it with [`scan`](super::scan) before acting on it
/// beyond matching an existing transaction.
#[derive(Clone, Copy, Debug)]
pub struct Keys<'a> {
    buf: &'a [u8],
    start_line: StartLine,
    transport: Span,
    host: Span,
    port: Option<u16>,
    branch: Option<Span>,
    cseq: Option<(u32, Span)>,
}

impl<'a> Keys<'a> {
    /// The request method, `None` for a response.
    pub fn method(&self) -> Option<Method<'a>> {
        match self.start_line {
            StartLine::Request { method, .. } => Some(Method::parse(method.of(self.buf))),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code, `None` for a request.
    pub fn status(&self) -> Option<u16> {
        match self.start_line {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The top Via branch.
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.branch.map(|s| s.of(self.buf))
    }

    /// The top Via sent-by host (IPv6 keeps its brackets).
    pub fn sent_by_host(&self) -> &'a [u8] {
        self.host.of(self.buf)
    }

    /// The top Via sent-by port, if written.
    pub fn sent_by_port(&self) -> Option<u16> {
        self.port
    }

    /// The top Via transport.
    pub fn transport(&self) -> Transport {
        Transport::parse(self.transport.of(self.buf))
    }

    /// CSeq number; always read for a response, never for a request.
    pub fn cseq_number(&self) -> Option<u32> {
        self.cseq.map(|(n, _)| n)
    }

    /// CSeq method; always read for a response, never for a request.
    pub fn cseq_method(&self) -> Option<Method<'a>> {
        self.cseq.map(|(_, m)| Method::parse(m.of(self.buf)))
    }
}

/// Reads a message's transaction keys, stopping as soon as the top Via (and, for a
/// response, CSeq) is found. Errors are those of [`scan`](super::scan) for the part it
/// reads.
pub fn scan_keys<'a>(buf: &'a [u8], limits: &Limits) -> Result<Keys<'a>, ParseError> {
    let cap = limits.max_message_len.min(Limits::MAX_MESSAGE_LEN);
    if buf.len() > cap {
        return Err(ParseError::new(K::TooLarge, cap));
    }
    let skip = buf
        .iter()
        .position(|&c| c != b'\r' && c != b'\n')
        .ok_or(ParseError::new(K::Empty, 0))?;
    let buf = &buf[skip..];
    let rebase = |e: ParseError| ParseError::new(e.kind, e.offset + skip);
    let (start_line, pos) = parse_start_line(buf).map_err(rebase)?;
    // RFC 3261 §17.2.3 matches a request on branch, sent-by and method; §17.1.3 matches
    // a response on branch and CSeq method.
    let need_cseq = matches!(start_line, StartLine::Response { .. });
    let mut via = None;
    let mut cseq = None;
    let mut lines = Lines::new(buf, pos);
    for _ in 0..limits.max_headers {
        let h = match lines.next_line() {
            Line::Header(h) => h,
            Line::End { .. } => break,
            Line::Truncated => return Err(rebase(ParseError::new(K::Truncated, buf.len()))),
            Line::Malformed { at } => {
                return Err(rebase(ParseError::new(K::BadHeaderLine, at)));
            }
        };
        match h.kind {
            HeaderName::Via if via.is_none() => {
                let v = h.value(buf);
                let (spans, _) = parse_via(buf, v.start(), v.end())
                    .map_err(|at| rebase(ParseError::new(K::BadVia, at)))?;
                via = Some(spans);
            }
            HeaderName::CSeq if need_cseq && cseq.is_none() => {
                let v = h.value(buf);
                cseq = Some(
                    parse_cseq(buf, v.start(), v.end())
                        .map_err(|at| rebase(ParseError::new(K::BadCSeq, at)))?,
                );
            }
            _ => continue,
        }
        if let Some(v) = via
            && (cseq.is_some() || !need_cseq)
        {
            return Ok(Keys {
                buf,
                start_line,
                transport: v.transport,
                host: v.host,
                port: v.port,
                branch: v.branch,
                cseq,
            });
        }
    }
    let missing = if via.is_none() {
        HeaderName::Via
    } else {
        HeaderName::CSeq
    };
    Err(rebase(ParseError::new(
        K::MissingHeader(missing),
        lines.pos(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::scan::scan;

    const REQ: &[u8] = b"BYE sip:b@example.net SIP/2.0\r\n\
        v: SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bKbye1\r\n\
        Via: SIP/2.0/UDP second.example;branch=z9hG4bK2\r\n\
        i: call-1@example.net\r\n\
        CSeq: 2 BYE\r\n\
        From: <sip:a@example.net>;tag=f\r\n\
        To: <sip:b@example.net>;tag=t\r\n\
        Max-Forwards: 70\r\n\
        Content-Length: 0\r\n\r\n";

    #[test]
    fn keys_equal_what_the_full_scan_finds() {
        let k = scan_keys(REQ, &Limits::default()).unwrap();
        let m = scan(REQ, &Limits::default()).unwrap();
        assert_eq!(k.method(), m.method());
        assert_eq!(k.status(), None);
        assert_eq!(k.branch(), m.branch());
        assert_eq!(k.branch(), Some(&b"z9hG4bKbye1"[..]));
        assert_eq!(k.sent_by_host(), m.top_via().host);
        assert_eq!(k.sent_by_host(), b"[2001:db8::1]");
        assert_eq!(k.sent_by_port(), Some(5061));
        assert_eq!(k.transport(), Transport::Tls);
        // A request is matched without its CSeq (RFC 3261 §17.2.3).
        assert_eq!(k.cseq_number(), None);
        assert_eq!(m.cseq().number, 2);
    }

    #[test]
    fn keys_stop_reading_once_found() {
        // Everything after the top Via is beyond the lean scan of a request: even a
        // broken line.
        let mut buf = REQ[..REQ.len() - 2].to_vec();
        buf.extend_from_slice(b"this line has no colon\r\n\r\n");
        assert!(scan_keys(&buf, &Limits::default()).is_ok());
        let broken_second =
            b"BYE sip:b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nno colon\r\n\r\n";
        assert!(scan_keys(broken_second, &Limits::default()).is_ok());
        // A response reads on to its CSeq.
        let resp = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nno colon\r\nCSeq: 1 BYE\r\n\r\n";
        assert_eq!(
            scan_keys(resp, &Limits::default()).unwrap_err().kind,
            K::BadHeaderLine
        );
        assert_eq!(
            scan(&buf, &Limits::default()).unwrap_err().kind,
            K::BadHeaderLine
        );
    }

    #[test]
    fn responses_give_their_status() {
        let buf = b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKr\r\n\
            Call-ID: x\r\nCSeq: 7 INVITE\r\n\r\n";
        let k = scan_keys(buf, &Limits::default()).unwrap();
        assert_eq!(k.status(), Some(486));
        assert_eq!(k.method(), None);
        assert_eq!(k.cseq_method(), Some(Method::Invite));
        assert_eq!(k.cseq_number(), Some(7));
        assert_eq!(k.sent_by_port(), None);
    }

    #[test]
    fn errors_are_reported_against_the_callers_buffer() {
        let l = Limits::default();
        assert_eq!(
            scan_keys(b"\r\n\n", &l).unwrap_err(),
            ParseError::new(K::Empty, 0)
        );
        let small = Limits {
            max_message_len: 10,
            ..l
        };
        assert_eq!(
            scan_keys(REQ, &small).unwrap_err(),
            ParseError::new(K::TooLarge, 10)
        );
        let mut buf = b"\r\n".to_vec();
        buf.extend_from_slice(b"SIP/2.0 200 OK\r\nCSeq: x BYE\r\n\r\n");
        assert_eq!(
            scan_keys(&buf, &l).unwrap_err(),
            ParseError::new(K::BadCSeq, 24)
        );
        let no_via = b"BYE sip:b SIP/2.0\r\nCall-ID: x\r\nCSeq: 1 BYE\r\n\r\n";
        assert_eq!(
            scan_keys(no_via, &l).unwrap_err(),
            ParseError::new(K::MissingHeader(HeaderName::Via), 44)
        );
        let no_cseq = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nCall-ID: c\r\n\r\n";
        assert_eq!(
            scan_keys(no_cseq, &l).unwrap_err().kind,
            K::MissingHeader(HeaderName::CSeq)
        );
        let bad_via = b"BYE sip:b SIP/2.0\r\nVia: SIP/2.0/UDP\r\n\r\n";
        assert_eq!(scan_keys(bad_via, &l).unwrap_err().kind, K::BadVia);
        let truncated = b"BYE sip:b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n";
        assert_eq!(
            scan_keys(truncated, &l).unwrap_err(),
            ParseError::new(K::Truncated, truncated.len())
        );
        let malformed = b"BYE sip:b SIP/2.0\r\n junk\r\n\r\n";
        assert_eq!(
            scan_keys(malformed, &l).unwrap_err(),
            ParseError::new(K::BadHeaderLine, 19)
        );
        assert_eq!(
            scan_keys(b"BYE  sip:b SIP/2.0\r\n\r\n", &l)
                .unwrap_err()
                .kind,
            K::BadStartLine
        );
    }

    #[test]
    fn the_header_limit_bounds_the_lean_scan_too() {
        let few = Limits {
            max_headers: 2,
            ..Limits::default()
        };
        let resp = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nCall-ID: c\r\nCSeq: 1 BYE\r\n\r\n";
        assert_eq!(
            scan_keys(resp, &few).unwrap_err().kind,
            K::MissingHeader(HeaderName::CSeq)
        );
        assert!(scan_keys(resp, &Limits::default()).is_ok());
    }
}
