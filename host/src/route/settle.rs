//! Settlement: what a served answer owes once its usage is known — tokens in
//! the live metrics and the telemetry, its cost, the spend ledger and budget
//! counters, the rate limiter's estimate corrected with the real token count,
//! and, for a stream that broke after content, a failure on the breaker.
//!
//! One [`Settlement`] per served answer, settled exactly once: inline for a
//! whole answer, when a stream ends, or (for a stream the caller abandoned)
//! when the relay holding it is dropped — the same call in every case.

use std::sync::Arc;

use switchyard_wire::Usage;

use crate::health::{Breakers, Verdict};
use crate::metrics::{MetricStore, Sample};
use crate::spend::Charge;
use crate::telemetry::Telemetry;

/// What a served answer owes, waiting for its usage.
pub struct Settlement {
    pub(super) metrics: Arc<MetricStore>,
    pub(super) telemetry: Arc<Telemetry>,
    pub(super) breakers: Arc<Breakers>,
    pub(super) team: String,
    pub(super) candidate: String,
    pub(super) provider: String,
    pub(super) model: String,
    /// The features the serving attempt sent.
    pub(super) features: switchyard_wire::FeatureSet,
    /// Whether the answer streams. A whole answer's tokens were recorded
    /// with its attempt, and its cost with the request; a stream's are only
    /// known at its end, so they are recorded here.
    pub(super) streamed: bool,
    /// Spend, budgets and the limiter's correction.
    pub(super) charge: Charge,
}

/// How an answer ended.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    /// Token usage, when the provider reported it.
    pub usage: Option<Usage>,
    /// Its cost at the serving model's prices.
    pub cost_usd: Option<f64>,
    /// The upstream broke after content reached the caller.
    pub broken: bool,
}

impl Settlement {
    /// Records everything the answer owes. Never waits: spend and limiter
    /// corrections run off the request path.
    pub fn settle(self, tally: Tally) {
        if let Some(usage) = &tally.usage {
            if self.streamed {
                self.metrics.record(
                    &self.candidate,
                    self.features,
                    &Sample {
                        input_tokens: Some(usage.prompt_tokens),
                        output_tokens: Some(usage.completion_tokens),
                        ..Sample::default()
                    },
                );
            }
            self.telemetry.tokens(
                &self.provider,
                &self.model,
                usage.prompt_tokens,
                usage.completion_tokens,
            );
        }
        if let Some(cost) = tally.cost_usd.filter(|_| self.streamed) {
            self.telemetry
                .cost(&self.team, &self.provider, &self.model, cost);
        }
        if let (Some(usage), Some(cost)) = (&tally.usage, tally.cost_usd) {
            self.charge.settle(usage, cost);
        }
        if tally.broken {
            self.metrics.record_broken(&self.candidate, self.features);
            self.breakers.record(&self.candidate, Verdict::Failure);
            self.telemetry.stream_break(&self.provider, &self.model);
        }
    }
}
