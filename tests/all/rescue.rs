//! End-to-end: mid-stream rescue (README "Failover", rows 8, 9 and 14): a
//! stream that breaks or stalls after content reached the caller goes on from
//! the plan's next candidate — by continuation where the account continues a
//! prefill, else by regenerating and skipping what the caller has — and the
//! caller sees one complete, well-formed stream on each of the three APIs.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard::api::Server;
use switchyard::config::hash_key;
use switchyard_tests::mock::{Behavior, Flavor, MockProvider, Prefill, StreamFault};
use switchyard_tests::sse::{self, Api, Streamed};
use switchyard_tests::start_gateway;

const KEY: &str = "sk-rescue-team";

/// Sixty words; the faulty streams cut after forty.
fn answer() -> String {
    (1..=60)
        .map(|i| format!("word{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// An OpenAI account (two models) and an Anthropic account (two models):
/// each mock serves both of its models, so a one-shot fault hits the first
/// attempt and the rescue gets the default answer.
struct Env {
    gateway: Server,
    openai: MockProvider,
    anthropic: MockProvider,
    client: reqwest::Client,
}

impl Env {
    async fn start() -> Env {
        let openai = MockProvider::start(Flavor::OpenAi).await;
        let anthropic = MockProvider::start(Flavor::Anthropic).await;
        for m in [&openai, &anthropic] {
            m.set_default(Behavior::Text(answer()));
        }
        let config = format!(
            r#"
            [server]
            listen = "127.0.0.1:0"
            shutdown_grace_secs = 2
            [routing]
            first_token_timeout_ms = 3000
            stream_idle_timeout_ms = 1500
            backoff_base_ms = 1
            backoff_max_ms = 5
            [providers.openai]
            kind = "openai"
            base_url = "{openai}"
            api_key_env = "OA_KEY"
            models = ["gpt-4o-mini", "gpt-4.1"]
            timeout_ms = 5000
            [providers.anthropic]
            kind = "anthropic"
            base_url = "{anthropic}"
            api_key_env = "ANTH_KEY"
            models = ["claude-haiku-4-5", "claude-sonnet-4-5"]
            timeout_ms = 5000
            [teams.team]
            key_sha256 = ["{key}"]
            "#,
            openai = openai.base_url(),
            anthropic = anthropic.base_url(),
            key = hash_key(KEY),
        );
        let env = [("OA_KEY", "sk-oa"), ("ANTH_KEY", "sk-ant")];
        Env {
            gateway: start_gateway("rescue.toml", &config, &env).await,
            openai,
            anthropic,
            client: reqwest::Client::new(),
        }
    }

    /// Streams `model` on `api`, with `fallback` as the plan's next model.
    async fn stream(&self, api: Api, model: &str, fallback: &str) -> Streamed {
        let body = api.request(
            model,
            "Count in words.",
            Some(json!({ "models": [fallback] })),
        );
        let response = self
            .client
            .post(format!("http://{}{}", self.gateway.addr, api.path()))
            .bearer_auth(KEY)
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
            .await
            .expect("gateway answers");
        assert_eq!(response.status(), 200, "{api:?}");
        sse::read(api, &response.text().await.unwrap_or_default())
    }

    async fn metric(&self, prefix: &str, label: &str) -> f64 {
        let text = reqwest::get(format!("http://{}/metrics", self.gateway.addr))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .filter(|l| l.starts_with(prefix) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

fn cut() -> Behavior {
    Behavior::StreamFault {
        fault: StreamFault::CutAfter(40),
        text: answer(),
    }
}

/// Input tokens in the API's usage shape.
fn output_tokens(api: Api, usage: &Value) -> u64 {
    let key = match api {
        Api::Chat => "completion_tokens",
        _ => "output_tokens",
    };
    usage[key].as_u64().unwrap_or(0)
}

/// The last message of a request the mock received: its role and text.
fn last_message(body: &Value) -> (String, String) {
    let last = body["messages"].as_array().and_then(|m| m.last());
    let last = last.cloned().unwrap_or(Value::Null);
    let text = match &last["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        _ => String::new(),
    };
    (last["role"].as_str().unwrap_or("").to_owned(), text)
}

/// Row 8, regenerate and skip: an OpenAI stream cut after 40 of 60 words is
/// restarted on the plan's next model (OpenAI answers a prefill anew, so no
/// continuation is tried), its first 40 words held back and checked, and the
/// caller gets the whole answer once, ending cleanly, on every API, with one
/// usage total covering both attempts.
#[tokio::test]
async fn row_8_a_stream_cut_mid_answer_is_regenerated_and_the_caller_gets_it_whole() {
    let env = Env::start().await;
    for (i, api) in Api::ALL.into_iter().enumerate() {
        env.openai.push(cut());
        let s = env.stream(api, "gpt-4o-mini", "gpt-4.1").await;
        assert!(s.complete, "{api:?}: a clean end, no error: {:?}", s.error);
        assert_eq!(s.text, answer(), "{api:?}: the whole answer, once");
        let requests = env.openai.requests();
        let rescue = &requests[requests.len() - 1];
        assert_eq!(rescue.body["model"], "gpt-4.1", "{api:?}");
        if api != Api::Responses {
            assert_eq!(last_message(&rescue.body).0, "user", "{api:?}: no prefill");
        }
        let usage = s.usage.as_ref().expect("usage");
        // 60 words from the rescue plus the ~40 words the broken attempt
        // relayed (estimated at 4 bytes a token).
        assert!(output_tokens(api, usage) > 60, "{api:?}: {usage}");
        assert_eq!(s.switchyard["rescues"][0]["kind"], "regenerate", "{api:?}");
        assert_eq!(s.switchyard["usage_estimated"], true, "{api:?}");
        assert_eq!(
            env.metric(
                "switchyard_stream_rescues_total{",
                r#"kind="regenerate",outcome="ok""#
            )
            .await,
            (i + 1) as f64
        );
    }
    assert_eq!(env.openai.hits(), 6);
    // The broken attempts: recorded once each, as broken, never as ok.
    assert_eq!(
        env.metric(
            "switchyard_attempts_total{",
            r#"model="gpt-4o-mini",outcome="broken""#
        )
        .await,
        3.0
    );
    assert_eq!(
        env.metric(
            "switchyard_attempts_total{",
            r#"model="gpt-4o-mini",outcome="ok""#
        )
        .await,
        0.0
    );
    assert_eq!(
        env.metric("switchyard_estimated_usage_total{", "gpt-4o-mini")
            .await,
        3.0
    );
}

/// Row 8, continuation: an Anthropic stream cut after 40 of 60 words goes on
/// from the next model with the partial answer as an assistant prefill; only
/// what it adds reaches the caller.
#[tokio::test]
async fn row_8_a_stream_cut_mid_answer_is_continued_where_prefill_is_supported() {
    let env = Env::start().await;
    for api in Api::ALL {
        env.anthropic.push(cut());
        let s = env
            .stream(api, "claude-haiku-4-5", "claude-sonnet-4-5")
            .await;
        assert!(s.complete, "{api:?}: {:?}", s.error);
        assert_eq!(s.text, answer(), "{api:?}");
        let requests = env.anthropic.requests();
        let rescue = &requests[requests.len() - 1];
        let (role, prefill) = last_message(&rescue.body);
        assert_eq!(role, "assistant", "{api:?}: the partial answer as prefill");
        assert!(
            answer().starts_with(&prefill) && prefill.split(' ').count() == 40,
            "{api:?}: {prefill:?}"
        );
        assert_eq!(s.switchyard["rescues"][0]["kind"], "continuation");
    }
    assert_eq!(env.anthropic.hits(), 6);
    assert_eq!(
        env.metric(
            "switchyard_stream_rescues_total{",
            r#"kind="continuation",outcome="ok""#
        )
        .await,
        3.0
    );
}

/// Row 9 with rescue: a stream stalled mid-answer is detected within the
/// idle window and continued elsewhere; the caller gets the whole answer.
#[tokio::test]
async fn row_9_a_stream_stalled_mid_answer_is_rescued_within_the_idle_window() {
    let env = Env::start().await;
    env.openai.push(Behavior::StreamFault {
        fault: StreamFault::StallMidStream,
        text: answer(),
    });
    let started = Instant::now();
    let s = env.stream(Api::Chat, "gpt-4o-mini", "gpt-4.1").await;
    let took = started.elapsed();
    assert!(s.complete, "{:?}", s.error);
    assert_eq!(s.text, answer());
    assert!(
        took < Duration::from_secs(4),
        "idle window 1.5 s; took {took:?}"
    );
    assert_eq!(
        env.metric("switchyard_stream_interruptions_total{", "gpt-4o-mini")
            .await,
        1.0
    );
}

/// Row 14: the stream is cut and the fallback declares continuation but
/// refuses the prefill (400): the same fallback regenerates instead, and the
/// caller gets the whole answer — never the prefill's 400.
#[tokio::test]
async fn row_14_a_fallback_that_refuses_prefill_regenerates_instead() {
    let env = Env::start().await;
    env.anthropic.set_prefill(Prefill::Reject);
    for api in Api::ALL {
        env.openai.push(cut());
        let s = env.stream(api, "gpt-4o-mini", "claude-haiku-4-5").await;
        assert!(s.complete, "{api:?}: {:?}", s.error);
        assert_eq!(s.text, answer(), "{api:?}");
        let requests = env.anthropic.requests();
        let n = requests.len();
        assert_eq!(last_message(&requests[n - 2].body).0, "assistant");
        assert_eq!(last_message(&requests[n - 1].body).0, "user");
        let trail = s.switchyard["rescue_trail"].to_string();
        assert!(
            trail.contains("rescue_continuation") && trail.contains("rescue_regenerate"),
            "{api:?}: {trail}"
        );
    }
    assert_eq!(
        env.metric(
            "switchyard_stream_rescues_total{",
            r#"kind="continuation",outcome="failed""#
        )
        .await,
        3.0
    );
}

/// Row 14, no way on: the fallback refuses the prefill and its regenerated
/// answer differs from what the caller has. The stream ends with the explicit
/// error event naming the original failure, not the fallback's refusal.
#[tokio::test]
async fn row_14_when_no_candidate_can_continue_the_caller_gets_the_original_failure() {
    let env = Env::start().await;
    env.anthropic.set_prefill(Prefill::Reject);
    env.anthropic
        .set_default(Behavior::Text("A different answer altogether.".into()));
    for api in Api::ALL {
        env.openai.push(cut());
        let s = env.stream(api, "gpt-4o-mini", "claude-haiku-4-5").await;
        assert!(
            !s.complete,
            "{api:?}: never a clean-looking truncated answer"
        );
        let message = s.error_message().unwrap_or_default().to_owned();
        assert!(
            message.contains("stream broke") && !message.contains("prefill"),
            "{api:?}: {message}"
        );
        assert!(answer().starts_with(&s.text) && s.text.len() < answer().len());
    }
    // The fallback's diverging answer was generated, and is billed
    // (estimated), once per API.
    assert_eq!(
        env.metric("switchyard_estimated_usage_total{", "claude-haiku-4-5")
            .await,
        3.0
    );
}

/// A broken stream with nowhere to go is billed what it relayed (estimated,
/// and counted as such) and recorded once, as broken.
#[tokio::test]
async fn a_broken_stream_is_billed_what_it_relayed_and_recorded_once() {
    let env = Env::start().await;
    env.openai.push(cut());
    let s = env.stream(Api::Chat, "gpt-4o-mini", "gpt-4o-mini").await;
    assert!(!s.complete);
    let relayed = s.text.len() as f64;
    let output = env
        .metric(
            "switchyard_tokens_total{",
            r#"model="gpt-4o-mini",kind="output""#,
        )
        .await;
    assert_eq!(output, (relayed / 4.0).ceil(), "relayed {relayed} bytes");
    assert_eq!(
        env.metric("switchyard_estimated_usage_total{", "gpt-4o-mini")
            .await,
        1.0
    );
    assert_eq!(
        env.metric("switchyard_attempts_total{", "gpt-4o-mini")
            .await,
        1.0,
        "one attempt, recorded once"
    );
}
