//! Dead letters across a crash, on `MemIo` with a paused clock: a message whose letter is on
//! disk is not outstanding after a restart even when the state saved before says it is (the
//! restore reads the letters written since), and a message whose letter was not yet synced is
//! delivered again (never neither).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::broker::consumer::Consumer;
use crate::broker::e2e::E2eConfig;
use crate::broker::events::Events;
use crate::broker::{paths, topic::Ack, Broker, BrokerConfig, Clock, Place};
use crate::protocol::MessageId;
use bytes::Bytes;
use ringsq_storage::{CrashMode, Io, LogConfig, MemIo};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

const TOPIC: &str = "t";
const CHANNEL: &str = "c";

fn data() -> PathBuf {
    PathBuf::from("/data")
}

fn config() -> BrokerConfig {
    BrokerConfig {
        data_path: Some(data()),
        log: LogConfig::default(),
        mem_queue_size: 0,
        // Every message fsynced before it is visible: the crashes below lose none.
        ack_after_sync: true,
        node_id: 1,
        max_msg_timeout: Duration::from_secs(900),
        max_channel_consumers: 0,
        sync_timeout: Duration::from_secs(2),
        retention: Duration::ZERO,
        max_topic_bytes: 0,
        max_attempts: 1,
        message_ttl: Duration::ZERO,
        e2e: E2eConfig {
            percentiles: Vec::new(),
            window: Duration::from_secs(600),
        },
        files_open_max: 64,
        clock: Clock::tokio_from(1_700_000_000_000_000_000),
    }
}

fn run_paused<Fut: Future<Output = ()>>(body: impl FnOnce() -> Fut) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, body());
}

/// A consumer that takes every message (RDY 100) and keeps what it got.
#[derive(Debug, Default)]
struct Taker {
    got: RefCell<Vec<(u16, MessageId, Vec<u8>)>>,
    in_flight: Cell<u64>,
}

impl Consumer for Taker {
    fn id(&self) -> u64 {
        1
    }
    fn is_ready(&self) -> bool {
        self.in_flight.get() < 100
    }
    fn sample_rate(&self) -> u8 {
        0
    }
    fn msg_timeout(&self) -> Duration {
        Duration::from_secs(60)
    }
    fn deliver(&self, _ts: i64, attempts: u16, id: &MessageId, body: &[u8]) {
        self.in_flight.set(self.in_flight.get() + 1);
        self.got.borrow_mut().push((attempts, *id, body.to_vec()));
    }
    fn release(&self) -> bool {
        self.in_flight.set(self.in_flight.get().saturating_sub(1));
        false
    }
    fn release_all(&self) {
        self.in_flight.set(0);
    }
    fn close(&self) {}
}

async fn open(io: MemIo) -> Rc<Broker<MemIo>> {
    // The data directory exists before the broker starts (the application makes it).
    io.create_dir_all(&data()).await.unwrap();
    Broker::open(config(), io, Place::SOLE, Events::default())
        .await
        .unwrap()
}

/// Waits (on the paused clock) until `cond` holds.
async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("never: {what}");
}

/// Publishes `a`, `b`, `c`, delivers them to a new consumer, and REQs `a` (which dies: one
/// attempt allowed). Returns the broker, the consumer, and the channel's state as saved while
/// `a` was dying.
async fn poison_a(io: MemIo) -> (Rc<Broker<MemIo>>, Rc<Taker>, Vec<u8>) {
    let broker = open(io).await;
    let topic = broker.topic(TOPIC).await.unwrap();
    let channel = topic.channel(CHANNEL).await.unwrap();
    let bodies = [b"a", b"b", b"c"].map(|b| Bytes::from_static(b));
    if let Ack::Wait(w) = topic.publish(&bodies, None).unwrap() {
        w.wait().await.unwrap();
    }
    let taker = Rc::new(Taker::default());
    channel
        .add_consumer(Rc::clone(&taker) as Rc<dyn Consumer>)
        .unwrap();
    until("three deliveries", || taker.got.borrow().len() == 3).await;
    let (attempts, id, body) = taker.got.borrow()[0].clone();
    assert_eq!((attempts, body.as_slice()), (1, &b"a"[..]));
    channel
        .requeue(taker.as_ref(), &id, Duration::ZERO)
        .unwrap();
    // Taken before the dead-letter task runs: `a` is still outstanding in it.
    let saved = channel.snapshot();
    assert!(saved
        .outstanding
        .iter()
        .any(|o| o.attempts == 1 && o.seq == 0));
    assert_eq!(saved.dead.end.seq, 0);
    (broker, taker, saved.encode())
}

/// After the crash: only `saved` as the channel's state (no newer one).
fn keep_only(io: &MemIo, saved: &[u8]) {
    let path = paths::channel_file(&data(), TOPIC, CHANNEL);
    io.write_file(&path, saved);
    io.delete_file(&crate::broker::channel::recent_path(&path));
}

/// What a new consumer gets after the restart, once `expect` messages came.
async fn redelivered(broker: &Broker<MemIo>, expect: usize) -> Vec<(u16, Vec<u8>)> {
    let channel = broker
        .get_topic(TOPIC)
        .unwrap()
        .get_channel(CHANNEL)
        .unwrap();
    let taker = Rc::new(Taker::default());
    channel
        .add_consumer(Rc::clone(&taker) as Rc<dyn Consumer>)
        .unwrap();
    until("redeliveries", || taker.got.borrow().len() >= expect).await;
    // Anything more would come at once: give it the chance.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut got: Vec<_> = taker
        .got
        .borrow()
        .iter()
        .map(|(a, _, b)| (*a, b.clone()))
        .collect();
    got.sort_by(|x, y| x.1.cmp(&y.1));
    got
}

#[test]
fn a_letter_on_disk_is_not_delivered_again_though_the_saved_state_still_has_it() {
    run_paused(|| async {
        let io = MemIo::new();
        let (broker, _taker, saved) = poison_a(io.clone()).await;
        let channel = broker
            .get_topic(TOPIC)
            .unwrap()
            .get_channel(CHANNEL)
            .unwrap();
        until("the letter written", || channel.dead_count() == 1).await;
        let io = io.crash(CrashMode::LoseUnsynced);
        keep_only(&io, &saved);
        let broker = open(io).await;
        let channel = broker
            .get_topic(TOPIC)
            .unwrap()
            .get_channel(CHANNEL)
            .unwrap();
        assert_eq!(channel.dead_count(), 1);
        let listed = channel.list_dead(10).await.unwrap();
        assert_eq!(listed.letters.len(), 1);
        assert_eq!(&listed.letters[0].body[..], b"a");
        assert_eq!(listed.letters[0].attempts, 1);
        // b and c were in flight at the crash: delivered again; a is not.
        assert_eq!(
            redelivered(&broker, 2).await,
            [(2, b"b".to_vec()), (2, b"c".to_vec())]
        );
    });
}

#[test]
fn a_letter_not_yet_synced_leaves_the_message_in_the_channel() {
    run_paused(|| async {
        let io = MemIo::new();
        let (_broker, _taker, saved) = poison_a(io.clone()).await;
        // The crash comes before the dead-letter task ran: no letter on disk.
        let io = io.crash(CrashMode::LoseUnsynced);
        keep_only(&io, &saved);
        let broker = open(io).await;
        let channel = broker
            .get_topic(TOPIC)
            .unwrap()
            .get_channel(CHANNEL)
            .unwrap();
        assert_eq!(channel.dead_count(), 0);
        assert_eq!(
            redelivered(&broker, 3).await,
            [(2, b"a".to_vec()), (2, b"b".to_vec()), (2, b"c".to_vec())]
        );
    });
}

#[test]
fn requeued_letters_come_back_with_attempts_starting_over_and_survive_a_crash() {
    run_paused(|| async {
        let io = MemIo::new();
        let (broker, taker, _) = poison_a(io.clone()).await;
        let topic = broker.get_topic(TOPIC).unwrap();
        let channel = topic.get_channel(CHANNEL).unwrap();
        until("the letter written", || channel.dead_count() == 1).await;
        for (_, id, _) in taker.got.borrow().iter().skip(1) {
            channel.finish(taker.as_ref(), id).unwrap();
        }
        let path = topic.state_path(&channel);
        let n = channel
            .requeue_dead(super::Pick::All, path.as_deref())
            .await
            .unwrap();
        assert_eq!((n, channel.dead_count()), (1, 0));
        // The requeue is on disk before it returns: a crash right after keeps it.
        let io = io.crash(CrashMode::LoseUnsynced);
        let broker = open(io).await;
        let channel = broker
            .get_topic(TOPIC)
            .unwrap()
            .get_channel(CHANNEL)
            .unwrap();
        assert_eq!(channel.dead_count(), 0);
        assert_eq!(redelivered(&broker, 1).await, [(1, b"a".to_vec())]);
    });
}
