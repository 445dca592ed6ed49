//! Test fixture: a routing policy that misbehaves on request.
//!
//! The behaviour is chosen by the `"mode"` string of the team config
//! (`request.config`), e.g. `{"mode": "loop"}`; no mode means `ok`.
//!
//! | mode | behaviour |
//! | --- | --- |
//! | `ok` | valid plan: the first candidate, label `ok` |
//! | `loop` | spins forever (volatile reads the optimizer cannot remove) |
//! | `memory` | allocates and touches 1 MiB chunks forever |
//! | `trap` | `panic!` (an `unreachable` trap under panic=abort) |
//! | `unreachable` | executes the wasm `unreachable` instruction directly |
//! | `unknown-id` | plan naming candidate `nope/ghost` |
//! | `empty-plan` | plan with zero attempts |
//! | `duplicate` | plan naming the first candidate twice |
//! | `huge-output` | plan with 100 000 attempts (cycling through the candidates) |
//! | `huge-label` | valid one-attempt plan with a 10 MiB label |
//! | `metric-spam` | calls `host.metric` 1 000 000 times, then the `ok` plan |
//! | `log-spam` | calls `host.log` 10 000 times, then the `ok` plan |
//! | `refuse` | policy-error `no-route` "refused on purpose" |
//! | `strip-unknown` | first candidate, stripping a feature the request does not use |
//!
//! An unrecognised mode returns policy-error `internal`.

use core::hint::black_box;

wit_bindgen::generate!({
    world: "policy",
    path: "../../../wit",
});

use switchyard::policy::host;
use switchyard::policy::types::{Attempt, Level, PolicyErrorKind};

/// Real feature names, used to pick one the request does not use.
const FEATURES: &[&str] = &[
    "tools.web_search",
    "vision",
    "tools.custom_tools",
    "text.verbosity",
    "include",
    "parallel_tool_calls",
    "stream",
];

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

fn attempt(id: &str) -> Attempt {
    Attempt {
        candidate: id.to_string(),
        strip: Vec::new(),
        timeout_ms: None,
    }
}

fn ok_plan(candidates: &[Candidate]) -> Result<Plan, PolicyError> {
    match candidates.first() {
        Some(c) => Ok(Plan {
            attempts: vec![attempt(&c.id)],
            label: "ok".into(),
        }),
        None => Err(PolicyError {
            kind: PolicyErrorKind::NoRoute,
            message: "no candidates".into(),
        }),
    }
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
        // Touch every page so the memory is really committed.
        for i in (0..CHUNK).step_by(4096) {
            unsafe { core::ptr::write_volatile(chunk.as_mut_ptr().add(i), i as u8) };
        }
        unsafe { chunk.set_len(CHUNK) };
        hoard.push(black_box(chunk));
        black_box(&hoard);
    }
}

struct Hostile;

/// Calls made on this instance (the `count` mode).
static CALLS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

impl Guest for Hostile {
    fn route(request: Request, candidates: Vec<Candidate>) -> Result<Plan, PolicyError> {
        let first = candidates
            .first()
            .map(|c| c.id.clone())
            .unwrap_or_else(|| "nope/ghost".into());
        match mode(&request.config) {
            "ok" => ok_plan(&candidates),
            // Counts the calls this instance has served, in the plan label:
            // shows whether the host reused a warm instance.
            "count" => {
                let n = CALLS.fetch_add(1, core::sync::atomic::Ordering::Relaxed) + 1;
                ok_plan(&candidates).map(|plan| Plan {
                    label: format!("call {n}"),
                    ..plan
                })
            }
            "loop" => spin_forever(),
            "memory" => eat_memory(),
            "trap" => panic!("hostile: trap on purpose"),
            "unreachable" => core::arch::wasm32::unreachable(),
            "unknown-id" => Ok(Plan {
                attempts: vec![attempt("nope/ghost")],
                label: "unknown-id".into(),
            }),
            "empty-plan" => Ok(Plan {
                attempts: Vec::new(),
                label: "empty-plan".into(),
            }),
            "duplicate" => Ok(Plan {
                attempts: vec![attempt(&first), attempt(&first)],
                label: "duplicate".into(),
            }),
            "huge-output" => {
                let ids: Vec<&str> = if candidates.is_empty() {
                    vec!["nope/ghost"]
                } else {
                    candidates.iter().map(|c| c.id.as_str()).collect()
                };
                let attempts = (0..100_000).map(|i| attempt(ids[i % ids.len()])).collect();
                Ok(Plan {
                    attempts,
                    label: "huge-output".into(),
                })
            }
            "huge-label" => Ok(Plan {
                attempts: vec![attempt(&first)],
                label: "x".repeat(10 << 20),
            }),
            "metric-spam" => {
                let mut sum = 0.0;
                for _ in 0..1_000_000 {
                    sum += host::metric(&first, "p95_latency", 900).unwrap_or(0.0);
                }
                black_box(sum);
                ok_plan(&candidates)
            }
            "log-spam" => {
                for i in 0..10_000 {
                    host::log(Level::Info, &format!("hostile: log line {i}"));
                }
                ok_plan(&candidates)
            }
            "refuse" => Err(PolicyError {
                kind: PolicyErrorKind::NoRoute,
                message: "refused on purpose".into(),
            }),
            "strip-unknown" => {
                let feature = FEATURES
                    .iter()
                    .find(|f| !request.features.iter().any(|g| g == *f))
                    .copied()
                    .unwrap_or("hostile.not-a-feature");
                Ok(Plan {
                    attempts: vec![Attempt {
                        candidate: first,
                        strip: vec![feature.into()],
                        timeout_ms: None,
                    }],
                    label: "strip-unknown".into(),
                })
            }
            other => Err(PolicyError {
                kind: PolicyErrorKind::Internal,
                message: format!("hostile: unknown mode {other:?}"),
            }),
        }
    }

    fn describe() -> Info {
        Info {
            name: "hostile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            metrics: Vec::new(),
        }
    }
}

export!(Hostile);
