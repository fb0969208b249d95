//! A node's engine settings as typed values, parsed once when the recipe
//! loads (a bad value is a load error, never a silent fallback at run time):
//! `cache: false | true | {ttl, normalize, enabled}` and
//! `retry: N | {max_attempts, base_delay, max_delay}`. Durations are seconds
//! (numbers) or text like `500ms`, `2s`, `1m`, `2h`, `7d`.
//!
//! The cache and the providers read these types; they do not parse recipe
//! values themselves.

use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// A setting whose value cannot be used; the message names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSetting(pub String);

/// A node's `cache:` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CachePolicy {
    /// None: the default for the node's kind (provider calls and pure
    /// functions are cached).
    pub enabled: Option<bool>,
    /// How long the result stays valid (None: the cache's default).
    pub ttl: Option<Duration>,
    /// Lower-case strings and collapse their whitespace before keying.
    pub normalize: bool,
}

impl CachePolicy {
    pub fn parse(v: Option<&Value>) -> Result<CachePolicy, InvalidSetting> {
        match v {
            None | Some(Value::Null) => Ok(CachePolicy::default()),
            Some(Value::Bool(b)) => Ok(CachePolicy {
                enabled: Some(*b),
                ..Default::default()
            }),
            Some(Value::Object(m)) => {
                let mut p = CachePolicy {
                    enabled: Some(true),
                    ..Default::default()
                };
                let flag = |key: &str, v: &Value| {
                    v.as_bool().ok_or_else(|| {
                        InvalidSetting(format!("`cache.{key}` must be true or false, found {v}"))
                    })
                };
                for (k, v) in m {
                    match k.as_str() {
                        "ttl" => {
                            p.ttl = Some(
                                parse_duration(v)
                                    .map_err(|e| InvalidSetting(format!("`cache.ttl`: {e}")))?,
                            )
                        }
                        "normalize" => p.normalize = flag("normalize", v)?,
                        "enabled" => p.enabled = Some(flag("enabled", v)?),
                        other => {
                            return Err(InvalidSetting(format!(
                                "unknown `cache` setting `{other}` (known: ttl, normalize, enabled)"
                            )))
                        }
                    }
                }
                Ok(p)
            }
            Some(other) => Err(InvalidSetting(format!(
                "`cache` must be true, false or {{ttl, normalize}}, found {other}"
            ))),
        }
    }
}

/// A node's `retry:` setting: what it changes of the provider's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: Option<u32>,
    pub base_delay: Option<Duration>,
    pub max_delay: Option<Duration>,
}

impl RetryPolicy {
    /// `retry: 3` is short for `retry: {max_attempts: 3}`.
    pub fn parse(value: &Value) -> Result<RetryPolicy, InvalidSetting> {
        let attempts = |v: &Value| {
            v.as_u64()
                .filter(|n| (1..=100).contains(n))
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    InvalidSetting(format!(
                        "`retry.max_attempts` must be a whole number from 1 to 100, found {v}"
                    ))
                })
        };
        if value.is_number() {
            return Ok(RetryPolicy {
                max_attempts: Some(attempts(value)?),
                ..Default::default()
            });
        }
        let Value::Object(m) = value else {
            return Err(InvalidSetting(format!(
                "`retry` must be a number of attempts or a mapping {{max_attempts, base_delay, max_delay}}, found {value}"
            )));
        };
        let mut p = RetryPolicy::default();
        for (key, v) in m {
            let delay = |name: &str| {
                parse_duration(v).map_err(|e| InvalidSetting(format!("`retry.{name}`: {e}")))
            };
            match key.as_str() {
                "max_attempts" => p.max_attempts = Some(attempts(v)?),
                "base_delay" => p.base_delay = Some(delay("base_delay")?),
                "max_delay" => p.max_delay = Some(delay("max_delay")?),
                other => {
                    return Err(InvalidSetting(format!(
                        "unknown `retry` setting `{other}` (known: max_attempts, base_delay, max_delay)"
                    )))
                }
            }
        }
        Ok(p)
    }
}

/// `1.5` (seconds), `"500ms"`, `"2s"`, `"1m"`, `"30m"`, `"2h"`, `"7d"`.
pub fn parse_duration(v: &Value) -> Result<Duration, InvalidSetting> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .filter(|s| *s >= 0.0 && s.is_finite())
            .map(Duration::from_secs_f64)
            .ok_or_else(|| InvalidSetting(format!("{n} is not a duration"))),
        Value::String(s) => parse_duration_text(s),
        other => Err(InvalidSetting(format!(
            "expected seconds or text like `500ms`, found {other}"
        ))),
    }
}

pub fn parse_duration_text(s: &str) -> Result<Duration, InvalidSetting> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| InvalidSetting(format!("`{s}` is not a duration (e.g. 500ms, 2s, 1m)")))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        other => {
            return Err(InvalidSetting(format!(
                "unknown unit `{other}` in `{s}` (use ms, s, m, h or d)"
            )))
        }
    };
    Duration::try_from_secs_f64(secs)
        .map_err(|_| InvalidSetting(format!("`{s}` is not a usable duration")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cache_settings() {
        assert_eq!(CachePolicy::parse(None), Ok(CachePolicy::default()));
        let p = CachePolicy::parse(Some(&json!({"ttl": "30m", "normalize": true})));
        assert_eq!(
            p,
            Ok(CachePolicy {
                enabled: Some(true),
                ttl: Some(Duration::from_secs(1800)),
                normalize: true
            })
        );
        let e = CachePolicy::parse(Some(&json!({"ttl": "soon"}))).err();
        assert!(e.is_some_and(|e| e.0.contains("`cache.ttl`")));
    }

    #[test]
    fn retry_settings() {
        let p =
            RetryPolicy::parse(&json!({"max_attempts": 2, "base_delay": "10ms", "max_delay": 1}));
        assert_eq!(
            p,
            Ok(RetryPolicy {
                max_attempts: Some(2),
                base_delay: Some(Duration::from_millis(10)),
                max_delay: Some(Duration::from_secs(1)),
            })
        );
        assert_eq!(
            RetryPolicy::parse(&json!(5)).map(|p| p.max_attempts),
            Ok(Some(5))
        );
        assert!(RetryPolicy::parse(&json!({"tries": 2})).is_err());
        assert!(RetryPolicy::parse(&json!(0)).is_err());
    }
}
