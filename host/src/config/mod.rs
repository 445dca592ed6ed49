//! `switchyard.toml`: provider accounts, models (extending the bundled
//! catalog), teams and their hashed keys, routing settings and the default
//! policy's config. Errors name the file, the key and the problem.

use std::collections::BTreeMap;
use std::path::Path;

use crate::catalog::Catalog;

mod model;
mod raw;
mod validate;

pub use model::*;
use raw::RawConfig;

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
    pub log: LogSettings,
    /// Backup candidates tested on mirrored requests.
    pub backups: Vec<BackupSettings>,
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

        let server = validate::server(&raw.server, &err)?;
        let routing = validate::routing(&raw.routing, &err)?;
        let catalog = Catalog::bundled()
            .extended(&raw.models)
            .map_err(|(slug, problem)| err(&format!("models.{slug:?}"), problem))?;
        let providers = validate::providers(&raw, &catalog, env, &err)?;
        let (teams, key_hashes, default_policy_config) = validate::teams(&raw, &catalog, &err)?;
        let logical_models = validate::logical_models(&raw, &catalog, &providers, &err)?;
        let admin_token = validate::admin_token(&raw, env, &err)?;
        let plugins = validate::plugins(&raw.plugins, &err)?;
        let store_path = validate::store_path(&raw, &err)?;
        let alerts = validate::alerts(&raw, &err)?;
        let state = validate::state(&raw, &err)?;
        let log = validate::log(&raw, &err)?;
        let backups = validate::backups(&raw, &providers, &teams, &logical_models, &err)?;
        Ok(Config {
            backups,
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
            log,
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

    use std::time::Duration;

    use super::BreakerSettings;

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
        let e = parse("[routing]\nretries_per_candidate = 11\n").expect_err("retries");
        assert_eq!(e.key, "routing.retries_per_candidate");
        let routing = parse("").expect("defaults").routing;
        assert_eq!(
            (
                routing.retries_per_candidate,
                routing.max_retry_wait,
                routing.stream_idle_timeout
            ),
            (1, Duration::from_secs(5), Duration::from_secs(10))
        );
        let e = parse(
            "[providers.local]\nkind = \"openai-compatible\"\nbase_url = \"http://127.0.0.1:1/v1\"\nmodels = [\"gpt-4o\"]\nhealth_check_interval_ms = 50\n",
        )
        .expect_err("interval");
        assert_eq!(e.key, "providers.local.health_check_interval_ms");
        let e = parse("[admin]\ntoken_env = \"NO_SUCH_VAR\"\n").expect_err("admin");
        assert_eq!(e.key, "admin.token_env");
    }

    #[test]
    fn backups_name_a_served_candidate_and_bounded_sampling() {
        let base = |backup: &str| {
            format!(
                "[providers.beta]\nkind = \"openai\"\napi_key_env = \"OPENAI_KEY\"\nmodels = [\"gpt-4o\"]\n[teams.t]\n[[backups]]\n{backup}\n"
            )
        };
        let ok = parse(&base("team = \"t\"\ncandidate = \"beta/gpt-4o\"")).expect("valid");
        let b = &ok.backups[0];
        assert_eq!(
            (b.name.as_str(), b.sample, b.daily_usd),
            ("t:beta/gpt-4o", 0.1, 1.0)
        );
        for (backup, key) in [
            ("candidate = \"beta\"", "backups[0].candidate"),
            ("candidate = \"gamma/gpt-4o\"", "backups[0].candidate"),
            ("candidate = \"beta/gpt-5\"", "backups[0].candidate"),
            (
                "candidate = \"beta/gpt-4o\"\nteam = \"nobody\"",
                "backups[0].team",
            ),
            (
                "candidate = \"beta/gpt-4o\"\nlogical_model = \"fast\"",
                "backups[0].logical_model",
            ),
            (
                "candidate = \"beta/gpt-4o\"\nsample = 0",
                "backups[0].sample",
            ),
            (
                "candidate = \"beta/gpt-4o\"\ndaily_usd = -1",
                "backups[0].daily_usd",
            ),
            (
                "candidate = \"beta/gpt-4o\"\nfail_after = 0",
                "backups[0].fail_after",
            ),
        ] {
            let e = parse(&base(backup)).expect_err(backup);
            assert_eq!(e.key, key, "{backup}: {}", e.problem);
        }
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
