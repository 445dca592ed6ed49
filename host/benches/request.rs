//! Cost of the canonical request on the request path: reading a Chat
//! Completions body, detecting its features, and writing the body an
//! OpenAI-compatible provider receives, for one attempt and for a failover
//! to a second one.
//!
//! `typed` is the gateway's path ([`CanonicalRequest`]); `json_map` is what a
//! request held as a `serde_json::Map` costs for the same work (parse into a
//! map, copy it for each attempt to set the upstream model, write it), kept
//! here as the baseline the typed request replaced (issue 17).
//!
//! `cargo bench -p switchyard --bench request`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Map, Value, json};
use switchyard_wire::CanonicalRequest;
use switchyard_wire::feature::detect;

/// The body `bench/overhead.sh` sends.
fn small() -> Vec<u8> {
    br#"{"model":"gpt-5-mini","messages":[{"role":"user","content":"Say hello."}],"max_tokens":64}"#
        .to_vec()
}

/// An agent turn: a system prompt, tools, twelve messages with tool calls
/// and results, sampling options and metadata (~5 KB).
fn agent() -> Vec<u8> {
    let mut messages =
        vec![json!({ "role": "system", "content": "You are a careful assistant. ".repeat(20) })];
    for i in 0..5 {
        messages.push(json!({ "role": "user", "content": format!("Step {i}: look up the weather in city number {i} and summarise it.") }));
        messages.push(json!({ "role": "assistant", "content": null, "tool_calls": [{ "id": format!("call_{i}"), "type": "function", "function": { "name": "get_weather", "arguments": format!("{{\"city\":\"c{i}\"}}") } }] }));
        messages.push(json!({ "role": "tool", "tool_call_id": format!("call_{i}"), "content": "sunny, 21 degrees, light wind from the west" }));
    }
    messages.push(json!({ "role": "user", "content": "Now compare them all." }));
    let tools: Vec<Value> = ["get_weather", "get_time", "search"]
        .iter()
        .map(|n| json!({ "type": "function", "function": { "name": n, "description": "A tool.", "parameters": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } } }))
        .collect();
    serde_json::to_vec(&json!({
        "model": "gpt-5-mini", "messages": messages, "tools": tools, "tool_choice": "auto",
        "temperature": 0.2, "max_completion_tokens": 800, "stream": true,
        "stream_options": { "include_usage": true }, "metadata": { "step_type": "plan" },
        "user": "u-123", "seed": 7,
    }))
    .unwrap_or_default()
}

fn typed(bytes: &[u8], attempts: usize) -> usize {
    let Ok(request) = CanonicalRequest::from_slice(bytes) else {
        return 0;
    };
    let features = detect(&request);
    let mut written = features.len();
    for _ in 0..attempts {
        let body = serde_json::to_vec(&request.upstream("gpt-5-mini-2025-08-07", true));
        written += body.map_or(0, |b| b.len());
    }
    written
}

fn json_map(bytes: &[u8], attempts: usize) -> usize {
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(bytes) else {
        return 0;
    };
    let mut written = 0;
    for _ in 0..attempts {
        let mut body: Map<String, Value> = request.clone();
        body.insert("model".into(), json!("gpt-5-mini-2025-08-07"));
        body.insert("stream".into(), json!(true));
        body.insert("stream_options".into(), json!({ "include_usage": true }));
        written += serde_json::to_vec(&body).map_or(0, |b| b.len());
    }
    written
}

fn bench(c: &mut Criterion) {
    for (name, body) in [("small", small()), ("agent", agent())] {
        let mut group = c.benchmark_group(format!("request/{name}"));
        for attempts in [1, 2] {
            group.bench_function(format!("typed/{attempts}_attempts"), |b| {
                b.iter(|| typed(black_box(&body), attempts))
            });
            group.bench_function(format!("json_map/{attempts}_attempts"), |b| {
                b.iter(|| json_map(black_box(&body), attempts))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
