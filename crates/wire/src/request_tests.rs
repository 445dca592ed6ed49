use super::*;
use serde_json::json;

fn parse(v: Value) -> Result<CanonicalRequest, RequestError> {
    CanonicalRequest::from_slice(v.to_string().as_bytes())
}

fn refused(v: Value) -> RequestError {
    parse(v).expect_err("refused")
}

#[test]
fn typed_fields_are_read_and_the_rest_passes_through() {
    let r = parse(json!({
        "model": "  gpt-4o  ",
        "messages": [
            { "role": "system", "content": "Be brief." },
            { "role": "user", "name": "ann", "content": [{ "type": "image_url", "image_url": { "url": "https://x/y.png" } }] },
            { "role": "assistant", "content": null, "tool_calls": [{ "id": "c1", "type": "function", "function": { "name": "f", "arguments": "{}" } }] },
            { "role": "tool", "tool_call_id": "c1", "content": "ok" },
        ],
        "stream": true,
        "stream_options": { "include_usage": true },
        "tools": [{ "type": "function", "function": { "name": "f" } }, { "function": { "name": "g" } }],
        "tool_choice": "required",
        "temperature": 1,
        "top_p": 0.5,
        "max_tokens": 300,
        "stop": "END",
        "reasoning_effort": "HIGH",
        "metadata": { "step_type": "plan", "n": 3 },
        "routing": { "metric": "cost" },
        "seed": 7,
        "logit_bias": { "42": -100 },
    }))
    .expect("a valid body");
    assert_eq!(r.model, "gpt-4o");
    assert!(r.streams());
    assert_eq!(
        r.stream_options.as_ref().and_then(|o| o.include_usage),
        Some(true)
    );
    assert_eq!(r.messages.len(), 4);
    assert_eq!(r.messages[1].passthrough.get("name"), Some(&json!("ann")));
    assert!(r.carries_images());
    assert_eq!(r.messages[3].tool_call_id.as_deref(), Some("c1"));
    let kinds: Vec<&str> = r.tools.iter().flatten().map(Tool::kind).collect();
    assert_eq!(kinds, ["function", "function"]);
    assert!(
        r.tool_choice
            .as_ref()
            .is_some_and(ToolChoice::forces_a_tool)
    );
    assert_eq!(r.max_output_tokens(), Some(300));
    assert_eq!(
        r.stop.as_ref().map(Stop::sequences),
        Some(&["END".to_owned()][..])
    );
    assert_eq!(r.effort(), Some(Effort::High));
    assert!(r.routing.is_some());
    assert_eq!(
        r.passthrough.keys().collect::<Vec<_>>(),
        ["logit_bias", "seed"]
    );

    // What an OpenAI-compatible server receives: the upstream model, no
    // routing options, numbers as the caller wrote them.
    let sent = serde_json::to_value(r.upstream("gpt-4o-2024-08-06", false)).expect("serializes");
    assert_eq!(sent["model"], "gpt-4o-2024-08-06");
    assert_eq!(sent["temperature"], json!(1));
    assert_eq!(sent["top_p"], json!(0.5));
    assert_eq!(sent["reasoning_effort"], "high");
    assert_eq!(sent["seed"], 7);
    assert_eq!(sent["messages"][1]["name"], "ann");
    assert_eq!(
        sent["messages"][2],
        json!({ "role": "assistant", "tool_calls": [{ "id": "c1", "type": "function", "function": { "name": "f", "arguments": "{}" } }] })
    );
    for absent in ["routing", "stream", "stream_options"] {
        assert!(sent.get(absent).is_none(), "{absent} sent: {sent}");
    }
    let streamed = serde_json::to_value(r.upstream("m", true)).expect("serializes");
    assert_eq!(streamed["stream"], true);
    assert_eq!(streamed["stream_options"], json!({ "include_usage": true }));
}

#[test]
fn bodies_the_gateway_cannot_route_are_refused_with_the_field_named() {
    let cases: &[(Value, Option<&str>, RequestCode, &str)] = &[
        (
            json!([1]),
            None,
            RequestCode::InvalidJson,
            "must be a JSON object",
        ),
        (
            json!({ "messages": [{ "role": "user", "content": "hi" }] }),
            Some("model"),
            RequestCode::InvalidRequest,
            "provide a model",
        ),
        (
            json!({ "model": " ", "messages": [{ "role": "user", "content": "hi" }] }),
            Some("model"),
            RequestCode::InvalidRequest,
            "provide a model",
        ),
        (
            json!({ "model": 4, "messages": [] }),
            Some("model"),
            RequestCode::InvalidRequest,
            "non-empty string",
        ),
        (
            json!({ "model": "m" }),
            Some("messages"),
            RequestCode::InvalidRequest,
            "at least one message",
        ),
        (
            json!({ "model": "m", "messages": [] }),
            Some("messages"),
            RequestCode::InvalidRequest,
            "at least one message",
        ),
        (
            json!({ "model": "m", "messages": [{ "content": "hi" }] }),
            Some("messages[0]"),
            RequestCode::InvalidRequest,
            "string `role`",
        ),
        (
            json!({ "model": "m", "messages": [{ "role": 3 }] }),
            Some("messages[0].role"),
            RequestCode::InvalidRequest,
            "messages[0] must be an object",
        ),
        (
            json!({ "model": "m", "messages": [{ "role": "user" }], "stream": "yes" }),
            Some("stream"),
            RequestCode::InvalidRequest,
            "must be a boolean",
        ),
        (
            json!({ "model": "m", "messages": [{ "role": "user" }], "temperature": "hot" }),
            Some("temperature"),
            RequestCode::InvalidRequest,
            "Invalid value for `temperature`",
        ),
        (
            json!({ "model": "m", "messages": [{ "role": "user" }], "max_tokens": -1 }),
            Some("max_tokens"),
            RequestCode::InvalidRequest,
            "Invalid value for `max_tokens`",
        ),
        (
            json!({ "model": "m", "messages": [{ "role": "user" }], "reasoning_effort": "max" }),
            Some("reasoning_effort"),
            RequestCode::InvalidRequest,
            "unknown reasoning effort `max`",
        ),
        (
            json!({ "model": "m", "messages": [{ "role": "user" }], "reasoning": { "effort": "max" } }),
            Some("reasoning.effort"),
            RequestCode::InvalidRequest,
            "unknown reasoning effort `max`",
        ),
        (
            json!({ "model": "m", "messages": [{ "role": "user" }], "stop": [1] }),
            Some("stop"),
            RequestCode::InvalidRequest,
            "Invalid value for `stop`",
        ),
    ];
    for (body, param, code, text) in cases {
        let e = refused(body.clone());
        assert_eq!(e.code, *code, "{body}: {e:?}");
        assert_eq!(e.param.as_deref(), *param, "{body}: {e:?}");
        assert!(e.message.contains(text), "{body}: {}", e.message);
        assert!(!e.message.contains(" at line "), "{}", e.message);
    }
    let e = CanonicalRequest::from_slice(
        br#"{"model": "m", "messages": [{"role": "user"}], "model": "n"}"#,
    )
    .expect_err("a key twice");
    assert_eq!(e.code, RequestCode::InvalidRequest);
    assert!(e.message.contains("duplicate field `model`"), "{e:?}");
    let e = CanonicalRequest::from_slice(b"{\"model\": ").expect_err("truncated");
    assert_eq!(e.code, RequestCode::InvalidJson);
    assert!(e.message.starts_with("We could not parse the JSON body"));
    let e =
        CanonicalRequest::from_slice(b"{\"model\": \"m\", \"messages\": [{\"role\": \"user\"}]} x")
            .expect_err("trailing bytes");
    assert_eq!(e.code, RequestCode::InvalidJson);
}

#[test]
fn translations_build_the_same_request() {
    let map =
        json!({ "model": "m", "messages": [{ "role": "user", "content": "hi" }], "top_p": 1 });
    let from_map =
        CanonicalRequest::from_map(map.as_object().cloned().unwrap_or_default()).expect("valid");
    assert_eq!(from_map, parse(map).expect("valid"));
}

#[test]
fn input_tokens_are_estimated_from_text_tools_and_images() {
    let text = "x".repeat(4_000);
    let body = json!({
        "model": "m",
        "messages": [
            { "role": "system", "content": "be brief" },
            { "role": "user", "content": [
                { "type": "text", "text": text },
                { "type": "image_url", "image_url": { "url": format!("data:image/png;base64,{}", "A".repeat(1 << 20)) } },
            ] },
        ],
        "tools": [{ "type": "function", "function": { "name": "f", "parameters": { "type": "object" } } }],
    });
    let request = CanonicalRequest::from_slice(body.to_string().as_bytes()).expect("valid");
    let estimate = request.estimate_input_tokens();
    // 2 messages (8) + 1,000 for the image + (8 + 4,000 + the tool's JSON) / 4.
    let tool = serde_json::to_string(&body["tools"][0])
        .expect("json")
        .len();
    assert_eq!(
        estimate,
        8 + crate::request::IMAGE_TOKENS + ((8 + 4_000 + tool) as u64).div_ceil(4)
    );
}
