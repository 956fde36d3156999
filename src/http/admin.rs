//! `/ping`, `/info`, `/topic/*`, `/channel/*`: nsqd's handlers, with its exact checks, their
//! order and its error texts (`/topic/*` say `INVALID_TOPIC`, `/channel/*` say
//! `INVALID_ARG_TOPIC`: nsqd spells them differently). Pause, unpause and delete rewrite
//! `nsqd.dat` before answering, so a crash right after the `200` cannot undo them (creates need
//! not wait: the topic's directory and the channel's state file are on disk before the `200`).

use super::response::{self, ApiError, ApiResult, Resp};
use super::Req;
use crate::broker::channel::Channel;
use crate::broker::topic::Topic;
use crate::broker::Broker;
use crate::node::Node;
use crate::protocol::{is_valid_channel_name, is_valid_topic_name};
use crate::stats::NSQD_VERSION;
use hyper::StatusCode;
use serde::Serialize;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

/// `GET /ping`: `OK`, or `500 NOK - <error>` while a log is failing.
pub fn ping(broker: &Broker) -> Resp {
    match broker.health() {
        Ok(()) => response::plain(StatusCode::OK, "OK"),
        Err(e) => response::plain(StatusCode::INTERNAL_SERVER_ERROR, format!("NOK - {e}")),
    }
}

/// nsqd's health string for `/stats`.
pub fn health_text(broker: &Broker) -> String {
    match broker.health() {
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
    let o = &node.broker.options;
    response::json(&Info {
        version: NSQD_VERSION,
        broadcast_address: &o.broadcast_address,
        hostname: hostname(),
        http_port: node.http_addr.map_or(-1, |a| i64::from(a.port())),
        tcp_port: node.tcp_addr.map_or(-1, |a| i64::from(a.port())),
        start_time: node.broker.start_unix_s,
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

fn existing_topic(broker: &Broker, name: &str) -> Result<Rc<Topic>, ApiError> {
    broker
        .get_topic(name)
        .ok_or_else(|| ApiError::new(404, "TOPIC_NOT_FOUND"))
}

fn internal(e: &dyn std::fmt::Display) -> ApiError {
    tracing::error!("HTTP: {e}");
    ApiError::new(500, "INTERNAL_ERROR")
}

async fn persist(broker: &Broker) {
    if let Err(e) = broker.persist_metadata().await {
        tracing::error!("failed to persist metadata - {e}");
    }
}

pub async fn topic_create(broker: &Broker, req: &Req) -> ApiResult {
    let name = super::publish::topic_name(req)?;
    broker.topic(&name).await.map_err(|e| internal(&e))?;
    Ok(response::empty())
}

pub async fn topic_delete(broker: &Broker, req: &Req) -> ApiResult {
    let name = topic_param(req)?;
    if !broker.delete_topic(&name).await {
        return Err(ApiError::new(404, "TOPIC_NOT_FOUND"));
    }
    // At once (not with the background rewrite): a crash must not bring the topic back.
    persist(broker).await;
    Ok(response::empty())
}

pub fn topic_empty(broker: &Broker, req: &Req) -> ApiResult {
    let name = super::publish::topic_name(req)?;
    existing_topic(broker, &name)?.empty();
    Ok(response::empty())
}

pub async fn topic_pause(broker: &Broker, req: &Req, paused: bool) -> ApiResult {
    let name = topic_param(req)?;
    existing_topic(broker, &name)?.pause(paused);
    persist(broker).await;
    Ok(response::empty())
}

/// nsqd's `GetTopicChannelArgs` + `GetExistingTopic`.
fn topic_and_channel(broker: &Broker, req: &Req) -> Result<(Rc<Topic>, String), ApiError> {
    let (topic, channel) = topic_and_channel_args(req)?;
    Ok((existing_topic(broker, &topic)?, channel))
}

/// nsqd's `GetTopicChannelArgs`.
fn topic_and_channel_args(req: &Req) -> Result<(String, String), ApiError> {
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

fn parse_since(raw: &str) -> Option<SystemTime> {
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

fn existing_channel(topic: &Topic, name: &str) -> Result<Rc<Channel>, ApiError> {
    topic
        .get_channel(name)
        .ok_or_else(|| ApiError::new(404, "CHANNEL_NOT_FOUND"))
}

/// `POST /channel/create?topic=&channel=[&since=]`: with ringsq's `since`, a new channel starts
/// at what was published since then instead of the tail (an existing channel is left as it is).
pub async fn channel_create(broker: &Broker, req: &Req) -> ApiResult {
    let (topic, channel) = topic_and_channel(broker, req)?;
    let since = since_param(req)?;
    let (channel, created) = topic
        .channel_created(&channel)
        .await
        .map_err(|e| internal(&e))?;
    if let (Some(since), true) = (since, created) {
        topic
            .rewind_channel(&channel, since)
            .await
            .map_err(|e| internal(&e))?;
    }
    Ok(response::empty())
}

/// ringsq's `POST /channel/rewind?topic=&channel=&since=`: the channel delivers again, in log
/// order, every retained message published at or after `since`. The new position is on disk
/// before the `200`.
pub async fn channel_rewind(broker: &Broker, req: &Req) -> ApiResult {
    let (topic, channel) = topic_and_channel_args(req)?;
    let since = since_param(req)?.ok_or_else(|| ApiError::bad_request("MISSING_ARG_SINCE"))?;
    let topic = existing_topic(broker, &topic)?;
    let channel = existing_channel(&topic, &channel)?;
    topic
        .rewind_channel(&channel, since)
        .await
        .map_err(|e| internal(&e))?;
    Ok(response::empty())
}

pub async fn channel_delete(broker: &Broker, req: &Req) -> ApiResult {
    let (topic, channel) = topic_and_channel(broker, req)?;
    if !topic.delete_channel(&channel) {
        return Err(ApiError::new(404, "CHANNEL_NOT_FOUND"));
    }
    // nsqd: an ephemeral topic goes with its last channel.
    if topic.ephemeral && topic.channels().is_empty() {
        broker.delete_topic(&topic.name).await;
    }
    persist(broker).await;
    Ok(response::empty())
}

pub fn channel_empty(broker: &Broker, req: &Req) -> ApiResult {
    let (topic, channel) = topic_and_channel(broker, req)?;
    existing_channel(&topic, &channel)?.empty();
    Ok(response::empty())
}

pub async fn channel_pause(broker: &Broker, req: &Req, paused: bool) -> ApiResult {
    let (topic, channel) = topic_and_channel(broker, req)?;
    let channel = existing_channel(&topic, &channel)?;
    channel.paused.set(paused);
    if !paused {
        channel.wake();
    }
    persist(broker).await;
    Ok(response::empty())
}
