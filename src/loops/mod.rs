//! Background loops that talk to the outside world: the nsqlookupd registrations ([`lookup`]).
//! (Checkpoints and the queue scan live with the broker.)

pub mod lookup;
