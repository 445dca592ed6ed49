//! Switchyard's bundled default routing policy, on `switchyard:policy@0.2.0`.
//!
//! This file only wires the component exports to [`logic`], which holds the
//! whole decision, written against its own view of a request and its
//! candidates so that it can be unit-tested natively and built against each
//! contract version: `logic/v0_2.rs` adapts 0.2's types (this component),
//! `logic/v0_1.rs` 0.1's (the `default-policy-v0-1` build, kept to measure
//! and compare the two, and the native tests). See `logic.rs` for the
//! team-config format and the routing semantics.

wit_bindgen::generate!({
    path: "../../wit/v0.2",
    world: "policy",
});

pub mod logic;
#[path = "logic/v0_2.rs"]
pub mod v0_2;

/// The 0.1 contract's types, for the native tests of the 0.1 adapter.
#[cfg(test)]
pub mod v0_1_types {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "policy",
    });
    pub use self::switchyard::policy::types::*;
}
#[cfg(test)]
#[path = "logic/v0_1.rs"]
pub mod v0_1;

struct DefaultPolicy;

impl Guest for DefaultPolicy {
    fn describe() -> Info {
        v0_2::describe()
    }

    fn configure(setup: Setup) -> Result<(), PolicyError> {
        v0_2::configure(setup)
    }

    fn route(
        request: Request,
        candidates: Vec<Candidate>,
        metrics: Vec<f64>,
    ) -> Result<Plan, PolicyError> {
        v0_2::route(&request, &candidates, &metrics)
    }
}

export!(DefaultPolicy);
