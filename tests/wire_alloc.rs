//! The wire layer's hot paths make no heap allocation: scanning (full and lean),
//! datagram and stream framing, splicing edits and local responses into a `Vec` that
//! already has room. Proven with a counting global allocator whose counters are kept per
//! thread, so tests running in parallel on other threads cannot pollute the counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ringfence::wire::{self, Datagram, Limits, Message, Reply, Splice, StreamFrame, StreamFramer};

struct Counting;

thread_local! {
    // `const` initialisation and a `Copy` payload: touching these never allocates and
    // registers no destructor, so the allocator can use them re-entrantly.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

fn count(size: usize) {
    // `try_with`: during thread teardown the slot may be gone; such calls are not ours.
    let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
    let _ = BYTES.try_with(|n| n.set(n.get() + size as u64));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the wrapper only
// bumps thread-local counters.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (and reallocations) made by `f` on the current thread.
fn allocations<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let before = ALLOCS.with(Cell::get);
    let r = std::hint::black_box(f());
    (ALLOCS.with(Cell::get) - before, r)
}

#[track_caller]
fn assert_no_alloc<R>(what: &str, f: impl FnOnce() -> R) -> R {
    let (n, r) = allocations(f);
    assert_eq!(n, 0, "{what} made {n} heap allocation(s)");
    r
}

const CORPUS: [(&str, &[u8]); 3] = [
    ("invite.sip", include_bytes!("fixtures/corpus/invite.sip")),
    ("ringing.sip", include_bytes!("fixtures/corpus/ringing.sip")),
    ("ok.sip", include_bytes!("fixtures/corpus/ok.sip")),
];

/// Plenty of room for any edit of a corpus message: `write_to` and `write_response`
/// only reserve, which is free when the capacity is there.
const ROOM: usize = 8192;

#[test]
fn the_counter_sees_allocations_on_this_thread() {
    // Without this, a broken counter would make every zero below vacuous.
    let (n, v) = allocations(|| vec![1u8; 64]);
    assert!(n >= 1, "a Vec allocation was not counted");
    drop(v);
    let (n, _) = allocations(|| rsip::SipMessage::try_from(CORPUS[0].1).is_ok());
    assert!(
        n > 10,
        "rsip's parse of the INVITE counted only {n} allocations"
    );
    let mut out = Vec::new();
    let msg = wire::scan(CORPUS[0].1, &Limits::default()).unwrap();
    let (n, _) = allocations(|| wire::write_response(&msg, &Reply::new(100, b"Trying"), &mut out));
    assert!(
        n >= 1,
        "writing into an empty Vec must allocate, and be counted"
    );
}

#[test]
fn scanning_allocates_nothing() {
    let limits = Limits::default();
    for (name, bytes) in CORPUS {
        let msg = assert_no_alloc(&format!("scan({name})"), || wire::scan(bytes, &limits));
        let msg = msg.unwrap_or_else(|e| panic!("{name}: {e}"));
        // Reading every view a scanned message offers is allocation-free too.
        assert_no_alloc(&format!("views of {name}"), || {
            let via = msg.top_via();
            let headers = msg.headers().count();
            (
                via.branch,
                msg.call_id(),
                msg.cseq(),
                msg.from(),
                msg.to(),
                msg.contact(),
                msg.record_route(),
                msg.request_user(),
                msg.body().len(),
                headers,
            )
        });

        let keys = assert_no_alloc(&format!("scan_keys({name})"), || {
            wire::scan_keys(bytes, &limits)
        });
        let keys = keys.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(keys.branch(), msg.branch());

        let dg = assert_no_alloc(&format!("parse_datagram({name})"), || {
            wire::parse_datagram(bytes, &limits)
        });
        assert!(matches!(dg, Ok(Datagram::Message(_))), "{name}: {dg:?}");
    }
    let ka = assert_no_alloc("parse_datagram(keep-alive)", || {
        wire::parse_datagram(b"\r\n\r\n", &limits)
    });
    assert!(matches!(ka, Ok(Datagram::KeepAlive)));
    // Rejecting garbage does not allocate either (errors are plain values).
    let bad = assert_no_alloc("scan(garbage)", || {
        wire::scan(b"INVITE sip:x SIP/2.0\r\nVia: nonsense\r\n\r\n", &limits)
    });
    assert!(bad.is_err());
}

#[test]
fn stream_framing_allocates_nothing() {
    let limits = Limits::default();
    // The whole corpus back to back with keep-alives between, as a TCP peer sends it.
    let mut stream = Vec::new();
    for (_, bytes) in CORPUS {
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(bytes);
    }
    let mut framer = StreamFramer::new(limits);
    let mut off = 0;
    let mut messages = 0;
    while off < stream.len() {
        let frame = assert_no_alloc("StreamFramer::next_frame", || {
            framer.next_frame(&stream[off..])
        });
        match frame.expect("the corpus frames") {
            StreamFrame::KeepAlive(n) => off += n,
            StreamFrame::Message(n) => {
                let m =
                    assert_no_alloc("scan(frame)", || wire::scan(&stream[off..off + n], &limits));
                assert_eq!(m.unwrap().as_bytes(), CORPUS[messages].1);
                messages += 1;
                off += n;
            }
            StreamFrame::NeedMore => panic!("complete stream reported incomplete at {off}"),
        }
    }
    assert_eq!(messages, CORPUS.len());

    // Byte-by-byte arrival: every partial call, NeedMore included, is allocation-free.
    let (_, invite) = CORPUS[0];
    let mut framer = StreamFramer::new(limits);
    for len in 1..invite.len() {
        let frame = assert_no_alloc("next_frame(partial)", || framer.next_frame(&invite[..len]));
        assert_eq!(frame, Ok(StreamFrame::NeedMore), "at {len} bytes");
    }
    let frame = assert_no_alloc("next_frame(complete)", || framer.next_frame(invite));
    assert_eq!(frame, Ok(StreamFrame::Message(invite.len())));

    let mut framer = StreamFramer::new(limits);
    let got = assert_no_alloc("next_message", || framer.next_message(&stream));
    let (m, consumed) = got.unwrap().expect("a complete message");
    assert_eq!(m.as_bytes(), invite);
    assert_eq!(consumed, 4 + invite.len());
}

fn forward_edits<'m>(msg: &'m Message<'m>) -> Splice<'m, 'static> {
    Splice::new(msg)
        .insert_via(b"Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKrf.1")
        .insert_record_route(b"Record-Route: <sip:198.51.100.10;lr>")
        .rewrite_request_uri(b"sip:+18005550199@192.0.2.80:5080")
        .unwrap()
        .decrement_max_forwards()
        .unwrap()
        .set_via_received(Some(b"192.0.2.1"), 5062)
}

#[test]
fn splicing_and_responding_into_a_vec_with_room_allocates_nothing() {
    let limits = Limits::default();
    let mut out = Vec::with_capacity(ROOM);
    let (_, invite) = CORPUS[0];
    let req = wire::scan(invite, &limits).unwrap();

    let splice = assert_no_alloc("building the forward Splice", || forward_edits(&req));
    out.clear();
    assert_no_alloc("Splice::write_to(forward INVITE)", || {
        splice.write_to(&mut out)
    });
    let fwd = wire::scan(&out, &limits).expect("the forwarded INVITE scans");
    assert_eq!(fwd.branch(), Some(&b"z9hG4bKrf.1"[..]));
    assert_eq!(fwd.max_forwards(), Some(68));

    let replies = [
        Reply::new(100, b"Trying"),
        Reply {
            to_tag: Some(b"rf-7c41d2"),
            headers: b"Retry-After: 5\r\n",
            via_params: b";oc=20",
            received: Some(b"192.0.2.1"),
            source_port: 5062,
            ..Reply::new(503, b"Service Unavailable")
        },
        Reply {
            to_tag: Some(b"rf-7c41d2"),
            ..Reply::new(486, b"Busy Here")
        },
    ];
    for reply in &replies {
        out.clear();
        assert_no_alloc(&format!("write_response({})", reply.status), || {
            wire::write_response(&req, reply, &mut out)
        });
        let resp = wire::scan(&out, &limits).expect("the response scans");
        assert_eq!(resp.status(), Some(reply.status));
        out.clear();
        let written = assert_no_alloc("write_response_to_unparsed", || {
            wire::write_response_to_unparsed(invite, reply, &mut out)
        });
        assert!(written);
    }

    for (name, bytes) in &CORPUS[1..] {
        let resp = wire::scan(bytes, &limits).unwrap();
        let splice = Splice::new(&resp)
            .remove_top_via()
            .unwrap()
            .set_to_tag(b"rf-1");
        out.clear();
        assert_no_alloc(&format!("Splice::write_to({name})"), || {
            splice.write_to(&mut out)
        });
        let relayed = wire::scan(&out, &limits).expect("the relayed response scans");
        assert_eq!(relayed.via_count(), resp.via_count() - 1);
    }
    assert!(out.capacity() == ROOM, "the output Vec grew");
}
