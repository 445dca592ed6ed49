//! What came back from a provider: a classified failure ([`UpstreamError`]),
//! token usage ([`Usage`]), and the inbound API a request used ([`Api`]).

use std::time::Duration;

use serde_json::Value;

/// How an upstream failure should be treated.
#[derive(Debug, Clone, PartialEq)]
pub enum ErrorClass {
    /// 5xx or an overloaded answer: try the next attempt.
    Retryable,
    /// 429: try elsewhere; this account may be used again after `retry_after`.
    RateLimited { retry_after: Option<Duration> },
    /// No answer (or no first token) in time.
    Timeout,
    /// The connection could not be made or broke before a response.
    Connect,
    /// 402 / quota or credit exhausted: put the account in cooldown, try elsewhere.
    QuotaExhausted,
    /// The provider refused the request itself (400, 404, 413, 422...): the
    /// caller's fault; never retried.
    Client,
    /// 401/403 from the provider: our credentials are wrong; try elsewhere.
    Auth,
    /// The provider answered with something we cannot parse.
    Protocol,
    /// The request is longer than the model's context window: a limit of
    /// the model, not the caller's fault. Never sent to that model again;
    /// a candidate with a larger window may take it.
    ContextLength,
}

impl ErrorClass {
    /// Whether the executor should move on to the next attempt.
    pub fn fails_over(&self) -> bool {
        !matches!(self, ErrorClass::Client)
    }

    /// Short name for logs, metrics and the attempt trail.
    pub fn name(&self) -> &'static str {
        match self {
            ErrorClass::Retryable => "upstream_error",
            ErrorClass::RateLimited { .. } => "rate_limited",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Connect => "connect_error",
            ErrorClass::QuotaExhausted => "quota_exhausted",
            ErrorClass::Client => "invalid_request",
            ErrorClass::Auth => "upstream_auth",
            ErrorClass::Protocol => "bad_upstream_response",
            ErrorClass::ContextLength => "context_length_exceeded",
        }
    }
}

/// Longest upstream error message kept, in characters.
const MAX_MESSAGE_CHARS: usize = 1000;

/// A classified upstream failure with the provider's own message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct UpstreamError {
    pub class: ErrorClass,
    /// HTTP status the provider answered with, if it answered.
    pub status: Option<u16>,
    /// The provider's message (from its error body when it sent one).
    pub message: String,
}

impl UpstreamError {
    /// `message` is escaped and trimmed ([`crate::text::printable`]): it
    /// is often the provider's own text, and it reaches logs and callers.
    pub fn new(class: ErrorClass, status: Option<u16>, message: impl Into<String>) -> Self {
        Self {
            class,
            status,
            message: crate::text::printable(&message.into(), MAX_MESSAGE_CHARS),
        }
    }

    /// Classifies an HTTP error status; `retry_after` from the response headers.
    pub fn from_status(status: u16, retry_after: Option<Duration>, message: String) -> Self {
        let class = match status {
            429 => ErrorClass::RateLimited { retry_after },
            402 => ErrorClass::QuotaExhausted,
            401 | 403 => ErrorClass::Auth,
            408 => ErrorClass::Timeout,
            // Anthropic's "overloaded" and every server-side failure.
            500..=599 => ErrorClass::Retryable,
            400 | 413 if is_context_length(&message) => ErrorClass::ContextLength,
            _ => ErrorClass::Client,
        };
        Self::new(class, Some(status), message)
    }
}

/// Whether a provider's refusal says the request exceeds the model's
/// context window: OpenAI's `context_length_exceeded` ("This model's maximum
/// context length is ..."), Anthropic's "prompt is too long" and "exceed
/// context limit", and the wording OpenAI-compatible servers use.
fn is_context_length(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "maximum context length",
        "context_length_exceeded",
        "prompt is too long",
        "exceed context limit",
        "context window",
        "too many tokens",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

/// The text of a canonical message content: a string, or the `text` of its
/// content parts joined.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// Token usage of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Input tokens, cached ones included.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Input tokens served from the provider's prompt cache.
    pub cached_tokens: u64,
}

impl Usage {
    /// Reads an OpenAI `usage` object.
    pub fn from_openai(usage: &Value) -> Option<Usage> {
        let prompt_tokens = usage.get("prompt_tokens")?.as_u64()?;
        Some(Usage {
            prompt_tokens,
            completion_tokens: usage
                .get("completion_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            cached_tokens: usage
                .pointer("/prompt_tokens_details/cached_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        })
    }

    /// Writes an OpenAI `usage` object.
    pub fn to_openai(&self) -> Value {
        serde_json::json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": { "cached_tokens": self.cached_tokens },
        })
    }
}

/// The API a request came in on. An adapter that speaks it natively uses it
/// (OpenAI accounts serve `/v1/responses` requests on their `/responses`
/// endpoint); every adapter can serve every API from the canonical body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Api {
    #[default]
    Chat,
    Responses,
    Messages,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_overflow_is_told_from_the_callers_own_400() {
        let class = |status, message: &str| {
            UpstreamError::from_status(status, None, message.to_owned()).class
        };
        for overflow in [
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.",
            "prompt is too long: 210000 tokens > 200000 maximum",
            "input length and `max_tokens` exceed context limit: 190000 + 20000 > 200000",
            "Error code: context_length_exceeded",
        ] {
            assert_eq!(
                class(400, overflow),
                ErrorClass::ContextLength,
                "{overflow}"
            );
        }
        assert_eq!(
            class(
                400,
                "Your request was rejected as a result of our safety system."
            ),
            ErrorClass::Client
        );
        assert_eq!(
            class(400, "Invalid value for 'temperature'"),
            ErrorClass::Client
        );
        // Not a 4xx: a server error stays retryable whatever it says.
        assert_eq!(class(500, "prompt is too long"), ErrorClass::Retryable);
        assert!(ErrorClass::ContextLength.fails_over());
    }
}
