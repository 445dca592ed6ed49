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

use crate::feature::Effort;
use crate::request::{CanonicalRequest, Message, ToolChoice};
use crate::sse::SseEvent;
use crate::{ErrorClass, UpstreamError, Usage};

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
    body: &CanonicalRequest,
    upstream_model: &str,
    stream: bool,
) -> Result<Value, TranslateError> {
    let messages = &body.messages;
    if messages.is_empty() {
        return Err(TranslateError::MissingMessages);
    }

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
        match message.role.as_str() {
            "system" | "developer" => {
                let text = system_text(message.content.as_ref(), index)?;
                if !text.is_empty() {
                    system.push(text);
                }
            }
            "user" => push_turn(
                &mut turns,
                "user",
                user_content(message.content.as_ref(), index)?,
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
    let budget = body.reasoning_effort.and_then(thinking_budget);
    let budget = budget.filter(|_| !forced_tool && !prefill && !last_assistant_used_tools);

    // Token limit.
    let requested = match (body.max_completion_tokens, body.max_tokens) {
        (Some(n), _) => Some(positive_int(n, "max_completion_tokens")?),
        (None, Some(n)) => Some(positive_int(n, "max_tokens")?),
        (None, None) => None,
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
    let temperature = body
        .temperature
        .as_ref()
        .map(|v| number(v, "temperature"))
        .transpose()?;
    let top_p = body
        .top_p
        .as_ref()
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

    let stops = stop_sequences(body);
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

/// A passed-through field's value unless absent or null.
fn present<'a>(body: &'a CanonicalRequest, key: &str) -> Option<&'a Value> {
    body.passthrough.get(key).filter(|v| !v.is_null())
}

fn positive_int(n: u64, field: &str) -> Result<u64, TranslateError> {
    if n == 0 {
        return Err(field_err(field, "must be a positive integer"));
    }
    Ok(n)
}

fn number(v: &serde_json::Number, field: &str) -> Result<f64, TranslateError> {
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

fn assistant_content(message: &Message, index: usize) -> Result<Vec<Value>, TranslateError> {
    let mut blocks = Vec::new();
    match &message.content {
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
    for call in message.tool_calls.iter().flatten() {
        blocks.push(tool_use_block(call, index)?);
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

fn tool_result(message: &Message, index: usize) -> Result<Value, TranslateError> {
    let id = message
        .tool_call_id
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            msg_err(
                index,
                "tool messages need a non-empty string `tool_call_id`",
            )
        })?;
    let mut block = json!({ "type": "tool_result", "tool_use_id": sanitize_id(id) });
    let content = match message.content.as_ref() {
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

fn tools(body: &CanonicalRequest) -> Result<Vec<Value>, TranslateError> {
    let Some(tools) = &body.tools else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let field = || format!("tools[{i}]");
        let kind = tool.kind();
        if kind != "function" {
            return Err(field_err(
                field(),
                format!(
                    "tool type `{kind}` is not supported by Anthropic models (only `function`)"
                ),
            ));
        }
        let function = tool
            .fields
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

fn tool_choice(body: &CanonicalRequest) -> Result<Option<Value>, TranslateError> {
    let mut choice = match &body.tool_choice {
        None => None,
        Some(ToolChoice::Mode(s)) => match s.as_str() {
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
        Some(ToolChoice::Tool(obj)) => match obj.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = obj
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| field_err("tool_choice", "needs `function.name`"))?;
                Some(json!({ "type": "tool", "name": name }))
            }
            // `allowed_tools` and future forms: let the model choose.
            _ => None,
        },
    };
    if body.parallel_tool_calls == Some(false) {
        let c = choice.get_or_insert_with(|| json!({ "type": "auto" }));
        if c.get("type").and_then(Value::as_str) != Some("none")
            && let Some(obj) = c.as_object_mut()
        {
            obj.insert("disable_parallel_tool_use".into(), Value::Bool(true));
        }
    }
    Ok(choice)
}

fn thinking_budget(effort: Effort) -> Option<u64> {
    match effort {
        Effort::None => None,
        Effort::Minimal | Effort::Low => Some(1024),
        Effort::Medium => Some(4096),
        Effort::High => Some(16384),
        Effort::Xhigh => Some(32768),
    }
}

fn stop_sequences(body: &CanonicalRequest) -> Vec<String> {
    body.stop
        .as_ref()
        .map(|s| s.sequences())
        .unwrap_or_default()
        .iter()
        .filter(|s| !s.trim().is_empty())
        .cloned()
        .collect()
}

fn user_id(body: &CanonicalRequest) -> Option<&str> {
    body.metadata
        .as_ref()
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
        .or_else(|| present(body, "safety_identifier").and_then(Value::as_str))
        .or(body.user.as_deref())
        .filter(|s| !s.is_empty())
}

const JSON_ONLY: &str =
    "Do not wrap it in Markdown code fences and do not add any text before or after it.";

fn response_format_instruction(body: &CanonicalRequest) -> Result<Option<String>, TranslateError> {
    let Some(format) = &body.response_format else {
        return Ok(None);
    };
    match format.kind.as_str() {
        "json_object" => Ok(Some(format!(
            "Respond only with a single valid JSON object. {JSON_ONLY}"
        ))),
        "json_schema" => {
            let spec = format.fields.get("json_schema");
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
        "text" => Ok(None),
        other => Err(field_err(
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
        self.data(event.event.as_deref(), &data)
    }

    /// Translates one event's data (a JSON object); `name` is the SSE event
    /// name, used when the data has no `type`.
    pub fn data(&mut self, name: Option<&str>, data: &Value) -> Result<Vec<Value>, UpstreamError> {
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .or(name)
            .unwrap_or_default();
        let mut out = Vec::new();
        match kind {
            "message_start" => {
                self.usage.update(data.pointer("/message/usage"));
                self.start(&mut out);
            }
            "content_block_start" => {
                let index = block_index(data)?;
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
                let index = block_index(data)?;
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
            "error" => return Err(stream_error(data)),
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

/// Anthropic's SSE events as a stream of canonical chunks: the translator's
/// chunks, then one usage chunk once the message has finished. A stream that
/// ends after `message_delta` carried a `stop_reason` but without
/// `message_stop` is complete.
pub struct Events {
    translator: StreamTranslator,
    usage_sent: bool,
    /// A `message_delta` carried the stop reason.
    stopped: bool,
    malformed: u64,
}

impl Events {
    pub fn new(translator: StreamTranslator) -> Self {
        Self {
            translator,
            usage_sent: false,
            stopped: false,
            malformed: 0,
        }
    }
}

impl crate::sse::Translate for Events {
    fn event(&mut self, event: &mut SseEvent) -> Result<Vec<crate::chunk::Chunk>, UpstreamError> {
        let chunks = Events::event(self, event)?;
        Ok(chunks
            .into_iter()
            .map(crate::chunk::Chunk::from_value)
            .collect())
    }

    fn finish(&mut self) -> Result<Vec<crate::chunk::Chunk>, UpstreamError> {
        let chunks = Events::finish(self)?;
        Ok(chunks
            .into_iter()
            .map(crate::chunk::Chunk::from_value)
            .collect())
    }

    fn ended(&self) -> bool {
        self.translator.finished()
    }

    fn malformed(&self) -> u64 {
        self.malformed
    }
}

impl Events {
    /// The chunks (as values) for one event; see [`crate::sse::Translate::event`].
    pub fn event(&mut self, event: &SseEvent) -> Result<Vec<Value>, UpstreamError> {
        let data = match serde_json::from_str::<Value>(&event.data) {
            Ok(data) if data.is_object() => data,
            _ => {
                self.malformed += 1;
                return Ok(Vec::new());
            }
        };
        if data.get("type").and_then(Value::as_str) == Some("message_delta")
            && data
                .pointer("/delta/stop_reason")
                .is_some_and(|r| !r.is_null())
        {
            self.stopped = true;
        }
        let mut chunks = self.translator.data(event.event.as_deref(), &data)?;
        if self.translator.finished() && !self.usage_sent {
            self.usage_sent = true;
            chunks.push(self.translator.usage_chunk());
        }
        Ok(chunks)
    }

    /// The final chunks (as values); see [`crate::sse::Translate::finish`].
    pub fn finish(&mut self) -> Result<Vec<Value>, UpstreamError> {
        if self.stopped && !self.usage_sent {
            self.usage_sent = true;
            return Ok(vec![self.translator.usage_chunk()]);
        }
        crate::sse::stream_end(self.translator.finished() || self.stopped, "message_stop")
            .map(|_| Vec::new())
    }
}

#[cfg(test)]
#[path = "anthropic_tests.rs"]
mod tests;
