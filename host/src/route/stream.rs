//! The client side of a streamed answer: OpenAI `chat.completion.chunk` SSE
//! frames, the first carrying the routing info, usage passed on only when the
//! caller asked for it, and an explicit error event — never `[DONE]` — when the
//! upstream breaks after content has been sent.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use serde_json::{Value, json};

use super::RouteInfo;
use crate::catalog::Model;
use crate::health::{Breakers, Verdict};
use crate::metrics::telemetry::Telemetry;
use crate::metrics::{MetricStore, Sample};
use crate::providers::ChunkStream;
use switchyard_wire::{Usage, sse};

/// What is only known when a stream ends: its token usage and cost, and
/// whether it broke after content reached the caller. Recorded when dropped,
/// so a stream the caller abandons still counts what it used.
pub struct StreamTally {
    pub(super) metrics: Arc<MetricStore>,
    pub(super) telemetry: Arc<Telemetry>,
    pub(super) breakers: Arc<Breakers>,
    pub(super) team: String,
    pub(super) candidate: String,
    pub(super) provider: String,
    pub(super) model: String,
    pub(super) features: Vec<String>,
    pub(super) usage: Option<Usage>,
    pub(super) cost_usd: Option<f64>,
    pub(super) broken: bool,
    /// Records spend and corrects the rate limiter once usage is known.
    pub(super) settlement: Option<crate::spend::Settlement>,
}

impl Drop for StreamTally {
    fn drop(&mut self) {
        if let Some(usage) = &self.usage {
            self.metrics.record(
                &self.candidate,
                &self.features,
                &Sample {
                    input_tokens: Some(usage.prompt_tokens),
                    output_tokens: Some(usage.completion_tokens),
                    ..Sample::default()
                },
            );
            self.telemetry.tokens(
                &self.provider,
                &self.model,
                usage.prompt_tokens,
                usage.completion_tokens,
            );
        }
        if let Some(cost) = self.cost_usd {
            self.telemetry
                .cost(&self.team, &self.provider, &self.model, cost);
        }
        if let (Some(usage), Some(cost), Some(settlement)) =
            (&self.usage, self.cost_usd, self.settlement.take())
        {
            settlement.settle(usage, cost);
        }
        if self.broken {
            self.metrics.record_broken(&self.candidate, &self.features);
            self.breakers.record(&self.candidate, Verdict::Failure);
            self.telemetry.stream_break(&self.provider, &self.model);
        }
    }
}

fn is_usage_only(chunk: &Value) -> bool {
    chunk.get("usage").is_some_and(|u| !u.is_null())
        && chunk
            .get("choices")
            .and_then(Value::as_array)
            .is_none_or(|c| c.is_empty())
}

/// The chunks of a whole `chat.completion`, for callers that asked to stream
/// when the serving attempt could not (streaming was stripped).
pub fn from_completion(body: Value, usage: Usage) -> ChunkStream {
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
    let chunks = vec![
        Ok(chunk(delta, Value::Null)),
        Ok(chunk(json!({}), finish)),
        Ok(json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": usage.to_openai()
        })),
    ];
    Box::pin(stream::iter(chunks))
}

/// How a streamed answer is written for the caller: the SSE events of the
/// API the request came in on. It is fed canonical chunks (OpenAI
/// `chat.completion.chunk` objects; the first carries the routing info under
/// `switchyard`, the usage chunk carries `switchyard.cost_usd`) and then
/// exactly one of [`StreamEncoder::done`] or [`StreamEncoder::error`].
pub trait StreamEncoder: Send + 'static {
    /// The events for one chunk (possibly none).
    fn chunk(&mut self, chunk: Value, out: &mut Vec<u8>);
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

/// Chat Completions SSE: one `data:` frame per chunk, `[DONE]` at the end,
/// and an OpenAI-style error object if the upstream breaks.
pub struct ChatEncoder {
    pub include_usage: bool,
}

impl StreamEncoder for ChatEncoder {
    fn chunk(&mut self, chunk: Value, out: &mut Vec<u8>) {
        out.extend_from_slice(sse::encode(None, &chunk.to_string()).as_bytes());
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

struct State {
    head: std::vec::IntoIter<Value>,
    rest: ChunkStream,
    info: Option<RouteInfo>,
    model: Model,
    idle_timeout: Duration,
    done: bool,
    tally: StreamTally,
    encoder: Box<dyn StreamEncoder>,
}

impl State {
    /// Adds the routing info to the first chunk, tallies usage and cost, and
    /// encodes the chunk for the caller.
    fn render(&mut self, mut chunk: Value) -> Option<Bytes> {
        if let Some(info) = self.info.take() {
            chunk["switchyard"] = json!(info);
        }
        if let Some(usage) = chunk
            .get("usage")
            .filter(|u| !u.is_null())
            .and_then(Usage::from_openai)
        {
            let cost = self.model.cost(&usage);
            self.tally.usage = Some(usage);
            self.tally.cost_usd = Some(cost);
            if self.encoder.wants_usage() {
                chunk["switchyard"]["cost_usd"] = json!(cost);
            } else if is_usage_only(&chunk) {
                return None;
            } else if let Value::Object(map) = &mut chunk {
                map.remove("usage");
            }
        }
        let mut out = Vec::new();
        self.encoder.chunk(chunk, &mut out);
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    fn end(&mut self, error: Option<&str>) -> Bytes {
        self.done = true;
        let mut out = Vec::new();
        match error {
            None => self.encoder.done(&mut out),
            Some(message) => {
                self.tally.broken = true;
                self.encoder.error(message, &mut out);
            }
        }
        Bytes::from(out)
    }
}

/// The SSE body for a streamed answer.
pub fn client_sse(
    info: RouteInfo,
    head: Vec<Value>,
    rest: ChunkStream,
    model: Model,
    idle_timeout: Duration,
    tally: StreamTally,
    encoder: Box<dyn StreamEncoder>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    let state = State {
        head: head.into_iter(),
        rest,
        info: Some(info),
        model,
        idle_timeout,
        done: false,
        tally,
        encoder,
    };
    stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        loop {
            if let Some(chunk) = state.head.next() {
                match state.render(chunk) {
                    Some(bytes) => return Some((Ok(bytes), state)),
                    None => continue,
                }
            }
            match tokio::time::timeout(state.idle_timeout, state.rest.next()).await {
                Ok(Some(Ok(chunk))) => {
                    if let Some(bytes) = state.render(chunk) {
                        return Some((Ok(bytes), state));
                    }
                }
                Ok(None) => {
                    let bytes = state.end(None);
                    return Some((Ok(bytes), state));
                }
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %e.message, "upstream stream broke after content");
                    let bytes =
                        state.end(Some(&format!("the provider's stream broke: {}", e.message)));
                    return Some((Ok(bytes), state));
                }
                Err(_) => {
                    let message = format!(
                        "the provider sent nothing for {} ms",
                        state.idle_timeout.as_millis()
                    );
                    let bytes = state.end(Some(&message));
                    return Some((Ok(bytes), state));
                }
            }
        }
    })
}
