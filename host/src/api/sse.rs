//! Rendering a streamed answer for the caller: the executor's canonical
//! events written as the SSE of the API the request came in on.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, future};
use switchyard_wire::stream::{StreamEncoder, StreamEvent, without_usage};

use crate::route::EventStream;
use tokio::sync::watch;

/// `events`, ended by a [`StreamEvent::Broken`] (shutting down) when
/// `interrupt` turns true first.
fn interruptible(
    events: EventStream,
    interrupt: watch::Receiver<bool>,
) -> impl Stream<Item = StreamEvent> + Send {
    futures_util::stream::unfold(
        (events, interrupt, false),
        |(mut events, mut interrupt, ended)| async move {
            if ended {
                return None;
            }
            let stop = async {
                // A closed channel (no server) never interrupts.
                if interrupt.wait_for(|v| *v).await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                biased;
                event = events.next() => {
                    let event = event?;
                    let last = !matches!(event, StreamEvent::Chunk(_));
                    Some((event, (events, interrupt, last)))
                }
                () = stop => {
                    // Dropping the events settles what the answer used.
                    drop(events);
                    let event = StreamEvent::Broken(SHUTTING_DOWN.into());
                    Some((event, (Box::pin(futures_util::stream::empty()) as EventStream, interrupt, true)))
                }
            }
        },
    )
}

/// What an open stream tells its caller when the gateway's shutdown grace
/// period ends before the answer does.
pub const SHUTTING_DOWN: &str = "the gateway is shutting down and its grace period ended before the answer did; retry the request";

/// The SSE body: each event through `encoder`; usage (and its cost) only
/// for callers whose API reports it or who asked for it. When `interrupt`
/// turns true (the shutdown grace period is ending), the stream ends with
/// the API's error event instead of being cut.
pub fn render(
    events: EventStream,
    mut encoder: Box<dyn StreamEncoder>,
    interrupt: watch::Receiver<bool>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    let events = interruptible(events, interrupt);
    events.filter_map(move |event| {
        let mut out = Vec::new();
        match event {
            StreamEvent::Chunk(chunk) => {
                let chunk = if encoder.wants_usage() {
                    Some(chunk)
                } else {
                    without_usage(chunk)
                };
                if let Some(chunk) = chunk {
                    encoder.chunk(chunk, &mut out);
                }
            }
            StreamEvent::Done => encoder.done(&mut out),
            StreamEvent::Broken(message) => encoder.error(&message, &mut out),
        }
        future::ready((!out.is_empty()).then(|| Ok(Bytes::from(out))))
    })
}
