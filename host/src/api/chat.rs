//! `POST /v1/chat/completions`.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use std::sync::Arc;

use serde_json::{Map, Value};
use switchyard_wire::CanonicalRequest;
use switchyard_wire::completion::Completion;

use super::AppState;
use super::endpoint::{self, Endpoint};
use switchyard_wire::stream::{ChatEncoder, StreamEncoder};

use crate::errors::RequestCode;
use crate::route::{RouteError, RouteRequest, RoutingOptions};
use switchyard_wire::Api;

/// Parses and validates a Chat Completions body into a [`RouteRequest`].
pub fn parse(bytes: &[u8], headers: &HeaderMap) -> Result<RouteRequest, RouteError> {
    canonical(CanonicalRequest::from_slice(bytes)?, headers)
}

/// The request body as a JSON object (the Responses and Messages APIs read
/// their own shapes before translating them).
pub fn json_object(bytes: &[u8]) -> Result<Map<String, Value>, RouteError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        RouteError::new(
            RequestCode::InvalidJson,
            format!("We could not parse the JSON body of your request: {e}"),
        )
    })?;
    let Value::Object(body) = value else {
        return Err(RouteError::new(
            RequestCode::InvalidJson,
            "The request body must be a JSON object.",
        ));
    };
    Ok(body)
}

/// Reads the routing options, routing metadata and stream flag out of a
/// validated canonical request (from any of the three APIs).
pub fn canonical(
    mut body: CanonicalRequest,
    headers: &HeaderMap,
) -> Result<RouteRequest, RouteError> {
    let routing = RoutingOptions::parse(body.routing.take().as_ref())?;
    let metadata: Vec<(String, String)> = body
        .metadata
        .as_ref()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let pick = |header_name: &str, key: &str| {
        headers
            .get(header_name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| {
                metadata
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            })
    };
    Ok(RouteRequest {
        step_type: pick("x-switchyard-step-type", "step_type"),
        purpose: pick("x-switchyard-purpose", "purpose"),
        metadata,
        estimated_input_tokens: u32::try_from(body.estimate_input_tokens())
            .unwrap_or(u32::MAX)
            .max(1),
        logical_model: None,
        model: body.model.clone(),
        routing,
        stream: body.streams(),
        api: Api::Chat,
        body: Arc::new(body),
    })
}

/// The Chat Completions endpoint: the canonical shape itself.
pub struct Chat;

impl Endpoint for Chat {
    /// Whether the caller asked for the usage chunk.
    type Echo = bool;

    const ROUTE: &'static str = "/v1/chat/completions";

    fn parse(bytes: &[u8], headers: &HeaderMap) -> Result<(RouteRequest, bool), RouteError> {
        let request = parse(bytes, headers)?;
        let include_usage = request
            .body
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        Ok((request, include_usage))
    }

    fn complete(body: Completion, _: bool) -> Completion {
        body
    }

    fn encoder(include_usage: bool) -> Box<dyn StreamEncoder> {
        Box::new(ChatEncoder { include_usage })
    }
}

pub async fn completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    endpoint::handle::<Chat>(state, headers, body).await
}
