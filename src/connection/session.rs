//! Executes decoded commands for one connection: nsqd's `protocol_v2.go` semantics on top of the
//! broker. The decoder has already checked state, parameters, names and sizes; what is left here
//! needs the broker (topics, channels, in-flight messages), the client's negotiated settings,
//! the TLS configuration (IDENTIFY `tls_v1`) or the auth servers (AUTH, and nsqd's `CheckAuth`
//! before SUB, PUB, MPUB and DPUB: `E_AUTH_FIRST`, `E_AUTH_FAILED`, `E_UNAUTHORIZED`).
//!
//! Shards: a publish for a topic another shard owns is queued for it ([`super::forward`]),
//! its `OK` waiting for the owner's answer; a `SUB` for such a topic is not run here: the
//! session records where the connection must move ([`Session::move_to`]) and the connection
//! loop moves it there ([`super::handoff`]), where the `SUB` runs.

use super::auth::{AuthState, Query};
use super::client::{Client, Codec};
use super::forward::{Item, Outgoing};
use super::transport::Input;
use super::writer::Reply;
use super::Frontend;
use crate::broker::channel::Channel;
use crate::broker::topic::{Ack, Topic};
use crate::broker::Broker;
use crate::protocol::ErrorCode;
use crate::protocol::{
    self, ClientState, Command, DecodeContext, Limits, MessageId, ProtocolError, PublishCommand,
};
use bytes::Bytes;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub struct Session {
    pub broker: Rc<Broker>,
    pub client: Rc<Client>,
    pub frontend: Rc<Frontend>,
    peer: Option<SocketAddr>,
    channel: Option<Rc<Channel>>,
    topic: Option<Rc<Topic>>,
    /// Set by an IDENTIFY that negotiated TLS: the reader starts TLS on every byte after it.
    pub new_tls: Option<Arc<rustls::ServerConfig>>,
    /// Set by an IDENTIFY that negotiated compression: the reader decodes every byte after it.
    pub new_codec: Option<Codec>,
    /// IDENTIFY upgraded the connection to TLS.
    tls_on: bool,
    /// What AUTH established (re-asked when its TTL runs out), and the secret it used.
    auth: Option<AuthState>,
    auth_secret: String,
    /// The MPUB at the front of the input already passed its AUTH check (done at its line).
    mpub_checked: bool,
    /// Publishes waiting to be sent to the shards that own their topics.
    outgoing: Outgoing,
    /// A `SUB` for a topic of another shard: (shard, topic, channel). The connection moves.
    pub move_to: Option<(usize, String, String)>,
}

/// What moves with a connection besides its client: TLS status and AUTH.
#[derive(Debug)]
pub struct SessionParts {
    tls_on: bool,
    auth: Option<AuthState>,
    auth_secret: String,
}

impl Session {
    pub fn new(frontend: Rc<Frontend>, client: Rc<Client>, peer: Option<SocketAddr>) -> Self {
        let shards = frontend.peers.place().count;
        Self {
            broker: Rc::clone(&frontend.broker),
            client,
            frontend,
            peer,
            channel: None,
            topic: None,
            new_tls: None,
            new_codec: None,
            tls_on: false,
            auth: None,
            auth_secret: String::new(),
            mpub_checked: false,
            outgoing: Outgoing::new(shards),
            move_to: None,
        }
    }

    /// What moves with the connection (only before it subscribed: no channel to leave).
    pub fn into_parts(self) -> SessionParts {
        SessionParts {
            tls_on: self.tls_on,
            auth: self.auth,
            auth_secret: self.auth_secret,
        }
    }

    /// The session again on the shard the connection moved to.
    pub fn from_parts(
        frontend: Rc<Frontend>,
        client: Rc<Client>,
        peer: Option<SocketAddr>,
        parts: SessionParts,
    ) -> Self {
        let mut session = Self::new(frontend, client, peer);
        session.tls_on = parts.tls_on;
        session.auth = parts.auth;
        session.auth_secret = parts.auth_secret;
        session
    }

    /// Sends the publishes queued for other shards (before the connection waits for anything,
    /// and when it ends: their replies wait for the answers).
    pub async fn flush_forwards(&mut self) {
        self.outgoing.flush(&*self.frontend.peers).await;
    }

    pub fn limits(&self) -> &Limits {
        &self.frontend.config.limits
    }

    pub fn heartbeats_enabled(&self) -> bool {
        self.client.settings.borrow().heartbeat_interval.is_some()
    }

    /// What the decoder needs to know of this connection now.
    pub fn decode_context<'a>(&self, limits: &'a Limits) -> DecodeContext<'a> {
        let mut cx = DecodeContext::new(self.client.state.get(), self.heartbeats_enabled(), limits);
        cx.tls_required = self.frontend.config.tls_required && !self.tls_on;
        cx
    }

    /// Records the TLS connection's facts once its handshake is done (for `/stats` and AUTH).
    pub fn note_tls(&self, input: &Input) {
        if self.tls_on && self.client.tls.borrow().is_none() {
            if let Some(info) = input.tls_info() {
                *self.client.tls.borrow_mut() = Some(info);
            }
        }
    }

    /// nsqd checks AUTH for an MPUB as soon as its line is read, before its body: when `buf`
    /// starts with such a line, that check now (once per command). False: the connection must
    /// close (the error is queued).
    pub async fn check_mpub_ahead(&mut self, buf: &[u8], cx: &DecodeContext<'_>) -> bool {
        if self.mpub_checked || self.frontend.auth.is_none() {
            return true;
        }
        let Some(topic) = protocol::mpub_topic_ahead(buf, cx) else {
            return true;
        };
        let topic = topic.to_owned();
        self.mpub_checked = true;
        match self.check_auth("MPUB", &topic, "").await {
            Ok(()) => true,
            Err(err) => {
                tracing::info!("{err}");
                self.client.respond_error(&err);
                false
            }
        }
    }

    /// Runs one command; false when the connection must close (after a fatal error).
    pub async fn exec(&mut self, cmd: Command) -> bool {
        let mpub_checked = std::mem::take(&mut self.mpub_checked);
        let result = match cmd {
            Command::Identify(body) => self.identify(&body),
            Command::Auth(secret) => self.auth(&secret).await,
            Command::Sub { topic, channel } => {
                match self.frontend.peers.place().remote_owner(&topic) {
                    // Run there, with everything that came after it.
                    Some(shard) => {
                        self.move_to = Some((shard, topic, channel));
                        Ok(())
                    }
                    None => self.sub(&topic, &channel).await,
                }
            }
            Command::Rdy(count) => {
                self.rdy(count);
                Ok(())
            }
            Command::Fin(id) => self.fin(&id),
            Command::Req { id, timeout_ms } => self.req(&id, timeout_ms),
            Command::Touch(id) => self.touch(&id),
            Command::Cls => {
                self.cls();
                Ok(())
            }
            Command::Nop | Command::RdyIgnored => Ok(()),
            Command::Pub { topic, body } => {
                self.publish(&topic, vec![body], None, PublishCommand::Pub)
                    .await
            }
            Command::Mpub { topic, bodies } => {
                if mpub_checked {
                    self.publish_unchecked(&topic, bodies, None, PublishCommand::Mpub)
                        .await
                } else {
                    self.publish(&topic, bodies, None, PublishCommand::Mpub)
                        .await
                }
            }
            Command::Dpub {
                topic,
                defer_ms,
                body,
            } => {
                let defer = Some(Duration::from_millis(defer_ms));
                self.publish(&topic, vec![body], defer, PublishCommand::Dpub)
                    .await
            }
        };
        match result {
            Ok(()) => true,
            Err(err) => {
                tracing::info!("{err}");
                self.client.respond_error(&err);
                !err.fatal
            }
        }
    }

    fn identify(&mut self, body: &[u8]) -> Result<(), ProtocolError> {
        let req = protocol::parse_identify(body)?;
        let limits = self.limits();
        let current = self.client.settings.borrow().clone();
        let settings = protocol::resolve_identify(&req, &current, limits)?;
        let config = &self.frontend.config;
        // A second IDENTIFY does not stack a second TLS or codec on the first.
        let compressed = self.client.codec.get().is_some();
        let enabled = protocol::ServerFeatures {
            tls: self.frontend.tls.is_some() && !self.tls_on,
            snappy: config.snappy && !compressed,
            deflate: config.deflate && !compressed,
        };
        let negotiated = if req.feature_negotiation {
            Some(protocol::negotiate(&req, enabled, limits)?)
        } else {
            None
        };
        *self.client.settings.borrow_mut() = settings.clone();
        self.client.wake.notify_one();
        let Some(n) = negotiated else {
            self.client.respond(b"OK");
            return Ok(());
        };
        self.client.respond(&protocol::identify_response_json(
            &settings,
            &n,
            limits,
            self.frontend.auth.is_some(),
        ));
        // nsqd upgrades after the JSON frame: TLS (the handshake, then `OK` over TLS), then
        // compression (`OK` through the codec; at most one of the two, both was refused above).
        if let (true, Some(config)) = (n.tls_v1, &self.frontend.tls) {
            tracing::info!("upgrading connection to TLS");
            self.client.push_reply(Reply::StartTls);
            self.client.respond(b"OK");
            self.new_tls = Some(Arc::clone(config));
            self.tls_on = true;
        }
        let codec = if n.snappy {
            Some(Codec::Snappy)
        } else if n.deflate {
            Some(Codec::Deflate {
                level: n.deflate_level,
            })
        } else {
            None
        };
        if let Some(codec) = codec {
            self.client.codec.set(Some(codec));
            self.client.push_reply(Reply::StartCodec(codec));
            self.client.respond(b"OK");
            self.new_codec = Some(codec);
        }
        Ok(())
    }

    async fn sub(&mut self, topic_name: &str, channel_name: &str) -> Result<(), ProtocolError> {
        self.check_auth("SUB", topic_name, channel_name).await?;
        let sub_failed = |e: &dyn std::fmt::Display| {
            ProtocolError::fatal(ErrorCode::SubFailed, format!("SUB failed {e}"))
        };
        let topic = self
            .broker
            .topic(topic_name)
            .await
            .map_err(|e| sub_failed(&e))?;
        let channel = topic
            .channel(channel_name)
            .await
            .map_err(|e| sub_failed(&e))?;
        channel
            .add_consumer(Rc::clone(&self.client) as _)
            .map_err(|e| sub_failed(&e))?;
        self.client.state.set(ClientState::Subscribed);
        self.topic = Some(topic);
        self.channel = Some(channel);
        self.client.respond(b"OK");
        Ok(())
    }

    fn rdy(&self, count: u64) {
        // The decoder checked the state (RDY while closing is ignored) and the range.
        if self.client.state.get() != ClientState::Subscribed {
            return;
        }
        self.client.ready_count.set(count);
        if let Some(c) = &self.channel {
            c.wake();
        }
        self.client.wake.notify_one();
    }

    fn channel(&self) -> Result<&Rc<Channel>, ProtocolError> {
        self.channel.as_ref().ok_or_else(|| {
            ProtocolError::fatal(ErrorCode::Invalid, "cannot FIN in current state".to_owned())
        })
    }

    fn fin(&self, id: &MessageId) -> Result<(), ProtocolError> {
        self.channel()?.finish(&*self.client, id).map_err(|e| {
            ProtocolError::non_fatal(ErrorCode::FinFailed, format!("FIN {id} failed {e}"))
        })?;
        let c = &self.client.finish_count;
        c.set(c.get() + 1);
        Ok(())
    }

    fn req(&self, id: &MessageId, timeout_ms: u64) -> Result<(), ProtocolError> {
        let max_ms = self.limits().max_req_timeout_ms;
        let (delay, clamped) = protocol::req_timeout(timeout_ms, max_ms);
        if clamped {
            tracing::info!("REQ timeout {timeout_ms}ms out of range, clamped to {delay:?}");
        }
        self.channel()?
            .requeue(&*self.client, id, delay)
            .map_err(|e| {
                ProtocolError::non_fatal(ErrorCode::ReqFailed, format!("REQ {id} failed {e}"))
            })?;
        let c = &self.client.requeue_count;
        c.set(c.get() + 1);
        Ok(())
    }

    fn touch(&self, id: &MessageId) -> Result<(), ProtocolError> {
        let msg_timeout = self.client.settings.borrow().msg_timeout;
        self.channel()?
            .touch(&*self.client, id, msg_timeout)
            .map_err(|e| {
                ProtocolError::non_fatal(ErrorCode::TouchFailed, format!("TOUCH {id} failed {e}"))
            })
    }

    fn cls(&self) {
        self.client.ready_count.set(0);
        self.client.state.set(ClientState::Closing);
        self.client.respond(b"CLOSE_WAIT");
    }

    async fn publish(
        &mut self,
        topic_name: &str,
        bodies: Vec<Bytes>,
        defer: Option<Duration>,
        command: PublishCommand,
    ) -> Result<(), ProtocolError> {
        self.check_auth(command.name(), topic_name, "").await?;
        self.publish_unchecked(topic_name, bodies, defer, command)
            .await
    }

    async fn publish_unchecked(
        &mut self,
        topic_name: &str,
        bodies: Vec<Bytes>,
        defer: Option<Duration>,
        command: PublishCommand,
    ) -> Result<(), ProtocolError> {
        if let Some(shard) = self.frontend.peers.place().remote_owner(topic_name) {
            let n = u64::try_from(bodies.len()).unwrap_or(u64::MAX);
            let item = Item {
                topic: topic_name.to_owned(),
                bodies,
                defer,
            };
            let (answer, index, full) = self.outgoing.push(shard, item);
            self.client.count_publish(topic_name, n);
            self.client.push_reply(Reply::Remote {
                answer,
                index,
                command,
            });
            if full {
                self.outgoing.flush_one(&*self.frontend.peers, shard).await;
            }
            return Ok(());
        }
        let failed = |e: &dyn std::fmt::Display| command.failed(e);
        let topic = self
            .broker
            .topic(topic_name)
            .await
            .map_err(|e| failed(&e))?;
        let ack = topic.publish(&bodies, defer).map_err(|e| failed(&e))?;
        self.client.count_publish(topic_name, bodies.len() as u64);
        match ack {
            Ack::Now => self.client.respond(b"OK"),
            Ack::Wait(wait) => self.client.push_reply(Reply::Durable { wait, command }),
        }
        Ok(())
    }

    /// nsqd's `AUTH` after the decoder's checks: already set, disabled, the auth server, no
    /// authorisations, then the JSON answer.
    async fn auth(&mut self, secret: &[u8]) -> Result<(), ProtocolError> {
        if self
            .auth
            .as_ref()
            .is_some_and(AuthState::has_authorizations)
        {
            return Err(ProtocolError::fatal(
                ErrorCode::Invalid,
                "AUTH already set".to_owned(),
            ));
        }
        if self.frontend.auth.is_none() {
            return Err(ProtocolError::fatal(
                ErrorCode::AuthDisabled,
                "AUTH disabled".to_owned(),
            ));
        }
        self.auth_secret = String::from_utf8_lossy(secret).into_owned();
        self.query_auth().await?;
        let Some(state) = self.auth.as_ref().filter(|s| s.has_authorizations()) else {
            return Err(ProtocolError::fatal(
                ErrorCode::Unauthorized,
                "AUTH no authorizations found".to_owned(),
            ));
        };
        let answer = serde_json::json!({
            "identity": state.identity,
            "identity_url": state.identity_url,
            "permission_count": state.permission_count(),
        });
        self.client.respond(answer.to_string().as_bytes());
        Ok(())
    }

    /// Asks the auth servers about this connection's secret; keeps the answer. An error is
    /// logged (never shown to the client) and becomes `E_AUTH_FAILED AUTH failed`.
    async fn query_auth(&mut self) -> Result<(), ProtocolError> {
        let Some(servers) = self.frontend.auth.clone() else {
            return Ok(());
        };
        let remote_ip = self.peer.map(|p| p.ip().to_string()).unwrap_or_default();
        let common_name = self
            .client
            .tls
            .borrow()
            .as_ref()
            .map(|t| t.common_name.clone())
            .unwrap_or_default();
        let query = Query {
            remote_ip: &remote_ip,
            tls: self.tls_on,
            common_name: &common_name,
            secret: &self.auth_secret,
        };
        match servers.query(&query).await {
            Ok(state) => {
                *self.client.auth.borrow_mut() =
                    state.has_authorizations().then(|| state.identity());
                self.auth = Some(state);
                Ok(())
            }
            Err(e) => {
                tracing::warn!("AUTH failed {e}");
                Err(ProtocolError::fatal(
                    ErrorCode::AuthFailed,
                    "AUTH failed".to_owned(),
                ))
            }
        }
    }

    /// nsqd's `CheckAuth` for `cmd` on `topic` (and `channel`, `""` for a publish).
    async fn check_auth(
        &mut self,
        cmd: &str,
        topic: &str,
        channel: &str,
    ) -> Result<(), ProtocolError> {
        if self.frontend.auth.is_none() {
            return Ok(());
        }
        let Some(state) = self.auth.as_ref().filter(|s| s.has_authorizations()) else {
            return Err(ProtocolError::fatal(
                ErrorCode::AuthFirst,
                format!("AUTH required before {cmd}"),
            ));
        };
        if state.is_expired() {
            self.query_auth().await?;
        }
        let allowed = self
            .auth
            .as_ref()
            .is_some_and(|s| s.is_allowed(topic, channel));
        if allowed {
            return Ok(());
        }
        Err(ProtocolError::fatal(
            ErrorCode::Unauthorized,
            format!(
                "AUTH failed for {cmd} on {} {}",
                protocol::go_fmt::go_quote(topic.as_bytes()),
                protocol::go_fmt::go_quote(channel.as_bytes())
            ),
        ))
    }

    /// The connection is gone: leave the channel (requeueing what we had in flight); an
    /// ephemeral channel with no consumer left is deleted, and an ephemeral topic with no channel.
    pub async fn disconnect(&mut self) {
        let (Some(channel), Some(topic)) = (self.channel.take(), self.topic.take()) else {
            return;
        };
        let left = channel.remove_consumer(self.client.id);
        if left == 0 && channel.ephemeral {
            topic.delete_channel(&channel.name).await;
            if topic.ephemeral && topic.channels().is_empty() {
                self.broker.delete_topic(&topic.name).await;
            }
        }
    }
}
