//! GCRA (the generic cell rate algorithm, a virtual scheduling token bucket): rate and
//! burst tolerance in one `u64` of state, safe to share between threads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A rate limit: `rate` events per second with a tolerance of `burst` events above it.
/// Time is nanoseconds on a clock the caller supplies (shared by all users).
#[derive(Debug)]
pub(crate) struct Gcra {
    /// Theoretical arrival time, ns.
    tat: AtomicU64,
    /// Emission interval T = 1/rate, ns.
    interval: AtomicU64,
    burst: u64,
}

impl Gcra {
    pub(crate) fn new(rate: f64, burst: u32) -> Self {
        Gcra {
            tat: AtomicU64::new(0),
            interval: AtomicU64::new(interval_of(rate)),
            burst: burst as u64,
        }
    }

    /// Changes the rate, keeping the state (used by load feedback).
    pub(crate) fn set_rate(&self, rate: f64) {
        self.interval.store(interval_of(rate), Ordering::Relaxed);
    }

    pub(crate) fn rate(&self) -> f64 {
        1e9 / self.interval.load(Ordering::Relaxed) as f64
    }

    fn tolerance(&self, interval: u64) -> u64 {
        self.burst.saturating_mul(interval)
    }

    /// Takes one event at `now` if it conforms. `false` leaves the state untouched.
    pub(crate) fn try_take(&self, now: u64) -> bool {
        let interval = self.interval.load(Ordering::Relaxed);
        let tolerance = self.tolerance(interval);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now);
            // Conforms when the schedule is no more than `tolerance` ahead of now.
            if start.saturating_sub(now) > tolerance {
                return false;
            }
            match self.tat.compare_exchange_weak(
                tat,
                start + interval,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => tat = seen,
            }
        }
    }

    /// Starts afresh at `now`: no burst credit from idle time before it.
    pub(crate) fn restart(&self, now: u64) {
        self.tat.store(now, Ordering::Release);
    }

    /// Returns one event taken by [`Gcra::try_take`] for a call that another limit
    /// refused afterwards: the rate counts admitted calls, so a refusal spends nothing.
    pub(crate) fn give_back(&self) {
        let interval = self.interval.load(Ordering::Relaxed);
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |tat| {
                Some(tat.saturating_sub(interval))
            });
    }

    /// How much of the burst tolerance is in use at `now`, 0.0 (idle) to 1.0 (at the
    /// limit): the rate pressure the shedding curve reads.
    pub(crate) fn fill(&self, now: u64) -> f64 {
        let interval = self.interval.load(Ordering::Relaxed);
        let ahead = self.tat.load(Ordering::Relaxed).saturating_sub(now);
        let span = self.tolerance(interval) + interval;
        (ahead as f64 / span as f64).min(1.0)
    }
}

fn interval_of(rate: f64) -> u64 {
    let rate = rate.max(1e-6);
    (Duration::from_secs(1).as_nanos() as f64 / rate)
        .round()
        .max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn admits_rate_plus_burst_then_the_rate() {
        let g = Gcra::new(10.0, 5);
        // 100 attempts at the same instant: burst + 1 pass.
        let passed = (0..100).filter(|_| g.try_take(0)).count();
        assert_eq!(passed, 6);
        // Over the next 10 s, offered at 50/s, admitted at 10/s.
        let mut admitted = 0;
        for i in 1..=500u64 {
            if g.try_take(i * 20 * MS) {
                admitted += 1;
            }
        }
        assert!((99..=101).contains(&admitted), "{admitted}");
    }

    #[test]
    fn offered_at_five_times_the_limit_never_exceeds_limit_plus_burst() {
        let g = Gcra::new(20.0, 4);
        let mut admitted_in_window = std::collections::VecDeque::new();
        for i in 0..5000u64 {
            let t = i * 10 * MS; // 100/s offered
            if g.try_take(t) {
                admitted_in_window.push_back(t);
            }
            while admitted_in_window
                .front()
                .is_some_and(|&a| a + 1000 * MS <= t)
            {
                admitted_in_window.pop_front();
            }
            assert!(
                admitted_in_window.len() <= 20 + 4 + 1,
                "{}",
                admitted_in_window.len()
            );
        }
    }

    #[test]
    fn a_token_given_back_can_be_taken_again() {
        let g = Gcra::new(10.0, 2);
        assert!((0..3).all(|_| g.try_take(0)));
        assert!(!g.try_take(0));
        g.give_back();
        assert!(g.try_take(0), "the returned token conforms");
        assert!(!g.try_take(0));
        // From an idle limiter (schedule behind now) it restores the idle state.
        let g = Gcra::new(10.0, 0);
        assert!(g.try_take(5_000 * MS));
        g.give_back();
        assert_eq!(g.fill(5_000 * MS), 0.0);
        assert!(g.try_take(5_000 * MS));
    }

    #[test]
    fn fill_tracks_pressure_and_rate_changes_apply() {
        let g = Gcra::new(10.0, 9);
        assert_eq!(g.fill(0), 0.0);
        for _ in 0..5 {
            assert!(g.try_take(0));
        }
        assert!((g.fill(0) - 0.5).abs() < 1e-9);
        g.set_rate(100.0);
        assert!((g.rate() - 100.0).abs() < 1e-6);
    }
}
