//! File descriptors as a budget, connection side.
//!
//! - At start the soft `RLIMIT_NOFILE` is raised to the hard limit ([`raise_nofile_limit`]),
//!   as Go raises it for nsqd.
//! - One [`Budget`] splits the limit: protocol clients (TCP and unix listeners) may hold the
//!   limit less a reserve ([`fd_reserve`]); of the reserve, half is the storage's open-file
//!   budget (at most [`FILES_OPEN_MAX`]: idle topics hold none, so 100 000 topics fit), a
//!   quarter HTTP clients (HTTP and HTTPS), and a quarter stays for what must go on working when
//!   clients take everything they can: listeners, nsqlookupd and statsd sockets, state files.
//!   So a flood of protocol connections leaves `/ping` and `/stats` answering, and a flood of
//!   HTTP connections leaves publishing and consuming working. A connection past its share is
//!   accepted and closed at once ([`Admission::admit`]).
//! - If a listener hits `EMFILE`/`ENFILE` anyway, one spare descriptor held for the purpose is
//!   closed, the waiting connection accepted and closed, and the spare opened again
//!   ([`Admission::refuse_one`]): the backlog drains instead of waking the accept loop for
//!   ever, and the loop never spins (it backs off when even that fails).
//!
//! Every refusal is logged, at most once per [`REFUSAL_LOG_INTERVAL`] with a count.
//!
//! Shards: descriptors are a process-wide resource, so one [`Admission`] per kind of client is
//! shared by every shard's listeners (atomics; a mutex only for the spare and the refusal log,
//! touched when refusing), and an [`Admitted`] place moves with its connection from shard to
//! shard. The storage's share is split evenly between the shards (each thread's storage keeps
//! its own file budget).

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Fewest descriptors kept out of the clients' reach.
pub const FD_RESERVE_MIN: u64 = 64;
/// Most descriptors kept out of the clients' reach.
pub const FD_RESERVE_MAX: u64 = 16 * 1024;
/// At most one refusal line per interval (the others are counted in the next line).
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(5);
/// How long an accept loop waits after an accept error it could not clear.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Most files the storage keeps open at once, whatever the limit: enough for thousands of busy
/// topics (an idle one holds none).
pub const FILES_OPEN_MAX: u64 = 4096;
/// Where the kernel's ceiling for `RLIMIT_NOFILE` is read (used when the hard limit is infinite).
const NR_OPEN_PATH: &str = "/proc/sys/fs/nr_open";

/// The process's descriptor limits, before and after [`raise_nofile_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimits {
    /// The soft limit the process started with (`None` = unlimited).
    pub soft_before: Option<u64>,
    /// The soft limit now.
    pub soft: Option<u64>,
    /// The hard limit.
    pub hard: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (or, when that is infinite, to the
/// kernel's `nr_open`). A refusal leaves the limit as it was (logged by the caller).
pub fn raise_nofile_limit() -> io::Result<NofileLimits> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let before = getrlimit(Resource::Nofile);
    let target = match before.maximum {
        Some(hard) => Some(hard),
        None => std::fs::read_to_string(NR_OPEN_PATH)
            .ok()
            .and_then(|s| s.trim().parse().ok()),
    };
    let raised = match (before.current, target) {
        (Some(soft), Some(target)) if target > soft => {
            setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(target),
                    maximum: before.maximum,
                },
            )?;
            Some(target)
        }
        (soft, _) => soft,
    };
    Ok(NofileLimits {
        soft_before: before.current,
        soft: raised,
        hard: before.maximum,
    })
}

/// Descriptors kept out of the clients' reach for a soft limit of `soft`: a quarter of it,
/// within [`FD_RESERVE_MIN`]..=[`FD_RESERVE_MAX`].
pub fn fd_reserve(soft: u64) -> u64 {
    (soft / 4).clamp(FD_RESERVE_MIN, FD_RESERVE_MAX)
}

/// How the descriptor limit is shared: client connections of each kind, and the storage's open
/// files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Protocol clients (TCP and unix `--tcp-address`): the limit less [`fd_reserve`].
    pub protocol_connections_max: usize,
    /// HTTP and HTTPS clients: a quarter of the reserve.
    pub http_connections_max: usize,
    /// Segment and state files the storage keeps open: half the reserve, at most
    /// [`FILES_OPEN_MAX`].
    pub files_open_max: usize,
}

impl Budget {
    /// The budget for a soft limit of `soft` (`None` = unlimited); every share at least 1.
    pub fn for_limit(soft: Option<u64>) -> Self {
        let share = |n: u64| usize::try_from(n.max(1)).unwrap_or(usize::MAX);
        match soft {
            None => Self {
                protocol_connections_max: usize::MAX,
                http_connections_max: usize::MAX,
                files_open_max: share(FILES_OPEN_MAX),
            },
            Some(soft) => Self {
                protocol_connections_max: share(soft.saturating_sub(fd_reserve(soft))),
                http_connections_max: share(fd_reserve(soft) / 4),
                files_open_max: share((fd_reserve(soft) / 2).min(FILES_OPEN_MAX)),
            },
        }
    }
}

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
    fn the_reserve_leaves_room_for_clients() {
        assert_eq!(fd_reserve(256), FD_RESERVE_MIN);
        assert_eq!(fd_reserve(20_000), 5_000);
        assert_eq!(fd_reserve(1 << 20), FD_RESERVE_MAX);
        let b = Budget::for_limit(Some(256));
        assert_eq!(
            (
                b.protocol_connections_max,
                b.http_connections_max,
                b.files_open_max
            ),
            (192, 16, 32)
        );
        let b = Budget::for_limit(Some(20_000));
        assert_eq!(
            (
                b.protocol_connections_max,
                b.http_connections_max,
                b.files_open_max
            ),
            (15_000, 1_250, 2_500)
        );
        assert_eq!(Budget::for_limit(Some(1 << 20)).files_open_max, 4096);
        assert_eq!(Budget::for_limit(Some(10)).protocol_connections_max, 1);
        assert_eq!(Budget::for_limit(None).http_connections_max, usize::MAX);
    }

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
