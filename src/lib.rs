//! # ringfence
//!
//! An embeddable SIP call-routing core that keeps telecom servers connecting calls when
//! load turns hostile: carriers retrying unanswered calls many times over, deploys
//! taking capacity out, error paths multiplying messages.
//!
//! The crate is sans-IO: it never opens a socket, never reads a clock and never spawns
//! a thread. The host owns I/O and time and drives an [`Engine`] with three verbs:
//! feed bytes in, advance time, drain what to send.
//!
//! ```no_run
//! use std::net::UdpSocket;
//! use std::time::Instant;
//! use ringfence::{Config, Engine};
//!
//! let socket = UdpSocket::bind("127.0.0.1:5060")?;
//! let local = socket.local_addr()?;
//! let mut engine = Engine::new(Config::default(), Instant::now())?;
//! let mut buf = vec![0u8; 65535];
//! loop {
//!     // Wait for a datagram or the engine's next deadline, whichever comes first.
//!     let timeout = engine.poll_timeout().map(|t| t.saturating_duration_since(Instant::now()));
//!     socket.set_read_timeout(timeout.map(|d| d.max(std::time::Duration::from_millis(1))))?;
//!     match socket.recv_from(&mut buf) {
//!         Ok((n, remote)) => engine.handle_datagram(Instant::now(), remote, local, &buf[..n]),
//!         Err(_) => engine.handle_timeout(Instant::now()),
//!     }
//!     while let Some(t) = engine.poll_transmit() {
//!         socket.send_to(t.payload, t.destination)?;
//!     }
//!     while let Some(event) = engine.poll_event() {
//!         println!("{event:?}");
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The [`wire`] layer underneath is usable on its own: a zero-copy scanner
//! ([`wire::scan`]) that extracts every key the upper layers need without allocating,
//! byte-splicing edits for forwarding ([`wire::Splice`]) and local responses copied from
//! the request's own bytes ([`wire::write_response`]).
//!
//! ```
//! use ringfence::wire::{self, Limits, Method};
//!
//! let invite = b"INVITE sip:+15551230000@example.net SIP/2.0\r\n\
//!     v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n\
//!     Max-Forwards: 70\r\n\
//!     f: <sip:+15559870000@carrier.example>;tag=1928301774\r\n\
//!     t: <sip:+15551230000@example.net>\r\n\
//!     i: a84b4c76e66710@pc33.carrier.example\r\n\
//!     CSeq: 314159 INVITE\r\n\
//!     l: 0\r\n\r\n";
//! let msg = wire::scan(invite, &Limits::default()).unwrap();
//! assert_eq!(msg.method(), Some(Method::Invite));
//! assert_eq!(msg.branch(), Some(&b"z9hG4bK776asdhds"[..]));
//! assert_eq!(msg.request_user(), Some(&b"+15551230000"[..]));
//! assert_eq!(msg.calling(), Some(&b"+15559870000"[..]));
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod config;
mod dialog;
pub mod drill;
mod engine;
pub mod ffi;
pub mod guard;
mod hash;
pub mod health;
mod output;
mod proxy;
mod rng;
pub mod route;
mod slab;
mod stats;
mod status;
mod time;
mod timer;
pub mod transaction;
pub mod wire;

pub use config::{AskHost, Config, ConfigError, Limits, ProxyConfig, RoutingConfig};
pub use engine::{CallError, CallHandle, EndReason, Engine, Event, RouteDecision, TableSizes};
pub use guard::NodeLedger;
pub use output::Transmit;
pub use route::{NumberPlan, RouteEntry, RoutingTable, Target};
pub use stats::{StateCounts, Stats, TransactionCounts, TrunkStats};
pub use transaction::Timers;

/// Hooks for the crate's own benchmarks and tests; not part of the API and may change.
#[doc(hidden)]
pub mod bench_hooks {
    use crate::guard::dedup::{Dedup, Previous};
    use crate::time::Time;
    use std::time::Duration;

    /// A re-attempt table filled with `n` entries keyed `0..n`.
    #[derive(Debug)]
    pub struct DedupTable {
        table: Dedup,
        keys: Vec<u64>,
    }

    /// The `i`-th caller's number, written into a stack buffer as a datagram would
    /// hold it (in cache), not fetched from a heap string.
    fn caller(i: usize, buf: &mut [u8; 11]) -> &str {
        buf[..4].copy_from_slice(b"1415");
        let mut n = i;
        for c in buf[4..].iter_mut().rev() {
            *c = b'0' + (n % 10) as u8;
            n /= 10;
        }
        std::str::from_utf8(buf).expect("digits")
    }

    impl DedupTable {
        /// `n` distinct calls remembered (as the engine would key them).
        pub fn filled(n: usize) -> Self {
            let mut table = Dedup::new(n, 7);
            let mut buf = [0u8; 11];
            let keys: Vec<u64> = (0..n)
                .map(|i| {
                    table
                        .key(0, Some(caller(i, &mut buf)), Some("18005550199"))
                        .expect("non-anonymous")
                })
                .collect();
            for &k in &keys {
                table.set(k, Previous::Failed, Time::ZERO, Duration::from_secs(3600));
            }
            DedupTable { table, keys }
        }

        /// Looks up the `i`-th call's key as the engine does for a new INVITE: key
        /// digest of the numbers, then the table.
        pub fn lookup(&self, i: usize) -> bool {
            let mut buf = [0u8; 11];
            let caller = caller(i % self.keys.len(), &mut buf);
            let key = self.table.key(0, Some(caller), Some("18005550199"));
            key.and_then(|k| self.table.get(k, Time::ZERO)).is_some()
        }

        /// Looks up a precomputed key (the table cost alone).
        pub fn lookup_key(&self, i: usize) -> bool {
            self.table
                .get(self.keys[i % self.keys.len()], Time::ZERO)
                .is_some()
        }

        /// Entries held.
        pub fn len(&self) -> usize {
            self.table.len()
        }

        /// Whether the table is empty.
        pub fn is_empty(&self) -> bool {
            self.table.len() == 0
        }
    }
}
