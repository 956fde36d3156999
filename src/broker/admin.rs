//! Topic and channel administration (HTTP `/topic/*` and `/channel/*`, nsqadmin's actions) as
//! operations the shard that owns the topic runs ([`Broker::topic_op`]). The HTTP layer checks
//! the request, routes the operation to the owner (`shard::topic_op`) and turns the result into
//! nsqd's answer; `nsqd.dat` is then written by shard 0.

use super::channel::{ChannelLimits, DeadList, Pick};
use super::Broker;
use crate::protocol::MessageId;
use ringsq_storage::Io;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

/// One administrative operation on a topic (sendable: it may run on another shard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicOp {
    /// Gets or creates the topic.
    Create,
    Delete,
    Empty,
    Pause(bool),
    /// Gets or creates a channel; a channel it creates starts at `since` if given. An invalid
    /// `since` (`Err`) is refused once the topic is known to exist (nsqd's order of checks).
    ChannelCreate {
        channel: String,
        since: Result<Option<SystemTime>, InvalidSince>,
    },
    ChannelDelete(String),
    ChannelEmpty(String),
    ChannelPause {
        channel: String,
        paused: bool,
    },
    ChannelRewind {
        channel: String,
        since: SystemTime,
    },
    /// Sets the channel's own limits (`None` leaves one as it is; both `None`: only asks) and
    /// answers those in effect ([`OpReply::Limits`]); on disk before the answer.
    ChannelConfig {
        channel: String,
        max_attempts: Option<u16>,
        message_ttl: Option<Duration>,
    },
    /// The count and the oldest `limit` dead letters ([`OpReply::Dead`]).
    DeadList {
        channel: String,
        limit: usize,
    },
    /// Dead letters back into the channel: every one, or those with this id.
    DeadRequeue {
        channel: String,
        id: Option<MessageId>,
    },
    /// Dead letters deleted: every one, or those with this id.
    DeadEmpty {
        channel: String,
        id: Option<MessageId>,
    },
}

/// What an operation answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpReply {
    Done,
    Limits(ChannelLimits),
    Dead(DeadList),
}

/// `since=` could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidSince;

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpError {
    TopicNotFound,
    ChannelNotFound,
    /// No dead letter has the id given.
    MessageNotFound,
    InvalidSince,
    /// Anything else (a disk error, the broker stopping): logged, `500 INTERNAL_ERROR`.
    Internal(String),
}

fn internal(e: &dyn std::fmt::Display) -> OpError {
    OpError::Internal(e.to_string())
}

impl<I: Io> Broker<I> {
    /// Runs `op` on topic `name`, which this shard owns.
    pub async fn topic_op(&self, name: &str, op: TopicOp) -> Result<OpReply, OpError> {
        match op {
            TopicOp::Create => self
                .topic(name)
                .await
                .map(|_| OpReply::Done)
                .map_err(|e| internal(&e)),
            TopicOp::Delete => {
                if self.delete_topic(name).await {
                    Ok(OpReply::Done)
                } else {
                    Err(OpError::TopicNotFound)
                }
            }
            TopicOp::Empty => {
                self.existing(name)?.empty();
                Ok(OpReply::Done)
            }
            TopicOp::Pause(paused) => {
                self.existing(name)?.pause(paused);
                Ok(OpReply::Done)
            }
            op @ (TopicOp::ChannelConfig { .. }
            | TopicOp::DeadList { .. }
            | TopicOp::DeadRequeue { .. }
            | TopicOp::DeadEmpty { .. }) => self.dead_op(name, op).await,
            op => self.channel_op(name, op).await.map(|()| OpReply::Done),
        }
    }

    /// The limits and dead letters of a channel.
    async fn dead_op(&self, name: &str, op: TopicOp) -> Result<OpReply, OpError> {
        let topic = self.existing(name)?;
        let channel_of = |c: &str| topic.get_channel(c).ok_or(OpError::ChannelNotFound);
        let found = |n: u64, id: Option<MessageId>| {
            if n == 0 && id.is_some() {
                Err(OpError::MessageNotFound)
            } else {
                Ok(OpReply::Done)
            }
        };
        let pick = |id: Option<MessageId>| id.map_or(Pick::All, Pick::Id);
        match op {
            TopicOp::ChannelConfig {
                channel,
                max_attempts,
                message_ttl,
            } => {
                let channel = channel_of(&channel)?;
                if max_attempts.is_some() || message_ttl.is_some() {
                    channel.configure(max_attempts, message_ttl);
                    topic
                        .save_channel(&channel)
                        .await
                        .map_err(|e| internal(&e))?;
                }
                Ok(OpReply::Limits(channel.limits()))
            }
            TopicOp::DeadList { channel, limit } => channel_of(&channel)?
                .list_dead(limit)
                .await
                .map(OpReply::Dead)
                .map_err(|e| internal(&e)),
            TopicOp::DeadRequeue { channel, id } => {
                let channel = channel_of(&channel)?;
                let path = topic.state_path(&channel);
                let n = channel
                    .requeue_dead(pick(id), path.as_deref())
                    .await
                    .map_err(|e| internal(&e))?;
                found(n, id)
            }
            TopicOp::DeadEmpty { channel, id } => {
                let channel = channel_of(&channel)?;
                let path = topic.state_path(&channel);
                let n = channel
                    .empty_dead(pick(id), path.as_deref())
                    .await
                    .map_err(|e| internal(&e))?;
                found(n, id)
            }
            _ => Ok(OpReply::Done),
        }
    }

    async fn channel_op(&self, name: &str, op: TopicOp) -> Result<(), OpError> {
        let topic = self.existing(name)?;
        let channel_of = |c: &str| topic.get_channel(c).ok_or(OpError::ChannelNotFound);
        match op {
            TopicOp::ChannelCreate { channel, since } => {
                let since = since.map_err(|InvalidSince| OpError::InvalidSince)?;
                let (channel, created) = topic
                    .channel_created(&channel)
                    .await
                    .map_err(|e| internal(&e))?;
                if let (Some(since), true) = (since, created) {
                    topic
                        .rewind_channel(&channel, since)
                        .await
                        .map_err(|e| internal(&e))?;
                }
            }
            TopicOp::ChannelRewind { channel, since } => {
                let channel = channel_of(&channel)?;
                topic
                    .rewind_channel(&channel, since)
                    .await
                    .map_err(|e| internal(&e))?;
            }
            TopicOp::ChannelDelete(channel) => {
                if !topic.delete_channel(&channel).await {
                    return Err(OpError::ChannelNotFound);
                }
                // nsqd: an ephemeral topic goes with its last channel.
                if topic.ephemeral && topic.channels().is_empty() {
                    self.delete_topic(&topic.name).await;
                }
            }
            TopicOp::ChannelEmpty(channel) => channel_of(&channel)?.empty(),
            TopicOp::ChannelPause { channel, paused } => {
                let channel = channel_of(&channel)?;
                channel.paused.set(paused);
                if !paused {
                    channel.wake();
                }
            }
            TopicOp::Create
            | TopicOp::Delete
            | TopicOp::Empty
            | TopicOp::Pause(_)
            | TopicOp::ChannelConfig { .. }
            | TopicOp::DeadList { .. }
            | TopicOp::DeadRequeue { .. }
            | TopicOp::DeadEmpty { .. } => {}
        }
        Ok(())
    }

    fn existing(&self, name: &str) -> Result<Rc<super::topic::Topic<I>>, OpError> {
        self.get_topic(name).ok_or(OpError::TopicNotFound)
    }
}
