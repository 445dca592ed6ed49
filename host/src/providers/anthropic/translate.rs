//! Translation between OpenAI Chat Completions (the gateway's canonical
//! shape) and the Anthropic Messages API. Pure functions: no I/O.
//!
//! # Request mapping ([`request`])
//!
//! * `system` and `developer` messages, wherever they appear, are hoisted into
//!   the top-level `system` string, joined with a blank line.
//! * `user`/`assistant` content (string or parts) becomes content blocks;
//!   empty text is dropped (Anthropic rejects empty text blocks). `image_url`
//!   parts become `image` blocks (`data:` URLs → base64 source, http(s) URLs →
//!   url source); `file` parts carrying a PDF data URL become `document`
//!   blocks. `cache_control` on a text or image part is passed through.
//! * Assistant `tool_calls` become `tool_use` blocks; `tool` messages become
//!   `tool_result` blocks in a user turn. Tool call ids are sanitised to
//!   Anthropic's `[A-Za-z0-9_-]` alphabet (other characters become `_`, the
//!   same way on both sides, so pairs still match).
//! * Consecutive turns of the same role are merged (Anthropic requires strict
//!   alternation); in a user turn `tool_result` blocks are moved first, as
//!   Anthropic requires.
//! * A conversation ending in an assistant turn is a prefill; its trailing
//!   whitespace is trimmed (Anthropic rejects it).
//! * `reasoning_content` on assistant history is dropped: Anthropic only
//!   accepts thinking blocks with the signature it issued.
//! * `max_completion_tokens` (preferred) / `max_tokens` → `max_tokens`,
//!   [`DEFAULT_MAX_TOKENS`] when absent. `temperature` is clamped to 0–1;
//!   when both `temperature` and `top_p` are given only `temperature` is sent
//!   (current Claude models reject both). `top_k` (a common extension) passes
//!   through. `stop` → `stop_sequences`, whitespace-only sequences dropped
//!   (Anthropic rejects them). `metadata.user_id`, else `safety_identifier`,
//!   else `user` → `metadata.user_id`.
//! * `reasoning_effort` → `thinking: {type: enabled, budget_tokens}` (minimal
//!   and low 1024, medium 4096, high 16384, xhigh 32768; `none` disables).
//!   If `max_tokens` would not exceed the budget it becomes budget +
//!   max_tokens, leaving the caller's amount for the visible answer. With
//!   thinking on, `temperature`, `top_p` and `top_k` are not sent (Anthropic
//!   rejects them). Thinking is left off when Anthropic would reject it: a
//!   forced tool choice (`required` / a named function), a prefill, or a last
//!   assistant turn with tool calls (its signed thinking blocks cannot be
//!   replayed from OpenAI-shaped history). Note: models that only accept
//!   adaptive thinking reject `type: enabled`.
//! * `response_format` `json_object` / `json_schema` is best effort: an
//!   instruction (with the schema) is appended to the system prompt; the
//!   output is not validated.
//! * `n` greater than 1 is an error (Anthropic returns one choice). Other
//!   unknown or unsupported fields (`seed`, penalties, `logit_bias`,
//!   `logprobs`, `stream_options`...) are ignored.
//!
//! # Response mapping ([`response`], [`StreamTranslator`])
//!
//! Text blocks are concatenated into `message.content` (null when the answer
//! is only tool calls); `tool_use` blocks become `tool_calls`; thinking is
//! exposed as `message.reasoning_content` (`delta.reasoning_content` when
//! streaming), the convention DeepSeek and others use; redacted thinking and
//! server-side tool blocks are dropped. Stop reasons: `end_turn`,
//! `stop_sequence`, `pause_turn` → `stop`; `max_tokens`,
//! `model_context_window_exceeded` → `length`; `tool_use` → `tool_calls`;
//! `refusal` → `content_filter`.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::providers::sse::SseEvent;
use crate::providers::{ErrorClass, UpstreamError, Usage};

/// `max_tokens` sent when the caller gives none (Anthropic requires one).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Longest raw error body kept in a message, in bytes.
const MAX_RAW_ERROR: usize = 1024;

/// A request that cannot be expressed for Anthropic, or an Anthropic answer
/// that cannot be read. The `Display` text is meant for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    #[error("`messages` must be a non-empty array")]
    MissingMessages,
    #[error("`messages` must contain at least one user or assistant message with content")]
    EmptyConversation,
    #[error("messages[{index}]: {reason}")]
    InvalidMessage { index: usize, reason: String },
    #[error(
        "messages[{index}]: tool call `{id}` has invalid `function.arguments` (expected a JSON object): {reason}"
    )]
    InvalidToolArguments {
        index: usize,
        id: String,
        reason: String,
    },
    #[error("`{field}`: {reason}")]
    InvalidField { field: String, reason: String },
    #[error("unexpected response from Anthropic: {0}")]
    InvalidResponse(String),
}

fn msg_err(index: usize, reason: impl Into<String>) -> TranslateError {
    TranslateError::InvalidMessage {
        index,
        reason: reason.into(),
    }
}

fn field_err(field: impl Into<String>, reason: impl Into<String>) -> TranslateError {
    TranslateError::InvalidField {
        field: field.into(),
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------

struct Turn {
    role: &'static str,
    content: Vec<Value>,
}

/// Translates an OpenAI Chat Completions body into an Anthropic Messages
/// request for `upstream_model`. See the module documentation for the rules.
pub fn request(
    body: &Map<String, Value>,
    upstream_model: &str,
    stream: bool,
) -> Result<Value, TranslateError> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or(TranslateError::MissingMessages)?;

    if let Some(n) = present(body, "n") {
        match n.as_u64() {
            Some(1) => {}
            Some(n) if n > 1 => {
                return Err(field_err(
                    "n",
                    "Anthropic models return a single choice; use n = 1",
                ));
            }
            _ => return Err(field_err("n", "must be a positive integer")),
        }
    }

    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let message = message
            .as_object()
            .ok_or_else(|| msg_err(index, "must be an object"))?;
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| msg_err(index, "`role` must be a string"))?;
        match role {
            "system" | "developer" => {
                let text = system_text(message.get("content"), index)?;
                if !text.is_empty() {
                    system.push(text);
                }
            }
            "user" => push_turn(
                &mut turns,
                "user",
                user_content(message.get("content"), index)?,
            ),
            "assistant" => push_turn(&mut turns, "assistant", assistant_content(message, index)?),
            "tool" => push_turn(&mut turns, "user", vec![tool_result(message, index)?]),
            other => {
                return Err(msg_err(
                    index,
                    format!(
                        "unsupported role `{other}` (expected system, developer, user, assistant or tool)"
                    ),
                ));
            }
        }
    }
    for turn in &mut turns {
        if turn.role == "user" {
            // Anthropic wants tool results before anything else in the turn.
            let (mut results, others): (Vec<Value>, Vec<Value>) = std::mem::take(&mut turn.content)
                .into_iter()
                .partition(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"));
            results.extend(others);
            turn.content = results;
        }
    }
    if turns.last().is_some_and(|t| t.role == "assistant") {
        trim_prefill(&mut turns);
    }
    let prefill = turns.last().is_some_and(|t| t.role == "assistant");
    if turns.is_empty() {
        return Err(TranslateError::EmptyConversation);
    }
    let last_assistant_used_tools = turns
        .iter()
        .rev()
        .find(|t| t.role == "assistant")
        .is_some_and(|t| {
            t.content
                .iter()
                .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
        });

    let mut out = Map::new();
    out.insert("model".into(), Value::from(upstream_model));

    // Tools and tool choice.
    let tools = tools(body)?;
    let has_tools = !tools.is_empty();
    if has_tools {
        out.insert("tools".into(), Value::Array(tools));
    }
    let tool_choice = if has_tools { tool_choice(body)? } else { None };
    let forced_tool = tool_choice
        .as_ref()
        .and_then(|c| c.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t == "any" || t == "tool");
    if let Some(choice) = tool_choice {
        out.insert("tool_choice".into(), choice);
    }

    // Thinking.
    let budget = match present(body, "reasoning_effort") {
        None => None,
        Some(effort) => thinking_budget(effort)?,
    };
    let budget = budget.filter(|_| !forced_tool && !prefill && !last_assistant_used_tools);

    // Token limit.
    let requested = match present(body, "max_completion_tokens") {
        Some(v) => Some(positive_int(v, "max_completion_tokens")?),
        None => match present(body, "max_tokens") {
            Some(v) => Some(positive_int(v, "max_tokens")?),
            None => None,
        },
    };
    let mut max_tokens = requested.unwrap_or(DEFAULT_MAX_TOKENS);
    if let Some(budget) = budget {
        if max_tokens <= budget {
            max_tokens = budget.saturating_add(max_tokens);
        }
        out.insert(
            "thinking".into(),
            json!({ "type": "enabled", "budget_tokens": budget }),
        );
    }
    out.insert("max_tokens".into(), Value::from(max_tokens));

    // Sampling.
    let temperature = present(body, "temperature")
        .map(|v| number(v, "temperature"))
        .transpose()?;
    let top_p = present(body, "top_p")
        .map(|v| number(v, "top_p"))
        .transpose()?;
    let top_k = match present(body, "top_k") {
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| field_err("top_k", "must be a non-negative integer"))?,
        ),
        None => None,
    };
    if budget.is_none() {
        if let Some(t) = temperature {
            out.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
        } else if let Some(p) = top_p {
            out.insert("top_p".into(), json!(p.clamp(0.0, 1.0)));
        }
        if let Some(k) = top_k {
            out.insert("top_k".into(), Value::from(k));
        }
    }

    let stops = stop_sequences(body)?;
    if !stops.is_empty() {
        out.insert("stop_sequences".into(), json!(stops));
    }

    if let Some(user) = user_id(body) {
        out.insert("metadata".into(), json!({ "user_id": user }));
    }

    if let Some(instruction) = response_format_instruction(body)? {
        system.push(instruction);
    }
    if !system.is_empty() {
        out.insert("system".into(), Value::from(system.join("\n\n")));
    }

    out.insert(
        "messages".into(),
        Value::Array(
            turns
                .into_iter()
                .map(|t| json!({ "role": t.role, "content": t.content }))
                .collect(),
        ),
    );
    out.insert("stream".into(), Value::Bool(stream));
    Ok(Value::Object(out))
}

/// A field's value unless absent or null.
fn present<'a>(body: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    body.get(key).filter(|v| !v.is_null())
}

fn positive_int(v: &Value, field: &str) -> Result<u64, TranslateError> {
    v.as_u64()
        .filter(|n| *n > 0)
        .ok_or_else(|| field_err(field, "must be a positive integer"))
}

fn number(v: &Value, field: &str) -> Result<f64, TranslateError> {
    v.as_f64()
        .filter(|n| n.is_finite())
        .ok_or_else(|| field_err(field, "must be a number"))
}

fn push_turn(turns: &mut Vec<Turn>, role: &'static str, content: Vec<Value>) {
    if content.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(last) if last.role == role => last.content.extend(content),
        _ => turns.push(Turn { role, content }),
    }
}

/// Removes trailing whitespace from a final assistant (prefill) turn, and
/// the turn itself if nothing is left.
fn trim_prefill(turns: &mut Vec<Turn>) {
    let Some(last) = turns.last_mut() else { return };
    if let Some(Value::Object(block)) = last.content.last_mut()
        && block.get("type").and_then(Value::as_str) == Some("text")
    {
        let trimmed = block
            .get("text")
            .and_then(Value::as_str)
            .map(|t| t.trim_end().to_owned())
            .unwrap_or_default();
        if trimmed.is_empty() {
            last.content.pop();
        } else {
            block.insert("text".into(), Value::String(trimmed));
        }
    }
    if last.content.is_empty() {
        turns.pop();
    }
}

/// The text of a system/developer message: a string or text parts.
fn system_text(content: Option<&Value>, index: usize) -> Result<String, TranslateError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                match part_type(part) {
                    Some("text") => text.push_str(part_text(part, index)?),
                    other => {
                        return Err(msg_err(
                            index,
                            format!(
                                "system and developer messages may only contain text parts, found `{}`",
                                other.unwrap_or("?")
                            ),
                        ));
                    }
                }
            }
            Ok(text)
        }
        Some(_) => Err(msg_err(
            index,
            "`content` must be a string or an array of parts",
        )),
    }
}

fn part_type(part: &Value) -> Option<&str> {
    part.get("type").and_then(Value::as_str)
}

fn part_text(part: &Value, index: usize) -> Result<&str, TranslateError> {
    part.get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| msg_err(index, "a text part must have a string `text`"))
}

fn text_block(text: &str, part: Option<&Value>) -> Option<Value> {
    if text.is_empty() {
        return None;
    }
    let mut block = json!({ "type": "text", "text": text });
    copy_cache_control(part, &mut block);
    Some(block)
}

fn copy_cache_control(part: Option<&Value>, block: &mut Value) {
    if let (Some(cc), Some(obj)) = (
        part.and_then(|p| p.get("cache_control"))
            .filter(|c| c.is_object()),
        block.as_object_mut(),
    ) {
        obj.insert("cache_control".into(), cc.clone());
    }
}

/// Content blocks of a user message (also used for tool results).
fn user_content(content: Option<&Value>, index: usize) -> Result<Vec<Value>, TranslateError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(text_block(s, None).into_iter().collect()),
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::new();
            for part in parts {
                match part_type(part) {
                    Some("text") => blocks.extend(text_block(part_text(part, index)?, Some(part))),
                    Some("image_url") => blocks.push(image_block(part, index)?),
                    Some("file") => blocks.push(file_block(part, index)?),
                    Some("input_audio") => {
                        return Err(msg_err(
                            index,
                            "audio input is not supported by Anthropic models",
                        ));
                    }
                    other => {
                        return Err(msg_err(
                            index,
                            format!("unsupported content part type `{}`", other.unwrap_or("?")),
                        ));
                    }
                }
            }
            Ok(blocks)
        }
        Some(_) => Err(msg_err(
            index,
            "`content` must be a string or an array of parts",
        )),
    }
}

const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// Splits a `data:` URL into (media type, base64 payload).
fn parse_data_url(url: &str) -> Option<(String, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let mut params = meta.split(';');
    let media_type = params.next()?.trim().to_ascii_lowercase();
    if !params.any(|p| p.trim().eq_ignore_ascii_case("base64")) {
        return None;
    }
    Some((media_type, data))
}

fn image_block(part: &Value, index: usize) -> Result<Value, TranslateError> {
    let url = match part.get("image_url") {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(obj) => obj.get("url").and_then(Value::as_str),
        None => None,
    }
    .ok_or_else(|| {
        msg_err(
            index,
            "an image_url part must have a string `image_url.url`",
        )
    })?;
    let source = if url.starts_with("data:") {
        let (mut media_type, data) = parse_data_url(url).ok_or_else(|| {
            msg_err(
                index,
                "image data URLs must be base64-encoded (data:<type>;base64,...)",
            )
        })?;
        if media_type == "image/jpg" {
            media_type = "image/jpeg".into();
        }
        if !IMAGE_TYPES.contains(&media_type.as_str()) {
            return Err(msg_err(
                index,
                format!("image type `{media_type}` is not supported (use JPEG, PNG, GIF or WebP)"),
            ));
        }
        json!({ "type": "base64", "media_type": media_type, "data": data })
    } else if url.starts_with("https://") || url.starts_with("http://") {
        json!({ "type": "url", "url": url })
    } else {
        return Err(msg_err(
            index,
            "image URLs must be http(s) or base64 data URLs",
        ));
    };
    let mut block = json!({ "type": "image", "source": source });
    copy_cache_control(Some(part), &mut block);
    Ok(block)
}

fn file_block(part: &Value, index: usize) -> Result<Value, TranslateError> {
    let file = part.get("file");
    let data = file
        .and_then(|f| f.get("file_data"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            msg_err(
                index,
                "file parts must carry inline `file.file_data` (uploaded file ids are not supported for Anthropic models)",
            )
        })?;
    let payload = if data.starts_with("data:") {
        match parse_data_url(data) {
            Some((media_type, payload)) if media_type == "application/pdf" => payload,
            _ => {
                return Err(msg_err(
                    index,
                    "only base64 PDF files (data:application/pdf;base64,...) are supported for Anthropic models",
                ));
            }
        }
    } else {
        // Bare base64, as some clients send: assumed to be a PDF.
        data
    };
    let mut block = json!({
        "type": "document",
        "source": { "type": "base64", "media_type": "application/pdf", "data": payload },
    });
    if let Some(name) = file.and_then(|f| f.get("filename")).and_then(Value::as_str)
        && let Some(obj) = block.as_object_mut()
    {
        obj.insert("title".into(), Value::from(name));
    }
    Ok(block)
}

/// Makes an id acceptable to Anthropic (`^[a-zA-Z0-9_-]+$`).
fn sanitize_id(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn assistant_content(
    message: &Map<String, Value>,
    index: usize,
) -> Result<Vec<Value>, TranslateError> {
    let mut blocks = Vec::new();
    match message.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => blocks.extend(text_block(s, None)),
        Some(Value::Array(parts)) => {
            for part in parts {
                match part_type(part) {
                    Some("text") => blocks.extend(text_block(part_text(part, index)?, Some(part))),
                    Some("refusal") => {
                        let text = part
                            .get("refusal")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        blocks.extend(text_block(text, None));
                    }
                    other => {
                        return Err(msg_err(
                            index,
                            format!(
                                "unsupported content part type `{}` in an assistant message",
                                other.unwrap_or("?")
                            ),
                        ));
                    }
                }
            }
        }
        Some(_) => {
            return Err(msg_err(
                index,
                "`content` must be a string or an array of parts",
            ));
        }
    }
    match message.get("tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(calls)) => {
            for call in calls {
                blocks.push(tool_use_block(call, index)?);
            }
        }
        Some(_) => return Err(msg_err(index, "`tool_calls` must be an array")),
    }
    Ok(blocks)
}

fn tool_use_block(call: &Value, index: usize) -> Result<Value, TranslateError> {
    let id = call
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| msg_err(index, "every tool call needs a non-empty string `id`"))?;
    if let Some(kind) = call.get("type").and_then(Value::as_str)
        && kind != "function"
    {
        return Err(msg_err(
            index,
            format!("tool call `{id}` has type `{kind}`; only function tool calls are supported"),
        ));
    }
    let function = call.get("function");
    let name = function
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| msg_err(index, format!("tool call `{id}` needs a `function.name`")))?;
    let input = match function.and_then(|f| f.get("arguments")) {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(s)) if s.trim().is_empty() => json!({}),
        Some(Value::String(s)) => {
            let parsed: Value =
                serde_json::from_str(s).map_err(|e| TranslateError::InvalidToolArguments {
                    index,
                    id: id.to_owned(),
                    reason: e.to_string(),
                })?;
            if !parsed.is_object() {
                return Err(TranslateError::InvalidToolArguments {
                    index,
                    id: id.to_owned(),
                    reason: "the JSON is not an object".into(),
                });
            }
            parsed
        }
        // Some clients send the arguments already decoded.
        Some(obj @ Value::Object(_)) => obj.clone(),
        Some(_) => {
            return Err(TranslateError::InvalidToolArguments {
                index,
                id: id.to_owned(),
                reason: "must be a JSON string".into(),
            });
        }
    };
    Ok(json!({ "type": "tool_use", "id": sanitize_id(id), "name": name, "input": input }))
}

fn tool_result(message: &Map<String, Value>, index: usize) -> Result<Value, TranslateError> {
    let id = message
        .get("tool_call_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            msg_err(
                index,
                "tool messages need a non-empty string `tool_call_id`",
            )
        })?;
    let mut block = json!({ "type": "tool_result", "tool_use_id": sanitize_id(id) });
    let content = match message.get("content") {
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(Value::from(s.as_str())),
        other => {
            let blocks = user_content(other, index)?;
            (!blocks.is_empty()).then_some(Value::Array(blocks))
        }
    };
    if let (Some(content), Some(obj)) = (content, block.as_object_mut()) {
        obj.insert("content".into(), content);
    }
    Ok(block)
}

fn tools(body: &Map<String, Value>) -> Result<Vec<Value>, TranslateError> {
    let Some(tools) = present(body, "tools") else {
        return Ok(Vec::new());
    };
    let tools = tools
        .as_array()
        .ok_or_else(|| field_err("tools", "must be an array"))?;
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let field = || format!("tools[{i}]");
        let kind = tool
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("function");
        if kind != "function" {
            return Err(field_err(
                field(),
                format!(
                    "tool type `{kind}` is not supported by Anthropic models (only `function`)"
                ),
            ));
        }
        let function = tool
            .get("function")
            .filter(|f| f.is_object())
            .ok_or_else(|| field_err(field(), "needs a `function` object"))?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| field_err(field(), "needs a non-empty `function.name`"))?;
        let mut schema = match function.get("parameters") {
            None | Some(Value::Null) => json!({ "type": "object", "properties": {} }),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(_) => {
                return Err(field_err(
                    field(),
                    "`function.parameters` must be a JSON Schema object",
                ));
            }
        };
        if let Some(obj) = schema.as_object_mut() {
            obj.entry("type").or_insert_with(|| Value::from("object"));
        }
        let mut t = Map::new();
        t.insert("name".into(), Value::from(name));
        if let Some(d) = function.get("description").and_then(Value::as_str) {
            t.insert("description".into(), Value::from(d));
        }
        t.insert("input_schema".into(), schema);
        out.push(Value::Object(t));
    }
    Ok(out)
}

fn tool_choice(body: &Map<String, Value>) -> Result<Option<Value>, TranslateError> {
    let mut choice = match present(body, "tool_choice") {
        None => None,
        Some(Value::String(s)) => match s.as_str() {
            "none" => Some(json!({ "type": "none" })),
            "auto" => Some(json!({ "type": "auto" })),
            "required" => Some(json!({ "type": "any" })),
            other => {
                return Err(field_err(
                    "tool_choice",
                    format!(
                        "unknown value `{other}` (expected none, auto, required or a function)"
                    ),
                ));
            }
        },
        Some(obj @ Value::Object(_)) => match obj.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = obj
                    .pointer("/function/name")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| field_err("tool_choice", "needs `function.name`"))?;
                Some(json!({ "type": "tool", "name": name }))
            }
            // `allowed_tools` and future forms: let the model choose.
            _ => None,
        },
        Some(_) => return Err(field_err("tool_choice", "must be a string or an object")),
    };
    if body.get("parallel_tool_calls") == Some(&Value::Bool(false)) {
        let c = choice.get_or_insert_with(|| json!({ "type": "auto" }));
        if c.get("type").and_then(Value::as_str) != Some("none")
            && let Some(obj) = c.as_object_mut()
        {
            obj.insert("disable_parallel_tool_use".into(), Value::Bool(true));
        }
    }
    Ok(choice)
}

fn thinking_budget(effort: &Value) -> Result<Option<u64>, TranslateError> {
    match effort.as_str() {
        Some("none") => Ok(None),
        Some("minimal") | Some("low") => Ok(Some(1024)),
        Some("medium") => Ok(Some(4096)),
        Some("high") => Ok(Some(16384)),
        Some("xhigh") => Ok(Some(32768)),
        _ => Err(field_err(
            "reasoning_effort",
            "must be one of none, minimal, low, medium, high, xhigh",
        )),
    }
}

fn stop_sequences(body: &Map<String, Value>) -> Result<Vec<String>, TranslateError> {
    let list: Vec<&str> = match present(body, "stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| field_err("stop", "must be a string or an array of strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(field_err("stop", "must be a string or an array of strings")),
    };
    Ok(list
        .into_iter()
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
        .collect())
}

fn user_id(body: &Map<String, Value>) -> Option<&str> {
    body.get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
        .or_else(|| body.get("safety_identifier").and_then(Value::as_str))
        .or_else(|| body.get("user").and_then(Value::as_str))
        .filter(|s| !s.is_empty())
}

const JSON_ONLY: &str =
    "Do not wrap it in Markdown code fences and do not add any text before or after it.";

fn response_format_instruction(
    body: &Map<String, Value>,
) -> Result<Option<String>, TranslateError> {
    let Some(format) = present(body, "response_format") else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("json_object") => Ok(Some(format!(
            "Respond only with a single valid JSON object. {JSON_ONLY}"
        ))),
        Some("json_schema") => {
            let spec = format.get("json_schema");
            let schema = spec.and_then(|s| s.get("schema")).filter(|s| !s.is_null());
            let name = spec.and_then(|s| s.get("name")).and_then(Value::as_str);
            Ok(Some(match schema {
                Some(schema) => {
                    let named = name.map(|n| format!(" (named `{n}`)")).unwrap_or_default();
                    format!(
                        "Respond only with a single valid JSON value that conforms to this JSON Schema{named}:\n{schema}\n{JSON_ONLY}"
                    )
                }
                None => format!("Respond only with a single valid JSON value. {JSON_ONLY}"),
            }))
        }
        Some("text") | None => Ok(None),
        Some(other) => Err(field_err(
            "response_format",
            format!("unsupported type `{other}` (expected text, json_object or json_schema)"),
        )),
    }
}

// ---------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------

/// Maps an Anthropic `stop_reason` to an OpenAI `finish_reason`.
pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn, and anything new.
        _ => "stop",
    }
}

/// Token counts as Anthropic reports them.
#[derive(Debug, Clone, Copy, Default)]
struct RawUsage {
    input: u64,
    output: u64,
    cache_read: u64,
    cache_creation: u64,
}

impl RawUsage {
    /// Overwrites the counts present in an Anthropic `usage` object.
    fn update(&mut self, usage: Option<&Value>) {
        let Some(usage) = usage else { return };
        let get = |k: &str| usage.get(k).and_then(Value::as_u64);
        if let Some(n) = get("input_tokens") {
            self.input = n;
        }
        if let Some(n) = get("output_tokens") {
            self.output = n;
        }
        if let Some(n) = get("cache_read_input_tokens") {
            self.cache_read = n;
        }
        if let Some(n) = get("cache_creation_input_tokens") {
            self.cache_creation = n;
        }
    }

    fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self
                .input
                .saturating_add(self.cache_read)
                .saturating_add(self.cache_creation),
            completion_tokens: self.output,
            cached_tokens: self.cache_read,
        }
    }
}

/// Translates an Anthropic `message` into an OpenAI `chat.completion`
/// reporting `model`, created at `created` (Unix seconds).
pub fn response(body: &Value, model: &str, created: u64) -> Result<(Value, Usage), TranslateError> {
    if body.get("type").and_then(Value::as_str) == Some("error") {
        let message = body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("error without a message");
        return Err(TranslateError::InvalidResponse(format!(
            "error body: {message}"
        )));
    }
    let blocks = body
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::InvalidResponse("no `content` array".into()))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(
                block
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            ),
            Some("thinking") => reasoning.push_str(
                block
                    .get("thinking")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            ),
            Some("tool_use") => {
                let id = block.get("id").and_then(Value::as_str);
                let name = block.get("name").and_then(Value::as_str);
                let (Some(id), Some(name)) = (id, name) else {
                    return Err(TranslateError::InvalidResponse(
                        "a tool_use block without `id` or `name`".into(),
                    ));
                };
                let arguments = match block.get("input") {
                    None | Some(Value::Null) => "{}".to_owned(),
                    Some(input) => input.to_string(),
                };
                tool_calls.push(json!({
                    "id": id,
                    "type": "function",
                    "function": { "name": name, "arguments": arguments },
                }));
            }
            // redacted_thinking, server tool blocks and future block types.
            _ => {}
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), Value::from("assistant"));
    let content = if text.is_empty() && !tool_calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    message.insert("content".into(), content);
    if !reasoning.is_empty() {
        message.insert("reasoning_content".into(), Value::String(reasoning));
    }
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    let mut raw = RawUsage::default();
    raw.update(body.get("usage"));
    let usage = raw.usage();
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("chatcmpl-anthropic");
    let completion = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": Value::Object(message),
            "logprobs": null,
            "finish_reason": finish_reason(body.get("stop_reason").and_then(Value::as_str)),
        }],
        "usage": usage.to_openai(),
    });
    Ok((completion, usage))
}

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Block {
    Text,
    Thinking,
    /// A tool_use block and its ordinal among the message's tool calls.
    Tool(usize),
    Other,
}

/// Turns Anthropic stream events into OpenAI `chat.completion.chunk`s.
#[derive(Debug)]
pub struct StreamTranslator {
    id: String,
    model: String,
    created: u64,
    started: bool,
    finished: bool,
    blocks: HashMap<u64, Block>,
    tool_calls: usize,
    usage: RawUsage,
}

impl StreamTranslator {
    /// Chunks will carry this `id`, `model` and `created` (Unix seconds).
    pub fn new(id: String, model: String, created: u64) -> Self {
        Self {
            id,
            model,
            created,
            started: false,
            finished: false,
            blocks: HashMap::new(),
            tool_calls: 0,
            usage: RawUsage::default(),
        }
    }

    /// Translates one SSE event. An `error` event becomes a classified
    /// [`UpstreamError`]; data that is not a JSON object is a protocol error.
    pub fn event(&mut self, event: &SseEvent) -> Result<Vec<Value>, UpstreamError> {
        let data: Value = serde_json::from_str(&event.data).map_err(|e| {
            UpstreamError::new(
                ErrorClass::Protocol,
                None,
                format!("malformed Anthropic stream event: {e}"),
            )
        })?;
        if !data.is_object() {
            return Err(UpstreamError::new(
                ErrorClass::Protocol,
                None,
                "malformed Anthropic stream event: not a JSON object",
            ));
        }
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .or(event.event.as_deref())
            .unwrap_or_default();
        let mut out = Vec::new();
        match kind {
            "message_start" => {
                self.usage.update(data.pointer("/message/usage"));
                self.start(&mut out);
            }
            "content_block_start" => {
                let index = block_index(&data)?;
                let block = data.get("content_block");
                let block_type = block.and_then(|b| b.get("type")).and_then(Value::as_str);
                let text_of = |k: &str| {
                    block
                        .and_then(|b| b.get(k))
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                };
                match block_type {
                    Some("text") => {
                        self.blocks.insert(index, Block::Text);
                        if let Some(text) = text_of("text") {
                            self.start(&mut out);
                            out.push(self.chunk(json!({ "content": text }), None));
                        }
                    }
                    Some("thinking") => {
                        self.blocks.insert(index, Block::Thinking);
                        if let Some(text) = text_of("thinking") {
                            self.start(&mut out);
                            out.push(self.chunk(json!({ "reasoning_content": text }), None));
                        }
                    }
                    Some("tool_use") => {
                        let ordinal = self.tool_calls;
                        self.tool_calls += 1;
                        self.blocks.insert(index, Block::Tool(ordinal));
                        let id = text_of("id").unwrap_or_default();
                        let name = text_of("name").unwrap_or_default();
                        self.start(&mut out);
                        out.push(self.chunk(
                            json!({ "tool_calls": [{
                                "index": ordinal,
                                "id": id,
                                "type": "function",
                                "function": { "name": name, "arguments": "" },
                            }] }),
                            None,
                        ));
                    }
                    _ => {
                        self.blocks.insert(index, Block::Other);
                    }
                }
            }
            "content_block_delta" => {
                let index = block_index(&data)?;
                let block = self.blocks.get(&index).copied();
                let delta = data.get("delta");
                let delta_type = delta.and_then(|d| d.get("type")).and_then(Value::as_str);
                let field = |k: &str| {
                    delta
                        .and_then(|d| d.get(k))
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                };
                match (delta_type, block) {
                    (Some("text_delta"), Some(Block::Text) | None) => {
                        if let Some(text) = field("text") {
                            self.start(&mut out);
                            out.push(self.chunk(json!({ "content": text }), None));
                        }
                    }
                    (Some("thinking_delta"), Some(Block::Thinking) | None) => {
                        if let Some(text) = field("thinking") {
                            self.start(&mut out);
                            out.push(self.chunk(json!({ "reasoning_content": text }), None));
                        }
                    }
                    (Some("input_json_delta"), Some(Block::Tool(ordinal))) => {
                        if let Some(partial) = field("partial_json") {
                            self.start(&mut out);
                            out.push(self.chunk(
                                json!({ "tool_calls": [{
                                    "index": ordinal,
                                    "function": { "arguments": partial },
                                }] }),
                                None,
                            ));
                        }
                    }
                    // signature_delta, citations_delta, server tool input...
                    _ => {}
                }
            }
            "message_delta" => {
                self.usage.update(data.get("usage"));
                if let Some(stop) = data.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.start(&mut out);
                    out.push(self.chunk(json!({}), Some(finish_reason(Some(stop)))));
                }
            }
            "message_stop" => self.finished = true,
            "error" => return Err(stream_error(&data)),
            // ping, content_block_stop and future events.
            _ => {}
        }
        Ok(out)
    }

    /// Usage so far: input and cache counts from `message_start` (updated by
    /// `message_delta` when it reports them), output from `message_delta`.
    pub fn usage(&self) -> Usage {
        self.usage.usage()
    }

    /// The final chunk for `stream_options.include_usage`.
    pub fn usage_chunk(&self) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": self.usage().to_openai(),
        })
    }

    /// Whether `message_stop` was seen.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Emits the role chunk once, before anything else.
    fn start(&mut self, out: &mut Vec<Value>) {
        if !self.started {
            self.started = true;
            out.push(self.chunk(json!({ "role": "assistant", "content": "" }), None));
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish_reason,
            }],
        })
    }
}

fn block_index(data: &Value) -> Result<u64, UpstreamError> {
    data.get("index").and_then(Value::as_u64).ok_or_else(|| {
        UpstreamError::new(
            ErrorClass::Protocol,
            None,
            "malformed Anthropic stream event: content block event without `index`",
        )
    })
}

/// Classifies an in-stream `error` event.
fn stream_error(data: &Value) -> UpstreamError {
    let kind = data.pointer("/error/type").and_then(Value::as_str);
    let message = data
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Anthropic stream error ({})", kind.unwrap_or("unknown")));
    let class = match kind {
        Some("rate_limit_error") => ErrorClass::RateLimited { retry_after: None },
        // overloaded_error, api_error and anything else mid-stream.
        _ => ErrorClass::Retryable,
    };
    UpstreamError::new(class, None, message)
}

// ---------------------------------------------------------------------------
// Error bodies
// ---------------------------------------------------------------------------

/// The `error.message` of an Anthropic error body, else the raw text
/// (truncated to 1 KiB).
pub fn error_message(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(body)
        && let Some(message) = value.pointer("/error/message").and_then(Value::as_str)
    {
        return message.to_owned();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "empty error response".to_owned();
    }
    let mut end = text.len().min(MAX_RAW_ERROR);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The `error.type` of an Anthropic error body (`overloaded_error`,
/// `rate_limit_error`, `invalid_request_error`...).
pub fn error_type(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(body)
        .ok()?
        .pointer("/error/type")?
        .as_str()
        .map(str::to_owned)
}

/// Classifies an Anthropic HTTP error answer: [`UpstreamError::from_status`]
/// with Anthropic's message, refined by the error type — `overloaded_error`
/// is retryable and `rate_limit_error` rate-limited whatever the status, and
/// `billing_error` or a "credit balance is too low" refusal (sent as a 400)
/// means quota exhausted.
pub fn upstream_error(status: u16, retry_after: Option<Duration>, body: &[u8]) -> UpstreamError {
    let message = error_message(body);
    let mut error = UpstreamError::from_status(status, retry_after, message);
    match error_type(body).as_deref() {
        Some("overloaded_error") => error.class = ErrorClass::Retryable,
        Some("rate_limit_error") => error.class = ErrorClass::RateLimited { retry_after },
        Some("billing_error") => error.class = ErrorClass::QuotaExhausted,
        _ if error
            .message
            .to_ascii_lowercase()
            .contains("credit balance") =>
        {
            error.class = ErrorClass::QuotaExhausted
        }
        _ => {}
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
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
        let out =
            req(json!({ "messages": [user("a"), { "role": "assistant", "content": "{ \n" }] }));
        assert_eq!(
            out["messages"][1],
            json!({ "role": "assistant", "content": [{ "type": "text", "text": "{" }] })
        );
        let out =
            req(json!({ "messages": [user("a"), { "role": "assistant", "content": "  \n" }] }));
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
            req_err(json!({ "messages": "hi" })),
            TranslateError::MissingMessages
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
        for (messages, index) in [
            (json!([42]), 0),
            (json!([user("a"), { "content": "x" }]), 1),
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
                json!([user("a"), { "role": "assistant", "tool_calls": "x" }]),
                1,
            ),
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
        for tools in [
            json!("x"),
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
            with_tool(
                json!({ "tool_choice": { "type": "function", "function": { "name": "f" } } })
            )["tool_choice"],
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
            let mut b = body(json!({ "messages": [user("q")] }));
            b.extend(body(extra));
            request(&b, "m", false)
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
        for bad in [
            json!({ "max_tokens": 0 }),
            json!({ "max_tokens": -1 }),
            json!({ "max_tokens": "10" }),
            json!({ "max_completion_tokens": 1.5 }),
        ] {
            assert!(matches!(m(bad), Err(TranslateError::InvalidField { .. })));
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
        assert!(matches!(
            req_err(json!({ "messages": [user("q")], "temperature": "hot" })),
            TranslateError::InvalidField { .. }
        ));
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
        assert!(matches!(
            req_err(json!({ "messages": [user("q")], "stop": [1] })),
            TranslateError::InvalidField { .. }
        ));
        assert!(matches!(
            req_err(json!({ "messages": [user("q")], "stop": 1 })),
            TranslateError::InvalidField { .. }
        ));
    }

    #[test]
    fn user_id_mapping() {
        assert_eq!(
            req(json!({ "messages": [user("q")], "user": "u1" }))["metadata"],
            json!({ "user_id": "u1" })
        );
        assert_eq!(
            req(json!({ "messages": [user("q")], "user": "u1", "metadata": { "user_id": "m1" } }))
                ["metadata"],
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
        assert!(matches!(
            req_err(json!({ "messages": [user("q")], "reasoning_effort": "max" })),
            TranslateError::InvalidField { .. }
        ));
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
            let _ = request(&body(json!({ "messages": [v] })), "m", false);
            let _ = request(
                &body(
                    json!({ "messages": [user("q")], "tools": v, "tool_choice": v, "stop": v,
                                          "response_format": v, "reasoning_effort": v, "metadata": v, "max_tokens": v }),
                ),
                "m",
                true,
            );
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
}
