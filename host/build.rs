//! Builds the bundled default policy (`plugins/default-policy`, on the 0.2
//! contract) and its 0.1 build (`plugins/default-policy-v0-1`, for `policy
//! bench` and the benchmark's side-by-side) as wasm32-wasip2 components so
//! the binary can embed them.

#[path = "../build/guests.rs"]
mod guests;

fn main() {
    guests::watch("plugins/default-policy/src");
    guests::watch("plugins/default-policy/Cargo.toml");
    guests::watch("plugins/default-policy-v0-1");
    let dir = guests::build_guests(&["default-policy", "default-policy-v0-1"]);
    for (file, var) in [
        ("default_policy.wasm", "SWITCHYARD_DEFAULT_POLICY_WASM"),
        (
            "default_policy_v0_1.wasm",
            "SWITCHYARD_DEFAULT_POLICY_V0_1_WASM",
        ),
    ] {
        let wasm = dir.join(file);
        assert!(wasm.exists(), "guest build produced no {}", wasm.display());
        println!("cargo:rustc-env={var}={}", wasm.display());
    }
}
