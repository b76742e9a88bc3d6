//! Engine configuration and its validation. Every field has a production default;
//! `validate` names the field and the allowed range when a value is out of bounds.

use std::time::Duration;

use crate::transaction::Timers;
use crate::wire;

/// Why a configuration was rejected: which field, and what would be accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid config: `{field}` {problem}")]
pub struct ConfigError {
    /// Dotted path of the offending field (`timers.t1`, `limits.max_transactions`...).
    pub field: String,
    /// What is wrong and what is allowed.
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Bounds on every table and queue the engine keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Server plus client transactions alive at once. A full table answers new
    /// requests `503` with Retry-After (counted), never silently.
    pub max_transactions: usize,
    /// Bytes queued for the host to send before further datagrams are dropped
    /// (counted): the host is expected to drain after every call.
    pub transmit_queue_bytes: usize,
    /// Events queued for the host before further events are dropped (counted).
    pub max_events: usize,
    /// Retry-After (seconds) on the 503 that answers a request when the transaction
    /// table is full.
    pub table_full_retry_after: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_transactions: 200_000,
            transmit_queue_bytes: 16 << 20,
            max_events: 65_536,
            table_full_retry_after: 5,
        }
    }
}

/// How the engine answers INVITEs while it has no routing to do (a plain UAS). The
/// proxy replaces this once routes are configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UasConfig {
    /// Final status for every INVITE (default 480 Temporarily Unavailable).
    pub invite_status: u16,
}

impl Default for UasConfig {
    fn default() -> Self {
        UasConfig { invite_status: 480 }
    }
}

/// Everything an [`Engine`](crate::Engine) needs. Build with `Config::default()` and
/// change what you need; [`Engine::new`](crate::Engine::new) validates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Transaction timers (RFC 3261 T1, T2, T4 and Timer D on UDP).
    pub timers: Timers,
    /// Bounds on what the scanner accepts.
    pub wire: wire::Limits,
    /// Bounds on tables and queues.
    pub limits: Limits,
    /// Plain-UAS behaviour.
    pub uas: UasConfig,
    /// Value of the Server header on responses the engine generates (none if empty).
    pub server_name: String,
    /// Seed for every random draw (tags, branches, jitter, shedding). Use a random seed
    /// in production; a fixed one makes runs replay exactly.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timers: Timers::default(),
            wire: wire::Limits::default(),
            limits: Limits::default(),
            uas: UasConfig::default(),
            server_name: "ringfence".into(),
            seed: 0x5eed_5eed_5eed_5eed,
        }
    }
}

fn in_range<T: PartialOrd + std::fmt::Debug>(
    field: &str,
    value: T,
    lo: T,
    hi: T,
    unit: &str,
) -> Result<(), ConfigError> {
    if value < lo || value > hi {
        return Err(ConfigError::new(
            field,
            format!("must be between {lo:?} and {hi:?}{unit} (got {value:?}{unit})"),
        ));
    }
    Ok(())
}

fn duration_in(field: &str, d: Duration, lo: Duration, hi: Duration) -> Result<(), ConfigError> {
    if d < lo || d > hi {
        return Err(ConfigError::new(
            field,
            format!("must be between {lo:?} and {hi:?} (got {d:?})"),
        ));
    }
    Ok(())
}

impl Config {
    /// Checks every field; the error names the first one out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let t = &self.timers;
        duration_in(
            "timers.t1",
            t.t1,
            Duration::from_millis(1),
            Duration::from_secs(10),
        )?;
        duration_in("timers.t2", t.t2, t.t1, Duration::from_secs(60))?;
        duration_in(
            "timers.t4",
            t.t4,
            Duration::from_millis(1),
            Duration::from_secs(60),
        )?;
        duration_in(
            "timers.timer_d",
            t.timer_d,
            Duration::from_secs(32),
            Duration::from_secs(300),
        )?;
        in_range(
            "wire.max_message_len",
            self.wire.max_message_len,
            512,
            wire::Limits::MAX_MESSAGE_LEN,
            " bytes",
        )?;
        in_range("wire.max_headers", self.wire.max_headers, 8, 4096, "")?;
        in_range("wire.max_vias", self.wire.max_vias, 1, 1024, "")?;
        let l = &self.limits;
        in_range(
            "limits.max_transactions",
            l.max_transactions,
            1,
            1 << 24,
            "",
        )?;
        in_range(
            "limits.transmit_queue_bytes",
            l.transmit_queue_bytes,
            64 << 10,
            1 << 30,
            " bytes",
        )?;
        in_range("limits.max_events", l.max_events, 1, 1 << 24, "")?;
        in_range(
            "limits.table_full_retry_after",
            l.table_full_retry_after,
            1,
            3600,
            " s",
        )?;
        in_range("uas.invite_status", self.uas.invite_status, 300, 699, "")?;
        if self.server_name.bytes().any(|c| c < 0x20 || c == 0x7f) {
            return Err(ConfigError::new(
                "server_name",
                "must not contain control characters",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_field_and_the_range() {
        let mut c = Config::default();
        c.timers.t1 = Duration::ZERO;
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "timers.t1");
        assert!(e.problem.contains("between 1ms and 10s"), "{e}");
        let mut c = Config::default();
        c.timers.timer_d = Duration::from_secs(5);
        assert_eq!(c.validate().unwrap_err().field, "timers.timer_d");
        let mut c = Config::default();
        c.uas.invite_status = 200;
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "uas.invite_status");
        assert!(e.to_string().contains("300 and 699"), "{e}");
        let mut c = Config::default();
        c.limits.max_transactions = 0;
        assert_eq!(c.validate().unwrap_err().field, "limits.max_transactions");
    }
}
