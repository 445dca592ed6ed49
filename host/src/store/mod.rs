//! The embedded store: one SQLite file holding teams, their hashed API keys,
//! uploaded policy plugin versions, each team's active version (with the
//! activation history rollback walks back through) and each team's policy
//! config. Created on first open; the schema is versioned with SQLite's
//! `user_version` and migrated forward in a transaction. Every write is one
//! transaction, so a crash mid-upload leaves the previous state in place.
//!
//! The API is synchronous (SQLite is); async callers run it on
//! `tokio::task::spawn_blocking`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

/// Schema migrations, in order: migration `i` brings `user_version` from `i`
/// to `i + 1`. Append only; never edit a released one.
const MIGRATIONS: &[&str] = &[
    // 1: teams, keys, plugin versions, activations.
    "CREATE TABLE teams (
        name TEXT PRIMARY KEY NOT NULL,
        created_at INTEGER NOT NULL,
        allowed_models TEXT,      -- JSON array, NULL = every model
        allowed_providers TEXT,   -- JSON array, NULL = every account
        zdr INTEGER NOT NULL DEFAULT 0,
        policy_config TEXT,       -- JSON document given to the team's plugin
        active_version INTEGER    -- NULL = the bundled default policy
    );
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        team TEXT NOT NULL REFERENCES teams(name),
        key_sha256 TEXT NOT NULL UNIQUE,
        label TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE TABLE policy_versions (
        team TEXT NOT NULL REFERENCES teams(name),
        version INTEGER NOT NULL,
        component BLOB NOT NULL,
        sha256 TEXT NOT NULL,
        wit_version TEXT NOT NULL,
        uploader TEXT NOT NULL,
        notes TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        PRIMARY KEY (team, version)
    );
    CREATE TABLE activations (
        id INTEGER PRIMARY KEY,
        team TEXT NOT NULL REFERENCES teams(name),
        version INTEGER NOT NULL,
        activated_at INTEGER NOT NULL,
        FOREIGN KEY (team, version) REFERENCES policy_versions(team, version)
    );",
    // 2: key scopes (team admin tokens), teams declared by the config file,
    // and why a team's active plugin was set aside after repeated faults.
    "ALTER TABLE api_keys ADD COLUMN scope TEXT NOT NULL DEFAULT 'api';
    ALTER TABLE teams ADD COLUMN origin TEXT NOT NULL DEFAULT 'admin';
    ALTER TABLE teams ADD COLUMN set_aside TEXT;",
    // 3: the spend ledger: what served requests cost and would have cost on
    // the team's baseline model, per UTC day, team, provider account, model
    // and policy label (no foreign key: config teams and spend outlive edits).
    "CREATE TABLE spend (
        day TEXT NOT NULL,            -- YYYY-MM-DD, UTC
        team TEXT NOT NULL,
        account TEXT NOT NULL,
        model TEXT NOT NULL,
        label TEXT NOT NULL,
        requests INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        baseline_usd REAL NOT NULL,
        PRIMARY KEY (day, team, account, model, label)
    );
    CREATE INDEX spend_by_team ON spend (team, day);
    CREATE INDEX spend_by_account ON spend (account, day);",
];

/// One ledger row (or the sum of several, for the same key).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpendRow {
    pub day: String,
    pub team: String,
    pub account: String,
    pub model: String,
    pub label: String,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cost_usd: f64,
    pub baseline_usd: f64,
}

impl SpendRow {
    /// Adds another row's counts and dollars to this one.
    pub fn add(&mut self, other: &SpendRow) {
        self.requests += other.requests;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cached_tokens += other.cached_tokens;
        self.cost_usd += other.cost_usd;
        self.baseline_usd += other.baseline_usd;
    }
}

/// A store failure, naming what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot create the store at {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the store at {path} has schema version {found}, newer than this build knows ({known}); upgrade Switchyard"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: usize,
    },
    #[error("team {0:?} does not exist")]
    NoTeam(String),
    #[error("team {0:?} already exists")]
    TeamExists(String),
    #[error("team {team:?} has no policy version {version}")]
    NoVersion { team: String, version: u32 },
    #[error("team {0:?} has no earlier policy version to roll back to")]
    NothingToRollBack(String),
    #[error("that key is already registered")]
    KeyExists,
    #[error("team {team:?} has no key {id}")]
    NoKey { team: String, id: i64 },
    #[error("store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// A team's row.
#[derive(Debug, Clone, PartialEq)]
pub struct TeamRecord {
    pub name: String,
    pub created_at: u64,
    pub allowed_models: Option<Vec<String>>,
    pub allowed_providers: Option<Vec<String>>,
    pub zdr: bool,
    /// The active policy version; `None` means the bundled default policy.
    pub active_version: Option<u32>,
    /// Declared in the config file (which then owns its allow-lists and ZDR)
    /// rather than created through the admin API.
    pub from_config: bool,
    /// The team's policy config JSON, when one was set through the store.
    pub policy_config: Option<String>,
    /// Why the active version was set aside (the default policy serves
    /// until a version is activated again); `None` while it is in service.
    pub set_aside: Option<String>,
    /// Id of the team's latest activation (0: never activated); it changes
    /// with every activation and rollback, even of the same version.
    pub activation: i64,
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScope {
    /// Calls the model APIs (`/v1/...`) as the team.
    Api,
    /// Manages the team's own policies on the admin API (a team admin token).
    Admin,
}

impl KeyScope {
    /// `api` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::Api => "api",
            KeyScope::Admin => "admin",
        }
    }

    fn parse(text: &str) -> KeyScope {
        if text == "admin" {
            KeyScope::Admin
        } else {
            KeyScope::Api
        }
    }
}

/// An API key's row (the key itself is never stored, only its sha256).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub id: i64,
    pub team: String,
    pub label: String,
    pub scope: KeyScope,
    pub created_at: u64,
    pub revoked: bool,
}

/// An unrevoked key, as the gateway's key table holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveKey {
    pub key_sha256: String,
    pub team: String,
    pub scope: KeyScope,
}

/// An uploaded policy version, without its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyVersion {
    pub version: u32,
    pub sha256: String,
    pub wit_version: String,
    pub uploader: String,
    pub notes: String,
    pub created_at: u64,
}

/// What an upload records besides the component bytes.
#[derive(Debug, Clone)]
pub struct Upload<'a> {
    pub component: &'a [u8],
    pub sha256: &'a str,
    pub wit_version: &'a str,
    pub uploader: &'a str,
    pub notes: &'a str,
}

/// The embedded store.
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

const TEAM_COLUMNS: &str = "SELECT name, created_at, allowed_models, allowed_providers, zdr,
     active_version, origin, policy_config, set_aside,
     (SELECT COALESCE(MAX(id), 0) FROM activations WHERE activations.team = teams.name)
     FROM teams";

fn team_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<TeamRecord> {
    Ok(TeamRecord {
        name: r.get(0)?,
        created_at: r.get::<_, i64>(1)? as u64,
        allowed_models: list(r.get(2)?),
        allowed_providers: list(r.get(3)?),
        zdr: r.get(4)?,
        active_version: r.get(5)?,
        from_config: r.get::<_, String>(6)? == "config",
        policy_config: r.get(7)?,
        set_aside: r.get(8)?,
        activation: r.get(9)?,
    })
}

fn list(json: Option<String>) -> Option<Vec<String>> {
    json.and_then(|s| serde_json::from_str(&s).ok())
}

fn to_json(list: Option<&[String]>) -> Option<String> {
    list.map(|l| serde_json::Value::from(l.to_vec()).to_string())
}

/// Creates the store's file readable and writable by its owner only (mode
/// 0600): it holds key hashes, policies and spend. SQLite gives its `-wal`
/// and `-shm` files the same mode. An existing file keeps its mode; a
/// warning says when others can read it.
fn create_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let mode = std::fs::metadata(path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the store file is readable by other users; `chmod 600` it");
                }
            }
            Err(e) => return Err(e),
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the store at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        create_private(path).map_err(|source| StoreError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        let found: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(open_err)?;
        if found > MIGRATIONS.len() as i64 {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found,
                known: MIGRATIONS.len(),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Exclusive)
                .map_err(open_err)?;
            tx.execute_batch(sql).map_err(open_err)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)
                .map_err(open_err)?;
            tx.commit().map_err(open_err)?;
        }
        Ok(Store {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version this build migrates to.
    pub fn schema_version() -> usize {
        MIGRATIONS.len()
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written
        // (every write is a transaction), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn require_team(conn: &Connection, team: &str) -> Result<(), StoreError> {
        let exists = conn
            .query_row("SELECT 1 FROM teams WHERE name = ?1", [team], |_| Ok(()))
            .optional()?;
        exists.ok_or_else(|| StoreError::NoTeam(team.to_string()))
    }

    /// Creates a team (no keys, every model, the default policy).
    pub fn create_team(&self, name: &str) -> Result<TeamRecord, StoreError> {
        let conn = self.conn();
        let created = now();
        match conn.execute(
            "INSERT INTO teams (name, created_at) VALUES (?1, ?2)",
            params![name, created],
        ) {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(StoreError::TeamExists(name.to_string()));
            }
            Err(e) => return Err(e.into()),
        }
        Ok(TeamRecord {
            name: name.to_string(),
            created_at: created as u64,
            allowed_models: None,
            allowed_providers: None,
            zdr: false,
            active_version: None,
            from_config: false,
            policy_config: None,
            set_aside: None,
            activation: 0,
        })
    }

    /// Makes sure every team the config file declares has a row (so it can
    /// hold keys and policy versions), marked as the config's.
    pub fn declare_config_teams(&self, names: &[String]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let created = now();
        for name in names {
            tx.execute(
                "INSERT INTO teams (name, created_at, origin) VALUES (?1, ?2, 'config')
                 ON CONFLICT(name) DO UPDATE SET origin = 'config'",
                params![name, created],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every team, by name.
    pub fn teams(&self) -> Result<Vec<TeamRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{TEAM_COLUMNS} ORDER BY name"))?;
        let rows = stmt.query_map([], team_record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One team.
    pub fn team(&self, name: &str) -> Result<TeamRecord, StoreError> {
        self.conn()
            .query_row(
                &format!("{TEAM_COLUMNS} WHERE name = ?1"),
                [name],
                team_record,
            )
            .optional()?
            .ok_or_else(|| StoreError::NoTeam(name.to_string()))
    }

    /// Sets a team's allow-lists (`None`: everything) and ZDR flag.
    pub fn set_team_access(
        &self,
        team: &str,
        allowed_models: Option<&[String]>,
        allowed_providers: Option<&[String]>,
        zdr: bool,
    ) -> Result<(), StoreError> {
        let n = self.conn().execute(
            "UPDATE teams SET allowed_models = ?2, allowed_providers = ?3, zdr = ?4 WHERE name = ?1",
            params![team, to_json(allowed_models), to_json(allowed_providers), zdr],
        )?;
        if n == 0 {
            return Err(StoreError::NoTeam(team.to_string()));
        }
        Ok(())
    }

    /// Registers a key (by its sha256) for a team; returns its id.
    pub fn add_key(
        &self,
        team: &str,
        key_sha256: &str,
        label: &str,
        scope: KeyScope,
    ) -> Result<i64, StoreError> {
        let conn = self.conn();
        Self::require_team(&conn, team)?;
        match conn.execute(
            "INSERT INTO api_keys (team, key_sha256, label, created_at, scope)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![team, key_sha256, label, now(), scope.as_str()],
        ) {
            Ok(_) => Ok(conn.last_insert_rowid()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::KeyExists)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Revokes one of a team's keys (it stays listed, marked revoked).
    pub fn revoke_key(&self, team: &str, id: i64) -> Result<(), StoreError> {
        let n = self.conn().execute(
            "UPDATE api_keys SET revoked_at = ?3 WHERE team = ?1 AND id = ?2 AND revoked_at IS NULL",
            params![team, id, now()],
        )?;
        if n == 0 {
            return Err(StoreError::NoKey {
                team: team.to_string(),
                id,
            });
        }
        Ok(())
    }

    /// A team's keys, oldest first.
    pub fn keys(&self, team: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let conn = self.conn();
        Self::require_team(&conn, team)?;
        let mut stmt = conn.prepare(
            "SELECT id, team, label, created_at, revoked_at IS NOT NULL, scope FROM api_keys
             WHERE team = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([team], |r| {
            Ok(KeyRecord {
                id: r.get(0)?,
                team: r.get(1)?,
                label: r.get(2)?,
                created_at: r.get::<_, i64>(3)? as u64,
                revoked: r.get(4)?,
                scope: KeyScope::parse(&r.get::<_, String>(5)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every unrevoked key.
    pub fn live_keys(&self) -> Result<Vec<LiveKey>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT key_sha256, team, scope FROM api_keys WHERE revoked_at IS NULL")?;
        let rows = stmt.query_map([], |r| {
            Ok(LiveKey {
                key_sha256: r.get(0)?,
                team: r.get(1)?,
                scope: KeyScope::parse(&r.get::<_, String>(2)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stores an uploaded policy version (not yet active); returns its
    /// version number (1, 2, ... per team).
    pub fn add_policy_version(&self, team: &str, upload: &Upload<'_>) -> Result<u32, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        Self::require_team(&tx, team)?;
        let version: u32 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM policy_versions WHERE team = ?1",
            [team],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO policy_versions
             (team, version, component, sha256, wit_version, uploader, notes, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                team,
                version,
                upload.component,
                upload.sha256,
                upload.wit_version,
                upload.uploader,
                upload.notes,
                now()
            ],
        )?;
        tx.commit()?;
        Ok(version)
    }

    /// A team's policy versions, oldest first.
    pub fn policy_versions(&self, team: &str) -> Result<Vec<PolicyVersion>, StoreError> {
        let conn = self.conn();
        Self::require_team(&conn, team)?;
        let mut stmt = conn.prepare(
            "SELECT version, sha256, wit_version, uploader, notes, created_at
             FROM policy_versions WHERE team = ?1 ORDER BY version",
        )?;
        let rows = stmt.query_map([team], |r| {
            Ok(PolicyVersion {
                version: r.get(0)?,
                sha256: r.get(1)?,
                wit_version: r.get(2)?,
                uploader: r.get(3)?,
                notes: r.get(4)?,
                created_at: r.get::<_, i64>(5)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The component bytes of one version.
    pub fn policy_component(&self, team: &str, version: u32) -> Result<Vec<u8>, StoreError> {
        self.conn()
            .query_row(
                "SELECT component FROM policy_versions WHERE team = ?1 AND version = ?2",
                params![team, version],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::NoVersion {
                team: team.to_string(),
                version,
            })
    }

    /// Makes `version` the team's active policy and records the activation.
    pub fn activate(&self, team: &str, version: u32) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        Self::require_team(&tx, team)?;
        let known = tx
            .query_row(
                "SELECT 1 FROM policy_versions WHERE team = ?1 AND version = ?2",
                params![team, version],
                |_| Ok(()),
            )
            .optional()?;
        if known.is_none() {
            return Err(StoreError::NoVersion {
                team: team.to_string(),
                version,
            });
        }
        tx.execute(
            "UPDATE teams SET active_version = ?2, set_aside = NULL WHERE name = ?1",
            params![team, version],
        )?;
        tx.execute(
            "INSERT INTO activations (team, version, activated_at) VALUES (?1, ?2, ?3)",
            params![team, version, now()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Re-activates the version that was active before the current one
    /// (walking back through the activation history); returns it.
    pub fn rollback(&self, team: &str) -> Result<u32, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        Self::require_team(&tx, team)?;
        let current: Option<u32> = tx.query_row(
            "SELECT active_version FROM teams WHERE name = ?1",
            [team],
            |r| r.get(0),
        )?;
        // The newest activation of a version other than the current one.
        let previous: Option<u32> = tx
            .query_row(
                "SELECT version FROM activations WHERE team = ?1 AND version IS NOT ?2
                 ORDER BY id DESC LIMIT 1",
                params![team, current],
                |r| r.get(0),
            )
            .optional()?;
        let Some(previous) = previous else {
            return Err(StoreError::NothingToRollBack(team.to_string()));
        };
        tx.execute(
            "UPDATE teams SET active_version = ?2, set_aside = NULL WHERE name = ?1",
            params![team, previous],
        )?;
        // Forget the rolled-back activation, so a second rollback goes
        // further back instead of bouncing between two versions.
        tx.execute(
            "DELETE FROM activations WHERE team = ?1 AND version IS ?2",
            params![team, current],
        )?;
        tx.execute(
            "INSERT INTO activations (team, version, activated_at) VALUES (?1, ?2, ?3)",
            params![team, previous, now()],
        )?;
        tx.commit()?;
        Ok(previous)
    }

    /// Records that the team's active `version` was set aside, and why; a
    /// no-op if another version was activated meanwhile.
    pub fn set_aside(&self, team: &str, version: u32, reason: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE teams SET set_aside = ?3 WHERE name = ?1 AND active_version = ?2",
            params![team, version, reason],
        )?;
        Ok(())
    }

    /// Sets the team's policy config (a JSON document).
    pub fn set_policy_config(&self, team: &str, json: &str) -> Result<(), StoreError> {
        let n = self.conn().execute(
            "UPDATE teams SET policy_config = ?2 WHERE name = ?1",
            params![team, json],
        )?;
        if n == 0 {
            return Err(StoreError::NoTeam(team.to_string()));
        }
        Ok(())
    }

    /// Adds rows to the spend ledger, in one transaction.
    pub fn record_spend(&self, rows: &[SpendRow]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO spend (day, team, account, model, label, requests, input_tokens,
                    output_tokens, cached_tokens, cost_usd, baseline_usd)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (day, team, account, model, label) DO UPDATE SET
                    requests = requests + excluded.requests,
                    input_tokens = input_tokens + excluded.input_tokens,
                    output_tokens = output_tokens + excluded.output_tokens,
                    cached_tokens = cached_tokens + excluded.cached_tokens,
                    cost_usd = cost_usd + excluded.cost_usd,
                    baseline_usd = baseline_usd + excluded.baseline_usd",
            )?;
            for r in rows {
                let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
                insert.execute(params![
                    r.day,
                    r.team,
                    r.account,
                    r.model,
                    r.label,
                    n(r.requests),
                    n(r.input_tokens),
                    n(r.output_tokens),
                    n(r.cached_tokens),
                    r.cost_usd,
                    r.baseline_usd
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Dollars spent by an `account` or a `team` (`scope`) on days `from` to
    /// `to` (inclusive, `YYYY-MM-DD`).
    pub fn spend_total(
        &self,
        scope: &str,
        name: &str,
        from: &str,
        to: &str,
    ) -> Result<f64, StoreError> {
        let column = if scope == "team" { "team" } else { "account" };
        let sql = format!(
            "SELECT COALESCE(SUM(cost_usd), 0.0) FROM spend WHERE {column} = ?1 AND day >= ?2 AND day <= ?3"
        );
        Ok(self
            .conn()
            .query_row(&sql, params![name, from, to], |r| r.get(0))?)
    }

    /// Ledger rows of days `from` to `to` (inclusive), of one team or all,
    /// summed over the days.
    pub fn spend_rows(
        &self,
        team: Option<&str>,
        from: &str,
        to: &str,
    ) -> Result<Vec<SpendRow>, StoreError> {
        let conn = self.conn();
        let mut query = conn.prepare_cached(
            "SELECT team, account, model, label, SUM(requests), SUM(input_tokens),
                SUM(output_tokens), SUM(cached_tokens), SUM(cost_usd), SUM(baseline_usd)
             FROM spend WHERE (?1 IS NULL OR team = ?1) AND day >= ?2 AND day <= ?3
             GROUP BY team, account, model, label ORDER BY team, account, model, label",
        )?;
        let rows = query.query_map(params![team, from, to], |r| {
            let n = |i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
            Ok(SpendRow {
                day: String::new(),
                team: r.get(0)?,
                account: r.get(1)?,
                model: r.get(2)?,
                label: r.get(3)?,
                requests: n(4)?,
                input_tokens: n(5)?,
                output_tokens: n(6)?,
                cached_tokens: n(7)?,
                cost_usd: r.get(8)?,
                baseline_usd: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The team's policy config, if set.
    pub fn policy_config(&self, team: &str) -> Result<Option<String>, StoreError> {
        self.conn()
            .query_row(
                "SELECT policy_config FROM teams WHERE name = ?1",
                [team],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::NoTeam(team.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-store-{name}-{}-{:x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.join("switchyard.db")
    }

    fn upload(bytes: &[u8]) -> Upload<'_> {
        Upload {
            component: bytes,
            sha256: "abc",
            wit_version: "0.1.0",
            uploader: "admin",
            notes: "first",
        }
    }

    #[test]
    fn everything_survives_a_reopen() {
        let path = temp_path("reopen");
        {
            let store = Store::open(&path).expect("create");
            store.create_team("alpha").expect("team");
            let id = store
                .add_key("alpha", "sha-of-key", "ci", KeyScope::Api)
                .expect("key");
            assert!(id > 0);
            store
                .set_team_access("alpha", Some(&["gpt-4o".to_string()]), None, true)
                .expect("access");
            let v = store
                .add_policy_version("alpha", &upload(b"\0asm v1"))
                .expect("upload");
            assert_eq!(v, 1);
            store.activate("alpha", 1).expect("activate");
            store
                .set_policy_config("alpha", r#"{"rules": []}"#)
                .expect("config");
        }
        let store = Store::open(&path).expect("reopen");
        let team = store.team("alpha").expect("team");
        assert_eq!(team.active_version, Some(1));
        assert_eq!(team.allowed_models, Some(vec!["gpt-4o".to_string()]));
        assert_eq!(team.allowed_providers, None);
        assert!(team.zdr);
        assert_eq!(
            store.live_keys().expect("keys"),
            vec![LiveKey {
                key_sha256: "sha-of-key".into(),
                team: "alpha".into(),
                scope: KeyScope::Api
            }]
        );
        assert_eq!(
            store.policy_component("alpha", 1).expect("bytes"),
            b"\0asm v1"
        );
        assert_eq!(
            store.policy_config("alpha").expect("config").as_deref(),
            Some(r#"{"rules": []}"#)
        );
        let versions = store.policy_versions("alpha").expect("versions");
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0].notes, "first");
    }

    #[test]
    fn keys_revoke_and_never_repeat() {
        let store = Store::open(&temp_path("keys")).expect("open");
        store.create_team("a").expect("a");
        store.create_team("b").expect("b");
        assert!(matches!(
            store.create_team("a"),
            Err(StoreError::TeamExists(_))
        ));
        let id = store.add_key("a", "k1", "", KeyScope::Api).expect("key");
        assert!(matches!(
            store.add_key("b", "k1", "", KeyScope::Admin),
            Err(StoreError::KeyExists)
        ));
        assert!(matches!(
            store.add_key("nobody", "k2", "", KeyScope::Api),
            Err(StoreError::NoTeam(_))
        ));
        // Team b cannot revoke team a's key.
        assert!(matches!(
            store.revoke_key("b", id),
            Err(StoreError::NoKey { .. })
        ));
        store.revoke_key("a", id).expect("revoke");
        assert!(store.live_keys().expect("keys").is_empty());
        assert!(store.keys("a").expect("keys")[0].revoked);
    }

    #[test]
    fn rollback_walks_back_through_activations() {
        let store = Store::open(&temp_path("rollback")).expect("open");
        store.create_team("t").expect("team");
        for _ in 0..3 {
            store
                .add_policy_version("t", &upload(b"wasm"))
                .expect("upload");
        }
        assert!(matches!(
            store.rollback("t"),
            Err(StoreError::NothingToRollBack(_))
        ));
        assert!(matches!(
            store.activate("t", 9),
            Err(StoreError::NoVersion { .. })
        ));
        store.activate("t", 1).expect("1");
        store.activate("t", 3).expect("3");
        store.activate("t", 2).expect("2");
        assert_eq!(store.rollback("t").expect("back"), 3);
        assert_eq!(store.rollback("t").expect("back"), 1);
        assert_eq!(store.team("t").expect("team").active_version, Some(1));
        assert!(matches!(
            store.rollback("t"),
            Err(StoreError::NothingToRollBack(_))
        ));
    }

    #[test]
    fn a_newer_schema_is_refused_not_clobbered() {
        let path = temp_path("newer");
        Store::open(&path).expect("create");
        let conn = Connection::open(&path).expect("raw");
        conn.pragma_update(None, "user_version", 99).expect("bump");
        drop(conn);
        match Store::open(&path) {
            Err(StoreError::TooNew { found: 99, .. }) => {}
            other => panic!("expected TooNew, got {:?}", other.err()),
        }
    }

    #[test]
    fn failed_writes_change_nothing() {
        let path = temp_path("atomic");
        let store = Store::open(&path).expect("open");
        store.create_team("t").expect("team");
        store.add_policy_version("t", &upload(b"v1")).expect("v1");
        store.activate("t", 1).expect("activate");
        assert!(matches!(
            store.add_policy_version("nobody", &upload(b"v2")),
            Err(StoreError::NoTeam(_))
        ));
        assert!(matches!(
            store.activate("t", 2),
            Err(StoreError::NoVersion { .. })
        ));
        assert!(matches!(
            store.set_policy_config("nobody", "{}"),
            Err(StoreError::NoTeam(_))
        ));
        let reopened = Store::open(&path).expect("reopen");
        assert_eq!(reopened.policy_versions("t").expect("versions").len(), 1);
        assert_eq!(reopened.team("t").expect("team").active_version, Some(1));
        assert!(matches!(
            reopened.team("nobody"),
            Err(StoreError::NoTeam(_))
        ));
        // The failed activation left no history behind: nothing to roll back to.
        assert!(matches!(
            reopened.rollback("t"),
            Err(StoreError::NothingToRollBack(_))
        ));
    }

    #[test]
    fn a_first_schema_store_is_migrated_in_place() {
        let path = temp_path("migrate");
        {
            let conn = Connection::open(&path).expect("raw");
            conn.execute_batch(MIGRATIONS[0]).expect("schema 1");
            conn.pragma_update(None, "user_version", 1)
                .expect("version");
            conn.execute("INSERT INTO teams (name, created_at) VALUES ('old', 1)", [])
                .expect("team");
            conn.execute(
                "INSERT INTO api_keys (team, key_sha256, created_at) VALUES ('old', 'h', 1)",
                [],
            )
            .expect("key");
        }
        let store = Store::open(&path).expect("migrate");
        let team = store.team("old").expect("team kept");
        assert!(!team.from_config);
        assert_eq!(team.set_aside, None);
        assert_eq!(store.live_keys().expect("keys")[0].scope, KeyScope::Api);
    }

    #[test]
    fn set_aside_lasts_until_the_next_activation() {
        let store = Store::open(&temp_path("aside")).expect("open");
        store
            .declare_config_teams(&["cfg".to_string()])
            .expect("declare");
        assert!(store.team("cfg").expect("team").from_config);
        store.add_policy_version("cfg", &upload(b"v1")).expect("v1");
        store.add_policy_version("cfg", &upload(b"v2")).expect("v2");
        store.activate("cfg", 1).expect("activate");
        // A set-aside for a version that is no longer active changes nothing.
        store.set_aside("cfg", 2, "stale").expect("stale");
        assert_eq!(store.team("cfg").expect("team").set_aside, None);
        store.set_aside("cfg", 1, "5 faults").expect("aside");
        assert_eq!(
            store.team("cfg").expect("team").set_aside.as_deref(),
            Some("5 faults")
        );
        store.activate("cfg", 1).expect("re-activate");
        assert_eq!(store.team("cfg").expect("team").set_aside, None);
        // Declaring again keeps everything.
        store
            .declare_config_teams(&["cfg".to_string()])
            .expect("again");
        assert_eq!(store.team("cfg").expect("team").active_version, Some(1));
    }
}
