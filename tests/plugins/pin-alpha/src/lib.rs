//! Test fixture: routes every request to provider account `alpha`.

const PROVIDER: &str = "alpha";

include!("pin.rs");
