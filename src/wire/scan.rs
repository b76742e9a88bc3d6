//! The zero-copy scanner: one pass over the start line and headers that records, as
//! spans into the input, every key the upper layers need. It allocates nothing.

use super::error::{ParseError, ParseErrorKind as K};
use super::header::{
    HeaderName, Headers, Line, Lines, Params, count_elements, element_end, is_lws, is_token,
    quoted_end, quoted_terminated, skip_lws, trim_end,
};
use super::method::Method;
use super::span::Span;
use super::swar;

/// Bounds applied before and during scanning, so that no input can make the scanner do
/// unbounded work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Inputs longer than this are rejected before any byte is looked at
    /// ([`ParseErrorKind::TooLarge`](super::ParseErrorKind::TooLarge)). At most 1 MiB.
    pub max_message_len: usize,
    /// Most header lines a message may have.
    pub max_headers: usize,
    /// Most Via values (across all Via headers) a message may have.
    pub max_vias: usize,
}

impl Limits {
    /// The ceiling for `max_message_len`: spans are `u32` and a SIP message has no
    /// business being larger.
    pub const MAX_MESSAGE_LEN: usize = 1 << 20;
}

impl Default for Limits {
    /// 16 KiB messages (UDP carriers stay far below; RFC 3261 §18.1.1 moves anything
    /// near the MTU to TCP), 128 header lines, 70 Via values (the RFC's Max-Forwards).
    fn default() -> Self {
        Limits {
            max_message_len: 16 * 1024,
            max_headers: 128,
            max_vias: 70,
        }
    }
}

/// The transport named in a Via's sent-protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP
    Udp,
    /// TCP
    Tcp,
    /// TLS
    Tls,
    /// SCTP
    Sctp,
    /// WebSocket (RFC 7118)
    Ws,
    /// Secure WebSocket (RFC 7118)
    Wss,
    /// Any other token.
    Other,
}

impl Transport {
    /// Classifies a transport token (case-insensitive).
    pub fn parse(token: &[u8]) -> Transport {
        let eq = |s: &[u8]| token.eq_ignore_ascii_case(s);
        if eq(b"UDP") {
            Transport::Udp
        } else if eq(b"TCP") {
            Transport::Tcp
        } else if eq(b"TLS") {
            Transport::Tls
        } else if eq(b"SCTP") {
            Transport::Sctp
        } else if eq(b"WS") {
            Transport::Ws
        } else if eq(b"WSS") {
            Transport::Wss
        } else {
            Transport::Other
        }
    }

    /// Whether the transport is reliable (timers I, J, K, D are zero; no retransmission).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp | Transport::Other)
    }
}

/// The RFC 3261 §8.1.1.7 magic cookie that marks a branch as globally unique.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// Spans of the top Via value.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ViaSpans {
    /// The whole first value, trimmed (sent-protocol through the last parameter).
    pub(crate) value: Span,
    pub(crate) transport: Span,
    pub(crate) host: Span,
    pub(crate) port: Option<u16>,
    pub(crate) branch: Option<Span>,
    pub(crate) received: Option<Span>,
    /// The whole `rport[=n]` parameter, for rewriting it.
    pub(crate) rport: Option<Span>,
    pub(crate) rport_value: Option<u16>,
    /// Whether any RFC 7339 parameter is present (their values are read on demand).
    pub(crate) oc: bool,
}

/// The first value of a multi-value header (Via, Route) and the line it sits on, so the
/// value can be removed without touching anything else.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FirstValue {
    /// The whole header line including continuation lines and the line end.
    pub(crate) line: Span,
    /// The first comma-separated value, trimmed.
    pub(crate) value: Span,
    /// Start of the next value on the same line, if any.
    pub(crate) next: Option<u32>,
}

/// Spans of a From or To value.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct NameAddrSpans {
    /// The whole value, trimmed.
    pub(crate) value: Span,
    pub(crate) uri: Span,
    pub(crate) user: Option<Span>,
    pub(crate) tag: Option<Span>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum StartLine {
    Request { method: Span, uri: Span },
    Response { code: u16, reason: Span },
}

/// A scanned SIP message: spans into the input for the start line and every key the
/// transaction, dialog, guard and routing layers use. Cheap to copy; allocation-free.
///
/// Guarantees of a successfully scanned message: Via, From, To, Call-ID and CSeq are
/// present; single-value headers appear once; a request's CSeq method equals its method;
/// the body is exactly Content-Length bytes when Content-Length is present.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    buf: &'a [u8],
    start_line: StartLine,
    /// Where the first header line starts (just after the start line).
    headers_start: u32,
    body_start: u32,
    header_count: u16,
    via_count: u16,
    pub(crate) top_via: ViaSpans,
    pub(crate) top_via_line: FirstValue,
    /// The first [`VIA_LINES`] Via header lines; `via_lines` counts all of them.
    pub(crate) via_line_spans: [Span; VIA_LINES],
    pub(crate) via_lines: u16,
    call_id: Span,
    cseq_number: u32,
    cseq_method: Span,
    pub(crate) from: NameAddrSpans,
    pub(crate) to: NameAddrSpans,
    /// Whole lines of From, To, Call-ID, CSeq and Timestamp, for local responses.
    pub(crate) from_line: Span,
    pub(crate) to_line: Span,
    pub(crate) call_id_line: Span,
    pub(crate) cseq_line: Span,
    pub(crate) timestamp_line: Option<Span>,
    pub(crate) max_forwards: Option<(u8, Span)>,
    content_length: Option<u32>,
    /// Whole values of the first Contact, Route and Record-Route headers; their first
    /// elements are split off on demand, off the scanning path.
    contact: Option<Span>,
    route: Option<(Span, Span)>,
    record_route: Option<Span>,
}

/// How many Via lines a message remembers for building responses without re-scanning.
pub(crate) const VIA_LINES: usize = 4;

/// A view of the top Via.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    /// The whole value as written, from `SIP/2.0/...` through the last parameter.
    pub value: &'a [u8],
    /// The transport token (`UDP`, `TCP`...).
    pub transport: &'a [u8],
    /// The sent-by host (an IPv6 reference keeps its brackets).
    pub host: &'a [u8],
    /// The sent-by port, if written.
    pub port: Option<u16>,
    /// The `branch` parameter value.
    pub branch: Option<&'a [u8]>,
    /// The `received` parameter value.
    pub received: Option<&'a [u8]>,
    /// `rport` (RFC 3581): `Some(None)` when present without a value.
    pub rport: Option<Option<u16>>,
    /// The RFC 7339 `oc` parameter value (empty when present without a value).
    pub oc: Option<&'a [u8]>,
    /// The RFC 7339 `oc-algo` parameter value, quotes included.
    pub oc_algo: Option<&'a [u8]>,
    /// The RFC 7339 `oc-validity` parameter value.
    pub oc_validity: Option<&'a [u8]>,
    /// The RFC 7339 `oc-seq` parameter value.
    pub oc_seq: Option<&'a [u8]>,
}

impl Via<'_> {
    /// Whether the branch starts with the RFC 3261 magic cookie `z9hG4bK`.
    pub fn has_magic_cookie(&self) -> bool {
        self.branch.is_some_and(|b| b.starts_with(MAGIC_COOKIE))
    }

    /// Whether the upstream announced RFC 7339 overload-control support.
    pub fn supports_oc(&self) -> bool {
        self.oc.is_some() || self.oc_algo.is_some()
    }

    /// The classified transport.
    pub fn transport_kind(&self) -> Transport {
        Transport::parse(self.transport)
    }
}

/// A view of a From or To value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The whole value as written.
    pub value: &'a [u8],
    /// The URI (without angle brackets).
    pub uri: &'a [u8],
    /// The URI's user part (`sip:user@host`) or a `tel:` number, without user
    /// parameters or password.
    pub user: Option<&'a [u8]>,
    /// The `tag` parameter value.
    pub tag: Option<&'a [u8]>,
}

/// CSeq: sequence number and method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// The sequence number (below 2^31).
    pub number: u32,
    /// The method.
    pub method: Method<'a>,
}

impl<'a> Message<'a> {
    /// The message bytes, from the start line to the end of the body (trailing bytes
    /// beyond Content-Length excluded).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start_line, StartLine::Request { .. })
    }

    /// The request method, `None` for a response.
    pub fn method(&self) -> Option<Method<'a>> {
        match self.start_line {
            StartLine::Request { method, .. } => Some(Method::parse(method.of(self.buf))),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI as written, `None` for a response.
    pub fn request_uri(&self) -> Option<&'a [u8]> {
        match self.start_line {
            StartLine::Request { uri, .. } => Some(uri.of(self.buf)),
            StartLine::Response { .. } => None,
        }
    }

    /// The user part of the Request-URI (the dialled number for a call), without user
    /// parameters; `tel:` URIs give their number.
    pub fn request_user(&self) -> Option<&'a [u8]> {
        match self.start_line {
            StartLine::Request { uri, .. } => uri_user(self.buf, uri).map(|s| s.of(self.buf)),
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

    /// The reason phrase, `None` for a request. May be empty.
    pub fn reason(&self) -> Option<&'a [u8]> {
        match self.start_line {
            StartLine::Response { reason, .. } => Some(reason.of(self.buf)),
            StartLine::Request { .. } => None,
        }
    }

    /// The top Via.
    pub fn top_via(&self) -> Via<'a> {
        let v = &self.top_via;
        let b = self.buf;
        let opt = |s: Option<Span>| s.map(|s| s.of(b));
        let mut via = Via {
            value: v.value.of(b),
            transport: v.transport.of(b),
            host: v.host.of(b),
            port: v.port,
            branch: opt(v.branch),
            received: opt(v.received),
            rport: v.rport.map(|_| v.rport_value),
            oc: None,
            oc_algo: None,
            oc_validity: None,
            oc_seq: None,
        };
        if v.oc {
            // Parameters start after sent-by; the scanner validated them already.
            let from = v.host.end() + v.port.map_or(0, |_| 1);
            let from = from + b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
            for p in Params::new(b, from, v.value.end()).flatten() {
                let name = p.name.of(b);
                let value = p
                    .value
                    .map_or(&b[p.whole.end()..p.whole.end()], |s| s.of(b));
                if name.eq_ignore_ascii_case(b"oc") {
                    via.oc = Some(value);
                } else if name.eq_ignore_ascii_case(b"oc-algo") {
                    via.oc_algo = Some(value);
                } else if name.eq_ignore_ascii_case(b"oc-validity") {
                    via.oc_validity = Some(value);
                } else if name.eq_ignore_ascii_case(b"oc-seq") {
                    via.oc_seq = Some(value);
                }
            }
        }
        via
    }

    /// The top Via's branch (shortcut for the transaction layer).
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.top_via.branch.map(|s| s.of(self.buf))
    }

    /// How many Via values the message carries, across all Via headers.
    pub fn via_count(&self) -> usize {
        self.via_count as usize
    }

    /// Call-ID.
    pub fn call_id(&self) -> &'a [u8] {
        self.call_id.of(self.buf)
    }

    /// CSeq.
    pub fn cseq(&self) -> CSeq<'a> {
        CSeq {
            number: self.cseq_number,
            method: Method::parse(self.cseq_method.of(self.buf)),
        }
    }

    fn name_addr(&self, s: &NameAddrSpans) -> NameAddr<'a> {
        let b = self.buf;
        NameAddr {
            value: s.value.of(b),
            uri: s.uri.of(b),
            user: s.user.map(|u| u.of(b)),
            tag: s.tag.map(|t| t.of(b)),
        }
    }

    /// From.
    pub fn from(&self) -> NameAddr<'a> {
        self.name_addr(&self.from)
    }

    /// To.
    pub fn to(&self) -> NameAddr<'a> {
        self.name_addr(&self.to)
    }

    /// The From tag.
    pub fn from_tag(&self) -> Option<&'a [u8]> {
        self.from.tag.map(|s| s.of(self.buf))
    }

    /// The To tag.
    pub fn to_tag(&self) -> Option<&'a [u8]> {
        self.to.tag.map(|s| s.of(self.buf))
    }

    /// The calling number: the user part of the From URI.
    pub fn calling(&self) -> Option<&'a [u8]> {
        self.from.user.map(|s| s.of(self.buf))
    }

    /// Max-Forwards, if present.
    pub fn max_forwards(&self) -> Option<u8> {
        self.max_forwards.map(|(n, _)| n)
    }

    /// Content-Length, if present.
    pub fn content_length(&self) -> Option<usize> {
        self.content_length.map(|n| n as usize)
    }

    fn first_element(&self, value: Span) -> Span {
        let (vs, ve) = (value.start(), value.end());
        let e = element_end(self.buf, vs, ve);
        Span::new(vs, trim_end(self.buf, vs, e))
    }

    /// The first Contact value as written (name-addr, addr-spec or `*`).
    pub fn contact(&self) -> Option<&'a [u8]> {
        self.contact.map(|s| self.first_element(s).of(self.buf))
    }

    /// The first Route value as written.
    pub fn route(&self) -> Option<&'a [u8]> {
        self.route.map(|(_, v)| self.first_element(v).of(self.buf))
    }

    /// The first Route value and the line it sits on, for removing it.
    pub(crate) fn route_first(&self) -> Option<FirstValue> {
        let (line, value) = self.route?;
        let first = self.first_element(value);
        let e = element_end(self.buf, first.end(), value.end());
        Some(FirstValue {
            line,
            value: first,
            next: (e < value.end()).then(|| skip_lws(self.buf, e + 1, value.end()) as u32),
        })
    }

    /// The first Record-Route value as written.
    pub fn record_route(&self) -> Option<&'a [u8]> {
        self.record_route
            .map(|s| self.first_element(s).of(self.buf))
    }

    /// The body (exactly Content-Length bytes when Content-Length is present).
    pub fn body(&self) -> &'a [u8] {
        &self.buf[self.body_start as usize..]
    }

    /// Every header line in order, unknown ones included, values as written.
    pub fn headers(&self) -> Headers<'a> {
        Headers::new(self.buf, self.headers_start as usize)
    }

    /// Number of header lines.
    pub fn header_count(&self) -> usize {
        self.header_count as usize
    }

    pub(crate) fn headers_start(&self) -> usize {
        self.headers_start as usize
    }

    pub(crate) fn request_uri_span(&self) -> Option<Span> {
        match self.start_line {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// Whether the start line ends with a bare LF (the edits then write LF too).
    pub(crate) fn uses_bare_lf(&self) -> bool {
        let h = self.headers_start as usize;
        h < 2 || self.buf[h - 2] != b'\r'
    }
}

/// Scans one message occupying all of `buf` (UDP semantics: a missing Content-Length
/// means "the rest of the datagram"; bytes beyond Content-Length are ignored). Leading
/// line ends are skipped (RFC 3261 §7.5).
pub fn scan<'a>(buf: &'a [u8], limits: &Limits) -> Result<Message<'a>, ParseError> {
    let cap = limits.max_message_len.min(Limits::MAX_MESSAGE_LEN);
    if buf.len() > cap {
        return Err(ParseError::new(K::TooLarge, cap));
    }
    let skip = buf
        .iter()
        .position(|&c| c != b'\r' && c != b'\n')
        .ok_or(ParseError::new(K::Empty, 0))?;
    // Rebase on the first message byte so that spans and `as_bytes` start at the start
    // line; offsets in errors are reported against the caller's buffer.
    scan_from(&buf[skip..], limits).map_err(|e| ParseError::new(e.kind, e.offset + skip))
}

fn err<T>(kind: K, at: usize) -> Result<T, ParseError> {
    Err(ParseError::new(kind, at))
}

const SEEN_FROM: u8 = 1;
const SEEN_TO: u8 = 2;
const SEEN_CALL_ID: u8 = 4;
const SEEN_CSEQ: u8 = 8;
const SEEN_MAX_FORWARDS: u8 = 16;
const SEEN_CONTENT_LENGTH: u8 = 32;

fn scan_from<'a>(buf: &'a [u8], limits: &Limits) -> Result<Message<'a>, ParseError> {
    let (start_line, pos) = parse_start_line(buf)?;
    let mut m = Message {
        buf,
        start_line,
        headers_start: pos as u32,
        body_start: 0,
        header_count: 0,
        via_count: 0,
        top_via: ViaSpans::default(),
        top_via_line: FirstValue::default(),
        via_line_spans: [Span::default(); VIA_LINES],
        via_lines: 0,
        call_id: Span::default(),
        cseq_number: 0,
        cseq_method: Span::default(),
        from: NameAddrSpans::default(),
        to: NameAddrSpans::default(),
        from_line: Span::default(),
        to_line: Span::default(),
        call_id_line: Span::default(),
        cseq_line: Span::default(),
        timestamp_line: None,
        max_forwards: None,
        content_length: None,
        contact: None,
        route: None,
        record_route: None,
    };
    let mut seen = 0u8;
    let mut headers = 0usize;
    let mut vias = 0usize;
    let mut lines = Lines::new(buf, pos);
    loop {
        let h = match lines.next_line() {
            Line::Header(h) => h,
            Line::End { body } => {
                m.body_start = body as u32;
                break;
            }
            Line::Truncated => return err(K::Truncated, buf.len()),
            Line::Malformed { at } => return err(K::BadHeaderLine, at),
        };
        headers += 1;
        if headers > limits.max_headers {
            return err(K::TooManyHeaders, h.line.start());
        }
        let kind = h.kind;
        if kind == HeaderName::Other {
            continue;
        }
        let value = h.value(buf);
        let (vs, ve) = (value.start(), value.end());
        let once = |seen: &mut u8, bit: u8| {
            if *seen & bit != 0 {
                return err(K::DuplicateHeader(kind), h.name.start());
            }
            *seen |= bit;
            Ok(())
        };
        match kind {
            HeaderName::Via => {
                if vias == 0 {
                    let (via, elem_end) =
                        parse_via(buf, vs, ve).map_err(|at| ParseError::new(K::BadVia, at))?;
                    m.top_via = via;
                    m.top_via_line = FirstValue {
                        line: h.line,
                        value: via.value,
                        next: (elem_end < ve).then(|| skip_lws(buf, elem_end + 1, ve) as u32),
                    };
                    vias = 1 + if elem_end < ve {
                        count_elements(buf, elem_end + 1, ve)
                    } else {
                        0
                    };
                } else {
                    vias += count_elements(buf, vs, ve);
                }
                if vias > limits.max_vias {
                    return err(K::TooManyVias, vs);
                }
                if (m.via_lines as usize) < VIA_LINES {
                    m.via_line_spans[m.via_lines as usize] = h.line;
                }
                m.via_lines += 1;
            }
            HeaderName::From => {
                once(&mut seen, SEEN_FROM)?;
                m.from = parse_name_addr(buf, vs, ve)
                    .map_err(|at| ParseError::new(K::BadNameAddr, at))?;
                m.from_line = h.line;
            }
            HeaderName::To => {
                once(&mut seen, SEEN_TO)?;
                m.to = parse_name_addr(buf, vs, ve)
                    .map_err(|at| ParseError::new(K::BadNameAddr, at))?;
                m.to_line = h.line;
            }
            HeaderName::CallId => {
                once(&mut seen, SEEN_CALL_ID)?;
                // Printable ASCII without spaces; a fold, not `all`, so it vectorises.
                let bad = buf[vs..ve]
                    .iter()
                    .fold(false, |bad, &c| bad | !(0x21..0x7f).contains(&c));
                if vs == ve || bad {
                    return err(K::BadCallId, vs);
                }
                m.call_id = value;
                m.call_id_line = h.line;
            }
            HeaderName::CSeq => {
                once(&mut seen, SEEN_CSEQ)?;
                let (n, method) =
                    parse_cseq(buf, vs, ve).map_err(|at| ParseError::new(K::BadCSeq, at))?;
                m.cseq_number = n;
                m.cseq_method = method;
                m.cseq_line = h.line;
            }
            HeaderName::MaxForwards => {
                once(&mut seen, SEEN_MAX_FORWARDS)?;
                match parse_decimal(&buf[vs..ve]) {
                    Some(n) if n <= 255 => m.max_forwards = Some((n as u8, value)),
                    _ => return err(K::BadMaxForwards, vs),
                }
            }
            HeaderName::ContentLength => {
                once(&mut seen, SEEN_CONTENT_LENGTH)?;
                match parse_decimal(&buf[vs..ve]) {
                    Some(n) => m.content_length = Some(n),
                    None => return err(K::BadContentLength, vs),
                }
            }
            HeaderName::Contact if m.contact.is_none() => m.contact = Some(value),
            HeaderName::Route if m.route.is_none() => m.route = Some((h.line, value)),
            HeaderName::RecordRoute if m.record_route.is_none() => m.record_route = Some(value),
            HeaderName::Timestamp if m.timestamp_line.is_none() => m.timestamp_line = Some(h.line),
            _ => {}
        }
    }
    let end = buf.len();
    if vias == 0 {
        return err(K::MissingHeader(HeaderName::Via), end);
    }
    for (bit, name) in [
        (SEEN_FROM, HeaderName::From),
        (SEEN_TO, HeaderName::To),
        (SEEN_CALL_ID, HeaderName::CallId),
        (SEEN_CSEQ, HeaderName::CSeq),
    ] {
        if seen & bit == 0 {
            return err(K::MissingHeader(name), end);
        }
    }
    if let StartLine::Request { method, .. } = m.start_line
        && method.of(buf) != m.cseq_method.of(buf)
    {
        return err(K::CSeqMethodMismatch, m.cseq_method.start());
    }
    if let Some(cl) = m.content_length
        && m.body_start as usize + cl as usize > end
    {
        return err(K::BodyTooShort, end);
    }
    if let Some(cl) = m.content_length {
        m.buf = &buf[..m.body_start as usize + cl as usize];
    }
    m.header_count = headers as u16;
    m.via_count = vias as u16;
    Ok(m)
}

/// Parses a run of ASCII digits into a `u32`; `None` if empty, not all digits, or too
/// large.
pub(crate) fn parse_decimal(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 10 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (c - b'0') as u64;
    }
    u32::try_from(n).ok()
}

pub(crate) fn parse_start_line(buf: &[u8]) -> Result<(StartLine, usize), ParseError> {
    let Some(lf) = memchr::memchr(b'\n', buf) else {
        return err(K::Truncated, buf.len());
    };
    let next = lf + 1;
    let end = if lf > 0 && buf[lf - 1] == b'\r' {
        lf - 1
    } else {
        lf
    };
    let line = &buf[..end];
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let Some(sp) = memchr::memchr(b' ', line) else {
            return err(K::BadStartLine, end);
        };
        if !line[..sp].eq_ignore_ascii_case(b"SIP/2.0") {
            return err(K::BadVersion, 0);
        }
        let cs = sp + 1;
        let ce = cs + line[cs..].iter().take_while(|c| c.is_ascii_digit()).count();
        if ce - cs != 3 || (ce < end && line[ce] != b' ') {
            return err(K::BadStatusCode, cs);
        }
        let code = parse_decimal(&line[cs..ce]).unwrap_or(0) as u16;
        if !(100..=699).contains(&code) {
            return err(K::BadStatusCode, cs);
        }
        let rs = (ce + 1).min(end);
        if line[rs..].iter().any(|&c| c == b'\r' || c == 0) {
            return err(K::BadStartLine, rs);
        }
        return Ok((
            StartLine::Response {
                code,
                reason: Span::new(rs, end),
            },
            next,
        ));
    }
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly one SP between the
    // three parts and none at the end (RFC 4475 §3.1.2.7, §3.1.2.8).
    let ms = 0;
    let me = line.iter().take_while(|&&c| is_token(c)).count();
    if me == 0 || me >= end || line[me] != b' ' {
        return err(K::BadStartLine, me);
    }
    let us = me + 1;
    let Some(ue) = memchr::memchr(b' ', &line[us..]).map(|i| us + i) else {
        return err(K::BadStartLine, end);
    };
    let uri = &line[us..ue];
    if uri.is_empty() {
        return err(K::BadStartLine, us);
    }
    let vs = ue + 1;
    let version = &line[vs..];
    if version.is_empty() || version[0] == b' ' || version.last() == Some(&b' ') {
        return err(K::BadStartLine, vs);
    }
    if !version.eq_ignore_ascii_case(b"SIP/2.0") {
        return if version.len() >= 4 && version[..4].eq_ignore_ascii_case(b"SIP/") {
            err(K::BadVersion, vs)
        } else {
            err(K::BadStartLine, vs)
        };
    }
    if !valid_request_uri(uri) {
        return err(K::BadRequestUri, us);
    }
    Ok((
        StartLine::Request {
            method: Span::new(ms, me),
            uri: Span::new(us, ue),
        },
        next,
    ))
}

/// An absolute URI: `scheme ":" rest`, scheme starting with a letter, no whitespace or
/// control bytes, not wrapped in `<>`.
fn valid_request_uri(uri: &[u8]) -> bool {
    let Some(colon) = memchr::memchr(b':', uri) else {
        return false;
    };
    let scheme = &uri[..colon];
    !scheme.is_empty()
        && scheme[0].is_ascii_alphabetic()
        && scheme
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        && colon + 1 < uri.len()
        && !uri
            .iter()
            .fold(false, |bad, &c| bad | (c <= 0x20) | (c == 0x7f))
}

/// Parses the first value of a Via header in `buf[start..end]`. Returns its spans and
/// the index of the comma that ends it (or `end`). On error, the offset of the fault.
pub(crate) fn parse_via(buf: &[u8], start: usize, end: usize) -> Result<(ViaSpans, usize), usize> {
    let token_at = |i: usize| -> usize {
        let mut j = i;
        while j < end && is_token(buf[j]) {
            j += 1;
        }
        j
    };
    let expect_slash = |i: usize| -> Result<usize, usize> {
        let i = skip_lws(buf, i, end);
        if i < end && buf[i] == b'/' {
            Ok(skip_lws(buf, i + 1, end))
        } else {
            Err(i)
        }
    };
    // sent-protocol = protocol-name SLASH protocol-version SLASH transport (LWS allowed
    // around the slashes, RFC 4475 §3.1.1.1).
    let i = start;
    let name_end = token_at(i);
    if name_end == i {
        return Err(i);
    }
    let i = expect_slash(name_end)?;
    let ver_end = token_at(i);
    if ver_end == i {
        return Err(i);
    }
    let i = expect_slash(ver_end)?;
    let tr_end = token_at(i);
    if tr_end == i {
        return Err(i);
    }
    let transport = Span::new(i, tr_end);
    let i = skip_lws(buf, tr_end, end);
    if i == tr_end || i >= end {
        return Err(i);
    }
    // sent-by = host [ COLON port ]
    let hs = i;
    let he = if buf[i] == b'[' {
        match memchr::memchr(b']', &buf[i..end]) {
            Some(r) => i + r + 1,
            None => return Err(i),
        }
    } else {
        let mut j = i;
        while j < end && (buf[j].is_ascii_alphanumeric() || matches!(buf[j], b'-' | b'.' | b'_')) {
            j += 1;
        }
        j
    };
    if he == hs {
        return Err(hs);
    }
    let mut via = ViaSpans {
        transport,
        host: Span::new(hs, he),
        ..ViaSpans::default()
    };
    let mut i = he;
    let k = skip_lws(buf, i, end);
    if k < end && buf[k] == b':' {
        let ps = skip_lws(buf, k + 1, end);
        let pe = ps
            + buf[ps..end]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
        via.port = match parse_decimal(&buf[ps..pe]) {
            Some(p) if p <= u16::MAX as u32 => Some(p as u16),
            _ => return Err(ps),
        };
        i = pe;
    }
    let mut params = Params::new(buf, i, end);
    for p in params.by_ref() {
        let p = p?;
        let name = p.name.of(buf);
        let is = |s: &[u8]| name.eq_ignore_ascii_case(s);
        if is(b"branch") {
            via.branch = p.value;
        } else if is(b"received") {
            via.received = p.value;
        } else if is(b"rport") {
            via.rport = Some(p.whole);
            via.rport_value = match p.value {
                None => None,
                Some(v) => match parse_decimal(v.of(buf)) {
                    Some(n) if n <= u16::MAX as u32 => Some(n as u16),
                    _ => return Err(v.start()),
                },
            };
        } else if name.len() >= 2 && name[..2].eq_ignore_ascii_case(b"oc") {
            via.oc = true;
        }
    }
    let after = params.pos();
    if after < end && buf[after] != b',' {
        return Err(after);
    }
    via.value = Span::new(start, trim_end(buf, start, after));
    Ok((via, after))
}

/// Parses a From/To value: `[display-name] <URI> *(;param)` or `URI *(;param)`.
pub(crate) fn parse_name_addr(
    buf: &[u8],
    start: usize,
    end: usize,
) -> Result<NameAddrSpans, usize> {
    let i = skip_lws(buf, start, end);
    if i >= end {
        return Err(i);
    }
    let field = &buf[..end];
    // `<URI>`: the URI and where the parameters start.
    let angle = |l: usize| -> Result<(Span, usize), usize> {
        match swar::find_byte(field, l + 1, b'>') {
            Some(r) => Ok((Span::new(l + 1, r), r + 1)),
            None => Err(l),
        }
    };
    let addr_spec = || {
        let k = i + buf[i..end]
            .iter()
            .position(|&c| matches!(c, b';' | b',' | b' ' | b'\t' | b'\r' | b'\n'))
            .unwrap_or(end - i);
        (Span::new(i, k), k)
    };
    let (uri, params_from) = match buf[i] {
        b'<' => angle(i)?,
        b'"' => {
            if !quoted_terminated(buf, i, end) {
                return Err(i);
            }
            let l = skip_lws(buf, quoted_end(buf, i, end) + 1, end);
            if l >= end || buf[l] != b'<' {
                return Err(l);
            }
            angle(l)?
        }
        _ => match swar::find_byte(field, i, b'<') {
            // Display name of tokens and whitespace; anything else means the `<` belongs
            // to something later and this is an addr-spec.
            Some(l)
                if buf[i..l]
                    .iter()
                    .fold(true, |ok, &c| ok & (is_token(c) | is_lws(c))) =>
            {
                angle(l)?
            }
            _ => addr_spec(),
        },
    };
    let u = uri.of(buf);
    let ctl = u.iter().fold(false, |bad, &c| bad | (c <= 0x20));
    if u.is_empty() || ctl || !u.contains(&b':') {
        return Err(uri.start());
    }
    let mut tag = None;
    let mut params = Params::new(buf, params_from, end);
    for p in params.by_ref() {
        let p = p?;
        if p.name.of(buf).eq_ignore_ascii_case(b"tag") {
            tag = p.value.filter(|v| !v.is_empty());
        }
    }
    if params.pos() < end {
        return Err(params.pos());
    }
    Ok(NameAddrSpans {
        value: Span::new(i, end),
        uri,
        user: uri_user(buf, uri),
        tag,
    })
}

/// The user part of a `sip:`/`sips:` URI (up to `@`, without password or user
/// parameters) or the number of a `tel:` URI (without parameters).
pub(crate) fn uri_user(buf: &[u8], uri: Span) -> Option<Span> {
    let s = uri.of(buf);
    let colon = s.iter().take(6).position(|&c| c == b':')?;
    let scheme = &s[..colon];
    let rest_start = uri.start() + colon + 1;
    let rest = &s[colon + 1..];
    let end = if scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips") {
        let at = swar::find_byte(rest, 0, b'@')?;
        rest[..at]
            .iter()
            .position(|&c| c == b':' || c == b';')
            .unwrap_or(at)
    } else if scheme.eq_ignore_ascii_case(b"tel") {
        rest.iter()
            .position(|&c| c == b';' || c == b'?')
            .unwrap_or(rest.len())
    } else {
        return None;
    };
    (end > 0).then(|| Span::new(rest_start, rest_start + end))
}

/// CSeq = 1*DIGIT LWS Method, the number below 2^31 (RFC 3261 §8.1.1.5).
pub(crate) fn parse_cseq(buf: &[u8], start: usize, end: usize) -> Result<(u32, Span), usize> {
    let de = start
        + buf[start..end]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
    let n = match parse_decimal(&buf[start..de]) {
        Some(n) if n < 1 << 31 => n,
        _ => return Err(start),
    };
    let ms = skip_lws(buf, de, end);
    if ms == de {
        return Err(de);
    }
    let me = ms + buf[ms..end].iter().take_while(|&&c| is_token(c)).count();
    if me == ms || me != end {
        return Err(me);
    }
    Ok((n, Span::new(ms, me)))
}
