//! The `teams` table: teams created through the admin API or declared in
//! the config file, their allow-lists and ZDR setting.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Store, StoreError, now};

/// A team's row.
#[derive(Debug, Clone, PartialEq)]
pub struct TeamRow {
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
    /// The version attached as the team's shadow, if one is.
    pub shadow: Option<ShadowRow>,
}

/// A team's shadow policy, as attached.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowRow {
    pub version: u32,
    /// Share of the team's requests it decides on, in (0, 1].
    pub sample: f64,
    /// When it was attached (seconds since the epoch).
    pub attached_at: u64,
    /// Which attachment this is (each attach counts one more).
    pub seq: i64,
}

pub(super) const TEAM_COLUMNS: &str =
    "SELECT name, created_at, allowed_models, allowed_providers, zdr,
     active_version, origin, policy_config, set_aside,
     (SELECT COALESCE(MAX(id), 0) FROM activations WHERE activations.team = teams.name),
     shadow_version, shadow_sample, shadow_attached_at, shadow_seq
     FROM teams";

pub(super) fn team_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<TeamRow> {
    Ok(TeamRow {
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
        shadow: match r.get::<_, Option<u32>>(10)? {
            Some(version) => Some(ShadowRow {
                version,
                sample: r.get::<_, Option<f64>>(11)?.unwrap_or(1.0),
                attached_at: r.get::<_, Option<i64>>(12)?.unwrap_or(0) as u64,
                seq: r.get(13)?,
            }),
            None => None,
        },
    })
}

fn list(json: Option<String>) -> Option<Vec<String>> {
    json.and_then(|s| serde_json::from_str(&s).ok())
}

fn to_json(list: Option<&[String]>) -> Option<String> {
    list.map(|l| serde_json::Value::from(l.to_vec()).to_string())
}

impl Store {
    /// Creates a team (no keys, every model, the default policy).
    pub fn create_team(&self, name: &str) -> Result<TeamRow, StoreError> {
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
        Ok(TeamRow {
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
            shadow: None,
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
    pub fn teams(&self) -> Result<Vec<TeamRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{TEAM_COLUMNS} ORDER BY name"))?;
        let rows = stmt.query_map([], team_record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One team.
    pub fn team(&self, name: &str) -> Result<TeamRow, StoreError> {
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
}
