//! Executes decoded commands for one connection: nsqd's `protocol_v2.go` semantics on top of the
//! broker. The decoder has already checked state, parameters, names and sizes; what is left here
//! needs the broker (topics, channels, in-flight messages) or the client's negotiated settings.

use super::conn::protocol_state;
use crate::broker::channel::Channel;
use crate::broker::client::{Client, ClientState, Codec, Reply};
use crate::broker::topic::{Ack, Topic};
use crate::broker::Broker;
use crate::protocol::{self, Command, Limits, MessageId, ProtocolError};
use bytes::Bytes;
use std::rc::Rc;
use std::time::Duration;

#[derive(Debug)]
pub struct Session {
    pub broker: Rc<Broker>,
    pub client: Rc<Client>,
    channel: Option<Rc<Channel>>,
    topic: Option<Rc<Topic>>,
    /// Set by an IDENTIFY that negotiated compression: the reader decodes every byte after it.
    pub new_codec: Option<Codec>,
}

impl Session {
    pub fn new(broker: Rc<Broker>, client: Rc<Client>) -> Self {
        Self {
            broker,
            client,
            channel: None,
            topic: None,
            new_codec: None,
        }
    }

    pub fn limits(&self) -> Limits {
        crate::options_limits(&self.broker.options)
    }

    pub fn protocol_state(&self) -> protocol::ClientState {
        protocol_state(self.client.state.get())
    }

    pub fn heartbeats_enabled(&self) -> bool {
        self.client.settings.borrow().heartbeat_interval.is_some()
    }

    /// Runs one command; false when the connection must close (after a fatal error).
    pub async fn exec(&mut self, cmd: Command) -> bool {
        let result = match cmd {
            Command::Identify(body) => self.identify(&body),
            Command::Auth(_) => Err(ProtocolError::fatal(
                "E_AUTH_DISABLED",
                "AUTH disabled".to_owned(),
            )),
            Command::Sub { topic, channel } => self.sub(&topic, &channel).await,
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
                self.publish(&topic, vec![body], None, "PUB", "E_PUB_FAILED")
                    .await
            }
            Command::Mpub { topic, bodies } => {
                self.publish(&topic, bodies, None, "MPUB", "E_MPUB_FAILED")
                    .await
            }
            Command::Dpub {
                topic,
                defer_ms,
                body,
            } => {
                let defer = Some(Duration::from_millis(defer_ms));
                self.publish(&topic, vec![body], defer, "DPUB", "E_DPUB_FAILED")
                    .await
            }
        };
        match result {
            Ok(()) => true,
            Err(err) => {
                tracing::info!(client = %self.client.remote, "{err}");
                self.client.respond_error(&err);
                !err.fatal
            }
        }
    }

    fn identify(&mut self, body: &[u8]) -> Result<(), ProtocolError> {
        let req = protocol::parse_identify(body)?;
        let limits = self.limits();
        let current = self.client.settings.borrow().clone();
        let settings = protocol::resolve_identify(&req, &current, &limits)?;
        // TLS is not built: a client that asks for it carries on in plain text.
        let o = &self.broker.options;
        let enabled = protocol::ServerFeatures {
            tls: false,
            snappy: o.snappy,
            deflate: o.deflate,
        };
        let negotiated = if req.feature_negotiation {
            Some(protocol::negotiate(&req, enabled, &limits)?)
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
            &settings, &n, &limits, false,
        ));
        // nsqd upgrades after the JSON frame and confirms with an `OK` through the new codec
        // (at most one of the two: both together was refused above).
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
        let sub_failed = |e: &dyn std::fmt::Display| {
            ProtocolError::fatal("E_SUB_FAILED", format!("SUB failed {e}"))
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
            .add_consumer(Rc::clone(&self.client))
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
            ProtocolError::fatal("E_INVALID", "cannot FIN in current state".to_owned())
        })
    }

    fn fin(&self, id: &MessageId) -> Result<(), ProtocolError> {
        self.channel()?
            .finish(&self.client, id)
            .map_err(|e| ProtocolError::non_fatal("E_FIN_FAILED", format!("FIN {id} failed {e}")))
    }

    fn req(&self, id: &MessageId, timeout_ms: u64) -> Result<(), ProtocolError> {
        let max_ms = self.limits().max_req_timeout_ms;
        let (delay, clamped) = protocol::req_timeout(timeout_ms, max_ms);
        if clamped {
            tracing::info!(client = %self.client.remote, "REQ timeout {timeout_ms}ms out of range, clamped to {delay:?}");
        }
        self.channel()?
            .requeue(&self.client, id, delay)
            .map_err(|e| ProtocolError::non_fatal("E_REQ_FAILED", format!("REQ {id} failed {e}")))
    }

    fn touch(&self, id: &MessageId) -> Result<(), ProtocolError> {
        let msg_timeout = self.client.settings.borrow().msg_timeout;
        self.channel()?
            .touch(&self.client, id, msg_timeout)
            .map_err(|e| {
                ProtocolError::non_fatal("E_TOUCH_FAILED", format!("TOUCH {id} failed {e}"))
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
        command: &'static str,
        failed_code: &'static str,
    ) -> Result<(), ProtocolError> {
        let failed = |e: &dyn std::fmt::Display| {
            ProtocolError::fatal(failed_code, format!("{command} failed {e}"))
        };
        let topic = self
            .broker
            .topic(topic_name)
            .await
            .map_err(|e| failed(&e))?;
        let ack = topic.publish(&bodies, defer).map_err(|e| failed(&e))?;
        self.client.count_publish(topic_name, bodies.len() as u64);
        match ack {
            Ack::Now => self.client.respond(b"OK"),
            Ack::Wait {
                log,
                ticket,
                synced,
            } => self.client.push_reply(Reply::Durable {
                log,
                ticket,
                synced,
                failed_code,
                command,
            }),
        }
        Ok(())
    }

    /// The connection is gone: leave the channel (requeueing what we had in flight); an
    /// ephemeral channel with no consumer left is deleted, and an ephemeral topic with no channel.
    pub async fn disconnect(&mut self) {
        let (Some(channel), Some(topic)) = (self.channel.take(), self.topic.take()) else {
            return;
        };
        let left = channel.remove_consumer(self.client.id);
        if left == 0 && channel.ephemeral {
            topic.delete_channel(&channel.name);
            if topic.ephemeral && topic.channels().is_empty() {
                self.broker.delete_topic(&topic.name).await;
            }
        }
    }
}
