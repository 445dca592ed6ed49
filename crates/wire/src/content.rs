//! What a request is about, for routing policies that ask (`request.content`
//! of the 0.2 policy contract): the last user turn's and the system prompt's
//! text, cut to a limit, and counts over the whole conversation. Computed
//! from the canonical request, without a tokenizer.

use serde_json::Value;

use crate::request::{CanonicalRequest, Message, is_image_part};

/// Content signals of one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    /// The last user turn's text parts, joined by newlines and cut to the
    /// limit; `None` without a user turn that has text.
    pub last_user: Option<String>,
    /// The system and developer messages' text, joined and cut the same way.
    pub system: Option<String>,
    /// Either text was cut.
    pub truncated: bool,
    /// Characters of text in every message.
    pub characters: u32,
    /// The request's input estimate ([`CanonicalRequest::estimate_input_tokens`]).
    pub estimated_tokens: u32,
    /// User turns.
    pub turns: u32,
    /// Images anywhere in the conversation.
    pub images: u32,
    /// Tools the request declares.
    pub tools: u32,
    /// Fenced code blocks (a pair of ``` lines or markers).
    pub code_blocks: u32,
    /// Share of text characters that are ASCII digits.
    pub digits: f32,
    /// Share of text characters that are mathematical symbols.
    pub maths: f32,
}

/// Whether `c` counts as a mathematical symbol.
fn is_maths(c: char) -> bool {
    matches!(
        c,
        '+' | '-'
            | '*'
            | '/'
            | '='
            | '^'
            | '<'
            | '>'
            | '%'
            | '≤'
            | '≥'
            | '≠'
            | '≈'
            | '±'
            | '×'
            | '÷'
            | '∑'
            | '∏'
            | '∫'
            | '√'
            | '∞'
            | 'π'
            | '∂'
            | '∆'
            | '∇'
            | '∈'
            | '∀'
            | '∃'
    )
}

/// The text parts of a message, in order.
fn texts(m: &Message) -> impl Iterator<Item = &str> {
    let whole = match &m.content {
        Some(Value::String(s)) => Some(s.as_str()),
        _ => None,
    };
    whole.into_iter().chain(
        m.parts()
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str)),
    )
}

/// `texts` joined by newlines, cut to at most `limit` bytes on a character
/// boundary; whether it was cut.
fn joined<'a>(texts: impl Iterator<Item = &'a str>, limit: usize) -> (Option<String>, bool) {
    let mut out: Option<String> = None;
    for t in texts {
        let s = out.get_or_insert_with(String::new);
        if !s.is_empty() {
            s.push('\n');
        }
        s.push_str(t);
    }
    let Some(mut s) = out else {
        return (None, false);
    };
    if s.len() <= limit {
        return (Some(s), false);
    }
    let mut end = limit;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    (Some(s), true)
}

impl Signals {
    /// The signals of `request`, its two texts cut to `limit` bytes each.
    pub fn of(request: &CanonicalRequest, limit: usize) -> Signals {
        let mut s = Signals {
            estimated_tokens: u32::try_from(request.estimate_input_tokens()).unwrap_or(u32::MAX),
            tools: request
                .tools
                .as_ref()
                .map_or(0, |t| u32::try_from(t.len()).unwrap_or(u32::MAX)),
            ..Signals::default()
        };
        let (mut characters, mut digits, mut maths, mut fences) = (0u64, 0u64, 0u64, 0u64);
        for m in &request.messages {
            if m.role == "user" && texts(m).next().is_some() {
                s.turns += 1;
            }
            s.images += m.parts().iter().filter(|p| is_image_part(p)).count() as u32;
            for text in texts(m) {
                fences += text.matches("```").count() as u64;
                for c in text.chars() {
                    characters += 1;
                    digits += u64::from(c.is_ascii_digit());
                    maths += u64::from(is_maths(c));
                }
            }
        }
        s.characters = u32::try_from(characters).unwrap_or(u32::MAX);
        s.code_blocks = u32::try_from(fences / 2).unwrap_or(u32::MAX);
        if characters > 0 {
            s.digits = (digits as f64 / characters as f64) as f32;
            s.maths = (maths as f64 / characters as f64) as f32;
        }
        let last_user = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == "user" && texts(m).next().is_some());
        let (text, cut_user) = joined(last_user.into_iter().flat_map(texts), limit);
        s.last_user = text;
        let system = request
            .messages
            .iter()
            .filter(|m| m.role == "system" || m.role == "developer")
            .flat_map(texts);
        let (text, cut_system) = joined(system, limit);
        s.system = text;
        s.truncated = cut_user || cut_system;
        s
    }
}

#[cfg(test)]
#[path = "content_tests.rs"]
mod tests;
