//! `ProtocolError`: the NSQ error a client sees, as one error frame `"<CODE> <description>"`.
//!
//! Owns the fatal/non-fatal split of Go's `internal/protocol/errors.go`: a fatal error
//! (`FatalClientErr`) is sent and then the connection is closed; a non-fatal one (`ClientErr`)
//! is sent and the connection goes on. In nsqd 1.3.0 only `E_FIN_FAILED`, `E_REQ_FAILED` and
//! `E_TOUCH_FAILED` are non-fatal; [`ProtocolError::is_fatal_code`] says so for any code.
//!
//! The description is bytes, not a `String`: Go formats raw wire bytes into some messages
//! (`invalid command %s`, `FIN %s failed ...` with a 16-byte id that need not be UTF-8) and sends
//! them unchanged, so we keep them unchanged too. `Display` shows them lossily, for logs.

use std::fmt;

/// One NSQ protocol error, exactly as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    /// The NSQ error code, e.g. `"E_INVALID"`.
    pub code: &'static str,
    /// The description after the code and one space; raw bytes (see the module docs).
    pub message: Vec<u8>,
    /// Whether the connection is closed after the error frame is sent.
    pub fatal: bool,
}

impl ProtocolError {
    /// A fatal error (Go `NewFatalClientErr`): the connection is closed after it is sent.
    pub fn fatal(code: &'static str, message: impl Into<Vec<u8>>) -> Self {
        Self {
            code,
            message: message.into(),
            fatal: true,
        }
    }

    /// A non-fatal error (Go `NewClientErr`): the connection stays open.
    pub fn non_fatal(code: &'static str, message: impl Into<Vec<u8>>) -> Self {
        Self {
            code,
            message: message.into(),
            fatal: false,
        }
    }

    /// An error with the fatality nsqd 1.3.0 gives its code (see [`Self::is_fatal_code`]).
    pub fn new(code: &'static str, message: impl Into<Vec<u8>>) -> Self {
        Self {
            code,
            message: message.into(),
            fatal: Self::is_fatal_code(code),
        }
    }

    /// nsqd 1.3.0 sends every code as fatal except the three message-operation failures.
    pub fn is_fatal_code(code: &str) -> bool {
        !matches!(code, "E_FIN_FAILED" | "E_REQ_FAILED" | "E_TOUCH_FAILED")
    }

    /// The error frame payload: `"<CODE> <description>"` (Go `ClientErr.Error()`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.code.len() + 1 + self.message.len());
        self.write_to(&mut out);
        out
    }

    /// Appends the error frame payload to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.code.as_bytes());
        out.push(b' ');
        out.extend_from_slice(&self.message);
    }

    /// Length of the payload written by [`Self::write_to`].
    pub fn encoded_len(&self) -> usize {
        self.code.len() + 1 + self.message.len()
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            self.code,
            String::from_utf8_lossy(&self.message)
        )
    }
}

impl std::error::Error for ProtocolError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_code_space_message() {
        let e = ProtocolError::fatal("E_INVALID", "cannot SUB in current state");
        assert_eq!(e.to_string(), "E_INVALID cannot SUB in current state");
        assert_eq!(e.to_bytes(), b"E_INVALID cannot SUB in current state");
        assert_eq!(e.encoded_len(), e.to_bytes().len());
    }

    #[test]
    fn only_three_codes_are_non_fatal() {
        for code in ["E_FIN_FAILED", "E_REQ_FAILED", "E_TOUCH_FAILED"] {
            assert!(!ProtocolError::new(code, "x").fatal, "{code}");
        }
        for code in [
            "E_INVALID",
            "E_BAD_BODY",
            "E_BAD_TOPIC",
            "E_PUB_FAILED",
            "E_AUTH_FAILED",
        ] {
            assert!(ProtocolError::new(code, "x").fatal, "{code}");
        }
    }

    #[test]
    fn raw_bytes_survive() {
        let e = ProtocolError::fatal("E_INVALID", b"invalid command \xff".to_vec());
        assert_eq!(e.to_bytes(), b"E_INVALID invalid command \xff");
        assert_eq!(e.to_string(), "E_INVALID invalid command \u{fffd}");
    }
}
