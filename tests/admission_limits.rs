//! Each admission limit on its own, through the engine in virtual time: node and trunk
//! concurrency, node and trunk GCRA rates, per-destination concurrency, unknown
//! sources, trunk classification and each trunk's rejection policy.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use ringfence::Config;
use ringfence::guard::{Refusal, RejectPolicy, TrunkConfig};
use support::adm::*;
use support::*;

/// Where the second trunk's calls come from.
const B_SOURCE: &str = "198.51.100.7:5060";

fn trunk(name: &str, sources: &[&str]) -> TrunkConfig {
    let mut t = TrunkConfig::new(name);
    t.sources = sources.iter().map(|s| s.parse().unwrap()).collect();
    t
}

/// Two trunks by CIDR (A: 192.0.2.0/24, B: 198.51.100.0/24), unknown sources refused,
/// no early shedding (only the hard limits under test act).
fn two_trunks(mut c: Config, a: TrunkConfig, b: TrunkConfig) -> Config {
    c.admission.trunks = vec![a, b];
    c.admission.unknown_sources = None;
    c.admission.shed_watermark = 1.0;
    c
}

/// A call that got admitted and forwarded to `DEST`, then rang (180, To tag `t<n>`).
fn ringing(h: &mut Harness, from: &str, n: u32) -> Sent {
    let out = h.send(from, &call_via(from, n).bytes());
    assert!(is_admitted(&out), "call {n} admitted");
    let fwd = one_to(&out, DEST);
    h.send(DEST, &answer(&fwd, 180, Some(&format!("t{n}"))));
    fwd
}

fn refused_with(h: &Harness, why: Refusal) -> u64 {
    h.engine.stats().refused[why.index()]
}

#[test]
fn node_concurrency_counts_every_live_call_and_each_end_frees_one_slot() {
    let mut c = routed(&[DEST]);
    c.admission.max_calls = Some(3);
    c.admission.shed_watermark = 1.0;
    let mut h = Harness::new(c);
    let ledger = h.engine.ledger().clone();

    // Three calls in three states: ringing, answered, still trying.
    let ring = ringing(&mut h, CARRIER, 1);
    let answered = call(2);
    let fwd2 = one_to(&h.send(CARRIER, &answered.bytes()), DEST);
    h.send(DEST, &answer(&fwd2, 200, Some("t2")));
    h.send(CARRIER, &caller_ack(&answered, "t2").bytes());
    let trying = call(3);
    one_to(&h.send(CARRIER, &trying.bytes()), DEST);
    assert_eq!(ledger.active_calls(), 3);
    assert_eq!(h.engine.active_calls(), 3);

    // Full: refused statelessly, whatever state the live calls are in.
    for n in 4..8 {
        let out = h.send(CARRIER, &call(n).bytes());
        assert_eq!(refusal(&out).and_then(Sent::status), Some(503), "call {n}");
    }
    assert_eq!(refused_with(&h, Refusal::NodeCalls), 4);
    assert_eq!(h.engine.table_sizes().calls, 2, "ringing + trying only");
    assert_eq!(ledger.active_calls(), 3);

    // A ringing call rejected downstream frees exactly one slot.
    h.send(DEST, &answer(&ring, 486, Some("t1")));
    assert_eq!(ledger.active_calls(), 2);
    assert!(is_admitted(&h.send(CARRIER, &call(8).bytes())));
    assert!(refusal(&h.send(CARRIER, &call(9).bytes())).is_some());

    // The answered call's BYE frees one.
    h.send(CARRIER, &caller_bye(&answered, "t2").bytes());
    assert_eq!(ledger.active_calls(), 2);
    assert!(is_admitted(&h.send(CARRIER, &call(10).bytes())));
    assert!(refusal(&h.send(CARRIER, &call(11).bytes())).is_some());

    // A CANCEL of the call still trying frees one.
    h.send(CARRIER, &trying.cancel().bytes());
    assert_eq!(ledger.active_calls(), 2);
    assert!(is_admitted(&h.send(CARRIER, &call(12).bytes())));
    assert_eq!(ledger.active_calls(), 3);
    assert_eq!(h.engine.active_calls(), 3);
    assert_eq!(refused_with(&h, Refusal::NodeCalls), 6);
    assert_eq!(h.engine.stats().trunks[0].admitted, 6);
}

#[test]
fn a_full_trunk_refuses_while_the_other_trunk_still_admits() {
    let mut a = trunk("a", &["192.0.2.0/24"]);
    a.max_calls = Some(2);
    let b = trunk("b", &["198.51.100.0/24"]);
    let mut h = Harness::new(two_trunks(routed(&[DEST]), a, b));
    let ledger = h.engine.ledger().clone();

    ringing(&mut h, CARRIER, 1);
    ringing(&mut h, CARRIER, 2);
    let out = h.send(CARRIER, &call(3).bytes());
    let r = refusal(&out).expect("trunk a is full");
    assert_eq!(r.status(), Some(503));
    assert_eq!(r.to, addr(CARRIER));
    // Trunk b is not limited by trunk a's calls.
    for n in 10..15 {
        ringing(&mut h, B_SOURCE, n);
    }
    assert!(refusal(&h.send(CARRIER, &call(4).bytes())).is_some());

    assert_eq!(ledger.trunk_active_calls(0), 2);
    assert_eq!(ledger.trunk_active_calls(1), 5);
    assert_eq!(ledger.active_calls(), 7);
    let s = h.engine.stats();
    assert_eq!(s.trunks[0].refused[Refusal::TrunkCalls.index()], 2);
    assert_eq!(s.trunks[1].refused_total(), 0);
    assert_eq!((s.trunks[0].admitted, s.trunks[1].admitted), (2, 5));
    assert_eq!((s.trunks[0].active, s.trunks[1].active), (2, 5));
    assert_eq!(
        s.refused[Refusal::NodeCalls.index()],
        0,
        "no node slot leaked"
    );
}

/// Offers `burst_offer` calls at one instant, then one every `step` for `duration`;
/// each admitted call ends at once (no route: 404). Returns the admission time of every
/// admitted call.
fn offer_at_rate(
    h: &mut Harness,
    from: &str,
    first: u32,
    burst_offer: u32,
    step: Duration,
    duration: Duration,
) -> Vec<Duration> {
    let mut admitted = Vec::new();
    let mut n = first;
    let mut offer = |h: &mut Harness, n: &mut u32| {
        let out = h.send(from, &call_via(from, *n).bytes());
        *n += 1;
        if is_admitted(&out) {
            assert_eq!(response(&out, 404).map(|s| s.to), Some(addr(from)));
            admitted.push(h.elapsed());
        } else {
            assert!(refusal(&out).is_some(), "answered either way");
        }
    };
    for _ in 0..burst_offer {
        offer(h, &mut n);
    }
    let start = h.elapsed();
    while h.elapsed() < start + duration {
        h.advance(step);
        offer(h, &mut n);
    }
    admitted
}

#[test]
fn node_rate_admits_the_burst_then_the_rate() {
    let mut c = Config::default(); // no route: every admitted call ends at once (404)
    c.admission.calls_per_second = Some(10.0);
    c.admission.burst = 5;
    c.admission.shed_watermark = 1.0;
    let mut h = Harness::new(c);
    let admitted = offer_at_rate(
        &mut h,
        CARRIER,
        0,
        50,
        Duration::from_millis(20),
        Duration::from_secs(10),
    );
    // At one instant: the burst tolerance plus the call that conforms anyway.
    let at_zero = admitted.iter().filter(|t| t.is_zero()).count();
    assert_eq!(at_zero, 5 + 1);
    // Offered at 50/s for 10 s: rate·t + burst, ±1.
    let total = admitted.len() as i64;
    assert!((total - (10 * 10 + 5)).abs() <= 1, "admitted {total}");
    // After the burst is spent, exactly the rate in every second.
    for s in 1..10u64 {
        let in_second = admitted
            .iter()
            .filter(|t| **t > Duration::from_secs(s) && **t <= Duration::from_secs(s + 1))
            .count();
        assert!((9..=11).contains(&in_second), "second {s}: {in_second}");
    }
    let s = h.engine.stats();
    assert_eq!(s.trunks[0].admitted, total as u64);
    assert_eq!(
        s.refused[Refusal::NodeRate.index()],
        s.trunks[0].offered - total as u64,
        "every other call refused by the node rate"
    );
    assert_eq!(h.engine.ledger().active_calls(), 0);
}

#[test]
fn trunk_rate_limits_its_trunk_only() {
    let mut a = trunk("a", &["192.0.2.0/24"]);
    a.calls_per_second = Some(5.0);
    a.burst = 2;
    let b = trunk("b", &["198.51.100.0/24"]);
    let mut h = Harness::new(two_trunks(Config::default(), a, b));
    // Trunk b at one instant: unlimited.
    let b_admitted = offer_at_rate(&mut h, B_SOURCE, 10_000, 40, Duration::ZERO, Duration::ZERO);
    assert_eq!(b_admitted.len(), 40);
    // Trunk a: burst at one instant, then offered at 25/s for 8 s.
    let admitted = offer_at_rate(
        &mut h,
        CARRIER,
        0,
        30,
        Duration::from_millis(40),
        Duration::from_secs(8),
    );
    assert_eq!(admitted.iter().filter(|t| t.is_zero()).count(), 2 + 1);
    let total = admitted.len() as i64;
    assert!((total - (5 * 8 + 2)).abs() <= 1, "admitted {total}");
    let s = h.engine.stats();
    assert_eq!(
        s.trunks[0].refused[Refusal::TrunkRate.index()],
        s.trunks[0].offered - total as u64
    );
    assert_eq!(s.trunks[1].refused_total(), 0);
    assert_eq!(s.refused[Refusal::NodeRate.index()], 0);
}

/// A call refused by one limit must not spend another limit's allowance: the rate
/// limits count admitted calls ("new calls per second"), so a trunk's burst is not
/// eaten by calls its concurrency limit turned away.
#[test]
fn calls_refused_for_concurrency_do_not_spend_the_rate_allowance() {
    let mut a = trunk("a", &["192.0.2.0/24"]);
    a.calls_per_second = Some(1.0);
    a.burst = 9; // ten calls at one instant
    a.max_calls = Some(4);
    let b = trunk("b", &["198.51.100.0/24"]);
    let mut c = two_trunks(routed(&[DEST]), a, b);
    c.admission.max_calls = Some(4);
    c.admission.calls_per_second = Some(1.0);
    c.admission.burst = 9;
    let mut h = Harness::new(c);
    let held: Vec<Sent> = (0..4).map(|n| ringing(&mut h, CARRIER, n)).collect();
    // Twenty calls turned away by concurrency (trunk and node are both full).
    for n in 100..120 {
        assert!(refusal(&h.send(CARRIER, &call(n).bytes())).is_some());
    }
    // The four calls end at the same instant: four slots, six rate tokens left.
    for (n, fwd) in held.iter().enumerate() {
        h.send(DEST, &answer(fwd, 486, Some(&format!("t{n}"))));
    }
    assert_eq!(h.engine.ledger().active_calls(), 0);
    let admitted = (200..210)
        .filter(|&n| is_admitted(&h.send(CARRIER, &call(n).bytes())))
        .count();
    let s = h.engine.stats();
    assert_eq!(
        admitted,
        4,
        "refusals by cause: {:?}",
        Refusal::ALL
            .iter()
            .map(|r| (r.label(), s.refused[r.index()]))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_full_destination_is_skipped_for_the_next_one() {
    let mut c = routed(&[DEST, DEST2]);
    c.admission.max_calls_per_target = Some(1);
    c.admission.shed_watermark = 1.0;
    let mut h = Harness::new(c);
    let ledger = h.engine.ledger().clone();

    let first = call(1);
    let f1 = one_to(&h.send(CARRIER, &first.bytes()), DEST);
    h.send(DEST, &answer(&f1, 200, Some("t1")));
    h.send(CARRIER, &caller_ack(&first, "t1").bytes());
    // DEST holds its one call (answered): the next call goes to DEST2.
    let out = h.send(CARRIER, &call(2).bytes());
    assert!(to(&out, DEST).is_empty(), "the full target is not tried");
    let f2 = one_to(&out, DEST2);
    assert_eq!(h.engine.stats().targets_full, 1);
    assert_eq!(ledger.target_active_calls(addr(DEST)), 1);
    assert_eq!(ledger.target_active_calls(addr(DEST2)), 1);

    // Both full: the call cannot be placed; it is answered and its slot released.
    let out = h.send(CARRIER, &call(3).bytes());
    assert!(to(&out, DEST).is_empty() && to(&out, DEST2).is_empty());
    assert_eq!(response(&out, 480).map(|s| s.to), Some(addr(CARRIER)));
    assert_eq!(ledger.active_calls(), 2);

    // The answered call on DEST ends: DEST takes calls again.
    h.send(CARRIER, &caller_bye(&first, "t1").bytes());
    assert_eq!(ledger.target_active_calls(addr(DEST)), 0);
    one_to(&h.send(CARRIER, &call(4).bytes()), DEST);
    // The ringing call on DEST2 fails: DEST2 frees too.
    h.send(DEST2, &answer(&f2, 486, Some("t2")));
    assert_eq!(ledger.target_active_calls(addr(DEST2)), 0);
    one_to(&h.send(CARRIER, &call(5).bytes()), DEST2);
    assert_eq!(ledger.active_calls(), 2);
    assert_eq!(h.engine.active_calls(), 2);
}

#[test]
fn unknown_sources_are_refused_403_counted_and_leave_nothing() {
    let mut h = Harness::new(two_trunks(
        routed(&[DEST]),
        trunk("a", &["192.0.2.0/24"]),
        trunk("b", &["198.51.100.0/24"]),
    ));
    let stranger = "203.0.113.5:5060";
    let req = call_via(stranger, 1);
    let r = one(h.send(stranger, &req.bytes()));
    assert_eq!(r.status(), Some(403));
    assert_eq!(r.to, addr(stranger));
    assert!(r.msg().to_tag().is_some());
    assert_eq!(
        one(h.send(stranger, &req.bytes())).bytes,
        r.bytes,
        "a retransmission gets the same bytes"
    );
    for n in 2..6 {
        assert_eq!(
            one(h.send(stranger, &call_via(stranger, n).bytes())).status(),
            Some(403)
        );
    }
    // Five calls refused; the retransmission is not a new call.
    let s = h.engine.stats();
    assert_eq!(s.refused[Refusal::UnknownSource.index()], 5);
    assert_eq!(s.refused_total(), 5);
    assert!(
        s.trunks
            .iter()
            .all(|t| t.offered == 0 && t.refused_total() == 0)
    );
    assert_eq!(h.engine.table_sizes().transactions, 0);
    assert_eq!(h.engine.ledger().active_calls(), 0);
}

#[test]
fn the_most_specific_source_decides_the_trunk_whatever_the_config_order() {
    let mut c = Config::default();
    c.admission.trunks = vec![
        trunk("wide", &["192.0.0.0/16"]),
        trunk("block", &["192.0.2.0/24"]),
        trunk("host", &["192.0.2.1"]),
        trunk("host-port", &["192.0.2.1:5062"]),
        trunk("other", &[]),
    ];
    c.admission.unknown_sources = Some("other".into());
    let mut h = Harness::new(c);
    let cases = [
        ("192.0.2.1:5062", "host-port"),
        ("[::ffff:192.0.2.1]:5062", "host-port"),
        ("192.0.2.1:5060", "host"),
        ("192.0.2.9:5062", "block"),
        ("192.0.7.7:5060", "wide"),
        ("10.1.1.1:5060", "other"),
    ];
    for (n, (from, expected)) in cases.iter().enumerate() {
        let before = h.engine.stats().trunks;
        h.send(from, &call_via(from, n as u32).bytes());
        let after = h.engine.stats().trunks;
        let got: Vec<&str> = after
            .iter()
            .zip(&before)
            .filter(|(a, b)| a.offered > b.offered)
            .map(|(a, _)| a.name.as_str())
            .collect();
        assert_eq!(got, [*expected], "source {from}");
    }
}

#[test]
fn each_trunk_refuses_with_its_own_policy_and_jitter_keyed_by_request() {
    let mut a = trunk("a", &["192.0.2.0/24"]);
    a.max_calls = Some(0);
    a.reject = RejectPolicy {
        status: 480,
        reason: "Temporarily Unavailable - Trunk Full".into(),
        retry_after: 10,
        retry_after_jitter: 20,
    };
    let mut b = trunk("b", &["198.51.100.0/24"]);
    b.max_calls = Some(0);
    b.reject = RejectPolicy {
        status: 503,
        reason: "Busy Node".into(),
        retry_after: 0,
        retry_after_jitter: 0,
    };
    let mut fixed = trunk("fixed", &["203.0.113.0/24"]);
    fixed.max_calls = Some(0);
    fixed.reject.retry_after = 7;
    fixed.reject.retry_after_jitter = 0;
    let mut c = two_trunks(routed(&[DEST]), a, b);
    c.admission.trunks.push(fixed);
    let mut h = Harness::new(c);

    let mut seen = BTreeSet::new();
    for n in 0..300 {
        let req = call(n);
        let r = one(h.send(CARRIER, &req.bytes()));
        assert!(
            r.bytes
                .starts_with(b"SIP/2.0 480 Temporarily Unavailable - Trunk Full\r\n"),
            "{}",
            r.text()
        );
        let retry = retry_after(&r).expect("Retry-After");
        assert!(
            (10..=30).contains(&retry),
            "base 10 + jitter 0..=20: {retry}"
        );
        seen.insert(retry);
        if n % 50 == 0 {
            // A retransmission is answered with the very same bytes, jitter included.
            let again = one(h.send(CARRIER, &req.bytes()));
            assert_eq!(again.text(), r.text());
        }
    }
    assert_eq!(
        seen,
        (10..=30).collect(),
        "the jitter spreads over its whole range"
    );

    let r = one(h.send(B_SOURCE, &call_via(B_SOURCE, 1000).bytes()));
    assert!(
        r.bytes.starts_with(b"SIP/2.0 503 Busy Node\r\n"),
        "{}",
        r.text()
    );
    assert_eq!(r.header("Retry-After"), None, "no Retry-After configured");
    let c_src = "203.0.113.9:5060";
    for n in 0..5 {
        let r = one(h.send(c_src, &call_via(c_src, 2000 + n).bytes()));
        assert_eq!((r.status(), retry_after(&r)), (Some(503), Some(7)));
    }
    let s = h.engine.stats();
    assert_eq!(
        s.trunks[0].refused[Refusal::TrunkCalls.index()],
        300,
        "retransmissions are not new refusals"
    );
    assert_eq!(
        h.engine.table_sizes().transactions,
        0,
        "refusals are stateless"
    );
}
