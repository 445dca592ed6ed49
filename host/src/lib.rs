//! Switchyard: an LLM gateway whose routing policy is a sandboxed WebAssembly
//! component each team owns.

pub mod harness;
pub mod metrics;
pub mod policy;
