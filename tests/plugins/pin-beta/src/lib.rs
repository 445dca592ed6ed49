//! Test fixture: routes every request to provider account `beta`.

const PROVIDER: &str = "beta";

include!("../../pin-alpha/src/pin.rs");
