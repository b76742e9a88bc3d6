//! Engines on two threads sharing one `NodeLedger`: node-wide concurrency and rate
//! limits hold across them, drain is node-wide, every slot comes back, and an engine
//! cannot attach to a ledger built for other admission settings.
//!
//! Each thread drives its own engine in virtual time (`Instant`s derived from one
//! base); only the interleaving of the two threads is left to the scheduler, and every
//! assertion holds for any interleaving.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use ringfence::guard::Refusal;
use ringfence::{Config, Engine, Event, NodeLedger};
use support::adm::*;
use support::*;

/// One engine driven by one thread, on the shared virtual clock.
struct Node {
    engine: Engine,
    base: Instant,
    /// Virtual time since `base`.
    now: Duration,
    events: Vec<Event>,
}

impl Node {
    fn new(config: &Config, base: Instant, ledger: &Arc<NodeLedger>) -> Node {
        Node {
            engine: Engine::with_ledger(config.clone(), base, ledger.clone()).expect("same config"),
            base,
            now: Duration::ZERO,
            events: Vec::new(),
        }
    }

    fn collect(&mut self) -> Vec<Sent> {
        let mut out = Vec::new();
        while let Some(t) = self.engine.poll_transmit() {
            out.push(Sent {
                to: t.destination,
                from: t.source,
                bytes: t.payload.to_vec(),
                at: self.now,
            });
        }
        while let Some(e) = self.engine.poll_event() {
            self.events.push(e);
        }
        out
    }

    fn send(&mut self, from: &str, bytes: &[u8]) -> Vec<Sent> {
        self.engine
            .handle_datagram(self.base + self.now, addr(from), addr(NODE), bytes);
        self.collect()
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.engine.handle_timeout(self.base + self.now);
        self.collect();
    }
}

/// A small deterministic generator per thread (which calls to end).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn node_concurrency_holds_across_engines_on_two_threads_and_every_slot_returns() {
    const MAX: u32 = 40;
    const STEPS: u32 = 600;
    let mut cfg = routed(&[DEST]);
    cfg.admission.max_calls = Some(MAX);
    cfg.admission.shed_watermark = 1.0;
    let base = Instant::now();
    let ledger = NodeLedger::new(&cfg, base).unwrap();
    // Calls the threads saw admitted and not yet ended: incremented after the engine
    // admits, decremented before the call is ended, so it never runs ahead of the
    // engines' own count.
    let live = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let start = Arc::new(Barrier::new(2));
    let threads: Vec<_> = (0..2u32)
        .map(|id| {
            let (cfg, ledger) = (cfg.clone(), ledger.clone());
            let (live, peak, start) = (live.clone(), peak.clone(), start.clone());
            thread::spawn(move || {
                let mut node = Node::new(&cfg, base, &ledger);
                let mut rng = Lcg(0x5eed + id as u64);
                let mut held: Vec<Sent> = Vec::new();
                start.wait();
                for i in 0..STEPS {
                    node.advance(Duration::from_millis(1));
                    if rng.next() % 3 == 0 && !held.is_empty() {
                        let fwd = held.swap_remove(rng.next() as usize % held.len());
                        live.fetch_sub(1, Ordering::SeqCst);
                        node.send(DEST, &answer(&fwd, 486, Some("busy")));
                    } else {
                        let out = node.send(CARRIER, &call(id * 100_000 + i).bytes());
                        if is_admitted(&out) {
                            let now_live = live.fetch_add(1, Ordering::SeqCst) + 1;
                            assert!(now_live <= MAX, "{now_live} calls admitted node-wide");
                            peak.fetch_max(now_live, Ordering::SeqCst);
                            let fwd = one_to(&out, DEST);
                            node.send(DEST, &answer(&fwd, 180, Some("ring")));
                            held.push(fwd);
                        } else {
                            let r = refusal(&out).expect("refused");
                            assert_eq!(r.status(), Some(503));
                        }
                    }
                    assert!(ledger.active_calls() <= MAX);
                    assert_eq!(node.engine.active_calls(), held.len(), "thread {id}");
                }
                (node, held)
            })
        })
        .collect();
    let mut nodes: Vec<(Node, Vec<Sent>)> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();

    assert_eq!(peak.load(Ordering::SeqCst), MAX, "the limit was reached");
    let engines_active: usize = nodes.iter().map(|(n, _)| n.engine.active_calls()).sum();
    assert_eq!(ledger.active_calls() as usize, engines_active);
    assert_eq!(live.load(Ordering::SeqCst) as usize, engines_active);
    let mut refused = 0;
    for (n, _) in &nodes {
        let s = n.engine.stats();
        assert_eq!(s.node_active_calls, ledger.active_calls() as u64);
        refused += s.refused[Refusal::NodeCalls.index()];
    }
    assert!(refused > 0, "the engines competed for the last slots");

    // Every call ends: the ledger is back to zero.
    for (n, held) in &mut nodes {
        for fwd in held.drain(..) {
            n.send(DEST, &answer(&fwd, 486, Some("busy")));
        }
        assert_eq!(n.engine.active_calls(), 0);
    }
    assert_eq!(ledger.active_calls(), 0);
    assert_eq!(ledger.trunk_active_calls(0), 0);
    assert_eq!(ledger.target_active_calls(addr(DEST)), 0);
}

#[test]
fn the_node_rate_is_shared_by_engines_on_two_threads() {
    let mut cfg = Config::default(); // no route: admitted calls end at once
    cfg.admission.calls_per_second = Some(10.0);
    cfg.admission.burst = 5;
    cfg.admission.shed_watermark = 1.0;
    let base = Instant::now();
    let ledger = NodeLedger::new(&cfg, base).unwrap();
    let admitted = Arc::new(AtomicU32::new(0));
    let barrier = Arc::new(Barrier::new(2));
    let instants = [
        Duration::ZERO,
        Duration::from_secs(1),
        Duration::from_secs(10),
    ];
    let threads: Vec<_> = (0..2u32)
        .map(|id| {
            let (cfg, ledger) = (cfg.clone(), ledger.clone());
            let (admitted, barrier) = (admitted.clone(), barrier.clone());
            thread::spawn(move || {
                let mut node = Node::new(&cfg, base, &ledger);
                let mut counts = Vec::new();
                for (k, at) in instants.iter().enumerate() {
                    node.advance(*at - node.now);
                    barrier.wait();
                    for i in 0..100 {
                        let n = id * 100_000 + k as u32 * 1000 + i;
                        if is_admitted(&node.send(CARRIER, &call(n).bytes())) {
                            admitted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    barrier.wait();
                    counts.push(admitted.load(Ordering::SeqCst));
                    barrier.wait();
                }
                counts
            })
        })
        .collect();
    let counts: Vec<Vec<u32>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    // 200 calls offered at each instant: the burst tolerance plus one, node-wide (two
    // engines with a ledger each would admit twice as many).
    assert_eq!(counts[0], [6, 12, 18]);
    assert_eq!(counts[1], counts[0]);
    assert_eq!(ledger.active_calls(), 0);
}

#[test]
fn drain_and_undrain_act_on_the_whole_node() {
    let cfg = routed(&[DEST]);
    let base = Instant::now();
    let ledger = NodeLedger::new(&cfg, base).unwrap();
    let mut a = Node::new(&cfg, base, &ledger);
    let mut b = Node::new(&cfg, base, &ledger);
    let held = call(1);
    let fwd = one_to(&b.send(CARRIER, &held.bytes()), DEST);
    a.engine.drain(base);
    assert!(b.engine.is_draining() && ledger.is_draining());
    let r = one(b.send(CARRIER, &call(2).bytes()));
    assert_eq!(r.status(), Some(503));
    assert_eq!(b.engine.stats().refused[Refusal::Draining.index()], 1);
    // b's call carries on and ends; each engine reports its own calls drained.
    b.send(DEST, &answer(&fwd, 200, Some("t")));
    b.send(CARRIER, &caller_ack(&held, "t").bytes());
    assert!(!b.events.iter().any(|e| matches!(e, Event::Drained)));
    b.send(CARRIER, &caller_bye(&held, "t").bytes());
    assert!(b.events.iter().any(|e| matches!(e, Event::Drained)));
    assert_eq!(ledger.active_calls(), 0);
    b.engine.undrain(base);
    assert!(!a.engine.is_draining());
    assert!(is_admitted(&a.send(CARRIER, &call(3).bytes())));
}

#[test]
fn an_engine_cannot_attach_to_a_ledger_built_for_other_admission_settings() {
    let cfg = routed(&[DEST]);
    let base = Instant::now();
    let ledger = NodeLedger::new(&cfg, base).unwrap();
    let mut other = cfg.clone();
    other.admission.max_calls = Some(10);
    let err = Engine::with_ledger(other, base, ledger.clone()).unwrap_err();
    assert_eq!(err.field, "admission");
    let mut other = cfg.clone();
    other.admission.trunks[0].burst += 1;
    assert!(Engine::with_ledger(other, base, ledger.clone()).is_err());
    // Settings outside admission may differ between the engines of one node.
    let mut other = cfg.clone();
    other.server_name = "core-2".into();
    assert!(Engine::with_ledger(other, base, ledger.clone()).is_ok());
    // An invalid config is refused before the ledger is consulted.
    let mut bad = cfg.clone();
    bad.timers.t1 = Duration::ZERO;
    assert_eq!(
        Engine::with_ledger(bad, base, ledger).unwrap_err().field,
        "timers.t1"
    );
}
