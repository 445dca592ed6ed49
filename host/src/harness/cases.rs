//! The case-file format of `switchyard policy test` (docs/policy-cases.md).

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::Value;

use crate::metrics::{MIN_WINDOW_SECS, MetricSource, parse_window};
use crate::policy::{Candidate, Health, Price, Request, Routing};
use switchyard_wire::candidate::CandidateRef;

/// A whole case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// Default team config for every case.
    #[serde(default)]
    pub config: Option<Value>,
    /// Default candidates for every case.
    #[serde(default)]
    pub candidates: Vec<CandidateSpec>,
    /// Default metric values for every case.
    #[serde(default)]
    pub metrics: MetricSpec,
    pub cases: Vec<Case>,
}

/// `{ candidate id: { "name" | "name@seconds": value } }`.
pub type MetricSpec = BTreeMap<String, BTreeMap<String, f64>>;

/// One case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    pub request: RequestSpec,
    /// Team config for this case (the request's own `config` wins over it).
    #[serde(default)]
    pub config: Option<Value>,
    #[serde(default)]
    pub candidates: Option<Vec<CandidateSpec>>,
    #[serde(default)]
    pub metrics: Option<MetricSpec>,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    pub model: Option<String>,
    #[serde(default)]
    pub routing: RoutingSpec,
    #[serde(default)]
    pub features: Vec<String>,
    pub step_type: Option<String>,
    pub purpose: Option<String>,
    pub team: Option<String>,
    pub estimated_input_tokens: Option<u32>,
    pub max_output_tokens: Option<u32>,
    #[serde(default)]
    pub prompt_cache_key: bool,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    pub config: Option<Value>,
    /// The last user turn's text: with it, a 0.2 policy that asks for
    /// content gets the signals the gateway would compute.
    pub prompt: Option<String>,
    /// The system prompt, with `prompt`.
    pub system: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSpec {
    pub metric: Option<String>,
    pub interval: Option<String>,
    pub interval_seconds: Option<u32>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub providers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidateSpec {
    pub id: String,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub logical_model: Option<String>,
    #[serde(default)]
    pub price: PriceSpec,
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default)]
    pub zdr: bool,
    pub tier: Option<u8>,
    #[serde(default)]
    pub health: HealthSpec,
    pub headroom: Option<f32>,
    #[serde(default)]
    pub cache_affinity: bool,
    pub context_window: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSpec {
    #[serde(default)]
    pub input: f64,
    #[serde(default)]
    pub output: f64,
    pub cached_input: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthSpec {
    #[default]
    Healthy,
    Degraded,
    HalfOpen,
}

/// Properties the plan (or the failure) must have.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub plan: Option<Vec<String>>,
    pub first: Option<String>,
    #[serde(default)]
    pub never: Vec<String>,
    #[serde(default)]
    pub includes: Vec<String>,
    #[serde(default)]
    pub order: Vec<String>,
    pub attempts: Option<usize>,
    pub strips: Option<Vec<String>>,
    pub strips_all: Option<Vec<String>>,
    pub label: Option<String>,
    pub error: Option<String>,
    pub fault: Option<String>,
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

/// Metric values of a case, answering `host.metric`.
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
