//! The stable one-line text form shared by the bypass signal and node reports:
//! space-separated `key=value` pairs, keys in a fixed order, `v=1` first. Values are
//! tokens without spaces or `=`; unknown keys are rejected so a consumer never silently
//! misreads a newer version.

use std::collections::HashMap;

/// Why a line could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    /// A field is not `key=value`.
    #[error("field {0:?} is not key=value")]
    NotKeyValue(String),
    /// A key appears twice.
    #[error("key {0:?} appears twice")]
    Duplicate(String),
    /// A required key is missing.
    #[error("missing key {0:?}")]
    Missing(&'static str),
    /// A key this version does not define.
    #[error("unknown key {0:?}")]
    Unknown(String),
    /// A value does not parse.
    #[error("bad value for {key:?}: {value:?}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// The value.
        value: String,
    },
    /// A version this reader does not understand.
    #[error("unsupported version {0:?} (this reader understands v=1)")]
    Version(String),
}

/// The fields of one line.
pub(crate) struct Fields<'a> {
    map: HashMap<&'a str, &'a str>,
}

impl<'a> Fields<'a> {
    /// Splits `line`, checks `v=1` and that every key is in `allowed`.
    pub(crate) fn parse(line: &'a str, allowed: &[&str]) -> Result<Fields<'a>, TextError> {
        let mut map = HashMap::new();
        for f in line
            .trim_end_matches(['\r', '\n'])
            .split(' ')
            .filter(|f| !f.is_empty())
        {
            let (k, v) = f
                .split_once('=')
                .ok_or_else(|| TextError::NotKeyValue(f.to_owned()))?;
            if k.is_empty() || v.contains('=') {
                return Err(TextError::NotKeyValue(f.to_owned()));
            }
            if k != "v" && !allowed.contains(&k) {
                return Err(TextError::Unknown(k.to_owned()));
            }
            if map.insert(k, v).is_some() {
                return Err(TextError::Duplicate(k.to_owned()));
            }
        }
        let fields = Fields { map };
        let v = fields.str("v")?;
        if v != "1" {
            return Err(TextError::Version(v.to_owned()));
        }
        Ok(fields)
    }

    pub(crate) fn str(&self, key: &'static str) -> Result<&'a str, TextError> {
        self.map.get(key).copied().ok_or(TextError::Missing(key))
    }

    pub(crate) fn num<T: std::str::FromStr>(&self, key: &'static str) -> Result<T, TextError> {
        let v = self.str(key)?;
        v.parse().map_err(|_| TextError::BadValue {
            key,
            value: v.to_owned(),
        })
    }

    pub(crate) fn flag(&self, key: &'static str) -> Result<bool, TextError> {
        match self.str(key)? {
            "1" => Ok(true),
            "0" => Ok(false),
            v => Err(TextError::BadValue {
                key,
                value: v.to_owned(),
            }),
        }
    }
}

/// Whether `s` can be written as a value (non-empty, printable, no space or `=`).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_graphic() && c != b'=')
}
