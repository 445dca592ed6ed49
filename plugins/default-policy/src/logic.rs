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

//!
//! # Contract versions
//!
//! This file is the decision alone, written against [`Offer`] (the
//! candidates) and [`Ask`] (the request) rather than any WIT version's
//! types. `logic/v0_1.rs` and `logic/v0_2.rs` adapt each contract's types to
//! it, so the 0.1 and 0.2 builds of this policy decide the same way.

use serde_json::{Map, Value};
use std::cell::RefCell;
use std::cmp::Ordering;
use std::rc::Rc;

/// Default cap on the number of attempts in a plan.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 16;
/// Output tokens assumed for cost estimates when the caller set no cap.
pub const DEFAULT_OUTPUT_TOKENS: u32 = 1000;
/// Bounds of the window `host.metric` accepts.
pub const MIN_WINDOW_SECONDS: u32 = 900;
pub const MAX_WINDOW_SECONDS: u32 = 604_800;
/// Most distinct features one request may carry (they are tracked in a
/// [`Mask`]; the gateway's feature table has 20).
pub const MAX_FEATURES: usize = Mask::BITS as usize;
/// A set of a request's features, by their position in [`Features::names`]
/// (64 bits: one machine word in WebAssembly too, where 128-bit shifts are
/// library calls).
pub type Mask = u64;
/// Number of steps in the feature strip order.
pub const STRIP_STEPS: u8 = 12;

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
    fn matches(&self, req: &Ask) -> bool {
        fn any_of(wanted: &Option<Vec<String>>, got: Option<&str>) -> bool {
            match wanted {
                None => true,
                Some(list) => match got {
                    Some(g) => list.iter().any(|w| w.eq_ignore_ascii_case(g)),
                    None => false,
                },
            }
        }
        any_of(&self.step_type, req.step_type)
            && any_of(&self.purpose, req.purpose)
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
// The request and the candidates, whichever contract they came in

/// What the decision reads of the request.
pub struct Ask<'a> {
    /// The model the caller asked for.
    pub model: &'a str,
    /// The caller's `routing.metric`, already parsed.
    pub metric: Option<Metric>,
    /// `routing.interval-seconds` (clamped here to what `host.metric` takes).
    pub interval_seconds: u32,
    /// The caller's `routing.models`.
    pub fallbacks: &'a [String],
    pub step_type: Option<&'a str>,
    pub purpose: Option<&'a str>,
    pub metadata: &'a [(String, String)],
    pub estimated_input_tokens: u32,
    pub max_output_tokens: Option<u32>,
    pub prompt_cache_key: bool,
}

/// Prices in US dollars per one million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cached_input: f64,
}

/// The candidates of one decision, read by position.
pub trait Offer {
    fn len(&self) -> usize;
    fn provider(&self, i: usize) -> &str;
    fn model(&self, i: usize) -> &str;
    fn logical_model(&self, i: usize) -> Option<&str>;
    fn price(&self, i: usize) -> Price;
    fn tier(&self, i: usize) -> u8;
    /// Degraded health (healthy and half-open rank alike).
    fn degraded(&self, i: usize) -> bool;
    fn headroom(&self, i: usize) -> Option<f32>;
    fn cache_affinity(&self, i: usize) -> bool;
    /// The live metric `name` (canonical, see [`Metric::parse`]) of
    /// candidate `i` over `window` seconds.
    fn metric(&self, i: usize, name: &str, window: u32) -> Option<f64>;
    /// The live metric `name` of every candidate, in offer order (NaN for
    /// no data), where the contract reads them in one call; `None` (the
    /// default) has the decision read them one by one with
    /// [`Offer::metric`], only for the candidates it sorts.
    fn metric_all(&self, _name: &str, _window: u32) -> Option<Vec<f64>> {
        None
    }
    /// Whether candidate `i`'s id is `target`, ignoring ASCII case.
    fn id_is(&self, i: usize, target: &str) -> bool;
    /// Order of two candidates' ids.
    fn id_cmp(&self, a: usize, b: usize) -> Ordering;
    /// Whether two candidates have the same id.
    fn same_id(&self, a: usize, b: usize) -> bool {
        self.id_cmp(a, b) == Ordering::Equal
    }
}

/// The order of `p1/m1` and `p2/m2` as strings, without joining them.
pub fn joined_cmp(p1: &str, m1: &str, p2: &str, m2: &str) -> Ordering {
    if p1 == p2 {
        return m1.cmp(m2);
    }
    let common = p1.len().min(p2.len());
    match p1.as_bytes()[..common].cmp(&p2.as_bytes()[..common]) {
        Ordering::Equal => {}
        other => return other,
    }
    // One provider is a prefix of the other: the shorter's `/` meets the
    // longer's next byte. Only a provider with a `/` in it (never an
    // account name) can make them equal there; then compare bytewise.
    let (shorter_first, next) = if p1.len() < p2.len() {
        (true, p2.as_bytes()[common])
    } else {
        (false, p1.as_bytes()[common])
    };
    let at_slash = b'/'.cmp(&next);
    match (at_slash, shorter_first) {
        (Ordering::Equal, _) => {
            let a = p1.bytes().chain(std::iter::once(b'/')).chain(m1.bytes());
            let b = p2.bytes().chain(std::iter::once(b'/')).chain(m2.bytes());
            a.cmp(b)
        }
        (o, true) => o,
        (o, false) => o.reverse(),
    }
}

/// Whether `provider/model` is `target`, ignoring ASCII case, without allocating.
pub fn joined_id_is(provider: &str, model: &str, target: &str) -> bool {
    target.len() == provider.len() + 1 + model.len()
        && target.as_bytes()[provider.len()] == b'/'
        && target.is_char_boundary(provider.len())
        && target[..provider.len()].eq_ignore_ascii_case(provider)
        && target[provider.len() + 1..].eq_ignore_ascii_case(model)
}

/// Why the policy declines to route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    NoRoute,
    BadConfig,
    Internal,
}

/// A refusal, in the contract's terms once adapted.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
}

/// One attempt of a [`Choice`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick {
    /// Position of the candidate in the offer.
    pub index: usize,
    /// Bits (of [`Features::names`]) to strip.
    pub strip: Mask,
    pub timeout_ms: Option<u32>,
}

/// A plan before it is put in a contract's types.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub attempts: Vec<Pick>,
    pub label: String,
    /// The sort metric the plan was ordered by, for the explanation.
    pub metric: Metric,
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
pub struct Features<'r> {
    pub names: Vec<&'r str>,
    /// `strippable[k]`: bits of the features removed after `k` strip steps.
    strippable: [Mask; STRIP_STEPS as usize + 1],
}

impl<'r> Features<'r> {
    /// The features of `names`, each once, in first-seen order.
    pub fn new(names: impl IntoIterator<Item = &'r str>) -> Result<Self, Refusal> {
        let mut distinct: Vec<&str> = Vec::new();
        for f in names {
            if !distinct.contains(&f) {
                distinct.push(f);
            }
        }
        if distinct.len() > MAX_FEATURES {
            return Err(Refusal {
                kind: RefusalKind::Internal,
                message: format!(
                    "request uses {} distinct features; the default policy handles at most {MAX_FEATURES}",
                    distinct.len()
                ),
            });
        }
        let mut by_step = [0; STRIP_STEPS as usize + 1];
        for (i, f) in distinct.iter().enumerate() {
            let step = strip_step(f) as usize;
            if step > 0 {
                by_step[step] |= (1 as Mask) << i;
            }
        }
        let mut strippable = [0; STRIP_STEPS as usize + 1];
        for k in 1..strippable.len() {
            strippable[k] = strippable[k - 1] | by_step[k];
        }
        Ok(Features {
            names: distinct,
            strippable,
        })
    }

    /// Bits of the features for which `supports` is false.
    pub fn missing(&self, supports: impl Fn(&str) -> bool) -> Mask {
        let mut missing = 0;
        for (i, f) in self.names.iter().enumerate() {
            if !supports(f) {
                missing |= (1 as Mask) << i;
            }
        }
        missing
    }

    /// The names of `mask`'s features.
    pub fn list(&self, mask: Mask) -> Vec<String> {
        self.names
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & ((1 as Mask) << i) != 0)
            .map(|(_, f)| (*f).to_string())
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Targets

fn serves<O: Offer + ?Sized>(offer: &O, i: usize, slug: &str) -> bool {
    offer.model(i).eq_ignore_ascii_case(slug)
        || offer
            .logical_model(i)
            .is_some_and(|l| l.eq_ignore_ascii_case(slug))
}

/// Fills `out` with the candidates a target names (pinned ones first) and
/// returns how many leading entries are pinned.
fn resolve<O: Offer + ?Sized>(target: &str, offer: &O, out: &mut Vec<usize>) -> usize {
    out.clear();
    let n = offer.len();
    if target.eq_ignore_ascii_case("auto") {
        out.extend(0..n);
        return 0;
    }
    if let Some((provider, model)) = target.split_once('/') {
        let exact = (0..n).find(|&i| offer.id_is(i, target));
        if exact.is_some() || (0..n).any(|i| offer.provider(i).eq_ignore_ascii_case(provider)) {
            let is_pinned = |i: usize| {
                offer.id_is(i, target)
                    || (offer.provider(i).eq_ignore_ascii_case(provider) && serves(offer, i, model))
            };
            out.extend((0..n).filter(|&i| is_pinned(i)));
            let pinned = out.len();
            let exact_model = exact.map(|e| offer.model(e));
            out.extend((0..n).filter(|&i| {
                !is_pinned(i)
                    && (serves(offer, i, model)
                        || exact_model.is_some_and(|m| offer.model(i).eq_ignore_ascii_case(m)))
            }));
            return pinned;
        }
    }
    out.extend((0..n).filter(|&i| serves(offer, i, target)));
    // `provider/model` whose provider the host filtered out: same model elsewhere.
    if out.is_empty()
        && let Some((_, model)) = target.split_once('/')
        && !model.is_empty()
    {
        out.extend((0..n).filter(|&i| serves(offer, i, model)));
    }
    0
}

// ---------------------------------------------------------------------------
// Ordering

/// Estimated cost of this request at a candidate with `price` (and cache
/// affinity `cached`), in US dollars.
pub fn estimated_cost(ask: &Ask, price: Price, cached: bool) -> f64 {
    let input_price = if ask.prompt_cache_key && cached {
        price.cached_input
    } else {
        price.input
    };
    let output = ask.max_output_tokens.unwrap_or(DEFAULT_OUTPUT_TOKENS);
    (f64::from(ask.estimated_input_tokens) * input_price + f64::from(output) * price.output) / 1e6
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

struct Ranker<'a, O: Offer + ?Sized> {
    ask: &'a Ask<'a>,
    offer: &'a O,
    metric: &'a Metric,
    window: u32,
    /// Live metric values read so far.
    values: Values,
}

/// The live metric values a [`Ranker`] has read.
enum Values {
    /// None yet (and none needed unless a group of two or more is sorted).
    Unread,
    /// Every candidate's, read in one call ([`Offer::metric_all`]); NaN for
    /// no data.
    All(Vec<f64>),
    /// Per candidate index, each read on first use.
    Each(Vec<Option<Option<f64>>>),
}

impl<'a, O: Offer + ?Sized> Ranker<'a, O> {
    fn live_value(&mut self, i: usize, name: &str) -> Option<f64> {
        if let Values::Unread = self.values {
            let n = self.offer.len();
            self.values = match self.offer.metric_all(name, self.window) {
                Some(all) if all.len() == n => Values::All(all),
                _ => Values::Each(vec![None; n]),
            };
        }
        match &mut self.values {
            Values::All(all) => all.get(i).copied().filter(|x| !x.is_nan()),
            Values::Each(each) => {
                if let Some(Some(v)) = each.get(i) {
                    return *v;
                }
                let v = self
                    .offer
                    .metric(i, name, self.window)
                    .filter(|x| !x.is_nan());
                if let Some(slot) = each.get_mut(i) {
                    *slot = Some(v);
                }
                v
            }
            Values::Unread => None,
        }
    }

    fn key(&mut self, i: usize) -> SortKey {
        let offer = self.offer;
        let metric: &'a Metric = self.metric;
        let cached = offer.cache_affinity(i);
        let cost = estimated_cost(self.ask, offer.price(i), cached);
        let tier = offer.tier(i);
        // A half-open circuit is offered to one request at a time: that
        // request is its probe, so it ranks as healthy.
        let health = u8::from(offer.degraded(i));
        let not_cached = self.ask.prompt_cache_key && !cached;
        let exhausted = offer.headroom(i).is_some_and(|h| h <= 0.0);
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
        let offer = self.offer;
        keys.sort_unstable_by(|a, b| {
            (a.flags, a.value, a.tier, a.cost)
                .cmp(&(b.flags, b.value, b.tier, b.cost))
                .then_with(|| offer.id_cmp(a.index, b.index))
                .then(a.index.cmp(&b.index))
        });
        for (slot, k) in members.iter_mut().zip(keys.iter()) {
            *slot = k.index;
        }
    }
}

// ---------------------------------------------------------------------------
// Decision

pub fn bad_config(message: String) -> Refusal {
    Refusal {
        kind: RefusalKind::BadConfig,
        message,
    }
}

/// The first targets of a decision: the requested model, or a matched
/// rule's models in its place.
#[derive(Clone, Copy)]
enum Primaries<'a> {
    Asked(&'a str),
    Rule(&'a [String]),
}

impl<'a> Primaries<'a> {
    fn iter(self) -> impl Iterator<Item = &'a str> {
        let (asked, rule) = match self {
            Primaries::Asked(model) => (Some(model), &[][..]),
            Primaries::Rule(models) => (None, models),
        };
        asked.into_iter().chain(rule.iter().map(String::as_str))
    }
}

/// Buffers a decision needs, kept from one decision to the next so that a
/// warm instance does not allocate them again.
#[derive(Default)]
struct Scratch {
    used: Vec<bool>,
    considered: Vec<bool>,
    members: Vec<usize>,
    keys: Vec<SortKey>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());

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

/// Decides with an already parsed config. `missing[i]` holds the bits of
/// `features` candidate `i` does not support.
pub fn choose<O: Offer + ?Sized>(
    ask: &Ask,
    offer: &O,
    features: &Features,
    missing: &[Mask],
    config: &Config,
) -> Result<Choice, Refusal> {
    let rule = config.rules.iter().find(|r| r.matches(ask));
    let metric = ask
        .metric
        .as_ref()
        .or_else(|| rule.and_then(|r| r.metric.as_ref()))
        .or(config.metric.as_ref())
        .unwrap_or(&Metric::Performance);

    let n = offer.len();
    let model = ask.model.trim();
    let rule_models = rule.map(|r| r.models.as_slice()).unwrap_or(&[]);
    // The requested model, or a matched rule's models in its place.
    let primaries = if model.eq_ignore_ascii_case("auto") && !rule_models.is_empty() {
        Primaries::Rule(rule_models)
    } else {
        Primaries::Asked(ask.model)
    };
    let fallbacks: &[String] = if !ask.fallbacks.is_empty() {
        ask.fallbacks
    } else if let Some(f) = rule.and_then(|r| r.fallbacks.as_ref()) {
        f
    } else {
        &config.fallbacks
    };

    let max = config.max_attempts.max(1) as usize;
    let timeout_ms = rule.and_then(|r| r.timeout_ms);
    let mut ranker = Ranker {
        ask,
        offer,
        metric,
        window: ask
            .interval_seconds
            .clamp(MIN_WINDOW_SECONDS, MAX_WINDOW_SECONDS),
        values: Values::Unread,
    };

    let mut scratch = SCRATCH
        .with(|cell| cell.try_borrow_mut().map(|mut s| std::mem::take(&mut *s)))
        .unwrap_or_default();
    let Scratch {
        used,
        considered,
        members,
        keys,
    } = &mut scratch;
    used.clear();
    used.resize(n, false);
    considered.clear();
    considered.resize(n, false);
    let mut attempts: Vec<Pick> = Vec::with_capacity(max.min(n));

    'targets: for target in primaries.iter().chain(fallbacks.iter().map(String::as_str)) {
        let target = target.trim();
        let mut pinned = resolve(target, offer, members);
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
        ranker.sort(head, keys);
        ranker.sort(tail, keys);

        for &i in members.iter() {
            if attempts.len() >= max {
                break 'targets;
            }
            if attempts.iter().any(|a| offer.same_id(a.index, i)) {
                continue; // duplicate ids in the offer: each candidate at most once
            }
            used[i] = true;
            attempts.push(Pick {
                index: i,
                strip: missing[i] & allowed,
                timeout_ms,
            });
        }
    }

    let refusal = attempts
        .is_empty()
        .then(|| no_route(ask, n, primaries, fallbacks, features, missing, considered));
    // Kept for the next decision on this thread (an instance's, in a component).
    let _ = SCRATCH.with(|cell| cell.try_borrow_mut().map(|mut s| *s = scratch));
    if let Some(refusal) = refusal {
        return Err(refusal);
    }
    Ok(Choice {
        attempts,
        label: match rule {
            Some(r) => format!("rule:{}", r.name),
            None => "default".to_string(),
        },
        metric: metric.clone(),
    })
}

fn no_route(
    ask: &Ask,
    offered: usize,
    primaries: Primaries,
    fallbacks: &[String],
    features: &Features,
    missing: &[Mask],
    considered: &[bool],
) -> Refusal {
    let quote = |list: &[String]| {
        list.iter()
            .map(|m| format!("`{}`", m.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut what = format!("model `{}`", ask.model.trim());
    if let Primaries::Rule(models) = primaries
        && (models.len() > 1 || models.first().is_some_and(|p| p != ask.model))
    {
        what.push_str(&format!(" (rule models {})", quote(models)));
    }
    if !fallbacks.is_empty() {
        what.push_str(&format!(" or fallbacks {}", quote(fallbacks)));
    }
    let message = if offered == 0 {
        format!("no route for {what}: no candidates were offered")
    } else if !considered.iter().any(|&c| c) {
        format!("no route for {what}: no offered candidate serves it")
    } else {
        // Every considered candidate lacks at least one feature that is never stripped.
        let mut unservable = 0;
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
    Refusal {
        kind: RefusalKind::NoRoute,
        message,
    }
}

/// Parses the caller's `routing.metric` text, as 0.1 passes it.
pub fn requested_metric(text: Option<&str>) -> Result<Option<Metric>, Refusal> {
    match text.map(str::trim) {
        Some(m) if !m.is_empty() => Metric::parse(m)
            .map(Some)
            .ok_or_else(|| bad_config(format!("routing.metric: unknown metric `{m}`"))),
        _ => Ok(None),
    }
}

// Spelled out so the file also compiles where another crate includes it by
// path (the host's policy benchmark builds this logic natively as a baseline).
#[cfg(test)]
#[path = "logic/tests.rs"]
mod tests;
