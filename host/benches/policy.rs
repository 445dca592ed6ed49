//! Cost of one routing decision by the bundled default policy (DESIGN §9),
//! on each contract version: the gateway's build (`switchyard:policy@0.2.0`)
//! and the same source built against 0.1 (`plugins/default-policy-v0-1`):
//!
//! - **warm**: `route` + plan validation on an instance kept from the previous
//!   decision ([`WarmPool`], what the gateway does; a 0.2 instance is already
//!   configured for the team);
//! - **fresh**: a new `Store`, instantiation from the `InstancePre` (and, for
//!   0.2, `configure` with the team's setup), `route` and validation (what a
//!   decision costs when no warm instance is free);
//! - **native**: the same policy source (`plugins/default-policy/src/logic.rs`)
//!   compiled into this benchmark, reading the same metric snapshot: the
//!   baseline the sandbox is compared with;
//! - **snapshot**: what the host pays per request before the policy runs: a
//!   metric snapshot and the 20 `p95_latency` reads the policy will make.
//!
//! The request sorts by `p95_latency` over 15 minutes of recorded history, so
//! the policy calls the `metric` import once per candidate (DESIGN §3's case).
//! Criterion measures each case; then every case is timed call by call
//! (20,000 calls after 2,000 to warm up) to print median and p99 in one table.
//!
//! `cargo bench -p switchyard --bench policy`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::switchyard::metrics::{ManualClock, MetricSource, MetricStore, Outcome, Sample, Snapshot};
use ::switchyard::policy::v0_2::{Context, Setup, Tables};
use ::switchyard::policy::{
    Candidate, Health, Limits, Policy, Price, Request, Routing, Runtime, WarmPool,
};
use criterion::{BenchmarkId, Criterion};

/// Where the 0.1 adapter of `logic.rs` finds the 0.1 types: the host's
/// generated ones (the same records and enums).
mod v0_1_types {
    pub use ::switchyard::policy::{
        Attempt, Candidate, Health, Info, MetricValue, Plan, Price, Refusal as PolicyError,
        RefusalKind as PolicyErrorKind, Request, Routing,
    };
}

/// The default policy's decision logic, compiled natively.
#[allow(dead_code, unused, clippy::all)]
#[path = "../../plugins/default-policy/src/logic.rs"]
mod logic;
/// Its 0.1 adapter (the native baseline reads the host's 0.1 types).
#[allow(dead_code, unused, clippy::all)]
#[path = "../../plugins/default-policy/src/logic/v0_1.rs"]
mod v0_1;

const SIZES: [usize; 3] = [5, 20, 100];
const FEATURES: [&str; 2] = ["stream", "tools.function_calling"];
const MIN: u64 = 60_000;

fn candidate(i: usize) -> Candidate {
    Candidate {
        id: format!("account{i}/model-{}", i % 4),
        provider: format!("account{i}"),
        model: format!("model-{}", i % 4),
        logical_model: None,
        price: Price {
            input: 0.5 + (i % 7) as f64,
            output: 2.0 + (i % 5) as f64 * 3.0,
            cached_input: 0.05,
        },
        // As the host passes them: the request's features the candidate has.
        features: FEATURES.iter().map(|f| f.to_string()).collect(),
        zdr: i.is_multiple_of(3),
        tier: (i % 3) as u8 + 1,
        health: Health::Healthy,
        headroom: None,
        cache_affinity: false,
        context_window: 200_000,
        metrics: Vec::new(),
    }
}

fn request() -> Request {
    Request {
        model: "auto".into(),
        routing: Routing {
            metric: Some("p95_latency".into()),
            interval_seconds: 900,
            models: Vec::new(),
            providers: Vec::new(),
        },
        features: FEATURES.iter().map(|f| f.to_string()).collect(),
        step_type: None,
        purpose: None,
        team: "bench".into(),
        estimated_input_tokens: 1200,
        max_output_tokens: Some(512),
        prompt_cache_key: false,
        metadata: Vec::new(),
        config: "{}".into(),
    }
}

/// A metric store with 15 minutes of history for `candidates`.
fn history(candidates: &[Candidate]) -> Arc<MetricStore> {
    let clock = ManualClock::new(30_000_000 * MIN);
    let ids: Vec<String> = candidates.iter().map(|c| c.id.clone()).collect();
    let store = Arc::new(MetricStore::new(ids.clone(), Arc::new(clock.clone())));
    let features = switchyard_wire::FeatureSet::from_names(FEATURES);
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..15 {
        for id in &ids {
            for _ in 0..20 {
                let latency = Duration::from_micros(200_000 + rng.u64(..800_000));
                store.record(
                    id,
                    features,
                    &Sample {
                        outcome: Some(Outcome::Ok),
                        latency: Some(latency),
                        e2e: Some(latency + Duration::from_millis(1)),
                        ttft: Some(latency / 2),
                        input_tokens: Some(500),
                        output_tokens: Some(120),
                    },
                );
            }
        }
        clock.advance(Duration::from_secs(60));
    }
    store
}

struct Case {
    n: usize,
    request: Request,
    candidates: Vec<Candidate>,
    store: Arc<MetricStore>,
    /// A snapshot whose summaries are already computed, as they are after the
    /// host's own reads of the same request.
    snapshot: Arc<Snapshot>,
    /// The team's 0.2 setup, as the gateway keeps it per team.
    context: Context,
}

impl Case {
    fn new(n: usize) -> Self {
        let candidates: Vec<Candidate> = (0..n).map(candidate).collect();
        let store = history(&candidates);
        let snapshot = Arc::new(store.snapshot());
        for c in &candidates {
            snapshot.metric(&c.id, "p95_latency", 900);
        }
        let request = request();
        let tables = Arc::new(Tables::from_candidates(&candidates));
        let context = Context {
            setup: Arc::new(Setup::new(&request.team, &request.config, tables)),
            content: None,
        };
        Self {
            n,
            request,
            candidates,
            store,
            snapshot,
            context,
        }
    }

    fn warm(&self, pool: &WarmPool) -> usize {
        let source: Arc<dyn MetricSource> = self.snapshot.clone();
        let decision = pool.decide_in(&self.context, &self.request, &self.candidates, source);
        checked_len(decision.result)
    }

    fn fresh(&self, policy: &Policy) -> usize {
        let source: Arc<dyn MetricSource> = self.snapshot.clone();
        let decision = policy.decide_in(&self.context, &self.request, &self.candidates, source);
        checked_len(decision.result)
    }

    fn native(&self) -> usize {
        let snapshot = &self.snapshot;
        let lookup = |id: &str, name: &str, window: u32| snapshot.metric(id, name, window);
        plan_len(v0_1::route(&self.request, &self.candidates, &lookup))
    }

    /// The decision's own metric reads: one `p95_latency` per candidate
    /// from the already-read snapshot (every variant above pays them).
    fn reads(&self) -> f64 {
        self.candidates
            .iter()
            .map(|c| {
                self.snapshot
                    .metric(&c.id, "p95_latency", 900)
                    .unwrap_or(0.0)
            })
            .sum()
    }

    fn snapshot_cost(&self) -> f64 {
        let snapshot = self.store.snapshot();
        self.candidates
            .iter()
            .map(|c| snapshot.metric(&c.id, "p95_latency", 900).unwrap_or(0.0))
            .sum()
    }
}

/// Attempts of a plan the native baseline returns (0.1's types).
fn plan_len<E: std::fmt::Debug>(result: Result<::switchyard::policy::Plan, E>) -> usize {
    match result {
        Ok(plan) => plan.attempts.len(),
        Err(e) => panic!("the benchmark's decision failed: {e:?}"),
    }
}

/// Attempts of a plan the sandbox returns, checked, in the host's terms.
fn checked_len<E: std::fmt::Debug>(result: Result<::switchyard::policy::RoutePlan, E>) -> usize {
    match result {
        Ok(plan) => plan.attempts.len(),
        Err(e) => panic!("the benchmark's decision failed: {e:?}"),
    }
}

/// Median and p99 of `calls` individually timed runs of `f`, in microseconds.
fn distribution(mut f: impl FnMut() -> usize) -> (f64, f64) {
    for _ in 0..2_000 {
        black_box(f());
    }
    let mut times: Vec<Duration> = (0..20_000)
        .map(|_| {
            let started = Instant::now();
            black_box(f());
            started.elapsed()
        })
        .collect();
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

/// CPU time of this thread so far, in ns.
fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } == 0;
    if ok {
        t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
    } else {
        0
    }
}

fn main() {
    let runtime = Runtime::new(Limits::default()).expect("policy runtime");
    let v2 = runtime.load_default().expect("default policy loads");
    let v1 = runtime.load_default_v0_1().expect("0.1 build loads");
    let (pool2, pool1) = (WarmPool::new(v2.clone(), 1), WarmPool::new(v1.clone(), 1));
    let cases: Vec<Case> = SIZES.iter().map(|&n| Case::new(n)).collect();
    for case in &cases {
        let lens = [
            case.warm(&pool2),
            case.fresh(&v2),
            case.warm(&pool1),
            case.fresh(&v1),
            case.native(),
        ];
        assert!(
            lens.iter().all(|&l| l == lens[0] && l > 0),
            "plans differ: {lens:?}"
        );
    }

    // `POLICY_BENCH_LOOP=<variant>` runs `POLICY_BENCH_N` (100,000) decisions of one variant
    // at 20 candidates (or `POLICY_BENCH_SIZE`) and exits, for `perf stat` (instructions and CPU time
    // per decision, steadier than wall time on a shared machine).
    // `POLICY_BENCH_SIZE` picks another case (5 or 100 candidates).
    if let Ok(variant) = std::env::var("POLICY_BENCH_LOOP") {
        let size: usize = std::env::var("POLICY_BENCH_SIZE")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(20);
        let Some(case) = cases.iter().find(|c| c.n == size) else {
            panic!("POLICY_BENCH_SIZE={size}: the cases have {SIZES:?} candidates");
        };
        let mut f: Box<dyn FnMut() -> usize> = match variant.as_str() {
            "0.2-warm" => Box::new(|| case.warm(&pool2)),
            "0.2-fresh" => Box::new(|| case.fresh(&v2)),
            "0.1-warm" => Box::new(|| case.warm(&pool1)),
            "0.1-fresh" => Box::new(|| case.fresh(&v1)),
            "native" => Box::new(|| case.native()),
            "reads" => Box::new(|| case.reads() as usize),
            "none" => Box::new(|| 0),
            other => panic!("unknown variant {other}"),
        };
        let n: u64 = std::env::var("POLICY_BENCH_N")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(100_000);
        for _ in 0..n.min(2_000) {
            black_box(f());
        }
        let (cpu, wall) = (thread_cpu_ns(), Instant::now());
        for _ in 0..n {
            black_box(f());
        }
        let (cpu, wall) = (thread_cpu_ns().saturating_sub(cpu), wall.elapsed());
        eprintln!(
            "{variant} at {size} candidates: {n} calls, {:.2} µs CPU and {:.2} µs wall per call",
            cpu as f64 / n as f64 / 1e3,
            wall.as_secs_f64() * 1e6 / n as f64
        );
        return;
    }

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    {
        let mut group = c.benchmark_group("policy decision");
        for case in &cases {
            group.bench_with_input(BenchmarkId::new("0.2 warm", case.n), case, |b, case| {
                b.iter(|| case.warm(&pool2))
            });
            group.bench_with_input(BenchmarkId::new("0.2 fresh", case.n), case, |b, case| {
                b.iter(|| case.fresh(&v2))
            });
            group.bench_with_input(BenchmarkId::new("0.1 warm", case.n), case, |b, case| {
                b.iter(|| case.warm(&pool1))
            });
            group.bench_with_input(BenchmarkId::new("0.1 fresh", case.n), case, |b, case| {
                b.iter(|| case.fresh(&v1))
            });
            group.bench_with_input(BenchmarkId::new("native", case.n), case, |b, case| {
                b.iter(|| case.native())
            });
            group.bench_with_input(
                BenchmarkId::new("snapshot + reads", case.n),
                case,
                |b, case| b.iter(|| case.snapshot_cost()),
            );
        }
        group.finish();
    }
    c.final_summary();

    // Criterion's filter (`cargo bench -- <filter>`) skips the table too.
    if std::env::args().skip(1).any(|a| !a.starts_with('-')) {
        return;
    }
    println!();
    println!("Per-call distribution (20,000 timed calls each; µs)");
    println!(
        "| candidates | 0.2 warm p50 | p99 | 0.2 fresh p50 | p99 | 0.1 warm p50 | p99 | 0.1 fresh p50 | p99 | native p50 | p99 | 0.2 warm/native | metric reads p50 | snapshot + reads p50 |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for case in &cases {
        let warm2 = distribution(|| case.warm(&pool2));
        let fresh2 = distribution(|| case.fresh(&v2));
        let warm1 = distribution(|| case.warm(&pool1));
        let fresh1 = distribution(|| case.fresh(&v1));
        let native = distribution(|| case.native());
        let reads = distribution(|| case.reads() as usize);
        let snap = distribution(|| case.snapshot_cost() as usize);
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1}× | {:.2} | {:.2} |",
            case.n,
            warm2.0,
            warm2.1,
            fresh2.0,
            fresh2.1,
            warm1.0,
            warm1.1,
            fresh1.0,
            fresh1.1,
            native.0,
            native.1,
            warm2.0 / native.0,
            reads.0,
            snap.0
        );
    }
}
