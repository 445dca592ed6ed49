//! The `spend` ledger: per day, team, account, model and policy label.

use rusqlite::params;

use super::{Store, StoreError};

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

impl Store {
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
}
