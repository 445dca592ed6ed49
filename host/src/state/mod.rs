//! Routing state that replicas must agree on: rate-limit counters, account
//! cooldowns, open circuits and budget counters.
//!
//! A [`Backend`] keeps them: [`local::LocalBackend`] in this process (the
//! default, one replica) or [`redis::RedisBackend`] in a Redis every replica
//! shares (`[state] redis_url`). [`SharedState`] is what the executor uses: it
//! asks Redis when one is configured and reachable, and otherwise serves from
//! the local backend — routing fails open, one replica's limits standing in
//! for everyone's — while a monitor pings Redis back to health. Cooldowns and
//! open circuits are always written locally too, so they hold while Redis is
//! away; spend counted while it was away is added to Redis when it returns.
//!
//! Rate limits count over a sliding 60-second window of one-second buckets:
//! whatever 60 consecutive seconds one looks at, no more than the limit was
//! admitted. A request is admitted only if it fits every limit it is counted
//! against, in one atomic step (a Lua script on Redis), so N replicas enforce
//! one limit together.

pub mod local;
pub mod redis;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;

use crate::config::{RateLimits, StateSettings};
use crate::telemetry::Family;

/// Length of the rate-limit window.
pub const WINDOW_SECS: u64 = 60;

/// A state backend failure (only Redis fails; the caller then uses local state).
#[derive(Debug, Clone, thiserror::Error)]
#[error("shared state: {0}")]
pub struct StateError(pub String);

/// Milliseconds since the Unix epoch, the clock every replica shares.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What one set of limits counts against: `account:NAME` or `team:NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitKey {
    pub id: String,
    pub limits: RateLimits,
}

impl LimitKey {
    pub fn account(name: &str, limits: RateLimits) -> Self {
        Self {
            id: format!("account:{name}"),
            limits,
        }
    }

    pub fn team(name: &str, limits: RateLimits) -> Self {
        Self {
            id: format!("team:{name}"),
            limits,
        }
    }
}

/// Requests and tokens counted in the current window of one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowUsage {
    pub requests: u64,
    pub tokens: u64,
}

impl WindowUsage {
    /// Share of the tighter limit still free for a request of `tokens`
    /// (0.0 to 1.0); `None` without limits.
    pub fn headroom(&self, limits: &RateLimits, tokens: u64) -> Option<f32> {
        // Nothing when this request would not fit, else the share still free.
        let free = |used: u64, need: u64, cap: u64| {
            if used.saturating_add(need) > cap {
                0.0
            } else {
                (cap.saturating_sub(used) as f64 / cap as f64) as f32
            }
        };
        let r = limits.rpm.map(|cap| free(self.requests, 1, cap));
        let t = limits.tpm.map(|cap| free(self.tokens, tokens, cap));
        match (r, t) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A request admitted under a key's limits: where its tokens were counted,
/// so the estimate can be corrected with the real usage.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    pub key: LimitKey,
    pub second: u64,
    pub tokens: u64,
}

/// The limiter's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    Admitted(Admitted),
    /// Over `limit` (`rpm` or `tpm`): `used` of `cap` in the window; room for
    /// this request frees up after `retry_after` (a request larger than the
    /// whole limit never fits: `retry_after` is then the window).
    Denied {
        limit: &'static str,
        used: u64,
        cap: u64,
        retry_after: Duration,
    },
}

/// Why an account is out for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CooldownKind {
    /// The provider answered 429.
    RateLimited,
    /// The provider answered 402 / quota exhausted.
    Quota,
}

impl CooldownKind {
    pub fn name(self) -> &'static str {
        match self {
            CooldownKind::RateLimited => "rate_limited",
            CooldownKind::Quota => "quota",
        }
    }

    fn parse(text: &str) -> Option<CooldownKind> {
        match text {
            "rate_limited" => Some(CooldownKind::RateLimited),
            "quota" => Some(CooldownKind::Quota),
            _ => None,
        }
    }
}

/// An account cooling down until `until_ms` (Unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cooldown {
    pub kind: CooldownKind,
    pub until_ms: u64,
}

/// What one request reads before routing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ViewQuery {
    /// Keys whose window usage is wanted.
    pub limits: Vec<LimitKey>,
    /// Budget counter keys whose spend is wanted.
    pub budgets: Vec<String>,
}

/// The shared state as one request sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    pub now_ms: u64,
    /// Per `ViewQuery::limits`, in order.
    pub usage: Vec<WindowUsage>,
    /// Accounts cooling down.
    pub cooldowns: HashMap<String, Cooldown>,
    /// Open circuits (`account/model`) and until when (Unix ms).
    pub circuits: HashMap<String, u64>,
    /// Dollars spent, per `ViewQuery::budgets`, in order.
    pub spend: Vec<f64>,
}

impl View {
    /// The cooldown of `account` still running, and how long it has left.
    pub fn cooldown(&self, account: &str) -> Option<(CooldownKind, Duration)> {
        self.cooldowns
            .get(account)
            .filter(|c| c.until_ms > self.now_ms)
            .map(|c| {
                (
                    c.kind,
                    Duration::from_millis(c.until_ms.saturating_sub(self.now_ms)),
                )
            })
    }

    /// How long the circuit of `id` is open yet, if another replica opened it.
    pub fn circuit_open(&self, id: &str) -> Option<Duration> {
        self.circuits
            .get(id)
            .filter(|&&until| until > self.now_ms)
            .map(|until| Duration::from_millis(until - self.now_ms))
    }
}

/// Where the state lives. Methods return boxed futures so the executor can
/// hold either backend behind one type.
pub trait Backend: Send + Sync {
    /// `local` or `redis`.
    fn name(&self) -> &'static str;
    fn view<'a>(&'a self, query: &'a ViewQuery) -> BoxFuture<'a, Result<View, StateError>>;
    /// Counts `requests` and `tokens` against `key` if both fit its limits.
    fn acquire<'a>(
        &'a self,
        key: &'a LimitKey,
        requests: u64,
        tokens: u64,
    ) -> BoxFuture<'a, Result<Admission, StateError>>;
    /// Corrects the tokens counted at `second` by `delta` (real usage minus
    /// the estimate).
    fn adjust<'a>(
        &'a self,
        key: &'a LimitKey,
        second: u64,
        delta: i64,
    ) -> BoxFuture<'a, Result<(), StateError>>;
    /// Starts (or lengthens, never shortens) an account's cooldown.
    fn set_cooldown<'a>(
        &'a self,
        account: &'a str,
        cooldown: Cooldown,
    ) -> BoxFuture<'a, Result<(), StateError>>;
    /// Announces that the circuit of `id` is open until `until_ms`.
    fn set_circuit_open<'a>(
        &'a self,
        id: &'a str,
        until_ms: u64,
    ) -> BoxFuture<'a, Result<(), StateError>>;
    /// Announces that the circuit of `id` closed (a probe succeeded).
    fn clear_circuit<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StateError>>;
    /// Adds `usd` to a budget counter kept for `ttl`; returns the new total.
    fn add_spend<'a>(
        &'a self,
        key: &'a str,
        usd: f64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<f64, StateError>>;
    /// Adds `requests` and `tokens` to `key`'s window at `second` without a
    /// check: admissions a replica made on its own while this backend was
    /// away.
    fn add_usage<'a>(
        &'a self,
        key: &'a LimitKey,
        second: u64,
        requests: u64,
        tokens: u64,
    ) -> BoxFuture<'a, Result<(), StateError>>;
    fn ping(&self) -> BoxFuture<'_, Result<(), StateError>>;
}

/// How long until `need` more fits under `cap`, given the live buckets of a
/// window (second, amount) that add up to `used`. Buckets need not be sorted.
pub fn wait_for(
    buckets: &mut [(u64, u64)],
    used: u64,
    need: u64,
    cap: u64,
    now_ms: u64,
) -> Duration {
    let excess = used.saturating_add(need).saturating_sub(cap);
    if excess == 0 {
        return Duration::ZERO;
    }
    if need > cap {
        return Duration::from_secs(WINDOW_SECS);
    }
    buckets.sort_unstable();
    let mut freed = 0u64;
    for &(second, amount) in buckets.iter() {
        freed = freed.saturating_add(amount);
        if freed >= excess {
            let frees_at = (second + WINDOW_SECS).saturating_mul(1000);
            return Duration::from_millis(frees_at.saturating_sub(now_ms).max(1));
        }
    }
    Duration::from_secs(WINDOW_SECS)
}

/// Admissions by second: (requests, tokens with their corrections).
type Seconds = BTreeMap<u64, (u64, i64)>;

/// Spend and admissions counted while Redis was away, to add when it
/// returns.
#[derive(Default)]
struct Unreconciled {
    /// Budget key → (dollars, time to keep the counter).
    spend: HashMap<String, (f64, Duration)>,
    /// Limit key id → the key and its admissions by second (requests,
    /// tokens, token corrections included).
    windows: HashMap<String, (LimitKey, Seconds)>,
}

/// The state the executor uses: Redis when configured and reachable, else
/// this process's.
pub struct SharedState {
    local: local::LocalBackend,
    /// The shared backend (Redis), when configured.
    remote: Option<Box<dyn Backend>>,
    timeout: Duration,
    /// Redis answered its last call (always true without Redis).
    up: AtomicBool,
    /// Redis calls that failed or timed out.
    errors: AtomicU64,
    /// Calls served from local state because Redis was away.
    fallbacks: AtomicU64,
    pending: Mutex<Unreconciled>,
}

impl SharedState {
    /// State per the `[state]` settings; Redis is connected lazily, so a
    /// gateway starts (on local state) while Redis is down.
    pub fn new(settings: &StateSettings) -> Result<SharedState, StateError> {
        let remote = match &settings.redis_url {
            Some(url) => Some(Box::new(redis::RedisBackend::new(
                url.expose(),
                &settings.key_prefix,
                settings.timeout,
            )?) as Box<dyn Backend>),
            None => None,
        };
        Ok(SharedState {
            local: local::LocalBackend::default(),
            remote,
            timeout: settings.timeout,
            up: AtomicBool::new(true),
            errors: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            pending: Mutex::new(Unreconciled::default()),
        })
    }

    /// In-process state only.
    pub fn local_only() -> SharedState {
        SharedState {
            local: local::LocalBackend::default(),
            remote: None,
            timeout: Duration::from_millis(250),
            up: AtomicBool::new(true),
            errors: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            pending: Mutex::new(Unreconciled::default()),
        }
    }

    /// Whether state is shared right now (Redis configured and answering).
    pub fn redis_up(&self) -> bool {
        self.remote.is_some() && self.up.load(Ordering::Relaxed)
    }

    /// Runs `call` on Redis if it is configured and up; `None` means use the
    /// local backend (Redis absent, known down, or this call failed).
    async fn remote<'a, T>(
        &'a self,
        call: impl FnOnce(&'a dyn Backend) -> BoxFuture<'a, Result<T, StateError>>,
    ) -> Option<T> {
        let remote = self.remote.as_deref()?;
        if !self.up.load(Ordering::Relaxed) {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let result = match tokio::time::timeout(self.timeout, call(remote)).await {
            Ok(result) => result,
            Err(_) => Err(StateError(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        };
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.fallbacks.fetch_add(1, Ordering::Relaxed);
                if self.up.swap(false, Ordering::Relaxed) {
                    tracing::error!(error = %e, "Redis is unreachable: serving on this replica's local state (rate limits, cooldowns and budgets per replica) until it returns; spend is kept and reconciled");
                }
                None
            }
        }
    }

    pub async fn view(&self, query: &ViewQuery) -> View {
        let local = self.local.view_now(query, now_ms());
        match self.remote(|r| r.view(query)).await {
            Some(mut view) => {
                // Cooldowns and circuits written while Redis was away.
                for (k, c) in local.cooldowns {
                    let e = view.cooldowns.entry(k).or_insert(c);
                    if c.until_ms > e.until_ms {
                        *e = c;
                    }
                }
                for (k, until) in local.circuits {
                    let e = view.circuits.entry(k).or_insert(until);
                    *e = (*e).max(until);
                }
                view
            }
            None => local,
        }
    }

    /// Counts a request against `key`'s limits. What Redis admits is
    /// mirrored in the local window, so that if Redis goes away this replica
    /// goes on from what it admitted itself rather than from an empty window;
    /// what the local window admits meanwhile is added to Redis when it
    /// returns.
    pub async fn acquire(&self, key: &LimitKey, requests: u64, tokens: u64) -> Admission {
        match self.remote(|r| r.acquire(key, requests, tokens)).await {
            Some(Admission::Admitted(a)) => {
                self.local
                    .mirror_now(key, a.second, requests, tokens, now_ms());
                Admission::Admitted(a)
            }
            Some(denied) => denied,
            None => {
                let admission = self.local.acquire_now(key, requests, tokens, now_ms());
                if let (Admission::Admitted(a), Some(_)) = (&admission, &self.remote) {
                    let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                    let (_, seconds) = pending
                        .windows
                        .entry(key.id.clone())
                        .or_insert_with(|| (key.clone(), BTreeMap::new()));
                    let e = seconds.entry(a.second).or_insert((0, 0));
                    e.0 += requests;
                    e.1 += i64::try_from(tokens).unwrap_or(i64::MAX);
                }
                admission
            }
        }
    }

    pub async fn adjust(&self, admitted: &Admitted, actual_tokens: u64) {
        let delta = i64::try_from(actual_tokens)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(admitted.tokens).unwrap_or(i64::MAX));
        if delta == 0 || admitted.key.limits.tpm.is_none() {
            return;
        }
        // The local window follows either way (it mirrors Redis's).
        self.local.adjust_now(&admitted.key, admitted.second, delta);
        if self
            .remote(|r| r.adjust(&admitted.key, admitted.second, delta))
            .await
            .is_none()
            && self.remote.is_some()
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, seconds)) = pending.windows.get_mut(&admitted.key.id)
                && let Some(e) = seconds.get_mut(&admitted.second)
            {
                e.1 = e.1.saturating_add(delta);
            }
        }
    }

    pub async fn set_cooldown(&self, account: &str, cooldown: Cooldown) {
        self.local.set_cooldown_now(account, cooldown);
        let _ = self.remote(|r| r.set_cooldown(account, cooldown)).await;
    }

    pub async fn set_circuit_open(&self, id: &str, until_ms: u64) {
        self.local.set_circuit_now(id, until_ms);
        let _ = self.remote(|r| r.set_circuit_open(id, until_ms)).await;
    }

    pub async fn clear_circuit(&self, id: &str) {
        self.local.clear_circuit_now(id);
        let _ = self.remote(|r| r.clear_circuit(id)).await;
    }

    /// Adds spend to a budget counter; returns (total before, total after).
    /// With Redis away it is counted locally and added to Redis later.
    pub async fn add_spend(&self, key: &str, usd: f64, ttl: Duration) -> (f64, f64) {
        match self.remote(|r| r.add_spend(key, usd, ttl)).await {
            Some(total) => {
                self.local.set_spend(key, total);
                (total - usd, total)
            }
            None => {
                let total = self.local.add_spend_now(key, usd);
                if self.remote.is_some() {
                    let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                    let entry = pending.spend.entry(key.to_string()).or_insert((0.0, ttl));
                    entry.0 += usd;
                    entry.1 = entry.1.max(ttl);
                }
                (total - usd, total)
            }
        }
    }

    /// A cooldown this replica set (or saw) still running: the executor
    /// checks it between attempts without a round trip.
    pub fn local_cooldown(&self, account: &str) -> Option<(CooldownKind, Duration)> {
        self.local.cooldown_now(account, now_ms())
    }

    /// Sets a budget counter of the local state (from the ledger at start).
    pub fn seed_local_spend(&self, key: &str, total: f64) {
        self.local.set_spend(key, total);
    }

    /// Dollars counted while Redis was away and not yet added to it.
    pub fn unreconciled_usd(&self) -> f64 {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.spend.values().map(|(usd, _)| usd).sum()
    }

    /// Checks on Redis while it is away: once it answers, adds the spend
    /// counted meanwhile, then routes on it again. Runs until dropped.
    pub async fn monitor(self: Arc<Self>, every: Duration) {
        let Some(remote) = self.remote.as_deref() else {
            return;
        };
        loop {
            tokio::time::sleep(every).await;
            if self.up.load(Ordering::Relaxed) {
                continue;
            }
            match tokio::time::timeout(self.timeout, remote.ping()).await {
                Ok(Ok(())) => {}
                _ => continue,
            }
            let pending: Vec<(String, (f64, Duration))> = {
                let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                p.spend.iter().map(|(k, v)| (k.clone(), *v)).collect()
            };
            let mut reconciled = self.reconcile_windows(remote).await;
            for (key, (usd, ttl)) in pending.into_iter().filter(|_| reconciled) {
                match tokio::time::timeout(self.timeout, remote.add_spend(&key, usd, ttl)).await {
                    Ok(Ok(total)) => {
                        self.local.set_spend(&key, total);
                        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(entry) = p.spend.get_mut(&key) {
                            entry.0 -= usd;
                            if entry.0.abs() < 1e-12 {
                                p.spend.remove(&key);
                            }
                        }
                    }
                    _ => {
                        reconciled = false;
                        break;
                    }
                }
            }
            if reconciled {
                self.up.store(true, Ordering::Relaxed);
                // Admissions made while the first pass ran.
                let _ = self.reconcile_windows(remote).await;
                tracing::info!(
                    "Redis is back: shared state in use again; spend counted meanwhile reconciled"
                );
            }
        }
    }

    /// Adds to Redis the admissions this replica made on its own while it
    /// was away, for the seconds still inside the window; whether all made it.
    async fn reconcile_windows(&self, remote: &dyn Backend) -> bool {
        let windows: Vec<(LimitKey, Seconds)> = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut p.windows).into_values().collect()
        };
        let oldest = (now_ms() / 1000).saturating_sub(WINDOW_SECS);
        let mut failed = Vec::new();
        for (key, mut seconds) in windows {
            while let Some((second, (requests, tokens))) = seconds.pop_first() {
                if second <= oldest {
                    continue;
                }
                let tokens = u64::try_from(tokens.max(0)).unwrap_or(0);
                let call = remote.add_usage(&key, second, requests, tokens);
                if !matches!(tokio::time::timeout(self.timeout, call).await, Ok(Ok(()))) {
                    let tokens = i64::try_from(tokens).unwrap_or(i64::MAX);
                    seconds.insert(second, (requests, tokens));
                    failed.push((key, seconds));
                    break;
                }
            }
        }
        if failed.is_empty() {
            return true;
        }
        // Kept for the next try.
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (key, seconds) in failed {
            let (_, kept) = p
                .windows
                .entry(key.id.clone())
                .or_insert_with(|| (key, BTreeMap::new()));
            for (second, (r, t)) in seconds {
                let e = kept.entry(second).or_insert((0, 0));
                e.0 += r;
                e.1 += t;
            }
        }
        false
    }

    /// `/metrics` families of the state backend.
    pub fn families(&self) -> Vec<Family> {
        let backend = self.remote.as_deref().map_or("local", Backend::name);
        vec![
            Family {
                name: "switchyard_state_backend_up",
                help: "1 while the configured state backend answers (Redis), 0 while the gateway serves on local state.",
                kind: "gauge",
                labels: &["backend"],
                samples: vec![(
                    vec![backend.to_string()],
                    if self.remote.is_none() || self.redis_up() {
                        1.0
                    } else {
                        0.0
                    },
                )],
            },
            Family {
                name: "switchyard_state_backend_errors_total",
                help: "Calls to the shared state backend that failed or timed out.",
                kind: "counter",
                labels: &["backend"],
                samples: vec![(
                    vec![backend.to_string()],
                    self.errors.load(Ordering::Relaxed) as f64,
                )],
            },
            Family {
                name: "switchyard_state_local_fallbacks_total",
                help: "State calls served from this replica's local state because Redis was away.",
                kind: "counter",
                labels: &[],
                samples: vec![(Vec::new(), self.fallbacks.load(Ordering::Relaxed) as f64)],
            },
            Family {
                name: "switchyard_spend_unreconciled_usd",
                help: "Spend counted while Redis was away, not yet added to its budget counters.",
                kind: "gauge",
                labels: &[],
                samples: vec![(Vec::new(), self.unreconciled_usd())],
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_is_when_enough_old_buckets_leave_the_window() {
        let now = 1_000_030_000; // second 1_000_030
        let mut buckets = vec![(1_000_010, 30), (1_000_000, 20), (1_000_020, 10)];
        // 60 used of 60: one more needs the oldest bucket (second 1_000_000) gone.
        assert_eq!(
            wait_for(&mut buckets, 60, 1, 60, now),
            Duration::from_millis(30_000)
        );
        // 25 more need 20 + 30 freed: second 1_000_010 leaves at 1_000_070.
        assert_eq!(
            wait_for(&mut buckets, 60, 25, 60, now),
            Duration::from_millis(40_000)
        );
        assert_eq!(wait_for(&mut buckets, 30, 30, 60, now), Duration::ZERO);
        assert_eq!(
            wait_for(&mut buckets, 0, 61, 60, now),
            Duration::from_secs(WINDOW_SECS),
            "never fits"
        );
    }

    #[test]
    fn headroom_is_the_tighter_limit() {
        let usage = WindowUsage {
            requests: 30,
            tokens: 900,
        };
        let limits = RateLimits {
            rpm: Some(60),
            tpm: Some(1000),
        };
        let h = usage.headroom(&limits, 50).expect("limited");
        assert!((h - 0.1).abs() < 1e-6, "{h}");
        assert_eq!(usage.headroom(&limits, 200), Some(0.0));
        assert_eq!(usage.headroom(&RateLimits::default(), 50), None);
    }
}
