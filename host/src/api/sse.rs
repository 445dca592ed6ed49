//! Rendering a streamed answer for the caller: the executor's canonical
//! events written as the SSE of the API the request came in on.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, future};
use switchyard_wire::stream::{StreamEncoder, StreamEvent};

use crate::route::EventStream;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// `events`, ended by a [`StreamEvent::Broken`] (shutting down) when the
/// token is cancelled first. One waiter registered per stream, not per event.
struct Interruptible {
    /// `None` once ended; dropping it settles what the answer used.
    events: Option<EventStream>,
    stop: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Stream for Interruptible {
    type Item = StreamEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<StreamEvent>> {
        let Some(events) = self.events.as_mut() else {
            return Poll::Ready(None);
        };
        match events.as_mut().poll_next(cx) {
            Poll::Ready(Some(event)) => {
                if !matches!(event, StreamEvent::Chunk(_)) {
                    self.events = None;
                }
                return Poll::Ready(Some(event));
            }
            Poll::Ready(None) => {
                self.events = None;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if self.stop.as_mut().poll(cx).is_ready() {
            self.events = None;
            return Poll::Ready(Some(StreamEvent::Broken(SHUTTING_DOWN.into())));
        }
        Poll::Pending
    }
}

/// What an open stream tells its caller when the gateway's shutdown grace
/// period ends before the answer does.
pub const SHUTTING_DOWN: &str = "the gateway is shutting down and its grace period ended before the answer did; retry the request";

/// The SSE body: each event through `encoder`; usage (and its cost) only
/// for callers whose API reports it or who asked for it. When `interrupt`
/// is cancelled (the shutdown grace period is ending), the stream ends with
/// the API's error event instead of being cut.
pub fn render(
    events: EventStream,
    mut encoder: Box<dyn StreamEncoder>,
    interrupt: CancellationToken,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    let events = Interruptible {
        events: Some(events),
        stop: Box::pin(interrupt.cancelled_owned()),
    };
    events.filter_map(move |event| {
        let mut out = Vec::new();
        match event {
            StreamEvent::Chunk(chunk) => {
                let chunk = if encoder.wants_usage() {
                    Some(chunk)
                } else {
                    chunk.without_usage()
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
