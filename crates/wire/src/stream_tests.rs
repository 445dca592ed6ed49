use super::*;

#[test]
fn a_caller_who_did_not_ask_for_usage_gets_neither_usage_nor_its_cost() {
    let usage_only = json!({
        "object": "chat.completion.chunk", "choices": [],
        "usage": { "prompt_tokens": 3 }, "switchyard": { "cost_usd": 0.1 }
    });
    assert_eq!(without_usage(usage_only), None);

    // Usage on the first chunk, beside the routing info: the info stays.
    let first = json!({
        "choices": [{ "index": 0, "delta": { "content": "hi" } }],
        "usage": { "prompt_tokens": 3 },
        "switchyard": { "provider": "a", "cost_usd": 0.1 }
    });
    assert_eq!(
        without_usage(first),
        Some(json!({
            "choices": [{ "index": 0, "delta": { "content": "hi" } }],
            "switchyard": { "provider": "a" }
        }))
    );

    let plain = json!({ "choices": [{ "index": 0, "delta": { "content": "x" } }] });
    assert_eq!(without_usage(plain.clone()), Some(plain));
}

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
    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "hello");
    assert_eq!(
        chunks[0]["choices"][0]["delta"]["tool_calls"][0]["index"],
        0
    );
    assert_eq!(chunks[1]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chunks[2]["usage"]["total_tokens"], 7);
    assert!(is_usage_only(&chunks[2]));
}

#[test]
fn routing_info_is_merged_across_chunks() {
    let mut slot = None;
    keep_routing_info(&mut slot, &json!({ "switchyard": { "provider": "a" } }));
    keep_routing_info(&mut slot, &json!({ "choices": [] }));
    keep_routing_info(&mut slot, &json!({ "switchyard": { "cost_usd": 0.5 } }));
    assert_eq!(slot, Some(json!({ "provider": "a", "cost_usd": 0.5 })));
}
