//! Which channels a new topic should start with, as nsqlookupd knows them (nsqd's `GetTopic` →
//! clusterinfo `GetLookupdTopicChannels`, NSQ.md §1.2 last bullet and §1.10).
//!
//! Owns the nsqlookupd HTTP addresses: each lookup peer records `<its host>:<http_port>` here
//! once its `IDENTIFY` answer names the port, and the manager forgets a peer that is removed.
//! When the broker creates a topic it asks every known lookupd, concurrently,
//! `GET /channels?topic=<t>` (`Accept: application/vnd.nsq; version=1.0`) and pre-creates the
//! union of the answers. nsqd makes this call blocking; here it is an `.await` on a hyper client
//! over `tokio::net`, bounded by `--http-client-connect-timeout` (dial) and
//! `--http-client-request-timeout` (the whole exchange), so only the publisher that created the
//! topic waits, never the runtime. A lookupd that fails or is slow is logged and skipped: it can
//! never stop the publish.

use crate::app::http::getv1::{self, AbortOnDrop};
use crate::broker::KnownChannels;
use hyper_util::rt::TokioIo;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Largest `/channels` answer read from a lookupd.
pub const RESPONSE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The lookupd HTTP addresses and the client settings used to query them.
#[derive(Debug)]
pub struct LookupdChannels {
    /// lookupd TCP address (as configured) → its HTTP address (`host:http_port`).
    http_addrs: RefCell<BTreeMap<String, String>>,
    /// How many `--lookupd-tcp-address` peers are configured (for nsqd's "no available" error).
    peers_configured: Cell<usize>,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl LookupdChannels {
    pub fn new(connect_timeout: Duration, request_timeout: Duration) -> Self {
        Self {
            http_addrs: RefCell::new(BTreeMap::new()),
            peers_configured: Cell::new(0),
            connect_timeout,
            request_timeout,
        }
    }

    /// A peer's `IDENTIFY` answer named its HTTP port: queries go to `<tcp host>:<http_port>`.
    pub fn learned(&self, tcp_addr: &str, http_port: u16) {
        let host = match tcp_addr.rsplit_once(':') {
            Some((host, _)) if !host.is_empty() => host,
            _ => "127.0.0.1",
        };
        let http = format!("{host}:{http_port}");
        tracing::debug!("LOOKUPD({tcp_addr}): HTTP address {http}");
        self.http_addrs
            .borrow_mut()
            .insert(tcp_addr.to_owned(), http);
    }

    /// The peer was removed from `--lookupd-tcp-address`.
    pub fn forget(&self, tcp_addr: &str) {
        self.http_addrs.borrow_mut().remove(tcp_addr);
    }

    pub fn set_peers_configured(&self, n: usize) {
        self.peers_configured.set(n);
    }

    pub fn http_addrs(&self) -> Vec<String> {
        self.http_addrs.borrow().values().cloned().collect()
    }

    /// The sorted union of every lookupd's channels for `topic`; failures are logged and skipped.
    async fn query_all(&self, topic: &str) -> Vec<String> {
        let addrs = self.http_addrs();
        if addrs.is_empty() {
            if self.peers_configured.get() > 0 {
                tracing::error!(
                    "no available nsqlookupd to query for channels to pre-create for topic {topic}"
                );
            }
            return Vec::new();
        }
        let queries: Vec<_> = addrs
            .into_iter()
            .map(|addr| {
                let (topic, connect, request) =
                    (topic.to_owned(), self.connect_timeout, self.request_timeout);
                let handle = crate::broker::spawn(async move {
                    let result = query(&addr, &topic, connect, request).await;
                    (addr, result)
                });
                AbortOnDrop(handle)
            })
            .collect();
        let mut all = Vec::new();
        for mut q in queries {
            match (&mut q.0).await {
                Ok((_, Ok(channels))) => all.extend(channels),
                Ok((addr, Err(e))) => tracing::warn!(
                    "failed to query nsqlookupd {addr} for channels to pre-create for topic {topic} - {e}"
                ),
                Err(e) => tracing::warn!("nsqlookupd query for topic {topic} did not finish - {e}"),
            }
        }
        all.sort();
        all.dedup();
        all
    }
}

impl KnownChannels for LookupdChannels {
    fn channels_of<'a>(
        &'a self,
        topic: &'a str,
    ) -> Pin<Box<dyn Future<Output = Vec<String>> + 'a>> {
        Box::pin(self.query_all(topic))
    }
}

/// nsqlookupd's answer (`{"channels":[…]}`; `null` when it knows none).
#[derive(Debug, serde::Deserialize)]
struct ChannelsAnswer {
    #[serde(default)]
    channels: Option<Vec<String>>,
}

/// `GET http://<addr>/channels?topic=<topic>`, nsqd's `GETV1`: any status but 200 is an error.
pub async fn query(
    addr: &str,
    topic: &str,
    connect_timeout: Duration,
    request_timeout: Duration,
) -> Result<Vec<String>, String> {
    let exchange = async {
        let stream = tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect timed out after {connect_timeout:?}"))?
            .map_err(|e| format!("connect: {e}"))?;
        let path = format!("/channels?topic={}", query_escape(topic));
        let body = getv1::get(TokioIo::new(stream), addr, &path, RESPONSE_BYTES_MAX).await?;
        let answer: ChannelsAnswer =
            serde_json::from_slice(&body).map_err(|e| format!("bad answer: {e}"))?;
        Ok(answer.channels.unwrap_or_default())
    };
    tokio::time::timeout(request_timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {request_timeout:?}"))?
}

/// Go's `url.QueryEscape` for the bytes a topic name may hold (`#` of `#ephemeral` → `%23`).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go() {
        assert_eq!(query_escape("a.b_c-d"), "a.b_c-d");
        assert_eq!(query_escape("t#ephemeral"), "t%23ephemeral");
        assert_eq!(query_escape("a b"), "a%20b");
    }

    #[test]
    fn http_address_from_the_peer_host() {
        let l = LookupdChannels::new(Duration::from_secs(1), Duration::from_secs(1));
        l.learned("10.0.0.1:4160", 4161);
        l.learned("[::1]:4160", 4261);
        l.learned(":4160", 4361);
        let mut addrs = l.http_addrs();
        addrs.sort();
        assert_eq!(addrs, ["10.0.0.1:4161", "127.0.0.1:4361", "[::1]:4261"]);
        l.forget(":4160");
        assert_eq!(l.http_addrs().len(), 2);
    }
}
