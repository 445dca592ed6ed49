//! The shipped case files pass: the default policy's and the example team
//! plugin's, each against its own component, under the gateway's limits.

use switchyard::harness::{parse_case_file, render_report, run_cases};
use switchyard::policy::{Limits, Runtime};
use switchyard_tests::{guest, repo_path};

fn run(component: &[u8], cases: &str) {
    let limits = Limits {
        fuel: Some(100_000_000),
        ..Limits::default()
    };
    let memory = limits.max_memory_bytes;
    let runtime = Runtime::new(limits).expect("runtime");
    let policy = runtime.load(component).expect("plugin loads");
    let path = repo_path(cases);
    let text = std::fs::read_to_string(&path).expect("case file");
    let file = parse_case_file(&text).expect("case file parses");
    assert!(!file.cases.is_empty());
    let reports = run_cases(&policy, &file);
    let table = render_report(&reports, memory, Some(100_000_000));
    println!("{table}");
    assert!(
        reports.iter().all(|r| r.passed()),
        "{}:\n{table}",
        path.display()
    );
}

#[test]
fn default_policy_case_file_passes() {
    run(
        &guest("default_policy"),
        "plugins/default-policy/cases/default.json",
    );
}

#[test]
fn example_intent_router_case_file_passes() {
    run(&guest("intent_router"), "examples/intent-router/cases.json");
}

#[test]
fn example_content_router_case_file_passes() {
    run(
        &guest("content_router"),
        "examples/content-router/cases.json",
    );
}

/// The content router's weights in its case file are what its fitting
/// script prints for the shipped training prompts: the documented way to
/// fit them is the way they were fitted, and it is deterministic.
#[test]
fn the_content_router_weights_come_from_its_fitting_script() {
    let dir = repo_path("examples/content-router");
    let out = std::process::Command::new("python3")
        .args([
            "fit.py",
            "train.jsonl",
            "--strong",
            "gpt-5,claude-sonnet-4-5",
            "--cheap",
            "gpt-5-mini,claude-haiku-4-5",
            "--buckets",
            "1024",
        ])
        .current_dir(&dir)
        .output()
        .expect("run python3 fit.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fitted: serde_json::Value = serde_json::from_slice(&out.stdout).expect("config JSON");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).expect("case file"))
            .expect("case file JSON");
    assert_eq!(fitted, cases["config"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("training accuracy 1.00"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
