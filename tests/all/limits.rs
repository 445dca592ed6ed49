//! End-to-end: rate limits, budgets, spend and savings, with the shared state
//! in a real `redis-server` (started here on a loopback port) and mock
//! providers speaking the OpenAI wire format.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use serde_json::{Value, json};
use switchyard::api::Server;
use switchyard::config::hash_key;
use switchyard_tests::mock::{Behavior, Flavor, MockProvider};
use switchyard_tests::redis::RedisServer;
use switchyard_tests::start_gateway;

const KEY: &str = "sk-limits-team";
const ONLY_KEY: &str = "sk-limits-only";
const ADMIN: &str = "admin-limits-token";

fn prefix() -> String {
    format!("sy{:x}", fastrand_u64())
}

fn fastrand_u64() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn chat(
    client: &reqwest::Client,
    gateway: &Server,
    key: &str,
    body: Value,
    step_type: Option<&str>,
) -> Answer {
    let mut request = client
        .post(format!("http://{}/v1/chat/completions", gateway.addr))
        .bearer_auth(key)
        .json(&body);
    if let Some(step) = step_type {
        request = request.header("x-switchyard-step-type", step);
    }
    let response = request.send().await.expect("gateway answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.expect("JSON body");
    Answer {
        status,
        headers,
        body,
    }
}

fn hello(model: &str, text: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": text }] })
}

async fn metrics(client: &reqwest::Client, gateway: &Server) -> String {
    client
        .get(format!("http://{}/metrics", gateway.addr))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of the sample of `name` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name)
                && l[name.len()..].starts_with(['{', ' '])
                && labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Two replicas share one Redis: an account limited to 60 RPM serves no more
/// than 60 requests in the minute, whichever replica they arrive at; the rest
/// fail over to the next account. A team that may use only that account gets
/// 429 with a retry-after from the limiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_enforce_one_rpm_limit_together() {
    let redis = RedisServer::start();
    let primary = MockProvider::start(Flavor::OpenAi).await;
    let backup = MockProvider::start(Flavor::OpenAi).await;
    let config = format!(
        r#"
        [providers.a-primary]
        kind = "openai"
        api_key_env = "OA_KEY"
        base_url = "{primary}"
        models = ["gpt-4o-mini"]
        rpm = 60
        [providers.b-backup]
        kind = "openai"
        api_key_env = "OA_KEY"
        base_url = "{backup}"
        models = ["gpt-4o-mini"]
        [teams.team]
        key_sha256 = ["{key}"]
        [teams.only]
        key_sha256 = ["{only}"]
        allowed_providers = ["a-primary"]
        [state]
        redis_url = "{redis}"
        key_prefix = "{prefix}"
        "#,
        primary = primary.base_url(),
        backup = backup.base_url(),
        key = hash_key(KEY),
        only = hash_key(ONLY_KEY),
        redis = redis.url(),
        prefix = prefix(),
    );
    let one = start_gateway("one.toml", &config, &[("OA_KEY", "sk-upstream")]).await;
    let two = start_gateway("two.toml", &config, &[("OA_KEY", "sk-upstream")]).await;
    let client = reqwest::Client::new();

    // 100 requests, 10 at a time, alternating between the replicas.
    let mut served_by = std::collections::BTreeMap::<String, usize>::new();
    for batch in 0..10 {
        let mut calls = Vec::new();
        for i in 0..10 {
            let gateway = if (batch * 10 + i) % 2 == 0 {
                &one
            } else {
                &two
            };
            calls.push(chat(
                &client,
                gateway,
                KEY,
                hello("gpt-4o-mini", "hi"),
                None,
            ));
        }
        for answer in futures_util::future::join_all(calls).await {
            assert_eq!(answer.status, 200, "{}", answer.body);
            let provider = answer.body["switchyard"]["provider"]
                .as_str()
                .expect("provider")
                .to_string();
            *served_by.entry(provider).or_default() += 1;
        }
    }
    assert_eq!(primary.hits(), 60, "served by: {served_by:?}");
    assert_eq!(backup.hits(), 40, "served by: {served_by:?}");
    assert_eq!(served_by.get("a-primary"), Some(&60));

    // No other account: 429, and the limiter says when room frees up.
    let answer = chat(&client, &one, ONLY_KEY, hello("gpt-4o-mini", "hi"), None).await;
    assert_eq!(answer.status, 429, "{}", answer.body);
    assert_eq!(answer.body["error"]["code"], "all_providers_rate_limited");
    assert_eq!(
        answer.body["switchyard"]["trail"][0]["reason"],
        "limit_reached"
    );
    let retry: u64 = answer.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    assert_eq!(primary.hits(), 60, "the limited account was not called");

    // The limited team's request was turned away by `one`'s limiter.
    let text = metrics(&client, &one).await;
    let rejected = sample(
        &text,
        "switchyard_limiter_rejections_total",
        &[
            ("scope", "account"),
            ("name", "a-primary"),
            ("limit", "rpm"),
        ],
    )
    .unwrap_or(0.0);
    assert!(rejected >= 1.0, "{text}");
    assert_eq!(
        sample(
            &text,
            "switchyard_state_backend_up",
            &[("backend", "redis")]
        ),
        Some(1.0)
    );
}

/// Tokens per minute: with the estimate counted before the call (and
/// corrected with the usage after), large requests run out of room while a
/// small one still fits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_requests_exhaust_tokens_per_minute_before_small_ones() {
    let redis = RedisServer::start();
    let provider = MockProvider::start(Flavor::OpenAi).await;
    provider.set_default(Behavior::Text("ok".into()));
    let config = format!(
        r#"
        [providers.only]
        kind = "openai"
        api_key_env = "OA_KEY"
        base_url = "{base}"
        models = ["gpt-4o-mini"]
        tpm = 1000
        [teams.team]
        key_sha256 = ["{key}"]
        [state]
        redis_url = "{redis}"
        key_prefix = "{prefix}"
        "#,
        base = provider.base_url(),
        key = hash_key(KEY),
        redis = redis.url(),
        prefix = prefix(),
    );
    let gateway = start_gateway("tpm.toml", &config, &[("OA_KEY", "sk-upstream")]).await;
    let client = reqwest::Client::new();
    let large = "x".repeat(1400); // ~365 tokens estimated, 350 used
    for i in 0..2 {
        let answer = chat(&client, &gateway, KEY, hello("gpt-4o-mini", &large), None).await;
        assert_eq!(answer.status, 200, "large request {i}: {}", answer.body);
    }
    let answer = chat(&client, &gateway, KEY, hello("gpt-4o-mini", &large), None).await;
    assert_eq!(answer.status, 429, "third large request: {}", answer.body);
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("TPM")),
        "{}",
        answer.body
    );
    assert!(answer.headers.contains_key("retry-after"));
    let small = chat(&client, &gateway, KEY, hello("gpt-4o-mini", "hi"), None).await;
    assert_eq!(
        small.status, 200,
        "a small request still fits: {}",
        small.body
    );
    assert_eq!(provider.hits(), 3);
    let text = metrics(&client, &gateway).await;
    assert_eq!(
        sample(
            &text,
            "switchyard_limiter_rejections_total",
            &[("name", "only"), ("limit", "tpm")]
        ),
        Some(1.0),
        "{text}"
    );
}

/// Counts POSTs to the alert webhook.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let app = Router::new().route(
        "/alerts",
        post(move |axum::Json(body): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().expect("lock").push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/alerts"), received)
}

/// An account whose budget is spent is skipped (the next account serves);
/// with no account left the caller gets 402; each threshold crossing is one
/// webhook POST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spent_budgets_are_skipped_and_each_threshold_alerts_once() {
    let redis = RedisServer::start();
    let cheap = MockProvider::start(Flavor::OpenAi).await;
    let other = MockProvider::start(Flavor::OpenAi).await;
    for p in [&cheap, &other] {
        p.set_default(Behavior::Text("ok".into()));
    }
    let (hook, received) = webhook().await;
    // "hello world!" is 3 prompt tokens and "ok" 1 completion token: $0.004
    // a request at $1000 per 1M tokens. The budget of $0.018 is crossed at
    // 50 % by the 3rd request, 80 % by the 4th, 100 % by the 5th.
    let config = format!(
        r#"
        [models.metered]
        input = 1000.0
        output = 1000.0
        tier = 2
        features = ["stream"]
        [providers.a-cheap]
        kind = "openai"
        api_key_env = "OA_KEY"
        base_url = "{cheap}"
        models = ["metered"]
        budget_usd = 0.018
        [providers.b-other]
        kind = "openai"
        api_key_env = "OA_KEY"
        base_url = "{other}"
        models = ["metered"]
        [teams.team]
        key_sha256 = ["{key}"]
        [teams.only]
        key_sha256 = ["{only}"]
        allowed_providers = ["a-cheap"]
        [alerts]
        thresholds = [0.5, 0.8, 1.0]
        webhook_url = "{hook}"
        [state]
        redis_url = "{redis}"
        key_prefix = "{prefix}"
        "#,
        cheap = cheap.base_url(),
        other = other.base_url(),
        key = hash_key(KEY),
        only = hash_key(ONLY_KEY),
        redis = redis.url(),
        prefix = prefix(),
    );
    let gateway = start_gateway("budget.toml", &config, &[("OA_KEY", "sk-upstream")]).await;
    let client = reqwest::Client::new();
    for i in 0..10 {
        let answer = chat(
            &client,
            &gateway,
            KEY,
            hello("metered", "hello world!"),
            None,
        )
        .await;
        assert_eq!(answer.status, 200, "request {i}: {}", answer.body);
        let cost = answer.body["switchyard"]["cost_usd"]
            .as_f64()
            .expect("cost");
        assert!((cost - 0.004).abs() < 1e-12, "{cost}");
        // Budget counters are updated off the request path: let it land.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        cheap.hits(),
        5,
        "the budget stops the cheap account after 5"
    );
    assert_eq!(other.hits(), 5);

    let answer = chat(
        &client,
        &gateway,
        ONLY_KEY,
        hello("metered", "hello world!"),
        None,
    )
    .await;
    assert_eq!(answer.status, 402, "{}", answer.body);
    assert_eq!(answer.body["error"]["code"], "budget_exhausted");
    assert_eq!(cheap.hits(), 5);

    let deadline = Instant::now() + Duration::from_secs(10);
    while received.lock().expect("lock").len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give a duplicate the chance to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let alerts = received.lock().expect("lock").clone();
    let thresholds: Vec<f64> = alerts
        .iter()
        .map(|a| a["threshold"].as_f64().expect("threshold"))
        .collect();
    assert_eq!(thresholds.len(), 3, "{alerts:?}");
    for t in [0.5, 0.8, 1.0] {
        assert_eq!(
            thresholds.iter().filter(|&&x| x == t).count(),
            1,
            "{alerts:?}"
        );
    }
    assert!(
        alerts
            .iter()
            .all(|a| a["scope"] == "account" && a["name"] == "a-cheap")
    );

    let text = metrics(&client, &gateway).await;
    let utilisation = sample(
        &text,
        "switchyard_budget_utilisation",
        &[("scope", "account"), ("name", "a-cheap")],
    )
    .expect("utilisation");
    assert!(utilisation >= 1.0, "{utilisation}");
}

fn spend_key(prefix: &str, account: &str) -> String {
    let (y, m, _) = switchyard::spend::civil(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    format!("{prefix}:spend:account:{account}:{y:04}-{m:02}")
}

async fn spend_report(client: &reqwest::Client, gateway: &Server, team: &str) -> Value {
    let response = client
        .get(format!(
            "http://{}/admin/v1/spend?team={team}&period=today",
            gateway.addr
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("spend report");
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON")
}

/// Redis killed mid-test: requests keep succeeding on local state, /metrics
/// says so, and once Redis is back the spend counted meanwhile reaches its
/// budget counter; the ledger has every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_loses_no_request_and_no_spend() {
    let mut redis = RedisServer::start();
    let provider = MockProvider::start(Flavor::OpenAi).await;
    provider.set_default(Behavior::Text("ok".into()));
    let prefix = prefix();
    let config = format!(
        r#"
        [admin]
        token_env = "ADMIN_TOKEN"
        [models.metered]
        input = 1000.0
        output = 1000.0
        tier = 2
        features = ["stream"]
        [providers.acct]
        kind = "openai"
        api_key_env = "OA_KEY"
        base_url = "{base}"
        models = ["metered"]
        rpm = 1000
        budget_usd = 100.0
        [teams.team]
        key_sha256 = ["{key}"]
        [state]
        redis_url = "{redis}"
        key_prefix = "{prefix}"
        timeout_ms = 200
        "#,
        base = provider.base_url(),
        key = hash_key(KEY),
        redis = redis.url(),
    );
    let gateway = start_gateway(
        "outage.toml",
        &config,
        &[("ADMIN_TOKEN", ADMIN), ("OA_KEY", "sk-upstream")],
    )
    .await;
    let client = reqwest::Client::new();
    let counter = spend_key(&prefix, "acct");
    let redis_spend = |redis: &RedisServer| -> f64 {
        redis
            .command(&["GET", &counter])
            .expect("GET")
            .parse()
            .unwrap_or(0.0)
    };

    let send = |n: usize| {
        let client = client.clone();
        let gateway = &gateway;
        async move {
            for i in 0..n {
                let answer = chat(
                    &client,
                    gateway,
                    KEY,
                    hello("metered", "hello world!"),
                    None,
                )
                .await;
                assert_eq!(answer.status, 200, "request {i}: {}", answer.body);
            }
        }
    };
    send(5).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while (redis_spend(&redis) - 0.02).abs() > 1e-9 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        (redis_spend(&redis) - 0.02).abs() < 1e-9,
        "5 × $0.004 in Redis"
    );

    redis.kill();
    send(10).await;
    // Budget counters are added off the request path (each waits out the
    // Redis timeout first), so the last ones may land just after the answer.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (text, unreconciled) = loop {
        let text = metrics(&client, &gateway).await;
        let unreconciled =
            sample(&text, "switchyard_spend_unreconciled_usd", &[]).expect("unreconciled");
        if (unreconciled - 0.04).abs() < 1e-9 || Instant::now() >= deadline {
            break (text, unreconciled);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        sample(
            &text,
            "switchyard_state_backend_up",
            &[("backend", "redis")]
        ),
        Some(0.0),
        "{text}"
    );
    assert!((unreconciled - 0.04).abs() < 1e-9, "{unreconciled}");

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = metrics(&client, &gateway).await;
        let up = sample(
            &text,
            "switchyard_state_backend_up",
            &[("backend", "redis")],
        );
        if up == Some(1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "Redis never came back: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        (redis_spend(&redis) - 0.06).abs() < 1e-9,
        "15 × $0.004 after reconciling: {}",
        redis_spend(&redis)
    );
    send(1).await;
    let report = spend_report(&client, &gateway, "team").await;
    assert_eq!(report["requests"], 16, "{report}");
    let spent = report["spend_usd"].as_f64().expect("spend");
    assert!((spent - 0.064).abs() < 1e-9, "{report}");
    assert_eq!(provider.hits(), 16);
}

/// With Redis down, each replica goes on from what it admitted itself (its
/// local window mirrors its admissions while Redis is up), not from an empty
/// window; what each admitted meanwhile is added to Redis when it returns.
/// The bound that remains: during an outage, at most one limit's worth per
/// replica in a window (here 2 × 10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_keeps_each_replicas_window_and_reconciles_it() {
    let mut redis = RedisServer::start();
    let provider = MockProvider::start(Flavor::OpenAi).await;
    provider.set_default(Behavior::Text("ok".into()));
    let config = format!(
        r#"
        [providers.acct]
        kind = "openai"
        api_key_env = "OA_KEY"
        base_url = "{base}"
        models = ["gpt-4o-mini"]
        rpm = 10
        [teams.only]
        key_sha256 = ["{only}"]
        allowed_providers = ["acct"]
        [state]
        redis_url = "{redis}"
        key_prefix = "{prefix}"
        timeout_ms = 200
        "#,
        base = provider.base_url(),
        only = hash_key(ONLY_KEY),
        redis = redis.url(),
        prefix = prefix(),
    );
    let env = [("OA_KEY", "sk-upstream")];
    let one = start_gateway("one.toml", &config, &env).await;
    let two = start_gateway("two.toml", &config, &env).await;
    let client = reqwest::Client::new();
    async fn send(client: &reqwest::Client, gateway: &Server, n: usize) -> usize {
        let mut admitted = 0;
        for _ in 0..n {
            let answer = chat(client, gateway, ONLY_KEY, hello("gpt-4o-mini", "hi"), None).await;
            match answer.status {
                200 => admitted += 1,
                429 => {}
                other => panic!("{other}: {}", answer.body),
            }
        }
        admitted
    }
    assert_eq!(send(&client, &one, 6).await, 6, "shared window, Redis up");

    redis.kill();
    // `one` remembers its 6: 4 more, not 10.
    assert_eq!(
        send(&client, &one, 10).await,
        4,
        "one's own admissions still count"
    );
    // `two` admitted nothing yet: its whole limit (the documented bound).
    assert_eq!(send(&client, &two, 10).await, 10);

    redis.restart();
    for gateway in [&one, &two] {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = metrics(&client, gateway).await;
            if sample(
                &text,
                "switchyard_state_backend_up",
                &[("backend", "redis")],
            ) == Some(1.0)
            {
                break;
            }
            assert!(Instant::now() < deadline, "Redis never came back: {text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The 14 admitted during the outage are in the shared window now: no
    // room left this minute on either replica.
    assert_eq!(send(&client, &one, 2).await, 0, "reconciled");
    assert_eq!(send(&client, &two, 2).await, 0, "reconciled");
    assert_eq!(provider.hits(), 20);
}

/// A mixed workload routed by the default policy's cost rules: routine
/// requests go to the cheap model, `reasoning` steps to the large one. The
/// savings against the team's baseline (by default its most expensive model)
/// equal the figure computed by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_savings_report_matches_a_hand_computed_figure() {
    let provider = MockProvider::start(Flavor::OpenAi).await;
    provider.set_default(Behavior::Text("one two three".into()));
    let config = format!(
        r#"
        [admin]
        token_env = "ADMIN_TOKEN"
        [models.m-small]
        input = 1.0
        output = 2.0
        tier = 3
        features = ["stream"]
        [models.m-large]
        input = 10.0
        output = 30.0
        tier = 1
        features = ["stream"]
        [providers.acct]
        kind = "openai"
        api_key_env = "OA_KEY"
        base_url = "{base}"
        models = ["m-small", "m-large"]
        [policy]
        metric = "cost"
        [[policy.rules]]
        name = "reasoning"
        match = {{ step_type = "reasoning" }}
        models = ["m-large"]
        [teams.apps]
        key_sha256 = ["{key}"]
        allowed_models = ["m-small", "m-large"]
        "#,
        base = provider.base_url(),
        key = hash_key(KEY),
    );
    let gateway = start_gateway(
        "savings.toml",
        &config,
        &[("ADMIN_TOKEN", ADMIN), ("OA_KEY", "sk-upstream")],
    )
    .await;
    let client = reqwest::Client::new();
    // "abcdefghijklmnop": 4 prompt tokens; "one two three": 3 completion tokens.
    let mut labels = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..8 {
        let step = (i % 4 == 3).then_some("reasoning");
        let answer = chat(
            &client,
            &gateway,
            KEY,
            hello("auto", "abcdefghijklmnop"),
            step,
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let expected = if step.is_some() { "m-large" } else { "m-small" };
        assert_eq!(
            answer.body["switchyard"]["model"], expected,
            "{}",
            answer.body
        );
        let label = answer.body["switchyard"]["label"].as_str().expect("label");
        *labels.entry(label.to_string()).or_default() += 1;
    }
    // By hand: m-small costs (4 × $1 + 3 × $2) / 1M = $0.000010 a request,
    // m-large (4 × $10 + 3 × $30) / 1M = $0.000130. Six small, two large.
    let spend = 6.0 * 10e-6 + 2.0 * 130e-6; // $0.000320
    let baseline = 8.0 * 130e-6; // $0.001040
    let savings = baseline - spend; // $0.000720
    let report = spend_report(&client, &gateway, "apps").await;
    let close = |v: &Value, x: f64| v.as_f64().is_some_and(|v| (v - x).abs() < 1e-9);
    assert_eq!(report["baseline_model"], "m-large", "{report}");
    assert_eq!(report["requests"], 8, "{report}");
    assert!(close(&report["spend_usd"], spend), "{report}");
    assert!(close(&report["baseline_usd"], baseline), "{report}");
    assert!(close(&report["savings_usd"], savings), "{report}");
    assert!(close(&report["savings_percent"], 69.23), "{report}");
    let row = |model: &str| {
        report["by_model"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["model"] == model))
            .cloned()
            .unwrap_or_else(|| panic!("no {model} row: {report}"))
    };
    assert_eq!(row("m-small")["requests"], 6);
    assert!(close(&row("m-small")["savings_usd"], 6.0 * 120e-6));
    assert_eq!(row("m-large")["requests"], 2);
    assert!(close(&row("m-large")["savings_usd"], 0.0));
    let by_label = report["by_label"].as_array().expect("by_label");
    assert_eq!(labels.get("rule:reasoning"), Some(&2), "{labels:?}");
    for entry in by_label {
        let label = entry["label"].as_str().expect("label");
        assert_eq!(
            entry["requests"].as_u64(),
            labels.get(label).map(|&n| n as u64),
            "{report}"
        );
    }
    let reasoning = by_label
        .iter()
        .find(|e| e["label"] == "rule:reasoning")
        .expect("reasoning row");
    assert!(close(&reasoning["spend_usd"], 2.0 * 130e-6), "{report}");

    // A period the report does not know is the caller's error.
    let response = client
        .get(format!(
            "http://{}/admin/v1/spend?period=tomorrow",
            gateway.addr
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("bad period");
    assert_eq!(response.status(), 400);
}

/// A team's own limit (all its keys together, in-process state here): the
/// request over it gets 429 with retry-after and reaches no provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_over_its_own_rpm_gets_429_without_failover() {
    let provider = MockProvider::start(Flavor::OpenAi).await;
    let config = format!(
        r#"
        [providers.acct]
        kind = "openai"
        api_key_env = "OA_KEY"
        base_url = "{base}"
        models = ["gpt-4o-mini"]
        [teams.team]
        key_sha256 = ["{key}"]
        rpm = 2
        "#,
        base = provider.base_url(),
        key = hash_key(KEY),
    );
    let gateway = start_gateway("team.toml", &config, &[("OA_KEY", "sk-upstream")]).await;
    let client = reqwest::Client::new();
    for _ in 0..2 {
        let answer = chat(&client, &gateway, KEY, hello("gpt-4o-mini", "hi"), None).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    let answer = chat(&client, &gateway, KEY, hello("gpt-4o-mini", "hi"), None).await;
    assert_eq!(answer.status, 429, "{}", answer.body);
    assert_eq!(answer.body["error"]["code"], "team_rate_limited");
    assert!(answer.headers.contains_key("retry-after"));
    assert_eq!(provider.hits(), 2);
    let text = metrics(&client, &gateway).await;
    assert_eq!(
        sample(
            &text,
            "switchyard_limiter_rejections_total",
            &[("scope", "team"), ("name", "team"), ("limit", "rpm")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "switchyard_state_backend_up",
            &[("backend", "local")]
        ),
        Some(1.0)
    );
}

/// A circuit one replica opens is open for the other replica too, and an
/// upstream 429's cooldown is shared the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuits_and_cooldowns_are_shared_between_replicas() {
    let redis = RedisServer::start();
    let flaky = MockProvider::start(Flavor::OpenAi).await;
    let limited = MockProvider::start(Flavor::OpenAi).await;
    let backup = MockProvider::start(Flavor::OpenAi).await;
    flaky.set_default(Behavior::Error {
        status: 500,
        message: "The server had an error while processing your request.".into(),
    });
    limited.set_default(Behavior::RateLimited {
        retry_after_secs: 30,
    });
    let config = format!(
        r#"
        [routing]
        backoff_base_ms = 1
        backoff_max_ms = 2
        [routing.circuit_breaker]
        min_requests = 2
        recovery_secs = 60
        [providers.a-flaky]
        kind = "openai"
        api_key_env = "OA_KEY"
        base_url = "{flaky}"
        models = ["gpt-4o-mini"]
        [providers.a-limited]
        kind = "openai"
        api_key_env = "OA_KEY"
        base_url = "{limited}"
        models = ["gpt-4o"]
        [providers.b-backup]
        kind = "openai"
        api_key_env = "OA_KEY"
        base_url = "{backup}"
        models = ["gpt-4o-mini", "gpt-4o"]
        [teams.team]
        key_sha256 = ["{key}"]
        [state]
        redis_url = "{redis}"
        key_prefix = "{prefix}"
        "#,
        flaky = flaky.base_url(),
        limited = limited.base_url(),
        backup = backup.base_url(),
        key = hash_key(KEY),
        redis = redis.url(),
        prefix = prefix(),
    );
    let env = [("OA_KEY", "sk-upstream")];
    let one = start_gateway("one.toml", &config, &env).await;
    let two = start_gateway("two.toml", &config, &env).await;
    let client = reqwest::Client::new();
    for _ in 0..2 {
        let answer = chat(&client, &one, KEY, hello("a-flaky/gpt-4o-mini", "hi"), None).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["switchyard"]["provider"], "b-backup");
    }
    assert_eq!(flaky.hits(), 2, "two failures open the circuit at `one`");
    for _ in 0..3 {
        let answer = chat(&client, &two, KEY, hello("a-flaky/gpt-4o-mini", "hi"), None).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["switchyard"]["provider"], "b-backup");
    }
    assert_eq!(
        flaky.hits(),
        2,
        "`two` sends nothing to a circuit `one` opened"
    );

    let answer = chat(&client, &one, KEY, hello("a-limited/gpt-4o", "hi"), None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(limited.hits(), 1);
    let answer = chat(&client, &two, KEY, hello("a-limited/gpt-4o", "hi"), None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        limited.hits(),
        1,
        "`two` honours the retry-after `one` was given"
    );
    let text = metrics(&client, &one).await;
    assert_eq!(
        sample(
            &text,
            "switchyard_cooldowns_total",
            &[("provider", "a-limited"), ("reason", "rate_limited")]
        ),
        Some(1.0)
    );
}
