//! The fleet view: node reports in, a global bypass decision and a deploy budget out.
//! Pure: no I/O, no clock — the caller passes reports and the current time.
//!
//! How reports travel is the host's choice. One concrete way: every node writes its
//! [`NodeReport::render`] line once per second to a shared key-value store under
//! `ringfence/nodes/<node>` with an expiry of the report's TTL (Redis `SET key line PX
//! ttl`), and any node (or the deploy tool) reads `ringfence/nodes/*`, feeds each line
//! to [`Fleet::update`] and calls [`Fleet::evaluate`] and [`Fleet::deploy_budget`]. The
//! global bypass line goes to `ringfence/bypass` for the web tier.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::HealthState;
use super::text::{Fields, TextError, is_token};

/// One node's state as the fleet sees it. Text form (version 1, one line):
///
/// ```text
/// v=1 node=edge-1 state=healthy score=0.980 capacity_cps=80.0 active=120 cps=61.5 draining=0 issued_at_ms=1732420000000 ttl_ms=15000
/// ```
///
/// `capacity_cps` is the call rate the node can really take, as load feedback measured
/// it (not the configured limit); `cps` is the rate of new calls offered to it now.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeReport {
    /// Node name (a token: no spaces or `=`).
    pub node: String,
    /// The node's health state.
    pub state: HealthState,
    /// Its health score.
    pub score: f64,
    /// New calls per second it can take.
    pub capacity_cps: f64,
    /// Calls in progress.
    pub active_calls: u64,
    /// New calls per second offered to it now.
    pub calls_per_second: f64,
    /// Whether it is draining.
    pub draining: bool,
    /// When it was issued (Unix ms, host clock).
    pub issued_at_ms: u64,
    /// How long it is valid (ms); a stale report counts as the node being gone.
    pub ttl_ms: u64,
}

impl NodeReport {
    /// The one-line text form (no line end).
    pub fn render(&self) -> String {
        format!(
            "v=1 node={} state={} score={:.3} capacity_cps={:.1} active={} cps={:.1} draining={} issued_at_ms={} ttl_ms={}",
            self.node,
            self.state.label(),
            self.score,
            self.capacity_cps,
            self.active_calls,
            self.calls_per_second,
            u8::from(self.draining),
            self.issued_at_ms,
            self.ttl_ms
        )
    }

    /// Reads the text form; rejects anything else with the reason.
    pub fn parse(line: &str) -> Result<NodeReport, TextError> {
        let f = Fields::parse(
            line,
            &[
                "node",
                "state",
                "score",
                "capacity_cps",
                "active",
                "cps",
                "draining",
                "issued_at_ms",
                "ttl_ms",
            ],
        )?;
        let node = f.str("node")?;
        let state_s = f.str("state")?;
        let state = HealthState::from_label(state_s).ok_or(TextError::BadValue {
            key: "state",
            value: state_s.to_owned(),
        })?;
        let finite = |key: &'static str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(v)
            } else {
                Err(TextError::BadValue {
                    key,
                    value: v.to_string(),
                })
            }
        };
        Ok(NodeReport {
            node: node.to_owned(),
            state,
            score: finite("score", f.num("score")?)?,
            capacity_cps: finite("capacity_cps", f.num("capacity_cps")?)?,
            active_calls: f.num("active")?,
            calls_per_second: finite("cps", f.num("cps")?)?,
            draining: f.flag("draining")?,
            issued_at_ms: f.num("issued_at_ms")?,
            ttl_ms: f.num("ttl_ms")?,
        })
    }

    /// Whether the report is older than its time-to-live at `now_ms`.
    pub fn is_stale(&self, now_ms: u64) -> bool {
        now_ms > self.issued_at_ms.saturating_add(self.ttl_ms)
    }
}

/// Fleet settings.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetConfig {
    /// Global bypass when serving capacity is below this share of demand (default 0.9).
    pub bypass_capacity_ratio: f64,
    /// Global bypass is left when capacity is at least this share of demand (1.0).
    pub recover_capacity_ratio: f64,
    /// Global bypass when at least this share of live nodes is in bypass (0.5).
    pub bypass_node_share: f64,
    /// Demand samples kept for the recent peak (default 15 minutes).
    pub peak_window: Duration,
    /// A worse decision must persist this long (default 2 s).
    pub worsen_after: Duration,
    /// A better decision must persist this long (default 20 s).
    pub improve_after: Duration,
    /// No decision is left sooner than this (default 10 s).
    pub min_dwell: Duration,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            bypass_capacity_ratio: 0.9,
            recover_capacity_ratio: 1.0,
            bypass_node_share: 0.5,
            peak_window: Duration::from_secs(15 * 60),
            worsen_after: Duration::from_secs(2),
            improve_after: Duration::from_secs(20),
            min_dwell: Duration::from_secs(10),
        }
    }
}

/// The fleet's verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetDecision {
    /// Whether websites should bypass tracking numbers everywhere.
    pub bypass: bool,
    /// Why (`ok`, `capacity`, `nodes`).
    pub reason: &'static str,
    /// Capacity of live, serving nodes (calls/s).
    pub serving_capacity: f64,
    /// Demand on the fleet now (calls/s).
    pub demand: f64,
    /// Live nodes (fresh reports).
    pub live_nodes: usize,
    /// Live nodes in bypass.
    pub nodes_in_bypass: usize,
    /// `Some(bypass)` when the decision just changed.
    pub changed: Option<bool>,
}

/// How much of the fleet can be drained now.
#[derive(Clone, Debug, PartialEq)]
pub struct DeployBudget {
    /// Nodes that can be drained now, in the order to drain them (fewest calls first);
    /// empty when none can.
    pub nodes: Vec<String>,
    /// The demand the rest must carry: the higher of now and the recent peak.
    pub peak_demand: f64,
    /// Serving capacity now.
    pub capacity: f64,
    /// Serving capacity left after draining `nodes`.
    pub capacity_after: f64,
    /// The utilisation the rest may reach.
    pub target_utilisation: f64,
}

impl DeployBudget {
    /// How many nodes can be drained now.
    pub fn max(&self) -> usize {
        self.nodes.len()
    }
}

/// Aggregates node reports into a global bypass decision (with the same hysteresis
/// and dwell discipline as a node) and answers deploy questions.
#[derive(Debug)]
pub struct Fleet {
    cfg: FleetConfig,
    nodes: BTreeMap<String, NodeReport>,
    demand: VecDeque<(u64, f64)>,
    bypass: bool,
    since_ms: u64,
    pending: Option<(bool, u64)>,
}

impl Fleet {
    /// An empty fleet.
    pub fn new(cfg: FleetConfig) -> Fleet {
        Fleet {
            cfg,
            nodes: BTreeMap::new(),
            demand: VecDeque::new(),
            bypass: false,
            since_ms: 0,
            pending: None,
        }
    }

    /// Adds or replaces a node's report. Names must be tokens (no spaces or `=`).
    pub fn update(&mut self, report: NodeReport) -> Result<(), TextError> {
        if !is_token(&report.node) {
            return Err(TextError::BadValue {
                key: "node",
                value: report.node,
            });
        }
        self.nodes.insert(report.node.clone(), report);
        Ok(())
    }

    /// Forgets a node (it left the fleet).
    pub fn remove(&mut self, node: &str) {
        self.nodes.remove(node);
    }

    fn live(&self, now_ms: u64) -> impl Iterator<Item = &NodeReport> {
        self.nodes.values().filter(move |n| !n.is_stale(now_ms))
    }

    fn serving(n: &NodeReport) -> bool {
        !n.draining && n.state != HealthState::Bypass
    }

    /// Demand on the fleet now, and the recent peak.
    fn demand(&mut self, now_ms: u64) -> (f64, f64) {
        let now: f64 = self.live(now_ms).map(|n| n.calls_per_second).sum();
        let window = self.cfg.peak_window.as_millis() as u64;
        self.demand.push_back((now_ms, now));
        while self
            .demand
            .front()
            .is_some_and(|(t, _)| t + window < now_ms)
        {
            self.demand.pop_front();
        }
        let peak = self.demand.iter().map(|(_, d)| *d).fold(now, f64::max);
        (now, peak)
    }

    /// Re-evaluates the global bypass at `now_ms`.
    pub fn evaluate(&mut self, now_ms: u64) -> FleetDecision {
        let (demand, _) = self.demand(now_ms);
        let live: Vec<&NodeReport> = self.live(now_ms).collect();
        let serving_capacity: f64 = live
            .iter()
            .filter(|n| Self::serving(n))
            .map(|n| n.capacity_cps)
            .sum();
        let nodes_in_bypass = live
            .iter()
            .filter(|n| n.state == HealthState::Bypass)
            .count();
        let live_nodes = live.len();
        let share = if live_nodes == 0 {
            1.0
        } else {
            nodes_in_bypass as f64 / live_nodes as f64
        };
        let ratio = if demand > 0.0 {
            serving_capacity / demand
        } else {
            f64::INFINITY
        };
        let by_nodes = live_nodes == 0 || share >= self.cfg.bypass_node_share;
        let wanted = if self.bypass {
            by_nodes || ratio < self.cfg.recover_capacity_ratio
        } else {
            by_nodes || ratio < self.cfg.bypass_capacity_ratio
        };
        let reason = if !wanted {
            "ok"
        } else if by_nodes {
            "nodes"
        } else {
            "capacity"
        };
        let mut changed = None;
        if wanted == self.bypass {
            self.pending = None;
        } else {
            let since = match self.pending {
                Some((w, t)) if w == wanted => t,
                _ => {
                    self.pending = Some((wanted, now_ms));
                    now_ms
                }
            };
            let hold = if wanted {
                self.cfg.worsen_after
            } else {
                self.cfg.improve_after
            };
            let held = now_ms.saturating_sub(since) >= hold.as_millis() as u64;
            let dwelt =
                now_ms.saturating_sub(self.since_ms) >= self.cfg.min_dwell.as_millis() as u64;
            if held && dwelt {
                self.bypass = wanted;
                self.since_ms = now_ms;
                self.pending = None;
                changed = Some(wanted);
            }
        }
        FleetDecision {
            bypass: self.bypass,
            reason,
            serving_capacity,
            demand,
            live_nodes,
            nodes_in_bypass,
            changed,
        }
    }

    /// How many (and which) nodes can be drained now while the rest stay at or under
    /// `target_utilisation` of their measured capacity at the current and the recent
    /// peak demand. Nodes already draining count as gone.
    pub fn deploy_budget(&mut self, now_ms: u64, target_utilisation: f64) -> DeployBudget {
        let (_, peak) = self.demand(now_ms);
        let mut candidates: Vec<&NodeReport> =
            self.live(now_ms).filter(|n| Self::serving(n)).collect();
        let capacity: f64 = candidates.iter().map(|n| n.capacity_cps).sum();
        candidates.sort_by(|a, b| {
            a.active_calls
                .cmp(&b.active_calls)
                .then(a.node.cmp(&b.node))
        });
        let needed = peak / target_utilisation.max(1e-9);
        let mut left = capacity;
        let mut nodes = Vec::new();
        for n in candidates {
            if left - n.capacity_cps < needed {
                break;
            }
            left -= n.capacity_cps;
            nodes.push(n.node.clone());
        }
        DeployBudget {
            nodes,
            peak_demand: peak,
            capacity,
            capacity_after: left,
            target_utilisation,
        }
    }

    /// May `node` be taken out now? `Err` says why not.
    pub fn may_drain(
        &mut self,
        now_ms: u64,
        node: &str,
        target_utilisation: f64,
    ) -> Result<(), String> {
        let Some(report) = self.nodes.get(node).filter(|n| !n.is_stale(now_ms)) else {
            return Err(format!("{node} has no fresh report"));
        };
        if report.draining {
            return Err(format!("{node} is already draining"));
        }
        let own = if Self::serving(report) {
            report.capacity_cps
        } else {
            0.0
        };
        let b = self.deploy_budget(now_ms, target_utilisation);
        let needed = b.peak_demand / target_utilisation.max(1e-9);
        if b.capacity - own >= needed {
            Ok(())
        } else {
            Err(format!(
                "the rest would have {:.0} calls/s of capacity for a peak of {:.0} calls/s at {:.0}% utilisation (needs {:.0})",
                b.capacity - own,
                b.peak_demand,
                target_utilisation * 100.0,
                needed
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, capacity: f64, cps: f64, active: u64) -> NodeReport {
        NodeReport {
            node: name.into(),
            state: HealthState::Healthy,
            score: 1.0,
            capacity_cps: capacity,
            active_calls: active,
            calls_per_second: cps,
            draining: false,
            issued_at_ms: 1_000_000,
            ttl_ms: 15_000,
        }
    }

    #[test]
    fn the_incident_deploy_is_flagged_unsafe() {
        // Six nodes configured for 100 calls/s, really good for 80 (load feedback
        // measured it); 360 calls/s of demand. Draining a third leaves 320 calls/s of
        // real capacity for a demand that needs 400 at 90% utilisation.
        let mut f = Fleet::new(FleetConfig::default());
        for i in 0..6 {
            f.update(node(&format!("n{i}"), 80.0, 60.0, 100 + i))
                .unwrap();
        }
        let b = f.deploy_budget(1_000_000, 0.9);
        assert!(b.max() < 2, "{b:?}");
        assert_eq!(b.max(), 1);
        assert_eq!(b.nodes, ["n0"], "the node with the fewest calls first");
        assert!(f.may_drain(1_000_000, "n0", 0.9).is_ok());
        f.update(NodeReport {
            draining: true,
            ..node("n0", 80.0, 60.0, 100)
        })
        .unwrap();
        let e = f.may_drain(1_000_000, "n1", 0.9).unwrap_err();
        assert!(e.contains("needs 400"), "{e}");
        // With the configured capacity the same deploy would have looked fine.
        let mut naive = Fleet::new(FleetConfig::default());
        for i in 0..6 {
            naive
                .update(node(&format!("n{i}"), 100.0, 60.0, 0))
                .unwrap();
        }
        assert!(naive.deploy_budget(1_000_000, 0.9).max() >= 2);
    }

    #[test]
    fn recent_peak_counts_not_just_now() {
        let mut f = Fleet::new(FleetConfig::default());
        for i in 0..4 {
            f.update(node(&format!("n{i}"), 100.0, 90.0, 0)).unwrap();
        }
        assert_eq!(
            f.deploy_budget(1_000_000, 1.0).max(),
            0,
            "peak 360 needs all 400"
        );
        for i in 0..4 {
            f.update(NodeReport {
                issued_at_ms: 1_060_000,
                ..node(&format!("n{i}"), 100.0, 10.0, 0)
            })
            .unwrap();
        }
        assert_eq!(
            f.deploy_budget(1_060_000, 1.0).max(),
            0,
            "the peak a minute ago still counts"
        );
    }

    #[test]
    fn global_bypass_with_hysteresis_and_stale_nodes() {
        let cfg = FleetConfig::default();
        let mut f = Fleet::new(cfg);
        let mut t = 1_000_000;
        for i in 0..4 {
            f.update(node(&format!("n{i}"), 100.0, 50.0, 0)).unwrap();
        }
        assert!(!f.evaluate(t).bypass);
        // Two nodes go into bypass: capacity 200 for demand 200 is fine, but half the
        // nodes are in bypass.
        for i in 0..2 {
            f.update(NodeReport {
                state: HealthState::Bypass,
                issued_at_ms: t,
                ..node(&format!("n{i}"), 100.0, 50.0, 0)
            })
            .unwrap();
        }
        let mut changed_at = None;
        for _ in 0..50 {
            t += 500;
            if let Some(true) = f.evaluate(t).changed {
                changed_at = Some(t);
            }
        }
        assert!(changed_at.is_some());
        assert_eq!(f.evaluate(t).reason, "nodes");
        // Reports stop: every node goes stale, the fleet stays in bypass (fail open).
        t += 60_000;
        let d = f.evaluate(t);
        assert!(d.bypass && d.live_nodes == 0);
    }

    #[test]
    fn reports_round_trip_and_bad_lines_are_refused() {
        let r = NodeReport {
            draining: true,
            state: HealthState::Degraded,
            score: 0.5,
            ..node("edge-7", 80.5, 61.5, 120)
        };
        let line = r.render();
        assert_eq!(
            line,
            "v=1 node=edge-7 state=degraded score=0.500 capacity_cps=80.5 active=120 cps=61.5 draining=1 issued_at_ms=1000000 ttl_ms=15000"
        );
        assert_eq!(NodeReport::parse(&line).unwrap(), r);
        assert!(NodeReport::parse(&line.replace("cps=61.5", "cps=-1")).is_err());
        assert!(NodeReport::parse(&line.replace("draining=1", "draining=yes")).is_err());
        assert!(
            Fleet::new(FleetConfig::default())
                .update(node("has space", 1.0, 1.0, 0))
                .is_err()
        );
    }
}
