//! `switchyard policy new NAME`: a standalone policy project, outside this
//! repository, that builds with plain `cargo build --release --target
//! wasm32-wasip2` and passes `switchyard policy test` as created.
//!
//! The project carries the contract it is built against
//! (`wit/policy.wit`, this gateway's `switchyard:policy@0.2.0`), a policy
//! that routes to the cheapest capable candidates and parses its config in
//! `configure`, a case file, and a README with the build, test, bench and
//! push commands. The templates are files beside this one.

use std::path::{Path, PathBuf};

/// The files of a new project: path relative to it, and template.
const FILES: [(&str, &str); 6] = [
    ("Cargo.toml", include_str!("Cargo.toml.tmpl")),
    ("src/lib.rs", include_str!("lib.rs.tmpl")),
    ("cases.json", include_str!("cases.json.tmpl")),
    ("README.md", include_str!("README.md.tmpl")),
    (".gitignore", include_str!("gitignore.tmpl")),
    (
        "wit/policy.wit",
        include_str!("../../../wit/v0.2/policy.wit"),
    ),
];

/// Why no project was created.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(
        "`{0}` is not a usable policy name: use 1 to 64 lowercase letters, digits, `-` or `_`, starting with a letter"
    )]
    BadName(String),
    #[error("{0} already exists; choose another name or directory")]
    Exists(PathBuf),
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, std::io::Error),
}

/// Whether `name` can be both a Cargo package and a component file name.
fn valid(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Creates the project `name` in `dir` (which must not exist yet); returns
/// the files written.
pub fn create(dir: &Path, name: &str) -> Result<Vec<PathBuf>, ScaffoldError> {
    if !valid(name) {
        return Err(ScaffoldError::BadName(name.to_string()));
    }
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir.to_path_buf()));
    }
    // The component file cargo writes: the package name with `_` for `-`.
    let crate_name = name.replace('-', "_");
    let mut written = Vec::with_capacity(FILES.len());
    for (relative, template) in FILES {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| ScaffoldError::Write(parent.to_path_buf(), e))?;
        }
        let text = if relative.ends_with(".wit") {
            template.to_string()
        } else {
            template
                .replace("{name}", name)
                .replace("{crate}", &crate_name)
        };
        std::fs::write(&path, text).map_err(|e| ScaffoldError::Write(path.clone(), e))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["my-policy", "p", "router_2"] {
            assert!(valid(good), "{good}");
        }
        for bad in ["", "My", "2fast", "a b", "a/b", "..", "ü", &"x".repeat(65)] {
            assert!(!valid(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_project_is_written_once() {
        let dir = std::env::temp_dir().join(format!("switchyard-scaffold-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = create(&dir, "demo-router").expect("created");
        assert_eq!(files.len(), FILES.len());
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).expect("lib.rs");
        assert!(lib.contains("name: \"demo-router\""), "{lib}");
        assert!(!lib.contains("{name}"));
        let readme = std::fs::read_to_string(dir.join("README.md")).expect("README");
        assert!(readme.contains("release/demo_router.wasm"), "{readme}");
        let wit = std::fs::read_to_string(dir.join("wit/policy.wit")).expect("wit");
        assert!(wit.contains("package switchyard:policy@0.2.0;"));
        assert!(matches!(
            create(&dir, "demo-router"),
            Err(ScaffoldError::Exists(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
