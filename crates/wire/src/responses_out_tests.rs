use super::*;

fn map(v: Value) -> CanonicalRequest {
    serde_json::from_value(v).expect("a canonical body")
}

#[test]
fn a_tool_conversation_becomes_responses_items() {
    let body = map(json!({
        "model": "gpt-4o",
        "messages": [
            { "role": "system", "content": "Be brief." },
            { "role": "user", "content": [{ "type": "text", "text": "Weather?" },
                                          { "type": "image_url", "image_url": { "url": "https://x/y.png" } }] },
            { "role": "assistant", "content": null, "tool_calls": [
                { "id": "call_1", "type": "function", "function": { "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" } }] },
            { "role": "tool", "tool_call_id": "call_1", "content": "sunny" },
        ],
        "tools": [{ "type": "function", "function": { "name": "get_weather", "parameters": { "type": "object" } } }],
        "tool_choice": { "type": "function", "function": { "name": "get_weather" } },
        "response_format": { "type": "json_schema", "json_schema": { "name": "o", "schema": { "type": "object" } } },
        "verbosity": "low", "reasoning_effort": "low", "include": ["reasoning.encrypted_content"],
        "max_completion_tokens": 100, "web_search_options": {},
    }));
    assert!(expressible(&body));
    let out = Value::Object(request(&body, "gpt-4o", true));
    assert_eq!(
        out["input"],
        json!([
            { "role": "system", "content": "Be brief." },
            { "role": "user", "content": [{ "type": "input_text", "text": "Weather?" },
                                          { "type": "input_image", "image_url": "https://x/y.png", "detail": "auto" }] },
            { "type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" },
            { "type": "function_call_output", "call_id": "call_1", "output": "sunny" },
        ])
    );
    assert_eq!(
        out["tools"],
        json!([{ "type": "function", "name": "get_weather", "parameters": { "type": "object" } },
               { "type": "web_search" }])
    );
    assert_eq!(
        out["tool_choice"],
        json!({ "type": "function", "name": "get_weather" })
    );
    assert_eq!(
        out["text"],
        json!({ "format": { "type": "json_schema", "name": "o", "schema": { "type": "object" } }, "verbosity": "low" })
    );
    assert_eq!(out["reasoning"], json!({ "effort": "low" }));
    assert_eq!(out["max_output_tokens"], 100);
    assert_eq!(out["store"], false);
    assert_eq!(out["stream"], true);
    assert!(!expressible(&map(
        json!({ "model": "m", "messages": [], "stop": ["END"] })
    )));
}

#[test]
fn an_answer_with_a_tool_call_reads_back() {
    let (body, usage) = response(&json!({
        "id": "resp_1", "object": "response", "created_at": 7, "model": "gpt-4o", "status": "completed",
        "output": [
            { "type": "reasoning", "id": "rs_1", "summary": [{ "type": "summary_text", "text": "think" }] },
            { "type": "message", "id": "m", "role": "assistant", "content": [{ "type": "output_text", "text": "Checking." }] },
            { "type": "function_call", "id": "fc_1", "call_id": "call_9", "name": "get_weather", "arguments": "{}" },
        ],
        "usage": { "input_tokens": 10, "input_tokens_details": { "cached_tokens": 4 }, "output_tokens": 3,
                   "output_tokens_details": { "reasoning_tokens": 1 } },
    }))
    .expect("valid");
    let message = &body["choices"][0]["message"];
    assert_eq!(message["content"], "Checking.");
    assert_eq!(message["reasoning_content"], "think");
    assert_eq!(message["tool_calls"][0]["id"], "call_9");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        usage,
        Usage {
            prompt_tokens: 10,
            completion_tokens: 3,
            cached_tokens: 4
        }
    );
    let failed =
        response(&json!({ "status": "failed", "output": [], "error": { "message": "boom" } }));
    assert_eq!(
        failed.map_err(|e| e.message).err(),
        Some("boom".to_string())
    );
}

#[test]
fn stream_events_become_chunks() {
    let mut events = Events::default();
    let mut chunks = Vec::new();
    for data in [
        json!({ "type": "response.created", "response": { "id": "resp_1", "model": "gpt-4o", "created_at": 1 } }),
        json!({ "type": "response.output_text.delta", "output_index": 0, "delta": "Hi" }),
        json!({ "type": "response.output_item.added", "output_index": 1,
                "item": { "type": "function_call", "call_id": "call_1", "name": "f", "arguments": "" } }),
        json!({ "type": "response.function_call_arguments.delta", "output_index": 1, "delta": "{}" }),
        json!({ "type": "response.completed", "response": { "status": "completed",
                "usage": { "input_tokens": 5, "output_tokens": 2 } } }),
    ] {
        let event = SseEvent {
            event: None,
            data: data.to_string(),
        };
        chunks.extend(events.event(&event).expect("valid event"));
    }
    assert!(events.finish().is_ok());
    let deltas: Vec<Value> = chunks
        .iter()
        .map(|c| c["choices"][0]["delta"].clone())
        .collect();
    assert_eq!(deltas[1], json!({ "content": "Hi" }));
    assert_eq!(deltas[2]["tool_calls"][0]["id"], "call_1");
    assert_eq!(
        deltas[3],
        json!({ "tool_calls": [{ "index": 0, "function": { "arguments": "{}" } }] })
    );
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chunks[5]["usage"]["prompt_tokens"], 5);
    let mut cut = Events::default();
    assert!(cut.finish().is_err());
}
