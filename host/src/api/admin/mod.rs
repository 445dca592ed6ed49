//! The admin API under `/admin/v1` and `GET /metrics` (Prometheus text).
//!
//! Two credentials open it: the operator's admin token (config/env), which
//! may do everything, and team admin tokens (created by the operator), which
//! manage only their own team's policies. Team API keys never do.
//!
//! - `GET /admin/v1/metrics?window=1h`: the per-candidate table as JSON.
//! - [`teams`]: teams, their allow-lists and ZDR, and their keys.
//! - [`policies`]: policy uploads, versions, activation, rollback, config.
//! - [`spend`]: spend, baseline spend and savings by model and policy label.
//! - [`log`]: the request log, filtered and paged.

pub mod log;
pub mod policies;
pub mod shadow;
pub mod spend;
pub mod teams;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use std::sync::Arc;

use super::{AppState, bearer_token, error_response};
use crate::config::Secret;
use crate::directory::{Directory, DirectoryEntry};
use crate::errors::{AuthCode, ServerCode, StoreCode};
use crate::health::CircuitState as Circuit;
use crate::metrics::{MIN_WINDOW_SECS, Summary, parse_window};
use crate::route::RouteError;
use crate::store::StoreError;
use crate::telemetry::Family;
use switchyard_wire::candidate::CandidateRef;

/// `GET /metrics`.
pub async fn prometheus(State(state): State<AppState>) -> Response {
    let circuits = state.breakers.all();
    let directory = state.directory.snapshot();
    let entries = directory.entries();
    let extra = [
        Family {
            name: "switchyard_circuit_state",
            help: "Circuit breaker per account and model: 0 closed, 1 half-open, 2 open.",
            kind: "gauge",
            labels: &["provider", "model"],
            samples: circuits
                .iter()
                .map(|(id, s, _)| (id_labels(id), f64::from(s.gauge())))
                .collect(),
        },
        Family {
            name: "switchyard_circuit_opens_total",
            help: "Times each circuit opened (re-openings after a failed probe included).",
            kind: "counter",
            labels: &["provider", "model"],
            samples: circuits
                .iter()
                .map(|(id, _, opens)| (id_labels(id), *opens as f64))
                .collect(),
        },
        Family {
            name: "switchyard_policy_compilations_total",
            help: "Policy components compiled to put a version in service (at start-up, on an activation or rollback) because no compiled copy was kept; uploads compile in the compile worker and are kept.",
            kind: "counter",
            labels: &[],
            samples: vec![(Vec::new(), state.directory.compilations() as f64)],
        },
        Family {
            name: "switchyard_team_policy_active_version",
            help: "The policy version each team's requests use (0: the bundled default policy).",
            kind: "gauge",
            labels: &["team"],
            samples: entries
                .iter()
                .map(|t| {
                    let version = t.policy.as_ref().map_or(0, |p| p.version);
                    (vec![t.team.name.clone()], f64::from(version))
                })
                .collect(),
        },
        Family {
            name: "switchyard_team_policy_set_aside",
            help: "1 when a team's active plugin was set aside after repeated faults (the default policy serves the team until a version is activated).",
            kind: "gauge",
            labels: &["team", "version"],
            samples: entries
                .iter()
                .filter_map(|t| t.policy.as_ref())
                .map(|p| {
                    let aside = if p.in_service() { 0.0 } else { 1.0 };
                    (vec![p.team.clone(), p.label.clone()], aside)
                })
                .collect(),
        },
        Family {
            name: "switchyard_metric_store_bytes",
            help: "Approximate heap held by the live metric store.",
            kind: "gauge",
            labels: &[],
            samples: vec![(Vec::new(), state.metrics.heap_bytes() as f64)],
        },
    ];
    let mut extra = Vec::from(extra);
    extra.extend(state.load.families());
    extra.extend(state.shared.families());
    extra.extend(state.spending.families());
    extra.extend(state.log.families());
    extra.extend(state.executor.backups().families());
    #[cfg(feature = "alloc-count")]
    extra.push(Family {
        name: "switchyard_allocations_total",
        help: "Heap allocations made by the process (a build with the alloc-count feature only).",
        kind: "counter",
        labels: &[],
        samples: vec![(Vec::new(), crate::alloc_count::allocations() as f64)],
    });
    let body = state.telemetry.render(&extra);
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

fn id_labels(id: &str) -> Vec<String> {
    let c = CandidateRef::lenient(id);
    let (provider, model) = (c.account, c.model);
    vec![provider.to_string(), model.to_string()]
}

/// Who is calling the admin API.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    /// The operator's admin token: every route, every team.
    Operator,
    /// A team admin token: that team's policies only.
    TeamAdmin(String),
}

impl Caller {
    /// Recorded as the uploader of a policy version.
    pub fn describe(&self) -> String {
        match self {
            Caller::Operator => "operator".into(),
            Caller::TeamAdmin(team) => format!("team-admin:{team}"),
        }
    }
}

fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, RouteError> {
    let Some(token) = bearer_token(headers)?.filter(|t| !t.is_empty()) else {
        return Err(RouteError::new(
            AuthCode::MissingAdminToken,
            "The admin API needs the admin token (or a team admin token) as `Authorization: Bearer TOKEN`.",
        ));
    };
    if let Some(expected) = state.config.admin_token.as_ref().map(Secret::expose)
        && constant_time_eq(token.as_bytes(), expected.as_bytes())
    {
        return Ok(Caller::Operator);
    }
    let directory = state.directory.snapshot();
    if let Some(team) = directory.admin_of(token) {
        return Ok(Caller::TeamAdmin(team.to_string()));
    }
    let message = if directory.by_key(token).is_some() {
        "Team API keys are not accepted on the admin API: use the admin token, or a team admin token for your own team's policies."
    } else {
        "Incorrect admin token."
    };
    Err(RouteError::new(AuthCode::InvalidAdminToken, message))
}

/// Lets only the operator through (team-wide and gateway-wide routes).
pub fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), RouteError> {
    if state.config.admin_token.is_none() {
        return Err(RouteError::new(
            AuthCode::AdminDisabled,
            "This admin route is disabled: no admin token is configured (set SWITCHYARD_ADMIN_TOKEN, or [admin] token_env).",
        ));
    }
    match caller(state, headers)? {
        Caller::Operator => Ok(()),
        Caller::TeamAdmin(team) => Err(RouteError::new(
            AuthCode::OperatorOnly,
            format!(
                "This route needs the operator's admin token; the team admin token of team {team:?} manages only that team's policies."
            ),
        )),
    }
}

/// Lets the operator, or `team`'s own admin token, through.
pub fn authorize_team(
    state: &AppState,
    headers: &HeaderMap,
    team: &str,
) -> Result<Caller, RouteError> {
    match caller(state, headers)? {
        Caller::TeamAdmin(own) if own != team => Err(RouteError::new(
            AuthCode::OtherTeam,
            format!(
                "This team admin token belongs to team {own:?}; it cannot act on team {team:?}."
            ),
        )),
        caller => Ok(caller),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Deserialize)]
pub struct WindowQuery {
    window: Option<String>,
}

fn distribution(summary: &Summary, kind: &str) -> Value {
    let v = |stat: &str| summary.value(&format!("{stat}_{kind}"));
    json!({
        "count": match kind {
            "latency" => summary.latency.count,
            "e2e_latency" => summary.e2e.count,
            _ => summary.ttft.count,
        },
        "avg": v("avg"), "min": v("min"), "p50": v("p50"), "p90": v("p90"),
        "p95": v("p95"), "p99": v("p99"), "max": v("max"),
    })
}

/// `GET /admin/v1/metrics?window=1h`.
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<WindowQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(e) = authorize(&state, &headers) {
        return error_response(&e);
    }
    let window_text = match query {
        Ok(Query(q)) => q.window,
        Err(e) => return error_response(&RouteError::invalid("window", e.body_text())),
    };
    let window = match window_text.as_deref().map(parse_window) {
        None => MIN_WINDOW_SECS,
        Some(Ok(secs)) => secs,
        Some(Err(e)) => return error_response(&RouteError::invalid("window", e.to_string())),
    };
    let config = &state.config;
    let store = &state.metrics;
    let now = store.now_ms();
    let circuits = state.breakers.all();
    let routing = &config.routing;
    let mut rows = Vec::new();
    for (id, circuit, opens) in circuits {
        let Some(summary) = store.summary(&id, now, window) else {
            continue;
        };
        let c = CandidateRef::lenient(&id);
        let (provider, model) = (c.account, c.model);
        let c = summary.counts;
        let mut features = Vec::new();
        for feature in switchyard_wire::feature::FEATURES
            .iter()
            .copied()
            .chain(std::iter::once("reasoning.effort"))
        {
            let Some(fs) = store.feature_summary(&id, feature, now, window) else {
                continue;
            };
            if fs.counts.requests == 0 {
                continue;
            }
            features.push(json!({
                "feature": feature,
                "requests": fs.counts.requests,
                "ok": fs.counts.ok,
                "errors": fs.counts.errors + fs.counts.timeouts,
                "uptime": fs.counts.uptime(),
                "excluded": crate::health::feature_failing(
                    &fs.counts,
                    routing.feature_uptime_threshold,
                    routing.feature_uptime_min_requests,
                ),
                "p50_latency_ms": fs.value("p50_latency"),
            }));
        }
        let (state_name, degraded, retry_in_ms) = match circuit {
            Circuit::Closed { degraded } => ("closed", degraded, None),
            Circuit::HalfOpen { .. } => ("half_open", false, None),
            Circuit::Open { retry_in } => ("open", false, Some(retry_in.as_millis() as u64)),
        };
        rows.push(json!({
            "id": id,
            "provider": provider,
            "model": model,
            "circuit": { "state": state_name, "degraded": degraded, "opens": opens, "retry_in_ms": retry_in_ms },
            "requests": c.requests,
            "ok": c.ok,
            "errors": c.errors,
            "timeouts": c.timeouts,
            "rate_limited": c.rate_limited,
            "rejected": c.rejected,
            "broken_streams": c.broken,
            "uptime": c.uptime(),
            "throughput_rps": summary.value("throughput"),
            "latency_ms": distribution(&summary, "latency"),
            "e2e_latency_ms": distribution(&summary, "e2e_latency"),
            "ttft_ms": distribution(&summary, "ttft"),
            "tokens": {
                "input_avg": summary.value("input_tokens"),
                "output_avg": summary.value("output_tokens"),
                "total_avg": summary.value("total_tokens"),
            },
            "features": features,
        }));
    }
    let policies: Vec<Value> = state
        .telemetry
        .policy_stats()
        .into_iter()
        .map(|row| {
            json!({
                "team": row.team,
                "label": row.label,
                "matches": row.stats.matches,
                "successes": row.stats.successes,
                "errors": row.stats.errors,
                "fallbacks": row.stats.fallbacks,
                "median_latency_ms": row.stats.median_latency_ms(),
            })
        })
        .collect();
    axum::Json(json!({
        "window": window_text.unwrap_or_else(|| "15m".into()),
        "window_seconds": window,
        "now_ms": now,
        "candidates": rows,
        "policies": policies,
    }))
    .into_response()
}

/// Runs blocking work (SQLite, compiling a component) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RouteError> + Send + 'static,
) -> Result<T, RouteError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(RouteError::new(
            ServerCode::Internal,
            format!("the admin task failed: {e}"),
        ))
    })
}

/// The caller's error for a store failure: what was missing or taken, or
/// that the store itself failed (e.g. a full disk), never a silent success.
pub(crate) fn store_error(error: StoreError) -> RouteError {
    let message = error.to_string();
    let code = match error {
        StoreError::NoTeam(_) => StoreCode::TeamNotFound,
        StoreError::TeamExists(_) => StoreCode::TeamExists,
        StoreError::NoVersion { .. } => StoreCode::PolicyVersionNotFound,
        StoreError::NothingToRollBack(_) => StoreCode::NothingToRollBack,
        StoreError::NoShadow(_) => StoreCode::NoShadow,
        StoreError::KeyExists => StoreCode::KeyExists,
        StoreError::NoKey { .. } => StoreCode::KeyNotFound,
        StoreError::Open { .. }
        | StoreError::Create { .. }
        | StoreError::TooNew { .. }
        | StoreError::Sqlite(_) => {
            tracing::error!(error = %message, "store failure");
            return RouteError::new(StoreCode::StoreUnavailable, message);
        }
    };
    RouteError::new(code, message)
}

/// Parses a JSON object body, naming what is wrong with it.
pub(crate) fn json_object(bytes: &[u8]) -> Result<serde_json::Map<String, Value>, RouteError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(RouteError::invalid(
            "body",
            "The request body must be a JSON object.",
        )),
        Err(e) => Err(RouteError::invalid(
            "body",
            format!("The request body is not valid JSON: {e}"),
        )),
    }
}

/// A team as the admin API shows it: access, and which policy serves it.
pub(crate) fn team_view(entry: &DirectoryEntry) -> Value {
    let team = &entry.team;
    let policy = match &entry.policy {
        Some(p) => {
            let info = p.policy.info();
            let aside = p.set_aside();
            json!({
                "active_version": p.version,
                "serving": if aside.is_some() { "default" } else { "plugin" },
                "name": info.name,
                "plugin_version": info.version,
                "sha256": p.policy.sha256(),
                "wit_version": p.policy.wit_version(),
                "faults": p.faults(),
                "consecutive_faults": p.consecutive_faults(),
                "set_aside": aside,
            })
        }
        None => json!({
            "active_version": null,
            "serving": "default",
            "load_error": entry.policy_error,
        }),
    };
    let shadow = match (&entry.shadow, &entry.shadow_error) {
        (Some(s), _) => json!({
            "version": s.version,
            "sample": s.sample,
            "attached_at": s.attached_at,
        }),
        (None, Some(e)) => json!({ "load_error": e }),
        (None, None) => Value::Null,
    };
    json!({
        "object": "team",
        "name": team.name,
        "source": entry.origin.as_str(),
        "created_at": entry.created_at,
        "allowed_models": team.allowed_models,
        "allowed_providers": team.allowed_providers,
        "zdr": team.zdr,
        "policy": policy,
        "shadow": shadow,
    })
}

/// The team's current view, as the answer of a write to it.
pub(crate) fn team_answer(state: &AppState, status: StatusCode, team: &str) -> Answer {
    ok(status, team_view(find_team(state, team)?.as_ref()))
}

/// The current view of `team`, or 404.
pub(crate) fn find_team(state: &AppState, team: &str) -> Result<Arc<DirectoryEntry>, RouteError> {
    state
        .directory
        .snapshot()
        .team(team)
        .cloned()
        .ok_or_else(|| store_error(StoreError::NoTeam(team.to_string())))
}

/// Reads a JSON object body of at most [`MAX_JSON_BODY`] bytes (an empty
/// body when `empty_ok` reads as `{}`).
pub(crate) async fn read_json(
    state: &AppState,
    headers: &HeaderMap,
    body: axum::body::Body,
    empty_ok: bool,
) -> Result<serde_json::Map<String, Value>, RouteError> {
    let bytes = read_body(state, headers, body, MAX_JSON_BODY).await?;
    if empty_ok && bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    check_json_shape(state, &bytes)?;
    json_object(&bytes)
}

/// A request body of at most `limit` bytes, read within the intake's limits.
pub(crate) async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> Result<bytes::Bytes, RouteError> {
    let (bytes, _charge) = state
        .load
        .intake
        .read_body(headers, body, limit)
        .await
        .map_err(|e| e.to_error(limit, "request body"))?;
    Ok(bytes)
}

/// Refuses a JSON document with more values than `[server] max_json_values`
/// before anything parses it.
pub(crate) fn check_json_shape(state: &AppState, bytes: &[u8]) -> Result<(), RouteError> {
    let max_values = state.config.server.max_json_values;
    crate::api::intake::json_shape(bytes, max_values).map_err(|e| e.to_error())?;
    Ok(())
}

/// Largest JSON body an admin route reads (team settings, key labels,
/// policy configs).
pub(crate) const MAX_JSON_BODY: usize = 1 << 20;

/// A path's parameters, or why they could not be read.
pub(crate) type PathResult<T> = Result<Path<T>, axum::extract::rejection::PathRejection>;

/// The parameters of a path, or a 400 naming what is wrong with them.
pub(crate) fn path<T>(p: PathResult<T>) -> Result<T, RouteError> {
    p.map(|Path(v)| v)
        .map_err(|e| RouteError::invalid("path", e.body_text()))
}

/// What an admin handler answers: a status and a JSON body, or an error.
pub(crate) type Answer = Result<(StatusCode, axum::Json<Value>), RouteError>;

/// A JSON answer with its status.
pub(crate) fn ok(status: StatusCode, body: Value) -> Answer {
    Ok((status, axum::Json(body)))
}

/// Runs an admin write: under the write lock, `work` on a blocking thread
/// (SQLite), then the rebuild of the team directory, swapped in before the
/// lock is released.
pub(crate) async fn write<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&Directory) -> Result<T, RouteError> + Send + 'static,
) -> Result<T, RouteError> {
    let teams = state.directory.clone();
    let _write = teams.write_lock().await;
    let writer = teams.clone();
    blocking(move || {
        let out = work(&writer)?;
        writer.reload().map_err(store_error)?;
        Ok(out)
    })
    .await
}
