//! Intent router: an example Switchyard routing policy.
//!
//! Classifies each request into one of three intents and orders the offered
//! candidates accordingly:
//!
//! - `cheap`: short extraction / classification work → cheapest capable model;
//! - `strong`: long or reasoning-heavy work → strongest model (tier, then cost);
//! - `balanced`: everything else → models of the configured middle tier first.
//!
//! Built against `switchyard:policy@0.2.0`: `configure` parses the team
//! config and keeps the gateway's account names and model rows once per
//! instance; each decision then reads its candidates as indexes into them.
//! Apart from that, the policy is a pure function of the request, the
//! candidates and the team config, and uses no WASI interface.

use std::cell::RefCell;
use std::rc::Rc;

use serde::Deserialize;

wit_bindgen::generate!({
    world: "policy",
    path: "../../wit/v0.2",
});

use switchyard::policy::types::{Attempt, Features, Health, Model, PolicyErrorKind, Wants};

/// The team's configuration (`setup.config`). Every field is optional.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// At or below this estimate, extraction/classification work is `cheap`.
    short_input_tokens: u32,
    /// At or above this estimate, any request is `strong`.
    long_input_tokens: u32,
    /// Output tokens assumed for cost estimates when the caller gave no
    /// `max_output_tokens`.
    expected_output_tokens: u32,
    /// The tier `balanced` requests prefer (1 = strongest).
    balanced_tier: u8,
    /// `step_type` / `purpose` values that count as short, cheap work.
    cheap_kinds: Vec<String>,
    /// `step_type` / `purpose` values that always count as heavy work.
    strong_kinds: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        let strings = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect();
        Config {
            short_input_tokens: 2000,
            long_input_tokens: 8000,
            expected_output_tokens: 500,
            balanced_tier: 2,
            cheap_kinds: strings(&[
                "extraction",
                "classification",
                "tagging",
                "labeling",
                "routing",
                "moderation",
            ]),
            strong_kinds: strings(&["reasoning", "planning", "analysis", "research", "coding"]),
        }
    }
}

fn parse_config(text: &str) -> Result<Config, PolicyError> {
    let config: Config = serde_json::from_str(text).map_err(|e| PolicyError {
        kind: PolicyErrorKind::BadConfig,
        message: format!("intent-router config: {e}"),
    })?;
    if config.short_input_tokens > config.long_input_tokens {
        return Err(PolicyError {
            kind: PolicyErrorKind::BadConfig,
            message: format!(
                "intent-router config: short_input_tokens ({}) is above long_input_tokens ({})",
                config.short_input_tokens, config.long_input_tokens
            ),
        });
    }
    if config.balanced_tier == 0 {
        return Err(PolicyError {
            kind: PolicyErrorKind::BadConfig,
            message: "intent-router config: balanced_tier must be 1 or more".into(),
        });
    }
    Ok(config)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Intent {
    Cheap,
    Strong,
    Balanced,
}

impl Intent {
    fn name(self) -> &'static str {
        match self {
            Intent::Cheap => "cheap",
            Intent::Strong => "strong",
            Intent::Balanced => "balanced",
        }
    }

    fn parse(s: &str) -> Option<Intent> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cheap" => Some(Intent::Cheap),
            "strong" => Some(Intent::Strong),
            "balanced" => Some(Intent::Balanced),
            _ => None,
        }
    }
}

/// Decides the intent and says why, for the plan's explanation.
fn classify(req: &Request, config: &Config) -> (Intent, String) {
    // 1. An explicit `metadata.intent` from the caller wins.
    for (key, value) in &req.metadata {
        if key == "intent" {
            if let Some(intent) = Intent::parse(value) {
                return (intent, "metadata.intent".into());
            }
        }
    }

    let kinds: Vec<&str> = req
        .step_type
        .iter()
        .chain(req.purpose.iter())
        .map(|s| s.as_str())
        .collect();
    let is_kind = |list: &[String]| {
        kinds
            .iter()
            .any(|k| list.iter().any(|l| l.eq_ignore_ascii_case(k)))
    };

    // 2. Reasoning-heavy or long work.
    let reasoning = [
        (Features::REASONING_MINIMAL, "reasoning.effort.minimal"),
        (Features::REASONING_LOW, "reasoning.effort.low"),
        (Features::REASONING_MEDIUM, "reasoning.effort.medium"),
        (Features::REASONING_HIGH, "reasoning.effort.high"),
        (Features::REASONING_XHIGH, "reasoning.effort.xhigh"),
    ];
    if let Some((_, effort)) = reasoning
        .iter()
        .find(|(flag, _)| req.features.contains(*flag))
    {
        return (Intent::Strong, format!("feature {effort}"));
    }
    if req.estimated_input_tokens >= config.long_input_tokens {
        return (
            Intent::Strong,
            format!(
                "{} input tokens >= {}",
                req.estimated_input_tokens, config.long_input_tokens
            ),
        );
    }
    if is_kind(&config.strong_kinds) {
        return (Intent::Strong, format!("kind {kinds:?}"));
    }

    // 3. Short extraction / classification work.
    if is_kind(&config.cheap_kinds) && req.estimated_input_tokens <= config.short_input_tokens {
        return (
            Intent::Cheap,
            format!(
                "kind {kinds:?}, {} input tokens <= {}",
                req.estimated_input_tokens, config.short_input_tokens
            ),
        );
    }

    (Intent::Balanced, "default".into())
}

/// A candidate with the names and prices its indexes point to.
struct Cand<'a> {
    /// Its position in the `candidates` list.
    index: u16,
    /// `account/model`.
    id: String,
    model: &'a str,
    logical_model: Option<&'a str>,
    tier: u8,
    context_window: u32,
    price: &'a switchyard::policy::types::Price,
    health: Health,
    features: Features,
}

/// What `configure` keeps for every decision of the instance.
struct Configured {
    config: Config,
    accounts: Vec<String>,
    models: Vec<Model>,
    logical_models: Vec<String>,
}

thread_local! {
    static CONFIGURED: RefCell<Option<Rc<Configured>>> = const { RefCell::new(None) };
}

/// Estimated cost of the request at this candidate, in US dollars.
fn cost(c: &Cand, input_tokens: u32, output_tokens: u32) -> f64 {
    (f64::from(input_tokens) * c.price.input + f64::from(output_tokens) * c.price.output)
        / 1_000_000.0
}

/// Candidates of one model name as the caller wrote it (`auto`, a slug, or
/// `provider/model`), in the order the policy should try them.
fn of_model<'a, 'b>(
    name: &str,
    pool: &[&'b Cand<'a>],
) -> (Vec<&'b Cand<'a>>, Option<&'b Cand<'a>>) {
    if name == "auto" {
        return (pool.to_vec(), None);
    }
    let slug = name.split_once('/').map_or(name, |(_, m)| m);
    let exact = pool.iter().copied().find(|c| c.id == name);
    let all = pool
        .iter()
        .copied()
        .filter(|c| c.id == name || c.model == slug || c.logical_model == Some(slug))
        .collect();
    (all, exact)
}

fn order(group: &mut [&Cand], intent: Intent, config: &Config, input: u32, output: u32) {
    group.sort_by(|a, b| {
        let half_open = |c: &Cand| matches!(c.health, Health::HalfOpen);
        let by_cost = || cost(a, input, output).total_cmp(&cost(b, input, output));
        half_open(a)
            .cmp(&half_open(b))
            .then_with(|| match intent {
                Intent::Cheap => by_cost(),
                Intent::Strong => a.tier.cmp(&b.tier).then_with(by_cost),
                Intent::Balanced => {
                    let distance = |c: &Cand| c.tier.abs_diff(config.balanced_tier);
                    distance(a)
                        .cmp(&distance(b))
                        .then(a.tier.cmp(&b.tier))
                        .then_with(by_cost)
                }
            })
            .then_with(|| a.id.cmp(&b.id))
    });
}

struct IntentRouter;

impl Guest for IntentRouter {
    fn configure(setup: Setup) -> Result<(), PolicyError> {
        let config = parse_config(&setup.config)?;
        let configured = Configured {
            config,
            accounts: setup.accounts.into_iter().map(|a| a.name).collect(),
            models: setup.models,
            logical_models: setup.logical_models,
        };
        CONFIGURED.with(|c| *c.borrow_mut() = Some(Rc::new(configured)));
        Ok(())
    }

    fn route(
        request: Request,
        candidates: Vec<Candidate>,
        _metrics: Vec<f64>,
    ) -> Result<Plan, PolicyError> {
        let Some(configured) = CONFIGURED.with(|c| c.borrow().clone()) else {
            return Err(PolicyError {
                kind: PolicyErrorKind::Internal,
                message: "intent-router: route before configure".into(),
            });
        };
        let config = &configured.config;
        let (intent, reason) = classify(&request, config);

        let input = request.estimated_input_tokens;
        let output = request
            .max_output_tokens
            .unwrap_or(config.expected_output_tokens);

        let offered: Vec<Cand> = candidates
            .iter()
            .enumerate()
            .filter_map(|(index, c)| {
                let account = configured.accounts.get(usize::from(c.account))?;
                let model = configured.models.get(usize::from(c.model))?;
                Some(Cand {
                    index: index as u16,
                    id: format!("{account}/{}", model.slug),
                    model: &model.slug,
                    logical_model: c
                        .logical_model
                        .and_then(|l| configured.logical_models.get(usize::from(l)))
                        .map(String::as_str),
                    tier: model.tier,
                    context_window: model.context_window,
                    price: &model.price,
                    health: c.health,
                    features: c.features,
                })
            })
            .collect();

        // Capable candidates: every required feature supported (this policy
        // never degrades), and a context window the input fits in.
        let capable: Vec<&Cand> = offered
            .iter()
            .filter(|c| c.features.contains(request.features))
            .filter(|c| c.context_window >= input)
            .collect();

        // The requested model first, then the caller's fallback models.
        let mut chosen: Vec<&Cand> = Vec::new();
        let names = core::iter::once(&request.model).chain(request.routing.models.iter());
        for name in names {
            let pool: Vec<&Cand> = capable
                .iter()
                .copied()
                .filter(|c| !chosen.iter().any(|d| d.id == c.id))
                .collect();
            let (mut group, exact) = of_model(name, &pool);
            order(&mut group, intent, config, input, output);
            if let Some(exact) = exact {
                group.retain(|c| c.id != exact.id);
                group.insert(0, exact);
            }
            chosen.extend(group);
        }

        if chosen.is_empty() {
            let message = if capable.is_empty() {
                format!(
                    "no offered candidate supports all of {:?} with {} input tokens",
                    request.features, input
                )
            } else {
                format!("no capable candidate for model {:?}", request.model)
            };
            return Err(PolicyError {
                kind: PolicyErrorKind::NoRoute,
                message,
            });
        }

        Ok(Plan {
            attempts: chosen
                .into_iter()
                .map(|c| Attempt {
                    candidate: c.index,
                    strip: Features::empty(),
                    timeout_ms: None,
                    retries: None,
                })
                .collect(),
            label: format!("intent:{}", intent.name()),
            score: None,
            explanation: vec![format!("intent {} ({reason})", intent.name())],
        })
    }

    fn describe() -> Info {
        Info {
            name: "intent-router".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            metrics: Vec::new(),
            wants: Wants::empty(),
        }
    }
}

export!(IntentRouter);
