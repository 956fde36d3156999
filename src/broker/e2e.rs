//! End-to-end processing latency (nsqd's `--e2e-processing-latency-percentile` and
//! `--e2e-processing-latency-window-time`, `internal/quantile`): for each message a channel
//! finishes, `now - message timestamp`, over a sliding window, reported as the configured
//! percentiles in `/stats`, statsd and `/metrics`.
//!
//! Owns one recorder per channel. As nsqd: two windows of `window / 2` each; a record or a query
//! first moves the window on (the older half is cleared and becomes the current one), so what is
//! reported covers between `window / 2` and `window`. nsqd keeps a quantile stream per half; we
//! keep an HDR histogram per half (2 significant figures: values within 1 %), allocated only when
//! a percentile is configured. A topic reports the merge of its channels' recorders, and nothing
//! (`percentiles: null`) when it has no channel or no percentile is configured — nsqd's
//! `AggregateChannelE2eProcessingLatency`.

use super::Clock;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::cell::RefCell;
use std::time::Duration;
use tokio::time::Instant;

/// Significant figures kept by each window's histogram.
const HISTOGRAM_SIGFIG: u8 = 2;

/// Go's `quantile.Result`: `{"count":0,"percentiles":null}` when no percentile is configured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LatencyStats {
    pub count: u64,
    pub percentiles: Option<Vec<Percentile>>,
}

/// One `{"quantile":0.99,"value":<ns>}`; numbers printed as Go prints a `float64` (`1`, not `1.0`).
#[derive(Debug, Clone, Serialize)]
pub struct Percentile {
    #[serde(serialize_with = "go_float")]
    pub quantile: f64,
    #[serde(serialize_with = "go_float")]
    pub value: f64,
}

/// Go's `encoding/json` writes a whole `float64` below 1e21 without a fraction.
#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `serialize_with` signature
fn go_float<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    const WHOLE_MAX: f64 = 9_007_199_254_740_992.0; // 2^53: every whole f64 below is exact
    if v.is_finite() && v.fract() == 0.0 && v.abs() < WHOLE_MAX {
        #[allow(clippy::cast_possible_truncation)] // whole and below 2^53
        return s.serialize_i64(*v as i64);
    }
    s.serialize_f64(*v)
}

/// The two flags, resolved once.
#[derive(Debug, Clone, Default)]
pub struct E2eConfig {
    /// Each in (0, 1]; empty disables the measurement.
    pub percentiles: Vec<f64>,
    pub window: Duration,
}

/// One channel's recorder; a no-op without configured percentiles.
#[derive(Debug)]
pub struct E2eLatency {
    /// Boxed: most channels have none, and a channel's size counts at 10 000 topics.
    windows: Option<Box<RefCell<Windows>>>,
    clock: Clock,
}

#[derive(Debug)]
struct Windows {
    percentiles: Vec<f64>,
    halves: [Histogram<u64>; 2],
    current: usize,
    last_move: Instant,
    move_every: Duration,
}

fn histogram() -> Option<Histogram<u64>> {
    Histogram::new(HISTOGRAM_SIGFIG).ok()
}

impl Windows {
    fn new(cfg: &E2eConfig, now: Instant) -> Option<Self> {
        Some(Self {
            percentiles: cfg.percentiles.clone(),
            halves: [histogram()?, histogram()?],
            current: 0,
            last_move: now,
            // A zero window would never move; a nanosecond is the shortest that does.
            move_every: (cfg.window / 2).max(Duration::from_nanos(1)),
        })
    }

    /// nsqd's `moveWindow` loop, without looping over a long idle gap.
    fn move_on(&mut self, now: Instant) {
        let idle = now.saturating_duration_since(self.last_move);
        if idle <= self.move_every {
            return;
        }
        if idle > self.move_every * 2 {
            self.halves[0].reset();
            self.halves[1].reset();
            self.last_move = now;
            return;
        }
        self.current ^= 1;
        self.halves[self.current].reset();
        self.last_move += self.move_every;
    }
}

impl E2eLatency {
    pub fn new(cfg: &E2eConfig, clock: Clock) -> Self {
        let windows = if cfg.percentiles.is_empty() {
            None
        } else {
            Windows::new(cfg, Instant::now()).map(|w| Box::new(RefCell::new(w)))
        };
        Self { windows, clock }
    }

    /// A message published at `timestamp_ns` (Unix ns) was finished now.
    pub fn record(&self, timestamp_ns: i64) {
        if self.windows.is_none() {
            // Off by default: no clock read per finished message.
            return;
        }
        let now_ns = self.clock.now_timestamp_ns();
        self.record_latency(
            Instant::now(),
            u64::try_from(now_ns.saturating_sub(timestamp_ns)).unwrap_or(0),
        );
    }

    fn record_latency(&self, now: Instant, latency_ns: u64) {
        let Some(w) = &self.windows else { return };
        let mut w = w.borrow_mut();
        w.move_on(now);
        let current = w.current;
        let half = &mut w.halves[current];
        // The histogram grows to fit; should it ever fail to, the value is clamped, not lost.
        if half.record(latency_ns).is_err() {
            half.saturating_record(latency_ns);
        }
    }

    /// This recorder's figures (nsqd's `Quantile.Result`).
    pub fn stats(&self) -> LatencyStats {
        merged(std::iter::once(self), Instant::now())
    }

    /// A topic's figures: the merge of its channels' recorders.
    pub fn aggregate<'a>(channels: impl IntoIterator<Item = &'a E2eLatency>) -> LatencyStats {
        merged(channels, Instant::now())
    }
}

fn merged<'a>(recorders: impl IntoIterator<Item = &'a E2eLatency>, now: Instant) -> LatencyStats {
    let mut all: Option<(Histogram<u64>, Vec<f64>)> = None;
    for r in recorders {
        let Some(w) = &r.windows else { continue };
        let mut w = w.borrow_mut();
        w.move_on(now);
        if all.is_none() {
            all = histogram().map(|h| (h, w.percentiles.clone()));
        }
        let Some((sum, _)) = all.as_mut() else {
            continue;
        };
        for half in &w.halves {
            // Auto-resizing histograms of the same precision always add.
            let _added = sum.add(half);
        }
    }
    let Some((sum, percentiles)) = all else {
        return LatencyStats::default();
    };
    let empty = sum.is_empty();
    LatencyStats {
        count: sum.len(),
        percentiles: Some(
            percentiles
                .iter()
                .map(|&quantile| Percentile {
                    quantile,
                    #[allow(clippy::cast_precision_loss)] // ns as Go's float64; exact below 2^53
                    value: if empty {
                        0.0
                    } else {
                        sum.value_at_quantile(quantile) as f64
                    },
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(percentiles: &[f64], window: Duration) -> E2eConfig {
        E2eConfig {
            percentiles: percentiles.to_vec(),
            window,
        }
    }

    #[test]
    fn unset_percentiles_report_null() {
        let r = E2eLatency::new(&cfg(&[], Duration::from_secs(600)), Clock::System);
        r.record(0);
        let s = r.stats();
        assert_eq!(s.count, 0);
        assert!(s.percentiles.is_none());
        assert!(E2eLatency::aggregate([&r]).percentiles.is_none());
        assert!(E2eLatency::aggregate([]).percentiles.is_none());
    }

    #[test]
    fn percentiles_of_what_was_recorded() {
        let r = E2eLatency::new(
            &cfg(&[0.5, 0.99, 1.0], Duration::from_secs(600)),
            Clock::System,
        );
        let empty = r.stats();
        assert_eq!(empty.count, 0);
        let p = empty.percentiles.unwrap_or_default();
        assert_eq!(p.len(), 3);
        assert!(p.iter().all(|p| p.value.abs() < f64::EPSILON));
        let now = Instant::now();
        for ms in 1..=100 {
            r.record_latency(now, ms * 1_000_000);
        }
        let s = r.stats();
        assert_eq!(s.count, 100);
        let p = s.percentiles.unwrap_or_default();
        let near = |v: f64, want: f64| (v - want).abs() <= want * 0.01;
        assert!((p[0].quantile - 0.5).abs() < f64::EPSILON);
        assert!(near(p[0].value, 50e6), "{p:?}");
        assert!(near(p[1].value, 99e6), "{p:?}");
        assert!(near(p[2].value, 100e6), "{p:?}");
    }

    #[test]
    fn the_window_slides_by_halves() {
        let r = E2eLatency::new(&cfg(&[1.0], Duration::from_secs(10)), Clock::System);
        let t0 = Instant::now();
        r.record_latency(t0, 1_000);
        r.record_latency(t0 + Duration::from_secs(6), 2_000);
        // Both halves hold one each.
        assert_eq!(merged([&r], t0 + Duration::from_secs(6)).count, 2);
        // The first half is cleared when the window moves again.
        assert_eq!(merged([&r], t0 + Duration::from_secs(11)).count, 1);
        // A long idle gap clears everything.
        assert_eq!(merged([&r], t0 + Duration::from_secs(100)).count, 0);
    }

    #[test]
    fn a_topic_merges_its_channels() {
        let c = cfg(&[0.5], Duration::from_secs(600));
        let (a, b) = (
            E2eLatency::new(&c, Clock::System),
            E2eLatency::new(&c, Clock::System),
        );
        let now = Instant::now();
        a.record_latency(now, 10);
        b.record_latency(now, 20);
        b.record_latency(now, 30);
        let s = E2eLatency::aggregate([&a, &b]);
        assert_eq!(s.count, 3);
        assert!((s.percentiles.unwrap_or_default()[0].value - 20.0).abs() < f64::EPSILON);
    }

    #[test]
    fn a_timestamp_from_the_future_counts_as_zero() {
        let r = E2eLatency::new(&cfg(&[1.0], Duration::from_secs(600)), Clock::System);
        r.record(i64::MAX);
        assert_eq!(r.stats().count, 1);
    }
}
