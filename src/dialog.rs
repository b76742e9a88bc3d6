//! Dialogs (RFC 3261 §12) as a record-routing proxy tracks them: early (a provisional
//! with a To tag) → confirmed (2xx) → terminated (BYE, failure, timeout), every state
//! with a deadline. A dialog remembers what in-dialog routing and a proxy-originated
//! BYE need: both sides' addresses, tags, contacts and CSeqs.
//!
//! Owns: the dialog table and each dialog's state and deadlines. Never touches
//! transactions or sockets; the engine acts on what the timers report.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::time::Duration;

use crate::guard::{Slot, TargetSlot};
use crate::hash::SeededState;
use crate::slab::{Key, Slab};
use crate::time::Time;
use crate::wire::Transport;

/// Dialog states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DialogState {
    Early,
    Confirmed,
    Terminated,
}

/// One side of a dialog, as given when the dialog is created.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SideInit<'a> {
    /// Where requests to this side are sent.
    pub(crate) addr: SocketAddr,
    /// Our address facing this side.
    pub(crate) local: SocketAddr,
    pub(crate) transport: Transport,
    pub(crate) tag: &'a [u8],
    /// The side's Contact URI (its remote target), may be empty.
    pub(crate) contact: &'a [u8],
    /// The side's own name-addr with its tag, as it writes it in From (caller) or as
    /// the callee's To (callee).
    pub(crate) name_addr: &'a [u8],
    /// CSeq of the last request this side sent.
    pub(crate) cseq: u32,
}

#[derive(Clone, Copy, Debug, Default)]
struct TextSpan {
    start: u16,
    len: u16,
}

#[derive(Debug)]
pub(crate) struct Side {
    pub(crate) addr: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) transport: Transport,
    pub(crate) cseq: u32,
    tag: TextSpan,
    contact: TextSpan,
    name_addr: TextSpan,
}

/// A dialog. All its strings live in one allocation.
#[derive(Debug)]
pub(crate) struct Dialog {
    /// The call handle events name.
    pub(crate) call: u64,
    pub(crate) state: DialogState,
    pub(crate) caller: Side,
    pub(crate) callee: Side,
    /// When the INVITE arrived.
    pub(crate) started: Time,
    pub(crate) answered: Option<Time>,
    pub(crate) acked: bool,
    ack_by: Option<Time>,
    hangup_at: Option<Time>,
    remove_at: Option<Time>,
    pub(crate) scheduled: Option<Time>,
    /// The call's capacity slots while the call is answered; released (dropped) when
    /// the dialog terminates.
    pub(crate) slots: Option<(Slot, Option<TargetSlot>)>,
    call_id: TextSpan,
    text: Box<[u8]>,
    index: u64,
}

/// What a dialog timer reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DialogFired {
    Nothing,
    /// A 2xx was relayed but no ACK came within 64·T1.
    NoAck,
    /// The maximum call duration was reached.
    MaxDuration,
    /// The terminated dialog has lingered long enough; remove it.
    Remove,
}

impl Dialog {
    fn span(&self, s: TextSpan) -> &[u8] {
        &self.text[s.start as usize..(s.start + s.len) as usize]
    }

    pub(crate) fn call_id(&self) -> &[u8] {
        self.span(self.call_id)
    }

    pub(crate) fn tag(&self, side: &Side) -> &[u8] {
        self.span(side.tag)
    }

    pub(crate) fn contact(&self, side: &Side) -> &[u8] {
        self.span(side.contact)
    }

    pub(crate) fn name_addr(&self, side: &Side) -> &[u8] {
        self.span(side.name_addr)
    }

    /// Whether a request with From tag `from_tag` comes from the caller.
    pub(crate) fn is_caller_tag(&self, from_tag: &[u8]) -> bool {
        self.tag(&self.caller) == from_tag
    }

    /// The 2xx was relayed: the dialog is confirmed and waits for the ACK.
    pub(crate) fn confirm(
        &mut self,
        now: Time,
        ack_wait: Duration,
        max_duration: Option<Duration>,
    ) {
        self.state = DialogState::Confirmed;
        self.answered = Some(now);
        self.ack_by = Some(now + ack_wait);
        self.hangup_at = max_duration.map(|d| now + d);
    }

    pub(crate) fn on_ack(&mut self) {
        self.acked = true;
        self.ack_by = None;
    }

    /// Ends the dialog; it lingers for `linger` so late requests get a clean 481 and
    /// retransmissions find their transactions.
    fn terminate(&mut self, now: Time, linger: Duration) {
        self.state = DialogState::Terminated;
        self.slots = None;
        self.ack_by = None;
        self.hangup_at = None;
        self.remove_at = Some(now + linger);
    }

    pub(crate) fn next_wake(&self) -> Option<Time> {
        [self.ack_by, self.hangup_at, self.remove_at]
            .into_iter()
            .flatten()
            .min()
    }

    pub(crate) fn on_timer(&mut self, now: Time) -> DialogFired {
        if self.remove_at.is_some_and(|t| t <= now) {
            self.remove_at = None;
            return DialogFired::Remove;
        }
        if self.ack_by.is_some_and(|t| t <= now) {
            self.ack_by = None;
            return DialogFired::NoAck;
        }
        if self.hangup_at.is_some_and(|t| t <= now) {
            self.hangup_at = None;
            return DialogFired::MaxDuration;
        }
        DialogFired::Nothing
    }
}

/// The dialog table: bounded, indexed by a keyed digest of Call-ID and both tags
/// (order-independent, so either side's requests find it), verified on lookup.
#[derive(Debug)]
pub(crate) struct DialogTable {
    slab: Slab<Dialog>,
    index: HashMap<u64, Key>,
    hasher: SeededState,
    confirmed: usize,
}

impl DialogTable {
    pub(crate) fn new(capacity: usize, seed: u64) -> Self {
        DialogTable {
            slab: Slab::with_capacity(capacity),
            index: HashMap::new(),
            hasher: SeededState::new(seed ^ 0x6469_616c),
            confirmed: 0,
        }
    }

    fn digest(&self, call_id: &[u8], a: &[u8], b: &[u8]) -> u64 {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let mut h = self.hasher.build_hasher();
        h.write(call_id);
        h.write_u8(0);
        h.write(lo);
        h.write_u8(0);
        h.write(hi);
        h.finish()
    }

    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    /// Confirmed dialogs: answered calls in progress.
    pub(crate) fn confirmed(&self) -> usize {
        self.confirmed
    }

    /// Confirms dialog `key` (see [`Dialog::confirm`]).
    pub(crate) fn confirm(
        &mut self,
        key: Key,
        now: Time,
        ack_wait: Duration,
        max_duration: Option<Duration>,
    ) {
        if let Some(d) = self.slab.get_mut(key) {
            if d.state != DialogState::Confirmed {
                self.confirmed += 1;
            }
            d.confirm(now, ack_wait, max_duration);
        }
    }

    /// Terminates dialog `key` (see [`Dialog::terminate`]).
    pub(crate) fn terminate(&mut self, key: Key, now: Time, linger: Duration) {
        if let Some(d) = self.slab.get_mut(key) {
            if d.state == DialogState::Confirmed {
                self.confirmed -= 1;
            }
            d.terminate(now, linger);
        }
    }

    /// Creates an early or confirmed dialog. `None` when the table is full or the
    /// dialog already exists.
    pub(crate) fn insert(
        &mut self,
        call: u64,
        call_id: &[u8],
        caller: SideInit<'_>,
        callee: SideInit<'_>,
        now: Time,
    ) -> Option<Key> {
        let index = self.digest(call_id, caller.tag, callee.tag);
        if self.index.contains_key(&index) || self.slab.is_full() {
            return None;
        }
        let parts = [
            call_id,
            caller.tag,
            caller.contact,
            caller.name_addr,
            callee.tag,
            callee.contact,
            callee.name_addr,
        ];
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total > u16::MAX as usize {
            return None;
        }
        let mut text = Vec::with_capacity(total);
        let mut spans = [TextSpan::default(); 7];
        for (span, part) in spans.iter_mut().zip(parts) {
            *span = TextSpan {
                start: text.len() as u16,
                len: part.len() as u16,
            };
            text.extend_from_slice(part);
        }
        let side = |s: &SideInit<'_>, tag, contact, name_addr| Side {
            addr: s.addr,
            local: s.local,
            transport: s.transport,
            cseq: s.cseq,
            tag,
            contact,
            name_addr,
        };
        let dialog = Dialog {
            call,
            state: DialogState::Early,
            caller: side(&caller, spans[1], spans[2], spans[3]),
            callee: side(&callee, spans[4], spans[5], spans[6]),
            started: now,
            answered: None,
            acked: false,
            ack_by: None,
            hangup_at: None,
            remove_at: None,
            scheduled: None,
            slots: None,
            call_id: spans[0],
            text: text.into_boxed_slice(),
            index,
        };
        let key = self.slab.insert(dialog).ok()?;
        self.index.insert(index, key);
        Some(key)
    }

    /// The dialog of a request or response with these identifiers (either order).
    pub(crate) fn find(&self, call_id: &[u8], tag_a: &[u8], tag_b: &[u8]) -> Option<Key> {
        let key = *self.index.get(&self.digest(call_id, tag_a, tag_b))?;
        let d = self.slab.get(key)?;
        let (x, y) = (d.tag(&d.caller), d.tag(&d.callee));
        let same =
            d.call_id() == call_id && ((x == tag_a && y == tag_b) || (x == tag_b && y == tag_a));
        same.then_some(key)
    }

    pub(crate) fn get(&self, key: Key) -> Option<&Dialog> {
        self.slab.get(key)
    }

    pub(crate) fn get_mut(&mut self, key: Key) -> Option<&mut Dialog> {
        self.slab.get_mut(key)
    }

    pub(crate) fn remove(&mut self, key: Key) -> Option<Dialog> {
        let d = self.slab.remove(key)?;
        if d.state == DialogState::Confirmed {
            self.confirmed -= 1;
        }
        if self.index.get(&d.index) == Some(&key) {
            self.index.remove(&d.index);
        }
        Some(d)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (Key, &Dialog)> {
        self.slab.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side<'a>(tag: &'a [u8], port: u16) -> SideInit<'a> {
        SideInit {
            addr: SocketAddr::from(([192, 0, 2, 1], port)),
            local: SocketAddr::from(([192, 0, 2, 10], 5060)),
            transport: Transport::Udp,
            tag,
            contact: b"<sip:x@192.0.2.1>",
            name_addr: b"<sip:x@example>;tag=t",
            cseq: 1,
        }
    }

    #[test]
    fn found_from_either_side_and_only_with_the_exact_identifiers() {
        let mut t = DialogTable::new(4, 7);
        let k = t
            .insert(
                1,
                b"cid",
                side(b"caller", 1),
                side(b"callee", 2),
                Time::ZERO,
            )
            .unwrap();
        assert_eq!(t.find(b"cid", b"caller", b"callee"), Some(k));
        assert_eq!(t.find(b"cid", b"callee", b"caller"), Some(k));
        assert_eq!(t.find(b"cid", b"caller", b"other"), None);
        assert_eq!(t.find(b"cid2", b"caller", b"callee"), None);
        let d = t.get(k).unwrap();
        assert!(d.is_caller_tag(b"caller") && !d.is_caller_tag(b"callee"));
        assert_eq!(d.call_id(), b"cid");
        assert!(
            t.insert(
                2,
                b"cid",
                side(b"caller", 1),
                side(b"callee", 2),
                Time::ZERO
            )
            .is_none()
        );
        t.remove(k);
        assert_eq!(t.find(b"cid", b"caller", b"callee"), None);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn every_state_has_a_deadline() {
        let mut t = DialogTable::new(4, 7);
        let k = t
            .insert(1, b"cid", side(b"a", 1), side(b"b", 2), Time::ZERO)
            .unwrap();
        let s = Duration::from_secs(1);
        t.confirm(k, Time::ZERO, 32 * s, Some(3600 * s));
        assert_eq!(t.confirmed(), 1);
        let d = t.get_mut(k).unwrap();
        assert_eq!(d.next_wake(), Some(Time::ZERO + 32 * s));
        assert_eq!(d.on_timer(Time::ZERO + 32 * s), DialogFired::NoAck);
        d.on_ack();
        assert_eq!(d.next_wake(), Some(Time::ZERO + 3600 * s));
        assert_eq!(d.on_timer(Time::ZERO + 3600 * s), DialogFired::MaxDuration);
        t.terminate(k, Time::ZERO + 3600 * s, 32 * s);
        assert_eq!(t.confirmed(), 0);
        let d = t.get_mut(k).unwrap();
        assert_eq!(d.on_timer(Time::ZERO + 3632 * s), DialogFired::Remove);
    }
}
