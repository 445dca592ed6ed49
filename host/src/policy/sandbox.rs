//! Per-decision store data: the memory limiter and the host side of the
//! `switchyard:policy/host` interface.

use std::sync::Arc;

use super::bindings::switchyard::policy::{host, types};
use super::{Candidate, Limits, LogLine, v0_2};
use crate::metrics::{MAX_WINDOW_SECS, MIN_WINDOW_SECS, MetricSource};

/// Store data of one decision.
pub(super) struct Sandbox {
    pub limiter: MemoryLimiter,
    pub metrics: Arc<dyn MetricSource>,
    pub metric_calls: u32,
    /// Ids of the candidates offered to the current decision: `metric`
    /// answers for these only (buffers reused from decision to decision).
    offered: Vec<String>,
    /// Where the last `metric` lookup matched, so a policy walking its
    /// candidates in order finds each at the first comparison.
    cursor: usize,
    /// `metric` calls naming a candidate not offered to this decision.
    pub foreign_metric_calls: u32,
    pub logs: Vec<LogLine>,
    pub logs_dropped: u32,
    /// The deadline the current decision runs under.
    pub deadline: std::time::Duration,
    max_log_lines: usize,
    max_log_bytes: usize,
}

impl Sandbox {
    pub fn new(limits: &Limits, metrics: Arc<dyn MetricSource>) -> Self {
        Self {
            limiter: MemoryLimiter {
                max_memory: limits.max_memory_bytes,
                peak: 0,
                denied: false,
            },
            metrics,
            metric_calls: 0,
            offered: Vec::new(),
            cursor: 0,
            foreign_metric_calls: 0,
            logs: Vec::new(),
            logs_dropped: 0,
            deadline: limits.deadline,
            max_log_lines: limits.max_log_lines,
            max_log_bytes: limits.max_log_bytes,
        }
    }
}

impl Sandbox {
    /// Readies a kept store for its next decision, reading `metrics`.
    pub fn begin(&mut self, metrics: Arc<dyn MetricSource>) {
        self.metrics = metrics;
        self.metric_calls = 0;
        self.foreign_metric_calls = 0;
        self.logs_dropped = 0;
        self.logs.clear();
        self.limiter.denied = false;
    }

    /// Records the candidates a decision is offered: the only ids `metric`
    /// answers for.
    pub fn offer(&mut self, candidates: &[Candidate]) {
        self.offered.truncate(candidates.len());
        for (i, candidate) in candidates.iter().enumerate() {
            match self.offered.get_mut(i) {
                Some(id) => {
                    id.clear();
                    id.push_str(&candidate.id);
                }
                None => self.offered.push(candidate.id.clone()),
            }
        }
        self.cursor = 0;
    }

    /// Whether `id` was offered to the current decision.
    fn was_offered(&mut self, id: &str) -> bool {
        let n = self.offered.len();
        for k in 0..n {
            let i = (self.cursor + k) % n;
            if self.offered[i] == id {
                self.cursor = i + 1;
                return true;
            }
        }
        false
    }

    /// Ends a decision on a kept store: lets go of its metric snapshot and
    /// hands back its log lines.
    pub fn end(&mut self) -> Vec<LogLine> {
        self.metrics = idle_source();
        std::mem::take(&mut self.logs)
    }
}

/// What a kept store reads between decisions: no data. One shared instance,
/// so that ending a decision allocates nothing.
pub fn idle_source() -> Arc<dyn MetricSource> {
    static IDLE: std::sync::OnceLock<Arc<dyn MetricSource>> = std::sync::OnceLock::new();
    IDLE.get_or_init(|| Arc::new(crate::metrics::NoMetrics))
        .clone()
}

/// Caps linear memory and tables, remembering the peak and whether a growth
/// was refused (so a trap that follows is reported as a memory-limit fault).
pub(super) struct MemoryLimiter {
    pub max_memory: usize,
    pub peak: usize,
    pub denied: bool,
}

/// Most table elements an instance may have.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.denied = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

impl types::Host for Sandbox {}

impl host::Host for Sandbox {
    fn metric(&mut self, candidate: String, name: String, window_seconds: u32) -> Option<f64> {
        self.metric_calls = self.metric_calls.saturating_add(1);
        if !(MIN_WINDOW_SECS..=MAX_WINDOW_SECS).contains(&window_seconds) {
            return None;
        }
        // A policy reads the metrics of what it was offered, nothing else:
        // another team's private accounts are not its business.
        if !self.was_offered(&candidate) {
            self.foreign_metric_calls = self.foreign_metric_calls.saturating_add(1);
            return None;
        }
        self.metrics.metric(&candidate, &name, window_seconds)
    }

    fn log(&mut self, level: types::Level, message: String) {
        self.log_line(level, message);
    }
}

impl Sandbox {
    fn log_line(&mut self, level: types::Level, message: String) {
        if self.logs.len() >= self.max_log_lines {
            self.logs_dropped = self.logs_dropped.saturating_add(1);
            return;
        }
        self.logs.push(LogLine {
            level,
            message: super::truncate(message, self.max_log_bytes),
        });
    }
}

impl v0_2::wit_types::Host for Sandbox {}

impl v0_2::wit_host::Host for Sandbox {
    fn metric(
        &mut self,
        candidate: u16,
        id: v0_2::wit::MetricId,
        window_seconds: u32,
    ) -> Option<f64> {
        self.metric_calls = self.metric_calls.saturating_add(1);
        if !(MIN_WINDOW_SECS..=MAX_WINDOW_SECS).contains(&window_seconds) {
            return None;
        }
        let Some(offered) = self.offered.get(usize::from(candidate)) else {
            self.foreign_metric_calls = self.foreign_metric_calls.saturating_add(1);
            return None;
        };
        self.metrics
            .metric(offered, v0_2::metric_name(&id), window_seconds)
    }

    fn metrics(&mut self, id: v0_2::wit::MetricId, window_seconds: u32) -> Vec<f64> {
        self.metric_calls = self.metric_calls.saturating_add(1);
        if !(MIN_WINDOW_SECS..=MAX_WINDOW_SECS).contains(&window_seconds) {
            return Vec::new();
        }
        let mut values = Vec::with_capacity(self.offered.len());
        self.metrics.metric_each(
            &self.offered,
            v0_2::metric_name(&id),
            window_seconds,
            &mut values,
        );
        values
    }

    fn log(&mut self, level: v0_2::wit::Level, message: String) {
        let level = match level {
            v0_2::wit::Level::Debug => types::Level::Debug,
            v0_2::wit::Level::Info => types::Level::Info,
            v0_2::wit::Level::Warn => types::Level::Warn,
            v0_2::wit::Level::Error => types::Level::Error,
        };
        self.log_line(level, message);
    }
}
