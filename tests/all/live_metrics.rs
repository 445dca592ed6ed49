//! End-to-end: live metrics steering routing, circuit breakers, feature uptime,
//! active health checks, and the operator endpoints (`/metrics` parsed by a
//! Prometheus text parser, `/admin/v1/metrics`). Metric windows and breakers
//! read a hand-moved clock; latencies are real.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard::api::{AppState, Server, app_state_with_clock};
use switchyard::config::hash_key;
use switchyard::metrics::{ManualClock, Outcome};
use switchyard_tests::mock::{Behavior, Flavor, MockProvider};

const KEY: &str = "sk-team-live";
const ADMIN: &str = "admin-secret-token";

/// Two OpenAI-shaped accounts serving the same models. `zeta` sorts after
/// `alpha` by id, so wherever `zeta` leads it is the live metrics' doing.
struct Env {
    gateway: Server,
    state: AppState,
    clock: ManualClock,
    zeta: MockProvider,
    alpha: MockProvider,
    client: reqwest::Client,
}

impl Env {
    async fn start(extra: &str) -> Env {
        Self::start_with(extra, "").await
    }

    /// `extra` goes into `[routing]`, `zeta_extra` into `[providers.zeta]`.
    async fn start_with(extra: &str, zeta_extra: &str) -> Env {
        let zeta = MockProvider::start(Flavor::OpenAi).await;
        let alpha = MockProvider::start(Flavor::OpenAi).await;
        let text = format!(
            r#"
            [routing]
            backoff_base_ms = 1
            backoff_max_ms = 2
            {extra}
            [providers.zeta]
            kind = "openai"
            base_url = "{zeta}"
            api_key_env = "OA_KEY"
            models = ["gpt-4o-mini"]
            timeout_ms = 3000
            {zeta_extra}
            [providers.alpha]
            kind = "openai"
            base_url = "{alpha}"
            api_key_env = "OA_KEY"
            models = ["gpt-4o-mini"]
            timeout_ms = 3000
            [teams.live]
            key_sha256 = ["{key}"]
            "#,
            zeta = zeta.base_url(),
            alpha = alpha.base_url(),
            key = hash_key(KEY),
        );
        let config = switchyard_tests::parse_config(
            "live.toml",
            &text,
            &[("OA_KEY", "sk-upstream"), ("SWITCHYARD_ADMIN_TOKEN", ADMIN)],
        );
        // Any instant will do; a round hour keeps bucket edges predictable.
        let clock = ManualClock::new(1_800_000_000_000);
        let state = app_state_with_clock(config, Arc::new(clock.clone())).expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let gateway =
            Server::start(listener, state.clone(), Duration::from_secs(2)).expect("start");
        Env {
            gateway,
            state,
            clock,
            zeta,
            alpha,
            client: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway.addr)
    }

    async fn chat(&self, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .expect("gateway answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    /// Sends one request and returns the provider that served it.
    async fn served_by(&self, body: Value) -> String {
        let (status, body) = self.chat(body).await;
        assert_eq!(status, 200, "{body}");
        body["switchyard"]["provider"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn check(&self, account: &str) -> Option<Outcome> {
        self.state
            .executor
            .health_check(account, "gpt-4o-mini")
            .await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("gateway answers");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    async fn admin_metrics(&self, window: &str) -> Value {
        let (status, text) = self
            .get(&format!("/admin/v1/metrics?window={window}"), Some(ADMIN))
            .await;
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).expect("JSON")
    }
}

fn hello() -> Value {
    json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": "Hello" }] })
}

fn by_p95() -> Value {
    let mut body = hello();
    body["routing"] = json!({ "metric": "p95_latency" });
    body
}

fn slow(ms: u64) -> Behavior {
    Behavior::Slow {
        delay_ms: ms,
        text: "slow answer".into(),
    }
}

#[tokio::test]
async fn traffic_follows_p95_latency_and_returns_after_the_window_rolls() {
    let env = Env::start("").await;
    env.zeta.set_default(Behavior::Text("fast answer".into()));
    env.alpha.set_default(slow(80));

    // Health checks give both accounts data; zeta is faster, so it leads
    // although it sorts after alpha by id.
    for _ in 0..3 {
        assert_eq!(env.check("zeta").await, Some(Outcome::Ok));
        assert_eq!(env.check("alpha").await, Some(Outcome::Ok));
    }
    for _ in 0..5 {
        assert_eq!(env.served_by(by_p95()).await, "zeta");
    }

    // zeta gets slow: once its p95 passes alpha's, traffic moves to alpha.
    env.zeta.set_default(slow(300));
    assert_eq!(env.served_by(by_p95()).await, "zeta");
    let zeta_hits = env.zeta.hits();
    for _ in 0..5 {
        assert_eq!(env.served_by(by_p95()).await, "alpha");
    }
    assert_eq!(env.zeta.hits(), zeta_hits, "no request reached slow zeta");

    // zeta recovers, but its slow answer is still inside the 15 minute window.
    env.zeta.set_default(Behavior::Text("fast again".into()));
    env.clock.advance(Duration::from_secs(10 * 60));
    for _ in 0..3 {
        env.check("zeta").await;
    }
    assert_eq!(env.served_by(by_p95()).await, "alpha");

    // The window rolls past the slow answer: zeta's p95 is low again.
    env.clock.advance(Duration::from_secs(6 * 60));
    env.check("zeta").await;
    let table = env.admin_metrics("15m").await;
    let p95 = |id: &str| {
        table["candidates"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["id"] == id))
            .map(|r| r["latency_ms"]["p95"].as_f64().unwrap_or(f64::NAN))
    };
    let (zeta_p95, alpha_p95) = (p95("zeta/gpt-4o-mini"), p95("alpha/gpt-4o-mini"));
    assert!(
        zeta_p95 < alpha_p95,
        "zeta {zeta_p95:?} ms should now beat alpha {alpha_p95:?} ms"
    );
    for _ in 0..3 {
        assert_eq!(env.served_by(by_p95()).await, "zeta");
    }
}

#[tokio::test]
async fn circuit_breaker_opens_skips_the_provider_half_opens_and_closes() {
    let env = Env::start(
        "[routing.circuit_breaker]\nmin_requests = 3\nfailure_rate = 0.5\nwindow_secs = 60\nrecovery_secs = 30",
    )
    .await;
    env.zeta.set_default(Behavior::Error {
        status: 500,
        message: "The server had an error while processing your request.".into(),
    });
    let pinned = || {
        let mut body = hello();
        body["model"] = json!("zeta/gpt-4o-mini");
        body
    };
    // Three failures at zeta (each request fails over to alpha) open it.
    for _ in 0..3 {
        assert_eq!(env.served_by(pinned()).await, "alpha");
    }
    assert_eq!(env.zeta.hits(), 3);
    let (_, text) = env.get("/metrics", None).await;
    assert!(
        text.contains("switchyard_circuit_state{provider=\"zeta\",model=\"gpt-4o-mini\"} 2\n"),
        "{text}"
    );

    // Open: no request reaches zeta, even pinned to it.
    for _ in 0..5 {
        assert_eq!(env.served_by(pinned()).await, "alpha");
    }
    assert_eq!(env.zeta.hits(), 3, "an open circuit sends nothing");
    let table = env.admin_metrics("15m").await;
    let zeta = &table["candidates"][table["candidates"]
        .as_array()
        .and_then(|r| r.iter().position(|c| c["id"] == "zeta/gpt-4o-mini"))
        .unwrap_or(0)];
    assert_eq!(zeta["circuit"]["state"], "open", "{table}");
    assert_eq!(zeta["errors"], 3);

    // After the recovery window it is half-open; zeta works again, and the
    // next request is the probe that closes the circuit.
    env.zeta.set_default(Behavior::Text("recovered".into()));
    env.clock.advance(Duration::from_secs(30));
    let (_, text) = env.get("/metrics", None).await;
    assert!(
        text.contains("switchyard_circuit_state{provider=\"zeta\",model=\"gpt-4o-mini\"} 1\n"),
        "{text}"
    );
    assert_eq!(
        env.served_by(pinned()).await,
        "zeta",
        "the probe goes to zeta"
    );
    let (_, text) = env.get("/metrics", None).await;
    assert!(
        text.contains("switchyard_circuit_state{provider=\"zeta\",model=\"gpt-4o-mini\"} 0\n"),
        "{text}"
    );
    assert_eq!(env.served_by(pinned()).await, "zeta");

    // A failed probe opens it again at once.
    env.zeta.set_default(Behavior::Error {
        status: 503,
        message: "overloaded".into(),
    });
    for _ in 0..3 {
        assert_eq!(env.served_by(pinned()).await, "alpha");
    }
    env.clock.advance(Duration::from_secs(31));
    assert_eq!(env.served_by(pinned()).await, "alpha");
    let hits = env.zeta.hits();
    assert_eq!(env.served_by(pinned()).await, "alpha");
    assert_eq!(env.zeta.hits(), hits, "re-opened after the failed probe");
}

#[tokio::test]
async fn every_circuit_open_is_a_clear_503_with_retry_after() {
    let env = Env::start("[routing.circuit_breaker]\nmin_requests = 2\nrecovery_secs = 45").await;
    for mock in [&env.zeta, &env.alpha] {
        mock.set_default(Behavior::Error {
            status: 502,
            message: "bad gateway".into(),
        });
    }
    // One request fails each candidate twice (a call and its retry): the
    // two failures each circuit needs.
    let (status, _) = env.chat(hello()).await;
    assert_eq!(status, 424);
    let response = env
        .client
        .post(env.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&hello())
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("45")
    );
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "circuit_open", "{body}");
}

/// A tool-calling request pinned to alpha (so alpha is tried first even
/// once recent failures flag it degraded).
fn tool_request() -> Value {
    json!({
        "model": "alpha/gpt-4o-mini",
        "messages": [{ "role": "user", "content": "Weather in Paris?" }],
        "tools": [{ "type": "function", "function": {
            "name": "get_weather",
            "parameters": { "type": "object", "properties": { "city": { "type": "string" } } }
        }}]
    })
}

#[tokio::test]
async fn feature_uptime_excludes_a_provider_for_tool_requests_only() {
    // The breaker is set far off so only the feature rule acts here, and
    // retries are off so each request fails alpha exactly once.
    let env = Env::start(
        "feature_uptime_min_requests = 5\nfeature_uptime_window_secs = 120\nretries_per_candidate = 0\n[routing.circuit_breaker]\nmin_requests = 1000",
    )
    .await;
    // alpha fails every tool-calling request.
    env.alpha.set_tools_behavior(Some(Behavior::Error {
        status: 500,
        message: "tool calling is broken".into(),
    }));
    env.zeta.set_default(Behavior::ToolCall {
        name: "get_weather".into(),
        arguments: json!({ "city": "Paris" }),
    });
    for _ in 0..5 {
        let (status, body) = env.chat(tool_request()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["switchyard"]["provider"], "zeta", "failed over");
        assert_eq!(body["switchyard"]["attempts"], 2);
    }
    // The circuit breaker's window (60 s, kept in 6 s slots) forgets those
    // failures, so alpha is not flagged degraded; the feature window (120 s
    // here) still holds them.
    env.clock.advance(Duration::from_secs(66));
    let alpha_hits = env.alpha.hits();
    // Now below 90 % for tools: alpha is not even tried for tool requests,
    // pinned as they are ...
    for _ in 0..3 {
        let (status, body) = env.chat(tool_request()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["switchyard"]["attempts"], 1, "{body}");
        assert_eq!(body["switchyard"]["provider"], "zeta");
    }
    assert_eq!(env.alpha.hits(), alpha_hits);
    // ... and still serves plain chat first.
    for _ in 0..3 {
        assert_eq!(env.served_by(hello()).await, "alpha");
    }
    let table = env.admin_metrics("15m").await;
    let alpha = table["candidates"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == "alpha/gpt-4o-mini"))
        .cloned()
        .unwrap_or_default();
    let tools = alpha["features"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["feature"] == "tools.function_calling"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(tools["excluded"], true, "{alpha}");
    assert_eq!(tools["uptime"], 0.0);
    assert_eq!(alpha["circuit"]["state"], "closed");

    // Past the window the failures are forgotten and alpha gets tool traffic again.
    env.clock.advance(Duration::from_secs(16 * 60));
    env.alpha.set_tools_behavior(None);
    env.alpha.set_default(Behavior::ToolCall {
        name: "get_weather".into(),
        arguments: json!({ "city": "Paris" }),
    });
    let (_, body) = env.chat(tool_request()).await;
    assert_eq!(body["switchyard"]["provider"], "alpha", "{body}");
}

#[tokio::test]
async fn prometheus_text_parses_and_counts_what_happened() {
    let env = Env::start("").await;
    env.alpha
        .set_default(Behavior::Text("one two three".into()));
    assert_eq!(env.served_by(hello()).await, "alpha");
    // A stream: TTFT and tokens from the final usage chunk are recorded.
    let mut body = hello();
    body["stream"] = json!(true);
    let response = env
        .client
        .post(env.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .expect("stream");
    assert_eq!(response.status().as_u16(), 200);
    let mut bytes = response.bytes_stream();
    while let Some(chunk) = bytes.next().await {
        chunk.expect("chunk");
    }
    // Errors are counted too: a bad key, bad JSON, an unknown model.
    let bad_key = env
        .client
        .post(env.url("/v1/chat/completions"))
        .bearer_auth("sk-wrong")
        .json(&hello())
        .send()
        .await
        .expect("answer");
    assert_eq!(bad_key.status().as_u16(), 401);
    let (status, _) = env
        .chat(json!({ "model": "no-such-model", "messages": [{ "role": "user", "content": "x" }] }))
        .await;
    assert_eq!(status, 404);

    let (status, text) = env.get("/metrics", None).await;
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text parses");
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.iter().map(|b| b.count).fold(0.0, f64::max)
                }
                prometheus_parse::Value::Summary(_) => f64::NAN,
            })
    };
    assert_eq!(
        value(
            "switchyard_requests_total",
            &[("team", "live"), ("provider", "alpha"), ("outcome", "ok")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            "switchyard_requests_total",
            &[("team", "live"), ("outcome", "model_not_found")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            "switchyard_http_responses_total",
            &[("route", "/v1/chat/completions"), ("status", "401")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            "switchyard_attempts_total",
            &[("provider", "alpha"), ("outcome", "ok")]
        ),
        Some(2.0)
    );
    assert!(
        value(
            "switchyard_tokens_total",
            &[("provider", "alpha"), ("kind", "output")]
        )
        .unwrap_or(0.0)
            > 0.0
    );
    assert!(value("switchyard_cost_usd_total", &[("team", "live")]).unwrap_or(0.0) > 0.0);
    assert_eq!(
        value("switchyard_policy_decision_seconds", &[("team", "live")]),
        Some(2.0),
        "two decisions (the unknown model never reached the policy)"
    );
    assert_eq!(
        value(
            "switchyard_policy_matches_total",
            &[("team", "live"), ("label", "default")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            "switchyard_time_to_first_token_seconds",
            &[("provider", "alpha")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value("switchyard_circuit_state", &[("provider", "zeta")]),
        Some(0.0)
    );
    for family in [
        "switchyard_request_duration_seconds",
        "switchyard_upstream_latency_seconds",
        "switchyard_policy_faults_total",
        "switchyard_policy_median_latency_seconds",
        "switchyard_circuit_opens_total",
    ] {
        assert!(scrape.docs.contains_key(family), "{family} documented");
    }

    // The same in the admin table.
    let table = env.admin_metrics("1h").await;
    assert_eq!(table["window_seconds"], 3600);
    let alpha = table["candidates"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == "alpha/gpt-4o-mini"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(alpha["requests"], 2, "{alpha}");
    assert_eq!(alpha["uptime"], 1.0);
    assert_eq!(alpha["ttft_ms"]["count"], 1);
    assert!(
        alpha["tokens"]["output_avg"].as_f64().unwrap_or(0.0) > 0.0,
        "{alpha}"
    );
    let policy = &table["policies"][0];
    assert_eq!(policy["team"], "live");
    assert_eq!(policy["label"], "default");
    assert_eq!(policy["successes"], 2);
    assert!(policy["median_latency_ms"].as_f64().unwrap_or(-1.0) >= 0.0);
}

#[tokio::test]
async fn the_admin_table_needs_the_admin_token_and_a_valid_window() {
    let env = Env::start("").await;
    let (status, text) = env.get("/admin/v1/metrics", None).await;
    assert_eq!(status, 401, "{text}");
    let (status, text) = env.get("/admin/v1/metrics", Some(KEY)).await;
    assert_eq!(status, 401, "a team key is not an admin token: {text}");
    for (window, problem) in [
        ("5m", "shorter than the 15 minute minimum"),
        ("soon", "invalid interval"),
        ("8d", "longer than the 7 day maximum"),
    ] {
        let (status, text) = env
            .get(&format!("/admin/v1/metrics?window={window}"), Some(ADMIN))
            .await;
        assert_eq!(status, 400, "{window}: {text}");
        let body: Value = serde_json::from_str(&text).expect("JSON error");
        assert_eq!(body["error"]["param"], "window");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(problem),
            "{body}"
        );
    }
    for window in ["15m", "24%20hours", "7d"] {
        let (status, _) = env
            .get(&format!("/admin/v1/metrics?window={window}"), Some(ADMIN))
            .await;
        assert_eq!(status, 200, "{window}");
    }
    let table = env.admin_metrics("15m").await;
    assert_eq!(table["window_seconds"], 900);
    assert_eq!(table["candidates"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn active_health_checks_run_on_their_interval_and_open_a_dead_circuit() {
    let env = Env::start_with(
        "[routing.circuit_breaker]\nmin_requests = 2",
        "health_check_interval_ms = 100",
    )
    .await;
    env.zeta.set_default(Behavior::Error {
        status: 503,
        message: "down".into(),
    });
    let mut waited = Duration::ZERO;
    while env.zeta.hits() < 2 && waited < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    assert!(env.zeta.hits() >= 2, "checks ran");
    let check = &env.zeta.requests()[0].body;
    assert_eq!(check["messages"][0]["content"], "ping");
    assert_eq!(check["max_completion_tokens"], 16);
    assert_eq!(
        env.alpha.hits(),
        0,
        "paid accounts are not checked by default"
    );
    let (_, text) = env.get("/metrics", None).await;
    assert!(
        text.contains("switchyard_circuit_state{provider=\"zeta\",model=\"gpt-4o-mini\"} 2\n"),
        "two failed checks open the circuit: {text}"
    );
    assert!(text.contains(
        "switchyard_health_checks_total{provider=\"zeta\",model=\"gpt-4o-mini\",outcome=\"error\"}"
    ));
    // Requests never see the dead account: alpha serves, zeta gets only checks.
    let mut body = hello();
    body["model"] = json!("zeta/gpt-4o-mini");
    assert_eq!(env.served_by(body).await, "alpha");
    assert!(
        env.zeta
            .requests()
            .iter()
            .all(|r| r.body["messages"][0]["content"] == "ping")
    );
}

#[tokio::test]
async fn a_caller_who_hangs_up_is_still_counted() {
    let env = Env::start("").await;
    env.alpha.set_default(Behavior::Stall);
    env.zeta.set_default(Behavior::Stall);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let sent = impatient
        .post(env.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&hello())
        .send()
        .await;
    assert!(sent.is_err(), "the caller gave up");
    let mut counted = false;
    for _ in 0..50 {
        let (_, text) = env.get("/metrics", None).await;
        if text.contains("switchyard_requests_total{team=\"live\",provider=\"none\",model=\"none\",outcome=\"client_closed\"} 1\n") {
            counted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(counted, "the abandoned request is counted");
}
