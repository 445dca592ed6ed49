//! Test fixture: the hostile policy (`tests/plugins/hostile`) on
//! `switchyard:policy@0.2.0`.
//!
//! The mode is the `"mode"` string of the team config, read once by
//! `configure` (0.2 hands the config over once per instance); no mode means
//! `ok`. The 0.1 fixture's modes behave the same, with candidates named by
//! position (`unknown-id` names position 999). Modes of 0.2's own:
//!
//! | mode | behaviour |
//! | --- | --- |
//! | `configure-loop` | `configure` spins forever |
//! | `configure-trap` | `configure` panics |
//! | `bad-config` | `configure` refuses with `bad-config` |
//! | `huge-explanation` | valid plan with 1 000 explanation lines |
//! | `long-explanation` | valid plan with one 10 000-character line |
//! | `too-many-retries` | valid plan asking for 200 retries |
//! | `explain` | valid plan with score 0.75 and two explanation lines |
//! | `content` | valid plan labelled with what `request.content` held: `content:none` or `content:<turns>:<chars>:<last user text>` |
//! | `declared` | valid plan labelled with the declared metrics it was given (p95 latency and uptime per candidate, `-` for no data) |
//! | `setup` | valid plan labelled `setup:<team>:<accounts>:<models>:<configures so far>` |
//!
//! It declares two metrics (p95 latency, uptime) and, unless built with the `wants-content`
//! feature (as `content-probe`), does not ask for content.

use core::cell::RefCell;
use core::hint::black_box;

wit_bindgen::generate!({
    world: "policy",
    path: "../../../wit/v0.2",
});

use switchyard::policy::host;
use switchyard::policy::types::{
    Attempt, Features, Level, MetricId, MetricKind, PolicyErrorKind, Wants,
};

/// What `configure` kept.
struct Kept {
    mode: String,
    team: String,
    accounts: usize,
    models: usize,
    configures: u32,
}

thread_local! {
    static KEPT: RefCell<Kept> = const {
        RefCell::new(Kept {
            mode: String::new(),
            team: String::new(),
            accounts: 0,
            models: 0,
            configures: 0,
        })
    };
}

/// Extracts the string value of `"mode"` from the config JSON, minimally.
fn mode(config: &str) -> &str {
    let Some(at) = config.find("\"mode\"") else {
        return "ok";
    };
    let rest = config[at + 6..].trim_start();
    let Some(rest) = rest.strip_prefix(':') else {
        return "ok";
    };
    let Some(rest) = rest.trim_start().strip_prefix('"') else {
        return "ok";
    };
    match rest.find('"') {
        Some(end) => &rest[..end],
        None => "ok",
    }
}

fn attempt(candidate: u16) -> Attempt {
    Attempt {
        candidate,
        strip: Features::empty(),
        timeout_ms: None,
        retries: None,
    }
}

fn plan(attempts: Vec<Attempt>, label: &str) -> Plan {
    Plan {
        attempts,
        label: label.into(),
        score: None,
        explanation: Vec::new(),
    }
}

fn ok_plan(candidates: &[Candidate], label: &str) -> Result<Plan, PolicyError> {
    if candidates.is_empty() {
        return Err(PolicyError {
            kind: PolicyErrorKind::NoRoute,
            message: "no candidates".into(),
        });
    }
    Ok(plan(vec![attempt(0)], label))
}

fn spin_forever() -> ! {
    static FLAG: u32 = 0;
    let mut n: u64 = 0;
    loop {
        // A volatile read is an observable side effect: LLVM must keep the loop.
        let v = unsafe { core::ptr::read_volatile(&FLAG) };
        n = black_box(n.wrapping_add(u64::from(v) + 1));
    }
}

fn eat_memory() -> ! {
    const CHUNK: usize = 1 << 20;
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk: Vec<u8> = Vec::with_capacity(CHUNK);
        for i in (0..CHUNK).step_by(4096) {
            unsafe { core::ptr::write_volatile(chunk.as_mut_ptr().add(i), i as u8) };
        }
        unsafe { chunk.set_len(CHUNK) };
        hoard.push(black_box(chunk));
        black_box(&hoard);
    }
}

/// Calls made on this instance (the `count` mode).
static CALLS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Every flag, to pick one the request does not use.
const ALL: [Features; 5] = [
    Features::WEB_SEARCH,
    Features::VISION,
    Features::CUSTOM_TOOLS,
    Features::VERBOSITY,
    Features::INCLUDE,
];

struct Hostile;

impl Guest for Hostile {
    fn describe() -> Info {
        Info {
            name: if cfg!(feature = "wants-content") {
                "content-probe".into()
            } else {
                "hostile-v0-2".into()
            },
            version: env!("CARGO_PKG_VERSION").into(),
            // Delivered with every request (the `declared` mode shows them).
            metrics: vec![
                MetricId {
                    kind: MetricKind::Latency,
                    percentile: Some(95),
                },
                MetricId {
                    kind: MetricKind::Uptime,
                    percentile: None,
                },
            ],
            wants: if cfg!(feature = "wants-content") {
                Wants::CONTENT
            } else {
                Wants::empty()
            },
        }
    }

    fn configure(setup: Setup) -> Result<(), PolicyError> {
        let mode = mode(&setup.config).to_string();
        match mode.as_str() {
            "configure-loop" => spin_forever(),
            "configure-trap" => panic!("hostile: configure traps on purpose"),
            "bad-config" => {
                return Err(PolicyError {
                    kind: PolicyErrorKind::BadConfig,
                    message: "hostile: this config is refused on purpose".into(),
                });
            }
            _ => {}
        }
        KEPT.with(|k| {
            let mut k = k.borrow_mut();
            k.mode = mode;
            k.team = setup.team;
            k.accounts = setup.accounts.len();
            k.models = setup.models.len();
            k.configures += 1;
        });
        Ok(())
    }

    fn route(
        request: Request,
        candidates: Vec<Candidate>,
        metrics: Vec<f64>,
    ) -> Result<Plan, PolicyError> {
        let mode = KEPT.with(|k| k.borrow().mode.clone());
        match mode.as_str() {
            "ok" => ok_plan(&candidates, "ok"),
            "count" => {
                let n = CALLS.fetch_add(1, core::sync::atomic::Ordering::Relaxed) + 1;
                ok_plan(&candidates, &format!("call {n}"))
            }
            "loop" => spin_forever(),
            "memory" => eat_memory(),
            "trap" => panic!("hostile: trap on purpose"),
            "unreachable" => core::arch::wasm32::unreachable(),
            "unknown-id" => Ok(plan(vec![attempt(999)], "unknown-id")),
            "empty-plan" => Ok(plan(Vec::new(), "empty-plan")),
            "duplicate" => Ok(plan(vec![attempt(0), attempt(0)], "duplicate")),
            "huge-output" => {
                let n = candidates.len().max(1);
                let attempts = (0..100_000).map(|i| attempt((i % n) as u16)).collect();
                Ok(plan(attempts, "huge-output"))
            }
            "huge-label" => Ok(plan(vec![attempt(0)], &"x".repeat(10 << 20))),
            "metric-spam" => {
                let id = MetricId {
                    kind: MetricKind::Latency,
                    percentile: Some(95),
                };
                let mut sum = 0.0;
                for _ in 0..1_000_000 {
                    sum += host::metric(0, id, 900).unwrap_or(0.0);
                }
                black_box(sum);
                ok_plan(&candidates, "ok")
            }
            "log-spam" => {
                for i in 0..10_000 {
                    host::log(Level::Info, &format!("hostile: log line {i}"));
                }
                ok_plan(&candidates, "ok")
            }
            "refuse" => Err(PolicyError {
                kind: PolicyErrorKind::NoRoute,
                message: "refused on purpose".into(),
            }),
            "strip-unknown" => {
                let feature = ALL
                    .iter()
                    .copied()
                    .find(|f| !request.features.contains(*f))
                    .unwrap_or(Features::VISION);
                let mut a = attempt(0);
                a.strip = feature;
                Ok(plan(vec![a], "strip-unknown"))
            }
            "huge-explanation" => {
                let mut p = ok_plan(&candidates, "ok")?;
                p.explanation = (0..1000).map(|i| format!("line {i}")).collect();
                Ok(p)
            }
            "long-explanation" => {
                let mut p = ok_plan(&candidates, "ok")?;
                p.explanation = vec!["y".repeat(10_000)];
                Ok(p)
            }
            "too-many-retries" => {
                let mut p = ok_plan(&candidates, "ok")?;
                p.attempts[0].retries = Some(200);
                Ok(p)
            }
            "explain" => {
                let mut p = ok_plan(&candidates, "explained")?;
                p.score = Some(0.75);
                p.explanation = vec!["first line".into(), "second line".into()];
                Ok(p)
            }
            "content" => {
                let label = match &request.content {
                    None => "content:none".to_string(),
                    Some(c) => format!(
                        "content:{}:{}:{}",
                        c.turns,
                        c.characters,
                        c.last_user.as_deref().unwrap_or("-")
                    ),
                };
                ok_plan(&candidates, &label)
            }
            "declared" => {
                let values: Vec<String> = metrics
                    .iter()
                    .map(|v| {
                        if v.is_nan() {
                            "-".into()
                        } else {
                            format!("{v}")
                        }
                    })
                    .collect();
                ok_plan(&candidates, &format!("declared:{}", values.join(",")))
            }
            "setup" => {
                let label = KEPT.with(|k| {
                    let k = k.borrow();
                    format!(
                        "setup:{}:{}:{}:{}",
                        k.team, k.accounts, k.models, k.configures
                    )
                });
                ok_plan(&candidates, &label)
            }
            other => Err(PolicyError {
                kind: PolicyErrorKind::Internal,
                message: format!("hostile: unknown mode {other:?}"),
            }),
        }
    }
}

export!(Hostile);
