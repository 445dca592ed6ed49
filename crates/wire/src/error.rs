//! Why a request body was refused before routing: the errors the inbound
//! translations return. The HTTP edge renders them in the caller's API shape
//! (status 400); [`RequestCode`] is the error `code` of the body and the label
//! of the metric that counts them.

/// A request body the gateway cannot take as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    pub code: RequestCode,
    /// The offending parameter, as a path into the caller's body
    /// (`input[2].content`).
    pub param: Option<String>,
    pub message: String,
}

/// What kind of refusal a [`RequestError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestCode {
    /// The body does not follow the API's schema.
    InvalidRequest,
    /// A parameter the API defines that the gateway cannot honour.
    UnsupportedParameter,
    /// A parameter the API does not define.
    UnknownParameter,
    /// The body is not JSON, or not a JSON object.
    InvalidJson,
    /// The Messages API's `anthropic-version` header is missing.
    MissingAnthropicVersion,
    /// The body stopped arriving.
    RequestTimeout,
    /// The body (or a part of it) is over its size limit.
    RequestTooLarge,
    /// No such route.
    UnknownUrl,
    /// The body's content type is not one the route takes.
    UnsupportedMediaType,
}

impl RequestCode {
    /// The error `code` in the body, and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestCode::InvalidRequest => "invalid_request",
            RequestCode::UnsupportedParameter => "unsupported_parameter",
            RequestCode::UnknownParameter => "unknown_parameter",
            RequestCode::InvalidJson => "invalid_json",
            RequestCode::MissingAnthropicVersion => "missing_anthropic_version",
            RequestCode::RequestTimeout => "request_timeout",
            RequestCode::RequestTooLarge => "request_too_large",
            RequestCode::UnknownUrl => "unknown_url",
            RequestCode::UnsupportedMediaType => "unsupported_media_type",
        }
    }
}

impl RequestError {
    pub fn new(code: RequestCode, param: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            param: Some(param.to_owned()),
            message: message.into(),
        }
    }

    /// The body breaks the API's schema at `param`.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self::new(RequestCode::InvalidRequest, param, message)
    }

    /// The gateway cannot honour `param`.
    pub fn unsupported(param: &str, message: impl Into<String>) -> Self {
        Self::new(RequestCode::UnsupportedParameter, param, message)
    }

    /// `param` is not part of the API.
    pub fn unknown(param: &str, message: impl Into<String>) -> Self {
        Self::new(RequestCode::UnknownParameter, param, message)
    }
}
