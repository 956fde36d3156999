//! Go's `%q` verb (`strconv.Quote`) for the error messages that quote a client's bytes,
//! e.g. `E_BAD_TOPIC PUB topic name "a b" is not valid`.
//!
//! Rules, in Go's order: each byte that does not start a valid UTF-8 sequence becomes `\xHH`
//! (lowercase hex); `"` and `\` get a backslash; printable runes are kept as they are;
//! `\a \b \f \n \r \t \v` are named; other runes below U+0020 and U+007F become `\xHH`, runes
//! below U+10000 `\uHHHH`, the rest `\UHHHHHHHH`.
//!
//! "Printable" is Go's `unicode.IsPrint` (letters, marks, numbers, punctuation, symbols and the
//! ASCII space). Rust's standard library has no Unicode general category, so [`is_go_printable`]
//! approximates it: controls, every space but U+0020, the format characters (Cf), private-use
//! and the noncharacters U+FFFE/U+FFFF are escaped; unassigned code points are kept (Go would
//! escape them). For ASCII and assigned characters the output is identical to Go.

use std::fmt::Write as _;

/// Quotes `bytes` the way Go's `fmt.Sprintf("%q", string(bytes))` does.
pub fn go_quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_escaped(&mut out, c);
        }
        for b in chunk.invalid() {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    out
}

fn push_escaped(out: &mut String, c: char) {
    if c == '"' || c == '\\' {
        out.push('\\');
        out.push(c);
        return;
    }
    if is_go_printable(c) {
        out.push(c);
        return;
    }
    let named = match c {
        '\u{7}' => Some("\\a"),
        '\u{8}' => Some("\\b"),
        '\u{c}' => Some("\\f"),
        '\n' => Some("\\n"),
        '\r' => Some("\\r"),
        '\t' => Some("\\t"),
        '\u{b}' => Some("\\v"),
        _ => None,
    };
    let code = u32::from(c);
    // Writing to a String cannot fail.
    let _ = match named {
        Some(name) => out.write_str(name),
        None if code < 0x20 || code == 0x7f => write!(out, "\\x{code:02x}"),
        None if code < 0x1_0000 => write!(out, "\\u{code:04x}"),
        None => write!(out, "\\U{code:08x}"),
    };
}

/// Approximates Go's `unicode.IsPrint` (see the module docs for where it differs).
pub fn is_go_printable(c: char) -> bool {
    let code = u32::from(c);
    if code < 0x80 {
        return (0x20..0x7f).contains(&code);
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !(is_format_char(code) || is_private_use(code) || (code & 0xfffe) == 0xfffe)
}

fn is_private_use(code: u32) -> bool {
    (0xe000..=0xf8ff).contains(&code) || code >= 0xf_0000
}

/// Unicode general category Cf (format), as of Unicode 15.
fn is_format_char(code: u32) -> bool {
    const RANGES: &[(u32, u32)] = &[
        (0x00ad, 0x00ad),
        (0x0600, 0x0605),
        (0x061c, 0x061c),
        (0x06dd, 0x06dd),
        (0x070f, 0x070f),
        (0x0890, 0x0891),
        (0x08e2, 0x08e2),
        (0x180e, 0x180e),
        (0x200b, 0x200f),
        (0x202a, 0x202e),
        (0x2060, 0x2064),
        (0x2066, 0x206f),
        (0xfeff, 0xfeff),
        (0xfff9, 0xfffb),
        (0x110bd, 0x110bd),
        (0x110cd, 0x110cd),
        (0x13430, 0x1343f),
        (0x1bca0, 0x1bca3),
        (0x1d173, 0x1d17a),
        (0xe0001, 0xe0001),
        (0xe0020, 0xe007f),
    ];
    RANGES.iter().any(|&(lo, hi)| (lo..=hi).contains(&code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_go_strconv_quote() {
        // Expected values produced by Go's fmt.Sprintf("%q", ...).
        let cases: &[(&[u8], &str)] = &[
            (b"", r#""""#),
            (b"abc", r#""abc""#),
            (b"a b", r#""a b""#),
            (b"a\"b\\c", r#""a\"b\\c""#),
            (b"\x07\x08\x0c\n\r\t\x0b", r#""\a\b\f\n\r\t\v""#),
            (b"\x00\x01\x1f\x7f", r#""\x00\x01\x1f\x7f""#),
            (b"\xff\xfe", r#""\xff\xfe""#),
            (b"\xe2\x82", r#""\xe2\x82""#),
            (b"\xe2\x82A", r#""\xe2\x82A""#),
            ("héllo".as_bytes(), "\"héllo\""),
            ("日本".as_bytes(), "\"日本\""),
            ("\u{a0}".as_bytes(), r#""\u00a0""#),
            ("\u{85}".as_bytes(), r#""\u0085""#),
            ("\u{200b}".as_bytes(), r#""\u200b""#),
            ("\u{feff}".as_bytes(), r#""\ufeff""#),
            ("\u{2028}".as_bytes(), r#""\u2028""#),
            ("\u{fffd}".as_bytes(), "\"\u{fffd}\""),
            ("\u{f0000}".as_bytes(), r#""\U000f0000""#),
            ("😀".as_bytes(), "\"😀\""),
            (b"\xed\xa0\x80", r#""\xed\xa0\x80""#),
            (b"topic#ephemeral!", r#""topic#ephemeral!""#),
        ];
        for (input, want) in cases {
            assert_eq!(go_quote(input), *want, "input {input:?}");
        }
    }
}
