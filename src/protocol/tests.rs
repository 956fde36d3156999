//! Decoder tests: every command, error string, limit and split point.
