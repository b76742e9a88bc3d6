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
/// The framer remembers how far it already searched for the end of the headers, so
/// feeding a large message byte by byte stays linear. Consume the bytes it reports
/// before calling again.
#[derive(Clone, Debug)]
pub struct StreamFramer {
    limits: Limits,
    searched: usize,
}

impl StreamFramer {
    /// A framer enforcing `limits.max_message_len` on every message.
    pub fn new(limits: Limits) -> Self {
        StreamFramer {
            limits,
            searched: 0,
        }
    }

    /// Looks at the front of `buf` and says what it holds. An error means the stream is
    /// unrecoverable (its framing is lost) and the connection should be closed.
    pub fn next_frame(&mut self, buf: &[u8]) -> Result<StreamFrame, ParseError> {
        let mut i = 0;
        loop {
            match buf.get(i) {
                Some(b'\n') => i += 1,
                Some(b'\r') if buf.get(i + 1) == Some(&b'\n') => i += 2,
                _ => break,
            }
        }
        if i > 0 {
            self.searched = 0;
            return Ok(StreamFrame::KeepAlive(i));
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
        if buf.len() < total {
            self.searched = body;
            return Ok(StreamFrame::NeedMore);
        }
        self.searched = 0;
        Ok(StreamFrame::Message(total))
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
