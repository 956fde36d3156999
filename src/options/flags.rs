//! The flag table: every nsqd 1.3.0 flag (plus ringsq's own: `--ack-after-sync`, `--retention`,
//! `--max-topic-bytes`, `--max-attempts`, `--message-ttl`, `--shards`, `--log-format`), written
//! once.
//!
//! Each row gives the flag's name (verbatim from nsqd's `apps/nsqd/options.go`), its config
//! file key (go-options' rule: the flag name with `_` for `-`, unless nsqd's `cfg:` tag
//! overrides it), how its value is typed and stored, the default shown in `--help`, and
//! nsqd's usage string. The command-line scanner, the config reader and `--help` all read
//! this one table, so a flag cannot exist in one and be missing from another.
//!
//! Invariant (tested): applying each row's shown default to `Options::default()` changes
//! nothing, so `--help` never advertises a default the program does not use.

use std::time::Duration;

use super::value::{in_range, non_negative};
use super::{LogFormat, LogLevel, Options, TlsRequired};

/// How a flag's value is typed, and where it is stored.
#[derive(Clone, Copy)]
pub(super) enum Setter {
    /// A Go `flag.Bool`: never takes the next argument as its value.
    Bool(fn(&mut Options, bool)),
    /// A Go `flag.Int`/`flag.Int64`; the function checks the range and stores it.
    Int(fn(&mut Options, i64) -> Result<(), String>),
    /// A Go `flag.String`.
    Str(fn(&mut Options, String)),
    /// A Go `flag.Duration` (never negative here).
    Duration(fn(&mut Options, Duration)),
    /// nsqd's `app.StringArray`: repeatable; the field to append to.
    StrList(fn(&mut Options) -> &mut Vec<String>),
    /// nsqd's `app.FloatArray`: repeatable and comma-separated; the field to append to.
    FloatList(fn(&mut Options) -> &mut Vec<f64>),
    /// nsqd's `lg.LogLevel`.
    LogLevel(fn(&mut Options, LogLevel)),
    /// ringsq's `--log-format`.
    LogFormat(fn(&mut Options, LogFormat)),
    /// nsqd's `tlsRequiredOption`: a bool-style flag that also takes `tcp-https`.
    TlsRequired(fn(&mut Options, TlsRequired)),
    /// nsqd's `tlsMinVersionOption`.
    TlsMinVersion(fn(&mut Options, u16)),
    /// `--version`: a bool read by `parse` itself.
    Version,
    /// `--config`: a path read by `parse` itself.
    Config,
    /// `--worker-id`: deprecated bool, accepted and ignored as nsqd does.
    WorkerId,
}

impl Setter {
    /// Go's `IsBoolFlag`: `--flag` alone means true and the next argument is not consumed.
    pub(super) fn is_bool(&self) -> bool {
        matches!(
            self,
            Self::Bool(_) | Self::TlsRequired(_) | Self::Version | Self::WorkerId
        )
    }

    /// The type word Go's usage output prints after the flag name.
    pub(super) fn type_word(&self) -> &'static str {
        match self {
            Self::Bool(_) | Self::Version | Self::WorkerId => "",
            Self::Int(_) => "int",
            Self::Str(_) | Self::Config => "string",
            Self::Duration(_) => "duration",
            Self::StrList(_)
            | Self::FloatList(_)
            | Self::LogLevel(_)
            | Self::LogFormat(_)
            | Self::TlsRequired(_)
            | Self::TlsMinVersion(_) => "value",
        }
    }
}

/// The config file key of a flag.
#[derive(Debug, Clone, Copy)]
pub(super) enum ConfigKey {
    /// The flag name with `_` for `-`.
    Underscored,
    /// nsqd's `cfg:` struct tag names it differently.
    Named(&'static str),
    /// No config key (nsqd has no options field for it).
    NotInConfig,
}

/// The default `--help` shows for a flag.
#[derive(Debug, Clone, Copy)]
pub(super) enum Shown {
    /// Go's zero value (empty, 0, false): no "(default …)" suffix, as Go prints it.
    Zero,
    /// A literal default, in the flag's own syntax.
    Value(&'static str),
    /// The OS hostname, found at run time.
    Hostname,
    /// The hash of the hostname, found at run time.
    NodeId,
}

/// One flag.
#[derive(Clone, Copy)]
pub(super) struct FlagSpec {
    pub name: &'static str,
    pub config_key: ConfigKey,
    pub setter: Setter,
    pub shown: Shown,
    pub help: &'static str,
}

impl FlagSpec {
    /// The config file key for this flag, if it has one.
    pub(super) fn config_key(&self) -> Option<String> {
        match self.config_key {
            ConfigKey::Underscored => Some(self.name.replace('-', "_")),
            ConfigKey::Named(key) => Some(key.to_owned()),
            ConfigKey::NotInConfig => None,
        }
    }
}

impl std::fmt::Debug for FlagSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlagSpec")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The flag named `name` (without dashes).
pub(super) fn lookup(name: &str) -> Option<&'static FlagSpec> {
    FLAGS.iter().find(|f| f.name == name)
}

/// The flag whose config key is `key`.
pub(super) fn lookup_config_key(key: &str) -> Option<&'static FlagSpec> {
    FLAGS
        .iter()
        .find(|f| f.config_key().as_deref() == Some(key))
}

const fn row(name: &'static str, setter: Setter, shown: Shown, help: &'static str) -> FlagSpec {
    FlagSpec {
        name,
        config_key: ConfigKey::Underscored,
        setter,
        shown,
        help,
    }
}

const fn row_keyed(
    name: &'static str,
    key: ConfigKey,
    setter: Setter,
    shown: Shown,
    help: &'static str,
) -> FlagSpec {
    FlagSpec {
        name,
        config_key: key,
        setter,
        shown,
        help,
    }
}

/// Every flag, in nsqd's order (`--help` sorts them, as Go does).
#[rustfmt::skip] // one row per flag reads as a table; rustfmt would spread each over 6 lines
pub(super) static FLAGS: &[FlagSpec] = &[
    // basic options
    row_keyed("version", ConfigKey::NotInConfig, Setter::Version, Shown::Zero, "print version string"),
    row_keyed("config", ConfigKey::NotInConfig, Setter::Config, Shown::Zero, "path to config file"),
    row("log-level", Setter::LogLevel(|o, v| o.log_level = v), Shown::Value("info"),
        "set log verbosity: debug, info, warn, error, or fatal"),
    row("log-prefix", Setter::Str(|o, v| o.log_prefix = v), Shown::Value("[nsqd] "), "log message prefix"),
    // nsqd 1.3.0's Options struct has no Verbose field, so a `verbose` config key is ignored.
    row_keyed("verbose", ConfigKey::NotInConfig, Setter::Bool(|o, v| o.verbose = v), Shown::Zero,
        "[deprecated] has no effect, use --log-level"),
    row_keyed("node-id", ConfigKey::Named("id"), Setter::Int(|o, v| {
            o.node_id = in_range(v, 0, 1023).map_err(|_| "--node-id must be [0,1024)".to_owned())?;
            Ok(())
        }), Shown::NodeId,
        "unique part for message IDs, (int) in range [0,1024) (default is hash of hostname)"),
    row_keyed("worker-id", ConfigKey::NotInConfig, Setter::WorkerId, Shown::Zero, "[deprecated] use --node-id"),
    row("https-address", Setter::Str(|o, v| o.https_address = v), Shown::Value("0.0.0.0:4152"),
        "<addr>:<port> to listen on for HTTPS clients"),
    row("http-address", Setter::Str(|o, v| o.http_address = v), Shown::Value("0.0.0.0:4151"),
        "<addr>:<port> to listen on for HTTP clients"),
    row("tcp-address", Setter::Str(|o, v| o.tcp_address = v), Shown::Value("0.0.0.0:4150"),
        "<addr>:<port> to listen on for TCP clients"),
    row_keyed("auth-http-address", ConfigKey::Named("auth_http_addresses"),
        Setter::StrList(|o| &mut o.auth_http_addresses), Shown::Zero,
        "<addr>:<port> or a full url to query auth server (may be given multiple times)"),
    row("broadcast-address", Setter::Str(|o, v| o.broadcast_address = v), Shown::Hostname,
        "address that will be registered with lookupd (defaults to the OS hostname)"),
    row("broadcast-tcp-port", Setter::Int(|o, v| { o.broadcast_tcp_port = in_range(v, 0, 65535)?; Ok(()) }),
        Shown::Zero,
        "TCP port that will be registered with lookupd (defaults to the TCP port that this nsqd is listening on)"),
    row("broadcast-http-port", Setter::Int(|o, v| { o.broadcast_http_port = in_range(v, 0, 65535)?; Ok(()) }),
        Shown::Zero,
        "HTTP port that will be registered with lookupd (defaults to the HTTP port that this nsqd is listening on)"),
    row_keyed("lookupd-tcp-address", ConfigKey::Named("nsqlookupd_tcp_addresses"),
        Setter::StrList(|o| &mut o.lookupd_tcp_addresses), Shown::Zero,
        "lookupd TCP address (may be given multiple times)"),
    row("http-client-connect-timeout", Setter::Duration(|o, v| o.http_client_connect_timeout = v),
        Shown::Value("2s"), "timeout for HTTP connect"),
    row("http-client-request-timeout", Setter::Duration(|o, v| o.http_client_request_timeout = v),
        Shown::Value("5s"), "timeout for HTTP request"),
    // diskqueue options
    row("data-path", Setter::Str(|o, v| o.data_path = v.into()), Shown::Zero, "path to store disk-backed messages"),
    row("mem-queue-size", Setter::Int(|o, v| { o.mem_queue_size = non_negative(v)?; Ok(()) }),
        Shown::Value("10000"), "number of messages to keep in memory (per topic/channel)"),
    row("max-bytes-per-file", Setter::Int(|o, v| { o.max_bytes_per_file = non_negative(v)?; Ok(()) }),
        Shown::Value("104857600"), "number of bytes per diskqueue file before rolling"),
    row("sync-every", Setter::Int(|o, v| { o.sync_every = non_negative(v)?; Ok(()) }),
        Shown::Value("2500"), "number of messages per diskqueue fsync"),
    row("sync-timeout", Setter::Duration(|o, v| o.sync_timeout = v), Shown::Value("2s"),
        "duration of time per diskqueue fsync"),
    row("queue-scan-worker-pool-max",
        Setter::Int(|o, v| { o.queue_scan_worker_pool_max = non_negative(v)?; Ok(()) }), Shown::Value("4"),
        "max concurrency for checking in-flight and deferred message timeouts"),
    row("queue-scan-selection-count",
        Setter::Int(|o, v| { o.queue_scan_selection_count = non_negative(v)?; Ok(()) }), Shown::Value("20"),
        "number of channels to check per cycle (every 100ms) for in-flight and deferred timeouts"),
    // msg and command options
    row("msg-timeout", Setter::Duration(|o, v| o.msg_timeout = v), Shown::Value("1m0s"),
        "default duration to wait before auto-requeing a message"),
    row("max-msg-timeout", Setter::Duration(|o, v| o.max_msg_timeout = v), Shown::Value("15m0s"),
        "maximum duration before a message will timeout"),
    row("max-msg-size", Setter::Int(|o, v| { o.max_msg_size = non_negative(v)?; Ok(()) }),
        Shown::Value("1048576"), "maximum size of a single message in bytes"),
    row("max-req-timeout", Setter::Duration(|o, v| o.max_req_timeout = v), Shown::Value("1h0m0s"),
        "maximum requeuing timeout for a message"),
    row("max-body-size", Setter::Int(|o, v| { o.max_body_size = non_negative(v)?; Ok(()) }),
        Shown::Value("5242880"), "maximum size of a single command body"),
    // client overridable configuration options
    row("max-heartbeat-interval", Setter::Duration(|o, v| o.max_heartbeat_interval = v), Shown::Value("1m0s"),
        "maximum client configurable duration of time between client heartbeats"),
    row("max-rdy-count", Setter::Int(|o, v| { o.max_rdy_count = non_negative(v)?; Ok(()) }),
        Shown::Value("2500"), "maximum RDY count for a client"),
    row("max-output-buffer-size", Setter::Int(|o, v| { o.max_output_buffer_size = non_negative(v)?; Ok(()) }),
        Shown::Value("65536"), "maximum client configurable size (in bytes) for a client output buffer"),
    row("max-output-buffer-timeout", Setter::Duration(|o, v| o.max_output_buffer_timeout = v),
        Shown::Value("30s"), "maximum client configurable duration of time between flushing to a client"),
    row("min-output-buffer-timeout", Setter::Duration(|o, v| o.min_output_buffer_timeout = v),
        Shown::Value("25ms"), "minimum client configurable duration of time between flushing to a client"),
    row("output-buffer-timeout", Setter::Duration(|o, v| o.output_buffer_timeout = v),
        Shown::Value("250ms"), "default duration of time between flushing data to clients"),
    row("max-channel-consumers", Setter::Int(|o, v| { o.max_channel_consumers = non_negative(v)?; Ok(()) }),
        Shown::Zero,
        "maximum channel consumer connection count per nsqd instance (default 0, i.e., unlimited)"),
    // statsd integration options
    row("statsd-address", Setter::Str(|o, v| o.statsd_address = v), Shown::Zero,
        "UDP <addr>:<port> of a statsd daemon for pushing stats"),
    row("statsd-interval", Setter::Duration(|o, v| o.statsd_interval = v), Shown::Value("1m0s"),
        "duration between pushing to statsd"),
    row("statsd-mem-stats", Setter::Bool(|o, v| o.statsd_mem_stats = v), Shown::Value("true"),
        "toggle sending memory and GC stats to statsd"),
    row("statsd-prefix", Setter::Str(|o, v| o.statsd_prefix = v), Shown::Value("nsq.%s"),
        "prefix used for keys sent to statsd (%s for host replacement)"),
    row("statsd-udp-packet-size", Setter::Int(|o, v| { o.statsd_udp_packet_size = non_negative(v)?; Ok(()) }),
        Shown::Value("508"), "the size in bytes of statsd UDP packets"),
    row("statsd-exclude-ephemeral", Setter::Bool(|o, v| o.statsd_exclude_ephemeral = v), Shown::Zero,
        "Skip ephemeral topics and channels when sending stats to statsd"),
    // end to end percentile flags
    row_keyed("e2e-processing-latency-percentile", ConfigKey::Named("e2e_processing_latency_percentiles"),
        Setter::FloatList(|o| &mut o.e2e_processing_latency_percentiles), Shown::Zero,
        "message processing time percentiles (as float (0, 1.0]) to track (can be specified multiple times or comma separated '1.0,0.99,0.95', default none)"),
    row("e2e-processing-latency-window-time",
        Setter::Duration(|o, v| o.e2e_processing_latency_window_time = v), Shown::Value("10m0s"),
        "calculate end to end latency quantiles for this duration of time (ie: 60s would only show quantile calculations from the past 60 seconds)"),
    // TLS config
    row("tls-cert", Setter::Str(|o, v| o.tls_cert = v), Shown::Zero, "path to certificate file"),
    row("tls-key", Setter::Str(|o, v| o.tls_key = v), Shown::Zero, "path to key file"),
    row("tls-client-auth-policy", Setter::Str(|o, v| o.tls_client_auth_policy = v), Shown::Zero,
        "client certificate auth policy ('require' or 'require-verify')"),
    row("tls-root-ca-file", Setter::Str(|o, v| o.tls_root_ca_file = v), Shown::Zero,
        "path to certificate authority file"),
    row("tls-required", Setter::TlsRequired(|o, v| o.tls_required = v), Shown::Zero,
        "require TLS for client connections (true, false, tcp-https)"),
    row("tls-min-version", Setter::TlsMinVersion(|o, v| o.tls_min_version = v), Shown::Value("tls1.0"),
        "minimum SSL/TLS version acceptable ('tls1.0', 'tls1.1', 'tls1.2', or 'tls1.3'; ringsq's TLS library offers TLS 1.2 and 1.3 only, so 'tls1.0' and 'tls1.1' mean 'tls1.2')"),
    // compression
    row("deflate", Setter::Bool(|o, v| o.deflate = v), Shown::Value("true"),
        "enable deflate feature negotiation (client compression)"),
    row("max-deflate-level", Setter::Int(|o, v| {
            o.max_deflate_level = in_range(v, 1, 9).map_err(|_| "--max-deflate-level must be [1,9]".to_owned())?;
            Ok(())
        }), Shown::Value("6"),
        "max deflate compression level a client can negotiate (> values == > nsqd CPU usage)"),
    row("snappy", Setter::Bool(|o, v| o.snappy = v), Shown::Value("true"),
        "enable snappy feature negotiation (client compression)"),
    // ringsq's own
    row("ack-after-sync", Setter::Bool(|o, v| o.ack_after_sync = v), Shown::Zero,
        "[ringsq] acknowledge PUB/MPUB/DPUB only after the message is fsynced (group commit)"),
    row("retention", Setter::Duration(|o, v| o.retention = v), Shown::Zero,
        "[ringsq] keep a topic's messages at least this long after they are published, even once every channel has finished them (so a channel can be rewound: POST /channel/rewind); 0 = until every channel is past them"),
    row("max-topic-bytes", Setter::Int(|o, v| { o.max_topic_bytes = non_negative(v)?; Ok(()) }), Shown::Zero,
        "[ringsq] refuse publishes to a topic while its channels still need this many bytes of its log (0 = unbounded)"),
    row("max-attempts", Setter::Int(|o, v| { o.max_attempts = in_range(v, 0, i64::from(u16::MAX))?; Ok(()) }), Shown::Zero,
        "[ringsq] a message delivered this many times that is requeued or times out again goes to its channel's dead letters instead (GET /channel/dead; per channel: POST /channel/config); 0 = unlimited"),
    row("message-ttl", Setter::Duration(|o, v| o.message_ttl = v), Shown::Zero,
        "[ringsq] a message older than this (since it was published) when it would be delivered goes to its channel's dead letters instead (per channel: POST /channel/config); 0 = never"),
    row("shards", Setter::Int(|o, v| { o.shards = in_range(v, 0, i64::from(super::SHARDS_MAX))?; Ok(()) }), Shown::Zero,
        "[ringsq] spread topics over this many threads, each with its own io_uring (0 = one per CPU this process may use; 1 = a single thread)"),
    row("log-format", Setter::LogFormat(|o, v| o.log_format = v), Shown::Value("text"),
        "[ringsq] log line format: text (nsqd's, after --log-prefix) or json (one object per line: level, time, message and the event's fields such as topic, channel, client; no prefix)"),
];
