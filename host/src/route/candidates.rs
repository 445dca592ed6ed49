//! From a request to the candidates the policy may choose from: the caller's
//! `routing` options, model resolution (slug, `provider/model`, `auto`), and
//! the hard filters the policy cannot override — team allow-lists, the
//! request's provider whitelist, zero data retention, accounts cooling down,
//! open circuits, and failing feature uptime.

use std::time::Duration;

use serde_json::Value;
use switchyard_wire::FeatureSet;

use super::{RouteError, RouteRequest};
use crate::config::{Config, ProviderAccount, Team};
use crate::errors::RoutingCode;
use crate::health::{CircuitState, feature_failing};
use crate::metrics::{MIN_WINDOW_SECS, is_sort_metric, parse_window};
use crate::policy::{Candidate, Health, Price};
use crate::state::View;
use crate::telemetry::Exclusion;
use switchyard_wire::candidate::CandidateRef;

/// The caller's `routing` object.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingOptions {
    pub metric: Option<String>,
    pub interval_seconds: u32,
    pub models: Vec<String>,
    pub providers: Vec<String>,
}

impl Default for RoutingOptions {
    fn default() -> Self {
        Self {
            metric: None,
            interval_seconds: MIN_WINDOW_SECS,
            models: Vec::new(),
            providers: Vec::new(),
        }
    }
}

fn string_list(value: &Value, param: &str) -> Result<Vec<String>, RouteError> {
    let items = value.as_array().ok_or_else(|| {
        RouteError::invalid(param, format!("{param} must be an array of strings"))
    })?;
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or_else(|| {
                    RouteError::invalid(
                        &format!("{param}[{i}]"),
                        format!("{param}[{i}] must be a non-empty string"),
                    )
                })
        })
        .collect()
}

impl RoutingOptions {
    /// Parses the `routing` object of a request (absent or null: defaults).
    pub fn parse(value: Option<&Value>) -> Result<RoutingOptions, RouteError> {
        let mut options = RoutingOptions::default();
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return Ok(options);
        };
        let object = value
            .as_object()
            .ok_or_else(|| RouteError::invalid("routing", "routing must be an object"))?;
        for (key, v) in object {
            match key.as_str() {
                "metric" | "sort" => {
                    let metric = v.as_str().ok_or_else(|| {
                        RouteError::invalid(
                            &format!("routing.{key}"),
                            format!("routing.{key} must be a string"),
                        )
                    })?;
                    if !is_sort_metric(metric) {
                        return Err(RouteError::invalid(
                            &format!("routing.{key}"),
                            format!(
                                "unknown routing metric {metric:?}: use cost, performance, uptime, throughput, total_requests, pNN_latency, pNN_e2e_latency, pNN_ttft, avg|min|max_latency, avg|min|max_e2e_latency, input_tokens, output_tokens or total_tokens"
                            ),
                        ));
                    }
                    options.metric = Some(metric.to_string());
                }
                "interval" => {
                    let text = v.as_str().ok_or_else(|| {
                        RouteError::invalid(
                            "routing.interval",
                            "routing.interval must be a string such as \"15m\" or \"1 hour\"",
                        )
                    })?;
                    options.interval_seconds = parse_window(text)
                        .map_err(|e| RouteError::invalid("routing.interval", e.to_string()))?;
                }
                "models" => options.models = string_list(v, "routing.models")?,
                "providers" => options.providers = string_list(v, "routing.providers")?,
                other => {
                    return Err(RouteError::invalid(
                        &format!("routing.{other}"),
                        format!(
                            "unknown routing option {other:?} (expected metric, sort, interval, models, providers)"
                        ),
                    ));
                }
            }
        }
        Ok(options)
    }
}

/// Why an account is out for now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cooling {
    /// Rate limited (429); usable again after this long.
    RateLimited(Duration),
    /// Quota or credit exhausted (402).
    Quota,
}

/// How a provider account stands before the policy runs, from the shared
/// state.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AccountStatus {
    pub cooling: Option<Cooling>,
    /// Its budget for the period is spent: a hard filter.
    pub budget_exhausted: bool,
    /// Share of its rate limits still free for this request (`None`:
    /// unlimited), passed to the policy.
    pub headroom: Option<f32>,
}

/// What the health rules say of a candidate (`account/model`) before the
/// policy runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Judgement {
    Healthy,
    /// Offered, flagged `degraded` (recent failures).
    Degraded,
    /// Offered as a probe of a half-open circuit.
    HalfOpen,
    /// Not offered: its circuit is open for this long yet (or half-open with
    /// its probe slots taken).
    CircuitOpen(Duration),
    /// Its success rate for a feature the request needs is too low: offered
    /// (as `degraded`) only when no other candidate is left.
    FeatureFailing,
}

/// The hard filter that removed an (account, model) pair from a request's
/// candidates, as `explain` reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Neither the requested model nor a fallback (nor `auto`).
    NotRequested,
    /// The team may not use this model.
    TeamModels,
    /// The team may not use this provider account.
    TeamProviders,
    /// Left out by the request's `routing.providers`.
    RoutingProviders,
    /// The request (estimated tokens) exceeds the model's context window.
    ContextWindow { window: u32 },
    /// The team requires zero data retention; the account does not offer it.
    Zdr,
    /// The account's budget for the period is spent.
    Budget,
    /// The account is cooling down after a 429.
    RateLimited { retry_in: Duration },
    /// The account's quota or credit is exhausted.
    Quota,
    /// The circuit breaker is open (or half-open with its probe taken).
    CircuitOpen { retry_in: Duration },
    /// Recent success rate with a feature the request needs is too low
    /// (offered only when nothing else is left).
    FeatureUptime,
    /// A shadow backup flagged for failing its checks, with
    /// `exclude_failing` (kept only when nothing else is left).
    BackupFailing,
}

impl Filter {
    /// Machine-readable name.
    pub fn name(&self) -> &'static str {
        match self {
            Filter::NotRequested => "not_requested",
            Filter::TeamModels => "team_models",
            Filter::TeamProviders => "team_providers",
            Filter::RoutingProviders => "routing_providers",
            Filter::ContextWindow { .. } => "context_window",
            Filter::Zdr => "zdr",
            Filter::Budget => "budget",
            Filter::RateLimited { .. } => "rate_limited",
            Filter::Quota => "quota",
            Filter::CircuitOpen { .. } => "circuit_open",
            Filter::FeatureUptime => "feature_uptime",
            Filter::BackupFailing => "backup_failing",
        }
    }

    /// Why, in a sentence.
    pub fn reason(&self, tokens: u32) -> String {
        match self {
            Filter::NotRequested => {
                "not the requested model or a fallback of routing.models".into()
            }
            Filter::TeamModels => "the team may not use this model".into(),
            Filter::TeamProviders => "the team may not use this provider account".into(),
            Filter::RoutingProviders => "not in the request's routing.providers".into(),
            Filter::ContextWindow { window } => format!(
                "the request is about {tokens} tokens, more than the model's {window}-token context window"
            ),
            Filter::Zdr => {
                "the team requires zero data retention and this account does not offer it".into()
            }
            Filter::Budget => "the account's budget for the period is spent".into(),
            Filter::RateLimited { retry_in } => format!(
                "the account is cooling down after a rate limit ({} ms left)",
                retry_in.as_millis()
            ),
            Filter::Quota => "the account's quota or credit is exhausted".into(),
            Filter::CircuitOpen { retry_in } => format!(
                "its circuit breaker is open after recent failures (retry in {} ms)",
                retry_in.as_millis()
            ),
            Filter::FeatureUptime => "its recent success rate with a feature this request needs is below the threshold (kept only when nothing else is left)".into(),
            Filter::BackupFailing => "a shadow backup flagged for failing its checks, excluded from fallbacks ([[backups]] exclude_failing; kept only when nothing else is left)".into(),
        }
    }
}

/// A pair the hard filters removed, and which one.
#[derive(Debug, Clone, PartialEq)]
pub struct Removed {
    /// `account/model`.
    pub id: String,
    pub filter: Filter,
}

/// Candidates and, at the same index, the account behind each.
pub struct Built<'a> {
    pub candidates: Vec<Candidate>,
    pub accounts: Vec<&'a ProviderAccount>,
}

/// A model reference the caller wrote, resolved.
enum Target<'a> {
    Auto,
    Model { slug: &'a str },
}

fn resolve<'a>(config: &Config, text: &'a str) -> Option<Target<'a>> {
    if text == "auto" {
        return Some(Target::Auto);
    }
    if config.catalog.get(text).is_some() {
        return Some(Target::Model { slug: text });
    }
    // `account/model`, the same shape as a candidate id.
    let CandidateRef {
        account,
        model: slug,
    } = CandidateRef::parse(text)?;
    let serves = config
        .providers
        .iter()
        .any(|p| p.name == account && p.models.iter().any(|m| m == slug));
    serves.then_some(Target::Model { slug })
}

/// A 403 for the primary model (`fallback` none) or a fallback of `routing.models`.
fn forbidden(code: RoutingCode, message: String, fallback: Option<usize>) -> RouteError {
    let mut e = RouteError::new(code, message);
    e.param = Some(fallback.map_or("model".into(), |i| format!("routing.models[{i}]")));
    e
}

/// Builds the candidates for `req`, or the error the caller should get.
///
/// A candidate lists only the features of `needed` (the request's) it
/// supports, not its model's whole catalog entry: that is all a policy or the
/// plan check reads, and each name costs a string copied into the policy's
/// memory (13 names per catalog model made a 20-candidate decision 1.8×
/// slower; see BENCHMARKS.md).
pub fn build<'a>(
    config: &'a Config,
    team: &Team,
    req: &RouteRequest,
    needed: FeatureSet,
    status: &dyn Fn(usize, &ProviderAccount) -> AccountStatus,
    judge: &dyn Fn(&str) -> Judgement,
    mut removed: Option<&mut Vec<Removed>>,
) -> Result<Built<'a>, RouteError> {
    // What `explain` reports; nothing is built for a served request.
    let mut note = |account: &str, model: &str, filter: Filter| {
        if let Some(list) = removed.as_deref_mut() {
            list.push(Removed {
                id: CandidateRef { account, model }.key(),
                filter,
            });
        }
    };
    for (i, name) in req.routing.providers.iter().enumerate() {
        if !config.providers.iter().any(|p| &p.name == name) {
            return Err(RouteError::invalid(
                &format!("routing.providers[{i}]"),
                format!("unknown provider {name:?}"),
            ));
        }
    }
    // A logical model the team may use lets it use that model's targets.
    let logical = req
        .logical_model
        .as_ref()
        .and_then(|name| config.logical_models.get(name));
    let team_allows_model = |team: &Team, slug: &str| {
        team.allows_model(slug) || logical.is_some_and(|l| l.targets.iter().any(|t| t == slug))
    };
    let mut any_auto = false;
    let mut slugs: Vec<&str> = Vec::new();
    let targets = std::iter::once((None, req.model.as_str())).chain(
        req.routing
            .models
            .iter()
            .enumerate()
            .map(|(i, m)| (Some(i), m.as_str())),
    );
    for (fallback, text) in targets {
        match resolve(config, text) {
            Some(Target::Auto) => any_auto = true,
            Some(Target::Model { slug }) => {
                if !team_allows_model(team, slug) {
                    return Err(forbidden(
                        RoutingCode::ModelNotAllowed,
                        format!("team {} may not use model {slug:?}", team.name),
                        fallback,
                    ));
                }
                if let Some(CandidateRef { account, .. }) =
                    CandidateRef::parse(text).filter(|_| text != slug)
                    && !team.allows_account(account)
                {
                    return Err(forbidden(
                        RoutingCode::ProviderNotAllowed,
                        format!("team {} may not use provider {account:?}", team.name),
                        fallback,
                    ));
                }
                slugs.push(slug);
            }
            None => {
                return Err(match fallback {
                    None => {
                        let mut e = RouteError::new(
                            RoutingCode::ModelNotFound,
                            format!(
                                "The model `{text}` does not exist or is not served by any provider of this gateway (GET /v1/models lists them)"
                            ),
                        );
                        e.param = Some("model".into());
                        e
                    }
                    Some(i) => RouteError::invalid(
                        &format!("routing.models[{i}]"),
                        format!("unknown fallback model {text:?}"),
                    ),
                });
            }
        }
    }

    let mut built = Built {
        candidates: Vec::new(),
        accounts: Vec::new(),
    };
    let mut set_aside = Built {
        candidates: Vec::new(),
        accounts: Vec::new(),
    };
    let (mut zdr_removed, mut quota_removed, mut budget_removed) = (0usize, 0usize, 0usize);
    let (mut too_long, mut largest_window) = (0usize, 0u32);
    let mut rate_limited: Option<Duration> = None;
    let mut circuit_open: Option<Duration> = None;
    for (index, account) in config.providers.iter().enumerate() {
        let account_out = if !team.allows_account(&account.name) {
            Some(Filter::TeamProviders)
        } else if !(req.routing.providers.is_empty()
            || req.routing.providers.contains(&account.name))
        {
            Some(Filter::RoutingProviders)
        } else {
            None
        };
        if let Some(filter) = account_out {
            for slug in &account.models {
                note(&account.name, slug, filter.clone());
            }
            continue;
        }
        let mut account_status = None;
        for slug in &account.models {
            if !(any_auto || slugs.contains(&slug.as_str())) {
                note(&account.name, slug, Filter::NotRequested);
                continue;
            }
            if !team_allows_model(team, slug) {
                note(&account.name, slug, Filter::TeamModels);
                continue;
            }
            let status = *account_status.get_or_insert_with(|| status(index, account));
            let Some(model) = config.catalog.get(slug) else {
                continue;
            };
            // The request cannot fit its context window: sending it would
            // only earn a context_length_exceeded.
            if model.context_window > 0 && model.context_window < req.estimated_input_tokens {
                largest_window = largest_window.max(model.context_window);
                too_long += 1;
                note(
                    &account.name,
                    slug,
                    Filter::ContextWindow {
                        window: model.context_window,
                    },
                );
                continue;
            }
            if team.zdr && !account.zdr {
                zdr_removed += 1;
                note(&account.name, slug, Filter::Zdr);
                continue;
            }
            if status.budget_exhausted {
                budget_removed += 1;
                note(&account.name, slug, Filter::Budget);
                continue;
            }
            match status.cooling {
                Some(Cooling::RateLimited(wait)) => {
                    rate_limited = Some(rate_limited.map_or(wait, |w| w.min(wait)));
                    note(&account.name, slug, Filter::RateLimited { retry_in: wait });
                    continue;
                }
                Some(Cooling::Quota) => {
                    quota_removed += 1;
                    note(&account.name, slug, Filter::Quota);
                    continue;
                }
                None => {}
            }
            let id = CandidateRef {
                account: &account.name,
                model: slug,
            }
            .key();
            let (health, into) = match judge(&id) {
                Judgement::Healthy => (Health::Healthy, &mut built),
                Judgement::Degraded => (Health::Degraded, &mut built),
                Judgement::HalfOpen => (Health::HalfOpen, &mut built),
                Judgement::FeatureFailing => (Health::Degraded, &mut set_aside),
                Judgement::CircuitOpen(wait) => {
                    circuit_open = Some(circuit_open.map_or(wait, |w| w.min(wait)));
                    note(&account.name, slug, Filter::CircuitOpen { retry_in: wait });
                    continue;
                }
            };
            into.candidates.push(Candidate {
                id,
                provider: account.name.clone(),
                model: slug.clone(),
                logical_model: logical
                    .filter(|l| l.targets.contains(slug))
                    .map(|l| l.name.clone()),
                price: Price {
                    input: model.input,
                    output: model.output,
                    cached_input: model.cached_input,
                },
                features: model.features.intersection(needed).names(),
                zdr: account.zdr,
                tier: model.tier,
                health,
                headroom: status.headroom,
                cache_affinity: false,
                context_window: model.context_window,
                metrics: Vec::new(),
            });
            into.accounts.push(account);
        }
    }
    if !built.candidates.is_empty() {
        for c in &set_aside.candidates {
            note(&c.provider, &c.model, Filter::FeatureUptime);
        }
        return Ok(built);
    }
    if !set_aside.candidates.is_empty() {
        // Every candidate left fails a feature the request needs: trying them
        // beats refusing outright.
        return Ok(set_aside);
    }
    let other_removed = quota_removed + zdr_removed + budget_removed;
    if too_long > 0 && other_removed == 0 && circuit_open.is_none() && rate_limited.is_none() {
        let mut e = RouteError::new(
            RoutingCode::ContextLengthExceeded,
            format!(
                "the request is about {} tokens (estimated from its messages and tools), more than the context window of every model that could take it (largest: {largest_window} tokens)",
                req.estimated_input_tokens
            ),
        );
        e.param = Some("messages".into());
        return Err(e);
    }
    if let Some(wait) = circuit_open.filter(|_| other_removed == 0) {
        let wait = rate_limited.map_or(wait, |r| r.min(wait));
        let mut e = RouteError::new(
            RoutingCode::CircuitOpen,
            "every provider for this request has an open circuit breaker (recent failures); retry later",
        );
        e.retry_after = Some(wait);
        return Err(e);
    }
    if let Some(wait) = rate_limited.filter(|_| other_removed == 0) {
        let mut e = RouteError::new(
            RoutingCode::AllProvidersRateLimited,
            "every provider for this request is rate limited",
        );
        e.retry_after = Some(wait);
        return Err(e);
    }
    if zdr_removed > 0 {
        return Err(RouteError::new(
            RoutingCode::ZdrUnavailable,
            format!(
                "zero data retention is required for team {}, but no ZDR provider serves {:?}",
                team.name, req.model
            ),
        ));
    }
    if budget_removed > 0 {
        return Err(RouteError::new(
            RoutingCode::BudgetExhausted,
            format!(
                "every provider account that serves {:?} for team {} has spent its budget for the period",
                req.model, team.name
            ),
        ));
    }
    if quota_removed > 0 {
        return Err(RouteError::new(
            RoutingCode::AllProvidersFailed,
            "every provider for this request has exhausted its quota",
        ));
    }
    Err(RouteError::new(
        RoutingCode::NoProvider,
        format!("no provider this team may use serves {:?}", req.model),
    ))
}

impl super::Executor {
    /// How a candidate stands before the policy runs: its circuit, and its
    /// success rate for each feature the request needs. `count`: count an
    /// exclusion in the telemetry (not for `explain`'s dry run).
    pub(super) fn judge(
        &self,
        id: &str,
        needed: FeatureSet,
        snapshot: &crate::metrics::Snapshot,
        view: &View,
        count: bool,
    ) -> Judgement {
        let exclusion = |provider: &str, model: &str, why: Exclusion| {
            if count {
                self.telemetry.exclusion(provider, model, why);
            }
        };
        let state = self.breakers.state(id);
        let CandidateRef {
            account: provider,
            model,
        } = CandidateRef::lenient(id);
        // Opened by another replica (or by this one, and announced).
        if let Some(retry_in) = view.circuit_open(id)
            && !matches!(state, CircuitState::HalfOpen { .. })
        {
            exclusion(provider, model, Exclusion::CircuitOpen);
            return Judgement::CircuitOpen(retry_in);
        }
        match state {
            CircuitState::Open { retry_in } => {
                exclusion(provider, model, Exclusion::CircuitOpen);
                return Judgement::CircuitOpen(retry_in);
            }
            CircuitState::HalfOpen { probe_free: false } => {
                exclusion(provider, model, Exclusion::CircuitOpen);
                return Judgement::CircuitOpen(Duration::from_secs(1));
            }
            _ => {}
        }
        // A half-open circuit with its probe slot free is offered as the
        // probe, whatever its feature record: the probe is how it recovers.
        if let CircuitState::HalfOpen { probe_free: true } = state {
            return Judgement::HalfOpen;
        }
        let routing = &self.config.routing;
        // Recent attempts only: a candidate that failed a feature is out
        // while it keeps failing, not for the caller's whole metric window.
        let failing = needed.iter().find(|f| {
            snapshot
                .recent_feature_counts(id, f.name(), routing.feature_uptime_window_secs)
                .is_some_and(|c| {
                    feature_failing(
                        &c,
                        routing.feature_uptime_threshold,
                        routing.feature_uptime_min_requests,
                    )
                })
        });
        if let Some(feature) = failing {
            tracing::debug!(candidate = id, feature = %feature, "feature uptime below threshold");
            exclusion(provider, model, Exclusion::FeatureUptime);
            return Judgement::FeatureFailing;
        }
        match state {
            CircuitState::HalfOpen { .. } => Judgement::HalfOpen,
            CircuitState::Closed { degraded: true } => Judgement::Degraded,
            _ => Judgement::Healthy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::hash_key;

    #[test]
    fn candidates_list_only_the_request_features_they_support() {
        let config = Config::parse(
            "test.toml",
            &format!(
                r#"
                [providers.openai]
                kind = "openai"
                api_key_env = "KEY"
                models = ["gpt-5-mini"]
                [providers.local]
                kind = "openai-compatible"
                base_url = "http://127.0.0.1:9/v1"
                models = ["small"]
                [models.small]
                input = 0.0
                output = 0.0
                tier = 3
                features = ["stream", "temperature"]
                [teams.t]
                key_sha256 = ["{}"]
                "#,
                hash_key("sk-t")
            ),
            &|_| Some("sk-upstream".into()),
        )
        .expect("config parses");
        let req = RouteRequest {
            body: Default::default(),
            model: "auto".into(),
            routing: RoutingOptions::default(),
            stream: true,
            api: switchyard_wire::Api::Chat,
            step_type: None,
            purpose: None,
            metadata: Vec::new(),
            estimated_input_tokens: 10,
            logical_model: None,
        };
        let needed = FeatureSet::from_names(["stream", "tools.function_calling"]);
        let built = build(
            &config,
            &config.teams[0],
            &req,
            needed,
            &|_, _| AccountStatus::default(),
            &|_| Judgement::Healthy,
            None,
        )
        .expect("candidates");
        let features = |id: &str| {
            built
                .candidates
                .iter()
                .find(|c| c.id == id)
                .map(|c| c.features.clone())
        };
        // gpt-5-mini's catalog entry names 13 features; only the request's are passed.
        assert_eq!(
            features("openai/gpt-5-mini"),
            Some(needed.names()),
            "{:?}",
            built.candidates
        );
        // A model lacking one of them lists only what it has, so the policy
        // knows to strip the rest.
        assert_eq!(features("local/small"), Some(vec!["stream".to_string()]));
    }

    #[test]
    fn each_removed_pair_is_reported_with_the_filter_that_removed_it() {
        let config = Config::parse(
            "test.toml",
            &format!(
                r#"
                [providers.open]
                kind = "openai-compatible"
                base_url = "http://127.0.0.1:9/v1"
                models = ["small", "tiny", "other"]
                [providers.private]
                kind = "openai-compatible"
                base_url = "http://127.0.0.1:9/v1"
                zdr = true
                models = ["small", "tiny", "other"]
                [providers.spent]
                kind = "openai-compatible"
                base_url = "http://127.0.0.1:9/v1"
                zdr = true
                models = ["small"]
                [models.small]
                input = 0.0
                output = 0.0
                tier = 3
                features = []
                [models.tiny]
                input = 0.0
                output = 0.0
                tier = 3
                context_window = 100
                features = []
                [models.other]
                input = 0.0
                output = 0.0
                tier = 3
                features = []
                [teams.t]
                key_sha256 = ["{}"]
                zdr = true
                "#,
                hash_key("sk-t")
            ),
            &|_| None,
        )
        .expect("config parses");
        let req = RouteRequest {
            body: Default::default(),
            model: "small".into(),
            routing: RoutingOptions {
                models: vec!["tiny".into()],
                ..RoutingOptions::default()
            },
            stream: false,
            api: switchyard_wire::Api::Chat,
            step_type: None,
            purpose: None,
            metadata: Vec::new(),
            estimated_input_tokens: 500,
            logical_model: None,
        };
        let spent = |_: usize, account: &ProviderAccount| AccountStatus {
            budget_exhausted: account.name == "spent",
            ..AccountStatus::default()
        };
        let mut removed = Vec::new();
        let built = build(
            &config,
            &config.teams[0],
            &req,
            FeatureSet::default(),
            &spent,
            &|_| Judgement::Healthy,
            Some(&mut removed),
        )
        .expect("candidates");
        let ids: Vec<&str> = built.candidates.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["private/small"]);
        let got: Vec<(&str, &str)> = removed
            .iter()
            .map(|r| (r.id.as_str(), r.filter.name()))
            .collect();
        assert_eq!(
            got,
            [
                ("open/small", "zdr"),
                ("open/tiny", "context_window"),
                ("open/other", "not_requested"),
                ("private/tiny", "context_window"),
                ("private/other", "not_requested"),
                ("spent/small", "budget"),
            ]
        );
        assert!(
            removed[1]
                .filter
                .reason(500)
                .contains("about 500 tokens, more than the model's 100-token"),
            "{:?}",
            removed[1]
        );

        // Open circuits and failing features, from the health judgement.
        let mut removed = Vec::new();
        let judge = |id: &str| match id {
            "private/small" => Judgement::CircuitOpen(Duration::from_secs(3)),
            _ => Judgement::FeatureFailing,
        };
        let mut wide = req.clone();
        wide.estimated_input_tokens = 10;
        let built = build(
            &config,
            &config.teams[0],
            &wide,
            FeatureSet::default(),
            &|_, _| AccountStatus::default(),
            &judge,
            Some(&mut removed),
        )
        .expect("the failing ones, as a last resort");
        let ids: Vec<&str> = built.candidates.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["private/tiny", "spent/small"]);
        assert!(
            removed
                .iter()
                .any(|r| r.id == "private/small" && r.filter.name() == "circuit_open"),
            "{removed:?}"
        );
        assert!(
            !removed.iter().any(|r| r.filter.name() == "feature_uptime"),
            "kept when nothing else is left: {removed:?}"
        );
    }
}
