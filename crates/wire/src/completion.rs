//! A whole Chat Completions answer (`chat.completion`) on its way to the
//! caller. An OpenAI-compatible provider's answer is relayed as the bytes it
//! sent, with the gateway's `switchyard` routing object appended, when the
//! caller asked in Chat Completions: reading it into a `serde_json::Value`
//! and writing it out again cost every such request a parse into a tree of
//! maps, a serialisation and the tree's freeing, and changed nothing the
//! caller sees but key order and number spelling. An answer that needs
//! translating (Responses, Messages, a stream made of it, a shadow backup's
//! comparison) is read into a `Value` then.

use serde::Deserialize;
use serde::de::{self, IgnoredAny};
use serde_json::Value;

/// A `chat.completion` object: the provider's bytes (checked to be a JSON
/// object with a `choices` array), or a value the gateway built or
/// translated.
#[derive(Debug, Clone)]
pub struct Completion(Repr);

#[derive(Debug, Clone)]
enum Repr {
    /// A JSON object with a `choices` array and no `switchyard` key, and the
    /// `switchyard` object's JSON to append, once set.
    Raw {
        bytes: Vec<u8>,
        routing: Option<Vec<u8>>,
    },
    Value(Value),
}

/// Why a provider's body is not a `chat.completion`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompletionError {
    /// Not JSON (serde_json's message).
    Invalid(String),
    /// JSON without a `choices` array.
    NoChoices,
}

/// What the gateway reads of a provider's answer when relaying its bytes:
/// that `choices` is an array, its `usage`, and whether it already has a
/// `switchyard` key (then it is read into a value, and the key replaced).
#[derive(Deserialize)]
struct Check {
    choices: Option<Seq>,
    usage: Option<Value>,
    #[serde(default)]
    switchyard: Present,
}

/// A JSON array, its elements skipped; anything else fails the check.
struct Seq;

impl<'de> Deserialize<'de> for Seq {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Seq;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Seq, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Seq)
            }
        }
        d.deserialize_seq(Visitor)
    }
}

/// Whether a key was there, whatever its value (`null` included).
#[derive(Default)]
pub(crate) struct Present(pub(crate) bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}

impl Completion {
    /// An OpenAI-compatible provider's body, and its `usage` object if it
    /// has one. `as_written`: the answer goes to the caller as it is (a
    /// Chat Completions caller), so its bytes are kept; otherwise it is read
    /// into a value at once, for the translation that follows. Bytes the
    /// check cannot vouch for (a duplicate key, a `switchyard` key of the
    /// provider's own, a top level that is not an object) are read into a
    /// value too.
    pub fn from_openai(
        bytes: Vec<u8>,
        as_written: bool,
    ) -> Result<(Completion, Option<Value>), CompletionError> {
        let object = bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{');
        if as_written
            && object
            && let Ok(check) = serde_json::from_slice::<Check>(&bytes)
        {
            if check.choices.is_none() {
                return Err(CompletionError::NoChoices);
            }
            if !check.switchyard.0 {
                let raw = Repr::Raw {
                    bytes,
                    routing: None,
                };
                return Ok((Completion(raw), check.usage));
            }
        }
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|e| CompletionError::Invalid(e.to_string()))?;
        if value.get("choices").and_then(Value::as_array).is_none() {
            return Err(CompletionError::NoChoices);
        }
        let usage = value.get("usage").cloned();
        Ok((Completion(Repr::Value(value)), usage))
    }

    /// A completion the gateway built or translated.
    pub fn from_value(value: Value) -> Completion {
        Completion(Repr::Value(value))
    }

    /// Sets the `switchyard` routing object (replacing one set before).
    pub fn set_routing(&mut self, routing: &impl serde::Serialize) {
        match &mut self.0 {
            Repr::Raw { routing: slot, .. } => *slot = serde_json::to_vec(routing).ok(),
            Repr::Value(Value::Object(map)) => {
                if let Ok(v) = serde_json::to_value(routing) {
                    map.insert("switchyard".into(), v);
                }
            }
            Repr::Value(_) => {}
        }
    }

    /// The completion as a value (for a translation or a stream made of it).
    pub fn into_value(self) -> Value {
        match self.0 {
            Repr::Value(value) => value,
            Repr::Raw { bytes, routing } => raw_value(&bytes, routing.as_deref()),
        }
    }

    /// The completion as a value, leaving it as it is (a shadow backup's
    /// comparison): read from the bytes in place, not from a copy.
    pub fn to_value(&self) -> Value {
        match &self.0 {
            Repr::Value(value) => value.clone(),
            Repr::Raw { bytes, routing } => raw_value(bytes, routing.as_deref()),
        }
    }

    /// The JSON the caller gets: the provider's bytes with `,"switchyard":…`
    /// written before their closing brace, or the value serialised.
    pub fn into_bytes(self) -> Vec<u8> {
        match self.0 {
            Repr::Value(value) => serde_json::to_vec(&value).unwrap_or_default(),
            Repr::Raw {
                mut bytes,
                routing: Some(routing),
            } => {
                // A JSON object: its last non-blank byte is its closing brace.
                let end = bytes
                    .iter()
                    .rposition(|b| !b.is_ascii_whitespace())
                    .unwrap_or(0);
                bytes.truncate(end);
                let start = bytes.iter().position(|b| *b == b'{').unwrap_or(0);
                close_with_routing(&mut bytes, start, |out| out.extend_from_slice(&routing));
                bytes
            }
            Repr::Raw { bytes, .. } => bytes,
        }
    }
}

/// Closes a JSON object whose text `out` holds from `start` up to, not
/// including, its closing brace, with `"switchyard":` and the routing object
/// that `routing` writes as its last member.
pub(crate) fn close_with_routing(
    out: &mut Vec<u8>,
    start: usize,
    routing: impl FnOnce(&mut Vec<u8>),
) {
    let empty = out
        .get(start + 1..)
        .is_none_or(|members| members.iter().all(u8::is_ascii_whitespace));
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(b"\"switchyard\":");
    routing(out);
    out.push(b'}');
}

/// A provider's checked bytes read into a value, with the routing object set.
fn raw_value(bytes: &[u8], routing: Option<&[u8]>) -> Value {
    // Checked to be a JSON object when it was made.
    let mut value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    if let (Value::Object(map), Some(routing)) = (&mut value, routing)
        && let Ok(routing) = serde_json::from_slice(routing)
    {
        map.insert("switchyard".into(), routing);
    }
    value
}

#[cfg(test)]
#[path = "completion_tests.rs"]
mod tests;
