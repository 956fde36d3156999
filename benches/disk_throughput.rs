//! Disk throughput benchmark (being written).
fn main() {}
