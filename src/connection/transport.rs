//! The connection's byte layers, below the command loop: the socket (tokio-uring), then TLS,
//! then the compression IDENTIFY negotiated (nsqd's order). The loop in [`super::conn`] sees
//! plain bytes both ways, whichever layers are on.
//!
//! - [`Socket`]: reads and writes with a deadline. An `io_uring` operation that is dropped stays
//!   in the kernel (and keeps the socket open) until it completes, so a deadline never drops a
//!   read or a write: it shuts the socket down, which completes the operation, and waits for it.
//! - [`Input`]: socket → (TLS, [`super::tls`]) → (decompression) → plain bytes, in bounded steps: at most
//!   [`DECODE_STEP_MAX_BYTES`] of output per step, then the task yields ([`Turn`]), so a small input that
//!   inflates to gigabytes is worked through a slice at a time while other clients are served.
//! - [`Output`]: plain bytes → (compression) → (TLS) → bytes for the socket; each layer starts
//!   at the offset in the output where IDENTIFY's reply queued it ([`Upgrades`]).
//!
//! Invariants: compressed input waiting to be decoded never exceeds [`RAW_PENDING_MAX_BYTES`];
//! nothing is read from the socket while decodable input is waiting.
//!
//! A connection that moves to another shard leaves as sendable parts: [`MovingSocket`] (its
//! descriptor off this thread's ring), [`InputParts`], and the output's encoder; the TLS
//! layer goes with the input (the same layer serves both ways).

use super::client::Codec;
use super::compress::{CompressError, Decoder, Encoder, SNAPPY_CHUNK_MAX_BYTES};
use super::tls::{Plain, TlsLayer};
use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::{TcpStream, UnixStream};

/// nsqd's bufio reader size: what one socket read asks for.
pub const READ_BUF_BYTES: usize = 16 * 1024;
/// Most plain bytes one decompression step makes before the task lets others run (a snappy
/// step always decodes one whole chunk, up to 64 KiB): as much as one socket read brings.
pub const DECODE_STEP_MAX_BYTES: usize = READ_BUF_BYTES;
/// Most compressed bytes held undecoded: a whole snappy chunk plus one read.
pub const RAW_PENDING_MAX_BYTES: usize = 128 * 1024;
/// How long an operation may take to finish once its socket is shut down for a deadline.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

const _: () = assert!(RAW_PENDING_MAX_BYTES >= 4 + SNAPPY_CHUNK_MAX_BYTES + READ_BUF_BYTES);

/// What a read brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filled {
    /// Some bytes (plain, for [`Input::fill`]).
    Data,
    /// The peer closed its side.
    Eof,
    /// The deadline passed first; the socket is shut down for reading.
    TimedOut,
}

/// A connected client socket: TCP, or a unix socket (`--tcp-address=/path`).
pub enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tcp(_) => "Socket::Tcp",
            Self::Unix(_) => "Socket::Unix",
        })
    }
}

/// A socket on its way to another shard's ring (a sendable descriptor).
#[derive(Debug)]
pub enum MovingSocket {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Socket {
    /// Takes the socket off this thread's ring: a duplicate of its descriptor (by number,
    /// [`super::handoff::dup_own_fd`]), the original closed. Only with no operation in
    /// flight on it (the connection's reader and writer have stopped).
    pub fn into_moving(self) -> io::Result<MovingSocket> {
        let raw = match &self {
            Self::Tcp(s) => s.as_raw_fd(),
            Self::Unix(s) => s.as_raw_fd(),
        };
        let fd = super::handoff::dup_own_fd(raw)?;
        let moving = match &self {
            Self::Tcp(_) => MovingSocket::Tcp(std::net::TcpStream::from(fd)),
            Self::Unix(_) => MovingSocket::Unix(std::os::unix::net::UnixStream::from(fd)),
        };
        drop(self);
        Ok(moving)
    }

    /// The socket on this thread's ring.
    pub fn from_moving(moving: MovingSocket) -> Self {
        match moving {
            MovingSocket::Tcp(s) => Self::Tcp(TcpStream::from_std(s)),
            MovingSocket::Unix(s) => Self::Unix(UnixStream::from_std(s)),
        }
    }

    pub fn shutdown(&self, how: Shutdown) {
        let res = match self {
            Self::Tcp(s) => s.shutdown(how),
            Self::Unix(s) => s.shutdown(how),
        };
        if let Err(e) = res {
            tracing::debug!("shutdown({how:?}): {e}");
        }
    }

    /// Appends what the socket has to `buf` (growing it if it has little room left).
    async fn read_into(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        if buf.capacity() - buf.len() < READ_BUF_BYTES / 4 {
            buf.reserve(READ_BUF_BYTES);
        }
        let owned = std::mem::take(buf);
        let (len, cap) = (owned.len(), owned.capacity());
        // One read brings at most READ_BUF_BYTES, however large the buffer has grown: the
        // work a connection does before it next waits for its socket stays bounded.
        let slice = owned.slice(len..cap.min(len + READ_BUF_BYTES));
        let (res, slice) = match self {
            Self::Tcp(s) => s.read(slice).await,
            Self::Unix(s) => s.read(slice).await,
        };
        *buf = slice.into_inner();
        res
    }

    /// Appends what the socket has to `buf`, unless `deadline` passes first.
    pub async fn read_before(
        &self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> io::Result<Filled> {
        let read = self.read_into(buf);
        tokio::pin!(read);
        let Some(at) = deadline else {
            return Ok(filled(read.await?));
        };
        tokio::select! {
            res = &mut read => Ok(filled(res?)),
            () = tokio::time::sleep_until(at.into()) => {
                // Shutting the read side completes the read in flight (with 0 bytes).
                self.shutdown(Shutdown::Read);
                self.finish(read).await;
                Ok(Filled::TimedOut)
            }
        }
    }

    /// Writes all of `bytes`, unless `deadline` passes first (then the socket is shut down
    /// both ways and the error is `TimedOut`). Gives the buffer back for reuse.
    pub async fn write_before(
        &self,
        bytes: Vec<u8>,
        deadline: Option<Instant>,
    ) -> (io::Result<()>, Vec<u8>) {
        let write = async {
            match self {
                Self::Tcp(s) => s.write_all(bytes).await,
                Self::Unix(s) => s.write_all(bytes).await,
            }
        };
        tokio::pin!(write);
        let Some(at) = deadline else {
            return write.await;
        };
        tokio::select! {
            done = &mut write => done,
            () = tokio::time::sleep_until(at.into()) => {
                self.shutdown(Shutdown::Both);
                let buf = match tokio::time::timeout(SHUTDOWN_GRACE, &mut write).await {
                    Ok((_, buf)) => buf,
                    Err(_) => Vec::new(),
                };
                (Err(io::Error::new(io::ErrorKind::TimedOut, "i/o timeout")), buf)
            }
        }
    }

    /// Waits for an operation whose socket was just shut down; if it still has not finished
    /// after a grace period, shuts the socket down both ways and waits once more.
    async fn finish<F: std::future::Future>(&self, mut op: std::pin::Pin<&mut F>) {
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut op).await.is_err() {
            self.shutdown(Shutdown::Both);
            if tokio::time::timeout(SHUTDOWN_GRACE, op).await.is_err() {
                tracing::warn!("a socket operation did not finish after shutdown");
            }
        }
    }
}

/// How long a connection may keep the thread busy with input it already holds (decompressing
/// without reading its socket) before it waits on the ring ([`yield_to_ring`]).
pub const BUSY_MAX: Duration = Duration::from_micros(100);

/// A connection's turns on the thread. Reading its socket ends a turn by itself (the task
/// waits for the read); input it already holds (a compression bomb's next step) does not, so
/// after each such step it [`Turn::pause`]s: a yield, and after [`BUSY_MAX`] without waiting
/// for its socket a wait on the ring, so the runtime parks and submits everyone's queued
/// operations.
#[derive(Debug)]
pub struct Turn {
    /// When the connection last waited for its socket (or the ring).
    busy_since: std::cell::Cell<Instant>,
}

impl Default for Turn {
    fn default() -> Self {
        Self {
            busy_since: std::cell::Cell::new(Instant::now()),
        }
    }
}

impl Turn {
    /// The connection has just waited for its socket: a new turn starts.
    pub fn waited(&self) {
        self.busy_since.set(Instant::now());
    }

    /// Lets the other tasks run: a yield, or after [`BUSY_MAX`] of work a wait on the ring.
    pub async fn pause(&self) {
        if self.busy_since.get().elapsed() >= BUSY_MAX {
            yield_to_ring().await;
            self.waited();
        } else {
            tokio::task::yield_now().await;
        }
    }
}

/// Lets the other tasks run, and their `io_uring` operations reach the kernel. tokio-uring
/// submits queued operations only when the runtime parks, which a task that merely
/// `yield_now`s keeps it from doing: every other connection's reads and writes would wait
/// until the busy one stops. A no-op on the ring completes only after the runtime has parked
/// (submitting everything queued) and the other runnable tasks have had their turn.
pub async fn yield_to_ring() {
    if let Err(e) = tokio_uring::no_op().await {
        tracing::debug!("no-op on the ring failed: {e}");
        tokio::task::yield_now().await;
    }
}

fn filled(n: usize) -> Filled {
    if n == 0 {
        Filled::Eof
    } else {
        Filled::Data
    }
}

fn invalid_data(e: CompressError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The connection's input side: socket → (TLS) → (decompression) → plain bytes.
#[derive(Debug)]
pub struct Input {
    socket: Rc<Socket>,
    tls: Option<Rc<TlsLayer>>,
    /// When the TLS handshake must be done (nsqd: 5 s).
    handshake_deadline: Option<Instant>,
    decoder: Option<Decoder>,
    /// Socket bytes not yet taken by TLS.
    raw: Vec<u8>,
    /// Compressed bytes (TLS's plaintext or the socket's) not decoded yet.
    compressed: Vec<u8>,
    turn: Turn,
}

/// An [`Input`]'s state without its socket, as it moves to another shard.
#[derive(Debug)]
pub struct InputParts {
    pub tls: Option<TlsLayer>,
    pub handshake_deadline: Option<Instant>,
    pub decoder: Option<Decoder>,
    pub raw: Vec<u8>,
    pub compressed: Vec<u8>,
}

impl Input {
    /// The state to move; `None` if the TLS layer is still shared (the writer must have let go
    /// of it first).
    pub fn into_parts(self) -> Option<InputParts> {
        let tls = match self.tls {
            Some(layer) => Some(Rc::try_unwrap(layer).ok()?),
            None => None,
        };
        Some(InputParts {
            tls,
            handshake_deadline: self.handshake_deadline,
            decoder: self.decoder,
            raw: self.raw,
            compressed: self.compressed,
        })
    }

    /// The input again on another shard, with the TLS layer (if any) shared with the output.
    pub fn from_parts(socket: Rc<Socket>, tls: Option<Rc<TlsLayer>>, parts: InputParts) -> Self {
        Self {
            socket,
            tls,
            handshake_deadline: parts.handshake_deadline,
            decoder: parts.decoder,
            raw: parts.raw,
            compressed: parts.compressed,
            turn: Turn::default(),
        }
    }

    pub fn new(socket: Rc<Socket>) -> Self {
        Self {
            socket,
            tls: None,
            handshake_deadline: None,
            decoder: None,
            raw: Vec::new(),
            compressed: Vec::new(),
            turn: Turn::default(),
        }
    }

    /// From now on input is TLS, starting with `leftover` (bytes already read past the
    /// IDENTIFY that asked for it); the handshake must be done by `handshake_deadline`.
    pub fn start_tls(&mut self, tls: Rc<TlsLayer>, leftover: Vec<u8>, handshake_deadline: Instant) {
        self.tls = Some(tls);
        self.raw = leftover;
        self.handshake_deadline = Some(handshake_deadline);
    }

    /// Whether compressed input is waiting that this connection already read: the commands
    /// it decodes to come without the connection waiting for its socket (a compression bomb),
    /// so the command loop pauses between them too.
    pub fn holds_input(&self) -> bool {
        self.decoder.is_some() && !self.compressed.is_empty()
    }

    /// Lets other tasks run ([`Turn::pause`]).
    pub async fn pause(&self) {
        self.turn.pause().await;
    }

    /// The TLS connection's facts, once its handshake is done.
    pub fn tls_info(&self) -> Option<super::tls::TlsInfo> {
        self.tls.as_ref().and_then(|t| t.info())
    }

    /// From now on the plaintext is compressed, starting with `leftover` (plaintext already
    /// read past the command that negotiated it).
    pub fn start_codec(&mut self, codec: Codec, leftover: Vec<u8>) {
        self.decoder = Some(Decoder::new(codec));
        self.compressed = leftover;
    }

    /// Appends more plain bytes to `plain`: at most one socket read ([`READ_BUF_BYTES`]), its
    /// TLS plaintext, or one decompression step (after which, if this call did not read the
    /// socket, the task pauses: [`Turn::pause`]). `wake_writer` is called when TLS has records
    /// to send (handshake, alerts).
    pub async fn fill(
        &mut self,
        plain: &mut Vec<u8>,
        deadline: Option<Instant>,
        wake_writer: &dyn Fn(),
    ) -> io::Result<Filled> {
        let mut read = false;
        loop {
            if let Some(decoder) = &mut self.decoder {
                let step = decoder
                    .step(&self.compressed, plain, DECODE_STEP_MAX_BYTES)
                    .map_err(invalid_data)?;
                self.compressed.drain(..step.consumed);
                if step.produced > 0 {
                    if !read {
                        self.turn.pause().await;
                    }
                    return Ok(Filled::Data);
                }
                if !step.is_stalled() {
                    continue;
                }
                if self.compressed.len() >= RAW_PENDING_MAX_BYTES {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "compressed input makes no progress",
                    ));
                }
            }
            let target = if self.decoder.is_some() {
                &mut self.compressed
            } else {
                &mut *plain
            };
            let got = if let Some(tls) = &self.tls {
                let deadline = match self.handshake_deadline {
                    Some(h) if tls.is_handshaking() => Some(deadline.map_or(h, |d| d.min(h))),
                    _ => deadline,
                };
                tls_fill(
                    tls,
                    &self.socket,
                    &mut self.raw,
                    target,
                    deadline,
                    wake_writer,
                )
                .await?
            } else {
                self.socket.read_before(target, deadline).await?
            };
            // A socket read, or TLS plaintext of at most one read: either way this call has
            // done a read's worth of work, or waited for it.
            read = true;
            self.turn.waited();
            if got != Filled::Data {
                return Ok(got);
            }
            if self.decoder.is_none() {
                return Ok(Filled::Data);
            }
        }
    }
}

/// Appends TLS plaintext to `target`, feeding TLS from `raw` and the socket as needed.
async fn tls_fill(
    tls: &TlsLayer,
    socket: &Socket,
    raw: &mut Vec<u8>,
    target: &mut Vec<u8>,
    deadline: Option<Instant>,
    wake_writer: &dyn Fn(),
) -> io::Result<Filled> {
    loop {
        match tls.read_plain(target, READ_BUF_BYTES)? {
            Plain::Bytes(_) => return Ok(Filled::Data),
            Plain::Closed => return Ok(Filled::Eof),
            Plain::None => {}
        }
        if !raw.is_empty() {
            let fed = tls.feed(raw);
            if tls.wants_write() {
                wake_writer();
            }
            raw.drain(..fed?);
            continue;
        }
        match socket.read_before(raw, deadline).await? {
            Filled::Data => {}
            other => return Ok(other),
        }
    }
}

/// The connection's output side: plain bytes → (compression) → (TLS) → bytes for the socket.
#[derive(Debug, Default)]
pub struct Output {
    encoder: Option<Encoder>,
    tls: Option<Rc<TlsLayer>>,
}

/// Where, in a batch of plain output, the layers IDENTIFY negotiated start.
#[derive(Debug, Default, Clone)]
pub struct Upgrades {
    /// TLS from this offset on (with the layer to use).
    pub tls_at: Option<(usize, Rc<TlsLayer>)>,
    /// The codec from this offset on.
    pub codec_at: Option<(usize, Codec)>,
}

/// Why output could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("compressing output: {0}")]
    Compress(#[from] CompressError),
    #[error("TLS: {0}")]
    Tls(#[from] io::Error),
}

impl Output {
    /// The output again on another shard: its encoder, and the TLS layer shared with the input.
    pub fn from_parts(encoder: Option<Encoder>, tls: Option<Rc<TlsLayer>>) -> Self {
        Self { encoder, tls }
    }

    /// The encoder, to move with the connection (the TLS layer moves with the input).
    pub fn into_encoder(self) -> Option<Encoder> {
        self.encoder
    }

    /// Whether TLS has records to send even with no new output (handshake, alerts).
    pub fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// The bytes to write for `plain` (left empty), each part through the layers in force
    /// when it was queued.
    pub fn encode(&mut self, up: &Upgrades, plain: &mut Vec<u8>) -> Result<Vec<u8>, OutputError> {
        if up.tls_at.is_none()
            && up.codec_at.is_none()
            && self.encoder.is_none()
            && self.tls.is_none()
        {
            return Ok(std::mem::take(plain));
        }
        let len = plain.len();
        let tls_from = up.tls_at.as_ref().map_or(0, |(at, _)| (*at).min(len));
        let codec_from = up.codec_at.map_or(len, |(at, _)| at.min(len));
        // TLS never starts after the codec (IDENTIFY upgrades TLS first).
        let codec_from = codec_from.max(tls_from);
        let mut out = Vec::new();
        self.emit(&plain[..tls_from], &mut out)?;
        if let Some((_, layer)) = &up.tls_at {
            self.tls = Some(Rc::clone(layer));
        }
        self.emit(&plain[tls_from..codec_from], &mut out)?;
        if let Some((_, codec)) = up.codec_at {
            self.encoder = Some(Encoder::new(codec));
        }
        self.emit(&plain[codec_from..], &mut out)?;
        if let Some(tls) = &self.tls {
            tls.take_records(&mut out)?;
        }
        plain.clear();
        Ok(out)
    }

    /// One stretch of output through the layers in force now.
    fn emit(&mut self, part: &[u8], out: &mut Vec<u8>) -> Result<(), OutputError> {
        if part.is_empty() {
            return Ok(());
        }
        let compressed;
        let data = match &mut self.encoder {
            Some(enc) => {
                let mut buf = Vec::new();
                enc.encode(part, &mut buf)?;
                compressed = buf;
                &compressed[..]
            }
            None => part,
        };
        match &self.tls {
            Some(tls) => tls.write_plain(data)?,
            None => out.extend_from_slice(data),
        }
        Ok(())
    }
}
