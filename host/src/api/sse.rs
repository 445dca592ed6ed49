//! Rendering a streamed answer for the caller: the executor's canonical
//! events written as the SSE of the API the request came in on.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, future};
use switchyard_wire::stream::{StreamEncoder, StreamEvent, without_usage};

use crate::route::EventStream;

/// The SSE body: each event through `encoder`; usage (and its cost) only
/// for callers whose API reports it or who asked for it.
pub fn render(
    events: EventStream,
    mut encoder: Box<dyn StreamEncoder>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
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
