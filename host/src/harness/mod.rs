//! The offline policy harness: `switchyard policy test` runs a plugin against a
//! case file and reports, per case, pass or fail with a readable diff, the
//! WebAssembly instructions executed (fuel) and peak guest memory;
//! `switchyard policy bench` measures decision time.

pub mod cases;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::MetricSource;
use crate::policy::{
    Candidate, Decision, Health, Policy, PolicyError, Price, Request, RoutePlan, Routing, WarmPool,
    refusal_name,
};
pub use cases::{CaseFile, CaseMetrics};
use switchyard_wire::CandidateId;

/// The outcome of one case.
#[derive(Debug)]
pub struct CaseReport {
    pub name: String,
    /// Empty when the case passed.
    pub failures: Vec<String>,
    pub decision: Option<Decision>,
    /// The candidates the decision was offered (its plan names them by
    /// position).
    pub candidates: Vec<Candidate>,
}

impl CaseReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Parses a case file.
pub fn parse_case_file(text: &str) -> Result<CaseFile, String> {
    serde_json::from_str(text).map_err(|e| format!("invalid case file: {e}"))
}

/// Prompt text handed to a policy in cases and benches, in bytes (the
/// gateway's default `[plugins] content_text_bytes`).
pub const CONTENT_TEXT_BYTES: usize = 4096;

/// Runs every case of `file` against `policy`.
pub fn run_cases(policy: &Policy, file: &CaseFile) -> Vec<CaseReport> {
    file.cases
        .iter()
        .map(|case| run_case(policy, file, case))
        .collect()
}

/// Runs one case of `file` against `policy`.
pub fn run_case(policy: &Policy, file: &CaseFile, case: &cases::Case) -> CaseReport {
    let request = match case
        .request
        .to_request(case.config.as_ref().or(file.config.as_ref()))
    {
        Ok(request) => request,
        Err(e) => {
            return CaseReport {
                name: case.name.clone(),
                failures: vec![format!("bad request in case: {e}")],
                decision: None,
                candidates: Vec::new(),
            };
        }
    };
    let specs = case.candidates.as_ref().unwrap_or(&file.candidates);
    // Like the gateway, apply the provider whitelist before the policy.
    let mut candidates: Vec<Candidate> = specs
        .iter()
        .map(|spec| spec.to_candidate())
        .filter(|c| {
            request.routing.providers.is_empty() || request.routing.providers.contains(&c.provider)
        })
        .collect();
    let metrics = CaseMetrics::new(case.metrics.as_ref().unwrap_or(&file.metrics));
    policy.precompute_metrics(&mut candidates, &metrics, request.routing.interval_seconds);
    // The setup the case implies, and its prompt's content signals (the
    // gateway's default text limit).
    let context = crate::policy::v0_2::Context {
        setup: Arc::new(crate::policy::v0_2::Setup::implied(&request, &candidates)),
        content: case.request.content(CONTENT_TEXT_BYTES).map(Arc::new),
    };
    let decision = policy.decide_in(&context, &request, &candidates, Arc::new(metrics));
    let failures = check(&case.expect, &decision.result, &candidates);
    CaseReport {
        name: case.name.clone(),
        failures,
        decision: Some(decision),
        candidates,
    }
}

fn sorted(list: &[String]) -> Vec<&str> {
    let mut v: Vec<&str> = list.iter().map(String::as_str).collect();
    v.sort_unstable();
    v
}

/// Checks a decision against the expectations; returns one message per failure.
fn check(
    expect: &cases::Expect,
    result: &Result<RoutePlan, PolicyError>,
    candidates: &[Candidate],
) -> Vec<String> {
    let mut failures = Vec::new();
    let plan = match result {
        Ok(plan) => plan,
        Err(err) => {
            let (kind, wanted) = match err {
                PolicyError::Refused { kind, .. } => (refusal_name(*kind), expect.error.as_deref()),
                other => (other.kind(), expect.fault.as_deref()),
            };
            if wanted != Some(kind) {
                failures.push(format!(
                    "expected {}\n       got      {kind}: {err}",
                    describe_expected_outcome(expect)
                ));
            }
            return failures;
        }
    };
    if expect.error.is_some() || expect.fault.is_some() {
        failures.push(format!(
            "expected {}\n       got      a plan {:?} (label {:?})",
            describe_expected_outcome(expect),
            plan.ids(candidates),
            plan.label
        ));
        return failures;
    }
    let got = plan.ids(candidates);
    if let Some(want) = &expect.plan {
        let want: Vec<&str> = want.iter().map(String::as_str).collect();
        if want != got {
            failures.push(plan_diff(&want, &got));
        }
    }
    if let Some(first) = &expect.first
        && got.first() != Some(&first.as_str())
    {
        failures.push(format!(
            "first attempt: expected {first}\n                got      {}",
            got.first().unwrap_or(&"(none)")
        ));
    }
    for never in &expect.never {
        if let Some(pos) = got.iter().position(|id| id == never) {
            failures.push(format!("never: {never} is attempt #{} of {got:?}", pos + 1));
        }
    }
    for want in &expect.includes {
        if !got.contains(&want.as_str()) {
            failures.push(format!(
                "includes: {want} is not attempted; plan is {got:?}"
            ));
        }
    }
    if !expect.order.is_empty() {
        let positions: Vec<Option<usize>> = expect
            .order
            .iter()
            .map(|id| got.iter().position(|g| g == id))
            .collect();
        let in_order =
            positions.iter().all(Option::is_some) && positions.windows(2).all(|w| w[0] < w[1]);
        if !in_order {
            failures.push(format!(
                "order: expected {:?} in this relative order\n       plan is  {got:?}",
                expect.order
            ));
        }
    }
    if let Some(n) = expect.attempts
        && got.len() != n
    {
        failures.push(format!(
            "attempts: expected {n}, got {} ({got:?})",
            got.len()
        ));
    }
    if let Some(want) = &expect.strips {
        let actual = plan
            .attempts
            .first()
            .map(|a| sorted(&a.strip))
            .unwrap_or_default();
        if sorted(want) != actual {
            failures.push(format!(
                "strips (first attempt): expected {:?}\n                         got      {actual:?}",
                sorted(want)
            ));
        }
    }
    if let Some(want) = &expect.strips_all {
        for attempt in &plan.attempts {
            let actual = sorted(&attempt.strip);
            if sorted(want) != actual {
                failures.push(format!(
                    "strips_all: attempt on {} strips {actual:?}, expected {:?}",
                    candidates
                        .get(attempt.candidate)
                        .map_or("?", |c| c.id.as_str()),
                    sorted(want)
                ));
            }
        }
    }
    if let Some(label) = &expect.label
        && &plan.label != label
    {
        failures.push(format!(
            "label: expected {label:?}\n       got      {:?}",
            plan.label
        ));
    }
    failures
}

fn describe_expected_outcome(expect: &cases::Expect) -> String {
    match (&expect.error, &expect.fault) {
        (Some(kind), _) => format!("a refusal of kind {kind}"),
        (None, Some(fault)) => format!("a {fault} fault"),
        (None, None) => "a plan".to_string(),
    }
}

/// A side-by-side, position-by-position diff of two attempt lists.
fn plan_diff(want: &[&str], got: &[&str]) -> String {
    let width = want.iter().map(|s| s.len()).max().unwrap_or(0).max(8);
    let mut out = format!("plan differs:\n         #  {:<width$}  actual", "expected");
    for i in 0..want.len().max(got.len()) {
        let w = want.get(i).copied().unwrap_or("-");
        let g = got.get(i).copied().unwrap_or("-");
        let mark = if w == g { "" } else { "   <-- differs" };
        let _ = write!(out, "\n       {:>3}  {w:<width$}  {g}{mark}", i + 1);
    }
    out
}

fn human_bytes(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

fn human_duration(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros >= 1000.0 {
        format!("{:.2} ms", micros / 1000.0)
    } else {
        format!("{micros:.1} µs")
    }
}

/// Renders the pass/fail table and the failure details.
pub fn render_report(
    reports: &[CaseReport],
    memory_limit: usize,
    fuel_limit: Option<u64>,
) -> String {
    let name_width = reports
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 60);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<name_width$}  {:<6}  {:>12}  {:>21}  {:>9}",
        "case", "result", "instructions", "peak memory / limit", "time"
    );
    for report in reports {
        let (fuel, memory, time) = match &report.decision {
            Some(d) => (
                d.stats
                    .fuel_consumed
                    .map(|f| f.to_string())
                    .unwrap_or_else(|| "-".into()),
                format!(
                    "{} / {}",
                    human_bytes(d.stats.peak_memory_bytes),
                    human_bytes(memory_limit)
                ),
                human_duration(d.stats.elapsed),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let name: String = report.name.chars().take(name_width).collect();
        let _ = writeln!(
            out,
            "{name:<name_width$}  {:<6}  {fuel:>12}  {memory:>21}  {time:>9}",
            if report.passed() { "PASS" } else { "FAIL" }
        );
    }
    let failed: Vec<&CaseReport> = reports.iter().filter(|r| !r.passed()).collect();
    for report in &failed {
        let _ = writeln!(out, "\nFAIL {}", report.name);
        for failure in &report.failures {
            let _ = writeln!(out, "     {failure}");
        }
        if let Some(Ok(plan)) = report.decision.as_ref().map(|d| &d.result) {
            let _ = writeln!(out, "     plan label {:?}", plan.label);
            for (i, attempt) in plan.attempts.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "       {}. {}{}",
                    i + 1,
                    report
                        .candidates
                        .get(attempt.candidate)
                        .map_or("?", |c| c.id.as_str()),
                    if attempt.strip.is_empty() {
                        String::new()
                    } else {
                        format!("  (strips {})", attempt.strip.join(", "))
                    }
                );
            }
        }
        if let Some(d) = &report.decision {
            for line in &d.logs {
                let _ = writeln!(out, "     log {:?}: {}", line.level, line.message);
            }
        }
    }
    let passed = reports.len() - failed.len();
    let _ = writeln!(
        out,
        "\n{passed} passed, {} failed{}",
        failed.len(),
        fuel_limit
            .map(|f| format!(" (fuel limit {f} instructions per case)"))
            .unwrap_or_default()
    );
    out
}

/// Decision-time figures from [`bench`].
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// The contract version the policy was built against (`0.2.0`).
    pub contract: &'static str,
    /// `fresh` (a new instance per decision) or `warm` (one reused instance).
    pub instance: &'static str,
    pub candidates: usize,
    pub decisions: usize,
    pub per_second: f64,
    pub median: Duration,
    pub p99: Duration,
    pub mean: Duration,
    pub faults: usize,
}

/// A synthetic, realistic request and candidate set for benchmarking.
pub fn bench_inputs(n: usize, metric: &str) -> (Request, Vec<Candidate>, Arc<dyn MetricSource>) {
    const PROVIDERS: &[&str] = &[
        "openai",
        "anthropic",
        "bedrock",
        "azure",
        "vertex",
        "together",
        "groq",
        "fireworks",
    ];
    const MODELS: &[(&str, f64, f64, u8)] = &[
        ("gpt-5", 1.25, 10.0, 1),
        ("gpt-5-mini", 0.25, 2.0, 2),
        ("claude-sonnet-4-5", 3.0, 15.0, 1),
        ("claude-haiku-4-5", 1.0, 5.0, 2),
        ("llama-3.1-70b", 0.6, 0.8, 3),
    ];
    let features: Vec<String> = ["stream", "tools.function_calling", "temperature", "top_p"]
        .into_iter()
        .map(String::from)
        .collect();
    let mut candidates = Vec::with_capacity(n);
    let mut values = cases::MetricSpec::new();
    for i in 0..n {
        let provider = PROVIDERS[i % PROVIDERS.len()];
        let (model, input, output, tier) = MODELS[(i / PROVIDERS.len() + i) % MODELS.len()];
        let id = CandidateId::new(format!("{provider}-{i}"), model).key();
        candidates.push(Candidate {
            id: id.clone(),
            provider: format!("{provider}-{i}"),
            model: model.to_string(),
            logical_model: None,
            price: Price {
                input,
                output,
                cached_input: input / 10.0,
            },
            features: features.clone(),
            zdr: i % 3 == 0,
            tier,
            health: if i % 7 == 0 {
                Health::Degraded
            } else {
                Health::Healthy
            },
            headroom: Some(0.5),
            cache_affinity: i % 5 == 0,
            context_window: 200_000,
            metrics: Vec::new(),
        });
        let mut m = std::collections::BTreeMap::new();
        m.insert(metric.to_string(), 200.0 + (i * 37 % 500) as f64);
        values.insert(id, m);
    }
    let request = Request {
        model: "auto".into(),
        routing: Routing {
            metric: Some(metric.to_string()),
            interval_seconds: 900,
            models: Vec::new(),
            providers: Vec::new(),
        },
        features: vec!["stream".into(), "temperature".into()],
        step_type: Some("inference".into()),
        purpose: Some("chat".into()),
        team: "bench".into(),
        estimated_input_tokens: 1200,
        max_output_tokens: Some(800),
        prompt_cache_key: false,
        metadata: Vec::new(),
        config: "{}".into(),
    };
    (request, candidates, Arc::new(CaseMetrics::new(&values)))
}

/// Runs decisions back to back for `duration` (after a warm-up) and reports
/// throughput and latency percentiles: first each on a fresh instance, then on
/// a warm one reused from decision to decision, as the gateway runs them.
pub fn bench(
    policy: &Policy,
    n: usize,
    metric: &str,
    prompt_bytes: usize,
    config: Option<&str>,
    duration: Duration,
) -> Vec<BenchReport> {
    let (mut request, mut candidates, metrics) = bench_inputs(n, metric);
    if let Some(config) = config {
        request.config = config.to_string();
    }
    policy.precompute_metrics(&mut candidates, metrics.as_ref(), 900);
    // The team's setup, made once as the gateway keeps it per team; a prompt
    // of `prompt_bytes` for a policy that reads content.
    let content = (prompt_bytes > 0).then(|| {
        let spec = cases::RequestSpec {
            prompt: Some(bench_prompt(prompt_bytes)),
            system: Some("You are a careful assistant.".into()),
            ..cases::RequestSpec::default()
        };
        spec.content(prompt_bytes.max(CONTENT_TEXT_BYTES))
            .map(Arc::new)
    });
    let context = crate::policy::v0_2::Context {
        setup: Arc::new(crate::policy::v0_2::Setup::implied(&request, &candidates)),
        content: content.flatten(),
    };
    let pool = WarmPool::new(policy.clone(), 1);
    let fresh = || {
        policy
            .decide_in(&context, &request, &candidates, metrics.clone())
            .result
            .is_err()
    };
    let warm = || {
        pool.decide_in(&context, &request, &candidates, metrics.clone())
            .result
            .is_err()
    };
    let contract = policy.contract().version();
    vec![
        measure(contract, "fresh", n, duration, fresh),
        measure(contract, "warm", n, duration, warm),
    ]
}

/// A prompt of about `bytes` bytes: prose with a code block and some
/// arithmetic, as a content-aware policy would see in traffic.
fn bench_prompt(bytes: usize) -> String {
    const PARTS: [&str; 3] = [
        "Please review the following function and explain why the totals drift when invoices are split across months. ",
        "```python\ndef total(items):\n    return sum(i.price * i.qty for i in items)\n```\n",
        "If 3 invoices of 1250.40 are split 40/60, what is 0.4 * 3751.2 - 1500.48? ",
    ];
    let mut text = String::with_capacity(bytes + 128);
    let mut i = 0;
    while text.len() < bytes {
        text.push_str(PARTS[i % PARTS.len()]);
        i += 1;
    }
    let mut cut = bytes.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text
}

/// Times `decide` (which says whether the decision failed) back to back.
fn measure(
    contract: &'static str,
    instance: &'static str,
    n: usize,
    duration: Duration,
    decide: impl Fn() -> bool,
) -> BenchReport {
    for _ in 0..200 {
        decide();
    }
    let mut samples = Vec::with_capacity(100_000);
    let mut faults = 0;
    let started = Instant::now();
    while samples.is_empty() || started.elapsed() < duration {
        let t = Instant::now();
        if decide() {
            faults += 1;
        }
        samples.push(t.elapsed());
    }
    let total = started.elapsed();
    samples.sort_unstable();
    let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    let sum: Duration = samples.iter().sum();
    BenchReport {
        contract,
        instance,
        candidates: n,
        decisions: samples.len(),
        per_second: samples.len() as f64 / total.as_secs_f64(),
        median: pick(0.5),
        p99: pick(0.99),
        mean: sum / samples.len().max(1) as u32,
        faults,
    }
}

/// Renders bench reports as a small table.
pub fn render_bench(reports: &[BenchReport]) -> String {
    let mut out = String::from(
        "contract  instance  candidates  decisions  decisions/s  median     p99        mean       faults\n",
    );
    for report in reports {
        out.push_str(&format!(
            "{:<8}  {:<8}  {:<10}  {:<9}  {:<11.0}  {:<9}  {:<9}  {:<9}  {}\n",
            report.contract,
            report.instance,
            report.candidates,
            report.decisions,
            report.per_second,
            human_duration(report.median),
            human_duration(report.p99),
            human_duration(report.mean),
            report.faults
        ));
    }
    out
}
