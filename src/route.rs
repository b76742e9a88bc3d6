//! Routing: dialled numbers normalised to E.164 digits, a table from numbers (exact or
//! prefix) to ordered targets, and a bounded last-known-good cache the engine falls
//! back to when the host's routing service does not answer.
//!
//! Owns: number normalisation, target order (priority, then weighted), lookups, the
//! cache. Never touches transactions or sockets; never resolves names (targets carry
//! socket addresses).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::rng::Rng;
use crate::wire::RoutingUri;

/// Where a call can be sent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// The Request-URI host part to send with (`sip:host[:port][;params]`). When it has
    /// no user part, the dialled user of the incoming Request-URI is kept.
    pub uri: String,
    /// The socket address the INVITE is sent to.
    pub addr: SocketAddr,
    /// Lower is tried first.
    pub priority: u16,
    /// Among equal priorities, the share of first attempts (0 = only as a last resort).
    pub weight: u16,
}

/// Why a target description was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad target {input:?}: {problem}")]
pub struct TargetError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub problem: String,
}

impl Target {
    /// A target from `host:port`, `sip:host[:port][;params]` or `sip:user@host...`. The
    /// host must be an IP literal: the engine is sans-IO and resolves nothing.
    pub fn parse(s: &str) -> Result<Target, TargetError> {
        let err = |problem: &str| TargetError {
            input: s.to_owned(),
            problem: problem.to_owned(),
        };
        let uri = if s.contains(':') && (s.starts_with("sip:") || s.starts_with("sips:")) {
            s.to_owned()
        } else if let Ok(addr) = s.parse::<SocketAddr>() {
            format!("sip:{addr}")
        } else {
            return Err(err("expected host:port or a sip: URI with an IP host"));
        };
        let parsed = RoutingUri::parse(uri.as_bytes()).map_err(|e| err(&e.to_string()))?;
        let addr = parsed
            .socket_addr()
            .ok_or_else(|| err("host must be an IP address (the engine resolves no names)"))?;
        Ok(Target {
            uri,
            addr,
            priority: 0,
            weight: 1,
        })
    }

    /// Sets priority and weight.
    pub fn with_priority(mut self, priority: u16, weight: u16) -> Target {
        self.priority = priority;
        self.weight = weight;
        self
    }

    /// Whether the URI names a user (then it replaces the dialled user).
    pub(crate) fn has_user(&self) -> bool {
        let rest = self.uri.split_once(':').map_or("", |(_, r)| r);
        rest.contains('@')
    }
}

/// How dialled numbers are normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumberPlan {
    /// Country calling code added to national numbers (`"1"` for NANP, `"44"`...).
    pub country_code: String,
    /// Trunk prefix of national numbers (`"0"` in most of Europe, `"1"` in NANP), removed
    /// before the country code is added.
    pub national_prefix: String,
    /// Prefix that introduces international numbers when `+` is not used (`"00"`,
    /// `"011"`).
    pub international_prefix: String,
    /// Length of a national significant number (`10` in NANP); numbers of this length
    /// get the country code. 0 disables the rule.
    pub national_length: usize,
}

impl Default for NumberPlan {
    /// North American Numbering Plan.
    fn default() -> Self {
        NumberPlan {
            country_code: "1".into(),
            national_prefix: "1".into(),
            international_prefix: "011".into(),
            national_length: 10,
        }
    }
}

/// Normalises a dialled or calling number to E.164 digits without `+`, following
/// `plan`: `%2B` and `+` mark international form, visual separators (`-.() ` and their
/// escapes) are dropped, URI user parameters (`;npdi`, `;rn=`) are ignored. `None` when
/// no digits remain or anything other than digits is left (a name such as
/// `anonymous`).
pub fn normalize(raw: &[u8], plan: &NumberPlan) -> Option<String> {
    let raw = raw.split(|&c| c == b';').next().unwrap_or_default();
    let mut digits = String::with_capacity(raw.len());
    let mut plus = false;
    let mut i = 0;
    while i < raw.len() {
        let c = match raw[i] {
            b'%' if i + 2 < raw.len() => {
                let hex = std::str::from_utf8(&raw[i + 1..i + 3]).ok()?;
                i += 2;
                u8::from_str_radix(hex, 16).ok()?
            }
            c => c,
        };
        i += 1;
        match c {
            b'0'..=b'9' => digits.push(c as char),
            b'+' if digits.is_empty() && !plus => plus = true,
            b'-' | b'.' | b'(' | b')' | b' ' => {}
            _ => return None,
        }
    }
    if digits.is_empty() {
        return None;
    }
    if plus {
        return Some(digits);
    }
    if !plan.international_prefix.is_empty() && digits.starts_with(&plan.international_prefix) {
        let rest = &digits[plan.international_prefix.len()..];
        return (!rest.is_empty()).then(|| rest.to_owned());
    }
    let national = if !plan.national_prefix.is_empty()
        && digits.starts_with(&plan.national_prefix)
        && plan.national_length > 0
        && digits.len() == plan.national_prefix.len() + plan.national_length
    {
        &digits[plan.national_prefix.len()..]
    } else {
        &digits[..]
    };
    if plan.national_length > 0 && national.len() == plan.national_length {
        return Some(format!("{}{}", plan.country_code, national));
    }
    Some(digits)
}

/// One routing table entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteEntry {
    /// A number (normalised on insert) or a prefix ending in `*` (`+1800*`).
    pub number: String,
    /// Targets, tried by priority then weight.
    pub targets: Vec<Target>,
}

/// Dialled number → targets. Immutable once built; replace it whole to reload.
#[derive(Clone, Debug, Default)]
pub struct RoutingTable {
    exact: HashMap<String, Arc<[Target]>>,
    /// Prefixes, longest first.
    prefixes: Vec<(String, Arc<[Target]>)>,
    default: Option<Arc<[Target]>>,
    plan: NumberPlan,
}

/// Why a routing table was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("route {number:?}: {problem}")]
pub struct RouteError {
    /// The entry's number.
    pub number: String,
    /// What is wrong.
    pub problem: String,
}

impl RoutingTable {
    /// Builds a table. Numbers are normalised with `plan`; an entry without targets,
    /// or a number that does not normalise, is an error.
    pub fn new(
        entries: &[RouteEntry],
        default: &[Target],
        plan: NumberPlan,
    ) -> Result<RoutingTable, RouteError> {
        let mut t = RoutingTable {
            plan,
            default: (!default.is_empty()).then(|| Arc::from(default)),
            ..RoutingTable::default()
        };
        for e in entries {
            let err = |problem: &str| RouteError {
                number: e.number.clone(),
                problem: problem.into(),
            };
            if e.targets.is_empty() {
                return Err(err("has no targets"));
            }
            let targets: Arc<[Target]> = Arc::from(&e.targets[..]);
            if let Some(prefix) = e.number.strip_suffix('*') {
                let p = prefix.trim_start_matches('+');
                if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(err("prefix must be digits followed by *"));
                }
                t.prefixes.push((p.to_owned(), targets));
            } else {
                let n = normalize(e.number.as_bytes(), &t.plan)
                    .ok_or_else(|| err("is not a number"))?;
                if t.exact.insert(n, targets).is_some() {
                    return Err(err("appears twice"));
                }
            }
        }
        t.prefixes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(t)
    }

    /// The numbering plan the table normalises with.
    pub fn plan(&self) -> &NumberPlan {
        &self.plan
    }

    /// Number of exact and prefix entries.
    pub fn len(&self) -> usize {
        self.exact.len() + self.prefixes.len()
    }

    /// Whether the table has no entries (a default route may still exist).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Targets for a normalised number: exact entry, else longest prefix.
    pub fn lookup(&self, number: &str) -> Option<Arc<[Target]>> {
        if let Some(t) = self.exact.get(number) {
            return Some(t.clone());
        }
        self.prefixes
            .iter()
            .find(|(p, _)| number.starts_with(p.as_str()))
            .map(|(_, t)| t.clone())
    }

    /// Distinct destinations named anywhere in the table.
    pub(crate) fn target_count(&self) -> usize {
        let mut all: Vec<std::net::SocketAddr> = self
            .exact
            .values()
            .chain(self.prefixes.iter().map(|(_, t)| t))
            .chain(self.default.iter())
            .flat_map(|t| t.iter().map(|t| t.addr))
            .collect();
        all.sort();
        all.dedup();
        all.len()
    }

    /// The default route, for numbers nothing else matches.
    pub fn default_route(&self) -> Option<Arc<[Target]>> {
        self.default.clone()
    }
}

/// Orders targets for sequential attempts: by priority, and within a priority by a
/// weighted random draw (seeded, so it replays).
pub(crate) fn attempt_order(targets: &[Target], rng: &mut Rng) -> Vec<Target> {
    let mut by_priority: Vec<&Target> = targets.iter().collect();
    by_priority.sort_by_key(|t| t.priority);
    let mut out = Vec::with_capacity(targets.len());
    let mut i = 0;
    while i < by_priority.len() {
        let p = by_priority[i].priority;
        let mut group: Vec<&Target> = by_priority[i..]
            .iter()
            .take_while(|t| t.priority == p)
            .copied()
            .collect();
        i += group.len();
        while !group.is_empty() {
            let total: u64 = group.iter().map(|t| t.weight as u64).sum();
            let pick = if total == 0 {
                0
            } else {
                let mut r = rng.below(total);
                group
                    .iter()
                    .position(|t| {
                        if r < t.weight as u64 {
                            true
                        } else {
                            r -= t.weight as u64;
                            false
                        }
                    })
                    .unwrap_or(0)
            };
            out.push(group.remove(pick).clone());
        }
    }
    out
}

/// Bounded map of the last targets that answered for each number, evicting the oldest
/// insertion when full.
#[derive(Debug)]
pub(crate) struct LastKnownGood {
    map: HashMap<String, Arc<[Target]>>,
    order: VecDeque<String>,
    capacity: usize,
}

impl LastKnownGood {
    pub(crate) fn new(capacity: usize) -> Self {
        LastKnownGood {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    pub(crate) fn get(&self, number: &str) -> Option<Arc<[Target]>> {
        self.map.get(number).cloned()
    }

    pub(crate) fn remember(&mut self, number: &str, targets: Arc<[Target]>) {
        if self.capacity == 0 {
            return;
        }
        if self.map.insert(number.to_owned(), targets).is_none() {
            self.order.push_back(number.to_owned());
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_nanp_and_international_forms() {
        let plan = NumberPlan::default();
        let n = |s: &str| normalize(s.as_bytes(), &plan);
        assert_eq!(n("+1-800-555-0199").as_deref(), Some("18005550199"));
        assert_eq!(n("%2B18005550199").as_deref(), Some("18005550199"));
        assert_eq!(n("(800) 555.0199").as_deref(), Some("18005550199"));
        assert_eq!(n("18005550199").as_deref(), Some("18005550199"));
        assert_eq!(n("8005550199").as_deref(), Some("18005550199"));
        assert_eq!(n("01144207946000").as_deref(), Some("44207946000"));
        assert_eq!(
            n("+18005550199;npdi;rn=+18005550000").as_deref(),
            Some("18005550199")
        );
        assert_eq!(n("anonymous"), None);
        assert_eq!(n(""), None);
        assert_eq!(n("+"), None);
        assert_eq!(n("1+2"), None);
        assert_eq!(n("%2"), None);
        let uk = NumberPlan {
            country_code: "44".into(),
            national_prefix: "0".into(),
            international_prefix: "00".into(),
            national_length: 10,
        };
        assert_eq!(
            normalize(b"020 7946 0000", &uk).as_deref(),
            Some("442079460000")
        );
        assert_eq!(
            normalize(b"0033142685300", &uk).as_deref(),
            Some("33142685300")
        );
    }

    #[test]
    fn lookup_prefers_exact_then_longest_prefix_then_default() {
        let a = Target::parse("192.0.2.1:5060").unwrap();
        let b = Target::parse("sip:192.0.2.2:5080;transport=udp").unwrap();
        let c = Target::parse("sip:+18005550100@192.0.2.3").unwrap();
        let t = RoutingTable::new(
            &[
                RouteEntry {
                    number: "+1 800 555 0199".into(),
                    targets: vec![a.clone()],
                },
                RouteEntry {
                    number: "+1800*".into(),
                    targets: vec![b.clone()],
                },
                RouteEntry {
                    number: "1*".into(),
                    targets: vec![c.clone()],
                },
            ],
            std::slice::from_ref(&a),
            NumberPlan::default(),
        )
        .unwrap();
        assert_eq!(t.lookup("18005550199").unwrap()[0], a);
        assert_eq!(t.lookup("18005550123").unwrap()[0], b);
        assert_eq!(t.lookup("12125550123").unwrap()[0], c);
        assert!(t.lookup("442079460000").is_none());
        assert_eq!(t.default_route().unwrap()[0], a);
        assert_eq!(b.addr, "192.0.2.2:5080".parse().unwrap());
        assert_eq!(c.addr.port(), 5060);
        assert!(c.has_user() && !b.has_user());
    }

    #[test]
    fn bad_tables_and_targets_are_rejected_with_the_reason() {
        let e = RoutingTable::new(
            &[RouteEntry {
                number: "+1800".into(),
                targets: vec![],
            }],
            &[],
            NumberPlan::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no targets"));
        assert!(
            Target::parse("sip:pbx.example.com")
                .unwrap_err()
                .problem
                .contains("IP")
        );
        assert!(Target::parse("nonsense").is_err());
    }

    #[test]
    fn attempt_order_respects_priority_and_weights() {
        let t = |p: u16, w: u16, port: u16| {
            Target::parse(&format!("192.0.2.1:{port}"))
                .unwrap()
                .with_priority(p, w)
        };
        let targets = [t(1, 1, 1), t(0, 3, 2), t(0, 1, 3), t(2, 0, 4)];
        let mut rng = Rng::new(9);
        let mut first_is_2 = 0;
        for _ in 0..4000 {
            let o = attempt_order(&targets, &mut rng);
            let ports: Vec<u16> = o.iter().map(|t| t.addr.port()).collect();
            assert_eq!(&ports[2..], [1, 4], "lower priorities come later");
            if ports[0] == 2 {
                first_is_2 += 1;
            }
        }
        // Weight 3 of 4 goes first about 75% of the time.
        assert!((2800..3200).contains(&first_is_2), "{first_is_2}");
    }

    #[test]
    fn last_known_good_is_bounded() {
        let mut c = LastKnownGood::new(2);
        let t: Arc<[Target]> = Arc::from(vec![Target::parse("192.0.2.1:5060").unwrap()]);
        c.remember("1", t.clone());
        c.remember("2", t.clone());
        c.remember("3", t.clone());
        assert_eq!(c.len(), 2);
        assert!(c.get("1").is_none());
        assert!(c.get("3").is_some());
    }
}

/// Health of the host's routing service, judged from route request outcomes: when too
/// many of the recent ones failed (no answer in time, or a 5xx answer), the engine
/// stops asking for a cool-down and routes from the last-known-good cache, rather than
/// piling more requests onto a failing service.
#[derive(Debug)]
pub(crate) struct HostHealth {
    recent: VecDeque<bool>,
    samples: usize,
    ratio: f64,
    cool_down: std::time::Duration,
    degraded_until: Option<crate::time::Time>,
}

impl HostHealth {
    pub(crate) fn new(min_samples: u32, ratio: f64, cool_down: std::time::Duration) -> Self {
        HostHealth {
            recent: VecDeque::new(),
            samples: min_samples.max(1) as usize,
            ratio,
            cool_down,
            degraded_until: None,
        }
    }

    /// Records an outcome; returns `Some(true)` when this makes the service degraded.
    pub(crate) fn record(&mut self, ok: bool, now: crate::time::Time) -> Option<bool> {
        self.recent.push_back(ok);
        while self.recent.len() > self.samples {
            self.recent.pop_front();
        }
        let failed = self.recent.iter().filter(|&&ok| !ok).count();
        let bad =
            self.recent.len() >= self.samples && failed as f64 >= self.ratio * self.samples as f64;
        if bad && self.degraded_until.is_none() {
            self.degraded_until = Some(now + self.cool_down);
            self.recent.clear();
            return Some(true);
        }
        None
    }

    /// Whether the service is being bypassed at `now`; `Some(false)` in the second
    /// slot when the cool-down just ended.
    pub(crate) fn degraded(&mut self, now: crate::time::Time) -> (bool, Option<bool>) {
        match self.degraded_until {
            Some(t) if t <= now => {
                self.degraded_until = None;
                (false, Some(false))
            }
            Some(_) => (true, None),
            None => (false, None),
        }
    }
}

#[cfg(test)]
mod host_health_tests {
    use super::*;
    use crate::time::Time;
    use std::time::Duration;

    #[test]
    fn degrades_on_a_high_failure_share_and_recovers_after_the_cool_down() {
        let mut h = HostHealth::new(10, 0.5, Duration::from_secs(10));
        let t0 = Time::ZERO;
        for i in 0..9 {
            assert_eq!(h.record(i % 2 == 0, t0), None);
        }
        assert_eq!(h.record(false, t0), Some(true), "5 of 10 failed");
        assert_eq!(h.degraded(t0 + Duration::from_secs(9)), (true, None));
        assert_eq!(
            h.degraded(t0 + Duration::from_secs(10)),
            (false, Some(false))
        );
        for _ in 0..10 {
            assert_eq!(h.record(true, t0), None);
        }
    }
}
