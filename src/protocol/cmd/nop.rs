//! `NOP`: no operation, no response; clients send it to answer `_heartbeat_`.
//!
//! ```text
//! NOP\n
//! ```
//! Valid in every state; extra params are ignored.

pub(super) fn encode(out: &mut Vec<u8>) {
    out.extend_from_slice(b"NOP\n");
}
