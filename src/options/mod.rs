//! Every nsqd 1.3.0 flag, parsed with Go's flag syntax, merged with nsqd's `--config` file.
//!
//! An operator replaces the `nsqd` binary with `ringsq` in a unit file and keeps the same
//! flags and the same TOML config file; this module makes them mean the same thing.
//!
//! - [`parse`] reads the command line ([`cli`], Go's `flag` grammar), then the `--config`
//!   file ([`config`], nsqd's keys and go-options' coercions), merges them with the
//!   precedence nsqd uses — **command-line flag > config file > default** — and runs the
//!   checks nsqd's `New()` runs. The result is [`Parsed::Run`] with a complete [`Options`],
//!   or `--version` / `--help`.
//! - The flags themselves live in one table ([`flags`]); `--help` ([`usage`]) is built from
//!   it, so the two cannot drift.
//!
//! Invariants: every field of [`Options`] holds a value nsqd would accept (ranges are checked
//! when a value is set, not later); [`Options::default`] equals nsqd 1.3.0's `NewOptions()`.

mod cli;
mod config;
mod error;
mod flags;
pub mod go_syntax;
mod usage;
mod value;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ErrorSource, OptionsError};

/// What `--version` prints.
pub const VERSION: &str = concat!(
    "ringsq v",
    env!("CARGO_PKG_VERSION"),
    " (nsqd 1.3.0 compatible)"
);

/// Most shards `--shards` accepts.
pub const SHARDS_MAX: u16 = 1024;

/// TLS protocol version numbers, as Go's `crypto/tls` and the wire use them.
pub const TLS_VERSION_1_0: u16 = 0x0301;
/// TLS 1.1.
pub const TLS_VERSION_1_1: u16 = 0x0302;
/// TLS 1.2.
pub const TLS_VERSION_1_2: u16 = 0x0303;
/// TLS 1.3.
pub const TLS_VERSION_1_3: u16 = 0x0304;

/// nsqd's `--log-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl LogLevel {
    /// nsqd's `lg.ParseLogLevel`: case-insensitive.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "debug" => Ok(Self::Debug),
            "info" => Ok(Self::Info),
            "warn" => Ok(Self::Warn),
            "error" => Ok(Self::Error),
            "fatal" => Ok(Self::Fatal),
            _ => Err(format!(
                "invalid log level '{s}' (debug, info, warn, error, fatal)"
            )),
        }
    }

    /// The flag spelling of the level.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
            Self::Fatal => "fatal",
        }
    }
}

impl std::fmt::Display for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// ringsq's `--log-format`: how log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// nsqd's text lines, after `--log-prefix`.
    Text,
    /// One JSON object per line (`level`, `time`, `message` and the event's fields); no prefix.
    Json,
}

impl LogFormat {
    /// `text` or `json`, case-insensitive.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(format!("invalid log format '{s}' (text, json)")),
        }
    }
}

/// nsqd's `--tls-required` (`TLSNotRequired`, `TLSRequiredExceptHTTP`, `TLSRequired`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsRequired {
    /// `false`: TLS optional.
    NotRequired,
    /// `tcp-https`: TLS required on TCP; plain HTTP still served.
    ExceptHttp,
    /// `true`: TLS required on TCP and HTTP.
    Required,
}

impl TlsRequired {
    /// nsqd's `tlsRequiredOption.Set`: `tcp-https` or any Go bool, case-insensitive.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.to_ascii_lowercase();
        if s == "tcp-https" {
            return Ok(Self::ExceptHttp);
        }
        Ok(Self::from_bool(go_syntax::parse_bool(&s)?))
    }

    fn from_bool(required: bool) -> Self {
        if required {
            Self::Required
        } else {
            Self::NotRequired
        }
    }
}

/// Every nsqd 1.3.0 option (field = flag name in `snake_case`), plus ringsq's own.
///
/// Integer options that nsqd keeps as Go `int64` but that must not be negative are unsigned
/// here; a negative value is refused at parse time. Where nsqd uses 0 to mean "none" or
/// "the real port", so do these fields (documented on each).
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::struct_excessive_bools)] // one bool per nsqd bool flag; they are independent
pub struct Options {
    // basic options
    pub log_level: LogLevel,
    pub log_prefix: String,
    /// Deprecated in nsqd: accepted, no effect.
    pub verbose: bool,
    /// `--node-id`, in `[0, 1024)`; default `crc32(md5(hostname)) % 1024` as nsqd.
    pub node_id: u16,
    pub https_address: String,
    /// Empty disables the HTTP listener.
    pub http_address: String,
    /// `host:port`, or a path for a unix socket.
    pub tcp_address: String,
    pub auth_http_addresses: Vec<String>,
    /// Default: the OS hostname.
    pub broadcast_address: String,
    /// 0 means the port the TCP listener got.
    pub broadcast_tcp_port: u16,
    /// 0 means the port the HTTP listener got.
    pub broadcast_http_port: u16,
    pub lookupd_tcp_addresses: Vec<String>,
    pub http_client_connect_timeout: Duration,
    pub http_client_request_timeout: Duration,
    // diskqueue options
    /// Empty means the current directory.
    pub data_path: PathBuf,
    pub mem_queue_size: u64,
    pub max_bytes_per_file: u64,
    pub sync_every: u64,
    pub sync_timeout: Duration,
    pub queue_scan_worker_pool_max: u32,
    pub queue_scan_selection_count: u32,
    /// Not a flag (nsqd: 100ms).
    pub queue_scan_interval: Duration,
    /// Not a flag (nsqd: 5s).
    pub queue_scan_refresh_interval: Duration,
    /// Not a flag (nsqd: 0.25).
    pub queue_scan_dirty_percent: f64,
    // msg and command options
    pub msg_timeout: Duration,
    pub max_msg_timeout: Duration,
    pub max_msg_size: u64,
    pub max_req_timeout: Duration,
    pub max_body_size: u64,
    /// Not a flag (nsqd: 60s).
    pub client_timeout: Duration,
    // client overridable configuration options
    pub max_heartbeat_interval: Duration,
    pub max_rdy_count: u64,
    pub max_output_buffer_size: u64,
    pub max_output_buffer_timeout: Duration,
    pub min_output_buffer_timeout: Duration,
    pub output_buffer_timeout: Duration,
    /// 0 means unlimited.
    pub max_channel_consumers: u64,
    // statsd integration options
    /// Empty disables statsd.
    pub statsd_address: String,
    pub statsd_interval: Duration,
    pub statsd_mem_stats: bool,
    /// As given (with `%s`); see [`Options::statsd_prefix_with_host`].
    pub statsd_prefix: String,
    pub statsd_udp_packet_size: u64,
    pub statsd_exclude_ephemeral: bool,
    // end to end percentile flags
    /// Each in `(0, 1]`; from the command line sorted largest first (as nsqd).
    pub e2e_processing_latency_percentiles: Vec<f64>,
    pub e2e_processing_latency_window_time: Duration,
    // TLS config
    pub tls_cert: String,
    pub tls_key: String,
    pub tls_client_auth_policy: String,
    pub tls_root_ca_file: String,
    pub tls_required: TlsRequired,
    /// A `TLS_VERSION_*` constant.
    pub tls_min_version: u16,
    // compression
    pub deflate: bool,
    /// In `[1, 9]`.
    pub max_deflate_level: u8,
    pub snappy: bool,
    // ringsq's own
    /// Acknowledge PUB/MPUB/DPUB only after the message is fsynced (group commit).
    pub ack_after_sync: bool,
    /// Messages are kept at least this long after they are written (0: until every channel is
    /// past them).
    pub retention: Duration,
    /// A topic refuses publishes while its channels need this many bytes of its log (0: no bound).
    pub max_topic_bytes: u64,
    /// ringsq's `--max-attempts`: a message delivered this many times that is requeued or times
    /// out again goes to its channel's dead letters (0: unlimited, as nsqd).
    pub max_attempts: u16,
    /// ringsq's `--message-ttl`: a message older than this when it would be delivered goes to
    /// its channel's dead letters (0: never).
    pub message_ttl: Duration,
    /// ringsq's `--shards`: topics spread over this many threads, each with its own `io_uring`
    /// runtime (0: one per CPU the process may use).
    pub shards: u64,
    /// ringsq's `--log-format`.
    pub log_format: LogFormat,
    /// Keys of the config file that name no option; nsqd ignores them, so does ringsq,
    /// but `main` should log them (a typo there silently keeps a default).
    pub ignored_config_keys: Vec<String>,
}

impl Default for Options {
    /// nsqd 1.3.0's `NewOptions()`, value for value.
    fn default() -> Self {
        let hostname = hostname();
        Self {
            log_level: LogLevel::Info,
            log_prefix: "[nsqd] ".to_owned(),
            verbose: false,
            node_id: default_node_id(&hostname),
            https_address: "0.0.0.0:4152".to_owned(),
            http_address: "0.0.0.0:4151".to_owned(),
            tcp_address: "0.0.0.0:4150".to_owned(),
            auth_http_addresses: Vec::new(),
            broadcast_address: hostname,
            broadcast_tcp_port: 0,
            broadcast_http_port: 0,
            lookupd_tcp_addresses: Vec::new(),
            http_client_connect_timeout: Duration::from_secs(2),
            http_client_request_timeout: Duration::from_secs(5),
            data_path: PathBuf::new(),
            mem_queue_size: 10_000,
            max_bytes_per_file: 100 * 1024 * 1024,
            sync_every: 2500,
            sync_timeout: Duration::from_secs(2),
            queue_scan_worker_pool_max: 4,
            queue_scan_selection_count: 20,
            queue_scan_interval: Duration::from_millis(100),
            queue_scan_refresh_interval: Duration::from_secs(5),
            queue_scan_dirty_percent: 0.25,
            msg_timeout: Duration::from_secs(60),
            max_msg_timeout: Duration::from_secs(15 * 60),
            max_msg_size: 1024 * 1024,
            max_req_timeout: Duration::from_secs(60 * 60),
            max_body_size: 5 * 1024 * 1024,
            client_timeout: Duration::from_secs(60),
            max_heartbeat_interval: Duration::from_secs(60),
            max_rdy_count: 2500,
            max_output_buffer_size: 64 * 1024,
            max_output_buffer_timeout: Duration::from_secs(30),
            min_output_buffer_timeout: Duration::from_millis(25),
            output_buffer_timeout: Duration::from_millis(250),
            max_channel_consumers: 0,
            statsd_address: String::new(),
            statsd_interval: Duration::from_secs(60),
            statsd_mem_stats: true,
            statsd_prefix: "nsq.%s".to_owned(),
            statsd_udp_packet_size: 508,
            statsd_exclude_ephemeral: false,
            e2e_processing_latency_percentiles: Vec::new(),
            e2e_processing_latency_window_time: Duration::from_secs(10 * 60),
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_client_auth_policy: String::new(),
            tls_root_ca_file: String::new(),
            tls_required: TlsRequired::NotRequired,
            tls_min_version: TLS_VERSION_1_0,
            deflate: true,
            max_deflate_level: 6,
            snappy: true,
            ack_after_sync: false,
            retention: Duration::ZERO,
            max_topic_bytes: 0,
            max_attempts: 0,
            message_ttl: Duration::ZERO,
            shards: 0,
            log_format: LogFormat::Text,
            ignored_config_keys: Vec::new(),
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // built once at start-up; boxing would only add noise
pub enum Parsed {
    /// Run the broker with these options.
    Run(Options),
    /// `--version`: print [`VERSION`] and exit 0.
    Version,
    /// `-h`/`--help`: print this usage text and exit 0.
    Help(String),
}

/// Parses `args` (`args[0]` is the program name) and the `--config` file it names.
pub fn parse<I, T>(args: I) -> Result<Parsed, OptionsError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args = args
        .into_iter()
        .skip(1)
        .map(|arg| {
            arg.into().into_string().map_err(|bad| {
                OptionsError::command_line(
                    None,
                    format!("argument is not valid UTF-8: {}", bad.to_string_lossy()),
                )
            })
        })
        .collect::<Result<Vec<String>, _>>()?;
    let command_line = cli::scan(&args)?;
    if command_line.help {
        return Ok(Parsed::Help(usage::usage()));
    }
    if command_line.version {
        return Ok(Parsed::Version);
    }
    let mut opts = Options::default();
    if let Some(path) = command_line.config.as_deref().filter(|p| !p.is_empty()) {
        let path = Path::new(path);
        let table = config::load(path)?;
        config::apply(&mut opts, &table, path)?;
    }
    cli::apply(&mut opts, &command_line.given)?;
    finish(&mut opts)?;
    Ok(Parsed::Run(opts))
}

/// nsqd `New()`'s checks on the merged options (range checks already ran per value).
fn finish(opts: &mut Options) -> Result<(), OptionsError> {
    // nsqd: a client auth policy implies TLS is required.
    if !opts.tls_client_auth_policy.is_empty() && opts.tls_required == TlsRequired::NotRequired {
        opts.tls_required = TlsRequired::Required;
    }
    if opts.tls_cert.is_empty() != opts.tls_key.is_empty() {
        return Err(OptionsError::validation(
            "tls-cert",
            "--tls-cert and --tls-key must be given together".to_owned(),
        ));
    }
    if opts.tls_required != TlsRequired::NotRequired && opts.tls_cert.is_empty() {
        return Err(OptionsError::validation(
            "tls-required",
            "cannot require TLS client connections without TLS key and cert".to_owned(),
        ));
    }
    // nsqd would panic in time.NewTicker on these; refuse them up front instead.
    if opts.sync_timeout.is_zero() {
        return Err(OptionsError::validation(
            "sync-timeout",
            "--sync-timeout must be > 0".to_owned(),
        ));
    }
    if opts.statsd_interval.is_zero() && !opts.statsd_address.is_empty() {
        return Err(OptionsError::validation(
            "statsd-interval",
            "--statsd-interval must be > 0 when --statsd-address is set".to_owned(),
        ));
    }
    Ok(())
}

impl Options {
    /// nsqd's statsd key prefix: `%s` replaced by the host key of
    /// `broadcast_address:http_port` (`.` and `:` become `_`), with a trailing `.` added.
    /// Empty when `--statsd-prefix` is empty. `http_port` is the broadcast HTTP port (the
    /// real listener port when `--broadcast-http-port` is 0), as nsqd 1.3.0 uses.
    pub fn statsd_prefix_with_host(&self, http_port: u16) -> String {
        if self.statsd_prefix.is_empty() {
            return String::new();
        }
        let host = if self.broadcast_address.contains(':') {
            format!("[{}]:{http_port}", self.broadcast_address)
        } else {
            format!("{}:{http_port}", self.broadcast_address)
        };
        let host_key = host.replace(['.', ':'], "_");
        let mut prefix = self.statsd_prefix.replace("%s", &host_key);
        if !prefix.ends_with('.') {
            prefix.push('.');
        }
        prefix
    }
}

/// The OS hostname as Go's `os.Hostname` reads it on Linux; `localhost` if unreadable.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim_end_matches('\n').to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// nsqd's default node ID: `crc32.ChecksumIEEE(md5(hostname)) % 1024`.
fn default_node_id(hostname: &str) -> u16 {
    use md5::Digest as _;
    let digest = md5::Md5::digest(hostname.as_bytes());
    let id = crc32fast::hash(&digest) % 1024;
    // `% 1024` fits in u16; the fallback is unreachable.
    u16::try_from(id).unwrap_or(0)
}

#[cfg(test)]
mod tests;
