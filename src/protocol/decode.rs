//! The V2 command decoder: bytes from a client (after the 4-byte magic) → [`Decoded`].
//!
//! Pure: no IO, no clock, no shared state. The caller keeps a read buffer, calls [`decode`] on
//! it, drops `consumed` bytes on `Command`/`Error`, and reads more on `Incomplete`. Every
//! length is checked against [`Limits`] before bytes are taken, so one command never needs
//! more than [`Limits::command_len_max_bytes`]; nothing is allocated until a command is
//! complete and valid.
//!
//! Order of checks is Go's `nsqd/protocol_v2.go` (`IOLoop` → `Exec` → the command), because a
//! client sees which error comes first:
//! 1. a line up to `'\n'`; more than `line_len_max` bytes without one → [`Decoded::LineTooLong`]
//!    (Go: `bufio: buffer full`, connection closed, no error frame);
//! 2. trailing `'\r'` stripped, params = line split on every single `' '` (so `"A  B"` has an
//!    empty middle param); names are case-sensitive;
//! 3. `IDENTIFY` first; then the TLS policy for every other name, known or not
//!    (`cannot <NAME> in current state (TLS required)`); then the command;
//! 4. inside a command: state, parameter count, names and numbers on the line — all before a
//!    single body byte is needed; then each size as soon as its 4 bytes are there; then the body.
//!
//! All decode errors are fatal in nsqd; `consumed` on an error is where decoding stopped.
//! When the stream ends (EOF or read timeout) with a partial command, [`decode_at_eof`] gives
//! the error Go sends in that case (`PUB failed to read message body`, ...).

use super::cmd::{self, Command};
use super::error::ProtocolError;
use super::go_fmt::go_quote;
use super::limits::Limits;
use super::names;
use crate::protocol::error::ErrorCode;

/// The 4 bytes a V2 client sends first.
pub const MAGIC_V2: &[u8; 4] = b"  V2";

/// Whether the first 4 bytes of a connection select protocol V2.
pub fn magic_ok(first4: &[u8]) -> bool {
    first4 == MAGIC_V2
}

/// What the decoder needs of a connection's state (Go `stateInit`, `stateSubscribed`,
/// `stateClosing`; Go's `stateDisconnected`/`stateConnected` are never set by V2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Connected, not subscribed: may IDENTIFY, AUTH, SUB, publish.
    Init,
    /// After SUB.
    Subscribed,
    /// After CLS: RDY is ignored, FIN/REQ/TOUCH still work.
    Closing,
}

impl ClientState {
    /// The number nsqd's `/stats` reports for the state (its `stateInit` 0, `stateSubscribed`
    /// 3, `stateClosing` 4; its `stateDisconnected` 1 and `stateConnected` 2 are never seen
    /// in `/stats`).
    pub fn nsqd_number(self) -> i32 {
        match self {
            Self::Init => 0,
            Self::Subscribed => 3,
            Self::Closing => 4,
        }
    }
}

/// The connection facts a decode depends on.
#[derive(Debug, Clone, Copy)]
pub struct DecodeContext<'a> {
    /// The connection's state.
    pub state: ClientState,
    /// Whether the client's heartbeat interval is > 0 (SUB requires it).
    pub heartbeats_enabled: bool,
    /// `--tls-required` is in force and this connection has not upgraded to TLS: every command
    /// but IDENTIFY fails (Go `enforceTLSPolicy`).
    pub tls_required: bool,
    /// The flags' limits.
    pub limits: &'a Limits,
}

impl<'a> DecodeContext<'a> {
    /// A context without a TLS requirement.
    pub fn new(state: ClientState, heartbeats_enabled: bool, limits: &'a Limits) -> Self {
        Self {
            state,
            heartbeats_enabled,
            tls_required: false,
            limits,
        }
    }
}

/// The outcome of one [`decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// More bytes are needed; nothing was consumed.
    Incomplete,
    /// A whole, valid command occupying the first `consumed` bytes.
    Command { cmd: Command, consumed: usize },
    /// A command that nsqd answers with `err` (always fatal here); `consumed` bytes were read.
    Error { err: ProtocolError, consumed: usize },
    /// No `'\n'` within `line_len_max` bytes: nsqd logs `failed to read command - bufio: buffer
    /// full` and closes the connection without sending a frame.
    LineTooLong,
}

/// Why a command parser stopped before producing a command.
#[derive(Debug)]
pub(crate) enum Stop {
    /// Not enough bytes yet.
    Incomplete,
    /// The client gets this error.
    Error(ProtocolError),
}

impl From<ProtocolError> for Stop {
    fn from(err: ProtocolError) -> Self {
        Self::Error(err)
    }
}

/// A read position in the buffer. Running short is `Incomplete`, or at end of stream the
/// error Go reports for the read that failed.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    at_eof: bool,
}

impl<'a> Cursor<'a> {
    /// Takes `n` bytes; `on_short` makes the error for a stream that ends first.
    pub(crate) fn take(
        &mut self,
        n: usize,
        on_short: impl FnOnce() -> ProtocolError,
    ) -> Result<&'a [u8], Stop> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.buf.len());
        match end {
            Some(end) => {
                let bytes = &self.buf[self.pos..end];
                self.pos = end;
                Ok(bytes)
            }
            None if self.at_eof => Err(Stop::Error(on_short())),
            None => Err(Stop::Incomplete),
        }
    }

    /// Takes a 4-byte big-endian `int32` (Go `readLen`).
    pub(crate) fn take_i32(
        &mut self,
        on_short: impl FnOnce() -> ProtocolError,
    ) -> Result<i32, Stop> {
        let bytes = self.take(4, on_short)?;
        let mut be = [0u8; 4];
        be.copy_from_slice(bytes);
        Ok(i32::from_be_bytes(be))
    }

    /// Bytes taken so far, from the start of the command line.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The bytes between two positions (both already taken).
    pub(crate) fn slice(&self, start: usize, end: usize) -> &'a [u8] {
        &self.buf[start..end]
    }
}

/// Decodes one command from the front of `buf`. Never panics; see the module docs.
pub fn decode(buf: &[u8], cx: &DecodeContext<'_>) -> Decoded {
    decode_inner(buf, cx, false)
}

/// The error nsqd sends when the stream ends (EOF or read deadline) while `buf` holds a
/// partial command, e.g. `E_BAD_MESSAGE PUB failed to read message body`. `None` when Go sends
/// nothing (no complete command line). Call it after [`decode`] returned `Incomplete`.
pub fn decode_at_eof(buf: &[u8], cx: &DecodeContext<'_>) -> Option<ProtocolError> {
    match decode_inner(buf, cx, true) {
        Decoded::Error { err, .. } => Some(err),
        Decoded::Incomplete | Decoded::Command { .. } | Decoded::LineTooLong => None,
    }
}

/// If `buf` starts with a complete `MPUB <topic>` line that passes the checks Go makes before
/// reading the body, the topic. nsqd runs the AUTH check and creates the topic (`GetTopic`) at
/// that point, before the body is read, so its errors win over body errors and the topic
/// exists even if the body then fails. A broker that wants that order calls this once per
/// command, before [`decode`] returns the MPUB.
pub fn mpub_topic_ahead<'b>(buf: &'b [u8], cx: &DecodeContext<'_>) -> Option<&'b str> {
    let line = &buf[..buf.len().min(cx.limits.line_len_max)];
    let end = line.iter().position(|&b| b == b'\n')?;
    let params = split_params(&line[..end]);
    if cx.tls_required || params.first() != Some(&&b"MPUB"[..]) {
        return None;
    }
    let topic = params.get(1)?;
    if !names::is_valid_topic_name(topic) {
        return None;
    }
    std::str::from_utf8(topic).ok()
}

fn decode_inner(buf: &[u8], cx: &DecodeContext<'_>, at_eof: bool) -> Decoded {
    let window = &buf[..buf.len().min(cx.limits.line_len_max)];
    let Some(end) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= cx.limits.line_len_max {
            Decoded::LineTooLong
        } else {
            Decoded::Incomplete
        };
    };
    let params = split_params(&buf[..end]);
    let mut cur = Cursor {
        buf,
        pos: end + 1,
        at_eof,
    };
    match dispatch(&params, &mut cur, cx) {
        Ok(cmd) => Decoded::Command {
            cmd,
            consumed: cur.pos(),
        },
        Err(Stop::Error(err)) => Decoded::Error {
            err,
            consumed: cur.pos(),
        },
        Err(Stop::Incomplete) => Decoded::Incomplete,
    }
}

/// Go: trim one trailing `'\r'`, then `bytes.Split(line, " ")`.
fn split_params(line: &[u8]) -> Vec<&[u8]> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.split(|&b| b == b' ').collect()
}

fn dispatch(
    params: &[&[u8]],
    cur: &mut Cursor<'_>,
    cx: &DecodeContext<'_>,
) -> Result<Command, Stop> {
    let name = params.first().copied().unwrap_or_default();
    if name == b"IDENTIFY" {
        return cmd::identify::parse(cur, cx);
    }
    if cx.tls_required {
        let mut msg = b"cannot ".to_vec();
        msg.extend_from_slice(name);
        msg.extend_from_slice(b" in current state (TLS required)");
        return Err(ProtocolError::fatal(ErrorCode::Invalid, msg).into());
    }
    match name {
        b"FIN" => cmd::fin::parse(params, cx),
        b"RDY" => cmd::rdy::parse(params, cx),
        b"REQ" => cmd::req::parse(params, cx),
        b"PUB" => cmd::publish::parse(params, cur, cx),
        b"MPUB" => cmd::mpub::parse(params, cur, cx),
        b"DPUB" => cmd::dpub::parse(params, cur, cx),
        b"NOP" => Ok(Command::Nop),
        b"TOUCH" => cmd::touch::parse(params, cx),
        b"SUB" => cmd::sub::parse(params, cx),
        b"CLS" => cmd::cls::parse(cx),
        b"AUTH" => cmd::auth::parse(params, cur, cx),
        _ => Err(cmd::unknown::error(name).into()),
    }
}

/// A topic parameter, or `<code> <prefix> topic name %q is not valid`.
pub(crate) fn topic_param(raw: &[u8], prefix: &str) -> Result<String, ProtocolError> {
    name_param(raw, ErrorCode::BadTopic, prefix, "topic")
}

/// A channel parameter, or `E_BAD_CHANNEL <prefix> channel name %q is not valid`.
pub(crate) fn channel_param(raw: &[u8], prefix: &str) -> Result<String, ProtocolError> {
    name_param(raw, ErrorCode::BadChannel, prefix, "channel")
}

fn name_param(
    raw: &[u8],
    code: ErrorCode,
    prefix: &str,
    what: &str,
) -> Result<String, ProtocolError> {
    let valid = names::is_valid_topic_name(raw);
    match std::str::from_utf8(raw) {
        Ok(name) if valid => Ok(name.to_owned()),
        _ => Err(ProtocolError::fatal(
            code,
            format!("{prefix} {what} name {} is not valid", go_quote(raw)),
        )),
    }
}

/// `<text><raw bytes>`: Go's `fmt.Sprintf("...%s", params[i])` keeps the raw bytes.
pub(crate) fn with_raw(text: &str, raw: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(text.len() + raw.len());
    msg.extend_from_slice(text.as_bytes());
    msg.extend_from_slice(raw);
    msg
}

/// Checks a body size read for PUB/DPUB (`E_BAD_MESSAGE`, invalid size first, then too big).
pub(crate) fn check_message_size(
    size: i32,
    name: &str,
    limits: &Limits,
) -> Result<usize, ProtocolError> {
    let max = Limits::as_i64(limits.max_msg_size);
    if size <= 0 {
        return Err(ProtocolError::fatal(
            ErrorCode::BadMessage,
            format!("{name} invalid message body size {size}"),
        ));
    }
    if i64::from(size) > max {
        return Err(ProtocolError::fatal(
            ErrorCode::BadMessage,
            format!("{name} message too big {size} > {max}"),
        ));
    }
    size_to_usize(size)
}

/// Checks an IDENTIFY/AUTH body size (`E_BAD_BODY`, too big first, then invalid size).
pub(crate) fn check_body_size(
    size: i32,
    name: &str,
    limits: &Limits,
) -> Result<usize, ProtocolError> {
    let max = Limits::as_i64(limits.max_body_size);
    if i64::from(size) > max {
        return Err(ProtocolError::fatal(
            ErrorCode::BadBody,
            format!("{name} body too big {size} > {max}"),
        ));
    }
    if size <= 0 {
        return Err(ProtocolError::fatal(
            ErrorCode::BadBody,
            format!("{name} invalid body size {size}"),
        ));
    }
    size_to_usize(size)
}

/// A positive `int32` size as `usize` (cannot fail on 32- or 64-bit targets).
pub(crate) fn size_to_usize(size: i32) -> Result<usize, ProtocolError> {
    usize::try_from(size)
        .map_err(|_| ProtocolError::fatal(ErrorCode::BadBody, format!("invalid body size {size}")))
}
