use super::*;

#[test]
fn a_whole_completion_becomes_a_role_chunk_a_finish_chunk_and_usage() {
    let body = json!({
        "id": "c1", "model": "m", "created": 7,
        "choices": [{ "message": { "role": "assistant", "content": "hello",
            "tool_calls": [{ "id": "t", "type": "function", "function": { "name": "f", "arguments": "{}" } }] },
            "finish_reason": "tool_calls" }]
    });
    let usage = Usage {
        prompt_tokens: 5,
        completion_tokens: 2,
        cached_tokens: 0,
    };
    let chunks = completion_chunks(body, usage);
    assert!(chunks[2].is_usage_only() && !chunks[1].is_usage_only());
    assert!(chunks[0].has_content() && chunks[1].finished());
    let chunks: Vec<Value> = chunks.into_iter().map(Chunk::into_value).collect();
    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "hello");
    assert_eq!(
        chunks[0]["choices"][0]["delta"]["tool_calls"][0]["index"],
        0
    );
    assert_eq!(chunks[1]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chunks[2]["usage"]["total_tokens"], 7);
}

#[test]
fn routing_info_is_merged_across_chunks() {
    let mut slot = None;
    keep_routing_info(&mut slot, &json!({ "switchyard": { "provider": "a" } }));
    keep_routing_info(&mut slot, &json!({ "choices": [] }));
    keep_routing_info(&mut slot, &json!({ "switchyard": { "cost_usd": 0.5 } }));
    assert_eq!(slot, Some(json!({ "provider": "a", "cost_usd": 0.5 })));
}
