//! A connected client: its negotiated settings, its state and RDY window, its counters, and
//! its outbox (the bytes waiting for the connection's writer task, [`super::writer`]).
//!
//! To the broker a client is a [`Consumer`]: a channel hands it messages by writing their
//! frames straight into the outbox ([`Consumer::deliver`]), and tells it when one no longer
//! counts as in flight.

use super::auth::AuthIdentity;
use super::tls::TlsInfo;
use super::writer::{Outbox, Reply};
use crate::broker::consumer::Consumer;
use crate::broker::wake::Wake;
use crate::protocol::{self, ClientState, MessageId, ProtocolError};
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::Notify;

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
    pub tls: RefCell<Option<TlsInfo>>,
    /// Who the auth server said this client is, once AUTH succeeded (`/stats`).
    pub auth: RefCell<Option<AuthIdentity>>,
    pub outbox: RefCell<Outbox>,
    /// Wakes the writer task.
    pub wake: Wake,
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
    pub tls: Option<TlsInfo>,
    pub auth: Option<AuthIdentity>,
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
            wake: Wake::new(),
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
        self.outbox.borrow_mut().push_reply(reply);
        self.wake.notify_one();
    }

    /// Replies queued and not yet sent (for back-pressure on a pipelining publisher).
    pub fn replies_pending(&self) -> usize {
        self.outbox.borrow().replies.len()
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

impl Consumer for Client {
    fn id(&self) -> u64 {
        self.id
    }

    /// RDY is a window over the messages in flight.
    fn is_ready(&self) -> bool {
        !self.closed.get()
            && self.state.get() == ClientState::Subscribed
            && self.in_flight.get() < self.ready_count.get()
    }

    fn sample_rate(&self) -> u8 {
        self.settings.borrow().sample_rate
    }

    fn msg_timeout(&self) -> Duration {
        self.settings.borrow().msg_timeout
    }

    /// Writes the message's frame into the outbox; wakes the writer when it should look
    /// (the first message since its last flush, a full buffer, or a window now full).
    fn deliver(&self, timestamp_ns: i64, attempts: u16, id: &MessageId, body: &[u8]) {
        self.in_flight.set(self.in_flight.get() + 1);
        self.message_count.set(self.message_count.get() + 1);
        let buffer_size = self.settings.borrow().output_buffer_size;
        let wake =
            self.outbox
                .borrow_mut()
                .push_message(timestamp_ns, attempts, id, body, buffer_size);
        if wake || !self.is_ready() {
            self.wake.notify_one();
        }
    }

    fn release(&self) -> bool {
        let was_full = !self.is_ready();
        self.in_flight.set(self.in_flight.get().saturating_sub(1));
        let reopened = was_full && self.is_ready();
        if reopened {
            self.wake.notify_one();
        }
        reopened
    }

    fn release_all(&self) {
        self.in_flight.set(0);
        self.wake.notify_one();
    }

    fn close(&self) {
        self.closed.set(true);
        self.wake.notify_one();
    }
}
