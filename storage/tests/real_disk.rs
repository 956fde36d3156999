//! Real-disk tests on `io_uring` that need the OS: a true ENOSPC from a small tmpfs that the
//! test mounts (needs root), seen by the log and by the backend's write health. `RLIMIT_FSIZE` was rejected: it yields EFBIG, not ENOSPC, so it would
//! not exercise the full-disk path. If the mount is impossible the test FAILS with an
//! explanation; set `RINGSQ_STORAGE_SKIP_TMPFS=1` to skip it explicitly (it then says so).

// Tests fail loudly: unwrap and panic are how they report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::read_all;
use ringsq_storage::{Io, Log, LogConfig, UringIo};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Size of the test's tmpfs.
const TMPFS_BYTES: u64 = 2 * 1024 * 1024;

/// Unmounts the tmpfs when dropped, even when the test fails.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let status = Command::new("umount").arg(&self.0).status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("WARNING: could not unmount {}", self.0.display());
        }
    }
}

fn mount_tmpfs(at: &Path) -> Option<Mounted> {
    std::fs::create_dir_all(at).unwrap();
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_BYTES}"), "tmpfs"])
        .arg(at)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(Mounted(at.to_path_buf())),
        Ok(o) => {
            eprintln!("mount failed: {}", String::from_utf8_lossy(&o.stderr));
            None
        }
        Err(e) => {
            eprintln!("mount could not run: {e}");
            None
        }
    }
}

fn record(i: u64) -> Bytes {
    Bytes::from(format!("{i:08}-{}", "z".repeat(1000)))
}

#[test]
fn enospc_on_a_full_tmpfs_fails_the_write_then_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    let Some(mounted) = mount_tmpfs(&mnt) else {
        if std::env::var_os("RINGSQ_STORAGE_SKIP_TMPFS").is_some() {
            eprintln!("SKIPPED (RINGSQ_STORAGE_SKIP_TMPFS set): ENOSPC test on tmpfs NOT RUN");
            return;
        }
        panic!(
            "cannot mount a tmpfs (run as root, or set RINGSQ_STORAGE_SKIP_TMPFS=1 to skip \
             the real ENOSPC test knowingly)"
        );
    };
    let dir = mnt.join("log");
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![1u8; 1024 * 1024]).unwrap();
    tokio_uring::start(async {
        let config = LogConfig {
            segment_size_bytes_max: 256 * 1024,
            sync_timeout: Duration::from_secs(3600),
            ..LogConfig::default()
        };
        let (log, _) = Log::open(UringIo, &dir, config.clone()).await.unwrap();
        let mut acked = 0u64;
        let err = loop {
            let pos = log.append(record(acked)).unwrap();
            match log.wait_synced(pos.seq + 1).await {
                Ok(()) => acked += 1,
                Err(e) => break e,
            }
            assert!(acked < 10_000, "the tmpfs never filled");
        };
        assert!(err.is_no_space(), "{err}");
        assert!(log.error().is_none(), "ENOSPC must not poison");
        let health = UringIo.health();
        assert!(
            health.error().is_some_and(|e| e.is_no_space()),
            "the backend's write health reports the full disk: {:?}",
            health.error()
        );
        assert_eq!(log.end(), log.written());
        assert_eq!(log.end().seq, acked);
        std::fs::remove_file(&filler).unwrap();
        for i in acked..acked + 10 {
            log.append(record(i)).unwrap();
        }
        log.sync().await.unwrap();
        assert!(
            health.error().is_none(),
            "a write got through: healthy again"
        );
        log.close().await.unwrap();
        let (log, report) = Log::open(UringIo, &dir, config).await.unwrap();
        assert!(report.is_clean(), "{report}");
        let all = read_all(&log).await;
        assert_eq!(all.len() as u64, acked + 10);
        assert!(all.iter().all(|r| r.data == record(r.pos.seq)));
        log.close().await.unwrap();
    });
    drop(mounted);
}
