//! Another policy on logged decisions: `switchyard policy replay` runs one
//! offline over an exported log, and a team's shadow policy
//! ([`shadow`]) runs one beside the live policy on finished requests.
//!
//! Each request-log record (docs/request-log.md) holds what a live policy
//! was given — the request, the candidates after the hard filters, the
//! metric values it read — and what it decided and what the caller got. A
//! [`Replay`] gives the same inputs to another policy and compares: does it
//! choose the same first attempt and the same plan, what would its first
//! choice have cost at the recorded prices and token counts, which models
//! and labels would take the traffic, how often does it fault, and how
//! long does it take to decide.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::Rates;
use crate::metrics::MetricSource;
use crate::policy::spec::{CandidateSpec, CaseMetrics};
use crate::policy::{Candidate, Policy, PolicyError, WarmPool, refusal_name, v0_2};
use crate::request_log::{PlanStep, Record, ReplayError, Replayed};
use switchyard_wire::Usage;
use switchyard_wire::content::Signals;

pub mod shadow;

/// Setups kept for reuse (a replayed log mostly repeats a few candidate
/// sets); past this many the cache starts afresh.
const MAX_SETUPS: usize = 1024;

/// Distinct labels counted one by one; the rest are counted together
/// under [`OTHER_LABELS`].
pub const MAX_LABELS: usize = 256;

/// Where labels past [`MAX_LABELS`] are counted.
pub const OTHER_LABELS: &str = "(other labels)";

/// Where models past [`MAX_LABELS`] distinct ones are counted.
pub const OTHER_MODELS: &str = "(other models)";

/// Decision times kept for the percentiles; past this many a reservoir
/// sample of them.
pub const MAX_TIMES: usize = 100_000;

/// One record's replayed decision: a line of `--out decisions.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    /// The record's id.
    pub id: String,
    pub team: String,
    #[serde(flatten)]
    pub decision: Replayed,
}

/// Counts of recorded and replayed choices, for the shares.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Share {
    /// What was served (models) or labelled (labels) live.
    pub recorded: u64,
    /// What the replayed policy would try first (models) or labelled.
    pub replayed: u64,
}

/// Decision time percentiles, microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(mut samples: Vec<f64>) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_unstable_by(f64::total_cmp);
        let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Percentiles {
            p50: pick(0.5),
            p90: pick(0.9),
            p99: pick(0.99),
            max: samples[samples.len() - 1],
        }
    }
}

/// Money over the records with recorded usage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Records whose answer reported (or the gateway estimated) its usage.
    pub records: u64,
    /// What those answers cost, as recorded.
    pub spent_usd: f64,
    /// The replayed first choices at their recorded prices and the same
    /// token counts (a record the replayed policy did not route counts
    /// nothing here, and is counted in `unrouted`).
    pub replayed_usd: f64,
    /// `replayed_usd - spent_usd`.
    pub delta_usd: f64,
    /// Records with usage the replayed policy produced no plan for.
    pub unrouted: u64,
}

/// What a whole replay found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The replayed policy: name, version, contract.
    pub policy: String,
    pub contract: String,
    /// Records read.
    pub records: u64,
    /// Records replayed: those with a live decision.
    pub replayed: u64,
    /// Records that ended before a policy ran (nothing to replay).
    pub without_decision: u64,
    /// Replayed first attempt = the live decision's first attempt.
    pub agree_first: u64,
    /// Replayed plan = the live decision's plan.
    pub agree_plan: u64,
    /// Replayed first attempt = the candidate that served the caller.
    pub agree_served: u64,
    pub cost: Cost,
    /// By model: served live, and tried first by the replayed policy.
    pub models: BTreeMap<String, Share>,
    /// By plan label: live, and replayed.
    pub labels: BTreeMap<String, Share>,
    /// Replayed decisions that faulted, by kind (`trap`, `deadline`, ...).
    pub faults: BTreeMap<String, u64>,
    /// Replayed decisions the policy refused, by kind (`no-route`, ...).
    pub refusals: BTreeMap<String, u64>,
    /// Live decisions that were refusals.
    pub live_refusals: u64,
    /// Metric reads of the replayed policy with no recorded value (the
    /// live policy did not read that metric): answered "no data".
    pub unrecorded_metric_reads: u64,
    /// The replayed decisions' time (over at most [`MAX_TIMES`] of them,
    /// sampled evenly).
    pub decision_us: Percentiles,
    /// The live decisions' time, as recorded.
    pub live_decision_us: Percentiles,
}

/// A replay in progress: one policy, one warm instance, records fed one at
/// a time.
pub struct Replay {
    pool: WarmPool,
    /// The team config the policy gets (`None`: `{}`); a log does not
    /// record it.
    config: Option<Value>,
    /// Prompt text cut to this many bytes for content signals.
    content_bytes: usize,
    setups: HashMap<u64, Arc<v0_2::Setup>>,
    summary: Summary,
    times: Reservoir,
    live_times: Reservoir,
}

/// A uniform sample of at most [`MAX_TIMES`] values.
#[derive(Default)]
struct Reservoir {
    values: Vec<f64>,
    seen: u64,
}

impl Reservoir {
    fn push(&mut self, value: f64) {
        self.seen += 1;
        if self.values.len() < MAX_TIMES {
            self.values.push(value);
        } else {
            let slot = fastrand::u64(..self.seen) as usize;
            if let Some(v) = self.values.get_mut(slot) {
                *v = value;
            }
        }
    }
}

impl Replay {
    /// A replay of `policy`, configured with `config` (the team config, as
    /// JSON).
    pub fn new(policy: Policy, config: Option<Value>, content_bytes: usize) -> Replay {
        let summary = Summary {
            policy: format!("{} {}", policy.info().name, policy.info().version),
            contract: policy.wit_version().to_owned(),
            ..Summary::default()
        };
        Replay {
            pool: WarmPool::new(policy, 1),
            config,
            content_bytes,
            setups: HashMap::new(),
            summary,
            times: Reservoir::default(),
            live_times: Reservoir::default(),
        }
    }

    /// The policy replayed.
    pub fn policy(&self) -> &Policy {
        self.pool.policy()
    }

    /// Replays one record; `None` when it has no live decision to compare
    /// with (counted). Content signals come from the record's prompt text,
    /// when it holds some and the policy reads content; metric values the
    /// live policy did not read are "no data".
    pub fn record(&mut self, record: &Record) -> Option<Line> {
        let content = record.request.content(self.content_bytes);
        self.record_with(record, content, None)
            .map(|decision| Line {
                id: record.id.clone(),
                team: record.team.clone(),
                decision,
            })
    }

    /// Replays one record with these content signals (given to a policy
    /// that reads content), answering metric reads the record lacks from
    /// `live_metrics` when given.
    pub fn record_with(
        &mut self,
        record: &Record,
        content: Option<Signals>,
        live_metrics: Option<Arc<dyn MetricSource>>,
    ) -> Option<Replayed> {
        self.summary.records += 1;
        let Some(live) = &record.decision else {
            self.summary.without_decision += 1;
            return None;
        };
        // The team config rides in the request (0.1) and in the setup (0.2).
        let request = match record.request.to_request(self.config.as_ref()) {
            Ok(request) => request,
            Err(e) => {
                // A record this build wrote always converts; count it as
                // the policy's input being unusable rather than stop.
                *self.summary.faults.entry("bad-record".into()).or_default() += 1;
                return Some(self.unusable(e));
            }
        };
        let mut candidates: Vec<Candidate> = record
            .candidates
            .iter()
            .map(CandidateSpec::to_candidate)
            .collect();
        let metrics = Arc::new(Counting::new(
            CaseMetrics::new(&record.metrics),
            live_metrics,
        ));
        let policy = self.pool.policy().clone();
        policy.precompute_metrics(
            &mut candidates,
            metrics.as_ref(),
            request.routing.interval_seconds,
        );
        let context = v0_2::Context {
            setup: self.setup(&request, &record.candidates, &candidates),
            content: content.filter(|_| policy.wants_content()).map(Arc::new),
        };
        let decision = self
            .pool
            .decide_in(&context, &request, &candidates, metrics.clone());
        self.summary.replayed += 1;
        self.summary.unrecorded_metric_reads += metrics.misses.load(Ordering::Relaxed);
        let decision_us = decision.stats.elapsed.as_secs_f64() * 1e6;
        self.times.push(decision_us);
        self.live_times.push(live.decision_us as f64);

        let live_plan: Vec<&str> = live.plan.iter().map(|s| s.candidate.as_str()).collect();
        match &live.label {
            Some(label) => self.label(label).recorded += 1,
            None => self.summary.live_refusals += 1,
        }
        if let Some(model) = &record.result.model {
            self.model(model).recorded += 1;
        }
        let usage = usage(record);
        if usage.is_some() {
            self.summary.cost.records += 1;
            self.summary.cost.spent_usd += record.result.cost_usd.unwrap_or(0.0);
        }

        let mut line = Replayed {
            plan: Vec::new(),
            label: None,
            score: decision.notes.score,
            explanation: decision.notes.explanation.clone(),
            error: None,
            decision_us,
            agrees_first: false,
            agrees_plan: false,
            cost_usd: None,
        };
        match &decision.result {
            Ok(plan) => {
                line.plan = PlanStep::of(plan, &candidates);
                line.label = Some(plan.label.clone());
                self.label(&plan.label).replayed += 1;
                let first = plan
                    .attempts
                    .first()
                    .and_then(|a| candidates.get(a.candidate));
                if let Some(first) = first {
                    self.model(&first.model).replayed += 1;
                    if record.result.provider.as_deref() == Some(first.provider.as_str())
                        && record.result.model.as_deref() == Some(first.model.as_str())
                    {
                        self.summary.agree_served += 1;
                    }
                    if let Some(usage) = usage {
                        let rates = Rates {
                            input: first.price.input,
                            output: first.price.output,
                            cached_input: first.price.cached_input,
                        };
                        let cost = rates.cost(&usage);
                        line.cost_usd = Some(cost);
                        self.summary.cost.replayed_usd += cost;
                    }
                }
                let replayed: Vec<&str> = line.plan.iter().map(|s| s.candidate.as_str()).collect();
                line.agrees_first = !live_plan.is_empty() && live_plan.first() == replayed.first();
                line.agrees_plan = !live_plan.is_empty() && live_plan == replayed;
            }
            Err(e) => {
                let kind = match e {
                    PolicyError::Refused { kind, .. } => {
                        *self
                            .summary
                            .refusals
                            .entry(refusal_name(*kind).to_owned())
                            .or_default() += 1;
                        format!("refused:{}", refusal_name(*kind))
                    }
                    fault => {
                        *self
                            .summary
                            .faults
                            .entry(fault.kind().to_owned())
                            .or_default() += 1;
                        fault.kind().to_owned()
                    }
                };
                if usage.is_some() {
                    self.summary.cost.unrouted += 1;
                }
                // Both refusing is agreeing; a fault never is.
                let both_refused = live_plan.is_empty() && !e.is_fault();
                line.agrees_first = both_refused;
                line.agrees_plan = both_refused;
                line.error = Some(ReplayError {
                    kind,
                    message: e.to_string(),
                });
            }
        }
        self.summary.agree_first += u64::from(line.agrees_first);
        self.summary.agree_plan += u64::from(line.agrees_plan);
        Some(line)
    }

    /// The summary of everything replayed so far.
    pub fn finish(mut self) -> Summary {
        self.summary.cost.delta_usd = self.summary.cost.replayed_usd - self.summary.cost.spent_usd;
        self.summary.decision_us = Percentiles::of(std::mem::take(&mut self.times.values));
        self.summary.live_decision_us =
            Percentiles::of(std::mem::take(&mut self.live_times.values));
        self.summary
    }

    /// The summary so far, leaving the replay running.
    pub fn summary(&self) -> Summary {
        let mut s = self.summary.clone();
        s.cost.delta_usd = s.cost.replayed_usd - s.cost.spent_usd;
        s.decision_us = Percentiles::of(self.times.values.clone());
        s.live_decision_us = Percentiles::of(self.live_times.values.clone());
        s
    }

    fn unusable(&mut self, message: String) -> Replayed {
        self.summary.replayed += 1;
        Replayed {
            error: Some(ReplayError {
                kind: "bad-record".into(),
                message,
            }),
            ..Replayed::default()
        }
    }

    /// The share of `label`; past [`MAX_LABELS`] distinct labels (a policy
    /// that puts request details in them) new ones share one entry, so a
    /// long-running shadow stays bounded.
    fn label(&mut self, label: &str) -> &mut Share {
        let labels = &mut self.summary.labels;
        let key = if labels.len() >= MAX_LABELS && !labels.contains_key(label) {
            OTHER_LABELS
        } else {
            label
        };
        labels.entry(key.to_owned()).or_default()
    }

    fn model(&mut self, model: &str) -> &mut Share {
        let models = &mut self.summary.models;
        let key = if models.len() >= MAX_LABELS && !models.contains_key(model) {
            OTHER_MODELS
        } else {
            model
        };
        models.entry(key.to_owned()).or_default()
    }

    /// The setup a record implies (its team, the replay's config, tables
    /// from its candidates), shared by every record with the same ones so
    /// the warm instance is configured once for them.
    fn setup(
        &mut self,
        request: &crate::policy::Request,
        specs: &[CandidateSpec],
        candidates: &[Candidate],
    ) -> Arc<v0_2::Setup> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&request.team, &request.config).hash(&mut h);
        for c in specs {
            (
                &c.id,
                &c.provider,
                &c.model,
                &c.logical_model,
                &c.features,
                c.zdr,
                c.tier,
                c.context_window,
            )
                .hash(&mut h);
            for price in [c.price.input, c.price.output] {
                price.to_bits().hash(&mut h);
            }
            c.price.cached_input.map(f64::to_bits).hash(&mut h);
        }
        let key = h.finish();
        if self.setups.len() >= MAX_SETUPS && !self.setups.contains_key(&key) {
            self.setups.clear();
        }
        self.setups
            .entry(key)
            .or_insert_with(|| Arc::new(v0_2::Setup::implied(request, candidates)))
            .clone()
    }
}

/// The usage a record's answer reported, when it did.
fn usage(record: &Record) -> Option<Usage> {
    let r = &record.result;
    let (input, output) = (r.input_tokens?, r.output_tokens?);
    Some(Usage {
        prompt_tokens: input,
        completion_tokens: output,
        cached_tokens: r.cached_tokens.unwrap_or(0),
    })
}

/// The recorded metric values, counting reads of values never recorded
/// (answered from `live` when there is one).
struct Counting {
    inner: CaseMetrics,
    live: Option<Arc<dyn MetricSource>>,
    misses: AtomicU64,
}

impl Counting {
    fn new(inner: CaseMetrics, live: Option<Arc<dyn MetricSource>>) -> Counting {
        Counting {
            inner,
            live,
            misses: AtomicU64::new(0),
        }
    }
}

impl MetricSource for Counting {
    fn metric(&self, candidate: &str, name: &str, window_secs: u32) -> Option<f64> {
        let value = self.inner.metric(candidate, name, window_secs);
        if value.is_some() {
            return value;
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.live.as_ref()?.metric(candidate, name, window_secs)
    }
}

/// The summary for a terminal.
pub fn render(summary: &Summary) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let pct = |n: u64, of: u64| {
        if of == 0 {
            "-".to_string()
        } else {
            format!("{:.1}%", n as f64 * 100.0 / of as f64)
        }
    };
    let s = summary;
    let _ = writeln!(
        out,
        "policy {} (switchyard:policy@{}): {} records, {} replayed, {} ended before a policy ran\n",
        s.policy, s.contract, s.records, s.replayed, s.without_decision
    );
    let _ = writeln!(out, "agreement with the live decisions");
    for (what, n) in [
        ("first attempt", s.agree_first),
        ("whole plan", s.agree_plan),
        ("first = served", s.agree_served),
    ] {
        let _ = writeln!(
            out,
            "  {what:<18} {n:>8} of {:<8} {}",
            s.replayed,
            pct(n, s.replayed)
        );
    }
    let c = &s.cost;
    let _ = writeln!(
        out,
        "\ncost over the {} records with usage (recorded prices and token counts)",
        c.records
    );
    let _ = writeln!(out, "  spent              ${:.6}", c.spent_usd);
    let _ = writeln!(
        out,
        "  replayed           ${:.6}  ({}{:.6}{})",
        c.replayed_usd,
        if c.delta_usd >= 0.0 { "+$" } else { "-$" },
        c.delta_usd.abs(),
        if c.spent_usd > 0.0 {
            format!(", {:+.1}%", c.delta_usd * 100.0 / c.spent_usd)
        } else {
            String::new()
        }
    );
    if c.unrouted > 0 {
        let _ = writeln!(
            out,
            "  not routed         {} records (no plan: not counted above)",
            c.unrouted
        );
    }
    let share = |out: &mut String, title: &str, map: &BTreeMap<String, Share>| {
        let _ = writeln!(out, "\n{title:<22} {:>14} {:>14}", "recorded", "replayed");
        let (rec_total, rep_total) = map
            .values()
            .fold((0, 0), |(a, b), v| (a + v.recorded, b + v.replayed));
        for (name, v) in map {
            let _ = writeln!(
                out,
                "  {name:<20} {:>7} {:>6} {:>7} {:>6}",
                v.recorded,
                pct(v.recorded, rec_total),
                v.replayed,
                pct(v.replayed, rep_total)
            );
        }
    };
    share(&mut out, "traffic by model", &s.models);
    share(&mut out, "traffic by label", &s.labels);
    let _ = writeln!(out);
    if s.faults.is_empty() {
        let _ = writeln!(out, "faults: none");
    } else {
        let list: Vec<String> = s.faults.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(out, "faults: {}", list.join(", "));
    }
    let list: Vec<String> = s.refusals.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(
        out,
        "refusals: replayed {}, live {}",
        if list.is_empty() {
            "0".to_string()
        } else {
            list.join(", ")
        },
        s.live_refusals
    );
    if s.unrecorded_metric_reads > 0 {
        let _ = writeln!(
            out,
            "metric reads with no recorded value (answered no data): {}",
            s.unrecorded_metric_reads
        );
    }
    let t = |p: &Percentiles| {
        format!(
            "p50 {:.1} µs  p90 {:.1} µs  p99 {:.1} µs  max {:.1} µs",
            p.p50, p.p90, p.p99, p.max
        )
    };
    let _ = writeln!(out, "decision time: replayed {}", t(&s.decision_us));
    let _ = writeln!(out, "               live     {}", t(&s.live_decision_us));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Limits, Runtime};

    #[test]
    fn labels_and_models_stay_bounded_and_times_are_sampled() {
        let runtime = Runtime::new(Limits::default()).expect("runtime");
        let policy = runtime.load_default().expect("the bundled policy");
        let mut replay = Replay::new(policy, None, 4096);
        for i in 0..(MAX_LABELS + 50) {
            replay.label(&format!("content:{i}")).replayed += 1;
            replay.model(&format!("model-{i}")).recorded += 1;
        }
        let s = replay.summary();
        assert_eq!(s.labels.len(), MAX_LABELS + 1);
        assert_eq!(s.labels[OTHER_LABELS].replayed, 50);
        assert_eq!(s.models.len(), MAX_LABELS + 1);
        assert_eq!(s.models[OTHER_MODELS].recorded, 50);
        // A label seen before the cap keeps counting on its own.
        replay.label("content:0").replayed += 1;
        assert_eq!(replay.summary().labels["content:0"].replayed, 2);

        let mut times = Reservoir::default();
        for i in 0..(MAX_TIMES + 1000) {
            times.push(i as f64);
        }
        assert_eq!(times.values.len(), MAX_TIMES);
        assert_eq!(times.seen, (MAX_TIMES + 1000) as u64);
    }
}
