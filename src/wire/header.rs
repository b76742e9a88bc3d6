//! Header lines: names (long and compact), line stepping with folding and LF-only line
//! ends, comma splitting that respects quotes and angle brackets, and `;param` lookup.

use super::span::Span;
use super::swar;

/// Headers the scanner knows by name. Every other header is [`HeaderName::Other`] and is
/// kept byte-for-byte; nothing is ever dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderName {
    /// `Via` / `v`
    Via,
    /// `From` / `f`
    From,
    /// `To` / `t`
    To,
    /// `Call-ID` / `i`
    CallId,
    /// `CSeq`
    CSeq,
    /// `Max-Forwards`
    MaxForwards,
    /// `Content-Length` / `l`
    ContentLength,
    /// `Content-Type` / `c`
    ContentType,
    /// `Content-Encoding` / `e`
    ContentEncoding,
    /// `Contact` / `m`
    Contact,
    /// `Route`
    Route,
    /// `Record-Route`
    RecordRoute,
    /// `Supported` / `k`
    Supported,
    /// `Subject` / `s`
    Subject,
    /// `Event` / `o`
    Event,
    /// `Refer-To` / `r`
    ReferTo,
    /// `Allow-Events` / `u`
    AllowEvents,
    /// `Timestamp`
    Timestamp,
    /// `Retry-After`
    RetryAfter,
    /// `Require`
    Require,
    /// `Proxy-Require`
    ProxyRequire,
    /// Any other header.
    Other,
}

impl HeaderName {
    /// Classifies a header name, case-insensitively, including the RFC 3261 §7.3.3 and
    /// extension compact forms.
    pub fn classify(name: &[u8]) -> HeaderName {
        Self::classify_packed(name, swar::pack_lower(name))
    }

    /// Classifies `name` given its first eight bytes packed by [`swar::pack_lower`]: a
    /// match on length and one word compare (plus the tail for names over 8 bytes).
    #[inline]
    pub(crate) fn classify_packed(name: &[u8], w: u64) -> HeaderName {
        use HeaderName::*;
        use swar::pack_const as p;
        let tail = |t: &[u8]| name[8..].eq_ignore_ascii_case(t);
        match name.len() {
            1 => match w as u8 {
                b'v' => Via,
                b'f' => From,
                b't' => To,
                b'i' => CallId,
                b'm' => Contact,
                b'l' => ContentLength,
                b'c' => ContentType,
                b'e' => ContentEncoding,
                b'k' => Supported,
                b's' => Subject,
                b'o' => Event,
                b'r' => ReferTo,
                b'u' => AllowEvents,
                _ => Other,
            },
            2 if w == const { p(b"to") } => To,
            3 if w == const { p(b"via") } => Via,
            4 if w == const { p(b"from") } => From,
            4 if w == const { p(b"cseq") } => CSeq,
            5 if w == const { p(b"route") } => Route,
            5 if w == const { p(b"event") } => Event,
            7 if w == const { p(b"call-id") } => CallId,
            7 if w == const { p(b"contact") } => Contact,
            7 if w == const { p(b"subject") } => Subject,
            7 if w == const { p(b"require") } => Require,
            8 if w == const { p(b"refer-to") } => ReferTo,
            9 if w == const { p(b"supported") } && tail(b"d") => Supported,
            9 if w == const { p(b"timestamp") } && tail(b"p") => Timestamp,
            11 if w == const { p(b"retry-after") } && tail(b"ter") => RetryAfter,
            12 if w == const { p(b"max-forwards") } && tail(b"ards") => MaxForwards,
            12 if w == const { p(b"record-route") } && tail(b"oute") => RecordRoute,
            12 if w == const { p(b"content-type") } && tail(b"type") => ContentType,
            12 if w == const { p(b"allow-events") } && tail(b"ents") => AllowEvents,
            13 if w == const { p(b"proxy-require") } && tail(b"quire") => ProxyRequire,
            14 if w == const { p(b"content-length") } && tail(b"length") => ContentLength,
            16 if w == const { p(b"content-encoding") } && tail(b"encoding") => ContentEncoding,
            _ => Other,
        }
    }
}

/// One header as it appears in the message: its name as written, its classification and
/// its value with surrounding whitespace trimmed. A folded value keeps its inner line
/// breaks; every parser here treats them as whitespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// The name exactly as written (`Via`, `v`, `vIA`...).
    pub name: &'a [u8],
    /// The classified name.
    pub kind: HeaderName,
    /// The trimmed value.
    pub value: &'a [u8],
}

/// Iterator over the header lines of a scanned message, in order, every header included.
#[derive(Clone, Debug)]
pub struct Headers<'a> {
    lines: Lines<'a>,
}

impl<'a> Headers<'a> {
    pub(crate) fn new(buf: &'a [u8], pos: usize) -> Self {
        Headers {
            lines: Lines::new(buf, pos),
        }
    }
}

impl<'a> Iterator for Headers<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        let buf = self.lines.buf;
        match self.lines.next_line() {
            Line::Header(h) => Some(Header {
                name: h.name.of(buf),
                kind: h.kind,
                value: h.value(buf).of(buf),
            }),
            _ => None,
        }
    }
}

/// One raw header line located in a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawHeader {
    /// The name as written.
    pub(crate) name: Span,
    /// The classified name.
    pub(crate) kind: HeaderName,
    /// Index of the colon after the name.
    pub(crate) colon: u32,
    /// From the first byte of the name to just past the line end of the last
    /// continuation line.
    pub(crate) line: Span,
}

impl RawHeader {
    /// The value with surrounding whitespace trimmed (may span folded lines).
    #[inline]
    pub(crate) fn value(&self, buf: &[u8]) -> Span {
        let end = self.line.end();
        let vs = skip_lws(buf, self.colon as usize + 1, end);
        Span::new(vs, trim_end(buf, vs, end))
    }
}

/// What starts at a position in the header section.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Line {
    /// A header line.
    Header(RawHeader),
    /// The empty line ending the headers; the body starts at `body`.
    End { body: usize },
    /// The input ends before the header section does.
    Truncated,
    /// A line that is not `name: value`.
    Malformed { at: usize },
}

/// Longest header name accepted (longer lines are malformed).
const MAX_NAME: usize = 256;

/// Walks header lines front to back.
#[derive(Clone, Debug)]
pub(crate) struct Lines<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(buf: &'a [u8], pos: usize) -> Self {
        Lines {
            buf,
            pos: pos.min(buf.len()),
        }
    }

    /// Where the next line starts.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Skips the rest of a malformed line; false if the input ends first.
    pub(crate) fn skip_line(&mut self) -> bool {
        match swar::find_byte(self.buf, self.pos, b'\n') {
            Some(lf) => {
                self.pos = lf + 1;
                true
            }
            None => false,
        }
    }

    /// Locates the header line (or the end of headers) at the current position and
    /// advances past it. A line ends at LF (a preceding CR belongs to the terminator); a
    /// following line that starts with SP or HT continues it (RFC 3261 §7.3.1). On
    /// `Malformed`, the position stays at the line so [`Lines::skip_line`] can step it.
    pub(crate) fn next_line(&mut self) -> Line {
        let buf = self.buf;
        let len = buf.len();
        let pos = self.pos;
        if pos >= len {
            return Line::Truncated;
        }
        match buf[pos] {
            b'\n' => return Line::End { body: pos + 1 },
            b'\r' if pos + 1 < len && buf[pos + 1] == b'\n' => return Line::End { body: pos + 2 },
            b'\r' if pos + 1 == len => return Line::Truncated,
            // A CR that ends no line starts no header either.
            b'\r' => return Line::Malformed { at: pos },
            // A continuation line is consumed by the line it continues; one here has no
            // header to continue.
            b' ' | b'\t' => return Line::Malformed { at: pos },
            _ => {}
        }
        // The name ends at the colon (whitespace before it allowed). Names are short; the
        // search is capped so a line without a colon costs a bounded look-ahead.
        let rest = &buf[pos..];
        let window = &rest[..rest.len().min(MAX_NAME + 16)];
        let Some(c) = swar::find_byte(window, 0, b':') else {
            return if window.len() == rest.len() && memchr::memchr(b'\n', rest).is_none() {
                Line::Truncated
            } else {
                Line::Malformed { at: pos }
            };
        };
        let colon = pos + c;
        let mut n = c;
        while n > 0 && matches!(rest[n - 1], b' ' | b'\t') {
            n -= 1;
        }
        // A fold, not an early exit: branch-free over the name. A line end inside the
        // name (a line without a colon) fails here too.
        let token = rest[..n].iter().fold(true, |ok, &c| ok & is_token(c));
        if n == 0 || n > MAX_NAME || !token {
            return Line::Malformed { at: pos };
        }
        let Some(mut lf) = swar::find_byte(buf, colon + 1, b'\n') else {
            return Line::Truncated;
        };
        while lf + 1 < len && matches!(buf[lf + 1], b' ' | b'\t') {
            match swar::find_byte(buf, lf + 1, b'\n') {
                Some(next) => lf = next,
                None => return Line::Truncated,
            }
        }
        // The empty line must follow; input ending right after a header is truncated.
        if lf + 1 >= len {
            return Line::Truncated;
        }
        self.pos = lf + 1;
        let name = &rest[..n];
        // Most lines hold 8 bytes past the name start: pack them with one load.
        let w = if rest.len() >= 8 {
            let word = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
            let mask = if n >= 8 { !0 } else { (1u64 << (8 * n)) - 1 };
            (word | 0x2020_2020_2020_2020) & mask
        } else {
            swar::pack_lower(name)
        };
        Line::Header(RawHeader {
            name: Span::new(pos, pos + n),
            kind: HeaderName::classify_packed(name, w),
            colon: colon as u32,
            line: Span::new(pos, lf + 1),
        })
    }
}

/// `tchar`s of RFC 3261 `token` (alphanum and `-.!%*_+`'~`).
pub(crate) static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
};

#[inline]
pub(crate) fn is_token(c: u8) -> bool {
    TOKEN[c as usize]
}

/// Byte classes for [`run`]: token characters.
pub(crate) const C_TOKEN: u8 = 1;
/// Characters of a parameter name or unquoted value: token or `:`.
pub(crate) const C_PARAM: u8 = 2;
/// Characters of a host name or IPv4 address.
pub(crate) const C_HOST: u8 = 4;
/// Linear whitespace, including the CR/LF of folded lines.
pub(crate) const C_LWS: u8 = 8;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        if TOKEN[i] {
            t[i] |= C_TOKEN | C_PARAM;
        }
        if c == b':' {
            t[i] |= C_PARAM;
        }
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_') {
            t[i] |= C_HOST;
        }
        if matches!(c, b' ' | b'\t' | b'\r' | b'\n') {
            t[i] |= C_LWS;
        }
        i += 1;
    }
    t
};

/// The end of the run of bytes in `class` starting at `i` (at most `end`). One table
/// load per byte and no bounds checks inside the loop: the hot parsers spend most of
/// their time here.
#[inline]
pub(crate) fn run(buf: &[u8], i: usize, end: usize, class: u8) -> usize {
    match buf.get(i..end) {
        Some(s) => {
            i + s
                .iter()
                .position(|&c| CLASS[c as usize] & class == 0)
                .unwrap_or(s.len())
        }
        None => i,
    }
}

/// Whitespace inside a header value: SP, HT, and the CR/LF of folded lines.
#[inline]
pub(crate) fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Advances `i` past whitespace, stopping at `end`.
#[inline]
pub(crate) fn skip_lws(buf: &[u8], i: usize, end: usize) -> usize {
    run(buf, i, end, C_LWS)
}

/// Moves `end` back past whitespace, stopping at `start`.
#[inline]
pub(crate) fn trim_end(buf: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && is_lws(buf[end - 1]) {
        end -= 1;
    }
    end
}

/// Finds the end of a comma-separated element starting at `i`: the index of the
/// separating comma, or `end`. Commas inside quoted strings and `<...>` do not split.
pub(crate) fn element_end(buf: &[u8], mut i: usize, end: usize) -> usize {
    let (mut in_angle, mut in_bracket) = (false, false);
    while i < end {
        match buf[i] {
            b'"' => i = quoted_end(buf, i, end),
            b'<' => in_angle = true,
            b'>' => in_angle = false,
            // An IPv6 reference is one unit wherever it appears (a Via's sent-by or
            // `received`), as the Via parser reads it.
            b'[' => in_bracket = true,
            b']' => in_bracket = false,
            b',' if !in_angle && !in_bracket => return i,
            _ => {}
        }
        i += 1;
    }
    end
}

/// Given `buf[i] == '"'`, returns the index of the closing quote (or `end - 1` if the
/// string is unterminated, so callers that step by one land on `end`). Backslash escapes
/// one character (RFC 3261 `quoted-pair`).
pub(crate) fn quoted_end(buf: &[u8], mut i: usize, end: usize) -> usize {
    i += 1;
    while i < end {
        match buf[i] {
            b'\\' => i += 2,
            b'"' => return i,
            _ => i += 1,
        }
    }
    end.saturating_sub(1)
}

/// Returns true if the quoted string starting at `i` is terminated before `end`.
pub(crate) fn quoted_terminated(buf: &[u8], mut i: usize, end: usize) -> bool {
    i += 1;
    while i < end {
        match buf[i] {
            b'\\' => i += 2,
            b'"' => return true,
            _ => i += 1,
        }
    }
    false
}

/// Counts the non-empty comma-separated elements in `buf[start..end]`.
pub(crate) fn count_elements(buf: &[u8], start: usize, end: usize) -> usize {
    // Fast path: no comma and no quote means one element (or none); brackets only
    // matter around a comma.
    if memchr::memchr2(b',', b'"', &buf[start..end]).is_none() {
        return usize::from(skip_lws(buf, start, end) < end);
    }
    let mut n = 0;
    let mut i = start;
    while i < end {
        let e = element_end(buf, i, end);
        if skip_lws(buf, i, e) < e {
            n += 1;
        }
        i = e + 1;
    }
    n
}

/// One `;name[=value]` parameter.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Param {
    /// The whole parameter from its name to the end of its value (no leading `;`).
    pub(crate) whole: Span,
    pub(crate) name: Span,
    /// Present when the parameter has `=`; may be empty.
    pub(crate) value: Option<Span>,
}

/// Iterates `;param` lists: `buf[i]` must be at a `;` or whitespace before one. Stops at
/// the first byte that cannot continue a parameter list (`,`, `>`, `?`, end).
pub(crate) struct Params<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Params<'a> {
    pub(crate) fn new(buf: &'a [u8], pos: usize, end: usize) -> Self {
        Params { buf, pos, end }
    }

    /// Where iteration stopped (after the last parameter and trailing whitespace).
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }
}

impl Iterator for Params<'_> {
    type Item = Result<Param, usize>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let (buf, end) = (self.buf, self.end);
        let i = skip_lws(buf, self.pos, end);
        if i >= end || buf[i] != b';' {
            self.pos = i;
            return None;
        }
        let ns = skip_lws(buf, i + 1, end);
        let j = run(buf, ns, end, C_PARAM);
        if j == ns {
            self.pos = end;
            return Some(Err(ns));
        }
        let name = Span::new(ns, j);
        let k = skip_lws(buf, j, end);
        if k < end && buf[k] == b'=' {
            let vs = skip_lws(buf, k + 1, end);
            let ve = if vs < end && buf[vs] == b'"' {
                if !quoted_terminated(buf, vs, end) {
                    self.pos = end;
                    return Some(Err(vs));
                }
                quoted_end(buf, vs, end) + 1
            } else if vs < end && buf[vs] == b'[' {
                match memchr::memchr(b']', &buf[vs..end]) {
                    Some(r) => vs + r + 1,
                    None => {
                        self.pos = end;
                        return Some(Err(vs));
                    }
                }
            } else {
                run(buf, vs, end, C_PARAM)
            };
            self.pos = ve;
            Some(Ok(Param {
                whole: Span::new(ns, ve),
                name,
                value: Some(Span::new(vs, ve)),
            }))
        } else {
            self.pos = j;
            Some(Ok(Param {
                whole: Span::new(ns, j),
                name,
                value: None,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header line at `pos`, which must be one.
    fn header_at(buf: &[u8], pos: usize) -> (RawHeader, usize) {
        let mut lines = Lines::new(buf, pos);
        match lines.next_line() {
            Line::Header(h) => (h, lines.pos()),
            other => panic!("expected a header, got {other:?}"),
        }
    }

    #[test]
    fn classify_knows_every_long_name_in_any_case() {
        use HeaderName::*;
        let names: [(&[u8], HeaderName); 21] = [
            (b"Via", Via),
            (b"From", From),
            (b"To", To),
            (b"Call-ID", CallId),
            (b"CSeq", CSeq),
            (b"Max-Forwards", MaxForwards),
            (b"Content-Length", ContentLength),
            (b"Content-Type", ContentType),
            (b"Content-Encoding", ContentEncoding),
            (b"Contact", Contact),
            (b"Route", Route),
            (b"Record-Route", RecordRoute),
            (b"Supported", Supported),
            (b"Subject", Subject),
            (b"Event", Event),
            (b"Refer-To", ReferTo),
            (b"Allow-Events", AllowEvents),
            (b"Timestamp", Timestamp),
            (b"Retry-After", RetryAfter),
            (b"Require", Require),
            (b"Proxy-Require", ProxyRequire),
        ];
        for (name, kind) in names {
            assert_eq!(HeaderName::classify(name), kind, "{name:?}");
            assert_eq!(HeaderName::classify(&name.to_ascii_uppercase()), kind);
            assert_eq!(HeaderName::classify(&name.to_ascii_lowercase()), kind);
        }
        assert_eq!(HeaderName::classify(b"MaX-fOrWaRdS"), MaxForwards);
        assert_eq!(HeaderName::classify(b"cAlL-iD"), CallId);
    }

    #[test]
    fn classify_knows_every_compact_form_in_both_cases() {
        use HeaderName::*;
        let compact = [
            (b'v', Via),
            (b'f', From),
            (b't', To),
            (b'i', CallId),
            (b'm', Contact),
            (b'l', ContentLength),
            (b'c', ContentType),
            (b'e', ContentEncoding),
            (b'k', Supported),
            (b's', Subject),
            (b'o', Event),
            (b'r', ReferTo),
            (b'u', AllowEvents),
        ];
        for (c, kind) in compact {
            assert_eq!(HeaderName::classify(&[c]), kind, "{}", c as char);
            assert_eq!(HeaderName::classify(&[c.to_ascii_uppercase()]), kind);
        }
        // Compact forms this enum has no variant for stay Other, never a wrong guess.
        for c in [b'x', b'y', b'n', b'a', b'b', b'd', b'j', b'1', b'-'] {
            assert_eq!(HeaderName::classify(&[c]), Other, "{}", c as char);
        }
    }

    #[test]
    fn classify_rejects_near_misses() {
        for name in [
            &b"Vias"[..],
            b"Vi",
            b"Fro",
            b"Tos",
            b"Call-IDs",
            b"Call_ID",
            b"Content-Lengths",
            b"Content-Lengt",
            b"Content-Lenxth",
            b"Max-Forwardz",
            b"Record-Routes",
            b"Contentlength",
            b"Timestamps",
            b"Proxy-Requirex",
            b"Content-Encodinx",
            b"",
            b"C%6Fntact",
        ] {
            assert_eq!(HeaderName::classify(name), HeaderName::Other, "{name:?}");
        }
    }

    #[test]
    fn next_line_reads_name_colon_line_and_trimmed_value() {
        let buf = b"X\r\nVia  :   SIP/2.0/UDP h  \r\nTo: t\r\n\r\n";
        let (h, next) = header_at(buf, 3);
        assert_eq!(h.name.of(buf), b"Via");
        assert_eq!(h.kind, HeaderName::Via);
        assert_eq!(buf[h.colon as usize], b':');
        assert_eq!(h.line.of(buf), b"Via  :   SIP/2.0/UDP h  \r\n");
        assert_eq!(h.value(buf).of(buf), b"SIP/2.0/UDP h");
        assert_eq!(next, 29);
        let (h, _) = header_at(buf, next);
        assert_eq!(h.kind, HeaderName::To);
    }

    #[test]
    fn hcolon_allows_tabs_and_spaces_before_the_colon_but_not_inside_the_name() {
        let buf = b"v\t \t: x\r\n\r\n";
        let (h, _) = header_at(buf, 0);
        assert_eq!(h.name.of(buf), b"v");
        assert_eq!(h.kind, HeaderName::Via);
        let buf = b"Max Forwards: 70\r\n\r\n";
        assert!(matches!(
            Lines::new(buf, 0).next_line(),
            Line::Malformed { at: 0 }
        ));
    }

    #[test]
    fn folded_lines_belong_to_the_header_they_continue() {
        let buf = b"Subject: a\r\n  b\r\n\tc\r\nTo: t\r\n\r\n";
        let (h, next) = header_at(buf, 0);
        assert_eq!(h.line.of(buf), b"Subject: a\r\n  b\r\n\tc\r\n");
        assert_eq!(h.value(buf).of(buf), b"a\r\n  b\r\n\tc");
        let (h, _) = header_at(buf, next);
        assert_eq!(h.name.of(buf), b"To");
    }

    #[test]
    fn an_empty_value_may_be_folded_onto_the_next_line() {
        // RFC 4475 wsinv: `TO :` CRLF SP `sip:...`.
        let buf = b"TO :\r\n sip:v@h ;tag=1\r\n\r\n";
        let (h, _) = header_at(buf, 0);
        assert_eq!(h.kind, HeaderName::To);
        assert_eq!(h.value(buf).of(buf), b"sip:v@h ;tag=1");
    }

    #[test]
    fn lf_only_line_ends_are_line_ends() {
        let buf = b"Via: a\nTo: b\n c\n\nbody";
        let (h, next) = header_at(buf, 0);
        assert_eq!(h.line.of(buf), b"Via: a\n");
        let (h, next) = header_at(buf, next);
        assert_eq!(h.line.of(buf), b"To: b\n c\n");
        assert_eq!(h.value(buf).of(buf), b"b\n c");
        assert!(matches!(
            Lines::new(buf, next).next_line(),
            Line::End { body: 17 }
        ));
    }

    #[test]
    fn the_empty_line_ends_headers_with_crlf_or_lf() {
        assert!(matches!(
            Lines::new(b"\r\nxy", 0).next_line(),
            Line::End { body: 2 }
        ));
        assert!(matches!(
            Lines::new(b"\nxy", 0).next_line(),
            Line::End { body: 1 }
        ));
        assert!(matches!(
            Lines::new(b"ab\r\n", 2).next_line(),
            Line::End { body: 4 }
        ));
    }

    #[test]
    fn input_that_ends_inside_the_headers_is_truncated() {
        for buf in [
            &b""[..],
            b"\r",
            b"Via: a",
            b"Via: a\r\n",
            b"Via: a\r\n b\r\n",
            b"Via",
            b"Via: a\r\n ",
        ] {
            assert!(
                matches!(Lines::new(buf, 0).next_line(), Line::Truncated),
                "{buf:?}"
            );
        }
    }

    #[test]
    fn a_line_without_a_colon_or_a_valid_name_is_malformed_where_it_starts() {
        for buf in [
            &b"NoColonHere\r\nTo: x\r\n\r\n"[..],
            b": no name\r\n\r\n",
            b"Na[me]: x\r\n\r\n",
            b"\rVia: x\r\n\r\n",
            b" continuation: x\r\n\r\n",
            b"\tx\r\n\r\n",
        ] {
            let mut lines = Lines::new(buf, 0);
            assert!(
                matches!(lines.next_line(), Line::Malformed { at: 0 }),
                "{buf:?}"
            );
            // The position stays so the caller can step over the line.
            assert_eq!(lines.pos(), 0);
            assert!(lines.skip_line());
            assert_eq!(lines.pos(), memchr::memchr(b'\n', buf).unwrap() + 1);
        }
        let mut lines = Lines::new(b"junk", 0);
        assert!(!lines.skip_line());
    }

    #[test]
    fn header_names_longer_than_the_cap_are_malformed_not_searched_forever() {
        let mut buf = vec![b'X'; MAX_NAME + 100];
        buf.extend_from_slice(b": v\r\n\r\n");
        assert!(matches!(
            Lines::new(&buf, 0).next_line(),
            Line::Malformed { at: 0 }
        ));
        let mut long = vec![b'X'; MAX_NAME + 1];
        long.extend_from_slice(b" : v\r\n\r\n");
        assert!(matches!(
            Lines::new(&long, 0).next_line(),
            Line::Malformed { at: 0 }
        ));
        let mut ok = vec![b'X'; MAX_NAME];
        ok.extend_from_slice(b"  : v\r\n\r\n");
        assert!(matches!(Lines::new(&ok, 0).next_line(), Line::Header(_)));
    }

    #[test]
    fn element_end_splits_on_commas_outside_quotes_and_angle_brackets() {
        let v = br#""a, b" <sip:x;p=1,2>;q="c,d", next"#;
        let e = element_end(v, 0, v.len());
        assert_eq!(&v[..e], br#""a, b" <sip:x;p=1,2>;q="c,d""#);
        assert_eq!(element_end(b"a,b", 0, 3), 1);
        assert_eq!(element_end(b"abc", 0, 3), 3);
        // An unterminated quote runs to the end rather than past it.
        assert_eq!(element_end(br#""a,b"#, 0, 4), 4);
    }

    #[test]
    fn count_elements_counts_non_empty_values() {
        let v = br#"SIP/2.0/UDP a;x="1,2", SIP/2.0/UDP <b,c>, ,SIP/2.0/TCP d,"#;
        assert_eq!(count_elements(v, 0, v.len()), 3);
        assert_eq!(count_elements(b"one", 0, 3), 1);
        assert_eq!(count_elements(b"  ", 0, 2), 0);
        assert_eq!(count_elements(b",,", 0, 2), 0);
    }

    #[test]
    fn quoted_strings_honour_backslash_escapes() {
        let v = br#""J Rosenberg \\\"" rest"#;
        assert_eq!(quoted_end(v, 0, v.len()), 17);
        assert!(quoted_terminated(v, 0, v.len()));
        let open = br#""never closed \""#;
        assert!(!quoted_terminated(open, 0, open.len()));
        assert_eq!(quoted_end(open, 0, open.len()), open.len() - 1);
        // A backslash as the last byte does not step past the end.
        assert!(!quoted_terminated(b"\"\\", 0, 2));
    }

    #[test]
    fn params_yield_names_values_and_where_they_stopped() {
        let v = br#" ; branch = z9hG4bK1 ;rport; received=[2001:db8::1] ;x="a;b",next"#;
        let mut it = Params::new(v, 0, v.len());
        let p: Vec<Param> = it.by_ref().map(|p| p.unwrap()).collect();
        let text = |s: Span| &v[s.range()];
        assert_eq!(p.len(), 4);
        assert_eq!(text(p[0].name), b"branch");
        assert_eq!(text(p[0].value.unwrap()), b"z9hG4bK1");
        assert_eq!(text(p[0].whole), b"branch = z9hG4bK1");
        assert_eq!(text(p[1].name), b"rport");
        assert!(p[1].value.is_none());
        assert_eq!(text(p[2].value.unwrap()), b"[2001:db8::1]");
        assert_eq!(text(p[3].value.unwrap()), br#""a;b""#);
        assert_eq!(&v[it.pos()..], b",next");
    }

    #[test]
    fn params_report_the_offset_of_a_bad_parameter() {
        let v = b";a=1;;b";
        let got: Vec<_> = Params::new(v, 0, v.len()).collect();
        assert!(matches!(got[..], [Ok(_), Err(5)]));
        let v = b";a=\"open";
        assert!(matches!(Params::new(v, 0, v.len()).next(), Some(Err(3))));
        let v = b";a=[open";
        assert!(matches!(Params::new(v, 0, v.len()).next(), Some(Err(3))));
        // An empty value is a value.
        let v = b";tag=";
        let p = Params::new(v, 0, v.len()).next().unwrap().unwrap();
        assert_eq!(p.value.map(Span::len), Some(0));
    }

    #[test]
    fn headers_iterator_yields_every_header_in_order_with_trimmed_values() {
        let buf = b"Via: a\r\nX-Unknown:  keep ;;,, me \r\nv:b\r\n folded\r\n\r\nbody";
        let got: Vec<_> = Headers::new(buf, 0).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].name, b"X-Unknown");
        assert_eq!(got[1].kind, HeaderName::Other);
        assert_eq!(got[1].value, b"keep ;;,, me");
        assert_eq!(got[2].name, b"v");
        assert_eq!(got[2].kind, HeaderName::Via);
        assert_eq!(got[2].value, b"b\r\n folded");
    }
}
