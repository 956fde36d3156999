//! nsqd's response conventions (`internal/http_api/api_response.go`), in one place.
//!
//! - V1 (every endpoint but `/ping`): header `X-NSQ-Content-Type: nsq; version=1.0`; success with
//!   text → the raw text, nothing → an empty body, a value → JSON
//!   (`Content-Type: application/json; charset=utf-8`); an error → its status and
//!   `{"message":"<TEXT>"}`.
//! - Plain text (`/ping`): the raw text with the status, no V1 header.
//!
//! Go's `net/http` sniffs a `Content-Type` for raw bodies; for the texts nsqd sends that is
//! always `text/plain; charset=utf-8`, which is what we set (none for an empty body, as Go).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;

pub type Resp = Response<Full<Bytes>>;

const V1_HEADER: &str = "X-NSQ-Content-Type";
const V1_VALUE: &str = "nsq; version=1.0";
const JSON_TYPE: &str = "application/json; charset=utf-8";
const TEXT_TYPE: &str = "text/plain; charset=utf-8";
const HTML_TYPE: &str = "text/html; charset=utf-8";

/// An API error: the status and the `message` text nsqd uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: message.into(),
        }
    }

    pub fn bad_request(message: &str) -> Self {
        Self::new(400, message)
    }
}

pub type ApiResult = Result<Resp, ApiError>;

fn build(status: StatusCode, content_type: Option<&'static str>, v1: bool, body: Bytes) -> Resp {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    if let Some(t) = content_type {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(t));
    }
    if v1 {
        headers.insert(V1_HEADER, HeaderValue::from_static(V1_VALUE));
    }
    resp
}

/// V1 success with a raw text body (`OK`, the text `/stats`, a string option).
pub fn text(body: impl Into<Bytes>) -> Resp {
    let body = body.into();
    let ct = (!body.is_empty()).then_some(TEXT_TYPE);
    build(StatusCode::OK, ct, true, body)
}

/// V1 success with no body.
pub fn empty() -> Resp {
    build(StatusCode::OK, None, true, Bytes::new())
}

/// V1 success with a JSON body.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Resp {
    match serde_json::to_vec(value) {
        Ok(body) => build(StatusCode::OK, Some(JSON_TYPE), true, Bytes::from(body)),
        Err(e) => error(&ApiError::new(500, e.to_string())),
    }
}

/// V1 error: `{"message":"<TEXT>"}`.
pub fn error(err: &ApiError) -> Resp {
    #[derive(Serialize)]
    struct Message<'a> {
        message: &'a str,
    }
    let body = serde_json::to_vec(&Message {
        message: &err.message,
    })
    .unwrap_or_default();
    build(err.status, Some(JSON_TYPE), true, Bytes::from(body))
}

/// V1 JSON already encoded, with any status (nsqd's `TLS_REQUIRED`).
pub fn status_json(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    build(status, Some(JSON_TYPE), true, body.into())
}

/// The plain-text decorator (`/ping`): raw text, any status, no V1 header.
pub fn plain(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let body = body.into();
    let ct = (!body.is_empty()).then_some(TEXT_TYPE);
    build(status, ct, false, body)
}

/// Go's `http.Redirect` to `location` (an absolute path): `301` with a one-link HTML body for
/// GET, `307` and no body otherwise. No V1 header (httprouter answers before any handler).
pub fn redirect(get: bool, location: &str) -> Resp {
    let (status, body, ct) = if get {
        let escaped = location
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&#34;")
            .replace('\'', "&#39;");
        let body = format!("<a href=\"{escaped}\">Moved Permanently</a>.\n\n");
        (StatusCode::MOVED_PERMANENTLY, body, Some(HTML_TYPE))
    } else {
        (StatusCode::TEMPORARY_REDIRECT, String::new(), None)
    };
    let mut resp = build(status, ct, false, Bytes::from(body));
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(hyper::header::LOCATION, v);
    }
    resp
}

/// Plain text with an explicit content type (`/metrics`).
pub fn typed(content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    build(StatusCode::OK, Some(content_type), false, body.into())
}
