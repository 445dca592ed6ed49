//! The error a request that could not be served gets: an HTTP status and an
//! OpenAI-style body, with the attempt trail when attempts were made.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_wire::RequestError;

use super::AttemptRecord;
use crate::errors::{ErrorCode, RequestCode};

impl From<RequestError> for RouteError {
    fn from(e: RequestError) -> Self {
        Self {
            param: e.param,
            ..Self::new(e.code, e.message)
        }
    }
}

/// A request that could not be served, with an OpenAI-style error.
#[derive(Debug, Clone)]
pub struct RouteError {
    /// The HTTP status: the code's, except where the code says otherwise
    /// (`upstream_rejected_request` answers with the provider's status).
    pub status: u16,
    /// The error `code` (and the OpenAI error `type` it implies).
    pub code: ErrorCode,
    pub message: String,
    pub param: Option<String>,
    pub retry_after: Option<Duration>,
    pub trail: Vec<AttemptRecord>,
    /// The plan's label, when the policy produced a plan.
    pub label: Option<String>,
}

impl RouteError {
    pub fn new(code: impl Into<ErrorCode>, message: impl Into<String>) -> Self {
        let code = code.into();
        Self {
            status: code.status(),
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
            ..Self::new(RequestCode::InvalidRequest, message)
        }
    }

    /// The OpenAI-style body, with the attempt trail under `switchyard`.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "error": {
                "message": self.message,
                "type": self.code.kind(),
                "code": self.code.as_str(),
                "param": self.param,
            }
        });
        if !self.trail.is_empty() {
            body["switchyard"] = json!({ "attempts": self.trail.len(), "trail": self.trail });
        }
        body
    }
}
