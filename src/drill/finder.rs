//! The capacity finder: ramps the offered call rate in steps until the success share or
//! the setup time crosses a threshold, then narrows down by bisection, and reports the
//! highest rate the system under test sustained. Pure: the caller runs each step and
//! reports what happened.

use std::time::Duration;

/// Capacity finder settings.
#[derive(Clone, Debug, PartialEq)]
pub struct FinderConfig {
    /// First rate tried, calls per second.
    pub start_cps: f64,
    /// Factor the rate grows by after each sustained step (before the first failure).
    pub growth: f64,
    /// How long each step offers its rate.
    pub step: Duration,
    /// A step is sustained when at least this share of calls was answered.
    pub min_success: f64,
    /// ... and the 95th percentile setup time stayed under this.
    pub max_setup: Duration,
    /// Stop when the gap between the best sustained and the worst failed rate is at
    /// most this share of the sustained rate.
    pub precision: f64,
    /// Never offer more than this.
    pub max_cps: f64,
}

impl Default for FinderConfig {
    fn default() -> Self {
        FinderConfig {
            start_cps: 10.0,
            growth: 1.5,
            step: Duration::from_secs(20),
            min_success: 0.98,
            max_setup: Duration::from_secs(3),
            precision: 0.02,
            max_cps: 100_000.0,
        }
    }
}

/// What one step saw.
#[derive(Clone, Debug, PartialEq)]
pub struct StepResult {
    /// The rate offered.
    pub offered_cps: f64,
    /// Calls offered.
    pub offered: u64,
    /// Calls answered.
    pub answered: u64,
    /// 95th percentile setup time of the answered calls.
    pub p95_setup: Duration,
}

impl StepResult {
    /// Builds a result from the setup times of the answered calls.
    pub fn new(offered_cps: f64, offered: u64, mut setups: Vec<Duration>) -> StepResult {
        setups.sort();
        let p95 = if setups.is_empty() {
            Duration::ZERO
        } else {
            setups[((setups.len() as f64 * 0.95).ceil() as usize).clamp(1, setups.len()) - 1]
        };
        StepResult {
            offered_cps,
            offered,
            answered: setups.len() as u64,
            p95_setup: p95,
        }
    }

    /// Answered share.
    pub fn success(&self) -> f64 {
        if self.offered == 0 {
            1.0
        } else {
            self.answered as f64 / self.offered as f64
        }
    }
}

/// The verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct FinderReport {
    /// The highest rate sustained (0 if none was).
    pub sustainable_cps: f64,
    /// Every step, in order.
    pub steps: Vec<StepResult>,
}

/// What to do next.
#[derive(Clone, Debug, PartialEq)]
pub enum Next {
    /// Run a step at this rate and report it.
    Try(f64),
    /// The search is over.
    Done(FinderReport),
}

/// The finder's state.
#[derive(Clone, Debug)]
pub struct CapacityFinder {
    cfg: FinderConfig,
    current: f64,
    good: f64,
    bad: Option<f64>,
    steps: Vec<StepResult>,
}

impl CapacityFinder {
    /// A finder that starts at `cfg.start_cps`.
    pub fn new(cfg: FinderConfig) -> CapacityFinder {
        CapacityFinder {
            current: cfg.start_cps,
            cfg,
            good: 0.0,
            bad: None,
            steps: Vec::new(),
        }
    }

    /// The rate of the step to run now.
    pub fn current(&self) -> f64 {
        self.current
    }

    /// The settings.
    pub fn config(&self) -> &FinderConfig {
        &self.cfg
    }

    /// Whether a step was sustained.
    pub fn sustained(&self, r: &StepResult) -> bool {
        r.success() >= self.cfg.min_success && r.p95_setup <= self.cfg.max_setup
    }

    /// Reports the step just run; says what to do next.
    pub fn observe(&mut self, result: StepResult) -> Next {
        let ok = self.sustained(&result);
        let rate = result.offered_cps;
        self.steps.push(result);
        if ok {
            self.good = self.good.max(rate);
        } else {
            self.bad = Some(self.bad.map_or(rate, |b: f64| b.min(rate)));
        }
        let next = match self.bad {
            None => (rate * self.cfg.growth).min(self.cfg.max_cps),
            Some(bad) => {
                if bad - self.good <= self.cfg.precision * self.good.max(1e-9) || bad <= 1e-3 {
                    return self.done();
                }
                (self.good + bad) / 2.0
            }
        };
        if self.bad.is_none() && next <= rate {
            return self.done();
        }
        self.current = next;
        Next::Try(next)
    }

    fn done(&self) -> Next {
        Next::Done(FinderReport {
            sustainable_cps: self.good,
            steps: self.steps.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A system that answers everything below `capacity` and half above it.
    fn run(capacity: f64) -> FinderReport {
        let mut f = CapacityFinder::new(FinderConfig::default());
        let mut rate = f.current();
        loop {
            let offered = (rate * 20.0) as u64;
            let answered = if rate <= capacity {
                offered
            } else {
                offered / 2
            };
            let r = StepResult {
                offered_cps: rate,
                offered,
                answered,
                p95_setup: Duration::from_millis(500),
            };
            match f.observe(r) {
                Next::Try(r) => rate = r,
                Next::Done(report) => return report,
            }
        }
    }

    #[test]
    fn converges_within_precision_of_the_knee() {
        for capacity in [7.0, 73.0, 480.0, 2500.0] {
            let r = run(capacity);
            let err = (capacity - r.sustainable_cps) / capacity;
            assert!(
                (0.0..=0.05).contains(&err),
                "{capacity}: found {} ({} steps)",
                r.sustainable_cps,
                r.steps.len()
            );
            assert!(r.steps.len() < 30);
        }
    }

    #[test]
    fn p95_is_the_95th_percentile() {
        let setups: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(
            StepResult::new(1.0, 100, setups).p95_setup,
            Duration::from_millis(95)
        );
    }
}
