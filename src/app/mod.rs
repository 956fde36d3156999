//! The application: the process around the shards. Starting and stopping ([`server`]), the
//! configuration built once from the options ([`config`]), the listeners ([`listen`]), nsqd's
//! HTTP API ([`http`]), the loops that talk to nsqlookupd and statsd ([`loops`]), `nsqd.dat`
//! ([`metadata`]), the `/stats` model ([`stats`]) and what shard 0 gathers from every shard
//! ([`gather`]), the file descriptor budget ([`fds`]), the TLS configuration ([`tls`]) and the
//! auth servers' client ([`auth`]), the offline tools `ringsq check` and `ringsq dump`
//! ([`tools`]), `GET /snapshot`'s consistent copy of the data directory ([`snapshot`]) and JSON
//! log lines ([`log_json`]).

pub mod auth;
pub mod config;
pub mod fds;
pub mod gather;
pub mod http;
pub mod listen;
pub mod log_json;
pub mod loops;
pub mod metadata;
pub mod node;
pub mod server;
pub mod snapshot;
pub mod stats;
pub mod tls;
pub mod tools;
