//! Outbound HTTP for plugins (`wasi:http/outgoing-handler`), only to the
//! origins a plugin is granted.
//!
//! Every request a guest sends passes `OutboundHooks::send_request`, which
//! in order: counts it against `max_http_requests`; matches its scheme,
//! host and port against the plugin's `allowed_hosts` (`AllowList`);
//! resolves the host and refuses loopback, private, link-local and other
//! non-public addresses unless the matching entry names that address (or
//! `localhost`) itself, or the plugin has `allow_private_addresses`; for
//! plain `http` connects to the address it checked (no second lookup a
//! rebinding DNS server could answer differently; `https` names are
//! checked again by the certificate); caps the request and response bodies;
//! and bounds the request by `http_timeout_ms`, never past the call's own
//! deadline (when the call's deadline comes first, the call's timeout is
//! what fires, so the error names `timeout_ms`).
//!
//! Redirects are not followed by the host (`wasi:http` hands the 3xx to the
//! guest), so every hop a guest follows is checked like a first request.
//!
//! A refusal reaches the guest as `internal-error` with the text of the
//! `OutboundProblem`, naming the host and the setting to change; the host
//! also keeps it, so a call that then fails reports it as
//! `PluginError::Outbound` whatever the guest made of it.
//!
//! Each request ends as one `HttpRequestRecord` (status, bytes both ways,
//! time, error) handed to the call's `on_http` (a run event).
//!
//! The seam for hosted mode: `HttpPolicy` is per call, built from config by
//! `PluginHost::call_settings`; a run that brings its own (a tenant's)
//! overrides replaces the config's `allowed_hosts` there.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// An `allowed_hosts` entry that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`allowed_hosts` entry `{entry}`: {reason}")]
pub struct BadAllowedHost {
    pub entry: String,
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Name(String),
    /// `*.example.com`: any name ending in `.example.com` (not the bare
    /// `example.com`, as in Spin).
    Subdomains(String),
    Ip(IpAddr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortPattern {
    Any,
    /// No port written: the scheme's default (80, 443).
    Default,
    Port(u16),
}

/// One origin a plugin may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigin {
    /// `http` or `https`; None for `*`.
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

impl AllowedOrigin {
    /// `scheme://host[:port]`, where each part may be `*`, the host may be
    /// `*.domain`, and an IPv6 host is written in brackets.
    pub fn parse(entry: &str) -> Result<AllowedOrigin, BadAllowedHost> {
        let bad = |reason| BadAllowedHost {
            entry: entry.to_string(),
            reason,
        };
        let text = entry.trim();
        let (scheme, rest) = text.split_once("://").ok_or_else(|| {
            bad("write it as `scheme://host[:port]`, e.g. `https://api.example.com`")
        })?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "*" => None,
            s @ ("http" | "https") => Some(s.to_string()),
            _ => return Err(bad("the scheme must be `http`, `https` or `*`")),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('/') || authority.contains('?') {
            return Err(bad("an origin has no path: list the host only"));
        }
        if authority.contains('@') {
            return Err(bad("an origin has no user name"));
        }
        let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
            let (ip, after) = inner
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address needs its closing `]`"))?;
            let ip: Ipv6Addr = ip.parse().map_err(|_| bad("not an IPv6 address"))?;
            (HostPattern::Ip(IpAddr::V6(ip)), after.strip_prefix(':'))
        } else {
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            let host = host.to_ascii_lowercase();
            let pattern = if host == "*" {
                HostPattern::Any
            } else if let Some(domain) = host.strip_prefix("*.") {
                if domain.is_empty() || domain.contains('*') {
                    return Err(bad("a wildcard is `*` or `*.domain`"));
                }
                HostPattern::Subdomains(domain.to_string())
            } else if host.contains('*') {
                return Err(bad("a wildcard is `*` or `*.domain`"));
            } else if host.is_empty() {
                return Err(bad("the host is missing"));
            } else if let Ok(ip) = host.parse::<Ipv4Addr>() {
                HostPattern::Ip(IpAddr::V4(ip))
            } else {
                HostPattern::Name(host.trim_end_matches('.').to_string())
            };
            (pattern, port)
        };
        let port = match port {
            None => PortPattern::Default,
            Some("*") => PortPattern::Any,
            Some(p) => PortPattern::Port(
                p.parse()
                    .map_err(|_| bad("the port must be a number or `*`"))?,
            ),
        };
        Ok(AllowedOrigin { scheme, host, port })
    }

    fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme_ok = self.scheme.as_deref().is_none_or(|s| s == scheme);
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Default => port == default_port(scheme),
            PortPattern::Port(p) => p == port,
        };
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Name(name) => name == host,
            HostPattern::Subdomains(domain) => host
                .strip_suffix(domain.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            HostPattern::Ip(ip) => parse_ip(host) == Some(*ip),
        };
        scheme_ok && port_ok && host_ok
    }

    /// Whether this entry itself names `ip` (or `localhost` for a loopback
    /// address): the explicit grant a non-public address needs.
    fn names_address(&self, ip: IpAddr) -> bool {
        match &self.host {
            HostPattern::Ip(allowed) => *allowed == ip,
            HostPattern::Name(name) => name == "localhost" && ip.is_loopback(),
            HostPattern::Any | HostPattern::Subdomains(_) => false,
        }
    }
}

/// A plugin's `allowed_hosts`. Empty: no request is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<AllowedOrigin>,
}

impl AllowList {
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowList, BadAllowedHost> {
        let entries = entries
            .iter()
            .map(|e| AllowedOrigin::parse(e.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(AllowList { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first entry allowing `scheme://host:port` (host lowercase, IPv6
    /// with or without brackets).
    pub fn matching(&self, scheme: &str, host: &str, port: u16) -> Option<&AllowedOrigin> {
        self.entries.iter().find(|e| e.matches(scheme, host, port))
    }
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

fn parse_ip(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// Loopback, private, link-local, shared (CGNAT), unspecified, broadcast,
/// multicast, documentation and benchmarking ranges: anything that is not
/// a public unicast address (IPv4-mapped IPv6 judged as IPv4).
pub fn is_non_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_non_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
        }
    }
}

/// Why the host refused or cut a request. The text names the setting to
/// change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundProblem {
    #[error("host not allowed: `{origin}` is not in `allowed_hosts` of `[plugins.overrides.{plugin}]`{}", empty_note(.empty))]
    NotAllowed {
        origin: String,
        plugin: String,
        empty: bool,
    },
    #[error("host not allowed: `{host}` is {address}, a loopback or private address; list `{scheme}://{address_text}:{port}` in `allowed_hosts` or set `allow_private_addresses = true` in `[plugins.overrides.{plugin}]`", address_text = ip_text_ref(.address))]
    PrivateAddress {
        scheme: String,
        host: String,
        address: IpAddr,
        port: u16,
        plugin: String,
    },
    #[error("more than {limit} HTTP requests in one call (limit `max_http_requests`)")]
    TooManyRequests { limit: u64 },
    #[error("request body of more than {limit} bytes (limit `max_http_request_bytes`)")]
    RequestTooLarge { limit: u64 },
    #[error("response body of more than {limit} bytes, cut at the cap (limit `max_http_response_bytes`)")]
    ResponseTooLarge { limit: u64 },
    #[error("no complete response within {ms} ms (limit `http_timeout_ms`)")]
    TimedOut { ms: u64 },
}

fn empty_note(empty: &bool) -> &'static str {
    if *empty {
        " (which grants no host)"
    } else {
        ""
    }
}

fn ip_text_ref(ip: &IpAddr) -> String {
    ip_text(*ip)
}

fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// What one call's requests may do (per call: see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpPolicy {
    /// The plugin (file stem), named in refusals.
    pub plugin: String,
    pub allowed: AllowList,
    pub allow_private_addresses: bool,
    pub max_requests: u64,
    pub max_request_bytes: u64,
    pub max_response_bytes: u64,
    pub request_timeout: Duration,
}

/// One outbound request, as reported in the run's events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRequestRecord {
    pub plugin: String,
    pub method: String,
    /// Scheme, host, port and path; the query is left out (it may hold
    /// keys).
    pub url: String,
    /// None when no response came.
    pub status: Option<u16>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// Seconds, from the request to its last response byte (or failure).
    pub secs: f64,
    /// Refused by the host's policy (never sent, or cut).
    pub refused: bool,
    pub error: Option<String>,
}

/// Told of each request when it ends.
pub type HttpObserver = Arc<dyn Fn(HttpRequestRecord) + Send + Sync>;

/// State shared by one call's requests.
struct Shared {
    policy: HttpPolicy,
    /// When the call as a whole times out.
    call_deadline: Instant,
    requests: AtomicU64,
    records: Mutex<Vec<HttpRequestRecord>>,
    /// The last refusal, with its URL.
    problem: Mutex<Option<(String, OutboundProblem)>>,
    observer: Option<HttpObserver>,
}

/// One call's outbound HTTP: the `WasiHttpHooks` of its store.
pub struct OutboundHooks {
    shared: Arc<Shared>,
}

/// What a call's requests did, read after the call.
#[derive(Clone)]
pub struct OutboundLog {
    shared: Arc<Shared>,
}

impl OutboundLog {
    pub fn records(&self) -> Vec<HttpRequestRecord> {
        self.shared
            .records
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// The last request the host refused or cut, and why.
    pub fn problem(&self) -> Option<(String, OutboundProblem)> {
        self.shared.problem.lock().ok().and_then(|p| p.clone())
    }
}

impl OutboundHooks {
    /// Hooks for one call whose deadline is `call_deadline`; `policy` None:
    /// the plugin may reach nothing.
    pub fn new(
        policy: HttpPolicy,
        call_deadline: Instant,
        observer: Option<HttpObserver>,
    ) -> (OutboundHooks, OutboundLog) {
        let shared = Arc::new(Shared {
            policy,
            call_deadline,
            requests: AtomicU64::new(0),
            records: Mutex::new(Vec::new()),
            problem: Mutex::new(None),
            observer,
        });
        (
            OutboundHooks {
                shared: shared.clone(),
            },
            OutboundLog { shared },
        )
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type SendResult = Result<(http::Response<WasiBody>, IoFuture), HttpError>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let shared = self.shared.clone();
        Box::new(send(shared, request, options))
    }
}

/// A request in flight, until its record is written.
struct Pending {
    shared: Arc<Shared>,
    started: Instant,
    method: String,
    url: String,
    status: Option<u16>,
    request_bytes: Arc<AtomicU64>,
    response_bytes: u64,
    done: bool,
}

impl Pending {
    fn finish(&mut self, error: Option<String>, problem: Option<OutboundProblem>) {
        if self.done {
            return;
        }
        self.done = true;
        let refused = problem.is_some();
        let error = match (&problem, error) {
            (Some(p), _) => Some(p.to_string()),
            (None, e) => e,
        };
        if let Some(p) = problem {
            if let Ok(mut slot) = self.shared.problem.lock() {
                *slot = Some((self.url.clone(), p));
            }
        }
        let record = HttpRequestRecord {
            plugin: self.shared.policy.plugin.clone(),
            method: self.method.clone(),
            url: self.url.clone(),
            status: self.status,
            request_bytes: self.request_bytes.load(Ordering::Relaxed),
            response_bytes: self.response_bytes,
            secs: self.started.elapsed().as_secs_f64(),
            refused,
            error,
        };
        if let Ok(mut records) = self.shared.records.lock() {
            records.push(record.clone());
        }
        if let Some(observer) = &self.shared.observer {
            observer(record);
        }
    }

    /// Ends the request as refused: the guest gets the problem's text.
    fn refuse(&mut self, problem: OutboundProblem) -> HttpError {
        let text = problem.to_string();
        self.finish(None, Some(problem));
        HttpError::InternalError(Some(text))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // A body the guest dropped unread still ends its request.
        self.finish(None, None);
    }
}

async fn send(
    shared: Arc<Shared>,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> SendResult {
    let policy = &shared.policy;
    let uri = request.uri().clone();
    let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or_else(|| default_port(&scheme));
    let mut pending = Pending {
        shared: shared.clone(),
        started: Instant::now(),
        method: request.method().to_string(),
        url: format!("{scheme}://{host}:{port}{}", uri.path()),
        status: None,
        request_bytes: Arc::new(AtomicU64::new(0)),
        response_bytes: 0,
        done: false,
    };

    let n = shared.requests.fetch_add(1, Ordering::Relaxed) + 1;
    if n > policy.max_requests {
        return Err(pending.refuse(OutboundProblem::TooManyRequests {
            limit: policy.max_requests,
        }));
    }
    let Some(entry) = policy.allowed.matching(&scheme, &host, port).cloned() else {
        return Err(pending.refuse(OutboundProblem::NotAllowed {
            origin: format!("{scheme}://{host}:{port}"),
            plugin: policy.plugin.clone(),
            empty: policy.allowed.is_empty(),
        }));
    };
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > policy.max_request_bytes) {
        return Err(pending.refuse(OutboundProblem::RequestTooLarge {
            limit: policy.max_request_bytes,
        }));
    }

    // The request's own deadline, when it comes before the call's; when
    // the call's comes first, the call's timeout fires (and says so).
    let own = Instant::now() + policy.request_timeout;
    let own_deadline = (own < shared.call_deadline).then_some(own);
    let remaining = own
        .min(shared.call_deadline)
        .saturating_duration_since(Instant::now());
    let timed_out = |pending: &mut Pending| {
        pending.refuse(OutboundProblem::TimedOut {
            ms: policy.request_timeout.as_millis() as u64,
        })
    };

    let addresses: Vec<IpAddr> = match parse_ip(&host) {
        Some(ip) => vec![ip],
        None => {
            let lookup = tokio::net::lookup_host((host.as_str(), port));
            let found = match own_deadline {
                Some(d) => match tokio::time::timeout_at(d.into(), lookup).await {
                    Ok(r) => r,
                    Err(_) => return Err(timed_out(&mut pending)),
                },
                None => lookup.await,
            };
            match found {
                Ok(addrs) => addrs.map(|a: SocketAddr| a.ip()).collect(),
                Err(e) => {
                    pending.finish(Some(format!("cannot resolve `{host}`: {e}")), None);
                    return Err(HttpError::DnsError {
                        rcode: Some(e.to_string()),
                        info_code: None,
                    });
                }
            }
        }
    };
    if addresses.is_empty() {
        pending.finish(Some(format!("`{host}` has no address")), None);
        return Err(HttpError::DestinationNotFound);
    }
    for &ip in &addresses {
        if is_non_public(ip) && !policy.allow_private_addresses && !entry.names_address(ip) {
            return Err(pending.refuse(OutboundProblem::PrivateAddress {
                scheme: scheme.clone(),
                host: host.clone(),
                address: ip,
                port,
                plugin: policy.plugin.clone(),
            }));
        }
    }
    if scheme == "http" && parse_ip(&host).is_none() {
        // Connect to the address just checked; the Host header keeps the
        // name.
        let authority = format!("{}:{port}", ip_text(addresses[0]));
        let mut parts = uri.clone().into_parts();
        if let Ok(a) = authority.parse() {
            parts.authority = Some(a);
            if let Ok(u) = http::Uri::from_parts(parts) {
                *request.uri_mut() = u;
            }
        }
    }

    let request = request.map(|body| {
        CappedRequest {
            inner: body,
            sent: pending.request_bytes.clone(),
            limit: policy.max_request_bytes,
        }
        .boxed_unsync()
    });
    let bound = |o: Option<Duration>| Some(o.map_or(remaining, |o| o.min(remaining)));
    let options = RequestOptions {
        connect_timeout: bound(options.and_then(|o| o.connect_timeout)),
        first_byte_timeout: bound(options.and_then(|o| o.first_byte_timeout)),
        between_bytes_timeout: bound(options.and_then(|o| o.between_bytes_timeout)),
    };
    let sending = wasmtime_wasi_http::default_send_request(request, Some(options));
    let sent = match own_deadline {
        Some(d) => match tokio::time::timeout_at(d.into(), sending).await {
            Ok(r) => r,
            Err(_) => return Err(timed_out(&mut pending)),
        },
        None => sending.await,
    };
    let (response, io) = match sent {
        Ok(r) => r,
        Err(e) => {
            if pending.request_bytes.load(Ordering::Relaxed) > policy.max_request_bytes {
                return Err(pending.refuse(OutboundProblem::RequestTooLarge {
                    limit: policy.max_request_bytes,
                }));
            }
            pending.finish(Some(e.to_string()), None);
            return Err(e);
        }
    };
    pending.status = Some(response.status().as_u16());
    let declared = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > policy.max_response_bytes) {
        return Err(pending.refuse(OutboundProblem::ResponseTooLarge {
            limit: policy.max_response_bytes,
        }));
    }
    let limit = policy.max_response_bytes;
    let request_timeout_ms = policy.request_timeout.as_millis() as u64;
    let response = response.map(move |body| {
        CappedResponse {
            inner: body.boxed_unsync(),
            pending,
            limit,
            deadline: own_deadline.map(|d| Box::pin(tokio::time::sleep_until(d.into()))),
            request_timeout_ms,
        }
        .boxed_unsync()
    });
    Ok((response, Box::new(io) as IoFuture))
}

/// A request body that fails past its cap, counting what it sent.
struct CappedRequest {
    inner: WasiBody,
    sent: Arc<AtomicU64>,
    limit: u64,
}

impl Body for CappedRequest {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                let total =
                    self.sent.fetch_add(data.len() as u64, Ordering::Relaxed) + data.len() as u64;
                if total > self.limit {
                    return Poll::Ready(Some(Err(HttpError::InternalError(Some(
                        OutboundProblem::RequestTooLarge { limit: self.limit }.to_string(),
                    )))));
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that is cut at its cap and its request's deadline, and
/// writes the request's record when it ends.
struct CappedResponse {
    inner: WasiBody,
    pending: Pending,
    limit: u64,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    request_timeout_ms: u64,
}

impl Body for CappedResponse {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        if this.pending.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.pending.response_bytes += data.len() as u64;
                    if this.pending.response_bytes > this.limit {
                        this.pending.response_bytes -= data.len() as u64;
                        let problem = OutboundProblem::ResponseTooLarge { limit: this.limit };
                        return Poll::Ready(Some(Err(this.pending.refuse(problem))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.pending.finish(Some(e.to_string()), None);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.pending.finish(None, None);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if let Some(deadline) = this.deadline.as_mut() {
                    if deadline.as_mut().poll(cx).is_ready() {
                        let problem = OutboundProblem::TimedOut {
                            ms: this.request_timeout_ms,
                        };
                        return Poll::Ready(Some(Err(this.pending.refuse(problem))));
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        AllowList::parse(entries).unwrap()
    }

    #[test]
    fn exact_origins_need_scheme_host_and_port() {
        let l = list(&["https://api.perplexity.ai"]);
        assert!(l.matching("https", "api.perplexity.ai", 443).is_some());
        assert!(l.matching("http", "api.perplexity.ai", 80).is_none());
        assert!(l.matching("https", "api.perplexity.ai", 8443).is_none());
        assert!(l.matching("https", "perplexity.ai", 443).is_none());
        assert!(l.matching("https", "evil-api.perplexity.ai", 443).is_none());
    }

    #[test]
    fn wildcards_cover_subdomains_schemes_and_ports() {
        let l = list(&[
            "https://*.example.com",
            "*://127.0.0.1:*",
            "http://[::1]:8080",
        ]);
        assert!(l.matching("https", "a.example.com", 443).is_some());
        assert!(l.matching("https", "a.b.example.com", 443).is_some());
        assert!(l.matching("https", "example.com", 443).is_none());
        assert!(l.matching("https", "badexample.com", 443).is_none());
        assert!(l.matching("http", "127.0.0.1", 9).is_some());
        assert!(l.matching("https", "127.0.0.1", 4443).is_some());
        assert!(l.matching("http", "[::1]", 8080).is_some());
        assert!(l.matching("http", "::1", 8081).is_none());
    }

    #[test]
    fn bad_entries_say_why() {
        for entry in [
            "api.perplexity.ai",
            "ftp://x.org",
            "https://x.org/path",
            "https://a*.org",
            "https://x.org:port",
            "https://user@x.org",
        ] {
            assert!(AllowList::parse(&[entry]).is_err(), "{entry}");
        }
    }

    #[test]
    fn only_public_addresses_are_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_non_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "104.18.0.1", "2606:4700::1111"] {
            assert!(!is_non_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn naming_an_address_is_the_explicit_grant() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(AllowedOrigin::parse("http://127.0.0.1:8080")
            .unwrap()
            .names_address(ip));
        assert!(AllowedOrigin::parse("http://localhost:8080")
            .unwrap()
            .names_address(ip));
        assert!(!AllowedOrigin::parse("http://*:*")
            .unwrap()
            .names_address(ip));
    }
}
