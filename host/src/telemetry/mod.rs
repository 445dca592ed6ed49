//! What operators read: Prometheus counters and histograms (text exposition
//! format 0.0.4) and per-policy statistics (seed 004: per team and plan label,
//! matches, successes, errors, fallbacks taken, median latency).
//!
//! Every label value comes from the config (teams, accounts, models), from a
//! fixed vocabulary (outcomes, error codes, fault kinds) or from a policy's
//! plan label, capped at [`MAX_LABELS_PER_TEAM`] per team; so the number of
//! series is bounded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::metrics::series::Stat;

mod labels;

pub use labels::*;

/// Distinct plan labels tracked per team; later ones are counted as `(other)`.
pub const MAX_LABELS_PER_TEAM: usize = 64;

/// Bucket bounds (seconds) of request and upstream latency histograms.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Bucket bounds (seconds) of the policy decision time histogram.
const DECISION_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, secs: f64) {
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.counts[i] += 1;
        }
        self.sum += secs;
        self.count += 1;
    }
}

type Labels = Vec<String>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Statistics of one (team, plan label).
#[derive(Debug, Clone, Default)]
pub struct PolicyStats {
    /// Decisions that produced this label.
    pub matches: u64,
    /// Requests with this label that were answered.
    pub successes: u64,
    /// Requests with this label that ended in an error.
    pub errors: u64,
    /// Answered requests served by a later attempt than the plan's first.
    pub fallbacks: u64,
    /// Time to answer of the answered ones.
    latency: Stat,
}

impl PolicyStats {
    /// Median time to answer (arrival → answer ready), in milliseconds.
    pub fn median_latency_ms(&self) -> Option<f64> {
        self.latency
            .distribution()
            .quantile_us(50.0)
            .map(|us| us / 1000.0)
    }
}

/// One row of [`Telemetry::policy_stats`].
#[derive(Debug, Clone)]
pub struct PolicyRow {
    pub team: String,
    pub label: String,
    pub stats: PolicyStats,
}

/// How a routed request ended, for the counters.
#[derive(Debug, Clone)]
pub struct RequestRecord<'a> {
    pub team: &'a str,
    /// Serving (or last attempted) account and model; `none` without attempt.
    pub provider: &'a str,
    pub model: &'a str,
    pub outcome: RequestOutcome,
    /// Arrival → answer ready (or error).
    pub duration: Duration,
    /// The plan label, when the policy produced a plan.
    pub label: Option<&'a str>,
    /// Served by a later attempt than the plan's first.
    pub fallback: bool,
    pub cost_usd: Option<f64>,
}

/// Counters and histograms since start-up.
#[derive(Default)]
pub struct Telemetry {
    http: Mutex<Series<HttpLabels, u64>>,
    requests: Mutex<Series<RequestLabels, u64>>,
    request_seconds: Mutex<Series<TeamModelLabels, Histogram>>,
    attempts: Mutex<Series<AttemptLabels, u64>>,
    upstream_seconds: Mutex<Series<ModelLabels, Histogram>>,
    ttft_seconds: Mutex<Series<ModelLabels, Histogram>>,
    tokens: Mutex<Series<TokenLabels, u64>>,
    cost: Mutex<Series<TeamModelLabels, f64>>,
    stream_breaks: Mutex<Series<ModelLabels, u64>>,
    malformed_events: Mutex<Series<ModelLabels, u64>>,
    estimated_usage: Mutex<Series<ModelLabels, u64>>,
    rescues: Mutex<Series<RescueLabels, u64>>,
    decision_seconds: Mutex<Series<TeamLabels, Histogram>>,
    policy_faults: Mutex<Series<PolicyLabels, u64>>,
    policy_misbehaviour: Mutex<Series<PolicyLabels, u64>>,
    exclusions: Mutex<Series<ExclusionLabels, u64>>,
    health_checks: Mutex<Series<AttemptLabels, u64>>,
    limiter_rejections: Mutex<Series<LimiterLabels, u64>>,
    cooldowns: Mutex<Series<CooldownLabels, u64>>,
    /// Team → plan label → statistics.
    policies: Mutex<BTreeMap<String, BTreeMap<String, PolicyStats>>>,
}

/// One family's series by their labels. Looked up by borrowed labels
/// ([`LabelSet::Key`]); sorted by labels when rendered.
type Series<L, V> = hashbrown::HashMap<L, V>;

/// The series `key` names, made with `new` the first time.
fn slot<'m, L: LabelSet, V>(
    map: &'m mut Series<L, V>,
    key: L::Key<'_>,
    new: impl FnOnce() -> V,
) -> &'m mut V {
    match map.raw_entry_mut().from_key(&key) {
        hashbrown::hash_map::RawEntryMut::Occupied(e) => e.into_mut(),
        hashbrown::hash_map::RawEntryMut::Vacant(e) => e.insert(L::from_key(&key), new()).1,
    }
}

fn bump<L: LabelSet>(map: &Mutex<Series<L, u64>>, key: L::Key<'_>, by: u64) {
    *slot(&mut lock(map), key, || 0) += by;
}

fn observe<L: LabelSet>(
    map: &Mutex<Series<L, Histogram>>,
    bounds: &'static [f64],
    key: L::Key<'_>,
    secs: f64,
) {
    slot(&mut lock(map), key, || Histogram::new(bounds)).observe(secs);
}

fn model<'a>(provider: &'a str, model: &'a str) -> ModelKey<'a> {
    ModelKey { provider, model }
}

fn team_model<'a>(team: &'a str, provider: &'a str, model: &'a str) -> TeamModelKey<'a> {
    TeamModelKey {
        team,
        provider,
        model,
    }
}

impl Telemetry {
    /// Counts one HTTP response by route and status.
    pub fn http(&self, route: &str, status: u16) {
        let mut text = itoa::Buffer::new();
        let key = HttpKey {
            route,
            status: text.format(status),
        };
        bump(&self.http, key, 1);
    }

    /// Counts one routed request (answered or not) and its per-policy stats.
    pub fn request(&self, r: &RequestRecord<'_>) {
        let key = RequestKey {
            team: r.team,
            provider: r.provider,
            model: r.model,
            outcome: r.outcome,
        };
        bump(&self.requests, key, 1);
        observe(
            &self.request_seconds,
            LATENCY_BUCKETS,
            team_model(r.team, r.provider, r.model),
            r.duration.as_secs_f64(),
        );
        if let Some(cost) = r.cost_usd {
            self.cost(r.team, r.provider, r.model, cost);
        }
        if let Some(label) = r.label {
            let mut policies = lock(&self.policies);
            if !policies.contains_key(r.team) {
                policies.insert(r.team.to_string(), BTreeMap::new());
            }
            let Some(labels) = policies.get_mut(r.team) else {
                return;
            };
            let label = if labels.contains_key(label) || labels.len() < MAX_LABELS_PER_TEAM {
                label
            } else {
                "(other)"
            };
            if !labels.contains_key(label) {
                labels.insert(label.to_string(), PolicyStats::default());
            }
            let Some(stats) = labels.get_mut(label) else {
                return;
            };
            stats.matches += 1;
            if r.outcome == RequestOutcome::Ok {
                stats.successes += 1;
                stats.fallbacks += u64::from(r.fallback);
                stats.latency.record(r.duration);
            } else {
                stats.errors += 1;
            }
        }
    }

    /// Adds spend (e.g. a stream's, known when it ends).
    pub fn cost(&self, team: &str, provider: &str, model: &str, usd: f64) {
        if usd.is_finite() && usd > 0.0 {
            *slot(
                &mut lock(&self.cost),
                team_model(team, provider, model),
                || 0.0,
            ) += usd;
        }
    }

    /// Counts one attempt at a provider.
    pub fn attempt(
        &self,
        provider: &str,
        model: &str,
        outcome: &'static str,
        latency: Option<Duration>,
        ttft: Option<Duration>,
    ) {
        let key = AttemptKey {
            provider,
            model,
            outcome,
        };
        bump(&self.attempts, key, 1);
        if let Some(d) = latency {
            observe(
                &self.upstream_seconds,
                LATENCY_BUCKETS,
                self::model(provider, model),
                d.as_secs_f64(),
            );
        }
        if let Some(d) = ttft {
            observe(
                &self.ttft_seconds,
                LATENCY_BUCKETS,
                self::model(provider, model),
                d.as_secs_f64(),
            );
        }
    }

    /// Adds reported token usage.
    pub fn tokens(&self, provider: &str, model: &str, input: u64, output: u64) {
        for (kind, n) in [(TokenKind::Input, input), (TokenKind::Output, output)] {
            let key = TokenKey {
                provider,
                model,
                kind,
            };
            bump(&self.tokens, key, n);
        }
    }

    /// Counts a malformed upstream stream event that was skipped.
    pub fn malformed_event(&self, provider: &str, model: &str) {
        bump(&self.malformed_events, self::model(provider, model), 1);
    }

    /// Counts an answer whose usage the gateway estimated from the text it
    /// relayed (the stream broke before the provider reported usage).
    pub fn estimated_usage(&self, provider: &str, model: &str) {
        bump(&self.estimated_usage, self::model(provider, model), 1);
    }

    /// Counts one mid-stream rescue attempt: `kind` continuation or
    /// regenerate, `ok` whether the caller's answer went on.
    pub fn rescue(&self, provider: &str, model: &str, kind: &'static str, ok: bool) {
        let key = RescueKey {
            provider,
            model,
            kind,
            outcome: if ok { "ok" } else { "failed" },
        };
        bump(&self.rescues, key, 1);
    }

    /// Counts a stream that broke after content had been sent.
    pub fn stream_break(&self, provider: &str, model: &str) {
        bump(&self.stream_breaks, self::model(provider, model), 1);
    }

    /// Records one policy decision: its time, and its fault kind if it faulted
    /// (`version` is the team plugin's `vN`, or `default`).
    pub fn decision(
        &self,
        team: &str,
        version: &str,
        elapsed: Duration,
        fault: Option<&'static str>,
    ) {
        observe(
            &self.decision_seconds,
            DECISION_BUCKETS,
            TeamKey { team },
            elapsed.as_secs_f64(),
        );
        if let Some(kind) = fault {
            let key = PolicyKey {
                team,
                version,
                kind,
            };
            bump(&self.policy_faults, key, 1);
        }
    }

    /// Counts what a policy did that it should not, short of a fault
    /// (`foreign_metric`: a `metric` call naming a candidate it was not
    /// offered); returns the count before.
    pub fn misbehaviour(&self, team: &str, version: &str, kind: &'static str, times: u64) -> u64 {
        let key = PolicyKey {
            team,
            version,
            kind,
        };
        let mut counts = lock(&self.policy_misbehaviour);
        let count = slot(&mut counts, key, || 0);
        let before = *count;
        *count += times;
        before
    }

    /// Counts a candidate removed before the policy ran, and why.
    pub fn exclusion(&self, provider: &str, model: &str, reason: Exclusion) {
        let key = ExclusionKey {
            provider,
            model,
            reason,
        };
        bump(&self.exclusions, key, 1);
    }

    /// Counts a request (`scope` team) or an attempt (`scope` account) the
    /// gateway's own rate limiter turned away, and which limit (`rpm`, `tpm`).
    pub fn limiter_rejection(&self, scope: LimitScope, name: &str, limit: &'static str) {
        let key = LimiterKey { scope, name, limit };
        bump(&self.limiter_rejections, key, 1);
    }

    /// Counts a cooldown started for an account (`rate_limited`, `quota`).
    pub fn cooldown(&self, provider: &str, reason: &'static str) {
        bump(&self.cooldowns, CooldownKey { provider, reason }, 1);
    }

    /// Counts one active health check.
    pub fn health_check(&self, provider: &str, model: &str, outcome: &'static str) {
        let key = AttemptKey {
            provider,
            model,
            outcome,
        };
        bump(&self.health_checks, key, 1);
    }

    /// Per-policy statistics, by team then label.
    pub fn policy_stats(&self) -> Vec<PolicyRow> {
        lock(&self.policies)
            .iter()
            .flat_map(|(team, labels)| {
                labels.iter().map(move |(label, stats)| PolicyRow {
                    team: team.clone(),
                    label: label.clone(),
                    stats: stats.clone(),
                })
            })
            .collect()
    }

    /// The Prometheus text exposition, with `extra` families appended.
    pub fn render(&self, extra: &[Family]) -> String {
        let mut out = String::with_capacity(16 << 10);
        counter(
            &mut out,
            "switchyard_http_responses_total",
            "HTTP responses by route and status.",
            &lock(&self.http),
        );
        counter(
            &mut out,
            "switchyard_requests_total",
            "Routed requests by team, serving (or last tried) provider and model, and outcome (ok or the error code returned).",
            &lock(&self.requests),
        );
        histogram(
            &mut out,
            "switchyard_request_duration_seconds",
            "Arrival to answer ready (first token for streams), by team, provider and model.",
            &lock(&self.request_seconds),
        );
        counter(
            &mut out,
            "switchyard_attempts_total",
            "Attempts at providers by outcome (ok, broken: a stream that broke after content, error, timeout, rate_limited, rejected); a stream is counted when it ends.",
            &lock(&self.attempts),
        );
        histogram(
            &mut out,
            "switchyard_upstream_latency_seconds",
            "Provider latency of successful attempts: whole answer, or first content token for streams.",
            &lock(&self.upstream_seconds),
        );
        histogram(
            &mut out,
            "switchyard_time_to_first_token_seconds",
            "Time to the first content token of streamed attempts.",
            &lock(&self.ttft_seconds),
        );
        counter(
            &mut out,
            "switchyard_tokens_total",
            "Tokens reported by providers.",
            &lock(&self.tokens),
        );
        let cost = lock(&self.cost);
        family_header(
            &mut out,
            "switchyard_cost_usd_total",
            "Spend in US dollars from reported usage and catalog prices.",
            "counter",
        );
        for (labels, v) in sorted(&cost) {
            sample(
                &mut out,
                "switchyard_cost_usd_total",
                TeamModelLabels::NAMES,
                &labels.values(),
                None,
                *v,
            );
        }
        drop(cost);
        counter(
            &mut out,
            "switchyard_stream_interruptions_total",
            "Streams that broke after content had reached the caller.",
            &lock(&self.stream_breaks),
        );
        counter(
            &mut out,
            "switchyard_stream_rescues_total",
            "Streams that broke after content and were continued on another candidate, by the rescuing provider and model, kind (continuation: the partial answer sent as an assistant prefill; regenerate: the answer restarted and its delivered part skipped) and outcome (ok: the caller's answer went on; failed).",
            &lock(&self.rescues),
        );
        counter(
            &mut out,
            "switchyard_estimated_usage_total",
            "Answers whose token usage the gateway estimated from the text it relayed, because the stream broke before the provider reported usage (billed at the model's prices).",
            &lock(&self.estimated_usage),
        );
        counter(
            &mut out,
            "switchyard_upstream_malformed_events_total",
            "Upstream stream events that were not JSON, skipped (the stream went on), by provider and model.",
            &lock(&self.malformed_events),
        );
        histogram(
            &mut out,
            "switchyard_policy_decision_seconds",
            "Time of one routing policy decision (instantiate, call, validate).",
            &lock(&self.decision_seconds),
        );
        counter(
            &mut out,
            "switchyard_policy_faults_total",
            "Policy decisions that faulted, by team, policy version (`v3`, or `default`) and kind (trap, deadline, memory, invalid-plan, instantiate). A team plugin's fault is answered by the default policy.",
            &lock(&self.policy_faults),
        );
        counter(
            &mut out,
            "switchyard_policy_misbehaviour_total",
            "Things policies did that they may not, answered without a fault, by team, policy version and kind (foreign_metric: a metric read for a candidate the decision was not offered, answered none).",
            &lock(&self.policy_misbehaviour),
        );
        counter(
            &mut out,
            "switchyard_candidate_exclusions_total",
            "Candidates removed before the policy ran, by reason (circuit_open, feature_uptime).",
            &lock(&self.exclusions),
        );
        counter(
            &mut out,
            "switchyard_limiter_rejections_total",
            "Requests (scope team) and attempts (scope account) turned away by the gateway's own rate limiter, by limit (rpm, tpm).",
            &lock(&self.limiter_rejections),
        );
        counter(
            &mut out,
            "switchyard_cooldowns_total",
            "Cooldowns started for a provider account after it answered 429 (rate_limited) or 402 (quota).",
            &lock(&self.cooldowns),
        );
        counter(
            &mut out,
            "switchyard_health_checks_total",
            "Active health checks by outcome.",
            &lock(&self.health_checks),
        );
        let policies = self.policy_stats();
        for (name, help, get) in [
            (
                "switchyard_policy_matches_total",
                "Decisions per team and plan label.",
                (|s: &PolicyStats| s.matches) as fn(&PolicyStats) -> u64,
            ),
            (
                "switchyard_policy_successes_total",
                "Answered requests per team and plan label.",
                |s| s.successes,
            ),
            (
                "switchyard_policy_errors_total",
                "Requests per team and plan label that ended in an error.",
                |s| s.errors,
            ),
            (
                "switchyard_policy_fallbacks_total",
                "Answered requests per team and plan label served by a fallback attempt.",
                |s| s.fallbacks,
            ),
        ] {
            family_header(&mut out, name, help, "counter");
            for row in &policies {
                sample(
                    &mut out,
                    name,
                    &["team", "label"],
                    &[&row.team, &row.label],
                    None,
                    get(&row.stats) as f64,
                );
            }
        }
        family_header(
            &mut out,
            "switchyard_policy_median_latency_seconds",
            "Median time to answer per team and plan label, since start-up.",
            "gauge",
        );
        for row in &policies {
            if let Some(ms) = row.stats.median_latency_ms() {
                sample(
                    &mut out,
                    "switchyard_policy_median_latency_seconds",
                    &["team", "label"],
                    &[&row.team, &row.label],
                    None,
                    ms / 1000.0,
                );
            }
        }
        for family in extra {
            family_header(&mut out, family.name, family.help, family.kind);
            for (values, v) in &family.samples {
                let values: Vec<&str> = values.iter().map(String::as_str).collect();
                sample(&mut out, family.name, family.labels, &values, None, *v);
            }
        }
        out
    }
}

/// A family computed at scrape time (gauges of current state).
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    /// `gauge` or `counter`.
    pub kind: &'static str,
    pub labels: &'static [&'static str],
    pub samples: Vec<(Labels, f64)>,
}

fn family_header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn escape(value: &str) -> String {
    let mut s = String::with_capacity(value.len());
    for ch in value.chars() {
        match ch {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

fn sample(out: &mut String, name: &str, names: &[&str], values: &[&str], le: Option<&str>, v: f64) {
    out.push_str(name);
    let mut pairs: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        pairs.push(format!("le=\"{le}\""));
    }
    if !pairs.is_empty() {
        out.push('{');
        out.push_str(&pairs.join(","));
        out.push('}');
    }
    out.push(' ');
    out.push_str(&number(v));
    out.push('\n');
}

/// A family's series in the order of their labels.
fn sorted<L: LabelSet, V>(map: &Series<L, V>) -> Vec<(&L, &V)> {
    let mut rows: Vec<_> = map.iter().collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
    rows
}

fn counter<L: LabelSet>(out: &mut String, name: &str, help: &str, map: &Series<L, u64>) {
    family_header(out, name, help, "counter");
    for (labels, v) in sorted(map) {
        sample(out, name, L::NAMES, &labels.values(), None, *v as f64);
    }
}

fn histogram<L: LabelSet>(out: &mut String, name: &str, help: &str, map: &Series<L, Histogram>) {
    family_header(out, name, help, "histogram");
    let bucket = format!("{name}_bucket");
    let names = L::NAMES;
    for (labels, h) in sorted(map) {
        let values = &labels.values();
        let mut cumulative = 0u64;
        for (bound, count) in h.bounds.iter().zip(&h.counts) {
            cumulative += count;
            sample(
                out,
                &bucket,
                names,
                values,
                Some(&number(*bound)),
                cumulative as f64,
            );
        }
        sample(out, &bucket, names, values, Some("+Inf"), h.count as f64);
        sample(out, &format!("{name}_sum"), names, values, None, h.sum);
        sample(
            out,
            &format!("{name}_count"),
            names,
            values,
            None,
            h.count as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_escapes_labels() {
        let t = Telemetry::default();
        t.request(&RequestRecord {
            team: "a \"quoted\"\nteam",
            provider: "oa1",
            model: "gpt-4o",
            outcome: RequestOutcome::Ok,
            duration: Duration::from_millis(30),
            label: Some("rule:chat"),
            fallback: true,
            cost_usd: Some(0.25),
        });
        let text = t.render(&[]);
        assert!(text.contains(
            "switchyard_requests_total{team=\"a \\\"quoted\\\"\\nteam\",provider=\"oa1\",model=\"gpt-4o\",outcome=\"ok\"} 1\n"
        ));
        assert!(text.contains("switchyard_request_duration_seconds_bucket{team=\"a \\\"quoted\\\"\\nteam\",provider=\"oa1\",model=\"gpt-4o\",le=\"0.05\"} 1\n"));
        assert!(text.contains("switchyard_request_duration_seconds_bucket{team=\"a \\\"quoted\\\"\\nteam\",provider=\"oa1\",model=\"gpt-4o\",le=\"0.025\"} 0\n"));
        assert!(text.contains("switchyard_policy_fallbacks_total{team=\"a \\\"quoted\\\"\\nteam\",label=\"rule:chat\"} 1\n"));
        let rows = t.policy_stats();
        assert_eq!(rows.len(), 1);
        let median = rows[0].stats.median_latency_ms().unwrap_or(0.0);
        assert!((median - 30.0).abs() <= 30.0 / 32.0, "{median}");
    }

    #[test]
    fn a_series_is_counted_once_per_labels_and_rendered_in_label_order() {
        let t = Telemetry::default();
        for (provider, n) in [("zeta", 2), ("alpha", 1), ("zeta", 3), ("mid", 4)] {
            t.tokens(provider, "m", n, 0);
        }
        t.http("/v1/chat/completions", 200);
        t.http("/v1/chat/completions", 200);
        t.http("/v1/chat/completions", 429);
        let text = t.render(&[]);
        let inputs: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("switchyard_tokens_total{") && l.contains("input"))
            .collect();
        assert_eq!(
            inputs,
            [
                "switchyard_tokens_total{provider=\"alpha\",model=\"m\",kind=\"input\"} 1",
                "switchyard_tokens_total{provider=\"mid\",model=\"m\",kind=\"input\"} 4",
                "switchyard_tokens_total{provider=\"zeta\",model=\"m\",kind=\"input\"} 5",
            ]
        );
        assert!(text.contains(
            "switchyard_http_responses_total{route=\"/v1/chat/completions\",status=\"200\"} 2\n"
        ));
        assert!(text.contains(
            "switchyard_http_responses_total{route=\"/v1/chat/completions\",status=\"429\"} 1\n"
        ));
    }

    #[test]
    fn plan_labels_per_team_are_capped() {
        let t = Telemetry::default();
        for i in 0..(MAX_LABELS_PER_TEAM + 10) {
            let label = format!("label-{i}");
            t.request(&RequestRecord {
                team: "t",
                provider: "p",
                model: "m",
                outcome: crate::errors::ErrorCode::from(
                    crate::errors::RoutingCode::AllProvidersFailed,
                )
                .into(),
                duration: Duration::from_millis(1),
                label: Some(&label),
                fallback: false,
                cost_usd: None,
            });
        }
        let rows = t.policy_stats();
        assert_eq!(rows.len(), MAX_LABELS_PER_TEAM + 1);
        let other = rows
            .iter()
            .find(|r| r.label == "(other)")
            .map(|r| r.stats.errors);
        assert_eq!(other, Some(10));
    }
}
