//! OpenAI's Responses API as an upstream wire format: the canonical request
//! (Chat Completions shape) written as a Responses body, and Responses
//! objects and SSE events read back as canonical completions and chunks.
//!
//! Requests that came in on `/v1/responses` go to an `openai` account's
//! `/responses` endpoint this way, so Responses-only parameters (`include`,
//! hosted web search on any model, `text.verbosity`) reach OpenAI as the
//! caller wrote them. A canonical body using something the Responses API has
//! no field for (see [`expressible`]) goes to Chat Completions instead.

use serde_json::{Map, Value, json};

use crate::chunk::Chunk;
use crate::request::{CanonicalRequest, Message, ToolChoice};
use crate::sse::{SseEvent, Translate, stream_end};
use crate::{ErrorClass, UpstreamError, Usage, content_text};

/// Passed-through canonical fields the Responses API takes under the same
/// name (the typed ones are written one by one in [`request`]).
const SAME_NAME: &[&str] = &[
    "prompt_cache_retention",
    "safety_identifier",
    "service_tier",
];

/// Whether every field of the canonical body has a Responses equivalent
/// (e.g. `stop`, `n`, `seed` and penalties do not).
pub fn expressible(body: &CanonicalRequest) -> bool {
    body.stop.is_none()
        && body
            .passthrough
            .iter()
            .all(|(k, v)| v.is_null() || SAME_NAME.contains(&k.as_str()))
}

fn protocol(message: impl Into<String>) -> UpstreamError {
    UpstreamError::new(ErrorClass::Protocol, Some(200), message)
}

/// A canonical content part as a Responses input part.
fn input_part(part: &Value, assistant: bool) -> Option<Value> {
    match part.get("type").and_then(Value::as_str) {
        Some("text") => {
            let kind = if assistant {
                "output_text"
            } else {
                "input_text"
            };
            Some(json!({ "type": kind, "text": part.get("text").cloned().unwrap_or(json!("")) }))
        }
        Some("image_url") => {
            let mut image = json!({ "type": "input_image", "image_url": part.pointer("/image_url/url").cloned().unwrap_or(Value::Null) });
            image["detail"] = part
                .pointer("/image_url/detail")
                .cloned()
                .unwrap_or(json!("auto"));
            Some(image)
        }
        Some("file") => {
            let mut file = json!({ "type": "input_file" });
            for key in ["file_data", "filename", "file_id"] {
                if let Some(v) = part.pointer(&format!("/file/{key}")) {
                    file[key] = v.clone();
                }
            }
            Some(file)
        }
        _ => None,
    }
}

fn content(content: &Value, assistant: bool) -> Value {
    match content {
        Value::Array(parts) => Value::Array(
            parts
                .iter()
                .filter_map(|p| input_part(p, assistant))
                .collect(),
        ),
        Value::Null => json!(""),
        other => other.clone(),
    }
}

/// The canonical messages as Responses input items.
fn input(messages: &[Message]) -> Vec<Value> {
    let mut items = Vec::with_capacity(messages.len());
    for m in messages {
        let body = m.content.as_ref().unwrap_or(&Value::Null);
        match m.role.as_str() {
            "tool" => items.push(json!({
                "type": "function_call_output",
                "call_id": m.tool_call_id,
                "output": content_text(body),
            })),
            "assistant" => {
                let text = content_text(body);
                if !text.is_empty() {
                    items.push(json!({ "role": "assistant", "content": text }));
                }
                for call in m.tool_calls.iter().flatten() {
                    let id = call.get("id").cloned().unwrap_or(Value::Null);
                    if call.get("type").and_then(Value::as_str) == Some("custom") {
                        items.push(json!({
                            "type": "custom_tool_call", "call_id": id,
                            "name": call.pointer("/custom/name").cloned().unwrap_or(Value::Null),
                            "input": call.pointer("/custom/input").cloned().unwrap_or(json!("")),
                        }));
                    } else {
                        items.push(json!({
                            "type": "function_call", "call_id": id,
                            "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
                            "arguments": call.pointer("/function/arguments").cloned().unwrap_or(json!("{}")),
                        }));
                    }
                }
            }
            role => items.push(json!({ "role": role, "content": content(body, false) })),
        }
    }
    items
}

fn tools(body: &CanonicalRequest) -> Vec<Value> {
    let mut out = Vec::new();
    for tool in body.tools.iter().flatten() {
        let kind = match tool.kind() {
            "custom" => "custom",
            _ => "function",
        };
        let mut t = Map::new();
        t.insert("type".into(), json!(kind));
        if let Some(Value::Object(fields)) = tool.fields.get(kind) {
            for (k, v) in fields {
                t.insert(k.clone(), v.clone());
            }
        }
        out.push(Value::Object(t));
    }
    if let Some(options) = &body.web_search_options {
        let mut t = options.clone();
        t.insert("type".into(), json!("web_search"));
        out.push(Value::Object(t));
    }
    out
}

/// The canonical body as a Responses API body for `model`.
pub fn request(body: &CanonicalRequest, model: &str, stream: bool) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    let mut same = |key: &str, value: Option<Value>| {
        if let Some(v) = value {
            out.insert(key.into(), v);
        }
    };
    same("include", body.include.clone().map(Value::Array));
    same(
        "prompt_cache_key",
        body.prompt_cache_key.clone().map(Value::String),
    );
    same(
        "parallel_tool_calls",
        body.parallel_tool_calls.map(Value::Bool),
    );
    same("temperature", body.temperature.clone().map(Value::Number));
    same("top_p", body.top_p.clone().map(Value::Number));
    same("metadata", body.metadata.clone().map(Value::Object));
    same("user", body.user.clone().map(Value::String));
    for key in SAME_NAME {
        if let Some(v) = body.passthrough.get(*key).filter(|v| !v.is_null()) {
            out.insert((*key).into(), v.clone());
        }
    }
    out.insert("input".into(), Value::Array(input(&body.messages)));
    let tools = tools(body);
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    match &body.tool_choice {
        Some(ToolChoice::Tool(choice)) => {
            let kind = choice
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("function");
            let name = choice
                .get(kind)
                .and_then(|f| f.get("name"))
                .cloned()
                .unwrap_or(Value::Null);
            out.insert("tool_choice".into(), json!({ "type": kind, "name": name }));
        }
        Some(ToolChoice::Mode(choice)) => {
            out.insert("tool_choice".into(), json!(choice));
        }
        None => {}
    }
    let mut text = Map::new();
    match &body.response_format {
        Some(f) if f.kind == "json_schema" => {
            let mut format = Map::new();
            format.insert("type".into(), json!("json_schema"));
            if let Some(Value::Object(schema)) = f.fields.get("json_schema") {
                for (k, v) in schema {
                    format.insert(k.clone(), v.clone());
                }
            }
            text.insert("format".into(), Value::Object(format));
        }
        Some(f) if f.kind == "json_object" => {
            text.insert("format".into(), json!({ "type": "json_object" }));
        }
        _ => {}
    }
    if let Some(v) = &body.verbosity {
        text.insert("verbosity".into(), json!(v));
    }
    if !text.is_empty() {
        out.insert("text".into(), Value::Object(text));
    }
    if let Some(effort) = body.reasoning_effort {
        out.insert("reasoning".into(), json!({ "effort": effort }));
    }
    if let Some(max) = body.max_output_tokens() {
        out.insert("max_output_tokens".into(), json!(max));
    }
    // Switchyard keeps no state between requests; neither should OpenAI.
    out.insert("store".into(), json!(false));
    if stream {
        out.insert("stream".into(), json!(true));
    }
    out
}

/// Reads a Responses `usage` object.
fn usage(u: &Value) -> Usage {
    let get = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        prompt_tokens: get("/input_tokens"),
        completion_tokens: get("/output_tokens"),
        cached_tokens: get("/input_tokens_details/cached_tokens"),
    }
}

/// A canonical `usage` object from a Responses one.
fn chat_usage(u: &Value) -> Value {
    let mut out = usage(u).to_openai();
    out["completion_tokens_details"] = json!({
        "reasoning_tokens": u.pointer("/output_tokens_details/reasoning_tokens").and_then(Value::as_u64).unwrap_or(0)
    });
    out
}

fn finish_reason(response: &Value, tool_calls: bool) -> &'static str {
    match (
        response.get("status").and_then(Value::as_str),
        response
            .pointer("/incomplete_details/reason")
            .and_then(Value::as_str),
    ) {
        (Some("incomplete"), Some("content_filter")) => "content_filter",
        (Some("incomplete"), _) => "length",
        _ if tool_calls => "tool_calls",
        _ => "stop",
    }
}

fn failure(response: &Value) -> UpstreamError {
    let message = response
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("the response failed")
        .to_string();
    UpstreamError::new(ErrorClass::Retryable, Some(200), message)
}

/// A Responses object as a canonical `chat.completion` and its usage.
pub fn response(r: &Value) -> Result<(Value, Usage), UpstreamError> {
    let output = r
        .get("output")
        .and_then(Value::as_array)
        .ok_or_else(|| protocol("response has no output"))?;
    if r.get("status").and_then(Value::as_str) == Some("failed") {
        return Err(failure(r));
    }
    let mut text = String::new();
    let mut refusal = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for item in output {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                for part in item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    match part.get("type").and_then(Value::as_str) {
                        Some("output_text") => {
                            text.push_str(part.get("text").and_then(Value::as_str).unwrap_or(""))
                        }
                        Some("refusal") => refusal
                            .push_str(part.get("refusal").and_then(Value::as_str).unwrap_or("")),
                        _ => {}
                    }
                }
            }
            Some("reasoning") => {
                for part in ["content", "summary"]
                    .iter()
                    .filter_map(|k| item.get(*k).and_then(Value::as_array))
                    .flatten()
                {
                    reasoning.push_str(part.get("text").and_then(Value::as_str).unwrap_or(""));
                }
            }
            Some("function_call") => calls.push(json!({
                "id": item.get("call_id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": item.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": item.get("arguments").cloned().unwrap_or(json!("")),
                },
            })),
            Some("custom_tool_call") => calls.push(json!({
                "id": item.get("call_id").cloned().unwrap_or(Value::Null),
                "type": "custom",
                "custom": {
                    "name": item.get("name").cloned().unwrap_or(Value::Null),
                    "input": item.get("input").cloned().unwrap_or(json!("")),
                },
            })),
            // Hosted tool calls (web search) happen upstream; their results
            // are in the message text.
            _ => {}
        }
    }
    let mut message = json!({ "role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) } });
    if !refusal.is_empty() {
        message["refusal"] = json!(refusal);
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning);
    }
    let finish = finish_reason(r, !calls.is_empty());
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let raw_usage = r.get("usage").cloned().unwrap_or(Value::Null);
    let body = json!({
        "id": r.get("id").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "created": r.get("created_at").cloned().unwrap_or(json!(0)),
        "model": r.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{ "index": 0, "message": message, "finish_reason": finish }],
        "usage": chat_usage(&raw_usage),
    });
    Ok((body, usage(&raw_usage)))
}

/// Responses SSE events → canonical chunks.
#[derive(Default)]
pub struct Events {
    id: Value,
    model: Value,
    created: Value,
    /// Output index of each tool call so far, in order (its chunk index).
    tool_items: Vec<u64>,
    done: bool,
    malformed: u64,
}

impl Events {
    fn chunk(&self, delta: Value, finish: Value) -> Value {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        })
    }

    fn tool_index(&self, data: &Value) -> Option<usize> {
        let output_index = data.get("output_index").and_then(Value::as_u64)?;
        self.tool_items.iter().position(|i| *i == output_index)
    }
}

impl Translate for Events {
    fn event(&mut self, event: &mut SseEvent) -> Result<Vec<Chunk>, UpstreamError> {
        let chunks = Events::event(self, event)?;
        Ok(chunks.into_iter().map(Chunk::from_value).collect())
    }

    fn finish(&mut self) -> Result<Vec<Chunk>, UpstreamError> {
        stream_end(self.done, "response.completed")
    }

    fn ended(&self) -> bool {
        self.done
    }

    fn malformed(&self) -> u64 {
        self.malformed
    }
}

impl Events {
    /// The chunks (as values) for one event; see [`Translate::event`].
    pub fn event(&mut self, event: &SseEvent) -> Result<Vec<Value>, UpstreamError> {
        let raw = event.data.trim();
        if raw.is_empty() || raw == "[DONE]" {
            return Ok(Vec::new());
        }
        let data = match serde_json::from_str::<Value>(raw) {
            Ok(data) if data.is_object() => data,
            _ => {
                self.malformed += 1;
                return Ok(Vec::new());
            }
        };
        let kind = data.get("type").and_then(Value::as_str).unwrap_or("");
        let text = |key: &str| {
            data.get(key)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        Ok(match kind {
            "response.created" => {
                let r = data.get("response").unwrap_or(&Value::Null);
                self.id = r.get("id").cloned().unwrap_or(Value::Null);
                self.model = r.get("model").cloned().unwrap_or(Value::Null);
                self.created = r.get("created_at").cloned().unwrap_or(json!(0));
                vec![self.chunk(json!({ "role": "assistant", "content": "" }), Value::Null)]
            }
            "response.output_text.delta" => {
                vec![self.chunk(json!({ "content": text("delta") }), Value::Null)]
            }
            "response.refusal.delta" => {
                vec![self.chunk(json!({ "refusal": text("delta") }), Value::Null)]
            }
            "response.reasoning_text.delta" | "response.reasoning_summary_text.delta" => {
                vec![self.chunk(json!({ "reasoning_content": text("delta") }), Value::Null)]
            }
            "response.output_item.added" => {
                let item = data.get("item").unwrap_or(&Value::Null);
                let kind = item.get("type").and_then(Value::as_str);
                if !matches!(kind, Some("function_call" | "custom_tool_call")) {
                    return Ok(Vec::new());
                }
                let index = self.tool_items.len();
                self.tool_items.push(
                    data.get("output_index")
                        .and_then(Value::as_u64)
                        .unwrap_or(u64::MAX),
                );
                let call = if kind == Some("custom_tool_call") {
                    json!({ "index": index, "id": item["call_id"], "type": "custom",
                            "custom": { "name": item["name"], "input": "" } })
                } else {
                    json!({ "index": index, "id": item["call_id"], "type": "function",
                            "function": { "name": item["name"], "arguments": "" } })
                };
                vec![self.chunk(json!({ "tool_calls": [call] }), Value::Null)]
            }
            "response.function_call_arguments.delta" | "response.custom_tool_call_input.delta" => {
                let Some(index) = self.tool_index(&data) else {
                    return Err(protocol("arguments for a tool call that was never started"));
                };
                let call = if kind == "response.custom_tool_call_input.delta" {
                    json!({ "index": index, "custom": { "input": text("delta") } })
                } else {
                    json!({ "index": index, "function": { "arguments": text("delta") } })
                };
                vec![self.chunk(json!({ "tool_calls": [call] }), Value::Null)]
            }
            "response.completed" | "response.incomplete" => {
                self.done = true;
                let r = data.get("response").unwrap_or(&Value::Null);
                let finish = finish_reason(r, !self.tool_items.is_empty());
                let mut usage_chunk = json!({
                    "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                    "model": self.model, "choices": [],
                });
                usage_chunk["usage"] = chat_usage(r.get("usage").unwrap_or(&Value::Null));
                vec![self.chunk(json!({}), json!(finish)), usage_chunk]
            }
            "response.failed" => {
                return Err(failure(data.get("response").unwrap_or(&Value::Null)));
            }
            "error" => {
                return Err(UpstreamError::new(
                    ErrorClass::Retryable,
                    Some(200),
                    data.get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("the provider reported an error mid-stream"),
                ));
            }
            _ => Vec::new(),
        })
    }
}

#[cfg(test)]
#[path = "responses_out_tests.rs"]
mod tests;
