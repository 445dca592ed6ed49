//! Operator endpoints: `GET /metrics` (Prometheus text) and
//! `GET /admin/v1/metrics?window=1h` (the per-candidate table as JSON, behind
//! the admin token).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, bearer_token, error_response};
use crate::health::State as Circuit;
use crate::metrics::telemetry::Family;
use crate::metrics::{MIN_WINDOW_SECS, Summary, parse_window};
use crate::route::RouteError;

/// `GET /metrics`.
pub async fn prometheus(State(state): State<AppState>) -> Response {
    let executor = &state.executor;
    let circuits = executor.breakers().all();
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
            name: "switchyard_metric_store_bytes",
            help: "Approximate heap held by the live metric store.",
            kind: "gauge",
            labels: &[],
            samples: vec![(Vec::new(), executor.metrics().heap_bytes() as f64)],
        },
    ];
    let body = executor.telemetry().render(&extra);
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

fn id_labels(id: &str) -> Vec<String> {
    let (provider, model) = id.split_once('/').unwrap_or((id, ""));
    vec![provider.to_string(), model.to_string()]
}

/// Checks the admin bearer token.
pub fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), RouteError> {
    let Some(expected) = state.executor.config().admin_token.as_deref() else {
        return Err(RouteError::new(
            403,
            "permission_error",
            "admin_disabled",
            "The admin API is disabled: no admin token is configured (set SWITCHYARD_ADMIN_TOKEN, or [admin] token_env).",
        ));
    };
    match bearer_token(headers) {
        None => Err(RouteError::new(
            401,
            "invalid_request_error",
            "missing_admin_token",
            "The admin API needs the admin token as `Authorization: Bearer TOKEN`.",
        )),
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(RouteError::new(
            401,
            "invalid_request_error",
            "invalid_admin_token",
            "Incorrect admin token (team API keys are not accepted here).",
        )),
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
    let executor = &state.executor;
    let config = executor.config();
    let store = executor.metrics();
    let now = store.now_ms();
    let circuits = executor.breakers().all();
    let routing = &config.routing;
    let mut rows = Vec::new();
    for (id, circuit, opens) in circuits {
        let Some(summary) = store.summary(&id, now, window) else {
            continue;
        };
        let (provider, model) = id.split_once('/').unwrap_or((id.as_str(), ""));
        let c = summary.counts;
        let mut features = Vec::new();
        for feature in crate::features::FEATURES
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
    let policies: Vec<Value> = executor
        .telemetry()
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
