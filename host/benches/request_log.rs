//! What the request log costs per request, in its two halves:
//!
//! - **request path**: what the executor does for the log on top of serving
//!   a one-candidate chat request (the bench gateway's case in
//!   `bench/log-cost.sh`): the draft (holding the policy's request and the
//!   candidates, moved), the decision, attempt and outcome as the log keeps
//!   them, then `RequestLog::submit`, which queues them. The log's writer
//!   takes the queue every 2,000 records (untimed), as it does every 250 ms
//!   at 8,000 req/s. The same again with the caches as a busy worker
//!   leaves them: 4 MiB written (untimed) before each record.
//! - **writer**: per record, its share of what the writer does with 2,000
//!   queued drafts (the records of 250 ms at 8,000 req/s): each written as
//!   JSON and freed, and the batch written as one compressed row into a
//!   SQLite store on disk.
//!
//! Neither says what the log costs a gateway: a worker that has just
//! served a request runs the log's code with cold caches, and evicts what
//! the rest of the request path then misses. `bench/log-cost.sh` measures
//! that.
//!
//! `cargo bench -p switchyard --bench request_log`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::switchyard::config::LogSettings;
use ::switchyard::policy::{Candidate, Health, Price, Request, Routing};
use ::switchyard::request_log::{Attempt, Decision, Draft, Outcome, PlanStep, RequestLog};
use ::switchyard::store::Store;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The allocator the `switchyard` binary uses (host/src/main.rs): the log's
/// cost is mostly allocation and copying, so the bench must use the same.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn candidate() -> Candidate {
    Candidate {
        id: "bench/gpt-5-mini".into(),
        provider: "bench".into(),
        model: "gpt-5-mini".into(),
        logical_model: None,
        price: Price {
            input: 0.25,
            output: 2.0,
            cached_input: 0.025,
        },
        features: Vec::new(),
        zdr: false,
        tier: 2,
        health: Health::Healthy,
        headroom: None,
        cache_affinity: false,
        context_window: 400_000,
        metrics: Vec::new(),
    }
}

fn request() -> Request {
    Request {
        model: "gpt-5-mini".into(),
        routing: Routing {
            metric: None,
            interval_seconds: 900,
            models: Vec::new(),
            providers: Vec::new(),
        },
        features: Vec::new(),
        step_type: None,
        purpose: None,
        team: "bench".into(),
        estimated_input_tokens: 7,
        max_output_tokens: Some(64),
        prompt_cache_key: false,
        metadata: Vec::new(),
        config: String::new(),
    }
}

/// The log's work for one request, as `route::Executor::serve` does it:
/// the request and candidates are the decision's, moved into the draft.
fn record_one(
    log: &RequestLog,
    team: &str,
    (policy_request, candidates): (Request, Vec<Candidate>),
) {
    let mut draft = Draft::new(
        1_796_611_643_912,
        team.to_owned(),
        policy_request.model.clone(),
        "chat",
        false,
    );
    draft.request = Some(policy_request);
    draft.decision = Some(Decision {
        policy: "default".into(),
        contract: "0.2.0".into(),
        decision_us: 12,
        label: Some("default".into()),
        score: None,
        explanation: vec!["each group sorted by performance".into()],
        plan: vec![PlanStep {
            candidate: candidates[0].id.clone(),
            strip: Vec::new(),
            timeout_ms: None,
            retries: None,
        }],
        stood_in_for: None,
        fault: None,
    });
    draft.candidates = candidates;
    let attempts = vec![Attempt {
        provider: "bench".into(),
        model: "gpt-5-mini".into(),
        status: Some(200),
        reason: "ok".into(),
        message: None,
        latency_ms: Some(0.353),
        retry_after_ms: None,
    }];
    let outcome = Outcome {
        status: 200,
        provider: Some("bench".into()),
        model: Some("gpt-5-mini".into()),
        input_tokens: Some(12),
        output_tokens: Some(7),
        cached_tokens: Some(0),
        cost_usd: Some(1.7e-5),
        duration_ms: 0.383,
        ..Outcome::default()
    };
    log.submit(draft, attempts, outcome);
}

/// What one request hands the log: its policy request and candidates.
type Inputs = (Request, Vec<Candidate>);

fn inputs(n: u64) -> Vec<Inputs> {
    (0..n).map(|_| (request(), vec![candidate()])).collect()
}

fn temp_store(name: &str) -> Arc<Store> {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-bench-{name}-{}-{:x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    Arc::new(Store::open(&dir.join("switchyard.db")).expect("store"))
}

fn bench(c: &mut Criterion) {
    let settings = LogSettings {
        // Never drop: a dropped record would be a cheaper one.
        max_pending: usize::MAX,
        ..LogSettings::default()
    };
    let log = RequestLog::start(settings.clone(), temp_store("path"));
    // The writer takes what is queued every 2,000 records, as it does
    // every 250 ms at 8,000 req/s (the queue keeps its capacity).
    let per_batch = |iters: u64, mut batch: Box<dyn FnMut(Vec<Inputs>) -> Duration + '_>| {
        let mut spent = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let n = left.min(2_000);
            spent += batch(inputs(n));
            log.flush().expect("flush");
            left -= n;
        }
        spent
    };
    c.bench_function("request_log/request path (one record)", |b| {
        b.iter_custom(|iters| {
            per_batch(
                iters,
                Box::new(|inputs| {
                    let start = Instant::now();
                    for one in inputs {
                        record_one(&log, "bench", black_box(one));
                    }
                    start.elapsed()
                }),
            )
        });
    });
    let mut evict = vec![0u8; 4 << 20];
    c.bench_function("request_log/request path (one record, cold caches)", |b| {
        b.iter_custom(|iters| {
            per_batch(
                iters,
                Box::new(|inputs| {
                    let mut spent = Duration::ZERO;
                    for one in inputs {
                        for (i, byte) in evict.iter_mut().step_by(64).enumerate() {
                            *byte = byte.wrapping_add(i as u8);
                        }
                        black_box(&evict);
                        let start = Instant::now();
                        record_one(&log, "bench", black_box(one));
                        spent += start.elapsed();
                    }
                    spent
                }),
            )
        });
    });
    log.flush().expect("flush");

    const BATCH: u64 = 2_000;
    let log = RequestLog::start(settings, temp_store("writer"));
    let mut group = c.benchmark_group("request_log/writer");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("batch of 2,000 records", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                for one in inputs(BATCH) {
                    record_one(&log, "bench", one);
                }
                let start = Instant::now();
                log.flush().expect("flush");
                spent += start.elapsed();
            }
            spent
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
