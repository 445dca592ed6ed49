//! State in this process: the default for one replica, and what every replica
//! falls back to while Redis is away.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};

use super::{
    Admission, Admitted, Backend, Cooldown, CooldownKind, LimitKey, StateError, View, ViewQuery,
    WINDOW_SECS, WindowUsage, now_ms, wait_for,
};

/// One counter's buckets: (second, amount), oldest first.
#[derive(Debug, Default)]
struct Buckets(VecDeque<(u64, u64)>);

impl Buckets {
    fn prune(&mut self, second: u64) {
        while self
            .0
            .front()
            .is_some_and(|&(s, _)| s + WINDOW_SECS <= second)
        {
            self.0.pop_front();
        }
    }

    fn total(&self) -> u64 {
        self.0.iter().map(|&(_, n)| n).sum()
    }

    fn add(&mut self, second: u64, amount: u64) {
        match self.0.back_mut() {
            Some((s, n)) if *s == second => *n += amount,
            _ => self.0.push_back((second, amount)),
        }
    }
}

#[derive(Debug, Default)]
struct Window {
    requests: Buckets,
    tokens: Buckets,
}

#[derive(Debug, Default)]
struct Inner {
    windows: HashMap<String, Window>,
    cooldowns: HashMap<String, Cooldown>,
    circuits: HashMap<String, u64>,
    spend: HashMap<String, f64>,
}

/// In-process state.
#[derive(Debug, Default)]
pub struct LocalBackend {
    inner: Mutex<Inner>,
}

impl LocalBackend {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn view_now(&self, query: &ViewQuery, now_ms: u64) -> View {
        let second = now_ms / 1000;
        let mut inner = self.lock();
        let usage = query
            .limits
            .iter()
            .map(|key| match inner.windows.get_mut(&key.id) {
                Some(w) => {
                    w.requests.prune(second);
                    w.tokens.prune(second);
                    WindowUsage {
                        requests: w.requests.total(),
                        tokens: w.tokens.total(),
                    }
                }
                None => WindowUsage::default(),
            })
            .collect();
        inner.cooldowns.retain(|_, c| c.until_ms > now_ms);
        inner.circuits.retain(|_, until| *until > now_ms);
        View {
            now_ms,
            usage,
            cooldowns: inner.cooldowns.clone(),
            circuits: inner.circuits.clone(),
            spend: query
                .budgets
                .iter()
                .map(|k| inner.spend.get(k).copied().unwrap_or(0.0))
                .collect(),
        }
    }

    pub fn acquire_now(
        &self,
        key: &LimitKey,
        requests: u64,
        tokens: u64,
        now_ms: u64,
    ) -> Admission {
        let second = now_ms / 1000;
        let mut inner = self.lock();
        let w = inner.windows.entry(key.id.clone()).or_default();
        w.requests.prune(second);
        w.tokens.prune(second);
        for (limit, cap, buckets, need) in [
            ("rpm", key.limits.rpm, &w.requests, requests),
            ("tpm", key.limits.tpm, &w.tokens, tokens),
        ] {
            let Some(cap) = cap else { continue };
            let used = buckets.total();
            if used.saturating_add(need) > cap {
                let mut list: Vec<(u64, u64)> = buckets.0.iter().copied().collect();
                return Admission::Denied {
                    limit,
                    used,
                    cap,
                    retry_after: wait_for(&mut list, used, need, cap, now_ms),
                };
            }
        }
        if key.limits.rpm.is_some() {
            w.requests.add(second, requests);
        }
        if key.limits.tpm.is_some() {
            w.tokens.add(second, tokens);
        }
        Admission::Admitted(Admitted {
            key: key.clone(),
            second,
            tokens,
        })
    }

    /// Counts what the shared backend admitted for `key` at `second` in the
    /// local window too (no check), so the window is warm if the shared
    /// backend goes away.
    pub fn mirror_now(&self, key: &LimitKey, second: u64, requests: u64, tokens: u64, now_ms: u64) {
        let mut inner = self.lock();
        let w = inner.windows.entry(key.id.clone()).or_default();
        let now = now_ms / 1000;
        w.requests.prune(now);
        w.tokens.prune(now);
        if key.limits.rpm.is_some() {
            w.requests.add(second, requests);
        }
        if key.limits.tpm.is_some() {
            w.tokens.add(second, tokens);
        }
    }

    pub fn adjust_now(&self, key: &LimitKey, second: u64, delta: i64) {
        let mut inner = self.lock();
        if let Some(w) = inner.windows.get_mut(&key.id)
            && let Some((_, n)) = w.tokens.0.iter_mut().find(|(s, _)| *s == second)
        {
            *n = n.saturating_add_signed(delta);
        }
    }

    pub fn cooldown_now(&self, account: &str, now_ms: u64) -> Option<(CooldownKind, Duration)> {
        let inner = self.lock();
        inner
            .cooldowns
            .get(account)
            .filter(|c| c.until_ms > now_ms)
            .map(|c| (c.kind, Duration::from_millis(c.until_ms - now_ms)))
    }

    pub fn set_cooldown_now(&self, account: &str, cooldown: Cooldown) {
        let mut inner = self.lock();
        let e = inner
            .cooldowns
            .entry(account.to_string())
            .or_insert(cooldown);
        if cooldown.until_ms > e.until_ms {
            *e = cooldown;
        }
    }

    pub fn set_circuit_now(&self, id: &str, until_ms: u64) {
        let mut inner = self.lock();
        let e = inner.circuits.entry(id.to_string()).or_insert(until_ms);
        *e = (*e).max(until_ms);
    }

    pub fn clear_circuit_now(&self, id: &str) {
        self.lock().circuits.remove(id);
    }

    pub fn add_spend_now(&self, key: &str, usd: f64) -> f64 {
        let mut inner = self.lock();
        let e = inner.spend.entry(key.to_string()).or_insert(0.0);
        *e += usd;
        *e
    }

    /// Takes the shared total as this replica's (after Redis answered, or at
    /// start from the spend ledger).
    pub fn set_spend(&self, key: &str, total: f64) {
        self.lock().spend.insert(key.to_string(), total);
    }
}

impl Backend for LocalBackend {
    fn name(&self) -> &'static str {
        "local"
    }

    fn view<'a>(&'a self, query: &'a ViewQuery) -> BoxFuture<'a, Result<View, StateError>> {
        std::future::ready(Ok(self.view_now(query, now_ms()))).boxed()
    }

    fn acquire<'a>(
        &'a self,
        key: &'a LimitKey,
        requests: u64,
        tokens: u64,
    ) -> BoxFuture<'a, Result<Admission, StateError>> {
        std::future::ready(Ok(self.acquire_now(key, requests, tokens, now_ms()))).boxed()
    }

    fn adjust<'a>(
        &'a self,
        key: &'a LimitKey,
        second: u64,
        delta: i64,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        self.adjust_now(key, second, delta);
        std::future::ready(Ok(())).boxed()
    }

    fn add_usage<'a>(
        &'a self,
        key: &'a LimitKey,
        second: u64,
        requests: u64,
        tokens: u64,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        self.mirror_now(key, second, requests, tokens, now_ms());
        std::future::ready(Ok(())).boxed()
    }

    fn set_cooldown<'a>(
        &'a self,
        account: &'a str,
        cooldown: Cooldown,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        self.set_cooldown_now(account, cooldown);
        std::future::ready(Ok(())).boxed()
    }

    fn set_circuit_open<'a>(
        &'a self,
        id: &'a str,
        until_ms: u64,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        self.set_circuit_now(id, until_ms);
        std::future::ready(Ok(())).boxed()
    }

    fn clear_circuit<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StateError>> {
        self.clear_circuit_now(id);
        std::future::ready(Ok(())).boxed()
    }

    fn add_spend<'a>(
        &'a self,
        key: &'a str,
        usd: f64,
        _ttl: Duration,
    ) -> BoxFuture<'a, Result<f64, StateError>> {
        std::future::ready(Ok(self.add_spend_now(key, usd))).boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StateError>> {
        std::future::ready(Ok(())).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateLimits;

    fn key(rpm: Option<u64>, tpm: Option<u64>) -> LimitKey {
        LimitKey::account("a", RateLimits { rpm, tpm })
    }

    #[test]
    fn requests_per_minute_slide_with_the_window() {
        let state = LocalBackend::default();
        let k = key(Some(3), None);
        let t0 = 1_000_000_000;
        for i in 0..3 {
            assert!(matches!(
                state.acquire_now(&k, 1, 0, t0 + i * 10_000),
                Admission::Admitted(_)
            ));
        }
        match state.acquire_now(&k, 1, 0, t0 + 30_000) {
            Admission::Denied {
                limit, retry_after, ..
            } => {
                assert_eq!(limit, "rpm");
                assert_eq!(retry_after, Duration::from_millis(30_000));
            }
            other => panic!("{other:?}"),
        }
        // The first request leaves the window 60 s after its second.
        assert!(matches!(
            state.acquire_now(&k, 1, 0, t0 + 60_000),
            Admission::Admitted(_)
        ));
    }

    #[test]
    fn large_requests_exhaust_tokens_first_and_usage_corrects_the_estimate() {
        let state = LocalBackend::default();
        let k = key(None, Some(1000));
        let t0 = 2_000_000_000;
        let Admission::Admitted(first) = state.acquire_now(&k, 1, 600, t0) else {
            panic!("first fits")
        };
        assert!(matches!(
            state.acquire_now(&k, 1, 600, t0 + 1),
            Admission::Denied { limit: "tpm", .. }
        ));
        assert!(matches!(
            state.acquire_now(&k, 1, 300, t0 + 2),
            Admission::Admitted(_)
        ));
        // The first used 100 tokens, not 600: 500 come back.
        state.adjust_now(&k, first.second, -500);
        assert!(matches!(
            state.acquire_now(&k, 1, 500, t0 + 3),
            Admission::Admitted(_)
        ));
        let view = state.view_now(
            &ViewQuery {
                limits: vec![k.clone()],
                budgets: Vec::new(),
            },
            t0 + 4,
        );
        assert_eq!(view.usage[0].tokens, 900);
    }
}
