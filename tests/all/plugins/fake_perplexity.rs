//! A fake of Perplexity's chat-completions API on `127.0.0.1:0` (its own
//! thread and runtime), speaking the real protocol: `POST
//! <prefix>/chat/completions` with a bearer key and a JSON body, answered
//! with `choices[0].message.content` and `citations`. The path prefix picks
//! a behaviour, so one fake serves every case:
//!
//! - `/ok`: answers at once;
//! - `/flaky`: 429 (`Retry-After: 0`), then 500, then answers;
//! - `/redirect`: 307 to `http://evil.example:<port>/ok/chat/completions`;
//! - `/huge`: 200 with a 100 MB body streamed in 64 KiB chunks;
//! - `/slow`: answers after 30 s;
//! - a wrong key: 401 with Perplexity's error shape.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub const KEY: &str = "pplx-test-key";
pub const HUGE_BYTES: u64 = 100 * 1024 * 1024;

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
    flaky: AtomicUsize,
    port: AtomicUsize,
}

pub struct FakePerplexity {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakePerplexity {
    pub fn start() -> FakePerplexity {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("cannot bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared::default());
        shared.port.store(addr.port() as usize, Ordering::Relaxed);
        let state = shared.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("fake runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("adopt listener");
                let app = Router::new()
                    .route("/{prefix}/chat/completions", post(chat))
                    .with_state(state);
                tokio::select! {
                    _ = std::future::IntoFuture::into_future(axum::serve(listener, app)) => {}
                    _ = stopped => {}
                }
            });
            rt.shutdown_background();
        });
        FakePerplexity {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port>`, the origin to allow.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The base URL of one behaviour (`ok`, `flaky`, ...).
    pub fn base(&self, prefix: &str) -> String {
        format!("{}/{prefix}", self.origin())
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }
}

impl Drop for FakePerplexity {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(body: &Value) -> Value {
    let query = body["messages"][1]["content"].as_str().unwrap_or_default();
    json!({
        "id": "fake-1",
        "model": body["model"],
        "object": "chat.completion",
        "created": 1_700_000_000,
        "choices": [{
            "index": 0,
            "finish_reason": "stop",
            "message": {
                "role": "assistant",
                "content": format!("FAKE NEWS DIGEST for: {query} (recency {})", body["search_recency_filter"].as_str().unwrap_or("any")),
            },
        }],
        "citations": ["https://news.example/one", "https://news.example/two"],
        "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
    })
}

async fn chat(
    State(shared): State<Arc<Shared>>,
    Path(prefix): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Ok(mut seen) = shared.seen.lock() {
        seen.push(Seen {
            authorization: authorization.clone(),
            body: parsed.clone(),
        });
    }
    if authorization.as_deref() != Some(&format!("Bearer {KEY}")) {
        let error = json!({"error": {"message": "Invalid API key", "type": "invalid_api_key", "code": 401}});
        return (StatusCode::UNAUTHORIZED, axum::Json(error)).into_response();
    }
    match prefix.as_str() {
        "flaky" => match shared.flaky.fetch_add(1, Ordering::Relaxed) {
            0 => (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "0")],
                axum::Json(json!({"error": {"message": "rate limited", "code": 429}})),
            )
                .into_response(),
            1 => (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded").into_response(),
            _ => axum::Json(answer(&parsed)).into_response(),
        },
        "redirect" => {
            let port = shared.port.load(Ordering::Relaxed);
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(
                    "location",
                    format!("http://evil.example:{port}/ok/chat/completions"),
                )],
            )
                .into_response()
        }
        "huge" => {
            let chunk = bytes::Bytes::from(vec![b' '; 64 * 1024]);
            let chunks = HUGE_BYTES / chunk.len() as u64;
            let stream = futures::stream::iter(
                (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
            );
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(Body::from_stream(stream))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        "slow" => {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            axum::Json(answer(&parsed)).into_response()
        }
        _ => axum::Json(answer(&parsed)).into_response(),
    }
}
