//! The `simulated` provider kind: a clearly labelled stand-in for a real
//! provider, with configurable latency, failure rate and 429s, answering with
//! canned text. It makes no network call. For demos and load tests only.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use futures_util::stream;
use serde_json::{Value, json};
use switchyard_wire::chunk::Chunk;

use switchyard_wire::{ErrorClass, UpstreamError, Usage};

use super::{ChatCall, ChatResponse, Provider};
use crate::config::SimulatedConfig;

pub struct Simulated {
    account: String,
    config: SimulatedConfig,
}

impl Simulated {
    pub fn new(account: &str, config: SimulatedConfig) -> Self {
        Self {
            account: account.to_string(),
            config,
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Provider for Simulated {
    fn chat(&self, call: ChatCall) -> BoxFuture<'static, Result<ChatResponse, UpstreamError>> {
        let config = self.config.clone();
        let account = self.account.clone();
        Box::pin(async move {
            let model = call.model;
            // ±20% jitter around the configured latency.
            let latency =
                Duration::from_millis(config.latency_ms).mul_f64(0.8 + fastrand::f64() * 0.4);
            tokio::time::sleep(latency).await;
            let roll = fastrand::f64();
            if roll < config.failure_rate {
                return Err(UpstreamError::new(
                    ErrorClass::Retryable,
                    Some(503),
                    format!(
                        "simulated failure of account {account} (failure_rate = {})",
                        config.failure_rate
                    ),
                ));
            }
            if roll < config.failure_rate + config.rate_limit_rate {
                return Err(UpstreamError::new(
                    ErrorClass::RateLimited {
                        retry_after: Some(Duration::from_secs(1)),
                    },
                    Some(429),
                    format!(
                        "simulated rate limit of account {account} (rate_limit_rate = {})",
                        config.rate_limit_rate
                    ),
                ));
            }
            let text = format!("{} [simulated: {model} via {account}]", config.text);
            let prompt_tokens = serde_json::to_string(&call.body.messages)
                .map_or(1, |m| m.len() as u64 / 4)
                .max(1);
            let words: Vec<String> = text.split_inclusive(' ').map(str::to_string).collect();
            let usage = Usage {
                prompt_tokens,
                completion_tokens: words.len() as u64,
                cached_tokens: 0,
            };
            let id = format!("chatcmpl-sim-{:016x}", fastrand::u64(..));
            let created = now();
            if !call.stream {
                let body = json!({
                    "id": id, "object": "chat.completion", "created": created, "model": model,
                    "choices": [{ "index": 0, "message": { "role": "assistant", "content": text }, "finish_reason": "stop" }],
                    "usage": usage.to_openai(),
                });
                return Ok(ChatResponse::Complete {
                    body: switchyard_wire::completion::Completion::from_value(body),
                    usage,
                });
            }
            let chunk = |delta: Value, finish: Value| {
                json!({
                    "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
                })
            };
            let mut chunks = vec![chunk(
                json!({ "role": "assistant", "content": "" }),
                Value::Null,
            )];
            chunks.extend(
                words
                    .iter()
                    .map(|w| chunk(json!({ "content": w }), Value::Null)),
            );
            chunks.push(chunk(json!({}), json!("stop")));
            chunks.push(json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [], "usage": usage.to_openai(),
            }));
            let delay = Duration::from_millis(config.word_delay_ms);
            let stream = stream::unfold(
                (chunks.into_iter(), true),
                move |(mut it, first)| async move {
                    let chunk = it.next()?;
                    if !first {
                        tokio::time::sleep(delay).await;
                    }
                    Some((Ok(Chunk::from_value(chunk)), (it, false)))
                },
            );
            Ok(ChatResponse::Stream(Box::pin(stream)))
        })
    }
}
