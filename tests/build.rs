//! Builds every guest component (the default policy, the example team plugin
//! and the hostile fixtures under tests/plugins) for the end-to-end tests.

#[path = "../build/guests.rs"]
mod guests;

fn main() {
    for dir in [
        "plugins",
        "examples/intent-router",
        "examples/content-router",
        "tests/plugins",
    ] {
        guests::watch(dir);
    }
    let dir = guests::build_guests(&[]);
    println!("cargo:rustc-env=SWITCHYARD_GUEST_DIR={}", dir.display());
}
