//! The configuration of every part, built once from the options ([`Config::from`]): the
//! broker's, the connections', the shard count and the file descriptor budget. Nothing else
//! reads the options to configure a part, and no part's configuration is built from defaults.

use super::fds::Budget;
use crate::broker::{e2e::E2eConfig, message, BrokerConfig, Clock, TOPIC_CACHE_BYTES_MAX};
use crate::connection::ConnConfig;
use crate::options::{Options, TlsRequired};
use crate::protocol::limits::{CLIENT_TIMEOUT_MS, LINE_LEN_MAX_BYTES};
use crate::protocol::Limits;
use ringsq_storage::LogConfig;
use std::time::Duration;

/// Every part's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The options as given (the application's own parts read their addresses, peers and
    /// statsd settings from here).
    pub options: Options,
    /// How many shards run (`--shards`, or one per CPU; see [`Config::with_shards`]).
    pub shards: usize,
    /// How the descriptor limit is shared.
    pub budget: Budget,
    /// Each shard's broker (its share of the storage's file budget included).
    pub broker: BrokerConfig,
    /// Every protocol connection.
    pub connection: ConnConfig,
}

impl From<&Options> for Config {
    /// From the options and the process's descriptor limit as it is now (raise it first).
    fn from(o: &Options) -> Self {
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        Self::new(o, crate::shard::count(o.shards), Budget::for_limit(soft))
    }
}

impl Config {
    pub fn new(o: &Options, shards: usize, budget: Budget) -> Self {
        let shards = shards.max(1);
        Self {
            options: o.clone(),
            shards,
            budget,
            broker: broker(o, (budget.files_open_max / shards).max(1)),
            connection: ConnConfig {
                limits: limits(o),
                tls_required: o.tls_required != TlsRequired::NotRequired,
                snappy: o.snappy,
                deflate: o.deflate,
            },
        }
    }

    /// The same configuration for another number of shards (one, where connections cannot
    /// move between threads).
    #[must_use]
    pub fn with_shards(&self, shards: usize) -> Self {
        Self::new(&self.options, shards, self.budget)
    }
}

fn broker(o: &Options, files_open_max: usize) -> BrokerConfig {
    let record_size_max = o
        .max_msg_size
        .saturating_add(u64::try_from(message::MESSAGE_HEADER_BYTES).unwrap_or(u64::MAX));
    BrokerConfig {
        data_path: Some(o.data_path.clone()),
        log: LogConfig {
            segment_size_bytes_max: o.max_bytes_per_file,
            sync_every_records: o.sync_every,
            sync_timeout: o.sync_timeout,
            record_size_max: u32::try_from(record_size_max).unwrap_or(u32::MAX),
            cache_bytes_max: TOPIC_CACHE_BYTES_MAX,
        },
        mem_queue_size: o.mem_queue_size,
        ack_after_sync: o.ack_after_sync,
        node_id: o.node_id,
        max_msg_timeout: o.max_msg_timeout,
        max_channel_consumers: o.max_channel_consumers,
        sync_timeout: o.sync_timeout,
        retention: o.retention,
        max_topic_bytes: o.max_topic_bytes,
        max_attempts: o.max_attempts,
        message_ttl: o.message_ttl,
        e2e: E2eConfig {
            percentiles: o.e2e_processing_latency_percentiles.clone(),
            window: o.e2e_processing_latency_window_time,
        },
        files_open_max,
        clock: Clock::System,
    }
}

/// nsqd's limits and per-client defaults, as the protocol decoder and IDENTIFY want them.
pub fn limits(o: &Options) -> Limits {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Limits {
        max_msg_size: o.max_msg_size,
        max_body_size: o.max_body_size,
        max_rdy_count: o.max_rdy_count,
        max_req_timeout_ms: ms(o.max_req_timeout),
        max_msg_timeout_ms: ms(o.max_msg_timeout),
        max_heartbeat_interval_ms: ms(o.max_heartbeat_interval),
        max_output_buffer_size: o.max_output_buffer_size,
        min_output_buffer_timeout_ms: ms(o.min_output_buffer_timeout),
        max_output_buffer_timeout_ms: ms(o.max_output_buffer_timeout),
        max_deflate_level: o.max_deflate_level,
        msg_timeout_ms: ms(o.msg_timeout),
        // nsqd: the bound a client's output buffering gets when it sets none.
        output_buffer_timeout_ms: ms(o.output_buffer_timeout),
        client_timeout_ms: CLIENT_TIMEOUT_MS,
        line_len_max: LINE_LEN_MAX_BYTES,
    }
}
