//! Active health checks: on a timer, each opted-in provider account gets a
//! minimal completion ("ping", one output token) per model it serves. Results
//! feed the live metrics (latency, uptime), the circuit breakers (a check acts
//! as the probe of a half-open circuit) and `switchyard_health_checks_total`.
//!
//! They cost tokens, so they are off by default for paid providers and on
//! (every 30 s) for `openai-compatible` servers; `health_check_interval_ms`
//! sets either.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_wire::CanonicalRequest;
use switchyard_wire::request::Message;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Executor;
use super::attempt::failure_kind;
use crate::config::ProviderKind;
use crate::health::Verdict;
use crate::metrics::{Outcome, Sample};
use crate::providers::{ChatCall, ChatResponse};

/// Longest a health check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

impl Executor {
    /// Checks one model of one account now, records the result and returns it.
    pub async fn health_check(&self, account: &str, slug: &str) -> Option<Outcome> {
        let account = self.config.providers.iter().find(|a| a.name == account)?;
        let provider = self.providers.get(&account.name)?;
        let id = format!("{}/{slug}", account.name);
        let mut body = CanonicalRequest {
            messages: vec![Message::text("user", "ping")],
            ..CanonicalRequest::default()
        };
        // OpenAI's reasoning models refuse `max_tokens` and need room to think.
        if account.kind == ProviderKind::Openai {
            body.max_completion_tokens = Some(16);
        } else {
            body.max_tokens = Some(1);
        }
        let timeout = account.timeout.min(CHECK_TIMEOUT);
        let call = ChatCall {
            body: Arc::new(body),
            model: account
                .upstream_model(&self.config.catalog, slug)
                .to_owned(),
            stream: false,
            on_malformed: None,
            timeout,
            api: Default::default(),
        };
        let started = Instant::now();
        let result = tokio::time::timeout(timeout, provider.chat(call)).await;
        let latency = started.elapsed();
        let (outcome, verdict) = match result {
            Ok(Ok(ChatResponse::Complete { .. } | ChatResponse::Stream(_))) => {
                (Outcome::Ok, Verdict::Success)
            }
            Err(_) => (Outcome::Timeout, Verdict::Failure),
            Ok(Err(e)) => {
                tracing::warn!(account = %account.name, model = slug, class = e.class.name(), error = %e.message, "health check failed");
                failure_kind(&e.class)
            }
        };
        self.metrics.record(
            &id,
            switchyard_wire::FeatureSet::EMPTY,
            &Sample {
                outcome: Some(outcome),
                latency: (outcome == Outcome::Ok).then_some(latency),
                ..Sample::default()
            },
        );
        self.breakers.record(&id, verdict);
        self.telemetry
            .health_check(&account.name, slug, outcome.name());
        Some(outcome)
    }
}

/// Starts one checking task per opted-in account; they stop when `stop`
/// turns true (or its sender is dropped).
pub fn spawn(executor: Arc<Executor>, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for account in &executor.config.providers {
        let Some(interval) = account.health_check_interval else {
            continue;
        };
        let executor = executor.clone();
        let mut stop = stop.clone();
        let name = account.name.clone();
        let models = account.models.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                // ±10 % jitter so replicas and accounts do not check in step.
                let wait = interval.mul_f64(0.9 + fastrand::f64() * 0.2);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.wait_for(|stopping| *stopping) => return,
                }
                for slug in &models {
                    let check = executor.health_check(&name, slug);
                    tokio::select! {
                        _ = check => {}
                        _ = stop.wait_for(|stopping| *stopping) => return,
                    }
                }
            }
        }));
    }
    tasks
}
