//! Shared by `host/build.rs` and `tests/build.rs`: builds guest components of
//! the `plugins/` workspace for wasm32-wasip2 with a nested cargo, into
//! `<target>/guests`, a directory of its own so the outer build's lock is never
//! contended.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target triple guests build for.
pub const GUEST_TARGET: &str = "wasm32-wasip2";

/// Builds `packages` (all guests when empty) in release mode and returns the
/// directory holding the `.wasm` files.
pub fn build_guests(packages: &[&str]) -> PathBuf {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("crate lives in the workspace root")
        .to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    // OUT_DIR is <target>/<profile>/build/<crate>-<hash>/out.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root.join("target"));
    let guest_target_dir = target_dir.join("guests");

    for path in ["wit", "plugins/Cargo.toml", "plugins/Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(root.join("plugins/Cargo.toml"))
        .args(["--release", "--locked", "--target", GUEST_TARGET])
        .arg("--target-dir")
        .arg(&guest_target_dir);
    if packages.is_empty() {
        cmd.arg("--workspace");
    }
    for package in packages {
        cmd.args(["-p", package]);
    }
    // The outer build's settings are for the host target; keep them away from
    // the guest build (clippy's wrapper, host RUSTFLAGS, a forced target dir).
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CLIPPY_ARGS",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build guests: {e}"));
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("target may not be installed")
            || stderr.contains("can't find crate for `core`")
        {
            "\nThe wasm32-wasip2 target is missing: run `rustup target add wasm32-wasip2`."
        } else {
            ""
        };
        panic!("building guest components failed:\n{stderr}{hint}");
    }
    guest_target_dir.join(GUEST_TARGET).join("release")
}

/// Marks a guest crate's sources so the build script reruns when they change.
pub fn watch(root_relative: &str) {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("crate lives in the workspace root");
    println!(
        "cargo:rerun-if-changed={}",
        root.join(root_relative).display()
    );
}
