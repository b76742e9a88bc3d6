//! Load feedback: the host reports how busy the node really is; the admitted call rate
//! follows, so a capacity regression shows up as a lower admitted rate within seconds
//! instead of as a collapse.
//!
//! Control law (evaluated on each report, acted on at most once per `interval`):
//!
//! * `m`: the measured admitted rate, an EWMA (weight 1/2) of calls admitted per
//!   second between reports.
//! * Utilisation `u` above `target + band`: multiplicative decrease toward the rate
//!   that would have produced the target, `R ← base · clamp(target / u, floor, 0.99)`,
//!   with `base` the current limit (or `m` when none is in force). One step corrects a
//!   capacity loss of up to `1 − floor` (50% by default), so with reports every second
//!   the limit settles within two or three seconds.
//! * `u` below `target`: additive increase `R ← R + max(1, step · R)` (5% by default)
//!   per interval. The band is one-sided on purpose: a limit that binds below the
//!   target keeps rising until utilisation reaches the target. The limit is lifted
//!   once it exceeds the configured rate cap, or twice the measured rate when there is
//!   no cap (it no longer binds).
//! * A change of at least 5% (or the limit turning on or off) is reported as
//!   `Event::CapacityChanged`.

use std::time::Duration;

/// Load feedback settings.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedbackConfig {
    /// Utilisation the controller steers to (0.5..=1.0, default 0.95).
    pub target_utilisation: f64,
    /// Dead band around the target where nothing changes (default 0.02).
    pub band: f64,
    /// Largest single decrease factor (default 0.5: at most halve per step).
    pub floor: f64,
    /// Additive increase per interval as a share of the current limit (default 0.05).
    pub step: f64,
    /// Minimum time between two changes (default 1 s).
    pub interval: Duration,
    /// The limit never goes below this many calls per second (default 1).
    pub min_rate: f64,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        FeedbackConfig {
            target_utilisation: 0.95,
            band: 0.02,
            floor: 0.5,
            step: 0.05,
            interval: Duration::from_secs(1),
            min_rate: 1.0,
        }
    }
}

/// What a report did to the limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Change {
    /// The limit is now this many calls per second (`None`: lifted).
    pub(crate) limit: Option<f64>,
    /// Whether the change is large enough to report (5%, or turning on or off).
    pub(crate) report: bool,
}

#[derive(Debug)]
pub(crate) struct Feedback {
    cfg: FeedbackConfig,
    cap: Option<f64>,
    limit: Option<f64>,
    reported: Option<f64>,
    measured: Option<f64>,
    last_report: Option<(u64, u64)>,
    last_change: Option<u64>,
}

impl Feedback {
    pub(crate) fn new(cfg: &FeedbackConfig, cap: Option<f64>) -> Self {
        Feedback {
            cfg: cfg.clone(),
            cap,
            limit: None,
            reported: None,
            measured: None,
            last_report: None,
            last_change: None,
        }
    }

    pub(crate) fn measured(&self) -> Option<f64> {
        self.measured
    }

    /// A utilisation report at `now` (ns) when `admitted` calls have been admitted in
    /// total. Returns the new limit when it changed.
    pub(crate) fn report(&mut self, now: u64, utilisation: f64, admitted: u64) -> Option<Change> {
        if let Some((t, n)) = self.last_report
            && now > t
        {
            let rate = (admitted.saturating_sub(n)) as f64 / ((now - t) as f64 / 1e9);
            self.measured = Some(self.measured.map_or(rate, |m| 0.5 * m + 0.5 * rate));
        }
        self.last_report = Some((now, admitted));
        let interval = self.cfg.interval.as_nanos() as u64;
        if self
            .last_change
            .is_some_and(|t| now.saturating_sub(t) < interval)
        {
            return None;
        }
        let (target, band) = (self.cfg.target_utilisation, self.cfg.band);
        let new = if utilisation > target + band {
            let base = self.limit.or(self.measured)?;
            let factor = (target / utilisation).clamp(self.cfg.floor, 0.99);
            Some((base * factor).max(self.cfg.min_rate))
        } else if utilisation < target {
            let limit = self.limit?;
            let raised = limit + (self.cfg.step * limit).max(1.0);
            let ceiling = self.cap.or(self.measured.map(|m| 2.0 * m));
            if ceiling.is_some_and(|c| raised >= c) {
                None
            } else {
                Some(raised)
            }
        } else {
            return None;
        };
        if new == self.limit {
            return None;
        }
        self.limit = new;
        self.last_change = Some(now);
        let significant = match (self.reported, new) {
            (Some(a), Some(b)) => (a - b).abs() >= 0.05 * a,
            (None, None) => false,
            _ => true,
        };
        if significant {
            self.reported = new;
        }
        Some(Change {
            limit: new,
            report: significant,
        })
    }

    #[cfg(test)]
    pub(crate) fn limit(&self) -> Option<f64> {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// A node whose real capacity is `cap` calls/s, offered `offered` calls/s, under
    /// the controller: returns the admitted rate after each second.
    fn simulate(f: &mut Feedback, cap: impl Fn(u64) -> f64, offered: f64, secs: u64) -> Vec<f64> {
        let mut admitted = 0u64;
        let mut out = vec![];
        for s in 1..=secs {
            let rate = f.limit().map_or(offered, |l| l.min(offered));
            admitted += rate as u64;
            let u = rate / cap(s);
            f.report(s * S, u, admitted);
            out.push(rate);
        }
        out
    }

    #[test]
    fn a_thirty_percent_capacity_loss_is_followed_within_three_seconds() {
        let mut f = Feedback::new(&FeedbackConfig::default(), Some(200.0));
        // Capacity 100/s until t=10, then 70/s; offered 95/s throughout.
        let rates = simulate(&mut f, |s| if s <= 10 { 100.0 } else { 70.0 }, 95.0, 30);
        assert_eq!(rates[5], 95.0, "no limit while utilisation is on target");
        let settled = &rates[13..];
        assert!(
            settled.iter().all(|&r| (60.0..=70.0).contains(&r)),
            "admitted rate follows the new capacity: {rates:?}"
        );
    }

    #[test]
    fn the_limit_lifts_again_when_capacity_returns() {
        let mut f = Feedback::new(&FeedbackConfig::default(), Some(120.0));
        let rates = simulate(
            &mut f,
            |s| if (10..20).contains(&s) { 50.0 } else { 100.0 },
            95.0,
            60,
        );
        assert!(rates[15] <= 50.0, "{rates:?}");
        assert_eq!(*rates.last().unwrap(), 95.0, "{rates:?}");
        assert!(
            f.limit().is_none_or(|l| l >= 95.0),
            "the limit no longer binds"
        );
    }

    #[test]
    fn changes_are_rate_limited_by_the_interval() {
        let mut f = Feedback::new(&FeedbackConfig::default(), None);
        f.report(0, 0.5, 0);
        f.report(S, 0.5, 100);
        assert!(matches!(
            f.report(2 * S, 2.0, 200),
            Some(Change {
                limit: Some(_),
                report: true
            })
        ));
        assert_eq!(f.report(2 * S + S / 2, 2.0, 250), None);
    }
}
