//! The bundled default policy on `switchyard:policy@0.1.0`: the decision of
//! `default-policy` (its `logic.rs`) behind the 0.1 adapter. The gateway
//! serves the 0.2 build; this one shows that both contracts give the same
//! plans and what 0.2 saves (`switchyard policy bench`, the policy benchmark).

wit_bindgen::generate!({
    path: "../../wit",
    world: "policy",
});

#[allow(dead_code)]
#[path = "../../default-policy/src/logic.rs"]
mod logic;
#[path = "../../default-policy/src/logic/v0_1.rs"]
mod v0_1;

/// The 0.1 types, where the adapter looks for them.
mod v0_1_types {
    pub use crate::switchyard::policy::types::*;
}

struct DefaultPolicy;

impl Guest for DefaultPolicy {
    fn route(request: Request, candidates: Vec<Candidate>) -> Result<Plan, PolicyError> {
        v0_1::route(&request, &candidates, &|candidate, name, window| {
            switchyard::policy::host::metric(candidate, name, window)
        })
    }

    fn describe() -> Info {
        v0_1::describe()
    }
}

export!(DefaultPolicy);
