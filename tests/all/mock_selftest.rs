//! Self-test of the mock providers in `switchyard_tests::mock`: every
//! behaviour of both flavours, driven by a plain HTTP client.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_tests::mock::{
    Behavior, Flavor, MockProvider, completion_tokens, prompt_tokens, word_pieces,
};

const WAIT: Duration = Duration::from_secs(5);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

fn openai_body(stream: bool, include_usage: bool) -> Value {
    let mut body = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello to the nice test suite please"}
        ],
    });
    if stream {
        body["stream"] = json!(true);
        if include_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
    }
    body
}

fn anthropic_body(stream: bool) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": "Say hello"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello?"}]},
            {"role": "user", "content": [{"type": "text", "text": "To the nice test suite please"}]}
        ],
        "stream": stream,
    })
}

fn body_for(flavor: Flavor, stream: bool) -> Value {
    match flavor {
        Flavor::OpenAi => openai_body(stream, true),
        Flavor::Anthropic => anthropic_body(stream),
    }
}

/// A request with the flavour's auth headers.
fn request(mock: &MockProvider, body: &Value) -> reqwest::RequestBuilder {
    let req = client().post(mock.endpoint_url()).json(body);
    match mock.flavor() {
        Flavor::OpenAi => req.bearer_auth("sk-test"),
        Flavor::Anthropic => req
            .header("x-api-key", "sk-ant-test")
            .header("anthropic-version", "2023-06-01"),
    }
}

/// One SSE event: optional `event:` name and the `data:` payload.
#[derive(Debug)]
struct Event {
    name: Option<String>,
    data: String,
}

/// Parse an SSE body, asserting the framing: events separated by a blank
/// line, every line `event: ` or `data: `, and the body ending with `\n\n`
/// (unless `partial`).
fn parse_sse(text: &str, partial: bool) -> Vec<Event> {
    if !partial {
        assert!(
            text.ends_with("\n\n"),
            "SSE body must end with a blank line: {text:?}"
        );
    }
    let mut events = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.is_empty()) {
        let mut name = None;
        let mut data = None;
        for line in block.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                assert!(name.is_none(), "two event lines in {block:?}");
                name = Some(n.to_owned());
            } else if let Some(d) = line.strip_prefix("data: ") {
                assert!(data.is_none(), "two data lines in {block:?}");
                data = Some(d.to_owned());
            } else {
                panic!("unexpected SSE line {line:?}");
            }
        }
        events.push(Event {
            name,
            data: data.expect("event without data"),
        });
    }
    events
}

fn json_of(e: &Event) -> Value {
    serde_json::from_str(&e.data).unwrap_or_else(|err| panic!("bad JSON {:?}: {err}", e.data))
}

/// Read a body chunk by chunk until it ends or fails; returns the bytes read
/// and whether it failed.
async fn read_until_end(mut resp: reqwest::Response) -> (String, bool) {
    let mut buf = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c),
            Ok(None) => return (String::from_utf8(buf).expect("utf8"), false),
            Err(_) => return (String::from_utf8(buf).expect("utf8"), true),
        }
    }
}

fn assert_sse_headers(resp: &reqwest::Response) {
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().expect("ct");
    assert!(ct.starts_with("text/event-stream"), "{ct}");
}

/// OpenAI stream: check chunk shapes and return (content text, finish_reason,
/// usage chunk, tool-call arguments text).
fn check_openai_stream(
    events: &[Event],
    include_usage: bool,
) -> (String, String, Option<Value>, String) {
    assert_eq!(events.last().map(|e| e.data.as_str()), Some("[DONE]"));
    assert!(events.iter().all(|e| e.name.is_none()));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(json_of).collect();
    let mut text = String::new();
    let mut args = String::new();
    let mut finish = String::new();
    let mut usage = None;
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "gpt-4o-mini");
        assert_eq!(c["id"], chunks[0]["id"]);
        let choices = c["choices"].as_array().expect("choices");
        if choices.is_empty() {
            assert!(include_usage, "usage chunk without include_usage");
            assert_eq!(
                i,
                chunks.len() - 1,
                "usage chunk must be last before [DONE]"
            );
            usage = Some(c["usage"].clone());
            continue;
        }
        if include_usage {
            assert!(c["usage"].is_null() && c.get("usage").is_some(), "{c}");
        } else {
            assert!(c.get("usage").is_none(), "{c}");
        }
        let delta = &choices[0]["delta"];
        if i == 0 {
            assert_eq!(delta["role"], "assistant");
        } else {
            assert!(delta.get("role").is_none());
        }
        if let Some(t) = delta["content"].as_str() {
            text.push_str(t);
        }
        if let Some(calls) = delta["tool_calls"].as_array() {
            args.push_str(
                calls[0]["function"]["arguments"]
                    .as_str()
                    .expect("arguments"),
            );
        }
        if let Some(f) = choices[0]["finish_reason"].as_str() {
            assert!(finish.is_empty(), "two finish reasons");
            finish = f.to_owned();
        }
    }
    if include_usage {
        assert!(usage.is_some(), "missing usage chunk");
    }
    (text, finish, usage, args)
}

/// Anthropic stream: check the event grammar; return (text, input json,
/// stop_reason, output_tokens, input_tokens).
fn check_anthropic_stream(events: &[Event]) -> (String, String, String, u64, u64) {
    for e in events {
        assert_eq!(
            Some(json_of(e)["type"].as_str().expect("type")),
            e.name.as_deref()
        );
    }
    let names: Vec<&str> = events
        .iter()
        .map(|e| e.name.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(names[..3], ["message_start", "content_block_start", "ping"]);
    assert_eq!(
        names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert!(
        names[3..names.len() - 3]
            .iter()
            .all(|n| *n == "content_block_delta")
    );
    let start = json_of(&events[0]);
    assert_eq!(start["message"]["model"], "claude-sonnet-4-5");
    assert_eq!(start["message"]["role"], "assistant");
    assert_eq!(start["message"]["content"], json!([]));
    assert!(start["message"]["stop_reason"].is_null());
    let mut text = String::new();
    let mut input = String::new();
    for e in &events[3..events.len() - 3] {
        let d = json_of(e);
        assert_eq!(d["index"], 0);
        match d["delta"]["type"].as_str() {
            Some("text_delta") => text.push_str(d["delta"]["text"].as_str().expect("text")),
            Some("input_json_delta") => {
                input.push_str(d["delta"]["partial_json"].as_str().expect("pj"))
            }
            other => panic!("unexpected delta {other:?}"),
        }
    }
    let delta = json_of(&events[events.len() - 2]);
    assert!(delta["delta"]["stop_sequence"].is_null());
    (
        text,
        input,
        delta["delta"]["stop_reason"]
            .as_str()
            .expect("stop")
            .to_owned(),
        delta["usage"]["output_tokens"].as_u64().expect("output"),
        start["message"]["usage"]["input_tokens"]
            .as_u64()
            .expect("input"),
    )
}

#[test]
fn helpers() {
    assert_eq!(
        word_pieces("Hello from  the mock"),
        ["Hello", " from", "  the", " mock"]
    );
    assert_eq!(word_pieces(""), [""]);
    assert_eq!(completion_tokens("one two three"), 3);
    assert_eq!(completion_tokens(""), 1);
    // "Say hello" (9) + "Hello?" (6) + "To the nice test suite please" (29) + system (14) = 58
    assert_eq!(prompt_tokens(&anthropic_body(false)), 14);
    assert_eq!(prompt_tokens(&json!({"messages": []})), 1);
}

#[tokio::test]
async fn openai_text_non_stream() {
    let mock = MockProvider::start(Flavor::OpenAi).await;
    assert!(mock.base_url().ends_with("/v1"));
    let resp = request(&mock, &openai_body(false, false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-4o-mini");
    assert!(v["id"].as_str().expect("id").starts_with("chatcmpl-"));
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from OpenAI mock"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // "You are terse." (14) + 39 chars = 53 / 4 = 13
    assert_eq!(v["usage"]["prompt_tokens"], 13);
    assert_eq!(v["usage"]["completion_tokens"], 4);
    assert_eq!(v["usage"]["total_tokens"], 17);
    assert_eq!(mock.hits(), 1);
    let r = &mock.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.header("Authorization"), Some("Bearer sk-test"));
    assert_eq!(r.body["model"], "gpt-4o-mini");
}

#[tokio::test]
async fn openai_text_stream_with_and_without_usage() {
    let mock = MockProvider::start(Flavor::OpenAi).await;
    let text = "The quick brown fox jumps over the lazy dog";
    mock.set_default(Behavior::Text(text.into()));
    for include_usage in [true, false] {
        let resp = request(&mock, &openai_body(true, include_usage))
            .send()
            .await
            .expect("send");
        assert_sse_headers(&resp);
        let body = resp.text().await.expect("body");
        let events = parse_sse(&body, false);
        assert!(
            events.len() >= 9 + 3,
            "expected word-sized chunks, got {}",
            events.len()
        );
        let (got, finish, usage, _) = check_openai_stream(&events, include_usage);
        assert_eq!(got, text);
        assert_eq!(finish, "stop");
        if include_usage {
            let usage = usage.expect("usage");
            assert_eq!(usage["prompt_tokens"], 13);
            assert_eq!(usage["completion_tokens"], 9);
            assert_eq!(usage["total_tokens"], 22);
        }
    }
    assert!(mock.wait_open_connections(0, WAIT).await);
}

#[tokio::test]
async fn openai_tool_call() {
    let mock = MockProvider::start(Flavor::OpenAi).await;
    let args = json!({"location": "San Francisco, CA", "unit": "celsius"});
    mock.set_default(Behavior::ToolCall {
        name: "get_weather".into(),
        arguments: args.clone(),
    });
    let v: Value = request(&mock, &openai_body(false, false))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let msg = &v["choices"][0]["message"];
    assert!(msg["content"].is_null());
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let call = &msg["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert!(call["id"].as_str().expect("id").starts_with("call_"));
    assert_eq!(call["function"]["name"], "get_weather");
    let parsed: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().expect("string"))
            .expect("args");
    assert_eq!(parsed, args);

    let resp = request(&mock, &openai_body(true, true))
        .send()
        .await
        .expect("send");
    assert_sse_headers(&resp);
    let events = parse_sse(&resp.text().await.expect("body"), false);
    let first = json_of(&events[0]);
    let call = &first["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(call["index"], 0);
    assert_eq!(call["function"]["name"], "get_weather");
    assert!(call["id"].as_str().expect("id").starts_with("call_"));
    let (text, finish, usage, streamed_args) = check_openai_stream(&events, true);
    assert_eq!(text, "");
    assert_eq!(finish, "tool_calls");
    assert!(usage.is_some());
    assert!(events.len() > 5, "arguments should come in several chunks");
    assert_eq!(
        serde_json::from_str::<Value>(&streamed_args).expect("args"),
        args
    );
}

#[tokio::test]
async fn anthropic_text_non_stream_and_stream() {
    let mock = MockProvider::start(Flavor::Anthropic).await;
    assert!(!mock.base_url().ends_with("/v1"));
    let resp = request(&mock, &anthropic_body(false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("request-id"));
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert!(v["id"].as_str().expect("id").starts_with("msg_"));
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "Hello from Anthropic mock"}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["stop_sequence"].is_null());
    assert_eq!(v["usage"]["input_tokens"], 14);
    assert_eq!(v["usage"]["output_tokens"], 4);

    let text = "Streaming words arrive one at a time";
    mock.set_default(Behavior::Text(text.into()));
    let resp = request(&mock, &anthropic_body(true))
        .send()
        .await
        .expect("send");
    assert_sse_headers(&resp);
    let events = parse_sse(&resp.text().await.expect("body"), false);
    let (got, input, stop, out, inp) = check_anthropic_stream(&events);
    assert_eq!(got, text);
    assert_eq!(input, "");
    assert_eq!(stop, "end_turn");
    assert_eq!(out, 7);
    assert_eq!(inp, 14);
    assert_eq!(events.len(), 6 + 7);
    let r = &mock.requests()[1];
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.header("x-api-key"), Some("sk-ant-test"));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert!(mock.wait_open_connections(0, WAIT).await);
}

#[tokio::test]
async fn anthropic_tool_call() {
    let mock = MockProvider::start(Flavor::Anthropic).await;
    let args = json!({"location": "San Francisco, CA", "unit": "fahrenheit"});
    mock.set_default(Behavior::ToolCall {
        name: "get_weather".into(),
        arguments: args.clone(),
    });
    let v: Value = request(&mock, &anthropic_body(false))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(v["stop_reason"], "tool_use");
    let block = &v["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert_eq!(block["name"], "get_weather");
    assert!(block["id"].as_str().expect("id").starts_with("toolu_"));
    assert_eq!(block["input"], args);

    let resp = request(&mock, &anthropic_body(true))
        .send()
        .await
        .expect("send");
    assert_sse_headers(&resp);
    let events = parse_sse(&resp.text().await.expect("body"), false);
    let block = json_of(&events[1]);
    assert_eq!(block["content_block"]["type"], "tool_use");
    assert_eq!(block["content_block"]["name"], "get_weather");
    assert_eq!(block["content_block"]["input"], json!({}));
    let (text, input, stop, _, _) = check_anthropic_stream(&events);
    assert_eq!(text, "");
    assert_eq!(stop, "tool_use");
    assert_eq!(serde_json::from_str::<Value>(&input).expect("input"), args);
    assert!(events.len() > 8, "input should come in several deltas");
}

#[tokio::test]
async fn errors_and_rate_limits() {
    let openai = MockProvider::start(Flavor::OpenAi).await;
    for (status, kind) in [
        (400, "invalid_request_error"),
        (404, "invalid_request_error"),
        (500, "server_error"),
        (503, "server_error"),
    ] {
        openai.push(Behavior::Error {
            status,
            message: format!("boom {status}"),
        });
        let resp = request(&openai, &openai_body(true, true))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), status);
        let v: Value = resp.json().await.expect("json");
        assert_eq!(v["error"]["message"], format!("boom {status}"));
        assert_eq!(v["error"]["type"], kind);
        assert!(v["error"].get("param").is_some() && v["error"].get("code").is_some());
    }
    openai.push(Behavior::RateLimited {
        retry_after_secs: 7,
    });
    let resp = request(&openai, &openai_body(false, false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    // Pushed behaviours are used up: back to the default.
    let resp = request(&openai, &openai_body(false, false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);

    let anthropic = MockProvider::start(Flavor::Anthropic).await;
    for (status, kind) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
    ] {
        anthropic.push(Behavior::Error {
            status,
            message: format!("boom {status}"),
        });
        let resp = request(&anthropic, &anthropic_body(true))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status().as_u16(), status);
        let v: Value = resp.json().await.expect("json");
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], kind);
        assert_eq!(v["error"]["message"], format!("boom {status}"));
    }
    anthropic.push(Behavior::RateLimited {
        retry_after_secs: 3,
    });
    let resp = request(&anthropic, &anthropic_body(false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "3");
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn auth_and_validation() {
    let openai = MockProvider::start(Flavor::OpenAi).await;
    let url = openai.endpoint_url();
    let resp = client()
        .post(&url)
        .json(&openai_body(false, false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let resp = client()
        .post(&url)
        .header("authorization", "Bearer ")
        .json(&openai_body(false, false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
    openai.expect_api_key(Some("sk-right"));
    let resp = client()
        .post(&url)
        .bearer_auth("sk-wrong")
        .json(&openai_body(false, false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.json::<Value>().await.expect("json")["error"]["code"],
        "invalid_api_key"
    );
    let resp = client()
        .post(&url)
        .bearer_auth("sk-right")
        .json(&openai_body(false, false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    openai.expect_api_key(None);
    for bad in [
        json!({"model": "m", "messages": []}),
        json!({"model": "m"}),
        json!({"messages": [{"role": "user", "content": "x"}]}),
        json!([1, 2]),
    ] {
        let resp = request(&openai, &bad).send().await.expect("send");
        assert_eq!(resp.status(), 400, "{bad}");
        let v: Value = resp.json().await.expect("json");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    let resp = client()
        .post(&url)
        .bearer_auth("k")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    let resp = client()
        .post(format!("{}/models/x", openai.base_url()))
        .bearer_auth("k")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 404);
    assert!(resp.json::<Value>().await.expect("json")["error"]["message"].is_string());

    let anthropic = MockProvider::start(Flavor::Anthropic).await;
    let url = anthropic.endpoint_url();
    let resp = client()
        .post(&url)
        .header("anthropic-version", "2023-06-01")
        .json(&anthropic_body(false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "authentication_error");
    let resp = client()
        .post(&url)
        .header("x-api-key", "k")
        .json(&anthropic_body(false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.expect("json")["error"]["type"],
        "invalid_request_error"
    );
    let user = json!({"role": "user", "content": "hi"});
    let assistant = json!({"role": "assistant", "content": "hello"});
    for bad in [
        json!({"model": "m", "messages": [user]}),
        json!({"model": "m", "max_tokens": 5, "messages": []}),
        json!({"model": "m", "max_tokens": 5, "messages": [assistant, user]}),
        json!({"model": "m", "max_tokens": 5, "messages": [user, user]}),
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "s"}, user]}),
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user"}]}),
        json!({"max_tokens": 5, "messages": [user]}),
        json!("just a string"),
    ] {
        let resp = request(&anthropic, &bad).send().await.expect("send");
        assert_eq!(resp.status(), 400, "{bad}");
        let v: Value = resp.json().await.expect("json");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{bad}");
    }
    let ok = json!({"model": "m", "max_tokens": 5, "messages": [user, assistant, user]});
    assert_eq!(
        request(&anthropic, &ok)
            .send()
            .await
            .expect("send")
            .status(),
        200
    );
    // Every request was recorded, valid or not.
    assert_eq!(anthropic.hits(), 3 + 8);
}

#[tokio::test]
async fn stall_and_slow() {
    for flavor in [Flavor::OpenAi, Flavor::Anthropic] {
        let mock = MockProvider::start(flavor).await;
        mock.push(Behavior::Stall);
        let started = Instant::now();
        let err = client()
            .post(mock.endpoint_url())
            .timeout(Duration::from_millis(300))
            .json(&body_for(flavor, false));
        let err = match flavor {
            Flavor::OpenAi => err.bearer_auth("k"),
            Flavor::Anthropic => err
                .header("x-api-key", "k")
                .header("anthropic-version", "2023-06-01"),
        }
        .send()
        .await
        .expect_err("stall must time out");
        assert!(err.is_timeout(), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(mock.hits(), 1);

        for stream in [false, true] {
            mock.push(Behavior::Slow {
                delay_ms: 300,
                text: "slow but sure".into(),
            });
            let started = Instant::now();
            let resp = request(&mock, &body_for(flavor, stream))
                .send()
                .await
                .expect("send");
            assert!(started.elapsed() >= Duration::from_millis(300));
            assert_eq!(resp.status(), 200);
            let body = resp.text().await.expect("body");
            if stream {
                let events = parse_sse(&body, false);
                let text = match flavor {
                    Flavor::OpenAi => check_openai_stream(&events, true).0,
                    Flavor::Anthropic => check_anthropic_stream(&events).0,
                };
                assert_eq!(text, "slow but sure");
            } else {
                assert!(body.contains("slow but sure"));
            }
        }
        assert!(mock.wait_open_connections(0, WAIT).await);
    }
}

#[tokio::test]
async fn stream_die_before_content() {
    for flavor in [Flavor::OpenAi, Flavor::Anthropic] {
        let mock = MockProvider::start(flavor).await;
        mock.push(Behavior::StreamDieBeforeContent);
        let resp = request(&mock, &body_for(flavor, true))
            .send()
            .await
            .expect("send");
        assert_sse_headers(&resp);
        let (body, failed) = read_until_end(resp).await;
        assert!(failed, "{flavor:?}: the connection must drop");
        let events = parse_sse(&body, false);
        assert_eq!(events.len(), 1, "{body}");
        match flavor {
            Flavor::OpenAi => assert_eq!(
                json_of(&events[0])["choices"][0]["delta"]["role"],
                "assistant"
            ),
            Flavor::Anthropic => assert_eq!(events[0].name.as_deref(), Some("message_start")),
        }
        assert!(mock.wait_open_connections(0, WAIT).await);

        // Non-streaming request: headers then a dropped connection.
        mock.push(Behavior::StreamDieBeforeContent);
        let resp = request(&mock, &body_for(flavor, false))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        let (body, failed) = read_until_end(resp).await;
        assert!(failed && body.is_empty());
    }
}

#[tokio::test]
async fn stream_stall_before_content_and_client_drop() {
    for flavor in [Flavor::OpenAi, Flavor::Anthropic] {
        let mock = MockProvider::start(flavor).await;
        mock.push(Behavior::StreamStallBeforeContent);
        let mut resp = request(&mock, &body_for(flavor, true))
            .send()
            .await
            .expect("send");
        assert_sse_headers(&resp);
        let first = resp.chunk().await.expect("chunk").expect("first chunk");
        let first = String::from_utf8(first.to_vec()).expect("utf8");
        let events = parse_sse(&first, false);
        assert_eq!(events.len(), 1);
        let next = tokio::time::timeout(Duration::from_millis(300), resp.chunk()).await;
        assert!(next.is_err(), "{flavor:?}: nothing may follow the start");
        assert_eq!(mock.open_connections(), 1);
        drop(resp);
        assert!(
            mock.wait_open_connections(0, WAIT).await,
            "{flavor:?}: stalled stream not released after client drop"
        );

        // A long stream dropped by the client mid-way is released too.
        mock.push(Behavior::Text("word ".repeat(2000)));
        let mut resp = request(&mock, &body_for(flavor, true))
            .send()
            .await
            .expect("send");
        resp.chunk().await.expect("chunk").expect("first chunk");
        resp.chunk().await.expect("chunk").expect("second chunk");
        assert_eq!(mock.open_connections(), 1);
        drop(resp);
        assert!(
            mock.wait_open_connections(0, WAIT).await,
            "{flavor:?}: stream not released after client drop"
        );
    }
}

#[tokio::test]
async fn stream_cut_after_content() {
    for flavor in [Flavor::OpenAi, Flavor::Anthropic] {
        let mock = MockProvider::start(flavor).await;
        mock.push(Behavior::StreamCutAfterContent {
            text: "partial answer that never ends".into(),
        });
        let resp = request(&mock, &body_for(flavor, true))
            .send()
            .await
            .expect("send");
        assert_sse_headers(&resp);
        let (body, failed) = read_until_end(resp).await;
        assert!(failed, "{flavor:?}: the connection must drop");
        let events = parse_sse(&body, false);
        let mut text = String::new();
        for e in &events {
            let v = json_of(e);
            match flavor {
                Flavor::OpenAi => {
                    assert!(v["choices"][0]["finish_reason"].is_null());
                    text.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
                }
                Flavor::Anthropic => {
                    let name = e.name.as_deref().expect("name");
                    assert!(!matches!(
                        name,
                        "content_block_stop" | "message_delta" | "message_stop"
                    ));
                    text.push_str(v["delta"]["text"].as_str().unwrap_or(""));
                }
            }
        }
        assert_eq!(text, "partial answer that never ends");
        assert!(!body.contains("[DONE]"));
        assert!(mock.wait_open_connections(0, WAIT).await);

        mock.push(Behavior::StreamCutAfterContent { text: "x".into() });
        let resp = request(&mock, &body_for(flavor, false))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        let (body, failed) = read_until_end(resp).await;
        assert!(failed && !body.is_empty());
        assert!(serde_json::from_str::<Value>(&body).is_err());
    }
}

#[tokio::test]
async fn stream_error_event() {
    let mock = MockProvider::start(Flavor::Anthropic).await;
    mock.push(Behavior::StreamErrorEvent);
    let resp = request(&mock, &anthropic_body(true))
        .send()
        .await
        .expect("send");
    assert_sse_headers(&resp);
    let (body, failed) = read_until_end(resp).await;
    assert!(!failed);
    let events = parse_sse(&body, false);
    let names: Vec<_> = events
        .iter()
        .map(|e| e.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(names, ["message_start", "error"]);
    assert_eq!(
        json_of(&events[1]),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );
    mock.push(Behavior::StreamErrorEvent);
    let resp = request(&mock, &anthropic_body(false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 529);
    assert_eq!(
        resp.json::<Value>().await.expect("json")["error"]["type"],
        "overloaded_error"
    );

    let mock = MockProvider::start(Flavor::OpenAi).await;
    mock.push(Behavior::StreamErrorEvent);
    let resp = request(&mock, &openai_body(true, true))
        .send()
        .await
        .expect("send");
    assert_sse_headers(&resp);
    let (body, failed) = read_until_end(resp).await;
    assert!(!failed);
    let events = parse_sse(&body, false);
    assert_eq!(events.len(), 2);
    assert_eq!(
        json_of(&events[0])["choices"][0]["delta"]["role"],
        "assistant"
    );
    let err = json_of(&events[1]);
    assert_eq!(err["error"]["type"], "server_error");
    assert!(err["error"]["message"].is_string());
    assert!(!body.contains("[DONE]"));
    mock.push(Behavior::StreamErrorEvent);
    let resp = request(&mock, &openai_body(false, false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 500);
    assert!(mock.wait_open_connections(0, WAIT).await);
}

#[tokio::test]
async fn push_is_fifo_before_default() {
    let mock = MockProvider::start(Flavor::OpenAi).await;
    mock.set_default(Behavior::Text("default".into()));
    mock.push(Behavior::Text("first".into()));
    mock.push(Behavior::Error {
        status: 500,
        message: "second".into(),
    });
    mock.push(Behavior::Text("third".into()));
    let mut seen = Vec::new();
    for _ in 0..5 {
        let resp = request(&mock, &openai_body(false, false))
            .send()
            .await
            .expect("send");
        let v: Value = resp.json().await.expect("json");
        seen.push(
            v["choices"][0]["message"]["content"]
                .as_str()
                .or(v["error"]["message"].as_str())
                .expect("text")
                .to_owned(),
        );
    }
    assert_eq!(seen, ["first", "second", "third", "default", "default"]);
    assert_eq!(mock.hits(), 5);
}
