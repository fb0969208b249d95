//! Retries: exponential backoff with full jitter (a random wait between 0
//! and `min(max_delay, base_delay × 2^attempt)`, so many clients retrying
//! together spread out), honouring `Retry-After` (seconds or an HTTP date).
//! Only 429, 5xx, timeouts, dropped connections and garbled replies are
//! retried; other 4xx are the caller's mistake and fail at once.

use super::settings::RetrySettings;
use super::ProviderError;
use serde_json::Value;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Longer `Retry-After`s are not waited for: the call fails.
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    pub fn from_settings(s: &RetrySettings) -> RetryPolicy {
        RetryPolicy {
            max_attempts: s.max_retries.saturating_add(1),
            base_delay: Duration::from_millis(s.base_delay_ms),
            max_delay: Duration::from_millis(s.max_delay_ms),
            max_retry_after: Duration::from_millis(s.max_retry_after_ms),
        }
    }

    /// A node's `retry: {max_attempts, base_delay, max_delay}` over `self`.
    /// Delays are seconds (numbers) or text like `500ms`, `2s`, `1m`.
    pub fn with_node(self, value: &Value) -> Result<RetryPolicy, String> {
        // `retry: 3` is short for `retry: {max_attempts: 3}`.
        if value.is_number() {
            return self.with_node(&serde_json::json!({ "max_attempts": value }));
        }
        let Value::Object(m) = value else {
            return Err(format!(
                "`retry` must be a number of attempts or a mapping {{max_attempts, base_delay, max_delay}}, found {value}"
            ));
        };
        let mut p = self;
        for (key, v) in m {
            match key.as_str() {
                "max_attempts" => {
                    p.max_attempts = v
                        .as_u64()
                        .filter(|n| (1..=100).contains(n))
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| format!("`retry.max_attempts` must be a whole number from 1 to 100, found {v}"))?;
                }
                "base_delay" => p.base_delay = parse_duration(v).map_err(|e| format!("`retry.base_delay`: {e}"))?,
                "max_delay" => p.max_delay = parse_duration(v).map_err(|e| format!("`retry.max_delay`: {e}"))?,
                other => return Err(format!("unknown `retry` setting `{other}` (known: max_attempts, base_delay, max_delay)")),
            }
        }
        Ok(p)
    }

    /// The jittered wait before retry number `retry` (from 0).
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry.min(30)))
            .min(self.max_delay);
        let ms = ceiling.as_millis() as u64;
        if ms == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(rand::random_range(0..=ms))
    }

    /// How long to wait before attempt `attempt + 1`, or None to give up.
    pub fn next_delay(&self, attempt: u32, error: &ProviderError) -> Option<Duration> {
        if !error.retryable || attempt >= self.max_attempts {
            return None;
        }
        match error.retry_after {
            Some(d) if d > self.max_retry_after => None,
            Some(d) => Some(d),
            None => Some(self.backoff(attempt - 1)),
        }
    }
}

/// `1.5` (seconds), `"500ms"`, `"2s"`, `"1m"`, `"30m"`, `"2h"`.
pub fn parse_duration(v: &Value) -> Result<Duration, String> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .filter(|s| *s >= 0.0 && s.is_finite())
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("{n} is not a duration")),
        Value::String(s) => parse_duration_text(s),
        other => Err(format!(
            "expected seconds or text like `500ms`, found {other}"
        )),
    }
}

pub fn parse_duration_text(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 500ms, 2s, 1m)"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{s}` (use ms, s, m, h or d)"
            ))
        }
    };
    Ok(Duration::from_secs_f64(secs))
}

/// A `Retry-After` header: delay seconds, or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs >= 0.0 && secs.is_finite()).then(|| Duration::from_secs_f64(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::from_settings(&RetrySettings::default())
    }

    #[test]
    fn backoff_is_jittered_and_capped() {
        let p = policy();
        for retry in 0..10 {
            let d = p.backoff(retry);
            let ceiling = Duration::from_millis(1000 * 2u64.pow(retry)).min(p.max_delay);
            assert!(d <= ceiling, "{d:?} > {ceiling:?}");
        }
        // Full jitter: waits differ between calls.
        let waits: std::collections::HashSet<u128> =
            (0..20).map(|_| p.backoff(5).as_millis()).collect();
        assert!(waits.len() > 1);
    }

    #[test]
    fn retry_after_in_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn only_retryable_errors_are_retried_and_attempts_end() {
        let p = policy();
        let mut e = ProviderError::new("x", "boom", true);
        assert!(p.next_delay(1, &e).is_some());
        assert!(p.next_delay(4, &e).is_none());
        e.retryable = false;
        assert!(p.next_delay(1, &e).is_none());
        let mut e = ProviderError::new("x", "slow down", true);
        e.retry_after = Some(Duration::from_secs(2));
        assert_eq!(p.next_delay(1, &e), Some(Duration::from_secs(2)));
    }

    #[test]
    fn node_settings_override() {
        let p = policy()
            .with_node(
                &serde_json::json!({"max_attempts": 2, "base_delay": "10ms", "max_delay": 1}),
            )
            .unwrap();
        assert_eq!(p.max_attempts, 2);
        assert_eq!(p.base_delay, Duration::from_millis(10));
        assert_eq!(p.max_delay, Duration::from_secs(1));
        assert!(policy()
            .with_node(&serde_json::json!({"tries": 2}))
            .is_err());
    }
}
