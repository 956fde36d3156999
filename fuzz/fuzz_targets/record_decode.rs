//! Fuzz target for the storage crate's pure decoders (`ringsq_storage::format`).
//!
//! Arbitrary bytes are decoded as a record, then as a run of records (the way recovery scans a
//! segment body), as a segment header and as a checkpoint. Checked invariants: no panic; a record
//! that decodes re-encodes to exactly the bytes it came from (so its CRC matched); `Ok(None)`
//! ("need more bytes") only when the input really ends inside the record; a length above the
//! limit is refused whatever follows it; a header or checkpoint that decodes re-encodes to the
//! same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringsq_storage::format::{
    decode_record, encode_record, Checkpoint, FormatError, SegmentHeader, CHECKPOINT_BYTES,
    RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};

/// The limit the log uses by default (`LogConfig::default().record_size_max`).
const RECORD_SIZE_MAX: u32 = 1024 * 1024 + 64;
/// Records decoded per input at most (each one is at least a header long, so this is not a bound
/// that can hide a non-terminating scan: the input itself bounds it).
const RECORDS_PER_INPUT_MAX: usize = 4096;

/// Checks one `decode_record` result against the bytes; returns the encoded length if a record
/// decoded.
fn check_record(bytes: &[u8], record_size_max: u32) -> Option<usize> {
    let claimed_len = bytes
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes);
    match decode_record(bytes, record_size_max) {
        Ok(Some((header, data))) => {
            assert_eq!(Some(header.len), claimed_len);
            assert!(header.len <= record_size_max);
            assert_eq!(data.len(), usize::try_from(header.len).unwrap());
            let encoded_len = usize::try_from(header.encoded_len()).unwrap();
            let mut again = Vec::new();
            encode_record(&mut again, header.seq, data).unwrap();
            assert_eq!(again.len(), encoded_len);
            assert_eq!(again, bytes[..encoded_len], "re-encoding differs");
            // The same record under a limit just below its length is refused, not decoded.
            if let Some(below) = header.len.checked_sub(1) {
                assert_eq!(
                    decode_record(bytes, below),
                    Err(FormatError::BadLength(header.len))
                );
            }
            Some(encoded_len)
        }
        Ok(None) => {
            let needed = claimed_len.map_or(RECORD_HEADER_BYTES, |len| {
                RECORD_HEADER_BYTES + usize::try_from(len).unwrap()
            });
            assert!(bytes.len() < needed, "asked for more bytes than it needs");
            None
        }
        Err(FormatError::BadLength(len)) => {
            assert_eq!(Some(len), claimed_len);
            assert!(len > record_size_max);
            None
        }
        Err(FormatError::BadCrc) => {
            let len = usize::try_from(claimed_len.unwrap()).unwrap();
            assert!(bytes.len() >= RECORD_HEADER_BYTES + len);
            None
        }
        Err(e) => panic!("decode_record returned {e:?}"),
    }
}

fn check_header(bytes: &[u8]) {
    if let Ok(header) = SegmentHeader::decode(bytes) {
        assert_eq!(header.encode()[..], bytes[..SEGMENT_HEADER_BYTES]);
    }
}

fn check_checkpoint(bytes: &[u8]) {
    let Some(head) = bytes.get(..CHECKPOINT_BYTES) else {
        assert!(Checkpoint::decode(bytes).is_err());
        return;
    };
    if let Ok(cp) = Checkpoint::decode(head) {
        assert_eq!(cp.encode()[..], *head);
    }
}

fuzz_target!(|data: &[u8]| {
    check_record(data, RECORD_SIZE_MAX);
    // A small limit too, so that length refusals are reached with small inputs.
    check_record(data, 64);

    // A run of records, as recovery scans a segment body.
    let mut pos = 0;
    for _ in 0..RECORDS_PER_INPUT_MAX {
        match check_record(&data[pos..], RECORD_SIZE_MAX) {
            Some(len) => pos += len,
            None => break,
        }
    }

    check_header(data);
    check_checkpoint(data);
});
