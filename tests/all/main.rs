//! Switchyard's end-to-end tests: one binary (each test binary links the
//! whole host and wasmtime), a module per area. Shared fakes and helpers live
//! in the `switchyard-tests` library (`tests/src`): the mock providers, a
//! gateway in its own process, a real redis-server.
//!
//! Run one area with `cargo test --release -p switchyard-tests --test all -- gateway::`.

mod apis;
mod architecture;
mod backups;
mod cli;
mod contract;
mod failover;
mod gateway;
mod hardening;
mod limits;
mod live_metrics;
mod mock_selftest;
mod plugin_cases;
mod policy_sandbox;
mod replay;
mod request_log;
mod rescue;
mod shadow;
mod storm;
mod teams;
