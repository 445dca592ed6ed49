//! `GET /admin/v1/log`: the request log, newest first (or oldest first for
//! an export), filtered and paged (docs/request-log.md).
//!
//! Filters: `team`, `since` and `until` (Unix milliseconds, or an age such
//! as `30m`, `12h`, `7d` before now), `model` (asked for or served),
//! `provider`, `status`, `label`, `id`. Paging: `limit` (1 to 1000, default
//! 100) and `cursor` (the `next_cursor` of the previous page); `order` is
//! `newest` (default) or `oldest`. The operator reads every team; a team
//! admin token, only its own team (`team` is then required).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{authorize, authorize_team, blocking, store_error};
use crate::api::{AppState, error_response};
use crate::request_log::SCHEMA;
use crate::route::RouteError;
use crate::state::now_ms;
use crate::store::{LogOrder, LogQuery};

/// Most records one page holds.
pub const MAX_PAGE: usize = 1000;

#[derive(Deserialize)]
pub struct LogParams {
    team: Option<String>,
    since: Option<String>,
    until: Option<String>,
    model: Option<String>,
    provider: Option<String>,
    status: Option<u16>,
    label: Option<String>,
    id: Option<String>,
    limit: Option<usize>,
    cursor: Option<i64>,
    order: Option<String>,
}

/// A time bound: Unix milliseconds, or an age (`30m`, `12h`, `7d`) before
/// `now_ms`.
pub fn time_bound(text: &str, now_ms: u64) -> Result<u64, String> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    let bad = || format!("{text:?} is neither Unix milliseconds nor an age such as 30m, 12h or 7d");
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = number.parse().map_err(|_| bad())?;
    let unit_ms: u64 = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    Ok(now_ms.saturating_sub(n.saturating_mul(unit_ms)))
}

/// `GET /admin/v1/log`.
pub async fn read(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<LogParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match page(&state, &headers, query).await {
        Ok(body) => {
            let mut response = body.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => error_response(&e),
    }
}

async fn page(
    state: &AppState,
    headers: &HeaderMap,
    query: Result<Query<LogParams>, axum::extract::rejection::QueryRejection>,
) -> Result<String, RouteError> {
    let Query(p) = query.map_err(|e| RouteError::invalid("query", e.body_text()))?;
    match &p.team {
        Some(team) => {
            authorize_team(state, headers, team)?;
        }
        None => authorize(state, headers)?,
    }
    let now = now_ms();
    let bound = |name: &str, v: &Option<String>| {
        v.as_deref()
            .map(|t| time_bound(t, now))
            .transpose()
            .map_err(|m| RouteError::invalid(name, m))
    };
    let limit = p.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(RouteError::invalid(
            "limit",
            format!("limit is 1 to {MAX_PAGE}"),
        ));
    }
    let order = match p.order.as_deref() {
        None | Some("newest") => LogOrder::Newest,
        Some("oldest") => LogOrder::Oldest,
        Some(other) => {
            return Err(RouteError::invalid(
                "order",
                format!("unknown order {other:?}: use newest or oldest"),
            ));
        }
    };
    let query = LogQuery {
        since_ms: bound("since", &p.since)?,
        until_ms: bound("until", &p.until)?,
        team: p.team,
        model: p.model,
        provider: p.provider,
        status: p.status,
        label: p.label,
        id: p.id,
        cursor: p.cursor,
        order,
        // One more than asked: whether there is a next page.
        limit: limit + 1,
    };
    let (log, store) = (state.log.clone(), state.directory.store().clone());
    let mut rows = blocking(move || {
        // Requests answered so far are in the log before it is read.
        if let Err(e) = log.flush() {
            tracing::warn!(error = %e, "request log read before the log flushed");
        }
        store.query_log(&query).map_err(store_error)
    })
    .await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    // The records are JSON as stored: joined, not parsed again.
    let size = rows.iter().map(|(_, r)| r.len() + 1).sum::<usize>() + 96;
    let mut body = String::with_capacity(size);
    body.push_str(&format!(
        "{{\"object\":\"list\",\"schema\":{SCHEMA},\"data\":["
    ));
    for (i, (_, record)) in rows.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(record);
    }
    let next = match rows.last() {
        Some((seq, _)) if more => seq.to_string(),
        _ => "null".into(),
    };
    body.push_str(&format!("],\"has_more\":{more},\"next_cursor\":{next}}}"));
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds_are_milliseconds_or_ages() {
        let now = 10 * 86_400_000;
        assert_eq!(time_bound("1795304476000", now), Ok(1_795_304_476_000));
        assert_eq!(time_bound("7d", now), Ok(3 * 86_400_000));
        assert_eq!(time_bound("30m", now), Ok(now - 1_800_000));
        assert_eq!(time_bound("99d", now), Ok(0));
        for bad in ["", "d", "7w", "-1d", "1.5h"] {
            assert!(time_bound(bad, now).is_err(), "{bad}");
        }
    }
}
