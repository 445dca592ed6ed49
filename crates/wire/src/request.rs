//! The canonical request: what a caller asked for, whichever of the three
//! APIs it came in on, in the OpenAI Chat Completions shape.
//!
//! Every field the gateway reads or rewrites is typed (model, messages,
//! tools, tool choice, response format, stream options, sampling, token
//! limits, stop, reasoning, verbosity, cache key, metadata, routing); the
//! rest of the body is kept in [`CanonicalRequest::passthrough`] and reaches
//! OpenAI-compatible servers as the caller wrote it. Chat Completions bodies
//! are read straight from their bytes ([`CanonicalRequest::from_slice`]); the
//! Responses and Messages translations build the same type.
//!
//! Serializing a `CanonicalRequest` writes the body *without* `model`,
//! `stream`, `stream_options` and `routing`: the provider adapter sets those
//! per attempt ([`UpstreamBody`]), so an attempt never copies the request to
//! change its model.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use crate::error::{RequestCode, RequestError};
use crate::feature::Effort;

/// A Chat Completions request as the gateway routes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CanonicalRequest {
    /// The model (or logical model, or `provider/model`) the caller named;
    /// the adapter writes the upstream model instead.
    #[serde(default, skip_serializing)]
    pub model: String,
    /// The conversation, oldest first.
    #[serde(default)]
    pub messages: Vec<Message>,
    /// Whether the caller wants a stream.
    #[serde(default, skip_serializing)]
    pub stream: Option<bool>,
    /// The caller's stream options (`include_usage`).
    #[serde(default, skip_serializing)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Chat Completions' hosted web search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_search_options: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Kept as the caller's number (`1` stays `1`, not `1.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// `none`, `minimal`, `low`, `medium`, `high` or `xhigh`; any other
    /// level is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<Effort>,
    /// The Responses API's `text.verbosity`, carried on the canonical body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verbosity: Option<String>,
    /// The Responses API's `include`, carried on the canonical body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// String values here also feed the policy's routing metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Switchyard's own routing options; read by the edge, never forwarded.
    #[serde(default, skip_serializing)]
    pub routing: Option<Value>,
    /// Every other field, forwarded unchanged to OpenAI-compatible servers.
    #[serde(flatten)]
    pub passthrough: Map<String, Value>,
}

/// One message of the conversation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// A string, or an array of content parts (`text`, `image_url`, `file`,
    /// ...). Absent and `null` are the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    /// An assistant's tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<Value>>,
    /// The call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// `name` and anything else the message carries.
    #[serde(flatten)]
    pub passthrough: Map<String, Value>,
}

/// The caller's `stream_options`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    #[serde(flatten)]
    pub passthrough: Map<String, Value>,
}

/// One entry of `tools`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// `function` (also when absent), `custom`, `web_search`, ...
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `function`, `custom` or the hosted tool's own fields.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl Tool {
    /// The tool's type; `function` when the caller left it out.
    pub fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or("function")
    }

    /// Whether this is one of OpenAI's hosted web search tools.
    pub fn is_web_search(&self) -> bool {
        self.kind().starts_with("web_search")
    }

    /// A function tool.
    pub fn function(function: Value) -> Tool {
        let mut fields = Map::new();
        fields.insert("function".into(), function);
        Tool {
            kind: Some("function".into()),
            fields,
        }
    }
}

/// `tool_choice`: a mode (`none`, `auto`, `required`) or a named tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolChoice {
    Mode(String),
    Tool(Map<String, Value>),
}

impl ToolChoice {
    /// Whether the model must call a tool (`required`, or a named tool).
    pub fn forces_a_tool(&self) -> bool {
        match self {
            ToolChoice::Mode(mode) => mode == "required",
            ToolChoice::Tool(_) => true,
        }
    }
}

/// `response_format`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseFormat {
    /// `text`, `json_object` or `json_schema`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `json_schema` and anything else it carries.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// `stop`: one sequence or several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    /// The sequences, in order.
    pub fn sequences(&self) -> &[String] {
        match self {
            Stop::One(s) => std::slice::from_ref(s),
            Stop::Many(v) => v,
        }
    }
}

impl CanonicalRequest {
    /// Reads a Chat Completions body, refusing what is not JSON, not an
    /// object, or has a field of the wrong type.
    ///
    /// The body is read once without tracking where the reader is (that
    /// costs an allocation per key); only a body that fails is read again to
    /// name the offending field.
    pub fn from_slice(bytes: &[u8]) -> Result<CanonicalRequest, RequestError> {
        match serde_json::from_slice::<CanonicalRequest>(bytes) {
            Ok(request) => request.validated(),
            Err(e) if !e.is_data() => Err(invalid_json(&e)),
            Err(_) if !is_object(bytes) => Err(not_an_object()),
            Err(first) => {
                let mut de = serde_json::Deserializer::from_slice(bytes);
                Err(
                    match serde_path_to_error::deserialize::<_, CanonicalRequest>(&mut de) {
                        Err(e) => refusal(e),
                        // Not reached: the same bytes fail the same way.
                        Ok(_) => field_refusal(String::new(), first),
                    },
                )
            }
        }
    }

    /// Reads a canonical body another API's translation built as JSON.
    ///
    /// Read by reference, so that a body that fails can be read again to name
    /// the field (tracking the path on every read costs an allocation per key).
    pub fn from_map(body: Map<String, Value>) -> Result<CanonicalRequest, RequestError> {
        let body = Value::Object(body);
        match CanonicalRequest::deserialize(&body) {
            Ok(request) => request.validated(),
            Err(first) => Err(
                match serde_path_to_error::deserialize::<_, CanonicalRequest>(&body) {
                    Err(e) => refusal(e),
                    // Not reached: the same value fails the same way.
                    Ok(_) => field_refusal(String::new(), first),
                },
            ),
        }
    }

    fn validated(mut self) -> Result<CanonicalRequest, RequestError> {
        let trimmed = self.model.trim();
        if trimmed.is_empty() {
            return Err(RequestError::invalid(
                "model",
                "you must provide a model parameter",
            ));
        }
        if trimmed.len() != self.model.len() {
            self.model = trimmed.to_owned();
        }
        if self.messages.is_empty() {
            return Err(RequestError::invalid(
                "messages",
                "you must provide a `messages` array with at least one message",
            ));
        }
        if let Some(level) = self.passed_effort()
            && Effort::parse(level).is_none()
        {
            return Err(RequestError::invalid(
                "reasoning.effort",
                format!(
                    "unknown reasoning effort `{level}` (expected none, minimal, low, medium, high or xhigh)"
                ),
            ));
        }
        Ok(self)
    }

    /// Whether the caller asked for a stream.
    pub fn streams(&self) -> bool {
        self.stream == Some(true)
    }

    /// Whether any message carries an image part.
    pub fn carries_images(&self) -> bool {
        self.messages.iter().any(Message::has_image)
    }

    /// Input tokens this request will take, estimated without a tokenizer:
    /// the text of every message (string content, text parts, tool-call
    /// arguments) and the tool definitions and response schema, at 4 bytes a
    /// token, plus 4 tokens a message for its framing, and
    /// [`IMAGE_TOKENS`] an image (base64 image bytes say nothing of its
    /// tokens). Other parts (files, audio) count their JSON size.
    pub fn estimate_input_tokens(&self) -> u64 {
        let mut bytes = 0usize;
        let mut tokens = 0u64;
        for m in &self.messages {
            tokens += 4;
            match &m.content {
                Some(Value::String(s)) => bytes += s.len(),
                Some(Value::Array(parts)) => {
                    for part in parts {
                        if is_image_part(part) {
                            tokens += IMAGE_TOKENS;
                        } else if let Some(text) = part.get("text").and_then(Value::as_str) {
                            bytes += text.len();
                        } else {
                            bytes += json_len(part);
                        }
                    }
                }
                Some(other) => bytes += json_len(other),
                None => {}
            }
            for call in m.tool_calls.iter().flatten() {
                bytes += json_len(call);
            }
        }
        for tool in self.tools.iter().flatten() {
            bytes += json_len(tool);
        }
        if let Some(format) = &self.response_format {
            bytes += json_len(format);
        }
        tokens + (bytes as u64).div_ceil(4)
    }

    /// The token limit the caller set, under either name.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// The reasoning effort, from `reasoning_effort` or a Responses-style
    /// `reasoning.effort` passed through.
    pub fn effort(&self) -> Option<Effort> {
        self.reasoning_effort
            .or_else(|| self.passed_effort().and_then(Effort::parse))
    }

    fn passed_effort(&self) -> Option<&str> {
        self.passthrough
            .get("reasoning")
            .and_then(|r| r.get("effort"))
            .and_then(Value::as_str)
    }

    /// The body for an OpenAI-compatible server: this request with
    /// `upstream_model`, streaming (with usage) or not.
    pub fn upstream<'a>(&'a self, upstream_model: &'a str, stream: bool) -> UpstreamBody<'a> {
        UpstreamBody {
            model: upstream_model,
            stream: stream.then_some(true),
            stream_options: stream.then_some(UsageOption {
                include_usage: true,
            }),
            request: self,
        }
    }
}

impl Message {
    /// A message with text content.
    pub fn text(role: &str, text: impl Into<String>) -> Message {
        Message {
            role: role.to_owned(),
            content: Some(Value::String(text.into())),
            ..Message::default()
        }
    }

    /// The content parts, when the content is an array.
    pub fn parts(&self) -> &[Value] {
        match &self.content {
            Some(Value::Array(parts)) => parts,
            _ => &[],
        }
    }

    /// Whether this message carries an image part.
    pub fn has_image(&self) -> bool {
        self.parts().iter().any(is_image_part)
    }
}

/// Input tokens counted for one image by [`CanonicalRequest::estimate_input_tokens`]
/// (a 1024×1024 image is 765 tokens at OpenAI's high detail, up to ~1,600 at
/// Anthropic).
pub const IMAGE_TOKENS: u64 = 1_000;

/// Bytes of `value` as compact JSON, counted without building the text.
fn json_len<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Whether a content part is an image.
pub fn is_image_part(part: &Value) -> bool {
    matches!(
        part.get("type").and_then(Value::as_str),
        Some("image_url" | "input_image" | "image")
    )
}

/// A canonical request as an OpenAI-compatible server receives it.
#[derive(Debug, Serialize)]
pub struct UpstreamBody<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<UsageOption>,
    #[serde(flatten)]
    request: &'a CanonicalRequest,
}

#[derive(Debug, Serialize)]
struct UsageOption {
    include_usage: bool,
}

fn invalid_json(e: &serde_json::Error) -> RequestError {
    RequestError {
        code: RequestCode::InvalidJson,
        param: None,
        message: format!("We could not parse the JSON body of your request: {e}"),
    }
}

/// Whether a JSON text is an object (its first non-blank byte opens one).
fn is_object(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

fn not_an_object() -> RequestError {
    RequestError {
        code: RequestCode::InvalidJson,
        param: None,
        message: "The request body must be a JSON object.".into(),
    }
}

/// A deserialization failure as the caller's error: bad JSON, a body that is
/// not an object, or a field of the wrong type (named by its path).
fn refusal(e: serde_path_to_error::Error<serde_json::Error>) -> RequestError {
    let path = e.path().to_string();
    field_refusal(path, e.into_inner())
}

fn field_refusal(path: String, inner: serde_json::Error) -> RequestError {
    if !inner.is_data() {
        return invalid_json(&inner);
    }
    if path == "." || path.is_empty() {
        // An object with something wrong at its top: a key given twice.
        return RequestError {
            code: RequestCode::InvalidRequest,
            param: None,
            message: format!("Invalid request body: {}", without_position(&inner)),
        };
    }
    let message = match path.as_str() {
        "model" => "`model` must be a non-empty string".to_owned(),
        "stream" => "`stream` must be a boolean".to_owned(),
        p if p.starts_with("messages[") && (p.ends_with(']') || p.ends_with("].role")) => {
            let message = p.trim_end_matches(".role");
            format!("{message} must be an object with a string `role`")
        }
        p => format!("Invalid value for `{p}`: {}", without_position(&inner)),
    };
    RequestError::invalid(&path, message)
}

/// serde_json's message without its " at line 1 column 42" suffix.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
