//! The retry budget: failover to alternate targets spends from a budget of at most
//! `ratio` retries per first attempt over a sliding window, plus a small floor, so a
//! failing destination pool cannot multiply the load it gets.

use std::time::Duration;

use crate::time::Time;

/// Retry budget settings.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetConfig {
    /// Retries allowed per first attempt (default 0.2).
    pub ratio: f64,
    /// Retries always allowed per window (default 10).
    pub floor: u32,
    /// Sliding window (default 10 s, in one-second buckets).
    pub window: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            ratio: 0.2,
            floor: 10,
            window: Duration::from_secs(10),
        }
    }
}

#[derive(Debug)]
pub(crate) struct RetryBudget {
    /// (second, first attempts, retries) per bucket.
    buckets: Vec<(u64, u32, u32)>,
    ratio: f64,
    floor: u32,
}

impl RetryBudget {
    pub(crate) fn new(cfg: &BudgetConfig) -> Self {
        RetryBudget {
            buckets: vec![(u64::MAX, 0, 0); cfg.window.as_secs().max(1) as usize],
            ratio: cfg.ratio,
            floor: cfg.floor,
        }
    }

    fn bucket(&mut self, now: Time) -> &mut (u64, u32, u32) {
        let sec = now.0 / 1_000_000_000;
        let n = self.buckets.len() as u64;
        let b = &mut self.buckets[(sec % n) as usize];
        if b.0 != sec {
            *b = (sec, 0, 0);
        }
        b
    }

    fn totals(&self, now: Time) -> (u64, u64) {
        let sec = now.0 / 1_000_000_000;
        let n = self.buckets.len() as u64;
        self.buckets
            .iter()
            .filter(|b| b.0 != u64::MAX && b.0 + n > sec)
            .fold((0, 0), |(f, r), b| (f + b.1 as u64, r + b.2 as u64))
    }

    pub(crate) fn first_attempt(&mut self, now: Time) {
        self.bucket(now).1 += 1;
    }

    /// Spends one retry if the budget allows it.
    pub(crate) fn try_retry(&mut self, now: Time) -> bool {
        let (firsts, retries) = self.totals(now);
        let allowed = self.floor as f64 + self.ratio * firsts as f64;
        if (retries as f64) < allowed {
            self.bucket(now).2 += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Time {
        Time::ZERO + Duration::from_millis(ms)
    }

    #[test]
    fn retries_are_bounded_by_ratio_plus_floor_over_the_window() {
        let mut b = RetryBudget::new(&BudgetConfig {
            ratio: 0.2,
            floor: 2,
            window: Duration::from_secs(10),
        });
        for i in 0..100 {
            b.first_attempt(at(i * 10));
        }
        let granted = (0..100).filter(|_| b.try_retry(at(1000))).count();
        assert_eq!(granted, 22, "20% of 100 plus a floor of 2");
        // Ten seconds later the window has moved on: only the floor.
        let granted = (0..100).filter(|_| b.try_retry(at(20_000))).count();
        assert_eq!(granted, 2);
    }
}
