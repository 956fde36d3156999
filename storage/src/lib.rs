//! ringsq-storage: a segmented, checksummed append-only log on `io_uring`.
//!
//! (Full format documentation below is being written.)

mod error;
pub mod format;
pub mod io;
mod log;
mod meta;
mod paths;
mod position;
mod reader;
mod recovery;
mod writer;

pub use error::Error;
pub use io::mem::{CrashMode, Fault, MemIo, Op};
pub use io::{Io, IoFile, OpenMode, UringIo};
pub use log::{Log, LogConfig, LogStats};
pub use meta::{atomic_write, read_small_file};
pub use paths::{checkpoint_path, segment_file_name, segment_path};
pub use position::{Position, Record};
pub use recovery::{RecoveryAction, RecoveryReport};
