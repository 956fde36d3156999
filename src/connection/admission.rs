//! Admission of client connections against their share of the descriptor budget (sized by
//! `app::fds::Budget`): a connection past its share is accepted and closed at once
//! ([`Admission::admit`]).
//!
//! - If a listener hits `EMFILE`/`ENFILE` anyway, one spare descriptor held for the purpose is
//!   closed, the waiting connection accepted and closed, and the spare opened again
//!   ([`Admission::refuse_one`]): the backlog drains instead of waking the accept loop for
//!   ever, and the loop never spins (it backs off when even that fails).
//! - Every refusal is logged, at most once per [`REFUSAL_LOG_INTERVAL`] with a count.
//!
//! Shards: descriptors are a process-wide resource, so one [`Admission`] per kind of client is
//! shared by every shard's listeners (atomics; a mutex only for the spare and the refusal log,
//! touched when refusing), and an [`Admitted`] place moves with its connection from shard to
//! shard.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most one refusal line per interval (the others are counted in the next line).
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(5);
/// How long an accept loop waits after an accept error it could not clear.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Whether an accept error means "out of descriptors".
pub fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == rustix::io::Errno::MFILE.raw_os_error()
        || code == rustix::io::Errno::NFILE.raw_os_error())
}

/// Admission of one kind of client connections (protocol or HTTP, over all their listeners):
/// the live count against its share of the [`Budget`], a spare descriptor, and the
/// rate-limited refusal log.
#[derive(Debug)]
pub struct Admission {
    what: &'static str,
    live: AtomicUsize,
    max: usize,
    spare: Mutex<Option<File>>,
    refused: AtomicU64,
    last_log: Mutex<Option<Instant>>,
}

/// A live client connection; dropping it frees its place.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission.live.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// `what` names the listeners in log lines (`TCP`, `HTTP`).
    pub fn new(what: &'static str, connections_max: usize) -> Arc<Self> {
        Arc::new(Self {
            what,
            live: AtomicUsize::new(0),
            max: connections_max,
            spare: Mutex::new(open_spare()),
            refused: AtomicU64::new(0),
            last_log: Mutex::new(None),
        })
    }

    /// Client connections open now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// A place for a connection just accepted, or `None` (the caller closes it) when this
    /// kind's share of the budget is in use.
    pub fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let taken = self
            .live
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |live| {
                (live < self.max).then_some(live + 1)
            });
        if taken.is_err() {
            self.log_refusal("connection limit reached");
            return None;
        }
        Some(Admitted {
            admission: Arc::clone(self),
        })
    }

    /// After an accept failed with `e`: if descriptors ran out, closes the spare, accepts and
    /// closes one waiting connection with `accept_and_drop`, and opens the spare again; waits
    /// [`ACCEPT_BACKOFF`] when that did not clear the error (or for any other error).
    pub async fn refuse_one<F, Fut>(&self, e: &io::Error, accept_and_drop: F)
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = io::Result<()>>,
    {
        if !is_fd_exhaustion(e) {
            self.log_refusal(&format!("accept failed - {e}"));
            tokio::time::sleep(ACCEPT_BACKOFF).await;
            return;
        }
        let had_spare = self.take_spare().is_some();
        let cleared = had_spare && accept_and_drop().await.is_ok();
        if let Ok(mut spare) = self.spare.lock() {
            *spare = open_spare();
        }
        self.log_refusal(&format!("accept failed - {e}"));
        if !cleared {
            tokio::time::sleep(ACCEPT_BACKOFF).await;
        }
    }

    fn take_spare(&self) -> Option<File> {
        self.spare.lock().ok().and_then(|mut spare| spare.take())
    }

    fn log_refusal(&self, why: &str) {
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let due = self.last_log.lock().is_ok_and(|mut last| {
            let due = last.is_none_or(|at| now.duration_since(at) >= REFUSAL_LOG_INTERVAL);
            if due {
                *last = Some(now);
            }
            due
        });
        if due {
            tracing::warn!(
                "{}: refusing a connection ({why}; {} open, {refused} refused so far; file descriptor limit in use)",
                self.what,
                self.live()
            );
        }
    }
}

fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_counts_live_connections() {
        let a = Admission::new("test", 2);
        let one = a.admit();
        let two = a.admit();
        assert!(one.is_some() && two.is_some());
        assert!(a.admit().is_none());
        drop(one);
        assert_eq!(a.live(), 1);
        assert!(a.admit().is_some());
    }

    /// Runs `refuse_one` for `e` with an accept that counts its calls; returns the count and
    /// whether the spare is held afterwards.
    fn refuse(a: &Admission, e: &io::Error) -> (usize, bool) {
        let calls = std::cell::Cell::new(0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime");
        rt.block_on(a.refuse_one(e, || async {
            calls.set(calls.get() + 1);
            Ok(())
        }));
        let spare = a.spare.lock().is_ok_and(|s| s.is_some());
        (calls.get(), spare)
    }

    #[test]
    fn emfile_accepts_and_closes_one_connection_with_the_spare() {
        let a = Admission::new("test", 2);
        assert!(a.spare.lock().is_ok_and(|s| s.is_some()));
        let emfile = io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
        assert_eq!(refuse(&a, &emfile), (1, true));
        // Another error backs off without touching the waiting connection.
        assert_eq!(refuse(&a, &io::Error::other("x")), (0, true));
        assert_eq!(a.refused.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn emfile_is_recognised() {
        let e = io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
        assert!(is_fd_exhaustion(&e));
        assert!(!is_fd_exhaustion(&io::Error::other("x")));
    }
}
