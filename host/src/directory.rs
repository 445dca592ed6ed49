//! The live team directory: who a key belongs to, and which policy routes
//! that team's requests.
//!
//! Teams come from two places: the config file (allow-lists, ZDR and keys
//! declared there) and the embedded store (teams and keys created through the
//! admin API, plus every team's uploaded policy versions and the active one).
//! The [`Directory`] merges both into an immutable [`DirectorySnapshot`] held
//! in an `ArcSwap`: a request loads it once and keeps its [`DirectoryEntry`]
//! (its [`Team`] and [`ActivePolicy`], and so its policy version) to the end,
//! while an admin write builds the next snapshot and swaps it in atomically.
//! Compiled policies are reused across snapshots.
//!
//! A team's uploaded plugin is watched: every fault (trap, deadline, memory,
//! invalid plan) is counted per team and version, and after
//! [`crate::config::PluginSettings::fault_limit`] consecutive faults the
//! plugin is set aside (recorded in the store) and the default policy serves
//! the team until a version is activated again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::config::{Config, Team, hash_key};
use crate::policy::{LoadError, Policy, Runtime, WarmPool, v0_2};
use crate::replay::shadow::{Attachment, Shadow};
use crate::store::{KeyScope, Store, StoreError, TeamRow};

/// Where a team is declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// In the config file, which owns its allow-lists and ZDR setting.
    Config,
    /// Through the admin API.
    Admin,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Admin => "admin",
        }
    }
}

/// One team as requests see it.
#[derive(Debug)]
pub struct DirectoryEntry {
    /// Allow-lists, ZDR and the policy config the team's requests carry.
    pub team: Team,
    pub origin: Origin,
    /// When the team was created (seconds since the epoch).
    pub created_at: u64,
    /// The team's active uploaded plugin; `None`: the bundled default policy.
    pub policy: Option<Arc<ActivePolicy>>,
    /// Why the active version could not be loaded (the default policy
    /// serves meanwhile), e.g. after an upgrade that dropped its WIT version.
    pub policy_error: Option<String>,
    /// What the team's own policy (its plugin, else the bundled one) is
    /// configured with (0.2 `configure`): the team, its policy config and
    /// the gateway's catalog.
    pub setup: Arc<v0_2::Setup>,
    /// What the bundled policy is configured with while it stands in for
    /// the team's plugin (the default policy's config).
    pub standin: Arc<v0_2::Setup>,
    /// The version attached as the team's shadow, deciding beside the
    /// active policy on a sample of requests.
    pub shadow: Option<Arc<Shadow>>,
    /// Why the attached shadow version could not be loaded.
    pub shadow_error: Option<String>,
}

impl DirectoryEntry {
    /// Whether the team's policy may read requests' content: the team's
    /// `content_signals`, else the operator's setting for the bundled
    /// policy or for uploaded ones.
    pub fn content_allowed(&self, settings: &crate::config::PluginSettings, bundled: bool) -> bool {
        self.team.content_allowed(settings, bundled)
    }
}

/// A team's active plugin version and how it has behaved.
pub struct ActivePolicy {
    pub team: String,
    pub version: u32,
    /// `v{version}`, the label of its metrics (built once, not per request).
    pub label: String,
    /// Which activation of the version this is (re-activating starts afresh).
    activation: i64,
    pub policy: Policy,
    /// Warm instances of this version, used for this team's decisions only.
    pub pool: WarmPool,
    /// Bounds the decisions of this plugin running at once.
    pub slots: tokio::sync::Semaphore,
    consecutive: AtomicU32,
    faults: AtomicU64,
    limit: u32,
    set_aside: Mutex<Option<String>>,
    store: Arc<Store>,
}

impl std::fmt::Debug for ActivePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivePolicy")
            .field("team", &self.team)
            .field("version", &self.version)
            .field("faults", &self.faults())
            .field("set_aside", &self.set_aside())
            .finish()
    }
}

impl ActivePolicy {
    /// Why the plugin was set aside, if it was.
    pub fn set_aside(&self) -> Option<String> {
        self.set_aside
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the plugin is in service (not set aside).
    pub fn in_service(&self) -> bool {
        self.set_aside
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    /// Faults since this version was activated.
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }

    /// Faults in a row, up to now.
    pub fn consecutive_faults(&self) -> u32 {
        self.consecutive.load(Ordering::Relaxed)
    }

    /// A decision that produced a plan or a refusal: the streak is over.
    pub fn record_success(&self) {
        if self.consecutive.load(Ordering::Relaxed) != 0 {
            self.consecutive.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a fault; sets the plugin aside (and records that in the store,
    /// off the request path) when it completes a streak of `limit`. Returns
    /// the reason when this fault set it aside.
    pub fn record_fault(&self, kind: &str) -> Option<String> {
        self.faults.fetch_add(1, Ordering::Relaxed);
        let streak = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        if streak < self.limit {
            return None;
        }
        let reason = {
            let mut aside = self.set_aside.lock().unwrap_or_else(|p| p.into_inner());
            if aside.is_some() {
                return None;
            }
            let reason = format!(
                "{streak} consecutive faults (the last: {kind}); the default policy serves this team until a version is activated"
            );
            *aside = Some(reason.clone());
            reason
        };
        let (store, team, version, why) = (
            self.store.clone(),
            self.team.clone(),
            self.version,
            reason.clone(),
        );
        let persist = move || {
            if let Err(e) = store.set_aside(&team, version, &why) {
                tracing::error!(team = %team, version, error = %e, "cannot record that the plugin was set aside");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(persist);
            }
            Err(_) => persist(),
        }
        Some(reason)
    }
}

/// An immutable view of every team and key.
#[derive(Debug, Default)]
pub struct DirectorySnapshot {
    entries: HashMap<String, Arc<DirectoryEntry>>,
    /// sha256 of an API key → its team.
    api_keys: HashMap<String, Arc<DirectoryEntry>>,
    /// sha256 of a team admin token → its team's name.
    admin_keys: HashMap<String, String>,
}

impl DirectorySnapshot {
    /// The team of an API key.
    pub fn by_key(&self, key: &str) -> Option<&Arc<DirectoryEntry>> {
        self.api_keys.get(&hash_key(key))
    }

    /// The team whose admin token this is.
    pub fn admin_of(&self, token: &str) -> Option<&str> {
        self.admin_keys.get(&hash_key(token)).map(String::as_str)
    }

    /// A team by name.
    pub fn team(&self, name: &str) -> Option<&Arc<DirectoryEntry>> {
        self.entries.get(name)
    }

    /// Every team, by name.
    pub fn entries(&self) -> Vec<&Arc<DirectoryEntry>> {
        let mut all: Vec<_> = self.entries.values().collect();
        all.sort_by(|a, b| a.team.name.cmp(&b.team.name));
        all
    }
}

/// The live team directory and the store behind it.
pub struct Directory {
    config: Arc<Config>,
    /// The catalog as 0.2 policies are configured with it.
    tables: Arc<v0_2::Tables>,
    store: Arc<Store>,
    runtime: Runtime,
    current: ArcSwap<DirectorySnapshot>,
    /// Compiled components by sha256 (uploads land here before activation),
    /// with when each was last used.
    compiled: Mutex<HashMap<String, Compiled>>,
    /// Use stamps for `compiled`.
    tick: AtomicU64,
    /// Components compiled to put a version in service (not found compiled).
    compilations: AtomicU64,
    /// Serialises admin writes with the rebuild that follows each one.
    writes: tokio::sync::Mutex<()>,
    /// Uploads being compiled and tested, and those waiting to be.
    uploads: CompileGate,
}

/// A compiled component and when it was last asked for.
struct Compiled {
    policy: Policy,
    used: u64,
}

/// Admits policy uploads to compiling and testing: a few at a time, a few
/// more waiting, the rest refused (429) so nobody queues without bound.
pub struct CompileGate {
    slots: tokio::sync::Semaphore,
    waiting: AtomicU32,
    queue: u32,
}

/// The gate is full: retry later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateFull;

/// One waiting upload, counted until it gets its slot or gives up.
struct Waiting<'a>(&'a AtomicU32);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl CompileGate {
    pub fn new(slots: usize, queue: usize) -> Self {
        Self {
            slots: tokio::sync::Semaphore::new(slots),
            waiting: AtomicU32::new(0),
            queue: u32::try_from(queue).unwrap_or(u32::MAX),
        }
    }

    /// A slot, at once or after waiting in the queue; [`GateFull`] when the
    /// queue is full too.
    pub async fn enter(&self) -> Result<tokio::sync::SemaphorePermit<'_>, GateFull> {
        if let Ok(permit) = self.slots.try_acquire() {
            return Ok(permit);
        }
        let ahead = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&self.waiting);
        if ahead >= self.queue {
            return Err(GateFull);
        }
        self.slots.acquire().await.map_err(|_| GateFull)
    }
}

impl Directory {
    /// Opens the directory: records the config's teams in the store and
    /// compiles every team's active version.
    pub fn open(
        config: Arc<Config>,
        store: Arc<Store>,
        runtime: Runtime,
    ) -> Result<Directory, StoreError> {
        let names: Vec<String> = config.teams.iter().map(|t| t.name.clone()).collect();
        store.declare_config_teams(&names)?;
        let teams = Directory {
            tables: Arc::new(v0_2::Tables::from_config(&config)),
            store,
            runtime,
            current: ArcSwap::from_pointee(DirectorySnapshot::default()),
            compiled: Mutex::new(HashMap::new()),
            tick: AtomicU64::new(0),
            compilations: AtomicU64::new(0),
            writes: tokio::sync::Mutex::new(()),
            uploads: CompileGate::new(config.plugins.compile_slots, config.plugins.compile_queue),
            config,
        };
        teams.reload()?;
        Ok(teams)
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<DirectorySnapshot> {
        self.current.load_full()
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The gate uploads pass before they are compiled and tested.
    pub fn uploads(&self) -> &CompileGate {
        &self.uploads
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Taken by every admin write, held until its rebuild is swapped in.
    pub async fn write_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writes.lock().await
    }

    /// Compiles (or finds compiled) a component.
    pub fn compile(&self, bytes: &[u8]) -> Result<Policy, LoadError> {
        let sha = crate::digest::sha256_hex(bytes);
        let used = self.tick.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.lock_compiled().get_mut(&sha) {
            c.used = used;
            return Ok(c.policy.clone());
        }
        let policy = self.runtime.load(bytes)?;
        self.compilations.fetch_add(1, Ordering::Relaxed);
        self.lock_compiled().insert(
            sha,
            Compiled {
                policy: policy.clone(),
                used,
            },
        );
        Ok(policy)
    }

    /// Keeps a component compiled elsewhere (an upload just validated), so
    /// activating it needs no second compilation.
    pub fn remember(&self, policy: &Policy) {
        let used = self.tick.fetch_add(1, Ordering::Relaxed);
        self.lock_compiled().insert(
            policy.sha256().to_string(),
            Compiled {
                policy: policy.clone(),
                used,
            },
        );
    }

    /// Components compiled to put a version in service since start-up (those
    /// found compiled not counted).
    pub fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }

    fn lock_compiled(&self) -> std::sync::MutexGuard<'_, HashMap<String, Compiled>> {
        self.compiled.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rebuilds the snapshot from the config and the store and swaps it in.
    /// Blocking (SQLite, and compiling a version not compiled yet).
    pub fn reload(&self) -> Result<(), StoreError> {
        let previous = self.current.load_full();
        let records = self.store.teams()?;
        let keys = self.store.live_keys()?;
        let mut next = DirectorySnapshot::default();
        for record in records {
            let declared = self.config.teams.iter().find(|t| t.name == record.name);
            if record.from_config && declared.is_none() {
                tracing::warn!(team = %record.name, "team was declared in the config file and no longer is; its keys and policies are kept but unused");
                continue;
            }
            let (policy, policy_error) = match self
                .active_policy(&record, previous.team(&record.name))
            {
                Ok(policy) => (policy, None),
                Err(TeamPolicyError::Store(e)) => return Err(e),
                Err(TeamPolicyError::Load(version, e)) => {
                    tracing::error!(team = %record.name, version, error = %e, "the active policy version does not load; the default policy serves this team");
                    (None, Some(format!("version {version} does not load: {e}")))
                }
            };
            // The config the team's policy gets: set through the admin API,
            // else the config file's; an uploaded plugin never gets the
            // default policy's config by inheritance (it gets `{}`).
            let inherited = || {
                if record.active_version.is_some() {
                    "{}".to_string()
                } else {
                    self.config.default_policy_config.clone()
                }
            };
            let team = match declared {
                Some(t) => Team {
                    policy_config: record.policy_config.clone().unwrap_or_else(|| {
                        if t.own_policy_config {
                            t.policy_config.clone()
                        } else {
                            inherited()
                        }
                    }),
                    own_policy_config: t.own_policy_config || record.policy_config.is_some(),
                    ..t.clone()
                },
                None => Team {
                    name: record.name.clone(),
                    allowed_models: record.allowed_models.clone(),
                    allowed_providers: record.allowed_providers.clone(),
                    zdr: record.zdr,
                    policy_config: record.policy_config.clone().unwrap_or_else(inherited),
                    own_policy_config: record.policy_config.is_some(),
                    limits: crate::config::RateLimits::default(),
                    budget: None,
                    baseline_model: None,
                    content_signals: None,
                    log_prompts: false,
                },
            };
            let setup = Arc::new(v0_2::Setup::new(
                &team.name,
                &team.policy_config,
                self.tables.clone(),
            ));
            let standin = if policy.is_some() {
                Arc::new(v0_2::Setup::new(
                    &team.name,
                    &self.config.default_policy_config,
                    self.tables.clone(),
                ))
            } else {
                setup.clone()
            };
            // The shadow gets the team's own policy config, as an uploaded
            // active version would (never the default policy's).
            let shadow_config = if team.own_policy_config || record.active_version.is_some() {
                team.policy_config.as_str()
            } else {
                "{}"
            };
            let content = team.content_allowed(&self.config.plugins, false);
            let (shadow, shadow_error) = match self.shadow(
                &record,
                previous.team(&record.name),
                shadow_config,
                content,
            ) {
                Ok(shadow) => (shadow, None),
                Err(TeamPolicyError::Store(e)) => return Err(e),
                Err(TeamPolicyError::Load(version, e)) => {
                    tracing::error!(team = %record.name, version, error = %e, "the shadow policy version does not load; the team has no shadow");
                    (None, Some(format!("version {version} does not load: {e}")))
                }
            };
            let entry = Arc::new(DirectoryEntry {
                shadow,
                shadow_error,
                setup,
                standin,
                team,
                origin: if declared.is_some() {
                    Origin::Config
                } else {
                    Origin::Admin
                },
                created_at: record.created_at,
                policy,
                policy_error,
            });
            next.entries.insert(record.name.clone(), entry);
        }
        for (hash, &i) in &self.config.key_hashes {
            if let Some(entry) = self
                .config
                .teams
                .get(i)
                .and_then(|t| next.entries.get(&t.name))
            {
                next.api_keys.insert(hash.clone(), entry.clone());
            }
        }
        for key in keys {
            let Some(entry) = next.entries.get(&key.team) else {
                continue;
            };
            match key.scope {
                KeyScope::Api => {
                    next.api_keys.insert(key.key_sha256, entry.clone());
                }
                KeyScope::Admin => {
                    next.admin_keys.insert(key.key_sha256, key.team);
                }
            }
        }
        // Keep compiled the versions in service and the most recently used
        // others (recent uploads, what a rollback returns to).
        let in_use: std::collections::HashSet<String> = next
            .entries
            .values()
            .flat_map(|t| {
                let active = t.policy.as_ref().map(|p| p.policy.sha256());
                let shadow = t.shadow.as_ref().map(|s| s.policy_sha256());
                active.into_iter().chain(shadow).map(str::to_owned)
            })
            .collect();
        {
            let mut compiled = self.lock_compiled();
            let mut spare: Vec<(u64, String)> = compiled
                .iter()
                .filter(|(sha, _)| !in_use.contains(*sha))
                .map(|(sha, c)| (c.used, sha.clone()))
                .collect();
            spare.sort_unstable_by_key(|s| std::cmp::Reverse(s.0));
            for (_, sha) in spare.into_iter().skip(self.config.plugins.keep_compiled) {
                compiled.remove(&sha);
            }
        }
        self.current.store(Arc::new(next));
        Ok(())
    }

    /// The team's active plugin: the running one when nothing changed (so its
    /// fault counts carry over), else a fresh one compiled or found compiled.
    fn active_policy(
        &self,
        record: &TeamRow,
        running: Option<&Arc<DirectoryEntry>>,
    ) -> Result<Option<Arc<ActivePolicy>>, TeamPolicyError> {
        let Some(version) = record.active_version else {
            return Ok(None);
        };
        if let Some(p) = running.and_then(|t| t.policy.as_ref())
            && p.version == version
            && p.activation == record.activation
        {
            return Ok(Some(p.clone()));
        }
        let bytes = self
            .store
            .policy_component(&record.name, version)
            .map_err(TeamPolicyError::Store)?;
        let policy = self
            .compile(&bytes)
            .map_err(|e| TeamPolicyError::Load(version, e))?;
        Ok(Some(Arc::new(ActivePolicy {
            team: record.name.clone(),
            version,
            label: format!("v{version}"),
            activation: record.activation,
            pool: WarmPool::new(policy.clone(), self.config.plugins.decision_slots),
            policy,
            slots: tokio::sync::Semaphore::new(self.config.plugins.decision_slots),
            consecutive: AtomicU32::new(0),
            faults: AtomicU64::new(0),
            limit: self.config.plugins.fault_limit,
            set_aside: Mutex::new(record.set_aside.clone()),
            store: self.store.clone(),
        })))
    }
}

impl Directory {
    /// The team's shadow: the running one when its attachment and config
    /// are unchanged (so its counts carry over), else a fresh one.
    fn shadow(
        &self,
        record: &TeamRow,
        running: Option<&Arc<DirectoryEntry>>,
        config: &str,
        content: bool,
    ) -> Result<Option<Arc<Shadow>>, TeamPolicyError> {
        let Some(row) = &record.shadow else {
            return Ok(None);
        };
        let at = Attachment {
            version: row.version,
            sample: row.sample,
            attached_at: row.attached_at,
            seq: row.seq,
        };
        if let Some(s) = running.and_then(|t| t.shadow.as_ref())
            && s.is(&at, config)
        {
            return Ok(Some(s.clone()));
        }
        let bytes = self
            .store
            .policy_component(&record.name, row.version)
            .map_err(TeamPolicyError::Store)?;
        let policy = self
            .compile(&bytes)
            .map_err(|e| TeamPolicyError::Load(row.version, e))?;
        Ok(Some(Arc::new(Shadow::new(
            &record.name,
            at,
            policy,
            config,
            content,
            self.config.plugins.content_text_bytes,
        ))))
    }
}

enum TeamPolicyError {
    Store(StoreError),
    Load(u32, LoadError),
}
