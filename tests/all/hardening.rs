//! End-to-end: the gateway as an attacker or a careless operator finds it.
//! No provider key follows a redirect; connection floods, slow clients and
//! request floods do not starve others; an upload cannot make compiling (or
//! its cases) eat the machine; a plugin sees only the candidates it was
//! offered; secrets and provider text stay out of logs and answers; bodies
//! are bounded in size, depth, values and memory; and the smaller ones
//! (store file mode, team names, ambiguous keys, HTTP/2).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use switchyard::api::Server;
use switchyard::config::hash_key;
use switchyard_tests::mock::{Behavior, Flavor, MockProvider};
use switchyard_tests::process::GatewayProcess;
use switchyard_tests::{guest, start_gateway, temp_store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "sk-hardening-key";
const ADMIN: &str = "admin-hardening-token";

fn env() -> [(&'static str, &'static str); 3] {
    [
        ("UPSTREAM_KEY", "sk-upstream-secret"),
        ("ANTHROPIC_KEY", "sk-ant-upstream-secret"),
        ("SWITCHYARD_ADMIN_TOKEN", ADMIN),
    ]
}

/// A gateway config: `[server]` lines, then accounts and the rest.
fn config(server: &str, rest: &str) -> String {
    format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        shutdown_grace_secs = 2
        {server}
        [routing]
        backoff_base_ms = 1
        backoff_max_ms = 5
        {rest}
        "#
    )
}

/// An OpenAI-compatible account on `mock`, serving gpt-4o-mini.
fn account(name: &str, mock: &MockProvider, extra: &str) -> String {
    format!(
        r#"
        [providers.{name}]
        kind = "openai-compatible"
        base_url = "{base}"
        api_key_env = "UPSTREAM_KEY"
        models = ["gpt-4o-mini"]
        health_check_interval_ms = 0
        {extra}
        "#,
        base = mock.base_url()
    )
}

fn team(name: &str, extra: &str) -> String {
    format!(
        "[teams.{name}]\nkey_sha256 = [\"{}\"]\n{extra}\n",
        hash_key(&format!("{KEY}-{name}"))
    )
}

fn key(team: &str) -> String {
    format!("{KEY}-{team}")
}

async fn gateway(server: &str, rest: &str) -> Server {
    start_gateway("hardening.toml", &config(server, rest), &env()).await
}

fn url(gateway: &Server, path: &str) -> String {
    format!("http://{}{path}", gateway.addr)
}

fn chat(model: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": "Hello" }] })
}

/// Posts `body` to the chat endpoint as `team`; status, headers and JSON body.
async fn post_chat(
    client: &reqwest::Client,
    base: &str,
    team: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key(team))
        .json(body)
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

async fn metrics_text(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of the sample of `metrics` whose line starts with `prefix`.
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Reads from `stream` until the peer closes it (true) or `within` passes
/// (false); what was read is appended to `into`.
async fn closed_within(stream: &mut TcpStream, within: Duration, into: &mut Vec<u8>) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(n)) => into.extend_from_slice(&buf[..n]),
        }
    }
}

// ---------------------------------------------------------------------------
// 1. Provider credentials never follow a redirect.

#[tokio::test]
async fn a_redirect_is_an_upstream_error_and_the_key_goes_nowhere_else() {
    // Whatever the redirect points at records what it receives.
    let elsewhere = MockProvider::start(Flavor::Anthropic).await;
    let redirecting = MockProvider::start(Flavor::Anthropic).await;
    redirecting.set_default(Behavior::Raw {
        status: 307,
        headers: vec![("location".into(), elsewhere.endpoint_url())],
        body: Vec::new(),
    });
    let healthy = MockProvider::start(Flavor::OpenAi).await;
    healthy.set_default(Behavior::Text("from healthy".into()));
    let rest = format!(
        r#"
        [providers.redirecting]
        kind = "anthropic"
        base_url = "{}"
        api_key_env = "ANTHROPIC_KEY"
        models = ["claude-haiku-4-5"]
        {}
        {}
        "#,
        redirecting.base_url(),
        account("healthy", &healthy, "").replace("gpt-4o-mini", "claude-haiku-4-5"),
        team("t", ""),
    );
    let gw = gateway("", &rest).await;
    let client = reqwest::Client::new();
    let (status, _, body) = post_chat(
        &client,
        &url(&gw, ""),
        "t",
        &chat("redirecting/claude-haiku-4-5"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["switchyard"]["provider"], "healthy", "{body}");
    let first = &body["switchyard"]["trail"][0];
    assert_eq!(first["provider"], "redirecting", "{body}");
    assert_eq!(first["status"], 307, "{body}");
    assert_eq!(first["reason"], "upstream_error", "{body}");
    assert!(
        first["message"].as_str().unwrap_or("").contains("redirect"),
        "{body}"
    );
    // The key went to the configured host, and nowhere else.
    assert_eq!(redirecting.hits(), 1);
    assert_eq!(
        redirecting.requests()[0].header("x-api-key"),
        Some("sk-ant-upstream-secret")
    );
    assert_eq!(
        elsewhere.hits(),
        0,
        "the redirect target received a request"
    );
    assert!(!body.to_string().contains(&elsewhere.addr().to_string()));
    gw.shutdown().await.expect("shutdown");
}

// ---------------------------------------------------------------------------
// 2. Connection-level limits.

#[tokio::test]
async fn idle_connections_past_the_descriptor_limit_do_not_starve_a_new_client() {
    let mock = MockProvider::start(Flavor::OpenAi).await;
    mock.set_default(Behavior::Text("still here".into()));
    // A gateway process allowed 256 open files; 320 idle connections would
    // take them all without a connection cap.
    let text = config(
        "",
        &format!("{}{}", account("alpha", &mock, ""), team("t", "")),
    );
    let gw = GatewayProcess::start(&text, &env(), Some(256));
    let mut idle = Vec::new();
    for _ in 0..320 {
        idle.push(TcpStream::connect(gw.addr).await.expect("connect"));
    }
    // Let the gateway accept them all.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let started = Instant::now();
    let health = client.get(gw.url("/healthz")).send().await;
    assert!(
        health.as_ref().is_ok_and(|r| r.status() == 200),
        "/healthz under 320 idle connections: {health:?}; log:\n{}",
        gw.log()
    );
    let (status, _, body) = post_chat(&client, &gw.url(""), "t", &chat("gpt-4o-mini")).await;
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let metrics = metrics_text(&gw.url("")).await;
    let cap = sample(&metrics, "switchyard_max_connections ").expect("cap");
    assert!(cap < 256.0, "cap {cap} leaves no descriptors for the rest");
    assert!(sample(&metrics, "switchyard_idle_connections_closed_total ").unwrap_or(0.0) > 0.0);
    drop(idle);
}

#[tokio::test]
async fn a_half_sent_head_an_idle_connection_and_a_slow_body_are_cut_off() {
    let mock = MockProvider::start(Flavor::OpenAi).await;
    let gw = gateway(
        "header_read_timeout_ms = 300\nidle_timeout_ms = 600\nbody_read_timeout_ms = 300",
        &format!("{}{}", account("alpha", &mock, ""), team("t", "")),
    )
    .await;
    let mut read = Vec::new();

    // Headers that never finish: closed after the header timeout.
    let mut half = TcpStream::connect(gw.addr).await.expect("connect");
    half.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    assert!(closed_within(&mut half, Duration::from_secs(3), &mut read).await);
    assert!(started.elapsed() >= Duration::from_millis(250));

    // A connection that never sends anything: closed after the idle timeout.
    let mut silent = TcpStream::connect(gw.addr).await.expect("connect");
    assert!(closed_within(&mut silent, Duration::from_secs(3), &mut read).await);

    // A keep-alive connection after its answer: closed after the idle timeout.
    let mut kept = TcpStream::connect(gw.addr).await.expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    assert!(closed_within(&mut kept, Duration::from_secs(3), &mut answer).await);
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));

    // Headers past 64 KiB: 431.
    let big = reqwest::Client::new()
        .get(url(&gw, "/healthz"))
        .header("x-padding", "a".repeat(70 << 10))
        .send()
        .await
        .expect("an answer");
    assert_eq!(big.status(), 431);

    // A body that stops arriving: 408.
    let mut slow = TcpStream::connect(gw.addr).await.expect("connect");
    slow.write_all(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"model\":",
            key("t")
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let mut answer = Vec::new();
    closed_within(&mut slow, Duration::from_secs(3), &mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert_eq!(mock.hits(), 0);
    gw.shutdown().await.expect("shutdown");
}

/// Starts `n` chat requests of team `t`, each on a connection of its own,
/// and waits until `mock` (which answers slowly) has them all; their
/// statuses come from the handles.
async fn slow_requests(
    base: &str,
    mock: &MockProvider,
    n: usize,
) -> Vec<tokio::task::JoinHandle<u16>> {
    let tasks = (0..n)
        .map(|_| {
            let base = base.to_string();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                post_chat(&client, &base, "t", &chat("gpt-4o-mini")).await.0
            })
        })
        .collect();
    for _ in 0..200 {
        if mock.hits() == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(mock.hits(), n, "the slow requests did not all arrive");
    tasks
}

#[tokio::test]
async fn past_the_in_flight_cap_requests_get_503_overloaded_and_health_answers() {
    let mock = MockProvider::start(Flavor::OpenAi).await;
    mock.set_default(Behavior::Slow {
        delay_ms: 1500,
        text: "slow".into(),
    });
    let gw = gateway(
        "max_in_flight = 3",
        &format!("{}{}", account("alpha", &mock, ""), team("t", "")),
    )
    .await;
    let base = url(&gw, "");
    let client = reqwest::Client::new();
    let slow = slow_requests(&base, &mock, 3).await;
    let started = Instant::now();
    for _ in 0..5 {
        let (status, headers, body) = post_chat(&client, &base, "t", &chat("gpt-4o-mini")).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "overloaded", "{body}");
        assert_eq!(headers["retry-after"], "1");
    }
    // In the Messages API's own shape.
    let messages = client
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", key("t"))
        .header("anthropic-version", "2023-06-01")
        .json(&json!({ "model": "gpt-4o-mini", "max_tokens": 10, "messages": [{ "role": "user", "content": "hi" }] }))
        .send()
        .await
        .expect("send");
    assert_eq!(messages.status(), 503);
    let body: Value = messages.json().await.expect("json");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "overloaded_error", "{body}");
    // Health and metrics are not counted against the cap.
    let health = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let metrics = metrics_text(&base).await;
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "refusals must not wait"
    );
    assert_eq!(
        sample(
            &metrics,
            "switchyard_overload_rejections_total{limit=\"in_flight\"}"
        ),
        Some(6.0)
    );
    assert_eq!(
        sample(&metrics, "switchyard_requests_in_flight "),
        Some(3.0)
    );
    for task in slow {
        assert_eq!(task.await.expect("task"), 200);
    }
    assert_eq!(mock.hits(), 3);
    gw.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn at_the_connection_cap_with_every_connection_busy_a_new_one_gets_503() {
    let mock = MockProvider::start(Flavor::OpenAi).await;
    mock.set_default(Behavior::Slow {
        delay_ms: 1500,
        text: "slow".into(),
    });
    let gw = gateway(
        "max_connections = 3",
        &format!("{}{}", account("alpha", &mock, ""), team("t", "")),
    )
    .await;
    let base = url(&gw, "");
    let busy = slow_requests(&base, &mock, 3).await;
    let mut extra = TcpStream::connect(gw.addr).await.expect("connect");
    let mut answer = Vec::new();
    assert!(closed_within(&mut extra, Duration::from_secs(2), &mut answer).await);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("connection limit"), "{answer}");
    for task in busy {
        assert_eq!(task.await.expect("task"), 200);
    }
    gw.shutdown().await.expect("shutdown");
}

// ---------------------------------------------------------------------------
// 3 and 4. Uploads: a compile budget, and bounded case files.

/// A component whose one core function has `locals` i64 locals and `loops`
/// nested loops touching them: what makes Cranelift slow and hungry.
fn compile_bomb(locals: u32, loops: u32) -> Vec<u8> {
    use wasm_encoder::{
        BlockType, CodeSection, Component, Function, FunctionSection, Module, ModuleSection,
        TypeSection, ValType,
    };
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut functions = FunctionSection::new();
    functions.function(0);
    let mut body = Function::new([(locals, ValType::I64)]);
    let mut sink = body.instructions();
    for i in 0..loops {
        let (a, b, c) = (
            (i * 7) % locals,
            (i * 13 + 1) % locals,
            (i * 31 + 2) % locals,
        );
        sink.loop_(BlockType::Empty)
            .local_get(a)
            .local_get(b)
            .i64_add()
            .local_set(c)
            .local_get(c)
            .i64_eqz()
            .br_if(0);
    }
    for _ in 0..loops {
        sink.end();
    }
    sink.end();
    let mut code = CodeSection::new();
    code.function(&body);
    let mut module = Module::new();
    module.section(&types).section(&functions).section(&code);
    let mut component = Component::new();
    component.section(&ModuleSection(&module));
    component.finish()
}

/// Uploads a component for `team` with the operator's token; status and body.
async fn upload(
    base: &str,
    team: &str,
    component: Vec<u8>,
    cases: Option<String>,
) -> (u16, Value, Option<String>) {
    let mut form = Form::new().part("component", Part::bytes(component).file_name("p.wasm"));
    if let Some(cases) = cases {
        form = form.text("cases", cases);
    }
    let response = reqwest::Client::new()
        .post(format!("{base}/admin/v1/teams/{team}/policies"))
        .bearer_auth(ADMIN)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (
        status,
        response.json().await.unwrap_or(Value::Null),
        retry_after,
    )
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("")
}

#[tokio::test]
async fn a_compile_bomb_is_refused_before_compiling_naming_the_limit() {
    let mock = MockProvider::start(Flavor::OpenAi).await;
    let gw = gateway(
        "",
        &format!("{}{}", account("alpha", &mock, ""), team("t", "")),
    )
    .await;
    let started = Instant::now();
    let (status, body, _) = upload(&url(&gw, ""), "t", compile_bomb(6000, 2500), None).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        message(&body).contains("plugins.max_function_complexity"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused after {:?}",
        started.elapsed()
    );
    gw.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn compiling_has_a_time_budget_and_a_memory_ceiling() {
    let mock = MockProvider::start(Flavor::OpenAi).await;
    let rest = format!("{}{}", account("alpha", &mock, ""), team("t", ""));
    // Within the structural limits, but seconds and tens of MiB to compile.
    let heavy = compile_bomb(1900, 1000);
    let gw = gateway(
        "",
        &format!("{rest}\n[plugins]\ncompile_timeout_ms = 300\n"),
    )
    .await;
    let started = Instant::now();
    let (status, body, _) = upload(&url(&gw, ""), "t", heavy.clone(), None).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        message(&body).contains("plugins.compile_timeout_ms"),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    gw.shutdown().await.expect("shutdown");

    let gw = gateway("", &format!("{rest}\n[plugins]\ncompile_memory_mib = 64\n")).await;
    let (status, body, _) = upload(&url(&gw, ""), "t", heavy, None).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        message(&body).contains("plugins.compile_memory_mib"),
        "{body}"
    );
    // A real policy compiles within the same ceiling.
    let (status, body, _) = upload(&url(&gw, ""), "t", guest("pin_alpha"), None).await;
    assert_eq!(status, 201, "{body}");
    gw.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn uploads_past_the_compile_slots_and_queue_get_429() {
    let mock = MockProvider::start(Flavor::OpenAi).await;
    let gw = gateway(
        "",
        &format!(
            "{}{}\n[plugins]\ncompile_slots = 1\ncompile_queue = 0\n",
            account("alpha", &mock, ""),
            team("t", "")
        ),
    )
    .await;
    let base = url(&gw, "");
    let heavy = compile_bomb(1900, 1000);
    let uploads: Vec<_> = (0..3)
        .map(|_| {
            let (base, heavy) = (base.clone(), heavy.clone());
            tokio::spawn(async move { upload(&base, "t", heavy, None).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for u in uploads {
        let (status, body, retry_after) = u.await.expect("task");
        match status {
            429 => {
                assert_eq!(body["error"]["code"], "uploads_busy", "{body}");
                assert!(retry_after.is_some());
            }
            // Compiled, then found not to be a policy at all.
            _ => assert!(message(&body).contains("does not implement"), "{body}"),
        }
        statuses.push(status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.contains(&422), "{statuses:?}");
    gw.shutdown().await.expect("shutdown");
}

/// The 99th percentile of `samples`.
fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

/// Team `bystander`'s request latencies over `for_how_long`, 4 at a time.
async fn bystander_latencies(base: &str, for_how_long: Duration) -> Vec<Duration> {
    let until = Instant::now() + for_how_long;
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let base = base.to_string();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut times = Vec::new();
                while Instant::now() < until {
                    let started = Instant::now();
                    let (status, _, body) =
                        post_chat(&client, &base, "bystander", &chat("gpt-4o-mini")).await;
                    assert_eq!(status, 200, "{body}");
                    times.push(started.elapsed());
                }
                times
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bystander_teams_p99_holds_while_uploads_compile() {
    let mock = MockProvider::start(Flavor::OpenAi).await;
    // A provider that takes 20 ms, as fast ones do.
    mock.set_default(Behavior::Slow {
        delay_ms: 20,
        text: "steady".into(),
    });
    let gw = gateway(
        "",
        &format!(
            "{}{}{}",
            account("alpha", &mock, ""),
            team("bystander", ""),
            team("uploader", "")
        ),
    )
    .await;
    let base = url(&gw, "");
    let window = Duration::from_secs(4);
    let baseline = p99(bystander_latencies(&base, window).await);

    // Four uploaders at once, each sending a compile bomb, then a component
    // that takes seconds to compile, then a real policy, over and over.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let uploaders: Vec<_> = (0..4)
        .map(|_| {
            let (base, stop) = (base.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answered = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for component in [
                        compile_bomb(6000, 2500),
                        compile_bomb(1900, 1000),
                        guest("intent_router"),
                    ] {
                        let (status, body, _) = upload(&base, "uploader", component, None).await;
                        assert!(matches!(status, 201 | 422 | 429), "{status} {body}");
                        answered += 1;
                    }
                }
                answered
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = p99(bystander_latencies(&base, window).await);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answered = 0;
    for u in uploaders {
        answered += u.await.expect("uploader");
    }
    assert!(answered >= 4, "the uploads did not run");
    eprintln!("bystander p99: {baseline:?} alone, {during:?} during {answered} uploads");
    assert!(
        during <= baseline * 2,
        "bystander p99 {during:?} while uploads compiled, against {baseline:?} before"
    );
    gw.shutdown().await.expect("shutdown");
}

/// A case file with `n` cases for the pin-alpha policy.
fn pin_alpha_cases(n: usize) -> String {
    let cases: Vec<Value> = (0..n)
        .map(|i| json!({ "name": format!("case {i}"), "request": {}, "expect": { "first": "alpha/gpt-4o-mini" } }))
        .collect();
    json!({ "candidates": [{ "id": "alpha/gpt-4o-mini" }, { "id": "beta/gpt-4o-mini" }], "cases": cases })
        .to_string()
}

#[tokio::test]
async fn case_files_are_bounded_in_cases_and_cpu_time() {
    let mock = MockProvider::start(Flavor::OpenAi).await;
    let rest = format!("{}{}", account("alpha", &mock, ""), team("t", ""));
    let gw = gateway("", &format!("{rest}\n[plugins]\nmax_cases = 5\n")).await;
    let base = url(&gw, "");
    let (status, body, _) = upload(&base, "t", guest("pin_alpha"), Some(pin_alpha_cases(6))).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "too_many_cases", "{body}");
    assert!(message(&body).contains("plugins.max_cases"), "{body}");
    let (status, body, _) = upload(&base, "t", guest("pin_alpha"), Some(pin_alpha_cases(5))).await;
    assert_eq!(status, 201, "{body}");
    gw.shutdown().await.expect("shutdown");

    let gw = gateway("", &format!("{rest}\n[plugins]\ncases_cpu_ms = 1\n")).await;
    let (status, body, _) = upload(
        &url(&gw, ""),
        "t",
        guest("pin_alpha"),
        Some(pin_alpha_cases(500)),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "cases_cpu_exceeded", "{body}");
    assert!(message(&body).contains("plugins.cases_cpu_ms"), "{body}");
    gw.shutdown().await.expect("shutdown");
}

// ---------------------------------------------------------------------------
// 5. A team's plugin sees only what it was offered.

#[tokio::test]
async fn a_plugin_cannot_read_the_metrics_of_another_teams_accounts() {
    let alpha = MockProvider::start(Flavor::OpenAi).await;
    let private = MockProvider::start(Flavor::OpenAi).await;
    let rest = format!(
        "{}{}{}{}",
        account("alpha", &alpha, ""),
        account("beta-private", &private, ""),
        team("curious", "allowed_providers = [\"alpha\"]"),
        team("owner", "allowed_providers = [\"beta-private\"]"),
    );
    let gw = gateway("", &rest).await;
    let base = url(&gw, "");
    let client = reqwest::Client::new();
    for team in ["owner", "owner", "owner", "curious"] {
        let (status, _, body) = post_chat(&client, &base, team, &chat("gpt-4o-mini")).await;
        assert_eq!(status, 200, "{body}");
    }
    let form = Form::new()
        .part(
            "component",
            Part::bytes(guest("snoop")).file_name("snoop.wasm"),
        )
        .text("activate", "true");
    let uploaded = client
        .post(format!("{base}/admin/v1/teams/curious/policies"))
        .bearer_auth(ADMIN)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(uploaded.status(), 201);
    let (status, headers, body) = post_chat(&client, &base, "curious", &chat("gpt-4o-mini")).await;
    assert_eq!(status, 200, "{body}");
    // Its own candidate's count, but nothing of the other team's account.
    assert_eq!(
        headers["x-switchyard-label"], "own=1 foreign=none",
        "{body}"
    );
    let metrics = metrics_text(&base).await;
    assert_eq!(
        sample(
            &metrics,
            "switchyard_policy_misbehaviour_total{team=\"curious\",version=\"v1\",kind=\"foreign_metric\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    gw.shutdown().await.expect("shutdown");
}

// ---------------------------------------------------------------------------
// 6. Secrets and logs.

/// A loopback port nothing listens on.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test]
async fn secrets_and_provider_text_stay_out_of_logs_and_answers() {
    let noisy = MockProvider::start(Flavor::OpenAi).await;
    noisy.set_default(Behavior::Error {
        status: 500,
        message: "boom\nERROR forged log line\r\u{1b}[31m".into(),
    });
    let healthy = MockProvider::start(Flavor::OpenAi).await;
    let internal_port = dead_port();
    let hook_port = dead_port();
    let rest = format!(
        r#"
        [providers.internal]
        kind = "openai-compatible"
        base_url = "http://127.0.0.1:{internal_port}/internal-secret-path/v1"
        api_key_env = "UPSTREAM_KEY"
        models = ["gpt-4o-mini"]
        health_check_interval_ms = 0
        {noisy}
        {healthy}
        {team}
        [alerts]
        thresholds = [0.5]
        webhook_url = "http://127.0.0.1:{hook_port}/hooks/T0001/SECRET-hook-token"
        webhook_attempts = 1
        "#,
        noisy = account("noisy", &noisy, ""),
        healthy = account("healthy", &healthy, ""),
        team = team("t", "budget_usd = 0.0000001"),
    );
    let gw = GatewayProcess::start(&config("", &rest), &env(), None);
    let client = reqwest::Client::new();

    // Every account fails: the internal one (its address unreachable) and
    // the noisy one (an error message with a line break and escapes).
    let mut failing = chat("gpt-4o-mini");
    failing["routing"] = json!({ "providers": ["internal", "noisy"] });
    let (status, _, body) = post_chat(&client, &gw.url(""), "t", &failing).await;
    assert_eq!(status, 424, "{body}");
    let answer = body.to_string();
    assert!(answer.contains("\"internal\""), "{answer}");
    for secret in [
        "internal-secret-path",
        &format!(":{internal_port}"),
        "sk-upstream-secret",
    ] {
        assert!(
            !answer.contains(secret),
            "the answer shows {secret}: {answer}"
        );
    }
    let noisy_attempt = body["switchyard"]["trail"]
        .as_array()
        .and_then(|t| t.iter().find(|a| a["provider"] == "noisy"))
        .cloned()
        .expect("noisy attempt");
    let text = noisy_attempt["message"].as_str().unwrap_or("");
    assert!(
        text.contains("boom\\nERROR forged log line\\r\\u{1b}[31m"),
        "{text}"
    );
    assert!(!text.contains('\n') && !text.contains('\u{1b}'), "{text}");

    // A served request spends past the team's tiny budget: the alert's
    // webhook (a dead port) fails, and the log names its host only.
    let mut served = chat("gpt-4o-mini");
    served["routing"] = json!({ "providers": ["healthy"] });
    let (status, _, body) = post_chat(&client, &gw.url(""), "t", &served).await;
    assert_eq!(status, 200, "{body}");
    let log = gw.wait_for_log("webhook failed", Duration::from_secs(10));
    assert!(log.contains("webhook failed"), "{log}");
    assert!(log.contains("boom\\nERROR forged"), "{log}");
    for secret in [
        "SECRET-hook-token",
        "/hooks/T0001",
        "internal-secret-path",
        "sk-upstream-secret",
        "sk-ant-upstream-secret",
        ADMIN,
    ] {
        assert!(!log.contains(secret), "the log shows {secret}:\n{log}");
    }
    assert!(
        !log.lines()
            .any(|l| l.trim_start().starts_with("ERROR forged")),
        "a provider forged a log line:\n{log}"
    );
}

// ---------------------------------------------------------------------------
// 7. Memory amplification and unbounded bodies.

#[tokio::test]
async fn bodies_are_bounded_in_size_depth_and_values() {
    let mock = MockProvider::start(Flavor::OpenAi).await;
    let gw = gateway(
        "",
        &format!("{}{}", account("alpha", &mock, ""), team("t", "")),
    )
    .await;
    let base = url(&gw, "");
    let client = reqwest::Client::new();

    // 5 MiB of text: over the 4 MiB limit.
    let mut big = chat("gpt-4o-mini");
    big["messages"][0]["content"] = json!("x".repeat(5 << 20));
    let (status, _, body) = post_chat(&client, &base, "t", &big).await;
    assert_eq!(status, 413, "{body}");
    assert!(message(&body).contains("4194304 byte limit"), "{body}");
    // The same size carrying an image is accepted.
    let mut image = chat("gpt-4o-mini");
    image["messages"][0]["content"] = json!([
        { "type": "text", "text": "What is this?" },
        { "type": "image_url", "image_url": { "url": format!("data:image/png;base64,{}", "A".repeat(5 << 20)) } }
    ]);
    let (status, _, body) = post_chat(&client, &base, "t", &image).await;
    assert_eq!(status, 200, "{body}");

    // A tool schema nested 100 deep.
    let mut nested = json!({ "type": "string" });
    for _ in 0..100 {
        nested = json!({ "type": "array", "items": nested });
    }
    let mut deep = chat("gpt-4o-mini");
    deep["tools"] =
        json!([{ "type": "function", "function": { "name": "f", "parameters": nested } }]);
    let (status, _, body) = post_chat(&client, &base, "t", &deep).await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("deeper than 64"), "{body}");

    // 300,000 small values in 600 KiB.
    let mut many = chat("gpt-4o-mini");
    many["tools"] = json!([{ "type": "function", "function": { "name": "f",
        "parameters": { "type": "integer", "enum": vec![0; 300_000] } } }]);
    let (status, _, body) = post_chat(&client, &base, "t", &many).await;
    assert_eq!(status, 413, "{body}");
    assert!(message(&body).contains("server.max_json_values"), "{body}");
    assert_eq!(
        mock.hits(),
        1,
        "only the image request reached the provider"
    );
    gw.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn request_bodies_share_a_memory_budget() {
    let mock = MockProvider::start(Flavor::OpenAi).await;
    mock.set_default(Behavior::Slow {
        delay_ms: 1000,
        text: "slow".into(),
    });
    // Room for one 100 KiB request in flight (its bytes, their parsed copy
    // and its values), not two.
    let gw = gateway(
        "max_body_bytes = 131072\nmax_image_body_bytes = 131072\nmax_json_values = 1000\nmax_request_memory_bytes = 400000",
        &format!("{}{}", account("alpha", &mock, ""), team("t", "")),
    )
    .await;
    let base = url(&gw, "");
    let mut body = chat("gpt-4o-mini");
    body["messages"][0]["content"] = json!("x".repeat(100 << 10));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (base, body) = (base.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            post_chat(&client, &base, "t", &body).await
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut statuses = Vec::new();
    for t in tasks {
        let (status, headers, body) = t.await.expect("task");
        if status == 503 {
            assert_eq!(body["error"]["code"], "overloaded", "{body}");
            assert!(
                message(&body).contains("server.max_request_memory_bytes"),
                "{body}"
            );
            assert_eq!(headers["retry-after"], "1");
        }
        statuses.push(status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        3,
        "{statuses:?}"
    );
    let metrics = metrics_text(&base).await;
    assert_eq!(
        sample(
            &metrics,
            "switchyard_overload_rejections_total{limit=\"memory\"}"
        ),
        Some(3.0)
    );
    // Once it is answered, the memory is free again.
    let client = reqwest::Client::new();
    let (status, _, _) = post_chat(&client, &base, "t", &body).await;
    assert_eq!(status, 200);
    gw.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn an_upstream_answer_over_its_cap_is_not_read_and_fails_over() {
    let big = MockProvider::start(Flavor::OpenAi).await;
    let huge = json!({
        "id": "chatcmpl-big", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
        "choices": [{ "index": 0, "finish_reason": "stop",
            "message": { "role": "assistant", "content": "y".repeat(200 << 10) } }],
        "usage": { "prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2 }
    });
    big.set_default(Behavior::Raw {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: huge.to_string().into_bytes(),
    });
    let small = MockProvider::start(Flavor::OpenAi).await;
    small.set_default(Behavior::Text("small answer".into()));
    let gw = gateway(
        "",
        &format!(
            "{}{}{}",
            account("big", &big, "max_response_bytes = 65536"),
            account("small", &small, ""),
            team("t", "")
        ),
    )
    .await;
    let client = reqwest::Client::new();
    let (status, _, body) = post_chat(&client, &url(&gw, ""), "t", &chat("big/gpt-4o-mini")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["switchyard"]["provider"], "small", "{body}");
    let first = &body["switchyard"]["trail"][0];
    assert_eq!(first["provider"], "big");
    assert_eq!(first["reason"], "bad_upstream_response", "{body}");
    assert!(
        first["message"]
            .as_str()
            .unwrap_or("")
            .contains("max_response_bytes"),
        "{body}"
    );
    gw.shutdown().await.expect("shutdown");
}

// ---------------------------------------------------------------------------
// 8. The smaller ones.

#[tokio::test]
async fn the_store_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mock = MockProvider::start(Flavor::OpenAi).await;
    let store = temp_store();
    let rest = format!(
        "{}{}\n[store]\npath = \"{}\"\n",
        account("alpha", &mock, ""),
        team("t", ""),
        store.display()
    );
    let gw = gateway("", &rest).await;
    // A write, so the write-ahead log exists too.
    let created = reqwest::Client::new()
        .post(url(&gw, "/admin/v1/teams"))
        .bearer_auth(ADMIN)
        .json(&json!({ "name": "new-team" }))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    for path in [store.clone(), store.with_extension("db-wal")] {
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "{} has mode {:o}",
            path.display(),
            mode & 0o777
        );
    }
    gw.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn team_names_a_proxy_would_rewrite_are_refused() {
    let mock = MockProvider::start(Flavor::OpenAi).await;
    let gw = gateway(
        "",
        &format!("{}{}", account("alpha", &mock, ""), team("t", "")),
    )
    .await;
    let client = reqwest::Client::new();
    for name in [".", "..", "...", ".hidden", "trailing."] {
        let response = client
            .post(url(&gw, "/admin/v1/teams"))
            .bearer_auth(ADMIN)
            .json(&json!({ "name": name }))
            .send()
            .await
            .expect("create");
        assert_eq!(response.status(), 400, "{name:?} was accepted");
    }
    let response = client
        .post(url(&gw, "/admin/v1/teams"))
        .bearer_auth(ADMIN)
        .json(&json!({ "name": "with.dot" }))
        .send()
        .await
        .expect("create");
    assert_eq!(response.status(), 201);
    gw.shutdown().await.expect("shutdown");
    // Nor in the config file.
    let text = config(
        "",
        &format!("{}[teams.\"..\"]\n", account("alpha", &mock, "")),
    );
    let err = switchyard::config::Config::parse("bad.toml", &text, &|_| Some("x".into()))
        .expect_err("a team named ..");
    assert!(err.to_string().contains("teams.."), "{err}");
}

#[tokio::test]
async fn ambiguous_credentials_are_refused() {
    let mock = MockProvider::start(Flavor::OpenAi).await;
    let gw = gateway(
        "",
        &format!(
            "{}{}{}",
            account("alpha", &mock, ""),
            team("t", ""),
            team("u", "")
        ),
    )
    .await;
    let client = reqwest::Client::new();
    let send = |builder: reqwest::RequestBuilder| async move {
        let response = builder.send().await.expect("send");
        let status = response.status().as_u16();
        (
            status,
            response.json::<Value>().await.unwrap_or(Value::Null),
        )
    };
    let post = || {
        client
            .post(url(&gw, "/v1/chat/completions"))
            .json(&chat("gpt-4o-mini"))
    };
    // Two Authorization headers, whichever is right.
    let (status, body) = send(
        post()
            .header("authorization", format!("Bearer {}", key("t")))
            .header("authorization", format!("Bearer {}", key("u"))),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "ambiguous_credentials");
    // A wrong Bearer beside a right x-api-key.
    let (status, body) = send(post().bearer_auth("sk-wrong").header("x-api-key", key("t"))).await;
    assert_eq!(status, 401, "{body}");
    // Two keys of two teams.
    let (status, _) = send(post().bearer_auth(key("u")).header("x-api-key", key("t"))).await;
    assert_eq!(status, 401);
    // The same key twice is one key.
    let (status, body) = send(post().bearer_auth(key("t")).header("x-api-key", key("t"))).await;
    assert_eq!(status, 200, "{body}");
    // The admin API too.
    let (status, _) = send(
        client
            .get(url(&gw, "/admin/v1/teams"))
            .header("authorization", format!("Bearer {ADMIN}"))
            .header("authorization", "Bearer other"),
    )
    .await;
    assert_eq!(status, 401);
    gw.shutdown().await.expect("shutdown");
}

async fn h2_health(addr: SocketAddr) -> Result<reqwest::Response, reqwest::Error> {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client")
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
}

#[tokio::test]
async fn http2_is_spoken_only_when_configured() {
    let mock = MockProvider::start(Flavor::OpenAi).await;
    let rest = format!("{}{}", account("alpha", &mock, ""), team("t", ""));
    let gw = gateway("", &rest).await;
    assert!(
        h2_health(gw.addr).await.is_err(),
        "HTTP/2 answered by default"
    );
    gw.shutdown().await.expect("shutdown");
    let gw = gateway("http2 = true", &rest).await;
    let response = h2_health(gw.addr).await.expect("HTTP/2 when configured");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    gw.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_field_of_the_wrong_type_is_refused_by_name_and_the_rest_is_forwarded_as_written() {
    let mock = MockProvider::start(Flavor::OpenAi).await;
    let gw = gateway(
        "",
        &format!("{}{}", account("up", &mock, ""), team("t", "")),
    )
    .await;
    let client = reqwest::Client::new();
    let base = url(&gw, "");
    let with = |extra: Value| {
        let mut body = chat("gpt-4o-mini");
        if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
            b.extend(extra);
        }
        body
    };
    for (extra, param) in [
        (json!({ "temperature": "hot" }), "temperature"),
        (json!({ "max_tokens": -5 }), "max_tokens"),
        (json!({ "stop": [1, 2] }), "stop"),
        (json!({ "tools": { "type": "function" } }), "tools"),
        (json!({ "reasoning_effort": "max" }), "reasoning_effort"),
        (
            json!({ "messages": [{ "content": "no role" }] }),
            "messages[0]",
        ),
    ] {
        let (status, _, body) = post_chat(&client, &base, "t", &with(extra.clone())).await;
        assert_eq!(status, 400, "{extra}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(body["error"]["param"], param, "{extra}: {body}");
    }
    assert!(
        mock.requests().is_empty(),
        "a refused body reached the provider"
    );

    // What the gateway does not read reaches the provider as the caller
    // wrote it; what it owns (routing) does not.
    let (status, _, body) = post_chat(
        &client,
        &base,
        "t",
        &with(json!({
            "temperature": 1, "seed": 7, "logit_bias": { "42": -100 },
            "reasoning_effort": "LOW", "routing": { "metric": "cost" },
            "messages": [{ "role": "user", "name": "ann", "content": "Hello" }],
        })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let sent = &mock.requests()[0].body;
    assert_eq!(sent["model"], "gpt-4o-mini");
    assert_eq!(sent["temperature"], json!(1), "{sent}");
    assert_eq!(sent["seed"], 7);
    assert_eq!(sent["logit_bias"], json!({ "42": -100 }));
    // gpt-4o-mini does not reason: the level, read in any case, is the
    // feature the default policy strips.
    assert!(sent.get("reasoning_effort").is_none(), "{sent}");
    assert_eq!(
        body["switchyard"]["stripped"],
        json!(["reasoning.effort.low"]),
        "{body}"
    );
    assert_eq!(sent["messages"][0]["name"], "ann");
    assert!(sent.get("routing").is_none(), "{sent}");
    gw.shutdown().await.expect("shutdown");
}

/// mimalloc asks for transparent huge pages on its arenas; with them on, the
/// gateway held 149 MiB at 1,000 streams against a 100 MiB target
/// (BENCHMARKS.md §3). The shipped command turns them off for its process.
#[cfg(target_os = "linux")]
#[test]
fn the_gateway_process_keeps_its_memory_in_small_pages() {
    let gw = GatewayProcess::start(&config("", ""), &env(), None);
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).expect("status");
    let thp = status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(str::trim);
    // Kernels before 5.0 do not report it; there is nothing to check there.
    if let Some(thp) = thp {
        assert_eq!(thp, "0", "transparent huge pages are on for the gateway");
    }
}
