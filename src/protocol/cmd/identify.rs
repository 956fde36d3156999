//! `IDENTIFY`: the client's settings and feature negotiation.
//!
//! ```text
//! IDENTIFY\n
//! [ 4-byte size, int32 BE ][ N-byte JSON body ]
//! ```
//! Go order: state must be init (`E_INVALID cannot IDENTIFY in current state`); size
//! (`E_BAD_BODY IDENTIFY failed to read body size`); too big vs `--max-body-size`
//! (`IDENTIFY body too big %d > %d`) *before* `<= 0` (`IDENTIFY invalid body size %d`); body
//! (`IDENTIFY failed to read body`). IDENTIFY is exempt from the TLS policy. The JSON is
//! interpreted by [`crate::protocol::identify`].

use crate::protocol::error::ErrorCode;
use bytes::Bytes;

use super::Command;
use crate::protocol::decode::{check_body_size, ClientState, Cursor, DecodeContext, Stop};
use crate::protocol::error::ProtocolError;

pub(crate) fn parse(cur: &mut Cursor<'_>, cx: &DecodeContext<'_>) -> Result<Command, Stop> {
    if cx.state != ClientState::Init {
        return Err(
            ProtocolError::fatal(ErrorCode::Invalid, "cannot IDENTIFY in current state").into(),
        );
    }
    let size = cur.take_i32(|| {
        ProtocolError::fatal(ErrorCode::BadBody, "IDENTIFY failed to read body size")
    })?;
    let len = check_body_size(size, "IDENTIFY", cx.limits)?;
    let body = cur.take(len, || {
        ProtocolError::fatal(ErrorCode::BadBody, "IDENTIFY failed to read body")
    })?;
    Ok(Command::Identify(Bytes::copy_from_slice(body)))
}

pub(super) fn encode(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(b"IDENTIFY\n");
    super::put_len(out, body.len());
    out.extend_from_slice(body);
}
