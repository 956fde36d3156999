//! `CLS`: the consumer wants to close; nsqd answers `CLOSE_WAIT`, sets RDY 0 and the closing
//! state, and keeps accepting FIN/REQ/TOUCH.
//!
//! ```text
//! CLS\n
//! ```
//! State must be subscribed (`E_INVALID cannot CLS in current state`). Extra params are
//! ignored in nsqd 1.3.0.

use super::Command;
use crate::protocol::decode::{ClientState, DecodeContext, Stop};
use crate::protocol::error::ErrorCode;
use crate::protocol::error::ProtocolError;

pub(crate) fn parse(cx: &DecodeContext<'_>) -> Result<Command, Stop> {
    if cx.state != ClientState::Subscribed {
        return Err(ProtocolError::fatal(ErrorCode::Invalid, "cannot CLS in current state").into());
    }
    Ok(Command::Cls)
}

pub(super) fn encode(out: &mut Vec<u8>) {
    out.extend_from_slice(b"CLS\n");
}
