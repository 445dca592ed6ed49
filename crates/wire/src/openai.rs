//! OpenAI Chat Completions upstream: the canonical request is already its
//! wire format, so requests pass through; what needs reading is its SSE
//! stream and its error bodies.

use serde_json::Value;

use crate::sse::{SseEvent, Translate, stream_end};
use crate::{ErrorClass, UpstreamError};

/// The OpenAI-style `error.message` of a body, or its text.
pub fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| v.get("error").and_then(Value::as_str).map(str::to_string))
        })
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                "(empty error body)".to_string()
            } else {
                text.chars().take(1024).collect()
            }
        })
}

/// OpenAI's own SSE: one JSON chunk per `data:`, ended by `data: [DONE]`.
#[derive(Default)]
pub struct Chunks {
    done: bool,
}

impl Translate for Chunks {
    fn event(&mut self, event: &SseEvent) -> Result<Vec<Value>, UpstreamError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(Vec::new());
        }
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let chunk: Value = serde_json::from_str(data).map_err(|e| {
            UpstreamError::new(
                ErrorClass::Protocol,
                Some(200),
                format!("invalid stream chunk: {e}"),
            )
        })?;
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the provider reported an error mid-stream")
                .to_string();
            return Err(UpstreamError::new(
                ErrorClass::Retryable,
                Some(200),
                message,
            ));
        }
        Ok(vec![chunk])
    }

    fn finish(&mut self) -> Result<Vec<Value>, UpstreamError> {
        stream_end(self.done, "[DONE]")
    }
}
