//! `RDY`: how many messages the client may have in flight (a window, not a counter).
//!
//! ```text
//! RDY [<count>]\n
//! ```
//! Go order: in the closing state the command is ignored before anything is parsed
//! ([`Command::RdyIgnored`]); state must be subscribed (`E_INVALID cannot RDY in current
//! state`); count defaults to 1 when there is no second param; parsed with `ByteToBase10`
//! (`E_INVALID RDY could not parse count %s`, raw bytes; `RDY ` with an empty count is 0);
//! then `int64(count)` must be in `0..=--max-rdy-count` (`E_INVALID RDY count %d out of range
//! 0-%d`, the count printed as Go's `int64`, so a huge count wraps negative).

use super::Command;
use crate::protocol::base10::{byte_to_base10, go_int64};
use crate::protocol::decode::{with_raw, ClientState, DecodeContext, Stop};
use crate::protocol::error::ErrorCode;
use crate::protocol::error::ProtocolError;
use crate::protocol::limits::Limits;

pub(crate) fn parse(params: &[&[u8]], cx: &DecodeContext<'_>) -> Result<Command, Stop> {
    match cx.state {
        ClientState::Closing => return Ok(Command::RdyIgnored),
        ClientState::Init => {
            return Err(
                ProtocolError::fatal(ErrorCode::Invalid, "cannot RDY in current state").into(),
            )
        }
        ClientState::Subscribed => {}
    }
    let count = match params.get(1) {
        None => 1,
        Some(raw) => byte_to_base10(raw).ok_or_else(|| {
            ProtocolError::fatal(
                ErrorCode::Invalid,
                with_raw("RDY could not parse count ", raw),
            )
        })?,
    };
    let signed = go_int64(count);
    let max = Limits::as_i64(cx.limits.max_rdy_count);
    if signed < 0 || signed > max {
        let msg = format!("RDY count {signed} out of range 0-{max}");
        return Err(ProtocolError::fatal(ErrorCode::Invalid, msg).into());
    }
    Ok(Command::Rdy(count))
}

pub(super) fn encode(out: &mut Vec<u8>, count: u64) {
    out.extend_from_slice(format!("RDY {count}\n").as_bytes());
}
