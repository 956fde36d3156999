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
//!   accepted and closed at once (`connection::admission`).
//!
//! The admission of connections against their shares (the spare descriptor, the refusal log)
//! is `connection::admission`; this module only sizes the shares.

use std::io;

/// Fewest descriptors kept out of the clients' reach.
pub const FD_RESERVE_MIN: u64 = 64;
/// Most descriptors kept out of the clients' reach.
pub const FD_RESERVE_MAX: u64 = 16 * 1024;
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
    /// The soft `RLIMIT_NOFILE` it shares (`None` = unlimited).
    pub limit: Option<u64>,
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
                limit: None,
                protocol_connections_max: usize::MAX,
                http_connections_max: usize::MAX,
                files_open_max: share(FILES_OPEN_MAX),
            },
            Some(soft) => Self {
                limit: Some(soft),
                protocol_connections_max: share(soft.saturating_sub(fd_reserve(soft))),
                http_connections_max: share(fd_reserve(soft) / 4),
                files_open_max: share((fd_reserve(soft) / 2).min(FILES_OPEN_MAX)),
            },
        }
    }
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
}
