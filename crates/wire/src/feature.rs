//! Feature detection and stripping on the canonical request (an OpenAI Chat
//! Completions body), by the names of the feature table (DESIGN §4).

use serde_json::{Map, Value};

/// Every feature name a request can require (besides `reasoning.effort.<level>`).
pub const FEATURES: &[&str] = &[
    "stream",
    "tools.function_calling",
    "tools.web_search",
    "tools.custom_tools",
    "tool_choice.required",
    "text.format.json_schema",
    "text.format.json_object",
    "temperature",
    "top_p",
    "vision",
    "parallel_tool_calls",
    "prompt_cache_key",
    "text.verbosity",
    "include",
];

/// Whether `name` is a feature name models may declare.
pub fn is_known_feature(name: &str) -> bool {
    FEATURES.contains(&name)
        || name
            .strip_prefix("reasoning.effort.")
            .is_some_and(|level| !level.is_empty() && level.bytes().all(|b| b.is_ascii_lowercase()))
}

fn tool_type(tool: &Value) -> &str {
    tool.get("type")
        .and_then(Value::as_str)
        .unwrap_or("function")
}

fn is_web_search(kind: &str) -> bool {
    kind.starts_with("web_search")
}

fn has_image(messages: Option<&Value>) -> bool {
    let Some(messages) = messages.and_then(Value::as_array) else {
        return false;
    };
    messages.iter().any(|m| {
        m.get("content")
            .and_then(Value::as_array)
            .is_some_and(|parts| {
                parts.iter().any(|p| {
                    matches!(
                        p.get("type").and_then(Value::as_str),
                        Some("image_url" | "input_image" | "image")
                    )
                })
            })
    })
}

/// Whether a canonical request carries image inputs (it may be larger).
pub fn carries_images(body: &Map<String, Value>) -> bool {
    has_image(body.get("messages"))
}

fn present(body: &Map<String, Value>, key: &str) -> bool {
    body.get(key).is_some_and(|v| !v.is_null())
}

/// The features a request uses, in table order, without duplicates.
pub fn detect(body: &Map<String, Value>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |name: &str| {
        if !out.iter().any(|f| f == name) {
            out.push(name.to_string());
        }
    };
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        add("stream");
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        for tool in tools {
            match tool_type(tool) {
                "function" => add("tools.function_calling"),
                "custom" => add("tools.custom_tools"),
                kind if is_web_search(kind) => add("tools.web_search"),
                _ => {}
            }
        }
    }
    if present(body, "web_search_options") {
        add("tools.web_search");
    }
    match body.get("tool_choice") {
        Some(Value::String(s)) if s == "required" => add("tool_choice.required"),
        Some(Value::Object(_)) => add("tool_choice.required"),
        _ => {}
    }
    match body
        .get("response_format")
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
    {
        Some("json_schema") => add("text.format.json_schema"),
        Some("json_object") => add("text.format.json_object"),
        _ => {}
    }
    let effort = body
        .get("reasoning_effort")
        .and_then(Value::as_str)
        .or_else(|| {
            body.get("reasoning")
                .and_then(|r| r.get("effort"))
                .and_then(Value::as_str)
        });
    if let Some(level) = effort {
        add(&format!("reasoning.effort.{}", level.to_ascii_lowercase()));
    }
    for key in ["temperature", "top_p"] {
        if present(body, key) {
            add(key);
        }
    }
    if has_image(body.get("messages")) {
        add("vision");
    }
    for key in ["parallel_tool_calls", "prompt_cache_key"] {
        if present(body, key) {
            add(key);
        }
    }
    if present(body, "verbosity")
        || body
            .get("text")
            .and_then(|t| t.get("verbosity"))
            .is_some_and(|v| !v.is_null())
    {
        add("text.verbosity");
    }
    if body
        .get("include")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        add("include");
    }
    out
}

fn retain_tools(body: &mut Map<String, Value>, keep: impl Fn(&str) -> bool) {
    if let Some(Value::Array(tools)) = body.get_mut("tools") {
        tools.retain(|t| keep(tool_type(t)));
        if tools.is_empty() {
            body.remove("tools");
            body.remove("tool_choice");
            body.remove("parallel_tool_calls");
        }
    }
}

/// Removes one feature from the request. `stream` is not removed here: the
/// executor calls the provider without streaming and streams the answer itself.
pub fn strip(body: &mut Map<String, Value>, feature: &str) {
    match feature {
        "tools.function_calling" => retain_tools(body, |t| t != "function"),
        "tools.custom_tools" => retain_tools(body, |t| t != "custom"),
        "tools.web_search" => {
            body.remove("web_search_options");
            retain_tools(body, |t| !is_web_search(t));
        }
        "tool_choice.required" => {
            body.remove("tool_choice");
        }
        "text.format.json_schema" | "text.format.json_object" => {
            body.remove("response_format");
        }
        "temperature" | "top_p" | "parallel_tool_calls" | "include" => {
            body.remove(feature);
        }
        "prompt_cache_key" => {
            body.remove("prompt_cache_key");
            body.remove("prompt_cache_retention");
        }
        "text.verbosity" => {
            body.remove("verbosity");
            if let Some(Value::Object(text)) = body.get_mut("text") {
                text.remove("verbosity");
            }
        }
        "vision" => {
            if let Some(Value::Array(messages)) = body.get_mut("messages") {
                for m in messages {
                    if let Some(Value::Array(parts)) = m.get_mut("content") {
                        parts.retain(|p| {
                            !matches!(
                                p.get("type").and_then(Value::as_str),
                                Some("image_url" | "input_image" | "image")
                            )
                        });
                    }
                }
            }
        }
        f if f.starts_with("reasoning.effort.") => {
            body.remove("reasoning_effort");
            body.remove("reasoning");
        }
        _ => {}
    }
}

#[cfg(test)]
#[path = "feature_tests.rs"]
mod tests;
