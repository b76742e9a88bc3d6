//! A simulated destination (the called side behind the proxy): answers INVITEs as its
//! mix says, rings, answers, refuses, and handles CANCEL, ACK and BYE.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use super::profile::DestinationMix;
use super::{Actor, Outgoing};
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

#[derive(Debug)]
struct Pending {
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
    pending: HashMap<Vec<u8>, Pending>,
    answer_at: BinaryHeap<Reverse<(Instant, Vec<u8>)>>,
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
            pending: HashMap::new(),
            answer_at: BinaryHeap::new(),
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
        let mut headers = format!("Contact: <sip:dest@{}>\r\n", self.local).into_bytes();
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
        let tag = format!("d{:x}", self.tags).into_bytes();
        self.pending.insert(
            key,
            Pending {
                invite: msg.as_bytes().to_vec(),
                tag,
                from,
                last,
                answered: false,
                done: !ringing,
            },
        );
    }

    fn on_cancel(&mut self, from: SocketAddr, msg: &Message<'_>) {
        let key = msg.branch().unwrap_or_default().to_vec();
        self.reply(msg, from, 200, b"OK", b"cx");
        let Some(p) = self.pending.get_mut(&key) else {
            return;
        };
        if p.done {
            return;
        }
        p.done = true;
        self.ringing = self.ringing.saturating_sub(1);
        self.stats.cancelled += 1;
        let (invite, to, tag) = (p.invite.clone(), p.from, p.tag.clone());
        if let Ok(inv) = wire::scan(&invite, &Limits::default()) {
            let last = self.reply(&inv, to, 487, b"Request Terminated", &tag);
            if let Some(p) = self.pending.get_mut(&key) {
                p.last = last;
            }
        }
    }
}

impl Actor for Destination {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let Ok(msg) = wire::scan(bytes, &Limits::default()) else {
            return;
        };
        match msg.method() {
            Some(Method::Invite) if msg.to_tag().is_none() => self.on_invite(now, from, &msg),
            Some(Method::Cancel) => self.on_cancel(from, &msg),
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
        while let Some(Reverse((t, key))) = self.answer_at.peek().cloned() {
            if t > now {
                break;
            }
            self.answer_at.pop();
            let Some(p) = self.pending.get_mut(&key) else {
                continue;
            };
            if p.done || p.answered {
                continue;
            }
            p.answered = true;
            p.done = true;
            self.ringing = self.ringing.saturating_sub(1);
            self.stats.answered += 1;
            let (invite, to, tag) = (p.invite.clone(), p.from, p.tag.clone());
            if let Ok(inv) = wire::scan(&invite, &Limits::default()) {
                let last = self.reply(&inv, to, 200, b"OK", &tag);
                if let Some(p) = self.pending.get_mut(&key) {
                    p.last = last;
                }
            }
        }
        // Forget finished transactions once nothing can retransmit them any more: the
        // table is bounded by the calls of the last minute.
        if self.pending.len() > 100_000 {
            self.pending.retain(|_, p| !p.done);
        }
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.answer_at.peek().map(|Reverse((t, _))| *t)
    }

    fn poll_transmit(&mut self) -> Option<Outgoing> {
        self.out.pop_front()
    }
}
