//! Health of provider accounts and models, as routing uses it: circuit
//! breakers per (account, model), and the feature-uptime rule (seed 001: a
//! candidate whose success rate for a feature the request needs is below 90 %
//! over the window is excluded for requests needing that feature).
//!
//! Active health checks (a one-token completion per model on a timer) are run
//! by the executor, which owns the adapters: see `route::probe`.

mod breaker;

pub use breaker::{BreakerSettings, Breakers, CircuitState, Ticket, Verdict};

use crate::metrics::Counts;

/// Whether feature counts over a window fall below the uptime threshold, with
/// enough attempts to judge.
pub fn feature_failing(counts: &Counts, threshold: f64, min_requests: u64) -> bool {
    counts.health_attempts() >= min_requests && counts.uptime().is_some_and(|u| u < threshold)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_uptime_needs_volume_and_a_low_rate() {
        let counts = |ok, errors| Counts {
            requests: ok + errors,
            ok,
            errors,
            ..Counts::default()
        };
        assert!(!feature_failing(&counts(0, 4), 0.9, 5), "too few attempts");
        assert!(feature_failing(&counts(0, 5), 0.9, 5));
        assert!(feature_failing(&counts(17, 3), 0.9, 5), "85 %");
        assert!(
            !feature_failing(&counts(18, 2), 0.9, 5),
            "90 % is not below"
        );
    }
}
