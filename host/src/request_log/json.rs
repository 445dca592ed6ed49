//! A record's JSON, written straight from the executor's data: the draft,
//! the trail's attempts (borrowed) and the outcome, with no [`Record`] built
//! in between. Building the typed record copied every name and list the
//! request had (some forty allocations) only to serialise and free them, on
//! a worker whose caches had just been filled by serving the request.
//!
//! The bytes are the ones serialising the [`Record`] that
//! [`Draft::finish`] builds would give: the same fields in the same order,
//! skipped under the same rules, with serde_json's own string escaping and
//! number formatting. `tests::the_writer_and_the_typed_record_agree_byte_for_byte`
//! holds the two to that.
//!
//! [`Record`]: super::Record

use std::collections::BTreeMap;

use serde::Serialize;
use switchyard_wire::content::Signals;

use super::{AttemptRef, Draft, Outcome, SCHEMA};
use crate::policy::{Candidate, Health, Request};

/// Appends `v`'s JSON as serde_json writes it.
fn value<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing into a Vec cannot fail, and neither can serialising the
    // strings, numbers and string-keyed maps this module writes.
    let written = serde_json::to_writer(out, v);
    debug_assert!(written.is_ok(), "{written:?}");
}

/// A JSON object being written, its keys written as they are (they are
/// this module's own names, with nothing to escape).
struct Obj<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Obj<'o> {
    fn open(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Obj { out, first: true }
    }

    /// Writes `"name":` and gives the buffer for its value.
    fn key(&mut self, name: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    fn field<T: Serialize + ?Sized>(&mut self, name: &str, v: &T) {
        value(self.key(name), v);
    }

    /// A field skipped when absent.
    fn some<T: Serialize>(&mut self, name: &str, v: Option<T>) {
        if let Some(v) = v {
            self.field(name, &v);
        }
    }

    /// A flag skipped when false.
    fn flag(&mut self, name: &str, v: bool) {
        if v {
            self.field(name, &true);
        }
    }

    /// A list skipped when empty.
    fn list(&mut self, name: &str, v: &[String]) {
        if !v.is_empty() {
            self.field(name, v);
        }
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// A JSON array of `items`, each written by `each`.
fn array<T>(out: &mut Vec<u8>, items: impl IntoIterator<Item = T>, each: impl Fn(&mut Vec<u8>, T)) {
    out.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        each(out, item);
    }
    out.push(b']');
}

/// The record of `draft` with `attempts` and `outcome`, as one line of JSON
/// (no newline); prompt text, when the draft keeps it, cut to
/// `prompt_bytes`.
pub(super) fn record<'a>(
    out: &mut Vec<u8>,
    draft: &Draft,
    attempts: impl IntoIterator<Item = AttemptRef<'a>>,
    outcome: &Outcome,
    prompt_bytes: usize,
) {
    let mut o = Obj::open(out);
    o.field("schema", &SCHEMA);
    hex_id(o.key("id"), draft.id);
    o.field("time_ms", &draft.time_ms);
    o.field("team", draft.team.as_str());
    o.field("api", draft.api);
    o.field("stream", &draft.stream);
    let prompt = draft
        .prompt
        .as_ref()
        .map(|body| Signals::of(body, prompt_bytes));
    request(o.key("request"), draft, prompt.as_ref());
    array(o.key("candidates"), &draft.candidates, candidate);
    o.field("metrics", &draft.metrics);
    if let Some(decision) = &draft.decision {
        o.field("decision", decision);
    }
    array(o.key("attempts"), attempts, attempt);
    o.field("result", outcome);
    o.close();
}

/// The record id: 32 hex digits, quoted.
fn hex_id(out: &mut Vec<u8>, id: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for shift in (0..32).rev() {
        out.push(DIGITS[((id >> (shift * 4)) & 0xf) as usize]);
    }
    out.push(b'"');
}

/// What the policy was told (a case file's `request`), as
/// `RequestSpec::from` gives it; a request that ended before its decision
/// has its model and team only.
fn request(out: &mut Vec<u8>, draft: &Draft, prompt: Option<&Signals>) {
    let mut r = Obj::open(out);
    match &draft.request {
        Some(q) => told(&mut r, q),
        None => {
            r.field("model", draft.model.as_str());
            r.key("routing").extend_from_slice(b"{}");
            r.field("team", draft.team.as_str());
        }
    }
    if let Some(p) = prompt {
        r.some("prompt", p.last_user.as_deref());
        r.some("system", p.system.as_deref());
    }
    r.close();
}

fn told(r: &mut Obj<'_>, q: &Request) {
    r.field("model", q.model.as_str());
    {
        let mut g = Obj::open(r.key("routing"));
        g.some("metric", q.routing.metric.as_deref());
        g.field("interval_seconds", &q.routing.interval_seconds);
        g.list("models", &q.routing.models);
        g.list("providers", &q.routing.providers);
        g.close();
    }
    r.list("features", &q.features);
    r.some("step_type", q.step_type.as_deref());
    r.some("purpose", q.purpose.as_deref());
    r.field("team", q.team.as_str());
    r.field("estimated_input_tokens", &q.estimated_input_tokens);
    r.some("max_output_tokens", q.max_output_tokens);
    r.flag("prompt_cache_key", q.prompt_cache_key);
    if !q.metadata.is_empty() {
        // Sorted by key, the last of a repeated key kept: a map's JSON.
        let metadata: BTreeMap<&str, &str> = q
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        r.field("metadata", &metadata);
    }
}

/// A candidate as offered, as `CandidateSpec::from` gives it.
fn candidate(out: &mut Vec<u8>, c: &Candidate) {
    let mut o = Obj::open(out);
    o.field("id", c.id.as_str());
    o.field("provider", c.provider.as_str());
    o.field("model", c.model.as_str());
    o.some("logical_model", c.logical_model.as_deref());
    {
        let mut p = Obj::open(o.key("price"));
        p.field("input", &c.price.input);
        p.field("output", &c.price.output);
        p.some(
            "cached_input",
            (c.price.cached_input != c.price.input).then_some(c.price.cached_input),
        );
        p.close();
    }
    o.list("features", &c.features);
    o.flag("zdr", c.zdr);
    o.field("tier", &c.tier);
    o.field(
        "health",
        match c.health {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::HalfOpen => "half-open",
        },
    );
    o.some("headroom", c.headroom);
    o.flag("cache_affinity", c.cache_affinity);
    o.field("context_window", &c.context_window);
    o.close();
}

fn attempt(out: &mut Vec<u8>, a: AttemptRef<'_>) {
    let mut o = Obj::open(out);
    o.field("provider", a.provider);
    o.field("model", a.model);
    o.some("status", a.status);
    o.field("reason", a.reason);
    o.some("message", a.message);
    o.some("latency_ms", a.latency_ms);
    o.some("retry_after_ms", a.retry_after_ms);
    o.close();
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::policy::{Price, Routing};
    use crate::request_log::{Attempt, Decision, PlanStep, Record};

    fn candidate(i: usize) -> Candidate {
        Candidate {
            id: format!("acct-{i}/model \"{i}\""),
            provider: format!("acct-{i}"),
            model: format!("model \"{i}\"\n"),
            logical_model: (i % 2 == 1).then(|| "smart".to_string()),
            price: Price {
                input: 0.25 * i as f64,
                output: 2.0 / 3.0,
                cached_input: if i.is_multiple_of(2) {
                    0.025
                } else {
                    0.25 * i as f64
                },
            },
            features: (0..i).map(|f| format!("feature-{f}")).collect(),
            zdr: i.is_multiple_of(2),
            tier: i as u8,
            health: [Health::Healthy, Health::Degraded, Health::HalfOpen][i % 3],
            headroom: i.is_multiple_of(2).then_some(0.1 + i as f32),
            cache_affinity: i % 3 == 1,
            context_window: 128_000 + i as u32,
            metrics: Vec::new(),
        }
    }

    fn request(full: bool) -> Request {
        Request {
            model: "gpt-5 \u{1F680}".into(),
            routing: Routing {
                metric: full.then(|| "latency".into()),
                interval_seconds: 900,
                models: if full {
                    vec!["a".into(), "b".into()]
                } else {
                    Vec::new()
                },
                providers: if full { vec!["p\\".into()] } else { Vec::new() },
            },
            features: if full {
                vec!["tools".into(), "vision".into()]
            } else {
                Vec::new()
            },
            step_type: full.then(|| "tool-call".into()),
            purpose: full.then(|| "summarization".into()),
            team: "team \"q\"".into(),
            estimated_input_tokens: 1234,
            max_output_tokens: full.then_some(64),
            prompt_cache_key: full,
            metadata: if full {
                vec![
                    ("z".into(), "last".into()),
                    ("a".into(), "first".into()),
                    ("z".into(), "later \u{7}".into()),
                ]
            } else {
                Vec::new()
            },
            config: "{\"ignored\": true}".into(),
        }
    }

    fn attempts(n: usize) -> Vec<Attempt> {
        (0..n)
            .map(|i| Attempt {
                provider: format!("acct-{i}"),
                model: "m".into(),
                status: (i > 0).then_some(500 + i as u16),
                reason: if i + 1 == n {
                    "ok".into()
                } else {
                    "upstream_error".into()
                },
                message: (i % 2 == 1).then(|| "boom \"x\"\t".into()),
                latency_ms: (i != 2).then_some(0.1 + i as f64 / 7.0),
                retry_after_ms: (i == 1).then_some(1500),
            })
            .collect()
    }

    fn outcome(ok: bool) -> Outcome {
        if ok {
            Outcome {
                status: 200,
                provider: Some("acct-1".into()),
                model: Some("m".into()),
                stripped: vec!["tools".into()],
                input_tokens: Some(12),
                output_tokens: Some(7),
                cached_tokens: Some(0),
                cost_usd: Some(1.7e-5),
                duration_ms: 0.383,
                ttft_ms: Some(0.2),
                rescued: true,
                ..Outcome::default()
            }
        } else {
            Outcome {
                status: 503,
                code: Some("no_route".into()),
                duration_ms: 12.0,
                ..Outcome::default()
            }
        }
    }

    fn draft(variant: usize) -> Draft {
        let mut d = Draft::new(
            1_796_611_643_912 + variant as u64,
            "team \"q\"".into(),
            "gpt-5 \u{1F680}".into(),
            ["chat", "responses", "messages"][variant % 3],
            variant % 2 == 1,
        );
        d.id = u128::MAX / (variant as u128 + 3);
        if variant == 0 {
            // Ended before the decision.
            return d;
        }
        d.request = Some(request(variant.is_multiple_of(2)));
        d.candidates = (0..variant).map(candidate).collect();
        if variant.is_multiple_of(2) {
            d.metrics
                .entry("acct-0/model \"0\"".into())
                .or_default()
                .insert("latency_ms@900".into(), 12.5);
        }
        d.decision = Some(Decision {
            policy: "v3".into(),
            contract: "0.2.0".into(),
            decision_us: 12,
            label: (variant != 3).then(|| "cheap \"first\"".into()),
            score: (variant == 2).then_some(0.75),
            explanation: if variant == 2 {
                vec!["why".into()]
            } else {
                Vec::new()
            },
            plan: vec![PlanStep {
                candidate: "acct-0/model \"0\"".into(),
                strip: vec!["tools".into()],
                timeout_ms: Some(5000),
                retries: Some(2),
            }],
            stood_in_for: (variant == 3).then(|| "v2".into()),
            fault: (variant == 3).then(|| "trap".into()),
        });
        if variant == 4 {
            let body = br#"{"model":"x","messages":[{"role":"system","content":"be \"brief\""},{"role":"user","content":"hello \u00e9 world, a long prompt"}]}"#;
            d.prompt = Some(Arc::new(
                switchyard_wire::CanonicalRequest::from_slice(body).expect("request"),
            ));
        }
        d
    }

    #[test]
    fn the_writer_and_the_typed_record_agree_byte_for_byte() {
        for variant in 0..6 {
            for (n, ok) in [(0, false), (1, true), (3, true), (2, false)] {
                let attempts = attempts(n);
                let outcome = outcome(ok);
                let mut written = Vec::new();
                record(
                    &mut written,
                    &draft(variant),
                    attempts.iter().map(Attempt::view),
                    &outcome,
                    12,
                );
                let typed = draft(variant).finish(attempts.clone(), outcome.clone(), 12);
                let expected = serde_json::to_vec(&typed).expect("serialise");
                assert_eq!(
                    String::from_utf8_lossy(&written),
                    String::from_utf8_lossy(&expected),
                    "variant {variant}, {n} attempts"
                );
                let back: Record = serde_json::from_slice(&written).expect("a record");
                assert_eq!(back, typed);
            }
        }
    }
}
