//! Logical models (seed 004): a request naming one is routed to its targets —
//! the first as the primary model, the others as fallbacks ahead of the
//! caller's own `routing.models` — with the logical model's default parameters
//! filling what the request leaves unset, and its declared capabilities
//! enforced.

use serde_json::{Value, json};

use super::{RouteError, RouteRequest};
use crate::config::{Config, LogicalModel, Team};
use crate::errors::RoutingCode;

/// Features that are capabilities a logical model may promise (as opposed to
/// parameters such as `temperature`, which degradation may strip).
const CAPABILITIES: &[&str] = &[
    "stream",
    "tools.function_calling",
    "tools.web_search",
    "tools.custom_tools",
    "vision",
    "text.format.json_object",
    "text.format.json_schema",
];

/// Expands a request for a logical model; returns the logical model, if any.
pub fn expand<'a>(
    config: &'a Config,
    team: &Team,
    req: &mut RouteRequest,
) -> Result<Option<&'a LogicalModel>, RouteError> {
    let Some(logical) = config.logical_models.get(&req.model) else {
        return Ok(None);
    };
    if !team.allows_model(&logical.name) {
        let mut e = RouteError::new(
            RoutingCode::ModelNotAllowed,
            format!("team {} may not use model {:?}", team.name, logical.name),
        );
        e.param = Some("model".into());
        return Err(e);
    }
    let body = &mut req.body;
    let unset =
        |body: &serde_json::Map<String, Value>, key: &str| body.get(key).is_none_or(Value::is_null);
    let d = &logical.defaults;
    if let Some(t) = d.temperature.filter(|_| unset(body, "temperature")) {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = d.top_p.filter(|_| unset(body, "top_p")) {
        body.insert("top_p".into(), json!(p));
    }
    if let Some(n) = d
        .max_tokens
        .filter(|_| unset(body, "max_tokens") && unset(body, "max_completion_tokens"))
    {
        body.insert("max_completion_tokens".into(), json!(n));
    }
    if let Some(stop) = d.stop.as_ref().filter(|_| unset(body, "stop")) {
        body.insert("stop".into(), json!(stop));
    }
    let mut fallbacks: Vec<String> = logical.targets[1..].to_vec();
    fallbacks.append(&mut req.routing.models);
    req.routing.models = fallbacks;
    req.model = logical.targets[0].clone();
    req.logical_model = Some(logical.name.clone());
    Ok(Some(logical))
}

/// A request needing a capability the logical model does not promise is
/// refused (422) before any provider is tried.
pub fn check_capabilities(logical: &LogicalModel, features: &[String]) -> Result<(), RouteError> {
    if logical.capabilities.is_empty() {
        return Ok(());
    }
    let missing: Vec<&str> = features
        .iter()
        .map(String::as_str)
        .filter(|f| CAPABILITIES.contains(f) && !logical.capabilities.iter().any(|c| c == f))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut e = RouteError::new(
        RoutingCode::CapabilityNotSupported,
        format!(
            "logical model {:?} does not offer {} (it offers: {})",
            logical.name,
            missing.join(", "),
            logical.capabilities.join(", ")
        ),
    );
    e.param = Some("model".into());
    Err(e)
}
