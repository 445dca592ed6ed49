//! Policy versions, activations (the history rollback walks back through),
//! set-aside state and policy configs.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{ShadowRow, Store, StoreError, now};

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

impl Store {
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
        Self::require_version(&tx, team, version)?;
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

    /// Attaches `version` as the team's shadow, deciding on `sample` of its
    /// requests (replacing any shadow attached before).
    pub fn attach_shadow(
        &self,
        team: &str,
        version: u32,
        sample: f64,
    ) -> Result<ShadowRow, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        Self::require_team(&tx, team)?;
        Self::require_version(&tx, team, version)?;
        let attached_at = now();
        let seq: i64 = tx.query_row(
            "UPDATE teams SET shadow_version = ?2, shadow_sample = ?3,
             shadow_attached_at = ?4, shadow_seq = shadow_seq + 1
             WHERE name = ?1 RETURNING shadow_seq",
            params![team, version, sample, attached_at],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(ShadowRow {
            version,
            sample,
            attached_at: attached_at as u64,
            seq,
        })
    }

    /// Detaches the team's shadow; gives back the version that was attached.
    pub fn detach_shadow(&self, team: &str) -> Result<u32, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version = Self::shadow_version(&tx, team)?;
        tx.execute(
            "UPDATE teams SET shadow_version = NULL, shadow_sample = NULL,
             shadow_attached_at = NULL WHERE name = ?1",
            [team],
        )?;
        tx.commit()?;
        Ok(version)
    }

    /// Makes the team's shadow its active version (an activation, so a
    /// rollback returns to the version it replaced) and detaches it, in one
    /// transaction; gives back the version.
    pub fn promote_shadow(&self, team: &str) -> Result<u32, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version = Self::shadow_version(&tx, team)?;
        tx.execute(
            "UPDATE teams SET active_version = ?2, set_aside = NULL, shadow_version = NULL,
             shadow_sample = NULL, shadow_attached_at = NULL WHERE name = ?1",
            params![team, version],
        )?;
        tx.execute(
            "INSERT INTO activations (team, version, activated_at) VALUES (?1, ?2, ?3)",
            params![team, version, now()],
        )?;
        tx.commit()?;
        Ok(version)
    }

    fn require_version(
        tx: &rusqlite::Connection,
        team: &str,
        version: u32,
    ) -> Result<(), StoreError> {
        let known = tx
            .query_row(
                "SELECT 1 FROM policy_versions WHERE team = ?1 AND version = ?2",
                params![team, version],
                |_| Ok(()),
            )
            .optional()?;
        match known {
            Some(()) => Ok(()),
            None => Err(StoreError::NoVersion {
                team: team.to_string(),
                version,
            }),
        }
    }

    fn shadow_version(tx: &rusqlite::Connection, team: &str) -> Result<u32, StoreError> {
        Self::require_team(tx, team)?;
        let version: Option<u32> = tx.query_row(
            "SELECT shadow_version FROM teams WHERE name = ?1",
            [team],
            |r| r.get(0),
        )?;
        version.ok_or_else(|| StoreError::NoShadow(team.to_string()))
    }
}
