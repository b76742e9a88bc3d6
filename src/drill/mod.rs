//! The carrier drill: simulated carriers with retry profiles, simulated destinations,
//! a deterministic virtual network with simulated node hosts (a real engine behind a
//! CPU whose real capacity may differ from its configuration), and a capacity finder.
//! Sans-IO like the engine: `examples/drill.rs` runs the same actors over real UDP
//! sockets, `examples/incident_replay.rs` replays the incident in virtual time.
//!
//! Owns: simulated peers and the simulation loop. Never touches the engine's
//! internals: it drives engines only through their public API.

mod carrier;
mod destination;
mod finder;
mod profile;
pub mod replay;
pub mod sim;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::time::Instant;

pub use carrier::{Carrier, CarrierConfig, CarrierStats};
pub use destination::{Destination, DestinationStats};
pub use finder::{CapacityFinder, FinderConfig, FinderReport, Next, StepResult};
pub use profile::{DestinationMix, RetryProfile};

/// A datagram an actor wants sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// Destination.
    pub to: SocketAddr,
    /// Source (the actor's own address).
    pub from: SocketAddr,
    /// One SIP message.
    pub bytes: Vec<u8>,
}

/// Something that takes part in a drill: the same shape as the engine (datagrams and
/// time in, datagrams out).
pub trait Actor {
    /// A datagram arrived from `from`.
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]);
    /// A datagram arrived from `from`, handed over (an actor that queues datagrams
    /// keeps the buffer instead of copying it).
    fn handle_datagram_owned(&mut self, now: Instant, from: SocketAddr, bytes: Vec<u8>) {
        self.handle_datagram(now, from, &bytes);
    }
    /// Time advanced to `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// When `handle_timeout` is next needed.
    fn poll_timeout(&mut self) -> Option<Instant>;
    /// The next datagram to send.
    fn poll_transmit(&mut self) -> Option<Outgoing>;
}

/// Hashing for the drill's own tables: fast and deterministic. The drill's peers are
/// simulated, so the engine's keyed SipHash (against hash flooding) is not needed here.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FastHash;

/// A map with [`FastHash`].
pub(crate) type FastMap<K, V> = HashMap<K, V, FastHash>;

/// FxHash-style word mixing with a murmur3 finaliser (the table uses the top bits).
#[derive(Debug)]
pub(crate) struct FastHasher(u64);

impl BuildHasher for FastHash {
    type Hasher = FastHasher;

    fn build_hasher(&self) -> FastHasher {
        FastHasher(0)
    }
}

impl FastHasher {
    fn word(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        self.word(u64::from_le_bytes(last) ^ ((bytes.len() as u64) << 56));
    }

    fn write_u64(&mut self, n: u64) {
        self.word(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.word(n as u64);
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}
