//! The writer: a connection's outbox (replies and message frames waiting for the socket) and
//! the task that writes it, with nsqd's flush rules and heartbeats.
//!
//! Channels deliver by writing message frames straight into the outbox; responses to commands
//! go through an ordered reply queue ([`Reply`]) so that an `OK` that must wait for the disk
//! (`--mem-queue-size 0`, `--ack-after-sync`) or for another shard never overtakes an earlier
//! one. The writer task owns the socket's sending side and decides when to flush: responses at
//! once; messages when the output buffer is full, when the client can take no more, or after
//! `output_buffer_timeout`. A write has the heartbeat interval as its deadline.

use super::client::{Client, Codec};
use super::forward::Answer;
use super::tls::TlsLayer;
use super::transport::{Output, Socket, Upgrades, READ_BUF_BYTES};
use crate::broker::topic::AckWait;
use crate::protocol::{self, MessageId, PublishCommand};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::Shutdown;
use std::rc::Rc;
use std::time::Instant;

/// Writes to client sockets, by every writer of the process (`/metrics`
/// `ringsq_socket_writes_total`: how well messages are batched into writes).
pub static SOCKET_WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The TLS layer, once IDENTIFY started it: the reader creates it, the writer uses it from
/// the offset the upgrade was queued at.
pub type TlsSlot = Rc<RefCell<Option<Rc<TlsLayer>>>>;

/// A reply whose `OK` may have to wait for the topic's log.
#[derive(Debug)]
pub enum Reply {
    /// Sent as soon as everything before it has been.
    Frame(Vec<u8>),
    /// A fatal error frame: sent after everything before it, then the connection closes
    /// (nothing queued after it is sent, as nsqd closes at once).
    Fatal(Vec<u8>),
    /// From here on the connection's output goes through this codec.
    StartCodec(Codec),
    /// From here on the connection's output goes through TLS.
    StartTls,
    /// `OK` once the topic's log got there; on failure the error frame
    /// `<code> <command> failed <err>` (fatal).
    Durable {
        wait: AckWait,
        command: PublishCommand,
    },
    /// A publish forwarded to the shard that owns its topic: `OK` once item `index` of the
    /// owner's answer is in and says so; else the error frame, as for `Durable`.
    Remote {
        answer: Rc<Answer>,
        index: usize,
        command: PublishCommand,
    },
}

#[derive(Debug, Default)]
pub struct Outbox {
    pub buf: Vec<u8>,
    /// `buf` holds a message frame since the last flush (the writer was woken for it).
    pub holds_messages: bool,
    /// Close the connection once `buf` is flushed (a fatal error was queued).
    pub close_after_flush: bool,
    /// `buf` from this offset on is the first output to go through the codec.
    pub codec_at: Option<(usize, Codec)>,
    /// `buf` from this offset on is the first output to go through TLS.
    pub tls_at: Option<usize>,
    pub replies: VecDeque<Reply>,
}

impl Outbox {
    /// Queues a reply: straight into `buf` when nothing waits before it, else behind the
    /// replies that wait (an `OK` for the disk, another shard's answer).
    pub fn push_reply(&mut self, reply: Reply) {
        match reply {
            Reply::Frame(frame) if self.replies.is_empty() => {
                self.buf.extend_from_slice(&frame);
            }
            Reply::Fatal(frame) if self.replies.is_empty() => {
                self.buf.extend_from_slice(&frame);
                self.close_after_flush = true;
            }
            Reply::StartCodec(codec) if self.replies.is_empty() => {
                self.codec_at = Some((self.buf.len(), codec));
            }
            Reply::StartTls if self.replies.is_empty() => {
                self.tls_at = Some(self.buf.len());
            }
            other => self.replies.push_back(other),
        }
    }

    /// Writes one message frame; true when the writer should look now (the first message
    /// since its last flush, or `buffer_size` reached).
    pub fn push_message(
        &mut self,
        timestamp_ns: i64,
        attempts: u16,
        id: &MessageId,
        body: &[u8],
        buffer_size: usize,
    ) -> bool {
        protocol::write_message(&mut self.buf, timestamp_ns, attempts, id, body);
        let first = !std::mem::replace(&mut self.holds_messages, true);
        first || self.buf.len() >= buffer_size
    }
}

/// What the writer should do next.
enum Flush {
    Now,
    /// Nothing to send before this instant (or a wake-up).
    Wait(Option<Instant>),
}

/// The writer task: replies and messages to the socket until the connection closes (`None`),
/// or, when it moves (`client.moving`), until everything queued is written: then the output
/// state is handed back and the socket left open.
pub(super) async fn write_loop(
    socket: Rc<Socket>,
    client: Rc<Client>,
    reading: Rc<Cell<bool>>,
    tls: TlsSlot,
    mut output: Output,
) -> Option<Output> {
    let mut spare: Vec<u8> = Vec::with_capacity(READ_BUF_BYTES);
    let mut interval = client.settings.borrow().heartbeat_interval;
    let mut next_heartbeat = interval.map(|h| Instant::now() + h);
    loop {
        resolve_replies(&client);
        let now = Instant::now();
        // IDENTIFY may have set another interval: it counts from now (nsqd resets its
        // heartbeat ticker), or the read deadline, twice the new interval, could pass first.
        let wanted = client.settings.borrow().heartbeat_interval;
        if wanted != interval {
            interval = wanted;
            next_heartbeat = interval.map(|h| now + h);
        }
        if let Some(at) = next_heartbeat.filter(|at| *at <= now) {
            client.respond(b"_heartbeat_");
            next_heartbeat = interval.map(|h| at.max(now) + h);
            continue;
        }
        let decision = if output.wants_write() {
            Flush::Now
        } else {
            flush_decision(&client)
        };
        match decision {
            Flush::Now => {
                if !flush(&socket, &client, &tls, &mut output, &mut spare).await {
                    client.closed.set(true);
                    break;
                }
            }
            Flush::Wait(until) => {
                if client.closed.get() && client.outbox.borrow().replies.is_empty() {
                    break;
                }
                if client.moving.get() && client.outbox.borrow().replies.is_empty() {
                    return Some(output);
                }
                let until = [until, next_heartbeat].into_iter().flatten().min();
                wait_for_work(&client, until).await;
            }
        }
    }
    // A reader still waiting on the socket (the broker is stopping, or a write failed) is
    // woken by shutting the read side too.
    socket.shutdown(if reading.get() {
        Shutdown::Both
    } else {
        Shutdown::Write
    });
    None
}

/// Writes the outbox (through the codec, within the write deadline); false when the
/// connection is done (write failed, or a fatal error was flushed).
async fn flush(
    socket: &Socket,
    client: &Client,
    tls: &TlsSlot,
    output: &mut Output,
    spare: &mut Vec<u8>,
) -> bool {
    let (close, upgrades) = {
        let mut out = client.outbox.borrow_mut();
        std::mem::swap(&mut out.buf, spare);
        out.holds_messages = false;
        let tls_at = out
            .tls_at
            .take()
            .and_then(|at| tls.borrow().clone().map(|layer| (at, layer)));
        (
            out.close_after_flush && out.buf.is_empty(),
            Upgrades {
                tls_at,
                codec_at: out.codec_at.take(),
            },
        )
    };
    let bytes = match output.encode(&upgrades, spare) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!("output: {e}");
            return false;
        }
    };
    if bytes.is_empty() {
        return !close;
    }
    // nsqd's write deadline: one heartbeat interval per write.
    let deadline = client
        .settings
        .borrow()
        .heartbeat_interval
        .map(|h| Instant::now() + h);
    SOCKET_WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (res, written) = socket.write_before(bytes, deadline).await;
    *spare = written;
    spare.clear();
    client.drained.notify_waiters();
    if let Err(e) = &res {
        tracing::info!("failed to write - {e}");
    }
    res.is_ok() && !close
}

/// Sleeps until woken, until `until`, or until the oldest durable reply is done.
async fn wait_for_work(client: &Client, until: Option<Instant>) {
    /// The reply at the head of the queue, if it waits for something.
    enum Front {
        Durable(AckWait),
        Remote(Rc<Answer>),
    }
    let front = match client.outbox.borrow().replies.front() {
        Some(Reply::Durable { wait, .. }) => Some(Front::Durable(wait.clone())),
        Some(Reply::Remote { answer, .. }) => Some(Front::Remote(Rc::clone(answer))),
        _ => None,
    };
    let durable = async {
        match front {
            Some(Front::Durable(wait)) => {
                // Its outcome is read again by `resolve_replies`.
                let _outcome = wait.wait().await;
            }
            Some(Front::Remote(answer)) => answer.ready().await,
            None => std::future::pending().await,
        }
    };
    let sleep = async {
        match until {
            Some(at) => tokio::time::sleep_until(at.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = client.wake.notified() => {}
        () = sleep => {}
        () = durable => {}
    }
}

/// Moves every reply at the head of the queue that can be sent now into the outbox. After a
/// fatal error (an invalid command, or a publish that failed on the disk or on another shard)
/// nothing more is sent: the connection closes, as nsqd's does at once.
fn resolve_replies(client: &Client) {
    let mut out = client.outbox.borrow_mut();
    while let Some(front) = out.replies.front() {
        let (frame, fatal) = match front {
            Reply::Frame(_) | Reply::Fatal(_) => match out.replies.pop_front() {
                Some(Reply::Frame(f)) => (f, false),
                Some(Reply::Fatal(f)) => (f, true),
                _ => break,
            },
            Reply::StartCodec(codec) => {
                let codec = *codec;
                out.codec_at = Some((out.buf.len(), codec));
                out.replies.pop_front();
                continue;
            }
            Reply::StartTls => {
                out.tls_at = Some(out.buf.len());
                out.replies.pop_front();
                continue;
            }
            Reply::Durable { wait, command } => {
                let outcome = wait.outcome().map(|r| r.map_err(|e| e.to_string()));
                let Some(reply) = publish_reply(outcome, *command) else {
                    break;
                };
                out.replies.pop_front();
                reply
            }
            Reply::Remote {
                answer,
                index,
                command,
            } => {
                let outcome = answer.outcome(*index).map(|r| r.map_err(|f| f.to_string()));
                let Some(reply) = publish_reply(outcome, *command) else {
                    break;
                };
                out.replies.pop_front();
                reply
            }
        };
        out.buf.extend_from_slice(&frame);
        if fatal {
            out.close_after_flush = true;
            out.replies.clear();
            break;
        }
    }
}

/// A publish's reply once its outcome is known: `OK`, or the fatal
/// `<code> <command> failed <why>` (and `true`: fatal). `None` while it is not known.
fn publish_reply(
    outcome: Option<Result<(), String>>,
    command: PublishCommand,
) -> Option<(Vec<u8>, bool)> {
    let mut frame = Vec::new();
    match outcome? {
        Ok(()) => {
            protocol::write_response(&mut frame, b"OK");
            Some((frame, false))
        }
        Err(why) => {
            protocol::write_error(&mut frame, &command.failed(&why));
            Some((frame, true))
        }
    }
}

/// Whether to write the outbox now. Whatever it holds when the writer runs is written at once:
/// the writer is woken by the first message after a flush and runs once the tasks already
/// ready have run, so the messages a channel hands out in one turn (and while the previous
/// write was in flight) go in one write, and a lone message is not held for a timer. So
/// `output_buffer_timeout` (nsqd's bound on how long a message waits in the buffer) holds
/// with room to spare: under load the batches are what one turn of the runtime delivers.
fn flush_decision(client: &Client) -> Flush {
    if client.outbox.borrow().buf.is_empty() {
        Flush::Wait(None)
    } else {
        Flush::Now
    }
}
