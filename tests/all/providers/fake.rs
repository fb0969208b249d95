//! A fake of the providers' HTTP APIs on 127.0.0.1, for tests and the
//! providers benchmark (which includes this file by path, so it names
//! nothing outside itself).
//!
//! It speaks real HTTP/1.1 (axum on its own thread and its own tokio
//! runtime, so tests with paused clocks or other runtimes are unaffected)
//! and answers:
//! - OpenAI `POST /v1/chat/completions`, `/v1/audio/speech`,
//!   `/v1/audio/transcriptions` (multipart);
//! - Anthropic `POST /v1/messages`;
//! - Gemini `POST /v1beta/models/{model}:generateContent`;
//! - ElevenLabs `POST /v1/text-to-speech/{voice_id}`.
//!
//! Every request is recorded (method, path, query, headers, body or
//! multipart fields, peer, arrival time) and counted, and so are the TCP
//! connections accepted. A script per path or per model plays faults before
//! the normal answers: a status (429 with `Retry-After`, 5xx, 400 with a
//! body), a hang, a dropped connection (closed without an answer) or a
//! malformed JSON reply, or a huge body streamed until the client stops
//! reading.
//!
//! It can also enforce a real rate limit (`enforce_window`): a fixed window
//! of N requests per period, told in OpenAI's or Anthropic's headers, with
//! 429 and `Retry-After` beyond it.

// Shared with the benchmark, which uses only part of it.
#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::{IncomingStream, Listener};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Token usage every normal language answer reports.
pub const PROMPT_TOKENS: u64 = 1200;
pub const COMPLETION_TOKENS: u64 = 300;

/// What the fake does with one request instead of answering normally.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status, an optional `Retry-After` header and a body
    /// (default: an OpenAI-style JSON error naming the status).
    Status {
        code: u16,
        retry_after: Option<String>,
        body: Option<String>,
    },
    /// Wait this long, then answer normally (clients time out first).
    Hang(Duration),
    /// Close the connection without answering.
    Drop,
    /// Answer 200 with a JSON body cut short.
    Malformed,
    /// Answer 200 with a body of `bytes` zeros, streamed in 64 KiB chunks
    /// for as long as the client reads (`streamed_bytes` counts them), with
    /// or without a `Content-Length`.
    Huge { bytes: u64, declare_length: bool },
}

impl Fault {
    pub fn status(code: u16) -> Fault {
        Fault::Status {
            code,
            retry_after: None,
            body: None,
        }
    }

    /// A 429, with `Retry-After: <retry_after>` when given.
    pub fn rate_limited(retry_after: Option<&str>) -> Fault {
        Fault::Status {
            code: 429,
            retry_after: retry_after.map(str::to_string),
            body: Some(
                json!({"error": {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}})
                    .to_string(),
            ),
        }
    }

    /// A status with this exact body.
    pub fn with_body(code: u16, body: &str) -> Fault {
        Fault::Status {
            code,
            retry_after: None,
            body: Some(body.to_string()),
        }
    }
}

/// One multipart field of a recorded request.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub bytes: Bytes,
}

impl Field {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Lower-case names; repeated headers joined with ", ".
    pub headers: BTreeMap<String, String>,
    pub body: Bytes,
    /// The body as JSON, when it is JSON.
    pub json: Option<Value>,
    /// The multipart fields, when the body is `multipart/form-data`.
    pub fields: Vec<Field>,
    /// The model the request names (body `model` / `model_id`, multipart
    /// `model`, or the Gemini path).
    pub model: Option<String>,
    pub peer: SocketAddr,
    /// When the request arrived (the fake's clock: real time).
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| v.to_string())
        })
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The JSON body; panics when there is none.
    pub fn body_json(&self) -> &Value {
        self.json.as_ref().unwrap_or_else(|| {
            panic!(
                "request to {} has no JSON body: {:?}",
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Which provider's rate-limit headers the fake sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LimitHeaders {
    OpenAi,
    Anthropic,
}

/// A fixed window: `limit` requests per `period`, counted from the first
/// request, then from each period's end.
struct Window {
    style: LimitHeaders,
    limit: u64,
    period: Duration,
    start: Option<Instant>,
    index: u64,
    count: u64,
}

impl Window {
    /// Counts a request: whether it is within the limit, what is left, when
    /// the window ends, and the window's number.
    fn admit(&mut self, now: Instant) -> (bool, u64, Instant, u64) {
        let start = *self.start.get_or_insert(now);
        let index = (now.duration_since(start).as_nanos() / self.period.as_nanos().max(1)) as u64;
        if index != self.index {
            self.index = index;
            self.count = 0;
        }
        let end = start + self.period * (index as u32 + 1);
        let ok = self.count < self.limit;
        if ok {
            self.count += 1;
        }
        (ok, self.limit - self.count, end, index)
    }
}

/// What the rate window did with a request.
#[derive(Debug, Clone)]
pub struct Admission {
    pub accepted: bool,
    pub window: u64,
    /// Answers the fake had sent when the request arrived.
    pub answers_before: usize,
}

#[derive(Default)]
struct Script {
    queue: VecDeque<Fault>,
    always: Option<Fault>,
}

struct Shared {
    record: bool,
    requests: Mutex<Vec<Recorded>>,
    count: AtomicUsize,
    connections: AtomicUsize,
    /// Requests being handled now, and the most there ever were.
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    peers: Mutex<HashSet<SocketAddr>>,
    /// By path or by model.
    scripts: Mutex<HashMap<String, Script>>,
    /// Fixed answer texts, by path or by model.
    replies: Mutex<HashMap<String, String>>,
    window: Mutex<Option<Window>>,
    admissions: Mutex<Vec<Admission>>,
    answers: AtomicUsize,
    streamed: Arc<AtomicU64>,
}

impl Shared {
    fn next_fault(&self, path: &str, model: Option<&str>) -> Option<Fault> {
        let mut scripts = self.scripts.lock().expect("fake scripts");
        for key in model.into_iter().chain(std::iter::once(path)) {
            if let Some(script) = scripts.get_mut(key) {
                if let Some(f) = script.queue.pop_front() {
                    return Some(f);
                }
                if let Some(f) = &script.always {
                    return Some(f.clone());
                }
            }
        }
        None
    }

    fn reply(&self, path: &str, model: Option<&str>) -> Option<String> {
        let replies = self.replies.lock().expect("fake replies");
        model
            .and_then(|m| replies.get(m))
            .or_else(|| replies.get(path))
            .cloned()
    }
}

/// A running fake; stops when dropped.
pub struct Fake {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Fake {
    /// A fake that records every request.
    pub fn start() -> Fake {
        Fake::launch(true)
    }

    /// A fake that only counts (benchmarks: nothing grows per request).
    pub fn quiet() -> Fake {
        Fake::launch(false)
    }

    fn launch(record: bool) -> Fake {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("fake: cannot bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("fake: cannot make the listener non-blocking");
        let addr = listener.local_addr().expect("fake: no local address");
        let shared = Arc::new(Shared {
            record,
            requests: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            peers: Mutex::new(HashSet::new()),
            scripts: Mutex::new(HashMap::new()),
            replies: Mutex::new(HashMap::new()),
            window: Mutex::new(None),
            admissions: Mutex::new(Vec::new()),
            answers: AtomicUsize::new(0),
            streamed: Arc::new(AtomicU64::new(0)),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fake-provider".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("fake: cannot build its runtime");
                rt.block_on(async move {
                    let listener = FakeListener {
                        inner: tokio::net::TcpListener::from_std(listener)
                            .expect("fake: cannot adopt the listener"),
                        shared: state.clone(),
                    };
                    let app = router(state).into_make_service_with_connect_info::<Peer>();
                    let server = std::future::IntoFuture::into_future(axum::serve(listener, app));
                    tokio::select! {
                        _ = server => {}
                        _ = stopped => {}
                    }
                });
                // Hanging handlers are not waited for.
                rt.shutdown_background();
            })
            .expect("fake: cannot start its thread");
        Fake {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Faults played in order, one per request to `key` (a path such as
    /// `/v1/chat/completions`, or a model name, which wins), before normal
    /// answers.
    pub fn script(&self, key: &str, faults: impl IntoIterator<Item = Fault>) {
        let mut scripts = self.shared.scripts.lock().expect("fake scripts");
        scripts
            .entry(key.to_string())
            .or_default()
            .queue
            .extend(faults);
    }

    /// `fault` for every request to `key` once its script is played.
    pub fn always(&self, key: &str, fault: Fault) {
        let mut scripts = self.shared.scripts.lock().expect("fake scripts");
        scripts.entry(key.to_string()).or_default().always = Some(fault);
    }

    /// The text normal answers to `key` (path or model) carry.
    pub fn reply(&self, key: &str, text: &str) {
        self.shared
            .replies
            .lock()
            .expect("fake replies")
            .insert(key.to_string(), text.to_string());
    }

    /// Every recorded request, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().expect("fake requests").clone()
    }

    /// The recorded requests to `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// The only request the fake saw; panics otherwise.
    pub fn only_request(&self) -> Recorded {
        let all = self.requests();
        assert_eq!(all.len(), 1, "expected exactly one request, got {all:#?}");
        all.into_iter().next().expect("one request")
    }

    /// Requests received (recorded or not).
    pub fn request_count(&self) -> usize {
        self.shared.count.load(Ordering::SeqCst)
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The most requests the fake was handling at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Enforces `limit` requests per `period` (a fixed window), reported in
    /// `style`'s headers on every answer, and answered with 429 and
    /// `Retry-After` beyond the limit.
    pub fn enforce_window(&self, style: LimitHeaders, limit: u64, period: Duration) {
        *self.shared.window.lock().expect("fake window") = Some(Window {
            style,
            limit,
            period,
            start: None,
            index: 0,
            count: 0,
        });
    }

    /// What the window did with each request, in arrival order.
    pub fn admissions(&self) -> Vec<Admission> {
        self.shared
            .admissions
            .lock()
            .expect("fake admissions")
            .clone()
    }

    /// Body bytes `Fault::Huge` answers have sent.
    pub fn streamed_bytes(&self) -> u64 {
        self.shared.streamed.load(Ordering::SeqCst)
    }

    /// Distinct client addresses requests came from (one per connection).
    pub fn peers(&self) -> usize {
        self.shared.peers.lock().expect("fake peers").len()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The bytes a fake audio answer holds for a format (`mp3`, `wav`, ...).
pub fn audio_bytes(format: &str) -> Vec<u8> {
    format!("FAKE-AUDIO:{format}:0123456789").into_bytes()
}

fn audio_content_type(format: &str) -> &'static str {
    match format {
        "wav" => "audio/wav",
        "opus" => "audio/ogg",
        "flac" => "audio/flac",
        "aac" => "audio/aac",
        "pcm" => "audio/pcm",
        _ => "audio/mpeg",
    }
}

// ---- connections ---------------------------------------------------------

/// Accepts TCP connections, counting them; each can be dropped on demand.
struct FakeListener {
    inner: tokio::net::TcpListener,
    shared: Arc<Shared>,
}

impl Listener for FakeListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    self.shared.connections.fetch_add(1, Ordering::SeqCst);
                    return (
                        Conn {
                            stream,
                            dropped: Arc::new(AtomicBool::new(false)),
                        },
                        addr,
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A server-side connection. Once `dropped` is set, every read and write
/// fails, so the server closes it without sending the answer.
struct Conn {
    stream: TcpStream,
    dropped: Arc<AtomicBool>,
}

fn reset() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "dropped by the fake")
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.dropped.load(Ordering::SeqCst) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.dropped.load(Ordering::SeqCst) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.dropped.load(Ordering::SeqCst) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.dropped.load(Ordering::SeqCst) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The connect info handlers get: the client's address and the switch that
/// drops its connection.
#[derive(Clone)]
struct Peer {
    addr: SocketAddr,
    dropped: Arc<AtomicBool>,
}

impl Connected<IncomingStream<'_, FakeListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, FakeListener>) -> Self {
        Peer {
            addr: *stream.remote_addr(),
            dropped: stream.io().dropped.clone(),
        }
    }
}

// ---- requests ------------------------------------------------------------

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(handle))
        .route("/v1/audio/speech", post(handle))
        .route("/v1/audio/transcriptions", post(handle))
        .route("/v1/messages", post(handle))
        .route("/v1beta/models/{model}", post(handle))
        .route("/v1/text-to-speech/{voice}", post(handle))
        .fallback(handle)
        .with_state(shared)
}

/// The API a path belongs to.
enum Api {
    Chat,
    Speech,
    Transcription,
    Messages,
    Gemini(String),
    ElevenLabs,
    Unknown,
}

fn api(path: &str) -> Api {
    match path {
        "/v1/chat/completions" => Api::Chat,
        "/v1/audio/speech" => Api::Speech,
        "/v1/audio/transcriptions" => Api::Transcription,
        "/v1/messages" => Api::Messages,
        p => {
            if let Some(model) = p
                .strip_prefix("/v1beta/models/")
                .and_then(|rest| rest.strip_suffix(":generateContent"))
            {
                Api::Gemini(model.to_string())
            } else if p.starts_with("/v1/text-to-speech/") {
                Api::ElevenLabs
            } else {
                Api::Unknown
            }
        }
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    request: Request,
) -> Response {
    let at = Instant::now();
    shared.count.fetch_add(1, Ordering::SeqCst);
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _in_flight = InFlight(&shared.in_flight);
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    let headers = headers(request.headers());
    let multipart = headers
        .get("content-type")
        .is_some_and(|t| t.starts_with("multipart/form-data"));
    let (body, fields) = if multipart {
        match Multipart::from_request(request, &()).await {
            Ok(mut form) => {
                let mut fields = Vec::new();
                while let Ok(Some(field)) = form.next_field().await {
                    let name = field.name().unwrap_or_default().to_string();
                    let file_name = field.file_name().map(str::to_string);
                    let content_type = field.content_type().map(str::to_string);
                    let bytes = field.bytes().await.unwrap_or_default();
                    fields.push(Field {
                        name,
                        file_name,
                        content_type,
                        bytes,
                    });
                }
                (Bytes::new(), fields)
            }
            Err(e) => return error(400, &format!("bad multipart body: {e}")),
        }
    } else {
        match axum::body::to_bytes(request.into_body(), 64 << 20).await {
            Ok(b) => (b, Vec::new()),
            Err(e) => return error(400, &format!("cannot read the body: {e}")),
        }
    };
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let api = api(&path);
    let model = match &api {
        Api::Gemini(m) => Some(m.clone()),
        _ => json
            .as_ref()
            .and_then(|j| j.get("model").or_else(|| j.get("model_id")))
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| fields.iter().find(|f| f.name == "model").map(Field::text)),
    };
    let recorded = Recorded {
        method,
        path,
        query,
        headers,
        body,
        json,
        fields,
        model,
        peer: peer.addr,
        at,
    };
    // Recorded on arrival: a hanging request is already in the list.
    if shared.record {
        shared
            .peers
            .lock()
            .expect("fake peers")
            .insert(recorded.peer);
        shared
            .requests
            .lock()
            .expect("fake requests")
            .push(recorded.clone());
    }
    let limit_headers = match admit(&shared) {
        Ok(headers) => headers,
        Err(rejected) => return finish(&shared, rejected),
    };
    let fault = shared.next_fault(&recorded.path, recorded.model.as_deref());
    let reply = shared.reply(&recorded.path, recorded.model.as_deref());
    let response = match fault {
        None => None,
        Some(Fault::Status {
            code,
            retry_after,
            body,
        }) => {
            let mut r = match body {
                Some(b) => (
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    [(header::CONTENT_TYPE, "application/json")],
                    b,
                )
                    .into_response(),
                None => error(code, &format!("fake status {code}")),
            };
            if let Some(v) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Some(r)
        }
        Some(Fault::Hang(d)) => {
            tokio::time::sleep(d).await;
            None
        }
        Some(Fault::Drop) => {
            peer.dropped.store(true, Ordering::SeqCst);
            Some(StatusCode::OK.into_response())
        }
        Some(Fault::Malformed) => Some(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"id": "cut", "choices": [{"message": {"content": "half an ans"#,
            )
                .into_response(),
        ),
        Some(Fault::Huge {
            bytes,
            declare_length,
        }) => Some(huge(bytes, declare_length, shared.streamed.clone())),
    };
    let mut response = match response {
        Some(r) => r,
        None => answer(&api, &recorded, reply),
    };
    response.headers_mut().extend(limit_headers);
    finish(&shared, response)
}

/// Counts an answer out.
fn finish(shared: &Shared, response: Response) -> Response {
    shared.answers.fetch_add(1, Ordering::SeqCst);
    response
}

/// Applies the rate window, if any: the headers to add to the answer, or
/// the 429 to send instead.
fn admit(shared: &Shared) -> Result<HeaderMap, Response> {
    let mut guard = shared.window.lock().expect("fake window");
    let Some(window) = guard.as_mut() else {
        return Ok(HeaderMap::new());
    };
    let now = Instant::now();
    let (accepted, remaining, end, index) = window.admit(now);
    shared
        .admissions
        .lock()
        .expect("fake admissions")
        .push(Admission {
            accepted,
            window: index,
            answers_before: shared.answers.load(Ordering::SeqCst),
        });
    let until_end = end.saturating_duration_since(now);
    let mut h = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    match window.style {
        LimitHeaders::OpenAi => {
            put("x-ratelimit-limit-requests", window.limit.to_string());
            put("x-ratelimit-remaining-requests", remaining.to_string());
            put(
                "x-ratelimit-reset-requests",
                format!("{}ms", until_end.as_millis() + 1),
            );
            put("x-ratelimit-limit-tokens", "10000000".into());
            put("x-ratelimit-remaining-tokens", "9990000".into());
            put("x-ratelimit-reset-tokens", "6m0s".into());
        }
        LimitHeaders::Anthropic => {
            let reset =
                rfc3339(std::time::SystemTime::now() + until_end + Duration::from_millis(1));
            put(
                "anthropic-ratelimit-requests-limit",
                window.limit.to_string(),
            );
            put(
                "anthropic-ratelimit-requests-remaining",
                remaining.to_string(),
            );
            put("anthropic-ratelimit-requests-reset", reset.clone());
            put("anthropic-ratelimit-tokens-limit", "10000000".into());
            put("anthropic-ratelimit-tokens-remaining", "9990000".into());
            put("anthropic-ratelimit-tokens-reset", reset);
        }
    }
    if accepted {
        return Ok(h);
    }
    let mut r = error(429, "rate limit exceeded (fake window)");
    let secs = until_end.as_secs_f64().ceil().max(1.0) as u64;
    r.headers_mut().extend(h);
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Err(r)
}

/// `2026-12-02T06:10:05.250Z`
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// A 200 whose body is `bytes` zeros, produced lazily.
fn huge(bytes: u64, declare_length: bool, streamed: Arc<AtomicU64>) -> Response {
    const CHUNK: u64 = 64 << 10;
    let chunks = futures::stream::unfold(0u64, move |sent| {
        let streamed = streamed.clone();
        async move {
            if sent >= bytes {
                return None;
            }
            let n = CHUNK.min(bytes - sent);
            streamed.fetch_add(n, Ordering::SeqCst);
            Some((
                Ok::<_, io::Error>(Bytes::from(vec![0u8; n as usize])),
                sent + n,
            ))
        }
    });
    let mut r = Response::new(axum::body::Body::from_stream(chunks));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if declare_length {
        if let Ok(v) = HeaderValue::from_str(&bytes.to_string()) {
            r.headers_mut().insert(header::CONTENT_LENGTH, v);
        }
    }
    r
}

/// Counts a request out when its handler ends (or is dropped).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn headers(map: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in map {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_string())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    out
}

fn error(code: u16, message: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(json!({"error": {"message": message, "type": "fake_error"}})),
    )
        .into_response()
}

/// The normal answer of each API.
fn answer(api: &Api, r: &Recorded, reply: Option<String>) -> Response {
    let model = r.model.clone().unwrap_or_else(|| "unknown".into());
    let text = reply
        .clone()
        .unwrap_or_else(|| format!("fake answer from {model}"));
    match api {
        Api::Chat => Json(json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop"
            }],
            "usage": {
                "prompt_tokens": PROMPT_TOKENS,
                "completion_tokens": COMPLETION_TOKENS,
                "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS
            }
        }))
        .into_response(),
        Api::Messages => Json(json!({
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS}
        }))
        .into_response(),
        Api::Gemini(_) => Json(json!({
            "candidates": [{
                "content": {"role": "model", "parts": [{"text": text}]},
                "finishReason": "STOP",
                "index": 0
            }],
            "usageMetadata": {
                "promptTokenCount": PROMPT_TOKENS,
                "candidatesTokenCount": COMPLETION_TOKENS,
                "totalTokenCount": PROMPT_TOKENS + COMPLETION_TOKENS
            }
        }))
        .into_response(),
        Api::Speech => {
            let format = r
                .json
                .as_ref()
                .and_then(|j| j.get("response_format"))
                .and_then(Value::as_str)
                .unwrap_or("mp3")
                .to_string();
            (
                [(header::CONTENT_TYPE, audio_content_type(&format))],
                audio_bytes(&format),
            )
                .into_response()
        }
        Api::ElevenLabs => {
            let output = r
                .query_param("output_format")
                .unwrap_or_else(|| "mp3_44100_128".into());
            let codec = output.split('_').next().unwrap_or("mp3").to_string();
            (
                [(header::CONTENT_TYPE, audio_content_type(&codec))],
                audio_bytes(&codec),
            )
                .into_response()
        }
        Api::Transcription => {
            let file = r.field("file");
            let text = reply.unwrap_or_else(|| {
                format!(
                    "transcript of {} ({} bytes)",
                    file.and_then(|f| f.file_name.clone()).unwrap_or_default(),
                    file.map_or(0, |f| f.bytes.len())
                )
            });
            let format = r.field("response_format").map(Field::text);
            match format.as_deref() {
                Some("text" | "srt" | "vtt") => {
                    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
                }
                _ => Json(json!({"text": text})).into_response(),
            }
        }
        Api::Unknown => error(404, &format!("no route for {}", r.path)),
    }
}
