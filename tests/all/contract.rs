//! The policy contract's versions: 0.2 beside 0.1. The bundled policy gives
//! the same plans in both builds; what only 0.2 has (configure, explanations,
//! retries, content signals) behaves as the WIT says; content reaches only a
//! policy that asked for it, on a team whose operator allows it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard::config::hash_key;
use switchyard::harness::{parse_case_file, run_cases};
use switchyard::metrics::MetricSource;
use switchyard::policy::{
    Candidate, Contract, Health, InvalidPlan, Limits, Policy, PolicyError, Price, RefusalKind,
    Request, Routing, Runtime, WarmPool,
};
use switchyard_tests::guest;
use switchyard_tests::mock::{Behavior, Flavor, MockProvider};
use switchyard_tests::{start_gateway, temp_store};

fn runtime() -> Runtime {
    Runtime::new(Limits::default()).expect("runtime")
}

/// The bundled policy as the gateway serves it (0.2) and its 0.1 build.
fn both_builds(runtime: &Runtime) -> (Policy, Policy) {
    let new = runtime.load_default().expect("default policy loads");
    let old = runtime
        .load(&guest("default_policy_v0_1"))
        .expect("0.1 build loads");
    assert_eq!(new.contract(), Contract::V0_2);
    assert_eq!(old.contract(), Contract::V0_1);
    (new, old)
}

#[test]
fn both_builds_of_the_default_policy_pass_its_case_file_with_the_same_plans() {
    let runtime = runtime();
    let (new, old) = both_builds(&runtime);
    let text = std::fs::read_to_string(switchyard_tests::repo_path(
        "plugins/default-policy/cases/default.json",
    ))
    .expect("case file");
    let file = parse_case_file(&text).expect("case file parses");
    let (new_reports, old_reports) = (run_cases(&new, &file), run_cases(&old, &file));
    assert!(new_reports.len() > 50);
    for (n, o) in new_reports.iter().zip(&old_reports) {
        assert!(n.passed(), "0.2: {}: {:?}", n.name, n.failures);
        assert!(o.passed(), "0.1: {}: {:?}", o.name, o.failures);
        let (n, o) = (
            n.decision.as_ref().expect("decided"),
            o.decision.as_ref().expect("decided"),
        );
        match (&n.result, &o.result) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (
                Err(PolicyError::Refused { kind: a, .. }),
                Err(PolicyError::Refused { kind: b, .. }),
            ) => assert_eq!(a, b),
            (a, b) => panic!("0.2 gave {a:?}, 0.1 gave {b:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// The same plans on random inputs

/// Features in the gateway's table order, as its requests carry them.
const FEATURES: [&str; 12] = [
    "stream",
    "tools.function_calling",
    "tools.web_search",
    "tool_choice.required",
    "text.format.json_schema",
    "reasoning.effort.high",
    "temperature",
    "top_p",
    "vision",
    "parallel_tool_calls",
    "prompt_cache_key",
    "text.verbosity",
];
const ACCOUNTS: [&str; 5] = ["anthropic", "openai", "bedrock", "azure-eu", "local"];
const MODELS: [&str; 5] = [
    "claude-haiku-4-5",
    "claude-sonnet-4-5",
    "gpt-5",
    "gpt-5-mini",
    "llama3.1:8b",
];
const METRICS: [Option<&str>; 9] = [
    None,
    Some("cost"),
    Some("performance"),
    Some("p95_latency"),
    Some("uptime"),
    Some("avg_ttft"),
    Some("P50-Latency"),
    Some("total_requests"),
    Some("p99_e2e_latency"),
];
const CONFIGS: [&str; 5] = [
    "{}",
    r#"{"metric": "cost", "max_attempts": 3}"#,
    r#"{"fallbacks": ["gpt-5-mini", "auto"]}"#,
    r#"{"rules": [{"name": "x", "match": {"purpose": "extraction"}, "models": ["claude-haiku-4-5"], "metric": "p95_latency", "timeout_ms": 900}]}"#,
    r#"{"rules": [{"name": "eu", "match": {"metadata": {"region": "eu"}}, "models": ["azure-eu/gpt-5"], "fallbacks": []}]}"#,
];

/// Deterministic metric values with gaps, by candidate and metric name.
struct Values;

impl MetricSource for Values {
    fn metric(&self, candidate: &str, name: &str, _window: u32) -> Option<f64> {
        let h = candidate
            .bytes()
            .chain(name.bytes())
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        (h % 5 != 0).then_some((h % 1000) as f64)
    }
}

fn pick<'a, T>(rng: &mut fastrand::Rng, list: &'a [T]) -> &'a T {
    &list[rng.usize(..list.len())]
}

fn subset(rng: &mut fastrand::Rng, p: f64) -> Vec<String> {
    FEATURES
        .iter()
        .filter(|_| rng.f64() < p)
        .map(|f| f.to_string())
        .collect()
}

fn random_case(rng: &mut fastrand::Rng) -> (Request, Vec<Candidate>) {
    let mut candidates: Vec<Candidate> = Vec::new();
    for _ in 0..rng.usize(0..12) {
        let provider = *pick(rng, &ACCOUNTS);
        let model = *pick(rng, &MODELS);
        let id = format!("{provider}/{model}");
        if candidates.iter().any(|c| c.id == id) {
            continue;
        }
        // One price, tier and window per model, as the catalog has them;
        // features vary with what each account serves.
        let m = MODELS.iter().position(|x| *x == model).unwrap_or(0);
        candidates.push(Candidate {
            id,
            provider: provider.into(),
            model: model.into(),
            logical_model: (rng.u8(..4) == 0).then(|| "fast".to_string()),
            price: Price {
                input: 0.5 * m as f64,
                output: 2.0 + m as f64,
                cached_input: 0.05 * m as f64,
            },
            features: subset(rng, 0.7),
            zdr: rng.bool(),
            tier: (m % 3) as u8 + 1,
            health: *pick(rng, &[Health::Healthy, Health::Degraded, Health::HalfOpen]),
            headroom: match rng.u8(..3) {
                0 => None,
                1 => Some(0.0),
                _ => Some(rng.f32()),
            },
            cache_affinity: rng.bool(),
            context_window: 200_000,
            metrics: Vec::new(),
        });
    }
    let model = match rng.u8(..4) {
        0 => "auto".to_string(),
        1 => "fast".to_string(),
        2 => format!("{}/{}", pick(rng, &ACCOUNTS), pick(rng, &MODELS)),
        _ => pick(rng, &MODELS).to_string(),
    };
    let request = Request {
        model,
        routing: Routing {
            metric: pick(rng, &METRICS).map(str::to_string),
            interval_seconds: *pick(rng, &[0, 900, 3600]),
            models: (0..rng.usize(0..3))
                .map(|_| pick(rng, &MODELS).to_string())
                .collect(),
            providers: Vec::new(),
        },
        features: subset(rng, 0.25),
        step_type: None,
        purpose: (rng.bool()).then(|| "extraction".to_string()),
        team: "team".into(),
        estimated_input_tokens: rng.u32(..50_000),
        max_output_tokens: rng.bool().then(|| rng.u32(1..4000)),
        prompt_cache_key: rng.bool(),
        metadata: if rng.bool() {
            vec![("region".into(), "eu".into())]
        } else {
            Vec::new()
        },
        config: pick(rng, &CONFIGS).to_string(),
    };
    (request, candidates)
}

#[test]
fn both_builds_of_the_default_policy_give_the_same_plans_on_random_inputs() {
    let runtime = runtime();
    let (new, old) = both_builds(&runtime);
    let (new_pool, old_pool) = (WarmPool::new(new, 1), WarmPool::new(old, 1));
    let mut rng = fastrand::Rng::with_seed(19);
    let mut plans = 0;
    for i in 0..1500 {
        let (request, candidates) = random_case(&mut rng);
        let a = new_pool.decide_traced(&request, &candidates, Arc::new(Values));
        let b = old_pool.decide_traced(&request, &candidates, Arc::new(Values));
        match (&a.result, &b.result) {
            (Ok(x), Ok(y)) => {
                assert_eq!(x, y, "case {i}: {request:?}");
                plans += 1;
            }
            (x, y) => assert_eq!(x, y, "case {i}: {request:?}"),
        }
    }
    assert!(plans > 700, "only {plans} cases gave plans");
}

// ---------------------------------------------------------------------------
// What only 0.2 has

fn offer() -> Vec<Candidate> {
    ["anthropic/claude-haiku-4-5", "openai/gpt-5-mini"]
        .iter()
        .map(|id| {
            let (provider, model) = id.split_once('/').expect("id");
            Candidate {
                id: id.to_string(),
                provider: provider.into(),
                model: model.into(),
                logical_model: None,
                price: Price {
                    input: 1.0,
                    output: 5.0,
                    cached_input: 0.1,
                },
                features: vec!["stream".into()],
                zdr: false,
                tier: 2,
                health: Health::Healthy,
                headroom: None,
                cache_affinity: false,
                context_window: 200_000,
                metrics: Vec::new(),
            }
        })
        .collect()
}

fn ask(mode: &str) -> Request {
    Request {
        model: "auto".into(),
        routing: Routing {
            metric: None,
            interval_seconds: 900,
            models: Vec::new(),
            providers: Vec::new(),
        },
        features: vec!["stream".into()],
        step_type: None,
        purpose: None,
        team: "team-a".into(),
        estimated_input_tokens: 100,
        max_output_tokens: None,
        prompt_cache_key: false,
        metadata: Vec::new(),
        config: format!(r#"{{"mode": "{mode}"}}"#),
    }
}

#[test]
fn configure_runs_once_per_instance_and_again_when_the_config_changes() {
    let runtime = runtime();
    let hostile = runtime.load(&guest("hostile_v0_2")).expect("loads");
    let pool = WarmPool::new(hostile, 1);
    let label = |request: &Request| {
        pool.decide_traced(request, &offer(), Arc::new(Values))
            .result
            .expect("routes")
            .label
    };
    // team : accounts : models : configures so far on this instance.
    assert_eq!(label(&ask("setup")), "setup:team-a:2:2:1");
    assert_eq!(label(&ask("setup")), "setup:team-a:2:2:1");
    let mut other = ask("setup");
    other.config = r#"{"mode": "setup", "weights": [1, 2]}"#.into();
    assert_eq!(label(&other), "setup:team-a:2:2:2");
    other.team = "team-b".into();
    assert_eq!(label(&other), "setup:team-b:2:2:3");
}

#[test]
fn configure_is_held_to_the_sandbox_like_route() {
    let runtime = runtime();
    let hostile = runtime.load(&guest("hostile_v0_2")).expect("loads");
    let decide = |mode: &str| hostile.decide(&ask(mode), &offer(), Arc::new(Values));
    assert_eq!(
        decide("configure-loop"),
        Err(PolicyError::DeadlineExceeded(Duration::from_millis(100)))
    );
    let err = decide("configure-trap").expect_err("trap");
    assert!(matches!(err, PolicyError::Trap(_)), "{err:?}");
    // A config the policy refuses is its answer to every request: not a fault.
    let err = decide("bad-config").expect_err("bad config");
    assert!(
        matches!(
            &err,
            PolicyError::Refused {
                kind: RefusalKind::BadConfig,
                message
            } if message.contains("refused on purpose")
        ),
        "{err:?}"
    );
    assert!(!err.is_fault());
    // The instance that refused stays usable: a good config is taken.
    let pool = WarmPool::new(hostile.clone(), 1);
    let bad = pool.decide_traced(&ask("bad-config"), &offer(), Arc::new(Values));
    assert!(bad.result.is_err());
    let good = pool.decide_traced(&ask("ok"), &offer(), Arc::new(Values));
    assert_eq!(good.result.expect("routes").label, "ok");
}

#[test]
fn plans_carry_a_score_an_explanation_and_retries_within_bounds() {
    let runtime = runtime();
    let hostile = runtime.load(&guest("hostile_v0_2")).expect("loads");
    let decision = hostile.decide_traced(&ask("explain"), &offer(), Arc::new(Values));
    assert_eq!(decision.result.expect("routes").label, "explained");
    assert_eq!(decision.notes.score, Some(0.75));
    assert_eq!(decision.notes.explanation, ["first line", "second line"]);
    for mode in ["huge-explanation", "long-explanation", "too-many-retries"] {
        let err = hostile
            .decide(&ask(mode), &offer(), Arc::new(Values))
            .expect_err(mode);
        assert!(
            matches!(err, PolicyError::InvalidPlan(InvalidPlan::TooLarge(_))),
            "{mode}: {err:?}"
        );
    }
    // The bundled policy says which metric ordered its groups.
    let default = runtime.load_default().expect("default");
    let mut request = ask("ok");
    request.config = "{}".into();
    request.routing.metric = Some("cost".into());
    let decision = default.decide_traced(&request, &offer(), Arc::new(Values));
    assert!(decision.result.is_ok());
    assert_eq!(decision.notes.explanation, ["each group sorted by cost"]);
}

// ---------------------------------------------------------------------------
// Content signals, end to end

const KEYS: [(&str, &str); 4] = [
    ("probe-off", "sk-probe-off"),
    ("probe-on", "sk-probe-on"),
    ("blind-on", "sk-blind-on"),
    ("probe-cut", "sk-probe-cut"),
];
const ADMIN: &str = "admin-token-for-contract-tests";

async fn gateway(provider: &MockProvider, store: &Path, plugins: &str) -> switchyard::api::Server {
    let teams: String = KEYS
        .iter()
        .map(|(team, key)| {
            let setting = match *team {
                "probe-on" | "blind-on" => "content_signals = true\n",
                "probe-cut" => "content_signals = true\n",
                _ => "",
            };
            format!(
                "[teams.{team}]\nkey_sha256 = [\"{}\"]\n{setting}",
                hash_key(key)
            )
        })
        .collect();
    let text = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [providers.alpha]
        kind = "openai-compatible"
        base_url = "{url}"
        api_key_env = "UPSTREAM_KEY"
        models = ["gpt-4o-mini"]
        [store]
        path = "{store}"
        [plugins]
        {plugins}
        {teams}
        "#,
        url = provider.base_url(),
        store = store.display(),
    );
    start_gateway(
        "contract.toml",
        &text,
        &[("SWITCHYARD_ADMIN_TOKEN", ADMIN), ("UPSTREAM_KEY", "sk-up")],
    )
    .await
}

async fn push(http: &reqwest::Client, base: &str, team: &str, guest_name: &str, mode: &str) {
    let response = http
        .post(format!(
            "{base}/admin/v1/teams/{team}/policies?activate=true"
        ))
        .bearer_auth(ADMIN)
        .header("content-type", "application/wasm")
        .body(guest(guest_name))
        .send()
        .await
        .expect("upload");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["wit_version"], "0.2.0", "{body}");
    let response = http
        .put(format!("{base}/admin/v1/teams/{team}/policy-config"))
        .bearer_auth(ADMIN)
        .json(&json!({ "mode": mode }))
        .send()
        .await
        .expect("config");
    assert_eq!(response.status().as_u16(), 200);
}

async fn answer(http: &reqwest::Client, base: &str, key: &str) -> Value {
    let response = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({
            "model": "gpt-4o-mini",
            "messages": [
                { "role": "system", "content": "You are terse." },
                { "role": "user", "content": "What is 2+2? Answer briefly please." }
            ],
        }))
        .send()
        .await
        .expect("chat");
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_reaches_only_a_policy_that_asked_on_a_team_that_allows_it() {
    let provider = MockProvider::start(Flavor::OpenAi).await;
    provider.set_default(Behavior::Text("4".into()));
    let server = gateway(&provider, &temp_store(), "content_text_bytes = 8").await;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    push(&http, &base, "probe-off", "content_probe", "content").await;
    push(&http, &base, "probe-on", "content_probe", "content").await;
    push(&http, &base, "blind-on", "hostile_v0_2", "content").await;
    push(&http, &base, "probe-cut", "content_probe", "explain").await;
    // Uploaded policies get no content unless the operator allows it for the
    // team (`[plugins] content_uploaded` is off by default).
    let off = answer(&http, &base, "sk-probe-off").await;
    assert_eq!(off["switchyard"]["label"], "content:none", "{off}");
    // Allowed, and asked for: the conversation's shape and the last user
    // turn, cut to `content_text_bytes`.
    let on = answer(&http, &base, "sk-probe-on").await;
    let text = "What is 2+2? Answer briefly please.";
    let characters = "You are terse.".len() + text.len();
    assert_eq!(
        on["switchyard"]["label"],
        format!("content:1:{characters}:What is "),
        "{on}"
    );
    // Allowed, but never asked for: nothing.
    let blind = answer(&http, &base, "sk-blind-on").await;
    assert_eq!(blind["switchyard"]["label"], "content:none", "{blind}");
    // A 0.2 plan's score and explanation are shown with the answer.
    let explained = answer(&http, &base, "sk-probe-cut").await;
    assert_eq!(explained["switchyard"]["score"], 0.75, "{explained}");
    assert_eq!(
        explained["switchyard"]["explanation"],
        json!(["first line", "second line"])
    );
    server.shutdown().await.expect("shutdown");
}

/// Teams taking turns on one pool (the bundled policy's is shared) each
/// keep an instance configured for them while the pool has room; a full
/// pool reconfigures its least recently used instance.
#[test]
fn teams_taking_turns_keep_their_own_configured_instances() {
    use switchyard::policy::v0_2::{Context, Setup, Tables};
    let runtime = runtime();
    let hostile = runtime.load(&guest("hostile_v0_2")).expect("loads");
    let tables = Arc::new(Tables::from_candidates(&offer()));
    let context = |team: &str| Context {
        setup: Arc::new(Setup::new(team, r#"{"mode": "setup"}"#, tables.clone())),
        content: None,
    };
    let (a, b, c) = (context("team-a"), context("team-b"), context("team-c"));
    let label = |pool: &WarmPool, cx: &Context| {
        pool.decide_in(cx, &ask("setup"), &offer(), Arc::new(Values))
            .result
            .expect("routes")
            .label
    };
    let roomy = WarmPool::new(hostile.clone(), 2);
    for _ in 0..3 {
        assert_eq!(label(&roomy, &a), "setup:team-a:2:2:1");
        assert_eq!(label(&roomy, &b), "setup:team-b:2:2:1");
    }
    // A third team finds the pool full: the least recently used instance
    // (team a's) is configured again, and team b's is kept.
    assert_eq!(label(&roomy, &c), "setup:team-c:2:2:2");
    assert_eq!(label(&roomy, &b), "setup:team-b:2:2:1");
    assert_eq!(roomy.idle_count(), 2);
}

/// The metrics a 0.2 policy declares arrive with each request as one flat
/// list, candidates × metrics in `describe`'s order, NaN for no data.
#[test]
fn declared_metrics_arrive_as_numbers_aligned_with_the_declaration() {
    let runtime = runtime();
    let hostile = runtime.load(&guest("hostile_v0_2")).expect("loads");
    assert_eq!(hostile.info().metrics, ["p95_latency", "uptime"]);
    let label = hostile
        .decide(&ask("declared"), &offer(), Arc::new(Values))
        .expect("routes")
        .label;
    let want: Vec<String> = offer()
        .iter()
        .flat_map(|c| ["p95_latency", "uptime"].map(|name| Values.metric(&c.id, name, 900)))
        .map(|v| v.map_or("-".to_string(), |v| format!("{v}")))
        .collect();
    assert_eq!(want.len(), 4);
    assert_eq!(label, format!("declared:{}", want.join(",")));
}
