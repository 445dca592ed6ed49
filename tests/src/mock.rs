//! In-process mock LLM providers speaking the real OpenAI and Anthropic wire
//! formats, for the end-to-end tests.
//!
//! ```ignore
//! let openai = MockProvider::start(Flavor::OpenAi).await;
//! openai.push(Behavior::RateLimited { retry_after_secs: 1 }); // first request
//! openai.set_default(Behavior::Text("hi there".into()));      // every later one
//! // point the gateway at openai.base_url() ...
//! assert_eq!(openai.hits(), 2);
//! ```
//!
//! # URL conventions
//!
//! * [`Flavor::OpenAi`]: [`MockProvider::base_url`] is `http://127.0.0.1:PORT/v1`
//!   (like `https://api.openai.com/v1`); requests go to
//!   `POST {base}/chat/completions`, or to `POST {base}/responses` (the
//!   Responses API: `input` instead of `messages`, answers as `response`
//!   objects and `response.*` events).
//! * [`Flavor::Anthropic`]: [`MockProvider::base_url`] is `http://127.0.0.1:PORT`
//!   (like `https://api.anthropic.com`); requests go to `POST {base}/v1/messages`.
//!
//! Any other method or path gets a provider-shaped 404 (and is still recorded).
//!
//! # Request handling
//!
//! Every request is recorded first ([`MockProvider::requests`]). Then, like the
//! real services, the mock checks authentication (OpenAI: `Authorization: Bearer
//! <non-empty>` else 401; Anthropic: `x-api-key` else 401, `anthropic-version`
//! else 400) and validates the body minimally (JSON object with a string `model`;
//! OpenAI: non-empty `messages` array; Anthropic: integer `max_tokens`, non-empty
//! `messages` whose roles are `user`/`assistant`, alternating, starting with
//! `user`), answering 400 with a provider-shaped body otherwise. Only a request
//! that passes these checks consumes a [`Behavior`]: the oldest pushed one, or
//! else the default.
//!
//! Responses echo the requested `model`. Usage: prompt tokens =
//! [`prompt_tokens`] (text characters of `system` and the messages / 4, min 1),
//! completion tokens = [`completion_tokens`] of the answer (whitespace-separated
//! words, min 1; for tool calls, of the serialized arguments). Streamed text comes
//! word by word (each piece keeps its leading whitespace), [`CHUNK_DELAY_MS`]
//! apart.

use std::collections::{BTreeMap, VecDeque};
use std::future::pending;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Pause between two streamed chunks.
pub const CHUNK_DELAY_MS: u64 = 5;

/// Which provider API the mock speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `POST /v1/chat/completions`.
    OpenAi,
    /// `POST /v1/messages`.
    Anthropic,
}

impl Flavor {
    fn name(self) -> &'static str {
        match self {
            Flavor::OpenAi => "OpenAI",
            Flavor::Anthropic => "Anthropic",
        }
    }
}

/// What the mock does with one (authenticated, valid) request.
///
/// The `Stream*` behaviours are meant for streaming requests; on a
/// non-streaming request they do the nearest equivalent: `StreamDieBeforeContent`
/// sends a 200 with headers and drops the connection before any body byte,
/// `StreamStallBeforeContent` sends a 200 with headers and hangs,
/// `StreamCutAfterContent` sends the first half of the JSON body then drops the
/// connection, and `StreamErrorEvent` answers the provider's overload error
/// (OpenAI 500 `server_error`, Anthropic 529 `overloaded_error`).
#[derive(Debug, Clone, PartialEq)]
pub enum Behavior {
    /// Answer with this text (streamed or not, as the request asks).
    Text(String),
    /// Answer with one tool call (streamed or not). As the tools behaviour
    /// ([`MockProvider::set_tools_behavior`]), a conversation that ends with
    /// a tool result is answered instead with the text `The tool said:
    /// <result>`, so a tool loop can run to its final answer.
    ToolCall { name: String, arguments: Value },
    /// Provider-shaped error body with this status. Anthropic error types by
    /// status: 400 invalid_request_error, 401 authentication_error, 402
    /// billing_error, 403 permission_error, 404 not_found_error, 413
    /// request_too_large, 429 rate_limit_error, 500 api_error, 529
    /// overloaded_error (other 4xx invalid_request_error, other 5xx api_error).
    /// OpenAI: `invalid_request_error` for 4xx (code `invalid_api_key` on 401,
    /// `model_not_found` on 404), `requests`/`rate_limit_exceeded` on 429,
    /// `server_error` for 5xx.
    Error { status: u16, message: String },
    /// 429 with a `retry-after` header and a provider-shaped body.
    RateLimited { retry_after_secs: u64 },
    /// Accept the request and never answer (until the client gives up).
    Stall,
    /// Streaming: send headers and the role chunk / `message_start`, then drop
    /// the connection.
    StreamDieBeforeContent,
    /// Streaming: send headers and the role chunk / `message_start`, then hang.
    StreamStallBeforeContent,
    /// Streaming: send the start and all of `text` as deltas, then drop the
    /// connection without finish chunk / `[DONE]` / `message_stop`.
    StreamCutAfterContent { text: String },
    /// Streaming. Anthropic: `message_start`, then `event: error` with
    /// `overloaded_error`, then the stream ends cleanly. OpenAI: the role chunk,
    /// then `data: {"error":{...server_error...}}`, then the stream ends cleanly
    /// without `[DONE]`.
    StreamErrorEvent,
    /// Wait `delay_ms` before answering (before the response headers), then
    /// behave as `Text(text)`.
    Slow { delay_ms: u64, text: String },
    /// Streaming: answer `text` with one of the stream faults of the failover
    /// catalogue (README "Failover"). Not streaming: answer `text`.
    StreamFault { fault: StreamFault, text: String },
    /// Answer exactly this: status, headers and body (a redirect, a body
    /// too large to be an answer, ...).
    Raw {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
}

/// How a [`Behavior::StreamFault`] stream misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFault {
    /// One event whose data is not JSON, in the middle of the content.
    MalformedEvent,
    /// The whole answer with its finish (`finish_reason` and usage, or
    /// `message_delta` with the stop reason), then the body ends without the
    /// end marker (`[DONE]`, `message_stop`).
    NoEndMarker,
    /// The whole answer, end marker included, then the connection stays open.
    OpenAfterEnd,
    /// The first half of the content, then nothing, connection open.
    StallMidStream,
    /// The first `n` content pieces (words of a text answer), then the
    /// connection drops: no finish, no usage, no end marker.
    CutAfter(usize),
    /// The whole answer and its finish (`finish_reason` without the usage
    /// chunk; Anthropic's `message_delta`), then the connection drops
    /// before the end marker.
    DropAfterFinish,
}

/// What the mock does with a conversation that ends with an assistant
/// message (a prefill).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefill {
    /// Continue it, as Anthropic's Messages API does (and vLLM or llama.cpp
    /// servers asked to): the answer is the behaviour's text after the
    /// prefill, when the text begins with it.
    Continue,
    /// Answer the conversation anew, as OpenAI's API does.
    Ignore,
    /// Refuse it with a 400, as models that do not support prefill do.
    Reject,
}

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path without the query, e.g. `/v1/messages`.
    pub path: String,
    pub query: Option<String>,
    /// Lowercased header name → value (repeated headers joined with `, `).
    pub headers: BTreeMap<String, String>,
    /// Parsed JSON body, or `Value::Null` if the body was empty or not JSON.
    pub body: Value,
}

impl RecordedRequest {
    /// Value of a header (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// Prompt tokens the mock charges for a request body: the characters of the
/// text content of `system` (Responses: `instructions` and `input`) and of
/// every message (string contents, and the
/// `text`/`content` of content parts), divided by 4, at least 1.
pub fn prompt_tokens(body: &Value) -> u64 {
    let mut chars = text_chars(body.get("system").unwrap_or(&Value::Null))
        + text_chars(body.get("instructions").unwrap_or(&Value::Null))
        + text_chars(body.get("input").unwrap_or(&Value::Null));
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        for m in messages {
            chars += text_chars(m.get("content").unwrap_or(&Value::Null));
        }
    }
    ((chars / 4) as u64).max(1)
}

/// Completion tokens the mock charges for an answer: its whitespace-separated
/// words, at least 1.
pub fn completion_tokens(text: &str) -> u64 {
    (text.split_whitespace().count() as u64).max(1)
}

fn text_chars(v: &Value) -> usize {
    match v {
        Value::String(s) => s.chars().count(),
        Value::Array(parts) => parts.iter().map(text_chars).sum(),
        Value::Object(o) => {
            o.get("text").map(text_chars).unwrap_or(0)
                + o.get("content").map(text_chars).unwrap_or(0)
        }
        _ => 0,
    }
}

/// Split `text` into word pieces, each keeping its leading whitespace, whose
/// concatenation is `text`.
pub fn word_pieces(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut cur = String::new();
    let mut prev_ws = true;
    for c in text.chars() {
        let ws = c.is_whitespace();
        if ws && !prev_ws && !cur.is_empty() {
            pieces.push(std::mem::take(&mut cur));
        }
        cur.push(c);
        prev_ws = ws;
    }
    if !cur.is_empty() || pieces.is_empty() {
        pieces.push(cur);
    }
    pieces
}

/// Split `s` into pieces of at most `n` characters.
fn char_pieces(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    chars.chunks(n).map(|c| c.iter().collect()).collect()
}

struct Shared {
    flavor: Flavor,
    default: Mutex<Behavior>,
    queue: Mutex<VecDeque<Behavior>>,
    tools: Mutex<Option<Behavior>>,
    requests: Mutex<Vec<RecordedRequest>>,
    expected_key: Mutex<Option<String>>,
    open: Arc<AtomicUsize>,
    next_id: AtomicU64,
    prefill: Mutex<Prefill>,
    /// Connections still to be reset (RST) once their request has arrived.
    resets: Arc<AtomicUsize>,
    /// A share of requests answered with a fault drawn from a list.
    mix: Mutex<Option<FaultMix>>,
}

/// Faults drawn at random (a seeded generator: the same seed, the same
/// sequence) for a share of the requests.
struct FaultMix {
    rate: f64,
    faults: Vec<Behavior>,
    state: u64,
    injected: Vec<u64>,
}

impl FaultMix {
    /// splitmix64: small, seedable, good enough to pick faults.
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn draw(&mut self) -> Option<Behavior> {
        let roll = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        if roll >= self.rate || self.faults.is_empty() {
            return None;
        }
        let i = (self.next() % self.faults.len() as u64) as usize;
        self.injected[i] += 1;
        Some(self.faults[i].clone())
    }
}

/// The mock's listener: connections go to the HTTP server, except those
/// [`MockProvider::reset_connections`] asked to reset.
struct MockListener {
    inner: tokio::net::TcpListener,
    resets: Arc<AtomicUsize>,
}

impl axum::serve::Listener for MockListener {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.inner.accept().await else {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            };
            let take = self
                .resets
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if !take {
                return (stream, addr);
            }
            tokio::spawn(reset_after_request_head(stream));
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Reads a request's head, then resets the connection (RST, no response).
async fn reset_after_request_head(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let _ = stream.set_zero_linger();
    drop(stream);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A mock provider listening on `127.0.0.1:<ephemeral>`. The server stops when
/// this value is dropped.
pub struct MockProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl MockProvider {
    /// Bind `127.0.0.1:0` and serve in a background task of the current Tokio
    /// runtime.
    pub async fn start(flavor: Flavor) -> MockProvider {
        let shared = Arc::new(Shared {
            flavor,
            default: Mutex::new(Behavior::Text(format!("Hello from {} mock", flavor.name()))),
            queue: Mutex::new(VecDeque::new()),
            tools: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
            expected_key: Mutex::new(None),
            open: Arc::new(AtomicUsize::new(0)),
            next_id: AtomicU64::new(1),
            prefill: Mutex::new(match flavor {
                Flavor::Anthropic => Prefill::Continue,
                Flavor::OpenAi => Prefill::Ignore,
            }),
            resets: Arc::new(AtomicUsize::new(0)),
            mix: Mutex::new(None),
        });
        let inner = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("mock provider: bind 127.0.0.1:0");
        let addr = inner.local_addr().expect("mock provider: local_addr");
        let listener = MockListener {
            inner,
            resets: shared.resets.clone(),
        };
        let app = Router::new()
            .fallback(handle)
            .layer(DefaultBodyLimit::max(64 << 20))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockProvider {
            addr,
            shared,
            server,
        }
    }

    pub fn flavor(&self) -> Flavor {
        self.shared.flavor
    }

    /// The socket address the mock listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// OpenAI: `http://127.0.0.1:PORT/v1` (requests go to `{base}/chat/completions`).
    /// Anthropic: `http://127.0.0.1:PORT` (requests go to `{base}/v1/messages`).
    pub fn base_url(&self) -> String {
        match self.shared.flavor {
            Flavor::OpenAi => format!("http://{}/v1", self.addr),
            Flavor::Anthropic => format!("http://{}", self.addr),
        }
    }

    /// Full URL of the completion endpoint.
    pub fn endpoint_url(&self) -> String {
        match self.shared.flavor {
            Flavor::OpenAi => format!("{}/chat/completions", self.base_url()),
            Flavor::Anthropic => format!("{}/v1/messages", self.base_url()),
        }
    }

    /// Behaviour for every request once the pushed ones are used up.
    pub fn set_default(&self, b: Behavior) {
        *lock(&self.shared.default) = b;
    }

    /// One-shot behaviour, consumed in FIFO order before the default.
    pub fn push(&self, b: Behavior) {
        lock(&self.shared.queue).push_back(b);
    }

    /// What the mock does with a conversation ending in an assistant
    /// message (default: Anthropic continues it, OpenAI answers anew).
    pub fn set_prefill(&self, p: Prefill) {
        *lock(&self.shared.prefill) = p;
    }

    /// Answers a share `rate` (0.0 to 1.0) of the requests that have no
    /// pushed behaviour with one of `faults`, drawn at random from `seed`.
    pub fn set_fault_mix(&self, rate: f64, faults: Vec<Behavior>, seed: u64) {
        let injected = vec![0; faults.len()];
        *lock(&self.shared.mix) = Some(FaultMix {
            rate,
            faults,
            state: seed,
            injected,
        });
    }

    /// How many times each fault of the mix was injected, in its order.
    pub fn faults_injected(&self) -> Vec<u64> {
        lock(&self.shared.mix)
            .as_ref()
            .map(|m| m.injected.clone())
            .unwrap_or_default()
    }

    /// Resets (TCP RST) the next `n` new connections once their request head
    /// has arrived, before any response byte. Reset connections are not
    /// recorded as requests.
    pub fn reset_connections(&self, n: usize) {
        self.shared.resets.fetch_add(n, Ordering::SeqCst);
    }

    /// Behaviour for every request that carries a non-empty `tools` array
    /// (ahead of pushed and default behaviours); `None` to stop.
    pub fn set_tools_behavior(&self, b: Option<Behavior>) {
        *lock(&self.shared.tools) = b;
    }

    /// Only accept this API key (other keys get the provider's 401). By default
    /// any non-empty key is accepted.
    pub fn expect_api_key(&self, key: Option<&str>) {
        *lock(&self.shared.expected_key) = key.map(str::to_owned);
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Number of requests received so far (valid or not).
    pub fn hits(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// Streamed response bodies currently alive (started and not yet dropped
    /// by the server, which drops them when they finish or the client goes).
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Poll until `open_connections() == n`; false if `timeout` passes first.
    pub async fn wait_open_connections(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.open_connections() == n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

// ---------------------------------------------------------------------------
// Request handling

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let mut recorded = BTreeMap::new();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        recorded
            .entry(name.as_str().to_owned())
            .and_modify(|v: &mut String| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    lock(&shared.requests).push(RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: recorded,
        body: parsed.clone().unwrap_or(Value::Null),
    });

    let flavor = shared.flavor;
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let responses = flavor == Flavor::OpenAi && uri.path() == "/v1/responses";
    let expected = match flavor {
        Flavor::OpenAi if responses => "/v1/responses",
        Flavor::OpenAi => "/v1/chat/completions",
        Flavor::Anthropic => "/v1/messages",
    };
    if method != Method::POST || uri.path() != expected {
        let message = match flavor {
            Flavor::OpenAi => format!("Invalid URL ({} {})", method, uri.path()),
            Flavor::Anthropic => "Not Found".to_owned(),
        };
        return error_response(flavor, 404, &message, id);
    }

    let expected_key = lock(&shared.expected_key).clone();
    if let Err(resp) = check_auth(flavor, &headers, expected_key.as_deref(), id) {
        return *resp;
    }
    let body = match validate(flavor, responses, parsed, id) {
        Ok(b) => b,
        Err(resp) => return *resp,
    };

    let has_tools = body
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty());
    let tools_behavior = if has_tools {
        lock(&shared.tools)
            .clone()
            .map(|b| match tool_result(flavor, responses, &body) {
                // The tool has answered: the model answers the user with it.
                Some(result) => Behavior::Text(format!("The tool said: {result}")),
                None => b,
            })
    } else {
        None
    };
    let behavior = tools_behavior.unwrap_or_else(|| {
        lock(&shared.queue)
            .pop_front()
            .or_else(|| lock(&shared.mix).as_mut().and_then(FaultMix::draw))
            .unwrap_or_else(|| lock(&shared.default).clone())
    });
    let behavior = match (prefill_text(&body, responses), *lock(&shared.prefill)) {
        (Some(_), Prefill::Reject) => {
            let message = match flavor {
                Flavor::Anthropic => {
                    "This model does not support assistant message prefill. The conversation must end with a user message."
                }
                Flavor::OpenAi => "The last message must have role `user` or `tool`.",
            };
            return error_response(flavor, 400, message, id);
        }
        (Some(prefill), Prefill::Continue) => continue_after(behavior, &prefill),
        _ => behavior,
    };

    let ctx = Ctx {
        flavor,
        responses,
        model: body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        include_usage: body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        prompt_tokens: prompt_tokens(&body),
        id,
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    respond(&shared, &ctx, behavior).await
}

fn check_auth(
    flavor: Flavor,
    headers: &HeaderMap,
    expected: Option<&str>,
    id: u64,
) -> Result<(), Box<Response>> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    match flavor {
        Flavor::OpenAi => {
            let Some(auth) = get("authorization") else {
                return Err(Box::new(openai_error(
                    401,
                    "You didn't provide an API key. You need to provide your API key in an \
                     Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    "invalid_request_error",
                    Value::Null,
                    id,
                )));
            };
            let key = auth
                .strip_prefix("Bearer ")
                .or_else(|| auth.strip_prefix("bearer "))
                .map(str::trim)
                .unwrap_or("");
            if key.is_empty() || expected.is_some_and(|e| e != key) {
                return Err(Box::new(openai_error(
                    401,
                    "Incorrect API key provided. You can find your API key at \
                     https://platform.openai.com/account/api-keys.",
                    "invalid_request_error",
                    json!("invalid_api_key"),
                    id,
                )));
            }
            Ok(())
        }
        Flavor::Anthropic => {
            let Some(key) = get("x-api-key") else {
                return Err(Box::new(error_response(
                    flavor,
                    401,
                    "x-api-key header is required",
                    id,
                )));
            };
            if expected.is_some_and(|e| e != key) {
                return Err(Box::new(error_response(
                    flavor,
                    401,
                    "invalid x-api-key",
                    id,
                )));
            }
            if get("anthropic-version").is_none() {
                return Err(Box::new(error_response(
                    flavor,
                    400,
                    "anthropic-version: header is required",
                    id,
                )));
            }
            Ok(())
        }
    }
}

fn validate(
    flavor: Flavor,
    responses: bool,
    body: Option<Value>,
    id: u64,
) -> Result<Value, Box<Response>> {
    let bad = |message: &str, param: &str| {
        Box::new(match flavor {
            Flavor::OpenAi => {
                let param = if param.is_empty() {
                    Value::Null
                } else {
                    json!(param)
                };
                openai_error_param(
                    400,
                    message,
                    "invalid_request_error",
                    param,
                    Value::Null,
                    id,
                )
            }
            Flavor::Anthropic => error_response(flavor, 400, message, id),
        })
    };
    let Some(body) = body else {
        return Err(Box::new(match flavor {
            Flavor::OpenAi => openai_error(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means \
                 you aren't using your HTTP library correctly. The OpenAI API expects a JSON \
                 payload, but what was sent was not valid JSON.)",
                "invalid_request_error",
                Value::Null,
                id,
            ),
            Flavor::Anthropic => error_response(
                flavor,
                400,
                "There was an issue with the JSON body of your request",
                id,
            ),
        }));
    };
    if !body.is_object() {
        return Err(bad("The request body must be a JSON object", ""));
    }
    if !body.get("model").is_some_and(Value::is_string) {
        return Err(match flavor {
            Flavor::OpenAi => bad("you must provide a model parameter", "model"),
            Flavor::Anthropic => bad("model: Field required", "model"),
        });
    }
    if let Some(stream) = body.get("stream")
        && !stream.is_boolean()
        && !stream.is_null()
    {
        return Err(bad("stream: Input should be a valid boolean", "stream"));
    }
    let messages = body.get("messages").and_then(Value::as_array);
    match flavor {
        Flavor::OpenAi if responses => match body.get("input") {
            Some(Value::String(_)) => {}
            Some(Value::Array(items)) if !items.is_empty() => {}
            _ => return Err(bad("Missing required parameter: 'input'.", "input")),
        },
        Flavor::OpenAi => {
            let Some(messages) = messages else {
                return Err(bad("Missing required parameter: 'messages'.", "messages"));
            };
            if messages.is_empty() {
                return Err(bad("[] is too short - 'messages'", "messages"));
            }
            for (i, m) in messages.iter().enumerate() {
                if !m.get("role").is_some_and(Value::is_string) {
                    return Err(bad(
                        &format!("Missing required parameter: 'messages[{i}].role'."),
                        &format!("messages[{i}].role"),
                    ));
                }
            }
        }
        Flavor::Anthropic => {
            if !body
                .get("max_tokens")
                .is_some_and(|v| v.is_u64() || v.is_i64())
            {
                return Err(bad("max_tokens: Field required", "max_tokens"));
            }
            let Some(messages) = messages else {
                return Err(bad("messages: Field required", "messages"));
            };
            if messages.is_empty() {
                return Err(bad(
                    "messages: at least one message is required",
                    "messages",
                ));
            }
            let mut prev: Option<&str> = None;
            for (i, m) in messages.iter().enumerate() {
                let role = m.get("role").and_then(Value::as_str);
                let Some(role @ ("user" | "assistant")) = role else {
                    return Err(bad(
                        &format!("messages.{i}.role: Input should be 'user' or 'assistant'"),
                        "",
                    ));
                };
                if m.get("content")
                    .is_none_or(|c| !(c.is_string() || c.is_array()))
                {
                    return Err(bad(&format!("messages.{i}.content: Field required"), ""));
                }
                if i == 0 && role != "user" {
                    return Err(bad(
                        "messages: first message must use the \"user\" role",
                        "",
                    ));
                }
                if prev == Some(role) {
                    return Err(bad(
                        &format!(
                            "messages: roles must alternate between \"user\" and \"assistant\", \
                             but found multiple \"{role}\" roles in a row"
                        ),
                        "",
                    ));
                }
                prev = Some(role);
            }
        }
    }
    Ok(body)
}

/// The text of the assistant message a conversation ends with (a prefill).
fn prefill_text(body: &Value, responses: bool) -> Option<String> {
    if responses {
        return None;
    }
    let last = body.get("messages")?.as_array()?.last()?;
    if last.get("role")?.as_str()? != "assistant" || last.get("tool_calls").is_some() {
        return None;
    }
    match last.get("content")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect(),
        ),
        _ => None,
    }
}

/// `behavior` continuing `prefill`: its text after the prefill, when the
/// text begins with it (whitespace the prefill was trimmed of included).
fn continue_after(behavior: Behavior, prefill: &str) -> Behavior {
    let rest = |text: String| match text.strip_prefix(prefill.trim_end()) {
        Some(rest) => rest.to_owned(),
        None => text,
    };
    match behavior {
        Behavior::Text(t) => Behavior::Text(rest(t)),
        Behavior::Slow { delay_ms, text } => Behavior::Slow {
            delay_ms,
            text: rest(text),
        },
        Behavior::StreamFault { fault, text } => Behavior::StreamFault {
            fault,
            text: rest(text),
        },
        Behavior::StreamCutAfterContent { text } => {
            Behavior::StreamCutAfterContent { text: rest(text) }
        }
        other => other,
    }
}

/// The text of the tool result the conversation ends with, if it ends with
/// one (OpenAI: a `tool` message; Anthropic: a user turn of `tool_result`
/// blocks).
fn tool_result(flavor: Flavor, responses: bool, body: &Value) -> Option<String> {
    if responses {
        let last = body.get("input")?.as_array()?.last()?;
        return (last.get("type")?.as_str()? == "function_call_output").then(|| {
            last.get("output")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        });
    }
    let last = body.get("messages")?.as_array()?.last()?;
    let text_of = |content: &Value| match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    };
    match flavor {
        Flavor::OpenAi => {
            (last.get("role")?.as_str()? == "tool").then(|| text_of(&last["content"]))
        }
        Flavor::Anthropic => {
            let blocks = last.get("content")?.as_array()?;
            let results: Vec<String> = blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                .map(|b| text_of(b.get("content").unwrap_or(&Value::Null)))
                .collect();
            (!results.is_empty()).then(|| results.join("\n"))
        }
    }
}

struct Ctx {
    flavor: Flavor,
    /// An OpenAI Responses API request (`/v1/responses`).
    responses: bool,
    model: String,
    stream: bool,
    include_usage: bool,
    prompt_tokens: u64,
    id: u64,
    created: u64,
}

impl Ctx {
    fn message_id(&self) -> String {
        match self.flavor {
            Flavor::OpenAi if self.responses => format!("resp_mock{:016x}", self.id),
            Flavor::OpenAi => format!("chatcmpl-mock{:016x}", self.id),
            Flavor::Anthropic => format!("msg_mock{:016x}", self.id),
        }
    }
    fn tool_id(&self) -> String {
        match self.flavor {
            Flavor::OpenAi => format!("call_mock{:016x}", self.id),
            Flavor::Anthropic => format!("toolu_mock{:016x}", self.id),
        }
    }
}

/// The answer a successful behaviour produces.
enum Answer {
    Text(String),
    Tool { name: String, arguments: Value },
}

impl Answer {
    fn completion_tokens(&self) -> u64 {
        match self {
            Answer::Text(t) => completion_tokens(t),
            Answer::Tool { arguments, .. } => completion_tokens(&arguments.to_string()),
        }
    }
}

async fn respond(shared: &Shared, ctx: &Ctx, behavior: Behavior) -> Response {
    let flavor = ctx.flavor;
    match behavior {
        Behavior::Text(text) => answer(shared, ctx, Answer::Text(text)),
        Behavior::ToolCall { name, arguments } => {
            answer(shared, ctx, Answer::Tool { name, arguments })
        }
        Behavior::Slow { delay_ms, text } => {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            answer(shared, ctx, Answer::Text(text))
        }
        Behavior::Error { status, message } => error_response(flavor, status, &message, ctx.id),
        Behavior::Raw {
            status,
            headers,
            body,
        } => {
            let mut resp = Response::new(axum::body::Body::from(body));
            *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            for (name, value) in headers {
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(&value),
                ) {
                    resp.headers_mut().append(name, value);
                }
            }
            resp
        }
        Behavior::RateLimited { retry_after_secs } => {
            let mut resp = match flavor {
                Flavor::OpenAi => openai_error(
                    429,
                    &format!(
                        "Rate limit reached for {} in organization org-mock on requests per min \
                         (RPM): Limit 3, Used 3, Requested 1. Please try again in {retry_after_secs}s.",
                        ctx.model
                    ),
                    "requests",
                    json!("rate_limit_exceeded"),
                    ctx.id,
                ),
                Flavor::Anthropic => error_response(
                    flavor,
                    429,
                    "This request would exceed the rate limit for your organization of 50 requests \
                     per minute. Please reduce the prompt length or the maximum tokens requested, or \
                     try again later.",
                    ctx.id,
                ),
            };
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            if flavor == Flavor::OpenAi {
                resp.headers_mut().insert(
                    HeaderName::from_static("x-ratelimit-reset-requests"),
                    HeaderValue::from_str(&format!("{retry_after_secs}s"))
                        .unwrap_or(HeaderValue::from_static("1s")),
                );
            }
            resp
        }
        Behavior::StreamFault { fault, text } => {
            let answer = Answer::Text(text);
            if !ctx.stream {
                return self::answer(shared, ctx, answer);
            }
            let mut steps = stream_start(ctx, &answer);
            let mut content = stream_content(ctx, &answer);
            let mut finish = stream_finish(ctx, &answer);
            match fault {
                StreamFault::MalformedEvent => {
                    let at = content.len() / 2;
                    let bad = match ctx.flavor {
                        Flavor::Anthropic => {
                            "event: content_block_delta\ndata: {\"type\": \"content_blo\n\n"
                        }
                        Flavor::OpenAi => "data: {\"id\": \"chatcmpl-oops\", \"choices\": [\n\n",
                    };
                    content.insert(at, Step::Data(bad.to_owned()));
                    steps.extend(content);
                    steps.extend(finish);
                }
                StreamFault::NoEndMarker => {
                    finish.pop();
                    steps.extend(content);
                    steps.extend(finish);
                }
                StreamFault::OpenAfterEnd => {
                    steps.extend(content);
                    steps.extend(finish);
                    steps.push(Step::Hang);
                }
                StreamFault::StallMidStream => {
                    let half = content.len() / 2;
                    content.truncate(half.max(1));
                    steps.extend(content);
                    steps.push(Step::Hang);
                }
                StreamFault::DropAfterFinish => {
                    let keep = match ctx.flavor {
                        Flavor::Anthropic => 3,
                        Flavor::OpenAi => 2,
                    };
                    finish.truncate(keep);
                    steps.extend(content);
                    steps.extend(finish);
                    steps.push(Step::Abort);
                }
                StreamFault::CutAfter(n) => {
                    // Each piece is a pause and its event; Anthropic's block
                    // starts with two events of its own.
                    let lead = if ctx.flavor == Flavor::Anthropic {
                        2
                    } else {
                        0
                    };
                    content.truncate(lead + 2 * n);
                    steps.extend(content);
                    steps.push(Step::Abort);
                }
            }
            streamed(shared, ctx, steps, true)
        }
        Behavior::Stall => pending().await,
        Behavior::StreamDieBeforeContent => {
            if ctx.stream {
                let mut steps = stream_start(ctx, &Answer::Text(String::new()));
                steps.push(Step::Abort);
                streamed(shared, ctx, steps, true)
            } else {
                streamed(shared, ctx, vec![Step::Abort], false)
            }
        }
        Behavior::StreamStallBeforeContent => {
            if ctx.stream {
                let mut steps = stream_start(ctx, &Answer::Text(String::new()));
                steps.push(Step::Hang);
                streamed(shared, ctx, steps, true)
            } else {
                streamed(shared, ctx, vec![Step::Hang], false)
            }
        }
        Behavior::StreamCutAfterContent { text } => {
            let answer = Answer::Text(text);
            if ctx.stream {
                let mut steps = stream_start(ctx, &answer);
                steps.extend(stream_content(ctx, &answer));
                steps.push(Step::Abort);
                streamed(shared, ctx, steps, true)
            } else {
                let full = full_body(ctx, &answer).to_string();
                let half: String = full.chars().take(full.chars().count() / 2).collect();
                streamed(shared, ctx, vec![Step::Data(half), Step::Abort], false)
            }
        }
        Behavior::StreamErrorEvent => {
            if !ctx.stream {
                return match flavor {
                    Flavor::OpenAi => error_response(
                        flavor,
                        500,
                        "The server had an error while processing your request. Sorry about that!",
                        ctx.id,
                    ),
                    Flavor::Anthropic => error_response(flavor, 529, "Overloaded", ctx.id),
                };
            }
            let mut steps = stream_start(ctx, &Answer::Text(String::new()));
            steps.push(Step::Pause(CHUNK_DELAY_MS));
            steps.push(Step::Data(match flavor {
                Flavor::OpenAi if ctx.responses => responses_event(
                    999,
                    "error",
                    json!({ "code": "server_error", "param": null,
                            "message": "The server had an error while processing your request. Sorry about that!" }),
                ),
                Flavor::OpenAi => sse_data(&json!({"error": {
                    "message": "The server had an error while processing your request. Sorry about that!",
                    "type": "server_error", "param": null, "code": null}})),
                Flavor::Anthropic => sse_event(
                    "error",
                    &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
                ),
            }));
            streamed(shared, ctx, steps, true)
        }
    }
}

fn answer(shared: &Shared, ctx: &Ctx, answer: Answer) -> Response {
    if !ctx.stream {
        let mut resp = (StatusCode::OK, axum::Json(full_body(ctx, &answer))).into_response();
        add_request_id(ctx.flavor, &mut resp, ctx.id);
        return resp;
    }
    let mut steps = stream_start(ctx, &answer);
    steps.extend(stream_content(ctx, &answer));
    steps.extend(stream_finish(ctx, &answer));
    streamed(shared, ctx, steps, true)
}

fn full_body(ctx: &Ctx, answer: &Answer) -> Value {
    let completion = answer.completion_tokens();
    match ctx.flavor {
        Flavor::OpenAi if ctx.responses => responses_object(
            ctx,
            "completed",
            vec![responses_item(ctx, answer, true)],
            completion,
        ),
        Flavor::OpenAi => {
            let (message, finish) = match answer {
                Answer::Text(t) => (
                    json!({"role": "assistant", "content": t, "refusal": null, "annotations": []}),
                    "stop",
                ),
                Answer::Tool { name, arguments } => (
                    json!({"role": "assistant", "content": null, "refusal": null, "annotations": [],
                        "tool_calls": [{"id": ctx.tool_id(), "type": "function",
                            "function": {"name": name, "arguments": arguments.to_string()}}]}),
                    "tool_calls",
                ),
            };
            json!({
                "id": ctx.message_id(),
                "object": "chat.completion",
                "created": ctx.created,
                "model": ctx.model,
                "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
                "usage": openai_usage(ctx.prompt_tokens, completion),
                "service_tier": "default",
                "system_fingerprint": "fp_mock",
            })
        }
        Flavor::Anthropic => {
            let (block, stop) = match answer {
                Answer::Text(t) => (json!({"type": "text", "text": t}), "end_turn"),
                Answer::Tool { name, arguments } => (
                    json!({"type": "tool_use", "id": ctx.tool_id(), "name": name, "input": arguments}),
                    "tool_use",
                ),
            };
            json!({
                "id": ctx.message_id(),
                "type": "message",
                "role": "assistant",
                "model": ctx.model,
                "content": [block],
                "stop_reason": stop,
                "stop_sequence": null,
                "usage": {
                    "input_tokens": ctx.prompt_tokens,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": completion,
                },
            })
        }
    }
}

/// The id of the one output item of a Responses answer.
fn responses_item_id(ctx: &Ctx, answer: &Answer) -> String {
    match answer {
        Answer::Text(_) => format!("msg_mock{:016x}", ctx.id),
        Answer::Tool { .. } => format!("fc_mock{:016x}", ctx.id),
    }
}

/// The one output item of a Responses answer (`done`: with its content).
fn responses_item(ctx: &Ctx, answer: &Answer, done: bool) -> Value {
    let status = if done { "completed" } else { "in_progress" };
    let id = responses_item_id(ctx, answer);
    match answer {
        Answer::Text(t) => json!({
            "id": id, "type": "message", "status": status, "role": "assistant",
            "content": if done { json!([{ "type": "output_text", "text": t, "annotations": [] }]) } else { json!([]) },
        }),
        Answer::Tool { name, arguments } => json!({
            "id": id, "type": "function_call", "status": status, "call_id": ctx.tool_id(),
            "name": name, "arguments": if done { arguments.to_string() } else { String::new() },
        }),
    }
}

/// A Responses API `response` object.
fn responses_object(ctx: &Ctx, status: &str, output: Vec<Value>, completion: u64) -> Value {
    let usage = if status == "completed" {
        json!({
            "input_tokens": ctx.prompt_tokens, "input_tokens_details": { "cached_tokens": 0 },
            "output_tokens": completion, "output_tokens_details": { "reasoning_tokens": 0 },
            "total_tokens": ctx.prompt_tokens + completion,
        })
    } else {
        Value::Null
    };
    json!({
        "id": ctx.message_id(), "object": "response", "created_at": ctx.created,
        "status": status, "error": null, "incomplete_details": null, "model": ctx.model,
        "output": output, "usage": usage,
    })
}

/// A Responses SSE event.
fn responses_event(sequence: u64, kind: &str, mut data: Value) -> String {
    data["type"] = json!(kind);
    data["sequence_number"] = json!(sequence);
    sse_event(kind, &data)
}

fn openai_usage(prompt: u64, completion: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    })
}

// ---------------------------------------------------------------------------
// Streaming

enum Step {
    Data(String),
    Pause(u64),
    /// Drop the connection (the body stream fails).
    Abort,
    /// Send nothing more until the client goes away.
    Hang,
}

fn sse_data(v: &Value) -> String {
    format!("data: {v}\n\n")
}

fn sse_event(name: &str, v: &Value) -> String {
    format!("event: {name}\ndata: {v}\n\n")
}

fn openai_chunk(ctx: &Ctx, choices: Value) -> String {
    let mut v = json!({
        "id": ctx.message_id(),
        "object": "chat.completion.chunk",
        "created": ctx.created,
        "model": ctx.model,
        "service_tier": "default",
        "system_fingerprint": "fp_mock",
        "choices": choices,
    });
    if ctx.include_usage {
        v["usage"] = Value::Null;
    }
    sse_data(&v)
}

fn openai_choice(delta: Value, finish: Value) -> Value {
    json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}])
}

/// Role chunk / `message_start` (+ for Anthropic, the block start and a ping).
fn stream_start(ctx: &Ctx, answer: &Answer) -> Vec<Step> {
    match ctx.flavor {
        Flavor::OpenAi if ctx.responses => {
            let created = responses_object(ctx, "in_progress", Vec::new(), 0);
            let item = responses_item(ctx, answer, false);
            let mut steps = vec![
                Step::Data(responses_event(
                    0,
                    "response.created",
                    json!({ "response": created }),
                )),
                Step::Data(responses_event(
                    1,
                    "response.output_item.added",
                    json!({ "output_index": 0, "item": item.clone() }),
                )),
            ];
            if let Answer::Text(_) = answer {
                steps.push(Step::Data(responses_event(
                    2,
                    "response.content_part.added",
                    json!({ "item_id": item["id"], "output_index": 0, "content_index": 0,
                            "part": { "type": "output_text", "text": "", "annotations": [] } }),
                )));
            }
            steps
        }
        Flavor::OpenAi => {
            let delta = match answer {
                Answer::Text(_) => json!({"role": "assistant", "content": "", "refusal": null}),
                Answer::Tool { name, .. } => {
                    json!({"role": "assistant", "content": null, "refusal": null,
                    "tool_calls": [{"index": 0, "id": ctx.tool_id(), "type": "function",
                        "function": {"name": name, "arguments": ""}}]})
                }
            };
            vec![Step::Data(openai_chunk(
                ctx,
                openai_choice(delta, Value::Null),
            ))]
        }
        Flavor::Anthropic => {
            let start = sse_event(
                "message_start",
                &json!({"type": "message_start", "message": {
                    "id": ctx.message_id(), "type": "message", "role": "assistant",
                    "model": ctx.model, "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": ctx.prompt_tokens, "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0, "output_tokens": 1}}}),
            );
            vec![Step::Data(start)]
        }
    }
}

/// The content deltas (for Anthropic preceded by `content_block_start` and a
/// `ping`, and followed by nothing: the block stop belongs to the finish).
fn stream_content(ctx: &Ctx, answer: &Answer) -> Vec<Step> {
    let mut steps = Vec::new();
    match ctx.flavor {
        Flavor::OpenAi if ctx.responses => {
            let item_id = responses_item_id(ctx, answer);
            let (kind, pieces) = match answer {
                Answer::Text(t) => ("response.output_text.delta", word_pieces(t)),
                Answer::Tool { arguments, .. } => (
                    "response.function_call_arguments.delta",
                    char_pieces(&arguments.to_string(), 8),
                ),
            };
            for (i, piece) in pieces.into_iter().enumerate() {
                steps.push(Step::Pause(CHUNK_DELAY_MS));
                steps.push(Step::Data(responses_event(
                    10 + i as u64,
                    kind,
                    json!({ "item_id": item_id, "output_index": 0, "content_index": 0, "delta": piece }),
                )));
            }
        }
        Flavor::OpenAi => match answer {
            Answer::Text(t) => {
                for piece in word_pieces(t) {
                    steps.push(Step::Pause(CHUNK_DELAY_MS));
                    steps.push(Step::Data(openai_chunk(
                        ctx,
                        openai_choice(json!({"content": piece}), Value::Null),
                    )));
                }
            }
            Answer::Tool { arguments, .. } => {
                for piece in char_pieces(&arguments.to_string(), 8) {
                    steps.push(Step::Pause(CHUNK_DELAY_MS));
                    steps.push(Step::Data(openai_chunk(
                        ctx,
                        openai_choice(
                            json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                            Value::Null,
                        ),
                    )));
                }
            }
        },
        Flavor::Anthropic => {
            let block = match answer {
                Answer::Text(_) => json!({"type": "text", "text": ""}),
                Answer::Tool { name, .. } => {
                    json!({"type": "tool_use", "id": ctx.tool_id(), "name": name, "input": {}})
                }
            };
            steps.push(Step::Data(sse_event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": block}),
            )));
            steps.push(Step::Data(sse_event("ping", &json!({"type": "ping"}))));
            let deltas: Vec<Value> = match answer {
                Answer::Text(t) => word_pieces(t)
                    .into_iter()
                    .map(|p| json!({"type": "text_delta", "text": p}))
                    .collect(),
                Answer::Tool { arguments, .. } => std::iter::once(String::new())
                    .chain(char_pieces(&arguments.to_string(), 8))
                    .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                    .collect(),
            };
            for delta in deltas {
                steps.push(Step::Pause(CHUNK_DELAY_MS));
                steps.push(Step::Data(sse_event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0, "delta": delta}),
                )));
            }
        }
    }
    steps
}

fn stream_finish(ctx: &Ctx, answer: &Answer) -> Vec<Step> {
    let completion = answer.completion_tokens();
    let mut steps = vec![Step::Pause(CHUNK_DELAY_MS)];
    match ctx.flavor {
        Flavor::OpenAi if ctx.responses => {
            let item = responses_item(ctx, answer, true);
            steps.push(Step::Data(responses_event(
                1000,
                "response.output_item.done",
                json!({ "output_index": 0, "item": item }),
            )));
            let done = responses_object(ctx, "completed", vec![item], completion);
            steps.push(Step::Data(responses_event(
                1001,
                "response.completed",
                json!({ "response": done }),
            )));
        }
        Flavor::OpenAi => {
            let finish = match answer {
                Answer::Text(_) => "stop",
                Answer::Tool { .. } => "tool_calls",
            };
            steps.push(Step::Data(openai_chunk(
                ctx,
                openai_choice(json!({}), json!(finish)),
            )));
            if ctx.include_usage {
                let usage = json!({
                    "id": ctx.message_id(),
                    "object": "chat.completion.chunk",
                    "created": ctx.created,
                    "model": ctx.model,
                    "service_tier": "default",
                    "system_fingerprint": "fp_mock",
                    "choices": [],
                    "usage": openai_usage(ctx.prompt_tokens, completion),
                });
                steps.push(Step::Data(sse_data(&usage)));
            }
            steps.push(Step::Data("data: [DONE]\n\n".to_owned()));
        }
        Flavor::Anthropic => {
            let stop = match answer {
                Answer::Text(_) => "end_turn",
                Answer::Tool { .. } => "tool_use",
            };
            steps.push(Step::Data(sse_event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            )));
            steps.push(Step::Data(sse_event(
                "message_delta",
                &json!({"type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": null},
                    "usage": {"output_tokens": completion}}),
            )));
            steps.push(Step::Data(sse_event(
                "message_stop",
                &json!({"type": "message_stop"}),
            )));
        }
    }
    steps
}

/// Counts a live streamed body in `open` for as long as it exists.
struct OpenGuard(Arc<AtomicUsize>);

impl OpenGuard {
    fn new(open: &Arc<AtomicUsize>) -> OpenGuard {
        open.fetch_add(1, Ordering::SeqCst);
        OpenGuard(open.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Response body fed by a producer task; holds the [`OpenGuard`].
struct GuardedBody {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
    _guard: OpenGuard,
}

impl Stream for GuardedBody {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

async fn produce(steps: Vec<Step>, tx: mpsc::Sender<Result<Bytes, io::Error>>) {
    for step in steps {
        match step {
            Step::Data(s) => {
                if tx.send(Ok(Bytes::from(s))).await.is_err() {
                    return;
                }
            }
            Step::Pause(ms) => {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                }
            }
            Step::Abort => {
                // Give the server time to flush what was sent, then fail the
                // body: hyper closes the connection without the final chunk.
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
                let _ = tx
                    .send(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "mock provider: connection dropped on purpose",
                    )))
                    .await;
                return;
            }
            Step::Hang => {
                tx.closed().await;
                return;
            }
        }
    }
}

fn streamed(shared: &Shared, ctx: &Ctx, steps: Vec<Step>, sse: bool) -> Response {
    let (tx, rx) = mpsc::channel(1);
    let body = GuardedBody {
        rx,
        _guard: OpenGuard::new(&shared.open),
    };
    tokio::spawn(produce(steps, tx));
    let mut resp = Response::new(Body::from_stream(body));
    let content_type = if sse {
        "text/event-stream; charset=utf-8"
    } else {
        "application/json"
    };
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if sse {
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    add_request_id(ctx.flavor, &mut resp, ctx.id);
    resp
}

// ---------------------------------------------------------------------------
// Errors

fn add_request_id(flavor: Flavor, resp: &mut Response, id: u64) {
    let (name, value) = match flavor {
        Flavor::OpenAi => ("x-request-id", format!("req_mock{id:016x}")),
        Flavor::Anthropic => ("request-id", format!("req_mock{id:016x}")),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(HeaderName::from_static(name), v);
    }
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn openai_error(status: u16, message: &str, kind: &str, code: Value, id: u64) -> Response {
    let param = Value::Null;
    openai_error_param(status, message, kind, param, code, id)
}

fn openai_error_param(
    status: u16,
    message: &str,
    kind: &str,
    param: Value,
    code: Value,
    id: u64,
) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": param, "code": code}});
    let mut resp = (status_code(status), axum::Json(body)).into_response();
    add_request_id(Flavor::OpenAi, &mut resp, id);
    resp
}

/// The Anthropic `error.type` for an HTTP status.
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// Provider-shaped error response for `status`.
fn error_response(flavor: Flavor, status: u16, message: &str, id: u64) -> Response {
    match flavor {
        Flavor::OpenAi => {
            let (kind, code) = match status {
                401 => ("invalid_request_error", json!("invalid_api_key")),
                404 => ("invalid_request_error", json!("model_not_found")),
                429 => ("requests", json!("rate_limit_exceeded")),
                500..=599 => ("server_error", Value::Null),
                _ => ("invalid_request_error", Value::Null),
            };
            openai_error(status, message, kind, code, id)
        }
        Flavor::Anthropic => {
            let body = json!({
                "type": "error",
                "error": {"type": anthropic_error_type(status), "message": message},
                "request_id": format!("req_mock{id:016x}"),
            });
            let mut resp = (status_code(status), axum::Json(body)).into_response();
            add_request_id(flavor, &mut resp, id);
            resp
        }
    }
}
