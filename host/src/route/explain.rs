//! Explain: the route a request would take, as a dry run. The stages a
//! served request goes through — features, the team budget, the hard
//! filters, the policy, the probe amendment — run as they would, and report
//! what each decided: every (account, model) pair a filter removed and
//! which filter, the candidates offered, the policy's plan (label, score,
//! explanation, decision time) and the first attempt that would be sent.
//!
//! Nothing is sent to a provider, no rate limit or budget is charged, no
//! exclusion or decision is counted, and a plugin's fault is reported, not
//! counted against it.

use std::sync::Arc;

use serde_json::{Value, json};
use switchyard_wire::feature as features;

use super::candidates::{self, Removed};
use super::{Executor, RouteError, RouteRequest, decide, logical};
use crate::directory::DirectoryEntry;
use crate::policy::{Candidate, Health};
use crate::state::now_ms;

/// An error a stage would have answered, in the response's terms.
fn error(e: &RouteError) -> Value {
    json!({ "status": e.status, "code": e.code.as_str(), "message": e.message })
}

fn api_name(api: switchyard_wire::Api) -> &'static str {
    match api {
        switchyard_wire::Api::Chat => "chat.completions",
        switchyard_wire::Api::Responses => "responses",
        switchyard_wire::Api::Messages => "messages",
    }
}

fn health(h: Health) -> &'static str {
    match h {
        Health::Healthy => "healthy",
        Health::Degraded => "degraded",
        Health::HalfOpen => "half_open",
    }
}

fn offered(c: &Candidate) -> Value {
    json!({
        "id": c.id,
        "provider": c.provider,
        "model": c.model,
        "logical_model": c.logical_model,
        "health": health(c.health),
        "headroom": c.headroom,
        "tier": c.tier,
        "zdr": c.zdr,
        "context_window": c.context_window,
        "price": { "input": c.price.input, "output": c.price.output, "cached_input": c.price.cached_input },
        "features": c.features,
    })
}

fn removed(list: &[Removed], tokens: u32) -> Value {
    list.iter()
        .map(
            |r| json!({ "id": r.id, "filter": r.filter.name(), "reason": r.filter.reason(tokens) }),
        )
        .collect()
}

impl Executor {
    /// Explains how `req` would be routed for `entry`'s team (see the
    /// module). Always an `explanation` object: a stage that would refuse
    /// the request fills `error` and the stages after it are absent.
    pub async fn explain(
        self: &Arc<Self>,
        entry: &Arc<DirectoryEntry>,
        mut req: RouteRequest,
    ) -> Value {
        let team = &entry.team;
        let mut out = json!({
            "object": "explanation",
            "team": team.name,
            "api": api_name(req.api),
            "model": req.model,
            "estimated_input_tokens": req.estimated_input_tokens,
        });
        let fail = |mut out: Value, stage: &str, e: &RouteError| {
            out["error"] = error(e);
            out["error"]["stage"] = json!(stage);
            out
        };
        let logical = match logical::expand(&self.config, team, &mut req) {
            Ok(l) => l,
            Err(e) => return fail(out, "model", &e),
        };
        let features = features::detect(&req.body);
        out["features"] = json!(features.names());
        if let Some(l) = logical {
            out["logical_model"] = json!(l.name);
            if let Err(e) = logical::check_capabilities(l, features) {
                return fail(out, "model", &e);
            }
        }
        let window = req.routing.interval_seconds;
        let snapshot = Arc::new(self.metrics.snapshot());
        let shared = self.view(team, now_ms() / 1000).await;
        if let Err(e) = Self::check_team_budget(team, &shared) {
            return fail(out, "admission", &e);
        }
        let estimated_tokens = u64::from(req.estimated_input_tokens);
        let mut removals = Vec::new();
        let built = candidates::build(
            &self.config,
            team,
            &req,
            features,
            &|i, account| shared.account_status(i, account, estimated_tokens),
            &|id| self.judge(id, features, &snapshot, &shared.view, false),
            Some(&mut removals),
        );
        let mut built = match built {
            Ok(built) => built,
            Err(e) => {
                out["removed"] = removed(&removals, req.estimated_input_tokens);
                return fail(out, "candidates", &e);
            }
        };
        self.backups.exclude(
            team,
            logical.map(|l| l.name.as_str()),
            &mut built.candidates,
            &mut built.accounts,
            Some(&mut removals),
        );
        out["removed"] = removed(&removals, req.estimated_input_tokens);
        out["candidates"] = built.candidates.iter().map(offered).collect();
        let accounts = built.accounts;
        let policy_request = decide::policy_request(&req, team, features.names());
        let (dry, candidates) = self
            .dry_decide(
                entry,
                &req.body,
                policy_request,
                built.candidates,
                snapshot,
                window,
            )
            .await;
        let mut policy = json!({
            "version": dry.policy,
            "contract": dry.contract,
            "decision_us": dry.decision.stats.elapsed.as_micros() as u64,
        });
        if let Some(fault) = &dry.fault {
            policy["team_plugin_fault"] =
                json!({ "kind": fault.kind(), "message": fault.to_string() });
        }
        let mut plan = match dry.decision.result {
            Ok(plan) => plan,
            Err(e) => {
                policy["error"] = json!({ "kind": e.kind(), "message": e.to_string() });
                out["policy"] = policy;
                return out;
            }
        };
        let notes = &dry.decision.notes;
        policy["label"] = json!(plan.label);
        policy["score"] = json!(notes.score);
        policy["explanation"] = json!(notes.explanation);
        policy["plan"] = plan
            .attempts
            .iter()
            .map(|a| {
                json!({
                    "candidate": candidates.get(a.candidate).map(|c| c.id.as_str()),
                    "strip": a.strip,
                    "timeout_ms": a.timeout_ms,
                    "retries": a.retries,
                })
            })
            .collect();
        out["policy"] = policy;
        // The executor's amendment: a half-open candidate is probed first.
        decide::offer_probes(&mut plan, &candidates, features.len());
        if let Some(first) = plan.attempts.first()
            && let (Some(c), Some(account)) = (
                candidates.get(first.candidate),
                accounts.get(first.candidate),
            )
        {
            out["first_attempt"] = json!({
                "candidate": c.id,
                "provider": c.provider,
                "model": c.model,
                "upstream_model": account.upstream_model(&self.config.catalog, &c.model),
                "strip": first.strip,
                "probe": c.health == Health::HalfOpen,
            });
        }
        out
    }
}
