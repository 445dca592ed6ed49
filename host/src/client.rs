//! A client of the admin API, behind `switchyard policy push | list |
//! activate | rollback | explain` and `switchyard log export`.

use serde_json::Value;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the gateway at {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("bad gateway URL {url:?}: {problem}")]
    BadUrl { url: String, problem: String },
    #[error("{status}: {message}")]
    Api { status: u16, message: String },
}

/// The admin API of one gateway, with one token.
pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    /// `url` is the gateway's base URL (e.g. `http://127.0.0.1:4000`).
    pub fn new(url: &str, token: &str) -> AdminClient {
        AdminClient {
            base: url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: reqwest::Client::new(),
        }
    }

    /// `{base}/admin/v1/{segments...}`, each segment escaped.
    fn url(&self, segments: &[&str]) -> Result<reqwest::Url, ClientError> {
        let bad = |problem: String| ClientError::BadUrl {
            url: self.base.clone(),
            problem,
        };
        let mut url = reqwest::Url::parse(&self.base).map_err(|e| bad(e.to_string()))?;
        url.path_segments_mut()
            .map_err(|()| bad("it cannot take a path".into()))?
            .pop_if_empty()
            .extend(["admin", "v1"])
            .extend(segments);
        Ok(url)
    }

    /// `{base}/admin/v1/teams/{team}/{rest...}`, each segment escaped.
    fn team_url(&self, team: &str, rest: &[&str]) -> Result<reqwest::Url, ClientError> {
        let mut segments = vec!["teams", team];
        segments.extend_from_slice(rest);
        self.url(&segments)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: self.base.clone(),
                source,
            })?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let message = body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map_or_else(|| body.to_string(), str::to_string);
        Err(ClientError::Api { status, message })
    }

    /// Uploads a component (with its case file, if any); activates it
    /// when `activate`.
    pub async fn push(
        &self,
        team: &str,
        component: &[u8],
        cases: Option<&str>,
        notes: &str,
        activate: bool,
    ) -> Result<Value, ClientError> {
        let mut form = reqwest::multipart::Form::new()
            .part(
                "component",
                reqwest::multipart::Part::bytes(component.to_vec()).file_name("policy.wasm"),
            )
            .text("notes", notes.to_string())
            .text("activate", activate.to_string());
        if let Some(cases) = cases {
            form = form.part(
                "cases",
                reqwest::multipart::Part::text(cases.to_string()).file_name("cases.json"),
            );
        }
        self.send(
            self.http
                .post(self.team_url(team, &["policies"])?)
                .multipart(form),
        )
        .await
    }

    /// The team's versions and which one serves.
    pub async fn list(&self, team: &str) -> Result<Value, ClientError> {
        self.send(self.http.get(self.team_url(team, &["policies"])?))
            .await
    }

    /// Activates a version.
    pub async fn activate(&self, team: &str, version: u32) -> Result<Value, ClientError> {
        self.send(
            self.http
                .post(self.team_url(team, &["policies", &version.to_string(), "activate"])?),
        )
        .await
    }

    /// Re-activates the version active before the current one.
    pub async fn rollback(&self, team: &str) -> Result<Value, ClientError> {
        self.send(
            self.http
                .post(self.team_url(team, &["policies", "rollback"])?),
        )
        .await
    }

    /// How the gateway would route `body` (a request in `api`'s shape:
    /// `chat`, `responses` or `messages`) for `team`, as a dry run.
    pub async fn explain(
        &self,
        team: &str,
        api: &str,
        body: Vec<u8>,
    ) -> Result<Value, ClientError> {
        let mut url = self.team_url(team, &["explain"])?;
        url.query_pairs_mut().append_pair("api", api);
        self.send(
            self.http
                .post(url)
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    /// One page of the request log (`GET /admin/v1/log` with `query`).
    pub async fn log_page(&self, query: &[(&str, String)]) -> Result<Value, ClientError> {
        let mut url = self.url(&["log"])?;
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        self.send(self.http.get(url)).await
    }

    /// Attaches a version as the team's shadow, deciding on `sample` of its
    /// requests.
    pub async fn shadow_attach(
        &self,
        team: &str,
        version: u32,
        sample: f64,
    ) -> Result<Value, ClientError> {
        let body = serde_json::json!({ "version": version, "sample": sample });
        self.send(self.http.put(self.team_url(team, &["shadow"])?).json(&body))
            .await
    }

    /// The team's shadow and what it decided since it was attached.
    pub async fn shadow(&self, team: &str) -> Result<Value, ClientError> {
        self.send(self.http.get(self.team_url(team, &["shadow"])?))
            .await
    }

    /// Detaches the team's shadow.
    pub async fn shadow_detach(&self, team: &str) -> Result<Value, ClientError> {
        self.send(self.http.delete(self.team_url(team, &["shadow"])?))
            .await
    }

    /// Makes the team's shadow its active version.
    pub async fn shadow_promote(&self, team: &str) -> Result<Value, ClientError> {
        self.send(self.http.post(self.team_url(team, &["shadow", "promote"])?))
            .await
    }
}
