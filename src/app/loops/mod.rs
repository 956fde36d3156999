//! Background loops that talk to the outside world: the nsqlookupd registrations ([`lookup`])
//! with the `/channels` query a new topic makes ([`lookupd_channels`]), and statsd ([`statsd`]).
//! (Checkpoints and the queue scan live with the broker.)

pub mod lookup;
pub mod lookupd_channels;
pub mod statsd;
