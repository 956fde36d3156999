//! Fuzz target for a channel's on-disk decoders: its state file
//! (`ringsq::broker::channel::ChannelSnapshot::decode`, versions 1 to 3) and a dead-letter record
//! (`DeadRecord::decode`).
//!
//! Checked invariants: no panic on any bytes; a state that decodes encodes (as version 3) to
//! bytes that decode to the same state (its version aside); a dead-letter record that decodes encodes to exactly the
//! bytes it came from (the format has one spelling per letter).

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ringsq::broker::channel::{ChannelSnapshot, DeadRecord, CHANNEL_SNAPSHOT_VERSION};

fuzz_target!(|data: &[u8]| {
    if let Some(state) = ChannelSnapshot::decode(data) {
        let again = ChannelSnapshot::decode(&state.encode());
        // A version 1 (JSON) state comes back as the current version.
        let state = ChannelSnapshot {
            version: CHANNEL_SNAPSHOT_VERSION,
            ..state
        };
        assert_eq!(again, Some(state));
    }
    let bytes = Bytes::copy_from_slice(data);
    if let Some(letter) = DeadRecord::decode(&bytes) {
        assert_eq!(letter.encode(), bytes);
    }
});
