//! The incident replay: a fleet of simulated nodes (real engines behind a CPU model)
//! fed by simulated carriers, taken through the incident's sequence in virtual time: a
//! capacity regression only load feedback can see, carriers that silently start
//! re-attempting unanswered calls five times, a deploy that drains a third of the
//! fleet, a routing service that fails part of its requests, and the fleet bypass
//! taking demand away while it is on.
//!
//! [`run`] plays a [`Scenario`] once, with ringfence's protections or as a naive proxy,
//! and returns per-second and per-row tables; [`checks`] judges a run against the
//! targets and [`Summary`] condenses one. `examples/incident_replay.rs` prints them.
//!
//! Deterministic: the same scenario (seed included) gives the same tables whatever
//! `epoch` is. Nothing here reads a clock; time is the [`Network`]'s.
//!
//! # The model
//!
//! * Each node is a [`SimNode`]: a real [`Engine`] behind a CPU that does `real_cps`
//!   units a second. An admitted INVITE costs 0.90 units, a refused one 0.05, any other
//!   datagram 0.02 ([`COSTS`]): an answered call (INVITE, 180, 200, ACK, BYE, its 200)
//!   costs 1.00, so a node really serves `real_cps` calls a second. The engine is
//!   configured for `configured_cps`; only load feedback (the node reporting its CPU
//!   busy share once a second) tells it the truth. Datagrams wait for the CPU in a
//!   bounded receive buffer and are dropped beyond it, as a kernel drops them.
//! * Every call is routed by the simulated routing service (`AskHost::Always`): each
//!   tracking number to a primary and a backup destination, a few numbers to a
//!   destination that rings and never answers (a closed business). Destinations
//!   refuse a small share of INVITEs with 503; the engine fails over to the backup.
//! * Carriers offer Poisson arrivals, start each call on the next node of their own
//!   node list and fail a 503 over down that list. Before the storm one is `polite`
//!   and two are `standard`; in the storm all turn `aggressive` (five attempts, a new
//!   Call-ID each, re-attempting unanswered calls after 10 s and 503s after 0.5 s
//!   whatever the Retry-After).
//! * Once a second every node's `node_report` feeds a [`Fleet`]; when its bypass is on,
//!   demand drops by `bypass_share` after `bypass_delay` (websites show businesses'
//!   own numbers). Before the deploy the deploy tool asks the fleet's deploy budget;
//!   the deploy goes ahead whatever the answer, as the automated one did.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::sim::{Network, RoutingService, SimNode};
use super::{Carrier, CarrierConfig, CarrierStats, Destination, DestinationMix, RetryProfile};
use crate::config::{AskHost, Config};
use crate::engine::Engine;
use crate::guard::{Refusal, Source, TrunkConfig};
use crate::health::{DeployBudget, Fleet, FleetConfig};
use crate::rng::Rng;
use crate::route::Target;

/// Wall-clock milliseconds the fleet reports are stamped with at virtual time zero (the
/// engine needs Unix milliseconds for its signals; any fixed value will do).
const WALL_EPOCH_MS: u64 = 1_563_903_300_000;

/// CPU cost of an admitted INVITE, a refused one and any other datagram, in units
/// where a node does `real_cps` units a second (see the module docs).
pub const COSTS: (f64, f64, f64) = (0.90, 0.05, 0.02);

/// Everything that shapes a replay. [`Scenario::incident`] is the full replay,
/// [`Scenario::short`] the same shape at a fifth of the scale.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// `full` or `short` (for headers).
    pub name: String,
    /// Seed of every random draw (arrivals, destinations, engines, routing errors).
    pub seed: u64,
    /// Nodes in the fleet.
    pub nodes: usize,
    /// Calls per second each node is configured for (`admission.calls_per_second`).
    pub configured_cps: f64,
    /// Calls per second each node can really serve (only load feedback sees it).
    pub real_cps: f64,
    /// Distinct new calls per second offered to the fleet (before bypass).
    pub demand_cps: f64,
    /// Carriers sharing the demand equally.
    pub carriers: usize,
    /// How long calls are offered.
    pub duration: Duration,
    /// Length of a table row (a minute in the full replay).
    pub row: Duration,
    /// When carriers switch to the aggressive retry profile (one after another, `row /
    /// 6` apart).
    pub storm_at: Duration,
    /// When the deploy drains `drain`.
    pub deploy_at: Duration,
    /// How long the drained nodes stay out.
    pub deploy_for: Duration,
    /// Nodes the deploy drains (indexes).
    pub drain: Vec<usize>,
    /// The routing service fails this share of requests (with a 500) from `.0` to `.1`.
    pub routing_errors: (Duration, Duration, f64),
    /// Share of demand that disappears while the fleet bypass is on.
    pub bypass_share: f64,
    /// How long a bypass change takes to reach the websites (and demand to follow).
    pub bypass_delay: Duration,
    /// Utilisation the deploy tool allows the remaining nodes.
    pub deploy_utilisation: f64,
    /// Destinations that answer (each number has a primary and a backup).
    pub destinations: usize,
    /// One dialled number in this many rings and never answers (0: none).
    pub closed_every: usize,
    /// Share of INVITEs a destination refuses with 503.
    pub unavailable: f64,
    /// Ringing time before an answer.
    pub ring: Duration,
    /// Talk time of answered calls.
    pub hold: Duration,
    /// Tracking numbers each carrier dials, in turn (prime, so every node sees every
    /// number: the nodes' last-known-good caches fill).
    pub numbers: usize,
    /// One-way network latency.
    pub latency: Duration,
    /// How long the routing service takes to answer.
    pub route_delay: Duration,
    /// Time after the last call is offered for calls to finish before the run ends.
    pub settle: Duration,
    /// Each node's socket receive buffer (bytes).
    pub receive_buffer: usize,
}

impl Scenario {
    /// The full incident replay: 17 minutes, one row a minute.
    pub fn incident(seed: u64) -> Scenario {
        let min = |m: u64| Duration::from_secs(m * 60);
        Scenario {
            name: "full".into(),
            seed,
            nodes: 6,
            configured_cps: 100.0,
            real_cps: 80.0,
            demand_cps: 340.0,
            carriers: 3,
            duration: min(17),
            row: min(1),
            storm_at: min(9),
            deploy_at: min(10),
            deploy_for: min(5),
            drain: vec![1, 4],
            routing_errors: (min(12), min(14), 0.3),
            bypass_share: 0.22,
            bypass_delay: Duration::from_secs(5),
            deploy_utilisation: 0.9,
            destinations: 3,
            closed_every: 25,
            unavailable: 0.02,
            ring: Duration::from_secs(2),
            hold: Duration::from_secs(30),
            numbers: 251,
            latency: Duration::from_millis(5),
            route_delay: Duration::from_millis(20),
            settle: Duration::from_secs(20),
            receive_buffer: 2 << 20,
        }
    }

    /// The same shape at a fifth of the scale, for CI (seconds in a debug build): a
    /// fifth of the timeline until the deploy ends (12-second rows), then 90 s of
    /// recovery (the bypass has 60 s to clear, whatever the scale), and a fifth of the
    /// rates (nodes configured for 20 calls/s, really good for 16; 68 calls/s of
    /// demand). Latencies, ring and talk times and every engine timer are unchanged.
    pub fn short(seed: u64) -> Scenario {
        let full = Scenario::incident(seed);
        let fifth = |d: Duration| d / 5;
        let (deploy_at, deploy_for) = (fifth(full.deploy_at), fifth(full.deploy_for));
        Scenario {
            name: "short".into(),
            configured_cps: full.configured_cps / 5.0,
            real_cps: full.real_cps / 5.0,
            demand_cps: full.demand_cps / 5.0,
            duration: deploy_at + deploy_for + Duration::from_secs(90),
            row: fifth(full.row),
            storm_at: fifth(full.storm_at),
            deploy_at,
            deploy_for,
            routing_errors: (
                fifth(full.routing_errors.0),
                fifth(full.routing_errors.1),
                full.routing_errors.2,
            ),
            numbers: 101,
            receive_buffer: full.receive_buffer / 5,
            ..full
        }
    }

    /// When the deploy ends (the drained nodes come back).
    pub fn deploy_end(&self) -> Duration {
        self.deploy_at + self.deploy_for
    }

    /// Share of calls that go to numbers that never answer.
    pub fn closed_share(&self) -> f64 {
        self.numbers
            .checked_div(self.closed_every)
            .map_or(0.0, |closed| closed as f64 / self.numbers as f64)
    }

    /// Real serving capacity of the fleet, calls per second, with `draining` nodes out.
    pub fn capacity(&self, draining: usize) -> f64 {
        self.real_cps * (self.nodes - draining) as f64
    }

    /// The scenario as text (printed at the start of a replay).
    pub fn describe(&self) -> String {
        let n = self.nodes as f64;
        let lines = [
            format!("scenario {} (seed {}):", self.name, self.seed),
            format!(
                "  fleet     {} nodes configured for {:.0} calls/s each ({:.0}), really good for {:.0} each ({:.0}): only load feedback sees it",
                self.nodes,
                self.configured_cps,
                self.configured_cps * n,
                self.real_cps,
                self.capacity(0)
            ),
            format!(
                "  demand    {:.0} distinct calls/s (Poisson) from {} carriers; {:.0}% of calls dial numbers that ring and never answer; destinations refuse {:.0}% of INVITEs with 503 (backup target)",
                self.demand_cps,
                self.carriers,
                self.closed_share() * 100.0,
                self.unavailable * 100.0
            ),
            format!(
                "  calls     ring {} s, talk {} s, every call routed by the routing service (AskHost::Always)",
                self.ring.as_secs(),
                self.hold.as_secs()
            ),
            format!(
                "  {}  carriers switch to re-attempting unanswered calls 5x with new Call-IDs (aggressive profile)",
                clock(self.storm_at)
            ),
            format!(
                "  {}  deploy drains {} of {} nodes for {}: {:.0} calls/s of real capacity left for {:.0} of demand",
                clock(self.deploy_at),
                self.drain.len(),
                self.nodes,
                human(self.deploy_for),
                self.capacity(self.drain.len()),
                self.demand_cps
            ),
            format!(
                "  {}  routing service fails {:.0}% of requests until {}",
                clock(self.routing_errors.0),
                self.routing_errors.2 * 100.0,
                clock(self.routing_errors.1).trim()
            ),
            format!(
                "  {}  deploy over, drained nodes back",
                clock(self.deploy_end())
            ),
            format!(
                "  bypass    while the fleet bypass (health::Fleet over every node's report, each second) is on, {:.0}% of demand goes to businesses' own numbers, {} s after it turns on (or off)",
                self.bypass_share * 100.0,
                self.bypass_delay.as_secs()
            ),
            format!(
                "  rows      one per {}; calls offered until {}, then {} s to settle",
                human(self.row),
                clock(self.duration).trim(),
                self.settle.as_secs()
            ),
        ];
        lines.join("\n")
    }
}

/// `m:ss` of a duration since the start (right-aligned to five characters).
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:>2}:{:02}", s / 60, s % 60)
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s % 60 == 0 {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

/// One second of a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Second {
    /// Distinct calls offered.
    pub offered: u32,
    /// Of those, calls to numbers that answer.
    pub answerable: u32,
    /// Calls offered in this second that were answered (whenever the answer came).
    pub answered: u32,
    /// Their setup times, summed.
    pub setup_total: Duration,
    /// INVITE attempts carriers sent (first attempts, re-attempts and failovers).
    pub attempts: u32,
    /// 5xx finals carriers received (refusals and failures on the proxy side).
    pub rejected: u32,
    /// Fleet bypass decision at the end of the second.
    pub bypass: bool,
    /// Whether the bypass was in effect on demand during the second.
    pub bypass_effective: bool,
    /// Real serving capacity (calls/s) of the nodes not draining.
    pub capacity: f64,
    /// What the fleet saw at the end of the second: serving capacity (calls/s).
    pub fleet_capacity: f64,
    /// ... and demand (INVITEs/s offered to live nodes).
    pub fleet_demand: f64,
    /// Longest wait for the CPU on any node at the end of the second.
    pub queue_wait: Duration,
}

/// A stretch of seconds (a table row, a judged minute): counts, not rates.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    /// Start (since the start of the run).
    pub start: Duration,
    /// Length.
    pub len: Duration,
    /// Distinct calls offered.
    pub offered: u64,
    /// Calls offered to numbers that answer.
    pub answerable: u64,
    /// Calls offered in the stretch and answered.
    pub answered: u64,
    /// 5xx finals carriers received.
    pub rejected: u64,
    /// Re-attempts (attempts beyond one per distinct call, failovers included).
    pub retries: u64,
    /// Seconds with the fleet bypass on.
    pub bypass_secs: u32,
    /// Real serving capacity summed over the seconds (calls).
    pub capacity: f64,
    /// Sum of answered calls' setup times.
    pub setup_total: Duration,
    /// Longest CPU wait seen at a second's end.
    pub queue_wait: Duration,
}

impl Row {
    fn of(seconds: &[Second], from: usize, to: usize) -> Row {
        let mut row = Row {
            start: Duration::from_secs(from as u64),
            len: Duration::from_secs(to.saturating_sub(from) as u64),
            ..Row::default()
        };
        for x in seconds.get(from..to).unwrap_or_default() {
            row.offered += x.offered as u64;
            row.answerable += x.answerable as u64;
            row.answered += x.answered as u64;
            row.rejected += x.rejected as u64;
            row.retries += (x.attempts as u64).saturating_sub(x.offered as u64);
            row.bypass_secs += u32::from(x.bypass);
            row.capacity += x.capacity;
            row.setup_total += x.setup_total;
            row.queue_wait = row.queue_wait.max(x.queue_wait);
        }
        row
    }

    fn secs(&self) -> f64 {
        self.len.as_secs_f64().max(1e-9)
    }

    /// Distinct calls per second offered.
    pub fn offered_rate(&self) -> f64 {
        self.offered as f64 / self.secs()
    }

    /// Answered calls per second.
    pub fn goodput(&self) -> f64 {
        self.answered as f64 / self.secs()
    }

    /// 5xx finals per second.
    pub fn rejected_rate(&self) -> f64 {
        self.rejected as f64 / self.secs()
    }

    /// Re-attempts per second.
    pub fn retry_rate(&self) -> f64 {
        self.retries as f64 / self.secs()
    }

    /// Real serving capacity, calls per second (mean).
    pub fn capacity_rate(&self) -> f64 {
        self.capacity / self.secs()
    }

    /// What could have been answered, calls per second: the smaller of answerable
    /// demand and real serving capacity.
    pub fn servable_rate(&self) -> f64 {
        (self.answerable as f64 / self.secs()).min(self.capacity_rate())
    }

    /// Goodput as a share of `servable_rate`.
    pub fn goodput_share(&self) -> f64 {
        let s = self.servable_rate();
        if s <= 0.0 { 1.0 } else { self.goodput() / s }
    }

    /// Mean setup time of the answered calls.
    pub fn setup_mean(&self) -> Duration {
        if self.answered == 0 {
            Duration::ZERO
        } else {
            self.setup_total / self.answered as u32
        }
    }
}

/// What the deploy tool was told before the deploy.
#[derive(Clone, Debug, PartialEq)]
pub struct DeployCheck {
    /// The fleet's budget at that moment.
    pub budget: DeployBudget,
    /// `Fleet::may_drain` for the first node the deploy drains.
    pub may_drain_first: Result<(), String>,
    /// Nodes the deploy drains (names).
    pub wanted: Vec<String>,
}

impl DeployCheck {
    /// Whether the budget allows draining as many nodes as the deploy wants.
    pub fn safe(&self) -> bool {
        self.budget.max() >= self.wanted.len()
    }

    /// One line: the verdict and the numbers behind it.
    pub fn describe(&self) -> String {
        let b = &self.budget;
        format!(
            "{} nodes may drain now ({}), the deploy wants {} -> {}; capacity {:.0} calls/s, peak demand {:.0}, target utilisation {:.0}%; may_drain({}): {}",
            b.max(),
            if b.nodes.is_empty() {
                "none".to_owned()
            } else {
                b.nodes.join(", ")
            },
            self.wanted.len(),
            if self.safe() { "SAFE" } else { "UNSAFE" },
            b.capacity,
            b.peak_demand,
            b.target_utilisation * 100.0,
            self.wanted.first().map_or("-", String::as_str),
            match &self.may_drain_first {
                Ok(()) => "ok".to_owned(),
                Err(e) => e.clone(),
            }
        )
    }
}

/// Totals of a run across nodes and carriers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    /// Carriers' counters, summed.
    pub carrier: CarrierStats,
    /// Calls the engines admitted (started).
    pub admitted: u64,
    /// Admission refusals, by cause label.
    pub refused: Vec<(&'static str, u64)>,
    /// Re-attempts refused at once from a remembered refusal (re-attempt dedup).
    pub suppressed: u64,
    /// Re-attempts that superseded a ringing attempt.
    pub superseded: u64,
    /// Calls routed without the routing service (degraded or node in bypass).
    pub routing_fallbacks: u64,
    /// Route requests the routing service failed.
    pub routing_errors: u64,
    /// Failovers to a backup destination.
    pub failovers: u64,
    /// Failovers refused by the retry budget.
    pub budget_exhausted: u64,
    /// Datagrams dropped because a node's receive buffer was full.
    pub dropped: u64,
}

/// A run's results.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// With ringfence's protections (or naive).
    pub protections: bool,
    /// Every second of the offering period.
    pub seconds: Vec<Second>,
    /// Every table row.
    pub rows: Vec<Row>,
    /// What the deploy tool was told.
    pub deploy: DeployCheck,
    /// Fleet bypass changes: (second, on).
    pub bypass_changes: Vec<(u32, bool)>,
    /// Totals.
    pub totals: Totals,
}

fn v4(a: u8, b: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, a, b)), port)
}

fn node_addr(i: usize) -> SocketAddr {
    v4(0, 1 + i as u8, 5060)
}

fn carrier_addr(c: usize) -> SocketAddr {
    v4(1, 1 + c as u8, 5060)
}

fn dest_addr(d: usize) -> SocketAddr {
    v4(2, 1 + d as u8, 5080)
}

fn closed_addr() -> SocketAddr {
    v4(3, 1, 5080)
}

/// Node `i`'s name in fleet reports.
pub fn node_name(i: usize) -> String {
    format!("edge-{}", i + 1)
}

/// Carrier `c`'s `n`-th tracking number (`+1 800 c nnnnnn`).
fn number(c: usize, n: usize) -> String {
    format!("+1800{}{:06}", c % 10, n)
}

/// The engine configuration of node `i`: ringfence's defaults (the protections), or the
/// naive proxy. Both route every call through the host and know each carrier as a
/// trunk.
pub fn node_config(s: &Scenario, i: usize, protections: bool) -> Config {
    let mut cfg = Config {
        seed: s.seed ^ 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1),
        ..Config::default()
    };
    cfg.routing.ask_host = AskHost::Always;
    cfg.admission.calls_per_second = Some(s.configured_cps);
    for c in 0..s.carriers {
        let mut t = TrunkConfig::new(&format!("carrier-{}", (b'a' + c as u8) as char));
        t.sources = vec![
            carrier_addr(c)
                .ip()
                .to_string()
                .parse::<Source>()
                .expect("an IP is a source"),
        ];
        cfg.admission.trunks.push(t);
    }
    if !protections {
        // No re-attempt dedup, a hard cut-off at the configured rate, failover without
        // a budget, downstream 503 relayed, Retry-After without jitter. (And no load
        // feedback: the host does not report its load; see `run`.)
        cfg.admission.shed_watermark = 1.0;
        for t in &mut cfg.admission.trunks {
            t.dedup.enabled = false;
            t.reject.retry_after_jitter = 0;
        }
        cfg.admission.drain.retry_after_jitter = 0;
        cfg.retry.budget.floor = 1_000_000_000;
        cfg.proxy.relay_503 = true;
    }
    cfg
}

/// Plays `s` once, with ringfence's protections or as the naive proxy, and returns its
/// tables. `epoch` is virtual time zero: any instant will do, the results do not
/// depend on it.
pub fn run(s: &Scenario, protections: bool, epoch: Instant) -> Outcome {
    let mut net = Network::new(epoch, s.latency);
    let secs = s.duration.as_secs() as usize;
    let settle = s.settle.as_secs() as usize;

    // Routing: each number to a primary and a backup destination; closed numbers to the
    // destination that never answers.
    let target = |a: SocketAddr| Target::parse(&a.to_string()).expect("an address is a target");
    let closed = |n: usize| s.closed_every > 0 && n % s.closed_every == s.closed_every - 1;
    let mut numbers: HashMap<String, Vec<Target>> = HashMap::new();
    for c in 0..s.carriers {
        for n in 0..s.numbers {
            let targets = if closed(n) {
                vec![target(closed_addr())]
            } else {
                let d = (n * 7 + c) % s.destinations;
                vec![
                    target(dest_addr(d)),
                    target(dest_addr((d + 1) % s.destinations)).with_priority(1, 1),
                ]
            };
            numbers.insert(number(c, n)[1..].to_owned(), targets);
        }
    }
    let routing = RoutingService {
        target: target(closed_addr()),
        numbers,
        delay: s.route_delay,
        errors: vec![s.routing_errors],
    };

    let nodes: Vec<usize> = (0..s.nodes)
        .map(|i| {
            let engine = Engine::new(node_config(s, i, protections), epoch)
                .expect("the replay's configuration is valid");
            let mut node = SimNode::new(engine, node_addr(i), epoch, s.real_cps)
                .with_routing(routing.clone())
                .with_seed(s.seed ^ 0x726f_7574 ^ i as u64);
            node.costs = COSTS;
            node.report_load = protections;
            node.receive_buffer = Some(s.receive_buffer);
            net.add(node_addr(i), node)
        })
        .collect();
    for d in 0..s.destinations {
        let mix = DestinationMix {
            answer: 1.0 - s.unavailable,
            busy: 0.0,
            no_answer: 0.0,
            unavailable: s.unavailable,
            answer_after: s.ring,
        };
        let seed = s.seed ^ (0x6465_7374 + d as u64);
        net.add(dest_addr(d), Destination::new(dest_addr(d), mix, seed));
    }
    let never = DestinationMix {
        answer: 0.0,
        busy: 0.0,
        no_answer: 1.0,
        unavailable: 0.0,
        answer_after: s.ring,
    };
    let seed = s.seed ^ 0x636c_6f73;
    net.add(closed_addr(), Destination::new(closed_addr(), never, seed));
    let before_storm = [
        RetryProfile::polite(),
        RetryProfile::standard(),
        RetryProfile::standard(),
    ];
    let carriers: Vec<usize> = (0..s.carriers)
        .map(|c| {
            // Each carrier has its own node list (its own SRV order).
            let mut targets: Vec<SocketAddr> = (0..s.nodes).map(node_addr).collect();
            targets.rotate_left((c * 2) % s.nodes.max(1));
            if c % 2 == 1 {
                targets.reverse();
            }
            let cfg = CarrierConfig {
                local: carrier_addr(c),
                targets,
                profile: before_storm[c % before_storm.len()].clone(),
                dialled: (0..s.numbers).map(|n| number(c, n)).collect(),
                hold: s.hold,
                seed: s.seed.wrapping_mul(31).wrapping_add(c as u64 + 1),
            };
            net.add(carrier_addr(c), Carrier::new(cfg))
        })
        .collect();

    let mut fleet = Fleet::new(FleetConfig::default());
    let mut seconds = vec![Second::default(); secs + settle];
    let mut changes = Vec::new();
    let mut deploy = None;
    let mut rng: Vec<Rng> = (0..s.carriers)
        .map(|c| Rng::new(s.seed ^ (0x6172_7269 + c as u64)))
        .collect();
    let per_carrier = s.demand_cps / s.carriers as f64;
    let gap = |rng: &mut Rng, rate: f64| -(1.0 - rng.next_f64()).ln() / rate.max(1e-9);
    let mut next: Vec<f64> = rng.iter_mut().map(|r| gap(r, per_carrier)).collect();
    let mut offered_by_carrier = vec![0usize; s.carriers];
    let mut last = vec![(0u64, 0u64); s.carriers];
    let delay = s.bypass_delay.as_secs() as usize;
    let storm = s.storm_at.as_secs() as usize;
    let stagger = (s.row.as_secs() / 6) as usize;
    let deploy_at = s.deploy_at.as_secs() as usize;
    let deploy_end = s.deploy_end().as_secs() as usize;
    let drain_names: Vec<String> = s.drain.iter().map(|&i| node_name(i)).collect();
    let wall = |t: usize| WALL_EPOCH_MS + t as u64 * 1000;

    for t in 0..secs + settle {
        let t0 = epoch + Duration::from_secs(t as u64);
        for (c, &idx) in carriers.iter().enumerate() {
            if t == storm + c * stagger {
                net.actor::<Carrier>(idx)
                    .set_profile(RetryProfile::aggressive());
            }
        }
        if t == deploy_at {
            // Ask first; the deploy goes ahead whatever the answer.
            let budget = fleet.deploy_budget(wall(t), s.deploy_utilisation);
            let may_drain_first = fleet.may_drain(wall(t), &drain_names[0], s.deploy_utilisation);
            deploy = Some(DeployCheck {
                budget,
                may_drain_first,
                wanted: drain_names.clone(),
            });
            for &i in &s.drain {
                net.actor::<SimNode>(nodes[i]).engine.drain(t0);
                net.poke(nodes[i]);
            }
        }
        if t == deploy_end {
            for &i in &s.drain {
                net.actor::<SimNode>(nodes[i]).engine.undrain(t0);
                net.poke(nodes[i]);
            }
        }
        // Demand follows the bypass decision made `delay` seconds ago.
        let effective = t > delay && seconds[t - delay - 1].bypass;
        seconds[t].bypass_effective = effective;
        let rate = per_carrier * if effective { 1.0 - s.bypass_share } else { 1.0 };
        let mut arrivals = Vec::new();
        if t < secs {
            let end = (t + 1) as f64;
            for (c, at) in next.iter_mut().enumerate() {
                while *at < end {
                    arrivals.push((*at, c));
                    *at += gap(&mut rng[c], rate);
                }
            }
        }
        arrivals.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (at, c) in arrivals {
            net.run_until(epoch + Duration::from_secs_f64(at));
            let now = net.now();
            let n = offered_by_carrier[c] % s.numbers;
            offered_by_carrier[c] += 1;
            seconds[t].offered += 1;
            if !closed(n) {
                seconds[t].answerable += 1;
            }
            net.actor::<Carrier>(carriers[c]).start_call(now);
            net.poke(carriers[c]);
        }
        net.run_until(t0 + Duration::from_secs(1));
        let now = net.now();

        // The fleet view, once a second.
        let mut capacity = 0.0;
        let mut wait = Duration::ZERO;
        for (i, &idx) in nodes.iter().enumerate() {
            let node = net.actor::<SimNode>(idx);
            // Nothing here needs the engines' events; keep memory flat.
            node.events.clear();
            wait = wait.max(node.queue_wait(now));
            if !node.engine.is_draining() {
                capacity += s.real_cps;
            }
            let report = node.engine.node_report(now, &node_name(i), wall(t + 1));
            fleet.update(report).expect("node names are tokens");
        }
        let decision = fleet.evaluate(wall(t + 1));
        if let Some(on) = decision.changed {
            changes.push((t as u32 + 1, on));
        }
        let sec = &mut seconds[t];
        sec.bypass = decision.bypass;
        sec.capacity = capacity;
        sec.fleet_capacity = decision.serving_capacity;
        sec.fleet_demand = decision.demand;
        sec.queue_wait = wait;
        for (c, &idx) in carriers.iter().enumerate() {
            let carrier = net.actor::<Carrier>(idx);
            let st = carrier.stats();
            seconds[t].attempts += (st.attempts - last[c].0) as u32;
            seconds[t].rejected += (st.rejected - last[c].1) as u32;
            last[c] = (st.attempts, st.rejected);
            for (started, setup) in carrier.take_answers() {
                let k = started.saturating_duration_since(epoch).as_secs() as usize;
                if let Some(x) = seconds.get_mut(k) {
                    x.answered += 1;
                    x.setup_total += setup;
                }
            }
        }
    }
    seconds.truncate(secs);

    let per = s.row.as_secs().max(1) as usize;
    let rows = (0..secs.div_ceil(per))
        .map(|r| Row::of(&seconds, r * per, ((r + 1) * per).min(secs)))
        .collect();
    let mut totals = Totals::default();
    for &idx in &carriers {
        add_carrier(&mut totals.carrier, net.actor::<Carrier>(idx).stats());
    }
    let mut refused = [0u64; Refusal::ALL.len()];
    for &idx in &nodes {
        let node = net.actor::<SimNode>(idx);
        totals.dropped += node.dropped;
        let st = node.engine.stats();
        totals.admitted += st.calls_started;
        for (sum, r) in refused.iter_mut().zip(st.refused) {
            *sum += r;
        }
        totals.suppressed += st.trunks.iter().map(|t| t.suppressed).sum::<u64>();
        totals.superseded += st.trunks.iter().map(|t| t.superseded).sum::<u64>();
        totals.routing_fallbacks += st.route_fallbacks + st.host_bypassed;
        totals.routing_errors += st.host_route_errors;
        totals.failovers += st.failovers;
        totals.budget_exhausted += st.budget_exhausted;
    }
    totals.refused = Refusal::ALL
        .iter()
        .map(|r| (r.label(), refused[r.index()]))
        .filter(|(_, n)| *n > 0)
        .collect();
    Outcome {
        protections,
        seconds,
        rows,
        deploy: deploy.expect("the deploy starts within the run"),
        bypass_changes: changes,
        totals,
    }
}

fn add_carrier(sum: &mut CarrierStats, c: &CarrierStats) {
    sum.calls += c.calls;
    sum.attempts += c.attempts;
    sum.retransmissions += c.retransmissions;
    sum.answered += c.answered;
    sum.busy += c.busy;
    sum.got_503 += c.got_503;
    sum.failed += c.failed;
    sum.gave_up += c.gave_up;
    sum.setup_total += c.setup_total;
    sum.setup_max = sum.setup_max.max(c.setup_max);
    sum.rejected += c.rejected;
}

/// The minutes the goodput target judges: 60-second windows aligned to the deploy's
/// start, from the retry storm to the end of the offering (the deploy, the routing
/// errors and the recovery included); a window cut to under 30 s is left out. Whole
/// minutes in both scales: the engine's timers and the bypass delay do not scale, so a
/// 12-second row of the short replay would judge a transient a full minute absorbs.
pub fn judged_minutes(s: &Scenario, o: &Outcome) -> Vec<Row> {
    let (from, end) = (s.storm_at.as_secs(), s.duration.as_secs());
    let anchor = s.deploy_at.as_secs();
    let mut start = anchor - anchor.saturating_sub(from).div_ceil(60) * 60;
    let mut out = Vec::new();
    while start < end {
        let (a, b) = (start.max(from), (start + 60).min(end));
        if b >= a + 30 {
            out.push(Row::of(&o.seconds, a as usize, b as usize));
        }
        start += 60;
    }
    out
}

/// A target and whether the run met it.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// Short name: `goodput`, `deploy_budget`, `bypass_on`, `bypass_off`,
    /// `bypass_flap`.
    pub name: &'static str,
    /// Met or not.
    pub pass: bool,
    /// The numbers behind the verdict.
    pub detail: String,
}

/// Judges a run against the targets (they are meant for the protected run):
///
/// * `goodput`: in every judged minute ([`judged_minutes`]) answered calls are at least
///   95% of the smaller of answerable demand and the real serving capacity of the nodes
///   not draining;
/// * `deploy_budget`: the fleet's deploy budget said draining the deploy's nodes was
///   unsafe before the deploy started;
/// * `bypass_on`: the fleet bypass turned on within 10 s of capacity falling below
///   demand (the deploy's start);
/// * `bypass_off`: it turned off within 60 s of capacity returning (the deploy's end);
/// * `bypass_flap`: it changed exactly twice, on then off.
pub fn checks(s: &Scenario, o: &Outcome) -> Vec<Check> {
    let minutes = judged_minutes(s, o);
    let worst = minutes
        .iter()
        .min_by(|a, b| a.goodput_share().total_cmp(&b.goodput_share()));
    let (answered, servable) = minutes.iter().fold((0.0, 0.0), |(a, v), m| {
        (a + m.answered as f64, v + m.servable_rate() * m.secs())
    });
    let mut out = vec![Check {
        name: "goodput",
        pass: minutes.iter().all(|m| m.goodput_share() >= 0.95),
        detail: match worst {
            Some(w) => format!(
                "worst minute {:.1}% of min(answerable demand, real serving capacity), at {}; {:.1}% over {}..{}; need 95% in every minute",
                w.goodput_share() * 100.0,
                clock(w.start).trim(),
                100.0 * answered / servable.max(1e-9),
                clock(s.storm_at).trim(),
                clock(s.duration).trim(),
            ),
            None => "no minute to judge".into(),
        },
    }];
    let d = &o.deploy;
    out.push(Check {
        name: "deploy_budget",
        pass: !d.safe(),
        detail: format!(
            "{} before the deploy: {} of {} nodes may drain (measured capacity {:.0} calls/s, peak demand {:.0}, {:.0}% target utilisation)",
            if d.safe() {
                "said safe"
            } else {
                "flagged unsafe"
            },
            d.budget.max(),
            d.wanted.len(),
            d.budget.capacity,
            d.budget.peak_demand,
            d.budget.target_utilisation * 100.0,
        ),
    });
    let onset = s.deploy_at.as_secs() as u32;
    let recovery = s.deploy_end().as_secs() as u32;
    let on = o
        .bypass_changes
        .iter()
        .find(|(t, on)| *on && *t >= onset)
        .map(|(t, _)| t - onset);
    out.push(Check {
        name: "bypass_on",
        pass: on.is_some_and(|d| d <= 10),
        detail: match on {
            Some(d) => format!(
                "on {d} s after the deploy took capacity below demand (at {}); limit 10 s",
                clock(s.deploy_at).trim()
            ),
            None => "never turned on after capacity fell below demand".into(),
        },
    });
    let off = o
        .bypass_changes
        .iter()
        .find(|(t, on)| !*on && *t >= recovery)
        .map(|(t, _)| t - recovery);
    out.push(Check {
        name: "bypass_off",
        pass: on.is_some() && off.is_some_and(|d| d <= 60),
        detail: match (on, off) {
            (None, _) => "never turned on".into(),
            (_, Some(d)) => format!(
                "off {d} s after capacity returned (at {}); limit 60 s",
                clock(s.deploy_end()).trim()
            ),
            (_, None) => "still on at the end of the run".into(),
        },
    });
    let flips: Vec<String> = o
        .bypass_changes
        .iter()
        .map(|(t, on)| {
            format!(
                "{} at {}",
                if *on { "on" } else { "off" },
                clock(Duration::from_secs(*t as u64)).trim()
            )
        })
        .collect();
    out.push(Check {
        name: "bypass_flap",
        pass: o.bypass_changes.len() == 2 && o.bypass_changes[0].1 && !o.bypass_changes[1].1,
        detail: format!(
            "{} change(s): {}; need exactly on then off",
            o.bypass_changes.len(),
            if flips.is_empty() {
                "none".into()
            } else {
                flips.join(", ")
            }
        ),
    });
    out
}

/// A run in a few numbers (for the summary and for comparing runs).
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Answered share of servable calls from the storm to the end of the offering.
    pub share: f64,
    /// ... during the deploy.
    pub deploy_share: f64,
    /// ... after it (the recovery).
    pub after_share: f64,
    /// The worst judged minute: start and share.
    pub worst_minute: (Duration, f64),
    /// Servable calls not answered, from the storm on.
    pub lost: u64,
    /// Calls answered over the whole run.
    pub answered: u64,
    /// Distinct calls offered over the whole run.
    pub offered: u64,
    /// Highest re-attempt rate of a row (attempts per second beyond the first).
    pub peak_retries: f64,
    /// Longest CPU wait seen on any node.
    pub peak_wait: Duration,
    /// Mean setup time of calls answered during the deploy.
    pub deploy_setup: Duration,
}

impl Summary {
    /// Condenses a run.
    pub fn of(s: &Scenario, o: &Outcome) -> Summary {
        let secs = o.seconds.len();
        let at = |d: Duration| (d.as_secs() as usize).min(secs);
        let share = |r: &Row| {
            let servable = r.servable_rate() * r.secs();
            (r.answered as f64 / servable.max(1e-9), servable)
        };
        let storm = Row::of(&o.seconds, at(s.storm_at), secs);
        let deploy = Row::of(&o.seconds, at(s.deploy_at), at(s.deploy_end()));
        let after = Row::of(&o.seconds, at(s.deploy_end()), secs);
        let all = Row::of(&o.seconds, 0, secs);
        let worst = judged_minutes(s, o)
            .into_iter()
            .map(|m| (m.start, m.goodput_share()))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((Duration::ZERO, 1.0));
        let (storm_share, storm_servable) = share(&storm);
        Summary {
            share: storm_share,
            deploy_share: share(&deploy).0,
            after_share: share(&after).0,
            worst_minute: worst,
            lost: (storm_servable - storm.answered as f64).max(0.0).round() as u64,
            answered: all.answered,
            offered: all.offered,
            peak_retries: o.rows.iter().map(Row::retry_rate).fold(0.0, f64::max),
            peak_wait: all.queue_wait,
            deploy_setup: deploy.setup_mean(),
        }
    }
}
