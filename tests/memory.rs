//! Memory and allocation bounds, measured with a counting allocator: per active call
//! (target ≤ 2 KiB at 100,000 answered calls), per re-attempt entry (≤ 128 bytes at a
//! million), and none at all on the retransmission-absorption path.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use ringfence::Config;
use ringfence::bench_hooks::DedupTable;
use support::sip::Req;
use support::*;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

/// Counts per thread, so tests running in parallel do not see each other.
struct Counting;

// SAFETY: every call is forwarded to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|c| c.set(c.get() + layout.size() as isize));
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LIVE.try_with(|c| c.set(c.get() - layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        let _ = LIVE.try_with(|c| c.set(c.get() + new as isize - layout.size() as isize));
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn live() -> isize {
    LIVE.with(|c| c.get())
}

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

#[test]
fn a_million_reattempt_entries_take_at_most_128_bytes_each() {
    let n = 1_000_000;
    // The table and its keys; the callers' numbers are the test's own.
    let before = live();
    let t = DedupTable::filled(n);
    let total = live() - before;
    // `filled` also keeps the callers' numbers (for the lookup bench): not the table.
    let numbers: isize = (0..n)
        .map(|i| format!("1415{i:07}").capacity() as isize + 24)
        .sum();
    let keys = (n * 8) as isize;
    let per_entry = (total - numbers - keys) as f64 / n as f64;
    assert_eq!(t.len(), n);
    assert!(t.lookup(12345) && t.lookup_key(999_999));
    assert!(per_entry <= 128.0, "{per_entry:.1} bytes per entry");
    println!("re-attempt table: {per_entry:.1} bytes per entry at {n} entries");
}

/// Sets up `calls` answered calls (ACKed, transactions expired) and returns the live
/// bytes they hold.
fn answered_calls(calls: usize) -> f64 {
    let mut cfg = routed(&[DEST]);
    cfg.proxy.max_calls = calls + 10;
    cfg.proxy.max_dialogs = calls + 10;
    cfg.limits.max_transactions = 4 * calls + 100;
    let mut h = Harness::new(cfg);
    let before = live();
    for i in 0..calls {
        let inv = Req::invite("+18005550199", &format!("m{i}")).with(|r| {
            r.from = format!("<sip:+1415{i:07}@carrier.example>;tag=f{i}");
            r.call_id = format!("mem-{i}@carrier.example");
        });
        let out = h.send(CARRIER, &inv.bytes());
        let fwd = out
            .into_iter()
            .find(|s| s.to == addr(DEST))
            .expect("forwarded");
        h.send(DEST, &answer(&fwd, 200, Some("callee")));
        let ack = Req::new(
            "ACK",
            "sip:callee@192.0.2.20:5080",
            "192.0.2.1:5060",
            &format!("a{i}"),
        )
        .with(|r| {
            r.call_id = inv.call_id.clone();
            r.from = inv.from.clone();
            r.to = format!("{};tag=callee", inv.to);
        });
        h.send(CARRIER, &ack.bytes());
        // Nothing the harness logs should count as the engine's.
        h.log.clear();
        h.events.clear();
        h.event_times.clear();
    }
    // Let every transaction finish (Timer L, D and friends) while the calls go on.
    h.advance(Duration::from_secs(40));
    h.log.clear();
    h.events.clear();
    h.event_times.clear();
    h.log.shrink_to_fit();
    h.events.shrink_to_fit();
    h.event_times.shrink_to_fit();
    let t = h.engine.table_sizes();
    assert_eq!(h.engine.active_calls(), calls);
    assert_eq!((t.transactions, t.calls, t.dialogs), (0, 0, calls));
    (live() - before) as f64 / calls as f64
}

#[test]
fn an_answered_call_holds_at_most_2_kib() {
    // 100,000 in a release build (`cargo test --release --test memory`); a tenth in
    // debug, where building the calls is slow. Per-call memory does not depend on it.
    let calls = if cfg!(debug_assertions) {
        10_000
    } else {
        100_000
    };
    let per_call = answered_calls(calls);
    assert!(per_call <= 2048.0, "{per_call:.0} bytes per answered call");
    println!("engine: {per_call:.0} bytes per answered call at {calls} calls");
}

#[test]
fn absorbing_a_retransmission_allocates_nothing() {
    let mut h = Harness::new(routed(&[DEST]));
    let inv = Req::invite("+18005550199", "absorb");
    let bytes = inv.bytes();
    h.send(CARRIER, &bytes);
    let now = h.now;
    let (remote, local) = (addr(CARRIER), h.local);
    // Warm up: the output arena grows to its working size once.
    for _ in 0..3 {
        h.engine.handle_datagram(now, remote, local, &bytes);
        while h.engine.poll_transmit().is_some() {}
    }
    let before = allocs();
    for _ in 0..1000 {
        h.engine.handle_datagram(now, remote, local, &bytes);
        let mut sent = 0;
        while let Some(t) = h.engine.poll_transmit() {
            assert!(t.payload.starts_with(b"SIP/2.0 100"));
            sent += 1;
        }
        assert_eq!(sent, 1);
    }
    assert_eq!(
        allocs() - before,
        0,
        "allocations while absorbing 1000 retransmissions"
    );
    assert_eq!(h.engine.stats().retransmissions_absorbed, 1003);
    let _ = Config::default();
}
