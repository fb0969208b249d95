//! Runs on a `composer serve`, through its HTTP API (SERVER.md): each run
//! is one `POST ...runs?wait=true` that answers with the finished run
//! object, whose timestamps give the server's queue wait and whose
//! metrics give calls, tokens, cost and cache use.

use super::target::{Outcome, Sample, Target};
use super::LoadError;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Which recipe the server runs.
#[derive(Debug, Clone)]
pub enum RemoteRecipe {
    /// One of the tenant's recipes, by name.
    Named(String),
    /// A recipe's text, sent with every run (`POST /v1/runs`).
    Inline { name: String, text: String },
}

pub struct RemoteTarget {
    client: reqwest::Client,
    base: String,
    key: String,
    recipe: RemoteRecipe,
}

/// Kind for a run the server did not answer with a run object.
const HTTP: &str = "http";

impl RemoteTarget {
    pub fn new(base: &str, key: &str, recipe: RemoteRecipe) -> Result<RemoteTarget, LoadError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3600))
            .build()
            .map_err(|e| LoadError::Server {
                url: base.to_string(),
                message: e.to_string(),
            })?;
        Ok(RemoteTarget {
            client,
            base: base.trim_end_matches('/').to_string(),
            key: key.to_string(),
            recipe,
        })
    }

    fn error(&self, message: impl Into<String>) -> LoadError {
        LoadError::Server {
            url: self.base.clone(),
            message: message.into(),
        }
    }

    /// Before the test: the server answers and takes the key (a named
    /// recipe must exist).
    pub async fn check(&self) -> Result<(), LoadError> {
        let url = match &self.recipe {
            RemoteRecipe::Named(name) => format!("{}/v1/recipes/{name}", self.base),
            RemoteRecipe::Inline { .. } => format!("{}/v1/recipes", self.base),
        };
        let resp = self
            .client
            .get(&url)
            .bearer_auth(&self.key)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| self.error(e.to_string()))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        Err(self.error(format!("GET {url}: HTTP {status}: {}", api_message(&body))))
    }
}

/// The `error.message` of an API error body, else the body.
fn api_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(300).collect())
}

#[async_trait]
impl Target for RemoteTarget {
    async fn run_once(&self, inputs: serde_json::Map<String, Value>) -> Result<Sample, LoadError> {
        let (url, body) = match &self.recipe {
            RemoteRecipe::Named(name) => (
                format!("{}/v1/recipes/{name}/runs?wait=true", self.base),
                json!({"inputs": inputs}),
            ),
            RemoteRecipe::Inline { text, .. } => (
                format!("{}/v1/runs?wait=true", self.base),
                json!({"recipe": text, "inputs": inputs}),
            ),
        };
        let started = Instant::now();
        let sent = self
            .client
            .post(&url)
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(_) => return Ok(Sample::new(Outcome::Failed(HTTP.into()), started.elapsed())),
        };
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let latency = started.elapsed();
        match status.as_u16() {
            200..=299 => {}
            // The key, the recipe or its inputs are refused: every run
            // would be.
            401 | 403 | 404 | 413 => {
                return Err(self.error(format!("HTTP {status}: {}", api_message(&text))))
            }
            422 if !text.contains("invalid_input") => {
                return Err(self.error(format!("HTTP {status}: {}", api_message(&text))))
            }
            422 => {
                return Ok(Sample::new(
                    Outcome::Failed("invalid_input".into()),
                    latency,
                ))
            }
            429 => return Ok(Sample::new(Outcome::Failed("quota".into()), latency)),
            _ => return Ok(Sample::new(Outcome::Failed(HTTP.into()), latency)),
        }
        let run: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) => return Ok(Sample::new(Outcome::Failed(HTTP.into()), latency)),
        };
        Ok(sample_of_run(&run, latency))
    }

    fn mode(&self) -> &'static str {
        "server"
    }

    fn recipe(&self) -> String {
        match &self.recipe {
            RemoteRecipe::Named(name) | RemoteRecipe::Inline { name, .. } => name.clone(),
        }
    }
}

/// A sample from a finished run object.
pub fn sample_of_run(run: &Value, latency: Duration) -> Sample {
    let outcome = match run["status"].as_str() {
        Some("succeeded") => Outcome::Succeeded,
        Some("waiting") => Outcome::Failed("human".into()),
        other => Outcome::Failed(
            run["error"]["kind"]
                .as_str()
                .or(other)
                .unwrap_or(HTTP)
                .to_string(),
        ),
    };
    let mut sample = Sample::new(outcome, latency);
    let created = run["created_at"].as_str().and_then(parse_rfc3339);
    let began = run["started_at"].as_str().and_then(parse_rfc3339);
    if let (Some(c), Some(b)) = (created, began) {
        sample.queue_wait = Some(Duration::from_secs_f64((b - c).max(0.0)));
    }
    let totals = &run["metrics"]["totals"];
    sample.provider_calls = totals["calls"].as_u64().unwrap_or(0);
    sample.input_tokens = totals["input_tokens"].as_u64().unwrap_or(0);
    sample.output_tokens = totals["output_tokens"].as_u64().unwrap_or(0);
    sample.cost_usd = totals["cost_usd"].as_f64();
    let cache = &run["metrics"]["cache"];
    sample.cache_hits = cache["hits"].as_u64().unwrap_or(0);
    sample.cache_eligible = cache["eligible"].as_u64().unwrap_or(0);
    sample
}

/// `2026-12-06T01:02:03.456Z` → seconds since 1970 (UTC, `Z` only: what
/// the server writes).
pub fn parse_rfc3339(text: &str) -> Option<f64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let y: i64 = d.next()?.parse().ok()?;
    let m: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    let mut t = time.splitn(3, ':');
    let hh: f64 = t.next()?.parse().ok()?;
    let mm: f64 = t.next()?.parse().ok()?;
    let ss: f64 = t.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(y, m, day) as f64 * 86_400.0 + hh * 3600.0 + mm * 60.0 + ss)
}

/// (year, month, day) → days since 1970-01-01 (Howard Hinnant's
/// algorithm; the inverse of `runner::civil_from_days`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timestamps_parse() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.000Z"), Some(0.0));
        let t = parse_rfc3339("2026-11-30T01:02:03.500Z").unwrap();
        assert_eq!((t / 86_400.0) as i64, 20_787);
        let text = crate::server::routes::rfc3339(1_765_000_000.25);
        assert!((parse_rfc3339(&text).unwrap() - 1_765_000_000.25).abs() < 0.002);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn a_run_object_makes_a_sample() {
        let run = json!({
            "status": "failed",
            "created_at": "2026-12-06T00:00:00.000Z",
            "started_at": "2026-12-06T00:00:00.250Z",
            "error": {"kind": "provider", "message": "boom"},
            "metrics": {"totals": {"calls": 2, "input_tokens": 5, "output_tokens": 7},
                        "cache": {"hits": 1, "eligible": 2}},
        });
        let s = sample_of_run(&run, Duration::from_millis(300));
        assert_eq!(s.outcome, Outcome::Failed("provider".into()));
        assert_eq!(s.queue_wait, Some(Duration::from_millis(250)));
        assert_eq!(
            (s.provider_calls, s.input_tokens, s.output_tokens),
            (2, 5, 7)
        );
        assert_eq!((s.cache_hits, s.cache_eligible), (1, 2));
    }
}
