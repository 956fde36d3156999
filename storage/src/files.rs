//! File descriptors as a budget: every file a backend opens holds a [`Slot`], at most
//! `open_max` at once (an open waits for a free slot), and the handles a log wants to reuse —
//! the segment it writes, the segment its readers read — stay open in a small LRU cache until
//! the budget needs their slot or they sit unused for [`IDLE_CLOSE_AFTER`]. So the number of
//! open files does not grow with the number of logs: an idle log holds no descriptor.
//!
//! One [`Files`] per backend and thread (`Rc`, no locks): [`crate::Io::files`].
//!
//! Invariants:
//! - At most `open_max` slots are held (cached handles and transient opens alike).
//! - A cached handle is closed only when nobody is using it (no [`Handle`] alive: no operation
//!   in flight) and it is *clean*. The writer marks its segment dirty after a
//!   write and clean after an fdatasync through it: closing a file with unsynced writes could
//!   lose a write-back error (Linux reports it to the descriptors open when it happened and may
//!   forget it once the inode leaves memory), so the fdatasync that would report it must come
//!   first. When every cached handle is dirty and an open waits, their owners are woken and asked
//!   to sync early ([`Files::sync_asked`]).
//! - No log task waits for a slot while it holds a handle nobody else can close (a dirty one,
//!   or one outside the cache): the writer syncs before it rolls or checkpoints, and a new
//!   segment enters the cache before its directory is fsynced. So every wait ends. (Recovery,
//!   moving damaged bytes aside, holds the source while it creates the copy: a caller opening
//!   many logs at once keeps their number well under the budget.)

use crate::io::{Io, OpenMode};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::rc::{Rc, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Open files a backend allows until told otherwise ([`Files::set_open_max`]).
pub const OPEN_FILES_MAX_DEFAULT: usize = 256;
/// A cached handle unused this long is closed.
pub const IDLE_CLOSE_AFTER: Duration = Duration::from_secs(10);
/// Dirty handles asked to sync at a time when an open waits.
const SYNC_ASKS_PER_WAIT: usize = 8;

/// The counter every open file draws from.
#[derive(Debug)]
struct Budget {
    open_max: Cell<usize>,
    open: Cell<usize>,
    open_peak: Cell<usize>,
    /// Wakes one waiter when a slot is released or a cached handle may have become closable
    /// (one at a time: each wake-up is O(1) work, however many wait).
    freed: Notify,
}

/// One open file descriptor counted against the budget; released when dropped (the backend's
/// file drops it together with the descriptor).
#[derive(Debug)]
pub struct Slot {
    budget: Rc<Budget>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.budget
            .open
            .set(self.budget.open.get().saturating_sub(1));
        self.budget.freed.notify_one();
    }
}

#[derive(Debug)]
struct Entry<F> {
    /// Tells this entry from a later one of the same path (handles name the entry they use).
    id: u64,
    file: Rc<F>,
    writable: bool,
    dirty: bool,
    sync_asked: bool,
    /// Handles alive: an operation may be in flight.
    in_use: usize,
    /// Wakes the task that must sync this file (the log's writer) under pressure.
    owner: Option<Weak<Notify>>,
    /// Key in the map [`Entry::listed_in`] names.
    tick: u64,
    used_at: Instant,
}

/// Which of the cache's ordered maps lists an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listed {
    /// Clean and unused: may be closed.
    Closable,
    /// Dirty, its owner not yet asked to sync.
    Dirty,
}

impl<F> Entry<F> {
    fn listed_in(&self) -> Option<Listed> {
        match (self.dirty, self.sync_asked, self.in_use) {
            (false, _, 0) => Some(Listed::Closable),
            (true, false, _) => Some(Listed::Dirty),
            _ => None,
        }
    }
}

/// A cached file in use: keeps it open (not closable) until dropped, then lets a waiting open
/// close it.
#[derive(Debug)]
pub struct Handle<F: 'static> {
    file: Rc<F>,
    files: Weak<Files<F>>,
    path: Rc<Path>,
    id: u64,
}

impl<F> std::ops::Deref for Handle<F> {
    type Target = F;
    fn deref(&self) -> &F {
        &self.file
    }
}

impl<F: 'static> Drop for Handle<F> {
    fn drop(&mut self) {
        if let Some(files) = self.files.upgrade() {
            files.release(&self.path, self.id);
        }
    }
}

#[derive(Debug)]
struct Cache<F> {
    entries: HashMap<Rc<Path>, Entry<F>>,
    /// Clean handles nobody uses, least recently used first (tick → path): closed first.
    closable: BTreeMap<u64, Rc<Path>>,
    /// Dirty handles whose owner was not yet asked to sync, oldest first.
    dirty: BTreeMap<u64, Rc<Path>>,
    tick: u64,
}

/// Counters of a [`Files`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilesStats {
    /// Slots the budget allows.
    pub open_max: usize,
    /// Files open now (cached or in use).
    pub open: usize,
    /// Most files open at once so far.
    pub open_peak: usize,
    /// Handles in the cache.
    pub cached: usize,
    /// Cached handles closed to free a slot or because they sat idle.
    pub closed_total: u64,
    /// Opens that had to wait for a slot.
    pub waits_total: u64,
}

/// A backend's file budget and handle cache. See the module docs.
#[derive(Debug)]
pub struct Files<F> {
    budget: Rc<Budget>,
    cache: RefCell<Cache<F>>,
    sweeping: Cell<bool>,
    closed_total: Cell<u64>,
    waits_total: Cell<u64>,
}

impl<F: 'static> Default for Files<F> {
    fn default() -> Self {
        Files {
            budget: Rc::new(Budget {
                open_max: Cell::new(OPEN_FILES_MAX_DEFAULT),
                open: Cell::new(0),
                open_peak: Cell::new(0),
                freed: Notify::new(),
            }),
            cache: RefCell::new(Cache {
                entries: HashMap::new(),
                closable: BTreeMap::new(),
                dirty: BTreeMap::new(),
                tick: 0,
            }),
            sweeping: Cell::new(false),
            closed_total: Cell::new(0),
            waits_total: Cell::new(0),
        }
    }
}

impl<F: 'static> Files<F> {
    /// Sets how many files may be open at once (at least 2: a file and its directory). Handles
    /// over the new limit are closed as they become closable.
    pub fn set_open_max(&self, open_max: usize) {
        self.budget.open_max.set(open_max.max(2));
        self.budget.freed.notify_waiters();
    }

    /// Counters.
    pub fn stats(&self) -> FilesStats {
        FilesStats {
            open_max: self.budget.open_max.get(),
            open: self.budget.open.get(),
            open_peak: self.budget.open_peak.get(),
            cached: self.cache.borrow().entries.len(),
            closed_total: self.closed_total.get(),
            waits_total: self.waits_total.get(),
        }
    }

    /// A slot for one file to open: at once while the budget allows, else after closing the
    /// least recently used closable cached handle, else when one is released.
    pub async fn acquire(&self) -> Slot {
        let mut waited = false;
        loop {
            let freed = self.budget.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.budget.open.get() < self.budget.open_max.get() {
                let open = self.budget.open.get() + 1;
                self.budget.open.set(open);
                self.budget
                    .open_peak
                    .set(self.budget.open_peak.get().max(open));
                if waited {
                    // Another waiter may be able to go on too.
                    self.budget.freed.notify_one();
                }
                return Slot {
                    budget: Rc::clone(&self.budget),
                };
            }
            if self.close_one_idle() {
                continue;
            }
            if !waited {
                waited = true;
                self.waits_total.set(self.waits_total.get() + 1);
            }
            self.ask_dirty_to_sync();
            freed.await;
        }
    }

    /// Closes the least recently used closable cached handle; false if there is none.
    fn close_one_idle(&self) -> bool {
        let mut cache = self.cache.borrow_mut();
        let Some((_, path)) = cache.closable.pop_first() else {
            return false;
        };
        let entry = cache.entries.remove(&path);
        drop(cache);
        // Dropping the last `Rc` closes the descriptor and releases its slot.
        drop(entry);
        self.closed_total.set(self.closed_total.get() + 1);
        true
    }

    /// Wakes the owners of the oldest dirty cached handles not yet asked, so they sync and
    /// free them.
    fn ask_dirty_to_sync(&self) {
        let mut cache = self.cache.borrow_mut();
        let mut owners = Vec::new();
        while owners.len() < SYNC_ASKS_PER_WAIT {
            let Some((_, path)) = cache.dirty.pop_first() else {
                break;
            };
            if let Some(entry) = cache.entries.get_mut(&path) {
                entry.sync_asked = true;
                owners.extend(entry.owner.as_ref().and_then(Weak::upgrade));
            }
        }
        drop(cache);
        for owner in owners {
            owner.notify_one();
        }
    }

    /// The cached handle of `path`, if it is open (for writing when `writable`).
    pub fn get(self: &Rc<Self>, path: &Path, writable: bool) -> Option<Handle<F>> {
        let mut cache = self.cache.borrow_mut();
        let (key, entry) = cache.entries.get_key_value(path)?;
        if writable && !entry.writable {
            return None;
        }
        let key = Rc::clone(key);
        let (file, id) = cache.update(&key, true, |e| {
            e.in_use += 1;
            e.used_at = Instant::now();
            (Rc::clone(&e.file), e.id)
        })?;
        Some(Handle {
            file,
            files: Rc::downgrade(self),
            path: key,
            id,
        })
    }

    /// Keeps `file` (just opened for `path`) in the cache, replacing any older handle of it,
    /// and returns it in use.
    pub fn insert(self: &Rc<Self>, path: &Path, file: F, writable: bool) -> Handle<F> {
        if !writable {
            // Never trade a writable handle for a read-only one (a reader that opened the file
            // while the writer did): the writer's stays, the new one closes.
            if let Some(existing) = self.get(path, true) {
                return existing;
            }
        }
        let file = Rc::new(file);
        let mut cache = self.cache.borrow_mut();
        let old = cache.remove(path);
        let key: Rc<Path> = Rc::from(path);
        let id = cache.next_tick();
        let entry = Entry {
            id,
            file: Rc::clone(&file),
            writable,
            dirty: old.as_ref().is_some_and(|e| e.dirty),
            sync_asked: false,
            in_use: 1,
            owner: old.and_then(|e| e.owner),
            tick: id,
            used_at: Instant::now(),
        };
        cache.list(&key, &entry);
        cache.entries.insert(Rc::clone(&key), entry);
        drop(cache);
        self.start_sweeper();
        Handle {
            file,
            files: Rc::downgrade(self),
            path: key,
            id,
        }
    }

    /// A handle was dropped: its entry may become closable.
    fn release(&self, path: &Rc<Path>, id: u64) {
        let Ok(mut cache) = self.cache.try_borrow_mut() else {
            // Never happens (no handle is dropped while the cache is borrowed); if it did,
            // the entry would only stay open until forgotten or replaced.
            return;
        };
        if cache.entries.get(path).is_some_and(|e| e.id == id) {
            cache.update(path, false, |e| e.in_use = e.in_use.saturating_sub(1));
        }
        drop(cache);
        self.budget.freed.notify_one();
    }

    /// Marks the cached handle of `path` as holding writes not yet fdatasynced (`dirty`), or as
    /// synced. `owner` is woken when the budget needs the handle back.
    pub fn set_dirty(&self, path: &Path, dirty: bool, owner: &Rc<Notify>) {
        let mut cache = self.cache.borrow_mut();
        let Some(key) = cache.entries.get_key_value(path).map(|(k, _)| Rc::clone(k)) else {
            return;
        };
        cache.update(&key, false, |e| {
            e.owner = Some(Rc::downgrade(owner));
            if e.dirty != dirty {
                e.dirty = dirty;
                e.sync_asked = false;
            }
        });
        drop(cache);
        if !dirty {
            self.budget.freed.notify_one();
        }
    }

    /// True when an open waits for a slot and `path`'s dirty handle should be synced now.
    pub fn sync_asked(&self, path: &Path) -> bool {
        self.cache
            .borrow()
            .entries
            .get(path)
            .is_some_and(|e| e.sync_asked)
    }

    /// Drops the cached handle of a file that is being removed (closed once nobody uses it).
    pub fn forget(&self, path: &Path) {
        let entry = self.cache.borrow_mut().remove(path);
        drop(entry);
    }

    /// Drops every cached handle under `dir` (a directory being removed).
    pub fn forget_under(&self, dir: &Path) {
        let mut cache = self.cache.borrow_mut();
        let paths: Vec<Rc<Path>> = cache
            .entries
            .keys()
            .filter(|p| p.starts_with(dir))
            .cloned()
            .collect();
        let removed: Vec<_> = paths.iter().map(|p| cache.remove(p)).collect();
        drop(cache);
        drop(removed);
    }

    /// Closes closable handles unused for [`IDLE_CLOSE_AFTER`]; returns how many are cached.
    fn sweep(&self, now: Instant) -> usize {
        let mut cache = self.cache.borrow_mut();
        let mut closed = Vec::new();
        while let Some((_, path)) = cache.closable.first_key_value() {
            let expired = cache
                .entries
                .get(path)
                .is_none_or(|e| now.saturating_duration_since(e.used_at) >= IDLE_CLOSE_AFTER);
            if !expired {
                break;
            }
            if let Some((_, path)) = cache.closable.pop_first() {
                closed.extend(cache.entries.remove(&path));
            }
        }
        let left = cache.entries.len();
        drop(cache);
        let n = u64::try_from(closed.len()).unwrap_or(u64::MAX);
        drop(closed);
        self.closed_total.set(self.closed_total.get() + n);
        left
    }

    /// Runs the idle sweep while anything is cached (one task per `Files`).
    fn start_sweeper(self: &Rc<Self>) {
        if self.sweeping.replace(true) {
            return;
        }
        let files = Rc::downgrade(self);
        tokio::task::spawn_local(async move {
            loop {
                tokio::time::sleep(IDLE_CLOSE_AFTER / 2).await;
                let Some(files) = files.upgrade() else {
                    return;
                };
                if files.sweep(Instant::now()) == 0 {
                    files.sweeping.set(false);
                    return;
                }
            }
        });
    }
}

/// The handle of `path` from `io`'s cache, or opened now (read-write when `writable`; the file
/// must exist) and cached.
pub(crate) async fn open_cached<I: Io>(
    io: &I,
    path: &Path,
    writable: bool,
) -> std::io::Result<Handle<I::File>> {
    let files = io.files();
    if let Some(handle) = files.get(path, writable) {
        return Ok(handle);
    }
    let mode = if writable {
        OpenMode::ReadWrite
    } else {
        OpenMode::Read
    };
    let file = io.open(path, mode).await?;
    Ok(files.insert(path, file, writable))
}

impl<F> Cache<F> {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    fn map(&mut self, listed: Listed) -> &mut BTreeMap<u64, Rc<Path>> {
        match listed {
            Listed::Closable => &mut self.closable,
            Listed::Dirty => &mut self.dirty,
        }
    }

    /// Lists a new entry in the map its state calls for.
    fn list(&mut self, key: &Rc<Path>, entry: &Entry<F>) {
        if let Some(listed) = entry.listed_in() {
            self.map(listed).insert(entry.tick, Rc::clone(key));
        }
    }

    /// Changes an entry with `change` and lists it again where its new state belongs (at the
    /// young end when `touched`, or when it moves).
    fn update<T>(
        &mut self,
        key: &Rc<Path>,
        touched: bool,
        change: impl FnOnce(&mut Entry<F>) -> T,
    ) -> Option<T> {
        let tick = self.next_tick();
        let entry = self.entries.get_mut(key)?;
        let before = (entry.listed_in(), entry.tick);
        let out = change(entry);
        let after = entry.listed_in();
        if before.0 == after && !touched {
            return Some(out);
        }
        entry.tick = tick;
        if let Some(listed) = before.0 {
            self.map(listed).remove(&before.1);
        }
        if let Some(listed) = after {
            self.map(listed).insert(tick, Rc::clone(key));
        }
        Some(out)
    }

    fn remove(&mut self, path: &Path) -> Option<Entry<F>> {
        let entry = self.entries.remove(path)?;
        if let Some(listed) = entry.listed_in() {
            self.map(listed).remove(&entry.tick);
        }
        Some(entry)
    }
}
