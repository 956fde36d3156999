//! Write health: what the latest write through a backend did, for the program above to report
//! (a health check that says whether writes work right now).
//!
//! Two sources, one answer ([`WriteHealth::error`]):
//! - *poisoned logs*: a log that stopped writing after an fsync or write error stays failed
//!   until it is closed (its error is kept);
//! - *the latest write*: every write the crate makes (a log's batch, fdatasync, new segment,
//!   checkpoint, and every [`crate::atomic_write`]) records its outcome; a failure (ENOSPC, EIO)
//!   stands until a later write succeeds, in any log of the backend. A full disk therefore shows
//!   as failed while writes fail, and as healthy again once one gets through.
//!
//! One per backend and thread (`Rc`, no locks): [`crate::Io::health`].

use crate::error::Error;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// See the module docs.
#[derive(Debug, Default)]
pub struct WriteHealth {
    last_failure: RefCell<Option<Error>>,
    poisoned: RefCell<BTreeMap<PathBuf, Error>>,
    failures_total: Cell<u64>,
}

impl WriteHealth {
    /// A write succeeded: a failure recorded before it no longer stands.
    pub fn record_ok(&self) {
        if self.last_failure.borrow().is_some() {
            tracing::info!("writes succeed again");
            *self.last_failure.borrow_mut() = None;
        }
    }

    /// A write failed.
    pub fn record_failure(&self, error: &Error) {
        self.failures_total.set(self.failures_total.get() + 1);
        *self.last_failure.borrow_mut() = Some(error.clone());
    }

    /// Records a write's outcome.
    pub fn record<T>(&self, result: &Result<T, Error>) {
        match result {
            Ok(_) => self.record_ok(),
            Err(e) => self.record_failure(e),
        }
    }

    /// The log in `dir` stopped writing with `error` (until [`WriteHealth::log_closed`]).
    pub fn log_poisoned(&self, dir: &Path, error: &Error) {
        self.record_failure(error);
        self.poisoned
            .borrow_mut()
            .entry(dir.to_path_buf())
            .or_insert_with(|| error.clone());
    }

    /// The log in `dir` was closed: its poison no longer counts.
    pub fn log_closed(&self, dir: &Path) {
        self.poisoned.borrow_mut().remove(dir);
    }

    /// `None` while writes work; else the error of a poisoned log, or of the latest write
    /// when it failed.
    pub fn error(&self) -> Option<Error> {
        if let Some(e) = self.poisoned.borrow().values().next() {
            return Some(e.clone());
        }
        self.last_failure.borrow().clone()
    }

    /// True while the latest write failed (poisoned logs aside): a write that succeeds would
    /// make the backend healthy again.
    pub fn latest_write_failed(&self) -> bool {
        self.last_failure.borrow().is_some()
    }

    /// Failed writes so far.
    pub fn failures_total(&self) -> u64 {
        self.failures_total.get()
    }
}
