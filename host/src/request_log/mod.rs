//! The request log: one record per request the executor handled — what was
//! asked, the candidates and metric values the policy saw, its plan, every
//! attempt, and what the caller received (docs/request-log.md holds the
//! schema, versioned by [`SCHEMA`]).
//!
//! Recording never blocks a request: when a request ends, its [`Draft`]
//! (the executor's own data, moved) is pushed onto a shared buffer; a
//! writer thread writes each as JSON (`json`) and what is waiting in one
//! transaction per interval, a compressed row per team
//! ([`crate::store::LogBatch`]), prunes by age and size, and keeps (up to
//! `[log] max_pending`) what the store refused until it accepts writes
//! again. A record's decision inputs have the shape of a `switchyard policy
//! test` case, so a logged decision replays as one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use switchyard_wire::CanonicalRequest;

use crate::config::LogSettings;
use crate::metrics::MetricSource;
use crate::policy::spec::{CandidateSpec, MetricSpec, RequestSpec};
use crate::policy::{Candidate, Request, RoutePlan};
use crate::store::{LogBatch, Store};
use crate::telemetry::Family;

mod json;

/// The record schema this build writes (`schema` in every record). A
/// reader refuses a record whose schema it does not know.
pub const SCHEMA: u32 = 1;

/// One request, as logged and exported (one JSONL line).
///
/// The log's writer does not serialise this type: `json.rs` writes the same
/// bytes from a [`Draft`]. A field added here (or to a type it holds) needs
/// its line there, and a value in that module's byte-for-byte test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// [`SCHEMA`].
    pub schema: u32,
    /// Unique id of the record (32 hex digits).
    pub id: String,
    /// Arrival at the gateway, Unix milliseconds.
    pub time_ms: u64,
    pub team: String,
    /// `chat`, `responses` or `messages`.
    pub api: String,
    pub stream: bool,
    /// What the policy was told of the request (a case file's `request`);
    /// `prompt`/`system` only for a team whose prompts the operator logs.
    pub request: RequestSpec,
    /// The candidates offered to the policy, after the hard filters.
    #[serde(default)]
    pub candidates: Vec<CandidateSpec>,
    /// The metric values the policy read: `{ id: { "name@seconds": value } }`.
    #[serde(default)]
    pub metrics: MetricSpec,
    /// What the policy decided (absent when the request ended before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Every attempt, in order, skipped ones included.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// What the caller received.
    pub result: Outcome,
    /// What the team's shadow policy decided on the same inputs, when one
    /// was attached and this request was in its sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowDecision>,
}

/// A shadow policy's decision on a logged request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowDecision {
    /// The shadow's version label (`v3`).
    pub policy: String,
    #[serde(flatten)]
    pub decision: Replayed,
}

/// Another policy's decision on a logged request's inputs (the shadow's,
/// or `switchyard policy replay`'s), compared with the live one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Replayed {
    /// Its plan (empty when it refused or faulted).
    #[serde(default)]
    pub plan: Vec<PlanStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub explanation: Vec<String>,
    /// Why there is no plan: a refusal (`refused:no-route`) or a fault
    /// (`trap`, `deadline`, ...), with the policy's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ReplayError>,
    /// Its decision's wall time, microseconds.
    pub decision_us: f64,
    /// Its first attempt is the live decision's first attempt (both
    /// refusing counts as agreeing).
    pub agrees_first: bool,
    /// Its whole plan is the live decision's plan, in order.
    pub agrees_plan: bool,
    /// Its first attempt's candidate at its recorded prices with the tokens
    /// the served answer used; absent without recorded usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

/// A replayed decision that produced no plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayError {
    pub kind: String,
    pub message: String,
}

/// What the policy returned for a request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// `default`, or the team plugin's version label (`v3`).
    pub policy: String,
    /// The contract version it ran on (`0.2.0`).
    pub contract: String,
    /// Wall time of the decision, microseconds.
    pub decision_us: u64,
    /// The plan's label; absent when the policy refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub explanation: Vec<String>,
    /// The plan as the policy returned it (before the gateway moved a
    /// half-open candidate first to probe it).
    #[serde(default)]
    pub plan: Vec<PlanStep>,
    /// The team plugin that faulted, when the default decided in its place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stood_in_for: Option<String>,
    /// That plugin's fault kind (`trap`, `deadline`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

/// One attempt of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanStep {
    /// The candidate's id.
    pub candidate: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub strip: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u8>,
}

impl PlanStep {
    /// A plan's attempts, naming each candidate by id (an index with no
    /// candidate is left out: the plan's validation refuses those).
    pub fn of(plan: &RoutePlan, candidates: &[Candidate]) -> Vec<PlanStep> {
        plan.attempts
            .iter()
            .filter_map(|a| {
                Some(PlanStep {
                    candidate: candidates.get(a.candidate)?.id.clone(),
                    strip: a.strip.clone(),
                    timeout_ms: a.timeout_ms,
                    retries: a.retries,
                })
            })
            .collect()
    }
}

/// One attempt made (or skipped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub provider: String,
    pub model: String,
    /// The provider's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `ok`, or why it failed or was skipped.
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Call sent → answer (a stream: its first content), or → failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// What the caller received.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The HTTP status of the answer (200 for a stream that started).
    pub status: u16,
    /// The error code, when the request failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The account and model that served (after a rescue: the last one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Features removed from the request before the serving attempt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stripped: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u64>,
    /// What the answer cost, US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// The gateway estimated the usage (a stream that broke before the
    /// provider reported it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub usage_estimated: bool,
    /// Arrival → the answer's end (a stream: its last event).
    pub duration_ms: f64,
    /// Arrival → the first content a streaming caller received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    /// The stream broke after content and was not continued.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream_broken: bool,
    /// The stream broke and another candidate continued it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rescued: bool,
    /// The caller went away before the answer ended.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub client_closed: bool,
}

/// Milliseconds with microsecond precision, for durations in a record.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The metric values a decision read, as the request path keeps them: each
/// candidate and metric name once, and per read their positions, the window
/// and the value. Grouped into a record's `metrics` ([`Self::to_spec`]) by
/// the log's writer, off the request path.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeenMetrics {
    candidates: Vec<String>,
    names: Vec<String>,
    reads: Vec<Read>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Read {
    candidate: u32,
    name: u32,
    window: u32,
    value: f64,
}

/// The position of `item` in `list`, added at the end if it is new.
fn position(list: &mut Vec<String>, item: &str) -> u32 {
    let at = list.iter().position(|x| x == item).unwrap_or_else(|| {
        list.push(item.to_owned());
        list.len() - 1
    });
    u32::try_from(at).unwrap_or(u32::MAX)
}

impl SeenMetrics {
    /// As a record's `metrics`: per candidate, `name@window` → value.
    pub fn to_spec(&self) -> MetricSpec {
        let mut spec = MetricSpec::new();
        for r in &self.reads {
            let (Some(candidate), Some(name)) = (
                self.candidates.get(r.candidate as usize),
                self.names.get(r.name as usize),
            ) else {
                continue;
            };
            spec.entry(candidate.clone())
                .or_default()
                .insert(format!("{name}@{}", r.window), r.value);
        }
        spec
    }

    /// The values of a record's `metrics`, for a test's draft.
    #[cfg(test)]
    pub fn from_spec(spec: &MetricSpec) -> Self {
        let mut seen = Self::default();
        for (candidate, values) in spec {
            for (key, value) in values {
                let (name, window) = key
                    .rsplit_once('@')
                    .and_then(|(n, w)| Some((n, w.parse().ok()?)))
                    .unwrap_or((key.as_str(), 0));
                seen.push(candidate, name, window, *value);
            }
        }
        seen
    }

    fn push(&mut self, candidate: &str, name: &str, window: u32, value: f64) {
        let candidate = position(&mut self.candidates, candidate);
        let name = position(&mut self.names, name);
        self.reads.push(Read {
            candidate,
            name,
            window,
            value,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.reads.is_empty()
    }
}

/// A metric source that remembers what the policy read, for the record.
pub struct Recorder {
    inner: Arc<dyn MetricSource>,
    seen: Mutex<SeenMetrics>,
}

impl Recorder {
    pub fn new(inner: Arc<dyn MetricSource>) -> Self {
        Self {
            inner,
            seen: Mutex::new(SeenMetrics::default()),
        }
    }

    /// What was read, for a record's `metrics` (values without data left out).
    pub fn take(&self) -> SeenMetrics {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl MetricSource for Recorder {
    fn metric(&self, candidate: &str, name: &str, window_secs: u32) -> Option<f64> {
        let value = self.inner.metric(candidate, name, window_secs)?;
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).push(
            candidate,
            name,
            window_secs,
            value,
        );
        Some(value)
    }

    fn metric_each(&self, candidates: &[String], name: &str, window_secs: u32, out: &mut Vec<f64>) {
        let start = out.len();
        self.inner.metric_each(candidates, name, window_secs, out);
        let mut guard = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let seen = &mut *guard;
        // A policy reads each declared metric for the same candidates: they
        // are kept once, in the order offered, and read by position.
        if seen.candidates.is_empty() {
            seen.candidates = candidates.to_vec();
        }
        let same = seen.candidates.as_slice() == candidates;
        let name_at = position(&mut seen.names, name);
        for (i, (candidate, value)) in candidates.iter().zip(&out[start..]).enumerate() {
            if value.is_finite() {
                let at = if same {
                    u32::try_from(i).unwrap_or(u32::MAX)
                } else {
                    position(&mut seen.candidates, candidate)
                };
                seen.reads.push(Read {
                    candidate: at,
                    name: name_at,
                    window: window_secs,
                    value: *value,
                });
            }
        }
    }
}

/// A record being filled in as the request passes the executor's stages,
/// from what the executor has anyway (moved, not copied); written as JSON
/// by the log's writer once the request ends ([`RequestLog::submit`]), or
/// finished into a typed [`Record`] for a shadow policy.
pub struct Draft {
    pub id: u128,
    pub time_ms: u64,
    pub team: String,
    /// The model the caller asked for (the record's `request.model` when
    /// the request ended before its decision).
    pub model: String,
    pub api: &'static str,
    pub stream: bool,
    /// What the policy was told, once it was.
    pub request: Option<Request>,
    /// The request, when the team's prompts are logged: the writer cuts its
    /// last user turn and system prompt to `[log] prompt_bytes`.
    pub prompt: Option<Arc<CanonicalRequest>>,
    pub candidates: Vec<Candidate>,
    pub metrics: SeenMetrics,
    pub decision: Option<Decision>,
}

impl Draft {
    /// A record of a request that arrived at `time_ms`.
    pub fn new(time_ms: u64, team: String, model: String, api: &'static str, stream: bool) -> Self {
        Draft {
            id: (u128::from(fastrand::u64(..)) << 64) | u128::from(fastrand::u64(..)),
            time_ms,
            team,
            model,
            api,
            stream,
            request: None,
            prompt: None,
            candidates: Vec::new(),
            metrics: SeenMetrics::default(),
            decision: None,
        }
    }

    /// The record id, as records show it.
    pub fn id_text(&self) -> String {
        format!("{:032x}", self.id)
    }

    /// The finished record: prompt text (when kept) cut to `prompt_bytes`.
    pub fn finish(self, attempts: Vec<Attempt>, outcome: Outcome, prompt_bytes: usize) -> Record {
        let id = self.id_text();
        let mut request = match &self.request {
            Some(told) => RequestSpec::from(told),
            None => RequestSpec {
                model: Some(self.model),
                team: Some(self.team.clone()),
                ..RequestSpec::default()
            },
        };
        if let Some(body) = &self.prompt {
            let signals = switchyard_wire::content::Signals::of(body, prompt_bytes);
            request.prompt = signals.last_user;
            request.system = signals.system;
        }
        Record {
            schema: SCHEMA,
            id,
            time_ms: self.time_ms,
            team: self.team,
            api: self.api.to_owned(),
            stream: self.stream,
            candidates: self.candidates.iter().map(CandidateSpec::from).collect(),
            metrics: self.metrics.to_spec(),
            decision: self.decision,
            attempts,
            result: outcome,
            request,
            shadow: None,
        }
    }
}

/// Finished records waiting for the writer, as they are: the executor's
/// drafts, and records built already (a shadow's). Writing a record's JSON
/// on a worker that has just served a request cost that worker about four
/// times the writing's own time, in caches the rest of the request path
/// then missed; the writer thread writes the interval's records in one go,
/// its code and data warm (BENCHMARKS.md §8e). The queue keeps its capacity
/// from one take to the next.
#[derive(Default)]
struct Queue {
    drafts: Vec<Finished>,
    records: Vec<Record>,
}

/// A request's draft with how it ended, waiting for the writer.
struct Finished {
    draft: Draft,
    attempts: Vec<Attempt>,
    outcome: Outcome,
}

impl Queue {
    fn len(&self) -> usize {
        self.drafts.len() + self.records.len()
    }

    /// Empties the queue, keeping its capacity unless a burst (a store that
    /// refused writes) grew it past [`KEEP_QUEUED`] records.
    fn clear(&mut self) {
        if self.drafts.capacity() > KEEP_QUEUED {
            self.drafts = Vec::new();
        }
        self.drafts.clear();
        self.records.clear();
    }
}

/// A queue grown past this many drafts is freed once taken.
const KEEP_QUEUED: usize = 16_384;
/// Spare batch buffers kept for the next interval, in bytes of capacity.
const KEEP_SPARE: usize = 8 << 20;

/// The records serialised and waiting to be written: one batch per team
/// open for more, the batches that are full or that the store refused, and
/// buffers of batches written, for the next ones.
#[derive(Default)]
struct Batches {
    open: std::collections::HashMap<String, LogBatch>,
    waiting: Vec<LogBatch>,
    spare: Vec<Vec<u8>>,
}

impl Batches {
    /// Appends a serialised record to its team's batch.
    fn push(&mut self, team: &str, time_ms: u64, json: &[u8]) {
        let batch = match self.open.get_mut(team) {
            Some(batch) => batch,
            None => {
                let buffer = self.spare.pop().unwrap_or_default();
                self.open
                    .entry(team.to_owned())
                    .or_insert_with(|| LogBatch::with_buffer(team, buffer))
            }
        };
        let appended = batch.push_with(time_ms, |out| {
            out.extend_from_slice(json);
            Ok::<_, std::convert::Infallible>(())
        });
        if let Err(never) = appended {
            match never {}
        }
        if batch.is_full()
            && let Some(full) = self.open.remove(team)
        {
            self.waiting.push(full);
        }
    }

    /// The waiting batches are written: their buffers are kept for the next
    /// ones, up to [`KEEP_SPARE`] bytes.
    fn written(&mut self) {
        let mut kept: usize = self.spare.iter().map(Vec::capacity).sum();
        for batch in self.waiting.drain(..) {
            let buffer = batch.into_buffer();
            if kept + buffer.capacity() <= KEEP_SPARE {
                kept += buffer.capacity();
                self.spare.push(buffer);
            }
        }
    }

    /// Everything, ready to write.
    fn seal(&mut self) -> &[LogBatch] {
        self.waiting.extend(self.open.drain().map(|(_, b)| b));
        &self.waiting
    }

    fn records(&self) -> u64 {
        self.open
            .values()
            .chain(&self.waiting)
            .map(|b| u64::from(b.records()))
            .sum()
    }
}

/// Counters of the writer, for `/metrics`.
#[derive(Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
    pending: AtomicU64,
    pruned: AtomicU64,
    bytes: AtomicU64,
}

/// A request to write now, answered when done.
struct FlushRequest(mpsc::SyncSender<Result<(), String>>);

/// The request log: the buffer the executor pushes onto and its writer.
pub struct RequestLog {
    settings: LogSettings,
    buffer: Arc<Mutex<Queue>>,
    tx: Mutex<Option<mpsc::Sender<FlushRequest>>>,
    counters: Arc<Counters>,
}

/// Records are written at least this often.
const WRITE_INTERVAL: Duration = Duration::from_millis(250);

/// The writer takes the drafts waiting this often, writes their JSON into
/// its batches and frees them: a worker's memory comes back to it while
/// still in its caches, not a quarter of a second later.
const TAKE_INTERVAL: Duration = Duration::from_millis(10);

/// Retention runs this often (and once at start).
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

impl RequestLog {
    /// The log of `settings`, writing to `store` (nothing when disabled).
    pub fn start(settings: LogSettings, store: Arc<Store>) -> RequestLog {
        let log = RequestLog {
            buffer: Arc::new(Mutex::new(Queue::default())),
            tx: Mutex::new(None),
            counters: Arc::new(Counters::default()),
            settings,
        };
        if !log.settings.enabled {
            return log;
        }
        let (tx, rx) = mpsc::channel::<FlushRequest>();
        let (buffer, counters, settings) = (
            log.buffer.clone(),
            log.counters.clone(),
            log.settings.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("request-log".into())
            .spawn(move || writer(&store, &settings, &buffer, &rx, &counters));
        match spawned {
            Ok(_) => *log.tx.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx),
            Err(e) => tracing::error!(error = %e, "cannot start the request log writer"),
        }
        log
    }

    /// A log that records nothing.
    pub fn disabled() -> RequestLog {
        RequestLog {
            settings: LogSettings {
                enabled: false,
                ..LogSettings::default()
            },
            buffer: Arc::new(Mutex::new(Queue::default())),
            tx: Mutex::new(None),
            counters: Arc::new(Counters::default()),
        }
    }

    /// Whether requests are recorded.
    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// Hands a finished record to the writer. Never waits on the store;
    /// beyond `max_pending` waiting records (the store refusing writes) the
    /// record is dropped and counted.
    pub fn submit(&self, draft: Draft, attempts: Vec<Attempt>, outcome: Outcome) {
        if !self.settings.enabled {
            return;
        }
        if let Some(mut queue) = self.admit() {
            queue.drafts.push(Finished {
                draft,
                attempts,
                outcome,
            });
        }
    }

    /// Hands a record built already to the writer, as [`Self::submit`].
    pub fn submit_record(&self, record: Record) {
        if !self.settings.enabled {
            return;
        }
        if let Some(mut queue) = self.admit() {
            queue.records.push(record);
        }
    }

    /// Prompt text in records is cut to this many bytes.
    pub fn prompt_bytes(&self) -> usize {
        self.settings.prompt_bytes
    }

    /// The queue, locked, when it has room for one more record; otherwise
    /// the record is dropped and counted.
    fn admit(&self) -> Option<std::sync::MutexGuard<'_, Queue>> {
        let queue = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let waiting = queue.len() as u64 + self.counters.pending.load(Ordering::Relaxed);
        if waiting < self.settings.max_pending as u64 {
            return Some(queue);
        }
        drop(queue);
        if self.counters.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::error!(
                max_pending = self.settings.max_pending,
                "the request log is full (the store refuses writes); dropping records, counted in switchyard_request_log_dropped_total"
            );
        }
        None
    }

    /// Writes what is waiting now (an admin read sees every request answered
    /// before it).
    pub fn flush(&self) -> Result<(), String> {
        let (reply, answer) = mpsc::sync_channel(1);
        let sent = {
            let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
            match tx.as_ref() {
                Some(tx) => tx.send(FlushRequest(reply)).is_ok(),
                None => return Ok(()),
            }
        };
        if !sent {
            return Err("the request log writer is gone".into());
        }
        answer
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the request log writer did not answer".to_string())?
    }

    /// The writer's counters for `/metrics`.
    pub fn families(&self) -> Vec<Family> {
        let c = &self.counters;
        let one = |v: &AtomicU64| vec![(Vec::new(), v.load(Ordering::Relaxed) as f64)];
        vec![
            Family {
                name: "switchyard_request_log_records_total",
                help: "Request log records written to the store.",
                kind: "counter",
                labels: &[],
                samples: one(&c.written),
            },
            Family {
                name: "switchyard_request_log_dropped_total",
                help: "Request log records dropped because [log] max_pending records were already waiting for a store that refused writes.",
                kind: "counter",
                labels: &[],
                samples: one(&c.dropped),
            },
            Family {
                name: "switchyard_request_log_write_errors_total",
                help: "Request log batches the store refused (kept and retried).",
                kind: "counter",
                labels: &[],
                samples: one(&c.errors),
            },
            Family {
                name: "switchyard_request_log_pending",
                help: "Request log records waiting to be written.",
                kind: "gauge",
                labels: &[],
                samples: one(&c.pending),
            },
            Family {
                name: "switchyard_request_log_pruned_total",
                help: "Request log records deleted by retention ([log] max_age, max_mib).",
                kind: "counter",
                labels: &[],
                samples: one(&c.pruned),
            },
            Family {
                name: "switchyard_request_log_bytes",
                help: "Bytes the request log's rows hold in the store (compressed).",
                kind: "gauge",
                labels: &[],
                samples: one(&c.bytes),
            },
        ]
    }
}

fn writer(
    store: &Store,
    settings: &LogSettings,
    buffer: &Mutex<Queue>,
    rx: &mpsc::Receiver<FlushRequest>,
    counters: &Counters,
) {
    let mut bytes = store.log_bytes().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot measure the request log");
        0
    });
    let mut batches = Batches::default();
    let mut taken = Queue::default();
    // Where the writer writes each draft's JSON.
    let mut scratch = Vec::new();
    let mut failing = false;
    let mut last_prune: Option<Instant> = None;
    let mut last_write = Instant::now();
    loop {
        let (flush, closed) = match rx.recv_timeout(TAKE_INTERVAL) {
            Ok(request) => (Some(request), false),
            Err(mpsc::RecvTimeoutError::Timeout) => (None, false),
            Err(mpsc::RecvTimeoutError::Disconnected) => (None, true),
        };
        std::mem::swap(
            &mut *buffer.lock().unwrap_or_else(|e| e.into_inner()),
            &mut taken,
        );
        for f in &taken.drafts {
            scratch.clear();
            json::record(
                &mut scratch,
                &f.draft,
                &f.attempts,
                &f.outcome,
                settings.prompt_bytes,
            );
            batches.push(&f.draft.team, f.draft.time_ms, &scratch);
        }
        for record in &taken.records {
            scratch.clear();
            match serde_json::to_writer(&mut scratch, record) {
                Ok(()) => batches.push(&record.team, record.time_ms, &scratch),
                Err(e) => tracing::error!(error = %e, "cannot serialise a request log record"),
            }
        }
        taken.clear();
        let pending = batches.records();
        counters.pending.store(pending, Ordering::Relaxed);
        if flush.is_none() && !closed && last_write.elapsed() < WRITE_INTERVAL {
            continue;
        }
        last_write = Instant::now();
        let mut result = Ok(());
        if pending > 0 {
            match store.insert_log(batches.seal()) {
                Ok(written) => {
                    bytes += written;
                    counters.written.fetch_add(pending, Ordering::Relaxed);
                    batches.written();
                    counters.pending.store(0, Ordering::Relaxed);
                    if failing {
                        failing = false;
                        tracing::info!("request log writes succeed again; kept records written");
                    }
                }
                Err(e) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    if !failing {
                        failing = true;
                        tracing::error!(error = %e, records = pending, "cannot write the request log; keeping the records and retrying");
                    }
                    result = Err(e.to_string());
                }
            }
        }
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_INTERVAL) {
            last_prune = Some(Instant::now());
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let before = now_ms.saturating_sub(settings.max_age.as_millis() as u64);
            match store.prune_log(before, bytes, settings.max_bytes) {
                Ok((records, freed)) => {
                    bytes = bytes.saturating_sub(freed);
                    counters.pruned.fetch_add(records, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(error = %e, "cannot prune the request log"),
            }
        }
        counters.bytes.store(bytes, Ordering::Relaxed);
        if let Some(FlushRequest(reply)) = flush {
            let _ = reply.send(result);
        }
        if closed {
            let left = batches.records();
            if left > 0 {
                tracing::error!(
                    records = left,
                    "request log closed with records it could not write"
                );
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LogOrder, LogQuery};

    fn outcome() -> Outcome {
        Outcome {
            status: 200,
            duration_ms: 1.0,
            ..Outcome::default()
        }
    }

    /// A source whose value is the length of the candidate's id, with no
    /// data for ids starting with `none`.
    struct Lengths;
    impl MetricSource for Lengths {
        fn metric(&self, candidate: &str, _name: &str, window_secs: u32) -> Option<f64> {
            (!candidate.starts_with("none"))
                .then(|| candidate.len() as f64 + f64::from(window_secs))
        }
    }

    #[test]
    fn the_recorder_keeps_every_value_read_and_only_those() {
        let recorder = Recorder::new(Arc::new(Lengths));
        let offered: Vec<String> = ["a/x", "none/y", "bb/z"].map(String::from).into();
        let mut out = Vec::new();
        recorder.metric_each(&offered, "uptime", 60, &mut out);
        recorder.metric_each(&offered, "p95_latency", 900, &mut out);
        assert_eq!(recorder.metric("bb/z", "uptime", 300), Some(304.0));
        assert_eq!(recorder.metric("none/q", "uptime", 300), None);
        recorder.metric_each(&offered[2..], "p95_latency", 30, &mut out);
        let mut expected = MetricSpec::new();
        for (id, key, value) in [
            ("a/x", "uptime@60", 63.0),
            ("a/x", "p95_latency@900", 903.0),
            ("bb/z", "uptime@60", 64.0),
            ("bb/z", "p95_latency@900", 904.0),
            ("bb/z", "uptime@300", 304.0),
            ("bb/z", "p95_latency@30", 34.0),
        ] {
            expected
                .entry(id.to_string())
                .or_default()
                .insert(key.to_string(), value);
        }
        let seen = recorder.take();
        assert_eq!(seen.to_spec(), expected);
        assert_eq!(SeenMetrics::from_spec(&expected).to_spec(), expected);
        assert!(recorder.take().is_empty(), "taken once");
    }

    #[test]
    fn records_wait_while_the_store_refuses_them_and_the_overflow_is_counted() {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-reqlog-{}-{:x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("switchyard.db");
        let store = Arc::new(Store::open(&path).expect("store"));
        // Another connection takes the table away: every write fails.
        let side = rusqlite::Connection::open(&path).expect("side connection");
        side.execute_batch("ALTER TABLE request_log_batches RENAME TO hidden")
            .expect("hide");
        let settings = LogSettings {
            max_pending: 3,
            ..LogSettings::default()
        };
        let log = RequestLog::start(settings, store.clone());
        for _ in 0..5 {
            log.submit(
                Draft::new(1, "t".into(), "m".into(), "chat", false),
                Vec::new(),
                outcome(),
            );
        }
        assert!(log.flush().is_err(), "the store refuses the batch");
        let c = &log.counters;
        assert_eq!(c.dropped.load(Ordering::Relaxed), 2);
        assert!(c.errors.load(Ordering::Relaxed) >= 1);
        assert_eq!(c.pending.load(Ordering::Relaxed), 3);
        // The store accepts writes again: the kept records are written.
        side.execute_batch("ALTER TABLE hidden RENAME TO request_log_batches")
            .expect("restore");
        log.flush().expect("written");
        let all = LogQuery {
            order: LogOrder::Oldest,
            limit: 10,
            ..LogQuery::default()
        };
        let rows = store.query_log(&all).expect("read");
        assert_eq!(rows.len(), 3);
        let record: Record = serde_json::from_str(&rows[0].1).expect("schema");
        assert_eq!((record.schema, record.result.status), (SCHEMA, 200));
        assert_eq!(c.written.load(Ordering::Relaxed), 3);
    }
}
