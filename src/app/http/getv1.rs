//! nsqd's `GETV1` as a client: one HTTP/1.1 `GET` over a connection the caller opened (plain or
//! TLS), with nsqd's `Accept` header; the body of a `200` (at most a given size), any other
//! status an error. Used by AUTH (`app::auth`) and the nsqlookupd channel query
//! (`app::loops::lookupd_channels`); each bounds the whole exchange with its own timeout.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{ACCEPT, HOST};

/// What nsqd's HTTP client sends as `Accept` for its V1 API calls.
pub const ACCEPT_V1: &str = "application/vnd.nsq; version=1.0";

/// `GET path` from `authority` over `io`: the body of a `200`, at most `body_max` bytes.
pub async fn get<I>(io: I, authority: &str, path: &str, body_max: usize) -> Result<Bytes, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    // The connection is driven by its own task, aborted when this exchange ends or is dropped
    // (its caller timed out).
    let _conn = AbortOnDrop(crate::broker::spawn(conn));
    let req = hyper::Request::get(path)
        .header(HOST, authority)
        .header(ACCEPT, ACCEPT_V1)
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), body_max)
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
    if status != hyper::StatusCode::OK {
        return Err(format!(
            "got response {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(body)
}

/// Aborts a spawned task when dropped (a future waiting for it that is dropped takes the task
/// along: a timed-out query leaves nothing running).
#[derive(Debug)]
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
