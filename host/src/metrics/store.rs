//! The live metric store: one [`Series`] per (account, model) served by the
//! config, and one per (account, model, feature) for the features of the
//! feature table (every `reasoning.effort.<level>` shares one `reasoning.effort`
//! series). The set of keys is fixed at start-up, so recording never takes a
//! global lock: each series has its own mutex, held for well under a
//! microsecond.
//!
//! # Memory bound
//!
//! Keys: `pairs × (1 + 15)`. A series holds at most
//! [`MAX_BUCKETS`](super::series::MAX_BUCKETS) (327) buckets; a bucket is ~250
//! bytes plus 8 bytes per non-empty histogram bin, at most 3 × 528 bins.
//! So a series never exceeds ~4.2 MB however many requests flow; a series
//! whose latencies span two or three octaves holds ~0.1–0.5 MB after a week.
//! Series of features a deployment never sees stay empty (~200 bytes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::MetricSource;
use super::clock::Clock;
use super::histogram::Distribution;
use super::series::{Counts, Detail, Kind, Sample, Series, Summary, parse_percentile};
use switchyard_wire::feature::FEATURES;
use switchyard_wire::{Feature, FeatureSet};

/// Feature series per pair: the feature table plus `reasoning.effort`.
const FEATURE_SLOTS: usize = FEATURES.len() + 1;

/// The slot of a feature name, if it has one (`reasoning.effort` names the
/// slot every level shares).
fn feature_slot(feature: &str) -> Option<usize> {
    if feature == "reasoning.effort" || feature.starts_with("reasoning.effort.") {
        return Some(FEATURES.len());
    }
    FEATURES.iter().position(|f| *f == feature)
}

/// The slot of a feature (every reasoning level shares one).
fn slot_of(feature: Feature) -> usize {
    match feature {
        Feature::Reasoning(_) => FEATURES.len(),
        // Table order, with the six reasoning levels (indices 7..=12) taken out.
        f if f.index() < 7 => f.index(),
        f => f.index() - 6,
    }
}

fn lock(m: &Mutex<Series>) -> MutexGuard<'_, Series> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Live metrics of every (account, model) the gateway serves.
pub struct MetricStore {
    clock: Arc<dyn Clock>,
    /// `account/model` → pair index.
    index: super::IdIndex,
    ids: Vec<String>,
    pairs: Vec<Mutex<Series>>,
    /// `pair * FEATURE_SLOTS + slot`.
    features: Vec<Mutex<Series>>,
}

impl std::fmt::Debug for MetricStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricStore")
            .field("keys", &self.ids)
            .finish()
    }
}

impl MetricStore {
    /// A store for these `account/model` ids.
    pub fn new(ids: impl IntoIterator<Item = String>, clock: Arc<dyn Clock>) -> Self {
        let (index, list) = super::index_ids(ids);
        let pairs = (0..list.len()).map(|_| Mutex::default()).collect();
        let features = (0..list.len() * FEATURE_SLOTS)
            .map(|_| Mutex::default())
            .collect();
        Self {
            clock,
            index,
            ids: list,
            pairs,
            features,
        }
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Every `account/model` id, in config order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Records one attempt at `id` that carried `features`.
    pub fn record(&self, id: &str, features: FeatureSet, sample: &Sample) {
        let Some(&pair) = self.index.get(id) else {
            return;
        };
        let now = self.clock.now_ms();
        lock(&self.pairs[pair]).record(now, sample);
        for slot in slots(features) {
            lock(&self.features[pair * FEATURE_SLOTS + slot]).record(now, sample);
        }
    }

    /// Everything recorded for `id` over the window ending at `now_ms`.
    pub fn summary(&self, id: &str, now_ms: u64, window_secs: u32) -> Option<Summary> {
        let pair = *self.index.get(id)?;
        Some(lock(&self.pairs[pair]).summarize(now_ms, window_secs, Detail::Full))
    }

    /// Everything recorded for `id` with `feature` over the window.
    pub fn feature_summary(
        &self,
        id: &str,
        feature: &str,
        now_ms: u64,
        window_secs: u32,
    ) -> Option<Summary> {
        let pair = *self.index.get(id)?;
        let slot = feature_slot(feature)?;
        Some(lock(&self.features[pair * FEATURE_SLOTS + slot]).summarize(
            now_ms,
            window_secs,
            Detail::Full,
        ))
    }

    /// Counters of `id` with `feature` over the window.
    pub fn feature_counts(
        &self,
        id: &str,
        feature: &str,
        now_ms: u64,
        window_secs: u32,
    ) -> Option<Counts> {
        let pair = *self.index.get(id)?;
        let slot = feature_slot(feature)?;
        Some(lock(&self.features[pair * FEATURE_SLOTS + slot]).counts(now_ms, window_secs))
    }

    /// Approximate heap bytes held by every series.
    pub fn heap_bytes(&self) -> usize {
        self.pairs
            .iter()
            .chain(self.features.iter())
            .map(|s| lock(s).heap_bytes())
            .sum()
    }

    /// A snapshot of this store as of now, for one routing decision.
    pub fn snapshot(self: &Arc<Self>) -> Snapshot {
        Snapshot {
            store: self.clone(),
            now_ms: self.clock.now_ms(),
            cache: Mutex::new(HashMap::default()),
            distributions: Mutex::new(HashMap::default()),
        }
    }
}

/// The slots of a request's features, each once (a request has one
/// reasoning level at most).
fn slots(features: FeatureSet) -> impl Iterator<Item = usize> {
    features.iter().map(slot_of)
}

/// A map keyed by small integers, read on every request.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The store as of one instant: what a routing decision reads. Each
/// (candidate, window) summary — counters, sums, min and max — is computed on
/// its first read, from the buckets as of the snapshot's instant, and then
/// cached; a percentile also merges (once) the histogram bins of the one
/// duration it needs. A policy reading 100 metrics pays for one merge per
/// candidate and a hash lookup per read.
pub struct Snapshot {
    store: Arc<MetricStore>,
    now_ms: u64,
    cache: Mutex<FastMap<(usize, u32), Arc<Summary>>>,
    distributions: Mutex<FastMap<(usize, u32, Kind), Merged>>,
}

/// A merged distribution and the last quantile read from it (a policy reads
/// the same percentile of every candidate, often more than once).
struct Merged {
    distribution: Distribution,
    /// `(p as bits, value in µs)`.
    last: Option<(u64, Option<f64>)>,
}

impl Snapshot {
    /// Quantile `p` (µs) of `pair`'s `kind` durations over `window_secs`,
    /// merging the histogram on its first read. `cache` is
    /// `self.distributions`, locked by the caller.
    fn quantile_us(
        &self,
        cache: &mut FastMap<(usize, u32, Kind), Merged>,
        pair: usize,
        window_secs: u32,
        kind: Kind,
        p: f64,
    ) -> Option<f64> {
        let merged = cache
            .entry((pair, window_secs, kind))
            .or_insert_with(|| Merged {
                distribution: lock(&self.store.pairs[pair]).distribution(
                    self.now_ms,
                    window_secs,
                    kind,
                ),
                last: None,
            });
        match merged.last {
            Some((bits, value)) if bits == p.to_bits() => value,
            _ => {
                let value = merged.distribution.quantile_us(p);
                merged.last = Some((p.to_bits(), value));
                value
            }
        }
    }
}

impl Snapshot {
    /// The instant this snapshot reads at.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The summary of `id` over `window_secs` as of the snapshot: counters,
    /// sums, min and max (no histogram bins: see [`Snapshot::metric`]).
    pub fn summary(&self, id: &str, window_secs: u32) -> Option<Arc<Summary>> {
        let pair = *self.store.index.get(id)?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = cache.get(&(pair, window_secs)) {
            return Some(s.clone());
        }
        let summary = Arc::new(lock(&self.store.pairs[pair]).summarize(
            self.now_ms,
            window_secs,
            Detail::Counts,
        ));
        cache.insert((pair, window_secs), summary.clone());
        Some(summary)
    }

    /// Quantile `p` (µs) of `id`'s `kind` durations over `window_secs`.
    fn quantile(&self, id: &str, window_secs: u32, kind: Kind, p: f64) -> Option<f64> {
        let pair = *self.store.index.get(id)?;
        let mut cache = self.distributions.lock().unwrap_or_else(|e| e.into_inner());
        self.quantile_us(&mut cache, pair, window_secs, kind, p)
    }

    /// The recent health attempts of `id` with `feature` (the last
    /// [`super::series::RECENT_ATTEMPTS`] within `window_secs`), as of the
    /// snapshot: what exclusion decisions judge.
    pub fn recent_feature_counts(
        &self,
        id: &str,
        feature: &str,
        window_secs: u32,
    ) -> Option<Counts> {
        let pair = *self.store.index.get(id)?;
        let slot = feature_slot(feature)?;
        Some(
            lock(&self.store.features[pair * FEATURE_SLOTS + slot])
                .recent_counts(self.now_ms, window_secs),
        )
    }

    /// Counters of `id` with `feature` over the window, as of the snapshot.
    pub fn feature_counts(&self, id: &str, feature: &str, window_secs: u32) -> Option<Counts> {
        self.store
            .feature_counts(id, feature, self.now_ms, window_secs)
    }
}

impl MetricSource for Snapshot {
    fn metric(&self, candidate: &str, name: &str, window_secs: u32) -> Option<f64> {
        let canonical;
        let name = if name.bytes().any(|b| b == b'-' || b.is_ascii_uppercase()) {
            // WIT-style spelling (`total-requests`, `P95-latency`).
            canonical = name
                .chars()
                .map(|c| {
                    if c == '-' {
                        '_'
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect::<String>();
            canonical.as_str()
        } else {
            name
        };
        if let Some((p, kind)) = parse_percentile(name) {
            return self
                .quantile(candidate, window_secs, kind, p)
                .map(|us| us / 1000.0);
        }
        self.summary(candidate, window_secs)?.value(name)
    }

    /// One name parse and one cache lock for every candidate's percentile;
    /// anything else is read one by one.
    fn metric_each(&self, candidates: &[String], name: &str, window_secs: u32, out: &mut Vec<f64>) {
        let Some((p, kind)) = parse_percentile(name) else {
            out.extend(
                candidates
                    .iter()
                    .map(|c| self.metric(c, name, window_secs).unwrap_or(f64::NAN)),
            );
            return;
        };
        let mut cache = self.distributions.lock().unwrap_or_else(|e| e.into_inner());
        for candidate in candidates {
            let value = self.store.index.get(candidate).and_then(|&pair| {
                self.quantile_us(&mut cache, pair, window_secs, kind, p)
                    .map(|us| us / 1000.0)
            });
            out.push(value.unwrap_or(f64::NAN));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::clock::ManualClock;
    use crate::metrics::series::Outcome;

    const MIN: u64 = 60_000;

    fn store(clock: &ManualClock) -> Arc<MetricStore> {
        Arc::new(MetricStore::new(
            ["a/m".to_string(), "b/m".to_string()],
            Arc::new(clock.clone()),
        ))
    }

    fn latency(ms: u64) -> Sample {
        Sample {
            outcome: Some(Outcome::Ok),
            latency: Some(Duration::from_millis(ms)),
            ..Sample::default()
        }
    }

    fn exact(samples: &mut [u64], p: f64) -> f64 {
        samples.sort_unstable();
        let rank = ((p / 100.0) * samples.len() as f64).ceil().max(1.0) as usize;
        samples[rank - 1] as f64
    }

    #[test]
    fn reading_many_candidates_at_once_reads_what_one_by_one_does() {
        let clock = ManualClock::new(10_000 * MIN);
        let store = store(&clock);
        for ms in [120, 80, 300, 95, 410] {
            store.record("a/m", FeatureSet::EMPTY, &latency(ms));
        }
        clock.advance(Duration::from_secs(60));
        let snapshot = store.snapshot();
        let ids = ["b/m", "a/m", "nope/x", "a/m"].map(String::from);
        for name in [
            "p95_latency",
            "p0_latency",
            "avg_latency",
            "uptime",
            "P50-Latency",
        ] {
            let mut together = Vec::new();
            snapshot.metric_each(&ids, name, 900, &mut together);
            let one_by_one: Vec<f64> = ids
                .iter()
                .map(|id| snapshot.metric(id, name, 900).unwrap_or(f64::NAN))
                .collect();
            assert_eq!(together.len(), ids.len(), "{name}");
            for (a, b) in together.iter().zip(&one_by_one) {
                assert!(a == b || (a.is_nan() && b.is_nan()), "{name}: {a} vs {b}");
            }
            assert!(together[1].is_finite(), "{name}: a/m has data");
            assert!(together[2].is_nan(), "{name}: unknown id");
        }
    }

    #[test]
    fn percentiles_over_windows_match_the_recorded_samples() {
        let clock = ManualClock::new(10_000 * MIN);
        let store = store(&clock);
        let mut rng = fastrand::Rng::with_seed(11);
        // Two hours of traffic, one sample every 10 s; remember what each
        // window should hold.
        let mut all: Vec<(u64, u64)> = Vec::new();
        for _ in 0..720 {
            let ms = 50 + rng.u64(..2000);
            store.record("a/m", FeatureSet::EMPTY, &latency(ms));
            all.push((clock.now_ms(), ms));
            clock.advance(Duration::from_secs(10));
        }
        let now = clock.now_ms();
        let snapshot = store.snapshot();
        for (window, ring_ms) in [(900u32, MIN), (3600, MIN), (7200, 15 * MIN)] {
            // The window covers the buckets overlapping (now − W, now].
            let from = now - u64::from(window) * 1000;
            let first_bucket = from - from % ring_ms;
            let mut inside: Vec<u64> = all
                .iter()
                .filter(|(t, _)| {
                    *t - *t % ring_ms >= first_bucket && *t - *t % ring_ms + ring_ms > from
                })
                .map(|(_, ms)| *ms)
                .collect();
            assert_eq!(
                snapshot.metric("a/m", "total_requests", window),
                Some(inside.len() as f64),
                "window {window}"
            );
            for p in [50.0, 95.0, 99.0] {
                let want = exact(&mut inside, p);
                let got = snapshot
                    .metric("a/m", &format!("p{p}_latency"), window)
                    .unwrap_or(f64::NAN);
                assert!(
                    (got - want).abs() <= want / 32.0,
                    "p{p} over {window}s: {got} vs exact {want}"
                );
            }
            let max = *inside.iter().max().unwrap_or(&0) as f64;
            assert_eq!(snapshot.metric("a/m", "max_latency", window), Some(max));
        }
        assert_eq!(snapshot.metric("b/m", "p50_latency", 900), None);
        assert_eq!(snapshot.metric("nobody/m", "p50_latency", 900), None);
    }

    #[test]
    fn every_feature_has_the_slot_of_its_name() {
        for f in switchyard_wire::feature::ALL {
            assert_eq!(Some(slot_of(f)), feature_slot(f.name()), "{f}");
        }
    }

    #[test]
    fn every_seed_metric_has_a_value() {
        let clock = ManualClock::new(500 * MIN);
        let store = store(&clock);
        let features = FeatureSet::from_names(["stream", "tools.function_calling"]);
        store.record(
            "a/m",
            features,
            &Sample {
                outcome: Some(Outcome::Ok),
                latency: Some(Duration::from_millis(120)),
                e2e: Some(Duration::from_millis(130)),
                ttft: Some(Duration::from_millis(120)),
                input_tokens: Some(100),
                output_tokens: Some(20),
            },
        );
        store.record(
            "a/m",
            features,
            &Sample {
                outcome: Some(Outcome::Error),
                ..Sample::default()
            },
        );
        let s = store.snapshot();
        let v = |name: &str| s.metric("a/m", name, 900);
        assert_eq!(v("avg_latency"), Some(120.0));
        assert_eq!(v("min_e2e_latency"), Some(130.0));
        assert_eq!(v("p90_ttft"), Some(120.0));
        assert_eq!(v("uptime"), Some(0.5));
        assert_eq!(v("total_requests"), Some(2.0));
        assert_eq!(v("total-requests"), Some(2.0));
        assert_eq!(v("throughput"), Some(2.0 / 900.0));
        assert_eq!(v("input_tokens"), Some(100.0));
        assert_eq!(v("output_tokens"), Some(20.0));
        assert_eq!(v("total_tokens"), Some(120.0));
        assert_eq!(v("cost"), None);
        let tools = s
            .feature_counts("a/m", "tools.function_calling", 900)
            .unwrap_or_default();
        assert_eq!((tools.ok, tools.errors), (1, 1));
        assert_eq!(
            s.feature_counts("a/m", "vision", 900).map(|c| c.requests),
            Some(0)
        );
    }

    #[test]
    fn a_snapshot_does_not_see_later_buckets() {
        let clock = ManualClock::new(500 * MIN);
        let store = store(&clock);
        store.record("a/m", FeatureSet::EMPTY, &latency(10));
        let before = store.snapshot();
        clock.advance(Duration::from_secs(120));
        store.record("a/m", FeatureSet::EMPTY, &latency(10));
        assert_eq!(before.metric("a/m", "total_requests", 900), Some(1.0));
        assert_eq!(
            store.snapshot().metric("a/m", "total_requests", 900),
            Some(2.0)
        );
    }
}
