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

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

mod keys;
mod policies;
mod request_log;
mod schema;
mod spend;
mod teams;

pub use keys::{KeyRecord, KeyScope, LiveKey};
pub use policies::{PolicyVersion, Upload};
pub use request_log::{LogBatch, LogOrder, LogQuery};
use schema::MIGRATIONS;
pub use spend::SpendRow;
pub use teams::{ShadowRow, TeamRow};

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
    #[error("team {0:?} has no shadow policy attached")]
    NoShadow(String),
    #[error("that key is already registered")]
    KeyExists,
    #[error("team {team:?} has no key {id}")]
    NoKey { team: String, id: i64 },
    #[error("store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// The embedded store.
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// The request log's own connection to the same file: its batches and
    /// reads never wait behind an admin write or the spend ledger (WAL lets
    /// them run beside each other).
    log_conn: Mutex<Connection>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
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
        let log_conn = Connection::open(path).map_err(open_err)?;
        // The log is written in batches off the request path; losing the
        // last batch to a power cut (not to a crash: WAL keeps it) is
        // acceptable for it, one fsync per batch less is worth it.
        log_conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        log_conn
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        Ok(Store {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            log_conn: Mutex::new(log_conn),
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

    fn log_conn(&self) -> MutexGuard<'_, Connection> {
        self.log_conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn require_team(conn: &Connection, team: &str) -> Result<(), StoreError> {
        let exists = conn
            .query_row("SELECT 1 FROM teams WHERE name = ?1", [team], |_| Ok(()))
            .optional()?;
        exists.ok_or_else(|| StoreError::NoTeam(team.to_string()))
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
