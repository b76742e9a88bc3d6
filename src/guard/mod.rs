//! The guard layer: who may use this node's capacity, and how refusals are made cheap
//! and non-amplifying.
//!
//! Owns: trunk classification, the shared capacity [`NodeLedger`] (slots released
//! exactly once by `Drop`), GCRA rate limits, early probabilistic shedding, load
//! feedback, the rejection policy (status, reason, jittered Retry-After), RFC 7339
//! feedback values and drain. Never touches transactions or sockets: it decides, the
//! engine acts.
//!
//! Refusals for overload are sent statelessly (RFC 3261 §8.2.7): a refused call leaves
//! no state behind, so a retry storm cannot fill the tables, and the Retry-After jitter
//! is keyed by the request so a retransmission gets byte-identical bytes.

mod breaker;
mod budget;
pub(crate) mod dedup;
mod feedback;
mod gcra;
mod ledger;
pub(crate) mod oc;
mod trunk;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub(crate) use breaker::Breakers;
pub use breaker::{BreakerConfig, BreakerState};
pub use budget::BudgetConfig;
pub(crate) use budget::RetryBudget;
pub use dedup::{AfterAnswer, DedupPolicy, InProgress};
pub use feedback::FeedbackConfig;
pub use ledger::NodeLedger;
pub(crate) use ledger::{Full, Slot, TargetSlot};
pub use trunk::{Source, SourceError, TrunkId};

use crate::rng::Rng;
use trunk::Classifier;

/// How a refused call is answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectPolicy {
    /// Status (default 503).
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Retry-After base, seconds (0: no Retry-After).
    pub retry_after: u32,
    /// Up to this many seconds are added, drawn per request, so the carriers' retries
    /// do not arrive in step.
    pub retry_after_jitter: u32,
}

impl Default for RejectPolicy {
    fn default() -> Self {
        RejectPolicy {
            status: 503,
            reason: "Service Unavailable".into(),
            retry_after: 5,
            retry_after_jitter: 5,
        }
    }
}

/// A carrier interconnect: the sources it sends from and its limits.
#[derive(Clone, Debug, PartialEq)]
pub struct TrunkConfig {
    /// Name used in stats and metrics.
    pub name: String,
    /// Source addresses (IP, CIDR, optional port) that belong to this trunk.
    pub sources: Vec<Source>,
    /// Concurrent calls from this trunk (`None`: only the node limit).
    pub max_calls: Option<u32>,
    /// New calls per second from this trunk (GCRA).
    pub calls_per_second: Option<f64>,
    /// Burst tolerance above the rate, in calls.
    pub burst: u32,
    /// How this trunk's calls are refused for overload.
    pub reject: RejectPolicy,
    /// What a downstream 503 becomes for this trunk (default: the proxy's setting).
    pub downstream_503_status: Option<u16>,
    /// How this trunk's re-attempts are handled.
    pub dedup: DedupPolicy,
}

impl TrunkConfig {
    /// A trunk with no sources and no limits of its own.
    pub fn new(name: &str) -> Self {
        TrunkConfig {
            name: name.to_owned(),
            sources: Vec::new(),
            max_calls: None,
            calls_per_second: None,
            burst: 10,
            reject: RejectPolicy::default(),
            downstream_503_status: None,
            dedup: DedupPolicy::default(),
        }
    }
}

/// Retry hygiene: re-attempt table size, failover budget, circuit breakers, and what
/// happens when the host's routing service fails.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryConfig {
    /// Re-attempts remembered at most (oldest evicted first, counted).
    pub dedup_capacity: usize,
    /// The failover budget.
    pub budget: BudgetConfig,
    /// Circuit breakers per destination.
    pub breaker: BreakerConfig,
    /// Share of failed route requests (timeouts, 5xx answers) over the last samples at
    /// which the host's routing service is considered down (default 0.5).
    pub host_failure_ratio: f64,
    /// Route requests needed before that share is judged (default 10).
    pub host_min_samples: u32,
    /// How long the engine stops asking a failed routing service and routes from its
    /// last-known-good cache instead (default 10 s).
    pub host_cool_down: std::time::Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            dedup_capacity: 200_000,
            budget: BudgetConfig::default(),
            breaker: BreakerConfig::default(),
            host_failure_ratio: 0.5,
            host_min_samples: 10,
            host_cool_down: std::time::Duration::from_secs(10),
        }
    }
}

/// Admission control settings.
#[derive(Clone, Debug, PartialEq)]
pub struct AdmissionConfig {
    /// The trunks. Each must have a distinct name.
    pub trunks: Vec<TrunkConfig>,
    /// The trunk calls from unknown sources belong to; `None` refuses them (403).
    pub unknown_sources: Option<String>,
    /// Concurrent calls node-wide.
    pub max_calls: Option<u32>,
    /// New calls per second node-wide (GCRA); also the cap load feedback never exceeds.
    pub calls_per_second: Option<f64>,
    /// Burst tolerance of the node rate, in calls.
    pub burst: u32,
    /// Concurrent calls per destination target; a full target is skipped.
    pub max_calls_per_target: Option<u32>,
    /// Pressure (share of the concurrency or rate limit in use) above which new calls
    /// are shed with a probability rising linearly to 1 at the limit.
    pub shed_watermark: f64,
    /// Dialled numbers never shed nor rate-limited (emergency, VIP); they still need
    /// room in the tables.
    pub protected_numbers: Vec<String>,
    /// How calls are refused while draining.
    pub drain: RejectPolicy,
    /// Load feedback.
    pub feedback: FeedbackConfig,
    /// Whether RFC 7339 feedback is given to clients that ask with `oc`.
    pub overload_control: bool,
    /// `oc-validity` in milliseconds.
    pub oc_validity_ms: u32,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            trunks: vec![TrunkConfig::new("default")],
            unknown_sources: Some("default".into()),
            max_calls: None,
            calls_per_second: None,
            burst: 20,
            max_calls_per_target: None,
            shed_watermark: 0.8,
            protected_numbers: Vec::new(),
            drain: RejectPolicy {
                status: 503,
                reason: "Service Unavailable - Draining".into(),
                retry_after: 30,
                retry_after_jitter: 30,
            },
            feedback: FeedbackConfig::default(),
            overload_control: true,
            oc_validity_ms: 1000,
        }
    }
}

/// Why admission refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// The source belongs to no trunk (answered 403).
    UnknownSource,
    /// The node is draining.
    Draining,
    /// Node-wide concurrency limit.
    NodeCalls,
    /// Trunk concurrency limit.
    TrunkCalls,
    /// Node-wide rate limit.
    NodeRate,
    /// Trunk rate limit.
    TrunkRate,
    /// The rate load feedback admits.
    Capacity,
    /// Early probabilistic shedding.
    Shed,
}

impl Refusal {
    /// Every refusal, in [`Refusal::index`] order.
    pub const ALL: [Refusal; 8] = [
        Refusal::UnknownSource,
        Refusal::Draining,
        Refusal::NodeCalls,
        Refusal::TrunkCalls,
        Refusal::NodeRate,
        Refusal::TrunkRate,
        Refusal::Capacity,
        Refusal::Shed,
    ];

    /// Position in [`Refusal::ALL`] (and in per-cause counters).
    pub fn index(self) -> usize {
        Refusal::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }

    /// Stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::UnknownSource => "unknown_source",
            Refusal::Draining => "draining",
            Refusal::NodeCalls => "node_calls",
            Refusal::TrunkCalls => "trunk_calls",
            Refusal::NodeRate => "node_rate",
            Refusal::TrunkRate => "trunk_rate",
            Refusal::Capacity => "capacity",
            Refusal::Shed => "shed",
        }
    }
}

/// How a statelessly refused INVITE was answered, so a retransmission of it gets the
/// same answer (the call is never admitted halfway through its own retransmissions).
#[derive(Clone, Copy, Debug)]
pub(crate) enum RefusalMemo {
    /// Refused by admission: rebuilt from the policy (deterministic bytes).
    Policy {
        trunk: Option<TrunkId>,
        why: Refusal,
    },
    /// Refused by the re-attempt policy with exactly this status and Retry-After.
    Status { status: u16, retry_after: u32 },
}

/// One engine's view of admission: the shared ledger plus what is per engine (the
/// classifier, the protected set).
#[derive(Debug)]
pub(crate) struct Admission {
    pub(crate) ledger: Arc<NodeLedger>,
    classifier: Classifier,
    protected: HashSet<String>,
    watermark: f64,
}

impl Admission {
    pub(crate) fn new(
        cfg: &AdmissionConfig,
        ledger: Arc<NodeLedger>,
        plan: &crate::route::NumberPlan,
    ) -> Self {
        let trunks: Vec<(TrunkId, &[Source])> = cfg
            .trunks
            .iter()
            .enumerate()
            .map(|(i, t)| (i, &t.sources[..]))
            .collect();
        let fallback = cfg
            .unknown_sources
            .as_ref()
            .and_then(|n| cfg.trunks.iter().position(|t| &t.name == n));
        Admission {
            ledger,
            classifier: Classifier::new(&trunks, fallback),
            protected: cfg
                .protected_numbers
                .iter()
                .filter_map(|n| crate::route::normalize(n.as_bytes(), plan))
                .collect(),
            watermark: cfg.shed_watermark,
        }
    }

    pub(crate) fn classify(&self, remote: std::net::SocketAddr) -> Option<TrunkId> {
        self.classifier.classify(remote)
    }

    pub(crate) fn is_protected(&self, number: Option<&str>) -> bool {
        number.is_some_and(|n| self.protected.contains(n))
    }

    /// The highest share of any limit in use for a call on `trunk` at `now` (ns on
    /// the ledger clock): concurrency and rate, node and trunk, and the adaptive rate.
    pub(crate) fn pressure(&self, now: u64, trunk: TrunkId) -> f64 {
        let l = &self.ledger;
        let ratio =
            |active: u32, max: Option<u32>| max.map_or(0.0, |m| active as f64 / m.max(1) as f64);
        let mut p = ratio(l.active.load(Ordering::Relaxed), l.max_calls);
        if let Some(r) = &l.rate {
            p = p.max(r.fill(now));
        }
        if l.adaptive_on.load(Ordering::Relaxed) {
            p = p.max(l.adaptive.fill(now));
        }
        if let Some(t) = l.trunks.get(trunk) {
            p = p.max(ratio(t.active.load(Ordering::Relaxed), t.max_calls));
            if let Some(r) = &t.rate {
                p = p.max(r.fill(now));
            }
        }
        p
    }

    /// The probability with which a new call on `trunk` is shed now (also the RFC 7339
    /// loss rate the node asks for).
    pub(crate) fn shed_probability(&self, now: u64, trunk: TrunkId) -> f64 {
        let p = self.pressure(now, trunk);
        if p <= self.watermark {
            return 0.0;
        }
        ((p - self.watermark) / (1.0 - self.watermark).max(1e-9)).min(1.0)
    }

    /// Decides on a new call from `trunk`. Protected calls skip shedding, rates and
    /// concurrency limits; the tables' own bounds still apply to them.
    pub(crate) fn admit(
        &self,
        now: u64,
        trunk: TrunkId,
        protected: bool,
        rng: &mut Rng,
    ) -> Result<Slot, Refusal> {
        let l = &self.ledger;
        if l.draining.load(Ordering::Acquire) {
            return Err(Refusal::Draining);
        }
        if protected {
            return l.acquire(trunk, true).map_err(|_| Refusal::NodeCalls);
        }
        let shed = self.shed_probability(now, trunk);
        if shed > 0.0 && rng.next_f64() < shed {
            return Err(Refusal::Shed);
        }
        // The rates count admitted calls: a token taken for a call that a later check
        // refuses is given back, so refusals never spend another limit's allowance.
        let adaptive = l.adaptive_on.load(Ordering::Acquire);
        let rates = [
            (
                l.trunks.get(trunk).and_then(|t| t.rate.as_ref()),
                Refusal::TrunkRate,
            ),
            (l.rate.as_ref(), Refusal::NodeRate),
            (adaptive.then_some(&l.adaptive), Refusal::Capacity),
        ];
        let give_back = |taken: &[(Option<&gcra::Gcra>, Refusal)]| {
            taken
                .iter()
                .filter_map(|(g, _)| *g)
                .for_each(|g| g.give_back());
        };
        for (i, (rate, why)) in rates.iter().enumerate() {
            if let Some(r) = rate
                && !r.try_take(now)
            {
                give_back(&rates[..i]);
                return Err(*why);
            }
        }
        l.acquire(trunk, false).map_err(|f| {
            give_back(&rates);
            match f {
                Full::Node => Refusal::NodeCalls,
                Full::Trunk => Refusal::TrunkCalls,
            }
        })
    }
}
