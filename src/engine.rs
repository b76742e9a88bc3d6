//! The engine: the one façade a host drives. It owns every layer's state, dispatches
//! each input to the layer that owns it, and collects their outputs. The protocol
//! logic lives with the layers (`transaction`, `proxy`, `dialog`, `route`).

use std::fmt::Write as _;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, ConfigError};
use crate::dialog::DialogTable;
use crate::guard::dedup::{Dedup, ExpiringMap, RetryWindow};
use crate::guard::{
    Admission, BreakerState, Breakers, NodeLedger, Refusal, RefusalMemo, RetryBudget, TrunkId, oc,
};
use crate::hash::digest;
use crate::health::{BypassSignal, Health, HealthState, Inputs, NodeReport, Override};
use crate::output::{Output, Transmit};
use crate::proxy::Call;
use crate::rng::Rng;
use crate::route::{HostHealth, LastKnownGood, RoutingTable, Target};
use crate::slab::{Key, Slab};
use crate::stats::Stats;
use crate::status::reason;
use crate::time::{Clock, Time};
use crate::timer::{Owner, TimerQueue};
use crate::transaction::{
    Class, ClientEntry, ClientFired, ClientOutcome, ClientState, ClientTx, RespondError, ServerEnd,
    ServerFired, ServerState, ServerTx, Table,
};
use crate::wire::{self, Message, Method, Reply, Transport, Via};

/// Identifies a call in events and in [`Engine::route`]. Stale once the call's setup
/// is over; the engine then answers [`CallError::UnknownCall`]. Never 0: a host may use
/// 0 for "no call".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallHandle(pub u64);

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The caller got this non-2xx final (no route, busy, every target failed...).
    Rejected {
        /// The status sent upstream.
        status: u16,
    },
    /// The caller cancelled before an answer.
    Cancelled,
    /// Nobody answered before the ring timeout (Timer C).
    NoAnswer,
    /// A BYE ended the answered call.
    Hangup {
        /// Whether the caller (not the callee) sent the BYE.
        by_caller: bool,
    },
    /// The call reached the maximum duration.
    MaxDuration,
    /// A 2xx was relayed but its ACK never came.
    NoAck,
    /// The carrier re-attempted the call (new Call-ID) while this attempt was still
    /// ringing; the new attempt replaced it.
    Superseded,
}

/// Something the host should know about or act on.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The node was draining and its last call ended: it can be taken out of service.
    Drained,
    /// A destination's circuit breaker changed state.
    #[non_exhaustive]
    BreakerChanged {
        /// The destination.
        target: SocketAddr,
        /// Its new state.
        state: BreakerState,
    },
    /// The host's routing service is failing (or recovered): while degraded the engine
    /// routes from its last-known-good cache without asking.
    #[non_exhaustive]
    RoutingDegraded {
        /// Whether it is degraded now.
        degraded: bool,
    },
    /// The node's health state changed.
    #[non_exhaustive]
    HealthChanged {
        /// The previous state.
        from: HealthState,
        /// The new state.
        to: HealthState,
        /// The score at the change.
        score: f64,
        /// Why.
        reason: crate::health::Reason,
    },
    /// Load feedback changed the rate this node admits.
    #[non_exhaustive]
    CapacityChanged {
        /// New calls per second now admitted; `None` when no longer limited by feedback.
        calls_per_second: Option<f64>,
        /// The admitted rate measured when the change was made.
        measured: Option<f64>,
    },
    /// The host decides where this call goes: answer with [`Engine::route`] before the
    /// configured deadline, or the engine falls back to the number's last working
    /// route (else rejects).
    #[non_exhaustive]
    RouteRequest {
        /// The call.
        call: CallHandle,
        /// Dialled number, normalised to E.164 digits when possible.
        dialled: String,
        /// Calling number, normalised when possible (empty when withheld).
        caller: String,
    },
    /// A new call was accepted for routing.
    #[non_exhaustive]
    CallStarted {
        /// The call.
        call: CallHandle,
        /// Dialled number.
        dialled: String,
        /// Calling number.
        caller: String,
    },
    /// The call was answered (a 2xx was relayed).
    #[non_exhaustive]
    CallAnswered {
        /// The call.
        call: CallHandle,
        /// Time from INVITE to answer.
        setup: Duration,
    },
    /// The call is over.
    #[non_exhaustive]
    CallEnded {
        /// The call.
        call: CallHandle,
        /// Why.
        reason: EndReason,
        /// Talk time for answered calls; time since the INVITE otherwise.
        duration: Duration,
    },
}

/// The host's answer to a [`Event::RouteRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteDecision {
    /// Try these targets in order of priority (then weight).
    Targets(Vec<Target>),
    /// Reject the call with this status (400..=699; 503 is turned into the proxy's
    /// `downstream_503_status`).
    Reject(u16),
}

/// Host misuse of a call handle or decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No call has this handle: it ended (timed out, cancelled, answered) or never
    /// existed. Drop the decision.
    #[error("no such call: it ended or the handle is stale")]
    UnknownCall,
    /// The call is not waiting for a route (it was routed already).
    #[error("the call is not waiting for a route")]
    NotRouting,
    /// A reject status outside 400..=699.
    #[error("reject status must be 400..=699")]
    InvalidStatus,
    /// A target list that is empty.
    #[error("a route needs at least one target")]
    NoTargets,
}

/// Who a transaction belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TxOwner {
    /// Answered by the engine itself.
    Uas,
    /// The upstream INVITE of a call being set up.
    Call(Key),
    /// A downstream INVITE of a call. `abandoned`: upstream already has its final, so a
    /// provisional gets CANCELled and a 2xx gets ACK and BYE.
    Branch {
        call: Key,
        server: Key,
        abandoned: bool,
    },
    /// An upstream in-dialog request being relayed by `client`.
    RelayServer { client: Option<Key> },
    /// The downstream leg of a relayed in-dialog request.
    RelayClient { server: Key },
    /// A request the engine originated (CANCEL, BYE): responses are absorbed.
    Own,
    /// An OPTIONS probe of a half-open destination.
    Probe(SocketAddr),
}

/// Methods the engine handles; listed in `Allow` on 405/501 and OPTIONS answers.
pub(crate) const ALLOW: &[u8] =
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK, REFER, NOTIFY\r\n";

/// A sans-IO SIP call-routing engine: a stateful proxy with dialogs, driven by the host.
///
/// ```
/// use std::time::Instant;
/// use ringfence::{Config, Engine};
///
/// let start = Instant::now();
/// let mut engine = Engine::new(Config::default(), start).unwrap();
/// let options = b"OPTIONS sip:node@192.0.2.10 SIP/2.0\r\n\
///     Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKprobe1\r\n\
///     From: <sip:monitor@192.0.2.1>;tag=a1\r\n\
///     To: <sip:node@192.0.2.10>\r\n\
///     Call-ID: probe-1@192.0.2.1\r\n\
///     CSeq: 1 OPTIONS\r\n\
///     Max-Forwards: 70\r\n\
///     Content-Length: 0\r\n\r\n";
/// let carrier = "192.0.2.1:5060".parse().unwrap();
/// let local = "192.0.2.10:5060".parse().unwrap();
/// engine.handle_datagram(start, carrier, local, options);
/// let out = engine.poll_transmit().expect("an answer");
/// assert_eq!(out.destination, carrier);
/// assert!(out.payload.starts_with(b"SIP/2.0 200 OK\r\n"));
/// ```
#[derive(Debug)]
pub struct Engine {
    pub(crate) cfg: Config,
    clock: Clock,
    pub(crate) now: Time,
    pub(crate) txs: Table<TxOwner>,
    pub(crate) calls: Slab<Call>,
    pub(crate) dialogs: DialogTable,
    pub(crate) routes: Arc<RoutingTable>,
    pub(crate) lkg: LastKnownGood,
    pub(crate) admission: Admission,
    pub(crate) dedup: Dedup,
    /// Statelessly refused INVITEs, so their retransmissions get the same answer.
    pub(crate) refused: ExpiringMap<RefusalMemo>,
    /// Attempts and distinct calls per trunk (the retry factor).
    pub(crate) retry_windows: Vec<RetryWindow>,
    pub(crate) budget: RetryBudget,
    pub(crate) breakers: Breakers,
    pub(crate) host_health: HostHealth,
    /// When the guard's own timer (breaker cool-downs) is scheduled.
    guard_scheduled: Option<Time>,
    /// The local address traffic last arrived on (probes go out from it).
    pub(crate) last_local: Option<SocketAddr>,
    /// The trunk of the request being handled, once classified.
    pub(crate) current_trunk: Option<TrunkId>,
    pub(crate) health: Health,
    /// When health was last evaluated (it is evaluated lazily, at most every 100 ms).
    health_at: Option<Time>,
    /// When the health timer is scheduled (only while health is unsettled).
    health_scheduled: Option<Time>,
    /// The host's last load report.
    reported_load: f64,
    /// Whether `Event::Drained` was emitted for the current drain.
    drained_reported: bool,
    pub(crate) timers: TimerQueue,
    pub(crate) out: Output<Event>,
    pub(crate) stats: Stats,
    pub(crate) rng: Rng,
    /// Scratch buffers, reused so steady state allocates little.
    pub(crate) buf: Vec<u8>,
    pub(crate) buf2: Vec<u8>,
    pub(crate) extra: Vec<u8>,
}

/// Where responses to a request go (RFC 3261 §18.2.2 with RFC 3581 `rport`), and the
/// `received` value to record on the top Via when the source differs from sent-by.
pub(crate) fn response_target(via: &Via<'_>, remote: SocketAddr) -> (SocketAddr, Option<IpAddr>) {
    let sent_by_ip = std::str::from_utf8(via.host)
        .ok()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .and_then(|h| h.parse::<IpAddr>().ok());
    let received = (sent_by_ip != Some(remote.ip()) || via.rport.is_some()).then(|| remote.ip());
    let port = if via.rport.is_some() {
        remote.port()
    } else {
        via.port
            .unwrap_or(if via.transport_kind() == Transport::Tls {
                5061
            } else {
                5060
            })
    };
    (SocketAddr::new(remote.ip(), port), received)
}

/// Short text (an address, a header line) formatted without allocating. 160 bytes
/// hold the longest line the engine formats (a Via with an IPv6 sent-by).
pub(crate) struct SmallText {
    buf: [u8; 160],
    len: usize,
}

impl Default for SmallText {
    fn default() -> Self {
        SmallText {
            buf: [0; 160],
            len: 0,
        }
    }
}

impl SmallText {
    pub(crate) fn new(v: impl std::fmt::Display) -> Self {
        let mut t = SmallText::default();
        let r = write!(t, "{v}");
        debug_assert!(r.is_ok(), "SmallText overflow");
        t
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Appends bytes; what does not fit is cut (callers size their lines well below
    /// the capacity, as `new` does).
    pub(crate) fn push(&mut self, b: &[u8]) -> &mut Self {
        let n = b.len().min(self.buf.len() - self.len);
        debug_assert!(n == b.len(), "SmallText overflow");
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
        self
    }

    /// Appends an IP address as text: IPv4 by hand (the hot case, no formatter),
    /// IPv6 through `Display`.
    pub(crate) fn push_ip(&mut self, ip: IpAddr) -> &mut Self {
        match ip {
            IpAddr::V4(v4) => {
                for (i, o) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.push(b".");
                    }
                    let mut d = [0u8; 3];
                    let mut k = 3;
                    let mut o = o;
                    loop {
                        k -= 1;
                        d[k] = b'0' + o % 10;
                        o /= 10;
                        if o == 0 {
                            break;
                        }
                    }
                    self.push(&d[k..]);
                }
            }
            IpAddr::V6(v6) => {
                let _ = write!(self, "{v6}");
            }
        }
        self
    }

    /// Appends `host:port` as `SocketAddr`'s `Display` writes it (IPv6 bracketed).
    pub(crate) fn push_addr(&mut self, addr: SocketAddr) -> &mut Self {
        match addr {
            SocketAddr::V4(a) => self.push_ip(IpAddr::V4(*a.ip())),
            SocketAddr::V6(a) => self.push(b"[").push_ip(IpAddr::V6(*a.ip())).push(b"]"),
        };
        self.push(b":").push_u32(addr.port() as u32)
    }

    /// Appends a number in decimal.
    pub(crate) fn push_u32(&mut self, mut n: u32) -> &mut Self {
        let mut d = [0u8; 10];
        let mut k = d.len();
        loop {
            k -= 1;
            d[k] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&d[k..])
    }
}

impl std::fmt::Write for SmallText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl Engine {
    /// Creates an engine whose clock starts at `now`, with a capacity ledger of its
    /// own. Fails if the config is invalid.
    pub fn new(config: Config, now: Instant) -> Result<Engine, ConfigError> {
        let ledger = NodeLedger::new(&config, now)?;
        Engine::with_ledger(config, now, ledger)
    }

    /// Creates an engine that shares `ledger` (concurrency, rates, drain, load
    /// feedback) with the other engines of the node, one per core. The ledger must have
    /// been built from the same admission settings.
    pub fn with_ledger(
        config: Config,
        now: Instant,
        ledger: Arc<NodeLedger>,
    ) -> Result<Engine, ConfigError> {
        config.validate()?;
        ledger.check_config(&config)?;
        let routes = Arc::new(config.routing_table()?);
        let mut stats = Stats::default();
        stats.trunks = config
            .admission
            .trunks
            .iter()
            .map(|t| crate::stats::TrunkStats {
                name: t.name.clone(),
                ..Default::default()
            })
            .collect();
        Ok(Engine {
            admission: Admission::new(&config.admission, ledger, &config.routing.plan),
            dedup: Dedup::new(config.retry.dedup_capacity, config.seed),
            refused: ExpiringMap::new(config.retry.dedup_capacity),
            retry_windows: config
                .admission
                .trunks
                .iter()
                .map(|_| RetryWindow::new(60))
                .collect(),
            budget: RetryBudget::new(&config.retry.budget),
            breakers: Breakers::new(&config.retry.breaker),
            host_health: HostHealth::new(
                config.retry.host_min_samples,
                config.retry.host_failure_ratio,
                config.retry.host_cool_down,
            ),
            guard_scheduled: None,
            last_local: None,
            current_trunk: None,
            health: Health::new(&config.health),
            health_at: None,
            health_scheduled: None,
            reported_load: 0.0,
            drained_reported: false,
            txs: Table::new(config.limits.max_transactions, config.seed),
            calls: Slab::with_capacity(config.proxy.max_calls),
            dialogs: DialogTable::new(config.proxy.max_dialogs, config.seed),
            routes,
            lkg: LastKnownGood::new(config.routing.last_known_good),
            out: Output::new(config.limits.transmit_queue_bytes, config.limits.max_events),
            rng: Rng::new(config.seed),
            clock: Clock::new(now),
            now: Time::ZERO,
            timers: TimerQueue::default(),
            stats,
            buf: Vec::with_capacity(2048),
            buf2: Vec::with_capacity(2048),
            extra: Vec::with_capacity(256),
            cfg: config,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    fn advance(&mut self, now: Instant) {
        // Time never runs backwards inside the engine, whatever the host passes.
        self.now = self.now.max(self.clock.at(now));
    }

    /// Handles one UDP datagram that arrived from `remote` on local address `local`
    /// (the concrete address peers reach this node at: it is written into Via and
    /// Record-Route).
    ///
    /// Never panics and never fails for what a peer sent: malformed input is counted in
    /// [`Stats::malformed`] and answered `400` when enough of it parses to answer.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        local: SocketAddr,
        data: &[u8],
    ) {
        self.advance(now);
        self.last_local = Some(local);
        self.current_trunk = None;
        self.on_message(remote, local, Transport::Udp, data);
        self.run_timers();
        self.check_drained();
        self.update_health(false);
    }

    /// Advances time: runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        self.run_timers();
        self.check_drained();
        self.update_health(false);
    }

    /// When [`Engine::handle_timeout`] should next be called, if ever.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.prune_timers();
        self.timers.peek().map(|t| self.clock.instant(t))
    }

    /// The next datagram to send. Call until `None` after every `handle_*` call.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        self.out.pop_transmit()
    }

    /// Size of the next datagram to send, without taking it (for the C ABI).
    pub(crate) fn peek_transmit_len(&self) -> Option<usize> {
        self.out.peek_transmit_len()
    }

    /// The next event. Call until `None` after every `handle_*` call.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.pop_event()
    }

    /// Answers a [`Event::RouteRequest`]: forward the call to the targets in order, or
    /// reject it with a 4xx–6xx status.
    ///
    /// A 5xx reject is honoured (the caller gets it; a 503 becomes the configured
    /// `proxy.downstream_503_status`, since a 503 upstream would make the carrier fail
    /// over the whole node), but it counts as the routing service failing: when half
    /// of recent route requests fail, [`Event::RoutingDegraded`] is emitted and new
    /// calls are routed without asking (routing table, last route that worked for the
    /// number, default route) until the cool-down passes.
    pub fn route(
        &mut self,
        now: Instant,
        call: CallHandle,
        decision: RouteDecision,
    ) -> Result<(), CallError> {
        self.advance(now);
        let r = self.on_route_decision(call, decision);
        self.run_timers();
        self.check_drained();
        r
    }

    /// Starts draining for a deploy: new calls are refused with the drain policy
    /// (default 503 with a long Retry-After, so carriers use other nodes), OPTIONS is
    /// answered 503, calls in progress and in-dialog requests carry on.
    /// [`Event::Drained`] follows when this engine's last call ends. With a shared ledger
    /// the whole node drains, and each engine reports `Drained` for its own calls: the
    /// node is drained once every engine has reported it.
    pub fn drain(&mut self, now: Instant) {
        self.advance(now);
        self.admission
            .ledger
            .draining
            .store(true, std::sync::atomic::Ordering::Release);
        self.drained_reported = false;
        self.check_drained();
    }

    /// Ends a drain: new calls are admitted again.
    pub fn undrain(&mut self, now: Instant) {
        self.advance(now);
        self.admission
            .ledger
            .draining
            .store(false, std::sync::atomic::Ordering::Release);
        self.drained_reported = false;
    }

    /// Whether the node is draining.
    pub fn is_draining(&self) -> bool {
        self.admission.ledger.is_draining()
    }

    fn check_drained(&mut self) {
        if !self.drained_reported && self.is_draining() && self.active_calls() == 0 {
            self.drained_reported = true;
            self.out.event(Event::Drained);
        }
    }

    /// Reports how busy the host really is (event-loop busy share, CPU): 0.0 idle,
    /// 1.0 saturated, more when work queues up. The admitted call rate adapts (see
    /// [`FeedbackConfig`](crate::guard::FeedbackConfig) for the control law); a change
    /// is reported as [`Event::CapacityChanged`]. Call it about once per second. With a
    /// shared ledger, report the node's utilisation from any one engine.
    pub fn report_load(&mut self, now: Instant, utilisation: f64) {
        self.advance(now);
        if !utilisation.is_finite() || utilisation < 0.0 {
            return;
        }
        self.reported_load = utilisation;
        let ledger = self.admission.ledger.clone();
        let ns = ledger.ns(now);
        let admitted = ledger.admitted.load(std::sync::atomic::Ordering::Relaxed);
        let mut fb = ledger.feedback.lock();
        let change = fb.report(ns, utilisation, admitted);
        let measured = fb.measured();
        drop(fb);
        let Some(change) = change else {
            return;
        };
        // Every step of the control law is enforced; only significant ones are told.
        match change.limit {
            Some(rate) => {
                ledger.adaptive.set_rate(rate);
                if !ledger
                    .adaptive_on
                    .swap(true, std::sync::atomic::Ordering::AcqRel)
                {
                    // Turning on: no accumulated burst credit, or the first second
                    // admits rate + burst and the next report over-corrects.
                    ledger.adaptive.restart(ns);
                }
            }
            None => ledger
                .adaptive_on
                .store(false, std::sync::atomic::Ordering::Release),
        }
        if change.report {
            self.stats.capacity_changes += 1;
            self.out.event(Event::CapacityChanged {
                calls_per_second: change.limit,
                measured,
            });
        }
    }

    /// Re-evaluates health (at most every 100 ms unless `force`) and reports a change.
    fn update_health(&mut self, force: bool) {
        if !force
            && self
                .health_at
                .is_some_and(|t| self.now.saturating_since(t) < Duration::from_millis(100))
        {
            return;
        }
        self.health_at = Some(self.now);
        let trunks = self.stats.trunks.len();
        let retry_factor = (0..trunks)
            .filter_map(|i| self.retry_windows.get(i).map(|w| w.factor(self.now)))
            .fold(1.0, f64::max);
        let known = self.routes.target_count().max(1);
        let inputs = Inputs {
            utilisation: self
                .admission
                .pressure(self.ledger_now(), usize::MAX)
                .max(self.reported_load),
            open_breaker_share: (self.breakers.open_count() as f64 / known as f64).min(1.0),
            retry_factor,
            draining: self.is_draining(),
        };
        if let Some((from, to)) = self.health.evaluate(self.now, &inputs) {
            let score = self.health.last_score();
            self.out.event(Event::HealthChanged {
                from,
                to,
                score: score.value,
                reason: score.reason,
            });
        }
        // While not healthy (or a change is pending) the window must keep being read
        // even with no traffic, or an idle node would never notice its recovery. A
        // healthy node needs no timer and the engine can idle.
        if self.health.unsettled() && self.health_scheduled.is_none() {
            let at = self.now + self.health.bucket_len();
            self.health_scheduled = Some(at);
            self.timers.schedule(at, Owner::Health);
        }
    }

    /// The node's health state.
    pub fn health(&mut self, now: Instant) -> HealthState {
        self.advance(now);
        self.update_health(true);
        self.health.state()
    }

    /// Forces the health state (or returns it to the score with [`Override::Auto`]).
    pub fn set_health_override(&mut self, now: Instant, o: Override) {
        self.advance(now);
        self.health.set_override(o);
        self.update_health(true);
    }

    /// The bypass signal for the number-insertion side, stamped with the host's
    /// wall-clock time in Unix milliseconds (the engine has no clock of its own).
    pub fn bypass_signal(&mut self, now: Instant, wall_ms: u64) -> BypassSignal {
        self.advance(now);
        self.update_health(true);
        self.health.signal(wall_ms)
    }

    /// This node's report for the fleet view.
    pub fn node_report(&mut self, now: Instant, node: &str, wall_ms: u64) -> NodeReport {
        self.advance(now);
        self.update_health(true);
        let ledger = self.admission.ledger.clone();
        let measured = ledger.feedback.lock().measured();
        // What the node can really take: the rate load feedback settled on, else what
        // it admits divided by how busy that makes it, else the configured rate.
        let capacity = ledger
            .adaptive_rate()
            .or_else(|| {
                measured
                    .filter(|_| self.reported_load > 0.05)
                    .map(|m| m / self.reported_load)
            })
            .or(self.cfg.admission.calls_per_second)
            .unwrap_or(0.0);
        let window = self.cfg.health.bucket.as_secs_f64() * self.cfg.health.buckets as f64;
        let score = self.health.last_score();
        NodeReport {
            node: node.to_owned(),
            state: self.health.state(),
            score: score.value,
            capacity_cps: capacity,
            active_calls: self.active_calls() as u64,
            calls_per_second: self.health.offered_in_window(self.now) as f64 / window.max(1e-9),
            draining: self.is_draining(),
            issued_at_ms: wall_ms,
            ttl_ms: self.cfg.health.signal_ttl.as_millis() as u64,
        }
    }

    /// The shared capacity ledger.
    pub fn ledger(&self) -> &Arc<NodeLedger> {
        &self.admission.ledger
    }

    /// Nanoseconds on the ledger's clock for engine time `now`.
    pub(crate) fn ledger_now(&self) -> u64 {
        self.admission.ledger.ns(self.clock.instant(self.now))
    }

    /// Replaces the routing table. Calls already routed keep their targets; new calls
    /// use the new table.
    pub fn set_routes(&mut self, table: RoutingTable) {
        self.routes = Arc::new(table);
    }

    /// Calls in progress: being set up, or answered and not yet ended.
    pub fn active_calls(&self) -> usize {
        self.calls.len() + self.dialogs.confirmed()
    }

    /// Calls started and calls refused (admission refusals and suppressed
    /// re-attempts) so far: two counters, cheap to read per datagram (for simulations
    /// that charge CPU by outcome). `stats` has everything, at O(tables) cost.
    pub fn work_counters(&self) -> (u64, u64) {
        let suppressed: u64 = self.stats.trunks.iter().map(|t| t.suppressed).sum();
        (
            self.stats.calls_started,
            self.stats.refused_total() + suppressed,
        )
    }

    /// A snapshot of every counter.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.dropped_transmits = self.out.dropped_transmits;
        s.dropped_events = self.out.dropped_events;
        s.calls_setting_up = self.calls.len() as u64;
        let ledger = &self.admission.ledger;
        s.draining = ledger.is_draining();
        s.node_active_calls = ledger.active_calls() as u64;
        s.adaptive_rate = ledger.adaptive_rate();
        for (i, t) in s.trunks.iter_mut().enumerate() {
            t.active = ledger.trunk_active_calls(i) as u64;
            t.retry_factor = self
                .retry_windows
                .get(i)
                .map_or(1.0, |w| w.factor(self.now));
        }
        s.dedup_entries = self.dedup.len() as u64;
        s.health = self.health.state();
        s.health_score = self.health.last_score().value;
        s.dedup_evicted = self.dedup.evicted();
        for (_, d) in self.dialogs.iter() {
            match d.state {
                crate::dialog::DialogState::Early => s.dialogs_early += 1,
                crate::dialog::DialogState::Confirmed => s.dialogs_confirmed += 1,
                crate::dialog::DialogState::Terminated => s.dialogs_terminated += 1,
            }
        }
        for (_, e) in self.txs.servers.iter() {
            if e.tx.invite {
                s.transactions_active.server_invite += 1;
            } else {
                s.transactions_active.server_non_invite += 1;
            }
            match e.tx.state {
                ServerState::Trying => s.states.server_trying += 1,
                ServerState::Proceeding => s.states.server_proceeding += 1,
                ServerState::Completed => s.states.server_completed += 1,
                ServerState::Confirmed => s.states.server_confirmed += 1,
                ServerState::Accepted => s.states.server_accepted += 1,
            }
        }
        for (_, e) in self.txs.clients.iter() {
            if e.tx.invite {
                s.transactions_active.client_invite += 1;
            } else {
                s.transactions_active.client_non_invite += 1;
            }
            match e.tx.state {
                ClientState::Calling | ClientState::Trying => s.states.client_calling += 1,
                ClientState::Proceeding => s.states.client_proceeding += 1,
                ClientState::Completed => s.states.client_completed += 1,
                ClientState::Accepted => s.states.client_accepted += 1,
            }
        }
        s
    }

    // ----- input dispatch -----

    fn on_message(
        &mut self,
        remote: SocketAddr,
        local: SocketAddr,
        transport: Transport,
        data: &[u8],
    ) {
        self.stats.datagrams += 1;
        if !data.is_empty() && data.iter().all(|&c| c == b'\r' || c == b'\n') {
            self.stats.keepalives += 1;
            return;
        }
        // Retransmissions are absorbed first, from the keys alone.
        if let Ok(keys) = wire::scan_keys(data, &self.cfg.wire) {
            match keys.method() {
                Some(m) => {
                    self.stats.requests += 1;
                    if self.absorb_request(&keys, m) {
                        return;
                    }
                }
                None => {
                    self.stats.responses += 1;
                    self.on_response(&keys, data);
                    return;
                }
            }
        } else if data.len() >= 4 && data[..4].eq_ignore_ascii_case(b"SIP/") {
            self.stats.responses += 1;
        } else {
            self.stats.requests += 1;
        }
        match wire::scan(data, &self.cfg.wire) {
            Ok(msg) if msg.is_request() => self.on_request(&msg, remote, local, transport),
            // A response scan_keys could not read but scan could: nothing matches it.
            Ok(_) => self.stats.stray_responses += 1,
            Err(e) => self.on_malformed(e.kind, data, remote, local, transport),
        }
    }

    fn on_malformed(
        &mut self,
        kind: wire::ParseErrorKind,
        data: &[u8],
        remote: SocketAddr,
        local: SocketAddr,
        transport: Transport,
    ) {
        self.stats.malformed[kind.index()] += 1;
        let reply = Reply::new(kind.status(), kind.reason_phrase().as_bytes());
        self.buf.clear();
        // Unscannable requests go back to their source: their Via was not understood.
        if wire::write_response_to_unparsed(data, &reply, &mut self.buf) {
            self.stats.malformed_answered += 1;
            self.stats.count_response(reply.status);
            self.out.send(remote, local, transport, &self.buf);
        }
    }

    /// A request that matches a live server transaction: answered from the cache (or
    /// absorbed) without a full scan and without allocating. False if it needs more.
    fn absorb_request(&mut self, keys: &wire::Keys<'_>, method: Method<'_>) -> bool {
        let Some(id) = self.txs.find_server(
            keys.branch(),
            keys.sent_by_host(),
            keys.sent_by_port(),
            keys.transport(),
            Class::of(method),
        ) else {
            return false;
        };
        let timers = self.cfg.timers;
        let Some(e) = self.txs.servers.get_mut(id) else {
            return false;
        };
        if method == Method::Ack {
            if !e.tx.on_ack(self.now, &timers) {
                // An ACK for a 2xx travels end to end; not this transaction's.
                return false;
            }
            self.stats.acks_absorbed += 1;
            self.schedule_server(id);
            return true;
        }
        self.stats.retransmissions_absorbed += 1;
        if let Some(bytes) = e.tx.on_retransmission() {
            self.out.send(e.peer, e.local, e.transport, bytes);
        }
        true
    }

    fn on_request(
        &mut self,
        msg: &Message<'_>,
        remote: SocketAddr,
        local: SocketAddr,
        transport: Transport,
    ) {
        if !msg.top_via().has_magic_cookie() {
            self.stats.no_magic_cookie += 1;
            if msg.method() != Some(Method::Ack) {
                self.reply_stateless(
                    msg,
                    remote,
                    local,
                    transport,
                    400,
                    b"Bad Request - RFC 2543 Branch Not Supported",
                    b"",
                );
            }
            return;
        }
        let Some(method) = msg.method() else {
            return;
        };
        if method == Method::Cancel {
            self.on_cancel(msg, remote, local, transport);
        } else if msg.to_tag().is_some() {
            self.on_in_dialog(msg, remote, local, transport);
        } else if method == Method::Invite {
            self.on_invite(msg, remote, local, transport);
        } else if method == Method::Ack {
            self.stats.stray_acks += 1;
        } else {
            self.on_out_of_dialog(msg, remote, local, transport);
        }
    }

    /// Requests outside any dialog other than INVITE: answered by the engine itself.
    fn on_out_of_dialog(
        &mut self,
        msg: &Message<'_>,
        remote: SocketAddr,
        local: SocketAddr,
        transport: Transport,
    ) {
        let Some(id) = self.new_server_tx(msg, remote, local, transport, TxOwner::Uas) else {
            return;
        };
        if msg.method() == Some(Method::Options) && self.is_draining() {
            // A draining node must look unavailable so carriers move traffic away;
            // a merely busy node keeps answering 200 (it is not dead).
            let p = self.cfg.admission.drain.clone();
            let retry = SmallText::new(format_args!("Retry-After: {}\r\n", p.retry_after));
            self.respond(
                id,
                Some(msg),
                p.status,
                p.reason.as_bytes(),
                retry.as_bytes(),
            );
            return;
        }
        let status = match msg.method() {
            Some(Method::Options) => 200,
            // In-dialog methods without a To tag belong to no dialog.
            Some(Method::Bye | Method::Update | Method::Info | Method::Prack) => 481,
            Some(Method::Extension(_)) => 501,
            _ => 405,
        };
        self.respond(id, Some(msg), status, reason(status), b"");
    }

    fn on_response(&mut self, keys: &wire::Keys<'_>, data: &[u8]) {
        let Some(mut cid) = keys.branch().and_then(|b| self.txs.client_of_branch(b)) else {
            self.stats.stray_responses += 1;
            return;
        };
        let (Some(status), Some(cseq_method)) = (keys.status(), keys.cseq_method()) else {
            return;
        };
        if cseq_method == Method::Cancel {
            match self.txs.clients.get(cid).and_then(|e| e.cancel) {
                Some(c) => cid = c,
                None => {
                    self.stats.stray_responses += 1;
                    return;
                }
            }
        }
        let timers = self.cfg.timers;
        let Some(e) = self.txs.clients.get_mut(cid) else {
            self.stats.stray_responses += 1;
            return;
        };
        if e.tx.invite != (cseq_method == Method::Invite) {
            self.stats.stray_responses += 1;
            return;
        }
        let outcome = e.tx.on_response(self.now, &timers, status);
        if outcome == ClientOutcome::Absorbed {
            self.stats.response_retransmissions_absorbed += 1;
            if e.tx.invite && e.tx.state == ClientState::Completed && !e.tx.ack().is_empty() {
                self.out.send(e.dest, e.local, e.transport, e.tx.ack());
            }
            return;
        }
        self.schedule_client(cid);
        let msg = match wire::scan(data, &self.cfg.wire) {
            Ok(m) => m,
            Err(err) => {
                // The keys matched but the rest is broken: count it, deliver nothing.
                self.stats.malformed[err.kind.index()] += 1;
                return;
            }
        };
        if outcome == ClientOutcome::DeliverAndAck {
            self.send_ack(cid, &msg);
        }
        let Some(owner) = self.txs.clients.get(cid).map(|e| e.owner) else {
            return;
        };
        match owner {
            TxOwner::Branch {
                call,
                server,
                abandoned,
            } => self.on_branch_response(cid, call, server, abandoned, &msg),
            TxOwner::RelayClient { server } => self.relay_response(server, &msg),
            // An answer to an INVITE we already hung up: ACK it again.
            TxOwner::Own if (200..300).contains(&status) => self.hang_up_stray_answer(cid, &msg),
            TxOwner::Probe(target) if status >= 200 => self.on_probe_result(target, status),
            _ => {}
        }
    }

    /// Acknowledges a non-2xx final on client INVITE `cid` (RFC 3261 §17.1.1.3).
    fn send_ack(&mut self, cid: Key, response: &Message<'_>) {
        let limits = self.cfg.wire;
        let Some(e) = self.txs.clients.get_mut(cid) else {
            return;
        };
        let Ok(invite) = wire::scan(e.tx.request(), &limits) else {
            return;
        };
        self.buf.clear();
        wire::write_ack(&invite, response, &mut self.buf);
        e.tx.set_ack(&self.buf);
        self.out.send(e.dest, e.local, e.transport, &self.buf);
    }

    // ----- server transactions -----

    /// Creates the server transaction for a new request, or answers it statelessly when
    /// it cannot have one (table full: 503 with Retry-After). A merged request (RFC 3261
    /// §8.2.2.2) is answered 482 within its own transaction and `None` returned.
    pub(crate) fn new_server_tx(
        &mut self,
        msg: &Message<'_>,
        remote: SocketAddr,
        local: SocketAddr,
        transport: Transport,
        owner: TxOwner,
    ) -> Option<Key> {
        let via = msg.top_via();
        let method = msg.method()?;
        let class = Class::of(method);
        let reliable = transport.is_reliable();
        let cseq = msg.cseq();
        let merged_key = match (msg.to_tag(), msg.from_tag()) {
            (None, Some(from_tag)) => {
                Some((from_tag, msg.call_id(), cseq.number, method.as_bytes()))
            }
            _ => None,
        };
        let merged =
            merged_key.is_some_and(|(t, c, n, m)| self.txs.find_merged(t, c, n, m).is_some());
        if self.txs.is_full() {
            self.stats.table_full += 1;
            let retry = SmallText::new(format_args!(
                "Retry-After: {}\r\n",
                self.cfg.limits.table_full_retry_after
            ));
            self.reply_stateless(
                msg,
                remote,
                local,
                transport,
                503,
                reason(503),
                retry.as_bytes(),
            );
            return None;
        }
        let timers = self.cfg.timers;
        let tx = if method == Method::Invite {
            // A safety net well past Timer C: the transaction user answers long before.
            ServerTx::invite(
                self.now,
                reliable,
                self.cfg.proxy.ring_timeout + timers.t1x64() * 2,
            )
        } else {
            ServerTx::non_invite(self.now, reliable, &timers)
        };
        let (peer, _) = response_target(&via, remote);
        let id = self
            .txs
            .insert_server(
                tx,
                via.branch,
                via.host,
                via.port,
                class,
                if merged { None } else { merged_key },
                peer,
                local,
                transport,
                owner,
            )
            .ok()?;
        let c = &mut self.stats.transactions_created;
        if method == Method::Invite {
            c.server_invite += 1;
        } else {
            c.server_non_invite += 1;
        }
        if merged {
            self.stats.merged_requests += 1;
            self.respond(id, Some(msg), 482, reason(482), b"");
            return None;
        }
        Some(id)
    }

    /// A stable To tag for responses the engine generates in transaction `id`.
    fn local_tag(&self, id: Key) -> [u8; 8] {
        let v = digest(self.cfg.seed, &[0x746167, id.to_u64()]) as u32;
        let mut tag = [0u8; 8];
        for (i, c) in tag.iter_mut().enumerate() {
            *c = b"0123456789abcdef"[(v >> ((7 - i) * 4)) as usize & 0xf];
        }
        tag
    }

    /// Sends a response the engine generates in server transaction `id`, built from
    /// `msg` when at hand, else from the request the transaction kept. `extra` holds
    /// additional header lines (each ending in CRLF).
    pub(crate) fn respond(
        &mut self,
        id: Key,
        msg: Option<&Message<'_>>,
        status: u16,
        reason: &[u8],
        extra: &[u8],
    ) {
        self.extra.clear();
        self.extra.extend_from_slice(extra);
        if matches!(status, 200 | 405 | 501) && msg.and_then(|m| m.method()) != Some(Method::Invite)
        {
            self.extra.extend_from_slice(ALLOW);
            if status == 200 {
                self.extra.extend_from_slice(b"Accept: application/sdp\r\n");
            }
        }
        if !self.cfg.server_name.is_empty() && status > 100 {
            self.extra.extend_from_slice(b"Server: ");
            self.extra
                .extend_from_slice(self.cfg.server_name.as_bytes());
            self.extra.extend_from_slice(b"\r\n");
        }
        let tag = self.local_tag(id);
        let limits = self.cfg.wire;
        // RFC 7339 feedback for the request's client, with its trunk's pressure.
        let trunk = match self.txs.servers.get(id).map(|e| e.owner) {
            Some(TxOwner::Call(call)) => self.calls.get(call).map(|c| c.trunk),
            _ => self.current_trunk,
        };
        // The kept request is lent out while it is read, and given back unless this
        // response is final (a transaction that answered needs it no more).
        let kept = match (msg, self.txs.servers.get_mut(id)) {
            (_, None) => return,
            (Some(_), Some(_)) => Vec::new(),
            (None, Some(e)) => std::mem::take(&mut e.request),
        };
        let stored;
        let msg = match msg {
            Some(m) => m,
            None => match wire::scan(&kept, &limits) {
                Ok(m) => {
                    stored = m;
                    &stored
                }
                // Only requests that scanned are kept; there is nothing to answer from.
                Err(_) => {
                    if let Some(e) = self.txs.servers.get_mut(id) {
                        e.request = kept;
                    }
                    return;
                }
            },
        };
        let oc = self.oc_params(&msg.top_via(), trunk);
        let Some(e) = self.txs.servers.get_mut(id) else {
            return;
        };
        // `peer` has the source IP (only its port may differ), so it decides `received`.
        let (_, received) = response_target(&msg.top_via(), e.peer);
        let received = received.map(|ip| {
            let mut t = SmallText::default();
            t.push_ip(ip);
            t
        });
        let reply = Reply {
            status,
            reason,
            to_tag: (status > 100).then_some(&tag[..]),
            headers: &self.extra,
            via_params: oc.as_bytes(),
            received: received.as_ref().map(SmallText::as_bytes),
            source_port: e.peer.port(),
        };
        self.buf.clear();
        wire::write_response(msg, &reply, &mut self.buf);
        let sent =
            e.tx.respond(self.now, &self.cfg.timers, status, &self.buf)
                .is_ok();
        if sent {
            self.stats.count_response(status);
            self.out.send(e.peer, e.local, e.transport, &self.buf);
            if status >= 200 {
                e.request = Vec::new();
            }
        }
        let finished = sent && status >= 200;
        if !kept.is_empty() && !finished {
            e.request = kept;
        }
        if sent {
            self.schedule_server(id);
        }
    }

    /// Sends response bytes built elsewhere (a relayed downstream response) through
    /// server transaction `id`. False if the transaction refused (final already sent).
    pub(crate) fn respond_bytes(&mut self, id: Key, status: u16, bytes: &[u8]) -> bool {
        let Some(e) = self.txs.servers.get_mut(id) else {
            return false;
        };
        match e.tx.respond(self.now, &self.cfg.timers, status, bytes) {
            Ok(()) => {
                self.stats.count_response(status);
                self.out.send(e.peer, e.local, e.transport, bytes);
                if status >= 200 {
                    e.request = Vec::new();
                }
                self.schedule_server(id);
                true
            }
            Err(RespondError::FinalAlreadySent) => false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn reply_stateless(
        &mut self,
        msg: &Message<'_>,
        remote: SocketAddr,
        local: SocketAddr,
        transport: Transport,
        status: u16,
        reason: &[u8],
        extra: &[u8],
    ) {
        let via = msg.top_via();
        let (peer, received) = response_target(&via, remote);
        let received = received.map(|ip| {
            let mut t = SmallText::default();
            t.push_ip(ip);
            t
        });
        let oc = self.oc_params(&via, self.admission.classify(remote));
        // Stateless: the tag is derived from the request, so a retransmission of it
        // gets the same bytes.
        let t = digest(
            self.cfg.seed,
            &[
                0x7374,
                crate::hash::bytes_digest(via.branch.unwrap_or_default()),
            ],
        ) as u32;
        let mut tag = SmallText::default();
        for i in (0..8).rev() {
            tag.push(&[b"0123456789abcdef"[(t >> (4 * i)) as usize & 0xf]]);
        }
        let reply = Reply {
            status,
            reason,
            to_tag: (status > 100).then_some(tag.as_bytes()),
            headers: extra,
            via_params: oc.as_bytes(),
            received: received.as_ref().map(SmallText::as_bytes),
            source_port: remote.port(),
        };
        self.buf.clear();
        wire::write_response(msg, &reply, &mut self.buf);
        self.stats.count_response(status);
        self.out.send(peer, local, transport, &self.buf);
    }

    /// RFC 7339 parameters for a response to a request with this Via: empty unless the
    /// client asked (`oc`) and overload control is on.
    pub(crate) fn oc_params(&self, via: &Via<'_>, trunk: Option<TrunkId>) -> SmallText {
        let mut t = SmallText::default();
        if !self.cfg.admission.overload_control || !oc::wants_loss_feedback(via.oc, via.oc_algo) {
            return t;
        }
        let loss = self
            .admission
            .shed_probability(self.ledger_now(), trunk.unwrap_or(usize::MAX));
        let mut v = Vec::with_capacity(64);
        oc::write_params(
            &mut v,
            (loss * 100.0).round() as u8,
            self.cfg.admission.oc_validity_ms,
            self.now.0 / 1_000_000,
        );
        let _ = t.write_str(std::str::from_utf8(&v).unwrap_or_default());
        t
    }

    /// Refuses a new call without keeping any state for it (see the guard layer), and
    /// remembers how, so a retransmission gets the same answer. Returns the status and
    /// Retry-After sent.
    pub(crate) fn refuse(
        &mut self,
        msg: &Message<'_>,
        remote: SocketAddr,
        local: SocketAddr,
        transport: Transport,
        trunk: Option<TrunkId>,
        why: Refusal,
    ) -> (u16, u32) {
        self.stats.refused[why.index()] += 1;
        if let Some(t) = trunk.and_then(|t| self.stats.trunks.get_mut(t)) {
            t.refused[why.index()] += 1;
        }
        if why != Refusal::UnknownSource {
            self.health.refused(self.now, why == Refusal::Draining);
        }
        self.memo_refusal(msg, RefusalMemo::Policy { trunk, why });
        self.send_policy_refusal(msg, remote, local, transport, trunk, why)
    }

    fn send_policy_refusal(
        &mut self,
        msg: &Message<'_>,
        remote: SocketAddr,
        local: SocketAddr,
        transport: Transport,
        trunk: Option<TrunkId>,
        why: Refusal,
    ) -> (u16, u32) {
        if why == Refusal::UnknownSource {
            self.reply_stateless(msg, remote, local, transport, 403, reason(403), b"");
            return (403, 0);
        }
        let policy = match (why, trunk.and_then(|t| self.cfg.admission.trunks.get(t))) {
            (Refusal::Draining, _) | (_, None) => &self.cfg.admission.drain,
            (_, Some(t)) => &t.reject,
        };
        let (status, base, jitter) = (policy.status, policy.retry_after, policy.retry_after_jitter);
        // Copied out of the config (validated to fit) so `self` can be borrowed again.
        let mut reason_text = SmallText::default();
        reason_text.push(policy.reason.as_bytes());
        let mut retry = 0;
        let mut extra = SmallText::default();
        if base > 0 || jitter > 0 {
            // Jitter keyed by the request: spread across calls, identical for a
            // retransmission of the same request.
            let key = crate::hash::bytes_digest(msg.branch().unwrap_or_default());
            retry = base + (digest(self.cfg.seed, &[0x7261, key]) % (jitter as u64 + 1)) as u32;
            extra.push(b"Retry-After: ").push_u32(retry).push(b"\r\n");
        }
        self.reply_stateless(
            msg,
            remote,
            local,
            transport,
            status,
            reason_text.as_bytes(),
            extra.as_bytes(),
        );
        (status, retry)
    }

    fn refused_key(&self, msg: &Message<'_>) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        // One keyed stream over the whole key: no part is hashed without the secret,
        // so collisions cannot be searched for offline.
        let via = msg.top_via();
        let mut h = crate::hash::SeededState::new(self.cfg.seed ^ 0x7265_6675).build_hasher();
        h.write(via.branch.unwrap_or_default());
        h.write_u8(0);
        for &c in via.host {
            h.write_u8(c.to_ascii_lowercase());
        }
        h.write_u16(via.port.unwrap_or(0));
        h.finish()
    }

    fn memo_refusal(&mut self, msg: &Message<'_>, memo: RefusalMemo) {
        let key = self.refused_key(msg);
        // The client retransmits an INVITE for at most Timer B.
        let until = self.now + self.cfg.timers.t1x64();
        self.refused.set(key, memo, self.now, until);
    }

    /// A retransmission of an INVITE refused statelessly: the same answer again.
    pub(crate) fn replay_refusal(
        &mut self,
        msg: &Message<'_>,
        remote: SocketAddr,
        local: SocketAddr,
        transport: Transport,
    ) -> bool {
        // Nothing refused lately (the usual case): no key to compute.
        if self.refused.len() == 0 {
            return false;
        }
        let Some(memo) = self.refused.get(self.refused_key(msg), self.now) else {
            return false;
        };
        self.stats.retransmissions_absorbed += 1;
        match memo {
            RefusalMemo::Policy { trunk, why } => {
                self.send_policy_refusal(msg, remote, local, transport, trunk, why);
            }
            RefusalMemo::Status {
                status,
                retry_after,
            } => self.send_status_refusal(msg, remote, local, transport, status, retry_after),
        }
        true
    }

    /// Refuses a request with `status` and an optional Retry-After, statelessly, and
    /// remembers it for retransmissions.
    pub(crate) fn refuse_with(
        &mut self,
        msg: &Message<'_>,
        remote: SocketAddr,
        local: SocketAddr,
        transport: Transport,
        status: u16,
        retry_after: u32,
    ) {
        self.memo_refusal(
            msg,
            RefusalMemo::Status {
                status,
                retry_after,
            },
        );
        self.send_status_refusal(msg, remote, local, transport, status, retry_after);
    }

    fn send_status_refusal(
        &mut self,
        msg: &Message<'_>,
        remote: SocketAddr,
        local: SocketAddr,
        transport: Transport,
        status: u16,
        retry_after: u32,
    ) {
        let mut extra = SmallText::default();
        if retry_after > 0 {
            extra
                .push(b"Retry-After: ")
                .push_u32(retry_after)
                .push(b"\r\n");
        }
        self.reply_stateless(
            msg,
            remote,
            local,
            transport,
            status,
            reason(status),
            extra.as_bytes(),
        );
    }

    /// Schedules the guard's timer for the next breaker cool-down.
    pub(crate) fn schedule_guard(&mut self) {
        if let Some(t) = self.breakers.next_due()
            && self.guard_scheduled.is_none_or(|s| t < s)
        {
            self.guard_scheduled = Some(t);
            self.timers.schedule(t, Owner::Guard);
        }
    }

    /// Breaker cool-downs ended: probe the destinations (or let the next call try).
    fn on_guard_timer(&mut self) {
        for target in self.breakers.due(self.now) {
            self.out.event(Event::BreakerChanged {
                target,
                state: BreakerState::HalfOpen,
            });
            if self.breakers.probing() {
                self.send_probe(target);
            } else if let Some((target, state)) = self.breakers.success(target) {
                self.out.event(Event::BreakerChanged { target, state });
            }
        }
        self.schedule_guard();
    }

    /// The answer to a probe (408 for none): a live destination closes its breaker.
    fn on_probe_result(&mut self, target: SocketAddr, status: u16) {
        let alive = !(status == 408 || (500..600).contains(&status));
        let change = if alive {
            self.breakers.success(target)
        } else {
            self.breakers.failure(target, status == 408, self.now)
        };
        if let Some((target, state)) = change {
            self.out.event(Event::BreakerChanged { target, state });
        }
        self.schedule_guard();
    }

    pub(crate) fn schedule_server(&mut self, id: Key) {
        let Some(e) = self.txs.servers.get_mut(id) else {
            return;
        };
        if let Some(t) = e.tx.next_wake()
            && e.scheduled != Some(t)
        {
            e.scheduled = Some(t);
            self.timers.schedule(t, Owner::ServerTx(id));
        }
    }

    // ----- client transactions -----

    /// Starts a client transaction: `build` writes the request given the branch to put
    /// in our Via. Returns its key, or `None` when the table is full (counted).
    pub(crate) fn send_request(
        &mut self,
        invite: bool,
        dest: SocketAddr,
        local: SocketAddr,
        transport: Transport,
        owner: TxOwner,
        build: impl FnOnce(&mut Self, &[u8], &mut Vec<u8>) -> bool,
    ) -> Option<Key> {
        let tx = ClientTx::new(
            self.now,
            &self.cfg.timers,
            invite,
            transport.is_reliable(),
            Vec::new(),
        );
        let entry = ClientEntry {
            tx,
            dest,
            local,
            transport,
            owner,
            cancel: None,
            scheduled: None,
        };
        let Some(cid) = self.txs.insert_client(entry) else {
            self.stats.table_full += 1;
            return None;
        };
        let branch = self.txs.branch(cid);
        let mut request = Vec::with_capacity(1536);
        if !build(self, branch.as_bytes(), &mut request) {
            self.txs.remove_client(cid);
            return None;
        }
        let c = &mut self.stats.transactions_created;
        if invite {
            c.client_invite += 1;
        } else {
            c.client_non_invite += 1;
        }
        self.out.send(dest, local, transport, &request);
        if let Some(e) = self.txs.clients.get_mut(cid) {
            e.tx.set_request(request);
        }
        self.schedule_client(cid);
        Some(cid)
    }

    pub(crate) fn schedule_client(&mut self, id: Key) {
        let Some(e) = self.txs.clients.get_mut(id) else {
            return;
        };
        if let Some(t) = e.tx.next_wake()
            && e.scheduled != Some(t)
        {
            e.scheduled = Some(t);
            self.timers.schedule(t, Owner::ClientTx(id));
        }
    }

    // ----- time -----

    pub(crate) fn run_timers(&mut self) {
        while let Some((t, owner)) = self.timers.pop_due(self.now) {
            if !self.timer_live(t, owner) {
                continue;
            }
            match owner {
                Owner::ServerTx(id) => {
                    if let Some(e) = self.txs.servers.get_mut(id) {
                        e.scheduled = None;
                    }
                    self.on_server_timer(id);
                }
                Owner::ClientTx(id) => {
                    if let Some(e) = self.txs.clients.get_mut(id) {
                        e.scheduled = None;
                    }
                    self.on_client_timer(id);
                }
                Owner::Call(id) => {
                    if let Some(c) = self.calls.get_mut(id) {
                        c.scheduled = None;
                    }
                    self.on_call_timer(id);
                }
                Owner::Dialog(id) => {
                    if let Some(d) = self.dialogs.get_mut(id) {
                        d.scheduled = None;
                    }
                    self.on_dialog_timer(id);
                }
                Owner::Guard => {
                    if self.guard_scheduled == Some(t) {
                        self.guard_scheduled = None;
                        self.on_guard_timer();
                    }
                }
                Owner::Health => {
                    if self.health_scheduled == Some(t) {
                        self.health_scheduled = None;
                        self.update_health(true);
                    }
                }
            }
        }
        self.compact_timers();
    }

    fn on_server_timer(&mut self, id: Key) {
        let timers = self.cfg.timers;
        loop {
            let Some(e) = self.txs.servers.get_mut(id) else {
                return;
            };
            match e.tx.on_timer(self.now, &timers) {
                ServerFired::Nothing => break,
                ServerFired::Retransmit(bytes) => {
                    self.stats.retransmissions_sent += 1;
                    self.out.send(e.peer, e.local, e.transport, bytes);
                }
                ServerFired::Terminated(end) => {
                    if end == ServerEnd::NoAck {
                        self.stats.ack_timeouts += 1;
                    }
                    self.txs.remove_server(id);
                    return;
                }
                ServerFired::Unanswered => {
                    self.stats.unanswered += 1;
                    self.health.failed(self.now);
                    let (invite, owner) = (e.tx.invite, e.owner);
                    if !invite {
                        // RFC 4320: no 408 to a non-INVITE; the client's Timer F ends it.
                        self.txs.remove_server(id);
                        return;
                    }
                    match owner {
                        TxOwner::Call(call) => self.reject_call(call, 500),
                        _ => self.respond(id, None, 500, reason(500), b""),
                    }
                }
                ServerFired::MaySend100 => {
                    if !e.request.is_empty() {
                        self.respond(id, None, 100, reason(100), b"");
                    }
                }
            }
        }
        self.schedule_server(id);
    }

    fn on_client_timer(&mut self, id: Key) {
        let timers = self.cfg.timers;
        loop {
            let Some(e) = self.txs.clients.get_mut(id) else {
                return;
            };
            match e.tx.on_timer(self.now, &timers) {
                ClientFired::Nothing => break,
                ClientFired::Retransmit(bytes) => {
                    self.stats.retransmissions_sent += 1;
                    self.out.send(e.dest, e.local, e.transport, bytes);
                }
                ClientFired::Timeout => {
                    self.stats.transaction_timeouts += 1;
                    let (owner, dest) = (e.owner, e.dest);
                    self.txs.remove_client(id);
                    match owner {
                        TxOwner::Branch {
                            call, abandoned, ..
                        } => self.on_branch_timeout(id, call, abandoned, dest),
                        TxOwner::RelayClient { server } => self.relay_timeout(server),
                        TxOwner::Probe(target) => self.on_probe_result(target, 408),
                        _ => {}
                    }
                    return;
                }
                ClientFired::Terminated => {
                    self.txs.remove_client(id);
                    return;
                }
            }
        }
        self.schedule_client(id);
    }

    /// Whether a timer entry still means something to its owner.
    fn timer_live(&self, t: Time, owner: Owner) -> bool {
        match owner {
            Owner::ServerTx(id) => self
                .txs
                .servers
                .get(id)
                .is_some_and(|e| e.scheduled == Some(t)),
            Owner::ClientTx(id) => self
                .txs
                .clients
                .get(id)
                .is_some_and(|e| e.scheduled == Some(t)),
            Owner::Call(id) => self.calls.get(id).is_some_and(|c| c.scheduled == Some(t)),
            Owner::Dialog(id) => self.dialogs.get(id).is_some_and(|d| d.scheduled == Some(t)),
            Owner::Guard => self.guard_scheduled == Some(t),
            Owner::Health => self.health_scheduled == Some(t),
        }
    }

    /// Pops stale entries off the top so `poll_timeout` names a real deadline.
    fn prune_timers(&mut self) {
        while let Some((t, owner)) = self.timers.peek_entry() {
            if self.timer_live(t, owner) {
                break;
            }
            self.timers.pop();
        }
    }

    /// Drops stale timer entries once they outnumber live owners.
    fn compact_timers(&mut self) {
        let live = self.txs.len() + self.calls.len() + self.dialogs.len();
        if self.timers.len() <= 2 * live + 1024 {
            return;
        }
        let mut timers = std::mem::take(&mut self.timers);
        timers.retain(|t, owner| self.timer_live(t, owner));
        self.timers = timers;
    }

    /// Total entries in every table (for bounded-memory tests).
    #[doc(hidden)]
    pub fn table_sizes(&self) -> TableSizes {
        TableSizes {
            transactions: self.txs.len(),
            calls: self.calls.len(),
            dialogs: self.dialogs.len(),
            timers: self.timers.len(),
            last_known_good: self.lkg.len(),
        }
    }
}

/// Sizes of the engine's tables, for tests and diagnostics.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableSizes {
    /// Server and client transactions.
    pub transactions: usize,
    /// Calls being set up.
    pub calls: usize,
    /// Dialogs (any state).
    pub dialogs: usize,
    /// Timer queue entries (live and stale).
    pub timers: usize,
    /// Last-known-good route cache entries.
    pub last_known_good: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_text_writes_addresses_as_display_does() {
        for a in [
            "0.0.0.0:0",
            "192.0.2.1:5060",
            "255.255.255.255:65535",
            "10.0.100.9:5",
            "[::1]:5060",
            "[2001:db8::9:1]:5061",
            "[::ffff:192.0.2.10]:19823",
        ] {
            let addr: SocketAddr = a.parse().unwrap();
            let mut t = SmallText::default();
            t.push_addr(addr);
            assert_eq!(t.as_bytes(), addr.to_string().as_bytes(), "{a}");
            let mut ip = SmallText::default();
            ip.push_ip(addr.ip());
            assert_eq!(ip.as_bytes(), addr.ip().to_string().as_bytes(), "{a}");
        }
        let mut n = SmallText::default();
        n.push_u32(0).push(b" ").push_u32(u32::MAX);
        assert_eq!(n.as_bytes(), b"0 4294967295");
    }
}
