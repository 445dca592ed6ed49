//! The failover storm (README "Failover"): three accounts serve one model,
//! two of them answer 30% of their requests with a fault drawn from the
//! catalogue, and many requests on the three APIs, streamed and not, run at
//! once. Every request must be answered whole while the healthy account
//! exists, no stream may end truncated, and `/metrics` must count exactly the
//! requests sent.
//!
//! `storm_small` runs 1,000 requests in the suite; `bench/storm.sh` runs
//! `storm_full` (10,000 by default; `STORM_REQUESTS`, `STORM_CONCURRENCY`)
//! and prints the figures BENCHMARKS.md records.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard::config::hash_key;
use switchyard_tests::mock::{Behavior, Flavor, MockProvider, StreamFault};
use switchyard_tests::sse::{self, Api};
use switchyard_tests::start_gateway;

const KEY: &str = "sk-storm-team";

fn answer() -> String {
    (1..=20)
        .map(|i| format!("storm{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The catalogue's provider faults that a request cannot cause: rows 1-11
/// (rows 12 and 13 are the request's own, 14 needs a prefill-refusing
/// fallback, 15 is recovery over time, 16 is what 4 produces).
fn faults() -> Vec<(&'static str, Behavior)> {
    let text = answer();
    let fault = |fault| Behavior::StreamFault {
        fault,
        text: text.clone(),
    };
    vec![
        (
            "429 retry-after 1",
            Behavior::RateLimited {
                retry_after_secs: 1,
            },
        ),
        (
            "429 without retry-after",
            Behavior::Error {
                status: 429,
                message: "Rate limit reached".into(),
            },
        ),
        (
            "500",
            Behavior::Error {
                status: 500,
                message: "internal error".into(),
            },
        ),
        (
            "503",
            Behavior::Error {
                status: 503,
                message: "overloaded".into(),
            },
        ),
        ("dropped before content", Behavior::StreamDieBeforeContent),
        ("no response", Behavior::Stall),
        (
            "first token late",
            Behavior::Slow {
                delay_ms: 3_000,
                text: text.clone(),
            },
        ),
        ("cut mid-answer", fault(StreamFault::CutAfter(10))),
        ("stalled mid-answer", fault(StreamFault::StallMidStream)),
        ("malformed event", fault(StreamFault::MalformedEvent)),
        ("no end marker", fault(StreamFault::NoEndMarker)),
        ("open after the end", fault(StreamFault::OpenAfterEnd)),
        ("error event before content", Behavior::StreamErrorEvent),
    ]
}

/// What the storm's caller saw.
#[derive(Debug, Default)]
struct Report {
    requests: usize,
    answered_whole: usize,
    /// Non-200, or a body without the whole answer.
    failed: Vec<String>,
    /// Streams that ended without their end and without an error event.
    truncated: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    counted: f64,
    attempts: Vec<(String, f64)>,
    rescues: f64,
    faults: Vec<(String, u64)>,
    /// Requests each mock received: faulty-a, faulty-b, healthy.
    hits: Vec<usize>,
}

/// Why a request was not answered whole, and whether its stream ended
/// truncated (no end, no error event).
type Failure = (String, bool);

/// One request of the mix: Chat (whole and streamed), Responses and Messages
/// (streamed).
async fn one(client: &reqwest::Client, base: &str, i: usize) -> Result<(), Failure> {
    let (api, stream) = match i % 4 {
        0 => (Api::Chat, false),
        1 => (Api::Chat, true),
        2 => (Api::Responses, true),
        _ => (Api::Messages, true),
    };
    // Two thirds of the requests name a faulty account first (the plan
    // falls back to any account), so the faults see traffic whatever the
    // policy would prefer.
    let model = [
        "faulty-a/gpt-4o-mini",
        "faulty-b/gpt-4o-mini",
        "gpt-4o-mini",
    ][i % 3];
    let mut body = api.request(model, "Storm.", Some(json!({ "models": ["gpt-4o-mini"] })));
    body["stream"] = json!(stream);
    let response = client
        .post(format!("{base}{}", api.path()))
        .bearer_auth(KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .map_err(|e| (format!("request {i}: {e}"), false))?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    if status != 200 {
        return Err((format!("request {i}: {status} {text}"), false));
    }
    if !stream {
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let content = body["choices"][0]["message"]["content"].as_str();
        return if content == Some(answer().as_str()) {
            Ok(())
        } else {
            Err((format!("request {i}: {text}"), false))
        };
    }
    let s = sse::read(api, &text);
    if s.complete && s.text == answer() {
        return Ok(());
    }
    let truncated = !s.complete && s.error.is_none();
    Err((
        format!(
            "request {i} ({api:?}): complete {} error {:?} text {:?}",
            s.complete, s.error, s.text
        ),
        truncated,
    ))
}

/// `avoid`: the gateway's defaults, which soon keep the faulty accounts out
/// (feature uptime below 90%, open circuits); off, every fault keeps reaching
/// the retries, failover and rescue.
async fn storm(requests: usize, concurrency: usize, avoid: bool) -> Report {
    let faults = faults();
    let mocks = [
        MockProvider::start(Flavor::OpenAi).await,
        MockProvider::start(Flavor::OpenAi).await,
        MockProvider::start(Flavor::OpenAi).await,
    ];
    for (i, m) in mocks.iter().enumerate() {
        m.set_default(Behavior::Text(answer()));
        if i < 2 {
            let list = faults.iter().map(|(_, b)| b.clone()).collect();
            m.set_fault_mix(0.3, list, 0x5707_u64 + i as u64);
        }
    }
    let config = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [routing]
        first_token_timeout_ms = 1000
        stream_idle_timeout_ms = 1000
        backoff_base_ms = 5
        backoff_max_ms = 50
        # A 429 without retry-after keeps an account out 1 s, not 10: the
        # faulty accounts stay in the storm.
        rate_limit_cooldown_secs = 1
        {avoidance}
        [providers.faulty-a]
        kind = "openai"
        base_url = "{a}"
        api_key_env = "OA_KEY"
        models = ["gpt-4o-mini"]
        timeout_ms = 1500
        [providers.faulty-b]
        kind = "openai"
        base_url = "{b}"
        api_key_env = "OA_KEY"
        models = ["gpt-4o-mini"]
        timeout_ms = 1500
        [providers.healthy]
        kind = "openai"
        base_url = "{c}"
        api_key_env = "OA_KEY"
        models = ["gpt-4o-mini"]
        timeout_ms = 1500
        [teams.team]
        key_sha256 = ["{key}"]
        "#,
        a = mocks[0].base_url(),
        b = mocks[1].base_url(),
        c = mocks[2].base_url(),
        key = hash_key(KEY),
        avoidance = if avoid {
            ""
        } else {
            "feature_uptime_threshold = 0.0\n[routing.circuit_breaker]\nenabled = false"
        },
    );
    let gateway = start_gateway("storm.toml", &config, &[("OA_KEY", "sk-oa")]).await;
    let base = format!("http://{}", gateway.addr);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let started = Instant::now();
    let results: Vec<(Duration, Result<(), Failure>)> = futures_util::stream::iter(0..requests)
        .map(|i| {
            let (client, base) = (&client, &base);
            async move {
                let t = Instant::now();
                let r = one(client, base, i).await;
                (t.elapsed(), r)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut report = Report {
        requests,
        elapsed: started.elapsed(),
        ..Report::default()
    };
    for (latency, result) in results {
        report.latencies.push(latency);
        match result {
            Ok(()) => report.answered_whole += 1,
            Err((why, truncated)) => {
                report.truncated += usize::from(truncated);
                report.failed.push(why);
            }
        }
    }
    report.latencies.sort();
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let sum = |prefix: &str, label: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    report.counted = sum("switchyard_requests_total{", "");
    for outcome in [
        "ok",
        "broken",
        "error",
        "timeout",
        "rate_limited",
        "rejected",
    ] {
        let n = sum(
            "switchyard_attempts_total{",
            &format!("outcome=\"{outcome}\""),
        );
        report.attempts.push((outcome.to_owned(), n));
    }
    report.hits = mocks.iter().map(MockProvider::hits).collect();
    report.rescues = sum("switchyard_stream_rescues_total{", "outcome=\"ok\"");
    for (i, (name, _)) in faults.iter().enumerate() {
        let n: u64 = mocks[..2].iter().map(|m| m.faults_injected()[i]).sum();
        report.faults.push(((*name).to_owned(), n));
    }
    report
}

fn check(report: &Report) {
    let sample: Vec<_> = report.failed.iter().take(5).collect();
    assert!(
        report.failed.is_empty(),
        "{} of {} requests were not answered whole, e.g. {sample:#?}",
        report.failed.len(),
        report.requests
    );
    assert_eq!(report.truncated, 0, "no stream silently truncated");
    assert_eq!(
        report.counted, report.requests as f64,
        "/metrics counts every request once"
    );
    let injected: u64 = report.faults.iter().map(|(_, n)| n).sum();
    assert!(injected > 0, "faults were injected: {:?}", report.faults);
}

fn print(report: &Report) {
    let pct = |p: f64| {
        let n = report.latencies.len();
        report.latencies[((n as f64 * p) as usize).min(n.saturating_sub(1))]
    };
    println!(
        "storm: {} requests in {:.1} s ({:.0} req/s): {} answered whole, {} failed, {} truncated; latency p50 {:?} p99 {:?} max {:?}",
        report.requests,
        report.elapsed.as_secs_f64(),
        report.requests as f64 / report.elapsed.as_secs_f64(),
        report.answered_whole,
        report.failed.len(),
        report.truncated,
        pct(0.50),
        pct(0.99),
        report.latencies.last().copied().unwrap_or_default(),
    );
    println!(
        "storm: /metrics switchyard_requests_total = {}",
        report.counted
    );
    println!("storm: attempts by outcome {:?}", report.attempts);
    println!("storm: mid-stream rescues {}", report.rescues);
    println!("storm: faults injected {:?}", report.faults);
    println!(
        "storm: upstream requests faulty-a {} faulty-b {} healthy {}",
        report.hits[0], report.hits[1], report.hits[2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_small() {
    let report = storm(1_000, 32, false).await;
    print(&report);
    check(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "bench/storm.sh runs it: 10,000 requests"]
async fn storm_full() {
    let n = |var: &str, default: usize| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (requests, concurrency) = (n("STORM_REQUESTS", 10_000), n("STORM_CONCURRENCY", 32));
    for avoid in [false, true] {
        println!(
            "storm: {} the gateway's avoidance (breakers, feature uptime)",
            if avoid { "with" } else { "without" }
        );
        let report = storm(requests, concurrency, avoid).await;
        print(&report);
        check(&report);
    }
}
