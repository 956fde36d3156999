//! Turning one raw value — a command-line argument or a TOML value — into a typed option.
//!
//! The two sources follow different Go code paths in nsqd, and this module keeps each one's
//! rules: a command-line value goes through Go's `flag` package ([`super::go_syntax`]); a
//! config value goes through `mreiferson/go-options`' `coerce` (a duration given as a TOML
//! integer is milliseconds, an integer given as a string is base 10, a list may be one
//! comma-separated string). Where go-options would panic or silently misread a value (an
//! integer for a bool reads inverted, a non-string for a string becomes `%!s(int64=5)`),
//! the value is refused instead.

use std::time::Duration;

use super::flags::{FlagSpec, Setter};
use super::go_syntax::{parse_bool, parse_duration, parse_int, PARSE_ERROR};
use super::{LogFormat, LogLevel, Options, TlsRequired};

/// One value for one flag, as it arrived.
#[derive(Debug, Clone, Copy)]
pub(super) enum Raw<'a> {
    /// A command-line argument (`--flag=value`, `--flag value`, or `"true"` for a bare bool).
    Arg(&'a str),
    /// The value of a key in the `--config` TOML file.
    Toml(&'a toml::Value),
}

/// Applies `raw` to the field `spec` names; `Err` is the reason, without the flag's name.
///
/// List flags append; the caller clears a list before its first value from a new source,
/// so a list given on the command line replaces the config file's (as go-options does).
pub(super) fn apply(spec: &FlagSpec, opts: &mut Options, raw: Raw<'_>) -> Result<(), String> {
    match spec.setter {
        Setter::Bool(set) => set(opts, to_bool(raw)?),
        Setter::Int(set) => set(opts, to_int(raw)?)?,
        Setter::Str(set) => set(opts, to_string(raw)?),
        Setter::Duration(set) => set(opts, to_duration(raw)?),
        Setter::StrList(field) => field(opts).extend(to_str_list(raw)?),
        Setter::FloatList(field) => {
            let list = field(opts);
            list.extend(to_float_list(raw)?);
            if let Raw::Arg(_) = raw {
                // Go's app.FloatArray keeps command-line percentiles sorted, largest first.
                list.sort_by(|a, b| b.total_cmp(a));
            }
        }
        Setter::LogLevel(set) => set(opts, to_log_level(raw)?),
        Setter::LogFormat(set) => set(opts, to_log_format(raw)?),
        Setter::TlsRequired(set) => set(opts, to_tls_required(raw)?),
        Setter::TlsMinVersion(set) => {
            if let Some(version) = to_tls_min_version(raw)? {
                set(opts, version);
            }
        }
        Setter::Version | Setter::WorkerId => {
            to_bool(raw)?;
        }
        Setter::Config => {
            to_string(raw)?;
        }
    }
    Ok(())
}

/// How a raw value reads back in an error message: quoted as Go's `%q` for arguments and
/// TOML strings, TOML syntax otherwise.
pub(super) fn show(raw: Raw<'_>) -> String {
    match raw {
        Raw::Arg(s) => format!("{s:?}"),
        Raw::Toml(value) => value.to_string(),
    }
}

fn type_error(expected: &str, value: &toml::Value) -> String {
    format!("expected {expected}, found a TOML {}", value.type_str())
}

fn to_bool(raw: Raw<'_>) -> Result<bool, String> {
    match raw {
        Raw::Arg(s) => Ok(parse_bool(s)?),
        Raw::Toml(toml::Value::String(s)) => Ok(parse_bool(s)?),
        Raw::Toml(toml::Value::Boolean(b)) => Ok(*b),
        Raw::Toml(other) => Err(type_error("true or false", other)),
    }
}

fn to_int(raw: Raw<'_>) -> Result<i64, String> {
    match raw {
        Raw::Arg(s) => Ok(parse_int(s)?),
        // go-options: strconv.ParseInt(s, 10, 64).
        Raw::Toml(toml::Value::String(s)) => s.parse().map_err(|_| PARSE_ERROR.to_owned()),
        Raw::Toml(toml::Value::Integer(i)) => Ok(*i),
        Raw::Toml(other) => Err(type_error("an integer", other)),
    }
}

fn to_string(raw: Raw<'_>) -> Result<String, String> {
    match raw {
        Raw::Arg(s) => Ok(s.to_owned()),
        Raw::Toml(toml::Value::String(s)) => Ok(s.to_owned()),
        Raw::Toml(other) => Err(type_error("a string", other)),
    }
}

fn to_duration(raw: Raw<'_>) -> Result<Duration, String> {
    let nanos = match raw {
        Raw::Arg(s) => parse_duration(s)?,
        Raw::Toml(toml::Value::String(s)) => parse_duration(s)?,
        // go-options reads a bare integer as milliseconds.
        Raw::Toml(toml::Value::Integer(ms)) => ms
            .checked_mul(1_000_000)
            .ok_or_else(|| "duration out of range".to_owned())?,
        Raw::Toml(other) => {
            return Err(type_error(
                "a duration string such as \"60s\" or milliseconds",
                other,
            ))
        }
    };
    let nanos = u64::try_from(nanos).map_err(|_| "duration must not be negative".to_owned())?;
    Ok(Duration::from_nanos(nanos))
}

fn to_str_list(raw: Raw<'_>) -> Result<Vec<String>, String> {
    match raw {
        // Go's app.StringArray: one value per occurrence, commas kept.
        Raw::Arg(s) => Ok(vec![s.to_owned()]),
        Raw::Toml(toml::Value::String(s)) => Ok(s.split(',').map(str::to_owned).collect()),
        Raw::Toml(toml::Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                toml::Value::String(s) => Ok(s.to_owned()),
                other => Err(type_error("an array of strings", other)),
            })
            .collect(),
        Raw::Toml(other) => Err(type_error("an array of strings", other)),
    }
}

fn to_float_list(raw: Raw<'_>) -> Result<Vec<f64>, String> {
    let values = match raw {
        // Go's app.FloatArray splits on commas without trimming spaces.
        Raw::Arg(s) => s
            .split(',')
            .map(parse_float)
            .collect::<Result<Vec<_>, _>>()?,
        Raw::Toml(toml::Value::String(s)) => s
            .split(',')
            .map(|p| parse_float(p.trim()))
            .collect::<Result<Vec<_>, _>>()?,
        Raw::Toml(toml::Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                toml::Value::Float(f) => Ok(*f),
                toml::Value::Integer(i) => i32::try_from(*i)
                    .map(f64::from)
                    .map_err(|_| format!("invalid E2E processing latency percentile: {i}")),
                other => Err(type_error("an array of numbers", other)),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Raw::Toml(other) => return Err(type_error("an array of numbers", other)),
    };
    // nsqd's New(): every percentile must be in (0, 1].
    if let Some(bad) = values.iter().find(|v| !(**v > 0.0 && **v <= 1.0)) {
        return Err(format!(
            "invalid E2E processing latency percentile: {bad} (must be in (0, 1])"
        ));
    }
    Ok(values)
}

fn parse_float(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .map_err(|_| format!("could not parse {s:?} as a number"))
}

fn to_log_level(raw: Raw<'_>) -> Result<LogLevel, String> {
    match raw {
        Raw::Arg(s) => LogLevel::parse(s),
        Raw::Toml(toml::Value::String(s)) => LogLevel::parse(s),
        Raw::Toml(other) => Err(type_error("a log level string", other)),
    }
}

fn to_log_format(raw: Raw<'_>) -> Result<LogFormat, String> {
    match raw {
        Raw::Arg(s) => LogFormat::parse(s),
        Raw::Toml(toml::Value::String(s)) => LogFormat::parse(s),
        Raw::Toml(other) => Err(type_error("\"text\" or \"json\"", other)),
    }
}

fn to_tls_required(raw: Raw<'_>) -> Result<TlsRequired, String> {
    match raw {
        Raw::Arg(s) => TlsRequired::parse(s),
        Raw::Toml(toml::Value::String(s)) => TlsRequired::parse(s),
        Raw::Toml(toml::Value::Boolean(b)) => Ok(TlsRequired::from_bool(*b)),
        // nsqd's config Validate() formats the value with %v, so 0 and 1 parse as bools.
        Raw::Toml(toml::Value::Integer(i)) => TlsRequired::parse(&i.to_string()),
        Raw::Toml(other) => Err(type_error("true, false or \"tcp-https\"", other)),
    }
}

/// `None` for an empty value: nsqd leaves the default in place.
fn to_tls_min_version(raw: Raw<'_>) -> Result<Option<u16>, String> {
    let s = match raw {
        Raw::Arg(s) => s,
        Raw::Toml(toml::Value::String(s)) => s,
        Raw::Toml(other) => return Err(type_error("a TLS version string", other)),
    };
    match s.to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "tls1.0" => Ok(Some(super::TLS_VERSION_1_0)),
        "tls1.1" => Ok(Some(super::TLS_VERSION_1_1)),
        "tls1.2" => Ok(Some(super::TLS_VERSION_1_2)),
        "tls1.3" => Ok(Some(super::TLS_VERSION_1_3)),
        _ => Err(format!("unknown tlsVersionOption {s:?}")),
    }
}

/// A Go `int`/`int64` flag value that must not be negative, as the field's unsigned type.
pub(super) fn non_negative<T: TryFrom<i64>>(v: i64) -> Result<T, String> {
    if v < 0 {
        return Err("must not be negative".to_owned());
    }
    T::try_from(v).map_err(|_| super::go_syntax::RANGE_ERROR.to_owned())
}

/// A Go `int` flag value that must lie in `[lo, hi]`, as the field's type.
pub(super) fn in_range<T: TryFrom<i64>>(v: i64, lo: i64, hi: i64) -> Result<T, String> {
    if v < lo || v > hi {
        return Err(format!("must be [{lo},{hi}]"));
    }
    T::try_from(v).map_err(|_| super::go_syntax::RANGE_ERROR.to_owned())
}
