//! The web page (SERVER.md section 6): a few static files compiled into
//! the binary, so a user needs no build step, no CDN and no internet.
//!
//! In debug builds `COMPOSER_WEB_DIR` serves the same names from a folder
//! instead, so the page can be edited without rebuilding the server.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("web/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("web/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("web/app.css"),
    ),
];

pub async fn index() -> Response {
    serve("index.html")
}

pub async fn asset(Path(name): Path<String>) -> Response {
    serve(&name)
}

fn serve(name: &str) -> Response {
    let Some(&(name, content_type, embedded)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let body = dev_override(name).unwrap_or_else(|| embedded.to_string());
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The page holds an API key: no framing by other sites, no sniffing.
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; media-src 'self' blob:; img-src 'self' data: blob:; \
             style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(debug_assertions)]
fn dev_override(name: &str) -> Option<String> {
    let dir = std::env::var_os("COMPOSER_WEB_DIR")?;
    std::fs::read_to_string(std::path::Path::new(&dir).join(name)).ok()
}

#[cfg(not(debug_assertions))]
fn dev_override(_name: &str) -> Option<String> {
    None
}
