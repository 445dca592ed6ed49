//! What the three inbound APIs share: authentication, the body size limit,
//! routing headers, and serving a parsed request as a whole answer or a
//! stream in the API's own shapes.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{AppState, authenticate, error_response, read_body};
use crate::route::{RouteError, RouteInfo, RouteRequest, Served, StreamEncoder, client_sse};

/// An inbound API: how its requests become the canonical [`RouteRequest`]
/// and how answers and errors are written back in its own shapes.
pub trait Endpoint {
    /// What the answer needs to know about the request (echoed parameters).
    type Echo: Send + 'static;

    /// Checks the API's required headers (before the body is read).
    fn check_headers(_headers: &HeaderMap) -> Result<(), RouteError> {
        Ok(())
    }

    /// Parses and validates a request body into the canonical request.
    fn parse(bytes: &[u8], headers: &HeaderMap) -> Result<(RouteRequest, Self::Echo), RouteError>;

    /// The API's answer object for a canonical `chat.completion` (which
    /// carries the routing info under `switchyard`).
    fn complete(body: Value, echo: Self::Echo) -> Value;

    /// The API's stream events.
    fn encoder(echo: Self::Echo) -> Box<dyn StreamEncoder>;

    /// The API's error response.
    fn error(error: &RouteError) -> Response {
        error_response(error)
    }
}

/// The `x-switchyard-*` headers every answer carries.
pub fn routing_headers(headers: &mut HeaderMap, info: &RouteInfo) {
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    set("x-switchyard-provider", info.provider.clone());
    set("x-switchyard-model", info.model.clone());
    set("x-switchyard-attempts", info.attempts.to_string());
    set("x-switchyard-stripped", info.stripped.join(","));
    set("x-switchyard-label", info.label.clone());
    if let Some(cost) = info.cost_usd {
        set("x-switchyard-cost-usd", format!("{cost:.8}"));
    }
}

/// Authenticates, reads and parses the body, routes the request, and writes
/// the answer (or error) in `E`'s shapes.
pub async fn handle<E: Endpoint>(state: AppState, headers: HeaderMap, body: Body) -> Response {
    let config = state.executor.config();
    let tenant = match authenticate(&state.teams, &headers) {
        Ok(tenant) => tenant,
        Err(e) => return E::error(&e),
    };
    if let Err(e) = E::check_headers(&headers) {
        return E::error(&e);
    }
    let limit = config.server.max_body_bytes;
    let bytes = match read_body(&headers, body, limit).await {
        Ok(bytes) => bytes,
        Err(e) => return E::error(&e.to_error(limit, "request body")),
    };
    let (request, echo) = match E::parse(&bytes, &headers) {
        Ok(parsed) => parsed,
        Err(e) => return E::error(&e),
    };
    match state.executor.serve(&tenant, request).await {
        Ok(Served::Complete { body, info }) => {
            let mut response =
                (StatusCode::OK, axum::Json(E::complete(body, echo))).into_response();
            routing_headers(response.headers_mut(), &info);
            response
        }
        Ok(Served::Stream {
            info,
            head,
            rest,
            model,
            idle_timeout,
            tally,
        }) => {
            let mut response_headers = HeaderMap::new();
            // Before `info` moves into the stream.
            routing_headers(&mut response_headers, &info);
            let sse = client_sse(
                info,
                head,
                rest,
                model,
                idle_timeout,
                tally,
                E::encoder(echo),
            );
            let mut response = Response::new(Body::from_stream(sse));
            let h = response.headers_mut();
            h.extend(response_headers);
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
        Err(e) => E::error(&e),
    }
}
