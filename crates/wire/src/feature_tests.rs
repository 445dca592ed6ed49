use super::*;
use serde_json::json;

fn body(v: Value) -> CanonicalRequest {
    serde_json::from_value(v).expect("a canonical body")
}

fn names(set: FeatureSet) -> Vec<String> {
    set.names()
}

#[test]
fn every_row_of_the_table_is_detected() {
    let cases: &[(Value, &str)] = &[
        (json!({"stream": true}), "stream"),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f"}}]}),
            "tools.function_calling",
        ),
        (json!({"web_search_options": {}}), "tools.web_search"),
        (
            json!({"tools": [{"type": "web_search_preview"}]}),
            "tools.web_search",
        ),
        (
            json!({"tools": [{"type": "custom", "custom": {"name": "x"}}]}),
            "tools.custom_tools",
        ),
        (json!({"tool_choice": "required"}), "tool_choice.required"),
        (
            json!({"tool_choice": {"type": "function", "function": {"name": "f"}}}),
            "tool_choice.required",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {}}}),
            "text.format.json_schema",
        ),
        (
            json!({"response_format": {"type": "json_object"}}),
            "text.format.json_object",
        ),
        (json!({"reasoning_effort": "high"}), "reasoning.effort.high"),
        (json!({"temperature": 0.2}), "temperature"),
        (json!({"top_p": 0.9}), "top_p"),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}]}),
            "vision",
        ),
        (json!({"parallel_tool_calls": false}), "parallel_tool_calls"),
        (json!({"prompt_cache_key": "k"}), "prompt_cache_key"),
        (json!({"verbosity": "low"}), "text.verbosity"),
        (
            json!({"include": ["reasoning.encrypted_content"]}),
            "include",
        ),
    ];
    for (request, feature) in cases {
        assert_eq!(
            names(detect(&body(request.clone()))),
            vec![feature.to_string()],
            "{request}"
        );
        assert!(is_known_feature(feature));
    }
    assert!(
        detect(&body(
            json!({"stream": false, "tool_choice": "auto", "temperature": null})
        ))
        .is_empty()
    );
}

#[test]
fn stripping_removes_exactly_the_feature() {
    let mut b = body(json!({
        "temperature": 0.3, "top_p": 1, "verbosity": "low",
        "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required",
        "parallel_tool_calls": true, "reasoning_effort": "low"
    }));
    for f in ["temperature", "text.verbosity", "reasoning.effort.low"] {
        strip(&mut b, Feature::parse(f).expect("a feature"));
    }
    assert_eq!(
        names(detect(&b)),
        vec![
            "tools.function_calling",
            "tool_choice.required",
            "top_p",
            "parallel_tool_calls"
        ]
    );
    strip(&mut b, Feature::FunctionCalling);
    assert_eq!(names(detect(&b)), vec!["top_p"]);
}

#[test]
fn every_feature_parses_from_its_name_and_nothing_else_does() {
    for f in ALL {
        assert_eq!(Feature::parse(f.name()), Some(f), "{}", f.name());
    }
    for name in [
        "",
        "Stream",
        "reasoning.effort",
        "reasoning.effort.max",
        "tools",
    ] {
        assert_eq!(Feature::parse(name), None, "{name:?}");
    }
}
