use serde_json::json;

use super::*;
use crate::sse::SseDecoder;

const ROLE: &str = r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
const TEXT: &str = r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}"#;
const FINISH: &str = r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
const USAGE: &str = r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19,"prompt_tokens_details":{"cached_tokens":4}}}"#;

fn raw(text: &str) -> Chunk {
    Chunk::from_openai(text.to_string()).expect("a chunk")
}

fn json_of(chunk: &Chunk) -> Vec<u8> {
    let mut out = Vec::new();
    chunk.write_json(&mut out);
    out
}

#[test]
fn a_providers_chunk_goes_out_as_it_was_written() {
    for text in [ROLE, TEXT, FINISH, USAGE] {
        let chunk = raw(&format!("  {text}\n"));
        assert!(matches!(chunk.repr, Repr::Raw { .. }), "{text}");
        assert_eq!(String::from_utf8(json_of(&chunk)).unwrap(), text);
    }
}

#[test]
fn what_the_gateway_reads_of_each_chunk_is_read_in_one_pass() {
    let role = raw(ROLE);
    assert!(!role.has_content() && !role.finished() && !role.has_usage());
    assert_eq!(role.text(), Some(""));
    assert_eq!(role.id(), Some(json!("c1")));

    let text = raw(TEXT);
    assert!(text.has_content() && !text.finished() && !text.tool_call());
    assert_eq!(text.text(), Some("Hello"));

    let finish = raw(FINISH);
    assert!(finish.finished() && finish.any_finished() && !finish.has_content());
    assert_eq!(finish.text(), None);

    let usage = raw(USAGE);
    assert!(usage.is_usage_only());
    assert_eq!(
        usage.usage(),
        Some(Usage {
            prompt_tokens: 12,
            completion_tokens: 7,
            cached_tokens: 4
        })
    );
}

#[test]
fn an_escaped_text_is_read_unescaped() {
    let chunk = raw(r#"{"choices":[{"index":0,"delta":{"content":"a\"b\nc \u00e9"}}]}"#);
    assert_eq!(chunk.text(), Some("a\"b\nc é"));
    assert!(chunk.has_content());
}

#[test]
fn the_one_pass_read_and_a_values_read_agree() {
    let samples = [
        ROLE,
        TEXT,
        FINISH,
        USAGE,
        r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"t","function":{"name":"f","arguments":""}}]}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"tool_calls":[]}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"tool_calls":null,"content":"x"}}]}"#,
        r#"{"choices":[{"index":1,"delta":{"content":"other"},"finish_reason":"stop"}]}"#,
        r#"{"choices":[{"delta":{"reasoning_content":"think"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"refusal":"no"}}],"usage":null}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"hi"}}],"usage":{"prompt_tokens":3}}"#,
        r#"{"usage":{"completion_tokens":3}}"#,
        r#"{}"#,
        r#"{"id":"s","system_fingerprint":"fp","choices":[{"index":0,"delta":{"content":"as \u0022written\u0022"},"logprobs":null,"finish_reason":null}],"x_score":1.50}"#,
    ];
    for text in samples {
        let chunk = raw(text);
        assert!(matches!(chunk.repr, Repr::Raw { .. }), "{text}");
        let value: Value = serde_json::from_str(text).unwrap();
        let built = Chunk::from_value(value);
        assert_eq!(chunk.facts, built.facts, "{text}");
        assert_eq!(chunk.text(), built.text(), "{text}");
        assert_eq!(chunk, built);
    }
    let calls = raw(samples[4]);
    assert!(calls.has_content() && calls.tool_call());
    let empty_calls = raw(samples[5]);
    assert!(!empty_calls.has_content() && empty_calls.tool_call());
    let other = raw(samples[7]);
    assert!(other.other_choice() && other.any_finished() && !other.finished());
    assert_eq!(other.text(), None);
    assert!(!raw(samples[9]).has_usage());
    // Usage without `prompt_tokens` is there, but not OpenAI's.
    let odd = raw(samples[11]);
    assert!(odd.has_usage() && odd.usage().is_none() && odd.is_usage_only());
    let escaped = raw(samples[13]);
    assert!(escaped.has_content(), "an escaped text is content");
    assert_eq!(escaped.text(), Some("as \"written\""));
}

#[test]
fn text_it_cannot_vouch_for_is_read_into_a_value() {
    for text in [
        r#"{"choices":null,"id":"x"}"#,
        r#"{"choices":[{"index":0,"delta":"odd"}]}"#,
        r#"{"choices":[{"index":-1,"delta":{"content":"x"}}]}"#,
        r#"{"choices":[],"choices":[{"index":0,"delta":{"content":"last"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"x"}}],"switchyard":{"provider":"theirs"}}"#,
    ] {
        let chunk = raw(text);
        assert!(matches!(chunk.repr, Repr::Value(_)), "{text}");
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(chunk.facts, facts_of(&value), "{text}");
    }
    // A duplicate key: the last one counts, as a value reads it.
    assert_eq!(
        raw(r#"{"choices":[],"choices":[{"index":0,"delta":{"content":"last"}}]}"#).text(),
        Some("last")
    );
}

#[test]
fn what_is_not_a_chunk_is_malformed_and_an_error_event_is_reported() {
    for text in [
        "not json",
        "42",
        "[1,2]",
        r#"[{"choices":[]}]"#,
        "{\"choices\": [",
        "",
    ] {
        assert_eq!(
            Chunk::from_openai(format!(" {text}")).err(),
            Some(ChunkError::Malformed(text.to_string())),
            "{text}"
        );
    }
    assert_eq!(
        Chunk::from_openai(
            r#"{"error":{"message":"overloaded \"now\"","type":"server_error"}}"#.into()
        )
        .err(),
        Some(ChunkError::Reported("overloaded \"now\"".into()))
    );
    assert_eq!(
        Chunk::from_openai(r#"{"error":{"code":500}}"#.into()).err(),
        Some(ChunkError::Reported(NO_MESSAGE.into()))
    );
    assert_eq!(
        Chunk::from_openai(r#"{"error":"busy"}"#.into()).err(),
        Some(ChunkError::Reported(NO_MESSAGE.into()))
    );
    // `"error": null` is no error.
    assert!(Chunk::from_openai(r#"{"error":null,"choices":[]}"#.into()).is_ok());
}

#[test]
fn the_routing_object_is_written_before_the_closing_brace() {
    let mut chunk = raw(TEXT);
    let mut info = Map::new();
    info.insert("provider".into(), json!("a"));
    chunk.set_routing(info);
    chunk.routing_mut().insert("cost_usd".into(), json!(0.5));
    let written: Value = serde_json::from_slice(&json_of(&chunk)).unwrap();
    let mut expected: Value = serde_json::from_str(TEXT).unwrap();
    expected["switchyard"] = json!({ "provider": "a", "cost_usd": 0.5 });
    assert_eq!(written, expected);
    assert_eq!(chunk.to_value(), expected);
    assert_eq!(chunk.into_value(), expected);

    let mut empty = raw("{ }");
    empty.routing_mut().insert("provider".into(), json!("a"));
    assert_eq!(json_of(&empty), br#"{ "switchyard":{"provider":"a"}}"#);

    // A provider's own `switchyard` is replaced, never doubled.
    let mut theirs = raw(r#"{"choices":[],"switchyard":{"provider":"theirs"}}"#);
    let mut ours = Map::new();
    ours.insert("provider".into(), json!("ours"));
    theirs.set_routing(ours);
    assert_eq!(
        String::from_utf8(json_of(&theirs)).unwrap(),
        r#"{"choices":[],"switchyard":{"provider":"ours"}}"#
    );
}

#[test]
fn an_edit_reads_the_chunk_again() {
    let mut chunk = raw(TEXT);
    chunk.edit(|v| v["choices"][0]["delta"]["content"] = json!(""));
    assert!(!chunk.has_content());
    assert_eq!(chunk.text(), Some(""));
    chunk.edit(|v| v["choices"][0]["finish_reason"] = json!("stop"));
    assert!(chunk.finished());
}

#[test]
fn a_caller_who_did_not_ask_for_usage_gets_neither_usage_nor_its_cost() {
    let mut usage_only = raw(USAGE);
    usage_only
        .routing_mut()
        .insert("cost_usd".into(), json!(0.1));
    assert_eq!(usage_only.without_usage(), None);

    // Usage on the first chunk, beside the routing info: the info stays.
    let mut first =
        raw(r#"{"choices":[{"index":0,"delta":{"content":"hi"}}],"usage":{"prompt_tokens":3}}"#);
    let mut info = Map::new();
    info.insert("provider".into(), json!("a"));
    info.insert("cost_usd".into(), json!(0.1));
    first.set_routing(info);
    assert_eq!(
        first.without_usage().map(Chunk::into_value),
        Some(json!({
            "choices": [{ "index": 0, "delta": { "content": "hi" } }],
            "switchyard": { "provider": "a" }
        }))
    );

    // A chunk without usage is left as the provider wrote it.
    let plain = raw(TEXT).without_usage().unwrap();
    assert_eq!(json_of(&plain), TEXT.as_bytes());
    let built = Chunk::from_value(json!({ "choices": [], "usage": null }));
    assert!(built.without_usage().is_some());
}

#[test]
fn a_chunk_written_over_several_lines_stays_one_event() {
    let text = "{\n  \"choices\": [{\"index\": 0, \"delta\": {\"content\": \"a\\nb\"}}]\n}";
    let chunk = raw(text);
    assert!(matches!(chunk.repr, Repr::Raw { .. }));
    let mut out = Vec::new();
    chunk.write_sse(&mut out);
    let mut decoder = SseDecoder::new();
    let events = decoder.push(&out).unwrap();
    assert_eq!(events.len(), 1);
    let back: Value = serde_json::from_str(&events[0].data).unwrap();
    assert_eq!(back, serde_json::from_str::<Value>(text).unwrap());

    let mut one_line = Vec::new();
    raw(TEXT).write_sse(&mut one_line);
    assert_eq!(one_line, format!("data: {TEXT}\n\n").into_bytes());
}

#[test]
fn a_rescue_cuts_what_the_caller_has_off_the_first_choices_text() {
    let mut chunk = raw(
        r#"{"choices":[{"index":1,"delta":{"content":"other"}},{"index":0,"delta":{"content":"héllo"}}]}"#,
    );
    chunk.drain_text(2);
    assert_eq!(
        chunk.text(),
        Some("héllo"),
        "not at a character's start: left whole"
    );
    let mut chunk = raw(
        r#"{"choices":[{"index":1,"delta":{"content":"other"}},{"index":0,"delta":{"content":"héllo"}}]}"#,
    );
    chunk.drain_text(3);
    assert_eq!(chunk.text(), Some("llo"));
    chunk.drain_text(99);
    assert_eq!(chunk.text(), Some("llo"), "past the end: left whole");
    assert!(chunk.other_choice() && chunk.has_content());
}
