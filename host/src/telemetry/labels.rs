//! The label set of every metric family, one struct per family, so a series
//! is keyed by named, typed fields rather than positional strings; and the
//! fixed vocabularies (outcomes, reasons, scopes) as enums.

use crate::errors::ErrorCode;

/// A family's labels: their names, in order, and one series' values.
pub trait LabelSet: Ord + Clone {
    /// Label names, in the order [`LabelSet::values`] gives the values.
    const NAMES: &'static [&'static str];
    fn values(&self) -> Vec<&str>;
}

/// Declares a label struct: its fields are its labels, named as written.
macro_rules! label_set {
    ($(#[$doc:meta])* $name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
        pub struct $name { $(pub $field: $ty),* }

        impl LabelSet for $name {
            const NAMES: &'static [&'static str] = &[$(stringify!($field)),*];
            fn values(&self) -> Vec<&str> {
                vec![$(AsRef::<str>::as_ref(&self.$field)),*]
            }
        }
    };
}

/// Declares a fixed vocabulary of label values.
macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($variant),* }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                match self { $($name::$variant => $text),* }
            }
        }
    };
}

vocabulary!(
    /// Why a candidate was removed before the policy ran.
    Exclusion { CircuitOpen => "circuit_open", FeatureUptime => "feature_uptime" }
);
vocabulary!(
    /// Who the gateway's own rate limiter counted: a team (per request) or
    /// an account (per attempt).
    LimitScope { Team => "team", Account => "account" }
);
vocabulary!(
    /// Input or output tokens.
    TokenKind { Input => "input", Output => "output" }
);

/// How a routed request ended: `ok`, `client_closed`, or the error code the
/// caller got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RequestOutcome {
    Ok,
    /// The caller went away before the answer was ready.
    ClientClosed,
    Failed(ErrorCodeLabel),
}

/// An [`ErrorCode`] as a label value (ordered by its text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ErrorCodeLabel(&'static str);

impl From<ErrorCode> for RequestOutcome {
    fn from(code: ErrorCode) -> Self {
        RequestOutcome::Failed(ErrorCodeLabel(code.as_str()))
    }
}

impl AsRef<str> for RequestOutcome {
    fn as_ref(&self) -> &str {
        match self {
            RequestOutcome::Ok => "ok",
            RequestOutcome::ClientClosed => "client_closed",
            RequestOutcome::Failed(ErrorCodeLabel(code)) => code,
        }
    }
}

label_set!(
    /// `switchyard_http_responses_total`.
    HttpLabels { route: String, status: String }
);
label_set!(
    /// `switchyard_requests_total`.
    RequestLabels { team: String, provider: String, model: String, outcome: RequestOutcome }
);
label_set!(
    /// `switchyard_request_duration_seconds`, `switchyard_cost_usd_total`.
    TeamModelLabels { team: String, provider: String, model: String }
);
label_set!(
    /// `switchyard_attempts_total` and `switchyard_health_checks_total`
    /// (outcome: ok, broken, error, timeout, rate_limited, rejected).
    AttemptLabels { provider: String, model: String, outcome: &'static str }
);
label_set!(
    /// `switchyard_upstream_latency_seconds`,
    /// `switchyard_time_to_first_token_seconds`,
    /// `switchyard_stream_interruptions_total`.
    ModelLabels { provider: String, model: String }
);
label_set!(
    /// `switchyard_tokens_total`.
    TokenLabels { provider: String, model: String, kind: TokenKind }
);
label_set!(
    /// `switchyard_policy_decision_seconds`.
    TeamLabels { team: String }
);
label_set!(
    /// `switchyard_policy_faults_total`, `switchyard_policy_misbehaviour_total`
    /// (version: `vN` or `default`).
    PolicyLabels { team: String, version: String, kind: &'static str }
);
label_set!(
    /// `switchyard_candidate_exclusions_total`.
    ExclusionLabels { provider: String, model: String, reason: Exclusion }
);
label_set!(
    /// `switchyard_limiter_rejections_total` (limit: rpm or tpm).
    LimiterLabels { scope: LimitScope, name: String, limit: &'static str }
);
label_set!(
    /// `switchyard_stream_rescues_total` (kind: continuation, regenerate;
    /// outcome: ok, failed). Provider and model: the rescuing candidate (or
    /// `none` when no candidate could take over).
    RescueLabels { provider: String, model: String, kind: &'static str, outcome: &'static str }
);
label_set!(
    /// `switchyard_cooldowns_total` (reason: rate_limited or quota).
    CooldownLabels { provider: String, reason: &'static str }
);
