//! Shadow policies: an uploaded version a team attaches beside its active
//! policy. On a sampled share of the team's requests it decides on the same
//! inputs the live policy had — the request, the candidates, the metric
//! values the live policy read — once the request has its answer, on its
//! own warm instance in the shadow thread: never on a request's critical
//! path, and its plan is never sent anywhere. Its decision goes into the
//! request's log record (`shadow`), and [`Shadow::report`] sums up
//! agreement, estimated cost and faults since it was attached.
//!
//! The shadow thread is bounded twice: a queue of finished requests (past
//! it a request is logged without a shadow decision, counted) and a CPU
//! budget, a share of one core across all teams' shadows (past it decisions
//! are skipped, counted).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use switchyard_wire::CanonicalRequest;
use switchyard_wire::content::Signals;

use super::{Replay, Summary};
use crate::metrics::{MetricSource, MetricStore};
use crate::policy::Policy;
use crate::request_log::{Attempt, Draft, Outcome, Record, Replayed, RequestLog, ShadowDecision};

/// A team's attached shadow version, and what it has done since.
pub struct Shadow {
    pub team: String,
    pub version: u32,
    /// `v{version}`, as records and reports name it.
    pub label: String,
    /// Share of the team's requests it decides on, in (0, 1].
    pub sample: f64,
    /// When it was attached (seconds since the epoch).
    pub attached_at: u64,
    /// Which attachment this is (the store counts them).
    pub seq: i64,
    /// It reads content, and the team's content may be given to it.
    content: bool,
    content_bytes: usize,
    sha256: String,
    /// The team's policy config it was configured with.
    config: String,
    /// Its own warm instance and running comparison.
    replay: Mutex<Replay>,
    skipped_budget: AtomicU64,
    skipped_queue: AtomicU64,
}

impl std::fmt::Debug for Shadow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shadow")
            .field("team", &self.team)
            .field("version", &self.version)
            .field("sample", &self.sample)
            .finish()
    }
}

/// Where a shadow is attached, from the store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attachment {
    pub version: u32,
    pub sample: f64,
    pub attached_at: u64,
    pub seq: i64,
}

/// What `GET /admin/v1/teams/T/shadow` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShadowReport {
    pub version: u32,
    pub sample: f64,
    pub attached_at: u64,
    /// The comparison since it was attached: `replayed` counts its
    /// decisions, `agree_first` / `agree_plan` / `agree_served` its
    /// agreement with the live ones, `cost` its first choices at the
    /// recorded prices and token counts against what was spent.
    #[serde(flatten)]
    pub summary: Summary,
    /// Sampled requests it did not decide on: the shadow CPU budget was
    /// spent (`[plugins] shadow_cpu_share`).
    pub skipped_cpu_budget: u64,
    /// Sampled requests it did not decide on: the shadow queue was full
    /// (`[plugins] shadow_queue`).
    pub skipped_queue_full: u64,
}

impl Shadow {
    /// `policy` attached for `team` as `at`, configured with the team's
    /// policy config (JSON); `content`: the team's content may be given to
    /// it (it gets it only if it asks).
    pub fn new(
        team: &str,
        at: Attachment,
        policy: Policy,
        config: &str,
        content: bool,
        content_bytes: usize,
    ) -> Shadow {
        let parsed = serde_json::from_str(config).ok();
        let content = content && policy.wants_content();
        Shadow {
            team: team.to_owned(),
            version: at.version,
            label: format!("v{}", at.version),
            sample: at.sample,
            attached_at: at.attached_at,
            seq: at.seq,
            content,
            content_bytes,
            sha256: policy.sha256().to_owned(),
            config: config.to_owned(),
            replay: Mutex::new(Replay::new(policy, parsed, content_bytes)),
            skipped_budget: AtomicU64::new(0),
            skipped_queue: AtomicU64::new(0),
        }
    }

    /// Whether it is the attachment `at` configured with `config` (so its
    /// counts carry over a directory rebuild; a new config starts afresh).
    pub fn is(&self, at: &Attachment, config: &str) -> bool {
        self.version == at.version
            && self.seq == at.seq
            && self.sample == at.sample
            && self.config == config
    }

    /// Whether this request is in its sample.
    pub fn sampled(&self) -> bool {
        self.sample >= 1.0 || fastrand::f64() < self.sample
    }

    /// The sha256 of its component.
    pub fn policy_sha256(&self) -> &str {
        &self.sha256
    }

    /// Whether it is given the request's content.
    pub fn wants_content(&self) -> bool {
        self.content
    }

    /// Its decision on a finished request's record, compared with the live
    /// one; `None` when no policy decided live.
    fn decide(
        &self,
        record: &Record,
        content: Option<Signals>,
        live: Arc<dyn MetricSource>,
    ) -> Option<Replayed> {
        self.lock().record_with(record, content, Some(live))
    }

    /// What it has done since it was attached.
    pub fn report(&self) -> ShadowReport {
        ShadowReport {
            version: self.version,
            sample: self.sample,
            attached_at: self.attached_at,
            summary: self.lock().summary(),
            skipped_cpu_budget: self.skipped_budget.load(Ordering::Relaxed),
            skipped_queue_full: self.skipped_queue.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Replay> {
        self.replay.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A finished request of a team with a shadow, waiting for its decision.
pub struct Job {
    pub shadow: Arc<Shadow>,
    pub draft: Draft,
    pub attempts: Vec<Attempt>,
    pub outcome: Outcome,
    /// The request, when the shadow reads content.
    pub body: Option<Arc<CanonicalRequest>>,
}

/// The shadow thread and its queue; records leave it for the request log.
pub struct ShadowRunner {
    tx: Option<mpsc::SyncSender<Job>>,
    log: Arc<RequestLog>,
}

impl ShadowRunner {
    /// Starts the shadow thread: `queue` finished requests may wait, and
    /// the decisions may use `cpu_share` of one core.
    pub fn start(
        queue: usize,
        cpu_share: f64,
        log: Arc<RequestLog>,
        metrics: Arc<MetricStore>,
    ) -> ShadowRunner {
        let (tx, rx) = mpsc::sync_channel::<Job>(queue);
        let thread_log = log.clone();
        let spawned = std::thread::Builder::new()
            .name("shadow-policies".into())
            .spawn(move || run(&rx, &thread_log, &metrics, cpu_share));
        let tx = match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the shadow policy thread; shadows will not decide");
                None
            }
        };
        ShadowRunner { tx, log }
    }

    /// Hands a finished request to the shadow thread, never waiting: with
    /// the queue full it is logged without a shadow decision (counted).
    pub fn submit(&self, job: Job) {
        let job = match &self.tx {
            Some(tx) => match tx.try_send(job) {
                Ok(()) => return,
                Err(mpsc::TrySendError::Full(job) | mpsc::TrySendError::Disconnected(job)) => job,
            },
            None => job,
        };
        job.shadow.skipped_queue.fetch_add(1, Ordering::Relaxed);
        self.log.submit(job.draft, job.attempts, job.outcome);
    }
}

/// CPU time the shadow decisions may use: `share` of the wall time that
/// passes, at most one second's worth saved up.
struct Budget {
    share: f64,
    seconds: f64,
    last: Instant,
}

impl Budget {
    fn new(share: f64) -> Budget {
        Budget {
            share,
            seconds: share,
            last: Instant::now(),
        }
    }

    fn allows(&mut self) -> bool {
        let now = Instant::now();
        let passed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.seconds = (self.seconds + passed * self.share).min(self.share);
        self.seconds > 0.0
    }

    fn spend(&mut self, used: Duration) {
        self.seconds -= used.as_secs_f64();
    }
}

fn run(rx: &mpsc::Receiver<Job>, log: &RequestLog, metrics: &Arc<MetricStore>, share: f64) {
    let mut budget = Budget::new(share);
    while let Ok(job) = rx.recv() {
        let Job {
            shadow,
            draft,
            attempts,
            outcome,
            body,
        } = job;
        let mut record = draft.finish(attempts, outcome, log.prompt_bytes());
        if budget.allows() {
            let content = body
                .filter(|_| shadow.content)
                .map(|b| Signals::of(&b, shadow.content_bytes));
            let started = Instant::now();
            let decided = shadow.decide(&record, content, Arc::new(metrics.snapshot()));
            budget.spend(started.elapsed());
            record.shadow = decided.map(|decision| ShadowDecision {
                policy: shadow.label.clone(),
                decision,
            });
        } else {
            shadow.skipped_budget.fetch_add(1, Ordering::Relaxed);
        }
        log.submit_record(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_allows_its_share_of_the_time_that_passes() {
        let mut budget = Budget::new(0.25);
        assert!(budget.allows());
        // A decision that used two seconds overdraws a quarter-core budget
        // by 1.75 s: nothing more until seven seconds have passed.
        budget.spend(Duration::from_secs(2));
        assert!(!budget.allows());
        budget.last -= Duration::from_secs(6);
        assert!(!budget.allows());
        budget.last -= Duration::from_secs(2);
        assert!(budget.allows());
        // Idle time saves up at most one second's worth.
        budget.last -= Duration::from_secs(3600);
        assert!(budget.allows());
        assert!(budget.seconds <= 0.25);
    }
}
