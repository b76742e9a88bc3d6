//! Trunk classification: which carrier interconnect a datagram came from, by source
//! address (IP, CIDR, optional port).

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// An address block with an optional port: `203.0.113.0/24`, `198.51.100.7`,
/// `198.51.100.7:5060`, `2001:db8::/32`, `[2001:db8::1]:5060`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source {
    network: IpAddr,
    prefix: u8,
    port: Option<u16>,
}

/// Why a source did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad source {0:?}: expected IP, IP/prefix, IP:port or [IPv6]:port")]
pub struct SourceError(pub String);

impl FromStr for Source {
    type Err = SourceError;

    fn from_str(s: &str) -> Result<Source, SourceError> {
        let err = || SourceError(s.to_owned());
        if let Ok(sa) = s.parse::<SocketAddr>() {
            let bits = if sa.is_ipv4() { 32 } else { 128 };
            return Ok(Source {
                network: sa.ip(),
                prefix: bits,
                port: Some(sa.port()),
            });
        }
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p.parse::<u8>().map_err(|_| err())?)),
            None => (s, None),
        };
        let ip: IpAddr = ip.parse().map_err(|_| err())?;
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(bits);
        if prefix > bits {
            return Err(err());
        }
        Ok(Source {
            network: mask(ip, prefix),
            prefix,
            port: None,
        })
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.port, self.network) {
            (Some(p), IpAddr::V6(ip)) => write!(f, "[{ip}]:{p}"),
            (Some(p), ip) => write!(f, "{ip}:{p}"),
            (None, ip) => write!(f, "{ip}/{}", self.prefix),
        }
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            IpAddr::from((u32::from(v4) & m).to_be_bytes())
        }
        IpAddr::V6(v6) => {
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            IpAddr::from((u128::from(v6) & m).to_be_bytes())
        }
    }
}

impl Source {
    /// Whether `addr` falls in this source.
    pub fn contains(&self, addr: SocketAddr) -> bool {
        // An IPv4-mapped IPv6 source address matches IPv4 blocks.
        let ip = match addr.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == self.network.is_ipv4()
            && mask(ip, self.prefix) == self.network
            && self.port.is_none_or(|p| p == addr.port())
    }

    /// More specific sources win: longer prefix, then a port.
    fn specificity(&self) -> (u8, bool) {
        (self.prefix, self.port.is_some())
    }
}

/// Index of a trunk in the configuration.
pub type TrunkId = usize;

/// Classifies source addresses into trunks: the most specific matching source wins.
#[derive(Clone, Debug, Default)]
pub(crate) struct Classifier {
    /// (source, trunk), most specific first.
    sources: Vec<(Source, TrunkId)>,
    fallback: Option<TrunkId>,
}

impl Classifier {
    pub(crate) fn new(trunks: &[(TrunkId, &[Source])], fallback: Option<TrunkId>) -> Self {
        let mut sources: Vec<(Source, TrunkId)> = trunks
            .iter()
            .flat_map(|(id, srcs)| srcs.iter().map(move |s| (*s, *id)))
            .collect();
        sources.sort_by_key(|(s, _)| std::cmp::Reverse(s.specificity()));
        Classifier { sources, fallback }
    }

    /// The trunk `remote` belongs to; `None` if unknown and there is no default trunk.
    pub(crate) fn classify(&self, remote: SocketAddr) -> Option<TrunkId> {
        self.sources
            .iter()
            .find(|(s, _)| s.contains(remote))
            .map(|(_, id)| *id)
            .or(self.fallback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sources_parse_and_match() {
        let block: Source = "203.0.113.0/24".parse().unwrap();
        assert!(block.contains(sa("203.0.113.77:5060")));
        assert!(!block.contains(sa("203.0.114.1:5060")));
        let host: Source = "198.51.100.7:5061".parse().unwrap();
        assert!(host.contains(sa("198.51.100.7:5061")));
        assert!(!host.contains(sa("198.51.100.7:5060")));
        let v6: Source = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(sa("[2001:db8:1::5]:5060")));
        assert!(!v6.contains(sa("203.0.113.1:5060")));
        assert!(block.contains(sa("[::ffff:203.0.113.9]:5060")), "v4-mapped");
        assert_eq!(
            "10.1.2.3/8".parse::<Source>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        for bad in ["10.0.0.0/33", "nope", "10.0.0.1/x", ""] {
            assert!(bad.parse::<Source>().is_err(), "{bad}");
        }
    }

    #[test]
    fn most_specific_source_wins_and_unknown_falls_back() {
        let wide: [Source; 1] = ["203.0.113.0/24".parse().unwrap()];
        let narrow: [Source; 1] = ["203.0.113.7".parse().unwrap()];
        let c = Classifier::new(&[(0, &wide), (1, &narrow)], None);
        assert_eq!(c.classify(sa("203.0.113.7:5060")), Some(1));
        assert_eq!(c.classify(sa("203.0.113.8:5060")), Some(0));
        assert_eq!(c.classify(sa("192.0.2.1:5060")), None);
        let c = Classifier::new(&[(0, &wide)], Some(2));
        assert_eq!(c.classify(sa("192.0.2.1:5060")), Some(2));
    }
}
