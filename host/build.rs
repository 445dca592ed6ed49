//! Builds the bundled default policy (`plugins/default-policy`) as a
//! wasm32-wasip2 component so the binary can embed it.

#[path = "../build/guests.rs"]
mod guests;

fn main() {
    guests::watch("plugins/default-policy/src");
    guests::watch("plugins/default-policy/Cargo.toml");
    let dir = guests::build_guests(&["default-policy"]);
    let wasm = dir.join("default_policy.wasm");
    assert!(wasm.exists(), "guest build produced no {}", wasm.display());
    println!(
        "cargo:rustc-env=SWITCHYARD_DEFAULT_POLICY_WASM={}",
        wasm.display()
    );
}
