//! Helpers shared by the end-to-end tests.

use std::path::PathBuf;

pub mod mock;

/// Directory holding the guest components built by `tests/build.rs`.
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

/// Starts the gateway on an ephemeral loopback port with the config `text`
/// (named `name` in errors), reading `${VAR}`s from `env`.
pub async fn start_gateway(
    name: &str,
    text: &str,
    env: &[(&str, &str)],
) -> switchyard::api::Server {
    let config = switchyard::config::Config::parse(name, text, &|var| {
        env.iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| v.to_string())
    })
    .expect("config");
    let grace = config.server.shutdown_grace;
    let state = switchyard::api::app_state(config).expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    switchyard::api::Server::start(listener, state, grace).expect("start")
}
