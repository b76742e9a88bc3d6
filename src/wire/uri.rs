//! URIs parsed into a typed model for routing decisions: `sip:`/`sips:` (RFC 3261 §19.1,
//! with IPv6 references as RFC 5118 exercises them) and `tel:` (RFC 3966).
//!
//! The parser is our own rather than rsip's: rsip 0.4 rejects every IPv6 reference
//! (`sip:[2001:db8::10]`), splits a user part that contains `;` (`sip:user;par=x@host`,
//! RFC 4475 §3.1.1.9) at the wrong place and rejects URIs that carry `?headers`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// URI scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:` (RFC 3966)
    Tel,
}

/// A URI parsed for routing: who (user or number), where (host, port), how (transport).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingUri {
    /// Scheme.
    pub scheme: Scheme,
    /// The user part (sip, everything before `:password` or `@`, user parameters included)
    /// or the number (tel), percent-escapes left as written.
    pub user: Option<String>,
    /// The host (sip/sips only) as written; an IPv6 reference is given without brackets in
    /// its canonical text form (so `[2001:db8:::192.0.2.1]`, the RFC 3261 ABNF bug RFC 5118
    /// §4.10 asks receivers to tolerate, becomes `2001:db8::c000:201`).
    pub host: Option<String>,
    /// The port, if written.
    pub port: Option<u16>,
    /// The `transport` URI parameter, lower-cased.
    pub transport: Option<String>,
    /// Whether the URI carries `lr` (a loose router, RFC 3261 §16.12).
    pub loose_route: bool,
    /// Other parameters, names lower-cased (for `tel:`, `phone-context`, `isub`, ...).
    pub params: Vec<(String, Option<String>)>,
}

/// Why a URI could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// The URI is not UTF-8.
    #[error("URI is not UTF-8")]
    NotUtf8,
    /// The scheme is not `sip`, `sips` or `tel`.
    #[error("unsupported URI scheme (expected sip:, sips: or tel:)")]
    UnsupportedScheme,
    /// The URI is malformed; the text says how.
    #[error("malformed URI: {0}")]
    Malformed(String),
}

impl RoutingUri {
    /// Parses a URI. Surrounding whitespace and angle brackets around it are accepted and
    /// stripped; whitespace or control bytes inside it are [`UriError::Malformed`]. URI
    /// headers (`?name=value`) are accepted and ignored: nothing routes on them.
    pub fn parse(bytes: &[u8]) -> Result<RoutingUri, UriError> {
        let text = std::str::from_utf8(bytes).map_err(|_| UriError::NotUtf8)?;
        let text = text.trim();
        let text = text
            .strip_prefix('<')
            .and_then(|t| t.strip_suffix('>'))
            .unwrap_or(text)
            .trim();
        if text.bytes().any(|c| c <= b' ' || c == 0x7f) {
            return Err(UriError::Malformed(
                "whitespace or control byte in URI".into(),
            ));
        }
        let colon = text.find(':').ok_or(UriError::UnsupportedScheme)?;
        let scheme = &text[..colon];
        if scheme.eq_ignore_ascii_case("tel") {
            return parse_tel(&text[colon + 1..]);
        }
        let scheme = if scheme.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else {
            return Err(UriError::UnsupportedScheme);
        };
        parse_sip(scheme, &text[colon + 1..])
    }

    /// The socket address to send to, when the host is an IP literal (the engine never
    /// resolves names: it is sans-IO). The port defaults to 5060 (5061 for `sips:`).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.host.as_deref()?.parse().ok()?;
        let default = if self.scheme == Scheme::Sips {
            5061
        } else {
            5060
        };
        Some(SocketAddr::new(ip, self.port.unwrap_or(default)))
    }
}

fn parse_tel(rest: &str) -> Result<RoutingUri, UriError> {
    let mut parts = rest.split(';');
    let number = parts.next().unwrap_or_default();
    let valid = |c: char| c.is_ascii_hexdigit() || "+-.()*#".contains(c);
    if number.is_empty() || !number.chars().all(valid) {
        return Err(UriError::Malformed(format!("bad tel number {number:?}")));
    }
    let mut params = Vec::new();
    for p in parts {
        if p.is_empty() {
            return Err(UriError::Malformed("empty tel parameter".into()));
        }
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k, Some(v.to_owned())),
            None => (p, None),
        };
        params.push((k.to_ascii_lowercase(), v));
    }
    Ok(RoutingUri {
        scheme: Scheme::Tel,
        user: Some(number.to_owned()),
        host: None,
        port: None,
        transport: None,
        loose_route: false,
        params,
    })
}

fn malformed(what: &str) -> UriError {
    UriError::Malformed(what.to_owned())
}

/// `[userinfo "@"] hostport *(";" param) ["?" headers]`, after the scheme's colon.
fn parse_sip(scheme: Scheme, rest: &str) -> Result<RoutingUri, UriError> {
    // `@` may appear nowhere but at the end of the userinfo (RFC 3261 §25.1), while the
    // user part may hold `;`, `?` and `/`: the first `@` is the only reliable split.
    let (user, after_user) = match rest.find('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            if user.is_empty() {
                return Err(malformed("empty user part before '@'"));
            }
            (Some(user.to_owned()), &rest[at + 1..])
        }
        None => (None, rest),
    };
    let without_headers = after_user.split('?').next().unwrap_or_default();
    let mut parts = without_headers.split(';');
    let (host, port) = parse_hostport(parts.next().unwrap_or_default())?;
    let mut out = RoutingUri {
        scheme,
        user,
        host: Some(host),
        port,
        transport: None,
        loose_route: false,
        params: Vec::new(),
    };
    for p in parts {
        let (name, value) = match p.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (p, None),
        };
        if name.is_empty() {
            return Err(malformed("empty URI parameter"));
        }
        if name.eq_ignore_ascii_case("transport") {
            let t = value.filter(|v| !v.is_empty());
            let t = t.ok_or_else(|| malformed("transport parameter without a value"))?;
            out.transport = Some(t.to_ascii_lowercase());
        } else if name.eq_ignore_ascii_case("lr") {
            out.loose_route = true;
        } else {
            out.params
                .push((name.to_ascii_lowercase(), value.map(str::to_owned)));
        }
    }
    Ok(out)
}

/// `host [":" port]`, the host a name, an IPv4 address or a bracketed IPv6 reference.
fn parse_hostport(s: &str) -> Result<(String, Option<u16>), UriError> {
    let (host, after) = match s.strip_prefix('[') {
        Some(inner) => {
            let close = inner
                .find(']')
                .ok_or_else(|| malformed("unterminated IPv6 reference"))?;
            (
                parse_ipv6(&inner[..close])?.to_string(),
                &inner[close + 1..],
            )
        }
        None => {
            let end = s.find(':').unwrap_or(s.len());
            let host = &s[..end];
            let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
            if host.is_empty() || !host.chars().all(valid) {
                return Err(UriError::Malformed(format!("bad host {host:?}")));
            }
            (host.to_owned(), &s[end..])
        }
    };
    if after.is_empty() {
        return Ok((host, None));
    }
    let digits = after
        .strip_prefix(':')
        .ok_or_else(|| malformed("junk after host"))?;
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(UriError::Malformed(format!("bad port {digits:?}")));
    }
    let port = digits
        .parse::<u16>()
        .map_err(|_| UriError::Malformed(format!("port {digits} out of range")))?;
    Ok((host, Some(port)))
}

/// An IPv6 address from inside `[...]`. The `x:::a.b.c.d` form that RFC 3261's ABNF
/// wrongly allows is tolerated as `x::a.b.c.d` (RFC 5118 §4.10).
fn parse_ipv6(s: &str) -> Result<Ipv6Addr, UriError> {
    if let Ok(ip) = s.parse() {
        return Ok(ip);
    }
    if s.contains(":::") {
        if let Ok(ip) = s.replacen(":::", "::", 1).parse() {
            return Ok(ip);
        }
    }
    Err(UriError::Malformed(format!("bad IPv6 reference [{s}]")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> RoutingUri {
        RoutingUri::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn malformed(s: &str) -> bool {
        matches!(RoutingUri::parse(s.as_bytes()), Err(UriError::Malformed(_)))
    }

    #[test]
    fn sip_uris_give_user_host_port_transport_and_params() {
        let u =
            parse("sip:+15551230000;npdi@gw.example.net:5080;transport=TCP;lr;user=phone;X-Flag");
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user.as_deref(), Some("+15551230000;npdi"));
        assert_eq!(u.host.as_deref(), Some("gw.example.net"));
        assert_eq!(u.port, Some(5080));
        assert_eq!(u.transport.as_deref(), Some("tcp"));
        assert!(u.loose_route);
        assert_eq!(
            u.params,
            [
                ("user".to_owned(), Some("phone".to_owned())),
                ("x-flag".to_owned(), None)
            ]
        );
        assert_eq!(u.socket_addr(), None, "names are never resolved");
    }

    #[test]
    fn sips_and_ip_literals_give_a_socket_address_with_the_scheme_default_port() {
        let u = parse("sips:alice@192.0.2.4");
        assert_eq!(u.scheme, Scheme::Sips);
        assert_eq!(u.socket_addr(), Some("192.0.2.4:5061".parse().unwrap()));
        assert_eq!(
            parse("sip:192.0.2.4").socket_addr(),
            Some("192.0.2.4:5060".parse().unwrap())
        );
        assert_eq!(
            parse("SIP:192.0.2.4:7000").socket_addr(),
            Some("192.0.2.4:7000".parse().unwrap())
        );
    }

    #[test]
    fn ipv6_references_are_unbracketed_and_routable() {
        let u = parse("sip:[2001:db8::10]:5070;transport=udp");
        assert_eq!(u.host.as_deref(), Some("2001:db8::10"));
        assert_eq!(u.port, Some(5070));
        assert_eq!(
            u.socket_addr(),
            Some("[2001:db8::10]:5070".parse().unwrap())
        );
        let u = parse("sip:caller@[::ffff:192.0.2.2]");
        assert_eq!(u.host.as_deref(), Some("::ffff:192.0.2.2"));
        assert_eq!(
            u.socket_addr(),
            Some("[::ffff:192.0.2.2]:5060".parse().unwrap())
        );
        // RFC 5118 §4.3: a port inside the brackets is part of the address.
        assert_eq!(parse("sip:[2001:db8::10:5070]").port, None);
        // RFC 5118 §4.10: the three-colon form is tolerated as the two-colon one.
        assert_eq!(
            parse("sip:user@[2001:db8:::192.0.2.1]").socket_addr(),
            parse("sip:user@[2001:db8::192.0.2.1]").socket_addr()
        );
        // RFC 5118 §4.2: without brackets the address is no host.
        assert!(malformed("sip:2001:db8::10"));
        assert!(malformed("sip:[2001:db8::10"));
        assert!(malformed("sip:[2001:db8::zz]"));
        assert!(malformed("sip:[2001:db8::1]x"));
        assert!(malformed("sip:[fe80::1%25eth0]"));
    }

    #[test]
    fn the_user_part_ends_at_the_at_sign_whatever_it_holds() {
        // RFC 4475 §3.1.1.9 and §3.1.1.2.
        assert_eq!(
            parse("sip:user;par=u%40example.net@example.com")
                .user
                .as_deref(),
            Some("user;par=u%40example.net")
        );
        let u = parse(
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        );
        assert_eq!(
            u.user.as_deref(),
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(u.host.as_deref(), Some("example.com"));
        assert_eq!(
            parse("sip:sips%3Auser%40example.com@example.net")
                .user
                .as_deref(),
            Some("sips%3Auser%40example.com")
        );
        assert!(malformed("sip:@example.com"));
        assert!(malformed("sip:user:pw@"));
    }

    #[test]
    fn uri_headers_are_ignored_and_never_taken_for_parameters() {
        let u = parse("sip:user@example.com?Route=%3Csip:example.com%3E");
        assert_eq!(u.host.as_deref(), Some("example.com"));
        assert!(u.params.is_empty());
        let u = parse("sip:example.com;lr?x=y;z");
        assert!(u.loose_route);
        assert!(u.params.is_empty());
    }

    #[test]
    fn brackets_and_surrounding_whitespace_are_stripped_inner_whitespace_is_not() {
        assert_eq!(
            parse("  < sip:a@b.example >  ").host.as_deref(),
            Some("b.example")
        );
        assert!(malformed("sip:a@b .example"));
        assert!(malformed("sip:a\t@b"));
        assert!(malformed("sip:a\0@b"));
    }

    #[test]
    fn bad_hosts_ports_and_parameters_are_malformed() {
        for bad in [
            "sip:",
            "sip:a@",
            "sip:ho st",
            "sip:h/x",
            "sip:h:",
            "sip:h:+5",
            "sip:h:65536",
            "sip:h:5x",
            "sip:h;;x",
            "sip:h;=v",
            "sip:h;transport",
            "sip:h;transport=",
        ] {
            assert!(malformed(bad), "{bad}");
        }
    }

    #[test]
    fn tel_uris_give_the_number_and_lower_cased_parameter_names() {
        let u = parse("<tel:+1-201-555-0123;Phone-Context=example.com;isub=1411>");
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(u.user.as_deref(), Some("+1-201-555-0123"));
        assert_eq!((u.host, u.port, u.transport), (None, None, None));
        assert_eq!(
            u.params,
            [
                ("phone-context".to_owned(), Some("example.com".to_owned())),
                ("isub".to_owned(), Some("1411".to_owned())),
            ]
        );
        assert_eq!(parse("TEL:*67#").user.as_deref(), Some("*67#"));
        assert_eq!(parse("tel:911").socket_addr(), None);
        assert!(malformed("tel:"));
        assert!(malformed("tel:+1 555"));
        assert!(malformed("tel:+1555x"));
        assert!(malformed("tel:+1555;;a"));
    }

    #[test]
    fn other_schemes_and_non_utf8_are_named_as_such() {
        for s in [
            "nobodyKnowsThisScheme:totallyopaquecontent",
            "soap.beep://192.0.2.103:3002",
            "isbn:2983792873",
            "no-colon",
        ] {
            assert_eq!(
                RoutingUri::parse(s.as_bytes()),
                Err(UriError::UnsupportedScheme),
                "{s}"
            );
        }
        assert_eq!(RoutingUri::parse(b"sip:\xff@h"), Err(UriError::NotUtf8));
    }
}
