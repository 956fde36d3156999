//! `ringsq check --data-path DIR [--json]`: verifies a stopped broker's data directory.
//!
//! Every record of every topic's log (length, seq chaining, CRC32C, and that its payload is a
//! message), every segment header and checkpoint, every channel state file (`<ch>.channel`,
//! `<ch>.channel.recent`), every park log and dead-letter log (each of its records a letter), and
//! that `nsqd.dat` is JSON. Then a table per topic
//! (segments, messages, bytes, oldest and newest message) and per channel, from the state the
//! broker would resume from: its cursor, the messages behind it, and its outstanding messages
//! as saved (the state does not tell in-flight from requeued: "outstanding", split by the log
//! holding the record, topic or park; "deferred" = those with a delivery time).
//!
//! What is damage and what is a warning follows start-up recovery ([`super::scan`]); an
//! unreadable recent state is a warning (it is written without fsync; start-up falls back to
//! the durable one), an unreadable durable state is damage.

use super::scan::{self, Found, LogSummary, Problem, ReadError, Severity};
use super::{lock_data_dir, record_size_max, rfc3339_ns, EXIT_CANNOT_RUN, EXIT_DAMAGED, EXIT_OK};
use crate::broker::channel::{recent_path, ChannelSnapshot, DeadRecord, Saved, SnapPos, Source};
use crate::broker::message::MessageView;
use crate::broker::paths;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

/// A channel state or `nsqd.dat` larger than this is not read (the broker reads at most as
/// much: `ringsq_storage::read_small_file`).
const STATE_FILE_BYTES_MAX: u64 = 64 * 1024 * 1024;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The broker's data directory (its --data-path).
    #[arg(long, value_name = "DIR")]
    pub data_path: PathBuf,
    /// Print one JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
    /// The broker's --max-msg-size: a record longer than that (plus the message header) is damage.
    #[arg(long, value_name = "BYTES", default_value_t = super::MAX_MSG_SIZE_DEFAULT)]
    pub max_msg_size: u64,
}

/// What `check` found.
#[derive(Debug, Serialize)]
pub struct Report {
    pub data_path: String,
    /// No damage (warnings allowed).
    pub ok: bool,
    pub damaged: usize,
    pub warnings: usize,
    pub topics: Vec<TopicReport>,
    /// Damage and warnings, in the order found.
    pub problems: Vec<Problem>,
}

#[derive(Debug, Serialize)]
pub struct TopicReport {
    pub name: String,
    pub segments: usize,
    /// Records that verify and hold a message.
    pub messages: u64,
    /// Bytes in segment files.
    pub bytes: u64,
    /// Seq of the oldest record kept.
    pub first_seq: u64,
    /// Seq one past the newest record that verifies.
    pub end_seq: u64,
    pub oldest_timestamp_ns: Option<i64>,
    pub newest_timestamp_ns: Option<i64>,
    /// `oldest_timestamp_ns` as RFC 3339.
    pub oldest: Option<String>,
    /// `newest_timestamp_ns` as RFC 3339.
    pub newest: Option<String>,
    pub channels: Vec<ChannelReport>,
}

#[derive(Debug, Serialize)]
pub struct ChannelReport {
    pub name: String,
    /// The saved state start-up resumes from: `durable`, `recent`, or none readable.
    pub state: Option<&'static str>,
    pub generation: Option<u64>,
    pub cursor: Option<SnapPos>,
    /// Records between the cursor and the log's end that the channel has not taken.
    pub behind: u64,
    /// Taken and not finished (in flight, requeued or deferred when saved).
    pub outstanding: usize,
    /// Outstanding whose record is in the topic's log.
    pub outstanding_topic: usize,
    /// Outstanding whose record is in the channel's park log.
    pub outstanding_park: usize,
    /// Outstanding with a delivery time (deferred).
    pub deferred: usize,
    /// Ranges of the log ahead of the cursor the channel skips.
    pub skipped_ranges: usize,
    pub park_log: Option<ParkReport>,
    pub dead_letters: Option<DeadReport>,
}

#[derive(Debug, Serialize)]
pub struct ParkReport {
    pub segments: usize,
    pub messages: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct DeadReport {
    pub segments: usize,
    pub bytes: u64,
    /// Records that verify and hold a dead letter.
    pub letters: u64,
    /// Of those, the ones the channel lists (not requeued or deleted, as of its saved state).
    pub listed: u64,
}

/// `ringsq check`: the exit code.
pub fn run(args: &Args) -> u8 {
    let _lock = match lock_data_dir(&args.data_path) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("ringsq check: {e}");
            return EXIT_CANNOT_RUN;
        }
    };
    let report = match check(&args.data_path, record_size_max(args.max_msg_size)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("ringsq check: {e}");
            return EXIT_CANNOT_RUN;
        }
    };
    let text = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => json + "\n",
            Err(e) => {
                eprintln!("ringsq check: cannot write the report as JSON: {e}");
                return EXIT_CANNOT_RUN;
            }
        }
    } else {
        render_text(&report)
    };
    if let Err(e) = std::io::stdout().lock().write_all(text.as_bytes()) {
        eprintln!("ringsq check: cannot write the report: {e}");
        return EXIT_CANNOT_RUN;
    }
    if report.ok {
        EXIT_OK
    } else {
        EXIT_DAMAGED
    }
}

/// Verifies everything under `data` (which the caller has locked).
pub fn check(data: &Path, record_size_max: u32) -> Result<Report, ReadError> {
    let mut problems = Vec::new();
    check_metadata(data, &mut problems)?;
    let topics_dir = paths::topics_dir(data);
    let mut topics = Vec::new();
    for (name, path) in sorted_entries(&topics_dir)? {
        match paths::topic_name_of(&name) {
            Some(topic) if path.is_dir() => {
                topics.push(check_topic(data, topic, record_size_max, &mut problems)?);
            }
            Some(_) | None => problems.push(Problem::warning(
                &path,
                None,
                "unexpected entry among the topics".to_owned(),
            )),
        }
    }
    let damaged = problems
        .iter()
        .filter(|p| p.severity == Severity::Damage)
        .count();
    Ok(Report {
        data_path: data.display().to_string(),
        ok: damaged == 0,
        damaged,
        warnings: problems.len() - damaged,
        topics,
        problems,
    })
}

/// The entries of `dir` by name (lossy), sorted; none if `dir` does not exist.
fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, ReadError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ReadError::new("list", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ReadError::new("list", dir, e))?;
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
        ));
    }
    out.sort();
    Ok(out)
}

/// Reads a small file whole, `None` if it does not exist or is larger than
/// [`STATE_FILE_BYTES_MAX`] (`Some(Err(len))`).
fn read_small(path: &Path) -> Result<Option<Result<Vec<u8>, u64>>, ReadError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReadError::new("open", path, e)),
    };
    let len = file
        .metadata()
        .map_err(|e| ReadError::new("stat", path, e))?
        .len();
    if len > STATE_FILE_BYTES_MAX {
        return Ok(Some(Err(len)));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(STATE_FILE_BYTES_MAX)
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::new("read", path, e))?;
    Ok(Some(Ok(bytes)))
}

/// `nsqd.dat` must be JSON (the broker refuses to start otherwise).
fn check_metadata(data: &Path, problems: &mut Vec<Problem>) -> Result<(), ReadError> {
    let path = paths::metadata_file(data);
    match read_small(&path)? {
        None => {}
        Some(Err(len)) => problems.push(Problem::damage(
            &path,
            None,
            format!("{len} bytes is too large for nsqd.dat"),
        )),
        Some(Ok(bytes)) => {
            if let Err(e) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                problems.push(Problem::damage(&path, None, format!("not JSON: {e}")));
            }
        }
    }
    Ok(())
}

fn check_topic(
    data: &Path,
    topic: &str,
    record_size_max: u32,
    problems: &mut Vec<Problem>,
) -> Result<TopicReport, ReadError> {
    let log_dir = paths::topic_log_dir(data, topic);
    let mut times = Times::default();
    let mut not_messages = Vec::new();
    let summary = if log_dir.is_dir() {
        scan::walk_log(
            &log_dir,
            record_size_max,
            &mut |found| times.visit(&found, &mut not_messages),
            &mut |p| problems.push(p),
        )?
    } else {
        LogSummary::default()
    };
    problems.append(&mut not_messages);
    let entries = sorted_entries(&paths::topic_dir(data, topic))?;
    let channels: BTreeSet<&str> = entries
        .iter()
        .filter_map(|(name, _)| channel_of(name))
        .collect();
    let own_dirs: Vec<PathBuf> = channels
        .iter()
        .flat_map(|c| {
            [
                paths::channel_park_dir(data, topic, c),
                paths::channel_dead_dir(data, topic, c),
            ]
        })
        .collect();
    for (name, path) in &entries {
        if *path == log_dir || channel_of(name).is_some() || own_dirs.contains(path) {
            continue;
        }
        let reason = if path.extension().is_some_and(|e| e == "tmp") {
            "leftover temporary file of an interrupted write"
        } else {
            "unexpected entry in the topic's directory"
        };
        problems.push(Problem::warning(path, None, reason.to_owned()));
    }
    let mut reports = Vec::with_capacity(channels.len());
    for channel in &channels {
        reports.push(check_channel(
            data,
            topic,
            channel,
            &summary,
            record_size_max,
            problems,
        )?);
    }
    Ok(TopicReport {
        name: topic.to_owned(),
        segments: summary.segments,
        messages: times.messages,
        bytes: summary.bytes,
        first_seq: summary.first_seq,
        end_seq: summary.end_seq,
        oldest_timestamp_ns: times.oldest,
        newest_timestamp_ns: times.newest,
        oldest: times.oldest.map(rfc3339_ns),
        newest: times.newest.map(rfc3339_ns),
        channels: reports,
    })
}

/// The channel whose state file (durable or recent) is named `name`.
fn channel_of(name: &str) -> Option<&str> {
    paths::channel_name_of(name).or_else(|| {
        name.strip_suffix(".recent")
            .and_then(paths::channel_name_of)
    })
}

/// Message count and publish-time range of a log's records.
#[derive(Debug, Default)]
struct Times {
    messages: u64,
    oldest: Option<i64>,
    newest: Option<i64>,
}

impl Times {
    fn visit(&mut self, found: &Found<'_>, bad: &mut Vec<Problem>) -> ControlFlow<()> {
        match MessageView::parse(found.data) {
            Ok(m) => {
                self.messages += 1;
                let ts = m.timestamp_ns;
                self.oldest = Some(self.oldest.map_or(ts, |o| o.min(ts)));
                self.newest = Some(self.newest.map_or(ts, |n| n.max(ts)));
            }
            Err(e) => bad.push(Problem::damage(
                found.segment,
                Some(found.file_pos),
                format!("record {} verifies but holds no message: {e}", found.seq),
            )),
        }
        ControlFlow::Continue(())
    }
}

/// Reads a channel state file; an unreadable one is a problem of `severity`.
fn read_state(
    path: &Path,
    severity: Severity,
    problems: &mut Vec<Problem>,
) -> Result<Option<ChannelSnapshot>, ReadError> {
    let (len, what) = match read_small(path)? {
        None => return Ok(None),
        Some(Ok(bytes)) => match ChannelSnapshot::decode(&bytes) {
            Some(snapshot) => return Ok(Some(snapshot)),
            None => (bytes.len(), "truncated, or it fails its CRC32C"),
        },
        Some(Err(len)) => (usize::try_from(len).unwrap_or(usize::MAX), "too large"),
    };
    let consequence = match severity {
        Severity::Damage => "start-up ignores it and resumes from the recent state, if any",
        Severity::Warning => {
            "written without fsync (a power cut may tear it): start-up uses the durable state"
        }
    };
    problems.push(Problem {
        severity,
        file: path.display().to_string(),
        offset: None,
        reason: format!("unreadable channel state ({len} bytes: {what}); {consequence}"),
    });
    Ok(None)
}

fn check_channel(
    data: &Path,
    topic: &str,
    channel: &str,
    log: &LogSummary,
    record_size_max: u32,
    problems: &mut Vec<Problem>,
) -> Result<ChannelReport, ReadError> {
    let durable_path = paths::channel_file(data, topic, channel);
    let recent = recent_path(&durable_path);
    let saved = Saved {
        durable: read_state(&durable_path, Severity::Damage, problems)?,
        recent: read_state(&recent, Severity::Warning, problems)?,
    };
    let park_dir = paths::channel_park_dir(data, topic, channel);
    let park = if park_dir.is_dir() {
        Some(check_park(&park_dir, record_size_max, problems)?)
    } else {
        None
    };
    let dead_dir = paths::channel_dead_dir(data, topic, channel);
    let dead_letters = if dead_dir.is_dir() {
        Some(check_dead(
            &dead_dir,
            record_size_max,
            saved.newest(),
            problems,
        )?)
    } else {
        None
    };
    let mut report = ChannelReport {
        name: channel.to_owned(),
        state: None,
        generation: None,
        cursor: None,
        behind: 0,
        outstanding: 0,
        outstanding_topic: 0,
        outstanding_park: 0,
        deferred: 0,
        skipped_ranges: 0,
        park_log: park.as_ref().map(|(s, messages)| ParkReport {
            segments: s.segments,
            messages: *messages,
            bytes: s.bytes,
        }),
        dead_letters,
    };
    let Some(snap) = saved.newest() else {
        return Ok(report);
    };
    let from_recent = saved.recent.as_ref().is_some_and(|r| std::ptr::eq(r, snap));
    let state_path = if from_recent { &recent } else { &durable_path };
    report.state = Some(if from_recent { "recent" } else { "durable" });
    report.generation = Some(snap.generation);
    report.cursor = Some(snap.cursor);
    report.outstanding = snap.outstanding.len();
    report.outstanding_topic = snap
        .outstanding
        .iter()
        .filter(|o| o.source == Source::Topic)
        .count();
    report.outstanding_park = report.outstanding - report.outstanding_topic;
    report.deferred = snap
        .outstanding
        .iter()
        .filter(|o| o.deliver_at_ns != 0)
        .count();
    report.skipped_ranges = snap.skip.len();
    report.behind = behind(snap, log);
    let park_log = park.as_ref().map(|(s, _)| s);
    check_references(snap, log, park_log, state_path, problems);
    Ok(report)
}

/// Verifies a channel's park log: what it holds and how many messages.
fn check_park(
    dir: &Path,
    record_size_max: u32,
    problems: &mut Vec<Problem>,
) -> Result<(LogSummary, u64), ReadError> {
    let mut not_messages = Vec::new();
    let mut times = Times::default();
    let summary = scan::walk_log(
        dir,
        record_size_max,
        &mut |found| times.visit(&found, &mut not_messages),
        &mut |p| problems.push(p),
    )?;
    problems.append(&mut not_messages);
    Ok((summary, times.messages))
}

/// Verifies a channel's dead-letter log: every record a letter; how many the state lists.
fn check_dead(
    dir: &Path,
    record_size_max: u32,
    snap: Option<&ChannelSnapshot>,
    problems: &mut Vec<Problem>,
) -> Result<DeadReport, ReadError> {
    let header = u32::try_from(crate::broker::channel::DEAD_HEADER_BYTES).unwrap_or(u32::MAX);
    let removed = |seq: u64| {
        snap.is_some_and(|s| {
            seq < s.dead.floor.seq
                || s.dead
                    .removed
                    .iter()
                    .any(|r| (r.seq..r.to.seq).contains(&seq))
        })
    };
    let (mut letters, mut listed) = (0u64, 0u64);
    let mut bad = Vec::new();
    let summary = scan::walk_log(
        dir,
        record_size_max.saturating_add(header),
        &mut |found| {
            if DeadRecord::decode(&bytes::Bytes::copy_from_slice(found.data)).is_some() {
                letters += 1;
                listed += u64::from(!removed(found.seq));
            } else {
                bad.push(Problem::damage(
                    found.segment,
                    Some(found.file_pos),
                    format!("record {} verifies but holds no dead letter", found.seq),
                ));
            }
            ControlFlow::Continue(())
        },
        &mut |p| problems.push(p),
    )?;
    problems.append(&mut bad);
    Ok(DeadReport {
        segments: summary.segments,
        bytes: summary.bytes,
        letters,
        listed,
    })
}

/// Records from the cursor to the log's end, less the ranges skipped and the records taken
/// ahead of the cursor (DPUB): roughly what the channel has still to deliver for the first time.
fn behind(snap: &ChannelSnapshot, log: &LogSummary) -> u64 {
    let (cursor, end) = (snap.cursor.seq, log.end_seq);
    let window = end.saturating_sub(cursor);
    let skipped: u64 = snap
        .skip
        .iter()
        .map(|s| s.to.seq.min(end).saturating_sub(s.seq.max(cursor)))
        .sum();
    let taken_ahead = snap
        .outstanding
        .iter()
        .filter(|o| o.source == Source::Topic)
        .map(|o| o.seq)
        .chain(snap.ahead.iter().copied())
        .filter(|seq| (cursor..end).contains(seq))
        .collect::<BTreeSet<u64>>()
        .len();
    window
        .saturating_sub(skipped)
        .saturating_sub(u64::try_from(taken_ahead).unwrap_or(u64::MAX))
}

/// What the state refers to that the logs no longer hold.
fn check_references(
    snap: &ChannelSnapshot,
    log: &LogSummary,
    park: Option<&LogSummary>,
    state_path: &Path,
    problems: &mut Vec<Problem>,
) {
    let cursor = snap.cursor.seq;
    if cursor > log.end_seq {
        problems.push(Problem::warning(
            state_path,
            None,
            format!(
                "cursor at seq {cursor} is past the log's end (seq {}): records lost in a crash before they were written; start-up resumes at the end",
                log.end_seq
            ),
        ));
    } else if log.segments > 0 && cursor < log.first_seq {
        problems.push(Problem::warning(
            state_path,
            None,
            format!(
                "cursor at seq {cursor} is before the log's first record (seq {}): records the channel had not read are gone",
                log.first_seq
            ),
        ));
    }
    let in_topic = |seq: u64| (log.first_seq..log.end_seq).contains(&seq);
    let lost_topic = snap
        .outstanding
        .iter()
        .filter(|o| o.source == Source::Topic && !in_topic(o.seq))
        .count();
    if lost_topic > 0 {
        problems.push(Problem::warning(
            state_path,
            None,
            format!("{lost_topic} outstanding message(s) are no longer in the topic's log (start-up drops them)"),
        ));
    }
    let parked = snap.outstanding.iter().filter(|o| o.source == Source::Park);
    let lost_park = match park {
        Some(park) => parked
            .filter(|o| !(park.first_seq..park.end_seq).contains(&o.seq))
            .count(),
        None => parked.count(),
    };
    if lost_park > 0 {
        // A parked copy is fsynced before any state refers to it: nothing but damage loses it.
        problems.push(Problem::damage(
            state_path,
            None,
            format!("{lost_park} parked message(s) are missing from the channel's park log"),
        ));
    }
}

/// The report as tables and lines of text.
fn render_text(report: &Report) -> String {
    let mut out = format!("ringsq check {}\n", report.data_path);
    if report.topics.is_empty() {
        out.push_str("\nno topics\n");
    } else {
        out.push('\n');
        out.push_str(&topics_table(&report.topics));
        let channels = channels_table(&report.topics);
        if !channels.is_empty() {
            out.push('\n');
            out.push_str(&channels);
        }
    }
    if !report.problems.is_empty() {
        out.push('\n');
        for problem in &report.problems {
            let _ = writeln!(out, "{problem}");
        }
    }
    let channels: usize = report.topics.iter().map(|t| t.channels.len()).sum();
    let messages: u64 = report.topics.iter().map(|t| t.messages).sum();
    let verdict = if report.ok { "OK" } else { "DAMAGED" };
    let _ = writeln!(
        out,
        "\n{verdict}: {} topic(s), {channels} channel(s), {messages} message(s); {} damaged, {} warning(s)",
        report.topics.len(),
        report.damaged,
        report.warnings
    );
    out
}

fn topics_table(topics: &[TopicReport]) -> String {
    let header = [
        "TOPIC", "SEGMENTS", "MESSAGES", "BYTES", "SEQS", "OLDEST", "NEWEST",
    ];
    let rows = topics
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.segments.to_string(),
                t.messages.to_string(),
                t.bytes.to_string(),
                format!("{}..{}", t.first_seq, t.end_seq),
                t.oldest.clone().unwrap_or_else(|| "-".to_owned()),
                t.newest.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect::<Vec<_>>();
    table(&header, &rows)
}

fn channels_table(topics: &[TopicReport]) -> String {
    let header = [
        "CHANNEL",
        "STATE",
        "CURSOR",
        "BEHIND",
        "OUTSTANDING",
        "FROM-TOPIC",
        "FROM-PARK",
        "DEFERRED",
        "PARK-LOG",
        "DEAD",
    ];
    let rows = topics
        .iter()
        .flat_map(|t| t.channels.iter().map(move |c| (t, c)))
        .map(|(t, c)| {
            vec![
                format!("{}/{}", t.name, c.name),
                c.state.unwrap_or("none").to_owned(),
                c.cursor
                    .map_or_else(|| "-".to_owned(), |p| p.seq.to_string()),
                c.behind.to_string(),
                c.outstanding.to_string(),
                c.outstanding_topic.to_string(),
                c.outstanding_park.to_string(),
                c.deferred.to_string(),
                c.park_log
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |p| format!("{} msgs", p.messages)),
                c.dead_letters
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |d| d.listed.to_string()),
            ]
        })
        .collect::<Vec<_>>();
    if rows.is_empty() {
        return String::new();
    }
    table(&header, &rows)
}

/// Columns padded to their widest cell: the first left-aligned, the rest right-aligned.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i == 0 {
                let _ = write!(line, "{cell:<w$}");
            } else {
                let _ = write!(line, "  {cell:>w$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::channel::{
        SnapConfig, SnapDead, SnapOutstanding, SnapSkip, CHANNEL_SNAPSHOT_VERSION,
    };

    fn snap(
        cursor: u64,
        outstanding: &[(Source, u64, u64)],
        skip: &[(u64, u64)],
    ) -> ChannelSnapshot {
        ChannelSnapshot {
            version: CHANNEL_SNAPSHOT_VERSION,
            generation: 1,
            cursor: SnapPos {
                seq: cursor,
                offset: 0,
            },
            outstanding: outstanding
                .iter()
                .map(|&(source, seq, deliver_at_ns)| SnapOutstanding {
                    source,
                    seq,
                    offset: 0,
                    attempts: 1,
                    deliver_at_ns,
                })
                .collect(),
            skip: skip
                .iter()
                .map(|&(seq, to)| SnapSkip {
                    seq,
                    to: SnapPos { seq: to, offset: 0 },
                })
                .collect(),
            ahead: vec![15, 16],
            dead: SnapDead::default(),
            config: SnapConfig::default(),
        }
    }

    fn log(first_seq: u64, end_seq: u64) -> LogSummary {
        LogSummary {
            segments: 1,
            first_seq,
            end_seq,
            ..LogSummary::default()
        }
    }

    #[test]
    fn behind_leaves_out_skipped_and_taken_ahead_records() {
        let s = snap(
            10,
            &[(Source::Topic, 5, 0), (Source::Topic, 15, 9)],
            &[(12, 14)],
        );
        // Taken ahead: 15 (outstanding and listed), 16 (listed only).
        assert_eq!(behind(&s, &log(0, 20)), 10 - 2 - 2);
        assert_eq!(behind(&snap(30, &[], &[]), &log(0, 20)), 0);
    }

    #[test]
    fn missing_references_are_reported() {
        let s = snap(25, &[(Source::Topic, 1, 0), (Source::Park, 3, 0)], &[]);
        let mut problems = Vec::new();
        check_references(&s, &log(2, 20), None, Path::new("c.channel"), &mut problems);
        let severities: Vec<_> = problems.iter().map(|p| p.severity).collect();
        assert_eq!(
            severities,
            [Severity::Warning, Severity::Warning, Severity::Damage],
            "{problems:?}"
        );
    }

    #[test]
    fn an_empty_data_dir_is_ok() {
        let dir = tempfile::tempdir().unwrap();
        let report = check(dir.path(), 1000).unwrap();
        assert!(report.ok && report.topics.is_empty() && report.problems.is_empty());
        assert!(render_text(&report).contains("OK: 0 topic(s)"));
    }

    #[test]
    fn tables_line_up() {
        let text = table(
            &["A", "BB"],
            &[vec!["long name".to_owned(), "1".to_owned()]],
        );
        assert_eq!(text, "A          BB\nlong name   1\n");
    }
}
