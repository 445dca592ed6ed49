//! Decide: the team's policy (or the bundled default standing in for it)
//! turns the candidates into a plan, checked against what it was offered.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Team;
use crate::directory::{ActivePolicy, DirectoryEntry};
use crate::metrics::MetricSource;
use crate::policy::{
    Candidate, Contract, Notes, PlannedAttempt, Policy, PolicyError, RefusalKind, Request,
    RoutePlan, v0_2,
};
use switchyard_wire::CanonicalRequest;
use switchyard_wire::content::Signals;

use super::{Executor, RouteError, RouteRequest};
use crate::errors::RoutingCode;

/// What the policy is told about a request. The team config is added for a
/// 0.1 policy only (0.2 gets it once per instance, in its setup).
pub(super) fn policy_request(req: &RouteRequest, team: &Team, features: Vec<String>) -> Request {
    Request {
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
            .max_output_tokens()
            .map(|n| n.min(u64::from(u32::MAX)) as u32),
        prompt_cache_key: req.body.prompt_cache_key.is_some(),
        metadata: req.metadata.clone(),
        config: String::new(),
    }
}

/// The context of a 0.2 decision: the setup, and the request's content
/// signals when the policy asked for them and the operator allows them.
fn context(
    setup: &Arc<v0_2::Setup>,
    policy: &Policy,
    allowed: bool,
    body: &CanonicalRequest,
    text_limit: usize,
) -> v0_2::Context {
    v0_2::Context {
        setup: setup.clone(),
        content: (allowed && policy.wants_content())
            .then(|| Arc::new(Signals::of(body, text_limit))),
    }
}

/// Gives a 0.1 policy the team config in the request.
fn config_for(policy: &Policy, request: &mut Request, setup: &v0_2::Setup) {
    if policy.contract() == Contract::V0_1 {
        request.config.clear();
        request.config.push_str(setup.config());
    }
}

impl Executor {
    /// Asks the team's plugin (if it has one in service) for a plan, on a
    /// blocking thread and within the plugin's decision slots, so a slow or
    /// looping plugin holds only its own team's requests. A fault is counted
    /// against the plugin and the request is routed by the default policy.
    /// Gives back the request and candidates it was handed, and says which
    /// policy decided (for the request log), whatever the outcome.
    pub(super) async fn decide(
        &self,
        entry: &DirectoryEntry,
        body: &CanonicalRequest,
        mut request: Request,
        mut candidates: Vec<Candidate>,
        source: Arc<dyn MetricSource>,
        window: u32,
    ) -> Decided {
        let team = &entry.team;
        let mut stood_in_for = None;
        if let Some(plugin) = entry.policy.as_ref().filter(|p| p.in_service()) {
            let by = |elapsed, stood_in_for| DecidedBy {
                policy: plugin.label.clone(),
                contract: plugin.policy.contract().version(),
                elapsed,
                stood_in_for,
            };
            match self
                .plugin_decision(entry, plugin, body, request, candidates, &source, window)
                .await
            {
                PluginRun::Skipped(back_request, back_candidates) => {
                    request = back_request;
                    candidates = back_candidates;
                }
                PluginRun::Panicked(message) => {
                    return Decided {
                        result: Err(RouteError::new(
                            RoutingCode::RoutingPolicyFault,
                            format!("the routing policy failed: {message}"),
                        )),
                        candidates: Vec::new(),
                        request: None,
                        by: by(Duration::ZERO, None),
                    };
                }
                PluginRun::Ran(decision, back_request, back_candidates) => {
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
                            stood_in_for = Some((plugin.label.clone(), fault.kind()));
                        }
                        result => {
                            self.telemetry.decision(
                                &team.name,
                                &plugin.label,
                                decision.stats.elapsed,
                                None,
                            );
                            plugin.record_success();
                            return Decided {
                                result: Self::plan_or_error(team, result)
                                    .map(|plan| (plan, decision.notes)),
                                candidates,
                                request: Some(request),
                                by: by(decision.stats.elapsed, None),
                            };
                        }
                    }
                }
            }
        }
        let decision =
            self.default_decision(entry, body, &mut request, &mut candidates, source, window);
        self.count_misbehaviour(&team.name, "default", &decision.stats);
        let fault = decision
            .result
            .as_ref()
            .err()
            .filter(|e| e.is_fault())
            .map(PolicyError::kind);
        self.telemetry
            .decision(&team.name, "default", decision.stats.elapsed, fault);
        Decided {
            result: Self::plan_or_error(team, decision.result).map(|plan| (plan, decision.notes)),
            candidates,
            request: Some(request),
            by: DecidedBy {
                policy: "default".into(),
                contract: self.default.policy().contract().version(),
                elapsed: decision.stats.elapsed,
                stood_in_for,
            },
        }
    }

    /// The team plugin's decision, on a blocking thread and within the
    /// plugin's decision slots, so a slow or looping plugin holds only its
    /// own team's requests. Counts nothing: the callers do.
    #[allow(clippy::too_many_arguments)]
    async fn plugin_decision(
        &self,
        entry: &DirectoryEntry,
        plugin: &Arc<ActivePolicy>,
        body: &CanonicalRequest,
        mut request: Request,
        mut candidates: Vec<Candidate>,
        source: &Arc<dyn MetricSource>,
        window: u32,
    ) -> PluginRun {
        let settings = &self.config.plugins;
        let permit = plugin.slots.acquire().await;
        if permit.is_err() || !plugin.in_service() {
            return PluginRun::Skipped(request, candidates);
        }
        let policy = &plugin.policy;
        if !policy.info().metrics.is_empty() {
            policy.precompute_metrics(&mut candidates, source.as_ref(), window);
        }
        config_for(policy, &mut request, &entry.setup);
        let context = context(
            &entry.setup,
            policy,
            entry.content_allowed(settings, false),
            body,
            settings.content_text_bytes,
        );
        let source = source.clone();
        let warm = plugin.clone();
        let ran = tokio::task::spawn_blocking(move || {
            let decision = warm.pool.decide_in(&context, &request, &candidates, source);
            (decision, request, candidates)
        })
        .await;
        drop(permit);
        match ran {
            Ok((decision, request, candidates)) => PluginRun::Ran(decision, request, candidates),
            Err(e) => PluginRun::Panicked(e.to_string()),
        }
    }

    /// The bundled default policy's decision, standing in for the team's
    /// plugin or serving a team without one. Counts nothing: the callers do.
    fn default_decision(
        &self,
        entry: &DirectoryEntry,
        body: &CanonicalRequest,
        request: &mut Request,
        candidates: &mut [Candidate],
        source: Arc<dyn MetricSource>,
        window: u32,
    ) -> crate::policy::Decision {
        let settings = &self.config.plugins;
        // Standing in for the team's plugin: the team's config is written
        // for that plugin, so the default policy gets its own.
        let setup = match entry.policy {
            Some(_) => &entry.standin,
            None => &entry.setup,
        };
        let policy = self.default.policy();
        if !policy.info().metrics.is_empty() {
            policy.precompute_metrics(candidates, source.as_ref(), window);
        }
        config_for(policy, request, setup);
        let context = context(
            setup,
            policy,
            entry.content_allowed(settings, true),
            body,
            settings.content_text_bytes,
        );
        self.default
            .decide_in(&context, request, candidates, source)
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
    fn plan_or_error(
        team: &Team,
        result: Result<RoutePlan, PolicyError>,
    ) -> Result<RoutePlan, RouteError> {
        match result {
            Ok(plan) => Ok(plan),
            Err(PolicyError::Refused { kind, message }) => Err(match kind {
                RefusalKind::NoRoute if team.zdr => RouteError::new(
                    RoutingCode::ZdrUnavailable,
                    format!(
                        "zero data retention is required for team {}, but no ZDR provider can serve this request: {message}",
                        team.name
                    ),
                ),
                RefusalKind::NoRoute => RouteError::new(RoutingCode::NoCapableProvider, message),
                RefusalKind::BadConfig | RefusalKind::Internal => RouteError::new(
                    RoutingCode::RoutingPolicyError,
                    format!("the routing policy could not route this request: {message}"),
                ),
            }),
            Err(fault) => {
                tracing::error!(team = %team.name, error = %fault, "routing policy fault");
                Err(RouteError::new(
                    RoutingCode::RoutingPolicyFault,
                    format!("the routing policy failed: {fault}"),
                ))
            }
        }
    }
}

/// The executor's amendment to every plan: a candidate whose circuit is
/// half-open (its recovery time passed) is tried first, ahead of healthy
/// peers, so that it is probed with one real request per recovery window and
/// returns to its rank as soon as it answers — whether or not the policy
/// ranked it first. One the policy left out is added when it supports every
/// feature the request needs (nothing to strip). The breaker lets one probe
/// through at a time; a request that finds the slot taken moves on.
pub(super) fn offer_probes(plan: &mut RoutePlan, candidates: &[Candidate], needed: usize) {
    let probes = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.health == crate::policy::Health::HalfOpen);
    for (front, (index, candidate)) in probes.enumerate() {
        if let Some(at) = plan.attempts.iter().position(|a| a.candidate == index) {
            if at > front {
                let attempt = plan.attempts.remove(at);
                plan.attempts.insert(front, attempt);
            }
        } else if candidate.features.len() == needed {
            plan.attempts.insert(
                front,
                PlannedAttempt {
                    candidate: index,
                    strip: Vec::new(),
                    timeout_ms: None,
                    retries: None,
                },
            );
        }
    }
}

/// What [`Executor::decide`] gives back: the plan (or the caller's error),
/// the request and candidates it was handed, and who decided.
pub(super) struct Decided {
    pub(super) result: Result<(RoutePlan, Notes), RouteError>,
    pub(super) candidates: Vec<Candidate>,
    /// `None` only when the plugin's thread panicked with it.
    pub(super) request: Option<Request>,
    pub(super) by: DecidedBy,
}

/// Which policy decided, and how long it took.
pub(super) struct DecidedBy {
    /// `default`, or the team plugin's version label (`v3`).
    pub(super) policy: String,
    pub(super) contract: &'static str,
    pub(super) elapsed: Duration,
    /// The team plugin whose fault the default stood in for, and the fault.
    pub(super) stood_in_for: Option<(String, &'static str)>,
}

/// How a team plugin's decision went.
enum PluginRun {
    /// Not run (its slots closed, or it left service while waiting): the
    /// request and candidates, given back.
    Skipped(Request, Vec<Candidate>),
    /// Its decision, with the request and candidates given back.
    Ran(crate::policy::Decision, Request, Vec<Candidate>),
    /// The blocking task panicked.
    Panicked(String),
}

/// A decision `explain` reports: which policy made it, what it returned,
/// and, when the team's plugin faulted, that the default stood in.
pub(super) struct DryDecision {
    /// `default`, or the team's plugin version label (`v3`).
    pub policy: String,
    /// The contract version the deciding policy runs on.
    pub contract: &'static str,
    pub decision: crate::policy::Decision,
    /// The team plugin's fault, when the default decided in its place.
    pub fault: Option<PolicyError>,
}

impl Executor {
    /// What [`Executor::decide`] would return for this request, without its
    /// side effects: no fault is counted against the plugin (nor can set it
    /// aside), no decision is counted in the telemetry.
    pub(super) async fn dry_decide(
        &self,
        entry: &DirectoryEntry,
        body: &CanonicalRequest,
        mut request: Request,
        mut candidates: Vec<Candidate>,
        source: Arc<dyn MetricSource>,
        window: u32,
    ) -> (DryDecision, Vec<Candidate>) {
        let mut fault = None;
        if let Some(plugin) = entry.policy.as_ref().filter(|p| p.in_service()) {
            let dry = |decision| DryDecision {
                policy: plugin.label.clone(),
                contract: plugin.policy.contract().version(),
                decision,
                fault: None,
            };
            match self
                .plugin_decision(entry, plugin, body, request, candidates, &source, window)
                .await
            {
                PluginRun::Skipped(back_request, back_candidates) => {
                    request = back_request;
                    candidates = back_candidates;
                }
                // What the live path answers with a routing_policy_fault.
                PluginRun::Panicked(message) => {
                    let decision = crate::policy::Decision {
                        result: Err(PolicyError::Trap(format!(
                            "the routing policy failed: {message}"
                        ))),
                        stats: Default::default(),
                        logs: Vec::new(),
                        notes: Notes::default(),
                    };
                    return (dry(decision), Vec::new());
                }
                PluginRun::Ran(decision, back_request, back_candidates) => {
                    request = back_request;
                    candidates = back_candidates;
                    match decision.result {
                        Err(e) if e.is_fault() => fault = Some(e),
                        _ => return (dry(decision), candidates),
                    }
                }
            }
        }
        let decision =
            self.default_decision(entry, body, &mut request, &mut candidates, source, window);
        (
            DryDecision {
                policy: "default".into(),
                contract: self.default.policy().contract().version(),
                decision,
                fault,
            },
            candidates,
        )
    }
}
