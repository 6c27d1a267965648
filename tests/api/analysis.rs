//! Market data and analysis agents through the running app: `GET /api/v1/agents/{name}/latest`
//! after a replay warmed the market, and model answers in `model_comparisons`.

use crate::helpers::{spawn_app_with, TestApp, VIEWER};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use triplegain::settings::{MarketSource, Secret};
use triplegain_actors::agents::api::{AgentName, AgentRun, RunAnalysis};
use triplegain_actors::domain::{CorrelationId, Symbol};
use triplegain_actors::market::GetSnapshot;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CANDLES: usize = 60;

/// 60 hourly BTC/USDT candles in the header CSV format, in a fresh temp dir.
fn replay_file() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tg-replay-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = String::from("timestamp,open,high,low,close,volume\n");
    let mut prev = 90_000.0_f64;
    for i in 0..CANDLES {
        let x = i as f64;
        let close = 90_000.0 * (0.003 * x + 0.01 * (x * 0.7).sin()).exp();
        text.push_str(&format!(
            "{},{prev:.2},{:.2},{:.2},{close:.2},{:.4}\n",
            1_767_225_600 + i * 3600,
            prev.max(close) * 1.002,
            prev.min(close) * 0.998,
            10.0 + (i % 7) as f64
        ));
        prev = close;
    }
    let file = dir.join("btc.csv");
    std::fs::write(&file, text).unwrap();
    file
}

async fn replay_app(tweak: impl FnOnce(&mut triplegain::settings::Settings)) -> TestApp {
    let file = replay_file();
    let app = spawn_app_with(move |s| {
        s.market.source = MarketSource::Replay;
        s.market.replay_files = vec![format!("BTC/USDT={}", file.display())];
        crate::helpers::no_schedules(s);
        tweak(s);
    })
    .await;
    // Wait until the replay is consumed.
    let btc = Symbol::parse("BTC/USDT").unwrap();
    for _ in 0..200 {
        let view = app
            .state
            .market
            .send(GetSnapshot {
                symbol: btc.clone(),
                timeframe: None,
            })
            .await
            .unwrap()
            .unwrap();
        if view.is_some_and(|v| v.candles_applied == CANDLES as u64) {
            return app;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the replay was not consumed");
}

async fn run_agent(app: &TestApp, agent: AgentName) -> AgentRun {
    app.state.agents[&agent]
        .send(RunAnalysis {
            symbol: Symbol::parse("BTC/USDT").unwrap(),
            correlation_id: CorrelationId::new(),
        })
        .await
        .unwrap()
        .unwrap()
}

#[actix_web::test]
async fn latest_output_appears_after_an_agent_ran() {
    // Arrange
    let app = replay_app(|_| {}).await;
    let url = "/api/v1/agents/technical_analysis/latest?symbol=BTC/USDT";
    assert_eq!(app.get(url, Some(VIEWER)).await.status(), 404, "no output yet");

    // Act
    let run = run_agent(&app, AgentName::TechnicalAnalysis).await;
    let res = app.get(url, Some(VIEWER)).await;

    // Assert
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["agent"], "technical_analysis");
    assert_eq!(body["symbol"], "BTC/USDT");
    assert_eq!(body["correlation_id"], json!(run.correlation_id));
    // JSONB may print the last digit of a float differently: compare the non-float fields.
    for k in [
        "symbol",
        "timestamp",
        "bias",
        "primary_signal",
        "rsi_signal",
        "macd_signal",
        "reasoning",
    ] {
        assert_eq!(body["output"][k], run.output[k], "{k}");
    }
    assert_eq!(body["output"]["timeframe"], "1h");
    // The short form names the same agent; the row is in PostgreSQL.
    let short: Value = app
        .get("/api/v1/agents/ta/latest?symbol=BTC/USDT", Some(VIEWER))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(short, body);
    let client = app.pool.as_ref().unwrap().get().await.unwrap();
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM agent_outputs WHERE agent = 'technical_analysis' AND symbol = 'BTC/USDT'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);

    // The regime agent sees the TA output and is stored under its own name.
    let regime = run_agent(&app, AgentName::RegimeDetection).await;
    let res = app
        .get("/api/v1/agents/regime/latest?symbol=BTC/USDT", Some(VIEWER))
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["output"]["regime"], regime.output["regime"]);
    app.shutdown().await;
}

#[actix_web::test]
async fn bad_agent_or_symbol_is_a_400_naming_the_field() {
    // Arrange
    let app = replay_app(|_| {}).await;
    let cases = [
        ("/api/v1/agents/bogus/latest?symbol=BTC/USDT", "name"),
        ("/api/v1/agents/ta/latest", "symbol"),
        ("/api/v1/agents/ta/latest?symbol=not-a-symbol", "symbol"),
        ("/api/v1/agents/ta/latest?symbol=XRP/USDT", "symbol"),
    ];
    for (url, field) in cases {
        // Act
        let res = app.get(url, Some(VIEWER)).await;

        // Assert
        assert_eq!(res.status(), 400, "{url}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["field"], field, "{url}: {body}");
    }
    assert_eq!(
        app.get("/api/v1/agents/ta/latest?symbol=BTC/USDT", None).await.status(),
        401
    );
    app.shutdown().await;
}

#[actix_web::test]
async fn model_answers_are_stored_in_model_comparisons() {
    // Arrange: only OpenAI has a key; its endpoint is a local mock.
    let server = MockServer::start().await;
    let answer = json!({
        "action": "SELL", "confidence": 0.7, "stop_loss_pct": 2.5, "take_profit_pct": 5,
        "position_size_pct": 5, "leverage": 1, "reasoning": "momentum fading below resistance"
    });
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "c1", "model": "gpt-4-turbo",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.to_string()}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 50}
        })))
        .mount(&server)
        .await;
    let uri = server.uri();
    let app = replay_app(move |s| {
        let openai = s.llm.providers.get_mut("openai").unwrap();
        openai.base_url = format!("{uri}/v1");
        openai.api_key = Some(Secret::new("sk-test-0123456789"));
    })
    .await;

    // Act
    let run = run_agent(&app, AgentName::TradingDecision).await;

    // Assert: the model votes in the panel beside the four strategies; without TA and regime
    // every strategy holds, so the panel holds (4 of 5), and all five answers are stored.
    assert!(!run.llm_failed);
    assert_eq!(run.output["action"], "HOLD", "{}", run.output);
    assert_eq!(run.output["total_models"], 5);
    let client = app.pool.as_ref().unwrap().get().await.unwrap();
    let rows = client
        .query(
            "SELECT agent, model, provider, action, prompt_hash, correlation_id, input_tokens FROM model_comparisons \
             ORDER BY model",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 5);
    let r = &rows[0];
    assert_eq!(
        (r.get::<_, String>(0), r.get::<_, String>(1), r.get::<_, String>(2)),
        ("trading_decision".into(), "gpt-4-turbo".into(), "openai".into())
    );
    assert_eq!(r.get::<_, Option<String>>(3).as_deref(), Some("SELL"));
    assert_eq!(r.get::<_, String>(4).len(), 64);
    assert_eq!(r.get::<_, Option<uuid::Uuid>>(5), Some(run.correlation_id.0));
    assert_eq!(r.get::<_, Option<i32>>(6), Some(1000));
    for r in &rows[1..] {
        assert!(r.get::<_, String>(1).starts_with("rule:"));
        assert_eq!(r.get::<_, String>(2), "rule");
        assert_eq!(r.get::<_, Option<String>>(3).as_deref(), Some("HOLD"));
        assert_eq!(r.get::<_, Option<uuid::Uuid>>(5), Some(run.correlation_id.0));
        assert_eq!(
            r.get::<_, String>(4),
            rows[0].get::<_, String>(4),
            "one prompt hash per decision"
        );
    }
    let latest: Value = app
        .get("/api/v1/agents/trading_decision/latest?symbol=BTC/USDT", Some(VIEWER))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(latest["output"]["action"], "HOLD");
    app.shutdown().await;
}
