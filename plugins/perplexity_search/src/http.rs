//! A small blocking HTTP client over `wasi:http/outgoing-handler`: the
//! host decides where a request may go (and cuts what is too big or too
//! slow), so this only speaks the protocol. Redirects are the caller's
//! (`lib.rs` follows them), so each hop is checked by the host.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use wasip2::io::streams::StreamError;

/// `scheme://authority/path?query`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    pub authority: String,
    pub path_and_query: String,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, String> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("`{text}` is not an absolute URL"))?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            other => return Err(format!("`{text}`: scheme `{other}` is not http or https")),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("`{text}` has no host"));
        }
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        Ok(Url {
            https,
            authority: authority.to_string(),
            path_and_query: path,
        })
    }

    /// `base` + `path` (`https://api.x.ai/v1` + `/chat` → `https://api.x.ai/v1/chat`).
    pub fn join(base: &str, path: &str) -> Result<Url, String> {
        Url::parse(&format!("{}{path}", base.trim_end_matches('/')))
    }

    /// Where a `Location` header points, relative to this URL.
    pub fn resolve(&self, location: &str) -> Result<Url, String> {
        if location.contains("://") {
            return Url::parse(location);
        }
        let mut url = self.clone();
        if let Some(rest) = location.strip_prefix("//") {
            let scheme = if self.https { "https" } else { "http" };
            return Url::parse(&format!("{scheme}://{rest}"));
        }
        if location.starts_with('/') {
            url.path_and_query = location.to_string();
        } else {
            let dir = match self.path_and_query.rfind('/') {
                Some(i) => &self.path_and_query[..=i],
                None => "/",
            };
            url.path_and_query = format!("{dir}{location}");
        }
        Ok(url)
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority, self.path_and_query)
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request got no complete response: the host's or the network's
/// words.
#[derive(Debug, Clone, PartialEq)]
pub struct TransportError {
    pub message: String,
    /// The host refused or cut the request (retrying cannot help).
    pub refused: bool,
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn error_code(code: &ErrorCode) -> TransportError {
    match code {
        // The host's policy speaks in `internal-error` with its reason.
        ErrorCode::InternalError(Some(text)) => TransportError {
            refused: text.contains("not allowed") || text.contains("(limit `"),
            message: text.clone(),
        },
        other => TransportError {
            message: format!("{other:?}"),
            refused: false,
        },
    }
}

fn other(message: impl Into<String>) -> TransportError {
    TransportError {
        message: message.into(),
        refused: false,
    }
}

fn stream_error(e: StreamError) -> Option<TransportError> {
    match e {
        StreamError::Closed => None,
        StreamError::LastOperationFailed(e) => Some(
            wasip2::http::types::http_error_code(&e)
                .map(|c| error_code(&c))
                .unwrap_or_else(|| other(e.to_debug_string())),
        ),
    }
}

/// Sends one request and reads the whole response.
pub fn send(
    method: &str,
    url: &Url,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Response, TransportError> {
    let entries: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
        .collect();
    let fields = Fields::from_list(&entries).map_err(|e| other(format!("bad header: {e:?}")))?;
    let request = OutgoingRequest::new(fields);
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        other_method => Method::Other(other_method.to_string()),
    };
    let set = |ok: Result<(), ()>, what: &str| ok.map_err(|()| other(format!("cannot set {what}")));
    set(request.set_method(&method), "the method")?;
    let scheme = if url.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    set(request.set_scheme(Some(&scheme)), "the scheme")?;
    set(request.set_authority(Some(&url.authority)), "the host")?;
    set(
        request.set_path_with_query(Some(&url.path_and_query)),
        "the path",
    )?;
    let outgoing = request
        .body()
        .map_err(|()| other("cannot open the request body"))?;
    let future = outgoing_handler::handle(request, None).map_err(|c| error_code(&c))?;
    {
        let stream = outgoing
            .write()
            .map_err(|()| other("cannot write the request body"))?;
        for chunk in body.chunks(4096) {
            if let Err(e) = stream.blocking_write_and_flush(chunk) {
                if let Some(err) = stream_error(e) {
                    return Err(err);
                }
                break;
            }
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(|c| error_code(&c))?;

    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(code))) => return Err(error_code(&code)),
        Some(Err(())) | None => return Err(other("the response was lost")),
    };
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let incoming = response
        .consume()
        .map_err(|()| other("cannot read the response body"))?;
    let mut data = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|()| other("cannot read the response body"))?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => data.extend_from_slice(&chunk),
                Err(e) => match stream_error(e) {
                    None => break,
                    Some(err) => return Err(err),
                },
            }
        }
    }
    drop(IncomingBody::finish(incoming));
    Ok(Response {
        status,
        headers,
        body: data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_join_and_resolve() {
        let u = Url::join("http://127.0.0.1:8080/", "/chat/completions").unwrap();
        assert_eq!(u.authority, "127.0.0.1:8080");
        assert_eq!(u.path_and_query, "/chat/completions");
        assert!(!u.https);
        assert_eq!(u.to_string(), "http://127.0.0.1:8080/chat/completions");
        assert_eq!(
            u.resolve("https://evil.example/x").unwrap().to_string(),
            "https://evil.example/x"
        );
        assert_eq!(
            u.resolve("/other").unwrap().to_string(),
            "http://127.0.0.1:8080/other"
        );
        assert_eq!(
            u.resolve("next").unwrap().to_string(),
            "http://127.0.0.1:8080/chat/next"
        );
        assert!(Url::parse("api.perplexity.ai").is_err());
        assert!(Url::parse("ftp://x").is_err());
    }
}
