//! The zero-copy scanner: one pass over the start line and headers that records, as
//! spans into the input, every key the upper layers need. It allocates nothing.

use super::error::{ParseError, ParseErrorKind as K};
use super::header::{
    C_HOST, C_TOKEN, HeaderName, Headers, Line, Lines, Params, count_elements, element_end, is_lws,
    is_token, quoted_end, quoted_terminated, run, skip_lws, trim_end,
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

impl ViaSpans {
    /// Where the parameters of this Via value lie: after sent-by (`host [COLON port]`,
    /// LWS allowed around the colon) to the end of the value.
    pub(crate) fn params_range(&self, b: &[u8]) -> (usize, usize) {
        let end = self.value.end();
        let mut from = skip_lws(b, self.host.end(), end);
        if self.port.is_some() && from < end && b[from] == b':' {
            from = skip_lws(b, from + 1, end);
            from += b[from..end]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
        }
        (from, end)
    }

    /// The RFC 7339 parameters on this Via, each from its `;` to its end, so a
    /// server's own feedback can replace them rather than repeat them.
    pub(crate) fn oc_param_spans(&self, b: &[u8]) -> impl Iterator<Item = Span> {
        let (from, end) = if self.oc {
            self.params_range(b)
        } else {
            (0, 0)
        };
        Params::new(b, from, end).flatten().filter_map(move |p| {
            let name = p.name.of(b);
            let oc = [&b"oc"[..], b"oc-algo", b"oc-validity", b"oc-seq"]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n));
            // Back from the name over whitespace to the `;` that introduced it.
            let mut start = p.whole.start();
            while start > from && b[start - 1] != b';' {
                start -= 1;
            }
            oc.then(|| Span::new(start.saturating_sub(1).max(from), p.whole.end()))
        })
    }
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
/// a From or To tag, when present, is not empty; the body is exactly Content-Length bytes
/// when Content-Length is present.
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
    /// Whether the branch is an RFC 3261 transaction identifier: the magic cookie `z9hG4bK`
    /// followed by at least one more character. A bare cookie identifies no transaction
    /// (RFC 4475 §3.2.1), so it counts as no cookie.
    pub fn has_magic_cookie(&self) -> bool {
        self.branch
            .is_some_and(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
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
            let (from, end) = v.params_range(b);
            for p in Params::new(b, from, end).flatten() {
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
            next: next_element(self.buf, e, value.end()),
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
                        next: next_element(buf, elem_end, ve),
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

/// Where the next non-empty element of a comma-separated value starts, given the index of
/// the comma (or `end`) that ends the current one; `None` when only empty elements and
/// whitespace follow, so that removing the current element removes the whole line.
pub(crate) fn next_element(buf: &[u8], comma: usize, end: usize) -> Option<u32> {
    let mut i = comma;
    while i < end && (buf[i] == b',' || is_lws(buf[i])) {
        i += 1;
    }
    (i < end).then_some(i as u32)
}

/// Parses a run of ASCII digits into a `u32`; `None` if empty, not all digits, or too
/// large. Leading zeros are allowed in any number (`1*DIGIT`, RFC 3261 §25.1).
pub(crate) fn parse_decimal(s: &[u8]) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    let s = if s.len() > 10 {
        let zeros = s.iter().take_while(|&&c| c == b'0').count();
        &s[zeros.min(s.len() - 1)..]
    } else {
        s
    };
    if s.len() > 10 {
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
    // three parts and none at the end (RFC 4475 §3.1.2.9, §3.1.2.10). The version is what
    // follows the last SP, so whitespace left between the first and the last is inside the
    // Request-URI (§3.1.2.8) unless it borders one of the separators.
    let ms = 0;
    let me = line.iter().take_while(|&&c| is_token(c)).count();
    if me == 0 || me >= end || line[me] != b' ' {
        return err(K::BadStartLine, me);
    }
    let us = me + 1;
    let ue = match memchr::memrchr(b' ', line) {
        Some(ue) if ue > us => ue,
        _ => return err(K::BadStartLine, end),
    };
    let uri = &line[us..ue];
    if uri[0] == b' ' {
        return err(K::BadStartLine, us);
    }
    let vs = ue + 1;
    let version = &line[vs..];
    if version.is_empty() || uri[uri.len() - 1] == b' ' {
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
/// control bytes, not wrapped in `<>`; a `sip:`/`sips:` URI without `?headers`, which RFC
/// 3261 §19.1.1 (Table 1) forbids in a Request-URI and a proxy must not forward there
/// (RFC 4475 §3.1.2.11).
fn valid_request_uri(uri: &[u8]) -> bool {
    let Some(colon) = memchr::memchr(b':', uri) else {
        return false;
    };
    let scheme = &uri[..colon];
    // One branch-free pass for both the forbidden bytes and any `?`.
    let (bad, question) = uri.iter().fold((false, false), |(bad, q), &c| {
        (bad | (c <= 0x20) | (c == 0x7f), q | (c == b'?'))
    });
    let valid = !scheme.is_empty()
        && scheme[0].is_ascii_alphabetic()
        && scheme
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        && colon + 1 < uri.len()
        && !bad;
    if !valid
        || !question
        || !(scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips"))
    {
        return valid;
    }
    // The user part may hold `?` (RFC 3261 `user-unreserved`); it ends at the only `@`.
    let rest = &uri[colon + 1..];
    let host = memchr::memchr(b'@', rest).map_or(rest, |at| &rest[at + 1..]);
    memchr::memchr(b'?', host).is_none()
}

/// Parses the first value of a Via header in `buf[start..end]`. Returns its spans and
/// the index of the comma that ends it (or `end`). On error, the offset of the fault.
pub(crate) fn parse_via(buf: &[u8], start: usize, end: usize) -> Result<(ViaSpans, usize), usize> {
    let token_at = |i: usize| -> usize { run(buf, i, end, C_TOKEN) };
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
            // IPv6reference (RFC 3261 §25.1): hex digits, colons, and the dots of an
            // embedded IPv4 address; anything else is not an address.
            Some(r)
                if r > 1
                    && buf[i + 1..i + r]
                        .iter()
                        .all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.') =>
            {
                i + r + 1
            }
            _ => return Err(i),
        }
    } else {
        run(buf, i, end, C_HOST)
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
            // `tag = "tag" EQUAL token`: an empty or missing value is no tag to match on,
            // and one we could not add ours beside.
            match p.value {
                Some(v) if !v.is_empty() => tag = Some(v),
                _ => return Err(p.name.start()),
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_message_len: 16 * 1024,
        max_headers: 128,
        max_vias: 70,
    };

    /// A minimal valid INVITE whose header lines are `lines` (CRLF added).
    fn invite(lines: &[&str]) -> Vec<u8> {
        let mut m = b"INVITE sip:+15551230000@example.net SIP/2.0\r\n".to_vec();
        for l in lines {
            m.extend_from_slice(l.as_bytes());
            m.extend_from_slice(b"\r\n");
        }
        m.extend_from_slice(b"\r\n");
        m
    }

    const BASE: [&str; 6] = [
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776",
        "Max-Forwards: 70",
        "From: <sip:+15559870000@carrier.example>;tag=1928",
        "To: <sip:+15551230000@example.net>",
        "Call-ID: a84b4c76e66710",
        "CSeq: 314159 INVITE",
    ];

    /// BASE with line `i` replaced by `line`.
    fn with(i: usize, line: &str) -> Vec<u8> {
        let mut lines = BASE.to_vec();
        lines[i] = line;
        invite(&lines)
    }

    fn fail(buf: &[u8]) -> ParseError {
        scan(buf, &LIMITS).expect_err("scan must reject")
    }

    fn at(buf: &[u8], needle: &str) -> usize {
        let n = needle.as_bytes();
        buf.windows(n.len()).position(|w| w == n).expect("needle")
    }

    #[test]
    fn a_plain_request_yields_every_key() {
        let buf = invite(&BASE);
        let m = scan(&buf, &LIMITS).unwrap();
        assert!(m.is_request());
        assert_eq!(m.method(), Some(Method::Invite));
        assert_eq!(m.request_uri(), Some(&b"sip:+15551230000@example.net"[..]));
        assert_eq!(m.request_user(), Some(&b"+15551230000"[..]));
        let via = m.top_via();
        assert_eq!(via.transport_kind(), Transport::Udp);
        assert_eq!(via.host, b"192.0.2.1");
        assert_eq!(via.port, Some(5060));
        assert_eq!(via.branch, Some(&b"z9hG4bK776"[..]));
        assert_eq!(m.via_count(), 1);
        assert_eq!(m.max_forwards(), Some(70));
        assert_eq!(m.from_tag(), Some(&b"1928"[..]));
        assert_eq!(m.to_tag(), None);
        assert_eq!(m.calling(), Some(&b"+15559870000"[..]));
        assert_eq!(m.call_id(), b"a84b4c76e66710");
        assert_eq!(m.cseq().number, 314159);
        assert_eq!(m.cseq().method, Method::Invite);
        assert_eq!(m.content_length(), None);
        assert_eq!(m.body(), b"");
        assert_eq!(m.header_count(), 6);
        assert_eq!(m.status(), None);
        assert_eq!(m.reason(), None);
    }

    #[test]
    fn a_response_yields_status_and_reason() {
        let buf = b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\
            From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\
            Content-Length: 0\r\n\r\n";
        let m = scan(buf, &LIMITS).unwrap();
        assert!(!m.is_request());
        assert_eq!(m.status(), Some(180));
        assert_eq!(m.reason(), Some(&b"Ringing"[..]));
        assert_eq!(m.method(), None);
        assert_eq!(m.request_uri(), None);
        assert_eq!(m.request_user(), None);
        assert_eq!(m.to_tag(), Some(&b"2"[..]));
        assert!(m.top_via().transport_kind().is_reliable());
    }

    #[test]
    fn leading_line_ends_are_skipped_and_offsets_stay_on_the_callers_buffer() {
        let mut buf = b"\r\n\r\n\n".to_vec();
        buf.extend_from_slice(&invite(&BASE));
        let m = scan(&buf, &LIMITS).unwrap();
        assert!(m.as_bytes().starts_with(b"INVITE "));
        let mut bad = b"\r\n".to_vec();
        bad.extend_from_slice(&with(5, "CSeq: x INVITE"));
        assert_eq!(fail(&bad).offset, at(&bad, "x INVITE"));
    }

    #[test]
    fn content_length_bounds_the_body_and_trailing_bytes_are_not_the_message() {
        let mut lines = BASE.to_vec();
        lines.push("l: 5");
        let mut buf = invite(&lines);
        buf.extend_from_slice(b"hellotrailing junk");
        let m = scan(&buf, &LIMITS).unwrap();
        assert_eq!(m.content_length(), Some(5));
        assert_eq!(m.body(), b"hello");
        assert!(m.as_bytes().ends_with(b"\r\n\r\nhello"));
    }

    #[test]
    fn without_content_length_the_body_is_the_rest_of_the_input() {
        let mut buf = invite(&BASE);
        buf.extend_from_slice(b"v=0\r\n");
        let m = scan(&buf, &LIMITS).unwrap();
        assert_eq!(m.content_length(), None);
        assert_eq!(m.body(), b"v=0\r\n");
    }

    #[test]
    fn every_parse_error_kind_is_reported_with_its_offset() {
        use HeaderName as H;
        // (input, kind, offset)
        let cases: Vec<(Vec<u8>, K, usize)> = {
            let mut v = Vec::new();
            let b = with(5, "CSeq: 2147483648 INVITE");
            v.push((b.clone(), K::BadCSeq, at(&b, "2147483648")));
            let b = with(5, "CSeq: 1 INVITE x");
            v.push((b.clone(), K::BadCSeq, at(&b, " x")));
            let b = with(5, "CSeq: 1 BYE");
            v.push((b.clone(), K::CSeqMethodMismatch, at(&b, "BYE")));
            let b = with(4, "Call-ID: a b");
            v.push((b.clone(), K::BadCallId, at(&b, "a b")));
            // An empty value is reported where the value would have ended.
            let b = with(4, "Call-ID:");
            v.push((b.clone(), K::BadCallId, at(&b, "CSeq")));
            let b = with(1, "Max-Forwards: 256");
            v.push((b.clone(), K::BadMaxForwards, at(&b, "256")));
            let b = with(1, "Max-Forwards: -1");
            v.push((b.clone(), K::BadMaxForwards, at(&b, "-1")));
            let b = with(1, "Content-Length: -999");
            v.push((b.clone(), K::BadContentLength, at(&b, "-999")));
            let b = with(1, "Content-Length: 12345678901");
            v.push((b.clone(), K::BadContentLength, at(&b, "12345678901")));
            let b = with(3, "To: \"open <sip:a@b>");
            v.push((b.clone(), K::BadNameAddr, at(&b, "\"open")));
            let b = with(2, "From: <sip:a@b>;tag=");
            v.push((b.clone(), K::BadNameAddr, at(&b, "tag=")));
            let b = with(0, "Via: SIP/2.0/UDP 192.0.2.15;;,;,,");
            v.push((b.clone(), K::BadVia, at(&b, ";;,") + 1));
            let b = with(0, "Via: SIP/2.0/UDP h:99999;branch=z9hG4bK1");
            v.push((b.clone(), K::BadVia, at(&b, "99999")));
            let b = with(0, "Via: SIP/2.0 h");
            v.push((b.clone(), K::BadVia, at(&b, " h") + 1));
            let b = with(2, "To: <sip:x@y>");
            v.push((b.clone(), K::DuplicateHeader(H::To), at(&b, "To: <sip:+")));
            let b = with(0, "f: <sip:x@y>;tag=2");
            v.push((b.clone(), K::DuplicateHeader(H::From), at(&b, "From")));
            let b = with(0, "i: other");
            v.push((b.clone(), K::DuplicateHeader(H::CallId), at(&b, "Call-ID")));
            let b = with(0, "CSeq: 1 INVITE");
            v.push((b.clone(), K::DuplicateHeader(H::CSeq), at(&b, "CSeq: 3")));
            let b = with(0, "Max-Forwards: 1");
            v.push((
                b.clone(),
                K::DuplicateHeader(H::MaxForwards),
                at(&b, "Max-Forwards: 70"),
            ));
            let mut lines = BASE.to_vec();
            lines.push("Content-Length: 0");
            lines.push("l: 0");
            let b = invite(&lines);
            v.push((
                b.clone(),
                K::DuplicateHeader(H::ContentLength),
                at(&b, "l: 0"),
            ));
            let b = with(0, "NoColon");
            v.push((b.clone(), K::BadHeaderLine, at(&b, "NoColon")));
            for (i, name) in [H::Via, H::From, H::To, H::CallId, H::CSeq]
                .into_iter()
                .enumerate()
            {
                let i = [0, 2, 3, 4, 5][i];
                let b = with(i, "X-Filler: 1");
                v.push((b.clone(), K::MissingHeader(name), b.len()));
            }
            let mut lines = BASE.to_vec();
            lines.push("Content-Length: 10");
            let mut b = invite(&lines);
            b.extend_from_slice(b"short");
            v.push((b.clone(), K::BodyTooShort, b.len()));
            let mut b = invite(&BASE);
            b.truncate(b.len() - 2);
            v.push((b.clone(), K::Truncated, b.len()));
            v.push((b"\r\n\r\n".to_vec(), K::Empty, 0));
            v.push((Vec::new(), K::Empty, 0));
            v
        };
        for (buf, kind, offset) in cases {
            let e = fail(&buf);
            assert_eq!(
                (e.kind, e.offset),
                (kind, offset),
                "{}",
                String::from_utf8_lossy(&buf)
            );
        }
    }

    #[test]
    fn limits_bound_the_work() {
        let buf = invite(&BASE);
        let tight = Limits {
            max_message_len: buf.len() - 1,
            ..LIMITS
        };
        assert_eq!(
            scan(&buf, &tight).unwrap_err(),
            ParseError::new(K::TooLarge, buf.len() - 1)
        );
        // The ceiling applies whatever the configured limit says.
        let huge = Limits {
            max_message_len: usize::MAX,
            ..LIMITS
        };
        let big = vec![b'a'; Limits::MAX_MESSAGE_LEN + 1];
        assert_eq!(scan(&big, &huge).unwrap_err().kind, K::TooLarge);
        let few = Limits {
            max_headers: 5,
            ..LIMITS
        };
        let e = scan(&buf, &few).unwrap_err();
        assert_eq!((e.kind, e.offset), (K::TooManyHeaders, at(&buf, "CSeq")));
        let vias = with(1, "Via: SIP/2.0/UDP a, SIP/2.0/UDP b");
        let two = Limits {
            max_vias: 2,
            ..LIMITS
        };
        let e = scan(&vias, &two).unwrap_err();
        assert_eq!(
            (e.kind, e.offset),
            (K::TooManyVias, at(&vias, "SIP/2.0/UDP a"))
        );
        assert!(
            scan(
                &vias,
                &Limits {
                    max_vias: 3,
                    ..LIMITS
                }
            )
            .is_ok()
        );
    }

    #[test]
    fn request_lines_need_exactly_one_space_between_three_parts() {
        let line = |l: &str| {
            let mut b = l.as_bytes().to_vec();
            b.extend_from_slice(b"\r\n");
            parse_start_line(&b)
                .map(|_| ())
                .map_err(|e| (e.kind, e.offset))
        };
        assert_eq!(line("INVITE sip:a@b SIP/2.0"), Ok(()));
        assert_eq!(line("INVITE sip:a@b sip/2.0"), Ok(()));
        assert_eq!(line("INVITE  sip:a@b SIP/2.0"), Err((K::BadStartLine, 7)));
        assert_eq!(line("INVITE sip:a@b  SIP/2.0"), Err((K::BadStartLine, 16)));
        assert_eq!(line("INVITE sip:a@b SIP/2.0 "), Err((K::BadStartLine, 23)));
        assert_eq!(line("INVITE sip:a@b"), Err((K::BadStartLine, 14)));
        assert_eq!(line("INVITE"), Err((K::BadStartLine, 6)));
        assert_eq!(line("INV(TE sip:a@b SIP/2.0"), Err((K::BadStartLine, 3)));
        assert_eq!(line(" INVITE sip:a@b SIP/2.0"), Err((K::BadStartLine, 0)));
        assert_eq!(line("INVITE sip:a@b SIP/7.0"), Err((K::BadVersion, 15)));
        assert_eq!(line("INVITE sip:a@b HTTP/1.1"), Err((K::BadStartLine, 15)));
        // Whitespace that borders neither separator is inside the Request-URI.
        assert_eq!(
            line("INVITE sip:a@b; lr SIP/2.0"),
            Err((K::BadRequestUri, 7))
        );
        assert_eq!(
            line("INVITE sip:a@b;\tlr SIP/2.0"),
            Err((K::BadRequestUri, 7))
        );
        assert_eq!(line("INVITE <sip:a@b> SIP/2.0"), Err((K::BadRequestUri, 7)));
        assert_eq!(line("INVITE a@b SIP/2.0"), Err((K::BadRequestUri, 7)));
        assert_eq!(line("INVITE sip: SIP/2.0"), Err((K::BadRequestUri, 7)));
        assert_eq!(line("INVITE 1sip:a SIP/2.0"), Err((K::BadRequestUri, 7)));
        assert_eq!(line("INVITE sip:a\x7f SIP/2.0"), Err((K::BadRequestUri, 7)));
        assert_eq!(line("INVITE sip:a@b\0 SIP/2.0"), Err((K::BadRequestUri, 7)));
    }

    #[test]
    fn sip_request_uris_may_not_carry_headers_but_their_user_part_may_hold_a_question_mark() {
        let ok = |u: &str| valid_request_uri(u.as_bytes());
        assert!(!ok("sip:user@example.com?Route=%3Csip:example.com%3E"));
        assert!(!ok("SIPS:example.com?x=y"));
        assert!(ok("sip:crazy?,/;;*:pass@example.com"));
        assert!(ok("sip:user;par=u%40example.net@example.com"));
        // Other schemes are opaque here: their fate is the router's (416), not ours.
        assert!(ok("http://example.com/?q=1"));
        assert!(ok("tel:+15551230000"));
    }

    #[test]
    fn status_lines_need_a_three_digit_code_in_range() {
        let line = |l: &[u8]| {
            let mut b = l.to_vec();
            b.extend_from_slice(b"\r\n");
            parse_start_line(&b).map_err(|e| (e.kind, e.offset))
        };
        let Ok((StartLine::Response { code, reason }, next)) = line(b"SIP/2.0 200 OK") else {
            panic!("valid status line");
        };
        assert_eq!((code, reason.range(), next), (200, 12..14, 16));
        let Ok((StartLine::Response { code, reason }, _)) = line(b"SIP/2.0 100 ") else {
            panic!("empty reason phrase is valid");
        };
        assert_eq!((code, reason.len()), (100, 0));
        assert!(line(b"SIP/2.0 699 \xd0\xbd\xd0\xbe").is_ok());
        assert_eq!(
            line(b"SIP/2.0 4294967301 x").unwrap_err(),
            (K::BadStatusCode, 8)
        );
        assert_eq!(line(b"SIP/2.0 099 x").unwrap_err(), (K::BadStatusCode, 8));
        assert_eq!(line(b"SIP/2.0 700 x").unwrap_err(), (K::BadStatusCode, 8));
        assert_eq!(line(b"SIP/2.0 20x x").unwrap_err(), (K::BadStatusCode, 8));
        assert_eq!(line(b"SIP/2.0 20").unwrap_err(), (K::BadStatusCode, 8));
        assert_eq!(line(b"SIP/3.0 200 OK").unwrap_err(), (K::BadVersion, 0));
        assert_eq!(line(b"SIP/2.0").unwrap_err(), (K::BadStartLine, 7));
        assert_eq!(
            line(b"SIP/2.0 200 a\rb").unwrap_err(),
            (K::BadStartLine, 12)
        );
        assert_eq!(
            line(b"SIP/2.0 200 a\0b").unwrap_err(),
            (K::BadStartLine, 12)
        );
        assert_eq!(
            parse_start_line(b"SIP/2.0 200 OK").unwrap_err(),
            ParseError::new(K::Truncated, 14)
        );
    }

    #[test]
    fn parse_decimal_accepts_any_number_of_leading_zeros() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"0000"), Some(0));
        assert_eq!(parse_decimal(b"0068"), Some(68));
        assert_eq!(parse_decimal(b"00000000000000000150"), Some(150));
        assert_eq!(parse_decimal(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_decimal(b"004294967295"), Some(u32::MAX));
        assert_eq!(parse_decimal(b"4294967296"), None);
        assert_eq!(parse_decimal(b"10000000000"), None);
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"1a"), None);
        assert_eq!(parse_decimal(b"+1"), None);
        assert_eq!(parse_decimal(b" 1"), None);
    }

    #[test]
    fn cseq_is_number_lws_method_with_the_number_below_two_to_the_31() {
        let p = |s: &[u8]| parse_cseq(s, 0, s.len()).map(|(n, m)| (n, m.range()));
        assert_eq!(p(b"0009\r\n  INVITE"), Ok((9, 8..14)));
        assert_eq!(p(b"00000000000001 ACK"), Ok((1, 15..18)));
        assert_eq!(p(b"2147483647 X"), Ok((2147483647, 11..12)));
        assert_eq!(p(b"2147483648 X"), Err(0));
        assert_eq!(p(b"36893488147419103232 REGISTER"), Err(0));
        assert_eq!(p(b"1INVITE"), Err(1));
        assert_eq!(p(b"1 "), Err(2));
        assert_eq!(p(b"1 IN VITE"), Err(4));
        assert_eq!(p(b"x INVITE"), Err(0));
    }

    #[test]
    fn several_vias_on_one_line_with_quotes_and_brackets_are_counted_and_the_first_parsed() {
        let buf = with(
            0,
            r#"v: SIP/2.0/UDP a;oc-algo="loss,rate" , SIP/2.0/TCP b;x=<p,q> , SIP/2.0/TLS c"#,
        );
        let m = scan(&buf, &LIMITS).unwrap();
        assert_eq!(m.via_count(), 3);
        let via = m.top_via();
        assert_eq!(via.host, b"a");
        assert_eq!(via.oc_algo, Some(&br#""loss,rate""#[..]));
        assert_eq!(via.value, &br#"SIP/2.0/UDP a;oc-algo="loss,rate""#[..]);
        let next = m.top_via_line.next.unwrap() as usize;
        assert!(buf[next..].starts_with(b"SIP/2.0/TCP b"));
        // Angle brackets are no part of a Via parameter value (RFC 3261 `gen-value`).
        let bad = with(0, "Via: SIP/2.0/UDP a;x=<p,q>");
        assert_eq!(fail(&bad).kind, K::BadVia);
    }

    #[test]
    fn vias_across_several_headers_add_up_and_only_the_first_value_is_top() {
        let mut lines = BASE.to_vec();
        lines.insert(1, "Via: SIP/2.0/UDP d;branch=z9hG4bKd, SIP/2.0/UDP e");
        lines.insert(2, "Max-Breadth: 3");
        lines.insert(3, "VIA: SIP/2.0/UDP f");
        let buf = invite(&lines);
        let m = scan(&buf, &LIMITS).unwrap();
        assert_eq!(m.via_count(), 4);
        assert_eq!(m.top_via().host, b"192.0.2.1");
        assert_eq!(m.top_via_line.next, None);
        assert_eq!(m.via_lines, 3);
    }

    #[test]
    fn a_compact_via_on_top_is_the_top_via() {
        let mut lines = BASE.to_vec();
        lines.insert(0, "v: SIP/2.0/TCP first.example;branch=z9hG4bKfirst");
        let buf = invite(&lines);
        let m = scan(&buf, &LIMITS).unwrap();
        assert_eq!(m.branch(), Some(&b"z9hG4bKfirst"[..]));
        assert_eq!(m.via_count(), 2);
    }

    #[test]
    fn sent_by_and_parameters_allow_lws_around_every_separator() {
        let buf = with(
            0,
            "Via:  SIP  /  2.0  / UDP\r\n  host.example  :  5070  ;\r\n branch  =  z9hG4bKx ; received = 192.0.2.9 ;rport ; oc = 20 ;oc-seq=7",
        );
        let m = scan(&buf, &LIMITS).unwrap();
        let via = m.top_via();
        assert_eq!(via.transport, b"UDP");
        assert_eq!(via.host, b"host.example");
        assert_eq!(via.port, Some(5070));
        assert_eq!(via.branch, Some(&b"z9hG4bKx"[..]));
        assert_eq!(via.received, Some(&b"192.0.2.9"[..]));
        assert_eq!(via.rport, Some(None));
        assert_eq!(via.oc, Some(&b"20"[..]));
        assert_eq!(via.oc_seq, Some(&b"7"[..]));
        assert!(via.supports_oc());
        // `host ;branch=` without a port.
        let buf = with(0, "Via: SIP/2.0/UDP host ;branch=z9hG4bKy ;oc");
        let via = scan(&buf, &LIMITS).unwrap().top_via();
        assert_eq!((via.host, via.port), (&b"host"[..], None));
        assert_eq!(via.branch, Some(&b"z9hG4bKy"[..]));
        assert_eq!(via.oc, Some(&b""[..]));
    }

    #[test]
    fn via_hosts_may_be_ipv6_references_with_ports_and_rport_may_carry_a_value() {
        let buf = with(
            0,
            "Via: SIP/2.0/UDP [2001:db8::9:1]:6050;rport=5062;received=[2001:db8::9:255];branch=z9hG4bK1",
        );
        let via = scan(&buf, &LIMITS).unwrap().top_via();
        assert_eq!(via.host, b"[2001:db8::9:1]");
        assert_eq!(via.port, Some(6050));
        assert_eq!(via.rport, Some(Some(5062)));
        assert_eq!(via.received, Some(&b"[2001:db8::9:255]"[..]));
        for bad in [
            "Via: SIP/2.0/UDP [2001:db8::1;branch=z9hG4bK1",
            "Via: SIP/2.0/UDP h;rport=x",
            "Via: SIP/2.0/UDP h;rport=70000",
            "Via: SIP/2.0/UDP h junk",
            "Via: SIP/2.0/UDP",
            "Via: SIP/2.0/UDP :5060",
            "Via: SIP/2.0/UDP [2001:db8,::1]:5060;branch=z9hG4bK1",
            "Via: SIP/2.0/UDP [];branch=z9hG4bK1",
            "Via: SIP/2.0/UDP [host.example];branch=z9hG4bK1",
        ] {
            assert_eq!(fail(&with(0, bad)).kind, K::BadVia, "{bad}");
        }
        let mapped = with(
            0,
            "Via: SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bK1",
        );
        assert_eq!(
            scan(&mapped, &LIMITS).unwrap().top_via().host,
            b"[::ffff:192.0.2.10]"
        );
    }

    #[test]
    fn magic_cookie_needs_an_identifier_after_it() {
        let via = |branch: &str| {
            let line = format!("Via: SIP/2.0/UDP h;branch={branch}");
            let buf = with(0, &line);
            scan(&buf, &LIMITS).unwrap().top_via().has_magic_cookie()
        };
        assert!(via("z9hG4bK1"));
        assert!(!via("z9hG4bK"));
        assert!(!via("z9hg4bk1"));
        assert!(!via("390skdjuw"));
        let buf = with(0, "Via: SIP/2.0/UDP h");
        assert!(!scan(&buf, &LIMITS).unwrap().top_via().has_magic_cookie());
    }

    #[test]
    fn name_addr_forms_are_parsed() {
        let p = |v: &str| {
            let b = v.as_bytes();
            parse_name_addr(b, 0, b.len()).map(|n| {
                let s = |x: Span| String::from_utf8_lossy(x.of(b)).into_owned();
                (s(n.uri), n.user.map(s), n.tag.map(s))
            })
        };
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            p(r#""J Rosenberg \\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8"#),
            Ok((
                "sip:jdrosen@example.com".into(),
                some("jdrosen"),
                some("98asjd8")
            ))
        );
        assert_eq!(
            p("caller<sip:caller@example.com>;tag=323"),
            Ok(("sip:caller@example.com".into(), some("caller"), some("323")))
        );
        assert_eq!(
            p("token1~` token2'+_ <sip:mundane@example.com>;x=\"a;b\";tag=_t~1"),
            Ok((
                "sip:mundane@example.com".into(),
                some("mundane"),
                some("_t~1")
            ))
        );
        assert_eq!(
            p("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n"),
            Ok((
                "sip:vivekg@chair-dnrc.example.com".into(),
                some("vivekg"),
                some("1918181833n")
            ))
        );
        assert_eq!(
            p("<tel:+1-555-1234;phone-context=x>;TAG=9"),
            Ok((
                "tel:+1-555-1234;phone-context=x".into(),
                some("+1-555-1234"),
                some("9")
            ))
        );
        assert_eq!(p("<http://www.example.com>;tag=3").map(|x| x.1), Ok(None));
        assert_eq!(p("isbn:2983792873").map(|x| x.1), Ok(None));
        // Errors: unterminated quote, no `>`, no scheme, LWS inside <>, unquoted comma,
        // junk after the URI, empty tag.
        assert_eq!(p(r#""Mr. J. User <sip:j.user@example.com>"#), Err(0));
        assert_eq!(p("<sip:a@b"), Err(0));
        assert_eq!(p("<nocolon>"), Err(1));
        assert_eq!(p("\"W\" < sip:t.watson@example.org >"), Err(5));
        assert_eq!(
            p("Bell, Alexander <sip:a.g.bell@example.com>;tag=43"),
            Err(0)
        );
        assert_eq!(p("<sip:a@b> junk"), Err(10));
        assert_eq!(p("<sip:a@b>;tag"), Err(10));
        assert_eq!(p(""), Err(0));
    }

    #[test]
    fn uri_user_is_the_user_without_password_or_parameters_or_the_tel_number() {
        let u = |s: &str| {
            let b = s.as_bytes();
            uri_user(b, Span::new(0, b.len()))
                .map(|x| String::from_utf8_lossy(x.of(b)).into_owned())
        };
        assert_eq!(u("sip:alice@example.com").as_deref(), Some("alice"));
        assert_eq!(u("SIPS:bob:secret@example.com").as_deref(), Some("bob"));
        assert_eq!(
            u("sip:+15551230000;npdi;rn=+1555@gw;user=phone").as_deref(),
            Some("+15551230000")
        );
        assert_eq!(
            u("sip:user;par=u%40example.net@example.com").as_deref(),
            Some("user")
        );
        assert_eq!(
            u("tel:+1-555-1234;phone-context=x").as_deref(),
            Some("+1-555-1234")
        );
        assert_eq!(u("TEL:911").as_deref(), Some("911"));
        assert_eq!(u("sip:example.com"), None);
        assert_eq!(u("sip:@example.com"), None);
        assert_eq!(u("tel:"), None);
        assert_eq!(u("mailto:a@b"), None);
        assert_eq!(u("nocolon"), None);
    }

    #[test]
    fn contact_route_and_record_route_give_their_first_element() {
        let mut lines = BASE.to_vec();
        lines.push(r#"m: "A, B" <sip:a@h;x=1,2>;q=0.3, <sip:b@h>"#);
        lines.push("Route: <sip:p1;lr>, <sip:p2;lr>");
        lines.push("Route: <sip:p3;lr>");
        lines.push("Record-Route: <sip:rr1;lr>,<sip:rr2>");
        let buf = invite(&lines);
        let m = scan(&buf, &LIMITS).unwrap();
        assert_eq!(m.contact(), Some(&br#""A, B" <sip:a@h;x=1,2>;q=0.3"#[..]));
        assert_eq!(m.route(), Some(&b"<sip:p1;lr>"[..]));
        assert_eq!(m.record_route(), Some(&b"<sip:rr1;lr>"[..]));
        let first = m.route_first().unwrap();
        assert_eq!(first.value.of(&buf), b"<sip:p1;lr>");
        assert!(buf[first.next.unwrap() as usize..].starts_with(b"<sip:p2;lr>"));
        let plain = invite(&BASE);
        let none = scan(&plain, &LIMITS).unwrap();
        assert_eq!(
            (none.contact(), none.route(), none.record_route()),
            (None, None, None)
        );
    }

    #[test]
    fn next_element_skips_empty_elements_and_ends_the_line_on_trailing_commas() {
        let v = b"a, ,  b";
        assert_eq!(next_element(v, 1, v.len()), Some(6));
        let v = b"a , \r\n ,";
        assert_eq!(next_element(v, 2, v.len()), None);
        assert_eq!(next_element(b"a", 1, 1), None);
    }

    #[test]
    fn a_trailing_comma_after_the_only_via_leaves_no_next_value() {
        let buf = with(0, "Via: SIP/2.0/UDP h;branch=z9hG4bK1 ,");
        let m = scan(&buf, &LIMITS).unwrap();
        assert_eq!(m.via_count(), 1);
        assert_eq!(m.top_via_line.next, None);
    }

    #[test]
    fn call_id_is_any_printable_word_without_whitespace() {
        let buf = with(4, r#"i: intmeth.word%ZK-!.*_+'@word`~)(><:\/"][?}{"#);
        let m = scan(&buf, &LIMITS).unwrap();
        assert_eq!(
            m.call_id(),
            br#"intmeth.word%ZK-!.*_+'@word`~)(><:\/"][?}{"#
        );
        assert_eq!(fail(&with(4, "Call-ID: caf\u{e9}")).kind, K::BadCallId);
    }

    #[test]
    fn max_forwards_and_content_length_take_leading_zeros() {
        let mut lines = BASE.to_vec();
        lines[1] = "MaX-fOrWaRdS: 000000000000068";
        lines.push("Content-Length   : 00000000000000");
        let buf = invite(&lines);
        let m = scan(&buf, &LIMITS).unwrap();
        assert_eq!(m.max_forwards(), Some(68));
        assert_eq!(m.content_length(), Some(0));
    }

    #[test]
    fn unknown_and_extension_headers_are_kept_verbatim() {
        let mut lines = BASE.to_vec();
        lines.push("UnknownHeaderWithUnusualValue: ;;,,;;,;");
        lines.push("C%6Fntact: <sip:alias2@host2.example.com>");
        let buf = invite(&lines);
        let m = scan(&buf, &LIMITS).unwrap();
        assert_eq!(m.contact(), None);
        let unusual = m
            .headers()
            .find(|h| h.name == b"UnknownHeaderWithUnusualValue");
        assert_eq!(unusual.map(|h| h.value), Some(&b";;,,;;,;"[..]));
        assert_eq!(m.headers().count(), m.header_count());
    }

    #[test]
    fn bare_lf_messages_are_scanned_and_recognised() {
        let buf = String::from_utf8(invite(&BASE))
            .unwrap()
            .replace("\r\n", "\n");
        let m = scan(buf.as_bytes(), &LIMITS).unwrap();
        assert!(m.uses_bare_lf());
        assert_eq!(m.call_id(), b"a84b4c76e66710");
        assert!(!scan(&invite(&BASE), &LIMITS).unwrap().uses_bare_lf());
    }

    #[test]
    fn transports_classify_case_insensitively_and_know_reliability() {
        use Transport::*;
        for (t, kind, reliable) in [
            (&b"udp"[..], Udp, false),
            (b"TCP", Tcp, true),
            (b"Tls", Tls, true),
            (b"SCTP", Sctp, true),
            (b"ws", Ws, true),
            (b"WSS", Wss, true),
            (b"UNKNOWN", Other, false),
        ] {
            assert_eq!(Transport::parse(t), kind);
            assert_eq!(kind.is_reliable(), reliable);
        }
    }

    #[test]
    fn the_default_limits_are_the_documented_ones() {
        assert_eq!(Limits::default(), LIMITS);
    }
}
