//! Coordinator status and task control, risk state and reset, decision trail.

use crate::helpers::{spawn_app, spawn_with_settings, test_settings, ADMIN, OPERATOR, VIEWER};
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use triplegain_actors::domain::{Symbol, TradeAction};
use triplegain_actors::messages::{EventMeta, PortfolioUpdate, TradingSignal};

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
            "SELECT count(*) FROM api_audit_log WHERE route LIKE '/api/v1/coordinator/task/%'",
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
    app.state.bus.portfolio_updates.publish(PortfolioUpdate {
        meta: EventMeta::new("test", now),
        equity_usd: dec!(10000),
        peak_equity_usd: dec!(10000),
        drawdown_pct: dec!(0),
        open_exposure_usd: dec!(0),
        exposure_by_symbol: BTreeMap::new(),
        balances: BTreeMap::new(),
        allocation_pct: BTreeMap::new(),
    });
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
    let app = spawn_app().await;
    let now = app.state.clock.now();
    let update = |equity| PortfolioUpdate {
        meta: EventMeta::new("test", now),
        equity_usd: equity,
        peak_equity_usd: dec!(10000),
        drawdown_pct: dec!(0),
        open_exposure_usd: dec!(0),
        exposure_by_symbol: BTreeMap::new(),
        balances: BTreeMap::new(),
        allocation_pct: BTreeMap::new(),
    };
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
