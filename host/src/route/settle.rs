//! Settlement: what a served answer owes once its usage is known — tokens in
//! the live metrics and the telemetry, its cost, the spend ledger and budget
//! counters, the rate limiter's estimate corrected with the real token count,
//! and, for a stream, its attempt's outcome: recorded once, when it ends
//! (complete, or broken after content: a failure for uptime and the breaker).
//!
//! One [`Settlement`] per served answer, settled exactly once: inline for a
//! whole answer, when a stream ends, or (for a stream the caller abandoned)
//! when the relay holding it is dropped — the same call in every case.

use std::sync::Arc;

use switchyard_wire::Usage;

use std::time::Duration;

use crate::health::{Breakers, Verdict};
use crate::metrics::{MetricStore, Outcome, Sample};
use crate::spend::Charge;
use crate::telemetry::Telemetry;

/// What a served answer owes, waiting for its usage.
pub struct Settlement {
    pub(super) metrics: Arc<MetricStore>,
    pub(super) telemetry: Arc<Telemetry>,
    pub(super) breakers: Arc<Breakers>,
    pub(super) candidate: String,
    /// The features the serving attempt sent.
    pub(super) features: switchyard_wire::FeatureSet,
    /// Whether the answer streams. A whole answer's tokens were recorded
    /// with its attempt, and its cost with the request; a stream's are only
    /// known at its end, so they are recorded here.
    pub(super) streamed: bool,
    /// A stream served straight from its upstream: its attempt, recorded
    /// when the stream ends (`None`: a whole answer, recorded with its
    /// attempt).
    pub(super) stream_attempt: Option<StreamAttempt>,
    /// Spend, budgets and the limiter's correction; its team, account and
    /// model are the answer's labels here too.
    pub(super) charge: Charge,
}

/// A streamed attempt's first token, for the record made when it ends.
#[derive(Debug, Clone, Copy)]
pub struct StreamAttempt {
    /// Request sent → first content token.
    pub ttft: Duration,
    /// Gateway arrival → first content token.
    pub e2e: Duration,
    /// The attempt probed a half-open circuit: its end closes or reopens it,
    /// and a close is announced to the other replicas.
    pub probe: bool,
}

/// How an answer ended.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    /// Token usage: the provider's, or estimated from the text relayed when
    /// the stream broke before the provider reported it (`estimated`).
    pub usage: Option<Usage>,
    /// Its cost at the serving model's prices.
    pub cost_usd: Option<f64>,
    /// The upstream broke after content reached the caller.
    pub broken: bool,
    /// `usage` was estimated by the gateway, not reported by the provider.
    pub estimated: bool,
}

impl Settlement {
    /// Records everything the answer owes. Never waits: spend and limiter
    /// corrections run off the request path.
    pub fn settle(self, tally: Tally) {
        if let Some(first) = self.stream_attempt {
            self.record_stream_attempt(first, &tally);
        } else if let Some(usage) = tally.usage.as_ref().filter(|_| self.streamed) {
            // A whole answer streamed by the gateway: its attempt is recorded.
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
        let Charge {
            team,
            account: provider,
            model,
            ..
        } = &self.charge;
        if let Some(usage) = &tally.usage {
            if tally.estimated {
                self.telemetry.estimated_usage(provider, model);
            }
            self.telemetry.tokens(
                provider,
                model,
                usage.prompt_tokens,
                usage.completion_tokens,
            );
        }
        if let Some(cost) = tally.cost_usd.filter(|_| self.streamed) {
            self.telemetry.cost(team, provider, model, cost);
        }
        if let (Some(usage), Some(cost)) = (&tally.usage, tally.cost_usd) {
            self.charge.settle(usage, cost);
        }
    }

    /// A streamed attempt, once: its outcome (complete or broken), latency,
    /// time to first token and tokens in the live metrics and telemetry, and
    /// its verdict on the breaker.
    fn record_stream_attempt(&self, first: StreamAttempt, tally: &Tally) {
        let outcome = if tally.broken {
            Outcome::Broken
        } else {
            Outcome::Ok
        };
        let usage = tally.usage.filter(|_| !tally.estimated);
        self.metrics.record(
            &self.candidate,
            self.features,
            &Sample {
                outcome: Some(outcome),
                latency: Some(first.ttft),
                e2e: Some(first.e2e),
                ttft: Some(first.ttft),
                input_tokens: usage.map(|u| u.prompt_tokens),
                output_tokens: usage.map(|u| u.completion_tokens),
            },
        );
        let (provider, model) = (&self.charge.account, &self.charge.model);
        self.telemetry.attempt(
            provider,
            model,
            outcome.name(),
            Some(first.ttft),
            Some(first.ttft),
        );
        let verdict = if tally.broken {
            self.telemetry.stream_break(provider, model);
            Verdict::Failure
        } else {
            Verdict::Success
        };
        self.breakers.record(&self.candidate, verdict);
        // A probe that closed the circuit tells the other replicas.
        if first.probe
            && verdict == Verdict::Success
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let (state, id) = (self.charge.state.clone(), self.candidate.clone());
            handle.spawn(async move { state.clear_circuit(&id).await });
        }
    }
}
