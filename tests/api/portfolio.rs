//! Portfolio allocation and rebalance, hodl bags: through real HTTP, the paper exchange and PostgreSQL.

use crate::helpers::{spawn_app, TestApp, OPERATOR, VIEWER};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use std::time::Duration;
use triplegain_actors::domain::Symbol;

/// Feeds BTC/USDT and XRP/USDT prices to the paper exchange.
fn set_prices(app: &TestApp, btc: Decimal, xrp: Decimal) {
    let paper = app.state.paper.as_ref().expect("paper mode");
    let now = app.state.clock.now();
    paper.on_price(&Symbol::parse("BTC/USDT").unwrap(), btc, now);
    paper.on_price(&Symbol::parse("XRP/USDT").unwrap(), xrp, now);
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let client = app.pool.as_ref().unwrap().get().await.unwrap();
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[actix_web::test]
async fn allocation_reports_available_holdings_against_configured_targets() {
    let app = spawn_app().await;

    // Without prices nothing can be valued.
    let r = app.get("/api/v1/portfolio/allocation", Some(VIEWER)).await;
    assert_eq!(r.status(), 503, "{}", r.text().await.unwrap());

    set_prices(&app, dec!(50000), dec!(0.5));
    let r = app.get("/api/v1/portfolio/allocation", Some(VIEWER)).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let a = &v["current_allocation"];
    assert_eq!(a["usdt_pct"], "100", "{v}");
    assert_eq!(a["btc_pct"], "0");
    assert_eq!(a["total_equity_usd"], "10000");
    assert_eq!(v["target_allocation"]["usdt_pct"], "33.34");
    assert_eq!(v["target_allocation"]["btc_pct"], "33.33");
    assert_eq!(v["needs_rebalance"], true);

    let r = app.get("/api/v1/portfolio/allocation", None).await;
    assert_eq!(r.status(), 401);
    app.shutdown().await;
}

#[actix_web::test]
async fn forced_rebalance_returns_the_plan_and_stores_it() {
    let app = spawn_app().await;
    set_prices(&app, dec!(50000), dec!(0.5));

    let r = app
        .post(
            "/api/v1/portfolio/rebalance",
            Some(OPERATOR),
            Some(json!({"force": true})),
        )
        .await;

    assert_eq!(r.status(), 200);
    let plan: Value = r.json().await.unwrap();
    assert_eq!(plan["action"], "rebalance", "{plan}");
    assert_eq!(plan["forced"], true);
    let trades = plan["rebalance_trades"].as_array().unwrap();
    assert_eq!(trades.len(), 2);
    for t in trades {
        assert_eq!(t["action"], "buy");
        assert_eq!(t["amount_usd"], "3333.00");
        assert_eq!(t["execution_type"], "limit");
        assert_eq!(t["priority"], 2);
    }
    // $6 666 ≥ $500 → six batches 4 h apart.
    assert_eq!(plan["execution_strategy"], "dca_24h");
    assert_eq!(plan["batches"].as_array().unwrap().len(), 6);
    let id = plan["id"].as_str().unwrap();
    assert_eq!(
        count(
            &app,
            &format!("SELECT count(*) FROM rebalance_history WHERE id = '{id}' AND batch_index = 0")
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM rebalance_history WHERE status = 'pending' AND batch_index > 0"
        )
        .await,
        5
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM api_audit_log WHERE route = '/api/v1/portfolio/rebalance' AND token_name = 'operator' AND status = 200"
        )
        .await,
        1
    );
    // Batch 0 went through the risk engine and the execution manager.
    let mut status = String::new();
    for _ in 0..100 {
        let client = app.pool.as_ref().unwrap().get().await.unwrap();
        status = client
            .query_one(&format!("SELECT status FROM rebalance_history WHERE id = '{id}'"), &[])
            .await
            .unwrap()
            .get(0);
        if status != "pending" && status != "executing" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, "executed");
    // The real risk engine approved both spot buys without a stop-loss (rebalance, leverage 1) and
    // the execution manager placed them.
    let client = app.pool.as_ref().unwrap().get().await.unwrap();
    let results: Value = client
        .query_one(
            &format!("SELECT plan->'results' FROM rebalance_history WHERE id = '{id}'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let trades = results["trades"].as_array().unwrap();
    assert_eq!(trades.len(), 2, "{results}");
    for t in trades {
        assert_eq!(t["status"], "executed", "{results}");
        assert_eq!(t["order_ids"].as_array().map(Vec::len), Some(1), "{results}");
    }
    app.shutdown().await;
}

#[actix_web::test]
async fn empty_body_is_an_unforced_check() {
    let app = spawn_app().await;
    set_prices(&app, dec!(50000), dec!(0.5));
    // Empty body = force false; 100 % USDT is far off target, so it rebalances.
    let r = app.post("/api/v1/portfolio/rebalance", Some(OPERATOR), None).await;
    assert_eq!(r.status(), 200);
    let plan: Value = r.json().await.unwrap();
    assert_eq!(plan["action"], "rebalance");
    assert_eq!(plan["forced"], false);
    app.shutdown().await;
}

#[actix_web::test]
async fn wrong_type_is_400_naming_force_and_viewer_is_403_and_nothing_changes() {
    let app = spawn_app().await;
    set_prices(&app, dec!(50000), dec!(0.5));

    let r = app
        .post(
            "/api/v1/portfolio/rebalance",
            Some(OPERATOR),
            Some(json!({"force": "yes"})),
        )
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["field"], "force", "{v}");

    let r = app
        .post(
            "/api/v1/portfolio/rebalance",
            Some(OPERATOR),
            Some(json!({"force": true, "extra": 1})),
        )
        .await;
    assert_eq!(r.status(), 400);

    let r = app
        .post(
            "/api/v1/portfolio/rebalance",
            Some(VIEWER),
            Some(json!({"force": true})),
        )
        .await;
    assert_eq!(r.status(), 403);

    assert_eq!(count(&app, "SELECT count(*) FROM rebalance_history").await, 0);
    app.shutdown().await;
}

#[actix_web::test]
async fn hodl_bags_and_history() {
    let app = spawn_app().await;
    set_prices(&app, dec!(50000), dec!(0.5));
    // A fresh database: every bag empty, thresholds from config/hodl.yaml.
    let r = app.get("/api/v1/hodl", Some(VIEWER)).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let bags = v["bags"].as_array().unwrap();
    assert_eq!(bags.len(), 3);
    let btc = bags.iter().find(|b| b["asset"] == "BTC").unwrap();
    assert_eq!(btc["threshold_usd"], "15");
    assert_eq!(btc["pending_usd"], "0");

    let r = app.get("/api/v1/hodl/history?asset=btc&limit=10", Some(VIEWER)).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["count"], 0);
    assert_eq!(v["asset_filter"], "BTC");

    let r = app.get("/api/v1/hodl/history?limit=0", Some(VIEWER)).await;
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["field"], "limit");
    let r = app.get("/api/v1/hodl/history?asset=DOGE", Some(VIEWER)).await;
    assert_eq!(r.status(), 422);
    let r = app.get("/api/v1/hodl", None).await;
    assert_eq!(r.status(), 401);
    app.shutdown().await;
}

fn closed_with_profit(app: &TestApp, pnl: Decimal) -> triplegain_actors::messages::ExecutionEvent {
    use triplegain_actors::domain::{OrderStatus, Side};
    use triplegain_actors::messages::{EventMeta, ExecutionEvent, ExecutionEventType};
    ExecutionEvent {
        meta: EventMeta::new("execution", app.state.clock.now()),
        event_type: ExecutionEventType::PositionClosed,
        order_id: "o-1".into(),
        client_order_id: None,
        symbol: Symbol::parse("BTC/USDT").unwrap(),
        side: Side::Sell,
        status: OrderStatus::Filled,
        size: dec!(0.01),
        fill_price: None,
        fee: Decimal::ZERO,
        realized_pnl: Some(pnl),
        position_id: Some(uuid::Uuid::new_v4().to_string()),
    }
}

#[actix_web::test]
async fn hodl_allocations_persist_and_bags_reload_and_are_excluded_after_a_restart() {
    use crate::helpers::{pool_for, spawn_with_settings, test_settings, TestDb};
    use triplegain::settings::Secret;
    let db = TestDb::new().await;
    let pool = pool_for(&db.name);
    let settings = || {
        let mut s = test_settings();
        s.database.url = Some(Secret::new(db.url.clone()));
        s.execution.paper.initial_balances = [("BTC", dec!(0.05)), ("XRP", dec!(2150)), ("USDT", dec!(1275))]
            .into_iter()
            .map(|(a, v)| (a.to_owned(), v))
            .collect();
        s
    };

    // Arrange: a $100 realised profit reaches the rebalancer over the bus.
    let app = spawn_with_settings(settings()).await;
    app.state
        .bus
        .execution_events
        .publish(closed_with_profit(&app, dec!(100)));
    let mut rows = 0i64;
    for _ in 0..200 {
        rows = pool
            .get()
            .await
            .unwrap()
            .query_one("SELECT count(*) FROM hodl_transactions", &[])
            .await
            .unwrap()
            .get(0);
        if rows == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rows, 4, "USDT allocation + purchase, XRP and BTC allocations");
    app.shutdown().await;
    // A BTC bag of 0.0155 (the design example) is added while the process is down.
    pool.get()
        .await
        .unwrap()
        .execute("INSERT INTO hodl_bags (asset, balance, cost_basis_usd) VALUES ('BTC', 0.0155, 600) ON CONFLICT (asset) DO UPDATE SET balance = 0.0155, cost_basis_usd = 600", &[])
        .await
        .unwrap();

    // Act: a new process on the same database.
    let app = spawn_with_settings(settings()).await;
    set_prices(&app, dec!(1535) / dec!(0.0345), dec!(0.6));

    // Assert: bags reloaded with pending amounts and P&L, and excluded from the allocation.
    let v: Value = app.get("/api/v1/hodl", Some(VIEWER)).await.json().await.unwrap();
    let bag = |a: &str| {
        v["bags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["asset"] == a)
            .unwrap()
            .clone()
    };
    assert_eq!(bag("USDT")["balance"], "3.34", "{v}");
    assert_eq!(bag("XRP")["pending_usd"], "3.33");
    assert_eq!(bag("BTC")["pending_usd"], "3.33");
    assert_eq!(bag("BTC")["balance"], "0.0155");
    assert_eq!(bag("BTC")["current_value_usd"], "689.64");
    assert_eq!(bag("BTC")["unrealized_pnl_usd"], "89.64");
    assert_eq!(v["allocated_today_usd"], "10", "the daily total survives the restart");

    let v: Value = app
        .get("/api/v1/portfolio/allocation", Some(VIEWER))
        .await
        .json()
        .await
        .unwrap();
    let a = &v["current_allocation"];
    assert_eq!(a["available"]["BTC"], "0.0345", "{v}");
    assert_eq!(a["available"]["USDT"], "1271.66");
    assert_eq!(a["hodl_excluded"]["BTC"], "0.0155");

    let v: Value = app
        .get("/api/v1/hodl/history?asset=USDT", Some(VIEWER))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["count"], 2);
    app.shutdown().await;
}

/// One closed 1-minute candle at a flat price, ending at `end`, through the candle topic (what
/// the market data actor publishes): it moves the paper exchange and reaches the rebalancer.
fn flat_candle(system: &triplegain::startup::System, symbol: &str, price: Decimal, end: chrono::DateTime<chrono::Utc>) {
    use triplegain_actors::domain::{Candle, Timeframe};
    use triplegain_actors::messages::{CandleClosed, EventMeta};
    system.state.bus.candles.publish(CandleClosed {
        meta: EventMeta::new("market_data", end),
        candle: Candle {
            symbol: Symbol::parse(symbol).unwrap(),
            timeframe: Timeframe::M1,
            open_time: end - chrono::Duration::minutes(1),
            open: price,
            high: price,
            low: price,
            close: price,
            volume: dec!(10),
        },
    });
}

async fn query_i64(pool: &deadpool_postgres::Pool, sql: &str) -> i64 {
    pool.get().await.unwrap().query_one(sql, &[]).await.unwrap().get(0)
}

async fn wait_for(pool: &deadpool_postgres::Pool, what: &str, sql: &str, want: i64) {
    let mut got = -1;
    for _ in 0..300 {
        got = query_i64(pool, sql).await;
        if got == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: {sql} gave {got}, wanted {want}");
}

#[actix_web::test]
async fn a_full_dca_plan_runs_every_batch_as_holdings_not_positions() {
    use triplegain_actors::portfolio::{CheckPortfolio, GetAllocation};
    // Arrange: the whole actor system on a fresh database, 10 000 USDT, at most 2 positions per
    // symbol (the limit that stopped the plan after two batches when batches opened positions),
    // schedules off so only this test asks for checks.
    let db = crate::helpers::TestDb::new().await;
    let mut settings = crate::helpers::test_settings();
    settings.database.url = Some(triplegain::settings::Secret::new(db.url.clone()));
    settings.execution.position_limits.max_per_symbol = 2;
    crate::helpers::no_schedules(&mut settings);
    let system = triplegain::startup::build_system(&settings).await.unwrap();
    let pool = crate::helpers::pool_for(&db.name);
    let clock = system.feed_clock.clone().unwrap();
    let (btc, xrp) = (dec!(50000), dec!(0.5));
    let mut now = triplegain_actors::clock::Clock::now(&clock);
    flat_candle(&system, "BTC/USDT", btc, now);
    flat_candle(&system, "XRP/USDT", xrp, now);

    // Act: the hourly check right after start (a fresh database: possibly before the first
    // valuation, which the first batch then waits for).
    let plan = system
        .state
        .portfolio
        .send(CheckPortfolio { force: false })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(plan.batches.len(), 6, "$6 666 of buys in six DCA batches");
    for batch in 0..6i64 {
        if batch > 0 {
            // The batch's due time: a candle at or after it runs the batch.
            now = plan.batches[batch as usize].due_at;
            clock.set(now);
            flat_candle(&system, "BTC/USDT", btc, now);
            flat_candle(&system, "XRP/USDT", xrp, now);
        }
        wait_for(
            &pool,
            &format!("batch {batch} orders placed"),
            "SELECT count(*) FROM orders WHERE purpose = 'rebalance'",
            2 * (batch + 1),
        )
        .await;
        // The next minute's candle fills both limit orders.
        now += chrono::Duration::minutes(1);
        clock.set(now);
        flat_candle(&system, "BTC/USDT", btc, now);
        flat_candle(&system, "XRP/USDT", xrp, now);
        wait_for(
            &pool,
            &format!("batch {batch} filled"),
            "SELECT count(*) FROM trades WHERE position_id IS NULL",
            2 * (batch + 1),
        )
        .await;
    }

    // Assert: every batch executed, none refused by a position limit or for lack of equity.
    wait_for(
        &pool,
        "every batch executed",
        "SELECT count(*) FROM rebalance_history WHERE status = 'executed'",
        6,
    )
    .await;
    let results: Vec<String> = pool
        .get()
        .await
        .unwrap()
        .query("SELECT plan::text FROM rebalance_history", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for r in &results {
        assert!(!r.contains("max_positions_per_symbol"), "{r}");
        assert!(!r.contains("equity_unavailable"), "{r}");
    }
    // Holdings, not positions: no position, no stop or take-profit, twelve spot fills.
    assert_eq!(query_i64(&pool, "SELECT count(*) FROM positions").await, 0);
    assert_eq!(
        query_i64(&pool, "SELECT count(*) FROM orders WHERE purpose <> 'rebalance'").await,
        0
    );
    assert_eq!(query_i64(&pool, "SELECT count(*) FROM trades").await, 12);
    // The allocation converged to the targets within the threshold, fees counted.
    let alloc = system.state.portfolio.send(GetAllocation).await.unwrap().unwrap();
    assert!(
        alloc.max_deviation_pct < dec!(5),
        "allocation {} / {} / {}",
        alloc.btc_pct,
        alloc.xrp_pct,
        alloc.usdt_pct
    );
    let balances = system.state.paper.as_ref().unwrap().available_balances();
    let bought_btc = balances["BTC"];
    assert_eq!(bought_btc, dec!(0.06666), "3 333 USD at 50 000 in six quantised lots");
    let fees: Decimal = pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT sum(fee) FROM trades", &[])
        .await
        .unwrap()
        .get(0);
    assert!(fees > Decimal::ZERO, "fees are paid on every fill");
    assert_eq!(
        balances["USDT"],
        dec!(10000) - dec!(0.06666) * btc - balances["XRP"] * xrp - fees,
        "cash is what the fills cost plus their fees"
    );
    let _ = system.state.registry.drain_all(Duration::from_secs(5)).await;
}
