//! `ringsq dump --data-path DIR --topic T [--since TIME] [--limit N]`: a topic's retained
//! messages as JSON lines on stdout, in log order:
//!
//! `{"id":"<16-char NSQ id>","timestamp":<ns>,"attempts":0,"body":"<base64>"}`
//!
//! `attempts` is always 0: the log stores a message once for every channel, and attempts
//! belong to each channel's deliveries (`ringsq check` shows what channels hold outstanding).
//! `--since` takes what `/channel/rewind?since=` takes (Unix seconds, a fraction allowed, or
//! RFC 3339) and keeps messages published at or after it. Records that do not verify are
//! reported on stderr and skipped, never printed; reading goes on with the next record that
//! verifies. Every segment is read (a `--since` scan does not skip old segments).

use super::scan::{self, Found, Problem, ReadError, Severity};
use super::{lock_data_dir, record_size_max, EXIT_CANNOT_RUN, EXIT_DAMAGED, EXIT_OK};
use crate::broker::message::MessageView;
use crate::broker::paths;
use base64::Engine as _;
use serde::Serialize;
use std::io::{BufWriter, Write as _};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::SystemTime;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The broker's data directory (its --data-path).
    #[arg(long, value_name = "DIR")]
    pub data_path: PathBuf,
    /// The topic to print.
    #[arg(long, value_name = "TOPIC")]
    pub topic: String,
    /// Only messages published at or after TIME: Unix seconds (a fraction allowed) or RFC 3339.
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub since: Option<SystemTime>,
    /// Print at most N messages.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// The broker's --max-msg-size: a record longer than that (plus the message header) is damage.
    #[arg(long, value_name = "BYTES", default_value_t = super::MAX_MSG_SIZE_DEFAULT)]
    pub max_msg_size: u64,
}

fn parse_since(raw: &str) -> Result<SystemTime, String> {
    crate::app::http::admin::parse_since(raw)
        .ok_or_else(|| "expected Unix seconds (e.g. 1700000000.5) or an RFC 3339 time".to_owned())
}

/// One line of output.
#[derive(Debug, Serialize)]
struct Line<'a> {
    id: String,
    timestamp: i64,
    attempts: u16,
    body: &'a str,
}

/// `ringsq dump`: the exit code.
pub fn run(args: &Args) -> u8 {
    if !crate::protocol::is_valid_topic_name(args.topic.as_bytes()) {
        eprintln!("ringsq dump: invalid topic name {:?}", args.topic);
        return EXIT_CANNOT_RUN;
    }
    let _lock = match lock_data_dir(&args.data_path) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("ringsq dump: {e}");
            return EXIT_CANNOT_RUN;
        }
    };
    if !paths::topic_dir(&args.data_path, &args.topic).is_dir() {
        eprintln!(
            "ringsq dump: no topic {:?} in {}",
            args.topic,
            args.data_path.display()
        );
        return EXIT_CANNOT_RUN;
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    let result = dump(args, &mut out)
        .and_then(|damaged| out.flush().map_err(DumpError::Write).map(|()| damaged));
    match result {
        Ok(false) => EXIT_OK,
        Ok(true) => EXIT_DAMAGED,
        // The reader went away (`| head`): what it wanted was printed.
        Err(DumpError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(e) => {
            eprintln!("ringsq dump: {e}");
            EXIT_CANNOT_RUN
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum DumpError {
    #[error("{0}")]
    Read(#[from] ReadError),
    #[error("cannot write to stdout: {0}")]
    Write(std::io::Error),
}

/// Prints the messages; `true` when something damaged was skipped.
fn dump(args: &Args, out: &mut dyn std::io::Write) -> Result<bool, DumpError> {
    let log_dir = paths::topic_log_dir(&args.data_path, &args.topic);
    if !log_dir.is_dir() {
        return Ok(false);
    }
    let since_ns = args.since.map(|t| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    });
    let mut damaged = false;
    let mut printed = 0u64;
    let mut write_error = None;
    let mut body = String::new();
    let mut visit = |found: Found<'_>| {
        if args.limit.is_some_and(|limit| printed >= limit) {
            return ControlFlow::Break(());
        }
        let message = match MessageView::parse(found.data) {
            Ok(message) => message,
            Err(e) => {
                report(&Problem::damage(
                    found.segment,
                    Some(found.file_pos),
                    format!("record {} verifies but holds no message: {e}", found.seq),
                ));
                damaged = true;
                return ControlFlow::Continue(());
            }
        };
        if since_ns.is_some_and(|since| message.timestamp_ns < since) {
            return ControlFlow::Continue(());
        }
        body.clear();
        base64::engine::general_purpose::STANDARD.encode_string(message.body, &mut body);
        let line = Line {
            id: message.id.to_string(),
            timestamp: message.timestamp_ns,
            attempts: 0,
            body: &body,
        };
        let written = serde_json::to_writer(&mut *out, &line)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"));
        if let Err(e) = written {
            write_error = Some(e);
            return ControlFlow::Break(());
        }
        printed += 1;
        ControlFlow::Continue(())
    };
    let mut problems_damaged = false;
    scan::walk_log(
        &log_dir,
        record_size_max(args.max_msg_size),
        &mut visit,
        &mut |problem| {
            problems_damaged |= problem.severity == Severity::Damage;
            report(&problem);
        },
    )?;
    if let Some(e) = write_error {
        return Err(DumpError::Write(e));
    }
    Ok(damaged || problems_damaged)
}

/// A problem on stderr: damaged records are skipped, never printed.
fn report(problem: &Problem) {
    match problem.severity {
        Severity::Damage => eprintln!("ringsq dump: skipped: {problem}"),
        Severity::Warning => eprintln!("ringsq dump: {problem}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_what_rewind_takes() {
        let t = parse_since("1700000000.5").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
            1_700_000_000_500
        );
        assert_eq!(
            parse_since("2023-11-14T22:13:20Z").unwrap(),
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)
        );
        assert!(parse_since("yesterday").is_err());
    }
}
