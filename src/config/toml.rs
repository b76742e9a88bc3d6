//! Reading a [`Config`] from TOML. Every key is checked: an unknown key, a wrong type
//! or an out-of-range value is an error naming the field and the line.

use std::collections::HashSet;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{AskHost, Config, ConfigError};
use crate::route::{RouteEntry, Target};

/// 1-based line of byte offset `at` in `src`.
fn line_of(src: &str, at: usize) -> usize {
    src.as_bytes()[..at.min(src.len())]
        .iter()
        .filter(|&&c| c == b'\n')
        .count()
        + 1
}

/// One TOML table being read: remembers which keys were used so leftovers are errors.
struct Section<'t, 'i> {
    src: &'i str,
    path: String,
    table: &'t DeTable<'i>,
    used: HashSet<String>,
}

impl<'t, 'i> Section<'t, 'i> {
    fn new(src: &'i str, path: impl Into<String>, table: &'t DeTable<'i>) -> Self {
        Section {
            src,
            path: path.into(),
            table,
            used: HashSet::new(),
        }
    }

    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn err(
        &self,
        key: &str,
        at: std::ops::Range<usize>,
        problem: impl std::fmt::Display,
    ) -> ConfigError {
        ConfigError::new(
            self.field(key),
            format!("{problem} (line {})", line_of(self.src, at.start)),
        )
    }

    fn get(&mut self, key: &str) -> Option<&'t Spanned<DeValue<'i>>> {
        let (k, v) = self.table.get_key_value(key)?;
        self.used.insert(k.get_ref().to_string());
        Some(v)
    }

    fn int(&mut self, key: &str) -> Result<Option<(i64, std::ops::Range<usize>)>, ConfigError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .map(|n| Some((n, v.span())))
                .map_err(|_| self.err(key, v.span(), "is not a valid integer")),
            other => Err(self.err(
                key,
                v.span(),
                format!("must be an integer, not a {}", other.type_str()),
            )),
        }
    }

    fn uint<T: TryFrom<i64>>(&mut self, key: &str, into: &mut T) -> Result<(), ConfigError> {
        if let Some((n, span)) = self.int(key)? {
            *into = T::try_from(n)
                .map_err(|_| self.err(key, span, format!("is out of range ({n})")))?;
        }
        Ok(())
    }

    fn millis(&mut self, key: &str, into: &mut Duration) -> Result<(), ConfigError> {
        if let Some((n, span)) = self.int(key)? {
            let ms = u64::try_from(n).map_err(|_| self.err(key, span, "must not be negative"))?;
            *into = Duration::from_millis(ms);
        }
        Ok(())
    }

    fn secs(&mut self, key: &str, into: &mut Duration) -> Result<(), ConfigError> {
        if let Some((n, span)) = self.int(key)? {
            let s = u64::try_from(n).map_err(|_| self.err(key, span, "must not be negative"))?;
            *into = Duration::from_secs(s);
        }
        Ok(())
    }

    fn boolean(&mut self, key: &str, into: &mut bool) -> Result<(), ConfigError> {
        if let Some(v) = self.get(key) {
            match v.get_ref() {
                DeValue::Boolean(b) => *into = *b,
                other => {
                    return Err(self.err(
                        key,
                        v.span(),
                        format!("must be true or false, not a {}", other.type_str()),
                    ));
                }
            }
        }
        Ok(())
    }

    fn string(
        &mut self,
        key: &str,
    ) -> Result<Option<(String, std::ops::Range<usize>)>, ConfigError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match v.get_ref() {
            DeValue::String(s) => Ok(Some((s.to_string(), v.span()))),
            other => Err(self.err(
                key,
                v.span(),
                format!("must be a string, not a {}", other.type_str()),
            )),
        }
    }

    fn array(&mut self, key: &str) -> Result<Option<&'t [Spanned<DeValue<'i>>]>, ConfigError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match v.get_ref() {
            DeValue::Array(a) => Ok(Some(a.as_ref())),
            other => Err(self.err(
                key,
                v.span(),
                format!("must be an array, not a {}", other.type_str()),
            )),
        }
    }

    fn table(&mut self, key: &str) -> Result<Option<Section<'t, 'i>>, ConfigError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match v.get_ref() {
            DeValue::Table(t) => Ok(Some(Section::new(self.src, self.field(key), t))),
            other => Err(self.err(
                key,
                v.span(),
                format!("must be a table, not a {}", other.type_str()),
            )),
        }
    }

    /// Every key must have been read.
    fn finish(self) -> Result<(), ConfigError> {
        for (k, _) in self.table.iter() {
            if !self.used.contains(k.get_ref().as_ref()) {
                return Err(self.err(k.get_ref(), k.span(), "is not a known setting"));
            }
        }
        Ok(())
    }
}

fn target(src: &str, field: &str, v: &Spanned<DeValue<'_>>) -> Result<Target, ConfigError> {
    let line = line_of(src, v.span().start);
    match v.get_ref() {
        DeValue::String(s) => {
            Target::parse(s).map_err(|e| ConfigError::new(field, format!("{e} (line {line})")))
        }
        DeValue::Table(t) => {
            let mut sec = Section::new(src, field, t);
            let Some((uri, span)) = sec.string("uri")? else {
                return Err(ConfigError::new(
                    field,
                    format!("needs a `uri` (line {line})"),
                ));
            };
            let mut t = Target::parse(&uri).map_err(|e| sec.err("uri", span, e))?;
            sec.uint("priority", &mut t.priority)?;
            sec.uint("weight", &mut t.weight)?;
            sec.finish()?;
            Ok(t)
        }
        other => Err(ConfigError::new(
            field,
            format!(
                "a target is \"host:port\", a sip: URI, or {{ uri, priority, weight }}, not a {} (line {line})",
                other.type_str()
            ),
        )),
    }
}

fn targets(
    src: &str,
    field: &str,
    list: &[Spanned<DeValue<'_>>],
) -> Result<Vec<Target>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, v)| target(src, &format!("{field}[{i}]"), v))
        .collect()
}

impl Config {
    /// Reads a config from TOML text; omitted settings keep their defaults. The result
    /// is validated. Errors name the field and the line.
    ///
    /// ```
    /// let c = ringfence::Config::from_toml(r#"
    ///     seed = 7
    ///     [routing]
    ///     default_route = ["127.0.0.1:5080"]
    ///     [proxy]
    ///     ring_timeout_s = 60
    /// "#).unwrap();
    /// assert_eq!(c.routing.default_route[0].addr.port(), 5080);
    /// let e = ringfence::Config::from_toml("[proxy]\nring_timeout = 60\n").unwrap_err();
    /// assert_eq!(e.to_string(), "invalid config: `proxy.ring_timeout` is not a known setting (line 2)");
    /// ```
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let doc = DeTable::parse(text).map_err(|e| {
            let line = e.span().map_or(0, |s| line_of(text, s.start));
            ConfigError::new("(toml)", format!("{} (line {line})", e.message()))
        })?;
        let mut c = Config::default();
        let mut root = Section::new(text, "", doc.get_ref());
        if let Some((n, span)) = root.int("seed")? {
            c.seed =
                u64::try_from(n).map_err(|_| root.err("seed", span, "must not be negative"))?;
        }
        if let Some((s, _)) = root.string("server_name")? {
            c.server_name = s;
        }
        if let Some(mut t) = root.table("timers")? {
            t.millis("t1_ms", &mut c.timers.t1)?;
            t.millis("t2_ms", &mut c.timers.t2)?;
            t.millis("t4_ms", &mut c.timers.t4)?;
            t.millis("timer_d_ms", &mut c.timers.timer_d)?;
            t.finish()?;
        }
        if let Some(mut t) = root.table("wire")? {
            t.uint("max_message_len", &mut c.wire.max_message_len)?;
            t.uint("max_headers", &mut c.wire.max_headers)?;
            t.uint("max_vias", &mut c.wire.max_vias)?;
            t.finish()?;
        }
        if let Some(mut t) = root.table("limits")? {
            t.uint("max_transactions", &mut c.limits.max_transactions)?;
            t.uint("transmit_queue_bytes", &mut c.limits.transmit_queue_bytes)?;
            t.uint("max_events", &mut c.limits.max_events)?;
            t.uint(
                "table_full_retry_after_s",
                &mut c.limits.table_full_retry_after,
            )?;
            t.finish()?;
        }
        if let Some(mut t) = root.table("routing")? {
            let r = &mut c.routing;
            if let Some((s, span)) = t.string("ask_host")? {
                r.ask_host = match s.as_str() {
                    "never" => AskHost::Never,
                    "unknown" => AskHost::Unknown,
                    "always" => AskHost::Always,
                    _ => {
                        return Err(t.err(
                            "ask_host",
                            span,
                            "must be \"never\", \"unknown\" or \"always\"",
                        ));
                    }
                };
            }
            t.millis("route_request_timeout_ms", &mut r.route_request_timeout)?;
            t.uint("no_route_status", &mut r.no_route_status)?;
            t.uint("route_failure_status", &mut r.route_failure_status)?;
            t.uint("last_known_good", &mut r.last_known_good)?;
            if let Some(list) = t.array("default_route")? {
                r.default_route = targets(text, &t.field("default_route"), list)?;
            }
            if let Some(mut p) = t.table("plan")? {
                if let Some((s, _)) = p.string("country_code")? {
                    r.plan.country_code = s;
                }
                if let Some((s, _)) = p.string("national_prefix")? {
                    r.plan.national_prefix = s;
                }
                if let Some((s, _)) = p.string("international_prefix")? {
                    r.plan.international_prefix = s;
                }
                p.uint("national_length", &mut r.plan.national_length)?;
                p.finish()?;
            }
            if let Some(list) = t.array("routes")? {
                for (i, v) in list.iter().enumerate() {
                    let field = format!("{}[{i}]", t.field("routes"));
                    let DeValue::Table(tbl) = v.get_ref() else {
                        return Err(ConfigError::new(
                            field,
                            format!("must be a table (line {})", line_of(text, v.span().start)),
                        ));
                    };
                    let mut e = Section::new(text, field.clone(), tbl);
                    let Some((number, _)) = e.string("number")? else {
                        return Err(ConfigError::new(
                            field,
                            format!("needs a `number` (line {})", line_of(text, v.span().start)),
                        ));
                    };
                    let list = e.array("targets")?.unwrap_or_default();
                    let targets = targets(text, &e.field("targets"), list)?;
                    e.finish()?;
                    r.routes.push(RouteEntry { number, targets });
                }
            }
            t.finish()?;
        }
        if let Some(mut t) = root.table("proxy")? {
            let p = &mut c.proxy;
            t.secs("ring_timeout_s", &mut p.ring_timeout)?;
            t.uint("ring_timeout_status", &mut p.ring_timeout_status)?;
            if let Some(list) = t.array("failover_statuses")? {
                p.failover_statuses.clear();
                for (i, v) in list.iter().enumerate() {
                    match v.get_ref() {
                        DeValue::Integer(n) => {
                            p.failover_statuses.push(n.as_str().parse().map_err(|_| {
                                t.err(
                                    &format!("failover_statuses[{i}]"),
                                    v.span(),
                                    "must be a status code",
                                )
                            })?)
                        }
                        _ => {
                            return Err(t.err(
                                &format!("failover_statuses[{i}]"),
                                v.span(),
                                "must be a status code",
                            ));
                        }
                    }
                }
            }
            t.uint("downstream_503_status", &mut p.downstream_503_status)?;
            t.uint("max_calls", &mut p.max_calls)?;
            t.uint("max_dialogs", &mut p.max_dialogs)?;
            let mut max = p.max_call_duration.unwrap_or_default();
            t.secs("max_call_duration_s", &mut max)?;
            p.max_call_duration = (!max.is_zero()).then_some(max);
            t.boolean("bye_on_max_duration", &mut p.bye_on_max_duration)?;
            t.finish()?;
        }
        root.finish()?;
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_round_trips_into_the_fields() {
        let c = Config::from_toml(
            r#"
seed = 99
server_name = "edge-1"
[timers]
t1_ms = 250
[wire]
max_message_len = 8192
[limits]
max_transactions = 5000
[routing]
ask_host = "unknown"
route_request_timeout_ms = 1500
no_route_status = 480
default_route = ["127.0.0.1:5080"]
[routing.plan]
country_code = "44"
national_prefix = "0"
international_prefix = "00"
national_length = 10
[[routing.routes]]
number = "+44 20 7946 0000"
targets = ["192.0.2.20:5080", { uri = "sip:192.0.2.21:5070", priority = 1, weight = 3 }]
[proxy]
ring_timeout_s = 45
failover_statuses = [500, 503]
max_call_duration_s = 0
"#,
        )
        .unwrap();
        assert_eq!(c.seed, 99);
        assert_eq!(c.server_name, "edge-1");
        assert_eq!(c.timers.t1, Duration::from_millis(250));
        assert_eq!(c.wire.max_message_len, 8192);
        assert_eq!(c.limits.max_transactions, 5000);
        assert_eq!(c.routing.ask_host, AskHost::Unknown);
        assert_eq!(c.routing.route_request_timeout, Duration::from_millis(1500));
        assert_eq!(c.routing.plan.country_code, "44");
        assert_eq!(c.routing.routes[0].targets[1].weight, 3);
        assert_eq!(c.routing.routes[0].targets[1].addr.port(), 5070);
        assert_eq!(c.proxy.ring_timeout, Duration::from_secs(45));
        assert_eq!(c.proxy.failover_statuses, [500, 503]);
        assert_eq!(c.proxy.max_call_duration, None);
        let table = c.routing_table().unwrap();
        assert!(table.lookup("442079460000").is_some());
    }

    #[test]
    fn errors_name_field_and_line() {
        let e = Config::from_toml("[proxy]\nring_timeout_s = \"long\"\n").unwrap_err();
        assert_eq!(e.field, "proxy.ring_timeout_s");
        assert!(e.problem.contains("line 2"), "{e}");
        let e = Config::from_toml("\n\n[routing]\ndefault_route = [\"pbx.example:5060\"]\n")
            .unwrap_err();
        assert_eq!(e.field, "routing.default_route[0]");
        assert!(e.problem.contains("line 4"), "{e}");
        let e = Config::from_toml("[timers]\nt1_ms = 0\n").unwrap_err();
        assert_eq!(e.field, "timers.t1");
        let e = Config::from_toml("[routing]\nask_host = \"sometimes\"\n").unwrap_err();
        assert!(e.problem.contains("line 2"), "{e}");
        let e = Config::from_toml("bogus = 1\n").unwrap_err();
        assert_eq!(e.field, "bogus");
        let e = Config::from_toml("[proxy\n").unwrap_err();
        assert!(e.problem.contains("line 1"), "{e}");
        let e = Config::from_toml("[[routing.routes]]\nnumber = \"+1800\"\n").unwrap_err();
        assert!(e.problem.contains("no targets"), "{e}");
    }
}
