//! What the engine hands back to the host: datagrams to send and events to react to.
//! Datagrams are written into one reusable arena, so queueing a retransmission copies
//! bytes but never allocates once the arena has grown to its working size.

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::wire::Transport;

/// A datagram to send. Borrowed from the engine until the next call that takes
/// `&mut self`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit<'a> {
    /// Where to send it.
    pub destination: SocketAddr,
    /// The local address to send it from (the one the related traffic arrived on).
    pub source: SocketAddr,
    /// The transport to use.
    pub transport: Transport,
    /// The bytes of one SIP message.
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    destination: SocketAddr,
    source: SocketAddr,
    transport: Transport,
    start: usize,
    end: usize,
}

/// The transmit queue and the event queue, both bounded.
#[derive(Debug)]
pub(crate) struct Output<E> {
    queue: VecDeque<Pending>,
    arena: Vec<u8>,
    max_bytes: usize,
    pub(crate) dropped_transmits: u64,
    events: VecDeque<E>,
    max_events: usize,
    pub(crate) dropped_events: u64,
}

impl<E> Output<E> {
    pub(crate) fn new(max_bytes: usize, max_events: usize) -> Self {
        Output {
            queue: VecDeque::new(),
            arena: Vec::new(),
            max_bytes,
            dropped_transmits: 0,
            events: VecDeque::new(),
            max_events,
            dropped_events: 0,
        }
    }

    /// Queues a datagram written by `write` straight into the arena. Returns false (and
    /// counts a drop) when the queue is over its byte bound: the host is not draining.
    pub(crate) fn send_with(
        &mut self,
        destination: SocketAddr,
        source: SocketAddr,
        transport: Transport,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        self.make_room();
        if self.arena.len() >= self.max_bytes {
            self.dropped_transmits += 1;
            return false;
        }
        let start = self.arena.len();
        write(&mut self.arena);
        let end = self.arena.len();
        if end > start {
            self.queue.push_back(Pending {
                destination,
                source,
                transport,
                start,
                end,
            });
        }
        true
    }

    /// Queues a copy of `bytes`.
    pub(crate) fn send(
        &mut self,
        destination: SocketAddr,
        source: SocketAddr,
        transport: Transport,
        bytes: &[u8],
    ) -> bool {
        self.send_with(destination, source, transport, |out| {
            out.extend_from_slice(bytes)
        })
    }

    /// Reclaims arena space already handed to the host.
    fn make_room(&mut self) {
        match self.queue.front() {
            None => self.arena.clear(),
            Some(front) if front.start > self.arena.len() / 2 => {
                let shift = front.start;
                self.arena.drain(..shift);
                for p in &mut self.queue {
                    p.start -= shift;
                    p.end -= shift;
                }
            }
            Some(_) => {}
        }
    }

    pub(crate) fn pop_transmit(&mut self) -> Option<Transmit<'_>> {
        let p = self.queue.pop_front()?;
        Some(Transmit {
            destination: p.destination,
            source: p.source,
            transport: p.transport,
            payload: &self.arena[p.start..p.end],
        })
    }

    pub(crate) fn peek_transmit_len(&self) -> Option<usize> {
        self.queue.front().map(|p| p.end - p.start)
    }

    /// Queues an event; drops (and counts) it when the host is not draining events.
    pub(crate) fn event(&mut self, e: E) {
        if self.events.len() >= self.max_events {
            self.dropped_events += 1;
            return;
        }
        self.events.push_back(e);
    }

    pub(crate) fn pop_event(&mut self) -> Option<E> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn transmits_come_out_in_order_and_the_arena_is_reused() {
        let mut o: Output<()> = Output::new(1 << 16, 4);
        assert!(o.send(addr(1), addr(9), Transport::Udp, b"one"));
        assert!(o.send(addr(2), addr(9), Transport::Udp, b"two"));
        let t = o.pop_transmit().unwrap();
        assert_eq!((t.destination, t.payload), (addr(1), &b"one"[..]));
        assert_eq!(o.pop_transmit().unwrap().payload, b"two");
        assert!(o.pop_transmit().is_none());
        let cap = o.arena.capacity();
        assert!(o.send(addr(3), addr(9), Transport::Udp, b"three"));
        assert_eq!(o.arena.len(), 5, "drained arena restarts at zero");
        assert_eq!(o.arena.capacity(), cap);
    }

    #[test]
    fn byte_bound_drops_and_counts_when_the_host_does_not_drain() {
        let mut o: Output<()> = Output::new(8, 4);
        assert!(o.send(addr(1), addr(9), Transport::Udp, b"12345678"));
        assert!(!o.send(addr(1), addr(9), Transport::Udp, b"x"));
        assert_eq!(o.dropped_transmits, 1);
        assert!(o.peek_transmit_len().is_some());
    }

    #[test]
    fn partially_drained_arena_is_compacted() {
        let mut o: Output<()> = Output::new(64, 4);
        for _ in 0..4 {
            assert!(o.send(addr(1), addr(9), Transport::Udp, b"0123456789"));
        }
        for _ in 0..3 {
            o.pop_transmit().unwrap();
        }
        assert!(o.send(addr(2), addr(9), Transport::Udp, b"abc"));
        assert_eq!(o.pop_transmit().unwrap().payload, b"0123456789");
        assert_eq!(o.pop_transmit().unwrap().payload, b"abc");
        assert!(o.arena.len() <= 13 + 10);
    }

    #[test]
    fn events_are_bounded() {
        let mut o: Output<u8> = Output::new(8, 2);
        o.event(1);
        o.event(2);
        o.event(3);
        assert_eq!(o.dropped_events, 1);
        assert_eq!(o.pop_event(), Some(1));
        assert_eq!(o.pop_event(), Some(2));
        assert_eq!(o.pop_event(), None);
    }
}
