//! Copying a log while it runs: [`Log::copy_synced`] describes a consistent copy of the log as
//! of its synced end, and [`RetainPin`] keeps retention from deleting any file of it until the
//! copy is done.
//!
//! A copy is the log's segment files, oldest first, each cut to a length: a sealed segment
//! whole (write-once: its bytes never change), the segment holding the synced end cut there
//! (the writer only appends past it), plus a checkpoint naming that end. Laid out in an empty
//! directory, it opens as recovery's row 2 (clean close: nothing scanned) — or, when no record
//! is synced in any segment, row 1 with only a checkpoint (the log starts at the synced end, so
//! sequence numbers are never reused). The caller copies the bytes itself, while the log goes
//! on taking appends: nothing here reads or waits.
//!
//! Invariants: a pinned log keeps every segment whose records have seq at or above the pin
//! (`retain` lowers its floor to the lowest pin), so every file a copy names exists until its
//! pin is dropped — unless the log itself is destroyed (its directory removed).

use crate::format::{Checkpoint, SEGMENT_HEADER_BYTES_U64};
use crate::io::Io;
use crate::log::{Log, Shared};
use crate::paths;
use crate::position::Position;
use std::path::PathBuf;
use std::rc::Weak;

/// One file of a [`LogCopy`]: its path and how many of its bytes, from the start, to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCut {
    pub path: PathBuf,
    pub len: u64,
}

/// A consistent copy of a log (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCopy {
    /// The log's directory.
    pub dir: PathBuf,
    /// The segment files, oldest first, with the bytes of each to copy.
    pub segments: Vec<FileCut>,
    /// Where the checkpoint goes, and its bytes (naming the copy's end).
    pub checkpoint_path: PathBuf,
    pub checkpoint: Vec<u8>,
    /// The copy holds every record with seq below `end.seq` that the log still has.
    pub end: Position,
}

/// Keeps a log's retention from deleting segments with records at or after a seq, until
/// dropped. Holds no reference that keeps the log open.
#[derive(Debug)]
pub struct RetainPin<I: Io> {
    shared: Weak<Shared<I>>,
    id: u64,
}

impl<I: Io> Drop for RetainPin<I> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.pins.borrow_mut().remove(&self.id);
        }
    }
}

impl<I: Io> Log<I> {
    /// Until the pin is dropped, [`Log::retain`] keeps every segment holding records with seq
    /// at or above `seq`, whatever floor it is given.
    pub fn pin_retention(&self, seq: u64) -> RetainPin<I> {
        let shared = self.shared_rc();
        let id = shared.next_pin.get();
        shared.next_pin.set(id + 1);
        shared.pins.borrow_mut().insert(id, seq);
        RetainPin {
            shared: std::rc::Rc::downgrade(shared),
            id,
        }
    }

    /// A consistent copy of the log as of its synced end, now (call it right after
    /// [`Log::sync`], with no `.await` between, for a copy that holds everything appended
    /// before the sync), and the pin that keeps every file it names. See the module docs.
    pub fn copy_synced(&self) -> (LogCopy, RetainPin<I>) {
        let shared = self.shared_rc();
        let st = shared.state.borrow();
        let synced = st.synced;
        let mut segments = Vec::new();
        let mut last_base = None;
        for s in st.segments.iter().take_while(|s| s.base.seq < synced.seq) {
            let end = if s.end.seq <= synced.seq {
                s.end
            } else {
                synced
            };
            segments.push(FileCut {
                path: s.path.clone(),
                len: SEGMENT_HEADER_BYTES_U64 + (end.offset - s.base.offset),
            });
            last_base = Some(s.base.offset);
        }
        let pin_seq = st.segments.front().map_or(synced.seq, |s| s.base.seq);
        drop(st);
        let checkpoint = Checkpoint {
            // No segment copied: the log restarts at the checkpoint's end (recovery row 1).
            segment_base_offset: last_base.unwrap_or(synced.offset),
            end_seq: synced.seq,
            end_offset: synced.offset,
        };
        let copy = LogCopy {
            dir: shared.dir.clone(),
            segments,
            checkpoint_path: paths::checkpoint_path(&shared.dir),
            checkpoint: checkpoint.encode().to_vec(),
            end: synced,
        };
        (copy, self.pin_retention(pin_seq))
    }
}
