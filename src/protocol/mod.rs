//! The NSQ V2 wire protocol, pure (being written).
