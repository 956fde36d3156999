//! Black-box tests of the `ringsq` binary's command line: `--version`, `--help` (every nsqd
//! 1.3.0 flag and ringsq's `--ack-after-sync`), and bad flag or config values (non-zero exit,
//! stderr names the flag or key). None of these starts the broker.

// Helpers outside #[test] fns: failing to run the binary is a test failure, so expect is right.
#![allow(clippy::expect_used)]

use std::io::Write as _;
use std::process::{Command, Output};

/// Every flag of nsqd 1.3.0 (`apps/nsqd/options.go`), written out independently of the code.
const NSQD_FLAGS: &[&str] = &[
    "version",
    "config",
    "log-level",
    "log-prefix",
    "verbose",
    "node-id",
    "worker-id",
    "https-address",
    "http-address",
    "tcp-address",
    "auth-http-address",
    "broadcast-address",
    "broadcast-tcp-port",
    "broadcast-http-port",
    "lookupd-tcp-address",
    "http-client-connect-timeout",
    "http-client-request-timeout",
    "data-path",
    "mem-queue-size",
    "max-bytes-per-file",
    "sync-every",
    "sync-timeout",
    "queue-scan-worker-pool-max",
    "queue-scan-selection-count",
    "msg-timeout",
    "max-msg-timeout",
    "max-msg-size",
    "max-req-timeout",
    "max-body-size",
    "max-heartbeat-interval",
    "max-rdy-count",
    "max-output-buffer-size",
    "max-output-buffer-timeout",
    "min-output-buffer-timeout",
    "output-buffer-timeout",
    "max-channel-consumers",
    "statsd-address",
    "statsd-interval",
    "statsd-mem-stats",
    "statsd-prefix",
    "statsd-udp-packet-size",
    "statsd-exclude-ephemeral",
    "e2e-processing-latency-percentile",
    "e2e-processing-latency-window-time",
    "tls-cert",
    "tls-key",
    "tls-client-auth-policy",
    "tls-root-ca-file",
    "tls-required",
    "tls-min-version",
    "deflate",
    "max-deflate-level",
    "snappy",
];

fn ringsq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringsq"))
        .args(args)
        .output()
        .expect("run the ringsq binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn version_prints_and_exits_zero() {
    for flag in ["--version", "-version"] {
        let out = ringsq(&[flag]);
        assert!(out.status.success(), "{flag}: {out:?}");
        let stdout = text(&out.stdout);
        assert!(stdout.starts_with("ringsq v"), "{stdout}");
        assert!(stdout.contains("nsqd 1.3.0"), "{stdout}");
    }
}

#[test]
fn help_lists_every_nsqd_flag_and_ack_after_sync() {
    for flag in ["--help", "-h", "-help"] {
        let out = ringsq(&[flag]);
        assert!(out.status.success(), "{flag}: {out:?}");
        let help = text(&out.stdout);
        for name in NSQD_FLAGS.iter().chain(&["ack-after-sync"]) {
            let listed = help
                .lines()
                .any(|line| line.split_whitespace().next() == Some(&format!("--{name}")));
            assert!(listed, "--help lacks --{name}:\n{help}");
        }
        assert!(
            help.contains("fsync"),
            "--ack-after-sync is explained:\n{help}"
        );
    }
}

#[test]
fn a_bad_flag_value_exits_non_zero_naming_the_flag() {
    for args in [
        &["--mem-queue-size=abc"][..],
        &["-mem-queue-size", "abc"],
        &["--msg-timeout=60"],
        &["--node-id=2000"],
        &["--max-deflate-level=0"],
    ] {
        let out = ringsq(args);
        assert!(!out.status.success(), "{args:?} must fail");
        let stderr = text(&out.stderr);
        let flag = args[0]
            .trim_start_matches('-')
            .split('=')
            .next()
            .unwrap_or_default();
        assert!(
            stderr.contains(flag),
            "{args:?}: stderr must name -{flag}: {stderr}"
        );
    }
    let out = ringsq(&["--no-such-flag"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("flag provided but not defined: -no-such-flag"));
}

#[test]
fn a_bad_config_value_exits_non_zero_naming_the_key() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(b"mem_queue_size = \"lots\"\n")
        .expect("write config");
    let path = file.path().to_str().expect("utf-8 temp path");
    let out = ringsq(&["--config", path]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("mem_queue_size") && stderr.contains("lots"),
        "{stderr}"
    );

    let out = ringsq(&["--config=/no/such/nsqd.cfg"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("/no/such/nsqd.cfg"));
}

/// `--log-prefix` goes in front of every log line (nsqd's default is `[nsqd] `).
#[test]
fn log_prefix_starts_every_log_line() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().expect("temp dir");
    for (args, prefix) in [
        (&[][..], "[nsqd] "),
        (&["--log-prefix", "[edge-7] "][..], "[edge-7] "),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringsq"))
            .args([
                "--tcp-address",
                "127.0.0.1:0",
                "--http-address",
                "127.0.0.1:0",
                "--data-path",
            ])
            .arg(dir.path())
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn ringsq");
        let stderr = child.stderr.take().expect("stderr");
        // The first line comes as soon as the listeners are bound; a dead child ends the read.
        let first = std::io::BufReader::new(stderr).lines().next();
        let _ = child.kill();
        let _ = child.wait();
        let first = first.expect("ringsq printed nothing").expect("read stderr");
        assert!(
            first.starts_with(prefix),
            "{first:?} does not start with {prefix:?}"
        );
    }
}
