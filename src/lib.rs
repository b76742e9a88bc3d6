//! # ringfence
//!
//! An embeddable SIP call-routing core that keeps telecom servers connecting calls when
//! load turns hostile: carriers retrying unanswered calls many times over, deploys
//! taking capacity out, error paths multiplying messages.
//!
//! The crate is sans-IO: it never opens a socket, never reads a clock and never spawns
//! a thread. The host owns I/O and time and drives the engine with three verbs: feed
//! bytes in, advance time, drain what to send.
//!
//! The [`wire`] layer is the foundation: a zero-copy scanner ([`wire::scan`]) that
//! extracts every key the upper layers need from a datagram without allocating, byte
//! splicing edits for forwarding ([`wire::Splice`]) and local responses copied from the
//! request's own bytes ([`wire::write_response`]).
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

pub mod wire;
