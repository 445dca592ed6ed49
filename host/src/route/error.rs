//! The error a request that could not be served gets: an HTTP status and an
//! OpenAI-style body, with the attempt trail when attempts were made.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_wire::RequestError;

use super::AttemptRecord;

impl From<RequestError> for RouteError {
    fn from(e: RequestError) -> Self {
        Self {
            param: e.param,
            ..Self::new(400, "invalid_request_error", e.code.as_str(), e.message)
        }
    }
}

/// A request that could not be served, with an OpenAI-style error.
#[derive(Debug, Clone)]
pub struct RouteError {
    pub status: u16,
    /// OpenAI error `type`.
    pub kind: &'static str,
    /// OpenAI error `code`.
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub retry_after: Option<Duration>,
    pub trail: Vec<AttemptRecord>,
    /// The plan's label, when the policy produced a plan.
    pub label: Option<String>,
}

impl RouteError {
    pub fn new(
        status: u16,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            message: message.into(),
            param: None,
            retry_after: None,
            trail: Vec::new(),
            label: None,
        }
    }

    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_string()),
            ..Self::new(400, "invalid_request_error", "invalid_request", message)
        }
    }

    /// The OpenAI-style body, with the attempt trail under `switchyard`.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "code": self.code,
                "param": self.param,
            }
        });
        if !self.trail.is_empty() {
            body["switchyard"] = json!({ "attempts": self.trail.len(), "trail": self.trail });
        }
        body
    }
}
