//! Admission: what the shared state says before routing (window usage,
//! budget counters, cooldowns, circuits other replicas opened), the team's
//! budget, and the team's own rate limit.

use std::time::Duration;

use crate::config::{ProviderAccount, Team};
use crate::spend::budget_key;
use crate::state::{Admission, Admitted, CooldownKind, LimitKey, View, ViewQuery, WindowUsage};

use super::candidates::{AccountStatus, Cooling};
use super::{Executor, RouteError};
use crate::errors::RoutingCode;
use crate::telemetry::LimitScope;

impl Executor {
    /// What the shared state says before routing: window usage of every
    /// rate-limited account (and the team), budget counters, cooldowns and
    /// circuits other replicas opened.
    pub(super) async fn view(&self, team: &Team, now_secs: u64) -> SharedView {
        let mut query = ViewQuery::default();
        for account in &self.config.providers {
            if account.limits.any() {
                query
                    .limits
                    .push(LimitKey::account(&account.name, account.limits));
            }
            if let Some(budget) = &account.budget {
                query
                    .budgets
                    .push(budget_key("account", &account.name, budget, now_secs));
            }
        }
        if let Some(budget) = &team.budget {
            query
                .budgets
                .push(budget_key("team", &team.name, budget, now_secs));
        }
        let view = self.state.view(&query).await;
        // The answers come back in the order asked: hand them to the
        // accounts (by config index) and the team in the same order.
        let mut usage = view.usage.iter().copied();
        let mut spend = view.spend.iter().copied();
        let accounts = self
            .config
            .providers
            .iter()
            .map(|a| {
                let u = a.limits.any().then(|| usage.next().unwrap_or_default());
                let s = a.budget.map(|_| spend.next().unwrap_or(0.0));
                (u, s)
            })
            .collect();
        let team_spent = team.budget.map(|_| spend.next().unwrap_or(0.0));
        SharedView {
            view,
            accounts,
            team_spent,
        }
    }

    /// Refuses a team that has spent its budget for the period.
    pub(super) fn check_team_budget(team: &Team, shared: &SharedView) -> Result<(), RouteError> {
        if let (Some(budget), Some(s)) = (&team.budget, shared.team_spent)
            && s >= budget.usd
        {
            return Err(RouteError::new(
                RoutingCode::BudgetExhausted,
                format!(
                    "team {} has spent ${s:.4} of its ${:.2} budget for this {}; ask the gateway's operator to raise it",
                    team.name,
                    budget.usd,
                    match budget.period {
                        crate::config::BudgetPeriod::Month => "month",
                        crate::config::BudgetPeriod::Day => "day",
                    }
                ),
            ));
        }
        Ok(())
    }

    /// The team's own rate limit (all its keys together): counted once per
    /// request, never failed over.
    pub(super) async fn admit_team(
        &self,
        team: &Team,
        estimated_tokens: u64,
    ) -> Result<Option<Admitted>, RouteError> {
        if !team.limits.any() {
            return Ok(None);
        }
        match self
            .state
            .acquire(
                &LimitKey::team(&team.name, team.limits),
                1,
                estimated_tokens,
            )
            .await
        {
            Admission::Admitted(a) => Ok(Some(a)),
            Admission::Denied {
                limit,
                used,
                cap,
                retry_after,
            } => {
                self.telemetry
                    .limiter_rejection(LimitScope::Team, &team.name, limit);
                let mut e = RouteError::new(
                    RoutingCode::TeamRateLimited,
                    over_limit(
                        &format!("team {}", team.name),
                        limit,
                        used,
                        cap,
                        retry_after,
                    ),
                );
                e.retry_after = Some(retry_after);
                Err(e)
            }
        }
    }
}

/// The shared state as one request sees it, sorted out per account.
pub(super) struct SharedView {
    pub(super) view: View,
    /// Per `config.providers` index: window usage (limited accounts) and
    /// dollars spent this period (accounts with a budget).
    pub(super) accounts: Vec<(Option<WindowUsage>, Option<f64>)>,
    /// Dollars the team spent this period, when it has a budget.
    pub(super) team_spent: Option<f64>,
}

/// Why the limiter refused `who` (an account, or `team NAME`).
pub(super) fn over_limit(
    who: &str,
    limit: &str,
    used: u64,
    cap: u64,
    retry_after: Duration,
) -> String {
    format!(
        "{who} is at its {} limit ({used} of {cap} in the last minute); room again in {} ms",
        limit.to_uppercase(),
        retry_after.as_millis()
    )
}

impl SharedView {
    /// How the account at config index `i` stands for a request of
    /// `estimated_tokens` input tokens: cooling down, out of budget, or with
    /// how much rate-limit headroom.
    pub(super) fn account_status(
        &self,
        i: usize,
        account: &ProviderAccount,
        estimated_tokens: u64,
    ) -> AccountStatus {
        let (usage, spent) = self.accounts.get(i).copied().unwrap_or_default();
        let budget_exhausted = account.budget.zip(spent).is_some_and(|(b, s)| s >= b.usd);
        let headroom = usage.and_then(|u| u.headroom(&account.limits, estimated_tokens));
        AccountStatus {
            cooling: self
                .view
                .cooldown(&account.name)
                .map(|(kind, wait)| match kind {
                    CooldownKind::RateLimited => Cooling::RateLimited(wait),
                    CooldownKind::Quota => Cooling::Quota,
                }),
            budget_exhausted,
            headroom,
        }
    }
}
