//! `GET /admin/v1/spend?team=T&period=P`: what a team (or, for the operator
//! without `team`, every team) spent, what the same requests would have cost
//! on the team's baseline model, and the savings, by model and by policy
//! label, from the spend ledger.
//!
//! `period`: `month` (the current calendar month, UTC; the default),
//! `today`, `YYYY-MM`, `YYYY-MM-DD`, `Nd` (the last N days, today included,
//! N up to 366) or `all`.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{authorize, authorize_team, blocking, find_team, store_error};
use crate::api::{AppState, error_response};
use crate::config::BudgetPeriod;
use crate::route::RouteError;
use crate::spend::{baseline_model, budget_key, day_id, period_id};
use crate::state::now_ms;
use crate::store::SpendRow;

#[derive(Deserialize)]
pub struct SpendQuery {
    team: Option<String>,
    period: Option<String>,
}

/// A period's name and its first and last day (`YYYY-MM-DD`, inclusive).
fn period_days(text: &str, now_secs: u64) -> Result<(String, String, String), String> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let bad = || {
        format!(
            "unknown period {text:?}: use month, today, YYYY-MM, YYYY-MM-DD, a number of days such as 7d, or all"
        )
    };
    match text {
        "month" => {
            let month = period_id(BudgetPeriod::Month, now_secs);
            Ok((month.clone(), format!("{month}-01"), format!("{month}-31")))
        }
        "today" => {
            let day = day_id(now_secs);
            Ok((day.clone(), day.clone(), day))
        }
        "all" => Ok(("all".into(), "0000-00-00".into(), "9999-99-99".into())),
        _ => {
            if let Some(n) = text.strip_suffix('d').filter(|n| digits(n)) {
                let days: u64 = n.parse().map_err(|_| bad())?;
                if !(1..=366).contains(&days) {
                    return Err(format!("{text:?}: a period of days is 1d to 366d"));
                }
                let from = day_id(now_secs.saturating_sub((days - 1) * 86_400));
                return Ok((text.to_string(), from, day_id(now_secs)));
            }
            let parts: Vec<&str> = text.split('-').collect();
            let valid = |p: &[&str]| {
                p.len() >= 2
                    && p[0].len() == 4
                    && p.iter().all(|x| digits(x))
                    && p[1].len() == 2
                    && (1..=12).contains(&p[1].parse::<u32>().unwrap_or(0))
                    && p.get(2).is_none_or(|d| {
                        d.len() == 2 && (1..=31).contains(&d.parse::<u32>().unwrap_or(0))
                    })
            };
            match parts.len() {
                2 if valid(&parts) => Ok((text.into(), format!("{text}-01"), format!("{text}-31"))),
                3 if valid(&parts) => Ok((text.into(), text.into(), text.into())),
                _ => Err(bad()),
            }
        }
    }
}

/// Sums of ledger rows (the row's key fields unused).
#[derive(Default)]
struct Sums(SpendRow);

impl Sums {
    fn add(&mut self, r: &SpendRow) {
        self.0.add(r);
    }

    /// Rounded to a millionth of a cent, so sums of floats read cleanly.
    fn json(&self) -> Value {
        let s = &self.0;
        let usd = |v: f64| (v * 1e8).round() / 1e8;
        let savings = s.baseline_usd - s.cost_usd;
        json!({
            "requests": s.requests,
            "input_tokens": s.input_tokens,
            "output_tokens": s.output_tokens,
            "cached_tokens": s.cached_tokens,
            "spend_usd": usd(s.cost_usd),
            "baseline_usd": usd(s.baseline_usd),
            "savings_usd": usd(savings),
            "savings_percent": (s.baseline_usd > 0.0)
                .then(|| (savings / s.baseline_usd * 10_000.0).round() / 100.0),
        })
    }
}

/// `GET /admin/v1/spend`.
pub async fn report(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<SpendQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match build(&state, &headers, query).await {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn build(
    state: &AppState,
    headers: &HeaderMap,
    query: Result<Query<SpendQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Value, RouteError> {
    let Query(query) = query.map_err(|e| RouteError::invalid("query", e.body_text()))?;
    match &query.team {
        Some(team) => {
            authorize_team(state, headers, team)?;
        }
        None => authorize(state, headers)?,
    }
    let now_secs = now_ms() / 1000;
    let (name, from, to) = period_days(query.period.as_deref().unwrap_or("month"), now_secs)
        .map_err(|m| RouteError::invalid("period", m))?;
    let entry = match &query.team {
        Some(team) => Some(find_team(state, team)?),
        None => None,
    };
    let spending = state.spending.clone();
    let store = state.directory.store().clone();
    let team = query.team.clone();
    let (from_q, to_q) = (from.clone(), to.clone());
    let rows = blocking(move || {
        // Requests served so far are in the ledger before it is read.
        if let Err(e) = spending.flush() {
            tracing::warn!(error = %e, "spend report read before the ledger flushed");
        }
        store
            .spend_rows(team.as_deref(), &from_q, &to_q)
            .map_err(store_error)
    })
    .await?;
    let mut total = Sums::default();
    let mut by_model: BTreeMap<(String, String), Sums> = BTreeMap::new();
    let mut by_label: BTreeMap<String, Sums> = BTreeMap::new();
    let mut by_team: BTreeMap<String, Sums> = BTreeMap::new();
    for r in &rows {
        total.add(r);
        by_model
            .entry((r.account.clone(), r.model.clone()))
            .or_default()
            .add(r);
        by_label.entry(r.label.clone()).or_default().add(r);
        by_team.entry(r.team.clone()).or_default().add(r);
    }
    let mut body = total.json();
    body["object"] = json!("spend_report");
    body["team"] = json!(query.team);
    body["period"] = json!({ "name": name, "from": from, "to": to });
    body["by_model"] = by_model
        .iter()
        .map(|((provider, model), s)| {
            let mut v = s.json();
            v["provider"] = json!(provider);
            v["model"] = json!(model);
            v
        })
        .collect();
    body["by_label"] = by_label
        .iter()
        .map(|(label, s)| {
            let mut v = s.json();
            v["label"] = json!(label);
            v
        })
        .collect();
    if let Some(entry) = &entry {
        let config = &state.config;
        body["baseline_model"] = json!(baseline_model(config, &entry.team).map(|m| &m.slug));
        if let Some(budget) = &entry.team.budget {
            let key = budget_key("team", &entry.team.name, budget, now_secs);
            let view = state
                .shared
                .view(&crate::state::ViewQuery {
                    limits: Vec::new(),
                    budgets: vec![key],
                })
                .await;
            let spent = view.spend.first().copied().unwrap_or(0.0);
            body["budget"] = json!({
                "period": period_id(budget.period, now_secs),
                "budget_usd": budget.usd,
                "spent_usd": spent,
                "utilisation": if budget.usd > 0.0 { spent / budget.usd } else { 1.0 },
            });
        }
    } else {
        body["by_team"] = by_team
            .iter()
            .map(|(team, s)| {
                let mut v = s.json();
                v["team"] = json!(team);
                v
            })
            .collect();
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        let now = 1_795_304_476; // 2026-11-21
        assert_eq!(
            period_days("month", now),
            Ok(("2026-11".into(), "2026-11-01".into(), "2026-11-31".into()))
        );
        assert_eq!(
            period_days("7d", now),
            Ok(("7d".into(), "2026-11-15".into(), "2026-11-21".into()))
        );
        assert_eq!(
            period_days("2026-10-03", now),
            Ok((
                "2026-10-03".into(),
                "2026-10-03".into(),
                "2026-10-03".into()
            ))
        );
        for bad in ["2026-13", "26-11", "0d", "week", "2026-11-1", ""] {
            assert!(period_days(bad, now).is_err(), "{bad}");
        }
    }
}
