//! The label set of every metric family, one struct per family, so a series
//! is keyed by named, typed fields rather than positional strings; and the
//! fixed vocabularies (outcomes, reasons, scopes) as enums.

use std::hash::Hash;

use crate::errors::ErrorCode;

/// A family's labels: their names, in order, and one series' values. A
/// series is looked up by its [`LabelSet::Key`], the same labels borrowed,
/// so counting a request allocates nothing once its series exists.
pub trait LabelSet: Ord + Hash + Clone {
    /// Label names, in the order [`LabelSet::values`] gives the values.
    const NAMES: &'static [&'static str];
    /// The labels borrowed: what a count is made with.
    type Key<'a>: Hash + hashbrown::Equivalent<Self>;
    fn values(&self) -> Vec<&str>;
    /// The series' own labels, made the first time it is counted.
    fn from_key(key: &Self::Key<'_>) -> Self;
}

/// One label's value: owned in a series, borrowed in its key. A borrowed
/// value hashes as its owned one does (`str`'s hash for text).
pub trait Field {
    type Ref<'a>: Copy + Hash + Eq;
    fn borrow_field(&self) -> Self::Ref<'_>;
    fn own_field(value: Self::Ref<'_>) -> Self;
}

impl Field for String {
    type Ref<'a> = &'a str;
    fn borrow_field(&self) -> &str {
        self
    }
    fn own_field(value: &str) -> Self {
        value.to_owned()
    }
}

impl Field for &'static str {
    type Ref<'a> = &'static str;
    fn borrow_field(&self) -> &'static str {
        self
    }
    fn own_field(value: &'static str) -> Self {
        value
    }
}

/// Label values of a fixed vocabulary: copied, never allocated.
macro_rules! copy_field {
    ($($ty:ty),*) => {$(
        impl Field for $ty {
            type Ref<'a> = $ty;
            fn borrow_field(&self) -> $ty {
                *self
            }
            fn own_field(value: $ty) -> Self {
                value
            }
        }
    )*};
}

/// Declares a label struct (its fields are its labels, named as written)
/// and its borrowed key.
macro_rules! label_set {
    ($(#[$doc:meta])* $name:ident / $key:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name { $(pub $field: $ty),* }

        #[doc = concat!("[`", stringify!($name), "`] borrowed, to count with.")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $key<'a> { $(pub $field: <$ty as Field>::Ref<'a>),* }

        impl hashbrown::Equivalent<$name> for $key<'_> {
            fn equivalent(&self, owned: &$name) -> bool {
                $(self.$field == owned.$field.borrow_field())&&*
            }
        }

        impl LabelSet for $name {
            const NAMES: &'static [&'static str] = &[$(stringify!($field)),*];
            type Key<'a> = $key<'a>;
            fn values(&self) -> Vec<&str> {
                vec![$(AsRef::<str>::as_ref(&self.$field)),*]
            }
            fn from_key(key: &$key<'_>) -> Self {
                Self { $($field: Field::own_field(key.$field)),* }
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

copy_field!(Exclusion, LimitScope, TokenKind, RequestOutcome);

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
    HttpLabels / HttpKey { route: String, status: String }
);
label_set!(
    /// `switchyard_requests_total`.
    RequestLabels / RequestKey { team: String, provider: String, model: String, outcome: RequestOutcome }
);
label_set!(
    /// `switchyard_request_duration_seconds`, `switchyard_cost_usd_total`.
    TeamModelLabels / TeamModelKey { team: String, provider: String, model: String }
);
label_set!(
    /// `switchyard_attempts_total` and `switchyard_health_checks_total`
    /// (outcome: ok, broken, error, timeout, rate_limited, rejected).
    AttemptLabels / AttemptKey { provider: String, model: String, outcome: &'static str }
);
label_set!(
    /// `switchyard_upstream_latency_seconds`,
    /// `switchyard_time_to_first_token_seconds`,
    /// `switchyard_stream_interruptions_total`.
    ModelLabels / ModelKey { provider: String, model: String }
);
label_set!(
    /// `switchyard_tokens_total`.
    TokenLabels / TokenKey { provider: String, model: String, kind: TokenKind }
);
label_set!(
    /// `switchyard_policy_decision_seconds`.
    TeamLabels / TeamKey { team: String }
);
label_set!(
    /// `switchyard_policy_faults_total`, `switchyard_policy_misbehaviour_total`
    /// (version: `vN` or `default`).
    PolicyLabels / PolicyKey { team: String, version: String, kind: &'static str }
);
label_set!(
    /// `switchyard_candidate_exclusions_total`.
    ExclusionLabels / ExclusionKey { provider: String, model: String, reason: Exclusion }
);
label_set!(
    /// `switchyard_limiter_rejections_total` (limit: rpm or tpm).
    LimiterLabels / LimiterKey { scope: LimitScope, name: String, limit: &'static str }
);
label_set!(
    /// `switchyard_stream_rescues_total` (kind: continuation, regenerate;
    /// outcome: ok, failed). Provider and model: the rescuing candidate (or
    /// `none` when no candidate could take over).
    RescueLabels / RescueKey { provider: String, model: String, kind: &'static str, outcome: &'static str }
);
label_set!(
    /// `switchyard_cooldowns_total` (reason: rate_limited or quota).
    CooldownLabels / CooldownKey { provider: String, reason: &'static str }
);
