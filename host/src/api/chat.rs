//! `POST /v1/chat/completions`.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Map, Value};

use super::AppState;
use super::endpoint::{self, Endpoint};
use switchyard_wire::stream::{ChatEncoder, StreamEncoder};

use crate::errors::RequestCode;
use crate::route::{RouteError, RouteRequest, RoutingOptions};
use switchyard_wire::Api;

/// Parses and validates a Chat Completions body into a [`RouteRequest`].
pub fn parse(bytes: &[u8], headers: &HeaderMap) -> Result<RouteRequest, RouteError> {
    canonical(json_object(bytes)?, headers, bytes.len())
}

/// The request body as a JSON object.
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

/// Validates a canonical body (from any of the three APIs) and reads the
/// routing options, routing metadata and stream flag out of it.
pub fn canonical(
    mut body: Map<String, Value>,
    headers: &HeaderMap,
    size: usize,
) -> Result<RouteRequest, RouteError> {
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.trim().to_string(),
        Some(_) => {
            return Err(RouteError::invalid(
                "model",
                "`model` must be a non-empty string",
            ));
        }
        None => {
            return Err(RouteError::invalid(
                "model",
                "you must provide a model parameter",
            ));
        }
    };
    match body.get("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => {
            for (i, m) in messages.iter().enumerate() {
                if m.get("role").and_then(Value::as_str).is_none() {
                    return Err(RouteError::invalid(
                        &format!("messages[{i}].role"),
                        format!("messages[{i}] must be an object with a string `role`"),
                    ));
                }
            }
        }
        Some(Value::Array(_)) => {
            return Err(RouteError::invalid(
                "messages",
                "`messages` must contain at least one message",
            ));
        }
        _ => {
            return Err(RouteError::invalid(
                "messages",
                "you must provide a `messages` array",
            ));
        }
    }
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(RouteError::invalid("stream", "`stream` must be a boolean")),
    };
    let routing = RoutingOptions::parse(body.get("routing"))?;
    body.remove("routing");

    let metadata: Vec<(String, String)> = body
        .get("metadata")
        .and_then(Value::as_object)
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
        estimated_input_tokens: u32::try_from(size / 4).unwrap_or(u32::MAX).max(1),
        logical_model: None,
        body,
        model,
        routing,
        stream,
        api: Api::Chat,
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
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok((request, include_usage))
    }

    fn complete(body: Value, _: bool) -> Value {
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
