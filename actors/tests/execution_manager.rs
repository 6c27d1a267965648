#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]
//! The OrderExecutionManager against the paper exchange and the in-memory order store.

use actix::prelude::*;
use chrono::{DateTime, TimeZone, Utc};
use futures::FutureExt;
use parking_lot::Mutex;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use triplegain_actors::bus::Topic;
use triplegain_actors::clock::{Clock, ManualClock};
use triplegain_actors::domain::{
    CorrelationId, OrderStatus, OrderType, PositionStatus, Priority, Regime, Side, Symbol,
};
use triplegain_actors::execution::api::{ClosePosition, ExecuteTrade, ExecutionError, ModifyPosition, PositionView};
use triplegain_actors::execution::manager::{
    ExecutionConfig, FlushWrites, IsReady, ManagerDeps, OrderExecutionManager, PollNow,
};
use triplegain_actors::execution::paper::{PaperConfig, PaperExchange, PaperOp};
use triplegain_actors::execution::store::MemoryOrderStore;
use triplegain_actors::messages::{AlertType, ExecutionEvent, ExecutionEventType, PortfolioUpdate, RiskAlert};
use triplegain_actors::ports::{
    AgentOutputRecord, AuditStore, DecisionRecord, ExchangeError, OrderRecord, OrderStore, StateStore, StoreFuture,
};
use triplegain_actors::risk::{ProposalSource, RiskApproved, TradeProposal};
use triplegain_actors::supervision::{start_supervised, Registry, RestartPolicy};

// ------------------------------------------------------------------ fixtures

#[derive(Default, Clone)]
struct MemState(Arc<Mutex<HashMap<String, serde_json::Value>>>);

impl StateStore for MemState {
    fn load_state(&self, key: &str) -> StoreFuture<Option<serde_json::Value>> {
        let v = self.0.lock().get(key).cloned();
        async move { Ok(v) }.boxed()
    }
    fn save_state(&self, key: &str, state: serde_json::Value) -> StoreFuture<()> {
        self.0.lock().insert(key.to_owned(), state);
        async { Ok(()) }.boxed()
    }
}

#[derive(Default, Clone)]
struct MemAudit(Arc<Mutex<Vec<DecisionRecord>>>);

impl AuditStore for MemAudit {
    fn record_agent_output(&self, _: AgentOutputRecord) -> StoreFuture<()> {
        async { Ok(()) }.boxed()
    }
    fn latest_agent_output(&self, _: &str, _: &str) -> StoreFuture<Option<AgentOutputRecord>> {
        async { Ok(None) }.boxed()
    }
    fn record_decision(&self, rec: DecisionRecord) -> StoreFuture<()> {
        self.0.lock().push(rec);
        async { Ok(()) }.boxed()
    }
    fn decision_chain(&self, c: CorrelationId) -> StoreFuture<Vec<DecisionRecord>> {
        let v = self
            .0
            .lock()
            .iter()
            .filter(|d| d.correlation_id == c)
            .cloned()
            .collect();
        async move { Ok(v) }.boxed()
    }
}

struct Collector<E>(Arc<Mutex<Vec<E>>>);

impl<E: Message<Result = ()> + Send + Unpin + 'static> Actor for Collector<E> {
    type Context = Context<Self>;
}

impl<E: Message<Result = ()> + Send + Unpin + 'static> Handler<E> for Collector<E> {
    type Result = ();
    fn handle(&mut self, msg: E, _: &mut Context<Self>) {
        self.0.lock().push(msg);
    }
}

fn collect<E: Message<Result = ()> + Send + Unpin + 'static>(topic: &Topic<E>) -> Arc<Mutex<Vec<E>>> {
    let sink = Arc::new(Mutex::new(Vec::new()));
    let addr = Collector(sink.clone()).start();
    topic.subscribe("test", addr.recipient());
    sink
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).unwrap()
}

fn btc() -> Symbol {
    Symbol::parse("BTC/USDT").unwrap()
}

struct Env {
    paper: PaperExchange,
    clock: ManualClock,
    secs: AtomicI64,
    store: MemoryOrderStore,
    audit: MemAudit,
    registry: Registry,
    addr: Addr<OrderExecutionManager>,
    events: Arc<Mutex<Vec<ExecutionEvent>>>,
    alerts: Arc<Mutex<Vec<RiskAlert>>>,
    portfolio: Arc<Mutex<Vec<PortfolioUpdate>>>,
}

fn exec_config() -> ExecutionConfig {
    ExecutionConfig {
        poll_interval_ms: 50,
        protection_retry_ms: 50,
        protection_retry_max_ms: 200,
        retry_delay_ms: 10,
        snapshot_interval_secs: 3600,
        ..ExecutionConfig::default()
    }
}

async fn env_with(paper_cfg: PaperConfig, cfg: ExecutionConfig) -> Env {
    env_full(paper_cfg, cfg, false).await
}

async fn env_full(paper_cfg: PaperConfig, cfg: ExecutionConfig, feed_paper: bool) -> Env {
    let clock = ManualClock::new(t0());
    let paper = PaperExchange::new(paper_cfg, Arc::new(clock.clone())).unwrap();
    paper.on_price(&btc(), dec!(50000), t0());
    let store = MemoryOrderStore::default();
    let audit = MemAudit::default();
    let alerts_topic: Topic<RiskAlert> = Topic::new();
    let events_topic: Topic<ExecutionEvent> = Topic::new();
    let portfolio_topic: Topic<PortfolioUpdate> = Topic::new();
    let events = collect(&events_topic);
    let alerts = collect(&alerts_topic);
    let portfolio = collect(&portfolio_topic);
    let registry = Registry::new(RestartPolicy::default(), alerts_topic.clone(), Arc::new(clock.clone()));
    let deps = ManagerDeps {
        config: cfg,
        exchange: Arc::new(paper.clone()),
        paper: Some(paper.clone()),
        feed_paper,
        orders: Arc::new(store.clone()),
        state: Arc::new(MemState::default()),
        audit: Arc::new(audit.clone()),
        events: events_topic,
        portfolio: portfolio_topic,
        alerts: alerts_topic,
        clock: Arc::new(clock.clone()),
        outbox: None,
    };
    let addr = start_supervised(&registry, "execution_manager", true, 256, move |sup| {
        OrderExecutionManager::new(sup, deps)
    });
    let env = Env {
        paper,
        clock,
        secs: AtomicI64::new(0),
        store,
        audit,
        registry,
        addr,
        events,
        alerts,
        portfolio,
    };
    env.wait_ready().await;
    env
}

async fn env() -> Env {
    env_with(PaperConfig::default(), exec_config()).await
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if f().await {
            return;
        }
        actix::clock::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn proposal(side: Side, size_usd: Decimal, sl: Option<Decimal>, tp: Option<Decimal>) -> TradeProposal {
    TradeProposal {
        symbol: btc(),
        side,
        size_usd,
        entry_price: dec!(50000),
        stop_loss: sl,
        take_profit: tp,
        leverage: 1,
        confidence: 0.8,
        regime: Regime::TrendingBull,
        source: ProposalSource::Manual,
        correlation_id: CorrelationId::new(),
        reduce_only: false,
    }
}

fn trade(p: TradeProposal) -> ExecuteTrade {
    ExecuteTrade::limit(RiskApproved::for_tests(p))
}

impl Env {
    async fn wait_ready(&self) {
        let addr = self.addr.clone();
        eventually("manager ready", || {
            let a = addr.clone();
            async move { a.send(IsReady).await.unwrap_or(false) }
        })
        .await;
    }

    fn tick(&self, price: Decimal) {
        let s = self.secs.fetch_add(10, Ordering::SeqCst) + 10;
        self.clock.set(t0() + chrono::Duration::seconds(s));
        self.paper.on_price(&btc(), price, self.clock.now());
        self.addr.do_send(PollNow);
    }

    /// Waits until the manager's queued store writes are done.
    async fn flush(&self) {
        self.addr.send(FlushWrites).await.unwrap();
    }

    async fn positions(&self) -> Vec<PositionView> {
        self.flush().await;
        self.store.list_positions(None, None, 100).await.unwrap()
    }

    async fn orders(&self) -> Vec<OrderRecord> {
        self.flush().await;
        self.store.list_orders(None, false, 100).await.unwrap()
    }

    async fn order_by_purpose(&self, purpose: &str, status: OrderStatus) -> Vec<OrderRecord> {
        self.orders()
            .await
            .into_iter()
            .filter(|o| o.view.purpose.as_str() == purpose && o.view.status == status)
            .collect()
    }

    /// Open protective orders on the paper exchange for `volume`.
    fn paper_open(&self, ty: OrderType) -> Vec<triplegain_actors::ports::ExchangeOrder> {
        futures::executor::block_on(triplegain_actors::ports::Exchange::open_orders(&self.paper))
            .unwrap()
            .into_iter()
            .filter(|o| o.order_type == ty)
            .collect()
    }

    /// Waits until the position is protected by an open stop and take-profit for its full size.
    async fn wait_protected(&self, with_tp: bool) -> PositionView {
        let mut last = None;
        for _ in 0..200 {
            let pos = self
                .positions()
                .await
                .into_iter()
                .find(|p| p.status == PositionStatus::Open);
            if let Some(p) = pos {
                let sl_ok = self
                    .paper_open(OrderType::StopLoss)
                    .iter()
                    .any(|o| o.volume - o.filled_volume == p.size && o.price == p.stop_loss);
                let tp_ok = !with_tp
                    || self
                        .paper_open(OrderType::Limit)
                        .iter()
                        .any(|o| o.side == Side::Sell && o.volume - o.filled_volume == p.size);
                if sl_ok && tp_ok && p.stop_loss_order_id.is_some() {
                    return p;
                }
                last = Some(p);
            }
            actix::clock::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "position never protected: {last:?}; open: {:?}",
            self.paper_open(OrderType::StopLoss)
        );
    }
}

// ------------------------------------------------------------------ tests

#[actix::test]
async fn fill_opens_a_position_protected_by_stop_and_take_profit_for_the_filled_size() {
    let env = env().await;
    let p = proposal(Side::Buy, dec!(1000), Some(dec!(49000)), Some(dec!(52000)));
    let corr = p.correlation_id;
    let res = env.addr.send(trade(p)).await.unwrap().unwrap();
    assert_eq!(res.orders.len(), 1);
    let entry = &res.orders[0];
    assert_eq!(entry.status, OrderStatus::Open);
    assert_eq!(entry.volume, dec!(0.02));
    assert_eq!(entry.price, Some(dec!(50000)));
    // The pending record was stored before the request was sent, then the acknowledgement.
    env.flush().await;
    let log = env.store.status_log(entry.id).await.unwrap();
    assert_eq!(log[0].to, OrderStatus::Pending);
    assert_eq!(log[1].to, OrderStatus::Open);

    env.tick(dec!(49990));
    let pos = env.wait_protected(true).await;
    assert_eq!(pos.size, dec!(0.02));
    assert_eq!(pos.stop_loss, Some(dec!(49000)));
    assert!(pos.take_profit_order_id.is_some());
    let sl = env.paper_open(OrderType::StopLoss);
    assert_eq!(sl.len(), 1);
    assert_eq!(sl[0].side, Side::Sell);
    let tp = env.paper_open(OrderType::Limit);
    assert_eq!(tp.len(), 1);
    assert_eq!(tp[0].price, Some(dec!(52000)));
    // SL and TP are linked to each other.
    let sl_rec = env
        .store
        .get_order(pos.stop_loss_order_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sl_rec.linked_order_id, pos.take_profit_order_id);
    eventually("decision links recorded", || {
        let audit = env.audit.clone();
        async move {
            let stages: Vec<String> = audit
                .0
                .lock()
                .iter()
                .filter(|d| d.correlation_id == corr)
                .map(|d| d.stage.clone())
                .collect();
            ["order_placed", "order_filled", "position_opened"]
                .iter()
                .all(|s| stages.iter().any(|x| x == s))
        }
    })
    .await;
    assert!(env
        .events
        .lock()
        .iter()
        .any(|e| e.event_type == ExecutionEventType::PositionOpened));
}

#[actix::test]
async fn take_profit_fill_cancels_the_stop_and_closes_the_position_with_net_pnl() {
    let env = env().await;
    let p = proposal(Side::Buy, dec!(1000), Some(dec!(49000)), Some(dec!(52000)));
    env.addr.send(trade(p)).await.unwrap().unwrap();
    env.tick(dec!(49990));
    let pos = env.wait_protected(true).await;
    let sl_id = pos.stop_loss_order_id.unwrap();

    env.tick(dec!(52100));
    eventually("position closed and stop cancelled", || async {
        let closed = env
            .positions()
            .await
            .iter()
            .any(|p| p.id == pos.id && p.status == PositionStatus::Closed);
        let sl = env.store.get_order(sl_id).await.unwrap().unwrap();
        closed && sl.view.status == OrderStatus::Cancelled
    })
    .await;
    assert!(env.paper_open(OrderType::StopLoss).is_empty());
    let closed = env.positions().await.into_iter().find(|p| p.id == pos.id).unwrap();
    let fees = closed.fees;
    assert!(fees > Decimal::ZERO);
    // (52000 − entry) × 0.02 − every fee.
    let expected = (dec!(52000) - pos.entry_price) * dec!(0.02) - fees;
    assert_eq!(closed.realized_pnl, expected);
    assert_eq!(closed.exit_price, Some(dec!(52000)));
    let ev = env
        .events
        .lock()
        .iter()
        .find(|e| e.event_type == ExecutionEventType::PositionClosed)
        .cloned()
        .unwrap();
    assert_eq!(ev.realized_pnl, Some(expected));
    // The BTC bought was sold exactly once.
    let bal = futures::executor::block_on(triplegain_actors::ports::Exchange::balances(&env.paper)).unwrap();
    assert_eq!(bal.get("BTC").copied().unwrap_or_default(), Decimal::ZERO);
    eventually("portfolio valued", || async { !env.portfolio.lock().is_empty() }).await;
}

#[actix::test]
async fn partial_fill_is_protected_for_the_filled_part_and_protection_grows() {
    let env = env_with(
        PaperConfig {
            partial_fills: true,
            ..PaperConfig::default()
        },
        exec_config(),
    )
    .await;
    let p = proposal(Side::Buy, dec!(1000), Some(dec!(49000)), Some(dec!(52000)));
    let res = env.addr.send(trade(p)).await.unwrap().unwrap();
    let entry_id = res.orders[0].id;
    // Find an update that fills only part of the entry.
    let mut partial = None;
    for _ in 0..10 {
        env.tick(dec!(49990));
        actix::clock::sleep(Duration::from_millis(100)).await;
        let entry = env.store.get_order(entry_id).await.unwrap().unwrap();
        if entry.view.status == OrderStatus::PartiallyFilled {
            partial = Some(entry);
            break;
        }
        if entry.view.status == OrderStatus::Filled {
            break;
        }
    }
    let partial = partial.expect("the seeded paper exchange fills the entry partially first");
    let pos = env.wait_protected(false).await;
    assert!(pos.size < dec!(0.02));
    assert!(pos.size >= partial.view.filled_volume);
    // Keep feeding prices until the entry is filled; the stop then covers the whole size.
    for _ in 0..20 {
        let entry = env.store.get_order(entry_id).await.unwrap().unwrap();
        if entry.view.status == OrderStatus::Filled {
            break;
        }
        env.tick(dec!(49990));
        actix::clock::sleep(Duration::from_millis(100)).await;
    }
    eventually("stop grown to the full size", || async {
        let sl: Decimal = env
            .paper_open(OrderType::StopLoss)
            .iter()
            .map(|o| o.volume - o.filled_volume)
            .sum();
        sl == dec!(0.02)
    })
    .await;
    assert_eq!(
        env.paper_open(OrderType::StopLoss).len(),
        1,
        "the smaller stop was replaced, not kept"
    );
}

#[actix::test]
async fn failed_stop_placement_alerts_urgently_and_is_retried_until_placed() {
    let env = env_with(
        PaperConfig::default(),
        ExecutionConfig {
            auto_take_profit: false,
            ..exec_config()
        },
    )
    .await;
    let p = proposal(Side::Buy, dec!(1000), Some(dec!(49000)), None);
    env.addr.send(trade(p)).await.unwrap().unwrap();
    env.paper.fail_next_op(
        PaperOp::PlaceOrder,
        ExchangeError::Rejected("EGeneral:Internal error".into()),
        false,
    );
    env.paper.fail_next_op(
        PaperOp::PlaceOrder,
        ExchangeError::Rejected("EGeneral:Internal error".into()),
        false,
    );
    env.tick(dec!(49990));
    eventually("urgent stop-loss alert", || async {
        env.alerts
            .lock()
            .iter()
            .filter(|a| a.alert_type == AlertType::StopLossMissing)
            .count()
            >= 2
    })
    .await;
    let a = env
        .alerts
        .lock()
        .iter()
        .find(|a| a.alert_type == AlertType::StopLossMissing)
        .cloned()
        .unwrap();
    assert_eq!(a.meta.priority, Priority::Urgent);
    let pos = env.wait_protected(false).await;
    assert_eq!(env.paper_open(OrderType::StopLoss).len(), 1);
    assert_eq!(pos.size, dec!(0.02));
    assert_eq!(env.order_by_purpose("stop_loss", OrderStatus::Rejected).await.len(), 2);
}

#[actix::test]
async fn unknown_outcome_is_tracked_as_unknown_and_reconciled_by_client_id_without_a_second_order() {
    let env = env().await;
    env.paper
        .fail_next_op(PaperOp::PlaceOrder, ExchangeError::Unknown("timeout".into()), true);
    let p = proposal(Side::Buy, dec!(1000), Some(dec!(49000)), Some(dec!(52000)));
    let err = env.addr.send(trade(p)).await.unwrap().unwrap_err();
    assert!(matches!(err, ExecutionError::Unknown(_)), "{err:?}");
    let entry = env
        .orders()
        .await
        .into_iter()
        .find(|o| o.view.purpose.as_str() == "entry")
        .unwrap();
    let id = entry.view.id;
    assert_eq!(
        entry.view.status,
        OrderStatus::Unknown,
        "never taken for 'never placed'"
    );
    eventually("reconciled from unknown to open", || async {
        env.store.get_order(id).await.unwrap().unwrap().view.status == OrderStatus::Open
    })
    .await;
    let log: Vec<OrderStatus> = env.store.status_log(id).await.unwrap().iter().map(|t| t.to).collect();
    assert_eq!(log, vec![OrderStatus::Pending, OrderStatus::Unknown, OrderStatus::Open]);
    // Exactly one order on the exchange carries that client id: nothing was re-sent.
    let on_exchange = env.paper_open(OrderType::Limit);
    assert_eq!(on_exchange.len(), 1);
    assert_eq!(
        on_exchange[0].client_order_id.as_ref(),
        Some(&entry.view.client_order_id)
    );
    env.tick(dec!(49990));
    env.wait_protected(true).await;
}

#[actix::test]
async fn restart_applies_the_fill_that_happened_while_down_and_protects_the_position() {
    let env = env().await;
    let p = proposal(Side::Buy, dec!(1000), Some(dec!(49000)), Some(dec!(52000)));
    env.addr.send(trade(p)).await.unwrap().unwrap();
    env.registry.inject_fault("execution_manager").await.unwrap();
    // The entry fills while the manager restarts.
    let s = env.secs.fetch_add(10, Ordering::SeqCst) + 10;
    env.clock.set(t0() + chrono::Duration::seconds(s));
    let fills = env.paper.on_price(&btc(), dec!(49990), env.clock.now());
    assert_eq!(fills.len(), 1);
    env.wait_ready().await;
    assert_eq!(env.registry.get("execution_manager").unwrap().restarts, 1);
    let pos = env.wait_protected(true).await;
    assert_eq!(pos.size, dec!(0.02));
    actix::clock::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        env.paper_open(OrderType::StopLoss).len(),
        1,
        "exactly one stop after reconciliation"
    );
    assert_eq!(env.positions().await.len(), 1);
}

#[actix::test]
async fn close_and_modify_replace_exchange_orders() {
    let env = env().await;
    let p = proposal(Side::Buy, dec!(1000), Some(dec!(49000)), Some(dec!(52000)));
    env.addr.send(trade(p)).await.unwrap().unwrap();
    env.tick(dec!(49990));
    let pos = env.wait_protected(true).await;
    let old_sl = pos.stop_loss_order_id.unwrap();
    let view = env
        .addr
        .send(ModifyPosition {
            position_id: pos.id,
            stop_loss: Some(dec!(49500)),
            take_profit: None,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.stop_loss, Some(dec!(49500)));
    eventually("stop replaced", || async {
        let sl = env.paper_open(OrderType::StopLoss);
        sl.len() == 1 && sl[0].price == Some(dec!(49500))
    })
    .await;
    eventually("old stop cancelled", || async {
        env.store.get_order(old_sl).await.unwrap().unwrap().view.status == OrderStatus::Cancelled
    })
    .await;
    let res = env
        .addr
        .send(ClosePosition {
            position_id: pos.id,
            fraction: Decimal::ONE,
            reason: "manual".into(),
            correlation_id: pos.correlation_id,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.orders[0].purpose.as_str(), "close");
    env.tick(dec!(50100));
    eventually("closed", || async {
        env.positions().await.iter().all(|p| p.status == PositionStatus::Closed)
    })
    .await;
    assert!(env.paper_open(OrderType::StopLoss).is_empty());
    assert!(env.paper_open(OrderType::Limit).is_empty());
}

#[actix::test]
async fn position_limits_refuse_a_third_position_on_a_symbol() {
    let env = env().await;
    for _ in 0..2 {
        let p = proposal(Side::Buy, dec!(100), Some(dec!(49000)), None);
        env.addr.send(trade(p)).await.unwrap().unwrap();
    }
    let p = proposal(Side::Buy, dec!(100), Some(dec!(49000)), None);
    let err = env.addr.send(trade(p)).await.unwrap().unwrap_err();
    assert!(
        matches!(err, ExecutionError::NotAllowed(ref m) if m.contains("max_positions_per_symbol")),
        "{err:?}"
    );
}

#[actix::test]
async fn the_seventh_entry_counting_pending_ones_is_refused() {
    assert_eq!(ExecutionConfig::default().max_positions_total, 6);
    assert_eq!(ExecutionConfig::default().max_positions_per_symbol, 2);
    // Per symbol raised so the total limit (the default 6) is what binds.
    let env = env_with(
        PaperConfig::default(),
        ExecutionConfig {
            max_positions_per_symbol: 10,
            ..exec_config()
        },
    )
    .await;
    // Two entries fill into open positions.
    for _ in 0..2 {
        let p = proposal(Side::Buy, dec!(100), Some(dec!(49000)), None);
        env.addr.send(trade(p)).await.unwrap().unwrap();
    }
    env.tick(dec!(49990));
    eventually("two open positions", || async {
        env.positions()
            .await
            .iter()
            .filter(|p| p.status == PositionStatus::Open)
            .count()
            == 2
    })
    .await;
    // Four more rest below the market: pending entries, no position yet.
    for _ in 0..4 {
        let mut p = proposal(Side::Buy, dec!(100), Some(dec!(40000)), None);
        p.entry_price = dec!(45000);
        let res = env.addr.send(trade(p)).await.unwrap().unwrap();
        assert_eq!(res.orders[0].status, OrderStatus::Open);
    }
    assert_eq!(env.order_by_purpose("entry", OrderStatus::Open).await.len(), 4);
    let mut p = proposal(Side::Buy, dec!(100), Some(dec!(40000)), None);
    p.entry_price = dec!(45000);
    let err = env.addr.send(trade(p)).await.unwrap().unwrap_err();
    assert!(
        matches!(err, ExecutionError::NotAllowed(ref m) if m.contains("max_positions_total 6")),
        "{err:?}"
    );
    let entries = env
        .orders()
        .await
        .into_iter()
        .filter(|o| o.view.purpose.as_str() == "entry")
        .count();
    assert_eq!(entries, 6, "the refused entry never reached the store or the exchange");
}

#[actix::test]
async fn a_drained_manager_sends_nothing_more_to_the_exchange() {
    let env = env().await;
    let p = proposal(Side::Buy, dec!(1000), Some(dec!(49000)), Some(dec!(52000)));
    env.addr.send(trade(p)).await.unwrap().unwrap();
    env.addr.send(triplegain_actors::supervision::Drain).await.unwrap();
    // The exchange fills the entry after shutdown began: the next process protects it, not this one.
    env.tick(dec!(49990));
    actix::clock::sleep(Duration::from_millis(300)).await;
    assert!(env.paper_open(OrderType::StopLoss).is_empty());
    assert!(env.positions().await.is_empty());
    let err = env
        .addr
        .send(trade(proposal(Side::Buy, dec!(100), Some(dec!(49000)), None)))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, ExecutionError::Unavailable(_)), "{err:?}");
}

#[actix::test]
async fn trailing_stop_follows_new_highs_and_replaces_the_exchange_stop() {
    use triplegain_actors::execution::manager::{PriceUpdate, SnapshotNow, TrailingStopConfig};
    let env = env_with(
        PaperConfig::default(),
        ExecutionConfig {
            trailing_stop: TrailingStopConfig {
                enabled: true,
                ..TrailingStopConfig::default()
            },
            ..exec_config()
        },
    )
    .await;
    let p = proposal(Side::Buy, dec!(1000), Some(dec!(49000)), Some(dec!(55000)));
    env.addr.send(trade(p)).await.unwrap().unwrap();
    env.tick(dec!(49990));
    env.wait_protected(true).await;
    // +0.5 %: below the 1 % activation, nothing moves.
    env.addr.do_send(PriceUpdate {
        symbol: btc(),
        price: dec!(50250),
    });
    env.addr.send(SnapshotNow).await.unwrap();
    actix::clock::sleep(Duration::from_millis(100)).await;
    assert_eq!(env.paper_open(OrderType::StopLoss)[0].price, Some(dec!(49000)));
    // A new high of 51 000 moves the stop to 51 000 × (1 − 1.5 %).
    env.addr.do_send(PriceUpdate {
        symbol: btc(),
        price: dec!(51000),
    });
    eventually("stop trailed to 50235", || async {
        let sl = env.paper_open(OrderType::StopLoss);
        sl.len() == 1 && sl[0].price == Some(dec!(50235))
    })
    .await;
    // A lower price never lowers it.
    env.addr.do_send(PriceUpdate {
        symbol: btc(),
        price: dec!(50500),
    });
    actix::clock::sleep(Duration::from_millis(150)).await;
    let sl = env.paper_open(OrderType::StopLoss);
    assert_eq!((sl.len(), sl[0].price), (1, Some(dec!(50235))));
    let pos = env
        .positions()
        .await
        .into_iter()
        .find(|p| p.status == PositionStatus::Open)
        .unwrap();
    assert_eq!(pos.stop_loss, Some(dec!(50235)));
    // Snapshots are written for open positions.
    env.addr.send(SnapshotNow).await.unwrap();
    eventually("snapshot written", || async { !env.store.snapshots().is_empty() }).await;
}

#[actix::test]
async fn a_breached_stop_without_a_working_stop_order_closes_the_position_once() {
    use triplegain_actors::execution::manager::PriceUpdate;
    let env = env_with(
        PaperConfig::default(),
        ExecutionConfig {
            auto_stop_loss: false,
            auto_take_profit: false,
            ..exec_config()
        },
    )
    .await;
    let p = proposal(Side::Buy, dec!(1000), Some(dec!(49000)), None);
    env.addr.send(trade(p)).await.unwrap().unwrap();
    env.tick(dec!(49990));
    eventually("position open", || async {
        env.positions().await.iter().any(|p| p.status == PositionStatus::Open)
    })
    .await;
    env.addr.do_send(PriceUpdate {
        symbol: btc(),
        price: dec!(48900),
    });
    env.addr.do_send(PriceUpdate {
        symbol: btc(),
        price: dec!(48800),
    });
    eventually("backup close sent", || async {
        !env.order_by_purpose("close", OrderStatus::Open).await.is_empty()
    })
    .await;
    assert_eq!(
        env.orders()
            .await
            .iter()
            .filter(|o| o.view.purpose.as_str() == "close")
            .count(),
        1
    );
    assert!(env
        .alerts
        .lock()
        .iter()
        .any(|a| a.alert_type == AlertType::StopLossMissing));
    env.tick(dec!(48800));
    eventually("closed", || async {
        env.positions().await.iter().all(|p| p.status == PositionStatus::Closed)
    })
    .await;
    let closed = env.positions().await.remove(0);
    assert!(closed.realized_pnl < Decimal::ZERO);
    let ev = env
        .events
        .lock()
        .iter()
        .find(|e| e.event_type == ExecutionEventType::PositionClosed)
        .cloned()
        .unwrap();
    assert_eq!(ev.realized_pnl, Some(closed.realized_pnl));
}

#[actix::test]
async fn closed_candles_move_the_paper_exchange_and_stale_candles_are_ignored() {
    use triplegain_actors::domain::{Candle, Timeframe};
    use triplegain_actors::messages::{CandleClosed, EventMeta};
    let env = env_full(PaperConfig::default(), exec_config(), true).await;
    let p = proposal(Side::Buy, dec!(1000), Some(dec!(49000)), Some(dec!(52000)));
    env.addr.send(trade(p)).await.unwrap().unwrap();
    let candle = |minute: i64, low: Decimal, close: Decimal| CandleClosed {
        meta: EventMeta::new("test", t0()),
        candle: Candle {
            symbol: btc(),
            timeframe: Timeframe::M1,
            open_time: t0() + chrono::Duration::minutes(minute),
            open: dec!(50010),
            high: dec!(50020),
            low,
            close,
            volume: dec!(1),
        },
    };
    env.clock.set(t0() + chrono::Duration::minutes(3));
    env.addr.do_send(candle(2, dec!(49950), dec!(50000)));
    env.wait_protected(true).await;
    // A candle older than the last one seen changes neither the exchange nor the cached price.
    env.addr.do_send(candle(1, dec!(48000), dec!(48100)));
    actix::clock::sleep(Duration::from_millis(200)).await;
    assert!(env.positions().await.iter().all(|p| p.status == PositionStatus::Open));
    assert_eq!(env.paper.last_price(&btc()), Some(dec!(50000)));
}
