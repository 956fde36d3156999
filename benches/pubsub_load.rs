//! Pub/sub load generator (being written).
fn main() {}
