//! Which topics a broker holds: topics are spread over the shards by name, and each shard's
//! broker holds only its own ([`Place::owns`]). A pure function of the name and the number of
//! shards, so every thread finds a topic's owner without asking anyone.

/// The shard that owns topic `name` among `shards` (CRC-32 of the name's bytes, mod `shards`).
pub fn owner(name: &str, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    let hash = crc32fast::hash(name.as_bytes());
    usize::try_from(hash).map_or(0, |h| h % shards)
}

/// Where a shard sits among the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub index: usize,
    pub count: usize,
}

impl Place {
    /// The only shard (`--shards 1`, unit tests).
    pub const SOLE: Self = Self { index: 0, count: 1 };

    /// Whether this shard owns topic `name`.
    pub fn owns(&self, name: &str) -> bool {
        owner(name, self.count) == self.index
    }

    /// The shard that owns topic `name`, if it is not this one.
    pub fn remote_owner(&self, name: &str) -> Option<usize> {
        let o = owner(name, self.count);
        (o != self.index).then_some(o)
    }

    /// Shard 0 holds the control plane.
    pub fn is_first(&self) -> bool {
        self.index == 0
    }
}
