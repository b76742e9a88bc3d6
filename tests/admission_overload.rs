//! Overload behaviour through the engine in virtual time: the early-shedding curve
//! (measured statistically with the config's fixed seed), protected numbers, drain,
//! RFC 7339 feedback, and load feedback following a simulated capacity change.

mod support;

use std::time::Duration;

use ringfence::guard::{Refusal, TrunkConfig};
use ringfence::{Config, Event, RouteEntry, Target};
use support::adm::*;
use support::sip::Req;
use support::*;

/// Calls to this number go to `DEST` and stay up: they hold the pressure.
const HELD: &str = "+18005550100";

/// Calls to `HELD` are routed and stay up; every other number has no route, so a
/// call admitted to it ends at once (404) and leaves the pressure where it was.
fn pressure_config(max_calls: Option<u32>) -> Config {
    let mut c = Config::default();
    c.routing.routes = vec![RouteEntry {
        number: HELD.into(),
        targets: vec![Target::parse(DEST).unwrap()],
    }];
    c.admission.max_calls = max_calls;
    c.admission.shed_watermark = 0.8;
    c
}

/// An engine whose concurrency the test sets: held calls are added (retrying the ones
/// shed on the way) or ended (486 from the callee) until the ledger shows the target.
struct Pressure {
    h: Harness,
    next: u32,
    /// Forwarded INVITEs of the held calls.
    held: Vec<Sent>,
    /// Where held calls come from.
    from: &'static str,
}

impl Pressure {
    fn new(c: Config) -> Self {
        Pressure {
            h: Harness::new(c),
            next: 0,
            held: Vec::new(),
            from: CARRIER,
        }
    }

    fn active(&self) -> u32 {
        self.held.len() as u32
    }

    fn set(&mut self, k: u32) {
        while self.active() < k {
            let out = self.h.send(
                self.from,
                &call_via(self.from, self.next)
                    .with(|r| {
                        r.uri = format!("sip:{HELD}@192.0.2.10");
                    })
                    .bytes(),
            );
            self.next += 1;
            if is_admitted(&out) {
                self.held.push(one_to(&out, DEST));
            }
        }
        while self.active() > k {
            let fwd = self.held.pop().unwrap();
            self.h.send(DEST, &answer(&fwd, 486, Some("busy")));
        }
    }

    /// Offers a new call that ends at once if admitted; returns what was sent.
    fn probe(&mut self, f: impl FnOnce(Req) -> Req) -> Vec<Sent> {
        let req = f(call_via(CARRIER, 1_000_000 + self.next));
        self.next += 1;
        self.h.send(CARRIER, &req.bytes())
    }
}

fn shed_count(h: &Harness) -> u64 {
    h.engine.stats().refused[Refusal::Shed.index()]
}

/// |observed − n·p| within four standard deviations of Binomial(n, p) (plus rounding).
fn assert_binomial(observed: u64, n: u64, p: f64, what: &str) {
    let mean = n as f64 * p;
    let sigma = (n as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (observed as f64 - mean).abs() <= 4.0 * sigma + 0.5,
        "{what}: {observed} of {n}, expected {mean:.1} ± {:.1}",
        4.0 * sigma
    );
}

#[test]
fn shedding_follows_the_watermark_curve() {
    const N: u64 = 2000;
    let mut p = Pressure::new(pressure_config(Some(100)));
    let ledger = p.h.engine.ledger().clone();
    // Watermark 0.8: shed probability (pressure − 0.8) / 0.2, from 0 at 80% to 1 at 100%.
    for (active, expected) in [
        (100, 1.0),
        (95, 0.75),
        (90, 0.5),
        (85, 0.25),
        (80, 0.0),
        (50, 0.0),
    ] {
        p.set(active);
        assert_eq!(ledger.active_calls(), active);
        let before = shed_count(&p.h);
        let mut shed = 0;
        for _ in 0..N {
            let out = p.probe(|r| r);
            if is_admitted(&out) {
                assert!(response(&out, 404).is_some(), "admitted, then no route");
            } else {
                assert_eq!(refusal(&out).and_then(Sent::status), Some(503));
                shed += 1;
            }
            assert_eq!(ledger.active_calls(), active, "the pressure stays put");
        }
        assert_eq!(
            shed_count(&p.h) - before,
            shed,
            "every refusal here is a shed"
        );
        if expected == 0.0 || expected == 1.0 {
            assert_eq!(shed as f64, N as f64 * expected, "at {active}%");
        } else {
            assert_binomial(shed, N, expected, &format!("shed at {active}%"));
        }
    }
}

#[test]
fn pressure_is_per_trunk_and_the_highest_share_of_any_limit() {
    const N: u64 = 1000;
    let mut a = TrunkConfig::new("a");
    a.sources = vec!["192.0.2.0/24".parse().unwrap()];
    a.max_calls = Some(10);
    let mut b = TrunkConfig::new("b");
    b.sources = vec!["198.51.100.0/24".parse().unwrap()];
    let mut c = pressure_config(Some(1000));
    c.admission.trunks = vec![a, b];
    c.admission.unknown_sources = None;
    let mut p = Pressure::new(c);
    p.set(9); // trunk a at 90%: shed 0.5; the node at 0.9%
    let b_src = "198.51.100.7:5060";
    let (mut shed_a, mut shed_b) = (0, 0);
    for i in 0..N as u32 {
        if !is_admitted(&p.probe(|r| r)) {
            shed_a += 1;
        }
        let out = p.h.send(b_src, &call_via(b_src, 2_000_000 + i).bytes());
        if !is_admitted(&out) {
            shed_b += 1;
        }
    }
    assert_binomial(shed_a, N, 0.5, "trunk a at 90%");
    assert_eq!(shed_b, 0, "trunk b is not under pressure");
    let s = p.h.engine.stats();
    assert_eq!(s.trunks[0].refused[Refusal::Shed.index()], shed_a);
}

#[test]
fn protected_numbers_skip_shedding_rates_and_concurrency_but_not_tables_or_drain() {
    let mut c = pressure_config(Some(10));
    c.routing.routes.push(RouteEntry {
        number: "911".into(),
        targets: vec![Target::parse(DEST).unwrap()],
    });
    // 112 has no route: a protected call to it ends at once.
    c.admission.protected_numbers = vec!["911".into(), "112".into()];
    let mut p = Pressure::new(c);
    let ledger = p.h.engine.ledger().clone();

    // Shedding: at 95% a plain call is shed three times in four; a protected one never.
    p.set(9);
    let protected = (0..200)
        .filter(|_| is_admitted(&p.probe(|r| r.with(|r| r.uri = "sip:112@192.0.2.10".into()))))
        .count();
    assert_eq!(protected, 200);
    let plain = (0..200).filter(|_| is_admitted(&p.probe(|r| r))).count() as u64;
    assert_binomial(200 - plain, 200, 0.5, "plain calls at 90%");

    // Concurrency: a full node still takes protected calls, over the soft limit.
    p.set(10);
    assert!(!is_admitted(&p.probe(|r| r)));
    for _ in 0..3 {
        let out = p.probe(|r| r.with(|r| r.uri = "sip:911@192.0.2.10".into()));
        assert!(is_admitted(&out));
        one_to(&out, DEST);
    }
    assert_eq!(ledger.active_calls(), 13, "protected calls hold slots too");
    assert_eq!(p.h.engine.active_calls(), 13);
    assert_eq!(p.h.engine.stats().refused[Refusal::NodeCalls.index()], 0);
    assert!(p.h.engine.stats().refused[Refusal::Shed.index()] > 0);

    // Draining refuses everything new, protected calls included.
    p.h.engine.drain(p.h.now);
    let out = p.probe(|r| r.with(|r| r.uri = "sip:112@192.0.2.10".into()));
    assert_eq!(refusal(&out).and_then(Sent::status), Some(503));
    assert_eq!(p.h.engine.stats().refused[Refusal::Draining.index()], 1);
}

#[test]
fn protected_numbers_skip_the_rate_limits_and_spend_none_of_them() {
    let mut c = Config::default();
    c.admission.calls_per_second = Some(1.0);
    c.admission.burst = 0;
    c.admission.protected_numbers = vec!["112".into()];
    let mut h = Harness::new(c);
    assert!(is_admitted(&h.send(CARRIER, &call(1).bytes())));
    assert!(!is_admitted(&h.send(CARRIER, &call(2).bytes())));
    for n in 10..60 {
        let out = h.send(CARRIER, &call_to("112", n).bytes());
        assert!(is_admitted(&out), "protected call {n}");
    }
    h.advance(Duration::from_secs(1));
    assert!(
        is_admitted(&h.send(CARRIER, &call(3).bytes())),
        "protected calls took no tokens"
    );
    // The one refusal is call 2 (shed or rate-limited: the rate is fully in use).
    assert_eq!(h.engine.stats().refused_total(), 1);
}

#[test]
fn protected_calls_still_need_room_in_the_tables() {
    let mut c = routed(&[DEST]);
    c.proxy.max_calls = 2;
    c.admission.protected_numbers = vec!["112".into()];
    let mut h = Harness::new(c);
    for n in 0..2 {
        one_to(&h.send(CARRIER, &call_to("112", n).bytes()), DEST);
    }
    let out = h.send(CARRIER, &call_to("112", 2).bytes());
    assert!(to(&out, DEST).is_empty());
    assert_eq!(response(&out, 503).map(|s| s.to), Some(addr(CARRIER)));
    assert_eq!(h.engine.ledger().active_calls(), 2, "its slot went back");
    assert_eq!(h.engine.active_calls(), 2);
}

fn drained_events(h: &Harness) -> usize {
    h.events
        .iter()
        .filter(|e| matches!(e, Event::Drained))
        .count()
}

#[test]
fn drain_lets_every_call_finish_reports_drained_once_and_undrain_reopens() {
    let mut c = routed(&[DEST]);
    c.admission.max_calls = Some(3);
    c.admission.shed_watermark = 1.0;
    let mut h = Harness::new(c);
    let ledger = h.engine.ledger().clone();
    // Three calls: ringing, answered, trying.
    let ringing = call(1);
    let f1 = one_to(&h.send(CARRIER, &ringing.bytes()), DEST);
    h.send(DEST, &answer(&f1, 180, Some("t1")));
    let answered = call(2);
    let f2 = one_to(&h.send(CARRIER, &answered.bytes()), DEST);
    h.send(DEST, &answer(&f2, 200, Some("t2")));
    h.send(CARRIER, &caller_ack(&answered, "t2").bytes());
    let trying = call(3);
    one_to(&h.send(CARRIER, &trying.bytes()), DEST);
    // Merely busy (full): OPTIONS still 200, new calls 503 for the limit.
    assert_eq!(
        one(h.send(CARRIER, &Req::options("busy").bytes())).status(),
        Some(200)
    );
    assert!(refusal(&h.send(CARRIER, &call(4).bytes())).is_some());

    h.engine.drain(h.now);
    assert!(h.engine.stats().draining);
    let r = one(h.send(CARRIER, &call(5).bytes()));
    assert!(
        r.bytes
            .starts_with(b"SIP/2.0 503 Service Unavailable - Draining\r\n")
    );
    assert!((30..=60).contains(&retry_after(&r).unwrap()));
    let opt = one(h.send(CARRIER, &Req::options("draining").bytes()));
    assert_eq!(opt.status(), Some(503));
    assert_eq!(retry_after(&opt), Some(30));

    // Calls in progress carry on: the ringing call is answered while draining.
    h.send(DEST, &answer(&f1, 200, Some("t1")));
    h.send(CARRIER, &caller_ack(&ringing, "t1").bytes());
    assert_eq!(ledger.active_calls(), 3);
    h.send(CARRIER, &trying.cancel().bytes());
    h.send(DEST, &callee_bye(&f2, "t2"));
    h.advance(Duration::from_secs(10));
    assert_eq!(drained_events(&h), 0, "one call is still up");
    assert_eq!(ledger.active_calls(), 1);
    h.send(CARRIER, &caller_bye(&ringing, "t1").bytes());
    assert_eq!(ledger.active_calls(), 0);
    assert_eq!(drained_events(&h), 1, "the last call ended");
    // Lingering transactions and dialogs end later; no second Drained.
    h.run_until_idle(Duration::from_secs(300));
    assert_eq!(drained_events(&h), 1);
    assert_eq!(h.engine.stats().refused[Refusal::Draining.index()], 1);

    h.engine.undrain(h.now);
    assert!(!h.engine.stats().draining);
    assert_eq!(
        one(h.send(CARRIER, &Req::options("back").bytes())).status(),
        Some(200)
    );
    let again = call(6);
    one_to(&h.send(CARRIER, &again.bytes()), DEST);
    // A second drain reports its own Drained when its call ends.
    h.engine.drain(h.now);
    h.advance(Duration::ZERO);
    assert_eq!(drained_events(&h), 1);
    h.send(CARRIER, &again.cancel().bytes());
    assert_eq!(drained_events(&h), 2);
}

#[test]
fn drain_with_no_calls_reports_drained_at_once() {
    let mut h = Harness::new(routed(&[DEST]));
    h.engine.drain(h.now);
    h.advance(Duration::ZERO);
    assert_eq!(drained_events(&h), 1);
    h.advance(Duration::from_secs(5));
    assert_eq!(drained_events(&h), 1);
}

/// The shed probability at `active` of 20 calls with watermark 0.8, as a percentage.
fn loss_at(active: u32) -> u32 {
    let p = active as f64 / 20.0;
    let shed = ((p - 0.8) / 0.2).clamp(0.0, 1.0);
    (shed * 100.0).round() as u32
}

#[test]
fn rfc7339_loss_equals_the_shed_probability_on_trying_and_refusals() {
    let mut p = Pressure::new(pressure_config(Some(20)));
    for active in [14, 16, 17, 18, 19, 20] {
        p.set(active);
        let (mut trying_seen, mut refused_seen) = (0, 0);
        for i in 0..60 {
            let params = if i % 2 == 0 {
                ";oc"
            } else {
                ";oc;oc-algo=\"loss,A\""
            };
            let out = p.probe(|r| with_via_params(r, params));
            if is_admitted(&out) {
                // Built while the new call holds its slot: one more call in use.
                let trying = response(&out, 100).unwrap();
                assert_eq!(
                    oc_loss(trying),
                    Some(loss_at(active + 1)),
                    "{}",
                    trying.text()
                );
                let oc = oc_params(trying);
                assert_eq!(oc.algo.as_deref(), Some("\"loss\""));
                assert_eq!(oc.validity.as_deref(), Some("1000"));
                trying_seen += 1;
            } else {
                let r = refusal(&out).unwrap();
                assert_eq!(r.status(), Some(503));
                assert_eq!(oc_loss(r), Some(loss_at(active)), "{}", r.text());
                refused_seen += 1;
            }
        }
        assert!(
            active >= 20 || trying_seen > 0,
            "{active}: some calls admitted"
        );
        assert!(active <= 16 || refused_seen > 0, "{active}: some refused");
    }
}

#[test]
fn rfc7339_oc_seq_increases_with_time() {
    let mut p = Pressure::new(pressure_config(Some(20)));
    p.set(20); // every new call refused, each refusal carries feedback
    let mut last = None;
    for step in [0, 1, 250, 1000, 1, 3000] {
        p.h.advance(Duration::from_millis(step));
        let out = p.probe(|r| with_via_params(r, ";oc"));
        let seq = oc_seq_ms(refusal(&out).unwrap()).expect("oc-seq");
        if let Some(prev) = last {
            assert!(seq > prev, "oc-seq {seq} after {prev}");
        }
        last = Some(seq);
    }
}

#[test]
fn rfc7339_feedback_only_for_clients_that_ask_for_loss() {
    for (params, overload_control) in [
        ("", true),
        (";oc-algo=\"loss\"", true),
        (";oc;oc-algo=\"rate\"", true),
        (";oc;oc-algo=\"rate,A\"", true),
        (";oc;oc-algo=loss", true),
        (";oc", false),
    ] {
        let mut c = pressure_config(Some(20));
        c.admission.overload_control = overload_control;
        let mut p = Pressure::new(c);
        p.set(19);
        let (mut trying, mut refused) = (0, 0);
        for _ in 0..40 {
            let mut via = String::new();
            let out = p.probe(|r| {
                let r = with_via_params(r, params);
                via = r.via[0].clone();
                r
            });
            let resp = response(&out, 100).or_else(|| refusal(&out)).unwrap();
            if resp.status() == Some(100) {
                trying += 1;
            } else {
                refused += 1;
            }
            // The Via comes back exactly as sent: no feedback parameters added.
            assert_eq!(
                String::from_utf8_lossy(resp.msg().top_via().value),
                via,
                "Via params {params:?}, overload control {overload_control}"
            );
        }
        assert!(trying > 0 && refused > 0, "both kinds of response checked");
    }
}

/// RFC 7339 §5.2: the server gives feedback by providing a value for the `oc`
/// parameter the client put on its Via and setting `oc-algo` to the one algorithm it
/// chose; RFC 3261 §7.3.1: a parameter name must not appear twice.
#[test]
fn rfc7339_feedback_replaces_the_clients_oc_parameters() {
    let mut p = Pressure::new(pressure_config(Some(20)));
    p.set(20);
    let out = p.probe(|r| with_via_params(r, ";oc;oc-algo=\"loss,A\""));
    let r = refusal(&out).unwrap();
    let via = String::from_utf8_lossy(r.msg().top_via().value).into_owned();
    let count = |name: &str| {
        via.split(';')
            .filter(|p| p.split('=').next() == Some(name))
            .count()
    };
    assert_eq!((count("oc"), count("oc-algo")), (1, 1), "{via}");
    assert!(
        via.ends_with(";oc=100;oc-algo=\"loss\";oc-validity=1000;oc-seq=0.000"),
        "{via}"
    );
}

/// RFC 7339: the loss rate tells the client what share of its requests to drop. A call
/// from a trunk under pressure is shed with the trunk's probability, and its 503 says
/// so; the 100 Trying to an admitted call from the same trunk must say the same.
#[test]
fn rfc7339_trying_reports_the_callers_trunk_pressure() {
    let mut a = TrunkConfig::new("a");
    a.sources = vec!["192.0.2.0/24".parse().unwrap()];
    a.max_calls = Some(10);
    let mut c = pressure_config(None);
    c.admission.trunks = vec![a];
    c.admission.unknown_sources = None;
    let mut p = Pressure::new(c);
    p.set(8); // trunk at 80%: nothing shed yet
    let out = p.probe(|r| with_via_params(r, ";oc"));
    let trying = response(&out, 100).expect("admitted at the watermark");
    // While it holds its slot the trunk is at 90%: shed probability 0.5.
    assert_eq!(oc_loss(trying), Some(50), "{}", trying.text());
}

// ----- load feedback -----

/// One virtual second of a host: `offered` calls spread evenly, each admitted call
/// ends at once (no route, 404, ACKed); returns how many were admitted.
fn one_second(h: &mut Harness, next: &mut u32, offered: u32) -> u64 {
    let before = h.engine.stats().trunks[0].admitted;
    let step = Duration::from_secs(1) / offered;
    for _ in 0..offered {
        h.advance(step);
        let req = call(*next);
        *next += 1;
        let out = h.send(CARRIER, &req.bytes());
        if let Some(nf) = response(&out, 404) {
            let tag = String::from_utf8_lossy(nf.msg().to_tag().unwrap()).into_owned();
            h.send(CARRIER, &req.ack(&tag).bytes());
        }
    }
    h.log.clear();
    h.engine.stats().trunks[0].admitted - before
}

fn capacity_changes(events: &[Event]) -> Vec<Option<f64>> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::CapacityChanged {
                calls_per_second, ..
            } => Some(*calls_per_second),
            _ => None,
        })
        .collect()
}

/// (second, admitted in it) for the seconds in `range`.
fn seconds(
    admitted: &[u64],
    range: std::ops::RangeInclusive<usize>,
) -> impl Iterator<Item = (usize, u64)> + '_ {
    range.map(move |s| (s, admitted[s]))
}

/// A host whose real capacity is 100 calls/s, then 70 (a 30% loss), then 100 again,
/// then 200, offered 125 calls/s throughout. Once per virtual second it reports
/// utilisation = admitted rate / real capacity, as `Engine::report_load` asks.
#[test]
fn load_feedback_follows_a_capacity_loss_and_rises_when_it_returns() {
    const OFFERED: u32 = 125;
    let mut c = Config::default(); // no route: admitted calls end at once
    c.admission.calls_per_second = Some(150.0); // the cap feedback never exceeds
    c.admission.burst = 20;
    c.admission.shed_watermark = 1.0; // the adaptive limit alone
    let mut h = Harness::new(c);
    let capacity = |s: usize| match s {
        0..=10 => 100.0,
        11..=25 => 70.0,
        26..=45 => 100.0,
        _ => 200.0,
    };
    let mut next = 0;
    // admitted[s]: calls admitted during second s (1-based); limit[s] after its report.
    let mut admitted = vec![0u64];
    let mut limit = vec![None];
    let mut changes = vec![vec![]];
    for s in 1..=62 {
        let n = one_second(&mut h, &mut next, OFFERED);
        h.engine.report_load(h.now, n as f64 / capacity(s));
        h.advance(Duration::ZERO);
        admitted.push(n);
        limit.push(h.engine.stats().adaptive_rate);
        changes.push(capacity_changes(&h.take_events()));
    }
    let report = format!("admitted per second {admitted:?}\nlimit {limit:?}");

    // Capacity 100, offered 125: the second report (the first with a measured rate)
    // cuts the limit to 125 · 0.95 / 1.25 = 95.
    assert!(changes[1].is_empty(), "{report}");
    assert_eq!(changes[2].len(), 1, "{report}");
    let first = changes[2][0].expect("a limit");
    assert!((first - 95.0).abs() < 1.0, "{first}\n{report}");
    // From then on the node is never overloaded by more than the burst tolerance,
    // and it settles at the target (95% of capacity, within one 5% step).
    for (s, n) in seconds(&admitted, 3..=10) {
        assert!(n <= 100 + 20, "second {s}\n{report}");
    }
    for (s, n) in seconds(&admitted, 9..=10) {
        assert!((90..=101).contains(&n), "second {s}\n{report}");
    }

    // Capacity drops to 70 in second 11: the report that sees it cuts the limit below
    // 70 in one step; within three seconds the admitted rate is at the new capacity.
    assert!(
        changes[11]
            .iter()
            .any(|l| l.is_some_and(|l| l < 70.0 && l > 60.0)),
        "{report}"
    );
    for (s, n) in seconds(&admitted, 14..=25) {
        assert!((60..=71).contains(&n), "second {s}\n{report}");
    }
    let settled: u64 = admitted[14..=25].iter().sum();
    let mean = settled as f64 / 12.0;
    assert!((63.0..=70.0).contains(&mean), "mean {mean}\n{report}");

    // Capacity back to 100 in second 26: additive increase of 5% a second, so from
    // ~66.5 the limit passes 90 within ⌈ln(90/66.5)/ln 1.05⌉ = 7 reports (+2 slack).
    let rising = &limit[26..=33];
    assert!(
        rising.windows(2).all(|w| w[1].unwrap() >= w[0].unwrap()),
        "{report}"
    );
    assert!(limit[33].unwrap() > limit[25].unwrap() + 20.0, "{report}");
    for (s, n) in seconds(&admitted, 36..=45) {
        assert!((90..=101).contains(&n), "second {s}\n{report}");
    }

    // Capacity 200 from second 46: utilisation stays below target, the limit rises
    // past the 150/s cap and is lifted; all 125 offered calls are admitted again.
    let lifted = changes[46..].iter().flatten().any(Option::is_none);
    assert!(lifted, "{report}");
    assert_eq!(limit[62], None, "{report}");
    for (s, n) in seconds(&admitted, 60..=62) {
        assert_eq!(n, OFFERED as u64, "second {s}\n{report}");
    }
    let s = h.engine.stats();
    assert!(s.refused[Refusal::Capacity.index()] > 0);
    assert_eq!(
        s.capacity_changes as usize,
        changes.iter().flatten().count()
    );
    assert_eq!(h.engine.ledger().active_calls(), 0);
}

/// The control law in feedback.rs sets the limit on every report it acts on
/// (`R ← base · clamp(target / u, floor, 0.99)`); only the *event* waits for a 5%
/// change. The limit the node enforces must be the one the law computed.
#[test]
fn every_step_of_the_control_law_is_enforced() {
    let mut c = Config::default();
    c.admission.shed_watermark = 1.0;
    let mut h = Harness::new(c);
    let mut next = 0;
    for s in 1..=2 {
        one_second(&mut h, &mut next, 100);
        // First report: nothing measured yet. Second: overloaded twice over.
        h.engine.report_load(h.now, if s == 1 { 0.5 } else { 2.0 });
    }
    // Measured 100/s at utilisation 2.0: R = 100 · max(0.95 / 2, 0.5) = 50.
    let r = h.engine.stats().adaptive_rate.expect("a limit");
    assert!((r - 50.0).abs() < 0.5, "{r}");
    one_second(&mut h, &mut next, 100);
    // Slightly above target + band: R = 50 · 0.95 / 0.98 ≈ 48.47 (a 3% step).
    h.engine.report_load(h.now, 0.98);
    let r = h.engine.stats().adaptive_rate.expect("a limit");
    assert!((r - 50.0 * 0.95 / 0.98).abs() < 0.1, "enforced {r}");
}
