//! Test fixture: the policy contract, but at package version 0.9.0 (wit/ is a
//! copy of the real contract with only the version changed).

wit_bindgen::generate!({
    world: "policy",
    path: "wit",
});

use switchyard::policy::types::Attempt;

struct FutureVersion;

impl Guest for FutureVersion {
    fn route(_request: Request, candidates: Vec<Candidate>) -> Result<Plan, PolicyError> {
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
            label: "future-version".into(),
        })
    }

    fn describe() -> Info {
        Info {
            name: "future-version".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            metrics: Vec::new(),
        }
    }
}

export!(FutureVersion);
