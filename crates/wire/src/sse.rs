//! Server-Sent Events: an incremental decoder for upstream streams and an
//! encoder for the gateway's own output.
//!
//! The decoder follows the WHATWG "event stream interpretation" rules: lines
//! end in `\r\n`, `\n` or `\r`; a blank line dispatches the event; lines
//! starting with `:` are comments; a single space after the field's colon is
//! removed; several `data` lines are joined with `\n`; an event without any
//! `data` line is not dispatched; `id` and `retry` are ignored; a leading
//! UTF-8 byte order mark is skipped. Bytes may be split anywhere between
//! [`SseDecoder::push`] calls, including inside a UTF-8 sequence or between
//! `\r` and `\n`: lines are decoded only once complete (invalid UTF-8 is
//! replaced with U+FFFD).

use crate::chunk::Chunk;
use crate::upstream::{ErrorClass, UpstreamError};

/// Default bound on a single event (its data plus the pending line): 16 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, if the event had one.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// The stream broke the decoder's bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("server-sent event larger than {limit} bytes")]
    EventTooLarge { limit: usize },
}

/// Incremental SSE decoder; see the module documentation.
#[derive(Debug)]
pub struct SseDecoder {
    max_event_bytes: usize,
    /// Bytes of the current, not yet terminated line.
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` starting the next one belongs
    /// to the same line break.
    skip_lf: bool,
    /// No line has been completed yet (for the byte order mark).
    first_line: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    /// Set once the bound was broken; the stream cannot be trusted after that.
    failed: bool,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SseDecoder {
    /// A decoder bounding each event at [`DEFAULT_MAX_EVENT_BYTES`].
    pub fn new() -> Self {
        Self::with_limit(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A decoder bounding each event (data plus the pending line) at
    /// `max_event_bytes`.
    pub fn with_limit(max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes,
            line: Vec::new(),
            skip_lf: false,
            first_line: true,
            event: None,
            data: String::new(),
            has_data: false,
            failed: false,
        }
    }

    /// Feeds the next bytes of the stream; returns the events they complete.
    ///
    /// Once an event exceeds the bound, this and every later call return
    /// [`SseError::EventTooLarge`] and the buffered data is dropped.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        if self.failed {
            return Err(self.too_large());
        }
        let mut events = Vec::new();
        let mut rest = bytes;
        if self.skip_lf && !rest.is_empty() {
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
            self.skip_lf = false;
        }
        while let Some(pos) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&rest[..pos]);
            self.check_bound()?;
            let mut next = pos + 1;
            if rest[pos] == b'\r' {
                match rest.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            rest = &rest[next..];
            let line = std::mem::take(&mut self.line);
            if let Some(event) = self.process_line(&line) {
                events.push(event);
            }
            self.check_bound()?;
        }
        self.line.extend_from_slice(rest);
        self.check_bound()?;
        Ok(events)
    }

    /// Ends the stream: a pending line is processed and an event still
    /// waiting for its blank line is returned.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if self.failed {
            return None;
        }
        let mut dispatched = None;
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            dispatched = self.process_line(&line);
        }
        dispatched.or_else(|| self.dispatch())
    }

    fn too_large(&self) -> SseError {
        SseError::EventTooLarge {
            limit: self.max_event_bytes,
        }
    }

    fn check_bound(&mut self) -> Result<(), SseError> {
        if self.data.len() + self.line.len() > self.max_event_bytes {
            self.failed = true;
            self.line = Vec::new();
            self.data = String::new();
            self.has_data = false;
            self.event = None;
            return Err(self.too_large());
        }
        Ok(())
    }

    fn process_line(&mut self, line: &[u8]) -> Option<SseEvent> {
        let mut line = line;
        if self.first_line {
            self.first_line = false;
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            return None;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.has_data = true;
            }
            // `id`, `retry` and unknown fields are ignored.
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        if !self.has_data {
            self.data.clear();
            return None;
        }
        self.has_data = false;
        Some(SseEvent {
            event: event.filter(|e| !e.is_empty()),
            data: std::mem::take(&mut self.data),
        })
    }
}

/// Encodes one event: an optional `event:` line, one `data:` line per line of
/// `data` (any of `\r\n`, `\n`, `\r` splits), then the blank line.
pub fn encode(event: Option<&str>, data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 16);
    if let Some(event) = event {
        out.push_str("event: ");
        // A line break in the name would end the field early.
        out.extend(event.chars().filter(|c| *c != '\n' && *c != '\r'));
        out.push('\n');
    }
    let mut rest = data;
    loop {
        let (line, next) = match rest.find(['\n', '\r']) {
            Some(pos) => {
                let skip = if rest[pos..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                (&rest[..pos], Some(&rest[pos + skip..]))
            }
            None => (rest, None),
        };
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
        match next {
            Some(next) => rest = next,
            None => break,
        }
    }
    out.push('\n');
    out
}

/// Turns provider SSE events into OpenAI chunks.
pub trait Translate: Send + 'static {
    /// Chunks for one event (possibly none), or the error the event reports.
    /// An event whose data is not JSON is skipped (no chunks) and counted in
    /// [`Translate::malformed`], not an error: one bad event does not end an
    /// answer.
    /// It may take the event's data (then it leaves it as it was if the
    /// event is malformed, for the warning that names it).
    fn event(&mut self, event: &mut SseEvent) -> Result<Vec<Chunk>, UpstreamError>;
    /// At the end of the body: final chunks, or an error if the stream was
    /// cut before its answer was complete.
    fn finish(&mut self) -> Result<Vec<Chunk>, UpstreamError>;
    /// Whether the stream's end marker (`[DONE]`, `message_stop`,
    /// `response.completed`) has arrived: the answer is whole, and nothing
    /// after it is read, even if the provider keeps the connection open.
    fn ended(&self) -> bool;
    /// Malformed events skipped so far.
    fn malformed(&self) -> u64;
}

/// The end of an upstream stream: fine if the translator saw its proper end
/// (`done`), otherwise a cut connection naming the event that never came.
pub fn stream_end(done: bool, missing: &str) -> Result<Vec<Chunk>, UpstreamError> {
    if done {
        Ok(Vec::new())
    } else {
        Err(UpstreamError::new(
            ErrorClass::Connect,
            Some(200),
            format!("the stream ended without {missing}"),
        ))
    }
}

#[cfg(test)]
#[path = "sse_tests.rs"]
mod tests;
