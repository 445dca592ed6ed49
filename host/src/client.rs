//! A client of the admin API's policy routes, behind `switchyard policy
//! push | list | activate | rollback`.

use serde_json::Value;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the gateway at {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("{status}: {message}")]
    Api { status: u16, message: String },
}

/// A `multipart/form-data` body: its content type and bytes. Each field is
/// (name, file name, contents).
pub fn multipart(fields: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let mut seed = [0u8; 12];
    // Any boundary absent from the contents will do; random makes a clash
    // with uploaded bytes practically impossible.
    if getrandom::getrandom(&mut seed).is_err() {
        seed = *b"switchyard-b";
    }
    let boundary: String = std::iter::once("----switchyard".to_string())
        .chain(seed.iter().map(|b| format!("{b:02x}")))
        .collect();
    let mut body = Vec::new();
    for (name, file, contents) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(file) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(contents);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
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

    fn team_url(&self, team: &str, rest: &str) -> String {
        let mut team_part = String::new();
        for b in team.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
                team_part.push(b as char);
            } else {
                team_part.push_str(&format!("%{b:02X}"));
            }
        }
        format!("{}/admin/v1/teams/{team_part}{rest}", self.base)
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
        let flag = if activate { "true" } else { "false" };
        let mut fields: Vec<(&str, Option<&str>, &[u8])> = vec![
            ("component", Some("policy.wasm"), component),
            ("notes", None, notes.as_bytes()),
            ("activate", None, flag.as_bytes()),
        ];
        if let Some(cases) = cases {
            fields.push(("cases", Some("cases.json"), cases.as_bytes()));
        }
        let (content_type, body) = multipart(&fields);
        self.send(
            self.http
                .post(self.team_url(team, "/policies"))
                .header("content-type", content_type)
                .body(body),
        )
        .await
    }

    /// The team's versions and which one serves.
    pub async fn list(&self, team: &str) -> Result<Value, ClientError> {
        self.send(self.http.get(self.team_url(team, "/policies")))
            .await
    }

    /// Activates a version.
    pub async fn activate(&self, team: &str, version: u32) -> Result<Value, ClientError> {
        self.send(
            self.http
                .post(self.team_url(team, &format!("/policies/{version}/activate"))),
        )
        .await
    }

    /// Re-activates the version active before the current one.
    pub async fn rollback(&self, team: &str) -> Result<Value, ClientError> {
        self.send(self.http.post(self.team_url(team, "/policies/rollback")))
            .await
    }
}
