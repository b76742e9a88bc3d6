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
pub mod sim;

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
    /// Time advanced to `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// When `handle_timeout` is next needed.
    fn poll_timeout(&mut self) -> Option<Instant>;
    /// The next datagram to send.
    fn poll_transmit(&mut self) -> Option<Outgoing>;
}
