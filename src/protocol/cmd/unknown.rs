//! Any other command name (names are case-sensitive; an empty line is the empty name):
//! fatal `E_INVALID invalid command %s`, the name echoed as raw bytes.

use crate::protocol::decode::with_raw;
use crate::protocol::error::ErrorCode;
use crate::protocol::error::ProtocolError;

pub(crate) fn error(name: &[u8]) -> ProtocolError {
    ProtocolError::fatal(ErrorCode::Invalid, with_raw("invalid command ", name))
}
