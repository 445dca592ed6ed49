//! Validation of the plans policies return: the host executes only plans that
//! name offered candidates, at most once each, within the output cap, and that
//! never send a feature to a candidate lacking it without stripping it.

use super::{Candidate, Limits, Plan, Request};

/// A checked plan, in the host's terms: what the executor runs. Its
/// attempts name candidates by position in the list the decision was
/// offered, so nothing downstream looks an id up again.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutePlan {
    pub attempts: Vec<PlannedAttempt>,
    /// The policy's label for the plan.
    pub label: String,
}

/// One attempt of a [`RoutePlan`].
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedAttempt {
    /// Position of the candidate in the list the decision was offered.
    pub candidate: usize,
    /// Features to remove from the request for this attempt.
    pub strip: Vec<String>,
    /// Time limit of the attempt, when the policy set one.
    pub timeout_ms: Option<u32>,
    /// Retries of this attempt, when the policy set them (0.2); else the
    /// gateway's `retries_per_candidate`.
    pub retries: Option<u8>,
}

impl RoutePlan {
    /// The candidate ids of the attempts, in order.
    pub fn ids<'a>(&self, candidates: &'a [Candidate]) -> Vec<&'a str> {
        self.attempts
            .iter()
            .filter_map(|a| candidates.get(a.candidate).map(|c| c.id.as_str()))
            .collect()
    }
}

/// Why a plan was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPlan {
    #[error("the plan has no attempts")]
    Empty,
    #[error("attempt {index} names candidate {id:?}, which was not offered")]
    UnknownCandidate { index: usize, id: String },
    #[error("candidate {id:?} is attempted more than once")]
    DuplicateAttempt { id: String },
    #[error("the plan has {count} attempts; at most {max} are allowed")]
    TooManyAttempts { count: usize, max: usize },
    #[error("{0} exceeds the output size cap")]
    TooLarge(String),
    #[error("attempt on {id:?} strips {feature:?}, which the request does not use")]
    StripNotRequested { id: String, feature: String },
    #[error(
        "attempt on {id:?} would send feature {feature:?}, which that candidate does not support, without stripping it"
    )]
    UnsupportedFeature { id: String, feature: String },
}

/// The checks of a plan's shape every contract version shares: at least
/// one attempt, at most the cap, a label within its size.
pub(super) fn check_shape(
    attempts: usize,
    label: &str,
    limits: &Limits,
) -> Result<(), InvalidPlan> {
    if attempts == 0 {
        return Err(InvalidPlan::Empty);
    }
    if attempts > limits.max_attempts {
        return Err(InvalidPlan::TooManyAttempts {
            count: attempts,
            max: limits.max_attempts,
        });
    }
    if label.len() > limits.max_label_bytes {
        return Err(InvalidPlan::TooLarge(format!(
            "a plan label of {} bytes",
            label.len()
        )));
    }
    Ok(())
}

/// A 0.1 plan checked against the request and the candidates it was
/// offered, in host terms.
pub(super) fn validate(
    plan: Plan,
    request: &Request,
    candidates: &[Candidate],
    limits: &Limits,
) -> Result<RoutePlan, InvalidPlan> {
    check_shape(plan.attempts.len(), &plan.label, limits)?;
    let mut used = vec![false; candidates.len()];
    let mut checked = Vec::with_capacity(plan.attempts.len());
    for (index, attempt) in plan.attempts.into_iter().enumerate() {
        let Some(pos) = candidates.iter().position(|c| c.id == attempt.candidate) else {
            return Err(InvalidPlan::UnknownCandidate {
                index,
                id: super::truncate(attempt.candidate.clone(), limits.max_label_bytes),
            });
        };
        if std::mem::replace(&mut used[pos], true) {
            return Err(InvalidPlan::DuplicateAttempt {
                id: attempt.candidate.clone(),
            });
        }
        let candidate = &candidates[pos];
        if attempt.strip.len() > request.features.len() {
            return Err(InvalidPlan::TooLarge(format!(
                "the strip list of the attempt on {:?}",
                candidate.id
            )));
        }
        for feature in &attempt.strip {
            if !request.features.contains(feature) {
                return Err(InvalidPlan::StripNotRequested {
                    id: candidate.id.clone(),
                    feature: super::truncate(feature.clone(), limits.max_label_bytes),
                });
            }
        }
        for feature in &request.features {
            if !attempt.strip.contains(feature) && !candidate.features.contains(feature) {
                return Err(InvalidPlan::UnsupportedFeature {
                    id: candidate.id.clone(),
                    feature: feature.clone(),
                });
            }
        }
        checked.push(PlannedAttempt {
            candidate: pos,
            strip: attempt.strip,
            timeout_ms: attempt.timeout_ms,
            retries: None,
        });
    }
    Ok(RoutePlan {
        attempts: checked,
        label: plan.label,
    })
}
