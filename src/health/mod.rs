//! Health: a score from telephony facts, a state machine with hysteresis and dwell
//! times that turns it into `Healthy → Degraded → Bypass`, and the [`BypassSignal`] the
//! dynamic-number-insertion side reads (fail open: a stale signal means bypass). Also
//! the fleet view and the deploy budget ([`Fleet`]).
//!
//! Owns: the sliding window of outcomes, the score, the state machine, the text forms.
//! Never touches transactions, sockets or clocks: every input carries its time.
//!
//! # The score
//!
//! Over the window (10 × 1 s buckets by default):
//!
//! ```text
//! served   = (offered − refused_ours − failed_ours) / offered   (1 when offered < min_offered)
//! score    = served
//!          − 0.3 · clamp((utilisation − 0.9) / 0.1, 0, 1)        utilisation above 90%
//!          − 0.3 · open_breaker_share                            destinations failing
//!          − 0.1 · clamp((retry_factor − 2) / 3, 0, 1)           carriers retrying hard
//! ```
//!
//! clamped to `0..=1`. `refused_ours` counts refusals for our own overload and drain,
//! `failed_ours` calls that failed on our side (route failures, unanswered transactions)
//! — a busy callee is not our failure. Utilisation is the highest of the ledger's
//! pressure and the host's last load report.
//!
//! # The state machine
//!
//! From the current state the score asks for a target state (thresholds have
//! hysteresis: `Healthy` leaves below `degraded_enter` and comes back at
//! `degraded_exit`; `Bypass` is entered below `bypass_enter` and left at
//! `bypass_exit`). A worse target must persist for `worsen_after`, a better one for
//! `improve_after`, and no state is left before `min_dwell`. So a flapping input cannot
//! flap the signal: it changes at most once per `min_dwell`.

mod fleet;
mod text;

use std::time::Duration;

pub use fleet::{DeployBudget, Fleet, FleetConfig, FleetDecision, NodeReport};
pub use text::TextError;
pub(crate) use text::is_token as is_report_token;

use crate::time::Time;

/// Health states, best to worst.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HealthState {
    /// Calls connect normally.
    #[default]
    Healthy,
    /// Something is wrong but calls mostly connect.
    Degraded,
    /// Calls are not connecting reliably: websites should show the business's own
    /// number instead of a tracking number.
    Bypass,
}

impl HealthState {
    /// Stable label (`healthy`, `degraded`, `bypass`).
    pub fn label(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Degraded => "degraded",
            HealthState::Bypass => "bypass",
        }
    }

    pub(crate) fn from_label(s: &str) -> Option<HealthState> {
        match s {
            "healthy" => Some(HealthState::Healthy),
            "degraded" => Some(HealthState::Degraded),
            "bypass" => Some(HealthState::Bypass),
            _ => None,
        }
    }
}

/// An operator's override of the automatic state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Override {
    /// The score decides.
    Auto,
    /// Bypass regardless of the score.
    ForceBypass,
    /// Healthy regardless of the score.
    ForceNormal,
}

/// Health settings.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthConfig {
    /// Bucket length (default 1 s).
    pub bucket: Duration,
    /// Buckets in the window (default 10).
    pub buckets: usize,
    /// Fewer offered calls than this in the window and the served share is not judged.
    pub min_offered: u32,
    /// Healthy → Degraded below this score (default 0.9).
    pub degraded_enter: f64,
    /// Degraded → Healthy at or above this score (default 0.95).
    pub degraded_exit: f64,
    /// → Bypass below this score (default 0.5).
    pub bypass_enter: f64,
    /// Bypass → better at or above this score (default 0.8).
    pub bypass_exit: f64,
    /// A worse state must be called for this long before it is entered (default 2 s).
    pub worsen_after: Duration,
    /// A better state must be called for this long before it is entered (default 20 s).
    pub improve_after: Duration,
    /// No state is left sooner than this after it was entered (default 5 s).
    pub min_dwell: Duration,
    /// How long a bypass signal stays valid; older signals read as bypass (default 15 s).
    pub signal_ttl: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            bucket: Duration::from_secs(1),
            buckets: 10,
            min_offered: 5,
            degraded_enter: 0.9,
            degraded_exit: 0.95,
            bypass_enter: 0.5,
            bypass_exit: 0.8,
            worsen_after: Duration::from_secs(2),
            improve_after: Duration::from_secs(20),
            min_dwell: Duration::from_secs(5),
            signal_ttl: Duration::from_secs(15),
        }
    }
}

/// Why the node is in its state (the largest penalty, or the override).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Nothing wrong.
    Ok,
    /// Calls refused for our own overload.
    Overload,
    /// The node is draining.
    Draining,
    /// Calls failing on our side.
    Failures,
    /// Utilisation near or over capacity.
    Utilisation,
    /// Destinations' breakers open.
    Breakers,
    /// Carriers retrying hard.
    Retries,
    /// An operator forced the state.
    Forced,
    /// The signal is older than its time-to-live (consumers compute this one).
    Stale,
}

impl Reason {
    /// Stable label.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::Overload => "overload",
            Reason::Draining => "draining",
            Reason::Failures => "failures",
            Reason::Utilisation => "utilisation",
            Reason::Breakers => "breakers",
            Reason::Retries => "retries",
            Reason::Forced => "forced",
            Reason::Stale => "stale",
        }
    }

    fn from_label(s: &str) -> Option<Reason> {
        [
            Reason::Ok,
            Reason::Overload,
            Reason::Draining,
            Reason::Failures,
            Reason::Utilisation,
            Reason::Breakers,
            Reason::Retries,
            Reason::Forced,
            Reason::Stale,
        ]
        .into_iter()
        .find(|r| r.label() == s)
    }
}

/// What the score is computed from, besides the window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Inputs {
    /// Highest share of capacity in use (0..).
    pub utilisation: f64,
    /// Share of destinations whose breaker is open (0..=1).
    pub open_breaker_share: f64,
    /// Attempts per distinct call (1 = no retries).
    pub retry_factor: f64,
    /// Whether the node is draining.
    pub draining: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    index: u64,
    offered: u32,
    refused: u32,
    drain_refused: u32,
    failed: u32,
}

/// The score and the pieces it came from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    /// The score, 0..=1.
    pub value: f64,
    /// Share of offered calls served.
    pub served: f64,
    /// The dominant cause of a low score.
    pub reason: Reason,
}

/// One node's health.
#[derive(Debug)]
pub(crate) struct Health {
    cfg: HealthConfig,
    buckets: Vec<Bucket>,
    state: HealthState,
    since: Time,
    pending: Option<(HealthState, Time)>,
    overridden: Override,
    last: Score,
}

impl Health {
    pub(crate) fn new(cfg: &HealthConfig) -> Self {
        Health {
            cfg: cfg.clone(),
            buckets: vec![Bucket::default(); cfg.buckets.max(1)],
            state: HealthState::Healthy,
            since: Time::ZERO,
            pending: None,
            overridden: Override::Auto,
            last: Score {
                value: 1.0,
                served: 1.0,
                reason: Reason::Ok,
            },
        }
    }

    fn bucket(&mut self, now: Time) -> &mut Bucket {
        let index = now.0 / self.cfg.bucket.as_nanos().max(1) as u64;
        let n = self.buckets.len() as u64;
        let b = &mut self.buckets[(index % n) as usize];
        if b.index != index {
            *b = Bucket {
                index,
                ..Bucket::default()
            };
        }
        b
    }

    pub(crate) fn offered(&mut self, now: Time) {
        self.bucket(now).offered += 1;
    }

    pub(crate) fn refused(&mut self, now: Time, draining: bool) {
        let b = self.bucket(now);
        if draining {
            b.drain_refused += 1;
        } else {
            b.refused += 1;
        }
    }

    pub(crate) fn failed(&mut self, now: Time) {
        self.bucket(now).failed += 1;
    }

    pub(crate) fn state(&self) -> HealthState {
        self.state
    }

    /// Whether health needs regular re-evaluation: not healthy, or a change pending.
    pub(crate) fn unsettled(&self) -> bool {
        self.state != HealthState::Healthy || self.pending.is_some()
    }

    pub(crate) fn bucket_len(&self) -> Duration {
        self.cfg.bucket
    }

    /// Calls offered over the window ending at `now`.
    pub(crate) fn offered_in_window(&self, now: Time) -> u64 {
        let index = now.0 / self.cfg.bucket.as_nanos().max(1) as u64;
        let n = self.buckets.len() as u64;
        self.buckets
            .iter()
            .filter(|b| b.index + n > index && b.index <= index)
            .map(|b| b.offered as u64)
            .sum()
    }

    pub(crate) fn last_score(&self) -> Score {
        self.last
    }

    pub(crate) fn set_override(&mut self, o: Override) {
        self.overridden = o;
    }

    /// The score at `now`.
    pub(crate) fn score(&mut self, now: Time, inputs: &Inputs) -> Score {
        let index = now.0 / self.cfg.bucket.as_nanos().max(1) as u64;
        let n = self.buckets.len() as u64;
        let (mut offered, mut refused, mut drain_refused, mut failed) = (0u64, 0u64, 0u64, 0u64);
        for b in &self.buckets {
            if b.index + n > index && b.index <= index {
                offered += b.offered as u64;
                refused += b.refused as u64;
                drain_refused += b.drain_refused as u64;
                failed += b.failed as u64;
            }
        }
        let (served, lost) = if offered >= self.cfg.min_offered as u64 {
            let lost = (refused + drain_refused + failed).min(offered);
            (1.0 - lost as f64 / offered as f64, lost)
        } else {
            (1.0, 0)
        };
        let penalties = [
            (
                Reason::Utilisation,
                0.3 * ((inputs.utilisation - 0.9) / 0.1).clamp(0.0, 1.0),
            ),
            (
                Reason::Breakers,
                0.3 * inputs.open_breaker_share.clamp(0.0, 1.0),
            ),
            (
                Reason::Retries,
                0.1 * ((inputs.retry_factor - 2.0) / 3.0).clamp(0.0, 1.0),
            ),
        ];
        let penalty: f64 = penalties.iter().map(|(_, p)| p).sum();
        let value = (served - penalty).clamp(0.0, 1.0);
        let served_loss = 1.0 - served;
        let (mut reason, mut worst) = (Reason::Ok, 0.0);
        if served_loss > 0.0 {
            // Name the largest component of the loss.
            reason = if drain_refused * 2 >= lost && drain_refused > 0 {
                Reason::Draining
            } else if refused >= failed {
                Reason::Overload
            } else {
                Reason::Failures
            };
            worst = served_loss;
        }
        for (r, p) in penalties {
            if p > worst {
                reason = r;
                worst = p;
            }
        }
        if inputs.draining && reason == Reason::Ok {
            reason = Reason::Draining;
        }
        self.last = Score {
            value,
            served,
            reason,
        };
        self.last
    }

    /// The state the score asks for, given the current one (hysteresis).
    fn target(&self, score: f64) -> HealthState {
        let c = &self.cfg;
        match self.state {
            HealthState::Healthy if score < c.bypass_enter => HealthState::Bypass,
            HealthState::Healthy if score < c.degraded_enter => HealthState::Degraded,
            HealthState::Healthy => HealthState::Healthy,
            HealthState::Degraded if score < c.bypass_enter => HealthState::Bypass,
            HealthState::Degraded if score >= c.degraded_exit => HealthState::Healthy,
            HealthState::Degraded => HealthState::Degraded,
            HealthState::Bypass if score >= c.degraded_exit => HealthState::Healthy,
            HealthState::Bypass if score >= c.bypass_exit => HealthState::Degraded,
            HealthState::Bypass => HealthState::Bypass,
        }
    }

    /// Re-evaluates at `now`; returns `(from, to)` when the state changed.
    pub(crate) fn evaluate(
        &mut self,
        now: Time,
        inputs: &Inputs,
    ) -> Option<(HealthState, HealthState)> {
        let score = self.score(now, inputs).value;
        let target = match self.overridden {
            Override::ForceBypass => HealthState::Bypass,
            Override::ForceNormal => HealthState::Healthy,
            Override::Auto => self.target(score),
        };
        if target == self.state {
            self.pending = None;
            return None;
        }
        let forced = self.overridden != Override::Auto;
        let hold = if target > self.state {
            self.cfg.worsen_after
        } else {
            self.cfg.improve_after
        };
        let since = match self.pending {
            Some((t, since)) if t == target => since,
            _ => {
                self.pending = Some((target, now));
                now
            }
        };
        let held = now.saturating_since(since) >= hold;
        let dwelt = now.saturating_since(self.since) >= self.cfg.min_dwell;
        if forced || (held && dwelt) {
            let from = self.state;
            self.state = target;
            self.since = now;
            self.pending = None;
            return Some((from, target));
        }
        None
    }

    /// The signal at `now`, stamped with the host's wall-clock time.
    pub(crate) fn signal(&self, wall_ms: u64) -> BypassSignal {
        let reason = if self.overridden != Override::Auto {
            Reason::Forced
        } else if self.state == HealthState::Healthy {
            Reason::Ok
        } else {
            self.last.reason
        };
        BypassSignal {
            state: self.state,
            reason,
            score: self.last.value,
            issued_at_ms: wall_ms,
            ttl_ms: self.cfg.signal_ttl.as_millis() as u64,
        }
    }
}

/// What the number-insertion side reads: whether websites should show the business's
/// own numbers instead of tracking numbers. Fail open: a signal older than its
/// time-to-live reads as bypass.
///
/// Text form (version 1, one line, space-separated, keys in this order):
///
/// ```text
/// v=1 state=healthy bypass=0 reason=ok score=0.982 issued_at_ms=1732420000000 ttl_ms=15000
/// ```
///
/// `state` is `healthy|degraded|bypass`; `bypass` is `1` exactly when `state=bypass`;
/// `reason` is one of `ok overload draining failures utilisation breakers retries
/// forced`; `score` has three decimals; times are Unix milliseconds from the host's
/// clock.
#[derive(Clone, Debug, PartialEq)]
pub struct BypassSignal {
    /// The node's state.
    pub state: HealthState,
    /// Why.
    pub reason: Reason,
    /// The score, 0..=1 (three decimals in the text form).
    pub score: f64,
    /// When it was issued (Unix ms, host clock).
    pub issued_at_ms: u64,
    /// How long it is valid (ms).
    pub ttl_ms: u64,
}

impl BypassSignal {
    /// Whether websites should bypass the tracking numbers at `now_ms`: the state says
    /// so, or the signal is stale.
    pub fn bypass(&self, now_ms: u64) -> bool {
        self.state == HealthState::Bypass || self.is_stale(now_ms)
    }

    /// Whether the signal is older than its time-to-live.
    pub fn is_stale(&self, now_ms: u64) -> bool {
        now_ms > self.issued_at_ms.saturating_add(self.ttl_ms)
    }

    /// The one-line text form (no line end).
    pub fn render(&self) -> String {
        format!(
            "v=1 state={} bypass={} reason={} score={:.3} issued_at_ms={} ttl_ms={}",
            self.state.label(),
            u8::from(self.state == HealthState::Bypass),
            self.reason.label(),
            self.score,
            self.issued_at_ms,
            self.ttl_ms
        )
    }

    /// Reads the text form; rejects anything else with the reason.
    pub fn parse(line: &str) -> Result<BypassSignal, TextError> {
        let f = text::Fields::parse(
            line,
            &[
                "state",
                "bypass",
                "reason",
                "score",
                "issued_at_ms",
                "ttl_ms",
            ],
        )?;
        let state_s = f.str("state")?;
        let state = HealthState::from_label(state_s).ok_or(TextError::BadValue {
            key: "state",
            value: state_s.to_owned(),
        })?;
        let bypass = f.flag("bypass")?;
        if bypass != (state == HealthState::Bypass) {
            return Err(TextError::BadValue {
                key: "bypass",
                value: f.str("bypass")?.to_owned(),
            });
        }
        let reason_s = f.str("reason")?;
        let reason = Reason::from_label(reason_s).ok_or(TextError::BadValue {
            key: "reason",
            value: reason_s.to_owned(),
        })?;
        let score: f64 = f.num("score")?;
        if !(0.0..=1.0).contains(&score) {
            return Err(TextError::BadValue {
                key: "score",
                value: f.str("score")?.to_owned(),
            });
        }
        Ok(BypassSignal {
            state,
            reason,
            score,
            issued_at_ms: f.num("issued_at_ms")?,
            ttl_ms: f.num("ttl_ms")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: f64) -> Time {
        Time((s * 1e9) as u64)
    }

    /// Offers `rate` calls per second, of which `ok` share is served, for `secs`.
    fn drive(
        h: &mut Health,
        from: f64,
        secs: u64,
        rate: u32,
        ok: f64,
        log: &mut Vec<(f64, HealthState)>,
    ) {
        let inputs = Inputs {
            retry_factor: 1.0,
            ..Inputs::default()
        };
        for i in 0..secs * 10 {
            let t = from + i as f64 / 10.0;
            for k in 0..rate / 10 {
                h.offered(at(t));
                if (k as f64) >= ok * (rate / 10) as f64 {
                    h.refused(at(t), false);
                }
            }
            if let Some((_, to)) = h.evaluate(at(t), &inputs) {
                log.push((t, to));
            }
        }
    }

    #[test]
    fn sustained_failure_bypasses_within_10_s_and_recovery_clears_within_60_s() {
        let mut h = Health::new(&HealthConfig::default());
        let mut log = vec![];
        drive(&mut h, 0.0, 30, 100, 1.0, &mut log);
        assert!(log.is_empty());
        drive(&mut h, 30.0, 30, 100, 0.0, &mut log);
        let bypass_at = log
            .iter()
            .find(|(_, s)| *s == HealthState::Bypass)
            .unwrap()
            .0;
        assert!(bypass_at - 30.0 <= 10.0, "{log:?}");
        drive(&mut h, 60.0, 90, 100, 1.0, &mut log);
        let back = log
            .iter()
            .rfind(|(_, s)| *s == HealthState::Healthy)
            .unwrap()
            .0;
        assert!(back - 60.0 <= 60.0, "{log:?}");
        assert_eq!(h.state(), HealthState::Healthy);
    }

    #[test]
    fn a_flapping_input_does_not_flap_the_state() {
        let mut h = Health::new(&HealthConfig::default());
        let mut log = vec![];
        // Alternate one second of total failure and one of success for two minutes.
        for s in 0..120 {
            drive(
                &mut h,
                s as f64,
                1,
                100,
                if s % 2 == 0 { 0.0 } else { 1.0 },
                &mut log,
            );
        }
        for w in log.windows(2) {
            assert!(w[1].0 - w[0].0 >= 5.0 - 1e-9, "{log:?}");
        }
        assert!(log.len() <= 3, "{log:?}");
    }

    #[test]
    fn overrides_win_at_once_and_auto_resumes() {
        let mut h = Health::new(&HealthConfig::default());
        h.set_override(Override::ForceBypass);
        assert_eq!(
            h.evaluate(at(1.0), &Inputs::default()),
            Some((HealthState::Healthy, HealthState::Bypass))
        );
        assert_eq!(h.signal(5).reason, Reason::Forced);
        h.set_override(Override::ForceNormal);
        assert_eq!(
            h.evaluate(at(1.5), &Inputs::default()),
            Some((HealthState::Bypass, HealthState::Healthy))
        );
        h.set_override(Override::Auto);
        assert_eq!(h.evaluate(at(2.0), &Inputs::default()), None);
    }

    #[test]
    fn signals_round_trip_and_fail_open_when_stale() {
        let s = BypassSignal {
            state: HealthState::Degraded,
            reason: Reason::Overload,
            score: 0.625,
            issued_at_ms: 1_700_000_000_000,
            ttl_ms: 15_000,
        };
        let line = s.render();
        assert_eq!(
            line,
            "v=1 state=degraded bypass=0 reason=overload score=0.625 issued_at_ms=1700000000000 ttl_ms=15000"
        );
        assert_eq!(BypassSignal::parse(&line).unwrap(), s);
        assert!(!s.bypass(1_700_000_015_000));
        assert!(s.bypass(1_700_000_015_001), "stale reads as bypass");
        for bad in [
            "",
            "v=2 state=healthy bypass=0 reason=ok score=1.000 issued_at_ms=1 ttl_ms=1",
            "v=1 state=healthy bypass=1 reason=ok score=1.000 issued_at_ms=1 ttl_ms=1",
            "v=1 state=fine bypass=0 reason=ok score=1.000 issued_at_ms=1 ttl_ms=1",
            "v=1 state=healthy bypass=0 reason=ok score=1.5 issued_at_ms=1 ttl_ms=1",
            "v=1 state=healthy bypass=0 reason=ok score=1 issued_at_ms=1",
            "v=1 state=healthy bypass=0 reason=ok score=1 issued_at_ms=1 ttl_ms=1 extra=1",
            "v=1 state=healthy state=healthy bypass=0 reason=ok score=1 issued_at_ms=1 ttl_ms=1",
            "v=1 state healthy",
        ] {
            assert!(BypassSignal::parse(bad).is_err(), "{bad:?}");
        }
    }
}
