//! The V2 commands: the [`Command`] enum, and one file per command with its wire format, its
//! parser (used by [`crate::protocol::decode`]) and its client-side encoder.
//!
//! Parsers follow Go's check order exactly (see each file); they never take body bytes before
//! every check on the line has passed.

pub mod auth;
pub mod cls;
pub mod dpub;
pub mod fin;
pub mod identify;
pub mod mpub;
pub mod nop;
pub mod publish;
pub mod rdy;
pub mod req;
pub mod sub;
pub mod touch;
pub mod unknown;

use bytes::Bytes;

use super::message_id::MessageId;

/// A complete, valid command from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `IDENTIFY`: the raw JSON body (parse it with [`crate::protocol::parse_identify`]).
    Identify(Bytes),
    /// `AUTH`: the raw secret.
    Auth(Bytes),
    /// `SUB <topic> <channel>`: names already validated.
    Sub { topic: String, channel: String },
    /// `RDY [<count>]`: count within `0..=max_rdy_count` (1 when omitted).
    Rdy(u64),
    /// `RDY ...` received in the closing state: Go ignores it without parsing the count
    /// (it only logs `ignoring RDY after CLS in state ClientStateV2Closing`).
    RdyIgnored,
    /// `FIN <id>`.
    Fin(MessageId),
    /// `REQ <id> <timeout_ms>`: timeout as sent; the broker clamps it with [`req::req_timeout`].
    Req { id: MessageId, timeout_ms: u64 },
    /// `TOUCH <id>`.
    Touch(MessageId),
    /// `CLS`.
    Cls,
    /// `NOP`.
    Nop,
    /// `PUB <topic>` + body.
    Pub { topic: String, body: Bytes },
    /// `MPUB <topic>` + messages (at least one).
    Mpub { topic: String, bodies: Vec<Bytes> },
    /// `DPUB <topic> <defer_ms>` + body; `defer_ms` already checked against `--max-req-timeout`.
    Dpub {
        topic: String,
        defer_ms: u64,
        body: Bytes,
    },
}

impl Command {
    /// Client side: appends this command's wire bytes to `out` (tests, tools, benches).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Identify(body) => identify::encode(out, body),
            Self::Auth(secret) => auth::encode(out, secret),
            Self::Sub { topic, channel } => sub::encode(out, topic, channel),
            Self::Rdy(count) => rdy::encode(out, *count),
            Self::RdyIgnored => out.extend_from_slice(b"RDY\n"),
            Self::Fin(id) => fin::encode(out, id),
            Self::Req { id, timeout_ms } => req::encode(out, id, *timeout_ms),
            Self::Touch(id) => touch::encode(out, id),
            Self::Cls => cls::encode(out),
            Self::Nop => nop::encode(out),
            Self::Pub { topic, body } => publish::encode(out, topic, body),
            Self::Mpub { topic, bodies } => mpub::encode(out, topic, bodies),
            Self::Dpub {
                topic,
                defer_ms,
                body,
            } => dpub::encode(out, topic, *defer_ms, body),
        }
    }
}

/// Appends a 4-byte big-endian length. Client side only; lengths beyond `u32` are a caller bug.
pub(crate) fn put_len(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
}
