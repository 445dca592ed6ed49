//! An instant OpenAI-style provider for `bench/overhead.sh`: it answers
//! `POST /v1/chat/completions` at once with a fixed completion, or with a fixed
//! SSE stream when the body asks for `"stream": true`, and `POST /v1/responses`
//! with a fixed Responses object (where the gateway sends `/v1/responses`
//! requests for `openai` accounts). It records nothing, so
//! it can take any load for as long as a benchmark runs. The load generator
//! hits it directly for the baseline, and through the gateway for the
//! comparison.
//!
//! `bench-mock [ADDR] [--chunk-delay-ms N]`: with a delay, a stream's chunks
//! are spaced N ms apart (the memory benchmark holds 1,000 streams open).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, Response, StatusCode, header};
use axum::routing::post;
use futures_util::stream;

const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1763700000,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the benchmark provider."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}"#;

/// The chunks of one stream, as OpenAI sends them: a role, content pieces, a
/// finish reason, the usage (asked for by `stream_options.include_usage`) and `[DONE]`.
const CHUNKS: [&str; 7] = [
    "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1763700000,\"model\":\"bench-model\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1763700000,\"model\":\"bench-model\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello from\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1763700000,\"model\":\"bench-model\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" the benchmark\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1763700000,\"model\":\"bench-model\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" provider.\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1763700000,\"model\":\"bench-model\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1763700000,\"model\":\"bench-model\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7,\"total_tokens\":19}}\n\n",
    "data: [DONE]\n\n",
];

const RESPONSE: &str = r#"{"id":"resp_bench","object":"response","created_at":1763700000,"status":"completed","model":"bench-model","output":[{"type":"message","id":"msg_bench","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hello from the benchmark provider.","annotations":[]}]}],"usage":{"input_tokens":12,"output_tokens":7,"total_tokens":19}}"#;

const NO_STREAMED_RESPONSES: &str = r#"{"error":{"message":"the benchmark provider does not stream the Responses API","type":"invalid_request_error","param":"stream","code":null}}"#;

#[derive(Clone, Copy)]
struct Settings {
    chunk_delay: Option<Duration>,
}

async fn chat(State(settings): State<Settings>, body: Bytes) -> Response<Body> {
    let mut response = if !is_streaming(&body) {
        let mut r = Response::new(Body::from(COMPLETION));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    } else {
        let body = match settings.chunk_delay {
            None => Body::from(CHUNKS.concat()),
            Some(delay) => Body::from_stream(stream::unfold(0usize, move |i| async move {
                if i >= CHUNKS.len() {
                    return None;
                }
                if i > 0 {
                    tokio::time::sleep(delay).await;
                }
                Some((
                    Ok::<_, std::convert::Infallible>(Bytes::from_static(CHUNKS[i].as_bytes())),
                    i + 1,
                ))
            })),
        };
        let mut r = Response::new(body);
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        r
    };
    response
        .headers_mut()
        .insert("x-request-id", HeaderValue::from_static("req_bench"));
    response
}

async fn responses(body: Bytes) -> Response<Body> {
    let (status, text) = if is_streaming(&body) {
        (StatusCode::BAD_REQUEST, NO_STREAMED_RESPONSES)
    } else {
        (StatusCode::OK, RESPONSE)
    };
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn is_streaming(body: &[u8]) -> bool {
    memchr(b"\"stream\":true", body) || memchr(b"\"stream\": true", body)
}

fn memchr(needle: &[u8], haystack: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::main]
async fn main() {
    let mut addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 9500));
    let mut settings = Settings { chunk_delay: None };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--chunk-delay-ms" => {
                let ms = args.next().and_then(|v| v.parse::<u64>().ok());
                let Some(ms) = ms else {
                    eprintln!("--chunk-delay-ms takes a number of milliseconds");
                    std::process::exit(2);
                };
                settings.chunk_delay = Some(Duration::from_millis(ms));
            }
            other => match other.parse() {
                Ok(a) => addr = a,
                Err(_) => {
                    eprintln!("usage: bench-mock [ADDR] [--chunk-delay-ms N]");
                    std::process::exit(2);
                }
            },
        }
    }
    if !addr.ip().is_loopback() {
        eprintln!("bench-mock only listens on loopback, not {addr}");
        std::process::exit(2);
    }
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/responses", post(responses))
        .with_state(settings);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("bench-mock listening on http://{addr}");
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("bench-mock stopped: {e}");
        std::process::exit(1);
    }
}
