//! Background loops that talk to the outside world: the nsqlookupd registrations ([`lookup`])
//! and statsd ([`statsd`]).
//! (Checkpoints and the queue scan live with the broker.)

pub mod lookup;
pub mod statsd;
