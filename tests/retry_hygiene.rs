//! Retry hygiene through the engine: carrier re-attempts, the failover budget, circuit
//! breakers, downstream 503s and a failing routing service.

mod support;

use std::time::Duration;

use ringfence::guard::{BreakerState, Refusal};
use ringfence::{AskHost, EndReason, Event, RouteDecision};
use support::sip::Req;
use support::*;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// An attempt of the same call (same caller and dialled number), new Call-ID.
fn attempt(n: u32) -> Req {
    Req::invite("+18005550199", &format!("att{n}"))
}

#[test]
fn carrier_reattempts_supersede_so_the_destination_rings_one_leg_at_a_time() {
    let mut h = Harness::new(routed(&[DEST]));
    let mut ringing: Option<Sent> = None;
    for n in 0..5 {
        let out = h.send(CARRIER, &attempt(n).bytes());
        let invites: Vec<&Sent> = to(&out, DEST)
            .into_iter()
            .filter(|s| s.method().as_deref() == Some("INVITE"))
            .collect();
        assert_eq!(invites.len(), 1);
        if let Some(prev) = ringing.take() {
            // The previous leg was ringing: CANCELled in the same step, before the new
            // INVITE, and the carrier's previous INVITE got 487.
            let methods: Vec<String> = to(&out, DEST).iter().filter_map(|s| s.method()).collect();
            assert_eq!(methods, ["CANCEL", "INVITE"], "attempt {n}");
            let cancel = to(&out, DEST)[0].clone();
            assert_eq!(cancel.msg().call_id(), prev.msg().call_id());
            assert!(
                statuses(&to(&out, CARRIER).into_iter().cloned().collect::<Vec<_>>())
                    .contains(&487)
            );
            h.send(DEST, &answer(&cancel, 200, None));
            h.send(DEST, &answer(&prev, 487, Some("r")));
        }
        let fwd = invites[0].clone();
        h.send(DEST, &answer(&fwd, 180, Some("r")));
        ringing = Some(fwd);
        h.advance(secs(5));
    }
    let t = &h.engine.stats().trunks[0];
    assert_eq!((t.reattempts, t.superseded), (4, 4));
    assert_eq!(h.engine.stats().calls_superseded, 4);
    assert!(
        (t.retry_factor - 5.0).abs() < 1e-9,
        "5 attempts for one call: {}",
        t.retry_factor
    );
    assert_eq!(h.engine.active_calls(), 1);
    assert_eq!(
        h.engine.stats().node_active_calls,
        1,
        "superseding hands the slot over"
    );
    let superseded = h
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::CallEnded {
                    reason: EndReason::Superseded,
                    ..
                }
            )
        })
        .count();
    assert_eq!(superseded, 4);
}

#[test]
fn retries_after_our_503_are_suppressed_until_retry_after_passes() {
    let mut c = routed(&[DEST]);
    c.admission.max_calls = Some(0);
    c.admission.shed_watermark = 1.0;
    c.admission.trunks[0].reject.retry_after = 10;
    c.admission.trunks[0].reject.retry_after_jitter = 0;
    let mut h = Harness::new(c);
    let r = one(h.send(CARRIER, &attempt(0).bytes()));
    assert_eq!(
        (r.status(), r.header("Retry-After").as_deref()),
        (Some(503), Some("10"))
    );
    h.advance(secs(4));
    let r = one(h.send(CARRIER, &attempt(1).bytes()));
    assert_eq!(
        (r.status(), r.header("Retry-After").as_deref()),
        (Some(503), Some("6"))
    );
    let s = h.engine.stats();
    assert_eq!(s.trunks[0].suppressed, 1);
    assert_eq!(
        s.refused[Refusal::NodeCalls.index()],
        1,
        "the suppressed retry spent no admission"
    );
    h.advance(secs(7));
    one(h.send(CARRIER, &attempt(2).bytes()));
    assert_eq!(
        h.engine.stats().refused[Refusal::NodeCalls.index()],
        2,
        "judged afresh after Retry-After"
    );
}

#[test]
fn anonymous_callers_are_never_deduplicated() {
    let mut h = Harness::new(routed(&[DEST]));
    for n in 0..3 {
        let inv = attempt(n)
            .with(|r| r.from = format!("\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=a{n}"));
        let out = h.send(CARRIER, &inv.bytes());
        assert!(
            to(&out, DEST)
                .iter()
                .all(|s| s.method().as_deref() == Some("INVITE"))
        );
    }
    assert_eq!(h.engine.stats().trunks[0].reattempts, 0);
    assert_eq!(h.engine.active_calls(), 3);
}

#[test]
fn an_empty_retry_budget_fails_fast_instead_of_trying_more_targets() {
    let mut c = routed(&[DEST, DEST2]);
    c.retry.budget.ratio = 0.0;
    c.retry.budget.floor = 1;
    let mut h = Harness::new(c);
    // Call 1: DEST fails, the one budgeted retry goes to DEST2.
    let f = one_to(&h.send(CARRIER, &attempt(0).bytes()), DEST);
    let out = h.send(DEST, &answer(&f, 500, Some("x")));
    assert_eq!(to(&out, DEST2).len(), 1);
    // Call 2 (another caller): DEST fails, no budget left, the carrier gets the 500.
    let other = Req::invite("+18005550100", "other");
    let f = one_to(&h.send(CARRIER, &other.bytes()), DEST);
    let out = h.send(DEST, &answer(&f, 500, Some("y")));
    assert!(to(&out, DEST2).is_empty());
    assert_eq!(one_to(&out, CARRIER).status(), Some(500));
    assert_eq!(h.engine.stats().budget_exhausted, 1);
}

#[test]
fn breaker_opens_on_timeouts_skips_probes_and_closes() {
    let mut c = routed(&[DEST, DEST2]);
    c.retry.breaker.timeouts = 2;
    c.retry.breaker.cool_down = secs(20);
    c.retry.budget.floor = 100;
    c.proxy.ring_timeout = secs(300);
    let mut h = Harness::new(c);
    for n in 0..2 {
        let inv = Req::invite("+18005550199", &format!("br{n}"))
            .with(|r| r.from = format!("<sip:+1415555000{n}@c>;tag=b{n}"));
        h.send(CARRIER, &inv.bytes());
        h.advance(secs(33));
    }
    let opened: Vec<&Event> = h
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::BreakerChanged {
                    state: BreakerState::Open,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(opened.len(), 1);
    // The next call skips DEST.
    let out = h.send(
        CARRIER,
        &Req::invite("+18005550199", "br9")
            .with(|r| r.from = "<sip:+14155550009@c>;tag=b9".into())
            .bytes(),
    );
    assert!(to(&out, DEST).is_empty());
    assert_eq!(to(&out, DEST2).len(), 1);
    assert!(h.engine.stats().breaker_skips >= 1);
    // After the cool-down: half-open, an OPTIONS probe, a 200 closes it.
    let out = h.advance(secs(20));
    let probe = to(&out, DEST)
        .into_iter()
        .find(|s| s.method().as_deref() == Some("OPTIONS"))
        .expect("probe")
        .clone();
    assert!(h.events.iter().any(|e| matches!(
        e,
        Event::BreakerChanged {
            state: BreakerState::HalfOpen,
            ..
        }
    )));
    h.send(DEST, &answer(&probe, 200, None));
    assert!(h.events.iter().any(|e| matches!(
        e,
        Event::BreakerChanged {
            state: BreakerState::Closed,
            ..
        }
    )));
    let out = h.send(
        CARRIER,
        &Req::invite("+18005550199", "br10")
            .with(|r| r.from = "<sip:+14155550010@c>;tag=b10".into())
            .bytes(),
    );
    assert_eq!(to(&out, DEST).len(), 1);
}

#[test]
fn downstream_503_retry_after_marks_the_target_unavailable_for_that_long() {
    let mut h = Harness::new(routed(&[DEST, DEST2]));
    let f = one_to(&h.send(CARRIER, &attempt(0).bytes()), DEST);
    let resp = support::sip::response_to(
        &f.bytes,
        503,
        "Service Unavailable",
        Some("z"),
        &["Retry-After: 60"],
        "",
    );
    let out = h.send(DEST, &resp);
    assert_eq!(to(&out, DEST2).len(), 1, "failover");
    assert!(to(&out, CARRIER).is_empty());
    h.advance(secs(59));
    let out = h.send(CARRIER, &Req::invite("+18005550100", "later").bytes());
    assert!(to(&out, DEST).is_empty(), "DEST still unavailable");
    h.advance(secs(2));
    assert!(h.events.iter().any(|e| matches!(
        e,
        Event::BreakerChanged {
            state: BreakerState::HalfOpen,
            ..
        }
    )));
}

#[test]
fn a_failing_routing_service_is_bypassed_for_the_cached_routes() {
    let mut c = routed(&[]);
    c.routing.ask_host = AskHost::Always;
    c.retry.host_min_samples = 4;
    c.retry.host_cool_down = secs(30);
    let mut h = Harness::new(c);
    // One good answer fills the cache for the number.
    h.send(CARRIER, &attempt(0).bytes());
    let call = h
        .events
        .iter()
        .find_map(|e| match e {
            Event::RouteRequest { call, .. } => Some(*call),
            _ => None,
        })
        .unwrap();
    h.engine
        .route(
            h.now,
            call,
            RouteDecision::Targets(vec![ringfence::Target::parse(DEST).unwrap()]),
        )
        .unwrap();
    let f = one_to(&h.advance(Duration::ZERO), DEST);
    h.send(DEST, &answer(&f, 200, Some("ok")));
    // The service now fails: 5xx answers, each honoured (500 upstream, never 503)
    // and counted; with 3 failures in the last 4 requests the service is degraded.
    for n in 1..=3 {
        h.take_events();
        let inv = attempt(n).with(|r| r.from = format!("<sip:+1415555100{n}@c>;tag=h{n}"));
        h.send(CARRIER, &inv.bytes());
        let call = h
            .events
            .iter()
            .find_map(|e| match e {
                Event::RouteRequest { call, .. } => Some(*call),
                _ => None,
            })
            .unwrap();
        h.engine
            .route(h.now, call, RouteDecision::Reject(503))
            .unwrap();
        let out = h.advance(Duration::ZERO);
        assert_eq!(one_to(&out, CARRIER).status(), Some(500));
    }
    assert_eq!(h.engine.stats().host_route_errors, 3);
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, Event::RoutingDegraded { degraded: true, .. }))
    );
    // Degraded: the next call is not even asked about.
    h.take_events();
    let out = h.send(
        CARRIER,
        &attempt(9)
            .with(|r| r.from = "<sip:+14155551009@c>;tag=h9".into())
            .bytes(),
    );
    assert!(
        !h.events
            .iter()
            .any(|e| matches!(e, Event::RouteRequest { .. }))
    );
    assert_eq!(to(&out, DEST).len(), 1);
    assert_eq!(h.engine.stats().host_bypassed, 1);
}

#[test]
fn a_destination_unavailable_by_its_retry_after_is_not_reopened_by_late_answers_and_callers_learn_when_to_return()
 {
    let mut h = Harness::new(routed(&[DEST]));
    // Two calls ring at DEST; then it says 503, Retry-After 30 to a third.
    let a = one_to(&h.send(CARRIER, &attempt(0).bytes()), DEST);
    let b = one_to(&h.send(CARRIER, &attempt(1).bytes()), DEST);
    h.send(DEST, &answer(&a, 180, Some("a")));
    let c = one_to(&h.send(CARRIER, &attempt(2).bytes()), DEST);
    let resp = support::sip::response_to(
        &c.bytes,
        503,
        "Service Unavailable",
        Some("c"),
        &["Retry-After: 30"],
        "",
    );
    let out = h.send(DEST, &resp);
    let refused = one_to(&out, CARRIER);
    assert_eq!(
        refused.status(),
        Some(500),
        "a downstream 503 is never relayed"
    );
    // A 180 for a call sent before the 503 arrives a second later: DEST stays out.
    h.advance(secs(1));
    h.send(DEST, &answer(&b, 180, Some("b")));
    let out = h.send(CARRIER, &attempt(3).bytes());
    assert!(to(&out, DEST).is_empty(), "DEST reopened by a late 180");
    let refusal = to(&out, CARRIER)
        .into_iter()
        .find(|s| s.status().is_some_and(|st| st >= 300))
        .expect("refused at once")
        .clone();
    assert_eq!(refusal.status(), Some(480));
    assert_eq!(refusal.header("Retry-After").as_deref(), Some("29"));
}
