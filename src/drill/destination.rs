//! A simulated destination (the called side behind the proxy): answers INVITEs as its
//! mix says, rings, answers, refuses, and handles CANCEL, ACK and BYE.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::profile::DestinationMix;
use super::{Actor, FastMap, Outgoing};
use crate::rng::Rng;
use crate::wire::{self, Limits, Message, Method, Reply};

/// What the destination saw. Counters only grow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DestinationStats {
    /// INVITEs received (retransmissions excluded).
    pub invites: u64,
    /// Calls answered (200 sent).
    pub answered: u64,
    /// Calls refused busy.
    pub busy: u64,
    /// Calls refused 503.
    pub unavailable: u64,
    /// CANCELs received for ringing calls.
    pub cancelled: u64,
    /// BYEs received.
    pub byes: u64,
    /// Most calls ringing at the same time.
    pub max_ringing: u64,
}

/// How long a finished transaction is remembered (to answer retransmissions): 64·T1.
const LINGER: Duration = Duration::from_secs(32);

#[derive(Debug)]
struct Pending {
    /// The INVITE, kept until the final response is sent.
    invite: Vec<u8>,
    tag: Vec<u8>,
    from: SocketAddr,
    last: Vec<u8>,
    answered: bool,
    done: bool,
}

/// A simulated destination.
#[derive(Debug)]
pub struct Destination {
    local: SocketAddr,
    mix: DestinationMix,
    rng: Rng,
    pending: FastMap<Vec<u8>, Pending>,
    /// Finished transactions to forget, in time order.
    expiry: VecDeque<(Instant, Vec<u8>)>,
    answer_at: BinaryHeap<Reverse<(Instant, Vec<u8>)>>,
    /// The Contact header line of its responses.
    contact: Vec<u8>,
    out: VecDeque<Outgoing>,
    stats: DestinationStats,
    ringing: u64,
    tags: u64,
}

impl Destination {
    /// A destination at `local` answering as `mix` says.
    pub fn new(local: SocketAddr, mix: DestinationMix, seed: u64) -> Destination {
        Destination {
            local,
            mix,
            rng: Rng::new(seed),
            pending: FastMap::default(),
            expiry: VecDeque::new(),
            answer_at: BinaryHeap::new(),
            contact: format!("Contact: <sip:dest@{local}>\r\n").into_bytes(),
            out: VecDeque::new(),
            stats: DestinationStats::default(),
            ringing: 0,
            tags: 0,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &DestinationStats {
        &self.stats
    }

    /// Calls ringing now.
    pub fn ringing(&self) -> u64 {
        self.ringing
    }

    fn reply(
        &mut self,
        req: &Message<'_>,
        to: SocketAddr,
        status: u16,
        reason: &[u8],
        tag: &[u8],
    ) -> Vec<u8> {
        let mut headers = self.contact.clone();
        for h in req.headers() {
            if h.kind == wire::HeaderName::RecordRoute {
                headers.extend_from_slice(b"Record-Route: ");
                headers.extend_from_slice(h.value);
                headers.extend_from_slice(b"\r\n");
            }
        }
        let reply = Reply {
            to_tag: Some(tag),
            headers: &headers,
            ..Reply::new(status, reason)
        };
        let mut out = Vec::new();
        wire::write_response(req, &reply, &mut out);
        self.out.push_back(Outgoing {
            to,
            from: self.local,
            bytes: out.clone(),
        });
        out
    }

    fn on_invite(&mut self, now: Instant, from: SocketAddr, msg: &Message<'_>) {
        let key = msg.branch().unwrap_or_default().to_vec();
        if let Some(p) = self.pending.get(&key) {
            // A retransmission: the last response again.
            let last = p.last.clone();
            self.out.push_back(Outgoing {
                to: from,
                from: self.local,
                bytes: last,
            });
            return;
        }
        self.stats.invites += 1;
        self.tags += 1;
        let tag = format!("d{:x}", self.tags).into_bytes();
        let m = &self.mix;
        let r = self.rng.next_f64();
        let (answer, busy, unavailable) = (
            m.answer,
            m.answer + m.busy,
            m.answer + m.busy + m.unavailable,
        );
        let last = if r < answer || r >= unavailable {
            let last = self.reply(msg, from, 180, b"Ringing", &tag);
            self.ringing += 1;
            self.stats.max_ringing = self.stats.max_ringing.max(self.ringing);
            if r < answer {
                self.answer_at
                    .push(Reverse((now + self.mix.answer_after, key.clone())));
            }
            last
        } else if r < busy {
            self.stats.busy += 1;
            self.reply(msg, from, 486, b"Busy Here", &tag)
        } else {
            self.stats.unavailable += 1;
            self.reply(msg, from, 503, b"Service Unavailable", &tag)
        };
        let ringing = last.starts_with(b"SIP/2.0 180");
        if !ringing {
            self.expiry.push_back((now + LINGER, key.clone()));
        }
        self.pending.insert(
            key,
            Pending {
                invite: if ringing {
                    msg.as_bytes().to_vec()
                } else {
                    Vec::new()
                },
                tag,
                from,
                last,
                answered: false,
                done: !ringing,
            },
        );
    }

    /// Sends the final response of a ringing transaction and marks it done.
    fn finish(&mut self, now: Instant, key: Vec<u8>, status: u16, reason: &[u8]) {
        let Some(p) = self.pending.get_mut(&key) else {
            return;
        };
        p.done = true;
        self.ringing = self.ringing.saturating_sub(1);
        let (invite, to, tag) = (std::mem::take(&mut p.invite), p.from, p.tag.clone());
        if let Ok(inv) = wire::scan(&invite, &Limits::default()) {
            let last = self.reply(&inv, to, status, reason, &tag);
            if let Some(p) = self.pending.get_mut(&key) {
                p.last = last;
            }
        }
        self.expiry.push_back((now + LINGER, key));
    }

    fn on_cancel(&mut self, now: Instant, from: SocketAddr, msg: &Message<'_>) {
        let key = msg.branch().unwrap_or_default().to_vec();
        self.reply(msg, from, 200, b"OK", b"cx");
        if self.pending.get(&key).is_none_or(|p| p.done) {
            return;
        }
        self.stats.cancelled += 1;
        self.finish(now, key, 487, b"Request Terminated");
    }

    /// Forgets transactions finished more than `LINGER` ago.
    fn expire(&mut self, now: Instant) {
        while let Some((t, _)) = self.expiry.front() {
            if *t > now {
                break;
            }
            if let Some((_, key)) = self.expiry.pop_front() {
                self.pending.remove(&key);
            }
        }
    }
}

impl Actor for Destination {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.expire(now);
        if bytes.starts_with(b"ACK ") {
            // Nothing to answer, nothing to look at.
            return;
        }
        let Ok(msg) = wire::scan(bytes, &Limits::default()) else {
            return;
        };
        match msg.method() {
            Some(Method::Invite) if msg.to_tag().is_none() => self.on_invite(now, from, &msg),
            Some(Method::Cancel) => self.on_cancel(now, from, &msg),
            Some(Method::Ack) => {}
            Some(Method::Bye) => {
                self.stats.byes += 1;
                self.reply(&msg, from, 200, b"OK", b"x");
            }
            Some(_) => {
                self.reply(&msg, from, 200, b"OK", b"x");
            }
            None => {}
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        while self
            .answer_at
            .peek()
            .is_some_and(|Reverse((t, _))| *t <= now)
        {
            let Some(Reverse((_, key))) = self.answer_at.pop() else {
                break;
            };
            if self.pending.get(&key).is_none_or(|p| p.done || p.answered) {
                continue;
            }
            if let Some(p) = self.pending.get_mut(&key) {
                p.answered = true;
            }
            self.stats.answered += 1;
            self.finish(now, key, 200, b"OK");
        }
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.answer_at.peek().map(|Reverse((t, _))| *t)
    }

    fn poll_transmit(&mut self) -> Option<Outgoing> {
        self.out.pop_front()
    }
}
