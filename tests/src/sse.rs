//! Reading a streamed answer the way a client of each API would: its text,
//! whether it ended cleanly, its error event, its usage.

use serde_json::Value;

/// The API a stream was asked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/v1/chat/completions`
    Chat,
    /// `/v1/responses`
    Responses,
    /// `/v1/messages`
    Messages,
}

impl Api {
    pub const ALL: [Api; 3] = [Api::Chat, Api::Responses, Api::Messages];

    /// The gateway path.
    pub fn path(self) -> &'static str {
        match self {
            Api::Chat => "/v1/chat/completions",
            Api::Responses => "/v1/responses",
            Api::Messages => "/v1/messages",
        }
    }

    /// A streamed request for `model` asking `prompt`, with `routing` (the
    /// gateway's routing options) when given.
    pub fn request(self, model: &str, prompt: &str, routing: Option<Value>) -> Value {
        let mut body = match self {
            Api::Chat => serde_json::json!({
                "model": model, "stream": true,
                "stream_options": { "include_usage": true },
                "messages": [{ "role": "user", "content": prompt }],
            }),
            Api::Responses => serde_json::json!({
                "model": model, "stream": true, "input": prompt,
            }),
            Api::Messages => serde_json::json!({
                "model": model, "stream": true, "max_tokens": 256,
                "messages": [{ "role": "user", "content": prompt }],
            }),
        };
        if let Some(routing) = routing {
            body["routing"] = routing;
        }
        body
    }
}

/// A stream as the caller saw it.
#[derive(Debug, Default)]
pub struct Streamed {
    /// Every event's data, parsed.
    pub events: Vec<Value>,
    /// The answer's text, concatenated.
    pub text: String,
    /// It ended the way a complete answer ends (`[DONE]`, `response.completed`,
    /// `message_stop`) and carried no error event.
    pub complete: bool,
    /// The error event's object, if one came.
    pub error: Option<Value>,
    /// The usage reported (Chat: the usage chunk; Responses: the completed
    /// response's; Messages: `message_delta`'s), in the API's own shape.
    pub usage: Option<Value>,
    /// The `switchyard` routing info, merged across the events that carry it.
    pub switchyard: serde_json::Map<String, Value>,
}

impl Streamed {
    /// The error event's message, whichever API.
    pub fn error_message(&self) -> Option<&str> {
        let e = self.error.as_ref()?;
        e.get("message")
            .or_else(|| e.pointer("/response/error/message"))
            .and_then(Value::as_str)
    }
}

/// Reads an SSE body of `api`.
pub fn read(api: Api, body: &str) -> Streamed {
    let mut s = Streamed::default();
    let mut ended = false;
    for block in body.split("\n\n") {
        let Some(data) = block
            .lines()
            .find_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        else {
            continue;
        };
        if data.trim() == "[DONE]" {
            ended = true;
            continue;
        }
        let Ok(event) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        for holder in [Some(&event), event.get("response"), event.get("message")]
            .into_iter()
            .flatten()
        {
            if let Some(Value::Object(info)) = holder.get("switchyard") {
                for (k, v) in info {
                    s.switchyard.insert(k.clone(), v.clone());
                }
            }
        }
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        match api {
            Api::Chat => {
                if let Some(t) = event
                    .pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
                {
                    s.text.push_str(t);
                }
                if let Some(u) = event.get("usage").filter(|u| !u.is_null()) {
                    s.usage = Some(u.clone());
                }
                if let Some(e) = event.get("error") {
                    s.error = Some(e.clone());
                }
            }
            Api::Responses => match kind {
                "response.output_text.delta" => {
                    s.text.push_str(event["delta"].as_str().unwrap_or_default());
                }
                "response.completed" => {
                    ended = true;
                    s.usage = event.pointer("/response/usage").cloned();
                }
                "error" | "response.failed" => s.error = Some(event.clone()),
                _ => {}
            },
            Api::Messages => match kind {
                "content_block_delta" => {
                    if let Some(t) = event.pointer("/delta/text").and_then(Value::as_str) {
                        s.text.push_str(t);
                    }
                }
                "message_delta" => s.usage = event.get("usage").cloned(),
                "message_stop" => ended = true,
                "error" => s.error = Some(event["error"].clone()),
                _ => {}
            },
        }
        s.events.push(event);
    }
    s.complete = ended && s.error.is_none();
    s
}
