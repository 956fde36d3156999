//! Message IDs, exactly as Go nsqd makes them: a 64-bit snowflake per topic,
//! `(ts_ms' - epoch) << 22 | node_id << 12 | sequence`, sent as 16 lowercase hex chars.
//!
//! `ts_ms'` is `now_ns >> 20` (≈1.05 ms ticks). Go sleeps 1 ms when the 4096 ids of a tick are
//! used up or the clock steps back; we run on one thread and must not sleep, so the factory
//! instead borrows the next tick (the id stays unique and increasing, and the borrowed time is
//! bounded by throughput: 4096 ids per tick per topic ≈ 3.9 M msgs/s before it runs ahead).

use crate::protocol::MessageId;

const NODE_ID_BITS: u32 = 10;
const SEQUENCE_BITS: u32 = 12;
const SEQUENCE_MASK: u64 = (1 << SEQUENCE_BITS) - 1;
/// Twitter's snowflake epoch in `ns >> 20` units, as nsqd uses it.
const EPOCH_TICKS: u64 = 1_288_834_974_288;
/// [`GuidFactory::resume_after`] starts this many ticks (≈1 s) after the newest write: ids
/// made faster than 4096 per tick run ahead of the clock by up to that.
const RESUME_MARGIN_TICKS: u64 = 1024;
/// nsqd's `--node-id` range is `[0, 1024)`.
pub const NODE_ID_MAX: u16 = (1 << NODE_ID_BITS) - 1;

#[derive(Debug)]
pub struct GuidFactory {
    node_id: u64,
    last_tick: u64,
    sequence: u64,
}

impl GuidFactory {
    pub fn new(node_id: u16) -> Self {
        assert!(node_id <= NODE_ID_MAX, "node id validated by options");
        Self {
            node_id: u64::from(node_id),
            last_tick: 0,
            sequence: 0,
        }
    }

    /// Makes every later id larger than any id made up to wall-clock time `newest_ns` (a
    /// topic's log was last written then), with a margin for ids that ran ahead of the clock
    /// under load: ids stay unique across a restart even if the clock went back meanwhile (two
    /// messages with one id would be one message to a channel's in-flight table, and FIN).
    pub fn resume_after(&mut self, newest_ns: u64) {
        let tick = (newest_ns >> 20).saturating_add(RESUME_MARGIN_TICKS);
        if tick > self.last_tick {
            self.last_tick = tick;
            self.sequence = 0;
        }
    }

    /// The next id, at wall-clock time `now_ns` (ns since the Unix epoch).
    pub fn next_id(&mut self, now_ns: u64) -> MessageId {
        let now_tick = now_ns >> 20;
        if now_tick > self.last_tick {
            self.last_tick = now_tick;
            self.sequence = 0;
        } else {
            // Same tick, or the clock went back: continue from the last tick we used.
            self.sequence = (self.sequence + 1) & SEQUENCE_MASK;
            if self.sequence == 0 {
                self.last_tick += 1;
            }
        }
        let ticks = self.last_tick.saturating_sub(EPOCH_TICKS);
        let raw = (ticks << (SEQUENCE_BITS + NODE_ID_BITS))
            | (self.node_id << SEQUENCE_BITS)
            | self.sequence;
        MessageId::from_u64(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_unique_when_the_clock_went_back() {
        let now = crate::broker::Clock::System.now_ns();
        let mut before = GuidFactory::new(1);
        let old: Vec<_> = (0..5000).map(|_| before.next_id(now)).collect();
        // A restart with the clock a minute behind the newest write.
        let mut after = GuidFactory::new(1);
        after.resume_after(now);
        let new = after.next_id(now - 60_000_000_000);
        assert!(old.iter().all(|id| id.to_string() < new.to_string()));
    }

    #[test]
    fn ids_increase_and_carry_node_id() {
        let mut f = GuidFactory::new(513);
        let mut last = String::new();
        for _ in 0..20_000 {
            let id = f.next_id(crate::broker::Clock::System.now_ns());
            let hex = id.to_string();
            assert_eq!(hex.len(), 16);
            assert!(hex > last, "{hex} <= {last}");
            let raw = u64::from_str_radix(&hex, 16).unwrap();
            assert_eq!((raw >> SEQUENCE_BITS) & u64::from(NODE_ID_MAX), 513);
            last = hex;
        }
    }
}
