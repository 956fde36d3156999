//! ringsq's poison-message endpoints (not nsqd's; nsqd's own surface is untouched):
//!
//! - `GET|POST /channel/config?topic=&channel=[&max_attempts=N][&message_ttl=DUR]`: the
//!   channel's own `--max-attempts` / `--message-ttl` (POST sets them, saved with the channel's
//!   state before the `200`); both answer the values in effect,
//!   `{"max_attempts": N, "message_ttl": "<Go duration>"}`.
//! - `GET /channel/dead?topic=&channel=[&limit=N]`: `{"count": N, "messages": [...]}`, the oldest
//!   `limit` letters (default [`DEAD_LIST_LIMIT_DEFAULT`], at most [`DEAD_LIST_LIMIT_MAX`]),
//!   each `{"id", "attempts", "timestamp", "dead_at", "reason", "body": "<base64>"}`.
//! - `POST /channel/dead/requeue?topic=&channel=[&id=ID]` and `POST /channel/dead/empty?...`:
//!   every letter, or those with message id `ID`; on disk before the `200`.
//!
//! Errors in nsqd's words and shape: `400 MISSING_ARG_TOPIC`, `INVALID_ARG_TOPIC`,
//! `MISSING_ARG_CHANNEL`, `INVALID_ARG_CHANNEL`, `INVALID_ARG_MAX_ATTEMPTS`,
//! `INVALID_ARG_MESSAGE_TTL`, `INVALID_ARG_LIMIT`; `404 TOPIC_NOT_FOUND`, `CHANNEL_NOT_FOUND`,
//! `MESSAGE_NOT_FOUND` (an id no letter has, or one that is not 16 bytes). Arguments are
//! checked before the topic is looked up.

use super::admin::{run, topic_and_channel_args};
use super::response::{self, ApiError, ApiResult};
use super::stats::go_duration;
use super::Req;
use crate::app::node::Node;
use crate::broker::admin::{OpReply, TopicOp};
use crate::broker::channel::{
    ChannelLimits, DeadList, DEAD_LIST_LIMIT_DEFAULT, DEAD_LIST_LIMIT_MAX,
};
use crate::options::go_syntax::parse_duration;
use crate::protocol::MessageId;
use base64::Engine as _;
use hyper::Method;
use serde::Serialize;
use std::time::Duration;

fn unexpected(reply: &OpReply) -> ApiError {
    tracing::error!("HTTP: unexpected answer {reply:?}");
    ApiError::new(500, "INTERNAL_ERROR")
}

/// `max_attempts=`: 0..=65535.
fn max_attempts_param(req: &Req) -> Result<Option<u16>, ApiError> {
    req.params()?
        .get("max_attempts")
        .map(|v| {
            v.parse::<u16>()
                .map_err(|_| ApiError::bad_request("INVALID_ARG_MAX_ATTEMPTS"))
        })
        .transpose()
}

/// `message_ttl=`: a Go duration, not negative.
fn message_ttl_param(req: &Req) -> Result<Option<Duration>, ApiError> {
    req.params()?
        .get("message_ttl")
        .map(|v| {
            parse_duration(v)
                .ok()
                .and_then(|ns| u64::try_from(ns).ok())
                .map(Duration::from_nanos)
                .ok_or_else(|| ApiError::bad_request("INVALID_ARG_MESSAGE_TTL"))
        })
        .transpose()
}

/// `id=`: a message id (16 bytes); one that is not cannot name a letter.
fn id_param(req: &Req) -> Result<Option<MessageId>, ApiError> {
    req.params()?
        .get("id")
        .map(|v| {
            MessageId::from_wire(v.as_bytes())
                .ok_or_else(|| ApiError::new(404, "MESSAGE_NOT_FOUND"))
        })
        .transpose()
}

/// `GET|POST /channel/config`.
pub async fn channel_config(node: &Node, req: &Req) -> ApiResult {
    #[derive(Serialize)]
    struct Config {
        max_attempts: u16,
        message_ttl: String,
    }
    let (topic, channel) = topic_and_channel_args(req)?;
    let (max_attempts, message_ttl) = if req.method == Method::POST {
        (max_attempts_param(req)?, message_ttl_param(req)?)
    } else {
        (None, None)
    };
    let op = TopicOp::ChannelConfig {
        channel,
        max_attempts,
        message_ttl,
    };
    match run(node, &topic, op).await? {
        OpReply::Limits(ChannelLimits {
            max_attempts,
            message_ttl,
        }) => Ok(response::json(&Config {
            max_attempts,
            message_ttl: go_duration(message_ttl),
        })),
        other => Err(unexpected(&other)),
    }
}

/// `GET /channel/dead`.
pub async fn dead_list(node: &Node, req: &Req) -> ApiResult {
    #[derive(Serialize)]
    struct Letter {
        id: String,
        attempts: u16,
        timestamp: i64,
        dead_at: u64,
        reason: &'static str,
        body: String,
    }
    #[derive(Serialize)]
    struct Listing {
        count: u64,
        messages: Vec<Letter>,
    }
    let (topic, channel) = topic_and_channel_args(req)?;
    let limit = match req.params()?.get("limit") {
        None => DEAD_LIST_LIMIT_DEFAULT,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request("INVALID_ARG_LIMIT"))?
            .min(DEAD_LIST_LIMIT_MAX),
    };
    let DeadList { count, letters } =
        match run(node, &topic, TopicOp::DeadList { channel, limit }).await? {
            OpReply::Dead(list) => list,
            other => return Err(unexpected(&other)),
        };
    let messages = letters
        .into_iter()
        .map(|l| Letter {
            id: String::from_utf8_lossy(l.id.as_bytes()).into_owned(),
            attempts: l.attempts,
            timestamp: l.timestamp_ns,
            dead_at: l.dead_at_ns,
            reason: l.reason.as_str(),
            body: base64::engine::general_purpose::STANDARD.encode(&l.body),
        })
        .collect();
    Ok(response::json(&Listing { count, messages }))
}

/// `POST /channel/dead/requeue`.
pub async fn dead_requeue(node: &Node, req: &Req) -> ApiResult {
    let (topic, channel) = topic_and_channel_args(req)?;
    let id = id_param(req)?;
    run(node, &topic, TopicOp::DeadRequeue { channel, id }).await?;
    Ok(response::empty())
}

/// `POST /channel/dead/empty`.
pub async fn dead_empty(node: &Node, req: &Req) -> ApiResult {
    let (topic, channel) = topic_and_channel_args(req)?;
    let id = id_param(req)?;
    run(node, &topic, TopicOp::DeadEmpty { channel, id }).await?;
    Ok(response::empty())
}
