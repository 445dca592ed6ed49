//! The case-file format of `switchyard policy test` (docs/policy-cases.md).

use serde::Deserialize;
use serde_json::Value;

pub use crate::policy::spec::{
    CandidateSpec, CaseMetrics, HealthSpec, MetricSpec, PriceSpec, RequestSpec, RoutingSpec,
};

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
