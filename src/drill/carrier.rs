//! A simulated carrier: originates calls to a list of nodes and behaves as its retry
//! profile says (re-attempts with new Call-IDs, failover on 503, RFC 3261
//! retransmissions). Sans-IO: time in, datagrams out.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::profile::RetryProfile;
use super::{Actor, Outgoing};
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
    branch: String,
    call_id: String,
    from_tag: String,
    target: SocketAddr,
    invite: Vec<u8>,
    state: State,
    interval: Duration,
    retransmit_at: Option<Instant>,
    timer_b: Option<Instant>,
    give_up_at: Option<Instant>,
    hangup_at: Option<Instant>,
    to_tag: Option<String>,
    contact: String,
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Attempt(usize),
    NextAttempt(u64),
}

/// A simulated carrier.
#[derive(Debug)]
pub struct Carrier {
    cfg: CarrierConfig,
    rng: Rng,
    calls: HashMap<u64, Call>,
    attempts: Vec<Attempt>,
    by_branch: HashMap<String, usize>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    out: VecDeque<Outgoing>,
    next_call: u64,
    next_node: usize,
    stats: CarrierStats,
    /// Setup times of answered calls since the last `take_setup_times`.
    setups: Vec<Duration>,
}

fn t1() -> Duration {
    Duration::from_millis(500)
}

impl Carrier {
    /// A carrier with no calls yet.
    pub fn new(cfg: CarrierConfig) -> Carrier {
        Carrier {
            rng: Rng::new(cfg.seed),
            cfg,
            calls: HashMap::new(),
            attempts: Vec::new(),
            by_branch: HashMap::new(),
            timers: BinaryHeap::new(),
            out: VecDeque::new(),
            next_call: 0,
            next_node: 0,
            stats: CarrierStats::default(),
            setups: Vec::new(),
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
            call_id: format!("{:016x}@{}", self.rng.next_u64(), self.cfg.local),
            done: false,
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
        if renew && call.attempts > 1 {
            call.call_id = format!("{:016x}@{}", self.rng.next_u64(), self.cfg.local);
        }
        let target = self.cfg.targets[call.node % self.cfg.targets.len()];
        let branch = format!("z9hG4bKdr{:016x}", self.rng.next_u64());
        let from_tag = format!("{:08x}", self.rng.next_u64() as u32);
        let local = self.cfg.local;
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
            ip = local.ip()
        );
        let invite = format!(
            "INVITE sip:{d}@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{c}@{ip}>;tag={from_tag}\r\nTo: <sip:{d}@{target}>\r\nCall-ID: {cid}\r\nCSeq: {n} INVITE\r\nContact: <sip:{c}@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
            d = call.dialled,
            c = call.caller,
            ip = local.ip(),
            cid = call.call_id,
            n = call.attempts,
            len = sdp.len(),
        );
        let retransmit = self.cfg.profile.retransmit;
        let idx = self.attempts.len();
        let give_up_at = self.cfg.profile.no_answer_after.map(|d| now + d);
        self.attempts.push(Attempt {
            call: id,
            branch: branch.clone(),
            call_id: call.call_id.clone(),
            from_tag,
            target,
            invite: invite.into_bytes(),
            state: State::Calling,
            interval: t1(),
            retransmit_at: retransmit.then(|| now + t1()),
            timer_b: Some(now + t1() * 64),
            give_up_at,
            hangup_at: None,
            to_tag: None,
            contact: String::new(),
        });
        self.by_branch.insert(branch, idx);
        self.stats.attempts += 1;
        self.send(target, self.attempts[idx].invite.clone());
        self.arm(idx);
    }

    fn arm(&mut self, idx: usize) {
        let a = &self.attempts[idx];
        if let Some(t) = [a.retransmit_at, a.timer_b, a.give_up_at, a.hangup_at]
            .into_iter()
            .flatten()
            .min()
        {
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
    fn request(&mut self, idx: usize, method: &str, same_branch: bool, cseq_method: &str) {
        let a = &self.attempts[idx];
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
            format!("sip:{}@{}", call.dialled, a.target)
        } else {
            a.contact.clone()
        };
        let cseq = call.attempts + u32::from(method == "BYE");
        let local = self.cfg.local;
        let msg = format!(
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{c}@{ip}>;tag={ft}\r\nTo: <sip:{d}@{t}>{to_tag}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {cseq_method}\r\nContent-Length: 0\r\n\r\n",
            c = call.caller,
            ip = local.ip(),
            ft = a.from_tag,
            d = call.dialled,
            t = a.target,
            cid = a.call_id,
        );
        let target = a.target;
        self.send(target, msg.into_bytes());
    }

    /// Ends this attempt; re-attempts the call if the profile says so.
    fn attempt_failed(&mut self, idx: usize, now: Instant, retry: bool, delay: Duration) {
        let call_id = self.attempts[idx].call;
        self.attempts[idx].state = State::Done;
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

    fn on_response(&mut self, now: Instant, msg: &Message<'_>) {
        let Some(idx) = msg
            .branch()
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|b| self.by_branch.get(b).copied())
        else {
            return;
        };
        let status = msg.status().unwrap_or(0);
        let method = msg.cseq().method;
        if method != Method::Invite {
            return;
        }
        let state = self.attempts[idx].state;
        match status {
            100..=199 => {
                if state == State::Calling {
                    self.attempts[idx].state = State::Proceeding;
                }
                self.attempts[idx].retransmit_at = None;
                self.attempts[idx].timer_b = None;
                if state == State::Abandoned {
                    // The provisional we waited for before cancelling.
                    self.request(idx, "CANCEL", true, "CANCEL");
                }
            }
            200..=299 => {
                let a = &mut self.attempts[idx];
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
                self.request(idx, "ACK", false, "ACK");
                let call_id = self.attempts[idx].call;
                let answered_now =
                    state != State::Answered && state != State::Done && state != State::Abandoned;
                let call_done = self.calls.get(&call_id).is_none_or(|c| c.done);
                if answered_now && !call_done {
                    self.attempts[idx].state = State::Answered;
                    self.attempts[idx].hangup_at = Some(now + self.cfg.hold);
                    if let Some(call) = self.calls.get_mut(&call_id) {
                        call.done = true;
                        let setup = now.saturating_duration_since(call.started);
                        self.stats.answered += 1;
                        self.stats.setup_total += setup;
                        self.stats.setup_max = self.stats.setup_max.max(setup);
                        self.setups.push(setup);
                    }
                    self.arm(idx);
                } else if state != State::Answered {
                    // An answer nobody wants any more: hang it up.
                    self.attempts[idx].state = State::Done;
                    self.request(idx, "BYE", false, "BYE");
                }
            }
            _ => {
                let a = &mut self.attempts[idx];
                if a.to_tag.is_none() {
                    a.to_tag = msg
                        .to_tag()
                        .map(|t| String::from_utf8_lossy(t).into_owned());
                }
                a.retransmit_at = None;
                a.timer_b = None;
                self.request(idx, "ACK", true, "ACK");
                if matches!(state, State::Done | State::Answered) {
                    return;
                }
                let p = self.cfg.profile.clone();
                let call_id = self.attempts[idx].call;
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
                            self.attempts[idx].state = State::Done;
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
                        self.attempts[idx].state = State::Done;
                        if let Some(c) = self.calls.get_mut(&call_id)
                            && !c.done
                        {
                            c.done = true;
                            self.stats.busy += 1;
                        }
                    }
                    487 => {
                        // Our CANCEL took effect: the give-up already scheduled a retry.
                        self.attempts[idx].state = State::Done;
                    }
                    500..=599 => self.attempt_failed(idx, now, p.on_5xx, p.delay),
                    _ => self.attempt_failed(idx, now, false, Duration::ZERO),
                }
            }
        }
    }

    fn on_attempt_timer(&mut self, idx: usize, now: Instant) {
        let a = &mut self.attempts[idx];
        if a.retransmit_at.is_some_and(|t| t <= now) && a.state == State::Calling {
            a.interval *= 2;
            a.retransmit_at = Some(now + a.interval);
            self.stats.retransmissions += 1;
            let (target, bytes) = (a.target, a.invite.clone());
            self.send(target, bytes);
        }
        let a = &mut self.attempts[idx];
        if a.hangup_at.is_some_and(|t| t <= now) {
            a.hangup_at = None;
            a.state = State::Done;
            self.request(idx, "BYE", false, "BYE");
            return;
        }
        let a = &mut self.attempts[idx];
        let no_answer = a.give_up_at.is_some_and(|t| t <= now);
        let timed_out = a.timer_b.is_some_and(|t| t <= now);
        if (no_answer || timed_out) && matches!(a.state, State::Calling | State::Proceeding) {
            let ringing = a.state == State::Proceeding;
            a.give_up_at = None;
            a.timer_b = None;
            a.retransmit_at = None;
            a.state = State::Abandoned;
            self.stats.gave_up += 1;
            if ringing {
                self.request(idx, "CANCEL", true, "CANCEL");
            }
            let call_id = self.attempts[idx].call;
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
        while let Some(Reverse((t, timer))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Attempt(idx) => self.on_attempt_timer(idx, now),
                Timer::NextAttempt(call) => {
                    if self.calls.get(&call).is_some_and(|c| !c.done) {
                        self.attempt(call, now);
                    }
                }
            }
        }
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    fn poll_transmit(&mut self) -> Option<Outgoing> {
        self.out.pop_front()
    }
}
