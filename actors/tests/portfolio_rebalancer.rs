#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]
//! The PortfolioRebalancer on a manual business clock: DCA batches executed when due, also after
//! a crash and restart; hodl bags reloaded on start and excluded from rebalancing; profits
//! allocated to hodl bags and purchases placed through execution.

use actix::prelude::*;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use parking_lot::Mutex;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use std::sync::Arc;
use std::time::Duration;
use triplegain_actors::bus::Topic;
use triplegain_actors::clock::{ManualClock, SharedClock};
use triplegain_actors::domain::{OrderStatus, Side, Symbol};
use triplegain_actors::execution::api::{ExecuteTrade, ExecutionError, ExecutionResult};
use triplegain_actors::execution::paper::{PaperConfig, PaperExchange};
use triplegain_actors::messages::{EventMeta, ExecutionEvent, ExecutionEventType, HoldingsReport, PortfolioUpdate};
use triplegain_actors::portfolio::rebalance::{ExecutionStrategy, RebalanceAction, TradeAction};
use triplegain_actors::portfolio::{
    CheckPortfolio, ConnectExecution, GetAllocation, GetHodl, GetHodlHistory, HodlBag, HodlConfig,
    MemoryPortfolioStore, PortfolioConfig, PortfolioRebalancer, PortfolioRebalancerConfig, PortfolioStore,
    RebalanceTick,
};
use triplegain_actors::risk::{
    judgement_for_tests, ApproveTrade, Judgement, ProposalSource, RiskVerdict, TradeProposal, VerdictMetrics,
    VerdictStatus,
};
use triplegain_actors::supervision::{start_supervised, ActorError, Registry, RestartPolicy};

/// Approves every proposal and remembers it.
struct FakeRisk(Arc<Mutex<Vec<TradeProposal>>>);
impl Actor for FakeRisk {
    type Context = Context<Self>;
}
impl Handler<ApproveTrade> for FakeRisk {
    type Result = Result<Judgement, ActorError>;
    fn handle(&mut self, msg: ApproveTrade, _: &mut Context<Self>) -> Self::Result {
        self.0.lock().push(msg.0.clone());
        Ok(judgement_for_tests(RiskVerdict {
            status: VerdictStatus::Approved,
            rejections: vec![],
            reason: None,
            warnings: vec![],
            modifications: vec![],
            proposal: msg.0,
            metrics: VerdictMetrics::default(),
            validation_ms: 0.0,
        }))
    }
}

/// Accepts every trade and remembers it.
struct FakeExec(Arc<Mutex<Vec<ExecuteTrade>>>);
impl Actor for FakeExec {
    type Context = Context<Self>;
}
impl Handler<ExecuteTrade> for FakeExec {
    type Result = Result<ExecutionResult, ExecutionError>;
    fn handle(&mut self, msg: ExecuteTrade, _: &mut Context<Self>) -> Self::Result {
        let cid = msg.proposal().correlation_id;
        self.0.lock().push(msg);
        Ok(ExecutionResult {
            correlation_id: cid,
            orders: vec![],
            position_id: None,
        })
    }
}

struct Harness {
    addr: Addr<PortfolioRebalancer>,
    clock: ManualClock,
    registry: Registry,
    store: MemoryPortfolioStore,
    proposals: Arc<Mutex<Vec<TradeProposal>>>,
    executed: Arc<Mutex<Vec<ExecuteTrade>>>,
    updates: Topic<HoldingsReport>,
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-05T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn sym(s: &str) -> Symbol {
    Symbol::parse(s).unwrap()
}

async fn harness(balances: &[(&str, Decimal)], prices: (Decimal, Decimal), store: MemoryPortfolioStore) -> Harness {
    let clock = ManualClock::new(t0());
    let shared: SharedClock = Arc::new(clock.clone());
    let registry = Registry::new(RestartPolicy::default(), Topic::new(), shared.clone());
    let paper = PaperExchange::new(
        PaperConfig {
            initial_balances: balances.iter().map(|(a, v)| ((*a).to_owned(), *v)).collect(),
            ..PaperConfig::default()
        },
        shared.clone(),
    )
    .unwrap();
    let proposals = Arc::new(Mutex::new(Vec::new()));
    let executed = Arc::new(Mutex::new(Vec::new()));
    let risk = FakeRisk(proposals.clone()).start();
    let exec = FakeExec(executed.clone()).start();
    let updates = Topic::new();
    let (btc, xrp) = prices;
    let cfg = PortfolioRebalancerConfig {
        portfolio: PortfolioConfig::reference(),
        hodl: HodlConfig::default(),
        exchange: Arc::new(paper),
        store: Arc::new(store.clone()),
        risk: risk.recipient(),
        execution: None,
        updates: updates.clone(),
        clock: shared,
        prices: Some(Arc::new(move |s: &Symbol| match s.as_str() {
            "BTC/USDT" => Some(btc),
            "XRP/USDT" => Some(xrp),
            _ => None,
        })),
        advisor: None,
        tick_interval: Duration::from_secs(3600),
    };
    let addr = start_supervised(&registry, "portfolio_rebalancer", false, 64, move |sup| {
        PortfolioRebalancer::new(sup, cfg)
    });
    addr.send(ConnectExecution(exec.recipient())).await.unwrap();
    addr.send(valuation(dec!(10000))).await.unwrap();
    Harness {
        addr,
        clock,
        registry,
        store,
        proposals,
        executed,
        updates,
    }
}

/// The execution manager's valuation of the account (what the risk engine sizes trades against).
fn valuation(equity: Decimal) -> PortfolioUpdate {
    PortfolioUpdate {
        meta: EventMeta::new("execution_manager", t0()),
        equity_usd: equity,
        peak_equity_usd: equity,
        drawdown_pct: Decimal::ZERO,
        open_exposure_usd: Decimal::ZERO,
        exposure_by_symbol: Default::default(),
        balances: Default::default(),
        allocation_pct: Default::default(),
        position_footprint: Default::default(),
    }
}

async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        actix::clock::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn statuses(store: &MemoryPortfolioStore) -> Vec<(u32, String)> {
    store
        .rebalances()
        .iter()
        .map(|r| (r.batch_index, r.status.clone()))
        .collect()
}

#[actix::test]
async fn dca_batches_run_when_due_and_survive_a_restart() {
    // Arrange: all USDT → buy BTC and XRP for $3 333 each = 6 batches.
    let h = harness(
        &[("USDT", dec!(10000))],
        (dec!(50000), dec!(0.5)),
        MemoryPortfolioStore::default(),
    )
    .await;

    // Act
    let plan = h.addr.send(CheckPortfolio { force: false }).await.unwrap().unwrap();

    // Assert: the plan, six stored rows, batch 0 executed at once.
    assert_eq!(plan.action, RebalanceAction::Rebalance);
    assert_eq!(plan.execution_strategy, ExecutionStrategy::Dca24h);
    assert_eq!(plan.batches.len(), 6);
    let buys: Vec<_> = plan
        .rebalance_trades
        .iter()
        .map(|t| (t.symbol.as_str(), t.action, t.amount_usd))
        .collect();
    assert_eq!(
        buys,
        vec![
            ("BTC/USDT", TradeAction::Buy, dec!(3333)),
            ("XRP/USDT", TradeAction::Buy, dec!(3333))
        ]
    );
    assert_eq!(h.store.rebalances().len(), 6);
    eventually("batch 0 executed", || h.executed.lock().len() == 2).await;
    let first = h.executed.lock()[0].clone();
    assert_eq!(first.proposal().source, ProposalSource::Rebalance);
    assert_eq!(first.proposal().leverage, 1);
    assert_eq!(first.proposal().stop_loss, None);
    assert_eq!(first.proposal().size_usd, dec!(555.50), "3 333 / 6 in cents");
    eventually("batch 0 stored as executed", || statuses(&h.store)[0].1 == "executed").await;

    // Act: crash; the restarted actor reloads the pending batches from the store.
    h.registry.inject_fault("portfolio_rebalancer").await.unwrap();
    h.clock.advance(ChronoDuration::hours(3));
    h.addr.send(RebalanceTick).await.unwrap();
    actix::clock::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.executed.lock().len(), 2, "batch 1 is not due before 4 h");
    h.clock.advance(ChronoDuration::hours(1));
    h.addr.send(RebalanceTick).await.unwrap();

    // Assert
    eventually("batch 1 executed after the restart", || h.executed.lock().len() == 4).await;
    eventually("batch 1 stored as executed", || statuses(&h.store)[1].1 == "executed").await;
    assert_eq!(h.registry.get("portfolio_rebalancer").unwrap().restarts, 1);
    assert!(statuses(&h.store)[2..].iter().all(|(_, s)| s == "pending"));
    // Every later batch at 4 h intervals, none executed twice.
    h.clock.advance(ChronoDuration::hours(20));
    h.addr.send(RebalanceTick).await.unwrap();
    eventually("all batches executed", || h.executed.lock().len() == 12).await;
    actix::clock::sleep(Duration::from_millis(50)).await;
    h.addr.send(RebalanceTick).await.unwrap();
    actix::clock::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.executed.lock().len(), 12);
    let total: Decimal = h
        .executed
        .lock()
        .iter()
        .filter(|e| e.proposal().symbol == sym("BTC/USDT"))
        .map(|e| e.proposal().size_usd)
        .sum();
    assert_eq!(total, dec!(3333), "batches sum exactly to the trade");
}

#[actix::test]
async fn no_action_below_threshold_and_nothing_executed() {
    let h = harness(
        &[("USDT", dec!(1000)), ("BTC", dec!(0.02)), ("XRP", dec!(2000))],
        (dec!(50000), dec!(0.5)),
        MemoryPortfolioStore::default(),
    )
    .await;
    let plan = h.addr.send(CheckPortfolio { force: false }).await.unwrap().unwrap();
    assert_eq!(plan.action, RebalanceAction::NoAction);
    actix::clock::sleep(Duration::from_millis(50)).await;
    assert!(h.proposals.lock().is_empty());
    assert_eq!(statuses(&h.store), vec![(0, "no_action".to_owned())]);
}

#[actix::test]
async fn hodl_bags_are_reloaded_on_start_and_excluded_from_rebalancing() {
    // Arrange: a stored BTC bag of 0.0155 out of 0.05 BTC held (the design example).
    let store = MemoryPortfolioStore::default();
    let mut bag = HodlBag::empty("BTC");
    bag.balance = dec!(0.0155);
    store.record_hodl(vec![bag], vec![]).await.unwrap();
    let btc_price = dec!(1535) / dec!(0.0345);
    let h = harness(
        &[("BTC", dec!(0.05)), ("XRP", dec!(2150)), ("USDT", dec!(1275))],
        (btc_price, dec!(0.6)),
        store,
    )
    .await;

    // Act
    let alloc = h.addr.send(GetAllocation).await.unwrap().unwrap();
    let hodl = h.addr.send(GetHodl).await.unwrap().unwrap();
    let plan = h.addr.send(CheckPortfolio { force: false }).await.unwrap().unwrap();

    // Assert
    assert_eq!(alloc.available["BTC"], dec!(0.0345));
    assert_eq!(alloc.btc_value_usd.round_dp(2), dec!(1535));
    assert_eq!(alloc.btc_pct.round_dp(1), dec!(37.4));
    assert_eq!(
        hodl.bags.iter().find(|b| b.asset == "BTC").unwrap().balance,
        dec!(0.0155)
    );
    assert_eq!(
        plan.action,
        RebalanceAction::NoAction,
        "4.1 % < 5 % once the bag is excluded"
    );
    let _ = &h.updates;
}

fn closed(pnl: Decimal) -> ExecutionEvent {
    ExecutionEvent {
        meta: EventMeta::new("execution", t0()),
        event_type: ExecutionEventType::PositionClosed,
        order_id: "o1".into(),
        client_order_id: None,
        symbol: sym("BTC/USDT"),
        side: Side::Sell,
        status: OrderStatus::Filled,
        size: dec!(0.01),
        fill_price: None,
        fee: Decimal::ZERO,
        realized_pnl: Some(pnl),
        position_id: Some(uuid::Uuid::new_v4().to_string()),
    }
}

#[actix::test]
async fn realised_profits_fill_hodl_bags_and_buy_at_the_threshold() {
    let h = harness(
        &[("USDT", dec!(10000))],
        (dec!(50000), dec!(0.5)),
        MemoryPortfolioStore::default(),
    )
    .await;

    // $100 profit → $3.34 USDT held, $3.33 XRP and BTC pending; $0.50 → nothing.
    h.addr.do_send(closed(dec!(100)));
    h.addr.do_send(closed(dec!(0.5)));
    let v = h.addr.send(GetHodl).await.unwrap().unwrap();
    let bag =
        |v: &triplegain_actors::portfolio::HodlView, a: &str| v.bags.iter().find(|b| b.asset == a).unwrap().clone();
    assert_eq!(bag(&v, "USDT").balance, dec!(3.34));
    assert_eq!(bag(&v, "XRP").pending_usd, dec!(3.33));
    assert_eq!(bag(&v, "BTC").pending_usd, dec!(3.33));
    assert!(h.executed.lock().is_empty());

    // $400 more → BTC pending $16.66 ≥ $15 → a market buy of 16.66 / 50 000 = 0.0003332 BTC.
    h.addr.do_send(closed(dec!(400)));
    eventually("BTC purchase", || h.executed.lock().len() == 1).await;
    let buy = h.executed.lock()[0].clone();
    assert_eq!(buy.proposal().symbol, sym("BTC/USDT"));
    assert_eq!(buy.proposal().side, Side::Buy);
    assert_eq!(buy.volume, Some(dec!(0.0003332)));
    let v = h.addr.send(GetHodl).await.unwrap().unwrap();
    assert_eq!(bag(&v, "BTC").balance, dec!(0.0003332));
    assert_eq!(bag(&v, "BTC").pending_usd, Decimal::ZERO);
    assert_eq!(bag(&v, "XRP").pending_usd, dec!(16.66), "XRP below $25 stays pending");

    // Every allocation and purchase recorded; reloaded after a restart.
    eventually("stored purchase", || h.store.transactions().len() == 9).await;
    let hist = h
        .addr
        .send(GetHodlHistory {
            asset: Some("BTC".into()),
            limit: 10,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hist.len(), 3, "{hist:?}");
    h.registry.inject_fault("portfolio_rebalancer").await.unwrap();
    let v = h.addr.send(GetHodl).await.unwrap().unwrap();
    assert_eq!(bag(&v, "BTC").balance, dec!(0.0003332));
    assert_eq!(bag(&v, "XRP").pending_usd, dec!(16.66));
    assert_eq!(v.allocated_today_usd, dec!(50));
}

/// A strategy model that answers with a fixed text, or fails.
struct FixedModel(Option<&'static str>);
impl triplegain_actors::ports::ModelClient for FixedModel {
    fn provider(&self) -> &str {
        "deepseek"
    }
    fn complete(&self, req: triplegain_actors::ports::ModelRequest) -> triplegain_actors::ports::ModelFuture {
        let text = self.0;
        Box::pin(async move {
            match text {
                Some(t) => Ok(triplegain_actors::ports::ModelResponse {
                    provider: "deepseek".into(),
                    model: req.model,
                    text: t.into(),
                    input_tokens: 1,
                    output_tokens: 1,
                    latency_ms: 1,
                    cost_usd: Decimal::ZERO,
                }),
                None => Err(triplegain_actors::ports::ModelError::Timeout(req.timeout_ms)),
            }
        })
    }
}

async fn with_model(
    answer: Option<&'static str>,
) -> (triplegain_actors::portfolio::RebalancePlan, MemoryPortfolioStore) {
    let store = MemoryPortfolioStore::default();
    let clock = ManualClock::new(t0());
    let shared: SharedClock = Arc::new(clock.clone());
    let registry = Registry::new(RestartPolicy::default(), Topic::new(), shared.clone());
    let paper = PaperExchange::new(
        PaperConfig {
            initial_balances: [("USDT".to_owned(), dec!(10000))].into_iter().collect(),
            ..PaperConfig::default()
        },
        shared.clone(),
    )
    .unwrap();
    let mut portfolio = PortfolioConfig::reference();
    portfolio.use_model_strategy = true;
    let cfg = PortfolioRebalancerConfig {
        portfolio,
        hodl: HodlConfig::default(),
        exchange: Arc::new(paper),
        store: Arc::new(store.clone()),
        risk: FakeRisk(Arc::default()).start().recipient(),
        execution: None,
        updates: Topic::new(),
        clock: shared,
        prices: Some(Arc::new(|s: &Symbol| match s.as_str() {
            "BTC/USDT" => Some(dec!(50000)),
            _ => Some(dec!(0.5)),
        })),
        advisor: Some(Arc::new(triplegain_actors::portfolio::ModelStrategyAdvisor {
            client: Arc::new(FixedModel(answer)),
            model: "deepseek-chat".into(),
            timeout_ms: 1000,
        })),
        tick_interval: Duration::from_secs(3600),
    };
    let addr = start_supervised(&registry, "portfolio_rebalancer", false, 64, move |sup| {
        PortfolioRebalancer::new(sup, cfg)
    });
    addr.send(valuation(dec!(10000))).await.unwrap();
    let plan = addr.send(CheckPortfolio { force: true }).await.unwrap().unwrap();
    (plan, store)
}

#[actix::test]
async fn the_model_may_choose_immediate_market_execution_but_not_amounts() {
    let (plan, store) = with_model(Some(
        "{\"execution_strategy\": \"immediate\", \"execution_type\": \"market\", \"reasoning\": \"tight spreads\"}",
    ))
    .await;
    assert_eq!(plan.execution_strategy, ExecutionStrategy::Immediate);
    assert_eq!(plan.batches.len(), 1);
    assert!(!plan.used_fallback_strategy);
    assert_eq!(plan.batches[0].trades[0].amount_usd, dec!(3333));
    assert_eq!(
        plan.rebalance_trades[0].execution_type,
        triplegain_actors::portfolio::rebalance::ExecutionType::Market
    );
    assert_eq!(store.rebalances().len(), 1);
}

#[actix::test]
async fn a_failing_model_falls_back_to_the_deterministic_plan() {
    let (plan, store) = with_model(None).await;
    assert!(plan.used_fallback_strategy);
    assert_eq!(plan.execution_strategy, ExecutionStrategy::Dca24h);
    assert_eq!(plan.batches.len(), 6);
    assert_eq!(store.rebalances().len(), 6);
}

#[actix::test]
async fn a_running_dca_plan_is_not_stacked_and_a_forced_plan_supersedes_it() {
    let h = harness(
        &[("USDT", dec!(10000))],
        (dec!(50000), dec!(0.5)),
        MemoryPortfolioStore::default(),
    )
    .await;
    let first = h.addr.send(CheckPortfolio { force: false }).await.unwrap().unwrap();
    assert_eq!(first.batches.len(), 6);
    eventually("batch 0 stored as executed", || statuses(&h.store)[0].1 == "executed").await;

    // The hourly check while batches are pending: no second plan.
    let again = h.addr.send(CheckPortfolio { force: false }).await.unwrap().unwrap();
    assert_eq!(again.action, RebalanceAction::NoAction);
    assert!(again.reasoning.contains("in progress"), "{}", again.reasoning);
    assert!(again.rebalance_trades.is_empty());

    // A forced plan replaces the old pending batches.
    let forced = h.addr.send(CheckPortfolio { force: true }).await.unwrap().unwrap();
    assert_eq!(forced.action, RebalanceAction::Rebalance);
    let rows = h.store.rebalances();
    assert_eq!(rows.iter().filter(|r| r.status == "superseded").count(), 5);
    eventually("new batch 0 executed", || h.executed.lock().len() == 4).await;
    h.clock.advance(ChronoDuration::hours(4));
    h.addr.send(RebalanceTick).await.unwrap();
    eventually("new batch 1 executed", || h.executed.lock().len() == 6).await;
    actix::clock::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.executed.lock().len(), 6, "old batches never run");
}

#[actix::test]
async fn candles_move_business_time_and_run_due_batches_and_set_prices() {
    use triplegain_actors::domain::{Candle, Timeframe};
    use triplegain_actors::messages::CandleClosed;
    let h = harness(
        &[("USDT", dec!(10000))],
        (dec!(50000), dec!(0.5)),
        MemoryPortfolioStore::default(),
    )
    .await;
    h.addr.send(CheckPortfolio { force: true }).await.unwrap().unwrap();
    eventually("batch 0 executed", || h.executed.lock().len() == 2).await;

    // A candle 4 h later (the replay moved the clock) runs batch 1 at the candle's price.
    h.clock.advance(ChronoDuration::hours(4));
    let candle = Candle {
        symbol: sym("BTC/USDT"),
        timeframe: Timeframe::H1,
        open_time: t0() + ChronoDuration::hours(3),
        open: dec!(60000),
        high: dec!(60000),
        low: dec!(60000),
        close: dec!(60000),
        volume: dec!(1),
    };
    h.addr
        .send(CandleClosed {
            meta: EventMeta::new("market", t0() + ChronoDuration::hours(4)),
            candle,
        })
        .await
        .unwrap();
    eventually("batch 1 executed", || h.executed.lock().len() == 4).await;
    let btc = h.executed.lock()[2].clone();
    assert_eq!(btc.proposal().symbol, sym("BTC/USDT"));
    assert_eq!(
        btc.proposal().entry_price,
        dec!(60000),
        "candle price preferred over the fallback source"
    );
}

#[actix::test]
async fn due_batches_wait_for_a_fresh_candle_instead_of_failing_on_warm_up_prices() {
    use triplegain_actors::domain::{Candle, Timeframe};
    use triplegain_actors::messages::CandleClosed;
    let h = harness(
        &[("USDT", dec!(10000))],
        (dec!(50000), dec!(0.5)),
        MemoryPortfolioStore::default(),
    )
    .await;
    let candle = |open_time: DateTime<Utc>| CandleClosed {
        meta: EventMeta::new("market", open_time),
        candle: Candle {
            symbol: sym("BTC/USDT"),
            timeframe: Timeframe::M1,
            open_time,
            open: dec!(50000),
            high: dec!(50000),
            low: dec!(50000),
            close: dec!(50000),
            volume: dec!(1),
        },
    };
    // The warm-up history: a candle three days old.
    h.addr.send(candle(t0() - ChronoDuration::days(3))).await.unwrap();
    h.addr.send(CheckPortfolio { force: true }).await.unwrap().unwrap();
    actix::clock::sleep(Duration::from_millis(100)).await;
    assert!(h.executed.lock().is_empty(), "no batch on a three-day-old price");
    assert!(
        statuses(&h.store).iter().all(|(_, s)| s == "pending"),
        "{:?}",
        statuses(&h.store)
    );

    // The live feed's first candle: batch 0 runs.
    h.addr.send(candle(t0() - ChronoDuration::minutes(1))).await.unwrap();
    eventually("batch 0 executed on the fresh candle", || h.executed.lock().len() == 2).await;
}

/// An in-memory state store for the real risk engine.
#[derive(Clone, Default)]
struct StateDocs(Arc<Mutex<std::collections::HashMap<String, serde_json::Value>>>);
impl triplegain_actors::ports::StateStore for StateDocs {
    fn load_state(&self, key: &str) -> triplegain_actors::ports::StoreFuture<Option<serde_json::Value>> {
        let v = self.0.lock().get(key).cloned();
        Box::pin(async move { Ok(v) })
    }
    fn save_state(&self, key: &str, state: serde_json::Value) -> triplegain_actors::ports::StoreFuture<()> {
        self.0.lock().insert(key.to_owned(), state);
        Box::pin(async move { Ok(()) })
    }
}

#[actix::test]
async fn a_fresh_start_waits_for_the_first_valuation_instead_of_failing_on_equity() {
    use triplegain_actors::risk::{RiskEngine, RiskEngineConfig, RiskLimits};
    // Arrange: the real risk engine, which knows no equity yet, and a rebalancer on the same
    // portfolio topic (as wired at start).
    let clock = ManualClock::new(t0());
    let shared: SharedClock = Arc::new(clock.clone());
    let registry = Registry::new(RestartPolicy::default(), Topic::new(), shared.clone());
    let risk_cfg = RiskEngineConfig {
        limits: RiskLimits::default(),
        store: Arc::new(StateDocs::default()),
        alerts: Topic::new(),
        clock: shared.clone(),
    };
    // The engine values proposals at the market, as the server's does (the paper exchange's
    // last trades): the same prices the rebalancer sees.
    struct Market(ManualClock);
    impl triplegain_actors::risk::PriceSource for Market {
        fn quote(&self, s: &Symbol) -> Option<triplegain_actors::risk::Quote> {
            let price = if s.as_str() == "BTC/USDT" {
                dec!(50000)
            } else {
                dec!(0.5)
            };
            Some(triplegain_actors::risk::Quote {
                price,
                at: triplegain_actors::clock::Clock::now(&self.0),
            })
        }
    }
    let market = Arc::new(Market(clock.clone()));
    let risk = start_supervised(&registry, "risk_engine", true, 64, move |sup| {
        RiskEngine::new(sup, risk_cfg).with_price_source(market)
    });
    let paper = PaperExchange::new(
        PaperConfig {
            initial_balances: [("USDT".to_owned(), dec!(10000))].into_iter().collect(),
            ..PaperConfig::default()
        },
        shared.clone(),
    )
    .unwrap();
    let executed = Arc::new(Mutex::new(Vec::new()));
    let exec = FakeExec(executed.clone()).start();
    let store = MemoryPortfolioStore::default();
    let updates: Topic<PortfolioUpdate> = Topic::new();
    let reports: Topic<HoldingsReport> = Topic::new();
    let cfg = PortfolioRebalancerConfig {
        portfolio: PortfolioConfig::reference(),
        hodl: HodlConfig::default(),
        exchange: Arc::new(paper),
        store: Arc::new(store.clone()),
        risk: risk.clone().recipient(),
        execution: Some(exec.recipient()),
        updates: reports.clone(),
        clock: shared,
        prices: Some(Arc::new(|s: &Symbol| match s.as_str() {
            "BTC/USDT" => Some(dec!(50000)),
            _ => Some(dec!(0.5)),
        })),
        advisor: None,
        tick_interval: Duration::from_secs(3600),
    };
    let addr = start_supervised(&registry, "portfolio_rebalancer", false, 64, move |sup| {
        PortfolioRebalancer::new(sup, cfg)
    });
    updates.subscribe("risk_engine", risk.clone().recipient());
    updates.subscribe("portfolio_rebalancer", addr.clone().recipient());

    // Act: the first check comes before any valuation.
    let plan = addr.send(CheckPortfolio { force: false }).await.unwrap().unwrap();
    actix::clock::sleep(Duration::from_millis(100)).await;

    // Assert: a plan, but its first batch waits: nothing was validated or executed, nothing failed.
    assert_eq!(plan.action, RebalanceAction::Rebalance);
    assert!(executed.lock().is_empty(), "no batch before the first valuation");
    assert!(
        store.rebalances().iter().all(|r| r.status == "pending"),
        "{:?}",
        statuses(&store)
    );
    // The rebalancer reported its holdings with the plan: a report, not a valuation.
    assert!(reports.published() >= 1);
    assert_eq!(updates.published(), 0);
    assert!(executed.lock().is_empty());

    // Act: the execution manager's first valuation reaches the risk engine and the rebalancer.
    updates.publish(valuation(dec!(10000)));

    // Assert: batch 0 runs and the real risk engine approves it (no `equity_unavailable`).
    eventually("batch 0 executed after the valuation", || executed.lock().len() == 2).await;
    eventually("batch 0 stored as executed", || statuses(&store)[0].1 == "executed").await;
    let row = store.rebalances()[0].clone();
    assert!(!row.plan.to_string().contains("equity_unavailable"), "{}", row.plan);
    let sizes: Vec<Decimal> = executed.lock().iter().map(|e| e.proposal().size_usd).collect();
    assert_eq!(sizes, vec![dec!(555.50), dec!(555.50)]);
    assert!(statuses(&store)[1..].iter().all(|(_, s)| s == "pending"));
}
