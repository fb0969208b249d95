//! `perplexity_search`: asks Perplexity's chat-completions API and returns
//! `{"content", "citations"}` (the corpus contract: input `search_query`,
//! `recency`, `mode`).
//!
//! - `POST {PERPLEXITY_BASE_URL}/chat/completions` (default
//!   `https://api.perplexity.ai`) with model `sonar` (`mode: deep` →
//!   `sonar-pro`, or `PERPLEXITY_MODEL`), the query as the user message and
//!   `search_recency_filter` from `recency` (`any` sends none);
//! - `content` is the first choice's message, `citations` the reply's
//!   `citations` (else the URLs of its `search_results`);
//! - 429 and 5xx are retried (3 attempts, exponential backoff from
//!   `PERPLEXITY_RETRY_BASE_MS`, default 1000, honouring `Retry-After` up to
//!   30 s); other errors and the host's refusals fail at once;
//! - redirects are followed (5 hops), each one checked by the host.
//!
//! The plugin reaches the network only through the host, which must grant
//! it the API's origin and the key:
//!
//! ```toml
//! [plugins.overrides.perplexity_search]
//! allowed_hosts = ["https://api.perplexity.ai"]
//! secrets = ["PERPLEXITY_API_KEY"]
//! ```

mod http;

use http::{Response, TransportError, Url};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Deserialize)]
pub struct Input {
    pub search_query: String,
    #[serde(default)]
    pub recency: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Output {
    pub content: String,
    pub citations: Vec<String>,
}

/// What the plugin reads from its (granted) environment.
pub struct Config {
    pub api_key: String,
    pub base_url: String,
    pub model: Option<String>,
    pub retry_base_ms: u64,
}

const ATTEMPTS: u32 = 3;
const MAX_REDIRECTS: u32 = 5;
const MAX_RETRY_AFTER_MS: u64 = 30_000;

impl Config {
    fn from_env() -> Result<Config, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let api_key = var("PERPLEXITY_API_KEY").ok_or(
            "`PERPLEXITY_API_KEY` is not available to the plugin: grant it with \
             `secrets = [\"PERPLEXITY_API_KEY\"]` under `[plugins.overrides.perplexity_search]`",
        )?;
        Ok(Config {
            api_key,
            base_url: var("PERPLEXITY_BASE_URL")
                .unwrap_or_else(|| "https://api.perplexity.ai".into()),
            model: var("PERPLEXITY_MODEL"),
            retry_base_ms: var("PERPLEXITY_RETRY_BASE_MS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000),
        })
    }
}

/// The chat-completions request body.
pub fn request_body(input: &Input, model: Option<&str>) -> Result<Value, String> {
    let deep = match input.mode.as_deref().map(str::trim) {
        None | Some("") | Some("fast") => false,
        Some("deep") => true,
        Some(other) => return Err(format!("`mode` must be `fast` or `deep`, not `{other}`")),
    };
    let model = model.unwrap_or(if deep { "sonar-pro" } else { "sonar" });
    let mut body = json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "Be precise and concise. Cite your sources."},
            {"role": "user", "content": input.search_query},
        ],
    });
    match input.recency.as_deref().map(str::trim) {
        None | Some("") | Some("any") => {}
        Some(r @ ("hour" | "day" | "week" | "month" | "year")) => {
            body["search_recency_filter"] = json!(r);
        }
        Some(other) => {
            return Err(format!(
                "`recency` must be one of hour, day, week, month, year, any; not `{other}`"
            ))
        }
    }
    Ok(body)
}

/// `content` and `citations` of a successful reply.
pub fn parse_reply(body: &[u8]) -> Result<Output, String> {
    let reply: Value =
        serde_json::from_slice(body).map_err(|e| format!("Perplexity's reply is not JSON: {e}"))?;
    let content = reply["choices"][0]["message"]["content"]
        .as_str()
        .ok_or("Perplexity's reply has no `choices[0].message.content`")?
        .to_string();
    let mut citations: Vec<String> = reply["citations"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if citations.is_empty() {
        citations = reply["search_results"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["url"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
    }
    Ok(Output { content, citations })
}

/// The API's own words for a failed reply (`{"error": {"message"}}`).
fn api_message(r: &Response) -> String {
    let text = String::from_utf8_lossy(&r.body);
    let parsed: Option<Value> = serde_json::from_str(&text).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v["error"]["message"].as_str().or(v["detail"].as_str()))
        .map(str::to_string)
        .unwrap_or_else(|| text.chars().take(200).collect());
    format!("HTTP {}: {message}", r.status)
}

/// How long to wait before attempt `attempt + 1` (1-based `attempt`).
pub fn retry_delay_ms(base_ms: u64, attempt: u32, retry_after: Option<&str>) -> u64 {
    if let Some(secs) = retry_after.and_then(|v| v.trim().parse::<u64>().ok()) {
        return secs.saturating_mul(1000).min(MAX_RETRY_AFTER_MS);
    }
    base_ms.saturating_mul(1 << (attempt.saturating_sub(1)).min(10))
}

fn retryable(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

/// One request, following redirects (each hop goes through the host).
fn send_following(
    url: &Url,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Response, TransportError> {
    let mut url = url.clone();
    let mut method = "POST";
    let mut body = body.to_vec();
    for _ in 0..=MAX_REDIRECTS {
        let response = http::send(method, &url, headers, &body)?;
        let redirect = matches!(response.status, 301 | 302 | 303 | 307 | 308);
        let Some(location) = response.header("location").filter(|_| redirect) else {
            return Ok(response);
        };
        url = url.resolve(location).map_err(|message| TransportError {
            message,
            refused: false,
        })?;
        if matches!(response.status, 301..=303) {
            method = "GET";
            body.clear();
        }
        composer_plugin_sdk::log::debug(&format!("redirected to {url}"));
    }
    Err(TransportError {
        message: format!("more than {MAX_REDIRECTS} redirects"),
        refused: false,
    })
}

pub fn perplexity_search(input: Input) -> Result<Output, String> {
    let config = Config::from_env()?;
    let body = request_body(&input, config.model.as_deref())?;
    let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    let url = Url::join(&config.base_url, "/chat/completions")?;
    let headers = vec![
        (
            "Authorization".to_string(),
            format!("Bearer {}", config.api_key),
        ),
        ("Content-Type".to_string(), "application/json".to_string()),
        ("Accept".to_string(), "application/json".to_string()),
    ];
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let (retry, after) = match send_following(&url, &headers, &body) {
            Ok(r) if (200..300).contains(&r.status) => return parse_reply(&r.body),
            Ok(r) if retryable(r.status) => {
                last = api_message(&r);
                (true, r.header("retry-after").map(str::to_string))
            }
            Ok(r) => {
                return Err(format!(
                    "Perplexity refused the search: {}",
                    api_message(&r)
                ))
            }
            Err(e) if e.refused => return Err(format!("request to {url} failed: {e}")),
            Err(e) => {
                last = e.message;
                (true, None)
            }
        };
        if retry && attempt < ATTEMPTS {
            let ms = retry_delay_ms(config.retry_base_ms, attempt, after.as_deref());
            composer_plugin_sdk::log::warn(&format!(
                "attempt {attempt} failed ({last}); retrying in {ms} ms"
            ));
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }
    Err(format!(
        "Perplexity search failed after {ATTEMPTS} attempts: {last}"
    ))
}

composer_plugin_sdk::export!(
    perplexity_search: "Searches the web with Perplexity (`search_query`, `recency`, `mode`) and returns `content` and `citations`",
);

#[cfg(test)]
mod tests {
    use super::*;

    fn input(recency: Option<&str>, mode: Option<&str>) -> Input {
        Input {
            search_query: "latest AI news".into(),
            recency: recency.map(String::from),
            mode: mode.map(String::from),
        }
    }

    #[test]
    fn the_request_uses_sonar_and_the_recency_filter() {
        let b = request_body(&input(Some("week"), Some("fast")), None).unwrap();
        assert_eq!(b["model"], "sonar");
        assert_eq!(b["search_recency_filter"], "week");
        assert_eq!(b["messages"][1]["content"], "latest AI news");
        let deep = request_body(&input(Some("any"), Some("deep")), None).unwrap();
        assert_eq!(deep["model"], "sonar-pro");
        assert!(deep.get("search_recency_filter").is_none());
        assert!(request_body(&input(Some("decade"), None), None).is_err());
        assert!(request_body(&input(None, Some("slow")), None).is_err());
    }

    #[test]
    fn replies_give_content_and_citations() {
        let out = parse_reply(
            br#"{"choices":[{"message":{"role":"assistant","content":"News."}}],"citations":["https://a.example"]}"#,
        )
        .unwrap();
        assert_eq!(out.content, "News.");
        assert_eq!(out.citations, vec!["https://a.example"]);
        let from_results = parse_reply(
            br#"{"choices":[{"message":{"content":"x"}}],"search_results":[{"url":"https://b.example","title":"b"}]}"#,
        )
        .unwrap();
        assert_eq!(from_results.citations, vec!["https://b.example"]);
        assert!(parse_reply(b"{}").is_err());
    }

    #[test]
    fn retries_back_off_and_honour_retry_after() {
        assert_eq!(retry_delay_ms(100, 1, None), 100);
        assert_eq!(retry_delay_ms(100, 2, None), 200);
        assert_eq!(retry_delay_ms(100, 1, Some("2")), 2000);
        assert_eq!(retry_delay_ms(100, 1, Some("9999")), MAX_RETRY_AFTER_MS);
    }
}
