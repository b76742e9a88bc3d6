//! SIP methods: the RFC 3261 set and its common extensions, plus any other token.

use std::fmt;

/// A request method. Methods are case-sensitive (RFC 3261 §7.1); anything that is not a
/// known method but is a valid token is an [`Method::Extension`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method<'a> {
    /// `INVITE`
    Invite,
    /// `ACK`
    Ack,
    /// `BYE`
    Bye,
    /// `CANCEL`
    Cancel,
    /// `OPTIONS`
    Options,
    /// `REGISTER`
    Register,
    /// `PRACK` (RFC 3262)
    Prack,
    /// `UPDATE` (RFC 3311)
    Update,
    /// `INFO` (RFC 6086)
    Info,
    /// `SUBSCRIBE` (RFC 6665)
    Subscribe,
    /// `NOTIFY` (RFC 6665)
    Notify,
    /// `REFER` (RFC 3515)
    Refer,
    /// `MESSAGE` (RFC 3428)
    Message,
    /// `PUBLISH` (RFC 3903)
    Publish,
    /// Any other token.
    Extension(&'a [u8]),
}

impl<'a> Method<'a> {
    /// Classifies a method token (case-sensitive).
    pub fn parse(token: &'a [u8]) -> Method<'a> {
        match token {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"PRACK" => Method::Prack,
            b"UPDATE" => Method::Update,
            b"INFO" => Method::Info,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            other => Method::Extension(other),
        }
    }

    /// The method token as bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Method::Invite => b"INVITE",
            Method::Ack => b"ACK",
            Method::Bye => b"BYE",
            Method::Cancel => b"CANCEL",
            Method::Options => b"OPTIONS",
            Method::Register => b"REGISTER",
            Method::Prack => b"PRACK",
            Method::Update => b"UPDATE",
            Method::Info => b"INFO",
            Method::Subscribe => b"SUBSCRIBE",
            Method::Notify => b"NOTIFY",
            Method::Refer => b"REFER",
            Method::Message => b"MESSAGE",
            Method::Publish => b"PUBLISH",
            Method::Extension(t) => t,
        }
    }
}

impl fmt::Display for Method<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_methods_round_trip_and_are_case_sensitive() {
        for m in [
            Method::Invite,
            Method::Ack,
            Method::Bye,
            Method::Cancel,
            Method::Options,
            Method::Register,
            Method::Prack,
            Method::Update,
            Method::Info,
            Method::Subscribe,
            Method::Notify,
            Method::Refer,
            Method::Message,
            Method::Publish,
        ] {
            assert_eq!(Method::parse(m.as_bytes()), m);
            assert_ne!(Method::parse(&m.as_bytes().to_ascii_lowercase()), m);
        }
        assert_eq!(Method::parse(b"invite"), Method::Extension(b"invite"));
    }

    #[test]
    fn anything_else_is_an_extension_kept_as_written() {
        // RFC 4475 §3.1.1.5: `RE%47IST%45R` is not REGISTER.
        let m = Method::parse(b"RE%47IST%45R");
        assert_eq!(m, Method::Extension(b"RE%47IST%45R"));
        assert_eq!(m.as_bytes(), b"RE%47IST%45R");
        assert_eq!(m.to_string(), "RE%47IST%45R");
        assert_eq!(Method::Invite.to_string(), "INVITE");
    }
}
