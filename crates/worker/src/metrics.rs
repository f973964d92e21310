//! The worker's measurements: latency histograms per query kind and
//! overall, and counters, split into the current interval (emptied at each
//! snapshot) and the cumulative measurement totals (the final results).
//!
//! Every completed query is recorded under its shard's lock together with
//! the decision whether it counts (measurement) or not (warmup), so that the
//! counters, the histograms and the `WARMUP` flag of its execution row can
//! never disagree.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use unibench_model::scenario::QueryKind;
use unibench_model::LatencyHistogram;

use crate::sink::lock;

/// Number of query kinds, for per-kind arrays.
const KINDS: usize = 6;

fn kind_index(kind: QueryKind) -> usize {
    match kind {
        QueryKind::PointLookup => 0,
        QueryKind::RangeScan => 1,
        QueryKind::Insert => 2,
        QueryKind::Update => 3,
        QueryKind::Delete => 4,
        QueryKind::Custom => 5,
    }
}

/// Counts and histograms over some span of queries.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub queries: u64,
    /// Latencies above the clamp that were recorded as the clamp.
    pub clamped: u64,
    pub reads: u64,
    pub writes: u64,
    pub errors: u64,
    pub overall: LatencyHistogram,
    pub per_kind: [Option<LatencyHistogram>; KINDS],
}

impl Tally {
    fn record(&mut self, kind: QueryKind, latency: Duration, success: bool, clamp: Duration) {
        self.queries = self.queries.saturating_add(1);
        let latency = if latency > clamp {
            self.clamped = self.clamped.saturating_add(1);
            clamp
        } else {
            latency
        };
        if kind.is_write() {
            self.writes = self.writes.saturating_add(1);
        } else {
            self.reads = self.reads.saturating_add(1);
        }
        if !success {
            self.errors = self.errors.saturating_add(1);
        }
        self.overall.record(latency);
        self.per_kind[kind_index(kind)].get_or_insert_with(LatencyHistogram::new).record(latency);
    }

    /// Adds another tally's counts and histograms to this one.
    pub fn merge(&mut self, other: &Tally) {
        self.queries = self.queries.saturating_add(other.queries);
        self.clamped = self.clamped.saturating_add(other.clamped);
        self.reads = self.reads.saturating_add(other.reads);
        self.writes = self.writes.saturating_add(other.writes);
        self.errors = self.errors.saturating_add(other.errors);
        self.overall.merge(&other.overall);
        for (mine, theirs) in self.per_kind.iter_mut().zip(&other.per_kind) {
            if let Some(theirs) = theirs {
                mine.get_or_insert_with(LatencyHistogram::new).merge(theirs);
            }
        }
    }

    /// Returns the histogram of one query kind, if any query of that kind
    /// ran.
    pub fn kind(&self, kind: QueryKind) -> Option<&LatencyHistogram> {
        self.per_kind[kind_index(kind)].as_ref()
    }
}

/// Whether completed queries count toward the results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// Warmup: queries run and are logged as warmup, but are not counted.
    Warmup,
    /// Measurement: queries are counted.
    Measurement,
}

/// The counting switch and the start of the current interval.
#[derive(Debug)]
struct Control {
    counting: Counting,
    interval_started: Instant,
}

/// The measurements of the connections of one load thread.
#[derive(Debug)]
struct Shard {
    /// This shard's copy of the switch, changed under the shard's lock so
    /// that a query is counted exactly when it is not flagged as warmup.
    counting: Counting,
    interval: Tally,
    /// When the last counted query of this shard finished.
    last_counted: Option<Instant>,
}

/// The shared recorder that every connection task writes into. It has one
/// shard per load thread, so threads do not wait on each other for every
/// query. A snapshot merges the shards.
#[derive(Debug)]
pub struct Metrics {
    control: Mutex<Control>,
    shards: Vec<Mutex<Shard>>,
    clamp: Duration,
}

/// One interval's measurements, taken at a snapshot.
#[derive(Debug, Clone)]
pub struct Interval {
    pub tally: Tally,
    pub elapsed: Duration,
    pub counting: Counting,
}

impl Metrics {
    /// Creates a recorder with `shards` shards (at least one) that clamps latencies
    /// above `clamp` (at most one hour).
    pub fn new(counting: Counting, clamp: Duration, shards: usize) -> Self {
        let highest = Duration::from_micros(unibench_model::histogram::HIGHEST_MICROS);
        Metrics {
            control: Mutex::new(Control { counting, interval_started: Instant::now() }),
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Shard { counting, interval: Tally::default(), last_counted: None }))
                .collect(),
            clamp: clamp.min(highest),
        }
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Records a query that finished at `finished` in shard `shard` (taken
    /// modulo the number of shards) and returns whether it was a warmup query.
    pub fn record(&self, shard: usize, kind: QueryKind, latency: Duration, success: bool, finished: Instant) -> bool {
        let mut shard = lock(&self.shards[shard % self.shards.len()]);
        match shard.counting {
            Counting::Warmup => true,
            Counting::Measurement => {
                shard.interval.record(kind, latency, success, self.clamp);
                shard.last_counted = Some(finished);
                false
            }
        }
    }

    /// Returns when the last counted query finished, if any was counted.
    pub fn last_counted(&self) -> Option<Instant> {
        self.shards.iter().filter_map(|shard| lock(shard).last_counted).max()
    }

    /// Switches to measurement. Returns `true` only the first time, when the
    /// interval is emptied so that measurement starts from zero.
    pub fn start_measurement(&self) -> bool {
        let mut control = lock(&self.control);
        if control.counting == Counting::Measurement {
            return false;
        }
        control.counting = Counting::Measurement;
        control.interval_started = Instant::now();
        for shard in &self.shards {
            let mut shard = lock(shard);
            shard.counting = Counting::Measurement;
            shard.interval = Tally::default();
        }
        true
    }

    pub fn counting(&self) -> Counting {
        lock(&self.control).counting
    }

    /// Takes the interval's measurements and starts a new interval.
    pub fn take_interval(&self) -> Interval {
        let mut control = lock(&self.control);
        let now = Instant::now();
        let elapsed = now.duration_since(control.interval_started);
        control.interval_started = now;
        let mut tally = Tally::default();
        for shard in &self.shards {
            let shard_tally = std::mem::take(&mut lock(shard).interval);
            tally.merge(&shard_tally);
        }
        Interval { tally, elapsed, counting: control.counting }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_queries_are_not_counted() {
        let metrics = Metrics::new(Counting::Warmup, Duration::from_secs(3600), 2);
        assert!(metrics.record(0, QueryKind::PointLookup, Duration::from_millis(1), true, Instant::now()));
        assert_eq!(metrics.take_interval().tally.queries, 0);
        assert!(metrics.start_measurement());
        assert!(!metrics.start_measurement(), "the switch happens once");
        assert!(!metrics.record(1, QueryKind::Update, Duration::from_millis(2), false, Instant::now()));
        let interval = metrics.take_interval();
        assert_eq!(interval.tally.queries, 1);
        assert_eq!(interval.tally.writes, 1);
        assert_eq!(interval.tally.errors, 1);
        assert!(interval.tally.kind(QueryKind::Update).is_some());
        assert!(interval.tally.kind(QueryKind::PointLookup).is_none());
    }

    #[test]
    fn slow_queries_are_clamped_and_counted() {
        let metrics = Metrics::new(Counting::Measurement, Duration::from_millis(200), 1);
        metrics.record(0, QueryKind::Custom, Duration::from_millis(500), true, Instant::now());
        metrics.record(7, QueryKind::Custom, Duration::from_millis(5), true, Instant::now());
        let tally = metrics.take_interval().tally;
        assert_eq!(tally.queries, 2);
        assert_eq!(tally.clamped, 1);
        let max = tally.overall.max_ms().unwrap();
        assert!((max - 200.0).abs() < 0.5, "{max}");
    }

    #[test]
    fn last_counted_skips_warmup() {
        let metrics = Metrics::new(Counting::Warmup, Duration::from_secs(3600), 2);
        let start = Instant::now();
        metrics.record(0, QueryKind::PointLookup, Duration::from_millis(1), true, start);
        assert_eq!(metrics.last_counted(), None, "warmup queries are not counted");
        metrics.start_measurement();
        let later = start + Duration::from_millis(5);
        metrics.record(1, QueryKind::PointLookup, Duration::from_millis(1), true, later);
        metrics.record(0, QueryKind::PointLookup, Duration::from_millis(1), true, start);
        assert_eq!(metrics.last_counted(), Some(later), "the latest of every shard");
    }

    #[test]
    fn merge_adds_counts_and_histograms() {
        let metrics = Metrics::new(Counting::Measurement, Duration::from_secs(3600), 3);
        metrics.record(0, QueryKind::PointLookup, Duration::from_millis(1), true, Instant::now());
        metrics.record(2, QueryKind::PointLookup, Duration::from_millis(2), true, Instant::now());
        let mut total = metrics.take_interval().tally;
        assert_eq!(total.queries, 2, "every shard is taken");
        metrics.record(1, QueryKind::PointLookup, Duration::from_millis(3), true, Instant::now());
        total.merge(&metrics.take_interval().tally);
        assert_eq!(total.queries, 3);
        assert_eq!(total.overall.len(), 3);
        assert_eq!(total.kind(QueryKind::PointLookup).map(|h| h.len()), Some(3));
    }
}
