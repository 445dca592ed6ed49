//! End-to-end: the three inbound APIs (Chat Completions, Responses,
//! Messages) in front of mock OpenAI and Anthropic upstreams: translation
//! both ways with tool loops, streamed and not; feature degradation; error
//! shapes; and the official Python SDKs run against the gateway.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard::api::Server;
use switchyard::config::hash_key;
use switchyard_tests::mock::{Behavior, Flavor, MockProvider};
use switchyard_tests::{repo_path, start_gateway};

const KEY: &str = "sk-apis-team";

/// `gpt-4o` only on an OpenAI mock (declared here with `include` and
/// `text.verbosity`, which OpenAI's Responses API takes), `claude-haiku-4-5` only on an Anthropic
/// mock, and `plain-tools` (function calling, no temperature, no verbosity)
/// on an OpenAI-compatible server. Requests with tools get a `get_weather`
/// call until the conversation ends with its result.
struct Env {
    gateway: Server,
    oa: MockProvider,
    anth: MockProvider,
    plain: MockProvider,
    client: reqwest::Client,
}

impl Env {
    async fn start() -> Env {
        let oa = MockProvider::start(Flavor::OpenAi).await;
        let anth = MockProvider::start(Flavor::Anthropic).await;
        let plain = MockProvider::start(Flavor::OpenAi).await;
        let weather = Behavior::ToolCall {
            name: "get_weather".into(),
            arguments: json!({ "city": "Paris" }),
        };
        for mock in [&oa, &anth, &plain] {
            mock.set_tools_behavior(Some(weather.clone()));
        }
        let text = format!(
            r#"
            [server]
            listen = "127.0.0.1:0"
            [routing]
            first_token_timeout_ms = 2000
            backoff_base_ms = 1
            backoff_max_ms = 5
            [providers.oa]
            kind = "openai"
            base_url = "{oa}"
            api_key_env = "OA_KEY"
            models = ["gpt-4o"]
            timeout_ms = 5000
            [models."gpt-4o"]
            features = ["stream", "tools.function_calling", "tool_choice.required", "text.format.json_schema", "text.format.json_object", "temperature", "top_p", "vision", "parallel_tool_calls", "prompt_cache_key", "include", "text.verbosity"]
            [providers.anth]
            kind = "anthropic"
            base_url = "{anth}"
            api_key_env = "ANTH_KEY"
            models = ["claude-haiku-4-5"]
            timeout_ms = 5000
            [providers.plain]
            kind = "openai-compatible"
            base_url = "{plain}"
            api_key_env = "PLAIN_KEY"
            models = ["plain-tools"]
            health_check_interval_ms = 0
            [models."plain-tools"]
            input = 0.0
            output = 0.0
            tier = 3
            features = ["stream", "tools.function_calling", "tool_choice.required"]
            [teams.team]
            key_sha256 = ["{key}"]
            "#,
            oa = oa.base_url(),
            anth = anth.base_url(),
            plain = plain.base_url(),
            key = hash_key(KEY),
        );
        let env = [
            ("OA_KEY", "sk-upstream-openai"),
            ("ANTH_KEY", "sk-upstream-anthropic"),
            ("PLAIN_KEY", "sk-upstream-local"),
        ];
        let gateway = start_gateway("apis.toml", &text, &env).await;
        Env {
            gateway,
            oa,
            anth,
            plain,
            client: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway.addr)
    }

    /// POSTs to `path` the way that API's SDK does (Messages: `x-api-key`
    /// and `anthropic-version`).
    async fn post(&self, path: &str, key: &str, body: &Value) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).json(body);
        request = if path == "/v1/messages" {
            request
                .header("x-api-key", key)
                .header("anthropic-version", "2023-06-01")
        } else {
            request.bearer_auth(key)
        };
        request.send().await.expect("gateway answers")
    }

    async fn json(&self, path: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
        let response = self.post(path, KEY, body).await;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.json().await.expect("JSON body"))
    }

    /// The named SSE events of a streamed answer.
    async fn events(&self, path: &str, body: &Value) -> Vec<(String, Value)> {
        let response = self.post(path, KEY, body).await;
        assert_eq!(response.status(), 200, "{path} {body}");
        let text = response.text().await.expect("stream");
        let mut out = Vec::new();
        for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            let value: Value = serde_json::from_str(&data).expect("every event is JSON");
            assert_eq!(value["type"], json!(name), "event name and type agree");
            out.push((name, value));
        }
        out
    }
}

fn weather_tool_responses() -> Value {
    json!([{ "type": "function", "name": "get_weather", "description": "Weather in a city",
             "parameters": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } }])
}

fn weather_tool_messages() -> Value {
    json!([{ "name": "get_weather", "description": "Weather in a city",
             "input_schema": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } }])
}

/// The function call of a Responses output.
fn function_call(output: &Value) -> Value {
    output
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["type"] == "function_call")
        .cloned()
        .unwrap_or_else(|| panic!("no function_call in {output}"))
}

fn output_text(output: &Value) -> String {
    output
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["text"].as_str().map(str::to_string))
        .collect()
}

/// OpenAI Responses in, Anthropic out: the tool call comes back as a
/// `function_call` item; its output goes upstream as a `tool_result` block;
/// the final answer uses it. Non-streaming and streaming.
#[tokio::test]
async fn responses_tool_loop_through_anthropic() {
    let env = Env::start().await;
    for stream in [false, true] {
        let first = json!({
            "model": "claude-haiku-4-5", "instructions": "Be brief.",
            "input": "What is the weather in Paris?",
            "tools": weather_tool_responses(), "stream": stream,
        });
        let response = if stream {
            let events = env.events("/v1/responses", &first).await;
            let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names.first(), Some(&"response.created"), "{names:?}");
            assert_eq!(names.last(), Some(&"response.completed"), "{names:?}");
            assert!(names.contains(&"response.function_call_arguments.delta"));
            let seq: Vec<u64> = events
                .iter()
                .map(|(_, e)| e["sequence_number"].as_u64().unwrap_or(u64::MAX))
                .collect();
            assert_eq!(seq, (0..seq.len() as u64).collect::<Vec<_>>());
            events
                .last()
                .map(|(_, e)| e["response"].clone())
                .unwrap_or_default()
        } else {
            let (status, headers, body) = env.json("/v1/responses", &first).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(headers["x-switchyard-provider"], "anth");
            body
        };
        assert_eq!(response["object"], "response");
        assert_eq!(response["status"], "completed");
        let call = function_call(&response["output"]);
        assert_eq!(call["name"], "get_weather");
        let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap_or(""))
            .expect("arguments are JSON");
        assert_eq!(args, json!({ "city": "Paris" }));

        let second = json!({
            "model": "claude-haiku-4-5", "instructions": "Be brief.",
            "input": [
                { "role": "user", "content": "What is the weather in Paris?" },
                { "type": "function_call", "call_id": call["call_id"], "name": "get_weather", "arguments": call["arguments"] },
                { "type": "function_call_output", "call_id": call["call_id"], "output": "sunny, 21C" },
            ],
            "tools": weather_tool_responses(), "stream": stream,
        });
        let answer = if stream {
            let events = env.events("/v1/responses", &second).await;
            let deltas: String = events
                .iter()
                .filter(|(n, _)| n == "response.output_text.delta")
                .filter_map(|(_, e)| e["delta"].as_str().map(str::to_string))
                .collect();
            let done = events
                .last()
                .map(|(_, e)| e["response"].clone())
                .unwrap_or_default();
            assert_eq!(output_text(&done["output"]), deltas);
            assert!(done["usage"]["output_tokens"].as_u64() >= Some(1), "{done}");
            deltas
        } else {
            let (status, _, body) = env.json("/v1/responses", &second).await;
            assert_eq!(status, 200, "{body}");
            assert!(body["usage"]["input_tokens"].as_u64() >= Some(1), "{body}");
            output_text(&body["output"])
        };
        assert_eq!(answer, "The tool said: sunny, 21C");

        // What Anthropic received: system, the tool_use turn, the result.
        let upstream = env
            .anth
            .requests()
            .last()
            .map(|r| r.body.clone())
            .unwrap_or_default();
        assert_eq!(upstream["system"], "Be brief.");
        let turns = upstream["messages"].as_array().cloned().unwrap_or_default();
        assert_eq!(turns.len(), 3, "{upstream}");
        assert_eq!(turns[1]["content"][0]["type"], "tool_use");
        assert_eq!(turns[1]["content"][0]["input"], json!({ "city": "Paris" }));
        assert_eq!(turns[2]["content"][0]["type"], "tool_result");
        assert_eq!(
            turns[2]["content"][0]["tool_use_id"],
            turns[1]["content"][0]["id"]
        );
        assert_eq!(upstream["tools"][0]["name"], "get_weather");
        assert_eq!(
            upstream["tools"][0]["input_schema"]["required"],
            json!(["city"])
        );
    }
}

/// Anthropic Messages in, OpenAI out: the tool call comes back as a
/// `tool_use` block; the `tool_result` goes upstream as a `tool` message;
/// the final answer uses it. Non-streaming and streaming.
#[tokio::test]
async fn messages_tool_loop_through_openai() {
    let env = Env::start().await;
    for stream in [false, true] {
        let question = json!({ "role": "user", "content": "What is the weather in Paris?" });
        let first = json!({
            "model": "gpt-4o", "max_tokens": 256, "system": "Be brief.",
            "messages": [question], "tools": weather_tool_messages(), "stream": stream,
        });
        let message = if stream {
            let events = env.events("/v1/messages", &first).await;
            let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
            assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
            let start = events
                .iter()
                .find(|(n, _)| n == "content_block_start")
                .map(|(_, e)| e.clone())
                .unwrap_or_default();
            assert_eq!(start["content_block"]["type"], "tool_use");
            let json_text: String = events
                .iter()
                .filter_map(|(_, e)| {
                    e.pointer("/delta/partial_json")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect();
            let delta = events
                .iter()
                .find(|(n, _)| n == "message_delta")
                .map(|(_, e)| e.clone())
                .unwrap_or_default();
            assert!(
                delta["usage"]["output_tokens"].as_u64() >= Some(1),
                "{delta}"
            );
            let mut block = start["content_block"].clone();
            block["input"] = serde_json::from_str(&json_text).expect("input JSON");
            json!({ "content": [block], "stop_reason": delta["delta"]["stop_reason"] })
        } else {
            let (status, headers, body) = env.json("/v1/messages", &first).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(headers["x-switchyard-provider"], "oa");
            assert_eq!(body["type"], "message");
            body
        };
        assert_eq!(message["stop_reason"], "tool_use");
        let block = message["content"][0].clone();
        assert_eq!(block["type"], "tool_use");
        assert_eq!(block["name"], "get_weather");
        assert_eq!(block["input"], json!({ "city": "Paris" }));

        let second = json!({
            "model": "gpt-4o", "max_tokens": 256, "system": "Be brief.",
            "messages": [
                question,
                { "role": "assistant", "content": [block] },
                { "role": "user", "content": [{ "type": "tool_result", "tool_use_id": block["id"], "content": "sunny, 21C" }] },
            ],
            "tools": weather_tool_messages(), "stream": stream,
        });
        let answer = if stream {
            let events = env.events("/v1/messages", &second).await;
            events
                .iter()
                .filter_map(|(_, e)| {
                    e.pointer("/delta/text")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect::<String>()
        } else {
            let (status, _, body) = env.json("/v1/messages", &second).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["stop_reason"], "end_turn");
            body["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(answer, "The tool said: sunny, 21C");

        // What OpenAI received: system, the assistant tool call, the result.
        let upstream = env
            .oa
            .requests()
            .last()
            .map(|r| r.body.clone())
            .unwrap_or_default();
        let turns = upstream["messages"].as_array().cloned().unwrap_or_default();
        assert_eq!(turns.len(), 4, "{upstream}");
        assert_eq!(
            turns[0],
            json!({ "role": "system", "content": "Be brief." })
        );
        assert_eq!(turns[2]["tool_calls"][0]["id"], block["id"]);
        assert_eq!(
            turns[3],
            json!({ "role": "tool", "tool_call_id": block["id"], "content": "sunny, 21C" })
        );
        assert_eq!(upstream["max_completion_tokens"], 256);
        assert_eq!(
            upstream["tools"][0]["function"]["parameters"]["required"],
            json!(["city"])
        );
    }
}

/// Requests that came in on `/v1/responses` reach an OpenAI account on its
/// own Responses endpoint, with Responses-only parameters intact; Chat
/// Completions requests stay on Chat Completions.
#[tokio::test]
async fn responses_reach_openai_natively() {
    let env = Env::start().await;
    for stream in [false, true] {
        let request = json!({
            "model": "gpt-4o", "instructions": "Be brief.", "input": "Hello?",
            "include": ["reasoning.encrypted_content"], "text": { "verbosity": "low" },
            "max_output_tokens": 50, "stream": stream,
        });
        let (text, response) = if stream {
            let events = env.events("/v1/responses", &request).await;
            let deltas: String = events
                .iter()
                .filter(|(n, _)| n == "response.output_text.delta")
                .filter_map(|(_, e)| e["delta"].as_str().map(str::to_string))
                .collect();
            (
                deltas,
                events
                    .last()
                    .map(|(_, e)| e["response"].clone())
                    .unwrap_or_default(),
            )
        } else {
            let (status, _, body) = env.json("/v1/responses", &request).await;
            assert_eq!(status, 200, "{body}");
            (output_text(&body["output"]), body)
        };
        assert_eq!(text, "Hello from OpenAI mock");
        assert_eq!(response["switchyard"]["stripped"], json!([]), "{response}");
        assert!(
            response["usage"]["input_tokens"].as_u64() >= Some(1),
            "{response}"
        );
        let sent = env.oa.requests().last().cloned().expect("a request");
        assert_eq!(sent.path, "/v1/responses");
        assert_eq!(sent.body["include"], json!(["reasoning.encrypted_content"]));
        assert_eq!(sent.body["text"]["verbosity"], "low");
        assert_eq!(sent.body["max_output_tokens"], 50);
        assert_eq!(sent.body["store"], false);
        assert_eq!(
            sent.body["input"][0],
            json!({ "role": "system", "content": "Be brief." })
        );
    }
    let (status, _, body) = env
        .json(
            "/v1/chat/completions",
            &json!({ "model": "gpt-4o", "messages": [{ "role": "user", "content": "Hello?" }] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        env.oa.requests().last().map(|r| r.path.clone()).as_deref(),
        Some("/v1/chat/completions")
    );
}

/// A Responses request with `text.verbosity`, `temperature` and tools, to a
/// model whose only provider lacks verbosity and temperature: both are
/// stripped before sending and reported; function calling is kept.
#[tokio::test]
async fn degradation_strips_what_the_provider_lacks_and_says_so() {
    let env = Env::start().await;
    let request = json!({
        "model": "plain-tools", "input": "Weather in Paris?",
        "text": { "verbosity": "low" }, "temperature": 0.2,
        "tools": weather_tool_responses(),
    });
    let (status, headers, body) = env.json("/v1/responses", &request).await;
    assert_eq!(status, 200, "{body}");
    let mut stripped: Vec<String> =
        serde_json::from_value(body["switchyard"]["stripped"].clone()).expect("stripped list");
    stripped.sort();
    assert_eq!(stripped, ["temperature", "text.verbosity"]);
    let mut header: Vec<&str> = headers["x-switchyard-stripped"]
        .to_str()
        .unwrap_or("")
        .split(',')
        .collect();
    header.sort();
    assert_eq!(header, ["temperature", "text.verbosity"]);
    assert_eq!(function_call(&body["output"])["name"], "get_weather");
    // The response still echoes what the caller asked for.
    assert_eq!(body["text"]["verbosity"], "low");

    let sent = env.plain.requests()[0].body.clone();
    assert!(sent.get("temperature").is_none(), "{sent}");
    assert!(sent.get("verbosity").is_none(), "{sent}");
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");

    // The same request as Chat Completions: the same degradation.
    let chat = json!({
        "model": "plain-tools", "messages": [{ "role": "user", "content": "Weather in Paris?" }],
        "verbosity": "low", "temperature": 0.2,
        "tools": [{ "type": "function", "function": { "name": "get_weather", "parameters": { "type": "object" } } }],
    });
    let (status, _, body) = env.json("/v1/chat/completions", &chat).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["switchyard"]["stripped"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        body["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
}

/// The Messages endpoint answers in Anthropic's error shape; the Responses
/// endpoint refuses what needs stored state, by name.
#[tokio::test]
async fn errors_come_in_each_apis_shape() {
    let env = Env::start().await;
    let hello = json!({ "model": "claude-haiku-4-5", "max_tokens": 16, "messages": [{ "role": "user", "content": "hi" }] });

    let response = env.post("/v1/messages", "sk-wrong", &hello).await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "authentication_error");

    let response = env
        .client
        .post(env.url("/v1/messages"))
        .header("x-api-key", KEY)
        .json(&hello)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("anthropic-version")
    );

    let mut extra = hello.clone();
    extra["frequency_penalty"] = json!(1);
    let (status, _, body) = env.json("/v1/messages", &extra).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "frequency_penalty: Extra inputs are not permitted"
    );

    let (status, _, body) = env.json("/v1/messages", &json!({ "model": "no-such-model", "max_tokens": 16, "messages": [{ "role": "user", "content": "hi" }] })).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["type"], "not_found_error");

    // An upstream failure on every attempt: Anthropic's shape, with the trail.
    env.anth.push(Behavior::Error {
        status: 529,
        message: "Overloaded".into(),
    });
    env.anth.push(Behavior::Error {
        status: 529,
        message: "Overloaded".into(),
    });
    env.anth.push(Behavior::Error {
        status: 529,
        message: "Overloaded".into(),
    });
    let (status, _, body) = env.json("/v1/messages", &hello).await;
    // 424: every attempt failed upstream (as on Chat Completions).
    assert_eq!(status, 424, "{body}");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "api_error");
    assert!(
        body["switchyard"]["trail"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{body}"
    );

    let (status, _, body) = env
        .json(
            "/v1/responses",
            &json!({ "model": "gpt-4o", "input": "hi", "previous_response_id": "resp_1" }),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "previous_response_id");
    assert_eq!(body["error"]["code"], "unsupported_parameter");

    let (status, _, body) = env
        .json(
            "/v1/responses",
            &json!({ "model": "gpt-4o", "input": "hi", "bogus": 1 }),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["message"], "Unknown parameter: 'bogus'.");

    let (status, _, body) = env
        .json("/v1/responses", &json!({ "model": "gpt-4o" }))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "input");
}

/// A stream that breaks after content ends with the API's own error event.
#[tokio::test]
async fn broken_streams_end_with_the_apis_error_event() {
    let env = Env::start().await;
    env.anth.push(Behavior::StreamCutAfterContent {
        text: "partial answer".into(),
    });
    let events = env
        .events(
            "/v1/messages",
            &json!({ "model": "claude-haiku-4-5", "max_tokens": 16, "stream": true,
                                         "messages": [{ "role": "user", "content": "hi" }] }),
        )
        .await;
    let last = events
        .last()
        .map(|(n, e)| (n.clone(), e.clone()))
        .unwrap_or_default();
    assert_eq!(last.0, "error", "{events:?}");
    assert_eq!(last.1["error"]["type"], "api_error");
    assert!(!events.iter().any(|(n, _)| n == "message_stop"));

    env.oa.push(Behavior::StreamCutAfterContent {
        text: "partial answer".into(),
    });
    let events = env
        .events(
            "/v1/responses",
            &json!({ "model": "gpt-4o", "input": "hi", "stream": true }),
        )
        .await;
    let last = events
        .last()
        .map(|(n, e)| (n.clone(), e.clone()))
        .unwrap_or_default();
    assert_eq!(last.0, "response.failed", "{events:?}");
    assert_eq!(last.1["response"]["status"], "failed");
    assert!(last.1["response"]["error"]["message"].is_string());
}

/// The official `openai` (Chat Completions and Responses) and `anthropic`
/// (Messages) Python SDKs, unchanged, against the gateway and both kinds of
/// upstream: `tests/python/test_sdks.py`, run by pytest. Needs the packages
/// of `tests/python/requirements.txt` (the README's test command installs
/// them); the interpreter is `$SWITCHYARD_PYTHON` or `python3`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdks_work_unchanged() {
    let env = Env::start().await;
    let python = std::env::var("SWITCHYARD_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = tokio::process::Command::new(&python)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/python",
        ])
        .current_dir(repo_path(""))
        .env("SWITCHYARD_URL", format!("http://{}", env.gateway.addr))
        .env("SWITCHYARD_KEY", KEY)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), output)
        .await
        .expect("pytest finishes within 5 minutes")
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pytest failed (install the SDKs with `{python} -m pip install -r tests/python/requirements.txt`)\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("passed"), "{stdout}");
    println!("{stdout}");
    assert!(env.oa.hits() > 0 && env.anth.hits() > 0);
}
