#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]
//! The real execution manager on the real Kraken adapter against a fake Kraken on 127.0.0.1 that
//! verifies `API-Sign`, refuses non-increasing nonces, keeps the tier's REST counter and an order
//! book, and plays scripted faults: entries, fills, protection, one-cancels-other, partial fills,
//! rejections, nonce retries, ambiguous placements resolved by client id, and rate budgets.

#[allow(dead_code, reason = "the PostgreSQL helpers of the API tests, a subset used here")]
#[path = "api/helpers.rs"]
mod helpers;
#[path = "common/kraken_fake.rs"]
mod kraken_fake;
#[path = "common/kraken_wire.rs"]
mod kraken_wire;

use actix::prelude::*;
use kraken_fake::{BookOrder, FakeKraken, Fault};
use kraken_wire::{KEY, SECRET};
use rust_decimal::Decimal;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use triplegain::kraken::{KrakenClient, KrakenConfig, KrakenCredentials, KrakenExchange, Tier};
use triplegain_actors::bus::Topic;
use triplegain_actors::clock::SystemClock;
use triplegain_actors::domain::{
    CorrelationId, OrderStatus, OrderType, PositionStatus, Priority, Regime, Side, Symbol,
};
use triplegain_actors::execution::api::{ExecuteTrade, ExecutionError, ExecutionResult, PositionView};
use triplegain_actors::execution::manager::{
    ExecutionConfig, IsReady, ManagerDeps, OrderExecutionManager, PollNow, PriceUpdate, SyncNow,
};
use triplegain_actors::messages::{AlertType, RiskAlert};
use triplegain_actors::ports::{Exchange, OrderRecord, OrderStore};
use triplegain_actors::risk::{ProposalSource, RiskApproved, TradeProposal};
use triplegain_actors::supervision::{start_supervised, Registry, RestartPolicy};

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn btc() -> Symbol {
    Symbol::parse("BTC/USDT").unwrap()
}

struct Collector(Arc<Mutex<Vec<RiskAlert>>>);
impl Actor for Collector {
    type Context = Context<Self>;
}
impl Handler<RiskAlert> for Collector {
    type Result = ();
    fn handle(&mut self, msg: RiskAlert, _: &mut Context<Self>) {
        self.0.lock().unwrap().push(msg);
    }
}

struct Env {
    fake: FakeKraken,
    exchange: KrakenExchange,
    addr: Addr<OrderExecutionManager>,
    stores: triplegain_actors::ports::Stores,
    alerts: Arc<Mutex<Vec<RiskAlert>>>,
    _registry: Registry,
}

/// Polling only on demand (`PollNow`) so each scenario decides when the manager looks.
fn exec_config() -> ExecutionConfig {
    ExecutionConfig {
        poll_interval_ms: 3_600_000,
        protection_retry_ms: 50,
        protection_retry_max_ms: 200,
        retry_delay_ms: 10,
        snapshot_interval_secs: 3600,
        ..ExecutionConfig::default()
    }
}

fn kraken_config(uri: String) -> KrakenConfig {
    KrakenConfig {
        base_url: uri,
        timeout: Duration::from_secs(2),
        tier: Tier::Pro,
        max_rate_wait: Duration::from_secs(5),
        retry_backoff: Duration::from_millis(10),
        ..KrakenConfig::default()
    }
}

async fn env() -> Env {
    env_with(exec_config(), |_| {}).await
}

async fn env_with(cfg: ExecutionConfig, tweak: impl FnOnce(&mut KrakenConfig)) -> Env {
    let fake = FakeKraken::start().await;
    let mut kcfg = kraken_config(fake.uri());
    tweak(&mut kcfg);
    let client = KrakenClient::new(kcfg, Some(KrakenCredentials::new(KEY, SECRET))).unwrap();
    let exchange = KrakenExchange::connect(client, &[btc()]).await.unwrap();
    let stores = triplegain::db::memory_stores();
    let alerts_topic: Topic<RiskAlert> = Topic::new();
    let alerts = Arc::new(Mutex::new(Vec::new()));
    alerts_topic.subscribe("test", Collector(alerts.clone()).start().recipient());
    let registry = Registry::new(RestartPolicy::default(), alerts_topic.clone(), Arc::new(SystemClock));
    let deps = ManagerDeps {
        config: cfg,
        exchange: Arc::new(exchange.clone()),
        paper: None,
        feed_paper: false,
        orders: stores.orders.clone(),
        state: stores.state.clone(),
        audit: stores.audit.clone(),
        events: Topic::new(),
        portfolio: Topic::new(),
        alerts: alerts_topic,
        clock: Arc::new(SystemClock),
        outbox: None,
    };
    let addr = start_supervised(&registry, "execution_manager", true, 256, move |sup| {
        OrderExecutionManager::new(sup, deps)
    });
    let mut ready = false;
    for _ in 0..150 {
        if addr.send(IsReady).await.unwrap() {
            ready = true;
            break;
        }
        actix::clock::sleep(Duration::from_millis(20)).await;
    }
    assert!(ready, "manager ready");
    Env {
        fake,
        exchange,
        addr,
        stores,
        alerts,
        _registry: registry,
    }
}

fn proposal(side: Side, size_usd: &str, entry: &str, sl: Option<&str>, tp: Option<&str>) -> TradeProposal {
    TradeProposal {
        symbol: btc(),
        side,
        size_usd: dec(size_usd),
        entry_price: dec(entry),
        stop_loss: sl.map(dec),
        take_profit: tp.map(dec),
        leverage: 1,
        confidence: 0.8,
        regime: Regime::TrendingBull,
        source: ProposalSource::Manual,
        correlation_id: CorrelationId::new(),
        reduce_only: false,
    }
}

fn trade(p: TradeProposal, order_type: OrderType) -> ExecuteTrade {
    ExecuteTrade {
        order_type,
        ..ExecuteTrade::limit(RiskApproved::for_tests(p))
    }
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..250 {
        if f().await {
            return;
        }
        actix::clock::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn is_sl(o: &BookOrder) -> bool {
    o.ordertype == "stop-loss"
}

fn is_tp(o: &BookOrder) -> bool {
    o.ordertype == "limit" && o.side == "sell"
}

fn is_entry(o: &BookOrder) -> bool {
    o.side == "buy"
}

impl Env {
    async fn execute(&self, p: TradeProposal, ty: OrderType) -> Result<ExecutionResult, ExecutionError> {
        self.addr.send(trade(p, ty)).await.unwrap()
    }

    async fn positions(&self) -> Vec<PositionView> {
        self.stores.orders.list_positions(None, None, 100).await.unwrap()
    }

    async fn orders(&self) -> Vec<OrderRecord> {
        self.stores.orders.list_orders(None, false, 100).await.unwrap()
    }

    /// Kraken fills (part of) the entry; `closed` ends it (filled, or cancelled when partial).
    fn fill(&self, pred: fn(&BookOrder) -> bool, vol: &str, avg: &str, fee: &str, status: &str) {
        self.fake.update(pred, |o| {
            o.status = status.into();
            o.vol_exec = vol.into();
            o.avg = avg.into();
            o.fee = fee.into();
        });
    }

    /// Polls until the book holds an open stop and an open take-profit for `vol`.
    async fn wait_protected(&self, vol: &str, sl: &str, tp: &str) {
        for _ in 0..250 {
            self.addr.do_send(PollNow);
            let b = self.fake.orders();
            let s = b.iter().find(|o| is_sl(o) && o.status == "open");
            let t = b.iter().find(|o| is_tp(o) && o.status == "open");
            if let (Some(s), Some(t)) = (s, t) {
                assert_eq!((s.side.as_str(), s.vol.as_str(), s.price.as_str()), ("sell", vol, sl));
                assert_eq!((t.vol.as_str(), t.price.as_str()), (vol, tp));
                return;
            }
            actix::clock::sleep(Duration::from_millis(20)).await;
        }
        panic!("stop and take-profit never placed: {:?}", self.fake.orders());
    }

    async fn wait_position_status(&self, status: PositionStatus) -> PositionView {
        for _ in 0..250 {
            self.addr.do_send(PollNow);
            if let Some(p) = self.positions().await.into_iter().find(|p| p.status == status) {
                return p;
            }
            actix::clock::sleep(Duration::from_millis(20)).await;
        }
        panic!("no {status:?} position: {:?}", self.positions().await);
    }

    /// Opens a protected 0.02 BTC long from a 1000 USD limit entry at 50000 filled at 49990.
    async fn protected_long(&self) -> PositionView {
        let p = proposal(Side::Buy, "1000", "50000", Some("49000"), Some("52000"));
        let res = self.execute(p, OrderType::Limit).await.unwrap();
        assert_eq!(res.orders[0].status, OrderStatus::Open);
        self.fill(is_entry, "0.02", "49990.0", "2.59948", "closed");
        self.wait_protected("0.02", "49000", "52000").await;
        let pos = self.wait_position_status(PositionStatus::Open).await;
        assert_eq!(
            (pos.size, pos.entry_price, pos.fees),
            (dec("0.02"), dec("49990"), dec("2.59948"))
        );
        pos
    }
}

// ------------------------------------------------------------------ entries and protection

#[actix::test]
async fn limit_entry_fills_and_stop_and_take_profit_are_placed_then_the_take_profit_cancels_the_stop() {
    let env = env().await;
    // 49999.99 is quantised to the 0.1 tick; the volume is truncated to the 8 lot decimals.
    let p = proposal(Side::Buy, "777", "49999.99", Some("49000.04"), Some("52000"));
    let res = env.execute(p, OrderType::Limit).await.unwrap();
    let entry = &res.orders[0];
    assert_eq!(entry.status, OrderStatus::Open);
    assert_eq!(entry.exchange_order_id.as_deref(), Some("OTX-1"));
    let book = env.fake.orders();
    assert_eq!(book.len(), 1);
    assert_eq!(
        (book[0].ordertype.as_str(), book[0].price.as_str(), book[0].vol.as_str()),
        ("limit", "50000", "0.01554")
    );
    // The stored record was pending before the request, then open.
    let log = env.stores.orders.status_log(entry.id).await.unwrap();
    assert_eq!(
        log.iter().map(|t| t.to).collect::<Vec<_>>(),
        vec![OrderStatus::Pending, OrderStatus::Open]
    );

    env.fill(is_entry, "0.01554", "49990.0", "1.5", "closed");
    env.wait_protected("0.01554", "49000", "52000").await;
    let pos = env.wait_position_status(PositionStatus::Open).await;
    assert_eq!(pos.size, dec("0.01554"));
    assert!(pos.stop_loss_order_id.is_some() && pos.take_profit_order_id.is_some());

    // The take-profit fills: the stop is cancelled on Kraken and the position closes.
    env.fill(is_tp, "0.01554", "52000", "1.2", "closed");
    let closed = env.wait_position_status(PositionStatus::Closed).await;
    eventually("stop cancelled", || async {
        env.fake.orders().iter().any(|o| is_sl(o) && o.status == "canceled")
    })
    .await;
    // (52000 − 49990) × 0.01554 − 1.5 − 1.2
    assert_eq!(closed.realized_pnl, dec("28.5354"));
    assert_eq!(closed.exit_price, Some(dec("52000")));
    assert_eq!(env.fake.orders().iter().filter(|o| o.status == "open").count(), 0);
    assert_eq!(env.fake.calls_of("AddOrder").len(), 3, "entry, stop, take-profit");
    env.fake.assert_clean();
}

#[actix::test]
async fn market_entry_is_sent_as_a_limit_bounded_by_the_configured_slippage() {
    let env = env().await;
    let res = env
        .execute(
            proposal(Side::Buy, "777", "49999.99", Some("49000"), Some("52000")),
            OrderType::Market,
        )
        .await
        .unwrap();
    // 49999.99 × 1.005 = 50249.98995 → 50250 on the 0.1 tick.
    assert_eq!(res.orders[0].price, Some(dec("50250")));
    let add = &env.fake.calls_of("AddOrder")[0];
    assert_eq!(add.form["ordertype"], "limit");
    assert_eq!(add.form["price"], "50250");
    assert_eq!(add.form["volume"], "0.01554");
    assert!(add.form.contains_key("cl_ord_id"));

    // A sell is bounded below the reference.
    let mut short = proposal(Side::Sell, "1000", "50000", Some("51000"), Some("48000"));
    short.leverage = 2;
    env.execute(short, OrderType::Market).await.unwrap();
    let add = &env.fake.calls_of("AddOrder")[1];
    assert_eq!(
        (add.form["type"].as_str(), add.form["price"].as_str()),
        ("sell", "49750")
    );
    assert_eq!(add.form["volume"], "0.04");
    assert_eq!(add.form["leverage"], "2");
    env.fake.assert_clean();
}

#[actix::test]
async fn a_filled_stop_cancels_the_take_profit_and_closes_the_position() {
    let env = env().await;
    env.protected_long().await;
    env.fill(is_sl, "0.02", "48990", "2.5", "closed");
    let closed = env.wait_position_status(PositionStatus::Closed).await;
    eventually("take-profit cancelled", || async {
        env.fake.orders().iter().any(|o| is_tp(o) && o.status == "canceled")
    })
    .await;
    // (48990 − 49990) × 0.02 − 2.59948 − 2.5
    assert_eq!(closed.realized_pnl, dec("-25.09948"));
    assert_eq!(env.fake.orders().iter().filter(|o| o.status == "open").count(), 0);
    env.fake.assert_clean();
}

#[actix::test]
async fn a_partial_fill_then_cancel_leaves_a_protected_position_for_the_filled_part() {
    let env = env().await;
    let p = proposal(Side::Buy, "1000", "50000", Some("49000"), Some("52000"));
    env.execute(p, OrderType::Limit).await.unwrap();
    // Kraken fills 0.0075 of 0.02, then the rest is cancelled.
    env.fill(is_entry, "0.0075", "50000", "0.975", "canceled");
    env.wait_protected("0.0075", "49000", "52000").await;
    let pos = env.wait_position_status(PositionStatus::Open).await;
    assert_eq!((pos.size, pos.entry_price), (dec("0.0075"), dec("50000")));
    let entry = env
        .orders()
        .await
        .into_iter()
        .find(|o| o.view.purpose.as_str() == "entry")
        .unwrap();
    assert_eq!(entry.view.status, OrderStatus::Cancelled);
    assert_eq!(entry.view.filled_volume, dec("0.0075"));
    env.fake.assert_clean();
}

// ------------------------------------------------------------------ errors

#[actix::test]
async fn insufficient_funds_is_rejected_and_never_retried() {
    let env = env().await;
    env.fake
        .script("AddOrder", [Fault::Error("EOrder:Insufficient funds".into())]);
    let err = env
        .execute(
            proposal(Side::Buy, "1000", "50000", Some("49000"), None),
            OrderType::Limit,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ExecutionError::Rejected(ref m) if m.contains("Insufficient funds")),
        "{err:?}"
    );
    actix::clock::sleep(Duration::from_millis(200)).await;
    env.addr.do_send(PollNow);
    actix::clock::sleep(Duration::from_millis(100)).await;
    assert_eq!(env.fake.calls_of("AddOrder").len(), 1, "exactly one AddOrder");
    assert!(env.fake.orders().is_empty());
    let orders = env.orders().await;
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].view.status, OrderStatus::Rejected);
    assert!(env.positions().await.is_empty());
    // The rejection is a risk alert, not only an event.
    let alerts = env.alerts.lock().unwrap().clone();
    assert!(
        alerts.iter().any(|a| a.alert_type == AlertType::ExecutionError
            && a.severity == triplegain_actors::domain::Severity::High
            && a.message.contains("Insufficient funds")),
        "{alerts:?}"
    );
    env.fake.assert_clean();
}

#[actix::test]
async fn an_invalid_nonce_is_retried_once_with_a_fresh_nonce_and_signature() {
    let env = env().await;
    env.fake.script("AddOrder", [Fault::Error("EAPI:Invalid nonce".into())]);
    let res = env
        .execute(
            proposal(Side::Buy, "1000", "50000", Some("49000"), None),
            OrderType::Limit,
        )
        .await
        .unwrap();
    assert_eq!(res.orders[0].status, OrderStatus::Open);
    let adds = env.fake.calls_of("AddOrder");
    assert_eq!(adds.len(), 2, "one retry");
    assert!(adds[1].nonce > adds[0].nonce, "fresh nonce");
    assert_ne!(adds[1].signature, adds[0].signature, "fresh signature");
    assert_eq!(adds[0].form["cl_ord_id"], adds[1].form["cl_ord_id"], "the same order");
    assert_eq!(env.fake.orders().len(), 1);

    // A nonce refused twice is not retried a second time.
    env.fake.script(
        "AddOrder",
        [
            Fault::Error("EAPI:Invalid nonce".into()),
            Fault::Error("EAPI:Invalid nonce".into()),
        ],
    );
    let err = env
        .execute(
            proposal(Side::Buy, "1000", "50000", Some("49000"), None),
            OrderType::Limit,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ExecutionError::Rejected(_)), "{err:?}");
    assert_eq!(env.fake.calls_of("AddOrder").len(), 4);
    assert_eq!(env.fake.orders().len(), 1);
    env.fake.assert_clean();
}

async fn ambiguous_placement_is_resolved_by_client_id(env: Env) {
    let err = env
        .execute(
            proposal(Side::Buy, "1000", "50000", Some("49000"), Some("52000")),
            OrderType::Limit,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ExecutionError::Unknown(_)), "{err:?}");
    let rec = env.orders().await.into_iter().next().unwrap();
    assert_eq!(rec.view.status, OrderStatus::Unknown);
    assert!(env
        .alerts
        .lock()
        .unwrap()
        .iter()
        .any(|a| a.alert_type == AlertType::ExecutionError));
    // The poll finds the order by its client id: open, with Kraken's txid; nothing re-sent.
    eventually("order resolved as open", || async {
        env.addr.do_send(PollNow);
        env.orders().await[0].view.status == OrderStatus::Open
    })
    .await;
    let rec = env.orders().await.into_iter().next().unwrap();
    assert_eq!(rec.view.exchange_order_id.as_deref(), Some("OTX-1"));
    assert!(!env.fake.calls_of("OpenOrders").is_empty(), "searched by cl_ord_id");
    let cl = env.fake.orders()[0].cl.clone();
    assert!(env
        .fake
        .calls_of("OpenOrders")
        .iter()
        .any(|c| c.form.get("cl_ord_id") == Some(&cl)));
    // It fills and is protected like any other.
    env.fill(is_entry, "0.02", "50000", "2.6", "closed");
    env.wait_protected("0.02", "49000", "52000").await;
    assert_eq!(
        env.fake.orders().iter().filter(|o| is_entry(o)).count(),
        1,
        "exactly one entry on Kraken"
    );
    assert_eq!(
        env.fake
            .calls_of("AddOrder")
            .iter()
            .filter(|c| c.form["type"] == "buy")
            .count(),
        1,
        "the entry was never resubmitted"
    );
    env.fake.assert_clean();
}

#[actix::test]
async fn service_unavailable_after_the_order_reached_kraken_is_resolved_by_client_id() {
    let env = env().await;
    env.fake
        .script("AddOrder", [Fault::PlaceThenError("EService:Unavailable".into())]);
    ambiguous_placement_is_resolved_by_client_id(env).await;
}

#[actix::test]
async fn a_timed_out_add_order_that_reached_kraken_is_resolved_by_client_id() {
    let env = env_with(exec_config(), |k| k.timeout = Duration::from_millis(400)).await;
    env.fake
        .script("AddOrder", [Fault::PlaceThenDelay(Duration::from_millis(1500))]);
    ambiguous_placement_is_resolved_by_client_id(env).await;
}

#[actix::test]
async fn a_stop_failing_twice_raises_urgent_alerts_and_is_placed_on_the_third_attempt() {
    let env = env().await;
    env.fake.script(
        "AddOrder:stop-loss",
        [
            Fault::Error("EOrder:Orders limit exceeded".into()),
            Fault::Error("EOrder:Orders limit exceeded".into()),
        ],
    );
    env.protected_long().await;
    let stops = env.fake.calls_of("AddOrder");
    assert_eq!(stops.iter().filter(|c| c.form["ordertype"] == "stop-loss").count(), 3);
    assert_eq!(
        env.fake.orders().iter().filter(|o| is_sl(o)).count(),
        1,
        "one stop on Kraken"
    );
    let alerts = env.alerts.lock().unwrap().clone();
    let missing: Vec<&RiskAlert> = alerts
        .iter()
        .filter(|a| a.alert_type == AlertType::StopLossMissing)
        .collect();
    assert_eq!(missing.len(), 2, "{alerts:?}");
    assert!(missing.iter().all(|a| a.meta.priority == Priority::Urgent));
    env.fake.assert_clean();
}

// ------------------------------------------------------------------ rate budgets

#[actix::test]
async fn a_burst_stays_within_the_tier_counter_and_the_call_budgets() {
    let cfg = ExecutionConfig {
        max_positions_per_symbol: 100,
        max_positions_total: 100,
        max_retry_count: 0,
        ..exec_config()
    };
    let env = env_with(cfg, |k| k.max_rate_wait = Duration::from_millis(1500)).await;
    // 40 entries at once: the order budget (30 a minute) lets 30 through.
    let futs: Vec<_> = (0..40)
        .map(|_| {
            env.addr.send(trade(
                proposal(Side::Buy, "100", "50000", Some("49000"), None),
                OrderType::Limit,
            ))
        })
        .collect();
    let results: Vec<_> = futures::future::join_all(futs)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let refused: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(ToString::to_string))
        .collect();
    assert_eq!(ok, 30, "{refused:?}");
    assert!(refused.iter().all(|e| e.contains("order call budget")), "{refused:?}");
    assert_eq!(
        env.fake.calls_of("AddOrder").len(),
        30,
        "refused orders never left the client"
    );
    // 25 reads at once on a Pro key (within the 60-call budget with the 30 orders and the start-up
    // balance): 20 fit the counter, more only as it decays (1 a second, 1.5 s allowed).
    let reads: Vec<_> = (0..25).map(|_| env.exchange.balances()).collect();
    let reads = futures::future::join_all(reads).await;
    let read_ok = reads.iter().filter(|r| r.is_ok()).count();
    assert!((19..25).contains(&read_ok), "{read_ok} reads");
    let read_errors: Vec<String> = reads
        .iter()
        .filter_map(|r| r.as_ref().err().map(ToString::to_string))
        .collect();
    assert!(
        read_errors.iter().all(|e| e.contains("REST counter full")),
        "{read_errors:?}"
    );
    env.fake.assert_clean();
}

// ------------------------------------------------------------------ unknown outcomes, crashes, cancels (issue 13)

/// A manager on its own arbiter (thread), so a test can kill it as `kill -9` would: the arbiter
/// stops and every future in flight (placements, store writes) is dropped without a drain.
struct Running {
    addr: Addr<OrderExecutionManager>,
    alerts: Arc<Mutex<Vec<RiskAlert>>>,
    arbiter: Option<Arbiter>,
    _registry: Registry,
}

impl Running {
    fn kill(&mut self) {
        if let Some(a) = self.arbiter.take() {
            a.stop();
            a.join().unwrap();
        }
    }

    fn alerts_of(&self, t: AlertType) -> Vec<RiskAlert> {
        self.alerts
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.alert_type == t)
            .cloned()
            .collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Fast settings for the issue-13 scenarios: a 3 s visibility window, searches every 100 ms, and
/// a position may go 1 s without a working stop.
fn fast_config() -> ExecutionConfig {
    ExecutionConfig {
        visibility_window_secs: 3,
        search_interval_ms: 100,
        max_unprotected_secs: 1,
        ..exec_config()
    }
}

async fn kraken_exchange(fake: &FakeKraken, tweak: impl FnOnce(&mut KrakenConfig)) -> KrakenExchange {
    let mut kcfg = kraken_config(fake.uri());
    tweak(&mut kcfg);
    let client = KrakenClient::new(kcfg, Some(KrakenCredentials::new(KEY, SECRET))).unwrap();
    KrakenExchange::connect(client, &[btc()]).await.unwrap()
}

/// Starts the manager on a new arbiter over `orders` and waits until it has reconciled.
async fn start_manager(
    exchange: &KrakenExchange,
    orders: Arc<dyn triplegain_actors::ports::OrderStore>,
    cfg: ExecutionConfig,
) -> Running {
    let stores = triplegain::db::memory_stores();
    let alerts_topic: Topic<RiskAlert> = Topic::new();
    let alerts = Arc::new(Mutex::new(Vec::new()));
    alerts_topic.subscribe("test", Collector(alerts.clone()).start().recipient());
    let registry = Registry::new(RestartPolicy::default(), alerts_topic.clone(), Arc::new(SystemClock));
    let deps = ManagerDeps {
        config: cfg,
        exchange: Arc::new(exchange.clone()),
        paper: None,
        feed_paper: false,
        orders,
        state: stores.state.clone(),
        audit: stores.audit.clone(),
        events: Topic::new(),
        portfolio: Topic::new(),
        alerts: alerts_topic,
        clock: Arc::new(SystemClock),
        outbox: None,
    };
    let handle = registry.register("execution_manager", true);
    let arbiter = Arbiter::new();
    let addr =
        actix::Supervisor::start_in_arbiter(&arbiter.handle(), move |ctx: &mut Context<OrderExecutionManager>| {
            ctx.set_mailbox_capacity(256);
            OrderExecutionManager::new(handle, deps)
        });
    let mut ready = false;
    for _ in 0..250 {
        if addr.send(IsReady).await.unwrap_or(false) {
            ready = true;
            break;
        }
        actix::clock::sleep(Duration::from_millis(20)).await;
    }
    assert!(ready, "manager ready");
    Running {
        addr,
        alerts,
        arbiter: Some(arbiter),
        _registry: registry,
    }
}

async fn wait_for<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < within {
        if f().await {
            return;
        }
        actix::clock::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out after {within:?} waiting for: {what}");
}

fn open_of(fake: &FakeKraken, pred: fn(&BookOrder) -> bool) -> Vec<BookOrder> {
    fake.orders()
        .into_iter()
        .filter(|o| pred(o) && o.status == "open")
        .collect()
}

#[actix::test]
async fn an_order_visible_only_late_is_kept_as_unknown_then_adopted_and_its_fill_protected() {
    // Arrange: the AddOrder reply is an error although the order reached the book, and Kraken
    // shows it only after 2 s; meanwhile it fills. Three polls missing it no longer drop it.
    let fake = FakeKraken::start().await;
    let exchange = kraken_exchange(&fake, |_| {}).await;
    let store = triplegain_actors::execution::store::MemoryOrderStore::default();
    let m = start_manager(&exchange, Arc::new(store.clone()), fast_config()).await;
    fake.delay_visibility([Duration::from_secs(2)]);
    fake.script("AddOrder", [Fault::PlaceThenError("EService:Unavailable".into())]);

    // Act
    let err = m
        .addr
        .send(trade(
            proposal(Side::Buy, "1000", "50000", Some("49000"), Some("52000")),
            OrderType::Limit,
        ))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, ExecutionError::Unknown(_)), "{err:?}");
    fake.update(is_entry, |o| {
        o.status = "closed".into();
        o.vol_exec = o.vol.clone();
        o.avg = "49990.0".into();
        o.fee = "2.59948".into();
    });
    // Many polls while it is invisible: it stays `unknown`, never "never placed".
    for _ in 0..12 {
        m.addr.do_send(PollNow);
        actix::clock::sleep(Duration::from_millis(100)).await;
    }
    let entry = store.list_orders(None, false, 10).await.unwrap().pop().unwrap();
    assert_eq!(entry.view.status, OrderStatus::Unknown, "{entry:?}");

    // Assert: once visible, the fill is adopted and the position protected on Kraken.
    wait_for("stop and take-profit on the book", Duration::from_secs(8), || async {
        m.addr.do_send(PollNow);
        !open_of(&fake, is_sl).is_empty() && !open_of(&fake, is_tp).is_empty()
    })
    .await;
    let sl = open_of(&fake, is_sl).remove(0);
    assert_eq!((sl.vol.as_str(), sl.price.as_str()), ("0.02", "49000"));
    let entry = store.get_order(entry.view.id).await.unwrap().unwrap();
    assert_eq!(entry.view.status, OrderStatus::Filled);
    let pos = store.list_positions(None, None, 10).await.unwrap();
    assert_eq!(pos.len(), 1);
    assert_eq!((pos[0].size, pos[0].status), (dec("0.02"), PositionStatus::Open));
    assert_eq!(
        fake.calls_of("AddOrder")
            .iter()
            .filter(|c| c.form["type"] == "buy")
            .count(),
        1,
        "the entry was never re-sent"
    );
    fake.assert_clean();
}

#[actix::test]
async fn an_order_never_seen_is_given_up_only_after_the_visibility_window() {
    let fake = FakeKraken::start().await;
    let exchange = kraken_exchange(&fake, |_| {}).await;
    let store = triplegain_actors::execution::store::MemoryOrderStore::default();
    let m = start_manager(&exchange, Arc::new(store.clone()), fast_config()).await;
    // The engine was unavailable: nothing reached the book, but the client cannot know.
    fake.script("AddOrder", [Fault::Error("EService:Unavailable".into())]);
    let sent = std::time::Instant::now();
    let err = m
        .addr
        .send(trade(
            proposal(Side::Buy, "1000", "50000", Some("49000"), None),
            OrderType::Limit,
        ))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, ExecutionError::Unknown(_)), "{err:?}");
    let id = store.list_orders(None, false, 1).await.unwrap()[0].view.id;
    let status = || async { store.get_order(id).await.unwrap().unwrap().view.status };
    wait_for("given up as never placed", Duration::from_secs(8), || async {
        m.addr.do_send(PollNow);
        status().await == OrderStatus::Error
    })
    .await;
    assert!(
        sent.elapsed() >= Duration::from_secs(3),
        "not before the 3 s window: {:?}",
        sent.elapsed()
    );
    let rec = store.get_order(id).await.unwrap().unwrap();
    assert!(rec.error_message.unwrap().contains("never placed"));
    assert!(m
        .alerts_of(AlertType::Reconcile)
        .iter()
        .any(|a| a.message.contains("never placed")));
    fake.assert_clean();
}

#[actix::test]
async fn unknown_orders_are_searched_together_with_one_open_and_one_closed_orders_call() {
    let fake = FakeKraken::start().await;
    let exchange = kraken_exchange(&fake, |_| {}).await;
    let store = triplegain_actors::execution::store::MemoryOrderStore::default();
    let cfg = ExecutionConfig {
        search_interval_ms: 60_000,
        max_positions_per_symbol: 10,
        max_positions_total: 10,
        ..fast_config()
    };
    let m = start_manager(&exchange, Arc::new(store.clone()), cfg).await;
    // Three ambiguous entries, one of them filled (closed) before anyone looks.
    fake.script(
        "AddOrder",
        (0..3).map(|_| Fault::PlaceThenError("EService:Unavailable".into())),
    );
    for _ in 0..3 {
        let r = m
            .addr
            .send(trade(
                proposal(Side::Buy, "100", "50000", Some("49000"), None),
                OrderType::Limit,
            ))
            .await
            .unwrap();
        assert!(matches!(r, Err(ExecutionError::Unknown(_))), "{r:?}");
    }
    fake.update(
        |o| o.txid == "OTX-2",
        |o| {
            o.status = "closed".into();
            o.vol_exec = o.vol.clone();
            o.avg = "50000".into();
        },
    );
    let (open0, closed0) = (fake.calls_of("OpenOrders").len(), fake.calls_of("ClosedOrders").len());

    // Act: polls in a row; the search runs once (interval 60 s).
    for _ in 0..5 {
        m.addr.do_send(PollNow);
        actix::clock::sleep(Duration::from_millis(60)).await;
    }
    wait_for("all three resolved", Duration::from_secs(3), || async {
        store
            .list_orders(None, false, 10)
            .await
            .unwrap()
            .iter()
            .filter(|o| o.view.purpose.as_str() == "entry")
            .all(|o| matches!(o.view.status, OrderStatus::Open | OrderStatus::Filled))
    })
    .await;

    // Assert: one OpenOrders and one ClosedOrders for all three (3 counter points, not 9).
    assert_eq!(fake.calls_of("OpenOrders").len() - open0, 1);
    assert_eq!(fake.calls_of("ClosedOrders").len() - closed0, 1);
    assert!(!fake
        .calls_of("OpenOrders")
        .last()
        .unwrap()
        .form
        .contains_key("cl_ord_id"));
    let filled: Vec<OrderRecord> = store
        .list_orders(None, false, 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.view.status == OrderStatus::Filled)
        .collect();
    assert_eq!(filled.len(), 1);
    assert_eq!(filled[0].view.exchange_order_id.as_deref(), Some("OTX-2"));
    fake.assert_clean();
}

#[actix::test]
async fn a_failed_search_does_not_stop_the_poll_of_acknowledged_orders() {
    let fake = FakeKraken::start().await;
    let exchange = kraken_exchange(&fake, |_| {}).await;
    let store = triplegain_actors::execution::store::MemoryOrderStore::default();
    let m = start_manager(&exchange, Arc::new(store.clone()), fast_config()).await;
    // One acknowledged entry, one of unknown outcome.
    m.addr
        .send(trade(
            proposal(Side::Buy, "100", "50000", Some("49000"), None),
            OrderType::Limit,
        ))
        .await
        .unwrap()
        .unwrap();
    fake.script("AddOrder", [Fault::PlaceThenError("EService:Unavailable".into())]);
    let _ = m
        .addr
        .send(trade(
            proposal(Side::Buy, "100", "50000", Some("49000"), None),
            OrderType::Limit,
        ))
        .await
        .unwrap();
    // The search fails (OpenOrders refused); the acknowledged entry fills meanwhile.
    fake.script(
        "OpenOrders",
        (0..3).map(|_| Fault::Error("EGeneral:Internal error".into())),
    );
    fake.update(
        |o| o.txid == "OTX-1",
        |o| {
            o.status = "closed".into();
            o.vol_exec = o.vol.clone();
            o.avg = "50000".into();
        },
    );
    wait_for("the acknowledged entry filled", Duration::from_secs(3), || async {
        m.addr.do_send(PollNow);
        store
            .list_orders(None, false, 10)
            .await
            .unwrap()
            .iter()
            .any(|o| o.view.exchange_order_id.as_deref() == Some("OTX-1") && o.view.status == OrderStatus::Filled)
    })
    .await;
    let unknown = store
        .list_orders(None, false, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|o| o.view.exchange_order_id.as_deref() != Some("OTX-1") && o.view.purpose.as_str() == "entry")
        .unwrap();
    assert!(
        matches!(unknown.view.status, OrderStatus::Unknown | OrderStatus::Open),
        "a failed search counts as no evidence: {unknown:?}"
    );
    fake.assert_clean();
}

// ------------------------------------------------------------------ crashes against PostgreSQL

/// Fills the entry on the fake book as Kraken's engine would.
fn fill_entry(fake: &FakeKraken) {
    fake.update(is_entry, |o| {
        o.status = "closed".into();
        o.vol_exec = o.vol.clone();
        o.avg = "49990.0".into();
        o.fee = "2.59948".into();
    });
}

async fn pg_store(db: &helpers::TestDb) -> triplegain::db::PgStore {
    triplegain::db::PgStore::new(helpers::pool_for(&db.name))
}

#[actix::test]
async fn kill_between_fill_and_stop_alerts_critical_and_the_restart_places_the_stop_within_15_s() {
    // Arrange: PostgreSQL, and a stop-loss AddOrder that never reaches Kraken's book before the
    // process dies (its answer would come after 30 s).
    let db = helpers::TestDb::new().await;
    let fake = FakeKraken::start().await;
    let ex1 = kraken_exchange(&fake, |k| k.timeout = Duration::from_secs(30)).await;
    let mut m1 = start_manager(&ex1, Arc::new(pg_store(&db).await), fast_config()).await;
    fake.script("AddOrder:stop-loss", [Fault::Hang(Duration::from_secs(30))]);
    m1.addr
        .send(trade(
            proposal(Side::Buy, "1000", "50000", Some("49000"), Some("52000")),
            OrderType::Limit,
        ))
        .await
        .unwrap()
        .unwrap();
    fill_entry(&fake);

    // The position is open, its stop on its way but not working: critical alert after 1 s.
    wait_for("critical alert while unprotected", Duration::from_secs(6), || async {
        m1.addr.do_send(PollNow);
        m1.alerts_of(AlertType::StopLossMissing).iter().any(|a| {
            a.severity == triplegain_actors::domain::Severity::Critical && a.message.contains("no working stop")
        })
    })
    .await;
    assert!(open_of(&fake, is_sl).is_empty(), "no stop reached Kraken");
    let a = m1.alerts_of(AlertType::StopLossMissing).remove(0);
    assert_eq!(a.meta.priority, Priority::Urgent);

    // Act: kill -9 while the stop placement is in flight (its record is `pending`), then restart
    // on the same database with a new client.
    m1.kill();
    actix::clock::sleep(Duration::from_millis(50)).await;
    let store = pg_store(&db).await;
    let pending: Vec<OrderRecord> = store
        .list_orders(None, false, 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.view.purpose.as_str() == "stop_loss")
        .collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        pending[0].view.status,
        OrderStatus::Pending,
        "left pending by the crash"
    );
    let restarted = std::time::Instant::now();
    // The same client: its rate limiter knows what Kraken's counter holds (a limiter that starts
    // charged after a restart is the other half of issue 13).
    let m2 = start_manager(&ex1, Arc::new(store.clone()), fast_config()).await;

    // Assert: the pending stop is not taken for a working one: searched, absent, placed.
    wait_for("stop placed after the restart", Duration::from_secs(15), || async {
        m2.addr.do_send(PollNow);
        !open_of(&fake, is_sl).is_empty()
    })
    .await;
    let took = restarted.elapsed();
    assert!(took < Duration::from_secs(15), "{took:?}");
    let sl = open_of(&fake, is_sl);
    assert_eq!(sl.len(), 1, "exactly one stop on Kraken: {:?}", fake.orders());
    assert_eq!((sl[0].vol.as_str(), sl[0].price.as_str()), ("0.02", "49000"));
    wait_for("the take-profit placed too", Duration::from_secs(5), || async {
        !open_of(&fake, is_tp).is_empty()
    })
    .await;
    assert_eq!(open_of(&fake, is_tp).len(), 1, "one take-profit: {:?}", fake.orders());
    assert_eq!(open_of(&fake, is_sl).len(), 1, "still one stop: {:?}", fake.orders());
    let old = store.get_order(pending[0].view.id).await.unwrap().unwrap();
    assert_eq!(
        old.view.status,
        OrderStatus::Unknown,
        "tracked until the window proves it absent"
    );
    wait_for(
        "the position linked to the stop that works",
        Duration::from_secs(3),
        || async {
            let pos = store.list_positions(None, None, 10).await.unwrap();
            pos.len() == 1 && pos[0].stop_loss_order_id.is_some_and(|id| id != old.view.id)
        },
    )
    .await;
    let pos = store.list_positions(None, None, 10).await.unwrap();
    assert_eq!(pos[0].size, dec("0.02"));
    eprintln!("stop placed {took:?} after the restart");
    fake.assert_clean();
}

/// An order store that dies inside the first fill transaction, as the process would at a crash
/// between "order filled", "trade" and "position": that fill and every later write are lost
/// (reads keep working so the test can look).
struct CrashAtFill(triplegain::db::PgStore, Arc<std::sync::atomic::AtomicBool>);

impl CrashAtFill {
    fn write<T: Send + 'static>(
        &self,
        f: triplegain_actors::ports::StoreFuture<T>,
    ) -> triplegain_actors::ports::StoreFuture<T> {
        if self.1.load(std::sync::atomic::Ordering::SeqCst) {
            return Box::pin(async { Err(triplegain_actors::ports::StoreError::Unavailable("crashed".into())) });
        }
        f
    }
}

impl triplegain_actors::ports::OrderStore for CrashAtFill {
    fn record_fill(&self, _: triplegain_actors::ports::FillWrite) -> triplegain_actors::ports::StoreFuture<()> {
        self.1.store(true, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async {
            Err(triplegain_actors::ports::StoreError::Unavailable(
                "injected crash inside the fill transaction".into(),
            ))
        })
    }
    fn find_order_by_client_id(
        &self,
        c: triplegain_actors::domain::ClientOrderId,
    ) -> triplegain_actors::ports::StoreFuture<Option<OrderRecord>> {
        self.0.find_order_by_client_id(c)
    }
    fn upsert_order(&self, rec: OrderRecord) -> triplegain_actors::ports::StoreFuture<()> {
        self.write(self.0.upsert_order(rec))
    }
    fn append_status(
        &self,
        t: triplegain_actors::ports::StatusTransition,
    ) -> triplegain_actors::ports::StoreFuture<()> {
        self.write(self.0.append_status(t))
    }
    fn load_active_orders(&self) -> triplegain_actors::ports::StoreFuture<Vec<OrderRecord>> {
        self.0.load_active_orders()
    }
    fn get_order(&self, id: uuid::Uuid) -> triplegain_actors::ports::StoreFuture<Option<OrderRecord>> {
        self.0.get_order(id)
    }
    fn list_orders(
        &self,
        symbol: Option<Symbol>,
        open_only: bool,
        limit: usize,
    ) -> triplegain_actors::ports::StoreFuture<Vec<OrderRecord>> {
        self.0.list_orders(symbol, open_only, limit)
    }
    fn status_log(
        &self,
        id: uuid::Uuid,
    ) -> triplegain_actors::ports::StoreFuture<Vec<triplegain_actors::ports::StatusTransition>> {
        self.0.status_log(id)
    }
    fn upsert_position(&self, p: PositionView) -> triplegain_actors::ports::StoreFuture<()> {
        self.write(self.0.upsert_position(p))
    }
    fn load_open_positions(&self) -> triplegain_actors::ports::StoreFuture<Vec<PositionView>> {
        self.0.load_open_positions()
    }
    fn get_position(&self, id: uuid::Uuid) -> triplegain_actors::ports::StoreFuture<Option<PositionView>> {
        self.0.get_position(id)
    }
    fn list_positions(
        &self,
        symbol: Option<Symbol>,
        status: Option<PositionStatus>,
        limit: usize,
    ) -> triplegain_actors::ports::StoreFuture<Vec<PositionView>> {
        self.0.list_positions(symbol, status, limit)
    }
    fn insert_trade(&self, t: triplegain_actors::ports::TradeRecord) -> triplegain_actors::ports::StoreFuture<()> {
        self.write(self.0.insert_trade(t))
    }
    fn list_trades(
        &self,
        symbol: Option<Symbol>,
        limit: usize,
    ) -> triplegain_actors::ports::StoreFuture<Vec<triplegain_actors::ports::TradeRecord>> {
        self.0.list_trades(symbol, limit)
    }
    fn insert_snapshot(
        &self,
        s: triplegain_actors::ports::PositionSnapshotRecord,
    ) -> triplegain_actors::ports::StoreFuture<()> {
        self.write(self.0.insert_snapshot(s))
    }
}

#[actix::test]
async fn a_crash_inside_the_fill_write_loses_nothing_the_restart_rebuilds_one_protected_position() {
    // Arrange: the process dies inside the fill transaction.
    let db = helpers::TestDb::new().await;
    let fake = FakeKraken::start().await;
    let ex1 = kraken_exchange(&fake, |_| {}).await;
    let crashed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut m1 = start_manager(
        &ex1,
        Arc::new(CrashAtFill(pg_store(&db).await, crashed.clone())),
        fast_config(),
    )
    .await;
    m1.addr
        .send(trade(
            proposal(Side::Buy, "1000", "50000", Some("49000"), Some("52000")),
            OrderType::Limit,
        ))
        .await
        .unwrap()
        .unwrap();
    fill_entry(&fake);
    wait_for("the crash inside the fill write", Duration::from_secs(5), || async {
        m1.addr.do_send(PollNow);
        crashed.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    actix::clock::sleep(Duration::from_millis(300)).await;
    m1.kill();
    assert!(open_of(&fake, is_sl).is_empty(), "nothing sent without its record");

    // Nothing of the fill is in PostgreSQL: the entry is still open, no trade, no position.
    let store = pg_store(&db).await;
    let entry = store
        .list_orders(None, false, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|o| o.view.purpose.as_str() == "entry")
        .unwrap();
    assert_eq!(entry.view.status, OrderStatus::Open);
    assert!(store.list_trades(None, 10).await.unwrap().is_empty());
    assert!(store.list_positions(None, None, 10).await.unwrap().is_empty());

    // Act: restart on the same database.
    let m2 = start_manager(&ex1, Arc::new(store.clone()), fast_config()).await;

    // Assert: the fill is found again on Kraken and written in one transaction; the position is
    // rebuilt once and protected.
    wait_for("one open position with its fill", Duration::from_secs(5), || async {
        m2.addr.do_send(PollNow);
        store.list_positions(None, None, 10).await.unwrap().len() == 1
    })
    .await;
    let pos = store.list_positions(None, None, 10).await.unwrap().remove(0);
    assert_eq!(
        (pos.size, pos.entry_price, pos.status),
        (dec("0.02"), dec("49990"), PositionStatus::Open)
    );
    let trades = store.list_trades(None, 10).await.unwrap();
    assert_eq!(trades.len(), 1, "{trades:?}");
    assert_eq!(trades[0].volume, dec("0.02"));
    let entry = store.get_order(entry.view.id).await.unwrap().unwrap();
    assert_eq!(entry.view.status, OrderStatus::Filled);
    wait_for("protected on Kraken", Duration::from_secs(5), || async {
        m2.addr.do_send(PollNow);
        !open_of(&fake, is_sl).is_empty() && !open_of(&fake, is_tp).is_empty()
    })
    .await;
    assert_eq!(open_of(&fake, is_sl).len(), 1);
    assert_eq!(open_of(&fake, is_tp).len(), 1);
    fake.assert_clean();
}

#[actix::test]
async fn a_fill_transaction_that_fails_midway_writes_nothing() {
    use triplegain_actors::ports::{FillWrite, StatusTransition, TradeRecord};
    let db = helpers::TestDb::new().await;
    let store = pg_store(&db).await;
    // An open entry as stored before the fill.
    let fake = FakeKraken::start().await;
    let exchange = kraken_exchange(&fake, |_| {}).await;
    let m = start_manager(&exchange, Arc::new(store.clone()), fast_config()).await;
    m.addr
        .send(trade(
            proposal(Side::Buy, "1000", "50000", Some("49000"), None),
            OrderType::Limit,
        ))
        .await
        .unwrap()
        .unwrap();
    actix::clock::sleep(Duration::from_millis(300)).await;
    drop(m);
    let open = store.list_orders(None, false, 1).await.unwrap().remove(0);
    assert_eq!(open.view.status, OrderStatus::Open);

    let mut filled = open.clone();
    filled.view.status = OrderStatus::Filled;
    filled.view.filled_volume = open.view.volume;
    let pid = open.view.position_id.unwrap();
    let status = StatusTransition {
        order_id: open.view.id,
        from: Some(OrderStatus::Open),
        to: OrderStatus::Filled,
        filled_volume: open.view.volume,
        detail: serde_json::json!({}),
        at: chrono::Utc::now(),
    };
    let trade = TradeRecord {
        id: uuid::Uuid::new_v4(),
        order_id: open.view.id,
        position_id: Some(pid),
        correlation_id: open.view.correlation_id,
        symbol: btc(),
        side: Side::Buy,
        volume: open.view.volume,
        price: dec("49990"),
        fee: dec("2.6"),
        realized_pnl: None,
        executed_at: chrono::Utc::now(),
    };
    let mut position = PositionView {
        id: pid,
        correlation_id: open.view.correlation_id,
        symbol: btc(),
        side: triplegain_actors::domain::PositionSide::Long,
        status: PositionStatus::Open,
        size: open.view.volume,
        entry_price: dec("49990"),
        exit_price: None,
        leverage: 1,
        stop_loss: Some(dec("49000")),
        take_profit: None,
        stop_loss_order_id: None,
        take_profit_order_id: None,
        realized_pnl: dec("-2.6"),
        unrealized_pnl: None,
        fees: dec("2.6"),
        opened_at: chrono::Utc::now(),
        closed_at: None,
    };
    // The last write (the position) fails inside the transaction: NUMERIC(30, 12) overflows.
    let mut broken = position.clone();
    broken.size = Decimal::from_str("1000000000000000000000").unwrap();
    // The event that describes the fill, for the export outbox (same transaction).
    let event = triplegain_actors::ports::OutboxEvent {
        id: uuid::Uuid::new_v4(),
        topic: "execution_events".into(),
        symbol: Some("BTC/USDT".into()),
        payload: serde_json::json!({"event_type": "order_filled", "order_id": open.view.id}),
    };
    let fill = |p: PositionView| FillWrite {
        orders: vec![filled.clone()],
        statuses: vec![status.clone()],
        trades: vec![trade.clone()],
        positions: vec![p],
        events: vec![event.clone()],
    };
    let outboxed = || async {
        let client = helpers::pool_for(&db.name).get().await.unwrap();
        triplegain::db::outbox::pending(&**client, 10).await.unwrap()
    };
    let err = store.record_fill(fill(broken)).await.unwrap_err();
    assert!(matches!(err, triplegain_actors::ports::StoreError::Query(_)), "{err}");
    // Nothing of it was written: the order is still open, no trade, no position, no log entry.
    assert_eq!(
        store.get_order(open.view.id).await.unwrap().unwrap().view.status,
        OrderStatus::Open
    );
    assert!(store.list_trades(None, 10).await.unwrap().is_empty());
    assert!(store.get_position(pid).await.unwrap().is_none());
    assert!(!store
        .status_log(open.view.id)
        .await
        .unwrap()
        .iter()
        .any(|t| t.to == OrderStatus::Filled));
    assert!(outboxed().await.is_empty(), "an event of a fill that was not written");

    // The same fill, valid, is written whole.
    position.size = open.view.volume;
    store.record_fill(fill(position)).await.unwrap();
    assert_eq!(
        store.get_order(open.view.id).await.unwrap().unwrap().view.status,
        OrderStatus::Filled
    );
    assert_eq!(store.list_trades(None, 10).await.unwrap().len(), 1);
    assert_eq!(store.get_position(pid).await.unwrap().unwrap().size, open.view.volume);
    let rows = outboxed().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event_id, event.id);
}

// ------------------------------------------------------------------ cancels, orphans, hand cancels

#[actix::test]
async fn a_failed_cancel_is_retried_until_kraken_shows_the_stop_closed_and_no_orphan_is_left() {
    let env = env().await;
    env.protected_long().await;
    // The first cancel is lost (engine unavailable), the second takes effect but answers an error.
    env.fake.script(
        "CancelOrder",
        [
            Fault::Error("EService:Unavailable".into()),
            Fault::PlaceThenError("EService:Unavailable".into()),
        ],
    );
    // Act: the take-profit fills, so the stop must go.
    env.fill(is_tp, "0.02", "52000", "2.6", "closed");
    env.wait_position_status(PositionStatus::Closed).await;

    // Assert: retried until Kraken shows it cancelled; nothing left working.
    eventually("stop cancelled on Kraken", || async {
        env.fake.orders().iter().any(|o| is_sl(o) && o.status == "canceled")
    })
    .await;
    eventually("stop recorded cancelled", || async {
        env.orders()
            .await
            .iter()
            .any(|o| o.view.purpose.as_str() == "stop_loss" && o.view.status == OrderStatus::Cancelled)
    })
    .await;
    assert!(env.fake.calls_of("CancelOrder").len() >= 2);
    assert_eq!(env.fake.orders().iter().filter(|o| o.status == "open").count(), 0);
    let stop = env
        .orders()
        .await
        .into_iter()
        .find(|o| o.view.purpose.as_str() == "stop_loss")
        .unwrap();
    let log: Vec<OrderStatus> = env
        .stores
        .orders
        .status_log(stop.view.id)
        .await
        .unwrap()
        .iter()
        .map(|t| t.to)
        .collect();
    assert_eq!(log.last(), Some(&OrderStatus::Cancelled));
    env.fake.assert_clean();
}

#[actix::test]
async fn an_orphan_stop_found_at_reconciliation_is_cancelled_and_alerted() {
    // Arrange: a protected position, then the process dies and the position is closed in the
    // store (closed by hand while down) with its stop and take-profit still working on Kraken.
    let fake = FakeKraken::start().await;
    let ex1 = kraken_exchange(&fake, |_| {}).await;
    let store = triplegain_actors::execution::store::MemoryOrderStore::default();
    let mut m1 = start_manager(&ex1, Arc::new(store.clone()), fast_config()).await;
    m1.addr
        .send(trade(
            proposal(Side::Buy, "1000", "50000", Some("49000"), Some("52000")),
            OrderType::Limit,
        ))
        .await
        .unwrap()
        .unwrap();
    fill_entry(&fake);
    wait_for("protected", Duration::from_secs(5), || async {
        m1.addr.do_send(PollNow);
        !open_of(&fake, is_sl).is_empty() && !open_of(&fake, is_tp).is_empty()
    })
    .await;
    actix::clock::sleep(Duration::from_millis(200)).await;
    m1.kill();
    let mut pos = store.list_positions(None, None, 10).await.unwrap().remove(0);
    pos.status = PositionStatus::Closed;
    pos.size = Decimal::ZERO;
    store.upsert_position(pos).await.unwrap();

    // Act: restart (the same client, see the kill test).
    let m2 = start_manager(&ex1, Arc::new(store.clone()), fast_config()).await;

    // Assert: both orphans cancelled on Kraken and alerted.
    wait_for("orphans cancelled", Duration::from_secs(5), || async {
        m2.addr.do_send(PollNow);
        fake.orders()
            .iter()
            .filter(|o| !is_entry(o))
            .all(|o| o.status == "canceled")
    })
    .await;
    let orphans: Vec<RiskAlert> = m2
        .alerts_of(AlertType::Reconcile)
        .into_iter()
        .filter(|a| a.message.contains("orphan"))
        .collect();
    assert_eq!(orphans.len(), 2, "{orphans:?}");
    fake.assert_clean();
}

#[actix::test]
async fn a_stop_cancelled_by_hand_on_kraken_is_replaced_and_alerted() {
    let env = env().await;
    env.protected_long().await;
    // Someone cancels the stop in Kraken's web interface.
    env.fake
        .update(|o| is_sl(o) && o.status == "open", |o| o.status = "canceled".into());
    eventually("a new stop on Kraken", || async {
        env.addr.do_send(PollNow);
        env.fake.orders().iter().filter(|o| is_sl(o)).count() == 2
            && env.fake.orders().iter().any(|o| is_sl(o) && o.status == "open")
    })
    .await;
    let alerts = env.alerts.lock().unwrap().clone();
    assert!(
        alerts.iter().any(|a| a.alert_type == AlertType::Reconcile
            && a.severity == triplegain_actors::domain::Severity::Medium
            && a.message.contains("without our request")),
        "{alerts:?}"
    );
    let sl = env
        .fake
        .orders()
        .into_iter()
        .find(|o| is_sl(o) && o.status == "open")
        .unwrap();
    assert_eq!((sl.vol.as_str(), sl.price.as_str()), ("0.02", "49000"));
    env.fake.assert_clean();
}

#[actix::test]
async fn an_order_given_up_that_filled_while_invisible_is_found_by_the_sync_and_protected() {
    // Arrange: invisible for 4 s, given up after a 1 s window (one search), filled meanwhile.
    let fake = FakeKraken::start().await;
    let exchange = kraken_exchange(&fake, |_| {}).await;
    let store = triplegain_actors::execution::store::MemoryOrderStore::default();
    let cfg = ExecutionConfig {
        visibility_window_secs: 1,
        reconcile_attempts: 1,
        ..fast_config()
    };
    let m = start_manager(&exchange, Arc::new(store.clone()), cfg).await;
    fake.delay_visibility([Duration::from_secs(4)]);
    fake.script("AddOrder", [Fault::PlaceThenError("EService:Unavailable".into())]);
    let _ = m
        .addr
        .send(trade(
            proposal(Side::Buy, "1000", "50000", Some("49000"), Some("52000")),
            OrderType::Limit,
        ))
        .await
        .unwrap();
    let id = store.list_orders(None, false, 1).await.unwrap()[0].view.id;
    wait_for("given up", Duration::from_secs(5), || async {
        m.addr.do_send(PollNow);
        store.get_order(id).await.unwrap().unwrap().view.status == OrderStatus::Error
    })
    .await;
    fill_entry(&fake);

    // Act: once Kraken shows it (closed), the sync looks at closed orders.
    actix::clock::sleep(Duration::from_secs(3)).await;
    m.addr.do_send(SyncNow);

    // Assert: tracked again, the fill opens the position and it is protected.
    wait_for("protected", Duration::from_secs(5), || async {
        m.addr.do_send(PollNow);
        !open_of(&fake, is_sl).is_empty() && !open_of(&fake, is_tp).is_empty()
    })
    .await;
    assert_eq!(
        store.get_order(id).await.unwrap().unwrap().view.status,
        OrderStatus::Filled
    );
    let pos = store.list_positions(None, None, 10).await.unwrap();
    assert_eq!((pos.len(), pos[0].size), (1, dec("0.02")));
    assert!(m
        .alerts_of(AlertType::Reconcile)
        .iter()
        .any(|a| a.message.contains("tracking it again")));
    fake.assert_clean();
}

#[actix::test]
async fn a_position_unprotected_too_long_arms_the_software_stop_which_closes_it_when_the_price_crosses() {
    // Arrange: every stop placement ends with an unknown outcome (the engine was unavailable and
    // placed nothing), and searches are rare: the position's stop stays "on its way".
    let fake = FakeKraken::start().await;
    let exchange = kraken_exchange(&fake, |_| {}).await;
    let store = triplegain_actors::execution::store::MemoryOrderStore::default();
    let cfg = ExecutionConfig {
        search_interval_ms: 60_000,
        ..fast_config()
    };
    let m = start_manager(&exchange, Arc::new(store.clone()), cfg).await;
    fake.script(
        "AddOrder:stop-loss",
        (0..5).map(|_| Fault::Error("EService:Unavailable".into())),
    );
    m.addr
        .send(trade(
            proposal(Side::Buy, "1000", "50000", Some("49000"), None),
            OrderType::Limit,
        ))
        .await
        .unwrap()
        .unwrap();
    fill_entry(&fake);
    wait_for("position open", Duration::from_secs(3), || async {
        m.addr.do_send(PollNow);
        store.list_positions(None, None, 10).await.unwrap().len() == 1
    })
    .await;
    let sells = || {
        fake.calls_of("AddOrder")
            .into_iter()
            .filter(|c| c.form["type"] == "sell" && c.form["ordertype"] == "limit")
            .collect::<Vec<_>>()
    };
    // While a stop is merely on its way, a price through the stop does nothing yet.
    m.addr.do_send(PriceUpdate {
        symbol: btc(),
        price: dec("48900"),
    });
    actix::clock::sleep(Duration::from_millis(200)).await;
    assert!(sells().is_empty(), "no backup close while the stop is on its way");
    assert!(open_of(&fake, is_sl).is_empty());

    // Act: past max_unprotected_secs (1 s) the critical alert arms the backup stop.
    wait_for("critical alert", Duration::from_secs(4), || async {
        m.alerts_of(AlertType::StopLossMissing).iter().any(|a| {
            a.severity == triplegain_actors::domain::Severity::Critical && a.message.contains("backup stop armed")
        })
    })
    .await;
    m.addr.do_send(PriceUpdate {
        symbol: btc(),
        price: dec("48900"),
    });

    // Assert: the position is closed at market (a limit sell bounded by the slippage), once.
    wait_for("backup close sent", Duration::from_secs(3), || async {
        !sells().is_empty()
    })
    .await;
    actix::clock::sleep(Duration::from_millis(300)).await;
    let closes = sells();
    assert_eq!(closes.len(), 1, "one close");
    assert_eq!(closes[0].form["volume"], "0.02");
    let orders = store.list_orders(None, false, 10).await.unwrap();
    assert!(orders.iter().any(|o| o.view.purpose.as_str() == "close"), "{orders:?}");
    fake.assert_clean();
}
