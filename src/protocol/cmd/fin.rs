//! `FIN`: a message was processed.
//!
//! ```text
//! FIN <message_id>\n
//! ```
//! Go order: state must be subscribed or closing (`E_INVALID cannot FIN in current state`); at
//! least 2 params (`E_INVALID FIN insufficient number of params`); id of exactly 16 bytes, any
//! content (`E_INVALID invalid message ID`). `E_FIN_FAILED` (non-fatal) is the broker's.

use super::Command;
use crate::protocol::decode::{DecodeContext, Stop};
use crate::protocol::error::ErrorCode;
use crate::protocol::error::ProtocolError;
use crate::protocol::message_id::MessageId;

pub(crate) fn parse(params: &[&[u8]], cx: &DecodeContext<'_>) -> Result<Command, Stop> {
    require_consumer_state(cx, "FIN")?;
    let raw = params.get(1).ok_or_else(|| {
        ProtocolError::fatal(ErrorCode::Invalid, "FIN insufficient number of params")
    })?;
    Ok(Command::Fin(message_id(raw)?))
}

/// FIN, REQ and TOUCH need a subscribed or closing connection.
pub(crate) fn require_consumer_state(
    cx: &DecodeContext<'_>,
    name: &str,
) -> Result<(), ProtocolError> {
    use crate::protocol::decode::ClientState;
    match cx.state {
        ClientState::Subscribed | ClientState::Closing => Ok(()),
        ClientState::Init => Err(ProtocolError::fatal(
            ErrorCode::Invalid,
            format!("cannot {name} in current state"),
        )),
    }
}

/// Go `getMessageID`: exactly 16 bytes.
pub(crate) fn message_id(raw: &[u8]) -> Result<MessageId, ProtocolError> {
    MessageId::from_wire(raw)
        .ok_or_else(|| ProtocolError::fatal(ErrorCode::Invalid, "invalid message ID"))
}

pub(super) fn encode(out: &mut Vec<u8>, id: &MessageId) {
    out.extend_from_slice(b"FIN ");
    out.extend_from_slice(id.as_bytes());
    out.push(b'\n');
}
