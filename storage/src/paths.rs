//! Every path the crate touches is built here, and every file name it recognises is parsed here.
//!
//! A log directory holds:
//! - `<base offset, 20 decimal digits>.seg` — segments;
//! - `checkpoint` — the durable end (replaced atomically through `checkpoint.tmp`);
//! - `*.tmp` — a temporary file of an interrupted atomic replace (removed at open);
//! - `<segment>.corrupt-<why>-at-<file offset>` and `<segment>.bad-<why>` — quarantined bytes,
//!   never read again by the log, kept for an operator.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Suffix of a segment file.
const SEGMENT_SUFFIX: &str = ".seg";
/// Digits in a segment file name (enough for any `u64`).
const SEGMENT_NAME_DIGITS: usize = 20;
/// Name of the checkpoint file.
const CHECKPOINT_NAME: &str = "checkpoint";
/// Suffix of temporary files written by `atomic_write`.
pub const TEMP_SUFFIX: &str = ".tmp";

/// `<dir>/<base offset>.seg`.
pub fn segment_path(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(segment_file_name(base_offset))
}

/// `<base offset, 20 digits>.seg`.
pub fn segment_file_name(base_offset: u64) -> String {
    format!("{base_offset:0SEGMENT_NAME_DIGITS$}{SEGMENT_SUFFIX}")
}

/// The base offset in a segment file name, or `None` if `name` is not a segment's name.
pub fn parse_segment_name(name: &OsStr) -> Option<u64> {
    let name = name.to_str()?;
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `<dir>/checkpoint`.
pub fn checkpoint_path(dir: &Path) -> PathBuf {
    dir.join(CHECKPOINT_NAME)
}

/// `<path>.tmp`: where `atomic_write` writes before renaming.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(TEMP_SUFFIX);
    path.with_file_name(name)
}

/// True for a temporary file name.
pub fn is_temp_name(name: &OsStr) -> bool {
    name.to_str().is_some_and(|n| n.ends_with(TEMP_SUFFIX))
}

/// `<segment>.corrupt-<tag>-at-<file offset>`: the moved-aside rest of a segment.
pub fn quarantine_path(segment: &Path, tag: &str, file_offset: u64) -> PathBuf {
    let mut name = segment.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".corrupt-{tag}-at-{file_offset}"));
    segment.with_file_name(name)
}

/// The parent directory of a file (`.` for a bare name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        Some(_) | None => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let p = segment_path(Path::new("/d"), 1234);
        assert_eq!(p, Path::new("/d/00000000000000001234.seg"));
        assert_eq!(parse_segment_name(p.file_name().unwrap()), Some(1234));
        let max = segment_file_name(u64::MAX);
        assert_eq!(parse_segment_name(OsStr::new(&max)), Some(u64::MAX));
        for bad in [
            "1234.seg",
            "0000000000000000123x.seg",
            "checkpoint",
            "00000000000000001234.seg.corrupt-crc-at-32",
        ] {
            assert_eq!(parse_segment_name(OsStr::new(bad)), None, "{bad}");
        }
        assert_eq!(
            temp_path(Path::new("/d/checkpoint")),
            Path::new("/d/checkpoint.tmp")
        );
        assert!(is_temp_name(OsStr::new("checkpoint.tmp")));
        assert_eq!(
            quarantine_path(&p, "crc", 48),
            Path::new("/d/00000000000000001234.seg.corrupt-crc-at-48")
        );
        assert_eq!(parent_dir(Path::new("x")), Path::new("."));
    }
}
