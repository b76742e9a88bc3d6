//! Wire-layer benchmarks on realistic carrier messages (`tests/fixtures/corpus`).
//!
//! One run measures, per message, our full scan, our lean key scan and rsip 0.4 on the
//! same bytes, grouped so the ratios read straight off criterion's output:
//!
//! - `scan/{invite,ringing,ok}`: `scan`, `scan_keys`, `rsip_parse` (rsip's
//!   `SipMessage::try_from`) and `rsip_parse_keys` (rsip parse plus Call-ID, top Via
//!   branch and CSeq through its typed headers, the same keys `scan_keys` returns).
//! - `forward/invite`: the proxy's forwarding edits (insert Via, rewrite the
//!   Request-URI, decrement Max-Forwards, insert Record-Route) spliced into a reused
//!   `Vec`, on a scanned message (`splice`) and from raw bytes (`scan_then_splice`).
//! - `respond/invite`: `write_response` of a `100 Trying` and a `486 Busy Here` into a
//!   reused `Vec`.
//!
//! Run with `cargo bench --bench wire`; criterion's report gives the median per case.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringfence::wire::{self, Limits, Reply, Splice};
use rsip::prelude::*;

const INVITE: &[u8] = include_bytes!("../tests/fixtures/corpus/invite.sip");
const RINGING: &[u8] = include_bytes!("../tests/fixtures/corpus/ringing.sip");
const OK: &[u8] = include_bytes!("../tests/fixtures/corpus/ok.sip");

const OUR_VIA: &[u8] = b"Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKrf.2a0c9d1e55f0b3c7";
const OUR_RECORD_ROUTE: &[u8] = b"Record-Route: <sip:198.51.100.10;lr>";
const TARGET_URI: &[u8] = b"sip:+18005550199@192.0.2.80:5080;user=phone";

/// What `rsip_parse_keys` extracts: the transaction keys, owned as rsip hands them out.
fn rsip_keys(bytes: &[u8]) -> (String, Option<String>, u32) {
    let msg = rsip::SipMessage::try_from(bytes).expect("rsip parses the corpus");
    let call_id = msg.call_id_header().expect("Call-ID").value().to_owned();
    let via = msg.via_header().expect("Via").typed().expect("typed Via");
    let branch = via.branch().map(|b| b.to_string());
    let cseq = msg
        .cseq_header()
        .expect("CSeq")
        .typed()
        .expect("typed CSeq");
    (call_id, branch, cseq.seq)
}

fn bench_scan(c: &mut Criterion) {
    let limits = Limits::default();
    for (name, bytes) in [("invite", INVITE), ("ringing", RINGING), ("ok", OK)] {
        // Every case must extract the same keys, or the comparison means nothing.
        let keys = wire::scan_keys(bytes, &limits).expect("scan_keys");
        let msg = wire::scan(bytes, &limits).expect("scan");
        let (call_id, branch, cseq) = rsip_keys(bytes);
        assert_eq!(msg.call_id(), call_id.as_bytes());
        assert_eq!(msg.branch(), branch.as_deref().map(str::as_bytes));
        assert_eq!(keys.branch(), msg.branch());
        assert_eq!(msg.cseq().number, cseq);

        let mut g = c.benchmark_group(format!("scan/{name}"));
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function("scan", |b| {
            b.iter(|| wire::scan(black_box(bytes), &limits).map(|m| m.header_count()))
        });
        g.bench_function("scan_keys", |b| {
            b.iter(|| wire::scan_keys(black_box(bytes), &limits).map(|k| k.branch().is_some()))
        });
        g.bench_function("rsip_parse", |b| {
            b.iter(|| rsip::SipMessage::try_from(black_box(bytes)).is_ok())
        });
        g.bench_function("rsip_parse_keys", |b| {
            b.iter(|| rsip_keys(black_box(bytes)))
        });
        g.finish();
    }
}

fn forward(msg: &wire::Message<'_>, out: &mut Vec<u8>) {
    Splice::new(msg)
        .insert_via(OUR_VIA)
        .insert_record_route(OUR_RECORD_ROUTE)
        .rewrite_request_uri(TARGET_URI)
        .expect("a request")
        .decrement_max_forwards()
        .expect("Max-Forwards above zero")
        .write_to(out);
}

fn bench_forward(c: &mut Criterion) {
    let limits = Limits::default();
    let msg = wire::scan(INVITE, &limits).expect("scan");
    let mut out = Vec::with_capacity(4096);
    forward(&msg, &mut out);
    let fwd = wire::scan(&out, &limits).expect("the forwarded INVITE scans");
    assert_eq!(fwd.request_uri(), Some(TARGET_URI));
    assert_eq!(fwd.max_forwards(), Some(68));

    let mut g = c.benchmark_group("forward/invite");
    g.throughput(Throughput::Bytes(INVITE.len() as u64));
    g.bench_function("splice", |b| {
        b.iter(|| {
            out.clear();
            forward(black_box(&msg), &mut out);
            out.len()
        })
    });
    g.bench_function("scan_then_splice", |b| {
        b.iter(|| {
            out.clear();
            let msg = wire::scan(black_box(INVITE), &limits).expect("scan");
            forward(&msg, &mut out);
            out.len()
        })
    });
    g.finish();
}

fn bench_respond(c: &mut Criterion) {
    let limits = Limits::default();
    let msg = wire::scan(INVITE, &limits).expect("scan");
    let trying = Reply::new(100, b"Trying");
    let busy = Reply {
        to_tag: Some(b"rf-7c41d2"),
        received: Some(b"203.0.113.7"),
        source_port: 5060,
        ..Reply::new(486, b"Busy Here")
    };
    let mut out = Vec::with_capacity(4096);
    for reply in [&trying, &busy] {
        out.clear();
        wire::write_response(&msg, reply, &mut out);
        let resp = wire::scan(&out, &limits).expect("the response scans");
        assert_eq!(resp.status(), Some(reply.status));
    }

    let mut g = c.benchmark_group("respond/invite");
    g.bench_function("100_trying", |b| {
        b.iter(|| {
            out.clear();
            wire::write_response(black_box(&msg), &trying, &mut out);
            out.len()
        })
    });
    g.bench_function("486_busy", |b| {
        b.iter(|| {
            out.clear();
            wire::write_response(black_box(&msg), &busy, &mut out);
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_scan, bench_forward, bench_respond);
criterion_main!(benches);
