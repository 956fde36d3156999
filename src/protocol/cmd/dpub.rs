//! `DPUB`: publish one message, delivered after a delay.
//!
//! ```text
//! DPUB <topic_name> <defer_time_ms>\n
//! [ 4-byte size, int32 BE ][ N-byte body ]
//! ```
//! Go order (no state check): at least 3 params (`E_INVALID DPUB insufficient number of
//! parameters`); topic (`E_BAD_TOPIC DPUB topic name %q is not valid`); delay by
//! `ByteToBase10` (`E_INVALID DPUB could not parse timeout %s`); delay as Go's wrapping
//! `time.Duration(ms) * time.Millisecond` must be in `0..=--max-req-timeout`, else `E_INVALID
//! DPUB timeout %d out of range 0-%d` (ms as sent; *not* clamped, unlike REQ); then the body
//! exactly as PUB with `DPUB` in the messages. Auth is checked by the broker after the body.
//!
//! The rare delay whose nanoseconds wrap back into range is accepted as Go accepts it, with
//! `defer_ms` = the wrapped nanoseconds / 10^6.

use super::publish::read_message_body;
use super::Command;
use crate::protocol::base10::{byte_to_base10, go_millis_to_nanos};
use crate::protocol::decode::{topic_param, with_raw, Cursor, DecodeContext, Stop};
use crate::protocol::error::ErrorCode;
use crate::protocol::error::ProtocolError;
use crate::protocol::limits::Limits;

pub(crate) fn parse(
    params: &[&[u8]],
    cur: &mut Cursor<'_>,
    cx: &DecodeContext<'_>,
) -> Result<Command, Stop> {
    let (Some(raw_topic), Some(raw_defer)) = (params.get(1), params.get(2)) else {
        return Err(ProtocolError::fatal(
            ErrorCode::Invalid,
            "DPUB insufficient number of parameters",
        )
        .into());
    };
    let topic = topic_param(raw_topic, "DPUB")?;
    let defer_ms = byte_to_base10(raw_defer).ok_or_else(|| {
        ProtocolError::fatal(
            ErrorCode::Invalid,
            with_raw("DPUB could not parse timeout ", raw_defer),
        )
    })?;
    let nanos = go_millis_to_nanos(defer_ms);
    let max_ms = Limits::as_i64(cx.limits.max_req_timeout_ms);
    let max_nanos = max_ms.saturating_mul(1_000_000);
    let Ok(in_range) = u64::try_from(nanos) else {
        return Err(out_of_range(defer_ms, max_ms).into());
    };
    if nanos > max_nanos {
        return Err(out_of_range(defer_ms, max_ms).into());
    }
    let body = read_message_body(cur, cx, "DPUB")?;
    Ok(Command::Dpub {
        topic,
        defer_ms: in_range / 1_000_000,
        body,
    })
}

fn out_of_range(defer_ms: u64, max_ms: i64) -> ProtocolError {
    ProtocolError::fatal(
        ErrorCode::Invalid,
        format!("DPUB timeout {defer_ms} out of range 0-{max_ms}"),
    )
}

pub(super) fn encode(out: &mut Vec<u8>, topic: &str, defer_ms: u64, body: &[u8]) {
    out.extend_from_slice(format!("DPUB {topic} {defer_ms}\n").as_bytes());
    super::put_len(out, body.len());
    out.extend_from_slice(body);
}
