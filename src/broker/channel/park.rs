//! Parking: a message that would hold the topic's log back for long — deferred past the next
//! sync point, or delivered [`PARK_ATTEMPTS_MIN`] times or more (it may keep timing out) — is
//! copied into the channel's own park log, which is fsynced before the channel refers to the copy.
//! From then on the topic's segments can be reclaimed while the message waits. The park log keeps
//! only what some outstanding message still refers to.

use super::{Channel, Key, Source, State};
use crate::broker::message::StoredMessage;
use ringsq_storage::{Io, Log, LogConfig, Position};
use std::cmp::Reverse;
use std::time::Duration;

/// A message delivered this many times is parked (it may keep timing out for a long while).
const PARK_ATTEMPTS_MIN: u16 = 3;
/// A park log's segments: parked messages are few; small segments are reclaimed sooner.
const PARK_SEGMENT_BYTES_MAX: u64 = 8 << 20;
/// Parked messages are read again one at a time; the park log needs only a small read cache.
const PARK_CACHE_BYTES_MAX: usize = 1 << 20;

impl<I: Io> Channel<I> {
    /// The channel's park log, opened on first use.
    pub(super) async fn park_log(&self) -> Option<Log<I>> {
        match self.open_park_log().await {
            Ok(log) => log,
            Err(e) => {
                tracing::error!(topic = %self.topic_name, channel = %self.name, "opening the park log: {e}");
                None
            }
        }
    }

    /// The channel's park log, opened now if it is not yet (`None`: the channel has none).
    async fn open_park_log(&self) -> Result<Option<Log<I>>, ringsq_storage::Error> {
        if let Some(log) = self.park.borrow().clone() {
            return Ok(Some(log));
        }
        let Some(dir) = self.park_dir.clone() else {
            return Ok(None);
        };
        let config = LogConfig {
            segment_size_bytes_max: PARK_SEGMENT_BYTES_MAX,
            cache_bytes_max: PARK_CACHE_BYTES_MAX,
            ..self.cfg.park_log.clone()
        };
        let (log, report) = Log::open(self.io.clone(), &dir, config).await?;
        tracing::info!(topic = %self.topic_name, channel = %self.name, "park log: {report}");
        // Opened meanwhile by another task: keep the first.
        let mut park = self.park.borrow_mut();
        Ok(Some(park.get_or_insert(log).clone()))
    }

    /// Opens the park log if its directory exists (it is opened lazily, when a parked message
    /// is read: after a restart, a channel may refer to parked messages with its log closed).
    pub(super) async fn open_park_log_on_disk(&self) -> Result<(), ringsq_storage::Error> {
        let Some(dir) = self.park_dir.clone() else {
            return Ok(());
        };
        if self.park.borrow().is_none()
            && self
                .io
                .dir_exists(&dir)
                .await
                .map_err(|e| ringsq_storage::Error::io("stat", &dir, e))?
        {
            self.open_park_log().await?;
        }
        Ok(())
    }

    /// Copies every message that would hold the topic's log back for long — deferred beyond
    /// `horizon` from now, or delivered [`PARK_ATTEMPTS_MIN`] times or more — into the channel's
    /// park log, fsyncs it, and from then on refers to the copy. Then lets the park log drop
    /// what nobody needs.
    pub async fn park(&self, horizon: Duration) -> Result<(), ringsq_storage::Error> {
        if self.park_dir.is_none() {
            return Ok(());
        }
        // Not while dead letters are being requeued into the park log (their copies are not
        // outstanding yet: the floor below would drop them).
        let _one_at_a_time = self.park_lock.lock().await;
        let beyond_ns = self
            .cfg
            .clock
            .now_ns()
            .saturating_add(u64::try_from(horizon.as_nanos()).unwrap_or(u64::MAX));
        let picked = self.state.borrow().to_park(beyond_ns);
        let log = if picked.is_empty() {
            self.park.borrow().clone()
        } else {
            self.park_log().await
        };
        let Some(log) = log else {
            return Ok(());
        };
        let mut moved = Vec::with_capacity(picked.len());
        for (key, pos, deliver_at_ns) in picked {
            // The body is read back from the topic's log (outstanding messages keep none).
            let Some(msg) = self.read_topic_message(pos).await? else {
                continue;
            };
            let copy = StoredMessage {
                deliver_at_ns,
                ..msg
            };
            moved.push((key, log.append(copy.encode())?));
        }
        if !moved.is_empty() {
            log.sync().await?;
            let mut st = self.state.borrow_mut();
            for (old, pos) in moved {
                st.repoint(old, Source::Park, pos);
            }
            drop(st);
            self.mark_dirty();
        }
        let floor = self
            .state
            .borrow()
            .outstanding()
            .filter(|(p, _)| p.source == Source::Park)
            .map(|(p, _)| p.pos.seq)
            .min();
        log.retain_from(floor.unwrap_or(log.end().seq));
        Ok(())
    }

    /// The message of the topic's log at `pos`; `None` (logged) if it cannot be read back.
    async fn read_topic_message(
        &self,
        pos: Position,
    ) -> Result<Option<StoredMessage>, ringsq_storage::Error> {
        let records = match self.store.read(pos, 1, 1).await {
            Ok(records) => records,
            Err(e @ ringsq_storage::Error::Io { .. }) => return Err(e),
            Err(e) => {
                tracing::error!(topic = %self.topic_name, channel = %self.name, seq = pos.seq,
                    "cannot read back a message to park: {e}");
                return Ok(None);
            }
        };
        Ok(records
            .first()
            .filter(|r| r.pos == pos)
            .and_then(|r| StoredMessage::decode(&r.data).ok()))
    }

    /// The park log, for the owner to close or destroy with the channel.
    pub fn take_park_log(&self) -> Option<Log<I>> {
        self.park.borrow_mut().take()
    }

    pub fn park_dir(&self) -> Option<&std::path::Path> {
        self.park_dir.as_deref()
    }
}

impl State {
    /// Topic-log messages to park: (key, position, the deadline they keep). Not one the cursor
    /// has not reached (a DPUB taken ahead at publish): it holds nothing back yet, and its
    /// saved entry must keep pointing at its topic record, which tells a restart that the
    /// cursor passes over that record (a parked copy would be deferred twice). It is parked once
    /// the cursor is past it.
    fn to_park(&self, beyond_ns: u64) -> Vec<(Key, Position, u64)> {
        let cursor = self.cursor().seq;
        // Not the dying: their letters are about to be written (and would not be repointed).
        self.waiting()
            .filter(|(p, due_ns)| {
                p.source == Source::Topic
                    && p.pos.seq < cursor
                    && (*due_ns > beyond_ns || p.attempts >= PARK_ATTEMPTS_MIN)
            })
            .map(|(p, due_ns)| (p.key(), p.pos, due_ns))
            .collect()
    }

    /// An outstanding message's record now lives at `pos` in `source`'s log (a message finished
    /// meanwhile is left alone: its copy is garbage the park log reclaims). A taken-ahead record
    /// parked before the cursor got there stays in `taken_ahead`: the cursor still passes it.
    fn repoint(&mut self, old: Key, source: Source, pos: Position) {
        let key = (source, pos.seq);
        if let Some((mut p, due, due_ns)) = self.deferred.remove(&old) {
            (p.source, p.pos) = (source, pos);
            self.deferred_deadlines.push(Reverse((due, key)));
            self.deferred.insert(key, (p, due, due_ns));
        } else if let Some(f) = self.in_flight.values_mut().find(|f| f.pending.key() == old) {
            (f.pending.source, f.pending.pos) = (source, pos);
        } else if let Some(p) = self.requeued.iter_mut().find(|p| p.key() == old) {
            (p.source, p.pos) = (source, pos);
        }
    }
}
