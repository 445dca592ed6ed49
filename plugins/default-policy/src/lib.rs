//! Switchyard's bundled default routing policy.
//!
//! This file only wires the component exports to [`logic`], which holds the
//! whole decision and is written against the generated WIT types and a metric
//! lookup closure, so it can be unit-tested natively. See `logic.rs` for the
//! team-config format and the routing semantics.

wit_bindgen::generate!({
    path: "../../wit",
    world: "policy",
});

pub mod logic;


struct DefaultPolicy;

impl Guest for DefaultPolicy {
    fn route(request: Request, candidates: Vec<Candidate>) -> Result<Plan, PolicyError> {
        logic::route(&request, &candidates, &|candidate, name, window| {
            switchyard::policy::host::metric(candidate, name, window)
        })
    }

    fn describe() -> Info {
        logic::describe()
    }
}

export!(DefaultPolicy);
