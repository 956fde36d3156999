//! The `ringsq` binary: parse nsqd's flags, run the broker until SIGTERM/SIGINT.

use std::process::{exit, ExitCode};

use ringsq::options::{self, Options, Parsed};

fn main() -> ExitCode {
    let _opts = parse_or_exit();
    ExitCode::SUCCESS
}

/// Parses the command line and `--config` like nsqd: `--version` and `--help` print and
/// exit 0; a bad flag exits 2 (Go's `flag` package), a bad config or check exits 1.
fn parse_or_exit() -> Options {
    match options::parse(std::env::args_os()) {
        Ok(Parsed::Run(opts)) => opts,
        Ok(Parsed::Version) => {
            println!("{}", options::VERSION);
            exit(0);
        }
        Ok(Parsed::Help(text)) => {
            print!("{text}");
            exit(0);
        }
        Err(err) => {
            eprintln!("ringsq: {err}");
            if err.source_kind() == options::ErrorSource::CommandLine {
                eprintln!("ringsq: run 'ringsq --help' for the list of flags");
            }
            exit(i32::from(err.exit_code()));
        }
    }
}
