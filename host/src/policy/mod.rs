//! The policy runtime: routing policies as sandboxed WebAssembly components.
//!
//! A [`Runtime`] owns one wasmtime engine (component model, pooling allocator,
//! epoch interruption ticked by one background thread). [`Runtime::load`]
//! validates and compiles a component into a [`Policy`] (one `Component` and
//! one `InstancePre` per plugin version). [`Policy::decide`] runs one decision
//! in a fresh `Store` under a memory cap, a deadline and an output cap, then
//! validates the plan against the candidates it was offered.
//!
//! Two contract versions are served side by side: `switchyard:policy@0.1.0`
//! (`wit/policy.wit`; the types below are generated from it and are also
//! the host's own terms for a decision) and `@0.2.0` (`wit/v0.2`, adapted
//! to and from those terms by [`v0_2`]). [`Runtime::load`] tells them apart
//! by what a component imports and exports, and refuses any other version
//! by name.

pub mod compile;
mod load;
mod plan;
mod sandbox;
pub mod spec;
pub mod structure;
pub mod v0_2;
mod warm;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use crate::metrics::MetricSource;
pub use compile::CompileWorker;
pub use load::{Contract, LoadError};
pub use plan::{InvalidPlan, PlannedAttempt, RoutePlan};
use sandbox::Sandbox;
pub use structure::{Structure, StructureLimits};
pub use warm::{MAX_USES, MAX_WARM_MEMORY, WarmPool};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "policy",
        additional_derives: [PartialEq],
    });
}

pub use bindings::switchyard::policy::types::{
    Attempt, Candidate, Health, Info, Level, MetricValue, Plan, PolicyError as Refusal,
    PolicyErrorKind as RefusalKind, Price, Request, Routing,
};

/// The version of the `switchyard:policy` WIT package this host is built from.
pub const WIT_VERSION: &str = "0.1.0";

/// The bundled default policy component, built from `plugins/default-policy`.
pub static DEFAULT_POLICY_WASM: &[u8] = include_bytes!(env!("SWITCHYARD_DEFAULT_POLICY_WASM"));

/// The same policy built against the 0.1 contract
/// (`plugins/default-policy-v0-1`): never serves, kept so that `policy bench`
/// can show what each contract costs.
pub static DEFAULT_POLICY_V0_1_WASM: &[u8] =
    include_bytes!(env!("SWITCHYARD_DEFAULT_POLICY_V0_1_WASM"));

/// How much a policy may use. The defaults are the gateway's.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest component accepted by [`Runtime::load`], in bytes.
    pub max_component_bytes: usize,
    /// Largest linear memory a decision may grow to, in bytes.
    pub max_memory_bytes: usize,
    /// Wall-clock time a decision may run before it is interrupted.
    pub deadline: Duration,
    /// Most attempts a plan may hold.
    pub max_attempts: usize,
    /// Longest plan label, in bytes.
    pub max_label_bytes: usize,
    /// Log lines kept per decision; later ones are dropped and counted.
    pub max_log_lines: usize,
    /// Longest log line kept, in bytes; longer lines are truncated.
    pub max_log_bytes: usize,
    /// Decisions that may run at once (pooling allocator slots).
    pub max_concurrent: u32,
    /// When set, count WebAssembly instructions (fuel) and stop a decision that
    /// uses more than this. Off in the gateway (it costs speed); the offline
    /// harness turns it on to report instructions per case.
    pub fuel: Option<u64>,
    /// Warm instances kept between decisions, across every pool of this
    /// runtime (see [`WarmPool`]). Each holds a pooling-allocator slot.
    pub max_warm_instances: u32,
    /// What a component may declare before it is compiled.
    pub structure: StructureLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_component_bytes: 16 << 20,
            max_memory_bytes: 32 << 20,
            deadline: Duration::from_millis(10),
            max_attempts: 64,
            max_label_bytes: 256,
            max_log_lines: 16,
            max_log_bytes: 1024,
            max_concurrent: 256,
            fuel: None,
            max_warm_instances: 32,
            structure: StructureLimits::default(),
        }
    }
}

/// Why a decision produced no usable plan.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// The guest trapped (a panic, `unreachable`, an out-of-bounds access, ...).
    #[error("policy trapped: {0}")]
    Trap(String),
    /// The guest ran past the deadline and was interrupted.
    #[error("policy exceeded its deadline of {0:?}")]
    DeadlineExceeded(Duration),
    /// The guest tried to grow its memory past the cap.
    #[error("policy exceeded its memory limit of {limit} bytes")]
    MemoryLimit { limit: usize },
    /// The guest executed more instructions than its fuel allowed (harness only).
    #[error("policy ran out of fuel after {0} instructions")]
    FuelExhausted(u64),
    /// The guest returned a plan the host will not execute.
    #[error("policy returned an invalid plan: {0}")]
    InvalidPlan(#[from] InvalidPlan),
    /// The guest declined to route the request (its own, legitimate answer).
    #[error("policy refused to route ({}): {message}", refusal_name(*kind))]
    Refused { kind: RefusalKind, message: String },
    /// No instance could be created (e.g. every pooled slot is busy).
    #[error("policy could not be instantiated: {0}")]
    Instantiate(String),
}

impl PolicyError {
    /// A fault is the plugin's (or the host's) failure, as opposed to a
    /// refusal: the gateway answers a fault with the default policy and counts it.
    pub fn is_fault(&self) -> bool {
        !matches!(self, PolicyError::Refused { .. })
    }

    /// Short machine-readable name: `trap`, `deadline`, `memory`, `fuel`,
    /// `invalid-plan`, `refused`, `instantiate`.
    pub fn kind(&self) -> &'static str {
        match self {
            PolicyError::Trap(_) => "trap",
            PolicyError::DeadlineExceeded(_) => "deadline",
            PolicyError::MemoryLimit { .. } => "memory",
            PolicyError::FuelExhausted(_) => "fuel",
            PolicyError::InvalidPlan(_) => "invalid-plan",
            PolicyError::Refused { .. } => "refused",
            PolicyError::Instantiate(_) => "instantiate",
        }
    }
}

/// A line a policy logged through `host.log`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub level: Level,
    pub message: String,
}

/// Resource use of one decision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecisionStats {
    /// Wall time of instantiate + call + validation.
    pub elapsed: Duration,
    /// Instructions executed (only when [`Limits::fuel`] is set).
    pub fuel_consumed: Option<u64>,
    /// Largest linear memory the guest had, in bytes.
    pub peak_memory_bytes: usize,
    /// Calls made to `host.metric`.
    pub metric_calls: u32,
    /// Log lines dropped by the rate limit.
    pub logs_dropped: u32,
    /// `metric` calls naming a candidate this decision was not offered
    /// (answered `none`): a plugin looking where it should not.
    pub foreign_metric_calls: u32,
}

/// What a plan says beyond its attempts and label (0.2 plans only; empty
/// for 0.1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Notes {
    /// The policy's own score for its choice.
    pub score: Option<f64>,
    /// Why this order, a few short lines (escaped).
    pub explanation: Vec<String>,
}

/// Everything one decision produced.
#[derive(Debug, Clone)]
pub struct Decision {
    pub result: Result<RoutePlan, PolicyError>,
    pub stats: DecisionStats,
    pub logs: Vec<LogLine>,
    /// The plan's score, explanation and retries (0.2).
    pub notes: Notes,
}

/// A compiled policy, ready to instantiate, in its contract's bindings.
enum Pre {
    V0_1(bindings::PolicyPre<Sandbox>),
    V0_2(v0_2::PolicyPre<Sandbox>),
}

/// A live instance of a policy.
pub(crate) enum Instance {
    V0_1(bindings::Policy),
    V0_2 {
        bindings: v0_2::Bindings,
        /// The key of the setup `configure` accepted last, if any.
        configured: Option<u64>,
        /// The candidates and metric values of the last decision, as 0.2
        /// sends them: buffers kept with the instance.
        offered: Vec<v0_2::wit::Candidate>,
        metrics: Vec<f64>,
    },
}

impl Instance {
    /// The setup this instance is configured with (0.2).
    fn configured(&self) -> Option<u64> {
        match self {
            Instance::V0_1(_) => None,
            Instance::V0_2 { configured, .. } => *configured,
        }
    }
}

/// What `describe` said, in host terms.
struct Described {
    info: Info,
    wants_content: bool,
    declared: Vec<&'static str>,
}

/// The engine shared by every loaded policy.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    limits: Limits,
    ticker_stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
    /// Warm instances alive (see [`WarmPool`]).
    warm: AtomicU32,
    /// Where uploaded components are compiled; `None`: in this process.
    worker: Option<CompileWorker>,
}

/// Interval of the epoch ticker; deadlines are counted in these ticks.
const TICK: Duration = Duration::from_millis(1);

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.ticker.take() {
            let _ = handle.join();
        }
    }
}

/// Most dirty bytes of a released instance's memory (and tables) reset by
/// copying rather than unmapping, where the kernel can list them; a
/// decision dirties tens of KiB.
const RESET_IN_PLACE_BYTES: usize = 1 << 20;

/// The engine settings of a runtime with `limits`. A compile worker uses the
/// same settings without the pooling allocator (it instantiates nothing), so
/// what it compiles loads into the gateway's engine.
fn engine_config(limits: &Limits, pooling: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.consume_fuel(limits.fuel.is_some());
    config.max_wasm_stack(512 << 10);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(limits.max_concurrent);
        pool.total_core_instances(limits.max_concurrent.saturating_mul(8));
        pool.total_memories(limits.max_concurrent);
        pool.total_tables(limits.max_concurrent.saturating_mul(8));
        pool.max_memory_size(limits.max_memory_bytes);
        // A released instance's memory is reset for the next one. By default
        // that is an `madvise` of the whole memory: every page the next
        // instance touches faults in again, and the unmapping interrupts the
        // other cores to flush their TLBs (a quarter of a fresh decision's
        // CPU time, measured). Where Linux can list the pages an instance
        // dirtied (`PAGEMAP_SCAN`, 6.7+), those are copied back from the
        // image instead and stay resident. Without it, resetting the low
        // addresses by `memset` would not help: a Rust guest's stack sits
        // there and grows down from its top.
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            pool.pagemap_scan(wasmtime::Enabled::Yes);
            pool.linear_memory_keep_resident(RESET_IN_PLACE_BYTES);
            pool.table_keep_resident(RESET_IN_PLACE_BYTES);
        }
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

impl Runtime {
    /// Creates the engine and starts its epoch ticker thread. Components are
    /// compiled in this process.
    pub fn new(limits: Limits) -> Result<Self, LoadError> {
        Self::with_worker(limits, None)
    }

    /// Like [`Runtime::new`], with uploaded components (everything
    /// [`Runtime::load`] takes) compiled by `worker`, in its own process
    /// and budget; the bundled default policy is still compiled here.
    pub fn with_worker(limits: Limits, worker: Option<CompileWorker>) -> Result<Self, LoadError> {
        let engine = Engine::new(&engine_config(&limits, true))
            .map_err(|e| LoadError::Engine(e.to_string()))?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("policy-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| LoadError::Engine(format!("cannot start epoch ticker: {e}")))?
        };
        Ok(Self {
            inner: Arc::new(RuntimeInner {
                engine,
                limits,
                ticker_stop,
                ticker: Some(ticker),
                warm: AtomicU32::new(0),
                worker,
            }),
        })
    }

    /// The limits every decision of this runtime runs under.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Validates and compiles a policy component (in the compile worker,
    /// when the runtime has one), then asks it to describe itself.
    pub fn load(&self, bytes: &[u8]) -> Result<Policy, LoadError> {
        self.load_with(bytes, self.inner.worker.as_ref())
    }

    fn load_with(&self, bytes: &[u8], worker: Option<&CompileWorker>) -> Result<Policy, LoadError> {
        let limits = &self.inner.limits;
        if bytes.len() > limits.max_component_bytes {
            return Err(LoadError::TooLarge {
                size: bytes.len(),
                limit: limits.max_component_bytes,
            });
        }
        load::check_header(bytes)?;
        let structure = structure::measure(bytes, &limits.structure)?;
        let engine = &self.inner.engine;
        let component = match worker {
            Some(worker) => compile::compile(worker, engine, limits.fuel.is_some(), bytes)?,
            None => {
                Component::new(engine, bytes).map_err(|e| LoadError::Compile(format!("{e:#}")))?
            }
        };
        let contract = load::check_imports_and_exports(engine, &component)?;

        let world = |e: wasmtime::Error| LoadError::WorldMismatch(format!("{e:#}"));
        let mut linker: Linker<Sandbox> = Linker::new(engine);
        match contract {
            Contract::V0_1 => {
                bindings::Policy::add_to_linker::<Sandbox, HasSelf<Sandbox>>(&mut linker, |s| s)
            }
            Contract::V0_2 => {
                v0_2::Bindings::add_to_linker::<Sandbox, HasSelf<Sandbox>>(&mut linker, |s| s)
            }
        }
        .map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        // Every other import was checked above to be an inert WASI interface
        // (cli, io, clocks, random) that std guests carry; each of them traps
        // when called, so a policy gets no capability through them.
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(world)?;
        let instance_pre = linker.instantiate_pre(&component).map_err(world)?;
        let pre = match contract {
            Contract::V0_1 => Pre::V0_1(bindings::PolicyPre::new(instance_pre).map_err(world)?),
            Contract::V0_2 => Pre::V0_2(v0_2::PolicyPre::new(instance_pre).map_err(world)?),
        };

        let mut policy = Policy {
            inner: Arc::new(PolicyInner {
                runtime: self.inner.clone(),
                pre,
                info: Info {
                    name: String::new(),
                    version: String::new(),
                    metrics: Vec::new(),
                },
                contract,
                wants_content: false,
                declared: Vec::new(),
                sha256: crate::digest::sha256_hex(bytes),
                size: bytes.len(),
                structure,
            }),
        };
        let described = policy.describe().map_err(LoadError::Describe)?;
        let info = &described.info;
        if info.name.len() > limits.max_label_bytes
            || info.version.len() > limits.max_label_bytes
            || info.metrics.len() > 32
        {
            return Err(LoadError::Describe(PolicyError::InvalidPlan(
                InvalidPlan::TooLarge("describe() output".into()),
            )));
        }
        if let Some(inner) = Arc::get_mut(&mut policy.inner) {
            inner.info = described.info;
            inner.wants_content = described.wants_content;
            inner.declared = described.declared;
        }
        Ok(policy)
    }

    /// Loads the bundled default policy, compiled in this process: it is
    /// our own code, built into the binary.
    pub fn load_default(&self) -> Result<Policy, LoadError> {
        self.load_with(DEFAULT_POLICY_WASM, None)
    }

    /// Loads the 0.1 build of the bundled default policy (see
    /// [`DEFAULT_POLICY_V0_1_WASM`]), compiled in this process.
    pub fn load_default_v0_1(&self) -> Result<Policy, LoadError> {
        self.load_with(DEFAULT_POLICY_V0_1_WASM, None)
    }
}

/// A loaded, validated policy component, ready to decide. Cheap to clone.
#[derive(Clone)]
pub struct Policy {
    inner: Arc<PolicyInner>,
}

struct PolicyInner {
    runtime: Arc<RuntimeInner>,
    pre: Pre,
    /// What `describe` said (for 0.2, its metric ids as the host names them).
    info: Info,
    contract: Contract,
    /// 0.2: the policy declared `wants.content`.
    wants_content: bool,
    /// 0.2: the metrics `describe` declared, as the host names them.
    declared: Vec<&'static str>,
    sha256: String,
    size: usize,
    structure: Structure,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.inner.info.name)
            .field("version", &self.inner.info.version)
            .field("sha256", &self.inner.sha256)
            .field("contract", &self.inner.contract)
            .finish()
    }
}

impl Policy {
    /// What the policy said about itself when it was loaded.
    pub fn info(&self) -> &Info {
        &self.inner.info
    }

    /// Hex sha256 of the component bytes.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// The `switchyard:policy` version the component runs on (the host's
    /// release of the minor version it was built against).
    pub fn wit_version(&self) -> &str {
        self.inner.contract.version()
    }

    /// The contract version the component was built against.
    pub fn contract(&self) -> Contract {
        self.inner.contract
    }

    /// Whether the policy asked for the request's content (0.2
    /// `wants.content`). It gets it only where the operator allows it.
    pub fn wants_content(&self) -> bool {
        self.inner.wants_content
    }

    /// Size of the component in bytes.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// What the component declares (functions, its largest function, ...).
    pub fn structure(&self) -> &Structure {
        &self.inner.structure
    }

    /// Fills each candidate's `metrics` with the values `describe()` asked for,
    /// over `window_secs`, read from `source`. A 0.2 policy gets its declared
    /// metrics as one list of numbers, computed by the decision itself: this
    /// does nothing for it.
    pub fn precompute_metrics(
        &self,
        candidates: &mut [Candidate],
        source: &dyn MetricSource,
        window_secs: u32,
    ) {
        if self.inner.contract != Contract::V0_1 {
            return;
        }
        let names = &self.inner.info.metrics;
        for candidate in candidates {
            candidate.metrics.clear();
            candidate
                .metrics
                .extend(names.iter().map(|name| MetricValue {
                    name: name.clone(),
                    value: source.metric(&candidate.id, name, window_secs),
                }));
        }
    }

    /// Decides the route for one request: a validated plan, or why there is none.
    pub fn decide(
        &self,
        request: &Request,
        candidates: &[Candidate],
        metrics: Arc<dyn MetricSource>,
    ) -> Result<RoutePlan, PolicyError> {
        self.decide_traced(request, candidates, metrics).result
    }

    /// Like [`Policy::decide`], also returning resource use and log lines.
    /// A 0.2 policy is configured with the setup the request and candidates
    /// imply ([`v0_2::Setup::implied`]), as the offline harness has it.
    pub fn decide_traced(
        &self,
        request: &Request,
        candidates: &[Candidate],
        metrics: Arc<dyn MetricSource>,
    ) -> Decision {
        self.decide_fresh(
            None,
            request,
            candidates,
            metrics,
            self.inner.runtime.limits.deadline,
        )
    }

    /// Like [`Policy::decide_traced`], with the team's setup and the
    /// request's content signals (what a 0.2 policy gets beyond the request;
    /// a 0.1 policy reads neither).
    pub fn decide_in(
        &self,
        context: &v0_2::Context,
        request: &Request,
        candidates: &[Candidate],
        metrics: Arc<dyn MetricSource>,
    ) -> Decision {
        self.decide_fresh(
            Some(context),
            request,
            candidates,
            metrics,
            self.inner.runtime.limits.deadline,
        )
    }

    /// A decision on a fresh instance, stopped after `deadline`.
    fn decide_fresh(
        &self,
        context: Option<&v0_2::Context>,
        request: &Request,
        candidates: &[Candidate],
        metrics: Arc<dyn MetricSource>,
        deadline: Duration,
    ) -> Decision {
        let started = Instant::now();
        let mut store = self.new_store(metrics, deadline);
        let result = match self.instantiate(&mut store) {
            Ok(mut instance) => self.call(
                &mut store,
                &mut instance,
                context,
                deadline,
                request,
                candidates,
            ),
            Err(e) => Err(self.classify_instantiate(&store, e)),
        };
        let stats = self.stats(&store, started);
        let (result, notes) = split(result);
        Decision {
            result,
            stats,
            logs: store.into_data().logs,
            notes,
        }
    }

    /// A new instance in `store`.
    fn instantiate(&self, store: &mut Store<Sandbox>) -> wasmtime::Result<Instance> {
        Ok(match &self.inner.pre {
            Pre::V0_1(pre) => Instance::V0_1(pre.instantiate(store)?),
            Pre::V0_2(pre) => Instance::V0_2 {
                bindings: pre.instantiate(store)?,
                configured: None,
                offered: Vec::new(),
                metrics: Vec::new(),
            },
        })
    }

    /// Calls `route` on an instance (configuring a 0.2 one first when its
    /// setup is not `context`'s) and validates the plan it returns.
    fn call(
        &self,
        store: &mut Store<Sandbox>,
        instance: &mut Instance,
        context: Option<&v0_2::Context>,
        deadline: Duration,
        request: &Request,
        candidates: &[Candidate],
    ) -> Result<(RoutePlan, Notes), PolicyError> {
        let limits = &self.inner.runtime.limits;
        let (bindings, configured, offered, metrics) = match instance {
            Instance::V0_1(instance) => {
                store.data_mut().offer(candidates);
                let plan = instance
                    .call_route(&mut *store, request, candidates)
                    .map_err(|e| self.classify(store, e))?
                    .map_err(|refusal| self.refused(refusal.kind, &refusal.message))?;
                let plan = plan::validate(plan, request, candidates, limits)?;
                return Ok((plan, Notes::default()));
            }
            Instance::V0_2 {
                bindings,
                configured,
                offered,
                metrics,
            } => (bindings, configured, offered, metrics),
        };
        let implied;
        let context = match context {
            Some(context) => context,
            None => {
                implied = v0_2::Context {
                    setup: Arc::new(v0_2::Setup::implied(request, candidates)),
                    content: None,
                };
                &implied
            }
        };
        let setup = &context.setup;
        if *configured != Some(setup.key) {
            *configured = None;
            // `configure` may parse a large config: it runs under a longer
            // deadline than a decision.
            self.arm(store, configure_deadline(deadline));
            bindings
                .call_configure(&mut *store, &setup.wit)
                .map_err(|e| self.classify(store, e))?
                .map_err(|r| self.refused(v0_2_refusal(r.kind), &r.message))?;
            *configured = Some(setup.key);
            self.arm(store, deadline);
        }
        v0_2::candidates(&setup.tables, candidates, offered).map_err(|id| {
            PolicyError::Instantiate(format!(
                "candidate {id:?} is not in the catalog the policy was configured with"
            ))
        })?;
        let content = context
            .content
            .as_deref()
            .filter(|_| self.inner.wants_content);
        let wit_request = v0_2::request(request, content).map_err(|e| match e {
            // What a 0.1 policy would answer for itself; only an offline
            // case can ask it of 0.2.
            v0_2::Inexpressible::Metric(message) => self.refused(RefusalKind::BadConfig, &message),
            v0_2::Inexpressible::Features(unknown) => self.refused(
                RefusalKind::NoRoute,
                &format!(
                    "the request uses {}, outside the feature table: no candidate can support it",
                    unknown.join(", ")
                ),
            ),
        })?;
        metrics.clear();
        if !self.inner.declared.is_empty() {
            let window = request.routing.interval_seconds.clamp(
                crate::metrics::MIN_WINDOW_SECS,
                crate::metrics::MAX_WINDOW_SECS,
            );
            v0_2::metrics(
                &self.inner.declared,
                candidates,
                store.data().metrics.as_ref(),
                window,
                metrics,
            );
        }
        store.data_mut().offer(candidates);
        let plan = bindings
            .call_route(&mut *store, &wit_request, offered, metrics)
            .map_err(|e| self.classify(store, e))?
            .map_err(|r| self.refused(v0_2_refusal(r.kind), &r.message))?;
        let (plan, notes) = v0_2::plan(plan, wit_request.features, candidates, offered, limits)?;
        Ok((plan, notes))
    }

    /// A policy's refusal, its text escaped and cut (it reaches the caller
    /// and the log).
    fn refused(&self, kind: RefusalKind, message: &str) -> PolicyError {
        let limits = &self.inner.runtime.limits;
        PolicyError::Refused {
            kind,
            message: switchyard_wire::text::printable(message, limits.max_label_bytes * 4),
        }
    }

    /// Resource use of the decision that just ran in `store`.
    fn stats(&self, store: &Store<Sandbox>, started: Instant) -> DecisionStats {
        let fuel_consumed = self.inner.runtime.limits.fuel.map(|start| {
            let left = store.get_fuel().unwrap_or(0);
            start.saturating_sub(left)
        });
        let sandbox = store.data();
        DecisionStats {
            elapsed: started.elapsed(),
            fuel_consumed,
            peak_memory_bytes: sandbox.limiter.peak,
            metric_calls: sandbox.metric_calls,
            logs_dropped: sandbox.logs_dropped,
            foreign_metric_calls: sandbox.foreign_metric_calls,
        }
    }

    /// Calls the guest's `describe` export in a fresh store.
    fn describe(&self) -> Result<Described, PolicyError> {
        let deadline = self.inner.runtime.limits.deadline;
        let mut store = self.new_store(sandbox::idle_source(), deadline);
        let instance = self
            .instantiate(&mut store)
            .map_err(|e| self.classify_instantiate(&store, e))?;
        match instance {
            Instance::V0_1(instance) => instance
                .call_describe(&mut store)
                .map(|info| Described {
                    info,
                    wants_content: false,
                    declared: Vec::new(),
                })
                .map_err(|e| self.classify(&store, e)),
            Instance::V0_2 { bindings, .. } => {
                let info = bindings
                    .call_describe(&mut store)
                    .map_err(|e| self.classify(&store, e))?;
                let declared: Vec<&'static str> =
                    info.metrics.iter().map(v0_2::metric_name).collect();
                Ok(Described {
                    info: Info {
                        name: info.name,
                        version: info.version,
                        metrics: declared.iter().map(|n| n.to_string()).collect(),
                    },
                    wants_content: info.wants.contains(v0_2::wit::Wants::CONTENT),
                    declared,
                })
            }
        }
    }

    fn new_store(&self, metrics: Arc<dyn MetricSource>, deadline: Duration) -> Store<Sandbox> {
        let runtime = &self.inner.runtime;
        let mut store = Store::new(&runtime.engine, Sandbox::new(&runtime.limits, metrics));
        store.limiter(|s| &mut s.limiter);
        self.arm(&mut store, deadline);
        store
    }

    /// Starts the deadline (and the fuel, when counted) of one decision.
    fn arm(&self, store: &mut Store<Sandbox>, deadline: Duration) {
        let limits = &self.inner.runtime.limits;
        store.data_mut().deadline = deadline;
        // One tick may pass right after we read the epoch: allow one extra.
        let ticks = deadline.as_micros().div_ceil(TICK.as_micros()) as u64 + 1;
        store.set_epoch_deadline(ticks);
        if let Some(fuel) = limits.fuel {
            // Cannot fail: fuel consumption is enabled whenever `fuel` is set.
            let _ = store.set_fuel(fuel);
        }
    }

    fn classify_instantiate(&self, store: &Store<Sandbox>, err: wasmtime::Error) -> PolicyError {
        if store.data().limiter.denied {
            return PolicyError::MemoryLimit {
                limit: self.inner.runtime.limits.max_memory_bytes,
            };
        }
        match err.downcast_ref::<wasmtime::Trap>() {
            Some(_) => self.classify(store, err),
            None => PolicyError::Instantiate(format!("{err:#}")),
        }
    }

    fn classify(&self, store: &Store<Sandbox>, err: wasmtime::Error) -> PolicyError {
        let limits = &self.inner.runtime.limits;
        // A denied memory.grow is the root cause even when the guest reports it
        // as an allocation failure (abort) rather than a growth trap.
        if store.data().limiter.denied {
            return PolicyError::MemoryLimit {
                limit: limits.max_memory_bytes,
            };
        }
        match err.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => PolicyError::DeadlineExceeded(store.data().deadline),
            Some(wasmtime::Trap::OutOfFuel) => {
                PolicyError::FuelExhausted(limits.fuel.unwrap_or_default())
            }
            Some(trap) => PolicyError::Trap(trap.to_string()),
            None => PolicyError::Trap(first_line(&format!("{err:#}"))),
        }
    }
}

/// A decision's result and its notes, apart.
fn split(
    result: Result<(RoutePlan, Notes), PolicyError>,
) -> (Result<RoutePlan, PolicyError>, Notes) {
    match result {
        Ok((plan, notes)) => (Ok(plan), notes),
        Err(e) => (Err(e), Notes::default()),
    }
}

/// A 0.2 refusal kind in host terms.
fn v0_2_refusal(kind: v0_2::wit::PolicyErrorKind) -> RefusalKind {
    match kind {
        v0_2::wit::PolicyErrorKind::NoRoute => RefusalKind::NoRoute,
        v0_2::wit::PolicyErrorKind::BadConfig => RefusalKind::BadConfig,
        v0_2::wit::PolicyErrorKind::Internal => RefusalKind::Internal,
    }
}

/// The deadline of a `configure` call: ten decisions' worth, at least 100 ms.
fn configure_deadline(decision: Duration) -> Duration {
    (decision * 10).max(Duration::from_millis(100))
}

/// The WIT name of a refusal kind: `no-route`, `bad-config`, `internal`.
pub fn refusal_name(kind: RefusalKind) -> &'static str {
    match kind {
        RefusalKind::NoRoute => "no-route",
        RefusalKind::BadConfig => "bad-config",
        RefusalKind::Internal => "internal",
    }
}

/// The first line of a trap's report (which may quote the plugin's own
/// names), escaped.
fn first_line(text: &str) -> String {
    switchyard_wire::text::printable(text.lines().next().unwrap_or_default(), 1024)
}

pub(crate) fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}
