//! The broker's wall clock: message timestamps, DPUB and REQ deadlines as saved on disk,
//! message ids, latencies. Monotonic time (deadlines while running) is tokio's `Instant`
//! everywhere in the broker, so that a runtime with paused time (the simulation) drives both.

use std::time::{SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Where wall-clock time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The system's clock (the broker as it runs).
    System,
    /// `base_ns` (ns since the Unix epoch) at tokio instant `start`, then moving with tokio's
    /// time: in a runtime with paused time this is a simulated, deterministic wall clock.
    Tokio { base_ns: u64, start: Instant },
}

impl Clock {
    /// A clock that reads `base_ns` now and moves with tokio's time.
    pub fn tokio_from(base_ns: u64) -> Self {
        Self::Tokio {
            base_ns,
            start: Instant::now(),
        }
    }

    /// Nanoseconds since the Unix epoch (what nsqd puts in a message's timestamp).
    pub fn now_ns(self) -> u64 {
        match self {
            Self::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            Self::Tokio { base_ns, start } => base_ns
                .saturating_add(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)),
        }
    }

    /// [`Clock::now_ns`] as nsqd's signed timestamp.
    pub fn now_timestamp_ns(self) -> i64 {
        i64::try_from(self.now_ns()).unwrap_or(i64::MAX)
    }

    /// The wall-clock time as a `SystemTime`.
    pub fn now_system(self) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_nanos(self.now_ns())
    }
}
