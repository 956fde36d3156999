//! `ProtocolError`: the NSQ error a client sees, as one error frame `"<CODE> <description>"`,
//! and [`ErrorCode`]: every code nsqd 1.3.0's V2 protocol sends, in one table.
//!
//! Owns the fatal/non-fatal split of Go's `internal/protocol/errors.go`: a fatal error
//! (`FatalClientErr`) is sent and then the connection is closed; a non-fatal one (`ClientErr`)
//! is sent and the connection goes on. In nsqd 1.3.0 only `E_FIN_FAILED`, `E_REQ_FAILED` and
//! `E_TOUCH_FAILED` are non-fatal ([`ErrorCode::is_fatal`]).
//!
//! The description is bytes, not a `String`: Go formats raw wire bytes into some messages
//! (`invalid command %s`, `FIN %s failed ...` with a 16-byte id that need not be UTF-8) and sends
//! them unchanged, so we keep them unchanged too. `Display` shows them lossily, for logs.

use std::fmt;

/// Declares [`ErrorCode`] from one table: variant, wire code, fatal (as nsqd 1.3.0 sends it).
macro_rules! error_codes {
    ($($variant:ident = $code:literal, $fatal:literal;)*) => {
        /// Every error code of nsqd 1.3.0's V2 protocol.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// Every code, in the table's order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as it goes on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// Whether nsqd closes the connection after sending it.
            pub fn is_fatal(self) -> bool {
                match self {
                    $(ErrorCode::$variant => $fatal,)*
                }
            }
        }
    };
}

error_codes! {
    Invalid = "E_INVALID", true;
    BadProtocol = "E_BAD_PROTOCOL", true;
    BadBody = "E_BAD_BODY", true;
    BadTopic = "E_BAD_TOPIC", true;
    BadChannel = "E_BAD_CHANNEL", true;
    BadMessage = "E_BAD_MESSAGE", true;
    IdentifyFailed = "E_IDENTIFY_FAILED", true;
    SubFailed = "E_SUB_FAILED", true;
    PubFailed = "E_PUB_FAILED", true;
    MpubFailed = "E_MPUB_FAILED", true;
    DpubFailed = "E_DPUB_FAILED", true;
    FinFailed = "E_FIN_FAILED", false;
    ReqFailed = "E_REQ_FAILED", false;
    TouchFailed = "E_TOUCH_FAILED", false;
    AuthFirst = "E_AUTH_FIRST", true;
    AuthFailed = "E_AUTH_FAILED", true;
    AuthDisabled = "E_AUTH_DISABLED", true;
    Unauthorized = "E_UNAUTHORIZED", true;
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The three publish commands: their names and the code a failed one is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishCommand {
    Pub,
    Mpub,
    Dpub,
}

impl PublishCommand {
    pub fn name(self) -> &'static str {
        match self {
            Self::Pub => "PUB",
            Self::Mpub => "MPUB",
            Self::Dpub => "DPUB",
        }
    }

    /// nsqd's code for a publish it could not store (`E_PUB_FAILED`, ...).
    pub fn failed_code(self) -> ErrorCode {
        match self {
            Self::Pub => ErrorCode::PubFailed,
            Self::Mpub => ErrorCode::MpubFailed,
            Self::Dpub => ErrorCode::DpubFailed,
        }
    }

    /// The fatal error for a publish that failed because of `why` (`E_PUB_FAILED PUB failed
    /// <why>`).
    pub fn failed(self, why: &dyn fmt::Display) -> ProtocolError {
        ProtocolError::fatal(self.failed_code(), format!("{} failed {why}", self.name()))
    }
}

/// One NSQ protocol error, exactly as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    /// The NSQ error code.
    pub code: ErrorCode,
    /// The description after the code and one space; raw bytes (see the module docs).
    pub message: Vec<u8>,
    /// Whether the connection is closed after the error frame is sent.
    pub fatal: bool,
}

impl ProtocolError {
    /// A fatal error (Go `NewFatalClientErr`): the connection is closed after it is sent.
    pub fn fatal(code: ErrorCode, message: impl Into<Vec<u8>>) -> Self {
        Self {
            code,
            message: message.into(),
            fatal: true,
        }
    }

    /// A non-fatal error (Go `NewClientErr`): the connection stays open.
    pub fn non_fatal(code: ErrorCode, message: impl Into<Vec<u8>>) -> Self {
        Self {
            code,
            message: message.into(),
            fatal: false,
        }
    }

    /// An error with the fatality nsqd 1.3.0 gives its code ([`ErrorCode::is_fatal`]).
    pub fn new(code: ErrorCode, message: impl Into<Vec<u8>>) -> Self {
        Self {
            code,
            message: message.into(),
            fatal: code.is_fatal(),
        }
    }

    /// The error frame payload: `"<CODE> <description>"` (Go `ClientErr.Error()`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.write_to(&mut out);
        out
    }

    /// Appends the error frame payload to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.code.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(&self.message);
    }

    /// Length of the payload written by [`Self::write_to`].
    pub fn encoded_len(&self) -> usize {
        self.code.as_str().len() + 1 + self.message.len()
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
        let e = ProtocolError::fatal(ErrorCode::Invalid, "cannot SUB in current state");
        assert_eq!(e.to_string(), "E_INVALID cannot SUB in current state");
        assert_eq!(e.to_bytes(), b"E_INVALID cannot SUB in current state");
        assert_eq!(e.encoded_len(), e.to_bytes().len());
    }

    #[test]
    fn only_three_codes_are_non_fatal() {
        let non_fatal: Vec<_> = ErrorCode::ALL
            .iter()
            .filter(|c| !ProtocolError::new(**c, "x").fatal)
            .map(|c| c.as_str())
            .collect();
        assert_eq!(
            non_fatal,
            ["E_FIN_FAILED", "E_REQ_FAILED", "E_TOUCH_FAILED"]
        );
        assert_eq!(ErrorCode::ALL.len(), 18);
        for c in ErrorCode::ALL {
            assert!(c.as_str().starts_with("E_"), "{c}");
        }
    }

    #[test]
    fn raw_bytes_survive() {
        let e = ProtocolError::fatal(ErrorCode::Invalid, b"invalid command \xff".to_vec());
        assert_eq!(e.to_bytes(), b"E_INVALID invalid command \xff");
        assert_eq!(e.to_string(), "E_INVALID invalid command \u{fffd}");
    }
}
