//! Topic and channel administration (HTTP `/topic/*` and `/channel/*`, nsqadmin's actions) as
//! operations the shard that owns the topic runs ([`Broker::topic_op`]). The HTTP layer checks
//! the request, routes the operation to the owner (`shard::topic_op`) and turns the result into
//! nsqd's answer; `nsqd.dat` is then written by shard 0.

use super::Broker;
use ringsq_storage::Io;
use std::rc::Rc;
use std::time::SystemTime;

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
}

/// `since=` could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidSince;

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpError {
    TopicNotFound,
    ChannelNotFound,
    InvalidSince,
    /// Anything else (a disk error, the broker stopping): logged, `500 INTERNAL_ERROR`.
    Internal(String),
}

fn internal(e: &dyn std::fmt::Display) -> OpError {
    OpError::Internal(e.to_string())
}

impl<I: Io> Broker<I> {
    /// Runs `op` on topic `name`, which this shard owns.
    pub async fn topic_op(&self, name: &str, op: TopicOp) -> Result<(), OpError> {
        match op {
            TopicOp::Create => self.topic(name).await.map(drop).map_err(|e| internal(&e)),
            TopicOp::Delete => {
                if self.delete_topic(name).await {
                    Ok(())
                } else {
                    Err(OpError::TopicNotFound)
                }
            }
            TopicOp::Empty => {
                self.existing(name)?.empty();
                Ok(())
            }
            TopicOp::Pause(paused) => {
                self.existing(name)?.pause(paused);
                Ok(())
            }
            op => self.channel_op(name, op).await,
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
            TopicOp::Create | TopicOp::Delete | TopicOp::Empty | TopicOp::Pause(_) => {}
        }
        Ok(())
    }

    fn existing(&self, name: &str) -> Result<Rc<super::topic::Topic<I>>, OpError> {
        self.get_topic(name).ok_or(OpError::TopicNotFound)
    }
}
