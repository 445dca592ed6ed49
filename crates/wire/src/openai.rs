//! OpenAI Chat Completions upstream: the canonical request is already its
//! wire format, so requests pass through; what needs reading is its SSE
//! stream and its error bodies.

use serde_json::Value;

use crate::chunk::{Chunk, ChunkError};
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
/// A stream that ends after a chunk with a `finish_reason` but without
/// `[DONE]` is complete (some OpenAI-compatible servers never send it).
#[derive(Default)]
pub struct Chunks {
    done: bool,
    /// A chunk carried a `finish_reason`.
    finished: bool,
    malformed: u64,
}

impl Translate for Chunks {
    fn event(&mut self, event: &mut SseEvent) -> Result<Vec<Chunk>, UpstreamError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(Vec::new());
        }
        if data.is_empty() {
            return Ok(Vec::new());
        }
        match Chunk::from_openai(std::mem::take(&mut event.data)) {
            Ok(chunk) => {
                self.finished |= chunk.any_finished();
                Ok(vec![chunk])
            }
            Err(ChunkError::Malformed(text)) => {
                event.data = text;
                self.malformed += 1;
                Ok(Vec::new())
            }
            Err(ChunkError::Reported(message)) => Err(UpstreamError::new(
                ErrorClass::Retryable,
                Some(200),
                message,
            )),
        }
    }

    fn finish(&mut self) -> Result<Vec<Chunk>, UpstreamError> {
        stream_end(self.done || self.finished, "[DONE]")
    }

    fn ended(&self) -> bool {
        self.done
    }

    fn malformed(&self) -> u64 {
        self.malformed
    }
}
