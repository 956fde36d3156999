//! One client connection: the magic, then a reader loop (bytes → `protocol::decode` → `exec`)
//! and a writer task (outbox → socket, with nsqd's flush rules and heartbeats).
//!
//! The reader never waits for the disk: a publish appends (synchronously reserving its place in
//! the log) and queues an ordered reply; the writer sends that `OK` when the log has written or
//! fsynced it. So a pipelining publisher gets group commit across all its in-flight commands.

use super::compress::{Decoder, Encoder};
use super::exec;
use crate::broker::client::{Client, ClientSettings, ClientState, Reply};
use crate::broker::Broker;
use crate::protocol::{self, DecodeContext, Decoded};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::TcpStream;

/// nsqd's bufio reader size: the initial read buffer.
const READ_BUF_BYTES: usize = 16 * 1024;
/// A publisher with more unsent replies than this is not read from until they drain.
const REPLIES_PENDING_MAX: usize = 4096;
const MAGIC_BYTES: usize = 4;

pub async fn handle(stream: TcpStream, remote: SocketAddr, broker: Rc<Broker>) {
    let stream = Rc::new(stream);
    let Some(mut buf) = read_magic(&stream, &broker).await else {
        return;
    };
    let client = Rc::new(Client::new(
        broker.next_client_id(),
        remote,
        default_settings(&broker, remote),
        broker
            .start_unix_s
            .max(crate::broker::guid::now_ns() / 1_000_000_000),
    ));
    broker
        .clients
        .borrow_mut()
        .insert(client.id, Rc::clone(&client));
    let writer = tokio::task::spawn_local(write_loop(Rc::clone(&stream), Rc::clone(&client)));
    let mut session = exec::Session::new(Rc::clone(&broker), Rc::clone(&client));
    if let Err(e) = read_loop(&stream, &mut buf, &mut session).await {
        tracing::debug!(client = %remote, "connection ended: {e}");
    }
    session.disconnect().await;
    client.closed.set(true);
    client.wake.notify_one();
    if let Err(e) = writer.await {
        tracing::error!("writer task failed: {e}");
    }
    broker.clients.borrow_mut().remove(&client.id);
}

fn default_settings(broker: &Broker, remote: SocketAddr) -> ClientSettings {
    ClientSettings::defaults(
        &crate::server::limits(&broker.options),
        &remote.ip().to_string(),
    )
}

/// Reads the 4-byte magic; a wrong one gets `E_BAD_PROTOCOL` and the connection is closed.
/// Returns the buffer with whatever followed the magic.
async fn read_magic(stream: &TcpStream, broker: &Broker) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(READ_BUF_BYTES);
    while buf.len() < MAGIC_BYTES {
        let n = read_more(stream, &mut buf, Some(broker.options.client_timeout))
            .await
            .ok()?;
        if n == 0 {
            return None;
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
        let (res, _) = stream.write_all(frame).await;
        if let Err(e) = res {
            tracing::debug!("writing E_BAD_PROTOCOL: {e}");
        }
        return None;
    }
    buf.drain(..MAGIC_BYTES);
    Some(buf)
}

/// Appends what the socket has into `buf`'s spare capacity; Ok(0) at EOF.
async fn read_more(
    stream: &TcpStream,
    buf: &mut Vec<u8>,
    deadline: Option<Duration>,
) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < READ_BUF_BYTES / 4 {
        buf.reserve(READ_BUF_BYTES);
    }
    let owned = std::mem::take(buf);
    let len = owned.len();
    let cap = owned.capacity();
    let read = stream.read(owned.slice(len..cap));
    let (res, slice) = match deadline {
        Some(d) => match tokio::time::timeout(d, read).await {
            Ok(r) => r,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "i/o timeout",
                ))
            }
        },
        None => read.await,
    };
    *buf = slice.into_inner();
    res
}

/// The connection's input: plain bytes in `buf`, or, once IDENTIFY negotiated compression,
/// what the decoder makes of the bytes read.
struct Input {
    decoder: Option<Decoder>,
    raw: Vec<u8>,
}

impl Input {
    /// Reads more into `buf` (decoded if need be); Ok(0) at EOF.
    async fn fill(
        &mut self,
        stream: &TcpStream,
        buf: &mut Vec<u8>,
        deadline: Option<Duration>,
    ) -> std::io::Result<usize> {
        let Some(decoder) = &mut self.decoder else {
            return read_more(stream, buf, deadline).await;
        };
        self.raw.clear();
        let n = read_more(stream, &mut self.raw, deadline).await?;
        decoder
            .decode(&self.raw, buf)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        Ok(n)
    }

    /// From now on input is compressed, starting with what `buf` holds after `start`.
    fn start_codec(
        &mut self,
        codec: crate::broker::client::Codec,
        buf: &mut Vec<u8>,
        start: usize,
    ) -> std::io::Result<()> {
        let mut decoder = Decoder::new(codec);
        let compressed = buf.split_off(start);
        buf.clear();
        decoder
            .decode(&compressed, buf)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        self.decoder = Some(decoder);
        Ok(())
    }
}

async fn read_loop(
    stream: &TcpStream,
    buf: &mut Vec<u8>,
    session: &mut exec::Session,
) -> std::io::Result<()> {
    let limits = session.limits();
    let mut input = Input {
        decoder: None,
        raw: Vec::new(),
    };
    let mut start = 0;
    loop {
        loop {
            let cx = DecodeContext::new(
                session.protocol_state(),
                session.heartbeats_enabled(),
                &limits,
            );
            match protocol::decode(&buf[start..], &cx) {
                Decoded::Incomplete => break,
                Decoded::Command { cmd, consumed } => {
                    start += consumed;
                    if !session.exec(cmd).await {
                        return Ok(());
                    }
                    if let Some(codec) = session.new_codec.take() {
                        input.start_codec(codec, buf, start)?;
                        start = 0;
                    }
                }
                Decoded::LineTooLong => {
                    // nsqd: "failed to read command - bufio: buffer full", closed without a frame.
                    tracing::info!(client = %session.client.remote, "command line too long: closing");
                    return Ok(());
                }
                Decoded::Error { err, consumed } => {
                    start += consumed;
                    tracing::info!(client = %session.client.remote, "protocol error: {err}");
                    let fatal = err.fatal;
                    session.client.respond_error(&err);
                    if fatal {
                        return Ok(());
                    }
                }
            }
        }
        buf.drain(..start);
        start = 0;
        while session.client.replies_pending() > REPLIES_PENDING_MAX && !session.client.closed.get()
        {
            session.client.drained.notified().await;
        }
        if session.client.closed.get() {
            return Ok(());
        }
        let deadline = session
            .client
            .settings
            .borrow()
            .heartbeat_interval
            .map(|h| h * 2);
        if input.fill(stream, buf, deadline).await? == 0 {
            // The stream ended inside a command: nsqd answers the read that failed.
            let cx = DecodeContext::new(
                session.protocol_state(),
                session.heartbeats_enabled(),
                &limits,
            );
            if let Some(err) = protocol::decode_at_eof(buf, &cx) {
                session.client.respond_error(&err);
            }
            return Ok(());
        }
    }
}

/// What the writer should do next.
enum Flush {
    Now,
    /// Nothing to send before this instant (or a wake-up).
    Wait(Option<Instant>),
}

async fn write_loop(stream: Rc<TcpStream>, client: Rc<Client>) {
    let mut spare: Vec<u8> = Vec::with_capacity(READ_BUF_BYTES);
    let mut encoder: Option<Encoder> = None;
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
        match flush_decision(&client, now) {
            Flush::Now => {
                let (close, codec_at) = {
                    let mut out = client.outbox.borrow_mut();
                    std::mem::swap(&mut out.buf, &mut spare);
                    out.urgent = false;
                    out.first_message_at = None;
                    (
                        out.close_after_flush && out.buf.is_empty(),
                        out.codec_at.take(),
                    )
                };
                let bytes = match encode(&mut encoder, codec_at, &mut spare) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        tracing::error!(client = %client.remote, "compressing output: {e}");
                        client.closed.set(true);
                        break;
                    }
                };
                let (res, written) = stream.write_all(bytes).await;
                spare = written;
                spare.clear();
                client.drained.notify_waiters();
                if res.is_err() || close {
                    client.closed.set(true);
                    break;
                }
            }
            Flush::Wait(until) => {
                if client.closed.get() && client.outbox.borrow().replies.is_empty() {
                    break;
                }
                let until = [until, next_heartbeat].into_iter().flatten().min();
                wait_for_work(&client, until).await;
            }
        }
    }
    if let Err(e) = stream.shutdown(std::net::Shutdown::Write) {
        tracing::debug!("shutdown: {e}");
    }
}

/// The bytes to write for `plain` (left empty): as they are, or through the codec, which
/// starts at `codec_at` when IDENTIFY has just negotiated one.
fn encode(
    encoder: &mut Option<Encoder>,
    codec_at: Option<(usize, crate::broker::client::Codec)>,
    plain: &mut Vec<u8>,
) -> Result<Vec<u8>, super::compress::CompressError> {
    let mut out = Vec::new();
    let mut from = 0;
    if let Some((at, codec)) = codec_at {
        from = at.min(plain.len());
        out.extend_from_slice(&plain[..from]);
        *encoder = Some(Encoder::new(codec));
    }
    match encoder {
        Some(enc) => enc.encode(&plain[from..], &mut out)?,
        None => return Ok(std::mem::take(plain)),
    }
    plain.clear();
    Ok(out)
}

/// Sleeps until woken, until `until`, or until the oldest durable reply is done.
async fn wait_for_work(client: &Client, until: Option<Instant>) {
    let front = match client.outbox.borrow().replies.front() {
        Some(Reply::Durable {
            log,
            ticket,
            synced,
            ..
        }) => Some((log.clone(), *ticket, *synced)),
        _ => None,
    };
    let durable = async {
        match front {
            Some((log, ticket, synced)) => log.wait_ticket(ticket, synced).await,
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
        _ = durable => {}
    }
}

/// Moves every reply at the head of the queue that can be sent now into the outbox.
fn resolve_replies(client: &Client) {
    let mut out = client.outbox.borrow_mut();
    while let Some(front) = out.replies.front() {
        let frame = match front {
            Reply::Frame(_) => match out.replies.pop_front() {
                Some(Reply::Frame(f)) => f,
                _ => break,
            },
            Reply::StartCodec(codec) => {
                let codec = *codec;
                out.codec_at = Some((out.buf.len(), codec));
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
                let mut frame = Vec::new();
                match log.ticket_state(*ticket, *synced) {
                    None => break,
                    Some(Ok(())) => protocol::write_response(&mut frame, b"OK"),
                    Some(Err(e)) => {
                        let err = protocol::ProtocolError::fatal(
                            failed_code,
                            format!("{command} failed {e}"),
                        );
                        protocol::write_error(&mut frame, &err);
                        out.close_after_flush = true;
                    }
                }
                out.replies.pop_front();
                frame
            }
        };
        out.buf.extend_from_slice(&frame);
        out.urgent = true;
    }
}

fn flush_decision(client: &Client, now: Instant) -> Flush {
    let out = client.outbox.borrow();
    if out.buf.is_empty() {
        return Flush::Wait(None);
    }
    if out.urgent || out.close_after_flush || client.closed.get() {
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
