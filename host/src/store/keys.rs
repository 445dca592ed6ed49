//! The `keys` table: API keys and team admin tokens, by their sha256 only.

use rusqlite::params;

use super::{Store, StoreError, now};

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

    pub(super) fn parse(text: &str) -> KeyScope {
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

impl Store {
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
}
