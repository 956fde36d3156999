//! [`OptionsError`]: why the command line, the config file or their combination was refused.
//!
//! Every message names what was wrong — the flag (`-mem-queue-size`), or the config key and
//! file — and the offending value, in the words Go's `flag` package and nsqd use, so an
//! operator's muscle memory and log searches carry over.

use std::fmt;

/// Where a bad option came from; decides the exit status (see [`OptionsError::exit_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// Flag syntax or a flag's value (Go's `flag` package; nsqd exits 2).
    CommandLine,
    /// The `--config` file could not be read or a key's value is bad (nsqd exits 1).
    ConfigFile,
    /// The merged options break a rule nsqd's `New()` checks (nsqd exits 1).
    Validation,
}

/// A refused option: the message names the flag or config key and the bad value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionsError {
    source: ErrorSource,
    flag: Option<&'static str>,
    message: String,
}

impl OptionsError {
    pub(super) fn command_line(flag: Option<&'static str>, message: String) -> Self {
        Self {
            source: ErrorSource::CommandLine,
            flag,
            message,
        }
    }

    pub(super) fn config_file(flag: Option<&'static str>, message: String) -> Self {
        Self {
            source: ErrorSource::ConfigFile,
            flag,
            message,
        }
    }

    pub(super) fn validation(flag: &'static str, message: String) -> Self {
        Self {
            source: ErrorSource::Validation,
            flag: Some(flag),
            message,
        }
    }

    /// Where the bad option came from.
    pub fn source_kind(&self) -> ErrorSource {
        self.source
    }

    /// The nsqd flag name (without dashes) the error is about, when there is one.
    pub fn flag(&self) -> Option<&'static str> {
        self.flag
    }

    /// The exit status nsqd uses for this error: 2 for a bad command line (Go's
    /// `flag.ExitOnError`), 1 for a bad config file or a failed check (nsqd's `logFatal`).
    pub fn exit_code(&self) -> u8 {
        match self.source {
            ErrorSource::CommandLine => 2,
            ErrorSource::ConfigFile | ErrorSource::Validation => 1,
        }
    }
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OptionsError {}
