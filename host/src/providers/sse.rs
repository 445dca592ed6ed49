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

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    fn decode_all(input: &[u8]) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        let mut out = d.push(input).unwrap();
        out.extend(d.finish());
        out
    }

    /// Feeds `input` in pieces of `size` bytes.
    fn decode_chunked(input: &[u8], size: usize) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        for piece in input.chunks(size) {
            out.extend(d.push(piece).unwrap());
        }
        out.extend(d.finish());
        out
    }

    #[test]
    fn single_event_with_name() {
        let got = decode_all(b"event: ping\ndata: {\"type\":\"ping\"}\n\n");
        assert_eq!(got, vec![ev(Some("ping"), "{\"type\":\"ping\"}")]);
    }

    #[test]
    fn event_without_name() {
        assert_eq!(decode_all(b"data: hello\n\n"), vec![ev(None, "hello")]);
    }

    #[test]
    fn multi_line_data_joined_with_newline() {
        let got = decode_all(b"data: a\ndata: b\ndata:\ndata:  c\n\n");
        assert_eq!(got, vec![ev(None, "a\nb\n\n c")]);
    }

    #[test]
    fn only_one_leading_space_removed() {
        assert_eq!(decode_all(b"data:x\n\n"), vec![ev(None, "x")]);
        assert_eq!(decode_all(b"data:  x \n\n"), vec![ev(None, " x ")]);
    }

    #[test]
    fn comments_id_retry_and_unknown_fields_ignored() {
        let got = decode_all(b": keep-alive\nid: 7\nretry: 100\nfoo: bar\ndata: x\n\n: bye\n\n");
        assert_eq!(got, vec![ev(None, "x")]);
    }

    #[test]
    fn event_without_data_not_dispatched_and_name_reset() {
        let got = decode_all(b"event: a\n\ndata: x\n\n");
        assert_eq!(got, vec![ev(None, "x")]);
    }

    #[test]
    fn empty_data_line_dispatches_empty_event() {
        assert_eq!(decode_all(b"data:\n\n"), vec![ev(None, "")]);
        assert_eq!(decode_all(b"data\n\n"), vec![ev(None, "")]);
    }

    #[test]
    fn crlf_and_cr_line_endings() {
        let expected = vec![ev(Some("e"), "1\n2"), ev(None, "3")];
        assert_eq!(
            decode_all(b"event: e\r\ndata: 1\r\ndata: 2\r\n\r\ndata: 3\r\n\r\n"),
            expected
        );
        assert_eq!(
            decode_all(b"event: e\rdata: 1\rdata: 2\r\rdata: 3\r\r"),
            expected
        );
        assert_eq!(
            decode_all(b"event: e\ndata: 1\r\ndata: 2\r\rdata: 3\n\r\n"),
            expected
        );
    }

    #[test]
    fn splits_anywhere_give_same_events() {
        let input = "event: message_start\r\ndata: {\"t\":\"héllo — 日本語 🎉\"}\r\n\r\n\
                     : comment\ndata: a\rdata: b\r\r\
                     event: x\ndata: 🎉🎉\n\n"
            .as_bytes();
        let whole = decode_all(input);
        assert_eq!(
            whole,
            vec![
                ev(Some("message_start"), "{\"t\":\"héllo — 日本語 🎉\"}"),
                ev(None, "a\nb"),
                ev(Some("x"), "🎉🎉"),
            ]
        );
        for size in 1..input.len() {
            assert_eq!(decode_chunked(input, size), whole, "chunk size {size}");
        }
        // Every two-way split.
        for cut in 0..=input.len() {
            let mut d = SseDecoder::new();
            let mut out = d.push(&input[..cut]).unwrap();
            out.extend(d.push(&input[cut..]).unwrap());
            out.extend(d.finish());
            assert_eq!(out, whole, "cut at {cut}");
        }
    }

    #[test]
    fn cr_at_chunk_end_then_lf() {
        let mut d = SseDecoder::new();
        assert_eq!(d.push(b"data: a\r").unwrap(), vec![]);
        // An empty push keeps the pending `\r\n` state.
        assert_eq!(d.push(b"").unwrap(), vec![]);
        // This `\n` completes the previous `\r\n`; it is not a blank line.
        assert_eq!(d.push(b"\n").unwrap(), vec![]);
        assert_eq!(d.push(b"\r\n").unwrap(), vec![ev(None, "a")]);
    }

    #[test]
    fn cr_at_chunk_end_then_blank_cr() {
        let mut d = SseDecoder::new();
        assert_eq!(d.push(b"data: a\r").unwrap(), vec![]);
        assert_eq!(d.push(b"\r").unwrap(), vec![ev(None, "a")]);
    }

    #[test]
    fn finish_returns_trailing_event() {
        let mut d = SseDecoder::new();
        assert_eq!(d.push(b"data: a\n\ndata: b").unwrap(), vec![ev(None, "a")]);
        assert_eq!(d.finish(), Some(ev(None, "b")));
        assert_eq!(d.finish(), None);

        let mut d = SseDecoder::new();
        d.push(b"event: e\ndata: c\n").unwrap();
        assert_eq!(d.finish(), Some(ev(Some("e"), "c")));

        let mut d = SseDecoder::new();
        d.push(b"data: a\n\n: only a comment").unwrap();
        assert_eq!(d.finish(), None);
    }

    #[test]
    fn leading_bom_skipped() {
        assert_eq!(decode_all(b"\xEF\xBB\xBFdata: x\n\n"), vec![ev(None, "x")]);
        assert_eq!(
            decode_chunked(b"\xEF\xBB\xBFdata: x\n\n", 1),
            vec![ev(None, "x")]
        );
    }

    #[test]
    fn invalid_utf8_replaced() {
        assert_eq!(
            decode_all(b"data: a\xFFb\n\n"),
            vec![ev(None, "a\u{FFFD}b")]
        );
    }

    #[test]
    fn oversized_line_errors_and_poisons() {
        let mut d = SseDecoder::with_limit(16);
        assert!(d.push(b"data: 0123456789").is_ok());
        assert_eq!(d.push(b"abc"), Err(SseError::EventTooLarge { limit: 16 }));
        assert!(d.push(b"\n\ndata: x\n\n").is_err());
        assert_eq!(d.finish(), None);
    }

    #[test]
    fn oversized_multi_line_event_errors() {
        // The pending line counts with its field name: 11 + 5 > 12.
        let mut d = SseDecoder::with_limit(12);
        assert!(d.push(b"data: 12345\n").is_ok());
        assert!(d.push(b"data: 67890\n").is_err());
    }

    #[test]
    fn bound_is_per_event() {
        let mut d = SseDecoder::with_limit(12);
        for _ in 0..100 {
            assert_eq!(d.push(b"data: 12345\n\n").unwrap(), vec![ev(None, "12345")]);
        }
    }

    #[test]
    fn encode_simple_and_named() {
        assert_eq!(encode(None, "{\"a\":1}"), "data: {\"a\":1}\n\n");
        assert_eq!(encode(Some("error"), "x"), "event: error\ndata: x\n\n");
        assert_eq!(encode(Some("a\nb"), "x"), "event: ab\ndata: x\n\n");
        assert_eq!(encode(None, ""), "data: \n\n");
        assert_eq!(encode(None, "[DONE]"), "data: [DONE]\n\n");
    }

    #[test]
    fn encode_multi_line_round_trips() {
        assert_eq!(
            encode(None, "a\nb\r\nc\rd"),
            "data: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        for data in ["a\nb", "", "\n", "x\n\ny", " lead", "🎉\n日本"] {
            let encoded = encode(Some("e"), data);
            assert_eq!(
                decode_all(encoded.as_bytes()),
                vec![ev(Some("e"), data)],
                "{data:?}"
            );
        }
    }
}
