//! Validation: the raw TOML tables of [`super::raw`] checked section by
//! section and turned into the domain model of [`super::model`]. Every
//! problem is a [`ConfigError`] naming the key.

use std::collections::BTreeMap;
use std::time::Duration;

use super::raw::{RawConfig, RawPlugins, RawRouting, RawServer};
use super::*;
use crate::catalog::Catalog;

type Err<'a> = &'a dyn Fn(&str, String) -> ConfigError;

/// `[server]`.
pub(super) fn server(raw: &RawServer, err: Err) -> Result<ServerSettings, ConfigError> {
    let listen = raw.listen.as_deref().unwrap_or("127.0.0.1:4000");
    let server = ServerSettings {
        listen: listen.parse().map_err(|e| {
            err(
                "server.listen",
                format!("{listen:?} is not an address:port ({e})"),
            )
        })?,
        shutdown_grace: Duration::from_secs(raw.shutdown_grace_secs.unwrap_or(30)),
        max_body_bytes: raw.max_body_bytes.unwrap_or(4 << 20),
        body_limits: raw.body_limits.clone(),
        max_image_body_bytes: raw.max_image_body_bytes.unwrap_or(20 << 20),
        max_json_values: raw.max_json_values.unwrap_or(200_000),
        max_request_memory_bytes: raw.max_request_memory_bytes.unwrap_or(512 << 20),
        max_connections: raw.max_connections,
        max_in_flight: raw.max_in_flight.unwrap_or(2048),
        header_read_timeout: Duration::from_millis(raw.header_read_timeout_ms.unwrap_or(10_000)),
        idle_timeout: Duration::from_millis(raw.idle_timeout_ms.unwrap_or(60_000)),
        body_read_timeout: Duration::from_millis(raw.body_read_timeout_ms.unwrap_or(30_000)),
        http2: raw.http2,
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
    Ok(server)
}

/// `[routing]` and its circuit breaker.
pub(super) fn routing(r: &RawRouting, err: Err) -> Result<RoutingSettings, ConfigError> {
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
    if let Some(n) = r.retries_per_candidate.filter(|n| *n > 10) {
        return Err(err(
            "routing.retries_per_candidate",
            format!("{n} is more than 10: a failing provider would be hammered"),
        ));
    }
    if let Some(n) = r
        .feature_uptime_min_requests
        .filter(|n| *n > crate::metrics::series::RECENT_ATTEMPTS as u64)
    {
        return Err(err(
            "routing.feature_uptime_min_requests",
            format!(
                "{n} is more than the {} recent attempts feature uptime is judged on",
                crate::metrics::series::RECENT_ATTEMPTS
            ),
        ));
    }
    let routing = RoutingSettings {
        first_token_timeout: Duration::from_millis(r.first_token_timeout_ms.unwrap_or(15_000)),
        stream_idle_timeout: Duration::from_millis(r.stream_idle_timeout_ms.unwrap_or(10_000)),
        retries_per_candidate: r.retries_per_candidate.unwrap_or(1),
        stream_rescue: r.stream_rescue.unwrap_or(true),
        max_retry_wait: Duration::from_millis(r.max_retry_wait_ms.unwrap_or(5_000)),
        retry_deadline: Duration::from_millis(r.retry_deadline_ms.unwrap_or(30_000)),
        backoff_base: Duration::from_millis(r.backoff_base_ms.unwrap_or(50)),
        backoff_max: Duration::from_millis(r.backoff_max_ms.unwrap_or(1_000)),
        quota_cooldown: Duration::from_secs(r.quota_cooldown_secs.unwrap_or(300)),
        rate_limit_cooldown: Duration::from_secs(r.rate_limit_cooldown_secs.unwrap_or(10)),
        feature_uptime_threshold: r.feature_uptime_threshold.unwrap_or(0.9),
        feature_uptime_min_requests: r.feature_uptime_min_requests.unwrap_or(5).max(1),
        feature_uptime_window_secs: r.feature_uptime_window_secs.unwrap_or(60).clamp(1, 3600),
        circuit_breaker,
    };
    Ok(routing)
}

/// `[providers.*]`: the accounts, their keys from the environment.
pub(super) fn providers(
    raw: &RawConfig,
    catalog: &Catalog,
    env: &dyn Fn(&str) -> Option<String>,
    err: Err,
) -> Result<Vec<ProviderAccount>, ConfigError> {
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
            Some(var) => Some(
                env(var)
                    .filter(|v| !v.is_empty())
                    .map(Secret::new)
                    .ok_or_else(|| {
                        err(
                            &at("api_key_env"),
                            format!("environment variable {var} is not set"),
                        )
                    })?,
            ),
            None => None,
        };
        if api_key.is_none() && matches!(p.kind, ProviderKind::Openai | ProviderKind::Anthropic) {
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
        let (limits, budget) = limits_and_budget(&at, p.rpm, p.tpm, p.budget_usd, p.budget_period)
            .map_err(|(key, problem)| err(&key, problem))?;
        providers.push(ProviderAccount {
            name: name.clone(),
            kind: p.kind,
            base_url,
            api_key,
            zdr: p.zdr,
            timeout: Duration::from_millis(p.timeout_ms.unwrap_or(120_000)),
            connect_timeout: Duration::from_millis(p.connect_timeout_ms.unwrap_or(5_000).max(1)),
            models: p.models.clone(),
            model_ids: p.model_ids.clone(),
            simulated,
            health_check_interval,
            limits,
            budget,
            max_response_bytes: p.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES),
            continuation: p.continuation.unwrap_or(p.kind == ProviderKind::Anthropic),
        });
    }
    Ok(providers)
}

/// `[teams.*]` (and the `[policy]` table they default to): the teams,
/// the index of their key hashes, and the default policy config as JSON.
#[allow(clippy::type_complexity)]
pub(super) fn teams(
    raw: &RawConfig,
    catalog: &Catalog,
    err: Err,
) -> Result<(Vec<Team>, BTreeMap<String, usize>, String), ConfigError> {
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
        let (limits, budget) = limits_and_budget(&at, t.rpm, t.tpm, t.budget_usd, t.budget_period)
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
            content_signals: t.content_signals,
            log_prompts: t.log_prompts,
        });
    }
    Ok((teams, key_hashes, default_policy_config))
}

/// `[logical_models.*]`: targets served by some account, capabilities
/// every target supports, sane defaults.
pub(super) fn logical_models(
    raw: &RawConfig,
    catalog: &Catalog,
    providers: &[ProviderAccount],
    err: Err,
) -> Result<BTreeMap<String, LogicalModel>, ConfigError> {
    let mut logical_models = BTreeMap::new();
    for (name, l) in &raw.logical_models {
        let at = |field: &str| format!("logical_models.{name}.{field}");
        if name.is_empty() || name.contains('/') || name == "auto" || catalog.get(name).is_some() {
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
            if let Some(missing) = capabilities.iter().find(|c| {
                !switchyard_wire::Feature::parse(c).is_some_and(|f| model.features.contains(f))
            }) {
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
    Ok(logical_models)
}

/// `[admin]`: the admin token, from the environment.
pub(super) fn admin_token(
    raw: &RawConfig,
    env: &dyn Fn(&str) -> Option<String>,
    err: Err,
) -> Result<Option<Secret>, ConfigError> {
    let token_env = raw
        .admin
        .token_env
        .as_deref()
        .unwrap_or("SWITCHYARD_ADMIN_TOKEN");
    let admin_token = env(token_env)
        .filter(|t| !t.trim().is_empty())
        .map(Secret::new);
    if raw.admin.token_env.is_some() && admin_token.is_none() {
        return Err(err(
            "admin.token_env",
            format!("environment variable {token_env} is not set"),
        ));
    }
    Ok(admin_token)
}

/// `[plugins]`: upload, compile and decision limits.
pub(super) fn plugins(rp: &RawPlugins, err: Err) -> Result<PluginSettings, ConfigError> {
    let defaults = StructureLimits::default();
    let plugins = PluginSettings {
        fault_limit: rp.fault_limit.unwrap_or(5),
        max_upload_bytes: rp.max_upload_bytes.unwrap_or(8 << 20),
        decision_slots: rp.decision_slots.unwrap_or(4),
        structure: StructureLimits {
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
        keep_compiled: rp.keep_compiled.unwrap_or(8),
        content_bundled: rp.content_bundled.unwrap_or(true),
        content_uploaded: rp.content_uploaded.unwrap_or(false),
        content_text_bytes: rp.content_text_bytes.unwrap_or(4096),
        shadow_cpu_share: rp.shadow_cpu_share.unwrap_or(0.25),
        shadow_queue: rp.shadow_queue.unwrap_or(1024),
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
    if !(plugins.shadow_cpu_share > 0.0 && plugins.shadow_cpu_share <= 1.0) {
        return Err(err(
            "plugins.shadow_cpu_share",
            "must be a share of one core above 0 and at most 1".into(),
        ));
    }
    if plugins.shadow_queue == 0 {
        return Err(err("plugins.shadow_queue", "must be at least 1".into()));
    }
    if plugins.max_upload_bytes == 0 || plugins.max_upload_bytes > 64 << 20 {
        return Err(err(
            "plugins.max_upload_bytes",
            "must be between 1 byte and 64 MiB".into(),
        ));
    }
    Ok(plugins)
}

/// `[store]`: the SQLite file.
pub(super) fn store_path(raw: &RawConfig, err: Err) -> Result<std::path::PathBuf, ConfigError> {
    let store_path = match raw.store.path.as_deref() {
        Some("") => return Err(err("store.path", "is empty".into())),
        Some(path) => std::path::PathBuf::from(path),
        None => std::path::PathBuf::from("switchyard.db"),
    };
    Ok(store_path)
}

/// `[alerts]`: budget thresholds and the webhook.
pub(super) fn alerts(raw: &RawConfig, err: Err) -> Result<AlertSettings, ConfigError> {
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
        webhook_url: raw.alerts.webhook_url.clone().map(Secret::new),
        webhook_attempts: raw.alerts.webhook_attempts.unwrap_or(5).max(1),
    };
    Ok(alerts)
}

/// `[log]`: the request log.
pub(super) fn log(raw: &RawConfig, err: Err) -> Result<LogSettings, ConfigError> {
    let defaults = LogSettings::default();
    let max_age = match raw.log.max_age.as_deref() {
        None => defaults.max_age,
        Some(text) => {
            let bad = || {
                err(
                    "log.max_age",
                    format!("{text:?} is not an age such as 7d or 12h (1h to 3650d)"),
                )
            };
            let (number, unit) = text.split_at(text.len().saturating_sub(1));
            let n: u64 = number.parse().map_err(|_| bad())?;
            let secs = match unit {
                "d" => n.checked_mul(86_400),
                "h" => n.checked_mul(3_600),
                _ => None,
            }
            .ok_or_else(bad)?;
            if !(3_600..=3_650 * 86_400).contains(&secs) {
                return Err(bad());
            }
            Duration::from_secs(secs)
        }
    };
    let max_bytes = match raw.log.max_mib {
        Some(0) => return Err(err("log.max_mib", "must be at least 1".into())),
        Some(mib) => mib.saturating_mul(1 << 20),
        None => defaults.max_bytes,
    };
    Ok(LogSettings {
        enabled: raw.log.enabled.unwrap_or(defaults.enabled),
        max_age,
        max_bytes,
        prompt_bytes: raw.log.prompt_bytes.unwrap_or(defaults.prompt_bytes),
        max_pending: raw.log.max_pending.unwrap_or(defaults.max_pending).max(1),
    })
}

/// `[state]`: the shared state backend.
pub(super) fn state(raw: &RawConfig, err: Err) -> Result<StateSettings, ConfigError> {
    if let Some(url) = &raw.state.redis_url
        && !(url.starts_with("redis://") || url.starts_with("rediss://"))
    {
        return Err(err(
            "state.redis_url",
            "is not a redis:// or rediss:// URL".into(),
        ));
    }
    let state = StateSettings {
        redis_url: raw.state.redis_url.clone().map(Secret::new),
        key_prefix: raw
            .state
            .key_prefix
            .clone()
            .unwrap_or_else(|| "switchyard".into()),
        timeout: Duration::from_millis(raw.state.timeout_ms.unwrap_or(250).max(1)),
    };
    Ok(state)
}

/// Checks `rpm`/`tpm` (at least 1 when given) and the budget (a finite,
/// non-negative amount; the period needs an amount).
pub(super) fn limits_and_budget(
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

/// Capability names of seed 004, as shorthands for feature-table names.
pub(super) fn capability_feature(name: &str) -> &str {
    match name {
        "streaming" => "stream",
        "tools" | "function_calling" => "tools.function_calling",
        "json" | "json_mode" => "text.format.json_object",
        "structured_output" => "text.format.json_schema",
        other => other,
    }
}

/// `[[backups]]`: each names an account serving the model, at most one team
/// and logical model that exist, and bounded sampling and spend.
pub(super) fn backups(
    raw: &RawConfig,
    providers: &[ProviderAccount],
    teams: &[Team],
    logical_models: &BTreeMap<String, LogicalModel>,
    err: Err,
) -> Result<Vec<BackupSettings>, ConfigError> {
    let mut out: Vec<BackupSettings> = Vec::new();
    for (i, b) in raw.backups.iter().enumerate() {
        let key = |field: &str| format!("backups[{i}].{field}");
        let Some((account, model)) = b.candidate.split_once('/') else {
            return Err(err(
                &key("candidate"),
                format!("{:?} is not account/model", b.candidate),
            ));
        };
        let Some(serving) = providers.iter().find(|p| p.name == account) else {
            return Err(err(
                &key("candidate"),
                format!("no provider account named {account:?}"),
            ));
        };
        if !serving.models.iter().any(|m| m == model) {
            return Err(err(
                &key("candidate"),
                format!("account {account:?} does not serve model {model:?}"),
            ));
        }
        if let Some(team) = &b.team
            && !teams.iter().any(|t| &t.name == team)
        {
            return Err(err(
                &key("team"),
                format!("no team {team:?} in this file (backups are declared for config teams)"),
            ));
        }
        if let Some(logical) = &b.logical_model
            && !logical_models.contains_key(logical)
        {
            return Err(err(
                &key("logical_model"),
                format!("no logical model {logical:?}"),
            ));
        }
        let sample = b.sample.unwrap_or(0.1);
        if !(sample > 0.0 && sample <= 1.0) {
            return Err(err(&key("sample"), "must be above 0 and at most 1".into()));
        }
        let daily_usd = b.daily_usd.unwrap_or(1.0);
        if !(daily_usd.is_finite() && daily_usd > 0.0) {
            return Err(err(&key("daily_usd"), "must be a positive amount".into()));
        }
        let fail_after = b.fail_after.unwrap_or(3);
        if fail_after == 0 {
            return Err(err(&key("fail_after"), "must be at least 1".into()));
        }
        let scope = match (&b.team, &b.logical_model) {
            (Some(t), Some(l)) => format!("{t}:{l}:"),
            (Some(s), None) | (None, Some(s)) => format!("{s}:"),
            (None, None) => String::new(),
        };
        let name = b
            .name
            .clone()
            .unwrap_or_else(|| format!("{scope}{}", b.candidate));
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(err(
                &key("name"),
                "must be 1 to 128 printable characters".into(),
            ));
        }
        if out.iter().any(|o| o.name == name) {
            return Err(err(&key("name"), format!("{name:?} names two backups")));
        }
        out.push(BackupSettings {
            name,
            team: b.team.clone(),
            logical_model: b.logical_model.clone(),
            account: account.to_owned(),
            model: model.to_owned(),
            sample,
            daily_usd,
            fail_after,
            exclude_failing: b.exclude_failing.unwrap_or(false),
        });
    }
    Ok(out)
}
