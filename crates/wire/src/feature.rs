//! The feature table of DESIGN §4: [`Feature`], a compact [`FeatureSet`],
//! detecting the features a [`CanonicalRequest`] uses and stripping one.
//!
//! Names (`tools.function_calling`, `reasoning.effort.high`, ...) are the
//! public spelling: catalog and config entries, the policy contract, metric
//! labels and the `stripped` list of an answer use them. Inside the gateway a
//! feature is a [`Feature`] and a request's features are one `u32`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::request::{CanonicalRequest, Tool, is_image_part};

/// How hard a reasoning model thinks (`reasoning_effort`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Effort {
    None,
    Minimal,
    Low,
    Medium,
    High,
    Xhigh,
}

impl Effort {
    /// Every level, lowest first.
    pub const ALL: [Effort; 6] = [
        Effort::None,
        Effort::Minimal,
        Effort::Low,
        Effort::Medium,
        Effort::High,
        Effort::Xhigh,
    ];

    /// The level as the APIs write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Effort::None => "none",
            Effort::Minimal => "minimal",
            Effort::Low => "low",
            Effort::Medium => "medium",
            Effort::High => "high",
            Effort::Xhigh => "xhigh",
        }
    }

    /// A level by name, in any case.
    pub fn parse(level: &str) -> Option<Effort> {
        Effort::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(level))
    }
}

impl fmt::Display for Effort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Effort {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Effort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Effort, D::Error> {
        let level = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Effort::parse(&level).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown reasoning effort `{level}` (expected none, minimal, low, medium, high or xhigh)"
            ))
        })
    }
}

/// One row of the feature table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feature {
    Stream,
    FunctionCalling,
    WebSearch,
    CustomTools,
    ToolChoiceRequired,
    JsonSchema,
    JsonObject,
    Reasoning(Effort),
    Temperature,
    TopP,
    Vision,
    ParallelToolCalls,
    PromptCacheKey,
    Verbosity,
    Include,
}

/// Every feature, in table order (each reasoning level is its own feature).
pub const ALL: [Feature; 20] = [
    Feature::Stream,
    Feature::FunctionCalling,
    Feature::WebSearch,
    Feature::CustomTools,
    Feature::ToolChoiceRequired,
    Feature::JsonSchema,
    Feature::JsonObject,
    Feature::Reasoning(Effort::None),
    Feature::Reasoning(Effort::Minimal),
    Feature::Reasoning(Effort::Low),
    Feature::Reasoning(Effort::Medium),
    Feature::Reasoning(Effort::High),
    Feature::Reasoning(Effort::Xhigh),
    Feature::Temperature,
    Feature::TopP,
    Feature::Vision,
    Feature::ParallelToolCalls,
    Feature::PromptCacheKey,
    Feature::Verbosity,
    Feature::Include,
];

/// Every feature name besides the `reasoning.effort.<level>` family, in
/// table order.
pub const FEATURES: &[&str] = &[
    "stream",
    "tools.function_calling",
    "tools.web_search",
    "tools.custom_tools",
    "tool_choice.required",
    "text.format.json_schema",
    "text.format.json_object",
    "temperature",
    "top_p",
    "vision",
    "parallel_tool_calls",
    "prompt_cache_key",
    "text.verbosity",
    "include",
];

impl Feature {
    /// The feature's name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Feature::Stream => "stream",
            Feature::FunctionCalling => "tools.function_calling",
            Feature::WebSearch => "tools.web_search",
            Feature::CustomTools => "tools.custom_tools",
            Feature::ToolChoiceRequired => "tool_choice.required",
            Feature::JsonSchema => "text.format.json_schema",
            Feature::JsonObject => "text.format.json_object",
            Feature::Reasoning(Effort::None) => "reasoning.effort.none",
            Feature::Reasoning(Effort::Minimal) => "reasoning.effort.minimal",
            Feature::Reasoning(Effort::Low) => "reasoning.effort.low",
            Feature::Reasoning(Effort::Medium) => "reasoning.effort.medium",
            Feature::Reasoning(Effort::High) => "reasoning.effort.high",
            Feature::Reasoning(Effort::Xhigh) => "reasoning.effort.xhigh",
            Feature::Temperature => "temperature",
            Feature::TopP => "top_p",
            Feature::Vision => "vision",
            Feature::ParallelToolCalls => "parallel_tool_calls",
            Feature::PromptCacheKey => "prompt_cache_key",
            Feature::Verbosity => "text.verbosity",
            Feature::Include => "include",
        }
    }

    /// A feature by its name; `None` for a name the table does not have.
    /// (A `match`, which compiles to a length switch: the gateway parses
    /// each candidate's feature names on every request.)
    pub fn parse(name: &str) -> Option<Feature> {
        Some(match name {
            "stream" => Feature::Stream,
            "tools.function_calling" => Feature::FunctionCalling,
            "tools.web_search" => Feature::WebSearch,
            "tools.custom_tools" => Feature::CustomTools,
            "tool_choice.required" => Feature::ToolChoiceRequired,
            "text.format.json_schema" => Feature::JsonSchema,
            "text.format.json_object" => Feature::JsonObject,
            "reasoning.effort.none" => Feature::Reasoning(Effort::None),
            "reasoning.effort.minimal" => Feature::Reasoning(Effort::Minimal),
            "reasoning.effort.low" => Feature::Reasoning(Effort::Low),
            "reasoning.effort.medium" => Feature::Reasoning(Effort::Medium),
            "reasoning.effort.high" => Feature::Reasoning(Effort::High),
            "reasoning.effort.xhigh" => Feature::Reasoning(Effort::Xhigh),
            "temperature" => Feature::Temperature,
            "top_p" => Feature::TopP,
            "vision" => Feature::Vision,
            "parallel_tool_calls" => Feature::ParallelToolCalls,
            "prompt_cache_key" => Feature::PromptCacheKey,
            "text.verbosity" => Feature::Verbosity,
            "include" => Feature::Include,
            _ => return None,
        })
    }

    /// Its position in [`ALL`] (and its bit in a [`FeatureSet`]).
    pub fn index(self) -> usize {
        match self {
            Feature::Stream => 0,
            Feature::FunctionCalling => 1,
            Feature::WebSearch => 2,
            Feature::CustomTools => 3,
            Feature::ToolChoiceRequired => 4,
            Feature::JsonSchema => 5,
            Feature::JsonObject => 6,
            Feature::Reasoning(e) => 7 + e as usize,
            Feature::Temperature => 13,
            Feature::TopP => 14,
            Feature::Vision => 15,
            Feature::ParallelToolCalls => 16,
            Feature::PromptCacheKey => 17,
            Feature::Verbosity => 18,
            Feature::Include => 19,
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether `name` is a feature name models may declare.
pub fn is_known_feature(name: &str) -> bool {
    Feature::parse(name).is_some()
}

/// A set of features: one bit per row of [`ALL`]. Iterates in table order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FeatureSet(u32);

impl FeatureSet {
    pub const EMPTY: FeatureSet = FeatureSet(0);

    pub fn insert(&mut self, feature: Feature) {
        self.0 |= 1 << feature.index();
    }

    pub fn remove(&mut self, feature: Feature) {
        self.0 &= !(1 << feature.index());
    }

    pub fn contains(self, feature: Feature) -> bool {
        self.0 & (1 << feature.index()) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set as bits: bit `i` is row `i` of [`ALL`].
    pub fn bits(self) -> u32 {
        self.0
    }

    /// The set of `bits` (bit `i` is row `i` of [`ALL`]); bits past the
    /// table are dropped.
    pub fn from_bits(bits: u32) -> FeatureSet {
        FeatureSet(bits & ((1u32 << ALL.len()) - 1))
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether every feature of `self` is in `other`.
    pub fn is_subset(self, other: FeatureSet) -> bool {
        self.0 & !other.0 == 0
    }

    /// The features of `self` not in `other`.
    pub fn difference(self, other: FeatureSet) -> FeatureSet {
        FeatureSet(self.0 & !other.0)
    }

    pub fn intersection(self, other: FeatureSet) -> FeatureSet {
        FeatureSet(self.0 & other.0)
    }

    /// The features, in table order.
    pub fn iter(self) -> impl Iterator<Item = Feature> {
        ALL.into_iter().filter(move |f| self.contains(*f))
    }

    /// The features' names, in table order.
    pub fn names(self) -> Vec<String> {
        self.iter().map(|f| f.name().to_owned()).collect()
    }

    /// The set of the named features; names the table does not have are
    /// left out.
    pub fn from_names<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> FeatureSet {
        names
            .into_iter()
            .filter_map(|n| Feature::parse(n.as_ref()))
            .collect()
    }
}

/// Written as the list of names, in table order.
impl Serialize for FeatureSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(Feature::name))
    }
}

/// Read from a list of names; a name the table does not have is an error.
impl<'de> Deserialize<'de> for FeatureSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FeatureSet, D::Error> {
        let names = Vec::<std::borrow::Cow<'de, str>>::deserialize(d)?;
        names
            .iter()
            .map(|n| {
                Feature::parse(n).ok_or_else(|| {
                    serde::de::Error::custom(format!("unknown feature {:?}", n.as_ref()))
                })
            })
            .collect()
    }
}

impl FromIterator<Feature> for FeatureSet {
    fn from_iter<I: IntoIterator<Item = Feature>>(iter: I) -> FeatureSet {
        let mut set = FeatureSet::EMPTY;
        for f in iter {
            set.insert(f);
        }
        set
    }
}

/// The features a request uses.
pub fn detect(request: &CanonicalRequest) -> FeatureSet {
    let mut out = FeatureSet::EMPTY;
    if request.streams() {
        out.insert(Feature::Stream);
    }
    for tool in request.tools.iter().flatten() {
        match tool.kind() {
            "function" => out.insert(Feature::FunctionCalling),
            "custom" => out.insert(Feature::CustomTools),
            _ if tool.is_web_search() => out.insert(Feature::WebSearch),
            _ => {}
        }
    }
    if request.web_search_options.is_some() {
        out.insert(Feature::WebSearch);
    }
    if request
        .tool_choice
        .as_ref()
        .is_some_and(|c| c.forces_a_tool())
    {
        out.insert(Feature::ToolChoiceRequired);
    }
    match request.response_format.as_ref().map(|f| f.kind.as_str()) {
        Some("json_schema") => out.insert(Feature::JsonSchema),
        Some("json_object") => out.insert(Feature::JsonObject),
        _ => {}
    }
    if let Some(effort) = request.effort() {
        out.insert(Feature::Reasoning(effort));
    }
    if request.temperature.is_some() {
        out.insert(Feature::Temperature);
    }
    if request.top_p.is_some() {
        out.insert(Feature::TopP);
    }
    if request.carries_images() {
        out.insert(Feature::Vision);
    }
    if request.parallel_tool_calls.is_some() {
        out.insert(Feature::ParallelToolCalls);
    }
    if request.prompt_cache_key.is_some() {
        out.insert(Feature::PromptCacheKey);
    }
    if request.verbosity.is_some()
        || request
            .passthrough
            .get("text")
            .and_then(|t| t.get("verbosity"))
            .is_some_and(|v| !v.is_null())
    {
        out.insert(Feature::Verbosity);
    }
    if request.include.as_ref().is_some_and(|a| !a.is_empty()) {
        out.insert(Feature::Include);
    }
    out
}

fn retain_tools(request: &mut CanonicalRequest, keep: impl Fn(&Tool) -> bool) {
    if let Some(tools) = &mut request.tools {
        tools.retain(keep);
        if tools.is_empty() {
            request.tools = None;
            request.tool_choice = None;
            request.parallel_tool_calls = None;
        }
    }
}

/// Removes one feature from the request. `stream` is not removed here: the
/// executor calls the provider without streaming and streams the answer itself.
pub fn strip(request: &mut CanonicalRequest, feature: Feature) {
    match feature {
        Feature::FunctionCalling => retain_tools(request, |t| t.kind() != "function"),
        Feature::CustomTools => retain_tools(request, |t| t.kind() != "custom"),
        Feature::WebSearch => {
            request.web_search_options = None;
            retain_tools(request, |t| !t.is_web_search());
        }
        Feature::ToolChoiceRequired => request.tool_choice = None,
        Feature::JsonSchema | Feature::JsonObject => request.response_format = None,
        Feature::Temperature => request.temperature = None,
        Feature::TopP => request.top_p = None,
        Feature::ParallelToolCalls => request.parallel_tool_calls = None,
        Feature::Include => request.include = None,
        Feature::PromptCacheKey => {
            request.prompt_cache_key = None;
            request.passthrough.remove("prompt_cache_retention");
        }
        Feature::Verbosity => {
            request.verbosity = None;
            if let Some(Value::Object(text)) = request.passthrough.get_mut("text") {
                text.remove("verbosity");
            }
        }
        Feature::Vision => {
            for m in &mut request.messages {
                if let Some(Value::Array(parts)) = &mut m.content {
                    parts.retain(|p| !is_image_part(p));
                }
            }
        }
        Feature::Reasoning(_) => {
            request.reasoning_effort = None;
            request.passthrough.remove("reasoning");
        }
        Feature::Stream => {}
    }
}

#[cfg(test)]
#[path = "feature_tests.rs"]
mod tests;
