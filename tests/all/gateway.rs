//! End-to-end: the gateway on an ephemeral port, in front of mock providers
//! that speak the real OpenAI and Anthropic wire formats.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard::api::Server;
use switchyard::config::hash_key;
use switchyard_tests::mock::{Behavior, Flavor, MockProvider};
use switchyard_tests::start_gateway;

const KEY: &str = "sk-test-team";
const ZDR_KEY: &str = "sk-zdr-team";

/// Two OpenAI accounts serving the same models, one Anthropic account, and a
/// text-only local model.
struct Env {
    gateway: Server,
    oa1: MockProvider,
    oa2: MockProvider,
    anth: MockProvider,
    local: MockProvider,
    client: reqwest::Client,
}

impl Env {
    async fn start() -> Env {
        let oa1 = MockProvider::start(Flavor::OpenAi).await;
        let oa2 = MockProvider::start(Flavor::OpenAi).await;
        let anth = MockProvider::start(Flavor::Anthropic).await;
        let local = MockProvider::start(Flavor::OpenAi).await;
        let text = format!(
            r#"
            [server]
            listen = "127.0.0.1:0"
            shutdown_grace_secs = 5
            [routing]
            first_token_timeout_ms = 700
            backoff_base_ms = 1
            backoff_max_ms = 5
            rate_limit_cooldown_secs = 1
            [providers.oa1]
            kind = "openai"
            base_url = "{oa1}"
            api_key_env = "OA_KEY"
            models = ["gpt-4o-mini", "gpt-4o"]
            timeout_ms = 3000
            [providers.oa2]
            kind = "openai"
            base_url = "{oa2}"
            api_key_env = "OA_KEY"
            models = ["gpt-4o-mini", "gpt-4o"]
            timeout_ms = 3000
            [providers.anth]
            kind = "anthropic"
            base_url = "{anth}"
            api_key_env = "ANTH_KEY"
            models = ["claude-haiku-4-5"]
            timeout_ms = 3000
            [providers.local]
            kind = "openai-compatible"
            base_url = "{local}"
            models = ["tiny-text"]
            [models."tiny-text"]
            input = 0.0
            output = 0.0
            tier = 3
            features = ["stream", "temperature"]
            [logical_models.primary-llm]
            targets = ["gpt-4o", "claude-haiku-4-5"]
            capabilities = ["streaming", "tools"]
            [logical_models.primary-llm.defaults]
            temperature = 0.3
            max_tokens = 256
            stop = ["END"]
            [teams.team]
            key_sha256 = ["{key}"]
            [teams.zdr]
            key_sha256 = ["{zdr}"]
            zdr = true
            "#,
            oa1 = oa1.base_url(),
            oa2 = oa2.base_url(),
            anth = anth.base_url(),
            local = local.base_url(),
            key = hash_key(KEY),
            zdr = hash_key(ZDR_KEY),
        );
        let env = [
            ("OA_KEY", "sk-upstream-openai"),
            ("ANTH_KEY", "sk-upstream-anthropic"),
        ];
        let gateway = start_gateway("test.toml", &text, &env).await;
        Env {
            gateway,
            oa1,
            oa2,
            anth,
            local,
            client: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway.addr)
    }

    async fn chat_with(&self, key: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("gateway answers")
    }

    async fn chat(&self, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
        let response = self.chat_with(KEY, body).await;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.json::<Value>().await.expect("JSON body");
        (status, headers, body)
    }
}

fn hello(model: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": "Hello there" }] })
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Reads an SSE body: the JSON events, and whether it ended with `[DONE]`.
async fn read_sse(response: reqwest::Response) -> (Vec<Value>, bool) {
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

fn streamed_text(events: &[Value]) -> String {
    events
        .iter()
        .filter_map(|e| {
            e.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect()
}

#[tokio::test]
async fn pinned_model_fails_over_to_its_second_provider() {
    let env = Env::start().await;
    env.oa1.set_default(Behavior::Error {
        status: 503,
        message: "oa1 is down".into(),
    });
    env.oa2.set_default(Behavior::Text("served by oa2".into()));
    let (status, headers, body) = env.chat(hello("gpt-4o-mini")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "served by oa2");
    assert_eq!(body["switchyard"]["provider"], "oa2");
    // oa1, oa1 once more (one retry per candidate), then oa2.
    assert_eq!(body["switchyard"]["attempts"], 3);
    for i in 0..2 {
        assert_eq!(body["switchyard"]["trail"][i]["provider"], "oa1");
        assert_eq!(body["switchyard"]["trail"][i]["status"], 503);
    }
    assert!(body["switchyard"]["trail"][0]["retry_after_ms"].is_u64());
    assert!(
        body["switchyard"]["trail"][1]
            .get("retry_after_ms")
            .is_none()
    );
    assert_eq!(env.oa1.hits(), 2);
    assert_eq!(header(&headers, "x-switchyard-provider"), "oa2");
    assert_eq!(header(&headers, "x-switchyard-model"), "gpt-4o-mini");
    assert_eq!(header(&headers, "x-switchyard-attempts"), "3");
    let cost: f64 = header(&headers, "x-switchyard-cost-usd")
        .parse()
        .expect("cost header");
    assert!(cost > 0.0);
    // The upstream got the real model id and our key, never the caller's.
    let sent = &env.oa2.requests()[0];
    assert_eq!(sent.body["model"], "gpt-4o-mini");
    assert_eq!(
        sent.header("authorization"),
        Some("Bearer sk-upstream-openai")
    );
    assert!(sent.body.get("routing").is_none());
}

/// A provider's answer reaches a Chat Completions caller as the provider
/// wrote it (its own fields, key order and number spelling), with only the
/// gateway's `switchyard` object added; a `switchyard` key of the
/// provider's own is replaced, never passed on beside ours.
#[tokio::test]
async fn a_providers_answer_is_relayed_as_written_with_the_routing_object_added() {
    let env = Env::start().await;
    let answer = r#"{"id":"chatcmpl-raw","object":"chat.completion","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp_x","choices":[{"index":0,"message":{"role":"assistant","content":"as written"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7},"service_tier":"default","x_score":1.50}"#;
    let raw = |body: &str| Behavior::Raw {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
    };
    env.oa1.set_default(raw(answer));
    let response = env.chat_with(KEY, hello("gpt-4o-mini")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(response.headers(), "content-type"),
        "application/json"
    );
    let text = response.text().await.expect("body");
    let provider_part = &answer[..answer.len() - 1];
    assert!(text.starts_with(provider_part), "{text}");
    assert!(
        text[provider_part.len()..].starts_with(r#","switchyard":{"#),
        "{text}"
    );
    let body: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(body["switchyard"]["provider"], "oa1");
    assert!(
        body["switchyard"]["cost_usd"]
            .as_f64()
            .is_some_and(|c| c > 0.0),
        "{body}"
    );

    let spoofed = answer.replace(
        r#""x_score":1.50}"#,
        r#""switchyard":{"provider":"elsewhere","cost_usd":0}}"#,
    );
    env.oa1.set_default(raw(&spoofed));
    let (status, _, body) = env.chat(hello("gpt-4o-mini")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["switchyard"]["provider"], "oa1");
    assert_eq!(body["service_tier"], "default");
    let text = env
        .chat_with(KEY, hello("gpt-4o-mini"))
        .await
        .text()
        .await
        .expect("body");
    assert_eq!(text.matches(r#""switchyard""#).count(), 1, "{text}");
    assert!(!text.contains("elsewhere"), "{text}");
}

/// A streamed answer reaches a Chat Completions caller as the provider wrote
/// each chunk (its own fields, key order and number spelling): the gateway
/// adds its `switchyard` object to the first chunk (the routing) and to the
/// usage chunk (the cost) and passes every other chunk on untouched.
#[tokio::test]
async fn a_providers_stream_is_relayed_chunk_by_chunk_as_written() {
    let env = Env::start().await;
    let chunks = [
        r#"{"id":"chatcmpl-s","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp_s","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"obfuscation":"x1"}"#,
        r#"{"id":"chatcmpl-s","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp_s","choices":[{"index":0,"delta":{"content":"as \u0022written\u0022"},"logprobs":null,"finish_reason":null}],"x_score":1.50}"#,
        r#"{"id":"chatcmpl-s","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp_s","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}"#,
        r#"{"id":"chatcmpl-s","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#,
    ];
    let body: String = chunks
        .iter()
        .map(|c| format!("data: {c}\n\n"))
        .chain(["data: [DONE]\n\n".to_string()])
        .collect();
    env.oa1.set_default(Behavior::Raw {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        body: body.into_bytes(),
    });
    let mut request = hello("gpt-4o-mini");
    request["stream"] = json!(true);
    request["stream_options"] = json!({"include_usage": true});
    let response = env.chat_with(KEY, request).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    let events: Vec<&str> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect();
    assert_eq!(events.len(), 5, "{text}");
    assert_eq!(events[4], "[DONE]");
    for (i, (sent, got)) in chunks.iter().zip(&events).enumerate() {
        if i == 0 || i == 3 {
            let provider_part = &sent[..sent.len() - 1];
            assert!(got.starts_with(provider_part), "chunk {i}: {got}");
            assert!(
                got[provider_part.len()..].starts_with(r#","switchyard":{"#),
                "chunk {i}: {got}"
            );
            let value: Value = serde_json::from_str(got).expect("JSON");
            if i == 0 {
                assert_eq!(value["switchyard"]["provider"], "oa1", "{got}");
            }
        } else {
            assert_eq!(got, sent, "chunk {i} is the provider's text");
        }
    }
    let usage: Value = serde_json::from_str(events[3]).expect("JSON");
    assert!(
        usage["switchyard"]["cost_usd"]
            .as_f64()
            .is_some_and(|c| c > 0.0),
        "{usage}"
    );
}

/// A stream that ends cleanly with a finish and no content (an empty
/// answer) is an answer: the caller gets its chunks and `[DONE]`. The gateway
/// used to poll the ended upstream again and drop the connection.
#[tokio::test]
async fn an_empty_streamed_answer_ends_with_done() {
    let env = Env::start().await;
    let body = concat!(
        r#"data: {"id":"e","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
        "\n\n",
        r#"data: {"id":"e","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        "\n\n",
        "data: [DONE]\n\n",
    );
    env.oa1.set_default(Behavior::Raw {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        body: body.as_bytes().to_vec(),
    });
    let mut request = hello("gpt-4o-mini");
    request["stream"] = json!(true);
    let response = env.chat_with(KEY, request).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("a whole body");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(text.contains(r#""finish_reason":"stop""#), "{text}");
    let (status, _, _) = env.chat(hello("gpt-4o-mini")).await;
    assert_eq!(status, 200, "and the gateway keeps serving");
}

#[tokio::test]
async fn pinned_provider_down_goes_to_the_same_model_elsewhere() {
    let env = Env::start().await;
    env.oa2.set_default(Behavior::Error {
        status: 500,
        message: "oa2 exploded".into(),
    });
    let (status, _, body) = env.chat(hello("oa2/gpt-4o")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["switchyard"]["trail"][0]["provider"], "oa2");
    assert_eq!(body["switchyard"]["provider"], "oa1");
    assert_eq!(body["switchyard"]["model"], "gpt-4o");
    assert_eq!(env.oa1.requests()[0].body["model"], "gpt-4o");
}

#[tokio::test]
async fn fallback_model_serves_when_the_primary_is_exhausted() {
    let env = Env::start().await;
    env.oa1.set_default(Behavior::Error {
        status: 503,
        message: "down".into(),
    });
    env.oa2.set_default(Behavior::Error {
        status: 502,
        message: "down too".into(),
    });
    env.anth
        .set_default(Behavior::Text("Claude to the rescue".into()));
    let mut request = hello("gpt-4o-mini");
    request["routing"] = json!({ "models": ["claude-haiku-4-5"] });
    let (status, _, body) = env.chat(request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Claude to the rescue"
    );
    assert_eq!(body["switchyard"]["provider"], "anth");
    // Each failing account once and once more, then the fallback model.
    assert_eq!(body["switchyard"]["attempts"], 5);
    assert_eq!(body["object"], "chat.completion");
    assert!(
        body["usage"]["prompt_tokens"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
    let sent = &env.anth.requests()[0];
    assert_eq!(sent.body["model"], "claude-haiku-4-5");
    assert_eq!(sent.header("x-api-key"), Some("sk-upstream-anthropic"));
}

#[tokio::test]
async fn all_providers_down_is_a_424_naming_the_last_error() {
    let env = Env::start().await;
    env.oa1.set_default(Behavior::Error {
        status: 503,
        message: "first failure".into(),
    });
    env.oa2.set_default(Behavior::Error {
        status: 500,
        message: "the very last failure".into(),
    });
    let (status, _, body) = env.chat(hello("gpt-4o-mini")).await;
    assert_eq!(status, 424, "{body}");
    assert_eq!(body["error"]["type"], "upstream_error");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("the very last failure"), "{message}");
    assert_eq!(
        body["switchyard"]["trail"].as_array().map(Vec::len),
        Some(4),
        "each account and one retry each"
    );
    assert_eq!(body["switchyard"]["trail"][3]["status"], 500);
}

#[tokio::test]
async fn all_providers_rate_limited_is_a_429_with_retry_after() {
    let env = Env::start().await;
    env.oa1.set_default(Behavior::RateLimited {
        retry_after_secs: 7,
    });
    env.oa2.set_default(Behavior::RateLimited {
        retry_after_secs: 3,
    });
    let (status, headers, body) = env.chat(hello("gpt-4o-mini")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(header(&headers, "retry-after"), "3");
    // Both accounts now cool down: the next request is refused without
    // touching them.
    let hits = env.oa1.hits() + env.oa2.hits();
    let (status, headers, _) = env.chat(hello("gpt-4o-mini")).await;
    assert_eq!(status, 429);
    assert!(!header(&headers, "retry-after").is_empty());
    assert_eq!(env.oa1.hits() + env.oa2.hits(), hits);
}

#[tokio::test]
async fn a_zdr_team_with_no_zdr_provider_gets_422() {
    let env = Env::start().await;
    let response = env.chat_with(ZDR_KEY, hello("gpt-4o-mini")).await;
    assert_eq!(response.status().as_u16(), 422);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "zdr_unavailable");
    assert_eq!(env.oa1.hits() + env.oa2.hits(), 0);
}

#[tokio::test]
async fn bad_requests_get_openai_style_errors() {
    let env = Env::start().await;
    let (status, _, body) = env.chat(hello("gpt-9-ultra")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "model_not_found");
    assert_eq!(body["error"]["param"], "model");

    let response = env
        .client
        .post(env.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body("{\"model\": \"gpt-4o\", ")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("parse the JSON")
    );

    let response = env
        .client
        .post(env.url("/v1/chat/completions"))
        .json(&hello("gpt-4o"))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "missing_api_key");

    let response = env.chat_with("sk-wrong", hello("gpt-4o")).await;
    assert_eq!(response.status().as_u16(), 401);

    let (status, _, body) = env.chat(json!({ "model": "gpt-4o", "messages": [] })).await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("messages"))
    );

    let mut request = hello("gpt-4o");
    request["routing"] = json!({ "interval": "5m" });
    let (status, _, body) = env.chat(request).await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("routing.interval"))
    );

    let response = env
        .client
        .get(env.url("/v2/nothing"))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(env.oa1.hits() + env.oa2.hits(), 0);
}

#[tokio::test]
async fn the_callers_own_4xx_is_never_retried() {
    let env = Env::start().await;
    env.oa1.set_default(Behavior::Error {
        status: 400,
        message: "messages[0].content is too long".into(),
    });
    let (status, _, body) = env.chat(hello("gpt-4o-mini")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("too long")
    );
    assert_eq!(env.oa1.hits(), 1);
    assert_eq!(env.oa2.hits(), 0);
}

#[tokio::test]
async fn quota_exhausted_puts_the_account_in_cooldown() {
    let env = Env::start().await;
    env.oa1.set_default(Behavior::Error {
        status: 402,
        message: "insufficient credit".into(),
    });
    for _ in 0..3 {
        let (status, _, body) = env.chat(hello("gpt-4o-mini")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["switchyard"]["provider"], "oa2");
    }
    assert_eq!(env.oa1.hits(), 1, "an exhausted account is not tried again");
}

#[tokio::test]
async fn fallbacks_obey_the_capability_filter() {
    let env = Env::start().await;
    env.oa1.set_default(Behavior::Error {
        status: 503,
        message: "down".into(),
    });
    env.oa2.set_default(Behavior::Error {
        status: 503,
        message: "down".into(),
    });
    let request = json!({
        "model": "gpt-4o-mini",
        "routing": { "models": ["tiny-text"] },
        "messages": [{ "role": "user", "content": [
            { "type": "text", "text": "What is in this picture?" },
            { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBORw0KGgo=" } }
        ]}]
    });
    let (status, _, body) = env.chat(request).await;
    assert_eq!(status, 424, "{body}");
    assert_eq!(
        env.local.hits(),
        0,
        "an image never goes to a text-only model"
    );
}

#[tokio::test]
async fn streaming_through_the_anthropic_adapter_yields_openai_chunks() {
    let env = Env::start().await;
    env.anth
        .set_default(Behavior::Text("Streaming from Claude works".into()));
    let mut request = hello("claude-haiku-4-5");
    request["stream"] = json!(true);
    request["stream_options"] = json!({ "include_usage": true });
    let response = env.chat_with(KEY, request).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        header(response.headers(), "content-type"),
        "text/event-stream"
    );
    assert_eq!(header(response.headers(), "x-switchyard-provider"), "anth");
    let (events, done) = read_sse(response).await;
    assert!(done, "ends with [DONE]");
    assert!(
        events
            .iter()
            .all(|e| e["object"] == "chat.completion.chunk"),
        "{events:?}"
    );
    assert_eq!(events[0]["switchyard"]["provider"], "anth");
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(streamed_text(&events), "Streaming from Claude works");
    assert!(
        events
            .iter()
            .any(|e| e["choices"][0]["finish_reason"] == "stop")
    );
    let usage = events
        .iter()
        .find(|e| e.get("usage").is_some_and(|u| !u.is_null()))
        .expect("usage chunk");
    assert!(
        usage["usage"]["completion_tokens"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
    assert!(usage["switchyard"]["cost_usd"].as_f64().is_some());
}

#[tokio::test]
async fn usage_is_only_streamed_to_callers_who_ask() {
    let env = Env::start().await;
    let mut request = hello("gpt-4o-mini");
    request["stream"] = json!(true);
    let (events, done) = read_sse(env.chat_with(KEY, request).await).await;
    assert!(done);
    assert!(
        events
            .iter()
            .all(|e| e.get("usage").is_none_or(Value::is_null)),
        "{events:?}"
    );
    // The gateway still asked upstream for usage, to compute the cost.
    assert_eq!(
        env.oa1.requests()[0].body["stream_options"]["include_usage"],
        true
    );
}

#[tokio::test]
async fn a_tool_call_round_trips_through_the_anthropic_adapter() {
    let env = Env::start().await;
    env.anth.push(Behavior::ToolCall {
        name: "get_weather".into(),
        arguments: json!({ "city": "Paris" }),
    });
    env.anth
        .push(Behavior::Text("It is sunny in Paris.".into()));
    let tools = json!([{ "type": "function", "function": {
        "name": "get_weather", "description": "Weather by city",
        "parameters": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] }
    }}]);
    let (status, _, body) = env
        .chat(json!({ "model": "claude-haiku-4-5", "tools": tools,
            "messages": [{ "role": "user", "content": "Weather in Paris?" }] }))
        .await;
    assert_eq!(status, 200, "{body}");
    let message = &body["choices"][0]["message"];
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    let call = &message["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(
        call["function"]["arguments"]
            .as_str()
            .expect("arguments string"),
    )
    .expect("JSON");
    assert_eq!(args, json!({ "city": "Paris" }));
    let call_id = call["id"].as_str().expect("id").to_string();

    let (status, _, body) = env
        .chat(
            json!({ "model": "claude-haiku-4-5", "tools": tools, "messages": [
                { "role": "user", "content": "Weather in Paris?" },
                { "role": "assistant", "content": null, "tool_calls": [call] },
                { "role": "tool", "tool_call_id": call_id, "content": "{\"sky\": \"sunny\"}" }
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "It is sunny in Paris."
    );
    // What Anthropic received: tool_use from the assistant, tool_result from the user.
    let sent = &env.anth.requests()[1].body;
    assert_eq!(sent["tools"][0]["name"], "get_weather");
    assert_eq!(sent["messages"][1]["content"][0]["type"], "tool_use");
    assert_eq!(
        sent["messages"][1]["content"][0]["input"],
        json!({ "city": "Paris" })
    );
    assert_eq!(sent["messages"][2]["role"], "user");
    assert_eq!(sent["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(
        sent["messages"][2]["content"][0]["tool_use_id"],
        sent["messages"][1]["content"][0]["id"]
    );
}

#[tokio::test]
async fn a_stream_that_dies_before_its_first_token_is_replaced() {
    let env = Env::start().await;
    env.oa1.set_default(Behavior::StreamDieBeforeContent);
    env.oa2
        .set_default(Behavior::Text("clean stream from oa2".into()));
    let mut request = hello("gpt-4o-mini");
    request["stream"] = json!(true);
    let response = env.chat_with(KEY, request).await;
    assert_eq!(response.status().as_u16(), 200);
    let (events, done) = read_sse(response).await;
    assert!(done);
    assert_eq!(streamed_text(&events), "clean stream from oa2");
    assert_eq!(events[0]["switchyard"]["provider"], "oa2");
    // The dead stream is retried once on oa1, then oa2 answers.
    assert_eq!(events[0]["switchyard"]["attempts"], 3);
    // Exactly one role chunk: nothing of the dead stream reached the client.
    let roles = events
        .iter()
        .filter(|e| e["choices"][0]["delta"]["role"] == "assistant")
        .count();
    assert_eq!(roles, 1, "{events:?}");
}

#[tokio::test]
async fn a_stream_that_stalls_before_its_first_token_is_replaced() {
    let env = Env::start().await;
    env.oa1.set_default(Behavior::StreamStallBeforeContent);
    env.oa2
        .set_default(Behavior::Text("after the stall".into()));
    let mut request = hello("gpt-4o-mini");
    request["stream"] = json!(true);
    let (events, done) = read_sse(env.chat_with(KEY, request).await).await;
    assert!(done);
    assert_eq!(streamed_text(&events), "after the stall");
    assert_eq!(events[0]["switchyard"]["trail"][0]["reason"], "timeout");
}

#[tokio::test]
async fn an_anthropic_error_event_before_content_fails_over() {
    let env = Env::start().await;
    env.anth.set_default(Behavior::StreamErrorEvent);
    env.oa1
        .set_default(Behavior::Text("OpenAI took over".into()));
    let mut request = hello("claude-haiku-4-5");
    request["stream"] = json!(true);
    request["routing"] = json!({ "models": ["gpt-4o-mini"] });
    let (events, done) = read_sse(env.chat_with(KEY, request).await).await;
    assert!(done);
    assert_eq!(streamed_text(&events), "OpenAI took over");
    assert_eq!(events[0]["switchyard"]["trail"][0]["provider"], "anth");
}

/// The fallback's answer differs from the partial one the caller has, so
/// the mid-stream rescue cannot continue it (tests/all/rescue.rs has the
/// rescues that can): the caller gets an error event, never `[DONE]`.
#[tokio::test]
async fn an_upstream_cut_after_content_that_cannot_be_continued_ends_with_an_error_event() {
    let env = Env::start().await;
    env.oa1.set_default(Behavior::StreamCutAfterContent {
        text: "partial answer".into(),
    });
    let mut request = hello("gpt-4o-mini");
    request["stream"] = json!(true);
    let (events, done) = read_sse(env.chat_with(KEY, request).await).await;
    assert!(!done, "a cut stream must not look finished");
    assert_eq!(streamed_text(&events), "partial answer");
    let last = events.last().expect("events");
    assert_eq!(last["error"]["code"], "stream_interrupted", "{last}");
    let message = last["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("stream broke"),
        "the original failure: {message}"
    );
    assert_eq!(env.oa2.hits(), 1, "the rescue tried the fallback once");
}

#[tokio::test]
async fn a_client_disconnecting_mid_stream_releases_the_upstream() {
    let env = Env::start().await;
    let long = (0..400)
        .map(|i| format!("word{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    env.oa1.set_default(Behavior::Text(long));
    let mut request = hello("gpt-4o-mini");
    request["stream"] = json!(true);
    let response = env.chat_with(KEY, request).await;
    let mut body = response.bytes_stream();
    let _ = body.next().await;
    let _ = body.next().await;
    assert_eq!(env.oa1.open_connections(), 1);
    drop(body);
    let mut released = false;
    for _ in 0..200 {
        if env.oa1.open_connections() == 0 {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(released, "the upstream stream is dropped with the client");
    let (status, _, _) = env.chat(hello("gpt-4o-mini")).await;
    assert_eq!(status, 200, "and the gateway keeps serving");
}

#[tokio::test]
async fn models_lists_the_catalog_with_prices_and_features() {
    let env = Env::start().await;
    let response = env
        .client
        .get(env.url("/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("json");
    let data = body["data"].as_array().expect("data");
    let haiku = data
        .iter()
        .find(|m| m["id"] == "claude-haiku-4-5")
        .expect("haiku listed");
    assert_eq!(haiku["pricing"]["input"], 1.0);
    assert_eq!(haiku["providers"], json!(["anth"]));
    assert!(
        haiku["features"]
            .as_array()
            .is_some_and(|f| f.contains(&json!("vision")))
    );
    assert!(
        data.iter().all(|m| m["id"] != "gpt-5"),
        "models no account serves are not listed"
    );
    let health = env
        .client
        .get(env.url("/healthz"))
        .send()
        .await
        .expect("answer");
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test]
async fn shutdown_drains_an_open_stream() {
    let env = Env::start().await;
    let long = (0..60)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    env.oa1.set_default(Behavior::Text(long.clone()));
    let mut request = hello("gpt-4o-mini");
    request["stream"] = json!(true);
    let response = env.chat_with(KEY, request).await;
    assert_eq!(response.status().as_u16(), 200);
    let reader = tokio::spawn(read_sse(response));
    tokio::time::sleep(Duration::from_millis(30)).await;
    let Env { gateway, .. } = env;
    gateway.shutdown().await.expect("clean shutdown");
    let (events, done) = reader.await.expect("reader");
    assert!(
        done,
        "the in-flight stream finished before the gateway stopped"
    );
    assert_eq!(streamed_text(&events), long);
}

/// A stream still open when the shutdown grace period (5 s here) is about
/// to end gets an explicit interruption event in its API's shape, never a
/// silent cut, and the gateway stops within the grace period.
#[tokio::test]
async fn a_stream_outliving_the_shutdown_grace_period_is_told_so() {
    let env = Env::start().await;
    // 2,000 words at 5 ms each: ten seconds, longer than the grace period.
    let long = (0..2000)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    env.oa1.set_default(Behavior::Text(long.clone()));
    env.oa2.set_default(Behavior::Text(long.clone()));
    let mut request = hello("gpt-4o-mini");
    request["stream"] = json!(true);
    let response = env.chat_with(KEY, request).await;
    assert_eq!(response.status().as_u16(), 200);
    let reader = tokio::spawn(read_sse(response));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let Env { gateway, .. } = env;
    gateway.shutdown().await.expect("clean shutdown");
    let took = started.elapsed();
    let (events, done) = reader.await.expect("reader");
    assert!(!done, "an interrupted stream must not look finished");
    let text = streamed_text(&events);
    assert!(!text.is_empty() && long.starts_with(&text) && text != long);
    let last = events.last().expect("events");
    assert_eq!(last["error"]["code"], "stream_interrupted", "{last}");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("shutting down"),
        "{last}"
    );
    assert!(took < Duration::from_millis(5500), "stopped after {took:?}");
}

#[tokio::test]
async fn a_logical_model_applies_its_defaults_and_falls_back_in_target_order() {
    let env = Env::start().await;
    let (status, _, body) = env.chat(hello("primary-llm")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["switchyard"]["model"], "gpt-4o");
    assert_eq!(body["switchyard"]["logical_model"], "primary-llm");
    let served = |body: &Value| match body["switchyard"]["provider"].as_str() {
        Some("oa1") => env.oa1.requests(),
        _ => env.oa2.requests(),
    };
    let sent = served(&body)
        .last()
        .map(|r| r.body.clone())
        .unwrap_or_default();
    assert_eq!(sent["model"], "gpt-4o");
    assert_eq!(sent["temperature"], 0.3);
    assert_eq!(sent["max_completion_tokens"], 256);
    assert_eq!(sent["stop"], json!(["END"]));

    // What the request sets wins over the defaults.
    let mut own = hello("primary-llm");
    own["temperature"] = json!(0.9);
    own["max_tokens"] = json!(50);
    let (status, _, body) = env.chat(own).await;
    assert_eq!(status, 200, "{body}");
    let sent = served(&body)
        .last()
        .map(|r| r.body.clone())
        .unwrap_or_default();
    assert_eq!(sent["temperature"], 0.9);
    assert_eq!(sent["max_tokens"], 50);
    assert!(sent.get("max_completion_tokens").is_none(), "{sent}");

    // The primary fails everywhere: the next target serves, with the defaults
    // in Anthropic's terms.
    for mock in [&env.oa1, &env.oa2] {
        mock.set_default(Behavior::Error {
            status: 500,
            message: "down".into(),
        });
    }
    let (status, _, body) = env.chat(hello("primary-llm")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["switchyard"]["provider"], "anth");
    assert_eq!(body["switchyard"]["model"], "claude-haiku-4-5");
    assert_eq!(body["switchyard"]["logical_model"], "primary-llm");
    let sent = env
        .anth
        .requests()
        .last()
        .map(|r| r.body.clone())
        .unwrap_or_default();
    assert_eq!(sent["temperature"], 0.3);
    assert_eq!(sent["max_tokens"], 256);
    assert_eq!(sent["stop_sequences"], json!(["END"]));
}

#[tokio::test]
async fn a_logical_model_refuses_what_it_does_not_offer_and_is_listed() {
    let env = Env::start().await;
    let (status, _, body) = env
        .chat(
            json!({ "model": "primary-llm", "messages": [{ "role": "user", "content": [
            { "type": "text", "text": "What is this?" },
            { "type": "image_url", "image_url": { "url": "https://example.com/cat.png" } }
        ] }] }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "capability_not_supported");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("vision"),
        "{body}"
    );
    assert_eq!(env.oa1.hits() + env.oa2.hits() + env.anth.hits(), 0);

    let response = env
        .client
        .get(env.url("/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("models");
    let models: Value = response.json().await.expect("JSON");
    let logical = models["data"]
        .as_array()
        .and_then(|d| d.iter().find(|m| m["id"] == "primary-llm"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(logical["logical"], true, "{models}");
    assert_eq!(logical["targets"], json!(["gpt-4o", "claude-haiku-4-5"]));
    assert_eq!(logical["defaults"]["temperature"], 0.3);
}

#[tokio::test]
async fn an_oversized_body_gets_a_413_the_client_can_read() {
    let env = Env::start().await;
    // Over the 4 MiB limit (and the 20 MiB one of requests with images),
    // sent with a length and then chunked: either way the client is still
    // sending when the gateway refuses, and must get the error, not a broken
    // pipe.
    let big = format!(
        r#"{{"model": "gpt-4o", "messages": [{{"role": "user", "content": "{}"}}]}}"#,
        "x".repeat(21 << 20)
    );
    let sized = env
        .client
        .post(env.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .expect("the 413 reaches the client");
    let chunks = futures_util::stream::iter(
        big.into_bytes()
            .chunks(1 << 20)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let chunked = env
        .client
        .post(env.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("the 413 reaches the client");
    for response in [sized, chunked] {
        assert_eq!(response.status(), 413);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "request_too_large", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("4194304 byte limit")),
            "{body}"
        );
    }
    assert_eq!(env.oa1.hits() + env.oa2.hits(), 0);
}
