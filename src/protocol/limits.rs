//! `Limits`: the nsqd flags the codec checks input against, with nsqd 1.3.0's defaults.
//!
//! The decoder checks every length against these *before* it takes or copies bytes, so one
//! command never needs more than [`Limits::command_len_max_bytes`] bytes of buffer.

/// nsqd's per-connection read buffer (Go `defaultBufferSize`, 16 KiB). A command line,
/// `'\n'` included, must fit in it: Go's `bufio.Reader.ReadSlice` fails with
/// `bufio: buffer full` otherwise, and nsqd then closes the connection without an error frame.
pub const LINE_LEN_MAX_BYTES: usize = 16 * 1024;

/// nsqd's `ClientTimeout` (60 s, no flag): a new connection's heartbeat interval is half of it.
pub const CLIENT_TIMEOUT_MS: u64 = 60 * 1000;

/// Limits and per-client defaults taken from nsqd's flags (names as the flags, unit last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `--max-msg-size`: largest PUB/DPUB body and largest single MPUB message.
    pub max_msg_size: u64,
    /// `--max-body-size`: largest MPUB, IDENTIFY or AUTH body.
    pub max_body_size: u64,
    /// `--max-rdy-count`.
    pub max_rdy_count: u64,
    /// `--max-req-timeout`: REQ timeouts are clamped to it, DPUB timeouts above it are errors.
    pub max_req_timeout_ms: u64,
    /// `--max-msg-timeout`: largest IDENTIFY `msg_timeout`.
    pub max_msg_timeout_ms: u64,
    /// `--max-heartbeat-interval`: largest IDENTIFY `heartbeat_interval`.
    pub max_heartbeat_interval_ms: u64,
    /// `--max-output-buffer-size`: largest IDENTIFY `output_buffer_size`.
    pub max_output_buffer_size: u64,
    /// `--min-output-buffer-timeout`: smallest IDENTIFY `output_buffer_timeout` (but -1, 0).
    pub min_output_buffer_timeout_ms: u64,
    /// `--max-output-buffer-timeout`: largest IDENTIFY `output_buffer_timeout`.
    pub max_output_buffer_timeout_ms: u64,
    /// `--max-deflate-level`.
    pub max_deflate_level: u8,
    /// `--msg-timeout`: a client's message timeout until it IDENTIFYs another.
    pub msg_timeout_ms: u64,
    /// `--output-buffer-timeout`: a client's output buffer timeout until it IDENTIFYs another.
    pub output_buffer_timeout_ms: u64,
    /// nsqd's `ClientTimeout` (60 s, no flag): the default heartbeat interval is half of it.
    pub client_timeout_ms: u64,
    /// Longest command line, `'\n'` included ([`LINE_LEN_MAX_BYTES`]).
    pub line_len_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_msg_size: 1024 * 1024,
            max_body_size: 5 * 1024 * 1024,
            max_rdy_count: 2500,
            max_req_timeout_ms: 60 * 60 * 1000,
            max_msg_timeout_ms: 15 * 60 * 1000,
            max_heartbeat_interval_ms: 60 * 1000,
            max_output_buffer_size: 64 * 1024,
            min_output_buffer_timeout_ms: 25,
            max_output_buffer_timeout_ms: 30 * 1000,
            max_deflate_level: 6,
            msg_timeout_ms: 60 * 1000,
            output_buffer_timeout_ms: 250,
            client_timeout_ms: CLIENT_TIMEOUT_MS,
            line_len_max: LINE_LEN_MAX_BYTES,
        }
    }
}

impl Limits {
    /// The most bytes one command can occupy in the read buffer: a full line, a 4-byte size,
    /// and the largest body (an MPUB's messages are bounded by `max_body_size` in total).
    pub fn command_len_max_bytes(&self) -> usize {
        let body = self.max_body_size.max(self.max_msg_size);
        self.line_len_max
            .saturating_add(4)
            .saturating_add(usize::try_from(body).unwrap_or(usize::MAX))
    }

    /// A limit as Go's `int64` option, for comparisons with wire sizes.
    pub(crate) fn as_i64(limit: u64) -> i64 {
        i64::try_from(limit).unwrap_or(i64::MAX)
    }
}
