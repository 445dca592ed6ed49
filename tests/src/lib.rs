//! Helpers shared by the end-to-end tests.

use std::path::PathBuf;

pub mod mock;
pub mod process;
pub mod redis;
pub mod sse;

/// DirectorySnapshot holding the guest components built by `tests/build.rs`.
pub fn guest_dir() -> PathBuf {
    PathBuf::from(env!("SWITCHYARD_GUEST_DIR"))
}

/// Bytes of the guest component `name` (e.g. `hostile` → `hostile.wasm`).
pub fn guest(name: &str) -> Vec<u8> {
    let path = guest_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Path of a file relative to the repository root.
pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// A path for a new SQLite store under the system temp directory, unique to
/// this call (tests never share a store by accident).
pub fn temp_store() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join("switchyard-tests");
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(format!("{}-{n}-{nanos:x}.db", std::process::id()))
}

/// The `switchyard` command built by this package (`switchyard-test-cli`,
/// beside the test binaries' `deps/` directory), or the one
/// `SWITCHYARD_TEST_CLI` names (to run the process tests against another
/// build).
pub fn cli_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SWITCHYARD_TEST_CLI") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary directory");
    let path = dir.join(format!(
        "switchyard-test-cli{}",
        std::env::consts::EXE_SUFFIX
    ));
    assert!(
        path.exists(),
        "{} is missing: it is built with the tests of this package",
        path.display()
    );
    path
}

/// Runs [`cli_binary`] with `args` and the admin token `token` in
/// `SWITCHYARD_ADMIN_TOKEN`, off the async runtime; gives back its exit code
/// (-1 when killed), stdout and stderr.
pub async fn run_cli(args: &[&str], token: &str) -> (i32, String, String) {
    let out = tokio::process::Command::new(cli_binary())
        .args(args)
        .env("SWITCHYARD_ADMIN_TOKEN", token)
        .output()
        .await
        .expect("run switchyard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Parses the config `text` (named `name` in errors), reading `${VAR}`s from
/// `env`; without a `[store]` table it gets a fresh temporary store. Uploaded
/// policies are compiled by [`cli_binary`], as a gateway compiles them with
/// its own executable.
pub fn parse_config(name: &str, text: &str, env: &[(&str, &str)]) -> switchyard::config::Config {
    let mut config = switchyard::config::Config::parse(name, text, &|var| {
        env.iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| v.to_string())
    })
    .expect("config");
    if !text.contains("[store]") {
        config.store_path = temp_store();
    }
    if config.plugins.compile_worker.is_none() {
        config.plugins.compile_worker = Some(cli_binary());
    }
    config
}

/// Starts the gateway on an ephemeral loopback port with the config `text`
/// (named `name` in errors), reading `${VAR}`s from `env`.
pub async fn start_gateway(
    name: &str,
    text: &str,
    env: &[(&str, &str)],
) -> switchyard::api::Server {
    let config = parse_config(name, text, env);
    let grace = config.server.shutdown_grace;
    let state = switchyard::api::app_state(config).expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    switchyard::api::Server::start(listener, state, grace).expect("start")
}
