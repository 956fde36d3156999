//! Go's value grammars, as nsqd's flags and config file read them.
//!
//! nsqd parses flag values with Go's `strconv` and `time` packages, so a unit file written
//! for nsqd may say `--mem-queue-size=0x100`, `--snappy=F` or `--msg-timeout=1m30s`. These
//! functions accept exactly what Go accepts (and reject what it rejects), so the same unit
//! file means the same thing under ringsq:
//!
//! - [`parse_int`] is `strconv.ParseInt(s, 0, 64)`, the grammar of `flag.Int`/`flag.Int64`
//!   (base prefixes `0x`/`0o`/`0b`, a bare leading `0` means octal, `_` between digits);
//! - [`parse_bool`] is `strconv.ParseBool`;
//! - [`parse_duration`] is `time.ParseDuration` (`[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, or `0`).
//!
//! Why a port rather than a crate: `go-parse-duration` 0.1.1 panics on `1µs` (an `unwrap`
//! on a non-ASCII unit) and `humantime` has no fractions, signs or bare `0`; a panic must
//! not be reachable from a flag.
//!
//! Errors are the short strings Go's `flag` package prints after the flag name
//! (`parse error`, `value out of range`) or, for durations, the `time` package's message.

/// Go's `flag` package error text for a value that does not parse.
pub const PARSE_ERROR: &str = "parse error";
/// Go's `flag` package error text for a number that does not fit.
pub const RANGE_ERROR: &str = "value out of range";

/// `strconv.ParseBool`: the twelve spellings Go accepts.
pub fn parse_bool(s: &str) -> Result<bool, &'static str> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(PARSE_ERROR),
    }
}

/// `strconv.ParseInt(s, 0, 64)`, the parser behind Go's `flag.Int64` and `flag.Int`.
pub fn parse_int(s: &str) -> Result<i64, &'static str> {
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() || !underscores_ok(body) {
        return Err(PARSE_ERROR);
    }
    let (radix, digits) = split_radix(body);
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if !digits.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(PARSE_ERROR);
    }
    let magnitude = if digits.is_empty() {
        // Only a bare "0" (octal prefix, no digits after it) gets here.
        0
    } else {
        u64::from_str_radix(&digits, radix).map_err(|e| match e.kind() {
            std::num::IntErrorKind::PosOverflow => RANGE_ERROR,
            _ => PARSE_ERROR,
        })?
    };
    let magnitude = i128::from(magnitude);
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value).map_err(|_| RANGE_ERROR)
}

/// Go's base-0 prefix rules: `0b`, `0o`, `0x` need at least one more character; any other
/// leading `0` means octal.
fn split_radix(body: &str) -> (u32, &str) {
    let bytes = body.as_bytes();
    if bytes.first() != Some(&b'0') {
        return (10, body);
    }
    if bytes.len() >= 3 {
        match bytes[1].to_ascii_lowercase() {
            b'b' => return (2, &body[2..]),
            b'o' => return (8, &body[2..]),
            b'x' => return (16, &body[2..]),
            _ => {}
        }
    }
    (8, &body[1..])
}

/// Go's `underscoreOK`: `_` only between digits, or between a base prefix and a digit.
fn underscores_ok(body: &str) -> bool {
    let bytes = body.as_bytes();
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if bytes.len() >= 2
        && bytes[0] == b'0'
        && matches!(bytes[1].to_ascii_lowercase(), b'b' | b'o' | b'x')
    {
        i = 2;
        saw = b'0';
        hex = bytes[1].eq_ignore_ascii_case(&b'x');
    }
    for &b in &bytes[i..] {
        if b.is_ascii_digit() || (hex && b.is_ascii_hexdigit()) {
            saw = b'0';
        } else if b == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
    }
    saw != b'_'
}

/// Largest magnitude Go's duration arithmetic allows before reporting overflow (`1<<63`).
const DURATION_LIMIT: u64 = 1 << 63;

/// `time.ParseDuration`: returns signed nanoseconds, as Go's `time.Duration` is.
pub fn parse_duration(orig: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {orig:?}");
    let (negative, mut s) = match orig.as_bytes().first() {
        Some(b'-') => (true, &orig[1..]),
        Some(b'+') => (false, &orig[1..]),
        _ => (false, orig),
    };
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        let (value, rest) = duration_term(s, orig)?;
        s = rest;
        total = total
            .checked_add(value)
            .filter(|&t| t <= DURATION_LIMIT)
            .ok_or_else(invalid)?;
    }
    let total = i128::from(total);
    i64::try_from(if negative { -total } else { total }).map_err(|_| invalid())
}

/// One `<number><unit>` term of a duration: its nanoseconds and the unparsed rest.
fn duration_term<'a>(s: &'a str, orig: &str) -> Result<(u64, &'a str), String> {
    let invalid = || format!("time: invalid duration {orig:?}");
    if !s.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
        return Err(invalid());
    }
    let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
    let whole = leading_int(&s[..int_len]).ok_or_else(invalid)?;
    let mut s = &s[int_len..];
    let mut fraction = (0_u64, 1.0_f64);
    let mut frac_len = 0;
    if let Some(rest) = s.strip_prefix('.') {
        frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        fraction = leading_fraction(&rest[..frac_len]);
        s = &rest[frac_len..];
    }
    if int_len == 0 && frac_len == 0 {
        return Err(invalid());
    }
    let unit_len = s
        .find(|c: char| c == '.' || c.is_ascii_digit())
        .unwrap_or(s.len());
    if unit_len == 0 {
        return Err(format!("time: missing unit in duration {orig:?}"));
    }
    let (unit_name, rest) = s.split_at(unit_len);
    let unit = unit_nanos(unit_name)
        .ok_or_else(|| format!("time: unknown unit {unit_name:?} in duration {orig:?}"))?;
    if whole > DURATION_LIMIT / unit {
        return Err(invalid());
    }
    let mut value = whole * unit;
    let (frac, scale) = fraction;
    if frac > 0 {
        // Go computes this in float64 and truncates; so do we, to round the same way.
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let extra = (frac as f64 * (unit as f64 / scale)) as u64;
        value = value
            .checked_add(extra)
            .filter(|&v| v <= DURATION_LIMIT)
            .ok_or_else(invalid)?;
    }
    Ok((value, rest))
}

/// Go's `leadingInt` over a run of ASCII digits; `None` on overflow.
fn leading_int(digits: &str) -> Option<u64> {
    digits.bytes().try_fold(0_u64, |acc, b| {
        let next = acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        (next <= DURATION_LIMIT).then_some(next)
    })
}

/// Go's `leadingFraction`: digits past the precision of a `u64` are read and ignored.
fn leading_fraction(digits: &str) -> (u64, f64) {
    let mut value = 0_u64;
    let mut scale = 1.0_f64;
    for b in digits.bytes() {
        let Some(next) = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
        else {
            break;
        };
        if next > DURATION_LIMIT {
            break;
        }
        value = next;
        scale *= 10.0;
    }
    (value, scale)
}

/// Nanoseconds per unit, from Go's `unitMap` (both micro signs included).
fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_go_does() {
        let s = 1_000_000_000_i64;
        for (input, nanos) in [
            ("60s", 60 * s),
            ("1m30s", 90 * s),
            ("250ms", 250_000_000),
            ("2h", 7200 * s),
            ("1.5s", 1_500_000_000),
            ("-1s", -s),
            ("+1s", s),
            ("0", 0),
            ("-0", 0),
            ("0s", 0),
            (".5s", 500_000_000),
            ("1.s", s),
            ("1h1h", 7200 * s),
            ("1us", 1_000),
            ("1\u{b5}s", 1_000),
            ("1\u{3bc}s", 1_000),
            ("3ns", 3),
            ("1.0000000001s", s),
            ("9223372036854775807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("2562047h", 2_562_047 * 3600 * s),
        ] {
            assert_eq!(parse_duration(input), Ok(nanos), "{input}");
        }
    }

    #[test]
    fn bad_durations_are_rejected_with_go_messages() {
        for input in [
            "", "1", "1x", ".s", ".", "s", "-", "1s ", " 1s", "1e3s", "1,5s", "µs",
        ] {
            assert!(parse_duration(input).is_err(), "{input:?} must be rejected");
        }
        assert_eq!(
            parse_duration("1").unwrap_err(),
            "time: missing unit in duration \"1\""
        );
        assert_eq!(
            parse_duration("1x").unwrap_err(),
            "time: unknown unit \"x\" in duration \"1x\""
        );
        assert_eq!(
            parse_duration("").unwrap_err(),
            "time: invalid duration \"\""
        );
        assert!(parse_duration("9223372036854775808ns").is_err(), "overflow");
        assert!(parse_duration("2562048h").is_err(), "overflow");
        assert!(parse_duration("99999999999999999999s").is_err(), "overflow");
    }

    #[test]
    fn ints_parse_as_go_base_zero() {
        for (input, value) in [
            ("0", 0),
            ("10000", 10_000),
            ("+5", 5),
            ("-5", -5),
            ("010", 8),
            ("0x10", 16),
            ("0X1f", 31),
            ("0o17", 15),
            ("0b101", 5),
            ("1_000", 1000),
            ("0x_10", 16),
            ("-0", 0),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
        ] {
            assert_eq!(parse_int(input), Ok(value), "{input}");
        }
        for input in [
            "", "abc", "1.5", "0x", "09", "1__0", "_1", "1_", "+-1", "0x+1", " 1", "1e3",
        ] {
            assert_eq!(parse_int(input), Err(PARSE_ERROR), "{input:?}");
        }
        assert_eq!(parse_int("9223372036854775808"), Err(RANGE_ERROR));
        assert_eq!(parse_int("99999999999999999999"), Err(RANGE_ERROR));
    }

    #[test]
    fn bools_parse_as_go() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Ok(true));
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Ok(false));
        }
        for bad in ["", "yes", "tRUE", "2", "on"] {
            assert_eq!(parse_bool(bad), Err(PARSE_ERROR));
        }
    }
}
