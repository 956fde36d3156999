//! Scanning the command line with Go's `flag` package grammar.
//!
//! nsqd parses its arguments with Go's `flag.FlagSet`, and unit files are written for it, so
//! ringsq accepts exactly the same syntax:
//!
//! - one or two dashes: `-mem-queue-size 0`, `--mem-queue-size=0`;
//! - a value as `=value` or as the next argument — except for bool flags (and nsqd's
//!   bool-like `--tls-required`), which take only `=value` and alone mean `true`;
//! - scanning stops at the first non-flag argument (the rest are ignored, as nsqd ignores
//!   them) or after a `--`;
//! - a repeated flag overrides (lists append);
//! - `-h`, `-help` and `--help` ask for usage.
//!
//! Error messages are Go's, word for word.

use super::error::OptionsError;
use super::flags::{self, FlagSpec, Setter};
use super::value::{self, Raw};
use super::Options;

/// What the command line said, before the config file is merged in.
#[derive(Debug, Default)]
pub(super) struct CommandLine {
    /// Every flag given, in order, with its value (`"true"` for a bare bool flag).
    pub given: Vec<(&'static FlagSpec, String)>,
    /// `-h`/`-help`/`--help` was met (scanning stopped there).
    pub help: bool,
    /// `--version` was given (and its last value was true).
    pub version: bool,
    /// The last `--config` value.
    pub config: Option<String>,
}

/// Scans `args` (without the program name), checking every value as Go does on `Set`.
pub(super) fn scan(args: &[String]) -> Result<CommandLine, OptionsError> {
    let mut out = CommandLine::default();
    // Values are checked against a scratch copy so that a bad value fails here, in
    // command-line order, before the config file is read — as Go's flag.Parse does.
    let mut scratch = Options::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg.len() < 2 || !arg.starts_with('-') {
            break;
        }
        let name = if let Some(long) = arg.strip_prefix("--") {
            if long.is_empty() {
                break;
            }
            long
        } else {
            &arg[1..]
        };
        if name.starts_with('-') || name.starts_with('=') {
            return Err(OptionsError::command_line(
                None,
                format!("bad flag syntax: {arg}"),
            ));
        }
        let (name, inline) = match name.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (name, None),
        };
        let Some(spec) = flags::lookup(name) else {
            if name == "help" || name == "h" {
                out.help = true;
                return Ok(out);
            }
            return Err(OptionsError::command_line(
                None,
                format!("flag provided but not defined: -{name}"),
            ));
        };
        let value = match (inline, spec.setter.is_bool()) {
            (Some(v), _) => v.to_owned(),
            (None, true) => "true".to_owned(),
            (None, false) => rest.next().cloned().ok_or_else(|| {
                OptionsError::command_line(
                    Some(spec.name),
                    format!("flag needs an argument: -{name}"),
                )
            })?,
        };
        check(spec, &mut scratch, &value)?;
        record(&mut out, spec, value);
    }
    Ok(out)
}

/// Checks one value the way the flag's Go `Set` would, with Go's error wording.
fn check(spec: &'static FlagSpec, scratch: &mut Options, value: &str) -> Result<(), OptionsError> {
    value::apply(spec, scratch, Raw::Arg(value)).map_err(|reason| {
        let message = if spec.setter.is_bool() {
            format!(
                "invalid boolean value {value:?} for -{}: {reason}",
                spec.name
            )
        } else {
            format!("invalid value {value:?} for flag -{}: {reason}", spec.name)
        };
        OptionsError::command_line(Some(spec.name), message)
    })
}

fn record(out: &mut CommandLine, spec: &'static FlagSpec, value: String) {
    match spec.setter {
        // `check` has already accepted the value, so it parses.
        Setter::Version => out.version = super::go_syntax::parse_bool(&value).unwrap_or(true),
        Setter::Config => out.config = Some(value),
        _ => out.given.push((spec, value)),
    }
}

/// Applies the command-line values over `opts` (which holds defaults and config values).
///
/// A list flag given on the command line replaces the config file's list, as go-options
/// resolves it; its repeated values accumulate.
pub(super) fn apply(
    opts: &mut Options,
    given: &[(&'static FlagSpec, String)],
) -> Result<(), OptionsError> {
    let mut cleared: Vec<&'static str> = Vec::new();
    for (spec, value) in given {
        if !cleared.contains(&spec.name) {
            match spec.setter {
                Setter::StrList(field) => field(opts).clear(),
                Setter::FloatList(field) => field(opts).clear(),
                _ => {}
            }
            cleared.push(spec.name);
        }
        check(spec, opts, value)?;
    }
    Ok(())
}
