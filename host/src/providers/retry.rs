//! Retries: exponential backoff with full jitter (a random wait between 0
//! and `min(max_delay, base_delay × 2^attempt)`, so many clients retrying
//! together spread out), honouring `Retry-After` (seconds or an HTTP date).
//! Only 429, 5xx, timeouts, dropped connections and garbled replies are
//! retried; other 4xx are the caller's mistake and fail at once.

use super::settings::RetrySettings;
use super::ProviderError;
use crate::recipe::policy::RetryPolicy as NodeRetry;
pub use crate::recipe::policy::{parse_duration, parse_duration_text};
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

    /// A node's `retry:` setting (parsed when the recipe loaded) laid
    /// over `self`.
    pub fn with_node(self, node: &NodeRetry) -> RetryPolicy {
        RetryPolicy {
            max_attempts: node.max_attempts.unwrap_or(self.max_attempts),
            base_delay: node.base_delay.unwrap_or(self.base_delay),
            max_delay: node.max_delay.unwrap_or(self.max_delay),
            max_retry_after: self.max_retry_after,
        }
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
        let node = NodeRetry::parse(
            &serde_json::json!({"max_attempts": 2, "base_delay": "10ms", "max_delay": 1}),
        )
        .unwrap();
        let p = policy().with_node(&node);
        assert_eq!(p.max_attempts, 2);
        assert_eq!(p.base_delay, Duration::from_millis(10));
        assert_eq!(p.max_delay, Duration::from_secs(1));
        assert_eq!(p.max_retry_after, policy().max_retry_after);
    }
}
