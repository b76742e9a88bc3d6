//! Arbitrary bytes, split at arbitrary points, fed to `StreamFramer` as a TCP peer's
//! segments would arrive.
//!
//! The split points are drawn from a generator seeded by the input, so every mutation
//! of the input also moves the splits, and plain SIP files work as seeds.
//!
//! Asserts: no panic; frames consume exactly a prefix of the input, in order; no frame
//! exceeds the configured limit; a framed message that scans spans its whole frame with
//! the body Content-Length says; and the frames do not depend on how the bytes were
//! split: whole, byte by byte (for short inputs) and in random chunks give the same
//! sequence of frames (keep-alives merged) and end the same way.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence::wire::{self, Limits, ParseError, StreamFrame, StreamFramer};

const LIMITS: Limits = Limits {
    max_message_len: 2048,
    max_headers: 128,
    max_vias: 70,
};

#[derive(Debug, PartialEq, Eq)]
enum Event {
    Message(usize),
    KeepAlive(usize),
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Input exhausted; this many bytes were left unconsumed (a partial message).
    NeedMore(usize),
    /// The framer gave up: the connection would be closed.
    Error(ParseError),
}

/// Feeds `data` in chunks of the given sizes (cycled), consuming frames as a host
/// would, and records what came out.
fn run(data: &[u8], chunks: &mut dyn FnMut() -> usize) -> (Vec<Event>, End) {
    let mut framer = StreamFramer::new(LIMITS);
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut consumed = 0;
    let mut events: Vec<Event> = Vec::new();
    loop {
        match framer.next_frame(&buf) {
            Ok(StreamFrame::Message(n)) => {
                assert!(
                    n > 0 && n <= buf.len(),
                    "frame of {n} bytes from {}",
                    buf.len()
                );
                assert!(
                    n <= LIMITS.max_message_len,
                    "frame of {n} bytes exceeds the limit"
                );
                let frame = &buf[..n];
                // The frame is the input's next bytes.
                assert_eq!(frame, &data[consumed..consumed + n]);
                if let Ok(m) = wire::scan(frame, &LIMITS) {
                    assert_eq!(
                        m.as_bytes().as_ptr_range().end,
                        frame.as_ptr_range().end,
                        "a scanned frame ends before the frame does"
                    );
                    let cl = m.content_length().expect("streams frame by Content-Length");
                    assert_eq!(m.body().len(), cl);
                }
                consumed += n;
                buf.drain(..n);
                events.push(Event::Message(n));
            }
            Ok(StreamFrame::KeepAlive(n)) => {
                assert!(n > 0 && n <= buf.len());
                assert!(buf[..n].iter().all(|&c| c == b'\r' || c == b'\n'));
                consumed += n;
                buf.drain(..n);
                match events.last_mut() {
                    Some(Event::KeepAlive(m)) => *m += n,
                    _ => events.push(Event::KeepAlive(n)),
                }
            }
            Ok(StreamFrame::NeedMore) => {
                if fed == data.len() {
                    assert_eq!(consumed + buf.len(), data.len());
                    return (events, End::NeedMore(buf.len()));
                }
                let n = chunks().clamp(1, data.len() - fed);
                buf.extend_from_slice(&data[fed..fed + n]);
                fed += n;
            }
            Err(e) => return (events, End::Error(e)),
        }
    }
}

/// FNV-1a of the input, then xorshift64: deterministic per input.
fn rng(data: &[u8]) -> impl FnMut() -> u64 {
    let mut s = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    }) | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = run(data, &mut || usize::MAX);

    let mut next = rng(data);
    let chunked = run(data, &mut || match next() % 8 {
        0 => 1,
        1 => 2,
        7 => (next() % 1024) as usize + 1,
        _ => (next() % 64) as usize + 1,
    });
    assert_eq!(chunked, whole, "random splits changed the frames");

    if data.len() <= 4096 {
        let bytewise = run(data, &mut || 1);
        assert_eq!(bytewise, whole, "byte-by-byte arrival changed the frames");
    }

    // `next_message` over the whole input agrees with the frames.
    let mut framer = StreamFramer::new(LIMITS);
    let mut off = 0;
    let mut messages = whole.0.iter().filter(|e| matches!(e, Event::Message(_)));
    while let Ok(Some((m, n))) = framer.next_message(&data[off..]) {
        let Some(Event::Message(len)) = messages.next() else {
            panic!("next_message found a message next_frame did not");
        };
        assert!(m.as_bytes().len() <= *len && n >= *len);
        off += n;
    }
});
