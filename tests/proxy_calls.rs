//! Call routing through the proxy, end to end in virtual time: a scripted carrier and
//! scripted destinations around one engine.

mod support;

use std::time::Duration;

use ringfence::wire::Method;
use ringfence::{EndReason, Event};
use support::sip::Req;
use support::*;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ended(h: &Harness) -> Vec<EndReason> {
    h.events
        .iter()
        .filter_map(|e| match e {
            Event::CallEnded { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

/// Sends the INVITE and returns what reached the destination.
fn start(h: &mut Harness, inv: &Req) -> Sent {
    let out = h.send(CARRIER, &inv.bytes());
    assert_eq!(
        statuses(&to(&out, CARRIER).into_iter().cloned().collect::<Vec<_>>()),
        [100]
    );
    one_to(&out, DEST)
}

#[test]
fn basic_call_invite_ringing_answer_ack_bye() {
    let mut h = Harness::new(routed(&[DEST]));
    let inv = Req::invite("+18005550199", "basic");
    let fwd = start(&mut h, &inv);
    let m = fwd.msg();
    assert_eq!(m.method(), Some(Method::Invite));
    assert_eq!(
        m.request_uri(),
        Some(&b"sip:+18005550199@192.0.2.20:5080"[..])
    );
    assert_eq!(m.via_count(), 2, "our Via on top of the carrier's");
    assert!(m.branch().unwrap().starts_with(b"z9hG4bK"));
    assert_ne!(m.branch(), Some(&b"z9hG4bKbasic"[..]));
    assert_eq!(m.max_forwards(), Some(69));
    assert_eq!(m.record_route(), Some(&b"<sip:192.0.2.10:5060;lr>"[..]));
    assert_eq!(m.body(), inv.body.as_bytes(), "body forwarded untouched");
    assert_eq!(m.call_id(), inv.call_id.as_bytes());

    let ring = h.send(DEST, &answer(&fwd, 180, Some("callee1")));
    let r = one_to(&ring, CARRIER);
    assert_eq!(r.status(), Some(180));
    assert_eq!(r.msg().via_count(), 1, "our Via popped");
    assert_eq!(r.msg().branch(), Some(&b"z9hG4bKbasic"[..]));

    let ok = one_to(&h.send(DEST, &answer(&fwd, 200, Some("callee1"))), CARRIER);
    assert_eq!(ok.status(), Some(200));
    assert_eq!(h.engine.active_calls(), 1);

    // ACK for the 2xx: end to end, routed through us by the Route we inserted.
    let ack = Req::new(
        "ACK",
        "sip:callee@192.0.2.20:5080",
        "192.0.2.1:5060",
        "ack2xx",
    )
    .with(|r| {
        r.call_id = inv.call_id.clone();
        r.from = inv.from.clone();
        r.to = format!("{};tag=callee1", inv.to);
        r.extra.push("Route: <sip:192.0.2.10:5060;lr>".into());
    });
    let a = one_to(&h.send(CARRIER, &ack.bytes()), DEST);
    assert_eq!(a.method().as_deref(), Some("ACK"));
    assert_eq!(a.msg().route(), None, "our Route popped");
    assert_eq!(a.msg().via_count(), 2);

    let bye = Req::new(
        "BYE",
        "sip:callee@192.0.2.20:5080",
        "192.0.2.1:5060",
        "bye1",
    )
    .with(|r| {
        r.call_id = inv.call_id.clone();
        r.from = inv.from.clone();
        r.to = format!("{};tag=callee1", inv.to);
        r.cseq = 2;
        r.extra.push("Route: <sip:192.0.2.10:5060;lr>".into());
    });
    let b = one_to(&h.send(CARRIER, &bye.bytes()), DEST);
    assert_eq!(b.method().as_deref(), Some("BYE"));
    let done = one_to(&h.send(DEST, &answer(&b, 200, None)), CARRIER);
    assert_eq!(done.status(), Some(200));
    assert_eq!(done.msg().cseq().method, Method::Bye);
    assert_eq!(ended(&h), [EndReason::Hangup { by_caller: true }]);
    assert_eq!(h.engine.active_calls(), 0);
    let s = h.engine.stats();
    assert_eq!(
        (s.calls_started, s.calls_answered, s.calls_ended),
        (1, 1, 1)
    );
    // Everything drains once every deadline has passed.
    h.run_until_idle(secs(3600 * 5));
    let t = h.engine.table_sizes();
    assert_eq!((t.transactions, t.calls, t.dialogs), (0, 0, 0));
}

#[test]
fn busy_destination_is_acked_downstream_and_relayed_upstream() {
    let mut h = Harness::new(routed(&[DEST]));
    let inv = Req::invite("+18005550199", "busy");
    let fwd = start(&mut h, &inv);
    let out = h.send(DEST, &answer(&fwd, 486, Some("b1")));
    let ack = one_to(&out, DEST);
    assert_eq!(ack.method().as_deref(), Some("ACK"));
    assert_eq!(
        ack.msg().branch(),
        fwd.msg().branch(),
        "ACK for non-2xx is hop-by-hop"
    );
    assert_eq!(ack.msg().to_tag(), Some(&b"b1"[..]));
    let busy = one_to(&out, CARRIER);
    assert_eq!(busy.status(), Some(486));
    // A retransmitted 486 gets the ACK again and nothing goes upstream.
    let again = h.send(DEST, &answer(&fwd, 486, Some("b1")));
    assert_eq!(one(again).method().as_deref(), Some("ACK"));
    assert_eq!(ended(&h), [EndReason::Rejected { status: 486 }]);
}

#[test]
fn no_answer_fires_timer_c_cancels_downstream_and_sends_408_upstream() {
    let mut h = Harness::new(routed(&[DEST]));
    let inv = Req::invite("+18005550199", "noans");
    let fwd = start(&mut h, &inv);
    h.advance(secs(10));
    h.send(DEST, &answer(&fwd, 180, Some("r1")));
    // Timer C restarted at the 180: 30 s from t=10.
    let quiet = h.advance(secs(29));
    assert!(to(&quiet, CARRIER).is_empty());
    let out = h.advance(secs(1));
    let cancel = one_to(&out, DEST);
    assert_eq!(cancel.method().as_deref(), Some("CANCEL"));
    assert_eq!(cancel.msg().branch(), fwd.msg().branch());
    assert_eq!(one_to(&out, CARRIER).status(), Some(408));
    assert_eq!(ended(&h), [EndReason::NoAnswer]);
    // The destination answers CANCEL and INVITE; the engine ACKs the 487 and
    // relays nothing more upstream.
    assert!(h.send(DEST, &answer(&cancel, 200, None)).is_empty());
    let out = h.send(DEST, &answer(&fwd, 487, Some("r1")));
    assert_eq!(one(out).method().as_deref(), Some("ACK"));
}

#[test]
fn failover_to_the_second_target_after_a_500() {
    let mut h = Harness::new(routed(&[DEST, DEST2]));
    let inv = Req::invite("+18005550199", "fo");
    let first = start(&mut h, &inv);
    let out = h.send(DEST, &answer(&first, 500, Some("x")));
    assert_eq!(one_to(&out, DEST).method().as_deref(), Some("ACK"));
    let second = one_to(&out, DEST2);
    assert_eq!(second.method().as_deref(), Some("INVITE"));
    assert_ne!(second.msg().branch(), first.msg().branch());
    assert!(
        to(&out, CARRIER).is_empty(),
        "nothing upstream while failing over"
    );
    let ok = one_to(&h.send(DEST2, &answer(&second, 200, Some("y"))), CARRIER);
    assert_eq!(ok.status(), Some(200));
    assert_eq!(h.engine.stats().failovers, 1);
}

#[test]
fn downstream_503_is_never_relayed_upstream() {
    let mut h = Harness::new(routed(&[DEST]));
    let inv = Req::invite("+18005550199", "d503");
    let fwd = start(&mut h, &inv);
    let out = h.send(DEST, &[answer(&fwd, 503, Some("z")).as_slice()].concat());
    let up = one_to(&out, CARRIER);
    assert_eq!(up.status(), Some(500));
    assert!(up.header("Retry-After").is_none());
    assert_eq!(h.engine.stats().downstream_503_rewritten, 1);
}

#[test]
fn timeout_of_every_target_ends_in_408() {
    let mut cfg = routed(&[DEST, DEST2]);
    cfg.proxy.ring_timeout = secs(180);
    let mut h = Harness::new(cfg);
    let inv = Req::invite("+18005550199", "tmo");
    start(&mut h, &inv);
    let out = h.advance(secs(32));
    let retrans = to(&out, DEST).len();
    assert_eq!(retrans, 6, "Timer A: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5");
    assert_eq!(to(&out, DEST2).len(), 1, "failover after Timer B");
    let out = h.advance(secs(32));
    assert_eq!(one_to(&out, CARRIER).status(), Some(408));
}

#[test]
fn cancel_during_ringing() {
    let mut h = Harness::new(routed(&[DEST]));
    let inv = Req::invite("+18005550199", "cxl");
    let fwd = start(&mut h, &inv);
    h.send(DEST, &answer(&fwd, 180, Some("r")));
    let out = h.send(CARRIER, &inv.cancel().bytes());
    let up: Vec<u16> = statuses(&to(&out, CARRIER).into_iter().cloned().collect::<Vec<_>>());
    assert_eq!(up, [200, 487]);
    let c = one_to(&out, DEST);
    assert_eq!(c.method().as_deref(), Some("CANCEL"));
    assert_eq!(ended(&h), [EndReason::Cancelled]);
    // The carrier ACKs our 487: absorbed by the transaction.
    let tag = to(&out, CARRIER)[1]
        .msg()
        .to_tag()
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .unwrap();
    assert!(h.send(CARRIER, &inv.ack(&tag).bytes()).is_empty());
}

#[test]
fn cancel_before_any_provisional_waits_for_one() {
    let mut h = Harness::new(routed(&[DEST]));
    let inv = Req::invite("+18005550199", "early");
    let fwd = start(&mut h, &inv);
    let out = h.send(CARRIER, &inv.cancel().bytes());
    assert!(
        to(&out, DEST).is_empty(),
        "RFC 3261 §9.1: no CANCEL before a provisional"
    );
    let out = h.send(DEST, &answer(&fwd, 180, Some("late")));
    assert_eq!(one(out).method().as_deref(), Some("CANCEL"));
}

#[test]
fn answer_racing_a_cancel_is_acked_and_hung_up() {
    let mut h = Harness::new(routed(&[DEST]));
    let inv = Req::invite("+18005550199", "race");
    let fwd = start(&mut h, &inv);
    h.send(DEST, &answer(&fwd, 180, Some("r")));
    h.send(CARRIER, &inv.cancel().bytes());
    let out = h.send(DEST, &answer(&fwd, 200, Some("r")));
    let methods: Vec<String> = out.iter().filter_map(|s| s.method()).collect();
    assert_eq!(methods, ["ACK", "BYE"]);
    assert!(
        out.iter().all(|s| s.to == addr(DEST)),
        "nothing goes upstream"
    );
    // A retransmitted 200 is ACKed again; no second BYE.
    let again = h.send(DEST, &answer(&fwd, 200, Some("r")));
    assert_eq!(
        again.iter().filter_map(|s| s.method()).collect::<Vec<_>>(),
        ["ACK"]
    );
}

#[test]
fn bye_from_the_callee_and_reinvite_in_dialog() {
    let mut h = Harness::new(routed(&[DEST]));
    let inv = Req::invite("+18005550199", "dlg");
    let fwd = start(&mut h, &inv);
    h.send(DEST, &answer(&fwd, 200, Some("cal")));
    // re-INVITE from the caller
    let reinv = Req::invite("+18005550199", "reinv").with(|r| {
        r.uri = "sip:callee@192.0.2.20:5080".into();
        r.call_id = inv.call_id.clone();
        r.to = format!("{};tag=cal", inv.to);
        r.cseq = 2;
        r.extra.push("Route: <sip:192.0.2.10:5060;lr>".into());
    });
    let out = h.send(CARRIER, &reinv.bytes());
    assert_eq!(one_to(&out, CARRIER).status(), Some(100));
    let fwd2 = one_to(&out, DEST);
    assert_eq!(fwd2.method().as_deref(), Some("INVITE"));
    assert_eq!(
        fwd2.msg().record_route(),
        None,
        "no Record-Route on in-dialog requests"
    );
    let ok = one_to(&h.send(DEST, &answer(&fwd2, 200, None)), CARRIER);
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.msg().cseq().number, 2);
    // BYE from the callee to the caller's Contact.
    let bye = Req::new(
        "BYE",
        "sip:+14155550123@192.0.2.1:5060",
        "192.0.2.20:5080",
        "cbye",
    )
    .with(|r| {
        r.call_id = inv.call_id.clone();
        r.from = format!("{};tag=cal", inv.to);
        r.to = inv.from.clone();
        r.extra.push("Route: <sip:192.0.2.10:5060;lr>".into());
    });
    let out = h.send(DEST, &bye.bytes());
    let b = one_to(&out, CARRIER);
    assert_eq!(b.method().as_deref(), Some("BYE"));
    let ok = one_to(&h.send(CARRIER, &answer(&b, 200, None)), DEST);
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ended(&h), [EndReason::Hangup { by_caller: false }]);
}

#[test]
fn in_dialog_request_for_an_unknown_dialog_gets_481() {
    let mut h = Harness::new(routed(&[DEST]));
    let bye = Req::new("BYE", "sip:x@192.0.2.10", "192.0.2.1:5060", "nod").with(|r| {
        r.to = format!("{};tag=nobody", r.to);
    });
    assert_eq!(one(h.send(CARRIER, &bye.bytes())).status(), Some(481));
    assert_eq!(h.engine.stats().no_dialog, 1);
}

#[test]
fn max_forwards_zero_gets_483() {
    let mut h = Harness::new(routed(&[DEST]));
    let inv = Req::invite("+18005550199", "mf0").with(|r| r.max_forwards = Some(0));
    let out = h.send(CARRIER, &inv.bytes());
    assert_eq!(statuses(&out), [100, 483]);
    assert!(to(&out, DEST).is_empty());
}

#[test]
fn missing_max_forwards_is_added_as_70() {
    let mut h = Harness::new(routed(&[DEST]));
    let inv = Req::invite("+18005550199", "mfnone").with(|r| r.max_forwards = None);
    let fwd = start(&mut h, &inv);
    assert_eq!(fwd.msg().max_forwards(), Some(70));
}

#[test]
fn no_route_is_answered_with_the_configured_status() {
    let mut h = Harness::new(ringfence::Config::default());
    let out = h.send(CARRIER, &Req::invite("+18005550199", "nr").bytes());
    assert_eq!(statuses(&out), [100, 404]);
    let mut cfg = ringfence::Config::default();
    cfg.routing.no_route_status = 480;
    let mut h = Harness::new(cfg);
    let out = h.send(CARRIER, &Req::invite("+18005550199", "nr").bytes());
    assert_eq!(statuses(&out), [100, 480]);
}
