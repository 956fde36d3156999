//! The `/stats` model: one snapshot of topics, channels and clients, shaped exactly as nsqd
//! 1.3.0 marshals it (`nsqd/stats.go`), shared by `/stats` (JSON and text), `/metrics` and statsd.
//!
//! Field order is nsqd's; `Option<Vec<_>>` fields are `null` where Go's nil slices are:
//! `clients` with `include_clients=false`, `producers` when there are none or clients are
//! excluded, `topics` when a `topic=` filter names no topic. Topics and channels are sorted by
//! name. Figures are read without holding any borrow across an `.await` (this is all sync).

use crate::broker::e2e::E2eLatency;
pub use crate::broker::e2e::{LatencyStats, Percentile};
use crate::broker::topic::Topic;
use crate::connection::client::{Client, Codec};
use crate::connection::Frontend;
use crate::shard::Shard;
use serde::Serialize;
use std::rc::Rc;

/// What nsqd reports as its version everywhere (`/info`, `/stats`, lookupd IDENTIFY).
pub const NSQD_VERSION: &str = "1.3.0";
/// Clients report the protocol they speak.
const CLIENT_PROTOCOL_VERSION: &str = "V2";

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub topics: Option<Vec<TopicStats>>,
    pub producers: Option<Vec<ClientStats>>,
}

impl LatencyStats {
    /// Go's `quantile.Result.String()`: each value as `NanoSecondToHuman`, joined by `, `.
    pub fn human(&self) -> String {
        let parts: Vec<String> = self
            .percentiles
            .iter()
            .flatten()
            .map(|p| nanoseconds_to_human(p.value))
            .collect();
        parts.join(", ")
    }
}

/// Go's `stringy.NanoSecondToHuman`.
pub fn nanoseconds_to_human(v: f64) -> String {
    let (v, suffix) = if v > 1e9 {
        (v / 1e9, "s")
    } else if v > 1e6 {
        (v / 1e6, "ms")
    } else if v > 1e3 {
        (v / 1e3, "us")
    } else {
        (v, "ns")
    };
    format!("{v:.1}{suffix}")
}

#[derive(Debug, Clone, Serialize)]
pub struct TopicStats {
    pub topic_name: String,
    pub channels: Vec<ChannelStats>,
    pub depth: u64,
    pub backend_depth: u64,
    pub message_count: u64,
    pub message_bytes: u64,
    pub paused: bool,
    pub e2e_processing_latency: LatencyStats,
    /// ringsq: bytes of the topic's log on disk (segment files).
    pub disk_bytes: u64,
    /// ringsq: messages the log holds (what `--retention` keeps included).
    pub retained_messages: u64,
    /// ringsq: Unix seconds when the oldest message the log holds was published (0: none).
    pub oldest_retained_ts: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChannelStats {
    pub channel_name: String,
    pub depth: u64,
    pub backend_depth: u64,
    pub in_flight_count: u64,
    pub deferred_count: u64,
    pub message_count: u64,
    pub requeue_count: u64,
    pub timeout_count: u64,
    pub client_count: u64,
    pub clients: Option<Vec<ClientStats>>,
    pub paused: bool,
    pub e2e_processing_latency: LatencyStats,
    /// ringsq: messages from the oldest one this channel has not finished to the topic's end.
    pub lag_messages: u64,
    /// ringsq: seconds since the oldest message this channel has not finished was published
    /// (0 when it has finished everything; refreshed at each sync point).
    pub lag_seconds: u64,
    /// ringsq: messages in the channel's dead letters (`GET /channel/dead`; an ephemeral
    /// channel keeps none: those it dropped).
    pub dead_count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PubCount {
    pub topic: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
#[allow(clippy::struct_excessive_bools)] // nsqd's fields, one bool each
pub struct ClientStats {
    pub client_id: String,
    pub hostname: String,
    pub version: &'static str,
    pub remote_address: String,
    pub state: i32,
    pub ready_count: u64,
    pub in_flight_count: u64,
    pub message_count: u64,
    pub finish_count: u64,
    pub requeue_count: u64,
    pub connect_ts: u64,
    pub sample_rate: i32,
    pub deflate: bool,
    pub snappy: bool,
    pub user_agent: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub authed: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth_identity: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth_identity_url: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pub_counts: Vec<PubCount>,
    pub tls: bool,
    pub tls_cipher_suite: String,
    pub tls_version: String,
    pub tls_negotiated_protocol: String,
    pub tls_negotiated_protocol_is_mutual: bool,
}

/// Which part of the picture to take (`/stats?topic=&channel=&include_clients=`).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub topic: String,
    pub channel: String,
    pub include_clients: bool,
}

/// This shard's part of nsqd's `GetStats` topics: every topic it owns, or the one a `topic=`
/// filter names (`None` when it has no such topic). [`crate::shard::gather::stats`] merges
/// the parts of every shard.
pub fn topics_local(shard: &Shard, filter: &Filter) -> Option<Vec<TopicStats>> {
    let broker = &shard.broker;
    let topics: Vec<Rc<Topic>> = if filter.topic.is_empty() {
        broker.topics()
    } else {
        vec![broker.get_topic(&filter.topic)?]
    };
    Some(
        topics
            .iter()
            .filter_map(|t| topic_stats(&shard.frontend, t, filter))
            .collect(),
    )
}

/// This shard's producers (clients that published), with their client ids (nsqd lists them
/// in id order).
pub fn producers_local(shard: &Shard, topic: &str) -> Vec<(u64, ClientStats)> {
    shard
        .frontend
        .clients()
        .iter()
        .filter(|c| !c.pub_counts.borrow().is_empty())
        .map(|c| (c.id, client_stats(c, topic)))
        .collect()
}

fn topic_stats(frontend: &Frontend, topic: &Topic, filter: &Filter) -> Option<TopicStats> {
    let channels = if filter.channel.is_empty() {
        topic.channels()
    } else {
        vec![topic.get_channel(&filter.channel)?]
    };
    let channels = channels
        .iter()
        .map(|c| {
            let consumers = c.consumer_ids();
            let clients = filter.include_clients.then(|| {
                let connected = frontend.clients.borrow();
                consumers
                    .iter()
                    .filter_map(|id| connected.get(id))
                    .map(|cl| client_stats(cl, &filter.topic))
                    .collect()
            });
            let depth = c.depth();
            let (lag_messages, lag_seconds) = topic.channel_lag(c);
            ChannelStats {
                channel_name: c.name.clone(),
                depth,
                backend_depth: if c.ephemeral || topic.log().is_none() {
                    0
                } else {
                    depth
                },
                in_flight_count: c.in_flight_count() as u64,
                deferred_count: c.deferred_count() as u64,
                message_count: c.counters.message_count.get(),
                requeue_count: c.counters.requeue_count.get(),
                timeout_count: c.counters.timeout_count.get(),
                client_count: consumers.len() as u64,
                clients,
                paused: c.paused.get(),
                e2e_processing_latency: c.e2e.stats(),
                lag_messages,
                lag_seconds,
                dead_count: c.dead_count(),
            }
        })
        .collect();
    let depth = topic.depth();
    Some(TopicStats {
        topic_name: topic.name.clone(),
        channels,
        depth,
        backend_depth: if topic.log().is_some() { depth } else { 0 },
        message_count: topic.message_count(),
        message_bytes: topic.message_bytes(),
        paused: topic.paused.get(),
        // nsqd's AggregateChannelE2eProcessingLatency: over every channel, filtered or not.
        e2e_processing_latency: E2eLatency::aggregate(topic.channels().iter().map(|c| &c.e2e)),
        disk_bytes: topic.log().map_or(0, |l| l.stats().bytes_on_disk),
        retained_messages: topic.store().end().seq - topic.store().first().seq,
        oldest_retained_ts: topic.oldest_retained_s(),
    })
}

/// nsqd's `ClientV2.Stats(topic)`: one topic's publish count, `topic`'s when a filter names
/// one. nsqd 1.3.0's loop `break`s after the first entry it keeps (fixed only in the unmerged
/// PR #1497), so a producer of several topics shows one of them; Go's is whichever its map
/// yields first, ours the first topic published to.
pub fn client_stats(c: &Client, topic: &str) -> ClientStats {
    let settings = c.settings.borrow();
    let tls = c.tls.borrow();
    let auth = c.auth.borrow();
    let pub_counts = c
        .pub_counts
        .borrow()
        .iter()
        .filter(|(t, _)| topic.is_empty() || t == topic)
        .take(1)
        .map(|(t, n)| PubCount {
            topic: t.clone(),
            count: *n,
        })
        .collect();
    ClientStats {
        client_id: settings.client_id.clone(),
        hostname: settings.hostname.clone(),
        version: CLIENT_PROTOCOL_VERSION,
        remote_address: c.remote.to_string(),
        state: c.state.get().nsqd_number(),
        ready_count: c.ready_count.get(),
        in_flight_count: c.in_flight.get(),
        message_count: c.message_count.get(),
        finish_count: c.finish_count.get(),
        requeue_count: c.requeue_count.get(),
        connect_ts: c.connected_at_unix_s,
        sample_rate: i32::from(settings.sample_rate),
        deflate: matches!(c.codec.get(), Some(Codec::Deflate { .. })),
        snappy: c.codec.get() == Some(Codec::Snappy),
        user_agent: settings.user_agent.clone(),
        authed: auth.is_some(),
        auth_identity: auth
            .as_ref()
            .map(|a| a.identity.clone())
            .unwrap_or_default(),
        auth_identity_url: auth.as_ref().map(|a| a.url.clone()).unwrap_or_default(),
        pub_counts,
        tls: tls.is_some(),
        tls_cipher_suite: tls
            .as_ref()
            .map(|t| t.cipher_suite.clone())
            .unwrap_or_default(),
        tls_version: tls.as_ref().map(|t| t.version.clone()).unwrap_or_default(),
        tls_negotiated_protocol: tls
            .as_ref()
            .map(|t| t.negotiated_protocol.clone())
            .unwrap_or_default(),
        // Go: "Deprecated: this value is always true."
        tls_negotiated_protocol_is_mutual: tls.is_some(),
    }
}

/// Go's `memStats`. ringsq has no garbage collector: GC figures are 0; heap figures come from
/// the process's resident and virtual sizes (`/proc/self/statm`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct MemStats {
    pub heap_objects: u64,
    pub heap_idle_bytes: u64,
    pub heap_in_use_bytes: u64,
    pub heap_released_bytes: u64,
    pub gc_pause_usec_100: u64,
    pub gc_pause_usec_99: u64,
    pub gc_pause_usec_95: u64,
    pub next_gc_bytes: u64,
    pub gc_total_runs: u32,
}

/// Bytes in a page, as `/proc/self/statm` counts them (every Linux target ringsq runs on).
const PAGE_BYTES: u64 = 4096;

pub fn mem_stats() -> MemStats {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let mut fields = statm
        .split_whitespace()
        .map(|f| f.parse::<u64>().unwrap_or(0));
    let _size = fields.next().unwrap_or(0);
    let resident = fields.next().unwrap_or(0);
    MemStats {
        heap_in_use_bytes: resident.saturating_mul(PAGE_BYTES),
        ..MemStats::default()
    }
}
