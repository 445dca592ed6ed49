//! The executor's side of a streamed answer: the relay from the upstream's
//! chunks to the canonical [`StreamEvent`]s the HTTP edge renders. It puts
//! the routing info on the first chunk and the cost beside the usage, turns
//! an upstream that breaks or goes quiet after content into
//! [`StreamEvent::Broken`] (never a clean end), and settles the answer when
//! the stream ends — or when the caller abandons it.

use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt, stream};
use serde_json::{Value, json};
use switchyard_wire::Usage;
use switchyard_wire::stream::StreamEvent;

use super::settle::{Settlement, Tally};
use crate::catalog::Model;
use crate::providers::ChunkStream;

/// A streamed answer in canonical events; the last is `Done` or `Broken`.
pub type EventStream = Pin<Box<dyn Stream<Item = StreamEvent> + Send>>;

struct Relay {
    head: std::vec::IntoIter<Value>,
    rest: ChunkStream,
    /// The routing info, for the first chunk.
    info: Option<Value>,
    model: Model,
    idle_timeout: Duration,
    tally: Tally,
    /// Taken when the stream ends (or the relay is dropped first).
    settlement: Option<Settlement>,
}

impl Relay {
    /// Adds the routing info to the first chunk and the cost beside the
    /// usage, and tallies the usage.
    fn chunk(&mut self, mut chunk: Value) -> StreamEvent {
        if let Some(info) = self.info.take() {
            chunk["switchyard"] = info;
        }
        if let Some(usage) = chunk
            .get("usage")
            .filter(|u| !u.is_null())
            .and_then(Usage::from_openai)
        {
            let cost = self.model.cost(&usage);
            self.tally.usage = Some(usage);
            self.tally.cost_usd = Some(cost);
            chunk["switchyard"]["cost_usd"] = json!(cost);
        }
        StreamEvent::Chunk(chunk)
    }

    fn end(&mut self, broken: Option<String>) -> StreamEvent {
        self.tally.broken = broken.is_some();
        if let Some(settlement) = self.settlement.take() {
            settlement.settle(self.tally);
        }
        broken.map_or(StreamEvent::Done, StreamEvent::Broken)
    }
}

impl Drop for Relay {
    /// A stream the caller abandoned still owes what it used so far.
    fn drop(&mut self) {
        if let Some(settlement) = self.settlement.take() {
            settlement.settle(self.tally);
        }
    }
}

/// The events of a streamed answer (`info`: the routing info, as JSON): `head` (chunks already received, the
/// first content chunk among them), then the rest of the upstream.
pub fn relay(
    info: Value,
    head: Vec<Value>,
    rest: ChunkStream,
    model: Model,
    idle_timeout: Duration,
    settlement: Settlement,
) -> EventStream {
    let relay = Relay {
        head: head.into_iter(),
        rest,
        info: Some(info),
        model,
        idle_timeout,
        tally: Tally::default(),
        settlement: Some(settlement),
    };
    Box::pin(stream::unfold(relay, |mut relay| async move {
        // Ended: the settlement went with the last event.
        relay.settlement.as_ref()?;
        if let Some(chunk) = relay.head.next() {
            let event = relay.chunk(chunk);
            return Some((event, relay));
        }
        let event = match tokio::time::timeout(relay.idle_timeout, relay.rest.next()).await {
            Ok(Some(Ok(chunk))) => relay.chunk(chunk),
            Ok(None) => relay.end(None),
            Ok(Some(Err(e))) => {
                tracing::warn!(error = %e.message, "upstream stream broke after content");
                relay.end(Some(format!("the provider's stream broke: {}", e.message)))
            }
            Err(_) => {
                let message = format!(
                    "the provider sent nothing for {} ms",
                    relay.idle_timeout.as_millis()
                );
                relay.end(Some(message))
            }
        };
        Some((event, relay))
    }))
}

/// The chunks of a whole `chat.completion`, for callers that asked to stream
/// when the serving attempt could not (streaming was stripped).
pub fn from_completion(body: Value, usage: Usage) -> ChunkStream {
    let chunks = switchyard_wire::stream::completion_chunks(body, usage);
    Box::pin(stream::iter(chunks.into_iter().map(Ok)))
}
