//! The transaction layer: RFC 3261 §17 server and client transactions with RFC 6026's
//! Accepted states and RFC 4320's non-INVITE rules, and the tables that match messages
//! to them (§17.1.3, §17.2.3).
//!
//! Owns: state machines, timers A–M, the cached bytes retransmissions are answered
//! from, and matching. Never touches routing, admission or dialogs; what a transaction
//! belongs to is an opaque owner value set by the engine.
//!
//! Matching of requests requires the RFC 3261 magic cookie (`z9hG4bK`) in the top Via
//! branch. Requests without it (RFC 2543 peers) are answered `400` rather than matched
//! by the RFC 2543 rules: no carrier we target still sends them, and the fallback rules
//! need the full message on the retransmission path, which must stay cheap.

mod client;
mod server;
mod table;
mod timers;

pub use client::ClientState;
pub use server::ServerState;
pub use timers::Timers;

pub(crate) use client::{ClientFired, ClientOutcome, ClientTx};
pub(crate) use server::{RespondError, ServerEnd, ServerFired, ServerTx};
pub(crate) use table::{Class, ClientEntry, Table};
