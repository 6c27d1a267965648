//! Model clients against local mock servers speaking the real OpenAI chat-completions and
//! Anthropic messages wire formats.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests assert by unwrapping"
)]

use rust_decimal_macros::dec;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use triplegain::llm::chain::FnModelClient;
use triplegain::llm::{
    AnthropicClient, BreakerState, CircuitBreaker, CircuitBreakerClient, FallbackChain, JsonOutputClient,
    JsonlRecorder, MemoryRecorder, ModelRecorder, OpenAiCompatibleClient, RecordingClient, ReplayKey,
    ReplayModelClient, RetryPolicy,
};
use triplegain_actors::agents::trading_decision::{
    self as td, consensus, parse_decision, rule_based_decision, ConsensusConfig, DecisionInput, ModelVote,
};
use triplegain_actors::domain::{Symbol, TradeAction};
use triplegain_actors::ports::{ModelClient, ModelError, ModelRequest};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk-test-0123456789abcdefghijklmnopqrstuvwxyz";

fn request(model: &str, timeout_ms: u64) -> ModelRequest {
    ModelRequest {
        model: model.into(),
        system_prompt: "You are a trading agent. Answer in JSON.".into(),
        user_prompt: "## Task\nDecide.".into(),
        max_tokens: 512,
        temperature: 0.3,
        timeout_ms,
    }
}

fn fast_retry(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
    }
}

fn chat_completion(model: &str, content: &str, prompt_tokens: u32, completion_tokens: u32) -> Value {
    json!({
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1_764_000_000,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens
        },
        "system_fingerprint": "fp_test"
    })
}

fn anthropic_message(model: &str, text: &str, input_tokens: u32, output_tokens: u32) -> Value {
    json!({
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}
    })
}

fn openai(server: &MockServer) -> OpenAiCompatibleClient {
    OpenAiCompatibleClient::new("openai", format!("{}/v1", server.uri()), Some(SecretString::from(KEY)))
        .with_retry(RetryPolicy::none())
}

const BUY_JSON: &str = r#"{"action":"BUY","confidence":0.8,"entry_price":50000,"stop_loss_pct":2,"take_profit_pct":4,"position_size_pct":10,"leverage":1,"reasoning":"trend up"}"#;

#[tokio::test]
async fn openai_request_wire_format_and_response_parsing() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("content-type", "application/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_completion(
            "gpt-4o-2024-08-06",
            BUY_JSON,
            1000,
            500,
        )))
        .expect(1)
        .mount(&server)
        .await;
    let client = openai(&server);

    // Act
    let resp = client.complete(request("gpt-4o", 5_000)).await.unwrap();

    // Assert: the request body
    let received = server.received_requests().await.unwrap();
    let body: Value = received[0].body_json().unwrap();
    assert_eq!(body["model"], "gpt-4o");
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "You are a trading agent. Answer in JSON."})
    );
    assert_eq!(
        body["messages"][1],
        json!({"role": "user", "content": "## Task\nDecide."})
    );
    assert_eq!(body["max_tokens"], 512);
    assert_eq!(body["temperature"], 0.3);
    assert_eq!(body["response_format"], json!({"type": "json_object"}));
    // ... and the parsed response: gpt-4o at $2.50/M in, $10/M out
    assert_eq!(resp.provider, "openai");
    assert_eq!(resp.model, "gpt-4o-2024-08-06");
    assert_eq!(resp.text, BUY_JSON);
    assert_eq!((resp.input_tokens, resp.output_tokens), (1000, 500));
    assert_eq!(resp.cost_usd, dec!(0.0075));
    assert_eq!(
        parse_decision(&resp.text, dec!(50000)).unwrap().action,
        TradeAction::Buy
    );
}

#[tokio::test]
async fn deepseek_xai_and_ollama_share_the_wire_format() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(json!({"model": "deepseek-chat"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_completion(
            "deepseek-chat",
            "{}",
            1_000_000,
            1_000_000,
        )))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/ollama/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_completion("qwen2.5:7b", "{}", 900, 100)))
        .mount(&server)
        .await;
    let deepseek = OpenAiCompatibleClient::new(
        "deepseek",
        format!("{}/v1/", server.uri()),
        Some(SecretString::from(KEY)),
    );
    let r = deepseek.complete(request("deepseek-chat", 5_000)).await.unwrap();
    assert_eq!((r.provider.as_str(), r.cost_usd), ("deepseek", dec!(0.42)));

    let ollama = OpenAiCompatibleClient::ollama(format!("{}/ollama/v1", server.uri()));
    let r = ollama.complete(request("qwen2.5:7b", 5_000)).await.unwrap();
    assert_eq!(
        (r.provider.as_str(), r.cost_usd, r.input_tokens),
        ("ollama", dec!(0), 900)
    );
    let received = server.received_requests().await.unwrap();
    let ollama_req = received.iter().find(|r| r.url.path().starts_with("/ollama")).unwrap();
    assert!(
        ollama_req.headers.get("authorization").is_none(),
        "keyless endpoint sends no Authorization"
    );

    // xAI without a key never reaches the network
    let xai = OpenAiCompatibleClient::xai(None);
    assert!(!xai.is_configured());
    assert!(matches!(
        xai.complete(request("grok-2-1212", 5_000)).await,
        Err(ModelError::NotConfigured(_))
    ));
}

#[tokio::test]
async fn anthropic_request_wire_format_and_response_parsing() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", KEY))
        .and(header("anthropic-version", "2023-06-01"))
        .respond_with(ResponseTemplate::new(200).set_body_json(anthropic_message(
            "claude-3-5-sonnet-20241022",
            &format!("Here is my decision:\n```json\n{BUY_JSON}\n```"),
            2000,
            300,
        )))
        .expect(1)
        .mount(&server)
        .await;
    let client = AnthropicClient::new(server.uri(), Some(SecretString::from(KEY))).with_retry(RetryPolicy::none());

    let resp = client
        .complete(request("claude-3-5-sonnet-20241022", 5_000))
        .await
        .unwrap();

    let received = server.received_requests().await.unwrap();
    let body: Value = received[0].body_json().unwrap();
    assert_eq!(body["model"], "claude-3-5-sonnet-20241022");
    assert_eq!(body["max_tokens"], 512);
    assert_eq!(body["system"], "You are a trading agent. Answer in JSON.");
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": "## Task\nDecide."}])
    );
    assert!(received[0].headers.get("authorization").is_none());
    assert_eq!(resp.provider, "anthropic");
    assert_eq!((resp.input_tokens, resp.output_tokens), (2000, 300));
    // $3/M in, $15/M out: 0.006 + 0.0045
    assert_eq!(resp.cost_usd, dec!(0.0105));
    // the fenced answer still parses into a validated decision
    assert_eq!(
        parse_decision(&resp.text, dec!(50000)).unwrap().stop_loss_pct,
        Some(dec!(2))
    );
}

#[tokio::test]
async fn error_statuses_map_to_model_errors() {
    // (status, body, expected class)
    type Case = (u16, &'static str, fn(&ModelError) -> bool);
    let cases: [Case; 6] = [
        (
            429,
            r#"{"error":{"message":"Rate limit reached","type":"requests"}}"#,
            |e| matches!(e, ModelError::RateLimited(_)),
        ),
        (500, r#"{"error":{"message":"server error"}}"#, |e| {
            matches!(e, ModelError::Provider(_))
        }),
        (503, "upstream unavailable", |e| matches!(e, ModelError::Provider(_))),
        (529, r#"{"type":"error","error":{"type":"overloaded_error"}}"#, |e| {
            matches!(e, ModelError::RateLimited(_))
        }),
        (
            401,
            r#"{"error":{"message":"Incorrect API key provided: sk-test-0123456789abcdefghijklmnopqrstuvwxyz"}}"#,
            |e| matches!(e, ModelError::NotConfigured(_)),
        ),
        (
            400,
            r#"{"error":{"message":"bad request"}}"#,
            |e| matches!(e, ModelError::Provider(m) if m.contains("rejected")),
        ),
    ];
    for (status, body, expected) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_string(body))
            .mount(&server)
            .await;
        let oa = openai(&server).complete(request("gpt-4o", 5_000)).await.unwrap_err();
        assert!(expected(&oa), "openai {status}: {oa:?}");
        assert!(!oa.to_string().contains(KEY), "key leaked in {oa}");
        let an = AnthropicClient::new(server.uri(), Some(SecretString::from(KEY)))
            .with_retry(RetryPolicy::none())
            .complete(request("claude-3-opus-20240229", 5_000))
            .await
            .unwrap_err();
        assert!(expected(&an), "anthropic {status}: {an:?}");
        assert!(!an.to_string().contains(KEY), "key leaked in {an}");
    }
    assert!(!format!("{:?}", OpenAiCompatibleClient::openai(Some(SecretString::from(KEY)))).contains(KEY));
}

#[tokio::test]
async fn slow_answer_maps_to_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(chat_completion("gpt-4o", BUY_JSON, 1, 1))
                .set_delay(Duration::from_millis(1_500)),
        )
        .mount(&server)
        .await;
    let started = std::time::Instant::now();
    let err = openai(&server).complete(request("gpt-4o", 200)).await.unwrap_err();
    assert_eq!(err, ModelError::Timeout(200));
    assert!(
        started.elapsed() < Duration::from_millis(1_200),
        "the call did not wait for the slow answer"
    );
}

#[tokio::test]
async fn rate_limited_then_success_is_retried_with_backoff() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_completion("gpt-4o", BUY_JSON, 10, 10)))
        .expect(1)
        .mount(&server)
        .await;
    let client = openai(&server).with_retry(fast_retry(2));
    let resp = client.complete(request("gpt-4o", 5_000)).await.unwrap();
    assert_eq!(resp.text, BUY_JSON);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times_but_4xx_never() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let err = openai(&server)
        .with_retry(fast_retry(2))
        .complete(request("gpt-4o", 5_000))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ModelError::Provider(ref m) if m.contains("502")),
        "{err:?}"
    );
    let err = AnthropicClient::new(server.uri(), Some(SecretString::from(KEY)))
        .with_retry(fast_retry(2))
        .complete(request("claude-3-haiku", 5_000))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ModelError::Provider(ref m) if m.contains("404")),
        "{err:?}"
    );
    let received = server.received_requests().await.unwrap();
    assert_eq!(
        received
            .iter()
            .filter(|r| r.url.path() == "/v1/chat/completions")
            .count(),
        3,
        "1 try + 2 retries"
    );
    assert_eq!(
        received.iter().filter(|r| r.url.path() == "/v1/messages").count(),
        1,
        "no retry on 404"
    );
}

#[tokio::test]
async fn fallback_chain_tries_in_order_and_ends_with_the_rule_based_model() {
    // Arrange: a 500ing provider, one answering prose without JSON, then a good one
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/a/chat/completions"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/b/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_completion("m-b", "I think BUY is right.", 5, 5)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/c/chat/completions"))
        .and(body_partial_json(json!({"model": "m-c"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_completion("m-c", BUY_JSON, 5, 5)))
        .expect(1)
        .mount(&server)
        .await;
    let mk = |p: &str| -> Arc<dyn ModelClient> {
        Arc::new(JsonOutputClient::new(Arc::new(
            OpenAiCompatibleClient::new(p, format!("{}/{p}", server.uri()), Some(SecretString::from(KEY)))
                .with_retry(RetryPolicy::none()),
        )))
    };
    let chain = FallbackChain::new()
        .then(mk("a"), "m-a", 2_000)
        .then(mk("b"), "m-b", 2_000)
        .then(mk("c"), "m-c", 2_000);

    // Act
    let run = chain.run(request("ignored", 1)).await;

    // Assert
    let resp = run.outcome.unwrap();
    assert_eq!(resp.provider, "c");
    let failed: Vec<&str> = run.failures.iter().map(|f| f.provider.as_str()).collect();
    assert_eq!(failed, vec!["a", "b"]);
    assert!(matches!(run.failures[0].error, ModelError::Provider(_)));
    assert!(matches!(run.failures[1].error, ModelError::BadOutput(_)));

    // Every provider failing: the chain's last link is the deterministic rule-based model.
    let input = DecisionInput::new(Symbol::parse("BTC/USDT").unwrap(), dec!(50000), None, None, None, None);
    let rule_input = input.clone();
    let rule_based: Arc<dyn ModelClient> = Arc::new(FnModelClient::new("rule-based", move |_| {
        Ok(rule_based_decision(&rule_input).to_json().to_string())
    }));
    let all_down = FallbackChain::new()
        .then(mk("a"), "m-a", 2_000)
        .then(rule_based, "rule-based", 1_000);
    let resp = all_down
        .complete(td::build_request(&input, "x", 512, 0.3, 1_000))
        .await
        .unwrap();
    assert_eq!(resp.provider, "rule-based");
    let d = parse_decision(&resp.text, dec!(50000)).unwrap();
    assert_eq!((d.action, d.confidence), (TradeAction::Hold, 0.0));

    // A fully failing chain is an error the agent turns into its rule-based output.
    let err = FallbackChain::new()
        .then(mk("a"), "m-a", 2_000)
        .complete(request("x", 1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("every model failed"), "{err}");
}

#[tokio::test]
async fn breaker_opens_after_repeated_500s_and_the_chain_moves_on() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/bad/chat/completions"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/good/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_completion("g", BUY_JSON, 1, 1)))
        .mount(&server)
        .await;
    let bad = CircuitBreakerClient::new(
        Arc::new(
            OpenAiCompatibleClient::new("bad", format!("{}/bad", server.uri()), Some(SecretString::from(KEY)))
                .with_retry(RetryPolicy::none()),
        ),
        CircuitBreaker::new(3, Duration::from_secs(300), 3),
    );
    let good: Arc<dyn ModelClient> = Arc::new(OpenAiCompatibleClient::new(
        "good",
        format!("{}/good", server.uri()),
        Some(SecretString::from(KEY)),
    ));
    let chain = FallbackChain::new()
        .then(Arc::new(bad.clone()), "b", 2_000)
        .then(good, "g", 2_000);
    for _ in 0..5 {
        let run = chain.run(request("x", 1)).await;
        assert_eq!(run.outcome.unwrap().provider, "good");
    }
    assert_eq!(bad.state(), BreakerState::Open);
    let received = server.received_requests().await.unwrap();
    assert_eq!(
        received.iter().filter(|r| r.url.path().starts_with("/bad")).count(),
        3,
        "after 3 failures the open breaker stops calling the provider"
    );
    let err = bad.complete(request("x", 1000)).await.unwrap_err();
    assert!(err.to_string().contains("circuit breaker open"));
}

#[tokio::test]
async fn recorded_answers_replay_and_a_missing_entry_names_its_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "gpt-4o"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_completion("gpt-4o", BUY_JSON, 7, 3)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "gpt-4-turbo"})))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&server)
        .await;
    let recorder = MemoryRecorder::new();
    let path = std::env::temp_dir().join(format!("llm-replay-{}.jsonl", uuid::Uuid::new_v4()));
    let file = JsonlRecorder::open(&path).unwrap();
    struct Both(MemoryRecorder, JsonlRecorder);
    impl ModelRecorder for Both {
        fn record(&self, a: triplegain::llm::RecordedAnswer) {
            self.0.record(a.clone());
            self.1.record(a);
        }
    }
    let live = RecordingClient::new(
        Arc::new(openai(&server)),
        "trading_decision",
        Arc::new(Both(recorder.clone(), file)),
    );
    let req = request("gpt-4o", 5_000);
    let live_answer = live.complete(req.clone()).await.unwrap();
    let failing_req = request("gpt-4-turbo", 5_000);
    let live_error = live.complete(failing_req.clone()).await.unwrap_err();

    let answers = recorder.answers();
    assert_eq!(answers.len(), 2, "answers and failures are both recorded");
    assert_eq!(answers[0].key, ReplayKey::for_request("trading_decision", &req));
    assert_eq!(answers[0].key.prompt_hash.len(), 64);

    // Replay from memory and from the file: same outcomes, no network call (each mock expects 1).
    for replay in [
        ReplayModelClient::new("trading_decision", answers.clone()),
        ReplayModelClient::load_jsonl("trading_decision", &path).unwrap(),
    ] {
        assert_eq!(replay.complete(req.clone()).await.unwrap(), live_answer);
        assert_eq!(
            replay.complete(failing_req.clone()).await.unwrap_err(),
            live_error,
            "a recorded failure replays as the same failure"
        );
        let mut other = req.clone();
        other.user_prompt.push_str(" (changed)");
        let key = ReplayKey::for_request("trading_decision", &other);
        match replay.complete(other).await {
            Err(ModelError::NotConfigured(m)) => {
                assert_eq!(
                    m,
                    format!("missing replay entry trading_decision/gpt-4o/{}", key.prompt_hash)
                )
            }
            other => panic!("expected a missing replay entry, got {other:?}"),
        }
    }
    // another agent's record is not this agent's answer
    let replay = ReplayModelClient::new("sentiment", answers);
    assert!(matches!(replay.complete(req).await, Err(ModelError::NotConfigured(_))));
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn six_models_in_parallel_reach_a_majority_consensus() {
    // 4 BUY, 1 HOLD, 1 timing out: 4 of 5 valid = 80 % → majority (≥ 2/3, < 5/6)
    let server = MockServer::start().await;
    let hold = r#"{"action":"HOLD","confidence":0.5,"reasoning":"unclear"}"#;
    for (model, content, delay) in [
        ("m1", BUY_JSON, 0),
        ("m2", BUY_JSON, 0),
        ("m3", BUY_JSON, 0),
        ("m4", BUY_JSON, 0),
        ("m5", hold, 0),
        ("m6", BUY_JSON, 2_000),
    ] {
        Mock::given(method("POST"))
            .and(body_partial_json(json!({"model": model})))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(chat_completion(model, content, 100, 50))
                    .set_delay(Duration::from_millis(delay)),
            )
            .mount(&server)
            .await;
    }
    let client = openai(&server);
    let calls = (1..=6).map(|i| {
        let c = client.clone();
        async move {
            let model = format!("m{i}");
            let res = c.complete(request(&model, 300)).await;
            ModelVote::from_call(&model, "openai", res, dec!(50000))
        }
    });
    let votes = futures::future::join_all(calls).await;
    let d = consensus(votes, &ConsensusConfig::default());
    assert_eq!(d.action, TradeAction::Buy);
    assert_eq!((d.valid_models, d.total_models), (5, 6));
    assert_eq!(d.agreement, td::AgreementType::Majority);
    assert!(
        (d.confidence - 0.85).abs() < 1e-9,
        "0.8 mean + 0.05 majority boost, got {}",
        d.confidence
    );
    assert!(d
        .model_votes
        .iter()
        .any(|v| v.model == "m6" && v.decision.as_ref().is_err_and(|e| e.contains("timed out"))));
}

/// Unusable answers served over real HTTP are refused, each naming what is wrong.
#[tokio::test]
async fn malformed_incomplete_and_out_of_range_answers_are_refused_naming_the_field() {
    // Table: (model answer, text the error must contain)
    let cases = [
        (r#"{"action":"BUY","confidence":0.8,"#, "json"),
        (r#"{"confidence":0.8,"reasoning":"no action given"}"#, "action"),
        (
            r#"{"action":"BUY","confidence":1.7,"reasoning":"too sure"}"#,
            "confidence",
        ),
        (
            r#"{"action":"BUY","confidence":0.8,"leverage":40,"reasoning":"too much"}"#,
            "leverage",
        ),
        (
            r#"{"action":"SHORT","confidence":0.8,"reasoning":"unknown verb"}"#,
            "action",
        ),
    ];
    for (answer, needle) in cases {
        // Arrange: a provider that answers with `answer`.
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(ResponseTemplate::new(200).set_body_json(chat_completion("gpt-4o", answer, 10, 10)))
            .mount(&server)
            .await;
        // Act
        let response = openai(&server).complete(request("gpt-4o", 2_000)).await.unwrap();
        let parsed = triplegain::llm::json::parse_decision(&response.text, dec!(50000));
        // Assert
        match parsed {
            Err(ModelError::BadOutput(msg)) => {
                assert!(
                    msg.to_lowercase().contains(needle),
                    "{answer}: error {msg:?} should name {needle}"
                )
            }
            other => panic!("{answer}: expected BadOutput, got {other:?}"),
        }
    }
}
