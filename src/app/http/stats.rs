//! `GET /stats`: `format=json` → the JSON nsqadmin parses (`crate::stats`), anything else →
//! nsqd's text report (`printStats`), byte for byte in layout. Filters: `topic`, `channel`,
//! `include_clients` and `include_mem` (`true`/`1`/`false`/`0`; any other value means true).
//!
//! Text-format choices where Go has no equivalent: times are printed in UTC (`...Z`), GC
//! figures are 0, and the build tag reads `(built w/ringsq <version>)`.

use super::admin::health_text;
use super::response::{self, ApiResult};
use super::Req;
use crate::app::node::Node;
use crate::app::stats::{self, ClientStats, Filter, MemStats, Stats, NSQD_VERSION};
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

/// nsqd's `boolParams`.
fn bool_param(v: Option<&str>) -> bool {
    !matches!(v, Some("false" | "0"))
}

pub async fn stats(node: &Node, req: &Req) -> ApiResult {
    let q = req.params()?;
    let filter = Filter {
        topic: q.get("topic").unwrap_or_default().to_owned(),
        channel: q.get("channel").unwrap_or_default().to_owned(),
        include_clients: bool_param(q.get("include_clients")),
    };
    let include_mem = bool_param(q.get("include_mem"));
    let snapshot = crate::app::gather::stats(&node.link, &filter).await;
    let mem = include_mem.then(stats::mem_stats);
    let health = health_text(node).await;
    if q.get("format") == Some("json") {
        #[derive(Serialize)]
        struct Body<'a> {
            version: &'a str,
            health: &'a str,
            start_time: u64,
            topics: &'a Option<Vec<stats::TopicStats>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            memory: Option<MemStats>,
            producers: &'a Option<Vec<ClientStats>>,
        }
        return Ok(response::json(&Body {
            version: NSQD_VERSION,
            health: &health,
            start_time: node.start_unix_s,
            topics: &snapshot.topics,
            memory: mem,
            producers: &snapshot.producers,
        }));
    }
    let now = crate::broker::Clock::System.now_ns() / 1_000_000_000;
    Ok(response::text(print_stats(
        &snapshot,
        mem.as_ref(),
        &health,
        node.start_unix_s,
        now,
    )))
}

/// nsqd's `printStats`.
pub fn print_stats(
    s: &Stats,
    mem: Option<&MemStats>,
    health: &str,
    start_s: u64,
    now_s: u64,
) -> String {
    let mut w = String::new();
    let _ = writeln!(
        w,
        "nsqd v{NSQD_VERSION} (built w/ringsq {})",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(w, "start_time {}", rfc3339_utc(start_s));
    let _ = writeln!(
        w,
        "uptime {}",
        go_duration(Duration::from_secs(now_s.saturating_sub(start_s)))
    );
    let _ = writeln!(w, "\nHealth: {health}");
    if let Some(m) = mem {
        let _ = writeln!(w, "\nMemory:");
        let rows: [(&str, u64); 9] = [
            ("heap_objects", m.heap_objects),
            ("heap_idle_bytes", m.heap_idle_bytes),
            ("heap_in_use_bytes", m.heap_in_use_bytes),
            ("heap_released_bytes", m.heap_released_bytes),
            ("gc_pause_usec_100", m.gc_pause_usec_100),
            ("gc_pause_usec_99", m.gc_pause_usec_99),
            ("gc_pause_usec_95", m.gc_pause_usec_95),
            ("next_gc_bytes", m.next_gc_bytes),
            ("gc_total_runs", u64::from(m.gc_total_runs)),
        ];
        for (k, v) in rows {
            let _ = writeln!(w, "   {k:<25}\t{v}");
        }
    }
    let topics = s.topics.as_deref().unwrap_or_default();
    if topics.is_empty() {
        let _ = writeln!(w, "\nTopics: None");
    } else {
        let _ = write!(w, "\nTopics:");
    }
    for t in topics {
        let p = if t.paused { "*P " } else { "   " };
        let _ = writeln!(
            w,
            "\n{p}[{:<15}] depth: {:<5} be-depth: {:<5} msgs: {:<8} e2e%: {}",
            t.topic_name,
            t.depth,
            t.backend_depth,
            t.message_count,
            t.e2e_processing_latency.human()
        );
        for c in &t.channels {
            let p = if c.paused { "   *P " } else { "      " };
            // ringsq's dead letters, after nsqd's fields, only when there are some (nsqd's
            // line is unchanged otherwise).
            let dead = if c.dead_count > 0 {
                format!(" dead: {}", c.dead_count)
            } else {
                String::new()
            };
            let _ = writeln!(
                w,
                "{p}[{:<25}] depth: {:<5} be-depth: {:<5} inflt: {:<4} def: {:<4} re-q: {:<5} timeout: {:<5} msgs: {:<8} e2e%: {}{dead}",
                c.channel_name, c.depth, c.backend_depth, c.in_flight_count, c.deferred_count,
                c.requeue_count, c.timeout_count, c.message_count, c.e2e_processing_latency.human()
            );
            for client in c.clients.as_deref().unwrap_or_default() {
                let _ = writeln!(w, "        {}", client_line(client, now_s));
            }
        }
    }
    let producers = s.producers.as_deref().unwrap_or_default();
    if producers.is_empty() {
        let _ = writeln!(w, "\nProducers: None");
    } else {
        let _ = writeln!(w, "\nProducers:");
        for client in producers {
            let _ = writeln!(w, "   {}", client_line(client, now_s));
        }
    }
    w
}

/// nsqd's `ClientStats.String()`.
fn client_line(c: &ClientStats, now_s: u64) -> String {
    let connected = go_duration(Duration::from_secs(now_s.saturating_sub(c.connect_ts)));
    let port = c.remote_address.rsplit(':').next().unwrap_or_default();
    let id = format!("{}:{port} {}", c.client_id, c.user_agent);
    if !c.pub_counts.is_empty() {
        let total: u64 = c.pub_counts.iter().map(|p| p.count).sum();
        let topics: Vec<String> = c
            .pub_counts
            .iter()
            .map(|p| format!("{}={}", p.topic, p.count))
            .collect();
        return format!(
            "[{} {id:<21}] msgs: {total:<8} topics: {} connected: {connected}",
            c.version,
            topics.join(",")
        );
    }
    format!(
        "[{} {id:<21}] state: {} inflt: {:<4} rdy: {:<4} fin: {:<8} re-q: {:<8} msgs: {:<8} connected: {connected}",
        c.version, c.state, c.in_flight_count, c.ready_count, c.finish_count, c.requeue_count, c.message_count
    )
}

/// Go's `time.Duration.String()`.
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_owned();
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", fraction(ns, 1_000, 3));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", fraction(ns, 1_000_000, 6));
    }
    let secs = ns / 1_000_000_000;
    let sec = fraction(ns % 60_000_000_000, 1_000_000_000, 9);
    let (h, m) = (secs / 3600, secs / 60 % 60);
    if h > 0 {
        format!("{h}h{m}m{sec}s")
    } else if m > 0 {
        format!("{m}m{sec}s")
    } else {
        format!("{sec}s")
    }
}

/// `v / unit` with the remainder as a decimal fraction, trailing zeros trimmed.
fn fraction(v: u128, unit: u128, digits: usize) -> String {
    let (int, rem) = (v / unit, v % unit);
    if rem == 0 {
        return int.to_string();
    }
    let frac = format!("{rem:0digits$}");
    format!("{int}.{}", frac.trim_end_matches('0'))
}

/// RFC 3339 in UTC from Unix seconds (days-from-civil, Howard Hinnant's algorithm).
pub fn rfc3339_utc(unix_s: u64) -> String {
    let days = unix_s / 86_400;
    let rem = unix_s % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_go_prints_them() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_nanos(12)), "12ns");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(go_duration(Duration::from_nanos(2_500)), "2.5µs");
        assert_eq!(go_duration(Duration::from_secs(5)), "5s");
        assert_eq!(go_duration(Duration::from_millis(61_500)), "1m1.5s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_secs(90_061)), "25h1m1s");
    }

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn empty_report() {
        let s = Stats {
            topics: Some(Vec::new()),
            producers: None,
        };
        let text = print_stats(&s, None, "OK", 10, 15);
        assert!(text.starts_with("nsqd v1.3.0 (built w/ringsq "));
        assert!(text.contains("\nuptime 5s\n\nHealth: OK\n\nTopics: None\n\nProducers: None\n"));
    }
}
