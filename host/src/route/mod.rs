//! The executor: a canonical request in, a served answer (or the caller's
//! error) out, in stages that each own one step and never call back:
//!
//! 1. **admission** ([`admission`]): what the shared state says (usage,
//!    budgets, cooldowns, circuits), the team's budget, and later the team's
//!    own rate limit;
//! 2. **candidates** ([`candidates`]): every (account, model) that may serve
//!    the request, after the hard filters (team allow-lists, `routing`
//!    options, ZDR, circuits, cooldowns, budgets); [`logical`] expands
//!    logical models;
//! 3. **decide** ([`decide`]): the team's policy, or the bundled default
//!    standing in for it, turns them into a checked plan;
//! 4. **attempts** ([`attempt`]): the plan's attempts in order, one upstream
//!    call each, failing over on retryable errors, timeouts and streams that
//!    die before their first content token;
//! 5. **settle** ([`settle`]): what the served answer owes — tokens, cost,
//!    spend, the limiter's correction — settled once, whether it streamed
//!    ([`stream`] relays a stream as canonical events) or not.
//!
//! Active health checks live in [`probe`].

mod admission;
mod attempt;
pub mod backup;
mod candidates;
mod decide;
mod error;
mod explain;
mod logical;
pub mod probe;
mod record;
mod rescue;
mod settle;
mod stream;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use switchyard_wire::candidate::CandidateRef;
use switchyard_wire::completion::Completion;
use switchyard_wire::feature as features;
use switchyard_wire::{Api, CanonicalRequest};

use crate::config::Config;
use crate::directory::DirectoryEntry;
use crate::health::Breakers;
use crate::metrics::{Clock, MetricStore};
use crate::policy::{Policy, WarmPool};
use crate::providers::Provider;
use crate::replay::shadow::ShadowRunner;
use crate::request_log::{Draft, Recorder, RequestLog};
use crate::spend::Spending;
use crate::state::{SharedState, now_ms};
use crate::telemetry::{RequestOutcome, RequestRecord, Telemetry};
use attempt::Context;
pub use candidates::RoutingOptions;
pub use error::RouteError;
pub use settle::{Settlement, Tally};
pub use stream::EventStream;

/// The canonical request: what the caller asked for, whichever of the three
/// APIs it came in on, parsed and validated by the API layer. Feature
/// detection, the plan's strip list and every provider adapter work on it.
#[derive(Debug, Clone)]
pub struct RouteRequest {
    /// The canonical body (its `routing` already read into `routing`),
    /// shared by every attempt: an attempt copies it only to strip a feature.
    pub body: Arc<CanonicalRequest>,
    pub model: String,
    pub routing: RoutingOptions,
    pub stream: bool,
    /// The API the request came in on.
    pub api: Api,
    pub step_type: Option<String>,
    pub purpose: Option<String>,
    pub metadata: Vec<(String, String)>,
    /// Input size in tokens, estimated from the messages, tools and images
    /// ([`CanonicalRequest::estimate_input_tokens`]): cost estimates, TPM
    /// limits, and the context-window filter of the candidates.
    pub estimated_input_tokens: u32,
    /// The logical model the caller named, once expanded into its targets
    /// (set by the executor, not the caller).
    pub logical_model: Option<String>,
}

/// One attempt of a request, as reported to the caller.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AttemptRecord {
    pub provider: String,
    pub model: String,
    /// HTTP status the provider answered, if it answered.
    pub status: Option<u16>,
    /// `ok`, or why it failed (`upstream_error`, `rate_limited`, `timeout`, ...).
    pub reason: String,
    /// The provider's message, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How long the gateway waited after this attempt before trying the same
    /// candidate again (a retry), when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// Call sent → answer (a stream's first content) or failure, in
    /// milliseconds; none for a candidate skipped without a call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
}

/// Which provider and model served a request, and how.
#[derive(Debug, Clone, Serialize)]
pub struct RouteInfo {
    pub provider: String,
    pub model: String,
    /// Attempts made, the serving one included.
    pub attempts: usize,
    /// Features removed from the request before it was sent.
    pub stripped: Vec<String>,
    /// The policy's label for the plan.
    pub label: String,
    /// The policy's score for its plan, when it gave one (0.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Why the policy ordered the plan so, when it said (0.2).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub explanation: Vec<String>,
    /// Every attempt in order.
    pub trail: Vec<AttemptRecord>,
    /// Cost in US dollars from the provider's reported usage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// The logical model the caller asked for, when it was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logical_model: Option<String>,
    /// The provider's usage of a whole answer (a stream's is known at its
    /// end), for the request log.
    #[serde(skip)]
    pub usage: Option<switchyard_wire::Usage>,
}

/// What a served request produced.
// Built once per request and moved straight into the response: boxing the
// larger variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Served {
    /// A whole `chat.completion` (with `switchyard` added).
    Complete { body: Completion, info: RouteInfo },
    /// A stream of canonical events; it settles the answer when it ends.
    Stream {
        info: RouteInfo,
        events: EventStream,
    },
}

/// Deadline of the bundled default policy's decisions. Its own code decides in
/// tens of microseconds; the deadline only guards against a bug of ours. Team
/// plugins keep the runtime's few milliseconds, because the default policy
/// stands behind them. Under 256 connections on 2 cores a default decision
/// once overran the 10 ms plugins get, while its thread was descheduled, and
/// that request failed.
const DEFAULT_POLICY_DEADLINE: Duration = Duration::from_millis(100);

/// How many threads may run a default-policy decision at once: the runtime's
/// worker threads, which decide inline. Sizes the default policy's warm pool.
fn decider_threads() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get())
}

/// Idle instances of the default policy kept per deciding thread. A 0.2
/// instance is configured for one team's setup at a time; with a few kept
/// per thread, teams taking turns mostly find one already configured for
/// them instead of re-running `configure` (which lowers the catalog).
const DEFAULT_INSTANCES_PER_THREAD: usize = 4;

/// The executor shared by every request.
pub struct Executor {
    config: Arc<Config>,
    /// Warm instances of the bundled default policy, shared by every team:
    /// it is our own code, and keeps nothing between calls but what
    /// `configure` gave it (the team's config and the catalog); a decision
    /// prefers an idle instance configured for its team.
    default: WarmPool,
    providers: HashMap<String, Arc<dyn Provider>>,
    /// Rate-limit counters, cooldowns, open circuits and budget counters,
    /// shared with other replicas through Redis when configured.
    state: Arc<SharedState>,
    spending: Arc<Spending>,
    metrics: Arc<MetricStore>,
    breakers: Arc<Breakers>,
    telemetry: Arc<Telemetry>,
    /// One record per request (docs/request-log.md).
    log: Arc<RequestLog>,
    /// Where the teams' shadow policies decide on finished requests.
    shadows: Arc<ShadowRunner>,
    /// Backup candidates tested on mirrored requests (`[[backups]]`).
    backups: Arc<backup::Backups>,
}

/// Where a request is in its life, for the counters and the request log.
struct Progress {
    label: Option<String>,
    /// The request's log record, filled in stage by stage (`None`: the log
    /// is off and no shadow decides on this request).
    record: Option<Draft>,
    /// Where a streamed answer reports what it used.
    stream_report: Option<stream::StreamReport>,
}

/// Counts a request whose caller went away before it was answered (its future
/// was dropped mid-flight), so no request goes uncounted.
struct Abandoned<'a> {
    telemetry: &'a Telemetry,
    team: &'a str,
    arrival: Instant,
    armed: bool,
}

impl Abandoned<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.telemetry.request(&RequestRecord {
                team: self.team,
                provider: "none",
                model: "none",
                outcome: RequestOutcome::ClientClosed,
                duration: self.arrival.elapsed(),
                label: None,
                fallback: false,
                cost_usd: None,
            });
        }
    }
}

impl Executor {
    /// An executor whose metric windows and circuit breakers read `clock`.
    pub fn new(
        config: Arc<Config>,
        policy: Policy,
        providers: HashMap<String, Arc<dyn Provider>>,
        clock: Arc<dyn Clock>,
        state: Arc<SharedState>,
        spending: Arc<Spending>,
        log: Arc<RequestLog>,
    ) -> Self {
        let ids: Vec<String> = config
            .providers
            .iter()
            .flat_map(|a| {
                a.models.iter().map(|m| {
                    CandidateRef {
                        account: &a.name,
                        model: m,
                    }
                    .key()
                })
            })
            .collect();
        let metrics = Arc::new(MetricStore::new(ids.clone(), clock.clone()));
        let shadows = Arc::new(ShadowRunner::start(
            config.plugins.shadow_queue,
            config.plugins.shadow_cpu_share,
            log.clone(),
            metrics.clone(),
        ));
        Self {
            backups: Arc::new(backup::Backups::new(&config.backups)),
            metrics,
            shadows,
            breakers: Arc::new(Breakers::new(
                config.routing.circuit_breaker.clone(),
                ids,
                clock,
            )),
            telemetry: Arc::new(Telemetry::default()),
            config,
            default: WarmPool::with_deadline(
                policy,
                decider_threads() * DEFAULT_INSTANCES_PER_THREAD,
                DEFAULT_POLICY_DEADLINE,
            ),
            providers,
            state,
            spending,
            log,
        }
    }

    /// Live metrics per (account, model) and feature (the edge keeps its own
    /// handle, taken once at start-up, as it does the breakers and counters).
    pub fn metrics(&self) -> &Arc<MetricStore> {
        &self.metrics
    }

    /// Circuit breakers per (account, model).
    pub fn breakers(&self) -> &Arc<Breakers> {
        &self.breakers
    }

    /// Counters for `/metrics`.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// The shadow backups and their checks.
    pub fn backups(&self) -> &Arc<backup::Backups> {
        &self.backups
    }

    /// Routes one request for `entry`, and counts and logs how it ended.
    pub async fn serve(
        self: &Arc<Self>,
        entry: &Arc<DirectoryEntry>,
        req: RouteRequest,
    ) -> Result<Served, RouteError> {
        let team = &entry.team;
        let arrival = Instant::now();
        // A shadow decides on this request once it is answered.
        // Where the record goes; none (and no record) with the log off and
        // no shadow deciding.
        let shadow = entry.shadow.as_ref().filter(|s| s.sampled()).cloned();
        let sink = (self.log.enabled() || shadow.is_some()).then(|| record::Sink {
            log: self.log.clone(),
            shadows: self.shadows.clone(),
            body: shadow
                .as_ref()
                .filter(|s| s.wants_content())
                .map(|_| req.body.clone()),
            shadow,
        });
        let record = sink.as_ref().map(|_| {
            let mut draft = Draft::new(
                now_ms(),
                team.name.clone(),
                req.model.clone(),
                record::api_name(req.api),
                req.stream,
            );
            if team.log_prompts {
                draft.prompt = Some(req.body.clone());
            }
            draft
        });
        let mut progress = Progress {
            label: None,
            // Only a stream reports its usage at its end.
            stream_report: record
                .as_ref()
                .filter(|_| req.stream)
                .map(|_| stream::StreamReport::default()),
            record,
        };
        let abandoned = Abandoned {
            telemetry: &self.telemetry,
            team: &team.name,
            arrival,
            armed: true,
        };
        // What a shadow backup is sent once the primary has answered.
        let mirror = (!self.backups.is_empty()).then(|| (req.body.clone(), req.api, req.stream));
        let result = self.route(entry, req, arrival, &mut progress).await;
        abandoned.disarm();
        if let (Some((body, api, stream)), Ok(served)) = (&mirror, &result) {
            self.mirror_to_backups(&team.name, body, *api, *stream, served);
        }
        let (provider, model, outcome, fallback, cost) = match &result {
            Ok(Served::Complete { info, .. } | Served::Stream { info, .. }) => (
                info.provider.as_str(),
                info.model.as_str(),
                RequestOutcome::Ok,
                info.trail.len() > 1,
                info.cost_usd,
            ),
            Err(e) => {
                let last = e.trail.last();
                (
                    last.map_or("none", |a| a.provider.as_str()),
                    last.map_or("none", |a| a.model.as_str()),
                    RequestOutcome::from(e.code),
                    false,
                    None,
                )
            }
        };
        self.telemetry.request(&RequestRecord {
            team: &team.name,
            provider,
            model,
            outcome,
            duration: arrival.elapsed(),
            label: progress.label.as_deref(),
            fallback,
            cost_usd: cost,
        });
        let result = match (progress.record.take().zip(sink), result) {
            (None, result) => result,
            (Some((draft, sink)), Ok(Served::Complete { body, info })) => {
                let outcome = record::served(&info, arrival);
                sink.submit(draft, record::attempts(&info.trail), outcome);
                Ok(Served::Complete { body, info })
            }
            (Some((draft, sink)), Ok(Served::Stream { info, events })) => {
                let events = record::logged_stream(
                    events,
                    record::Pending {
                        sink,
                        draft,
                        attempts: record::attempts(&info.trail),
                        outcome: record::served(&info, arrival),
                        report: progress.stream_report.take().unwrap_or_default(),
                        arrival,
                    },
                );
                Ok(Served::Stream { info, events })
            }
            (Some((draft, sink)), Err(e)) => {
                sink.submit(
                    draft,
                    record::attempts(&e.trail),
                    record::failed(&e, arrival),
                );
                Err(e)
            }
        };
        result.map_err(|mut e| {
            e.label = progress.label;
            e
        })
    }

    async fn route(
        self: &Arc<Self>,
        entry: &Arc<DirectoryEntry>,
        mut req: RouteRequest,
        arrival: Instant,
        progress: &mut Progress,
    ) -> Result<Served, RouteError> {
        let team = &entry.team;
        // Features, and what a logical model the caller named promises.
        let logical = logical::expand(&self.config, team, &mut req)?;
        let features = features::detect(&req.body);
        if let Some(l) = logical {
            logical::check_capabilities(l, features)?;
        }
        let window = req.routing.interval_seconds;
        let snapshot = Arc::new(self.metrics.snapshot());
        // Admission: what the shared state says, and the team's budget.
        let shared = self.view(team, now_ms() / 1000).await;
        Self::check_team_budget(team, &shared)?;
        // Candidates: the hard filters a policy cannot override.
        let estimated_tokens = u64::from(req.estimated_input_tokens);
        let mut built = candidates::build(
            &self.config,
            team,
            &req,
            features,
            &|i, account| shared.account_status(i, account, estimated_tokens),
            &|id| self.judge(id, features, &snapshot, &shared.view, true),
            None,
        )?;
        // A flagged shadow backup that excludes itself from fallbacks.
        self.backups.exclude(
            team,
            logical.map(|l| l.name.as_str()),
            &mut built.candidates,
            &mut built.accounts,
            None,
        );
        // Admission: the team's own rate limit, counted only for a request
        // that can be served.
        let team_admission = self.admit_team(team, estimated_tokens).await?;
        // Decide: the team's policy, or the default standing in for it.
        let policy_request = decide::policy_request(&req, team, features.names());
        // With the log on, the metric values the policy reads are kept.
        let recorder = progress
            .record
            .is_some()
            .then(|| Arc::new(Recorder::new(snapshot.clone())));
        let source: Arc<dyn crate::metrics::MetricSource> = match &recorder {
            Some(r) => r.clone(),
            None => snapshot,
        };
        let decided = self
            .decide(
                entry,
                &req.body,
                policy_request,
                built.candidates,
                source,
                window,
            )
            .await;
        let candidates = decided.candidates;
        if let Some(draft) = progress.record.as_mut() {
            draft.request = decided.request;
            draft.metrics = recorder.map(|r| r.take()).unwrap_or_default();
            draft.decision = Some(record::decision(
                decided.by,
                decided.result.as_ref().map(|(p, n)| (p, n)).map_err(|_| ()),
                &candidates,
            ));
        }
        let (mut plan, notes) = match decided.result {
            Ok(decision) => decision,
            Err(e) => {
                if let Some(draft) = progress.record.as_mut() {
                    draft.candidates = candidates;
                }
                return Err(e);
            }
        };
        decide::offer_probes(&mut plan, &candidates, features.len());
        progress.label = Some(plan.label.clone());
        // Attempts, each served answer leaving with its settlement.
        let context = Context {
            team,
            arrival,
            features,
            estimated_tokens,
            team_admission,
            notes,
            stream_report: progress.stream_report.clone(),
        };
        let served = self
            .attempt(entry, &req, &context, &candidates, &built.accounts, &plan)
            .await;
        if let Some(draft) = progress.record.as_mut() {
            draft.candidates = candidates;
        }
        served
    }
}
