//! `GET /config/:opt` and `PUT /config/:opt` (nsqd's `doConfig`).
//!
//! `opt` is an nsqd config name (flag name with `_`, or its `cfg` tag: `id`,
//! `nsqlookupd_tcp_addresses`, `auth_http_addresses`, `e2e_processing_latency_percentiles`).
//! String options answer as raw text, everything else as JSON: numbers, arrays, durations as
//! integer nanoseconds, `log_level` as nsqd's integer (debug 1 … fatal 5), `tls_required` as
//! its integer (0 false, 1 tcp-https, 2 true). Writable: `nsqlookupd_tcp_addresses` (a JSON
//! array of strings; lookup peers are reconciled at once) and `log_level` (its name as text).

use super::response::{self, ApiError, ApiResult};
use super::Req;
use crate::app::node::Node;
use crate::options::{LogLevel, Options, TlsRequired};
use hyper::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// An option's value as `doConfig` sends it.
enum OptValue {
    Text(String),
    Json(Value),
}

fn ns(d: Duration) -> Value {
    json!(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn log_level_number(level: LogLevel) -> u8 {
    match level {
        LogLevel::Debug => 1,
        LogLevel::Info => 2,
        LogLevel::Warn => 3,
        LogLevel::Error => 4,
        LogLevel::Fatal => 5,
    }
}

fn text_opt(o: &Options, name: &str) -> Option<String> {
    let v = match name {
        "log_prefix" => &o.log_prefix,
        "https_address" => &o.https_address,
        "http_address" => &o.http_address,
        "tcp_address" => &o.tcp_address,
        "broadcast_address" => &o.broadcast_address,
        "statsd_address" => &o.statsd_address,
        "statsd_prefix" => &o.statsd_prefix,
        "tls_cert" => &o.tls_cert,
        "tls_key" => &o.tls_key,
        "tls_client_auth_policy" => &o.tls_client_auth_policy,
        "tls_root_ca_file" => &o.tls_root_ca_file,
        "data_path" => return Some(o.data_path.display().to_string()),
        _ => return None,
    };
    Some(v.clone())
}

fn json_opt(node: &Node, name: &str) -> Option<Value> {
    let o = &node.options();
    Some(match name {
        "log_level" => json!(log_level_number(node.log_level())),
        "id" => json!(o.node_id),
        "auth_http_addresses" => json!(o.auth_http_addresses),
        "nsqlookupd_tcp_addresses" => json!(node.lookupd_tcp_addresses()),
        "broadcast_tcp_port" => json!(o.broadcast_tcp_port),
        "broadcast_http_port" => json!(o.broadcast_http_port),
        "http_client_connect_timeout" => ns(o.http_client_connect_timeout),
        "http_client_request_timeout" => ns(o.http_client_request_timeout),
        "mem_queue_size" => json!(o.mem_queue_size),
        "max_bytes_per_file" => json!(o.max_bytes_per_file),
        "sync_every" => json!(o.sync_every),
        "sync_timeout" => ns(o.sync_timeout),
        "queue_scan_worker_pool_max" => json!(o.queue_scan_worker_pool_max),
        "queue_scan_selection_count" => json!(o.queue_scan_selection_count),
        "msg_timeout" => ns(o.msg_timeout),
        "max_msg_timeout" => ns(o.max_msg_timeout),
        "max_msg_size" => json!(o.max_msg_size),
        "max_body_size" => json!(o.max_body_size),
        "max_req_timeout" => ns(o.max_req_timeout),
        "max_heartbeat_interval" => ns(o.max_heartbeat_interval),
        "max_rdy_count" => json!(o.max_rdy_count),
        "max_output_buffer_size" => json!(o.max_output_buffer_size),
        "max_output_buffer_timeout" => ns(o.max_output_buffer_timeout),
        "min_output_buffer_timeout" => ns(o.min_output_buffer_timeout),
        "output_buffer_timeout" => ns(o.output_buffer_timeout),
        "max_channel_consumers" => json!(o.max_channel_consumers),
        "statsd_interval" => ns(o.statsd_interval),
        "statsd_mem_stats" => json!(o.statsd_mem_stats),
        "statsd_udp_packet_size" => json!(o.statsd_udp_packet_size),
        "statsd_exclude_ephemeral" => json!(o.statsd_exclude_ephemeral),
        "e2e_processing_latency_percentiles" => json!(o.e2e_processing_latency_percentiles),
        "e2e_processing_latency_window_time" => ns(o.e2e_processing_latency_window_time),
        "tls_required" => json!(match o.tls_required {
            TlsRequired::NotRequired => 0,
            TlsRequired::ExceptHttp => 1,
            TlsRequired::Required => 2,
        }),
        "tls_min_version" => json!(o.tls_min_version),
        "deflate" => json!(o.deflate),
        "max_deflate_level" => json!(o.max_deflate_level),
        "snappy" => json!(o.snappy),
        "ack_after_sync" => json!(o.ack_after_sync),
        _ => return None,
    })
}

fn get(node: &Node, name: &str) -> Option<OptValue> {
    text_opt(node.options(), name)
        .map(OptValue::Text)
        .or_else(|| json_opt(node, name).map(OptValue::Json))
}

fn invalid_value() -> ApiError {
    ApiError::bad_request("INVALID_VALUE")
}

/// Applies a `PUT`: only the options nsqd lets change at run time.
async fn put(node: &Node, name: &str, req: Req) -> Result<(), ApiError> {
    let max = node.options().max_msg_size;
    let body = req.read_body(max).await?;
    let Some(body) = body.filter(|b| !b.is_empty()) else {
        return Err(ApiError::new(413, "INVALID_VALUE"));
    };
    match name {
        "nsqlookupd_tcp_addresses" => {
            let addresses: Vec<String> =
                serde_json::from_slice(&body).map_err(|_| invalid_value())?;
            node.set_lookupd_tcp_addresses(addresses);
        }
        "log_level" => {
            let text = std::str::from_utf8(&body).map_err(|_| invalid_value())?;
            let level = LogLevel::parse(text).map_err(|_| invalid_value())?;
            node.set_log_level(level);
        }
        _ => return Err(ApiError::bad_request("INVALID_OPTION")),
    }
    Ok(())
}

pub async fn config(node: &Node, name: &str, req: Req) -> ApiResult {
    if req.method == Method::PUT {
        put(node, name, req).await?;
    }
    match get(node, name) {
        Some(OptValue::Text(t)) => Ok(response::text(t)),
        Some(OptValue::Json(v)) => Ok(response::json(&v)),
        None => Err(ApiError::bad_request("INVALID_OPTION")),
    }
}
