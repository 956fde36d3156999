//! The NSQ V2 wire protocol, pure: no IO, no clock, fuzzable.
//!
//! - [`decode`]: client bytes → [`Decoded`] (a [`Command`], an NSQ error, or "need more"),
//!   with Go nsqd 1.3.0's check order and error strings; one file per command in [`cmd`].
//! - [`frame`]: server → client frames (response, error, message).
//! - [`identify`]: the IDENTIFY JSON request, its validation, negotiation and response.
//! - [`error`]: [`ProtocolError`] and which errors close the connection.
//! - [`names`], [`base10`], [`message_id`], [`go_fmt`]: the small Go-compatible pieces.
//!
//! Invariant: [`decode`] never panics, never takes more than [`Limits`] allow for one command
//! (see [`Limits::command_len_max_bytes`]) and returns `consumed` in `1..=buf.len()`.

pub mod base10;
pub mod cmd;
pub mod decode;
pub mod error;
pub mod frame;
pub mod go_fmt;
pub mod identify;
pub mod limits;
pub mod message_id;
pub mod names;

#[cfg(test)]
mod tests;

pub use cmd::req::req_timeout;
pub use cmd::Command;
pub use decode::{
    decode, decode_at_eof, magic_ok, mpub_topic_ahead, ClientState, DecodeContext, Decoded,
    MAGIC_V2,
};
pub use error::{ErrorCode, ProtocolError, PublishCommand};
pub use frame::{
    decode_frame, write_error, write_message, write_response, Frame, FRAME_TYPE_ERROR,
    FRAME_TYPE_MESSAGE, FRAME_TYPE_RESPONSE,
};
pub use identify::{
    identify_response_json, negotiate, parse_identify, resolve_identify, IdentifyRequest,
    IdentifySettings, Negotiated, ServerFeatures, NSQD_VERSION,
};
pub use limits::Limits;
pub use message_id::MessageId;
pub use names::{is_ephemeral, is_valid_channel_name, is_valid_topic_name};
