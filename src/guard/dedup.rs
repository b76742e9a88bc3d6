//! Carrier re-attempt deduplication. A re-attempt is a new INVITE (new Call-ID, new
//! branch) for a call the carrier already tried: same trunk, same calling number,
//! same dialled number, within a window. RFC 3261 retransmissions never get here (the
//! transaction layer absorbs them); this catches what carriers do above that.
//!
//! The table is bounded and every entry expires. Entries are keyed by a keyed 64-bit
//! digest of (trunk, caller, dialled), so each is a fixed few dozen bytes whatever the
//! numbers' length; two different calls colliding needs a 64-bit collision under a
//! secret key (about 3·10⁻⁸ with a million live entries). When full, the oldest entry
//! is evicted (counted).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use crate::hash::SeededState;
use crate::slab::Key;
use crate::time::Time;

/// What to do with a re-attempt while the previous attempt is still in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InProgress {
    /// CANCEL the previous downstream leg, answer the previous upstream 487, route the
    /// new attempt in its place (it inherits the previous attempt's capacity slot).
    Supersede,
    /// Refuse the new attempt with this status.
    Reject(u16),
}

/// What to do with a re-attempt shortly after the previous attempt was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterAnswer {
    /// Let it through (a caller may legitimately call again).
    Allow,
    /// Refuse it with this status as a duplicate delivery.
    Reject(u16),
}

/// Re-attempt policy for a trunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DedupPolicy {
    /// Whether re-attempts are recognised at all on this trunk.
    pub enabled: bool,
    /// How long after an attempt a new one counts as a re-attempt (default 60 s).
    pub window: Duration,
    /// Previous attempt still ringing or routing.
    pub in_progress: InProgress,
    /// Previous attempt refused by us for overload and its Retry-After not yet over:
    /// refuse at once from the remembered verdict, spending no admission tokens.
    pub suppress_after_refusal: bool,
    /// Previous attempt answered less than `answered_window` ago.
    pub after_answer: AfterAnswer,
    /// See `after_answer` (default 10 s).
    pub answered_window: Duration,
}

impl Default for DedupPolicy {
    fn default() -> Self {
        DedupPolicy {
            enabled: true,
            window: Duration::from_secs(60),
            in_progress: InProgress::Supersede,
            suppress_after_refusal: true,
            after_answer: AfterAnswer::Allow,
            answered_window: Duration::from_secs(10),
        }
    }
}

/// Where the previous attempt stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Previous {
    /// Routing or ringing: the proxy's call.
    InProgress(Key),
    /// Refused by us until `until` with `status` (and this Retry-After, seconds).
    Refused {
        until: Time,
        status: u16,
        retry_after: u32,
    },
    /// Answered at this time.
    Answered(Time),
    /// Ended without an answer (busy, no answer, cancelled, failed downstream).
    Failed,
}

/// Hashing for maps keyed by a keyed digest: the key already is a uniformly
/// distributed secret-keyed hash, so it is used as is (hashing it again would cost a
/// SipHash per lookup and protect nothing).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Digest;

impl BuildHasher for Digest {
    type Hasher = DigestHasher;

    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

#[derive(Debug)]
pub(crate) struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; fold anything else in, to stay correct.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A bounded map whose entries expire: insertion order is kept with the expiry each
/// entry had when queued, so expiry and eviction of the oldest are amortised O(1);
/// queue items left behind by refreshed or removed entries are skipped.
#[derive(Debug)]
pub(crate) struct ExpiringMap<V> {
    map: HashMap<u64, (V, Time), Digest>,
    order: VecDeque<(u64, Time)>,
    capacity: usize,
    pub(crate) evicted: u64,
}

impl<V: Copy> ExpiringMap<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        ExpiringMap {
            map: HashMap::with_hasher(Digest),
            order: VecDeque::new(),
            capacity,
            evicted: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn get(&self, key: u64, now: Time) -> Option<V> {
        self.map
            .get(&key)
            .filter(|(_, e)| *e > now)
            .map(|(v, _)| *v)
    }

    /// Stores `value` until `expires`.
    pub(crate) fn set(&mut self, key: u64, value: V, now: Time, expires: Time) {
        self.expire(now);
        if !self.map.contains_key(&key) && self.map.len() >= self.capacity {
            self.evict_oldest();
        }
        self.map.insert(key, (value, expires));
        self.order.push_back((key, expires));
    }

    /// Replaces the value of a live entry, keeping its expiry.
    pub(crate) fn update(&mut self, key: u64, value: V) {
        if let Some((v, _)) = self.map.get_mut(&key) {
            *v = value;
        }
    }

    fn evict_oldest(&mut self) {
        while let Some((k, t)) = self.order.pop_front() {
            if self.map.get(&k).is_some_and(|(_, e)| *e == t) {
                self.map.remove(&k);
                self.evicted += 1;
                return;
            }
        }
    }

    /// Drops expired entries from the front of the queue, and queue items that no
    /// longer match their entry once they outnumber the entries.
    pub(crate) fn expire(&mut self, now: Time) {
        while let Some(&(k, t)) = self.order.front() {
            if t > now && self.order.len() <= 2 * self.map.len() + 16 {
                break;
            }
            self.order.pop_front();
            if t <= now && self.map.get(&k).is_some_and(|(_, e)| *e == t) {
                self.map.remove(&k);
            }
        }
    }
}

/// The re-attempt table.
#[derive(Debug)]
pub(crate) struct Dedup {
    entries: ExpiringMap<Previous>,
    hasher: SeededState,
}

impl Dedup {
    pub(crate) fn new(capacity: usize, seed: u64) -> Self {
        Dedup {
            entries: ExpiringMap::new(capacity),
            hasher: SeededState::new(seed ^ 0x0064_6564_7570),
        }
    }

    /// The key of a call: `None` for withheld or anonymous callers, which are never
    /// deduplicated (they cannot be told apart).
    pub(crate) fn key(
        &self,
        trunk: usize,
        caller: Option<&str>,
        dialled: Option<&str>,
    ) -> Option<u64> {
        let (caller, dialled) = (caller?, dialled?);
        let mut h = self.hasher.build_hasher();
        h.write_usize(trunk);
        h.write(caller.as_bytes());
        h.write_u8(0);
        h.write(dialled.as_bytes());
        Some(h.finish())
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn evicted(&self) -> u64 {
        self.entries.evicted
    }

    /// The previous attempt for `key`, if one is remembered and not expired.
    pub(crate) fn get(&self, key: u64, now: Time) -> Option<Previous> {
        self.entries.get(key, now)
    }

    /// Records the latest attempt's state; it is remembered for `window` from now.
    pub(crate) fn set(&mut self, key: u64, previous: Previous, now: Time, window: Duration) {
        self.entries.set(key, previous, now, now + window);
    }

    /// Updates the state of a remembered attempt without extending its window.
    pub(crate) fn update(&mut self, key: u64, previous: Previous) {
        self.entries.update(key, previous);
    }
}

/// Attempts and distinct calls per trunk over a sliding window of one-second buckets:
/// their ratio is the carrier's retry factor.
#[derive(Clone, Debug)]
pub(crate) struct RetryWindow {
    buckets: Vec<(u64, u32, u32)>,
}

impl RetryWindow {
    pub(crate) fn new(seconds: usize) -> Self {
        RetryWindow {
            buckets: vec![(u64::MAX, 0, 0); seconds.max(1)],
        }
    }

    pub(crate) fn record(&mut self, now: Time, reattempt: bool) {
        let sec = now.0 / 1_000_000_000;
        let n = self.buckets.len();
        let b = &mut self.buckets[(sec % n as u64) as usize];
        if b.0 != sec {
            *b = (sec, 0, 0);
        }
        b.1 += 1;
        if !reattempt {
            b.2 += 1;
        }
    }

    /// Attempts per distinct call over the window (1.0 with no traffic).
    pub(crate) fn factor(&self, now: Time) -> f64 {
        let sec = now.0 / 1_000_000_000;
        let n = self.buckets.len() as u64;
        let (attempts, calls) = self
            .buckets
            .iter()
            .filter(|b| b.0 != u64::MAX && b.0 + n > sec)
            .fold((0u64, 0u64), |(a, c), b| (a + b.1 as u64, c + b.2 as u64));
        if calls == 0 {
            if attempts == 0 { 1.0 } else { attempts as f64 }
        } else {
            attempts as f64 / calls as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> Time {
        Time::ZERO + Duration::from_secs(s)
    }

    #[test]
    fn anonymous_callers_have_no_key_and_keys_separate_trunks() {
        let d = Dedup::new(8, 1);
        assert!(d.key(0, None, Some("18005550199")).is_none());
        let a = d.key(0, Some("14155550123"), Some("18005550199")).unwrap();
        let b = d.key(1, Some("14155550123"), Some("18005550199")).unwrap();
        let c = d.key(0, Some("1415555012"), Some("318005550199")).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, c, "field boundaries matter");
    }

    #[test]
    fn entries_expire_and_the_table_is_bounded() {
        let mut d = Dedup::new(2, 1);
        let w = Duration::from_secs(60);
        d.set(1, Previous::Failed, t(0), w);
        d.set(2, Previous::Failed, t(1), w);
        assert_eq!(d.get(1, t(59)), Some(Previous::Failed));
        assert_eq!(d.get(1, t(60)), None);
        d.set(3, Previous::Failed, t(2), w);
        assert_eq!(d.len(), 2);
        assert_eq!(d.evicted(), 1);
        assert_eq!(d.get(1, t(2)), None, "the oldest went");
        d.entries.expire(t(100));
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn refreshing_an_entry_keeps_one_entry() {
        let mut d = Dedup::new(4, 1);
        let w = Duration::from_secs(10);
        for s in 0..100 {
            d.set(7, Previous::Failed, t(s), w);
        }
        assert_eq!(d.len(), 1);
        assert!(d.entries.order.len() <= 2 * d.entries.map.len() + 17);
        d.update(7, Previous::Answered(t(100)));
        assert_eq!(d.get(7, t(100)), Some(Previous::Answered(t(100))));
    }

    #[test]
    fn retry_factor_is_attempts_per_distinct_call() {
        let mut w = RetryWindow::new(10);
        assert_eq!(w.factor(t(0)), 1.0);
        for i in 0..10 {
            w.record(t(i / 3), false);
            for _ in 0..4 {
                w.record(t(i / 3), true);
            }
        }
        assert!((w.factor(t(3)) - 5.0).abs() < 1e-9);
        assert_eq!(w.factor(t(30)), 1.0, "old buckets age out");
    }
}
