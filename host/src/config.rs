//! `switchyard.toml`: provider accounts, models (extending the bundled
//! catalog), teams and their hashed keys, routing settings and the default
//! policy's config. Errors name the file, the key and the problem.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::catalog::{Catalog, ModelOverride};
use crate::health::BreakerSettings;

/// Largest successful (non-streamed) answer read from a provider, unless the
/// account sets `max_response_bytes`.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 << 20;

/// A configuration problem, naming where it is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}: {key}: {problem}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub problem: String,
}

/// A secret: a provider key, the admin token, a webhook or Redis URL. It is
/// only read through [`Secret::expose`], and its `Debug` output is redacted,
/// so a config printed with `{:?}` (or a log line built from one) does not
/// carry it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The host of a URL (or `<invalid URL>`), to name an endpoint held as a
/// [`Secret`] in logs without its path, query or credentials.
pub fn url_host(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "<invalid URL>".to_string())
}

/// Kinds of provider account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// OpenAI's API (Chat Completions), passed through.
    Openai,
    /// Anthropic's Messages API, translated.
    Anthropic,
    /// Any server speaking OpenAI Chat Completions: Ollama, vLLM, llama.cpp.
    OpenaiCompatible,
    /// A built-in fake provider for demos and load tests: no network at all.
    Simulated,
}

/// Behaviour of a `simulated` provider account.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedConfig {
    /// Time to the first token (and, non-streaming, to the answer), in ms.
    #[serde(default = "default_sim_latency")]
    pub latency_ms: u64,
    /// Fraction of requests answered with a 503 (0.0 to 1.0).
    #[serde(default)]
    pub failure_rate: f64,
    /// Fraction of requests answered with a 429 and retry-after (0.0 to 1.0).
    #[serde(default)]
    pub rate_limit_rate: f64,
    /// Text every answer contains.
    #[serde(default = "default_sim_text")]
    pub text: String,
    /// Delay between streamed words, in ms.
    #[serde(default = "default_sim_word_delay")]
    pub word_delay_ms: u64,
}

impl Default for SimulatedConfig {
    fn default() -> Self {
        Self {
            latency_ms: default_sim_latency(),
            failure_rate: 0.0,
            rate_limit_rate: 0.0,
            text: default_sim_text(),
            word_delay_ms: default_sim_word_delay(),
        }
    }
}

fn default_sim_latency() -> u64 {
    150
}
fn default_sim_word_delay() -> u64 {
    15
}
fn default_sim_text() -> String {
    "This answer comes from Switchyard's simulated provider: no real model was called.".into()
}

/// One provider account.
#[derive(Debug, Clone)]
pub struct ProviderAccount {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    /// The secret, read from the named environment variable at start-up.
    pub api_key: Option<Secret>,
    pub zdr: bool,
    pub timeout: Duration,
    /// Catalog slugs this account serves, in config order.
    pub models: Vec<String>,
    /// Upstream model id per slug, where it differs from the catalog's.
    pub model_ids: BTreeMap<String, String>,
    pub simulated: Option<SimulatedConfig>,
    /// Interval of active health checks (a one-token completion per model);
    /// `None` when off. Off by default for paid providers, every 30 s for
    /// `openai-compatible` (local) servers.
    pub health_check_interval: Option<Duration>,
    /// Requests and tokens per minute this account may be sent.
    pub limits: RateLimits,
    /// Dollars this account may spend per period.
    pub budget: Option<Budget>,
    /// Largest non-streamed answer read from this account; a larger one is
    /// an upstream error (failed over), never buffered.
    pub max_response_bytes: usize,
}

/// Requests and tokens per minute (a sliding 60-second window); `None` is
/// unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

impl RateLimits {
    pub fn any(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some()
    }
}

/// How long a budget lasts before it starts again (calendar, UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BudgetPeriod {
    Day,
    Month,
}

/// A spending cap in US dollars per period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub usd: f64,
    pub period: BudgetPeriod,
}

/// Budget alerts (`[alerts]`).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSettings {
    /// Fractions of a budget (ascending, 0 < t) whose crossing is announced.
    pub thresholds: Vec<f64>,
    /// Where each alert is POSTed as JSON, besides the log. A secret (a
    /// Slack-style URL is a credential): logs name its host only.
    pub webhook_url: Option<Secret>,
    /// Attempts per alert before it is given up (logged and counted).
    pub webhook_attempts: u32,
}

/// Where rate-limit counters, cooldowns, circuit state and budget counters
/// live (`[state]`).
#[derive(Debug, Clone, PartialEq)]
pub struct StateSettings {
    /// `redis://host:port/db`: shared by every replica; `None` keeps the
    /// state in this process. A secret (it may carry a password).
    pub redis_url: Option<Secret>,
    /// Prefix of every Redis key, so several gateways can share one Redis.
    pub key_prefix: String,
    /// How long one Redis call may take before the gateway serves on local
    /// state instead.
    pub timeout: Duration,
}

impl ProviderAccount {
    /// The model id this account's API knows `slug` by.
    pub fn upstream_model<'a>(&'a self, catalog: &'a Catalog, slug: &'a str) -> &'a str {
        self.model_ids
            .get(slug)
            .or_else(|| catalog.get(slug).and_then(|m| m.upstream_id.as_ref()))
            .map_or(slug, String::as_str)
    }
}

/// One team.
#[derive(Debug, Clone)]
pub struct Team {
    pub name: String,
    /// Allowed model slugs; `None` means every model.
    pub allowed_models: Option<Vec<String>>,
    /// Allowed provider accounts; `None` means every account.
    pub allowed_providers: Option<Vec<String>>,
    /// Only zero-data-retention accounts may serve this team.
    pub zdr: bool,
    /// The policy config JSON this team's requests carry (`{}` when none).
    pub policy_config: String,
    /// Whether `policy_config` was given for this team (else it is the
    /// default policy's, which an uploaded plugin does not get).
    pub own_policy_config: bool,
    /// Requests and tokens per minute the team may send (all its keys together).
    pub limits: RateLimits,
    /// Dollars the team may spend per period.
    pub budget: Option<Budget>,
    /// The model savings are measured against; `None`: the most expensive
    /// model the team may use.
    pub baseline_model: Option<String>,
}

impl Team {
    /// Whether the team may use the model (or logical model) `slug`.
    pub fn allows_model(&self, slug: &str) -> bool {
        self.allowed_models
            .as_ref()
            .is_none_or(|models| models.iter().any(|m| m == slug))
    }

    /// Whether the team may use the provider account `account`.
    pub fn allows_account(&self, account: &str) -> bool {
        self.allowed_providers
            .as_ref()
            .is_none_or(|accounts| accounts.iter().any(|a| a == account))
    }
}

/// A logical model (seed 004): a name pipelines use instead of a concrete
/// model, mapped to concrete targets in preference order, with the
/// capabilities it promises and default parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct LogicalModel {
    pub name: String,
    /// Catalog slugs: the first is the primary, the rest fallbacks in order.
    pub targets: Vec<String>,
    /// Feature-table names every target supports and requests may use
    /// (`stream`, `tools.function_calling`, `vision`, `text.format.json_object`,
    /// ...); empty means no promise and no check.
    pub capabilities: Vec<String>,
    /// Parameters applied when the request does not set them.
    pub defaults: ModelDefaults,
}

/// Default parameters of a logical model.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDefaults {
    pub temperature: Option<f64>,
    /// Sent as `max_completion_tokens` (the Anthropic adapter reads it too).
    pub max_tokens: Option<u64>,
    pub top_p: Option<f64>,
    pub stop: Option<Vec<String>>,
}

/// Capability names of seed 004, as shorthands for feature-table names.
fn capability_feature(name: &str) -> &str {
    match name {
        "streaming" => "stream",
        "tools" | "function_calling" => "tools.function_calling",
        "json" | "json_mode" => "text.format.json_object",
        "structured_output" => "text.format.json_schema",
        other => other,
    }
}

/// Executor settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingSettings {
    /// A streaming attempt that sends no content token in this time is replaced.
    pub first_token_timeout: Duration,
    /// Base of the jittered exponential backoff between failed attempts.
    pub backoff_base: Duration,
    /// Cap of that backoff.
    pub backoff_max: Duration,
    /// How long a 402 / quota-exhausted answer keeps an account out.
    pub quota_cooldown: Duration,
    /// How long a 429 without retry-after keeps an account out.
    pub rate_limit_cooldown: Duration,
    /// A candidate whose success rate for a feature the request needs is below
    /// this (0.0 to 1.0) over the request's window is excluded.
    pub feature_uptime_threshold: f64,
    /// Fewest attempts with that feature in the window before it is judged.
    pub feature_uptime_min_requests: u64,
    /// Circuit breakers per (account, model).
    pub circuit_breaker: BreakerSettings,
}

/// The `/v1` routes whose body limit `[server.body_limits]` may set.
pub const API_ROUTES: &[&str] = &["/v1/chat/completions", "/v1/responses", "/v1/messages"];

/// Server settings: where to listen, and the limits that keep one client
/// (or a flood of them) from starving the others. SECURITY.md lists them.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// How long shutdown waits for in-flight requests and open streams.
    pub shutdown_grace: Duration,
    /// Largest `/v1` request body accepted (4 MiB), unless the route has its
    /// own in `body_limits` or the request carries images.
    pub max_body_bytes: usize,
    /// Per `/v1` route (`/v1/chat/completions`, ...), instead of
    /// `max_body_bytes`.
    pub body_limits: BTreeMap<String, usize>,
    /// Largest `/v1` body accepted when the request carries image inputs (20 MiB).
    pub max_image_body_bytes: usize,
    /// Most JSON values (numbers, strings, objects, ...) a `/v1` body may
    /// hold: parsed, each costs far more than its bytes.
    pub max_json_values: usize,
    /// Memory the request bodies being read and parsed may hold at once
    /// (estimated); past it, requests get 503 `overloaded`.
    pub max_request_memory_bytes: usize,
    /// Open client connections; `None`: derived from the file-descriptor
    /// limit. At the cap, the connections idle longest are closed to make
    /// room; when none is idle, new ones get 503.
    pub max_connections: Option<usize>,
    /// Requests being served at once (streams until they end); more get 503
    /// `overloaded` with `retry-after`. `/healthz` and `/metrics` are not
    /// counted, so they answer under a flood.
    pub max_in_flight: usize,
    /// Time a client has to send a request's headers, from its first byte.
    pub header_read_timeout: Duration,
    /// How long a connection may sit idle (no request, or before its first)
    /// before it is closed.
    pub idle_timeout: Duration,
    /// Longest pause while a request body arrives (408 after it).
    pub body_read_timeout: Duration,
    /// Serve HTTP/2 (prior knowledge, h2c) beside HTTP/1.1; off: HTTP/1.1 only.
    pub http2: bool,
}

impl ServerSettings {
    /// Estimated memory of one parsed JSON value (a `serde_json::Value`
    /// with its share of the map or array holding it), beyond its bytes.
    pub const BYTES_PER_JSON_VALUE: usize = 80;

    /// The body limit of `route` for a request without images.
    pub fn body_limit(&self, route: &str) -> usize {
        self.body_limits
            .get(route)
            .copied()
            .unwrap_or(self.max_body_bytes)
    }

    /// The most memory one `/v1` request is charged while it is read and
    /// parsed: its bytes, a parsed copy of them, and its values.
    pub fn largest_request_charge(&self) -> usize {
        let largest_body = self
            .body_limits
            .values()
            .copied()
            .chain([self.max_body_bytes, self.max_image_body_bytes])
            .max()
            .unwrap_or(self.max_body_bytes);
        largest_body.saturating_mul(2).saturating_add(
            self.max_json_values
                .saturating_mul(Self::BYTES_PER_JSON_VALUE),
        )
    }
}

/// How uploaded team policy plugins are run and accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSettings {
    /// Consecutive faults (trap, deadline, memory, invalid plan) after which a
    /// team's plugin is set aside and the default policy serves the team.
    pub fault_limit: u32,
    /// Largest policy component an upload may carry.
    pub max_upload_bytes: usize,
    /// Decisions of one team's plugin that may run at once; more wait, so a
    /// slow plugin holds at most this many threads.
    pub decision_slots: usize,
    /// What an uploaded component may declare before it is compiled.
    pub structure: crate::policy::StructureLimits,
    /// Wall-clock budget of compiling one component (in the compile worker).
    pub compile_timeout: Duration,
    /// Memory ceiling of the compile worker, in bytes.
    pub compile_memory_bytes: u64,
    /// Uploads compiled and tested at once.
    pub compile_slots: usize,
    /// Uploads that may wait for a slot; more are refused with 429.
    pub compile_queue: usize,
    /// Most cases an uploaded case file may hold.
    pub max_cases: usize,
    /// CPU time the cases of one upload may use, in all.
    pub cases_cpu: Duration,
    /// The program run as the compile worker; `None`: this executable.
    pub compile_worker: Option<std::path::PathBuf>,
}

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerSettings,
    pub routing: RoutingSettings,
    pub providers: Vec<ProviderAccount>,
    pub catalog: Catalog,
    pub teams: Vec<Team>,
    /// sha256 hex of a key → index into `teams`.
    pub key_hashes: BTreeMap<String, usize>,
    /// The admin API's bearer token, read from the environment; the admin API
    /// is closed without one.
    pub admin_token: Option<Secret>,
    /// Logical models by name.
    pub logical_models: BTreeMap<String, LogicalModel>,
    /// The embedded store's SQLite file (created on first start).
    pub store_path: std::path::PathBuf,
    /// Uploaded team plugins.
    pub plugins: PluginSettings,
    /// The default policy's config (the `[policy]` table as JSON), given to
    /// the default policy when it stands in for a team's faulty plugin.
    pub default_policy_config: String,
    pub alerts: AlertSettings,
    pub state: StateSettings,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    routing: RawRouting,
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    models: BTreeMap<String, ModelOverride>,
    #[serde(default)]
    teams: BTreeMap<String, RawTeam>,
    /// The default policy's config (metric, fallbacks, rules), as in
    /// plugins/default-policy; teams without their own get this one.
    #[serde(default)]
    policy: Option<toml::Table>,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    logical_models: BTreeMap<String, RawLogicalModel>,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    plugins: RawPlugins,
    #[serde(default)]
    alerts: RawAlerts,
    #[serde(default)]
    state: RawState,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    thresholds: Option<Vec<f64>>,
    webhook_url: Option<String>,
    webhook_attempts: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawState {
    redis_url: Option<String>,
    key_prefix: Option<String>,
    timeout_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    /// SQLite file; default `switchyard.db` in the working directory.
    path: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPlugins {
    fault_limit: Option<u32>,
    max_upload_bytes: Option<usize>,
    decision_slots: Option<usize>,
    max_modules: Option<u64>,
    max_functions: Option<u64>,
    max_function_bytes: Option<u64>,
    max_function_locals: Option<u64>,
    max_function_complexity: Option<u64>,
    max_tables: Option<u64>,
    max_memories: Option<u64>,
    max_globals: Option<u64>,
    max_data_segments: Option<u64>,
    max_element_segments: Option<u64>,
    max_instances: Option<u64>,
    compile_timeout_ms: Option<u64>,
    compile_memory_mib: Option<u64>,
    compile_slots: Option<usize>,
    compile_queue: Option<usize>,
    max_cases: Option<usize>,
    cases_cpu_ms: Option<u64>,
    compile_worker: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogicalModel {
    targets: Vec<String>,
    #[serde(default)]
    capabilities: Vec<String>,
    #[serde(default)]
    defaults: ModelDefaults,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    /// Environment variable holding the admin token (default
    /// `SWITCHYARD_ADMIN_TOKEN`).
    token_env: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    shutdown_grace_secs: Option<u64>,
    max_body_bytes: Option<usize>,
    #[serde(default)]
    body_limits: BTreeMap<String, usize>,
    max_image_body_bytes: Option<usize>,
    max_json_values: Option<usize>,
    max_request_memory_bytes: Option<usize>,
    max_connections: Option<usize>,
    max_in_flight: Option<usize>,
    header_read_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    body_read_timeout_ms: Option<u64>,
    #[serde(default)]
    http2: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRouting {
    first_token_timeout_ms: Option<u64>,
    backoff_base_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    quota_cooldown_secs: Option<u64>,
    rate_limit_cooldown_secs: Option<u64>,
    feature_uptime_threshold: Option<f64>,
    feature_uptime_min_requests: Option<u64>,
    #[serde(default)]
    circuit_breaker: RawBreaker,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    enabled: Option<bool>,
    failure_rate: Option<f64>,
    min_requests: Option<u32>,
    window_secs: Option<u64>,
    recovery_secs: Option<u64>,
    half_open_probes: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    kind: ProviderKind,
    base_url: Option<String>,
    api_key_env: Option<String>,
    #[serde(default)]
    zdr: bool,
    timeout_ms: Option<u64>,
    max_response_bytes: Option<usize>,
    models: Vec<String>,
    #[serde(default)]
    model_ids: BTreeMap<String, String>,
    simulated: Option<SimulatedConfig>,
    /// 0 turns active health checks off.
    health_check_interval_ms: Option<u64>,
    rpm: Option<u64>,
    tpm: Option<u64>,
    budget_usd: Option<f64>,
    budget_period: Option<BudgetPeriod>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeam {
    /// sha256 hex digests of the team's API keys (`switchyard key hash KEY`).
    #[serde(default)]
    key_sha256: Vec<String>,
    allowed_models: Option<Vec<String>>,
    allowed_providers: Option<Vec<String>>,
    #[serde(default)]
    zdr: bool,
    policy_config: Option<toml::Table>,
    rpm: Option<u64>,
    tpm: Option<u64>,
    budget_usd: Option<f64>,
    budget_period: Option<BudgetPeriod>,
    baseline_model: Option<String>,
}

/// Checks `rpm`/`tpm` (at least 1 when given) and the budget (a finite,
/// non-negative amount; the period needs an amount).
fn limits_and_budget(
    at: &dyn Fn(&str) -> String,
    rpm: Option<u64>,
    tpm: Option<u64>,
    usd: Option<f64>,
    period: Option<BudgetPeriod>,
) -> Result<(RateLimits, Option<Budget>), (String, String)> {
    for (field, v) in [("rpm", rpm), ("tpm", tpm)] {
        if v == Some(0) {
            return Err((
                at(field),
                "must be at least 1 (leave it out for no limit)".into(),
            ));
        }
    }
    let budget = match (usd, period) {
        (Some(usd), _) if !usd.is_finite() || usd < 0.0 => {
            return Err((
                at("budget_usd"),
                format!("{usd} is not an amount in dollars"),
            ));
        }
        (Some(usd), period) => Some(Budget {
            usd,
            period: period.unwrap_or(BudgetPeriod::Month),
        }),
        (None, Some(_)) => {
            return Err((at("budget_period"), "needs budget_usd".into()));
        }
        (None, None) => None,
    };
    Ok((RateLimits { rpm, tpm }, budget))
}

/// Checks a team name: 1 to 64 letters, digits, `.`, `_` or `-`, neither
/// starting nor ending with `.`. Names appear in admin URLs and metric
/// labels; `.`, `..` and names with a leading or trailing dot are what
/// path-normalising proxies (and some servers) rewrite, so a request for one
/// team could reach another.
pub fn check_team_name(name: &str) -> Result<(), String> {
    let chars_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !chars_ok {
        return Err(format!(
            "team name {name:?} must be 1 to 64 letters, digits, '.', '_' or '-'"
        ));
    }
    if name.starts_with('.') || name.ends_with('.') {
        return Err(format!(
            "team name {name:?} may not start or end with '.' (proxies rewrite such path segments)"
        ));
    }
    Ok(())
}

/// sha256 hex digest of an API key, as stored in the config.
pub fn hash_key(key: &str) -> String {
    crate::digest::sha256_hex(key.as_bytes())
}

impl Config {
    /// Reads and validates a config file; API keys come from the environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: "(file)".into(),
            problem: format!("cannot read: {e}"),
        })?;
        Self::parse(&file, &text, &|name| std::env::var(name).ok())
    }

    /// Parses config text; `env` looks up environment variables.
    pub fn parse(
        file: &str,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let err = |key: &str, problem: String| ConfigError {
            file: file.to_string(),
            key: key.to_string(),
            problem,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let key = e
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].lines().count().max(1);
                    format!("line {line}")
                })
                .unwrap_or_else(|| "(syntax)".into());
            err(&key, e.message().to_string())
        })?;

        let listen = raw.server.listen.as_deref().unwrap_or("127.0.0.1:4000");
        let server = ServerSettings {
            listen: listen.parse().map_err(|e| {
                err(
                    "server.listen",
                    format!("{listen:?} is not an address:port ({e})"),
                )
            })?,
            shutdown_grace: Duration::from_secs(raw.server.shutdown_grace_secs.unwrap_or(30)),
            max_body_bytes: raw.server.max_body_bytes.unwrap_or(4 << 20),
            body_limits: raw.server.body_limits.clone(),
            max_image_body_bytes: raw.server.max_image_body_bytes.unwrap_or(20 << 20),
            max_json_values: raw.server.max_json_values.unwrap_or(200_000),
            max_request_memory_bytes: raw.server.max_request_memory_bytes.unwrap_or(512 << 20),
            max_connections: raw.server.max_connections,
            max_in_flight: raw.server.max_in_flight.unwrap_or(2048),
            header_read_timeout: Duration::from_millis(
                raw.server.header_read_timeout_ms.unwrap_or(10_000),
            ),
            idle_timeout: Duration::from_millis(raw.server.idle_timeout_ms.unwrap_or(60_000)),
            body_read_timeout: Duration::from_millis(
                raw.server.body_read_timeout_ms.unwrap_or(30_000),
            ),
            http2: raw.server.http2,
        };
        for route in server.body_limits.keys() {
            if !API_ROUTES.contains(&route.as_str()) {
                return Err(err(
                    &format!("server.body_limits.{route:?}"),
                    format!("is not a /v1 route (one of {})", API_ROUTES.join(", ")),
                ));
            }
        }
        for (key, value) in server
            .body_limits
            .iter()
            .map(|(route, v)| (format!("server.body_limits.{route:?}"), *v))
            .chain([
                ("server.max_body_bytes".to_string(), server.max_body_bytes),
                (
                    "server.max_image_body_bytes".to_string(),
                    server.max_image_body_bytes,
                ),
            ])
        {
            if !(1024..=256 << 20).contains(&value) {
                return Err(err(&key, "must be between 1 KiB and 256 MiB".into()));
            }
        }
        for (key, value) in [
            ("server.max_json_values", server.max_json_values),
            ("server.max_in_flight", server.max_in_flight),
            (
                "server.max_connections",
                server.max_connections.unwrap_or(16),
            ),
        ] {
            if value == 0 {
                return Err(err(key, "must be at least 1".into()));
            }
        }
        // One request of the largest size, with the most values, must fit.
        let largest = server.largest_request_charge();
        if server.max_request_memory_bytes < largest {
            return Err(err(
                "server.max_request_memory_bytes",
                format!(
                    "must be at least {largest} bytes: twice the largest body limit, plus {} bytes per JSON value of max_json_values (one request of the largest size must fit)",
                    ServerSettings::BYTES_PER_JSON_VALUE
                ),
            ));
        }
        for (key, value) in [
            ("server.header_read_timeout_ms", server.header_read_timeout),
            ("server.idle_timeout_ms", server.idle_timeout),
            ("server.body_read_timeout_ms", server.body_read_timeout),
        ] {
            if value < Duration::from_millis(100) {
                return Err(err(key, "must be at least 100 ms".into()));
            }
        }
        let r = &raw.routing;
        let b = &r.circuit_breaker;
        let defaults = BreakerSettings::default();
        let circuit_breaker = BreakerSettings {
            enabled: b.enabled.unwrap_or(defaults.enabled),
            failure_rate: b.failure_rate.unwrap_or(defaults.failure_rate),
            min_requests: b.min_requests.unwrap_or(defaults.min_requests).max(1),
            window: b.window_secs.map_or(defaults.window, Duration::from_secs),
            recovery: b
                .recovery_secs
                .map_or(defaults.recovery, Duration::from_secs),
            half_open_probes: b
                .half_open_probes
                .unwrap_or(defaults.half_open_probes)
                .max(1),
        };
        for (key, rate) in [
            (
                "routing.circuit_breaker.failure_rate",
                circuit_breaker.failure_rate,
            ),
            (
                "routing.feature_uptime_threshold",
                r.feature_uptime_threshold.unwrap_or(0.9),
            ),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(err(key, format!("{rate} is not between 0 and 1")));
            }
        }
        if circuit_breaker.window.is_zero() || circuit_breaker.recovery.is_zero() {
            return Err(err(
                "routing.circuit_breaker",
                "window_secs and recovery_secs must be at least 1".into(),
            ));
        }
        let routing = RoutingSettings {
            first_token_timeout: Duration::from_millis(r.first_token_timeout_ms.unwrap_or(15_000)),
            backoff_base: Duration::from_millis(r.backoff_base_ms.unwrap_or(50)),
            backoff_max: Duration::from_millis(r.backoff_max_ms.unwrap_or(1_000)),
            quota_cooldown: Duration::from_secs(r.quota_cooldown_secs.unwrap_or(300)),
            rate_limit_cooldown: Duration::from_secs(r.rate_limit_cooldown_secs.unwrap_or(10)),
            feature_uptime_threshold: r.feature_uptime_threshold.unwrap_or(0.9),
            feature_uptime_min_requests: r.feature_uptime_min_requests.unwrap_or(5).max(1),
            circuit_breaker,
        };

        let catalog = Catalog::bundled()
            .extended(&raw.models)
            .map_err(|(slug, problem)| err(&format!("models.{slug:?}"), problem))?;

        let mut providers = Vec::new();
        for (name, p) in &raw.providers {
            let at = |field: &str| format!("providers.{name}.{field}");
            if name.is_empty() || name.contains('/') {
                return Err(err(
                    &format!("providers.{name:?}"),
                    "account names must be non-empty and contain no '/'".into(),
                ));
            }
            if p.models.is_empty() {
                return Err(err(&at("models"), "lists no models".into()));
            }
            for (i, slug) in p.models.iter().enumerate() {
                if catalog.get(slug).is_none() {
                    return Err(err(
                        &format!("{}[{i}]", at("models")),
                        format!(
                            "unknown model {slug:?}: not in the bundled catalog; declare it under [models.{slug:?}]"
                        ),
                    ));
                }
            }
            for slug in p.model_ids.keys() {
                if !p.models.contains(slug) {
                    return Err(err(
                        &at("model_ids"),
                        format!("{slug:?} is not one of this account's models"),
                    ));
                }
            }
            let base_url = match (&p.base_url, p.kind) {
                (Some(url), _) => url.trim_end_matches('/').to_string(),
                (None, ProviderKind::Openai) => "https://api.openai.com/v1".into(),
                (None, ProviderKind::Anthropic) => "https://api.anthropic.com".into(),
                (None, ProviderKind::Simulated) => "simulated://".into(),
                (None, ProviderKind::OpenaiCompatible) => {
                    return Err(err(
                        &at("base_url"),
                        "is required for openai-compatible accounts (e.g. \"http://127.0.0.1:11434/v1\" for Ollama)".into(),
                    ));
                }
            };
            if p.kind != ProviderKind::Simulated
                && !(base_url.starts_with("http://") || base_url.starts_with("https://"))
            {
                return Err(err(
                    &at("base_url"),
                    format!("{base_url:?} is not an http(s) URL"),
                ));
            }
            let api_key = match &p.api_key_env {
                Some(var) => Some(env(var).filter(|v| !v.is_empty()).map(Secret).ok_or_else(
                    || {
                        err(
                            &at("api_key_env"),
                            format!("environment variable {var} is not set"),
                        )
                    },
                )?),
                None => None,
            };
            if api_key.is_none() && matches!(p.kind, ProviderKind::Openai | ProviderKind::Anthropic)
            {
                return Err(err(
                    &at("api_key_env"),
                    "is required for openai and anthropic accounts (name the environment variable holding the key)".into(),
                ));
            }
            if p.max_response_bytes.is_some_and(|n| n < 1024) {
                return Err(err(
                    &at("max_response_bytes"),
                    "must be at least 1024 bytes".into(),
                ));
            }
            let simulated = match (p.kind, &p.simulated) {
                (ProviderKind::Simulated, Some(s)) => Some(s.clone()),
                (ProviderKind::Simulated, None) => Some(SimulatedConfig::default()),
                (_, Some(_)) => {
                    return Err(err(
                        &at("simulated"),
                        "only applies to kind = \"simulated\"".into(),
                    ));
                }
                (_, None) => None,
            };
            if let Some(s) = &simulated {
                for (field, rate) in [
                    ("failure_rate", s.failure_rate),
                    ("rate_limit_rate", s.rate_limit_rate),
                ] {
                    if !(0.0..=1.0).contains(&rate) {
                        return Err(err(
                            &at(&format!("simulated.{field}")),
                            format!("{rate} is not between 0 and 1"),
                        ));
                    }
                }
            }
            let health_check_interval = match p.health_check_interval_ms {
                Some(0) => None,
                Some(ms) if ms < 100 => {
                    return Err(err(
                        &at("health_check_interval_ms"),
                        format!("{ms} is too short: use 0 (off) or at least 100"),
                    ));
                }
                Some(ms) => Some(Duration::from_millis(ms)),
                None if p.kind == ProviderKind::OpenaiCompatible => Some(Duration::from_secs(30)),
                None => None,
            };
            let (limits, budget) =
                limits_and_budget(&at, p.rpm, p.tpm, p.budget_usd, p.budget_period)
                    .map_err(|(key, problem)| err(&key, problem))?;
            providers.push(ProviderAccount {
                name: name.clone(),
                kind: p.kind,
                base_url,
                api_key,
                zdr: p.zdr,
                timeout: Duration::from_millis(p.timeout_ms.unwrap_or(120_000)),
                models: p.models.clone(),
                model_ids: p.model_ids.clone(),
                simulated,
                health_check_interval,
                limits,
                budget,
                max_response_bytes: p.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES),
            });
        }

        let default_policy_config = match &raw.policy {
            Some(table) => serde_json::to_string(table)
                .map_err(|e| err("policy", format!("cannot be converted to JSON: {e}")))?,
            None => "{}".into(),
        };
        let mut teams = Vec::new();
        let mut key_hashes = BTreeMap::new();
        for (name, t) in &raw.teams {
            check_team_name(name).map_err(|problem| err(&format!("teams.{name}"), problem))?;
            let at = |field: &str| format!("teams.{name}.{field}");
            for (i, hash) in t.key_sha256.iter().enumerate() {
                let hash = hash.trim().to_ascii_lowercase();
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(err(
                        &format!("{}[{i}]", at("key_sha256")),
                        "is not a sha256 hex digest (64 hex characters; `switchyard key hash KEY` prints one)".into(),
                    ));
                }
                if key_hashes.insert(hash, teams.len()).is_some() {
                    return Err(err(
                        &format!("{}[{i}]", at("key_sha256")),
                        "this key is already given to another team".into(),
                    ));
                }
            }
            if let Some(models) = &t.allowed_models {
                for (i, slug) in models.iter().enumerate() {
                    if slug != "*"
                        && catalog.get(slug).is_none()
                        && !raw.logical_models.contains_key(slug)
                    {
                        return Err(err(
                            &format!("{}[{i}]", at("allowed_models")),
                            format!("unknown model {slug:?}"),
                        ));
                    }
                }
            }
            if let Some(accounts) = &t.allowed_providers {
                for (i, account) in accounts.iter().enumerate() {
                    if !raw.providers.contains_key(account) {
                        return Err(err(
                            &format!("{}[{i}]", at("allowed_providers")),
                            format!("no provider account named {account:?}"),
                        ));
                    }
                }
            }
            let policy_config = match &t.policy_config {
                Some(table) => serde_json::to_string(table).map_err(|e| {
                    err(
                        &at("policy_config"),
                        format!("cannot be converted to JSON: {e}"),
                    )
                })?,
                None => default_policy_config.clone(),
            };
            let (limits, budget) =
                limits_and_budget(&at, t.rpm, t.tpm, t.budget_usd, t.budget_period)
                    .map_err(|(key, problem)| err(&key, problem))?;
            if let Some(slug) = &t.baseline_model
                && catalog.get(slug).is_none()
            {
                return Err(err(
                    &at("baseline_model"),
                    format!("unknown model {slug:?}"),
                ));
            }
            teams.push(Team {
                name: name.clone(),
                allowed_models: t
                    .allowed_models
                    .clone()
                    .filter(|m| !m.iter().any(|s| s == "*")),
                allowed_providers: t.allowed_providers.clone(),
                zdr: t.zdr,
                policy_config,
                own_policy_config: t.policy_config.is_some(),
                limits,
                budget,
                baseline_model: t.baseline_model.clone(),
            });
        }
        let mut logical_models = BTreeMap::new();
        for (name, l) in &raw.logical_models {
            let at = |field: &str| format!("logical_models.{name}.{field}");
            if name.is_empty()
                || name.contains('/')
                || name == "auto"
                || catalog.get(name).is_some()
            {
                return Err(err(
                    &format!("logical_models.{name:?}"),
                    "a logical model needs its own name: not empty, no '/', not `auto`, not a catalog model".into(),
                ));
            }
            if l.targets.is_empty() {
                return Err(err(&at("targets"), "lists no models".into()));
            }
            let capabilities: Vec<String> = l
                .capabilities
                .iter()
                .map(|c| capability_feature(c).to_string())
                .collect();
            for (i, c) in capabilities.iter().enumerate() {
                if !switchyard_wire::feature::is_known_feature(c) {
                    return Err(err(
                        &format!("{}[{i}]", at("capabilities")),
                        format!("unknown capability {:?}", l.capabilities[i]),
                    ));
                }
            }
            for (i, slug) in l.targets.iter().enumerate() {
                let key = format!("{}[{i}]", at("targets"));
                let Some(model) = catalog.get(slug) else {
                    return Err(err(&key, format!("unknown model {slug:?}")));
                };
                if !providers.iter().any(|p| p.models.contains(slug)) {
                    return Err(err(&key, format!("no provider account serves {slug:?}")));
                }
                if let Some(missing) = capabilities.iter().find(|c| !model.features.contains(c)) {
                    return Err(err(
                        &key,
                        format!(
                            "{slug:?} does not support {missing:?}, which this logical model promises"
                        ),
                    ));
                }
            }
            let d = &l.defaults;
            if d.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
                return Err(err(
                    &at("defaults.temperature"),
                    "must be between 0 and 2".into(),
                ));
            }
            if d.top_p.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
                return Err(err(&at("defaults.top_p"), "must be between 0 and 1".into()));
            }
            if d.max_tokens == Some(0) {
                return Err(err(&at("defaults.max_tokens"), "must be at least 1".into()));
            }
            if d.stop
                .as_ref()
                .is_some_and(|s| s.len() > 4 || s.iter().any(String::is_empty))
            {
                return Err(err(
                    &at("defaults.stop"),
                    "takes 1 to 4 non-empty sequences".into(),
                ));
            }
            logical_models.insert(
                name.clone(),
                LogicalModel {
                    name: name.clone(),
                    targets: l.targets.clone(),
                    capabilities,
                    defaults: d.clone(),
                },
            );
        }
        let token_env = raw
            .admin
            .token_env
            .as_deref()
            .unwrap_or("SWITCHYARD_ADMIN_TOKEN");
        let admin_token = env(token_env).filter(|t| !t.trim().is_empty()).map(Secret);
        if raw.admin.token_env.is_some() && admin_token.is_none() {
            return Err(err(
                "admin.token_env",
                format!("environment variable {token_env} is not set"),
            ));
        }
        let rp = &raw.plugins;
        let defaults = crate::policy::StructureLimits::default();
        let plugins = PluginSettings {
            fault_limit: rp.fault_limit.unwrap_or(5),
            max_upload_bytes: rp.max_upload_bytes.unwrap_or(8 << 20),
            decision_slots: rp.decision_slots.unwrap_or(4),
            structure: crate::policy::StructureLimits {
                max_modules: rp.max_modules.unwrap_or(defaults.max_modules),
                max_functions: rp.max_functions.unwrap_or(defaults.max_functions),
                max_function_bytes: rp.max_function_bytes.unwrap_or(defaults.max_function_bytes),
                max_function_locals: rp
                    .max_function_locals
                    .unwrap_or(defaults.max_function_locals),
                max_function_complexity: rp
                    .max_function_complexity
                    .unwrap_or(defaults.max_function_complexity),
                max_tables: rp.max_tables.unwrap_or(defaults.max_tables),
                max_memories: rp.max_memories.unwrap_or(defaults.max_memories),
                max_globals: rp.max_globals.unwrap_or(defaults.max_globals),
                max_data_segments: rp.max_data_segments.unwrap_or(defaults.max_data_segments),
                max_element_segments: rp
                    .max_element_segments
                    .unwrap_or(defaults.max_element_segments),
                max_instances: rp.max_instances.unwrap_or(defaults.max_instances),
            },
            compile_timeout: Duration::from_millis(rp.compile_timeout_ms.unwrap_or(20_000)),
            compile_memory_bytes: rp
                .compile_memory_mib
                .unwrap_or(1024)
                .saturating_mul(1 << 20),
            compile_slots: rp.compile_slots.unwrap_or(1),
            compile_queue: rp.compile_queue.unwrap_or(4),
            max_cases: rp.max_cases.unwrap_or(1000),
            cases_cpu: Duration::from_millis(rp.cases_cpu_ms.unwrap_or(5_000)),
            compile_worker: rp.compile_worker.as_ref().map(std::path::PathBuf::from),
        };
        for (key, value) in [
            ("plugins.compile_slots", plugins.compile_slots as u64),
            ("plugins.max_cases", plugins.max_cases as u64),
            (
                "plugins.compile_timeout_ms",
                plugins.compile_timeout.as_millis() as u64,
            ),
            ("plugins.cases_cpu_ms", plugins.cases_cpu.as_millis() as u64),
            ("plugins.max_functions", plugins.structure.max_functions),
            (
                "plugins.max_function_bytes",
                plugins.structure.max_function_bytes,
            ),
            (
                "plugins.max_function_complexity",
                plugins.structure.max_function_complexity,
            ),
        ] {
            if value == 0 {
                return Err(err(key, "must be at least 1".into()));
            }
        }
        if plugins.compile_memory_bytes < 64 << 20 {
            return Err(err(
                "plugins.compile_memory_mib",
                "must be at least 64 (the worker itself needs some)".into(),
            ));
        }
        if plugins.fault_limit == 0 {
            return Err(err("plugins.fault_limit", "must be at least 1".into()));
        }
        if plugins.decision_slots == 0 {
            return Err(err("plugins.decision_slots", "must be at least 1".into()));
        }
        if plugins.max_upload_bytes == 0 || plugins.max_upload_bytes > 64 << 20 {
            return Err(err(
                "plugins.max_upload_bytes",
                "must be between 1 byte and 64 MiB".into(),
            ));
        }
        let store_path = match raw.store.path.as_deref() {
            Some("") => return Err(err("store.path", "is empty".into())),
            Some(path) => std::path::PathBuf::from(path),
            None => std::path::PathBuf::from("switchyard.db"),
        };
        let mut thresholds = raw.alerts.thresholds.clone().unwrap_or(vec![0.5, 0.8, 1.0]);
        if thresholds.iter().any(|t| !t.is_finite() || *t <= 0.0) {
            return Err(err(
                "alerts.thresholds",
                "takes fractions of a budget above 0 (e.g. [0.5, 0.8, 1.0])".into(),
            ));
        }
        thresholds.sort_by(f64::total_cmp);
        thresholds.dedup();
        // The URL is a secret: errors say what is wrong with it, not what it is.
        if let Some(url) = &raw.alerts.webhook_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(err("alerts.webhook_url", "is not an http(s) URL".into()));
        }
        let alerts = AlertSettings {
            thresholds,
            webhook_url: raw.alerts.webhook_url.clone().map(Secret),
            webhook_attempts: raw.alerts.webhook_attempts.unwrap_or(5).max(1),
        };
        if let Some(url) = &raw.state.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(err(
                "state.redis_url",
                "is not a redis:// or rediss:// URL".into(),
            ));
        }
        let state = StateSettings {
            redis_url: raw.state.redis_url.clone().map(Secret),
            key_prefix: raw
                .state
                .key_prefix
                .clone()
                .unwrap_or_else(|| "switchyard".into()),
            timeout: Duration::from_millis(raw.state.timeout_ms.unwrap_or(250).max(1)),
        };
        Ok(Config {
            server,
            routing,
            providers,
            catalog,
            teams,
            key_hashes,
            admin_token,
            logical_models,
            store_path,
            plugins,
            default_policy_config,
            alerts,
            state,
        })
    }

    /// The team an API key belongs to.
    pub fn team_for_key(&self, key: &str) -> Option<&Team> {
        self.key_hashes
            .get(&hash_key(key))
            .and_then(|&i| self.teams.get(i))
    }

    /// Checks allow-lists given at runtime (admin API): every model is a
    /// catalog or logical model, every provider an account.
    pub fn check_team_access(
        &self,
        models: Option<&[String]>,
        providers: Option<&[String]>,
    ) -> Result<(), String> {
        for slug in models.unwrap_or_default() {
            if self.catalog.get(slug).is_none() && !self.logical_models.contains_key(slug) {
                return Err(format!("allowed_models: unknown model {slug:?}"));
            }
        }
        for account in providers.unwrap_or_default() {
            if !self.providers.iter().any(|p| &p.name == account) {
                return Err(format!(
                    "allowed_providers: no provider account named {account:?}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse("test.toml", text, &|var| {
            (var == "OPENAI_KEY").then(|| "sk-test".to_string())
        })
    }

    #[test]
    fn a_full_config_parses() {
        let config = parse(&format!(
            r#"
            [server]
            listen = "127.0.0.1:0"
            [providers.openai]
            kind = "openai"
            api_key_env = "OPENAI_KEY"
            models = ["gpt-5-mini", "gpt-4o"]
            [providers.local]
            kind = "openai-compatible"
            base_url = "http://127.0.0.1:11434/v1/"
            models = ["llama3.1:8b"]
            model_ids = {{ "llama3.1:8b" = "llama3.1:8b-instruct" }}
            [models."llama3.1:8b"]
            input = 0.0
            output = 0.0
            tier = 3
            features = ["stream", "temperature"]
            [teams.platform]
            key_sha256 = ["{}"]
            allowed_models = ["gpt-5-mini", "llama3.1:8b"]
            [teams.platform.policy_config]
            metric = "cost"
            "#,
            hash_key("sk-team")
        ))
        .expect("parses");
        assert_eq!(config.providers.len(), 2);
        assert_eq!(config.providers[0].base_url, "http://127.0.0.1:11434/v1");
        assert_eq!(
            config.providers[1].api_key.as_ref().map(Secret::expose),
            Some("sk-test")
        );
        let team = config.team_for_key("sk-team").expect("team");
        assert_eq!(team.name, "platform");
        assert_eq!(team.policy_config, r#"{"metric":"cost"}"#);
        assert!(config.team_for_key("sk-other").is_none());
        assert_eq!(config.catalog.get("llama3.1:8b").map(|m| m.tier), Some(3));
    }

    #[test]
    fn secrets_stay_out_of_debug_output_and_errors() {
        let text = r#"
            [providers.openai]
            kind = "openai"
            api_key_env = "OPENAI_KEY"
            models = ["gpt-5-mini"]
            [alerts]
            webhook_url = "https://hooks.example.com/services/T0/B0/hook-secret"
            [state]
            redis_url = "redis://:redis-secret@127.0.0.1:6379"
            "#;
        let config = Config::parse("t.toml", text, &|var| match var {
            "OPENAI_KEY" => Some("sk-test".into()),
            "SWITCHYARD_ADMIN_TOKEN" => Some("admin-secret".into()),
            _ => None,
        })
        .expect("parses");
        let shown = format!("{config:?}");
        for secret in ["sk-test", "admin-secret", "hook-secret", "redis-secret"] {
            assert!(!shown.contains(secret), "Debug shows {secret}");
        }
        assert_eq!(
            url_host(
                config
                    .alerts
                    .webhook_url
                    .as_ref()
                    .map_or("", Secret::expose)
            ),
            "hooks.example.com"
        );
        // A malformed webhook URL is refused without being repeated.
        let err = parse("[alerts]\nwebhook_url = \"ftp://hook-secret\"\n").expect_err("ftp");
        assert!(!err.to_string().contains("hook-secret"), "{err}");
    }

    #[test]
    fn health_settings_have_defaults_and_are_checked() {
        let config = parse(
            "[providers.openai]\nkind = \"openai\"\napi_key_env = \"OPENAI_KEY\"\nmodels = [\"gpt-4o\"]\n\
             [providers.local]\nkind = \"openai-compatible\"\nbase_url = \"http://127.0.0.1:1/v1\"\nmodels = [\"gpt-4o\"]\n",
        )
        .expect("parses");
        let account = |name: &str| config.providers.iter().find(|p| p.name == name);
        assert_eq!(
            account("openai").and_then(|a| a.health_check_interval),
            None,
            "paid: off"
        );
        assert_eq!(
            account("local").and_then(|a| a.health_check_interval),
            Some(Duration::from_secs(30)),
            "local: on"
        );
        assert_eq!(config.routing.circuit_breaker, BreakerSettings::default());
        assert_eq!(config.routing.feature_uptime_threshold, 0.9);

        let e = parse("[routing.circuit_breaker]\nfailure_rate = 1.5\n").expect_err("rate");
        assert_eq!(e.key, "routing.circuit_breaker.failure_rate");
        let e = parse("[routing]\nfeature_uptime_threshold = -0.1\n").expect_err("threshold");
        assert_eq!(e.key, "routing.feature_uptime_threshold");
        let e = parse("[routing.circuit_breaker]\nrecovery_secs = 0\n").expect_err("recovery");
        assert_eq!(e.key, "routing.circuit_breaker");
        let e = parse(
            "[providers.local]\nkind = \"openai-compatible\"\nbase_url = \"http://127.0.0.1:1/v1\"\nmodels = [\"gpt-4o\"]\nhealth_check_interval_ms = 50\n",
        )
        .expect_err("interval");
        assert_eq!(e.key, "providers.local.health_check_interval_ms");
        let e = parse("[admin]\ntoken_env = \"NO_SUCH_VAR\"\n").expect_err("admin");
        assert_eq!(e.key, "admin.token_env");
    }

    #[test]
    fn logical_models_are_checked() {
        let base = "[providers.openai]\nkind = \"openai\"\napi_key_env = \"OPENAI_KEY\"\nmodels = [\"gpt-4o\", \"gpt-5-mini\"]\n";
        let config = parse(&format!(
            "{base}[logical_models.chat]\ntargets = [\"gpt-4o\", \"gpt-5-mini\"]\ncapabilities = [\"streaming\", \"tools\"]\n[logical_models.chat.defaults]\ntemperature = 0.2\nmax_tokens = 100\n[teams.t]\nallowed_models = [\"chat\"]\n"
        ))
        .expect("parses");
        let chat = &config.logical_models["chat"];
        assert_eq!(chat.capabilities, ["stream", "tools.function_calling"]);
        assert_eq!(chat.defaults.max_tokens, Some(100));
        for (extra, key, problem) in [
            (
                "[logical_models.chat]\ntargets = [\"gpt-9\"]\n",
                "logical_models.chat.targets[0]",
                "unknown model",
            ),
            (
                "[logical_models.chat]\ntargets = [\"claude-haiku-4-5\"]\n",
                "logical_models.chat.targets[0]",
                "no provider account serves",
            ),
            (
                "[logical_models.chat]\ntargets = [\"gpt-4o\"]\ncapabilities = [\"teleport\"]\n",
                "logical_models.chat.capabilities[0]",
                "unknown capability",
            ),
            (
                "[logical_models.gpt-4o]\ntargets = [\"gpt-4o\"]\n",
                "logical_models.\"gpt-4o\"",
                "its own name",
            ),
            (
                "[logical_models.chat]\ntargets = [\"gpt-4o\"]\n[logical_models.chat.defaults]\ntemperature = 3.0\n",
                "logical_models.chat.defaults.temperature",
                "between 0 and 2",
            ),
        ] {
            let e = parse(&format!("{base}{extra}")).expect_err(extra);
            assert_eq!(e.key, key, "{extra}");
            assert!(e.problem.contains(problem), "{e}");
        }
    }

    #[test]
    fn errors_name_file_key_and_problem() {
        let e = parse("[providers.openai]\nkind = \"openai\"\nmodels = [\"gpt-5\"]\n")
            .expect_err("no key");
        assert_eq!(
            e.to_string(),
            "test.toml: providers.openai.api_key_env: is required for openai and anthropic accounts (name the environment variable holding the key)"
        );

        let e = parse("[providers.openai]\nkind = \"openai\"\napi_key_env = \"MISSING\"\nmodels = [\"gpt-5\"]\n").expect_err("env");
        assert_eq!(e.key, "providers.openai.api_key_env");
        assert!(e.problem.contains("MISSING is not set"), "{e}");

        let e = parse("[providers.openai]\nkind = \"openai\"\napi_key_env = \"OPENAI_KEY\"\nmodels = [\"gpt-5\", \"gpt-9\"]\n").expect_err("model");
        assert_eq!(e.key, "providers.openai.models[1]");
        assert!(e.problem.contains("unknown model \"gpt-9\""), "{e}");

        let e = parse("[providers.x]\nkind = \"bedrock\"\nmodels = []\n").expect_err("kind");
        assert!(
            e.to_string()
                .starts_with("test.toml: line 2: unknown variant `bedrock`"),
            "{e}"
        );

        let e = parse("[server]\nlisten = \"nope\"\n").expect_err("listen");
        assert_eq!(e.key, "server.listen");

        let e = parse("[teams.a]\nkey_sha256 = [\"abc\"]\n").expect_err("hash");
        assert_eq!(e.key, "teams.a.key_sha256[0]");

        let e = parse("[serverr]\n").expect_err("unknown table");
        assert!(e.problem.contains("unknown field `serverr`"), "{e}");
    }
}
