//! Virtual-time test harness: one engine, scripted peers, time that only moves when the
//! test moves it. Nothing here sleeps; `Instant`s are offsets from one base.
#![allow(dead_code, unreachable_pub)]

pub mod sip;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringfence::wire::{self, Limits, Message};
use ringfence::{Config, Engine, Event};

/// The engine's own address in every test.
pub const NODE: &str = "192.0.2.10:5060";
/// A carrier sending calls in.
pub const CARRIER: &str = "192.0.2.1:5060";
/// A second carrier.
pub const CARRIER2: &str = "198.51.100.7:5060";
/// A destination the engine routes to.
pub const DEST: &str = "192.0.2.20:5080";
/// A second destination.
pub const DEST2: &str = "192.0.2.21:5080";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

/// One datagram the engine sent.
#[derive(Clone, Debug)]
pub struct Sent {
    pub to: SocketAddr,
    pub from: SocketAddr,
    pub bytes: Vec<u8>,
    /// Virtual time it was sent at, from the harness start.
    pub at: Duration,
}

impl Sent {
    pub fn msg(&self) -> Message<'_> {
        wire::scan(&self.bytes, &Limits::default()).unwrap_or_else(|e| {
            panic!("engine sent an unscannable message ({e}):\n{}", self.text())
        })
    }

    pub fn status(&self) -> Option<u16> {
        self.msg().status()
    }

    pub fn method(&self) -> Option<String> {
        self.msg().method().map(|m| m.to_string())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The value of the first header named `name` (case-insensitive, long form).
    pub fn header(&self, name: &str) -> Option<String> {
        self.msg()
            .headers()
            .find(|h| h.name.eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    }
}

pub struct Harness {
    pub engine: Engine,
    base: Instant,
    pub now: Instant,
    pub local: SocketAddr,
    /// Everything sent so far, in order.
    pub log: Vec<Sent>,
    /// Everything emitted so far, in order.
    pub events: Vec<Event>,
    /// Every event with the virtual time it was collected at.
    pub event_times: Vec<(Duration, Event)>,
}

impl Harness {
    pub fn new(config: Config) -> Self {
        let base = Instant::now();
        Harness {
            engine: Engine::new(config, base).expect("valid config"),
            base,
            now: base,
            local: addr(NODE),
            log: Vec::new(),
            events: Vec::new(),
            event_times: Vec::new(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    fn collect(&mut self) -> Vec<Sent> {
        let mut out = Vec::new();
        let at = self.elapsed();
        while let Some(t) = self.engine.poll_transmit() {
            out.push(Sent {
                to: t.destination,
                from: t.source,
                bytes: t.payload.to_vec(),
                at,
            });
        }
        while let Some(e) = self.engine.poll_event() {
            self.event_times.push((at, e.clone()));
            self.events.push(e);
        }
        self.log.extend(out.iter().cloned());
        out
    }

    /// Delivers `bytes` from `from`; returns what the engine sent in response.
    pub fn send(&mut self, from: &str, bytes: &[u8]) -> Vec<Sent> {
        self.engine
            .handle_datagram(self.now, addr(from), self.local, bytes);
        self.collect()
    }

    /// Moves time forward by `d`, firing timers on the way in order; returns what was
    /// sent meanwhile.
    pub fn advance(&mut self, d: Duration) -> Vec<Sent> {
        let until = self.now + d;
        let mut out = Vec::new();
        while let Some(t) = self.engine.poll_timeout() {
            if t > until {
                break;
            }
            self.now = self.now.max(t);
            self.engine.handle_timeout(self.now);
            out.extend(self.collect());
        }
        self.now = until;
        self.engine.handle_timeout(self.now);
        out.extend(self.collect());
        out
    }

    /// Jumps to the engine's next deadline and fires it; `None` when it has none.
    pub fn jump(&mut self) -> Option<Vec<Sent>> {
        let t = self.engine.poll_timeout()?;
        self.now = self.now.max(t);
        self.engine.handle_timeout(self.now);
        Some(self.collect())
    }

    /// Runs every timer until the engine has none left (or `limit` passes).
    pub fn run_until_idle(&mut self, limit: Duration) -> Vec<Sent> {
        let end = self.now + limit;
        let mut out = Vec::new();
        while let Some(t) = self.engine.poll_timeout() {
            if t > end {
                break;
            }
            out.extend(self.jump().unwrap_or_default());
        }
        out
    }

    /// Virtual times at which health changed, with the new state.
    pub fn health_change_times(&self) -> Vec<(Duration, ringfence::health::HealthState)> {
        self.event_times
            .iter()
            .filter_map(|(t, e)| match e {
                Event::HealthChanged { to, .. } => Some((*t, *to)),
                _ => None,
            })
            .collect()
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }
}

/// Exactly one datagram, or a panic showing what there was.
pub fn one(sent: Vec<Sent>) -> Sent {
    assert_eq!(
        sent.len(),
        1,
        "expected one datagram, got {}:\n{}",
        sent.len(),
        sent.iter()
            .map(|s| s.text())
            .collect::<Vec<_>>()
            .join("\n----\n")
    );
    sent.into_iter().next().unwrap()
}

/// The statuses of the responses in `sent`, in order.
pub fn statuses(sent: &[Sent]) -> Vec<u16> {
    sent.iter().filter_map(|s| s.status()).collect()
}

/// A config that routes every number to `targets` (in priority order), with a short
/// ring timeout so tests stay readable.
pub fn routed(targets: &[&str]) -> Config {
    let mut c = Config::default();
    c.routing.default_route = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            ringfence::Target::parse(t)
                .unwrap()
                .with_priority(i as u16, 1)
        })
        .collect();
    c.proxy.ring_timeout = Duration::from_secs(30);
    c
}

/// The datagrams in `sent` going to `to`.
pub fn to<'a>(sent: &'a [Sent], to: &str) -> Vec<&'a Sent> {
    sent.iter().filter(|s| s.to == addr(to)).collect()
}

/// The one datagram in `sent` going to `dest`.
pub fn one_to(sent: &[Sent], dest: &str) -> Sent {
    let v = to(sent, dest);
    assert_eq!(
        v.len(),
        1,
        "expected one datagram to {dest}, got:\n{}",
        sent.iter()
            .map(|s| format!("-> {}\n{}", s.to, s.text()))
            .collect::<Vec<_>>()
            .join("\n----\n")
    );
    v[0].clone()
}

/// A UAS answer to the forwarded request `req` (all its Vias copied), as `from` sends it.
pub fn answer(req: &Sent, status: u16, to_tag: Option<&str>) -> Vec<u8> {
    let reason = match status {
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        486 => "Busy Here",
        487 => "Request Terminated",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    };
    let contact = format!("Contact: <sip:callee@{}>", req.to);
    sip::response_to(&req.bytes, status, reason, to_tag, &[&contact], "")
}

impl Harness {
    /// Answers a route request through [`Engine::route`] at the current virtual time;
    /// returns the engine's verdict and what it sent.
    pub fn route(
        &mut self,
        call: ringfence::CallHandle,
        decision: ringfence::RouteDecision,
    ) -> (Result<(), ringfence::CallError>, Vec<Sent>) {
        let r = self.engine.route(self.now, call, decision);
        (r, self.collect())
    }

    /// Every route request emitted so far, in order: (call, dialled, caller).
    pub fn route_requests(&self) -> Vec<(ringfence::CallHandle, String, String)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::RouteRequest {
                    call,
                    dialled,
                    caller,
                    ..
                } => Some((*call, dialled.clone(), caller.clone())),
                _ => None,
            })
            .collect()
    }
}

/// Admission test helpers.
pub mod adm;
