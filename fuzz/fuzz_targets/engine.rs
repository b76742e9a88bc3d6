//! The whole engine under arbitrary peers: the input is a script of operations —
//! carrier INVITEs, CANCELs, ACKs and BYEs built from a few bytes, destination answers
//! to whatever the engine sent (any status, mangled or not), raw datagrams, route
//! decisions, drain, load reports and time jumps.
//!
//! Asserts: no panic; tables stay within their configured bounds after every step;
//! every event's call handle is non-zero; and once time passes every deadline with the
//! peers silent, no call, dialog or transaction is left.

#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use ringfence::{
    AskHost, CallHandle, Config, Engine, Event, RouteDecision, Target,
    wire::{self, Limits},
};

const MAX_TX: usize = 64;
const MAX_CALLS: usize = 16;
const MAX_DIALOGS: usize = 32;

struct Script<'a> {
    data: &'a [u8],
}

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn config(ask_host: bool) -> Config {
    let mut c = Config::default();
    c.routing.default_route = vec![
        Target::parse("192.0.2.20:5080")
            .unwrap()
            .with_priority(0, 1),
        Target::parse("192.0.2.21:5080")
            .unwrap()
            .with_priority(1, 1),
    ];
    if ask_host {
        c.routing.ask_host = AskHost::Always;
    }
    c.limits.max_transactions = MAX_TX;
    c.proxy.max_calls = MAX_CALLS;
    c.proxy.max_dialogs = MAX_DIALOGS;
    c.proxy.ring_timeout = Duration::from_secs(20);
    c.proxy.max_call_duration = Some(Duration::from_secs(300));
    c.retry.dedup_capacity = 32;
    c.routing.last_known_good = 8;
    c
}

fn invite(n: u8, caller: u8, call: u8) -> Vec<u8> {
    format!(
        "INVITE sip:+1800555019{d}@192.0.2.10 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKf{call}\r\n\
         Max-Forwards: {mf}\r\n\
         From: <sip:+141555501{caller:02}@carrier.example>;tag=t{call}\r\n\
         To: <sip:+1800555019{d}@192.0.2.10>\r\n\
         Call-ID: c{call}@carrier.example\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:a@192.0.2.1:5060>\r\n\
         Content-Length: 0\r\n\r\n",
        d = n % 3,
        mf = if n & 0x40 != 0 { 0 } else { 70 },
        caller = caller % 8,
    )
    .into_bytes()
}

fn in_dialog(method: &str, call: u8, to_tag: Option<&[u8]>, cseq: u32) -> Vec<u8> {
    let tag = to_tag
        .map(|t| format!(";tag={}", String::from_utf8_lossy(t)))
        .unwrap_or_default();
    let branch = if method == "CANCEL" || method == "ACK" && to_tag.is_none() {
        format!("z9hG4bKf{call}")
    } else {
        format!("z9hG4bK{method}{call}x{cseq}")
    };
    format!(
        "{method} sip:+18005550190@192.0.2.10 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n\
         Route: <sip:192.0.2.10:5060;lr>\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+14155550100@carrier.example>;tag=t{call}\r\n\
         To: <sip:+18005550190@192.0.2.10>{tag}\r\n\
         Call-ID: c{call}@carrier.example\r\n\
         CSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// A destination's answer to a request the engine sent it.
fn answer(req: &[u8], status: u16, tag: bool) -> Option<Vec<u8>> {
    let m = wire::scan(req, &Limits::default()).ok()?;
    m.method()?;
    let mut out = Vec::new();
    let reply = wire::Reply {
        to_tag: tag.then_some(&b"callee"[..]),
        headers: b"Contact: <sip:callee@192.0.2.20:5080>\r\nRetry-After: 3\r\n",
        ..wire::Reply::new(status, b"Fuzz")
    };
    wire::write_response(&m, &reply, &mut out);
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let mut s = Script { data };
    let Some(mode) = s.byte() else { return };
    let start = Instant::now();
    let mut now = start;
    let mut e = Engine::new(config(mode & 1 == 1), now).unwrap();
    let (node, carrier) = (addr("192.0.2.10:5060"), addr("192.0.2.1:5060"));
    // What the engine sent lately (destination, bytes), and calls awaiting a route.
    let mut sent: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    let mut pending: Vec<CallHandle> = Vec::new();
    // To tags the carrier saw on finals and answers, by call byte.
    let mut tags: Vec<(u8, Vec<u8>)> = Vec::new();

    let mut steps = 0;
    while let Some(op) = s.byte() {
        steps += 1;
        if steps > 256 {
            break;
        }
        match op % 12 {
            0 | 1 => {
                let (n, caller, call) = (s.byte().unwrap_or(0), s.byte().unwrap_or(0), op / 12);
                e.handle_datagram(now, carrier, node, &invite(n, caller, call));
            }
            2 => {
                let call = s.byte().unwrap_or(0) % 22;
                e.handle_datagram(now, carrier, node, &in_dialog("CANCEL", call, None, 1));
            }
            3 => {
                let call = s.byte().unwrap_or(0) % 22;
                let tag = tags
                    .iter()
                    .rev()
                    .find(|(c, _)| *c == call)
                    .map(|(_, t)| t.clone());
                e.handle_datagram(
                    now,
                    carrier,
                    node,
                    &in_dialog("ACK", call, tag.as_deref(), 1),
                );
            }
            4 => {
                let call = s.byte().unwrap_or(0) % 22;
                let tag = tags
                    .iter()
                    .rev()
                    .find(|(c, _)| *c == call)
                    .map(|(_, t)| t.clone());
                e.handle_datagram(
                    now,
                    carrier,
                    node,
                    &in_dialog("BYE", call, tag.as_deref(), 2),
                );
            }
            5 | 6 => {
                // A destination answers something the engine sent it.
                let (pick, st) = (s.byte().unwrap_or(0), s.byte().unwrap_or(0));
                let to_dest: Vec<&(SocketAddr, Vec<u8>)> =
                    sent.iter().filter(|(d, _)| *d != carrier).collect();
                if let Some((dest, req)) = to_dest.get(pick as usize % to_dest.len().max(1)) {
                    let status =
                        [100, 180, 183, 200, 408, 486, 487, 500, 503, 603][st as usize % 10];
                    if let Some(mut resp) = answer(req, status, st & 0x80 == 0) {
                        // Sometimes mangled on the way.
                        if op >= 128 && !resp.is_empty() {
                            let at = st as usize * 7 % resp.len();
                            resp[at] ^= op;
                        }
                        e.handle_datagram(now, *dest, node, &resp);
                    }
                }
            }
            7 => {
                let n = s.byte().unwrap_or(0) as usize * 6;
                let raw = s.bytes(n).to_vec();
                let from = if op & 0x10 == 0 {
                    carrier
                } else {
                    addr("192.0.2.20:5080")
                };
                e.handle_datagram(now, from, node, &raw);
            }
            8 => {
                if let Some(call) = pending.pop() {
                    let d = match s.byte().unwrap_or(0) % 4 {
                        0 => RouteDecision::Reject(404),
                        1 => RouteDecision::Reject(503),
                        _ => {
                            RouteDecision::Targets(vec![Target::parse("192.0.2.21:5080").unwrap()])
                        }
                    };
                    let _ = e.route(now, call, d);
                }
                let _ = e.route(
                    now,
                    CallHandle(s.byte().unwrap_or(0) as u64),
                    RouteDecision::Reject(480),
                );
            }
            9 => match s.byte().unwrap_or(0) % 3 {
                0 => e.drain(now),
                1 => e.undrain(now),
                _ => e.report_load(now, s.byte().unwrap_or(0) as f64 / 128.0),
            },
            10 => {
                let ms = u64::from(s.byte().unwrap_or(0)) * 40;
                now += Duration::from_millis(ms);
                e.handle_timeout(now);
            }
            _ => {
                if let Some(t) = e.poll_timeout() {
                    now = now.max(t);
                    e.handle_timeout(now);
                }
            }
        }
        while let Some(t) = e.poll_transmit() {
            if let Ok(m) = wire::scan(t.payload, &Limits::default())
                && let (Some(_), Some(tag)) = (m.status(), m.to_tag())
                && t.destination == carrier
            {
                let call = m
                    .call_id()
                    .strip_prefix(b"c")
                    .and_then(|r| r.split(|&c| c == b'@').next());
                if let Some(n) = call.and_then(|c| std::str::from_utf8(c).ok()?.parse::<u8>().ok())
                {
                    tags.push((n, tag.to_vec()));
                }
            }
            sent.push((t.destination, t.payload.to_vec()));
        }
        if sent.len() > 64 {
            sent.drain(..32);
        }
        if tags.len() > 64 {
            tags.drain(..32);
        }
        while let Some(ev) = e.poll_event() {
            match ev {
                Event::RouteRequest { call, .. } => {
                    assert_ne!(call.0, 0);
                    pending.push(call);
                }
                Event::CallStarted { call, .. }
                | Event::CallAnswered { call, .. }
                | Event::CallEnded { call, .. } => assert_ne!(call.0, 0),
                _ => {}
            }
        }
        let t = e.table_sizes();
        assert!(t.transactions <= MAX_TX, "{t:?}");
        assert!(t.calls <= MAX_CALLS, "{t:?}");
        assert!(t.dialogs <= MAX_DIALOGS, "{t:?}");
    }

    // Silence, and time past every deadline: nothing may be left behind.
    let end = now + Duration::from_secs(3 * 3600);
    while let Some(t) = e.poll_timeout() {
        if t > end {
            break;
        }
        now = now.max(t);
        e.handle_timeout(now);
        while e.poll_transmit().is_some() {}
        while e.poll_event().is_some() {}
    }
    let t = e.table_sizes();
    assert_eq!(e.active_calls(), 0, "{t:?}");
    assert_eq!((t.calls, t.dialogs), (0, 0), "{t:?}");
});
