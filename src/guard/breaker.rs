//! Circuit breakers per destination: consecutive failures or timeouts open a
//! destination's breaker and it is skipped; after a cool-down it goes half-open and
//! the engine probes it with OPTIONS; a good answer closes it. A downstream 503 with
//! Retry-After opens it for exactly that long.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::time::Time;

/// Breaker settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures (5xx other than a 503 with Retry-After) that open it.
    pub failures: u32,
    /// Consecutive timeouts that open it.
    pub timeouts: u32,
    /// How long it stays open before the probe.
    pub cool_down: Duration,
    /// Whether half-open destinations are probed with OPTIONS (otherwise the next call
    /// is the probe).
    pub probe: bool,
    /// Destinations tracked at most (closed, healthy ones are forgotten first).
    pub capacity: usize,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            timeouts: 3,
            cool_down: Duration::from_secs(30),
            probe: true,
            capacity: 10_000,
        }
    }
}

/// A breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// The destination is skipped.
    Open,
    /// Cool-down over: the destination is being probed; calls still skip it.
    HalfOpen,
}

#[derive(Clone, Copy, Debug)]
struct Breaker {
    state: BreakerState,
    failures: u32,
    timeouts: u32,
    open_until: Time,
}

#[derive(Debug)]
pub(crate) struct Breakers {
    cfg: BreakerConfig,
    map: HashMap<SocketAddr, Breaker>,
}

/// A state change to report.
pub(crate) type Transition = (SocketAddr, BreakerState);

impl Breakers {
    pub(crate) fn new(cfg: &BreakerConfig) -> Self {
        Breakers {
            cfg: cfg.clone(),
            map: HashMap::new(),
        }
    }

    pub(crate) fn state(&self, target: SocketAddr) -> BreakerState {
        self.map
            .get(&target)
            .map_or(BreakerState::Closed, |b| b.state)
    }

    /// Whether calls may use `target` now.
    pub(crate) fn allows(&self, target: SocketAddr) -> bool {
        self.state(target) == BreakerState::Closed
    }

    fn entry(&mut self, target: SocketAddr) -> &mut Breaker {
        if !self.map.contains_key(&target) && self.map.len() >= self.cfg.capacity {
            // Forget a healthy destination to make room; failing ones stay tracked.
            if let Some(k) = self
                .map
                .iter()
                .find(|(_, b)| b.state == BreakerState::Closed)
                .map(|(k, _)| *k)
            {
                self.map.remove(&k);
            }
        }
        self.map.entry(target).or_insert(Breaker {
            state: BreakerState::Closed,
            failures: 0,
            timeouts: 0,
            open_until: Time::ZERO,
        })
    }

    /// The destination answered sensibly (anything but a server failure or timeout).
    /// An open breaker stays open: such an answer belongs to a request sent before it
    /// opened (a call ringing there, say), and says nothing against the Retry-After or
    /// the failures that opened it. Only the half-open probe closes it.
    pub(crate) fn success(&mut self, target: SocketAddr) -> Option<Transition> {
        let b = self.map.get_mut(&target)?;
        match b.state {
            BreakerState::Open => None,
            BreakerState::Closed => {
                self.map.remove(&target);
                None
            }
            BreakerState::HalfOpen => {
                self.map.remove(&target);
                Some((target, BreakerState::Closed))
            }
        }
    }

    /// A server failure (`timeout`: no answer at all).
    pub(crate) fn failure(
        &mut self,
        target: SocketAddr,
        timeout: bool,
        now: Time,
    ) -> Option<Transition> {
        let cool = self.cfg.cool_down;
        let (fail_max, timeout_max) = (self.cfg.failures, self.cfg.timeouts);
        let b = self.entry(target);
        if timeout {
            b.timeouts += 1;
        } else {
            b.failures += 1;
        }
        let trip = b.state == BreakerState::HalfOpen
            || b.failures >= fail_max
            || b.timeouts >= timeout_max;
        if trip && b.state != BreakerState::Open {
            b.state = BreakerState::Open;
            b.open_until = now + cool;
            return Some((target, BreakerState::Open));
        }
        None
    }

    /// The destination said it is unavailable for `for_` (a 503 with Retry-After).
    pub(crate) fn unavailable(
        &mut self,
        target: SocketAddr,
        for_: Duration,
        now: Time,
    ) -> Option<Transition> {
        let b = self.entry(target);
        let was = b.state;
        b.state = BreakerState::Open;
        b.open_until = b.open_until.max(now + for_);
        (was != BreakerState::Open).then_some((target, BreakerState::Open))
    }

    /// Moves breakers whose cool-down ended to half-open; returns them (to probe).
    pub(crate) fn due(&mut self, now: Time) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for (t, b) in self.map.iter_mut() {
            if b.state == BreakerState::Open && b.open_until <= now {
                b.state = BreakerState::HalfOpen;
                out.push(*t);
            }
        }
        out.sort();
        out
    }

    /// When the next open breaker's cool-down ends.
    pub(crate) fn next_due(&self) -> Option<Time> {
        self.map
            .values()
            .filter(|b| b.state == BreakerState::Open)
            .map(|b| b.open_until)
            .min()
    }

    /// How long until the first of `targets` whose breaker is open may be tried again
    /// (its cool-down or the Retry-After it gave); `None` if none is open.
    pub(crate) fn reopens_in(
        &self,
        targets: impl Iterator<Item = SocketAddr>,
        now: Time,
    ) -> Option<Duration> {
        targets
            .filter_map(|t| self.map.get(&t))
            .filter(|b| b.state == BreakerState::Open)
            .map(|b| b.open_until.saturating_since(now))
            .min()
    }

    /// Destinations whose breaker is open or half-open.
    pub(crate) fn open_count(&self) -> usize {
        self.map
            .values()
            .filter(|b| b.state != BreakerState::Closed)
            .count()
    }

    pub(crate) fn probing(&self) -> bool {
        self.cfg.probe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> Time {
        Time::ZERO + Duration::from_secs(s)
    }

    #[test]
    fn opens_after_consecutive_failures_half_opens_after_cool_down_closes_on_success() {
        let a: SocketAddr = "192.0.2.20:5080".parse().unwrap();
        let mut b = Breakers::new(&BreakerConfig::default());
        for _ in 0..4 {
            assert_eq!(b.failure(a, false, t(0)), None);
        }
        assert!(b.allows(a));
        assert_eq!(b.failure(a, false, t(1)), Some((a, BreakerState::Open)));
        assert!(!b.allows(a));
        assert_eq!(b.next_due(), Some(t(31)));
        assert!(b.due(t(30)).is_empty());
        assert_eq!(b.due(t(31)), [a]);
        assert_eq!(b.state(a), BreakerState::HalfOpen);
        assert!(!b.allows(a), "half-open is probed, not used");
        assert_eq!(b.success(a), Some((a, BreakerState::Closed)));
        assert!(b.allows(a));
    }

    #[test]
    fn a_success_resets_the_count_and_a_failed_probe_reopens() {
        let a: SocketAddr = "192.0.2.20:5080".parse().unwrap();
        let mut b = Breakers::new(&BreakerConfig::default());
        b.failure(a, true, t(0));
        b.failure(a, true, t(0));
        b.success(a);
        assert_eq!(b.failure(a, true, t(0)), None, "count restarted");
        b.failure(a, true, t(0));
        assert_eq!(b.failure(a, true, t(0)), Some((a, BreakerState::Open)));
        b.due(t(30));
        assert_eq!(b.failure(a, true, t(30)), Some((a, BreakerState::Open)));
    }

    #[test]
    fn retry_after_opens_for_that_long() {
        let a: SocketAddr = "192.0.2.20:5080".parse().unwrap();
        let mut b = Breakers::new(&BreakerConfig::default());
        assert_eq!(
            b.unavailable(a, Duration::from_secs(120), t(0)),
            Some((a, BreakerState::Open))
        );
        assert_eq!(b.next_due(), Some(t(120)));
        // A ringing call's 180 from before the 503 does not cut the wait short.
        assert_eq!(b.success(a), None);
        assert!(!b.allows(a));
        assert_eq!(b.due(t(120)), [a]);
        assert_eq!(b.success(a), Some((a, BreakerState::Closed)));
        assert!(b.allows(a));
    }

    #[test]
    fn an_open_breaker_ignores_late_successes_until_its_probe() {
        let a: SocketAddr = "192.0.2.20:5080".parse().unwrap();
        let mut b = Breakers::new(&BreakerConfig::default());
        for _ in 0..3 {
            b.failure(a, true, t(0));
        }
        assert_eq!(b.state(a), BreakerState::Open);
        assert_eq!(b.success(a), None);
        assert_eq!(b.state(a), BreakerState::Open);
    }
}
