//! Checks a component before it becomes a policy: is it a component at all,
//! which `switchyard:policy` version it was built against, and whether every
//! import is one the sandbox provides.

use wasmtime::Engine;
use wasmtime::component::Component;

use super::{PolicyError, WIT_VERSION};

/// Why a component was not accepted as a policy.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadError {
    #[error("policy component is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("not a WebAssembly file (it does not start with the \\0asm magic bytes)")]
    NotWasm,
    #[error(
        "this is a core WebAssembly module, not a component: build the policy as a component (e.g. `cargo build --target wasm32-wasip2` with wit-bindgen)"
    )]
    NotAComponent,
    #[error("component does not compile: {0}")]
    Compile(String),
    #[error("component refused while compiling: {0}")]
    CompileBudget(String),
    #[error("component refused before compiling: {0}")]
    Structure(super::structure::StructureError),
    #[error(
        "component was built against switchyard:policy@{found}; this host serves switchyard:policy@{served} (and its 0.{minor}.x releases)",
        served = WIT_VERSION,
        minor = served_minor()
    )]
    WrongVersion { found: String },
    #[error("component imports {0}, which policies may not use ({1})")]
    ForbiddenImport(String, &'static str),
    #[error("component does not implement the switchyard:policy@{WIT_VERSION} `policy` world: {0}")]
    WorldMismatch(String),
    #[error("component failed while describing itself: {0}")]
    Describe(PolicyError),
    #[error("policy engine error: {0}")]
    Engine(String),
}

impl From<super::structure::StructureError> for LoadError {
    /// A malformed binary does not compile, whoever finds out first.
    fn from(e: super::structure::StructureError) -> Self {
        match e {
            super::structure::StructureError::Malformed(message) => LoadError::Compile(message),
            limit => LoadError::Structure(limit),
        }
    }
}

fn served_minor() -> &'static str {
    WIT_VERSION.split('.').nth(1).unwrap_or("0")
}

/// Refuses anything that is not a WebAssembly component binary.
pub(super) fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm);
    }
    // Core modules are version 1 with layer 0; components carry layer 1.
    if bytes[6..8] == [0, 0] {
        return Err(LoadError::NotAComponent);
    }
    Ok(())
}

/// WASI interfaces a std guest carries without using them. They are linked to
/// functions that trap, so they give no capability.
const INERT_WASI: &[&str] = &["wasi:cli/", "wasi:io/", "wasi:clocks/", "wasi:random/"];

/// Checks imports against what the sandbox provides and the exports against the
/// world; returns the `switchyard:policy` version the component was built against.
pub(super) fn check_imports_and_exports(
    engine: &Engine,
    component: &Component,
) -> Result<String, LoadError> {
    let ty = component.component_type();
    let mut version = None;
    for (name, _) in ty.imports(engine) {
        if let Some(rest) = name.strip_prefix("switchyard:policy/") {
            let (iface, found) = rest.split_once('@').unwrap_or((rest, ""));
            if !compatible(found) {
                return Err(LoadError::WrongVersion {
                    found: found.to_string(),
                });
            }
            if iface != "types" && iface != "host" {
                return Err(LoadError::WorldMismatch(format!(
                    "it imports {name}, which switchyard:policy@{WIT_VERSION} does not define"
                )));
            }
            version = Some(found.to_string());
        } else if name.starts_with("wasi:") {
            if !INERT_WASI.iter().any(|prefix| name.starts_with(prefix)) {
                return Err(LoadError::ForbiddenImport(
                    name.to_string(),
                    "policies get no filesystem, network or HTTP access",
                ));
            }
        } else {
            return Err(LoadError::ForbiddenImport(
                name.to_string(),
                "the sandbox provides only switchyard:policy/host",
            ));
        }
    }
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    let missing: Vec<&str> = ["route", "describe"]
        .into_iter()
        .filter(|want| !exports.contains(want))
        .collect();
    if !missing.is_empty() {
        return Err(LoadError::WorldMismatch(format!(
            "missing export{} {} (it exports: {})",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", "),
            if exports.is_empty() {
                "nothing".to_string()
            } else {
                exports.join(", ")
            }
        )));
    }
    // A policy that imports nothing of ours (it never logs or reads metrics and
    // uses no shared types) is still fine; it was built against our version.
    Ok(version.unwrap_or_else(|| WIT_VERSION.to_string()))
}

/// Whether a component built against `found` can run on this host: same major
/// and, for 0.x, same minor version (semver compatibility).
fn compatible(found: &str) -> bool {
    let mut ours = WIT_VERSION.split('.');
    let mut theirs = found.split('.');
    let (om, on) = (ours.next(), ours.next());
    let (tm, tn) = (theirs.next(), theirs.next());
    match om {
        Some("0") => om == tm && on == tn,
        _ => om == tm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        assert_eq!(check_header(b""), Err(LoadError::NotWasm));
        assert_eq!(check_header(b"hello world"), Err(LoadError::NotWasm));
        assert_eq!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(LoadError::NotAComponent)
        );
        assert_eq!(check_header(b"\0asm\x0d\0\x01\0"), Ok(()));
    }

    #[test]
    fn versions() {
        assert!(compatible("0.1.0"));
        assert!(compatible("0.1.7"));
        assert!(!compatible("0.2.0"));
        assert!(!compatible("0.9.0"));
        assert!(!compatible("1.1.0"));
        assert!(!compatible(""));
    }
}
