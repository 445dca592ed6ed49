//! Shadow policies: an uploaded version attached beside a team's active one
//! decides on the team's live requests without routing any of them; its
//! decisions land in the request log, the admin API reports its agreement,
//! estimated cost and faults since it was attached, and `promote` makes it
//! the active version in one call.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard::request_log::Record;
use switchyard_tests::mock::{Behavior, Flavor, MockProvider};
use switchyard_tests::{guest, run_cli, start_gateway, temp_store};

const ADMIN: &str = "admin-secret";

fn config(alpha: &MockProvider, beta: &MockProvider, store: &std::path::Path) -> String {
    format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [routing]
        backoff_base_ms = 1
        backoff_max_ms = 5
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
        [store]
        path = "{store}"
        "#,
        alpha = alpha.base_url(),
        beta = beta.base_url(),
        store = store.display(),
    )
}

struct Env {
    base: String,
    http: reqwest::Client,
}

impl Env {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("admin call");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json"))
    }

    async fn upload(&self, name: &str, activate: bool) -> u64 {
        let response = self
            .http
            .post(format!(
                "{}/admin/v1/teams/t/policies?activate={activate}",
                self.base
            ))
            .bearer_auth(ADMIN)
            .header("content-type", "application/wasm")
            .body(guest(name))
            .send()
            .await
            .expect("upload");
        assert_eq!(response.status().as_u16(), 201);
        let body: Value = response.json().await.expect("json");
        body["version"].as_u64().expect("version")
    }

    async fn chat(&self, key: &str, text: &str) -> Value {
        let response = self
            .http
            .post(format!("{}/v1/chat/completions", self.base))
            .bearer_auth(key)
            .json(&json!({
                "model": "gpt-4o-mini",
                "messages": [{ "role": "user", "content": text }],
                "routing": { "models": ["gpt-4o"] },
            }))
            .send()
            .await
            .expect("chat");
        assert_eq!(response.status().as_u16(), 200);
        response.json().await.expect("json")
    }

    /// The shadow report, once it has decided on `n` requests.
    async fn shadow_after(&self, n: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.call("GET", "/admin/v1/teams/t/shadow", None).await;
            assert_eq!(status, 200, "{body}");
            if body["records"].as_u64() >= Some(n) || Instant::now() > deadline {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn switchyard(&self, args: &[&str]) -> (i32, String, String) {
        let mut all = args.to_vec();
        all.extend(["--url", self.base.as_str()]);
        run_cli(&all, ADMIN).await
    }
}

fn at(record: &Record, input: f64, output: f64) -> f64 {
    let r = &record.result;
    (r.input_tokens.expect("input") as f64 * input
        + r.output_tokens.expect("output") as f64 * output)
        / 1e6
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_decides_beside_the_live_policy_without_routing_and_is_promoted_in_one_call() {
    let alpha = MockProvider::start(Flavor::OpenAi).await;
    let beta = MockProvider::start(Flavor::OpenAi).await;
    alpha.set_default(Behavior::Text("from alpha".into()));
    beta.set_default(Behavior::Text("from beta".into()));
    let store = temp_store();
    let gateway = start_gateway(
        "shadow.toml",
        &config(&alpha, &beta, &store),
        &[
            ("SWITCHYARD_ADMIN_TOKEN", ADMIN),
            ("UPSTREAM_KEY", "sk-upstream"),
        ],
    )
    .await;
    let env = Env {
        base: format!("http://{}", gateway.addr),
        http: reqwest::Client::new(),
    };
    let (status, body) = env
        .call("POST", "/admin/v1/teams", Some(json!({ "name": "t" })))
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, body) = env
        .call(
            "POST",
            "/admin/v1/teams/t/keys",
            Some(json!({ "scope": "api" })),
        )
        .await;
    let key = body["key"].as_str().expect("key").to_owned();
    // Live: everything to alpha. Uploaded beside it: everything to beta.
    assert_eq!(env.upload("pin_alpha", true).await, 1);
    assert_eq!(env.upload("pin_beta", false).await, 2);

    // Refusals, in the admin API's shape.
    for (body, status, code) in [
        (json!({ "version": 1 }), 409, "shadow_is_active"),
        (json!({ "version": 9 }), 404, "policy_version_not_found"),
        (json!({ "version": 2, "sample": 0 }), 400, "invalid_request"),
        (json!({ "version": 2, "rate": 1 }), 400, "invalid_request"),
    ] {
        let (got, answer) = env
            .call("PUT", "/admin/v1/teams/t/shadow", Some(body.clone()))
            .await;
        assert_eq!(got, status, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
    }
    let (status, answer) = env.call("GET", "/admin/v1/teams/t/shadow", None).await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (404, &json!("no_shadow"))
    );

    let (code, out, err) = env
        .switchyard(&["policy", "shadow", "attach", "--team", "t", "2"])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    let (_, team) = env.call("GET", "/admin/v1/teams/t", None).await;
    assert_eq!(team["shadow"]["version"], 2, "{team}");
    assert_eq!(team["shadow"]["sample"], 1.0);

    for text in ["one", "two, longer", "three", "four and longer still"] {
        let answer = env.chat(&key, text).await;
        assert_eq!(answer["switchyard"]["provider"], "alpha", "{answer}");
    }
    let report = env.shadow_after(4).await;
    // The shadow never sent anything anywhere.
    assert_eq!(beta.hits(), 0);
    assert_eq!(alpha.hits(), 4);
    assert_eq!(report["version"], 2, "{report}");
    assert_eq!(report["active_version"], 1);
    assert_eq!(report["records"], 4);
    assert_eq!(report["replayed"], 4);
    assert_eq!(report["agree_first"], 0);
    assert_eq!(report["agree_served"], 0);
    assert_eq!(report["faults"], json!({}));
    assert_eq!(report["labels"]["pin-beta"]["replayed"], 4);
    assert_eq!(report["labels"]["pin-alpha"]["recorded"], 4);

    // Its decisions are in the log, beside the live ones.
    let (status, page) = env
        .call("GET", "/admin/v1/log?team=t&order=oldest", None)
        .await;
    assert_eq!(status, 200, "{page}");
    let records: Vec<Record> = serde_json::from_value(page["data"].clone()).expect("records");
    assert_eq!(records.len(), 4);
    for r in &records {
        let live = r.decision.as_ref().expect("live decision");
        assert_eq!(live.plan[0].candidate, "alpha/gpt-4o-mini");
        let shadow = r.shadow.as_ref().expect("shadow decision");
        assert_eq!(shadow.policy, "v2");
        assert_eq!(shadow.decision.plan[0].candidate, "beta/gpt-4o");
        assert_eq!(shadow.decision.label.as_deref(), Some("pin-beta"));
        assert!(!shadow.decision.agrees_first);
        let cost = shadow.decision.cost_usd.expect("cost at recorded usage");
        assert!((cost - at(r, 2.5, 10.0)).abs() < 1e-12);
    }
    // The estimated cost delta: gpt-4o's prices on the tokens alpha's
    // gpt-4o-mini used, against what was spent.
    let spent: f64 = records.iter().map(|r| at(r, 0.15, 0.6)).sum();
    let shadowed: f64 = records.iter().map(|r| at(r, 2.5, 10.0)).sum();
    let figure = |v: &Value| v.as_f64().expect("number");
    assert!((figure(&report["cost"]["spent_usd"]) - spent).abs() < 1e-12);
    assert!((figure(&report["cost"]["delta_usd"]) - (shadowed - spent)).abs() < 1e-12);

    // The CLI's status says the same.
    let (code, out, err) = env
        .switchyard(&["policy", "shadow", "status", "--team", "t"])
        .await;
    assert_eq!(code, 0, "{err}");
    let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("shadow v2 beside v1"), "{out}");
    assert!(flat.contains("first attempt 0 of 4 0.0%"), "{out}");

    // Promote: one call, and the next request goes where the shadow said.
    let (code, out, err) = env
        .switchyard(&["policy", "shadow", "promote", "--team", "t"])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    let answer = env.chat(&key, "after the promotion").await;
    assert_eq!(answer["switchyard"]["provider"], "beta", "{answer}");
    assert_eq!(beta.hits(), 1);
    let (_, team) = env.call("GET", "/admin/v1/teams/t", None).await;
    assert_eq!(team["policy"]["active_version"], 2, "{team}");
    assert_eq!(team["shadow"], Value::Null);
    let (status, _) = env.call("GET", "/admin/v1/teams/t/shadow", None).await;
    assert_eq!(status, 404);
    // Rollback returns to the version the promotion replaced.
    let (code, _, err) = env.switchyard(&["policy", "rollback", "--team", "t"]).await;
    assert_eq!(code, 0, "{err}");
    let answer = env.chat(&key, "after the rollback").await;
    assert_eq!(answer["switchyard"]["provider"], "alpha", "{answer}");

    // A shadow that traps is counted by fault kind; the live requests
    // never notice.
    assert_eq!(env.upload("hostile_v0_2", false).await, 3);
    let (status, body) = env
        .call(
            "PUT",
            "/admin/v1/teams/t/policy-config",
            Some(json!({ "mode": "trap" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = env
        .call(
            "PUT",
            "/admin/v1/teams/t/shadow",
            Some(json!({ "version": 3 })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["records"], 0, "a new attachment starts afresh: {body}");
    for text in ["five", "six"] {
        let answer = env.chat(&key, text).await;
        assert_eq!(answer["switchyard"]["provider"], "alpha", "{answer}");
    }
    let report = env.shadow_after(2).await;
    let faults: u64 = report["faults"]
        .as_object()
        .expect("faults")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(faults, 2, "{report}");
    assert_eq!(report["agree_first"], 0);
    // Detach: the team runs without one.
    let (code, out, err) = env
        .switchyard(&["policy", "shadow", "detach", "--team", "t"])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("shadow v3 detached"), "{out}");
    let (status, _) = env.call("GET", "/admin/v1/teams/t/shadow", None).await;
    assert_eq!(status, 404);
    gateway.shutdown().await.expect("shutdown");
}
