use super::*;
use serde_json::json;

fn request(body: Value) -> CanonicalRequest {
    CanonicalRequest::from_slice(body.to_string().as_bytes()).expect("valid request")
}

#[test]
fn signals_count_the_conversation_and_keep_the_last_user_turn() {
    let r = request(json!({
        "model": "m",
        "messages": [
            { "role": "system", "content": "You are terse." },
            { "role": "user", "content": "What is 2+2?" },
            { "role": "assistant", "content": "4" },
            { "role": "user", "content": [
                { "type": "text", "text": "Fix this:" },
                { "type": "text", "text": "```rust\nfn main() {}\n```" },
                { "type": "image_url", "image_url": { "url": "data:image/png;base64,AAAA" } },
            ] },
        ],
        "tools": [{ "type": "function", "function": { "name": "f" } }],
    }));
    let s = Signals::of(&r, 1000);
    assert_eq!(s.turns, 2);
    assert_eq!(s.images, 1);
    assert_eq!(s.tools, 1);
    assert_eq!(s.code_blocks, 1);
    assert_eq!(s.system.as_deref(), Some("You are terse."));
    assert_eq!(
        s.last_user.as_deref(),
        Some("Fix this:\n```rust\nfn main() {}\n```")
    );
    assert!(!s.truncated);
    let text = "You are terse.What is 2+2?4Fix this:```rust\nfn main() {}\n```";
    assert_eq!(s.characters as usize, text.chars().count());
    // Digits: 2, 2, 4. Maths: +.
    assert!((s.digits - 3.0 / s.characters as f32).abs() < 1e-6);
    assert!((s.maths - 1.0 / s.characters as f32).abs() < 1e-6);
    assert_eq!(s.estimated_tokens as u64, r.estimate_input_tokens());
}

#[test]
fn texts_are_cut_on_a_character_boundary() {
    let r = request(json!({
        "model": "m",
        "messages": [{ "role": "user", "content": "ééééé" }],
    }));
    let s = Signals::of(&r, 5);
    assert_eq!(s.last_user.as_deref(), Some("éé"));
    assert!(s.truncated);
    assert_eq!(s.system, None);
}

#[test]
fn a_conversation_without_text_has_no_texts_and_no_ratios() {
    let r = request(json!({
        "model": "m",
        "messages": [{ "role": "user", "content": [
            { "type": "image_url", "image_url": { "url": "https://example.com/a.png" } },
        ] }],
    }));
    let s = Signals::of(&r, 100);
    assert_eq!((s.last_user, s.turns, s.images), (None, 0, 1));
    assert_eq!((s.digits, s.maths), (0.0, 0.0));
}
