//! URIs parsed into a typed model for routing decisions. `sip:`/`sips:` go through rsip;
//! `tel:` (RFC 3966), which rsip does not model, is handled here.

use std::net::{IpAddr, SocketAddr};

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
    /// The user part (sip) or the number (tel), percent-escapes left as written.
    pub user: Option<String>,
    /// The host (sip/sips only); IPv6 without brackets.
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
    /// Parses a URI. Angle brackets around it are accepted and stripped.
    pub fn parse(bytes: &[u8]) -> Result<RoutingUri, UriError> {
        let text = std::str::from_utf8(bytes).map_err(|_| UriError::NotUtf8)?;
        let text = text.trim();
        let text = text
            .strip_prefix('<')
            .and_then(|t| t.strip_suffix('>'))
            .unwrap_or(text);
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
        let uri = rsip::Uri::try_from(text).map_err(|e| UriError::Malformed(e.to_string()))?;
        let host = match uri.host() {
            rsip::Host::Domain(d) => d.to_string(),
            rsip::Host::IpAddr(ip) => ip.to_string(),
        };
        let mut out = RoutingUri {
            scheme,
            user: uri.user().map(str::to_owned),
            host: Some(host),
            port: uri.port().map(|p| *p.value()),
            transport: None,
            loose_route: false,
            params: Vec::new(),
        };
        for p in &uri.params {
            match p {
                rsip::Param::Transport(t) => {
                    out.transport = Some(t.to_string().to_ascii_lowercase())
                }
                rsip::Param::Lr => out.loose_route = true,
                other => {
                    let s = other.to_string();
                    let s = s.trim_start_matches(';');
                    let (k, v) = match s.split_once('=') {
                        Some((k, v)) => (k, Some(v.to_owned())),
                        None => (s, None),
                    };
                    out.params.push((k.to_ascii_lowercase(), v));
                }
            }
        }
        Ok(out)
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
