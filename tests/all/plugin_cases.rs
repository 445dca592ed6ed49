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
