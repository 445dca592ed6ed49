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

/// Runs `events` through a translator: the chunks, how it finished, and
/// whether it saw its end marker.
fn run<T: Translate>(
    t: &mut T,
    events: &[SseEvent],
) -> (
    Vec<serde_json::Value>,
    Result<Vec<serde_json::Value>, UpstreamError>,
    bool,
) {
    let mut chunks = Vec::new();
    for e in events {
        let out = t.event(&mut e.clone()).expect("no error event");
        chunks.extend(out.into_iter().map(crate::chunk::Chunk::into_value));
    }
    let ended = t.ended();
    let end = t
        .finish()
        .map(|c| c.into_iter().map(crate::chunk::Chunk::into_value).collect());
    (chunks, end, ended)
}

fn openai(delta: &str, finish: Option<&str>) -> SseEvent {
    ev(
        None,
        &serde_json::json!({ "choices": [{ "index": 0, "delta": { "content": delta }, "finish_reason": finish }] })
            .to_string(),
    )
}

#[test]
fn every_upstream_translator_skips_and_counts_a_malformed_event() {
    let mut chunks = crate::openai::Chunks::default();
    let (out, end, ended) = run(
        &mut chunks,
        &[
            openai("a", None),
            ev(None, "{\"choices\": ["),
            ev(None, "42"),
            openai("b", Some("stop")),
            ev(None, "[DONE]"),
        ],
    );
    assert_eq!(out.len(), 2);
    assert!(end.is_ok() && ended);
    assert_eq!(chunks.malformed(), 2);

    let mut anthropic = crate::anthropic::Events::new(crate::anthropic::StreamTranslator::new(
        "id".into(),
        "m".into(),
        0,
    ));
    let start = ev(
        Some("message_start"),
        r#"{"type":"message_start","message":{"usage":{"input_tokens":3}}}"#,
    );
    let block = ev(
        Some("content_block_start"),
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    );
    let delta = ev(
        Some("content_block_delta"),
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#,
    );
    let stop = ev(
        Some("message_delta"),
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":1}}"#,
    );
    let (out, end, ended) = run(
        &mut anthropic,
        &[
            start.clone(),
            block.clone(),
            ev(Some("content_block_delta"), "{\"type\": \"cont"),
            delta.clone(),
            stop.clone(),
        ],
    );
    assert_eq!(anthropic.malformed(), 1);
    assert!(!ended, "no message_stop yet");
    // Stopped without message_stop: complete, with the usage chunk.
    let last = end.expect("a finished message is complete");
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["usage"]["completion_tokens"], 1);
    assert!(
        out.iter()
            .any(|c| c["choices"][0]["delta"]["content"] == "hi")
    );

    let mut responses = crate::responses_out::Events::default();
    let _ = responses.event(&ev(Some("response.created"), "not json"));
    assert_eq!(responses.malformed(), 1);
}

#[test]
fn a_stream_is_complete_at_its_finish_and_ended_at_its_marker() {
    // OpenAI: finish_reason then EOF is complete, but not "ended" (no [DONE]).
    let (_, end, ended) = run(
        &mut crate::openai::Chunks::default(),
        &[openai("a", Some("stop"))],
    );
    assert!(end.is_ok() && !ended);
    // Cut before any finish: broken.
    let (_, end, _) = run(&mut crate::openai::Chunks::default(), &[openai("a", None)]);
    assert_eq!(end.expect_err("cut").class, ErrorClass::Connect);
    // Anthropic: cut before the stop reason is broken.
    let mut anthropic = crate::anthropic::Events::new(crate::anthropic::StreamTranslator::new(
        "id".into(),
        "m".into(),
        0,
    ));
    let (_, end, _) = run(
        &mut anthropic,
        &[ev(
            Some("message_start"),
            r#"{"type":"message_start","message":{}}"#,
        )],
    );
    assert!(end.is_err());
}
