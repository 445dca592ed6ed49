//! OpenAI and OpenAI-compatible servers (Ollama, vLLM, llama.cpp): the
//! canonical request is already their Chat Completions wire format, so it
//! passes through. On OpenAI itself, requests that came in on `/v1/responses`
//! go to its Responses endpoint instead (see [`super::responses`]).

use std::sync::Arc;

use futures_util::future::BoxFuture;
use switchyard_wire::completion::{Completion, CompletionError};

use switchyard_wire::responses_out as responses;
use switchyard_wire::{Api, ErrorClass, UpstreamError, Usage, openai};

use super::http;
use super::{ChatCall, ChatResponse, Provider};

/// An OpenAI Chat Completions endpoint.
pub struct OpenAi {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    url: reqwest::Url,
    /// `{base}/responses`, on accounts that have OpenAI's Responses API.
    responses_url: Option<reqwest::Url>,
    /// `Bearer {api key}`.
    authorization: Option<reqwest::header::HeaderValue>,
    /// Largest answer read (`max_response_bytes`).
    max_body: usize,
}

impl OpenAi {
    /// `base_url` ends before `/chat/completions` (e.g. `https://api.openai.com/v1`);
    /// `responses`: whether the server also has `/responses` (OpenAI does).
    /// `max_body`: the largest non-streamed answer read; `connect_timeout`:
    /// see [`http::client`].
    pub fn new(
        base_url: &str,
        api_key: Option<&str>,
        responses: bool,
        max_body: usize,
        connect_timeout: std::time::Duration,
    ) -> Result<Self, String> {
        Ok(Self {
            inner: Arc::new(Inner {
                client: http::client(connect_timeout)?,
                url: http::endpoint(base_url, "/chat/completions")?,
                responses_url: if responses {
                    Some(http::endpoint(base_url, "/responses")?)
                } else {
                    None
                },
                authorization: api_key
                    .map(|key| http::secret_header(&format!("Bearer {key}")))
                    .transpose()?,
                max_body,
            }),
        })
    }
}

impl Inner {
    /// POSTs `body` with the account's key; an error status becomes a
    /// classified [`UpstreamError`] with OpenAI's message.
    async fn post(
        &self,
        url: &reqwest::Url,
        body: &impl serde::Serialize,
    ) -> Result<reqwest::Response, UpstreamError> {
        let mut request = self.client.post(url.clone()).json(body);
        if let Some(authorization) = &self.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization.clone());
        }
        http::send(request, |status, retry_after, body| {
            UpstreamError::from_status(status, retry_after, openai::error_message(body))
        })
        .await
    }
}

impl Provider for OpenAi {
    fn chat(&self, call: ChatCall) -> BoxFuture<'static, Result<ChatResponse, UpstreamError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            if call.api == Api::Responses
                && let Some(url) = &inner.responses_url
                && responses::expressible(&call.body)
            {
                return responses_call(&inner, url, call).await;
            }
            // Streaming asks for usage, needed for cost; the executor hides it
            // from callers who did not ask for it.
            let body = call.body.upstream(&call.model, call.stream);
            let response = inner.post(&inner.url, &body).await?;
            if call.stream {
                return Ok(ChatResponse::Stream(http::sse_chunks(
                    response,
                    openai::Chunks::default(),
                    call.on_malformed,
                )));
            }
            let status = response.status().as_u16();
            let bytes = http::body_bytes(response, inner.max_body).await?;
            let (body, usage) =
                Completion::from_openai(bytes, call.api == Api::Chat).map_err(|e| match e {
                    CompletionError::Invalid(e) => http::invalid_body(status, e),
                    CompletionError::NoChoices => UpstreamError::new(
                        ErrorClass::Protocol,
                        Some(status),
                        "response has no choices",
                    ),
                })?;
            let usage = usage
                .as_ref()
                .and_then(Usage::from_openai)
                .unwrap_or_default();
            Ok(ChatResponse::Complete { body, usage })
        })
    }
}

/// One call to OpenAI's Responses endpoint, read back as canonical chunks or
/// a canonical completion.
async fn responses_call(
    inner: &Inner,
    url: &reqwest::Url,
    call: ChatCall,
) -> Result<ChatResponse, UpstreamError> {
    let body = responses::request(&call.body, &call.model, call.stream);
    let response = inner.post(url, &body).await?;
    if call.stream {
        return Ok(ChatResponse::Stream(http::sse_chunks(
            response,
            responses::Events::default(),
            call.on_malformed,
        )));
    }
    let status = response.status().as_u16();
    let body = http::json_body(response, inner.max_body).await?;
    let (body, usage) = responses::response(&body).map_err(|mut e| {
        e.status = Some(status);
        e
    })?;
    Ok(ChatResponse::Complete {
        body: Completion::from_value(body),
        usage,
    })
}
