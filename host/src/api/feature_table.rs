//! Every row of the feature table (DESIGN §4) is detected whichever API the
//! request came in on: each endpoint's spelling of the feature is parsed into
//! the canonical request and detected there. Where an API has no way to ask
//! for a feature, its nearest spelling is refused by name (never dropped).

use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::chat::Chat;
use super::endpoint::Endpoint;
use super::messages::Messages;
use super::responses::Responses;
use switchyard_wire::feature as features;

/// One row: the feature, then its spelling on Chat Completions, Responses
/// and Messages (`Err(field)`: Messages cannot express it, and `field` is
/// refused).
struct Row {
    feature: &'static str,
    chat: Value,
    responses: Value,
    messages: Result<Value, &'static str>,
}

const IMAGE: &str = "data:image/png;base64,iVBORw0KGgo=";

fn rows() -> Vec<Row> {
    let function = json!({ "type": "object", "properties": {} });
    vec![
        Row {
            feature: "stream",
            chat: json!({ "stream": true }),
            responses: json!({ "stream": true }),
            messages: Ok(json!({ "stream": true })),
        },
        Row {
            feature: "tools.function_calling",
            chat: json!({ "tools": [{ "type": "function", "function": { "name": "f", "parameters": function } }] }),
            responses: json!({ "tools": [{ "type": "function", "name": "f", "parameters": function }] }),
            messages: Ok(json!({ "tools": [{ "name": "f", "input_schema": function }] })),
        },
        Row {
            feature: "tools.web_search",
            chat: json!({ "web_search_options": {} }),
            responses: json!({ "tools": [{ "type": "web_search" }] }),
            messages: Ok(
                json!({ "tools": [{ "type": "web_search_20250305", "name": "web_search" }] }),
            ),
        },
        Row {
            feature: "tools.custom_tools",
            chat: json!({ "tools": [{ "type": "custom", "custom": { "name": "sql" } }] }),
            responses: json!({ "tools": [{ "type": "custom", "name": "sql" }] }),
            messages: Err("tools.0.type"),
        },
        Row {
            feature: "tool_choice.required",
            chat: json!({ "tool_choice": "required" }),
            responses: json!({ "tool_choice": "required" }),
            messages: Ok(json!({ "tool_choice": { "type": "any" } })),
        },
        Row {
            feature: "tool_choice.required",
            chat: json!({ "tool_choice": { "type": "function", "function": { "name": "f" } } }),
            responses: json!({ "tool_choice": { "type": "function", "name": "f" } }),
            messages: Ok(json!({ "tool_choice": { "type": "tool", "name": "f" } })),
        },
        Row {
            feature: "text.format.json_schema",
            chat: json!({ "response_format": { "type": "json_schema", "json_schema": { "name": "o", "schema": function } } }),
            responses: json!({ "text": { "format": { "type": "json_schema", "name": "o", "schema": function } } }),
            messages: Ok(json!({ "output_format": { "type": "json_schema", "schema": function } })),
        },
        Row {
            feature: "text.format.json_object",
            chat: json!({ "response_format": { "type": "json_object" } }),
            responses: json!({ "text": { "format": { "type": "json_object" } } }),
            messages: Err("output_format.type"),
        },
        Row {
            feature: "reasoning.effort.high",
            chat: json!({ "reasoning_effort": "high" }),
            responses: json!({ "reasoning": { "effort": "high" } }),
            messages: Ok(json!({ "thinking": { "type": "enabled", "budget_tokens": 16384 } })),
        },
        Row {
            feature: "reasoning.effort.low",
            chat: json!({ "reasoning_effort": "low" }),
            responses: json!({ "reasoning": { "effort": "low", "summary": "auto" } }),
            messages: Ok(json!({ "thinking": { "type": "enabled", "budget_tokens": 1024 } })),
        },
        Row {
            feature: "temperature",
            chat: json!({ "temperature": 0.2 }),
            responses: json!({ "temperature": 0.2 }),
            messages: Ok(json!({ "temperature": 0.2 })),
        },
        Row {
            feature: "top_p",
            chat: json!({ "top_p": 0.9 }),
            responses: json!({ "top_p": 0.9 }),
            messages: Ok(json!({ "top_p": 0.9 })),
        },
        Row {
            feature: "vision",
            chat: json!({ "messages": [{ "role": "user", "content": [
                { "type": "text", "text": "what is this?" },
                { "type": "image_url", "image_url": { "url": IMAGE } }] }] }),
            responses: json!({ "input": [{ "role": "user", "content": [
                { "type": "input_text", "text": "what is this?" },
                { "type": "input_image", "image_url": IMAGE }] }] }),
            messages: Ok(json!({ "messages": [{ "role": "user", "content": [
                { "type": "text", "text": "what is this?" },
                { "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo=" } }] }] })),
        },
        Row {
            feature: "parallel_tool_calls",
            chat: json!({ "parallel_tool_calls": false }),
            responses: json!({ "parallel_tool_calls": false }),
            messages: Ok(
                json!({ "tool_choice": { "type": "auto", "disable_parallel_tool_use": true } }),
            ),
        },
        Row {
            feature: "prompt_cache_key",
            chat: json!({ "prompt_cache_key": "tenant-42" }),
            responses: json!({ "prompt_cache_key": "tenant-42" }),
            messages: Err("prompt_cache_key"),
        },
        Row {
            feature: "text.verbosity",
            chat: json!({ "verbosity": "low" }),
            responses: json!({ "text": { "verbosity": "low" } }),
            messages: Err("text"),
        },
        Row {
            feature: "include",
            chat: json!({ "include": ["reasoning.encrypted_content"] }),
            responses: json!({ "include": ["reasoning.encrypted_content"] }),
            messages: Err("include"),
        },
    ]
}

/// `base` with `fragment`'s top-level fields put over it.
fn with(base: Value, fragment: &Value) -> Vec<u8> {
    let mut base = base;
    if let (Value::Object(b), Value::Object(f)) = (&mut base, fragment) {
        for (k, v) in f {
            b.insert(k.clone(), v.clone());
        }
    }
    base.to_string().into_bytes()
}

fn detected<E: Endpoint>(body: &[u8]) -> Vec<String> {
    match E::parse(body, &HeaderMap::new()) {
        Ok((request, _)) => features::detect(&request.body).names(),
        Err(e) => panic!("{} refused: {}", String::from_utf8_lossy(body), e.message),
    }
}

#[test]
fn every_row_is_detected_on_every_endpoint() {
    let chat = json!({ "model": "m", "messages": [{ "role": "user", "content": "hi" }] });
    let responses = json!({ "model": "m", "input": "hi" });
    let messages = json!({ "model": "m", "max_tokens": 64, "messages": [{ "role": "user", "content": "hi" }] });
    // The bases use no feature.
    assert!(detected::<Chat>(&with(chat.clone(), &json!({}))).is_empty());
    assert!(detected::<Responses>(&with(responses.clone(), &json!({}))).is_empty());
    assert!(detected::<Messages>(&with(messages.clone(), &json!({}))).is_empty());

    let mut covered = Vec::new();
    for row in rows() {
        let want = vec![row.feature.to_string()];
        assert_eq!(
            detected::<Chat>(&with(chat.clone(), &row.chat)),
            want,
            "chat: {}",
            row.chat
        );
        assert_eq!(
            detected::<Responses>(&with(responses.clone(), &row.responses)),
            want,
            "responses: {}",
            row.responses
        );
        match &row.messages {
            Ok(fragment) => assert_eq!(
                detected::<Messages>(&with(messages.clone(), fragment)),
                want,
                "messages: {fragment}"
            ),
            Err(field) => {
                // Nearest spelling on the Messages API: refused, by name.
                let fragment = match *field {
                    "tools.0.type" => {
                        json!({ "tools": [{ "type": "custom_grammar", "name": "sql" }] })
                    }
                    "output_format.type" => json!({ "output_format": { "type": "json_object" } }),
                    "text" => json!({ "text": { "verbosity": "low" } }),
                    other => json!({ other: row.responses[other].clone() }),
                };
                let Err(e) = Messages::parse(&with(messages.clone(), &fragment), &HeaderMap::new())
                else {
                    panic!("messages accepted {fragment}");
                };
                assert_eq!(e.status, 400, "{fragment}");
                assert!(e.message.starts_with(field), "{}", e.message);
            }
        }
        covered.push(row.feature);
    }
    // Every feature name of the table has a row (effort levels by two).
    for feature in features::FEATURES {
        assert!(covered.contains(feature), "no row for {feature}");
    }
}
