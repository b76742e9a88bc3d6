//! Framing: where a message starts and ends. A UDP datagram is one message; a stream is
//! split by Content-Length. Keep-alives (RFC 5626 CRLF) are recognised, not errors.

use super::error::{ParseError, ParseErrorKind as K};
use super::header::{HeaderName, Line, Lines};
use super::scan::{Limits, Message, parse_decimal, scan};

/// What one UDP datagram holds.
// Boxing the message would put an allocation on the hot path; this lives on the stack.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug)]
pub enum Datagram<'a> {
    /// Only line ends (RFC 5626 `CRLFCRLF` ping or `CRLF` pong): answer nothing.
    KeepAlive,
    /// One SIP message.
    Message(Message<'a>),
}

/// Frames and scans one datagram.
///
/// Content-Length, when present, bounds the message (extra trailing bytes are ignored,
/// RFC 3261 §18.3) and a shorter body is an error; without it the message runs to the
/// end of the datagram.
pub fn parse_datagram<'a>(buf: &'a [u8], limits: &Limits) -> Result<Datagram<'a>, ParseError> {
    if buf.is_empty() {
        return Err(ParseError::new(K::Empty, 0));
    }
    if buf.iter().all(|&c| c == b'\r' || c == b'\n') {
        return Ok(Datagram::KeepAlive);
    }
    scan(buf, limits).map(Datagram::Message)
}

/// The next frame at the front of a stream buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamFrame {
    /// The first `n` bytes are one complete message: scan `&buf[..n]`, then consume them.
    Message(usize),
    /// The first `n` bytes are keep-alive line ends: consume them.
    KeepAlive(usize),
    /// The buffer holds part of a message; call again when more bytes arrived.
    NeedMore,
}

/// Splits a byte stream (TCP, TLS) into messages by Content-Length without copying.
///
/// The framer remembers how far it already searched for the end of the headers and, once
/// it has read Content-Length, how long the message is, so feeding a large message byte
/// by byte stays linear. Consume the bytes it reports before calling again.
#[derive(Clone, Debug)]
pub struct StreamFramer {
    limits: Limits,
    searched: usize,
    /// Length of the message at the front of the buffer once its headers were read; 0
    /// while unknown.
    total: usize,
}

impl StreamFramer {
    /// A framer enforcing `limits.max_message_len` on every message.
    pub fn new(limits: Limits) -> Self {
        StreamFramer {
            limits,
            searched: 0,
            total: 0,
        }
    }

    /// Looks at the front of `buf` and says what it holds. An error means the stream is
    /// unrecoverable (its framing is lost) and the connection should be closed. After
    /// `KeepAlive(n)` the next call may get the buffer with or without those `n` bytes.
    pub fn next_frame(&mut self, buf: &[u8]) -> Result<StreamFrame, ParseError> {
        let mut i = 0;
        loop {
            match buf.get(i) {
                Some(b'\n') => i += 1,
                Some(b'\r') if buf.get(i + 1) == Some(&b'\n') => i += 2,
                _ => break,
            }
        }
        // What the framer remembers is about the message after the keep-alives, so it
        // holds whether the caller consumes them or passes the rest of the buffer.
        if i > 0 {
            return Ok(StreamFrame::KeepAlive(i));
        }
        if self.total > 0 {
            return Ok(self.complete(buf, self.total));
        }
        let cap = self.limits.max_message_len.min(Limits::MAX_MESSAGE_LEN);
        let Some(body) = find_headers_end(buf, self.searched.saturating_sub(3)) else {
            if buf.len() > cap {
                return Err(ParseError::new(K::TooLarge, cap));
            }
            self.searched = buf.len();
            return Ok(StreamFrame::NeedMore);
        };
        if body > cap {
            return Err(ParseError::new(K::TooLarge, cap));
        }
        let cl = content_length(&buf[..body])?;
        let total = body + cl;
        if total > cap {
            return Err(ParseError::new(K::TooLarge, cap));
        }
        Ok(self.complete(buf, total))
    }

    /// `Message(total)` when the buffer holds the whole message (the framer is then ready
    /// for the next one), else `NeedMore`, remembering `total`.
    fn complete(&mut self, buf: &[u8], total: usize) -> StreamFrame {
        if buf.len() < total {
            self.total = total;
            return StreamFrame::NeedMore;
        }
        self.searched = 0;
        self.total = 0;
        StreamFrame::Message(total)
    }

    /// Convenience: the next complete message scanned, with the number of bytes to
    /// consume. `Ok(None)` when more bytes are needed; keep-alives are skipped.
    pub fn next_message<'a>(
        &mut self,
        buf: &'a [u8],
    ) -> Result<Option<(Message<'a>, usize)>, ParseError> {
        let mut off = 0;
        loop {
            match self.next_frame(&buf[off..])? {
                StreamFrame::KeepAlive(n) => off += n,
                StreamFrame::NeedMore => return Ok(None),
                StreamFrame::Message(n) => {
                    let m = scan(&buf[off..off + n], &self.limits)?;
                    return Ok(Some((m, off + n)));
                }
            }
        }
    }
}

/// The offset just past the empty line that ends the header section, searching from
/// `from` (which must be at or before a line end).
fn find_headers_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(p) = memchr::memchr(b'\n', buf.get(i..)?) {
        let lf = i + p;
        match (buf.get(lf + 1), buf.get(lf + 2)) {
            (Some(b'\n'), _) => return Some(lf + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(lf + 3),
            _ => i = lf + 1,
        }
    }
    None
}

/// Reads Content-Length from a complete header section (start line included).
fn content_length(head: &[u8]) -> Result<usize, ParseError> {
    let Some(lf) = memchr::memchr(b'\n', head) else {
        return Err(ParseError::new(K::Truncated, head.len()));
    };
    let mut lines = Lines::new(head, lf + 1);
    let mut found = None;
    loop {
        match lines.next_line() {
            Line::Header(h) => {
                if h.kind == HeaderName::ContentLength {
                    if found.is_some() {
                        return Err(ParseError::new(
                            K::DuplicateHeader(HeaderName::ContentLength),
                            h.name.start(),
                        ));
                    }
                    let v = h.value(head);
                    found = Some(
                        parse_decimal(v.of(head))
                            .ok_or(ParseError::new(K::BadContentLength, v.start()))?,
                    );
                }
            }
            Line::End { .. } => break,
            Line::Truncated => return Err(ParseError::new(K::Truncated, lines.pos())),
            Line::Malformed { at } => return Err(ParseError::new(K::BadHeaderLine, at)),
        }
    }
    found
        .map(|n| n as usize)
        .ok_or(ParseError::new(K::MissingContentLength, lines.pos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(cl: Option<&str>, body: &str) -> Vec<u8> {
        let mut m = b"MESSAGE sip:a@example.com SIP/2.0\r\n\
            Via: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:b@h>;tag=1\r\nTo: <sip:a@h>\r\n\
            Call-ID: c1\r\nCSeq: 1 MESSAGE\r\n"
            .to_vec();
        if let Some(cl) = cl {
            m.extend_from_slice(format!("Content-Length: {cl}\r\n").as_bytes());
        }
        m.extend_from_slice(b"\r\n");
        m.extend_from_slice(body.as_bytes());
        m
    }

    fn message(d: Datagram<'_>) -> Message<'_> {
        match d {
            Datagram::Message(m) => m,
            Datagram::KeepAlive => panic!("expected a message"),
        }
    }

    #[test]
    fn a_datagram_is_truncated_to_its_content_length() {
        let mut buf = msg(Some("5"), "hello");
        buf.extend_from_slice(b" and trailing octets");
        let m = message(parse_datagram(&buf, &Limits::default()).unwrap());
        assert_eq!(m.body(), b"hello");
        assert_eq!(m.as_bytes().len(), buf.len() - 20);
    }

    #[test]
    fn a_datagram_body_shorter_than_content_length_is_rejected() {
        let buf = msg(Some("6"), "hello");
        let e = parse_datagram(&buf, &Limits::default()).unwrap_err();
        assert_eq!(e, ParseError::new(K::BodyTooShort, buf.len()));
    }

    #[test]
    fn a_datagram_without_content_length_runs_to_its_end() {
        let buf = msg(None, "whole\r\nrest");
        let m = message(parse_datagram(&buf, &Limits::default()).unwrap());
        assert_eq!(m.body(), b"whole\r\nrest");
        assert_eq!(m.content_length(), None);
    }

    #[test]
    fn line_ends_alone_are_keep_alives_and_nothing_is_an_error() {
        for ka in [&b"\r\n\r\n"[..], b"\r\n", b"\n", b"\r"] {
            assert!(matches!(
                parse_datagram(ka, &Limits::default()),
                Ok(Datagram::KeepAlive)
            ));
        }
        assert_eq!(
            parse_datagram(b"", &Limits::default()).unwrap_err(),
            ParseError::new(K::Empty, 0)
        );
        // A message behind leading line ends is still a message.
        let mut buf = b"\r\n".to_vec();
        buf.extend_from_slice(&msg(Some("0"), ""));
        let m = message(parse_datagram(&buf, &Limits::default()).unwrap());
        assert_eq!(m.call_id(), b"c1");
    }

    #[test]
    fn a_stream_splits_back_to_back_messages_by_content_length() {
        let first = msg(Some("5"), "hello");
        let second = msg(Some("0"), "");
        let mut stream = first.clone();
        stream.extend_from_slice(&second);
        stream.extend_from_slice(b"INVITE sip:partial");
        let mut f = StreamFramer::new(Limits::default());
        assert_eq!(f.next_frame(&stream), Ok(StreamFrame::Message(first.len())));
        let rest = &stream[first.len()..];
        assert_eq!(f.next_frame(rest), Ok(StreamFrame::Message(second.len())));
        assert_eq!(
            f.next_frame(&rest[second.len()..]),
            Ok(StreamFrame::NeedMore)
        );
    }

    #[test]
    fn a_stream_reports_crlf_keep_alives_between_messages() {
        let m = msg(Some("0"), "");
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(&m);
        stream.extend_from_slice(b"\r\n\n");
        stream.extend_from_slice(&m);
        let mut f = StreamFramer::new(Limits::default());
        let mut frames = Vec::new();
        let mut off = 0;
        while off < stream.len() {
            let frame = f.next_frame(&stream[off..]).unwrap();
            off += match frame {
                StreamFrame::Message(n) | StreamFrame::KeepAlive(n) => n,
                StreamFrame::NeedMore => panic!("all bytes are here"),
            };
            frames.push(frame);
        }
        assert_eq!(
            frames,
            [
                StreamFrame::KeepAlive(4),
                StreamFrame::Message(m.len()),
                StreamFrame::KeepAlive(3),
                StreamFrame::Message(m.len()),
            ]
        );
        // Half a CRLF is not yet a keep-alive.
        assert_eq!(f.next_frame(b"\r"), Ok(StreamFrame::NeedMore));
    }

    #[test]
    fn need_more_until_the_headers_and_the_body_are_complete() {
        let m = msg(Some("5"), "hello");
        let mut f = StreamFramer::new(Limits::default());
        let headers_end = m.len() - 5;
        assert_eq!(
            f.next_frame(&m[..headers_end - 1]),
            Ok(StreamFrame::NeedMore)
        );
        assert_eq!(f.next_frame(&m[..headers_end]), Ok(StreamFrame::NeedMore));
        assert_eq!(f.next_frame(&m[..m.len() - 1]), Ok(StreamFrame::NeedMore));
        assert_eq!(f.next_frame(&m), Ok(StreamFrame::Message(m.len())));
    }

    #[test]
    fn feeding_one_byte_at_a_time_frames_each_message_exactly_once() {
        let a = msg(Some("5"), "hello");
        let b = msg(Some("3"), "abc");
        let mut stream = a.clone();
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(&b);
        // LF-only line ends frame the same way.
        let lf = String::from_utf8(msg(Some("2"), "hi"))
            .unwrap()
            .replace("\r\n", "\n");
        stream.extend_from_slice(lf.as_bytes());
        let mut f = StreamFramer::new(Limits::default());
        let mut buffered: Vec<u8> = Vec::new();
        let mut got = Vec::new();
        for &byte in &stream {
            buffered.push(byte);
            loop {
                match f.next_frame(&buffered).unwrap() {
                    StreamFrame::NeedMore => break,
                    StreamFrame::KeepAlive(n) => {
                        buffered.drain(..n);
                    }
                    StreamFrame::Message(n) => {
                        let m = scan(&buffered[..n], &Limits::default()).unwrap();
                        got.push(m.body().to_vec());
                        buffered.drain(..n);
                    }
                }
            }
        }
        assert_eq!(got, [&b"hello"[..], b"abc", b"hi"]);
        assert!(buffered.is_empty());
    }

    #[test]
    fn next_message_scans_in_place_and_counts_the_keep_alives_it_skipped() {
        let m = msg(Some("5"), "hello");
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(&m);
        stream.extend_from_slice(b"INV");
        let mut f = StreamFramer::new(Limits::default());
        let (scanned, used) = f.next_message(&stream).unwrap().unwrap();
        assert_eq!(used, 4 + m.len());
        assert_eq!(scanned.body(), b"hello");
        // Zero-copy: the message borrows the stream buffer itself.
        assert_eq!(scanned.as_bytes().as_ptr(), stream[4..].as_ptr());
        assert!(f.next_message(&stream[used..]).unwrap().is_none());
    }

    #[test]
    fn keep_alives_may_be_passed_again_while_a_message_is_incomplete() {
        let m = msg(Some("5"), "hello");
        let mut buf = b"\r\n".to_vec();
        buf.extend_from_slice(&m[..m.len() - 1]);
        let mut f = StreamFramer::new(Limits::default());
        assert_eq!(f.next_frame(&buf), Ok(StreamFrame::KeepAlive(2)));
        assert_eq!(f.next_frame(&buf[2..]), Ok(StreamFrame::NeedMore));
        // The caller kept the keep-alive and got the last byte: same answer either way.
        buf.push(b'o');
        assert_eq!(f.next_frame(&buf), Ok(StreamFrame::KeepAlive(2)));
        assert_eq!(f.next_frame(&buf[2..]), Ok(StreamFrame::Message(m.len())));
        let mut f = StreamFramer::new(Limits::default());
        let (scanned, used) = f.next_message(&buf).unwrap().unwrap();
        assert_eq!((scanned.body(), used), (&b"hello"[..], buf.len()));
    }

    #[test]
    fn a_stream_message_must_carry_content_length() {
        let m = msg(None, "");
        let e = StreamFramer::new(Limits::default())
            .next_frame(&m)
            .unwrap_err();
        // Reported at the empty line that ended the headers without one.
        assert_eq!(e, ParseError::new(K::MissingContentLength, m.len() - 2));
    }

    #[test]
    fn stream_framing_errors_lose_the_connection() {
        let mut f = StreamFramer::new(Limits::default());
        let m = msg(Some("x"), "");
        assert_eq!(f.next_frame(&m).unwrap_err().kind, K::BadContentLength);
        let mut dup = msg(Some("0"), "");
        let at = dup.len() - 2;
        dup.splice(at..at, b"l: 0\r\n".iter().copied());
        let e = StreamFramer::new(Limits::default())
            .next_frame(&dup)
            .unwrap_err();
        assert_eq!(
            e,
            ParseError::new(K::DuplicateHeader(HeaderName::ContentLength), at)
        );
        let bad = b"INVITE sip:a SIP/2.0\r\nno colon\r\n\r\n";
        let e = StreamFramer::new(Limits::default())
            .next_frame(bad)
            .unwrap_err();
        assert_eq!(e, ParseError::new(K::BadHeaderLine, 22));
    }

    #[test]
    fn oversize_stream_messages_are_refused_before_they_are_buffered() {
        let limits = Limits {
            max_message_len: 300,
            ..Limits::default()
        };
        // Headers that never end.
        let mut f = StreamFramer::new(limits);
        let endless = vec![b'a'; 301];
        assert_eq!(f.next_frame(&endless[..300]), Ok(StreamFrame::NeedMore));
        assert_eq!(
            f.next_frame(&endless).unwrap_err(),
            ParseError::new(K::TooLarge, 300)
        );
        // A Content-Length that would take the message past the limit, before its body.
        let m = msg(Some("200"), "");
        assert_eq!(
            StreamFramer::new(limits).next_frame(&m).unwrap_err(),
            ParseError::new(K::TooLarge, 300)
        );
        let m = msg(Some("10"), "0123456789");
        assert!(m.len() < 300);
        assert_eq!(
            StreamFramer::new(limits).next_frame(&m),
            Ok(StreamFrame::Message(m.len()))
        );
    }
}
