//! The configuration's domain model: provider accounts, teams, logical
//! models and the settings of each part of the gateway, as the rest of the
//! gateway reads them (validated; secrets wrapped).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::catalog::Catalog;

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
    /// Longest wait for a whole answer (a stream: for its first token, at
    /// most `routing.first_token_timeout`).
    pub timeout: Duration,
    /// Longest wait for a TCP (and TLS) connection to the provider.
    pub connect_timeout: Duration,
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
    /// The account's models continue a conversation that ends with an
    /// assistant message (a prefill) instead of answering it anew: a stream
    /// cut mid-answer is rescued there by continuation. Default: on for
    /// `anthropic`, off for the others (a vLLM, llama.cpp or Ollama server
    /// that continues a trailing assistant message may turn it on).
    pub continuation: bool,
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

/// The request log (`[log]`, docs/request-log.md).
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    /// One record per request in the embedded store (on by default).
    pub enabled: bool,
    /// Records older than this are deleted.
    pub max_age: Duration,
    /// The oldest records are deleted while the records hold more bytes.
    pub max_bytes: u64,
    /// Longest prompt text kept for a team with `log_prompts`, in bytes per
    /// text (last user turn, system prompt).
    pub prompt_bytes: usize,
    /// Records waiting for the writer beyond which new ones are dropped
    /// (and counted) while the store refuses writes.
    pub max_pending: usize,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_age: Duration::from_secs(7 * 86_400),
            max_bytes: 1 << 30,
            prompt_bytes: 4096,
            max_pending: 100_000,
        }
    }
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
    /// Whether the team's policy may read the request's content (0.2
    /// `wants.content`); `None`: `[plugins] content_bundled` /
    /// `content_uploaded` decide.
    pub content_signals: Option<bool>,
    /// Whether the request log keeps this team's prompt text (cut to
    /// `[log] prompt_bytes`); off unless the operator turns it on.
    pub log_prompts: bool,
}

impl Team {
    /// Whether the team's policy may read requests' content: the team's
    /// `content_signals`, else the operator's setting for the bundled
    /// policy or for uploaded ones.
    pub fn content_allowed(&self, settings: &PluginSettings, bundled: bool) -> bool {
        self.content_signals.unwrap_or(if bundled {
            settings.content_bundled
        } else {
            settings.content_uploaded
        })
    }

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

/// Executor settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingSettings {
    /// A streaming attempt that sends no content token in this time is replaced.
    pub first_token_timeout: Duration,
    /// A stream that sends nothing for this long after its first content
    /// token is ended as broken.
    pub stream_idle_timeout: Duration,
    /// Calls of the same candidate after its first fails (5xx, a broken
    /// connection, a 429 with a short or no `retry-after`).
    pub retries_per_candidate: u32,
    /// A stream that breaks after content is continued on the plan's next
    /// candidates (mid-stream rescue); off: it ends with an error event.
    pub stream_rescue: bool,
    /// The longest `retry-after` waited out on the same candidate; a longer
    /// one moves on to the next candidate.
    pub max_retry_wait: Duration,
    /// No retry wait starts that would end later than this after arrival.
    pub retry_deadline: Duration,
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
    /// The window (seconds) that feature uptime is judged over for
    /// exclusion — the last 16 attempts within it — so a candidate that
    /// recovered returns once its failures age out.
    pub feature_uptime_window_secs: u32,
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
    pub structure: StructureLimits,
    /// Wall-clock budget of compiling one component (in the compile worker).
    pub compile_timeout: Duration,
    /// Memory ceiling of the compile worker, in bytes.
    pub compile_memory_bytes: u64,
    /// Uploads compiled and tested at once.
    pub compile_slots: usize,
    /// Uploads that may wait for a slot; more are refused with 429.
    pub compile_queue: usize,
    /// Compiled components kept beyond those in service (recent uploads,
    /// the versions a rollback returns to), so activating one is a pointer
    /// swap rather than a compilation.
    pub keep_compiled: usize,
    /// Whether the bundled policy may read requests' content (when it asks).
    pub content_bundled: bool,
    /// Whether uploaded policies may read requests' content (when they ask);
    /// a team's `content_signals` overrides both.
    pub content_uploaded: bool,
    /// Longest prompt text (last user turn, system prompt) handed to a
    /// policy, in bytes; longer text is cut.
    pub content_text_bytes: usize,
    /// CPU the teams' shadow policies may use in all, as a share of one
    /// core; decisions past it are skipped (and counted).
    pub shadow_cpu_share: f64,
    /// Finished requests that may wait for their shadow decision; more are
    /// logged without one (and counted).
    pub shadow_queue: usize,
    /// Most cases an uploaded case file may hold.
    pub max_cases: usize,
    /// CPU time the cases of one upload may use, in all.
    pub cases_cpu: Duration,
    /// The program run as the compile worker; `None`: this executable.
    pub compile_worker: Option<std::path::PathBuf>,
}

/// Circuit breaker settings (`[routing.circuit_breaker]`), read by
/// `health::Breakers`.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSettings {
    pub enabled: bool,
    /// Failure share (0.0 to 1.0) at which the circuit opens.
    pub failure_rate: f64,
    /// Fewest attempts in the window before the rate is trusted.
    pub min_requests: u32,
    /// Rolling window the failure rate is measured over.
    pub window: Duration,
    /// How long an open circuit stays open before probing.
    pub recovery: Duration,
    /// Probes allowed at once while half-open.
    pub half_open_probes: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            failure_rate: 0.5,
            min_requests: 5,
            window: Duration::from_secs(60),
            recovery: Duration::from_secs(30),
            half_open_probes: 1,
        }
    }
}

/// Structural limits of a component (its core modules together, unless a
/// limit says per function), checked before it is compiled (`[plugins]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructureLimits {
    /// Core modules, nested ones included.
    pub max_modules: u64,
    /// Functions defined, across modules.
    pub max_functions: u64,
    /// Bytes of one function body.
    pub max_function_bytes: u64,
    /// Locals one function declares.
    pub max_function_locals: u64,
    /// One function's locals times its control blocks (`block`, `loop`,
    /// `if`): what the compiler's SSA construction grows with.
    pub max_function_complexity: u64,
    pub max_tables: u64,
    pub max_memories: u64,
    pub max_globals: u64,
    pub max_data_segments: u64,
    pub max_element_segments: u64,
    /// Core and component instances the component creates.
    pub max_instances: u64,
}

impl Default for StructureLimits {
    /// Far above what real policies use (SECURITY.md gives the figures of
    /// the bundled policies), far below what makes compiling slow.
    fn default() -> Self {
        Self {
            max_modules: 64,
            max_functions: 100_000,
            max_function_bytes: 1 << 20,
            max_function_locals: 20_000,
            max_function_complexity: 2_000_000,
            max_tables: 256,
            max_memories: 64,
            max_globals: 100_000,
            max_data_segments: 100_000,
            max_element_segments: 100_000,
            max_instances: 1_000,
        }
    }
}

/// A backup candidate tested before a failover depends on it (`[[backups]]`):
/// a sampled share of the requests of a team, or of a logical model, is
/// mirrored to it after the primary answered, and its answer is checked
/// (it answered; its shape: JSON under `response_format`, tool calls against
/// the tool schemas, finish reason) and compared (latency, time to first
/// token, cost) with the primary's.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupSettings {
    /// How reports and metric labels name it (default `account/model`, with
    /// the team or logical model: `growth:beta/gpt-4o`).
    pub name: String,
    /// Mirror this team's requests (all teams' when `None`).
    pub team: Option<String>,
    /// Mirror requests for this logical model (any model when `None`).
    pub logical_model: Option<String>,
    /// The backup account and model.
    pub account: String,
    pub model: String,
    /// Share of the matching requests mirrored, in (0, 1].
    pub sample: f64,
    /// US dollars the mirrored calls may cost per UTC day; past it mirroring
    /// pauses until the next day.
    pub daily_usd: f64,
    /// Failed checks in a row after which the backup is flagged (and as
    /// many passes in a row clear the flag).
    pub fail_after: u32,
    /// A flagged backup is left out of the fallbacks of the requests it
    /// backs up (never the last candidate left).
    pub exclude_failing: bool,
}
