//! Health, the bypass signal and metrics through the engine.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use ringfence::health::{BypassSignal, HealthState, NodeReport, Override};
use ringfence::{AskHost, Event};
use support::sip::Req;
use support::*;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Offers `n` new calls per second for `seconds` from distinct callers.
fn offer(h: &mut Harness, seconds: u64, n: u32, seq: &mut u32) {
    for _ in 0..seconds {
        for _ in 0..n {
            *seq += 1;
            let inv = Req::invite("+18005550199", &format!("h{seq}")).with(|r| {
                r.from = format!("<sip:+1415{:07}@c>;tag=t{seq}", *seq);
            });
            h.send(CARRIER, &inv.bytes());
        }
        h.advance(Duration::from_millis(1000));
    }
}

fn health_changes(h: &Harness) -> Vec<(HealthState, HealthState)> {
    h.events
        .iter()
        .filter_map(|e| match e {
            Event::HealthChanged { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect()
}

#[test]
fn sustained_overload_refusals_lead_to_bypass_and_back() {
    let mut c = routed(&[DEST]);
    c.admission.max_calls = Some(0);
    c.admission.shed_watermark = 1.0;
    let mut h = Harness::new(c);
    let mut seq = 0;
    offer(&mut h, 10, 20, &mut seq);
    assert_eq!(
        h.engine.health(h.now),
        HealthState::Bypass,
        "{:?}",
        health_changes(&h)
    );
    let signal = h.engine.bypass_signal(h.now, 1_000);
    assert!(signal.bypass(1_000));
    assert_eq!(signal.reason, ringfence::health::Reason::Overload);
    assert_eq!(h.engine.stats().health, HealthState::Bypass);
    // Two-sided bypass: with the host asked for every call, calls in bypass are not.
    // (Checked in its own test below.) Recovery: no more refusals.
    h.advance(secs(60));
    assert_eq!(h.engine.health(h.now), HealthState::Healthy);
    let changes = health_changes(&h);
    assert_eq!(changes.first().map(|c| c.0), Some(HealthState::Healthy));
    assert_eq!(changes.last().map(|c| c.1), Some(HealthState::Healthy));
}

#[test]
fn in_bypass_calls_take_the_fast_path_without_route_requests() {
    let mut c = routed(&[DEST]);
    c.routing.ask_host = AskHost::Always;
    let mut h = Harness::new(c);
    h.engine.set_health_override(h.now, Override::ForceBypass);
    let out = h.send(CARRIER, &Req::invite("+18005550199", "fast").bytes());
    assert!(
        !h.events
            .iter()
            .any(|e| matches!(e, Event::RouteRequest { .. }))
    );
    assert_eq!(
        one_to(&out, DEST).method().as_deref(),
        Some("INVITE"),
        "default route used"
    );
    // Back to automatic: the state recovers with the usual hysteresis, not at once.
    h.engine.set_health_override(h.now, Override::Auto);
    assert_eq!(h.engine.health(h.now), HealthState::Bypass);
    h.advance(secs(30));
    assert_eq!(h.engine.health(h.now), HealthState::Healthy);
    h.send(CARRIER, &Req::invite("+18005550100", "slow").bytes());
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, Event::RouteRequest { .. }))
    );
}

#[test]
fn overrides_take_effect_at_once() {
    let mut h = Harness::new(routed(&[DEST]));
    h.engine.set_health_override(h.now, Override::ForceBypass);
    assert_eq!(h.engine.health(h.now), HealthState::Bypass);
    let s = h.engine.bypass_signal(h.now, 5);
    assert_eq!(s.reason, ringfence::health::Reason::Forced);
    h.engine.set_health_override(h.now, Override::ForceNormal);
    assert_eq!(h.engine.health(h.now), HealthState::Healthy);
}

#[test]
fn node_reports_carry_measured_capacity_and_load() {
    let mut c = routed(&[DEST]);
    c.admission.calls_per_second = Some(100.0);
    let mut h = Harness::new(c);
    let mut seq = 0;
    offer(&mut h, 5, 10, &mut seq);
    let r = h.engine.node_report(h.now, "edge-1", 42);
    assert_eq!(r.node, "edge-1");
    assert_eq!(
        r.capacity_cps, 100.0,
        "no load report yet: the configured rate"
    );
    assert!(
        (r.calls_per_second - 5.0).abs() < 1e-9,
        "{}",
        r.calls_per_second
    );
    assert_eq!(r.active_calls, 50);
    assert_eq!(
        NodeReport::parse(&r.render()).unwrap(),
        NodeReport {
            score: (r.score * 1000.0).round() / 1000.0,
            ..r.clone()
        }
    );
}

/// Parses the Prometheus text format back: every sample line belongs to a family
/// announced by HELP and TYPE, names and labels are well formed, values are numbers.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(!help.is_empty());
            assert!(
                !types.contains_key(name),
                "HELP after TYPE or twice: {name}"
            );
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge"].contains(&kind), "{kind}");
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "TYPE twice: {name}"
            );
        } else {
            let (series, value) = line.rsplit_once(' ').expect("sample");
            let name = series.split('{').next().unwrap();
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{name}"
            );
            let kind = types
                .get(name)
                .unwrap_or_else(|| panic!("sample before TYPE: {line}"));
            if kind == "counter" {
                assert!(
                    name.ends_with("_total"),
                    "counter names end in _total: {name}"
                );
            }
            if let Some(labels) = series.strip_prefix(name)
                && !labels.is_empty()
            {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{labels}");
                for pair in labels[1..labels.len() - 1].split(',') {
                    let (k, v) = pair.split_once('=').expect("label k=v");
                    assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                    assert!(v.starts_with('"') && v.ends_with('"'), "{v}");
                }
            }
            let v: f64 = value.parse().unwrap_or_else(|_| panic!("value: {line}"));
            assert!(
                samples.insert(series.to_owned(), v).is_none(),
                "duplicate series {series}"
            );
        }
    }
    samples
}

#[test]
fn prometheus_output_parses_back_to_the_counters() {
    let mut c = routed(&[DEST]);
    c.admission.max_calls = Some(2);
    c.admission.shed_watermark = 1.0;
    let mut h = Harness::new(c);
    let mut seq = 0;
    offer(&mut h, 1, 5, &mut seq);
    h.send(CARRIER, b"garbage\r\n\r\n");
    let s = h.engine.stats();
    let mut text = String::new();
    s.write_prometheus(&mut text).unwrap();
    let m = parse_prometheus(&text);
    assert_eq!(
        m["ringfence_calls_total{outcome=\"started\"}"],
        s.calls_started as f64
    );
    assert_eq!(m["ringfence_calls_total{outcome=\"started\"}"], 2.0);
    assert_eq!(m["ringfence_refused_total{cause=\"node_calls\"}"], 3.0);
    assert_eq!(
        m["ringfence_trunk_refused_by_cause_total{trunk=\"default\",cause=\"node_calls\"}"],
        3.0
    );
    assert_eq!(m["ringfence_trunk_offered_total{trunk=\"default\"}"], 5.0);
    assert_eq!(m["ringfence_datagrams_total"], s.datagrams as f64);
    assert_eq!(
        m["ringfence_malformed_total{reason=\"bad_start_line\"}"],
        1.0
    );
    assert_eq!(m["ringfence_health_state{state=\"healthy\"}"], 1.0);
    assert_eq!(m["ringfence_node_active_calls"], 2.0);
}

proptest! {
    #[test]
    fn bypass_signals_round_trip(state in 0..3u8, reason in 0..8u8, score in 0u32..=1000, at in any::<u32>(), ttl in 1u32..100_000) {
        let state = [HealthState::Healthy, HealthState::Degraded, HealthState::Bypass][state as usize];
        use ringfence::health::Reason::*;
        let reason = [Ok, Overload, Draining, Failures, Utilisation, Breakers, Retries, Forced][reason as usize];
        let s = BypassSignal { state, reason, score: score as f64 / 1000.0, issued_at_ms: at as u64 * 1000, ttl_ms: ttl as u64 };
        prop_assert_eq!(BypassSignal::parse(&s.render()).unwrap(), s);
    }

    #[test]
    fn node_reports_round_trip(name in "[a-z][a-z0-9-]{0,12}", cap in 0u32..100_000, active in any::<u32>(), cps in 0u32..100_000, draining: bool, at in any::<u32>()) {
        let r = NodeReport {
            node: name, state: HealthState::Degraded, score: 0.5, capacity_cps: cap as f64 / 10.0,
            active_calls: active as u64, calls_per_second: cps as f64 / 10.0, draining,
            issued_at_ms: at as u64, ttl_ms: 15_000,
        };
        prop_assert_eq!(NodeReport::parse(&r.render()).unwrap(), r);
    }

    #[test]
    fn malformed_lines_are_refused_not_misread(line in "[ -~]{0,80}") {
        // Anything that parses must render back to an equivalent signal.
        if let Ok(s) = BypassSignal::parse(&line) {
            prop_assert_eq!(BypassSignal::parse(&s.render()).unwrap(), s);
        }
    }

    /// Whatever the input sequence, the state changes at most once per dwell time.
    #[test]
    fn state_changes_at_most_once_per_dwell(steps in proptest::collection::vec((0u32..30, 0u32..=30, 1u64..3000), 1..80)) {
        let mut c = routed(&[DEST]);
        c.admission.max_calls = Some(0);
        c.admission.shed_watermark = 1.0;
        c.admission.trunks[0].dedup.enabled = false;
        let mut h = Harness::new(c);
        let mut seq = 0u32;
        for (calls, refused_share, ms) in steps {
            // Every call is refused (the node is full); the number offered per step and
            // the time gaps vary, so the score swings anywhere between 0 and 1.
            for _ in 0..calls.min(refused_share) {
                seq += 1;
                let inv = Req::invite("+18005550199", &format!("p{seq}"));
                h.send(CARRIER, &inv.bytes());
            }
            h.advance(Duration::from_millis(ms));
            let _ = h.engine.health(h.now);
        }
        let dwell = Duration::from_secs(5);
        let mut last: Option<Duration> = None;
        for (t, _) in h.health_change_times() {
            if let Some(l) = last {
                prop_assert!(t - l >= dwell, "changes {l:?} and {t:?} closer than the dwell");
            }
            last = Some(t);
        }
    }
}
