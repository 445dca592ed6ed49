//! Time-bucketed recordings of one (provider account, model) or one
//! (account, model, feature): three rings of buckets at three granularities,
//! so any window from 15 minutes to 7 days is answered from at most ~100
//! buckets.
//!
//! | ring | bucket | kept | answers windows up to |
//! |------|--------|------|-----------------------|
//! | 0    | 1 min  | 61   | 1 hour                |
//! | 1    | 15 min | 97   | 24 hours              |
//! | 2    | 1 hour | 169  | 7 days                |
//!
//! A window of W covers the buckets that overlap `(now − W, now]`: a sample
//! counts for at least W and at most W plus one bucket of its ring.

use std::collections::VecDeque;
use std::time::Duration;

use super::histogram::{BINS, Distribution, Sparse};

/// How one attempt at a provider ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An answer (for streams: one that ended complete).
    Ok,
    /// A stream that broke after its first content token reached the caller:
    /// a failure for uptime and the breaker, recorded once when it ends.
    Broken,
    /// The provider failed: 5xx, a connection error, a
    /// malformed answer.
    Error,
    /// No answer (or no first token) in time.
    Timeout,
    /// 429 or 402: the account is at its limit. Not a failure for uptime.
    RateLimited,
    /// The provider refused the caller's request (a 4xx that is the caller's
    /// fault). Counted as a request; says nothing about the provider's health.
    Rejected,
}

impl Outcome {
    /// Label value: `ok`, `broken`, `error`, `timeout`, `rate_limited`, `rejected`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::RateLimited => "rate_limited",
            Outcome::Rejected => "rejected",
            Outcome::Broken => "broken",
        }
    }
}

/// One attempt as the metric store records it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub outcome: Option<Outcome>,
    /// Provider latency: request sent → whole answer (non-streaming) or first
    /// content token (streaming).
    pub latency: Option<Duration>,
    /// Gateway arrival → answer ready for the caller: includes routing, the
    /// policy decision, failed earlier attempts and backoff.
    pub e2e: Option<Duration>,
    /// Time to first content token (streams only).
    pub ttft: Option<Duration>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

/// Exact counters of a bucket (or of a window).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Attempts of every outcome.
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub rate_limited: u64,
    pub rejected: u64,
    /// Streams that broke after their first content token (not counted `ok`).
    pub broken: u64,
    /// Answers that reported usage, and their token sums.
    pub token_samples: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.requests += o.requests;
        self.ok += o.ok;
        self.errors += o.errors;
        self.timeouts += o.timeouts;
        self.rate_limited += o.rate_limited;
        self.rejected += o.rejected;
        self.broken += o.broken;
        self.token_samples += o.token_samples;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
    }

    /// Attempts that say something about the provider's health.
    pub fn health_attempts(&self) -> u64 {
        self.ok + self.errors + self.timeouts + self.broken
    }

    /// Share of health attempts that succeeded (streams that broke count as
    /// failures), 0.0 to 1.0; `None` without attempts.
    pub fn uptime(&self) -> Option<f64> {
        let attempts = self.health_attempts();
        (attempts > 0).then(|| {
            let failed = self.errors + self.timeouts + self.broken;
            (1.0 - failed as f64 / attempts as f64).clamp(0.0, 1.0)
        })
    }
}

/// Exact count, sum, min and max of a duration, with histogram bins.
#[derive(Debug, Clone, Default)]
pub struct Stat {
    count: u64,
    sum_us: u64,
    min_us: u64,
    max_us: u64,
    bins: Sparse,
}

impl Stat {
    /// Everything recorded, as a distribution (for quantiles).
    pub fn distribution(&self) -> Distribution {
        let mut merge = StatMerge::default();
        merge.add(self, true);
        merge.finish()
    }

    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        if self.count == 0 {
            self.min_us = us;
            self.max_us = us;
        } else {
            self.min_us = self.min_us.min(us);
            self.max_us = self.max_us.max(us);
        }
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.bins.record(us);
    }
}

/// Merges stats into a distribution.
#[derive(Default)]
struct StatMerge {
    count: u64,
    sum_us: u64,
    min_us: u64,
    max_us: u64,
    dense: Option<Vec<u64>>,
}

impl StatMerge {
    fn add(&mut self, s: &Stat, with_bins: bool) {
        if s.count == 0 {
            return;
        }
        if self.count == 0 {
            self.min_us = s.min_us;
            self.max_us = s.max_us;
        } else {
            self.min_us = self.min_us.min(s.min_us);
            self.max_us = self.max_us.max(s.max_us);
        }
        self.count += s.count;
        self.sum_us = self.sum_us.saturating_add(s.sum_us);
        if with_bins {
            let dense = self.dense.get_or_insert_with(|| vec![0; BINS]);
            s.bins.add_to(dense);
        }
    }

    fn finish(self) -> Distribution {
        Distribution::from_dense(
            self.dense.as_deref().unwrap_or_default(),
            self.count,
            self.sum_us,
            self.min_us,
            self.max_us,
        )
    }
}

#[derive(Debug, Clone, Default)]
struct Bucket {
    start_ms: u64,
    counts: Counts,
    latency: Stat,
    e2e: Stat,
    ttft: Stat,
}

impl Bucket {
    fn heap_entries(&self) -> usize {
        self.latency.bins.len() + self.e2e.bins.len() + self.ttft.bins.len()
    }
}

#[derive(Debug, Clone)]
struct Ring {
    granularity_ms: u64,
    keep: usize,
    buckets: VecDeque<Bucket>,
}

impl Ring {
    fn new(granularity_ms: u64, keep: usize) -> Self {
        Self {
            granularity_ms,
            keep,
            buckets: VecDeque::new(),
        }
    }

    /// Longest window this ring answers, in ms.
    fn span_ms(&self) -> u64 {
        self.granularity_ms * (self.keep as u64 - 1)
    }

    fn bucket(&mut self, now_ms: u64) -> &mut Bucket {
        let g = self.granularity_ms;
        let start = now_ms - now_ms % g;
        // Drop what no window can reach any more.
        let oldest = start.saturating_sub(g * (self.keep as u64 - 1));
        while self.buckets.front().is_some_and(|b| b.start_ms < oldest) {
            self.buckets.pop_front();
        }
        let position = match self.buckets.back() {
            Some(last) if last.start_ms == start => self.buckets.len() - 1,
            Some(last) if last.start_ms > start => {
                // The clock went back: find or insert the bucket in order.
                match self.buckets.binary_search_by_key(&start, |b| b.start_ms) {
                    Ok(i) => i,
                    Err(i) => {
                        self.buckets.insert(
                            i,
                            Bucket {
                                start_ms: start,
                                ..Bucket::default()
                            },
                        );
                        i
                    }
                }
            }
            _ => {
                self.buckets.push_back(Bucket {
                    start_ms: start,
                    ..Bucket::default()
                });
                self.buckets.len() - 1
            }
        };
        &mut self.buckets[position]
    }

    /// Buckets overlapping `(now − window, now]`.
    fn in_window(&self, now_ms: u64, window_ms: u64) -> impl Iterator<Item = &Bucket> {
        let g = self.granularity_ms;
        let from = now_ms.saturating_sub(window_ms);
        self.buckets
            .iter()
            .rev()
            .skip_while(move |b| b.start_ms > now_ms)
            .take_while(move |b| b.start_ms + g > from)
    }
}

/// Everything recorded for one key over one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub window_secs: u32,
    pub counts: Counts,
    pub latency: Distribution,
    pub e2e: Distribution,
    pub ttft: Distribution,
}

/// One of the three recorded durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Latency,
    E2e,
    Ttft,
}

impl Kind {
    /// From a metric name's suffix: `latency`, `e2e_latency`, `ttft`.
    pub fn parse(suffix: &str) -> Option<Kind> {
        match suffix {
            "latency" => Some(Kind::Latency),
            "e2e_latency" => Some(Kind::E2e),
            "ttft" => Some(Kind::Ttft),
            _ => None,
        }
    }
}

/// `pNN_<kind>` → (NN, kind), NN from 0 to 100.
pub fn parse_percentile(name: &str) -> Option<(f64, Kind)> {
    let (stat, suffix) = name.split_once('_')?;
    let digits = stat.strip_prefix('p')?;
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let p: u32 = digits.parse().ok()?;
    (p <= 100).then_some(())?;
    Some((f64::from(p), Kind::parse(suffix)?))
}

/// Which distributions a summary needs bins for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Counters, sums, min and max only (cheap).
    Counts,
    /// Also the bins for percentiles.
    Full,
}

/// The recordings of one key.
#[derive(Debug, Clone)]
pub struct Series {
    rings: [Ring; 3],
    recent: Recent,
}

impl Default for Series {
    fn default() -> Self {
        Self {
            rings: [
                Ring::new(60_000, 61),
                Ring::new(900_000, 97),
                Ring::new(3_600_000, 169),
            ],
            recent: Recent::default(),
        }
    }
}

/// How many of a key's latest health attempts [`Recent`] keeps.
pub const RECENT_ATTEMPTS: usize = 16;

/// A key's last [`RECENT_ATTEMPTS`] health attempts (ok, error, timeout,
/// broken) with their times, to the millisecond: exclusion decisions judge
/// recent behaviour, which the rings' one-minute buckets cannot resolve.
#[derive(Debug, Clone, Default)]
struct Recent {
    at_ms: [u64; RECENT_ATTEMPTS],
    /// Bit i: attempt i succeeded.
    ok: u16,
    next: u8,
    len: u8,
}

impl Recent {
    fn push(&mut self, now_ms: u64, ok: bool) {
        let i = usize::from(self.next);
        self.at_ms[i] = now_ms;
        if ok {
            self.ok |= 1 << i;
        } else {
            self.ok &= !(1 << i);
        }
        self.next = ((i + 1) % RECENT_ATTEMPTS) as u8;
        self.len = (usize::from(self.len) + 1).min(RECENT_ATTEMPTS) as u8;
    }

    /// Counts of the kept attempts made in the `window_ms` before `now_ms`
    /// (failures as errors).
    fn counts(&self, now_ms: u64, window_ms: u64) -> Counts {
        let from = now_ms.saturating_sub(window_ms);
        let mut counts = Counts::default();
        for i in 0..usize::from(self.len) {
            if self.at_ms[i] < from || self.at_ms[i] > now_ms {
                continue;
            }
            counts.requests += 1;
            if self.ok & (1 << i) != 0 {
                counts.ok += 1;
            } else {
                counts.errors += 1;
            }
        }
        counts
    }
}

/// Most buckets a series holds; with [`BINS`] it bounds a series' memory.
pub const MAX_BUCKETS: usize = 61 + 97 + 169;

impl Series {
    pub fn record(&mut self, now_ms: u64, sample: &Sample) {
        match sample.outcome {
            Some(Outcome::Ok) => self.recent.push(now_ms, true),
            Some(Outcome::Error | Outcome::Timeout | Outcome::Broken) => {
                self.recent.push(now_ms, false);
            }
            _ => {}
        }
        for ring in &mut self.rings {
            let b = ring.bucket(now_ms);
            if let Some(outcome) = sample.outcome {
                b.counts.requests += 1;
                match outcome {
                    Outcome::Ok => b.counts.ok += 1,
                    Outcome::Error => b.counts.errors += 1,
                    Outcome::Timeout => b.counts.timeouts += 1,
                    Outcome::RateLimited => b.counts.rate_limited += 1,
                    Outcome::Rejected => b.counts.rejected += 1,
                    Outcome::Broken => b.counts.broken += 1,
                }
            }
            if let Some(d) = sample.latency {
                b.latency.record(d);
            }
            if let Some(d) = sample.e2e {
                b.e2e.record(d);
            }
            if let Some(d) = sample.ttft {
                b.ttft.record(d);
            }
            if sample.input_tokens.is_some() || sample.output_tokens.is_some() {
                b.counts.token_samples += 1;
                b.counts.input_tokens += sample.input_tokens.unwrap_or(0);
                b.counts.output_tokens += sample.output_tokens.unwrap_or(0);
            }
        }
    }

    fn ring_for(&self, window_ms: u64) -> &Ring {
        self.rings
            .iter()
            .find(|r| window_ms <= r.span_ms())
            .unwrap_or(&self.rings[2])
    }

    /// The window of `window_secs` ending at `now_ms`.
    pub fn summarize(&self, now_ms: u64, window_secs: u32, detail: Detail) -> Summary {
        let window_ms = u64::from(window_secs) * 1000;
        let ring = self.ring_for(window_ms);
        let mut counts = Counts::default();
        let (mut latency, mut e2e, mut ttft) = (
            StatMerge::default(),
            StatMerge::default(),
            StatMerge::default(),
        );
        let bins = detail == Detail::Full;
        for b in ring.in_window(now_ms, window_ms) {
            counts.add(&b.counts);
            latency.add(&b.latency, bins);
            e2e.add(&b.e2e, bins);
            ttft.add(&b.ttft, bins);
        }
        Summary {
            window_secs,
            counts,
            latency: latency.finish(),
            e2e: e2e.finish(),
            ttft: ttft.finish(),
        }
    }

    /// One duration's distribution, bins included, over the window ending at
    /// `now_ms` (cheaper than a full summary when only a percentile is read).
    pub fn distribution(&self, now_ms: u64, window_secs: u32, kind: Kind) -> Distribution {
        let window_ms = u64::from(window_secs) * 1000;
        let mut merge = StatMerge::default();
        for b in self.ring_for(window_ms).in_window(now_ms, window_ms) {
            let stat = match kind {
                Kind::Latency => &b.latency,
                Kind::E2e => &b.e2e,
                Kind::Ttft => &b.ttft,
            };
            merge.add(stat, true);
        }
        merge.finish()
    }

    /// Counters only, for the window ending at `now_ms`.
    /// Counts of the last [`RECENT_ATTEMPTS`] health attempts made in the
    /// `window_secs` before `now_ms`.
    pub fn recent_counts(&self, now_ms: u64, window_secs: u32) -> Counts {
        self.recent.counts(now_ms, u64::from(window_secs) * 1000)
    }

    pub fn counts(&self, now_ms: u64, window_secs: u32) -> Counts {
        let window_ms = u64::from(window_secs) * 1000;
        let mut counts = Counts::default();
        for b in self.ring_for(window_ms).in_window(now_ms, window_ms) {
            counts.add(&b.counts);
        }
        counts
    }

    /// Approximate heap bytes held (buckets and histogram entries).
    pub fn heap_bytes(&self) -> usize {
        self.rings
            .iter()
            .flat_map(|r| r.buckets.iter())
            .map(|b| std::mem::size_of::<Bucket>() + b.heap_entries() * 8)
            .sum()
    }
}

impl Summary {
    /// The value of a metric name (seed 001) over this summary's window.
    /// Durations are in milliseconds, uptime a fraction (0.0 to 1.0),
    /// throughput requests per second, token metrics averages per answer.
    /// `None` without data, or for a name that is not a live metric.
    pub fn value(&self, name: &str) -> Option<f64> {
        let c = &self.counts;
        let ms = |us: f64| us / 1000.0;
        let dist = |suffix: &str| {
            Kind::parse(suffix).map(|kind| match kind {
                Kind::Latency => &self.latency,
                Kind::E2e => &self.e2e,
                Kind::Ttft => &self.ttft,
            })
        };
        match name {
            "uptime" => c.uptime(),
            "throughput" => {
                (c.requests > 0).then(|| c.requests as f64 / f64::from(self.window_secs.max(1)))
            }
            "total_requests" => (c.requests > 0).then_some(c.requests as f64),
            "input_tokens" => {
                (c.token_samples > 0).then(|| c.input_tokens as f64 / c.token_samples as f64)
            }
            "output_tokens" => {
                (c.token_samples > 0).then(|| c.output_tokens as f64 / c.token_samples as f64)
            }
            "total_tokens" => (c.token_samples > 0)
                .then(|| (c.input_tokens + c.output_tokens) as f64 / c.token_samples as f64),
            _ => {
                let (stat, kind) = name.split_once('_')?;
                let d = dist(kind)?;
                if d.count == 0 {
                    return None;
                }
                match stat {
                    "avg" => d.mean_us().map(ms),
                    "min" => Some(ms(d.min_us as f64)),
                    "max" => Some(ms(d.max_us as f64)),
                    _ => {
                        let (p, _) = parse_percentile(name)?;
                        d.quantile_us(p).map(ms)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn ok(ms: u64) -> Sample {
        Sample {
            outcome: Some(Outcome::Ok),
            latency: Some(Duration::from_millis(ms)),
            e2e: Some(Duration::from_millis(ms + 1)),
            ..Sample::default()
        }
    }

    #[test]
    fn a_sample_ages_out_after_its_window_plus_at_most_one_bucket() {
        let t0 = 1_000 * MIN;
        let mut s = Series::default();
        s.record(t0, &ok(100));
        for (at, window, expected) in [
            (t0, 900, 1),
            (t0 + 15 * MIN - 1, 900, 1),
            (t0 + 16 * MIN, 900, 0),
            (t0 + 59 * MIN, 3600, 1),
            (t0 + 61 * MIN, 3600, 0),
            (t0 + 23 * 60 * MIN, 86_400, 1),
            (t0 + 25 * 60 * MIN, 86_400, 0),
            (t0 + 6 * 24 * 60 * MIN, 604_800, 1),
            (t0 + 7 * 24 * 60 * MIN + 61 * MIN, 604_800, 0),
        ] {
            assert_eq!(
                s.counts(at, window).requests,
                expected,
                "at +{} min, window {window}",
                (at - t0) / MIN
            );
        }
    }

    #[test]
    fn memory_stays_bounded_over_a_week_of_traffic() {
        let mut s = Series::default();
        let mut rng = fastrand::Rng::with_seed(3);
        // Two samples a minute for eight days, latencies spread over 4 octaves.
        for minute in 0..(8 * 24 * 60u64) {
            for _ in 0..2 {
                s.record(minute * MIN, &ok(200 + rng.u64(..3000)));
            }
        }
        let buckets: usize = s.rings.iter().map(|r| r.buckets.len()).sum();
        assert!(buckets <= MAX_BUCKETS, "{buckets} buckets");
        assert!(s.heap_bytes() < MAX_BUCKETS * (std::mem::size_of::<Bucket>() + 3 * BINS * 8));
    }
}

#[cfg(test)]
mod recent_tests {
    use super::*;

    fn attempt(s: &mut Series, at_ms: u64, outcome: Outcome) {
        s.record(
            at_ms,
            &Sample {
                outcome: Some(outcome),
                ..Sample::default()
            },
        );
    }

    #[test]
    fn recent_counts_see_only_the_window_and_the_last_sixteen() {
        let mut s = Series::default();
        for i in 0..5 {
            attempt(&mut s, 1_000 + i, Outcome::Error);
        }
        // Rate limits and refusals say nothing of health.
        attempt(&mut s, 1_010, Outcome::RateLimited);
        let c = s.recent_counts(1_100, 60);
        assert_eq!((c.requests, c.ok, c.errors), (5, 0, 5));
        // A minute later they have aged out, though the minute ring still
        // holds them.
        assert_eq!(s.recent_counts(62_000, 60).requests, 0);
        assert_eq!(s.counts(62_000, 120).errors, 5);
        // Twenty successes: only the last sixteen attempts are kept.
        for i in 0..20 {
            attempt(&mut s, 2_000 + i, Outcome::Ok);
        }
        let c = s.recent_counts(2_100, 60);
        assert_eq!((c.requests, c.ok), (16, 16));
        attempt(&mut s, 2_200, Outcome::Broken);
        assert_eq!(s.recent_counts(2_300, 60).errors, 1);
    }
}
