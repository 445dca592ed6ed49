//! The executor's side of a streamed answer: the relay from the upstream's
//! chunks to the canonical [`StreamEvent`]s the HTTP edge renders. It puts
//! the routing info on the first chunk and the cost beside the usage, turns
//! an upstream that breaks or goes quiet after content into
//! [`StreamEvent::Broken`] (never a clean end), and settles the answer when
//! the stream ends — or when the caller abandons it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{Stream, StreamExt, stream};
use serde_json::{Map, Value, json};
use switchyard_wire::Usage;
use switchyard_wire::chunk::Chunk;
use switchyard_wire::stream::StreamEvent;

use super::AttemptRecord;
use super::rescue::Rescuer;
use super::settle::{Settlement, Tally};
use crate::catalog::Model;
use crate::providers::ChunkStream;

/// A streamed answer in canonical events; the last is `Done` or `Broken`.
pub type EventStream = Pin<Box<dyn Stream<Item = StreamEvent> + Send>>;

struct Relay {
    head: VecDeque<Chunk>,
    rest: ChunkStream,
    /// The routing info, for the first chunk.
    info: Option<Map<String, Value>>,
    model: Model,
    idle_timeout: Duration,
    tally: Tally,
    /// Taken when the stream ends (or the relay is dropped first).
    settlement: Option<Settlement>,
    /// Continues the answer elsewhere if the upstream breaks after content.
    rescuer: Option<Rescuer>,
    /// What the caller has so far, and whether a rescue can continue it.
    answer: Answer,
    /// The answer went on from rescues: what they were, and what the broken
    /// attempts before the serving one used (estimated) and cost.
    rescues: Vec<Value>,
    rescue_trail: Vec<AttemptRecord>,
    earlier: Option<(Usage, f64, bool)>,
    /// What the stream used, for the request log (when it is on).
    report: Option<StreamReport>,
}

/// What a stream used, summed over its attempts (a rescued stream's broken
/// ones included), filled in as each is settled: read by the request log
/// when the stream ends.
#[derive(Clone, Default)]
pub struct StreamReport(Arc<Mutex<StreamTotals>>);

/// The sums of a [`StreamReport`].
#[derive(Debug, Clone, Default)]
pub struct StreamTotals {
    pub usage: Option<Usage>,
    pub cost_usd: Option<f64>,
    pub estimated: bool,
    /// Another candidate continued the stream after it broke.
    pub rescued: bool,
    /// The account and model that served last.
    pub provider: String,
    pub model: String,
}

impl StreamReport {
    fn settled(&self, provider: &str, model: &str, tally: &Tally) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(u) = tally.usage {
            let sum = t.usage.get_or_insert_with(Usage::default);
            sum.prompt_tokens += u.prompt_tokens;
            sum.completion_tokens += u.completion_tokens;
            sum.cached_tokens += u.cached_tokens;
        }
        if let Some(c) = tally.cost_usd {
            *t.cost_usd.get_or_insert(0.0) += c;
        }
        t.estimated |= tally.estimated;
        provider.clone_into(&mut t.provider);
        model.clone_into(&mut t.model);
    }

    fn rescued(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).rescued = true;
    }

    /// The sums so far.
    pub fn totals(&self) -> StreamTotals {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The text the caller has received so far (first choice only).
#[derive(Default)]
struct Answer {
    /// Content text of the first choice.
    text: String,
    /// Bytes of `text` the serving upstream sent (the rest came before it).
    from_current: usize,
    /// The chunk id the caller saw first; a rescue keeps it.
    id: Option<Value>,
    /// Something a rescue cannot continue went out: a tool call, a second
    /// choice, a finish reason.
    unrescuable: bool,
    /// The answer's finish reason went out: it is whole.
    finished: bool,
}

impl Answer {
    /// Notes what `chunk` adds; its text is kept only when a rescue may need
    /// it (`keep_text`), its length always (a broken stream's estimate).
    fn note(&mut self, chunk: &Chunk, keep_text: bool) {
        if self.id.is_none() {
            self.id = chunk.id();
        }
        if chunk.other_choice() {
            self.unrescuable = true;
        }
        if chunk.finished() {
            self.finished = true;
        }
        if self.finished || chunk.tool_call() {
            self.unrescuable = true;
        }
        if let Some(text) = chunk.text() {
            if keep_text {
                self.text.push_str(text);
            }
            self.from_current += text.len();
        }
    }
}

impl Relay {
    /// Adds the routing info to the first chunk and the cost beside the
    /// usage, and tallies the usage. After a rescue the chunk keeps the
    /// stream's first id, and its usage and cost add the broken attempts'.
    fn chunk(&mut self, mut chunk: Chunk) -> StreamEvent {
        if let Some(info) = self.info.take() {
            chunk.set_routing(info);
        }
        if !self.rescues.is_empty() {
            let id = self.answer.id.clone();
            chunk.edit(|chunk| {
                if let Some(id) = id {
                    chunk["id"] = id;
                }
                if let Some(Value::Object(delta)) = chunk.pointer_mut("/choices/0/delta") {
                    delta.remove("role");
                }
            });
        }
        self.answer.note(&chunk, self.rescuer.is_some());
        if let Some(usage) = chunk.usage() {
            let cost = self.model.cost(&usage);
            self.tally.usage = Some(usage);
            self.tally.cost_usd = Some(cost);
            let (mut total, mut total_cost) = (usage, cost);
            if let Some((earlier, earlier_cost, estimated)) = self.earlier {
                total.prompt_tokens += earlier.prompt_tokens;
                total.completion_tokens += earlier.completion_tokens;
                total.cached_tokens += earlier.cached_tokens;
                total_cost += earlier_cost;
                chunk.edit(|chunk| chunk["usage"] = total.to_openai());
                let routing = chunk.routing_mut();
                routing.insert("usage_estimated".into(), json!(estimated));
                routing.insert("rescues".into(), json!(self.rescues));
                routing.insert("rescue_trail".into(), json!(self.rescue_trail));
            }
            chunk
                .routing_mut()
                .insert("cost_usd".into(), json!(total_cost));
        }
        StreamEvent::Chunk(chunk)
    }

    fn end(&mut self, broken: Option<String>) -> StreamEvent {
        self.settle_current(broken.is_some(), broken.is_some());
        broken.map_or(StreamEvent::Done, StreamEvent::Broken)
    }

    /// Settles the serving attempt. When its upstream broke (`estimate`)
    /// before reporting usage, it is billed what it relayed, estimated (4
    /// bytes of text a token) and marked so.
    fn settle_current(&mut self, broken: bool, estimate: bool) -> Option<(Usage, f64, bool)> {
        let settlement = self.settlement.take()?;
        let mut tally = self.tally;
        tally.broken = broken;
        if estimate && tally.usage.is_none() {
            let prompt = self
                .rescuer
                .as_ref()
                .map_or(0, Rescuer::estimated_input_tokens);
            let usage = Usage {
                prompt_tokens: prompt,
                completion_tokens: (self.answer.from_current as u64).div_ceil(4),
                cached_tokens: 0,
            };
            tally.usage = Some(usage);
            tally.cost_usd = Some(self.model.cost(&usage));
            tally.estimated = true;
        }
        if let Some(report) = &self.report {
            report.settled(&settlement.charge.account, &settlement.charge.model, &tally);
        }
        settlement.settle(tally);
        tally
            .usage
            .zip(tally.cost_usd)
            .map(|(u, c)| (u, c, tally.estimated))
    }

    /// The upstream broke after content (`why`): continues the answer on the
    /// plan's next candidates, or ends it with the original failure.
    async fn broke(&mut self, why: String) -> Option<StreamEvent> {
        // The caller has the whole answer (its finish went out); only the
        // usage and the end marker were lost.
        if self.answer.finished {
            tracing::warn!(error = %why, "upstream broke after the answer's finish; ending it as complete");
            self.settle_current(false, true);
            return Some(StreamEvent::Done);
        }
        let rescuable = !self.answer.unrescuable && !self.answer.text.is_empty();
        let Some(mut rescuer) = self.rescuer.take().filter(|_| rescuable) else {
            return Some(self.end(Some(why)));
        };
        let (provider, model) = self
            .settlement
            .as_ref()
            .map(|s| (s.charge.account.clone(), s.charge.model.clone()))
            .unwrap_or_default();
        let used = self.settle_current(true, true);
        if let Some((usage, cost, estimated)) = used {
            let (mut u, mut c, mut e) = self.earlier.unwrap_or_default();
            u.prompt_tokens += usage.prompt_tokens;
            u.completion_tokens += usage.completion_tokens;
            u.cached_tokens += usage.cached_tokens;
            c += cost;
            e |= estimated;
            self.earlier = Some((u, c, e));
        }
        self.rescue_trail.push(AttemptRecord {
            provider,
            model,
            status: None,
            reason: "stream_broken".into(),
            message: Some(why.clone()),
            retry_after_ms: None,
            latency_ms: None,
        });
        let rescued = rescuer
            .rescue(&self.answer.text, &mut self.rescue_trail)
            .await;
        let Some(r) = rescued else {
            tracing::warn!(error = %why, "stream broke after content; no candidate could continue it");
            return Some(StreamEvent::Broken(why));
        };
        tracing::info!(provider = %r.provider, model = %r.model_name, kind = r.kind.name(), "stream rescued after it broke mid-answer");
        if let Some(report) = &self.report {
            report.rescued();
        }
        self.rescues.push(json!({
            "kind": r.kind.name(), "provider": r.provider, "model": r.model_name,
        }));
        self.head.extend(r.head);
        self.rest = r.rest;
        self.model = r.model;
        self.settlement = Some(r.settlement);
        self.tally = Tally::default();
        self.answer.from_current = 0;
        self.rescuer = Some(rescuer);
        None
    }

    /// The next event: a chunk, the end, or — after a rescue — the next
    /// chunk from the candidate that took over.
    async fn next(&mut self) -> StreamEvent {
        loop {
            if let Some(chunk) = self.head.pop_front() {
                return self.chunk(chunk);
            }
            let why = match tokio::time::timeout(self.idle_timeout, self.rest.next()).await {
                Ok(Some(Ok(chunk))) => return self.chunk(chunk),
                Ok(None) => return self.end(None),
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %e.message, "upstream stream broke after content");
                    format!("the provider's stream broke: {}", e.message)
                }
                Err(_) => format!(
                    "the provider sent nothing for {} ms",
                    self.idle_timeout.as_millis()
                ),
            };
            // Boxed: a rescue's future (a whole attempt) is large, and this
            // one is built for every event of every stream.
            if let Some(event) = Box::pin(self.broke(why)).await {
                return event;
            }
        }
    }
}

impl Drop for Relay {
    /// A stream the caller abandoned still owes what it used so far.
    fn drop(&mut self) {
        if let Some(settlement) = self.settlement.take() {
            if let Some(report) = &self.report {
                report.settled(
                    &settlement.charge.account,
                    &settlement.charge.model,
                    &self.tally,
                );
            }
            settlement.settle(self.tally);
        }
    }
}

/// The events of a streamed answer (`info`: the routing info, as JSON): `head` (chunks already received, the
/// first content chunk among them), then the rest of the upstream; a
/// `rescuer` continues it elsewhere if it breaks after content.
#[allow(clippy::too_many_arguments)]
pub fn relay(
    info: Map<String, Value>,
    head: Vec<Chunk>,
    rest: ChunkStream,
    model: Model,
    idle_timeout: Duration,
    settlement: Settlement,
    rescuer: Option<Rescuer>,
    report: Option<StreamReport>,
) -> EventStream {
    let relay = Relay {
        head: head.into(),
        rest,
        info: Some(info),
        model,
        idle_timeout,
        tally: Tally::default(),
        settlement: Some(settlement),
        rescuer,
        answer: Answer::default(),
        rescues: Vec::new(),
        rescue_trail: Vec::new(),
        earlier: None,
        report,
    };
    Box::pin(stream::unfold(relay, |mut relay| async move {
        // Ended: the settlement went with the last event.
        relay.settlement.as_ref()?;
        let event = relay.next().await;
        Some((event, relay))
    }))
}

/// The chunks of a whole `chat.completion`, for callers that asked to stream
/// when the serving attempt could not (streaming was stripped).
pub fn from_completion(body: Value, usage: Usage) -> ChunkStream {
    let chunks = switchyard_wire::stream::completion_chunks(body, usage);
    Box::pin(stream::iter(chunks.into_iter().map(Ok)))
}
