//! Content router: an example Switchyard routing policy on
//! `switchyard:policy@0.2.0` that sends hard prompts to a strong model and
//! easy ones to a cheap one, judging from what the prompt is about.
//!
//! It declares `wants.content`, so (where the operator allows it) each
//! request carries the last user turn's text and host-computed counts. A
//! logistic scorer gives the probability that the prompt is hard:
//!
//! ```text
//! z = bias + Σ dense[k] · f[k] + (Σ ngrams[h(g) mod buckets] for g in unigrams and bigrams) / √(number of n-grams)
//! p(hard) = 1 / (1 + e^-z)
//! ```
//!
//! with the dense features `f` = length (ln(1 + tokens) / 10), code (code
//! blocks, up to 4, / 4), maths and digits (their shares × 10), turns (up to
//! 10, / 10), tools (up to 10, / 10) and images (up to 4, / 4). Words are
//! the text's runs of letters and digits, lowercased; `h` is 32-bit FNV-1a
//! over an n-gram's UTF-8 bytes (a bigram's two words joined by one space).
//! `fit.py` fits the weights on labelled prompts and prints the config.
//!
//! `p(hard) >= threshold`: the `strong` models' candidates first (in the
//! config's order, each model's candidates by cost), then the `cheap`
//! ones; below it, the other way round; any other capable candidate last,
//! by cost. Without content (the operator did not allow it) the strong
//! models go first. Only candidates supporting every feature the request
//! uses are tried. The config is parsed, and the weights laid out, once per
//! instance, in `configure`.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde::Deserialize;

wit_bindgen::generate!({
    world: "policy",
    path: "../../wit/v0.2",
});

use switchyard::policy::types::{Attempt, Content, Features, PolicyErrorKind, Wants};

/// Names of the dense features, in the order of [`dense_features`].
const DENSE: [&str; 7] = [
    "length", "code", "maths", "digits", "turns", "tools", "images",
];

/// The team's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Model slugs for hard prompts, preferred first.
    strong: Vec<String>,
    /// Model slugs for easy prompts, preferred first.
    cheap: Vec<String>,
    /// `p(hard)` at or above which a prompt is hard.
    #[serde(default = "half")]
    threshold: f64,
    /// The scorer's weights (`fit.py` prints them).
    #[serde(default)]
    model: Weights,
    /// Output tokens assumed for costs when the caller sets no cap.
    #[serde(default = "output_tokens")]
    expected_output_tokens: u32,
}

fn half() -> f64 {
    0.5
}

fn output_tokens() -> u32 {
    500
}

/// The scorer's weights as the config carries them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Weights {
    #[serde(default)]
    bias: f64,
    /// By dense feature name.
    #[serde(default)]
    dense: BTreeMap<String, f64>,
    /// Hash buckets of the n-grams.
    #[serde(default = "buckets")]
    buckets: u32,
    /// Weight by bucket (as a string key); absent buckets weigh 0.
    #[serde(default)]
    ngrams: BTreeMap<String, f64>,
}

fn buckets() -> u32 {
    4096
}

/// The scorer, laid out for decisions.
struct Scorer {
    bias: f64,
    dense: [f64; DENSE.len()],
    ngrams: Vec<f32>,
}

/// What `configure` keeps.
struct Configured {
    config: Config,
    scorer: Scorer,
    accounts: Vec<String>,
    models: Vec<switchyard::policy::types::Model>,
}

thread_local! {
    static CONFIGURED: RefCell<Option<Configured>> = const { RefCell::new(None) };
}

fn bad_config(message: String) -> PolicyError {
    PolicyError {
        kind: PolicyErrorKind::BadConfig,
        message: format!("content-router config: {message}"),
    }
}

fn scorer(weights: &Weights) -> Result<Scorer, PolicyError> {
    if weights.buckets == 0 || weights.buckets > 1 << 20 {
        return Err(bad_config(format!(
            "model.buckets must be 1 to 1048576, got {}",
            weights.buckets
        )));
    }
    let mut dense = [0.0; DENSE.len()];
    for (name, w) in &weights.dense {
        let Some(k) = DENSE.iter().position(|d| d == name) else {
            return Err(bad_config(format!(
                "model.dense: unknown feature `{name}` (expected {})",
                DENSE.join(", ")
            )));
        };
        dense[k] = *w;
    }
    let mut ngrams = vec![0.0f32; weights.buckets as usize];
    for (key, w) in &weights.ngrams {
        let bucket: usize = key
            .parse()
            .ok()
            .filter(|b| *b < ngrams.len())
            .ok_or_else(|| {
                bad_config(format!(
                    "model.ngrams: `{key}` is not a bucket below {}",
                    weights.buckets
                ))
            })?;
        ngrams[bucket] = *w as f32;
    }
    Ok(Scorer {
        bias: weights.bias,
        dense,
        ngrams,
    })
}

/// 32-bit FNV-1a.
fn fnv1a(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for part in parts {
        for &b in *part {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

/// The dense features of `c`, in [`DENSE`] order.
fn dense_features(c: &Content) -> [f64; DENSE.len()] {
    [
        (1.0 + f64::from(c.estimated_tokens)).ln() / 10.0,
        f64::from(c.code_blocks.min(4)) / 4.0,
        f64::from(c.maths) * 10.0,
        f64::from(c.digits) * 10.0,
        f64::from(c.turns.min(10)) / 10.0,
        f64::from(c.tools.min(10)) / 10.0,
        f64::from(c.images.min(4)) / 4.0,
    ]
}

impl Scorer {
    /// `p(hard)`, the dense part of `z` and the n-gram part.
    fn score(&self, c: &Content) -> (f64, f64, f64) {
        let f = dense_features(c);
        let dense: f64 = f.iter().zip(&self.dense).map(|(x, w)| x * w).sum();
        let text = c.last_user.as_deref().unwrap_or_default().to_lowercase();
        let words: Vec<&str> = text
            .split(|ch: char| !ch.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        let n = self.ngrams.len() as u32;
        let weight = |h: u32| f64::from(self.ngrams[(h % n) as usize]);
        let mut sum = 0.0;
        let mut count = 0usize;
        for (i, w) in words.iter().enumerate() {
            sum += weight(fnv1a(&[w.as_bytes()]));
            count += 1;
            if let Some(next) = words.get(i + 1) {
                sum += weight(fnv1a(&[w.as_bytes(), b" ", next.as_bytes()]));
                count += 1;
            }
        }
        let words = sum / (count.max(1) as f64).sqrt();
        let z = self.bias + dense + words;
        (1.0 / (1.0 + (-z).exp()), dense, words)
    }
}

struct ContentRouter;

impl Guest for ContentRouter {
    fn describe() -> Info {
        Info {
            name: "content-router".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            metrics: Vec::new(),
            wants: Wants::CONTENT,
        }
    }

    fn configure(setup: Setup) -> Result<(), PolicyError> {
        let config: Config =
            serde_json::from_str(&setup.config).map_err(|e| bad_config(e.to_string()))?;
        if config.strong.is_empty() || config.cheap.is_empty() {
            return Err(bad_config(
                "`strong` and `cheap` must each name a model".into(),
            ));
        }
        if !(0.0..=1.0).contains(&config.threshold) {
            return Err(bad_config(format!(
                "threshold must be within 0 and 1, got {}",
                config.threshold
            )));
        }
        let scorer = scorer(&config.model)?;
        let configured = Configured {
            config,
            scorer,
            accounts: setup.accounts.into_iter().map(|a| a.name).collect(),
            models: setup.models,
        };
        CONFIGURED.with(|c| *c.borrow_mut() = Some(configured));
        Ok(())
    }

    fn route(
        request: Request,
        candidates: Vec<Candidate>,
        _metrics: Vec<f64>,
    ) -> Result<Plan, PolicyError> {
        CONFIGURED.with(|c| {
            let c = c.borrow();
            let Some(c) = c.as_ref() else {
                return Err(PolicyError {
                    kind: PolicyErrorKind::Internal,
                    message: "content-router: route before configure".into(),
                });
            };
            let config = &c.config;
            let (hard, score, explanation) = match &request.content {
                Some(content) => {
                    let (p, dense, words) = c.scorer.score(content);
                    let hard = p >= config.threshold;
                    let why = vec![
                        format!(
                            "p(hard) = {p:.2} {} threshold {:.2}",
                            if hard { ">=" } else { "<" },
                            config.threshold
                        ),
                        format!(
                            "dense {dense:+.2}, words {words:+.2}, bias {:+.2}",
                            c.scorer.bias
                        ),
                    ];
                    (hard, Some(p), why)
                }
                None => (
                    true,
                    None,
                    vec!["no content (not allowed for this team): strong models first".into()],
                ),
            };
            let (first, second) = if hard {
                (&config.strong, &config.cheap)
            } else {
                (&config.cheap, &config.strong)
            };
            let output = request
                .max_output_tokens
                .unwrap_or(config.expected_output_tokens);
            // (rank of the model in the preference, cost, `account/model`, position)
            let mut capable: Vec<(usize, f64, String, u16)> = candidates
                .iter()
                .enumerate()
                .filter(|(_, cand)| cand.features.contains(request.features))
                .filter_map(|(i, cand)| {
                    let model = c.models.get(usize::from(cand.model))?;
                    let account = c.accounts.get(usize::from(cand.account))?;
                    let rank = first
                        .iter()
                        .chain(second.iter())
                        .position(|m| *m == model.slug)
                        .unwrap_or(usize::MAX);
                    let cost = (f64::from(request.estimated_input_tokens) * model.price.input
                        + f64::from(output) * model.price.output)
                        / 1e6;
                    Some((rank, cost, format!("{account}/{}", model.slug), i as u16))
                })
                .collect();
            if capable.is_empty() {
                return Err(PolicyError {
                    kind: PolicyErrorKind::NoRoute,
                    message: "no offered candidate supports every feature of the request".into(),
                });
            }
            capable.sort_by(|a, b| {
                a.0.cmp(&b.0)
                    .then(a.1.total_cmp(&b.1))
                    .then_with(|| a.2.cmp(&b.2))
            });
            Ok(Plan {
                attempts: capable
                    .iter()
                    .map(|(.., i)| Attempt {
                        candidate: *i,
                        strip: Features::empty(),
                        timeout_ms: None,
                        retries: None,
                    })
                    .collect(),
                label: match (&request.content, hard) {
                    (None, _) => "no-content".into(),
                    (Some(_), true) => "hard".into(),
                    (Some(_), false) => "easy".into(),
                },
                score,
                explanation,
            })
        })
    }
}

export!(ContentRouter);
