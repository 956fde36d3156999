//! One client connection: the magic, then a reader loop (bytes → `protocol::decode` → `exec`)
//! and a writer task (outbox → socket, with nsqd's flush rules and heartbeats). Bytes go
//! through [`super::transport`] (socket, compression) both ways.
//!
//! The reader never waits for the disk: a publish appends (synchronously reserving its place in
//! the log) and queues an ordered reply; the writer sends that `OK` when the log has written or
//! fsynced it. So a pipelining publisher gets group commit across all its in-flight commands.
//!
//! Deadlines, as nsqd's: each command (its line and its body, however many reads they take)
//! must arrive within twice the connection's heartbeat interval from the end of the previous
//! command; then the connection is closed, after the error nsqd sends for the read that timed
//! out (`E_BAD_MESSAGE PUB failed to read message body`, ...). No deadline when heartbeats are
//! disabled (IDENTIFY `heartbeat_interval` -1). Beyond nsqd, the 4-byte magic has the same
//! deadline (from the default heartbeat interval). A write has the heartbeat interval.
//!
//! Bounded work: between two waits for its socket the reader runs the commands of one read
//! (at most 16 KiB of input, so at most 4 096 commands) or of one decompression step (16 KiB,
//! or one snappy chunk of at most 64 KiB), then lets other tasks run; while it decodes
//! compressed input it already holds (a compression bomb), it also pauses every
//! [`COMMANDS_PER_TURN`] commands ([`super::transport::Turn`]). A consumer's batch of FINs,
//! which came with one read, is never cut: the deliveries that follow it stay large.
//!
//! Shards: publishes for topics of other shards are sent, as one batch per shard, before the
//! reader waits for anything (their `OK`s are `Reply::Remote`s). A `SUB` for another shard's
//! topic moves the connection ([`crate::shard::handoff`]): the reader stops at that command
//! boundary, the writer writes every reply already queued (forwarded `OK`s included: it
//! waits for their answers) and hands its output state back, and the socket, the TLS and
//! compression state, the unread input, the client and the session go to the owner
//! ([`resume`]), which runs the `SUB` and serves the connection from then on. A connection
//! whose writer closed meanwhile (a fatal error went out) is closed, not moved.

use super::exec;
use super::tls::TlsLayer;
use super::transport::{Filled, Input, Output, Socket, Upgrades, READ_BUF_BYTES};
use super::Frontend;
use crate::broker::client::{Client, ClientSettings, ClientState, Reply};
use crate::broker::Broker;
use crate::fds::Admitted;
use crate::protocol::{self, Command, Decoded};
use crate::shard::forward::Answer;
use crate::shard::handoff::Handoff;
use crate::shard::Shard;
use std::cell::{Cell, RefCell};
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A publisher with more unsent replies than this is not read from until they drain.
const REPLIES_PENDING_MAX: usize = 4096;
const MAGIC_BYTES: usize = 4;
/// While decoding input it already holds, the reader pauses after this many commands.
pub const COMMANDS_PER_TURN: usize = 64;
/// How long the writer may take to flush what is left once the reader has finished.
const CLOSE_FLUSH_MAX: Duration = Duration::from_secs(10);

/// The TLS layer, once IDENTIFY started it: the reader creates it, the writer uses it from
/// the offset the upgrade was queued at.
type TlsSlot = Rc<RefCell<Option<Rc<TlsLayer>>>>;

/// nsqd's deadline for the TLS handshake after IDENTIFY `tls_v1`.
const TLS_HANDSHAKE_MAX: Duration = Duration::from_secs(5);

/// A connection past its magic, on the shard that serves it now.
struct Conn {
    socket: Rc<Socket>,
    input: Input,
    output: Output,
    tls: TlsSlot,
    /// Plain input not yet decoded.
    buf: Vec<u8>,
    session: exec::Session,
    admitted: Admitted,
    peer: Option<SocketAddr>,
}

/// Why the reader stopped.
enum Ended {
    Closed,
    /// A `SUB` for a topic of another shard: the connection moves there.
    Move,
}

/// Serves one client on `socket` (`peer` is `None` on a unix socket).
pub async fn handle(
    socket: Socket,
    peer: Option<SocketAddr>,
    frontend: Rc<Frontend>,
    admitted: Admitted,
) {
    let broker = Rc::clone(&frontend.broker);
    let socket = Rc::new(socket);
    let settings = default_settings(&broker, peer);
    let magic_deadline = settings.heartbeat_interval.map(|h| Instant::now() + h * 2);
    let Some(buf) = read_magic(&socket, magic_deadline).await else {
        socket.shutdown(Shutdown::Both);
        return;
    };
    let remote = peer.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
    let client = Rc::new(Client::new(
        broker.next_client_id(),
        remote,
        settings,
        broker
            .start_unix_s
            .max(crate::broker::guid::now_ns() / 1_000_000_000),
    ));
    let conn = Conn {
        input: Input::new(Rc::clone(&socket)),
        socket,
        output: Output::default(),
        tls: Rc::new(RefCell::new(None)),
        buf,
        session: exec::Session::new(frontend, client, peer),
        admitted,
        peer,
    };
    serve(conn, None).await;
}

/// Takes over a connection that moved here from another shard (a `SUB` for one of our
/// topics): its socket, TLS and compression state, client and session, then runs the `SUB`
/// and serves it as if it had been accepted here.
pub fn resume(shard: &Rc<Shard>, h: Handoff) {
    if shard.broker.exiting.get() {
        // Stopping: the connection closes with its socket (dropped here).
        return;
    }
    let frontend = Rc::clone(&shard.frontend);
    tokio::task::spawn_local(async move {
        let Handoff {
            socket,
            peer,
            admitted,
            client,
            session,
            mut input,
            encoder,
            buf,
            sub: (topic, channel),
        } = h;
        let socket = Rc::new(Socket::from_moving(socket));
        let tls = input.tls.take().map(Rc::new);
        let client = Rc::new(Client::from_parts(client));
        let conn = Conn {
            input: Input::from_parts(Rc::clone(&socket), tls.clone(), input),
            output: Output::from_parts(encoder, tls.clone()),
            tls: Rc::new(RefCell::new(tls)),
            socket,
            buf,
            session: exec::Session::from_parts(frontend, client, peer, session),
            admitted,
            peer,
        };
        serve(conn, Some(Command::Sub { topic, channel })).await;
    });
}

/// Runs the connection (`first`: a command to run before reading more, the `SUB` it moved
/// for) until it closes or moves to another shard.
async fn serve(conn: Conn, first: Option<Command>) {
    let Conn {
        socket,
        mut input,
        output,
        tls,
        mut buf,
        mut session,
        admitted,
        peer,
    } = conn;
    let client = Rc::clone(&session.client);
    let broker = Rc::clone(&session.broker);
    broker
        .clients
        .borrow_mut()
        .insert(client.id, Rc::clone(&client));
    let reading = Rc::new(Cell::new(true));
    let writer = tokio::task::spawn_local(write_loop(
        Rc::clone(&socket),
        Rc::clone(&client),
        Rc::clone(&reading),
        Rc::clone(&tls),
        output,
    ));
    let ended = match run(&mut input, &mut buf, &mut session, &tls, first).await {
        Ok(ended) => ended,
        Err(e) => {
            tracing::debug!(client = %client.remote, "connection ended: {e}");
            Ended::Closed
        }
    };
    if let Ended::Move = ended {
        // Every reply queued so far is flushed first; the writer then stops, socket open.
        client.moving.set(true);
        client.wake.notify_one();
        let flushed = match tokio::time::timeout(CLOSE_FLUSH_MAX, writer).await {
            Ok(Ok(flushed)) => flushed,
            Ok(Err(e)) => {
                tracing::error!("writer task failed: {e}");
                None
            }
            Err(_) => None,
        };
        broker.clients.borrow_mut().remove(&client.id);
        let parts = Moving {
            socket,
            input,
            tls,
            buf,
            session,
            admitted,
            peer,
        };
        match flushed {
            Some(output) => move_away(parts, output).await,
            // The writer failed or closed (a fatal error went out): the connection ends.
            None => parts.socket.shutdown(Shutdown::Both),
        }
        return;
    }
    reading.set(false);
    session.disconnect().await;
    client.closed.set(true);
    client.wake.notify_one();
    tokio::pin!(writer);
    let joined = if let Ok(joined) = tokio::time::timeout(CLOSE_FLUSH_MAX, &mut writer).await {
        joined
    } else {
        // The client stopped reading and heartbeats are off (no write deadline).
        socket.shutdown(Shutdown::Both);
        writer.await
    };
    if let Err(e) = joined {
        tracing::error!("writer task failed: {e}");
    }
    broker.clients.borrow_mut().remove(&client.id);
    drop(admitted);
}

/// What is left of a connection whose reader and writer have stopped, to move.
struct Moving {
    socket: Rc<Socket>,
    input: Input,
    tls: TlsSlot,
    buf: Vec<u8>,
    session: exec::Session,
    admitted: Admitted,
    peer: Option<SocketAddr>,
}

/// Sends the connection to the shard its `SUB` names (see [`crate::shard::handoff`]). If it
/// cannot go (its state is still shared, the descriptor cannot be taken, the shard is gone)
/// it is closed.
async fn move_away(m: Moving, output: Output) {
    let Moving {
        socket,
        input,
        tls,
        buf,
        mut session,
        admitted,
        peer,
    } = m;
    let Some((shard, topic, channel)) = session.move_to.take() else {
        socket.shutdown(Shutdown::Both);
        return;
    };
    let link = Rc::clone(&session.broker.link);
    tracing::debug!(client = %session.client.remote, "SUB {topic}: moving the connection to shard {shard}");
    let encoder = output.into_encoder();
    drop(tls.borrow_mut().take());
    let client = session.client.to_parts();
    let parts = input.into_parts();
    let socket = match (parts, Rc::try_unwrap(socket)) {
        (Some(parts), Ok(socket)) => match socket.into_moving() {
            Ok(moving) => Some((parts, moving)),
            Err(e) => {
                tracing::error!(client = %client.remote, "cannot move the connection to shard {shard}: {e}");
                None
            }
        },
        (_, Err(socket)) => {
            socket.shutdown(Shutdown::Both);
            None
        }
        (None, Ok(socket)) => {
            socket.shutdown(Shutdown::Both);
            None
        }
    };
    let Some((input, socket)) = socket else {
        return;
    };
    let handoff = Handoff {
        socket,
        peer,
        admitted,
        client,
        session: session.into_parts(),
        input,
        encoder,
        buf,
        sub: (topic, channel),
    };
    // A shard that is gone drops the job: the connection closes with it.
    let _gone = link
        .send(shard, Box::new(move |shard| resume(shard, handoff)))
        .await;
}

/// Runs `first` (if any), then the reader loop; sends the publishes queued for other shards
/// whatever way it ends (their replies wait for them).
async fn run(
    input: &mut Input,
    buf: &mut Vec<u8>,
    session: &mut exec::Session,
    tls: &TlsSlot,
    first: Option<Command>,
) -> std::io::Result<Ended> {
    if let Some(cmd) = first {
        if !session.exec(cmd).await {
            return Ok(Ended::Closed);
        }
    }
    let ended = read_loop(input, buf, session, tls).await;
    session.flush_forwards().await;
    ended
}

fn default_settings(broker: &Broker, peer: Option<SocketAddr>) -> ClientSettings {
    // nsqd: the client's IP, "" on a unix socket.
    let ip = peer.map(|p| p.ip().to_string()).unwrap_or_default();
    ClientSettings::defaults(&crate::server::limits(&broker.options), &ip)
}

/// Reads the 4-byte magic; a wrong one gets `E_BAD_PROTOCOL` and the connection is closed,
/// as is one that sends nothing within `deadline`. Returns the buffer with whatever followed
/// the magic.
async fn read_magic(socket: &Socket, deadline: Option<Instant>) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(READ_BUF_BYTES);
    while buf.len() < MAGIC_BYTES {
        match socket.read_before(&mut buf, deadline).await {
            Ok(Filled::Data) => {}
            Ok(Filled::TimedOut) => {
                tracing::info!("client sent no protocol magic in time: closing");
                return None;
            }
            Ok(Filled::Eof) | Err(_) => return None,
        }
    }
    if !protocol::magic_ok(&buf[..MAGIC_BYTES]) {
        tracing::info!(
            "client sent bad protocol magic {:?}",
            String::from_utf8_lossy(&buf[..MAGIC_BYTES])
        );
        // nsqd sends the bare code, without a description.
        let code = b"E_BAD_PROTOCOL";
        let size = u32::try_from(4 + code.len()).unwrap_or(u32::MAX);
        let mut frame = Vec::with_capacity(8 + code.len());
        frame.extend_from_slice(&size.to_be_bytes());
        frame.extend_from_slice(&protocol::FRAME_TYPE_ERROR.to_be_bytes());
        frame.extend_from_slice(code);
        let (res, _) = socket.write_before(frame, deadline).await;
        if let Err(e) = res {
            tracing::debug!("writing E_BAD_PROTOCOL: {e}");
        }
        return None;
    }
    buf.drain(..MAGIC_BYTES);
    Some(buf)
}

/// When the next command must be complete: twice the heartbeat interval from now, or never.
fn command_deadline(session: &exec::Session) -> Option<Instant> {
    session
        .client
        .settings
        .borrow()
        .heartbeat_interval
        .map(|h| Instant::now() + h * 2)
}

async fn read_loop(
    input: &mut Input,
    buf: &mut Vec<u8>,
    session: &mut exec::Session,
    tls: &TlsSlot,
) -> std::io::Result<Ended> {
    let limits = session.limits();
    let mut deadline = command_deadline(session);
    let client = Rc::clone(&session.client);
    let wake_writer = move || client.wake.notify_one();
    loop {
        if let Some(ended) = run_commands(input, buf, session, tls, &limits, &mut deadline).await? {
            return Ok(ended);
        }
        // Before waiting for anything: the replies of forwarded publishes wait for these.
        session.flush_forwards().await;
        while session.client.replies_pending() > REPLIES_PENDING_MAX && !session.client.closed.get()
        {
            session.client.drained.notified().await;
        }
        if session.client.closed.get() {
            return Ok(Ended::Closed);
        }
        match input.fill(buf, deadline, &wake_writer).await? {
            Filled::Data => session.note_tls(input),
            Filled::Eof => {
                // The stream ended inside a command: nsqd answers the read that failed.
                answer_partial(session, buf, &limits);
                return Ok(Ended::Closed);
            }
            Filled::TimedOut => {
                tracing::info!(client = %session.client.remote, "failed to read command - i/o timeout");
                answer_partial(session, buf, &limits);
                return Ok(Ended::Closed);
            }
        }
    }
}

/// Runs every complete command in `buf` and drops them from it; `Some` when the connection
/// ends, or moves (a `SUB` for another shard's topic: `buf` keeps what followed it).
async fn run_commands(
    input: &mut Input,
    buf: &mut Vec<u8>,
    session: &mut exec::Session,
    tls: &TlsSlot,
    limits: &protocol::Limits,
    deadline: &mut Option<Instant>,
) -> std::io::Result<Option<Ended>> {
    let mut start = 0;
    let mut turn = 0;
    let ended = loop {
        let cx = session.decode_context(limits);
        if !session.check_mpub_ahead(&buf[start..], &cx).await {
            break Some(Ended::Closed);
        }
        match protocol::decode(&buf[start..], &cx) {
            Decoded::Incomplete => break None,
            Decoded::Command { cmd, consumed } => {
                start += consumed;
                if !session.exec(cmd).await {
                    break Some(Ended::Closed);
                }
                if session.move_to.is_some() {
                    break Some(Ended::Move);
                }
                upgrade(input, session, tls, buf, &mut start)?;
                *deadline = command_deadline(session);
                turn += 1;
                if turn >= COMMANDS_PER_TURN {
                    turn = 0;
                    if input.holds_input() {
                        session.flush_forwards().await;
                        input.pause().await;
                    }
                }
            }
            Decoded::LineTooLong => {
                // nsqd: "failed to read command - bufio: buffer full", closed without a frame.
                tracing::info!(client = %session.client.remote, "command line too long: closing");
                break Some(Ended::Closed);
            }
            Decoded::Error { err, consumed } => {
                start += consumed;
                tracing::info!(client = %session.client.remote, "protocol error: {err}");
                let fatal = err.fatal;
                session.client.respond_error(&err);
                if fatal {
                    break Some(Ended::Closed);
                }
            }
        }
    };
    buf.drain(..start);
    Ok(ended)
}

/// Starts the layers the command just run (IDENTIFY) negotiated, in nsqd's order: TLS, then
/// compression; what was read past the command goes to the first new layer.
fn upgrade(
    input: &mut Input,
    session: &mut exec::Session,
    tls: &TlsSlot,
    buf: &mut Vec<u8>,
    start: &mut usize,
) -> std::io::Result<()> {
    if let Some(config) = session.new_tls.take() {
        let layer = Rc::new(TlsLayer::new(config).map_err(std::io::Error::other)?);
        *tls.borrow_mut() = Some(Rc::clone(&layer));
        input.start_tls(
            layer,
            buf.split_off(*start),
            Instant::now() + TLS_HANDSHAKE_MAX,
        );
        buf.clear();
        *start = 0;
    }
    if let Some(codec) = session.new_codec.take() {
        input.start_codec(codec, buf.split_off(*start));
        buf.clear();
        *start = 0;
    }
    Ok(())
}

/// The error nsqd sends when the stream ends or times out inside a command, if any.
fn answer_partial(session: &exec::Session, buf: &[u8], limits: &protocol::Limits) {
    let cx = session.decode_context(limits);
    if let Some(err) = protocol::decode_at_eof(buf, &cx) {
        session.client.respond_error(&err);
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
async fn write_loop(
    socket: Rc<Socket>,
    client: Rc<Client>,
    reading: Rc<Cell<bool>>,
    tls: TlsSlot,
    mut output: Output,
) -> Option<Output> {
    let mut spare: Vec<u8> = Vec::with_capacity(READ_BUF_BYTES);
    let heartbeat = client.settings.borrow().heartbeat_interval;
    let mut next_heartbeat = heartbeat.map(|h| Instant::now() + h);
    loop {
        resolve_replies(&client);
        let now = Instant::now();
        if let Some(at) = next_heartbeat.filter(|at| *at <= now) {
            client.respond(b"_heartbeat_");
            next_heartbeat = client
                .settings
                .borrow()
                .heartbeat_interval
                .map(|h| at.max(now) + h);
            continue;
        }
        let decision = if output.wants_write() {
            Flush::Now
        } else {
            flush_decision(&client, now)
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
        out.urgent = false;
        out.first_message_at = None;
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
            tracing::error!(client = %client.remote, "output: {e}");
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
    let (res, written) = socket.write_before(bytes, deadline).await;
    *spare = written;
    spare.clear();
    client.drained.notify_waiters();
    if let Err(e) = &res {
        tracing::info!(client = %client.remote, "failed to write - {e}");
    }
    res.is_ok() && !close
}

/// Sleeps until woken, until `until`, or until the oldest durable reply is done.
async fn wait_for_work(client: &Client, until: Option<Instant>) {
    /// The reply at the head of the queue, if it waits for something.
    enum Front {
        Durable(
            ringsq_storage::Log<ringsq_storage::UringIo>,
            ringsq_storage::Ticket,
            bool,
        ),
        Remote(Rc<Answer>),
    }
    let front = match client.outbox.borrow().replies.front() {
        Some(Reply::Durable {
            log,
            ticket,
            synced,
            ..
        }) => Some(Front::Durable(log.clone(), *ticket, *synced)),
        Some(Reply::Remote { answer, .. }) => Some(Front::Remote(Rc::clone(answer))),
        _ => None,
    };
    let durable = async {
        match front {
            Some(Front::Durable(log, ticket, synced)) => {
                // Its outcome is read again by `resolve_replies`.
                let _outcome = log.wait_ticket(ticket, synced).await;
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
            Reply::Durable {
                log,
                ticket,
                synced,
                failed_code,
                command,
            } => {
                let outcome = log
                    .ticket_state(*ticket, *synced)
                    .map(|r| r.map_err(|e| e.to_string()));
                let Some(reply) = publish_reply(outcome, failed_code, command) else {
                    break;
                };
                out.replies.pop_front();
                reply
            }
            Reply::Remote {
                answer,
                index,
                failed_code,
                command,
            } => {
                let outcome = answer.outcome(*index).map(|r| r.map_err(|f| f.message));
                let Some(reply) = publish_reply(outcome, failed_code, command) else {
                    break;
                };
                out.replies.pop_front();
                reply
            }
        };
        out.buf.extend_from_slice(&frame);
        out.urgent = true;
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
    failed_code: &'static str,
    command: &str,
) -> Option<(Vec<u8>, bool)> {
    let mut frame = Vec::new();
    match outcome? {
        Ok(()) => {
            protocol::write_response(&mut frame, b"OK");
            Some((frame, false))
        }
        Err(why) => {
            let err =
                protocol::ProtocolError::fatal(failed_code, format!("{command} failed {why}"));
            protocol::write_error(&mut frame, &err);
            Some((frame, true))
        }
    }
}

fn flush_decision(client: &Client, now: Instant) -> Flush {
    let out = client.outbox.borrow();
    if out.buf.is_empty() {
        return Flush::Wait(None);
    }
    if out.urgent || out.close_after_flush || client.closed.get() || client.moving.get() {
        return Flush::Now;
    }
    let settings = client.settings.borrow();
    if out.buf.len() >= settings.output_buffer_size || !client.is_ready_for_messages() {
        return Flush::Now;
    }
    match (settings.output_buffer_timeout, out.first_message_at) {
        (Some(timeout), Some(first)) if first + timeout > now => Flush::Wait(Some(first + timeout)),
        _ => Flush::Now,
    }
}

/// The state the decoder uses to pick nsqd's error for a command.
pub fn protocol_state(state: ClientState) -> protocol::ClientState {
    match state {
        ClientState::Subscribed => protocol::ClientState::Subscribed,
        ClientState::Closing => protocol::ClientState::Closing,
        ClientState::Init | ClientState::Connected | ClientState::Disconnected => {
            protocol::ClientState::Init
        }
    }
}
