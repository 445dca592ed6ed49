//! `switchyard policy replay`: traffic through the gateway, exported from
//! its request log, replayed offline through another policy; the agreement
//! and cost figures it reports are checked against figures computed here
//! from the records by hand.

use serde_json::{Value, json};
use switchyard::request_log::Record;
use switchyard_tests::mock::{Behavior, Flavor, MockProvider};
use switchyard_tests::{guest_dir, run_cli, start_gateway, temp_store};

const ADMIN: &str = "admin-secret";
const QUIET_KEY: &str = "sk-team-quiet";
const LOUD_KEY: &str = "sk-team-loud";

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
        "#,
        alpha = alpha.base_url(),
        beta = beta.base_url(),
        quiet = switchyard::config::hash_key(QUIET_KEY),
        loud = switchyard::config::hash_key(LOUD_KEY),
    )
}

/// What a record's tokens cost at `input`/`output` dollars per 1M tokens.
fn at(record: &Record, input: f64, output: f64) -> f64 {
    let r = &record.result;
    (r.input_tokens.expect("input tokens") as f64 * input
        + r.output_tokens.expect("output tokens") as f64 * output)
        / 1e6
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_traffic_replays_through_another_policy_with_hand_checked_figures() {
    let alpha = MockProvider::start(Flavor::OpenAi).await;
    let beta = MockProvider::start(Flavor::OpenAi).await;
    alpha.set_default(Behavior::Text("from alpha, a little longer".into()));
    beta.set_default(Behavior::Text("from beta".into()));
    let gateway = start_gateway(
        "replay.toml",
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
    let post = |key: &'static str, body: Value| {
        let (http, chat) = (http.clone(), chat.clone());
        async move {
            let response = http
                .post(chat)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .expect("request");
            let status = response.status().as_u16();
            (status, response.text().await.expect("body"))
        }
    };
    let ask = |text: &str| {
        json!({
            "model": "gpt-4o-mini",
            "messages": [
                { "role": "system", "content": "Be brief." },
                { "role": "user", "content": text },
            ],
            "routing": { "models": ["gpt-4o"] },
        })
    };

    // The quiet team: alpha fails once (beta serves), then alpha serves
    // three requests of different sizes; one request no account serves.
    alpha.push(Behavior::Error {
        status: 500,
        message: "alpha is down".into(),
    });
    for text in [
        "first",
        "second, a bit longer",
        "third",
        "fourth and the longest of them all",
    ] {
        let (status, body) = post(QUIET_KEY, ask(text)).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = post(
        QUIET_KEY,
        json!({ "model": "claude-haiku-4-5", "messages": [{ "role": "user", "content": "hi" }] }),
    )
    .await;
    assert_eq!(status, 424, "{body}");
    // The loud team, whose prompts the operator logs.
    let (status, body) = post(LOUD_KEY, ask("What is 2+2?")).await;
    assert_eq!(status, 200, "{body}");

    let dir = temp_store().with_extension("replay");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let log = dir.join("log.jsonl");
    let log_arg = log.display().to_string();
    let (code, _, stderr) = run_cli(
        &[
            "log", "export", "--url", &base, "--since", "1h", "--out", &log_arg,
        ],
        ADMIN,
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let records: Vec<Record> = std::fs::read_to_string(&log)
        .expect("log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a record"))
        .collect();
    let quiet: Vec<&Record> = records.iter().filter(|r| r.team == "quiet").collect();
    assert_eq!(quiet.len(), 5);
    let decided: Vec<&Record> = quiet
        .iter()
        .copied()
        .filter(|r| r.decision.is_some())
        .collect();
    assert_eq!(decided.len(), 4, "the 424 ended before a policy ran");
    let failover = decided[0];
    assert_eq!(failover.result.provider.as_deref(), Some("beta"));
    assert!(
        decided[1..]
            .iter()
            .all(|r| r.result.provider.as_deref() == Some("alpha"))
    );
    let mut live_labels = std::collections::BTreeMap::<String, u64>::new();
    for r in &decided {
        let label = r.decision.as_ref().and_then(|d| d.label.clone());
        *live_labels
            .entry(label.expect("the default policy labels its plans"))
            .or_default() += 1;
    }

    // gpt-4o-mini: $0.15 / $0.60 per 1M tokens; gpt-4o: $2.50 / $10.
    let spent: f64 =
        at(failover, 2.5, 10.0) + decided[1..].iter().map(|r| at(r, 0.15, 0.6)).sum::<f64>();
    let recorded: f64 = decided.iter().filter_map(|r| r.result.cost_usd).sum();
    assert!(close(spent, recorded), "{spent} vs {recorded}");
    let all_on_beta: f64 = decided.iter().map(|r| at(r, 2.5, 10.0)).sum();

    // 1. A policy that sends everything to beta: it never agrees on the
    // first attempt (the live plans all start on alpha), matches what
    // served the caller once (the failover), and costs gpt-4o prices on
    // every record's tokens.
    let pin_beta = guest_dir().join("pin_beta.wasm").display().to_string();
    let decisions = dir.join("decisions.jsonl");
    let (code, stdout, stderr) = run_cli(
        &[
            "policy",
            "replay",
            &pin_beta,
            "--log",
            &log_arg,
            "--team",
            "quiet",
            "--json",
            "--out",
            &decisions.display().to_string(),
        ],
        ADMIN,
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let summary: Value = serde_json::from_str(&stdout).expect("a JSON summary");
    assert_eq!(summary["records"], 5, "{summary}");
    assert_eq!(summary["replayed"], 4);
    assert_eq!(summary["without_decision"], 1);
    assert_eq!(summary["agree_first"], 0);
    assert_eq!(summary["agree_plan"], 0);
    assert_eq!(summary["agree_served"], 1);
    assert_eq!(summary["cost"]["records"], 4);
    let figure = |v: &Value| v.as_f64().expect("a number");
    let spent_reported = figure(&summary["cost"]["spent_usd"]);
    assert!(close(spent_reported, spent));
    assert!(close(figure(&summary["cost"]["replayed_usd"]), all_on_beta));
    assert!(close(
        figure(&summary["cost"]["delta_usd"]),
        all_on_beta - spent
    ));
    assert_eq!(
        summary["models"],
        json!({
            "gpt-4o": { "recorded": 1, "replayed": 4 },
            "gpt-4o-mini": { "recorded": 3, "replayed": 0 },
        })
    );
    assert_eq!(summary["labels"]["pin-beta"]["replayed"], 4);
    for (label, n) in &live_labels {
        assert_eq!(summary["labels"][label]["recorded"], *n, "{summary}");
    }
    assert_eq!(summary["faults"], json!({}));
    assert!(
        summary["decision_us"]["p50"]
            .as_f64()
            .is_some_and(|t| t > 0.0)
    );
    // One line per replayed record, for a team's own evaluation.
    let lines: Vec<Value> = std::fs::read_to_string(&decisions)
        .expect("decisions")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let ids: Vec<&str> = lines.iter().filter_map(|l| l["id"].as_str()).collect();
    let expected: Vec<&str> = decided.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, expected);
    for (line, record) in lines.iter().zip(&decided) {
        assert_eq!(line["plan"][0]["candidate"], "beta/gpt-4o", "{line}");
        assert_eq!(line["label"], "pin-beta");
        assert_eq!(line["agrees_first"], false);
        assert!(close(figure(&line["cost_usd"]), at(record, 2.5, 10.0)));
    }
    // The report for a terminal says the same.
    let (code, text, stderr) = run_cli(
        &[
            "policy", "replay", &pin_beta, "--log", &log_arg, "--team", "quiet",
        ],
        ADMIN,
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("first attempt 0 of 4 0.0%"), "{text}");
    assert!(flat.contains("first = served 1 of 4 25.0%"), "{text}");
    assert!(
        flat.contains(&format!("spent ${spent_reported:.6}")),
        "{text}"
    );

    // 2. The bundled policy, which decided live, on the same inputs: it
    // agrees everywhere, and its first choice for the failover record
    // would have cost gpt-4o-mini prices.
    let (code, stdout, stderr) = run_cli(
        &[
            "policy",
            "replay",
            "builtin:default",
            "--log",
            &log_arg,
            "--team",
            "quiet",
            "--json",
        ],
        ADMIN,
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let summary: Value = serde_json::from_str(&stdout).expect("a JSON summary");
    assert_eq!(summary["agree_first"], 4, "{summary}");
    assert_eq!(summary["agree_plan"], 4);
    assert_eq!(summary["agree_served"], 3);
    assert!(close(
        figure(&summary["cost"]["delta_usd"]),
        at(failover, 0.15, 0.6) - at(failover, 2.5, 10.0)
    ));

    // 3. Straight from the gateway (`--url`): the same figures.
    let (code, from_url, stderr) = run_cli(
        &[
            "policy", "replay", &pin_beta, "--url", &base, "--team", "quiet", "--json",
        ],
        ADMIN,
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let from_url: Value = serde_json::from_str(&from_url).expect("JSON");
    assert_eq!(from_url["agree_served"], 1, "{from_url}");
    assert!(close(
        figure(&from_url["cost"]["replayed_usd"]),
        all_on_beta
    ));

    // 4. A log with prompt text feeds content signals to a policy that
    // declares it reads them; the quiet team's records carry none.
    let probe = guest_dir().join("content_probe.wasm").display().to_string();
    let probe_config = dir.join("probe.json");
    std::fs::write(&probe_config, r#"{"mode": "content"}"#).expect("write");
    let labels = dir.join("labels.jsonl");
    let (code, _, stderr) = run_cli(
        &[
            "policy",
            "replay",
            &probe,
            "--log",
            &log_arg,
            "--config",
            &probe_config.display().to_string(),
            "--content-bytes",
            "6",
            "--out",
            &labels.display().to_string(),
        ],
        ADMIN,
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let labels: Vec<(String, String)> = std::fs::read_to_string(&labels)
        .expect("labels")
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("JSON");
            (
                v["team"].as_str().unwrap_or("").to_owned(),
                v["label"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let characters = "Be brief.".len() + "What is 2+2?".len();
    assert!(
        labels.contains(&("loud".into(), format!("content:1:{characters}:What i"))),
        "{labels:?}"
    );
    assert_eq!(
        labels
            .iter()
            .filter(|(team, label)| team == "quiet" && label == "content:none")
            .count(),
        4,
        "{labels:?}"
    );

    // 5. A log of another schema is refused, naming the line.
    let future = dir.join("future.jsonl");
    let mut text = std::fs::read_to_string(&log).expect("log");
    text.push_str("{\"schema\": 2, \"id\": \"x\"}\n");
    std::fs::write(&future, text).expect("write");
    let (code, _, stderr) = run_cli(
        &[
            "policy",
            "replay",
            &pin_beta,
            "--log",
            &future.display().to_string(),
        ],
        ADMIN,
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("line {}", records.len() + 1)) && stderr.contains("schema 2"),
        "{stderr}"
    );
    gateway.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}
