//! Anthropic's Messages API over HTTP, translated to and from the canonical
//! OpenAI shapes by [`translate`].

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;

use switchyard_wire::anthropic::{self as translate, StreamTranslator};
use switchyard_wire::{ErrorClass, UpstreamError};

use super::http;
use super::{ChatCall, ChatResponse, Provider};

/// The `anthropic-version` header sent on every call.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

pub struct Anthropic {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    url: reqwest::Url,
    api_key: reqwest::header::HeaderValue,
    /// Largest answer read (`max_response_bytes`).
    max_body: usize,
}

impl Anthropic {
    /// `base_url` is the API root (e.g. `https://api.anthropic.com`);
    /// `max_body`: the largest non-streamed answer read; `connect_timeout`:
    /// see [`http::client`].
    pub fn new(
        base_url: &str,
        api_key: &str,
        max_body: usize,
        connect_timeout: std::time::Duration,
    ) -> Result<Self, String> {
        Ok(Self {
            inner: Arc::new(Inner {
                client: http::client(connect_timeout)?,
                url: http::endpoint(base_url, "/v1/messages")?,
                api_key: http::secret_header(api_key)?,
                max_body,
            }),
        })
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Provider for Anthropic {
    fn chat(&self, call: ChatCall) -> BoxFuture<'static, Result<ChatResponse, UpstreamError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let model = call.model;
            let body = translate::request(&call.body, &model, call.stream)
                .map_err(|e| UpstreamError::new(ErrorClass::Client, Some(400), e.to_string()))?;
            let request = inner
                .client
                .post(inner.url.clone())
                .header("x-api-key", inner.api_key.clone())
                .header("anthropic-version", ANTHROPIC_VERSION)
                .json(&body);
            let response = http::send(request, translate::upstream_error).await?;
            let created = now();
            if call.stream {
                let id = format!("chatcmpl-{:016x}", fastrand::u64(..));
                let events = translate::Events::new(StreamTranslator::new(id, model, created));
                return Ok(ChatResponse::Stream(http::sse_chunks(
                    response,
                    events,
                    call.on_malformed,
                )));
            }
            let status = response.status().as_u16();
            let body = http::json_body(response, inner.max_body).await?;
            let (body, usage) = translate::response(&body, &model, created).map_err(|e| {
                UpstreamError::new(ErrorClass::Protocol, Some(status), e.to_string())
            })?;
            Ok(ChatResponse::Complete {
                body: switchyard_wire::completion::Completion::from_value(body),
                usage,
            })
        })
    }
}
