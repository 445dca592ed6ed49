//! What the three inbound APIs share: authentication, the body size limit,
//! routing headers, and serving a parsed request as a whole answer or a
//! stream in the API's own shapes.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use switchyard_wire::completion::Completion;

use super::intake::{BodyError, json_shape};
use super::{AppState, authenticate, error_response};
use crate::config::ServerSettings;
use switchyard_wire::stream::StreamEncoder;

use crate::errors::RequestCode;
use crate::route::{RouteError, RouteInfo, RouteRequest, Served};

/// An inbound API: how its requests become the canonical [`RouteRequest`]
/// and how answers and errors are written back in its own shapes.
pub trait Endpoint {
    /// What the answer needs to know about the request (echoed parameters).
    type Echo: Send + 'static;

    /// The route (`/v1/...`), for its body limit.
    const ROUTE: &'static str;

    /// Checks the API's required headers (before the body is read).
    fn check_headers(_headers: &HeaderMap) -> Result<(), RouteError> {
        Ok(())
    }

    /// Parses and validates a request body into the canonical request.
    fn parse(bytes: &[u8], headers: &HeaderMap) -> Result<(RouteRequest, Self::Echo), RouteError>;

    /// The API's answer object for a canonical `chat.completion` (which
    /// carries the routing info under `switchyard`).
    fn complete(body: Completion, echo: Self::Echo) -> Completion;

    /// The API's stream events.
    fn encoder(echo: Self::Echo) -> Box<dyn StreamEncoder>;

    /// The API's error response.
    fn error(error: &RouteError) -> Response {
        error_response(error)
    }
}

/// The `x-switchyard-*` headers every answer carries, made from the routing
/// info's text in place (a header value copies it once).
pub fn routing_headers(headers: &mut HeaderMap, info: &RouteInfo) {
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    set("x-switchyard-provider", &info.provider);
    set("x-switchyard-model", &info.model);
    set(
        "x-switchyard-attempts",
        itoa::Buffer::new().format(info.attempts),
    );
    set("x-switchyard-stripped", &info.stripped.join(","));
    set("x-switchyard-label", &info.label);
    if let Some(cost) = info.cost_usd {
        set("x-switchyard-cost-usd", &format!("{cost:.8}"));
    }
}

/// Authenticates, reads and parses the body, routes the request, and writes
/// the answer (or error) in `E`'s shapes.
pub async fn handle<E: Endpoint>(state: AppState, headers: HeaderMap, body: Body) -> Response {
    let config = state.config;
    let entry = match authenticate(&state.directory, &headers) {
        Ok(entry) => entry,
        Err(e) => return E::error(&e),
    };
    if let Err(e) = E::check_headers(&headers) {
        return E::error(&e);
    }
    let server = &config.server;
    // Read up to the image limit; a body over the route's own limit must
    // turn out to carry images.
    let limit = server.body_limit(E::ROUTE);
    let read_limit = limit.max(server.max_image_body_bytes);
    let intake = &state.load.intake;
    let (bytes, mut charge) = match intake.read_body(&headers, body, read_limit).await {
        Ok(read) => read,
        Err(BodyError::TooLarge(_)) => return E::error(&too_large(limit, server)),
        Err(e) => return E::error(&e.to_error(read_limit, "request body")),
    };
    let shape = match json_shape(&bytes, server.max_json_values) {
        Ok(shape) => shape,
        Err(e) => return E::error(&e.to_error()),
    };
    // What parsing will build: a copy of the text and the values.
    let parsed = bytes.len() + shape.values * ServerSettings::BYTES_PER_JSON_VALUE;
    if !intake.budget.charge(&mut charge, parsed) {
        return E::error(&BodyError::Overloaded.to_error(read_limit, "request body"));
    }
    let (request, echo) = match E::parse(&bytes, &headers) {
        Ok(parsed) => parsed,
        Err(e) => return E::error(&e),
    };
    let size = bytes.len();
    drop(bytes);
    if size > limit && !request.body.carries_images() {
        return E::error(&too_large(limit, server));
    }
    match state.executor.serve(&entry, request).await {
        Ok(Served::Complete { body, info }) => {
            let json = HeaderValue::from_static("application/json");
            let body = E::complete(body, echo).into_bytes();
            let mut response =
                (StatusCode::OK, [(header::CONTENT_TYPE, json)], body).into_response();
            routing_headers(response.headers_mut(), &info);
            response
        }
        Ok(Served::Stream { info, events }) => {
            let sse = super::sse::render(events, E::encoder(echo), state.load.interrupt.clone());
            let mut response = Response::new(Body::from_stream(sse));
            let h = response.headers_mut();
            routing_headers(h, &info);
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

/// 413 naming both limits a `/v1` body is held to.
fn too_large(limit: usize, server: &ServerSettings) -> RouteError {
    RouteError::new(
        RequestCode::RequestTooLarge,
        format!(
            "The request body exceeds the {limit} byte limit ({} bytes when it carries images).",
            server.max_image_body_bytes
        ),
    )
}
