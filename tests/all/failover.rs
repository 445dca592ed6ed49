//! End-to-end: the failover contract (README "Failover"), one test per row of
//! the fault catalogue (rows 8, 9 and 14's rescues in `rescue.rs`), against mock providers
//! that misbehave the documented way. Each asserts what the caller receives
//! and what the provider saw.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard::api::Server;
use switchyard::config::hash_key;
use switchyard_tests::mock::{Behavior, Flavor, MockProvider, StreamFault};
use switchyard_tests::start_gateway;

const KEY: &str = "sk-failover-team";

/// One OpenAI and one Anthropic account; a short stream idle window.
struct Env {
    gateway: Server,
    openai: MockProvider,
    anthropic: MockProvider,
    client: reqwest::Client,
}

const TEXT: &str = "one two three four five six seven eight nine ten";

impl Env {
    async fn start() -> Env {
        let openai = MockProvider::start(Flavor::OpenAi).await;
        let anthropic = MockProvider::start(Flavor::Anthropic).await;
        let config = format!(
            r#"
            [server]
            listen = "127.0.0.1:0"
            shutdown_grace_secs = 2
            [routing]
            first_token_timeout_ms = 2000
            stream_idle_timeout_ms = 1500
            backoff_base_ms = 1
            backoff_max_ms = 5
            [providers.openai]
            kind = "openai"
            base_url = "{openai}"
            api_key_env = "OA_KEY"
            models = ["gpt-4o-mini"]
            timeout_ms = 5000
            [providers.anthropic]
            kind = "anthropic"
            base_url = "{anthropic}"
            api_key_env = "ANTH_KEY"
            models = ["claude-haiku-4-5"]
            timeout_ms = 5000
            [teams.team]
            key_sha256 = ["{key}"]
            "#,
            openai = openai.base_url(),
            anthropic = anthropic.base_url(),
            key = hash_key(KEY),
        );
        let env = [("OA_KEY", "sk-oa"), ("ANTH_KEY", "sk-ant")];
        Env {
            gateway: start_gateway("failover.toml", &config, &env).await,
            openai,
            anthropic,
            client: reqwest::Client::new(),
        }
    }

    fn mock(&self, flavor: Flavor) -> &MockProvider {
        match flavor {
            Flavor::OpenAi => &self.openai,
            Flavor::Anthropic => &self.anthropic,
        }
    }

    /// Streams a chat request to the model `flavor` serves: the events, and
    /// whether the stream ended with `[DONE]`.
    async fn stream(&self, flavor: Flavor) -> (Vec<Value>, bool) {
        let model = match flavor {
            Flavor::OpenAi => "gpt-4o-mini",
            Flavor::Anthropic => "claude-haiku-4-5",
        };
        let response = self
            .client
            .post(format!("http://{}/v1/chat/completions", self.gateway.addr))
            .bearer_auth(KEY)
            .json(&json!({
                "model": model, "stream": true,
                "stream_options": { "include_usage": true },
                "messages": [{ "role": "user", "content": "Count to ten." }],
            }))
            .send()
            .await
            .expect("gateway answers");
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap_or_default();
        let mut events = Vec::new();
        let mut done = false;
        for block in text.split("\n\n") {
            let Some(data) = block.strip_prefix("data: ") else {
                continue;
            };
            if data == "[DONE]" {
                done = true;
            } else {
                events.push(serde_json::from_str(data).expect("each event is JSON"));
            }
        }
        (events, done)
    }

    async fn metric(&self, prefix: &str) -> f64 {
        self.metric_where(prefix, "").await
    }

    async fn metric_where(&self, prefix: &str, label: &str) -> f64 {
        sum(&metrics(&self.gateway).await, prefix, label)
    }
}

/// The gateway's `/metrics` text.
async fn metrics(gateway: &Server) -> String {
    reqwest::get(format!("http://{}/metrics", gateway.addr))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The sum of the samples whose line starts with `prefix` and contains
/// `label`.
fn sum(metrics: &str, prefix: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn text_of(events: &[Value]) -> String {
    events
        .iter()
        .filter_map(|e| {
            e.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect()
}

fn usage_of(events: &[Value]) -> Option<&Value> {
    events
        .iter()
        .rev()
        .find_map(|e| e.get("usage").filter(|u| !u.is_null()))
}

fn fault(fault: StreamFault) -> Behavior {
    Behavior::StreamFault {
        fault,
        text: TEXT.into(),
    }
}

const FLAVORS: [Flavor; 2] = [Flavor::OpenAi, Flavor::Anthropic];

/// Row 10: one malformed chunk mid-stream is skipped (counted, logged) and
/// the rest of the answer streams on.
#[tokio::test]
async fn row_10_a_malformed_event_mid_stream_is_skipped_and_counted() {
    let env = Env::start().await;
    for (i, flavor) in FLAVORS.into_iter().enumerate() {
        env.mock(flavor)
            .set_default(fault(StreamFault::MalformedEvent));
        let (events, done) = env.stream(flavor).await;
        assert!(done, "{flavor:?}: the stream ends cleanly");
        assert_eq!(text_of(&events), TEXT, "{flavor:?}");
        assert!(usage_of(&events).is_some(), "{flavor:?}: usage arrives");
        assert_eq!(env.mock(flavor).hits(), 1, "{flavor:?}: no retry");
        assert_eq!(
            env.metric("switchyard_upstream_malformed_events_total{")
                .await,
            (i + 1) as f64
        );
    }
    assert_eq!(
        env.metric("switchyard_stream_interruptions_total{").await,
        0.0
    );
}

/// Row 11: a stream that finished (`finish_reason` and usage, or
/// `message_delta` with its stop reason) and then ends without its end
/// marker is a complete answer, not a broken one.
#[tokio::test]
async fn row_11_a_finished_stream_without_its_end_marker_is_complete() {
    let env = Env::start().await;
    for flavor in FLAVORS {
        env.mock(flavor)
            .set_default(fault(StreamFault::NoEndMarker));
        let (events, done) = env.stream(flavor).await;
        assert!(done, "{flavor:?}: complete, so it ends with [DONE]");
        assert_eq!(text_of(&events), TEXT, "{flavor:?}");
        let usage = usage_of(&events).unwrap_or_else(|| panic!("{flavor:?}: usage"));
        assert!(usage["completion_tokens"].as_u64() > Some(0), "{usage}");
        assert!(
            events.iter().all(|e| e.get("error").is_none()),
            "{flavor:?}: no error event"
        );
    }
    assert_eq!(
        env.metric("switchyard_stream_interruptions_total{").await,
        0.0
    );
    // Not a failure: one attempt each, counted ok.
    for flavor in FLAVORS {
        assert_eq!(env.mock(flavor).hits(), 1, "{flavor:?}");
    }
    let attempts = env.metric("switchyard_attempts_total{").await;
    let ok = env
        .metric_where("switchyard_attempts_total{", "outcome=\"ok\"")
        .await;
    assert_eq!((attempts, ok), (2.0, 2.0));
}

/// A provider that keeps the connection open after its end marker: the
/// stream ends at the marker, not when the idle window runs out, and is not
/// counted as broken.
#[tokio::test]
async fn a_stream_ends_at_its_end_marker_even_if_the_connection_stays_open() {
    let env = Env::start().await;
    for flavor in FLAVORS {
        env.mock(flavor)
            .set_default(fault(StreamFault::OpenAfterEnd));
        let started = Instant::now();
        let (events, done) = env.stream(flavor).await;
        let took = started.elapsed();
        assert!(done, "{flavor:?}");
        assert_eq!(text_of(&events), TEXT, "{flavor:?}");
        // Well under the 1.5 s idle window (the whole stream takes ~0.1 s).
        assert!(
            took < Duration::from_millis(1200),
            "{flavor:?}: waited {took:?}, past the end marker"
        );
        assert_eq!(
            env.mock(flavor).open_connections(),
            0,
            "{flavor:?}: the upstream connection is released"
        );
    }
    assert_eq!(
        env.metric("switchyard_stream_interruptions_total{").await,
        0.0
    );
}

/// Row 11, the rougher variant: the answer's finish arrives, then the
/// connection drops before usage and the end marker. The caller has the whole
/// answer: it ends cleanly (usage estimated where the provider sent none).
#[tokio::test]
async fn a_stream_dropped_after_its_finish_is_complete() {
    let env = Env::start().await;
    for flavor in FLAVORS {
        env.mock(flavor)
            .set_default(fault(StreamFault::DropAfterFinish));
        let (events, done) = env.stream(flavor).await;
        assert!(done, "{flavor:?}: ends cleanly");
        assert_eq!(text_of(&events), TEXT, "{flavor:?}");
        assert!(usage_of(&events).is_none() || flavor == Flavor::Anthropic);
        assert_eq!(env.mock(flavor).hits(), 1, "{flavor:?}: nothing retried");
    }
    assert_eq!(
        env.metric("switchyard_stream_interruptions_total{").await,
        0.0
    );
}

/// Row 9 with no other candidate (tests/all/rescue.rs has the rescue): a
/// stream that stalls mid-answer with the connection open is ended within the
/// idle window (`routing.stream_idle_timeout_ms`) with an explicit error
/// event, never a clean-looking truncated answer.
#[tokio::test]
async fn row_9_a_stream_stalled_mid_answer_ends_within_the_idle_window() {
    let env = Env::start().await;
    for flavor in FLAVORS {
        env.mock(flavor)
            .set_default(fault(StreamFault::StallMidStream));
        let started = Instant::now();
        let (events, done) = env.stream(flavor).await;
        let took = started.elapsed();
        assert!(!done, "{flavor:?}: a stalled stream must not look finished");
        let partial = text_of(&events);
        assert!(
            !partial.is_empty() && TEXT.starts_with(&partial) && partial != TEXT,
            "{flavor:?}: {partial:?}"
        );
        let last = events.last().expect("events");
        assert_eq!(last["error"]["code"], "stream_interrupted", "{last}");
        // The idle window (1.5 s), not the account's 5 s timeout.
        assert!(
            took < Duration::from_secs(4),
            "{flavor:?}: the 1.5 s idle window took {took:?}"
        );
    }
    assert_eq!(
        env.metric("switchyard_stream_interruptions_total{").await,
        2.0
    );
}

/// Two OpenAI accounts serving the same model, for retries and failover.
struct Pair {
    gateway: Server,
    a: MockProvider,
    b: MockProvider,
    client: reqwest::Client,
}

impl Pair {
    async fn start() -> Pair {
        Pair::start_with("").await
    }

    /// With more `[routing]` settings.
    async fn start_with(routing: &str) -> Pair {
        let a = MockProvider::start(Flavor::OpenAi).await;
        let b = MockProvider::start(Flavor::OpenAi).await;
        let config = format!(
            r#"
            [server]
            listen = "127.0.0.1:0"
            shutdown_grace_secs = 2
            [routing]
            backoff_base_ms = 20
            backoff_max_ms = 200
            {routing}
            [providers.a]
            kind = "openai"
            base_url = "{a}"
            api_key_env = "OA_KEY"
            models = ["gpt-4o-mini"]
            timeout_ms = 5000
            [providers.b]
            kind = "openai"
            base_url = "{b}"
            api_key_env = "OA_KEY"
            models = ["gpt-4o-mini"]
            timeout_ms = 5000
            [teams.team]
            key_sha256 = ["{key}"]
            "#,
            a = a.base_url(),
            b = b.base_url(),
            key = hash_key(KEY),
        );
        Pair {
            gateway: start_gateway("failover-pair.toml", &config, &[("OA_KEY", "sk-oa")]).await,
            a,
            b,
            client: reqwest::Client::new(),
        }
    }

    /// Both accounts behave the same; the test reads which one the plan
    /// tried first from the trail.
    fn both(&self, f: impl Fn(&MockProvider)) {
        f(&self.a);
        f(&self.b);
    }

    fn mock(&self, provider: &Value) -> &MockProvider {
        if provider == "a" { &self.a } else { &self.b }
    }

    /// A non-streamed chat: status, `retry-after` header, body, time taken.
    async fn chat(&self, stream: bool) -> (u16, Option<String>, Value, Duration) {
        let started = Instant::now();
        let response = self
            .client
            .post(format!("http://{}/v1/chat/completions", self.gateway.addr))
            .bearer_auth(KEY)
            .json(&json!({
                "model": "gpt-4o-mini", "stream": stream,
                "messages": [{ "role": "user", "content": "Hello" }],
            }))
            .send()
            .await
            .expect("gateway answers");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.unwrap_or_default();
        let body = if stream {
            // The routing info rides on the first chunk.
            text.split("\n\n")
                .filter_map(|b| b.strip_prefix("data: "))
                .find_map(|d| serde_json::from_str::<Value>(d).ok())
                .unwrap_or(Value::Null)
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        (status, retry_after, body, started.elapsed())
    }
}

fn trail(body: &Value) -> Vec<(String, String, Option<u64>)> {
    body.pointer("/switchyard/trail")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .map(|a| {
                    (
                        a["provider"].as_str().unwrap_or("").to_owned(),
                        a["reason"].as_str().unwrap_or("").to_owned(),
                        a["retry_after_ms"].as_u64(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Row 1: a 429 with `Retry-After: 2`, once: the gateway waits ~2 s and
/// retries the same candidate rather than switching, once.
#[tokio::test]
async fn row_1_a_short_retry_after_is_waited_out_on_the_same_candidate() {
    let pair = Pair::start().await;
    pair.both(|m| {
        m.push(Behavior::RateLimited {
            retry_after_secs: 2,
        })
    });
    let (status, _, body, took) = pair.chat(false).await;
    assert_eq!(status, 200, "{body}");
    let trail = trail(&body);
    assert_eq!(trail.len(), 2, "{body}");
    let first = &body["switchyard"]["trail"][0]["provider"];
    assert_eq!(trail[0].1, "rate_limited");
    assert_eq!(trail[0].2, Some(2000), "the wait is in the trail");
    assert_eq!((&trail[1].0, trail[1].1.as_str()), (&trail[0].0, "ok"));
    assert_eq!(pair.mock(first).hits(), 2, "retried on the same account");
    assert_eq!(
        pair.a.hits() + pair.b.hits(),
        2,
        "the other was never called"
    );
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "waited {took:?}"
    );
}

/// Row 2: a persistent 429 without `Retry-After`: a jittered wait, one retry
/// per candidate, then the next one; never more than 4 calls in 3 s, and
/// the caller's 429 says when to come back.
#[tokio::test]
async fn row_2_a_persistent_429_without_retry_after_is_not_hammered() {
    let pair = Pair::start().await;
    pair.both(|m| {
        m.set_default(Behavior::Error {
            status: 429,
            message: "Rate limit reached".into(),
        })
    });
    let (status, retry_after, body, took) = pair.chat(false).await;
    assert_eq!(status, 429, "{body}");
    assert!(retry_after.is_some(), "the caller is told when to retry");
    let calls = pair.a.hits() + pair.b.hits();
    assert!(
        (2..=4).contains(&calls) && pair.a.hits() <= 2 && pair.b.hits() <= 2,
        "calls: a {} b {}",
        pair.a.hits(),
        pair.b.hits()
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // The retry waited: no tight loop.
    assert!(took >= Duration::from_millis(450), "took {took:?}");
}

/// Row 3: a 500 once, then healthy: one retry on the same candidate.
#[tokio::test]
async fn row_3_a_server_error_once_is_retried_on_the_same_candidate() {
    let pair = Pair::start().await;
    pair.both(|m| {
        m.push(Behavior::Error {
            status: 500,
            message: "The server had an error".into(),
        })
    });
    let (status, _, body, _) = pair.chat(false).await;
    assert_eq!(status, 200, "{body}");
    let trail = trail(&body);
    assert_eq!(trail.len(), 2, "{body}");
    assert_eq!(trail[0].1, "upstream_error");
    assert!(trail[0].2.is_some(), "{body}");
    assert_eq!(trail[0].0, trail[1].0, "the same account served");
    assert_eq!(pair.a.hits() + pair.b.hits(), 2);
}

/// Row 4: a 503 that persists: one retry, then the next candidate answers
/// (its model and usage are what the caller gets).
#[tokio::test]
async fn row_4_a_persistent_503_fails_over_within_the_retry_budget() {
    let pair = Pair::start().await;
    pair.a.set_default(Behavior::Error {
        status: 503,
        message: "a is down".into(),
    });
    pair.b.set_default(Behavior::Error {
        status: 503,
        message: "b is down".into(),
    });
    // Whichever is tried first stays down; the other recovers at once.
    let (status, _, body, _) = pair.chat(false).await;
    assert_eq!(status, 424, "{body}");
    assert_eq!(
        (pair.a.hits(), pair.b.hits()),
        (2, 2),
        "one retry each, no more"
    );
    let first = trail(&body)[0].0.clone();
    let second = if first == "a" { &pair.b } else { &pair.a };
    second.set_default(Behavior::Text("from the fallback".into()));
    let (status, _, body, took) = pair.chat(false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "from the fallback"
    );
    assert_ne!(body["switchyard"]["provider"], json!(first));
    assert!(body["usage"]["completion_tokens"].as_u64() > Some(0));
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

/// Row 5: the provider resets the connection (TCP RST) before any response
/// byte, once: the same candidate is retried on a new connection and
/// answers, streamed or not; the caller sees one clean answer.
#[tokio::test]
async fn row_5_a_connection_reset_before_headers_once_is_retried() {
    for stream in [false, true] {
        // A fresh gateway: its first request opens new connections.
        let pair = Pair::start().await;
        pair.both(|m| m.reset_connections(1));
        let (status, _, body, _) = pair.chat(stream).await;
        assert_eq!(status, 200, "stream {stream}: {body}");
        let trail = trail(&body);
        assert_eq!(trail.len(), 2, "stream {stream}: {body}");
        assert_eq!(trail[0].1, "connect_error", "stream {stream}: {body}");
        assert_eq!(trail[0].0, trail[1].0, "the same account served");
        assert_eq!(trail[1].1, "ok");
        assert_eq!(pair.a.hits() + pair.b.hits(), 1, "one request reached HTTP");
    }
}

/// Row 5, the stream variant: headers and the role chunk arrive, then the
/// connection drops before any content: retried the same way.
#[tokio::test]
async fn row_5_a_stream_dropped_before_content_once_is_retried() {
    let pair = Pair::start().await;
    pair.both(|m| m.push(Behavior::StreamDieBeforeContent));
    let (status, _, first_chunk, _) = pair.chat(true).await;
    assert_eq!(status, 200);
    let trail = trail(&first_chunk);
    assert_eq!(trail.len(), 2, "{first_chunk}");
    assert_eq!(trail[0].0, trail[1].0, "the same account served");
    assert_eq!(pair.a.hits() + pair.b.hits(), 2);
}

/// A first account at `first` serving gpt-4o-mini, and a live mock serving
/// gpt-4.1 behind it: requests name gpt-4o-mini with gpt-4.1 as fallback,
/// so the plan's order is known.
struct Fallback {
    gateway: Server,
    live: MockProvider,
    client: reqwest::Client,
}

impl Fallback {
    async fn start(first: &str, routing: &str) -> Fallback {
        let live = MockProvider::start(Flavor::OpenAi).await;
        live.set_default(Behavior::Text("from the fallback".into()));
        let config = format!(
            r#"
            [server]
            listen = "127.0.0.1:0"
            [routing]
            {routing}
            [providers.first]
            kind = "openai"
            base_url = "{first}"
            api_key_env = "OA_KEY"
            models = ["gpt-4o-mini"]
            timeout_ms = 1000
            connect_timeout_ms = 300
            [providers.live]
            kind = "openai"
            base_url = "{live}"
            api_key_env = "OA_KEY"
            models = ["gpt-4.1"]
            [teams.team]
            key_sha256 = ["{key}"]
            "#,
            live = live.base_url(),
            key = hash_key(KEY),
        );
        Fallback {
            gateway: start_gateway("failover-fallback.toml", &config, &[("OA_KEY", "sk-oa")]).await,
            live,
            client: reqwest::Client::new(),
        }
    }

    /// Status, body (a stream: its first chunk) and time taken.
    async fn chat(&self, stream: bool) -> (u16, Value, Duration) {
        let started = Instant::now();
        let response = self
            .client
            .post(format!("http://{}/v1/chat/completions", self.gateway.addr))
            .bearer_auth(KEY)
            .json(&json!({
                "model": "gpt-4o-mini", "stream": stream,
                "routing": { "models": ["gpt-4.1"] },
                "messages": [{ "role": "user", "content": "Hello" }],
            }))
            .send()
            .await
            .expect("gateway answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body = if stream {
            text.split("\n\n")
                .filter_map(|b| b.strip_prefix("data: "))
                .find_map(|d| serde_json::from_str::<Value>(d).ok())
                .unwrap_or(Value::Null)
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        (status, body, started.elapsed())
    }
}

/// Row 6: a provider that accepts the request and never answers. The
/// attempt gives up at the account's `timeout_ms` (1 s here; a stream at
/// `routing.first_token_timeout_ms`, 600 ms here), not when the provider
/// would, and the next candidate answers.
#[tokio::test]
async fn row_6_no_response_at_all_gives_up_early_and_fails_over() {
    let silent = MockProvider::start(Flavor::OpenAi).await;
    silent.set_default(Behavior::Stall);
    let env = Fallback::start(&silent.base_url(), "first_token_timeout_ms = 600").await;
    for (stream, limit) in [(false, 1000), (true, 600)] {
        let (status, body, took) = env.chat(stream).await;
        assert_eq!(status, 200, "stream {stream}: {body}");
        let t = &body["switchyard"]["trail"];
        assert_eq!(t[0]["reason"], "timeout", "stream {stream}: {body}");
        assert_eq!(t[0]["provider"], "first");
        assert_eq!(body["switchyard"]["provider"], "live");
        assert!(
            took >= Duration::from_millis(limit) && took < Duration::from_millis(limit + 1500),
            "stream {stream}: gave up after {took:?} (limit {limit} ms)"
        );
    }
    assert_eq!(
        silent.hits(),
        2,
        "a timeout is not retried on the same candidate"
    );
    assert_eq!(env.live.hits(), 2);
}

/// Row 6, connect: a provider whose address takes the SYN and never
/// completes the handshake (its accept queue is full) is given up after the
/// account's `connect_timeout_ms` (300 ms here), and the next candidate
/// answers.
#[tokio::test]
async fn row_6_a_connection_that_never_opens_is_given_up_at_the_connect_timeout() {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
    socket.bind(&any.into()).expect("bind");
    socket.listen(0).expect("listen");
    let addr = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("local addr");
    // Fill the accept queue: later handshakes are never completed.
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            fillers.push(s);
        }
    }
    let env = Fallback::start(&format!("http://{addr}/v1"), "").await;
    let (status, body, took) = env.chat(false).await;
    assert_eq!(status, 200, "{body}");
    let t = &body["switchyard"]["trail"];
    assert_eq!(t[0]["provider"], "first", "{body}");
    assert!(
        matches!(t[0]["reason"].as_str(), Some("timeout" | "connect_error")),
        "{body}"
    );
    assert_eq!(body["switchyard"]["provider"], "live");
    // One connect timeout (300 ms), perhaps one retry of it: never the
    // account's 1 s answer timeout per attempt, nor reqwest's default.
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    drop(fillers);
}

/// Row 7: the first token would come after 20 s (scaled here: 3 s) while
/// the time-to-first-token limit is 800 ms: the limit is applied, reported
/// in the trail, and the next candidate answers.
#[tokio::test]
async fn row_7_a_first_token_later_than_the_limit_moves_on_and_says_so() {
    let late = MockProvider::start(Flavor::OpenAi).await;
    late.set_default(Behavior::Slow {
        delay_ms: 3000,
        text: "late".into(),
    });
    let env = Fallback::start(&late.base_url(), "first_token_timeout_ms = 800").await;
    let (status, first_chunk, took) = env.chat(true).await;
    assert_eq!(status, 200, "{first_chunk}");
    let t = &first_chunk["switchyard"]["trail"];
    assert_eq!(t[0]["reason"], "timeout", "{first_chunk}");
    assert!(
        t[0]["message"].as_str().unwrap_or("").contains("800 ms"),
        "the limit is reported: {first_chunk}"
    );
    assert_eq!(first_chunk["switchyard"]["provider"], "live");
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    // The limit shows in the time-to-first-token the metrics keep: only the
    // answer that came in time.
    let m = metrics(&env.gateway).await;
    assert_eq!(
        sum(
            &m,
            "switchyard_time_to_first_token_seconds_count{",
            "gpt-4o-mini"
        ),
        0.0
    );
    assert_eq!(
        sum(
            &m,
            "switchyard_attempts_total{",
            r#"model="gpt-4o-mini",outcome="timeout""#
        ),
        1.0
    );
}

/// A 128k-token model on one account and a 1M-token model on another.
struct Windows {
    gateway: Server,
    small: MockProvider,
    large: MockProvider,
    client: reqwest::Client,
}

impl Windows {
    async fn start() -> Windows {
        let small = MockProvider::start(Flavor::OpenAi).await;
        let large = MockProvider::start(Flavor::OpenAi).await;
        let config = format!(
            r#"
            [server]
            listen = "127.0.0.1:0"
            shutdown_grace_secs = 2
            [routing]
            backoff_base_ms = 1
            backoff_max_ms = 5
            [providers.small]
            kind = "openai"
            base_url = "{small}"
            api_key_env = "OA_KEY"
            models = ["gpt-4o-mini"]
            [providers.large]
            kind = "openai"
            base_url = "{large}"
            api_key_env = "OA_KEY"
            models = ["gpt-4.1"]
            [teams.team]
            key_sha256 = ["{key}"]
            "#,
            small = small.base_url(),
            large = large.base_url(),
            key = hash_key(KEY),
        );
        Windows {
            gateway: start_gateway("failover-windows.toml", &config, &[("OA_KEY", "sk-oa")]).await,
            small,
            large,
            client: reqwest::Client::new(),
        }
    }

    /// gpt-4o-mini, with `fallbacks` as routing.models.
    async fn chat(&self, fallbacks: &[&str]) -> (u16, Value) {
        let response = self
            .client
            .post(format!("http://{}/v1/chat/completions", self.gateway.addr))
            .bearer_auth(KEY)
            .json(&json!({
                "model": "gpt-4o-mini",
                "routing": { "models": fallbacks },
                "messages": [{ "role": "user", "content": "A very long document ..." }],
            }))
            .send()
            .await
            .expect("gateway answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn too_long() -> Behavior {
    Behavior::Error {
        status: 400,
        message: "This model's maximum context length is 128000 tokens. However, your messages resulted in 131072 tokens. Please reduce the length of the messages.".into(),
    }
}

/// Row 12: `context_length_exceeded` is the model's limit, not the caller's
/// fault: never resent to that model, taken by a larger-window candidate when
/// the plan has one, else the caller's 400 with the provider's words.
#[tokio::test]
async fn row_12_a_context_overflow_goes_to_a_larger_window_never_the_same_model() {
    let env = Windows::start().await;
    env.small.set_default(too_long());
    env.large.set_default(Behavior::Text("read it all".into()));
    let (status, body) = env.chat(&["gpt-4.1"]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["switchyard"]["model"], "gpt-4.1");
    assert_eq!(body["choices"][0]["message"]["content"], "read it all");
    assert_eq!(
        body["switchyard"]["trail"][0]["reason"],
        "context_length_exceeded"
    );
    assert_eq!(
        env.small.hits(),
        1,
        "never resent to the model it overflowed"
    );

    // No larger model in the plan: the caller's 400, once.
    let (status, body) = env.chat(&[]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "context_length_exceeded", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("maximum context length is 128000"),
        "{message}"
    );
    assert_eq!(env.small.hits(), 2, "one call, no retry");
    // Not the provider's fault: its circuit and uptime are untouched.
    let metrics = metrics(&env.gateway).await;
    assert!(
        !metrics.contains(
            "switchyard_attempts_total{provider=\"small\",model=\"gpt-4o-mini\",outcome=\"error\"}"
        ),
        "{metrics}"
    );
}

/// Item 4: a request whose estimate (its messages' text at 4 bytes a token)
/// cannot fit a model's context window is never sent there: the larger
/// window takes it, and with none left the caller gets the 400 without any
/// provider being called. An image counts as an image, not its base64 size.
#[tokio::test]
async fn a_request_too_long_for_a_window_is_not_sent_to_it() {
    let env = Windows::start().await;
    env.large.set_default(Behavior::Text("read it all".into()));
    // ~150k tokens: over gpt-4o-mini's 128k, under gpt-4.1's 1M.
    let document = "lorem ipsum ".repeat(50_000);
    let send = |fallbacks: Vec<&'static str>, content: Value| {
        let client = env.client.clone();
        let url = format!("http://{}/v1/chat/completions", env.gateway.addr);
        async move {
            let response = client
                .post(url)
                .bearer_auth(KEY)
                .json(&json!({
                    "model": "gpt-4o-mini",
                    "routing": { "models": fallbacks },
                    "messages": [{ "role": "user", "content": content }],
                }))
                .send()
                .await
                .expect("gateway answers");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, body) = send(vec!["gpt-4.1"], json!(document)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["switchyard"]["model"], "gpt-4.1");
    assert_eq!(body["switchyard"]["attempts"], 1, "{body}");
    assert_eq!(env.small.hits(), 0, "never sent where it cannot fit");

    let (status, body) = send(vec![], json!(document)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "context_length_exceeded", "{body}");
    assert_eq!(body["error"]["param"], "messages");
    assert_eq!(env.small.hits(), 0);

    // A 2 MB base64 image is ~1,000 tokens, not 500k: it fits the small model.
    let image = format!("data:image/png;base64,{}", "A".repeat(2 << 20));
    let content = json!([
        { "type": "text", "text": "What is in this picture?" },
        { "type": "image_url", "image_url": { "url": image } },
    ]);
    env.small.set_default(Behavior::Text("a picture".into()));
    let (status, body) = send(vec![], content).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["switchyard"]["model"], "gpt-4o-mini");
}

/// Row 13: a content-filter refusal is the provider's verdict on the
/// request: no retry, no failover, and its reason reaches the caller.
#[tokio::test]
async fn row_13_a_content_filter_refusal_is_neither_retried_nor_failed_over() {
    let env = Windows::start().await;
    env.small.set_default(Behavior::Error {
        status: 400,
        message: "Your request was rejected as a result of our safety system.".into(),
    });
    env.large
        .set_default(Behavior::Text("should not be asked".into()));
    let (status, body) = env.chat(&["gpt-4.1"]).await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("safety system"), "{message}");
    assert_eq!((env.small.hits(), env.large.hits()), (1, 0));
}

/// Row 16: the primary fails with 503, the fallback answers: the caller
/// sees the fallback's model and usage, and the failed attempts cost nothing.
#[tokio::test]
async fn row_16_the_fallback_answers_and_the_failed_attempts_cost_nothing() {
    let env = Windows::start().await;
    env.small.set_default(Behavior::Error {
        status: 503,
        message: "overloaded".into(),
    });
    env.large
        .set_default(Behavior::Text("from the fallback".into()));
    let (status, body) = env.chat(&["gpt-4.1"]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["switchyard"]["model"], "gpt-4.1");
    assert_eq!(body["model"], "gpt-4.1", "{body}");
    let usage = &body["usage"];
    assert!(usage["completion_tokens"].as_u64() > Some(0), "{body}");
    // gpt-4.1: $2 / $8 per 1M tokens, for the fallback's usage alone.
    let want = (usage["prompt_tokens"].as_f64().unwrap_or(0.0) * 2.0
        + usage["completion_tokens"].as_f64().unwrap_or(0.0) * 8.0)
        / 1e6;
    let cost = body["switchyard"]["cost_usd"].as_f64().unwrap_or(-1.0);
    assert!((cost - want).abs() < 1e-12, "{cost} vs {want}");
    let metrics = metrics(&env.gateway).await;
    let small_cost = sum(&metrics, "switchyard_cost_usd_total{", "gpt-4o-mini");
    assert_eq!(small_cost, 0.0, "{metrics}");
}

/// Row 15 (scaled: down 3 s instead of 60, requests 250 ms apart instead of
/// 4 s, breaker recovery 1 s): the primary fails, the fallback serves, the
/// half-open primary is probed with one real request per recovery window —
/// ahead of the healthy fallback — and serves again once it answers, without
/// waiting out the feature-uptime record of its failures.
#[tokio::test]
async fn row_15_a_primary_that_recovers_is_probed_and_serves_again() {
    let primary = MockProvider::start(Flavor::OpenAi).await;
    primary.set_default(Behavior::Error {
        status: 503,
        message: "down for maintenance".into(),
    });
    let env = Fallback::start(
        &primary.base_url(),
        "feature_uptime_window_secs = 2
        [routing.circuit_breaker]
        min_requests = 2
        recovery_secs = 1",
    )
    .await;
    let started = Instant::now();
    let down_for = Duration::from_secs(3);
    let mut served = Vec::new();
    let mut hits_while_down = 0;
    for i in 0..24u32 {
        let at = Duration::from_millis(250) * i;
        if let Some(wait) = at.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        if started.elapsed() >= down_for && hits_while_down == 0 {
            hits_while_down = primary.hits();
            primary.set_default(Behavior::Text("the primary is back".into()));
        }
        let (status, first_chunk, _) = env.chat(true).await;
        assert_eq!(status, 200, "request {i}: {first_chunk}");
        let provider = first_chunk["switchyard"]["provider"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        served.push((started.elapsed(), provider));
    }
    // Down: the first request's call and retry, then one probe a recovery
    // window — never every request.
    assert!(
        (2..=7).contains(&hits_while_down),
        "the primary was called {hits_while_down} times while down: {served:?}"
    );
    assert!(
        served.iter().any(|(_, p)| p == "live"),
        "the fallback served meanwhile: {served:?}"
    );
    // Back: within a recovery window (and a probe), the primary serves.
    let back = down_for + Duration::from_millis(1800);
    let late: Vec<_> = served.iter().filter(|(t, _)| *t >= back).collect();
    assert!(late.len() >= 4, "{served:?}");
    assert!(
        late.iter().all(|(_, p)| p == "first"),
        "the recovered primary serves again: {served:?}"
    );
}
