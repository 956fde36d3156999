//! Happy paths on both backends: append, read, sync, close, reopen, roll, retention.

// Tests fail loudly: unwrap and panic are how they report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{open, payload, read_all, small_config};
use ringsq_storage::{Io, LogConfig, Position};
use std::path::PathBuf;

async fn append_read_reopen<I: Io>(io: I, dir: PathBuf) {
    let (log, report) = open(&io, &dir, LogConfig::default()).await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(log.end(), Position::default());
    assert_eq!(log.read(log.end(), 10, 1000).await.unwrap(), vec![]);
    let mut positions = Vec::new();
    for i in 0..100 {
        positions.push(log.append(payload(i)).unwrap());
    }
    assert_eq!(positions[1].offset, 16 + payload(0).len() as u64);
    // Served from the cache before anything is written.
    let first = log.read(positions[0], 3, 1 << 20).await.unwrap();
    assert_eq!(first.len(), 3);
    assert_eq!(first[2].data, payload(2));
    log.wait_synced(100).await.unwrap();
    assert!(log.synced().seq >= 100);
    let all = read_all(&log).await;
    assert_eq!(all.len(), 100);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.pos, positions[i]);
        assert_eq!(r.data, payload(i as u64));
    }
    log.close().await.unwrap();
    log.close().await.unwrap();
    assert!(log.append(payload(0)).is_err());
    let (log, report) = open(&io, &dir, LogConfig::default()).await;
    assert!(report.is_clean(), "{report}");
    assert!(report.used_checkpoint, "{report}");
    assert_eq!(report.bytes_scanned, 0, "{report}");
    assert_eq!(log.end().seq, 100);
    let again = read_all(&log).await;
    assert_eq!(again, all);
    let p = log.append(payload(100)).unwrap();
    assert_eq!(p.seq, 100);
    log.sync().await.unwrap();
    log.close().await.unwrap();
}

async fn roll_and_retain<I: Io>(io: I, dir: PathBuf) {
    let (log, _) = open(&io, &dir, small_config()).await;
    for i in 0..200 {
        log.append(payload(i)).unwrap();
    }
    log.sync().await.unwrap();
    let stats = log.stats();
    assert!(stats.segments > 10, "{stats:?}");
    // Disk reads (cache is 0 bytes) across every segment.
    let all = read_all(&log).await;
    assert_eq!(all.len(), 200);
    assert!(all
        .iter()
        .enumerate()
        .all(|(i, r)| r.data == payload(i as u64)));
    log.retain_from(100);
    log.sync().await.unwrap(); // a turn of the writer: retention runs before it idles
    log.append(payload(200)).unwrap();
    log.sync().await.unwrap();
    let first = log.first();
    assert!(first.seq > 50 && first.seq <= 100, "{first:?}");
    assert!(log.read(Position::default(), 1, 1).await.is_err());
    let rest = read_all(&log).await;
    assert_eq!(rest.first().unwrap().pos, first);
    assert_eq!(rest.len() as u64, 201 - first.seq);
    log.close().await.unwrap();
    let (log, report) = open(&io, &dir, small_config()).await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(log.first(), first);
    assert_eq!(log.end().seq, 201);
    assert_eq!(read_all(&log).await, rest);
    log.destroy().await.unwrap();
}

async fn oversized_record_alone<I: Io>(io: I, dir: PathBuf) {
    let (log, _) = open(&io, &dir, small_config()).await;
    log.append(payload(1)).unwrap();
    let big = bytes::Bytes::from(vec![7u8; 1000]);
    log.append(big.clone()).unwrap();
    log.append(payload(2)).unwrap();
    assert!(log.append(bytes::Bytes::from(vec![0u8; 1025])).is_err());
    log.sync().await.unwrap();
    assert_eq!(log.stats().segments, 3);
    let all = read_all(&log).await;
    assert_eq!(all[1].data, big);
    log.close().await.unwrap();
}

/// A reader at the tail reads records that are appended but not yet written: it must get
/// exactly the records from its position, not the older ones from the last written record on.
async fn read_unwritten_tail<I: Io>(io: I, dir: PathBuf) {
    let (log, _) = open(&io, &dir, LogConfig::default()).await;
    let mut positions = Vec::new();
    for i in 0..3 {
        positions.push(log.append(payload(i)).unwrap());
    }
    log.wait_written(3).await.unwrap();
    for i in 3..10 {
        positions.push(log.append(payload(i)).unwrap());
    }
    assert!(log.written().seq < 10, "the test needs unwritten records");
    for (i, pos) in positions.iter().enumerate().skip(3) {
        let got = log.read(*pos, 100, 1 << 20).await.unwrap();
        assert_eq!(got.len(), 10 - i, "reading from seq {i}");
        assert_eq!(got[0].pos, *pos);
        assert_eq!(got[0].data, payload(i as u64));
    }
    log.close().await.unwrap();
}

both_backends!(
    append_read_reopen,
    roll_and_retain,
    oversized_record_alone,
    read_unwritten_tail
);
