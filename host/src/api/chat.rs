//! `POST /v1/chat/completions`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{AppState, authenticate, error_response};
use crate::route::{RouteError, RouteInfo, RouteRequest, RoutingOptions, Served, client_sse};

/// Parses and validates a Chat Completions body into a [`RouteRequest`].
pub fn parse(bytes: &[u8], headers: &HeaderMap) -> Result<RouteRequest, RouteError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        RouteError::new(
            400,
            "invalid_request_error",
            "invalid_json",
            format!("We could not parse the JSON body of your request: {e}"),
        )
    })?;
    let Value::Object(mut body) = value else {
        return Err(RouteError::new(
            400,
            "invalid_request_error",
            "invalid_json",
            "The request body must be a JSON object.",
        ));
    };
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
    let include_usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
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
        estimated_input_tokens: u32::try_from(bytes.len() / 4).unwrap_or(u32::MAX).max(1),
        logical_model: None,
        body,
        model,
        routing,
        stream,
        include_usage,
    })
}

fn routing_headers(headers: &mut HeaderMap, info: &RouteInfo) {
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

pub async fn completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let config = state.executor.config();
    let team = match authenticate(config, &headers) {
        Ok(team) => team,
        Err(e) => return error_response(&e),
    };
    let limit = config.server.max_body_bytes;
    let too_large = || {
        error_response(&RouteError::new(
            413,
            "invalid_request_error",
            "request_too_large",
            format!("The request body exceeds the {limit} byte limit."),
        ))
    };
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > limit)
    {
        return too_large();
    }
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return too_large();
    };
    let request = match parse(&bytes, &headers) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    match state.executor.serve(team, request).await {
        Ok(Served::Complete { body, info }) => {
            let mut response = (StatusCode::OK, axum::Json(body)).into_response();
            routing_headers(response.headers_mut(), &info);
            response
        }
        Ok(Served::Stream {
            info,
            head,
            rest,
            model,
            include_usage,
            idle_timeout,
            tally,
        }) => {
            let mut response_headers = HeaderMap::new();
            routing_headers(&mut response_headers, &info);
            let sse = client_sse(info, head, rest, model, include_usage, idle_timeout, tally);
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
        Err(e) => error_response(&e),
    }
}
