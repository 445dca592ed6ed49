//! The request log: one record per request with what the policy saw and
//! decided, every attempt and what the caller received; read through
//! `GET /admin/v1/log` and `switchyard log export`; prompt text only for a
//! team whose prompts the operator logs.

use serde_json::{Value, json};
use switchyard::request_log::Record;
use switchyard_tests::mock::{Behavior, Flavor, MockProvider};
use switchyard_tests::{cli_binary, start_gateway};

const ADMIN: &str = "admin-secret";
const QUIET_KEY: &str = "sk-team-quiet";
const LOUD_KEY: &str = "sk-team-loud";
/// Words that must never reach the log of a team whose prompts are not kept.
const SECRET_PROMPT: &str = "the launch codes are swordfish";

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
        [teams.quiet]
        key_sha256 = ["{quiet}"]
        [teams.loud]
        key_sha256 = ["{loud}"]
        log_prompts = true
        [log]
        prompt_bytes = 24
        "#,
        alpha = alpha.base_url(),
        beta = beta.base_url(),
        quiet = switchyard::config::hash_key(QUIET_KEY),
        loud = switchyard::config::hash_key(LOUD_KEY),
    )
}

async fn post(http: &reqwest::Client, url: &str, key: &str, body: Value) -> (u16, String) {
    let response = http
        .post(url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

async fn log_page(http: &reqwest::Client, base: &str, query: &str, token: &str) -> (u16, Value) {
    let response = http
        .get(format!("{base}/admin/v1/log{query}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("log");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_logged_with_what_the_policy_saw_and_what_the_caller_got() {
    let alpha = MockProvider::start(Flavor::OpenAi).await;
    let beta = MockProvider::start(Flavor::OpenAi).await;
    alpha.set_default(Behavior::Text("from alpha".into()));
    beta.set_default(Behavior::Text("from beta".into()));
    let gateway = start_gateway(
        "log.toml",
        &config(&alpha, &beta),
        &[
            ("SWITCHYARD_ADMIN_TOKEN", ADMIN),
            ("UPSTREAM_KEY", "sk-upstream"),
        ],
    )
    .await;
    let base = format!("http://{}", gateway.addr);
    let chat = format!("{base}/v1/chat/completions");
    let http = reqwest::Client::new();
    let ask = |text: &str| {
        json!({
            "model": "gpt-4o-mini",
            "messages": [
                { "role": "system", "content": "You are terse and careful." },
                { "role": "user", "content": text },
            ],
            "routing": { "models": ["gpt-4o"] },
        })
    };

    // 1. alpha fails, beta serves: two attempts.
    alpha.push(Behavior::Error {
        status: 500,
        message: "alpha is down".into(),
    });
    let (status, body) = post(&http, &chat, QUIET_KEY, ask(SECRET_PROMPT)).await;
    assert_eq!(status, 200, "{body}");
    // 2. A stream.
    let mut streamed = ask(SECRET_PROMPT);
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({ "include_usage": true });
    let (status, body) = post(&http, &chat, QUIET_KEY, streamed).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("[DONE]"), "{body}");
    // 3. A model no account serves: refused before any attempt (424).
    let (status, body) = post(
        &http,
        &chat,
        QUIET_KEY,
        json!({ "model": "claude-haiku-4-5", "messages": [{ "role": "user", "content": SECRET_PROMPT }] }),
    )
    .await;
    assert_eq!(status, 424, "{body}");
    // 4. The team whose prompts are kept.
    let (status, body) = post(
        &http,
        &chat,
        LOUD_KEY,
        ask("a prompt longer than twenty-four bytes"),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // The quiet team's records, newest first.
    let (status, page) = log_page(&http, &base, "?team=quiet", ADMIN).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["object"], "list");
    assert_eq!(page["schema"], 1);
    assert_eq!(page["has_more"], false);
    let records: Vec<Record> =
        serde_json::from_value(page["data"].clone()).expect("records match the schema");
    assert_eq!(records.len(), 3, "{page}");
    let (refused, stream, failover) = (&records[0], &records[1], &records[2]);
    assert!(records.iter().all(|r| r.team == "quiet" && r.api == "chat"));
    assert!(records.iter().all(|r| r.schema == 1 && r.id.len() == 32));
    assert!(failover.time_ms <= stream.time_ms && stream.time_ms <= refused.time_ms);

    // What the policy saw: the request, the candidates with their prices.
    assert_eq!(failover.request.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(failover.request.routing.models, ["gpt-4o"]);
    assert_eq!(failover.request.team.as_deref(), Some("quiet"));
    assert!(
        failover
            .request
            .estimated_input_tokens
            .is_some_and(|n| n > 0)
    );
    let ids: Vec<&str> = failover.candidates.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["alpha/gpt-4o-mini", "beta/gpt-4o"]);
    let mini = &failover.candidates[0];
    assert_eq!((mini.price.input, mini.price.output), (0.15, 0.6));
    assert_eq!(mini.provider.as_deref(), Some("alpha"));
    // What it decided.
    let decision = failover.decision.as_ref().expect("decision");
    assert_eq!(decision.policy, "default");
    assert_eq!(decision.contract, "0.2.0");
    assert!(decision.label.is_some());
    let plan: Vec<&str> = decision.plan.iter().map(|s| s.candidate.as_str()).collect();
    assert_eq!(plan, ["alpha/gpt-4o-mini", "beta/gpt-4o"]);
    assert!(!decision.explanation.is_empty());
    // Every attempt, and what the caller received.
    let trail: Vec<(&str, &str, Option<u16>)> = failover
        .attempts
        .iter()
        .map(|a| (a.provider.as_str(), a.reason.as_str(), a.status))
        .collect();
    assert_eq!(
        trail,
        [
            ("alpha", "upstream_error", Some(500)),
            ("beta", "ok", Some(200))
        ]
    );
    assert!(failover.attempts.iter().all(|a| a.latency_ms.is_some()));
    let result = &failover.result;
    assert_eq!(result.status, 200);
    assert_eq!(result.provider.as_deref(), Some("beta"));
    assert_eq!(result.model.as_deref(), Some("gpt-4o"));
    let (input, output) = (
        result.input_tokens.expect("input"),
        result.output_tokens.expect("output"),
    );
    assert!(input > 0 && output > 0);
    // gpt-4o: $2.50 / $10 per 1M tokens.
    let cost = (input as f64 * 2.5 + output as f64 * 10.0) / 1e6;
    assert!((result.cost_usd.expect("cost") - cost).abs() < 1e-12);
    assert!(result.duration_ms > 0.0);

    // The stream: usage and cost known at its end, its first token's time.
    assert!(stream.stream);
    assert!(stream.result.provider.is_some());
    assert!(stream.result.output_tokens.is_some_and(|n| n > 0));
    assert!(stream.result.cost_usd.is_some_and(|c| c > 0.0));
    let ttft = stream.result.ttft_ms.expect("ttft");
    assert!(ttft > 0.0 && ttft <= stream.result.duration_ms);
    assert!(!stream.result.stream_broken && !stream.result.client_closed);
    // The metric values the policy read are the ones the failover left:
    // alpha has a failure on record by now.
    assert!(
        stream
            .metrics
            .keys()
            .all(|id| stream.candidates.iter().any(|c| &c.id == id)),
        "{:?}",
        stream.metrics
    );

    // The refusal: the caller's status and code, no attempt.
    assert_eq!(refused.result.status, 424);
    assert_eq!(refused.result.code.as_deref(), Some("no_provider"));
    assert!(refused.attempts.is_empty());
    assert_eq!(refused.request.model.as_deref(), Some("claude-haiku-4-5"));

    // No prompt text for the quiet team, anywhere in its records.
    assert!(!page.to_string().contains("swordfish"), "{page}");
    assert!(records.iter().all(|r| r.request.prompt.is_none()));
    // The loud team's prompts are kept, cut to [log] prompt_bytes.
    let (_, loud) = log_page(&http, &base, "?team=loud", ADMIN).await;
    let loud: Vec<Record> = serde_json::from_value(loud["data"].clone()).expect("records");
    assert_eq!(loud.len(), 1);
    assert_eq!(
        loud[0].request.prompt.as_deref(),
        Some("a prompt longer than twe")
    );
    assert_eq!(
        loud[0].request.system.as_deref(),
        Some("You are terse and carefu")
    );

    // Filters and paging.
    let (_, page) = log_page(&http, &base, "?team=quiet&status=424", ADMIN).await;
    assert_eq!(page["data"].as_array().map(Vec::len), Some(1), "{page}");
    let (_, page) = log_page(&http, &base, "?provider=beta&since=1h", ADMIN).await;
    let served_by_beta: Vec<&str> = page["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(served_by_beta, [failover.id.as_str()], "{page}");
    let (_, first) = log_page(&http, &base, "?limit=2&order=oldest", ADMIN).await;
    assert_eq!(first["has_more"], true);
    let cursor = first["next_cursor"].as_i64().expect("cursor");
    let (_, rest) = log_page(
        &http,
        &base,
        &format!("?limit=2&order=oldest&cursor={cursor}"),
        ADMIN,
    )
    .await;
    assert_eq!(rest["has_more"], false);
    let order: Vec<&str> = first["data"]
        .as_array()
        .into_iter()
        .chain(rest["data"].as_array())
        .flatten()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(order.len(), 4);
    let mut sorted = order.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 4, "pages overlap: {order:?}");

    // Bad queries are the caller's errors, in the admin API's shape.
    for (query, param) in [
        ("?limit=0", "limit"),
        ("?since=yesterday", "since"),
        ("?order=random", "order"),
    ] {
        let (status, body) = log_page(&http, &base, query, ADMIN).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["param"], param, "{body}");
    }
    // A team key is not an admin credential.
    let (status, _) = log_page(&http, &base, "?team=quiet", QUIET_KEY).await;
    assert_eq!(status, 401);

    // `switchyard log export`: JSON Lines, oldest first, every record.
    let out = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            std::process::Command::new(cli_binary())
                .args([
                    "log", "export", "--url", &base, "--team", "quiet", "--since", "7d",
                ])
                .env("SWITCHYARD_ADMIN_TOKEN", ADMIN)
                .output()
                .expect("run switchyard log export")
        }
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let exported: Vec<Record> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is a record"))
        .collect();
    let newest_first: Vec<Record> = records.iter().rev().cloned().collect();
    assert_eq!(exported, newest_first);
    assert!(!text.contains("swordfish"));

    // The writer's counters.
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("switchyard_request_log_records_total 4"),
        "{metrics}"
    );
    assert!(metrics.contains("switchyard_request_log_dropped_total 0"));
    gateway.shutdown().await.expect("shutdown");
}
