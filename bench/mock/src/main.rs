//! An instant OpenAI-style provider for `bench/overhead.sh`: it answers
//! `POST /v1/chat/completions` at once with a fixed completion, or with a fixed
//! SSE stream when the body asks for `"stream": true`, and `POST /v1/responses`
//! with a fixed Responses object (where the gateway sends `/v1/responses`
//! requests for `openai` accounts). It records nothing, so
//! it can take any load for as long as a benchmark runs. The load generator
//! hits it directly for the baseline, and through the gateway for the
//! comparison.
//!
//! `bench-mock [ADDR] [--chunk-delay-ms N] [--stream-chunks N]`: with a
//! delay, a stream's chunks are spaced N ms apart (the memory benchmark holds
//! 1,000 streams open); `--stream-chunks` sets how many content chunks a
//! stream has (3 by default, the pieces of the same sentence over and over),
//! so that the cost of one relayed chunk is the difference between two
//! lengths.

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

#[derive(Clone)]
struct Settings {
    chunk_delay: Option<Duration>,
    /// The SSE events of a stream, in order.
    chunks: std::sync::Arc<Vec<Bytes>>,
}

/// A stream with `content` content chunks: the role, the pieces of the
/// sentence over and over, the finish, the usage and `[DONE]`.
fn stream_chunks(content: usize) -> Vec<Bytes> {
    let pieces = &CHUNKS[1..4];
    let mut out = vec![Bytes::from_static(CHUNKS[0].as_bytes())];
    out.extend((0..content).map(|i| Bytes::from_static(pieces[i % pieces.len()].as_bytes())));
    out.extend(CHUNKS[4..].iter().map(|c| Bytes::from_static(c.as_bytes())));
    out
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
        let chunks = settings.chunks.clone();
        let body = match settings.chunk_delay {
            None => Body::from(chunks.concat()),
            Some(delay) => Body::from_stream(stream::unfold(0usize, move |i| {
                let chunks = chunks.clone();
                async move {
                    let chunk = chunks.get(i)?.clone();
                    if i > 0 {
                        tokio::time::sleep(delay).await;
                    }
                    Some((Ok::<_, std::convert::Infallible>(chunk), i + 1))
                }
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
    let mut chunk_delay = None;
    let mut content_chunks = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--chunk-delay-ms" => {
                let ms = args.next().and_then(|v| v.parse::<u64>().ok());
                let Some(ms) = ms else {
                    eprintln!("--chunk-delay-ms takes a number of milliseconds");
                    std::process::exit(2);
                };
                chunk_delay = Some(Duration::from_millis(ms));
            }
            "--stream-chunks" => {
                let Some(n) = args.next().and_then(|v| v.parse::<usize>().ok()) else {
                    eprintln!("--stream-chunks takes a number of content chunks");
                    std::process::exit(2);
                };
                content_chunks = n;
            }
            other => match other.parse() {
                Ok(a) => addr = a,
                Err(_) => {
                    eprintln!("usage: bench-mock [ADDR] [--chunk-delay-ms N] [--stream-chunks N]");
                    std::process::exit(2);
                }
            },
        }
    }
    let settings = Settings {
        chunk_delay,
        chunks: std::sync::Arc::new(stream_chunks(content_chunks)),
    };
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
