//! ringsq-storage: segmented, checksummed append-only log (being written).
