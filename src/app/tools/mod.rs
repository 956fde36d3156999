//! The operator's subcommands: `ringsq check` and `ringsq dump`, offline, on a stopped broker's
//! data directory.
//!
//! A subcommand is the first argument; anything else is nsqd's command line, parsed by
//! [`crate::options`] as before. The subcommands' own flags are parsed with clap.
//!
//! Both only read: files are opened read-only, nothing is created (not even the directory),
//! and while they run they hold a shared `flock` on the data directory, the lock a broker
//! takes exclusively ([`crate::app::server::lock_data_path`]): a running broker makes them refuse
//! (its files change under them), and a broker started meanwhile refuses to start.
//!
//! Exit codes: [`EXIT_OK`] everything verifies (warnings allowed); [`EXIT_DAMAGED`] something
//! is damaged (each file and byte offset named); [`EXIT_CANNOT_RUN`] bad arguments, an
//! unreadable directory or file, or a running broker.

pub mod check;
pub mod dump;
pub mod scan;

use clap::Parser as _;
use std::ffi::OsString;
use std::fs::File;
use std::path::Path;
use std::process::ExitCode;

/// Everything verifies.
pub const EXIT_OK: u8 = 0;
/// Something is damaged.
pub const EXIT_DAMAGED: u8 = 1;
/// The tool could not do its job.
pub const EXIT_CANNOT_RUN: u8 = 2;

/// nsqd's default `--max-msg-size` (what the broker's logs allow unless told otherwise).
pub const MAX_MSG_SIZE_DEFAULT: u64 = 1024 * 1024;

/// The subcommands, by their first argument.
pub const SUBCOMMANDS: [&str; 2] = ["check", "dump"];

#[derive(Debug, clap::Parser)]
#[command(
    name = "ringsq",
    about = "ringsq's offline tools (run without a subcommand, ringsq is nsqd: see ringsq --help)"
)]
enum Command {
    /// Verify every topic's log, channel state and park log of a stopped broker's data directory.
    ///
    /// Exit 0: everything verifies (warnings allowed: what a crash leaves and start-up repairs);
    /// 1: something is damaged (each file and byte offset named); 2: cannot run (bad arguments,
    /// unreadable directory, or a broker running on it).
    Check(check::Args),
    /// Print a topic's retained messages as JSON lines, in log order.
    ///
    /// One line per message: {"id": "<16-char NSQ id>", "timestamp": <ns>, "attempts": 0,
    /// "body": "<base64>"}. attempts is always 0: the log does not store attempts (they belong
    /// to each channel's deliveries). Damaged records are reported on stderr and skipped.
    /// Exit codes as for check.
    Dump(dump::Args),
}

/// Runs the subcommand `args[1]` names; `None` when it names none (the broker runs).
pub fn main(args: &[OsString]) -> Option<ExitCode> {
    let first = args.get(1)?.to_str()?;
    if !SUBCOMMANDS.contains(&first) {
        return None;
    }
    let command = match Command::try_parse_from(args) {
        Ok(command) => command,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors to stderr with 2.
            let code = if e.use_stderr() {
                EXIT_CANNOT_RUN
            } else {
                EXIT_OK
            };
            let _ = e.print();
            return Some(ExitCode::from(code));
        }
    };
    let code = match command {
        Command::Check(args) => check::run(&args),
        Command::Dump(args) => dump::run(&args),
    };
    Some(ExitCode::from(code))
}

/// Opens the data directory read-only and takes a shared lock on it; the error says why not.
pub fn lock_data_dir(path: &Path) -> Result<File, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot open the data path {}: {e}", path.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", path.display()));
    }
    let dir = File::open(path)
        .map_err(|e| format!("cannot open the data path {}: {e}", path.display()))?;
    match dir.try_lock_shared() {
        Ok(()) => Ok(dir),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "a broker is running on {}: stop it first (these tools read a stopped broker's files)",
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(format!("cannot lock the data path {}: {e}", path.display()))
        }
    }
}

/// The largest record a broker run with `--max-msg-size` `max_msg_size` writes (as
/// `BrokerConfig::from_options` sizes its logs).
pub fn record_size_max(max_msg_size: u64) -> u32 {
    let header = u64::try_from(crate::broker::message::MESSAGE_HEADER_BYTES).unwrap_or(u64::MAX);
    u32::try_from(max_msg_size.saturating_add(header)).unwrap_or(u32::MAX)
}

/// `ns` since the Unix epoch as RFC 3339 (UTC), or the number if it is out of range.
pub fn rfc3339_ns(ns: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ns.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_message_size_is_nsqds() {
        assert_eq!(
            MAX_MSG_SIZE_DEFAULT,
            crate::options::Options::default().max_msg_size
        );
        assert_eq!(record_size_max(MAX_MSG_SIZE_DEFAULT), 1024 * 1024 + 33);
        assert_eq!(record_size_max(u64::MAX), u32::MAX);
    }

    #[test]
    fn only_a_first_argument_names_a_subcommand() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(main(&args(&["ringsq"])).is_none());
        assert!(main(&args(&["ringsq", "--data-path", "check"])).is_none());
        assert!(main(&args(&["ringsq", "--mem-queue-size=0"])).is_none());
    }

    #[test]
    fn times_read_as_rfc_3339() {
        assert_eq!(
            rfc3339_ns(1_500_000_000_123_456_789),
            "2017-07-14T02:40:00.123456789Z"
        );
        assert!(rfc3339_ns(i64::MIN).starts_with("1677-"));
    }
}
