//! Native tests of the default policy. `case_file` runs `cases/default.json`
//! with the semantics of docs/policy-cases.md, so the case file and the logic
//! cannot drift apart even where the `switchyard policy test` harness is not
//! available.

use super::*;
use crate::v0_1::*;
use crate::v0_1_types::{
    Candidate, Health, MetricValue, Plan, PolicyError, PolicyErrorKind, Price, Request, Routing,
};
use serde_json::json;
use std::cell::RefCell;
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------
// Builders

fn cand(id: &str) -> Candidate {
    let (provider, model) = id.split_once('/').unwrap_or(("", id));
    Candidate {
        id: id.to_string(),
        provider: provider.to_string(),
        model: model.to_string(),
        logical_model: None,
        price: Price {
            input: 0.0,
            output: 0.0,
            cached_input: 0.0,
        },
        features: Vec::new(),
        zdr: false,
        tier: 2,
        health: Health::Healthy,
        headroom: None,
        cache_affinity: false,
        context_window: 128_000,
        metrics: Vec::new(),
    }
}

fn with(mut c: Candidate, tier: u8, input: f64, output: f64, features: &[&str]) -> Candidate {
    c.tier = tier;
    c.price = Price {
        input,
        output,
        cached_input: input / 10.0,
    };
    c.features = features.iter().map(|f| f.to_string()).collect();
    c
}

fn req(model: &str) -> Request {
    Request {
        model: model.to_string(),
        routing: Routing {
            metric: None,
            interval_seconds: 900,
            models: Vec::new(),
            providers: Vec::new(),
        },
        features: Vec::new(),
        step_type: None,
        purpose: None,
        team: "test-team".to_string(),
        estimated_input_tokens: 1000,
        max_output_tokens: None,
        prompt_cache_key: false,
        metadata: Vec::new(),
        config: "{}".to_string(),
    }
}

fn strs(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

const ANTHROPIC: &[&str] = &[
    "stream",
    "tools.function_calling",
    "tools.web_search",
    "tool_choice.required",
    "text.format.json_schema",
    "temperature",
    "top_p",
    "vision",
    "prompt_cache_key",
    "parallel_tool_calls",
    "reasoning.effort.high",
];
const OPENAI: &[&str] = &[
    "stream",
    "tools.function_calling",
    "tools.web_search",
    "tools.custom_tools",
    "tool_choice.required",
    "text.format.json_schema",
    "text.format.json_object",
    "reasoning.effort.high",
    "vision",
    "parallel_tool_calls",
    "prompt_cache_key",
    "text.verbosity",
    "include",
];
const BEDROCK: &[&str] = &[
    "stream",
    "tools.function_calling",
    "tool_choice.required",
    "text.format.json_schema",
    "temperature",
    "top_p",
    "vision",
    "parallel_tool_calls",
    "reasoning.effort.high",
];
const OLLAMA: &[&str] = &[
    "stream",
    "tools.function_calling",
    "temperature",
    "top_p",
    "text.format.json_object",
];

fn fleet() -> Vec<Candidate> {
    vec![
        with(cand("anthropic/claude-haiku-4-5"), 3, 1.0, 5.0, ANTHROPIC),
        with(cand("anthropic/claude-sonnet-4-5"), 2, 3.0, 15.0, ANTHROPIC),
        with(cand("anthropic/claude-opus-4-1"), 1, 15.0, 75.0, ANTHROPIC),
        with(cand("openai/gpt-5"), 1, 1.25, 10.0, OPENAI),
        with(cand("openai/gpt-5-mini"), 2, 0.25, 2.0, OPENAI),
        with(cand("bedrock/claude-sonnet-4-5"), 2, 3.0, 15.0, BEDROCK),
        with(cand("ollama/llama3.1:8b"), 4, 0.0, 0.0, OLLAMA),
    ]
}

fn no_metrics(_: &str, _: &str, _: u32) -> Option<f64> {
    None
}

fn run(r: &Request, c: &[Candidate]) -> Result<Plan, PolicyError> {
    route(r, c, &no_metrics)
}

fn ids(plan: &Plan) -> Vec<&str> {
    plan.attempts.iter().map(|a| a.candidate.as_str()).collect()
}

fn plan_ids(r: &Request, c: &[Candidate]) -> Vec<String> {
    match run(r, c) {
        Ok(p) => p.attempts.into_iter().map(|a| a.candidate).collect(),
        Err(e) => panic!("expected a plan, got {:?}: {}", e.kind, e.message),
    }
}

fn err(r: &Request, c: &[Candidate]) -> PolicyError {
    match run(r, c) {
        Ok(p) => panic!("expected an error, got plan {:?}", ids(&p)),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------
// The case file, run natively

fn interval_seconds(text: &str) -> u32 {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u32 = t[..split].parse().expect("interval number");
    let unit = t[split..].trim().to_ascii_lowercase();
    let mult = match unit.as_str() {
        "s" | "sec" | "second" | "seconds" => 1,
        "m" | "min" | "minute" | "minutes" => 60,
        "h" | "hr" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 604_800,
        other => panic!("unknown interval unit {other:?}"),
    };
    (n * mult).max(900)
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().expect("string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn candidate_from(v: &Value) -> Candidate {
    let id = v["id"].as_str().expect("candidate id");
    let mut c = cand(id);
    if let Some(p) = v.get("provider").and_then(Value::as_str) {
        c.provider = p.to_string();
    }
    if let Some(m) = v.get("model").and_then(Value::as_str) {
        c.model = m.to_string();
    }
    c.logical_model = v
        .get("logical_model")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(p) = v.get("price") {
        let input = p.get("input").and_then(Value::as_f64).unwrap_or(0.0);
        c.price = Price {
            input,
            output: p.get("output").and_then(Value::as_f64).unwrap_or(0.0),
            cached_input: p
                .get("cached_input")
                .and_then(Value::as_f64)
                .unwrap_or(input),
        };
    }
    c.features = str_list(v.get("features"));
    c.zdr = v.get("zdr").and_then(Value::as_bool).unwrap_or(false);
    c.tier = v
        .get("tier")
        .and_then(Value::as_u64)
        .map(|t| t as u8)
        .unwrap_or(2);
    c.health = match v.get("health").and_then(Value::as_str).unwrap_or("healthy") {
        "healthy" => Health::Healthy,
        "degraded" => Health::Degraded,
        "half-open" => Health::HalfOpen,
        other => panic!("unknown health {other}"),
    };
    c.headroom = v.get("headroom").and_then(Value::as_f64).map(|h| h as f32);
    c.cache_affinity = v
        .get("cache_affinity")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    c.context_window = v
        .get("context_window")
        .and_then(Value::as_u64)
        .map(|w| w as u32)
        .unwrap_or(128_000);
    c
}

fn request_from(v: &Value, config: &Value) -> Request {
    let mut r = req(v.get("model").and_then(Value::as_str).unwrap_or("auto"));
    if let Some(routing) = v.get("routing") {
        r.routing.metric = routing
            .get("metric")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(i) = routing.get("interval").and_then(Value::as_str) {
            r.routing.interval_seconds = interval_seconds(i);
        }
        if let Some(s) = routing.get("interval_seconds").and_then(Value::as_u64) {
            r.routing.interval_seconds = (s as u32).max(900);
        }
        r.routing.models = str_list(routing.get("models"));
        r.routing.providers = str_list(routing.get("providers"));
    }
    r.features = str_list(v.get("features"));
    r.step_type = v
        .get("step_type")
        .and_then(Value::as_str)
        .map(str::to_string);
    r.purpose = v.get("purpose").and_then(Value::as_str).map(str::to_string);
    if let Some(t) = v.get("estimated_input_tokens").and_then(Value::as_u64) {
        r.estimated_input_tokens = t as u32;
    }
    r.max_output_tokens = v
        .get("max_output_tokens")
        .and_then(Value::as_u64)
        .map(|t| t as u32);
    r.prompt_cache_key = v
        .get("prompt_cache_key")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if let Some(m) = v.get("metadata").and_then(Value::as_object) {
        r.metadata = m
            .iter()
            .map(|(k, x)| (k.clone(), x.as_str().expect("metadata value").to_string()))
            .collect();
    }
    r.config = config.to_string();
    r
}

/// Checks one case; returns the reasons it failed.
fn check_case(file: &Value, case: &Value) -> Vec<String> {
    let pick = |key: &str| case.get(key).or_else(|| file.get(key));
    let config = pick("config").cloned().unwrap_or_else(|| json!({}));
    let request = request_from(case.get("request").unwrap_or(&json!({})), &config);
    let mut candidates: Vec<Candidate> = pick("candidates")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(candidate_from).collect())
        .unwrap_or_default();
    if !request.routing.providers.is_empty() {
        candidates.retain(|c| request.routing.providers.contains(&c.provider));
    }
    let metrics = pick("metrics").cloned().unwrap_or_else(|| json!({}));
    let lookup = |id: &str, name: &str, window: u32| -> Option<f64> {
        let m = metrics.get(id)?;
        m.get(format!("{name}@{window}"))
            .or_else(|| m.get(name))
            .and_then(Value::as_f64)
    };
    let result = route(&request, &candidates, &lookup);
    let expect = &case["expect"];
    let mut fails = Vec::new();
    let plan = match (&result, expect.get("error")) {
        (Err(e), Some(kind)) => {
            let got = match e.kind {
                PolicyErrorKind::NoRoute => "no-route",
                PolicyErrorKind::BadConfig => "bad-config",
                PolicyErrorKind::Internal => "internal",
            };
            if kind.as_str() != Some(got) {
                fails.push(format!("error {got} ({}), expected {kind}", e.message));
            }
            return fails;
        }
        (Err(e), None) => return vec![format!("unexpected error {:?}: {}", e.kind, e.message)],
        (Ok(p), Some(kind)) => {
            return vec![format!("expected error {kind}, got plan {:?}", ids(p))];
        }
        (Ok(p), None) => p,
    };
    let got = ids(plan);
    if let Some(want) = expect.get("plan") {
        let want = str_list(Some(want));
        if got != want {
            fails.push(format!("plan {got:?}, expected {want:?}"));
        }
    }
    if let Some(first) = expect.get("first").and_then(Value::as_str)
        && got.first() != Some(&first)
    {
        fails.push(format!("first {:?}, expected {first}", got.first()));
    }
    for n in str_list(expect.get("never")) {
        if got.contains(&n.as_str()) {
            fails.push(format!("{n} attempted"));
        }
    }
    for n in str_list(expect.get("includes")) {
        if !got.contains(&n.as_str()) {
            fails.push(format!("{n} not attempted"));
        }
    }
    let order = str_list(expect.get("order"));
    let positions: Vec<Option<usize>> = order
        .iter()
        .map(|o| got.iter().position(|g| g == o))
        .collect();
    if positions.iter().any(Option::is_none) || positions.windows(2).any(|w| w[0] > w[1]) {
        fails.push(format!("order {order:?} not respected by {got:?}"));
    }
    if let Some(n) = expect.get("attempts").and_then(Value::as_u64)
        && got.len() as u64 != n
    {
        fails.push(format!("{} attempts, expected {n}", got.len()));
    }
    let same_set = |a: &[String], b: &[String]| {
        let (mut a, mut b) = (a.to_vec(), b.to_vec());
        a.sort();
        b.sort();
        a == b
    };
    if let Some(want) = expect.get("strips") {
        let want = str_list(Some(want));
        let first = plan
            .attempts
            .first()
            .map(|a| a.strip.clone())
            .unwrap_or_default();
        if !same_set(&first, &want) {
            fails.push(format!("first strips {first:?}, expected {want:?}"));
        }
    }
    if let Some(want) = expect.get("strips_all") {
        let want = str_list(Some(want));
        for a in &plan.attempts {
            if !same_set(&a.strip, &want) {
                fails.push(format!(
                    "{} strips {:?}, expected {want:?}",
                    a.candidate, a.strip
                ));
            }
        }
    }
    if let Some(label) = expect.get("label").and_then(Value::as_str)
        && plan.label != label
    {
        fails.push(format!("label {}, expected {label}", plan.label));
    }
    check_plan_invariants(&request, &candidates, plan, &mut fails);
    fails
}

/// Properties every plan must have, whatever the inputs.
fn check_plan_invariants(r: &Request, cands: &[Candidate], plan: &Plan, fails: &mut Vec<String>) {
    if plan.attempts.is_empty() {
        fails.push("empty plan".into());
    }
    for (n, a) in plan.attempts.iter().enumerate() {
        if plan.attempts[..n]
            .iter()
            .any(|b| b.candidate == a.candidate)
        {
            fails.push(format!("{} attempted twice", a.candidate));
        }
        let Some(c) = cands.iter().find(|c| c.id == a.candidate) else {
            fails.push(format!("{} was not offered", a.candidate));
            continue;
        };
        for f in &r.features {
            let supported = c.features.contains(f);
            let stripped = a.strip.contains(f);
            if !supported && !stripped {
                fails.push(format!("{} lacks {f} and does not strip it", c.id));
            }
            if supported && stripped {
                fails.push(format!("{} strips {f} although it supports it", c.id));
            }
        }
        for s in &a.strip {
            if !r.features.contains(s) {
                fails.push(format!(
                    "{} strips {s}, which the request does not use",
                    c.id
                ));
            }
            if strip_step(s) == 0 {
                fails.push(format!("{} strips {s}, which is never stripped", c.id));
            }
        }
    }
}

#[test]
fn case_file() {
    let file: Value =
        serde_json::from_str(include_str!("../../cases/default.json")).expect("case file parses");
    let cases = file["cases"].as_array().expect("cases");
    assert!(cases.len() > 40);
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        for f in check_case(&file, case) {
            failures.push(format!("{name}: {f}"));
        }
    }
    assert!(
        failures.is_empty(),
        "case failures:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Metrics

#[test]
fn metric_names() {
    let live = |n: &str, hib: bool| {
        Some(Metric::Live {
            name: n.to_string(),
            higher_is_better: hib,
        })
    };
    assert_eq!(Metric::parse("performance"), Some(Metric::Performance));
    assert_eq!(Metric::parse(" Cost "), Some(Metric::Cost));
    assert_eq!(Metric::parse("uptime"), live("uptime", true));
    assert_eq!(Metric::parse("throughput"), live("throughput", true));
    assert_eq!(
        Metric::parse("total_requests"),
        live("total_requests", true)
    );
    assert_eq!(
        Metric::parse("total-requests"),
        live("total_requests", true)
    );
    for n in [
        "avg_latency",
        "min_latency",
        "max_latency",
        "avg_e2e_latency",
        "min_e2e_latency",
        "max_e2e_latency",
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "avg_ttft",
    ] {
        assert_eq!(Metric::parse(n), live(n, false), "{n}");
    }
    for n in [
        "p0_latency",
        "p50_latency",
        "p95_e2e_latency",
        "p99_ttft",
        "p100_latency",
        "p5_ttft",
    ] {
        assert_eq!(Metric::parse(n), live(n, false), "{n}");
    }
    assert_eq!(Metric::parse("P95_Latency"), live("p95_latency", false));
    assert_eq!(Metric::parse("p095_latency"), live("p95_latency", false));
    assert_eq!(Metric::parse("p00_latency"), live("p0_latency", false));
    for bad in [
        "",
        "fastest",
        "p101_latency",
        "p1000_latency",
        "p_latency",
        "p95",
        "p95_",
        "p9x_latency",
        "p95_latancy",
        "p-5_latency",
        "p+5_latency",
        "latency",
        "pp95_latency",
        "p95_latency_",
        "é",
    ] {
        assert_eq!(Metric::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn lookup_gets_canonical_name_clamped_window_once_per_candidate() {
    let calls = RefCell::new(Vec::new());
    let lookup = |id: &str, name: &str, window: u32| {
        calls
            .borrow_mut()
            .push((id.to_string(), name.to_string(), window));
        match id {
            "openai/gpt-5" => Some(100.0),
            "openai/gpt-5-mini" => Some(50.0),
            _ => None,
        }
    };
    let mut r = req("auto");
    r.routing.metric = Some("P95-Latency".into());
    r.routing.interval_seconds = 10; // below the minimum: clamped to 900
    r.routing.models = strs(&["auto", "gpt-5"]); // candidates reappear in fallbacks
    let plan = route(&r, &fleet(), &lookup).unwrap();
    assert_eq!(ids(&plan)[..2], ["openai/gpt-5-mini", "openai/gpt-5"]);
    let calls = calls.into_inner();
    assert_eq!(calls.len(), 7, "{calls:?}");
    assert!(
        calls
            .iter()
            .all(|(_, n, w)| n == "p95_latency" && *w == 900)
    );

    r.routing.interval_seconds = 10_000_000;
    let seen = RefCell::new(0u32);
    let plan = route(&r, &fleet(), &|_, _, w| {
        *seen.borrow_mut() = w;
        None
    })
    .unwrap();
    assert_eq!(plan.attempts.len(), 7);
    assert_eq!(*seen.borrow(), MAX_WINDOW_SECONDS);
}

#[test]
fn static_metrics_never_call_the_lookup() {
    for m in [None, Some("performance"), Some("cost")] {
        let mut r = req("auto");
        r.routing.metric = m.map(str::to_string);
        let plan = route(&r, &fleet(), &|_, _, _| panic!("lookup called for {m:?}")).unwrap();
        assert_eq!(plan.attempts.len(), 7);
    }
}

#[test]
fn precomputed_candidate_metrics_win_over_the_lookup() {
    let mut cands = fleet();
    for c in &mut cands {
        c.metrics.push(MetricValue {
            name: "uptime".into(),
            value: match c.id.as_str() {
                "ollama/llama3.1:8b" => Some(0.9999),
                "openai/gpt-5" => None, // present without data: no data, no lookup
                _ => Some(0.5),
            },
        });
    }
    let mut r = req("auto");
    r.routing.metric = Some("uptime".into());
    let plan = route(&r, &cands, &|id, _, _| panic!("lookup called for {id}")).unwrap();
    assert_eq!(ids(&plan).first(), Some(&"ollama/llama3.1:8b"));
    assert_eq!(ids(&plan).last(), Some(&"openai/gpt-5"));
}

#[test]
fn nan_is_no_data_and_ties_break_by_tier_cost_id() {
    let cands = vec![
        with(cand("b/m"), 2, 1.0, 1.0, &[]),
        with(cand("a/m"), 2, 1.0, 1.0, &[]),
        with(cand("c/m"), 1, 9.0, 9.0, &[]),
        with(cand("d/m"), 2, 0.5, 0.5, &[]),
        with(cand("e/m"), 3, 0.0, 0.0, &[]),
    ];
    let mut r = req("auto");
    r.routing.metric = Some("avg_latency".into());
    let lookup = |id: &str, _: &str, _: u32| match id {
        "e/m" => Some(10.0),
        "c/m" => Some(f64::NAN),
        _ => None,
    };
    let plan = route(&r, &cands, &lookup).unwrap();
    assert_eq!(ids(&plan), ["e/m", "c/m", "d/m", "a/m", "b/m"]);
}

#[test]
fn estimated_cost_formula() {
    let estimated_cost = |r: &Request, c: &Candidate| {
        let ask = Ask {
            model: &r.model,
            metric: None,
            interval_seconds: 900,
            fallbacks: &[],
            step_type: None,
            purpose: None,
            metadata: &[],
            estimated_input_tokens: r.estimated_input_tokens,
            max_output_tokens: r.max_output_tokens,
            prompt_cache_key: r.prompt_cache_key,
        };
        let p = &c.price;
        let price = super::Price {
            input: p.input,
            output: p.output,
            cached_input: p.cached_input,
        };
        super::estimated_cost(&ask, price, c.cache_affinity)
    };
    let mut c = with(cand("anthropic/claude-haiku-4-5"), 3, 1.0, 5.0, &[]);
    c.price.cached_input = 0.1;
    let mut r = req("auto");
    r.estimated_input_tokens = 10_000;
    assert!((estimated_cost(&r, &c) - (10_000.0 * 1.0 + 1000.0 * 5.0) / 1e6).abs() < 1e-12);
    r.max_output_tokens = Some(200);
    assert!((estimated_cost(&r, &c) - (10_000.0 + 1000.0) / 1e6).abs() < 1e-12);
    r.prompt_cache_key = true;
    assert!(
        (estimated_cost(&r, &c) - (10_000.0 + 1000.0) / 1e6).abs() < 1e-12,
        "no affinity: uncached price"
    );
    c.cache_affinity = true;
    assert!((estimated_cost(&r, &c) - (1000.0 + 1000.0) / 1e6).abs() < 1e-12);
}

// ---------------------------------------------------------------------------
// Targets, fallbacks, rules

#[test]
fn pinned_candidate_first_even_when_unhealthy_or_exhausted() {
    let mut cands = fleet();
    for c in &mut cands {
        if c.id == "bedrock/claude-sonnet-4-5" {
            c.health = Health::HalfOpen;
            c.headroom = Some(0.0);
        }
    }
    let r = req("bedrock/claude-sonnet-4-5");
    assert_eq!(
        plan_ids(&r, &cands),
        ["bedrock/claude-sonnet-4-5", "anthropic/claude-sonnet-4-5"]
    );
}

#[test]
fn targets_ignore_case_and_whitespace() {
    let r = req(" Claude-Sonnet-4-5 ");
    assert_eq!(
        plan_ids(&r, &fleet()),
        ["anthropic/claude-sonnet-4-5", "bedrock/claude-sonnet-4-5"]
    );
    let r = req("AUTO");
    assert_eq!(plan_ids(&r, &fleet()).len(), 7);
}

#[test]
fn exact_id_pin_with_a_model_named_differently() {
    // An id that is not `provider/model` of the catalog slug still pins.
    let mut local = with(cand("lab/llama"), 4, 0.0, 0.0, &[]);
    local.provider = "lab-gpu".into();
    local.model = "llama3.1:8b".into();
    let cands = vec![with(cand("ollama/llama3.1:8b"), 4, 0.0, 0.0, &[]), local];
    assert_eq!(
        plan_ids(&req("lab/llama"), &cands),
        ["lab/llama", "ollama/llama3.1:8b"]
    );
}

#[test]
fn duplicate_candidate_ids_are_attempted_once() {
    let cands = vec![cand("a/m"), cand("a/m"), cand("b/m")];
    assert_eq!(plan_ids(&req("m"), &cands), ["a/m", "b/m"]);
}

#[test]
fn rule_timeout_applies_to_every_attempt() {
    let mut r = req("auto");
    r.step_type = Some("extraction".into());
    r.purpose = Some("classification".into());
    r.config = json!({ "rules": [ { "name": "x", "priority": 1, "match": { "step_type": "extraction" },
                                     "models": ["claude-haiku-4-5"], "fallbacks": ["auto"], "timeout_ms": 20000 } ] })
        .to_string();
    let plan = run(&r, &fleet()).unwrap();
    assert_eq!(plan.label, "rule:x");
    assert_eq!(plan.attempts.len(), 7);
    assert!(plan.attempts.iter().all(|a| a.timeout_ms == Some(20_000)));

    let plan = run(&req("auto"), &fleet()).unwrap();
    assert_eq!(plan.label, "default");
    assert!(plan.attempts.iter().all(|a| a.timeout_ms.is_none()));
}

#[test]
fn rule_matching() {
    let config = json!({ "rules": [
        { "name": "meta", "priority": 5, "match": { "metadata": { "team": "search", "env": "prod" } } },
        { "name": "step", "priority": 5, "match": { "step_type": ["tool_call", "extraction"] } },
        { "name": "both", "priority": 7, "match": { "step_type": "inference", "purpose": "chat" } },
        { "name": "catch-all", "priority": -1 }
    ] })
    .to_string();
    let label = |step: Option<&str>, purpose: Option<&str>, meta: &[(&str, &str)]| {
        let mut r = req("auto");
        r.config = config.clone();
        r.step_type = step.map(str::to_string);
        r.purpose = purpose.map(str::to_string);
        r.metadata = meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        run(&r, &fleet()).unwrap().label
    };
    assert_eq!(label(None, None, &[]), "rule:catch-all");
    assert_eq!(
        label(Some("inference"), None, &[]),
        "rule:catch-all",
        "purpose required by `both`"
    );
    assert_eq!(label(Some("Inference"), Some("CHAT"), &[]), "rule:both");
    assert_eq!(label(Some("tool_call"), None, &[]), "rule:step");
    assert_eq!(
        label(None, None, &[("team", "search")]),
        "rule:catch-all",
        "all pairs required"
    );
    assert_eq!(
        label(
            None,
            None,
            &[("env", "prod"), ("x", "y"), ("Team", "Search")]
        ),
        "rule:meta"
    );
    assert_eq!(
        label(
            Some("extraction"),
            None,
            &[("team", "search"), ("env", "prod")]
        ),
        "rule:meta",
        "file order"
    );
}

#[test]
fn rule_models_are_used_only_for_auto() {
    let mut r = req("claude-haiku-4-5");
    r.purpose = Some("chat".into());
    r.config = json!({ "rules": [ { "name": "r", "match": { "purpose": "chat" }, "models": ["gpt-5"] } ] }).to_string();
    assert_eq!(plan_ids(&r, &fleet()), ["anthropic/claude-haiku-4-5"]);
    r.model = "auto".into();
    assert_eq!(plan_ids(&r, &fleet()), ["openai/gpt-5"]);
}

// ---------------------------------------------------------------------------
// Degradation

#[test]
fn strip_order() {
    let table = [
        ("prompt_cache_key", 1),
        ("prompt_cache_retention", 1),
        ("text.verbosity", 2),
        ("include", 3),
        ("include.reasoning.encrypted_content", 3),
        ("tools.custom_tools", 4),
        ("parallel_tool_calls", 5),
        ("temperature", 6),
        ("top_p", 6),
        ("reasoning.effort.high", 7),
        ("reasoning.effort.minimal", 7),
        ("reasoning.effort", 7),
        ("tools.web_search", 8),
        ("tool_choice.required", 9),
        ("tool_choice.auto", 9),
        ("text.format.json_schema", 10),
        ("text.format.json_object", 10),
        ("tools.function_calling", 11),
        ("stream", 12),
        ("vision", 0),
        ("includes", 0),
        ("reasoning.efforts", 0),
        ("tool_choices", 0),
        ("audio", 0),
        ("", 0),
    ];
    for (f, step) in table {
        assert_eq!(strip_step(f), step, "{f}");
    }
}

#[test]
fn every_attempt_strips_exactly_what_it_lacks_from_the_stripped_set() {
    let mut r = req("claude-sonnet-4-5");
    r.features = strs(&["prompt_cache_key", "text.verbosity", "stream"]);
    let plan = run(&r, &fleet()).unwrap();
    assert_eq!(
        ids(&plan),
        ["anthropic/claude-sonnet-4-5", "bedrock/claude-sonnet-4-5"]
    );
    assert_eq!(plan.attempts[0].strip, ["text.verbosity"]);
    assert_eq!(
        plan.attempts[1].strip,
        ["prompt_cache_key", "text.verbosity"]
    );
}

#[test]
fn streaming_is_stripped_last() {
    let all = [
        "prompt_cache_key",
        "text.verbosity",
        "include",
        "tools.custom_tools",
        "parallel_tool_calls",
        "temperature",
        "top_p",
        "reasoning.effort.high",
        "tools.web_search",
        "tool_choice.required",
        "text.format.json_schema",
        "text.format.json_object",
        "tools.function_calling",
        "stream",
    ];
    let bare = cand("batch/tiny");
    let mut r = req("tiny");
    r.features = strs(&all);
    let plan = run(&r, &[bare]).unwrap();
    assert_eq!(plan.attempts[0].strip, strs(&all));

    // One supports only streaming, the other only function calling: streaming wins
    // because function calling is stripped before it.
    let cands = vec![
        with(cand("a/tiny"), 2, 0.0, 0.0, &["stream"]),
        with(cand("b/tiny"), 2, 0.0, 0.0, &["tools.function_calling"]),
    ];
    let mut r = req("tiny");
    r.features = strs(&["stream", "tools.function_calling"]);
    let plan = run(&r, &cands).unwrap();
    assert_eq!(ids(&plan), ["a/tiny"]);
    assert_eq!(plan.attempts[0].strip, ["tools.function_calling"]);
}

#[test]
fn degradation_is_per_group() {
    // Primary group needs a strip; the fallback group does not, and keeps everything.
    let mut r = req("gpt-5");
    r.features = strs(&["temperature", "stream"]);
    r.routing.models = strs(&["claude-haiku-4-5"]);
    let plan = run(&r, &fleet()).unwrap();
    assert_eq!(ids(&plan), ["openai/gpt-5", "anthropic/claude-haiku-4-5"]);
    assert_eq!(plan.attempts[0].strip, ["temperature"]);
    assert!(plan.attempts[1].strip.is_empty());
}

#[test]
fn auto_fallback_after_auto_adds_the_degraded_rest() {
    // The first `auto` keeps only full-feature candidates; a later `auto` group
    // (already-planned candidates left out) degrades for the remaining ones.
    let mut r = req("auto");
    r.features = strs(&["temperature"]);
    r.routing.models = strs(&["auto"]);
    let plan = run(&r, &fleet()).unwrap();
    let got = ids(&plan);
    assert_eq!(got.len(), 7);
    assert_eq!(&got[5..], ["openai/gpt-5", "openai/gpt-5-mini"]);
    assert_eq!(plan.attempts[5].strip, ["temperature"]);
}

#[test]
fn duplicate_request_features_are_stripped_once() {
    let mut r = req("gpt-5");
    r.features = strs(&["temperature", "temperature", "stream"]);
    let plan = run(&r, &fleet()).unwrap();
    assert_eq!(plan.attempts[0].strip, ["temperature"]);
}

#[test]
fn too_many_features_is_an_internal_error_not_a_panic() {
    let mut r = req("auto");
    r.features = (0..200).map(|i| format!("x.{i}")).collect();
    assert_eq!(err(&r, &fleet()).kind, PolicyErrorKind::Internal);
    r.features.truncate(MAX_FEATURES);
    assert_eq!(err(&r, &fleet()).kind, PolicyErrorKind::NoRoute);
}

// ---------------------------------------------------------------------------
// Errors

#[test]
fn no_route_messages_name_model_and_features() {
    let mut r = req("llama3.1:8b");
    r.features = strs(&["vision", "stream", "temperature"]);
    r.routing.models = strs(&["no-such-model"]);
    let e = err(&r, &fleet());
    assert_eq!(e.kind, PolicyErrorKind::NoRoute);
    assert!(
        e.message.contains("`llama3.1:8b`") && e.message.contains("`vision`"),
        "{}",
        e.message
    );
    assert!(e.message.contains("`no-such-model`"), "{}", e.message);

    let e = err(&req("gpt-9"), &fleet());
    assert!(
        e.message.contains("`gpt-9`") && e.message.contains("serves"),
        "{}",
        e.message
    );

    let e = err(&req("auto"), &[]);
    assert_eq!(e.kind, PolicyErrorKind::NoRoute);
    assert!(e.message.contains("no candidates"), "{}", e.message);
}

#[test]
fn default_configs() {
    for text in ["", "  ", "{}", " { } ", "null"] {
        let c = Config::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(c.max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert!(c.rules.is_empty() && c.fallbacks.is_empty() && c.metric.is_none());
    }
    // Unknown top-level keys are ignored.
    assert!(Config::parse(r#"{"circuit_breaker": {"failures": 5}}"#).is_ok());
}

#[test]
fn bad_configs_name_the_problem() {
    let cases: &[(&str, &str)] = &[
        ("{", "not valid JSON"),
        ("[1]", "must be a JSON object"),
        ("42", "must be a JSON object"),
        (r#"{"metric": "fastest"}"#, "`fastest`"),
        (r#"{"metric": 3}"#, "config.metric"),
        (r#"{"fallbacks": "gpt-5"}"#, "config.fallbacks"),
        (r#"{"fallbacks": [1]}"#, "config.fallbacks[0]"),
        (r#"{"fallbacks": [" "]}"#, "config.fallbacks[0]"),
        (r#"{"max_attempts": 0}"#, "config.max_attempts"),
        (r#"{"max_attempts": -1}"#, "config.max_attempts"),
        (r#"{"max_attempts": 2.5}"#, "config.max_attempts"),
        (r#"{"max_attempts": 99999999999}"#, "config.max_attempts"),
        (r#"{"rules": {}}"#, "config.rules"),
        (r#"{"rules": [1]}"#, "config.rules[0]"),
        (r#"{"rules": [{}]}"#, "`name`"),
        (r#"{"rules": [{"name": ""}]}"#, "name is empty"),
        (r#"{"rules": [{"name": 7}]}"#, "name must be a string"),
        (
            r#"{"rules": [{"name": "r", "priority": "high"}]}"#,
            "(`r`).priority",
        ),
        (r#"{"rules": [{"name": "r", "priority": 1.5}]}"#, "priority"),
        (
            r#"{"rules": [{"name": "r", "models": "gpt-5"}]}"#,
            "(`r`).models",
        ),
        (
            r#"{"rules": [{"name": "r", "fallbacks": [null]}]}"#,
            "(`r`).fallbacks[0]",
        ),
        (
            r#"{"rules": [{"name": "r", "metric": "p95_latancy"}]}"#,
            "`p95_latancy`",
        ),
        (
            r#"{"rules": [{"name": "r", "timeout_ms": 0}]}"#,
            "timeout_ms",
        ),
        (
            r#"{"rules": [{"name": "r", "timeout_ms": "20s"}]}"#,
            "timeout_ms",
        ),
        (
            r#"{"rules": [{"name": "r", "model": ["gpt-5"]}]}"#,
            "unknown key `model`",
        ),
        (r#"{"rules": [{"name": "r", "match": []}]}"#, "(`r`).match"),
        (
            r#"{"rules": [{"name": "r", "match": {"step-type": "x"}}]}"#,
            "unknown key `step-type`",
        ),
        (
            r#"{"rules": [{"name": "r", "match": {"step_type": []}}]}"#,
            "must not be an empty list",
        ),
        (
            r#"{"rules": [{"name": "r", "match": {"step_type": 3}}]}"#,
            "match.step_type",
        ),
        (
            r#"{"rules": [{"name": "r", "match": {"purpose": ["a", 1]}}]}"#,
            "match.purpose[1]",
        ),
        (
            r#"{"rules": [{"name": "r", "match": {"metadata": ["a"]}}]}"#,
            "match.metadata",
        ),
        (
            r#"{"rules": [{"name": "r", "match": {"metadata": {"k": 1}}}]}"#,
            "match.metadata.k",
        ),
    ];
    for (text, needle) in cases {
        let mut r = req("auto");
        r.config = text.to_string();
        let e = err(&r, &fleet());
        assert_eq!(e.kind, PolicyErrorKind::BadConfig, "{text}");
        assert!(
            e.message.contains(needle),
            "{text}: {:?} lacks {needle:?}",
            e.message
        );
    }
    let mut r = req("auto");
    r.routing.metric = Some("p101_latency".into());
    let e = err(&r, &fleet());
    assert_eq!(e.kind, PolicyErrorKind::BadConfig);
    assert!(
        e.message.contains("routing.metric") && e.message.contains("`p101_latency`"),
        "{}",
        e.message
    );
    r.routing.metric = Some("  ".into());
    assert!(run(&r, &fleet()).is_ok(), "a blank metric means none");
}

#[test]
fn describe_names_the_policy() {
    let info = describe();
    assert_eq!(info.name, "switchyard-default");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert!(info.metrics.is_empty());
}

// ---------------------------------------------------------------------------
// Robustness: random inputs never panic and always give valid plans

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, list: &'a [&'a str]) -> &'a str {
        list[self.below(list.len())]
    }
}

#[test]
fn random_inputs_give_valid_plans_or_typed_errors() {
    const FEATURES: &[&str] = &[
        "stream",
        "tools.function_calling",
        "tools.web_search",
        "tool_choice.required",
        "tool_choice.auto",
        "text.format.json_schema",
        "text.format.json_object",
        "reasoning.effort.high",
        "reasoning.effort.low",
        "temperature",
        "top_p",
        "vision",
        "parallel_tool_calls",
        "prompt_cache_key",
        "prompt_cache_retention",
        "text.verbosity",
        "include",
        "include.logprobs",
        "tools.custom_tools",
        "audio",
    ];
    const PROVIDERS: &[&str] = &[
        "anthropic",
        "openai",
        "bedrock",
        "ollama",
        "vertex",
        "azure",
    ];
    const MODELS: &[&str] = &[
        "claude-haiku-4-5",
        "claude-sonnet-4-5",
        "gpt-5",
        "gpt-5-mini",
        "llama3.1:8b",
        "m/x",
    ];
    const METRICS: &[&str] = &[
        "performance",
        "cost",
        "uptime",
        "p95_latency",
        "p50_ttft",
        "total_tokens",
        "throughput",
        "bogus",
        "p200_latency",
        "",
    ];
    const CONFIGS: &[&str] = &[
        "{}",
        "",
        "{\"max_attempts\": 2}",
        "{\"fallbacks\": [\"auto\"], \"metric\": \"cost\"}",
        "{\"rules\": [{\"name\": \"r\", \"match\": {\"purpose\": \"chat\"}, \"models\": [\"gpt-5\", \"auto\"], \"fallbacks\": [\"claude-haiku-4-5\"], \"timeout_ms\": 5}]}",
        "{\"rules\": [{\"name\": \"r\", \"models\": [\"openai/gpt-5\"]}], \"max_attempts\": 1}",
        "{",
        "[]",
        "{\"rules\": [{}]}",
    ];
    let mut rng = Lcg(0x5eed);
    for round in 0..3000 {
        let n = rng.below(12);
        let mut cands = Vec::with_capacity(n);
        for _ in 0..n {
            let provider = rng.pick(PROVIDERS);
            let model = rng.pick(MODELS);
            let id = format!("{provider}/{model}");
            if cands.iter().any(|c: &Candidate| c.id == id) {
                continue; // the host offers unique ids
            }
            let mut c = cand(&id);
            c.tier = rng.below(5) as u8;
            c.price = Price {
                input: rng.below(20) as f64,
                output: rng.below(80) as f64,
                cached_input: rng.below(3) as f64,
            };
            c.features = (0..rng.below(FEATURES.len()))
                .map(|_| rng.pick(FEATURES).to_string())
                .collect();
            c.health = [Health::Healthy, Health::Degraded, Health::HalfOpen][rng.below(3)];
            c.headroom = [None, Some(0.0), Some(0.5), Some(f32::NAN)][rng.below(4)];
            c.cache_affinity = rng.below(2) == 0;
            if rng.below(4) == 0 {
                c.logical_model = Some("primary-llm".into());
            }
            cands.push(c);
        }
        let mut r = req(if rng.below(3) == 0 {
            "auto"
        } else {
            rng.pick(MODELS)
        });
        if rng.below(4) == 0 {
            r.model = format!("{}/{}", rng.pick(PROVIDERS), rng.pick(MODELS));
        }
        r.routing.metric = if rng.below(2) == 0 {
            None
        } else {
            Some(rng.pick(METRICS).to_string())
        };
        r.routing.interval_seconds = [0, 900, 3600, u32::MAX][rng.below(4)];
        r.routing.models = (0..rng.below(4))
            .map(|_| {
                rng.pick(&[
                    "auto",
                    "gpt-5",
                    "anthropic/claude-haiku-4-5",
                    "nope",
                    "primary-llm",
                ])
                .to_string()
            })
            .collect();
        r.features = (0..rng.below(6))
            .map(|_| rng.pick(FEATURES).to_string())
            .collect();
        r.purpose = if rng.below(2) == 0 {
            Some("chat".into())
        } else {
            None
        };
        r.prompt_cache_key = rng.below(2) == 0;
        r.estimated_input_tokens = [0, 1000, u32::MAX][rng.below(3)];
        r.max_output_tokens = [None, Some(0), Some(u32::MAX)][rng.below(3)];
        r.config = rng.pick(CONFIGS).to_string();
        let lookup = |id: &str, _: &str, _: u32| -> Option<f64> {
            match id.len() % 4 {
                0 => None,
                1 => Some(f64::NAN),
                2 => Some(id.len() as f64),
                _ => Some(f64::INFINITY),
            }
        };
        match route(&r, &cands, &lookup) {
            Ok(plan) => {
                let max = Config::parse(&r.config)
                    .map(|c| c.max_attempts)
                    .unwrap_or(16) as usize;
                assert!(plan.attempts.len() <= max, "round {round}");
                let mut fails = Vec::new();
                check_plan_invariants(&r, &cands, &plan, &mut fails);
                assert!(fails.is_empty(), "round {round}: {fails:?}");
            }
            Err(e) => assert!(!e.message.is_empty(), "round {round}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Speed (run with `cargo test --release -- --ignored --nocapture bench`)

#[test]
#[ignore]
fn bench_twenty_candidates() {
    let providers = ["anthropic", "openai", "bedrock", "vertex", "azure"];
    let models = [
        "claude-haiku-4-5",
        "claude-sonnet-4-5",
        "gpt-5",
        "gpt-5-mini",
    ];
    let mut cands = Vec::new();
    for (i, p) in providers.iter().enumerate() {
        for (j, m) in models.iter().enumerate() {
            cands.push(with(
                cand(&format!("{p}/{m}")),
                (1 + (i + j) % 4) as u8,
                1.0 + j as f64,
                5.0 + i as f64,
                ANTHROPIC,
            ));
        }
    }
    let metrics: BTreeMap<String, f64> = cands
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.clone(), 100.0 + i as f64))
        .collect();
    let lookup = |id: &str, _: &str, _: u32| metrics.get(id).copied();
    let config = json!({ "fallbacks": ["gpt-5-mini"], "rules": [
        { "name": "cheap", "priority": 100, "match": { "step_type": ["extraction"], "purpose": ["classification"] },
          "models": ["claude-haiku-4-5"], "metric": "cost" },
        { "name": "chat", "priority": 10, "match": { "purpose": "chat" }, "metric": "p95_latency", "timeout_ms": 20000 } ] })
    .to_string();
    for (label, metric, model, cfg) in [
        ("auto/performance/{}", None, "auto", "{}".to_string()),
        (
            "auto/p95 lookup/{}",
            Some("p95_latency"),
            "auto",
            "{}".to_string(),
        ),
        (
            "slug/cost/rules",
            Some("cost"),
            "claude-sonnet-4-5",
            config.clone(),
        ),
        ("auto/rule p95/rules", None, "auto", config.clone()),
    ] {
        let mut r = req(model);
        r.routing.metric = metric.map(str::to_string);
        r.features = strs(&["stream", "tools.function_calling", "temperature"]);
        r.purpose = Some("chat".into());
        r.config = cfg;
        let n = 20_000;
        let start = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(route(std::hint::black_box(&r), &cands, &lookup).unwrap());
        }
        println!(
            "{label}: {:.2} µs per decision",
            start.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    }
}

#[test]
fn config_cache_is_keyed_by_exact_text() {
    let a = r#"{"max_attempts": 2}"#;
    let b = r#"{"max_attempts": 3}"#;
    let first = cached_config(a).unwrap();
    assert!(Rc::ptr_eq(&first, &cached_config(a).unwrap()));
    assert_eq!(cached_config(b).unwrap().max_attempts, 3);
    assert!(cached_config("{").is_err());
    assert!(
        cached_config("{").is_err(),
        "errors are not cached as successes"
    );
    assert_eq!(cached_config(a).unwrap().max_attempts, 2);
    let mut r = req("auto");
    for (text, n) in [(a, 2), (b, 3), (a, 2)] {
        r.config = text.to_string();
        assert_eq!(run(&r, &fleet()).unwrap().attempts.len(), n);
    }
}

#[test]
fn joined_ids_compare_like_the_joined_strings() {
    let parts = ["", "a", "a-2", "a.b", "a2", "ab", "a/b", "b", "A", "z~"];
    for p1 in parts {
        for m1 in parts {
            for p2 in parts {
                for m2 in parts {
                    let want = format!("{p1}/{m1}").cmp(&format!("{p2}/{m2}"));
                    assert_eq!(joined_cmp(p1, m1, p2, m2), want, "{p1}/{m1} vs {p2}/{m2}");
                    assert_eq!(
                        joined_id_is(p1, m1, &format!("{p2}/{m2}")),
                        format!("{p1}/{m1}").eq_ignore_ascii_case(&format!("{p2}/{m2}")),
                        "{p1}/{m1} is {p2}/{m2}"
                    );
                }
            }
        }
    }
}
