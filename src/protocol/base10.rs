//! Go's `protocol.ByteToBase10`: the parser for every numeric command parameter
//! (`RDY`, `REQ`, `DPUB` counts and timeouts).
//!
//! Semantics, all reproduced on purpose: unsigned decimal digits only (no sign, no spaces);
//! the empty string parses as 0; any other byte is an error; overflow is not detected — the
//! value wraps modulo 2^64, as Go's `uint64` arithmetic does.

/// Parses `bytes` as Go's `ByteToBase10` does; `None` where Go returns an error.
pub fn byte_to_base10(bytes: &[u8]) -> Option<u64> {
    let mut n: u64 = 0;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
    }
    Some(n)
}

/// Go's `int64(u)`: the same 64 bits read as two's complement.
pub fn go_int64(u: u64) -> i64 {
    i64::from_ne_bytes(u.to_ne_bytes())
}

/// Go's `time.Duration(ms) * time.Millisecond` for a `ByteToBase10` result, in nanoseconds,
/// wrapping like Go's `int64` multiplication.
pub fn go_millis_to_nanos(ms: u64) -> i64 {
    go_int64(ms).wrapping_mul(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_go() {
        assert_eq!(byte_to_base10(b""), Some(0));
        assert_eq!(byte_to_base10(b"0"), Some(0));
        assert_eq!(byte_to_base10(b"12345"), Some(12345));
        assert_eq!(byte_to_base10(b"007"), Some(7));
        assert_eq!(byte_to_base10(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(byte_to_base10(b"18446744073709551616"), Some(0), "wraps");
        assert_eq!(byte_to_base10(b"-1"), None);
        assert_eq!(byte_to_base10(b"+1"), None);
        assert_eq!(byte_to_base10(b"12a45"), None);
        assert_eq!(byte_to_base10(b" 1"), None);
    }

    #[test]
    fn go_conversions_wrap() {
        assert_eq!(go_int64(u64::MAX), -1);
        assert_eq!(go_millis_to_nanos(1), 1_000_000);
        assert_eq!(go_millis_to_nanos(u64::MAX), -1_000_000);
        assert!(
            go_millis_to_nanos(9_223_372_036_855) < 0,
            "just past i64::MAX ns"
        );
    }
}
