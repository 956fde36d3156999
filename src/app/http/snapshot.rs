//! `GET /snapshot` (ringsq's own; nsqd has none): a tar (`application/x-tar`) of a consistent
//! copy of the data directory, streamed while the broker runs (see [`crate::app::snapshot`]).
//! `409 {"message":"SNAPSHOT_IN_PROGRESS"}` while another one runs; `500 INTERNAL_ERROR` when
//! the sync point cannot be taken (a log's fsync failed: the error is logged).
//!
//! The tar holds every message body the broker keeps: it is as sensitive as the data directory
//! and should be protected the same way.

use super::response::{self, ApiError, ApiResult};
use crate::app::node::Node;
use crate::app::snapshot::StartError;
use hyper::header::{HeaderValue, CONTENT_DISPOSITION};
use std::rc::Rc;

/// `GET /snapshot`.
pub async fn snapshot(node: &Rc<Node>) -> ApiResult {
    let io = *node.broker.io();
    match node.snapshots.start(Rc::clone(&node.link), io).await {
        Ok(started) => {
            let mut resp = response::streamed("application/x-tar", started.len, started.chunks);
            let name = format!(
                "attachment; filename=\"ringsq-snapshot-{}.tar\"",
                node.broker.now_unix_s()
            );
            if let Ok(v) = HeaderValue::from_str(&name) {
                resp.headers_mut().insert(CONTENT_DISPOSITION, v);
            }
            Ok(resp)
        }
        Err(StartError::InProgress) => Err(ApiError::new(409, "SNAPSHOT_IN_PROGRESS")),
        Err(StartError::Failed(e)) => {
            tracing::error!("HTTP: snapshot: {e}");
            Err(ApiError::new(500, "INTERNAL_ERROR"))
        }
    }
}
