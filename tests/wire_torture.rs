//! RFC 4475 (SIP torture test messages) and RFC 5118 (IPv6 torture test messages) through
//! the public wire API: every valid message yields exactly the keys the RFC text gives it,
//! every invalid one is refused with the fault it was built to show, and nothing panics.
//!
//! The fixtures are the RFCs' messages byte for byte (CRLF line ends, the RFC's `<hex>`
//! and `<repeat>` notations expanded). The thirteen §3.1.1 messages of RFC 4475 match
//! the SHA-256 of the members of the RFC's own message archive.
//!
//! Where an RFC lets an element choose between accepting and refusing a message, the
//! choice made here is the proxy's: a proxy interprets what it routes on (Request-URI,
//! Via, From/To tags, Call-ID, CSeq, Max-Forwards, Content-Length) and passes the rest
//! through untouched. Each such choice carries a one-line reason.

use ringfence::wire::{
    self, Datagram, EditError, HeaderName, Limits, Message, Method, ParseErrorKind as K, Reply,
    RoutingUri, Scheme, Splice, StreamFrame, StreamFramer, Transport, UriError,
};

macro_rules! fixture {
    ($dir:literal, $name:literal) => {
        include_bytes!(concat!("fixtures/", $dir, "/", $name, ".sip")) as &[u8]
    };
}
macro_rules! rfc4475 {
    ($name:literal) => {
        fixture!("rfc4475", $name)
    };
}
macro_rules! rfc5118 {
    ($name:literal) => {
        fixture!("rfc5118", $name)
    };
}

fn limits() -> Limits {
    Limits::default()
}

fn scan(buf: &[u8]) -> Message<'_> {
    wire::scan(buf, &limits()).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(buf)))
}

/// Offset of the first occurrence of `needle` in `buf`.
fn at(buf: &[u8], needle: impl AsRef<[u8]>) -> usize {
    let n = needle.as_ref();
    buf.windows(n.len())
        .position(|w| w == n)
        .unwrap_or_else(|| panic!("{} not in fixture", String::from_utf8_lossy(n)))
}

fn refused(buf: &[u8]) -> (K, usize) {
    let e = wire::scan(buf, &limits()).expect_err("the message must be refused");
    (e.kind, e.offset)
}

/// What the RFC text says a message carries.
struct Keys {
    method: Option<&'static [u8]>,
    status: Option<u16>,
    request_uri: Option<&'static [u8]>,
    transport: &'static [u8],
    host: &'static [u8],
    port: Option<u16>,
    branch: Option<&'static [u8]>,
    vias: usize,
    call_id: &'static [u8],
    cseq: (u32, &'static [u8]),
    from: (Option<&'static [u8]>, Option<&'static [u8]>),
    to: (Option<&'static [u8]>, Option<&'static [u8]>),
    max_forwards: Option<u8>,
    content_length: Option<usize>,
    body: usize,
}

/// Scans `buf` as a datagram and checks every key, the lean scan agreeing on its share.
fn check<'a>(buf: &'a [u8], want: &Keys) -> Message<'a> {
    let m = match wire::parse_datagram(buf, &limits()).expect("valid message") {
        Datagram::Message(m) => m,
        Datagram::KeepAlive => panic!("a message, not a keep-alive"),
    };
    assert_eq!(m.method().map(|x| x.as_bytes()), want.method);
    assert_eq!(m.status(), want.status);
    assert_eq!(m.request_uri(), want.request_uri);
    let via = m.top_via();
    assert_eq!(via.transport, want.transport);
    assert_eq!(via.host, want.host);
    assert_eq!(via.port, want.port);
    assert_eq!(via.branch, want.branch);
    assert_eq!(m.via_count(), want.vias);
    assert_eq!(m.call_id(), want.call_id);
    assert_eq!(m.cseq().number, want.cseq.0);
    assert_eq!(m.cseq().method, Method::parse(want.cseq.1));
    assert_eq!((m.from().user, m.from_tag()), want.from);
    assert_eq!((m.to().user, m.to_tag()), want.to);
    assert_eq!(m.max_forwards(), want.max_forwards);
    assert_eq!(m.content_length(), want.content_length);
    assert_eq!(m.body().len(), want.body);

    let k = wire::scan_keys(buf, &limits()).expect("lean scan");
    assert_eq!(k.method(), m.method());
    assert_eq!(k.status(), m.status());
    assert_eq!(k.branch(), m.branch());
    assert_eq!(k.sent_by_host(), via.host);
    assert_eq!(k.sent_by_port(), via.port);
    assert_eq!(k.transport(), via.transport_kind());
    // CSeq is read for responses only (RFC 3261 §17.1.3 matches on it; §17.2.3 does not).
    let is_response = m.status().is_some();
    assert_eq!(k.cseq_number(), is_response.then(|| m.cseq().number));
    assert_eq!(k.cseq_method(), is_response.then(|| m.cseq().method));

    // Forwarding with no edits reproduces the message exactly.
    let mut copy = Vec::new();
    Splice::new(&m).write_to(&mut copy);
    assert_eq!(copy, m.as_bytes());
    assert_eq!(m.headers().count(), m.header_count());
    m
}

fn header<'a>(m: &Message<'a>, name: &str) -> Vec<&'a [u8]> {
    m.headers()
        .filter(|h| h.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| h.value)
        .collect()
}

fn routing(uri: &[u8]) -> RoutingUri {
    RoutingUri::parse(uri).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(uri)))
}

const SDP_150: usize = 150;

// ---------------------------------------------------------------------------------------
// RFC 4475 §3.1.1: valid messages
// ---------------------------------------------------------------------------------------

#[test]
fn wsinv_a_short_tortuous_invite() {
    let buf = rfc4475!("wsinv");
    let m = check(
        buf,
        &Keys {
            method: Some(b"INVITE"),
            status: None,
            request_uri: Some(b"sip:vivekg@chair-dnrc.example.com;unknownparam"),
            transport: b"UDP",
            host: b"192.0.2.2",
            port: None,
            branch: Some(b"390skdjuw"),
            vias: 3,
            call_id: b"wsinv.ndaksdj@192.0.2.1",
            cseq: (9, b"INVITE"),
            from: (Some(b"jdrosen"), Some(b"98asjd8")),
            to: (Some(b"vivekg"), Some(b"1918181833n")),
            max_forwards: Some(68),
            content_length: Some(150),
            body: SDP_150,
        },
    );
    // A branch without the magic cookie is an RFC 2543 transaction id.
    assert!(!m.top_via().has_magic_cookie());
    assert_eq!(m.request_user(), Some(&b"vivekg"[..]));
    assert_eq!(m.from().uri, b"sip:jdrosen@example.com");
    assert_eq!(
        m.from().value,
        &b"\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8"[..]
    );
    assert_eq!(header(&m, "s"), [&b""[..]]);
    assert_eq!(
        header(&m, "NewFangledHeader"),
        [&b"newfangled value\r\n continued newfangled value"[..]]
    );
    assert_eq!(
        header(&m, "UnknownHeaderWithUnusualValue"),
        [&b";;,,;;,;"[..]]
    );
    assert_eq!(
        m.route(),
        Some(&b"<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"[..])
    );
    let route = routing(m.route().unwrap());
    assert!(route.loose_route);
    assert_eq!(route.host.as_deref(), Some("services.example.com"));
    assert_eq!(
        m.contact(),
        Some(&b"\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33"[..])
    );
    assert!(m.body().starts_with(b"v=0\r\n") && m.body().ends_with(b"a=rtpmap:31 LPC\r\n"));
}

#[test]
fn intmeth_a_wide_range_of_valid_characters() {
    let buf = rfc4475!("intmeth");
    let method: &[u8] = b"!interesting-Method0123456789_*+`.%indeed'~";
    let m = check(
        buf,
        &Keys {
            method: Some(method),
            status: None,
            request_uri: Some(b"sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com"),
            transport: b"TCP",
            host: b"host1.example.com",
            port: None,
            branch: Some(b"z9hG4bK-.!%66*_+`'~"),
            vias: 1,
            call_id: b"intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
            cseq: (139122385, method),
            from: (Some(b"mundane"), Some(b"_token~1'+`*%!-.")),
            // `user` stops before user parameters (`;;*`); RoutingUri keeps the whole part.
            to: (Some(b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/"), None),
            max_forwards: Some(255),
            content_length: Some(0),
            body: 0,
        },
    );
    assert_eq!(m.method(), Some(Method::Extension(method)));
    assert!(m.top_via().has_magic_cookie());
    assert_eq!(
        routing(m.to().uri).user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    let r = routing(m.request_uri().unwrap());
    assert_eq!(
        r.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(r.host.as_deref(), Some("example.com"));
    // The quoted-pairs escaping BEL, NUL and DEL stay in the display name as sent.
    assert!(
        m.to()
            .value
            .starts_with(b"\"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\" <sip:")
    );
    assert_eq!(
        header(&m, "extensionHeader-!.%*+_`'~"),
        [&b"\xef\xbb\xbf\xe5\xa4\xa7\xe5\x81\x9c\xe9\x9b\xbb"[..]]
    );
}

#[test]
fn esc01_valid_use_of_the_percent_escaping_mechanism() {
    let buf = rfc4475!("esc01");
    let m = check(
        buf,
        &Keys {
            method: Some(b"INVITE"),
            status: None,
            request_uri: Some(b"sip:sips%3Auser%40example.com@example.net"),
            transport: b"UDP",
            host: b"host5.example.net",
            port: None,
            branch: Some(b"z9hG4bKkdjuw"),
            vias: 1,
            call_id: b"esc01.239409asdfakjkn23onasd0-3234",
            cseq: (234234, b"INVITE"),
            from: (Some(b"I%20have%20spaces"), Some(b"938")),
            to: (Some(b"%75se%72"), None),
            max_forwards: Some(87),
            content_length: Some(150),
            body: SDP_150,
        },
    );
    assert_eq!(m.request_user(), Some(&b"sips%3Auser%40example.com"[..]));
    assert_eq!(header(&m, "C"), [&b"application/sdp"[..]]);
    let contact = m.contact().unwrap();
    assert_eq!(
        contact,
        b"<sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>"
    );
    // `name` keeps the value `v%61lue%25%34%31`: escapes are never undone twice.
    let c = routing(contact);
    assert_eq!(
        c.params,
        [
            ("%6c%72".to_owned(), None),
            ("n%61me".to_owned(), Some("v%61lue%25%34%31".to_owned()))
        ]
    );
}

#[test]
fn escnull_escaped_nulls_in_uris() {
    let m = check(
        rfc4475!("escnull"),
        &Keys {
            method: Some(b"REGISTER"),
            status: None,
            request_uri: Some(b"sip:example.com"),
            transport: b"UDP",
            host: b"host5.example.com",
            port: None,
            branch: Some(b"z9hG4bKkdjuw"),
            vias: 1,
            call_id: b"escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd",
            cseq: (14398234, b"REGISTER"),
            from: (Some(b"null-%00-null"), Some(b"839923423")),
            to: (Some(b"null-%00-null"), None),
            max_forwards: Some(70),
            content_length: Some(0),
            body: 0,
        },
    );
    assert_eq!(m.request_user(), None);
    assert_eq!(
        header(&m, "Contact"),
        [
            &b"<sip:%00@host5.example.com>"[..],
            b"<sip:%00%00@host5.example.com>"
        ]
    );
}

#[test]
fn esc02_percent_where_it_is_not_an_escape() {
    let m = check(
        rfc4475!("esc02"),
        &Keys {
            method: Some(b"RE%47IST%45R"),
            status: None,
            request_uri: Some(b"sip:registrar.example.com"),
            transport: b"TCP",
            host: b"host.example.com",
            port: None,
            branch: Some(b"z9hG4bK209%fzsnel234"),
            vias: 1,
            call_id: b"esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf",
            cseq: (29344, b"RE%47IST%45R"),
            from: (Some(b"resource"), Some(b"f232jadfj23")),
            to: (Some(b"resource"), None),
            max_forwards: Some(70),
            content_length: Some(0),
            body: 0,
        },
    );
    // The method is unknown: it is not REGISTER.
    assert_ne!(m.method(), Some(Method::Register));
    // Two Contact header field values, not three: `C%6Fntact` is another header.
    let contacts = m
        .headers()
        .filter(|h| h.kind == HeaderName::Contact)
        .count();
    assert_eq!(contacts, 2);
    assert_eq!(
        header(&m, "C%6Fntact"),
        [&b"<sip:alias2@host2.example.com>"[..]]
    );
}

#[test]
fn lwsdisp_no_lws_between_display_name_and_angle_bracket() {
    let m = check(
        rfc4475!("lwsdisp"),
        &Keys {
            method: Some(b"OPTIONS"),
            status: None,
            request_uri: Some(b"sip:user@example.com"),
            transport: b"UDP",
            host: b"funky.example.com",
            port: None,
            branch: Some(b"z9hG4bKkdjuw"),
            vias: 1,
            call_id: b"lwsdisp.1234abcd@funky.example.com",
            cseq: (60, b"OPTIONS"),
            from: (Some(b"caller"), Some(b"323")),
            to: (Some(b"user"), None),
            max_forwards: Some(70),
            content_length: Some(0),
            body: 0,
        },
    );
    assert_eq!(m.from().uri, b"sip:caller@example.com");
}

#[test]
fn longreq_long_values_in_header_fields() {
    let long_call_id = format!("longreq.one{}longcallid", "really".repeat(20));
    let caller = "amazinglylongcallername".repeat(5);
    let tag = format!("12{}424", "982".repeat(50));
    let buf = rfc4475!("longreq");
    let m = wire::scan(buf, &limits()).unwrap();
    // Keys that are not 'static are checked here, the rest by `check`.
    assert_eq!(m.call_id(), long_call_id.as_bytes());
    assert_eq!(m.from().user, Some(caller.as_bytes()));
    assert_eq!(m.from_tag(), Some(tag.as_bytes()));
    let m = check(
        buf,
        &Keys {
            method: Some(b"INVITE"),
            status: None,
            request_uri: Some(b"sip:user@example.com"),
            transport: b"TCP",
            host: b"sip33.example.com",
            port: None,
            branch: None,
            vias: 34,
            call_id: m.call_id(),
            cseq: (3882340, b"INVITE"),
            from: (m.from().user, m.from_tag()),
            to: (Some(b"user"), None),
            max_forwards: Some(70),
            content_length: Some(150),
            body: SDP_150,
        },
    );
    // Seventeen spellings of Via (compact, any case, HCOLON whitespace) are all Via.
    let vias = m.headers().filter(|h| h.kind == HeaderName::Via).count();
    assert_eq!(vias, 34);
    assert_eq!(routing(m.to().uri).port, Some(6000));
    let unknown = format!("Unknown-{}-Name", "Long".repeat(20));
    assert_eq!(header(&m, &unknown).len(), 1);
    let contact = format!("<sip:{caller}@host5.example.net>");
    assert_eq!(m.contact(), Some(contact.as_bytes()));
    // A 100 Trying copies all 34 Via lines back in order.
    let mut out = Vec::new();
    wire::write_response(&m, &Reply::new(100, b"Trying"), &mut out);
    let r = scan(&out);
    assert_eq!(r.via_count(), 34);
    assert_eq!(r.top_via().host, b"sip33.example.com");
    let last = r
        .headers()
        .filter(|h| h.kind == HeaderName::Via)
        .last()
        .unwrap();
    assert!(
        last.value
            .starts_with(b"SIP/2.0/TCP host.example.com;received=192.0.2.5;branch=verylong")
    );
}

#[test]
fn dblreq_extra_trailing_octets_in_a_udp_datagram() {
    let buf = rfc4475!("dblreq");
    let m = check(
        buf,
        &Keys {
            method: Some(b"REGISTER"),
            status: None,
            request_uri: Some(b"sip:example.com"),
            transport: b"UDP",
            host: b"192.0.2.125",
            port: None,
            branch: Some(b"z9hG4bKkdjuw23492"),
            vias: 1,
            call_id: b"dblreq.0ha0isndaksdj99sdfafnl3lk233412",
            cseq: (8, b"REGISTER"),
            from: (Some(b"j.user"), Some(b"43251j3j324")),
            to: (Some(b"j.user"), None),
            max_forwards: Some(8),
            content_length: Some(0),
            body: 0,
        },
    );
    // The INVITE-like octets are not part of the message, nor of what a proxy forwards.
    assert_eq!(m.as_bytes().len(), at(buf, "\r\nINVITE sip:joe"));
    let mut fwd = Vec::new();
    Splice::new(&m)
        .decrement_max_forwards()
        .unwrap()
        .write_to(&mut fwd);
    assert!(!String::from_utf8_lossy(&fwd).contains("INVITE"));
}

#[test]
fn semiuri_semicolon_separated_parameters_in_the_user_part() {
    let m = check(
        rfc4475!("semiuri"),
        &Keys {
            method: Some(b"OPTIONS"),
            status: None,
            request_uri: Some(b"sip:user;par=u%40example.net@example.com"),
            transport: b"UDP",
            host: b"192.0.2.1",
            port: None,
            branch: Some(b"z9hG4bKkdjuw"),
            vias: 1,
            call_id: b"semiuri.0ha0isndaksdj",
            cseq: (8, b"OPTIONS"),
            from: (Some(b"caller"), Some(b"33242")),
            to: (Some(b"j_user"), None),
            max_forwards: Some(3),
            content_length: Some(0),
            body: 0,
        },
    );
    // The user part is `user;par=u%40example.net` (RFC); the dialled-number key drops
    // the user parameter, the routing URI keeps it, and the host is example.com.
    assert_eq!(m.request_user(), Some(&b"user"[..]));
    let r = routing(m.request_uri().unwrap());
    assert_eq!(r.user.as_deref(), Some("user;par=u%40example.net"));
    assert_eq!(r.host.as_deref(), Some("example.com"));
    assert_eq!(
        header(&m, "Accept"),
        [&b"application/sdp, application/pkcs7-mime,\r\n        multipart/mixed, multipart/signed,\r\n        message/sip, message/sipfrag"[..]]
    );
}

#[test]
fn transports_varied_and_unknown_transport_types() {
    let m = check(
        rfc4475!("transports"),
        &Keys {
            method: Some(b"OPTIONS"),
            status: None,
            request_uri: Some(b"sip:user@example.com"),
            transport: b"UDP",
            host: b"t1.example.com",
            port: None,
            branch: Some(b"z9hG4bKkdjuw"),
            vias: 5,
            call_id: b"transports.kijh4akdnaqjkwendsasfdj",
            cseq: (60, b"OPTIONS"),
            from: (Some(b"caller"), Some(b"323")),
            to: (Some(b"user"), None),
            max_forwards: Some(70),
            content_length: Some(0),
            body: 0,
        },
    );
    let kinds: Vec<Transport> = m
        .headers()
        .filter(|h| h.kind == HeaderName::Via)
        .map(|h| Transport::parse(&h.value[8..h.value.iter().position(|&c| c == b' ').unwrap()]))
        .collect();
    use Transport::*;
    assert_eq!(kinds, [Udp, Sctp, Tls, Other, Tcp]);
}

#[test]
fn mpart01_multipart_mime_message_with_a_binary_body() {
    let m = check(
        rfc4475!("mpart01"),
        &Keys {
            method: Some(b"MESSAGE"),
            status: None,
            request_uri: Some(b"sip:kumiko@example.org"),
            transport: b"UDP",
            host: b"127.0.0.1",
            port: Some(5070),
            branch: Some(b"z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-"),
            vias: 1,
            call_id: b"3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..",
            cseq: (1, b"MESSAGE"),
            from: (Some(b"fluffy"), Some(b"2fb0dcc9")),
            to: (Some(b"kumiko"), None),
            max_forwards: Some(70),
            content_length: Some(553),
            body: 553,
        },
    );
    assert_eq!(m.top_via().rport, Some(None));
    assert_eq!(m.route(), Some(&b"<sip:127.0.0.1:5080>"[..]));
    // The DER signature holds LF octets that are no line ends, and a CRLF ends the part.
    let body = m.body();
    assert!(body.starts_with(b"--7a9cbec02ceef655\r\n"));
    assert!(body.ends_with(b"\x99\xd0\x05\r\n--7a9cbec02ceef655--\r\n"));
    let binary = &body[at(body, b"\r\n\r\n0\x82") + 4..body.len() - 24];
    assert_eq!(binary.len(), 342);
    assert_eq!(binary.iter().filter(|&&c| c == b'\n').count(), 3);
}

#[test]
fn unreason_unusual_reason_phrase() {
    let m = check(
        rfc4475!("unreason"),
        &Keys {
            method: None,
            status: Some(200),
            request_uri: None,
            transport: b"UDP",
            host: b"192.0.2.198",
            port: None,
            branch: Some(b"z9hG4bK1324923"),
            vias: 1,
            call_id: b"unreason.1234ksdfak3j2erwedfsASdf",
            cseq: (35, b"INVITE"),
            from: (Some(b"user"), Some(b"11141343")),
            to: (Some(b"user"), Some(b"2229")),
            max_forwards: None,
            content_length: Some(154),
            body: 154,
        },
    );
    let reason = std::str::from_utf8(m.reason().unwrap()).unwrap();
    assert_eq!(reason, "= 2**3 * 5**2 но сто девяносто девять - простое");
}

#[test]
fn noreason_empty_reason_phrase() {
    let m = check(
        rfc4475!("noreason"),
        &Keys {
            method: None,
            status: Some(100),
            request_uri: None,
            transport: b"UDP",
            host: b"192.0.2.105",
            port: None,
            branch: Some(b"z9hG4bK2398ndaoe"),
            vias: 1,
            call_id: b"noreason.asndj203insdf99223ndf",
            cseq: (35, b"INVITE"),
            from: (Some(b"user"), Some(b"39ansfi3")),
            to: (Some(b"user"), Some(b"902jndnke3")),
            max_forwards: None,
            content_length: Some(0),
            body: 0,
        },
    );
    assert_eq!(m.reason(), Some(&b""[..]));
}

// ---------------------------------------------------------------------------------------
// RFC 4475 §3.1.2: invalid messages
// ---------------------------------------------------------------------------------------

#[test]
fn badinv01_extraneous_header_field_separators() {
    let buf = rfc4475!("badinv01");
    assert_eq!(refused(buf), (K::BadVia, at(buf, ";;,;,,") + 1));
    // Via, From, To, Call-ID and CSeq are legible: the 400 can be sent.
    assert!(answers_400(buf));
}

#[test]
fn clerr_content_length_larger_than_message() {
    let buf = rfc4475!("clerr");
    // Over UDP the datagram is all there is: 400.
    assert_eq!(refused(buf), (K::BodyTooShort, buf.len()));
    assert!(answers_400(buf));
    // Over a stream the receiver can only wait for the rest.
    let mut framer = StreamFramer::new(Limits {
        max_message_len: Limits::MAX_MESSAGE_LEN,
        ..limits()
    });
    assert_eq!(framer.next_frame(buf), Ok(StreamFrame::NeedMore));
}

#[test]
fn ncl_negative_content_length() {
    let buf = rfc4475!("ncl");
    assert_eq!(refused(buf), (K::BadContentLength, at(buf, "-999")));
    let e = StreamFramer::new(limits()).next_frame(buf).unwrap_err();
    assert_eq!((e.kind, e.offset), (K::BadContentLength, at(buf, "-999")));
    assert!(answers_400(buf));
}

#[test]
fn scalar02_request_scalar_fields_with_overlarge_values() {
    let buf = rfc4475!("scalar02");
    // CSeq is the first out-of-range field; Max-Forwards 300 would be refused too.
    assert_eq!(refused(buf), (K::BadCSeq, at(buf, "36893488147419103232")));
    let without_cseq = String::from_utf8_lossy(buf).replace("36893488147419103232", "1");
    assert_eq!(refused(without_cseq.as_bytes()).0, K::BadMaxForwards);
    // Expires and the Contact expires parameter are not ours to read (RFC 3261 §10.2.1.1
    // is the registrar's business): with CSeq and Max-Forwards fixed the message passes.
    let fixed = without_cseq.replace("Max-Forwards: 300", "Max-Forwards: 70");
    assert!(wire::scan(fixed.as_bytes(), &limits()).is_ok());
    assert!(answers_400(buf));
}

#[test]
fn scalarlg_response_scalar_fields_with_overlarge_values() {
    let buf = rfc4475!("scalarlg");
    // A response with a broken CSeq matches no transaction and is dropped.
    assert_eq!(
        refused(buf),
        (K::BadCSeq, at(buf, "9292394834772304023312"))
    );
    assert!(!answers_400(buf));
}

#[test]
fn quotbal_unterminated_quoted_string_in_display_name() {
    let buf = rfc4475!("quotbal");
    // Inferring where the quote should have ended could misread To, which we match on.
    assert_eq!(refused(buf), (K::BadNameAddr, at(buf, "\"Mr. J. User")));
}

#[test]
fn ltgtruri_angle_brackets_enclosing_the_request_uri() {
    let buf = rfc4475!("ltgtruri");
    assert_eq!(
        refused(buf),
        (K::BadRequestUri, at(buf, "<sip:user@example.com> SIP"))
    );
    assert!(answers_400(buf));
}

#[test]
fn lwsruri_embedded_lws_in_the_request_uri() {
    let buf = rfc4475!("lwsruri");
    assert_eq!(
        refused(buf),
        (K::BadRequestUri, at(buf, "sip:user@example.com; lr"))
    );
    assert!(answers_400(buf));
}

#[test]
fn lwsstart_multiple_sp_separating_request_line_elements() {
    let buf = rfc4475!("lwsstart");
    assert_eq!(refused(buf), (K::BadStartLine, at(buf, " sip:user")));
    assert!(answers_400(buf));
}

#[test]
fn trws_sp_characters_at_the_end_of_the_request_line() {
    let buf = rfc4475!("trws");
    assert_eq!(refused(buf), (K::BadStartLine, at(buf, "\r\n")));
    assert!(answers_400(buf));
}

#[test]
fn escruri_escaped_headers_in_the_request_uri() {
    let buf = rfc4475!("escruri");
    // Refused rather than ignored: a proxy must not forward the escaped headers in the
    // Request-URI, and splicing keeps the Request-URI unless the route rewrites it.
    assert_eq!(
        refused(buf),
        (K::BadRequestUri, at(buf, "sip:user@example.com?"))
    );
    assert!(answers_400(buf));
}

#[test]
fn baddate_invalid_time_zone_in_date() {
    // Accepted: a proxy does not interpret Date.
    let m = scan(rfc4475!("baddate"));
    assert_eq!(header(&m, "Date"), [&b"Fri, 01 Jan 2010 16:00:00 EST"[..]]);
    assert_eq!(m.body().len(), SDP_150);
}

#[test]
fn regbadct_failure_to_enclose_name_addr_uri_in_angle_brackets() {
    // Accepted: a proxy does not interpret the Contact of a REGISTER; the registrar does.
    let m = scan(rfc4475!("regbadct"));
    assert_eq!(
        m.contact(),
        Some(&b"sip:user@example.com?Route=%3Csip:sip.example.com%3E"[..])
    );
}

#[test]
fn badaspec_spaces_within_addr_spec() {
    let buf = rfc4475!("badaspec");
    // To carries the dialog tag we match on; LWS inside <> leaves it unreadable.
    assert_eq!(refused(buf), (K::BadNameAddr, at(buf, " sip:t.watson")));
    assert!(answers_400(buf));
}

#[test]
fn baddn_non_token_characters_in_display_name() {
    let buf = rfc4475!("baddn");
    assert_eq!(refused(buf), (K::BadNameAddr, at(buf, "Bell, Alexander")));
    // Without its final empty line (as the RFC's archive holds it) a stream receiver
    // waits for the rest of the headers.
    let cut = &buf[..buf.len() - 2];
    assert_eq!(
        StreamFramer::new(limits()).next_frame(cut),
        Ok(StreamFrame::NeedMore)
    );
}

#[test]
fn badvers_unknown_protocol_version() {
    let buf = rfc4475!("badvers");
    let (kind, offset) = refused(buf);
    assert_eq!((kind, offset), (K::BadVersion, at(buf, "SIP/7.0\r\n")));
    assert_eq!(kind.status(), 505);
    assert!(answers(buf, 505));
}

#[test]
fn mismatch01_start_line_and_cseq_method_mismatch() {
    let buf = rfc4475!("mismatch01");
    assert_eq!(refused(buf), (K::CSeqMethodMismatch, at(buf, "INVITE\r\n")));
    assert!(answers_400(buf));
}

#[test]
fn mismatch02_unknown_method_with_cseq_method_mismatch() {
    let buf = rfc4475!("mismatch02");
    assert_eq!(refused(buf), (K::CSeqMethodMismatch, at(buf, "INVITE\r\n")));
    assert!(answers_400(buf));
}

#[test]
fn bigcode_overlarge_response_code() {
    let buf = rfc4475!("bigcode");
    assert_eq!(refused(buf), (K::BadStatusCode, at(buf, "4294967301")));
    // A response is never answered; it is dropped.
    assert!(!answers_400(buf));
}

// ---------------------------------------------------------------------------------------
// RFC 4475 §3.2 transaction layer, §3.3 application layer, §3.4 backward compatibility
// ---------------------------------------------------------------------------------------

#[test]
fn badbranch_missing_transaction_identifier() {
    let m = scan(rfc4475!("badbranch"));
    assert_eq!(m.branch(), Some(&b"z9hG4bK"[..]));
    // A bare cookie identifies no transaction: treated as having no RFC 3261 branch.
    assert!(!m.top_via().has_magic_cookie());
}

#[test]
fn insuf_missing_required_header_fields() {
    let buf = rfc4475!("insuf");
    assert_eq!(
        refused(buf),
        (K::MissingHeader(HeaderName::From), buf.len())
    );
    // Without From, To and Call-ID no response can be built: the request is dropped.
    assert!(!answers_400(buf));
}

#[test]
fn unkscm_and_novelsc_request_uris_with_schemes_we_do_not_route() {
    for buf in [rfc4475!("unkscm"), rfc4475!("novelsc")] {
        let m = scan(buf);
        // The scanner keeps the URI opaque; the router answers 416.
        assert_eq!(
            RoutingUri::parse(m.request_uri().unwrap()),
            Err(UriError::UnsupportedScheme)
        );
        assert_eq!(m.request_user(), None);
    }
}

#[test]
fn unksm2_unknown_uri_schemes_in_header_fields() {
    // Accepted: a proxy does not route on To or From.
    let m = scan(rfc4475!("unksm2"));
    assert_eq!(m.to().uri, b"isbn:2983792873");
    assert_eq!(m.from().uri, b"http://www.example.com");
    assert_eq!((m.to().user, m.from().user), (None, None));
    assert_eq!(m.from_tag(), Some(&b"3234233"[..]));
    assert_eq!(m.contact(), Some(&b"<name:John_Smith>"[..]));
}

#[test]
fn bext01_proxy_require_and_require_are_passed_up() {
    let m = scan(rfc4475!("bext01"));
    let kinds: Vec<HeaderName> = m.headers().map(|h| h.kind).collect();
    assert!(kinds.contains(&HeaderName::Require));
    assert!(kinds.contains(&HeaderName::ProxyRequire));
    assert_eq!(
        header(&m, "Proxy-Require"),
        [&b"noProxiesSupportThis, norDoAnyProxiesSupportThis"[..]]
    );
    assert_eq!(m.top_via().transport_kind(), Transport::Tls);
}

#[test]
fn invut_unknown_content_type_is_forwarded_untouched() {
    let m = scan(rfc4475!("invut"));
    assert_eq!(
        m.body(),
        b"<audio>\r\n <pcmu port=\"443\"/>\r\n</audio>\r\n"
    );
}

#[test]
fn regaut01_unknown_authorization_scheme_is_not_ours() {
    let m = scan(rfc4475!("regaut01"));
    assert_eq!(
        header(&m, "Authorization"),
        [&b"NoOneKnowsThisScheme opaque-data=here"[..]]
    );
    assert_eq!(m.content_length(), Some(0));
}

#[test]
fn multi01_multiple_values_in_single_value_required_fields() {
    let buf = rfc4475!("multi01");
    // The first repeated single-value header in the message is CSeq.
    assert_eq!(
        refused(buf),
        (K::DuplicateHeader(HeaderName::CSeq), at(buf, "CSeq: 59"))
    );
    assert!(answers_400(buf));
}

#[test]
fn mcl01_multiple_content_length_values() {
    let buf = rfc4475!("mcl01");
    let cl = K::DuplicateHeader(HeaderName::ContentLength);
    assert_eq!(refused(buf), (cl, at(buf, "Content-Length: 5")));
    assert_eq!(
        StreamFramer::new(limits())
            .next_frame(buf)
            .unwrap_err()
            .kind,
        cl
    );
    assert!(answers_400(buf));
}

#[test]
fn bcast_response_with_a_broadcast_via() {
    let m = scan(rfc4475!("bcast"));
    assert_eq!(m.via_count(), 2);
    // Once our Via is popped the next hop is the broadcast address: refusing to send there
    // is the transport's decision, the wire layer only shows it.
    let mut popped = Vec::new();
    Splice::new(&m)
        .remove_top_via()
        .unwrap()
        .write_to(&mut popped);
    assert_eq!(scan(&popped).top_via().host, b"255.255.255.255");
}

#[test]
fn zeromf_max_forwards_of_zero() {
    let m = scan(rfc4475!("zeromf"));
    assert_eq!(m.max_forwards(), Some(0));
    assert_eq!(
        Splice::new(&m).decrement_max_forwards().unwrap_err(),
        EditError::MaxForwardsExhausted
    );
}

#[test]
fn cparam01_and_cparam02_contact_header_versus_uri_parameters() {
    let m = scan(rfc4475!("cparam01"));
    // Without <>, `;unknownparam` is a header parameter, not part of the URI.
    assert_eq!(
        m.contact(),
        Some(&b"sip:+19725552222@gw1.example.net;unknownparam"[..])
    );
    let m = scan(rfc4475!("cparam02"));
    let c = routing(m.contact().unwrap());
    assert_eq!(c.user.as_deref(), Some("+19725552222"));
    assert_eq!(c.params, [("unknownparam".to_owned(), None)]);
}

#[test]
fn regescrt_register_with_an_escaped_header_in_the_contact() {
    let m = scan(rfc4475!("regescrt"));
    let c = routing(m.contact().unwrap());
    assert_eq!(c.host.as_deref(), Some("example.com"));
    assert!(c.params.is_empty());
}

#[test]
fn sdp01_unacceptable_accept_is_the_endpoints_business() {
    let m = scan(rfc4475!("sdp01"));
    assert_eq!(header(&m, "Accept"), [&b"text/nobodyKnowsThis"[..]]);
    assert_eq!(m.body().len(), SDP_150);
}

#[test]
fn inv2543_invite_with_rfc_2543_syntax() {
    let m = check(
        rfc4475!("inv2543"),
        &Keys {
            method: Some(b"INVITE"),
            status: None,
            request_uri: Some(b"sip:UserB@example.com"),
            transport: b"UDP",
            host: b"iftgw.example.com",
            port: None,
            branch: None,
            vias: 1,
            call_id: b"inv2543.1717@ift.client.example.com",
            cseq: (56, b"INVITE"),
            from: (Some(b"+13035551111"), None),
            to: (Some(b"+16505552222"), None),
            max_forwards: None,
            content_length: None,
            body: 105,
        },
    );
    assert!(!m.top_via().has_magic_cookie());
    assert_eq!(
        m.record_route(),
        Some(&b"<sip:UserB@example.com;maddr=ss1.example.com>"[..])
    );
    // Forwarding adds the Max-Forwards it lacks.
    let mut fwd = Vec::new();
    Splice::new(&m)
        .decrement_max_forwards()
        .unwrap()
        .write_to(&mut fwd);
    assert_eq!(scan(&fwd).max_forwards(), Some(70));
}

// ---------------------------------------------------------------------------------------
// RFC 5118: IPv6
// ---------------------------------------------------------------------------------------

const IPV6_CALL_ID: &[u8] = b"SSG9559905523997077@hlau_4100";

fn ipv6_register(buf: &'static [u8], request_uri: &'static [u8]) -> Message<'static> {
    check(
        buf,
        &Keys {
            method: Some(b"REGISTER"),
            status: None,
            request_uri: Some(request_uri),
            transport: b"UDP",
            host: b"[2001:db8::9:1]",
            port: None,
            branch: Some(b"z9hG4bKas3-111"),
            vias: 1,
            call_id: IPV6_CALL_ID,
            cseq: (98176, b"REGISTER"),
            from: (Some(b"user"), Some(b"81x2")),
            to: (Some(b"user"), None),
            max_forwards: Some(70),
            content_length: Some(0),
            body: 0,
        },
    )
}

fn socket(uri: &[u8]) -> std::net::SocketAddr {
    routing(uri).socket_addr().expect("an IP literal")
}

#[test]
fn ipv6_good_references_in_request_uri_via_and_contact() {
    let m = ipv6_register(rfc5118!("ipv6-good"), b"sip:[2001:db8::10]");
    assert_eq!(
        socket(m.request_uri().unwrap()),
        "[2001:db8::10]:5060".parse().unwrap()
    );
    assert_eq!(
        socket(m.contact().unwrap().strip_prefix(b"\"Caller\" ").unwrap()),
        "[2001:db8::1]:5060".parse().unwrap()
    );
    // The response to it goes back with a bracketed sent-by and a bare received.
    let reply = Reply {
        received: Some(b"2001:db8::9:255"),
        to_tag: Some(b"reg1"),
        ..Reply::new(200, b"OK")
    };
    let mut out = Vec::new();
    wire::write_response(&m, &reply, &mut out);
    let r = scan(&out);
    assert_eq!(r.top_via().host, b"[2001:db8::9:1]");
    assert_eq!(r.top_via().received, Some(&b"2001:db8::9:255"[..]));
    assert_eq!(r.to_tag(), Some(&b"reg1"[..]));
}

#[test]
fn ipv6_bad_reference_without_brackets_in_the_request_uri() {
    // The scanner keeps the Request-URI opaque; routing on it finds no host and the
    // request is answered 400.
    let m = ipv6_register(rfc5118!("ipv6-bad"), b"sip:2001:db8::10");
    assert!(matches!(
        RoutingUri::parse(m.request_uri().unwrap()),
        Err(UriError::Malformed(_))
    ));
}

#[test]
fn port_ambiguous_a_port_inside_the_brackets_is_part_of_the_address() {
    let m = ipv6_register(rfc5118!("port-ambiguous"), b"sip:[2001:db8::10:5070]");
    let r = routing(m.request_uri().unwrap());
    assert_eq!(r.port, None);
    assert_eq!(
        r.socket_addr(),
        Some("[2001:db8::10:5070]:5060".parse().unwrap())
    );
}

#[test]
fn port_unambiguous_a_port_after_the_brackets() {
    let m = ipv6_register(rfc5118!("port-unambiguous"), b"sip:[2001:db8::10]:5070");
    assert_eq!(
        socket(m.request_uri().unwrap()),
        "[2001:db8::10]:5070".parse().unwrap()
    );
}

#[test]
fn via_received_with_and_without_delimiters_are_both_read() {
    let with = scan(rfc5118!("via-received-param-with-delim"));
    assert_eq!(with.method(), Some(Method::Bye));
    assert_eq!(with.top_via().host, b"[2001:db8::9:1]");
    assert_eq!(with.top_via().received, Some(&b"[2001:db8::9:255]"[..]));
    assert_eq!(with.branch(), Some(&b"z9hG4bKas3-111"[..]));
    assert_eq!(with.to_tag(), Some(&b"bd76ya"[..]));
    let without = scan(rfc5118!("via-received-param-no-delim"));
    assert_eq!(without.top_via().received, Some(&b"2001:db8::9:255"[..]));
    assert_eq!(without.branch(), Some(&b"z9hG4bKas3"[..]));
    assert_eq!(without.call_id(), b"SSG95523997077@hlau_4100");
    // Either way our received replaces the one there.
    for m in [&with, &without] {
        let mut out = Vec::new();
        Splice::new(m)
            .set_via_received(Some(b"2001:db8::1"), 0)
            .write_to(&mut out);
        assert_eq!(scan(&out).top_via().received, Some(&b"2001:db8::1"[..]));
    }
}

#[test]
fn ipv6_in_sdp_body() {
    let buf = rfc5118!("ipv6-in-sdp");
    // The RFC declares Content-Length 268 for a 251-octet body: over UDP that is a body
    // shorter than Content-Length (RFC 3261 §18.3).
    assert_eq!(refused(buf), (K::BodyTooShort, buf.len()));
    // With the length the body really has, every IPv6 key reads as the RFC intends.
    let fixed = String::from_utf8_lossy(buf).replace("Content-Length: 268", "Content-Length: 251");
    let m = scan(fixed.as_bytes());
    assert_eq!(m.top_via().host, b"[2001:db8::20]");
    assert_eq!(
        socket(m.request_uri().unwrap()),
        "[2001:db8::10]:5060".parse().unwrap()
    );
    assert_eq!(socket(m.to().uri), "[2001:db8::10]:5060".parse().unwrap());
    assert_eq!(m.body().len(), 251);
    assert!(m.body().ends_with(b"a=rtpmap:107 H263-1998/90000\r\n"));
}

#[test]
fn mult_ip_in_header_mixes_ipv4_and_ipv6_vias() {
    let buf = rfc5118!("mult-ip-in-header");
    let m = check(
        buf,
        &Keys {
            method: Some(b"BYE"),
            status: None,
            request_uri: Some(b"sip:user@host.example.net"),
            transport: b"UDP",
            host: b"[2001:db8::9:1]",
            port: Some(6050),
            branch: Some(b"z9hG4bKas3-111"),
            vias: 3,
            call_id: b"997077@lau_4100",
            cseq: (89187, b"BYE"),
            from: (Some(b"user"), Some(b"81x2")),
            to: (Some(b"user"), Some(b"9817--94")),
            max_forwards: Some(70),
            content_length: Some(0),
            body: 0,
        },
    );
    let vias = header(&m, "Via");
    assert_eq!(
        vias[1],
        b"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKjhja8781hjuaij65144"
    );
    assert_eq!(
        vias[2],
        b"SIP/2.0/TCP [2001:db8::9:255];branch=z9hG4bK451jj;received=192.0.2.200"
    );
    let mut out = Vec::new();
    wire::write_response(&m, &Reply::new(200, b"OK"), &mut out);
    let r = scan(&out);
    assert_eq!(header(&r, "Via"), vias);
}

#[test]
fn mult_ip_in_sdp_body_is_cut_at_its_declared_length() {
    let buf = rfc5118!("mult-ip-in-sdp");
    let m = scan(buf);
    assert_eq!(m.top_via().host, b"[2001:db8::9:1]");
    assert_eq!(
        socket(m.request_uri().unwrap()),
        "[2001:db8::10]:5060".parse().unwrap()
    );
    // The RFC declares 181 octets of a 189-octet body: Content-Length wins (§18.3).
    assert_eq!(m.content_length(), Some(181));
    assert_eq!(m.body(), &buf[buf.len() - 189..buf.len() - 8]);
}

#[test]
fn ipv4_mapped_ipv6_addresses() {
    let buf = rfc5118!("ipv4-mapped-ipv6");
    let m = scan(buf);
    let via = m.top_via();
    assert_eq!(
        (via.host, via.port),
        (&b"[::ffff:192.0.2.10]"[..], Some(19823))
    );
    assert_eq!(via.branch, Some(&b"z9hG4bKbh19"[..]));
    assert_eq!(m.via_count(), 2);
    assert_eq!(
        socket(
            m.contact()
                .unwrap()
                .strip_prefix(b"\"T. desk phone\" ")
                .unwrap()
        ),
        "[::ffff:192.0.2.2]:5060".parse().unwrap()
    );
    // Declared 236 of 245 octets, as in mult-ip-in-sdp.
    assert_eq!(m.body().len(), 236);
    let k = wire::scan_keys(buf, &limits()).unwrap();
    assert_eq!(k.sent_by_host(), b"[::ffff:192.0.2.10]");
    assert_eq!(k.sent_by_port(), Some(19823));
}

#[test]
fn the_rfc_3261_abnf_bug_is_tolerated_as_the_correct_form() {
    let bug = scan(rfc5118!("ipv6-bug-abnf-3-colons"));
    let good = scan(rfc5118!("ipv6-correct-abnf-2-colons"));
    assert_eq!(
        bug.request_uri(),
        Some(&b"sip:user@[2001:db8:::192.0.2.1]"[..])
    );
    assert_eq!(
        good.request_uri(),
        Some(&b"sip:user@[2001:db8::192.0.2.1]"[..])
    );
    let want = "[2001:db8::192.0.2.1]:5060".parse().unwrap();
    assert_eq!(socket(bug.request_uri().unwrap()), want);
    assert_eq!(socket(good.request_uri().unwrap()), want);
    assert_eq!(routing(bug.to().uri), routing(good.to().uri));
    assert_eq!(routing(good.request_uri().unwrap()).scheme, Scheme::Sip);
}

// ---------------------------------------------------------------------------------------
// Every fixture: framing, local answers, and no panic whatever the bytes
// ---------------------------------------------------------------------------------------

const ALL: [&[u8]; 61] = [
    rfc4475!("wsinv"),
    rfc4475!("intmeth"),
    rfc4475!("esc01"),
    rfc4475!("escnull"),
    rfc4475!("esc02"),
    rfc4475!("lwsdisp"),
    rfc4475!("longreq"),
    rfc4475!("dblreq"),
    rfc4475!("semiuri"),
    rfc4475!("transports"),
    rfc4475!("mpart01"),
    rfc4475!("unreason"),
    rfc4475!("noreason"),
    rfc4475!("badinv01"),
    rfc4475!("clerr"),
    rfc4475!("ncl"),
    rfc4475!("scalar02"),
    rfc4475!("scalarlg"),
    rfc4475!("quotbal"),
    rfc4475!("ltgtruri"),
    rfc4475!("lwsruri"),
    rfc4475!("lwsstart"),
    rfc4475!("trws"),
    rfc4475!("escruri"),
    rfc4475!("baddate"),
    rfc4475!("regbadct"),
    rfc4475!("badaspec"),
    rfc4475!("baddn"),
    rfc4475!("badvers"),
    rfc4475!("mismatch01"),
    rfc4475!("mismatch02"),
    rfc4475!("bigcode"),
    rfc4475!("badbranch"),
    rfc4475!("insuf"),
    rfc4475!("unkscm"),
    rfc4475!("novelsc"),
    rfc4475!("unksm2"),
    rfc4475!("bext01"),
    rfc4475!("invut"),
    rfc4475!("regaut01"),
    rfc4475!("multi01"),
    rfc4475!("mcl01"),
    rfc4475!("bcast"),
    rfc4475!("zeromf"),
    rfc4475!("cparam01"),
    rfc4475!("cparam02"),
    rfc4475!("regescrt"),
    rfc4475!("sdp01"),
    rfc4475!("inv2543"),
    rfc5118!("ipv6-good"),
    rfc5118!("ipv6-bad"),
    rfc5118!("port-ambiguous"),
    rfc5118!("port-unambiguous"),
    rfc5118!("via-received-param-with-delim"),
    rfc5118!("via-received-param-no-delim"),
    rfc5118!("ipv6-in-sdp"),
    rfc5118!("mult-ip-in-header"),
    rfc5118!("mult-ip-in-sdp"),
    rfc5118!("ipv4-mapped-ipv6"),
    rfc5118!("ipv6-bug-abnf-3-colons"),
    rfc5118!("ipv6-correct-abnf-2-colons"),
];

fn answers(buf: &[u8], status: u16) -> bool {
    let mut out = Vec::new();
    let reply = Reply {
        to_tag: Some(b"refused"),
        ..Reply::new(status, b"Bad Request")
    };
    if !wire::write_response_to_unparsed(buf, &reply, &mut out) {
        assert!(out.is_empty());
        return false;
    }
    // The fields a client matches its transaction on are copied, whatever their faults.
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with(&format!("SIP/2.0 {status} Bad Request\r\n")),
        "{text}"
    );
    assert!(text.ends_with("Content-Length: 0\r\n\r\n"), "{text}");
    let request = String::from_utf8_lossy(buf);
    for name in ["Call-ID: ", "CSeq: "] {
        let line = request.lines().find(|l| l.starts_with(name)).unwrap();
        assert!(text.contains(line), "{line} in {text}");
    }
    true
}

fn answers_400(buf: &[u8]) -> bool {
    answers(buf, 400)
}

#[test]
fn every_fixture_is_crlf_terminated_as_in_the_rfcs() {
    for buf in ALL {
        let head = &buf[..at(buf, "\r\n\r\n")];
        let bare_lf = head
            .windows(2)
            .filter(|w| w[1] == b'\n' && w[0] != b'\r')
            .count();
        assert_eq!(bare_lf, 0, "{}", String::from_utf8_lossy(&head[..40]));
    }
}

#[test]
fn a_stream_of_every_fixture_with_a_true_content_length_frames_exactly() {
    let whole: Vec<&[u8]> = ALL
        .iter()
        .copied()
        .filter(|b| {
            wire::scan(b, &limits())
                .is_ok_and(|m| m.content_length().is_some() && m.as_bytes().len() == b.len())
        })
        .collect();
    assert!(whole.len() > 35, "{}", whole.len());
    let mut stream = Vec::new();
    for (i, m) in whole.iter().enumerate() {
        if i % 3 == 0 {
            stream.extend_from_slice(b"\r\n\r\n");
        }
        stream.extend_from_slice(m);
    }
    let mut framer = StreamFramer::new(limits());
    let mut buffered = Vec::new();
    let mut framed = Vec::new();
    for chunk in stream.chunks(7) {
        buffered.extend_from_slice(chunk);
        while let Some((m, used)) = framer.next_message(&buffered).unwrap() {
            framed.push(m.as_bytes().to_vec());
            buffered.drain(..used);
        }
    }
    assert_eq!(framed.len(), whole.len());
    for (got, want) in framed.iter().zip(&whole) {
        assert_eq!(got.as_slice(), *want);
    }
}

/// Every entry point on `buf`; whatever the bytes, none may panic.
fn exercise(buf: &[u8]) {
    if let Ok(m) = wire::scan(buf, &limits()) {
        let _ = (
            m.top_via(),
            m.contact(),
            m.route(),
            m.record_route(),
            m.request_user(),
        );
        let _ = m.headers().count();
        let mut out = Vec::new();
        let reply = Reply {
            to_tag: Some(b"t"),
            received: Some(b"192.0.2.1"),
            source_port: 5060,
            via_params: b";oc=1",
            ..Reply::new(100, b"Trying")
        };
        wire::write_response(&m, &reply, &mut out);
        wire::write_response(
            &m,
            &Reply {
                status: 500,
                ..reply
            },
            &mut out,
        );
        let s = Splice::new(&m)
            .insert_via(b"Via: SIP/2.0/UDP us")
            .set_via_received(Some(b"192.0.2.9"), 1)
            .set_to_tag(b"x");
        let s = s.remove_top_route().unwrap_or_else(|_| Splice::new(&m));
        s.write_to(&mut out);
        if let Ok(s) = Splice::new(&m).remove_top_via() {
            s.write_to(&mut out);
        }
        if let Some(u) = m.request_uri() {
            let _ = RoutingUri::parse(u);
        }
        let _ = RoutingUri::parse(m.to().uri);
    }
    let _ = wire::scan_keys(buf, &limits());
    let _ = wire::parse_datagram(buf, &limits());
    let _ = StreamFramer::new(limits()).next_message(buf);
    let mut out = Vec::new();
    let _ = wire::write_response_to_unparsed(buf, &Reply::new(400, b"Bad"), &mut out);
}

#[test]
fn no_prefix_of_any_fixture_panics() {
    for buf in ALL {
        for end in 0..=buf.len() {
            exercise(&buf[..end]);
        }
    }
}

#[test]
fn no_single_byte_change_to_any_header_section_panics() {
    const BYTES: [u8; 8] = [0, b'\r', b'\n', b' ', b':', b';', b'"', b'['];
    for buf in ALL {
        let head = at(buf, "\r\n\r\n") + 4;
        let mut copy = buf.to_vec();
        for i in 0..head.min(400) {
            let orig = copy[i];
            for b in BYTES {
                copy[i] = b;
                exercise(&copy);
            }
            copy[i] = orig;
        }
    }
}
