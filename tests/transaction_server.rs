//! Server transactions through the public engine API, in virtual time.

mod support;

use std::time::Duration;

use ringfence::Config;
use support::sip::Req;
use support::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn invite_gets_100_at_once_then_final_and_retransmissions_get_identical_bytes() {
    let mut h = Harness::new(Config::default());
    let inv = Req::invite("+18005550199", "inv1");
    let out = h.send(CARRIER, &inv.bytes());
    assert_eq!(statuses(&out), [100, 404]);
    assert!(out.iter().all(|s| s.to == addr(CARRIER)));
    let final_bytes = out[1].bytes.clone();
    let again = one(h.send(CARRIER, &inv.bytes()));
    assert_eq!(
        again.bytes, final_bytes,
        "retransmission answered from cache"
    );
    assert_eq!(h.engine.stats().retransmissions_absorbed, 1);
    assert_eq!(h.engine.stats().transactions_created.server_invite, 1);
}

#[test]
fn timer_g_retransmits_final_at_500_1000_2000_4000_4000_until_h() {
    let mut h = Harness::new(Config::default());
    let inv = Req::invite("+18005550199", "g1");
    h.send(CARRIER, &inv.bytes());
    let out = h.run_until_idle(Duration::from_secs(40));
    let times: Vec<u64> = out
        .iter()
        .filter(|s| s.status() == Some(404))
        .map(|s| s.at.as_millis() as u64)
        .collect();
    assert_eq!(
        times,
        [
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ]
    );
    let st = h.engine.stats();
    assert_eq!(st.ack_timeouts, 1, "Timer H fired without an ACK");
    assert_eq!(st.transactions_active.total(), 0);
    assert_eq!(h.engine.poll_timeout(), None, "no timers left behind");
}

#[test]
fn ack_stops_retransmissions_and_timer_i_ends_the_transaction() {
    let mut h = Harness::new(Config::default());
    let inv = Req::invite("+18005550199", "ack1");
    let out = h.send(CARRIER, &inv.bytes());
    let tag = out[1]
        .msg()
        .to_tag()
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .unwrap();
    h.advance(ms(600));
    assert!(h.send(CARRIER, &inv.ack(&tag).bytes()).is_empty());
    assert_eq!(h.engine.stats().acks_absorbed, 1);
    assert_eq!(h.engine.stats().states.server_confirmed, 1);
    // Stray ACK retransmissions are absorbed in Confirmed.
    assert!(h.send(CARRIER, &inv.ack(&tag).bytes()).is_empty());
    let later = h.advance(Duration::from_secs(5));
    assert!(later.is_empty(), "no retransmission after the ACK");
    assert_eq!(
        h.engine.stats().transactions_active.total(),
        0,
        "Timer I (T4) ended it"
    );
}

#[test]
fn cancel_after_final_gets_200_and_changes_nothing() {
    let mut h = Harness::new(Config::default());
    let inv = Req::invite("+18005550199", "c1");
    let out = h.send(CARRIER, &inv.bytes());
    assert_eq!(statuses(&out), [100, 404], "no route configured");
    // After the final, a CANCEL is answered 200 and changes nothing.
    let out = h.send(CARRIER, &inv.cancel().bytes());
    assert_eq!(statuses(&out), [200]);
    assert_eq!(out[0].msg().cseq().method, ringfence::wire::Method::Cancel);
}

#[test]
fn cancel_without_matching_invite_is_481() {
    let mut h = Harness::new(Config::default());
    let inv = Req::invite("+18005550199", "nomatch");
    let out = h.send(CARRIER, &inv.cancel().bytes());
    assert_eq!(statuses(&out), [481]);
}

#[test]
fn options_is_200_with_allow_and_accept() {
    let mut h = Harness::new(Config::default());
    let r = one(h.send(CARRIER, &Req::options("o1").bytes()));
    assert_eq!(r.status(), Some(200));
    assert!(r.header("Allow").unwrap().contains("INVITE"));
    assert_eq!(r.header("Accept").as_deref(), Some("application/sdp"));
    assert!(r.msg().to_tag().is_some(), "UAS adds a To tag");
}

#[test]
fn unsupported_methods_get_405_or_501_with_allow() {
    let mut h = Harness::new(Config::default());
    let reg = Req::new("REGISTER", "sip:192.0.2.10", "192.0.2.1:5060", "r1");
    let r = one(h.send(CARRIER, &reg.bytes()));
    assert_eq!(r.status(), Some(405));
    assert!(r.header("Allow").is_some());
    let ext = Req::new("FROBNICATE", "sip:192.0.2.10", "192.0.2.1:5060", "x1");
    let r = one(h.send(CARRIER, &ext.bytes()));
    assert_eq!(r.status(), Some(501));
    let bye = Req::new("BYE", "sip:192.0.2.10", "192.0.2.1:5060", "b1");
    assert_eq!(one(h.send(CARRIER, &bye.bytes())).status(), Some(481));
}

#[test]
fn merged_request_gets_482() {
    let mut h = Harness::new(Config::default());
    // Keep the first transaction alive (it is answered but in Completed).
    let first = Req::invite("+18005550199", "m1");
    h.send(CARRIER, &first.bytes());
    let second = first
        .clone()
        .with(|r| r.via = vec!["SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKm2".into()]);
    let out = h.send(CARRIER, &second.bytes());
    assert_eq!(statuses(&out), [482]);
    assert_eq!(h.engine.stats().merged_requests, 1);
}

#[test]
fn full_table_answers_503_with_retry_after_and_counts() {
    let mut cfg = Config::default();
    cfg.limits.max_transactions = 2;
    let mut h = Harness::new(cfg);
    h.send(CARRIER, &Req::invite("+1", "t1").bytes());
    h.send(
        CARRIER,
        &Req::invite("+2", "t2")
            .with(|r| r.from = "<sip:a@b>;tag=x2".into())
            .bytes(),
    );
    let r = one(h.send(
        CARRIER,
        &Req::invite("+3", "t3")
            .with(|r| r.from = "<sip:a@b>;tag=x3".into())
            .bytes(),
    ));
    assert_eq!(r.status(), Some(503));
    assert_eq!(r.header("Retry-After").as_deref(), Some("5"));
    assert_eq!(h.engine.stats().table_full, 1);
}

#[test]
fn malformed_request_with_mandatory_headers_gets_400_naming_the_fault() {
    let mut h = Harness::new(Config::default());
    let bad = Req::invite("+1", "bad1").with(|r| r.cseq_method = Some("BYE".into()));
    let r = one(h.send(CARRIER, &bad.bytes()));
    assert_eq!(r.status(), Some(400));
    assert_eq!(
        r.msg().reason(),
        Some(&b"Bad Request - CSeq Method Mismatch"[..])
    );
    assert_eq!(h.engine.stats().malformed_total(), 1);
    // Garbage without the mandatory headers is dropped, counted.
    assert!(h.send(CARRIER, b"HELLO WORLD\r\n\r\n").is_empty());
    assert_eq!(h.engine.stats().malformed_total(), 2);
    // Keep-alives are not errors.
    assert!(h.send(CARRIER, b"\r\n\r\n").is_empty());
    assert_eq!(h.engine.stats().keepalives, 1);
}

#[test]
fn branch_without_magic_cookie_is_answered_400() {
    let mut h = Harness::new(Config::default());
    let old =
        Req::options("x").with(|r| r.via = vec!["SIP/2.0/UDP 192.0.2.1:5060;branch=1234".into()]);
    let r = one(h.send(CARRIER, &old.bytes()));
    assert_eq!(r.status(), Some(400));
    assert_eq!(h.engine.stats().no_magic_cookie, 1);
}

#[test]
fn responses_follow_rport_and_record_received() {
    let mut h = Harness::new(Config::default());
    let opt = Req::options("rp1")
        .with(|r| r.via = vec!["SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKrp1;rport".into()]);
    h.engine
        .handle_datagram(h.now, addr("203.0.113.9:40123"), h.local, &opt.bytes());
    let t = h.engine.poll_transmit().unwrap();
    assert_eq!(t.destination, addr("203.0.113.9:40123"));
    let text = String::from_utf8_lossy(t.payload).into_owned();
    assert!(
        text.contains(
            "Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKrp1;rport=40123;received=203.0.113.9\r\n"
        ),
        "{text}"
    );
}

#[test]
fn stray_responses_are_counted_and_dropped() {
    let mut h = Harness::new(Config::default());
    let resp = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnothing\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    assert!(h.send(DEST, resp).is_empty());
    assert_eq!(h.engine.stats().stray_responses, 1);
}
