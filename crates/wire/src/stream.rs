//! A streamed answer between the executor and the HTTP edge: the executor
//! yields [`StreamEvent`]s (canonical chunks, then how the stream ended), and
//! the edge writes them in the caller's API through a [`StreamEncoder`].

use serde_json::{Value, json};

use crate::Usage;
use crate::chunk::Chunk;
use crate::sse;

/// One step of a streamed answer, in canonical form.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// An OpenAI `chat.completion.chunk` object. The first carries the
    /// routing info under `switchyard`; the chunk with `usage` carries
    /// `switchyard.cost_usd`.
    Chunk(Chunk),
    /// The answer is complete.
    Done,
    /// The upstream broke after content reached the caller: the caller must
    /// see an error, never a clean-looking end.
    Broken(String),
}

/// How a streamed answer is written for the caller: the SSE events of the
/// API the request came in on. It is fed canonical chunks (see
/// [`StreamEvent::Chunk`]) and then exactly one of [`StreamEncoder::done`]
/// or [`StreamEncoder::error`].
pub trait StreamEncoder: Send + 'static {
    /// The events for one chunk (possibly none).
    fn chunk(&mut self, chunk: Chunk, out: &mut Vec<u8>);
    /// The events that end a complete answer.
    fn done(&mut self, out: &mut Vec<u8>);
    /// The events that end an answer whose upstream broke after content.
    fn error(&mut self, message: &str, out: &mut Vec<u8>);
    /// Whether the caller gets the usage chunk (Chat Completions only sends
    /// it when `stream_options.include_usage` asked; the other APIs always
    /// report usage).
    fn wants_usage(&self) -> bool {
        true
    }
}

/// Keeps the routing info a chunk carries (the first chunk's `switchyard`,
/// then the usage chunk's `cost_usd`) in `slot`, for encoders that report it
/// at the end of the answer.
pub fn keep_routing_info(slot: &mut Option<Value>, chunk: &Value) {
    let Some(Value::Object(more)) = chunk.get("switchyard") else {
        return;
    };
    match slot {
        Some(Value::Object(known)) => {
            for (k, v) in more {
                known.insert(k.clone(), v.clone());
            }
        }
        _ => *slot = Some(Value::Object(more.clone())),
    }
}

/// The chunks of a whole `chat.completion`, for callers that asked to stream
/// when the serving attempt could not (streaming was stripped).
pub fn completion_chunks(body: Value, usage: Usage) -> Vec<Chunk> {
    let id = body
        .get("id")
        .cloned()
        .unwrap_or_else(|| json!("chatcmpl-switchyard"));
    let model = body.get("model").cloned().unwrap_or(Value::Null);
    let created = body.get("created").cloned().unwrap_or(json!(0));
    let message = body
        .pointer("/choices/0/message")
        .cloned()
        .unwrap_or(json!({}));
    let finish = body
        .pointer("/choices/0/finish_reason")
        .cloned()
        .unwrap_or(json!("stop"));
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }]
        })
    };
    let mut delta = json!({ "role": "assistant" });
    for key in ["content", "tool_calls", "reasoning_content", "refusal"] {
        if let Some(v) = message.get(key).filter(|v| !v.is_null()) {
            let v = if key == "tool_calls" {
                // Stream form: each call carries its index.
                Value::Array(
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .enumerate()
                        .map(|(i, call)| {
                            let mut call = call.clone();
                            call["index"] = json!(i);
                            call
                        })
                        .collect(),
                )
            } else {
                v.clone()
            };
            delta[key] = v;
        }
    }
    [
        chunk(delta, Value::Null),
        chunk(json!({}), finish),
        json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": usage.to_openai()
        }),
    ]
    .into_iter()
    .map(Chunk::from_value)
    .collect()
}

/// Chat Completions SSE: one `data:` frame per chunk, `[DONE]` at the end,
/// and an OpenAI-style error object if the upstream broke.
pub struct ChatEncoder {
    pub include_usage: bool,
}

impl StreamEncoder for ChatEncoder {
    fn chunk(&mut self, chunk: Chunk, out: &mut Vec<u8>) {
        chunk.write_sse(out);
    }

    fn done(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(sse::encode(None, "[DONE]").as_bytes());
    }

    fn error(&mut self, message: &str, out: &mut Vec<u8>) {
        let body = json!({
            "error": {
                "message": message,
                "type": "upstream_error",
                "code": "stream_interrupted",
                "param": null,
            }
        });
        out.extend_from_slice(sse::encode(None, &body.to_string()).as_bytes());
    }

    fn wants_usage(&self) -> bool {
        self.include_usage
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
