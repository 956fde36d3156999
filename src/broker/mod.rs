//! The broker: one shard's topics and channels, and the operations on them. No sockets, no
//! threads, no statistics model: the connection layer above runs commands against it, the shard
//! layer gives it the topics its shard owns ([`Place`]).
//!
//! All of it lives on one thread (the shard's runtime), so state is `Rc` + `Cell`/`RefCell`,
//! never locks; no `RefCell` borrow is held across an `.await`. Every file it touches goes
//! through the storage's [`Io`] (so the same code runs on `io_uring` and, in the simulation, on
//! the fault-injecting `MemIo`), every wall-clock reading through its [`Clock`], and every
//! deadline on tokio's clock.

pub mod admin;
pub mod channel;
pub mod clock;
pub mod consumer;
pub mod due;
pub mod e2e;
pub mod events;
mod godata;
pub mod guid;
pub mod message;
pub mod metadata;
pub mod paths;
pub mod place;
pub mod snapshot;
pub mod store;
pub mod topic;
pub mod wake;

pub use clock::Clock;
pub use place::{owner, Place};

use events::{Events, MetaEvent};
use ringsq_storage::{Io, Log, LogConfig, UringIo};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::ops::Bound;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;
use store::{MemQueue, Store};
use topic::Topic;

/// Spawns `task` on this thread's runtime in the current span, so that every line it logs
/// names what its spawner's span names (its shard, its client, its channel). Every task of the
/// broker and the layers above is spawned through here.
pub fn spawn<F>(task: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    tokio::task::spawn_local(tracing::Instrument::in_current_span(task))
}

/// The names of our entries in a directory listing (`name_of` strips our suffix), sorted.
fn names_in(entries: &[std::ffi::OsString], name_of: fn(&str) -> Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = entries
        .iter()
        .filter_map(|e| e.to_str().and_then(name_of).map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// What the broker is configured with (built once from the options; one copy per shard).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `None` only in unit tests that run without a data directory.
    pub data_path: Option<PathBuf>,
    pub log: LogConfig,
    pub mem_queue_size: u64,
    pub ack_after_sync: bool,
    pub node_id: u16,
    pub max_msg_timeout: Duration,
    pub max_channel_consumers: u64,
    pub sync_timeout: Duration,
    /// ringsq's `--retention`: how long a topic keeps what every channel has finished.
    pub retention: Duration,
    /// ringsq's `--max-topic-bytes` (0: no bound).
    pub max_topic_bytes: u64,
    /// ringsq's `--max-attempts`: the dead-letter limit of every channel without its own (0: none).
    pub max_attempts: u16,
    /// ringsq's `--message-ttl`: the expiry of every channel without its own (0: never).
    pub message_ttl: Duration,
    pub e2e: e2e::E2eConfig,
    /// Files this broker's storage may keep open at once (its share of the descriptors).
    pub files_open_max: usize,
    pub clock: Clock,
}

/// Recent records each topic keeps in memory for consumers at the tail. Per topic, so it bounds
/// memory the way nsqd's `--mem-queue-size` does (by count there): 16 MiB is ~120k messages of
/// 100 bytes, plenty for a consumer that keeps up; one that falls further behind reads the disk.
pub const TOPIC_CACHE_BYTES_MAX: usize = 16 << 20;

/// How often changed channel states are saved between sync points (without an fsync).
const RECENT_SAVE_PERIOD: Duration = Duration::from_millis(100);

/// What the broker and its topics share: the configuration, the storage backend and where
/// lifecycle events go.
#[derive(Debug)]
pub struct Env<I: Io = UringIo> {
    pub cfg: BrokerConfig,
    pub io: I,
    /// Topic/channel create and delete events (`nsqd.dat`, the lookup loops).
    pub events: Events,
    /// The topics the periodic saves must visit (see `due.rs`).
    pub due: Rc<due::Due>,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("{0}")]
    Storage(#[from] ringsq_storage::Error),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to parse metadata {path}: {reason}")]
    Metadata { path: PathBuf, reason: String },
    #[error("exiting")]
    Exiting,
    #[error("a start-up task failed: {0}")]
    Task(String),
}

/// Where a new topic learns the channels it starts with (nsqd asks nsqlookupd in `GetTopic`).
/// Answers are names as given; the broker validates them. A failing source answers empty.
pub trait KnownChannels: std::fmt::Debug {
    fn channels_of<'a>(&'a self, topic: &'a str)
        -> Pin<Box<dyn Future<Output = Vec<String>> + 'a>>;
}

#[derive(Debug)]
pub struct Broker<I: Io = UringIo> {
    pub env: Rc<Env<I>>,
    /// The topics this broker holds (its shard's).
    pub place: Place,
    topics: RefCell<BTreeMap<String, Rc<Topic<I>>>>,
    /// Topics being created, by name: the creators of one topic wait for each other, never for
    /// those of another (creating many topics at once overlaps their disk work).
    creating: RefCell<HashMap<String, Rc<tokio::sync::Mutex<()>>>>,
    pub exiting: Cell<bool>,
    known_channels: RefCell<Option<Rc<dyn KnownChannels>>>,
    /// What each copy of the data directory being read (`snapshot`) keeps from retention.
    snapshot_pins: RefCell<BTreeMap<u64, Vec<ringsq_storage::RetainPin<I>>>>,
}

impl<I: Io> Broker<I> {
    /// Opens the data directory and every topic and channel in it that `place` owns, then
    /// takes over Go nsqd's disk queues if any (`nsqd.dat` is written back by the caller, once
    /// every shard is open).
    pub async fn open(
        cfg: BrokerConfig,
        io: I,
        place: Place,
        events: Events,
    ) -> Result<Rc<Self>, BrokerError> {
        io.files().set_open_max(cfg.files_open_max.max(1));
        let broker = Rc::new(Self {
            env: Rc::new(Env {
                cfg,
                io,
                events,
                due: Rc::default(),
            }),
            place,
            topics: RefCell::new(BTreeMap::new()),
            creating: RefCell::new(HashMap::new()),
            exiting: Cell::new(false),
            known_channels: RefCell::new(None),
            snapshot_pins: RefCell::new(BTreeMap::new()),
        });
        broker.load().await?;
        broker.load_metadata().await?;
        match broker.import_go_queues().await {
            Err(BrokerError::Storage(e)) if e.is_no_space() => tracing::error!(
                "taking over Go nsqd's disk queues stopped: {e} (tried again at the next start)"
            ),
            other => other?,
        }
        Ok(broker)
    }

    pub fn cfg(&self) -> &BrokerConfig {
        &self.env.cfg
    }

    pub fn io(&self) -> &I {
        &self.env.io
    }

    /// The wall clock's Unix seconds.
    pub fn now_unix_s(&self) -> u64 {
        self.env.cfg.clock.now_ns() / 1_000_000_000
    }

    /// Opens every topic found in the data directory with its channels, [`Broker::topic_jobs`]
    /// at a time (their reads overlap; the file budget bounds the descriptors they hold).
    async fn load(self: &Rc<Self>) -> Result<(), BrokerError> {
        let Some(data) = self.cfg().data_path.clone() else {
            return Ok(());
        };
        let dir = paths::topics_dir(&data);
        let entries = match self.io().list_dir(&dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(BrokerError::Io {
                    op: "read_dir",
                    path: dir,
                    source,
                })
            }
        };
        let mut running = tokio::task::JoinSet::new();
        for name in names_in(&entries, paths::topic_name_of) {
            if !crate::protocol::is_valid_topic_name(name.as_bytes())
                || crate::protocol::is_ephemeral(&name)
            {
                if self.place.is_first() {
                    tracing::warn!(
                        "skipping {name:?} in the data directory: not a valid topic name"
                    );
                }
                continue;
            }
            if !self.place.owns(&name) {
                continue;
            }
            if running.len() >= self.topic_jobs() {
                self.loaded(running.join_next().await)?;
            }
            let (broker, data) = (Rc::clone(self), data.clone());
            running.spawn_local(tracing::Instrument::in_current_span(async move {
                let topic = broker.open_topic(&name).await?;
                broker.load_channels(&data, &topic).await?;
                Ok(topic)
            }));
        }
        while let Some(done) = running.join_next().await {
            self.loaded(Some(done))?;
        }
        Ok(())
    }

    /// Records a topic `load` opened (or passes its error on).
    fn loaded(
        &self,
        done: Option<Joined<Result<Rc<Topic<I>>, BrokerError>>>,
    ) -> Result<(), BrokerError> {
        match done {
            Some(Ok(Ok(topic))) => {
                self.topics.borrow_mut().insert(topic.name.clone(), topic);
                Ok(())
            }
            Some(Ok(Err(e))) => Err(e),
            Some(Err(e)) => Err(BrokerError::Task(e.to_string())),
            None => Ok(()),
        }
    }

    async fn load_channels(
        &self,
        data: &std::path::Path,
        topic: &Topic<I>,
    ) -> Result<(), BrokerError> {
        let dir = paths::topic_dir(data, &topic.name);
        let entries = self
            .io()
            .list_dir(&dir)
            .await
            .map_err(|source| BrokerError::Io {
                op: "read_dir",
                path: dir,
                source,
            })?;
        for name in names_in(&entries, paths::channel_name_of) {
            let path = paths::channel_file(data, &topic.name, &name);
            let saved = channel::Saved::read(self.io(), &path).await?;
            topic.restore_channel(&name, &saved).await?;
        }
        topic.repair_channels().await;
        Ok(())
    }

    async fn open_topic(&self, name: &str) -> Result<Rc<Topic<I>>, BrokerError> {
        let cfg = self.cfg();
        let store = match (&cfg.data_path, crate::protocol::is_ephemeral(name)) {
            (Some(data), false) => {
                let dir = paths::topic_log_dir(data, name);
                let (log, report) = Log::open(self.io().clone(), &dir, cfg.log.clone()).await?;
                // At most this many messages are acknowledged before they are written: a full
                // disk must not drop them (they are written when space returns).
                log.keep_unwritten(cfg.mem_queue_size);
                tracing::info!(topic = %name, "opened log: {report}");
                Store::Durable(log)
            }
            _ => Store::Memory(RefCell::new(MemQueue::new(
                usize::try_from(cfg.mem_queue_size).unwrap_or(usize::MAX),
            ))),
        };
        Ok(Topic::new(name.to_owned(), store, Rc::clone(&self.env)))
    }

    pub fn get_topic(&self, name: &str) -> Option<Rc<Topic<I>>> {
        self.topics.borrow().get(name).cloned()
    }

    pub fn topics(&self) -> Vec<Rc<Topic<I>>> {
        self.topics.borrow().values().cloned().collect()
    }

    /// Gets or creates a topic (nsqd creates topics on first PUB or SUB).
    pub async fn topic(&self, name: &str) -> Result<Rc<Topic<I>>, BrokerError> {
        if let Some(t) = self.get_topic(name) {
            return Ok(t);
        }
        if self.exiting.get() {
            return Err(BrokerError::Exiting);
        }
        // Asked before the create lock, so a slow nsqlookupd delays only this topic's creators.
        let known = self.known_channels_of(name).await;
        let lock = self.name_lock(name);
        let guard = lock.lock().await;
        let created = self.create_topic(name, &known).await;
        drop(guard);
        self.release_name_lock(name, &lock);
        created
    }

    /// Topic `name`'s create lock, shared by its creators and its deleter.
    fn name_lock(&self, name: &str) -> Rc<tokio::sync::Mutex<()>> {
        Rc::clone(
            self.creating
                .borrow_mut()
                .entry(name.to_owned())
                .or_default(),
        )
    }

    /// Forgets `name`'s create lock once nobody else holds or waits for it.
    fn release_name_lock(&self, name: &str, lock: &Rc<tokio::sync::Mutex<()>>) {
        // The map and the caller hold the last two references: nobody else waits for it.
        if Rc::strong_count(lock) == 2 {
            self.creating.borrow_mut().remove(name);
        }
    }

    /// The creating half of [`Broker::topic`], under that topic's create lock.
    async fn create_topic(
        &self,
        name: &str,
        known: &[String],
    ) -> Result<Rc<Topic<I>>, BrokerError> {
        if let Some(t) = self.get_topic(name) {
            return Ok(t);
        }
        let topic = self.open_topic(name).await?;
        tracing::info!(topic = %name, "topic created");
        // Before the topic is visible, so every pre-created channel sees its first message.
        self.precreate_channels(&topic, known).await;
        self.topics
            .borrow_mut()
            .insert(name.to_owned(), Rc::clone(&topic));
        self.env
            .events
            .send(MetaEvent::TopicCreated(name.to_owned()));
        Ok(topic)
    }

    /// Sets where new topics learn their channels (the nsqlookupd query).
    pub fn set_known_channels(&self, source: Rc<dyn KnownChannels>) {
        *self.known_channels.borrow_mut() = Some(source);
    }

    async fn known_channels_of(&self, topic: &str) -> Vec<String> {
        let source = self.known_channels.borrow().clone();
        match source {
            Some(s) => s.channels_of(topic).await,
            None => Vec::new(),
        }
    }

    /// nsqd pre-creates the known channels except ephemeral ones (they need a consumer).
    async fn precreate_channels(&self, topic: &Topic<I>, names: &[String]) {
        for name in names {
            if crate::protocol::is_ephemeral(name)
                || !crate::protocol::is_valid_channel_name(name.as_bytes())
            {
                continue;
            }
            if let Err(e) = topic.channel(name).await {
                tracing::error!(topic = %topic.name, channel = %name, "pre-creating the channel: {e}");
            }
        }
    }

    /// Deletes a topic: its channels, its log and its directory. Under the create lock: a
    /// publish that recreates the topic meanwhile waits until the old directory is gone (it
    /// would otherwise open its new log in a directory about to be removed).
    pub async fn delete_topic(&self, name: &str) -> bool {
        let lock = self.name_lock(name);
        let guard = lock.lock().await;
        let deleted = self.delete_topic_locked(name).await;
        drop(guard);
        self.release_name_lock(name, &lock);
        deleted
    }

    /// The deleting half of [`Broker::delete_topic`], under that topic's create lock.
    async fn delete_topic_locked(&self, name: &str) -> bool {
        let Some(topic) = self.topics.borrow_mut().remove(name) else {
            return false;
        };
        topic.deleted.set(true);
        for c in topic.channels() {
            topic.delete_channel(&c.name).await;
        }
        if let Some(log) = topic.log() {
            if let Err(e) = log.clone().destroy().await {
                tracing::error!(topic = %name, "deleting the topic's log: {e}");
            }
        }
        if let Some(data) = &self.cfg().data_path {
            paths::remove_logged(self.io(), &paths::topic_dir(data, name)).await;
        }
        tracing::info!(topic = %name, "topic deleted");
        self.env
            .events
            .send(MetaEvent::TopicDeleted(name.to_owned()));
        true
    }

    /// The periodic sync point: channel states saved, retention applied, ages refreshed, in
    /// the topics that changed since the last one (see `due.rs`) and in a slice of the others
    /// (see [`Broker::sweep`]). Runs until exit.
    pub async fn checkpoint_loop(self: Rc<Self>) {
        let period = self.cfg().sync_timeout.max(Duration::from_millis(10));
        let mut swept_to = String::new();
        loop {
            tokio::time::sleep(period).await;
            if self.exiting.get() {
                return;
            }
            let mut visit = self.lookup(self.env.due.take_checkpoint());
            self.sweep(&mut swept_to, &mut visit);
            let jobs = self.topic_jobs();
            for_each_topic(visit.into_values().collect(), jobs, |topic| async move {
                topic.checkpoint().await;
            })
            .await;
        }
    }

    /// Adds to `visit` the next slice of topics after `swept_to` (in name order, wrapping
    /// around), so that every topic is visited at least every [`SWEEP_ROUNDS`] sync points
    /// whether it changed or not: what changes with time alone (`--retention`, segments a
    /// finished snapshot no longer pins, the ages `/stats` shows after a restart) is applied
    /// without visiting every topic at every sync point.
    fn sweep(&self, swept_to: &mut String, visit: &mut BTreeMap<String, Rc<Topic<I>>>) {
        let topics = self.topics.borrow();
        let slice = (topics.len() / SWEEP_ROUNDS).max(SWEEP_TOPICS_MIN);
        let after = topics.range::<str, _>((Bound::Excluded(swept_to.as_str()), Bound::Unbounded));
        for (name, topic) in after.chain(topics.iter()).take(slice.min(topics.len())) {
            visit.insert(name.clone(), Rc::clone(topic));
            name.clone_into(swept_to);
        }
    }

    /// The topics of these names that still exist.
    fn lookup(&self, names: Vec<String>) -> BTreeMap<String, Rc<Topic<I>>> {
        let topics = self.topics.borrow();
        names
            .into_iter()
            .filter_map(|name| {
                let topic = Rc::clone(topics.get(&name)?);
                Some((name, topic))
            })
            .collect()
    }

    /// Between sync points: channel states that changed are saved without an fsync every
    /// [`RECENT_SAVE_PERIOD`], so a `kill -9` repeats only what was finished since. Only the
    /// topics whose channels changed are visited (see `due.rs`). Runs until exit.
    pub async fn recent_save_loop(self: Rc<Self>) {
        loop {
            tokio::time::sleep(RECENT_SAVE_PERIOD).await;
            if self.exiting.get() {
                return;
            }
            for topic in self.lookup(self.env.due.take_recent()).into_values() {
                topic.save_recent().await;
            }
        }
    }

    /// Health for `/ping`, `/stats` and `/metrics`, as nsqd's `GetHealth`: the error of the
    /// latest write when it failed (a full disk, EIO) until a write succeeds again, or of a log
    /// that stopped writing after an fsync error (see `ringsq_storage::WriteHealth`).
    pub fn health(&self) -> Result<(), String> {
        match self.io().health().error() {
            None => Ok(()),
            Some(e) => Err(e.to_string()),
        }
    }

    /// Clean shutdown: every log flushed and fsynced, every channel's state saved. (`nsqd.dat`
    /// is written before, while every shard can still answer.)
    pub async fn close(&self) {
        self.exiting.set(true);
        let jobs = self.topic_jobs();
        for_each_topic(
            self.topics(),
            jobs,
            |topic| async move { topic.close().await },
        )
        .await;
    }

    /// How many topic jobs run at once: [`TOPIC_JOBS_CONCURRENT`], and at most a quarter of the
    /// file budget (a job may hold one file while it opens another, as recovery does when it
    /// moves damaged bytes aside: a few jobs can never hold every descriptor).
    fn topic_jobs(&self) -> usize {
        (self.io().files().stats().open_max / 4).clamp(1, TOPIC_JOBS_CONCURRENT)
    }
}

/// What a `JoinSet` gives back for a task.
type Joined<T> = Result<T, tokio::task::JoinError>;

/// Topics worked on at once by the checkpoint loop and at shutdown: their fsyncs overlap (the
/// file system commits them together) instead of waiting for each other, one topic at a time.
const TOPIC_JOBS_CONCURRENT: usize = 64;

/// Every topic is visited at least every this many sync points (one minute at the default
/// `--sync-timeout` of 2 s), changed or not (see [`Broker::sweep`]).
const SWEEP_ROUNDS: usize = 30;
/// ...and at every sync point while the broker holds at most this many topics.
const SWEEP_TOPICS_MIN: usize = 64;

/// Runs `job` for every topic, at most `jobs` at once; returns when all are done.
async fn for_each_topic<T: 'static, Fut>(
    topics: Vec<Rc<T>>,
    jobs: usize,
    job: impl Fn(Rc<T>) -> Fut,
) where
    Fut: Future<Output = ()> + 'static,
{
    let mut running = tokio::task::JoinSet::new();
    for topic in topics {
        if running.len() >= jobs {
            if let Some(Err(e)) = running.join_next().await {
                tracing::error!("a topic job failed: {e}");
            }
        }
        running.spawn_local(tracing::Instrument::in_current_span(job(topic)));
    }
    while let Some(done) = running.join_next().await {
        if let Err(e) = done {
            tracing::error!("a topic job failed: {e}");
        }
    }
}
