//! One `chat.completion.chunk` of a streamed answer on its way to the
//! caller. An OpenAI-compatible provider's chunk is relayed as the text it
//! sent: the gateway reads what it needs of every chunk (whether it carries
//! content, the first choice's text and finish, tool calls, usage) in one
//! pass that builds nothing but those facts, and writes the provider's text
//! back out with the `switchyard` object spliced in where it adds one (the
//! first chunk, the usage chunk). Reading each chunk into a
//! `serde_json::Value` and serialising it again cost a tree of maps and
//! strings per chunk and changed nothing the caller sees.
//!
//! A chunk that needs translating (a Responses or Messages caller) or
//! editing (a rescued stream's) is read into a `Value` then, and a chunk the
//! gateway built (from an Anthropic stream, a Responses stream, a whole
//! answer) is a `Value` from the start.

use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, IgnoredAny};
use serde_json::{Map, Value};

use crate::Usage;
use crate::completion::{Present, close_with_routing};
use crate::sse;

/// A `chat.completion.chunk` object.
#[derive(Debug, Clone)]
pub struct Chunk {
    repr: Repr,
    facts: Facts,
}

#[derive(Debug, Clone)]
enum Repr {
    /// A JSON object as the provider sent it (without a `switchyard` key of
    /// its own, and without leading or trailing blanks), where the first
    /// choice's text is, and the `switchyard` object to write before its
    /// closing brace, once set.
    Raw {
        text: String,
        content: Content,
        routing: Option<Map<String, Value>>,
    },
    Value(Value),
}

/// Where the first choice's `delta.content` of a provider's chunk is.
#[derive(Debug, Clone)]
enum Content {
    None,
    /// In the text as it is (no escapes).
    At(Range<usize>),
    /// Unescaped from the text.
    Owned(String),
}

/// What the gateway reads of every chunk, read once when it is made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Facts {
    /// A choice's delta carries something the caller sees: text,
    /// reasoning, a refusal or a tool call.
    content: bool,
    /// The first choice (`index` 0) has a finish reason.
    finished: bool,
    /// Some choice has a finish reason.
    any_finished: bool,
    /// A choice other than the first is in it.
    other_choice: bool,
    /// The first choice's delta has `tool_calls`.
    tool_call: bool,
    /// `usage` is there and not `null`.
    has_usage: bool,
    /// Its `usage`, when it reads as OpenAI's.
    usage: Option<Usage>,
    /// `choices` is missing or empty.
    no_choices: bool,
}

/// Why a provider's event is not a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkError {
    /// Not JSON, or not a JSON object: skipped and counted. The text, given
    /// back for the warning that names it.
    Malformed(String),
    /// The event is an error object (its message): the stream failed.
    Reported(String),
}

/// The message of an error event without one.
const NO_MESSAGE: &str = "the provider reported an error mid-stream";

impl Chunk {
    /// An OpenAI-compatible provider's event data. Text the one-pass read
    /// cannot vouch for (a `switchyard` key of the provider's own, a field
    /// of an unexpected type, a duplicate key it reads) is read into a value
    /// instead, as before.
    pub fn from_openai(mut text: String) -> Result<Chunk, ChunkError> {
        trim(&mut text);
        if !text.starts_with('{') {
            return Err(ChunkError::Malformed(text));
        }
        match scan(&text) {
            Some(Ok((facts, content))) => Ok(Chunk {
                repr: Repr::Raw {
                    text,
                    content,
                    routing: None,
                },
                facts,
            }),
            Some(Err(message)) => Err(ChunkError::Reported(message)),
            None => {
                let Ok(value) = serde_json::from_str::<Value>(&text) else {
                    return Err(ChunkError::Malformed(text));
                };
                if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
                    let message = error.get("message").and_then(Value::as_str);
                    return Err(ChunkError::Reported(
                        message.unwrap_or(NO_MESSAGE).to_string(),
                    ));
                }
                Ok(Chunk::from_value(value))
            }
        }
    }

    /// A chunk the gateway built or translated.
    pub fn from_value(value: Value) -> Chunk {
        Chunk {
            facts: facts_of(&value),
            repr: Repr::Value(value),
        }
    }

    /// Whether a choice carries something the caller would see: text,
    /// reasoning, a refusal or a tool call.
    pub fn has_content(&self) -> bool {
        self.facts.content
    }

    /// Whether the first choice has a finish reason.
    pub fn finished(&self) -> bool {
        self.facts.finished
    }

    /// Whether any choice has a finish reason.
    pub fn any_finished(&self) -> bool {
        self.facts.any_finished
    }

    /// Whether a choice other than the first is in it.
    pub fn other_choice(&self) -> bool {
        self.facts.other_choice
    }

    /// Whether the first choice's delta has `tool_calls`.
    pub fn tool_call(&self) -> bool {
        self.facts.tool_call
    }

    /// Whether `usage` is there (and not `null`).
    pub fn has_usage(&self) -> bool {
        self.facts.has_usage
    }

    /// Its `usage`, when it reads as OpenAI's.
    pub fn usage(&self) -> Option<Usage> {
        self.facts.usage
    }

    /// Whether it only carries usage (no choices): the last chunk of an
    /// OpenAI stream asked to include usage.
    pub fn is_usage_only(&self) -> bool {
        self.facts.has_usage && self.facts.no_choices
    }

    /// The first choice's text delta.
    pub fn text(&self) -> Option<&str> {
        match &self.repr {
            Repr::Raw { text, content, .. } => match content {
                Content::None => None,
                Content::At(range) => text.get(range.clone()),
                Content::Owned(s) => Some(s),
            },
            Repr::Value(value) => first_choice(value)
                .and_then(|c| c.get("delta"))
                .and_then(|d| d.get("content"))
                .and_then(Value::as_str),
        }
    }

    /// Its `id`.
    pub fn id(&self) -> Option<Value> {
        #[derive(Deserialize)]
        struct Id {
            id: Option<Value>,
        }
        match &self.repr {
            Repr::Raw { text, .. } => serde_json::from_str::<Id>(text).ok().and_then(|i| i.id),
            Repr::Value(value) => value.get("id").cloned(),
        }
    }

    /// Sets the `switchyard` object, replacing any it had.
    pub fn set_routing(&mut self, info: Map<String, Value>) {
        match &mut self.repr {
            Repr::Raw { routing, .. } => *routing = Some(info),
            Repr::Value(Value::Object(map)) => {
                map.insert("switchyard".into(), Value::Object(info));
            }
            Repr::Value(_) => {}
        }
    }

    /// The `switchyard` object, to add to (made empty if there was none).
    pub fn routing_mut(&mut self) -> &mut Map<String, Value> {
        match &mut self.repr {
            Repr::Raw { routing, .. } => routing.get_or_insert_with(Map::new),
            Repr::Value(value) => {
                if !value.is_object() {
                    *value = Value::Object(Map::new());
                }
                let Value::Object(map) = value else {
                    unreachable!("made an object above")
                };
                let slot = map
                    .entry("switchyard")
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                match slot {
                    Value::Object(routing) => routing,
                    _ => unreachable!("made an object above"),
                }
            }
        }
    }

    /// Edits it as a value (read into one first if it is a provider's text);
    /// what the gateway reads of it is read again after.
    pub fn edit<R>(&mut self, f: impl FnOnce(&mut Value) -> R) -> R {
        if let Repr::Raw { .. } = self.repr {
            let value = std::mem::replace(&mut self.repr, Repr::Value(Value::Null));
            self.repr = Repr::Value(Chunk::into_value(Chunk {
                repr: value,
                facts: self.facts,
            }));
        }
        let Repr::Value(value) = &mut self.repr else {
            unreachable!("read into a value above")
        };
        let out = f(value);
        self.facts = facts_of(value);
        out
    }

    /// Cuts the first `n` bytes off the first choice's text delta (a
    /// rescue's continuation, past what the caller already has); nothing
    /// when `n` is not within the text or not at a character's start.
    pub fn drain_text(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.edit(|value| {
            let text = value
                .get_mut("choices")
                .and_then(Value::as_array_mut)
                .and_then(|choices| choices.iter_mut().find(|c| is_first(c)))
                .and_then(|choice| choice.get_mut("delta"))
                .and_then(|delta| delta.get_mut("content"));
            if let Some(Value::String(text)) = text
                && text.is_char_boundary(n)
            {
                text.drain(..n);
            }
        });
    }

    /// The chunk as a value (for a translation).
    pub fn into_value(self) -> Value {
        match self.repr {
            Repr::Value(value) => value,
            Repr::Raw { text, routing, .. } => raw_value(&text, routing),
        }
    }

    /// The chunk as a value, leaving it as it is.
    pub fn to_value(&self) -> Value {
        match &self.repr {
            Repr::Value(value) => value.clone(),
            Repr::Raw { text, routing, .. } => raw_value(text, routing.clone()),
        }
    }

    /// Writes its JSON: the provider's text with `,"switchyard":…` before
    /// its closing brace, or the value serialised.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match &self.repr {
            Repr::Value(value) => {
                // Writing a `Value` into a `Vec` cannot fail.
                let _ = serde_json::to_writer(&mut *out, value);
            }
            Repr::Raw {
                text,
                routing: None,
                ..
            } => out.extend_from_slice(text.as_bytes()),
            Repr::Raw {
                text,
                routing: Some(routing),
                ..
            } => {
                // A JSON object, trimmed: its last byte is its closing brace.
                let start = out.len();
                out.extend_from_slice(&text.as_bytes()[..text.len() - 1]);
                close_with_routing(out, start, |out| {
                    let _ = serde_json::to_writer(out, routing);
                });
            }
        }
    }

    /// Writes it as one SSE event (`data: …` and the blank line).
    pub fn write_sse(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(b"data: ");
        let json = out.len();
        self.write_json(out);
        // A provider's JSON may hold line breaks between its tokens: each
        // line then goes on a `data:` line of its own.
        if out[json..].iter().any(|b| *b == b'\n' || *b == b'\r') {
            let text = String::from_utf8_lossy(&out[json..]).into_owned();
            out.truncate(start);
            out.extend_from_slice(sse::encode(None, &text).as_bytes());
        } else {
            out.extend_from_slice(b"\n\n");
        }
    }

    /// Shaped for a caller who did not ask for usage: `None` when it only
    /// carried usage, else without `usage` and without the cost the
    /// executor added beside it.
    pub fn without_usage(mut self) -> Option<Chunk> {
        if !self.facts.has_usage {
            return Some(self);
        }
        if self.is_usage_only() {
            return None;
        }
        self.edit(|value| {
            if let Value::Object(map) = value {
                map.remove("usage");
                if let Some(Value::Object(info)) = map.get_mut("switchyard") {
                    info.remove("cost_usd");
                    if info.is_empty() {
                        map.remove("switchyard");
                    }
                }
            }
        });
        Some(self)
    }
}

impl PartialEq for Chunk {
    fn eq(&self, other: &Chunk) -> bool {
        self.to_value() == other.to_value()
    }
}

/// Drops leading and trailing blanks in place.
fn trim(text: &mut String) {
    let end = text.trim_end().len();
    text.truncate(end);
    let start = text.len() - text.trim_start().len();
    if start > 0 {
        text.drain(..start);
    }
}

/// A provider's checked text read into a value, with the routing object set.
fn raw_value(text: &str, routing: Option<Map<String, Value>>) -> Value {
    // Checked to be a JSON object when it was made.
    let mut value = serde_json::from_str(text).unwrap_or(Value::Null);
    if let (Value::Object(map), Some(routing)) = (&mut value, routing) {
        map.insert("switchyard".into(), Value::Object(routing));
    }
    value
}

/// Whether a choice is the first: its `index` is 0 (or missing).
fn is_first(choice: &Value) -> bool {
    choice.get("index").and_then(Value::as_u64).unwrap_or(0) == 0
}

/// The first choice.
fn first_choice(value: &Value) -> Option<&Value> {
    value
        .get("choices")?
        .as_array()?
        .iter()
        .find(|c| is_first(c))
}

/// What the gateway reads of a chunk it holds as a value.
fn facts_of(value: &Value) -> Facts {
    let mut facts = Facts::default();
    let usage = value.get("usage").filter(|u| !u.is_null());
    facts.has_usage = usage.is_some();
    facts.usage = usage.and_then(Usage::from_openai);
    let choices = value
        .get("choices")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    facts.no_choices = choices.is_empty();
    let text = |delta: Option<&Value>, key: &str| {
        delta
            .and_then(|d| d.get(key))
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    for choice in choices {
        let first = is_first(choice);
        let delta = choice.get("delta");
        let finished = choice.get("finish_reason").is_some_and(|f| !f.is_null());
        let calls = delta.and_then(|d| d.get("tool_calls"));
        facts.content |= text(delta, "content")
            || text(delta, "reasoning_content")
            || text(delta, "refusal")
            || calls
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
        facts.any_finished |= finished;
        if first {
            facts.finished |= finished;
            facts.tool_call |= calls.is_some_and(|c| !c.is_null());
        } else {
            facts.other_choice = true;
        }
    }
    facts
}

/// Reads a chunk's text in one pass: its facts and where its first
/// choice's text is; `Some(Err)` for an error event, `None` when the text
/// is not what the pass vouches for (then it is read into a value).
fn scan(text: &str) -> Option<Result<(Facts, Content), String>> {
    let scanned: Scan = serde_json::from_str(text).ok()?;
    if scanned.switchyard.0 {
        return None;
    }
    if let Some(error) = scanned.error {
        return Some(Err(error
            .message
            .map_or_else(|| NO_MESSAGE.to_string(), Text::into_string)));
    }
    let choices = scanned.choices;
    let facts = Facts {
        has_usage: scanned.usage.is_some(),
        usage: scanned.usage.as_ref().and_then(Usage::from_openai),
        no_choices: choices.count == 0,
        ..choices.facts
    };
    let content = match choices.text {
        None => Content::None,
        Some(Text::Owned(s)) => Content::Owned(s),
        Some(Text::Borrowed(s)) => {
            // A slice of `text`: where it starts within it.
            let start = s.as_ptr() as usize - text.as_ptr() as usize;
            Content::At(start..start + s.len())
        }
    };
    Some(Ok((facts, content)))
}

/// The top level of a chunk, as far as the gateway reads it.
#[derive(Deserialize)]
struct Scan<'a> {
    #[serde(default, borrow)]
    choices: Choices<'a>,
    /// `null` reads as missing.
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    switchyard: Present,
    #[serde(default, borrow)]
    error: Option<ErrorEvent<'a>>,
}

#[derive(Deserialize)]
struct ErrorEvent<'a> {
    #[serde(default, borrow)]
    message: Option<Text<'a>>,
}

/// The `choices` array, folded into facts as it is read (no vector built).
#[derive(Default)]
struct Choices<'a> {
    facts: Facts,
    count: usize,
    text: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default)]
    finish_reason: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<Text<'a>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Text<'a>>,
    #[serde(default, borrow)]
    refusal: Option<Text<'a>>,
    #[serde(default)]
    tool_calls: Option<Calls>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Choices<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> de::Visitor<'de> for Visitor<'a> {
            type Value = Choices<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of choices")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Choices<'a>, A::Error> {
                let mut out = Choices::default();
                while let Some(choice) = seq.next_element::<Choice<'a>>()? {
                    out.count += 1;
                    let facts = &mut out.facts;
                    let finished = choice.finish_reason.is_some();
                    facts.any_finished |= finished;
                    let non_empty = |t: &Option<Text>| t.as_ref().is_some_and(|t| !t.is_empty());
                    let (text, calls) = match choice.delta {
                        Some(delta) => {
                            facts.content |= non_empty(&delta.content)
                                || non_empty(&delta.reasoning_content)
                                || non_empty(&delta.refusal)
                                || matches!(delta.tool_calls, Some(Calls::Some));
                            (delta.content, delta.tool_calls)
                        }
                        None => (None, None),
                    };
                    if choice.index.unwrap_or(0) == 0 {
                        facts.finished |= finished;
                        facts.tool_call |= calls.is_some();
                        if out.text.is_none() {
                            out.text = text;
                        }
                    } else {
                        facts.other_choice = true;
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_seq(Visitor(std::marker::PhantomData))
    }
}

/// A string, borrowed from the chunk's text when it has no escapes.
enum Text<'a> {
    Borrowed(&'a str),
    Owned(String),
}

impl Text<'_> {
    fn is_empty(&self) -> bool {
        match self {
            Text::Borrowed(s) => s.is_empty(),
            Text::Owned(s) => s.is_empty(),
        }
    }

    fn into_string(self) -> String {
        match self {
            Text::Borrowed(s) => s.to_string(),
            Text::Owned(s) => s,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> de::Visitor<'de> for Visitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'a>, E> {
                Ok(Text::Borrowed(s))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'a>, E> {
                Ok(Text::Owned(s.to_string()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Text<'a>, E> {
                Ok(Text::Owned(s))
            }
        }
        d.deserialize_str(Visitor(std::marker::PhantomData))
    }
}

/// `tool_calls` that is not `null`: a non-empty array, or anything else.
enum Calls {
    Some,
    Empty,
}

impl<'de> Deserialize<'de> for Calls {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Calls;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("tool calls")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Calls, A::Error> {
                let mut any = false;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    any = true;
                }
                Ok(if any { Calls::Some } else { Calls::Empty })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Calls, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Calls::Empty)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Calls, E> {
                Ok(Calls::Empty)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Calls, E> {
                Ok(Calls::Empty)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Calls, E> {
                Ok(Calls::Empty)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Calls, E> {
                Ok(Calls::Empty)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Calls, E> {
                Ok(Calls::Empty)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
#[path = "chunk_tests.rs"]
mod tests;
