//! Shadow backups: a sampled share of a team's requests is sent again to a
//! backup candidate after the primary answered; its answers are checked
//! (tool calls against the tool schemas, JSON, finish reason) and compared,
//! a backup that keeps failing is flagged (and, when asked, left out of the
//! fallbacks), and the caller never sees any of it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_tests::mock::{Behavior, Flavor, MockProvider};
use switchyard_tests::start_gateway;

const ADMIN: &str = "admin-secret";
const TOOLS_KEY: &str = "sk-team-tools";
const CAPPED_KEY: &str = "sk-team-capped";

fn config(alpha: &MockProvider, beta: &MockProvider) -> String {
    format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [routing]
        backoff_base_ms = 1
        backoff_max_ms = 5
        retries_per_candidate = 0
        [providers.alpha]
        kind = "openai-compatible"
        base_url = "{alpha}"
        api_key_env = "UPSTREAM_KEY"
        models = ["gpt-4o-mini"]
        [providers.beta]
        kind = "openai-compatible"
        base_url = "{beta}"
        api_key_env = "UPSTREAM_KEY"
        models = ["gpt-4o"]
        [teams.tools]
        key_sha256 = ["{tools}"]
        [teams.capped]
        key_sha256 = ["{capped}"]

        [[backups]]
        team = "tools"
        candidate = "beta/gpt-4o"
        sample = 1.0
        fail_after = 2
        exclude_failing = true

        [[backups]]
        name = "capped-beta"
        team = "capped"
        candidate = "beta/gpt-4o"
        sample = 1.0
        daily_usd = 0.000000001
        "#,
        alpha = alpha.base_url(),
        beta = beta.base_url(),
        tools = switchyard::config::hash_key(TOOLS_KEY),
        capped = switchyard::config::hash_key(CAPPED_KEY),
    )
}

fn weather_request(models: &[&str]) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "messages": [{ "role": "user", "content": "What is the weather in Paris?" }],
        "tools": [{ "type": "function", "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": { "city": { "type": "string" } },
                "required": ["city"],
            },
        }}],
        "routing": { "models": models },
    })
}

/// A `chat.completion` whose tool call's arguments stop mid-JSON.
fn truncated_tool_call() -> Behavior {
    let body = json!({
        "id": "chatcmpl-cut", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{ "index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null,
            "tool_calls": [{ "id": "call_1", "type": "function",
                "function": { "name": "get_weather", "arguments": "{\"city\": \"Par" } }],
        }}],
        "usage": { "prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29 },
    });
    Behavior::Raw {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

async fn backups(http: &reqwest::Client, base: &str) -> Vec<Value> {
    let response = http
        .get(format!("{base}/admin/v1/backups"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("backups");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("json");
    body["data"].as_array().cloned().unwrap_or_default()
}

/// The report of backup `name` once `done(report)` holds (or after 20 s).
async fn report_when(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = backups(http, base).await;
        let report = all
            .into_iter()
            .find(|b| b["name"] == name)
            .expect("the backup is reported");
        if done(&report) || Instant::now() > deadline {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_returning_malformed_tool_calls_fails_its_shape_check_and_the_caller_never_knows()
{
    let alpha = MockProvider::start(Flavor::OpenAi).await;
    let beta = MockProvider::start(Flavor::OpenAi).await;
    alpha.set_default(Behavior::ToolCall {
        name: "get_weather".into(),
        arguments: json!({ "city": "Paris" }),
    });
    beta.set_default(Behavior::Text("from beta".into()));
    let gateway = start_gateway(
        "backups.toml",
        &config(&alpha, &beta),
        &[
            ("SWITCHYARD_ADMIN_TOKEN", ADMIN),
            ("UPSTREAM_KEY", "sk-upstream"),
        ],
    )
    .await;
    let base = format!("http://{}", gateway.addr);
    let http = reqwest::Client::new();
    let chat = |key: &'static str, body: Value| {
        let (http, url) = (http.clone(), format!("{base}/v1/chat/completions"));
        async move {
            let response = http
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .expect("chat");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("json"))
        }
    };

    // 1. The backup's tool call is cut off mid-JSON; then it calls the tool
    //    with a number for a string. Both fail the tool-schema check.
    beta.push(truncated_tool_call());
    beta.push(Behavior::ToolCall {
        name: "get_weather".into(),
        arguments: json!({ "city": 42 }),
    });
    for n in 1..=2u64 {
        let (status, body) = chat(TOOLS_KEY, weather_request(&[])).await;
        // The caller gets the primary's answer, untouched.
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["switchyard"]["provider"], "alpha", "{body}");
        let call = &body["choices"][0]["message"]["tool_calls"][0]["function"];
        assert_eq!(call["name"], "get_weather");
        assert_eq!(
            serde_json::from_str::<Value>(call["arguments"].as_str().unwrap_or("")).ok(),
            Some(json!({ "city": "Paris" }))
        );
        let report = report_when(&http, &base, "tools:beta/gpt-4o", |r| {
            r["answered"].as_u64() >= Some(n)
        })
        .await;
        assert_eq!(report["answered"], n, "{report}");
    }
    let report = report_when(&http, &base, "tools:beta/gpt-4o", |r| r["flagged"] == true).await;
    assert_eq!(report["mirrored"], 2, "{report}");
    assert_eq!(report["passed"], 0);
    assert_eq!(report["failed"], 2);
    assert_eq!(report["checks_failed"]["invalid_tool_arguments"], 2);
    assert_eq!(report["primary_failed"], 0, "the primary's own calls pass");
    assert_eq!(report["flagged"], true);
    assert_eq!(report["excluded"], true);
    assert!(
        report["last_failure"]
            .as_str()
            .is_some_and(|m| m.contains("get_weather") && m.contains("42")),
        "{report}"
    );
    assert!(report["latency_ms"]["backup"].as_f64().is_some());
    assert!(
        report["cost_usd"]["backup"]
            .as_f64()
            .is_some_and(|c| c > 0.0)
    );
    assert_eq!(beta.hits(), 2);

    // The same in /metrics.
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            r#"switchyard_backup_checks_total{backup="tools:beta/gpt-4o",result="invalid_tool_arguments"} 2"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(r#"switchyard_backup_flagged{backup="tools:beta/gpt-4o"} 1"#));

    // 2. Flagged and `exclude_failing`: when the primary fails, the request
    //    no longer falls back to the backup.
    alpha.push(Behavior::Error {
        status: 500,
        message: "alpha is down".into(),
    });
    let (status, body) = chat(TOOLS_KEY, weather_request(&["gpt-4o"])).await;
    assert_ne!(status, 200, "{body}");
    let trail = body["switchyard"]["trail"].to_string();
    assert!(!trail.contains("beta"), "{body}");
    assert_eq!(beta.hits(), 2, "nothing was sent to the flagged backup");

    // Explain names the filter.
    let explained: Value = http
        .post(format!("{base}/admin/v1/teams/tools/explain"))
        .bearer_auth(ADMIN)
        .json(&weather_request(&["gpt-4o"]))
        .send()
        .await
        .expect("explain")
        .json()
        .await
        .expect("json");
    let removed = explained["removed"].as_array().expect("removed");
    assert!(
        removed
            .iter()
            .any(|r| r["id"] == "beta/gpt-4o" && r["filter"] == "backup_failing"),
        "{explained}"
    );

    // 3. A slow backup does not slow the caller down.
    beta.push(Behavior::Slow {
        delay_ms: 3000,
        text: "late".into(),
    });
    let started = Instant::now();
    let (status, body) = chat(TOOLS_KEY, weather_request(&[])).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "the caller waited for the backup: {:?}",
        started.elapsed()
    );

    // 4. A daily spend cap: the first mirrored call spends more than the
    //    cap, so the next request is not mirrored.
    alpha.set_default(Behavior::Text("from alpha".into()));
    let plain = json!({
        "model": "gpt-4o-mini",
        "messages": [{ "role": "user", "content": "hello" }],
    });
    let (status, _) = chat(CAPPED_KEY, plain.clone()).await;
    assert_eq!(status, 200);
    let capped = report_when(&http, &base, "capped-beta", |r| r["answered"] == 1).await;
    assert_eq!(capped["passed"], 1, "{capped}");
    assert!(capped["spent_today_usd"].as_f64().is_some_and(|s| s > 0.0));
    let (status, _) = chat(CAPPED_KEY, plain).await;
    assert_eq!(status, 200);
    let capped = report_when(&http, &base, "capped-beta", |r| {
        r["skipped"]["daily_cap"] == 1
    })
    .await;
    assert_eq!(capped["skipped"]["daily_cap"], 1, "{capped}");
    assert_eq!(capped["mirrored"], 1);

    // The report is the operator's.
    let response = http
        .get(format!("{base}/admin/v1/backups"))
        .bearer_auth(TOOLS_KEY)
        .send()
        .await
        .expect("backups");
    assert_eq!(response.status().as_u16(), 401);
    gateway.shutdown().await.expect("shutdown");
}
