//! Warm instances: a decision on an instance kept from an earlier decision of
//! the same policy, instead of a fresh `Store` and instantiation each time.
//!
//! DESIGN §3 and §9: instantiating costs several times the call itself, so
//! each pool keeps a few instances alive between decisions. A pool belongs to
//! one policy version as its owner uses it (the executor's pool of the bundled
//! default policy, or one team's pool of its active plugin), so a team plugin's
//! instance only ever sees that team's requests. An instance is discarded after
//! any trap (a panic, the deadline, the memory cap), once its memory has grown
//! past [`MAX_WARM_MEMORY`], and after [`MAX_USES`] decisions; the WIT contract
//! tells plugin authors not to rely on state across calls. Warm instances hold
//! pooling-allocator slots, so their number is capped across the whole runtime
//! by [`Limits::max_warm_instances`](super::Limits); past the cap a decision
//! simply runs on a fresh instance.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::Store;

use super::sandbox::Sandbox;
use super::{Candidate, Decision, Instance, Policy, PolicyError, Request, RuntimeInner, v0_2};
use crate::metrics::MetricSource;

/// Decisions one instance may make before it is replaced.
pub const MAX_USES: u32 = 10_000;
/// An instance whose linear memory grew past this is not kept.
pub const MAX_WARM_MEMORY: usize = 8 << 20;

/// A pool of warm instances of one policy. Cheap to share (`Sync`).
pub struct WarmPool {
    policy: Policy,
    max_idle: usize,
    deadline: Duration,
    idle: Mutex<Vec<Warm>>,
    /// Instances of this pool alive, idle or deciding.
    live: Arc<AtomicUsize>,
}

impl std::fmt::Debug for WarmPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmPool")
            .field("policy", &self.policy)
            .field("max_idle", &self.max_idle)
            .field("idle", &self.idle_count())
            .finish()
    }
}

/// One live instance and its store.
struct Warm {
    store: Store<Sandbox>,
    instance: Instance,
    uses: u32,
    _slot: Slot,
    _live: Live,
}

/// One instance of a pool's count, given back on drop.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One unit of the runtime-wide warm-instance budget, given back on drop.
struct Slot(Arc<RuntimeInner>);

impl Slot {
    fn take(runtime: &Arc<RuntimeInner>) -> Option<Slot> {
        runtime
            .warm
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < runtime.limits.max_warm_instances).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(runtime.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.warm.fetch_sub(1, Ordering::AcqRel);
    }
}

impl WarmPool {
    /// A pool keeping at most `max_idle` instances of `policy` between
    /// decisions, which run under the runtime's deadline.
    pub fn new(policy: Policy, max_idle: usize) -> Self {
        let deadline = policy.inner.runtime.limits.deadline;
        Self::with_deadline(policy, max_idle, deadline)
    }

    /// Like [`WarmPool::new`], with decisions stopped after `deadline`
    /// instead. The gateway gives its own bundled policy a longer one: on an
    /// overloaded machine a decision's thread can be descheduled past the
    /// plugins' few milliseconds, and nothing stands behind the default
    /// policy to answer for it.
    pub fn with_deadline(policy: Policy, max_idle: usize, deadline: Duration) -> Self {
        Self {
            policy,
            max_idle,
            deadline,
            idle: Mutex::new(Vec::new()),
            live: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The policy this pool runs.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Instances waiting for a decision.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Like [`Policy::decide_traced`], on a warm instance when one is kept or
    /// can be made within the budget, else on a fresh one.
    pub fn decide_traced(
        &self,
        request: &Request,
        candidates: &[Candidate],
        metrics: Arc<dyn MetricSource>,
    ) -> Decision {
        self.decide(None, request, candidates, metrics)
    }

    /// Like [`Policy::decide_in`], on a warm instance (one already
    /// configured with `context`'s setup, when one is idle).
    pub fn decide_in(
        &self,
        context: &v0_2::Context,
        request: &Request,
        candidates: &[Candidate],
        metrics: Arc<dyn MetricSource>,
    ) -> Decision {
        self.decide(Some(context), request, candidates, metrics)
    }

    fn decide(
        &self,
        context: Option<&v0_2::Context>,
        request: &Request,
        candidates: &[Candidate],
        metrics: Arc<dyn MetricSource>,
    ) -> Decision {
        let started = Instant::now();
        let taken = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            // An instance configured for this setup saves a `configure`.
            // Without one, a new instance (while the pool has room) keeps
            // the idle ones for the setups they serve; a full pool
            // reconfigures its least recently used instance.
            let key = context.map(|c| c.setup.key);
            match idle
                .iter()
                .rposition(|w| key.is_some() && w.instance.configured() == key)
            {
                Some(i) => Some(idle.remove(i)),
                None if key.is_some() && self.live.load(Ordering::Acquire) < self.max_idle => None,
                None if key.is_some() && !idle.is_empty() => Some(idle.remove(0)),
                None => idle.pop(),
            }
        };
        let mut warm = match taken {
            Some(warm) => warm,
            None => match self.instantiate() {
                Some(Ok(warm)) => warm,
                Some(Err(decision)) => return decision,
                None => {
                    return self.policy.decide_fresh(
                        context,
                        request,
                        candidates,
                        metrics,
                        self.deadline,
                    );
                }
            },
        };
        warm.store.data_mut().begin(metrics);
        self.policy.arm(&mut warm.store, self.deadline);
        let result = self.policy.call(
            &mut warm.store,
            &mut warm.instance,
            context,
            self.deadline,
            request,
            candidates,
        );
        let stats = self.policy.stats(&warm.store, started);
        let logs = warm.store.data_mut().end();
        warm.uses += 1;
        let healthy = !matches!(
            result,
            Err(PolicyError::Trap(_)
                | PolicyError::DeadlineExceeded(_)
                | PolicyError::MemoryLimit { .. }
                | PolicyError::FuelExhausted(_))
        );
        if healthy && warm.uses < MAX_USES && stats.peak_memory_bytes <= MAX_WARM_MEMORY {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < self.max_idle {
                idle.push(warm);
            }
        }
        let (result, notes) = super::split(result);
        Decision {
            result,
            stats,
            logs,
            notes,
        }
    }

    /// A new warm instance; `None` when the runtime's warm budget is spent.
    fn instantiate(&self) -> Option<Result<Warm, Decision>> {
        let slot = Slot::take(&self.policy.inner.runtime)?;
        let started = Instant::now();
        let mut store = self
            .policy
            .new_store(super::sandbox::idle_source(), self.deadline);
        Some(match self.policy.instantiate(&mut store) {
            Ok(instance) => {
                self.live.fetch_add(1, Ordering::AcqRel);
                Ok(Warm {
                    store,
                    instance,
                    uses: 0,
                    _slot: slot,
                    _live: Live(self.live.clone()),
                })
            }
            Err(e) => {
                let result = Err(self.policy.classify_instantiate(&store, e));
                let stats = self.policy.stats(&store, started);
                Err(Decision {
                    result,
                    stats,
                    logs: store.into_data().logs,
                    notes: super::Notes::default(),
                })
            }
        })
    }
}
