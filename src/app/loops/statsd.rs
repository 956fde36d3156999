//! The statsd loop (nsqd's `statsd.go`): every `--statsd-interval`, the figures of `/stats` as
//! UDP statsd lines under `--statsd-prefix` (with `%s` → `<broadcast_address>_<http_port>`).
//!
//! Keys: `topic.<t>.{message_count,message_bytes}` (counters: the increase since the last
//! send), `topic.<t>.{depth,backend_depth}` (gauges), `topic.<t>.channel.<c>.{message_count,
//! requeue_count,timeout_count}` (counters), `…channel.<c>.{depth,backend_depth,in_flight_count,
//! deferred_count,clients}` (gauges), `…e2e_processing_latency_<pct>` (gauges, topic and channel,
//! with `--e2e-processing-latency-percentile`), and `mem.heap_in_use_bytes` with
//! `--statsd-mem-stats`.
//! Lines are packed into datagrams of at most `--statsd-udp-packet-size` bytes. The figures are
//! gathered from every shard (this loop runs on shard 0).

use crate::app::node::Node;
use crate::app::stats::{self, Filter, LatencyStats};
use std::collections::BTreeMap;
use std::rc::Rc;

/// Builds this round's lines; `last` keeps counter values between rounds.
pub async fn lines(node: &Node, prefix: &str, last: &mut BTreeMap<String, u64>) -> Vec<String> {
    let o = node.options();
    let snapshot = crate::app::gather::stats(&node.link, &Filter::default()).await;
    let mut out = Vec::new();
    let mut counter = |key: String, value: u64, out: &mut Vec<String>| {
        let before = last.insert(key.clone(), value).unwrap_or(0);
        out.push(format!("{prefix}{key}:{}|c", value.saturating_sub(before)));
    };
    for t in snapshot.topics.unwrap_or_default() {
        if o.statsd_exclude_ephemeral && crate::protocol::is_ephemeral(&t.topic_name) {
            continue;
        }
        let tk = format!("topic.{}", t.topic_name);
        counter(format!("{tk}.message_count"), t.message_count, &mut out);
        counter(format!("{tk}.message_bytes"), t.message_bytes, &mut out);
        out.push(format!("{prefix}{tk}.depth:{}|g", t.depth));
        out.push(format!("{prefix}{tk}.backend_depth:{}|g", t.backend_depth));
        e2e_gauges(&mut out, prefix, &tk, &t.e2e_processing_latency);
        for c in t.channels {
            if o.statsd_exclude_ephemeral && crate::protocol::is_ephemeral(&c.channel_name) {
                continue;
            }
            let ck = format!("{tk}.channel.{}", c.channel_name);
            counter(format!("{ck}.message_count"), c.message_count, &mut out);
            counter(format!("{ck}.requeue_count"), c.requeue_count, &mut out);
            counter(format!("{ck}.timeout_count"), c.timeout_count, &mut out);
            for (k, v) in [
                ("depth", c.depth),
                ("backend_depth", c.backend_depth),
                ("in_flight_count", c.in_flight_count),
                ("deferred_count", c.deferred_count),
                ("clients", c.client_count),
            ] {
                out.push(format!("{prefix}{ck}.{k}:{v}|g"));
            }
            e2e_gauges(&mut out, prefix, &ck, &c.e2e_processing_latency);
        }
    }
    if o.statsd_mem_stats {
        let m = stats::mem_stats();
        out.push(format!(
            "{prefix}mem.heap_in_use_bytes:{}|g",
            m.heap_in_use_bytes
        ));
    }
    out
}

/// `<key>.e2e_processing_latency_<pct>` gauges (`%.0f` of quantile × 100; value as int64 ns).
fn e2e_gauges(out: &mut Vec<String>, prefix: &str, key: &str, e2e: &LatencyStats) {
    for p in e2e.percentiles.iter().flatten() {
        #[allow(clippy::cast_possible_truncation)] // Go's int64(value): ns, far below i64::MAX
        let value = p.value as i64;
        out.push(format!(
            "{prefix}{key}.e2e_processing_latency_{:.0}:{value}|g",
            p.quantile * 100.0
        ));
    }
}

/// Packs lines into datagrams of at most `packet_bytes_max` (a longer line goes alone).
pub fn packets(lines: &[String], packet_bytes_max: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    for line in lines {
        if !cur.is_empty() && cur.len() + 1 + line.len() > packet_bytes_max {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push('\n');
        }
        cur.push_str(line);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Runs until the broker exits; does nothing without `--statsd-address`.
pub async fn run(node: Rc<Node>) {
    let o = node.options().clone();
    if o.statsd_address.is_empty() {
        return;
    }
    let prefix = o.statsd_prefix_with_host(node.broadcast_http_port());
    let socket = match tokio::net::UdpSocket::bind("0.0.0.0:0").await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("STATSD: cannot open a UDP socket - {e}");
            return;
        }
    };
    let packet_max = usize::try_from(o.statsd_udp_packet_size).unwrap_or(usize::MAX);
    let mut last = BTreeMap::new();
    let period = o.statsd_interval.max(std::time::Duration::from_millis(10));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tick.tick().await;
        if node.broker.exiting.get() {
            return;
        }
        let lines = lines(&node, &prefix, &mut last).await;
        for packet in packets(&lines, packet_max) {
            if let Err(e) = socket
                .send_to(packet.as_bytes(), o.statsd_address.as_str())
                .await
            {
                tracing::error!("STATSD: send to {} failed - {e}", o.statsd_address);
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_lines_under_the_limit() {
        let lines: Vec<String> = ["a:1|c", "b:2|g", "c:3|g"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(
            packets(&lines, 11),
            vec!["a:1|c\nb:2|g".to_owned(), "c:3|g".to_owned()]
        );
        assert_eq!(packets(&lines, 1), lines);
        assert!(packets(&[], 10).is_empty());
    }
}
