//! An in-memory disk that injects faults, for tests and fuzzing.
//!
//! Model: files are inodes with two copies of their bytes, `data` (what reads see: the page
//! cache) and `synced` (what survives a power loss: the bytes as of the last fdatasync). The
//! directory tree has two name tables: `names` (current) and `durable` (as of the last
//! directory fsync of each directory). [`MemIo::crash`] keeps only the durable names and the
//! synced bytes, optionally tearing the last unsynced write, and returns a fresh `MemIo` over
//! what survived. Faults are scripted per operation with [`MemIo::fail_next`]; a space limit
//! makes writes fail with ENOSPC the way a full disk does (the bytes that fit are written).

use super::{Io, IoFile, OpenMode};
use crate::files::{Files, Slot};
use crate::health::WriteHealth;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::SystemTime;

/// An operation a fault can be attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Opening a file.
    Open,
    /// Reading a file.
    Read,
    /// Writing a file.
    Write,
    /// fdatasync of a file.
    Sync,
    /// fsync of a directory.
    SyncDir,
    /// Renaming.
    Rename,
    /// Removing a file.
    Remove,
    /// Listing a directory.
    List,
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// EIO, nothing done.
    Eio,
    /// ENOSPC, nothing done.
    NoSpace,
    /// EMFILE (too many open files), nothing done.
    TooManyFiles,
    /// A write that stores the first half of its bytes, then fails with EIO.
    ShortThenEio,
    /// A write that stores the first half of its bytes, then fails with ENOSPC.
    ShortThenNoSpace,
}

/// What a crash keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Power loss: only synced bytes and directory-synced names survive.
    LoseUnsynced,
    /// Power loss during the last write: as `LoseUnsynced`, plus the first half of the last
    /// write if it was not synced.
    TearLastWrite,
    /// Process kill: the page cache survives, everything written is kept.
    KeepUnsynced,
}

#[derive(Debug, Clone, Default)]
struct Inode {
    data: Vec<u8>,
    synced: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    inode_next: u64,
    names: BTreeMap<PathBuf, u64>,
    durable: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    faults: VecDeque<(Op, Fault)>,
    space_bytes_max: Option<u64>,
    last_write: Option<(u64, u64, Vec<u8>)>,
    ops: HashMap<Op, u64>,
}

/// The in-memory fault-injecting backend. Clones share one disk (and one file budget and write
/// health, as the threads of one process would).
#[derive(Debug, Clone, Default)]
pub struct MemIo {
    state: Rc<RefCell<State>>,
    files: Rc<Files<MemFile>>,
    health: Rc<WriteHealth>,
    /// A simulated wall clock: this time at that tokio instant, moving with tokio's time.
    clock: Rc<Cell<Option<(SystemTime, tokio::time::Instant)>>>,
}

/// A file of a [`MemIo`] disk.
#[derive(Debug)]
pub struct MemFile {
    state: Rc<RefCell<State>>,
    inode: u64,
    writable: bool,
    _slot: Slot,
}

fn err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

fn fault_error(fault: Fault) -> io::Error {
    match fault {
        Fault::Eio | Fault::ShortThenEio => err(libc::EIO),
        Fault::NoSpace | Fault::ShortThenNoSpace => err(libc::ENOSPC),
        Fault::TooManyFiles => err(libc::EMFILE),
    }
}

fn to_usize(n: u64) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| err(libc::EFBIG))
}

impl State {
    fn take_fault(&mut self, op: Op) -> Option<Fault> {
        *self.ops.entry(op).or_default() += 1;
        let index = self.faults.iter().position(|(o, _)| *o == op)?;
        self.faults.remove(index).map(|(_, f)| f)
    }

    fn used_bytes(&self) -> u64 {
        self.inodes
            .values()
            .map(|i| u64::try_from(i.data.len()).unwrap_or(u64::MAX))
            .sum()
    }

    fn check_parent(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(p) if self.dirs.contains(p) => Ok(()),
            Some(_) | None => Err(err(libc::ENOENT)),
        }
    }

    fn write(&mut self, inode: u64, buf: &[u8], pos: u64) -> io::Result<()> {
        let fault = self.take_fault(Op::Write);
        if let Some(f @ (Fault::Eio | Fault::NoSpace | Fault::TooManyFiles)) = fault {
            return Err(fault_error(f));
        }
        let mut len = buf.len();
        let mut error = None;
        if let Some(f @ (Fault::ShortThenEio | Fault::ShortThenNoSpace)) = fault {
            len /= 2;
            error = Some(fault_error(f));
        }
        let start = to_usize(pos)?;
        let file_len = self.inodes.get(&inode).map_or(0, |i| i.data.len());
        if let Some(max) = self.space_bytes_max {
            let free = to_usize(max.saturating_sub(self.used_bytes()))?;
            let growth = (start + len).saturating_sub(file_len);
            if growth > free {
                len -= growth - free;
                error = Some(err(libc::ENOSPC));
            }
        }
        let node = self
            .inodes
            .get_mut(&inode)
            .ok_or_else(|| err(libc::EBADF))?;
        if node.data.len() < start + len {
            node.data.resize(start + len, 0);
        }
        node.data[start..start + len].copy_from_slice(&buf[..len]);
        self.last_write = Some((inode, pos, buf[..len].to_vec()));
        error.map_or(Ok(()), Err)
    }
}

impl MemIo {
    /// An empty disk with a root directory `/`.
    pub fn new() -> Self {
        let io = MemIo::default();
        io.state.borrow_mut().dirs.insert(PathBuf::from("/"));
        io
    }

    /// From now on [`Io::now`] reads `now` and moves with tokio's (paused, simulated) time, so
    /// a run with a simulated clock is repeatable. Kept by [`MemIo::crash`].
    pub fn set_clock(&self, now: SystemTime) {
        self.clock.set(Some((now, tokio::time::Instant::now())));
    }

    /// Makes the next operation of kind `op` fail with `fault`. Faults queue up in order.
    pub fn fail_next(&self, op: Op, fault: Fault) {
        self.state.borrow_mut().faults.push_back((op, fault));
    }

    /// Bytes all files hold now (what [`MemIo::set_space_bytes_max`] counts).
    pub fn used_bytes(&self) -> u64 {
        self.state.borrow().used_bytes()
    }

    /// Removes every scripted fault not yet triggered.
    pub fn clear_faults(&self) {
        self.state.borrow_mut().faults.clear();
    }

    /// Limits the bytes all files may hold (`None`: unlimited). A write that would pass it stores
    /// what fits and fails with ENOSPC.
    pub fn set_space_bytes_max(&self, bytes: Option<u64>) {
        self.state.borrow_mut().space_bytes_max = bytes;
    }

    /// How many operations of kind `op` were attempted.
    pub fn op_count(&self, op: Op) -> u64 {
        self.state.borrow().ops.get(&op).copied().unwrap_or(0)
    }

    /// A new `MemIo` over what survives a crash now. `self` should no longer be used.
    #[must_use]
    pub fn crash(&self, mode: CrashMode) -> MemIo {
        let old = self.state.borrow();
        let mut new = State {
            dirs: old.dirs.clone(),
            inode_next: old.inode_next,
            ..State::default()
        };
        let names = match mode {
            CrashMode::KeepUnsynced => old.names.clone(),
            CrashMode::LoseUnsynced | CrashMode::TearLastWrite => old.durable.clone(),
        };
        for inode in names.values() {
            let Some(node) = old.inodes.get(inode) else {
                continue;
            };
            let mut data = match mode {
                CrashMode::KeepUnsynced => node.data.clone(),
                CrashMode::LoseUnsynced | CrashMode::TearLastWrite => node.synced.clone(),
            };
            if let (CrashMode::TearLastWrite, Some((last, pos, bytes))) = (mode, &old.last_write) {
                if last == inode {
                    tear_into(&mut data, *pos, bytes);
                }
            }
            new.inodes.insert(
                *inode,
                Inode {
                    synced: data.clone(),
                    data,
                },
            );
        }
        new.durable.clone_from(&names);
        new.names = names;
        MemIo {
            state: Rc::new(RefCell::new(new)),
            clock: Rc::new(Cell::new(self.clock.get())),
            ..MemIo::default()
        }
    }

    /// Creates (or replaces) a file holding `bytes`, durably (name and data), creating its
    /// parent directories. For tests and fuzzers that build a log directory by hand.
    pub fn write_file(&self, path: &Path, bytes: &[u8]) {
        let mut s = self.state.borrow_mut();
        for dir in path.ancestors().skip(1) {
            s.dirs.insert(dir.to_path_buf());
        }
        let inode = s.inode_next;
        s.inode_next += 1;
        s.inodes.insert(
            inode,
            Inode {
                data: bytes.to_vec(),
                synced: bytes.to_vec(),
            },
        );
        s.names.insert(path.to_path_buf(), inode);
        s.durable.insert(path.to_path_buf(), inode);
    }

    /// Removes a file durably; false if it did not exist.
    pub fn delete_file(&self, path: &Path) -> bool {
        let mut s = self.state.borrow_mut();
        s.durable.remove(path);
        s.names.remove(path).is_some()
    }

    /// The current bytes of a file (what a read sees), or `None`.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.state.borrow();
        let inode = s.names.get(path)?;
        s.inodes.get(inode).map(|i| i.data.clone())
    }

    /// Names of the files directly in `dir`, sorted.
    pub fn files_in(&self, dir: &Path) -> Vec<String> {
        let s = self.state.borrow();
        s.names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect()
    }
}

/// Overlays the first half of an unsynced write on the synced bytes (a torn write).
fn tear_into(data: &mut Vec<u8>, pos: u64, bytes: &[u8]) {
    let Ok(start) = usize::try_from(pos) else {
        return;
    };
    let kept = &bytes[..bytes.len() / 2];
    if start > data.len() {
        data.resize(start, 0);
    }
    if data.len() < start + kept.len() {
        data.resize(start + kept.len(), 0);
    }
    data[start..start + kept.len()].copy_from_slice(kept);
}

impl Io for MemIo {
    type File = MemFile;

    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<MemFile> {
        let slot = self.files.acquire().await;
        let mut s = self.state.borrow_mut();
        if let Some(f) = s.take_fault(Op::Open) {
            return Err(fault_error(f));
        }
        s.check_parent(path)?;
        let existing = s.names.get(path).copied();
        let inode = match (mode, existing) {
            (OpenMode::Read | OpenMode::ReadWrite, Some(inode)) => inode,
            (OpenMode::Read | OpenMode::ReadWrite, None) => return Err(err(libc::ENOENT)),
            (OpenMode::CreateNew, Some(_)) => return Err(err(libc::EEXIST)),
            (OpenMode::CreateTruncate, Some(inode)) => {
                if let Some(node) = s.inodes.get_mut(&inode) {
                    node.data.clear();
                }
                inode
            }
            (OpenMode::CreateNew | OpenMode::CreateTruncate, None) => {
                let inode = s.inode_next;
                s.inode_next += 1;
                s.inodes.insert(inode, Inode::default());
                s.names.insert(path.to_path_buf(), inode);
                inode
            }
        };
        Ok(MemFile {
            state: Rc::clone(&self.state),
            inode,
            writable: mode != OpenMode::Read,
            _slot: slot,
        })
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state.borrow_mut();
        if let Some(f) = s.take_fault(Op::Rename) {
            return Err(fault_error(f));
        }
        s.check_parent(to)?;
        let inode = s.names.remove(from).ok_or_else(|| err(libc::ENOENT))?;
        s.names.insert(to.to_path_buf(), inode);
        Ok(())
    }

    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.borrow_mut();
        if let Some(f) = s.take_fault(Op::Remove) {
            return Err(fault_error(f));
        }
        s.names
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| err(libc::ENOENT))
    }

    async fn dir_exists(&self, path: &Path) -> io::Result<bool> {
        Ok(self.state.borrow().dirs.contains(path))
    }

    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.borrow_mut();
        for dir in path.ancestors() {
            s.dirs.insert(dir.to_path_buf());
        }
        Ok(())
    }

    async fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.borrow_mut();
        s.names.retain(|p, _| !p.starts_with(path));
        s.durable.retain(|p, _| !p.starts_with(path));
        s.dirs.retain(|p| !p.starts_with(path));
        Ok(())
    }

    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let _slot = self.files.acquire().await;
        let mut s = self.state.borrow_mut();
        if let Some(f) = s.take_fault(Op::SyncDir) {
            return Err(fault_error(f));
        }
        let in_dir = |p: &PathBuf| p.parent() == Some(path);
        let current: Vec<(PathBuf, u64)> = s
            .names
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        s.durable.retain(|p, _| !in_dir(p));
        s.durable.extend(current);
        Ok(())
    }

    async fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let _slot = self.files.acquire().await;
        let mut s = self.state.borrow_mut();
        if let Some(f) = s.take_fault(Op::List) {
            return Err(fault_error(f));
        }
        if !s.dirs.contains(path) {
            return Err(err(libc::ENOENT));
        }
        // Files and directories, as a real directory listing has both.
        let entries: BTreeSet<OsString> = s
            .names
            .keys()
            .chain(s.dirs.iter())
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name().map(std::ffi::OsStr::to_os_string))
            .collect();
        Ok(entries.into_iter().collect())
    }

    fn now(&self) -> SystemTime {
        match self.clock.get() {
            Some((at, start)) => at + start.elapsed(),
            None => SystemTime::now(),
        }
    }

    fn files(&self) -> Rc<Files<MemFile>> {
        Rc::clone(&self.files)
    }

    fn health(&self) -> Rc<WriteHealth> {
        Rc::clone(&self.health)
    }
}

impl IoFile for MemFile {
    async fn read_at(&self, mut buf: Vec<u8>, pos: u64) -> (io::Result<usize>, Vec<u8>) {
        let mut s = self.state.borrow_mut();
        if let Some(f) = s.take_fault(Op::Read) {
            return (Err(fault_error(f)), buf);
        }
        let Some(node) = s.inodes.get(&self.inode) else {
            return (Err(err(libc::EBADF)), buf);
        };
        let Ok(start) = usize::try_from(pos) else {
            return (Ok(0), buf);
        };
        let spare = buf.capacity() - buf.len();
        let end = node.data.len().min(start.saturating_add(spare));
        if start >= end {
            return (Ok(0), buf);
        }
        buf.extend_from_slice(&node.data[start..end]);
        (Ok(end - start), buf)
    }

    async fn write_all_at(&self, buf: Vec<u8>, pos: u64) -> (io::Result<()>, Vec<u8>) {
        if !self.writable {
            return (Err(err(libc::EBADF)), buf);
        }
        let res = self.state.borrow_mut().write(self.inode, &buf, pos);
        (res, buf)
    }

    async fn sync_data(&self) -> io::Result<()> {
        let mut s = self.state.borrow_mut();
        if let Some(f) = s.take_fault(Op::Sync) {
            return Err(fault_error(f));
        }
        let node = s
            .inodes
            .get_mut(&self.inode)
            .ok_or_else(|| err(libc::EBADF))?;
        node.synced.clone_from(&node.data);
        Ok(())
    }

    async fn size(&self) -> io::Result<u64> {
        let s = self.state.borrow();
        let node = s.inodes.get(&self.inode).ok_or_else(|| err(libc::EBADF))?;
        u64::try_from(node.data.len()).map_err(|_| err(libc::EFBIG))
    }

    async fn set_len(&self, len: u64) -> io::Result<()> {
        let len = to_usize(len)?;
        let mut s = self.state.borrow_mut();
        let node = s
            .inodes
            .get_mut(&self.inode)
            .ok_or_else(|| err(libc::EBADF))?;
        node.data.resize(len, 0);
        Ok(())
    }
}
