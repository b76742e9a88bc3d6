//! Differential tests: the scanner against rsip 0.4 and against the generator's model.
//!
//! 1. Property: for well-formed messages in canonical form, the scanner's keys equal
//!    the model's and rsip's (method, Request-URI, status, top Via branch/host/port,
//!    Call-ID, CSeq, From/To tags, body). Where rsip cannot represent a message at all
//!    (extension methods), the scanner is checked against the model alone and rsip's
//!    refusal is asserted.
//! 2. Deterministic: forms carriers send where rsip is known to be wrong, each showing
//!    the scanner right and rsip wrong. If an rsip upgrade fixes one, its `rsip_*`
//!    assertion fails: delete that assertion, the scanner's half still stands.

mod common;

use common::{MsgModel, StartModel, Style};
use proptest::prelude::*;
use ringfence::wire::{self, Datagram, Limits, Message};
use rsip::prelude::*;

/// The keys compared, owned so that three sources can be put side by side.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Keys {
    method: Option<String>,
    request_uri: Option<String>,
    status: Option<u16>,
    branch: Option<String>,
    via_host: String,
    via_port: Option<u16>,
    call_id: String,
    cseq: (u32, String),
    from_tag: Option<String>,
    to_tag: Option<String>,
    body: Vec<u8>,
}

fn s(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("generated keys are ASCII")
}

fn model_keys(m: &MsgModel) -> Keys {
    let top = m.top_via();
    let (method, request_uri, status) = match &m.start {
        StartModel::Request { method, uri, .. } => (Some(method.clone()), Some(uri.clone()), None),
        StartModel::Response { code, .. } => (None, None, Some(*code)),
    };
    Keys {
        method,
        request_uri,
        status,
        branch: top.branch().map(str::to_owned),
        via_host: top.host.clone(),
        via_port: top.port,
        call_id: m.call_id.clone(),
        cseq: (m.cseq, m.cseq_method.clone()),
        from_tag: m.from.tag().map(str::to_owned),
        to_tag: m.to.tag().map(str::to_owned),
        body: m.body.clone(),
    }
}

fn our_keys(m: &Message<'_>) -> Keys {
    let via = m.top_via();
    Keys {
        method: m.method().map(|x| s(x.as_bytes())),
        request_uri: m.request_uri().map(s),
        status: m.status(),
        branch: via.branch.map(s),
        via_host: s(via.host),
        via_port: via.port,
        call_id: s(m.call_id()),
        cseq: (m.cseq().number, s(m.cseq().method.as_bytes())),
        from_tag: m.from_tag().map(s),
        to_tag: m.to_tag().map(s),
        body: m.body().to_vec(),
    }
}

/// rsip's view of the same keys, through its typed headers.
fn rsip_keys(bytes: &[u8]) -> Result<Keys, String> {
    let msg = rsip::SipMessage::try_from(bytes).map_err(|e| format!("parse: {e}"))?;
    let (method, request_uri, status) = match &msg {
        rsip::SipMessage::Request(r) => (Some(r.method.to_string()), Some(r.uri.to_string()), None),
        rsip::SipMessage::Response(r) => (None, None, Some(r.status_code.code())),
    };
    let via = msg
        .via_header()
        .map_err(|e| e.to_string())?
        .typed()
        .map_err(|e| format!("Via: {e}"))?;
    let cseq = msg
        .cseq_header()
        .map_err(|e| e.to_string())?
        .typed()
        .map_err(|e| format!("CSeq: {e}"))?;
    let from = msg
        .from_header()
        .map_err(|e| e.to_string())?
        .typed()
        .map_err(|e| format!("From: {e}"))?;
    let to = msg
        .to_header()
        .map_err(|e| e.to_string())?
        .typed()
        .map_err(|e| format!("To: {e}"))?;
    Ok(Keys {
        method,
        request_uri,
        status,
        branch: via.branch().map(|b| b.to_string()),
        via_host: via.uri.host_with_port.host.to_string(),
        via_port: via.uri.host_with_port.port.map(|p| *p.value()),
        call_id: msg
            .call_id_header()
            .map_err(|e| e.to_string())?
            .value()
            .to_owned(),
        cseq: (cseq.seq, cseq.method.to_string()),
        from_tag: from.tag().map(|t| t.to_string()),
        to_tag: to.tag().map(|t| t.to_string()),
        body: msg.body().clone(),
    })
}

/// rsip re-serialises a URI from its model (`transport=udp` prints as
/// `transport=UDP`), so our Request-URI is put through the same round trip before the
/// two are compared: equal means both took the same bytes for the URI.
fn as_rsip_prints_it(mut k: Keys) -> Keys {
    k.request_uri = k
        .request_uri
        .map(|u| match rsip::Uri::try_from(u.as_str()) {
            Ok(uri) => uri.to_string(),
            Err(e) => format!("rsip cannot parse {u}: {e}"),
        });
    k
}

fn check_against_model_and_rsip(model: &MsgModel) -> Result<(), TestCaseError> {
    let r = model.render();
    let limits = Limits::default();
    let msg = wire::scan(&r.bytes, &limits)
        .map_err(|e| TestCaseError::fail(format!("scan failed: {e}\n{}", show(&r.bytes))))?;
    let ours = our_keys(&msg);
    let expected = model_keys(model);
    prop_assert_eq!(&ours, &expected, "scanner vs model\n{}", show(&r.bytes));

    // The lean scan agrees with the full one.
    let k = wire::scan_keys(&r.bytes, &limits)
        .map_err(|e| TestCaseError::fail(format!("scan_keys failed: {e}")))?;
    prop_assert_eq!(k.method(), msg.method());
    prop_assert_eq!(k.status(), msg.status());
    prop_assert_eq!(k.branch(), msg.branch());
    prop_assert_eq!(k.sent_by_host(), msg.top_via().host);
    prop_assert_eq!(k.sent_by_port(), msg.top_via().port);
    // CSeq is read for responses only (RFC 3261 §17.1.3 matches on it; §17.2.3 does not).
    let is_response = msg.status().is_some();
    prop_assert_eq!(k.cseq_number(), is_response.then(|| msg.cseq().number));
    prop_assert_eq!(k.cseq_method(), is_response.then(|| msg.cseq().method));

    // Other views the model knows.
    prop_assert_eq!(msg.via_count(), model.vias().count());
    prop_assert_eq!(msg.max_forwards(), model.max_forwards);
    if let StartModel::Request { user, .. } = &model.start {
        prop_assert_eq!(msg.request_user(), Some(user.as_bytes()));
    }
    prop_assert_eq!(msg.header_count(), r.lines.len());

    let known = |m: &str| common::KNOWN_METHODS.contains(&m);
    let extension =
        expected.method.as_deref().is_some_and(|m| !known(m)) || !known(&model.cseq_method);
    match rsip_keys(&r.bytes) {
        Ok(theirs) => {
            prop_assert!(!extension, "rsip accepted an extension method");
            prop_assert_eq!(
                &theirs,
                &as_rsip_prints_it(ours),
                "rsip vs scanner\n{}",
                show(&r.bytes)
            );
        }
        // rsip's Method is a closed enum: extension methods are a parse error.
        Err(e) if extension => prop_assert!(e.contains("invalid method"), "{}", e),
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "rsip rejected a canonical message: {e}\n{}",
                show(&r.bytes)
            )));
        }
    }
    Ok(())
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// 512 cases unless `PROPTEST_CASES` asks for another number.
fn config() -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 512;
    }
    c
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn canonical_requests_match_rsip(m in common::request(Style::CANONICAL)) {
        check_against_model_and_rsip(&m)?;
    }

    #[test]
    fn canonical_responses_match_rsip(m in common::response(Style::CANONICAL, 1)) {
        check_against_model_and_rsip(&m)?;
    }

    /// Beyond rsip's reach (compact names, several Vias per line, bare LF, no
    /// Content-Length): the scanner still agrees with the model.
    #[test]
    fn varied_messages_match_the_model(
        m in prop_oneof![common::request(Style::VARIED), common::response(Style::VARIED, 1)]
    ) {
        let r = m.render();
        let msg = match wire::parse_datagram(&r.bytes, &Limits::default()) {
            Ok(Datagram::Message(msg)) => msg,
            other => return Err(TestCaseError::fail(format!("{other:?}\n{}", show(&r.bytes)))),
        };
        prop_assert_eq!(our_keys(&msg), model_keys(&m), "\n{}", show(&r.bytes));
        prop_assert_eq!(msg.via_count(), m.vias().count());
    }
}

// ---------------------------------------------------------------------------------------
// Forms where rsip is wrong.

const L: Limits = Limits {
    max_message_len: 16 * 1024,
    max_headers: 128,
    max_vias: 70,
};

fn ours(msg: &str) -> Message<'_> {
    wire::scan(msg.as_bytes(), &L).unwrap_or_else(|e| panic!("scan: {e}\n{msg}"))
}

fn rsip_parse(msg: &str) -> Result<rsip::SipMessage, rsip::Error> {
    rsip::SipMessage::try_from(msg.as_bytes())
}

fn rsip_top_branch(msg: &str) -> Option<String> {
    let m = rsip_parse(msg).ok()?;
    let via = m.via_header().ok()?.typed().ok()?;
    via.branch().map(|b| b.to_string())
}

const TAIL: &str = "Max-Forwards: 70\r\n\
    From: <sip:+14155550123@carrier.example>;tag=ft1\r\n\
    To: <sip:+18005550199@example.net>\r\n\
    Call-ID: cid-1@carrier.example\r\n\
    CSeq: 1 INVITE\r\n\
    Content-Length: 0\r\n\r\n";

fn invite_with_vias(vias: &str) -> String {
    format!("INVITE sip:+18005550199@example.net SIP/2.0\r\n{vias}{TAIL}")
}

#[test]
fn compact_top_via_before_a_long_form_via() {
    let msg = invite_with_vias(
        "v: SIP/2.0/UDP edge.carrier.example:5060;branch=z9hG4bKtop\r\n\
         Via: SIP/2.0/UDP origin.carrier.example;branch=z9hG4bKsecond\r\n",
    );
    let m = ours(&msg);
    assert_eq!(m.branch(), Some(&b"z9hG4bKtop"[..]));
    assert_eq!(m.top_via().host, b"edge.carrier.example");
    assert_eq!(m.via_count(), 2);
    // rsip does not know `v` and returns the second Via as the top one: a response to
    // this request would be routed past the hop that sent it.
    assert_eq!(rsip_top_branch(&msg).as_deref(), Some("z9hG4bKsecond"));
}

#[test]
fn compact_forms_of_every_key() {
    let msg = "INVITE sip:+18005550199@example.net SIP/2.0\r\n\
        v: SIP/2.0/UDP edge.carrier.example;branch=z9hG4bKc\r\n\
        f: <sip:+14155550123@carrier.example>;tag=ft1\r\n\
        t: <sip:+18005550199@example.net>\r\n\
        i: cid-compact@carrier.example\r\n\
        CSeq: 7 INVITE\r\n\
        l: 0\r\n\r\n";
    let m = ours(msg);
    assert_eq!(m.call_id(), b"cid-compact@carrier.example");
    assert_eq!(m.from_tag(), Some(&b"ft1"[..]));
    assert_eq!(m.content_length(), Some(0));
    // rsip parses the message but cannot find Via, From, To or Call-ID in it.
    let r = rsip_parse(msg).expect("rsip parses it");
    assert!(r.via_header().is_err());
    assert!(r.call_id_header().is_err());
    assert!(r.from_header().is_err());
}

#[test]
fn several_vias_on_one_line() {
    let msg = invite_with_vias(
        "Via: SIP/2.0/UDP edge.carrier.example:5060, \
         SIP/2.0/TCP origin.carrier.example:5070;branch=z9hG4bKsecond\r\n",
    );
    let m = ours(&msg);
    // The top Via has no branch (an RFC 2543 hop); the second value's branch must not
    // leak into it.
    assert_eq!(m.branch(), None);
    assert_eq!(m.top_via().host, b"edge.carrier.example");
    assert_eq!(m.top_via().port, Some(5060));
    assert_eq!(m.via_count(), 2);
    // rsip treats the whole line as one Via and fails to read it.
    let r = rsip_parse(&msg).expect("rsip parses the message");
    assert!(r.via_header().unwrap().typed().is_err());

    let msg = invite_with_vias(
        "Via: SIP/2.0/UDP edge.carrier.example;branch=z9hG4bKtop,SIP/2.0/TCP b.example;branch=z9hG4bKb\r\n\
         Via: SIP/2.0/UDP c.example;branch=z9hG4bKc\r\n",
    );
    let m = ours(&msg);
    assert_eq!(m.branch(), Some(&b"z9hG4bKtop"[..]));
    assert_eq!(m.via_count(), 3);
    let r = rsip_parse(&msg).expect("rsip parses the message");
    // rsip can only count Via headers, not Via values: it sees two hops of three.
    assert_eq!(
        r.headers()
            .iter()
            .filter(|h| matches!(h, rsip::Header::Via(_)))
            .count(),
        2
    );
}

#[test]
fn whitespace_between_host_and_parameters() {
    for via in [
        "Via: SIP/2.0/UDP edge.carrier.example ;branch=z9hG4bKsp\r\n",
        "Via: SIP/2.0/UDP edge.carrier.example:5060 ; branch = z9hG4bKsp\r\n",
        "Via: SIP/2.0 / UDP edge.carrier.example\t;branch=z9hG4bKsp ;rport\r\n",
    ] {
        let msg = invite_with_vias(via);
        let m = ours(&msg);
        assert_eq!(m.branch(), Some(&b"z9hG4bKsp"[..]), "{via}");
        assert_eq!(m.top_via().host, b"edge.carrier.example", "{via}");
        // rsip loses the branch (or the whole Via): the transaction cannot be matched.
        assert_eq!(rsip_top_branch(&msg), None, "{via}");
    }
}

#[test]
fn whitespace_before_the_colon() {
    let msg = "INVITE sip:+18005550199@example.net SIP/2.0\r\n\
        Via : SIP/2.0/UDP edge.carrier.example;branch=z9hG4bKws\r\n\
        Max-Forwards\t: 70\r\n\
        From  : <sip:+14155550123@carrier.example>;tag=ft1\r\n\
        To: <sip:+18005550199@example.net>\r\n\
        Call-ID : cid-ws@carrier.example\r\n\
        CSeq : 1 INVITE\r\n\
        Content-Length : 0\r\n\r\n";
    let m = ours(msg);
    assert_eq!(m.branch(), Some(&b"z9hG4bKws"[..]));
    assert_eq!(m.call_id(), b"cid-ws@carrier.example");
    assert_eq!(m.max_forwards(), Some(70));
    assert_eq!(m.cseq().number, 1);
    assert!(rsip_parse(msg).is_err(), "rsip rejects HCOLON whitespace");
}

#[test]
fn folded_header_lines() {
    let msg = "INVITE sip:+18005550199@example.net SIP/2.0\r\n\
        Via: SIP/2.0/UDP edge.carrier.example\r\n ;branch=z9hG4bKfold\r\n\
        Max-Forwards: 70\r\n\
        From: <sip:+14155550123@carrier.example>\r\n\t;tag=ft1\r\n\
        To: <sip:+18005550199@example.net>\r\n\
        Call-ID: cid-fold@carrier.example\r\n\
        CSeq: 1\r\n  INVITE\r\n\
        Subject: a long\r\n  subject\r\n\
        Content-Length: 0\r\n\r\n";
    let m = ours(msg);
    assert_eq!(m.branch(), Some(&b"z9hG4bKfold"[..]));
    assert_eq!(m.from_tag(), Some(&b"ft1"[..]));
    assert_eq!(m.cseq().number, 1);
    assert_eq!(m.cseq().method, wire::Method::Invite);
    assert_eq!(m.header_count(), 8);
    assert!(rsip_parse(msg).is_err(), "rsip rejects folded lines");
}

#[test]
fn missing_content_length_on_udp_runs_to_the_end_of_the_datagram() {
    let body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n\r\nafter a blank line";
    let msg = format!(
        "INVITE sip:+18005550199@example.net SIP/2.0\r\n\
         Via: SIP/2.0/UDP edge.carrier.example;branch=z9hG4bKnocl\r\n\
         From: <sip:+14155550123@carrier.example>;tag=ft1\r\n\
         To: <sip:+18005550199@example.net>\r\n\
         Call-ID: cid-nocl@carrier.example\r\n\
         CSeq: 1 INVITE\r\n\
         Content-Type: application/sdp\r\n\r\n{body}"
    );
    let m = ours(&msg);
    assert_eq!(m.content_length(), None);
    assert_eq!(m.body(), body.as_bytes());
    // rsip agrees on this one: it always takes the rest of the input as the body.
    assert_eq!(rsip_parse(&msg).unwrap().body(), body.as_bytes());
    // On a stream the same message cannot be framed (RFC 3261 §18.3).
    let mut framer = wire::StreamFramer::new(L);
    assert_eq!(
        framer.next_frame(msg.as_bytes()).unwrap_err().kind,
        wire::ParseErrorKind::MissingContentLength
    );
}

#[test]
fn content_length_bounds_the_body_on_udp() {
    // Where rsip is wrong: it ignores Content-Length, so bytes after the message in the
    // datagram become body, and a body shorter than Content-Length is accepted.
    let msg = invite_with_vias("Via: SIP/2.0/UDP edge.carrier.example;branch=z9hG4bKcl\r\n")
        .replace("Content-Length: 0", "Content-Length: 5")
        + "hello, and trailing bytes";
    let m = ours(&msg);
    assert_eq!(m.body(), b"hello");
    assert_eq!(
        rsip_parse(&msg).unwrap().body(),
        b"hello, and trailing bytes"
    );

    let short = invite_with_vias("Via: SIP/2.0/UDP edge.carrier.example;branch=z9hG4bKcl\r\n")
        .replace("Content-Length: 0", "Content-Length: 50")
        + "hello";
    assert_eq!(
        wire::scan(short.as_bytes(), &L).unwrap_err().kind,
        wire::ParseErrorKind::BodyTooShort
    );
    assert!(rsip_parse(&short).is_ok(), "rsip accepts a truncated body");
}

#[test]
fn extension_methods() {
    for method in ["FOOBAR", "X-PROBE", "PING"] {
        let msg = format!(
            "{method} sip:+18005550199@example.net SIP/2.0\r\n\
             Via: SIP/2.0/UDP edge.carrier.example;branch=z9hG4bKext\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:+14155550123@carrier.example>;tag=ft1\r\n\
             To: <sip:+18005550199@example.net>\r\n\
             Call-ID: cid-ext@carrier.example\r\n\
             CSeq: 3 {method}\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let m = ours(&msg);
        assert_eq!(m.method(), Some(wire::Method::Extension(method.as_bytes())));
        assert_eq!(m.cseq().method, wire::Method::Extension(method.as_bytes()));
        // A proxy must forward what it does not understand; rsip cannot even parse it.
        assert!(rsip_parse(&msg).is_err(), "rsip rejects {method}");
    }
}

#[test]
fn methods_are_case_sensitive() {
    // RFC 3261 §7.1: `invite` is an extension method, not INVITE. rsip folds case.
    let msg = invite_with_vias("Via: SIP/2.0/UDP edge.carrier.example;branch=z9hG4bKlc\r\n")
        .replace("INVITE sip", "invite sip")
        .replace("1 INVITE", "1 invite");
    let m = ours(&msg);
    assert_eq!(m.method(), Some(wire::Method::Extension(b"invite")));
    let r = rsip_parse(&msg).unwrap();
    assert!(matches!(r, rsip::SipMessage::Request(ref q) if q.method == rsip::Method::Invite));
}

#[test]
fn bare_lf_line_ends_tel_uris_and_ipv6_hosts() {
    let msg = "INVITE tel:+18005550199;phone-context=+1 SIP/2.0\n\
        Via: SIP/2.0/UDP [2001:db8::7]:5060;branch=z9hG4bKv6\n\
        From: <sip:+14155550123@carrier.example>;tag=ft1\n\
        To: <tel:+18005550199>\n\
        Call-ID: cid-v6@carrier.example\n\
        CSeq: 1 INVITE\n\
        Content-Length: 0\n\n";
    let m = ours(msg);
    assert_eq!(m.request_user(), Some(&b"+18005550199"[..]));
    assert_eq!(m.top_via().host, b"[2001:db8::7]");
    assert_eq!(m.top_via().port, Some(5060));
    assert!(rsip_parse(msg).is_err());
    let crlf = msg.replace('\n', "\r\n");
    assert!(ours(&crlf).branch().is_some());
    // Even with CRLF, rsip cannot read a tel: Request-URI...
    assert!(rsip_parse(&crlf).is_err());
    // ...nor an IPv6 sent-by.
    let sip = crlf.replace(
        "tel:+18005550199;phone-context=+1",
        "sip:+18005550199@example.net",
    );
    assert!(ours(&sip).branch().is_some());
    let r = rsip_parse(&sip).expect("rsip parses the message");
    assert!(r.via_header().unwrap().typed().is_err());
}
