//! Server → client frames (Go `internal/protocol/protocol.go` `SendFramedResponse`,
//! `nsqd/message.go` `WriteTo`).
//!
//! ```text
//! frame    = size:u32be  frame_type:i32be  data      size = 4 + len(data)
//! type 0   response   data = "OK" | "CLOSE_WAIT" | "_heartbeat_" | JSON
//! type 1   error      data = "<CODE> <description>"
//! type 2   message    data = timestamp_ns:i64be attempts:u16be id:[16]u8 body
//! ```
//!
//! Encoders append to a caller's buffer so the connection can batch frames and reuse one
//! buffer. [`decode_frame`] is the client side, for tests and tools.

use super::error::ProtocolError;
use super::message_id::{MessageId, MESSAGE_ID_LEN_BYTES};

/// Frame type of a response (`OK`, `CLOSE_WAIT`, `_heartbeat_`, IDENTIFY/AUTH JSON).
pub const FRAME_TYPE_RESPONSE: i32 = 0;
/// Frame type of an error (`"<CODE> <description>"`).
pub const FRAME_TYPE_ERROR: i32 = 1;
/// Frame type of a message delivery.
pub const FRAME_TYPE_MESSAGE: i32 = 2;

/// Bytes before a frame's data: size and frame type.
pub const FRAME_HEADER_LEN_BYTES: usize = 8;
/// Bytes of a message frame's data before the body: timestamp, attempts, id (Go `minValidMsgLength`).
pub const MESSAGE_HEADER_LEN_BYTES: usize = 8 + 2 + MESSAGE_ID_LEN_BYTES;
/// Largest frame data we encode: the size field is a Go `int32` that counts the frame type too.
pub const FRAME_DATA_LEN_MAX_BYTES: usize = 0x7fff_ffff - 4;

/// The response sent for most successful commands.
pub const OK: &[u8] = b"OK";
/// The response to `CLS`.
pub const CLOSE_WAIT: &[u8] = b"CLOSE_WAIT";
/// The heartbeat response.
pub const HEARTBEAT: &[u8] = b"_heartbeat_";

fn write_header(out: &mut Vec<u8>, frame_type: i32, data_len: usize) {
    assert!(
        data_len <= FRAME_DATA_LEN_MAX_BYTES,
        "frame data of {data_len} bytes exceeds int32"
    );
    let size = u32::try_from(data_len + 4).unwrap_or(u32::MAX);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&frame_type.to_be_bytes());
}

/// Appends a response frame carrying `data`.
pub fn write_response(out: &mut Vec<u8>, data: &[u8]) {
    write_header(out, FRAME_TYPE_RESPONSE, data.len());
    out.extend_from_slice(data);
}

/// Appends an error frame carrying `"<CODE> <description>"`.
pub fn write_error(out: &mut Vec<u8>, err: &ProtocolError) {
    write_header(out, FRAME_TYPE_ERROR, err.encoded_len());
    err.write_to(out);
}

/// Appends a message frame.
pub fn write_message(
    out: &mut Vec<u8>,
    timestamp_ns: i64,
    attempts: u16,
    id: &MessageId,
    body: &[u8],
) {
    write_header(
        out,
        FRAME_TYPE_MESSAGE,
        MESSAGE_HEADER_LEN_BYTES + body.len(),
    );
    out.extend_from_slice(&timestamp_ns.to_be_bytes());
    out.extend_from_slice(&attempts.to_be_bytes());
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(body);
}

/// Total bytes [`write_message`] appends for a body of `body_len` bytes.
pub fn message_frame_len(body_len: usize) -> usize {
    FRAME_HEADER_LEN_BYTES + MESSAGE_HEADER_LEN_BYTES + body_len
}

/// A frame as a client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Frame type 0.
    Response(&'a [u8]),
    /// Frame type 1.
    Error(&'a [u8]),
    /// Frame type 2, split into its fields.
    Message {
        timestamp_ns: i64,
        attempts: u16,
        id: MessageId,
        body: &'a [u8],
    },
    /// Any other frame type, or a message frame shorter than its header.
    Unknown { frame_type: i32, data: &'a [u8] },
}

/// Client side: decodes one frame from the front of `buf`; `None` if more bytes are needed.
/// Returns the frame and the bytes it took. A size below 4 yields an empty `Unknown` frame.
pub fn decode_frame(buf: &[u8]) -> Option<(Frame<'_>, usize)> {
    let size = usize::try_from(u32::from_be_bytes(buf.get(..4)?.try_into().ok()?)).ok()?;
    let total = 4usize.checked_add(size)?;
    let frame = buf.get(4..total.max(8))?;
    let frame_type = i32::from_be_bytes(frame.get(..4)?.try_into().ok()?);
    let data = frame.get(4..).unwrap_or_default();
    let decoded = match frame_type {
        FRAME_TYPE_RESPONSE => Frame::Response(data),
        FRAME_TYPE_ERROR => Frame::Error(data),
        FRAME_TYPE_MESSAGE if data.len() >= MESSAGE_HEADER_LEN_BYTES => Frame::Message {
            timestamp_ns: i64::from_be_bytes(data[..8].try_into().ok()?),
            attempts: u16::from_be_bytes(data[8..10].try_into().ok()?),
            id: MessageId::from_wire(&data[10..MESSAGE_HEADER_LEN_BYTES])?,
            body: &data[MESSAGE_HEADER_LEN_BYTES..],
        },
        _ => Frame::Unknown { frame_type, data },
    };
    Some((decoded, total.max(8)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_frame_bytes() {
        let mut out = Vec::new();
        write_response(&mut out, OK);
        assert_eq!(out, b"\x00\x00\x00\x06\x00\x00\x00\x00OK");
        assert_eq!(decode_frame(&out), Some((Frame::Response(b"OK"), 10)));
    }

    #[test]
    fn error_frame_bytes() {
        let mut out = Vec::new();
        write_error(
            &mut out,
            &ProtocolError::fatal(crate::protocol::ErrorCode::Invalid, "invalid command X"),
        );
        let payload = b"E_INVALID invalid command X";
        let mut want = u32::try_from(payload.len() + 4)
            .unwrap()
            .to_be_bytes()
            .to_vec();
        want.extend_from_slice(&1i32.to_be_bytes());
        want.extend_from_slice(payload);
        assert_eq!(out, want);
    }

    #[test]
    fn message_frame_round_trip() {
        let id = MessageId::from_u64(42);
        let mut out = Vec::new();
        write_message(&mut out, -5, 3, &id, b"body");
        assert_eq!(out.len(), message_frame_len(4));
        assert_eq!(&out[..8], &[0, 0, 0, 34, 0, 0, 0, 2]);
        let (frame, used) = decode_frame(&out).unwrap();
        assert_eq!(used, out.len());
        assert_eq!(
            frame,
            Frame::Message {
                timestamp_ns: -5,
                attempts: 3,
                id,
                body: b"body"
            }
        );
        for cut in 0..out.len() {
            assert!(decode_frame(&out[..cut]).is_none(), "cut {cut}");
        }
    }
}
