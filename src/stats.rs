//! Counters: a snapshot of everything the engine counts, per outcome.

use crate::health::HealthState;
use crate::wire::ParseErrorKind;

/// Counts per transaction kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransactionCounts {
    /// Server INVITE transactions.
    pub server_invite: u64,
    /// Server non-INVITE transactions.
    pub server_non_invite: u64,
    /// Client INVITE transactions.
    pub client_invite: u64,
    /// Client non-INVITE transactions.
    pub client_non_invite: u64,
}

impl TransactionCounts {
    /// Sum over all kinds.
    pub fn total(&self) -> u64 {
        self.server_invite + self.server_non_invite + self.client_invite + self.client_non_invite
    }
}

/// Live transactions by state (a snapshot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// Server: Trying.
    pub server_trying: u64,
    /// Server: Proceeding.
    pub server_proceeding: u64,
    /// Server: Completed.
    pub server_completed: u64,
    /// Server: Confirmed.
    pub server_confirmed: u64,
    /// Server: Accepted.
    pub server_accepted: u64,
    /// Client: Calling or Trying.
    pub client_calling: u64,
    /// Client: Proceeding.
    pub client_proceeding: u64,
    /// Client: Completed.
    pub client_completed: u64,
    /// Client: Accepted.
    pub client_accepted: u64,
}

/// Admission counters for one trunk.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct TrunkStats {
    /// The trunk's name.
    pub name: String,
    /// New calls offered (INVITEs without a To tag that reached admission).
    pub offered: u64,
    /// New calls admitted.
    pub admitted: u64,
    /// Refusals by [`Refusal::index`](crate::guard::Refusal::index).
    pub refused: [u64; 8],
    /// Calls holding a slot on this trunk now (gauge, node-wide).
    pub active: u64,
    /// New INVITEs recognised as re-attempts of a call (same caller, dialled number,
    /// trunk, within the window).
    pub reattempts: u64,
    /// Re-attempts that replaced a still-ringing previous attempt.
    pub superseded: u64,
    /// Re-attempts refused at once because the previous attempt was refused for
    /// overload and its Retry-After had not passed.
    pub suppressed: u64,
    /// Re-attempts let through.
    pub reattempts_allowed: u64,
    /// Re-attempts refused by policy (duplicate delivery, or in progress with reject).
    pub duplicates_rejected: u64,
    /// Attempts per distinct call over the last minute (gauge): a carrier whose retry
    /// behaviour changes shows here first.
    pub retry_factor: f64,
}

impl TrunkStats {
    /// All refusals.
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().sum()
    }
}

/// A snapshot of the engine's counters. Counters only grow; gauges (`*_active`,
/// `states`) describe the moment of the snapshot.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Datagrams handed to the engine.
    pub datagrams: u64,
    /// Requests among them (retransmissions included).
    pub requests: u64,
    /// Responses among them (retransmissions included).
    pub responses: u64,
    /// CRLF keep-alives (RFC 5626), ignored.
    pub keepalives: u64,
    /// Unparseable datagrams by [`ParseErrorKind::index`].
    pub malformed: [u64; ParseErrorKind::LABELS.len()],
    /// Malformed requests that could still be answered (400/505/513).
    pub malformed_answered: u64,
    /// Request retransmissions answered from a cached response or absorbed.
    pub retransmissions_absorbed: u64,
    /// ACKs for our non-2xx finals, absorbed by their transaction.
    pub acks_absorbed: u64,
    /// Retransmitted responses from downstream absorbed by a client transaction.
    pub response_retransmissions_absorbed: u64,
    /// Timer-driven retransmissions sent (Timers A, E, G).
    pub retransmissions_sent: u64,
    /// Transactions created, by kind.
    pub transactions_created: TransactionCounts,
    /// Transactions alive now, by kind.
    pub transactions_active: TransactionCounts,
    /// Transactions alive now, by state.
    pub states: StateCounts,
    /// Responses the engine sent (generated or relayed), by class: index 0 = 1xx ...
    /// index 5 = 6xx. Retransmissions are not counted here.
    pub responses_sent: [u64; 6],
    /// Responses matching no client transaction, dropped.
    pub stray_responses: u64,
    /// ACKs matching no transaction and no dialog, dropped.
    pub stray_acks: u64,
    /// Requests answered 482 as merged (RFC 3261 §8.2.2.2).
    pub merged_requests: u64,
    /// Requests answered 503 because the transaction table was full.
    pub table_full: u64,
    /// Requests answered 400 for a branch without the RFC 3261 magic cookie.
    pub no_magic_cookie: u64,
    /// Client transactions that timed out (Timers B, F).
    pub transaction_timeouts: u64,
    /// Server INVITE transactions that ended without the ACK (Timer H).
    pub ack_timeouts: u64,
    /// Server transactions whose user never answered in time (answered 500, or
    /// dropped for non-INVITE per RFC 4320).
    pub unanswered: u64,
    /// INVITEs accepted for routing (calls started).
    pub calls_started: u64,
    /// Calls answered (2xx relayed).
    pub calls_answered: u64,
    /// Calls that got a non-2xx final upstream.
    pub calls_rejected: u64,
    /// Calls cancelled by the caller.
    pub calls_cancelled: u64,
    /// Calls that hit the ring timeout (Timer C).
    pub calls_no_answer: u64,
    /// Calls replaced by the carrier's re-attempt while still ringing (answered 487
    /// upstream, their leg cancelled; the re-attempt continues as a new call).
    pub calls_superseded: u64,
    /// Calls being set up now (gauge).
    pub calls_setting_up: u64,
    /// Dialogs now, by state (gauges).
    pub dialogs_early: u64,
    /// Confirmed dialogs (answered calls in progress).
    pub dialogs_confirmed: u64,
    /// Terminated dialogs still lingering.
    pub dialogs_terminated: u64,
    /// Answered calls that ended, by who or what ended them.
    pub calls_ended: u64,
    /// INVITEs forwarded downstream (first attempts and failovers).
    pub invites_forwarded: u64,
    /// Attempts on a next target after a failure.
    pub failovers: u64,
    /// Route requests sent to the host.
    pub route_requests: u64,
    /// Route requests the host did not answer in time.
    pub route_timeouts: u64,
    /// Calls routed from the last-known-good cache after a route timeout.
    pub route_fallbacks: u64,
    /// Downstream 503s turned into another status upstream.
    pub downstream_503_rewritten: u64,
    /// CANCELs sent downstream.
    pub cancels_sent: u64,
    /// BYEs the engine originated (max duration, stray 2xx).
    pub byes_sent: u64,
    /// In-dialog requests relayed (ACKs included).
    pub in_dialog_relayed: u64,
    /// In-dialog requests for no known dialog, answered 481 (ACKs dropped).
    pub no_dialog: u64,
    /// Requests answered 483 because Max-Forwards reached zero.
    pub too_many_hops: u64,
    /// Refusals by [`Refusal::index`](crate::guard::Refusal::index), all trunks.
    pub refused: [u64; 8],
    /// Per trunk, in configuration order.
    pub trunks: Vec<TrunkStats>,
    /// Failovers refused because the retry budget was spent (the call failed fast).
    pub budget_exhausted: u64,
    /// Destinations skipped because their circuit breaker was open.
    pub breaker_skips: u64,
    /// OPTIONS probes sent to half-open destinations.
    pub probes_sent: u64,
    /// Route requests that failed (timeout, or a 5xx answer from the host).
    pub host_route_errors: u64,
    /// Calls routed from the cache because the host's routing service was degraded.
    pub host_bypassed: u64,
    /// Re-attempt entries now (gauge).
    pub dedup_entries: u64,
    /// Re-attempt entries evicted because the table was full.
    pub dedup_evicted: u64,
    /// Destinations skipped because they were at their concurrency limit.
    pub targets_full: u64,
    /// Load feedback changes of the admitted rate.
    pub capacity_changes: u64,
    /// Whether the node is draining (gauge).
    pub draining: bool,
    /// Calls holding a capacity slot node-wide (gauge, all engines sharing the ledger).
    pub node_active_calls: u64,
    /// The rate load feedback admits, when it limits (gauge).
    pub adaptive_rate: Option<f64>,
    /// Health state (gauge).
    pub health: HealthState,
    /// Health score, 0..=1 (gauge).
    pub health_score: f64,
    /// Datagrams dropped because the host did not drain the transmit queue.
    pub dropped_transmits: u64,
    /// Events dropped because the host did not drain the event queue.
    pub dropped_events: u64,
}

impl Stats {
    /// All refusals.
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().sum()
    }

    /// Malformed datagrams of `kind`'s family.
    pub fn malformed_of(&self, kind: ParseErrorKind) -> u64 {
        self.malformed[kind.index()]
    }

    /// All malformed datagrams.
    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().sum()
    }

    pub(crate) fn count_response(&mut self, status: u16) {
        let class = (status / 100).clamp(1, 6) as usize - 1;
        self.responses_sent[class] += 1;
    }
}

/// Writes one metric family: HELP, TYPE, then each sample.
fn family(
    out: &mut impl std::fmt::Write,
    name: &str,
    kind: &str,
    help: &str,
    samples: &[(String, f64)],
) -> std::fmt::Result {
    writeln!(out, "# HELP ringfence_{name} {help}")?;
    writeln!(out, "# TYPE ringfence_{name} {kind}")?;
    for (labels, v) in samples {
        if v.fract() == 0.0 && v.abs() < 1e15 {
            writeln!(out, "ringfence_{name}{labels} {}", *v as i64)?;
        } else {
            writeln!(out, "ringfence_{name}{labels} {v}")?;
        }
    }
    Ok(())
}

/// A label value escaped for the exposition format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Stats {
    /// Renders every counter and gauge in the Prometheus text exposition format
    /// (version 0.0.4): `ringfence_*` families with HELP and TYPE lines, labels for
    /// trunk, reason, class, outcome and state.
    pub fn write_prometheus(&self, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        let one = |v: u64| vec![(String::new(), v as f64)];
        let c = |out: &mut _, name: &str, help: &str, v: u64| {
            family(out, name, "counter", help, &one(v))
        };
        let g = |out: &mut _, name: &str, help: &str, v: f64| {
            family(out, name, "gauge", help, &[(String::new(), v)])
        };
        c(
            out,
            "datagrams_total",
            "Datagrams handed to the engine.",
            self.datagrams,
        )?;
        c(
            out,
            "requests_total",
            "Requests received, retransmissions included.",
            self.requests,
        )?;
        c(
            out,
            "responses_total",
            "Responses received, retransmissions included.",
            self.responses,
        )?;
        c(
            out,
            "keepalives_total",
            "CRLF keep-alives received.",
            self.keepalives,
        )?;
        let malformed: Vec<(String, f64)> = ParseErrorKind::LABELS
            .iter()
            .zip(self.malformed)
            .map(|(l, v)| (format!("{{reason=\"{l}\"}}"), v as f64))
            .collect();
        family(
            out,
            "malformed_total",
            "counter",
            "Unparseable datagrams by reason.",
            &malformed,
        )?;
        c(
            out,
            "malformed_answered_total",
            "Malformed requests answered (400/505/513).",
            self.malformed_answered,
        )?;
        c(
            out,
            "retransmissions_absorbed_total",
            "Request retransmissions answered from cache or absorbed.",
            self.retransmissions_absorbed,
        )?;
        c(
            out,
            "acks_absorbed_total",
            "ACKs for our non-2xx finals absorbed.",
            self.acks_absorbed,
        )?;
        c(
            out,
            "response_retransmissions_absorbed_total",
            "Downstream response retransmissions absorbed.",
            self.response_retransmissions_absorbed,
        )?;
        c(
            out,
            "retransmissions_sent_total",
            "Timer-driven retransmissions sent.",
            self.retransmissions_sent,
        )?;
        let tx = |t: &TransactionCounts| {
            vec![
                (
                    "{kind=\"server_invite\"}".to_owned(),
                    t.server_invite as f64,
                ),
                (
                    "{kind=\"server_non_invite\"}".to_owned(),
                    t.server_non_invite as f64,
                ),
                (
                    "{kind=\"client_invite\"}".to_owned(),
                    t.client_invite as f64,
                ),
                (
                    "{kind=\"client_non_invite\"}".to_owned(),
                    t.client_non_invite as f64,
                ),
            ]
        };
        family(
            out,
            "transactions_created_total",
            "counter",
            "Transactions created by kind.",
            &tx(&self.transactions_created),
        )?;
        family(
            out,
            "transactions_active",
            "gauge",
            "Transactions alive by kind.",
            &tx(&self.transactions_active),
        )?;
        let classes: Vec<(String, f64)> = self
            .responses_sent
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("{{class=\"{}xx\"}}", i + 1), *v as f64))
            .collect();
        family(
            out,
            "responses_sent_total",
            "counter",
            "Responses sent (generated or relayed) by class.",
            &classes,
        )?;
        let outcomes = [
            ("started", self.calls_started),
            ("answered", self.calls_answered),
            ("rejected", self.calls_rejected),
            ("cancelled", self.calls_cancelled),
            ("no_answer", self.calls_no_answer),
            ("superseded", self.calls_superseded),
            ("ended", self.calls_ended),
        ];
        let outcomes: Vec<(String, f64)> = outcomes
            .iter()
            .map(|(o, v)| (format!("{{outcome=\"{o}\"}}"), *v as f64))
            .collect();
        family(
            out,
            "calls_total",
            "counter",
            "Calls by outcome.",
            &outcomes,
        )?;
        g(
            out,
            "calls_setting_up",
            "Calls between INVITE and final response.",
            self.calls_setting_up as f64,
        )?;
        let dialogs = vec![
            ("{state=\"early\"}".to_owned(), self.dialogs_early as f64),
            (
                "{state=\"confirmed\"}".to_owned(),
                self.dialogs_confirmed as f64,
            ),
            (
                "{state=\"terminated\"}".to_owned(),
                self.dialogs_terminated as f64,
            ),
        ];
        family(out, "dialogs", "gauge", "Dialogs by state.", &dialogs)?;
        g(
            out,
            "node_active_calls",
            "Calls holding a capacity slot node-wide.",
            self.node_active_calls as f64,
        )?;
        c(
            out,
            "invites_forwarded_total",
            "INVITEs forwarded downstream.",
            self.invites_forwarded,
        )?;
        c(
            out,
            "failovers_total",
            "Attempts on a next target after a failure.",
            self.failovers,
        )?;
        c(
            out,
            "route_requests_total",
            "Route requests sent to the host.",
            self.route_requests,
        )?;
        c(
            out,
            "route_timeouts_total",
            "Route requests the host did not answer in time.",
            self.route_timeouts,
        )?;
        c(
            out,
            "route_fallbacks_total",
            "Calls routed from the last-known-good cache.",
            self.route_fallbacks,
        )?;
        c(
            out,
            "downstream_503_rewritten_total",
            "Downstream 503s not relayed upstream.",
            self.downstream_503_rewritten,
        )?;
        c(
            out,
            "cancels_sent_total",
            "CANCELs sent downstream.",
            self.cancels_sent,
        )?;
        c(
            out,
            "byes_sent_total",
            "BYEs originated by the engine.",
            self.byes_sent,
        )?;
        c(
            out,
            "in_dialog_relayed_total",
            "In-dialog requests relayed.",
            self.in_dialog_relayed,
        )?;
        c(
            out,
            "stray_responses_total",
            "Responses matching no transaction.",
            self.stray_responses,
        )?;
        c(
            out,
            "table_full_total",
            "Requests refused because a table was full.",
            self.table_full,
        )?;
        let refused: Vec<(String, f64)> = crate::guard::Refusal::ALL
            .iter()
            .map(|r| {
                (
                    format!("{{cause=\"{}\"}}", r.label()),
                    self.refused[r.index()] as f64,
                )
            })
            .collect();
        family(
            out,
            "refused_total",
            "counter",
            "New calls refused by admission, by cause.",
            &refused,
        )?;
        c(
            out,
            "budget_exhausted_total",
            "Failovers refused because the retry budget was spent.",
            self.budget_exhausted,
        )?;
        c(
            out,
            "breaker_skips_total",
            "Destinations skipped for an open breaker.",
            self.breaker_skips,
        )?;
        c(
            out,
            "probes_sent_total",
            "OPTIONS probes sent to half-open destinations.",
            self.probes_sent,
        )?;
        c(
            out,
            "host_route_errors_total",
            "Route requests that failed.",
            self.host_route_errors,
        )?;
        c(
            out,
            "host_bypassed_total",
            "Calls routed without asking the host.",
            self.host_bypassed,
        )?;
        g(
            out,
            "dedup_entries",
            "Re-attempt table entries.",
            self.dedup_entries as f64,
        )?;
        c(
            out,
            "dedup_evicted_total",
            "Re-attempt entries evicted for room.",
            self.dedup_evicted,
        )?;
        c(
            out,
            "capacity_changes_total",
            "Load feedback changes of the admitted rate.",
            self.capacity_changes,
        )?;
        g(
            out,
            "adaptive_rate",
            "Calls per second load feedback admits (0: not limiting).",
            self.adaptive_rate.unwrap_or(0.0),
        )?;
        g(
            out,
            "draining",
            "1 while the node drains.",
            u8::from(self.draining) as f64,
        )?;
        let states = [
            HealthState::Healthy,
            HealthState::Degraded,
            HealthState::Bypass,
        ];
        let health: Vec<(String, f64)> = states
            .iter()
            .map(|s| {
                (
                    format!("{{state=\"{}\"}}", s.label()),
                    u8::from(*s == self.health) as f64,
                )
            })
            .collect();
        family(
            out,
            "health_state",
            "gauge",
            "1 for the node's current health state.",
            &health,
        )?;
        g(
            out,
            "health_score",
            "Health score, 0 to 1.",
            self.health_score,
        )?;
        c(
            out,
            "dropped_transmits_total",
            "Datagrams dropped: the host did not drain.",
            self.dropped_transmits,
        )?;
        c(
            out,
            "dropped_events_total",
            "Events dropped: the host did not drain.",
            self.dropped_events,
        )?;
        type TrunkField = fn(&TrunkStats) -> f64;
        let trunk_families: [(&str, &str, &str, TrunkField); 10] = [
            (
                "trunk_offered_total",
                "counter",
                "New calls offered per trunk.",
                |t| t.offered as f64,
            ),
            (
                "trunk_admitted_total",
                "counter",
                "New calls admitted per trunk.",
                |t| t.admitted as f64,
            ),
            (
                "trunk_active_calls",
                "gauge",
                "Calls holding a slot per trunk.",
                |t| t.active as f64,
            ),
            (
                "trunk_reattempts_total",
                "counter",
                "Carrier re-attempts recognised per trunk.",
                |t| t.reattempts as f64,
            ),
            (
                "trunk_superseded_total",
                "counter",
                "Re-attempts that replaced a ringing attempt.",
                |t| t.superseded as f64,
            ),
            (
                "trunk_suppressed_total",
                "counter",
                "Re-attempts refused inside our Retry-After.",
                |t| t.suppressed as f64,
            ),
            (
                "trunk_reattempts_allowed_total",
                "counter",
                "Re-attempts let through.",
                |t| t.reattempts_allowed as f64,
            ),
            (
                "trunk_duplicates_rejected_total",
                "counter",
                "Re-attempts refused by policy.",
                |t| t.duplicates_rejected as f64,
            ),
            (
                "trunk_retry_factor",
                "gauge",
                "Attempts per distinct call over the last minute.",
                |t| t.retry_factor,
            ),
            (
                "trunk_refused_total",
                "counter",
                "New calls refused per trunk (all causes).",
                |t| t.refused_total() as f64,
            ),
        ];
        for (name, kind, help, f) in trunk_families {
            let samples: Vec<(String, f64)> = self
                .trunks
                .iter()
                .map(|t| (format!("{{trunk=\"{}\"}}", label(&t.name)), f(t)))
                .collect();
            family(out, name, kind, help, &samples)?;
        }
        let mut by_cause = Vec::new();
        for t in &self.trunks {
            for r in crate::guard::Refusal::ALL {
                by_cause.push((
                    format!("{{trunk=\"{}\",cause=\"{}\"}}", label(&t.name), r.label()),
                    t.refused[r.index()] as f64,
                ));
            }
        }
        family(
            out,
            "trunk_refused_by_cause_total",
            "counter",
            "New calls refused per trunk and cause.",
            &by_cause,
        )
    }
}
