//! Shared by the storage fuzz targets and the seed-corpus generator: the one definition of how a
//! `segment_recovery` input is laid out, its parser (used by the target) and its encoder (used by
//! `examples/seed_corpus.rs` to turn real log directories into seeds).
//!
//! Layout of a `segment_recovery` input:
//!
//! | bytes | what |
//! | --- | --- |
//! | 0 | flags: bit 0 a checkpoint follows; bit 1 a second segment follows the first; bit 2 fix the checksums (segment headers, records, checkpoint) before use, so that mutations reach past the CRC checks; bit 3 small limits (see [`SegmentInput::config`]) |
//! | 1..41 | the checkpoint file, if flag bit 0 (fewer bytes if the input ends) |
//! | next 2 | if flag bit 1: length of the first segment, u16 little-endian (clamped to what is left) |
//! | rest | the first segment, then the second segment |
//!
//! Segment files are named after the base offset in their header bytes (20..28, read even when
//! the header does not verify), so that the fuzzer gets past the name check; a second segment
//! whose name would collide is named one past the first.

use ringsq_storage::format::{
    encode_record, Checkpoint, SegmentHeader, CHECKPOINT_BYTES, CHECKPOINT_MAGIC, FORMAT_VERSION,
    RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, SEGMENT_MAGIC,
};
use ringsq_storage::LogConfig;
use std::time::Duration;

/// Flag bit: a checkpoint file follows the flags byte.
pub const FLAG_CHECKPOINT: u8 = 1;
/// Flag bit: a second segment follows the first.
pub const FLAG_SECOND_SEGMENT: u8 = 2;
/// Flag bit: recompute every checksum before writing the files.
pub const FLAG_FIX_CRCS: u8 = 4;
/// Flag bit: small segments and records.
pub const FLAG_SMALL: u8 = 8;

/// A decoded `segment_recovery` input: the files of one log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInput {
    /// The flags byte as given.
    pub flags: u8,
    /// Contents of `checkpoint`, if any.
    pub checkpoint: Option<Vec<u8>>,
    /// The first (oldest) segment file.
    pub first: Vec<u8>,
    /// A second segment file, if any.
    pub second: Option<Vec<u8>>,
}

fn le_u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

fn le_u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// The base offset a segment's header bytes claim, verified or not.
pub fn claimed_base_offset(segment: &[u8]) -> Option<u64> {
    le_u64_at(segment, 20)
}

impl SegmentInput {
    /// Splits fuzzer bytes into files. Never fails: every byte string is some directory.
    pub fn parse(data: &[u8]) -> Self {
        let Some((&flags, mut rest)) = data.split_first() else {
            return SegmentInput {
                flags: 0,
                checkpoint: None,
                first: Vec::new(),
                second: None,
            };
        };
        let checkpoint = (flags & FLAG_CHECKPOINT != 0).then(|| {
            let (cp, after) = rest.split_at(rest.len().min(CHECKPOINT_BYTES));
            rest = after;
            cp.to_vec()
        });
        let (first, second) = if flags & FLAG_SECOND_SEGMENT != 0 && rest.len() >= 2 {
            let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
            let body = &rest[2..];
            let (a, b) = body.split_at(len.min(body.len()));
            (a.to_vec(), Some(b.to_vec()))
        } else {
            (rest.to_vec(), None)
        };
        let mut input = SegmentInput {
            flags,
            checkpoint,
            first,
            second,
        };
        if flags & FLAG_FIX_CRCS != 0 {
            input.fix_crcs();
        }
        input
    }

    /// The fuzzer bytes of this input (inverse of [`SegmentInput::parse`] for inputs whose
    /// checkpoint is 40 bytes and whose first segment fits a u16 length).
    pub fn encode(&self) -> Vec<u8> {
        let mut flags = self.flags & (FLAG_FIX_CRCS | FLAG_SMALL);
        if self.checkpoint.is_some() {
            flags |= FLAG_CHECKPOINT;
        }
        if self.second.is_some() {
            flags |= FLAG_SECOND_SEGMENT;
        }
        let mut out = vec![flags];
        if let Some(cp) = &self.checkpoint {
            out.extend_from_slice(cp);
        }
        if let Some(second) = &self.second {
            let len = u16::try_from(self.first.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&self.first);
            out.extend_from_slice(second);
        } else {
            out.extend_from_slice(&self.first);
        }
        out
    }

    /// The log configuration this input asks for: small limits make rolls, length refusals and
    /// oversized records reachable with small inputs.
    pub fn config(&self) -> LogConfig {
        let small = self.flags & FLAG_SMALL != 0;
        LogConfig {
            segment_size_bytes_max: if small { 512 } else { 1 << 20 },
            sync_every_records: 1_000_000,
            sync_timeout: Duration::from_secs(3600),
            record_size_max: if small { 200 } else { 64 * 1024 },
            cache_bytes_max: if small { 0 } else { 1 << 20 },
        }
    }

    /// File names (base offsets) of the first and the second segment.
    pub fn segment_names(&self) -> (u64, Option<u64>) {
        let first = claimed_base_offset(&self.first).unwrap_or(0);
        let second = self.second.as_ref().map(|s| {
            let claimed = claimed_base_offset(s).unwrap_or(first.wrapping_add(1));
            if claimed == first {
                first.wrapping_add(1)
            } else {
                claimed
            }
        });
        (first, second)
    }

    fn fix_crcs(&mut self) {
        let record_size_max = self.config().record_size_max;
        fix_segment(&mut self.first, record_size_max);
        if let Some(second) = &mut self.second {
            fix_segment(second, record_size_max);
        }
        if let Some(cp) = &mut self.checkpoint {
            fix_checkpoint(cp);
        }
    }
}

/// Rewrites the header CRC (when magic and version are ours) and the CRC of every record whose
/// length fits, from the start of the records until one does not.
fn fix_segment(segment: &mut [u8], record_size_max: u32) {
    if segment.len() < SEGMENT_HEADER_BYTES
        || segment[0..8] != SEGMENT_MAGIC
        || le_u32_at(segment, 8) != Some(FORMAT_VERSION)
    {
        return;
    }
    let (Some(base_seq), Some(base_offset)) = (le_u64_at(segment, 12), le_u64_at(segment, 20))
    else {
        return;
    };
    let header = SegmentHeader {
        base_seq,
        base_offset,
    };
    segment[..SEGMENT_HEADER_BYTES].copy_from_slice(&header.encode());
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut scratch = Vec::new();
    while let (Some(len), Some(seq)) = (le_u32_at(segment, pos), le_u64_at(segment, pos + 8)) {
        let Ok(len_usize) = usize::try_from(len) else {
            return;
        };
        let end = pos + RECORD_HEADER_BYTES + len_usize;
        if len > record_size_max || end > segment.len() {
            return;
        }
        scratch.clear();
        if encode_record(&mut scratch, seq, &segment[pos + RECORD_HEADER_BYTES..end]).is_err() {
            return;
        }
        segment[pos + 4..pos + 8].copy_from_slice(&scratch[4..8]);
        pos = end;
    }
}

/// Rewrites the checkpoint CRC when the file has the right size, magic and version.
fn fix_checkpoint(cp: &mut [u8]) {
    if cp.len() != CHECKPOINT_BYTES
        || cp[0..8] != CHECKPOINT_MAGIC
        || le_u32_at(cp, 8) != Some(FORMAT_VERSION)
    {
        return;
    }
    let (Some(segment_base_offset), Some(end_seq), Some(end_offset)) =
        (le_u64_at(cp, 12), le_u64_at(cp, 20), le_u64_at(cp, 28))
    else {
        return;
    };
    let fixed = Checkpoint {
        segment_base_offset,
        end_seq,
        end_offset,
    };
    cp.copy_from_slice(&fixed.encode());
}
