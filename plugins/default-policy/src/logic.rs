//! The default policy's decision, independent of the component boundary.
//!
//! # Team config (`request.config`)
//!
//! `{}`, `null` and an empty string mean "all defaults". Otherwise a JSON object:
//!
//! ```json
//! {
//!   "metric": "performance",
//!   "fallbacks": ["gpt-5-mini"],
//!   "max_attempts": 16,
//!   "rules": [
//!     { "name": "cheap-extraction", "priority": 100,
//!       "match": { "step_type": ["extraction"], "purpose": "classification",
//!                  "metadata": { "tier": "batch" } },
//!       "models": ["claude-haiku-4-5"], "fallbacks": ["gpt-5-mini"],
//!       "metric": "cost", "timeout_ms": 20000 }
//!   ]
//! }
//! ```
//!
//! - Unknown top-level keys are ignored (the host may hand over a shared config
//!   section); unknown keys inside a rule or its `match` are an error, because a
//!   misspelt match field would silently make the rule match everything.
//! - `max_attempts` and `timeout_ms` are integers >= 1; `priority` is an
//!   integer (default 0); `name` is a required non-empty string.
//! - `step_type` / `purpose` take a string or a non-empty list of strings (any
//!   of them matches); `metadata` is an object of string values that must all
//!   be present in the request's metadata. All comparisons ignore ASCII case.
//! - A rule's `fallbacks` given as `[]` means "no fallbacks" for that rule;
//!   leaving the key out inherits the top-level `fallbacks`.
//! - Every metric name (top-level, per rule and the request's) is validated;
//!   an unknown one is a `bad-config` error naming it.
//!
//! # Decision
//!
//! 1. Rules are tried highest `priority` first (ties in file order); the first
//!    match sets the label `rule:<name>`; otherwise the label is `default`.
//! 2. Metric: `routing.metric`, else the rule's, else the config's, else
//!    `performance`.
//! 3. Targets: the requested model (or, for `auto` with a matched rule that has
//!    `models`, those models in order), then the fallbacks
//!    (`routing.models`, else the rule's, else the config's). Each target is a
//!    group: `auto` is every candidate; `provider/model` is that candidate first
//!    then the same model at other providers; anything else is a slug matched
//!    against `model` and `logical-model`. A string is read as `provider/model`
//!    only when it equals a candidate id or its prefix is a candidate's
//!    provider; if read as a slug it matches nothing and contains a `/`, the
//!    part after the first `/` is used (the pinned provider was filtered out by
//!    the host, e.g. its circuit is open, so the same model elsewhere serves).
//! 4. Per group (candidates already in the plan are left out), feature
//!    degradation picks the fewest strip steps (see [`strip_step`]) after which
//!    some candidate supports everything left; only candidates that then
//!    support everything not stripped are kept, each stripping only what it
//!    lacks. Features outside the strip order (e.g. `vision`) are never
//!    stripped.
//! 5. Inside a group: health (healthy and half-open alike, then degraded: the
//!    host offers a half-open candidate to one request at a time, and that
//!    request is the probe that closes its circuit), then cache-affine
//!    candidates first when the request has a prompt-cache key, then candidates
//!    with exhausted rate-limit headroom last, then candidates with metric data
//!    before those without, then the metric, then tier, estimated cost and id.
//!    A pinned `provider/model` candidate stays ahead of its group.
//! 6. The plan is cut at `max_attempts`; an empty plan is a `no-route` error.

use crate::switchyard::policy::types::{
    Attempt, Candidate, Health, Info, Plan, PolicyError, PolicyErrorKind, Request,
};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::rc::Rc;

/// Metric lookup: (candidate id, metric name, window in seconds) -> value.
pub type MetricLookup<'a> = dyn Fn(&str, &str, u32) -> Option<f64> + 'a;

/// Default cap on the number of attempts in a plan.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 16;
/// Output tokens assumed for cost estimates when the caller set no cap.
pub const DEFAULT_OUTPUT_TOKENS: u32 = 1000;
/// Bounds of the window `host.metric` accepts.
pub const MIN_WINDOW_SECONDS: u32 = 900;
pub const MAX_WINDOW_SECONDS: u32 = 604_800;
/// Most distinct features one request may carry (they are tracked in a bitmask).
pub const MAX_FEATURES: usize = 128;
/// Number of steps in the feature strip order.
pub const STRIP_STEPS: u8 = 12;

/// `describe()`: no precomputed metrics. The metric this policy sorts by
/// depends on each request (`routing.metric`, a rule, the team config), and the
/// static ones (`performance`, `cost`) need none. Asking the host to precompute
/// a fixed list would cost work on every request for values most requests never
/// use, so the policy reads the one live metric it needs through `host.metric`.
pub fn describe() -> Info {
    Info {
        name: "switchyard-default".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        metrics: Vec::new(),
    }
}

// ---------------------------------------------------------------------------
// Metrics

/// A sort metric.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// Tier ascending (1 is best).
    Performance,
    /// Estimated request cost ascending.
    Cost,
    /// A live metric read over `routing.interval-seconds`.
    Live {
        /// Canonical name (lowercase, `_` separators), as passed to the lookup.
        name: String,
        /// `uptime`, `throughput`, `total_requests`: larger is better.
        higher_is_better: bool,
    },
}

impl Metric {
    /// Parses a metric name. Case is ignored and `-` is read as `_`
    /// (`total-requests` = `total_requests`). `None` when unknown.
    pub fn parse(raw: &str) -> Option<Metric> {
        let name: String = raw
            .trim()
            .chars()
            .map(|c| {
                if c == '-' {
                    '_'
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect();
        let live = |name: String, higher_is_better| Metric::Live {
            name,
            higher_is_better,
        };
        match name.as_str() {
            "performance" => return Some(Metric::Performance),
            "cost" => return Some(Metric::Cost),
            "uptime" | "throughput" | "total_requests" => return Some(live(name, true)),
            "avg_latency" | "min_latency" | "max_latency" | "avg_e2e_latency"
            | "min_e2e_latency" | "max_e2e_latency" | "avg_ttft" | "min_ttft" | "max_ttft"
            | "input_tokens" | "output_tokens" | "total_tokens" => return Some(live(name, false)),
            _ => {}
        }
        // pNN_latency, pNN_e2e_latency, pNN_ttft with NN in 0..=100.
        let rest = name.strip_prefix('p')?;
        let (digits, suffix) = rest.split_once('_')?;
        if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u32 = digits.parse().ok()?;
        if n > 100 || !matches!(suffix, "latency" | "e2e_latency" | "ttft") {
            return None;
        }
        let canonical = if digits.len() > 1 && digits.starts_with('0') {
            format!("p{n}_{suffix}")
        } else {
            name
        };
        Some(live(canonical, false))
    }
}

// ---------------------------------------------------------------------------
// Config

/// One routing rule of the team config.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    pub name: String,
    pub priority: i64,
    pub step_type: Option<Vec<String>>,
    pub purpose: Option<Vec<String>>,
    pub metadata: Vec<(String, String)>,
    pub models: Vec<String>,
    pub fallbacks: Option<Vec<String>>,
    pub metric: Option<Metric>,
    pub timeout_ms: Option<u32>,
}

impl Rule {
    fn matches(&self, req: &Request) -> bool {
        fn any_of(wanted: &Option<Vec<String>>, got: &Option<String>) -> bool {
            match wanted {
                None => true,
                Some(list) => match got {
                    Some(g) => list.iter().any(|w| w.eq_ignore_ascii_case(g)),
                    None => false,
                },
            }
        }
        any_of(&self.step_type, &req.step_type)
            && any_of(&self.purpose, &req.purpose)
            && self.metadata.iter().all(|(k, v)| {
                req.metadata
                    .iter()
                    .any(|(rk, rv)| rk.eq_ignore_ascii_case(k) && rv.eq_ignore_ascii_case(v))
            })
    }
}

/// The parsed team config. `rules` are sorted by priority, highest first,
/// ties in file order.
#[derive(Debug, Clone)]
pub struct Config {
    pub metric: Option<Metric>,
    pub fallbacks: Vec<String>,
    pub max_attempts: u32,
    pub rules: Vec<Rule>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            metric: None,
            fallbacks: Vec::new(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            rules: Vec::new(),
        }
    }
}

impl Config {
    /// Parses the team config; the error names the offending field.
    pub fn parse(text: &str) -> Result<Config, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed == "{}" || trimmed == "null" {
            return Ok(Config::default());
        }
        let value: Value =
            serde_json::from_str(trimmed).map_err(|e| format!("config is not valid JSON: {e}"))?;
        let obj = match &value {
            Value::Object(o) => o,
            Value::Null => return Ok(Config::default()),
            other => return Err(format!("config must be a JSON object, got {}", kind(other))),
        };
        let mut config = Config::default();
        if let Some(v) = obj.get("metric") {
            config.metric = parse_metric(v, At::top("metric"))?;
        }
        if let Some(v) = obj.get("fallbacks") {
            config.fallbacks = parse_models(v, At::top("fallbacks"))?;
        }
        if let Some(v) = obj.get("max_attempts") {
            config.max_attempts = parse_positive(v, At::top("max_attempts"))?;
        }
        if let Some(v) = obj.get("rules") {
            let list = v
                .as_array()
                .ok_or_else(|| format!("config.rules must be a list, got {}", kind(v)))?;
            let mut rules = Vec::with_capacity(list.len());
            for (i, r) in list.iter().enumerate() {
                rules.push(parse_rule(r, i)?);
            }
            // Stable: equal priorities keep file order.
            rules.sort_by_key(|r: &Rule| std::cmp::Reverse(r.priority));
            config.rules = rules;
        }
        Ok(config)
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Where in the config a value sits, formatted only when reporting an error.
#[derive(Clone, Copy)]
struct At<'a> {
    /// Index and name of the rule, for values inside a rule.
    rule: Option<(usize, &'a str)>,
    /// Dotted field path below the config or the rule; empty for the rule itself.
    field: &'a str,
}

impl<'a> At<'a> {
    fn top(field: &'a str) -> Self {
        At { rule: None, field }
    }
    fn field(self, field: &'a str) -> Self {
        At { field, ..self }
    }
}

impl std::fmt::Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.rule {
            Some((i, name)) => {
                write!(f, "config.rules[{i}] (`{name}`)")?;
                if !self.field.is_empty() {
                    write!(f, ".{}", self.field)?;
                }
                Ok(())
            }
            None => write!(f, "config.{}", self.field),
        }
    }
}

fn parse_metric(v: &Value, at: At) -> Result<Option<Metric>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Metric::parse(s)
            .map(Some)
            .ok_or_else(|| format!("{at}: unknown metric `{s}`")),
        other => Err(format!(
            "{at} must be a metric name (string), got {}",
            kind(other)
        )),
    }
}

fn parse_models(v: &Value, at: At) -> Result<Vec<String>, String> {
    let list = v
        .as_array()
        .ok_or_else(|| format!("{at} must be a list of model names, got {}", kind(v)))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        match m {
            Value::String(s) if !s.trim().is_empty() => out.push(s.trim().to_string()),
            Value::String(_) => return Err(format!("{at}[{i}] is an empty model name")),
            other => {
                return Err(format!(
                    "{at}[{i}] must be a model name (string), got {}",
                    kind(other)
                ));
            }
        }
    }
    Ok(out)
}

fn parse_positive(v: &Value, at: At) -> Result<u32, String> {
    match v.as_u64() {
        Some(n) if n >= 1 && n <= u64::from(u32::MAX) => Ok(n as u32),
        _ => Err(format!(
            "{at} must be an integer from 1 to {}, got {v}",
            u32::MAX
        )),
    }
}

fn parse_string_or_list(v: &Value, at: At) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(list) if !list.is_empty() => list
            .iter()
            .enumerate()
            .map(|(i, x)| match x {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!("{at}[{i}] must be a string, got {}", kind(other))),
            })
            .collect(),
        Value::Array(_) => Err(format!(
            "{at} must not be an empty list (leave it out to match anything)"
        )),
        other => Err(format!(
            "{at} must be a string or a list of strings, got {}",
            kind(other)
        )),
    }
}

fn parse_rule(v: &Value, index: usize) -> Result<Rule, String> {
    let obj: &Map<String, Value> = v
        .as_object()
        .ok_or_else(|| format!("config.rules[{index}] must be an object, got {}", kind(v)))?;
    let name = match obj.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim(),
        Some(Value::String(_)) => return Err(format!("config.rules[{index}].name is empty")),
        Some(other) => {
            return Err(format!(
                "config.rules[{index}].name must be a string, got {}",
                kind(other)
            ));
        }
        None => return Err(format!("config.rules[{index}] has no `name`")),
    };
    let at = At {
        rule: Some((index, name)),
        field: "",
    };
    let mut rule = Rule {
        name: name.to_string(),
        ..Rule::default()
    };
    for (key, val) in obj {
        match key.as_str() {
            "name" => {}
            "priority" => {
                rule.priority = val
                    .as_i64()
                    .ok_or_else(|| format!("{}.priority must be an integer, got {val}", at))?;
            }
            "match" => parse_match(val, at, &mut rule)?,
            "models" => rule.models = parse_models(val, at.field("models"))?,
            "fallbacks" => rule.fallbacks = Some(parse_models(val, at.field("fallbacks"))?),
            "metric" => rule.metric = parse_metric(val, at.field("metric"))?,
            "timeout_ms" => {
                rule.timeout_ms = match val {
                    Value::Null => None,
                    _ => Some(parse_positive(val, at.field("timeout_ms"))?),
                }
            }
            other => {
                return Err(format!(
                    "{at}: unknown key `{other}` (expected name, priority, match, models, fallbacks, metric, timeout_ms)"
                ));
            }
        }
    }
    Ok(rule)
}

fn parse_match(v: &Value, at: At, rule: &mut Rule) -> Result<(), String> {
    let obj = match v {
        Value::Null => return Ok(()),
        Value::Object(o) => o,
        other => return Err(format!("{at}.match must be an object, got {}", kind(other))),
    };
    for (key, val) in obj {
        match key.as_str() {
            "step_type" => {
                rule.step_type = Some(parse_string_or_list(val, at.field("match.step_type"))?)
            }
            "purpose" => rule.purpose = Some(parse_string_or_list(val, at.field("match.purpose"))?),
            "metadata" => {
                let m = val.as_object().ok_or_else(|| {
                    format!(
                        "{at}.match.metadata must be an object of strings, got {}",
                        kind(val)
                    )
                })?;
                for (k, x) in m {
                    match x {
                        Value::String(s) => rule.metadata.push((k.clone(), s.clone())),
                        other => {
                            return Err(format!(
                                "{at}.match.metadata.{k} must be a string, got {}",
                                kind(other)
                            ));
                        }
                    }
                }
            }
            other => {
                return Err(format!(
                    "{at}.match: unknown key `{other}` (expected step_type, purpose, metadata)"
                ));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Features

/// Step of the strip order at which a feature may be removed (1 = first, least
/// important), or 0 when it is never stripped (`vision` and anything unknown).
pub fn strip_step(feature: &str) -> u8 {
    fn family(f: &str, base: &str) -> bool {
        f == base || f.strip_prefix(base).is_some_and(|r| r.starts_with('.'))
    }
    match feature {
        "prompt_cache_key" | "prompt_cache_retention" => 1,
        "text.verbosity" => 2,
        f if family(f, "include") => 3,
        "tools.custom_tools" => 4,
        "parallel_tool_calls" => 5,
        "temperature" | "top_p" => 6,
        f if family(f, "reasoning.effort") => 7,
        "tools.web_search" => 8,
        f if family(f, "tool_choice") => 9,
        "text.format.json_schema" | "text.format.json_object" => 10,
        "tools.function_calling" => 11,
        "stream" => 12,
        _ => 0,
    }
}

/// The request's distinct features, with per-step strip masks.
struct Features<'r> {
    names: Vec<&'r str>,
    /// `strippable[k]`: bits of the features removed after `k` strip steps.
    strippable: [u128; STRIP_STEPS as usize + 1],
}

impl<'r> Features<'r> {
    fn new(req: &'r Request) -> Result<Self, PolicyError> {
        let mut names: Vec<&str> = Vec::with_capacity(req.features.len());
        for f in &req.features {
            if !names.contains(&f.as_str()) {
                names.push(f.as_str());
            }
        }
        if names.len() > MAX_FEATURES {
            return Err(PolicyError {
                kind: PolicyErrorKind::Internal,
                message: format!(
                    "request uses {} distinct features; the default policy handles at most {MAX_FEATURES}",
                    names.len()
                ),
            });
        }
        let mut by_step = [0u128; STRIP_STEPS as usize + 1];
        for (i, f) in names.iter().enumerate() {
            let step = strip_step(f) as usize;
            if step > 0 {
                by_step[step] |= 1u128 << i;
            }
        }
        let mut strippable = [0u128; STRIP_STEPS as usize + 1];
        for k in 1..strippable.len() {
            strippable[k] = strippable[k - 1] | by_step[k];
        }
        Ok(Features { names, strippable })
    }

    /// Bits of the request's features that `c` does not support.
    fn missing(&self, c: &Candidate) -> u128 {
        let mut missing = 0u128;
        for (i, f) in self.names.iter().enumerate() {
            if !c.features.iter().any(|cf| cf == f) {
                missing |= 1u128 << i;
            }
        }
        missing
    }

    fn list(&self, mask: u128) -> Vec<String> {
        self.names
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1u128 << i) != 0)
            .map(|(_, f)| (*f).to_string())
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Targets

fn serves(c: &Candidate, slug: &str) -> bool {
    c.model.eq_ignore_ascii_case(slug)
        || c.logical_model
            .as_deref()
            .is_some_and(|l| l.eq_ignore_ascii_case(slug))
}

/// Fills `out` with the candidates a target names (pinned ones first) and
/// returns how many leading entries are pinned.
fn resolve(target: &str, cands: &[Candidate], out: &mut Vec<usize>) -> usize {
    out.clear();
    if target.eq_ignore_ascii_case("auto") {
        out.extend(0..cands.len());
        return 0;
    }
    if let Some((provider, model)) = target.split_once('/') {
        let exact = cands.iter().find(|c| c.id.eq_ignore_ascii_case(target));
        if exact.is_some()
            || cands
                .iter()
                .any(|c| c.provider.eq_ignore_ascii_case(provider))
        {
            let is_pinned = |c: &Candidate| {
                c.id.eq_ignore_ascii_case(target)
                    || (c.provider.eq_ignore_ascii_case(provider) && serves(c, model))
            };
            out.extend((0..cands.len()).filter(|&i| is_pinned(&cands[i])));
            let pinned = out.len();
            let exact_model = exact.map(|c| c.model.as_str());
            out.extend((0..cands.len()).filter(|&i| {
                let c = &cands[i];
                !is_pinned(c)
                    && (serves(c, model)
                        || exact_model.is_some_and(|m| c.model.eq_ignore_ascii_case(m)))
            }));
            return pinned;
        }
    }
    out.extend((0..cands.len()).filter(|&i| serves(&cands[i], target)));
    // `provider/model` whose provider the host filtered out: same model elsewhere.
    if out.is_empty()
        && let Some((_, model)) = target.split_once('/')
        && !model.is_empty()
    {
        out.extend((0..cands.len()).filter(|&i| serves(&cands[i], model)));
    }
    0
}

// ---------------------------------------------------------------------------
// Ordering

/// Estimated cost of this request at `c`, in US dollars.
pub fn estimated_cost(req: &Request, c: &Candidate) -> f64 {
    let input_price = if req.prompt_cache_key && c.cache_affinity {
        c.price.cached_input
    } else {
        c.price.input
    };
    let output = req.max_output_tokens.unwrap_or(DEFAULT_OUTPUT_TOKENS);
    (f64::from(req.estimated_input_tokens) * input_price + f64::from(output) * c.price.output) / 1e6
}

/// Maps an `f64` to a `u64` with the same order as `f64::total_cmp`.
fn ordered_bits(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 { !b } else { b | (1 << 63) }
}

/// Sort key of a candidate inside a group; smaller sorts first. Ties on all of
/// it are broken by id.
#[derive(Clone, Copy)]
struct SortKey {
    /// health (2 bits) | not cache-affine | headroom exhausted | no metric data
    flags: u8,
    /// Metric value (negated when larger is better) as ordered bits.
    value: u64,
    tier: u8,
    /// Estimated cost as ordered bits.
    cost: u64,
    index: usize,
}

struct Ranker<'a> {
    req: &'a Request,
    cands: &'a [Candidate],
    metric: &'a Metric,
    window: u32,
    lookup: &'a MetricLookup<'a>,
    /// Live metric values already read, per candidate index.
    values: Vec<Option<Option<f64>>>,
}

/// Whether a metric name from `candidate.metrics` denotes the canonical `name`
/// (ignoring ASCII case and reading `-` as `_`), without allocating.
fn same_metric(given: &str, name: &str) -> bool {
    given.len() == name.len()
        && given.bytes().zip(name.bytes()).all(|(g, n)| {
            let g = if g == b'-' {
                b'_'
            } else {
                g.to_ascii_lowercase()
            };
            g == n
        })
}

impl<'a> Ranker<'a> {
    fn live_value(&mut self, i: usize, name: &str) -> Option<f64> {
        if let Some(Some(v)) = self.values.get(i) {
            return *v;
        }
        let c = &self.cands[i];
        let v = match c.metrics.iter().find(|m| same_metric(m.name.trim(), name)) {
            Some(m) => m.value,
            None => (self.lookup)(&c.id, name, self.window),
        };
        let v = v.filter(|x| !x.is_nan());
        if let Some(slot) = self.values.get_mut(i) {
            *slot = Some(v);
        }
        v
    }

    fn key(&mut self, i: usize) -> SortKey {
        let c: &'a Candidate = &self.cands[i];
        let metric: &'a Metric = self.metric;
        let cost = estimated_cost(self.req, c);
        let tier = c.tier;
        let health: u8 = match c.health {
            // A half-open circuit is offered to one request at a time: that
            // request is its probe, so it ranks as healthy.
            Health::Healthy | Health::HalfOpen => 0,
            Health::Degraded => 1,
        };
        let not_cached = self.req.prompt_cache_key && !c.cache_affinity;
        let exhausted = c.headroom.is_some_and(|h| h <= 0.0);
        let (no_data, value) = match metric {
            Metric::Performance => (false, f64::from(tier)),
            Metric::Cost => (false, cost),
            Metric::Live {
                name,
                higher_is_better,
            } => match self.live_value(i, name) {
                Some(v) => (false, if *higher_is_better { -v } else { v }),
                None => (true, 0.0),
            },
        };
        let flags = (health << 3)
            | (u8::from(not_cached) << 2)
            | (u8::from(exhausted) << 1)
            | u8::from(no_data);
        SortKey {
            flags,
            value: ordered_bits(value),
            tier,
            cost: ordered_bits(cost),
            index: i,
        }
    }

    fn sort(&mut self, members: &mut [usize], keys: &mut Vec<SortKey>) {
        if members.len() < 2 {
            return;
        }
        keys.clear();
        for &i in members.iter() {
            let k = self.key(i);
            keys.push(k);
        }
        let cands = self.cands;
        keys.sort_unstable_by(|a, b| {
            (a.flags, a.value, a.tier, a.cost)
                .cmp(&(b.flags, b.value, b.tier, b.cost))
                .then_with(|| cands[a.index].id.cmp(&cands[b.index].id))
                .then(a.index.cmp(&b.index))
        });
        for (slot, k) in members.iter_mut().zip(keys.iter()) {
            *slot = k.index;
        }
    }
}

// ---------------------------------------------------------------------------
// Decision

fn bad_config(message: String) -> PolicyError {
    PolicyError {
        kind: PolicyErrorKind::BadConfig,
        message,
    }
}

/// Parses `request.config` (see [`cached_config`]) and decides.
pub fn route(
    req: &Request,
    cands: &[Candidate],
    lookup: &MetricLookup,
) -> Result<Plan, PolicyError> {
    let config = cached_config(&req.config).map_err(bad_config)?;
    decide(req, cands, &config, lookup)
}

thread_local! {
    /// The last config parsed, keyed by its exact text.
    static LAST_CONFIG: RefCell<Option<(String, Rc<Config>)>> = const { RefCell::new(None) };
}

/// Parses a config, reusing the previous parse when the text is the same.
/// A warm instance is reused only for one team, so it sees the same text again
/// and skips parsing (the bulk of a decision's time when there are rules). A
/// fresh instance just parses: nothing depends on this state.
pub fn cached_config(text: &str) -> Result<Rc<Config>, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed == "{}" || trimmed == "null" {
        return Ok(Rc::new(Config::default()));
    }
    LAST_CONFIG.with(|cell| {
        if let Ok(slot) = cell.try_borrow()
            && let Some((t, c)) = slot.as_ref()
            && t == text
        {
            return Ok(Rc::clone(c));
        }
        let parsed = Rc::new(Config::parse(text)?);
        if let Ok(mut slot) = cell.try_borrow_mut() {
            *slot = Some((text.to_string(), Rc::clone(&parsed)));
        }
        Ok(parsed)
    })
}

/// Decides with an already parsed config.
pub fn decide(
    req: &Request,
    cands: &[Candidate],
    config: &Config,
    lookup: &MetricLookup,
) -> Result<Plan, PolicyError> {
    let rule = config.rules.iter().find(|r| r.matches(req));

    let requested_metric = match req.routing.metric.as_deref().map(str::trim) {
        Some(m) if !m.is_empty() => Some(
            Metric::parse(m)
                .ok_or_else(|| bad_config(format!("routing.metric: unknown metric `{m}`")))?,
        ),
        _ => None,
    };
    let metric = requested_metric
        .as_ref()
        .or_else(|| rule.and_then(|r| r.metric.as_ref()))
        .or(config.metric.as_ref())
        .unwrap_or(&Metric::Performance);

    let features = Features::new(req)?;
    let missing: Vec<u128> = cands.iter().map(|c| features.missing(c)).collect();

    let model = req.model.trim();
    let rule_models = rule.map(|r| r.models.as_slice()).unwrap_or(&[]);
    let primaries: &[String] = if model.eq_ignore_ascii_case("auto") && !rule_models.is_empty() {
        rule_models
    } else {
        std::slice::from_ref(&req.model)
    };
    let fallbacks: &[String] = if !req.routing.models.is_empty() {
        &req.routing.models
    } else if let Some(f) = rule.and_then(|r| r.fallbacks.as_ref()) {
        f
    } else {
        &config.fallbacks
    };

    let max = config.max_attempts.max(1) as usize;
    let timeout_ms = rule.and_then(|r| r.timeout_ms);
    let mut ranker = Ranker {
        req,
        cands,
        metric,
        window: req
            .routing
            .interval_seconds
            .clamp(MIN_WINDOW_SECONDS, MAX_WINDOW_SECONDS),
        lookup,
        values: match metric {
            Metric::Live { .. } => vec![None; cands.len()],
            _ => Vec::new(),
        },
    };

    let mut used = vec![false; cands.len()];
    let mut considered = vec![false; cands.len()];
    let mut attempts: Vec<Attempt> = Vec::with_capacity(max.min(cands.len()));
    let mut members: Vec<usize> = Vec::with_capacity(cands.len());
    let mut keys: Vec<SortKey> = Vec::with_capacity(cands.len());

    'targets: for target in primaries.iter().chain(fallbacks.iter()) {
        let target = target.trim();
        let mut pinned = resolve(target, cands, &mut members);
        // Leave out candidates already in the plan.
        let mut kept = 0;
        for pos in 0..members.len() {
            let i = members[pos];
            if used[i] {
                if pos < pinned {
                    pinned -= 1;
                }
                continue;
            }
            considered[i] = true;
            members[kept] = i;
            kept += 1;
        }
        members.truncate(kept);

        // Fewest strip steps after which some candidate supports everything left.
        let Some(step) = (0..=STRIP_STEPS as usize).find(|&k| {
            members
                .iter()
                .any(|&i| missing[i] & !features.strippable[k] == 0)
        }) else {
            continue;
        };
        let allowed = features.strippable[step];
        let mut kept = 0;
        for pos in 0..members.len() {
            let i = members[pos];
            if missing[i] & !allowed != 0 {
                if pos < pinned {
                    pinned -= 1;
                }
                continue;
            }
            members[kept] = i;
            kept += 1;
        }
        members.truncate(kept);

        let (head, tail) = members.split_at_mut(pinned.min(kept));
        ranker.sort(head, &mut keys);
        ranker.sort(tail, &mut keys);

        for &i in members.iter() {
            if attempts.len() >= max {
                break 'targets;
            }
            let c = &cands[i];
            if attempts.iter().any(|a| a.candidate == c.id) {
                continue; // duplicate ids in the offer: each candidate at most once
            }
            used[i] = true;
            attempts.push(Attempt {
                candidate: c.id.clone(),
                strip: features.list(missing[i] & allowed),
                timeout_ms,
            });
        }
    }

    if attempts.is_empty() {
        return Err(no_route(
            req,
            cands,
            primaries,
            fallbacks,
            &features,
            &missing,
            &considered,
        ));
    }
    Ok(Plan {
        attempts,
        label: match rule {
            Some(r) => format!("rule:{}", r.name),
            None => "default".to_string(),
        },
    })
}

fn no_route(
    req: &Request,
    cands: &[Candidate],
    primaries: &[String],
    fallbacks: &[String],
    features: &Features,
    missing: &[u128],
    considered: &[bool],
) -> PolicyError {
    let quote = |list: &[String]| {
        list.iter()
            .map(|m| format!("`{}`", m.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut what = format!("model `{}`", req.model.trim());
    if primaries.len() > 1 || primaries.first().is_some_and(|p| p != &req.model) {
        what.push_str(&format!(" (rule models {})", quote(primaries)));
    }
    if !fallbacks.is_empty() {
        what.push_str(&format!(" or fallbacks {}", quote(fallbacks)));
    }
    let message = if cands.is_empty() {
        format!("no route for {what}: no candidates were offered")
    } else if !considered.iter().any(|&c| c) {
        format!("no route for {what}: no offered candidate serves it")
    } else {
        // Every considered candidate lacks at least one feature that is never stripped.
        let mut unservable = 0u128;
        for (i, _) in considered.iter().enumerate().filter(|(_, c)| **c) {
            unservable |=
                missing.get(i).copied().unwrap_or(0) & !features.strippable[STRIP_STEPS as usize];
        }
        let lacking = features.list(unservable);
        format!(
            "no route for {what}: no candidate serving it supports {} (features that are never stripped); the request uses {}",
            lacking
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", "),
            features
                .names
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    PolicyError {
        kind: PolicyErrorKind::NoRoute,
        message,
    }
}

// Spelled out so the file also compiles where another crate includes it by
// path (the host's policy benchmark builds this logic natively as a baseline).
#[cfg(test)]
#[path = "logic/tests.rs"]
mod tests;
