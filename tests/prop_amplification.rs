//! The amplification property (issue: retry hygiene): whatever carriers and
//! destinations do, the engine never turns load into more load.
//!
//! Random sequences of carrier attempts (two carriers, a small pool of callers so
//! re-attempts with new Call-IDs happen), carrier retransmissions, CANCELs and ACKs,
//! destination answers of every kind (486, 500, 503 with and without Retry-After,
//! 408, 180, 200, retransmitted), silence, and time moving in small steps, to the next
//! deadline, or far ahead. Three destinations, default failover statuses, default
//! retry budget and breakers. After the sequence the peers fall silent and time runs
//! past every deadline.
//!
//! What is asserted, with `R` the datagrams the engine received and `S` those it sent:
//!
//! - **Per message:** `S - retransmissions - probes <= 3·R + 2·B`, where `B` is the
//!   INVITE branches it forwarded. A received message causes at most three sends (a
//!   re-attempt superseding a ringing call: 100 Trying, the new INVITE, the old call's
//!   487 — its CANCEL is charged to the old branch); a branch's own timers cause at
//!   most two (its CANCEL, and the failover INVITE or the final answer upstream).
//! - **Branches are budgeted:** `B <= calls started + failovers`, and failovers stay
//!   within the retry budget (`0.2 × first attempts + 10` per 10 s window).
//! - **Retransmissions are the RFC's:** at most 10 per transaction created (Timer
//!   A/E/G schedules at T1 = 500 ms, T2 = 4 s, within 64·T1).
//! - **Probes:** at most one per destination per breaker cool-down (plus one).
//! - **Upstream:** each carrier INVITE transaction gets exactly one final response
//!   (retransmissions of it byte-identical), and no 503 reaches a carrier without
//!   Retry-After (a downstream 503 is never relayed).
//! - **Downstream:** at most one CANCEL per branch (its retransmissions identical).
//!
//! Together: `S <= 3·R + 2·B + 10·T + P`, each term bounded by what came in. A failing
//! case shrinks to a short action list.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, RngSeed};
use ringfence::Config;
use support::sip::{Req, response_to};
use support::*;

const DEST3: &str = "192.0.2.22:5080";
const TARGETS: [&str; 3] = [DEST, DEST2, DEST3];
const CALLERS: [&str; 3] = ["+14155550101", "+14155550102", "+14155550103"];
const DIALLED: [&str; 2] = ["+18005550199", "+18005550177"];
/// Past every deadline the engine can have (calls last at most 10 minutes here).
const HORIZON: Duration = Duration::from_secs(3600);

#[derive(Clone, Debug)]
enum Action {
    /// A new attempt (fresh Call-ID and branch) from a caller to a number.
    Attempt {
        second_carrier: bool,
        caller: usize,
        dialled: usize,
    },
    /// A carrier resends one of its INVITEs byte for byte.
    Retransmit(usize),
    /// A carrier cancels one of its INVITEs.
    Cancel(usize),
    /// A carrier ACKs the final it got for one of its INVITEs.
    Ack(usize),
    /// A destination answers a request the engine sent it.
    Answer {
        pick: usize,
        status: u16,
        retry_after: bool,
    },
    /// A destination resends one of its answers.
    Replay(usize),
    Advance(u64),
    Jump,
    Far,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (any::<bool>(), 0..CALLERS.len(), 0..DIALLED.len()).prop_map(
            |(second_carrier, caller, dialled)| Action::Attempt {
                second_carrier,
                caller,
                dialled
            }
        ),
        2 => any::<usize>().prop_map(Action::Retransmit),
        1 => any::<usize>().prop_map(Action::Cancel),
        1 => any::<usize>().prop_map(Action::Ack),
        5 => (
            any::<usize>(),
            prop::sample::select(vec![180u16, 200, 408, 486, 500, 503, 503, 603]),
            any::<bool>()
        )
            .prop_map(|(pick, status, retry_after)| Action::Answer {
                pick,
                status,
                retry_after
            }),
        1 => any::<usize>().prop_map(Action::Replay),
        2 => (0u64..3_000).prop_map(Action::Advance),
        2 => Just(Action::Jump),
        1 => Just(Action::Far),
    ]
}

struct World {
    h: Harness,
    /// Datagrams delivered to the engine.
    received: u64,
    next: u64,
    /// The carriers' INVITEs: (carrier, request, when sent, ACKed).
    invites: Vec<(&'static str, Req, Duration, bool)>,
    /// What destinations sent, for replays: (from, bytes).
    answers: Vec<(&'static str, Vec<u8>)>,
}

fn config() -> Config {
    let mut c = routed(&TARGETS);
    c.proxy.ring_timeout = Duration::from_secs(20);
    c.proxy.max_call_duration = Some(Duration::from_secs(600));
    c
}

fn dest_name(to: std::net::SocketAddr) -> Option<&'static str> {
    TARGETS.into_iter().find(|t| addr(t) == to)
}

impl World {
    fn new() -> Self {
        World {
            h: Harness::new(config()),
            received: 0,
            next: 0,
            invites: Vec::new(),
            answers: Vec::new(),
        }
    }

    fn deliver(&mut self, from: &str, bytes: &[u8]) {
        self.received += 1;
        self.h.send(from, bytes);
    }

    fn step(&mut self, a: &Action) {
        match a {
            Action::Attempt {
                second_carrier,
                caller,
                dialled,
            } => {
                self.next += 1;
                let carrier = if *second_carrier { CARRIER2 } else { CARRIER };
                let branch = format!("amp{}", self.next);
                let req = Req::invite(DIALLED[*dialled], &branch).with(|r| {
                    r.via = vec![format!("SIP/2.0/UDP {carrier};branch=z9hG4bK{branch}")];
                    r.from = format!(
                        "<sip:{}@carrier.example>;tag=f{}",
                        CALLERS[*caller], self.next
                    );
                });
                self.deliver(carrier, &req.bytes());
                self.invites.push((carrier, req, self.h.elapsed(), false));
            }
            Action::Retransmit(i) if !self.invites.is_empty() => {
                // As a carrier's client transaction would: until it ACKs a final, and
                // not past Timer B (64·T1). Later copies would be new transactions.
                let (carrier, req, at, acked) = self.invites[i % self.invites.len()].clone();
                if !acked && self.h.elapsed() < at + Duration::from_secs(32) {
                    self.deliver(carrier, &req.bytes());
                }
            }
            Action::Cancel(i) if !self.invites.is_empty() => {
                let (carrier, req, ..) = self.invites[i % self.invites.len()].clone();
                self.deliver(carrier, &req.cancel().bytes());
            }
            Action::Ack(i) if !self.invites.is_empty() => {
                let k = i % self.invites.len();
                let (carrier, req, ..) = self.invites[k].clone();
                let branch = req.via[0].rsplit("branch=").next().unwrap_or_default();
                let tag = self.h.log.iter().rev().find_map(|s| {
                    let m = s.msg();
                    (s.to == addr(carrier)
                        && m.status().is_some_and(|st| st >= 300)
                        && m.branch() == Some(branch.as_bytes()))
                    .then(|| m.to_tag().map(|t| String::from_utf8_lossy(t).into_owned()))
                    .flatten()
                });
                if let Some(tag) = tag {
                    self.deliver(carrier, &req.ack(&tag).bytes());
                    self.invites[k].3 = true;
                }
            }
            Action::Answer {
                pick,
                status,
                retry_after,
            } => {
                // Requests the engine sent to destinations (first copies, ACKs aside).
                let requests: Vec<&Sent> = self
                    .h
                    .log
                    .iter()
                    .filter(|s| dest_name(s.to).is_some())
                    .filter(|s| s.msg().method().is_some_and(|m| m.as_bytes() != b"ACK"))
                    .collect();
                if requests.is_empty() {
                    return;
                }
                let req = requests[pick % requests.len()].clone();
                let from = dest_name(req.to).expect("a destination");
                let invite = req
                    .msg()
                    .method()
                    .is_some_and(|m| m.as_bytes() == b"INVITE");
                // Non-INVITE requests (CANCEL, OPTIONS, BYE) get 200 or the status.
                let status = if invite || *status >= 300 {
                    *status
                } else {
                    200
                };
                let mut extra = vec![format!("Contact: <sip:callee@{from}>")];
                if status == 503 && *retry_after {
                    extra.push("Retry-After: 5".into());
                }
                let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                let bytes = response_to(&req.bytes, status, "Whatever", Some("callee"), &extra, "");
                self.deliver(from, &bytes);
                self.answers.push((from, bytes));
            }
            Action::Replay(i) if !self.answers.is_empty() => {
                let (from, bytes) = self.answers[i % self.answers.len()].clone();
                self.deliver(from, &bytes);
            }
            Action::Advance(ms) => {
                self.h.advance(Duration::from_millis(*ms));
            }
            Action::Jump => {
                self.h.jump();
            }
            Action::Far => {
                self.h.advance(Duration::from_secs(40));
            }
            _ => {}
        }
    }

    fn check(&mut self) {
        self.h.run_until_idle(HORIZON);
        let s = self.h.engine.stats();
        let r = self.received;
        let sent = self.h.log.len() as u64;
        let elapsed = self.h.elapsed();

        // Transactions of every kind the engine created.
        let c = &s.transactions_created;
        let transactions =
            c.server_invite + c.server_non_invite + c.client_invite + c.client_non_invite;
        let branches = s.invites_forwarded;
        let fresh = sent - s.retransmissions_sent - s.probes_sent;
        let report = format!(
            "received {r}, sent {sent} (retransmissions {}, probes {}), branches {branches}, \
             transactions {transactions}, calls {}, failovers {}",
            s.retransmissions_sent, s.probes_sent, s.calls_started, s.failovers
        );

        assert!(fresh <= 3 * r + 2 * branches, "per-message bound: {report}");
        assert!(
            branches <= s.calls_started + s.failovers,
            "branches beyond the budget: {report}"
        );
        let windows = elapsed.as_secs() / 10 + 1;
        assert!(
            s.failovers as f64 <= 0.2 * s.calls_started as f64 + 10.0 * windows as f64,
            "failovers beyond the retry budget: {report}"
        );
        assert!(
            s.retransmissions_sent <= 10 * transactions,
            "retransmissions beyond the RFC's schedule: {report}"
        );
        let cool_downs = elapsed.as_secs() / 30 + 1;
        assert!(
            s.probes_sent <= TARGETS.len() as u64 * (cool_downs + 1),
            "probes beyond one per destination per cool-down: {report}"
        );

        // Upstream: one final per carrier INVITE transaction, its copies identical;
        // never a 503 without Retry-After.
        let mut finals: BTreeMap<(std::net::SocketAddr, Vec<u8>), BTreeSet<Vec<u8>>> =
            BTreeMap::new();
        // Downstream: distinct CANCELs per branch.
        let mut cancels: BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>> = BTreeMap::new();
        for x in &self.h.log {
            let m = x.msg();
            if dest_name(x.to).is_some() {
                if m.method().is_some_and(|m| m.as_bytes() == b"CANCEL") {
                    let b = m.branch().unwrap_or_default().to_vec();
                    cancels.entry(b).or_default().insert(x.bytes.clone());
                }
                continue;
            }
            let Some(status) = m.status() else { continue };
            if status == 503 {
                assert!(
                    x.header("Retry-After").is_some(),
                    "a 503 upstream without Retry-After:\n{}",
                    x.text()
                );
            }
            if status >= 200 && m.cseq().method.as_bytes() == b"INVITE" {
                let key = (x.to, m.branch().unwrap_or_default().to_vec());
                finals.entry(key).or_default().insert(x.bytes.clone());
            }
        }
        for ((to, branch), copies) in &finals {
            assert_eq!(
                copies.len(),
                1,
                "{} different finals to {to} for branch {}",
                copies.len(),
                String::from_utf8_lossy(branch)
            );
        }
        for (branch, copies) in &cancels {
            assert_eq!(
                copies.len(),
                1,
                "{} different CANCELs for branch {}",
                copies.len(),
                String::from_utf8_lossy(branch)
            );
        }
        // Every carrier INVITE got its final (the peers were silent at the end and time
        // ran past every deadline, so nothing can still be pending).
        for (carrier, req, ..) in &self.invites {
            let branch = req.via[0].rsplit("branch=").next().unwrap_or_default();
            assert!(
                finals.contains_key(&(addr(carrier), branch.as_bytes().to_vec())),
                "carrier INVITE {branch} never got a final: {report}"
            );
        }
        assert_eq!(self.h.engine.active_calls(), 0, "{report}");
    }
}

fn run(actions: &[Action]) {
    let mut w = World::new();
    for a in actions {
        w.step(a);
    }
    w.check();
}

fn prop_config(cases: u32, seed: u64) -> PropConfig {
    PropConfig {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..PropConfig::default()
    }
}

proptest! {
    #![proptest_config(prop_config(192, 0x616d_706c))]

    #[test]
    fn the_engine_never_amplifies(actions in prop::collection::vec(action(), 1..120)) {
        run(&actions);
    }
}

/// The incident's shape, by hand: a carrier re-attempts every unanswered call five
/// times with new Call-IDs while every destination answers 503 or nothing.
#[test]
fn a_retry_storm_into_failing_destinations_is_not_amplified() {
    let mut actions = Vec::new();
    for round in 0..6 {
        for caller in 0..CALLERS.len() {
            actions.push(Action::Attempt {
                second_carrier: round % 2 == 1,
                caller,
                dialled: caller % 2,
            });
        }
        for k in 0..6 {
            actions.push(Action::Answer {
                pick: k * 7 + round,
                status: 503,
                retry_after: k % 2 == 0,
            });
        }
        actions.push(Action::Advance(2_500));
    }
    run(&actions);
}
