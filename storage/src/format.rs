//! The on-disk format: ONE definition of each on-disk type, its encoder, its decoder, and their
//! round-trip tests. Byte-by-byte documentation is in the crate docs (`lib.rs`).
//!
//! Every decoder here is pure and panic-free on arbitrary input (fuzzed by the fuzz package):
//! lengths are checked against limits before anything is sliced or allocated.

/// First 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RINGSQSG";
/// First 8 bytes of the checkpoint file.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"RINGSQCP";
/// The one format version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Size of a segment header in bytes.
pub const SEGMENT_HEADER_BYTES: usize = 32;
/// Size of a record header in bytes (the data follows).
pub const RECORD_HEADER_BYTES: usize = 16;
/// Size of the checkpoint file in bytes.
pub const CHECKPOINT_BYTES: usize = 40;
/// `SEGMENT_HEADER_BYTES` as a file offset.
pub const SEGMENT_HEADER_BYTES_U64: u64 = 32;
/// `RECORD_HEADER_BYTES` as a file offset.
pub const RECORD_HEADER_BYTES_U64: u64 = 16;

const _: () = assert!(SEGMENT_HEADER_BYTES_U64 == SEGMENT_HEADER_BYTES as u64);
const _: () = assert!(RECORD_HEADER_BYTES_U64 == RECORD_HEADER_BYTES as u64);

/// Why bytes did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    /// Fewer bytes than a header.
    TooShort,
    /// Every byte is zero (a region never written, or zero-filled by a crash).
    Zeroed,
    /// The magic is not ours.
    BadMagic,
    /// A version this code does not know.
    UnsupportedVersion(u32),
    /// The checksum does not match the contents.
    BadCrc,
    /// A record length above the configured maximum.
    BadLength(u32),
}

impl FormatError {
    /// A short tag used in quarantine file names (`<segment>.corrupt-<tag>-at-<offset>`).
    pub fn tag(self) -> &'static str {
        match self {
            FormatError::TooShort => "short",
            FormatError::Zeroed => "zeros",
            FormatError::BadMagic => "magic",
            FormatError::UnsupportedVersion(_) => "version",
            FormatError::BadCrc => "crc",
            FormatError::BadLength(_) => "length",
        }
    }
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormatError::TooShort => write!(f, "truncated header"),
            FormatError::Zeroed => write!(f, "zero-filled region"),
            FormatError::BadMagic => write!(f, "bad magic"),
            FormatError::UnsupportedVersion(v) => write!(f, "unsupported version {v}"),
            FormatError::BadCrc => write!(f, "CRC mismatch"),
            FormatError::BadLength(len) => write!(f, "record length {len} above the maximum"),
        }
    }
}

/// The little-endian u32 at `bytes[at..at + 4]` (the caller checked the length).
pub(crate) fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

/// The little-endian u64 at `bytes[at..at + 8]` (the caller checked the length).
pub(crate) fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// The header at the start of every segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Seq of the segment's first record.
    pub base_seq: u64,
    /// Logical offset of the segment's first record (also in the file name).
    pub base_offset: u64,
}

impl SegmentHeader {
    /// The 32 header bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut b = [0u8; SEGMENT_HEADER_BYTES];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..20].copy_from_slice(&self.base_seq.to_le_bytes());
        b[20..28].copy_from_slice(&self.base_offset.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes the first bytes of a segment file. The version is checked before the CRC so that a
    /// newer format is refused rather than taken for corruption.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        if bytes.len() < SEGMENT_HEADER_BYTES {
            return Err(if bytes.iter().all(|&b| b == 0) {
                FormatError::Zeroed
            } else {
                FormatError::TooShort
            });
        }
        let b = &bytes[..SEGMENT_HEADER_BYTES];
        if b.iter().all(|&x| x == 0) {
            return Err(FormatError::Zeroed);
        }
        if b[0..8] != SEGMENT_MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = le_u32(b, 8);
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        if crc32c::crc32c(&b[0..28]) != le_u32(b, 28) {
            return Err(FormatError::BadCrc);
        }
        Ok(SegmentHeader {
            base_seq: le_u64(b, 12),
            base_offset: le_u64(b, 20),
        })
    }
}

/// The fixed part in front of every record's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Length of the data in bytes.
    pub len: u32,
    /// CRC32C of `len` bytes, `seq` bytes and the data.
    pub crc: u32,
    /// The record's seq (detects stale or recycled regions).
    pub seq: u64,
}

impl RecordHeader {
    /// Bytes the whole record takes on disk (header + data).
    pub fn encoded_len(&self) -> u64 {
        RECORD_HEADER_BYTES_U64 + u64::from(self.len)
    }
}

fn record_crc(len: u32, seq: u64, data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&len.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &seq.to_le_bytes());
    crc32c::crc32c_append(crc, data)
}

/// Bytes a record of `data_len` data bytes takes on disk.
pub fn record_encoded_len(data_len: u32) -> u64 {
    RECORD_HEADER_BYTES_U64 + u64::from(data_len)
}

/// Appends one encoded record to `out`; refuses data longer than `u32::MAX` (the log refuses
/// anything above `record_size_max` before it gets here).
pub fn encode_record(out: &mut Vec<u8>, seq: u64, data: &[u8]) -> Result<(), FormatError> {
    let len = u32::try_from(data.len()).map_err(|_| FormatError::BadLength(u32::MAX))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&record_crc(len, seq, data).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(data);
    Ok(())
}

/// Decodes the record at the start of `bytes`.
///
/// `Ok(None)`: `bytes` ends inside the record (read more, or it is torn at end of file).
/// A length above `record_size_max` is an error before any more bytes are looked at.
pub fn decode_record(
    bytes: &[u8],
    record_size_max: u32,
) -> Result<Option<(RecordHeader, &[u8])>, FormatError> {
    if bytes.len() < RECORD_HEADER_BYTES {
        return Ok(None);
    }
    let header = RecordHeader {
        len: le_u32(bytes, 0),
        crc: le_u32(bytes, 4),
        seq: le_u64(bytes, 8),
    };
    if header.len > record_size_max {
        return Err(FormatError::BadLength(header.len));
    }
    let Ok(len) = usize::try_from(header.len) else {
        return Err(FormatError::BadLength(header.len));
    };
    let Some(data) = bytes.get(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len) else {
        return Ok(None);
    };
    if record_crc(header.len, header.seq, data) != header.crc {
        return Err(FormatError::BadCrc);
    }
    Ok(Some((header, data)))
}

/// Contents of the checkpoint file: the log's durable end as of some fdatasync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Base offset of the segment being written (names the segment file).
    pub segment_base_offset: u64,
    /// Seq one past the last record covered by an fdatasync.
    pub end_seq: u64,
    /// Logical offset one past that record.
    pub end_offset: u64,
}

impl Checkpoint {
    /// The 40 bytes of the checkpoint file.
    pub fn encode(&self) -> [u8; CHECKPOINT_BYTES] {
        let mut b = [0u8; CHECKPOINT_BYTES];
        b[0..8].copy_from_slice(&CHECKPOINT_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..20].copy_from_slice(&self.segment_base_offset.to_le_bytes());
        b[20..28].copy_from_slice(&self.end_seq.to_le_bytes());
        b[28..36].copy_from_slice(&self.end_offset.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..36]);
        b[36..40].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a whole checkpoint file (its length must be exactly 40).
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        if bytes.len() != CHECKPOINT_BYTES {
            return Err(FormatError::TooShort);
        }
        if bytes[0..8] != CHECKPOINT_MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = le_u32(bytes, 8);
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        if crc32c::crc32c(&bytes[0..36]) != le_u32(bytes, 36) {
            return Err(FormatError::BadCrc);
        }
        Ok(Checkpoint {
            segment_base_offset: le_u64(bytes, 12),
            end_seq: le_u64(bytes, 20),
            end_offset: le_u64(bytes, 28),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_header_round_trip() {
        let h = SegmentHeader {
            base_seq: 7,
            base_offset: 1 << 40,
        };
        let bytes = h.encode();
        assert_eq!(&bytes[0..8], b"RINGSQSG");
        assert_eq!(SegmentHeader::decode(&bytes), Ok(h));
        let mut bad = bytes;
        bad[15] ^= 1;
        assert_eq!(SegmentHeader::decode(&bad), Err(FormatError::BadCrc));
        let mut newer = bytes;
        newer[8] = 2;
        assert_eq!(
            SegmentHeader::decode(&newer),
            Err(FormatError::UnsupportedVersion(2))
        );
        assert_eq!(SegmentHeader::decode(&[0; 32]), Err(FormatError::Zeroed));
        assert_eq!(SegmentHeader::decode(&[0; 5]), Err(FormatError::Zeroed));
        assert_eq!(SegmentHeader::decode(b"RIN"), Err(FormatError::TooShort));
        assert_eq!(SegmentHeader::decode(&[1; 32]), Err(FormatError::BadMagic));
    }

    #[test]
    fn record_round_trip_and_errors() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 42, b"hello").unwrap();
        encode_record(&mut buf, 43, b"").unwrap();
        assert_eq!(buf.len(), 16 + 5 + 16);
        let (h, data) = decode_record(&buf, 100).unwrap().unwrap();
        assert_eq!((h.seq, h.len, data), (42, 5, &b"hello"[..]));
        let rest = &buf[usize::try_from(h.encoded_len()).unwrap()..];
        let (h2, data2) = decode_record(rest, 100).unwrap().unwrap();
        assert_eq!((h2.seq, data2.len()), (43, 0));
        // Torn: every strict prefix asks for more bytes.
        for cut in 0..21 {
            assert_eq!(decode_record(&buf[..cut], 100), Ok(None), "cut {cut}");
        }
        assert_eq!(decode_record(&buf, 4), Err(FormatError::BadLength(5)));
        let mut flipped = buf.clone();
        flipped[18] ^= 0x20;
        assert_eq!(decode_record(&flipped, 100), Err(FormatError::BadCrc));
        let mut seq_changed = buf.clone();
        seq_changed[8] ^= 1;
        assert_eq!(decode_record(&seq_changed, 100), Err(FormatError::BadCrc));
        // All zeros is never a valid record.
        assert_eq!(decode_record(&[0; 16], 100), Err(FormatError::BadCrc));
    }

    #[test]
    fn checkpoint_round_trip() {
        let c = Checkpoint {
            segment_base_offset: 100,
            end_seq: 5,
            end_offset: 180,
        };
        let b = c.encode();
        assert_eq!(Checkpoint::decode(&b), Ok(c));
        assert_eq!(Checkpoint::decode(&b[..39]), Err(FormatError::TooShort));
        let mut bad = b;
        bad[30] ^= 1;
        assert_eq!(Checkpoint::decode(&bad), Err(FormatError::BadCrc));
    }
}
