//! Delivery: the dispatcher task reads the topic's log ahead of the channel's consumers and hands
//! each message to the next ready client, writing its frame straight into the client's outbox.
//!
//! A message older than the channel's message TTL is not delivered: it goes to the dead letters
//! (`dead.rs`), and while [`super::dead::DYING_MAX`] messages wait for their letters to be
//! written, delivery waits for the dead-letter task.
//!
//! Order of service: requeued messages first (their records are read again, see
//! [`Channel::redeliver`]), then the read-ahead, then a new read of the log from the cursor. Only
//! records the ack policy made visible are read; when more are appended but not yet visible the
//! dispatcher waits for the log's writer instead of polling.

use super::{Channel, Pending, Source, READ_AHEAD_BYTES_MAX, READ_AHEAD_RECORDS_MAX};
use super::{REREAD_BYTES_MAX, REREAD_RECORDS_MAX};
use crate::broker::message::MessageView;
use bytes::Bytes;
use ringsq_storage::{Error, Io, Position, Record};
use std::cmp::Reverse;
use std::rc::Rc;
use std::time::Duration;
use tokio::time::Instant;

/// What a turn of the dispatcher ended on.
enum Pumped {
    /// Nothing to do until woken (no ready client, or nothing to read).
    Idle,
    /// Records below this seq exist but are not visible yet: wait for the log.
    WaitLog(u64),
}

/// What a read of the log gave.
enum Fill {
    Read,
    Nothing,
    WaitLog(u64),
}

/// Errors after which a record can never be read: the message is dropped (and said so).
pub(super) fn is_permanent(e: &Error) -> bool {
    matches!(
        e,
        Error::Corrupt { .. } | Error::Retained { .. } | Error::BadPosition { .. }
    )
}

impl<I: Io> Channel<I> {
    pub(super) async fn dispatch_loop(self: Rc<Self>) {
        loop {
            if self.deleted.get() {
                return;
            }
            // A channel no one is ready to read from waits without calling the pump. The pump
            // runs boxed: the task's future stays small while it waits (an idle channel costs a
            // few bytes, not the whole read and delivery path).
            self.check_rollback();
            let pumped = if self.can_deliver() {
                Box::pin(self.pump()).await
            } else {
                Ok(Pumped::Idle)
            };
            match pumped {
                Ok(Pumped::Idle) => self.wake_dispatch.notified().await,
                Ok(Pumped::WaitLog(seq_end)) => {
                    let progress = tokio::select! {
                        biased;
                        () = self.wake_dispatch.notified() => true,
                        progress = self.store.wait_visible(self.cfg.visible, seq_end) => progress,
                    };
                    if !progress {
                        // The log stopped (an fsync or write error): what it holds past the
                        // visible end never becomes visible. Only a wake (a FIN, a requeue,
                        // the channel's deletion) can give the dispatcher other work.
                        self.wake_dispatch.notified().await;
                    }
                }
                Err(e) => {
                    tracing::error!("reading messages failed: {e}");
                    // Back off instead of spinning on a failing disk; a wake retries sooner.
                    let _ =
                        tokio::time::timeout(Duration::from_secs(1), self.wake_dispatch.notified())
                            .await;
                }
            }
        }
    }

    /// Whether a ready client could take a message now.
    fn can_deliver(&self) -> bool {
        !self.deleted.get() && !self.paused.get() && self.any_consumer_ready()
    }

    /// Hands out as much as ready clients can take.
    async fn pump(&self) -> Result<Pumped, Error> {
        let mut now = Instant::now();
        loop {
            if !self.can_deliver() {
                return Ok(Pumped::Idle);
            }
            if self.dying_full() {
                // The dead-letter task wakes us once it has written what died.
                return Ok(Pumped::Idle);
            }
            let requeued = self.state.borrow().requeued.front().copied();
            if let Some(p) = requeued {
                if let Some(seq_end) = self.redeliver(p).await? {
                    return Ok(Pumped::WaitLog(seq_end));
                }
                now = Instant::now();
                continue;
            }
            let next = self.state.borrow_mut().prefetch.pop_front();
            if let Some(record) = next {
                self.take_record(&record, now);
                continue;
            }
            match self.fill_prefetch().await? {
                Fill::Read => now = Instant::now(),
                Fill::Nothing => return Ok(Pumped::Idle),
                Fill::WaitLog(seq_end) => return Ok(Pumped::WaitLog(seq_end)),
            }
        }
    }

    /// After an ENOSPC roll-back of the topic's log, forgets what this channel took from the
    /// records that were rolled back (they were never written; new records take their seqs).
    fn check_rollback(&self) {
        let gen = self.store.rollback_gen();
        let mut st = self.state.borrow_mut();
        if st.rollback_gen == gen {
            return;
        }
        let since = st.rollback_gen;
        st.rollback_gen = gen;
        let Some(to) = self.store.rolled_back_since(since) else {
            return;
        };
        let (gone, clients) = st.forget_rolled_back(to);
        if to.seq < self.lwm_hint.get().seq {
            self.lwm_hint.set(to);
        }
        drop(st);
        for id in clients {
            if let Some(c) = self.consumer(id) {
                c.release();
            }
        }
        if gone > 0 {
            tracing::warn!(
                "{gone} message(s) from seq {} were not written (disk full) and are gone",
                to.seq
            );
        }
        self.mark_dirty();
    }

    /// Reads the next visible records from the store into the read-ahead.
    async fn fill_prefetch(&self) -> Result<Fill, Error> {
        let (mut from, skip_at) = self.pass_skipped();
        let end = self.store.end();
        if self.ephemeral && end.seq.saturating_sub(from.seq) > self.cfg.mem_queue_size.max(1) {
            // An ephemeral channel keeps at most --mem-queue-size messages; the rest is dropped.
            let dropped = end.seq - from.seq;
            self.counters
                .dropped_count
                .set(self.counters.dropped_count.get() + dropped);
            from = end;
            let mut st = self.state.borrow_mut();
            st.read_pos = end;
            st.taken_ahead = st.taken_ahead.split_off(&end.seq);
        }
        let first = self.store.first();
        if from.seq < first.seq {
            // Records went from under the cursor: only an ephemeral channel's (retention follows
            // the durable channels) — what it missed is dropped, as its overflow is.
            self.counters
                .dropped_count
                .set(self.counters.dropped_count.get() + (first.seq - from.seq));
            from = first;
            let mut st = self.state.borrow_mut();
            st.read_pos = first;
            st.taken_ahead = st.taken_ahead.split_off(&first.seq);
        }
        let visible = self.store.visible_end(self.cfg.visible).seq;
        let limit = self.readable_end_seq(visible).min(skip_at);
        if from.seq >= limit {
            let held = self.readable_end_seq(end.seq).min(skip_at);
            return Ok(if from.seq < held {
                Fill::WaitLog(from.seq + 1)
            } else {
                Fill::Nothing
            });
        }
        let max = usize::try_from(limit - from.seq)
            .map_or(READ_AHEAD_RECORDS_MAX, |n| n.min(READ_AHEAD_RECORDS_MAX));
        let records = match self.store.read(from, max, READ_AHEAD_BYTES_MAX).await {
            Ok(records) => records,
            Err(e @ Error::Corrupt { .. }) => return self.skip_damaged(from, &e).await,
            Err(e) => return Err(e),
        };
        let Some(last) = records.last() else {
            return Ok(Fill::Nothing);
        };
        let next = last.next_pos();
        let mut st = self.state.borrow_mut();
        if st.read_pos != from {
            // The cursor moved while we read (channel emptied): drop this read.
            return Ok(Fill::Read);
        }
        st.read_pos = next;
        st.prefetch.extend(records);
        Ok(Fill::Read)
    }

    /// Moves the cursor past damaged records at `from` (a record that fails its check in a
    /// segment): they cannot be delivered, and waiting would stop the channel for good. Every
    /// channel reading there does the same and says so; the bytes stay on disk.
    async fn skip_damaged(&self, from: Position, error: &Error) -> Result<Fill, Error> {
        let next = self.store.skip_damaged(from).await?;
        let mut st = self.state.borrow_mut();
        if st.read_pos != from {
            return Ok(Fill::Read);
        }
        let lost = next.seq.saturating_sub(from.seq);
        tracing::error!(
            "skipping {lost} message(s) from seq {} that cannot be read back: {error}",
            from.seq
        );
        st.read_pos = next;
        self.mark_dirty();
        Ok(if next == from {
            Fill::Nothing
        } else {
            Fill::Read
        })
    }

    /// Jumps over the emptied ranges the cursor has reached; returns the cursor and where the
    /// next emptied range starts (`u64::MAX` if none: reading must stop there).
    pub(super) fn pass_skipped(&self) -> (Position, u64) {
        let mut st = self.state.borrow_mut();
        while let Some(&(at, to)) = st.skip.front() {
            if st.read_pos.seq < at {
                return (st.read_pos, at);
            }
            if st.read_pos.seq < to.seq {
                st.read_pos = to;
                self.mark_dirty();
            }
            st.skip.pop_front();
        }
        (st.read_pos, u64::MAX)
    }

    /// Records `[from_seq, to)` of the topic's log, ahead of the cursor, are not for this
    /// channel: nsqd's topic empty while paused (what the topic held back goes, what the channel
    /// had stays), or another channel's messages taken over from Go nsqd. Persisted with the
    /// channel's state.
    pub fn skip_range(&self, from_seq: u64, to: Position) {
        {
            let mut st = self.state.borrow_mut();
            let at = st.skip.partition_point(|&(seq, _)| seq <= from_seq);
            st.skip.insert(at, (from_seq, to));
        }
        self.mark_dirty();
        self.pass_skipped();
        self.wake();
    }

    /// A record taken from the store: deliver it, defer it (DPUB not yet due), or pass over it
    /// (taken ahead at publish).
    fn take_record(&self, record: &Record, now: Instant) {
        self.mark_dirty();
        {
            let mut st = self.state.borrow_mut();
            if !st.taken_ahead.is_empty() && st.taken_ahead.remove(&record.pos.seq) {
                return;
            }
        }
        let msg = match MessageView::parse(&record.data) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(
                    seq = record.pos.seq,
                    "skipping a record that is not a message: {e}"
                );
                return;
            }
        };
        let p = Pending {
            source: Source::Topic,
            pos: record.pos,
            attempts: 0,
        };
        if msg.deliver_at_ns != 0 {
            let wall_ns = self.cfg.clock.now_ns();
            if msg.deliver_at_ns > wall_ns {
                let due = now + Duration::from_nanos(msg.deliver_at_ns - wall_ns);
                self.state.borrow_mut().defer(p, due, msg.deliver_at_ns);
                self.timer_wanted(due);
                return;
            }
        }
        self.deliver(p, &msg, &record.data, now);
    }

    /// Delivers the requeued message `p` (the head of the queue): its record is read again.
    /// Returns the seq to wait for when that record is not visible yet.
    async fn redeliver(&self, p: Pending) -> Result<Option<u64>, Error> {
        if p.source == Source::Topic && p.pos.seq >= self.store.visible_end(self.cfg.visible).seq {
            return Ok(Some(p.pos.seq + 1));
        }
        let epoch = self.state.borrow().epoch;
        let read = self.read_pending(p).await;
        let mut st = self.state.borrow_mut();
        if st.epoch != epoch || st.requeued.front().map(Pending::key) != Some(p.key()) {
            // The queue changed while we read (emptied, or the message was parked): look again.
            return Ok(None);
        }
        let record = match read {
            Ok(Some(record)) => record,
            Ok(None) => return Err(Error::Closed),
            Err(e) if is_permanent(&e) => {
                st.requeued.pop_front();
                drop(st);
                tracing::error!(
                    seq = p.pos.seq,
                    "dropping a requeued message whose record cannot be read back: {e}"
                );
                self.mark_dirty();
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        st.requeued.pop_front();
        drop(st);
        match MessageView::parse(&record.data) {
            Ok(msg) => self.deliver(p, &msg, &record.data, Instant::now()),
            Err(e) => {
                tracing::error!(
                    seq = p.pos.seq,
                    "dropping a requeued record that is not a message: {e}"
                );
            }
        }
        Ok(None)
    }

    /// The record of an outstanding message, read again: from the re-read window, else from its
    /// log (keeping the records that follow it in the window, for requeued neighbours).
    /// `Ok(None)` only when the park log cannot be opened.
    async fn read_pending(&self, p: Pending) -> Result<Option<Record>, Error> {
        let matches = |r: &Record| r.pos == p.pos;
        if p.source == Source::Park {
            let Some(log) = self.park_log().await else {
                return Ok(None);
            };
            let mut records = log.read(p.pos, 1, 1).await?;
            return match records.pop() {
                Some(r) if matches(&r) => Ok(Some(r)),
                _ => Err(Error::BadPosition {
                    seq: p.pos.seq,
                    offset: p.pos.offset,
                }),
            };
        }
        if let Some(r) = self.state.borrow().reread.iter().find(|r| matches(r)) {
            return Ok(Some(r.clone()));
        }
        let records = self
            .store
            .read(p.pos, REREAD_RECORDS_MAX, REREAD_BYTES_MAX)
            .await?;
        let found = records.first().filter(|r| matches(r)).cloned();
        self.state.borrow_mut().reread = records.into();
        found.map(Some).ok_or(Error::BadPosition {
            seq: p.pos.seq,
            offset: p.pos.offset,
        })
    }

    fn any_consumer_ready(&self) -> bool {
        self.state.borrow().consumers.iter().any(|c| c.is_ready())
    }

    /// Gives the message to the next ready consumer (round robin), or requeues it if none is.
    /// A message older than the channel's TTL goes to the dead letters instead (`data`: its
    /// record, kept for the letter).
    fn deliver(&self, mut p: Pending, msg: &MessageView<'_>, data: &Bytes, now: Instant) {
        let ttl_ns = self.ttl_ns.get();
        if ttl_ns != 0 && self.expired(msg.timestamp_ns, ttl_ns) {
            self.die(p, super::Reason::Expired, Some(data.clone()));
            return;
        }
        let mut st = self.state.borrow_mut();
        let n = st.consumers.len();
        let picked = (0..n)
            .map(|i| (st.next_consumer + i) % n)
            .find(|&i| st.consumers[i].is_ready());
        let Some(i) = picked else {
            st.requeue_front(p);
            return;
        };
        st.next_consumer = (i + 1) % n;
        let client = Rc::clone(&st.consumers[i]);
        let (sample_rate, msg_timeout) = (client.sample_rate(), client.msg_timeout());
        if sample_rate > 0 && rand::random::<u8>() % 100 > sample_rate {
            // nsqd drops a message a sampling client skips: it is finished for the channel.
            return;
        }
        p.attempts = p.attempts.saturating_add(1);
        let deadline = now + msg_timeout;
        st.in_flight_deadlines.push(Reverse((deadline, msg.id)));
        let replaced = st.in_flight.insert(
            msg.id,
            super::InFlight {
                pending: p,
                timestamp_ns: msg.timestamp_ns,
                client_id: client.id(),
                deadline,
                delivered_at: now,
            },
        );
        st.compact_in_flight_deadlines();
        drop(st);
        if let Some(old) = replaced {
            // Two records with one id (a Go import, or a parked copy): the older delivery's
            // client can no longer FIN it; it counts as finished for that client.
            if let Some(c) = self.consumer(old.client_id) {
                c.release();
            }
        }
        client.deliver(msg.timestamp_ns, p.attempts, &msg.id, msg.body);
        self.timer_wanted(deadline);
    }
}
