//! The executor: builds the candidates a request may use (hard filters first),
//! asks the team's policy for a plan, and runs the plan's attempts in order,
//! failing over on retryable errors, timeouts and streams that die before their
//! first content token. Every attempt is recorded in the live metrics, the
//! circuit breakers and the telemetry; active health checks live in [`probe`].

mod candidates;
mod logical;
pub mod probe;
mod settle;
mod stream;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::config::{Config, ProviderAccount, Team};
use crate::health::{Breakers, State, Verdict, feature_failing};
use crate::metrics::telemetry::{RequestRecord, Telemetry};
use crate::metrics::{Clock, MetricSource, MetricStore, Outcome, Sample};
use crate::policy::{Candidate, Plan, Policy, PolicyError, RefusalKind, Request, WarmPool};
use crate::providers::{ChatCall, ChatResponse, ChunkStream, Provider};
use crate::spend::{Charge, Spending, budget_key};
use crate::state::{
    Admission, CooldownKind, LimitKey, SharedState, View, ViewQuery, WindowUsage, now_ms,
};
use crate::teams::Tenant;
pub use candidates::RoutingOptions;
use candidates::{AccountStatus, Judgement};
pub use settle::{Settlement, Tally};
pub use stream::EventStream;
use switchyard_wire::feature as features;
use switchyard_wire::{Api, ErrorClass, RequestError, UpstreamError, Usage};

/// The canonical request: what the caller asked for, whichever of the three
/// APIs it came in on, parsed and validated by the API layer. Feature
/// detection, the plan's strip list and every provider adapter work on it.
#[derive(Debug, Clone)]
pub struct RouteRequest {
    /// Canonical body without `routing`: the OpenAI Chat Completions shape
    /// (`messages` with `system`/`developer`/`user`/`assistant`/`tool` roles,
    /// content parts `text`/`image_url`/`file`, `tools` of type `function` or
    /// `custom`, `web_search_options`, `response_format`, `reasoning_effort`,
    /// `max_completion_tokens`, ...), plus the Responses-only `include` and
    /// `verbosity`. Unknown fields pass through to OpenAI-compatible servers.
    pub body: Map<String, Value>,
    pub model: String,
    pub routing: RoutingOptions,
    pub stream: bool,
    /// The API the request came in on.
    pub api: Api,
    pub step_type: Option<String>,
    pub purpose: Option<String>,
    pub metadata: Vec<(String, String)>,
    /// Rough input size in tokens (4 bytes of request body a token), for cost
    /// estimates and context-window checks in the policy.
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
    /// Every attempt in order.
    pub trail: Vec<AttemptRecord>,
    /// Cost in US dollars from the provider's reported usage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// The logical model the caller asked for, when it was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logical_model: Option<String>,
}

impl From<RequestError> for RouteError {
    fn from(e: RequestError) -> Self {
        Self {
            param: e.param,
            ..Self::new(400, "invalid_request_error", e.code.as_str(), e.message)
        }
    }
}

/// A request that could not be served, with an OpenAI-style error.
#[derive(Debug, Clone)]
pub struct RouteError {
    pub status: u16,
    /// OpenAI error `type`.
    pub kind: &'static str,
    /// OpenAI error `code`.
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub retry_after: Option<Duration>,
    pub trail: Vec<AttemptRecord>,
    /// The plan's label, when the policy produced a plan.
    pub label: Option<String>,
}

impl RouteError {
    pub fn new(
        status: u16,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            message: message.into(),
            param: None,
            retry_after: None,
            trail: Vec::new(),
            label: None,
        }
    }

    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_string()),
            ..Self::new(400, "invalid_request_error", "invalid_request", message)
        }
    }

    /// The OpenAI-style body, with the attempt trail under `switchyard`.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "code": self.code,
                "param": self.param,
            }
        });
        if !self.trail.is_empty() {
            body["switchyard"] = json!({ "attempts": self.trail.len(), "trail": self.trail });
        }
        body
    }
}

/// What a served request produced.
// Built once per request and moved straight into the response: boxing the
// larger variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Served {
    /// A whole `chat.completion` (with `switchyard` added).
    Complete { body: Value, info: RouteInfo },
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

/// The executor shared by every request.
pub struct Executor {
    config: Arc<Config>,
    /// Warm instances of the bundled default policy, shared by every team:
    /// it is our own code, and keeps nothing between calls but a parse of the
    /// last config text it saw.
    default: WarmPool,
    providers: HashMap<String, Arc<dyn Provider>>,
    /// Rate-limit counters, cooldowns, open circuits and budget counters,
    /// shared with other replicas through Redis when configured.
    state: Arc<SharedState>,
    spending: Arc<Spending>,
    metrics: Arc<MetricStore>,
    breakers: Arc<Breakers>,
    telemetry: Arc<Telemetry>,
}

/// Where a request is in its life, for the counters.
struct Progress {
    label: Option<String>,
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
                outcome: "client_closed",
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
    ) -> Self {
        let ids: Vec<String> = config
            .providers
            .iter()
            .flat_map(|a| a.models.iter().map(move |m| format!("{}/{m}", a.name)))
            .collect();
        Self {
            metrics: Arc::new(MetricStore::new(ids.clone(), clock.clone())),
            breakers: Arc::new(Breakers::new(
                config.routing.circuit_breaker.clone(),
                ids,
                clock,
            )),
            telemetry: Arc::new(Telemetry::default()),
            config,
            default: WarmPool::with_deadline(policy, decider_threads(), DEFAULT_POLICY_DEADLINE),
            providers,
            state,
            spending,
        }
    }

    /// The shared (or local) routing state.
    pub fn state(&self) -> &Arc<SharedState> {
        &self.state
    }

    /// Spend recording, budgets and alerts.
    pub fn spending(&self) -> &Arc<Spending> {
        &self.spending
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Live metrics per (account, model) and feature.
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

    /// How a candidate stands before the policy runs: its circuit, and its
    /// success rate for each feature the request needs.
    fn judge(
        &self,
        id: &str,
        needed: &[String],
        snapshot: &crate::metrics::Snapshot,
        window: u32,
        view: &View,
    ) -> Judgement {
        let state = self.breakers.state(id);
        let (provider, model) = id.split_once('/').unwrap_or((id, ""));
        // Opened by another replica (or by this one, and announced).
        if let Some(retry_in) = view.circuit_open(id)
            && !matches!(state, State::HalfOpen { .. })
        {
            self.telemetry.exclusion(provider, model, "circuit_open");
            return Judgement::CircuitOpen(retry_in);
        }
        match state {
            State::Open { retry_in } => {
                self.telemetry.exclusion(provider, model, "circuit_open");
                return Judgement::CircuitOpen(retry_in);
            }
            State::HalfOpen { probe_free: false } => {
                self.telemetry.exclusion(provider, model, "circuit_open");
                return Judgement::CircuitOpen(Duration::from_secs(1));
            }
            _ => {}
        }
        let routing = &self.config.routing;
        let failing = needed.iter().find(|f| {
            snapshot.feature_counts(id, f, window).is_some_and(|c| {
                feature_failing(
                    &c,
                    routing.feature_uptime_threshold,
                    routing.feature_uptime_min_requests,
                )
            })
        });
        if let Some(feature) = failing {
            tracing::debug!(candidate = id, feature = %feature, "feature uptime below threshold");
            self.telemetry.exclusion(provider, model, "feature_uptime");
            return Judgement::FeatureFailing;
        }
        match state {
            State::HalfOpen { .. } => Judgement::HalfOpen,
            State::Closed { degraded: true } => Judgement::Degraded,
            _ => Judgement::Healthy,
        }
    }

    /// Starts an account's cooldown (shared with the other replicas).
    async fn cool_down(&self, account: &str, kind: CooldownKind, wait: Duration) {
        self.telemetry.cooldown(account, kind.name());
        let until_ms = now_ms().saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
        self.state
            .set_cooldown(account, crate::state::Cooldown { kind, until_ms })
            .await;
    }

    /// What the shared state says before routing: window usage of every
    /// rate-limited account (and the team), budget counters, cooldowns and
    /// circuits other replicas opened.
    async fn view(&self, team: &Team, now_secs: u64) -> SharedView {
        let mut query = ViewQuery::default();
        for account in &self.config.providers {
            if account.limits.any() {
                query
                    .limits
                    .push(LimitKey::account(&account.name, account.limits));
            }
            if let Some(budget) = &account.budget {
                query
                    .budgets
                    .push(budget_key("account", &account.name, budget, now_secs));
            }
        }
        if let Some(budget) = &team.budget {
            query
                .budgets
                .push(budget_key("team", &team.name, budget, now_secs));
        }
        let view = self.state.view(&query).await;
        // The answers come back in the order asked: hand them to the
        // accounts (by config index) and the team in the same order.
        let mut usage = view.usage.iter().copied();
        let mut spend = view.spend.iter().copied();
        let accounts = self
            .config
            .providers
            .iter()
            .map(|a| {
                let u = a.limits.any().then(|| usage.next().unwrap_or_default());
                let s = a.budget.map(|_| spend.next().unwrap_or(0.0));
                (u, s)
            })
            .collect();
        let team_spent = team.budget.map(|_| spend.next().unwrap_or(0.0));
        SharedView {
            view,
            accounts,
            team_spent,
        }
    }

    /// Routes one request for `tenant`, and counts how it ended.
    pub async fn serve(&self, tenant: &Tenant, req: RouteRequest) -> Result<Served, RouteError> {
        let team = &tenant.team;
        let arrival = Instant::now();
        let mut progress = Progress { label: None };
        let abandoned = Abandoned {
            telemetry: &self.telemetry,
            team: &team.name,
            arrival,
            armed: true,
        };
        let result = self.route(tenant, req, arrival, &mut progress).await;
        abandoned.disarm();
        let (provider, model, outcome, fallback, cost) = match &result {
            Ok(Served::Complete { info, .. } | Served::Stream { info, .. }) => (
                info.provider.as_str(),
                info.model.as_str(),
                "ok",
                info.trail.len() > 1,
                info.cost_usd,
            ),
            Err(e) => {
                let last = e.trail.last();
                (
                    last.map_or("none", |a| a.provider.as_str()),
                    last.map_or("none", |a| a.model.as_str()),
                    e.code,
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
        result.map_err(|mut e| {
            e.label = progress.label;
            e
        })
    }

    async fn route(
        &self,
        tenant: &Tenant,
        mut req: RouteRequest,
        arrival: Instant,
        progress: &mut Progress,
    ) -> Result<Served, RouteError> {
        let team = &tenant.team;
        let logical = logical::expand(&self.config, team, &mut req)?;
        let features = features::detect(&req.body);
        if let Some(l) = logical {
            logical::check_capabilities(l, &features)?;
        }
        let window = req.routing.interval_seconds;
        let snapshot = Arc::new(self.metrics.snapshot());
        let now_secs = now_ms() / 1000;
        let shared = self.view(team, now_secs).await;
        let view = &shared.view;
        if let (Some(budget), Some(s)) = (&team.budget, shared.team_spent)
            && s >= budget.usd
        {
            return Err(RouteError::new(
                402,
                "insufficient_quota",
                "budget_exhausted",
                format!(
                    "team {} has spent ${s:.4} of its ${:.2} budget for this {}; ask the gateway's operator to raise it",
                    team.name,
                    budget.usd,
                    match budget.period {
                        crate::config::BudgetPeriod::Month => "month",
                        crate::config::BudgetPeriod::Day => "day",
                    }
                ),
            ));
        }
        let estimated_tokens = u64::from(req.estimated_input_tokens);
        let built = candidates::build(
            &self.config,
            team,
            &req,
            &features,
            &|i, account| {
                let (usage, spent) = shared.accounts.get(i).copied().unwrap_or_default();
                let budget_exhausted = account.budget.zip(spent).is_some_and(|(b, s)| s >= b.usd);
                let headroom = usage.and_then(|u| u.headroom(&account.limits, estimated_tokens));
                AccountStatus {
                    cooling: view.cooldown(&account.name).map(|(kind, wait)| match kind {
                        CooldownKind::RateLimited => candidates::Cooling::RateLimited(wait),
                        CooldownKind::Quota => candidates::Cooling::Quota,
                    }),
                    budget_exhausted,
                    headroom,
                }
            },
            &|id| self.judge(id, &features, &snapshot, window, view),
        )?;
        // The team's own rate limit (all its keys together): counted once per
        // request, never failed over.
        let team_admission = if team.limits.any() {
            match self
                .state
                .acquire(
                    &LimitKey::team(&team.name, team.limits),
                    1,
                    estimated_tokens,
                )
                .await
            {
                Admission::Admitted(a) => Some(a),
                Admission::Denied {
                    limit,
                    used,
                    cap,
                    retry_after,
                } => {
                    self.telemetry.limiter_rejection("team", &team.name, limit);
                    let mut e = RouteError::new(
                        429,
                        "rate_limit_error",
                        "team_rate_limited",
                        over_limit(
                            &format!("team {}", team.name),
                            limit,
                            used,
                            cap,
                            retry_after,
                        ),
                    );
                    e.retry_after = Some(retry_after);
                    return Err(e);
                }
            }
        } else {
            None
        };
        let policy_request = Request {
            model: req.model.clone(),
            routing: crate::policy::Routing {
                metric: req.routing.metric.clone(),
                interval_seconds: req.routing.interval_seconds,
                models: req.routing.models.clone(),
                providers: req.routing.providers.clone(),
            },
            features,
            step_type: req.step_type.clone(),
            purpose: req.purpose.clone(),
            team: team.name.clone(),
            estimated_input_tokens: req.estimated_input_tokens,
            max_output_tokens: req
                .body
                .get("max_completion_tokens")
                .or_else(|| req.body.get("max_tokens"))
                .and_then(Value::as_u64)
                .map(|n| n.min(u64::from(u32::MAX)) as u32),
            prompt_cache_key: req
                .body
                .get("prompt_cache_key")
                .is_some_and(|v| !v.is_null()),
            metadata: req.metadata.clone(),
            config: team.policy_config.clone(),
        };
        let (plan, policy_request, candidates) = self
            .decide(tenant, policy_request, built.candidates, snapshot, window)
            .await?;
        progress.label = Some(plan.label.clone());
        let context = Context {
            team,
            arrival,
            features: &policy_request.features,
            estimated_tokens,
            team_admission,
        };
        self.execute(&req, &context, &candidates, &built.accounts, plan)
            .await
    }

    /// Asks the team's plugin (if it has one in service) for a plan, on a
    /// blocking thread and within the plugin's decision slots, so a slow or
    /// looping plugin holds only its own team's requests. A fault is counted
    /// against the plugin and the request is routed by the default policy.
    /// Gives back the request and candidates it was handed.
    async fn decide(
        &self,
        tenant: &Tenant,
        mut request: Request,
        mut candidates: Vec<Candidate>,
        snapshot: Arc<crate::metrics::Snapshot>,
        window: u32,
    ) -> Result<(Plan, Request, Vec<Candidate>), RouteError> {
        let team = &tenant.team;
        if let Some(plugin) = tenant.policy.as_ref().filter(|p| p.in_service()) {
            let permit = plugin.slots.acquire().await;
            if permit.is_ok() && plugin.in_service() {
                let policy = &plugin.policy;
                if !policy.info().metrics.is_empty() {
                    policy.precompute_metrics(&mut candidates, snapshot.as_ref(), window);
                }
                let source: Arc<dyn MetricSource> = snapshot.clone();
                let warm = plugin.clone();
                let ran = tokio::task::spawn_blocking(move || {
                    let decision = warm.pool.decide_traced(&request, &candidates, source);
                    (decision, request, candidates)
                })
                .await;
                drop(permit);
                let (decision, back_request, back_candidates) = ran.map_err(|e| {
                    RouteError::new(
                        503,
                        "server_error",
                        "routing_policy_fault",
                        format!("the routing policy failed: {e}"),
                    )
                })?;
                request = back_request;
                candidates = back_candidates;
                self.count_misbehaviour(&team.name, &plugin.label, &decision.stats);
                match decision.result {
                    Err(fault) if fault.is_fault() => {
                        self.telemetry.decision(
                            &team.name,
                            &plugin.label,
                            decision.stats.elapsed,
                            Some(fault.kind()),
                        );
                        // A full instance pool is the host's capacity, not the plugin's fault.
                        let aside = if matches!(fault, PolicyError::Instantiate(_)) {
                            None
                        } else {
                            plugin.record_fault(fault.kind())
                        };
                        match aside {
                            Some(reason) => {
                                tracing::error!(team = %team.name, version = plugin.version, error = %fault, "team policy set aside: {reason}")
                            }
                            None => {
                                tracing::warn!(team = %team.name, version = plugin.version, error = %fault, "team policy fault; the default policy routes this request")
                            }
                        }
                    }
                    result => {
                        self.telemetry.decision(
                            &team.name,
                            &plugin.label,
                            decision.stats.elapsed,
                            None,
                        );
                        plugin.record_success();
                        return Ok((Self::plan_or_error(team, result)?, request, candidates));
                    }
                }
            }
        }
        if tenant.policy.is_some() {
            // Standing in for the team's plugin: the team's config is written
            // for that plugin, so the default policy gets its own.
            request
                .config
                .clone_from(&self.config.default_policy_config);
        }
        let policy = self.default.policy();
        if !policy.info().metrics.is_empty() {
            policy.precompute_metrics(&mut candidates, snapshot.as_ref(), window);
        }
        let decision = self.default.decide_traced(&request, &candidates, snapshot);
        self.count_misbehaviour(&team.name, "default", &decision.stats);
        let fault = decision
            .result
            .as_ref()
            .err()
            .filter(|e| e.is_fault())
            .map(PolicyError::kind);
        self.telemetry
            .decision(&team.name, "default", decision.stats.elapsed, fault);
        Ok((
            Self::plan_or_error(team, decision.result)?,
            request,
            candidates,
        ))
    }

    /// Counts what a decision did that a policy may not, short of a fault.
    fn count_misbehaviour(&self, team: &str, version: &str, stats: &crate::policy::DecisionStats) {
        if stats.foreign_metric_calls > 0 {
            let before = self.telemetry.misbehaviour(
                team,
                version,
                "foreign_metric",
                u64::from(stats.foreign_metric_calls),
            );
            // Once per team and version: the counter says how often.
            if before == 0 {
                tracing::warn!(
                    team,
                    version,
                    "policy asked for metrics of candidates it was not offered (answered none; counted in switchyard_policy_misbehaviour_total)"
                );
            }
        }
    }

    /// The plan, or the caller's error for a refusal or a fault.
    fn plan_or_error(team: &Team, result: Result<Plan, PolicyError>) -> Result<Plan, RouteError> {
        match result {
            Ok(plan) => Ok(plan),
            Err(PolicyError::Refused { kind, message }) => Err(match kind {
                RefusalKind::NoRoute if team.zdr => RouteError::new(
                    422,
                    "invalid_request_error",
                    "zdr_unavailable",
                    format!(
                        "zero data retention is required for team {}, but no ZDR provider can serve this request: {message}",
                        team.name
                    ),
                ),
                RefusalKind::NoRoute => {
                    RouteError::new(422, "invalid_request_error", "no_capable_provider", message)
                }
                RefusalKind::BadConfig | RefusalKind::Internal => RouteError::new(
                    503,
                    "server_error",
                    "routing_policy_error",
                    format!("the routing policy could not route this request: {message}"),
                ),
            }),
            Err(fault) => {
                tracing::error!(team = %team.name, error = %fault, "routing policy fault");
                Err(RouteError::new(
                    503,
                    "server_error",
                    "routing_policy_fault",
                    format!("the routing policy failed: {fault}"),
                ))
            }
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        let routing = &self.config.routing;
        let exp = routing
            .backoff_base
            .saturating_mul(1u32 << failures.min(10))
            .min(routing.backoff_max);
        // Full jitter: anywhere between half and the whole step.
        exp.mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    async fn execute(
        &self,
        req: &RouteRequest,
        cx: &Context<'_>,
        candidates: &[Candidate],
        accounts: &[&ProviderAccount],
        plan: Plan,
    ) -> Result<Served, RouteError> {
        let mut trail: Vec<AttemptRecord> = Vec::new();
        let mut last_error: Option<UpstreamError> = None;
        let mut failures = 0u32;
        let mut all_rate_limited = true;
        let mut soonest_retry: Option<Duration> = None;
        for attempt in &plan.attempts {
            let Some(index) = candidates.iter().position(|c| c.id == attempt.candidate) else {
                continue; // validated by the runtime; unreachable in practice
            };
            let candidate = &candidates[index];
            let account = accounts[index];
            let Some(model) = self.config.catalog.get(&candidate.model) else {
                continue;
            };
            let Some(provider) = self.providers.get(&account.name) else {
                continue;
            };
            // An earlier attempt of this very request may have put the account
            // in cooldown (429 with retry-after, 402).
            if let Some((kind, wait)) = self.state.local_cooldown(&account.name) {
                trail.push(AttemptRecord {
                    provider: account.name.clone(),
                    model: candidate.model.clone(),
                    status: None,
                    reason: "cooldown".into(),
                    message: Some(format!("account cooling down for {} ms", wait.as_millis())),
                });
                if kind == CooldownKind::RateLimited {
                    soonest_retry = Some(soonest_retry.map_or(wait, |s| s.min(wait)));
                } else {
                    all_rate_limited = false;
                }
                continue;
            }
            // Its circuit may have opened since the candidates were built (an
            // earlier attempt of this or another request), or its half-open
            // probe slot may be taken.
            let Some(ticket) = self.breakers.begin(&candidate.id) else {
                trail.push(AttemptRecord {
                    provider: account.name.clone(),
                    model: candidate.model.clone(),
                    status: None,
                    reason: "circuit_open".into(),
                    message: Some("circuit breaker open after recent failures".into()),
                });
                all_rate_limited = false;
                continue;
            };
            // The account's own RPM/TPM: a candidate without room is not
            // attempted; the request moves on, and the limiter says when
            // room frees up.
            let mut admitted = None;
            if account.limits.any() {
                let key = LimitKey::account(&account.name, account.limits);
                match self.state.acquire(&key, 1, cx.estimated_tokens).await {
                    Admission::Admitted(a) => admitted = Some(a),
                    Admission::Denied {
                        limit,
                        used,
                        cap,
                        retry_after,
                    } => {
                        drop(ticket);
                        self.telemetry
                            .limiter_rejection("account", &account.name, limit);
                        trail.push(AttemptRecord {
                            provider: account.name.clone(),
                            model: candidate.model.clone(),
                            status: None,
                            reason: "limit_reached".into(),
                            message: Some(over_limit(&account.name, limit, used, cap, retry_after)),
                        });
                        soonest_retry =
                            Some(soonest_retry.map_or(retry_after, |s| s.min(retry_after)));
                        continue;
                    }
                }
            }
            if failures > 0
                && matches!(
                    last_error.as_ref().map(|e| &e.class),
                    Some(ErrorClass::Retryable | ErrorClass::Timeout | ErrorClass::Connect)
                )
            {
                tokio::time::sleep(self.backoff(failures - 1)).await;
            }

            let mut body = req.body.clone();
            for feature in &attempt.strip {
                features::strip(&mut body, feature);
            }
            let sent_features: Vec<String> = cx
                .features
                .iter()
                .filter(|f| !attempt.strip.contains(f))
                .cloned()
                .collect();
            let upstream_model = account
                .upstream_model(&self.config.catalog, &candidate.model)
                .to_string();
            body.insert("model".into(), Value::String(upstream_model));
            let stream_upstream = req.stream && !attempt.strip.iter().any(|f| f == "stream");
            let timeout = attempt
                .timeout_ms
                .map(|ms| Duration::from_millis(u64::from(ms)))
                .unwrap_or(account.timeout);
            let call_timeout = if stream_upstream {
                timeout.min(self.config.routing.first_token_timeout)
            } else {
                timeout
            };
            let call = ChatCall {
                body,
                stream: stream_upstream,
                timeout: call_timeout,
                api: req.api,
            };
            let started = Instant::now();
            let deadline = tokio::time::Instant::from_std(started + call_timeout);
            let result = match tokio::time::timeout_at(deadline, provider.chat(call)).await {
                Ok(result) => result,
                Err(_) => Err(UpstreamError::new(
                    ErrorClass::Timeout,
                    None,
                    format!("no response within {} ms", call_timeout.as_millis()),
                )),
            };
            let result = match result {
                Ok(ChatResponse::Stream(mut upstream)) => {
                    match first_content(&mut upstream, deadline, call_timeout).await {
                        Ok(head) => Ok((head, upstream)),
                        Err(e) => Err(e),
                    }
                    .map(|(head, rest)| Answer::Stream(head, rest))
                }
                Ok(ChatResponse::Complete { body, usage }) => Ok(Answer::Complete(body, usage)),
                Err(e) => Err(e),
            };
            let latency = started.elapsed();
            match result {
                Ok(answer) => {
                    let probe = ticket.is_probe();
                    ticket.finish(Verdict::Success);
                    // A probe that closed the circuit tells the other replicas.
                    if probe {
                        self.state.clear_circuit(&candidate.id).await;
                    }
                    let usage = match &answer {
                        Answer::Complete(_, usage) => Some(usage),
                        Answer::Stream(..) => None,
                    };
                    let streamed = matches!(answer, Answer::Stream(..));
                    self.record_attempt(
                        &candidate.id,
                        &sent_features,
                        Sample {
                            outcome: Some(Outcome::Ok),
                            latency: Some(latency),
                            e2e: Some(cx.arrival.elapsed()),
                            ttft: streamed.then_some(latency),
                            input_tokens: usage.map(|u| u.prompt_tokens),
                            output_tokens: usage.map(|u| u.completion_tokens),
                        },
                    );
                    trail.push(AttemptRecord {
                        provider: account.name.clone(),
                        model: candidate.model.clone(),
                        status: Some(200),
                        reason: "ok".into(),
                        message: None,
                    });
                    let mut info = RouteInfo {
                        provider: account.name.clone(),
                        model: candidate.model.clone(),
                        attempts: trail.len(),
                        stripped: attempt.strip.clone(),
                        label: plan.label.clone(),
                        trail,
                        cost_usd: None,
                        logical_model: req.logical_model.clone(),
                    };
                    let charge = Charge {
                        spending: self.spending.clone(),
                        state: self.state.clone(),
                        team: cx.team.name.clone(),
                        account: account.name.clone(),
                        model: candidate.model.clone(),
                        label: plan.label.clone(),
                        baseline: crate::spend::baseline_model(&self.config, cx.team)
                            .map(crate::catalog::Model::rates),
                        admitted: admitted
                            .into_iter()
                            .chain(cx.team_admission.clone())
                            .collect(),
                    };
                    let settlement = Settlement {
                        metrics: self.metrics.clone(),
                        telemetry: self.telemetry.clone(),
                        breakers: self.breakers.clone(),
                        team: cx.team.name.clone(),
                        candidate: candidate.id.clone(),
                        provider: account.name.clone(),
                        model: candidate.model.clone(),
                        features: sent_features,
                        streamed: req.stream,
                        charge,
                    };
                    let (head, rest) = match answer {
                        Answer::Complete(mut body, usage) if !req.stream => {
                            let cost = model.cost(&usage);
                            info.cost_usd = Some(cost);
                            settlement.settle(Tally {
                                usage: Some(usage),
                                cost_usd: Some(cost),
                                broken: false,
                            });
                            if let Value::Object(map) = &mut body {
                                map.insert("switchyard".into(), json!(info));
                            }
                            return Ok(Served::Complete { body, info });
                        }
                        // Streaming was stripped: stream the whole answer ourselves.
                        Answer::Complete(body, usage) => {
                            (Vec::new(), stream::from_completion(body, usage))
                        }
                        Answer::Stream(head, rest) => (head, rest),
                    };
                    let events =
                        stream::relay(json!(info), head, rest, model.clone(), timeout, settlement);
                    return Ok(Served::Stream { info, events });
                }
                Err(error) => {
                    tracing::warn!(provider = %account.name, model = %candidate.model, class = error.class.name(), status = ?error.status, error = %error.message, "attempt failed");
                    let (outcome, verdict) = failure_kind(&error.class);
                    ticket.finish(verdict);
                    // A circuit this failure opened is announced to the other replicas.
                    if verdict == Verdict::Failure
                        && let State::Open { retry_in } = self.breakers.state(&candidate.id)
                    {
                        let until = now_ms()
                            .saturating_add(u64::try_from(retry_in.as_millis()).unwrap_or(0));
                        self.state.set_circuit_open(&candidate.id, until).await;
                    }
                    self.record_attempt(
                        &candidate.id,
                        &sent_features,
                        Sample {
                            outcome: Some(outcome),
                            ..Sample::default()
                        },
                    );
                    trail.push(AttemptRecord {
                        provider: account.name.clone(),
                        model: candidate.model.clone(),
                        status: error.status,
                        reason: error.class.name().into(),
                        message: Some(error.message.clone()),
                    });
                    match &error.class {
                        ErrorClass::RateLimited { retry_after } => {
                            let wait =
                                retry_after.unwrap_or(self.config.routing.rate_limit_cooldown);
                            self.cool_down(&account.name, CooldownKind::RateLimited, wait)
                                .await;
                            soonest_retry = Some(soonest_retry.map_or(wait, |s| s.min(wait)));
                        }
                        ErrorClass::QuotaExhausted => {
                            all_rate_limited = false;
                            self.cool_down(
                                &account.name,
                                CooldownKind::Quota,
                                self.config.routing.quota_cooldown,
                            )
                            .await;
                        }
                        _ => all_rate_limited = false,
                    }
                    if !error.class.fails_over() {
                        // The caller's request is at fault: never retried.
                        return Err(RouteError {
                            status: error.status.unwrap_or(400),
                            kind: "invalid_request_error",
                            code: "upstream_rejected_request",
                            message: format!(
                                "{} rejected the request: {}",
                                account.name, error.message
                            ),
                            param: None,
                            retry_after: None,
                            trail,
                            label: None,
                        });
                    }
                    failures += 1;
                    last_error = Some(error);
                }
            }
        }
        let last = trail.last().cloned();
        if all_rate_limited && !trail.is_empty() {
            let mut e = RouteError::new(
                429,
                "rate_limit_error",
                "all_providers_rate_limited",
                format!(
                    "every provider for this request is rate limited; last: {}",
                    last.as_ref().map(describe_attempt).unwrap_or_default()
                ),
            );
            e.retry_after = Some(soonest_retry.unwrap_or(self.config.routing.rate_limit_cooldown));
            e.trail = trail;
            return Err(e);
        }
        let mut e = RouteError::new(
            424,
            "upstream_error",
            "all_providers_failed",
            format!(
                "all {} attempts failed; last: {}",
                trail.len(),
                last.as_ref()
                    .map(describe_attempt)
                    .unwrap_or_else(|| "no attempt could be made".into())
            ),
        );
        e.trail = trail;
        Err(e)
    }

    /// Records one attempt in the live metrics and the telemetry.
    fn record_attempt(&self, id: &str, features: &[String], sample: Sample) {
        self.metrics.record(id, features, &sample);
        let (provider, model) = id.split_once('/').unwrap_or((id, ""));
        self.telemetry.attempt(
            provider,
            model,
            sample.outcome.map_or("ok", Outcome::name),
            // Only successful attempts carry a latency.
            sample.latency,
            sample.ttft,
        );
    }
}

/// The shared state as one request sees it, sorted out per account.
struct SharedView {
    view: View,
    /// Per `config.providers` index: window usage (limited accounts) and
    /// dollars spent this period (accounts with a budget).
    accounts: Vec<(Option<WindowUsage>, Option<f64>)>,
    /// Dollars the team spent this period, when it has a budget.
    team_spent: Option<f64>,
}

/// What the attempts of one request share.
struct Context<'a> {
    team: &'a Team,
    arrival: Instant,
    /// Features the request needs (before any stripping).
    features: &'a [String],
    /// Input tokens estimated before the call, counted against TPM limits.
    estimated_tokens: u64,
    /// Where the team's rate limit counted this request.
    team_admission: Option<crate::state::Admitted>,
}

/// How a failed attempt counts: its outcome for the metrics, its verdict for
/// the circuit breaker.
fn failure_kind(class: &ErrorClass) -> (Outcome, Verdict) {
    match class {
        ErrorClass::RateLimited { .. } | ErrorClass::QuotaExhausted => {
            (Outcome::RateLimited, Verdict::Neutral)
        }
        ErrorClass::Timeout => (Outcome::Timeout, Verdict::Failure),
        class if !class.fails_over() => (Outcome::Rejected, Verdict::Neutral),
        _ => (Outcome::Error, Verdict::Failure),
    }
}

enum Answer {
    Complete(Value, Usage),
    Stream(Vec<Value>, ChunkStream),
}

/// Why the limiter refused `who` (an account, or `team NAME`).
fn over_limit(who: &str, limit: &str, used: u64, cap: u64, retry_after: Duration) -> String {
    format!(
        "{who} is at its {} limit ({used} of {cap} in the last minute); room again in {} ms",
        limit.to_uppercase(),
        retry_after.as_millis()
    )
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

/// Whether a chunk carries content the client would see: text, a tool call,
/// reasoning, or a refusal.
fn has_content(chunk: &Value) -> bool {
    let Some(choices) = chunk.get("choices").and_then(Value::as_array) else {
        return false;
    };
    choices.iter().any(|c| {
        let Some(delta) = c.get("delta") else {
            return false;
        };
        ["content", "reasoning_content", "refusal"].iter().any(|k| {
            delta
                .get(*k)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        }) || delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    })
}

/// Reads the upstream until its first content chunk (returning everything read
/// so far) — or fails, so the executor can try the next attempt with nothing
/// yet sent to the client.
async fn first_content(
    upstream: &mut ChunkStream,
    deadline: tokio::time::Instant,
    limit: Duration,
) -> Result<Vec<Value>, UpstreamError> {
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
                if head.iter().any(|c: &Value| {
                    c.pointer("/choices/0/finish_reason")
                        .is_some_and(|f| !f.is_null())
                }) {
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
                let content = has_content(&chunk);
                head.push(chunk);
                if content {
                    return Ok(head);
                }
            }
        }
    }
}
