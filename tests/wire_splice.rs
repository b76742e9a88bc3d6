//! Splicing edits round-trip: the edited message scans to the intended keys, every
//! header line the edits do not name is byte-identical and in the same order, and the
//! body is untouched.
//!
//! Header lines are compared through `common::split_lines`, a line splitter that does
//! not use the scanner, so a scanner bug cannot hide a splice bug.

mod common;

use common::{LineKind, MsgModel, Style, ViaModel};
use proptest::prelude::*;
use ringfence::wire::{self, EditError, Limits, Message, Splice};

const OUR_HOST: &str = "198.51.100.10:5060";

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The header name as written on a line (up to the colon, trimmed).
fn name_of(line: &[u8]) -> String {
    let colon = line.iter().position(|&c| c == b':').expect("a colon");
    show(&line[..colon]).trim().to_ascii_lowercase()
}

fn is_via(line: &[u8]) -> bool {
    matches!(name_of(line).as_str(), "via" | "v")
}

fn is_max_forwards(line: &[u8]) -> bool {
    name_of(line) == "max-forwards"
}

fn is_to(line: &[u8]) -> bool {
    matches!(name_of(line).as_str(), "to" | "t")
}

/// `line` with its value replaced, the name kept as written.
fn reline(line: &[u8], value: &str, eol: &str) -> Vec<u8> {
    let colon = line.iter().position(|&c| c == b':').expect("a colon");
    let mut out = line[..colon].to_vec();
    out.extend_from_slice(format!(": {value}{eol}").as_bytes());
    out
}

fn scan(bytes: &[u8]) -> Result<Message<'_>, TestCaseError> {
    wire::scan(bytes, &Limits::default())
        .map_err(|e| TestCaseError::fail(format!("{e}\n{}", show(bytes))))
}

/// The top Via after `set_via_received(Some(ip), port)`: `received` replaced in place
/// or appended, an `rport` the client sent given the port.
fn with_received(via: &ViaModel, ip: &str, port: u16) -> ViaModel {
    let mut v = via.clone();
    let mut has_received = false;
    for p in &mut v.params {
        if p.name.eq_ignore_ascii_case("rport") {
            p.value = Some(port.to_string());
        } else if p.name.eq_ignore_ascii_case("received") {
            p.value = Some(ip.to_owned());
            has_received = true;
        }
    }
    if !has_received {
        v.params.push(common::Param::new("received", Some(ip)));
    }
    v
}

fn via_line_value(vias: &[ViaModel]) -> String {
    vias.iter()
        .map(ViaModel::render)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Lines with those matching `drop` removed.
fn without(lines: &[Vec<u8>], drop: impl Fn(usize, &[u8]) -> bool) -> Vec<Vec<u8>> {
    lines
        .iter()
        .enumerate()
        .filter(|(i, l)| !drop(*i, l))
        .map(|(_, l)| l.clone())
        .collect()
}

struct Forward {
    branch: String,
    uri: String,
    rr_host: String,
    received: String,
    port: u16,
}

fn forward_strategy() -> impl Strategy<Value = Forward> {
    (
        common::branch(),
        common::sip_uri(),
        common::host(),
        common::ipv4(),
        1u16..=65535,
    )
        .prop_map(|(branch, (uri, _), rr_host, received, port)| Forward {
            branch,
            uri,
            rr_host,
            received,
            port,
        })
}

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "branch={} uri={} rr={} received={}:{}",
            self.branch, self.uri, self.rr_host, self.received, self.port
        )
    }
}

fn check_forward(m: &MsgModel, fwd: &Forward) -> Result<(), TestCaseError> {
    let r = m.render();
    let eol = m.eol();
    let msg = scan(&r.bytes)?;
    let via_line = format!("Via: SIP/2.0/UDP {OUR_HOST};branch={}", fwd.branch);
    let rr_value = format!("<sip:{};lr>", fwd.rr_host);
    let rr_line = format!("Record-Route: {rr_value}");

    let splice = Splice::new(&msg)
        .insert_via(via_line.as_bytes())
        .insert_record_route(rr_line.as_bytes())
        .rewrite_request_uri(fwd.uri.as_bytes())
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let splice = if m.max_forwards == Some(0) {
        prop_assert_eq!(
            splice.clone().decrement_max_forwards().err(),
            Some(EditError::MaxForwardsExhausted)
        );
        splice
    } else {
        splice
            .decrement_max_forwards()
            .map_err(|e| TestCaseError::fail(e.to_string()))?
    };
    let splice = splice.set_via_received(Some(fwd.received.as_bytes()), fwd.port);
    let mut out = Vec::new();
    splice.write_to(&mut out);

    // Keys of the edited message.
    let edited = scan(&out)?;
    prop_assert_eq!(
        edited.branch(),
        Some(fwd.branch.as_bytes()),
        "\n{}",
        show(&out)
    );
    prop_assert_eq!(edited.top_via().host, b"198.51.100.10");
    prop_assert_eq!(edited.request_uri(), Some(fwd.uri.as_bytes()));
    prop_assert_eq!(
        edited.max_forwards(),
        Some(match m.max_forwards {
            None => 70,
            Some(0) => 0,
            Some(n) => n - 1,
        })
    );
    prop_assert_eq!(edited.record_route(), Some(rr_value.as_bytes()));
    prop_assert_eq!(edited.via_count(), msg.via_count() + 1);
    prop_assert_eq!(edited.call_id(), msg.call_id());
    prop_assert_eq!(edited.cseq(), msg.cseq());
    prop_assert_eq!(edited.from_tag(), msg.from_tag());
    prop_assert_eq!(edited.to_tag(), msg.to_tag());
    prop_assert_eq!(edited.body(), msg.body());
    prop_assert_eq!(edited.method(), msg.method());

    // Lines, without the scanner.
    let (start, before, body) = common::split_lines(&r.bytes);
    let (new_start, after, new_body) = common::split_lines(&out);
    let method = show(msg.method().unwrap().as_bytes());
    prop_assert_eq!(
        show(&new_start),
        format!("{method} {} SIP/2.0{eol}", fwd.uri)
    );
    prop_assert!(start.ends_with(b" SIP/2.0\r\n") || start.ends_with(b" SIP/2.0\n"));
    prop_assert_eq!(&new_body, &body, "body changed");
    // Ours is the first Via and the first Record-Route.
    let first_via = after.iter().position(|l| is_via(l));
    prop_assert_eq!(
        first_via.map(|i| &after[i]),
        Some(&format!("{via_line}{eol}").into_bytes())
    );
    let first_rr = after.iter().find(|l| name_of(l) == "record-route");
    prop_assert_eq!(first_rr, Some(&format!("{rr_line}{eol}").into_bytes()));

    // Every other line byte-identical, in order. The edited ones: the inserted Via and
    // Record-Route, Max-Forwards, and the Via line that was on top (now second).
    let top_via_before = before.iter().position(|l| is_via(l)).unwrap();
    let top_via_after = after
        .iter()
        .enumerate()
        .filter(|(_, l)| is_via(l))
        .nth(1)
        .unwrap()
        .0;
    let kept_before = without(&before, |i, l| i == top_via_before || is_max_forwards(l));
    let kept_after = without(&after, |i, l| {
        i == top_via_after
            || is_max_forwards(l)
            || l == format!("{via_line}{eol}").as_bytes()
            || l == format!("{rr_line}{eol}").as_bytes()
    });
    prop_assert_eq!(
        kept_after.iter().map(|l| show(l)).collect::<Vec<_>>(),
        kept_before.iter().map(|l| show(l)).collect::<Vec<_>>(),
        "untouched lines changed"
    );
    prop_assert_eq!(
        after.len(),
        before.len() + 2 + usize::from(m.max_forwards.is_none())
    );

    // The edited lines, exactly.
    let mut top_line = m.via_lines[0].clone();
    top_line[0] = with_received(&top_line[0], &fwd.received, fwd.port);
    prop_assert_eq!(
        show(&after[top_via_after]),
        show(&reline(
            &before[top_via_before],
            &via_line_value(&top_line),
            eol
        ))
    );
    let mf: Vec<_> = after.iter().filter(|l| is_max_forwards(l)).collect();
    prop_assert_eq!(mf.len(), 1);
    let expected_mf = match m.max_forwards {
        None => format!("Max-Forwards: 70{eol}").into_bytes(),
        Some(n) => {
            let line = before.iter().find(|l| is_max_forwards(l)).unwrap();
            reline(line, &n.saturating_sub(1).to_string(), eol)
        }
    };
    prop_assert_eq!(show(mf[0]), show(&expected_mf));
    // The scanner's view of the old top Via, now second, agrees.
    let unwrapped = without_first_via(&out, &via_line, eol);
    let second = scan(&unwrapped)?;
    prop_assert_eq!(second.top_via().received, Some(fwd.received.as_bytes()));
    let sent_rport = m.top_via().params.iter().any(|p| p.name == "rport");
    prop_assert_eq!(second.top_via().rport, sent_rport.then_some(Some(fwd.port)));
    prop_assert_eq!(second.branch(), m.top_via().branch().map(str::as_bytes));
    Ok(())
}

/// The message with our inserted Via line cut out again.
fn without_first_via(msg: &[u8], via_line: &str, eol: &str) -> Vec<u8> {
    let line = format!("{via_line}{eol}");
    let at = msg
        .windows(line.len())
        .position(|w| w == line.as_bytes())
        .expect("our Via line");
    let mut out = msg[..at].to_vec();
    out.extend_from_slice(&msg[at + line.len()..]);
    out
}

fn check_relay(m: &MsgModel, new_tag: &str) -> Result<(), TestCaseError> {
    let r = m.render();
    let eol = m.eol();
    let msg = scan(&r.bytes)?;
    let mut out = Vec::new();
    Splice::new(&msg)
        .remove_top_via()
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .set_to_tag(new_tag.as_bytes())
        .write_to(&mut out);

    let edited = scan(&out)?;
    let next = m.vias().nth(1).expect("two Vias");
    prop_assert_eq!(
        edited.branch(),
        next.branch().map(str::as_bytes),
        "\n{}",
        show(&out)
    );
    prop_assert_eq!(edited.top_via().host, next.host.as_bytes());
    prop_assert_eq!(edited.top_via().port, next.port);
    prop_assert_eq!(edited.via_count(), msg.via_count() - 1);
    prop_assert_eq!(edited.to_tag(), Some(new_tag.as_bytes()));
    prop_assert_eq!(edited.status(), msg.status());
    prop_assert_eq!(edited.reason(), msg.reason());
    prop_assert_eq!(edited.call_id(), msg.call_id());
    prop_assert_eq!(edited.cseq(), msg.cseq());
    prop_assert_eq!(edited.from_tag(), msg.from_tag());
    prop_assert_eq!(edited.body(), msg.body());

    let (start, before, body) = common::split_lines(&r.bytes);
    let (new_start, after, new_body) = common::split_lines(&out);
    prop_assert_eq!(new_start, start);
    prop_assert_eq!(new_body, body);

    // Every line but the top Via and To byte-identical, in order.
    let top_via = before.iter().position(|l| is_via(l)).unwrap();
    let shares_line = m.via_lines[0].len() > 1;
    let kept_before = without(&before, |i, l| i == top_via || is_to(l));
    let kept_after = without(&after, |i, l| (shares_line && i == top_via) || is_to(l));
    prop_assert_eq!(
        kept_after.iter().map(|l| show(l)).collect::<Vec<_>>(),
        kept_before.iter().map(|l| show(l)).collect::<Vec<_>>(),
        "untouched lines changed"
    );
    // The edited lines, exactly: the top Via value gone (with its line when it was
    // alone on it), the To tag set.
    if shares_line {
        prop_assert_eq!(after.len(), before.len());
        prop_assert_eq!(
            show(&after[top_via]),
            show(&reline(
                &before[top_via],
                &via_line_value(&m.via_lines[0][1..]),
                eol
            ))
        );
    } else {
        prop_assert_eq!(after.len(), before.len() - 1);
    }
    let to_before = before.iter().find(|l| is_to(l)).unwrap();
    let to_after = after.iter().find(|l| is_to(l)).unwrap();
    prop_assert_eq!(
        show(to_after),
        show(&reline(to_before, &m.to.with_tag(new_tag).render(), eol))
    );
    Ok(())
}

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
    fn forwarding_edits_round_trip(
        m in prop_oneof![common::request(Style::CANONICAL), common::request(Style::VARIED)],
        fwd in forward_strategy(),
    ) {
        check_forward(&m, &fwd)?;
    }

    #[test]
    fn relaying_a_response_round_trips(
        m in prop_oneof![
            common::response(Style::CANONICAL, 2),
            common::response(Style::VARIED, 2),
        ],
        tag in common::tag(),
    ) {
        check_relay(&m, &tag)?;
    }
}

// ---------------------------------------------------------------------------------------
// The corpus, byte for byte.

const INVITE: &[u8] = include_bytes!("fixtures/corpus/invite.sip");
const OK: &[u8] = include_bytes!("fixtures/corpus/ok.sip");

#[test]
fn forwarding_the_corpus_invite() {
    let msg = wire::scan(INVITE, &Limits::default()).unwrap();
    let mut out = Vec::new();
    Splice::new(&msg)
        .insert_via(b"Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKrf.1")
        .insert_record_route(b"Record-Route: <sip:198.51.100.10;lr>")
        .rewrite_request_uri(b"sip:+18005550199@192.0.2.80:5080")
        .unwrap()
        .decrement_max_forwards()
        .unwrap()
        .set_via_received(Some(b"192.0.2.1"), 5062)
        .write_to(&mut out);
    let text = show(INVITE)
        .replacen(
            "INVITE sip:+18005550199@198.51.100.10:5060;user=phone SIP/2.0\r\n",
            "INVITE sip:+18005550199@192.0.2.80:5080 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKrf.1\r\n\
             Record-Route: <sip:198.51.100.10;lr>\r\n",
            1,
        )
        .replacen(
            ";branch=z9hG4bK3f1a9e4c0b7d2a61;rport\r\n",
            ";branch=z9hG4bK3f1a9e4c0b7d2a61;rport=5062;received=192.0.2.1\r\n",
            1,
        )
        .replacen("Max-Forwards: 69\r\n", "Max-Forwards: 68\r\n", 1);
    assert_eq!(show(&out), text);
}

#[test]
fn relaying_the_corpus_200() {
    let msg = wire::scan(OK, &Limits::default()).unwrap();
    let mut out = Vec::new();
    Splice::new(&msg)
        .remove_top_via()
        .unwrap()
        .write_to(&mut out);
    let text = show(OK).replacen(
        "Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKrf.2a0c9d1e55f0b3c7\r\n",
        "",
        1,
    );
    assert_eq!(show(&out), text);
    // Edits of the wrong kind are refused, not guessed at.
    assert_eq!(
        Splice::new(&msg).rewrite_request_uri(b"sip:x@y").err(),
        Some(EditError::WrongKind)
    );
    assert_eq!(
        Splice::new(&msg).decrement_max_forwards().err(),
        Some(EditError::WrongKind)
    );
}

#[test]
fn line_kinds_are_rendered_in_the_model() {
    // Guard for the generator itself: a request model renders one line per item.
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let m = common::request(Style::CANONICAL)
        .new_tree(&mut runner)
        .unwrap()
        .current();
    let r = m.render();
    let vias = r
        .lines
        .iter()
        .filter(|(k, _)| matches!(k, LineKind::Via(_)))
        .count();
    assert_eq!(vias, m.via_lines.len());
    let (_, lines, _) = common::split_lines(&r.bytes);
    assert_eq!(lines.len(), r.lines.len());
}

// ---------------------------------------------------------------------------------------
// Scanner bugs found by the fuzzer, kept as regressions.

/// Found by `fuzz/fuzz_targets/scan.rs`: a comma inside `[...]` was part of the top
/// Via when parsed but split the value when a Via below the top was counted, so the
/// count changed when a proxy inserted its Via above it. Now a bracketed sent-by must
/// be an IPv6 reference (else `BadVia`) and counting treats `[...]` as one unit.
#[test]
fn via_count_does_not_change_when_a_via_is_inserted_above() {
    let limits = Limits::default();
    for value in [
        "SIP/2.0/UDP [2001:db8,::1]:5060;branch=z9hG4bKa",
        "SIP/2.0/UDP [2001:db8::1];x=[2001:db8::9:,255];branch=z9hG4bKa",
    ] {
        let request = format!(
            "OPTIONS sip:+18005550199@example.net SIP/2.0\r\n\
             Via: {value}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:+14155550123@carrier.example>;tag=ft1\r\n\
             To: <sip:+18005550199@example.net>\r\n\
             Call-ID: cid-brackets@carrier.example\r\n\
             CSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let msg = match wire::scan(request.as_bytes(), &limits) {
            Err(e) => {
                assert_eq!(e.kind, wire::ParseErrorKind::BadVia, "{value}");
                continue;
            }
            Ok(m) => m,
        };
        assert_eq!(msg.via_count(), 1, "{value}");
        let mut out = Vec::new();
        Splice::new(&msg)
            .insert_via(b"Via: SIP/2.0/UDP 198.51.100.10;branch=z9hG4bKrf")
            .write_to(&mut out);
        let fwd = wire::scan(&out, &limits).unwrap();
        assert_eq!(
            fwd.via_count(),
            2,
            "forwarding {value} miscounts:\n{}",
            show(&out)
        );

        // The same value second in a response: popping the top Via must leave one.
        let response = format!(
            "SIP/2.0 200 OK\r\n\
             Via: SIP/2.0/UDP 198.51.100.10;branch=z9hG4bKrf\r\n\
             Via: {value}\r\n\
             From: <sip:+14155550123@carrier.example>;tag=ft1\r\n\
             To: <sip:+18005550199@example.net>;tag=tt1\r\n\
             Call-ID: cid-brackets@carrier.example\r\n\
             CSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let resp = wire::scan(response.as_bytes(), &limits).unwrap();
        assert_eq!(resp.via_count(), 2, "{value} counted as more than one Via");
    }
}
