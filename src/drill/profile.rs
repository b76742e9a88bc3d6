//! Retry profiles (how a carrier re-attempts calls) and destination mixes (how the
//! called side answers).

use std::time::Duration;

/// How a simulated carrier tries a call.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryProfile {
    /// Name (for tables and `--profile`).
    pub name: String,
    /// Attempts per call, the first included (1: never re-attempts).
    pub attempts: u32,
    /// Pause before a re-attempt.
    pub delay: Duration,
    /// Re-attempt after a 503.
    pub on_503: bool,
    /// Re-attempt after any other 5xx.
    pub on_5xx: bool,
    /// Give up (CANCEL) and re-attempt when no final came within this.
    pub no_answer_after: Option<Duration>,
    /// Each re-attempt gets a new Call-ID (carriers mostly do).
    pub renew_call_id: bool,
    /// RFC 3261 Timer A retransmissions of the INVITE until a provisional.
    pub retransmit: bool,
    /// On a 503, try the next node at once (before counting it as a failure).
    pub failover_on_503: bool,
    /// Wait out a 503's Retry-After before re-attempting on the same node.
    pub honour_retry_after: bool,
}

impl RetryProfile {
    /// One attempt, no re-attempts: what the design assumed carriers do.
    pub fn polite() -> Self {
        RetryProfile {
            name: "polite".into(),
            attempts: 1,
            delay: Duration::from_secs(1),
            on_503: false,
            on_5xx: false,
            no_answer_after: None,
            renew_call_id: true,
            retransmit: true,
            failover_on_503: true,
            honour_retry_after: true,
        }
    }

    /// Two attempts after a 503 or 5xx, a second apart.
    pub fn standard() -> Self {
        RetryProfile {
            name: "standard".into(),
            attempts: 2,
            on_503: true,
            on_5xx: true,
            ..Self::polite()
        }
    }

    /// The incident's carriers: five attempts, re-attempting unanswered calls after
    /// 10 s with a new Call-ID, ignoring Retry-After.
    pub fn aggressive() -> Self {
        RetryProfile {
            name: "aggressive".into(),
            attempts: 5,
            delay: Duration::from_millis(500),
            on_503: true,
            on_5xx: true,
            no_answer_after: Some(Duration::from_secs(10)),
            honour_retry_after: false,
            ..Self::polite()
        }
    }

    /// The named presets.
    pub fn presets() -> Vec<RetryProfile> {
        vec![Self::polite(), Self::standard(), Self::aggressive()]
    }

    /// A preset by name.
    pub fn named(name: &str) -> Option<RetryProfile> {
        Self::presets().into_iter().find(|p| p.name == name)
    }
}

/// How a simulated destination answers, as shares that should add up to 1.
#[derive(Clone, Debug, PartialEq)]
pub struct DestinationMix {
    /// Answered after `answer_after`.
    pub answer: f64,
    /// 486 Busy Here.
    pub busy: f64,
    /// Rings and never answers (until cancelled).
    pub no_answer: f64,
    /// 503 Service Unavailable.
    pub unavailable: f64,
    /// Ringing time before an answer.
    pub answer_after: Duration,
}

impl Default for DestinationMix {
    /// Everything answered after a second of ringing.
    fn default() -> Self {
        DestinationMix {
            answer: 1.0,
            busy: 0.0,
            no_answer: 0.0,
            unavailable: 0.0,
            answer_after: Duration::from_secs(1),
        }
    }
}
