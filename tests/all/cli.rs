//! `switchyard policy ...` as a policy author runs it (the command built as
//! `switchyard-test-cli`, the same `switchyard::cli::main`).

use std::path::PathBuf;
use std::process::{Command, Output};

fn switchyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard-test-cli"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run switchyard")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write temp file");
    path
}

const TWO_CANDIDATES: &str = r#"
  "candidates": [
    { "id": "anthropic/claude-opus-4-1", "price": { "input": 15, "output": 75 }, "tier": 1 },
    { "id": "openai/gpt-5-mini", "price": { "input": 0.25, "output": 2 }, "tier": 2 }
  ],"#;

#[test]
fn the_default_policy_case_file_passes_through_the_cli() {
    let out = switchyard(&[
        "policy",
        "test",
        "builtin:default",
        "plugins/default-policy/cases/default.json",
    ]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(" 0 failed"), "{text}");
    // The table reports instructions and peak memory against the limit.
    assert!(
        text.contains("instructions") && text.contains("/ 32.0 MiB"),
        "{text}"
    );
}

#[test]
fn a_wrong_expectation_fails_with_a_readable_diff_and_exit_code_1() {
    let cases = temp_file(
        "wrong.json",
        &format!(
            r#"{{ {TWO_CANDIDATES}
              "cases": [
                {{ "name": "cost: cheapest first (right)",
                   "request": {{ "routing": {{ "metric": "cost" }} }},
                   "expect": {{ "plan": ["openai/gpt-5-mini", "anthropic/claude-opus-4-1"] }} }},
                {{ "name": "cost: expectation is wrong",
                   "request": {{ "routing": {{ "metric": "cost" }} }},
                   "expect": {{ "plan": ["anthropic/claude-opus-4-1", "openai/gpt-5-mini"], "label": "cheap" }} }}
              ] }}"#
        ),
    );
    let out = switchyard(&[
        "policy",
        "test",
        "builtin:default",
        cases.to_str().expect("utf-8 path"),
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("1 passed, 1 failed"), "{text}");
    assert!(text.contains("FAIL cost: expectation is wrong"), "{text}");
    // Position-by-position plan diff, marking the differing rows.
    assert!(text.contains("plan differs:"), "{text}");
    let rows: Vec<&str> = text.lines().filter(|l| l.contains("<-- differs")).collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(
        rows[0].contains("anthropic/claude-opus-4-1") && rows[0].contains("openai/gpt-5-mini"),
        "{text}"
    );
    assert!(text.contains("label: expected \"cheap\""), "{text}");
}

#[test]
fn bad_inputs_are_reported_not_panicked() {
    let garbage = temp_file("garbage.wasm", "this is not wasm");
    let out = switchyard(&[
        "policy",
        "test",
        garbage.to_str().expect("utf-8"),
        "plugins/default-policy/cases/default.json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a WebAssembly file"), "{err}");

    let bad_cases = temp_file(
        "bad.json",
        r#"{ "cases": [ { "name": "x", "expect": { "frist": "a/b" } } ] }"#,
    );
    let out = switchyard(&[
        "policy",
        "test",
        "builtin:default",
        bad_cases.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `frist`"), "{err}");
}

#[test]
fn bench_prints_decision_times() {
    let out = switchyard(&[
        "policy",
        "bench",
        "builtin:default",
        "--candidates",
        "20",
        "--seconds",
        "0.3",
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("decisions/s") && text.contains("median") && text.contains("p99"),
        "{text}"
    );
    // One row for a fresh instance per decision, one for a warm instance,
    // for each build of the bundled policy: 0.2 (served) and 0.1.
    for contract in ["0.2.0", "0.1.0"] {
        for instance in ["fresh", "warm"] {
            let row = text
                .lines()
                .find(|l| l.starts_with(&format!("{contract}     {instance}")))
                .unwrap_or_else(|| panic!("no {contract} {instance} row in {text}"));
            let fields: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(fields.get(2), Some(&"20"), "{text}");
            assert_eq!(fields.last(), Some(&"0"), "faults: {text}");
        }
    }
}

/// `policy new` end to end: the project it creates builds with plain cargo
/// (outside this repository's workspaces), passes its own cases through
/// `policy test`, and benches, as an author would run it.
#[test]
fn a_new_policy_project_builds_and_passes_its_cases_as_created() {
    let dir = std::env::temp_dir().join(format!("switchyard-new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let project = dir.join("my-router");
    let out = switchyard(&[
        "policy",
        "new",
        "my-router",
        "--dir",
        project.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "cases.json",
        "README.md",
        "wit/policy.wit",
    ] {
        assert!(project.join(file).exists(), "{file}");
    }
    // A second time: refused, nothing overwritten.
    let again = switchyard(&[
        "policy",
        "new",
        "my-router",
        "--dir",
        project.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let bad = switchyard(&["policy", "new", "My Router"]);
    assert_eq!(bad.status.code(), Some(2));

    // The guests' target directory: its dependencies are compiled already
    // (crates offline, as the suite builds guests before the tests run).
    let target = switchyard_tests::guest_dir()
        .parent()
        .and_then(|p| p.parent())
        .expect("<target>/guests")
        .to_path_buf();
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .args([
            "build",
            "--release",
            "--offline",
            "--target",
            "wasm32-wasip2",
        ])
        .current_dir(&project)
        .env("CARGO_TARGET_DIR", &target);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cargo.env_remove(var);
    }
    let built = cargo.output().expect("run cargo");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let wasm = target.join("wasm32-wasip2/release/my_router.wasm");
    let cases = project.join("cases.json");
    let out = switchyard(&[
        "policy",
        "test",
        wasm.to_str().expect("utf-8"),
        cases.to_str().expect("utf-8"),
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("switchyard:policy@0.2.0"), "{text}");
    assert!(text.contains("6 passed, 0 failed"), "{text}");
    let out = switchyard(&[
        "policy",
        "bench",
        wasm.to_str().expect("utf-8"),
        "--seconds",
        "0.2",
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
    let _ = std::fs::remove_dir_all(&dir);
}
