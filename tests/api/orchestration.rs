//! Coordinator status and task control, risk state and reset, decision trail.

use crate::helpers::{spawn_app, spawn_app_with, spawn_with_settings, test_settings, ADMIN, OPERATOR, VIEWER};
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use triplegain_actors::domain::{Symbol, TradeAction};
use triplegain_actors::messages::{EventMeta, PortfolioUpdate, TradingSignal};
use triplegain_actors::risk::DrawdownBasis;

#[actix_web::test]
async fn status_lists_the_real_tasks() {
    let app = spawn_app().await;
    let r = app.get("/api/v1/coordinator/status", Some(VIEWER)).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["state"], "running");
    assert_eq!(body["degradation_level"], "NORMAL");
    let names: Vec<&str> = body["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "ta_analysis",
            "regime_detection",
            "sentiment_analysis",
            "trading_decision",
            "portfolio_check"
        ]
    );
    assert!(body["tasks"][1]["next_run"].is_string(), "{body}");
    app.shutdown().await;
}

#[actix_web::test]
async fn task_commands_by_role_and_name() {
    let app = spawn_app().await;
    // (token, path, expected status)
    let cases = [
        (VIEWER, "/api/v1/coordinator/task/ta_analysis/disable", 403),
        (OPERATOR, "/api/v1/coordinator/task/ta/disable", 404),
        (OPERATOR, "/api/v1/coordinator/task/ta_analysis/explode", 404),
        (OPERATOR, "/api/v1/coordinator/task/sentiment_analysis/disable", 200),
        (OPERATOR, "/api/v1/coordinator/task/regime_detection/run", 200),
        (ADMIN, "/api/v1/coordinator/task/sentiment_analysis/enable", 200),
    ];
    for (token, path, want) in cases {
        let r = app.post(path, Some(token), None).await;
        assert_eq!(r.status().as_u16(), want, "{path}: {}", r.text().await.unwrap());
    }
    let body: Value = app
        .post(
            "/api/v1/coordinator/task/sentiment_analysis/disable",
            Some(OPERATOR),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["enabled"], false);
    let status: Value = app
        .get("/api/v1/coordinator/status", Some(VIEWER))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["tasks"][2]["enabled"], false);
    // Every control action is audited.
    let pool = app.pool.as_ref().unwrap();
    let client = pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT count(*) FROM api_audit_log WHERE route LIKE '/api/v1/coordinator/task%'",
            &[],
        )
        .await
        .unwrap();
    let n: i64 = row.get(0);
    assert!(n >= 6, "{n} audited");
    app.shutdown().await;
}

#[actix_web::test]
async fn risk_state_and_reset() {
    let app = spawn_app().await;
    let r = app.get("/api/v1/risk/state", Some(VIEWER)).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["halted"], false);
    let cases = [
        (OPERATOR, json!({"scope": "drawdown"}), 403),
        (ADMIN, json!({"scope": "everything"}), 422),
        (ADMIN, json!({"scope": "cooldown"}), 200),
        (ADMIN, json!({"scope": "all"}), 200),
    ];
    for (token, body, want) in cases {
        let r = app.post("/api/v1/risk/reset", Some(token), Some(body.clone())).await;
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, want, "{body}: {text}");
        if want == 422 {
            assert!(text.contains("scope"), "{text}");
        }
    }
    app.shutdown().await;
}

#[actix_web::test]
async fn decision_chain_is_queryable() {
    let app = spawn_app().await;
    let r = app.get("/api/v1/decisions/not-a-uuid", Some(VIEWER)).await;
    assert_eq!(r.status(), 400);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["field"], "correlation_id", "{err}");

    // A BUY on the bus: the chain runs through consensus and the risk verdict.
    let now = app.state.clock.now();
    app.state.bus.portfolio_updates.publish(valuation(now, dec!(10000)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let signal = TradingSignal {
        meta: EventMeta::new("trading_decision", now),
        symbol: Symbol::parse("BTC/USDT").unwrap(),
        action: TradeAction::Buy,
        confidence: 0.8,
        entry_price: Some(dec!(50000)),
        stop_loss_pct: Some(dec!(2)),
        take_profit_pct: Some(dec!(4)),
        position_size_pct: Some(dec!(10)),
        leverage: 1,
        reasoning: "test".into(),
    };
    let cid = signal.meta.correlation_id.0;
    app.state.bus.trading_signals.publish(signal);
    let mut stages: Vec<String> = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let body: Value = app
            .get(&format!("/api/v1/decisions/{cid}"), Some(VIEWER))
            .await
            .json()
            .await
            .unwrap();
        stages = body["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["stage"].as_str().unwrap().to_owned())
            .collect();
        if stages.iter().any(|s| s == "execution_requested") {
            break;
        }
    }
    assert_eq!(
        &stages[..4],
        ["signal", "consensus", "proposal", "risk_verdict"],
        "{stages:?}"
    );
    let recent: Value = app
        .get("/api/v1/decisions?symbol=BTC/USDT&limit=10", Some(VIEWER))
        .await
        .json()
        .await
        .unwrap();
    assert!(recent
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["correlation_id"] == cid.to_string()));
    assert!(!recent.as_array().unwrap().is_empty());
    let r = app.get("/api/v1/decisions?limit=0", Some(VIEWER)).await;
    assert_eq!(r.status(), 422);
    app.shutdown().await;
}

#[actix_web::test]
async fn paused_state_and_task_switches_survive_a_restart() {
    let first = spawn_app().await;
    let r = first.post("/api/v1/coordinator/pause", Some(OPERATOR), None).await;
    assert_eq!(r.status(), 200);
    let r = first
        .post("/api/v1/coordinator/task/portfolio_check/disable", Some(OPERATOR), None)
        .await;
    assert_eq!(r.status(), 200);
    let mut first = first;
    let db = first.db.take().unwrap();
    first.shutdown().await;

    let mut settings = test_settings();
    settings.database.url = Some(triplegain::settings::Secret::new(db.url.clone()));
    let second = spawn_with_settings(settings).await;
    let status: Value = second
        .get("/api/v1/coordinator/status", Some(VIEWER))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["state"], "paused", "{status}");
    assert_eq!(status["tasks"][4]["enabled"], false, "{status}");
    second.shutdown().await;
    drop(db);
}

#[actix_web::test]
async fn drawdown_breaker_halts_and_admin_resume_needs_a_risk_reset() {
    // The valuation drives the breaker only on the account basis.
    let app = spawn_app_with(|s| s.risk.drawdown_basis = DrawdownBasis::Account).await;
    let now = app.state.clock.now();
    let update = |equity| valuation(now, equity);
    app.state.bus.portfolio_updates.publish(update(dec!(10000)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // 25 % drawdown: the risk engine trips max_drawdown, the coordinator halts.
    app.state.bus.portfolio_updates.publish(update(dec!(7500)));
    let mut state = Value::Null;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s: Value = app
            .get("/api/v1/coordinator/status", Some(VIEWER))
            .await
            .json()
            .await
            .unwrap();
        state = s["state"].clone();
        if state == "halted" {
            break;
        }
    }
    assert_eq!(state, "halted");
    let r = app.post("/api/v1/coordinator/admin-resume", Some(ADMIN), None).await;
    assert_eq!(r.status(), 409, "{}", r.text().await.unwrap());
    let r = app
        .post("/api/v1/risk/reset", Some(ADMIN), Some(json!({"scope": "all"})))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = app.post("/api/v1/coordinator/admin-resume", Some(ADMIN), None).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    app.shutdown().await;
}

#[actix_web::test]
async fn holdings_falling_with_the_market_do_not_halt_on_the_default_trading_basis() {
    let app = spawn_app().await;
    let now = app.state.clock.now();
    for equity in [dec!(10000), dec!(7500)] {
        app.state.bus.portfolio_updates.publish(valuation(now, equity));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pct = |v: &Value, key: &str| {
        v["state"][key]
            .as_str()
            .and_then(|s| s.parse::<rust_decimal::Decimal>().ok())
    };
    let mut risk = Value::Null;
    for _ in 0..50 {
        risk = app.get("/api/v1/risk/state", Some(VIEWER)).await.json().await.unwrap();
        if pct(&risk, "account_drawdown_pct") == Some(dec!(25)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pct(&risk, "account_drawdown_pct"), Some(dec!(25)), "{risk}");
    assert_eq!(pct(&risk, "drawdown_pct"), Some(dec!(0)), "{risk}");
    assert_eq!(risk["state"]["breakers"], json!([]), "{risk}");
    assert_eq!(risk["limits"]["drawdown_basis"], json!("trading"), "{risk}");
    let status = coordinator_status(&app).await;
    assert_ne!(status["state"], "halted", "{status}");
    app.shutdown().await;
}

/// The execution manager's valuation of an account worth `equity` (peak 10 000).
fn valuation(now: chrono::DateTime<chrono::Utc>, equity: rust_decimal::Decimal) -> PortfolioUpdate {
    PortfolioUpdate {
        meta: EventMeta::new("test", now),
        equity_usd: equity,
        peak_equity_usd: dec!(10000),
        drawdown_pct: dec!(0),
        open_exposure_usd: dec!(0),
        exposure_by_symbol: BTreeMap::new(),
        balances: BTreeMap::new(),
        allocation_pct: BTreeMap::new(),
        position_footprint: BTreeMap::new(),
    }
}

pub(crate) async fn coordinator_status(app: &crate::helpers::TestApp) -> Value {
    app.get("/api/v1/coordinator/status", Some(VIEWER))
        .await
        .json()
        .await
        .unwrap()
}

#[actix_web::test]
async fn halted_state_task_clocks_and_breakers_survive_a_restart() {
    // Arrange: TA has run once (its clock is set), a 25 % drawdown trips the breaker and halts.
    let first = spawn_app_with(|s| s.risk.drawdown_basis = DrawdownBasis::Account).await;
    let mut before = Value::Null;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        before = coordinator_status(&first).await;
        if before["tasks"][0]["last_run"].is_string() {
            break;
        }
    }
    assert!(before["tasks"][0]["last_run"].is_string(), "{before}");
    let now = first.state.clock.now();
    for equity in [dec!(10000), dec!(7500)] {
        first.state.bus.portfolio_updates.publish(valuation(now, equity));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..50 {
        before = coordinator_status(&first).await;
        if before["state"] == "halted" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(before["state"], "halted", "{before}");
    let risk_before: Value = first
        .get("/api/v1/risk/state", Some(VIEWER))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        risk_before["state"]["breakers"],
        json!(["max_drawdown"]),
        "{risk_before}"
    );

    // Act: stop the process, start a new one on the same database.
    let mut first = first;
    let db = first.db.take().unwrap();
    first.shutdown().await;
    let mut settings = test_settings();
    settings.database.url = Some(triplegain::settings::Secret::new(db.url.clone()));
    settings.risk.drawdown_basis = DrawdownBasis::Account;
    let second = spawn_with_settings(settings).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Assert: still HALTED for the same reason, the same task clocks (nothing ran while halted),
    // the same risk state with its breaker, and resuming still needs the breaker cleared.
    let after = coordinator_status(&second).await;
    assert_eq!(after["state"], "halted", "{after}");
    assert_eq!(after["halt_reason"], before["halt_reason"]);
    for i in 0..5 {
        assert_eq!(
            after["tasks"][i]["last_run"], before["tasks"][i]["last_run"],
            "task {i}: {after}"
        );
        assert_eq!(after["tasks"][i]["enabled"], before["tasks"][i]["enabled"], "task {i}");
    }
    let risk_after: Value = second
        .get("/api/v1/risk/state", Some(VIEWER))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(risk_after["halted"], true);
    assert_eq!(risk_after["state"]["breakers"], risk_before["state"]["breakers"]);
    assert_eq!(
        risk_after["state"]["peak_equity_usd"],
        risk_before["state"]["peak_equity_usd"]
    );
    let r = second.post("/api/v1/coordinator/admin-resume", Some(ADMIN), None).await;
    assert_eq!(r.status(), 409);
    second.shutdown().await;
    drop(db);
}

const DEEPSEEK_KEY: &str = "sk-deepseek-0123456789abcdefghijklmnop";

fn chat_completion(content: &str) -> Value {
    json!({
        "id": "chatcmpl-sim", "object": "chat.completion", "created": 1_764_000_000, "model": "deepseek-chat",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 900, "completion_tokens": 80, "total_tokens": 980}
    })
}

#[actix_web::test]
async fn a_trade_on_the_simulated_market_has_a_complete_decision_chain() {
    use wiremock::matchers::{body_string_contains, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    // Arrange: DeepSeek (a mock speaking its wire format) decides BUY and, asked about a
    // conflict, proceeds. Everything else is real: simulated market, agents, coordinator, risk
    // engine, paper exchange, execution manager, PostgreSQL.
    let llm = MockServer::start().await;
    let proceed = r#"{"action":"proceed","confidence":0.8,"reasoning":"TA and regime outweigh the rest"}"#;
    let buy = r#"{"action":"BUY","confidence":0.95,"stop_loss_pct":2,"take_profit_pct":4,"position_size_pct":5,"leverage":1,"reasoning":"momentum"}"#;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {DEEPSEEK_KEY}").as_str()))
        .and(body_string_contains("Resolve the conflict"))
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_completion(proceed)))
        .with_priority(1)
        .mount(&llm)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {DEEPSEEK_KEY}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_completion(buy)))
        .with_priority(2)
        .mount(&llm)
        .await;
    let base = format!("{}/v1", llm.uri());
    let app = spawn_app_with(move |s| {
        s.market.source = triplegain::settings::MarketSource::Simulated;
        s.market.simulated.speed = 300;
        s.market.symbols = vec!["BTC/USDT".into()];
        s.orchestration.symbols = vec!["BTC/USDT".into()];
        let ds = s.llm.providers.get_mut("deepseek").unwrap();
        ds.base_url = base;
        ds.api_key = Some(triplegain::settings::Secret::new(DEEPSEEK_KEY));
        s.agents.trading_decision.models = vec![triplegain::settings::AgentModelSettings {
            name: "deepseek".into(),
            provider: "deepseek".into(),
            model: "deepseek-chat".into(),
        }];
    })
    .await;

    // Act: once the market is warm (a regime is known), the operator runs the decision now
    // instead of waiting for its hourly schedule; then the order fills on the simulated market.
    let mut cid: Option<String> = None;
    let mut asked = false;
    for _ in 0..240 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !asked && app.state.analysis_caches.regime.get("BTC/USDT").is_some() {
            let r = app
                .post("/api/v1/coordinator/tasks/trading_decision/run", Some(OPERATOR), None)
                .await;
            assert_eq!(r.status(), 200);
            asked = true;
        }
        let recent: Value = app
            .get("/api/v1/decisions?symbol=BTC/USDT&limit=500", Some(VIEWER))
            .await
            .json()
            .await
            .unwrap();
        cid =
            recent.as_array().unwrap().iter().find_map(|r| {
                (r["stage"] == "position_opened").then(|| r["correlation_id"].as_str().unwrap().to_owned())
            });
        if cid.is_some() {
            break;
        }
    }
    let recent: Value = app
        .get("/api/v1/decisions?limit=500", Some(VIEWER))
        .await
        .json()
        .await
        .unwrap();
    let cid = cid.unwrap_or_else(|| panic!("no position opened; trail: {recent:#}"));

    // Assert: the whole chain under one correlation id, in order.
    let body: Value = app
        .get(&format!("/api/v1/decisions/{cid}"), Some(VIEWER))
        .await
        .json()
        .await
        .unwrap();
    let records = body["records"].as_array().unwrap().clone();
    assert!(records.iter().all(|r| r["correlation_id"] == cid.as_str()), "{body:#}");
    let stages: Vec<&str> = records.iter().map(|r| r["stage"].as_str().unwrap()).collect();
    let at = |s: &str| {
        stages
            .iter()
            .position(|x| *x == s)
            .unwrap_or_else(|| panic!("no {s} in {stages:?}"))
    };
    let detail = |s: &str| records[at(s)]["detail"].clone();
    let mut order = vec!["snapshot", "agent_outputs", "decision", "signal", "consensus"];
    if stages.contains(&"conflict") {
        order.extend(["conflict", "resolution"]);
        assert_eq!(
            detail("resolution")["resolved_by"],
            "deepseek/deepseek-chat",
            "{body:#}"
        );
    }
    order.extend([
        "proposal",
        "risk_verdict",
        "execution_requested",
        "order_submitted",
        "order_filled",
        "position_opened",
    ]);
    let positions: Vec<usize> = order.iter().map(|s| at(s)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{order:?} in {stages:?}");
    // The snapshot and agent outputs the decision used, the model's BUY, the approved verdict.
    assert!(
        detail("snapshot")["current_price"].is_string(),
        "{}",
        detail("snapshot")
    );
    assert_eq!(detail("agent_outputs")["technical_analysis"]["symbol"], "BTC/USDT");
    assert!(detail("agent_outputs")["regime_detection"]["regime"].is_string());
    assert_eq!(detail("decision")["action"], "BUY", "{}", detail("decision"));
    assert_eq!(detail("signal")["action"], "BUY");
    assert_eq!(
        detail("risk_verdict")["status"],
        "approved",
        "{}",
        detail("risk_verdict")
    );
    assert_eq!(detail("position_opened")["side"], "long");
    assert!(!llm.received_requests().await.unwrap().is_empty());
    app.shutdown().await;
}
