//! `POST /v1/messages`: the Anthropic Messages API (authenticated by
//! `x-api-key` or a bearer token, with an `anthropic-version` header),
//! translated by [`switchyard_wire::messages_in`]. Errors use Anthropic's
//! error shape.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use serde_json::json;
use switchyard_wire::Api;
use switchyard_wire::completion::Completion;
use switchyard_wire::messages_in::{self as wire, Echo};
use switchyard_wire::stream::StreamEncoder;

use super::chat::{canonical, json_object};
use super::endpoint::{self, Endpoint};
use super::{AppState, error_with_body};
use crate::errors::RequestCode;
use crate::route::{RouteError, RouteRequest};

/// The Anthropic Messages endpoint.
pub struct Messages;

impl Endpoint for Messages {
    type Echo = Echo;

    const ROUTE: &'static str = "/v1/messages";

    fn check_headers(headers: &HeaderMap) -> Result<(), RouteError> {
        match headers.get("anthropic-version").map(HeaderValue::to_str) {
            Some(Ok(v)) if !v.trim().is_empty() => Ok(()),
            _ => Err(RouteError::new(
                RequestCode::MissingAnthropicVersion,
                "anthropic-version: header is required",
            )),
        }
    }

    fn parse(bytes: &[u8], headers: &HeaderMap) -> Result<(RouteRequest, Echo), RouteError> {
        let body = json_object(bytes)?;
        let mut request = canonical(wire::to_canonical(&body)?, headers)?;
        request.api = Api::Messages;
        Ok((request, Echo::new()))
    }

    fn complete(body: Completion, echo: Echo) -> Completion {
        Completion::from_value(wire::complete(body.into_value(), echo))
    }

    fn encoder(echo: Echo) -> Box<dyn StreamEncoder> {
        wire::encoder(echo)
    }

    fn error(error: &RouteError) -> Response {
        error_response(error)
    }
}

/// An error in Anthropic's shape, with the attempt trail when there is one.
pub(super) fn error_response(error: &RouteError) -> Response {
    let mut body = json!({
        "type": "error",
        "error": { "type": wire::error_type(error.status), "message": error.message },
    });
    if !error.trail.is_empty() {
        body["switchyard"] = json!({ "attempts": error.trail.len(), "trail": error.trail });
    }
    error_with_body(error, body)
}

pub async fn create(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    endpoint::handle::<Messages>(state, headers, body).await
}
