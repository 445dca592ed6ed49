//! Whether an answer has the shape its request asked for: the checks a
//! shadow backup's answers pass before a failover depends on it.
//!
//! An answer is an OpenAI `chat.completion` object (what every adapter
//! gives back), or a stream of `chat.completion.chunk` objects put back
//! together by [`assemble`]. [`check`] compares it with the request:
//! - under `response_format` `json_object` or `json_schema`, the text must
//!   be JSON (and, with a schema, valid against it);
//! - every tool call must name a function the request declared, with
//!   arguments that are a JSON document valid against that function's
//!   `parameters` schema;
//! - a `tool_choice` that forces a tool must get a tool call;
//! - the finish reason must be the primary's when that is known, and never
//!   `length` or `content_filter` otherwise.

use serde_json::{Map, Value};

use crate::request::CanonicalRequest;

/// One way an answer misses its request's shape.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// No `choices[0].message`.
    NoMessage,
    /// The text is not JSON under `response_format` JSON.
    InvalidJson(String),
    /// The text is JSON that does not match `response_format`'s schema.
    SchemaMismatch(String),
    /// A tool call names a function the request did not declare.
    UnknownTool(String),
    /// A tool call's arguments are not JSON, or do not match the function's
    /// `parameters` schema.
    InvalidToolArguments { tool: String, problem: String },
    /// `tool_choice` forced a tool and the answer called none.
    MissingToolCall,
    /// The finish reason is not the expected one.
    FinishReason { expected: String, got: String },
}

impl Problem {
    /// The check's name, as reports and metric labels give it.
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::NoMessage => "no_message",
            Problem::InvalidJson(_) => "invalid_json",
            Problem::SchemaMismatch(_) => "schema_mismatch",
            Problem::UnknownTool(_) => "unknown_tool",
            Problem::InvalidToolArguments { .. } => "invalid_tool_arguments",
            Problem::MissingToolCall => "missing_tool_call",
            Problem::FinishReason { .. } => "finish_reason",
        }
    }

    /// Every kind, in a fixed order (for metric families).
    pub const KINDS: [&'static str; 7] = [
        "no_message",
        "invalid_json",
        "schema_mismatch",
        "unknown_tool",
        "invalid_tool_arguments",
        "missing_tool_call",
        "finish_reason",
    ];
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::NoMessage => f.write_str("the answer has no message"),
            Problem::InvalidJson(e) => write!(f, "the text is not JSON: {e}"),
            Problem::SchemaMismatch(e) => write!(f, "the text does not match the schema: {e}"),
            Problem::UnknownTool(name) => write!(f, "a tool call names undeclared tool {name:?}"),
            Problem::InvalidToolArguments { tool, problem } => {
                write!(f, "the arguments of a call to {tool:?}: {problem}")
            }
            Problem::MissingToolCall => f.write_str("tool_choice forced a tool call and none came"),
            Problem::FinishReason { expected, got } => {
                write!(f, "finish reason {got:?} where {expected:?} was expected")
            }
        }
    }
}

/// The answer's finish reason, if it has one.
pub fn finish_reason(completion: &Value) -> Option<&str> {
    completion["choices"][0]["finish_reason"].as_str()
}

/// Checks `completion` against `request`; `expected_finish` is the
/// primary's finish reason when known. Empty: the shape is right.
pub fn check(
    request: &CanonicalRequest,
    completion: &Value,
    expected_finish: Option<&str>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let Some(message) = completion["choices"][0]["message"].as_object() else {
        return vec![Problem::NoMessage];
    };
    let calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    // JSON output, when asked for and the answer is text.
    if let Some(format) = &request.response_format
        && calls.is_empty()
        && (format.kind == "json_object" || format.kind == "json_schema")
    {
        let text = message.get("content").and_then(Value::as_str).unwrap_or("");
        match serde_json::from_str::<Value>(text) {
            Err(e) => problems.push(Problem::InvalidJson(e.to_string())),
            Ok(value) => {
                let schema = format
                    .fields
                    .get("json_schema")
                    .and_then(|s| s.get("schema"));
                if let Some(schema) = schema
                    && let Some(e) = schema_error(schema, &value)
                {
                    problems.push(Problem::SchemaMismatch(e));
                }
            }
        }
    }
    // Tool calls against the declared functions.
    let functions = declared_functions(request);
    for call in calls {
        let function = &call["function"];
        let name = function["name"].as_str().unwrap_or("");
        let Some(declared) = functions.get(name) else {
            problems.push(Problem::UnknownTool(name.to_owned()));
            continue;
        };
        let arguments = function["arguments"].as_str().unwrap_or("");
        let problem = match serde_json::from_str::<Value>(arguments) {
            Err(e) => Some(format!("not JSON ({e})")),
            Ok(value) => declared
                .get("parameters")
                .and_then(|schema| schema_error(schema, &value)),
        };
        if let Some(problem) = problem {
            problems.push(Problem::InvalidToolArguments {
                tool: name.to_owned(),
                problem,
            });
        }
    }
    if calls.is_empty()
        && request
            .tool_choice
            .as_ref()
            .is_some_and(|c| c.forces_a_tool())
    {
        problems.push(Problem::MissingToolCall);
    }
    let got = finish_reason(completion).unwrap_or("");
    match expected_finish {
        Some(expected) if expected != got => problems.push(Problem::FinishReason {
            expected: expected.to_owned(),
            got: got.to_owned(),
        }),
        None if got == "length" || got == "content_filter" || got.is_empty() => {
            problems.push(Problem::FinishReason {
                expected: "stop or tool_calls".into(),
                got: got.to_owned(),
            });
        }
        _ => {}
    }
    problems
}

/// The request's function tools by name: their `function` objects.
fn declared_functions(request: &CanonicalRequest) -> Map<String, Value> {
    let mut out = Map::new();
    for tool in request.tools.iter().flatten() {
        if tool.kind() != "function" {
            continue;
        }
        if let Some(function) = tool.fields.get("function")
            && let Some(name) = function["name"].as_str()
        {
            out.insert(name.to_owned(), function.clone());
        }
    }
    out
}

/// Why `value` does not match `schema` (the first reason), or `None` when
/// it does. A schema that does not compile is reported as such: the backup
/// cannot be judged against it, and the caller's primary could not either.
fn schema_error(schema: &Value, value: &Value) -> Option<String> {
    match jsonschema::validator_for(schema) {
        Ok(validator) => validator.validate(value).err().map(|e| e.to_string()),
        Err(e) => Some(format!("the schema does not compile: {e}")),
    }
}

/// A whole `chat.completion` from the chunks of a stream: the text and the
/// tool calls (their arguments joined by index), the last finish reason,
/// and the usage when a chunk carried it.
pub fn assemble(chunks: &[Value]) -> Value {
    let mut content = String::new();
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut finish = Value::Null;
    let mut usage = Value::Null;
    for chunk in chunks {
        if chunk.get("usage").is_some_and(|u| !u.is_null()) {
            usage = chunk["usage"].clone();
        }
        let choice = &chunk["choices"][0];
        if let Some(reason) = choice["finish_reason"].as_str() {
            finish = Value::String(reason.to_owned());
        }
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str() {
            content.push_str(text);
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().unwrap_or(0) as usize;
            if index >= 128 {
                continue;
            }
            while calls.len() <= index {
                calls.push(Default::default());
            }
            let slot = &mut calls[index];
            if let Some(id) = call["id"].as_str() {
                slot.0 = id.to_owned();
            }
            if let Some(name) = call["function"]["name"].as_str() {
                slot.1.push_str(name);
            }
            if let Some(arguments) = call["function"]["arguments"].as_str() {
                slot.2.push_str(arguments);
            }
        }
    }
    let mut message = serde_json::json!({ "role": "assistant", "content": content });
    if !calls.is_empty() {
        message["tool_calls"] = calls
            .into_iter()
            .map(|(id, name, arguments)| {
                serde_json::json!({
                    "id": id,
                    "type": "function",
                    "function": { "name": name, "arguments": arguments },
                })
            })
            .collect();
    }
    serde_json::json!({
        "object": "chat.completion",
        "choices": [{ "index": 0, "message": message, "finish_reason": finish }],
        "usage": usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(extra: Value) -> CanonicalRequest {
        let mut body = json!({
            "model": "m",
            "messages": [{ "role": "user", "content": "weather in Paris?" }],
        });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        CanonicalRequest::from_slice(body.to_string().as_bytes()).expect("request")
    }

    fn weather_tool() -> Value {
        json!({ "tools": [{ "type": "function", "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": { "city": { "type": "string" } },
                "required": ["city"],
            },
        }}]})
    }

    fn tool_answer(name: &str, arguments: &str) -> Value {
        json!({ "choices": [{ "index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null,
            "tool_calls": [{ "id": "c1", "type": "function",
                "function": { "name": name, "arguments": arguments } }],
        }}]})
    }

    fn text_answer(text: &str, finish: &str) -> Value {
        json!({ "choices": [{ "index": 0, "finish_reason": finish,
            "message": { "role": "assistant", "content": text } }]})
    }

    fn kinds(problems: &[Problem]) -> Vec<&'static str> {
        problems.iter().map(Problem::kind).collect()
    }

    #[test]
    fn tool_calls_are_checked_against_the_declared_schemas() {
        let req = request(weather_tool());
        let good = tool_answer("get_weather", r#"{"city": "Paris"}"#);
        assert!(check(&req, &good, Some("tool_calls")).is_empty());
        let truncated = tool_answer("get_weather", r#"{"city": "Par"#);
        assert_eq!(
            kinds(&check(&req, &truncated, Some("tool_calls"))),
            ["invalid_tool_arguments"]
        );
        let wrong_type = tool_answer("get_weather", r#"{"city": 42}"#);
        let problems = check(&req, &wrong_type, Some("tool_calls"));
        assert_eq!(kinds(&problems), ["invalid_tool_arguments"]);
        assert!(problems[0].to_string().contains("42"), "{}", problems[0]);
        let missing = tool_answer("get_weather", r#"{}"#);
        assert_eq!(
            kinds(&check(&req, &missing, Some("tool_calls"))),
            ["invalid_tool_arguments"]
        );
        let unknown = tool_answer("get_time", r#"{"city": "Paris"}"#);
        assert_eq!(
            kinds(&check(&req, &unknown, Some("tool_calls"))),
            ["unknown_tool"]
        );
    }

    #[test]
    fn json_output_and_finish_reasons_are_checked() {
        let req = request(json!({ "response_format": { "type": "json_object" } }));
        assert!(check(&req, &text_answer(r#"{"a": 1}"#, "stop"), None).is_empty());
        assert_eq!(
            kinds(&check(&req, &text_answer("Sure! {a: 1}", "stop"), None)),
            ["invalid_json"]
        );
        let schema = request(
            json!({ "response_format": { "type": "json_schema", "json_schema": {
            "name": "answer", "schema": { "type": "object", "required": ["answer"] } } } }),
        );
        assert_eq!(
            kinds(&check(&schema, &text_answer(r#"{"a": 1}"#, "stop"), None)),
            ["schema_mismatch"]
        );
        // The primary stopped; a backup cut off by its length limit did not.
        let plain = request(json!({}));
        assert_eq!(
            kinds(&check(
                &plain,
                &text_answer("Sunny and", "length"),
                Some("stop")
            )),
            ["finish_reason"]
        );
        assert_eq!(
            kinds(&check(&plain, &text_answer("Sunny", "length"), None)),
            ["finish_reason"]
        );
        let forced = request(json!({ "tool_choice": "required" }));
        assert_eq!(
            kinds(&check(&forced, &text_answer("Sunny", "stop"), None)),
            ["missing_tool_call"]
        );
        assert_eq!(kinds(&check(&plain, &json!({}), None)), ["no_message"]);
    }

    #[test]
    fn a_stream_is_put_back_together() {
        let chunks = vec![
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "get_weather", "arguments": "{\"ci"}}]}, "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "ty\": \"Paris\"}"}}]}, "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}}),
        ];
        let whole = assemble(&chunks);
        let call = &whole["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["arguments"], r#"{"city": "Paris"}"#);
        assert_eq!(finish_reason(&whole), Some("tool_calls"));
        assert_eq!(whole["usage"]["completion_tokens"], 5);
        assert!(check(&request(weather_tool()), &whole, Some("tool_calls")).is_empty());
    }
}
