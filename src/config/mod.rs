//! Engine configuration and its validation. Every field has a production default;
//! `validate` names the field and the allowed range when a value is out of bounds.

use std::time::Duration;

mod toml;

use crate::guard::{AdmissionConfig, RejectPolicy, RetryConfig};
use crate::health::HealthConfig;
use crate::route::{NumberPlan, RouteEntry, RoutingTable, Target};
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

/// When the host decides where a call goes (through [`Event::RouteRequest`]).
///
/// [`Event::RouteRequest`]: crate::Event::RouteRequest
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AskHost {
    /// Never: the table (and its default route) decides alone.
    Never,
    /// For numbers the table does not know (the default route is not used).
    Unknown,
    /// For every call.
    Always,
}

/// Routing: the table, its numbering plan, and what happens when it has no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingConfig {
    /// Numbers (or `prefix*`) and their targets.
    pub routes: Vec<RouteEntry>,
    /// Targets for numbers nothing else matches (empty: none).
    pub default_route: Vec<Target>,
    /// How numbers are normalised before lookup.
    pub plan: NumberPlan,
    /// When the host is asked.
    pub ask_host: AskHost,
    /// How long the host has to answer a route request before the engine falls back to
    /// the last route that worked for the number.
    pub route_request_timeout: Duration,
    /// Status for a number with no route (404 or 480).
    pub no_route_status: u16,
    /// Status when the host did not answer and no last-known-good route exists.
    pub route_failure_status: u16,
    /// Numbers whose last working route is remembered (bounded cache).
    pub last_known_good: usize,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            routes: Vec::new(),
            default_route: Vec::new(),
            plan: NumberPlan::default(),
            ask_host: AskHost::Never,
            route_request_timeout: Duration::from_secs(2),
            no_route_status: 404,
            route_failure_status: 480,
            last_known_good: 100_000,
        }
    }
}

/// Proxy behaviour (RFC 3261 §16).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Timer C: how long a call may ring before it is cancelled downstream and answered
    /// upstream with `ring_timeout_status`. RFC 3261 asks for more than 3 minutes; a
    /// shorter ring timeout is a deliberate policy.
    pub ring_timeout: Duration,
    /// Status sent upstream when Timer C fires (408 by default).
    pub ring_timeout_status: u16,
    /// Downstream finals that make the proxy try the next target (timeouts always do).
    pub failover_statuses: Vec<u16>,
    /// What a downstream 503 becomes upstream: a 503 is never relayed (RFC 3261
    /// §16.7), because the carrier would fail it over to the rest of the fleet.
    pub downstream_503_status: u16,
    /// Calls being set up at once (INVITE received, no final sent yet).
    pub max_calls: usize,
    /// Dialogs (early, confirmed, or lingering after termination) at once.
    pub max_dialogs: usize,
    /// Longest a call may last (`None`: unlimited). At the limit the engine emits
    /// `CallEnded` and, if `bye_on_max_duration`, sends BYE both ways.
    pub max_call_duration: Option<Duration>,
    /// Whether to hang up calls at `max_call_duration`.
    pub bye_on_max_duration: bool,
    /// Relay a downstream 503 upstream unchanged. Never do this in production: a
    /// carrier fails a 503 over to the rest of the fleet, multiplying the load. It
    /// exists so the incident replay can show what the naive behaviour costs.
    pub relay_503: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            ring_timeout: Duration::from_secs(180),
            ring_timeout_status: 408,
            failover_statuses: vec![408, 500, 502, 503, 504],
            downstream_503_status: 500,
            max_calls: 100_000,
            max_dialogs: 400_000,
            max_call_duration: Some(Duration::from_secs(4 * 3600)),
            bye_on_max_duration: true,
            relay_503: false,
        }
    }
}

/// Everything an [`Engine`](crate::Engine) needs. Build with `Config::default()` and
/// change what you need; [`Engine::new`](crate::Engine::new) validates it.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Transaction timers (RFC 3261 T1, T2, T4 and Timer D on UDP).
    pub timers: Timers,
    /// Bounds on what the scanner accepts.
    pub wire: wire::Limits,
    /// Bounds on tables and queues.
    pub limits: Limits,
    /// Routing table and policy.
    pub routing: RoutingConfig,
    /// Proxy behaviour.
    pub proxy: ProxyConfig,
    /// Admission control: trunks, limits, shedding, drain, load feedback.
    pub admission: AdmissionConfig,
    /// Retry hygiene: re-attempt dedup, failover budget, breakers.
    pub retry: RetryConfig,
    /// Health score, bypass state machine and signal.
    pub health: HealthConfig,
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
            routing: RoutingConfig::default(),
            proxy: ProxyConfig::default(),
            admission: AdmissionConfig::default(),
            retry: RetryConfig::default(),
            health: HealthConfig::default(),
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
    /// The routing table this config describes.
    pub fn routing_table(&self) -> Result<RoutingTable, ConfigError> {
        RoutingTable::new(
            &self.routing.routes,
            &self.routing.default_route,
            self.routing.plan.clone(),
        )
        .map_err(|e| ConfigError::new("routing.routes", e.to_string()))
    }

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
        let r = &self.routing;
        self.routing_table()?;
        if ![404, 480].contains(&r.no_route_status) {
            return Err(ConfigError::new(
                "routing.no_route_status",
                format!("must be 404 or 480 (got {})", r.no_route_status),
            ));
        }
        in_range(
            "routing.route_failure_status",
            r.route_failure_status,
            400,
            699,
            "",
        )?;
        duration_in(
            "routing.route_request_timeout",
            r.route_request_timeout,
            Duration::from_millis(10),
            Duration::from_secs(60),
        )?;
        in_range("routing.last_known_good", r.last_known_good, 0, 1 << 24, "")?;
        let p = &self.proxy;
        duration_in(
            "proxy.ring_timeout",
            p.ring_timeout,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )?;
        in_range(
            "proxy.ring_timeout_status",
            p.ring_timeout_status,
            400,
            699,
            "",
        )?;
        in_range(
            "proxy.downstream_503_status",
            p.downstream_503_status,
            400,
            699,
            "",
        )?;
        // Our own 503 always carries Retry-After (overload); any other final the
        // engine sends on a call's behalf must not be one, or carriers fail the call
        // over to the rest of the fleet.
        for (field, status) in [
            ("proxy.downstream_503_status", p.downstream_503_status),
            ("proxy.ring_timeout_status", p.ring_timeout_status),
            ("routing.route_failure_status", r.route_failure_status),
        ] {
            if status == 503 {
                return Err(ConfigError::new(
                    field,
                    "must not be 503: a 503 makes carriers fail calls over to the fleet",
                ));
            }
        }
        for (i, s) in p.failover_statuses.iter().enumerate() {
            in_range(&format!("proxy.failover_statuses[{i}]"), *s, 300, 699, "")?;
        }
        in_range("proxy.max_calls", p.max_calls, 1, 1 << 24, "")?;
        in_range("proxy.max_dialogs", p.max_dialogs, 1, 1 << 24, "")?;
        if let Some(d) = p.max_call_duration {
            duration_in(
                "proxy.max_call_duration",
                d,
                Duration::from_secs(1),
                Duration::from_secs(7 * 86400),
            )?;
        }
        self.validate_admission()?;
        if self.server_name.bytes().any(|c| c < 0x20 || c == 0x7f) {
            return Err(ConfigError::new(
                "server_name",
                "must not contain control characters",
            ));
        }
        Ok(())
    }
}

fn policy(field: &str, p: &RejectPolicy) -> Result<(), ConfigError> {
    in_range(&format!("{field}.status"), p.status, 400, 699, "")?;
    in_range(
        &format!("{field}.retry_after"),
        p.retry_after,
        0,
        86_400,
        " s",
    )?;
    in_range(
        &format!("{field}.retry_after_jitter"),
        p.retry_after_jitter,
        0,
        86_400,
        " s",
    )?;
    if p.reason.is_empty()
        || p.reason.len() > 128
        || p.reason.bytes().any(|c| c < 0x20 || c == 0x7f)
    {
        return Err(ConfigError::new(
            format!("{field}.reason"),
            "must be a reason phrase of 1 to 128 bytes without control characters",
        ));
    }
    Ok(())
}

fn rate(field: &str, r: Option<f64>) -> Result<(), ConfigError> {
    match r {
        Some(r) if !(r.is_finite() && r > 0.0 && r <= 1e6) => Err(ConfigError::new(
            field,
            format!("must be a rate between 0 and 1e6 calls per second (got {r})"),
        )),
        _ => Ok(()),
    }
}

impl Config {
    fn validate_admission(&self) -> Result<(), ConfigError> {
        let a = &self.admission;
        let mut names = std::collections::HashSet::new();
        for (i, t) in a.trunks.iter().enumerate() {
            let f = format!("admission.trunks[{i}]");
            if t.name.is_empty() || !names.insert(t.name.as_str()) {
                return Err(ConfigError::new(
                    format!("{f}.name"),
                    format!("must be non-empty and unique (got {:?})", t.name),
                ));
            }
            rate(&format!("{f}.calls_per_second"), t.calls_per_second)?;
            in_range(&format!("{f}.burst"), t.burst, 0, 1_000_000, "")?;
            policy(&format!("{f}.reject"), &t.reject)?;
            if let Some(s) = t.downstream_503_status {
                in_range(&format!("{f}.downstream_503_status"), s, 400, 699, "")?;
                if s == 503 {
                    return Err(ConfigError::new(
                        format!("{f}.downstream_503_status"),
                        "must not be 503: relaying 503 makes carriers fail calls over to the fleet",
                    ));
                }
            }
        }
        if let Some(n) = &a.unknown_sources
            && !a.trunks.iter().any(|t| &t.name == n)
        {
            return Err(ConfigError::new(
                "admission.unknown_sources",
                format!(
                    "names trunk {n:?}, which is not defined; define it or refuse unknown sources"
                ),
            ));
        }
        rate("admission.calls_per_second", a.calls_per_second)?;
        if !(0.0..=1.0).contains(&a.shed_watermark) {
            return Err(ConfigError::new(
                "admission.shed_watermark",
                format!("must be between 0.0 and 1.0 (got {})", a.shed_watermark),
            ));
        }
        for (i, n) in a.protected_numbers.iter().enumerate() {
            if crate::route::normalize(n.as_bytes(), &self.routing.plan).is_none() {
                return Err(ConfigError::new(
                    format!("admission.protected_numbers[{i}]"),
                    format!("{n:?} is not a phone number"),
                ));
            }
        }
        policy("admission.drain", &a.drain)?;
        let fb = &a.feedback;
        let frac = |field: &str, v: f64, lo: f64, hi: f64| {
            if v.is_finite() && (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError::new(
                    field,
                    format!("must be between {lo} and {hi} (got {v})"),
                ))
            }
        };
        frac(
            "admission.feedback.target_utilisation",
            fb.target_utilisation,
            0.5,
            1.0,
        )?;
        frac("admission.feedback.band", fb.band, 0.0, 0.2)?;
        frac("admission.feedback.floor", fb.floor, 0.1, 0.99)?;
        frac("admission.feedback.step", fb.step, 0.0, 1.0)?;
        frac("admission.feedback.min_rate", fb.min_rate, 0.0, 1e6)?;
        duration_in(
            "admission.feedback.interval",
            fb.interval,
            Duration::from_millis(10),
            Duration::from_secs(60),
        )?;
        in_range(
            "admission.oc_validity_ms",
            a.oc_validity_ms,
            0,
            600_000,
            " ms",
        )?;
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
        c.routing.no_route_status = 200;
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "routing.no_route_status");
        assert!(e.to_string().contains("404 or 480"), "{e}");
        let mut c = Config::default();
        c.proxy.downstream_503_status = 503;
        assert_eq!(
            c.validate().unwrap_err().field,
            "proxy.downstream_503_status"
        );
        let mut c = Config::default();
        c.routing.route_failure_status = 503;
        assert_eq!(
            c.validate().unwrap_err().field,
            "routing.route_failure_status"
        );
        let mut c = Config::default();
        c.proxy.ring_timeout_status = 503;
        assert_eq!(c.validate().unwrap_err().field, "proxy.ring_timeout_status");
        let mut c = Config::default();
        c.limits.max_transactions = 0;
        assert_eq!(c.validate().unwrap_err().field, "limits.max_transactions");
        let mut c = Config::default();
        c.admission.unknown_sources = Some("nope".into());
        assert_eq!(c.validate().unwrap_err().field, "admission.unknown_sources");
        let mut c = Config::default();
        c.admission.calls_per_second = Some(f64::NAN);
        assert_eq!(
            c.validate().unwrap_err().field,
            "admission.calls_per_second"
        );
        let mut c = Config::default();
        c.admission
            .trunks
            .push(crate::guard::TrunkConfig::new("default"));
        assert_eq!(c.validate().unwrap_err().field, "admission.trunks[1].name");
    }
}
