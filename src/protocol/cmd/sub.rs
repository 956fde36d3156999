//! `SUB`: subscribe to a channel of a topic (once per connection).
//!
//! ```text
//! SUB <topic_name> <channel_name>\n
//! ```
//! Go order: state must be init (`E_INVALID cannot SUB in current state`); heartbeats must be
//! on (`E_INVALID cannot SUB with heartbeats disabled`); at least 3 params (`E_INVALID SUB
//! insufficient number of parameters`; extra params are ignored); topic (`E_BAD_TOPIC SUB topic
//! name %q is not valid`); channel (`E_BAD_CHANNEL SUB channel name %q is not valid`). Auth and
//! the subscription itself are the broker's.

use super::Command;
use crate::protocol::decode::{channel_param, topic_param, ClientState, DecodeContext, Stop};
use crate::protocol::error::ErrorCode;
use crate::protocol::error::ProtocolError;

pub(crate) fn parse(params: &[&[u8]], cx: &DecodeContext<'_>) -> Result<Command, Stop> {
    if cx.state != ClientState::Init {
        return Err(ProtocolError::fatal(ErrorCode::Invalid, "cannot SUB in current state").into());
    }
    if !cx.heartbeats_enabled {
        return Err(ProtocolError::fatal(
            ErrorCode::Invalid,
            "cannot SUB with heartbeats disabled",
        )
        .into());
    }
    let (Some(topic), Some(channel)) = (params.get(1), params.get(2)) else {
        return Err(ProtocolError::fatal(
            ErrorCode::Invalid,
            "SUB insufficient number of parameters",
        )
        .into());
    };
    let topic = topic_param(topic, "SUB")?;
    let channel = channel_param(channel, "SUB")?;
    Ok(Command::Sub { topic, channel })
}

pub(super) fn encode(out: &mut Vec<u8>, topic: &str, channel: &str) {
    out.extend_from_slice(format!("SUB {topic} {channel}\n").as_bytes());
}
