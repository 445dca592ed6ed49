//! Policy inputs as JSON: the request, candidates and metric values a
//! decision is given, in the shape case files (`switchyard policy test`,
//! docs/policy-cases.md) and request-log records (docs/request-log.md) share,
//! so a logged decision replays as a case.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Candidate, Health, Price, Request, Routing};
use crate::metrics::{MIN_WINDOW_SECS, MetricSource, parse_window};
use switchyard_wire::candidate::CandidateRef;

/// `{ candidate id: { "name" | "name@seconds": value } }`.
pub type MetricSpec = BTreeMap<String, BTreeMap<String, f64>>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default)]
    pub routing: RoutingSpec,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_input_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prompt_cache_key: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
    /// The last user turn's text: with it, a 0.2 policy that asks for
    /// content gets the signals the gateway would compute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The system prompt, with `prompt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidateSpec {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical_model: Option<String>,
    #[serde(default)]
    pub price: PriceSpec,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub zdr: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<u8>,
    #[serde(default)]
    pub health: HealthSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headroom: Option<f32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cache_affinity: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSpec {
    #[serde(default)]
    pub input: f64,
    #[serde(default)]
    pub output: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthSpec {
    #[default]
    Healthy,
    Degraded,
    HalfOpen,
}

impl CandidateSpec {
    pub fn to_candidate(&self) -> Candidate {
        // An id without `/` names both its provider and its model.
        let (provider, model) = CandidateRef::parse(&self.id)
            .map_or((self.id.as_str(), self.id.as_str()), |c| {
                (c.account, c.model)
            });
        Candidate {
            id: self.id.clone(),
            provider: self
                .provider
                .clone()
                .unwrap_or_else(|| provider.to_string()),
            model: self.model.clone().unwrap_or_else(|| model.to_string()),
            logical_model: self.logical_model.clone(),
            price: Price {
                input: self.price.input,
                output: self.price.output,
                cached_input: self.price.cached_input.unwrap_or(self.price.input),
            },
            features: self.features.clone(),
            zdr: self.zdr,
            tier: self.tier.unwrap_or(2),
            health: match self.health {
                HealthSpec::Healthy => Health::Healthy,
                HealthSpec::Degraded => Health::Degraded,
                HealthSpec::HalfOpen => Health::HalfOpen,
            },
            headroom: self.headroom,
            cache_affinity: self.cache_affinity,
            context_window: self.context_window.unwrap_or(128_000),
            metrics: Vec::new(),
        }
    }
}

impl RequestSpec {
    /// The content signals of the case's `system` and `prompt`, as the
    /// gateway computes them (texts cut to `limit` bytes); `None` without a
    /// prompt.
    pub fn content(&self, limit: usize) -> Option<switchyard_wire::content::Signals> {
        let prompt = self.prompt.as_ref()?;
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            messages.push(serde_json::json!({ "role": "system", "content": system }));
        }
        messages.push(serde_json::json!({ "role": "user", "content": prompt }));
        let body = serde_json::json!({ "model": "auto", "messages": messages });
        let request =
            switchyard_wire::CanonicalRequest::from_slice(body.to_string().as_bytes()).ok()?;
        Some(switchyard_wire::content::Signals::of(&request, limit))
    }

    /// The request the plugin sees; `default_config` is the file's `config`.
    pub fn to_request(&self, default_config: Option<&Value>) -> Result<Request, String> {
        let interval_seconds = match (&self.routing.interval, self.routing.interval_seconds) {
            (Some(text), _) => parse_window(text).map_err(|e| e.to_string())?,
            (None, Some(secs)) => secs,
            (None, None) => MIN_WINDOW_SECS,
        };
        let config = match self.config.as_ref().or(default_config) {
            Some(value) => value.to_string(),
            None => "{}".to_string(),
        };
        Ok(Request {
            model: self.model.clone().unwrap_or_else(|| "auto".into()),
            routing: Routing {
                metric: self.routing.metric.clone(),
                interval_seconds,
                models: self.routing.models.clone(),
                providers: self.routing.providers.clone(),
            },
            features: self.features.clone(),
            step_type: self.step_type.clone(),
            purpose: self.purpose.clone(),
            team: self.team.clone().unwrap_or_else(|| "test-team".into()),
            estimated_input_tokens: self.estimated_input_tokens.unwrap_or(1000),
            max_output_tokens: self.max_output_tokens,
            prompt_cache_key: self.prompt_cache_key,
            metadata: self
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            config,
        })
    }
}

impl From<&Candidate> for CandidateSpec {
    /// A candidate as offered, in its JSON form (metric values aside: they
    /// travel in a [`MetricSpec`]).
    fn from(c: &Candidate) -> Self {
        let cached_input = (c.price.cached_input != c.price.input).then_some(c.price.cached_input);
        CandidateSpec {
            id: c.id.clone(),
            provider: Some(c.provider.clone()),
            model: Some(c.model.clone()),
            logical_model: c.logical_model.clone(),
            price: PriceSpec {
                input: c.price.input,
                output: c.price.output,
                cached_input,
            },
            features: c.features.clone(),
            zdr: c.zdr,
            tier: Some(c.tier),
            health: match c.health {
                Health::Healthy => HealthSpec::Healthy,
                Health::Degraded => HealthSpec::Degraded,
                Health::HalfOpen => HealthSpec::HalfOpen,
            },
            headroom: c.headroom,
            cache_affinity: c.cache_affinity,
            context_window: Some(c.context_window),
        }
    }
}

impl From<&Request> for RequestSpec {
    /// What a policy was told, in its JSON form (the team config aside: a
    /// replay gives the policy its own).
    fn from(r: &Request) -> Self {
        RequestSpec {
            model: Some(r.model.clone()),
            routing: RoutingSpec {
                metric: r.routing.metric.clone(),
                interval: None,
                interval_seconds: Some(r.routing.interval_seconds),
                models: r.routing.models.clone(),
                providers: r.routing.providers.clone(),
            },
            features: r.features.clone(),
            step_type: r.step_type.clone(),
            purpose: r.purpose.clone(),
            team: Some(r.team.clone()),
            estimated_input_tokens: Some(r.estimated_input_tokens),
            max_output_tokens: r.max_output_tokens,
            prompt_cache_key: r.prompt_cache_key,
            metadata: r.metadata.iter().cloned().collect(),
            config: None,
            prompt: None,
            system: None,
        }
    }
}

/// Metric values of a case or a logged record, answering `host.metric`.
#[derive(Debug, Default)]
pub struct CaseMetrics {
    values: HashMap<String, HashMap<String, f64>>,
}

impl CaseMetrics {
    pub fn new(spec: &MetricSpec) -> Self {
        Self {
            values: spec
                .iter()
                .map(|(id, names)| {
                    (
                        id.clone(),
                        names.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                    )
                })
                .collect(),
        }
    }
}

impl MetricSource for CaseMetrics {
    fn metric(&self, candidate: &str, name: &str, window_secs: u32) -> Option<f64> {
        let names = self.values.get(candidate)?;
        names
            .get(&format!("{name}@{window_secs}"))
            .or_else(|| names.get(name))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_candidate_survives_its_json_form() {
        let spec = CandidateSpec {
            id: "openai/gpt-4o".into(),
            provider: Some("openai".into()),
            model: Some("gpt-4o".into()),
            logical_model: Some("smart".into()),
            price: PriceSpec {
                input: 2.5,
                output: 10.0,
                cached_input: Some(1.25),
            },
            features: vec!["tools".into()],
            zdr: true,
            tier: Some(1),
            health: HealthSpec::HalfOpen,
            headroom: Some(0.5),
            cache_affinity: true,
            context_window: Some(128_000),
        };
        let candidate = spec.to_candidate();
        assert_eq!(CandidateSpec::from(&candidate), spec);
        let text = serde_json::to_string(&spec).expect("serialize");
        assert_eq!(
            serde_json::from_str::<CandidateSpec>(&text).expect("parse"),
            spec
        );
    }
}
