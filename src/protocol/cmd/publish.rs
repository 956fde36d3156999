//! `PUB`: publish one message. (The file is not `pub.rs`: `pub` is a Rust keyword.)
//!
//! ```text
//! PUB <topic_name>\n
//! [ 4-byte size, int32 BE ][ N-byte body ]
//! ```
//! Go order (no state check): at least 2 params (`E_INVALID PUB insufficient number of
//! parameters`); topic (`E_BAD_TOPIC PUB topic name %q is not valid`) — both before any body
//! byte; size (`E_BAD_MESSAGE PUB failed to read message body size`); `<= 0` (`PUB invalid
//! message body size %d`) before too big vs `--max-msg-size` (`PUB message too big %d > %d`);
//! body (`PUB failed to read message body`). Auth is checked by the broker *after* the body.

use crate::protocol::error::ErrorCode;
use bytes::Bytes;

use super::Command;
use crate::protocol::decode::{check_message_size, topic_param, Cursor, DecodeContext, Stop};
use crate::protocol::error::ProtocolError;

pub(crate) fn parse(
    params: &[&[u8]],
    cur: &mut Cursor<'_>,
    cx: &DecodeContext<'_>,
) -> Result<Command, Stop> {
    let raw_topic = params.get(1).ok_or_else(|| {
        ProtocolError::fatal(ErrorCode::Invalid, "PUB insufficient number of parameters")
    })?;
    let topic = topic_param(raw_topic, "PUB")?;
    let body = read_message_body(cur, cx, "PUB")?;
    Ok(Command::Pub { topic, body })
}

/// The size-prefixed body of PUB and DPUB, with their shared error strings.
pub(crate) fn read_message_body(
    cur: &mut Cursor<'_>,
    cx: &DecodeContext<'_>,
    name: &str,
) -> Result<Bytes, Stop> {
    let size = cur.take_i32(|| {
        ProtocolError::fatal(
            ErrorCode::BadMessage,
            format!("{name} failed to read message body size"),
        )
    })?;
    let len = check_message_size(size, name, cx.limits)?;
    let body = cur.take(len, || {
        ProtocolError::fatal(
            ErrorCode::BadMessage,
            format!("{name} failed to read message body"),
        )
    })?;
    Ok(Bytes::copy_from_slice(body))
}

pub(super) fn encode(out: &mut Vec<u8>, topic: &str, body: &[u8]) {
    out.extend_from_slice(format!("PUB {topic}\n").as_bytes());
    super::put_len(out, body.len());
    out.extend_from_slice(body);
}
