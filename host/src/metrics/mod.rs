//! Live metrics: what every attempt at a provider cost in time, tokens and
//! failures, kept per (account, model) and per (account, model, feature).
//!
//! - [`MetricStore`] records attempts into time buckets ([`series`]) with
//!   mergeable histograms ([`histogram`]), so any `pNN` over any window from
//!   15 minutes to 7 days is computed without keeping samples.
//! - [`Snapshot`] is the store as of a request's arrival: the
//!   [`MetricSource`] a routing policy reads through `host.metric`.
//! - [`crate::telemetry`] is what operators read: Prometheus counters and
//!   histograms, per-policy statistics.
//!
//! This module also owns the vocabulary of metric names and windows (seed 001).

pub mod clock;
pub mod histogram;
pub mod series;
mod store;
mod window;

pub use clock::{Clock, ManualClock, SystemClock};
pub use series::{Counts, Outcome, Sample, Summary};
pub use store::{MetricStore, Snapshot};
pub use window::{MAX_WINDOW_SECS, MIN_WINDOW_SECS, WindowError, parse_window};

/// Position of each id: read per candidate on every request (metrics,
/// breakers), so hashed with foldhash rather than SipHash (the ids are the
/// config's own, not attacker-chosen).
pub(crate) type IdIndex = std::collections::HashMap<String, usize, foldhash::fast::RandomState>;

/// Distinct ids in first-seen order, and each id's position: the keys of
/// per-(account, model) state that is fixed at start-up.
pub(crate) fn index_ids(ids: impl IntoIterator<Item = String>) -> (IdIndex, Vec<String>) {
    let mut index = IdIndex::default();
    let mut list = Vec::new();
    for id in ids {
        if !index.contains_key(&id) {
            index.insert(id.clone(), list.len());
            list.push(id);
        }
    }
    (index, list)
}

/// Read-only view of metric values for the candidates of one decision.
pub trait MetricSource: Send + Sync {
    /// Value of metric `name` (e.g. `p95_latency`, `uptime`) for candidate
    /// `candidate` (its `account/model` id) over the last `window_secs`
    /// seconds; `None` when there is no data.
    fn metric(&self, candidate: &str, name: &str, window_secs: u32) -> Option<f64>;

    /// The same metric for several candidates, appended to `out` in order
    /// (NaN for no data). A source may read them faster together than one
    /// by one.
    fn metric_each(&self, candidates: &[String], name: &str, window_secs: u32, out: &mut Vec<f64>) {
        out.extend(
            candidates
                .iter()
                .map(|c| self.metric(c, name, window_secs).unwrap_or(f64::NAN)),
        );
    }
}

/// A source with no data at all: every metric is absent.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMetrics;

impl MetricSource for NoMetrics {
    fn metric(&self, _candidate: &str, _name: &str, _window_secs: u32) -> Option<f64> {
        None
    }
}

/// Whether `name` is a live metric a source can answer (as opposed to the static
/// sort keys `cost` and `performance`, or a typo).
pub fn is_live_metric(name: &str) -> bool {
    const PLAIN: &[&str] = &[
        "avg_latency",
        "min_latency",
        "max_latency",
        "avg_e2e_latency",
        "min_e2e_latency",
        "max_e2e_latency",
        "avg_ttft",
        "min_ttft",
        "max_ttft",
        "uptime",
        "throughput",
        "total_requests",
        "input_tokens",
        "output_tokens",
        "total_tokens",
    ];
    if PLAIN.contains(&name) {
        return true;
    }
    let Some(rest) = name.strip_prefix('p') else {
        return false;
    };
    let Some((digits, kind)) = rest.split_once('_') else {
        return false;
    };
    matches!(kind, "latency" | "e2e_latency" | "ttft")
        && !digits.is_empty()
        && digits.len() <= 3
        && digits.bytes().all(|b| b.is_ascii_digit())
        && digits.parse::<u32>().is_ok_and(|n| n <= 100)
}

/// Whether `name` is a valid sort metric for `routing.metric`.
pub fn is_sort_metric(name: &str) -> bool {
    name == "cost" || name == "performance" || is_live_metric(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_from_seed_are_recognised() {
        for name in [
            "avg_latency",
            "p0_latency",
            "p50_latency",
            "p99_latency",
            "p100_latency",
            "p95_e2e_latency",
            "max_e2e_latency",
            "p90_ttft",
            "uptime",
            "throughput",
            "total_requests",
            "input_tokens",
            "output_tokens",
            "total_tokens",
        ] {
            assert!(is_live_metric(name), "{name}");
        }
        for name in ["cost", "performance"] {
            assert!(!is_live_metric(name) && is_sort_metric(name), "{name}");
        }
        for name in [
            "p101_latency",
            "p_latency",
            "pxx_latency",
            "p50_speed",
            "latency",
            "",
        ] {
            assert!(!is_sort_metric(name), "{name}");
        }
    }
}
