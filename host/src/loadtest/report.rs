//! The figures of a load test: an `Aggregate` that every finished run
//! adds its sample to, and the `LoadReport` made from it at the end.

use super::target::{Outcome, Sample};
use super::LoadError;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Latencies are kept in microseconds, from 1 µs to one hour, with three
/// significant digits.
const MAX_MICROS: u64 = 3_600_000_000;

/// Everything the finished runs reported so far.
pub struct Aggregate {
    latency: Histogram<u64>,
    queue_wait: Histogram<u64>,
    runs: u64,
    successes: u64,
    failures: BTreeMap<String, u64>,
    provider_calls: u64,
    input_tokens: u64,
    output_tokens: u64,
    cost_usd: Option<f64>,
    cache_hits: u64,
    cache_eligible: u64,
}

fn histogram() -> Result<Histogram<u64>, LoadError> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).map_err(|e| LoadError::Histogram(e.to_string()))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_MICROS)
}

impl Aggregate {
    pub fn new() -> Result<Aggregate, LoadError> {
        Ok(Aggregate {
            latency: histogram()?,
            queue_wait: histogram()?,
            runs: 0,
            successes: 0,
            failures: BTreeMap::new(),
            provider_calls: 0,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: None,
            cache_hits: 0,
            cache_eligible: 0,
        })
    }

    pub fn add(&mut self, s: &Sample) {
        self.runs += 1;
        match &s.outcome {
            Outcome::Succeeded => self.successes += 1,
            Outcome::Failed(kind) => *self.failures.entry(kind.clone()).or_default() += 1,
        }
        // Values are clamped into the histogram's bounds: recording cannot fail.
        let _ = self.latency.record(micros(s.latency));
        if let Some(w) = s.queue_wait {
            let _ = self.queue_wait.record(micros(w));
        }
        self.provider_calls += s.provider_calls;
        self.input_tokens += s.input_tokens;
        self.output_tokens += s.output_tokens;
        self.cost_usd = match (self.cost_usd, s.cost_usd) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
        self.cache_hits += s.cache_hits;
        self.cache_eligible += s.cache_eligible;
    }

    pub fn runs(&self) -> u64 {
        self.runs
    }

    pub fn failures(&self) -> u64 {
        self.runs - self.successes
    }

    /// The report, given what the driver measured around the runs.
    pub fn report(&self, around: Around) -> LoadReport {
        let elapsed = around.elapsed.as_secs_f64();
        let cpu_share = match (around.cpu_secs, elapsed > 0.0) {
            (Some(cpu), true) => Some(cpu / (elapsed * around.cores.max(1) as f64)),
            _ => None,
        };
        LoadReport {
            mode: around.mode,
            recipe: around.recipe,
            users: around.users,
            ramp_up_secs: around.ramp_up.as_secs_f64(),
            elapsed_secs: elapsed,
            runs: self.runs,
            successes: self.successes,
            failures: self.failures(),
            failures_by_kind: self.failures.clone(),
            throughput_per_sec: if elapsed > 0.0 {
                self.runs as f64 / elapsed
            } else {
                0.0
            },
            latency_ms: Percentiles::of(&self.latency),
            queue_wait_ms: (around.mode == "server").then(|| Percentiles::of(&self.queue_wait)),
            provider_calls: self.provider_calls,
            tokens: Tokens {
                input: self.input_tokens,
                output: self.output_tokens,
                total: self.input_tokens + self.output_tokens,
            },
            cost_usd: self.cost_usd,
            cache: CacheUse {
                hits: self.cache_hits,
                eligible: self.cache_eligible,
                hit_rate: (self.cache_eligible > 0)
                    .then(|| self.cache_hits as f64 / self.cache_eligible as f64),
            },
            peak_rss_bytes: around.peak_rss_bytes,
            cpu_secs: around.cpu_secs,
            cores: around.cores,
            cpu_share,
        }
    }
}

/// What the driver measured around the runs.
pub struct Around {
    pub mode: &'static str,
    pub recipe: String,
    pub users: usize,
    pub ramp_up: Duration,
    pub elapsed: Duration,
    pub peak_rss_bytes: Option<u64>,
    /// CPU the load-testing process used during the test.
    pub cpu_secs: Option<f64>,
    pub cores: usize,
}

/// Milliseconds; all zero when nothing was recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles {
                count: 0,
                min: 0.0,
                mean: 0.0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                max: 0.0,
            };
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            min: ms(h.min()),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheUse {
    pub hits: u64,
    pub eligible: u64,
    pub hit_rate: Option<f64>,
}

/// The figures of a load test (`composer load-test --json` prints this).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    /// `local` (in this process) or `server`.
    pub mode: &'static str,
    pub recipe: String,
    pub users: usize,
    pub ramp_up_secs: f64,
    /// From the first start to the last run's end.
    pub elapsed_secs: f64,
    pub runs: u64,
    pub successes: u64,
    pub failures: u64,
    /// By error kind (`provider`, `plugin_limit`, ...; `http` for a server
    /// that did not answer with a run).
    pub failures_by_kind: BTreeMap<String, u64>,
    /// Runs finished per second of `elapsed_secs`.
    pub throughput_per_sec: f64,
    /// Each run from asking to its result.
    pub latency_ms: Percentiles,
    /// Server mode: from queued to started on the server.
    pub queue_wait_ms: Option<Percentiles>,
    pub provider_calls: u64,
    pub tokens: Tokens,
    pub cost_usd: Option<f64>,
    pub cache: CacheUse,
    /// This process's peak resident memory (in server mode, the client's).
    pub peak_rss_bytes: Option<u64>,
    /// CPU this process used during the test, user + system seconds.
    pub cpu_secs: Option<f64>,
    pub cores: usize,
    /// `cpu_secs` over `elapsed_secs` × `cores`.
    pub cpu_share: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn around(elapsed: Duration) -> Around {
        Around {
            mode: "local",
            recipe: "r".into(),
            users: 2,
            ramp_up: Duration::ZERO,
            elapsed,
            peak_rss_bytes: None,
            cpu_secs: Some(1.0),
            cores: 2,
        }
    }

    #[test]
    fn samples_add_up() {
        let mut a = Aggregate::new().unwrap();
        for ms in [5u64, 10, 20, 40] {
            let mut s = Sample::new(Outcome::Succeeded, Duration::from_millis(ms));
            s.provider_calls = 2;
            s.input_tokens = 3;
            s.output_tokens = 4;
            s.cache_eligible = 2;
            s.cache_hits = 1;
            a.add(&s);
        }
        a.add(&Sample::new(
            Outcome::Failed("provider".into()),
            Duration::from_millis(1),
        ));
        let r = a.report(around(Duration::from_secs(1)));
        assert_eq!((r.runs, r.successes, r.failures), (5, 4, 1));
        assert_eq!(r.failures_by_kind["provider"], 1);
        assert_eq!(r.provider_calls, 8);
        assert_eq!(r.tokens.total, 28);
        assert_eq!(r.cache.hit_rate, Some(0.5));
        assert_eq!(r.throughput_per_sec, 5.0);
        assert_eq!(r.cpu_share, Some(0.5));
        let l = &r.latency_ms;
        assert!(l.min <= l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max);
        assert!((l.max - 40.0).abs() < 0.1, "{l:?}");
        assert!(r.queue_wait_ms.is_none());
    }

    #[test]
    fn an_empty_test_reports_zeros() {
        let r = Aggregate::new().unwrap().report(around(Duration::ZERO));
        assert_eq!(r.runs, 0);
        assert_eq!(r.latency_ms.max, 0.0);
        assert_eq!(r.throughput_per_sec, 0.0);
        assert_eq!(r.cpu_share, None);
    }
}
