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
use http_body_util::{Either, Full};
use hyper::body::{Frame, SizeHint};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// A body in one piece, or one sent as it is produced ([`Chunks`]).
pub type Body = Either<Full<Bytes>, Chunks>;
pub type Resp = Response<Body>;

/// A body of a known length sent as it is produced: chunks from a bounded channel, whose
/// producer waits while the client is slow (memory stays bounded by the channel) and sees the
/// client go away when this body is dropped. An `Err` chunk, or the channel closing early,
/// ends the response with an error (the client sees it cut short).
#[derive(Debug)]
pub struct Chunks {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    left: u64,
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        let chunk = match this.rx.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(chunk) => chunk,
        };
        Poll::Ready(match chunk {
            Some(Ok(data)) => {
                let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
                match this.left.checked_sub(len) {
                    Some(left) => {
                        this.left = left;
                        Some(Ok(Frame::data(data)))
                    }
                    None => Some(Err(std::io::Error::other("body longer than announced"))),
                }
            }
            Some(Err(e)) => Some(Err(e)),
            None if this.left == 0 => None,
            None => Some(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "body ended early",
            ))),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

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
    let mut resp = Response::new(Either::Left(Full::new(body)));
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

/// `200` with a body of `len` bytes of `content_type` sent as `rx` produces it (no V1 header:
/// the body is not nsqd's).
pub fn streamed(
    content_type: &'static str,
    len: u64,
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
) -> Resp {
    let mut resp = Response::new(Either::Right(Chunks { rx, left: len }));
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    resp
}
