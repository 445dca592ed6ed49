use super::*;

fn body(v: Value) -> CanonicalRequest {
    serde_json::from_value(v).expect("a canonical body")
}

/// A body the canonical request itself refuses (a 400 naming the field),
/// before any translation.
fn refused(v: Value) -> crate::RequestError {
    match v {
        Value::Object(mut m) => {
            m.entry("model").or_insert(json!("m"));
            CanonicalRequest::from_map(m).expect_err("refused")
        }
        _ => panic!("test body must be an object"),
    }
}

fn req(v: Value) -> Value {
    request(&body(v), "claude-test", false).expect("translates")
}

fn req_err(v: Value) -> TranslateError {
    request(&body(v), "claude-test", false).expect_err("should fail")
}

fn user(text: &str) -> Value {
    json!({ "role": "user", "content": text })
}

// --- request: basics -------------------------------------------------

#[test]
fn minimal_request() {
    let out = req(json!({ "model": "x", "messages": [user("hi")] }));
    assert_eq!(
        out,
        json!({
            "model": "claude-test",
            "max_tokens": DEFAULT_MAX_TOKENS,
            "messages": [{ "role": "user", "content": [{ "type": "text", "text": "hi" }] }],
            "stream": false,
        })
    );
    let out = request(&body(json!({ "messages": [user("hi")] })), "m", true).unwrap();
    assert_eq!(out["stream"], json!(true));
}

#[test]
fn system_and_developer_hoisted_and_joined() {
    let out = req(json!({ "messages": [
        { "role": "system", "content": "Be brief." },
        user("hi"),
        { "role": "developer", "content": [{ "type": "text", "text": "Use " }, { "type": "text", "text": "French." }] },
        { "role": "system", "content": "" },
    ] }));
    assert_eq!(out["system"], json!("Be brief.\n\nUse French."));
    assert_eq!(out["messages"].as_array().unwrap().len(), 1);
}

#[test]
fn system_with_image_is_error() {
    let err = req_err(json!({ "messages": [
        { "role": "system", "content": [{ "type": "image_url", "image_url": { "url": "https://x/a.png" } }] },
        user("hi"),
    ] }));
    assert!(
        matches!(err, TranslateError::InvalidMessage { index: 0, .. }),
        "{err}"
    );
}

#[test]
fn consecutive_same_role_messages_merged() {
    let out = req(json!({ "messages": [
        user("a"), user("b"),
        { "role": "assistant", "content": "c" },
        { "role": "assistant", "content": [{ "type": "text", "text": "d" }] },
        user("e"),
    ] }));
    assert_eq!(
        out["messages"],
        json!([
            { "role": "user", "content": [{ "type": "text", "text": "a" }, { "type": "text", "text": "b" }] },
            { "role": "assistant", "content": [{ "type": "text", "text": "c" }, { "type": "text", "text": "d" }] },
            { "role": "user", "content": [{ "type": "text", "text": "e" }] },
        ])
    );
}

#[test]
fn empty_messages_dropped_then_merged() {
    let out = req(json!({ "messages": [
        user("a"),
        { "role": "assistant", "content": "" },
        { "role": "assistant", "content": null },
        user("b"),
    ] }));
    assert_eq!(
        out["messages"],
        json!([{ "role": "user", "content": [{ "type": "text", "text": "a" }, { "type": "text", "text": "b" }] }])
    );
}

#[test]
fn prefill_trailing_whitespace_trimmed() {
    let out = req(json!({ "messages": [user("a"), { "role": "assistant", "content": "{ \n" }] }));
    assert_eq!(
        out["messages"][1],
        json!({ "role": "assistant", "content": [{ "type": "text", "text": "{" }] })
    );
    let out = req(json!({ "messages": [user("a"), { "role": "assistant", "content": "  \n" }] }));
    assert_eq!(out["messages"].as_array().unwrap().len(), 1);
}

#[test]
fn missing_or_empty_conversation() {
    assert_eq!(req_err(json!({})), TranslateError::MissingMessages);
    assert_eq!(
        req_err(json!({ "messages": [] })),
        TranslateError::MissingMessages
    );
    assert_eq!(
        refused(json!({ "messages": "hi" })).param.as_deref(),
        Some("messages")
    );
    assert_eq!(
        req_err(json!({ "messages": [{ "role": "system", "content": "s" }] })),
        TranslateError::EmptyConversation
    );
    assert_eq!(
        req_err(json!({ "messages": [user("")] })),
        TranslateError::EmptyConversation
    );
}

#[test]
fn malformed_messages_are_errors_not_panics() {
    for (messages, param) in [
        (json!([42]), "messages[0]"),
        (json!([user("a"), { "content": "x" }]), "messages[1]"),
        (
            json!([user("a"), { "role": "assistant", "tool_calls": "x" }]),
            "messages[1].tool_calls",
        ),
    ] {
        let e = refused(json!({ "messages": messages }));
        assert_eq!(e.param.as_deref(), Some(param), "{e:?}");
    }
    for (messages, index) in [
        (json!([{ "role": "function", "content": "x" }]), 0),
        (json!([{ "role": "user", "content": 5 }]), 0),
        (
            json!([{ "role": "user", "content": [{ "type": "text" }] }]),
            0,
        ),
        (
            json!([{ "role": "user", "content": [{ "type": "video" }] }]),
            0,
        ),
        (
            json!([{ "role": "user", "content": [{ "type": "input_audio", "input_audio": {} }] }]),
            0,
        ),
        (json!([{ "role": "user", "content": [7] }]), 0),
        (
            json!([user("a"), { "role": "assistant", "content": [{ "type": "image_url" }] }]),
            1,
        ),
        (json!([user("a"), { "role": "tool", "content": "r" }]), 1),
    ] {
        let err = req_err(json!({ "messages": messages }));
        match err {
            TranslateError::InvalidMessage { index: i, .. } => assert_eq!(i, index, "{err}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}

// --- request: content parts ------------------------------------------

#[test]
fn images_data_and_http() {
    let out = req(json!({ "messages": [{ "role": "user", "content": [
        { "type": "text", "text": "what is this?" },
        { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high" } },
        { "type": "image_url", "image_url": { "url": "https://example.com/cat.jpg" } },
        { "type": "image_url", "image_url": "http://example.com/dog.webp" },
        { "type": "image_url", "image_url": { "url": "data:image/jpg;base64,/9j/4AAQ" } },
    ] }] }));
    assert_eq!(
        out["messages"][0]["content"],
        json!([
            { "type": "text", "text": "what is this?" },
            { "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo=" } },
            { "type": "image", "source": { "type": "url", "url": "https://example.com/cat.jpg" } },
            { "type": "image", "source": { "type": "url", "url": "http://example.com/dog.webp" } },
            { "type": "image", "source": { "type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ" } },
        ])
    );
}

#[test]
fn bad_images_are_errors() {
    for url in [
        "data:image/png,rawbytes",
        "data:image/bmp;base64,Qk0=",
        "data:image/png;base64",
        "ftp://example.com/a.png",
        "file:///etc/passwd",
    ] {
        let err = req_err(json!({ "messages": [{ "role": "user", "content": [
            { "type": "image_url", "image_url": { "url": url } },
        ] }] }));
        assert!(
            matches!(err, TranslateError::InvalidMessage { index: 0, .. }),
            "{url}: {err}"
        );
    }
    let err = req_err(
        json!({ "messages": [{ "role": "user", "content": [{ "type": "image_url", "image_url": {} }] }] }),
    );
    assert!(err.to_string().contains("image_url.url"), "{err}");
}

#[test]
fn pdf_file_part_becomes_document() {
    let out = req(json!({ "messages": [{ "role": "user", "content": [
        { "type": "file", "file": { "file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf" } },
    ] }] }));
    assert_eq!(
        out["messages"][0]["content"][0],
        json!({ "type": "document", "title": "a.pdf",
                "source": { "type": "base64", "media_type": "application/pdf", "data": "JVBERi0=" } })
    );
    let err = req_err(json!({ "messages": [{ "role": "user", "content": [
        { "type": "file", "file": { "file_id": "file-abc" } },
    ] }] }));
    assert!(err.to_string().contains("file_data"), "{err}");
    let err = req_err(json!({ "messages": [{ "role": "user", "content": [
        { "type": "file", "file": { "file_data": "data:text/csv;base64,YQ==" } },
    ] }] }));
    assert!(err.to_string().contains("PDF"), "{err}");
}

#[test]
fn cache_control_passed_through_on_parts() {
    let out = req(json!({ "messages": [{ "role": "user", "content": [
        { "type": "text", "text": "long doc", "cache_control": { "type": "ephemeral" } },
    ] }] }));
    assert_eq!(
        out["messages"][0]["content"][0],
        json!({ "type": "text", "text": "long doc", "cache_control": { "type": "ephemeral" } })
    );
}

// --- request: tools ----------------------------------------------------

#[test]
fn tool_call_round_trip() {
    let out = req(json!({
        "messages": [
            { "role": "system", "content": "sys" },
            user("Weather in Paris and Rome?"),
            { "role": "assistant", "content": "Let me check.", "tool_calls": [
                { "id": "call_1", "type": "function", "function": { "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" } },
                { "id": "call_2", "type": "function", "function": { "name": "get_weather", "arguments": "{\"city\":\"Rome\"}" } },
            ] },
            { "role": "tool", "tool_call_id": "call_1", "content": "18C" },
            { "role": "tool", "tool_call_id": "call_2", "content": [{ "type": "text", "text": "24C" }] },
            user("Thanks, and tomorrow?"),
        ],
        "tools": [{ "type": "function", "function": {
            "name": "get_weather", "description": "Current weather",
            "parameters": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] },
            "strict": true,
        } }],
        "tool_choice": "auto",
    }));
    assert_eq!(
        out,
        json!({
            "model": "claude-test",
            "max_tokens": DEFAULT_MAX_TOKENS,
            "system": "sys",
            "tools": [{
                "name": "get_weather", "description": "Current weather",
                "input_schema": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] },
            }],
            "tool_choice": { "type": "auto" },
            "messages": [
                { "role": "user", "content": [{ "type": "text", "text": "Weather in Paris and Rome?" }] },
                { "role": "assistant", "content": [
                    { "type": "text", "text": "Let me check." },
                    { "type": "tool_use", "id": "call_1", "name": "get_weather", "input": { "city": "Paris" } },
                    { "type": "tool_use", "id": "call_2", "name": "get_weather", "input": { "city": "Rome" } },
                ] },
                { "role": "user", "content": [
                    { "type": "tool_result", "tool_use_id": "call_1", "content": "18C" },
                    { "type": "tool_result", "tool_use_id": "call_2", "content": [{ "type": "text", "text": "24C" }] },
                    { "type": "text", "text": "Thanks, and tomorrow?" },
                ] },
            ],
            "stream": false,
        })
    );
}

#[test]
fn tool_results_moved_before_text_in_user_turn() {
    let out = req(json!({ "messages": [
        user("q"),
        { "role": "assistant", "tool_calls": [{ "id": "c", "type": "function", "function": { "name": "f", "arguments": "" } }] },
        user("note first"),
        { "role": "tool", "tool_call_id": "c", "content": "" },
    ] }));
    assert_eq!(
        out["messages"][1]["content"],
        json!([{ "type": "tool_use", "id": "c", "name": "f", "input": {} }])
    );
    assert_eq!(
        out["messages"][2]["content"],
        json!([{ "type": "tool_result", "tool_use_id": "c" }, { "type": "text", "text": "note first" }])
    );
}

#[test]
fn tool_ids_sanitized_consistently() {
    let out = req(json!({ "messages": [
        user("q"),
        { "role": "assistant", "tool_calls": [{ "id": "functions.f:0", "type": "function", "function": { "name": "f", "arguments": "{}" } }] },
        { "role": "tool", "tool_call_id": "functions.f:0", "content": "ok" },
    ] }));
    assert_eq!(
        out["messages"][1]["content"][0]["id"],
        json!("functions_f_0")
    );
    assert_eq!(
        out["messages"][2]["content"][0]["tool_use_id"],
        json!("functions_f_0")
    );
}

#[test]
fn tool_arguments_errors_name_the_call() {
    for args in [json!("{not json"), json!("[1,2]"), json!(5)] {
        let err = req_err(json!({ "messages": [
            user("q"),
            { "role": "assistant", "tool_calls": [{ "id": "call_9", "type": "function", "function": { "name": "f", "arguments": args } }] },
        ] }));
        assert!(
            matches!(&err, TranslateError::InvalidToolArguments { index: 1, id, .. } if id == "call_9"),
            "{err:?}"
        );
        assert!(err.to_string().contains("call_9"));
    }
    // Already-decoded objects are accepted.
    let out = req(json!({ "messages": [
        user("q"),
        { "role": "assistant", "tool_calls": [{ "id": "c", "function": { "name": "f", "arguments": { "a": 1 } } }] },
        { "role": "tool", "tool_call_id": "c", "content": "r" },
    ] }));
    assert_eq!(out["messages"][1]["content"][0]["input"], json!({ "a": 1 }));
}

#[test]
fn tool_call_missing_id_or_name() {
    let err = req_err(
        json!({ "messages": [user("q"), { "role": "assistant", "tool_calls": [{ "function": { "name": "f" } }] }] }),
    );
    assert!(err.to_string().contains("id"), "{err}");
    let err = req_err(
        json!({ "messages": [user("q"), { "role": "assistant", "tool_calls": [{ "id": "c", "function": {} }] }] }),
    );
    assert!(err.to_string().contains("function.name"), "{err}");
    let err = req_err(
        json!({ "messages": [user("q"), { "role": "assistant", "tool_calls": [{ "id": "c", "type": "custom", "custom": {} }] }] }),
    );
    assert!(err.to_string().contains("custom"), "{err}");
}

#[test]
fn tool_definitions() {
    let out = req(json!({ "messages": [user("q")], "tools": [
        { "type": "function", "function": { "name": "noargs" } },
        { "type": "function", "function": { "name": "typed", "parameters": { "properties": {} } } },
    ] }));
    assert_eq!(
        out["tools"],
        json!([
            { "name": "noargs", "input_schema": { "type": "object", "properties": {} } },
            { "name": "typed", "input_schema": { "type": "object", "properties": {} } },
        ])
    );
    assert!(out.get("tool_choice").is_none());
    assert_eq!(
        refused(json!({ "messages": [user("q")], "tools": "x" }))
            .param
            .as_deref(),
        Some("tools")
    );
    for tools in [
        json!([{ "type": "custom", "custom": { "name": "x" } }]),
        json!([{ "type": "function" }]),
        json!([{ "type": "function", "function": { "name": "" } }]),
        json!([{ "type": "function", "function": { "name": "f", "parameters": "nope" } }]),
    ] {
        let err = req_err(json!({ "messages": [user("q")], "tools": tools }));
        assert!(
            matches!(err, TranslateError::InvalidField { .. }),
            "{err:?}"
        );
    }
    // Empty tools: nothing sent, tool_choice dropped.
    let out = req(json!({ "messages": [user("q")], "tools": [], "tool_choice": "required" }));
    assert!(out.get("tools").is_none() && out.get("tool_choice").is_none());
}

fn with_tool(extra: Value) -> Value {
    let mut b = json!({
        "messages": [user("q")],
        "tools": [{ "type": "function", "function": { "name": "f" } }],
    });
    if let (Some(b), Some(extra)) = (b.as_object_mut(), extra.as_object()) {
        b.extend(extra.clone());
    }
    req(b)
}

#[test]
fn tool_choice_mapping() {
    assert_eq!(
        with_tool(json!({ "tool_choice": "none" }))["tool_choice"],
        json!({ "type": "none" })
    );
    assert_eq!(
        with_tool(json!({ "tool_choice": "auto" }))["tool_choice"],
        json!({ "type": "auto" })
    );
    assert_eq!(
        with_tool(json!({ "tool_choice": "required" }))["tool_choice"],
        json!({ "type": "any" })
    );
    assert_eq!(
        with_tool(json!({ "tool_choice": { "type": "function", "function": { "name": "f" } } }))["tool_choice"],
        json!({ "type": "tool", "name": "f" })
    );
    assert!(
        with_tool(json!({ "tool_choice": { "type": "allowed_tools" } }))
            .get("tool_choice")
            .is_none()
    );
    assert!(with_tool(json!({})).get("tool_choice").is_none());
    let b = json!({ "messages": [user("q")], "tools": [{ "type": "function", "function": { "name": "f" } }], "tool_choice": "sometimes" });
    assert!(matches!(req_err(b), TranslateError::InvalidField { .. }));
    let b = json!({ "messages": [user("q")], "tools": [{ "type": "function", "function": { "name": "f" } }], "tool_choice": { "type": "function" } });
    assert!(matches!(req_err(b), TranslateError::InvalidField { .. }));
}

#[test]
fn parallel_tool_calls_false() {
    assert_eq!(
        with_tool(json!({ "parallel_tool_calls": false }))["tool_choice"],
        json!({ "type": "auto", "disable_parallel_tool_use": true })
    );
    assert_eq!(
        with_tool(json!({ "parallel_tool_calls": false, "tool_choice": "required" }))["tool_choice"],
        json!({ "type": "any", "disable_parallel_tool_use": true })
    );
    assert_eq!(
        with_tool(json!({ "parallel_tool_calls": false, "tool_choice": "none" }))["tool_choice"],
        json!({ "type": "none" })
    );
    assert!(
        with_tool(json!({ "parallel_tool_calls": true }))
            .get("tool_choice")
            .is_none()
    );
}

// --- request: parameters -----------------------------------------------

#[test]
fn max_tokens_mapping() {
    let m = |extra: Value| {
        let mut b = json!({ "messages": [user("q")] });
        if let (Some(b), Value::Object(extra)) = (b.as_object_mut(), extra) {
            b.extend(extra);
        }
        request(&body(b), "m", false)
    };
    assert_eq!(
        m(json!({ "max_tokens": 100 })).unwrap()["max_tokens"],
        json!(100)
    );
    assert_eq!(
        m(json!({ "max_completion_tokens": 200 })).unwrap()["max_tokens"],
        json!(200)
    );
    assert_eq!(
        m(json!({ "max_tokens": 100, "max_completion_tokens": 200 })).unwrap()["max_tokens"],
        json!(200)
    );
    assert_eq!(
        m(json!({ "max_tokens": null })).unwrap()["max_tokens"],
        json!(DEFAULT_MAX_TOKENS)
    );
    assert!(matches!(
        m(json!({ "max_tokens": 0 })),
        Err(TranslateError::InvalidField { .. })
    ));
    for (bad, param) in [
        (json!({ "max_tokens": -1 }), "max_tokens"),
        (json!({ "max_tokens": "10" }), "max_tokens"),
        (
            json!({ "max_completion_tokens": 1.5 }),
            "max_completion_tokens",
        ),
    ] {
        let mut b = json!({ "messages": [user("q")] });
        if let (Some(b), Value::Object(bad)) = (b.as_object_mut(), bad) {
            b.extend(bad);
        }
        assert_eq!(refused(b).param.as_deref(), Some(param));
    }
}

#[test]
fn sampling_parameters() {
    let out = req(json!({ "messages": [user("q")], "temperature": 1.7 }));
    assert_eq!(out["temperature"], json!(1.0));
    let out = req(json!({ "messages": [user("q")], "temperature": 0.3 }));
    assert_eq!(out["temperature"], json!(0.3));
    let out = req(json!({ "messages": [user("q")], "temperature": -1 }));
    assert_eq!(out["temperature"], json!(0.0));
    let out = req(json!({ "messages": [user("q")], "top_p": 0.9, "top_k": 40 }));
    assert_eq!(
        (out["top_p"].clone(), out["top_k"].clone()),
        (json!(0.9), json!(40))
    );
    assert!(out.get("temperature").is_none());
    // Both given: only temperature is sent.
    let out = req(json!({ "messages": [user("q")], "temperature": 0.5, "top_p": 0.9 }));
    assert_eq!(out["temperature"], json!(0.5));
    assert!(out.get("top_p").is_none());
    assert_eq!(
        refused(json!({ "messages": [user("q")], "temperature": "hot" }))
            .param
            .as_deref(),
        Some("temperature")
    );
    assert!(matches!(
        req_err(json!({ "messages": [user("q")], "top_k": -3 })),
        TranslateError::InvalidField { .. }
    ));
}

#[test]
fn stop_sequences_mapping() {
    assert_eq!(
        req(json!({ "messages": [user("q")], "stop": "END" }))["stop_sequences"],
        json!(["END"])
    );
    assert_eq!(
        req(json!({ "messages": [user("q")], "stop": ["a", "\n", "", " b "] }))["stop_sequences"],
        json!(["a", " b "])
    );
    assert!(
        req(json!({ "messages": [user("q")], "stop": ["\n\n"] }))
            .get("stop_sequences")
            .is_none()
    );
    assert!(
        req(json!({ "messages": [user("q")], "stop": null }))
            .get("stop_sequences")
            .is_none()
    );
    for stop in [json!([1]), json!(1)] {
        assert_eq!(
            refused(json!({ "messages": [user("q")], "stop": stop }))
                .param
                .as_deref(),
            Some("stop")
        );
    }
}

#[test]
fn user_id_mapping() {
    assert_eq!(
        req(json!({ "messages": [user("q")], "user": "u1" }))["metadata"],
        json!({ "user_id": "u1" })
    );
    assert_eq!(
        req(json!({ "messages": [user("q")], "user": "u1", "metadata": { "user_id": "m1" } }))["metadata"],
        json!({ "user_id": "m1" })
    );
    assert_eq!(
        req(json!({ "messages": [user("q")], "user": "u1", "safety_identifier": "s1" }))["metadata"],
        json!({ "user_id": "s1" })
    );
    assert!(
        req(json!({ "messages": [user("q")], "metadata": { "k": "v" } }))
            .get("metadata")
            .is_none()
    );
}

#[test]
fn unknown_and_unsupported_fields_ignored() {
    let out = req(json!({
        "messages": [user("q")], "seed": 1, "frequency_penalty": 0.5, "presence_penalty": 0.1,
        "logit_bias": { "1": 2 }, "logprobs": true, "stream_options": { "include_usage": true },
        "n": 1, "whatever": { "x": [] }, "store": true,
    }));
    let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4, "{keys:?}"); // model, max_tokens, messages, stream
    let err = req_err(json!({ "messages": [user("q")], "n": 3 }));
    assert!(err.to_string().contains("single choice"), "{err}");
}

#[test]
fn reasoning_effort_to_thinking() {
    let t = |effort: &str| req(json!({ "messages": [user("q")], "reasoning_effort": effort }));
    assert_eq!(
        t("low")["thinking"],
        json!({ "type": "enabled", "budget_tokens": 1024 })
    );
    assert_eq!(t("low")["max_tokens"], json!(DEFAULT_MAX_TOKENS));
    assert_eq!(t("medium")["thinking"]["budget_tokens"], json!(4096));
    // 4096 does not exceed 4096: room is added for the answer.
    assert_eq!(t("medium")["max_tokens"], json!(8192));
    assert_eq!(t("high")["thinking"]["budget_tokens"], json!(16384));
    assert_eq!(t("high")["max_tokens"], json!(16384 + DEFAULT_MAX_TOKENS));
    assert!(t("none").get("thinking").is_none());
    let out = req(
        json!({ "messages": [user("q")], "reasoning_effort": "low", "max_completion_tokens": 20000 }),
    );
    assert_eq!(out["max_tokens"], json!(20000));
    let out =
        req(json!({ "messages": [user("q")], "reasoning_effort": "high", "max_tokens": 500 }));
    assert_eq!(out["max_tokens"], json!(16884));
    assert_eq!(
        refused(json!({ "messages": [user("q")], "reasoning_effort": "max" }))
            .param
            .as_deref(),
        Some("reasoning_effort")
    );
}

#[test]
fn thinking_drops_sampling_parameters() {
    let out = req(
        json!({ "messages": [user("q")], "reasoning_effort": "low", "temperature": 0.2, "top_p": 0.5, "top_k": 5 }),
    );
    assert!(out.get("thinking").is_some());
    assert!(
        out.get("temperature").is_none()
            && out.get("top_p").is_none()
            && out.get("top_k").is_none()
    );
}

#[test]
fn thinking_left_off_when_anthropic_would_reject_it() {
    // Forced tool use.
    let out = with_tool(
        json!({ "reasoning_effort": "high", "tool_choice": "required", "temperature": 0.2 }),
    );
    assert!(out.get("thinking").is_none());
    assert_eq!(out["temperature"], json!(0.2));
    assert_eq!(out["max_tokens"], json!(DEFAULT_MAX_TOKENS));
    // Prefill.
    let out = req(
        json!({ "messages": [user("q"), { "role": "assistant", "content": "{" }], "reasoning_effort": "low" }),
    );
    assert!(out.get("thinking").is_none());
    // A whitespace-only final assistant turn is dropped: not a prefill.
    let out = req(
        json!({ "messages": [user("q"), { "role": "assistant", "content": " " }], "reasoning_effort": "low" }),
    );
    assert!(out.get("thinking").is_some());
    // Mid tool loop (no signed thinking block to replay).
    let out = req(json!({ "reasoning_effort": "low", "messages": [
        user("q"),
        { "role": "assistant", "tool_calls": [{ "id": "c", "type": "function", "function": { "name": "f", "arguments": "{}" } }] },
        { "role": "tool", "tool_call_id": "c", "content": "r" },
    ] }));
    assert!(out.get("thinking").is_none());
    // Auto tool choice keeps thinking.
    assert!(
        with_tool(json!({ "reasoning_effort": "low", "tool_choice": "auto" }))
            .get("thinking")
            .is_some()
    );
}

#[test]
fn response_format_appends_instruction() {
    let out = req(
        json!({ "messages": [{ "role": "system", "content": "sys" }, user("q")], "response_format": { "type": "json_object" } }),
    );
    let system = out["system"].as_str().unwrap();
    assert!(
        system.starts_with("sys\n\nRespond only with a single valid JSON object."),
        "{system}"
    );
    let out = req(
        json!({ "messages": [user("q")], "response_format": { "type": "json_schema", "json_schema": {
        "name": "person", "strict": true,
        "schema": { "type": "object", "properties": { "name": { "type": "string" } } },
    } } }),
    );
    let system = out["system"].as_str().unwrap();
    assert!(system.contains("named `person`"), "{system}");
    assert!(
        system.contains(r#"{"properties":{"name":{"type":"string"}},"type":"object"}"#),
        "{system}"
    );
    assert!(
        req(json!({ "messages": [user("q")], "response_format": { "type": "text" } }))
            .get("system")
            .is_none()
    );
    assert!(matches!(
        req_err(json!({ "messages": [user("q")], "response_format": { "type": "xml" } })),
        TranslateError::InvalidField { .. }
    ));
}

#[test]
fn error_display_is_caller_facing() {
    assert_eq!(
        req_err(json!({ "messages": [{ "role": "wizard", "content": "x" }] })).to_string(),
        "messages[0]: unsupported role `wizard` (expected system, developer, user, assistant or tool)"
    );
    assert_eq!(
        req_err(json!({ "messages": [user("q")], "max_tokens": 0 })).to_string(),
        "`max_tokens`: must be a positive integer"
    );
}

// --- response ----------------------------------------------------------

#[test]
fn text_response() {
    let anthropic = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{ "type": "text", "text": "Hello" }, { "type": "text", "text": " world" }],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": { "input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20 },
    });
    let (out, usage) = response(&anthropic, "my-model", 1700000000).unwrap();
    assert_eq!(
        usage,
        Usage {
            prompt_tokens: 130,
            completion_tokens: 5,
            cached_tokens: 100
        }
    );
    assert_eq!(
        out,
        json!({
            "id": "msg_1", "object": "chat.completion", "created": 1700000000u64, "model": "my-model",
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": "Hello world" },
                "logprobs": null, "finish_reason": "stop",
            }],
            "usage": { "prompt_tokens": 130, "completion_tokens": 5, "total_tokens": 135,
                       "prompt_tokens_details": { "cached_tokens": 100 } },
        })
    );
}

#[test]
fn tool_use_response_with_thinking() {
    let anthropic = json!({
        "id": "msg_2", "type": "message", "role": "assistant",
        "content": [
            { "type": "thinking", "thinking": "Need weather.", "signature": "sig" },
            { "type": "redacted_thinking", "data": "xxx" },
            { "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": { "city": "Paris" } },
            { "type": "tool_use", "id": "toolu_2", "name": "now", "input": {} },
        ],
        "stop_reason": "tool_use",
        "usage": { "input_tokens": 3, "output_tokens": 4 },
    });
    let (out, usage) = response(&anthropic, "m", 1).unwrap();
    assert_eq!(
        usage,
        Usage {
            prompt_tokens: 3,
            completion_tokens: 4,
            cached_tokens: 0
        }
    );
    assert_eq!(
        out["choices"][0]["message"],
        json!({
            "role": "assistant", "content": null, "reasoning_content": "Need weather.",
            "tool_calls": [
                { "id": "toolu_1", "type": "function", "function": { "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" } },
                { "id": "toolu_2", "type": "function", "function": { "name": "now", "arguments": "{}" } },
            ],
        })
    );
    assert_eq!(out["choices"][0]["finish_reason"], json!("tool_calls"));
}

#[test]
fn stop_reasons() {
    for (stop, finish) in [
        (json!("end_turn"), "stop"),
        (json!("stop_sequence"), "stop"),
        (json!("max_tokens"), "length"),
        (json!("tool_use"), "tool_calls"),
        (json!("refusal"), "content_filter"),
        (json!("pause_turn"), "stop"),
        (json!("model_context_window_exceeded"), "length"),
        (json!(null), "stop"),
    ] {
        let b = json!({ "content": [{ "type": "text", "text": "x" }], "stop_reason": stop });
        let (out, _) = response(&b, "m", 0).unwrap();
        assert_eq!(out["choices"][0]["finish_reason"], json!(finish), "{stop}");
    }
}

#[test]
fn malformed_responses_are_errors() {
    for b in [
        json!({}),
        json!([]),
        json!("text"),
        json!({ "content": "x" }),
        json!({ "content": [{ "type": "tool_use", "input": {} }] }),
    ] {
        assert!(
            matches!(
                response(&b, "m", 0),
                Err(TranslateError::InvalidResponse(_))
            ),
            "{b}"
        );
    }
    let err = response(
        &json!({ "type": "error", "error": { "type": "api_error", "message": "boom" } }),
        "m",
        0,
    )
    .unwrap_err();
    assert!(err.to_string().contains("boom"));
    // Missing usage and odd blocks are tolerated.
    let (out, usage) = response(
        &json!({ "content": [{ "type": "server_tool_use" }, { "type": "text" }] }),
        "m",
        0,
    )
    .unwrap();
    assert_eq!(usage, Usage::default());
    assert_eq!(out["choices"][0]["message"]["content"], json!(""));
}

// --- streaming -----------------------------------------------------------

fn sse(data: Value) -> SseEvent {
    SseEvent {
        event: data.get("type").and_then(Value::as_str).map(str::to_owned),
        data: data.to_string(),
    }
}

fn translator() -> StreamTranslator {
    StreamTranslator::new("chatcmpl-1".into(), "my-model".into(), 42)
}

fn delta_chunk(delta: Value, finish: Value) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 42, "model": "my-model",
        "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
    })
}

fn message_start() -> Value {
    json!({ "type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude-x",
        "stop_reason": null, "stop_sequence": null,
        "usage": { "input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 10, "cache_creation_input_tokens": 5 },
    } })
}

#[test]
fn text_stream_chunk_by_chunk() {
    let mut t = translator();
    let role = delta_chunk(json!({ "role": "assistant", "content": "" }), Value::Null);
    assert_eq!(t.event(&sse(message_start())).unwrap(), vec![role]);
    assert_eq!(
        t.event(&sse(json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } }))).unwrap(),
        Vec::<Value>::new()
    );
    assert_eq!(
        t.event(&sse(json!({ "type": "ping" }))).unwrap(),
        Vec::<Value>::new()
    );
    assert_eq!(
        t.event(&sse(json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": "Hel" } }))).unwrap(),
        vec![delta_chunk(json!({ "content": "Hel" }), Value::Null)]
    );
    assert_eq!(
        t.event(&sse(json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": "lo" } }))).unwrap(),
        vec![delta_chunk(json!({ "content": "lo" }), Value::Null)]
    );
    assert_eq!(
        t.event(&sse(json!({ "type": "content_block_stop", "index": 0 })))
            .unwrap(),
        Vec::<Value>::new()
    );
    assert!(!t.finished());
    assert_eq!(
        t.event(&sse(json!({ "type": "message_delta", "delta": { "stop_reason": "end_turn", "stop_sequence": null }, "usage": { "output_tokens": 15 } }))).unwrap(),
        vec![delta_chunk(json!({}), json!("stop"))]
    );
    assert_eq!(
        t.event(&sse(json!({ "type": "message_stop" }))).unwrap(),
        Vec::<Value>::new()
    );
    assert!(t.finished());
    assert_eq!(
        t.usage(),
        Usage {
            prompt_tokens: 40,
            completion_tokens: 15,
            cached_tokens: 10
        }
    );
    assert_eq!(
        t.usage_chunk(),
        json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 42, "model": "my-model",
            "choices": [],
            "usage": { "prompt_tokens": 40, "completion_tokens": 15, "total_tokens": 55,
                       "prompt_tokens_details": { "cached_tokens": 10 } },
        })
    );
}

#[test]
fn tool_call_stream_uses_tool_ordinals() {
    let mut t = translator();
    t.event(&sse(message_start())).unwrap();
    let events = [
        json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "thinking", "thinking": "" } }),
        json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "thinking_delta", "thinking": "Hmm." } }),
        json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "signature_delta", "signature": "abc" } }),
        json!({ "type": "content_block_stop", "index": 0 }),
        json!({ "type": "content_block_start", "index": 1, "content_block": { "type": "text", "text": "" } }),
        json!({ "type": "content_block_delta", "index": 1, "delta": { "type": "text_delta", "text": "Checking." } }),
        json!({ "type": "content_block_stop", "index": 1 }),
        json!({ "type": "content_block_start", "index": 2, "content_block": { "type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {} } }),
        json!({ "type": "content_block_delta", "index": 2, "delta": { "type": "input_json_delta", "partial_json": "" } }),
        json!({ "type": "content_block_delta", "index": 2, "delta": { "type": "input_json_delta", "partial_json": "{\"city\": " } }),
        json!({ "type": "content_block_delta", "index": 2, "delta": { "type": "input_json_delta", "partial_json": "\"Paris\"}" } }),
        json!({ "type": "content_block_stop", "index": 2 }),
        json!({ "type": "content_block_start", "index": 3, "content_block": { "type": "tool_use", "id": "toolu_b", "name": "now", "input": {} } }),
        json!({ "type": "content_block_delta", "index": 3, "delta": { "type": "input_json_delta", "partial_json": "{}" } }),
        json!({ "type": "content_block_stop", "index": 3 }),
        json!({ "type": "message_delta", "delta": { "stop_reason": "tool_use" }, "usage": { "output_tokens": 60 } }),
        json!({ "type": "message_stop" }),
    ];
    let mut chunks = Vec::new();
    for e in events {
        chunks.extend(t.event(&sse(e)).unwrap());
    }
    assert_eq!(
        chunks,
        vec![
            delta_chunk(json!({ "reasoning_content": "Hmm." }), Value::Null),
            delta_chunk(json!({ "content": "Checking." }), Value::Null),
            delta_chunk(
                json!({ "tool_calls": [{ "index": 0, "id": "toolu_a", "type": "function",
                                                 "function": { "name": "get_weather", "arguments": "" } }] }),
                Value::Null
            ),
            delta_chunk(
                json!({ "tool_calls": [{ "index": 0, "function": { "arguments": "{\"city\": " } }] }),
                Value::Null
            ),
            delta_chunk(
                json!({ "tool_calls": [{ "index": 0, "function": { "arguments": "\"Paris\"}" } }] }),
                Value::Null
            ),
            delta_chunk(
                json!({ "tool_calls": [{ "index": 1, "id": "toolu_b", "type": "function",
                                                 "function": { "name": "now", "arguments": "" } }] }),
                Value::Null
            ),
            delta_chunk(
                json!({ "tool_calls": [{ "index": 1, "function": { "arguments": "{}" } }] }),
                Value::Null
            ),
            delta_chunk(json!({}), json!("tool_calls")),
        ]
    );
    assert!(t.finished());
    assert_eq!(t.usage().completion_tokens, 60);
}

#[test]
fn stream_stop_reasons_and_role_once() {
    for (stop, finish) in [
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
        ("stop_sequence", "stop"),
    ] {
        let mut t = translator();
        // No message_start: the role chunk still comes first, once.
        let out = t.event(&sse(json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": "a" } }))).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0]["choices"][0]["delta"]["role"], json!("assistant"));
        let out = t
            .event(&sse(
                json!({ "type": "message_delta", "delta": { "stop_reason": stop } }),
            ))
            .unwrap();
        assert_eq!(out, vec![delta_chunk(json!({}), json!(finish))]);
    }
}

#[test]
fn message_delta_usage_overrides() {
    let mut t = translator();
    t.event(&sse(message_start())).unwrap();
    t.event(&sse(json!({ "type": "message_delta", "delta": { "stop_reason": null },
                         "usage": { "input_tokens": 30, "output_tokens": 7, "cache_read_input_tokens": 0 } }))).unwrap();
    assert_eq!(
        t.usage(),
        Usage {
            prompt_tokens: 35,
            completion_tokens: 7,
            cached_tokens: 0
        }
    );
}

#[test]
fn error_events_classified() {
    let cases = [
        ("overloaded_error", ErrorClass::Retryable),
        ("api_error", ErrorClass::Retryable),
        (
            "rate_limit_error",
            ErrorClass::RateLimited { retry_after: None },
        ),
        ("invalid_request_error", ErrorClass::Retryable),
    ];
    for (kind, class) in cases {
        let mut t = translator();
        let err = t
            .event(&sse(
                json!({ "type": "error", "error": { "type": kind, "message": "Overloaded" } }),
            ))
            .unwrap_err();
        assert_eq!(err, UpstreamError::new(class, None, "Overloaded"), "{kind}");
    }
    let err = translator()
        .event(&sse(json!({ "type": "error" })))
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Retryable);
    assert!(err.message.contains("unknown"));
}

#[test]
fn malformed_stream_events() {
    let mut t = translator();
    for data in ["not json", "[1]", "42", ""] {
        let err = t
            .event(&SseEvent {
                event: None,
                data: data.into(),
            })
            .unwrap_err();
        assert_eq!(err.class, ErrorClass::Protocol, "{data}");
    }
    let err = t
        .event(&sse(
            json!({ "type": "content_block_start", "content_block": { "type": "text" } }),
        ))
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Protocol);
    // Tolerated: unknown events, deltas for unknown blocks, missing fields.
    for e in [
        json!({ "type": "brand_new_event" }),
        json!({ "type": "content_block_delta", "index": 9, "delta": { "type": "input_json_delta", "partial_json": "{" } }),
        json!({ "type": "content_block_delta", "index": 9, "delta": {} }),
        json!({ "type": "content_block_start", "index": 5, "content_block": { "type": "server_tool_use", "id": "s" } }),
        json!({ "type": "content_block_delta", "index": 5, "delta": { "type": "input_json_delta", "partial_json": "{" } }),
        json!({ "type": "message_start" }),
        json!({ "type": "message_delta" }),
    ] {
        let out = t.event(&sse(e.clone())).unwrap();
        assert!(
            out.iter()
                .all(|c| c["choices"][0]["delta"].get("tool_calls").is_none()),
            "{e}"
        );
    }
    // The `event:` name is used when the data has no type.
    let mut t = translator();
    let out = t
        .event(&SseEvent {
            event: Some("message_stop".into()),
            data: "{}".into(),
        })
        .unwrap();
    assert!(out.is_empty() && t.finished());
}

// --- error bodies ---------------------------------------------------------

#[test]
fn error_body_helpers() {
    let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#;
    assert_eq!(error_message(body), "Overloaded");
    assert_eq!(error_type(body).as_deref(), Some("overloaded_error"));
    assert_eq!(
        error_message(b"<html>502 Bad Gateway</html>"),
        "<html>502 Bad Gateway</html>"
    );
    assert_eq!(error_type(b"<html>"), None);
    assert_eq!(error_message(b"  "), "empty error response");
    let long = "é".repeat(2000);
    let msg = error_message(long.as_bytes());
    assert!(
        msg.len() <= 1024 && msg.chars().all(|c| c == 'é'),
        "{}",
        msg.len()
    );
    assert_eq!(error_message(b"\xFF\xFE"), "\u{FFFD}\u{FFFD}");
}

#[test]
fn upstream_error_classification() {
    let body = |kind: &str, message: &str| {
        json!({ "type": "error", "error": { "type": kind, "message": message } })
            .to_string()
            .into_bytes()
    };
    let e = upstream_error(529, None, &body("overloaded_error", "Overloaded"));
    assert_eq!(
        e,
        UpstreamError::new(ErrorClass::Retryable, Some(529), "Overloaded")
    );
    let retry = Some(Duration::from_secs(3));
    let e = upstream_error(429, retry, &body("rate_limit_error", "slow down"));
    assert_eq!(e.class, ErrorClass::RateLimited { retry_after: retry });
    let e = upstream_error(
        400,
        None,
        &body(
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API.",
        ),
    );
    assert_eq!(e.class, ErrorClass::QuotaExhausted);
    let e = upstream_error(
        400,
        None,
        &body("invalid_request_error", "messages: roles must alternate"),
    );
    assert_eq!(e.class, ErrorClass::Client);
    assert_eq!(e.message, "messages: roles must alternate");
    let e = upstream_error(
        401,
        None,
        &body("authentication_error", "invalid x-api-key"),
    );
    assert_eq!(e.class, ErrorClass::Auth);
    let e = upstream_error(502, None, b"bad gateway");
    assert_eq!(
        e,
        UpstreamError::new(ErrorClass::Retryable, Some(502), "bad gateway")
    );
}

/// Arbitrary JSON never panics the translators.
#[test]
fn hostile_inputs_never_panic() {
    let values = [
        json!(null),
        json!(1),
        json!("s"),
        json!([]),
        json!({}),
        json!([null]),
        json!({ "role": null }),
        json!({ "role": "user", "content": [{ "type": "image_url", "image_url": 5 }] }),
        json!({ "role": "assistant", "tool_calls": [null, 1, "x"] }),
        json!({ "role": "tool", "tool_call_id": 5 }),
        json!({ "role": "tool", "tool_call_id": "c", "content": [{ "type": "image_url", "image_url": { "url": "data:" } }] }),
    ];
    for v in &values {
        // Whatever the canonical request takes, the translation answers.
        let bodies = [
            json!({ "messages": [v] }),
            json!({ "messages": [user("q")], "tools": v, "tool_choice": v, "stop": v,
                    "response_format": v, "reasoning_effort": v, "metadata": v, "max_tokens": v }),
        ];
        for b in bodies {
            if let Ok(b) = serde_json::from_value::<CanonicalRequest>(b) {
                let _ = request(&b, "m", true);
            }
        }
        let _ = response(v, "m", 0);
        let mut t = translator();
        for kind in [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "message_delta",
            "error",
        ] {
            let mut e = json!({ "type": kind, "index": 0, "message": v, "content_block": v, "delta": v, "usage": v, "error": v });
            let _ = t.event(&sse(e.clone()));
            if let Some(obj) = e.as_object_mut() {
                obj.remove("index");
            }
            let _ = t.event(&sse(e));
        }
    }
}
