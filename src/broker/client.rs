//! A connected client as the rest of the broker sees it: its negotiated settings, its RDY window,
//! and its outbox (the bytes waiting for the connection's writer task).
//!
//! Channels deliver by writing message frames straight into the outbox; responses to commands go
//! through an ordered reply queue so that an `OK` that must wait for the disk (`--mem-queue-size 0`,
//! `--ack-after-sync`) never overtakes an earlier one. The writer task (`tcp::conn`) owns the
//! socket and decides when to flush, with nsqd's rules: responses at once; messages when the
//! output buffer is full, when the client can take no more, or after `output_buffer_timeout`.

use crate::protocol::{self, ProtocolError};
use crate::shard::forward::Answer;
use ringsq_storage::{Log, Ticket, UringIo};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;
use tokio::sync::Notify;

/// nsqd's client states, with the numbers `/stats` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    Init = 0,
    Disconnected = 1,
    Connected = 2,
    Subscribed = 3,
    Closing = 4,
}

/// What IDENTIFY negotiated (or nsqd's defaults), as the protocol module resolves it.
pub type ClientSettings = protocol::IdentifySettings;

/// The compression IDENTIFY negotiated for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Snappy,
    /// Raw DEFLATE at this level (1..=9).
    Deflate {
        level: u8,
    },
}

/// A reply whose `OK` may have to wait for the topic's log.
#[derive(Debug)]
pub enum Reply {
    /// Sent as soon as everything before it has been.
    Frame(Vec<u8>),
    /// A fatal error frame: sent after everything before it, then the connection closes
    /// (nothing queued after it is sent, as nsqd closes at once).
    Fatal(Vec<u8>),
    /// From here on the connection's output goes through this codec.
    StartCodec(Codec),
    /// From here on the connection's output goes through TLS.
    StartTls,
    /// `OK` once the log has written (or, with `synced`, fsynced) the ticket's records;
    /// on failure the error frame `<code> <command> failed <err>` (fatal).
    Durable {
        log: Log<UringIo>,
        ticket: Ticket,
        synced: bool,
        failed_code: &'static str,
        command: &'static str,
    },
    /// A publish forwarded to the shard that owns its topic: `OK` once item `index` of the
    /// owner's answer is in and says so; else the error frame, as for `Durable`.
    Remote {
        answer: Rc<Answer>,
        index: usize,
        failed_code: &'static str,
        command: &'static str,
    },
}

#[derive(Debug, Default)]
pub struct Outbox {
    pub buf: Vec<u8>,
    /// A response or error is in `buf`: flush now.
    pub urgent: bool,
    /// When the oldest unflushed message frame went into `buf`.
    pub first_message_at: Option<Instant>,
    /// Close the connection once `buf` is flushed (a fatal error was queued).
    pub close_after_flush: bool,
    /// `buf` from this offset on is the first output to go through the codec.
    pub codec_at: Option<(usize, Codec)>,
    /// `buf` from this offset on is the first output to go through TLS.
    pub tls_at: Option<usize>,
    pub replies: VecDeque<Reply>,
}

#[derive(Debug)]
pub struct Client {
    pub id: u64,
    pub remote: SocketAddr,
    pub connected_at_unix_s: u64,
    pub settings: RefCell<ClientSettings>,
    pub state: Cell<ClientState>,
    pub ready_count: Cell<u64>,
    pub in_flight: Cell<u64>,
    pub message_count: Cell<u64>,
    pub finish_count: Cell<u64>,
    pub requeue_count: Cell<u64>,
    pub pub_counts: RefCell<Vec<(String, u64)>>,
    /// The compression negotiated by IDENTIFY, for `/stats`.
    pub codec: Cell<Option<Codec>>,
    /// The TLS connection's facts once IDENTIFY upgraded it (`/stats`, AUTH's common name).
    pub tls: RefCell<Option<crate::tls::TlsInfo>>,
    /// Who the auth server said this client is, once AUTH succeeded (`/stats`).
    pub auth: RefCell<Option<crate::auth::AuthIdentity>>,
    pub outbox: RefCell<Outbox>,
    /// Wakes the writer task.
    pub wake: super::wake::Wake,
    /// Signalled by the writer after each flush (back-pressure for a pipelining publisher).
    pub drained: Notify,
    pub closed: Cell<bool>,
    /// The connection is moving to another shard: the writer flushes what is queued and stops,
    /// leaving the socket open.
    pub moving: Cell<bool>,
}

/// A client's state as it moves to another shard (sendable; rebuilt there by
/// [`Client::from_parts`]). Only a connection that has not subscribed moves: nothing is in
/// flight, its RDY count is 0.
#[derive(Debug)]
pub struct ClientParts {
    pub id: u64,
    pub remote: SocketAddr,
    pub connected_at_unix_s: u64,
    pub settings: ClientSettings,
    pub state: ClientState,
    pub message_count: u64,
    pub finish_count: u64,
    pub requeue_count: u64,
    pub pub_counts: Vec<(String, u64)>,
    pub codec: Option<Codec>,
    pub tls: Option<crate::tls::TlsInfo>,
    pub auth: Option<crate::auth::AuthIdentity>,
}

impl Client {
    pub fn new(id: u64, remote: SocketAddr, settings: ClientSettings, now_unix_s: u64) -> Self {
        Self {
            id,
            remote,
            connected_at_unix_s: now_unix_s,
            settings: RefCell::new(settings),
            state: Cell::new(ClientState::Init),
            ready_count: Cell::new(0),
            in_flight: Cell::new(0),
            message_count: Cell::new(0),
            finish_count: Cell::new(0),
            requeue_count: Cell::new(0),
            pub_counts: RefCell::new(Vec::new()),
            codec: Cell::new(None),
            tls: RefCell::new(None),
            auth: RefCell::new(None),
            outbox: RefCell::new(Outbox::default()),
            wake: super::wake::Wake::new(),
            drained: Notify::new(),
            closed: Cell::new(false),
            moving: Cell::new(false),
        }
    }

    /// What moves with the connection (see [`ClientParts`]).
    pub fn to_parts(&self) -> ClientParts {
        ClientParts {
            id: self.id,
            remote: self.remote,
            connected_at_unix_s: self.connected_at_unix_s,
            settings: self.settings.borrow().clone(),
            state: self.state.get(),
            message_count: self.message_count.get(),
            finish_count: self.finish_count.get(),
            requeue_count: self.requeue_count.get(),
            pub_counts: self.pub_counts.borrow().clone(),
            codec: self.codec.get(),
            tls: self.tls.borrow().clone(),
            auth: self.auth.borrow().clone(),
        }
    }

    /// The client again, on the shard it moved to.
    pub fn from_parts(parts: ClientParts) -> Self {
        let client = Self::new(
            parts.id,
            parts.remote,
            parts.settings,
            parts.connected_at_unix_s,
        );
        client.state.set(parts.state);
        client.message_count.set(parts.message_count);
        client.finish_count.set(parts.finish_count);
        client.requeue_count.set(parts.requeue_count);
        *client.pub_counts.borrow_mut() = parts.pub_counts;
        client.codec.set(parts.codec);
        *client.tls.borrow_mut() = parts.tls;
        *client.auth.borrow_mut() = parts.auth;
        client
    }

    /// nsqd's `IsReadyForMessages`: RDY is a window over the messages in flight.
    pub fn is_ready_for_messages(&self) -> bool {
        !self.closed.get()
            && self.state.get() == ClientState::Subscribed
            && self.in_flight.get() < self.ready_count.get()
    }

    /// Queue a response frame (after any reply still waiting for the disk).
    pub fn respond(&self, data: &[u8]) {
        let mut frame = Vec::with_capacity(8 + data.len());
        protocol::write_response(&mut frame, data);
        self.push_reply(Reply::Frame(frame));
    }

    /// Queue an error frame; a fatal one closes the connection once it is flushed (after the
    /// replies queued before it: a fatal error never overtakes an `OK` still waiting).
    pub fn respond_error(&self, err: &ProtocolError) {
        let mut frame = Vec::new();
        protocol::write_error(&mut frame, err);
        self.push_reply(if err.fatal {
            Reply::Fatal(frame)
        } else {
            Reply::Frame(frame)
        });
    }

    pub fn push_reply(&self, reply: Reply) {
        let mut out = self.outbox.borrow_mut();
        match reply {
            Reply::Frame(frame) if out.replies.is_empty() => {
                out.buf.extend_from_slice(&frame);
                out.urgent = true;
            }
            Reply::Fatal(frame) if out.replies.is_empty() => {
                out.buf.extend_from_slice(&frame);
                out.urgent = true;
                out.close_after_flush = true;
            }
            Reply::StartCodec(codec) if out.replies.is_empty() => {
                out.codec_at = Some((out.buf.len(), codec));
            }
            Reply::StartTls if out.replies.is_empty() => {
                out.tls_at = Some(out.buf.len());
            }
            other => out.replies.push_back(other),
        }
        drop(out);
        self.wake.notify_one();
    }

    /// Replies queued and not yet sent (for back-pressure on a pipelining publisher).
    pub fn replies_pending(&self) -> usize {
        self.outbox.borrow().replies.len()
    }

    /// Write one message frame into the outbox (called by a channel delivering to us).
    pub fn send_message(
        &self,
        timestamp_ns: i64,
        attempts: u16,
        id: &protocol::MessageId,
        body: &[u8],
    ) {
        let mut out = self.outbox.borrow_mut();
        protocol::write_message(&mut out.buf, timestamp_ns, attempts, id, body);
        let first = out.first_message_at.is_none();
        if first {
            out.first_message_at = Some(Instant::now());
        }
        let full = out.buf.len() >= self.settings.borrow().output_buffer_size;
        drop(out);
        if first || full || !self.is_ready_for_messages() {
            self.wake.notify_one();
        }
    }

    pub fn count_publish(&self, topic: &str, n: u64) {
        let mut counts = self.pub_counts.borrow_mut();
        if let Some(entry) = counts.iter_mut().find(|(t, _)| t == topic) {
            entry.1 += n;
        } else {
            counts.push((topic.to_owned(), n));
        }
    }
}
