//! `Wake`: wakes one task of this thread, cheaply when it is woken often.
//!
//! A channel's dispatcher is woken by every FIN that frees a client's window, and a client's
//! writer by every message frame: thousands of times between two runs of the task. `Notify`
//! costs atomics (and a lock when the task waits) per call; `Wake` remembers that a wake-up is
//! already pending and makes the repeats a flag check. Invariant: `pending` is true only while a
//! `notify_one` has not yet been seen by a completed `notified()` (tokio keeps the permit, or
//! passes it on, if a notified future is dropped after being woken), so no wake-up is lost.

use std::cell::Cell;
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Wake {
    notify: Notify,
    pending: Cell<bool>,
}

impl Wake {
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes the task waiting in [`Wake::notified`], or the next one to call it.
    pub fn notify_one(&self) {
        if !self.pending.replace(true) {
            self.notify.notify_one();
        }
    }

    /// Waits for a wake-up. The task must look for work after this returns (a wake-up that
    /// arrives while it works makes the next call return at once).
    pub async fn notified(&self) {
        self.notify.notified().await;
        self.pending.set(false);
    }
}
