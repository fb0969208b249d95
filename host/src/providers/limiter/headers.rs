//! The rate-limit headers providers send with every reply, read into one
//! `LimitReport`:
//! - OpenAI-compatible (OpenAI, Groq, OpenRouter):
//!   `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, resets as Go
//!   durations (`1s`, `6m0s`, `20ms`);
//! - Anthropic: `anthropic-ratelimit-{requests,tokens,input-tokens,
//!   output-tokens}-{limit,remaining,reset}`, resets as RFC 3339 times;
//! - `Retry-After` (seconds or an HTTP date) and `retry-after-ms`.
//!
//! Header values are the provider's to choose: anything that does not
//! parse is ignored, never an error.

use reqwest::header::HeaderMap;
use std::time::{Duration, SystemTime};

/// One budget as the provider reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WindowReport {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// Until the budget is full again.
    pub reset: Option<Duration>,
}

impl WindowReport {
    fn is_empty(&self) -> bool {
        self.limit.is_none() && self.remaining.is_none() && self.reset.is_none()
    }
}

/// The budgets a provider sends, by what they count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Budget {
    Requests,
    /// Input and output tokens together.
    Tokens,
    InputTokens,
    OutputTokens,
}

pub const BUDGETS: [Budget; 4] = [
    Budget::Requests,
    Budget::Tokens,
    Budget::InputTokens,
    Budget::OutputTokens,
];

/// What one reply said about the limits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitReport {
    pub requests: Option<WindowReport>,
    pub tokens: Option<WindowReport>,
    pub input_tokens: Option<WindowReport>,
    pub output_tokens: Option<WindowReport>,
    pub retry_after: Option<Duration>,
}

impl LimitReport {
    pub fn window(&self, budget: Budget) -> Option<&WindowReport> {
        match budget {
            Budget::Requests => self.requests.as_ref(),
            Budget::Tokens => self.tokens.as_ref(),
            Budget::InputTokens => self.input_tokens.as_ref(),
            Budget::OutputTokens => self.output_tokens.as_ref(),
        }
    }

    /// Whether the reply carried any budget (a provider that never does is
    /// not limited client-side).
    pub fn has_windows(&self) -> bool {
        BUDGETS.iter().any(|b| self.window(*b).is_some())
    }
}

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

fn number(headers: &HeaderMap, name: &str) -> Option<u64> {
    let v = text(headers, name)?;
    // Some proxies send `100.0`.
    v.parse::<u64>().ok().or_else(|| {
        v.parse::<f64>()
            .ok()
            .filter(|f| *f >= 0.0 && f.is_finite())
            .map(|f| f as u64)
    })
}

fn window(
    headers: &HeaderMap,
    limit: &str,
    remaining: &str,
    reset: &str,
    parse_reset: impl Fn(&str) -> Option<Duration>,
) -> Option<WindowReport> {
    let w = WindowReport {
        limit: number(headers, limit),
        remaining: number(headers, remaining),
        reset: text(headers, reset).and_then(parse_reset),
    };
    (!w.is_empty()).then_some(w)
}

/// Reads every rate-limit header of a reply; `now` is the wall clock the
/// absolute times (RFC 3339, HTTP dates) are measured from.
pub fn parse(headers: &HeaderMap, now: SystemTime) -> LimitReport {
    let openai = |what: &str| {
        window(
            headers,
            &format!("x-ratelimit-limit-{what}"),
            &format!("x-ratelimit-remaining-{what}"),
            &format!("x-ratelimit-reset-{what}"),
            parse_go_duration,
        )
    };
    let anthropic = |what: &str| {
        window(
            headers,
            &format!("anthropic-ratelimit-{what}-limit"),
            &format!("anthropic-ratelimit-{what}-remaining"),
            &format!("anthropic-ratelimit-{what}-reset"),
            |v| parse_rfc3339(v).map(|t| t.duration_since(now).unwrap_or(Duration::ZERO)),
        )
    };
    let retry_after = text(headers, "retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|ms| *ms >= 0.0 && ms.is_finite())
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .or_else(|| {
            text(headers, "retry-after")
                .and_then(|v| super::super::retry::parse_retry_after(v, now))
        });
    LimitReport {
        requests: openai("requests").or_else(|| anthropic("requests")),
        tokens: openai("tokens").or_else(|| anthropic("tokens")),
        input_tokens: anthropic("input-tokens"),
        output_tokens: anthropic("output-tokens"),
        retry_after,
    }
}

/// A Go duration as OpenAI writes resets: `1s`, `6m0s`, `1h2m3.5s`,
/// `20ms`, `0.5s`; a bare number is seconds.
pub fn parse_go_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs >= 0.0 && secs.is_finite()).then(|| Duration::from_secs_f64(secs));
    }
    let mut total = 0.0f64;
    let mut rest = v;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|i| *i > 0)?;
        let (num, tail) = rest.split_at(split);
        let n: f64 = num.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += n * scale;
        rest = next;
    }
    total.is_finite().then(|| Duration::from_secs_f64(total))
}

/// An RFC 3339 time (`2026-12-02T06:10:05Z`, `...05.25+01:00`).
pub fn parse_rfc3339(v: &str) -> Option<SystemTime> {
    let b = v.trim().as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = b.get(range)?;
        if !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    let sep = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac = std::str::from_utf8(b.get(start..i)?).ok()?;
        if frac.is_empty() {
            return None;
        }
        let padded: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        nanos = padded.parse().ok()?;
    }
    let offset_secs = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if i + 6 == b.len() && sep(i + 3, b":") => {
            let h = digits(i + 1..i + 3)?;
            let m = digits(i + 4..i + 6)?;
            let s = (h * 60 + m) * 60;
            if *c == b'+' {
                s
            } else {
                -s
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap_or_else(|_| panic!("{k}")),
                HeaderValue::from_str(v).unwrap_or_else(|_| panic!("{v}")),
            );
        }
        h
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_go_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(
            parse_go_duration("1h2m3.5s"),
            Some(Duration::from_secs_f64(3723.5))
        );
        assert_eq!(parse_go_duration("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("soon"), None);
        assert_eq!(parse_go_duration("5x"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[test]
    fn rfc3339_times() {
        let t = |s| parse_rfc3339(s).and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok());
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(Duration::ZERO));
        assert_eq!(
            t("2000-03-01T00:00:00Z"),
            Some(Duration::from_secs(951_868_800))
        );
        assert_eq!(
            t("2026-12-02T06:10:05.25Z"),
            Some(Duration::from_secs(1_796_191_805) + Duration::from_millis(250))
        );
        assert_eq!(t("2026-12-02T07:10:05+01:00"), t("2026-12-02T06:10:05Z"));
        assert_eq!(t("2026-12-02 06:10:05-00:30"), t("2026-12-02T06:40:05Z"));
        assert_eq!(t("2026-13-02T06:10:05Z"), None);
        assert_eq!(t("2026-12-02T06:10:05"), None);
        assert_eq!(t("yesterday"), None);
    }

    #[test]
    fn openai_headers() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let r = parse(
            &headers(&[
                ("x-ratelimit-limit-requests", "500"),
                ("x-ratelimit-remaining-requests", "499"),
                ("x-ratelimit-reset-requests", "120ms"),
                ("x-ratelimit-limit-tokens", "30000"),
                ("x-ratelimit-remaining-tokens", "29000"),
                ("x-ratelimit-reset-tokens", "2s"),
            ]),
            now,
        );
        assert_eq!(
            r.requests,
            Some(WindowReport {
                limit: Some(500),
                remaining: Some(499),
                reset: Some(Duration::from_millis(120)),
            })
        );
        assert_eq!(r.tokens.and_then(|w| w.reset), Some(Duration::from_secs(2)));
        assert!(r.has_windows());
        assert_eq!(r.retry_after, None);
    }

    #[test]
    fn anthropic_headers_and_retry_after() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_191_800);
        let r = parse(
            &headers(&[
                ("anthropic-ratelimit-requests-limit", "50"),
                ("anthropic-ratelimit-requests-remaining", "0"),
                ("anthropic-ratelimit-requests-reset", "2026-12-02T06:10:05Z"),
                ("anthropic-ratelimit-output-tokens-remaining", "800"),
                ("retry-after", "3"),
            ]),
            now,
        );
        assert_eq!(
            r.requests,
            Some(WindowReport {
                limit: Some(50),
                remaining: Some(0),
                reset: Some(Duration::from_secs(5)),
            })
        );
        assert_eq!(r.output_tokens.and_then(|w| w.remaining), Some(800));
        assert_eq!(r.tokens, None);
        assert_eq!(r.retry_after, Some(Duration::from_secs(3)));
        // Garbage is ignored, not an error.
        let r = parse(&headers(&[("x-ratelimit-remaining-requests", "lots")]), now);
        assert!(!r.has_windows());
        let r = parse(&headers(&[("retry-after-ms", "250")]), now);
        assert_eq!(r.retry_after, Some(Duration::from_millis(250)));
    }
}
