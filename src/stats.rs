//! Counters: a snapshot of everything the engine counts, per outcome.

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
