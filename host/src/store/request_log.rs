//! The `request_log` table: one row per request, its record as JSON beside
//! the columns the admin API filters on (`docs/request-log.md`).

use rusqlite::params_from_iter;
use rusqlite::types::Value as Sql;

use super::{Store, StoreError};

/// One record, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    pub id: String,
    pub time_ms: u64,
    pub team: String,
    pub api: String,
    pub model: String,
    pub provider: Option<String>,
    pub served_model: Option<String>,
    pub status: u16,
    pub label: Option<String>,
    /// The whole record, JSON.
    pub record: String,
}

/// Which end a page starts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogOrder {
    /// Newest first (the admin API's default).
    #[default]
    Newest,
    /// Oldest first (an export).
    Oldest,
}

/// Filters and paging of a log read; every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub team: Option<String>,
    /// Arrival at or after, Unix milliseconds.
    pub since_ms: Option<u64>,
    /// Arrival before, Unix milliseconds.
    pub until_ms: Option<u64>,
    /// The model asked for or the model that served.
    pub model: Option<String>,
    pub provider: Option<String>,
    pub status: Option<u16>,
    pub label: Option<String>,
    pub id: Option<String>,
    /// Paging cursor: rows past this one in `order`.
    pub cursor: Option<i64>,
    pub order: LogOrder,
    pub limit: usize,
}

fn int(v: u64) -> Sql {
    Sql::Integer(i64::try_from(v).unwrap_or(i64::MAX))
}

impl Store {
    /// Appends records, in one transaction. Gives back the bytes of JSON
    /// written.
    pub fn insert_log(&self, rows: &[LogRow]) -> Result<u64, StoreError> {
        let mut conn = self.log_conn();
        let tx = conn.transaction()?;
        let mut bytes = 0u64;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO request_log (id, time_ms, team, api, model, provider, served_model,
                    status, label, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for r in rows {
                insert.execute(rusqlite::params![
                    r.id,
                    i64::try_from(r.time_ms).unwrap_or(i64::MAX),
                    r.team,
                    r.api,
                    r.model,
                    r.provider,
                    r.served_model,
                    r.status,
                    r.label,
                    r.record,
                ])?;
                bytes += r.record.len() as u64;
            }
        }
        tx.commit()?;
        Ok(bytes)
    }

    /// Records matching `q`, each with its cursor (`seq`), in `q.order`.
    pub fn query_log(&self, q: &LogQuery) -> Result<Vec<(i64, String)>, StoreError> {
        let mut sql = String::from("SELECT seq, record FROM request_log WHERE 1 = 1");
        let mut args: Vec<Sql> = Vec::new();
        let mut filter = |clause: &str, value: Sql| {
            args.push(value);
            sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(team) = &q.team {
            filter(" AND team = ?", Sql::Text(team.clone()));
        }
        if let Some(since) = q.since_ms {
            filter(" AND time_ms >= ?", int(since));
        }
        if let Some(until) = q.until_ms {
            filter(" AND time_ms < ?", int(until));
        }
        if let Some(model) = &q.model {
            filter(
                " AND (model = ? OR served_model = ?)",
                Sql::Text(model.clone()),
            );
        }
        if let Some(provider) = &q.provider {
            filter(" AND provider = ?", Sql::Text(provider.clone()));
        }
        if let Some(status) = q.status {
            filter(" AND status = ?", Sql::Integer(i64::from(status)));
        }
        if let Some(label) = &q.label {
            filter(" AND label = ?", Sql::Text(label.clone()));
        }
        if let Some(id) = &q.id {
            filter(" AND id = ?", Sql::Text(id.clone()));
        }
        let (compare, direction) = match q.order {
            LogOrder::Newest => ("<", "DESC"),
            LogOrder::Oldest => (">", "ASC"),
        };
        if let Some(cursor) = q.cursor {
            filter(&format!(" AND seq {compare} ?"), Sql::Integer(cursor));
        }
        sql.push_str(&format!(" ORDER BY seq {direction} LIMIT {}", q.limit));
        let conn = self.log_conn();
        let mut query = conn.prepare(&sql)?;
        let rows = query.query_map(params_from_iter(args), |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Bytes of record JSON the log holds.
    pub fn log_bytes(&self) -> Result<u64, StoreError> {
        let total: i64 = self.log_conn().query_row(
            "SELECT COALESCE(SUM(LENGTH(record)), 0) FROM request_log",
            [],
            |r| r.get(0),
        )?;
        Ok(total.max(0) as u64)
    }

    /// Deletes records that arrived before `before_ms`, then the oldest
    /// ones while the log holds more than `max_bytes` of records (`bytes`:
    /// what it holds now, as the caller counts). Gives back the records and
    /// bytes deleted.
    pub fn prune_log(
        &self,
        before_ms: u64,
        bytes: u64,
        max_bytes: u64,
    ) -> Result<(u64, u64), StoreError> {
        const BATCH: i64 = 2_000;
        let conn = self.log_conn();
        let (mut records, mut freed) = (0u64, 0u64);
        // In batches, so a large backlog never holds the table for long.
        loop {
            let mut delete = conn.prepare_cached(
                // Records are in arrival order by `seq` (to the writer's
                // batch): the oldest ones, up to the first young enough.
                "DELETE FROM request_log WHERE seq IN
                    (SELECT seq FROM request_log ORDER BY seq LIMIT ?2)
                    AND time_ms < ?1
                 RETURNING LENGTH(record)",
            )?;
            let lengths = delete
                .query_map(
                    rusqlite::params![i64::try_from(before_ms).unwrap_or(i64::MAX), BATCH],
                    |r| r.get::<_, i64>(0),
                )?
                .collect::<Result<Vec<_>, _>>()?;
            let n = lengths.len() as u64;
            let len: u64 = lengths.iter().map(|l| (*l).max(0) as u64).sum();
            records += n;
            freed += len;
            if n < BATCH as u64 {
                break;
            }
        }
        let bytes = bytes.saturating_sub(freed);
        if bytes > max_bytes {
            // The oldest records whose JSON adds up to the excess: read in
            // order until enough is found, then deleted up to the last one.
            let excess = bytes - max_bytes;
            let (mut cutoff, mut found, mut count) = (None, 0u64, 0u64);
            {
                let mut oldest = conn
                    .prepare_cached("SELECT seq, LENGTH(record) FROM request_log ORDER BY seq")?;
                let mut rows = oldest.query([])?;
                while let Some(row) = rows.next()? {
                    cutoff = Some(row.get::<_, i64>(0)?);
                    found += row.get::<_, i64>(1)?.max(0) as u64;
                    count += 1;
                    if found >= excess {
                        break;
                    }
                }
            }
            if let Some(cutoff) = cutoff {
                conn.prepare_cached("DELETE FROM request_log WHERE seq <= ?1")?
                    .execute([cutoff])?;
                records += count;
                freed += found;
            }
        }
        Ok((records, freed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: u64, team: &str) -> LogRow {
        LogRow {
            id: format!("r{i}"),
            time_ms: 1_000 * i,
            team: team.into(),
            api: "chat".into(),
            model: "auto".into(),
            provider: Some("openai".into()),
            served_model: Some("gpt-4o-mini".into()),
            status: if i.is_multiple_of(2) { 200 } else { 502 },
            label: Some("cost".into()),
            record: format!("{{\"id\":\"r{i}\",\"pad\":\"{}\"}}", "x".repeat(100)),
        }
    }

    fn store() -> Store {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-log-{}-{:x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Store::open(&dir.join("switchyard.db")).expect("store")
    }

    fn ids(rows: &[(i64, String)]) -> Vec<String> {
        rows.iter()
            .map(|(_, r)| {
                serde_json::from_str::<serde_json::Value>(r).expect("json")["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn filters_and_pages_in_both_orders() {
        let store = store();
        let rows: Vec<LogRow> = (1..=10)
            .map(|i| row(i, if i <= 6 { "alpha" } else { "beta" }))
            .collect();
        store.insert_log(&rows).expect("insert");
        let q = LogQuery {
            team: Some("alpha".into()),
            limit: 4,
            ..LogQuery::default()
        };
        let page = store.query_log(&q).expect("page 1");
        assert_eq!(ids(&page), ["r6", "r5", "r4", "r3"]);
        let next = LogQuery {
            cursor: page.last().map(|(seq, _)| *seq),
            ..q.clone()
        };
        assert_eq!(ids(&store.query_log(&next).expect("page 2")), ["r2", "r1"]);
        let oldest = LogQuery {
            order: LogOrder::Oldest,
            since_ms: Some(3_000),
            until_ms: Some(9_000),
            status: Some(200),
            limit: 10,
            ..LogQuery::default()
        };
        assert_eq!(
            ids(&store.query_log(&oldest).expect("asc")),
            ["r4", "r6", "r8"]
        );
        let by_id = LogQuery {
            id: Some("r7".into()),
            limit: 10,
            ..LogQuery::default()
        };
        assert_eq!(ids(&store.query_log(&by_id).expect("id")), ["r7"]);
    }

    #[test]
    fn prunes_by_age_then_by_size_oldest_first() {
        let store = store();
        let rows: Vec<LogRow> = (1..=10).map(|i| row(i, "alpha")).collect();
        let written = store.insert_log(&rows).expect("insert");
        assert_eq!(store.log_bytes().expect("bytes"), written);
        let each = written / 10;
        // Age: records before t = 3 s go.
        let (n, freed) = store.prune_log(3_000, written, u64::MAX).expect("age");
        assert_eq!((n, freed), (2, 2 * each));
        // Size: at most the 5 newest records' worth stays.
        let newest: u64 = rows[5..].iter().map(|r| r.record.len() as u64).sum();
        let (n, _) = store.prune_log(0, written - freed, newest).expect("size");
        assert_eq!(n, 3);
        let all = LogQuery {
            order: LogOrder::Oldest,
            limit: 100,
            ..LogQuery::default()
        };
        assert_eq!(
            ids(&store.query_log(&all).expect("rest")),
            ["r6", "r7", "r8", "r9", "r10"]
        );
    }
}
