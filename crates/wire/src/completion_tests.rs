use serde_json::{Value, json};

use super::{Completion, CompletionError};

const ANSWER: &str = r#"{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4},"zeta":1.50}"#;

fn routing() -> Value {
    json!({"provider": "oa", "attempts": 1})
}

#[test]
fn a_providers_bytes_are_relayed_with_the_routing_object_appended() {
    let (mut c, usage) = Completion::from_openai(format!("{ANSWER}\n").into_bytes(), true).unwrap();
    assert_eq!(
        usage,
        Some(json!({"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}))
    );
    c.set_routing(&routing());
    let bytes = c.clone().into_bytes();
    let text = String::from_utf8(bytes.clone()).unwrap();
    // The provider's own text, key order and number spelling kept.
    assert_eq!(
        text,
        format!(
            "{},\"switchyard\":{{\"attempts\":1,\"provider\":\"oa\"}}}}",
            &ANSWER[..ANSWER.len() - 1]
        )
    );
    // The same object as inserting the routing into the parsed answer.
    let mut expected: Value = serde_json::from_str(ANSWER).unwrap();
    expected["switchyard"] = routing();
    assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), expected);
    assert_eq!(c.to_value(), expected);
    assert_eq!(c.into_value(), expected);
}

#[test]
fn an_answer_without_choices_or_not_json_is_refused() {
    for body in [
        r#"{"id":"x"}"#,
        r#"{"choices":null}"#,
        r#"{"choices":{}}"#,
        "[1]",
        "7",
    ] {
        assert_eq!(
            Completion::from_openai(body.into(), true).err(),
            Some(CompletionError::NoChoices),
            "{body}"
        );
    }
    for body in ["", "{", r#"{"choices":[]} x"#, "nope"] {
        assert!(
            matches!(
                Completion::from_openai(body.into(), true),
                Err(CompletionError::Invalid(_))
            ),
            "{body}"
        );
    }
}

#[test]
fn a_providers_own_switchyard_key_or_a_duplicate_key_is_replaced_as_in_a_value() {
    for body in [
        r#"{"choices":[],"switchyard":{"provider":"spoofed"}}"#,
        r#"{"choices":[],"switchyard":null}"#,
        r#"{"choices":[1],"choices":[]}"#,
    ] {
        let (mut c, _) = Completion::from_openai(body.into(), true).unwrap();
        c.set_routing(&routing());
        let out: Value = serde_json::from_slice(&c.into_bytes()).unwrap();
        let mut expected: Value = serde_json::from_str(body).unwrap();
        expected["switchyard"] = routing();
        assert_eq!(out, expected, "{body}");
    }
}

#[test]
fn without_routing_the_bytes_are_the_providers() {
    let (c, _) = Completion::from_openai(ANSWER.into(), true).unwrap();
    assert_eq!(c.into_bytes(), ANSWER.as_bytes());
}

#[test]
fn an_answer_to_translate_is_read_into_a_value_at_once() {
    let (c, usage) = Completion::from_openai(ANSWER.into(), false).unwrap();
    assert_eq!(usage.and_then(|u| u["total_tokens"].as_u64()), Some(4));
    let expected: Value = serde_json::from_str(ANSWER).unwrap();
    // Written from the value: the same object, not the same bytes.
    assert_ne!(c.clone().into_bytes(), ANSWER.as_bytes());
    assert_eq!(c.into_value(), expected);
    for body in [r#"{"id":"x"}"#, "[1]"] {
        assert_eq!(
            Completion::from_openai(body.into(), false).err(),
            Some(CompletionError::NoChoices)
        );
    }
}
