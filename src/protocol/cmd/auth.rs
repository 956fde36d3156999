//! `AUTH`: the secret for the `--auth-http-address` server.
//!
//! ```text
//! AUTH\n
//! [ 4-byte size, int32 BE ][ N-byte secret ]
//! ```
//! Go order: state must be init (`E_INVALID cannot AUTH in current state`); exactly one param
//! (`E_INVALID AUTH invalid number of parameters`, so `AUTH x` fails); size (`E_BAD_BODY AUTH
//! failed to read body size`); too big (`AUTH body too big %d > %d`) before `<= 0` (`AUTH
//! invalid body size %d`); body (`AUTH failed to read body`). The rest (`AUTH already set`,
//! `AUTH disabled`, the auth server) is the broker's.

use crate::protocol::error::ErrorCode;
use bytes::Bytes;

use super::Command;
use crate::protocol::decode::{check_body_size, ClientState, Cursor, DecodeContext, Stop};
use crate::protocol::error::ProtocolError;

pub(crate) fn parse(
    params: &[&[u8]],
    cur: &mut Cursor<'_>,
    cx: &DecodeContext<'_>,
) -> Result<Command, Stop> {
    if cx.state != ClientState::Init {
        return Err(
            ProtocolError::fatal(ErrorCode::Invalid, "cannot AUTH in current state").into(),
        );
    }
    if params.len() != 1 {
        return Err(
            ProtocolError::fatal(ErrorCode::Invalid, "AUTH invalid number of parameters").into(),
        );
    }
    let size =
        cur.take_i32(|| ProtocolError::fatal(ErrorCode::BadBody, "AUTH failed to read body size"))?;
    let len = check_body_size(size, "AUTH", cx.limits)?;
    let body = cur.take(len, || {
        ProtocolError::fatal(ErrorCode::BadBody, "AUTH failed to read body")
    })?;
    Ok(Command::Auth(Bytes::copy_from_slice(body)))
}

pub(super) fn encode(out: &mut Vec<u8>, secret: &[u8]) {
    out.extend_from_slice(b"AUTH\n");
    super::put_len(out, secret.len());
    out.extend_from_slice(secret);
}
