//! Signal → order request latency through the real actors: the coordinator receives a
//! [`TradingSignal`], runs consensus and sizing, asks the [`RiskEngine`] for a verdict, hands the
//! approved trade to the [`OrderExecutionManager`], which records the order and sends it through
//! the [`Exchange`] port to the paper exchange.
//!
//! # Method
//! One actix system on one thread (as each actor runs in the server). The clock starts just
//! before the signal is sent to the coordinator's mailbox and stops inside [`TimedExchange::place_order`],
//! a wrapper around the paper exchange that timestamps the order request before passing it on. Samples
//! run one at a time: the next signal is sent only after the previous order reached the exchange, the
//! flow settled and the manager's store writer is idle (a `GetOrders` answers after a flush), so
//! queueing between samples is not measured. Stores are in memory (the decision
//! records are written and discarded, the order records kept), so no database round trip is in the
//! figure. Each entry rests as a limit order on the paper exchange (no price moves) and is cancelled
//! there after its sample, so the manager tracks the same small book for every sample; position limits
//! are raised for the run (cancelled entries do not count, but the run must not depend on the timing
//! of the cancel).

use anyhow::{bail, Context as _};
use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use triplegain_actors::bus::{Bus, Topic};
use triplegain_actors::clock::{ManualClock, SharedClock};
use triplegain_actors::coordinator::{Coordinator, CoordinatorLinks, ExecutionLinks, OrchestrationSettings};
use triplegain_actors::domain::{
    Bias, CorrelationId, EntryStrictness, Regime, Symbol, Timeframe, TradeAction, TrendDirection,
};
use triplegain_actors::execution::api::GetOrders;
use triplegain_actors::execution::manager::{ExecutionConfig, IsReady, ManagerDeps, OrderExecutionManager, PollNow};
use triplegain_actors::execution::paper::{PaperConfig, PaperExchange};
use triplegain_actors::execution::store::MemoryOrderStore;
use triplegain_actors::messages::{EventMeta, PortfolioUpdate, RegimeUpdate, TaSignal, TradingSignal};
use triplegain_actors::ports::{
    AgentOutputRecord, AuditStore, DecisionRecord, Exchange, ExchangeFuture, ExchangeOrder, OrderAck, OrderRef,
    OrderRequest, PairInfo, StateStore, StoreFuture,
};
use triplegain_actors::risk::{RiskEngine, RiskEngineConfig, RiskLimits};
use triplegain_actors::supervision::{start_supervised, Registry, RestartPolicy};

use crate::{percentile, Latency};

#[derive(Default, Clone)]
struct MemState(Arc<Mutex<HashMap<String, serde_json::Value>>>);

impl StateStore for MemState {
    fn load_state(&self, key: &str) -> StoreFuture<Option<serde_json::Value>> {
        let v = self.0.lock().ok().and_then(|m| m.get(key).cloned());
        Box::pin(async move { Ok(v) })
    }
    fn save_state(&self, key: &str, state: serde_json::Value) -> StoreFuture<()> {
        if let Ok(mut m) = self.0.lock() {
            m.insert(key.to_owned(), state);
        }
        Box::pin(async { Ok(()) })
    }
}

/// Takes every decision record and keeps none (the run would otherwise grow without bound).
#[derive(Default, Clone)]
struct DiscardAudit;

impl AuditStore for DiscardAudit {
    fn record_agent_output(&self, _: AgentOutputRecord) -> StoreFuture<()> {
        Box::pin(async { Ok(()) })
    }
    fn latest_agent_output(&self, _: &str, _: &str) -> StoreFuture<Option<AgentOutputRecord>> {
        Box::pin(async { Ok(None) })
    }
    fn record_decision(&self, _: DecisionRecord) -> StoreFuture<()> {
        Box::pin(async { Ok(()) })
    }
    fn decision_chain(&self, _: CorrelationId) -> StoreFuture<Vec<DecisionRecord>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// The paper exchange behind the port, with the arrival time of every order request.
#[derive(Clone)]
pub struct TimedExchange {
    inner: PaperExchange,
    arrivals: Arc<Mutex<Vec<(Instant, OrderRequest)>>>,
    arrived: Arc<tokio::sync::Notify>,
}

impl Exchange for TimedExchange {
    fn pairs(&self) -> ExchangeFuture<Vec<PairInfo>> {
        self.inner.pairs()
    }
    fn place_order(&self, req: OrderRequest) -> ExchangeFuture<OrderAck> {
        let at = Instant::now();
        if let Ok(mut a) = self.arrivals.lock() {
            a.push((at, req.clone()));
        }
        self.arrived.notify_one();
        self.inner.place_order(req)
    }
    fn cancel_order(&self, order: OrderRef) -> ExchangeFuture<()> {
        self.inner.cancel_order(order)
    }
    fn query_orders(&self, orders: Vec<OrderRef>) -> ExchangeFuture<Vec<ExchangeOrder>> {
        self.inner.query_orders(orders)
    }
    fn open_orders(&self) -> ExchangeFuture<Vec<ExchangeOrder>> {
        self.inner.open_orders()
    }
    fn balances(&self) -> ExchangeFuture<BTreeMap<String, Decimal>> {
        self.inner.balances()
    }
    fn cancel_all_after(&self, timeout_secs: u32) -> ExchangeFuture<()> {
        self.inner.cancel_all_after(timeout_secs)
    }
}

fn start_time() -> anyhow::Result<DateTime<Utc>> {
    Utc.with_ymd_and_hms(2026, 1, 5, 12, 0, 0)
        .single()
        .context("fixed time")
}

/// Measures `samples` signals (after `warmup` unmeasured ones).
///
/// # Errors
/// When a signal does not reach the exchange within a second, or the wiring fails.
pub fn pipeline_run(samples: usize, warmup: usize) -> anyhow::Result<Latency> {
    let sys = actix::System::new();
    sys.block_on(pipeline_async(samples, warmup))
}

async fn pipeline_async(samples: usize, warmup: usize) -> anyhow::Result<Latency> {
    let t0 = start_time()?;
    let clock = ManualClock::new(t0);
    let shared: SharedClock = Arc::new(clock.clone());
    let btc = Symbol::parse("BTC/USDT")?;
    let bus = Bus::default();
    let registry = Registry::new(RestartPolicy::default(), bus.risk_alerts.clone(), shared.clone());

    // Paper exchange, funded for every entry of the run.
    let mut paper_cfg = PaperConfig::default();
    paper_cfg
        .initial_balances
        .insert("USDT".to_owned(), Decimal::from(1_000_000_000_000u64));
    let paper = PaperExchange::new(paper_cfg, shared.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let _ = paper.on_price(&btc, Decimal::from(50_000), t0);
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let arrived = Arc::new(tokio::sync::Notify::new());
    let exchange = TimedExchange {
        inner: paper.clone(),
        arrivals: arrivals.clone(),
        arrived: arrived.clone(),
    };

    // Risk engine.
    let risk_cfg = RiskEngineConfig {
        limits: RiskLimits::default(),
        store: Arc::new(MemState::default()),
        alerts: bus.risk_alerts.clone(),
        clock: shared.clone(),
    };
    let risk = start_supervised(&registry, "risk_engine", true, 256, move |sup| {
        RiskEngine::new(sup, risk_cfg).trusting_proposal_prices()
    });

    // Execution manager on the timed paper exchange.
    let orders = MemoryOrderStore::default();
    let deps = ManagerDeps {
        config: ExecutionConfig {
            max_positions_per_symbol: usize::MAX,
            max_positions_total: usize::MAX,
            poll_interval_ms: 3_600_000,
            snapshot_interval_secs: 3_600,
            ..ExecutionConfig::default()
        },
        exchange: Arc::new(exchange),
        paper: Some(paper.clone()),
        feed_paper: false,
        orders: Arc::new(orders),
        state: Arc::new(MemState::default()),
        audit: Arc::new(DiscardAudit),
        events: Topic::new(),
        portfolio: Topic::new(),
        alerts: bus.risk_alerts.clone(),
        clock: shared.clone(),
        outbox: None,
    };
    let exec = start_supervised(&registry, "execution_manager", true, 256, move |sup| {
        OrderExecutionManager::new(sup, deps)
    });
    let mut ready = false;
    for _ in 0..500 {
        if exec.send(IsReady).await.unwrap_or(false) {
            ready = true;
            break;
        }
        actix::clock::sleep(Duration::from_millis(2)).await;
    }
    if !ready {
        bail!("execution manager not ready");
    }

    // Coordinator linked to both.
    let links = CoordinatorLinks {
        agents: BTreeMap::new(),
        portfolio_check: None,
        risk: Some(risk.clone().recipient()),
        execution: Some(ExecutionLinks {
            execute: exec.clone().recipient(),
            close: exec.clone().recipient(),
            close_all: exec.clone().recipient(),
            positions: exec.clone().recipient(),
        }),
        resolver: None,
    };
    let settings = OrchestrationSettings {
        symbols: vec!["BTC/USDT".into()],
        evaluate_every_seconds: 0,
        ..OrchestrationSettings::default()
    };
    let (store, clock2, bus2) = (MemState::default(), shared.clone(), bus.clone());
    let coord = start_supervised(&registry, "coordinator", true, 256, move |sup| {
        Coordinator::new(sup, Arc::new(store), clock2)
            .with_settings(settings)
            .with_bus(bus2)
            .with_audit(Arc::new(DiscardAudit))
            .with_links(links)
    });

    // Context: equity, regime and a TA signal agreeing with the buys.
    let equity = Decimal::from(10_000);
    let portfolio = PortfolioUpdate {
        meta: EventMeta::new("portfolio", t0),
        equity_usd: equity,
        peak_equity_usd: equity,
        drawdown_pct: Decimal::ZERO,
        open_exposure_usd: Decimal::ZERO,
        exposure_by_symbol: BTreeMap::new(),
        balances: BTreeMap::new(),
        allocation_pct: BTreeMap::new(),
        position_footprint: Default::default(),
    };
    risk.send(portfolio.clone()).await?;
    coord.send(portfolio).await?;
    let regime = RegimeUpdate {
        meta: EventMeta::new("regime_detection", t0),
        symbol: btc.clone(),
        regime: Regime::TrendingBull,
        confidence: 0.8,
        position_size_multiplier: 1.0,
        entry_strictness: EntryStrictness::Normal,
        stop_loss_atr_multiplier: 1.5,
        take_profit_atr_multiplier: 3.0,
        max_leverage: 2,
        previous_regime: None,
    };
    risk.send(regime.clone()).await?;
    coord.send(regime).await?;
    coord
        .send(TaSignal {
            meta: EventMeta::new("technical_analysis", t0),
            symbol: btc.clone(),
            timeframe: Timeframe::H1,
            trend_direction: TrendDirection::Bullish,
            trend_strength: 0.6,
            momentum_score: 0.3,
            bias: Bias::Long,
            confidence: 0.8,
            reasoning: String::new(),
        })
        .await?;

    let signal = || TradingSignal {
        meta: EventMeta::new("trading_decision", t0),
        symbol: btc.clone(),
        action: TradeAction::Buy,
        confidence: 0.75,
        entry_price: Some(Decimal::from(50_000)),
        stop_loss_pct: Some(Decimal::from(2)),
        take_profit_pct: Some(Decimal::from(4)),
        position_size_pct: Some(Decimal::from(5)),
        leverage: 1,
        reasoning: "bench".into(),
    };

    let mut times = Vec::with_capacity(samples);
    let mut last_volume = None;
    for i in 0..warmup + samples {
        let before = arrivals.lock().map(|a| a.len()).unwrap_or(0);
        let s = signal();
        let sent = Instant::now();
        coord.do_send(s);
        let deadline = sent + Duration::from_secs(1);
        // The waiting does not affect the figure: the arrival time is taken inside the exchange.
        let arrived_req = loop {
            let got = arrivals.lock().ok().and_then(|a| a.get(before).cloned());
            if let Some(hit) = got {
                break hit;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, arrived.notified()).await.is_err() {
                bail!("signal {i} never reached the exchange (risk verdict or execution refused it)");
            }
        };
        if i >= warmup {
            times.push(arrived_req.0.duration_since(sent).as_secs_f64() * 1e6);
        }
        last_volume = Some(arrived_req.1.volume);
        // Let the flow finish (acknowledgement, records), then cancel the resting entry on the paper
        // exchange and let the manager see it, so the tracked book stays the same size for every sample.
        actix::clock::sleep(Duration::from_millis(1)).await;
        paper
            .cancel_order(OrderRef::Client(arrived_req.1.client_order_id.clone()))
            .await
            .map_err(|e| anyhow::anyhow!("cancelling entry {i}: {e}"))?;
        exec.send(PollNow).await?;
        actix::clock::sleep(Duration::from_millis(1)).await;
        // Wait until every store write of the sample is done (the manager answers after a flush).
        exec.send(GetOrders {
            symbol: Some(btc.clone()),
            open_only: true,
            correlation_id: None,
        })
        .await?
        .map_err(|e| anyhow::anyhow!("orders: {e}"))?;
    }
    times.sort_by(f64::total_cmp);
    let mean = if times.is_empty() {
        0.0
    } else {
        times.iter().sum::<f64>() / times.len() as f64
    };
    Ok(Latency {
        operation: "signal_to_order_request".to_owned(),
        samples,
        p50_us: percentile(&times, 0.50),
        p99_us: percentile(&times, 0.99),
        mean_us: mean,
        max_us: times.last().copied().unwrap_or(0.0),
        outcome: format!(
            "{} order requests on the paper exchange (last volume {})",
            arrivals.lock().map(|a| a.len()).unwrap_or(0),
            last_volume.map_or_else(|| "-".to_owned(), |v| v.to_string())
        ),
    })
}
