//! Directory and their keys: `POST/GET /admin/v1/teams`, `GET/PATCH
//! /admin/v1/teams/{team}`, `POST/GET /admin/v1/teams/{team}/keys` and
//! `DELETE /admin/v1/teams/{team}/keys/{id}`. Operator only, except reading
//! one's own team.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};

use super::{
    Answer, PathResult, authorize, authorize_team, blocking, find_team, ok, path, read_json,
    store_error, team_answer, team_view, write,
};
use crate::api::AppState;
use crate::directory::Origin;
use crate::errors::{AdminCode, ServerCode};
use crate::route::RouteError;
use crate::store::KeyScope;

/// A team name ([`crate::config::check_team_name`]): it appears in URLs and
/// metric labels.
fn check_name(name: &str) -> Result<(), RouteError> {
    crate::config::check_team_name(name).map_err(|problem| RouteError::invalid("name", problem))
}

/// `Some(None)` for `null` (everything allowed), `Some(Some(list))` for a
/// list of strings, `None` when the field is absent.
fn string_list(
    map: &Map<String, Value>,
    field: &str,
) -> Result<Option<Option<Vec<String>>>, RouteError> {
    match map.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(|list| Some(Some(list)))
            .ok_or_else(|| {
                RouteError::invalid(
                    field,
                    format!("`{field}` must be a list of strings or null."),
                )
            }),
        Some(_) => Err(RouteError::invalid(
            field,
            format!("`{field}` must be a list of strings or null."),
        )),
    }
}

/// Team settings from a create or update body.
struct Access {
    models: Option<Option<Vec<String>>>,
    providers: Option<Option<Vec<String>>>,
    zdr: Option<bool>,
    policy_config: Option<String>,
}

fn access(map: &Map<String, Value>, allowed: &[&str]) -> Result<Access, RouteError> {
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(RouteError::invalid(
            unknown,
            format!(
                "Unknown field `{unknown}`; this route takes {}.",
                allowed.join(", ")
            ),
        ));
    }
    let zdr = match map.get("zdr") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(RouteError::invalid("zdr", "`zdr` must be true or false.")),
    };
    let policy_config = match map.get("policy_config") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v.to_string()),
        Some(_) => {
            return Err(RouteError::invalid(
                "policy_config",
                "`policy_config` must be a JSON object.",
            ));
        }
    };
    Ok(Access {
        models: string_list(map, "allowed_models")?,
        providers: string_list(map, "allowed_providers")?,
        zdr,
        policy_config,
    })
}

/// `POST /admin/v1/teams`: `{"name", "allowed_models"?, "allowed_providers"?, "zdr"?, "policy_config"?}`.
pub async fn create(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Answer {
    authorize(&state, &headers)?;
    let map = read_json(&state, &headers, body, false).await?;
    let name = match map.get("name") {
        Some(Value::String(name)) => name.clone(),
        _ => {
            return Err(RouteError::invalid(
                "name",
                "`name` (a string) is required.",
            ));
        }
    };
    check_name(&name)?;
    let access = access(
        &map,
        &[
            "name",
            "allowed_models",
            "allowed_providers",
            "zdr",
            "policy_config",
        ],
    )?;
    let models = access.models.flatten();
    let providers = access.providers.flatten();
    state
        .config
        .check_team_access(models.as_deref(), providers.as_deref())
        .map_err(|e| RouteError::invalid("body", e))?;
    let created = name.clone();
    write(&state, move |writer| {
        let store = writer.store();
        store.create_team(&created).map_err(store_error)?;
        store
            .set_team_access(
                &created,
                models.as_deref(),
                providers.as_deref(),
                access.zdr.unwrap_or(false),
            )
            .map_err(store_error)?;
        if let Some(config) = &access.policy_config {
            store
                .set_policy_config(&created, config)
                .map_err(store_error)?;
        }
        Ok(())
    })
    .await?;
    team_answer(&state, StatusCode::CREATED, &name)
}

/// `GET /admin/v1/teams`.
pub async fn list(State(state): State<AppState>, headers: HeaderMap) -> Answer {
    authorize(&state, &headers)?;
    let directory = state.directory.snapshot();
    let data: Vec<Value> = directory
        .entries()
        .into_iter()
        .map(|t| team_view(t))
        .collect();
    ok(StatusCode::OK, json!({ "object": "list", "data": data }))
}

/// `GET /admin/v1/teams/{team}` (the team's admin token may read its own).
pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    team: PathResult<String>,
) -> Answer {
    let team = path(team)?;
    authorize_team(&state, &headers, &team)?;
    team_answer(&state, StatusCode::OK, &team)
}

/// `PATCH /admin/v1/teams/{team}`: `{"allowed_models"?, "allowed_providers"?, "zdr"?}`
/// (`null` lists allow everything). Directory declared in the config file are
/// changed there.
pub async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    team: PathResult<String>,
    body: Body,
) -> Answer {
    let team = path(team)?;
    authorize(&state, &headers)?;
    let map = read_json(&state, &headers, body, false).await?;
    let changes = access(&map, &["allowed_models", "allowed_providers", "zdr"])?;
    let entry = find_team(&state, &team)?;
    if entry.origin == Origin::Config {
        return Err(RouteError::new(
            AdminCode::TeamInConfig,
            format!(
                "Team {team:?} is declared in the config file; change its allow-lists and ZDR under [teams.{team}] there."
            ),
        ));
    }
    let current = &entry.team;
    let models = changes
        .models
        .unwrap_or_else(|| current.allowed_models.clone());
    let providers = changes
        .providers
        .unwrap_or_else(|| current.allowed_providers.clone());
    let zdr = changes.zdr.unwrap_or(current.zdr);
    state
        .config
        .check_team_access(models.as_deref(), providers.as_deref())
        .map_err(|e| RouteError::invalid("body", e))?;
    let name = team.clone();
    write(&state, move |writer| {
        writer
            .store()
            .set_team_access(&name, models.as_deref(), providers.as_deref(), zdr)
            .map_err(store_error)?;
        Ok(())
    })
    .await?;
    team_answer(&state, StatusCode::OK, &team)
}

/// A new secret: `prefix` + 64 hex digits from the OS's CSPRNG.
fn new_secret(prefix: &str) -> Result<String, RouteError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| {
        RouteError::new(
            ServerCode::NoRandomness,
            format!("cannot generate a key: {e}"),
        )
    })?;
    let mut key = String::with_capacity(prefix.len() + 64);
    key.push_str(prefix);
    for b in bytes {
        key.push_str(&format!("{b:02x}"));
    }
    Ok(key)
}

/// `POST /admin/v1/teams/{team}/keys`: `{"label"?, "scope"?: "api" | "admin"}`.
/// The key is in this answer only; the store keeps its sha256.
pub async fn create_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    team: PathResult<String>,
    body: Body,
) -> Answer {
    let team = path(team)?;
    authorize(&state, &headers)?;
    let map = read_json(&state, &headers, body, true).await?;
    if let Some(unknown) = map
        .keys()
        .find(|k| !["label", "scope"].contains(&k.as_str()))
    {
        return Err(RouteError::invalid(
            unknown,
            format!("Unknown field `{unknown}`; this route takes label, scope."),
        ));
    }
    let label = match map.get("label") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if s.len() <= 200 => s.clone(),
        Some(_) => {
            return Err(RouteError::invalid(
                "label",
                "`label` must be a string of at most 200 bytes.",
            ));
        }
    };
    let scope = match map.get("scope").and_then(Value::as_str) {
        None if map.get("scope").is_none_or(Value::is_null) => KeyScope::Api,
        Some("api") => KeyScope::Api,
        Some("admin") => KeyScope::Admin,
        _ => {
            return Err(RouteError::invalid(
                "scope",
                "`scope` is \"api\" (calls /v1 as the team) or \"admin\" (manages the team's policies).",
            ));
        }
    };
    find_team(&state, &team)?;
    let key = new_secret(match scope {
        KeyScope::Api => "sk-sy-",
        KeyScope::Admin => "sya-",
    })?;
    let hash = crate::config::hash_key(&key);
    let (name, key_label) = (team.clone(), label.clone());
    let id = write(&state, move |writer| {
        writer
            .store()
            .add_key(&name, &hash, &key_label, scope)
            .map_err(store_error)
    })
    .await?;
    ok(
        StatusCode::CREATED,
        json!({
            "object": "key",
            "id": id,
            "team": team,
            "label": label,
            "scope": scope.as_str(),
            "key": key,
            "note": "Store this key now: it is shown only once (Switchyard keeps only its sha256).",
        }),
    )
}

/// `GET /admin/v1/teams/{team}/keys` (never the keys themselves).
pub async fn list_keys(
    State(state): State<AppState>,
    headers: HeaderMap,
    team: PathResult<String>,
) -> Answer {
    let team = path(team)?;
    authorize(&state, &headers)?;
    let teams = state.directory.clone();
    let name = team.clone();
    let keys = blocking(move || teams.store().keys(&name).map_err(store_error)).await?;
    let data: Vec<Value> = keys
        .into_iter()
        .map(|k| {
            json!({
                "object": "key",
                "id": k.id,
                "label": k.label,
                "scope": k.scope.as_str(),
                "created_at": k.created_at,
                "revoked": k.revoked,
            })
        })
        .collect();
    ok(
        StatusCode::OK,
        json!({ "object": "list", "team": team, "data": data }),
    )
}

/// `DELETE /admin/v1/teams/{team}/keys/{id}`: the key stops working at once.
pub async fn revoke_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: PathResult<(String, String)>,
) -> Answer {
    let (team, id) = path(params)?;
    authorize(&state, &headers)?;
    let id: i64 = id
        .parse()
        .map_err(|_| RouteError::invalid("id", format!("Key id {id:?} is not a number.")))?;
    let name = team.clone();
    write(&state, move |writer| {
        writer.store().revoke_key(&name, id).map_err(store_error)?;
        Ok(())
    })
    .await?;
    ok(
        StatusCode::OK,
        json!({ "object": "key", "id": id, "team": team, "revoked": true }),
    )
}
