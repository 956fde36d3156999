//! `REQ`: put a message back, to be delivered again after a timeout.
//!
//! ```text
//! REQ <message_id> <timeout_ms>\n
//! ```
//! Go order: state subscribed or closing (`E_INVALID cannot REQ in current state`); at least 3
//! params (`E_INVALID REQ insufficient number of params`); id (`E_INVALID invalid message ID`);
//! timeout by `ByteToBase10` (`E_INVALID REQ could not parse timeout %s`, so `-1` fails here).
//! A parsed timeout is never an error: nsqd clamps it to `0..=--max-req-timeout` (logging it),
//! which [`req_timeout`] reproduces. `E_REQ_FAILED` (non-fatal) is the broker's.

use crate::protocol::error::ErrorCode;
use std::time::Duration;

use super::fin::{message_id, require_consumer_state};
use super::Command;
use crate::protocol::base10::{byte_to_base10, go_millis_to_nanos};
use crate::protocol::decode::{with_raw, DecodeContext, Stop};
use crate::protocol::error::ProtocolError;
use crate::protocol::message_id::MessageId;

pub(crate) fn parse(params: &[&[u8]], cx: &DecodeContext<'_>) -> Result<Command, Stop> {
    require_consumer_state(cx, "REQ")?;
    let (Some(raw_id), Some(raw_timeout)) = (params.get(1), params.get(2)) else {
        return Err(
            ProtocolError::fatal(ErrorCode::Invalid, "REQ insufficient number of params").into(),
        );
    };
    let id = message_id(raw_id)?;
    let timeout_ms = byte_to_base10(raw_timeout).ok_or_else(|| {
        ProtocolError::fatal(
            ErrorCode::Invalid,
            with_raw("REQ could not parse timeout ", raw_timeout),
        )
    })?;
    Ok(Command::Req { id, timeout_ms })
}

/// The requeue delay nsqd 1.3.0 applies for a REQ timeout as sent: Go's wrapping
/// `time.Duration(ms) * time.Millisecond`, then negative → 0 and above `max_req_timeout_ms` →
/// the maximum. The flag tells whether it was clamped (nsqd logs that).
pub fn req_timeout(timeout_ms: u64, max_req_timeout_ms: u64) -> (Duration, bool) {
    let nanos = go_millis_to_nanos(timeout_ms);
    let max = Duration::from_millis(max_req_timeout_ms);
    match u64::try_from(nanos) {
        Err(_) => (Duration::ZERO, true),
        Ok(n) if Duration::from_nanos(n) > max => (max, true),
        Ok(n) => (Duration::from_nanos(n), false),
    }
}

pub(super) fn encode(out: &mut Vec<u8>, id: &MessageId, timeout_ms: u64) {
    out.extend_from_slice(b"REQ ");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(format!(" {timeout_ms}\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_like_go() {
        let hour = 3_600_000;
        assert_eq!(req_timeout(0, hour), (Duration::ZERO, false));
        assert_eq!(
            req_timeout(1500, hour),
            (Duration::from_millis(1500), false)
        );
        assert_eq!(
            req_timeout(hour, hour),
            (Duration::from_millis(hour), false)
        );
        assert_eq!(
            req_timeout(hour + 1, hour),
            (Duration::from_millis(hour), true)
        );
        assert_eq!(
            req_timeout(u64::MAX, hour),
            (Duration::ZERO, true),
            "int64(-1) ms"
        );
    }
}
