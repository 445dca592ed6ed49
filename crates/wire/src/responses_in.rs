//! The OpenAI Responses API on the way in: a Responses body translated into
//! the canonical request (Chat Completions shape), and canonical answers
//! written back as Responses objects and, when streaming, as the Responses
//! SSE events.
//!
//! Switchyard keeps no state between requests: `previous_response_id`,
//! `conversation`, stored prompts and background mode are refused with a
//! clear error, and `store` is accepted but nothing is stored.

use serde_json::{Map, Value, json};

use crate::content_text;
use crate::error::RequestError;
use crate::new_id;
use crate::request::CanonicalRequest;
use crate::sse;
use crate::stream::{StreamEncoder, keep_routing_info};

/// Parameters passed on into the canonical request under the same name.
const SAME_NAME: &[&str] = &[
    "model",
    "temperature",
    "top_p",
    "parallel_tool_calls",
    "prompt_cache_key",
    "prompt_cache_retention",
    "metadata",
    "user",
    "safety_identifier",
    "service_tier",
    "stream",
    "routing",
];

/// Parameters with their own translation, and ones accepted and ignored
/// (`store`: nothing is stored; `stream_options`: obfuscation is not done;
/// `truncation`: the whole input is always sent).
const TRANSLATED: &[&str] = &[
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "text",
    "reasoning",
    "include",
    "max_output_tokens",
    "store",
    "stream_options",
    "truncation",
];

/// Parameters of the Responses API that need state or services Switchyard
/// does not have, with the reason given to the caller.
const REFUSED: &[(&str, &str)] = &[
    (
        "previous_response_id",
        "Switchyard does not store responses: send the whole conversation in `input`.",
    ),
    (
        "conversation",
        "Switchyard does not store conversations: send the whole conversation in `input`.",
    ),
    (
        "background",
        "Background responses are not supported: send the request without `background`.",
    ),
    (
        "prompt",
        "Stored prompt templates are not supported: send `instructions` and `input` instead.",
    ),
    (
        "top_logprobs",
        "`top_logprobs` is not supported on /v1/responses.",
    ),
    (
        "max_tool_calls",
        "`max_tool_calls` is not supported on /v1/responses.",
    ),
];

fn invalid(param: &str, message: impl Into<String>) -> RequestError {
    RequestError::invalid(param, message)
}

fn unsupported(param: &str, message: impl Into<String>) -> RequestError {
    RequestError::unsupported(param, message)
}

fn string_of<'a>(v: &'a Value, param: &str) -> Result<&'a str, RequestError> {
    v.as_str()
        .ok_or_else(|| invalid(param, format!("`{param}` must be a string")))
}

/// A content part of an input message, as a Chat Completions part.
fn content_part(part: &Value, param: &str) -> Result<Option<Value>, RequestError> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    Ok(Some(match kind {
        "input_text" | "output_text" | "text" => {
            let text = part
                .get("text")
                .ok_or_else(|| invalid(param, format!("`{param}.text` is required")))?;
            json!({ "type": "text", "text": string_of(text, &format!("{param}.text"))? })
        }
        // A refusal the model gave earlier: nothing to send back.
        "refusal" => return Ok(None),
        "input_image" => {
            if part.get("file_id").is_some_and(|f| !f.is_null()) {
                return Err(unsupported(
                    param,
                    "images by `file_id` need OpenAI's file storage: send `image_url` (an https or data: URL) instead",
                ));
            }
            let url = part
                .get("image_url")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(param, format!("`{param}.image_url` is required")))?;
            let mut image = json!({ "url": url });
            if let Some(detail) = part.get("detail").filter(|d| d.is_string()) {
                image["detail"] = detail.clone();
            }
            json!({ "type": "image_url", "image_url": image })
        }
        "input_file" => {
            let Some(data) = part.get("file_data").and_then(Value::as_str) else {
                return Err(unsupported(
                    param,
                    "files must be sent inline as `file_data` (a data: URL); `file_id` and `file_url` are not supported",
                ));
            };
            let mut file = json!({ "file_data": data });
            if let Some(name) = part.get("filename").filter(|n| n.is_string()) {
                file["filename"] = name.clone();
            }
            json!({ "type": "file", "file": file })
        }
        other => {
            return Err(unsupported(
                param,
                format!("content part type `{other}` is not supported"),
            ));
        }
    }))
}

/// The content of an input message: a string stays a string.
fn message_content(content: &Value, param: &str) -> Result<Value, RequestError> {
    match content {
        Value::String(_) => Ok(content.clone()),
        Value::Array(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (i, part) in parts.iter().enumerate() {
                if let Some(p) = content_part(part, &format!("{param}[{i}]"))? {
                    out.push(p);
                }
            }
            Ok(Value::Array(out))
        }
        _ => Err(invalid(
            param,
            format!("`{param}` must be a string or an array of content parts"),
        )),
    }
}

/// Appends a tool call to the assistant turn just before it, or starts one.
fn push_tool_call(messages: &mut Vec<Value>, call: Value) {
    if let Some(last) = messages.last_mut()
        && last.get("role").and_then(Value::as_str) == Some("assistant")
    {
        match last.get_mut("tool_calls") {
            Some(Value::Array(calls)) => calls.push(call),
            _ => last["tool_calls"] = json!([call]),
        }
        return;
    }
    messages.push(json!({ "role": "assistant", "content": null, "tool_calls": [call] }));
}

fn required_str<'a>(item: &'a Value, key: &str, param: &str) -> Result<&'a str, RequestError> {
    item.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(param, format!("`{param}.{key}` must be a string")))
}

/// The `input` items as Chat Completions messages.
fn input_messages(input: &Value, messages: &mut Vec<Value>) -> Result<(), RequestError> {
    let items = match input {
        Value::String(text) => {
            messages.push(json!({ "role": "user", "content": text }));
            return Ok(());
        }
        Value::Array(items) => items,
        _ => {
            return Err(invalid(
                "input",
                "`input` must be a string or an array of input items",
            ));
        }
    };
    for (i, item) in items.iter().enumerate() {
        let param = format!("input[{i}]");
        let kind = match item.get("type").and_then(Value::as_str) {
            Some(kind) => kind,
            None if item.get("role").is_some() => "message",
            None => {
                return Err(invalid(&param, format!("`{param}` must have a `type`")));
            }
        };
        match kind {
            "message" => {
                let role = required_str(item, "role", &param)?;
                let content = item
                    .get("content")
                    .ok_or_else(|| invalid(&param, format!("`{param}.content` is required")))?;
                let content_param = format!("{param}.content");
                match role {
                    "user" | "system" | "developer" => messages.push(json!({
                        "role": role,
                        "content": message_content(content, &content_param)?,
                    })),
                    "assistant" => {
                        message_content(content, &content_param)?;
                        // Chat Completions takes an assistant turn as a string.
                        let text = content_text(content);
                        messages.push(json!({ "role": "assistant", "content": text }));
                    }
                    other => {
                        return Err(invalid(
                            &format!("{param}.role"),
                            format!(
                                "role `{other}` must be one of user, assistant, system, developer"
                            ),
                        ));
                    }
                }
            }
            "function_call" => push_tool_call(
                messages,
                json!({
                    "id": required_str(item, "call_id", &param)?,
                    "type": "function",
                    "function": {
                        "name": required_str(item, "name", &param)?,
                        "arguments": required_str(item, "arguments", &param)?,
                    },
                }),
            ),
            "custom_tool_call" => push_tool_call(
                messages,
                json!({
                    "id": required_str(item, "call_id", &param)?,
                    "type": "custom",
                    "custom": {
                        "name": required_str(item, "name", &param)?,
                        "input": required_str(item, "input", &param)?,
                    },
                }),
            ),
            "function_call_output" | "custom_tool_call_output" => {
                let output = item
                    .get("output")
                    .ok_or_else(|| invalid(&param, format!("`{param}.output` is required")))?;
                messages.push(json!({
                    "role": "tool",
                    "tool_call_id": required_str(item, "call_id", &param)?,
                    "content": message_content(output, &format!("{param}.output"))?,
                }));
            }
            // Reasoning and hosted tool calls from an earlier answer: the
            // canonical conversation has no place for them; the model sees the
            // answers they led to.
            "reasoning" | "web_search_call" => {}
            "item_reference" => {
                return Err(unsupported(
                    &param,
                    "Switchyard does not store items: send the item itself instead of a reference",
                ));
            }
            other => {
                return Err(unsupported(
                    &param,
                    format!("input item type `{other}` is not supported"),
                ));
            }
        }
    }
    Ok(())
}

fn is_web_search(kind: &str) -> bool {
    kind.starts_with("web_search")
}

/// Responses tools as Chat Completions tools (web search becomes
/// `web_search_options`).
fn tools(tools: &Value, out: &mut Map<String, Value>) -> Result<(), RequestError> {
    let Value::Array(tools) = tools else {
        return Err(invalid("tools", "`tools` must be an array"));
    };
    let mut chat_tools = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let param = format!("tools[{i}]");
        let kind = required_str(tool, "type", &param)?;
        match kind {
            "function" => {
                let mut function = Map::new();
                function.insert("name".into(), json!(required_str(tool, "name", &param)?));
                for key in ["description", "parameters", "strict"] {
                    if let Some(v) = tool.get(key).filter(|v| !v.is_null()) {
                        function.insert(key.into(), v.clone());
                    }
                }
                chat_tools.push(json!({ "type": "function", "function": function }));
            }
            "custom" => {
                let mut custom = Map::new();
                custom.insert("name".into(), json!(required_str(tool, "name", &param)?));
                for key in ["description", "format"] {
                    if let Some(v) = tool.get(key).filter(|v| !v.is_null()) {
                        custom.insert(key.into(), v.clone());
                    }
                }
                chat_tools.push(json!({ "type": "custom", "custom": custom }));
            }
            kind if is_web_search(kind) => {
                let mut options = Map::new();
                for key in ["search_context_size", "user_location"] {
                    if let Some(v) = tool.get(key).filter(|v| !v.is_null()) {
                        options.insert(key.into(), v.clone());
                    }
                }
                out.insert("web_search_options".into(), Value::Object(options));
            }
            other => {
                return Err(unsupported(
                    &param,
                    format!(
                        "tool type `{other}` is not supported: Switchyard supports function, custom and web_search tools"
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

fn tool_choice(choice: &Value) -> Result<Value, RequestError> {
    match choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => {
            Ok(choice.clone())
        }
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("function") => Ok(json!({
                "type": "function",
                "function": { "name": required_str(choice, "name", "tool_choice")? },
            })),
            Some("custom") => Ok(json!({
                "type": "custom",
                "custom": { "name": required_str(choice, "name", "tool_choice")? },
            })),
            // Forcing the hosted web search tool: the nearest is "a tool must
            // be called".
            Some(kind) if is_web_search(kind) => Ok(json!("required")),
            _ => Err(unsupported(
                "tool_choice",
                "`tool_choice` must be auto, none, required, or a function or custom tool by name",
            )),
        },
        _ => Err(invalid(
            "tool_choice",
            "`tool_choice` must be auto, none, required, or an object",
        )),
    }
}

/// `text.format` as a Chat Completions `response_format`.
fn response_format(format: &Value) -> Result<Option<Value>, RequestError> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({ "type": "json_object" }))),
        Some("json_schema") => {
            let mut schema = Map::new();
            schema.insert(
                "name".into(),
                json!(required_str(format, "name", "text.format")?),
            );
            let body = format
                .get("schema")
                .filter(|s| s.is_object())
                .ok_or_else(|| {
                    invalid(
                        "text.format.schema",
                        "`text.format.schema` must be an object",
                    )
                })?;
            schema.insert("schema".into(), body.clone());
            for key in ["strict", "description"] {
                if let Some(v) = format.get(key).filter(|v| !v.is_null()) {
                    schema.insert(key.into(), v.clone());
                }
            }
            Ok(Some(
                json!({ "type": "json_schema", "json_schema": schema }),
            ))
        }
        _ => Err(invalid(
            "text.format.type",
            "`text.format.type` must be text, json_schema or json_object",
        )),
    }
}

/// Translates a Responses API body into the canonical (Chat Completions)
/// body.
pub fn to_canonical(body: &Map<String, Value>) -> Result<CanonicalRequest, RequestError> {
    CanonicalRequest::from_map(canonical_map(body)?)
}

fn canonical_map(body: &Map<String, Value>) -> Result<Map<String, Value>, RequestError> {
    for (key, value) in body {
        if SAME_NAME.contains(&key.as_str()) || TRANSLATED.contains(&key.as_str()) {
            continue;
        }
        if let Some((_, why)) = REFUSED.iter().find(|(k, _)| k == key) {
            if value.is_null() || value == &Value::Bool(false) {
                continue;
            }
            return Err(unsupported(key, *why));
        }
        return Err(RequestError::unknown(
            key,
            format!("Unknown parameter: '{key}'."),
        ));
    }
    let mut out = Map::new();
    for key in SAME_NAME {
        if let Some(v) = body.get(*key).filter(|v| !v.is_null()) {
            out.insert((*key).into(), v.clone());
        }
    }
    let mut messages = Vec::new();
    if let Some(instructions) = body.get("instructions").filter(|v| !v.is_null()) {
        messages.push(json!({
            "role": "system",
            "content": string_of(instructions, "instructions")?,
        }));
    }
    let input = body
        .get("input")
        .ok_or_else(|| invalid("input", "you must provide `input`"))?;
    input_messages(input, &mut messages)?;
    out.insert("messages".into(), Value::Array(messages));
    if let Some(t) = body.get("tools").filter(|v| !v.is_null()) {
        tools(t, &mut out)?;
    }
    if let Some(choice) = body.get("tool_choice").filter(|v| !v.is_null()) {
        out.insert("tool_choice".into(), tool_choice(choice)?);
    }
    if let Some(text) = body.get("text").filter(|v| !v.is_null()) {
        if !text.is_object() {
            return Err(invalid("text", "`text` must be an object"));
        }
        if let Some(format) = text.get("format").filter(|v| !v.is_null())
            && let Some(f) = response_format(format)?
        {
            out.insert("response_format".into(), f);
        }
        if let Some(v) = text.get("verbosity").filter(|v| !v.is_null()) {
            out.insert("verbosity".into(), v.clone());
        }
    }
    if let Some(effort) = body
        .get("reasoning")
        .and_then(|r| r.get("effort"))
        .filter(|v| !v.is_null())
    {
        let level = string_of(effort, "reasoning.effort")?;
        let effort = crate::Effort::parse(level).ok_or_else(|| {
            invalid(
                "reasoning.effort",
                format!("unknown reasoning effort `{level}` (expected none, minimal, low, medium, high or xhigh)"),
            )
        })?;
        out.insert("reasoning_effort".into(), json!(effort));
    }
    if let Some(include) = body.get("include").filter(|v| !v.is_null()) {
        if !include.is_array() {
            return Err(invalid("include", "`include` must be an array of strings"));
        }
        out.insert("include".into(), include.clone());
    }
    if let Some(max) = body.get("max_output_tokens").filter(|v| !v.is_null()) {
        if max.as_u64().is_none_or(|n| n == 0) {
            return Err(invalid(
                "max_output_tokens",
                "`max_output_tokens` must be a positive integer",
            ));
        }
        out.insert("max_completion_tokens".into(), max.clone());
    }
    Ok(out)
}

/// What a Responses answer echoes from its request.
pub struct Echo {
    id: String,
    created_at: u64,
    /// The request's parameters echoed in the response object.
    params: Map<String, Value>,
}

/// Request parameters a response object repeats, with their defaults.
fn echoed(body: &Map<String, Value>) -> Map<String, Value> {
    let defaults = [
        ("instructions", Value::Null),
        ("max_output_tokens", Value::Null),
        ("parallel_tool_calls", json!(true)),
        ("temperature", Value::Null),
        ("top_p", Value::Null),
        ("tool_choice", json!("auto")),
        ("tools", json!([])),
        ("text", json!({ "format": { "type": "text" } })),
        ("reasoning", json!({ "effort": null, "summary": null })),
        ("metadata", json!({})),
        ("prompt_cache_key", Value::Null),
        ("user", Value::Null),
        ("truncation", json!("disabled")),
    ];
    let mut out = Map::new();
    for (key, default) in defaults {
        let v = body.get(key).filter(|v| !v.is_null()).cloned();
        out.insert(key.into(), v.unwrap_or(default));
    }
    out.insert("store".into(), json!(false));
    out
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A Responses `usage` object from an OpenAI one.
fn usage(chat: &Value) -> Value {
    let get = |p: &str| chat.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let input = get("/prompt_tokens");
    let output = get("/completion_tokens");
    json!({
        "input_tokens": input,
        "input_tokens_details": { "cached_tokens": get("/prompt_tokens_details/cached_tokens") },
        "output_tokens": output,
        "output_tokens_details": { "reasoning_tokens": get("/completion_tokens_details/reasoning_tokens") },
        "total_tokens": input + output,
    })
}

/// `completed`, or `incomplete` with its reason, from a finish reason.
fn status(finish_reason: Option<&str>) -> (&'static str, Value) {
    match finish_reason {
        Some("length") => ("incomplete", json!({ "reason": "max_output_tokens" })),
        Some("content_filter") => ("incomplete", json!({ "reason": "content_filter" })),
        _ => ("completed", Value::Null),
    }
}

/// The response object around `output`.
fn response_object(
    echo: &Echo,
    model: &Value,
    status: &str,
    incomplete: Value,
    output: Vec<Value>,
    usage: Value,
) -> Value {
    let mut r = Map::new();
    r.insert("id".into(), json!(echo.id));
    r.insert("object".into(), json!("response"));
    r.insert("created_at".into(), json!(echo.created_at));
    r.insert("status".into(), json!(status));
    r.insert("error".into(), Value::Null);
    r.insert("incomplete_details".into(), incomplete);
    r.insert("model".into(), model.clone());
    r.insert("output".into(), Value::Array(output));
    r.insert("usage".into(), usage);
    for (k, v) in &echo.params {
        r.insert(k.clone(), v.clone());
    }
    Value::Object(r)
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({
        "id": id, "type": "message", "status": status, "role": "assistant",
        "content": [{ "type": "output_text", "text": text, "annotations": [], "logprobs": [] }],
    })
}

fn reasoning_item(id: &str, text: &str) -> Value {
    json!({
        "id": id, "type": "reasoning", "summary": [],
        "content": [{ "type": "reasoning_text", "text": text }],
    })
}

fn tool_call_item(call: &Value, status: &str) -> Value {
    let id = call.get("id").cloned().unwrap_or(Value::Null);
    if call.get("type").and_then(Value::as_str) == Some("custom") {
        return json!({
            "id": new_id("ctc"), "type": "custom_tool_call", "status": status,
            "call_id": id,
            "name": call.pointer("/custom/name").cloned().unwrap_or(Value::Null),
            "input": call.pointer("/custom/input").cloned().unwrap_or(json!("")),
        });
    }
    json!({
        "id": new_id("fc"), "type": "function_call", "status": status,
        "call_id": id,
        "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
        "arguments": call.pointer("/function/arguments").cloned().unwrap_or(json!("")),
    })
}

/// The output items of a canonical assistant message.
fn output_items(message: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(reasoning) = message
        .get("reasoning_content")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        out.push(reasoning_item(&new_id("rs"), reasoning));
    }
    let text = message.get("content").and_then(Value::as_str).unwrap_or("");
    let refusal = message.get("refusal").and_then(Value::as_str);
    if let Some(refusal) = refusal.filter(|r| !r.is_empty()) {
        out.push(json!({
            "id": new_id("msg"), "type": "message", "status": "completed", "role": "assistant",
            "content": [{ "type": "refusal", "refusal": refusal }],
        }));
    } else if !text.is_empty() {
        out.push(message_item(&new_id("msg"), text, "completed"));
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push(tool_call_item(call, "completed"));
    }
    out
}

/// The output item being streamed.
enum Open {
    Text { id: String, text: String },
    Reasoning { id: String, text: String },
    Tool { index: u64, item: Value },
}

/// Chat chunks → Responses events: `response.created`, `response.in_progress`,
/// per output item `response.output_item.added` … `response.output_item.done`
/// (text through `response.content_part.added`, `response.output_text.delta`,
/// `response.output_text.done`, `response.content_part.done`; function calls
/// through `response.function_call_arguments.delta` / `.done`), then
/// `response.completed` (or `response.failed` if the upstream broke).
struct Encoder {
    echo: Echo,
    sequence: u64,
    started: bool,
    model: Value,
    /// Finished output items.
    output: Vec<Value>,
    open: Option<Open>,
    finish_reason: Option<String>,
    usage: Value,
    switchyard: Option<Value>,
}

impl Encoder {
    fn emit(&mut self, out: &mut Vec<u8>, kind: &str, mut event: Value) {
        event["type"] = json!(kind);
        event["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        out.extend_from_slice(sse::encode(Some(kind), &event.to_string()).as_bytes());
    }

    fn response(&self, status: &str, incomplete: Value, usage: Value) -> Value {
        let mut r = response_object(
            &self.echo,
            &self.model,
            status,
            incomplete,
            self.output.clone(),
            usage,
        );
        if let Some(info) = &self.switchyard {
            r["switchyard"] = info.clone();
        }
        r
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self.response("in_progress", Value::Null, Value::Null);
        self.emit(out, "response.created", json!({ "response": response }));
        self.emit(out, "response.in_progress", json!({ "response": response }));
    }

    fn output_index(&self) -> usize {
        self.output.len()
    }

    /// Finishes the open item, if any.
    fn close(&mut self, out: &mut Vec<u8>) {
        let index = self.output_index();
        match self.open.take() {
            None => {}
            Some(Open::Text { id, text }) => {
                let part = json!({ "type": "output_text", "text": text, "annotations": [], "logprobs": [] });
                self.emit(
                    out,
                    "response.output_text.done",
                    json!({ "item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": [] }),
                );
                self.emit(
                    out,
                    "response.content_part.done",
                    json!({ "item_id": id, "output_index": index, "content_index": 0, "part": part }),
                );
                let item = message_item(&id, &text, "completed");
                self.emit(
                    out,
                    "response.output_item.done",
                    json!({ "output_index": index, "item": item }),
                );
                self.output.push(item);
            }
            Some(Open::Reasoning { id, text }) => {
                let item = reasoning_item(&id, &text);
                self.emit(
                    out,
                    "response.output_item.done",
                    json!({ "output_index": index, "item": item }),
                );
                self.output.push(item);
            }
            Some(Open::Tool { mut item, .. }) => {
                item["status"] = json!("completed");
                let id = item["id"].clone();
                if item["type"] == "function_call" {
                    self.emit(
                        out,
                        "response.function_call_arguments.done",
                        json!({ "item_id": id, "output_index": index, "arguments": item["arguments"], "name": item["name"] }),
                    );
                } else {
                    self.emit(
                        out,
                        "response.custom_tool_call_input.done",
                        json!({ "item_id": id, "output_index": index, "input": item["input"] }),
                    );
                }
                self.emit(
                    out,
                    "response.output_item.done",
                    json!({ "output_index": index, "item": item }),
                );
                self.output.push(item);
            }
        }
    }

    fn reasoning(&mut self, out: &mut Vec<u8>, delta: &str) {
        if !matches!(self.open, Some(Open::Reasoning { .. })) {
            self.close(out);
            let id = new_id("rs");
            let item = json!({ "id": id, "type": "reasoning", "summary": [], "content": [] });
            let index = self.output_index();
            self.emit(
                out,
                "response.output_item.added",
                json!({ "output_index": index, "item": item }),
            );
            self.open = Some(Open::Reasoning {
                id,
                text: String::new(),
            });
        }
        let index = self.output_index();
        if let Some(Open::Reasoning { id, text }) = &mut self.open {
            text.push_str(delta);
            let id = id.clone();
            self.emit(
                out,
                "response.reasoning_text.delta",
                json!({ "item_id": id, "output_index": index, "content_index": 0, "delta": delta }),
            );
        }
    }

    fn text(&mut self, out: &mut Vec<u8>, delta: &str) {
        if !matches!(self.open, Some(Open::Text { .. })) {
            self.close(out);
            let id = new_id("msg");
            let index = self.output_index();
            let item = json!({ "id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": [] });
            self.emit(
                out,
                "response.output_item.added",
                json!({ "output_index": index, "item": item }),
            );
            self.emit(
                out,
                "response.content_part.added",
                json!({ "item_id": id, "output_index": index, "content_index": 0,
                        "part": { "type": "output_text", "text": "", "annotations": [], "logprobs": [] } }),
            );
            self.open = Some(Open::Text {
                id,
                text: String::new(),
            });
        }
        let index = self.output_index();
        if let Some(Open::Text { id, text }) = &mut self.open {
            text.push_str(delta);
            let id = id.clone();
            self.emit(
                out,
                "response.output_text.delta",
                json!({ "item_id": id, "output_index": index, "content_index": 0, "delta": delta, "logprobs": [] }),
            );
        }
    }

    fn tool_call(&mut self, out: &mut Vec<u8>, call: &Value) {
        let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let same = matches!(&self.open, Some(Open::Tool { index: i, .. }) if *i == index);
        if !same {
            self.close(out);
            let mut item = tool_call_item(call, "in_progress");
            // Arguments arrive as deltas.
            if item["type"] == "function_call" {
                item["arguments"] = json!("");
            } else {
                item["input"] = json!("");
            }
            let output_index = self.output_index();
            self.emit(
                out,
                "response.output_item.added",
                json!({ "output_index": output_index, "item": item }),
            );
            self.open = Some(Open::Tool { index, item });
        }
        let (key, piece) = match call.pointer("/function/arguments").and_then(Value::as_str) {
            Some(args) => ("arguments", args),
            None => (
                "input",
                call.pointer("/custom/input")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            ),
        };
        if piece.is_empty() {
            return;
        }
        let output_index = self.output_index();
        let Some(Open::Tool { item, .. }) = &mut self.open else {
            return;
        };
        match &mut item[key] {
            Value::String(so_far) => so_far.push_str(piece),
            other => *other = json!(piece),
        }
        let id = item["id"].clone();
        let kind = if key == "arguments" {
            "response.function_call_arguments.delta"
        } else {
            "response.custom_tool_call_input.delta"
        };
        self.emit(
            out,
            kind,
            json!({ "item_id": id, "output_index": output_index, "delta": piece }),
        );
    }
}

impl StreamEncoder for Encoder {
    fn chunk(&mut self, chunk: crate::chunk::Chunk, out: &mut Vec<u8>) {
        // Translated: read into a value.
        let chunk = chunk.into_value();
        if self.model.is_null()
            && let Some(model) = chunk.get("model")
        {
            self.model = model.clone();
        }
        keep_routing_info(&mut self.switchyard, &chunk);
        self.start(out);
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = usage.clone();
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return;
        };
        if let Some(delta) = choice.get("delta") {
            if let Some(r) = delta
                .get("reasoning_content")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                self.reasoning(out, r);
            }
            if let Some(t) = delta
                .get("content")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                self.text(out, t);
            }
            if let Some(r) = delta
                .get("refusal")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                self.text(out, r);
            }
            for call in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                self.tool_call(out, call);
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(f.to_string());
        }
    }

    fn done(&mut self, out: &mut Vec<u8>) {
        self.start(out);
        self.close(out);
        let (status, incomplete) = status(self.finish_reason.as_deref());
        let response = self.response(status, incomplete, usage(&self.usage));
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.emit(out, kind, json!({ "response": response }));
    }

    fn error(&mut self, message: &str, out: &mut Vec<u8>) {
        self.start(out);
        self.close(out);
        let mut response = self.response("failed", Value::Null, usage(&self.usage));
        response["error"] = json!({ "code": "server_error", "message": message });
        self.emit(out, "response.failed", json!({ "response": response }));
    }
}

impl Echo {
    /// What the answer to `body` (the caller's Responses body) will echo,
    /// under a new response id.
    pub fn new(body: &Map<String, Value>) -> Echo {
        Echo {
            id: new_id("resp"),
            created_at: now(),
            params: echoed(body),
        }
    }
}

/// The answer to a non-streamed request, from the canonical completion.
pub fn complete(body: Value, echo: Echo) -> Value {
    let message = body.pointer("/choices/0/message").unwrap_or(&Value::Null);
    let (status, incomplete) = status(
        body.pointer("/choices/0/finish_reason")
            .and_then(Value::as_str),
    );
    let mut out = response_object(
        &echo,
        body.get("model").unwrap_or(&Value::Null),
        status,
        incomplete,
        output_items(message),
        usage(body.get("usage").unwrap_or(&Value::Null)),
    );
    if let Some(info) = body.get("switchyard") {
        out["switchyard"] = info.clone();
    }
    out
}

/// The encoder of a streamed answer.
pub fn encoder(echo: Echo) -> Box<dyn StreamEncoder> {
    Box::new(Encoder {
        echo,
        sequence: 0,
        started: false,
        model: Value::Null,
        output: Vec::new(),
        open: None,
        finish_reason: None,
        usage: Value::Null,
        switchyard: None,
    })
}
