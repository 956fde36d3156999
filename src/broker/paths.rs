//! Every path the broker touches under `--data-path`, built in one place.
//!
//! ```text
//! <data-path>/nsqd.dat                               Go nsqd's metadata (topics, channels, paused)
//! <data-path>/ringsq/topics/<topic>.topic/log/        the topic's log (ringsq-storage segments)
//! <data-path>/ringsq/topics/<topic>.topic/<channel>.channel   a channel's cursor + outstanding list
//! <data-path>/ringsq/topics/<topic>.topic/<channel>.park/     a channel's park log (long waits)
//! <data-path>/ringsq/topics/<topic>.topic/<channel>.dead/     a channel's dead letters
//! ```
//! Names are nsqd's (`[.a-zA-Z0-9_-]`, 1..64 chars), so `.` and `..` are valid topic names: the
//! `.topic` / `.channel` suffixes keep every name a plain file name.

use ringsq_storage::Io;
use std::path::{Path, PathBuf};

const TOPIC_DIR_SUFFIX: &str = ".topic";
const CHANNEL_FILE_SUFFIX: &str = ".channel";
const PARK_DIR_SUFFIX: &str = ".park";
const DEAD_DIR_SUFFIX: &str = ".dead";

pub fn topics_dir(data: &Path) -> PathBuf {
    data.join("ringsq").join("topics")
}

pub fn topic_dir(data: &Path, topic: &str) -> PathBuf {
    topics_dir(data).join(format!("{topic}{TOPIC_DIR_SUFFIX}"))
}

pub fn topic_log_dir(data: &Path, topic: &str) -> PathBuf {
    topic_dir(data, topic).join("log")
}

pub fn channel_file(data: &Path, topic: &str, channel: &str) -> PathBuf {
    topic_dir(data, topic).join(format!("{channel}{CHANNEL_FILE_SUFFIX}"))
}

/// A channel's park log (messages that wait long, copied out of the topic's log).
pub fn channel_park_dir(data: &Path, topic: &str, channel: &str) -> PathBuf {
    topic_dir(data, topic).join(format!("{channel}{PARK_DIR_SUFFIX}"))
}

/// A channel's dead letters (messages it gave up on: `--max-attempts`, `--message-ttl`).
pub fn channel_dead_dir(data: &Path, topic: &str, channel: &str) -> PathBuf {
    topic_dir(data, topic).join(format!("{channel}{DEAD_DIR_SUFFIX}"))
}

pub fn metadata_file(data: &Path) -> PathBuf {
    data.join("nsqd.dat")
}

/// Removes a file or a directory tree that may already be gone; any other failure is logged
/// (a leftover is found again at the next start, nothing is lost).
pub async fn remove_logged<I: Io>(io: &I, path: &Path) {
    let result = match io.dir_exists(path).await {
        Ok(true) => io.remove_dir_all(path).await,
        Ok(false) => io.remove_file(path).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::error!("removing {}: {e}", path.display());
        }
    }
}

/// The topic name of a directory under `topics_dir`, if it is one of ours.
pub fn topic_name_of(dir_name: &str) -> Option<&str> {
    dir_name.strip_suffix(TOPIC_DIR_SUFFIX)
}

/// The channel name of a file in a topic directory, if it is one of ours.
pub fn channel_name_of(file_name: &str) -> Option<&str> {
    file_name.strip_suffix(CHANNEL_FILE_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_names_stay_inside_the_data_dir() {
        let d = Path::new("/data");
        assert_eq!(
            topic_dir(d, ".."),
            PathBuf::from("/data/ringsq/topics/...topic")
        );
        assert_eq!(topic_name_of("...topic"), Some(".."));
        assert_eq!(channel_name_of("..channel"), Some("."));
    }
}
