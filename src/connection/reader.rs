//! One client connection: the magic, then a reader loop (bytes → `protocol::decode` → `session`)
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
//! topic moves the connection ([`super::handoff`]): the reader stops at that command
//! boundary, the writer writes every reply already queued (forwarded `OK`s included: it
//! waits for their answers) and hands its output state back, and the socket, the TLS and
//! compression state, the unread input, the client and the session go to the owner
//! ([`super::handoff::resume`]), which runs the `SUB` and serves the connection from then on. A connection
//! whose writer closed meanwhile (a fatal error went out) is closed, not moved.

use super::admission::Admitted;
use super::client::{Client, ClientSettings};
use super::handoff::{self, Moving};
use super::session::Session;
use super::tls::TlsLayer;
use super::transport::{Filled, Input, Output, Socket, READ_BUF_BYTES};
use super::writer::{self, TlsSlot};
use super::Frontend;
use crate::protocol::{self, Command, Decoded};
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

/// nsqd's deadline for the TLS handshake after IDENTIFY `tls_v1`.
const TLS_HANDSHAKE_MAX: Duration = Duration::from_secs(5);

/// A connection past its magic, on the shard that serves it now.
pub(super) struct Conn {
    pub socket: Rc<Socket>,
    pub input: Input,
    pub output: Output,
    pub tls: TlsSlot,
    /// Plain input not yet decoded.
    pub buf: Vec<u8>,
    pub session: Session,
    pub admitted: Admitted,
    pub peer: Option<SocketAddr>,
}

/// Why the reader stopped.
enum Ended {
    Closed,
    /// A `SUB` for a topic of another shard: the connection moves there.
    Move,
}

/// Serves one client on `socket` (`peer` is `None` on a unix socket), in its span.
pub async fn handle(
    socket: Socket,
    peer: Option<SocketAddr>,
    frontend: Rc<Frontend>,
    admitted: Admitted,
) {
    use tracing::Instrument as _;
    let id = Frontend::next_client_id();
    handle_in_span(id, socket, peer, frontend, admitted)
        .instrument(client_span(id, peer))
        .await;
}

/// The span of everything a connection does: every line it logs names the client (its id,
/// as `/stats` shows it, and its address).
pub(super) fn client_span(id: u64, peer: Option<SocketAddr>) -> tracing::Span {
    if let Some(peer) = peer {
        tracing::info_span!("client", client = id, remote = %peer)
    } else {
        tracing::info_span!("client", client = id)
    }
}

async fn handle_in_span(
    id: u64,
    socket: Socket,
    peer: Option<SocketAddr>,
    frontend: Rc<Frontend>,
    admitted: Admitted,
) {
    let socket = Rc::new(socket);
    let settings = default_settings(&frontend, peer);
    let magic_deadline = settings.heartbeat_interval.map(|h| Instant::now() + h * 2);
    let Some(buf) = read_magic(&socket, magic_deadline).await else {
        socket.shutdown(Shutdown::Both);
        return;
    };
    let remote = peer.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
    let connected_at_unix_s = frontend.broker.now_unix_s().max(frontend.start_unix_s);
    let client = Rc::new(Client::new(id, remote, settings, connected_at_unix_s));
    let conn = Conn {
        input: Input::new(Rc::clone(&socket)),
        socket,
        output: Output::default(),
        tls: Rc::new(RefCell::new(None)),
        buf,
        session: Session::new(frontend, client, peer),
        admitted,
        peer,
    };
    serve(conn, None).await;
}

/// Runs the connection (`first`: a command to run before reading more, the `SUB` it moved
/// for) until it closes or moves to another shard.
pub(super) async fn serve(conn: Conn, first: Option<Command>) {
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
    let frontend = Rc::clone(&session.frontend);
    frontend
        .clients
        .borrow_mut()
        .insert(client.id, Rc::clone(&client));
    let reading = Rc::new(Cell::new(true));
    let writer = crate::broker::spawn(writer::write_loop(
        Rc::clone(&socket),
        Rc::clone(&client),
        Rc::clone(&reading),
        Rc::clone(&tls),
        output,
    ));
    let ended = match run(&mut input, &mut buf, &mut session, &tls, first).await {
        Ok(ended) => ended,
        Err(e) => {
            tracing::debug!("connection ended: {e}");
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
        frontend.clients.borrow_mut().remove(&client.id);
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
            Some(output) => handoff::move_away(parts, output).await,
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
    frontend.clients.borrow_mut().remove(&client.id);
    drop(admitted);
}

/// Runs `first` (if any), then the reader loop; sends the publishes queued for other shards
/// whatever way it ends (their replies wait for them).
async fn run(
    input: &mut Input,
    buf: &mut Vec<u8>,
    session: &mut Session,
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

fn default_settings(frontend: &Frontend, peer: Option<SocketAddr>) -> ClientSettings {
    // nsqd: the client's IP, "" on a unix socket.
    let ip = peer.map(|p| p.ip().to_string()).unwrap_or_default();
    ClientSettings::defaults(&frontend.config.limits, &ip)
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
        let code = protocol::ErrorCode::BadProtocol.as_str().as_bytes();
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
fn command_deadline(session: &Session) -> Option<Instant> {
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
    session: &mut Session,
    tls: &TlsSlot,
) -> std::io::Result<Ended> {
    let config = Rc::clone(&session.frontend.config);
    let limits = &config.limits;
    let mut deadline = command_deadline(session);
    let client = Rc::clone(&session.client);
    let wake_writer = move || client.wake.notify_one();
    loop {
        if let Some(ended) = run_commands(input, buf, session, tls, limits, &mut deadline).await? {
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
                answer_partial(session, buf, limits);
                return Ok(Ended::Closed);
            }
            Filled::TimedOut => {
                tracing::info!("failed to read command - i/o timeout");
                answer_partial(session, buf, limits);
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
    session: &mut Session,
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
                tracing::info!("command line too long: closing");
                break Some(Ended::Closed);
            }
            Decoded::Error { err, consumed } => {
                start += consumed;
                tracing::info!("protocol error: {err}");
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
    session: &mut Session,
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
fn answer_partial(session: &Session, buf: &[u8], limits: &protocol::Limits) {
    let cx = session.decode_context(limits);
    if let Some(err) = protocol::decode_at_eof(buf, &cx) {
        session.client.respond_error(&err);
    }
}
