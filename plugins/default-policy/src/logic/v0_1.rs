//! The default policy's decision in `switchyard:policy@0.1.0` terms: the
//! candidates are records with their names and prices, the request carries
//! the team config, features are names.
//!
//! The includer provides `crate::logic` (logic.rs) and `crate::v0_1_types`
//! (the 0.1 WIT types, or the host's copy of them).

use std::cmp::Ordering;

use crate::logic::{
    Ask, Choice, Config, Features, Mask, Offer, Price, Refusal, RefusalKind, cached_config, choose,
    requested_metric,
};
use crate::v0_1_types::{
    Attempt, Candidate, Health, Info, Plan, PolicyError, PolicyErrorKind, Request,
};

/// Metric lookup: (candidate id, metric name, window in seconds) -> value.
pub type MetricLookup<'a> = dyn Fn(&str, &str, u32) -> Option<f64> + 'a;

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

struct Offered<'a> {
    cands: &'a [Candidate],
    lookup: &'a MetricLookup<'a>,
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

impl Offer for Offered<'_> {
    fn len(&self) -> usize {
        self.cands.len()
    }
    fn provider(&self, i: usize) -> &str {
        &self.cands[i].provider
    }
    fn model(&self, i: usize) -> &str {
        &self.cands[i].model
    }
    fn logical_model(&self, i: usize) -> Option<&str> {
        self.cands[i].logical_model.as_deref()
    }
    fn price(&self, i: usize) -> Price {
        let p = &self.cands[i].price;
        Price {
            input: p.input,
            output: p.output,
            cached_input: p.cached_input,
        }
    }
    fn tier(&self, i: usize) -> u8 {
        self.cands[i].tier
    }
    fn degraded(&self, i: usize) -> bool {
        self.cands[i].health == Health::Degraded
    }
    fn headroom(&self, i: usize) -> Option<f32> {
        self.cands[i].headroom
    }
    fn cache_affinity(&self, i: usize) -> bool {
        self.cands[i].cache_affinity
    }
    fn metric(&self, i: usize, name: &str, window: u32) -> Option<f64> {
        let c = &self.cands[i];
        match c.metrics.iter().find(|m| same_metric(m.name.trim(), name)) {
            Some(m) => m.value,
            None => (self.lookup)(&c.id, name, window),
        }
    }
    fn id_is(&self, i: usize, target: &str) -> bool {
        self.cands[i].id.eq_ignore_ascii_case(target)
    }
    fn id_cmp(&self, a: usize, b: usize) -> Ordering {
        self.cands[a].id.cmp(&self.cands[b].id)
    }
}

fn refusal(r: Refusal) -> PolicyError {
    PolicyError {
        kind: match r.kind {
            RefusalKind::NoRoute => PolicyErrorKind::NoRoute,
            RefusalKind::BadConfig => PolicyErrorKind::BadConfig,
            RefusalKind::Internal => PolicyErrorKind::Internal,
        },
        message: r.message,
    }
}

/// Parses `request.config` (see [`cached_config`]) and decides.
pub fn route(
    req: &Request,
    cands: &[Candidate],
    lookup: &MetricLookup,
) -> Result<Plan, PolicyError> {
    let config = cached_config(&req.config).map_err(|m| refusal(crate::logic::bad_config(m)))?;
    decide(req, cands, &config, lookup)
}

/// Decides with an already parsed config.
pub fn decide(
    req: &Request,
    cands: &[Candidate],
    config: &Config,
    lookup: &MetricLookup,
) -> Result<Plan, PolicyError> {
    let metric = requested_metric(req.routing.metric.as_deref()).map_err(refusal)?;
    let features = Features::new(req.features.iter().map(String::as_str)).map_err(refusal)?;
    let missing: Vec<Mask> = cands
        .iter()
        .map(|c| features.missing(|f| c.features.iter().any(|cf| cf == f)))
        .collect();
    let ask = Ask {
        model: &req.model,
        metric,
        interval_seconds: req.routing.interval_seconds,
        fallbacks: &req.routing.models,
        step_type: req.step_type.as_deref(),
        purpose: req.purpose.as_deref(),
        metadata: &req.metadata,
        estimated_input_tokens: req.estimated_input_tokens,
        max_output_tokens: req.max_output_tokens,
        prompt_cache_key: req.prompt_cache_key,
    };
    let offer = Offered { cands, lookup };
    let Choice {
        attempts, label, ..
    } = choose(&ask, &offer, &features, &missing, config).map_err(refusal)?;
    Ok(Plan {
        attempts: attempts
            .into_iter()
            .map(|pick| Attempt {
                candidate: cands[pick.index].id.clone(),
                strip: features.list(pick.strip),
                timeout_ms: pick.timeout_ms,
            })
            .collect(),
        label,
    })
}
