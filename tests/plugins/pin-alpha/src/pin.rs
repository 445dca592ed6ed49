// Shared by the pin-* fixtures, each of which sets `PROVIDER` and includes
// this file: a policy that routes every request to one provider account.

wit_bindgen::generate!({
    world: "policy",
    path: "../../../wit",
});

use switchyard::policy::types::{Attempt, PolicyErrorKind};

struct Pin;

impl Guest for Pin {
    fn route(_request: Request, candidates: Vec<Candidate>) -> Result<Plan, PolicyError> {
        let attempts: Vec<Attempt> = candidates
            .iter()
            .filter(|c| c.provider == PROVIDER)
            .map(|c| Attempt {
                candidate: c.id.clone(),
                strip: Vec::new(),
                timeout_ms: None,
            })
            .collect();
        if attempts.is_empty() {
            return Err(PolicyError {
                kind: PolicyErrorKind::NoRoute,
                message: format!("no candidate on provider {PROVIDER}"),
            });
        }
        Ok(Plan {
            attempts,
            label: format!("pin-{PROVIDER}"),
        })
    }

    fn describe() -> Info {
        Info {
            name: format!("pin-{PROVIDER}"),
            version: "1.0.0".into(),
            metrics: Vec::new(),
        }
    }
}

export!(Pin);
