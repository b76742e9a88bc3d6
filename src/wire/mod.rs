//! The wire layer: bytes in, zero-copy views out, byte-exact edits back.
//!
//! Owns framing (a UDP datagram is one message; streams split by Content-Length), the
//! scanner that extracts every key the layers above use as spans into the input,
//! header iteration (compact forms, folding, multi-value lines), splicing edits for
//! forwarding, and local responses built from a request's own bytes.
//!
//! It never touches time, addresses, transactions or policy, and it never allocates
//! while scanning: a [`Message`] is a fixed-size value of spans.

mod edit;
mod error;
mod framing;
mod header;
mod keys;
mod method;
mod request;
mod response;
mod scan;
mod span;
mod swar;
mod uri;

pub(crate) use edit::write_decimal;
pub use edit::{EditError, Splice};
pub use error::{ParseError, ParseErrorKind};
pub use framing::{Datagram, StreamFrame, StreamFramer, parse_datagram};
pub use header::{Header, HeaderName, Headers};
pub use keys::{Keys, scan_keys};
pub use method::Method;
pub use request::{write_ack, write_cancel};
pub use response::{Reply, write_response, write_response_to_unparsed};
pub use scan::{CSeq, Limits, MAGIC_COOKIE, Message, NameAddr, Transport, Via, scan};
pub use uri::{RoutingUri, Scheme, UriError};
