//! A deterministic discrete-event network for drills and replays: actors exchange
//! datagrams with a fixed latency in virtual time, and a simulated node host puts a
//! real [`Engine`] behind a CPU model whose real capacity may differ from what the
//! node is configured for.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Actor, Outgoing};
use crate::engine::{CallHandle, Engine, Event, RouteDecision};
use crate::rng::Rng;
use crate::route::Target;

/// A datagram in flight: delivery time, from, to, bytes.
type InFlight = (Instant, SocketAddr, SocketAddr, Vec<u8>);

/// Virtual network: delivers each datagram after `latency`, runs actors' timers in
/// time order (a delivery before a timer due at the same instant, timers due together
/// in the order actors were added). Same inputs, same run.
#[derive(Debug)]
pub struct Network {
    now: Instant,
    latency: Duration,
    actors: Vec<(SocketAddr, Box<dyn ActorDebug>)>,
    by_addr: HashMap<SocketAddr, usize>,
    /// Each actor's `poll_timeout`, asked again only after the actor may have changed
    /// (it handled something, or the caller borrowed it with `actor`).
    timeouts: Vec<Option<Instant>>,
    stale: Vec<bool>,
    /// The earliest of `timeouts` (earliest instant, then lowest index), when known.
    earliest: Option<Option<(Instant, usize)>>,
    /// In flight, in delivery order: with one fixed latency, send order is delivery
    /// order.
    queue: VecDeque<InFlight>,
    /// Datagrams to addresses with no actor.
    pub undeliverable: u64,
}

/// An actor that can also be printed (for `Debug` on the network).
pub trait ActorDebug: Actor + std::fmt::Debug + std::any::Any {
    /// As `Any`, to get the concrete actor back.
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
}

impl<T: Actor + std::fmt::Debug + std::any::Any> ActorDebug for T {
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

impl Network {
    /// An empty network whose clock starts at `start`.
    pub fn new(start: Instant, latency: Duration) -> Network {
        Network {
            now: start,
            latency,
            actors: Vec::new(),
            by_addr: HashMap::new(),
            timeouts: Vec::new(),
            stale: Vec::new(),
            earliest: None,
            queue: VecDeque::new(),
            undeliverable: 0,
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Adds an actor at `addr`; returns its index.
    pub fn add(&mut self, addr: SocketAddr, actor: impl ActorDebug) -> usize {
        self.actors.push((addr, Box::new(actor)));
        let i = self.actors.len() - 1;
        self.by_addr.entry(addr).or_insert(i);
        self.timeouts.push(None);
        self.stale.push(true);
        i
    }

    /// The actor at `index`, as its concrete type.
    pub fn actor<T: 'static>(&mut self, index: usize) -> &mut T {
        // The caller may change it: ask for its timeout again before the next step.
        self.stale[index] = true;
        self.actors[index]
            .1
            .as_any_mut()
            .downcast_mut::<T>()
            .expect("actor type")
    }

    fn collect(&mut self, i: usize) {
        while let Some(o) = self.actors[i].1.poll_transmit() {
            let at = self.now + self.latency;
            self.queue.push_back((at, o.from, o.to, o.bytes));
        }
        self.refresh(i);
    }

    /// Asks actor `i` for its timeout again and keeps `earliest` right.
    fn refresh(&mut self, i: usize) {
        let t = self.actors[i].1.poll_timeout();
        self.timeouts[i] = t;
        self.stale[i] = false;
        match (self.earliest, t) {
            // Unknown already, or this actor held the earliest: find it again later.
            (None, _) => {}
            (Some(Some((_, j))), _) if j == i => self.earliest = None,
            (Some(best), Some(t)) if best.is_none_or(|b| (t, i) < b) => {
                self.earliest = Some(Some((t, i)));
            }
            _ => {}
        }
    }

    fn earliest_timer(&mut self) -> Option<(Instant, usize)> {
        if let Some(e) = self.earliest {
            return e;
        }
        let e = self
            .timeouts
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| (t, i)))
            .min();
        self.earliest = Some(e);
        e
    }

    /// Lets actor `index` act now (after the caller changed it) and queues its output.
    pub fn poke(&mut self, index: usize) {
        self.actors[index].1.handle_timeout(self.now);
        self.collect(index);
    }

    /// Runs every delivery and timer up to and including `until`.
    pub fn run_until(&mut self, until: Instant) {
        for i in 0..self.actors.len() {
            if self.stale[i] {
                self.refresh(i);
            }
        }
        loop {
            let next_delivery = self.queue.front().map(|d| d.0);
            let next_timer = self.earliest_timer();
            let next = match (next_delivery, next_timer) {
                (Some(d), Some((t, _))) => d.min(t),
                (Some(d), None) => d,
                (None, Some((t, _))) => t,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if next_delivery == Some(next) {
                let Some((_, from, to, bytes)) = self.queue.pop_front() else {
                    break;
                };
                match self.by_addr.get(&to).copied() {
                    Some(i) => {
                        self.actors[i]
                            .1
                            .handle_datagram_owned(self.now, from, bytes);
                        self.collect(i);
                    }
                    None => self.undeliverable += 1,
                }
            } else if let Some((_, i)) = next_timer {
                self.actors[i].1.handle_timeout(self.now);
                self.collect(i);
            }
        }
        self.now = self.now.max(until);
    }
}

/// How the simulated routing service behaves.
#[derive(Clone, Debug)]
pub struct RoutingService {
    /// Where a call goes when it answers, unless `numbers` names its dialled number.
    pub target: Target,
    /// Targets (in order) for particular dialled numbers, keyed as the engine reports
    /// them in `Event::RouteRequest` (normalised E.164 digits without `+`).
    pub numbers: HashMap<String, Vec<Target>>,
    /// How long it takes to answer.
    pub delay: Duration,
    /// Windows (from the start of the run) in which it fails this share of requests
    /// with a 500.
    pub errors: Vec<(Duration, Duration, f64)>,
}

/// A simulated host running a real engine behind a CPU: each datagram costs CPU time
/// (an admitted new call `admit_cost`, a refused one `reject_cost`, anything else
/// `other_cost`, all in units where the CPU does `capacity` units per second); work
/// queues when the CPU is busy, so an overloaded node answers late, as a real one does.
#[derive(Debug)]
pub struct SimNode {
    /// The engine.
    pub engine: Engine,
    local: SocketAddr,
    start: Instant,
    /// Real capacity: admitted calls per second the CPU can process.
    pub capacity: f64,
    /// CPU cost of an admitted call, a refused one, and any other datagram.
    pub costs: (f64, f64, f64),
    /// Whether the host reports its load to the engine once a second.
    pub report_load: bool,
    /// Bytes of datagrams that may wait for the CPU (the socket receive buffer); a
    /// datagram that does not fit is dropped, as the kernel drops it. `None`: no limit.
    pub receive_buffer: Option<usize>,
    /// Datagrams dropped because the receive buffer was full.
    pub dropped: u64,
    /// The utilisation measured at the last once-a-second report (reported to the
    /// engine when `report_load` is set).
    pub utilisation: f64,
    queued_bytes: usize,
    routing: Option<RoutingService>,
    rng: Rng,
    /// Datagrams waiting for the CPU: arrival, source, bytes.
    queue: VecDeque<(Instant, SocketAddr, Vec<u8>)>,
    busy_until: Instant,
    busy_in_second: f64,
    next_report: Instant,
    route_answers: BinaryHeap<Reverse<(Instant, u64, bool)>>,
    /// Dialled number of each route request awaiting its answer.
    route_numbers: HashMap<u64, String>,
    /// Events the engine emitted, with when.
    pub events: Vec<(Instant, Event)>,
    /// Work queued but not yet processed, in seconds of CPU.
    pub backlog: f64,
}

impl SimNode {
    /// A node at `local` with `capacity` admitted calls per second of real CPU.
    pub fn new(engine: Engine, local: SocketAddr, start: Instant, capacity: f64) -> SimNode {
        SimNode {
            engine,
            local,
            start,
            capacity,
            costs: (1.0, 0.05, 0.02),
            report_load: true,
            receive_buffer: None,
            dropped: 0,
            utilisation: 0.0,
            queued_bytes: 0,
            routing: None,
            rng: Rng::new(local.port() as u64),
            queue: VecDeque::new(),
            busy_until: start,
            busy_in_second: 0.0,
            next_report: start + Duration::from_secs(1),
            route_answers: BinaryHeap::new(),
            route_numbers: HashMap::new(),
            events: Vec::new(),
            backlog: 0.0,
        }
    }

    /// Answers the engine's route requests with this service.
    pub fn with_routing(mut self, routing: RoutingService) -> Self {
        self.routing = Some(routing);
        self
    }

    /// Seeds the node's own random draws (the routing service's errors); by default
    /// they are seeded from the node's port.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = Rng::new(seed);
        self
    }

    /// The node's address.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// Datagrams waiting for the CPU.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// How long the oldest datagram waiting for the CPU has waited at `now` (what a
    /// new datagram's wait is, roughly): zero when nothing waits.
    pub fn queue_wait(&self, now: Instant) -> Duration {
        self.queue.front().map_or(Duration::ZERO, |(at, ..)| {
            now.saturating_duration_since(*at)
        })
    }

    fn process(&mut self, now: Instant) {
        while self.busy_until <= now {
            let Some((_, from, bytes)) = self.queue.pop_front() else {
                break;
            };
            self.queued_bytes -= bytes.len();
            let at = self.busy_until.max(now);
            let before = self.engine.work_counters();
            self.engine.handle_datagram(at, from, self.local, &bytes);
            let after = self.engine.work_counters();
            let cost = cost_of(before, after, self.costs);
            let secs = cost / self.capacity.max(1e-9);
            self.busy_until = at + Duration::from_secs_f64(secs);
            self.busy_in_second += secs;
            self.backlog = (self.backlog - secs).max(0.0);
            self.drain_events(at);
        }
    }

    fn drain_events(&mut self, now: Instant) {
        while let Some(e) = self.engine.poll_event() {
            if let (Event::RouteRequest { call, dialled, .. }, Some(r)) = (&e, &self.routing) {
                let since = now.saturating_duration_since(self.start);
                let rate = r
                    .errors
                    .iter()
                    .find(|(a, b, _)| (*a..*b).contains(&since))
                    .map_or(0.0, |w| w.2);
                let ok = self.rng.next_f64() >= rate;
                self.route_answers
                    .push(Reverse((now + r.delay, call.0, ok)));
                if !r.numbers.is_empty() {
                    self.route_numbers.insert(call.0, dialled.clone());
                }
            }
            self.events.push((now, e));
        }
    }
}

/// CPU units a datagram cost, from what it changed in the engine's work counters.
fn cost_of(before: (u64, u64), after: (u64, u64), (admit, reject, other): (f64, f64, f64)) -> f64 {
    if after.0 > before.0 {
        admit
    } else if after.1 > before.1 {
        reject
    } else {
        other
    }
}

impl Actor for SimNode {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.handle_datagram_owned(now, from, bytes.to_vec());
    }

    fn handle_datagram_owned(&mut self, now: Instant, from: SocketAddr, bytes: Vec<u8>) {
        if self
            .receive_buffer
            .is_some_and(|limit| self.queued_bytes + bytes.len() > limit)
        {
            self.dropped += 1;
            return;
        }
        self.queued_bytes += bytes.len();
        self.queue.push_back((now, from, bytes));
        self.backlog += self.costs.2 / self.capacity.max(1e-9);
        self.process(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.process(now);
        while let Some(Reverse((t, call, ok))) = self.route_answers.peek().copied() {
            if t > now {
                break;
            }
            self.route_answers.pop();
            let number = self.route_numbers.remove(&call);
            let decision = match (&self.routing, ok) {
                (Some(r), true) => RouteDecision::Targets(
                    number
                        .and_then(|n| r.numbers.get(&n).cloned())
                        .unwrap_or_else(|| vec![r.target.clone()]),
                ),
                _ => RouteDecision::Reject(500),
            };
            let _ = self.engine.route(now, CallHandle(call), decision);
        }
        if now >= self.next_report {
            // Busy share of the last second, plus the rest of the datagram in hand. The
            // queue behind it is not counted: with a backlog term the controller cut
            // deeper than the overload in this replay (its retries then refilled the
            // queue), and goodput fell further.
            let waiting = self.busy_until.saturating_duration_since(now).as_secs_f64();
            let utilisation = self.busy_in_second.min(1.0) + waiting;
            self.utilisation = utilisation;
            if self.report_load {
                self.engine.report_load(now, utilisation);
            }
            self.busy_in_second = 0.0;
            self.next_report = now + Duration::from_secs(1);
        }
        self.engine.handle_timeout(now);
        self.drain_events(now);
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        let cpu = (!self.queue.is_empty()).then_some(self.busy_until);
        let route = self.route_answers.peek().map(|Reverse((t, ..))| *t);
        let engine = self.engine.poll_timeout();
        [cpu, route, engine, Some(self.next_report)]
            .into_iter()
            .flatten()
            .min()
    }

    fn poll_transmit(&mut self) -> Option<Outgoing> {
        let t = self.engine.poll_transmit()?;
        Some(Outgoing {
            to: t.destination,
            from: t.source,
            bytes: t.payload.to_vec(),
        })
    }
}
