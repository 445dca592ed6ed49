//! The gateway's error codes, one enum per category, each code with its HTTP
//! status and OpenAI error `type`. A code is what the caller reads in the
//! error body (`error.code`) and what the metrics count
//! (`switchyard_requests_total{outcome}`): both come from [`ErrorCode::as_str`],
//! so they cannot drift apart.
//!
//! | category | enum | raised by |
//! |---|---|---|
//! | request | [`RequestCode`] (in `switchyard_wire`) | the HTTP edge and the inbound translations: the body or its headers |
//! | auth | [`AuthCode`] | the edge: API keys and admin tokens |
//! | routing | [`RoutingCode`] | the executor: no candidate, limits, budgets, the policy, every attempt failing |
//! | upstream | `switchyard_wire::ErrorClass` | provider adapters: one failed attempt (in the trail) |
//! | admin | [`AdminCode`] | the admin API: uploads and team changes |
//! | store | [`StoreCode`] | the embedded store |
//! | server | [`ServerCode`] | the gateway's own capacity and faults |

pub use switchyard_wire::error::RequestCode;

/// API keys and admin tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthCode {
    MissingApiKey,
    InvalidApiKey,
    /// Two credentials that disagree (or the same header twice).
    AmbiguousCredentials,
    MissingAdminToken,
    InvalidAdminToken,
    /// The admin API is off (no admin token configured).
    AdminDisabled,
    /// A team admin token asked for what only the operator may do.
    OperatorOnly,
    /// A team admin token asked about another team.
    OtherTeam,
}

/// Why the executor could not serve a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoutingCode {
    ModelNotFound,
    ModelNotAllowed,
    ProviderNotAllowed,
    /// No configured account serves the model.
    NoProvider,
    /// The policy found no candidate supporting what the request needs.
    NoCapableProvider,
    ZdrUnavailable,
    /// A logical model does not offer a feature the request uses.
    CapabilityNotSupported,
    CircuitOpen,
    BudgetExhausted,
    TeamRateLimited,
    AllProvidersRateLimited,
    AllProvidersFailed,
    /// A provider refused the request itself (its 4xx): never retried.
    UpstreamRejectedRequest,
    /// The request is longer than every candidate's context window that was
    /// tried.
    ContextLengthExceeded,
    /// The policy refused for a reason of its own (bad config, internal).
    RoutingPolicyError,
    /// The policy trapped, overran its limits, or returned an invalid plan
    /// and the default policy could not stand in.
    RoutingPolicyFault,
}

/// The admin API's own refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminCode {
    InvalidPolicy,
    UploadsBusy,
    UploadTooLarge,
    TooManyCases,
    CasesCpuExceeded,
    PolicyCasesFailed,
    /// The team is declared in the config file, not the store.
    TeamInConfig,
    /// A shadow must be another version than the active one.
    ShadowIsActive,
}

/// The embedded store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreCode {
    /// The store failed (a full disk, a corrupt file): nothing was written.
    StoreUnavailable,
    TeamNotFound,
    TeamExists,
    PolicyVersionNotFound,
    NothingToRollBack,
    /// The team has no shadow policy attached.
    NoShadow,
    KeyExists,
    KeyNotFound,
}

/// The gateway's own capacity and faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerCode {
    /// At a capacity limit (in-flight requests, request memory): retry.
    Overloaded,
    Internal,
    /// The operating system gave no randomness for a new key.
    NoRandomness,
}

/// Any error code the gateway answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    Request(RequestCode),
    Auth(AuthCode),
    Routing(RoutingCode),
    Admin(AdminCode),
    Store(StoreCode),
    Server(ServerCode),
}

macro_rules! into_code {
    ($($t:ident => $v:ident),*) => {$(
        impl From<$t> for ErrorCode {
            fn from(code: $t) -> Self {
                ErrorCode::$v(code)
            }
        }
    )*};
}
into_code!(RequestCode => Request, AuthCode => Auth, RoutingCode => Routing, AdminCode => Admin, StoreCode => Store, ServerCode => Server);

impl ErrorCode {
    /// The error body's `code`, and the metrics' label.
    pub fn as_str(self) -> &'static str {
        self.spec().0
    }

    /// The HTTP status the code is answered with.
    pub fn status(self) -> u16 {
        self.spec().1
    }

    /// The OpenAI error `type`.
    pub fn kind(self) -> &'static str {
        self.spec().2
    }

    fn spec(self) -> (&'static str, u16, &'static str) {
        const INVALID: &str = "invalid_request_error";
        const PERMISSION: &str = "permission_error";
        const RATE: &str = "rate_limit_error";
        const SERVER: &str = "server_error";
        const UPSTREAM: &str = "upstream_error";
        const NOT_FOUND: &str = "not_found_error";
        match self {
            ErrorCode::Request(c) => match c {
                RequestCode::InvalidRequest
                | RequestCode::UnsupportedParameter
                | RequestCode::UnknownParameter
                | RequestCode::InvalidJson
                | RequestCode::MissingAnthropicVersion => (c.as_str(), 400, INVALID),
                RequestCode::RequestTimeout => (c.as_str(), 408, INVALID),
                RequestCode::RequestTooLarge => (c.as_str(), 413, INVALID),
                RequestCode::UnknownUrl => (c.as_str(), 404, INVALID),
                RequestCode::UnsupportedMediaType => (c.as_str(), 415, INVALID),
            },
            ErrorCode::Auth(c) => match c {
                AuthCode::MissingApiKey => ("missing_api_key", 401, INVALID),
                AuthCode::InvalidApiKey => ("invalid_api_key", 401, INVALID),
                AuthCode::AmbiguousCredentials => ("ambiguous_credentials", 401, INVALID),
                AuthCode::MissingAdminToken => ("missing_admin_token", 401, INVALID),
                AuthCode::InvalidAdminToken => ("invalid_admin_token", 401, INVALID),
                AuthCode::AdminDisabled => ("admin_disabled", 403, PERMISSION),
                AuthCode::OperatorOnly => ("operator_only", 403, PERMISSION),
                AuthCode::OtherTeam => ("other_team", 403, PERMISSION),
            },
            ErrorCode::Routing(c) => match c {
                RoutingCode::ModelNotFound => ("model_not_found", 404, INVALID),
                RoutingCode::ModelNotAllowed => ("model_not_allowed", 403, PERMISSION),
                RoutingCode::ProviderNotAllowed => ("provider_not_allowed", 403, PERMISSION),
                RoutingCode::NoProvider => ("no_provider", 424, UPSTREAM),
                RoutingCode::NoCapableProvider => ("no_capable_provider", 422, INVALID),
                RoutingCode::ZdrUnavailable => ("zdr_unavailable", 422, INVALID),
                RoutingCode::CapabilityNotSupported => ("capability_not_supported", 422, INVALID),
                RoutingCode::CircuitOpen => ("circuit_open", 503, SERVER),
                RoutingCode::BudgetExhausted => ("budget_exhausted", 402, "insufficient_quota"),
                RoutingCode::TeamRateLimited => ("team_rate_limited", 429, RATE),
                RoutingCode::AllProvidersRateLimited => ("all_providers_rate_limited", 429, RATE),
                RoutingCode::AllProvidersFailed => ("all_providers_failed", 424, UPSTREAM),
                // Answered with the provider's own status.
                RoutingCode::UpstreamRejectedRequest => ("upstream_rejected_request", 400, INVALID),
                RoutingCode::ContextLengthExceeded => ("context_length_exceeded", 400, INVALID),
                RoutingCode::RoutingPolicyError => ("routing_policy_error", 503, SERVER),
                RoutingCode::RoutingPolicyFault => ("routing_policy_fault", 503, SERVER),
            },
            ErrorCode::Admin(c) => match c {
                AdminCode::InvalidPolicy => ("invalid_policy", 422, INVALID),
                AdminCode::UploadsBusy => ("uploads_busy", 429, RATE),
                AdminCode::UploadTooLarge => ("upload_too_large", 413, INVALID),
                AdminCode::TooManyCases => ("too_many_cases", 413, INVALID),
                AdminCode::CasesCpuExceeded => ("cases_cpu_exceeded", 422, INVALID),
                AdminCode::PolicyCasesFailed => ("policy_cases_failed", 422, INVALID),
                AdminCode::TeamInConfig => ("team_in_config", 409, INVALID),
                AdminCode::ShadowIsActive => ("shadow_is_active", 409, INVALID),
            },
            ErrorCode::Store(c) => match c {
                StoreCode::StoreUnavailable => ("store_unavailable", 503, SERVER),
                StoreCode::TeamNotFound => ("team_not_found", 404, NOT_FOUND),
                StoreCode::TeamExists => ("team_exists", 409, INVALID),
                StoreCode::PolicyVersionNotFound => ("policy_version_not_found", 404, NOT_FOUND),
                StoreCode::NothingToRollBack => ("nothing_to_roll_back", 409, INVALID),
                StoreCode::NoShadow => ("no_shadow", 404, NOT_FOUND),
                StoreCode::KeyExists => ("key_exists", 409, INVALID),
                StoreCode::KeyNotFound => ("key_not_found", 404, NOT_FOUND),
            },
            ErrorCode::Server(c) => match c {
                ServerCode::Overloaded => ("overloaded", 503, SERVER),
                ServerCode::Internal => ("internal_error", 500, SERVER),
                ServerCode::NoRandomness => ("no_randomness", 503, SERVER),
            },
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct_and_snake_case() {
        let codes: Vec<ErrorCode> = [
            RequestCode::InvalidRequest.into(),
            RequestCode::UnsupportedParameter.into(),
            RequestCode::UnknownParameter.into(),
            RequestCode::InvalidJson.into(),
            RequestCode::MissingAnthropicVersion.into(),
            RequestCode::RequestTimeout.into(),
            RequestCode::RequestTooLarge.into(),
            RequestCode::UnknownUrl.into(),
            RequestCode::UnsupportedMediaType.into(),
            AuthCode::MissingApiKey.into(),
            AuthCode::InvalidApiKey.into(),
            AuthCode::AmbiguousCredentials.into(),
            AuthCode::MissingAdminToken.into(),
            AuthCode::InvalidAdminToken.into(),
            AuthCode::AdminDisabled.into(),
            AuthCode::OperatorOnly.into(),
            AuthCode::OtherTeam.into(),
            RoutingCode::ModelNotFound.into(),
            RoutingCode::ModelNotAllowed.into(),
            RoutingCode::ProviderNotAllowed.into(),
            RoutingCode::NoProvider.into(),
            RoutingCode::NoCapableProvider.into(),
            RoutingCode::ZdrUnavailable.into(),
            RoutingCode::CapabilityNotSupported.into(),
            RoutingCode::CircuitOpen.into(),
            RoutingCode::BudgetExhausted.into(),
            RoutingCode::TeamRateLimited.into(),
            RoutingCode::AllProvidersRateLimited.into(),
            RoutingCode::AllProvidersFailed.into(),
            RoutingCode::UpstreamRejectedRequest.into(),
            RoutingCode::ContextLengthExceeded.into(),
            RoutingCode::RoutingPolicyError.into(),
            RoutingCode::RoutingPolicyFault.into(),
            AdminCode::InvalidPolicy.into(),
            AdminCode::UploadsBusy.into(),
            AdminCode::UploadTooLarge.into(),
            AdminCode::TooManyCases.into(),
            AdminCode::CasesCpuExceeded.into(),
            AdminCode::PolicyCasesFailed.into(),
            AdminCode::TeamInConfig.into(),
            AdminCode::ShadowIsActive.into(),
            StoreCode::StoreUnavailable.into(),
            StoreCode::TeamNotFound.into(),
            StoreCode::TeamExists.into(),
            StoreCode::PolicyVersionNotFound.into(),
            StoreCode::NothingToRollBack.into(),
            StoreCode::NoShadow.into(),
            StoreCode::KeyExists.into(),
            StoreCode::KeyNotFound.into(),
            ServerCode::Overloaded.into(),
            ServerCode::Internal.into(),
            ServerCode::NoRandomness.into(),
        ]
        .to_vec();
        let mut names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
        assert!(
            names
                .iter()
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), codes.len(), "two codes share a name");
        assert!(codes.iter().all(|c| (400..=599).contains(&c.status())));
    }
}
