//! The nsqlookupd loop (NSQ.md §1.10): one task per `--lookupd-tcp-address`, reconciled live
//! when `PUT /config/nsqlookupd_tcp_addresses` changes the list.
//!
//! Each peer task: connect (1 s timeout), magic `  V1`, `IDENTIFY` + JSON (keys sorted as Go
//! marshals a map), then `REGISTER <topic> [<channel>]` for every channel (or the bare topic
//! when it has none), then forever: `REGISTER`/`UNREGISTER` as topics and channels come and go,
//! `PING` every 15 s. Every command waits for its `[i32 size][data]` answer with a 1 s
//! deadline. A failed connection is retried with backoff (1 s doubling to 15 s) and, once
//! back, everything is registered again from the broker's current state (events that queued
//! while disconnected are dropped: the fresh registration supersedes them). The `http_port` of
//! each `IDENTIFY` answer is recorded for the `/channels` query ([`super::lookupd_channels`]).
//! Runs on shard 0; events come from every shard (one broadcast channel), and a registration of
//! everything gathers every shard's topics.

use crate::app::node::Node;
use crate::app::stats::NSQD_VERSION;
use crate::broker::events::MetaEvent;
use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, Notify};

/// nsqd's lookupd PING period.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// nsqd's lookup peer dial timeout and per-command read/write deadline.
pub const IO_TIMEOUT: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(15);
/// The protocol magic nsqlookupd expects (two spaces, `V1`).
const MAGIC_V1: &[u8] = b"  V1";

/// A running peer task's stop switch.
#[derive(Debug, Default)]
struct PeerHandle {
    stopped: Cell<bool>,
    wake: Notify,
}

/// Keeps one peer task per configured nsqlookupd address. Runs until the broker exits.
pub async fn manager(node: Rc<Node>) {
    let mut peers: HashMap<String, Rc<PeerHandle>> = HashMap::new();
    loop {
        let wanted = node.lookupd_tcp_addresses();
        node.lookupd_http.set_peers_configured(wanted.len());
        peers.retain(|addr, handle| {
            let keep = wanted.contains(addr);
            if !keep {
                tracing::info!("LOOKUP({addr}): removing peer");
                node.lookupd_http.forget(addr);
                handle.stopped.set(true);
                handle.wake.notify_one();
            }
            keep
        });
        for addr in wanted {
            if peers.contains_key(&addr) {
                continue;
            }
            tracing::info!("LOOKUP({addr}): adding peer");
            let handle = Rc::new(PeerHandle::default());
            // Subscribe before the task first runs so no event falls between.
            let events = node.broker.env.events.subscribe();
            crate::broker::spawn(peer(
                Rc::clone(&node),
                addr.clone(),
                Rc::clone(&handle),
                events,
            ));
            peers.insert(addr, handle);
        }
        node.lookupd_changed.notified().await;
    }
}

async fn peer(
    node: Rc<Node>,
    addr: String,
    handle: Rc<PeerHandle>,
    mut events: broadcast::Receiver<MetaEvent>,
) {
    let mut backoff = BACKOFF_MIN;
    while !handle.stopped.get() && !node.broker.exiting.get() {
        match session(&node, &addr, &handle, &mut events).await {
            Ok(()) => return,
            Err(e) => tracing::error!("LOOKUP({addr}): {e}; reconnecting in {backoff:?}"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = handle.wake.notified() => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection's life: Ok when stopped, Err when the connection failed.
async fn session(
    node: &Node,
    addr: &str,
    handle: &PeerHandle,
    events: &mut broadcast::Receiver<MetaEvent>,
) -> std::io::Result<()> {
    let mut conn = Conn::connect(addr, node.options().max_body_size).await?;
    tracing::info!("LOOKUP({addr}): connected");
    conn.identify(node).await?;
    while let Ok(_) | Err(TryRecvError::Lagged(_)) = events.try_recv() {}
    register_all(node, &mut conn).await?;
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
    loop {
        tokio::select! {
            () = handle.wake.notified() => {
                if handle.stopped.get() {
                    return Ok(());
                }
            }
            _ = ping.tick() => {
                conn.command("PING", &[], None).await?;
            }
            // nsqlookupd never speaks first: anything readable is the connection closing, which
            // we notice now rather than at the next PING (nsqd waits for the PING).
            closed = conn.closed() => return Err(closed),
            event = events.recv() => match event {
                Ok(e) => send_event(&mut conn, &e).await?,
                Err(RecvError::Lagged(_)) => register_all(node, &mut conn).await?,
                Err(RecvError::Closed) => return Ok(()),
            },
        }
    }
}

async fn register_all(node: &Node, conn: &mut Conn) -> std::io::Result<()> {
    let mut commands: Vec<Vec<String>> = Vec::new();
    for (topic, channels) in crate::app::gather::registrations(&node.link).await {
        if channels.is_empty() {
            commands.push(vec![topic.clone()]);
        }
        for c in channels {
            commands.push(vec![topic.clone(), c]);
        }
    }
    for params in commands {
        let params: Vec<&str> = params.iter().map(String::as_str).collect();
        conn.command("REGISTER", &params, None).await?;
    }
    Ok(())
}

async fn send_event(conn: &mut Conn, event: &MetaEvent) -> std::io::Result<()> {
    let _answer = match event {
        MetaEvent::TopicCreated(t) => conn.command("REGISTER", &[t], None).await,
        MetaEvent::TopicDeleted(t) => conn.command("UNREGISTER", &[t], None).await,
        MetaEvent::ChannelCreated { topic, channel } => {
            conn.command("REGISTER", &[topic, channel], None).await
        }
        MetaEvent::ChannelDeleted { topic, channel } => {
            conn.command("UNREGISTER", &[topic, channel], None).await
        }
    }?;
    Ok(())
}

/// The part of nsqlookupd's `IDENTIFY` answer nsqd uses.
#[derive(serde::Deserialize)]
struct IdentifyAnswer {
    http_port: Option<u16>,
}

struct Conn {
    addr: String,
    stream: TcpStream,
    response_bytes_max: u64,
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} timed out"))
}

impl Conn {
    async fn connect(addr: &str, response_bytes_max: u64) -> std::io::Result<Self> {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| timed_out("connect"))??;
        stream.set_nodelay(true)?;
        let mut conn = Self {
            addr: addr.to_owned(),
            stream,
            response_bytes_max,
        };
        conn.write(MAGIC_V1).await?;
        Ok(conn)
    }

    async fn identify(&mut self, node: &Node) -> std::io::Result<()> {
        // serde_json's map is sorted by key, as Go marshals a map.
        let body = serde_json::json!({
            "version": NSQD_VERSION,
            "tcp_port": node.broadcast_tcp_port(),
            "http_port": node.broadcast_http_port(),
            "hostname": crate::app::http::admin::hostname(),
            "broadcast_address": node.options().broadcast_address,
        });
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let resp = self.command("IDENTIFY", &[], Some(&body)).await?;
        if resp.starts_with(b"E_") {
            return Err(std::io::Error::other(format!(
                "IDENTIFY refused: {}",
                String::from_utf8_lossy(&resp)
            )));
        }
        // Its HTTP port is where a new topic asks for known channels.
        let port = serde_json::from_slice::<IdentifyAnswer>(&resp)
            .ok()
            .and_then(|a| a.http_port);
        if let Some(port) = port {
            node.lookupd_http.learned(&self.addr, port);
        } else {
            tracing::warn!(
                "LOOKUPD({}): IDENTIFY answer names no http_port: {}",
                self.addr,
                String::from_utf8_lossy(&resp)
            );
        }
        Ok(())
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        tokio::time::timeout(IO_TIMEOUT, self.stream.write_all(bytes))
            .await
            .map_err(|_| timed_out("write"))?
    }

    /// Sends `NAME [params…]\n` (+ `[i32 len][body]`) and returns the answer's data.
    async fn command(
        &mut self,
        name: &str,
        params: &[&str],
        body: Option<&[u8]>,
    ) -> std::io::Result<Vec<u8>> {
        let mut line = name.to_owned();
        for p in params {
            line.push(' ');
            line.push_str(p);
        }
        tracing::debug!("LOOKUPD({}): command {line}", self.addr);
        let mut buf = line.into_bytes();
        buf.push(b'\n');
        if let Some(body) = body {
            let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(body);
        }
        self.write(&buf).await?;
        let resp = tokio::time::timeout(IO_TIMEOUT, self.read_response())
            .await
            .map_err(|_| timed_out("read"))??;
        if resp.starts_with(b"E_") {
            tracing::warn!(
                "LOOKUPD({}): {name} answered {}",
                self.addr,
                String::from_utf8_lossy(&resp)
            );
        }
        Ok(resp)
    }

    /// Resolves when the peer closes the connection (or sends something unasked).
    async fn closed(&mut self) -> std::io::Error {
        let mut byte = [0_u8; 1];
        match self.stream.read(&mut byte).await {
            Ok(0) => std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed by nsqlookupd",
            ),
            Ok(_) => std::io::Error::other("unexpected data from nsqlookupd"),
            Err(e) => e,
        }
    }

    async fn read_response(&mut self) -> std::io::Result<Vec<u8>> {
        let size = self.stream.read_u32().await?;
        if u64::from(size) > self.response_bytes_max {
            return Err(std::io::Error::other(format!(
                "response of {size} bytes is too big"
            )));
        }
        let mut data = vec![0; usize::try_from(size).map_err(std::io::Error::other)?];
        self.stream.read_exact(&mut data).await?;
        Ok(data)
    }
}
