//! Provider adapters: translate the canonical request (an OpenAI Chat
//! Completions body) into a provider's wire format, call it, and translate the
//! answer back into OpenAI chat completion / chunk JSON.
//!
//! Every adapter classifies failures into an [`UpstreamError`] so the executor
//! can decide between failing over and giving up, and keeps the provider's own
//! message for the caller.

pub mod anthropic;
mod http;
mod openai;
mod responses;
mod simulated;
pub mod sse;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

use crate::config::{ProviderAccount, ProviderKind, Secret};
pub use anthropic::{ANTHROPIC_VERSION, Anthropic};
pub use http::DEFAULT_MAX_RESPONSE_BYTES;
pub use openai::OpenAi;
pub use simulated::Simulated;

/// A provider account's adapter.
pub trait Provider: Send + Sync {
    /// Makes one call. The returned future owns everything it needs; dropping
    /// it (or the stream it yields) abandons the upstream connection.
    fn chat(&self, call: ChatCall) -> BoxFuture<'static, Result<ChatResponse, UpstreamError>>;
}

/// The adapter for a configured account.
pub fn build(account: &ProviderAccount) -> Result<Arc<dyn Provider>, String> {
    Ok(match account.kind {
        ProviderKind::Openai => Arc::new(OpenAi::new(
            &account.base_url,
            account.api_key.as_ref().map(Secret::expose),
            true,
            account.max_response_bytes,
        )?),
        ProviderKind::OpenaiCompatible => Arc::new(OpenAi::new(
            &account.base_url,
            account.api_key.as_ref().map(Secret::expose),
            false,
            account.max_response_bytes,
        )?),
        ProviderKind::Anthropic => Arc::new(Anthropic::new(
            &account.base_url,
            account.api_key.as_ref().map_or("", Secret::expose),
            account.max_response_bytes,
        )?),
        ProviderKind::Simulated => Arc::new(Simulated::new(
            &account.name,
            account.simulated.clone().unwrap_or_default(),
        )),
    })
}

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
            _ => ErrorClass::Client,
        };
        Self::new(class, Some(status), message)
    }
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

/// One call to a provider.
#[derive(Debug, Clone)]
pub struct ChatCall {
    /// Canonical request body (OpenAI Chat Completions shape) with the plan's
    /// stripped features removed; `model` is already the provider's model id.
    pub body: Map<String, Value>,
    /// Whether to stream.
    pub stream: bool,
    /// Time limit for the whole non-streaming call, or, when streaming, for the
    /// response headers and the first content token.
    pub timeout: Duration,
    /// The API the caller used.
    pub api: Api,
}

/// A stream of OpenAI `chat.completion.chunk` objects.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Value, UpstreamError>> + Send>>;

/// What a provider answered.
pub enum ChatResponse {
    /// A whole OpenAI `chat.completion` object and its usage.
    Complete { body: Value, usage: Usage },
    /// Chunks in OpenAI `chat.completion.chunk` shape, in order; the last one
    /// carries `usage` when the provider reports it.
    Stream(ChunkStream),
}
