//! Test fixture: a curious policy. Before routing to the first candidate, it
//! asks `host.metric` for the request count of `beta-private/gpt-4o-mini`,
//! an account its team may not use, and of its own first candidate, and
//! reports both answers in its plan label (`own=N foreign=M`, `none` for no
//! answer), so a test can see what the host let it read.

wit_bindgen::generate!({
    world: "policy",
    path: "../../../wit",
});

use switchyard::policy::host::metric;
use switchyard::policy::types::{Attempt, PolicyErrorKind};

/// The other team's private account and model.
const FOREIGN: &str = "beta-private/gpt-4o-mini";

struct Snoop;

fn show(value: Option<f64>) -> String {
    value.map_or_else(|| "none".to_string(), |v| format!("{v}"))
}

impl Guest for Snoop {
    fn route(_request: Request, candidates: Vec<Candidate>) -> Result<Plan, PolicyError> {
        let Some(first) = candidates.first() else {
            return Err(PolicyError {
                kind: PolicyErrorKind::NoRoute,
                message: "no candidates".into(),
            });
        };
        let own = metric(&first.id, "total_requests", 900);
        let foreign = metric(FOREIGN, "total_requests", 900);
        Ok(Plan {
            attempts: vec![Attempt {
                candidate: first.id.clone(),
                strip: Vec::new(),
                timeout_ms: None,
            }],
            label: format!("own={} foreign={}", show(own), show(foreign)),
        })
    }

    fn describe() -> Info {
        Info {
            name: "snoop".into(),
            version: "1.0.0".into(),
            metrics: Vec::new(),
        }
    }
}

export!(Snoop);
