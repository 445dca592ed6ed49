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

use switchyard_wire::content::Signals;

use super::{Attempt, Decision, Draft, Outcome, SCHEMA};
use crate::policy::spec::MetricSpec;
use crate::policy::{Candidate, Health, Request};

// The values: one small function each, not inlined, so the code a record
// runs through stays small (on a busy worker it is evicted between
// requests, and each kilobyte of it comes back as cache misses).

/// A string, escaped as serde_json escapes it: most have nothing to escape
/// (names, ids, reasons) and are copied as they are.
#[inline(never)]
fn string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // Writing into a Vec cannot fail, nor can serialising a string.
    let written = serde_json::to_writer(out, s);
    debug_assert!(written.is_ok(), "{written:?}");
}

/// A number as serde_json writes an `f64` (`null` when not finite).
///
/// Most of a record's numbers have at most six decimals: milliseconds to the
/// microsecond, prices, small costs. Such a number is written from its
/// integer count of millionths, exactly as the shortest round-trip form
/// serde_json gives (the decimal `k / 10^6` has at most 15 significant
/// digits, so no shorter decimal is as close; between 1e-5 and 1e9
/// serde_json writes it without an exponent), and without that
/// algorithm's tables, which a busy worker has evicted from its caches.
#[inline(never)]
fn float(out: &mut Vec<u8>, v: f64) {
    if (1e-5..1e9).contains(&v) {
        let millionths = (v * 1e6).round();
        if millionths / 1e6 == v {
            let k = millionths as u64;
            uint(out, k / 1_000_000);
            out.push(b'.');
            let mut frac = k % 1_000_000;
            if frac == 0 {
                out.push(b'0');
                return;
            }
            let mut digits = [b'0'; 6];
            for d in digits.iter_mut().rev() {
                *d = b'0' + (frac % 10) as u8;
                frac /= 10;
            }
            let end = digits.iter().rposition(|&d| d != b'0').map_or(1, |i| i + 1);
            out.extend_from_slice(&digits[..end]);
            return;
        }
    }
    let written = serde_json::to_writer(out, &v);
    debug_assert!(written.is_ok(), "{written:?}");
}

/// A number as serde_json writes an `f32`.
#[inline(never)]
fn float32(out: &mut Vec<u8>, v: f32) {
    let written = serde_json::to_writer(out, &v);
    debug_assert!(written.is_ok(), "{written:?}");
}

#[inline(never)]
fn uint(out: &mut Vec<u8>, v: u64) {
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(digits.format(v).as_bytes());
}

fn boolean(out: &mut Vec<u8>, v: bool) {
    out.extend_from_slice(if v { b"true" } else { b"false" });
}

#[inline(never)]
fn strings(out: &mut Vec<u8>, list: &[String]) {
    array(out, list, |out, s| string(out, s));
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
    #[inline(never)]
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

    fn str(&mut self, name: &str, v: &str) {
        string(self.key(name), v);
    }

    fn uint(&mut self, name: &str, v: u64) {
        uint(self.key(name), v);
    }

    fn float(&mut self, name: &str, v: f64) {
        float(self.key(name), v);
    }

    // The same, skipped when absent, false or empty.

    fn some_str(&mut self, name: &str, v: Option<&str>) {
        if let Some(v) = v {
            self.str(name, v);
        }
    }

    fn some_uint(&mut self, name: &str, v: Option<u64>) {
        if let Some(v) = v {
            self.uint(name, v);
        }
    }

    fn some_float(&mut self, name: &str, v: Option<f64>) {
        if let Some(v) = v {
            self.float(name, v);
        }
    }

    fn flag(&mut self, name: &str, v: bool) {
        if v {
            boolean(self.key(name), true);
        }
    }

    fn list(&mut self, name: &str, v: &[String]) {
        if !v.is_empty() {
            strings(self.key(name), v);
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
pub(super) fn record(
    out: &mut Vec<u8>,
    draft: &Draft,
    attempts: &[Attempt],
    outcome: &Outcome,
    prompt_bytes: usize,
) {
    let mut o = Obj::open(out);
    o.uint("schema", u64::from(SCHEMA));
    hex_id(o.key("id"), draft.id);
    o.uint("time_ms", draft.time_ms);
    o.str("team", &draft.team);
    o.str("api", draft.api);
    boolean(o.key("stream"), draft.stream);
    let prompt = draft
        .prompt
        .as_ref()
        .map(|body| Signals::of(body, prompt_bytes));
    request(o.key("request"), draft, prompt.as_ref());
    array(o.key("candidates"), &draft.candidates, candidate);
    metrics(o.key("metrics"), &draft.metrics.to_spec());
    if let Some(d) = &draft.decision {
        decision(o.key("decision"), d);
    }
    array(o.key("attempts"), attempts, attempt);
    result(o.key("result"), outcome);
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
            r.str("model", &draft.model);
            r.key("routing").extend_from_slice(b"{}");
            r.str("team", &draft.team);
        }
    }
    if let Some(p) = prompt {
        r.some_str("prompt", p.last_user.as_deref());
        r.some_str("system", p.system.as_deref());
    }
    r.close();
}

fn told(r: &mut Obj<'_>, q: &Request) {
    r.str("model", &q.model);
    {
        let mut g = Obj::open(r.key("routing"));
        g.some_str("metric", q.routing.metric.as_deref());
        g.uint("interval_seconds", u64::from(q.routing.interval_seconds));
        g.list("models", &q.routing.models);
        g.list("providers", &q.routing.providers);
        g.close();
    }
    r.list("features", &q.features);
    r.some_str("step_type", q.step_type.as_deref());
    r.some_str("purpose", q.purpose.as_deref());
    r.str("team", &q.team);
    r.uint(
        "estimated_input_tokens",
        u64::from(q.estimated_input_tokens),
    );
    r.some_uint("max_output_tokens", q.max_output_tokens.map(u64::from));
    r.flag("prompt_cache_key", q.prompt_cache_key);
    if !q.metadata.is_empty() {
        // Sorted by key, the last of a repeated key kept: a map's JSON.
        let metadata: BTreeMap<&str, &str> = q
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut m = Obj::open(r.key("metadata"));
        for (k, v) in metadata {
            string(m.key_escaped(k), v);
        }
        m.close();
    }
}

impl Obj<'_> {
    /// Writes a key that may need escaping (a map's), and gives the buffer
    /// for its value.
    fn key_escaped(&mut self, name: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        string(self.out, name);
        self.out.push(b':');
        self.out
    }
}

/// `{ id: { "name@seconds": value } }`.
fn metrics(out: &mut Vec<u8>, spec: &MetricSpec) {
    let mut o = Obj::open(out);
    for (id, values) in spec {
        let mut v = Obj::open(o.key_escaped(id));
        for (name, value) in values {
            float(v.key_escaped(name), *value);
        }
        v.close();
    }
    o.close();
}

/// A candidate as offered, as `CandidateSpec::from` gives it.
fn candidate(out: &mut Vec<u8>, c: &Candidate) {
    let mut o = Obj::open(out);
    o.str("id", &c.id);
    o.str("provider", &c.provider);
    o.str("model", &c.model);
    o.some_str("logical_model", c.logical_model.as_deref());
    {
        let mut p = Obj::open(o.key("price"));
        p.float("input", c.price.input);
        p.float("output", c.price.output);
        p.some_float(
            "cached_input",
            (c.price.cached_input != c.price.input).then_some(c.price.cached_input),
        );
        p.close();
    }
    o.list("features", &c.features);
    o.flag("zdr", c.zdr);
    o.uint("tier", u64::from(c.tier));
    o.str(
        "health",
        match c.health {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::HalfOpen => "half-open",
        },
    );
    if let Some(h) = c.headroom {
        float32(o.key("headroom"), h);
    }
    o.flag("cache_affinity", c.cache_affinity);
    o.uint("context_window", u64::from(c.context_window));
    o.close();
}

fn decision(out: &mut Vec<u8>, d: &Decision) {
    let mut o = Obj::open(out);
    o.str("policy", &d.policy);
    o.str("contract", &d.contract);
    o.uint("decision_us", d.decision_us);
    o.some_str("label", d.label.as_deref());
    o.some_float("score", d.score);
    o.list("explanation", &d.explanation);
    array(o.key("plan"), &d.plan, |out, step| {
        let mut s = Obj::open(out);
        s.str("candidate", &step.candidate);
        s.list("strip", &step.strip);
        s.some_uint("timeout_ms", step.timeout_ms.map(u64::from));
        s.some_uint("retries", step.retries.map(u64::from));
        s.close();
    });
    o.some_str("stood_in_for", d.stood_in_for.as_deref());
    o.some_str("fault", d.fault.as_deref());
    o.close();
}

fn attempt(out: &mut Vec<u8>, a: &Attempt) {
    let mut o = Obj::open(out);
    o.str("provider", &a.provider);
    o.str("model", &a.model);
    o.some_uint("status", a.status.map(u64::from));
    o.str("reason", &a.reason);
    o.some_str("message", a.message.as_deref());
    o.some_float("latency_ms", a.latency_ms);
    o.some_uint("retry_after_ms", a.retry_after_ms);
    o.close();
}

fn result(out: &mut Vec<u8>, r: &Outcome) {
    let mut o = Obj::open(out);
    o.uint("status", u64::from(r.status));
    o.some_str("code", r.code.as_deref());
    o.some_str("provider", r.provider.as_deref());
    o.some_str("model", r.model.as_deref());
    o.list("stripped", &r.stripped);
    o.some_uint("input_tokens", r.input_tokens);
    o.some_uint("output_tokens", r.output_tokens);
    o.some_uint("cached_tokens", r.cached_tokens);
    o.some_float("cost_usd", r.cost_usd);
    o.flag("usage_estimated", r.usage_estimated);
    o.float("duration_ms", r.duration_ms);
    o.some_float("ttft_ms", r.ttft_ms);
    o.flag("stream_broken", r.stream_broken);
    o.flag("rescued", r.rescued);
    o.flag("client_closed", r.client_closed);
    o.close();
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::policy::{Price, Routing};
    use crate::request_log::SeenMetrics;
    use crate::request_log::{Decision, PlanStep, Record};

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

    fn outcome(kind: usize) -> Outcome {
        if kind == 2 {
            return Outcome {
                status: 200,
                provider: Some("acct-0".into()),
                model: Some("m".into()),
                output_tokens: Some(3),
                usage_estimated: true,
                duration_ms: 1234.5678,
                ttft_ms: Some(1e-7),
                stream_broken: true,
                ..Outcome::default()
            };
        }
        if kind == 1 {
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
                client_closed: true,
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
            let mut spec = MetricSpec::new();
            spec.entry("acct-0/model \"0\"".into())
                .or_default()
                .insert("latency_ms@900".into(), 12.5);
            spec.entry("acct-1/\"odd\"\n".into()).or_default().extend([
                ("uptime@60".to_string(), 0.999),
                ("p95_\"x\"@30".into(), 1e300),
            ]);
            d.metrics = SeenMetrics::from_spec(&spec);
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
    fn numbers_are_written_as_serde_json_writes_them() {
        let check = |v: f64| {
            let mut mine = Vec::new();
            float(&mut mine, v);
            let theirs = serde_json::to_vec(&v).expect("serialise");
            assert_eq!(
                String::from_utf8_lossy(&mine),
                String::from_utf8_lossy(&theirs),
                "{v:e}"
            );
        };
        // Every millionth up to 3, then every thousandth up to 10^6.
        for k in 0..3_000_000u64 {
            check(k as f64 / 1e6);
        }
        for k in 0..1_000_000_000u64 / 997 {
            check((k * 997) as f64 / 1e3);
        }
        // Anything else: random doubles across the range, random
        // millionths, edges and values that are not finite.
        let mut rng = fastrand::Rng::with_seed(20);
        for _ in 0..1_000_000 {
            check(f64::from_bits(rng.u64(..)));
            check(rng.u64(..1_000_000_000_000_000) as f64 / 1e6);
            check(rng.f64() * 10f64.powi(rng.i32(-8..12)));
        }
        for v in [
            0.0,
            -0.0,
            1e-5,
            9.99999e-6,
            1e9,
            999_999_999.999_999,
            1e9 - 1e-6,
            -0.353,
            0.1 + 0.2,
            f64::NAN,
            f64::INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
        ] {
            check(v);
        }
    }

    #[test]
    fn the_writer_and_the_typed_record_agree_byte_for_byte() {
        for variant in 0..6 {
            for (n, kind) in [(0, 0), (1, 1), (3, 1), (2, 0), (1, 2)] {
                let attempts = attempts(n);
                let outcome = outcome(kind);
                let mut written = Vec::new();
                record(&mut written, &draft(variant), &attempts, &outcome, 12);
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
