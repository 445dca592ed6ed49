//! The wire vocabulary of Switchyard: what the three inbound APIs (OpenAI
//! Chat Completions and Responses, Anthropic Messages) and the provider
//! formats say, and the pure translations between them.
//!
//! Nothing here does I/O or depends on an async runtime, an HTTP stack or the
//! WebAssembly runtime (a test in `tests/all/architecture.rs` keeps it so).
//! Every function is a plain transformation, unit-tested on fixtures beside
//! it (`*_tests.rs`).
//!
//! | module | what it holds |
//! |---|---|
//! | [`request`] | [`CanonicalRequest`]: the typed Chat Completions request every API is translated into, with a passthrough map for what the gateway only forwards |
//! | [`content`] | what a request is about, for policies that ask: the last user turn's and the system prompt's text, cut to a limit, and counts over the conversation |
//! | [`feature`] | the feature table of DESIGN §4: [`Feature`], the compact [`FeatureSet`], detecting the features a canonical request uses, and stripping one |
//! | [`upstream`] | [`UpstreamError`] and its [`ErrorClass`], [`Usage`], the inbound [`Api`] |
//! | [`sse`] | the Server-Sent Events decoder and encoder, and the [`sse::Translate`] trait upstream stream translators implement |
//! | [`candidate`] | [`CandidateId`] (`account/model`) and [`candidate::CandidateRef`], the one place ids are written and split |
//! | [`error`] | [`RequestError`]: why an inbound body was refused, with a typed [`error::RequestCode`] |
//! | [`responses_in`] | OpenAI Responses ⇄ canonical, caller side: request translation, answers and SSE events |
//! | [`messages_in`] | Anthropic Messages ⇄ canonical, caller side: request translation, answers and SSE events |
//! | [`chunk`] | one streamed `chat.completion.chunk`: a provider's text relayed as sent (read once for what the gateway needs), or a value the gateway built |
//! | [`stream`] | a streamed answer between executor and edge: [`stream::StreamEvent`], the [`stream::StreamEncoder`] trait, the Chat Completions encoder |
//! | [`openai`] | OpenAI Chat Completions upstream: its SSE chunks and error bodies |
//! | [`anthropic`] | canonical (Chat Completions) ⇄ Anthropic Messages, upstream side |
//! | [`responses_out`] | canonical ⇄ OpenAI Responses, upstream side (an OpenAI account serving `/v1/responses`) |
//! | [`text`] | making untrusted text printable before it reaches a log or a caller |

pub mod anthropic;
pub mod candidate;
pub mod chunk;
pub mod completion;
pub mod content;
pub mod error;
pub mod feature;
pub mod messages_in;
pub mod openai;
pub mod request;
pub mod responses_in;
pub mod responses_out;
pub mod shape;
pub mod sse;
pub mod stream;
pub mod text;
pub mod upstream;

pub use candidate::CandidateId;
pub use error::RequestError;
pub use feature::{Effort, Feature, FeatureSet};
pub use request::CanonicalRequest;
pub use upstream::{Api, ErrorClass, UpstreamError, Usage, content_text};

/// A new object id for an answer the gateway writes itself (`msg_…`,
/// `resp_…`): the prefix and 128 random bits in hex.
pub(crate) fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}_{:016x}{:016x}",
        fastrand::u64(..),
        fastrand::u64(..)
    )
}
