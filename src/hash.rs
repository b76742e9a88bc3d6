//! Seeded hashing for tables keyed by what peers send. SipHash-1-3 keyed by the config
//! seed: deterministic for a given seed (runs replay), not predictable to a peer that
//! does not know it (no hash flooding).

use std::collections::hash_map::DefaultHasher;
use std::hash::{BuildHasher, Hasher};

#[derive(Clone, Copy, Debug)]
pub(crate) struct SeededState {
    seed: u64,
}

impl SeededState {
    pub(crate) fn new(seed: u64) -> Self {
        SeededState { seed }
    }
}

impl BuildHasher for SeededState {
    type Hasher = DefaultHasher;

    fn build_hasher(&self) -> DefaultHasher {
        // `DefaultHasher::new()` is SipHash with fixed keys; absorbing the secret first
        // makes the state (and so every hash) depend on it.
        let mut h = DefaultHasher::new();
        h.write_u64(self.seed);
        h
    }
}

/// A keyed 64-bit digest of `parts`.
pub(crate) fn digest(seed: u64, parts: &[u64]) -> u64 {
    let mut h = SeededState::new(seed).build_hasher();
    for p in parts {
        h.write_u64(*p);
    }
    h.finish()
}

/// An unkeyed 64-bit digest of a byte string (for keying per-request draws).
pub(crate) fn bytes_digest(b: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(b);
    h.finish()
}
