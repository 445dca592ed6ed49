//! The HTTP surface: OpenAI-compatible endpoints, authentication by team key,
//! OpenAI-style errors, and (in [`server`]) the listener, with its
//! connection-level limits, that drains in-flight requests (open streams
//! included) on shutdown.

mod admin;
mod chat;
mod endpoint;
#[cfg(test)]
mod feature_table;
pub mod intake;
mod messages;
mod responses;
pub mod server;
mod sse;

pub use intake::BodyError;
pub use server::{Load, Server, serve};

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::json;

use crate::config::Config;
use crate::directory::{Directory, DirectoryEntry};
use crate::errors::{AuthCode, RequestCode};
use crate::metrics::{Clock, SystemClock};
use crate::policy::{CompileWorker, Limits, Runtime};
use crate::route::{Executor, RouteError};
use crate::spend::Spending;
use crate::state::SharedState;
use crate::store::Store;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    pub executor: Arc<Executor>,
    /// What the handlers read besides routing, held here so the edge does
    /// not reach through the executor: the config, the shared state, spend,
    /// live metrics, breakers and the `/metrics` counters.
    pub config: Arc<Config>,
    pub shared: Arc<SharedState>,
    pub spending: Arc<Spending>,
    pub metrics: Arc<crate::metrics::MetricStore>,
    pub breakers: Arc<crate::health::Breakers>,
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    /// Directory, keys and their policies (config file + embedded store).
    pub directory: Arc<Directory>,
    /// Connections and requests in flight, and the request-body budget.
    pub load: Arc<Load>,
    /// The request log (docs/request-log.md).
    pub log: Arc<crate::request_log::RequestLog>,
}

/// Builds the executor (policy runtime, default policy, provider adapters).
pub fn app_state(config: Config) -> anyhow::Result<AppState> {
    app_state_with_clock(config, Arc::new(SystemClock))
}

/// Like [`app_state`], with metric windows and circuit breakers reading
/// `clock` (tests move a [`crate::metrics::ManualClock`] by hand).
pub fn app_state_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<AppState> {
    // Uploaded plugins are compiled by a worker process (this program,
    // unless the config names another build of it), within their budget.
    let plugins = &config.plugins;
    let (timeout, memory) = (plugins.compile_timeout, plugins.compile_memory_bytes);
    let worker = match &plugins.compile_worker {
        Some(path) => CompileWorker::program(path.clone(), timeout, memory),
        None => CompileWorker::this_program(timeout, memory)?,
    };
    let limits = Limits {
        structure: plugins.structure.clone(),
        ..Limits::default()
    };
    let runtime = Runtime::with_worker(limits, Some(worker))?;
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
    let log = Arc::new(crate::request_log::RequestLog::start(
        config.log.clone(),
        store.clone(),
    ));
    let teams = Directory::open(config.clone(), store, runtime)?;
    let load = Arc::new(Load::new(&config.server));
    let executor = Executor::new(
        config.clone(),
        policy,
        providers,
        clock,
        state.clone(),
        spending.clone(),
        log.clone(),
    );
    Ok(AppState {
        load,
        log,
        config,
        shared: state,
        spending,
        metrics: executor.metrics().clone(),
        breakers: executor.breakers().clone(),
        telemetry: executor.telemetry().clone(),
        executor: Arc::new(executor),
        directory: Arc::new(teams),
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
        .route("/admin/v1/log", get(admin::log::read))
        .route("/admin/v1/backups", get(admin::shadow::backups))
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
            "/admin/v1/teams/{team}/shadow",
            get(admin::shadow::get)
                .put(admin::shadow::attach)
                .delete(admin::shadow::detach),
        )
        .route(
            "/admin/v1/teams/{team}/shadow/promote",
            post(admin::shadow::promote),
        )
        .route(
            "/admin/v1/teams/{team}/explain",
            post(admin::policies::explain),
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
    // A matched path is shared (an `Arc`): cloning it copies no text.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    state.telemetry.http(route, response.status().as_u16());
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

/// A 401 for a request whose credentials contradict each other.
fn ambiguous(what: &str) -> RouteError {
    RouteError::new(
        AuthCode::AmbiguousCredentials,
        format!("The request carries {what}; send exactly one key."),
    )
}

/// The one value of header `name`, trimmed; `Ok(None)` without it, an error
/// when it is sent more than once (which value a proxy or we would pick is
/// not something to guess about credentials).
fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, RouteError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(ambiguous(&format!("more than one {name} header")));
    }
    Ok(first.map(|v| v.to_str().map(str::trim).unwrap_or("")))
}

/// The token of the request's one `Authorization: Bearer TOKEN` header,
/// trimmed; an error when `Authorization` is sent more than once. Another
/// scheme (`Basic`, ...) is no token.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, RouteError> {
    Ok(single_header(headers, header::AUTHORIZATION.as_str())?
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim))
}

/// The team of the request's API key (`Authorization: Bearer` or
/// `x-api-key`). Both may be sent only if they carry the same key.
pub fn authenticate(
    teams: &Directory,
    headers: &HeaderMap,
) -> Result<Arc<DirectoryEntry>, RouteError> {
    let bearer = bearer_token(headers)?.filter(|k| !k.is_empty());
    let api_key = single_header(headers, "x-api-key")?.filter(|k| !k.is_empty());
    let key = match (bearer, api_key) {
        (Some(a), Some(b)) if a != b => {
            return Err(ambiguous("different keys in Authorization and x-api-key"));
        }
        (a, b) => a.or(b),
    };
    let Some(key) = key else {
        return Err(RouteError::new(
            AuthCode::MissingApiKey,
            "You didn't provide an API key: send it as `Authorization: Bearer KEY` or `x-api-key: KEY`.",
        ));
    };
    let directory = teams.snapshot();
    if let Some(entry) = directory.by_key(key) {
        return Ok(entry.clone());
    }
    let message = if directory.admin_of(key).is_some() {
        "Incorrect API key provided: this is a team admin token, which only the admin API (/admin/v1) accepts."
    } else {
        "Incorrect API key provided."
    };
    Err(RouteError::new(AuthCode::InvalidApiKey, message))
}

async fn models(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let config = state.config;
    let entry = match authenticate(&state.directory, &headers) {
        Ok(entry) => entry,
        Err(e) => return error_response(&e),
    };
    let team = &entry.team;
    let mut data: Vec<_> = config
        .catalog
        .iter()
        .filter(|m| team.allows_model(&m.slug))
        .filter_map(|m| {
            let providers: Vec<&str> = config
                .providers
                .iter()
                .filter(|p| p.models.contains(&m.slug))
                .filter(|p| team.allows_account(&p.name))
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
            .filter(|l| team.allows_model(&l.name))
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
        RequestCode::UnknownUrl,
        "Unknown request URL. Switchyard serves POST /v1/chat/completions, POST /v1/responses, POST /v1/messages, GET /v1/models, GET /healthz, GET /metrics and the admin API under /admin/v1 (metrics, spend, teams, keys, policies).",
    ))
}
