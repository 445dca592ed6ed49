//! The `request_log_batches` table: the request log in batches, one row per
//! team per write of the log's writer (every 250 ms). A row holds its
//! records' JSON Lines compressed with LZ4, beside the columns that pick
//! rows: the team and the first and last arrival in it
//! (`docs/request-log.md`). A row per record cost a b-tree insert per
//! index and wrote each record's ~900 bytes twice (WAL, then checkpoint);
//! that was most of the log's cost on a busy gateway (BENCHMARKS.md §8d).
//!
//! A record's cursor is its row's `seq` and its place in the row:
//! `seq << 16 | place`. Filters other than the team and whole-row time
//! bounds read the record's own fields.

use std::borrow::Cow;

use rusqlite::params_from_iter;
use rusqlite::types::Value as Sql;
use serde::Deserialize;

use super::{Store, StoreError};

/// Records one row holds at most.
pub const BATCH_RECORDS: u32 = 4096;
/// Bytes of JSON one row holds at most (before compression), unless a
/// single record is larger.
pub const BATCH_BYTES: usize = 4 << 20;
/// A cursor's place bits: room for [`BATCH_RECORDS`].
const PLACE_BITS: u32 = 16;
/// The largest row a reader decompresses (a corrupt size field must not
/// make it allocate without bound).
const MAX_DECODED: usize = 256 << 20;

/// `encoding` of a row: its JSON Lines as they are (rows migrated from the
/// row-per-record table of schema 4).
const PLAIN: i64 = 0;
/// `encoding` of a row: an LZ4 block of its JSON Lines, the decoded size
/// first (4 bytes, little-endian).
const LZ4: i64 = 1;

/// Records of one team on their way to one row.
#[derive(Debug)]
pub struct LogBatch {
    team: String,
    first_ms: u64,
    last_ms: u64,
    records: u32,
    json: Vec<u8>,
}

impl LogBatch {
    /// An empty batch of `team`'s records.
    pub fn new(team: &str) -> LogBatch {
        LogBatch {
            team: team.to_owned(),
            first_ms: u64::MAX,
            last_ms: 0,
            records: 0,
            json: Vec::new(),
        }
    }

    /// An empty batch of `team`'s records, writing into `buffer` (emptied;
    /// its capacity is kept).
    pub fn with_buffer(team: &str, mut buffer: Vec<u8>) -> LogBatch {
        buffer.clear();
        LogBatch {
            json: buffer,
            ..LogBatch::new(team)
        }
    }

    /// The batch's buffer, for another batch.
    pub fn into_buffer(self) -> Vec<u8> {
        self.json
    }

    pub fn team(&self) -> &str {
        &self.team
    }

    /// Records in the batch.
    pub fn records(&self) -> u32 {
        self.records
    }

    /// Whether the batch takes no more records (a new one starts).
    pub fn is_full(&self) -> bool {
        self.records >= BATCH_RECORDS || self.json.len() >= BATCH_BYTES
    }

    /// Appends one record that arrived at `time_ms`: `write` writes its
    /// JSON, on one line. Nothing is appended when `write` fails.
    pub fn push_with<E>(
        &mut self,
        time_ms: u64,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let start = self.json.len();
        if let Err(e) = write(&mut self.json) {
            self.json.truncate(start);
            return Err(e);
        }
        self.json.push(b'\n');
        self.first_ms = self.first_ms.min(time_ms);
        self.last_ms = self.last_ms.max(time_ms);
        self.records += 1;
        Ok(())
    }
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
    /// Paging cursor: records past this one in `order`.
    pub cursor: Option<i64>,
    pub order: LogOrder,
    pub limit: usize,
}

impl LogQuery {
    /// Whether a record must be read to know if it matches, in a row whose
    /// arrivals span `first_ms..=last_ms`.
    fn reads_records(&self, first_ms: u64, last_ms: u64) -> bool {
        self.model.is_some()
            || self.provider.is_some()
            || self.status.is_some()
            || self.label.is_some()
            || self.id.is_some()
            || self.since_ms.is_some_and(|s| first_ms < s)
            || self.until_ms.is_some_and(|u| last_ms >= u)
    }

    fn matches(&self, r: &Keys<'_>) -> bool {
        let is = |want: &Option<String>, have: Option<&Cow<'_, str>>| {
            want.as_deref().is_none_or(|w| have.is_some_and(|h| h == w))
        };
        self.since_ms.is_none_or(|s| r.time_ms >= s)
            && self.until_ms.is_none_or(|u| r.time_ms < u)
            && self.status.is_none_or(|s| r.result.status == s)
            && is(&self.provider, r.result.provider.as_ref())
            && is(
                &self.label,
                r.decision.as_ref().and_then(|d| d.label.as_ref()),
            )
            && is(&self.id, Some(&r.id))
            && self.model.as_deref().is_none_or(|m| {
                r.request.model.as_deref() == Some(m) || r.result.model.as_deref() == Some(m)
            })
    }
}

/// The fields of a record the filters read (the rest is skipped).
#[derive(Deserialize)]
struct Keys<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    time_ms: u64,
    #[serde(borrow, default)]
    request: RequestKeys<'a>,
    #[serde(borrow, default)]
    decision: Option<DecisionKeys<'a>>,
    #[serde(borrow)]
    result: ResultKeys<'a>,
}

#[derive(Deserialize, Default)]
struct RequestKeys<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DecisionKeys<'a> {
    #[serde(borrow, default)]
    label: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ResultKeys<'a> {
    status: u16,
    #[serde(borrow, default)]
    provider: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
}

fn int(v: u64) -> Sql {
    Sql::Integer(i64::try_from(v).unwrap_or(i64::MAX))
}

/// A row's JSON Lines, decoded.
fn decode(encoding: i64, data: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    match encoding {
        PLAIN => Ok(Cow::Borrowed(data)),
        LZ4 => {
            let size = data
                .get(..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .ok_or("a compressed row without its size")?;
            if size > MAX_DECODED {
                return Err(format!("a compressed row claims {size} bytes"));
            }
            lz4_flex::block::decompress_size_prepended(data)
                .map(Cow::Owned)
                .map_err(|e| e.to_string())
        }
        other => Err(format!("unknown row encoding {other}")),
    }
}

impl Store {
    /// Writes batches, one row each, in one transaction. Gives back the
    /// bytes stored (compressed).
    pub fn insert_log(&self, batches: &[LogBatch]) -> Result<u64, StoreError> {
        let mut conn = self.log_conn();
        let tx = conn.transaction()?;
        let mut bytes = 0u64;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO request_log_batches (team, first_ms, last_ms, records, encoding, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for b in batches.iter().filter(|b| b.records > 0) {
                let data = lz4_flex::block::compress_prepend_size(&b.json);
                insert.execute(rusqlite::params![
                    b.team,
                    int(b.first_ms),
                    int(b.last_ms),
                    b.records,
                    LZ4,
                    data,
                ])?;
                bytes += data.len() as u64;
            }
        }
        tx.commit()?;
        Ok(bytes)
    }

    /// Records matching `q` (at most `q.limit`), each with its cursor, in
    /// `q.order`.
    pub fn query_log(&self, q: &LogQuery) -> Result<Vec<(i64, String)>, StoreError> {
        let mut sql = String::from(
            "SELECT seq, first_ms, last_ms, encoding, data FROM request_log_batches WHERE 1 = 1",
        );
        let mut args: Vec<Sql> = Vec::new();
        let mut filter = |clause: &str, value: Sql| {
            args.push(value);
            sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(team) = &q.team {
            filter(" AND team = ?", Sql::Text(team.clone()));
        }
        if let Some(since) = q.since_ms {
            filter(" AND last_ms >= ?", int(since));
        }
        if let Some(until) = q.until_ms {
            filter(" AND first_ms < ?", int(until));
        }
        let (compare, direction) = match q.order {
            LogOrder::Newest => ("<=", "DESC"),
            LogOrder::Oldest => (">=", "ASC"),
        };
        // The cursor's row, and its place in that row.
        let cursor = q
            .cursor
            .map(|c| (c >> PLACE_BITS, (c & ((1 << PLACE_BITS) - 1)) as usize));
        if let Some((seq, _)) = cursor {
            filter(&format!(" AND seq {compare} ?"), Sql::Integer(seq));
        }
        sql.push_str(&format!(" ORDER BY seq {direction}"));
        let conn = self.log_conn();
        let mut query = conn.prepare(&sql)?;
        let mut rows = query.query(params_from_iter(args))?;
        let mut out = Vec::new();
        while out.len() < q.limit {
            let Some(row) = rows.next()? else { break };
            let seq: i64 = row.get(0)?;
            let first_ms = row.get::<_, i64>(1)?.max(0) as u64;
            let last_ms = row.get::<_, i64>(2)?.max(0) as u64;
            let data = row.get_ref(4)?.as_blob().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    4,
                    rusqlite::types::Type::Blob,
                    Box::new(e),
                )
            })?;
            let json = match decode(row.get(3)?, data) {
                Ok(json) => json,
                Err(e) => {
                    tracing::warn!(seq, error = %e, "skipping an unreadable request log row");
                    continue;
                }
            };
            let lines: Vec<&[u8]> = json
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            let read = q.reads_records(first_ms, last_ms);
            let places: Box<dyn Iterator<Item = usize>> = match q.order {
                LogOrder::Newest => Box::new((0..lines.len()).rev()),
                LogOrder::Oldest => Box::new(0..lines.len()),
            };
            for place in places {
                let past_cursor = match (cursor, q.order) {
                    (Some((s, p)), LogOrder::Newest) if s == seq => place < p,
                    (Some((s, p)), LogOrder::Oldest) if s == seq => place > p,
                    _ => true,
                };
                if !past_cursor {
                    continue;
                }
                let line = lines[place];
                if read {
                    match serde_json::from_slice::<Keys<'_>>(line) {
                        Ok(keys) if q.matches(&keys) => {}
                        Ok(_) => continue,
                        Err(e) => {
                            tracing::warn!(seq, place, error = %e, "skipping an unreadable request log record");
                            continue;
                        }
                    }
                }
                let Ok(text) = std::str::from_utf8(line) else {
                    tracing::warn!(
                        seq,
                        place,
                        "skipping a request log record that is not UTF-8"
                    );
                    continue;
                };
                out.push(((seq << PLACE_BITS) | place as i64, text.to_owned()));
                if out.len() >= q.limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Bytes the log's rows hold (compressed).
    pub fn log_bytes(&self) -> Result<u64, StoreError> {
        let total: i64 = self.log_conn().query_row(
            "SELECT COALESCE(SUM(LENGTH(data)), 0) FROM request_log_batches",
            [],
            |r| r.get(0),
        )?;
        Ok(total.max(0) as u64)
    }

    /// Deletes the rows whose records all arrived before `before_ms`, then
    /// the oldest rows while the log holds more than `max_bytes` (`bytes`:
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
        // In steps, so a large backlog never holds the table for long.
        loop {
            let mut delete = conn.prepare_cached(
                // Rows are in arrival order by `seq` (to the writer's
                // interval): the oldest ones, up to the first young enough.
                "DELETE FROM request_log_batches WHERE seq IN
                    (SELECT seq FROM request_log_batches ORDER BY seq LIMIT ?2)
                    AND last_ms < ?1
                 RETURNING records, LENGTH(data)",
            )?;
            let deleted = delete
                .query_map(rusqlite::params![int(before_ms), BATCH], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            records += deleted.iter().map(|(n, _)| (*n).max(0) as u64).sum::<u64>();
            freed += deleted.iter().map(|(_, l)| (*l).max(0) as u64).sum::<u64>();
            if deleted.len() < BATCH as usize {
                break;
            }
        }
        let bytes = bytes.saturating_sub(freed);
        if bytes > max_bytes {
            // The oldest rows that add up to the excess: read in order until
            // enough is found, then deleted up to the last one.
            let excess = bytes - max_bytes;
            let (mut cutoff, mut found, mut count) = (None, 0u64, 0u64);
            {
                let mut oldest = conn.prepare_cached(
                    "SELECT seq, records, LENGTH(data) FROM request_log_batches ORDER BY seq",
                )?;
                let mut rows = oldest.query([])?;
                while let Some(row) = rows.next()? {
                    cutoff = Some(row.get::<_, i64>(0)?);
                    count += row.get::<_, i64>(1)?.max(0) as u64;
                    found += row.get::<_, i64>(2)?.max(0) as u64;
                    if found >= excess {
                        break;
                    }
                }
            }
            if let Some(cutoff) = cutoff {
                conn.prepare_cached("DELETE FROM request_log_batches WHERE seq <= ?1")?
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

    /// A record's JSON as the filters read it.
    fn record(i: u64, team: &str) -> String {
        serde_json::json!({
            "schema": 1,
            "id": format!("r{i}"),
            "time_ms": 1_000 * i,
            "team": team,
            "request": { "model": "auto" },
            "decision": { "label": if i == 7 { "quality" } else { "cost" } },
            "result": {
                "status": if i.is_multiple_of(2) { 200 } else { 502 },
                "provider": "openai",
                "model": "gpt-4o-mini",
            },
            "pad": "x".repeat(100),
        })
        .to_string()
    }

    /// Records `range` of `team` as one batch.
    fn batch(range: std::ops::RangeInclusive<u64>, team: &str) -> LogBatch {
        let mut b = LogBatch::new(team);
        for i in range {
            b.push_with(1_000 * i, |out| {
                out.extend_from_slice(record(i, team).as_bytes());
                Ok::<_, ()>(())
            })
            .expect("push");
        }
        b
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
    fn filters_and_pages_across_and_within_rows_in_both_orders() {
        let store = store();
        // Two writes, as the writer makes them: each a row per team.
        store
            .insert_log(&[batch(1..=3, "alpha"), batch(7..=8, "beta")])
            .expect("first write");
        store
            .insert_log(&[batch(4..=6, "alpha"), batch(9..=10, "beta")])
            .expect("second write");
        let q = LogQuery {
            team: Some("alpha".into()),
            limit: 4,
            ..LogQuery::default()
        };
        let page = store.query_log(&q).expect("page 1");
        assert_eq!(ids(&page), ["r6", "r5", "r4", "r3"]);
        // The cursor stops inside a row: the next page goes on from there.
        let next = LogQuery {
            cursor: page.last().map(|(c, _)| *c),
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
        // Oldest first is row order, then the order within a row.
        assert_eq!(
            ids(&store.query_log(&oldest).expect("asc")),
            ["r8", "r4", "r6"]
        );
        let paged = LogQuery {
            limit: 1,
            ..oldest.clone()
        };
        let first = store.query_log(&paged).expect("asc page 1");
        let second = LogQuery {
            cursor: first.last().map(|(c, _)| *c),
            ..paged.clone()
        };
        assert_eq!(ids(&store.query_log(&second).expect("asc page 2")), ["r4"]);
        for (q, want) in [
            (
                LogQuery {
                    id: Some("r7".into()),
                    ..LogQuery::default()
                },
                vec!["r7"],
            ),
            (
                LogQuery {
                    label: Some("quality".into()),
                    ..LogQuery::default()
                },
                vec!["r7"],
            ),
            (
                LogQuery {
                    model: Some("gpt-4o-mini".into()),
                    team: Some("beta".into()),
                    ..LogQuery::default()
                },
                vec!["r10", "r9", "r8", "r7"],
            ),
            (
                LogQuery {
                    provider: Some("anthropic".into()),
                    ..LogQuery::default()
                },
                vec![],
            ),
        ] {
            let q = LogQuery { limit: 10, ..q };
            assert_eq!(ids(&store.query_log(&q).expect("filter")), want, "{q:?}");
        }
    }

    #[test]
    fn rows_are_compressed_and_prune_by_age_then_by_size_oldest_first() {
        let store = store();
        for i in 1..=10 {
            store.insert_log(&[batch(i..=i, "alpha")]).expect("insert");
        }
        let written = store.log_bytes().expect("bytes");
        let json: usize = (1..=10).map(|i| record(i, "alpha").len() + 1).sum();
        assert!(
            written > 0 && (written as usize) < json,
            "{written} of {json}"
        );
        // Age: rows whose records all arrived before t = 3 s go.
        let (n, freed) = store.prune_log(3_000, written, u64::MAX).expect("age");
        assert_eq!(n, 2);
        // Size: at most the 5 newest rows' worth stays.
        let left = written - freed;
        let newest = left * 5 / 8;
        let (n, _) = store.prune_log(0, left, newest + 4).expect("size");
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

    #[test]
    fn a_batch_fills_up_and_a_failed_record_leaves_nothing() {
        let mut b = LogBatch::new("t");
        assert!(!b.is_full());
        let failed = b.push_with(5, |out| {
            out.extend_from_slice(b"{\"half");
            Err("cannot serialise")
        });
        assert_eq!(failed, Err("cannot serialise"));
        assert_eq!((b.records(), b.json.len()), (0, 0));
        for i in 0..BATCH_RECORDS {
            b.push_with(u64::from(i), |out| {
                out.extend_from_slice(b"{}");
                Ok::<_, ()>(())
            })
            .expect("push");
        }
        assert!(b.is_full());
        assert_eq!((b.first_ms, b.last_ms), (0, u64::from(BATCH_RECORDS - 1)));
    }

    #[test]
    fn records_of_the_row_per_record_schema_are_kept_by_the_migration() {
        let path = std::env::temp_dir().join(format!(
            "switchyard-log-old-{}-{:x}.db",
            std::process::id(),
            fastrand::u64(..)
        ));
        {
            let conn = rusqlite::Connection::open(&path).expect("raw");
            for sql in &super::super::schema::MIGRATIONS[..5] {
                conn.execute_batch(sql).expect("old schema");
            }
            conn.pragma_update(None, "user_version", 5)
                .expect("version");
            for i in 1..=3 {
                conn.execute(
                    "INSERT INTO request_log (id, time_ms, team, api, model, status, record)
                     VALUES (?1, ?2, 'alpha', 'chat', 'auto', 200, ?3)",
                    rusqlite::params![format!("r{i}"), (1_000 * i) as i64, record(i, "alpha")],
                )
                .expect("old record");
            }
        }
        let store = Store::open(&path).expect("migrated");
        let q = LogQuery {
            team: Some("alpha".into()),
            limit: 2,
            ..LogQuery::default()
        };
        let page = store.query_log(&q).expect("read");
        assert_eq!(ids(&page), ["r3", "r2"]);
        let next = LogQuery {
            cursor: page.last().map(|(c, _)| *c),
            since_ms: Some(500),
            ..q
        };
        assert_eq!(ids(&store.query_log(&next).expect("page 2")), ["r1"]);
        // New records follow the migrated ones.
        store.insert_log(&[batch(4..=4, "alpha")]).expect("new");
        let all = LogQuery {
            order: LogOrder::Oldest,
            limit: 10,
            ..LogQuery::default()
        };
        assert_eq!(
            ids(&store.query_log(&all).expect("all")),
            ["r1", "r2", "r3", "r4"]
        );
        let (n, _) = store
            .prune_log(2_500, store.log_bytes().expect("bytes"), u64::MAX)
            .expect("prune");
        assert_eq!(n, 2);
    }

    #[test]
    fn a_corrupt_row_is_skipped_and_the_rest_is_read() {
        let store = store();
        store.insert_log(&[batch(1..=2, "alpha")]).expect("good");
        store
            .insert_log(&[batch(3..=3, "alpha")])
            .expect("to spoil");
        store
            .log_conn()
            .execute(
                "UPDATE request_log_batches SET data = X'FFFFFFFF00' WHERE seq = 2",
                [],
            )
            .expect("spoil");
        let all = LogQuery {
            limit: 10,
            ..LogQuery::default()
        };
        assert_eq!(ids(&store.query_log(&all).expect("read")), ["r2", "r1"]);
    }
}
