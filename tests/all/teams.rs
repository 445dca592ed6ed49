//! End-to-end: teams, keys and per-team policy plugins managed through the
//! admin API of a running gateway on a real SQLite store, in front of mock
//! OpenAI-compatible providers `alpha` and `beta`.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use switchyard::api::Server;
use switchyard::client::AdminClient;
use switchyard_tests::mock::{Behavior, Flavor, MockProvider};
use switchyard_tests::{guest, start_gateway, temp_store};

const ADMIN: &str = "admin-secret";

struct Env {
    gateway: Server,
    alpha: MockProvider,
    beta: MockProvider,
    http: reqwest::Client,
}

fn config(alpha: &MockProvider, beta: &MockProvider, store: &Path, plugins: &str) -> String {
    format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        shutdown_grace_secs = 5
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
        models = ["gpt-4o-mini"]
        [store]
        path = "{store}"
        [plugins]
        {plugins}
        "#,
        alpha = alpha.base_url(),
        beta = beta.base_url(),
        store = store.display(),
    )
}

impl Env {
    async fn start(store: &Path, plugins: &str) -> Env {
        let alpha = MockProvider::start(Flavor::OpenAi).await;
        let beta = MockProvider::start(Flavor::OpenAi).await;
        alpha.set_default(Behavior::Text("from alpha".into()));
        beta.set_default(Behavior::Text("from beta".into()));
        let gateway = Self::gateway(&alpha, &beta, store, plugins).await;
        Env {
            gateway,
            alpha,
            beta,
            http: reqwest::Client::new(),
        }
    }

    async fn gateway(
        alpha: &MockProvider,
        beta: &MockProvider,
        store: &Path,
        plugins: &str,
    ) -> Server {
        start_gateway(
            "teams.toml",
            &config(alpha, beta, store, plugins),
            &[
                ("SWITCHYARD_ADMIN_TOKEN", ADMIN),
                ("UPSTREAM_KEY", "sk-upstream"),
            ],
        )
        .await
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway.addr)
    }

    fn base(&self) -> String {
        format!("http://{}", self.gateway.addr)
    }

    /// An admin call with `token`; returns status and JSON body.
    async fn admin(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        send(request, token).await
    }

    /// Creates a team; returns its API key and its team admin token.
    async fn team(&self, name: &str) -> (String, String) {
        let (status, body) = self
            .admin(
                "POST",
                "/admin/v1/teams",
                ADMIN,
                Some(json!({ "name": name })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let key = |scope: &'static str| async move {
            let (status, body) = self
                .admin(
                    "POST",
                    &format!("/admin/v1/teams/{name}/keys"),
                    ADMIN,
                    Some(json!({ "scope": scope, "label": "test" })),
                )
                .await;
            assert_eq!(status, 201, "{body}");
            body["key"].as_str().expect("key shown once").to_string()
        };
        (key("api").await, key("admin").await)
    }

    /// Uploads a raw component; returns status and body.
    async fn upload_raw(
        &self,
        team: &str,
        token: &str,
        bytes: Vec<u8>,
        query: &str,
    ) -> (u16, Value) {
        let request = self
            .http
            .post(self.url(&format!("/admin/v1/teams/{team}/policies{query}")))
            .header("content-type", "application/wasm")
            .body(bytes);
        send(request, token).await
    }

    /// Uploads a multipart form; returns status and body.
    async fn upload_form(&self, team: &str, token: &str, form: Form) -> (u16, Value) {
        let request = self
            .http
            .post(self.url(&format!("/admin/v1/teams/{team}/policies")))
            .multipart(form);
        send(request, token).await
    }

    /// Uploads and activates a guest component; returns the version.
    async fn push(&self, team: &str, token: &str, guest_name: &str) -> u64 {
        let (status, body) = self
            .upload_raw(team, token, guest(guest_name), "?activate=true&notes=test")
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["active"], true);
        body["version"].as_u64().expect("version")
    }

    /// Sets a team's policy config.
    async fn set_config(&self, team: &str, token: &str, config: Value) {
        let path = format!("/admin/v1/teams/{team}/policy-config");
        let (status, body) = self.admin("PUT", &path, token, Some(config)).await;
        assert_eq!(status, 200, "{body}");
    }

    async fn chat(&self, key: &str) -> (u16, Value) {
        chat(&self.http, &self.url("/v1/chat/completions"), key).await
    }
}

/// Sends an admin request with `token`; returns status and JSON body.
async fn send(request: reqwest::RequestBuilder, token: &str) -> (u16, Value) {
    let response = request.bearer_auth(token).send().await.expect("admin call");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json body"))
}

async fn chat(http: &reqwest::Client, url: &str, key: &str) -> (u16, Value) {
    let response = http
        .post(url)
        .bearer_auth(key)
        .json(&json!({
            "model": "gpt-4o-mini",
            "messages": [{ "role": "user", "content": "hello" }],
        }))
        .send()
        .await
        .expect("chat");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json body"))
}

fn provider(body: &Value) -> &str {
    body["switchyard"]["provider"].as_str().unwrap_or("none")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_teams_route_by_their_own_plugins_and_swap_versions_under_load() {
    let env = Env::start(&temp_store(), "").await;
    let (a_key, a_admin) = env.team("a").await;
    let (b_key, b_admin) = env.team("b").await;
    assert_eq!(env.push("a", &a_admin, "pin_alpha").await, 1);
    assert_eq!(env.push("b", &b_admin, "pin_beta").await, 1);

    for _ in 0..3 {
        let (status, body) = env.chat(&a_key).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(provider(&body), "alpha");
        assert_eq!(body["switchyard"]["label"], "pin-alpha");
        let (status, body) = env.chat(&b_key).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(provider(&body), "beta");
    }

    // Version 2 for team a pins beta; stored, not active yet.
    let (status, body) = env
        .upload_raw(
            "a",
            &a_admin,
            guest("pin_beta"),
            "?notes=switch%20to%20beta",
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version"], 2);
    assert_eq!(body["active"], false);
    assert_eq!(provider(&env.chat(&a_key).await.1), "alpha");

    // Hundreds of requests in flight (the providers take 300 ms), then the swap.
    env.alpha.set_default(Behavior::Slow {
        delay_ms: 300,
        text: "from alpha".into(),
    });
    env.beta.set_default(Behavior::Slow {
        delay_ms: 300,
        text: "from beta".into(),
    });
    let url = env.url("/v1/chat/completions");
    let spawn_wave = |n: usize, key: &str| {
        (0..n)
            .map(|_| {
                let (http, url, key) = (env.http.clone(), url.clone(), key.to_string());
                tokio::spawn(async move { chat(&http, &url, &key).await })
            })
            .collect::<Vec<_>>()
    };
    let before = spawn_wave(250, &a_key);
    let others = spawn_wave(50, &b_key);
    // Wait until most of them are at alpha, waiting for its answer.
    let start_hits = env.alpha.hits();
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.alpha.hits() < start_hits + 150 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        env.alpha.hits() >= start_hits + 150,
        "requests at alpha: {}",
        env.alpha.hits() - start_hits
    );
    let (status, body) = env
        .admin(
            "POST",
            "/admin/v1/teams/a/policies/2/activate",
            &a_admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["policy"]["active_version"], 2);
    let after = spawn_wave(100, &a_key);

    let mut before_providers = Vec::new();
    for task in before {
        let (status, body) = task.await.expect("task");
        assert_eq!(status, 200, "a request failed during the swap: {body}");
        before_providers.push(provider(&body).to_string());
    }
    // Those in flight finished on version 1's choice.
    let on_alpha = before_providers.iter().filter(|p| *p == "alpha").count();
    assert!(on_alpha >= 150, "{on_alpha} of 250 on alpha");
    for task in after {
        let (status, body) = task.await.expect("task");
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            provider(&body),
            "beta",
            "a request after the swap used the old version"
        );
        assert_eq!(body["switchyard"]["label"], "pin-beta");
    }
    for task in others {
        let (status, body) = task.await.expect("task");
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            provider(&body),
            "beta",
            "team b was touched by team a's swap"
        );
    }

    // Rollback returns team a to version 1.
    let (status, body) = env
        .admin(
            "POST",
            "/admin/v1/teams/a/policies/rollback",
            &a_admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["policy"]["active_version"], 1);
    env.alpha.set_default(Behavior::Text("from alpha".into()));
    assert_eq!(provider(&env.chat(&a_key).await.1), "alpha");
    // Uploads were kept compiled: activations and the rollback swapped
    // pointers, none compiled a component again.
    let metrics = env
        .http
        .get(env.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("\nswitchyard_policy_compilations_total 0\n"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("compilations"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The versions list says which is active and who uploaded what.
    let (status, body) = env
        .admin("GET", "/admin/v1/teams/a/policies", ADMIN, None)
        .await;
    assert_eq!(status, 200, "{body}");
    let versions = body["data"].as_array().expect("versions");
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["active"], true);
    assert_eq!(versions[1]["notes"], "switch to beta");
    assert_eq!(versions[1]["uploader"], "team-admin:a");
    env.gateway.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_the_same_store_keeps_teams_keys_and_active_versions() {
    let store = temp_store();
    let env = Env::start(&store, "").await;
    let (key, team_admin) = env.team("keeper").await;
    env.push("keeper", &team_admin, "pin_alpha").await;
    env.push("keeper", &team_admin, "pin_beta").await;
    env.set_config("keeper", &team_admin, json!({ "note": "kept" }))
        .await;
    let (status, body) = env.chat(&key).await;
    assert_eq!((status, provider(&body)), (200, "beta"));
    let Env {
        gateway,
        alpha,
        beta,
        http,
    } = env;
    gateway.shutdown().await.expect("shutdown");

    let env = Env {
        gateway: Env::gateway(&alpha, &beta, &store, "").await,
        alpha,
        beta,
        http,
    };
    let (status, body) = env.chat(&key).await;
    assert_eq!(status, 200, "the key did not survive the restart: {body}");
    assert_eq!(provider(&body), "beta");
    let (status, body) = env
        .admin("GET", "/admin/v1/teams/keeper", &team_admin, None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["policy"]["active_version"], 2);
    assert_eq!(body["policy"]["name"], "pin-beta");
    let (_, body) = env
        .admin("GET", "/admin/v1/teams/keeper/policy-config", ADMIN, None)
        .await;
    assert_eq!(body["policy_config"], json!({ "note": "kept" }));
    let (_, body) = env
        .admin("GET", "/admin/v1/teams/keeper/keys", ADMIN, None)
        .await;
    assert_eq!(body["data"].as_array().map(Vec::len), Some(2));
    // Rollback history survived too.
    let (status, body) = env
        .admin(
            "POST",
            "/admin/v1/teams/keeper/policies/rollback",
            ADMIN,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(provider(&env.chat(&key).await.1), "alpha");
    // A revoked key stops working at once.
    let (_, keys) = env
        .admin("GET", "/admin/v1/teams/keeper/keys", ADMIN, None)
        .await;
    let api_id = keys["data"]
        .as_array()
        .and_then(|k| k.iter().find(|k| k["scope"] == "api"))
        .map(|k| k["id"].clone())
        .expect("api key");
    let (status, _) = env
        .admin(
            "DELETE",
            &format!("/admin/v1/teams/keeper/keys/{api_id}"),
            ADMIN,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = env.chat(&key).await;
    assert_eq!(status, 401, "{body}");
    env.gateway.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_and_wrong_credentials_are_refused_by_name() {
    let env = Env::start(&temp_store(), "max_upload_bytes = 1048576").await;
    let (a_key, a_admin) = env.team("a").await;
    env.team("b").await;
    let refused = |status: u16, body: &Value, want_status: u16, want: &str| {
        assert_eq!(status, want_status, "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(want), "{want:?} not in {message:?}");
    };

    let (s, b) = env
        .upload_raw("a", &a_admin, b"this is not wasm".to_vec(), "")
        .await;
    refused(s, &b, 422, "not a WebAssembly file");
    assert_eq!(b["error"]["code"], "invalid_policy");
    let (s, b) = env
        .upload_raw("a", &a_admin, b"\0asm\x01\0\0\0".to_vec(), "")
        .await;
    refused(s, &b, 422, "core WebAssembly module, not a component");
    let (s, b) = env
        .upload_raw("a", &a_admin, guest("other_world"), "")
        .await;
    refused(
        s,
        &b,
        422,
        "does not implement the switchyard:policy@0.1.0 or @0.2.0 `policy` world",
    );
    let (s, b) = env.upload_raw("a", &a_admin, guest("filesystem"), "").await;
    refused(s, &b, 422, "imports wasi:filesystem");
    let (s, b) = env.upload_raw("a", &a_admin, guest("sockets"), "").await;
    refused(s, &b, 422, "imports wasi:sockets");
    refused(
        s,
        &b,
        422,
        "policies get no filesystem, network or HTTP access",
    );
    let (s, b) = env
        .upload_raw("a", &a_admin, guest("future_version"), "")
        .await;
    refused(s, &b, 422, "switchyard:policy@0.9.0");
    let (s, b) = env
        .upload_raw("a", &a_admin, vec![0u8; (1 << 20) + 1], "")
        .await;
    refused(s, &b, 413, "uploads may be at most 1048576 bytes");
    let (s, b) = env.upload_raw("a", &a_admin, vec![0u8; 3 << 20], "").await;
    refused(s, &b, 413, "uploads may be at most 1048576 bytes");

    // A plugin that fails its own case file is not stored.
    let cases = json!({
        "candidates": [{ "id": "alpha/gpt-4o-mini" }, { "id": "beta/gpt-4o-mini" }],
        "cases": [
            { "name": "goes to beta", "request": {}, "expect": { "first": "beta/gpt-4o-mini" } },
            { "name": "labelled", "request": {}, "expect": { "label": "pin-alpha" } },
        ]
    })
    .to_string();
    let form = Form::new()
        .part(
            "component",
            Part::bytes(guest("pin_alpha")).file_name("pin_alpha.wasm"),
        )
        .text("cases", cases);
    let (s, b) = env.upload_form("a", &a_admin, form).await;
    refused(s, &b, 422, "failed 1 of its 2 uploaded cases");
    refused(s, &b, 422, "goes to beta");
    assert_eq!(b["error"]["code"], "policy_cases_failed");
    // An unknown form field, a bad case file and a form without a component are named.
    let (s, b) = env
        .upload_form("a", &a_admin, Form::new().text("plugin", "x"))
        .await;
    refused(s, &b, 400, "Unknown form field \"plugin\"");
    let form = Form::new()
        .part("component", Part::bytes(guest("pin_alpha")))
        .text("cases", "{ not json");
    let (s, b) = env.upload_form("a", &a_admin, form).await;
    refused(s, &b, 400, "invalid case file");
    let (s, b) = env
        .upload_form("a", &a_admin, Form::new().text("notes", "n"))
        .await;
    refused(s, &b, 400, "no `component` field");

    // Nothing was stored by any of these.
    let (_, b) = env
        .admin("GET", "/admin/v1/teams/a/policies", &a_admin, None)
        .await;
    assert_eq!(b["data"], json!([]));

    // Credentials, then bad admin input: (token, method, path, body, status, message).
    let upload_b = env.upload_raw("b", &a_admin, guest("pin_alpha"), "").await;
    refused(
        upload_b.0,
        &upload_b.1,
        403,
        "belongs to team \"a\"; it cannot act on team \"b\"",
    );
    let (s, b) = env.upload_raw("a", &a_key, guest("pin_alpha"), "").await;
    refused(
        s,
        &b,
        401,
        "Team API keys are not accepted on the admin API",
    );
    let (s, b) = env.chat(&a_admin).await;
    refused(s, &b, 401, "team admin token");
    let (admin, wrong) = (ADMIN.to_string(), "wrong".to_string());
    let table = [
        (
            &a_admin,
            "GET",
            "/admin/v1/teams/b/policies",
            None,
            403,
            "cannot act on team \"b\"",
        ),
        (
            &a_admin,
            "POST",
            "/admin/v1/teams/b/policies/1/activate",
            None,
            403,
            "cannot act on team \"b\"",
        ),
        (
            &a_admin,
            "PUT",
            "/admin/v1/teams/b/policy-config",
            Some(json!({})),
            403,
            "cannot act on team \"b\"",
        ),
        (
            &a_admin,
            "POST",
            "/admin/v1/teams",
            Some(json!({ "name": "c" })),
            403,
            "needs the operator's admin token",
        ),
        (
            &a_admin,
            "GET",
            "/admin/v1/metrics",
            None,
            403,
            "needs the operator's admin token",
        ),
        (
            &a_key,
            "GET",
            "/admin/v1/teams",
            None,
            401,
            "Team API keys are not accepted",
        ),
        (
            &wrong,
            "GET",
            "/admin/v1/teams",
            None,
            401,
            "Incorrect admin token",
        ),
        (
            &admin,
            "POST",
            "/admin/v1/teams",
            Some(json!({ "name": "a" })),
            409,
            "already exists",
        ),
        (
            &admin,
            "POST",
            "/admin/v1/teams",
            Some(json!({ "name": "bad name/" })),
            400,
            "must be 1 to 64 letters",
        ),
        (
            &admin,
            "PATCH",
            "/admin/v1/teams/a",
            Some(json!({ "allowed_models": ["gpt-99"] })),
            400,
            "unknown model \"gpt-99\"",
        ),
        (
            &admin,
            "PATCH",
            "/admin/v1/teams/a",
            Some(json!({ "owner": "me" })),
            400,
            "Unknown field `owner`",
        ),
        (
            &admin,
            "PUT",
            "/admin/v1/teams/a/policy-config",
            Some(json!([1])),
            400,
            "must be a JSON object",
        ),
        (
            &admin,
            "POST",
            "/admin/v1/teams/a/keys",
            Some(json!({ "scope": "root" })),
            400,
            "`scope` is \"api\"",
        ),
        (
            &admin,
            "POST",
            "/admin/v1/teams/a/policies/7/activate",
            None,
            404,
            "has no policy version 7",
        ),
        (
            &admin,
            "POST",
            "/admin/v1/teams/a/policies/x/activate",
            None,
            400,
            "is not a version number",
        ),
        (
            &admin,
            "POST",
            "/admin/v1/teams/a/policies/rollback",
            None,
            409,
            "no earlier policy version",
        ),
        (
            &admin,
            "DELETE",
            "/admin/v1/teams/b/keys/1",
            None,
            404,
            "team \"b\" has no key 1",
        ),
        (
            &admin,
            "GET",
            "/admin/v1/teams/nobody",
            None,
            404,
            "team \"nobody\" does not exist",
        ),
    ];
    for (token, method, path, body, status, message) in table {
        let (s, b) = env.admin(method, path, token, body).await;
        assert_eq!(s, status, "{method} {path}: {b}");
        let text = b["error"]["message"].as_str().unwrap_or_default();
        assert!(
            text.contains(message),
            "{method} {path}: {message:?} not in {text:?}"
        );
    }
    env.gateway.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_allow_lists_set_through_the_admin_api_hold() {
    let env = Env::start(&temp_store(), "").await;
    let (key, _) = env.team("narrow").await;
    let (status, body) = env
        .admin(
            "PATCH",
            "/admin/v1/teams/narrow",
            ADMIN,
            Some(json!({ "allowed_providers": ["beta"] })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["allowed_providers"], json!(["beta"]));
    for _ in 0..4 {
        let (status, body) = env.chat(&key).await;
        assert_eq!((status, provider(&body)), (200, "beta"), "{body}");
    }
    let (status, body) = env
        .admin(
            "PATCH",
            "/admin/v1/teams/narrow",
            ADMIN,
            Some(json!({ "allowed_models": ["gpt-4o"] })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = env.chat(&key).await;
    assert_eq!(status, 403, "{body}");
    env.gateway.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_plugin_is_set_aside_without_slowing_other_teams() {
    let env = Env::start(&temp_store(), "fault_limit = 3\ndecision_slots = 2").await;
    let (h_key, h_admin) = env.team("hostile").await;
    let (b_key, b_admin) = env.team("bystander").await;
    env.push("hostile", &h_admin, "hostile").await;
    env.push("bystander", &b_admin, "pin_beta").await;
    env.set_config("hostile", &h_admin, json!({ "mode": "loop" }))
        .await;

    // The hostile team floods the gateway while the bystander keeps working.
    let url = env.url("/v1/chat/completions");
    let flood: Vec<_> = (0..40)
        .map(|_| {
            let (http, url, key) = (env.http.clone(), url.clone(), h_key.clone());
            tokio::spawn(async move { chat(&http, &url, &key).await })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let (status, body) = env.chat(&b_key).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!((status, provider(&body)), (200, "beta"), "{body}");
    }
    for task in flood {
        let (status, body) = task.await.expect("task");
        // Every hostile-team request is still answered (by the default policy).
        assert_eq!(status, 200, "{body}");
    }
    // The looping plugin runs off the async workers, within its own two
    // slots, for at most its 10 ms deadline: the bystander never waits on it.
    eprintln!("slowest bystander request while the plugin looped: {slowest:?}");
    assert!(
        slowest < Duration::from_millis(500),
        "a bystander request took {slowest:?}"
    );

    let (status, body) = env
        .admin("GET", "/admin/v1/teams/hostile", ADMIN, None)
        .await;
    assert_eq!(status, 200);
    let policy = &body["policy"];
    assert_eq!(policy["serving"], "default", "{body}");
    assert!(
        policy["set_aside"]
            .as_str()
            .unwrap_or("")
            .contains("3 consecutive faults (the last: deadline)"),
        "{body}"
    );
    let faults = policy["faults"].as_u64().expect("faults");
    assert!(faults >= 3, "{body}");
    // Set aside: later requests do not run the plugin at all.
    for _ in 0..5 {
        assert_eq!(env.chat(&h_key).await.0, 200);
    }
    let (_, body) = env
        .admin("GET", "/admin/v1/teams/hostile", ADMIN, None)
        .await;
    assert_eq!(body["policy"]["faults"].as_u64(), Some(faults));

    let metrics = env
        .http
        .get(env.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"switchyard_team_policy_set_aside{team="hostile",version="v1"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"switchyard_team_policy_set_aside{team="bystander",version="v1"} 0"#),
        "{metrics}"
    );
    let counted: f64 = metrics
        .lines()
        .find(|l| {
            l.starts_with(
                r#"switchyard_policy_faults_total{team="hostile",version="v1",kind="deadline"}"#,
            )
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("fault counter");
    assert_eq!(counted as u64, faults);

    // Re-activating (after fixing the config) puts the plugin back in service.
    env.set_config("hostile", &h_admin, json!({ "mode": "ok" }))
        .await;
    let (status, body) = env
        .admin(
            "POST",
            "/admin/v1/teams/hostile/policies/1/activate",
            &h_admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["policy"]["serving"], "plugin");
    assert_eq!(body["policy"]["set_aside"], Value::Null);
    let (status, body) = env.chat(&h_key).await;
    assert_eq!(status, 200);
    assert_eq!(body["switchyard"]["label"], "ok", "{body}");
    env.gateway.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_client_pushes_lists_and_rolls_back() {
    let env = Env::start(&temp_store(), "").await;
    let (key, team_admin) = env.team("cli").await;
    let client = AdminClient::new(&env.base(), &team_admin);
    let cases = std::fs::read_to_string(switchyard_tests::repo_path(
        "examples/intent-router/cases.json",
    ))
    .expect("cases");
    let pushed = client
        .push(
            "cli",
            &guest("intent_router"),
            Some(&cases),
            "with cases",
            true,
        )
        .await
        .expect("push");
    assert_eq!(pushed["version"], 1);
    assert_eq!(pushed["cases"]["total"], pushed["cases"]["passed"]);
    client
        .push("cli", &guest("pin_beta"), None, "", true)
        .await
        .expect("push");
    assert_eq!(provider(&env.chat(&key).await.1), "beta");
    let listed = client.list("cli").await.expect("list");
    assert_eq!(listed["policy"]["active_version"], 2);
    let back = client.rollback("cli").await.expect("rollback");
    assert_eq!(back["policy"]["active_version"], 1);
    assert_eq!(back["policy"]["name"], "intent-router");
    let err = client
        .push("other", &guest("pin_beta"), None, "", true)
        .await
        .expect_err("other team");
    assert!(err.to_string().starts_with("403"), "{err}");
    env.gateway.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_names_the_filter_that_removed_each_candidate_and_calls_no_provider() {
    let env = Env::start(&temp_store(), "").await;
    let (_key, team_admin) = env.team("explained").await;
    let (status, body) = env
        .admin(
            "PATCH",
            "/admin/v1/teams/explained",
            ADMIN,
            Some(json!({ "allowed_providers": ["beta"] })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let ask = |body: Value| {
        env.admin(
            "POST",
            "/admin/v1/teams/explained/explain",
            &team_admin,
            Some(body),
        )
    };

    // Routable: alpha is out by the team's allow-list, beta is offered, the
    // default policy plans it and it would be the first attempt.
    let (status, body) = ask(json!({
        "model": "gpt-4o-mini",
        "stream": true,
        "messages": [{ "role": "user", "content": "hello" }],
    }))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "explanation");
    assert_eq!(body["features"], json!(["stream"]), "{body}");
    assert_eq!(
        body["removed"],
        json!([{
            "id": "alpha/gpt-4o-mini",
            "filter": "team_providers",
            "reason": "the team may not use this provider account",
        }]),
        "{body}"
    );
    let offered: Vec<&str> = body["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(offered, ["beta/gpt-4o-mini"], "{body}");
    assert_eq!(body["policy"]["version"], "default", "{body}");
    assert_eq!(body["policy"]["contract"], "0.2.0", "{body}");
    assert_eq!(body["policy"]["plan"][0]["candidate"], "beta/gpt-4o-mini");
    assert!(body["policy"]["decision_us"].is_u64(), "{body}");
    assert!(
        body["policy"]["explanation"]
            .as_array()
            .is_some_and(|l| !l.is_empty()),
        "{body}"
    );
    assert_eq!(body["first_attempt"]["provider"], "beta", "{body}");

    // Not routable: the request's own routing.providers leaves only alpha,
    // which the team may not use. Both filters are named, and the error is
    // what a caller would get, at the candidates stage.
    let (status, body) = ask(json!({
        "model": "gpt-4o-mini",
        "messages": [{ "role": "user", "content": "hello" }],
        "routing": { "providers": ["alpha"] },
    }))
    .await;
    assert_eq!(status, 200, "{body}");
    let filters: Vec<(&str, &str)> = body["removed"]
        .as_array()
        .expect("removed")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default(),
                r["filter"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        filters,
        [
            ("alpha/gpt-4o-mini", "team_providers"),
            ("beta/gpt-4o-mini", "routing_providers"),
        ],
        "{body}"
    );
    assert_eq!(body["error"]["stage"], "candidates", "{body}");
    assert_eq!(body["error"]["code"], "no_provider", "{body}");
    assert!(body.get("policy").is_none(), "{body}");

    // The CLI prints the same explanation for a terminal.
    let request = std::env::temp_dir().join(format!("explain-{}.json", std::process::id()));
    std::fs::write(
        &request,
        json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": "hi" }] })
            .to_string(),
    )
    .expect("request file");
    let (url, token) = (env.base(), team_admin.clone());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchyard-test-cli"))
            .args(["policy", "explain", "--team", "explained", "--url", &url])
            .arg(&request)
            .env("SWITCHYARD_ADMIN_TOKEN", token)
            .output()
            .expect("run switchyard")
    })
    .await
    .expect("cli");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains("removed alpha/gpt-4o-mini") && printed.contains("team_providers"),
        "{printed}"
    );
    assert!(
        printed.contains("first attempt: beta/gpt-4o-mini"),
        "{printed}"
    );

    // A dry run: no provider was called, and another team's admin token is
    // refused.
    assert_eq!(env.alpha.hits() + env.beta.hits(), 0);
    let (_, other_admin) = env.team("other").await;
    let (status, body) = env
        .admin(
            "POST",
            "/admin/v1/teams/explained/explain",
            &other_admin,
            Some(json!({ "model": "gpt-4o-mini", "messages": [] })),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    env.gateway.shutdown().await.expect("shutdown");
}
