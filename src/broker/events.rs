//! Topic and channel lifecycle events, broadcast to whoever keeps a picture of them: the
//! `nsqd.dat` writer and one lookup loop per nsqlookupd (nsqd's `Notify`).
//!
//! The channel is bounded. A receiver that falls behind gets `Lagged` and must resynchronise
//! from the broker's current state (write `nsqd.dat` again, re-REGISTER everything), so a lost
//! event can never leave a stale picture. Sending with no receiver is not an error.

use tokio::sync::broadcast;

/// Events a receiver may fall behind by before it must resynchronise.
pub const EVENTS_BUFFERED_MAX: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaEvent {
    TopicCreated(String),
    TopicDeleted(String),
    ChannelCreated { topic: String, channel: String },
    ChannelDeleted { topic: String, channel: String },
}

impl MetaEvent {
    /// True when the event changes what `nsqd.dat` holds (ephemeral names are never persisted).
    pub fn is_persistent(&self) -> bool {
        use crate::protocol::is_ephemeral;
        match self {
            Self::TopicCreated(t) | Self::TopicDeleted(t) => !is_ephemeral(t),
            Self::ChannelCreated { topic, channel } | Self::ChannelDeleted { topic, channel } => {
                !is_ephemeral(topic) && !is_ephemeral(channel)
            }
        }
    }
}

/// The sending side, shared by the broker and its topics.
#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<MetaEvent>,
}

impl Default for Events {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(EVENTS_BUFFERED_MAX);
        Self { tx }
    }
}

impl Events {
    pub fn send(&self, event: MetaEvent) {
        // No receiver yet (start-up, tests) is fine: receivers resynchronise when they start.
        let _no_receiver = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<MetaEvent> {
        self.tx.subscribe()
    }
}
