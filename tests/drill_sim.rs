//! The drill's simulated peers and network, and the capacity finder, in virtual time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringfence::drill::sim::{Network, SimNode};
use ringfence::drill::{
    CapacityFinder, Carrier, CarrierConfig, Destination, DestinationMix, FinderConfig, Next,
    RetryProfile, StepResult,
};
use ringfence::{Config, Engine, Target};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const NODE: &str = "10.0.0.1:5060";
const CARRIER: &str = "10.0.1.1:5060";
const DEST: &str = "10.0.2.1:5080";

/// Carrier → one simulated node of real capacity `capacity` → destination.
fn setup(
    start: Instant,
    capacity: f64,
    profile: RetryProfile,
    feedback: bool,
) -> (Network, usize, usize, usize) {
    let mut cfg = Config::default();
    cfg.routing.default_route = vec![Target::parse(DEST).unwrap()];
    let engine = Engine::new(cfg, start).unwrap();
    let mut node = SimNode::new(engine, addr(NODE), start, capacity);
    node.report_load = feedback;
    let mut net = Network::new(start, Duration::from_millis(5));
    let n = net.add(addr(NODE), node);
    let c = net.add(
        addr(CARRIER),
        Carrier::new(CarrierConfig {
            local: addr(CARRIER),
            targets: vec![addr(NODE)],
            profile,
            dialled: vec!["+18005550199".into(), "+18005550100".into()],
            hold: Duration::from_secs(5),
            seed: 1,
        }),
    );
    let d = net.add(
        addr(DEST),
        Destination::new(addr(DEST), DestinationMix::default(), 2),
    );
    (net, n, c, d)
}

/// Offers `cps` for `secs`, then lets calls settle; returns setup times and offered.
fn offer(net: &mut Network, c: usize, cps: f64, secs: f64) -> (u64, Vec<Duration>) {
    let start = net.now();
    let n = (cps * secs).round() as u64;
    let gap = Duration::from_secs_f64(1.0 / cps);
    for i in 0..n {
        net.run_until(start + gap * i as u32);
        let now = net.now();
        net.actor::<Carrier>(c).start_call(now);
        net.poke(c);
    }
    net.run_until(start + Duration::from_secs_f64(secs) + Duration::from_secs(15));
    (n, net.actor::<Carrier>(c).take_setup_times())
}

#[test]
fn calls_flow_end_to_end_below_capacity() {
    let start = Instant::now();
    let (mut net, n, c, d) = setup(start, 100.0, RetryProfile::polite(), true);
    let (offered, setups) = offer(&mut net, c, 20.0, 10.0);
    assert_eq!(offered, 200);
    assert_eq!(setups.len(), 200, "{:?}", net.actor::<Carrier>(c).stats());
    assert!(
        setups.iter().all(|s| *s < Duration::from_secs(2)),
        "{:?}",
        setups.iter().max()
    );
    assert_eq!(net.actor::<Destination>(d).stats().answered, 200);
    let s = net.actor::<SimNode>(n).engine.stats();
    assert_eq!(s.calls_answered, 200);
    net.run_until(net.now() + Duration::from_secs(60));
    assert_eq!(
        net.actor::<SimNode>(n).engine.active_calls(),
        0,
        "every call hung up"
    );
    assert_eq!(net.actor::<Destination>(d).stats().byes, 200);
}

#[test]
fn the_capacity_finder_finds_a_known_capacity_within_5_percent() {
    for capacity in [40.0, 150.0] {
        // Ten-second steps keep the debug build quick; the knee is still sharp.
        let start = Instant::now();
        let (mut net, _, c, _) = setup(start, capacity, RetryProfile::polite(), false);
        let mut f = CapacityFinder::new(FinderConfig {
            start_cps: 10.0,
            step: Duration::from_secs(10),
            ..FinderConfig::default()
        });
        let report = loop {
            let rate = f.current();
            let (offered, setups) = offer(&mut net, c, rate, 10.0);
            match f.observe(StepResult::new(rate, offered, setups)) {
                Next::Try(_) => {}
                Next::Done(r) => break r,
            }
            // Let the node's queue drain between steps.
            net.run_until(net.now() + Duration::from_secs(60));
        };
        let err = (capacity - report.sustainable_cps).abs() / capacity;
        assert!(
            err <= 0.05,
            "capacity {capacity}: found {} ({} steps)",
            report.sustainable_cps,
            report.steps.len()
        );
    }
}
