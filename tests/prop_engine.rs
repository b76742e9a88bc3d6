//! Property tests over random interleavings of what carriers and destinations send,
//! in virtual time, with fixed seeds: new calls, retransmissions, ACK, CANCEL, answers
//! of every kind (retransmitted too), in-dialog ACK/BYE from either side, host routing
//! decisions, garbage, and time jumping in small steps or past every deadline.
//!
//! After every step: every table stays within its bound, no counter goes down, every
//! server transaction has at most one final (its retransmissions byte-identical), no
//! 503 leaves without Retry-After, a destination's 2xx retransmission is relayed like
//! its first copy, and call events come in a sane order. Whenever time has passed every
//! deadline (the destinations answering health probes by then): nothing is left (no
//! call, transaction, dialog, timer or capacity slot), every accepted INVITE got
//! exactly one final and every call that started ended exactly once.
//!
//! The peers are adversarial but not absurd: a peer retransmits a request only while
//! its client transaction would (no final yet, within Timer B/F), or just after a final
//! the engine kept state for (in flight); re-attempts and merged requests come from
//! reusing Call-IDs, From tags and CSeqs from small pools. A failing case shrinks to a
//! short list of actions; the deterministic regressions at the end of the file are
//! such cases, kept.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config as PropConfig, RngSeed};
use ringfence::{AskHost, CallHandle, Config, Event, RouteDecision, RouteEntry, Target};
use support::sip::Req;
use support::*;

/// A third party that sends mangled copies of what the peers sent.
const NOISE: &str = "203.0.113.50:5060";

/// How long a peer's client transaction keeps retransmitting (Timer B / F).
const CLIENT_GIVES_UP: Duration = Duration::from_secs(32);
/// How long after a final a retransmission may still be in flight.
const IN_FLIGHT: Duration = Duration::from_secs(4);
/// How long after relaying a 2xx the upstream INVITE transaction surely still relays
/// its retransmissions (Timer L is 64·T1 = 32 s).
const RELAYS_2XX: Duration = Duration::from_secs(31);
/// Past every deadline the engine can have (max call duration is at most minutes).
const HORIZON: Duration = Duration::from_secs(24 * 3600);

// ----- what is generated -----

#[derive(Clone, Debug)]
struct Setup {
    targets: usize,
    ring_timeout: u64,
    max_duration: u64,
    /// (limits.max_transactions, proxy.max_calls, proxy.max_dialogs)
    tables: Option<(usize, usize, usize)>,
    ask: AskHost,
    /// admission.max_calls (capacity slots)
    slots: Option<u32>,
    last_known_good: usize,
    /// Breakers that trip on the first failure and cool down in seconds, and a retry
    /// budget of one failover per window: guard paths taken often.
    touchy: bool,
    seed: u64,
}

impl Setup {
    fn config(&self) -> Config {
        let dests = [DEST, DEST2];
        let mut c = routed(&dests[..self.targets]);
        c.proxy.ring_timeout = Duration::from_secs(self.ring_timeout);
        c.proxy.max_call_duration = Some(Duration::from_secs(self.max_duration));
        c.routing.ask_host = self.ask;
        c.routing.last_known_good = self.last_known_good;
        // One number the table knows (AskHost::Unknown routes it without asking).
        c.routing.routes = vec![RouteEntry {
            number: "+18005550199".into(),
            targets: vec![Target::parse(DEST).unwrap()],
        }];
        if let Some((tx, calls, dialogs)) = self.tables {
            c.limits.max_transactions = tx;
            c.proxy.max_calls = calls;
            c.proxy.max_dialogs = dialogs;
        }
        c.admission.max_calls = self.slots;
        if self.touchy {
            c.retry.breaker.failures = 1;
            c.retry.breaker.timeouts = 1;
            c.retry.breaker.cool_down = Duration::from_secs(3);
            c.retry.budget.floor = 1;
            c.retry.budget.ratio = 0.0;
        }
        c.seed = self.seed;
        c
    }
}

#[derive(Clone, Debug)]
enum Action {
    /// A new INVITE. Call-ID, From tag and CSeq come from small pools, so some are
    /// re-attempts of earlier calls and some are merged requests.
    Invite {
        carrier: u8,
        call_id: u8,
        from_tag: u8,
        cseq: u8,
        dialled: u8,
        caller: u8,
    },
    /// A peer retransmits one of its requests (when a real one still would).
    Retransmit(Index),
    /// The carrier ACKs the final of one of its INVITEs (hop-by-hop for a non-2xx,
    /// end to end for a 2xx, stray when there is no final yet).
    Ack(Index),
    /// The carrier cancels one of its INVITEs (a second CANCEL is a retransmission).
    Cancel(Index),
    /// A peer answers a request the engine sent it; `recent`: one of the last few
    /// (most answers go to what was just sent).
    Respond {
        req: Index,
        recent: bool,
        status: u8,
        tag: u8,
    },
    /// A peer sends one of its earlier responses again, byte for byte.
    Rerespond(Index),
    /// ACK, BYE or re-INVITE (`method` 0, 1, 2) inside a dialog a destination opened,
    /// from either side.
    InDialog {
        dialog: Index,
        callee: bool,
        method: u8,
    },
    /// The host answers a route request.
    Route {
        call: Index,
        decision: u8,
    },
    Advance(u64),
    /// To the next deadline.
    Jump,
    /// Past every deadline.
    Idle,
    Garbage {
        kind: u8,
        pick: Index,
        seed: u64,
    },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (0..2u8, 0..4u8, 0..2u8, 0..2u8, 0..3u8, 0..3u8).prop_map(
            |(carrier, call_id, from_tag, cseq, dialled, caller)| Action::Invite {
                carrier,
                call_id,
                from_tag,
                cseq,
                dialled,
                caller,
            }
        ),
        3 => any::<Index>().prop_map(Action::Retransmit),
        2 => any::<Index>().prop_map(Action::Ack),
        2 => any::<Index>().prop_map(Action::Cancel),
        14 => (any::<Index>(), any::<bool>(), 0..9u8, 0..3u8).prop_map(
            |(req, recent, status, tag)| Action::Respond {
                req,
                recent,
                status,
                tag
            }
        ),
        2 => any::<Index>().prop_map(Action::Rerespond),
        3 => (any::<Index>(), any::<bool>(), 0..3u8).prop_map(|(dialog, callee, method)| {
            Action::InDialog {
                dialog,
                callee,
                method
            }
        }),
        2 => (any::<Index>(), 0..7u8).prop_map(|(call, decision)| Action::Route { call, decision }),
        4 => prop_oneof![3 => 0..2_000u64, 1 => 2_000..40_000u64].prop_map(Action::Advance),
        2 => Just(Action::Jump),
        1 => Just(Action::Idle),
        1 => (0..3u8, any::<Index>(), any::<u64>())
            .prop_map(|(kind, pick, seed)| Action::Garbage { kind, pick, seed }),
    ]
}

/// Actions that answer calls and then talk inside their dialogs.
fn dialog_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        2 => action(),
        1 => (0..2u8, 0..4u8, 0..3u8, 0..3u8).prop_map(|(carrier, call_id, dialled, caller)| {
            Action::Invite {
                carrier,
                call_id,
                from_tag: caller % 2,
                cseq: 0,
                dialled,
                caller,
            }
        }),
        // 180, 200, 200, 503 to an INVITE; 200, 200, 481, 500 to anything else.
        3 => (any::<Index>(), proptest::sample::select(vec![1u8, 3, 4, 7]), 0..2u8).prop_map(
            |(req, status, tag)| Action::Respond {
                req,
                recent: true,
                status,
                tag
            }
        ),
        2 => (any::<Index>(), any::<bool>(), 0..3u8).prop_map(|(dialog, callee, method)| {
            Action::InDialog {
                dialog,
                callee,
                method
            }
        }),
    ]
}

fn setup(small: bool, ask: Option<AskHost>) -> impl Strategy<Value = Setup> {
    let tables = if small {
        (2..10usize, 1..4usize, 1..4usize).prop_map(Some).boxed()
    } else {
        prop_oneof![
            3 => Just(None),
            1 => (2..12usize, 1..4usize, 1..5usize).prop_map(Some),
        ]
        .boxed()
    };
    let ask = match ask {
        Some(a) => Just(a).boxed(),
        None => prop_oneof![
            3 => Just(AskHost::Never),
            1 => Just(AskHost::Unknown),
            1 => Just(AskHost::Always)
        ]
        .boxed(),
    };
    (
        1..=2usize,
        5..60u64,
        10..120u64,
        tables,
        ask,
        prop_oneof![3 => Just(None), 1 => (1..4u32).prop_map(Some)],
        0..3usize,
        prop_oneof![2 => Just(false), 1 => Just(true)],
        any::<u64>(),
    )
        .prop_map(
            |(
                targets,
                ring_timeout,
                max_duration,
                tables,
                ask,
                slots,
                last_known_good,
                touchy,
                seed,
            )| Setup {
                targets,
                ring_timeout,
                max_duration,
                tables,
                ask,
                slots,
                last_known_good,
                touchy,
                seed,
            },
        )
}

// ----- the driver: scripted peers around one engine -----

/// A request a peer sent to the engine.
#[derive(Clone, Debug)]
struct PeerRequest {
    from: String,
    bytes: Vec<u8>,
    key: Group,
    sent_at: Duration,
    /// For an INVITE: the request, to build its CANCEL and ACK; and its CANCEL.
    invite: Option<Req>,
    cancel: Option<usize>,
}

/// What the engine sent back for one request: responses are grouped by where they
/// went, the top Via branch and the CSeq method.
type Group = (SocketAddr, String, String);

#[derive(Clone, Debug, Default)]
struct Replies {
    trying: bool,
    /// The first final: status, bytes, when.
    first_final: Option<(u16, Vec<u8>, Duration)>,
    finals: usize,
}

/// A dialog a destination opened with a tagged 1xx/2xx.
#[derive(Clone, Debug)]
struct DialogRef {
    /// Index in the engine's log of the INVITE it answers.
    invite: usize,
    tag: String,
    carrier: String,
}

struct World {
    h: Harness,
    max: (usize, usize, usize, usize),
    fresh: u64,
    requests: Vec<PeerRequest>,
    invites: Vec<usize>,
    responses: Vec<(String, Vec<u8>)>,
    /// Indices in the engine's log of the requests it sent (ACKs aside).
    sent_requests: Vec<usize>,
    /// 2xx responses a peer sent that were relayed upstream, and when first.
    relayed_2xx: HashMap<Vec<u8>, Duration>,
    dialogs: Vec<DialogRef>,
    replies: HashMap<Group, Replies>,
    seen_log: usize,
    seen_events: usize,
    counters: BTreeMap<String, u64>,
    started: BTreeSet<CallHandle>,
    answered: BTreeSet<CallHandle>,
    ended: BTreeSet<CallHandle>,
    routing: Vec<CallHandle>,
    targets: Vec<Target>,
}

fn group_of(to: SocketAddr, msg: &ringfence::wire::Message<'_>) -> Group {
    let branch = String::from_utf8_lossy(msg.branch().unwrap_or_default()).into_owned();
    (to, branch, msg.cseq().method.to_string())
}

impl World {
    fn new(setup: &Setup) -> World {
        let cfg = setup.config();
        let max = (
            cfg.limits.max_transactions,
            cfg.proxy.max_calls,
            cfg.proxy.max_dialogs,
            cfg.routing.last_known_good,
        );
        let targets = cfg.routing.default_route.clone();
        let mut w = World {
            h: Harness::new(cfg),
            max,
            fresh: 0,
            requests: Vec::new(),
            invites: Vec::new(),
            responses: Vec::new(),
            sent_requests: Vec::new(),
            relayed_2xx: HashMap::new(),
            dialogs: Vec::new(),
            replies: HashMap::new(),
            seen_log: 0,
            seen_events: 0,
            counters: BTreeMap::new(),
            started: BTreeSet::new(),
            answered: BTreeSet::new(),
            ended: BTreeSet::new(),
            routing: Vec::new(),
            targets,
        };
        w.counters = counters(&w.h.engine.stats());
        w
    }

    fn fresh(&mut self) -> u64 {
        self.fresh += 1;
        self.fresh
    }

    /// Sends a request from a peer and remembers it for retransmission.
    fn request(&mut self, from: &str, req: &Req) -> usize {
        let bytes = req.bytes();
        let msg = ringfence::wire::scan(&bytes, &Default::default()).expect("peer request");
        let key = group_of(addr(from), &msg);
        self.requests.push(PeerRequest {
            from: from.to_owned(),
            bytes: bytes.clone(),
            key,
            sent_at: self.h.elapsed(),
            invite: (req.method == "INVITE").then(|| req.clone()),
            cancel: None,
        });
        self.h.send(from, &bytes);
        self.requests.len() - 1
    }

    /// Whether the peer's client transaction would still (re)send request `i`.
    fn may_retransmit(&self, i: usize) -> bool {
        let r = &self.requests[i];
        let now = self.h.elapsed();
        match self
            .replies
            .get(&r.key)
            .and_then(|g| g.first_final.as_ref())
        {
            None => now - r.sent_at < CLIENT_GIVES_UP,
            // After a stateless 503 the engine kept nothing to match a late copy to.
            Some((status, _, at)) => *status != 503 && now - *at < IN_FLIGHT,
        }
    }

    fn step(&mut self, a: &Action) {
        match a {
            Action::Invite {
                carrier,
                call_id,
                from_tag,
                cseq,
                dialled,
                caller,
            } => {
                let n = self.fresh();
                let (from, via) = if *carrier == 0 {
                    (CARRIER, "192.0.2.1:5060")
                } else {
                    (CARRIER2, "198.51.100.7:5060")
                };
                let number = ["+18005550199", "8005550100", "+442079460000"][*dialled as usize];
                let req = Req::invite(number, &format!("i{n}")).with(|r| {
                    r.via = vec![format!("SIP/2.0/UDP {via};branch=z9hG4bKi{n}")];
                    r.call_id = format!("c{carrier}-{call_id}@carrier.example");
                    r.from = format!("<sip:+1415555012{caller}@carrier.example>;tag=f{from_tag}");
                    r.cseq = 1 + *cseq as u32;
                    r.extra[0] = format!("Contact: <sip:+14155550123@{via}>");
                });
                let i = self.request(from, &req);
                self.invites.push(i);
            }
            Action::Retransmit(pick) => {
                if self.requests.is_empty() {
                    return;
                }
                let i = pick.index(self.requests.len());
                if self.may_retransmit(i) {
                    let (from, bytes) = (
                        self.requests[i].from.clone(),
                        self.requests[i].bytes.clone(),
                    );
                    self.h.send(&from, &bytes);
                }
            }
            Action::Ack(pick) => {
                if self.invites.is_empty() {
                    return;
                }
                let i = self.invites[pick.index(self.invites.len())];
                let r = self.requests[i].clone();
                let inv = r.invite.expect("an INVITE");
                let fin = self.replies.get(&r.key).and_then(|g| g.first_final.clone());
                let ack = match fin {
                    None => inv.ack("nobody"),
                    Some((status, bytes, _)) => {
                        let m = ringfence::wire::scan(&bytes, &Default::default()).unwrap();
                        let tag =
                            String::from_utf8_lossy(m.to_tag().unwrap_or(b"none")).into_owned();
                        if (200..300).contains(&status) {
                            // End to end, its own transaction, through our Record-Route.
                            let via = inv.via[0].split(';').next().unwrap().to_owned();
                            let branch = r.key.1.clone();
                            inv.ack(&tag).with(|a| {
                                a.uri = "sip:callee@192.0.2.20:5080".into();
                                a.via = vec![format!("{via};branch={branch}e2e")];
                                a.extra = vec!["Route: <sip:192.0.2.10:5060;lr>".into()];
                            })
                        } else {
                            inv.ack(&tag)
                        }
                    }
                };
                self.request(&r.from, &ack);
            }
            Action::Cancel(pick) => {
                if self.invites.is_empty() {
                    return;
                }
                let i = self.invites[pick.index(self.invites.len())];
                match self.requests[i].cancel {
                    Some(c) => {
                        if self.may_retransmit(c) {
                            let r = &self.requests[c];
                            let (from, bytes) = (r.from.clone(), r.bytes.clone());
                            self.h.send(&from, &bytes);
                        }
                    }
                    None => {
                        let r = self.requests[i].clone();
                        let cancel = r.invite.expect("an INVITE").cancel();
                        let c = self.request(&r.from, &cancel);
                        self.requests[i].cancel = Some(c);
                    }
                }
            }
            Action::Respond {
                req,
                recent,
                status,
                tag,
            } => self.respond(req, *recent, *status, *tag),
            Action::Rerespond(pick) => {
                if self.responses.is_empty() {
                    return;
                }
                let (from, bytes) = self.responses[pick.index(self.responses.len())].clone();
                self.send_response(&from, &bytes);
            }
            Action::InDialog {
                dialog,
                callee,
                method,
            } => self.in_dialog(dialog, *callee, *method),
            Action::Route { call, decision } => {
                if self.routing.is_empty() {
                    return;
                }
                let call = self.routing[call.index(self.routing.len())];
                let t = self.targets.clone();
                let (d, valid) = match decision {
                    0 => (RouteDecision::Targets(t[..1].to_vec()), true),
                    1 => (RouteDecision::Targets(t[t.len() - 1..].to_vec()), true),
                    2 => (RouteDecision::Targets(t), true),
                    3 => (RouteDecision::Reject(486), true),
                    4 => (RouteDecision::Reject(503), true),
                    5 => (RouteDecision::Reject(200), false),
                    _ => (RouteDecision::Targets(Vec::new()), false),
                };
                let (r, _) = self.h.route(call, d);
                assert!(valid || r.is_err(), "an invalid decision was accepted");
                if self.ended.contains(&call) {
                    assert!(r.is_err(), "a decision for an ended call was accepted");
                }
            }
            Action::Advance(ms) => {
                self.h.advance(Duration::from_millis(*ms));
            }
            Action::Jump => {
                self.h.jump();
            }
            Action::Idle => {
                self.settle();
            }
            Action::Garbage { kind, pick, seed } => self.garbage(*kind, pick, *seed),
        }
    }

    fn respond(&mut self, pick: &Index, recent: bool, status: u8, tag: u8) {
        let all = &self.sent_requests;
        let from = if recent {
            all.len().saturating_sub(3)
        } else {
            0
        };
        if all.is_empty() {
            return;
        }
        let i = all[from + pick.index(all.len() - from)];
        let s = self.h.log[i].clone();
        let method = s.method().unwrap_or_default();
        let (status, tag) = if method == "INVITE" {
            let status = [100, 180, 183, 200, 200, 486, 500, 503, 180][status as usize];
            // Tags are unique to the request answered: two calls never share a dialog.
            let tag = match (status, tag) {
                (100, _) | (101..=199, 2) => None,
                (_, t) => Some(format!("t{i}x{}", t % 2)),
            };
            (status, tag)
        } else {
            ([200, 200, 481, 500, 503][status as usize % 5], None)
        };
        let bytes = answer(&s, status, tag.as_deref());
        let from = s.to.to_string();
        // A tagged answer to an initial INVITE opens a dialog (a re-INVITE's does not).
        if let (Some(tag), 101..=299, None) = (&tag, status, s.msg().to_tag()) {
            let m = s.msg();
            let call_id = String::from_utf8_lossy(m.call_id()).into_owned();
            let carrier = if call_id.starts_with("c1-") {
                CARRIER2
            } else {
                CARRIER
            };
            self.dialogs.push(DialogRef {
                invite: i,
                tag: tag.clone(),
                carrier: carrier.to_owned(),
            });
        }
        self.responses.push((from.clone(), bytes.clone()));
        self.send_response(&from, &bytes);
    }

    /// A peer sends a response. A 2xx to an INVITE that was relayed upstream is relayed
    /// again each time it comes again while the upstream transaction lives (RFC 6026
    /// §8.4: the callee retransmits it until the caller's ACK arrives).
    fn send_response(&mut self, from: &str, bytes: &[u8]) {
        let out = self.h.send(from, bytes);
        let m = ringfence::wire::scan(bytes, &Default::default()).expect("peer response");
        let answer = m.status().is_some_and(|s| (200..300).contains(&s))
            && m.cseq().method == ringfence::wire::Method::Invite;
        if !answer {
            return;
        }
        let relayed = out.iter().any(|s| {
            s.to != addr(from)
                && ringfence::wire::scan(&s.bytes, &Default::default()).is_ok_and(|r| {
                    r.status().is_some_and(|st| (200..300).contains(&st))
                        && r.cseq().method == ringfence::wire::Method::Invite
                })
        });
        let now = self.h.elapsed();
        match self.relayed_2xx.get(bytes) {
            None if relayed => {
                self.relayed_2xx.insert(bytes.to_vec(), now);
            }
            Some(first) if now - *first < RELAYS_2XX => assert!(
                relayed,
                "a 2xx retransmission {:?} after the first was not relayed upstream:\n{}\nsent instead: {:?}",
                now - *first,
                String::from_utf8_lossy(bytes),
                out.iter().map(|s| s.text()).collect::<Vec<_>>()
            ),
            _ => {}
        }
    }

    fn in_dialog(&mut self, pick: &Index, callee: bool, method: u8) {
        if self.dialogs.is_empty() {
            return;
        }
        let d = self.dialogs[pick.index(self.dialogs.len())].clone();
        let inv = self.h.log[d.invite].clone();
        let m = inv.msg();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let (call_id, caller, to) = (text(m.call_id()), text(m.from().value), text(m.to().value));
        let callee_side = format!("{to};tag={}", d.tag);
        let ack = method == 0;
        let method = ["ACK", "BYE", "INVITE"][method as usize % 3];
        let n = self.fresh();
        let (from, req) = if callee {
            let dest = inv.to.to_string();
            let r = Req::new(
                method,
                "sip:+14155550123@192.0.2.1:5060",
                &dest,
                &format!("d{n}"),
            )
            .with(|r| {
                r.call_id = call_id;
                r.from = callee_side;
                r.to = caller;
                r.cseq = 100 + n as u32;
                r.extra.push("Route: <sip:192.0.2.10:5060;lr>".into());
            });
            (dest, r)
        } else {
            let via = if d.carrier == CARRIER {
                "192.0.2.1:5060"
            } else {
                "198.51.100.7:5060"
            };
            let r = Req::new(
                method,
                &format!("sip:callee@{}", inv.to),
                via,
                &format!("d{n}"),
            )
            .with(|r| {
                r.call_id = call_id;
                r.from = caller;
                r.to = callee_side;
                r.cseq = if ack { m.cseq().number } else { 100 + n as u32 };
                r.extra.push("Route: <sip:192.0.2.10:5060;lr>".into());
            });
            (d.carrier.clone(), r)
        };
        self.request(&from, &req);
    }

    fn garbage(&mut self, kind: u8, pick: &Index, seed: u64) {
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        match kind {
            // Random bytes, from anyone: nothing in them can match a transaction.
            0 => {
                let len = (next() % 200) as usize;
                let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                let from = [CARRIER, DEST, NOISE][(next() % 3) as usize];
                self.h.send(from, &bytes);
            }
            // A mangled copy of something a peer sent, from a third address (so that
            // stateless answers go there): a request truncated or with a byte changed,
            // or a response truncated. (A response with a byte changed but its branch
            // intact would be a forgery the engine cannot tell from the real thing.)
            1 => {
                let mut pool: Vec<(bool, Vec<u8>)> = self
                    .requests
                    .iter()
                    .map(|r| (true, r.bytes.clone()))
                    .collect();
                pool.extend(self.responses.iter().map(|(_, b)| (false, b.clone())));
                if pool.is_empty() {
                    return;
                }
                let (request, mut bytes) = pool[pick.index(pool.len())].clone();
                if !request || next() % 2 == 0 {
                    bytes.truncate((next() % bytes.len() as u64) as usize);
                } else {
                    let at = (next() % bytes.len() as u64) as usize;
                    bytes[at] = next() as u8;
                }
                self.h.send(NOISE, &bytes);
            }
            // A request that scans but is wrong (CSeq method mismatch), fresh branch.
            _ => {
                let n = self.fresh();
                let bad = Req::invite("+18005550199", &format!("g{n}"))
                    .with(|r| r.cseq_method = Some("BYE".into()));
                self.h.send(CARRIER, &bad.bytes());
            }
        }
    }

    /// Runs every timer until none is left within the horizon, bounded so that a timer
    /// that keeps rescheduling itself fails the test instead of hanging it.
    fn settle(&mut self) {
        let end = self.h.now + HORIZON;
        let mut fired = 0;
        while let Some(t) = self.h.engine.poll_timeout() {
            if t > end {
                break;
            }
            let sent = self.h.jump().unwrap_or_default();
            // The destinations are back: they answer health probes, so open circuit
            // breakers close and stop probing.
            let probes = sent.iter().filter(|s| {
                ringfence::wire::scan(&s.bytes, &Default::default())
                    .is_ok_and(|m| m.method() == Some(ringfence::wire::Method::Options))
            });
            for s in probes {
                self.h.send(&s.to.to_string(), &answer(s, 200, None));
            }
            fired += 1;
            assert!(fired < 100_000, "timers never settle");
            if fired % 256 == 0 {
                self.check();
            }
        }
        self.check();
        self.check_quiescent();
    }

    /// Invariants that hold after every step.
    fn check(&mut self) {
        // (iv) every table within its bound.
        let t = self.h.engine.table_sizes();
        let (tx, calls, dialogs, lkg) = self.max;
        assert!(
            t.transactions <= tx,
            "transactions {} > {tx}",
            t.transactions
        );
        assert!(t.calls <= calls, "calls {} > {calls}", t.calls);
        assert!(t.dialogs <= dialogs, "dialogs {} > {dialogs}", t.dialogs);
        assert!(
            t.last_known_good <= lkg,
            "lkg {} > {lkg}",
            t.last_known_good
        );
        let live = t.transactions + t.calls + t.dialogs;
        assert!(t.timers <= 2 * live + 1024, "stale timers pile up: {t:?}");
        assert!(self.h.engine.active_calls() <= t.calls + t.dialogs);

        // (iii) counters never go down.
        let now = counters(&self.h.engine.stats());
        for (name, before) in &self.counters {
            let after = now.get(name).copied().unwrap_or(0);
            assert!(
                after >= *before,
                "counter {name} went down: {before} -> {after}"
            );
        }
        self.counters = now;

        // (i) one final per server transaction; retransmitted finals identical.
        for (i, s) in self.h.log.iter().enumerate().skip(self.seen_log) {
            let Ok(m) = ringfence::wire::scan(&s.bytes, &Default::default()) else {
                // A 400 to a mangled request copies the mangled lines it names (by
                // design of `write_response_to_unparsed`), and a BYE at the maximum
                // duration goes to the Contact the caller gave, mangled or not: only
                // the mangler gets those.
                assert_eq!(s.to, addr(NOISE), "unscannable message sent:\n{}", s.text());
                continue;
            };
            let Some(status) = m.status() else {
                if m.method() != Some(ringfence::wire::Method::Ack) {
                    self.sent_requests.push(i);
                }
                continue;
            };
            if status == 503 {
                assert!(
                    s.header("Retry-After").is_some(),
                    "a 503 without Retry-After (only our own overload may send 503):\n{}",
                    s.text()
                );
            }
            if s.to == addr(NOISE) {
                // The mangler's datagrams are not retransmissions of one another.
                continue;
            }
            let g = self.replies.entry(group_of(s.to, &m)).or_default();
            if status == 100 {
                g.trying = true;
            }
            if status < 200 {
                continue;
            }
            g.finals += 1;
            match &g.first_final {
                None => g.first_final = Some((status, s.bytes.clone(), s.at)),
                Some((first, bytes, _)) => {
                    assert_eq!(
                        status,
                        *first,
                        "two different finals for one transaction:\n{}\n----\n{}",
                        String::from_utf8_lossy(bytes),
                        s.text()
                    );
                    assert!(
                        *bytes == s.bytes,
                        "a retransmitted final differs from the first:\n{}\n----\n{}",
                        String::from_utf8_lossy(bytes),
                        s.text()
                    );
                }
            }
        }
        self.seen_log = self.h.log.len();

        // Call events: started once, then at most one answer and one end, in order.
        for e in &self.h.events[self.seen_events..] {
            match e {
                Event::CallStarted { call, .. } => {
                    assert!(self.started.insert(*call), "{call:?} started twice");
                }
                Event::RouteRequest { call, .. } => {
                    assert!(self.started.contains(call) && !self.ended.contains(call));
                    self.routing.push(*call);
                }
                Event::CallAnswered { call, .. } => {
                    assert!(
                        self.started.contains(call),
                        "{call:?} answered, never started"
                    );
                    assert!(
                        !self.ended.contains(call),
                        "{call:?} answered after it ended"
                    );
                    assert!(self.answered.insert(*call), "{call:?} answered twice");
                }
                Event::CallEnded { call, .. } => {
                    assert!(self.started.contains(call), "{call:?} ended, never started");
                    assert!(self.ended.insert(*call), "{call:?} ended twice");
                }
                _ => {}
            }
        }
        self.seen_events = self.h.events.len();
    }

    /// (ii) Invariants once time has passed every deadline.
    fn check_quiescent(&mut self) {
        let now = self.h.now;
        let e = &mut self.h.engine;
        let next = e.poll_timeout();
        if next.is_some() {
            let health = e.health(now);
            let s = e.stats();
            panic!(
                "a deadline is left, in {:?}: {:?} {health:?} {:?} {:?} {:?} {:?}",
                next.map(|t| t - now),
                e.table_sizes(),
                s.dedup_entries,
                s.probes_sent,
                s.breaker_skips,
                s.node_active_calls
            );
        }
        let t = e.table_sizes();
        assert_eq!(
            (t.transactions, t.calls, t.dialogs, e.active_calls()),
            (0, 0, 0, 0),
            "state left behind: {t:?}\n{:#?}",
            e.stats()
        );
        let s = e.stats();
        assert_eq!(s.node_active_calls, 0, "a capacity slot was never released");
        let missing: Vec<&CallHandle> = self.started.difference(&self.ended).collect();
        assert!(missing.is_empty(), "calls that never ended: {missing:?}");
        for ((to, branch, method), g) in &self.replies {
            if method == "INVITE" && g.trying {
                assert_eq!(
                    g.finals.min(1),
                    1,
                    "INVITE {branch} to {to} was accepted (100) but never got a final"
                );
            }
        }
    }
}

/// Every counter in `Stats` by path, read from its `{:#?}` form so counters added later
/// are covered too. Gauges (documented as such) are left out.
fn counters(s: &ringfence::Stats) -> BTreeMap<String, u64> {
    const GAUGES: &[&str] = &[
        "transactions_active",
        "states",
        "calls_setting_up",
        "dialogs_early",
        "dialogs_confirmed",
        "dialogs_terminated",
        "draining",
        "node_active_calls",
        "adaptive_rate",
        "dedup_entries",
        "active",
        "retry_factor",
    ];
    let text = format!("{s:#?}");
    let mut out = BTreeMap::new();
    // A path of (name, next array index) per nesting level.
    let mut path: Vec<(String, usize)> = Vec::new();
    for line in text.lines().skip(1) {
        let line = line.trim().trim_end_matches(',');
        if line.starts_with('}') || line.starts_with(']') || line.starts_with(')') {
            path.pop();
            continue;
        }
        let (name, value) = match line.split_once(": ") {
            Some((n, v)) => (n.to_owned(), v),
            None => {
                // An array element: named by its index.
                let i = path.last().map_or(0, |p| p.1);
                if let Some(p) = path.last_mut() {
                    p.1 += 1;
                }
                (i.to_string(), line)
            }
        };
        if value.ends_with('{') || value.ends_with('[') || value.ends_with('(') {
            path.push((name, 0));
            continue;
        }
        let gauge = GAUGES.contains(&name.as_str())
            || path.iter().any(|(p, _)| GAUGES.contains(&p.as_str()));
        if let (false, Ok(v)) = (gauge, value.parse::<u64>()) {
            let mut full: Vec<&str> = path.iter().map(|(p, _)| p.as_str()).collect();
            full.push(&name);
            out.insert(full.join("."), v);
        }
    }
    out
}

fn run(setup: &Setup, actions: &[Action]) {
    let mut w = World::new(setup);
    for a in actions {
        w.step(a);
        w.check();
    }
    w.settle();
}

/// Fixed seeds and modest case counts keep `cargo test` fast and repeatable. For a
/// longer hunt: `RINGFENCE_PROP_CASES=20000 RINGFENCE_PROP_SEED=7 cargo test --release
/// --test prop_engine` (the seed is mixed into each test's own).
fn config(cases: u32, seed: u64) -> PropConfig {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    PropConfig {
        cases: env("RINGFENCE_PROP_CASES").map_or(cases, |c| c as u32),
        rng_seed: RngSeed::Fixed(seed ^ env("RINGFENCE_PROP_SEED").unwrap_or(0)),
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..PropConfig::default()
    }
}

proptest! {
    #![proptest_config(config(96, 0x7269_6e67))]

    /// Any configuration, any interleaving.
    #[test]
    fn random_interleavings_keep_every_invariant(
        setup in setup(false, None),
        actions in proptest::collection::vec(action(), 1..50),
    ) {
        run(&setup, &actions);
    }
}

proptest! {
    #![proptest_config(config(64, 0x6665_6e63))]

    /// Tables of one to a few entries: full tables refuse cleanly and never overflow.
    #[test]
    fn tiny_tables_stay_bounded_and_empty_out(
        setup in setup(true, None),
        actions in proptest::collection::vec(action(), 1..50),
    ) {
        run(&setup, &actions);
    }
}

proptest! {
    #![proptest_config(config(48, 0x726f_7574))]

    /// The host decides every call: answers, rejects, invalid answers, silence.
    #[test]
    fn host_routing_interleavings_keep_every_invariant(
        setup in setup(false, Some(AskHost::Always)),
        actions in proptest::collection::vec(
            prop_oneof![3 => action(), 1 => (any::<Index>(), 0..7u8)
                .prop_map(|(call, decision)| Action::Route { call, decision })],
            1..50,
        ),
    ) {
        run(&setup, &actions);
    }
}

proptest! {
    #![proptest_config(config(48, 0x6469_616c))]

    /// Calls that get answered, then ACK, BYE, retransmitted 2xx and failing
    /// in-dialog answers from either side.
    #[test]
    fn dialog_interleavings_keep_every_invariant(
        setup in setup(false, Some(AskHost::Never)),
        actions in proptest::collection::vec(dialog_action(), 1..50),
    ) {
        run(&setup, &actions);
    }
}

#[test]
fn the_stats_reader_sees_nested_counters_and_skips_gauges() {
    let mut h = Harness::new(routed(&[DEST]));
    h.send(CARRIER, &Req::invite("+18005550199", "cnt").bytes());
    let c = counters(&h.engine.stats());
    assert_eq!(c.get("datagrams"), Some(&1));
    assert_eq!(c.get("transactions_created.server_invite"), Some(&1));
    assert_eq!(c.get("responses_sent.0"), Some(&1), "the 100");
    assert!(c.contains_key("malformed.0") && c.contains_key("trunks.0.offered"));
    assert!(
        !c.keys()
            .any(|k| k.contains("states") || k.contains("active"))
    );
}

// ----- regressions: cases the properties found, kept as plain tests -----

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// An in-dialog request for the dialog `fwd` (a forwarded INVITE) opened with `tag`,
/// from the caller (`inv`'s carrier) or from the callee at `dest`.
fn in_dialog(inv: &Req, tag: &str, method: &str, branch: &str, cseq: u32, callee: bool) -> Req {
    if callee {
        Req::new(
            method,
            "sip:+14155550123@192.0.2.1:5060",
            "192.0.2.20:5080",
            branch,
        )
        .with(|r| {
            r.call_id = inv.call_id.clone();
            r.from = format!("{};tag={tag}", inv.to);
            r.to = inv.from.clone();
            r.cseq = cseq;
            r.extra.push("Route: <sip:192.0.2.10:5060;lr>".into());
        })
    } else {
        Req::new(
            method,
            "sip:callee@192.0.2.20:5080",
            "192.0.2.1:5060",
            branch,
        )
        .with(|r| {
            r.call_id = inv.call_id.clone();
            r.from = inv.from.clone();
            r.to = format!("{};tag={tag}", inv.to);
            r.cseq = cseq;
            r.extra.push("Route: <sip:192.0.2.10:5060;lr>".into());
        })
    }
}

fn tag_of(s: &Sent) -> String {
    String::from_utf8_lossy(s.msg().to_tag().expect("a To tag")).into_owned()
}

fn ends(h: &Harness) -> usize {
    h.events
        .iter()
        .filter(|e| matches!(e, Event::CallEnded { .. }))
        .count()
}

/// Was: the callee's retransmitted 200 (the caller's ACK not there yet) was taken for
/// a stray answer: the engine ACKed it and sent BYE, tearing down the answered call,
/// and the retransmission never reached the caller.
#[test]
fn a_retransmitted_2xx_is_relayed_upstream_not_hung_up() {
    let mut h = Harness::new(routed(&[DEST]));
    let inv = Req::invite("+18005550199", "rt2xx");
    let fwd = one_to(&h.send(CARRIER, &inv.bytes()), DEST);
    let ok = answer(&fwd, 200, Some("c1"));
    let first = one(h.send(DEST, &ok));
    assert_eq!((first.to, first.status()), (addr(CARRIER), Some(200)));
    h.advance(Duration::from_millis(500));
    let again = one(h.send(DEST, &ok));
    assert_eq!(
        again.to,
        addr(CARRIER),
        "relayed upstream, no ACK/BYE downstream"
    );
    assert_eq!(
        again.bytes, first.bytes,
        "a retransmission relays identically"
    );
    assert_eq!(h.engine.stats().byes_sent, 0);
    assert_eq!(h.engine.active_calls(), 1);
    // The call is intact: the caller's ACK and BYE still go through.
    let ack = one(h.send(
        CARRIER,
        &in_dialog(&inv, "c1", "ACK", "rt2xxa", 1, false).bytes(),
    ));
    assert_eq!((ack.to, ack.method().as_deref()), (addr(DEST), Some("ACK")));
    let bye = one(h.send(
        CARRIER,
        &in_dialog(&inv, "c1", "BYE", "rt2xxb", 2, false).bytes(),
    ));
    assert_eq!((bye.to, bye.method().as_deref()), (addr(DEST), Some("BYE")));
}

/// Was: after a second 2xx with another To tag (a fork downstream, hung up with ACK and
/// BYE), the branch was handed over to the engine's own requests, so retransmissions
/// of the first 2xx, the one the caller took, got the fork's ACK and never reached the
/// caller again.
#[test]
fn a_forked_second_answer_does_not_swallow_the_first_answers_retransmissions() {
    let mut h = Harness::new(routed(&[DEST]));
    let inv = Req::invite("+18005550199", "fork2xx");
    let fwd = one_to(&h.send(CARRIER, &inv.bytes()), DEST);
    let taken = answer(&fwd, 200, Some("taken"));
    let first = one(h.send(DEST, &taken));
    assert_eq!(first.to, addr(CARRIER));
    let out = h.send(DEST, &answer(&fwd, 200, Some("fork")));
    let methods: Vec<String> = out.iter().filter_map(|s| s.method()).collect();
    assert_eq!(methods, ["ACK", "BYE"], "the fork is hung up");
    assert!(out.iter().all(|s| s.to == addr(DEST)));
    let again = one(h.send(DEST, &taken));
    assert_eq!(
        again.to,
        addr(CARRIER),
        "the answer the caller took is still relayed"
    );
    assert_eq!(again.bytes, first.bytes);
    // The fork's retransmission is ACKed again, without a second BYE.
    let out = h.send(DEST, &answer(&fwd, 200, Some("fork")));
    assert_eq!(one(out).method().as_deref(), Some("ACK"));
    assert_eq!(h.engine.stats().byes_sent, 1);
}

/// Was: a branch CANCELled after a provisional whose callee never sent a final stayed
/// in Proceeding for ever (no Timer C once the call is gone): a leaked transaction, and
/// the table filled up over time.
#[test]
fn a_cancelled_branch_that_never_gets_a_final_still_ends() {
    let mut h = Harness::new(routed(&[DEST]));
    let inv = Req::invite("+18005550199", "cxlleak");
    let fwd = one_to(&h.send(CARRIER, &inv.bytes()), DEST);
    h.send(DEST, &answer(&fwd, 180, Some("r")));
    let out = h.send(CARRIER, &inv.cancel().bytes());
    let cancel = one_to(&out, DEST);
    h.send(DEST, &answer(&cancel, 200, None));
    // The callee keeps ringing and never answers the INVITE.
    h.advance(secs(31));
    h.send(DEST, &answer(&fwd, 180, Some("r")));
    h.run_until_idle(secs(3600));
    assert_eq!(h.engine.table_sizes().transactions, 0);
    assert_eq!(h.engine.poll_timeout(), None);
    assert_eq!(
        h.engine.stats().transaction_timeouts,
        1,
        "the INVITE gave up"
    );
}

/// Was: a relayed re-INVITE that rang downstream but never got a final kept its
/// downstream transaction for ever (no Timer C for relayed re-INVITEs); upstream got a
/// 500 from the safety net only.
#[test]
fn a_relayed_reinvite_without_a_final_times_out_like_timer_c() {
    let mut h = Harness::new(routed(&[DEST]));
    let inv = Req::invite("+18005550199", "reinvc");
    let fwd = one_to(&h.send(CARRIER, &inv.bytes()), DEST);
    h.send(DEST, &answer(&fwd, 200, Some("c")));
    h.send(
        CARRIER,
        &in_dialog(&inv, "c", "ACK", "reinvca", 1, false).bytes(),
    );
    let reinvite = in_dialog(&inv, "c", "INVITE", "reinvc2", 2, false);
    let relayed = one_to(&h.send(CARRIER, &reinvite.bytes()), DEST);
    let ring = one(h.send(DEST, &answer(&relayed, 180, None)));
    assert_eq!((ring.to, ring.status()), (addr(CARRIER), Some(180)));
    let quiet = h.advance(secs(29));
    assert!(to(&quiet, CARRIER).is_empty());
    let out = h.advance(secs(1));
    assert_eq!(
        statuses(&to(&out, CARRIER).into_iter().cloned().collect::<Vec<_>>()),
        [408]
    );
    h.send(CARRIER, &reinvite.ack(&tag_of(&out[0])).bytes());
    // Past the call's maximum duration too.
    h.run_until_idle(secs(5 * 3600));
    let t = h.engine.table_sizes();
    assert_eq!((t.transactions, t.calls, t.dialogs), (0, 0, 0));
    assert_eq!(h.engine.poll_timeout(), None);
}

/// Was: a BYE inside an early dialog ended the call for the host (CallEnded) while the
/// call was still being set up; its answer then came as CallAnswered after CallEnded,
/// and the relayed BYE's upstream transaction, unanswered downstream, never ended.
#[test]
fn a_bye_in_an_early_dialog_does_not_end_the_call() {
    let mut h = Harness::new(routed(&[DEST]));
    let inv = Req::invite("+18005550199", "earlybye");
    let fwd = one_to(&h.send(CARRIER, &inv.bytes()), DEST);
    h.send(DEST, &answer(&fwd, 180, Some("e")));
    let bye = one(h.send(
        CARRIER,
        &in_dialog(&inv, "e", "BYE", "ebye", 2, false).bytes(),
    ));
    assert_eq!((bye.to, bye.method().as_deref()), (addr(DEST), Some("BYE")));
    assert_eq!(ends(&h), 0, "the INVITE's final ends the call, not the BYE");
    // The callee ignores the BYE and answers the INVITE: one answered call.
    assert_eq!(
        one(h.send(DEST, &answer(&fwd, 200, Some("e")))).status(),
        Some(200)
    );
    h.run_until_idle(secs(3600));
    let kinds: Vec<&str> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::CallStarted { .. } => Some("started"),
            Event::CallAnswered { .. } => Some("answered"),
            Event::CallEnded { .. } => Some("ended"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["started", "answered", "ended"]);
    let t = h.engine.table_sizes();
    assert_eq!((t.transactions, t.calls, t.dialogs), (0, 0, 0));
}

/// Was: with the dialog table full, a call was still admitted; its 2xx then found no
/// room for a dialog, so the answered call was never tracked: CallEnded never came and
/// its ACK and BYE got 481.
#[test]
fn a_call_is_refused_up_front_when_its_dialog_would_not_fit() {
    let mut cfg = routed(&[DEST]);
    cfg.proxy.max_dialogs = 1;
    let mut h = Harness::new(cfg);
    let first = Req::invite("+18005550199", "dlgfull1");
    let fwd = one_to(&h.send(CARRIER, &first.bytes()), DEST);
    let second = Req::invite("+18005550100", "dlgfull2")
        .with(|r| r.from = "<sip:+14155550124@carrier.example>;tag=other".into());
    let out = h.send(CARRIER, &second.bytes());
    assert_eq!(statuses(&out), [100, 503]);
    assert!(out[1].header("Retry-After").is_some());
    assert!(to(&out, DEST).is_empty());
    // The admitted call gets its dialog and ends normally.
    h.send(DEST, &answer(&fwd, 200, Some("a")));
    let bye = h.send(
        CARRIER,
        &in_dialog(&first, "a", "BYE", "dlgfullb", 2, false).bytes(),
    );
    assert_eq!(one(bye).method().as_deref(), Some("BYE"));
    assert_eq!(
        ends(&h),
        1,
        "the hung-up call (the refused one never started)"
    );
}

/// Was: a destination's 503 to an in-dialog request was relayed upstream as is (RFC
/// 3261 §16.7 step 6: a proxy turns a 503 into 500).
#[test]
fn a_downstream_503_to_an_in_dialog_request_becomes_500() {
    let mut h = Harness::new(routed(&[DEST]));
    let inv = Req::invite("+18005550199", "dlg503");
    let fwd = one_to(&h.send(CARRIER, &inv.bytes()), DEST);
    h.send(DEST, &answer(&fwd, 200, Some("d")));
    let bye = one(h.send(
        CARRIER,
        &in_dialog(&inv, "d", "BYE", "dlg503b", 2, false).bytes(),
    ));
    let up = one(h.send(DEST, &answer(&bye, 503, None)));
    assert_eq!((up.to, up.status()), (addr(CARRIER), Some(500)));
    assert_eq!(up.msg().cseq().method.to_string(), "BYE");
    assert_eq!(h.engine.stats().downstream_503_rewritten, 1);
}

/// Was: when a breaker went half-open while the transaction table was full, the probe
/// could not be sent and was never retried: the destination stayed half-open (skipped)
/// for ever, health stayed degraded and its timer never stopped.
#[test]
fn a_probe_that_cannot_be_sent_is_retried_after_another_cool_down() {
    let setup = Setup {
        targets: 2,
        ring_timeout: 32,
        max_duration: 10,
        tables: Some((4, 2, 2)),
        ask: AskHost::Never,
        slots: None,
        last_known_good: 0,
        touchy: false,
        seed: 0,
    };
    let invite = |cseq, dialled, caller| Action::Invite {
        carrier: 0,
        call_id: 0,
        from_tag: 0,
        cseq,
        dialled,
        caller,
    };
    run(
        &setup,
        &[
            invite(0, 0, 0),
            Action::Idle,
            invite(0, 1, 0),
            invite(1, 1, 1),
        ],
    );
}
