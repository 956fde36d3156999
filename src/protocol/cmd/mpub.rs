//! `MPUB`: publish several messages to one topic, all or none.
//!
//! ```text
//! MPUB <topic_name>\n
//! [ 4-byte body size ][ 4-byte num_messages ]
//! [ 4-byte message #1 size ][ N-byte binary data ]
//!   ... (repeated <num_messages> times)
//! ```
//! All sizes are int32 BE. Go order (no state check): at least 2 params (`E_INVALID MPUB
//! insufficient number of parameters`); topic (`E_BAD_TOPIC E_BAD_TOPIC MPUB topic name %q is
//! not valid` — the code really is repeated in the description); [broker: auth + topic
//! creation, see [`crate::protocol::mpub_topic_ahead`]]; body size (`E_BAD_BODY MPUB failed to
//! read body size`); `<= 0` (`MPUB invalid body size %d`) before too big vs `--max-body-size`
//! (`MPUB body too big %d > %d`); count (`MPUB failed to read message count`), which must be in
//! `1..=(max_body_size-4)/5` (`MPUB invalid message count %d`); then for message i (from 0):
//! size (`E_BAD_MESSAGE MPUB failed to read message(%d) body size`), `<= 0` (`MPUB invalid
//! message(%d) body size %d`), too big vs `--max-msg-size` (`MPUB message too big %d > %d`),
//! body (`MPUB failed to read message body`).
//!
//! Framing quirk kept from Go: the body size is only *checked*; the messages are read from the
//! stream by count, whether or not they add up to it (bytes left over are parsed as the next
//! command). What Go does not bound, we must: the bytes after the body size (count, sizes,
//! bodies) may total at most `--max-body-size`; a message that would go past it is refused with
//! `E_BAD_BODY MPUB body too big %d > %d`, %d being the total it would reach. A well-formed
//! MPUB (body size = what follows) never hits this, since its body size passed the same limit.

use crate::protocol::error::ErrorCode;
use std::ops::Range;

use bytes::Bytes;

use super::Command;
use crate::protocol::decode::{size_to_usize, topic_param, Cursor, DecodeContext, Stop};
use crate::protocol::error::ProtocolError;
use crate::protocol::limits::Limits;

pub(crate) fn parse(
    params: &[&[u8]],
    cur: &mut Cursor<'_>,
    cx: &DecodeContext<'_>,
) -> Result<Command, Stop> {
    let raw_topic = params.get(1).ok_or_else(|| {
        ProtocolError::fatal(ErrorCode::Invalid, "MPUB insufficient number of parameters")
    })?;
    let topic = topic_param(raw_topic, "E_BAD_TOPIC MPUB")?;
    let max_body = Limits::as_i64(cx.limits.max_body_size);
    let body_size = cur.take_i32(|| bad_body("MPUB failed to read body size".into()))?;
    if body_size <= 0 {
        return Err(bad_body(format!("MPUB invalid body size {body_size}")).into());
    }
    if i64::from(body_size) > max_body {
        return Err(bad_body(format!("MPUB body too big {body_size} > {max_body}")).into());
    }
    let body_start = cur.pos();
    let count = cur.take_i32(|| bad_body("MPUB failed to read message count".into()))?;
    let max_messages = max_body.saturating_sub(4) / 5;
    if count <= 0 || i64::from(count) > max_messages {
        return Err(bad_body(format!("MPUB invalid message count {count}")).into());
    }
    let ranges = read_messages(cur, cx, count, body_start)?;
    let (Some(first), Some(last)) = (ranges.first(), ranges.last()) else {
        return Err(bad_body(format!("MPUB invalid message count {count}")).into());
    };
    // One copy of the whole span, then zero-copy slices of it.
    let span_start = first.start;
    let span = Bytes::copy_from_slice(cur.slice(span_start, last.end));
    let bodies = ranges
        .iter()
        .map(|r| span.slice(r.start - span_start..r.end - span_start))
        .collect();
    Ok(Command::Mpub { topic, bodies })
}

/// Reads `count` size-prefixed messages; returns where each body lies in the buffer.
fn read_messages(
    cur: &mut Cursor<'_>,
    cx: &DecodeContext<'_>,
    count: i32,
    body_start: usize,
) -> Result<Vec<Range<usize>>, Stop> {
    let max_msg = Limits::as_i64(cx.limits.max_msg_size);
    let max_body = Limits::as_i64(cx.limits.max_body_size);
    let mut ranges = Vec::new();
    for i in 0..count {
        let size =
            cur.take_i32(|| bad_message(format!("MPUB failed to read message({i}) body size")))?;
        if size <= 0 {
            return Err(bad_message(format!("MPUB invalid message({i}) body size {size}")).into());
        }
        if i64::from(size) > max_msg {
            return Err(bad_message(format!("MPUB message too big {size} > {max_msg}")).into());
        }
        let len = size_to_usize(size)?;
        let total = i64::try_from(cur.pos() - body_start)
            .unwrap_or(i64::MAX)
            .saturating_add(i64::from(size));
        if total > max_body {
            return Err(bad_body(format!("MPUB body too big {total} > {max_body}")).into());
        }
        let start = cur.pos();
        cur.take(len, || {
            bad_message("MPUB failed to read message body".into())
        })?;
        ranges.push(start..cur.pos());
    }
    Ok(ranges)
}

fn bad_body(message: String) -> ProtocolError {
    ProtocolError::fatal(ErrorCode::BadBody, message)
}

fn bad_message(message: String) -> ProtocolError {
    ProtocolError::fatal(ErrorCode::BadMessage, message)
}

pub(super) fn encode(out: &mut Vec<u8>, topic: &str, bodies: &[Bytes]) {
    out.extend_from_slice(format!("MPUB {topic}\n").as_bytes());
    let body_len = 4 + bodies.iter().map(|b| 4 + b.len()).sum::<usize>();
    super::put_len(out, body_len);
    super::put_len(out, bodies.len());
    for body in bodies {
        super::put_len(out, body.len());
        out.extend_from_slice(body);
    }
}
