//! The default policy's decision in `switchyard:policy@0.2.0` terms: names
//! and prices arrive once in `configure`, a candidate is indexes and flags,
//! the caller's sort is parsed by the host, the team config is parsed once
//! per instance.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::rc::Rc;

use crate::logic::{
    Ask, Choice, Config, Features, Mask, Metric, Offer, Price, Refusal, RefusalKind, bad_config,
    choose, joined_cmp, joined_id_is,
};
use crate::switchyard::policy::host;
use crate::switchyard::policy::types::{
    Attempt, Candidate, Features as Flags, Health, Info, MetricId, MetricKind, Plan, PolicyError,
    PolicyErrorKind, Request, Setup, Sort, Wants,
};

/// Each 0.2 feature flag and its name in the feature table, in table order.
const FLAGS: [(Flags, &str); 20] = [
    (Flags::STREAM, "stream"),
    (Flags::FUNCTION_CALLING, "tools.function_calling"),
    (Flags::WEB_SEARCH, "tools.web_search"),
    (Flags::CUSTOM_TOOLS, "tools.custom_tools"),
    (Flags::TOOL_CHOICE_REQUIRED, "tool_choice.required"),
    (Flags::JSON_SCHEMA, "text.format.json_schema"),
    (Flags::JSON_OBJECT, "text.format.json_object"),
    (Flags::REASONING_NONE, "reasoning.effort.none"),
    (Flags::REASONING_MINIMAL, "reasoning.effort.minimal"),
    (Flags::REASONING_LOW, "reasoning.effort.low"),
    (Flags::REASONING_MEDIUM, "reasoning.effort.medium"),
    (Flags::REASONING_HIGH, "reasoning.effort.high"),
    (Flags::REASONING_XHIGH, "reasoning.effort.xhigh"),
    (Flags::TEMPERATURE, "temperature"),
    (Flags::TOP_P, "top_p"),
    (Flags::VISION, "vision"),
    (Flags::PARALLEL_TOOL_CALLS, "parallel_tool_calls"),
    (Flags::PROMPT_CACHE_KEY, "prompt_cache_key"),
    (Flags::VERBOSITY, "text.verbosity"),
    (Flags::INCLUDE, "include"),
];

/// What `configure` leaves for `route`.
struct Configured {
    config: Config,
    accounts: Vec<String>,
    models: Vec<(String, u8, Price)>,
    logical: Vec<String>,
}

thread_local! {
    static STATE: RefCell<Option<Rc<Configured>>> = const { RefCell::new(None) };
}

/// Reads no precomputed metrics (see the 0.1 adapter's `describe`: the
/// metric depends on each request) and no content.
pub fn describe() -> Info {
    Info {
        name: "switchyard-default".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        metrics: Vec::new(),
        wants: Wants::empty(),
    }
}

fn error(r: Refusal) -> PolicyError {
    PolicyError {
        kind: match r.kind {
            RefusalKind::NoRoute => PolicyErrorKind::NoRoute,
            RefusalKind::BadConfig => PolicyErrorKind::BadConfig,
            RefusalKind::Internal => PolicyErrorKind::Internal,
        },
        message: r.message,
    }
}

/// Parses the team config and keeps the catalog's names and prices.
pub fn configure(setup: Setup) -> Result<(), PolicyError> {
    let config = Config::parse(&setup.config).map_err(|m| error(bad_config(m)))?;
    let configured = Configured {
        config,
        accounts: setup.accounts.into_iter().map(|a| a.name).collect(),
        models: setup
            .models
            .into_iter()
            .map(|m| {
                let price = Price {
                    input: m.price.input,
                    output: m.price.output,
                    cached_input: m.price.cached_input,
                };
                (m.slug, m.tier, price)
            })
            .collect(),
        logical: setup.logical_models,
    };
    STATE.with(|s| *s.borrow_mut() = Some(Rc::new(configured)));
    Ok(())
}

/// The canonical name of a metric id (`p95_latency`, `avg_ttft`, `uptime`),
/// put together without the formatting machinery (this runs per decision).
pub fn metric_name(id: &MetricId) -> String {
    let timed = |base: &str| {
        let mut name = String::with_capacity(4 + base.len() + 1);
        match id.percentile {
            Some(p) => {
                name.push('p');
                if p >= 100 {
                    name.push(char::from(b'0' + p / 100));
                }
                if p >= 10 {
                    name.push(char::from(b'0' + (p / 10) % 10));
                }
                name.push(char::from(b'0' + p % 10));
                name.push('_');
            }
            None => name.push_str("avg_"),
        }
        name.push_str(base);
        name
    };
    match id.kind {
        MetricKind::Uptime => "uptime".into(),
        MetricKind::Throughput => "throughput".into(),
        MetricKind::TotalRequests => "total_requests".into(),
        MetricKind::Latency => timed("latency"),
        MetricKind::MinLatency => "min_latency".into(),
        MetricKind::MaxLatency => "max_latency".into(),
        MetricKind::E2eLatency => timed("e2e_latency"),
        MetricKind::MinE2eLatency => "min_e2e_latency".into(),
        MetricKind::MaxE2eLatency => "max_e2e_latency".into(),
        MetricKind::Ttft => timed("ttft"),
        MetricKind::MinTtft => "min_ttft".into(),
        MetricKind::MaxTtft => "max_ttft".into(),
        MetricKind::InputTokens => "input_tokens".into(),
        MetricKind::OutputTokens => "output_tokens".into(),
        MetricKind::TotalTokens => "total_tokens".into(),
    }
}

/// The metric id of a canonical name (the inverse of [`metric_name`]).
pub fn metric_id(name: &str) -> Option<MetricId> {
    let plain = |kind| MetricId {
        kind,
        percentile: None,
    };
    let id = match name {
        "uptime" => plain(MetricKind::Uptime),
        "throughput" => plain(MetricKind::Throughput),
        "total_requests" => plain(MetricKind::TotalRequests),
        "avg_latency" => plain(MetricKind::Latency),
        "min_latency" => plain(MetricKind::MinLatency),
        "max_latency" => plain(MetricKind::MaxLatency),
        "avg_e2e_latency" => plain(MetricKind::E2eLatency),
        "min_e2e_latency" => plain(MetricKind::MinE2eLatency),
        "max_e2e_latency" => plain(MetricKind::MaxE2eLatency),
        "avg_ttft" => plain(MetricKind::Ttft),
        "min_ttft" => plain(MetricKind::MinTtft),
        "max_ttft" => plain(MetricKind::MaxTtft),
        "input_tokens" => plain(MetricKind::InputTokens),
        "output_tokens" => plain(MetricKind::OutputTokens),
        "total_tokens" => plain(MetricKind::TotalTokens),
        _ => {
            let (digits, base) = name.strip_prefix('p')?.split_once('_')?;
            let kind = match base {
                "latency" => MetricKind::Latency,
                "e2e_latency" => MetricKind::E2eLatency,
                "ttft" => MetricKind::Ttft,
                _ => return None,
            };
            MetricId {
                kind,
                percentile: Some(digits.parse().ok()?),
            }
        }
    };
    Some(id)
}

fn higher_is_better(kind: MetricKind) -> bool {
    matches!(
        kind,
        MetricKind::Uptime | MetricKind::Throughput | MetricKind::TotalRequests
    )
}

struct Offered<'a> {
    state: &'a Configured,
    cands: &'a [Candidate],
}

impl Offered<'_> {
    fn model_row(&self, i: usize) -> Option<&(String, u8, Price)> {
        self.state.models.get(usize::from(self.cands[i].model))
    }
}

impl Offer for Offered<'_> {
    fn len(&self) -> usize {
        self.cands.len()
    }
    fn provider(&self, i: usize) -> &str {
        self.state
            .accounts
            .get(usize::from(self.cands[i].account))
            .map_or("", String::as_str)
    }
    fn model(&self, i: usize) -> &str {
        self.model_row(i).map_or("", |m| m.0.as_str())
    }
    fn logical_model(&self, i: usize) -> Option<&str> {
        let l = self.cands[i].logical_model?;
        self.state.logical.get(usize::from(l)).map(String::as_str)
    }
    fn price(&self, i: usize) -> Price {
        self.model_row(i).map_or(Price::default(), |m| m.2)
    }
    fn tier(&self, i: usize) -> u8 {
        self.model_row(i).map_or(u8::MAX, |m| m.1)
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
        let value = host::metric(u16::try_from(i).ok()?, metric_id(name)?, window)?;
        (!value.is_nan()).then_some(value)
    }
    fn metric_all(&self, name: &str, window: u32) -> Option<Vec<f64>> {
        Some(host::metrics(metric_id(name)?, window))
    }
    fn id_is(&self, i: usize, target: &str) -> bool {
        joined_id_is(self.provider(i), self.model(i), target)
    }
    fn id_cmp(&self, a: usize, b: usize) -> Ordering {
        joined_cmp(
            self.provider(a),
            self.model(a),
            self.provider(b),
            self.model(b),
        )
    }
    fn same_id(&self, a: usize, b: usize) -> bool {
        // Accounts are one row per name; a slug may have several rows.
        let (x, y) = (&self.cands[a], &self.cands[b]);
        x.account == y.account && (x.model == y.model || self.model(a) == self.model(b))
    }
}

/// Decides one request on a configured instance.
pub fn route(req: &Request, cands: &[Candidate], _metrics: &[f64]) -> Result<Plan, PolicyError> {
    let state = STATE
        .with(|s| s.borrow().clone())
        .ok_or_else(|| PolicyError {
            kind: PolicyErrorKind::Internal,
            message: "route called before configure".into(),
        })?;
    let metric = req.routing.sort.as_ref().map(|sort| match sort {
        Sort::Performance => Metric::Performance,
        Sort::Cost => Metric::Cost,
        Sort::Live(id) => Metric::Live {
            name: metric_name(id),
            higher_is_better: higher_is_better(id.kind),
        },
    });
    // The request's features in table order: bit k of a mask is `used[k]`.
    let mut table = [(Flags::empty(), ""); FLAGS.len()];
    let mut n = 0;
    for &(flag, name) in &FLAGS {
        if req.features.contains(flag) {
            table[n] = (flag, name);
            n += 1;
        }
    }
    let used = &table[..n];
    let features = Features::new(used.iter().map(|(_, name)| *name)).map_err(error)?;
    let missing: Vec<Mask> = cands
        .iter()
        .map(|c| {
            if c.features.contains(req.features) {
                return 0;
            }
            used.iter()
                .enumerate()
                .filter(|(_, (flag, _))| !c.features.contains(*flag))
                .fold(0 as Mask, |acc, (k, _)| acc | (1 as Mask) << k)
        })
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
    let offer = Offered {
        state: &state,
        cands,
    };
    let Choice {
        attempts,
        label,
        metric,
    } = choose(&ask, &offer, &features, &missing, &state.config).map_err(error)?;
    let sorted_by = match &metric {
        Metric::Performance => "performance",
        Metric::Cost => "cost",
        Metric::Live { name, .. } => name.as_str(),
    };
    Ok(Plan {
        attempts: attempts
            .into_iter()
            .map(|pick| Attempt {
                candidate: pick.index as u16,
                strip: match pick.strip {
                    0 => Flags::empty(),
                    strip => used
                        .iter()
                        .enumerate()
                        .filter(|(k, _)| strip & ((1 as Mask) << k) != 0)
                        .fold(Flags::empty(), |acc, (_, (flag, _))| acc | *flag),
                },
                timeout_ms: pick.timeout_ms,
                retries: None,
            })
            .collect(),
        label,
        score: None,
        explanation: vec![["each group sorted by ", sorted_by].concat()],
    })
}
