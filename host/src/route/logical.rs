//! Logical models (seed 004): a request naming one is routed to its targets —
//! the first as the primary model, the others as fallbacks ahead of the
//! caller's own `routing.models` — with the logical model's default parameters
//! filling what the request leaves unset, and its declared capabilities
//! enforced.

use std::sync::Arc;

use switchyard_wire::request::Stop;
use switchyard_wire::{Feature, FeatureSet};

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
    let body = Arc::make_mut(&mut req.body);
    let d = &logical.defaults;
    if body.temperature.is_none() {
        body.temperature = d.temperature.and_then(serde_json::Number::from_f64);
    }
    if body.top_p.is_none() {
        body.top_p = d.top_p.and_then(serde_json::Number::from_f64);
    }
    if body.max_output_tokens().is_none() {
        body.max_completion_tokens = d.max_tokens;
    }
    if body.stop.is_none() {
        body.stop = d.stop.clone().map(Stop::Many);
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
pub fn check_capabilities(logical: &LogicalModel, features: FeatureSet) -> Result<(), RouteError> {
    if logical.capabilities.is_empty() {
        return Ok(());
    }
    let missing: Vec<&str> = features
        .iter()
        .map(Feature::name)
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
