//! Engine benchmarks: the hot paths the issues set targets for, each measured in the
//! same run as its baseline where one exists.
//!
//! - transactions/absorb: a retransmitted INVITE answered from cache (target ≥ 3M/s)
//! - transactions/new_invite: a new INVITE to its 100 Trying and the host's route
//!   request (target ≥ 1M/s); new_invite_forwarded also forwards it on a static route
//! - proxy/full_call: INVITE, 180, 200, ACK, BYE, 200 through the engine (≥ 200k/s)
//! - admission/admit vs admission/reject: the cost of refusing (target ≤ 20% of admit)
//! - admission/offered_5x: the engine under five times its rate limit
//! - dedup/lookup: re-attempt lookup on a table of a million entries (target ≤ 200 ns)
//!
//! Only engine calls are timed (`iter_custom`); building the peers' messages is not.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringfence::bench_hooks::DedupTable;
use ringfence::wire::{self, Limits, Reply};
use ringfence::{AskHost, Config, Engine, Target};

const CARRIER: &str = "192.0.2.1:5060";
const NODE: &str = "192.0.2.10:5060";
const DEST: &str = "192.0.2.20:5080";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn invite(i: u64) -> Vec<u8> {
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n";
    format!(
        "INVITE sip:+18005550199@192.0.2.10 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{i:016x}\r\n\
Max-Forwards: 70\r\n\
From: \"Caller\" <sip:+1415{c:07}@carrier.example>;tag=t{i:x}\r\n\
To: <sip:+18005550199@192.0.2.10>\r\n\
Call-ID: {i:016x}@carrier.example\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:+1415{c:07}@192.0.2.1:5060>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n\
User-Agent: CarrierSBC/8.4\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {len}\r\n\r\n{sdp}",
        c = i % 10_000_000,
        len = sdp.len()
    )
    .into_bytes()
}

/// A UAS answer to a forwarded request.
fn answer(req: &[u8], status: u16, tag: &[u8]) -> Vec<u8> {
    let m = wire::scan(req, &Limits::default()).unwrap();
    let mut out = Vec::new();
    let reply = Reply {
        to_tag: Some(tag),
        headers: b"Contact: <sip:callee@192.0.2.20:5080>\r\n",
        ..Reply::new(status, b"Whatever")
    };
    wire::write_response(&m, &reply, &mut out);
    out
}

/// An in-dialog request from the carrier for call `i`.
fn in_dialog(i: u64, method: &str, cseq: u32) -> Vec<u8> {
    format!(
        "{method} sip:callee@192.0.2.20:5080 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{method}{i:016x}\r\n\
Route: <sip:192.0.2.10:5060;lr>\r\n\
Max-Forwards: 70\r\n\
From: \"Caller\" <sip:+1415{c:07}@carrier.example>;tag=t{i:x}\r\n\
To: <sip:+18005550199@192.0.2.10>;tag=callee\r\n\
Call-ID: {i:016x}@carrier.example\r\n\
CSeq: {cseq} {method}\r\n\
Content-Length: 0\r\n\r\n",
        c = i % 10_000_000
    )
    .into_bytes()
}

fn routed() -> Config {
    let mut c = Config::default();
    c.routing.default_route = vec![Target::parse(DEST).unwrap()];
    c.proxy.max_calls = 1 << 20;
    c.proxy.max_dialogs = 1 << 20;
    c.limits.max_transactions = 1 << 22;
    c
}

/// Drains what the engine sent; returns the datagram sent to `to`, if any.
fn drain(e: &mut Engine, to: Option<SocketAddr>) -> Option<Vec<u8>> {
    let mut found = None;
    while let Some(t) = e.poll_transmit() {
        if Some(t.destination) == to {
            found = Some(t.payload.to_vec());
        }
        black_box(t.payload.len());
    }
    while e.poll_event().is_some() {}
    found
}

/// Chunks of work between untimed clean-ups, so tables stay a realistic size.
const CHUNK: u64 = 20_000;

/// Times `handle_datagram` for `iters` new INVITEs on one long-lived engine, in steady
/// state: between chunks (untimed) virtual time jumps past every deadline so the
/// calls of the last chunk end and the tables empty, keeping their allocations, as
/// in a node that has been running for a while.
fn new_invites(e: &mut Engine, now: &mut Instant, iters: u64) -> Duration {
    let (carrier, node) = (addr(CARRIER), addr(NODE));
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = (iters - done).min(CHUNK);
        // Fresh callers every chunk: no re-attempt memory carries over.
        let base = e.stats().datagrams;
        let msgs: Vec<Vec<u8>> = (base..base + n).map(invite).collect();
        let t = Instant::now();
        for m in &msgs {
            e.handle_datagram(*now, carrier, node, m);
            drain(e, None);
        }
        total += t.elapsed();
        *now += Duration::from_secs(3600);
        e.handle_timeout(*now);
        drain(e, None);
        done += n;
    }
    total
}

fn transactions(c: &mut Criterion) {
    let mut g = c.benchmark_group("transactions");
    g.throughput(Throughput::Elements(1));
    let (carrier, node) = (addr(CARRIER), addr(NODE));

    let inv = invite(1);
    let start = Instant::now();
    let mut e = Engine::new(routed(), start).unwrap();
    e.handle_datagram(start, carrier, node, &inv);
    drain(&mut e, None);
    g.bench_function("absorb", |b| {
        b.iter(|| {
            e.handle_datagram(start, carrier, node, black_box(&inv));
            drain(&mut e, None)
        })
    });

    let mut host_routed = routed();
    host_routed.routing.ask_host = AskHost::Always;
    for (name, cfg) in [
        ("new_invite", host_routed),
        ("new_invite_forwarded", routed()),
    ] {
        let mut now = Instant::now();
        let mut e = Engine::new(cfg, now).unwrap();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| new_invites(&mut e, &mut now, iters))
        });
    }
    g.finish();
}

fn full_call(c: &mut Criterion) {
    let mut g = c.benchmark_group("proxy");
    g.throughput(Throughput::Elements(1));
    let (carrier, node, dest) = (addr(CARRIER), addr(NODE), addr(DEST));
    let mut now = Instant::now();
    let mut e = Engine::new(routed(), now).unwrap();
    let mut next = 0u64;
    g.bench_function("full_call", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let n = (iters - done).min(CHUNK);
                let invites: Vec<Vec<u8>> = (next..next + n).map(invite).collect();
                for (k, inv) in invites.iter().enumerate() {
                    let i = next + k as u64;
                    let (ack, bye) = (in_dialog(i, "ACK", 1), in_dialog(i, "BYE", 2));
                    let t = Instant::now();
                    e.handle_datagram(now, carrier, node, inv);
                    let fwd = drain(&mut e, Some(dest)).expect("forwarded");
                    total += t.elapsed();
                    let (ringing, ok) =
                        (answer(&fwd, 180, b"callee"), answer(&fwd, 200, b"callee"));
                    let t = Instant::now();
                    e.handle_datagram(now, dest, node, &ringing);
                    drain(&mut e, None);
                    e.handle_datagram(now, dest, node, &ok);
                    drain(&mut e, None);
                    e.handle_datagram(now, carrier, node, &ack);
                    drain(&mut e, None);
                    e.handle_datagram(now, carrier, node, &bye);
                    let fwd_bye = drain(&mut e, Some(dest)).expect("BYE forwarded");
                    total += t.elapsed();
                    let bye_ok = answer(&fwd_bye, 200, b"callee");
                    let t = Instant::now();
                    e.handle_datagram(now, dest, node, &bye_ok);
                    drain(&mut e, None);
                    total += t.elapsed();
                }
                // Untimed: the transactions' linger timers run out, as they would
                // between the calls of a running node.
                now += Duration::from_secs(3600);
                e.handle_timeout(now);
                drain(&mut e, None);
                next += n;
                done += n;
            }
            total
        })
    });
    g.finish();
}

fn admission(c: &mut Criterion) {
    let mut g = c.benchmark_group("admission");
    g.throughput(Throughput::Elements(1));
    let (carrier, node) = (addr(CARRIER), addr(NODE));
    let mut refusing = routed();
    refusing.admission.max_calls = Some(0);
    refusing.admission.shed_watermark = 1.0;
    for (name, cfg) in [("admit", routed()), ("reject", refusing)] {
        let mut now = Instant::now();
        let mut e = Engine::new(cfg, now).unwrap();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| new_invites(&mut e, &mut now, iters))
        });
    }

    // Five times the rate limit, in virtual time: the cost per offered INVITE, and
    // (printed once) the admitted rate, which must stay at the limit.
    let mut limited = routed();
    limited.admission.calls_per_second = Some(2_000.0);
    limited.admission.burst = 20;
    let offered_per_sec = 10_000u64;
    let mut reported = false;
    g.bench_function("offered_5x", |b| {
        b.iter_custom(|iters| {
            let msgs: Vec<Vec<u8>> = (0..iters.min(CHUNK * 5)).map(invite).collect();
            let start = Instant::now();
            let mut e = Engine::new(limited.clone(), start).unwrap();
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let now = start + Duration::from_nanos(i * 1_000_000_000 / offered_per_sec);
                let m = &msgs[(i % msgs.len() as u64) as usize];
                let t = Instant::now();
                e.handle_datagram(now, carrier, node, m);
                drain(&mut e, None);
                total += t.elapsed();
            }
            if !reported && iters >= offered_per_sec {
                reported = true;
                let secs = iters as f64 / offered_per_sec as f64;
                let admitted = e.stats().calls_started as f64;
                eprintln!(
                    "admission/offered_5x: offered {offered_per_sec}/s for {secs:.1} s, admitted {:.0}/s (limit 2000/s + burst 20)",
                    admitted / secs
                );
            }
            total
        })
    });
    g.finish();
}

fn dedup(c: &mut Criterion) {
    let mut g = c.benchmark_group("dedup");
    g.throughput(Throughput::Elements(1));
    let table = DedupTable::filled(1_000_000);
    let mut i = 0usize;
    g.bench_function("lookup_1m", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            black_box(table.lookup(i))
        })
    });
    g.bench_function("lookup_1m_table_only", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            black_box(table.lookup_key(i))
        })
    });
    g.finish();
}

criterion_group!(benches, transactions, full_call, admission, dedup);
criterion_main!(benches);
