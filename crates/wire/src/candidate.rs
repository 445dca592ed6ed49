//! Candidate ids: a model at a provider account, written `account/model`.
//! Account names never contain `/` (the config refuses them), so the first
//! `/` splits an id; model slugs may contain more.

use std::fmt;

/// A candidate: a model served by one provider account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CandidateId {
    pub account: String,
    pub model: String,
}

impl CandidateId {
    pub fn new(account: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            account: account.into(),
            model: model.into(),
        }
    }

    /// The id as policies, metrics and breakers know it: `account/model`.
    pub fn key(&self) -> String {
        CandidateRef {
            account: &self.account,
            model: &self.model,
        }
        .key()
    }
}

impl fmt::Display for CandidateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.account, self.model)
    }
}

/// A candidate id read in place, without copying its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CandidateRef<'a> {
    pub account: &'a str,
    pub model: &'a str,
}

impl<'a> CandidateRef<'a> {
    /// Splits `account/model`; `None` when `id` has no `/`.
    pub fn parse(id: &'a str) -> Option<Self> {
        let (account, model) = id.split_once('/')?;
        Some(Self { account, model })
    }

    /// Splits `account/model`; an id without `/` is all account (for
    /// labels of ids that were never well-formed).
    pub fn lenient(id: &'a str) -> Self {
        Self::parse(id).unwrap_or(Self {
            account: id,
            model: "",
        })
    }

    pub fn to_owned(self) -> CandidateId {
        CandidateId::new(self.account, self.model)
    }

    /// The id `account/model`, written without owning its parts first.
    pub fn key(self) -> String {
        let mut id = String::with_capacity(self.account.len() + 1 + self.model.len());
        id.push_str(self.account);
        id.push('/');
        id.push_str(self.model);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_split_at_the_first_slash() {
        let id = CandidateId::new("openrouter", "meta/llama-3");
        assert_eq!(id.key(), "openrouter/meta/llama-3");
        assert_eq!(id.to_string(), id.key());
        let read = CandidateRef::parse("openrouter/meta/llama-3");
        assert_eq!(read.map(CandidateRef::to_owned), Some(id));
        assert_eq!(CandidateRef::parse("no-slash"), None);
        assert_eq!(
            CandidateRef::lenient("no-slash"),
            CandidateRef {
                account: "no-slash",
                model: ""
            }
        );
    }
}
