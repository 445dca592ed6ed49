//! A team's policy plugins: `POST /admin/v1/teams/{team}/policies` (upload,
//! validated before it is stored), `GET .../policies` (versions),
//! `POST .../policies/{version}/activate`, `POST .../policies/rollback` and
//! `GET|PUT .../policy-config`. The operator's token or the team's own admin
//! token.
//!
//! An upload is the component's bytes (`application/wasm` or
//! `application/octet-stream`, with `?notes=...&activate=true`), or
//! `multipart/form-data` with the fields `component` (the `.wasm`), `cases`
//! (a case file, see docs/policy-cases.md), `notes` and `activate`. It is
//! stored only if it compiles, implements our WIT world, imports nothing but
//! what the sandbox provides, stays within the limits, and passes its cases.

use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Answer, PathResult, authorize_team, blocking, find_team, ok, path, read_json, store_error,
    team_answer, team_view, write,
};
use crate::api::intake::{Charge, Intake};
use crate::api::{AppState, BodyError};
use crate::errors::{AdminCode, RequestCode, ServerCode};
use crate::harness;
use crate::route::RouteError;
use crate::store::Upload;

/// Query of a raw upload.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    notes: Option<String>,
    activate: Option<bool>,
}

/// What an upload carries.
struct Submission {
    component: Bytes,
    cases: Option<String>,
    notes: String,
    activate: bool,
}

/// Room left for the case file and multipart framing beyond the component.
const CASES_ALLOWANCE: usize = 1 << 20;

fn too_large(size: usize, limit: usize) -> RouteError {
    RouteError::new(
        AdminCode::UploadTooLarge,
        format!(
            "The policy component is {size} bytes; uploads may be at most {limit} bytes (plugins.max_upload_bytes)."
        ),
    )
}

async fn read_submission(
    intake: &Intake,
    headers: &HeaderMap,
    query: UploadQuery,
    body: Body,
    limit: usize,
) -> Result<(Submission, Charge), RouteError> {
    let total_limit = limit + CASES_ALLOWANCE;
    let (bytes, charge) =
        intake
            .read_body(headers, body, total_limit)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge(n) => too_large(n, limit),
                e => e.to_error(total_limit, "upload"),
            })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let submission = match mime.as_str() {
        "multipart/form-data" => {
            if query.notes.is_some() || query.activate.is_some() {
                return Err(RouteError::invalid(
                    "query",
                    "A multipart upload carries notes and activate as form fields, not in the query.",
                ));
            }
            multipart(content_type, bytes).await?
        }
        "application/wasm" | "application/octet-stream" => Submission {
            component: bytes,
            cases: None,
            notes: query.notes.unwrap_or_default(),
            activate: query.activate.unwrap_or(false),
        },
        other => {
            return Err(RouteError::new(
                RequestCode::UnsupportedMediaType,
                format!(
                    "Cannot read an upload of type {other:?}: send the component as application/wasm (or application/octet-stream), or multipart/form-data with the fields component, cases, notes and activate."
                ),
            ));
        }
    };
    if submission.component.is_empty() {
        return Err(RouteError::invalid(
            "component",
            "The upload holds no component.",
        ));
    }
    if submission.component.len() > limit {
        return Err(too_large(submission.component.len(), limit));
    }
    if submission.notes.len() > 4096 {
        return Err(RouteError::invalid(
            "notes",
            "`notes` may be at most 4096 bytes.",
        ));
    }
    Ok((submission, charge))
}

async fn multipart(content_type: &str, bytes: Bytes) -> Result<Submission, RouteError> {
    let bad =
        |e: multer::Error| RouteError::invalid("body", format!("Malformed multipart body: {e}"));
    let boundary = multer::parse_boundary(content_type).map_err(bad)?;
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(bytes) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut component = None;
    let mut cases = None;
    let mut notes = String::new();
    let mut activate = false;
    while let Some(field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        let data = field.bytes().await.map_err(bad)?;
        let text = || {
            String::from_utf8(data.to_vec()).map_err(|_| {
                RouteError::invalid(&name, format!("Field `{name}` is not UTF-8 text."))
            })
        };
        match name.as_str() {
            "component" => component = Some(data.clone()),
            "cases" => cases = Some(text()?),
            "notes" => notes = text()?,
            "activate" => {
                activate = match text()?.trim() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" | "" => false,
                    other => {
                        return Err(RouteError::invalid(
                            "activate",
                            format!("`activate` is true or false, not {other:?}."),
                        ));
                    }
                }
            }
            other => {
                return Err(RouteError::invalid(
                    other,
                    format!(
                        "Unknown form field {other:?}; an upload takes component, cases, notes and activate."
                    ),
                ));
            }
        }
    }
    let Some(component) = component else {
        return Err(RouteError::invalid(
            "component",
            "The form has no `component` field (the policy's .wasm file).",
        ));
    };
    Ok(Submission {
        component,
        cases,
        notes,
        activate,
    })
}

/// Runs the uploaded case file; every case must pass, and all of them
/// within `cpu` of this thread's CPU time.
fn check_cases(
    policy: &crate::policy::Policy,
    text: &str,
    max_cases: usize,
    cpu: Duration,
) -> Result<Value, RouteError> {
    let file = harness::parse_case_file(text).map_err(|e| RouteError::invalid("cases", e))?;
    if file.cases.is_empty() {
        return Err(RouteError::invalid(
            "cases",
            "The case file holds no cases.",
        ));
    }
    if file.cases.len() > max_cases {
        return Err(RouteError {
            param: Some("cases".into()),
            ..RouteError::new(
                AdminCode::TooManyCases,
                format!(
                    "The case file holds {} cases; an upload may carry at most {max_cases} (plugins.max_cases).",
                    file.cases.len()
                ),
            )
        });
    }
    let started = thread_cpu_time();
    let mut reports = Vec::with_capacity(file.cases.len());
    for case in &file.cases {
        reports.push(harness::run_case(policy, &file, case));
        let used = thread_cpu_time().saturating_sub(started);
        if used > cpu && reports.len() < file.cases.len() {
            return Err(RouteError {
                param: Some("cases".into()),
                ..RouteError::new(
                    AdminCode::CasesCpuExceeded,
                    format!(
                        "The cases used {} ms of CPU time after {} of {}; an upload's cases may use {} ms in all (plugins.cases_cpu_ms).",
                        used.as_millis(),
                        reports.len(),
                        file.cases.len(),
                        cpu.as_millis()
                    ),
                )
            });
        }
    }
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| format!("{}: {}", r.name, r.failures.join("; ")))
        .collect();
    if !failed.is_empty() {
        return Err(RouteError {
            param: Some("cases".into()),
            ..RouteError::new(
                AdminCode::PolicyCasesFailed,
                format!(
                    "The policy failed {} of its {} uploaded cases, so it was not stored. {}",
                    failed.len(),
                    reports.len(),
                    failed.join(" | ")
                ),
            )
        });
    }
    Ok(json!({ "total": reports.len(), "passed": reports.len() }))
}

/// `POST /admin/v1/teams/{team}/policies`.
pub async fn upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    team: PathResult<String>,
    query: Result<Query<UploadQuery>, QueryRejection>,
    body: Body,
) -> Answer {
    let team = path(team)?;
    let caller = authorize_team(&state, &headers, &team)?;
    let Query(query) = query.map_err(|e| RouteError::invalid("query", e.body_text()))?;
    find_team(&state, &team)?;
    let settings = &state.config.plugins;
    let limit = settings.max_upload_bytes;
    let (submission, _charge) =
        read_submission(&state.load.intake, &headers, query, body, limit).await?;
    let teams = state.directory.clone();
    let component = submission.component.clone();
    let cases = submission.cases.clone();
    let (max_cases, cases_cpu) = (settings.max_cases, settings.cases_cpu);
    // Validate before taking the write lock: compiling takes a while. A few
    // uploads at a time, on a low-priority thread (the compile worker it
    // starts inherits the priority), never on the threads serving /v1.
    let _slot = state.directory.uploads().enter().await.map_err(|_| {
        let mut e = RouteError::new(AdminCode::UploadsBusy, "The gateway is compiling as many policy uploads as it may (plugins.compile_slots, plugins.compile_queue); retry shortly.",
        );
        e.retry_after = Some(settings.compile_timeout.min(Duration::from_secs(10)));
        e
    })?;
    let (policy, case_summary) = background(move || {
        let policy = teams.runtime().load(&component).map_err(|e| RouteError {
            param: Some("component".into()),
            ..RouteError::new(
                AdminCode::InvalidPolicy,
                format!("The component was rejected: {e}."),
            )
        })?;
        let summary = match &cases {
            Some(text) => Some(check_cases(&policy, text, max_cases, cases_cpu)?),
            None => None,
        };
        Ok((policy, summary))
    })
    .await?;
    let (name, uploader) = (team.clone(), caller.describe());
    let stored = policy.clone();
    let Submission {
        component,
        notes,
        activate,
        ..
    } = submission;
    let version = write(&state, move |writer| {
        let store = writer.store();
        let version = store
            .add_policy_version(
                &name,
                &Upload {
                    component: &component,
                    sha256: stored.sha256(),
                    wit_version: stored.wit_version(),
                    uploader: &uploader,
                    notes: &notes,
                },
            )
            .map_err(store_error)?;
        writer.remember(&stored);
        if activate {
            store.activate(&name, version).map_err(store_error)?;
        }
        Ok(version)
    })
    .await?;
    let info = policy.info();
    ok(
        StatusCode::CREATED,
        json!({
            "object": "policy_version",
            "team": team,
            "version": version,
            "name": info.name,
            "plugin_version": info.version,
            "sha256": policy.sha256(),
            "wit_version": policy.wit_version(),
            "size": policy.size(),
            "uploader": caller.describe(),
            "cases": case_summary,
            "active": activate,
        }),
    )
}

/// Runs `work` on a thread of its own at a lower scheduling priority (nice
/// 10), so compiling and testing an upload takes CPU only the serving
/// threads leave.
async fn background<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RouteError> + Send + 'static,
) -> Result<T, RouteError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("policy-upload".into())
        .spawn(move || {
            // SAFETY: gettid and setpriority only act on this thread.
            unsafe {
                let tid = libc::gettid();
                libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
            }
            let _ = tx.send(work());
        });
    let failed = |what: String| RouteError::new(ServerCode::Internal, what);
    spawned.map_err(|e| failed(format!("cannot start the upload thread: {e}")))?;
    rx.await
        .unwrap_or_else(|_| Err(failed("the upload thread failed".into())))
}

/// CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes `now`.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

/// `GET /admin/v1/teams/{team}/policies`: every version, and which serves.
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    team: PathResult<String>,
) -> Answer {
    let team = path(team)?;
    authorize_team(&state, &headers, &team)?;
    let entry = find_team(&state, &team)?;
    let teams = state.directory.clone();
    let name = team.clone();
    let versions =
        blocking(move || teams.store().policy_versions(&name).map_err(store_error)).await?;
    let active = entry.policy.as_ref().map(|p| p.version);
    let data: Vec<Value> = versions
        .into_iter()
        .map(|v| {
            json!({
                "object": "policy_version",
                "version": v.version,
                "sha256": v.sha256,
                "wit_version": v.wit_version,
                "uploader": v.uploader,
                "notes": v.notes,
                "created_at": v.created_at,
                "active": Some(v.version) == active,
            })
        })
        .collect();
    let view = team_view(&entry);
    ok(
        StatusCode::OK,
        json!({ "object": "list", "team": team, "policy": view["policy"], "data": data }),
    )
}

/// `POST /admin/v1/teams/{team}/policies/{version}/activate`: new requests
/// use it at once; requests already routing finish on the old one.
pub async fn activate(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: PathResult<(String, String)>,
) -> Answer {
    let (team, version) = path(params)?;
    authorize_team(&state, &headers, &team)?;
    let version: u32 = version.trim_start_matches('v').parse().map_err(|_| {
        RouteError::invalid(
            "version",
            format!("Policy version {version:?} is not a version number."),
        )
    })?;
    find_team(&state, &team)?;
    let name = team.clone();
    write(&state, move |writer| {
        check_loads(writer, &name, version)?;
        writer
            .store()
            .activate(&name, version)
            .map_err(store_error)?;
        Ok(())
    })
    .await?;
    team_answer(&state, StatusCode::OK, &team)
}

/// Compiles (or finds compiled) the team's stored `version`, so it is
/// activated or attached only if it still loads on this gateway.
pub(crate) fn check_loads(
    writer: &crate::directory::Directory,
    team: &str,
    version: u32,
) -> Result<(), RouteError> {
    let bytes = writer
        .store()
        .policy_component(team, version)
        .map_err(store_error)?;
    writer.compile(&bytes).map_err(|e| {
        RouteError::new(
            AdminCode::InvalidPolicy,
            format!("Version {version} does not load on this gateway: {e}."),
        )
    })?;
    Ok(())
}

/// `POST /admin/v1/teams/{team}/policies/rollback`: re-activates the version
/// active before the current one.
pub async fn rollback(
    State(state): State<AppState>,
    headers: HeaderMap,
    team: PathResult<String>,
) -> Answer {
    let team = path(team)?;
    authorize_team(&state, &headers, &team)?;
    find_team(&state, &team)?;
    let name = team.clone();
    write(&state, move |writer| {
        writer.store().rollback(&name).map_err(store_error)?;
        Ok(())
    })
    .await?;
    team_answer(&state, StatusCode::OK, &team)
}

/// `GET /admin/v1/teams/{team}/policy-config`: the JSON the team's policy
/// receives as `request.config`.
pub async fn get_config(
    State(state): State<AppState>,
    headers: HeaderMap,
    team: PathResult<String>,
) -> Answer {
    let team = path(team)?;
    authorize_team(&state, &headers, &team)?;
    let entry = find_team(&state, &team)?;
    let config: Value = serde_json::from_str(&entry.team.policy_config).unwrap_or(Value::Null);
    ok(
        StatusCode::OK,
        json!({ "object": "policy_config", "team": team, "policy_config": config }),
    )
}

/// `PUT /admin/v1/teams/{team}/policy-config`: a JSON object; new requests
/// carry it at once.
pub async fn put_config(
    State(state): State<AppState>,
    headers: HeaderMap,
    team: PathResult<String>,
    body: Body,
) -> Answer {
    let team = path(team)?;
    authorize_team(&state, &headers, &team)?;
    let config = read_json(&state, &headers, body, false).await?;
    find_team(&state, &team)?;
    let text = Value::Object(config.clone()).to_string();
    let name = team.clone();
    write(&state, move |writer| {
        writer
            .store()
            .set_policy_config(&name, &text)
            .map_err(store_error)?;
        Ok(())
    })
    .await?;
    ok(
        StatusCode::OK,
        json!({ "object": "policy_config", "team": team, "policy_config": config }),
    )
}

/// `?api=` of an explain request: the API the body is written for.
#[derive(Debug, Deserialize)]
pub struct ExplainQuery {
    /// `chat` (the default), `responses` or `messages`.
    api: Option<String>,
}

/// `POST /admin/v1/teams/{team}/explain[?api=chat|responses|messages]`: a
/// request body as the team's callers would send it; the answer is how the
/// gateway would route it (features, every pair a hard filter removed and
/// why, the candidates, the policy's plan, the first attempt), as a dry run
/// that calls no provider and charges nothing.
pub async fn explain(
    State(state): State<AppState>,
    headers: HeaderMap,
    team: PathResult<String>,
    query: Result<Query<ExplainQuery>, QueryRejection>,
    body: Body,
) -> Answer {
    use crate::api::endpoint::Endpoint;
    let team = path(team)?;
    authorize_team(&state, &headers, &team)?;
    let entry = find_team(&state, &team)?;
    let Query(query) = query.map_err(|e| RouteError::invalid("api", e.body_text()))?;
    let server = &state.config.server;
    let limit = server.max_body_bytes.max(server.max_image_body_bytes);
    let bytes = super::read_body(&state, &headers, body, limit).await?;
    super::check_json_shape(&state, &bytes)?;
    let request = match query.api.as_deref().unwrap_or("chat") {
        "chat" => crate::api::chat::Chat::parse(&bytes, &headers)?.0,
        "responses" => crate::api::responses::Responses::parse(&bytes, &headers)?.0,
        "messages" => crate::api::messages::Messages::parse(&bytes, &headers)?.0,
        other => {
            return Err(RouteError::invalid(
                "api",
                format!("unknown api {other:?} (expected chat, responses or messages)"),
            ));
        }
    };
    let explanation = state.executor.explain(&entry, request).await;
    ok(StatusCode::OK, explanation)
}
