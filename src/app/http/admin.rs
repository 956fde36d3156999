//! `/ping`, `/info`, `/topic/*`, `/channel/*`: nsqd's handlers, with its exact checks, their
//! order and its error texts (`/topic/*` say `INVALID_TOPIC`, `/channel/*` say
//! `INVALID_ARG_TOPIC`: nsqd spells them differently). Pause, unpause and delete rewrite
//! `nsqd.dat` before answering, so a crash right after the `200` cannot undo them (creates need
//! not wait: the topic's directory and the channel's state file are on disk before the `200`).

use super::response::{self, ApiError, ApiResult, Resp};
use super::Req;
use crate::app::node::Node;
use crate::app::stats::NSQD_VERSION;
use crate::broker::admin::{InvalidSince, OpError, OpReply, TopicOp};
use crate::protocol::{is_valid_channel_name, is_valid_topic_name};
use hyper::StatusCode;
use serde::Serialize;
use std::time::{Duration, SystemTime};

/// `GET /ping`: `OK`, or `500 NOK - <error>` while a log (of any shard) is failing.
pub async fn ping(node: &Node) -> Resp {
    match crate::app::gather::health(&node.link).await {
        Ok(()) => response::plain(StatusCode::OK, "OK"),
        Err(e) => response::plain(StatusCode::INTERNAL_SERVER_ERROR, format!("NOK - {e}")),
    }
}

/// nsqd's health string for `/stats` (every shard's).
pub async fn health_text(node: &Node) -> String {
    match crate::app::gather::health(&node.link).await {
        Ok(()) => "OK".to_owned(),
        Err(e) => format!("NOK - {e}"),
    }
}

fn ns(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// `GET /info`.
pub fn info(node: &Node) -> Resp {
    #[derive(Serialize)]
    struct Info<'a> {
        version: &'a str,
        broadcast_address: &'a str,
        hostname: String,
        http_port: i64,
        tcp_port: i64,
        start_time: u64,
        max_heartbeat_interval: i64,
        max_output_buffer_size: u64,
        max_output_buffer_timeout: i64,
        max_deflate_level: u8,
    }
    let o = &node.options();
    response::json(&Info {
        version: NSQD_VERSION,
        broadcast_address: &o.broadcast_address,
        hostname: hostname(),
        http_port: node.http_addr.map_or(-1, |a| i64::from(a.port())),
        tcp_port: node.tcp_addr.map_or(-1, |a| i64::from(a.port())),
        start_time: node.start_unix_s,
        max_heartbeat_interval: ns(o.max_heartbeat_interval),
        max_output_buffer_size: o.max_output_buffer_size,
        max_output_buffer_timeout: ns(o.max_output_buffer_timeout),
        max_deflate_level: o.max_deflate_level,
    })
}

/// The OS hostname as Go's `os.Hostname` reads it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim_end().to_owned())
        .unwrap_or_default()
}

/// `?topic=` present (not validated: nsqd only looks it up), for delete and (un)pause.
fn topic_param(req: &Req) -> Result<String, ApiError> {
    let q = req.params()?;
    q.get("topic")
        .map(str::to_owned)
        .ok_or_else(|| ApiError::bad_request("MISSING_ARG_TOPIC"))
}

fn internal(e: &dyn std::fmt::Display) -> ApiError {
    tracing::error!("HTTP: {e}");
    ApiError::new(500, "INTERNAL_ERROR")
}

/// Runs `op` on the topic's owner; nsqd's statuses for what went wrong.
pub(super) async fn run(node: &Node, topic: &str, op: TopicOp) -> Result<OpReply, ApiError> {
    crate::shard::topic_op(&node.shard, topic, op)
        .await
        .map_err(|e| match e {
            OpError::TopicNotFound => ApiError::new(404, "TOPIC_NOT_FOUND"),
            OpError::ChannelNotFound => ApiError::new(404, "CHANNEL_NOT_FOUND"),
            OpError::MessageNotFound => ApiError::new(404, "MESSAGE_NOT_FOUND"),
            OpError::InvalidSince => ApiError::bad_request("INVALID_ARG_SINCE"),
            OpError::Internal(e) => internal(&e),
        })
}

async fn persist(node: &Node) {
    if let Err(e) = node.metadata.persist().await {
        tracing::error!("failed to persist metadata - {e}");
    }
}

pub async fn topic_create(node: &Node, req: &Req) -> ApiResult {
    let name = super::publish::topic_name(req)?;
    run(node, &name, TopicOp::Create).await?;
    Ok(response::empty())
}

pub async fn topic_delete(node: &Node, req: &Req) -> ApiResult {
    let name = topic_param(req)?;
    run(node, &name, TopicOp::Delete).await?;
    // At once (not with the background rewrite): a crash must not bring the topic back.
    persist(node).await;
    Ok(response::empty())
}

pub async fn topic_empty(node: &Node, req: &Req) -> ApiResult {
    let name = super::publish::topic_name(req)?;
    run(node, &name, TopicOp::Empty).await?;
    Ok(response::empty())
}

pub async fn topic_pause(node: &Node, req: &Req, paused: bool) -> ApiResult {
    let name = topic_param(req)?;
    run(node, &name, TopicOp::Pause(paused)).await?;
    persist(node).await;
    Ok(response::empty())
}

/// nsqd's `GetTopicChannelArgs`.
pub(super) fn topic_and_channel_args(req: &Req) -> Result<(String, String), ApiError> {
    let q = req.params()?;
    let topic = q
        .get("topic")
        .ok_or_else(|| ApiError::bad_request("MISSING_ARG_TOPIC"))?;
    if !is_valid_topic_name(topic.as_bytes()) {
        return Err(ApiError::bad_request("INVALID_ARG_TOPIC"));
    }
    let channel = q
        .get("channel")
        .ok_or_else(|| ApiError::bad_request("MISSING_ARG_CHANNEL"))?;
    if !is_valid_channel_name(channel.as_bytes()) {
        return Err(ApiError::bad_request("INVALID_ARG_CHANNEL"));
    }
    Ok((topic.to_owned(), channel.to_owned()))
}

/// ringsq's `since=`: Unix seconds (a fraction allowed) or an RFC 3339 time. `None` when absent.
fn since_param(req: &Req) -> Result<Option<SystemTime>, ApiError> {
    let q = req.params()?;
    let Some(raw) = q.get("since") else {
        return Ok(None);
    };
    parse_since(raw)
        .map(Some)
        .ok_or_else(|| ApiError::bad_request("INVALID_ARG_SINCE"))
}

/// A `since` time: Unix seconds (a fraction allowed) or RFC 3339; `None` if it is neither.
/// Also `ringsq dump --since`.
pub fn parse_since(raw: &str) -> Option<SystemTime> {
    let is_seconds = !raw.is_empty()
        && raw.chars().all(|c| c.is_ascii_digit() || c == '.')
        && raw.chars().next().is_some_and(|c| c.is_ascii_digit());
    if is_seconds {
        let seconds: f64 = raw.parse().ok()?;
        return SystemTime::UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(seconds).ok()?);
    }
    let t =
        time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339).ok()?;
    let ns = t.unix_timestamp_nanos();
    if ns < 0 {
        return Some(SystemTime::UNIX_EPOCH);
    }
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_nanos(u64::try_from(ns).ok()?))
}

/// `POST /channel/create?topic=&channel=[&since=]`: with ringsq's `since`, a new channel starts
/// at what was published since then instead of the tail (an existing channel is left as it is).
pub async fn channel_create(node: &Node, req: &Req) -> ApiResult {
    let (topic, channel) = topic_and_channel_args(req)?;
    // Checked on the owner once the topic is known to exist (a missing topic is a 404 first).
    let since = since_param(req).map_err(|_| InvalidSince);
    run(node, &topic, TopicOp::ChannelCreate { channel, since }).await?;
    Ok(response::empty())
}

/// ringsq's `POST /channel/rewind?topic=&channel=&since=`: the channel delivers again, in log
/// order, every retained message published at or after `since`. The new position is on disk
/// before the `200`.
pub async fn channel_rewind(node: &Node, req: &Req) -> ApiResult {
    let (topic, channel) = topic_and_channel_args(req)?;
    let since = since_param(req)?.ok_or_else(|| ApiError::bad_request("MISSING_ARG_SINCE"))?;
    run(node, &topic, TopicOp::ChannelRewind { channel, since }).await?;
    Ok(response::empty())
}

pub async fn channel_delete(node: &Node, req: &Req) -> ApiResult {
    let (topic, channel) = topic_and_channel_args(req)?;
    run(node, &topic, TopicOp::ChannelDelete(channel)).await?;
    persist(node).await;
    Ok(response::empty())
}

pub async fn channel_empty(node: &Node, req: &Req) -> ApiResult {
    let (topic, channel) = topic_and_channel_args(req)?;
    run(node, &topic, TopicOp::ChannelEmpty(channel)).await?;
    Ok(response::empty())
}

pub async fn channel_pause(node: &Node, req: &Req, paused: bool) -> ApiResult {
    let (topic, channel) = topic_and_channel_args(req)?;
    run(node, &topic, TopicOp::ChannelPause { channel, paused }).await?;
    persist(node).await;
    Ok(response::empty())
}
