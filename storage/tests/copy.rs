//! `Log::copy_synced` and retention pins, on both backends: a copy taken while the log runs
//! (records appended, written and not yet synced behind it, segments rolling) and laid out in
//! an empty directory opens cleanly (scanning nothing) with exactly the records synced at the
//! copy; a pinned log keeps the copy's files through retention until the pin is dropped.

// Tests fail loudly: unwrap and panic are how they report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{open, payload, read_all, segments, small_config, Disk};
use ringsq_storage::{Io, LogCopy};
use std::path::{Path, PathBuf};

/// Lays `copy` out under `to` the way a backup would: each segment's first `len` bytes, and
/// the checkpoint.
fn lay_out<D: Disk>(disk: &D, copy: &LogCopy, to: &Path) {
    for cut in &copy.segments {
        let bytes = disk.get(&cut.path).unwrap();
        let len = usize::try_from(cut.len).unwrap();
        assert!(
            bytes.len() >= len,
            "{} shorter than its cut",
            cut.path.display()
        );
        disk.put(&to.join(cut.path.file_name().unwrap()), &bytes[..len]);
    }
    disk.put(
        &to.join(copy.checkpoint_path.file_name().unwrap()),
        &copy.checkpoint,
    );
}

async fn a_copy_opens_clean_with_the_synced_records<I: Io + Disk>(io: I, dir: PathBuf) {
    let (log, _) = open(&io, &dir, small_config()).await;
    for i in 0..120 {
        log.append(payload(i)).unwrap();
    }
    log.sync().await.unwrap();
    // Written, not synced (but for segment rolls, which sync): past the copy's end.
    for i in 120..150 {
        log.append(payload(i)).unwrap();
    }
    log.wait_written(150).await.unwrap();
    let at = log.synced();
    assert!(at.seq >= 120 && at.seq < 150, "{at:?}");
    let (copy, pin) = log.copy_synced();
    assert_eq!(copy.end, at);
    let mut synced = read_all(&log).await;
    synced.truncate(usize::try_from(at.seq).unwrap());
    assert!(copy.segments.len() > 5, "{copy:?}");
    // Retention asked to drop everything keeps the pinned files.
    log.retain_from(150);
    for i in 150..200 {
        log.append(payload(i)).unwrap();
    }
    log.sync().await.unwrap();
    for cut in &copy.segments {
        assert!(
            io.get(&cut.path).is_some(),
            "{} deleted",
            cut.path.display()
        );
    }
    let to = dir.with_file_name("copy");
    lay_out(&io, &copy, &to);
    let (restored, report) = open(&io, &to, small_config()).await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.bytes_scanned, 0, "{report}");
    assert_eq!(restored.end(), copy.end);
    assert_eq!(read_all(&restored).await, synced);
    // The copy goes on where the original was at the copy.
    assert_eq!(restored.append(payload(at.seq)).unwrap().seq, at.seq);
    restored.close().await.unwrap();
    // Unpinned, retention goes ahead.
    let before = segments(&io, &dir).len();
    drop(pin);
    log.retain_from(150);
    log.sync().await.unwrap();
    log.close().await.unwrap();
    assert!(segments(&io, &dir).len() < before);
}

async fn a_copy_of_a_log_with_nothing_synced_keeps_its_seqs<I: Io + Disk>(io: I, dir: PathBuf) {
    let (log, _) = open(&io, &dir, small_config()).await;
    // Up to a roll: the new segment starts at the synced end (a roll syncs first) and holds
    // one record, written and not synced.
    let mut i = 0;
    loop {
        log.append(payload(i)).unwrap();
        i += 1;
        log.wait_written(i).await.unwrap();
        let newest = log.segments().last().map(|s| s.base.seq);
        if log.segments().len() > 1 && newest == Some(log.synced().seq) {
            break;
        }
    }
    // Everything synced is retained away: no segment holds a synced record.
    log.retain_from(log.synced().seq);
    assert_eq!(log.segments().len(), 1);
    let (copy, _pin) = log.copy_synced();
    assert!(copy.segments.is_empty(), "{copy:?}");
    let to = dir.with_file_name("copy");
    lay_out(&io, &copy, &to);
    let (restored, report) = open(&io, &to, small_config()).await;
    assert_eq!(restored.end(), copy.end, "{report}");
    assert_eq!(restored.append(payload(i)).unwrap().seq, copy.end.seq);
    restored.close().await.unwrap();
    log.close().await.unwrap();
}

both_backends!(
    a_copy_opens_clean_with_the_synced_records,
    a_copy_of_a_log_with_nothing_synced_keeps_its_seqs,
);
