//! Attempts: the plan's attempts in order, one upstream call each, failing
//! over on retryable errors, timeouts and streams that die before their first
//! content token, with backoff, cooldowns and the account's own rate limit.
//! A served answer leaves with its [`Settlement`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard_wire::candidate::CandidateRef;
use switchyard_wire::chunk::Chunk;
use switchyard_wire::completion::Completion;
use switchyard_wire::feature as features;
use switchyard_wire::{ErrorClass, UpstreamError, Usage};
use switchyard_wire::{Feature, FeatureSet};

use crate::catalog::Model;
use crate::config::{ProviderAccount, Team};
use crate::health::Ticket;
use crate::health::{CircuitState, Verdict};
use crate::metrics::{Outcome, Sample};
use crate::policy::{Candidate, Notes, PlannedAttempt, RoutePlan};
use crate::providers::{ChatCall, ChatResponse, ChunkStream, Malformed};
use crate::spend::Charge;
use crate::state::{Admission, Admitted, CooldownKind, LimitKey, now_ms};

use super::admission::over_limit;
use super::rescue::Rescuer;
use super::settle::{Settlement, StreamAttempt, Tally};
use super::{AttemptRecord, Executor, RouteError, RouteInfo, RouteRequest, Served, stream};
use crate::directory::DirectoryEntry;
use crate::errors::RoutingCode;
use crate::telemetry::LimitScope;

impl Executor {
    fn backoff(&self, failures: u32) -> Duration {
        let routing = &self.config.routing;
        let exp = routing
            .backoff_base
            .saturating_mul(1u32 << failures.min(10))
            .min(routing.backoff_max);
        // Full jitter: anywhere between half and the whole step.
        exp.mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    /// Starts an account's cooldown (shared with the other replicas).
    pub(super) async fn cool_down(&self, account: &str, kind: CooldownKind, wait: Duration) {
        self.telemetry.cooldown(account, kind.name());
        let until_ms = now_ms().saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
        self.state
            .set_cooldown(account, crate::state::Cooldown { kind, until_ms })
            .await;
    }

    /// Runs the plan's attempts in order until one answers; the caller's
    /// error (with the attempt trail) if none does.
    pub(super) async fn attempt(
        self: &Arc<Self>,
        entry: &Arc<DirectoryEntry>,
        req: &RouteRequest,
        cx: &Context<'_>,
        candidates: &[Candidate],
        accounts: &[&ProviderAccount],
        plan: &RoutePlan,
    ) -> Result<Served, RouteError> {
        let mut failover = Failover::default();
        for (at, attempt) in plan.attempts.iter().enumerate() {
            let index = attempt.candidate;
            let (Some(candidate), Some(&account)) = (candidates.get(index), accounts.get(index))
            else {
                continue; // validated by the runtime; unreachable in practice
            };
            let Some(model) = self.config.catalog.get(&candidate.model) else {
                continue;
            };
            let Some(provider) = self.providers.get(&account.name) else {
                continue;
            };
            // A model whose window the request overflowed, or one no larger:
            // never sent the same request again.
            if let Some(window) = failover.overflowed
                && model.context_window <= window
            {
                failover.skip(
                    account,
                    candidate,
                    "context_length_exceeded",
                    format!(
                        "the request overflowed a {window}-token window; {} has {}",
                        candidate.model, model.context_window
                    ),
                );
                continue;
            }
            // The candidate's first call, then its retries (as many as the
            // plan asks for this attempt, else the gateway's setting).
            let retry_limit = attempt
                .retries
                .map_or(self.config.routing.retries_per_candidate, u32::from);
            let mut retries = 0;
            loop {
                let retrying = retries > 0;
                let Some((ticket, admitted)) = self
                    .gate(&mut failover, cx, account, candidate, retrying)
                    .await
                else {
                    break;
                };
                if failover.backs_off() && !retrying {
                    tokio::time::sleep(self.backoff(failover.failures - 1)).await;
                }
                let (chat, sent) = self.call(req, cx, attempt, account, candidate);
                let started = Instant::now();
                let result = send(provider.as_ref(), chat).await;
                let latency = started.elapsed();
                match result {
                    Ok(answer) => {
                        let probe = ticket.is_probe();
                        if let Answer::Stream(..) = answer {
                            // A stream's verdict waits for its end: complete
                            // or broken, recorded once (see settle).
                            ticket.finish(Verdict::Neutral);
                        } else {
                            ticket.finish(Verdict::Success);
                            // A probe that closed the circuit tells the other replicas.
                            if probe {
                                self.state.clear_circuit(&candidate.id).await;
                            }
                        }
                        let winner = Winner {
                            entry,
                            req,
                            cx,
                            plan,
                            at,
                            attempt,
                            account,
                            candidate,
                            model,
                            candidates,
                            probe,
                        };
                        return Ok(self.served(
                            &winner,
                            answer,
                            failover.trail,
                            sent,
                            latency,
                            admitted,
                        ));
                    }
                    Err(error) => {
                        self.call_failed(account, candidate, &sent, &error, ticket)
                            .await;
                        let wait = self.retry_wait(&error, retries, retry_limit, cx.arrival);
                        if error.class == ErrorClass::ContextLength {
                            failover.overflowed = Some(
                                failover
                                    .overflowed
                                    .map_or(model.context_window, |w| w.max(model.context_window)),
                            );
                        }
                        self.failed(&mut failover, account, candidate, error, latency)
                            .await?;
                        // The same candidate again, after a short wait, before
                        // the plan moves on.
                        let Some(wait) = wait else { break };
                        retries += 1;
                        if let Some(last) = failover.trail.last_mut() {
                            last.retry_after_ms =
                                Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
                        }
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        Err(failover.into_error(self.config.routing.rate_limit_cooldown))
    }

    /// How long to wait before calling the same candidate again after it
    /// failed with `error`, or `None` to move on: 5xx (and error events in a
    /// stream before content) and broken connections
    /// after a jittered backoff, a 429 after its `retry-after` when that is
    /// short (else a jittered 0.5–1 s), within `routing.retries_per_candidate`
    /// and `routing.retry_deadline_ms` of the request's arrival. Timeouts move
    /// on (waiting again would double the wait), as do refusals and exhausted
    /// quotas.
    fn retry_wait(
        &self,
        error: &UpstreamError,
        retries: u32,
        limit: u32,
        arrival: Instant,
    ) -> Option<Duration> {
        let routing = &self.config.routing;
        if retries >= limit {
            return None;
        }
        // A redirect or another odd status will answer the same again.
        let server_side = error.status.is_none_or(|s| s == 200 || s >= 500);
        let wait = match &error.class {
            ErrorClass::Retryable if server_side => self.backoff(retries),
            ErrorClass::Connect => self.backoff(retries),
            ErrorClass::RateLimited {
                retry_after: Some(after),
            } => {
                if *after > routing.max_retry_wait {
                    return None;
                }
                *after
            }
            ErrorClass::RateLimited { retry_after: None } => {
                Duration::from_millis(500).mul_f64(1.0 + fastrand::f64())
            }
            _ => return None,
        };
        (arrival.elapsed() + wait <= routing.retry_deadline).then_some(wait)
    }

    /// Whether `candidate` may be attempted now: its account not cooling
    /// down, its circuit letting a call through, its account's own RPM/TPM
    /// with room. A candidate that may not is skipped (and said so in the
    /// trail); one that may gets its breaker ticket and limiter admission.
    /// A retry of this request's own call (`retrying`) is not held back by
    /// the cooldown its failure started: it waited for it.
    pub(super) async fn gate<'b>(
        &'b self,
        failover: &mut Failover,
        cx: &Context<'_>,
        account: &ProviderAccount,
        candidate: &Candidate,
        retrying: bool,
    ) -> Option<(Ticket<'b>, Option<Admitted>)> {
        // An earlier attempt of this very request may have put the account
        // in cooldown (429 with retry-after, 402).
        if let Some((kind, wait)) = self
            .state
            .local_cooldown(&account.name)
            .filter(|_| !retrying)
        {
            failover.skip(
                account,
                candidate,
                "cooldown",
                format!("account cooling down for {} ms", wait.as_millis()),
            );
            if kind == CooldownKind::RateLimited {
                failover.retry_after(wait);
            } else {
                failover.all_rate_limited = false;
            }
            return None;
        }
        // Its circuit may have opened since the candidates were built (an
        // earlier attempt of this or another request), or its half-open
        // probe slot may be taken.
        let Some(ticket) = self.breakers.begin(&candidate.id) else {
            failover.skip(
                account,
                candidate,
                "circuit_open",
                "circuit breaker open after recent failures".into(),
            );
            failover.all_rate_limited = false;
            return None;
        };
        // The account's own RPM/TPM: a candidate without room is not
        // attempted; the request moves on, and the limiter says when
        // room frees up.
        if !account.limits.any() {
            return Some((ticket, None));
        }
        let key = LimitKey::account(&account.name, account.limits);
        match self.state.acquire(&key, 1, cx.estimated_tokens).await {
            Admission::Admitted(a) => Some((ticket, Some(a))),
            Admission::Denied {
                limit,
                used,
                cap,
                retry_after,
            } => {
                drop(ticket);
                self.telemetry
                    .limiter_rejection(LimitScope::Account, &account.name, limit);
                failover.skip(
                    account,
                    candidate,
                    "limit_reached",
                    over_limit(&account.name, limit, used, cap, retry_after),
                );
                failover.retry_after(retry_after);
                None
            }
        }
    }

    /// The upstream call an attempt makes: the request with the plan's
    /// features stripped and the provider's model id, and its time limits.
    pub(super) fn call(
        &self,
        req: &RouteRequest,
        cx: &Context<'_>,
        attempt: &PlannedAttempt,
        account: &ProviderAccount,
        candidate: &Candidate,
    ) -> (ChatCall, Sent) {
        let stripped = FeatureSet::from_names(&attempt.strip);
        let mut body = Arc::clone(&req.body);
        for feature in stripped.iter() {
            features::strip(Arc::make_mut(&mut body), feature);
        }
        let sent_features = cx.features.difference(stripped);
        let model = account
            .upstream_model(&self.config.catalog, &candidate.model)
            .to_string();
        let stream_upstream = req.stream && !stripped.contains(Feature::Stream);
        let timeout = attempt
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms)))
            .unwrap_or(account.timeout);
        let call_timeout = if stream_upstream {
            timeout.min(self.config.routing.first_token_timeout)
        } else {
            timeout
        };
        let on_malformed = stream_upstream.then(|| {
            let telemetry = self.telemetry.clone();
            let (provider, model) = (account.name.clone(), candidate.model.clone());
            Malformed(Arc::new(move || {
                telemetry.malformed_event(&provider, &model);
            }))
        });
        let chat = ChatCall {
            body,
            model,
            stream: stream_upstream,
            timeout: call_timeout,
            api: req.api,
            on_malformed,
        };
        (
            chat,
            Sent {
                features: sent_features,
                timeout,
            },
        )
    }

    /// A served answer: recorded as the attempt that served (a stream when
    /// it ends), settled (a whole answer at once, a stream when it ends),
    /// with the routing info. A stream can be rescued by the plan's later
    /// attempts if it breaks after content.
    fn served(
        self: &Arc<Self>,
        w: &Winner<'_>,
        answer: Answer,
        mut trail: Vec<AttemptRecord>,
        sent: Sent,
        latency: Duration,
        admitted: Option<Admitted>,
    ) -> Served {
        let (req, cx, account, candidate) = (w.req, w.cx, w.account, w.candidate);
        let upstream_stream = matches!(answer, Answer::Stream(..));
        if let Answer::Complete(_, usage) = &answer {
            self.record_attempt(
                &candidate.id,
                sent.features,
                Sample {
                    outcome: Some(Outcome::Ok),
                    latency: Some(latency),
                    e2e: Some(cx.arrival.elapsed()),
                    ttft: None,
                    input_tokens: Some(usage.prompt_tokens),
                    output_tokens: Some(usage.completion_tokens),
                },
            );
        }
        trail.push(AttemptRecord {
            provider: account.name.clone(),
            model: candidate.model.clone(),
            status: Some(200),
            reason: "ok".into(),
            message: None,
            retry_after_ms: None,
            latency_ms: Some(crate::request_log::millis(latency)),
        });
        let mut info = RouteInfo {
            provider: account.name.clone(),
            model: candidate.model.clone(),
            attempts: trail.len(),
            stripped: w.attempt.strip.clone(),
            label: w.plan.label.clone(),
            score: cx.notes.score,
            explanation: cx.notes.explanation.clone(),
            trail,
            cost_usd: None,
            logical_model: req.logical_model.clone(),
            usage: None,
        };
        let settlement = self.settlement(
            cx.team,
            account,
            candidate,
            &w.plan.label,
            sent.features,
            req.stream,
            admitted
                .into_iter()
                .chain(cx.team_admission.clone())
                .collect(),
            upstream_stream.then(|| StreamAttempt {
                ttft: latency,
                e2e: cx.arrival.elapsed(),
                probe: w.probe,
            }),
        );
        let (head, rest) = match answer {
            Answer::Complete(mut body, usage) if !req.stream => {
                let cost = w.model.cost(&usage);
                info.cost_usd = Some(cost);
                info.usage = Some(usage);
                settlement.settle(Tally {
                    usage: Some(usage),
                    cost_usd: Some(cost),
                    ..Tally::default()
                });
                body.set_routing(&info);
                return Served::Complete { body, info };
            }
            // Streaming was stripped: stream the whole answer ourselves.
            Answer::Complete(body, usage) => (
                Vec::new(),
                stream::from_completion(body.into_value(), usage),
            ),
            Answer::Stream(head, rest) => (head, rest),
        };
        let idle_timeout = sent.timeout.min(self.config.routing.stream_idle_timeout);
        let rescuer = (upstream_stream && self.config.routing.stream_rescue)
            .then(|| {
                let later: std::collections::VecDeque<_> = w.plan.attempts[w.at + 1..]
                    .iter()
                    .filter_map(|a| Some((a.clone(), w.candidates.get(a.candidate)?.clone())))
                    .collect();
                (!later.is_empty()).then(|| Rescuer {
                    executor: Arc::clone(self),
                    entry: Arc::clone(w.entry),
                    req: req.clone(),
                    later,
                    features: cx.features,
                    estimated_tokens: cx.estimated_tokens,
                    arrival: cx.arrival,
                    label: w.plan.label.clone(),
                    idle_timeout,
                })
            })
            .flatten();
        let routing = match json!(info) {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        let events = stream::relay(
            routing,
            head,
            rest,
            w.model.clone(),
            idle_timeout,
            settlement,
            rescuer,
            cx.stream_report.clone(),
        );
        Served::Stream { info, events }
    }

    /// What a served answer will owe, for its account, model and label.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn settlement(
        &self,
        team: &Team,
        account: &ProviderAccount,
        candidate: &Candidate,
        label: &str,
        features: FeatureSet,
        streamed: bool,
        admitted: Vec<Admitted>,
        stream_attempt: Option<StreamAttempt>,
    ) -> Settlement {
        let charge = Charge {
            spending: self.spending.clone(),
            state: self.state.clone(),
            team: team.name.clone(),
            account: account.name.clone(),
            model: candidate.model.clone(),
            label: label.to_owned(),
            baseline: crate::spend::baseline_model(&self.config, team)
                .map(crate::catalog::Model::rates),
            admitted,
        };
        Settlement {
            metrics: self.metrics.clone(),
            telemetry: self.telemetry.clone(),
            breakers: self.breakers.clone(),
            candidate: candidate.id.clone(),
            features,
            streamed,
            stream_attempt,
            charge,
        }
    }

    /// The cooldown a failed call starts for its account: a 429 for its
    /// `retry-after` (else `rate_limit_cooldown`), a 402 for
    /// `quota_cooldown`. The 429's wait, when it was one.
    pub(super) async fn cool_down_after(
        &self,
        account: &ProviderAccount,
        error: &UpstreamError,
    ) -> Option<Duration> {
        match &error.class {
            ErrorClass::RateLimited { retry_after } => {
                let wait = retry_after.unwrap_or(self.config.routing.rate_limit_cooldown);
                self.cool_down(&account.name, CooldownKind::RateLimited, wait)
                    .await;
                Some(wait)
            }
            ErrorClass::QuotaExhausted => {
                let wait = self.config.routing.quota_cooldown;
                self.cool_down(&account.name, CooldownKind::Quota, wait)
                    .await;
                None
            }
            _ => None,
        }
    }

    /// What a failed call tells the health records: its verdict on the
    /// breaker (a circuit it opened announced to the other replicas), its
    /// outcome in the live metrics and telemetry, a log line.
    pub(super) async fn call_failed(
        &self,
        account: &ProviderAccount,
        candidate: &Candidate,
        sent: &Sent,
        error: &UpstreamError,
        ticket: Ticket<'_>,
    ) {
        tracing::warn!(provider = %account.name, model = %candidate.model, class = error.class.name(), status = ?error.status, error = %error.message, "attempt failed");
        let (outcome, verdict) = failure_kind(&error.class);
        ticket.finish(verdict);
        if verdict == Verdict::Failure
            && let CircuitState::Open { retry_in } = self.breakers.state(&candidate.id)
        {
            let until = now_ms().saturating_add(u64::try_from(retry_in.as_millis()).unwrap_or(0));
            self.state.set_circuit_open(&candidate.id, until).await;
        }
        self.record_attempt(
            &candidate.id,
            sent.features,
            Sample {
                outcome: Some(outcome),
                ..Sample::default()
            },
        );
    }

    /// The bookkeeping of a failed attempt: cooldowns for rate limits and
    /// exhausted quotas, the trail; the caller's error at once when the
    /// provider refused the request itself (never retried).
    async fn failed(
        &self,
        failover: &mut Failover,
        account: &ProviderAccount,
        candidate: &Candidate,
        error: UpstreamError,
        latency: Duration,
    ) -> Result<(), RouteError> {
        failover.trail.push(AttemptRecord {
            provider: account.name.clone(),
            model: candidate.model.clone(),
            status: error.status,
            reason: error.class.name().into(),
            message: Some(error.message.clone()),
            retry_after_ms: None,
            latency_ms: Some(crate::request_log::millis(latency)),
        });
        match self.cool_down_after(account, &error).await {
            Some(wait) => failover.retry_after(wait),
            None => failover.all_rate_limited = false,
        }
        if !error.class.fails_over() {
            // The caller's request is at fault: never retried.
            let mut e = RouteError::new(
                RoutingCode::UpstreamRejectedRequest,
                format!("{} rejected the request: {}", account.name, error.message),
            );
            e.status = error.status.unwrap_or(400);
            e.trail = std::mem::take(&mut failover.trail);
            return Err(e);
        }
        failover.failures += 1;
        failover.last_error = Some(error);
        Ok(())
    }

    /// Records one attempt in the live metrics and the telemetry.
    pub(super) fn record_attempt(&self, id: &str, features: FeatureSet, sample: Sample) {
        self.metrics.record(id, features, &sample);
        let c = CandidateRef::lenient(id);
        self.telemetry.attempt(
            c.account,
            c.model,
            sample.outcome.map_or("ok", Outcome::name),
            // Only successful attempts carry a latency.
            sample.latency,
            sample.ttft,
        );
    }
}

/// What the attempts of one request share.
pub(super) struct Context<'a> {
    pub(super) team: &'a Team,
    pub(super) arrival: Instant,
    /// Features the request needs (before any stripping).
    pub(super) features: FeatureSet,
    /// Input tokens estimated before the call, counted against TPM limits.
    pub(super) estimated_tokens: u64,
    /// Where the team's rate limit counted this request.
    pub(super) team_admission: Option<crate::state::Admitted>,
    /// What the policy said of its plan beyond the attempts (0.2).
    pub(super) notes: Notes,
    /// Where a stream reports what it used, for the request log.
    pub(super) stream_report: Option<stream::StreamReport>,
}

/// How a failed attempt counts: its outcome for the metrics, its verdict for
/// the circuit breaker.
pub(super) fn failure_kind(class: &ErrorClass) -> (Outcome, Verdict) {
    match class {
        // The request's length, not the provider's health.
        ErrorClass::ContextLength => (Outcome::Rejected, Verdict::Neutral),
        ErrorClass::RateLimited { .. } | ErrorClass::QuotaExhausted => {
            (Outcome::RateLimited, Verdict::Neutral)
        }
        ErrorClass::Timeout => (Outcome::Timeout, Verdict::Failure),
        class if !class.fails_over() => (Outcome::Rejected, Verdict::Neutral),
        _ => (Outcome::Error, Verdict::Failure),
    }
}

pub(super) enum Answer {
    Complete(Completion, Usage),
    Stream(Vec<Chunk>, ChunkStream),
}

/// What the attempts of one request have gathered so far, for the error the
/// caller gets if none answers.
pub(super) struct Failover {
    pub(super) trail: Vec<AttemptRecord>,
    last_error: Option<UpstreamError>,
    /// Attempts that were made and failed.
    failures: u32,
    /// Every candidate tried or skipped was rate limited (so far).
    all_rate_limited: bool,
    /// The soonest a rate-limited candidate has room again.
    soonest_retry: Option<Duration>,
    /// The largest context window the request overflowed.
    overflowed: Option<u32>,
}

impl Default for Failover {
    fn default() -> Self {
        Self {
            trail: Vec::new(),
            last_error: None,
            failures: 0,
            all_rate_limited: true,
            soonest_retry: None,
            overflowed: None,
        }
    }
}

impl Failover {
    /// A candidate skipped without a call, and why.
    fn skip(
        &mut self,
        account: &ProviderAccount,
        candidate: &Candidate,
        reason: &str,
        message: String,
    ) {
        self.trail.push(AttemptRecord {
            provider: account.name.clone(),
            model: candidate.model.clone(),
            status: None,
            reason: reason.into(),
            message: Some(message),
            retry_after_ms: None,
            latency_ms: None,
        });
    }

    /// A rate-limited candidate has room again after `wait`.
    fn retry_after(&mut self, wait: Duration) {
        self.soonest_retry = Some(self.soonest_retry.map_or(wait, |s| s.min(wait)));
    }

    /// Whether the next call waits first: the last one failed in a way a
    /// pause may cure (a server error, a timeout, a broken connection).
    fn backs_off(&self) -> bool {
        self.failures > 0
            && matches!(
                self.last_error.as_ref().map(|e| &e.class),
                Some(ErrorClass::Retryable | ErrorClass::Timeout | ErrorClass::Connect)
            )
    }

    /// The caller's error when no attempt answered: 429 when every
    /// candidate was rate limited, else 424 naming the last failure.
    fn into_error(self, rate_limit_cooldown: Duration) -> RouteError {
        let last = self.trail.last();
        // Too long for every model tried, and no larger one in the plan: the
        // caller's to shorten, with the provider's words.
        if let Some(window) = self.overflowed
            && last.is_some_and(|a| a.reason == "context_length_exceeded")
        {
            let said = self
                .trail
                .iter()
                .rev()
                .find(|a| a.status.is_some() && a.reason == "context_length_exceeded")
                .and_then(|a| a.message.clone())
                .unwrap_or_default();
            let mut e = RouteError::new(
                RoutingCode::ContextLengthExceeded,
                format!(
                    "the request is longer than the context window of every model that could take it (largest tried: {window} tokens): {said}"
                ),
            );
            e.param = Some("messages".into());
            e.trail = self.trail;
            return e;
        }
        if self.all_rate_limited && !self.trail.is_empty() {
            let mut e = RouteError::new(
                RoutingCode::AllProvidersRateLimited,
                format!(
                    "every provider for this request is rate limited; last: {}",
                    last.map(describe_attempt).unwrap_or_default()
                ),
            );
            e.retry_after = Some(self.soonest_retry.unwrap_or(rate_limit_cooldown));
            e.trail = self.trail;
            return e;
        }
        let mut e = RouteError::new(
            RoutingCode::AllProvidersFailed,
            format!(
                "all {} attempts failed; last: {}",
                self.trail.len(),
                last.map(describe_attempt)
                    .unwrap_or_else(|| "no attempt could be made".into())
            ),
        );
        e.trail = self.trail;
        e
    }
}

/// The attempt that answered, and what it answered for.
struct Winner<'a> {
    entry: &'a Arc<DirectoryEntry>,
    req: &'a RouteRequest,
    cx: &'a Context<'a>,
    plan: &'a RoutePlan,
    /// The serving attempt's place in the plan.
    at: usize,
    attempt: &'a PlannedAttempt,
    account: &'a ProviderAccount,
    candidate: &'a Candidate,
    /// The serving model's catalog entry (its prices).
    model: &'a Model,
    /// Every candidate offered, for the plan's later attempts.
    candidates: &'a [Candidate],
    /// The serving attempt probed a half-open circuit.
    probe: bool,
}

/// What an attempt sent, for recording its outcome.
pub(super) struct Sent {
    /// The request's features minus those the plan stripped.
    pub(super) features: FeatureSet,
    /// The attempt's time limit; a stream's idle limit after its first token.
    pub(super) timeout: Duration,
}

/// Makes one upstream call within its time limit. A stream has answered once
/// its first content chunk arrives (everything read so far comes back with
/// it); until then it can still fail over with nothing sent to the caller.
pub(super) async fn send(
    provider: &dyn crate::providers::Provider,
    chat: ChatCall,
) -> Result<Answer, UpstreamError> {
    let call_timeout = chat.timeout;
    let deadline = tokio::time::Instant::from_std(Instant::now() + call_timeout);
    let result = match tokio::time::timeout_at(deadline, provider.chat(chat)).await {
        Ok(result) => result,
        Err(_) => Err(UpstreamError::new(
            ErrorClass::Timeout,
            None,
            format!("no response within {} ms", call_timeout.as_millis()),
        )),
    };
    match result? {
        ChatResponse::Stream(mut upstream) => {
            let head = first_content(&mut upstream, deadline, call_timeout).await?;
            Ok(Answer::Stream(head, upstream))
        }
        ChatResponse::Complete { body, usage } => Ok(Answer::Complete(body, usage)),
    }
}

fn describe_attempt(a: &AttemptRecord) -> String {
    let status = a.status.map(|s| format!(" {s}")).unwrap_or_default();
    format!(
        "{}/{} {}{}: {}",
        a.provider,
        a.model,
        a.reason,
        status,
        a.message.as_deref().unwrap_or("")
    )
}

/// Reads the upstream until its first content chunk (returning everything read
/// so far) — or fails, so the executor can try the next attempt with nothing
/// yet sent to the client.
async fn first_content(
    upstream: &mut ChunkStream,
    deadline: tokio::time::Instant,
    limit: Duration,
) -> Result<Vec<Chunk>, UpstreamError> {
    let mut head = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, upstream.next()).await {
            Err(_) => {
                return Err(UpstreamError::new(
                    ErrorClass::Timeout,
                    Some(200),
                    format!("stream sent no content within {} ms", limit.as_millis()),
                ));
            }
            Ok(None) => {
                // A stream that ends cleanly with only a finish reason (an empty
                // answer) is an answer; one that just stops is a failure.
                if head.iter().any(Chunk::finished) {
                    // The upstream has ended: the relay must not poll it again.
                    *upstream = Box::pin(futures_util::stream::empty());
                    return Ok(head);
                }
                return Err(UpstreamError::new(
                    ErrorClass::Connect,
                    Some(200),
                    "stream ended before any content",
                ));
            }
            Ok(Some(Err(e))) => return Err(e),
            Ok(Some(Ok(chunk))) => {
                let content = chunk.has_content();
                head.push(chunk);
                if content {
                    return Ok(head);
                }
            }
        }
    }
}
