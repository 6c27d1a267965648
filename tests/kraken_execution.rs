#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]
//! The real execution manager on the real Kraken adapter against a fake Kraken on 127.0.0.1 that
//! verifies `API-Sign`, refuses non-increasing nonces, keeps the tier's REST counter and an order
//! book, and plays scripted faults: entries, fills, protection, one-cancels-other, partial fills,
//! rejections, nonce retries, ambiguous placements resolved by client id, and rate budgets.

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
use triplegain_actors::execution::manager::{ExecutionConfig, IsReady, ManagerDeps, OrderExecutionManager, PollNow};
use triplegain_actors::messages::{AlertType, RiskAlert};
use triplegain_actors::ports::{Exchange, OrderRecord};
use triplegain_actors::risk::{ProposalSource, TradeProposal};
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
        proposal: p,
        verdict: None,
        order_type,
        limit_price: None,
        volume: None,
        note: None,
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
        .find(|o| o.view.purpose == "entry")
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
