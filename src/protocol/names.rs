//! Topic and channel names (Go `internal/protocol/names.go`).
//!
//! A valid name is 1..=64 bytes and matches `^[.a-zA-Z0-9_-]+(#ephemeral)?$`; topics and
//! channels share the rule. A name ending in `#ephemeral` is ephemeral: never persisted, deleted
//! when its last consumer (channel) or last channel (topic) goes.

/// Longest valid topic or channel name, in bytes (since nsq 0.2.28).
pub const NAME_LEN_MAX_BYTES: usize = 64;

/// The suffix that marks an ephemeral topic or channel.
pub const EPHEMERAL_SUFFIX: &str = "#ephemeral";

/// Whether `name` is a valid topic name.
pub fn is_valid_topic_name(name: &[u8]) -> bool {
    is_valid_name(name)
}

/// Whether `name` is a valid channel name.
pub fn is_valid_channel_name(name: &[u8]) -> bool {
    is_valid_name(name)
}

fn is_valid_name(name: &[u8]) -> bool {
    if name.is_empty() || name.len() > NAME_LEN_MAX_BYTES {
        return false;
    }
    let stem = name
        .strip_suffix(EPHEMERAL_SUFFIX.as_bytes())
        .unwrap_or(name);
    !stem.is_empty()
        && stem
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `name` names an ephemeral topic or channel (Go `strings.HasSuffix(name, "#ephemeral")`).
pub fn is_ephemeral(name: &str) -> bool {
    name.ends_with(EPHEMERAL_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_names() {
        let valid: &[&[u8]] = &[
            b"a",
            b"test",
            b"a.b-c_D9",
            b"...",
            b"t#ephemeral",
            b"-#ephemeral",
            &[b'a'; 64],
        ];
        for name in valid {
            assert!(is_valid_topic_name(name), "{name:?}");
            assert!(is_valid_channel_name(name), "{name:?}");
        }
        let long_ephemeral = [&[b'a'; 55][..], b"#ephemeral"].concat();
        assert!(!is_valid_topic_name(&long_ephemeral), "65 bytes");
        let invalid: &[&[u8]] = &[
            b"",
            b"#ephemeral",
            b"a b",
            b"a#b",
            b"a#ephemeral#ephemeral",
            b"a#Ephemeral",
            b"a\n",
            b"t\xff",
            "é".as_bytes(),
            &[b'a'; 65],
        ];
        for name in invalid {
            assert!(!is_valid_topic_name(name), "{name:?}");
        }
    }

    #[test]
    fn ephemeral_suffix() {
        assert!(is_ephemeral("t#ephemeral"));
        assert!(!is_ephemeral("t"));
        assert!(!is_ephemeral("t#ephemeralx"));
    }
}
