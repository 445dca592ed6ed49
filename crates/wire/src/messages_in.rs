//! The Anthropic Messages API on the way in: a Messages body translated into
//! the canonical request, so OpenAI providers can serve it as well as
//! Anthropic, and canonical answers written back as Anthropic messages and,
//! when streaming, as Anthropic's SSE events.

use serde_json::{Map, Value, json};

use crate::error::RequestError;
use crate::new_id;
use crate::request::CanonicalRequest;
use crate::sse;
use crate::stream::{StreamEncoder, keep_routing_info};

/// Top-level fields the Messages API accepts here (`service_tier` is accepted
/// and ignored; `routing` is Switchyard's own).
const ACCEPTED: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
    "metadata",
    "output_format",
    "service_tier",
    "routing",
];

fn invalid(param: &str, message: impl Into<String>) -> RequestError {
    RequestError::invalid(param, format!("{param}: {}", message.into()))
}

fn unsupported(param: &str, message: impl Into<String>) -> RequestError {
    RequestError::unsupported(param, format!("{param}: {}", message.into()))
}

fn required_str<'a>(v: &'a Value, key: &str, param: &str) -> Result<&'a str, RequestError> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(&format!("{param}.{key}"), "Field required (a string)"))
}

/// Anthropic's `cache_control` carried onto a canonical content part (the
/// Anthropic adapter puts it back).
fn with_cache_control(mut part: Value, block: &Value) -> Value {
    if let Some(cc) = block.get("cache_control").filter(|c| !c.is_null()) {
        part["cache_control"] = cc.clone();
    }
    part
}

/// An image or document block as a canonical content part.
fn media_part(block: &Value, param: &str) -> Result<Value, RequestError> {
    let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
    let source = block
        .get("source")
        .ok_or_else(|| invalid(&format!("{param}.source"), "Field required"))?;
    let source_type = required_str(source, "type", &format!("{param}.source"))?;
    let part = match (kind, source_type) {
        ("image", "base64") => {
            let media = required_str(source, "media_type", &format!("{param}.source"))?;
            let data = required_str(source, "data", &format!("{param}.source"))?;
            json!({ "type": "image_url", "image_url": { "url": format!("data:{media};base64,{data}") } })
        }
        ("image", "url") => {
            let url = required_str(source, "url", &format!("{param}.source"))?;
            json!({ "type": "image_url", "image_url": { "url": url } })
        }
        ("document", "base64") => {
            let media = required_str(source, "media_type", &format!("{param}.source"))?;
            let data = required_str(source, "data", &format!("{param}.source"))?;
            let name = block
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or("document.pdf");
            json!({ "type": "file", "file": { "file_data": format!("data:{media};base64,{data}"), "filename": name } })
        }
        ("document", "text") => {
            let data = required_str(source, "data", &format!("{param}.source"))?;
            json!({ "type": "text", "text": data })
        }
        _ => {
            return Err(unsupported(
                &format!("{param}.source.type"),
                format!("a {kind} source of type `{source_type}` is not supported"),
            ));
        }
    };
    Ok(with_cache_control(part, block))
}

/// The content of a `tool_result` block as a canonical tool message content.
fn tool_result_content(block: &Value, param: &str) -> Result<Value, RequestError> {
    let error = block.get("is_error").and_then(Value::as_bool) == Some(true);
    let content = match block.get("content") {
        None | Some(Value::Null) => json!(""),
        Some(Value::String(s)) => json!(s),
        Some(Value::Array(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for (i, p) in parts.iter().enumerate() {
                let p_param = format!("{param}.content.{i}");
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => out.push(
                        json!({ "type": "text", "text": required_str(p, "text", &p_param)? }),
                    ),
                    Some("image" | "document") => out.push(media_part(p, &p_param)?),
                    _ => {
                        return Err(unsupported(
                            &p_param,
                            "tool results may hold text, image and document blocks",
                        ));
                    }
                }
            }
            // Text-only results become a plain string, which every provider takes.
            if out.iter().all(|p| p["type"] == "text") {
                json!(
                    out.iter()
                        .filter_map(|p| p["text"].as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            } else {
                Value::Array(out)
            }
        }
        Some(_) => {
            return Err(invalid(
                &format!("{param}.content"),
                "must be a string or an array of blocks",
            ));
        }
    };
    // OpenAI tool messages have no error flag: say it in the text.
    Ok(match (error, content) {
        (true, Value::String(s)) => json!(format!("Error: {s}")),
        (_, content) => content,
    })
}

/// One Anthropic message as canonical messages (a user turn's tool results
/// become tool messages ahead of the rest of it).
fn message(m: &Value, index: usize, out: &mut Vec<Value>) -> Result<(), RequestError> {
    let param = format!("messages.{index}");
    let role = match m.get("role").and_then(Value::as_str) {
        Some(role @ ("user" | "assistant")) => role,
        _ => {
            return Err(invalid(
                &format!("{param}.role"),
                "Input should be 'user' or 'assistant'",
            ));
        }
    };
    let blocks = match m.get("content") {
        Some(Value::String(text)) => {
            out.push(json!({ "role": role, "content": text }));
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks,
        _ => {
            return Err(invalid(
                &format!("{param}.content"),
                "Field required (a string or an array of content blocks)",
            ));
        }
    };
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let b_param = format!("{param}.content.{i}");
        let kind = required_str(block, "type", &b_param)?;
        match (role, kind) {
            ("user", "text") => parts.push(with_cache_control(
                json!({ "type": "text", "text": required_str(block, "text", &b_param)? }),
                block,
            )),
            ("user", "image" | "document") => parts.push(media_part(block, &b_param)?),
            ("user", "tool_result") => out.push(json!({
                "role": "tool",
                "tool_call_id": required_str(block, "tool_use_id", &b_param)?,
                "content": tool_result_content(block, &b_param)?,
            })),
            ("assistant", "text") => text.push_str(required_str(block, "text", &b_param)?),
            ("assistant", "tool_use") => {
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                tool_calls.push(json!({
                    "id": required_str(block, "id", &b_param)?,
                    "type": "function",
                    "function": {
                        "name": required_str(block, "name", &b_param)?,
                        "arguments": input.to_string(),
                    },
                }));
            }
            // Earlier reasoning and server tool traffic: the canonical
            // conversation has no place for them; the model sees the answers.
            (
                "assistant",
                "thinking" | "redacted_thinking" | "server_tool_use" | "web_search_tool_result",
            ) => {}
            _ => {
                return Err(unsupported(
                    &format!("{b_param}.type"),
                    format!("a `{kind}` block is not supported in a {role} message"),
                ));
            }
        }
    }
    if role == "assistant" {
        let mut msg = json!({ "role": "assistant", "content": text });
        if !tool_calls.is_empty() {
            msg["tool_calls"] = Value::Array(tool_calls);
            if text.is_empty() {
                msg["content"] = Value::Null;
            }
        }
        out.push(msg);
    } else if !parts.is_empty() {
        out.push(json!({ "role": "user", "content": parts }));
    }
    Ok(())
}

/// Anthropic's approximate location as OpenAI's.
fn user_location(loc: &Value) -> Value {
    let mut approx = Map::new();
    for key in ["city", "region", "country", "timezone"] {
        if let Some(v) = loc.get(key).filter(|v| !v.is_null()) {
            approx.insert(key.into(), v.clone());
        }
    }
    json!({ "type": "approximate", "approximate": approx })
}

fn tools(tools: &Value, out: &mut Map<String, Value>) -> Result<(), RequestError> {
    let Value::Array(tools) = tools else {
        return Err(invalid("tools", "Input should be a valid list"));
    };
    let mut chat_tools = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let param = format!("tools.{i}");
        match tool.get("type").and_then(Value::as_str) {
            None | Some("custom") => {
                let mut function = Map::new();
                function.insert("name".into(), json!(required_str(tool, "name", &param)?));
                if let Some(d) = tool.get("description").filter(|d| d.is_string()) {
                    function.insert("description".into(), d.clone());
                }
                let schema = tool
                    .get("input_schema")
                    .filter(|s| s.is_object())
                    .ok_or_else(|| {
                        invalid(
                            &format!("{param}.input_schema"),
                            "Field required (an object)",
                        )
                    })?;
                function.insert("parameters".into(), schema.clone());
                chat_tools.push(json!({ "type": "function", "function": function }));
            }
            Some(kind) if kind.starts_with("web_search") => {
                let mut options = Map::new();
                if let Some(loc) = tool.get("user_location").filter(|l| l.is_object()) {
                    options.insert("user_location".into(), user_location(loc));
                }
                out.insert("web_search_options".into(), Value::Object(options));
            }
            Some(kind) => {
                return Err(unsupported(
                    &format!("{param}.type"),
                    format!(
                        "tool type `{kind}` is not supported: Switchyard supports client tools and web search"
                    ),
                ));
            }
        }
    }
    if !chat_tools.is_empty() {
        out.insert("tools".into(), Value::Array(chat_tools));
    }
    Ok(())
}

fn tool_choice(choice: &Value, out: &mut Map<String, Value>) -> Result<(), RequestError> {
    let kind = required_str(choice, "type", "tool_choice")?;
    let canonical = match kind {
        "auto" => json!("auto"),
        "any" => json!("required"),
        "none" => json!("none"),
        "tool" => json!({
            "type": "function",
            "function": { "name": required_str(choice, "name", "tool_choice")? },
        }),
        _ => {
            return Err(invalid(
                "tool_choice.type",
                "Input should be 'auto', 'any', 'tool' or 'none'",
            ));
        }
    };
    out.insert("tool_choice".into(), canonical);
    if let Some(disable) = choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
    {
        out.insert("parallel_tool_calls".into(), json!(!disable));
    }
    Ok(())
}

/// A thinking budget as the nearest reasoning effort (the inverse of the
/// Anthropic adapter's effort → budget table: low 1024, medium 4096, high
/// 16384, xhigh 32768).
fn effort_for_budget(budget: u64) -> &'static str {
    match budget {
        0..2048 => "low",
        2048..8192 => "medium",
        8192..24576 => "high",
        _ => "xhigh",
    }
}

fn thinking(thinking: &Value, out: &mut Map<String, Value>) -> Result<(), RequestError> {
    match required_str(thinking, "type", "thinking")? {
        "enabled" => {
            let budget = thinking
                .get("budget_tokens")
                .and_then(Value::as_u64)
                .filter(|b| *b >= 1024)
                .ok_or_else(|| {
                    invalid(
                        "thinking.budget_tokens",
                        "Input should be an integer of at least 1024",
                    )
                })?;
            out.insert("reasoning_effort".into(), json!(effort_for_budget(budget)));
        }
        // The model decides how much to think: the middle level.
        "adaptive" => {
            out.insert("reasoning_effort".into(), json!("medium"));
        }
        "disabled" => {}
        _ => {
            return Err(invalid(
                "thinking.type",
                "Input should be 'enabled', 'adaptive' or 'disabled'",
            ));
        }
    }
    Ok(())
}

/// Translates an Anthropic Messages body into the canonical body.
pub fn to_canonical(body: &Map<String, Value>) -> Result<CanonicalRequest, RequestError> {
    CanonicalRequest::from_map(canonical_map(body)?)
}

fn canonical_map(body: &Map<String, Value>) -> Result<Map<String, Value>, RequestError> {
    if let Some(key) = body.keys().find(|k| !ACCEPTED.contains(&k.as_str())) {
        return Err(RequestError::unknown(
            key,
            format!("{key}: Extra inputs are not permitted"),
        ));
    }
    let mut out = Map::new();
    for key in [
        "model",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "routing",
    ] {
        if let Some(v) = body.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), v.clone());
        }
    }
    let max_tokens = body
        .get("max_tokens")
        .and_then(Value::as_u64)
        .filter(|n| *n >= 1)
        .ok_or_else(|| invalid("max_tokens", "Field required (an integer of at least 1)"))?;
    out.insert("max_completion_tokens".into(), json!(max_tokens));

    let mut messages = Vec::new();
    match body.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(json!({ "role": "system", "content": s })),
        Some(Value::Array(blocks)) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (i, b) in blocks.iter().enumerate() {
                let param = format!("system.{i}");
                if b.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(invalid(&param, "system blocks must be text blocks"));
                }
                parts.push(with_cache_control(
                    json!({ "type": "text", "text": required_str(b, "text", &param)? }),
                    b,
                ));
            }
            messages.push(json!({ "role": "system", "content": parts }));
        }
        Some(_) => {
            return Err(invalid(
                "system",
                "Input should be a string or a list of text blocks",
            ));
        }
    }
    let Some(Value::Array(input)) = body.get("messages") else {
        return Err(invalid("messages", "Field required (a list of messages)"));
    };
    if input.is_empty() {
        return Err(invalid("messages", "at least one message is required"));
    }
    for (i, m) in input.iter().enumerate() {
        message(m, i, &mut messages)?;
    }
    out.insert("messages".into(), Value::Array(messages));

    if let Some(t) = body.get("tools").filter(|v| !v.is_null()) {
        tools(t, &mut out)?;
    }
    if let Some(c) = body.get("tool_choice").filter(|v| !v.is_null()) {
        tool_choice(c, &mut out)?;
    }
    if let Some(t) = body.get("thinking").filter(|v| !v.is_null()) {
        thinking(t, &mut out)?;
    }
    match body.get("stop_sequences") {
        None | Some(Value::Null) => {}
        Some(Value::Array(stops)) if stops.iter().all(Value::is_string) => {
            if !stops.is_empty() {
                out.insert("stop".into(), Value::Array(stops.clone()));
            }
        }
        Some(_) => {
            return Err(invalid(
                "stop_sequences",
                "Input should be a list of strings",
            ));
        }
    }
    if let Some(user) = body
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        out.insert("user".into(), json!(user));
    }
    if let Some(format) = body.get("output_format").filter(|v| !v.is_null()) {
        if format.get("type").and_then(Value::as_str) != Some("json_schema") {
            return Err(invalid(
                "output_format.type",
                "Input should be 'json_schema'",
            ));
        }
        let schema = format
            .get("schema")
            .filter(|s| s.is_object())
            .ok_or_else(|| invalid("output_format.schema", "Field required (an object)"))?;
        out.insert(
            "response_format".into(),
            json!({ "type": "json_schema", "json_schema": { "name": "output", "schema": schema, "strict": true } }),
        );
    }
    Ok(out)
}

/// What a Messages answer needs from its request.
pub struct Echo {
    id: String,
}

/// Anthropic's stop reason for an OpenAI finish reason.
fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// An Anthropic `usage` object from an OpenAI one (Anthropic's
/// `input_tokens` leaves out the cached ones).
fn usage(chat: &Value) -> Value {
    let get = |p: &str| chat.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let cached = get("/prompt_tokens_details/cached_tokens");
    json!({
        "input_tokens": get("/prompt_tokens").saturating_sub(cached),
        "output_tokens": get("/completion_tokens"),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    })
}

/// A tool call's arguments as a JSON object (a model's malformed arguments
/// are kept as a string under `_raw`, so nothing is lost).
fn tool_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({ "_raw": arguments }),
    }
}

fn content_blocks(message: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(r) = message
        .get("reasoning_content")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        out.push(json!({ "type": "thinking", "thinking": r, "signature": "" }));
    }
    for key in ["content", "refusal"] {
        if let Some(t) = message
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            out.push(json!({ "type": "text", "text": t }));
        }
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let arguments = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("");
        out.push(json!({
            "type": "tool_use",
            "id": call.get("id").cloned().unwrap_or(Value::Null),
            "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
            "input": tool_input(arguments),
        }));
    }
    out
}

/// Anthropic's error `type` for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

/// The content block being streamed.
enum Open {
    Text,
    Thinking,
    Tool(u64),
}

/// Chat chunks → Anthropic events: `message_start`, per block
/// `content_block_start` / `content_block_delta` (text_delta, thinking_delta,
/// input_json_delta) / `content_block_stop`, then `message_delta` with the
/// stop reason and usage and `message_stop` — or an `error` event if the
/// upstream broke.
struct Encoder {
    id: String,
    started: bool,
    next_index: u64,
    open: Option<Open>,
    finish_reason: Option<String>,
    usage: Value,
    switchyard: Option<Value>,
}

fn event(out: &mut Vec<u8>, kind: &str, mut data: Value) {
    data["type"] = json!(kind);
    out.extend_from_slice(sse::encode(Some(kind), &data.to_string()).as_bytes());
}

impl Encoder {
    fn start(&mut self, out: &mut Vec<u8>, model: Option<&Value>) {
        if self.started {
            return;
        }
        self.started = true;
        let mut message = json!({
            "id": self.id, "type": "message", "role": "assistant",
            "model": model.cloned().unwrap_or(Value::Null),
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": { "input_tokens": 0, "output_tokens": 0 },
        });
        if let Some(info) = &self.switchyard {
            message["switchyard"] = info.clone();
        }
        event(out, "message_start", json!({ "message": message }));
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if self.open.take().is_some() {
            event(
                out,
                "content_block_stop",
                json!({ "index": self.next_index - 1 }),
            );
        }
    }

    fn begin(&mut self, out: &mut Vec<u8>, open: Open, block: Value) {
        self.close(out);
        event(
            out,
            "content_block_start",
            json!({ "index": self.next_index, "content_block": block }),
        );
        self.next_index += 1;
        self.open = Some(open);
    }

    fn delta(&mut self, out: &mut Vec<u8>, delta: Value) {
        event(
            out,
            "content_block_delta",
            json!({ "index": self.next_index - 1, "delta": delta }),
        );
    }
}

impl StreamEncoder for Encoder {
    fn chunk(&mut self, chunk: crate::chunk::Chunk, out: &mut Vec<u8>) {
        // Translated: read into a value.
        let chunk = chunk.into_value();
        keep_routing_info(&mut self.switchyard, &chunk);
        self.start(out, chunk.get("model"));
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = usage.clone();
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return;
        };
        if let Some(delta) = choice.get("delta") {
            let text = |key: &str| {
                delta
                    .get(key)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            };
            if let Some(r) = text("reasoning_content") {
                if !matches!(self.open, Some(Open::Thinking)) {
                    self.begin(
                        out,
                        Open::Thinking,
                        json!({ "type": "thinking", "thinking": "", "signature": "" }),
                    );
                }
                self.delta(out, json!({ "type": "thinking_delta", "thinking": r }));
            }
            for t in [text("content"), text("refusal")].into_iter().flatten() {
                if !matches!(self.open, Some(Open::Text)) {
                    self.begin(out, Open::Text, json!({ "type": "text", "text": "" }));
                }
                self.delta(out, json!({ "type": "text_delta", "text": t }));
            }
            for call in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                if !matches!(self.open, Some(Open::Tool(i)) if i == index) {
                    self.begin(
                        out,
                        Open::Tool(index),
                        json!({
                            "type": "tool_use",
                            "id": call.get("id").cloned().unwrap_or(Value::Null),
                            "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
                            "input": {},
                        }),
                    );
                }
                if let Some(args) = call
                    .pointer("/function/arguments")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                {
                    self.delta(
                        out,
                        json!({ "type": "input_json_delta", "partial_json": args }),
                    );
                }
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(f.to_string());
        }
    }

    fn done(&mut self, out: &mut Vec<u8>) {
        self.start(out, None);
        self.close(out);
        let mut data = json!({
            "delta": { "stop_reason": stop_reason(self.finish_reason.as_deref()), "stop_sequence": null },
            "usage": usage(&self.usage),
        });
        if let Some(info) = &self.switchyard {
            data["switchyard"] = info.clone();
        }
        event(out, "message_delta", data);
        event(out, "message_stop", json!({}));
    }

    fn error(&mut self, message: &str, out: &mut Vec<u8>) {
        self.start(out, None);
        event(
            out,
            "error",
            json!({ "error": { "type": "api_error", "message": message } }),
        );
    }
}

impl Echo {
    /// A new message id.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Echo {
        Echo { id: new_id("msg") }
    }
}

/// The answer to a non-streamed request, from the canonical completion.
pub fn complete(body: Value, echo: Echo) -> Value {
    let message = body.pointer("/choices/0/message").unwrap_or(&Value::Null);
    let finish = body
        .pointer("/choices/0/finish_reason")
        .and_then(Value::as_str);
    let mut out = json!({
        "id": echo.id,
        "type": "message",
        "role": "assistant",
        "model": body.get("model").cloned().unwrap_or(Value::Null),
        "content": content_blocks(message),
        "stop_reason": stop_reason(finish),
        "stop_sequence": null,
        "usage": usage(body.get("usage").unwrap_or(&Value::Null)),
    });
    if let Some(info) = body.get("switchyard") {
        out["switchyard"] = info.clone();
    }
    out
}

/// The encoder of a streamed answer.
pub fn encoder(echo: Echo) -> Box<dyn StreamEncoder> {
    Box::new(Encoder {
        id: echo.id,
        started: false,
        next_index: 0,
        open: None,
        finish_reason: None,
        usage: Value::Null,
        switchyard: None,
    })
}
