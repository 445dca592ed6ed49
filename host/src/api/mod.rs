//! The HTTP surface: OpenAI-compatible endpoints, authentication by team key,
//! OpenAI-style errors, and a server that drains in-flight requests (open
//! streams included) on shutdown.

mod admin;
mod chat;
mod endpoint;
#[cfg(test)]
mod feature_table;
mod messages;
mod responses;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::json;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::metrics::{Clock, SystemClock};
use crate::policy::{Limits, Runtime};
use crate::route::{Executor, RouteError, team_allows_account, team_allows_model};
use crate::spend::Spending;
use crate::state::SharedState;
use crate::store::Store;
use crate::teams::{Teams, Tenant};

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    pub executor: Arc<Executor>,
    /// Teams, keys and their policies (config file + embedded store).
    pub teams: Arc<Teams>,
}

/// Builds the executor (policy runtime, default policy, provider adapters).
pub fn app_state(config: Config) -> anyhow::Result<AppState> {
    app_state_with_clock(config, Arc::new(SystemClock))
}

/// Like [`app_state`], with metric windows and circuit breakers reading
/// `clock` (tests move a [`crate::metrics::ManualClock`] by hand).
pub fn app_state_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<AppState> {
    let runtime = Runtime::new(Limits::default())?;
    let policy = runtime.load_default()?;
    let mut providers = std::collections::HashMap::new();
    for account in &config.providers {
        let adapter = crate::providers::build(account).map_err(anyhow::Error::msg)?;
        providers.insert(account.name.clone(), adapter);
    }
    let config = Arc::new(config);
    let store = Arc::new(Store::open(&config.store_path)?);
    let state = Arc::new(SharedState::new(&config.state)?);
    let spending = Arc::new(Spending::start(
        config.clone(),
        state.clone(),
        store.clone(),
    ));
    let teams = Teams::open(config.clone(), store, runtime)?;
    Ok(AppState {
        executor: Arc::new(Executor::new(
            config, policy, providers, clock, state, spending,
        )),
        teams: Arc::new(teams),
    })
}

/// The router with every endpoint.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/responses", post(responses::create))
        .route("/v1/messages", post(messages::create))
        .route("/v1/models", get(models))
        .route("/healthz", get(healthz))
        .route("/metrics", get(admin::prometheus))
        .route("/admin/v1/metrics", get(admin::metrics))
        .route("/admin/v1/spend", get(admin::spend::report))
        .route(
            "/admin/v1/teams",
            post(admin::teams::create).get(admin::teams::list),
        )
        .route(
            "/admin/v1/teams/{team}",
            get(admin::teams::get).patch(admin::teams::update),
        )
        .route(
            "/admin/v1/teams/{team}/keys",
            post(admin::teams::create_key).get(admin::teams::list_keys),
        )
        .route(
            "/admin/v1/teams/{team}/keys/{id}",
            delete(admin::teams::revoke_key),
        )
        .route(
            "/admin/v1/teams/{team}/policies",
            post(admin::policies::upload).get(admin::policies::list),
        )
        .route(
            "/admin/v1/teams/{team}/policies/rollback",
            post(admin::policies::rollback),
        )
        .route(
            "/admin/v1/teams/{team}/policies/{version}/activate",
            post(admin::policies::activate),
        )
        .route(
            "/admin/v1/teams/{team}/policy-config",
            get(admin::policies::get_config).put(admin::policies::put_config),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_responses,
        ))
        .with_state(state)
}

/// Counts every response by route and status, whatever produced it.
async fn count_responses(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    state
        .executor
        .telemetry()
        .http(&route, response.status().as_u16());
    response
}

impl IntoResponse for RouteError {
    fn into_response(self) -> Response {
        error_response(&self)
    }
}

/// Renders a [`RouteError`] as an HTTP response.
pub fn error_response(error: &RouteError) -> Response {
    error_with_body(error, error.body())
}

/// `body` with the error's status and, when it has one, its `retry-after`.
pub fn error_with_body(error: &RouteError, body: serde_json::Value) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(wait) = error.retry_after {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    response
}

/// Why a request body was not read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than the limit: the size declared or seen (at least).
    TooLarge(usize),
    /// The client stopped sending midway.
    Broken,
}

impl BodyError {
    /// The caller's error: 413 naming the limit, or 400.
    pub fn to_error(self, limit: usize, what: &str) -> RouteError {
        match self {
            BodyError::TooLarge(_) => RouteError::new(
                413,
                "invalid_request_error",
                "request_too_large",
                format!("The {what} exceeds the {limit} byte limit."),
            ),
            BodyError::Broken => RouteError::invalid(
                "body",
                format!("The {what} could not be read: the client stopped sending it."),
            ),
        }
    }
}

/// Reads a request body of at most `limit` bytes. A larger one is read on
/// and discarded, up to `limit` bytes more, so that the 413 which follows
/// reaches a client that is still sending (answering at once would close the
/// connection under it, and it would see a broken pipe instead of the error);
/// a body declared or found larger than that is refused at once.
pub async fn read_body(
    headers: &HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> Result<bytes::Bytes, BodyError> {
    use futures_util::StreamExt;
    let drain_up_to = limit.saturating_mul(2);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = declared.filter(|&n| n > drain_up_to) {
        return Err(BodyError::TooLarge(n));
    }
    let mut stream = body.into_data_stream();
    let mut kept = bytes::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BodyError::Broken)?;
        seen = seen.saturating_add(chunk.len());
        if seen <= limit {
            kept.extend_from_slice(&chunk);
        } else if seen > drain_up_to {
            return Err(BodyError::TooLarge(seen));
        }
    }
    if seen > limit {
        return Err(BodyError::TooLarge(seen));
    }
    Ok(kept.freeze())
}

/// The token of an `Authorization: Bearer TOKEN` header, trimmed.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// The team of the request's API key (`Authorization: Bearer` or `x-api-key`).
pub fn authenticate(teams: &Teams, headers: &HeaderMap) -> Result<Arc<Tenant>, RouteError> {
    let key = bearer_token(headers).or_else(|| {
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    });
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return Err(RouteError::new(
            401,
            "invalid_request_error",
            "missing_api_key",
            "You didn't provide an API key: send it as `Authorization: Bearer KEY` or `x-api-key: KEY`.",
        ));
    };
    let directory = teams.directory();
    if let Some(tenant) = directory.by_key(key) {
        return Ok(tenant.clone());
    }
    let message = if directory.admin_of(key).is_some() {
        "Incorrect API key provided: this is a team admin token, which only the admin API (/admin/v1) accepts."
    } else {
        "Incorrect API key provided."
    };
    Err(RouteError::new(
        401,
        "invalid_request_error",
        "invalid_api_key",
        message,
    ))
}

async fn models(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let config = state.executor.config();
    let tenant = match authenticate(&state.teams, &headers) {
        Ok(tenant) => tenant,
        Err(e) => return error_response(&e),
    };
    let team = &tenant.team;
    let mut data: Vec<_> = config
        .catalog
        .iter()
        .filter(|m| team_allows_model(team, &m.slug))
        .filter_map(|m| {
            let providers: Vec<&str> = config
                .providers
                .iter()
                .filter(|p| p.models.contains(&m.slug))
                .filter(|p| team_allows_account(team, &p.name))
                .filter(|p| !team.zdr || p.zdr)
                .map(|p| p.name.as_str())
                .collect();
            (!providers.is_empty()).then(|| {
                json!({
                    "id": m.slug,
                    "object": "model",
                    "created": 0,
                    "owned_by": m.vendor.as_deref().unwrap_or("switchyard"),
                    "pricing": { "input": m.input, "output": m.output, "cached_input": m.cached_input, "unit": "USD per 1M tokens" },
                    "features": m.features,
                    "tier": m.tier,
                    "context_window": m.context_window,
                    "providers": providers,
                })
            })
        })
        .collect();
    data.extend(
        config
            .logical_models
            .values()
            .filter(|l| team_allows_model(team, &l.name))
            .map(|l| {
                json!({
                    "id": l.name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "switchyard",
                    "logical": true,
                    "targets": l.targets,
                    "capabilities": l.capabilities,
                    "defaults": l.defaults,
                })
            }),
    );
    axum::Json(json!({ "object": "list", "data": data })).into_response()
}

async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

async fn not_found() -> Response {
    error_response(&RouteError::new(
        404,
        "invalid_request_error",
        "unknown_url",
        "Unknown request URL. Switchyard serves POST /v1/chat/completions, POST /v1/responses, POST /v1/messages, GET /v1/models, GET /healthz, GET /metrics and the admin API under /admin/v1 (metrics, spend, teams, keys, policies).",
    ))
}

/// A running gateway.
pub struct Server {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Starts serving on `listener`.
    pub fn start(
        listener: TcpListener,
        state: AppState,
        grace: Duration,
    ) -> std::io::Result<Server> {
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state, grace, async move {
            let _ = rx.await;
        }));
        Ok(Server {
            addr,
            shutdown: Some(tx),
            task,
        })
    }

    /// Stops accepting, waits for in-flight requests (up to the grace period).
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap_or(Ok(()))
    }
}

/// Serves until `signal` resolves, then drains in-flight requests and open
/// streams for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    grace: Duration,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
    let signal = async move {
        signal.await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = stopping_tx.send(true);
    };
    let mut checks = crate::route::probe::spawn(state.executor.clone(), stopping_rx.clone());
    checks.push(tokio::spawn(
        state
            .executor
            .state()
            .clone()
            .monitor(Duration::from_millis(500)),
    ));
    let spending = state.executor.spending().clone();
    let app = router(state);
    let server = axum::serve(listener, app).with_graceful_shutdown(signal);
    let mut stopping = stopping_rx;
    let deadline = async move {
        while !*stopping.borrow() {
            if stopping.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        tokio::time::sleep(grace).await;
    };
    let result = tokio::select! {
        result = server => result,
        _ = deadline => {
            tracing::warn!(grace_secs = grace.as_secs(), "grace period over; closing remaining connections");
            Ok(())
        }
    };
    for task in checks {
        task.abort();
    }
    // Every served request's spend reaches the ledger before we exit.
    if let Err(e) = tokio::task::spawn_blocking(move || spending.flush())
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
    {
        tracing::error!(error = %e, "spend ledger not flushed at shutdown");
    }
    result
}
