//! The config file as TOML gives it: every table and key, unchecked.
//! [`super::validate`] turns these into the domain model.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::model::{BudgetPeriod, ModelDefaults, ProviderKind, SimulatedConfig};
use crate::catalog::ModelOverride;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) routing: RawRouting,
    #[serde(default)]
    pub(super) providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    pub(super) models: BTreeMap<String, ModelOverride>,
    #[serde(default)]
    pub(super) teams: BTreeMap<String, RawTeam>,
    /// The default policy's config (metric, fallbacks, rules), as in
    /// plugins/default-policy; teams without their own get this one.
    #[serde(default)]
    pub(super) policy: Option<toml::Table>,
    #[serde(default)]
    pub(super) admin: RawAdmin,
    #[serde(default)]
    pub(super) logical_models: BTreeMap<String, RawLogicalModel>,
    #[serde(default)]
    pub(super) store: RawStore,
    #[serde(default)]
    pub(super) plugins: RawPlugins,
    #[serde(default)]
    pub(super) alerts: RawAlerts,
    #[serde(default)]
    pub(super) state: RawState,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) backups: Vec<RawBackup>,
}

/// `[[backups]]`: a backup candidate tested on mirrored requests.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackup {
    pub(super) name: Option<String>,
    pub(super) team: Option<String>,
    pub(super) logical_model: Option<String>,
    /// `account/model`.
    pub(super) candidate: String,
    pub(super) sample: Option<f64>,
    pub(super) daily_usd: Option<f64>,
    pub(super) fail_after: Option<u32>,
    pub(super) exclude_failing: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) enabled: Option<bool>,
    /// `30d`, `12h`.
    pub(super) max_age: Option<String>,
    pub(super) max_mib: Option<u64>,
    pub(super) prompt_bytes: Option<usize>,
    pub(super) max_pending: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    pub(super) thresholds: Option<Vec<f64>>,
    pub(super) webhook_url: Option<String>,
    pub(super) webhook_attempts: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    pub(super) redis_url: Option<String>,
    pub(super) key_prefix: Option<String>,
    pub(super) timeout_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    /// SQLite file; default `switchyard.db` in the working directory.
    pub(super) path: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlugins {
    pub(super) fault_limit: Option<u32>,
    pub(super) max_upload_bytes: Option<usize>,
    pub(super) decision_slots: Option<usize>,
    pub(super) max_modules: Option<u64>,
    pub(super) max_functions: Option<u64>,
    pub(super) max_function_bytes: Option<u64>,
    pub(super) max_function_locals: Option<u64>,
    pub(super) max_function_complexity: Option<u64>,
    pub(super) max_tables: Option<u64>,
    pub(super) max_memories: Option<u64>,
    pub(super) max_globals: Option<u64>,
    pub(super) max_data_segments: Option<u64>,
    pub(super) max_element_segments: Option<u64>,
    pub(super) max_instances: Option<u64>,
    pub(super) compile_timeout_ms: Option<u64>,
    pub(super) compile_memory_mib: Option<u64>,
    pub(super) compile_slots: Option<usize>,
    pub(super) compile_queue: Option<usize>,
    pub(super) keep_compiled: Option<usize>,
    pub(super) content_bundled: Option<bool>,
    pub(super) content_uploaded: Option<bool>,
    pub(super) content_text_bytes: Option<usize>,
    pub(super) shadow_cpu_share: Option<f64>,
    pub(super) shadow_queue: Option<usize>,
    pub(super) max_cases: Option<usize>,
    pub(super) cases_cpu_ms: Option<u64>,
    pub(super) compile_worker: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogicalModel {
    pub(super) targets: Vec<String>,
    #[serde(default)]
    pub(super) capabilities: Vec<String>,
    #[serde(default)]
    pub(super) defaults: ModelDefaults,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    /// Environment variable holding the admin token (default
    /// `SWITCHYARD_ADMIN_TOKEN`).
    pub(super) token_env: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Option<String>,
    pub(super) shutdown_grace_secs: Option<u64>,
    pub(super) max_body_bytes: Option<usize>,
    #[serde(default)]
    pub(super) body_limits: BTreeMap<String, usize>,
    pub(super) max_image_body_bytes: Option<usize>,
    pub(super) max_json_values: Option<usize>,
    pub(super) max_request_memory_bytes: Option<usize>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_in_flight: Option<usize>,
    pub(super) header_read_timeout_ms: Option<u64>,
    pub(super) idle_timeout_ms: Option<u64>,
    pub(super) body_read_timeout_ms: Option<u64>,
    #[serde(default)]
    pub(super) http2: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouting {
    pub(super) first_token_timeout_ms: Option<u64>,
    pub(super) stream_idle_timeout_ms: Option<u64>,
    pub(super) retries_per_candidate: Option<u32>,
    pub(super) stream_rescue: Option<bool>,
    pub(super) max_retry_wait_ms: Option<u64>,
    pub(super) retry_deadline_ms: Option<u64>,
    pub(super) backoff_base_ms: Option<u64>,
    pub(super) backoff_max_ms: Option<u64>,
    pub(super) quota_cooldown_secs: Option<u64>,
    pub(super) rate_limit_cooldown_secs: Option<u64>,
    pub(super) feature_uptime_threshold: Option<f64>,
    pub(super) feature_uptime_min_requests: Option<u64>,
    pub(super) feature_uptime_window_secs: Option<u32>,
    #[serde(default)]
    pub(super) circuit_breaker: RawBreaker,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBreaker {
    pub(super) enabled: Option<bool>,
    pub(super) failure_rate: Option<f64>,
    pub(super) min_requests: Option<u32>,
    pub(super) window_secs: Option<u64>,
    pub(super) recovery_secs: Option<u64>,
    pub(super) half_open_probes: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    pub(super) kind: ProviderKind,
    pub(super) base_url: Option<String>,
    pub(super) api_key_env: Option<String>,
    #[serde(default)]
    pub(super) zdr: bool,
    pub(super) timeout_ms: Option<u64>,
    pub(super) max_response_bytes: Option<usize>,
    pub(super) connect_timeout_ms: Option<u64>,
    pub(super) continuation: Option<bool>,
    pub(super) models: Vec<String>,
    #[serde(default)]
    pub(super) model_ids: BTreeMap<String, String>,
    pub(super) simulated: Option<SimulatedConfig>,
    /// 0 turns active health checks off.
    pub(super) health_check_interval_ms: Option<u64>,
    pub(super) rpm: Option<u64>,
    pub(super) tpm: Option<u64>,
    pub(super) budget_usd: Option<f64>,
    pub(super) budget_period: Option<BudgetPeriod>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTeam {
    /// sha256 hex digests of the team's API keys (`switchyard key hash KEY`).
    #[serde(default)]
    pub(super) key_sha256: Vec<String>,
    pub(super) allowed_models: Option<Vec<String>>,
    pub(super) allowed_providers: Option<Vec<String>>,
    #[serde(default)]
    pub(super) zdr: bool,
    pub(super) policy_config: Option<toml::Table>,
    pub(super) rpm: Option<u64>,
    pub(super) tpm: Option<u64>,
    pub(super) budget_usd: Option<f64>,
    pub(super) budget_period: Option<BudgetPeriod>,
    pub(super) baseline_model: Option<String>,
    pub(super) content_signals: Option<bool>,
    /// Keep the prompt text (last user turn, system prompt) in the request
    /// log for this team.
    #[serde(default)]
    pub(super) log_prompts: bool,
}
