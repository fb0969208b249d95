//! One pooled HTTP client per provider (keep-alive, HTTP/2 where the server
//! offers it, connect and request timeouts, a bounded idle pool), and the
//! mapping of HTTP outcomes to `ProviderError`s: 429 and 5xx are retryable
//! (with `Retry-After`), other 4xx are not and carry the provider's own
//! message, timeouts and dropped connections are retryable.

use super::retry::parse_retry_after;
use super::settings::{Endpoint, ProviderSettings};
use super::{ErrorKind, ProviderError};
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

/// Error bodies are read this far: only their message is wanted.
const MAX_ERROR_BODY: u64 = 64 << 10;

/// Sends a request and returns the body of a 2xx answer, at most
/// `max_bytes` of it: a larger reply is refused as soon as its length (or
/// what has arrived) says so, without reading the rest. Every reply's
/// rate-limit headers come back with it, or with the error.
pub async fn send(
    provider: &str,
    request: reqwest::RequestBuilder,
    max_bytes: u64,
) -> Result<bytes_body::Body, ProviderError> {
    let response = request
        .send()
        .await
        .map_err(|e| transport_error(provider, &e))?;
    let status = response.status();
    let now = SystemTime::now();
    let limits = super::limiter::headers::parse(response.headers(), now);
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now))
        .or(limits.retry_after);
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if status.is_success() {
        let bytes = match read_capped(provider, response, max_bytes).await? {
            Capped::Whole(b) => b,
            Capped::Cut { seen, declared } => {
                let mut e = too_large(provider, max_bytes, seen, declared);
                e.status = Some(status.as_u16());
                e.limits = Some(Box::new(limits));
                return Err(e);
            }
        };
        return Ok(bytes_body::Body {
            bytes,
            content_type,
            limits,
        });
    }
    // Only the start of an error body: its message.
    let body = match read_capped(provider, response, MAX_ERROR_BODY.min(max_bytes)).await {
        Ok(Capped::Whole(b)) => b,
        Ok(Capped::Cut { .. }) | Err(_) => bytes::Bytes::new(),
    };
    let code = status.as_u16();
    let retryable = code == 429 || code == 408 || status.is_server_error();
    let detail = provider_message(&body);
    let message = match code {
        401 | 403 => format!("HTTP {code}: {detail} (check the API key)"),
        429 => format!("HTTP 429 rate limited: {detail}"),
        _ => format!("HTTP {code}: {detail}"),
    };
    Err(ProviderError {
        status: Some(code),
        retry_after,
        class: if code == 408 {
            ErrorKind::Timeout
        } else {
            ErrorKind::Provider
        },
        limits: Some(Box::new(limits)),
        ..ProviderError::new(provider, message, retryable)
    })
}

enum Capped {
    Whole(bytes::Bytes),
    /// Over the cap: `seen` bytes had arrived (or `declared` was the
    /// announced length) when reading stopped.
    Cut {
        seen: u64,
        declared: Option<u64>,
    },
}

/// Reads a body up to `cap` bytes; stops at the first byte beyond.
async fn read_capped(
    provider: &str,
    mut response: reqwest::Response,
    cap: u64,
) -> Result<Capped, ProviderError> {
    let declared = response.content_length();
    if declared.is_some_and(|len| len > cap) {
        return Ok(Capped::Cut { seen: 0, declared });
    }
    let first = declared.unwrap_or(0).min(cap).min(1 << 20);
    let mut body = bytes::BytesMut::with_capacity(usize::try_from(first).unwrap_or(0));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(provider, &e))?
    {
        let seen = body.len() as u64 + chunk.len() as u64;
        if seen > cap {
            return Ok(Capped::Cut { seen, declared });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Capped::Whole(body.freeze()))
}

fn too_large(provider: &str, cap: u64, seen: u64, declared: Option<u64>) -> ProviderError {
    let size = match declared {
        Some(len) => format!("{len} bytes"),
        None => format!("more than {seen} bytes"),
    };
    ProviderError::new(
        provider,
        format!(
            "the reply is too large ({size}; the limit is {cap} bytes, `max_response_bytes` under [providers]); it was not read"
        ),
        false,
    )
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
    ProviderError {
        class: if e.is_timeout() {
            ErrorKind::Timeout
        } else {
            ErrorKind::Provider
        },
        ..ProviderError::new(provider, message, true)
    }
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
        /// The reply's rate-limit headers.
        pub limits: crate::providers::limiter::headers::LimitReport,
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

/// Where a provider's key may go: the origin (scheme, host, port) of its
/// configured base URL. A model mapping's `base_url` elsewhere is refused
/// while a key is set, so a recipe cannot send a configured key to a host
/// of its choosing; without a key there is nothing to leak.
#[derive(Debug, Clone)]
pub struct KeyScope {
    provider: String,
    base_url: String,
    origin: Option<String>,
    key_env: String,
    has_key: bool,
}

fn origin(url: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()
        .map(|u| u.origin().ascii_serialization())
        .filter(|o| o != "null")
}

impl KeyScope {
    /// The base URL calls for `model` go to: its `base_url` when it names
    /// the provider's own host (or the provider has no key), else an error
    /// naming the setting.
    pub fn base_for(&self, model: &ModelSpec) -> Result<String, ProviderError> {
        let Some(value) = model.params.get("base_url") else {
            return Ok(self.base_url.clone());
        };
        let Some(base) = value.as_str() else {
            return Err(ProviderError::refused(
                &self.provider,
                format!("the model's `base_url` must be a URL, found {value}"),
            ));
        };
        let base = base.trim_end_matches('/');
        if !self.has_key {
            return Ok(base.to_string());
        }
        let theirs = origin(base);
        if theirs.is_some() && theirs == self.origin {
            return Ok(base.to_string());
        }
        Err(ProviderError::refused(
            &self.provider,
            format!(
                "the model's `base_url` `{base}` is not on {}, the host `{}` is configured for, so the call was not made (its key `{}` only goes there); to call another server, configure it as an endpoint of its own, `[providers.endpoint.NAME]` with `base_url` and its own `api_key_env`, and name that provider in the model mapping",
                self.origin.as_deref().unwrap_or(&self.base_url),
                self.provider,
                self.key_env
            ),
        ))
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
    pub scope: KeyScope,
    /// Reply bodies beyond this are refused.
    pub max_response_bytes: u64,
}

impl Connection {
    pub fn new(
        name: &str,
        endpoint: &Endpoint,
        settings: &ProviderSettings,
        keys: &super::keys::Keys,
        make: &super::policy::MakeLimiter,
    ) -> Result<Connection, String> {
        let base_url = keys
            .get(&endpoint.base_url_env)
            .unwrap_or_else(|| endpoint.base_url.clone())
            .trim_end_matches('/')
            .to_string();
        let key = keys.get(&endpoint.api_key_env);
        Ok(Connection {
            name: name.to_string(),
            scope: KeyScope {
                provider: name.to_string(),
                origin: origin(&base_url),
                base_url: base_url.clone(),
                key_env: endpoint.api_key_env.clone(),
                has_key: key.is_some(),
            },
            base_url,
            key,
            key_env: endpoint.api_key_env.clone(),
            key_required: endpoint.key_required,
            client: client(settings)?,
            policy: std::sync::Arc::new(super::policy::CallPolicy::with_limiters(
                name, settings, make,
            )?),
            default_timeout: Duration::from_secs_f64(settings.request_timeout_secs.max(0.001)),
            max_response_bytes: settings.max_response_bytes,
        })
    }

    /// The variable to set when the key is required and missing.
    pub fn missing_key(&self) -> Option<&str> {
        (self.key_required && self.key.is_none()).then_some(self.key_env.as_str())
    }

    /// The key, or an error naming the variable to set.
    pub fn key(&self) -> Result<Option<&str>, ProviderError> {
        match (&self.key, self.missing_key()) {
            (_, Some(var)) => Err(ProviderError::refused(
                &self.name,
                format!("no API key: set `{var}` in the environment or a .env file"),
            )),
            (key, None) => Ok(key.as_deref()),
        }
    }

    /// `path` under the model mapping's `base_url`, else the connection's;
    /// a `base_url` on another host is refused while a key is set
    /// (`KeyScope`).
    pub fn url(&self, model: &ModelSpec, path: &str) -> Result<String, ProviderError> {
        Ok(format!("{}{path}", self.scope.base_for(model)?))
    }

    pub fn timeout(&self, model: &ModelSpec) -> Duration {
        model_timeout(model).unwrap_or(self.default_timeout)
    }

    /// Sends a request (`send`) with this provider's reply cap.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<bytes_body::Body, ProviderError> {
        send(&self.name, request, self.max_response_bytes).await
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
        estimate: super::limiter::Cost,
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
                    let body = self.send(self.authorize(r, auth)?).await?;
                    let parsed = body
                        .json::<serde_json::Value>(&self.name)
                        .and_then(|reply| parse(&self.name, &reply));
                    let (text, usage) = parsed.map_err(|mut e| {
                        e.limits = Some(Box::new(body.limits.clone()));
                        e
                    })?;
                    Ok(super::policy::Answer {
                        value: (text, usage.clone()),
                        usage,
                        limits: Some(body.limits),
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
