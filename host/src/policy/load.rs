//! Checks a component before it becomes a policy: is it a component at all,
//! which `switchyard:policy` version it was built against, and whether every
//! import is one the sandbox provides.

use wasmtime::Engine;
use wasmtime::component::Component;

use super::PolicyError;

/// The `switchyard:policy` versions this host serves.
pub const SERVED: [Contract; 2] = [Contract::V0_1, Contract::V0_2];

/// A contract version this host serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// `switchyard:policy@0.1.x` (`wit/policy.wit`).
    V0_1,
    /// `switchyard:policy@0.2.x` (`wit/v0.2/policy.wit`).
    V0_2,
}

impl Contract {
    /// The full version this host was built from.
    pub fn version(self) -> &'static str {
        match self {
            Contract::V0_1 => super::WIT_VERSION,
            Contract::V0_2 => super::v0_2::WIT_VERSION,
        }
    }

    /// The contract a component built against `version` runs on: the same
    /// major and, for 0.x, the same minor version (semver).
    pub fn of(version: &str) -> Option<Contract> {
        let mut parts = version.split('.');
        let (major, minor) = (parts.next()?, parts.next()?);
        let rest_ok = parts.all(|p| !p.is_empty());
        match (major, minor) {
            ("0", "1") if rest_ok => Some(Contract::V0_1),
            ("0", "2") if rest_ok => Some(Contract::V0_2),
            _ => None,
        }
    }

    /// The exports its `policy` world requires.
    fn exports(self) -> &'static [&'static str] {
        match self {
            Contract::V0_1 => &["route", "describe"],
            Contract::V0_2 => &["route", "describe", "configure"],
        }
    }
}

/// `switchyard:policy@0.1.0 and @0.2.0`, for messages.
fn served_list() -> String {
    let versions: Vec<String> = SERVED.iter().map(|c| format!("@{}", c.version())).collect();
    format!("switchyard:policy{}", versions.join(" and "))
}

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
        "component was built against switchyard:policy@{found}; this host serves {served} (and their patch releases)",
        served = served_list()
    )]
    WrongVersion { found: String },
    #[error("component imports {0}, which policies may not use ({1})")]
    ForbiddenImport(String, &'static str),
    #[error("component does not implement the {served} `policy` world: {0}", served = served_list().replace(" and ", " or "))]
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
/// world; returns the contract the component was built against.
pub(super) fn check_imports_and_exports(
    engine: &Engine,
    component: &Component,
) -> Result<Contract, LoadError> {
    let ty = component.component_type();
    let mut contract = None;
    for (name, _) in ty.imports(engine) {
        if let Some(rest) = name.strip_prefix("switchyard:policy/") {
            let (iface, found) = rest.split_once('@').unwrap_or((rest, ""));
            let Some(this) = Contract::of(found) else {
                return Err(LoadError::WrongVersion {
                    found: found.to_string(),
                });
            };
            if contract.is_some_and(|c| c != this) {
                return Err(LoadError::WorldMismatch(format!(
                    "it imports {name} beside another version of the contract"
                )));
            }
            if iface != "types" && iface != "host" {
                return Err(LoadError::WorldMismatch(format!(
                    "it imports {name}, which switchyard:policy@{} does not define",
                    this.version()
                )));
            }
            contract = Some(this);
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
    // A policy that imports nothing of ours (it never logs or reads metrics and
    // uses no shared types) is told apart by its exports: only 0.2 has
    // `configure`.
    let contract = contract.unwrap_or(if exports.contains(&"configure") {
        Contract::V0_2
    } else {
        Contract::V0_1
    });
    let missing: Vec<&str> = contract
        .exports()
        .iter()
        .copied()
        .filter(|want| !exports.contains(want))
        .collect();
    if !missing.is_empty() {
        return Err(LoadError::WorldMismatch(format!(
            "missing export{} {} for switchyard:policy@{} (it exports: {})",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", "),
            contract.version(),
            if exports.is_empty() {
                "nothing".to_string()
            } else {
                exports.join(", ")
            }
        )));
    }
    Ok(contract)
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
        assert_eq!(Contract::of("0.1.0"), Some(Contract::V0_1));
        assert_eq!(Contract::of("0.1.7"), Some(Contract::V0_1));
        assert_eq!(Contract::of("0.2.0"), Some(Contract::V0_2));
        assert_eq!(Contract::of("0.2.3"), Some(Contract::V0_2));
        for other in ["0.9.0", "0.3.0", "1.1.0", "1.2.0", "", "0", "0.2.", "x.y.z"] {
            assert_eq!(Contract::of(other), None, "{other}");
        }
        let text = LoadError::WrongVersion {
            found: "0.9.0".into(),
        }
        .to_string();
        assert!(
            text.contains("@0.9.0") && text.contains("switchyard:policy@0.1.0 and @0.2.0"),
            "{text}"
        );
    }
}
