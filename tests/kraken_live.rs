#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]
//! The whole app in live mode on a fresh PostgreSQL database against the fake Kraken: REST
//! (signatures, nonces, the tier's counter) and WebSocket v2 over one shared order book.
//! Fills arrive by `executions` and the position is protected without a poll; a dropped socket
//! reconnects, resubscribes and the gap reconciliation finds the fill missed meanwhile; the
//! graceful shutdown confirms the stop and disarms the dead man's switch so the stop survives;
//! a second `serve` on the same API key exits 2 naming the lock; the idle REST load with one
//! protected position stays under a quarter of the starter tier's decay.

#[allow(dead_code, reason = "the API tests' harness; this file uses part of it")]
#[path = "api/helpers.rs"]
mod helpers;
#[path = "common/kraken_fake.rs"]
mod kraken_fake;
#[path = "common/kraken_wire.rs"]
mod kraken_wire;
#[path = "common/kraken_ws_fake.rs"]
mod kraken_ws_fake;

use kraken_fake::{BookOrder, FakeKraken};
use kraken_wire::{KEY, SECRET};
use kraken_ws_fake::FakeKrakenWs;
use rust_decimal::Decimal;
use std::str::FromStr;
use std::time::{Duration, Instant};
use triplegain::kraken::KrakenWs;
use triplegain::settings::{Secret, Settings, LIVE_TRADING_CONFIRMATION, LIVE_TRADING_CONFIRMATION_VAR};
use triplegain_actors::domain::{CorrelationId, OrderStatus, PositionStatus, Regime, Side, Symbol, TradingMode};
use triplegain_actors::execution::api::{ExecuteTrade, PositionView};
use triplegain_actors::risk::{ProposalSource, RiskApproved, TradeProposal};

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

struct Live {
    fake: FakeKraken,
    ws: FakeKrakenWs,
    app: helpers::TestApp,
}

fn live_settings(fake: &FakeKraken, ws: &FakeKrakenWs, db_url: &str) -> Settings {
    let mut s = helpers::test_settings();
    s.app.mode = TradingMode::Live;
    s.app.live_trading_confirmation = Some(LIVE_TRADING_CONFIRMATION.into());
    s.database.url = Some(Secret::new(db_url));
    s.kraken.base_url = fake.uri();
    s.kraken.ws_private_url = ws.url.clone();
    s.kraken.tier = "pro".into();
    s.kraken.api_key = Some(Secret::new(KEY));
    s.kraken.api_secret = Some(Secret::new(SECRET));
    s.market.symbols = vec!["BTC/USDT".into()];
    // The manager polls only when woken (by the socket) unless a test says otherwise.
    s.execution.tracking.poll_interval_ms = 3_600_000;
    s
}

async fn live_app_on(fake: FakeKraken, tweak: impl FnOnce(&mut Settings)) -> Live {
    let ws = FakeKrakenWs::start(fake.book.clone()).await;
    let db = helpers::TestDb::new().await;
    let mut settings = live_settings(&fake, &ws, &db.url);
    tweak(&mut settings);
    let mut app = helpers::spawn_with_settings(settings).await;
    app.pool = Some(helpers::pool_for(&db.name));
    app.db = Some(db);
    let live = Live { fake, ws, app };
    live.wait("socket subscribed and synced", || live.socket().is_synced())
        .await;
    live
}

async fn live_app(tweak: impl FnOnce(&mut Settings)) -> Live {
    live_app_on(FakeKraken::start().await, tweak).await
}

fn is_sl(o: &BookOrder) -> bool {
    o.ordertype == "stop-loss" && o.status == "open"
}

fn is_tp(o: &BookOrder) -> bool {
    o.ordertype == "limit" && o.side == "sell" && o.status == "open"
}

fn is_entry(o: &BookOrder) -> bool {
    o.side == "buy"
}

/// REST calls that ask for order state.
const ORDER_QUERIES: [&str; 3] = ["QueryOrders", "OpenOrders", "ClosedOrders"];

impl Live {
    fn socket(&self) -> KrakenWs {
        self.app.state.live.as_ref().unwrap().ws.clone().unwrap()
    }

    async fn wait(&self, what: &str, f: impl Fn() -> bool) {
        self.wait_for(what, Duration::from_secs(10), f).await;
    }

    async fn wait_for(&self, what: &str, limit: Duration, f: impl Fn() -> bool) {
        let t = Instant::now();
        while t.elapsed() < limit {
            if f() {
                return;
            }
            actix::clock::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for: {what}; book {:?}", self.fake.orders());
    }

    fn rest_order_queries(&self) -> usize {
        ORDER_QUERIES.iter().map(|m| self.fake.calls_of(m).len()).sum()
    }

    fn protected(&self) -> bool {
        let b = self.fake.orders();
        b.iter().any(is_sl) && b.iter().any(is_tp)
    }

    /// A 1000 USD limit long at 50000 with its stop at 49000 and take-profit at 52000, placed
    /// through the app's execution manager (over the socket).
    async fn enter_long(&self) {
        let res = self.try_enter_long().await.unwrap();
        assert_eq!(res.orders[0].status, OrderStatus::Open);
        assert_eq!(res.orders[0].exchange_order_id.as_deref(), Some("OTX-1"));
        // The socket has reported the new order before the test moves the book.
        actix::clock::sleep(Duration::from_millis(300)).await;
    }

    async fn try_enter_long(
        &self,
    ) -> Result<triplegain_actors::execution::api::ExecutionResult, triplegain_actors::execution::api::ExecutionError>
    {
        let p = TradeProposal {
            symbol: Symbol::parse("BTC/USDT").unwrap(),
            side: Side::Buy,
            size_usd: dec("1000"),
            entry_price: dec("50000"),
            stop_loss: Some(dec("49000")),
            take_profit: Some(dec("52000")),
            leverage: 1,
            confidence: 0.8,
            regime: Regime::TrendingBull,
            source: ProposalSource::Manual,
            correlation_id: CorrelationId::new(),
            reduce_only: false,
        };
        self.app
            .state
            .execution
            .send(ExecuteTrade::limit(RiskApproved::for_tests(p)))
            .await
            .unwrap()
    }

    fn fill_entry(&self) {
        self.fake.update(is_entry, |o| {
            o.status = "closed".into();
            o.vol_exec = "0.02".into();
            o.avg = "49990.0".into();
            o.fee = "2.59948".into();
        });
    }

    async fn open_position(&self) -> PositionView {
        let t = Instant::now();
        loop {
            let ps = self
                .app
                .state
                .stores
                .orders
                .list_positions(None, None, 10)
                .await
                .unwrap();
            if let Some(p) = ps
                .into_iter()
                .find(|p| p.status == PositionStatus::Open && p.stop_loss_order_id.is_some())
            {
                return p;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "no protected open position");
            actix::clock::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Kraken's dead man's switch as the call log sets it: armed by the last `timeout > 0`, off after
/// `timeout = 0`; when it has run out, every open order on the book is cancelled.
fn apply_dead_mans_switch(fake: &FakeKraken) -> bool {
    let calls = fake.calls_of("CancelAllOrdersAfter");
    let Some(last) = calls.last() else { return false };
    let timeout: u64 = last.form.get("timeout").unwrap().parse().unwrap();
    let fired = timeout > 0 && last.at.elapsed() >= Duration::from_secs(timeout);
    if fired {
        let mut b = fake.book.lock().unwrap();
        for o in b.orders.iter_mut().filter(|o| o.status == "open") {
            o.status = "canceled".into();
        }
    }
    fired
}

#[actix_web::test]
async fn fills_arrive_by_executions_and_the_position_is_protected_without_a_poll() {
    let env = live_app(|_| {}).await;
    env.enter_long().await;
    // Placed over the socket, not REST.
    assert_eq!(env.ws.frames_of("add_order").len(), 1);
    assert!(env.fake.calls_of("AddOrder").is_empty());
    let queries_before = env.rest_order_queries();

    // Kraken fills the entry. The manager polls only hourly: the executions update alone wakes it.
    let t = Instant::now();
    env.fill_entry();
    env.wait_for("stop and take-profit on the book", Duration::from_secs(3), || {
        env.protected()
    })
    .await;
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "protected {took:?} after the fill");
    let pos = env.open_position().await;
    assert_eq!((pos.size, pos.entry_price), (dec("0.02"), dec("49990")));
    // The fill was learnt from the socket's cache: no REST order query since the entry.
    assert_eq!(env.rest_order_queries(), queries_before, "{:?}", env.fake.orders());
    // Stop and take-profit went over the socket too.
    assert_eq!(env.ws.frames_of("add_order").len(), 3);
    assert!(env.fake.calls_of("AddOrder").is_empty());
    let stats = env.socket().stats();
    assert!(stats.execution_messages >= 3, "{stats:?}");
    env.fake.assert_clean();
    env.app.shutdown().await;
}

#[actix_web::test]
async fn a_dropped_socket_reconnects_resubscribes_and_the_gap_reconciliation_finds_the_missed_fill() {
    let env = live_app(|_| {}).await;
    env.enter_long().await;
    let socket = env.socket();
    assert_eq!(env.ws.subscriptions(), 1);

    // The network drops the socket and Kraken is unreachable over it for a while.
    let queries = env.fake.calls_of("QueryOrders").len();
    env.ws.refuse_connections(true);
    env.ws.drop_sockets();
    env.wait("socket down", || !socket.is_up()).await;
    // The manager was told and checks over REST now (the rate gate may delay it): let those
    // checks finish before the fill, so only the gap reconciliation can find it.
    env.wait("the manager checked over REST", || {
        env.fake.calls_of("QueryOrders").len() > queries
    })
    .await;
    loop {
        let n = env.fake.calls_of("QueryOrders").len();
        actix::clock::sleep(Duration::from_millis(1500)).await;
        if env.fake.calls_of("QueryOrders").len() == n {
            break;
        }
    }
    // The entry fills while nobody listens: no executions message will ever tell of it.
    env.fill_entry();
    actix::clock::sleep(Duration::from_millis(800)).await;
    assert!(!env.protected(), "nothing can know of the fill yet");
    let closed_before = env.fake.calls_of("ClosedOrders").len();

    env.ws.refuse_connections(false);
    env.wait_for(
        "reconnected, resubscribed and protected",
        Duration::from_secs(15),
        || env.protected(),
    )
    .await;
    assert!(env.ws.subscriptions() >= 2, "resubscribed");
    assert!(socket.is_synced());
    let stats = socket.stats();
    assert!(stats.connects >= 2 && stats.gap_reconciliations >= 2, "{stats:?}");
    // The gap was reconciled over REST: the order we tracked and the orders closed since the drop.
    assert!(env.fake.calls_of("ClosedOrders").len() > closed_before);
    assert!(env
        .fake
        .calls_of("QueryOrders")
        .iter()
        .any(|c| c.form.get("txid").is_some_and(|t| t.contains("OTX-1"))));
    let pos = env.open_position().await;
    assert_eq!(pos.size, dec("0.02"));
    env.fake.assert_clean();
    env.app.shutdown().await;
}

#[actix_web::test]
async fn graceful_shutdown_confirms_the_stop_then_disarms_the_switch_and_the_stop_survives() {
    let env = live_app(|s| {
        // Short enough to watch it run out; the refresh leaves half the Pro decay to the rest.
        s.kraken.dead_mans_switch_secs = 3;
        s.kraken.dead_mans_switch_refresh_secs = 2;
    })
    .await;
    env.enter_long().await;
    env.fill_entry();
    env.wait("protected", || env.protected()).await;
    let stop_txid = env.fake.orders().into_iter().find(is_sl).unwrap().txid;
    // While the server runs the switch is refreshed in time: it never fires.
    actix::clock::sleep(Duration::from_millis(2500)).await;
    assert!(!apply_dead_mans_switch(&env.fake), "refreshed within its timeout");
    let calls_before = env.fake.book.lock().unwrap().calls.len();

    // SIGTERM's path in-process: HTTP stops, the actors drain, then the live shutdown.
    let Live { fake, ws: _ws, app } = env;
    app.shutdown().await;
    let calls: Vec<_> = fake.book.lock().unwrap().calls[calls_before..].to_vec();
    let disarm = calls
        .iter()
        .rposition(|c| c.method == "CancelAllOrdersAfter" && c.form.get("timeout").map(String::as_str) == Some("0"))
        .expect("the switch is disarmed at shutdown");
    let confirm = calls
        .iter()
        .position(|c| c.method == "QueryOrders" && c.form.get("txid").is_some_and(|t| t.contains(&stop_txid)))
        .expect("the stop is confirmed on Kraken at shutdown");
    assert!(confirm < disarm, "confirmed before disarming: {calls:?}");
    assert!(
        !calls[disarm..]
            .iter()
            .any(|c| c.method == "CancelAllOrdersAfter" && c.form.get("timeout").map(String::as_str) != Some("0")),
        "never re-armed after the disarm"
    );
    // Long after the timeout, the stop is still on Kraken.
    actix::clock::sleep(Duration::from_millis(3500)).await;
    assert!(!apply_dead_mans_switch(&fake), "disarmed: nothing fires");
    assert!(fake.orders().iter().any(|o| o.txid == stop_txid && o.status == "open"));
    fake.assert_clean();
}

#[actix_web::test]
async fn a_second_serve_on_the_same_api_key_exits_2_naming_the_lock() {
    let env = live_app(|_| {}).await;
    let db_url = env.app.db.as_ref().unwrap().url.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_triplegain"))
            .args(["serve"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("TRIPLEGAIN_ENV")
            .env("DATABASE_URL", db_url)
            .env("KRAKEN_API_KEY", KEY)
            .env("KRAKEN_API_SECRET", SECRET)
            .env(LIVE_TRADING_CONFIRMATION_VAR, LIVE_TRADING_CONFIRMATION)
            .env("TRIPLEGAIN__APP__MODE", "live")
            .env("TRIPLEGAIN__SERVER__BIND", "127.0.0.1:0")
            .env("TRIPLEGAIN__MARKET__SOURCE", "kraken")
            // Another account (its own schema and account lock) on the same Kraken key.
            .env("TRIPLEGAIN__APP__ACCOUNT", "second")
            .env("TRIPLEGAIN__KRAKEN__BASE_URL", "http://127.0.0.1:9")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("advisory lock triplegain.kraken_api_key"), "{err}");
    // The first process is untouched.
    assert!(env.socket().is_synced());
    env.app.shutdown().await;
}

/// Idle REST load with one protected position, against a starter-tier fake (15, −0.33/s).
/// `TG_IDLE_WINDOW_SECS` sets the measured window (default 60; docs/BENCHMARKS.md records 300).
#[actix_web::test]
async fn idle_rest_load_with_one_protected_position_stays_under_a_quarter_of_the_starter_decay() {
    let window = Duration::from_secs(
        std::env::var("TG_IDLE_WINDOW_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let fake = FakeKraken::start_with_counter(15.0, 0.33).await;
    let env = live_app_on(fake, |s| {
        s.kraken.tier = "starter".into();
        // Measured as shipped: the manager's 5 s poll, 60 s snapshots, the switch every 30 s.
        s.execution.tracking.poll_interval_ms = 5_000;
        s.kraken.start_charged = false;
    })
    .await;
    env.enter_long().await;
    env.fill_entry();
    env.wait("protected", || env.protected()).await;
    env.open_position().await;
    // Settle: the protection's own calls are not idle load.
    actix::clock::sleep(Duration::from_secs(2)).await;

    let start = Instant::now();
    let from = env.fake.book.lock().unwrap().calls.len();
    actix::clock::sleep(window).await;
    let calls: Vec<_> = env.fake.book.lock().unwrap().calls[from..].to_vec();
    let elapsed = start.elapsed().as_secs_f64();
    let cost = |m: &str| match m {
        "AddOrder" | "CancelOrder" | "EditOrder" | "AmendOrder" => 0.0,
        "ClosedOrders" | "TradesHistory" | "Ledgers" => 2.0,
        _ => 1.0,
    };
    let points: f64 = calls.iter().map(|c| cost(&c.method)).sum();
    let mut by_method = std::collections::BTreeMap::<String, usize>::new();
    for c in &calls {
        *by_method.entry(c.method.clone()).or_default() += 1;
    }
    let rate = points / elapsed;
    let share = rate / 0.33;
    eprintln!(
        "idle REST load: {points} points in {elapsed:.1} s = {rate:.4} points/s = {:.1} % of the starter decay (0.33/s); calls {by_method:?}",
        share * 100.0
    );
    assert!(share <= 0.25, "{:.1} % of the decay: {by_method:?}", share * 100.0);
    assert!(env.protected(), "still protected");
    env.fake.assert_clean();
    env.app.shutdown().await;
}

fn ohlc_entry(minute: u32, open: &str, close: &str) -> serde_json::Value {
    serde_json::json!({"symbol": "BTC/USDT", "open": open.parse::<f64>().unwrap(), "high": 50100.0, "low": 49900.0,
        "close": close.parse::<f64>().unwrap(), "trades": 3, "volume": 0.5, "vwap": 50000.0,
        "interval_begin": format!("2026-12-07T10:{minute:02}:00.000000000Z"), "interval": 1,
        "timestamp": format!("2026-12-07T10:{minute:02}:30.000000Z")})
}

#[actix_web::test]
async fn public_ohlc_and_ticker_arrive_over_the_socket_and_rest_polls_while_it_is_down() {
    use triplegain::market::{KrakenPublicFeed, KrakenWsFeed};
    use triplegain_actors::ports::{FeedItem, MarketFeed};
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, ResponseTemplate};
    let fake = FakeKraken::start().await;
    let ws = FakeKrakenWs::start(fake.book.clone()).await;
    let t = |m: i64| 1_796_637_600 + m * 60; // 2026-12-07 10:00 UTC + m minutes
    Mock::given(method("GET"))
        .and(path("/0/public/OHLC"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(kraken_wire::ok(serde_json::json!({
            "XBTUSDT": [[t(4), "50000", "50100", "49900", "50010", "50000", "0.4", 4],
                        [t(5), "50010", "50100", "49900", "50020", "50000", "0.3", 3],
                        [t(6), "50020", "50100", "49900", "50030", "50000", "0.1", 1]],
            "last": t(5)}))),
        )
        .mount(&fake.server)
        .await;
    let btc = Symbol::parse("BTC/USDT").unwrap();
    let rest = KrakenPublicFeed::new(&fake.uri(), vec![btc.clone()])
        .unwrap()
        .with_poll_interval(Duration::ZERO);
    let mut feed = KrakenWsFeed::new(&ws.url, vec![btc.clone()], rest).with_idle_after(Duration::from_millis(300));
    feed.start();
    let started = Instant::now();
    while !feed.is_up() {
        assert!(started.elapsed() < Duration::from_secs(5), "public socket subscribed");
        actix::clock::sleep(Duration::from_millis(20)).await;
    }
    let subs = ws.frames_of("subscribe");
    assert!(subs
        .iter()
        .any(|f| f["params"]["channel"] == "ohlc" && f["params"]["interval"] == 1));
    assert!(subs
        .iter()
        .any(|f| f["params"]["channel"] == "ticker" && f["params"]["symbol"][0] == "BTC/USDT"));

    // Updates of the 10:03 candle, then the first trade of 10:04: 10:03 is final.
    ws.push_public("ohlc", serde_json::json!([ohlc_entry(3, "50000", "50005")]));
    ws.push_public("ohlc", serde_json::json!([ohlc_entry(3, "50000", "50007.5")]));
    ws.push_public(
        "ticker",
        serde_json::json!([{"symbol": "BTC/USDT", "bid": 50007.0, "bid_qty": 1.0,
        "ask": 50008.0, "ask_qty": 1.0, "last": 50007.5, "volume": 10.0, "vwap": 50000.0, "low": 49000.0,
        "high": 51000.0, "change": 7.5, "change_pct": 0.01}]),
    );
    actix::clock::sleep(Duration::from_millis(100)).await;
    assert_eq!(feed.next().await.unwrap(), FeedItem::Idle, "10:03 is still forming");
    ws.push_public("ohlc", serde_json::json!([ohlc_entry(4, "50007.5", "50010")]));
    let FeedItem::Candles(c) = feed.next().await.unwrap() else {
        panic!("a closed candle")
    };
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].open_time.to_rfc3339(), "2026-12-07T10:03:00+00:00");
    assert_eq!(
        (c[0].open, c[0].close, c[0].volume),
        (dec("50000"), dec("50007.5"), dec("0.5"))
    );
    let tick = feed.tickers()[&btc];
    assert_eq!(
        (tick.last, tick.bid, tick.ask),
        (dec("50007.5"), dec("50007"), dec("50008"))
    );

    // The socket drops and stays away: REST polls OHLC, closed candles only, each once.
    ws.refuse_connections(true);
    ws.drop_sockets();
    let started = Instant::now();
    while feed.is_up() {
        assert!(started.elapsed() < Duration::from_secs(5));
        actix::clock::sleep(Duration::from_millis(20)).await;
    }
    let FeedItem::Candles(c) = feed.next().await.unwrap() else {
        panic!("REST candles")
    };
    let times: Vec<i64> = c.iter().map(|c| c.open_time.timestamp()).collect();
    assert_eq!(times, vec![t(4), t(5)], "10:06 is forming and dropped");
    assert_eq!(feed.next().await.unwrap(), FeedItem::Idle, "nothing twice");

    // Back on the socket: candles REST already gave are not repeated.
    ws.refuse_connections(false);
    let started = Instant::now();
    while !feed.is_up() {
        assert!(started.elapsed() < Duration::from_secs(10), "public socket back");
        actix::clock::sleep(Duration::from_millis(20)).await;
    }
    ws.push_public("ohlc", serde_json::json!([ohlc_entry(5, "50010", "50020")]));
    ws.push_public("ohlc", serde_json::json!([ohlc_entry(6, "50020", "50030")]));
    ws.push_public("ohlc", serde_json::json!([ohlc_entry(7, "50030", "50040")]));
    actix::clock::sleep(Duration::from_millis(100)).await;
    let FeedItem::Candles(c) = feed.next().await.unwrap() else {
        panic!("socket candles")
    };
    let times: Vec<i64> = c.iter().map(|c| c.open_time.timestamp()).collect();
    assert_eq!(times, vec![t(6)]);
}

#[actix_web::test]
async fn an_add_order_without_a_socket_reply_is_unknown_and_resolved_by_client_id() {
    let env = live_app(|s| s.kraken.ws_reply_timeout_ms = 400).await;
    // The order reaches the book but its reply comes only after the client gave up waiting.
    env.fake.script(
        "ws:add_order",
        [kraken_fake::Fault::PlaceThenDelay(Duration::from_secs(3))],
    );
    let err = env.try_enter_long().await.unwrap_err();
    assert!(
        matches!(err, triplegain_actors::execution::api::ExecutionError::Unknown(_)),
        "{err:?}"
    );
    // Exactly like an ambiguous REST reply: looked up by client id, adopted with Kraken's id,
    // never sent again.
    let t = Instant::now();
    loop {
        let orders = env.app.state.stores.orders.list_orders(None, false, 10).await.unwrap();
        if orders
            .first()
            .is_some_and(|o| o.view.status == OrderStatus::Open && o.view.exchange_order_id.as_deref() == Some("OTX-1"))
        {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "never resolved: {orders:?}");
        actix::clock::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(env.fake.orders().len(), 1, "nothing re-sent");
    assert_eq!(env.ws.frames_of("add_order").len(), 1);
    assert!(env.fake.calls_of("AddOrder").is_empty());
    env.fake.assert_clean();
    env.app.shutdown().await;
}

#[actix_web::test]
async fn the_switch_refresh_keeps_its_share_while_polling_saturates_the_counter_and_after_a_rate_limit_reply() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use triplegain::kraken::{
        spawn_dead_mans_switch, DeadMansSwitchConfig, KrakenClient, KrakenConfig, KrakenCredentials, KrakenExchange,
        Tier,
    };
    // Starter: 15 points, −0.33/s; 2 points and 3 calls a minute kept for the switch.
    let fake = FakeKraken::start_with_counter(15.0, 0.33).await;
    let cfg = KrakenConfig {
        base_url: fake.uri(),
        tier: Tier::Starter,
        max_rate_wait: Duration::from_secs(2),
        retry_backoff: Duration::from_millis(10),
        reserved_rest_points: 2.0,
        reserved_calls: 3,
        ..KrakenConfig::default()
    };
    let client = KrakenClient::new(cfg, Some(KrakenCredentials::new(KEY, SECRET))).unwrap();
    let ex = KrakenExchange::connect(client.clone(), &[Symbol::parse("BTC/USDT").unwrap()])
        .await
        .unwrap();
    // Polling takes every point it can get.
    let stop = Arc::new(AtomicBool::new(false));
    let (poller, stop2) = (client.clone(), stop.clone());
    actix_web::rt::spawn(async move {
        while !stop2.load(Ordering::SeqCst) {
            let _ = poller.balance().await;
            actix::clock::sleep(Duration::from_millis(50)).await;
        }
    });
    actix::clock::sleep(Duration::from_secs(3)).await;
    assert!(
        client.rest_gate().value() >= 12.0,
        "polling filled its lane: {}",
        client.rest_gate().value()
    );

    // Kraken answers the first refresh with a rate-limit error (its counter is fuller than ours).
    fake.script(
        "CancelAllOrdersAfter",
        [kraken_fake::Fault::Error("EAPI:Rate limit exceeded".into())],
    );
    let handle = spawn_dead_mans_switch(
        Arc::new(ex),
        DeadMansSwitchConfig {
            timeout_secs: 60,
            refresh_every: Duration::from_secs(2),
        },
    )
    .unwrap();
    actix::clock::sleep(Duration::from_secs(12)).await;
    stop.store(true, Ordering::SeqCst);
    handle.stop(false).await.unwrap();

    let arms = fake.calls_of("CancelAllOrdersAfter");
    // Refused once by Kraken, retried after one point of decay (~3 s), then every 2 s: never a
    // gap anywhere near the 60 s timeout, although polling kept the counter full.
    assert!(arms.len() >= 4, "{} refreshes in 12 s", arms.len());
    let gaps: Vec<Duration> = arms.windows(2).map(|w| w[1].at.duration_since(w[0].at)).collect();
    assert!(gaps.iter().all(|g| *g < Duration::from_secs(6)), "{gaps:?}");
    assert!(!fake.calls_of("Balance").is_empty(), "polling still ran");
    fake.assert_clean();
}

#[actix_web::test]
async fn a_take_profit_fill_by_executions_cancels_the_stop_over_the_socket_and_closes_the_position() {
    let env = live_app(|_| {}).await;
    env.enter_long().await;
    env.fill_entry();
    env.wait("protected", || env.protected()).await;
    env.open_position().await;
    actix::clock::sleep(Duration::from_millis(300)).await;
    // Kraken fills the take-profit; only the executions update tells the manager.
    env.fake.update(is_tp, |o| {
        o.status = "closed".into();
        o.vol_exec = "0.02".into();
        o.avg = "52000".into();
        o.fee = "2.7".into();
    });
    env.wait("the stop cancelled (one-cancels-other)", || {
        env.fake
            .orders()
            .iter()
            .any(|o| o.ordertype == "stop-loss" && o.status == "canceled")
    })
    .await;
    assert_eq!(env.ws.frames_of("cancel_order").len(), 1, "cancelled over the socket");
    assert!(env.fake.calls_of("CancelOrder").is_empty(), "not over REST");
    let t = Instant::now();
    loop {
        let ps = env
            .app
            .state
            .stores
            .orders
            .list_positions(None, None, 10)
            .await
            .unwrap();
        if let Some(p) = ps.iter().find(|p| p.status == PositionStatus::Closed) {
            // (52000 − 49990) × 0.02 − 2.59948 − 2.7
            assert_eq!(p.realized_pnl, dec("34.90052"));
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "position never closed: {ps:?}");
        actix::clock::sleep(Duration::from_millis(50)).await;
    }
    env.fake.assert_clean();
    env.app.shutdown().await;
}
