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
mod simulated;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use futures_util::future::BoxFuture;
use switchyard_wire::chunk::Chunk;
use switchyard_wire::completion::Completion;
use switchyard_wire::{Api, CanonicalRequest, UpstreamError, Usage};

use crate::config::{ProviderAccount, ProviderKind, Secret};
pub use anthropic::{ANTHROPIC_VERSION, Anthropic};
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
            account.connect_timeout,
        )?),
        ProviderKind::OpenaiCompatible => Arc::new(OpenAi::new(
            &account.base_url,
            account.api_key.as_ref().map(Secret::expose),
            false,
            account.max_response_bytes,
            account.connect_timeout,
        )?),
        ProviderKind::Anthropic => Arc::new(Anthropic::new(
            &account.base_url,
            account.api_key.as_ref().map_or("", Secret::expose),
            account.max_response_bytes,
            account.connect_timeout,
        )?),
        ProviderKind::Simulated => Arc::new(Simulated::new(
            &account.name,
            account.simulated.clone().unwrap_or_default(),
        )),
    })
}

/// One call to a provider.
#[derive(Debug, Clone)]
pub struct ChatCall {
    /// The canonical request with the plan's stripped features removed.
    pub body: Arc<CanonicalRequest>,
    /// The provider's own id for the model.
    pub model: String,
    /// Whether to stream.
    pub stream: bool,
    /// Time limit for the whole non-streaming call, or, when streaming, for the
    /// response headers and the first content token.
    pub timeout: Duration,
    /// The API the caller used.
    pub api: Api,
    /// Told of each malformed event a streamed answer skipped.
    pub on_malformed: Option<Malformed>,
}

/// What a stream calls for each malformed upstream event it skips (the
/// executor counts it per provider and model).
#[derive(Clone)]
pub struct Malformed(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Malformed")
    }
}

/// A stream of OpenAI `chat.completion.chunk` objects.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Chunk, UpstreamError>> + Send>>;

/// What a provider answered.
pub enum ChatResponse {
    /// A whole OpenAI `chat.completion` object and its usage.
    Complete { body: Completion, usage: Usage },
    /// Chunks in OpenAI `chat.completion.chunk` shape, in order; the last one
    /// carries `usage` when the provider reports it.
    Stream(ChunkStream),
}
