//! HTTP plumbing shared by the adapters: the client, error classification of
//! transport failures and error responses, retry-after, and SSE bodies turned
//! into chunk streams.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use reqwest::header::HeaderMap;
use serde_json::Value;

use switchyard_wire::chunk::Chunk;
use switchyard_wire::sse::{SseDecoder, SseEvent, Translate};
use switchyard_wire::{ErrorClass, UpstreamError};

use super::ChunkStream;

/// Largest error body read from a provider.
const MAX_ERROR_BODY: usize = 64 << 10;

/// A client for one provider account. It never follows a redirect: a
/// provider API does not redirect a POST, and following one would send the
/// account's key to wherever the `Location` points (reqwest's default policy
/// strips `Authorization` on a cross-host hop, but not `x-api-key`). A 3xx is
/// an upstream error instead (see [`send`]).
/// `connect_timeout`: how long a TCP (and TLS) connect may take before the
/// attempt fails over (`connect_timeout_ms` of the account).
pub fn client(connect_timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build HTTP client: {e}"))
}

/// `{base}{path}` as a URL, parsed once when the account is set up rather
/// than on every request.
pub fn endpoint(base: &str, path: &str) -> Result<reqwest::Url, String> {
    let text = format!("{}{path}", base.trim_end_matches('/'));
    reqwest::Url::parse(&text).map_err(|e| format!("invalid base_url {base:?}: {e}"))
}

/// A credential header value, built once and marked sensitive (kept out of
/// debug output).
pub fn secret_header(value: &str) -> Result<reqwest::header::HeaderValue, String> {
    let mut header = reqwest::header::HeaderValue::from_str(value)
        .map_err(|_| "the API key holds characters an HTTP header cannot carry".to_string())?;
    header.set_sensitive(true);
    Ok(header)
}

/// Classifies a transport failure. The message names what went wrong, never
/// the URL (the caller sees it, and an internal account's address is not
/// theirs to know; the attempt trail names the account instead).
pub fn transport_error(err: reqwest::Error) -> UpstreamError {
    let class = if err.is_timeout() {
        ErrorClass::Timeout
    } else {
        ErrorClass::Connect
    };
    let status = err.status().map(|s| s.as_u16());
    let err = err.without_url();
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    UpstreamError::new(class, status, message)
}

/// `retry-after-ms`, or `retry-after` in seconds.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let read = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = read("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return (ms.is_finite() && ms >= 0.0).then(|| Duration::from_secs_f64(ms / 1000.0));
    }
    read("retry-after")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// Reads (at most 64 KiB of) an error response body.
pub async fn error_body(response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = MAX_ERROR_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    body
}

/// Sends a request. A non-2xx answer becomes the error `classify` makes of its
/// status, retry-after and body.
pub async fn send(
    request: reqwest::RequestBuilder,
    classify: fn(u16, Option<Duration>, &[u8]) -> UpstreamError,
) -> Result<reqwest::Response, UpstreamError> {
    let response = request.send().await.map_err(transport_error)?;
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status().as_u16();
    if response.status().is_redirection() {
        // Not followed (see [`client`]): failed over like a server error.
        return Err(UpstreamError::new(
            ErrorClass::Retryable,
            Some(status),
            format!(
                "the provider answered {status} (a redirect); the gateway does not follow redirects from providers, so the request was not sent elsewhere"
            ),
        ));
    }
    let retry_after = retry_after(response.headers());
    let body = error_body(response).await;
    Err(classify(status, retry_after, &body))
}

/// Reads a whole JSON response body of at most `limit` bytes; a larger one
/// is a provider fault (failed over), not something to buffer.
pub async fn json_body(response: reqwest::Response, limit: usize) -> Result<Value, UpstreamError> {
    let status = response.status().as_u16();
    let body = body_bytes(response, limit).await?;
    serde_json::from_slice(&body).map_err(|e| invalid_body(status, e))
}

/// A provider's body that is not what its API answers.
pub fn invalid_body(status: u16, e: impl std::fmt::Display) -> UpstreamError {
    UpstreamError::new(
        ErrorClass::Protocol,
        Some(status),
        format!("invalid response body: {e}"),
    )
}

/// Reads a whole response body of at most `limit` bytes (see [`json_body`]).
pub async fn body_bytes(
    response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, UpstreamError> {
    let status = response.status().as_u16();
    let too_large = |size: u64| {
        UpstreamError::new(
            ErrorClass::Protocol,
            Some(status),
            format!(
                "the provider's answer is larger than the {limit} byte limit (max_response_bytes) at {size} bytes; it was not read"
            ),
        )
    };
    if let Some(declared) = response.content_length()
        && declared > limit as u64
    {
        return Err(too_large(declared));
    }
    let mut body = Vec::with_capacity(response.content_length().unwrap_or(0) as usize);
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(transport_error)?;
        if body.len() + chunk.len() > limit {
            return Err(too_large((body.len() + chunk.len()) as u64));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

struct SseState<T> {
    on_malformed: Option<super::Malformed>,
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<Bytes>> + Send>>,
    decoder: SseDecoder,
    translate: T,
    /// Chunks translated and not yet yielded.
    pending: std::collections::VecDeque<Chunk>,
    /// An error to yield once `pending` is empty; then the stream ends.
    error: Option<UpstreamError>,
    ended: bool,
}

impl<T: Translate> SseState<T> {
    fn translate_all(&mut self, events: Vec<SseEvent>) {
        for mut event in events {
            let malformed = self.translate.malformed();
            match self.translate.event(&mut event) {
                Ok(chunks) => self.pending.extend(chunks),
                Err(e) => {
                    self.error = Some(e);
                    self.ended = true;
                    return;
                }
            }
            if self.translate.malformed() > malformed {
                let data: String = event.data.chars().take(120).collect();
                tracing::warn!(
                    data = %switchyard_wire::text::printable(&data, 120),
                    "skipped a malformed upstream stream event"
                );
                if let Some(hook) = &self.on_malformed {
                    (hook.0)();
                }
            }
            // The end marker: the answer is whole; whatever follows (or a
            // connection the provider keeps open) is not waited for.
            if self.translate.ended() {
                self.ended = true;
                return;
            }
        }
    }
}

/// The chunks of an SSE response body, in order, ending with an error if the
/// body breaks or ends before the provider's end-of-stream marker. Dropping the
/// stream drops the connection.
pub fn sse_chunks<T: Translate>(
    response: reqwest::Response,
    translate: T,
    on_malformed: Option<super::Malformed>,
) -> ChunkStream {
    let state = SseState {
        on_malformed,
        body: Box::pin(response.bytes_stream()),
        decoder: SseDecoder::new(),
        translate,
        pending: Default::default(),
        error: None,
        ended: false,
    };
    Box::pin(stream::unfold(state, |mut s| async move {
        loop {
            if let Some(chunk) = s.pending.pop_front() {
                return Some((Ok(chunk), s));
            }
            if let Some(e) = s.error.take() {
                return Some((Err(e), s));
            }
            if s.ended {
                return None;
            }
            match s.body.next().await {
                Some(Ok(bytes)) => match s.decoder.push(&bytes) {
                    Ok(events) => s.translate_all(events),
                    Err(e) => {
                        s.ended = true;
                        s.error = Some(UpstreamError::new(
                            ErrorClass::Protocol,
                            Some(200),
                            e.to_string(),
                        ));
                    }
                },
                Some(Err(e)) => {
                    s.ended = true;
                    let mut err = transport_error(e);
                    err.message = format!("stream broke: {}", err.message);
                    s.error = Some(err);
                }
                None => {
                    let last: Vec<SseEvent> = s.decoder.finish().into_iter().collect();
                    s.translate_all(last);
                    if s.error.is_none() {
                        match s.translate.finish() {
                            Ok(chunks) => s.pending.extend(chunks),
                            Err(e) => s.error = Some(e),
                        }
                    }
                    s.ended = true;
                }
            }
        }
    }))
}
