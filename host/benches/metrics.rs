//! Cost of the live metrics on the request path: recording one attempt, and
//! taking the snapshot a routing decision reads (p95 latency of 20 candidates
//! over 15 minutes, plus one feature-uptime check each).
//!
//! `cargo bench -p switchyard --bench metrics`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use switchyard::metrics::{ManualClock, MetricSource, MetricStore, Outcome, Sample};

const MIN: u64 = 60_000;

fn store(candidates: usize, clock: &ManualClock) -> (Arc<MetricStore>, Vec<String>) {
    let ids: Vec<String> = (0..candidates)
        .map(|i| format!("account{i}/model"))
        .collect();
    (
        Arc::new(MetricStore::new(ids.clone(), Arc::new(clock.clone()))),
        ids,
    )
}

fn sample(rng: &mut fastrand::Rng) -> Sample {
    Sample {
        outcome: Some(if rng.u8(..20) == 0 {
            Outcome::Error
        } else {
            Outcome::Ok
        }),
        latency: Some(Duration::from_micros(200_000 + rng.u64(..800_000))),
        e2e: Some(Duration::from_micros(201_000 + rng.u64(..800_000))),
        ttft: Some(Duration::from_micros(150_000 + rng.u64(..300_000))),
        input_tokens: Some(500),
        output_tokens: Some(120),
    }
}

fn bench(c: &mut Criterion) {
    let clock = ManualClock::new(30_000_000 * MIN);
    let (store, ids) = store(20, &clock);
    let features = switchyard_wire::FeatureSet::from_names(["stream", "tools.function_calling"]);
    let mut rng = fastrand::Rng::with_seed(1);
    // Fifteen minutes of history: 60 attempts a minute per candidate.
    for _ in 0..15 {
        for id in &ids {
            for _ in 0..60 {
                store.record(id, features, &sample(&mut rng));
            }
        }
        clock.advance(Duration::from_secs(60));
    }

    c.bench_function("record one attempt (2 features)", |b| {
        let s = sample(&mut rng);
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % ids.len();
            store.record(black_box(&ids[i]), black_box(features), black_box(&s));
        })
    });

    c.bench_function("snapshot: p95_latency of 20 candidates over 15m", |b| {
        b.iter(|| {
            let snapshot = store.snapshot();
            let mut sum = 0.0;
            for id in &ids {
                sum += snapshot.metric(id, "p95_latency", 900).unwrap_or(0.0);
            }
            black_box(sum)
        })
    });

    c.bench_function(
        "snapshot: 100 metric reads of 20 candidates (cached)",
        |b| {
            let snapshot = store.snapshot();
            for id in &ids {
                snapshot.metric(id, "p95_latency", 900);
            }
            b.iter(|| {
                let mut sum = 0.0;
                for n in 0..100 {
                    sum += snapshot
                        .metric(&ids[n % ids.len()], "p95_latency", 900)
                        .unwrap_or(0.0);
                }
                black_box(sum)
            })
        },
    );

    c.bench_function("feature uptime of 20 candidates over 15m", |b| {
        b.iter(|| {
            let snapshot = store.snapshot();
            let mut ok = 0u64;
            for id in &ids {
                ok += snapshot
                    .feature_counts(id, "tools.function_calling", 900)
                    .map_or(0, |c| c.ok);
            }
            black_box(ok)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
