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
