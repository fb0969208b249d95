//! One pooled HTTP client per provider (keep-alive, HTTP/2 where the server
//! offers it, connect and request timeouts, a bounded idle pool), and the
//! mapping of HTTP outcomes to `ProviderError`s: 429 and 5xx are retryable
//! (with `Retry-After`), other 4xx are not and carry the provider's own
//! message, timeouts and dropped connections are retryable.

use super::retry::parse_retry_after;
use super::settings::{Endpoint, ProviderSettings};
use super::ProviderError;
use crate::recipe::model::ModelSpec;
use std::time::{Duration, SystemTime};

/// The client a provider uses for every call.
pub fn client(settings: &ProviderSettings) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs_f64(
            settings.connect_timeout_secs.max(0.001),
        ))
        .timeout(Duration::from_secs_f64(
            settings.request_timeout_secs.max(0.001),
        ))
        .pool_max_idle_per_host(settings.pool_max_idle_per_host)
        .pool_idle_timeout(Duration::from_secs_f64(
            settings.pool_idle_timeout_secs.max(0.001),
        ))
        .tcp_keepalive(Duration::from_secs(30))
        .user_agent(concat!("composer/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// A model mapping's `timeout` (seconds), if any.
pub fn model_timeout(model: &ModelSpec) -> Option<Duration> {
    model
        .params
        .get("timeout")
        .and_then(|v| v.as_f64())
        .filter(|t| *t > 0.0)
        .map(Duration::from_secs_f64)
}

/// Sends a request and returns the body of a 2xx answer.
pub async fn send(
    provider: &str,
    request: reqwest::RequestBuilder,
) -> Result<bytes_body::Body, ProviderError> {
    let response = request
        .send()
        .await
        .map_err(|e| transport_error(provider, &e))?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response
        .bytes()
        .await
        .map_err(|e| transport_error(provider, &e))?;
    if status.is_success() {
        return Ok(bytes_body::Body {
            bytes: body,
            content_type,
        });
    }
    let code = status.as_u16();
    let retryable = code == 429 || code == 408 || status.is_server_error();
    let detail = provider_message(&body);
    let message = match code {
        401 | 403 => format!("HTTP {code}: {detail} (check the API key)"),
        429 => format!("HTTP 429 rate limited: {detail}"),
        _ => format!("HTTP {code}: {detail}"),
    };
    Err(ProviderError {
        provider: provider.to_string(),
        message,
        retryable,
        status: Some(code),
        retry_after,
        attempts: 1,
    })
}

/// The error message a provider put in its JSON error body, or the start of
/// the body.
fn provider_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let candidates = [
            v.pointer("/error/message"),
            v.pointer("/error/detail"),
            v.pointer("/detail/message"),
            v.pointer("/message"),
            v.pointer("/detail"),
            v.pointer("/error"),
        ];
        for c in candidates.into_iter().flatten() {
            if let Some(s) = c.as_str() {
                return s.to_string();
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let t: String = text.trim().chars().take(300).collect();
    if t.is_empty() {
        "no message".into()
    } else {
        t
    }
}

fn transport_error(provider: &str, e: &reqwest::Error) -> ProviderError {
    let message = if e.is_timeout() {
        "timed out waiting for the provider".to_string()
    } else if e.is_connect() {
        format!("cannot connect: {}", root_cause(e))
    } else {
        format!("connection failed: {}", root_cause(e))
    };
    ProviderError::new(provider, message, true)
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut current = e;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// A reply body that did not parse: worth a retry (a proxy or an overloaded
/// server can cut a reply short).
pub fn malformed(provider: &str, what: &str, e: impl std::fmt::Display) -> ProviderError {
    ProviderError::new(
        provider,
        format!("malformed {what} from the provider: {e}"),
        true,
    )
}

pub mod bytes_body {
    /// A successful reply's body.
    pub struct Body {
        pub bytes: bytes::Bytes,
        pub content_type: String,
    }

    impl Body {
        pub fn json<T: serde::de::DeserializeOwned>(
            &self,
            provider: &str,
        ) -> Result<T, super::ProviderError> {
            serde_json::from_slice(&self.bytes).map_err(|e| super::malformed(provider, "JSON", e))
        }
    }
}

/// A provider's connection: its pooled client, base URL, key and policy.
pub struct Connection {
    pub name: String,
    pub base_url: String,
    key: Option<String>,
    key_env: String,
    key_required: bool,
    pub client: reqwest::Client,
    pub policy: std::sync::Arc<super::policy::CallPolicy>,
    pub default_timeout: Duration,
}

impl Connection {
    pub fn new(
        name: &str,
        endpoint: &Endpoint,
        settings: &ProviderSettings,
        keys: &super::keys::Keys,
    ) -> Result<Connection, String> {
        let base_url = keys
            .get(&endpoint.base_url_env)
            .unwrap_or_else(|| endpoint.base_url.clone())
            .trim_end_matches('/')
            .to_string();
        Ok(Connection {
            name: name.to_string(),
            base_url,
            key: keys.get(&endpoint.api_key_env),
            key_env: endpoint.api_key_env.clone(),
            key_required: endpoint.key_required,
            client: client(settings)?,
            policy: std::sync::Arc::new(super::policy::CallPolicy::new(name, settings)?),
            default_timeout: Duration::from_secs_f64(settings.request_timeout_secs.max(0.001)),
        })
    }

    /// The variable to set when the key is required and missing.
    pub fn missing_key(&self) -> Option<&str> {
        (self.key_required && self.key.is_none()).then_some(self.key_env.as_str())
    }

    /// The key, or an error naming the variable to set.
    pub fn key(&self) -> Result<Option<&str>, ProviderError> {
        match (&self.key, self.missing_key()) {
            (_, Some(var)) => Err(ProviderError::new(
                &self.name,
                format!("no API key: set `{var}` in the environment or a .env file"),
                false,
            )),
            (key, None) => Ok(key.as_deref()),
        }
    }

    /// `base_url` of the model mapping, else the connection's.
    pub fn url(&self, model: &ModelSpec, path: &str) -> String {
        let base = model
            .params
            .get("base_url")
            .and_then(|v| v.as_str())
            .map(|b| b.trim_end_matches('/').to_string())
            .unwrap_or_else(|| self.base_url.clone());
        format!("{base}{path}")
    }

    pub fn timeout(&self, model: &ModelSpec) -> Duration {
        model_timeout(model).unwrap_or(self.default_timeout)
    }
}

/// Reads a language reply: its text and usage.
pub type ParseReply =
    fn(&str, &serde_json::Value) -> Result<(String, Option<super::Usage>), ProviderError>;

/// How a protocol sends its API key.
#[derive(Debug, Clone, Copy)]
pub enum Auth {
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// The key alone in this header.
    Header(&'static str),
}

impl Connection {
    /// The request with the key attached (none when the provider needs none).
    pub fn authorize(
        &self,
        r: reqwest::RequestBuilder,
        auth: Auth,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        Ok(match (self.key()?, auth) {
            (None, _) => r,
            (Some(key), Auth::Bearer) => r.bearer_auth(key),
            (Some(key), Auth::Header(name)) => r.header(name, key),
        })
    }

    /// What every language protocol does: POST `body` as JSON to `url`
    /// under the call policy (limits, retries), and read the text and usage
    /// of the reply with `parse`.
    #[allow(clippy::too_many_arguments)]
    pub async fn complete_json(
        &self,
        request: &super::LanguageRequest,
        url: &str,
        body: &serde_json::Value,
        estimate: u64,
        auth: Auth,
        headers: &[(&str, &str)],
        parse: ParseReply,
    ) -> Result<super::LanguageResponse, ProviderError> {
        let ((text, usage), stats) = self
            .policy
            .execute(
                &request.model.model,
                estimate,
                request.retry.as_ref(),
                request.observer.as_ref(),
                || async {
                    let mut r = self
                        .client
                        .post(url)
                        .timeout(self.timeout(&request.model))
                        .json(body);
                    for (name, value) in headers {
                        r = r.header(*name, *value);
                    }
                    let reply: serde_json::Value = send(&self.name, self.authorize(r, auth)?)
                        .await?
                        .json(&self.name)?;
                    let (text, usage) = parse(&self.name, &reply)?;
                    Ok(super::policy::Answer {
                        value: (text, usage.clone()),
                        usage,
                    })
                },
            )
            .await?;
        Ok(super::LanguageResponse {
            text,
            usage,
            mock: false,
            stats,
        })
    }
}

/// The standard sampling parameters of a model mapping, and its `params:`
/// mapping passed through as-is (it wins).
pub fn sampling(
    model: &ModelSpec,
    names: &[(&str, &str)],
) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for (ours, theirs) in names {
        if let Some(v) = model.params.get(*ours) {
            out.insert((*theirs).to_string(), v.clone());
        }
    }
    if let Some(serde_json::Value::Object(extra)) = model.params.get("params") {
        for (k, v) in extra {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}
