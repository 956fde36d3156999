//! The shard boundary: topics spread over one `io_uring` runtime per core (`--shards N`).
//!
//! Every call from one shard to another goes through this module and looks different from a
//! local call: [`Link::call`] (run a closure on another shard's thread, await its answer) or
//! [`Link::send`] (queue a job there). Nothing else crosses threads: a shard's state is `Rc` +
//! `Cell`/`RefCell` and never leaves its thread.
//!
//! # Design notes
//!
//! - **Ownership.** A topic belongs to shard [`owner`]`(name, N)` (CRC-32 of the name, mod N),
//!   a pure function: every thread finds the owner without asking anyone. The owner holds the
//!   topic's log, its channels (cursors, in-flight, deferred, park logs), their timers and the
//!   checkpoint and recent-save loops that save them, in its own `Broker` with no lock on the
//!   message path. `storage/` knows nothing of shards: each thread has its own file budget and
//!   write health (thread-locals there), and the broker gives each shard `1/N` of the budget.
//! - **Connections** are accepted on every shard: one `SO_REUSEPORT` TCP listener per shard
//!   (shard 0 binds first, port 0 included, the others bind to its port); a unix socket is
//!   accepted on shard 0 and its connections dealt round-robin to the shards. A connection
//!   stays where it was accepted while it only publishes.
//! - **Publishing across shards** ([`forward`]): a PUB/MPUB/DPUB for a topic of another shard
//!   is queued, with its bodies, in a batch per target shard; the batch goes when the
//!   connection has run the commands of one read (one cross-thread wake per batch, never per
//!   message). Its `OK` — or its error frame — waits in the connection's ordered reply queue
//!   for the owner's answer, which the owner sends once its ack policy is met (so
//!   `--ack-after-sync` still means the owner's fsync covers it). The queues are bounded in
//!   jobs and in bytes: a slow shard makes its publishers wait, memory does not grow.
//! - **Consumers move to their topic** ([`handoff`]): a `SUB` naming a topic of another shard
//!   stops the connection at that command boundary, lets its writer flush every reply already
//!   queued (forwarded `OK`s included), then moves the socket (a duplicate of its descriptor,
//!   taken by number with `pidfd_getfd` on our own process: tokio-uring's streams lend no
//!   `AsFd`, and `unsafe` is denied) and the connection's state (IDENTIFY settings, TLS and
//!   compression streams, unread input, client id, counters, AUTH) to the owner, which runs
//!   the `SUB` there. Delivery, FIN, REQ and TOUCH are then local: a consumer costs no
//!   cross-shard traffic per message. The alternative — consumers served from their accepting
//!   shard, messages and FINs crossing per batch — costs two crossings per message batch for
//!   ever, instead of one move per connection.
//! - **The control plane has one owner, shard 0**: HTTP/HTTPS listeners, `nsqd.dat` (written
//!   by shard 0 from a picture gathered from every shard), nsqlookupd registration (events of
//!   every shard on one broadcast channel; `REGISTER` of everything gathered), statsd, and the
//!   nsqlookupd `/channels` query a new topic makes. A topic is created and deleted by its
//!   owner (only it can open its log); HTTP's `/topic/*` and `/channel/*` are routed there;
//!   `/stats`, `/metrics` and `/ping` are gathered ([`gather`]).
//! - **Start and stop** ([`runner`]): shard 0 runs on the main thread, the others on their own;
//!   every shard opens its topics at once (recovery in parallel), then shard 0 writes
//!   `nsqd.dat` and the listeners open. A clean stop closes every shard's listeners and
//!   clients, writes `nsqd.dat`, then flushes, fsyncs and saves every shard's topics.
//!
//! With `--shards 1` there is one thread and no call ever crosses: everything is as it was
//! before shards.

pub mod forward;
mod mesh;
mod peers;
pub mod runner;

pub use crate::broker::place::{owner, Place};
pub use crate::options::SHARDS_MAX;
pub use mesh::{Gone, Job, Link, Mesh, Shard};

use crate::broker::admin::{OpError, OpReply, TopicOp};

/// Runs `op` on topic `name` on the shard that owns it: here, or through a cross-shard call.
pub async fn topic_op(shard: &Shard, name: &str, op: TopicOp) -> Result<OpReply, OpError> {
    let Some(owner) = shard.place.remote_owner(name) else {
        return shard.broker.topic_op(name, op).await;
    };
    let name = name.to_owned();
    shard
        .link
        .call(
            owner,
            move |s| async move { s.broker.topic_op(&name, op).await },
        )
        .await
        .unwrap_or_else(|gone| Err(OpError::Internal(gone.to_string())))
}

/// The number of shards to run: `--shards`, or (0) the CPUs this process may use.
pub fn count(requested: u64) -> usize {
    if requested == 0 {
        return std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    }
    usize::try_from(requested.min(u64::from(SHARDS_MAX))).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_a_pure_function_of_the_name() {
        assert_eq!(owner("anything", 1), 0);
        assert_eq!(owner("anything", 0), 0);
        for n in [2, 3, 16, 64] {
            for name in ["a", "orders", "t#ephemeral", "x.y_z-1"] {
                let o = owner(name, n);
                assert!(o < n);
                assert_eq!(o, owner(name, n), "{name} {n}");
                assert_eq!(o, crc32fast::hash(name.as_bytes()) as usize % n);
            }
        }
        // Names spread: 1000 names over 4 shards, each shard gets a fair part.
        let mut per = [0usize; 4];
        for i in 0..1000 {
            per[owner(&format!("topic-{i}"), 4)] += 1;
        }
        assert!(per.iter().all(|&n| n > 150), "{per:?}");
    }

    #[test]
    fn place_routes_remote_topics() {
        let p = Place { index: 1, count: 2 };
        let local = (0..100)
            .map(|i| format!("t{i}"))
            .find(|t| p.owns(t))
            .unwrap_or_default();
        assert_eq!(p.remote_owner(&local), None);
        let remote = (0..100)
            .map(|i| format!("t{i}"))
            .find(|t| !p.owns(t))
            .unwrap_or_default();
        assert_eq!(p.remote_owner(&remote), Some(0));
        assert!(Place::SOLE.owns("anything"));
        assert_eq!(count(3), 3);
        assert!(count(0) >= 1);
    }
}
