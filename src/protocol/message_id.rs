//! `MessageId`: the 16-byte message id of the wire protocol.
//!
//! nsqd makes ids as 16 lowercase hex ASCII characters of a 64-bit snowflake
//! ([`MessageId::from_u64`]). From a client, Go accepts *any* 16 bytes as an id
//! (`getMessageID` checks only the length) and looks it up; a non-hex id is simply not in
//! flight. [`MessageId::from_wire`] does the same, and the bytes are kept raw so that error
//! messages (`FIN %s failed ...`) echo exactly what the client sent.

use std::fmt;

/// Length of a message id on the wire, in bytes.
pub const MESSAGE_ID_LEN_BYTES: usize = 16;

/// A message id: 16 bytes, normally lowercase hex ASCII.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; MESSAGE_ID_LEN_BYTES]);

impl MessageId {
    /// The id as sent by a client: exactly 16 bytes, any content (as Go); `None` otherwise.
    pub fn from_wire(bytes: &[u8]) -> Option<Self> {
        <[u8; MESSAGE_ID_LEN_BYTES]>::try_from(bytes).ok().map(Self)
    }

    /// Encodes a 64-bit id as 16 lowercase hex digits (Go `guid.Hex`).
    pub fn from_u64(value: u64) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; MESSAGE_ID_LEN_BYTES];
        for (i, byte) in value.to_be_bytes().iter().enumerate() {
            out[2 * i] = HEX[usize::from(byte >> 4)];
            out[2 * i + 1] = HEX[usize::from(byte & 0x0f)];
        }
        Self(out)
    }

    /// Decodes 16 lowercase hex digits back to the 64-bit id; `None` if not lowercase hex.
    pub fn to_u64(&self) -> Option<u64> {
        self.0.iter().try_fold(0u64, |acc, &b| {
            let digit = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                _ => return None,
            };
            Some((acc << 4) | u64::from(digit))
        })
    }

    /// The raw 16 bytes.
    pub fn as_bytes(&self) -> &[u8; MESSAGE_ID_LEN_BYTES] {
        &self.0
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

/// Shows the id as text (lossy for non-UTF-8 ids; use [`MessageId::as_bytes`] for wire output).
impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = MessageId::from_u64(0x0123_4567_89ab_cdef);
        assert_eq!(id.as_bytes(), b"0123456789abcdef");
        assert_eq!(id.to_u64(), Some(0x0123_4567_89ab_cdef));
        assert_eq!(
            MessageId::from_u64(u64::MAX).to_string(),
            "ffffffffffffffff"
        );
        assert_eq!(MessageId::from_u64(0).to_u64(), Some(0));
    }

    #[test]
    fn wire_ids_are_any_16_bytes() {
        assert!(MessageId::from_wire(b"0123456789abcde").is_none());
        assert!(MessageId::from_wire(b"0123456789abcdef0").is_none());
        let odd = MessageId::from_wire(b"NOT-HEX-but-16by").unwrap();
        assert_eq!(odd.to_u64(), None);
        assert_eq!(
            MessageId::from_wire(b"0123456789ABCDEF").unwrap().to_u64(),
            None
        );
    }
}
