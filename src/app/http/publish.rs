//! `POST /pub` and `POST /mpub`: nsqd's checks in nsqd's order, then the same publish path and
//! ack policy as TCP `PUB`/`MPUB`: the `200 OK` waits for the log exactly as the TCP `OK` does
//! (`--mem-queue-size`, `--ack-after-sync`), and any failure to store is `503 EXITING`
//! (nsqd's text for every `PutMessage` error; the cause is logged), but for a topic full under
//! ringsq's `--max-topic-bytes`: `507 TOPIC_FULL`.
//!
//! `/mpub` bodies: text mode, one message per `\n`-terminated line (empty lines skipped); binary
//! mode (`binary=true`, `1`, or any value but `false`/`0`, as nsqd's `boolParams`) `[i32 count]` then `count`
//! times `[i32 size][bytes]`, big-endian, errors as TCP `MPUB` minus the `E_` (`BAD_BODY`,
//! `BAD_MESSAGE`), status 413.
//!
//! A topic another shard owns is published to there (`shard::forward::publish`): the
//! `200` waits for that shard's answer, given under the same ack policy.

use super::response::{self, ApiError, ApiResult};
use super::Req;
use crate::app::node::Node;
use crate::broker::admin::{OpError, TopicOp};
use crate::broker::topic::{Ack, PublishError};
use crate::connection::forward::{Failure, Item};
use crate::protocol::is_valid_topic_name;
use crate::shard::forward;
use bytes::Bytes;
use std::time::Duration;

fn exiting(e: &dyn std::fmt::Display) -> ApiError {
    tracing::error!("HTTP: publish failed - {e}");
    ApiError::new(503, "EXITING")
}

/// nsqd's `getTopicFromQuery` (without creating the topic yet); also `/topic/create` and
/// `/topic/empty`'s check.
pub(super) fn topic_name(req: &Req) -> Result<String, ApiError> {
    let q = req.params()?;
    let topic = q
        .get("topic")
        .ok_or_else(|| ApiError::bad_request("MISSING_ARG_TOPIC"))?;
    if !is_valid_topic_name(topic.as_bytes()) {
        return Err(ApiError::bad_request("INVALID_TOPIC"));
    }
    Ok(topic.to_owned())
}

/// Gets or creates the topic on its owner (nsqd's `GetTopic`).
async fn get_topic(node: &Node, name: &str) -> Result<(), ApiError> {
    crate::shard::topic_op(&node.shard, name, TopicOp::Create)
        .await
        .map(drop)
        .map_err(|e| match e {
            OpError::Internal(e) => exiting(&e),
            OpError::TopicNotFound
            | OpError::ChannelNotFound
            | OpError::MessageNotFound
            | OpError::InvalidSince => exiting(&"unexpected answer"),
        })
}

/// Appends (on the topic's owner) and waits for the ack the TCP path would wait for.
async fn publish(
    node: &Node,
    name: &str,
    bodies: Vec<Bytes>,
    defer: Option<Duration>,
) -> ApiResult {
    if node.broker.exiting.get() {
        return Err(ApiError::new(503, "EXITING"));
    }
    if let Some(shard) = node.link.place.remote_owner(name) {
        let item = Item {
            topic: name.to_owned(),
            bodies,
            defer,
        };
        return match forward::publish(&node.link, shard, item).await {
            Ok(()) => Ok(response::text("OK")),
            Err(Failure::Full { .. }) => Err(ApiError::new(507, "TOPIC_FULL")),
            Err(f) => Err(exiting(&f)),
        };
    }
    let topic = node.broker.topic(name).await.map_err(|e| exiting(&e))?;
    let ack = topic.publish(&bodies, defer).map_err(|e| match e {
        // ringsq's `--max-topic-bytes`: HTTP 507 Insufficient Storage.
        PublishError::Full { .. } => ApiError::new(507, "TOPIC_FULL"),
        e @ (PublishError::Storage(_) | PublishError::Recovering { .. }) => exiting(&e),
    })?;
    if let Ack::Wait(wait) = ack {
        wait.wait().await.map_err(|e| exiting(&e))?;
    }
    Ok(response::text("OK"))
}

/// `POST /pub?topic=<t>[&defer=<ms>]`.
pub async fn pub_one(node: &Node, req: Req) -> ApiResult {
    let max = node.options().max_msg_size;
    if req.content_length.is_some_and(|n| n > max) {
        return Err(ApiError::new(413, "MSG_TOO_BIG"));
    }
    let name = topic_name(&req);
    let defer = defer_param(node, &req);
    let Some(body) = req.read_body(max).await? else {
        return Err(ApiError::new(413, "MSG_TOO_BIG"));
    };
    if body.is_empty() {
        return Err(ApiError::bad_request("MSG_EMPTY"));
    }
    let name = name?;
    let defer = defer?;
    // The topic is created (if need be) by the publish, on its owner.
    publish(node, &name, vec![body], defer).await
}

/// `defer=<ms>`: a Go `ParseInt` in `0..=--max-req-timeout`, else `400 INVALID_DEFER`.
fn defer_param(node: &Node, req: &Req) -> Result<Option<Duration>, ApiError> {
    let Some(raw) = req.params()?.get("defer") else {
        return Ok(None);
    };
    let invalid = || ApiError::bad_request("INVALID_DEFER");
    // Go's `strconv.ParseInt(s, 10, 64)`: optional sign, decimal digits.
    let ms: i64 = raw.parse().map_err(|_| invalid())?;
    let ms = u64::try_from(ms).map_err(|_| invalid())?;
    let d = Duration::from_millis(ms);
    if d > node.options().max_req_timeout {
        return Err(invalid());
    }
    Ok(Some(d))
}

/// `POST /mpub?topic=<t>[&binary=true]`.
pub async fn pub_many(node: &Node, req: Req) -> ApiResult {
    let max_body = node.options().max_body_size;
    let max_msg = node.options().max_msg_size;
    if req.content_length.is_some_and(|n| n > max_body) {
        return Err(ApiError::new(413, "BODY_TOO_BIG"));
    }
    let name = topic_name(&req)?;
    // nsqd's `boolParams`: only `true`/`1` and `false`/`0` are recognised; any other value (even
    // one Go's `ParseBool` knows, like `f`) is logged as deprecated and means binary.
    let binary = req.params()?.get("binary").is_some_and(|v| match v {
        "true" | "1" => true,
        "false" | "0" => false,
        _ => {
            tracing::warn!("deprecated value '{v}' used for /mpub binary param");
            true
        }
    });
    get_topic(node, &name).await?;
    let Some(body) = req.read_body(max_body).await? else {
        return Err(ApiError::new(413, "BODY_TOO_BIG"));
    };
    let bodies = if binary {
        split_binary(&body, max_msg, max_body).map_err(|code| ApiError::new(413, code))?
    } else {
        split_lines(&body, max_msg)?
    };
    publish(node, &name, bodies, None).await
}

/// Text mode: every non-empty line is a message (a line longer than `max_msg` is `413 MSG_TOO_BIG`).
fn split_lines(body: &Bytes, max_msg: u64) -> Result<Vec<Bytes>, ApiError> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < body.len() {
        let end = body[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |i| start + i);
        if end > start {
            if (end - start) as u64 > max_msg {
                return Err(ApiError::new(413, "MSG_TOO_BIG"));
            }
            out.push(body.slice(start..end));
        }
        start = end + 1;
    }
    Ok(out)
}

fn read_i32(body: &[u8], at: usize) -> Option<i32> {
    let bytes: [u8; 4] = body.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(i32::from_be_bytes(bytes))
}

/// Binary mode, as nsqd's `readMPUB`; the error is the status text.
fn split_binary(body: &Bytes, max_msg: u64, max_body: u64) -> Result<Vec<Bytes>, &'static str> {
    let count = read_i32(body, 0).ok_or("BAD_BODY")?;
    let count_max = i64::try_from(max_body.saturating_sub(4) / 5).unwrap_or(i64::MAX);
    if count <= 0 || i64::from(count) > count_max {
        return Err("BAD_BODY");
    }
    let mut at = 4;
    let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(body.len() / 5));
    for _ in 0..count {
        let size = read_i32(body, at).ok_or("BAD_MESSAGE")?;
        let size = u64::try_from(size)
            .ok()
            .filter(|&s| s > 0)
            .ok_or("BAD_MESSAGE")?;
        if size > max_msg {
            return Err("BAD_MESSAGE");
        }
        at += 4;
        let end = usize::try_from(size)
            .ok()
            .and_then(|s| at.checked_add(s))
            .ok_or("BAD_MESSAGE")?;
        if end > body.len() {
            return Err("BAD_MESSAGE");
        }
        out.push(body.slice(at..end));
        at = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(msgs: &[&[u8]]) -> Bytes {
        let mut b = Vec::new();
        b.extend_from_slice(&i32::try_from(msgs.len()).unwrap_or(0).to_be_bytes());
        for m in msgs {
            b.extend_from_slice(&i32::try_from(m.len()).unwrap_or(0).to_be_bytes());
            b.extend_from_slice(m);
        }
        Bytes::from(b)
    }

    #[test]
    fn text_lines_skip_empty_and_check_size() {
        let got = split_lines(&Bytes::from_static(b"a\n\nbc\nd"), 10).unwrap_or_default();
        assert_eq!(
            got,
            vec![
                Bytes::from_static(b"a"),
                Bytes::from_static(b"bc"),
                Bytes::from_static(b"d")
            ]
        );
        assert!(split_lines(&Bytes::from_static(b"\n\n"), 10).is_ok_and(|v| v.is_empty()));
        assert!(split_lines(&Bytes::from_static(b"abc\n"), 2).is_err());
    }

    #[test]
    fn binary_as_read_mpub() {
        let ok = split_binary(&binary(&[b"x", b"yz"]), 10, 100).unwrap_or_default();
        assert_eq!(
            ok,
            vec![Bytes::from_static(b"x"), Bytes::from_static(b"yz")]
        );
        assert_eq!(
            split_binary(&Bytes::from_static(b"\0\0"), 10, 100),
            Err("BAD_BODY")
        );
        assert_eq!(split_binary(&binary(&[]), 10, 100), Err("BAD_BODY"));
        assert_eq!(split_binary(&binary(&[b""]), 10, 100), Err("BAD_MESSAGE"));
        assert_eq!(
            split_binary(&binary(&[b"toolong"]), 3, 100),
            Err("BAD_MESSAGE")
        );
        let mut cut = binary(&[b"abc"]).to_vec();
        cut.pop();
        assert_eq!(split_binary(&Bytes::from(cut), 10, 100), Err("BAD_MESSAGE"));
    }
}
