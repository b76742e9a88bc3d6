//! The capacity ledger: concurrent calls node-wide, per trunk and per destination, and
//! the rate limiters, shared by every engine on a node. A call holds a [`Slot`] from
//! admission to its end; dropping the slot releases it, so each slot is released
//! exactly once on every path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

use super::feedback::Feedback;
use super::gcra::Gcra;
use super::trunk::TrunkId;
use crate::config::{Config, ConfigError};

#[derive(Debug)]
pub(crate) struct TrunkLedger {
    pub(crate) active: AtomicU32,
    pub(crate) max_calls: Option<u32>,
    pub(crate) rate: Option<Gcra>,
}

/// Node-wide accounting, shared by the engines of one node (one per core). Build it
/// once with [`NodeLedger::new`] and give a clone of the `Arc` to each engine with
/// [`Engine::with_ledger`](crate::Engine::with_ledger); limits then hold node-wide.
#[derive(Debug)]
pub struct NodeLedger {
    epoch: Instant,
    pub(crate) active: AtomicU32,
    pub(crate) max_calls: Option<u32>,
    pub(crate) rate: Option<Gcra>,
    /// The limit load feedback adapts; enforced only while `adaptive_on`.
    pub(crate) adaptive: Gcra,
    pub(crate) adaptive_on: AtomicBool,
    pub(crate) feedback: Mutex<Feedback>,
    pub(crate) trunks: Box<[TrunkLedger]>,
    targets: Mutex<HashMap<SocketAddr, u32>>,
    max_per_target: Option<u32>,
    pub(crate) draining: AtomicBool,
    /// Calls admitted since the ledger was made (for the measured rate).
    pub(crate) admitted: AtomicU64,
    /// Fingerprint of the admission config, so engines cannot attach with another.
    fingerprint: u64,
}

fn fingerprint(config: &Config) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{:?}", config.admission).hash(&mut h);
    h.finish()
}

impl NodeLedger {
    /// A ledger for the admission settings of `config`; time on it starts at `now`.
    pub fn new(config: &Config, now: Instant) -> Result<Arc<NodeLedger>, ConfigError> {
        config.validate()?;
        let a = &config.admission;
        let trunks = a
            .trunks
            .iter()
            .map(|t| TrunkLedger {
                active: AtomicU32::new(0),
                max_calls: t.max_calls,
                rate: t.calls_per_second.map(|r| Gcra::new(r, t.burst)),
            })
            .collect();
        Ok(Arc::new(NodeLedger {
            epoch: now,
            active: AtomicU32::new(0),
            max_calls: a.max_calls,
            rate: a.calls_per_second.map(|r| Gcra::new(r, a.burst)),
            adaptive: Gcra::new(a.calls_per_second.unwrap_or(1000.0), a.burst),
            adaptive_on: AtomicBool::new(false),
            feedback: Mutex::new(Feedback::new(&a.feedback, a.calls_per_second)),
            trunks,
            targets: Mutex::new(HashMap::new()),
            max_per_target: a.max_calls_per_target,
            draining: AtomicBool::new(false),
            admitted: AtomicU64::new(0),
            fingerprint: fingerprint(config),
        }))
    }

    pub(crate) fn check_config(&self, config: &Config) -> Result<(), ConfigError> {
        if self.fingerprint != fingerprint(config) {
            return Err(ConfigError::new(
                "admission",
                "differs from the config the shared ledger was built with",
            ));
        }
        Ok(())
    }

    /// Nanoseconds on the ledger's clock.
    pub(crate) fn ns(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch)
            .as_nanos()
            .min(u64::MAX as u128) as u64
    }

    /// Calls holding a slot node-wide.
    pub fn active_calls(&self) -> u32 {
        self.active.load(Ordering::Acquire)
    }

    /// Calls holding a slot on trunk `trunk` (0 for an unknown trunk).
    pub fn trunk_active_calls(&self, trunk: TrunkId) -> u32 {
        self.trunks
            .get(trunk)
            .map_or(0, |t| t.active.load(Ordering::Acquire))
    }

    /// Calls set up or connected through destination `target`.
    pub fn target_active_calls(&self, target: SocketAddr) -> u32 {
        self.targets.lock().get(&target).copied().unwrap_or(0)
    }

    /// Whether the node is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The rate load feedback currently admits, if it is limiting.
    pub fn adaptive_rate(&self) -> Option<f64> {
        self.adaptive_on
            .load(Ordering::Acquire)
            .then(|| self.adaptive.rate())
    }

    /// Takes a slot if node and trunk concurrency allow (always for `force`).
    pub(crate) fn acquire(self: &Arc<Self>, trunk: TrunkId, force: bool) -> Result<Slot, Full> {
        let node_max = if force { None } else { self.max_calls };
        if !increment_below(&self.active, node_max) {
            return Err(Full::Node);
        }
        if let Some(t) = self.trunks.get(trunk) {
            let max = if force { None } else { t.max_calls };
            if !increment_below(&t.active, max) {
                decrement(&self.active);
                return Err(Full::Trunk);
            }
        }
        self.admitted.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            ledger: self.clone(),
            trunk,
        })
    }

    /// Takes a slot on a destination; `None` when the destination is at its limit.
    pub(crate) fn acquire_target(self: &Arc<Self>, addr: SocketAddr) -> Option<TargetSlot> {
        let mut t = self.targets.lock();
        let n = t.entry(addr).or_insert(0);
        if self.max_per_target.is_some_and(|m| *n >= m) {
            return None;
        }
        *n += 1;
        Some(TargetSlot {
            ledger: self.clone(),
            addr,
        })
    }

    fn release_target(&self, addr: SocketAddr) {
        let mut t = self.targets.lock();
        if let Some(n) = t.get_mut(&addr) {
            debug_assert!(*n > 0, "target slot released twice");
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.remove(&addr);
            }
        }
    }
}

/// Which concurrency limit refused a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Full {
    Node,
    Trunk,
}

/// Increments `c` if it is below `max` (or unconditionally without one).
fn increment_below(c: &AtomicU32, max: Option<u32>) -> bool {
    c.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| match max {
        Some(m) if n >= m => None,
        _ => n.checked_add(1),
    })
    .is_ok()
}

/// Decrements `c`, never below zero.
fn decrement(c: &AtomicU32) {
    let r = c.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    debug_assert!(r.is_ok(), "capacity counter would underflow");
}

/// A call's place in the node's capacity. Released when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    ledger: Arc<NodeLedger>,
    pub(crate) trunk: TrunkId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        decrement(&self.ledger.active);
        if let Some(t) = self.ledger.trunks.get(self.trunk) {
            decrement(&t.active);
        }
    }
}

/// A call's place on a destination. Released when dropped.
#[derive(Debug)]
pub(crate) struct TargetSlot {
    ledger: Arc<NodeLedger>,
    addr: SocketAddr,
}

impl Drop for TargetSlot {
    fn drop(&mut self) {
        self.ledger.release_target(self.addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::TrunkConfig;

    fn ledger(max: Option<u32>, trunk_max: Option<u32>) -> Arc<NodeLedger> {
        let mut c = Config::default();
        c.admission.max_calls = max;
        c.admission.trunks = vec![TrunkConfig {
            max_calls: trunk_max,
            ..TrunkConfig::new("t")
        }];
        c.admission.unknown_sources = Some("t".into());
        NodeLedger::new(&c, Instant::now()).unwrap()
    }

    #[test]
    fn slots_count_and_release_exactly_once() {
        let l = ledger(Some(2), Some(5));
        let a = l.acquire(0, false).unwrap();
        let b = l.acquire(0, false).unwrap();
        assert_eq!(l.acquire(0, false).unwrap_err(), Full::Node);
        assert_eq!((l.active_calls(), l.trunk_active_calls(0)), (2, 2));
        drop(a);
        assert_eq!((l.active_calls(), l.trunk_active_calls(0)), (1, 1));
        let forced = l.acquire(0, true).unwrap();
        let forced2 = l.acquire(0, true).unwrap();
        assert_eq!(
            l.active_calls(),
            3,
            "protected calls go over the soft limit"
        );
        drop((b, forced, forced2));
        assert_eq!((l.active_calls(), l.trunk_active_calls(0)), (0, 0));
    }

    #[test]
    fn trunk_limit_refuses_without_leaking_the_node_slot() {
        let l = ledger(None, Some(1));
        let _a = l.acquire(0, false).unwrap();
        assert_eq!(l.acquire(0, false).unwrap_err(), Full::Trunk);
        assert_eq!(l.active_calls(), 1);
    }

    #[test]
    fn target_slots() {
        let mut c = Config::default();
        c.admission.max_calls_per_target = Some(1);
        let l = NodeLedger::new(&c, Instant::now()).unwrap();
        let addr: SocketAddr = "192.0.2.20:5080".parse().unwrap();
        let s = l.acquire_target(addr).unwrap();
        assert!(l.acquire_target(addr).is_none());
        assert_eq!(l.target_active_calls(addr), 1);
        drop(s);
        assert_eq!(l.target_active_calls(addr), 0);
    }
}
