//! Switchyard: an LLM gateway whose routing policy is a sandboxed WebAssembly
//! component each team owns.
//!
//! Data flows one way: [`api`] (HTTP, auth, parsing) → [`features`] →
//! [`route`] (candidates, [`policy`] decision, attempts) → [`providers`]
//! (wire formats) → response, then [`spend`] (ledger, budgets, savings).
//! [`state`] holds what replicas share (rate limits, cooldowns, open
//! circuits, budget counters): in process, or in Redis.

// `RouteError` (an HTTP error with its attempt trail) is returned by value on
// the error path only; boxing it would cost more than it saves.
#![allow(clippy::result_large_err)]

#[cfg(feature = "alloc-count")]
pub mod alloc_count;
pub mod api;
pub mod catalog;
pub mod cli;
pub mod client;
pub mod config;
pub mod digest;
pub mod directory;
pub mod errors;
pub mod harness;
pub mod health;
pub mod metrics;
pub mod policy;
pub mod providers;
pub mod replay;
pub mod request_log;
pub mod route;
pub mod scaffold;
pub mod spend;
pub mod state;
pub mod store;
pub mod telemetry;
