//! Every request that moves money is checked against the market, the account state and the body
//! actually sent: real HTTP, the app, PostgreSQL and the paper exchange. Each refusal is followed
//! by reading the state back unchanged.

use crate::execution::{body, buy_and_fill, dec, limit_buy, open_position, patch, price, ready};
use crate::helpers::{spawn_app, spawn_app_with, spawn_with_settings, test_settings, TestApp, ADMIN, OPERATOR, VIEWER};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::str::FromStr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Orders and positions as the API shows them (the state a refusal must leave unchanged).
async fn book(app: &TestApp) -> (usize, usize) {
    let (_, o) = body(app.get("/api/v1/orders", Some(VIEWER)).await).await;
    let (_, p) = body(app.get("/api/v1/positions?status=all", Some(VIEWER)).await).await;
    (
        o["orders"].as_array().map_or(0, Vec::len),
        p["positions"].as_array().map_or(0, Vec::len),
    )
}

/// One HTTP/1.1 request written by hand, so the framing is exactly what the test says:
/// `chunked` sends the body with `Transfer-Encoding: chunked` in two chunks and no length.
async fn raw_http(
    app: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    content_type: &str,
    body: &str,
    chunked: bool,
) -> (u16, Value) {
    let addr = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: {content_type}\r\nConnection: close\r\n"
    );
    if chunked {
        req.push_str("Transfer-Encoding: chunked\r\n\r\n");
        let (a, b) = body.split_at(body.len() / 2);
        for part in [a, b] {
            if !part.is_empty() {
                req.push_str(&format!("{:x}\r\n{part}\r\n", part.len()));
            }
        }
        req.push_str("0\r\n\r\n");
    } else {
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    }
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let payload = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut decoded = String::new();
        let mut r = rest;
        while let Some((size, tail)) = r.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            decoded.push_str(&tail[..n]);
            r = tail[n..].trim_start_matches("\r\n");
        }
        decoded
    } else {
        rest.to_owned()
    };
    (status, serde_json::from_str(&payload).unwrap_or(Value::Null))
}

async fn post_raw(app: &TestApp, path: &str, token: &str, content_type: &str, body: &str) -> (u16, Value) {
    let r = app
        .client
        .post(app.url(path))
        .bearer_auth(token)
        .header("Content-Type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    crate::execution::body(r).await
}

#[actix_web::test]
async fn a_proposal_is_valued_at_the_market_never_at_the_price_the_client_sends() {
    let app = spawn_app().await;
    ready(&app).await;
    let before = book(&app).await;
    // The sell the issue showed: 0.1 BTC at 400 against a 50 000 market, 2× leverage.
    let sell = json!({"symbol": "BTC/USDT", "side": "sell", "volume": "0.1", "order_type": "limit",
        "price": "400", "stop_loss": "404", "take_profit": "390", "leverage": 2});
    let (s, b) = body(app.post("/api/v1/trades", Some(OPERATOR), Some(sell)).await).await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("price")), "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit_price_deviation"),
        "{b}"
    );
    // A limit buy at 10× the market.
    let mut high = limit_buy("1000");
    high["price"] = json!("500000");
    high["stop_loss"] = json!("490000");
    high["take_profit"] = json!("520000");
    let (s, b) = body(app.post("/api/v1/trades", Some(OPERATOR), Some(high)).await).await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("price")), "{b}");
    // 2.5 % through the market is refused, 1 % passes and is valued at the market.
    let mut through = limit_buy("1000");
    through["price"] = json!("51250");
    let (s, b) = body(app.post("/api/v1/trades/validate", Some(VIEWER), Some(through)).await).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["verdict"]["rejections"], json!(["limit_price_deviation"]), "{b}");
    let mut near = limit_buy("1000");
    near["price"] = json!("50500");
    let (s, b) = body(app.post("/api/v1/trades/validate", Some(VIEWER), Some(near)).await).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        dec(&b["verdict"]["proposal"]["entry_price"]),
        Decimal::from(50000),
        "{b}"
    );
    assert_eq!(
        dec(&b["verdict"]["metrics"]["market_price"]),
        Decimal::from(50000),
        "{b}"
    );
    assert_eq!(book(&app).await, before, "nothing placed");
    app.shutdown().await;
}

#[actix_web::test]
async fn without_a_market_price_a_trade_is_refused_not_guessed_and_unknown_symbols_name_symbol() {
    let app = spawn_app().await;
    // No price was ever seen for BTC/USDT.
    let (s, b) = body(app.post("/api/v1/trades", Some(OPERATOR), Some(limit_buy("100"))).await).await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("symbol")), "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("market_price_unavailable"),
        "{b}"
    );
    let mut market = limit_buy("100");
    market["order_type"] = json!("market");
    market.as_object_mut().unwrap().remove("price");
    let (s, b) = body(app.post("/api/v1/trades", Some(OPERATOR), Some(market)).await).await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("symbol")), "{b}");
    let mut eth = limit_buy("100");
    eth["symbol"] = json!("ETH/USDT");
    let (s, b) = body(app.post("/api/v1/trades", Some(OPERATOR), Some(eth)).await).await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("symbol")), "{b}");
    assert_eq!(book(&app).await, (0, 0));
    app.shutdown().await;
}

#[actix_web::test]
async fn a_market_order_is_placed_as_a_bounded_limit_and_says_so() {
    let app = spawn_app().await;
    ready(&app).await;
    let mut m = limit_buy("1000");
    m["order_type"] = json!("market");
    let (s, b) = body(app.post("/api/v1/trades", Some(OPERATOR), Some(m.clone())).await).await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (422, Some("price")),
        "a market order takes no price: {b}"
    );
    m.as_object_mut().unwrap().remove("price");
    let (s, b) = body(app.post("/api/v1/trades", Some(OPERATOR), Some(m)).await).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["market_order"]["placed_as"], "limit", "{b}");
    assert_eq!(dec(&b["market_order"]["market_price"]), Decimal::from(50000));
    // Bounded 0.5 % above the market price.
    assert_eq!(dec(&b["market_order"]["limit_price"]), Decimal::from(50250), "{b}");
    assert_eq!(dec(&b["orders"][0]["price"]), Decimal::from(50250));
    app.shutdown().await;
}

#[actix_web::test]
async fn lenient_bodies_are_refused_naming_the_field() {
    let app = spawn_app().await;
    ready(&app).await;
    let before = book(&app).await;
    let good = serde_json::to_string(&limit_buy("1000")).unwrap();
    // Trailing data after the object.
    let (s, b) = post_raw(
        &app,
        "/api/v1/trades",
        OPERATOR,
        "application/json",
        &format!("{good} {{}}"),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    // An array is not an object (it used to reset all risk state).
    let (s, b) = post_raw(&app, "/api/v1/risk/reset", ADMIN, "application/json", r#"["all"]"#).await;
    assert_eq!(s, 400, "{b}");
    let (_, risk) = body(app.get("/api/v1/risk/state", Some(VIEWER)).await).await;
    assert!(risk.is_object());
    // application/jsonx is not JSON.
    let (s, b) = post_raw(&app, "/api/v1/trades", OPERATOR, "application/jsonx", &good).await;
    assert_eq!(s, 415, "{b}");
    // 40 decimals are refused, not rounded.
    let mut long = limit_buy("1000");
    long["price"] = json!("50000.0000000000000000000000000000000000001");
    let (s, b) = body(app.post("/api/v1/trades", Some(OPERATOR), Some(long)).await).await;
    assert_eq!((s, b["error"]["field"].as_str()), (400, Some("price")), "{b}");
    // Beyond the pair's precision (BTC/USDT prices have 1 decimal, volumes 8).
    let mut fine = limit_buy("1000");
    fine["price"] = json!("50000.05");
    let (s, b) = body(app.post("/api/v1/trades", Some(OPERATOR), Some(fine)).await).await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("price")), "{b}");
    let vol = json!({"symbol": "BTC/USDT", "side": "buy", "volume": "0.000000001", "price": "50000",
        "stop_loss": "49000", "take_profit": "52000"});
    let (s, b) = body(app.post("/api/v1/trades", Some(OPERATOR), Some(vol)).await).await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("volume")), "{b}");
    // A JSON fraction is a binary float: refused with a hint to send a string.
    let (s, b) = post_raw(
        &app,
        "/api/v1/trades",
        OPERATOR,
        "application/json",
        r#"{"symbol":"BTC/USDT","side":"buy","size_usd":1000.5,"price":"50000","stop_loss":"49000","take_profit":"52000"}"#,
    )
    .await;
    assert_eq!((s, b["error"]["field"].as_str()), (400, Some("size_usd")), "{b}");
    assert_eq!(book(&app).await, before, "nothing placed");
    app.shutdown().await;
}

#[actix_web::test]
async fn a_chunked_close_body_is_read_a_tenth_closes_a_tenth() {
    let app = spawn_app().await;
    buy_and_fill(&app).await;
    let pos = open_position(&app).await;
    let pid = pos["id"].as_str().unwrap().to_owned();
    let size = dec(&pos["size"]);
    let (s, c) = raw_http(
        &app,
        "POST",
        &format!("/api/v1/positions/{pid}/close"),
        OPERATOR,
        "application/json",
        r#"{"fraction":"0.1"}"#,
        true,
    )
    .await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(dec(&c["orders"][0]["volume"]), size / Decimal::from(10), "{c}");
    app.shutdown().await;
}

#[actix_web::test]
async fn every_control_route_reads_a_chunked_body() {
    let app = spawn_app().await;
    ready(&app).await;
    let id = uuid::Uuid::new_v4();
    let routes: Vec<(&str, String, &str)> = vec![
        ("POST", "/api/v1/coordinator/pause".into(), OPERATOR),
        ("POST", "/api/v1/coordinator/resume".into(), OPERATOR),
        ("POST", "/api/v1/coordinator/halt".into(), OPERATOR),
        ("POST", "/api/v1/coordinator/admin-resume".into(), ADMIN),
        ("POST", "/api/v1/risk/reset".into(), ADMIN),
        ("POST", "/api/v1/portfolio/rebalance".into(), OPERATOR),
        ("POST", format!("/api/v1/positions/{id}/close"), OPERATOR),
        ("PATCH", format!("/api/v1/positions/{id}"), OPERATOR),
        ("POST", "/api/v1/trades".into(), OPERATOR),
        ("POST", "/api/v1/trades/validate".into(), VIEWER),
    ];
    for (method, path, token) in &routes {
        // An unknown field is only seen when the body is read.
        let (s, b) = raw_http(
            &app,
            method,
            path,
            token,
            "application/json",
            r#"{"bogus_field": 1}"#,
            true,
        )
        .await;
        assert_eq!(
            (s, b["error"]["field"].as_str()),
            (400, Some("bogus_field")),
            "{method} {path}: {b}"
        );
    }
    // The rebalance body is honoured chunked too: a forced run returns a plan, not "below threshold".
    let (s, b) = raw_http(
        &app,
        "POST",
        "/api/v1/coordinator/pause",
        OPERATOR,
        "application/json",
        r#"{"reason":"chunked"}"#,
        true,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (_, st) = body(app.get("/api/v1/coordinator/status", Some(VIEWER)).await).await;
    assert_eq!(st["state"], "paused", "{st}");
    app.shutdown().await;
}

#[actix_web::test]
async fn halted_means_halted_for_manual_trades_and_forced_rebalances_but_reductions_pass() {
    let app = spawn_app().await;
    buy_and_fill(&app).await;
    let pos = open_position(&app).await;
    let (s, b) = body(
        app.post(
            "/api/v1/coordinator/halt",
            Some(OPERATOR),
            Some(json!({"reason": "test halt"})),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    // The risk engine learns the halt.
    let mut halted = false;
    for _ in 0..100 {
        let (_, r) = body(app.get("/api/v1/risk/state", Some(VIEWER)).await).await;
        if r["circuit_breakers"]["trading_halted"] == true || r["halted"] == true {
            halted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(halted, "risk engine reports halted");
    let before = book(&app).await;
    let (s, b) = body(app.post("/api/v1/trades", Some(OPERATOR), Some(limit_buy("500"))).await).await;
    assert_eq!(s, 409, "{b}");
    // Validation says halted too (the risk engine refuses, whatever the caller).
    let (_, v) = body(
        app.post("/api/v1/trades/validate", Some(VIEWER), Some(limit_buy("500")))
            .await,
    )
    .await;
    assert_eq!(v["verdict"]["status"], "halted", "{v}");
    // A forced rebalance places nothing while halted.
    let paper = app.state.paper.as_ref().unwrap();
    paper.on_price(
        &triplegain_actors::domain::Symbol::parse("XRP/USDT").unwrap(),
        Decimal::new(5, 1),
        app.state.clock.now(),
    );
    let _ = body(
        app.post(
            "/api/v1/portfolio/rebalance",
            Some(OPERATOR),
            Some(json!({"force": true})),
        )
        .await,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        book(&app).await,
        before,
        "no order from a forced rebalance while halted"
    );
    // A reduction passes: the position can still be closed.
    let (s, c) = body(
        app.post(
            &format!("/api/v1/positions/{}/close", pos["id"].as_str().unwrap()),
            Some(OPERATOR),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{c}");
    app.shutdown().await;
}

#[actix_web::test]
async fn stop_and_take_profit_changes_are_judged_against_the_market_and_stored_values_stay() {
    let app = spawn_app().await;
    buy_and_fill(&app).await;
    let pos = open_position(&app).await;
    let pid = pos["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/positions/{pid}");
    // The market moved up to 51 000: a stop at 50 500 is fine against the entry, but the checks
    // use the market.
    price(&app, "51000");
    for (b, field) in [
        // A take-profit at 50 % of the market would fill at once.
        (json!({"take_profit": "25500"}), "take_profit"),
        // 1e-20 cannot be quantised to a tick.
        (json!({"take_profit": "0.00000000000000000001"}), "take_profit"),
        // A stop 50 % away.
        (json!({"stop_loss": "25500"}), "stop_loss"),
        // A stop above the market for a long (below the entry would have passed before).
        (json!({"stop_loss": "51500"}), "stop_loss"),
        // A take-profit too close for the reward:risk (the stop 49 000 is 2 000 away).
        (json!({"take_profit": "51100"}), "take_profit"),
        // Off the tick.
        (json!({"stop_loss": "50000.05"}), "stop_loss"),
    ] {
        let (s, e) = patch(&app, &path, OPERATOR, b.clone()).await;
        assert_eq!((s, e["error"]["field"].as_str()), (422, Some(field)), "{b}: {e}");
    }
    let (_, after) = body(app.get(&path, Some(VIEWER)).await).await;
    assert_eq!(after["stop_loss"], pos["stop_loss"], "stop unchanged");
    assert_eq!(after["take_profit"], pos["take_profit"], "take-profit unchanged");
    // A valid move passes: a stop 2.9 % under the market (and under the entry, which the
    // execution manager still requires).
    let (s, e) = patch(&app, &path, OPERATOR, json!({"stop_loss": "49500"})).await;
    assert_eq!(s, 200, "{e}");
    app.shutdown().await;
}

/// The open stop orders of the account on the paper exchange: (price, volume).
async fn working_stops(app: &TestApp) -> Vec<(String, String)> {
    let (_, orders) = body(app.get("/api/v1/orders?open_only=true", Some(VIEWER)).await).await;
    orders["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["purpose"] == "stop_loss")
        .map(|o| (o["price"].to_string(), o["volume"].to_string()))
        .collect()
}

#[actix_web::test]
async fn a_stop_change_the_exchange_refuses_changes_nothing_and_a_confirmed_one_replaces_the_order() {
    use triplegain_actors::execution::paper::PaperOp;
    use triplegain_actors::ports::ExchangeError;
    let app = spawn_app().await;
    buy_and_fill(&app).await;
    let pos = open_position(&app).await;
    let path = format!("/api/v1/positions/{}", pos["id"].as_str().unwrap());
    let mut before = Vec::new();
    for _ in 0..100 {
        before = working_stops(&app).await;
        if !before.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(before.len(), 1, "one working stop: {before:?}");

    // The exchange refuses the replacement stop.
    let paper = app.state.paper.as_ref().unwrap();
    paper.fail_next_op(
        PaperOp::PlaceOrder,
        ExchangeError::Rejected("EOrder:Invalid price".into()),
        false,
    );
    let (s, e) = patch(&app, &path, OPERATOR, json!({"stop_loss": "49500"})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (422, Some("order_rejected")), "{e}");
    let (_, after) = body(app.get(&path, Some(VIEWER)).await).await;
    assert_eq!(after["stop_loss"], pos["stop_loss"], "stored stop unchanged: {after}");
    assert_eq!(working_stops(&app).await, before, "the old stop keeps working");

    // Confirmed: stored and working agree, one stop at the new price.
    let (s, e) = patch(&app, &path, OPERATOR, json!({"stop_loss": "49500"})).await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(dec(&e["stop_loss"]), Decimal::from(49500));
    let mut stops = Vec::new();
    for _ in 0..100 {
        stops = working_stops(&app).await;
        if stops.len() == 1 && stops[0] != before[0] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(
        dec(&serde_json::from_str::<Value>(&stops[0].0).unwrap()),
        Decimal::from(49500)
    );
    app.shutdown().await;
}

#[actix_web::test]
async fn refused_control_requests_are_audited_with_the_request_id() {
    let app = spawn_app().await;
    let r = app
        .client
        .post(app.url("/api/v1/trades"))
        .bearer_auth(VIEWER)
        .header("X-Request-Id", "req-403-test")
        .json(&limit_buy("100"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(r.headers()["x-request-id"], "req-403-test");
    let (s, _) = post_raw(&app, "/api/v1/risk/reset", ADMIN, "application/json", "[1]").await;
    assert_eq!(s, 400);
    let (s, _) = body(
        app.post("/api/v1/coordinator/pause", Some("wrong-token-0123456789"), None)
            .await,
    )
    .await;
    assert_eq!(s, 401);
    let client = app.pool.as_ref().unwrap().get().await.unwrap();
    let rows = client
        .query(
            "SELECT status, route, token_name, request_id FROM api_audit_log ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let seen: Vec<(i32, String, String, Option<String>)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    assert!(
        seen.iter().any(|(s, r, t, id)| *s == 403
            && r == "/api/v1/trades"
            && t == "viewer"
            && id.as_deref() == Some("req-403-test")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(s, r, _, id)| *s == 400 && r == "/api/v1/risk/reset" && id.is_some()),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|(s, _, t, _)| *s == 401 && t == "(unauthenticated)"),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|(_, _, _, id)| id.is_some()),
        "every record has a request id: {seen:?}"
    );
    app.shutdown().await;
}

#[actix_web::test]
async fn failed_authentication_is_throttled_per_address_and_event_streams_are_capped_per_token() {
    let app = spawn_app_with(|s| {
        s.api.guards.auth_failures_per_minute = 3;
        s.api.guards.max_event_streams_per_token = 2;
    })
    .await;
    for _ in 0..3 {
        let (s, _) = body(app.get("/api/v1/actors", Some("not-a-token-0123456789")).await).await;
        assert_eq!(s, 401);
    }
    let r = app.get("/api/v1/actors", Some("not-a-token-0123456789")).await;
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let (_, b) = body(r).await;
    assert_eq!(b["error"]["code"], "auth_throttled", "{b}");

    let app2 = spawn_app_with(|s| s.api.guards.max_event_streams_per_token = 2).await;
    let a = app2.get("/api/v1/events", Some(VIEWER)).await;
    let b2 = app2.get("/api/v1/events", Some(VIEWER)).await;
    assert_eq!((a.status().as_u16(), b2.status().as_u16()), (200, 200));
    let third = app2.get("/api/v1/events", Some(VIEWER)).await;
    assert_eq!(third.status().as_u16(), 429);
    // Another token has its own cap.
    let other = app2.get("/api/v1/events", Some(OPERATOR)).await;
    assert_eq!(other.status().as_u16(), 200);
    // A closed stream frees its slot (the server notices at its next write).
    drop(a);
    let mut again = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = app2
            .state
            .bus
            .system_events
            .publish(triplegain_actors::messages::SystemEvent {
                meta: triplegain_actors::messages::EventMeta::new("test", app2.state.clock.now()),
                event: "ping".into(),
                details: json!({}),
            });
        let r = app2.get("/api/v1/events", Some(VIEWER)).await;
        again = r.status().as_u16();
        if again == 200 {
            break;
        }
    }
    assert_eq!(again, 200, "slot freed");
    drop((b2, other));
    app.shutdown().await;
    app2.shutdown().await;
}

#[actix_web::test]
async fn without_a_database_idempotency_keys_are_kept_in_memory_and_say_so() {
    let mut s = test_settings();
    s.database.url = None;
    let app = spawn_with_settings(s).await;
    ready(&app).await;
    let send = || {
        app.client
            .post(app.url("/api/v1/trades"))
            .bearer_auth(OPERATOR)
            .header("Idempotency-Key", "mem-key-1")
            .json(&limit_buy("1000"))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status().as_u16(), 200);
    assert!(first.headers()["idempotency-store"]
        .to_str()
        .unwrap()
        .starts_with("memory"));
    let (_, b1) = body(first).await;
    let second = send().await.unwrap();
    assert_eq!(second.headers()["idempotent-replay"], "true");
    let (_, b2) = body(second).await;
    assert_eq!(b1["orders"][0]["id"], b2["orders"][0]["id"]);
    let (_, o) = body(app.get("/api/v1/orders", Some(VIEWER)).await).await;
    let entries = o["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["purpose"] == "entry")
        .count();
    assert_eq!(entries, 1, "one entry placed");
    // The same key with another body is refused naming the key.
    let r = app
        .client
        .post(app.url("/api/v1/trades"))
        .bearer_auth(OPERATOR)
        .header("Idempotency-Key", "mem-key-1")
        .json(&limit_buy("900"))
        .send()
        .await
        .unwrap();
    let (s, b) = body(r).await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("Idempotency-Key")), "{b}");
    app.shutdown().await;
}

#[actix_web::test]
async fn a_key_left_pending_by_a_dead_request_is_resolved_from_the_order_store() {
    let app = spawn_app().await;
    ready(&app).await;
    let client = app.pool.as_ref().unwrap().get().await.unwrap();
    // A request of a process that died: pending, another instance, no order placed.
    client
        .execute(
            "INSERT INTO idempotency_keys (key, token_name, response, status, correlation_id, instance_id, request_sha256) \
             VALUES ('trades:dead-1', 'operator', '{\"pending\": true}', 0, $1, $2, NULL)",
            &[&uuid::Uuid::new_v4(), &uuid::Uuid::new_v4()],
        )
        .await
        .unwrap();
    let r = app
        .client
        .post(app.url("/api/v1/trades"))
        .bearer_auth(OPERATOR)
        .header("Idempotency-Key", "dead-1")
        .json(&limit_buy("1000"))
        .send()
        .await
        .unwrap();
    let (s, placed) = body(r).await;
    assert_eq!(s, 200, "released and placed: {placed}");
    // A dead request that did place its entry: replayed from the order store, nothing new.
    let cid = placed["correlation_id"].as_str().unwrap().to_owned();
    client
        .execute(
            "INSERT INTO idempotency_keys (key, token_name, response, status, correlation_id, instance_id) \
             VALUES ('trades:dead-2', 'operator', '{\"pending\": true}', 0, $1::text::uuid, $2)",
            &[&cid, &uuid::Uuid::new_v4()],
        )
        .await
        .unwrap();
    let before = book(&app).await;
    let r = app
        .client
        .post(app.url("/api/v1/trades"))
        .bearer_auth(OPERATOR)
        .header("Idempotency-Key", "dead-2")
        .json(&limit_buy("1000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["idempotent-replay"], "true");
    let (s, b) = body(r).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["recovered"], true, "{b}");
    assert_eq!(b["orders"][0]["id"], placed["orders"][0]["id"], "{b}");
    assert_eq!(book(&app).await, before, "nothing placed twice");
    let status: i32 = client
        .query_one("SELECT status FROM idempotency_keys WHERE key = 'trades:dead-2'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, 200, "the key is resolved, not pending");
    let _ = Decimal::from_str("0");
    app.shutdown().await;
}
