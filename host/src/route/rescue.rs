//! Mid-stream rescue: a stream that breaks (or stalls) after content reached
//! the caller goes on from the plan's next candidates instead of ending with
//! an error. The caller keeps one well-formed stream.
//!
//! * **Continuation**, where the candidate's account declares `continuation`
//!   (Anthropic's Messages API, and OpenAI-compatible servers that continue a
//!   trailing assistant message): the conversation plus the partial answer as
//!   an assistant prefill; everything the candidate adds is forwarded.
//! * **Regenerate and skip**, elsewhere (or when a continuation is refused,
//!   e.g. a model that does not take prefill): the request again, its output
//!   held until it has passed the text the caller already has, and the rest
//!   forwarded only if it begins with exactly that text.
//!
//! Each candidate's call, failure or refusal goes in the trail; a refusal of
//! the rescue never becomes the caller's error: when no candidate can take
//! over, the stream ends with the original failure.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use switchyard_wire::chunk::Chunk;
use switchyard_wire::request::Message;
use switchyard_wire::{FeatureSet, UpstreamError, Usage};

use super::attempt::{Answer, Context, Failover, send};
use super::settle::{Settlement, StreamAttempt, Tally};
use super::{AttemptRecord, Executor, RouteRequest};
use crate::catalog::Model;
use crate::directory::DirectoryEntry;
use crate::health::Verdict;
use crate::metrics::Sample;
use crate::policy::{Candidate, PlannedAttempt};
use crate::providers::ChunkStream;

/// How a rescue continued the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Continuation,
    Regenerate,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Continuation => "continuation",
            Kind::Regenerate => "regenerate",
        }
    }
}

/// A candidate that took over a broken stream.
pub struct Rescued {
    pub kind: Kind,
    pub provider: String,
    pub model_name: String,
    /// Chunks to forward first: the new content after what the caller has.
    pub head: Vec<Chunk>,
    pub rest: ChunkStream,
    pub model: Model,
    pub settlement: Settlement,
}

/// What a streamed answer needs to go on elsewhere: the request and the
/// plan's attempts after the one serving it.
pub struct Rescuer {
    pub(super) executor: Arc<Executor>,
    pub(super) entry: Arc<DirectoryEntry>,
    pub(super) req: RouteRequest,
    pub(super) later: VecDeque<(PlannedAttempt, Candidate)>,
    pub(super) features: FeatureSet,
    pub(super) estimated_tokens: u64,
    pub(super) arrival: Instant,
    pub(super) label: String,
    pub(super) idle_timeout: Duration,
}

impl Rescuer {
    /// Input tokens the request was estimated at, for a broken attempt's
    /// estimated usage.
    pub fn estimated_input_tokens(&self) -> u64 {
        self.estimated_tokens
    }

    /// Tries the remaining candidates in plan order to continue `delivered`
    /// (the text the caller has); each call goes in `trail`. `None` when none
    /// could.
    pub async fn rescue(
        &mut self,
        delivered: &str,
        trail: &mut Vec<AttemptRecord>,
    ) -> Option<Rescued> {
        let executor = self.executor.clone();
        let cx = Context {
            team: &self.entry.team,
            arrival: self.arrival,
            features: self.features,
            estimated_tokens: self.estimated_tokens,
            team_admission: None,
            notes: crate::policy::Notes::default(),
            // The relay holding this rescuer reports the rescue's usage.
            stream_report: None,
        };
        while let Some((attempt, candidate)) = self.later.pop_front() {
            let config = &executor.config;
            let Some(account) = config.providers.iter().find(|a| {
                switchyard_wire::candidate::CandidateRef::lenient(&candidate.id).account == a.name
            }) else {
                continue;
            };
            let (Some(model), Some(provider)) = (
                config.catalog.get(&candidate.model),
                executor.providers.get(&account.name),
            ) else {
                continue;
            };
            let mut kinds = if account.continuation {
                vec![Kind::Continuation, Kind::Regenerate]
            } else {
                vec![Kind::Regenerate]
            };
            for kind in kinds.drain(..) {
                let mut failover = Failover::default();
                let gated = executor
                    .gate(&mut failover, &cx, account, &candidate, false)
                    .await;
                trail.append(&mut failover.trail);
                let Some((ticket, admitted)) = gated else {
                    break;
                };
                let req = match kind {
                    Kind::Continuation => with_prefill(&self.req, delivered),
                    Kind::Regenerate => self.req.clone(),
                };
                let (chat, sent) = executor.call(&req, &cx, &attempt, account, &candidate);
                let started = Instant::now();
                let result = match send(provider.as_ref(), chat).await {
                    Ok(Answer::Stream(head, rest)) => Ok((head, rest)),
                    Ok(Answer::Complete(body, usage)) => {
                        let mut chunks = super::stream::from_completion(body.into_value(), usage);
                        let mut head = Vec::new();
                        while let Some(Ok(c)) = chunks.next().await {
                            head.push(c);
                        }
                        Ok((head, chunks))
                    }
                    Err(e) => Err(e),
                };
                let ttft = started.elapsed();
                let (head, rest) = match result {
                    Ok(answer) => answer,
                    Err(error) => {
                        executor
                            .call_failed(account, &candidate, &sent, &error, ticket)
                            .await;
                        executor.cool_down_after(account, &error).await;
                        executor.telemetry.rescue(
                            &account.name,
                            &candidate.model,
                            kind.name(),
                            false,
                        );
                        trail.push(record(account.name.clone(), &candidate, &error, kind));
                        // A refused prefill: the same candidate may still
                        // regenerate. Anything else moves on.
                        if kind == Kind::Continuation && !error.class.fails_over() {
                            continue;
                        }
                        break;
                    }
                };
                let probe = ticket.is_probe();
                ticket.finish(Verdict::Neutral);
                let outcome = match kind {
                    Kind::Continuation => Ok((continued(head, delivered), rest)),
                    Kind::Regenerate => {
                        skip_delivered(head, rest, delivered, self.idle_timeout).await
                    }
                };
                let (head, rest) = match outcome {
                    Ok(found) => found,
                    Err(Diverged { why, read }) => {
                        // Its answer differs from what the caller has: the
                        // candidate is healthy, the answer just is not ours.
                        // What it generated until then is billed, estimated.
                        let usage = Usage {
                            prompt_tokens: self.estimated_tokens,
                            completion_tokens: (read as u64).div_ceil(4),
                            cached_tokens: 0,
                        };
                        executor
                            .settlement(
                                &self.entry.team,
                                account,
                                &candidate,
                                &self.label,
                                sent.features,
                                true,
                                admitted.into_iter().collect(),
                                None,
                            )
                            .settle(Tally {
                                usage: Some(usage),
                                cost_usd: Some(model.cost(&usage)),
                                estimated: true,
                                ..Tally::default()
                            });
                        executor.record_attempt(
                            &candidate.id,
                            sent.features,
                            Sample {
                                outcome: Some(crate::metrics::Outcome::Ok),
                                latency: Some(ttft),
                                ..Sample::default()
                            },
                        );
                        executor.telemetry.rescue(
                            &account.name,
                            &candidate.model,
                            kind.name(),
                            false,
                        );
                        trail.push(AttemptRecord {
                            provider: account.name.clone(),
                            model: candidate.model.clone(),
                            status: Some(200),
                            reason: "rescue_diverged".into(),
                            message: Some(why),
                            retry_after_ms: None,
                            latency_ms: None,
                        });
                        break;
                    }
                };
                executor
                    .telemetry
                    .rescue(&account.name, &candidate.model, kind.name(), true);
                trail.push(AttemptRecord {
                    provider: account.name.clone(),
                    model: candidate.model.clone(),
                    status: Some(200),
                    reason: format!("rescue_{}", kind.name()),
                    message: None,
                    retry_after_ms: None,
                    latency_ms: None,
                });
                let settlement = executor.settlement(
                    &self.entry.team,
                    account,
                    &candidate,
                    &self.label,
                    sent.features,
                    true,
                    admitted.into_iter().collect(),
                    Some(StreamAttempt {
                        ttft,
                        e2e: self.arrival.elapsed(),
                        probe,
                    }),
                );
                return Some(Rescued {
                    kind,
                    provider: account.name.clone(),
                    model_name: candidate.model.clone(),
                    head,
                    rest,
                    model: model.clone(),
                    settlement,
                });
            }
        }
        None
    }
}

/// The trail's record of a rescue call that failed.
fn record(
    provider: String,
    candidate: &Candidate,
    error: &UpstreamError,
    kind: Kind,
) -> AttemptRecord {
    AttemptRecord {
        provider,
        model: candidate.model.clone(),
        status: error.status,
        reason: format!("rescue_{}_{}", kind.name(), error.class.name()),
        message: Some(error.message.clone()),
        retry_after_ms: None,
        latency_ms: None,
    }
}

/// The request with the partial answer as a trailing assistant message.
fn with_prefill(req: &RouteRequest, delivered: &str) -> RouteRequest {
    let mut req = req.clone();
    Arc::make_mut(&mut req.body).messages.push(Message {
        role: "assistant".into(),
        content: Some(Value::String(delivered.to_owned())),
        ..Message::default()
    });
    req
}

/// A continuation's chunks as the caller's stream goes on: without a second
/// `role`, and without the whitespace the prefill was trimmed of (providers
/// refuse a prefill that ends in whitespace, so its continuation restarts
/// with it) when the caller already has it.
fn continued(mut head: Vec<Chunk>, delivered: &str) -> Vec<Chunk> {
    let mut pending = &delivered[delivered.trim_end().len()..];
    for chunk in &mut head {
        if pending.is_empty() {
            break;
        }
        let Some(text) = chunk.text() else {
            continue;
        };
        let keep = strip_common_prefix(text, pending);
        let past = keep < text.len();
        pending = &pending[keep..];
        chunk.drain_text(keep);
        if past {
            break;
        }
    }
    head
}

/// How many leading bytes of `text` equal the start of `pending`.
fn strip_common_prefix(text: &str, pending: &str) -> usize {
    text.char_indices()
        .zip(pending.chars())
        .take_while(|((_, a), b)| a == b)
        .last()
        .map_or(0, |((i, c), _)| i + c.len_utf8())
}

/// Why a regenerated answer could not continue the caller's, and how many
/// bytes of text it had generated by then (billed by its provider).
#[derive(Debug)]
struct Diverged {
    why: String,
    read: usize,
}

/// Reads a regenerated answer until it has passed `delivered`, checking that
/// it begins with exactly that text: the chunks after it (the first one cut
/// to what is new), or why not.
async fn skip_delivered(
    head: Vec<Chunk>,
    mut rest: ChunkStream,
    delivered: &str,
    idle: Duration,
) -> Result<(Vec<Chunk>, ChunkStream), Diverged> {
    let mut seen = 0usize;
    let mut out = Vec::new();
    let mut pending: VecDeque<Chunk> = head.into();
    let diverged = |why: String, read: usize| Diverged { why, read };
    loop {
        let mut chunk = match pending.pop_front() {
            Some(chunk) => chunk,
            None => match tokio::time::timeout(idle, rest.next()).await {
                Ok(Some(Ok(chunk))) => chunk,
                Ok(Some(Err(e))) => {
                    return Err(diverged(
                        format!("its stream broke too: {}", e.message),
                        seen,
                    ));
                }
                Ok(None) => {
                    let why = format!(
                        "its answer ended after {seen} of the {} bytes the caller has",
                        delivered.len()
                    );
                    return Err(diverged(why, seen));
                }
                Err(_) => {
                    return Err(diverged(
                        format!("it sent nothing for {} ms", idle.as_millis()),
                        seen,
                    ));
                }
            },
        };
        if seen >= delivered.len() {
            out.push(chunk);
            out.extend(pending);
            return Ok((out, rest));
        }
        let Some(text) = chunk.text() else {
            if chunk.tool_call() {
                return Err(diverged("it answered with a tool call".into(), seen));
            }
            continue; // a role chunk, or one without content
        };
        let want = &delivered[seen..];
        let common = strip_common_prefix(text, want);
        let len = text.len();
        if common < len.min(want.len()) {
            let why = format!(
                "its answer differs from the caller's after {} bytes",
                seen + common
            );
            return Err(diverged(why, seen + len));
        }
        seen += common;
        if common < len {
            // This chunk goes past what the caller has: forward the rest.
            chunk.drain_text(common);
            out.push(chunk);
            out.extend(pending);
            return Ok((out, rest));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;
    use serde_json::json;

    fn chunk(text: &str) -> Chunk {
        Chunk::from_value(json!({ "choices": [{ "index": 0, "delta": { "content": text } }] }))
    }

    fn texts(chunks: &[Chunk]) -> Vec<String> {
        chunks
            .iter()
            .filter_map(|c| c.text().map(str::to_owned))
            .collect()
    }

    fn upstream(pieces: &[&str]) -> ChunkStream {
        let chunks: Vec<_> = pieces.iter().map(|p| Ok(chunk(p))).collect();
        Box::pin(stream::iter(chunks))
    }

    #[tokio::test]
    async fn regenerate_skips_what_the_caller_has() {
        let head = vec![
            Chunk::from_value(json!({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})),
            chunk("The"),
        ];
        let rest = upstream(&[" quick", " brown", " fox"]);
        let (out, mut rest) = skip_delivered(head, rest, "The qu", Duration::from_secs(1))
            .await
            .expect("same answer");
        assert_eq!(texts(&out), vec!["ick".to_string()]);
        let next = rest.next().await.and_then(Result::ok).expect("more");
        assert_eq!(texts(&[next]), vec![" brown".to_string()]);
    }

    #[tokio::test]
    async fn regenerate_refuses_a_different_answer() {
        let err = skip_delivered(
            vec![chunk("The slow")],
            upstream(&[]),
            "The quick",
            Duration::from_secs(1),
        )
        .await
        .err()
        .expect("differs");
        assert!(err.why.contains("differs"), "{err:?}");
        assert_eq!(err.read, "The slow".len(), "billed what it generated");
        let err = skip_delivered(
            vec![chunk("The")],
            upstream(&[]),
            "The quick",
            Duration::from_secs(1),
        )
        .await
        .err()
        .expect("shorter");
        assert!(err.why.contains("ended"), "{err:?}");
        assert_eq!(err.read, 3);
    }

    #[test]
    fn continuation_drops_whitespace_the_caller_has() {
        let out = continued(vec![chunk(" fox"), chunk(" jumps")], "The quick brown ");
        assert_eq!(texts(&out), vec!["fox".to_string(), " jumps".to_string()]);
        let out = continued(vec![chunk(" fox")], "The quick brown");
        assert_eq!(texts(&out), vec![" fox".to_string()]);
    }
}
