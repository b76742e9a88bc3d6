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
    /// client sent is given the source port. An `rport` the client did not ask for is
    /// never added.
    pub fn set_via_received(mut self, received: Option<&'b [u8]>, rport: u16) -> Self {
        let via = self.msg.top_via;
        if let Some(param) = via.rport {
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
