//! The `switchyard:policy@0.2.0` contract (`wit/v0.2`), served beside 0.1.
//!
//! The host decides in its own terms (the 0.1-shaped [`Request`],
//! [`Candidate`] the executor builds, and the [`RoutePlan`] it runs); this module
//! adapts them to 0.2 and back:
//! - [`Tables`]: the gateway's accounts, models and logical models, with the
//!   index of each candidate id, built once from the config (or, offline,
//!   from a case's candidates);
//! - [`Setup`]: one team's config and the tables, handed to an instance by
//!   `configure` once, and again only when it changes (its `key` differs);
//! - per decision, the request and candidates as numbers and flags, the
//!   declared metrics as one flat list, and the plan back in host terms with
//!   its [`Notes`](super::Notes) (score, explanation, retries).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use switchyard_wire::FeatureSet;
use switchyard_wire::candidate::CandidateRef;
use switchyard_wire::content::Signals;
use switchyard_wire::feature::{Effort, Feature};

use super::{Candidate, Health, InvalidPlan, Limits, Notes, PlannedAttempt, Request, RoutePlan};
use crate::metrics::MetricSource;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2",
        world: "policy",
        additional_derives: [PartialEq],
    });
}

/// The 0.2 WIT types.
pub use bindings::switchyard::policy::types as wit;
pub(super) use bindings::switchyard::policy::{host as wit_host, types as wit_types};
pub(super) use bindings::{Policy as Bindings, PolicyPre};
pub use wit::Features;

/// The version of the 0.2 package this host serves.
pub const WIT_VERSION: &str = "0.2.0";

/// Each feature of the gateway's table and its 0.2 flag.
const FLAGS: [(Feature, Features); 20] = [
    (Feature::Stream, Features::STREAM),
    (Feature::FunctionCalling, Features::FUNCTION_CALLING),
    (Feature::WebSearch, Features::WEB_SEARCH),
    (Feature::CustomTools, Features::CUSTOM_TOOLS),
    (Feature::ToolChoiceRequired, Features::TOOL_CHOICE_REQUIRED),
    (Feature::JsonSchema, Features::JSON_SCHEMA),
    (Feature::JsonObject, Features::JSON_OBJECT),
    (Feature::Reasoning(Effort::None), Features::REASONING_NONE),
    (
        Feature::Reasoning(Effort::Minimal),
        Features::REASONING_MINIMAL,
    ),
    (Feature::Reasoning(Effort::Low), Features::REASONING_LOW),
    (
        Feature::Reasoning(Effort::Medium),
        Features::REASONING_MEDIUM,
    ),
    (Feature::Reasoning(Effort::High), Features::REASONING_HIGH),
    (Feature::Reasoning(Effort::Xhigh), Features::REASONING_XHIGH),
    (Feature::Temperature, Features::TEMPERATURE),
    (Feature::TopP, Features::TOP_P),
    (Feature::Vision, Features::VISION),
    (Feature::ParallelToolCalls, Features::PARALLEL_TOOL_CALLS),
    (Feature::PromptCacheKey, Features::PROMPT_CACHE_KEY),
    (Feature::Verbosity, Features::VERBOSITY),
    (Feature::Include, Features::INCLUDE),
];

/// A feature set as 0.2 flags (one OR per feature in the set).
pub fn to_flags(set: FeatureSet) -> Features {
    let mut bits = set.bits();
    let mut flags = Features::empty();
    while bits != 0 {
        let i = bits.trailing_zeros() as usize;
        if let Some((_, flag)) = FLAGS.get(i) {
            flags |= *flag;
        }
        bits &= bits - 1;
    }
    flags
}

/// 0.2 flags as a feature set. The flags are declared in the table's order,
/// so their bits are the set's (`every_feature_has_its_own_flag…` checks).
pub fn from_flags(flags: Features) -> FeatureSet {
    FeatureSet::from_bits(flags.as_array()[0])
}

// ---------------------------------------------------------------------------
// Metric ids

/// Kinds that take a percentile, and the name of each.
const TIMED: [(wit::MetricKind, &str); 3] = [
    (wit::MetricKind::Latency, "latency"),
    (wit::MetricKind::E2eLatency, "e2e_latency"),
    (wit::MetricKind::Ttft, "ttft"),
];

/// Kinds without a percentile, and the name of each.
const PLAIN: [(wit::MetricKind, &str); 15] = [
    (wit::MetricKind::Uptime, "uptime"),
    (wit::MetricKind::Throughput, "throughput"),
    (wit::MetricKind::TotalRequests, "total_requests"),
    (wit::MetricKind::Latency, "avg_latency"),
    (wit::MetricKind::MinLatency, "min_latency"),
    (wit::MetricKind::MaxLatency, "max_latency"),
    (wit::MetricKind::E2eLatency, "avg_e2e_latency"),
    (wit::MetricKind::MinE2eLatency, "min_e2e_latency"),
    (wit::MetricKind::MaxE2eLatency, "max_e2e_latency"),
    (wit::MetricKind::Ttft, "avg_ttft"),
    (wit::MetricKind::MinTtft, "min_ttft"),
    (wit::MetricKind::MaxTtft, "max_ttft"),
    (wit::MetricKind::InputTokens, "input_tokens"),
    (wit::MetricKind::OutputTokens, "output_tokens"),
    (wit::MetricKind::TotalTokens, "total_tokens"),
];

/// `pNN_<kind>` for every percentile of every timed kind, made once.
fn percentile_names() -> &'static [[String; 101]; 3] {
    static NAMES: OnceLock<[[String; 101]; 3]> = OnceLock::new();
    NAMES.get_or_init(|| {
        std::array::from_fn(|k| std::array::from_fn(|p| format!("p{p}_{}", TIMED[k].1)))
    })
}

/// The host's name of a metric id (`p95_latency`, `avg_ttft`, `uptime`),
/// without allocating. A percentile above 100 reads as 100; a percentile on
/// a kind that takes none is ignored.
pub fn metric_name(id: &wit::MetricId) -> &'static str {
    if let Some(p) = id.percentile
        && let Some(k) = TIMED.iter().position(|(kind, _)| *kind == id.kind)
    {
        return &percentile_names()[k][usize::from(p.min(100))];
    }
    PLAIN
        .iter()
        .find(|(kind, _)| *kind == id.kind)
        .map_or("uptime", |(_, name)| name)
}

/// The metric id of a host metric name (the inverse of [`metric_name`]).
pub fn metric_id(name: &str) -> Option<wit::MetricId> {
    if let Some((kind, _)) = PLAIN.iter().find(|(_, n)| *n == name) {
        return Some(wit::MetricId {
            kind: *kind,
            percentile: None,
        });
    }
    let (digits, base) = name.strip_prefix('p')?.split_once('_')?;
    let (kind, _) = TIMED.iter().find(|(_, n)| *n == base)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let percentile: u8 = digits.parse().ok().filter(|p| *p <= 100)?;
    Some(wit::MetricId {
        kind: *kind,
        percentile: Some(percentile),
    })
}

/// A `routing.metric` as 0.2 sends it: `Ok(None)` when there is none,
/// `Err` naming a metric that does not exist. Case is ignored, `-` reads as
/// `_` and a percentile's leading zeros are dropped (`P095-Latency` is
/// `p95_latency`), as 0.1 policies read it.
pub fn sort(metric: Option<&str>) -> Result<Option<wit::Sort>, String> {
    let raw = match metric.map(str::trim) {
        Some(raw) if !raw.is_empty() => raw,
        _ => return Ok(None),
    };
    let name: String = raw
        .chars()
        .map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    let sort = match name.as_str() {
        "performance" => Some(wit::Sort::Performance),
        "cost" => Some(wit::Sort::Cost),
        name => metric_id(name)
            .filter(|id| {
                // `p95_latency`, not `p95x_latency` or `p_latency`.
                let digits = name.split('_').next().unwrap_or_default();
                id.percentile.is_none()
                    || (digits.len() <= 4 && digits[1..].bytes().all(|b| b.is_ascii_digit()))
            })
            .map(wit::Sort::Live),
    };
    sort.map(Some)
        .ok_or_else(|| format!("routing.metric: unknown metric `{raw}`"))
}

// ---------------------------------------------------------------------------
// Tables and setups

/// The gateway's accounts, models and logical models as 0.2 sends them to
/// `configure`, and where each candidate id sits in them.
#[derive(Debug)]
pub struct Tables {
    accounts: Vec<wit::Account>,
    models: Vec<wit::Model>,
    logical: Vec<String>,
    /// Candidate id (`account/model`) → (account index, model index).
    pairs: HashMap<String, (u16, u16), foldhash::fast::RandomState>,
    logical_index: HashMap<String, u16, foldhash::fast::RandomState>,
    fingerprint: u64,
}

fn model_row(
    slug: &str,
    tier: u8,
    window: u32,
    price: wit::Price,
    features: FeatureSet,
) -> wit::Model {
    wit::Model {
        slug: slug.to_string(),
        tier,
        context_window: window,
        price,
        features: to_flags(features),
    }
}

impl Tables {
    /// The accounts, models and logical models of the gateway's config.
    pub fn from_config(config: &crate::config::Config) -> Tables {
        let mut tables = Tables::empty();
        for account in &config.providers {
            let a = tables.account(&account.name, account.zdr);
            for slug in &account.models {
                let Some(model) = config.catalog.get(slug) else {
                    continue;
                };
                let price = wit::Price {
                    input: model.input,
                    output: model.output,
                    cached_input: model.cached_input,
                };
                let m = tables.model(model_row(
                    &model.slug,
                    model.tier,
                    model.context_window,
                    price,
                    model.features,
                ));
                tables.pair(&account.name, slug, a, m);
            }
        }
        for name in config.logical_models.keys() {
            tables.logical(name);
        }
        tables.seal()
    }

    /// Tables covering `candidates` (what an offline case or a benchmark
    /// knows of the gateway): each model's features are those its
    /// candidates report. A slug priced (or tiered) differently by two
    /// candidates gets a row for each.
    pub fn from_candidates(candidates: &[Candidate]) -> Tables {
        let mut tables = Tables::empty();
        for c in candidates {
            let a = tables.account(&c.provider, c.zdr);
            let features = FeatureSet::from_names(&c.features);
            let m = match tables.models.iter().position(|m| {
                m.slug == c.model
                    && m.tier == c.tier
                    && m.context_window == c.context_window
                    && m.price.input.to_bits() == c.price.input.to_bits()
                    && m.price.output.to_bits() == c.price.output.to_bits()
                    && m.price.cached_input.to_bits() == c.price.cached_input.to_bits()
            }) {
                Some(m) => {
                    let row = &mut tables.models[m];
                    row.features |= to_flags(features);
                    m as u16
                }
                None => {
                    let price = wit::Price {
                        input: c.price.input,
                        output: c.price.output,
                        cached_input: c.price.cached_input,
                    };
                    tables.models.push(model_row(
                        &c.model,
                        c.tier,
                        c.context_window,
                        price,
                        features,
                    ));
                    (tables.models.len() - 1) as u16
                }
            };
            tables.pairs.entry(c.id.clone()).or_insert((a, m));
            if let Some(l) = &c.logical_model {
                tables.logical(l);
            }
        }
        tables.seal()
    }

    fn empty() -> Tables {
        Tables {
            accounts: Vec::new(),
            models: Vec::new(),
            logical: Vec::new(),
            pairs: HashMap::default(),
            logical_index: HashMap::default(),
            fingerprint: 0,
        }
    }

    fn account(&mut self, name: &str, zdr: bool) -> u16 {
        match self.accounts.iter().position(|a| a.name == name) {
            Some(i) => i as u16,
            None => {
                self.accounts.push(wit::Account {
                    name: name.to_string(),
                    zdr,
                });
                (self.accounts.len() - 1) as u16
            }
        }
    }

    fn model(&mut self, row: wit::Model) -> u16 {
        match self.models.iter().position(|m| m.slug == row.slug) {
            Some(i) => i as u16,
            None => {
                self.models.push(row);
                (self.models.len() - 1) as u16
            }
        }
    }

    fn pair(&mut self, account: &str, model: &str, a: u16, m: u16) {
        let id = CandidateRef { account, model }.key();
        self.pairs.entry(id).or_insert((a, m));
    }

    fn logical(&mut self, name: &str) {
        if !self.logical_index.contains_key(name) {
            self.logical_index
                .insert(name.to_string(), self.logical.len() as u16);
            self.logical.push(name.to_string());
        }
    }

    fn seal(mut self) -> Tables {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for a in &self.accounts {
            (&a.name, a.zdr).hash(&mut h);
        }
        for m in &self.models {
            (&m.slug, m.tier, m.context_window, from_flags(m.features)).hash(&mut h);
            for x in [m.price.input, m.price.output, m.price.cached_input] {
                x.to_bits().hash(&mut h);
            }
        }
        self.logical.hash(&mut h);
        self.fingerprint = h.finish();
        self
    }

    /// Where candidate `c` sits: (account, model, logical model).
    fn place(&self, c: &Candidate) -> Option<(u16, u16, Option<u16>)> {
        let (a, m) = *self.pairs.get(&c.id)?;
        let l = match &c.logical_model {
            Some(name) => Some(*self.logical_index.get(name)?),
            None => None,
        };
        Some((a, m, l))
    }
}

/// What one team's instances are configured with.
#[derive(Debug)]
pub struct Setup {
    pub(super) wit: wit::Setup,
    pub(super) tables: Arc<Tables>,
    /// Equal keys: the same team, config and tables.
    pub(super) key: u64,
}

impl Setup {
    /// A setup for `team` with its policy `config`, over `tables`.
    pub fn new(team: &str, config: &str, tables: Arc<Tables>) -> Setup {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (team, config, tables.fingerprint).hash(&mut h);
        Setup {
            wit: wit::Setup {
                team: team.to_string(),
                config: config.to_string(),
                accounts: tables.accounts.clone(),
                models: tables.models.clone(),
                logical_models: tables.logical.clone(),
            },
            key: h.finish(),
            tables,
        }
    }

    /// The team config this setup carries.
    pub fn config(&self) -> &str {
        &self.wit.config
    }

    /// The setup an offline decision implies: the request's team and config,
    /// tables from its candidates.
    pub fn implied(request: &Request, candidates: &[Candidate]) -> Setup {
        Setup::new(
            &request.team,
            &request.config,
            Arc::new(Tables::from_candidates(candidates)),
        )
    }
}

/// What a 0.2 decision is given beyond the request and its candidates.
#[derive(Debug, Clone)]
pub struct Context {
    /// The team's setup (configured once per instance).
    pub setup: Arc<Setup>,
    /// The request's content signals, when the operator allows them for the
    /// team; handed over only to a policy that declared `wants.content`.
    pub content: Option<Arc<Signals>>,
}

// ---------------------------------------------------------------------------
// Per decision

fn content(s: &Signals) -> wit::Content {
    wit::Content {
        last_user: s.last_user.clone(),
        system: s.system.clone(),
        truncated: s.truncated,
        characters: s.characters,
        estimated_tokens: s.estimated_tokens,
        turns: s.turns,
        images: s.images,
        tools: s.tools,
        code_blocks: s.code_blocks,
        digits: s.digits,
        maths: s.maths,
    }
}

/// Why a request cannot be put in 0.2 terms (only an offline case can
/// make one: the gateway validates `routing.metric` at its edge and detects
/// only the features of its table).
pub(super) enum Inexpressible {
    /// `routing.metric` names no metric.
    Metric(String),
    /// Features outside the feature table, which 0.2's flags cannot carry
    /// (and no candidate can declare).
    Features(Vec<String>),
}

/// The request in 0.2 terms.
pub(super) fn request(
    req: &Request,
    content_signals: Option<&Signals>,
) -> Result<wit::Request, Inexpressible> {
    let sort = sort(req.routing.metric.as_deref()).map_err(Inexpressible::Metric)?;
    let features = FeatureSet::from_names(&req.features);
    if features.len() < req.features.len() {
        let unknown: Vec<String> = req
            .features
            .iter()
            .filter(|f| !switchyard_wire::feature::is_known_feature(f))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(Inexpressible::Features(unknown));
        }
    }
    Ok(wit::Request {
        model: req.model.clone(),
        routing: wit::Routing {
            sort,
            interval_seconds: req.routing.interval_seconds,
            models: req.routing.models.clone(),
            providers: req.routing.providers.clone(),
        },
        features: to_flags(features),
        step_type: req.step_type.clone(),
        purpose: req.purpose.clone(),
        estimated_input_tokens: req.estimated_input_tokens,
        max_output_tokens: req.max_output_tokens,
        prompt_cache_key: req.prompt_cache_key,
        metadata: req.metadata.clone(),
        content: content_signals.map(content),
    })
}

/// The candidates in 0.2 terms; the id of the first one the tables do not
/// hold, if any.
pub(super) fn candidates(
    tables: &Tables,
    candidates: &[Candidate],
    into: &mut Vec<wit::Candidate>,
) -> Result<(), String> {
    into.clear();
    for c in candidates {
        let (account, model, logical_model) = tables.place(c).ok_or_else(|| c.id.clone())?;
        into.push(wit::Candidate {
            account,
            model,
            logical_model,
            features: to_flags(FeatureSet::from_names(&c.features)),
            health: match c.health {
                Health::Healthy => wit::Health::Healthy,
                Health::Degraded => wit::Health::Degraded,
                Health::HalfOpen => wit::Health::HalfOpen,
            },
            headroom: c.headroom,
            cache_affinity: c.cache_affinity,
        });
    }
    Ok(())
}

/// The declared metrics of every candidate, candidates × metrics, NaN for
/// no data.
pub(super) fn metrics(
    declared: &[&'static str],
    candidates: &[Candidate],
    source: &dyn MetricSource,
    window: u32,
    into: &mut Vec<f64>,
) {
    into.clear();
    for c in candidates {
        for name in declared {
            into.push(source.metric(&c.id, name, window).unwrap_or(f64::NAN));
        }
    }
}

/// Most explanation lines a plan may carry, and their longest length.
pub const MAX_EXPLANATION_LINES: usize = 8;
pub const MAX_EXPLANATION_CHARS: usize = 200;
/// Most retries an attempt may ask for.
pub const MAX_RETRIES: u8 = 10;

/// A 0.2 plan in host terms, validated as [`super::plan::validate`]
/// validates a 0.1 plan (the same errors), by position and flags rather
/// than by id and name, plus what only 0.2 has: retries and the
/// explanation's size. `offered` are the candidates as 0.2 sent them and
/// `used` the request's features.
pub(super) fn plan(
    plan: wit::Plan,
    used: Features,
    candidates: &[Candidate],
    offered: &[wit::Candidate],
    limits: &Limits,
) -> Result<(RoutePlan, Notes), InvalidPlan> {
    super::plan::check_shape(plan.attempts.len(), &plan.label, limits)?;
    if plan.explanation.len() > MAX_EXPLANATION_LINES
        || plan
            .explanation
            .iter()
            .any(|line| line.chars().count() > MAX_EXPLANATION_CHARS)
    {
        return Err(InvalidPlan::TooLarge(format!(
            "an explanation of {} lines (at most {MAX_EXPLANATION_LINES} of {MAX_EXPLANATION_CHARS} characters)",
            plan.explanation.len()
        )));
    }
    let mut attempts = Vec::with_capacity(plan.attempts.len());
    let mut taken = vec![false; candidates.len()];
    for (index, a) in plan.attempts.iter().enumerate() {
        let at = usize::from(a.candidate);
        let (Some(c), Some(o)) = (candidates.get(at), offered.get(at)) else {
            return Err(InvalidPlan::UnknownCandidate {
                index,
                id: format!("#{}", a.candidate),
            });
        };
        if std::mem::replace(&mut taken[at], true) {
            return Err(InvalidPlan::DuplicateAttempt { id: c.id.clone() });
        }
        let first = |flags: Features| {
            from_flags(flags)
                .iter()
                .next()
                .map_or_else(String::new, |f| f.name().to_string())
        };
        let unrequested = a.strip & !used;
        if unrequested != Features::empty() {
            return Err(InvalidPlan::StripNotRequested {
                id: c.id.clone(),
                feature: first(unrequested),
            });
        }
        let unsupported = used & !(o.features | a.strip);
        if unsupported != Features::empty() {
            return Err(InvalidPlan::UnsupportedFeature {
                id: c.id.clone(),
                feature: first(unsupported),
            });
        }
        if a.retries.is_some_and(|r| r > MAX_RETRIES) {
            return Err(InvalidPlan::TooLarge(format!(
                "{} retries on {:?} (at most {MAX_RETRIES})",
                a.retries.unwrap_or_default(),
                c.id
            )));
        }
        attempts.push(PlannedAttempt {
            candidate: at,
            strip: if a.strip == Features::empty() {
                Vec::new()
            } else {
                from_flags(a.strip).names()
            },
            timeout_ms: a.timeout_ms,
            retries: a.retries,
        });
    }
    let explanation = plan
        .explanation
        .into_iter()
        .map(|line| switchyard_wire::text::printable(&line, MAX_EXPLANATION_CHARS * 4))
        .collect();
    Ok((
        RoutePlan {
            attempts,
            label: plan.label,
        },
        Notes {
            score: plan.score.filter(|s| s.is_finite()),
            explanation,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_feature_has_its_own_flag_and_comes_back() {
        assert_eq!(FLAGS.len(), switchyard_wire::feature::ALL.len());
        for feature in switchyard_wire::feature::ALL {
            let mut one = FeatureSet::EMPTY;
            one.insert(feature);
            let flags = to_flags(one);
            assert_ne!(flags, Features::empty(), "{}", feature.name());
            assert_eq!(from_flags(flags), one, "{}", feature.name());
        }
        let all = FLAGS
            .iter()
            .fold(Features::empty(), |acc, (_, flag)| acc | *flag);
        assert_eq!(from_flags(all).len(), 20, "no two features share a flag");
        // Declared in the table's order: a set's bits are its flags' bits.
        for (i, (feature, flag)) in FLAGS.iter().enumerate() {
            assert_eq!(switchyard_wire::feature::ALL[i], *feature);
            assert_eq!(flag.as_array()[0], 1 << i, "{}", feature.name());
        }
    }

    #[test]
    fn every_live_metric_name_has_an_id_and_comes_back() {
        for name in [
            "avg_latency",
            "p0_latency",
            "p95_latency",
            "p100_latency",
            "p50_e2e_latency",
            "max_e2e_latency",
            "p90_ttft",
            "min_ttft",
            "max_ttft",
            "uptime",
            "throughput",
            "total_requests",
            "input_tokens",
            "output_tokens",
            "total_tokens",
        ] {
            assert!(crate::metrics::is_live_metric(name), "{name}");
            let id = metric_id(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(metric_name(&id), name);
        }
        for bad in ["p101_latency", "fastest", "cost", "p95_speed", ""] {
            assert_eq!(metric_id(bad), None, "{bad}");
        }
        assert_eq!(sort(Some("cost")), Ok(Some(wit::Sort::Cost)));
        assert_eq!(sort(None), Ok(None));
        assert_eq!(sort(Some("  ")), Ok(None));
        let p95 = Ok(Some(wit::Sort::Live(wit::MetricId {
            kind: wit::MetricKind::Latency,
            percentile: Some(95),
        })));
        for spelling in ["p95_latency", "P95-Latency", " p095_latency "] {
            assert_eq!(sort(Some(spelling)), p95, "{spelling}");
        }
        for bad in ["p101_latency", "p+5_latency", "fastest", "p_latency", "p95"] {
            assert!(sort(Some(bad)).is_err(), "{bad}");
        }
    }
}
