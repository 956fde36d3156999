//! `TOUCH`: reset a message's in-flight timeout.
//!
//! ```text
//! TOUCH <message_id>\n
//! ```
//! Go order: state subscribed or closing (`E_INVALID cannot TOUCH in current state`); at least
//! 2 params (`E_INVALID TOUCH insufficient number of params`); id (`E_INVALID invalid message
//! ID`). `E_TOUCH_FAILED` (non-fatal) is the broker's.

use super::fin::{message_id, require_consumer_state};
use super::Command;
use crate::protocol::decode::{DecodeContext, Stop};
use crate::protocol::error::ErrorCode;
use crate::protocol::error::ProtocolError;
use crate::protocol::message_id::MessageId;

pub(crate) fn parse(params: &[&[u8]], cx: &DecodeContext<'_>) -> Result<Command, Stop> {
    require_consumer_state(cx, "TOUCH")?;
    let raw = params.get(1).ok_or_else(|| {
        ProtocolError::fatal(ErrorCode::Invalid, "TOUCH insufficient number of params")
    })?;
    Ok(Command::Touch(message_id(raw)?))
}

pub(super) fn encode(out: &mut Vec<u8>, id: &MessageId) {
    out.extend_from_slice(b"TOUCH ");
    out.extend_from_slice(id.as_bytes());
    out.push(b'\n');
}
