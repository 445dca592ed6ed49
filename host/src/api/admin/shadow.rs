//! A team's shadow policy: `PUT /admin/v1/teams/{team}/shadow` attaches one
//! of its uploaded versions (`{"version": 3, "sample": 0.5}`; `sample`
//! defaults to 1), `GET .../shadow` reports what it has decided since it was
//! attached, `DELETE .../shadow` detaches it and `POST .../shadow/promote`
//! makes it the active version in one call (a rollback returns to the one
//! it replaced). The operator's token or the team's own admin token.
//!
//! `GET /admin/v1/backups` (operator) reports every shadow backup
//! (`[[backups]]`): its checks, flag, latency, cost and spend.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::{
    Answer, PathResult, authorize, authorize_team, find_team, ok, path, read_json, store_error,
    team_answer, write,
};
use crate::api::AppState;
use crate::directory::DirectoryEntry;
use crate::errors::{AdminCode, StoreCode};
use crate::route::RouteError;

/// The shadow as `GET` shows it.
fn view(entry: &DirectoryEntry) -> Result<Value, RouteError> {
    let team = &entry.team.name;
    let Some(shadow) = &entry.shadow else {
        let message = match &entry.shadow_error {
            Some(e) => format!("Team {team:?} has a shadow attached that does not load: {e}."),
            None => format!("Team {team:?} has no shadow policy attached."),
        };
        return Err(RouteError::new(StoreCode::NoShadow, message));
    };
    let report = serde_json::to_value(shadow.report()).unwrap_or(Value::Null);
    let mut body = json!({
        "object": "shadow",
        "team": team,
        "active_version": entry.policy.as_ref().map(|p| p.version),
    });
    if let (Some(body), Value::Object(report)) = (body.as_object_mut(), report) {
        body.extend(report);
    }
    Ok(body)
}

/// `GET /admin/v1/teams/{team}/shadow`.
pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    team: PathResult<String>,
) -> Answer {
    let team = path(team)?;
    authorize_team(&state, &headers, &team)?;
    let entry = find_team(&state, &team)?;
    ok(StatusCode::OK, view(&entry)?)
}

/// `PUT /admin/v1/teams/{team}/shadow`: `{"version": N, "sample": 0..1}`.
pub async fn attach(
    State(state): State<AppState>,
    headers: HeaderMap,
    team: PathResult<String>,
    body: Body,
) -> Answer {
    let team = path(team)?;
    authorize_team(&state, &headers, &team)?;
    let body = read_json(&state, &headers, body, false).await?;
    for key in body.keys() {
        if key != "version" && key != "sample" {
            return Err(RouteError::invalid(
                key,
                format!("Unknown field {key:?}: a shadow takes `version` and `sample`."),
            ));
        }
    }
    let version = body
        .get("version")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .filter(|v| *v > 0)
        .ok_or_else(|| {
            RouteError::invalid(
                "version",
                "`version` must be one of the team's policy versions (a positive integer).",
            )
        })?;
    let sample = match body.get("sample") {
        None => 1.0,
        Some(v) => v
            .as_f64()
            .filter(|s| *s > 0.0 && *s <= 1.0)
            .ok_or_else(|| {
                RouteError::invalid(
                    "sample",
                    "`sample` must be the share of requests the shadow decides on: above 0, at most 1.",
                )
            })?,
    };
    let entry = find_team(&state, &team)?;
    if entry.policy.as_ref().is_some_and(|p| p.version == version) {
        return Err(RouteError::new(
            AdminCode::ShadowIsActive,
            format!(
                "Version {version} is team {team:?}'s active version; a shadow is another version to compare with it."
            ),
        ));
    }
    let name = team.clone();
    write(&state, move |writer| {
        super::policies::check_loads(writer, &name, version)?;
        writer
            .store()
            .attach_shadow(&name, version, sample)
            .map_err(store_error)?;
        Ok(())
    })
    .await?;
    let entry = find_team(&state, &team)?;
    ok(StatusCode::OK, view(&entry)?)
}

/// `DELETE /admin/v1/teams/{team}/shadow`.
pub async fn detach(
    State(state): State<AppState>,
    headers: HeaderMap,
    team: PathResult<String>,
) -> Answer {
    let team = path(team)?;
    authorize_team(&state, &headers, &team)?;
    find_team(&state, &team)?;
    let name = team.clone();
    let version = write(&state, move |writer| {
        writer.store().detach_shadow(&name).map_err(store_error)
    })
    .await?;
    ok(
        StatusCode::OK,
        json!({ "object": "shadow", "team": team, "version": version, "detached": true }),
    )
}

/// `POST /admin/v1/teams/{team}/shadow/promote`: the shadow becomes the
/// active version; the answer is the team's view.
pub async fn promote(
    State(state): State<AppState>,
    headers: HeaderMap,
    team: PathResult<String>,
) -> Answer {
    let team = path(team)?;
    authorize_team(&state, &headers, &team)?;
    find_team(&state, &team)?;
    let name = team.clone();
    write(&state, move |writer| {
        writer.store().promote_shadow(&name).map_err(store_error)
    })
    .await?;
    team_answer(&state, StatusCode::OK, &team)
}

/// `GET /admin/v1/backups`: every shadow backup and what its checks found.
pub async fn backups(State(state): State<AppState>, headers: HeaderMap) -> Answer {
    authorize(&state, &headers)?;
    ok(
        StatusCode::OK,
        json!({ "object": "list", "data": state.executor.backups().reports() }),
    )
}
