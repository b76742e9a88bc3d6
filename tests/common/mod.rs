//! Shared by the wire property tests: a model of a SIP message that knows its own keys,
//! proptest strategies that generate it, and a renderer that writes it out while
//! remembering which bytes are which header line.
//!
//! The model is the ground truth: a test renders it, scans the bytes and compares the
//! scanner's keys with the model's (and, in the differential test, with rsip's).
#![allow(dead_code)]

use proptest::prelude::*;

/// RFC 3261 methods and the common extensions the scanner knows by name.
pub const KNOWN_METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "PRACK",
    "UPDATE",
    "INFO",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
];

/// One `;name[=value]` parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub value: Option<String>,
}

impl Param {
    pub fn new(name: &str, value: Option<&str>) -> Param {
        Param {
            name: name.to_owned(),
            value: value.map(str::to_owned),
        }
    }

    fn render(&self, out: &mut String) {
        out.push(';');
        out.push_str(&self.name);
        if let Some(v) = &self.value {
            out.push('=');
            out.push_str(v);
        }
    }
}

fn find<'p>(params: &'p [Param], name: &str) -> Option<&'p Param> {
    params.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

/// One Via value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViaModel {
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<Param>,
}

impl ViaModel {
    pub fn branch(&self) -> Option<&str> {
        find(&self.params, "branch").and_then(|p| p.value.as_deref())
    }

    pub fn render(&self) -> String {
        let mut s = format!("SIP/2.0/{} {}", self.transport, self.host);
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        for p in &self.params {
            p.render(&mut s);
        }
        s
    }
}

/// A From or To value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddrModel {
    /// Written before `<`: a token run or a quoted string, as it appears.
    pub display: Option<String>,
    pub uri: String,
    /// Whether the URI is written in angle brackets (forced when there is a display
    /// name).
    pub angle: bool,
    pub params: Vec<Param>,
}

impl NameAddrModel {
    pub fn tag(&self) -> Option<&str> {
        find(&self.params, "tag").and_then(|p| p.value.as_deref())
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        if let Some(d) = &self.display {
            s.push_str(d);
            s.push(' ');
        }
        if self.angle || self.display.is_some() {
            s.push('<');
            s.push_str(&self.uri);
            s.push('>');
        } else {
            s.push_str(&self.uri);
        }
        for p in &self.params {
            p.render(&mut s);
        }
        s
    }

    /// The same value with its tag set to `tag`: replaced in place, or appended.
    pub fn with_tag(&self, tag: &str) -> NameAddrModel {
        let mut m = self.clone();
        match m
            .params
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case("tag"))
        {
            Some(p) => p.value = Some(tag.to_owned()),
            None => m.params.push(Param::new("tag", Some(tag))),
        }
        m
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartModel {
    Request {
        method: String,
        uri: String,
        /// The user part of the Request-URI (the dialled number).
        user: String,
    },
    Response {
        code: u16,
        reason: String,
    },
}

/// What a header line is, so tests can find the ones an edit touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// The n-th Via line (0 is the top one).
    Via(usize),
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    ContentLength,
    Other,
}

/// A SIP message, its keys in the clear.
#[derive(Clone, Debug)]
pub struct MsgModel {
    pub start: StartModel,
    /// Via header lines, top first; each holds one or more values.
    pub via_lines: Vec<Vec<ViaModel>>,
    pub from: NameAddrModel,
    pub to: NameAddrModel,
    pub call_id: String,
    pub cseq: u32,
    pub cseq_method: String,
    pub max_forwards: Option<u8>,
    /// Other header lines as (name, value).
    pub others: Vec<(String, String)>,
    pub content_length: bool,
    pub body: Vec<u8>,
    /// Header lines in written order: `order[i]` indexes [`MsgModel::items`].
    pub order: Vec<usize>,
    /// Compact names (`v`, `f`, `t`, `i`, `l`) instead of the long ones.
    pub compact: bool,
    /// Bare LF line ends instead of CRLF.
    pub lf: bool,
    /// Header names upper-cased (names are case-insensitive).
    pub shout: bool,
}

/// A rendered message: the bytes and its header lines as written.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub bytes: Vec<u8>,
    pub start_line: Vec<u8>,
    /// Header lines in order, each with its line end.
    pub lines: Vec<(LineKind, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl MsgModel {
    pub fn eol(&self) -> &'static str {
        if self.lf { "\n" } else { "\r\n" }
    }

    pub fn vias(&self) -> impl Iterator<Item = &ViaModel> {
        self.via_lines.iter().flatten()
    }

    pub fn top_via(&self) -> &ViaModel {
        &self.via_lines[0][0]
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartModel::Request { .. })
    }

    /// The header items before ordering: (kind, name, value).
    fn items(&self) -> Vec<(LineKind, String, String)> {
        let n = |long: &str, short: &str| {
            let name = if self.compact { short } else { long };
            if self.shout {
                name.to_ascii_uppercase()
            } else {
                name.to_owned()
            }
        };
        let mut items = Vec::new();
        for (i, line) in self.via_lines.iter().enumerate() {
            let values: Vec<String> = line.iter().map(ViaModel::render).collect();
            items.push((LineKind::Via(i), n("Via", "v"), values.join(", ")));
        }
        items.push((LineKind::From, n("From", "f"), self.from.render()));
        items.push((LineKind::To, n("To", "t"), self.to.render()));
        items.push((LineKind::CallId, n("Call-ID", "i"), self.call_id.clone()));
        items.push((
            LineKind::CSeq,
            n("CSeq", "CSeq"),
            format!("{} {}", self.cseq, self.cseq_method),
        ));
        if let Some(mf) = self.max_forwards {
            items.push((
                LineKind::MaxForwards,
                n("Max-Forwards", "Max-Forwards"),
                mf.to_string(),
            ));
        }
        for (name, value) in &self.others {
            items.push((LineKind::Other, name.clone(), value.clone()));
        }
        if self.content_length {
            items.push((
                LineKind::ContentLength,
                n("Content-Length", "l"),
                self.body.len().to_string(),
            ));
        }
        items
    }

    /// The header lines in written order. `order` is a permutation drawn for the
    /// largest possible item count; Via lines keep their relative order (they are
    /// assigned to the Via positions top first), and indexes beyond the item count are
    /// skipped.
    fn ordered_items(&self) -> Vec<(LineKind, String, String)> {
        let items = self.items();
        let mut slots: Vec<usize> = self
            .order
            .iter()
            .copied()
            .filter(|&i| i < items.len())
            .collect();
        // Append any item the permutation missed (it is drawn for a fixed maximum).
        for i in 0..items.len() {
            if !slots.contains(&i) {
                slots.push(i);
            }
        }
        let via_count = self.via_lines.len();
        let mut next_via = 0;
        slots
            .into_iter()
            .map(|i| {
                if i < via_count {
                    next_via += 1;
                    items[next_via - 1].clone()
                } else {
                    items[i].clone()
                }
            })
            .collect()
    }

    pub fn start_line(&self) -> String {
        match &self.start {
            StartModel::Request { method, uri, .. } => format!("{method} {uri} SIP/2.0"),
            StartModel::Response { code, reason } => format!("SIP/2.0 {code} {reason}"),
        }
    }

    pub fn render(&self) -> Rendered {
        let eol = self.eol();
        let start_line = format!("{}{eol}", self.start_line()).into_bytes();
        let lines: Vec<(LineKind, Vec<u8>)> = self
            .ordered_items()
            .into_iter()
            .map(|(kind, name, value)| (kind, format!("{name}: {value}{eol}").into_bytes()))
            .collect();
        let mut bytes = start_line.clone();
        for (_, l) in &lines {
            bytes.extend_from_slice(l);
        }
        bytes.extend_from_slice(eol.as_bytes());
        bytes.extend_from_slice(&self.body);
        Rendered {
            bytes,
            start_line,
            lines,
            body: self.body.clone(),
        }
    }
}

/// Splits a message into its start line, header lines (continuation lines joined to the
/// line they continue, line ends kept) and body, without the scanner: the tests'
/// independent view of "what lines are there".
pub fn split_lines(msg: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>, Vec<u8>) {
    let mut physical = Vec::new();
    let mut i = 0;
    let body_start = loop {
        let lf = i + msg[i..]
            .iter()
            .position(|&c| c == b'\n')
            .expect("a line end before the body");
        let line = &msg[i..=lf];
        i = lf + 1;
        if line == b"\r\n" || line == b"\n" {
            break i;
        }
        physical.push(line.to_vec());
    };
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for line in physical.drain(1..) {
        if matches!(line[0], b' ' | b'\t') {
            lines
                .last_mut()
                .expect("a line to continue")
                .extend_from_slice(&line);
        } else {
            lines.push(line);
        }
    }
    (physical.remove(0), lines, msg[body_start..].to_vec())
}

// ---------------------------------------------------------------------------------------
// Strategies

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9.!%*_+`'~-]{0,11}"
}

/// A domain name or an IPv4 literal (rsip models neither IPv6 Via hosts nor
/// trailing-dash labels, so the differential generator stays within those).
pub fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9]{0,7}(\\.[a-z][a-z0-9]{0,7}){1,2}",
        (1u8..=223, any::<u8>(), any::<u8>(), 1u8..=254)
            .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
    ]
}

pub fn ipv4() -> impl Strategy<Value = String> {
    (1u8..=223, any::<u8>(), any::<u8>(), 1u8..=254)
        .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}"))
}

fn user() -> impl Strategy<Value = String> {
    prop_oneof!["\\+1[2-9][0-9]{9}", "[0-9]{3,11}", "[a-z][a-z0-9._]{0,9}"]
}

/// `sip:user@host[:port][;params]` and the user part.
pub fn sip_uri() -> impl Strategy<Value = (String, String)> {
    (
        user(),
        host(),
        proptest::option::of(1u16..=65535),
        proptest::sample::subsequence(vec![";user=phone", ";transport=udp", ";lr"], 0..=2),
    )
        .prop_map(|(user, host, port, params)| {
            let mut uri = format!("sip:{user}@{host}");
            if let Some(p) = port {
                uri.push_str(&format!(":{p}"));
            }
            for p in params {
                uri.push_str(p);
            }
            (uri, user)
        })
}

pub fn branch() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.-]{1,20}".prop_map(|s| format!("z9hG4bK{s}"))
}

pub fn tag() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9.-]{0,15}"
}

pub fn via() -> impl Strategy<Value = ViaModel> {
    (
        prop_oneof![Just("UDP"), Just("TCP"), Just("TLS")],
        host(),
        proptest::option::of(1u16..=65535),
        branch(),
        // rport: absent, flag, or with a value.
        prop_oneof![
            Just(None),
            Just(Some(None)),
            (1u16..=65535).prop_map(|p| Some(Some(p)))
        ],
        proptest::option::of(ipv4()),
        proptest::option::of("x-[a-z]{1,5}=[a-z0-9]{1,5}"),
        any::<bool>(),
    )
        .prop_map(
            |(transport, host, port, branch, rport, received, ext, branch_last)| {
                let mut params = vec![Param::new("branch", Some(&branch))];
                match rport {
                    None => {}
                    Some(None) => params.push(Param::new("rport", None)),
                    Some(Some(p)) => params.push(Param::new("rport", Some(&p.to_string()))),
                }
                if let Some(r) = received {
                    params.push(Param::new("received", Some(&r)));
                }
                if let Some(e) = ext {
                    let (n, v) = e.split_once('=').unwrap();
                    params.push(Param::new(n, Some(v)));
                }
                if branch_last {
                    params.rotate_left(1);
                }
                ViaModel {
                    transport: transport.to_owned(),
                    host,
                    port,
                    params,
                }
            },
        )
}

pub fn name_addr(with_tag: bool) -> impl Strategy<Value = NameAddrModel> {
    (
        prop_oneof![
            Just(None),
            "[A-Za-z][A-Za-z0-9]{0,7}( [A-Za-z][A-Za-z0-9]{0,7})?".prop_map(Some),
            "\"[A-Za-z0-9 ,.]{0,14}\"".prop_map(Some),
        ],
        sip_uri(),
        any::<bool>(),
        tag(),
        proptest::option::of("x-[a-z]{1,5}=[a-z0-9]{1,5}"),
    )
        .prop_map(move |(display, (uri, _), angle, tag, ext)| {
            let mut params = Vec::new();
            if with_tag {
                params.push(Param::new("tag", Some(&tag)));
            }
            if let Some(e) = ext {
                let (n, v) = e.split_once('=').unwrap();
                params.push(Param::new(n, Some(v)));
            }
            // Without angle brackets a URI's own parameters would become header
            // parameters: only bracket-free URIs may go bare.
            let angle = angle || display.is_some() || uri.contains(';');
            NameAddrModel {
                display,
                uri,
                angle,
                params,
            }
        })
}

pub fn extension_method() -> impl Strategy<Value = String> {
    "[A-Z][A-Z-]{2,9}".prop_filter("an extension, not a known method", |m| {
        !KNOWN_METHODS.contains(&m.as_str())
    })
}

pub fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(KNOWN_METHODS.to_vec()).prop_map(str::to_owned),
        1 => extension_method(),
    ]
}

fn call_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.!%*_+`'~-]{1,24}(@[a-z0-9.]{1,12})?"
}

fn other_header() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        sip_uri().prop_map(|(u, _)| ("Contact".to_owned(), format!("<{u}>"))),
        Just((
            "Allow".to_owned(),
            "INVITE, ACK, CANCEL, BYE, OPTIONS".to_owned()
        )),
        Just(("Supported".to_owned(), "timer, 100rel".to_owned())),
        token().prop_map(|t| ("User-Agent".to_owned(), format!("{t}/1.0"))),
        token().prop_map(|t| ("X-Carrier-Trunk".to_owned(), t)),
        sip_uri().prop_map(|(u, _)| ("P-Asserted-Identity".to_owned(), format!("<{u}>"))),
        sip_uri().prop_map(|(u, _)| ("Record-Route".to_owned(), format!("<{u};lr>"))),
        "[A-Za-z][A-Za-z ]{0,20}[a-z]".prop_map(|s| ("Subject".to_owned(), s)),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        proptest::collection::vec(any::<u8>(), 1..300),
        "v=0\r\no=- [0-9]{1,10} [0-9]{1,10} IN IP4 [0-9.]{7,15}\r\ns=-\r\n(a=[a-z:0-9 /]{1,20}\r\n){0,6}"
            .prop_map(String::into_bytes),
    ]
}

/// How a generated message may deviate from the canonical form.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    /// Several Via values on one line.
    pub multi_via_lines: bool,
    /// Compact header names, and names in capitals.
    pub compact: bool,
    /// Bare LF line ends.
    pub lf: bool,
    /// Omit Content-Length (UDP: the body runs to the end of the datagram).
    pub no_content_length: bool,
    /// Shuffle header order.
    pub shuffle: bool,
}

impl Style {
    /// One Via per line, long names, CRLF, Content-Length present, header order shuffled.
    pub const CANONICAL: Style = Style {
        multi_via_lines: false,
        compact: false,
        lf: false,
        no_content_length: false,
        shuffle: true,
    };
    /// Everything a carrier might send that the scanner must handle.
    pub const VARIED: Style = Style {
        multi_via_lines: true,
        compact: true,
        lf: true,
        no_content_length: true,
        shuffle: true,
    };
}

const MAX_ITEMS: usize = 4 + 4 + 1 + 4 + 1 + 6 + 1;

fn via_lines(style: Style, min: usize) -> impl Strategy<Value = Vec<Vec<ViaModel>>> {
    (
        proptest::collection::vec(via(), min..=4),
        proptest::collection::vec(1usize..=3, 4),
    )
        .prop_map(move |(vias, groups)| {
            if !style.multi_via_lines {
                return vias.into_iter().map(|v| vec![v]).collect();
            }
            let mut lines = Vec::new();
            let mut it = vias.into_iter().peekable();
            let mut g = groups.into_iter().cycle();
            while it.peek().is_some() {
                let n = g.next().unwrap();
                lines.push(it.by_ref().take(n).collect());
            }
            lines
        })
}

fn flags(style: Style) -> impl Strategy<Value = (bool, bool, bool, bool, Vec<usize>)> {
    let order = if style.shuffle {
        Just((0..MAX_ITEMS).collect::<Vec<_>>())
            .prop_shuffle()
            .boxed()
    } else {
        Just((0..MAX_ITEMS).collect::<Vec<_>>()).boxed()
    };
    (
        any::<bool>().prop_map(move |b| b && style.compact),
        any::<bool>().prop_map(move |b| b && style.lf),
        any::<bool>().prop_map(move |b| !(b && style.no_content_length)),
        any::<bool>().prop_map(move |b| b && style.compact),
        order,
    )
}

/// A request in the given style.
pub fn request(style: Style) -> impl Strategy<Value = MsgModel> {
    (
        (method(), sip_uri(), via_lines(style, 1)),
        (name_addr(true), name_addr(false), any::<bool>(), tag()),
        (
            call_id(),
            0u32..(1 << 31),
            proptest::option::of(any::<u8>()),
        ),
        proptest::collection::vec(other_header(), 0..6),
        body(),
        flags(style),
    )
        .prop_map(
            |(
                (method, (uri, user), via_lines),
                (from, to, to_tagged, to_tag),
                (call_id, cseq, max_forwards),
                others,
                body,
                (compact, lf, content_length, shout, order),
            )| {
                // A request inside a dialog carries a To tag.
                let to = if to_tagged { to.with_tag(&to_tag) } else { to };
                MsgModel {
                    cseq_method: method.clone(),
                    start: StartModel::Request { method, uri, user },
                    via_lines,
                    from,
                    to,
                    call_id,
                    cseq,
                    max_forwards,
                    others,
                    content_length,
                    body,
                    order,
                    compact,
                    lf,
                    shout,
                }
            },
        )
}

/// A response in the given style with at least `min_vias` Via values.
pub fn response(style: Style, min_vias: usize) -> impl Strategy<Value = MsgModel> {
    (
        (
            100u16..=699,
            "[A-Za-z][A-Za-z ]{0,18}[a-z]",
            via_lines(style, min_vias),
        ),
        (name_addr(true), name_addr(false), any::<bool>(), tag()),
        (call_id(), 0u32..(1 << 31), method()),
        proptest::collection::vec(other_header(), 0..6),
        body(),
        flags(style),
    )
        .prop_map(
            |(
                (code, reason, via_lines),
                (from, to, to_tagged, to_tag),
                (call_id, cseq, cseq_method),
                others,
                body,
                (compact, lf, content_length, shout, order),
            )| {
                let to = if to_tagged { to.with_tag(&to_tag) } else { to };
                MsgModel {
                    start: StartModel::Response { code, reason },
                    via_lines,
                    from,
                    to,
                    call_id,
                    cseq,
                    cseq_method,
                    max_forwards: None,
                    others,
                    content_length,
                    body,
                    order,
                    compact,
                    lf,
                    shout,
                }
            },
        )
}
