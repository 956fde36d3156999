//! Unit tests of the options module: every flag from the command line (both dash styles,
//! `=` and space forms) and from a config file, precedence, Go's flag grammar, defaults,
//! and bad values (the message must name the flag or key).
//!
//! Expected values are written out here (not derived from the flag table), so a wrong row
//! in the table fails a test instead of agreeing with itself.

use std::io::Write as _;

use super::flags::{Shown, FLAGS};
use super::value::{self, Raw};
use super::*;

fn args(extra: &[&str]) -> Vec<String> {
    std::iter::once("ringsq")
        .chain(extra.iter().copied())
        .map(str::to_owned)
        .collect()
}

fn run(extra: &[&str]) -> Options {
    match parse(args(extra)) {
        Ok(Parsed::Run(opts)) => opts,
        other => panic!("{extra:?} should run, got {other:?}"),
    }
}

fn fail(extra: &[&str]) -> OptionsError {
    match parse(args(extra)) {
        Err(err) => err,
        other => panic!("{extra:?} should fail, got {other:?}"),
    }
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

fn with(set: impl FnOnce(&mut Options)) -> Options {
    let mut opts = Options::default();
    set(&mut opts);
    opts
}

/// One non-default value per flag: command-line form, config key ("" for none) and TOML form, the extra
/// flags it needs to pass nsqd's checks, and what it must change.
struct Sample {
    flag: &'static str,
    cli: &'static str,
    key: &'static str,
    toml: &'static str,
    context: &'static [&'static str],
    set: fn(&mut Options),
}

const CERT_AND_KEY: &[&str] = &["--tls-cert=/c.pem", "--tls-key=/k.pem"];

#[rustfmt::skip]
const SAMPLES: &[Sample] = &[
    Sample { flag: "log-level", cli: "debug", key: "log_level", toml: "\"DEBUG\"", context: &[], set: |o| o.log_level = LogLevel::Debug },
    Sample { flag: "log-prefix", cli: "[x] ", key: "log_prefix", toml: "\"[x] \"", context: &[], set: |o| o.log_prefix = "[x] ".into() },
    Sample { flag: "verbose", cli: "true", key: "", toml: "true", context: &[], set: |o| o.verbose = true },
    Sample { flag: "node-id", cli: "42", key: "id", toml: "42", context: &[], set: |o| o.node_id = 42 },
    Sample { flag: "https-address", cli: "127.0.0.1:1", key: "https_address", toml: "\"127.0.0.1:1\"", context: &[], set: |o| o.https_address = "127.0.0.1:1".into() },
    Sample { flag: "http-address", cli: "127.0.0.1:2", key: "http_address", toml: "\"127.0.0.1:2\"", context: &[], set: |o| o.http_address = "127.0.0.1:2".into() },
    Sample { flag: "tcp-address", cli: "127.0.0.1:3", key: "tcp_address", toml: "\"127.0.0.1:3\"", context: &[], set: |o| o.tcp_address = "127.0.0.1:3".into() },
    Sample { flag: "auth-http-address", cli: "a:1", key: "auth_http_addresses", toml: "[\"a:1\"]", context: &[], set: |o| o.auth_http_addresses = vec!["a:1".into()] },
    Sample { flag: "broadcast-address", cli: "b.example", key: "broadcast_address", toml: "\"b.example\"", context: &[], set: |o| o.broadcast_address = "b.example".into() },
    Sample { flag: "broadcast-tcp-port", cli: "4000", key: "broadcast_tcp_port", toml: "4000", context: &[], set: |o| o.broadcast_tcp_port = 4000 },
    Sample { flag: "broadcast-http-port", cli: "4001", key: "broadcast_http_port", toml: "4001", context: &[], set: |o| o.broadcast_http_port = 4001 },
    Sample { flag: "lookupd-tcp-address", cli: "l:4160", key: "nsqlookupd_tcp_addresses", toml: "[\"l:4160\"]", context: &[], set: |o| o.lookupd_tcp_addresses = vec!["l:4160".into()] },
    Sample { flag: "http-client-connect-timeout", cli: "3s", key: "http_client_connect_timeout", toml: "\"3s\"", context: &[], set: |o| o.http_client_connect_timeout = Duration::from_secs(3) },
    Sample { flag: "http-client-request-timeout", cli: "1m30s", key: "http_client_request_timeout", toml: "\"1m30s\"", context: &[], set: |o| o.http_client_request_timeout = Duration::from_secs(90) },
    Sample { flag: "data-path", cli: "/var/lib/nsq", key: "data_path", toml: "\"/var/lib/nsq\"", context: &[], set: |o| o.data_path = "/var/lib/nsq".into() },
    Sample { flag: "mem-queue-size", cli: "0", key: "mem_queue_size", toml: "0", context: &[], set: |o| o.mem_queue_size = 0 },
    Sample { flag: "max-bytes-per-file", cli: "1024", key: "max_bytes_per_file", toml: "1024", context: &[], set: |o| o.max_bytes_per_file = 1024 },
    Sample { flag: "sync-every", cli: "1", key: "sync_every", toml: "1", context: &[], set: |o| o.sync_every = 1 },
    Sample { flag: "sync-timeout", cli: "250ms", key: "sync_timeout", toml: "\"250ms\"", context: &[], set: |o| o.sync_timeout = Duration::from_millis(250) },
    Sample { flag: "queue-scan-worker-pool-max", cli: "8", key: "queue_scan_worker_pool_max", toml: "8", context: &[], set: |o| o.queue_scan_worker_pool_max = 8 },
    Sample { flag: "queue-scan-selection-count", cli: "40", key: "queue_scan_selection_count", toml: "40", context: &[], set: |o| o.queue_scan_selection_count = 40 },
    Sample { flag: "msg-timeout", cli: "1.5s", key: "msg_timeout", toml: "\"1.5s\"", context: &[], set: |o| o.msg_timeout = Duration::from_millis(1500) },
    Sample { flag: "max-msg-timeout", cli: "1h", key: "max_msg_timeout", toml: "\"1h\"", context: &[], set: |o| o.max_msg_timeout = Duration::from_secs(3600) },
    Sample { flag: "max-msg-size", cli: "2048", key: "max_msg_size", toml: "2048", context: &[], set: |o| o.max_msg_size = 2048 },
    Sample { flag: "max-req-timeout", cli: "2h", key: "max_req_timeout", toml: "\"2h\"", context: &[], set: |o| o.max_req_timeout = Duration::from_secs(7200) },
    Sample { flag: "max-body-size", cli: "4096", key: "max_body_size", toml: "4096", context: &[], set: |o| o.max_body_size = 4096 },
    Sample { flag: "max-heartbeat-interval", cli: "30s", key: "max_heartbeat_interval", toml: "\"30s\"", context: &[], set: |o| o.max_heartbeat_interval = Duration::from_secs(30) },
    Sample { flag: "max-rdy-count", cli: "100", key: "max_rdy_count", toml: "100", context: &[], set: |o| o.max_rdy_count = 100 },
    Sample { flag: "max-output-buffer-size", cli: "1024", key: "max_output_buffer_size", toml: "1024", context: &[], set: |o| o.max_output_buffer_size = 1024 },
    Sample { flag: "max-output-buffer-timeout", cli: "1s", key: "max_output_buffer_timeout", toml: "\"1s\"", context: &[], set: |o| o.max_output_buffer_timeout = Duration::from_secs(1) },
    Sample { flag: "min-output-buffer-timeout", cli: "10ms", key: "min_output_buffer_timeout", toml: "\"10ms\"", context: &[], set: |o| o.min_output_buffer_timeout = Duration::from_millis(10) },
    Sample { flag: "output-buffer-timeout", cli: "100ms", key: "output_buffer_timeout", toml: "\"100ms\"", context: &[], set: |o| o.output_buffer_timeout = Duration::from_millis(100) },
    Sample { flag: "max-channel-consumers", cli: "5", key: "max_channel_consumers", toml: "5", context: &[], set: |o| o.max_channel_consumers = 5 },
    Sample { flag: "statsd-address", cli: "127.0.0.1:8125", key: "statsd_address", toml: "\"127.0.0.1:8125\"", context: &[], set: |o| o.statsd_address = "127.0.0.1:8125".into() },
    Sample { flag: "statsd-interval", cli: "10s", key: "statsd_interval", toml: "\"10s\"", context: &[], set: |o| o.statsd_interval = Duration::from_secs(10) },
    Sample { flag: "statsd-mem-stats", cli: "false", key: "statsd_mem_stats", toml: "false", context: &[], set: |o| o.statsd_mem_stats = false },
    Sample { flag: "statsd-prefix", cli: "x.%s", key: "statsd_prefix", toml: "\"x.%s\"", context: &[], set: |o| o.statsd_prefix = "x.%s".into() },
    Sample { flag: "statsd-udp-packet-size", cli: "1400", key: "statsd_udp_packet_size", toml: "1400", context: &[], set: |o| o.statsd_udp_packet_size = 1400 },
    Sample { flag: "statsd-exclude-ephemeral", cli: "true", key: "statsd_exclude_ephemeral", toml: "true", context: &[], set: |o| o.statsd_exclude_ephemeral = true },
    Sample { flag: "e2e-processing-latency-percentile", cli: "0.5", key: "e2e_processing_latency_percentiles", toml: "[0.5]", context: &[], set: |o| o.e2e_processing_latency_percentiles = vec![0.5] },
    Sample { flag: "e2e-processing-latency-window-time", cli: "5m", key: "e2e_processing_latency_window_time", toml: "\"5m\"", context: &[], set: |o| o.e2e_processing_latency_window_time = Duration::from_secs(300) },
    Sample { flag: "tls-cert", cli: "/c.pem", key: "tls_cert", toml: "\"/c.pem\"", context: &["--tls-key=/k.pem"], set: |o| { o.tls_cert = "/c.pem".into(); o.tls_key = "/k.pem".into() } },
    Sample { flag: "tls-key", cli: "/k.pem", key: "tls_key", toml: "\"/k.pem\"", context: &["--tls-cert=/c.pem"], set: |o| { o.tls_cert = "/c.pem".into(); o.tls_key = "/k.pem".into() } },
    Sample { flag: "tls-client-auth-policy", cli: "require", key: "tls_client_auth_policy", toml: "\"require\"", context: CERT_AND_KEY, set: |o| { o.tls_client_auth_policy = "require".into(); o.tls_required = TlsRequired::Required; o.tls_cert = "/c.pem".into(); o.tls_key = "/k.pem".into() } },
    Sample { flag: "tls-root-ca-file", cli: "/ca.pem", key: "tls_root_ca_file", toml: "\"/ca.pem\"", context: &[], set: |o| o.tls_root_ca_file = "/ca.pem".into() },
    Sample { flag: "tls-required", cli: "true", key: "tls_required", toml: "true", context: CERT_AND_KEY, set: |o| { o.tls_required = TlsRequired::Required; o.tls_cert = "/c.pem".into(); o.tls_key = "/k.pem".into() } },
    Sample { flag: "tls-min-version", cli: "tls1.2", key: "tls_min_version", toml: "\"tls1.2\"", context: &[], set: |o| o.tls_min_version = 0x0303 },
    Sample { flag: "deflate", cli: "false", key: "deflate", toml: "false", context: &[], set: |o| o.deflate = false },
    Sample { flag: "max-deflate-level", cli: "9", key: "max_deflate_level", toml: "9", context: &[], set: |o| o.max_deflate_level = 9 },
    Sample { flag: "snappy", cli: "false", key: "snappy", toml: "false", context: &[], set: |o| o.snappy = false },
    Sample { flag: "ack-after-sync", cli: "true", key: "ack_after_sync", toml: "true", context: &[], set: |o| o.ack_after_sync = true },
    Sample { flag: "retention", cli: "1h30m", key: "retention", toml: "\"1h30m\"", context: &[], set: |o| o.retention = Duration::from_secs(5400) },
    Sample { flag: "max-topic-bytes", cli: "1048576", key: "max_topic_bytes", toml: "1048576", context: &[], set: |o| o.max_topic_bytes = 1_048_576 },
    Sample { flag: "max-attempts", cli: "5", key: "max_attempts", toml: "5", context: &[], set: |o| o.max_attempts = 5 },
    Sample { flag: "message-ttl", cli: "10m", key: "message_ttl", toml: "\"10m\"", context: &[], set: |o| o.message_ttl = Duration::from_secs(600) },
    Sample { flag: "shards", cli: "3", key: "shards", toml: "3", context: &[], set: |o| o.shards = 3 },
    Sample { flag: "log-format", cli: "json", key: "log_format", toml: "\"JSON\"", context: &[], set: |o| o.log_format = LogFormat::Json },
];

/// Flags with no options field: read by `parse` itself or ignored (tested separately).
const META_FLAGS: &[&str] = &["version", "config", "worker-id"];

#[test]
fn samples_cover_every_flag_and_name_its_config_key() {
    for spec in FLAGS {
        if META_FLAGS.contains(&spec.name) {
            assert_eq!(spec.config_key(), None, "{}", spec.name);
            continue;
        }
        let sample = SAMPLES.iter().find(|s| s.flag == spec.name);
        let sample = sample.unwrap_or_else(|| panic!("no sample for --{}", spec.name));
        let key = Some(sample.key).filter(|k| !k.is_empty());
        assert_eq!(spec.config_key().as_deref(), key, "--{}", spec.name);
    }
    assert_eq!(SAMPLES.len() + META_FLAGS.len(), FLAGS.len());
}

#[test]
fn every_flag_parses_from_the_command_line_in_every_go_form() {
    for s in SAMPLES {
        let expected = with(s.set);
        let is_bool = flags::lookup(s.flag).unwrap().setter.is_bool();
        let mut forms = vec![
            vec![format!("-{}={}", s.flag, s.cli)],
            vec![format!("--{}={}", s.flag, s.cli)],
        ];
        if is_bool {
            if s.cli == "true" {
                forms.push(vec![format!("-{}", s.flag)]);
                forms.push(vec![format!("--{}", s.flag)]);
            }
        } else {
            forms.push(vec![format!("-{}", s.flag), s.cli.to_owned()]);
            forms.push(vec![format!("--{}", s.flag), s.cli.to_owned()]);
        }
        for form in forms {
            let mut argv: Vec<&str> = s.context.to_vec();
            argv.extend(form.iter().map(String::as_str));
            assert_eq!(run(&argv), expected, "{argv:?}");
        }
    }
}

#[test]
fn every_flag_parses_from_the_config_file() {
    for s in SAMPLES.iter().filter(|s| !s.key.is_empty()) {
        let file = config_file(&format!("{} = {}\n", s.key, s.toml));
        let path = file.path().to_str().unwrap();
        let mut argv = vec!["--config", path];
        argv.extend_from_slice(s.context);
        assert_eq!(run(&argv), with(s.set), "{} = {}", s.key, s.toml);
    }
}

#[test]
fn a_whole_nsqd_config_file_parses() {
    let file = config_file(
        r#"
        id = 515
        broadcast_address = "10.0.0.1"
        tcp_address = "0.0.0.0:4150"
        nsqlookupd_tcp_addresses = ["10.0.0.2:4160", "10.0.0.3:4160"]
        data_path = "/var/lib/nsq"
        mem_queue_size = 10000
        sync_timeout = "2s"
        msg_timeout = "60s"
        max_msg_size = 1024768
        max_body_size = 5123840
        e2e_processing_latency_percentiles = [1.0, 0.99, 0.95]
        tls_required = false
        tls_min_version = ""
        log_level = "info"
        statsd_mem_stats = true
    "#,
    );
    let opts = run(&["--config", file.path().to_str().unwrap()]);
    assert_eq!(opts.node_id, 515);
    assert_eq!(
        opts.lookupd_tcp_addresses,
        ["10.0.0.2:4160", "10.0.0.3:4160"]
    );
    assert_eq!(opts.max_msg_size, 1_024_768);
    assert_eq!(opts.max_body_size, 5_123_840);
    assert_eq!(opts.e2e_processing_latency_percentiles, [1.0, 0.99, 0.95]);
    assert_eq!(opts.tls_min_version, TLS_VERSION_1_0);
    assert!(opts.ignored_config_keys.is_empty());
}

#[test]
fn defaults_equal_nsqd_1_3_0() {
    let o = Options::default();
    let secs = Duration::from_secs;
    let ms = Duration::from_millis;
    assert_eq!(
        (o.log_level, o.log_prefix.as_str(), o.verbose),
        (LogLevel::Info, "[nsqd] ", false)
    );
    assert_eq!(o.tcp_address, "0.0.0.0:4150");
    assert_eq!(o.http_address, "0.0.0.0:4151");
    assert_eq!(o.https_address, "0.0.0.0:4152");
    assert_eq!(o.broadcast_address, hostname());
    assert_eq!(o.node_id, default_node_id(&hostname()));
    assert_eq!((o.broadcast_tcp_port, o.broadcast_http_port), (0, 0));
    assert!(o.lookupd_tcp_addresses.is_empty() && o.auth_http_addresses.is_empty());
    assert_eq!(
        (o.http_client_connect_timeout, o.http_client_request_timeout),
        (secs(2), secs(5))
    );
    assert_eq!(o.data_path, PathBuf::new());
    assert_eq!(
        (o.mem_queue_size, o.max_bytes_per_file, o.sync_every),
        (10_000, 104_857_600, 2500)
    );
    assert_eq!(o.sync_timeout, secs(2));
    assert_eq!(
        (o.queue_scan_worker_pool_max, o.queue_scan_selection_count),
        (4, 20)
    );
    assert_eq!(
        (o.queue_scan_interval, o.queue_scan_refresh_interval),
        (ms(100), secs(5))
    );
    assert!((o.queue_scan_dirty_percent - 0.25).abs() < f64::EPSILON);
    assert_eq!(
        (o.msg_timeout, o.max_msg_timeout, o.max_req_timeout),
        (secs(60), secs(900), secs(3600))
    );
    assert_eq!((o.max_msg_size, o.max_body_size), (1_048_576, 5_242_880));
    assert_eq!(o.client_timeout, secs(60));
    assert_eq!(
        (
            o.max_heartbeat_interval,
            o.max_rdy_count,
            o.max_output_buffer_size
        ),
        (secs(60), 2500, 65_536)
    );
    assert_eq!(
        (
            o.max_output_buffer_timeout,
            o.min_output_buffer_timeout,
            o.output_buffer_timeout
        ),
        (secs(30), ms(25), ms(250))
    );
    assert_eq!(o.max_channel_consumers, 0);
    assert_eq!(
        (
            o.statsd_address.as_str(),
            o.statsd_prefix.as_str(),
            o.statsd_interval
        ),
        ("", "nsq.%s", secs(60))
    );
    assert!(o.statsd_mem_stats && !o.statsd_exclude_ephemeral);
    assert_eq!(o.statsd_udp_packet_size, 508);
    assert!(o.e2e_processing_latency_percentiles.is_empty());
    assert_eq!(o.e2e_processing_latency_window_time, secs(600));
    assert!(o.tls_cert.is_empty() && o.tls_key.is_empty() && o.tls_root_ca_file.is_empty());
    assert!(o.tls_client_auth_policy.is_empty());
    assert_eq!(
        (o.tls_required, o.tls_min_version),
        (TlsRequired::NotRequired, 0x0301)
    );
    assert_eq!((o.deflate, o.max_deflate_level, o.snappy), (true, 6, true));
    assert!(!o.ack_after_sync);
    assert_eq!(o.log_format, LogFormat::Text);
}

#[test]
fn help_defaults_are_the_real_defaults() {
    for spec in FLAGS {
        if let Shown::Value(text) = spec.shown {
            let mut opts = Options::default();
            value::apply(spec, &mut opts, Raw::Arg(text)).unwrap();
            assert_eq!(
                opts,
                Options::default(),
                "--{} shows default {text:?}",
                spec.name
            );
        }
    }
}

#[test]
fn default_node_id_is_nsqds_hash_of_the_hostname() {
    // crc32.ChecksumIEEE(md5(hostname)) % 1024, computed independently.
    assert_eq!(default_node_id("localhost"), 16);
    assert_eq!(default_node_id("nsqd-1"), 958);
    assert_eq!(default_node_id("vm"), 617);
}

#[test]
fn flag_beats_config_beats_default() {
    let file = config_file(
        "mem_queue_size = 5\nmax_rdy_count = 7\nsnappy = false\n\
         nsqlookupd_tcp_addresses = [\"a:1\", \"b:1\"]\ne2e_processing_latency_percentiles = [0.5]\n",
    );
    let path = file.path().to_str().unwrap();
    let opts = run(&[
        "--mem-queue-size=9",
        "--config",
        path,
        "--snappy",
        "-lookupd-tcp-address=c:1",
    ]);
    assert_eq!(opts.mem_queue_size, 9, "flag before --config still wins");
    assert_eq!(opts.max_rdy_count, 7, "config beats default");
    assert_eq!(opts.max_body_size, 5_242_880, "default stays");
    assert!(opts.snappy, "a bare bool flag beats the config's false");
    assert_eq!(
        opts.lookupd_tcp_addresses,
        ["c:1"],
        "a command-line list replaces the config's"
    );
    let opts = run(&[
        "--config",
        path,
        "--e2e-processing-latency-percentile=0.9,0.99",
        "--lookupd-tcp-address",
        "c:1",
        "--lookupd-tcp-address=d:1",
    ]);
    assert_eq!(opts.lookupd_tcp_addresses, ["c:1", "d:1"]);
    assert_eq!(opts.e2e_processing_latency_percentiles, [0.99, 0.9]);
    assert_eq!(
        run(&["--config", path]).lookupd_tcp_addresses,
        ["a:1", "b:1"]
    );
}

#[test]
fn go_flag_grammar() {
    // Scanning stops at the first non-flag argument, at "--" and at "-"; the rest is ignored.
    assert_eq!(
        run(&["--mem-queue-size=1", "extra", "--mem-queue-size=abc"]).mem_queue_size,
        1
    );
    assert_eq!(run(&["--", "--nope"]), Options::default());
    assert_eq!(run(&["-", "--nope"]), Options::default());
    // A bool flag never takes the next argument; that argument ends the flags.
    let opts = run(&["--snappy", "false", "--mem-queue-size=1"]);
    assert!(opts.snappy);
    assert_eq!(opts.mem_queue_size, 10_000);
    assert_eq!(
        run(&["--tls-required", "--tls-cert=/c", "--tls-key=/k"]).tls_required,
        TlsRequired::Required
    );
    assert_eq!(
        run(&["--tls-required=TCP-HTTPS", "--tls-cert=/c", "--tls-key=/k"]).tls_required,
        TlsRequired::ExceptHttp
    );
    // A value flag takes the next argument whatever it looks like.
    assert_eq!(run(&["--log-prefix", "-x-"]).log_prefix, "-x-");
    assert_eq!(
        run(&["--broadcast-address", "--snappy"]).broadcast_address,
        "--snappy"
    );
    assert_eq!(run(&["--log-prefix="]).log_prefix, "");
    // Repeats: last wins; Go integer syntax.
    assert_eq!(
        run(&["--mem-queue-size=1", "-mem-queue-size", "2"]).mem_queue_size,
        2
    );
    assert_eq!(run(&["--mem-queue-size=0x10"]).mem_queue_size, 16);
    assert_eq!(run(&["--mem-queue-size=010"]).mem_queue_size, 8);
    assert_eq!(
        run(&["--snappy=F", "--deflate=0"]),
        with(|o| (o.snappy, o.deflate) = (false, false))
    );
    // A comma stays inside one address (app.StringArray does not split).
    assert_eq!(
        run(&["--lookupd-tcp-address=a:1,b:1"]).lookupd_tcp_addresses,
        ["a:1,b:1"]
    );
    // Deprecated flags are accepted and do nothing.
    assert_eq!(run(&["--worker-id", "--verbose=false"]), Options::default());
    assert_eq!(run(&["--config="]), Options::default());
}

#[test]
fn help_and_version() {
    for help in [
        &["-h"][..],
        &["-help"],
        &["--help"],
        &["--h"],
        &["--help=1"],
        &["--snappy", "-h", "--nope"],
    ] {
        let Ok(Parsed::Help(text)) = parse(args(help)) else {
            panic!("{help:?} should ask for help")
        };
        assert!(text.contains("--ack-after-sync"));
    }
    assert_eq!(parse(args(&["--version"])), Ok(Parsed::Version));
    assert_eq!(
        parse(args(&["-version=true", "--config=/does/not/exist"])),
        Ok(Parsed::Version)
    );
    assert_eq!(
        parse(args(&["--version=false"])),
        Ok(Parsed::Run(Options::default()))
    );
    assert_eq!(
        fail(&["--version", "--mem-queue-size=x"]).flag(),
        Some("mem-queue-size")
    );
    assert_eq!(
        fail(&["--nope", "--help"]).to_string(),
        "flag provided but not defined: -nope"
    );
    assert!(VERSION.starts_with("ringsq v") && VERSION.contains("nsqd 1.3.0"));
}

#[test]
fn help_lists_every_flag_sorted_with_help_and_default() {
    let text = usage::usage();
    let mut last = 0;
    for spec in FLAGS {
        let line = format!("  --{}", spec.name);
        let at = text
            .find(&format!("{line} "))
            .or_else(|| text.find(&format!("{line}\n")));
        assert!(at.is_some(), "--help lacks {}", spec.name);
        assert!(
            text.contains(spec.help),
            "--help lacks the help of {}",
            spec.name
        );
    }
    for line in text.lines().filter(|l| l.starts_with("  --")) {
        let at = text.find(line).unwrap();
        assert!(at >= last, "flags are sorted: {line}");
        last = at;
    }
    assert!(text.contains("(default 10000)"));
    assert!(text.contains("(default \"0.0.0.0:4150\")"));
    assert!(text.contains("(default 1m0s)"));
    assert!(text.contains("acknowledge PUB/MPUB/DPUB only after the message is fsynced"));
}

#[test]
fn bad_command_line_values_name_the_flag() {
    #[rustfmt::skip]
    let cases: &[(&[&str], Option<&str>, &str, u8)] = &[
        (&["--mem-queue-size=abc"], Some("mem-queue-size"), "invalid value \"abc\" for flag -mem-queue-size: parse error", 2),
        (&["-mem-queue-size", "-1"], Some("mem-queue-size"), "invalid value \"-1\" for flag -mem-queue-size: must not be negative", 2),
        (&["--mem-queue-size=9223372036854775808"], Some("mem-queue-size"), "value out of range", 2),
        (&["--queue-scan-worker-pool-max=99999999999"], Some("queue-scan-worker-pool-max"), "value out of range", 2),
        (&["--node-id=1024"], Some("node-id"), "--node-id must be [0,1024)", 2),
        (&["--node-id", "-1"], Some("node-id"), "--node-id must be [0,1024)", 2),
        (&["--max-deflate-level=0"], Some("max-deflate-level"), "--max-deflate-level must be [1,9]", 2),
        (&["--max-deflate-level=10"], Some("max-deflate-level"), "--max-deflate-level must be [1,9]", 2),
        (&["--broadcast-tcp-port=65536"], Some("broadcast-tcp-port"), "must be [0,65535]", 2),
        (&["--msg-timeout=60"], Some("msg-timeout"), "invalid value \"60\" for flag -msg-timeout: time: missing unit", 2),
        (&["--msg-timeout=-1s"], Some("msg-timeout"), "must not be negative", 2),
        (&["--snappy=yes"], Some("snappy"), "invalid boolean value \"yes\" for -snappy: parse error", 2),
        (&["--tls-required=maybe"], Some("tls-required"), "invalid boolean value \"maybe\" for -tls-required", 2),
        (&["--tls-min-version=ssl3.0"], Some("tls-min-version"), "unknown tlsVersionOption \"ssl3.0\"", 2),
        (&["--log-level=loud"], Some("log-level"), "invalid log level 'loud'", 2),
        (&["--log-format=xml"], Some("log-format"), "invalid log format 'xml' (text, json)", 2),
        (&["--e2e-processing-latency-percentile=1.5"], Some("e2e-processing-latency-percentile"), "invalid E2E processing latency percentile: 1.5", 2),
        (&["--e2e-processing-latency-percentile=0"], Some("e2e-processing-latency-percentile"), "percentile: 0", 2),
        (&["--e2e-processing-latency-percentile=NaN"], Some("e2e-processing-latency-percentile"), "percentile: NaN", 2),
        (&["--e2e-processing-latency-percentile=0.5, 0.9"], Some("e2e-processing-latency-percentile"), "could not parse \" 0.9\"", 2),
        (&["--max-deflate-level"], Some("max-deflate-level"), "flag needs an argument: -max-deflate-level", 2),
        (&["--nope=1"], None, "flag provided but not defined: -nope", 2),
        (&["---x"], None, "bad flag syntax: ---x", 2),
        (&["-=x"], None, "bad flag syntax: -=x", 2),
        (&["--sync-timeout=0"], Some("sync-timeout"), "--sync-timeout must be > 0", 1),
        (&["--statsd-address=x:1", "--statsd-interval=0s"], Some("statsd-interval"), "--statsd-interval must be > 0", 1),
        (&["--tls-required"], Some("tls-required"), "cannot require TLS client connections without TLS key and cert", 1),
        (&["--tls-client-auth-policy=require"], Some("tls-required"), "without TLS key and cert", 1),
        (&["--tls-cert=/c"], Some("tls-cert"), "--tls-cert and --tls-key must be given together", 1),
        (&["--config=/does/not/exist.toml"], Some("config"), "failed to load config file /does/not/exist.toml - ", 1),
    ];
    for (argv, flag, message, code) in cases {
        let err = fail(argv);
        assert!(err.to_string().contains(message), "{argv:?}: {err}");
        assert_eq!(err.flag(), *flag, "{argv:?}");
        assert_eq!(err.exit_code(), *code, "{argv:?}");
    }
}

#[test]
fn bad_config_values_name_the_key() {
    #[rustfmt::skip]
    let cases: &[(&str, &str, &str)] = &[
        ("mem_queue_size = \"abc\"", "mem-queue-size", "invalid value \"abc\" for key \"mem_queue_size\" (flag -mem-queue-size): parse error"),
        ("mem_queue_size = \"0x10\"", "mem-queue-size", "parse error"),
        ("mem_queue_size = 1.5", "mem-queue-size", "expected an integer, found a TOML float"),
        ("mem_queue_size = -1", "mem-queue-size", "must not be negative"),
        ("id = 5000", "node-id", "key \"id\" (flag -node-id): --node-id must be [0,1024)"),
        ("msg_timeout = \"60\"", "msg-timeout", "missing unit"),
        ("msg_timeout = true", "msg-timeout", "expected a duration"),
        ("msg_timeout = -5", "msg-timeout", "must not be negative"),
        ("snappy = 1", "snappy", "expected true or false"),
        ("snappy = \"maybe\"", "snappy", "parse error"),
        ("tls_required = \"maybe\"", "tls-required", "key \"tls_required\""),
        ("tls_required = 2", "tls-required", "parse error"),
        ("tls_min_version = \"ssl3.0\"", "tls-min-version", "unknown tlsVersionOption"),
        ("tls_min_version = 771", "tls-min-version", "expected a TLS version string"),
        ("log_level = \"loud\"", "log-level", "invalid log level"),
        ("log_level = 2", "log-level", "expected a log level string"),
        ("log_format = \"xml\"", "log-format", "invalid log format"),
        ("log_format = true", "log-format", "expected \"text\" or \"json\""),
        ("nsqlookupd_tcp_addresses = [1, 2]", "lookupd-tcp-address", "expected an array of strings"),
        ("e2e_processing_latency_percentiles = [1.5]", "e2e-processing-latency-percentile", "percentile: 1.5"),
        ("e2e_processing_latency_percentiles = [\"a\"]", "e2e-processing-latency-percentile", "expected an array of numbers"),
        ("e2e_processing_latency_percentiles = 0.5", "e2e-processing-latency-percentile", "expected an array of numbers"),
        ("broadcast_address = 5", "broadcast-address", "expected a string, found a TOML integer"),
        ("max_deflate_level = 0", "max-deflate-level", "--max-deflate-level must be [1,9]"),
        ("mem_queue_size = ", "config", "failed to load config file"),
    ];
    for (text, flag, message) in cases {
        let file = config_file(text);
        let path = file.path().to_str().unwrap();
        let err = fail(&["--config", path]);
        assert!(err.to_string().contains(message), "{text}: {err}");
        assert!(
            err.to_string().contains(path),
            "{text}: the message names the file: {err}"
        );
        assert_eq!(err.flag(), Some(*flag), "{text}");
        assert_eq!(
            (err.exit_code(), err.source_kind()),
            (1, ErrorSource::ConfigFile),
            "{text}"
        );
    }
}

#[test]
fn config_values_coerce_as_go_options_does() {
    let path_of = |text: &str| {
        let file = config_file(text);
        let opts = run(&[
            "--config",
            file.path().to_str().unwrap(),
            "--tls-cert=/c",
            "--tls-key=/k",
        ]);
        opts
    };
    assert_eq!(
        path_of("msg_timeout = 1500").msg_timeout,
        Duration::from_millis(1500),
        "integer = ms"
    );
    assert_eq!(path_of("mem_queue_size = \"100\"").mem_queue_size, 100);
    assert_eq!(
        path_of("nsqlookupd_tcp_addresses = \"a:1,b:1\"").lookupd_tcp_addresses,
        ["a:1", "b:1"]
    );
    assert_eq!(
        path_of("auth_http_addresses = []").auth_http_addresses,
        Vec::<String>::new()
    );
    let p = path_of("e2e_processing_latency_percentiles = [1, 0.5, 0.99]");
    assert_eq!(
        p.e2e_processing_latency_percentiles,
        [1.0, 0.5, 0.99],
        "config order is kept"
    );
    let p = path_of("e2e_processing_latency_percentiles = \"0.5, 0.9\"");
    assert_eq!(p.e2e_processing_latency_percentiles, [0.5, 0.9]);
    assert_eq!(
        path_of("tls_required = \"tcp-https\"").tls_required,
        TlsRequired::ExceptHttp
    );
    assert_eq!(
        path_of("tls_required = 1").tls_required,
        TlsRequired::Required
    );
    assert_eq!(
        path_of("tls_required = \"FALSE\"").tls_required,
        TlsRequired::NotRequired
    );
    assert_eq!(
        path_of("tls_min_version = \"TLS1.3\"").tls_min_version,
        TLS_VERSION_1_3
    );
    assert!(!path_of("snappy = \"false\"").snappy);
    assert_eq!(path_of("log_level = \"WARN\"").log_level, LogLevel::Warn);
}

#[test]
fn unknown_config_keys_are_ignored_and_listed() {
    let file = config_file(
        "node_id = 5\nfoo = \"bar\"\nversion = true\nverbose = true\n[section]\nx = 1\n",
    );
    let opts = run(&["--config", file.path().to_str().unwrap()]);
    let mut ignored = opts.ignored_config_keys.clone();
    ignored.sort();
    assert_eq!(ignored, ["foo", "node_id", "section", "verbose", "version"]);
    assert_eq!(
        Options {
            ignored_config_keys: Vec::new(),
            ..opts
        },
        Options::default()
    );
}

#[test]
fn statsd_prefix_substitutes_the_host_key() {
    let opts = with(|o| o.broadcast_address = "host.example.com".into());
    assert_eq!(
        opts.statsd_prefix_with_host(4151),
        "nsq.host_example_com_4151."
    );
    let opts = with(|o| (o.broadcast_address, o.statsd_prefix) = ("::1".into(), "a.%s.b.".into()));
    assert_eq!(opts.statsd_prefix_with_host(80), "a.[__1]_80.b.");
    assert_eq!(
        with(|o| o.statsd_prefix = String::new()).statsd_prefix_with_host(1),
        ""
    );
}

#[test]
fn non_utf8_arguments_are_refused() {
    use std::os::unix::ffi::OsStringExt as _;
    let bad = OsString::from_vec(vec![b'-', b'-', 0xff]);
    let err = parse([OsString::from("ringsq"), bad]).unwrap_err();
    assert!(err.to_string().contains("not valid UTF-8"));
}
