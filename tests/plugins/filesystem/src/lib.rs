//! Test fixture: a policy of the real world that reads a file with `std::fs`,
//! so the component imports `wasi:filesystem`.

wit_bindgen::generate!({
    world: "policy",
    path: "../../../wit",
});

use switchyard::policy::types::Attempt;

struct Filesystem;

impl Guest for Filesystem {
    fn route(_request: Request, candidates: Vec<Candidate>) -> Result<Plan, PolicyError> {
        let secret = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let attempts = candidates
            .iter()
            .take(1)
            .map(|c| Attempt {
                candidate: c.id.clone(),
                strip: Vec::new(),
                timeout_ms: None,
            })
            .collect();
        Ok(Plan {
            attempts,
            label: format!("read {} bytes", secret.len()),
        })
    }

    fn describe() -> Info {
        Info {
            name: "filesystem".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            metrics: Vec::new(),
        }
    }
}

export!(Filesystem);
