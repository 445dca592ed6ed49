//! Hostile plugins are contained and reported with the right error while the
//! host keeps serving decisions; bad components are rejected at load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::metrics::NoMetrics;
use switchyard::policy::{
    Candidate, Contract, Health, InvalidPlan, Limits, LoadError, Policy, PolicyError, Price,
    Request, Routing, Runtime, WarmPool,
};
use switchyard_tests::guest;

fn candidate(id: &str, features: &[&str]) -> Candidate {
    let (provider, model) = id.split_once('/').expect("account/model");
    Candidate {
        id: id.into(),
        provider: provider.into(),
        model: model.into(),
        logical_model: None,
        price: Price {
            input: 1.0,
            output: 5.0,
            cached_input: 0.1,
        },
        features: features.iter().map(|f| f.to_string()).collect(),
        zdr: false,
        tier: 2,
        health: Health::Healthy,
        headroom: None,
        cache_affinity: false,
        context_window: 200_000,
        metrics: Vec::new(),
    }
}

fn candidates() -> Vec<Candidate> {
    vec![
        candidate("anthropic/claude-haiku-4-5", &["stream", "temperature"]),
        candidate("openai/gpt-5-mini", &["stream"]),
    ]
}

fn request(config: &str) -> Request {
    Request {
        model: "auto".into(),
        routing: Routing {
            metric: None,
            interval_seconds: 900,
            models: Vec::new(),
            providers: Vec::new(),
        },
        features: vec!["stream".into()],
        step_type: None,
        purpose: None,
        team: "team-a".into(),
        estimated_input_tokens: 100,
        max_output_tokens: None,
        prompt_cache_key: false,
        metadata: Vec::new(),
        config: config.into(),
    }
}

fn hostile_decision(
    policy: &Policy,
    mode: &str,
) -> Result<switchyard::policy::RoutePlan, PolicyError> {
    policy.decide(
        &request(&format!(r#"{{"mode": "{mode}"}}"#)),
        &candidates(),
        Arc::new(NoMetrics),
    )
}

/// The bundled default policy still decides correctly on the same runtime.
fn assert_host_still_serves(default: &Policy) {
    let plan = default
        .decide(&request("{}"), &candidates(), Arc::new(NoMetrics))
        .expect("default policy must keep serving");
    assert!(!plan.attempts.is_empty());
}

struct Fixture {
    hostile: Policy,
    default: Policy,
}

fn fixture(hostile: &str) -> Fixture {
    fixture_with(hostile, Limits::default())
}

/// A runtime whose deadline is far away, so that what a test provokes (a memory
/// cap, a log cap) is reached first however loaded the machine is.
fn patient_fixture(hostile: &str) -> Fixture {
    fixture_with(
        hostile,
        Limits {
            deadline: Duration::from_secs(5),
            ..Limits::default()
        },
    )
}

fn fixture_with(hostile: &str, limits: Limits) -> Fixture {
    let runtime = Runtime::new(limits).expect("runtime");
    Fixture {
        hostile: runtime
            .load(&guest(hostile))
            .expect("hostile fixture loads"),
        default: runtime.load_default().expect("default policy loads"),
    }
}

fn each_hostile_behaviour_is_contained_and_reported(hostile: &str) {
    let f = fixture(hostile);
    let limits = Limits::default();

    // The control: the same plugin, behaving, gets a valid plan.
    let plan = hostile_decision(&f.hostile, "ok").expect("ok mode");
    assert_eq!(plan.ids(&candidates())[0], "anthropic/claude-haiku-4-5");

    let started = Instant::now();
    assert_eq!(
        hostile_decision(&f.hostile, "loop"),
        Err(PolicyError::DeadlineExceeded(limits.deadline))
    );
    // Interrupted near the deadline, not after seconds.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_host_still_serves(&f.default);

    let patient = patient_fixture(hostile);
    assert_eq!(
        hostile_decision(&patient.hostile, "memory"),
        Err(PolicyError::MemoryLimit {
            limit: limits.max_memory_bytes
        })
    );
    // Under the gateway's own deadline the bomb is stopped one way or the other.
    let err = hostile_decision(&f.hostile, "memory").expect_err("memory bomb");
    assert!(
        matches!(
            err,
            PolicyError::MemoryLimit { .. } | PolicyError::DeadlineExceeded(_)
        ),
        "{err:?}"
    );
    assert_host_still_serves(&f.default);

    for mode in ["trap", "unreachable"] {
        let err = hostile_decision(&f.hostile, mode).expect_err(mode);
        assert!(matches!(err, PolicyError::Trap(_)), "{mode}: {err:?}");
        assert!(err.is_fault());
    }
    assert_host_still_serves(&f.default);

    assert_eq!(
        hostile_decision(&f.hostile, "unknown-id"),
        Err(PolicyError::InvalidPlan(InvalidPlan::UnknownCandidate {
            index: 0,
            // 0.1 names a candidate by id, 0.2 by position.
            id: if hostile == "hostile" {
                "nope/ghost".into()
            } else {
                "#999".into()
            }
        }))
    );
    assert_eq!(
        hostile_decision(&f.hostile, "empty-plan"),
        Err(PolicyError::InvalidPlan(InvalidPlan::Empty))
    );
    assert_eq!(
        hostile_decision(&f.hostile, "duplicate"),
        Err(PolicyError::InvalidPlan(InvalidPlan::DuplicateAttempt {
            id: "anthropic/claude-haiku-4-5".into()
        }))
    );
    // Building 100 000 attempts takes the guest a while: give it the time, so
    // that what stops it is the output cap.
    assert_eq!(
        hostile_decision(&patient.hostile, "huge-output"),
        Err(PolicyError::InvalidPlan(InvalidPlan::TooManyAttempts {
            count: 100_000,
            max: limits.max_attempts
        }))
    );
    let err = hostile_decision(&patient.hostile, "huge-label").expect_err("huge label");
    assert!(
        matches!(err, PolicyError::InvalidPlan(InvalidPlan::TooLarge(_))),
        "{err:?}"
    );
    let err = hostile_decision(&f.hostile, "strip-unknown").expect_err("strip");
    assert!(
        matches!(
            err,
            PolicyError::InvalidPlan(InvalidPlan::StripNotRequested { .. })
        ),
        "{err:?}"
    );
    assert_host_still_serves(&f.default);

    // A refusal is the plugin's legitimate answer, not a fault.
    let err = hostile_decision(&f.hostile, "refuse").expect_err("refuse");
    assert!(!err.is_fault(), "{err:?}");
    assert!(err.to_string().contains("refused on purpose"), "{err}");
}

fn a_plan_sending_an_unsupported_feature_unstripped_is_invalid(hostile: &str) {
    let f = fixture(hostile);
    // openai/gpt-5-mini lacks temperature; the hostile `ok` plan picks the first
    // candidate, so offer that one first and require temperature.
    let mut req = request(r#"{"mode": "ok"}"#);
    req.features.push("temperature".into());
    let offered = vec![candidates()[1].clone(), candidates()[0].clone()];
    assert_eq!(
        f.hostile.decide(&req, &offered, Arc::new(NoMetrics)),
        Err(PolicyError::InvalidPlan(InvalidPlan::UnsupportedFeature {
            id: "openai/gpt-5-mini".into(),
            feature: "temperature".into()
        }))
    );
}

fn log_and_metric_imports_are_capped(hostile: &str) {
    let f = fixture(hostile);
    let limits = Limits::default();
    let decision = patient_fixture(hostile).hostile.decide_traced(
        &request(r#"{"mode": "log-spam"}"#),
        &candidates(),
        Arc::new(NoMetrics),
    );
    assert!(decision.result.is_ok(), "{:?}", decision.result);
    assert_eq!(decision.logs.len(), limits.max_log_lines);
    assert_eq!(
        decision.stats.logs_dropped as usize,
        10_000 - limits.max_log_lines
    );
    assert!(
        decision
            .logs
            .iter()
            .all(|l| l.message.len() <= limits.max_log_bytes + 3),
        "log lines are truncated"
    );

    // A million metric calls cannot hold the decision past its deadline.
    let decision = f.hostile.decide_traced(
        &request(r#"{"mode": "metric-spam"}"#),
        &candidates(),
        Arc::new(NoMetrics),
    );
    assert_eq!(
        decision.result,
        Err(PolicyError::DeadlineExceeded(limits.deadline))
    );
    assert!(decision.stats.metric_calls > 0);
}

fn decisions_keep_flowing_while_hostile_plugins_run_concurrently(hostile: &str) {
    let f = Arc::new(fixture(hostile));
    let mut threads = Vec::new();
    for worker in 0..4 {
        let f = f.clone();
        threads.push(std::thread::spawn(move || {
            let mut ok = 0;
            for i in 0..25 {
                if worker % 2 == 0 && i % 5 == 0 {
                    let mode = if i % 10 == 0 { "loop" } else { "memory" };
                    assert!(hostile_decision(&f.hostile, mode).is_err());
                } else {
                    f.default
                        .decide(&request("{}"), &candidates(), Arc::new(NoMetrics))
                        .expect("default decides");
                    ok += 1;
                }
            }
            ok
        }));
    }
    let served: usize = threads.into_iter().map(|t| t.join().expect("worker")).sum();
    assert_eq!(served, 90);
}

#[test]
fn components_outside_the_contract_are_rejected_at_load_with_a_clear_message() {
    let runtime = Runtime::new(Limits::default()).expect("runtime");

    let err = runtime
        .load(&guest("other_world"))
        .expect_err("other world");
    assert!(matches!(err, LoadError::WorldMismatch(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("missing exports route, describe"), "{text}");
    assert!(text.contains("it exports: run"), "{text}");

    let err = runtime
        .load(&guest("future_version"))
        .expect_err("future version");
    assert_eq!(
        err,
        LoadError::WrongVersion {
            found: "0.9.0".into()
        }
    );
    let text = err.to_string();
    assert!(
        text.contains("switchyard:policy@0.9.0") && text.contains("switchyard:policy@0.1.0"),
        "{text}"
    );

    let err = runtime.load(&guest("filesystem")).expect_err("filesystem");
    let text = err.to_string();
    assert!(matches!(err, LoadError::ForbiddenImport(..)), "{err:?}");
    assert!(text.contains("imports wasi:filesystem/"), "{text}");
    assert!(text.contains("may not use"), "{text}");

    assert!(matches!(
        runtime.load(b"not wasm at all"),
        Err(LoadError::NotWasm)
    ));
    // The smallest core module: magic + version 1.
    assert!(matches!(
        runtime.load(b"\0asm\x01\0\0\0"),
        Err(LoadError::NotAComponent)
    ));
    // A truncated component fails compilation, with wasmtime's reason.
    let default = guest("default_policy");
    assert!(matches!(
        runtime.load(&default[..default.len() / 2]),
        Err(LoadError::Compile(_))
    ));

    let small = Runtime::new(Limits {
        max_component_bytes: 1024,
        ..Limits::default()
    })
    .expect("runtime");
    assert_eq!(
        small.load(&default).expect_err("too large"),
        LoadError::TooLarge {
            size: default.len(),
            limit: 1024
        }
    );
}

#[test]
fn loaded_policies_describe_themselves() {
    let f = fixture("hostile");
    assert_eq!(f.default.info().name, "switchyard-default");
    assert_eq!(f.default.wit_version(), "0.2.0");
    assert_eq!(f.default.contract(), Contract::V0_2);
    assert_eq!(f.default.sha256().len(), 64);
    assert_eq!(f.hostile.info().name, "hostile");
    assert_eq!(f.hostile.wit_version(), "0.1.0");
    let runtime = Runtime::new(Limits::default()).expect("runtime");
    let old = runtime
        .load(&guest("default_policy_v0_1"))
        .expect("the 0.1 build loads");
    assert_eq!(old.contract(), Contract::V0_1);
    assert_eq!(old.info().name, "switchyard-default");
    let probe = runtime.load(&guest("content_probe")).expect("probe loads");
    assert!(probe.wants_content());
    assert!(!f.default.wants_content());
}

/// The label of a `count`-mode decision: how many calls its instance served.
fn count_label(pool: &WarmPool) -> String {
    let decision = pool.decide_traced(
        &request(r#"{"mode": "count"}"#),
        &candidates(),
        Arc::new(NoMetrics),
    );
    decision.result.expect("count mode routes").label
}

fn warm_instances_are_reused_and_replaced_after_a_fault(hostile: &str) {
    let f = fixture(hostile);
    let pool = WarmPool::new(f.hostile.clone(), 2);
    // One instance serves decision after decision.
    assert_eq!(count_label(&pool), "call 1");
    assert_eq!(count_label(&pool), "call 2");
    assert_eq!(count_label(&pool), "call 3");
    assert_eq!(pool.idle_count(), 1);

    // A trap, a deadline or the memory cap discards the instance it hit...
    for mode in ["trap", "loop", "memory"] {
        let decision = pool.decide_traced(
            &request(&format!(r#"{{"mode": "{mode}"}}"#)),
            &candidates(),
            Arc::new(NoMetrics),
        );
        assert!(decision.result.expect_err(mode).is_fault());
        assert_eq!(pool.idle_count(), 0, "{mode}");
        // ...and the next decision starts on a clean one.
        assert_eq!(count_label(&pool), "call 1", "after {mode}");
    }

    // A refusal and an invalid plan are answers, not faults of the instance.
    let refused = pool.decide_traced(
        &request(r#"{"mode": "refuse"}"#),
        &candidates(),
        Arc::new(NoMetrics),
    );
    assert!(matches!(refused.result, Err(PolicyError::Refused { .. })));
    let invalid = pool.decide_traced(
        &request(r#"{"mode": "duplicate"}"#),
        &candidates(),
        Arc::new(NoMetrics),
    );
    assert!(matches!(invalid.result, Err(PolicyError::InvalidPlan(_))));
    assert_eq!(count_label(&pool), "call 2");

    // Pools do not share instances: another pool of the same policy (another
    // team's) starts its own.
    let other = WarmPool::new(f.hostile.clone(), 2);
    assert_eq!(count_label(&other), "call 1");
    assert_eq!(count_label(&pool), "call 3");
}

fn warm_instances_stay_within_the_runtime_budget(hostile: &str) {
    let runtime = Runtime::new(Limits {
        max_warm_instances: 1,
        ..Limits::default()
    })
    .expect("runtime");
    let hostile = runtime.load(&guest(hostile)).expect("hostile loads");
    let first = WarmPool::new(hostile.clone(), 4);
    let second = WarmPool::new(hostile, 4);
    assert_eq!(count_label(&first), "call 1");
    assert_eq!(count_label(&first), "call 2");
    // The budget's one warm instance belongs to the first pool: the second
    // decides on fresh instances, correctly, and keeps none.
    assert_eq!(count_label(&second), "call 1");
    assert_eq!(count_label(&second), "call 1");
    assert_eq!(second.idle_count(), 0);
    // Once the first pool's instance is gone, the second may keep one.
    drop(first);
    assert_eq!(count_label(&second), "call 1");
    assert_eq!(count_label(&second), "call 2");
}

#[test]
fn a_warm_instance_decides_like_a_fresh_one() {
    let f = fixture("hostile");
    let pool = WarmPool::new(f.default.clone(), 1);
    for config in [
        "{}",
        r#"{"metric": "cost"}"#,
        r#"{"max_attempts": 1}"#,
        "{}",
    ] {
        let fresh = f
            .default
            .decide(&request(config), &candidates(), Arc::new(NoMetrics));
        let warm = pool.decide_traced(&request(config), &candidates(), Arc::new(NoMetrics));
        assert_eq!(warm.result, fresh, "{config}");
    }
}

fn a_pool_may_give_its_policy_a_longer_deadline(hostile: &str) {
    let f = fixture(hostile);
    let patient = WarmPool::with_deadline(f.hostile.clone(), 1, Duration::from_millis(150));
    let started = Instant::now();
    let decision = patient.decide_traced(
        &request(r#"{"mode": "loop"}"#),
        &candidates(),
        Arc::new(NoMetrics),
    );
    assert_eq!(
        decision.result,
        Err(PolicyError::DeadlineExceeded(Duration::from_millis(150)))
    );
    assert!(started.elapsed() >= Duration::from_millis(150));
    // The runtime's own deadline still holds for other pools.
    let plain = WarmPool::new(f.hostile.clone(), 1);
    let decision = plain.decide_traced(
        &request(r#"{"mode": "loop"}"#),
        &candidates(),
        Arc::new(NoMetrics),
    );
    assert_eq!(
        decision.result,
        Err(PolicyError::DeadlineExceeded(Limits::default().deadline))
    );
}

/// Each containment test runs against the hostile fixture of each contract
/// version: 0.2 is held to what 0.1 is.
macro_rules! for_each_contract {
    ($($test:ident),* $(,)?) => {
        mod v0_1 {
            $(#[test]
            fn $test() {
                super::$test("hostile")
            })*
        }
        mod v0_2 {
            $(#[test]
            fn $test() {
                super::$test("hostile_v0_2")
            })*
        }
    };
}

for_each_contract!(
    each_hostile_behaviour_is_contained_and_reported,
    a_plan_sending_an_unsupported_feature_unstripped_is_invalid,
    log_and_metric_imports_are_capped,
    decisions_keep_flowing_while_hostile_plugins_run_concurrently,
    warm_instances_are_reused_and_replaced_after_a_fault,
    warm_instances_stay_within_the_runtime_budget,
    a_pool_may_give_its_policy_a_longer_deadline,
);
