//! Connection compression negotiated by IDENTIFY (nsqd's `UpgradeSnappy` / `UpgradeDeflate`):
//! once the `OK` that follows the IDENTIFY response is due, every byte each way goes through it.
//!
//! - snappy: the snappy *framing* format (golang/snappy `NewReader`/`NewWriter`): a stream
//!   identifier chunk, then chunks `[type u8][len u24 LE][masked CRC-32C u32 LE][data]`, each of
//!   at most 64 KiB of uncompressed data; type 0 = snappy-compressed, 1 = stored, 0x80..=0xfe
//!   skippable, 0x02..=0x7f reserved (an error).
//! - deflate: raw DEFLATE (no zlib header), one sync flush per writer flush, as Go's
//!   `flate.Writer.Flush`.
//!
//! Pure (no IO): the writer encodes what it is about to send, the reader decodes what it read.
//! The block codecs are crates (`snap::raw`, `flate2`, `crc32c`); only the snappy chunk framing
//! (a 4-byte header and a masked CRC) is done here, because `snap`'s `FrameEncoder` and
//! `FrameDecoder` work over blocking `std::io` streams and cannot be fed bytes as they arrive.
//! Fuzzed through `fuzz/fuzz_targets/protocol_decode.rs`.
//!
//! Bounds: decoding goes in steps ([`Decoder::step`]) of at most the caller's output bound (a
//! snappy step always decodes one whole chunk, at most [`SNAPPY_BLOCK_MAX_BYTES`]), so a
//! compression bomb (DEFLATE inflates up to 1032:1) is worked through a slice at a time. A
//! snappy chunk longer than the encoding of a full block is refused before it is waited for.
//! Corrupt input is an error; the connection is then closed without a frame, as nsqd's reader
//! fails ("failed to read command").

use super::client::Codec;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Most uncompressed bytes in one snappy chunk.
pub const SNAPPY_BLOCK_MAX_BYTES: usize = 64 * 1024;
/// Longest snappy chunk body we accept: the encoded form of a full block plus its checksum.
pub(crate) const SNAPPY_CHUNK_MAX_BYTES: usize = 4 + 76_490;
const SNAPPY_STREAM_ID: &[u8; 10] = b"\xff\x06\x00\x00sNaPpY";
const CHUNK_COMPRESSED: u8 = 0x00;
const CHUNK_STORED: u8 = 0x01;
const CHUNK_STREAM_ID: u8 = 0xff;
/// Room kept free in the output of a flate call; a call that fills it is repeated.
const FLATE_SLACK_BYTES: usize = 256;

const _: () = assert!(SNAPPY_CHUNK_MAX_BYTES >= 4 + SNAPPY_BLOCK_MAX_BYTES);

/// Why compressed input could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    #[error("snappy: {0}")]
    Snappy(&'static str),
    #[error("snappy: {0}")]
    SnappyBlock(#[from] snap::Error),
    #[error("deflate: {0}")]
    Deflate(String),
}

/// The writer's half.
#[derive(Debug)]
pub enum Encoder {
    Snappy {
        started: bool,
        raw: Box<snap::raw::Encoder>,
    },
    Deflate(Box<Compress>),
}

impl Encoder {
    pub fn new(codec: Codec) -> Self {
        match codec {
            Codec::Snappy => Self::Snappy {
                started: false,
                raw: Box::new(snap::raw::Encoder::new()),
            },
            Codec::Deflate { level } => Self::Deflate(Box::new(Compress::new(
                Compression::new(u32::from(level)),
                false,
            ))),
        }
    }

    /// Appends the encoding of `plain` to `out`, flushed so the peer can decode all of it.
    pub fn encode(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), CompressError> {
        match self {
            Self::Snappy { started, raw } => {
                if !*started {
                    out.extend_from_slice(SNAPPY_STREAM_ID);
                    *started = true;
                }
                for block in plain.chunks(SNAPPY_BLOCK_MAX_BYTES) {
                    snappy_chunk(raw, block, out)?;
                }
                Ok(())
            }
            Self::Deflate(c) => deflate(c, plain, out),
        }
    }
}

fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn snappy_chunk(
    raw: &mut snap::raw::Encoder,
    block: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CompressError> {
    let compressed = raw.compress_vec(block)?;
    // golang/snappy stores a block whose compression saves less than 1/8.
    let (kind, data) = if compressed.len() >= block.len() - block.len() / 8 {
        (CHUNK_STORED, block)
    } else {
        (CHUNK_COMPRESSED, &compressed[..])
    };
    let len = u32::try_from(4 + data.len()).map_err(|_| CompressError::Snappy("chunk too long"))?;
    out.push(kind);
    out.extend_from_slice(&len.to_le_bytes()[..3]);
    out.extend_from_slice(&masked_crc(block).to_le_bytes());
    out.extend_from_slice(data);
    Ok(())
}

fn deflate(c: &mut Compress, plain: &[u8], out: &mut Vec<u8>) -> Result<(), CompressError> {
    let mut consumed = 0;
    loop {
        out.reserve(plain.len() - consumed + FLATE_SLACK_BYTES);
        let before = c.total_in();
        c.compress_vec(&plain[consumed..], out, FlushCompress::Sync)
            .map_err(|e| CompressError::Deflate(e.to_string()))?;
        consumed += usize::try_from(c.total_in() - before).unwrap_or(usize::MAX);
        if consumed >= plain.len() && out.len() < out.capacity() {
            return Ok(());
        }
    }
}

/// The reader's half. Decoding goes in bounded steps ([`Decoder::step`]): the caller keeps the
/// compressed bytes it has read, hands them over, and learns how many a step took, so that a
/// small input that inflates to gigabytes (a compression bomb) is decoded a slice at a time,
/// with the connection's commands run and other clients served in between.
#[derive(Debug)]
pub enum Decoder {
    Snappy { seen_stream_id: bool },
    Deflate(Box<Decompress>),
}

/// What one [`Decoder::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Compressed bytes taken from the front of the input.
    pub consumed: usize,
    /// Plain bytes appended to the output.
    pub produced: usize,
}

impl Step {
    /// Nothing taken, nothing made: more input is needed.
    pub fn is_stalled(self) -> bool {
        self.consumed == 0 && self.produced == 0
    }
}

impl Decoder {
    pub fn new(codec: Codec) -> Self {
        match codec {
            Codec::Snappy => Self::Snappy {
                seen_stream_id: false,
            },
            Codec::Deflate { .. } => Self::Deflate(Box::new(Decompress::new(false))),
        }
    }

    /// Decodes from the front of `input` (the next compressed bytes of the stream), appending
    /// at most `out_max_bytes` to `out` — snappy always decodes a first whole chunk, so a step
    /// can make up to [`SNAPPY_BLOCK_MAX_BYTES`] whatever `out_max_bytes` says. A snappy chunk
    /// not yet complete is left in `input` (not consumed) for the next step.
    pub fn step(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        out_max_bytes: usize,
    ) -> Result<Step, CompressError> {
        let before = out.len();
        let consumed = match self {
            Self::Snappy { seen_stream_id } => {
                snappy_chunks(input, seen_stream_id, out, out_max_bytes)?
            }
            Self::Deflate(d) => inflate(d, input, out, out_max_bytes)?,
        };
        Ok(Step {
            consumed,
            produced: out.len() - before,
        })
    }
}

/// Decodes the complete chunks at the front of `buf` while their output fits in
/// `out_max_bytes` (the first always); returns the bytes they took.
fn snappy_chunks(
    buf: &[u8],
    seen_stream_id: &mut bool,
    out: &mut Vec<u8>,
    out_max_bytes: usize,
) -> Result<usize, CompressError> {
    let start = out.len();
    let mut at = 0;
    while let Some(header) = buf.get(at..at + 4) {
        let kind = header[0];
        let len =
            usize::from(header[1]) | usize::from(header[2]) << 8 | usize::from(header[3]) << 16;
        if len > SNAPPY_CHUNK_MAX_BYTES && kind != CHUNK_STREAM_ID && kind < 0x80 {
            return Err(CompressError::Snappy("chunk too long"));
        }
        let Some(body) = buf.get(at + 4..at + 4 + len) else {
            break;
        };
        if kind != CHUNK_STREAM_ID && !*seen_stream_id {
            return Err(CompressError::Snappy("missing stream identifier"));
        }
        match kind {
            CHUNK_STREAM_ID => {
                if body != &SNAPPY_STREAM_ID[4..] {
                    return Err(CompressError::Snappy("bad stream identifier"));
                }
                *seen_stream_id = true;
            }
            CHUNK_COMPRESSED | CHUNK_STORED => {
                let made = out.len() - start;
                if made > 0 && made + snappy_block_len(kind, body)? > out_max_bytes {
                    break;
                }
                snappy_block(kind, body, out)?;
            }
            0x02..=0x7f => return Err(CompressError::Snappy("reserved chunk type")),
            _ => {} // skippable
        }
        at += 4 + len;
    }
    Ok(at)
}

/// The uncompressed length a data chunk claims, checked against the block limit.
fn snappy_block_len(kind: u8, body: &[u8]) -> Result<usize, CompressError> {
    let data = body
        .get(4..)
        .ok_or(CompressError::Snappy("chunk too short"))?;
    let len = if kind == CHUNK_COMPRESSED {
        snap::raw::decompress_len(data)?
    } else {
        data.len()
    };
    if len > SNAPPY_BLOCK_MAX_BYTES {
        return Err(CompressError::Snappy("block too long"));
    }
    Ok(len)
}

fn snappy_block(kind: u8, body: &[u8], out: &mut Vec<u8>) -> Result<(), CompressError> {
    let (crc, data) = body
        .split_first_chunk::<4>()
        .ok_or(CompressError::Snappy("chunk too short"))?;
    let len = snappy_block_len(kind, body)?;
    let start = out.len();
    if kind == CHUNK_COMPRESSED {
        out.resize(start + len, 0);
        let n = snap::raw::Decoder::new().decompress(data, &mut out[start..])?;
        out.truncate(start + n);
    } else {
        out.extend_from_slice(data);
    }
    if masked_crc(&out[start..]) != u32::from_le_bytes(*crc) {
        return Err(CompressError::Snappy("checksum mismatch"));
    }
    Ok(())
}

/// Inflates from `input` into at most `out_max_bytes` more of `out`; returns the bytes taken.
fn inflate(
    d: &mut Decompress,
    input: &[u8],
    out: &mut Vec<u8>,
    out_max_bytes: usize,
) -> Result<usize, CompressError> {
    let start = out.len();
    out.resize(start + out_max_bytes, 0);
    let (in_before, out_before) = (d.total_in(), d.total_out());
    let status = d.decompress(input, &mut out[start..], FlushDecompress::Sync);
    let produced = usize::try_from(d.total_out() - out_before).unwrap_or(usize::MAX);
    out.truncate(start + produced.min(out_max_bytes));
    match status.map_err(|e| CompressError::Deflate(e.to_string()))? {
        Status::StreamEnd => Err(CompressError::Deflate("stream ended".into())),
        Status::Ok | Status::BufError => {
            Ok(usize::try_from(d.total_in() - in_before).unwrap_or(usize::MAX))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends `bytes` to the undecoded `pending` input and decodes all it can, in steps of at
    /// most `step_max` output bytes (checked), as the connection does.
    fn feed(
        dec: &mut Decoder,
        pending: &mut Vec<u8>,
        bytes: &[u8],
        out: &mut Vec<u8>,
        step_max: usize,
    ) -> Result<usize, CompressError> {
        pending.extend_from_slice(bytes);
        let mut steps = 0;
        loop {
            let step = dec.step(pending, out, step_max)?;
            assert!(step.produced <= step_max.max(SNAPPY_BLOCK_MAX_BYTES));
            pending.drain(..step.consumed);
            if step.is_stalled() {
                return Ok(steps);
            }
            steps += 1;
        }
    }

    fn round_trip(codec: Codec, parts: &[&[u8]]) {
        let mut enc = Encoder::new(codec);
        let mut dec = Decoder::new(codec);
        let mut got = Vec::new();
        let mut pending = Vec::new();
        for part in parts {
            let mut wire = Vec::new();
            assert!(enc.encode(part, &mut wire).is_ok());
            // Byte by byte: chunks and deflate blocks split anywhere.
            for b in &wire {
                assert!(feed(&mut dec, &mut pending, &[*b], &mut got, 1000).is_ok());
            }
        }
        assert_eq!(got, parts.concat());
        assert!(pending.is_empty());
    }

    #[test]
    fn snappy_and_deflate_round_trip() {
        let big: Vec<u8> = (0..200_000_u32).map(|i| (i % 251) as u8).collect();
        for codec in [Codec::Snappy, Codec::Deflate { level: 6 }] {
            round_trip(codec, &[b"OK", b"", &big, b"PUB t\n"]);
        }
    }

    #[test]
    fn snappy_stream_starts_with_its_identifier() {
        let mut enc = Encoder::new(Codec::Snappy);
        let mut wire = Vec::new();
        assert!(enc.encode(b"x", &mut wire).is_ok());
        assert_eq!(&wire[..10], SNAPPY_STREAM_ID);
        assert_eq!(wire[10], CHUNK_STORED);
    }

    #[test]
    fn a_bomb_is_decoded_in_bounded_steps() {
        // 8 MiB of NOPs deflate to a few KiB; each step makes at most 64 KiB.
        let plain = b"NOP\n".repeat(2 * 1024 * 1024);
        for codec in [Codec::Snappy, Codec::Deflate { level: 9 }] {
            let mut wire = Vec::new();
            assert!(Encoder::new(codec).encode(&plain, &mut wire).is_ok());
            let mut dec = Decoder::new(codec);
            let mut out = Vec::new();
            let mut pending = Vec::new();
            let steps = feed(&mut dec, &mut pending, &wire, &mut out, 64 * 1024);
            assert_eq!(steps.ok(), Some(plain.len() / (64 * 1024)), "{codec:?}");
            assert_eq!(out.len(), plain.len());
        }
    }

    #[test]
    fn corrupt_input_is_an_error() {
        let mut dec = Decoder::new(Codec::Snappy);
        assert!(dec
            .step(b"\x00\x05\x00\x00abcde", &mut Vec::new(), 1024)
            .is_err());
        let mut dec = Decoder::new(Codec::Snappy);
        let mut wire = SNAPPY_STREAM_ID.to_vec();
        wire.extend_from_slice(b"\x01\x05\x00\x00\0\0\0\0x");
        assert!(dec.step(&wire, &mut Vec::new(), 1024).is_err(), "bad crc");
        let mut dec = Decoder::new(Codec::Deflate { level: 6 });
        assert!(dec
            .step(b"\xff\xff\xff\xff", &mut Vec::new(), 1024)
            .is_err());
    }
}
