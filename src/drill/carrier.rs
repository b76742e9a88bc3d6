//! A simulated carrier: originates calls to a list of nodes and behaves as its retry
//! profile says (re-attempts with new Call-IDs, failover on 503, RFC 3261
//! retransmissions). Sans-IO: time in, datagrams out.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::profile::RetryProfile;
use super::{Actor, FastMap, Outgoing};
use crate::rng::Rng;
use crate::wire::{self, Limits, Message, Method};

/// A simulated carrier's settings.
#[derive(Clone, Debug)]
pub struct CarrierConfig {
    /// The carrier's own address.
    pub local: SocketAddr,
    /// Nodes it sends calls to; a call starts on the next one in turn and fails over
    /// down the list on 503.
    pub targets: Vec<SocketAddr>,
    /// How it re-attempts.
    pub profile: RetryProfile,
    /// Numbers it calls, in turn.
    pub dialled: Vec<String>,
    /// Talk time of answered calls before the carrier hangs up.
    pub hold: Duration,
    /// Seed for its random choices.
    pub seed: u64,
}

/// What the carrier saw. Counters only grow.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CarrierStats {
    /// Distinct calls offered.
    pub calls: u64,
    /// INVITE attempts sent (first attempts and re-attempts; not retransmissions).
    pub attempts: u64,
    /// RFC 3261 retransmissions sent.
    pub retransmissions: u64,
    /// Calls answered.
    pub answered: u64,
    /// Calls that ended busy (486/600).
    pub busy: u64,
    /// 503s received.
    pub got_503: u64,
    /// Calls that ended without an answer after every attempt.
    pub failed: u64,
    /// Attempts given up for no answer in time (CANCELled or abandoned).
    pub gave_up: u64,
    /// Sum and count of answered calls' setup time (first INVITE to 200), for means.
    pub setup_total: Duration,
    /// Slowest setup seen.
    pub setup_max: Duration,
    /// 5xx finals to attempts still wanted: refusals (503) and failures (500...) on
    /// the proxy's side.
    pub rejected: u64,
}

impl CarrierStats {
    /// Mean setup time of answered calls.
    pub fn setup_mean(&self) -> Duration {
        if self.answered == 0 {
            Duration::ZERO
        } else {
            self.setup_total / self.answered as u32
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Calling,
    Proceeding,
    Answered,
    /// Gave up on it (CANCEL sent or abandoned): a late answer is hung up.
    Abandoned,
    Done,
}

#[derive(Debug)]
struct Attempt {
    call: u64,
    /// CSeq number of its INVITE (CANCEL and the ACK of a non-2xx must repeat it).
    cseq: u32,
    branch: String,
    call_id: String,
    from_tag: String,
    target: SocketAddr,
    /// `target`, formatted.
    target_text: String,
    invite: Vec<u8>,
    state: State,
    interval: Duration,
    retransmit_at: Option<Instant>,
    timer_b: Option<Instant>,
    give_up_at: Option<Instant>,
    hangup_at: Option<Instant>,
    to_tag: Option<String>,
    contact: String,
    /// A CANCEL was sent (never a second).
    cancel_sent: bool,
    /// When it reached `Done` or `Abandoned`: it is forgotten `LINGER` later.
    finished_at: Option<Instant>,
    /// The time of its live entry in the timer queue (other entries are stale).
    armed: Option<Instant>,
}

#[derive(Debug)]
struct Call {
    caller: String,
    dialled: String,
    started: Instant,
    attempts: u32,
    /// Index into `targets` of the node tried last.
    node: usize,
    /// 503s in a row on this attempt round (for failover down the list).
    failovers: usize,
    call_id: String,
    done: bool,
    /// Attempts of this call still remembered.
    live: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Attempt(u64),
    NextAttempt(u64),
}

/// A simulated carrier.
#[derive(Debug)]
pub struct Carrier {
    cfg: CarrierConfig,
    rng: Rng,
    calls: FastMap<u64, Call>,
    attempts: FastMap<u64, Attempt>,
    next_attempt: u64,
    by_branch: FastMap<String, u64>,
    /// `local` and its IP, formatted once.
    local_text: (String, String),
    /// `targets`, formatted once.
    target_text: Vec<String>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    /// Finished attempts to forget, in time order.
    forget_at: VecDeque<(Instant, u64)>,
    out: VecDeque<Outgoing>,
    next_call: u64,
    next_node: usize,
    stats: CarrierStats,
    /// Setup times of answered calls since the last `take_setup_times`.
    setups: Vec<Duration>,
    /// When each call answered since the last `take_answers` was offered, and its setup.
    answers: Vec<(Instant, Duration)>,
}

fn t1() -> Duration {
    Duration::from_millis(500)
}

/// Status, top-Via branch and whether the CSeq names INVITE, read straight off a
/// response to one of our requests (our Via on top, our CSeq line): the carrier needs
/// no more for provisionals and responses to BYE or CANCEL. `None` when the bytes do
/// not look like that; the caller parses them properly then.
fn peek_response(bytes: &[u8]) -> Option<(u16, &[u8], bool)> {
    use memchr::memmem::Finder;
    use std::sync::OnceLock;
    static BRANCH: OnceLock<Finder<'static>> = OnceLock::new();
    static CSEQ: OnceLock<Finder<'static>> = OnceLock::new();
    let rest = bytes.strip_prefix(b"SIP/2.0 ")?;
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || rest.get(3) != Some(&b' ') {
        return None;
    }
    let status = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    // Our Via is the first header line.
    let via = &bytes[memchr::memchr(b'\n', bytes)? + 1..];
    let via = via.strip_prefix(b"Via: ")?;
    let via = &via[..memchr::memchr(b'\r', via)?];
    let at = BRANCH.get_or_init(|| Finder::new(b";branch=")).find(via)? + 8;
    let len = via[at..]
        .iter()
        .position(|c| matches!(c, b';' | b',' | b' '))
        .unwrap_or(via.len() - at);
    let cseq = CSEQ
        .get_or_init(|| Finder::new(b"\r\nCSeq: "))
        .find(bytes)?
        + 8;
    let line = &bytes[cseq..];
    let line = &line[..memchr::memchr(b'\r', line)?];
    let method = line.rsplit(|c| *c == b' ').next()?;
    Some((status, &via[at..at + len], method == b"INVITE"))
}

/// How long a finished attempt is remembered, so late responses to it are still
/// recognised (ACKed, hung up or cancelled): 64·T1 plus a margin.
const LINGER: Duration = Duration::from_secs(40);

impl Carrier {
    /// A carrier with no calls yet.
    pub fn new(cfg: CarrierConfig) -> Carrier {
        Carrier {
            rng: Rng::new(cfg.seed),
            local_text: (cfg.local.to_string(), cfg.local.ip().to_string()),
            target_text: cfg.targets.iter().map(|t| t.to_string()).collect(),
            cfg,
            calls: FastMap::default(),
            attempts: FastMap::default(),
            next_attempt: 0,
            by_branch: FastMap::default(),
            timers: BinaryHeap::new(),
            forget_at: VecDeque::new(),
            out: VecDeque::new(),
            next_call: 0,
            next_node: 0,
            stats: CarrierStats::default(),
            setups: Vec::new(),
            answers: Vec::new(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &CarrierStats {
        &self.stats
    }

    /// Setup times of calls answered since the last call of this.
    pub fn take_setup_times(&mut self) -> Vec<Duration> {
        std::mem::take(&mut self.setups)
    }

    /// When each call answered since the last call of this was offered, with its setup
    /// time (to attribute answers to the moment the call was offered).
    pub fn take_answers(&mut self) -> Vec<(Instant, Duration)> {
        std::mem::take(&mut self.answers)
    }

    /// Attempts and calls still remembered (finished ones are forgotten after a while).
    pub fn remembered(&self) -> (usize, usize) {
        (self.attempts.len(), self.calls.len())
    }

    /// Calls neither answered nor given up yet.
    pub fn calls_in_progress(&self) -> usize {
        self.calls.values().filter(|c| !c.done).count()
    }

    /// Switches retry behaviour (as carriers did, unannounced, in the incident).
    pub fn set_profile(&mut self, profile: RetryProfile) {
        self.cfg.profile = profile;
    }

    /// Replaces the nodes calls go to.
    pub fn set_targets(&mut self, targets: Vec<SocketAddr>) {
        self.target_text = targets.iter().map(|t| t.to_string()).collect();
        self.cfg.targets = targets;
    }

    /// Offers a new call now: a fresh caller, the next dialled number, the next node.
    pub fn start_call(&mut self, now: Instant) {
        if self.cfg.targets.is_empty() || self.cfg.dialled.is_empty() {
            return;
        }
        let id = self.next_call;
        self.next_call += 1;
        self.stats.calls += 1;
        let dialled = self.cfg.dialled[(id as usize) % self.cfg.dialled.len()].clone();
        let node = self.next_node % self.cfg.targets.len();
        self.next_node += 1;
        let call = Call {
            caller: format!(
                "+1415{:07}",
                (self.cfg.seed.wrapping_mul(7919) + id) % 10_000_000
            ),
            dialled,
            started: now,
            attempts: 0,
            node,
            failovers: 0,
            call_id: format!("{:016x}@{}", self.rng.next_u64(), self.local_text.0),
            done: false,
            live: 0,
        };
        self.calls.insert(id, call);
        self.attempt(id, now);
    }

    fn attempt(&mut self, id: u64, now: Instant) {
        let renew = self.cfg.profile.renew_call_id;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.attempts += 1;
        call.live += 1;
        if renew && call.attempts > 1 {
            call.call_id = format!("{:016x}@{}", self.rng.next_u64(), self.local_text.0);
        }
        let slot = call.node % self.cfg.targets.len();
        let target = self.cfg.targets[slot];
        let target_text = self.target_text[slot].clone();
        let branch = format!("z9hG4bKdr{:016x}", self.rng.next_u64());
        let from_tag = format!("{:08x}", self.rng.next_u64() as u32);
        let (local, ip) = (&self.local_text.0, &self.local_text.1);
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
        );
        let invite = format!(
            "INVITE sip:{d}@{target_text} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{c}@{ip}>;tag={from_tag}\r\nTo: <sip:{d}@{target_text}>\r\nCall-ID: {cid}\r\nCSeq: {n} INVITE\r\nContact: <sip:{c}@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
            d = call.dialled,
            c = call.caller,
            cid = call.call_id,
            n = call.attempts,
            len = sdp.len(),
        );
        let (cseq, call_id) = (call.attempts, call.call_id.clone());
        let retransmit = self.cfg.profile.retransmit;
        let idx = self.next_attempt;
        self.next_attempt += 1;
        let give_up_at = self.cfg.profile.no_answer_after.map(|d| now + d);
        let invite = invite.into_bytes();
        self.stats.attempts += 1;
        self.send(target, invite.clone());
        self.attempts.insert(
            idx,
            Attempt {
                call: id,
                cseq,
                branch: branch.clone(),
                call_id,
                from_tag,
                target,
                target_text,
                invite,
                state: State::Calling,
                interval: t1(),
                retransmit_at: retransmit.then(|| now + t1()),
                timer_b: Some(now + t1() * 64),
                give_up_at,
                hangup_at: None,
                to_tag: None,
                contact: String::new(),
                cancel_sent: false,
                finished_at: None,
                armed: None,
            },
        );
        self.by_branch.insert(branch, idx);
        self.arm(idx);
    }

    /// Ends attempt `idx` (`Done` or `Abandoned`): no more retransmissions, and it is
    /// forgotten `LINGER` from now.
    fn finish(&mut self, idx: u64, now: Instant, state: State) {
        let Some(a) = self.attempts.get_mut(&idx) else {
            return;
        };
        a.state = state;
        a.invite = Vec::new();
        // A finished attempt has no deadlines left (a past deadline left armed would be
        // re-armed each time it fires: `handle_timeout` would never return).
        a.retransmit_at = None;
        a.timer_b = None;
        a.give_up_at = None;
        a.hangup_at = None;
        if a.finished_at.is_none() {
            a.finished_at = Some(now);
            // A fixed linger: forget times come in the order they are queued.
            self.forget_at.push_back((now + LINGER, idx));
        }
    }

    fn forget(&mut self, idx: u64) {
        let Some(a) = self.attempts.remove(&idx) else {
            return;
        };
        self.by_branch.remove(&a.branch);
        if let Some(c) = self.calls.get_mut(&a.call) {
            c.live = c.live.saturating_sub(1);
            if c.done && c.live == 0 {
                self.calls.remove(&a.call);
            }
        }
    }

    fn arm(&mut self, idx: u64) {
        let Some(a) = self.attempts.get(&idx) else {
            return;
        };
        // Only the deadlines the state still has.
        let due = match a.state {
            State::Calling => [a.retransmit_at, a.timer_b, a.give_up_at],
            State::Proceeding => [a.give_up_at, None, None],
            State::Answered => [a.hangup_at, None, None],
            State::Abandoned | State::Done => [None; 3],
        };
        let Some(t) = due.into_iter().flatten().min() else {
            return;
        };
        if a.armed != Some(t) {
            if let Some(a) = self.attempts.get_mut(&idx) {
                a.armed = Some(t);
            }
            self.timers.push(Reverse((t, Timer::Attempt(idx))));
        }
    }

    fn send(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        self.out.push_back(Outgoing {
            to,
            from: self.cfg.local,
            bytes,
        });
    }

    /// An in-dialog or transaction-level request for attempt `idx` (ACK, BYE, CANCEL).
    fn request(&mut self, idx: u64, method: &str, same_branch: bool, cseq_method: &str) {
        let Some(a) = self.attempts.get(&idx) else {
            return;
        };
        let Some(call) = self.calls.get(&a.call) else {
            return;
        };
        let branch = if same_branch {
            a.branch.clone()
        } else {
            format!("z9hG4bKdr{:016x}", self.rng.next_u64())
        };
        let to_tag = a
            .to_tag
            .as_ref()
            .map(|t| format!(";tag={t}"))
            .unwrap_or_default();
        let ruri = if method == "CANCEL" || (method == "ACK" && same_branch) || a.contact.is_empty()
        {
            format!("sip:{}@{}", call.dialled, a.target_text)
        } else {
            a.contact.clone()
        };
        // CANCEL and the ACK of a non-2xx repeat the INVITE's CSeq number; a BYE is
        // the next request of the dialog.
        let cseq = a.cseq + u32::from(method == "BYE");
        let (local, ip) = (&self.local_text.0, &self.local_text.1);
        let msg = format!(
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{c}@{ip}>;tag={ft}\r\nTo: <sip:{d}@{t}>{to_tag}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {cseq_method}\r\nContent-Length: 0\r\n\r\n",
            c = call.caller,
            ft = a.from_tag,
            d = call.dialled,
            t = a.target_text,
            cid = a.call_id,
        );
        let target = a.target;
        self.send(target, msg.into_bytes());
    }

    /// CANCELs attempt `idx` once.
    fn cancel(&mut self, idx: u64) {
        let Some(a) = self.attempts.get_mut(&idx) else {
            return;
        };
        if a.cancel_sent {
            return;
        }
        a.cancel_sent = true;
        self.request(idx, "CANCEL", true, "CANCEL");
    }

    /// Ends this attempt; re-attempts the call if the profile says so.
    fn attempt_failed(&mut self, idx: u64, now: Instant, retry: bool, delay: Duration) {
        self.finish(idx, now, State::Done);
        let Some(call_id) = self.attempts.get(&idx).map(|a| a.call) else {
            return;
        };
        let max = self.cfg.profile.attempts;
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        if call.done {
            return;
        }
        if retry && call.attempts < max {
            self.timers
                .push(Reverse((now + delay, Timer::NextAttempt(call_id))));
        } else {
            call.done = true;
            self.stats.failed += 1;
        }
    }

    /// The attempt whose INVITE has this branch.
    fn attempt_of(&self, branch: Option<&[u8]>) -> Option<u64> {
        let b = std::str::from_utf8(branch?).ok()?;
        self.by_branch.get(b).copied()
    }

    /// A provisional response to attempt `idx`'s INVITE.
    fn on_provisional(&mut self, idx: u64) {
        let Some(a) = self.attempts.get_mut(&idx) else {
            return;
        };
        let state = a.state;
        a.retransmit_at = None;
        a.timer_b = None;
        if state == State::Calling {
            a.state = State::Proceeding;
            // Nothing retransmits the INVITE any more.
            a.invite = Vec::new();
        }
        if state == State::Abandoned {
            // The provisional we waited for before cancelling.
            self.cancel(idx);
        }
    }

    fn on_response(&mut self, now: Instant, msg: &Message<'_>) {
        let Some(idx) = self.attempt_of(msg.branch()) else {
            return;
        };
        let status = msg.status().unwrap_or(0);
        let method = msg.cseq().method;
        if method != Method::Invite {
            return;
        }
        let Some(a) = self.attempts.get_mut(&idx) else {
            return;
        };
        let state = a.state;
        match status {
            100..=199 => self.on_provisional(idx),
            200..=299 => {
                a.to_tag = msg
                    .to_tag()
                    .map(|t| String::from_utf8_lossy(t).into_owned());
                a.contact = msg
                    .contact()
                    .map(|c| String::from_utf8_lossy(crate::proxy::uri_of(c)).into_owned())
                    .unwrap_or_default();
                a.retransmit_at = None;
                a.timer_b = None;
                a.give_up_at = None;
                a.invite = Vec::new();
                let call_id = a.call;
                self.request(idx, "ACK", false, "ACK");
                let answered_now =
                    state != State::Answered && state != State::Done && state != State::Abandoned;
                let call_done = self.calls.get(&call_id).is_none_or(|c| c.done);
                if answered_now && !call_done {
                    if let Some(a) = self.attempts.get_mut(&idx) {
                        a.state = State::Answered;
                        a.hangup_at = Some(now + self.cfg.hold);
                    }
                    if let Some(call) = self.calls.get_mut(&call_id) {
                        call.done = true;
                        let setup = now.saturating_duration_since(call.started);
                        self.stats.answered += 1;
                        self.stats.setup_total += setup;
                        self.stats.setup_max = self.stats.setup_max.max(setup);
                        self.setups.push(setup);
                        self.answers.push((call.started, setup));
                    }
                    self.arm(idx);
                } else if state != State::Answered && state != State::Done {
                    // An answer nobody wants any more: hang it up (once).
                    self.finish(idx, now, State::Done);
                    self.request(idx, "BYE", false, "BYE");
                }
            }
            _ => {
                if a.to_tag.is_none() {
                    a.to_tag = msg
                        .to_tag()
                        .map(|t| String::from_utf8_lossy(t).into_owned());
                }
                a.retransmit_at = None;
                a.timer_b = None;
                let call_id = a.call;
                self.request(idx, "ACK", true, "ACK");
                match state {
                    State::Done | State::Answered => return,
                    State::Abandoned => {
                        // The final of an attempt already given up (its re-attempt, if
                        // any, is scheduled): nothing more to do.
                        self.finish(idx, now, State::Done);
                        return;
                    }
                    State::Calling | State::Proceeding => {}
                }
                let p = self.cfg.profile.clone();
                if (500..600).contains(&status) {
                    self.stats.rejected += 1;
                }
                match status {
                    503 => {
                        self.stats.got_503 += 1;
                        let retry_after = msg
                            .headers()
                            .find(|h| h.kind == wire::HeaderName::RetryAfter)
                            .and_then(|h| {
                                std::str::from_utf8(h.value)
                                    .ok()?
                                    .trim()
                                    .parse::<u64>()
                                    .ok()
                            });
                        let nodes = self.cfg.targets.len();
                        let failover = p.failover_on_503
                            && self
                                .calls
                                .get(&call_id)
                                .is_some_and(|c| c.failovers + 1 < nodes);
                        if failover {
                            if let Some(c) = self.calls.get_mut(&call_id) {
                                c.failovers += 1;
                                c.node += 1;
                            }
                            self.finish(idx, now, State::Done);
                            if self
                                .calls
                                .get(&call_id)
                                .is_some_and(|c| c.attempts < p.attempts.max(nodes as u32))
                            {
                                self.attempt(call_id, now);
                            } else {
                                self.attempt_failed(idx, now, false, Duration::ZERO);
                            }
                        } else {
                            let wait = match retry_after {
                                Some(s) if p.honour_retry_after => {
                                    Duration::from_secs(s).max(p.delay)
                                }
                                _ => p.delay,
                            };
                            if let Some(c) = self.calls.get_mut(&call_id) {
                                c.failovers = 0;
                            }
                            self.attempt_failed(idx, now, p.on_503, wait);
                        }
                    }
                    486 | 600 => {
                        self.finish(idx, now, State::Done);
                        if let Some(c) = self.calls.get_mut(&call_id)
                            && !c.done
                        {
                            c.done = true;
                            self.stats.busy += 1;
                        }
                    }
                    487 => {
                        // Our CANCEL took effect: the give-up already scheduled a retry.
                        self.finish(idx, now, State::Done);
                    }
                    500..=599 => self.attempt_failed(idx, now, p.on_5xx, p.delay),
                    _ => self.attempt_failed(idx, now, false, Duration::ZERO),
                }
            }
        }
    }

    fn on_attempt_timer(&mut self, idx: u64, now: Instant) {
        let Some(a) = self.attempts.get_mut(&idx) else {
            return;
        };
        if a.retransmit_at.is_some_and(|t| t <= now) && a.state == State::Calling {
            a.interval *= 2;
            a.retransmit_at = Some(now + a.interval);
            self.stats.retransmissions += 1;
            let (target, bytes) = (a.target, a.invite.clone());
            self.send(target, bytes);
        }
        let Some(a) = self.attempts.get_mut(&idx) else {
            return;
        };
        if a.hangup_at.is_some_and(|t| t <= now) {
            a.hangup_at = None;
            self.finish(idx, now, State::Done);
            self.request(idx, "BYE", false, "BYE");
            return;
        }
        let no_answer = a.give_up_at.is_some_and(|t| t <= now);
        let timed_out = a.timer_b.is_some_and(|t| t <= now);
        if (no_answer || timed_out) && matches!(a.state, State::Calling | State::Proceeding) {
            let ringing = a.state == State::Proceeding;
            a.give_up_at = None;
            a.timer_b = None;
            let call_id = a.call;
            self.finish(idx, now, State::Abandoned);
            self.stats.gave_up += 1;
            if ringing {
                self.cancel(idx);
            }
            let (delay, on) = (
                self.cfg.profile.delay,
                self.cfg.profile.no_answer_after.is_some(),
            );
            let max = self.cfg.profile.attempts;
            if let Some(c) = self.calls.get_mut(&call_id) {
                if on && c.attempts < max && !c.done {
                    self.timers
                        .push(Reverse((now + delay, Timer::NextAttempt(call_id))));
                } else if !c.done {
                    c.done = true;
                    self.stats.failed += 1;
                }
            }
            return;
        }
        self.arm(idx);
    }
}

impl Actor for Carrier {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        // Provisionals (most of what arrives) need only the keys: no full scan.
        // Responses to anything but an INVITE are of no interest either.
        if let Some((status, branch, invite)) = peek_response(bytes) {
            let provisional = (100..200).contains(&status);
            if invite
                && provisional
                && let Some(idx) = self.attempt_of(Some(branch))
            {
                self.on_provisional(idx);
            }
            if !invite || provisional {
                return;
            }
        }
        let Ok(msg) = wire::scan(bytes, &Limits::default()) else {
            return;
        };
        if msg.is_request() {
            // A BYE or anything else from the far end: answer 200.
            if msg.method() != Some(Method::Ack) {
                let mut out = Vec::new();
                wire::write_response(&msg, &wire::Reply::new(200, b"OK"), &mut out);
                self.out.push_back(Outgoing {
                    to: from,
                    from: self.cfg.local,
                    bytes: out,
                });
            }
            return;
        }
        self.on_response(now, &msg);
    }

    fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(t, idx)) = self.forget_at.front() {
            if t > now {
                break;
            }
            self.forget_at.pop_front();
            self.forget(idx);
        }
        while let Some(Reverse((t, timer))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Attempt(idx) => {
                    // Only the attempt's live entry; entries it re-armed past are stale.
                    if let Some(a) = self.attempts.get_mut(&idx)
                        && a.armed == Some(t)
                    {
                        a.armed = None;
                        self.on_attempt_timer(idx, now);
                    }
                }
                Timer::NextAttempt(call) => {
                    if self.calls.get(&call).is_some_and(|c| !c.done) {
                        self.attempt(call, now);
                    }
                }
            }
        }
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((t, _))| *t);
        let forget = self.forget_at.front().map(|(t, _)| *t);
        timer.into_iter().chain(forget).min()
    }

    fn poll_transmit(&mut self) -> Option<Outgoing> {
        self.out.pop_front()
    }
}
