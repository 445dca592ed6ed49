//! The request log's view of a request: the [`Draft`] the executor fills
//! in as the request passes its stages, finished and handed to the log once
//! the caller has its answer — a whole answer or an error at once, a stream
//! when it ends (or is abandoned).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use futures_util::Stream;
use switchyard_wire::CanonicalRequest;
use switchyard_wire::stream::StreamEvent;

use super::decide::DecidedBy;
use super::stream::StreamReport;
use super::{AttemptRecord, EventStream, RouteError, RouteInfo};
use crate::policy::{Candidate, Notes, RoutePlan};
use crate::replay::shadow::{Job, Shadow, ShadowRunner};
use crate::request_log::{Attempt, Decision, Draft, Outcome, PlanStep, RequestLog, millis};

/// The API a request came in on, as records name it.
pub(super) fn api_name(api: switchyard_wire::Api) -> &'static str {
    match api {
        switchyard_wire::Api::Chat => "chat",
        switchyard_wire::Api::Responses => "responses",
        switchyard_wire::Api::Messages => "messages",
    }
}

/// The trail, as the log keeps it.
pub(super) fn attempts(trail: &[AttemptRecord]) -> Vec<Attempt> {
    trail
        .iter()
        .map(|a| Attempt {
            provider: a.provider.clone(),
            model: a.model.clone(),
            status: a.status,
            reason: a.reason.clone(),
            message: a.message.clone(),
            latency_ms: a.latency_ms,
            retry_after_ms: a.retry_after_ms,
        })
        .collect()
}

/// What the policy decided, as the log keeps it: its plan as it returned
/// it, naming candidates by id.
pub(super) fn decision(
    by: DecidedBy,
    result: Result<(&RoutePlan, &Notes), ()>,
    candidates: &[Candidate],
) -> Decision {
    let (label, plan, notes) = match result {
        Ok((plan, notes)) => (
            Some(plan.label.clone()),
            PlanStep::of(plan, candidates),
            Some(notes),
        ),
        Err(()) => (None, Vec::new(), None),
    };
    Decision {
        policy: by.policy,
        contract: by.contract.to_owned(),
        decision_us: u64::try_from(by.elapsed.as_micros()).unwrap_or(u64::MAX),
        label,
        score: notes.and_then(|n| n.score),
        explanation: notes.map(|n| n.explanation.clone()).unwrap_or_default(),
        plan,
        fault: by.stood_in_for.as_ref().map(|(_, f)| (*f).to_owned()),
        stood_in_for: by.stood_in_for.map(|(v, _)| v),
    }
}

/// The caller's error, as the log keeps it.
pub(super) fn failed(e: &RouteError, arrival: Instant) -> Outcome {
    Outcome {
        status: e.status,
        code: Some(e.code.as_str().to_owned()),
        duration_ms: millis(arrival.elapsed()),
        ..Outcome::default()
    }
}

/// A whole answer, or a stream's start (its usage is added at its end).
pub(super) fn served(info: &RouteInfo, arrival: Instant) -> Outcome {
    Outcome {
        status: 200,
        provider: Some(info.provider.clone()),
        model: Some(info.model.clone()),
        stripped: info.stripped.clone(),
        input_tokens: info.usage.map(|u| u.prompt_tokens),
        output_tokens: info.usage.map(|u| u.completion_tokens),
        cached_tokens: info.usage.map(|u| u.cached_tokens),
        cost_usd: info.cost_usd,
        duration_ms: millis(arrival.elapsed()),
        ..Outcome::default()
    }
}

/// A stream whose record is finished when it ends: its usage and cost
/// summed over its attempts, whether it broke, when its first content went
/// out, or that the caller went away first.
struct Logged {
    inner: Option<EventStream>,
    pending: Option<Pending>,
}

/// Where a finished request's record goes: to the request log, or first
/// to the team's shadow policy when this request is in its sample.
pub(super) struct Sink {
    pub(super) log: Arc<RequestLog>,
    pub(super) shadows: Arc<ShadowRunner>,
    pub(super) shadow: Option<Arc<Shadow>>,
    /// The request, for a shadow that reads content.
    pub(super) body: Option<Arc<CanonicalRequest>>,
}

impl Sink {
    pub(super) fn submit(self, draft: Draft, attempts: Vec<Attempt>, outcome: Outcome) {
        match self.shadow {
            Some(shadow) => self.shadows.submit(Job {
                shadow,
                draft,
                attempts,
                outcome,
                body: self.body,
            }),
            None => self.log.submit(draft, attempts, outcome),
        }
    }
}

/// A streamed answer's record, finished when the stream ends.
pub(super) struct Pending {
    pub(super) sink: Sink,
    pub(super) draft: Draft,
    pub(super) attempts: Vec<Attempt>,
    /// The answer as it started; its usage is added at the end.
    pub(super) outcome: Outcome,
    pub(super) report: StreamReport,
    pub(super) arrival: Instant,
}

impl Pending {
    fn finish(mut self, broken: bool, closed: bool) {
        let totals = self.report.totals();
        let o = &mut self.outcome;
        if let Some(u) = totals.usage {
            o.input_tokens = Some(u.prompt_tokens);
            o.output_tokens = Some(u.completion_tokens);
            o.cached_tokens = Some(u.cached_tokens);
        }
        o.cost_usd = totals.cost_usd;
        o.usage_estimated = totals.estimated;
        o.rescued = totals.rescued;
        if totals.rescued {
            o.provider = Some(totals.provider);
            o.model = Some(totals.model);
        }
        o.stream_broken = broken;
        o.client_closed = closed;
        o.duration_ms = millis(self.arrival.elapsed());
        self.sink.submit(self.draft, self.attempts, self.outcome);
    }
}

impl Stream for Logged {
    type Item = StreamEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<StreamEvent>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = inner.as_mut().poll_next(cx);
        match &polled {
            Poll::Ready(Some(StreamEvent::Chunk(_))) => {
                if let Some(p) = self.pending.as_mut()
                    && p.outcome.ttft_ms.is_none()
                {
                    p.outcome.ttft_ms = Some(millis(p.arrival.elapsed()));
                }
            }
            Poll::Ready(Some(StreamEvent::Done)) | Poll::Ready(None) => {
                if let Some(p) = self.pending.take() {
                    p.finish(false, false);
                }
            }
            Poll::Ready(Some(StreamEvent::Broken(_))) => {
                if let Some(p) = self.pending.take() {
                    p.finish(true, false);
                }
            }
            Poll::Pending => {}
        }
        polled
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        // The relay settles what it used when dropped: first, so the record
        // has it.
        drop(self.inner.take());
        if let Some(p) = self.pending.take() {
            p.finish(false, true);
        }
    }
}

/// `events`, finishing the record when the stream ends.
pub(super) fn logged_stream(events: EventStream, pending: Pending) -> EventStream {
    Box::pin(Logged {
        inner: Some(events),
        pending: Some(pending),
    })
}
