//! Deadlines: the timer task times out in-flight messages (nsqd's msg timeout; one that has used
//! its `--max-attempts` goes to the dead letters) and releases deferred ones when they come due. It sleeps until the earliest deadline (never polling); a new
//! deadline wakes it only when it is earlier than the one it sleeps for.

use super::Channel;
use ringsq_storage::Io;
use std::cmp::Reverse;
use std::rc::Rc;
use tokio::time::Instant;

impl<I: Io> Channel<I> {
    pub(super) async fn timer_loop(self: Rc<Self>) {
        loop {
            if self.deleted.get() {
                return;
            }
            let next = self.fire_due(Instant::now());
            self.state.borrow_mut().timer_at = next;
            match next {
                Some(at) => {
                    tokio::select! {
                        biased;
                        () = tokio::time::sleep_until(at) => {}
                        () = self.wake_timer.notified() => {}
                    }
                }
                None => self.wake_timer.notified().await,
            }
        }
    }

    /// A deadline at `at` was set: wake the timer if it sleeps past it.
    pub(super) fn timer_wanted(&self, at: Instant) {
        let mut st = self.state.borrow_mut();
        if st.timer_at.is_none_or(|t| at < t) {
            st.timer_at = Some(at);
            drop(st);
            self.wake_timer.notify_one();
        }
    }

    /// Times out expired in-flight messages and releases due deferred ones; returns the next
    /// deadline.
    fn fire_due(&self, now: Instant) -> Option<Instant> {
        let mut timed_out = Vec::new();
        let mut dying = Vec::new();
        let mut released = false;
        let mut st = self.state.borrow_mut();
        while let Some(Reverse((at, id))) = st.in_flight_deadlines.peek().copied() {
            if at > now {
                break;
            }
            st.in_flight_deadlines.pop();
            // Stale heap entries (finished, or touched to a later deadline) are skipped.
            if st.in_flight.get(&id).is_some_and(|f| f.deadline == at) {
                if let Some(f) = st.in_flight.remove(&id) {
                    timed_out.push(f.client_id);
                    if self.attempts_spent(f.pending.attempts) {
                        dying.push(f.pending);
                    } else {
                        st.requeue_now(f.pending);
                    }
                }
            }
        }
        while let Some(Reverse((at, key))) = st.deferred_deadlines.peek().copied() {
            if at > now {
                break;
            }
            st.deferred_deadlines.pop();
            if st.deferred.get(&key).is_some_and(|(_, due, _)| *due == at) {
                if let Some((p, _, _)) = st.deferred.remove(&key) {
                    st.requeue_now(p);
                    released = true;
                }
            }
        }
        let next = [
            st.in_flight_deadlines.peek().map(|r| r.0 .0),
            st.deferred_deadlines.peek().map(|r| r.0 .0),
        ]
        .into_iter()
        .flatten()
        .min();
        drop(st);
        for p in dying {
            self.die(p, super::Reason::MaxAttempts, None);
        }
        for client_id in &timed_out {
            if let Some(c) = self.consumer(*client_id) {
                c.release();
            }
        }
        if !timed_out.is_empty() {
            let n = timed_out.len() as u64;
            self.counters
                .timeout_count
                .set(self.counters.timeout_count.get() + n);
        }
        if released || !timed_out.is_empty() {
            self.mark_dirty();
            self.wake();
        }
        next
    }
}
