//! The engine's one timer queue. Entries name an owner; the owner keeps its own next
//! deadline, so a fired entry whose time no longer matches is stale and ignored (lazy
//! cancellation). The queue is compacted when stale entries outnumber live ones.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::slab::Key;
use crate::time::Time;

/// What a timer entry wakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Owner {
    ServerTx(Key),
    ClientTx(Key),
    Call(Key),
    Dialog(Key),
    /// The guard layer: breaker cool-downs.
    Guard,
    /// Health re-evaluation while not healthy or a change is pending.
    Health,
}

#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<Reverse<(Time, Owner)>>,
}

impl TimerQueue {
    pub(crate) fn schedule(&mut self, at: Time, owner: Owner) {
        self.heap.push(Reverse((at, owner)));
    }

    /// The earliest entry's time (it may be stale; waking for it is harmless).
    pub(crate) fn peek(&self) -> Option<Time> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    pub(crate) fn peek_entry(&self) -> Option<(Time, Owner)> {
        self.heap.peek().map(|Reverse(e)| *e)
    }

    pub(crate) fn pop(&mut self) -> Option<(Time, Owner)> {
        self.heap.pop().map(|Reverse(e)| e)
    }

    /// Pops the earliest entry if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Time) -> Option<(Time, Owner)> {
        match self.heap.peek() {
            Some(Reverse((t, _))) if *t <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drops every entry `live` rejects. O(n); call when stale entries dominate.
    pub(crate) fn retain(&mut self, mut live: impl FnMut(Time, Owner) -> bool) {
        let entries = std::mem::take(&mut self.heap).into_vec();
        self.heap = entries
            .into_iter()
            .filter(|Reverse((t, o))| live(*t, *o))
            .collect();
    }
}
