//! Coordinator actor tests with fake agents, a recording execution double and the real RiskEngine.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use super::actor::*;
use super::flow::{CoordinatorLinks, ExecutionLinks};
use super::schedule::{OrchestrationSettings, TaskName};
use super::signals::{ConflictRequest, ConflictResolution, ConflictResolver, Modifications, ResolutionAction};
use super::state::{CoordinatorState, Trigger};
use crate::agents::api::{AgentError, AgentName, AgentRun, RunAnalysis};
use crate::bus::Bus;
use crate::bus::Topic;
use crate::clock::{Clock, ManualClock, SharedClock};
use crate::domain::{
    Bias, CorrelationId, EntryStrictness, FearGreed, PositionSide, PositionStatus, Regime, SentimentBias, Severity,
    Symbol, Timeframe, TradeAction, TrendDirection,
};
use crate::execution::api::{
    CloseAllPositions, ClosePosition, ExecuteTrade, ExecutionError, ExecutionResult, GetPositions, PositionView,
};
use crate::messages::{
    AlertType, EventMeta, PortfolioUpdate, RegimeUpdate, RiskAlert, SentimentUpdate, SystemEvent, TaSignal,
    TradingSignal,
};
use crate::ports::{AgentOutputRecord, AuditStore, DecisionRecord, StateStore, StoreFuture};
use crate::risk::{RiskEngine, RiskEngineConfig, RiskLimits};
use crate::supervision::{start_supervised, Drain, Registry, RestartPolicy};
use actix::prelude::*;
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

// ------------------------------------------------------------------ doubles

/// An in-memory state store that counts its saves.
#[derive(Clone, Default)]
struct MemStore(Arc<Mutex<HashMap<String, serde_json::Value>>>, Arc<AtomicUsize>);

impl MemStore {
    fn saves(&self) -> usize {
        self.1.load(Ordering::SeqCst)
    }
    fn doc(&self) -> serde_json::Value {
        self.0.lock().get("coordinator").cloned().unwrap_or_default()
    }
}

impl StateStore for MemStore {
    fn load_state(&self, key: &str) -> StoreFuture<Option<serde_json::Value>> {
        let v = self.0.lock().get(key).cloned();
        Box::pin(async move { Ok(v) })
    }
    fn save_state(&self, key: &str, state: serde_json::Value) -> StoreFuture<()> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.lock().insert(key.to_owned(), state);
        Box::pin(async { Ok(()) })
    }
}

#[derive(Clone, Default)]
struct MemAudit(Arc<Mutex<Vec<DecisionRecord>>>);

impl MemAudit {
    fn stages(&self, cid: CorrelationId) -> Vec<String> {
        self.0
            .lock()
            .iter()
            .filter(|r| r.correlation_id == cid)
            .map(|r| r.stage.clone())
            .collect()
    }
    fn detail(&self, cid: CorrelationId, stage: &str) -> serde_json::Value {
        self.0
            .lock()
            .iter()
            .find(|r| r.correlation_id == cid && r.stage == stage)
            .map(|r| r.detail.clone())
            .unwrap_or_default()
    }
}

impl AuditStore for MemAudit {
    fn record_agent_output(&self, _: AgentOutputRecord) -> StoreFuture<()> {
        Box::pin(async { Ok(()) })
    }
    fn latest_agent_output(&self, _: &str, _: &str) -> StoreFuture<Option<AgentOutputRecord>> {
        Box::pin(async { Ok(None) })
    }
    fn record_decision(&self, rec: DecisionRecord) -> StoreFuture<()> {
        self.0.lock().push(rec);
        Box::pin(async { Ok(()) })
    }
    fn decision_chain(&self, cid: CorrelationId) -> StoreFuture<Vec<DecisionRecord>> {
        let v = self
            .0
            .lock()
            .iter()
            .filter(|r| r.correlation_id == cid)
            .cloned()
            .collect();
        Box::pin(async move { Ok(v) })
    }
}

/// A fake agent: records `(agent, symbol)` when asked and `(task, start, end)` in business seconds
/// since t0 when done, and answers after `delay`. The trading decision agent can publish a BUY.
struct FakeAgent {
    name: AgentName,
    calls: Arc<Mutex<Vec<(AgentName, String)>>>,
    timeline: Timeline,
    clock: SharedClock,
    delay: Duration,
    llm_failed: bool,
    fail: bool,
    signals: Option<Topic<TradingSignal>>,
}

/// `(task, start, end)` of every finished run, in business seconds since t0.
type Timeline = Arc<Mutex<Vec<(String, i64, i64)>>>;

fn since_t0(clock: &SharedClock) -> i64 {
    (clock.now() - t0()).num_seconds()
}

impl Actor for FakeAgent {
    type Context = Context<Self>;
}

fn buy_signal(now: DateTime<Utc>, cid: CorrelationId) -> TradingSignal {
    TradingSignal {
        meta: EventMeta::caused_by("trading_decision", now, cid),
        symbol: btc(),
        action: TradeAction::Buy,
        confidence: 0.7,
        entry_price: Some(dec!(50000)),
        stop_loss_pct: Some(dec!(2)),
        take_profit_pct: Some(dec!(4)),
        position_size_pct: Some(dec!(10)),
        leverage: 1,
        reasoning: "scheduled decision".into(),
    }
}

impl Handler<RunAnalysis> for FakeAgent {
    type Result = ResponseFuture<Result<AgentRun, AgentError>>;
    fn handle(&mut self, msg: RunAnalysis, _: &mut Context<Self>) -> Self::Result {
        self.calls.lock().push((self.name, msg.symbol.to_string()));
        let (name, delay, llm_failed, fail) = (self.name, self.delay, self.llm_failed, self.fail);
        let (timeline, clock) = (Arc::clone(&self.timeline), Arc::clone(&self.clock));
        let signals = self.signals.clone().filter(|_| name == AgentName::TradingDecision);
        let started = since_t0(&clock);
        Box::pin(async move {
            if !delay.is_zero() {
                actix::clock::sleep(delay).await;
            }
            timeline
                .lock()
                .push((name.as_str().to_owned(), started, since_t0(&clock)));
            if fail {
                return Err(AgentError::Failed("boom".into()));
            }
            if let Some(topic) = signals {
                topic.publish(buy_signal(clock.now(), msg.correlation_id));
            }
            Ok(AgentRun {
                agent: name,
                symbol: msg.symbol,
                timestamp: t0(),
                correlation_id: msg.correlation_id,
                output: serde_json::json!({"ok": true}),
                model_used: None,
                llm_failed,
            })
        })
    }
}

/// The rebalancer's portfolio check, recorded on the timeline.
struct FakePortfolio {
    timeline: Timeline,
    clock: SharedClock,
}

impl Actor for FakePortfolio {
    type Context = Context<Self>;
}

impl Handler<super::flow::RunPortfolioCheck> for FakePortfolio {
    type Result = Result<(), String>;
    fn handle(&mut self, _: super::flow::RunPortfolioCheck, _: &mut Context<Self>) -> Self::Result {
        let at = since_t0(&self.clock);
        self.timeline.lock().push(("portfolio_check".into(), at, at));
        Ok(())
    }
}

/// Business time that follows tokio's (paused) clock: t0 plus the tokio time since the start.
struct TokioClock {
    start: tokio::time::Instant,
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.start;
        t0() + ChronoDuration::from_std(elapsed).unwrap()
    }
}

/// Records every execution request; answers from a fixed position list.
struct FakeExec {
    unavailable: bool,
    /// Takes the trade and never answers in time (a hung exchange request).
    hangs: bool,
    log: Arc<Mutex<Vec<String>>>,
    trades: Arc<Mutex<Vec<ExecuteTrade>>>,
    positions: Vec<PositionView>,
}

impl Actor for FakeExec {
    type Context = Context<Self>;
}

fn result(cid: CorrelationId) -> ExecutionResult {
    ExecutionResult {
        correlation_id: cid,
        orders: vec![],
        position_id: None,
    }
}

impl Handler<ExecuteTrade> for FakeExec {
    type Result = ResponseFuture<Result<ExecutionResult, ExecutionError>>;
    fn handle(&mut self, msg: ExecuteTrade, _: &mut Context<Self>) -> Self::Result {
        self.log
            .lock()
            .push(format!("execute {} {}", msg.proposal().side, msg.proposal().symbol));
        if self.unavailable {
            return Box::pin(async { Err(ExecutionError::Unavailable("exchange down".into())) });
        }
        let cid = msg.proposal().correlation_id;
        self.trades.lock().push(msg);
        let hangs = self.hangs;
        Box::pin(async move {
            if hangs {
                actix::clock::sleep(Duration::from_secs(30)).await;
            }
            Ok(result(cid))
        })
    }
}

impl Handler<ClosePosition> for FakeExec {
    type Result = Result<ExecutionResult, ExecutionError>;
    fn handle(&mut self, msg: ClosePosition, _: &mut Context<Self>) -> Self::Result {
        self.log
            .lock()
            .push(format!("close {} {}", msg.position_id, msg.fraction));
        Ok(result(msg.correlation_id))
    }
}

impl Handler<CloseAllPositions> for FakeExec {
    type Result = Result<Vec<ExecutionResult>, ExecutionError>;
    fn handle(&mut self, _: CloseAllPositions, _: &mut Context<Self>) -> Self::Result {
        self.log.lock().push("close_all".into());
        Ok(vec![])
    }
}

impl Handler<GetPositions> for FakeExec {
    type Result = Result<Vec<PositionView>, ExecutionError>;
    fn handle(&mut self, msg: GetPositions, _: &mut Context<Self>) -> Self::Result {
        Ok(self
            .positions
            .iter()
            .filter(|p| msg.symbol.as_ref().is_none_or(|s| *s == p.symbol))
            .filter(|p| msg.status.is_none_or(|s| s == p.status))
            .cloned()
            .collect())
    }
}

struct Sink<E>(Arc<Mutex<Vec<E>>>);
impl<E: 'static + Unpin> Actor for Sink<E> {
    type Context = Context<Self>;
}
impl<E: Message<Result = ()> + Send + 'static + Unpin> Handler<E> for Sink<E> {
    type Result = ();
    fn handle(&mut self, msg: E, _: &mut Context<Self>) {
        self.0.lock().push(msg);
    }
}

struct FixedResolver {
    answer: Option<ConflictResolution>,
    delay: Duration,
}

impl ConflictResolver for FixedResolver {
    fn resolve(&self, _: ConflictRequest) -> BoxFuture<'static, Result<ConflictResolution, String>> {
        let (answer, delay) = (self.answer.clone(), self.delay);
        Box::pin(async move {
            actix::clock::sleep(delay).await;
            answer.ok_or_else(|| "malformed model answer".to_owned())
        })
    }
}

// ------------------------------------------------------------------ harness

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

fn btc() -> Symbol {
    Symbol::parse("BTC/USDT").unwrap()
}

struct Opts {
    delay: Duration,
    llm_failed: bool,
    fail: bool,
    timeout_seconds: u64,
    positions: Vec<PositionView>,
    resolver: Option<Arc<dyn ConflictResolver>>,
    resolution_timeout_ms: u64,
    exec_unavailable: bool,
    /// The execution manager takes trades and answers after 30 s; the coordinator waits 50 ms.
    exec_hangs: bool,
    /// Business time follows tokio's paused clock; schedules are evaluated every second, the bus
    /// carries decisions and risk alerts to the coordinator, and the decision agent publishes a BUY.
    paused_time: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            llm_failed: false,
            fail: false,
            timeout_seconds: 30,
            positions: vec![],
            resolver: None,
            resolution_timeout_ms: 100,
            exec_unavailable: false,
            exec_hangs: false,
            paused_time: false,
        }
    }
}

struct H {
    coord: Addr<Coordinator>,
    clock: ManualClock,
    /// The business clock every actor reads (the manual clock unless `paused_time`).
    now: SharedClock,
    timeline: Timeline,
    registry: Registry,
    audit: MemAudit,
    calls: Arc<Mutex<Vec<(AgentName, String)>>>,
    exec_log: Arc<Mutex<Vec<String>>>,
    trades: Arc<Mutex<Vec<ExecuteTrade>>>,
    risk: Addr<RiskEngine>,
    events: Arc<Mutex<Vec<SystemEvent>>>,
    alerts: Arc<Mutex<Vec<RiskAlert>>>,
}

fn settings(timeout: u64, resolution_timeout_ms: u64) -> OrchestrationSettings {
    let mut s = OrchestrationSettings {
        symbols: vec!["BTC/USDT".into()],
        evaluate_every_seconds: 0,
        ..OrchestrationSettings::default()
    };
    for t in [
        &mut s.tasks.ta_analysis,
        &mut s.tasks.regime_detection,
        &mut s.tasks.sentiment_analysis,
        &mut s.tasks.trading_decision,
    ] {
        t.timeout_seconds = timeout;
    }
    s.signals.resolution_timeout_ms = resolution_timeout_ms;
    s.signals.execution_retry_delays_ms = vec![10, 20];
    s
}

fn start(opts: Opts, store: MemStore) -> H {
    let clock = ManualClock::new(t0());
    let shared: SharedClock = if opts.paused_time {
        Arc::new(TokioClock {
            start: tokio::time::Instant::now(),
        })
    } else {
        Arc::new(clock.clone())
    };
    let timeline: Timeline = Arc::default();
    let bus = Bus::default();
    let registry = Registry::new(RestartPolicy::default(), bus.risk_alerts.clone(), Arc::clone(&shared));
    let events = Arc::new(Mutex::new(Vec::new()));
    bus.system_events
        .subscribe("sink", Sink(Arc::clone(&events)).start().recipient());
    let alerts = Arc::new(Mutex::new(Vec::new()));
    bus.risk_alerts
        .subscribe("sink", Sink(Arc::clone(&alerts)).start().recipient());
    let risk_cfg = RiskEngineConfig {
        // The breaker tests drive the drawdown with valuations: the account basis.
        limits: RiskLimits {
            drawdown_basis: crate::risk::DrawdownBasis::Account,
            ..RiskLimits::default()
        },
        store: Arc::new(MemStore::default()),
        alerts: if opts.paused_time {
            bus.risk_alerts.clone()
        } else {
            Topic::new()
        },
        clock: Arc::clone(&shared),
    };
    let risk = start_supervised(&registry, "risk_engine", true, 64, move |sup| {
        RiskEngine::new(sup, risk_cfg).trusting_proposal_prices()
    });
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut agents = BTreeMap::new();
    for name in AgentName::ALL {
        let a = FakeAgent {
            name,
            calls: Arc::clone(&calls),
            timeline: Arc::clone(&timeline),
            clock: Arc::clone(&shared),
            delay: opts.delay,
            llm_failed: opts.llm_failed,
            fail: opts.fail,
            signals: opts.paused_time.then(|| bus.trading_signals.clone()),
        }
        .start();
        agents.insert(name, a.recipient());
    }
    let exec_log = Arc::new(Mutex::new(Vec::new()));
    let trades = Arc::new(Mutex::new(Vec::new()));
    let exec = FakeExec {
        unavailable: opts.exec_unavailable,
        hangs: opts.exec_hangs,
        log: Arc::clone(&exec_log),
        trades: Arc::clone(&trades),
        positions: opts.positions,
    }
    .start();
    let portfolio = opts.paused_time.then(|| {
        FakePortfolio {
            timeline: Arc::clone(&timeline),
            clock: Arc::clone(&shared),
        }
        .start()
        .recipient()
    });
    let links = CoordinatorLinks {
        agents,
        portfolio_check: portfolio,
        risk: Some(risk.clone().recipient()),
        execution: Some(ExecutionLinks {
            execute: exec.clone().recipient(),
            close: exec.clone().recipient(),
            close_all: exec.clone().recipient(),
            positions: exec.recipient(),
        }),
        resolver: opts.resolver,
    };
    let audit = MemAudit::default();
    let (st, au, b, cl) = (store.clone(), audit.clone(), bus.clone(), Arc::clone(&shared));
    let mut cfg = settings(opts.timeout_seconds, opts.resolution_timeout_ms);
    if opts.exec_hangs {
        cfg.signals.execution_timeout_ms = 50;
    }
    if opts.paused_time {
        cfg.evaluate_every_seconds = 1;
    }
    let coord = start_supervised(&registry, "coordinator", true, 256, move |sup| {
        Coordinator::new(sup, Arc::new(st), cl)
            .with_settings(cfg)
            .with_bus(b)
            .with_audit(Arc::new(au))
            .with_links(links)
    });
    if opts.paused_time {
        bus.trading_signals.subscribe("coordinator", coord.clone().recipient());
        bus.risk_alerts.subscribe("coordinator", coord.clone().recipient());
    }
    H {
        coord,
        clock,
        now: shared,
        timeline,
        registry,
        audit,
        calls,
        exec_log,
        trades,
        risk,
        events,
        alerts,
    }
}

async fn settle() {
    for _ in 0..20 {
        actix::clock::sleep(Duration::from_millis(5)).await;
    }
}

impl H {
    async fn eval_at(&self, secs: i64) {
        let now = t0() + ChronoDuration::seconds(secs);
        self.clock.set(now);
        self.coord.send(EvaluateSchedules { now }).await.unwrap();
        settle().await;
    }

    fn agents_called(&self) -> Vec<AgentName> {
        self.calls.lock().drain(..).map(|(a, _)| a).collect()
    }

    async fn report(&self) -> CoordinatorReport {
        self.coord.send(GetReport).await.unwrap().unwrap()
    }

    async fn equity(&self, equity: Decimal) {
        let p = PortfolioUpdate {
            meta: EventMeta::new("portfolio", self.now.now()),
            equity_usd: equity,
            peak_equity_usd: equity,
            drawdown_pct: Decimal::ZERO,
            open_exposure_usd: Decimal::ZERO,
            exposure_by_symbol: BTreeMap::new(),
            balances: BTreeMap::new(),
            allocation_pct: BTreeMap::new(),
            position_footprint: BTreeMap::new(),
        };
        self.risk.send(p.clone()).await.unwrap();
        self.coord.send(p).await.unwrap();
    }

    async fn regime(&self, r: Regime) {
        let (size, stop, tp) = super::signals::regime_params(r);
        let u = RegimeUpdate {
            meta: EventMeta::new("regime_detection", self.now.now()),
            symbol: btc(),
            regime: r,
            confidence: 0.8,
            position_size_multiplier: size,
            entry_strictness: EntryStrictness::Normal,
            stop_loss_atr_multiplier: stop,
            take_profit_atr_multiplier: tp,
            max_leverage: 2,
            previous_regime: None,
        };
        self.risk.send(u.clone()).await.unwrap();
        self.coord.send(u).await.unwrap();
    }

    async fn ta(&self, bias: Bias, confidence: f64) {
        self.coord
            .send(TaSignal {
                meta: EventMeta::new("technical_analysis", self.now.now()),
                symbol: btc(),
                timeframe: Timeframe::H1,
                trend_direction: TrendDirection::Neutral,
                trend_strength: 0.5,
                momentum_score: 0.0,
                bias,
                confidence,
                reasoning: String::new(),
            })
            .await
            .unwrap();
    }

    async fn sentiment(&self, bias: SentimentBias, confidence: f64) {
        self.coord
            .send(SentimentUpdate {
                meta: EventMeta::new("sentiment_analysis", self.now.now()),
                symbol: btc(),
                bias,
                confidence,
                fear_greed: FearGreed::Neutral,
                social_score: 0.0,
                news_score: 0.0,
                key_events: vec![],
            })
            .await
            .unwrap();
    }

    /// A valued account, a ranging regime, TA agreeing long, then a BUY with a 2 % stop.
    async fn valued_buy(&self) -> CorrelationId {
        self.equity(dec!(10000)).await;
        self.regime(Regime::Ranging).await;
        self.ta(Bias::Long, 0.8).await;
        self.signal(TradeAction::Buy, Some(dec!(2))).await
    }

    async fn signal(&self, action: TradeAction, stop_pct: Option<Decimal>) -> CorrelationId {
        let s = TradingSignal {
            meta: EventMeta::new("trading_decision", self.now.now()),
            symbol: btc(),
            action,
            confidence: 0.7,
            entry_price: Some(dec!(50000)),
            stop_loss_pct: stop_pct,
            take_profit_pct: Some(dec!(4)),
            position_size_pct: Some(dec!(10)),
            leverage: 1,
            reasoning: "test".into(),
        };
        let cid = s.meta.correlation_id;
        self.coord.send(s).await.unwrap();
        settle().await;
        cid
    }

    async fn breaker(&self, breach: &str) {
        self.coord
            .send(RiskAlert {
                meta: EventMeta::new("risk_engine", self.now.now()),
                alert_type: AlertType::CircuitBreaker,
                severity: Severity::Critical,
                message: format!("{breach} breaker"),
                action_required: None,
                breach: Some(breach.into()),
                symbol: None,
            })
            .await
            .unwrap();
        settle().await;
    }

    async fn state(&self) -> CoordinatorState {
        self.coord.send(GetStatus).await.unwrap().unwrap().state
    }
}

fn position(side: PositionSide) -> PositionView {
    PositionView {
        id: Uuid::new_v4(),
        correlation_id: CorrelationId::new(),
        symbol: btc(),
        side,
        status: PositionStatus::Open,
        size: dec!(0.01),
        entry_price: dec!(50000),
        exit_price: None,
        leverage: 1,
        stop_loss: None,
        take_profit: None,
        stop_loss_order_id: None,
        take_profit_order_id: None,
        realized_pnl: Decimal::ZERO,
        unrealized_pnl: None,
        fees: Decimal::ZERO,
        opened_at: t0(),
        closed_at: None,
    }
}

// ------------------------------------------------------------------ schedules

#[actix::test]
async fn schedules_fire_on_the_business_clock_with_dependencies() {
    use AgentName::*;
    let h = start(Opts::default(), MemStore::default());
    settle().await;
    let cases: Vec<(i64, Vec<AgentName>)> = vec![
        (0, vec![TechnicalAnalysis]),
        (30, vec![]),
        (60, vec![TechnicalAnalysis]),
        (120, vec![TechnicalAnalysis]),
        // regime first runs one interval after start, after that instant's TA run.
        (300, vec![TechnicalAnalysis, RegimeDetection]),
        (1800, vec![TechnicalAnalysis, SentimentAnalysis, RegimeDetection]),
        (
            3600,
            vec![TechnicalAnalysis, SentimentAnalysis, RegimeDetection, TradingDecision],
        ),
    ];
    for (at, want) in cases {
        h.eval_at(at).await;
        let mut got = h.agents_called();
        // TA and sentiment start together; their relative order is not defined.
        if got.len() >= 2 && got[1] == TechnicalAnalysis {
            got.swap(0, 1);
        }
        assert_eq!(got, want, "at {at} s");
    }
    let r = h.report().await;
    let ta = r.tasks.iter().find(|t| t.name == TaskName::TaAnalysis).unwrap();
    assert_eq!(ta.last_run, Some(t0() + ChronoDuration::seconds(3600)));
    assert_eq!(ta.next_run, Some(t0() + ChronoDuration::seconds(3660)));
}

#[actix::test]
async fn slow_task_never_overlaps_and_its_timeout_counts_as_failure() {
    let h = start(
        Opts {
            delay: Duration::from_millis(1500),
            timeout_seconds: 1,
            ..Opts::default()
        },
        MemStore::default(),
    );
    settle().await;
    h.eval_at(0).await;
    assert_eq!(h.agents_called(), vec![AgentName::TechnicalAnalysis]);
    // Still running at 60 s and 120 s of business time: no second run.
    h.eval_at(60).await;
    h.eval_at(120).await;
    assert!(h.agents_called().is_empty());
    actix::clock::sleep(Duration::from_millis(1200)).await;
    let r = h.report().await;
    let ta = r.tasks.iter().find(|t| t.name == TaskName::TaAnalysis).unwrap();
    assert_eq!((ta.runs, ta.failures, ta.timeouts), (1, 1, 1));
    assert_eq!(r.statistics.task_timeouts, 1);
    assert!(h.events.lock().iter().any(|e| e.event == "task_error"));
    // Once finished it is due again (its interval has passed) and starts at once.
    assert!(ta.running);
    assert_eq!(h.agents_called(), vec![AgentName::TechnicalAnalysis]);
}

#[actix::test]
async fn degradation_levels_change_what_runs() {
    let h = start(
        Opts {
            llm_failed: true,
            ..Opts::default()
        },
        MemStore::default(),
    );
    settle().await;
    for at in [0, 60, 120] {
        h.eval_at(at).await;
    }
    h.agents_called();
    assert_eq!(h.report().await.degradation_level, DegradationLevel::Reduced);
    assert!(h.events.lock().iter().any(|e| e.event == "degradation_increased"));
    // REDUCED: sentiment is skipped at 1800 s.
    h.eval_at(1800).await;
    assert!(!h.agents_called().contains(&AgentName::SentimentAnalysis));
    for at in [1860, 1920, 1980, 2040, 2100, 2160] {
        h.eval_at(at).await;
    }
    // ≥ 9 failures: EMERGENCY; the trading decision does not run and no entry is placed.
    assert_eq!(h.report().await.degradation_level, DegradationLevel::Emergency);
    h.agents_called();
    h.eval_at(3600).await;
    let called = h.agents_called();
    assert!(called.contains(&AgentName::TechnicalAnalysis));
    assert!(!called.contains(&AgentName::TradingDecision));
    h.equity(dec!(10000)).await;
    h.signal(TradeAction::Buy, Some(dec!(2))).await;
    assert!(h.exec_log.lock().is_empty());
}

// ------------------------------------------------------------------ signals

#[actix::test]
async fn buy_is_sized_validated_and_executed_with_a_full_trail() {
    let h = start(Opts::default(), MemStore::default());
    settle().await;
    h.equity(dec!(10000)).await;
    h.regime(Regime::Ranging).await;
    // TA agrees, the ranging regime does not: 1 of 2 → multiplier 1.0, confidence stays 0.7.
    h.ta(Bias::Long, 0.8).await;
    let cid = h.signal(TradeAction::Buy, Some(dec!(2))).await;
    assert_eq!(
        h.exec_log.lock().clone(),
        vec!["execute buy BTC/USDT".to_owned()],
        "{:#?}",
        h.audit.0.lock()
    );
    assert!((h.audit.detail(cid, "consensus")["multiplier"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    let trade = h.trades.lock()[0].clone();
    // 10 % of 10 000 × ranging 0.75.
    assert_eq!(trade.proposal().size_usd, dec!(750));
    assert_eq!(trade.proposal().stop_loss, Some(dec!(49000)));
    assert_eq!(trade.proposal().correlation_id, cid);
    assert!(trade.verdict().is_approved());
    assert_eq!(
        h.audit.stages(cid),
        vec![
            "signal",
            "consensus",
            "proposal",
            "risk_verdict",
            "execution_requested",
            "execution_result"
        ]
    );
    assert_eq!(h.report().await.statistics.trades_routed, 1);
}

#[actix::test]
async fn signal_table_hold_rejection_close_and_paused() {
    // HOLD: nothing at all.
    let h = start(Opts::default(), MemStore::default());
    settle().await;
    h.equity(dec!(10000)).await;
    let cid = h.signal(TradeAction::Hold, Some(dec!(2))).await;
    assert!(h.audit.stages(cid).is_empty());
    assert!(h.exec_log.lock().is_empty());

    // No stop (no percentage, no ATR): the risk engine rejects → trade_rejected alert, nothing executed.
    let cid = h.signal(TradeAction::Buy, None).await;
    assert!(h.exec_log.lock().is_empty());
    let alerts = h.alerts.lock().clone();
    assert!(
        alerts
            .iter()
            .any(|a| a.alert_type == AlertType::TradeRejected && a.meta.correlation_id == cid),
        "{alerts:?}"
    );
    assert_eq!(h.audit.detail(cid, "risk_verdict")["status"], "rejected");

    // PAUSED: analysis keeps running, no trade.
    h.coord
        .send(Control {
            trigger: Trigger::Pause,
            by: "op".into(),
            reason: None,
        })
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let cid = h.signal(TradeAction::Buy, Some(dec!(2))).await;
    assert!(h.exec_log.lock().is_empty());
    assert!(h.audit.detail(cid, "signal")["skipped"]
        .as_str()
        .unwrap()
        .contains("Paused"));
    h.eval_at(0).await;
    assert_eq!(h.agents_called(), vec![AgentName::TechnicalAnalysis]);

    // CLOSE_LONG closes the open long only, in full; nothing new is opened.
    let long = position(PositionSide::Long);
    let short = position(PositionSide::Short);
    let h = start(
        Opts {
            positions: vec![long.clone(), short],
            ..Opts::default()
        },
        MemStore::default(),
    );
    settle().await;
    h.signal(TradeAction::CloseLong, None).await;
    assert_eq!(h.exec_log.lock().clone(), vec![format!("close {} 1", long.id)]);
}

#[actix::test]
async fn conflicts_are_resolved_by_model_or_rules() {
    // On tokio's paused clock with the production 10 s deadline: the slow model answers after 11 s.
    tokio::time::pause();
    let modify = ConflictResolution {
        action: ResolutionAction::Modify,
        reasoning: "halve it".into(),
        confidence: 0.7,
        modifications: Some(Modifications {
            leverage: None,
            size_reduction_pct: Some(50.0),
            entry_adjustment_pct: None,
        }),
        resolved_by: "model".into(),
        fallback: None,
    };
    let answer = |a: ResolutionAction| ConflictResolution {
        action: a,
        modifications: None,
        ..modify.clone()
    };
    // (resolver answer, resolver delay, expected executed size)
    let cases: Vec<(Option<Option<ConflictResolution>>, u64, Option<Decimal>)> = vec![
        (None, 0, None),                                                     // rules: low confidence → wait
        (Some(Some(answer(ResolutionAction::Proceed))), 0, Some(dec!(750))), // proceed
        (Some(Some(modify.clone())), 0, Some(dec!(375))),                    // modify: size − 50 %
        (Some(Some(answer(ResolutionAction::Wait))), 0, None),
        (Some(Some(answer(ResolutionAction::Abort))), 0, None),
        (Some(None), 0, None),              // malformed → rules → wait
        (Some(Some(modify)), 11_000, None), // slow (deadline 10 s) → rules → wait
    ];
    for (i, (answer, delay, want)) in cases.into_iter().enumerate() {
        let resolver: Option<Arc<dyn ConflictResolver>> = answer.map(|a| {
            Arc::new(FixedResolver {
                answer: a,
                delay: Duration::from_millis(delay),
            }) as Arc<dyn ConflictResolver>
        });
        let h = start(
            Opts {
                resolver,
                resolution_timeout_ms: 10_000,
                ..Opts::default()
            },
            MemStore::default(),
        );
        settle().await;
        h.coord.send(Connect(CoordinatorLinks::default())).await.unwrap();
        h.equity(dec!(10000)).await;
        h.regime(Regime::Ranging).await;
        h.ta(Bias::Long, 0.7).await;
        h.sentiment(SentimentBias::Bearish, 0.6).await;
        let cid = h.signal(TradeAction::Buy, Some(dec!(2))).await;
        if delay > 0 {
            actix::clock::sleep(Duration::from_secs(12)).await;
            let fallback = h.audit.detail(cid, "resolution")["fallback"].clone();
            assert_eq!(fallback, "model did not answer within 10000 ms", "case {i}");
        }
        let got = h.trades.lock().first().map(|t| t.proposal().size_usd);
        assert_eq!(got, want, "case {i}: {:#?}", h.audit.stages(cid));
        let stages = h.audit.stages(cid);
        assert!(
            stages.contains(&"conflict".to_owned()) && stages.contains(&"resolution".to_owned()),
            "case {i}"
        );
    }
}

#[actix::test]
async fn execution_errors_retry_with_backoff_then_pause_the_symbol() {
    let h = start(
        Opts {
            exec_unavailable: true,
            ..Opts::default()
        },
        MemStore::default(),
    );
    settle().await;
    let cid = h.valued_buy().await;
    actix::clock::sleep(Duration::from_millis(100)).await;
    // First attempt plus two retries, then an alert and a paused symbol.
    assert_eq!(h.exec_log.lock().len(), 3);
    let results = h.audit.stages(cid).iter().filter(|s| *s == "execution_result").count();
    assert_eq!(results, 3);
    assert!(h
        .alerts
        .lock()
        .iter()
        .any(|a| a.alert_type == AlertType::ExecutionError && a.symbol == Some(btc())));
    h.ta(Bias::Long, 0.8).await;
    let cid = h.signal(TradeAction::Buy, Some(dec!(2))).await;
    assert_eq!(h.exec_log.lock().len(), 3);
    assert!(h.audit.detail(cid, "signal")["skipped"]
        .as_str()
        .unwrap()
        .contains("paused"));
    // 15 minutes later the symbol trades again.
    h.clock.advance(ChronoDuration::minutes(16));
    h.equity(dec!(10000)).await;
    h.regime(Regime::Ranging).await;
    h.ta(Bias::Long, 0.8).await;
    h.signal(TradeAction::Buy, Some(dec!(2))).await;
    actix::clock::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.exec_log.lock().len(), 6);
}

#[actix::test]
async fn an_execution_request_without_an_answer_is_alerted_and_never_resent() {
    let h = start(
        Opts {
            exec_hangs: true,
            ..Opts::default()
        },
        MemStore::default(),
    );
    settle().await;
    let cid = h.valued_buy().await;
    actix::clock::sleep(Duration::from_millis(200)).await;
    // Sent once: the order may be on the exchange, so it is never sent again.
    assert_eq!(h.exec_log.lock().len(), 1);
    let detail = h.audit.detail(cid, "execution_result");
    assert_eq!(detail["ok"], false);
    assert!(
        detail["error"].as_str().unwrap().contains("outcome is unknown"),
        "{detail}"
    );
    assert!(h.alerts.lock().iter().any(|a| a.alert_type == AlertType::ExecutionError
        && a.severity == Severity::High
        && a.message.contains("no answer from the execution manager")));
}

#[actix::test]
async fn regime_change_with_an_open_position_is_a_conflict() {
    let h = start(
        Opts {
            positions: vec![position(PositionSide::Long)],
            ..Opts::default()
        },
        MemStore::default(),
    );
    settle().await;
    h.equity(dec!(10000)).await;
    let (size, stop, tp) = super::signals::regime_params(Regime::Ranging);
    h.coord
        .send(RegimeUpdate {
            meta: EventMeta::new("regime_detection", h.now.now()),
            symbol: btc(),
            regime: Regime::Ranging,
            confidence: 0.8,
            position_size_multiplier: size,
            entry_strictness: EntryStrictness::Normal,
            stop_loss_atr_multiplier: stop,
            take_profit_atr_multiplier: tp,
            max_leverage: 2,
            previous_regime: Some(Regime::TrendingBull),
        })
        .await
        .unwrap();
    h.ta(Bias::Long, 0.8).await;
    let cid = h.signal(TradeAction::Buy, Some(dec!(2))).await;
    assert_eq!(
        h.audit.detail(cid, "conflict")["conflicts"][0]["conflict_type"],
        "regime_change"
    );
    assert_eq!(h.audit.detail(cid, "resolution")["action"], "wait");
    assert!(h.exec_log.lock().is_empty());
}

#[actix::test]
async fn choppy_regime_aborts_by_rule() {
    let h = start(Opts::default(), MemStore::default());
    settle().await;
    h.equity(dec!(10000)).await;
    h.regime(Regime::Choppy).await;
    let cid = h.signal(TradeAction::Buy, Some(dec!(2))).await;
    assert!(h.exec_log.lock().is_empty());
    assert_eq!(h.audit.detail(cid, "resolution")["action"], "abort");
    assert_eq!(
        h.audit.detail(cid, "conflict")["conflicts"][0]["conflict_type"],
        "regime_conflict"
    );
}

// ------------------------------------------------------------------ breakers

#[actix::test]
async fn a_loss_streak_cooldown_leaves_the_coordinator_running() {
    // The risk engine enforces the cooldown for its duration; a pause here would never end by itself.
    let h = start(Opts::default(), MemStore::default());
    settle().await;
    h.coord
        .send(RiskAlert {
            meta: EventMeta::new("risk_engine", h.now.now()),
            alert_type: AlertType::CircuitBreaker,
            severity: Severity::Medium,
            message: "5 consecutive losses; cooldown 60 min, size halved".into(),
            action_required: Some("cooldown".into()),
            breach: Some("consecutive_losses".into()),
            symbol: None,
        })
        .await
        .unwrap();
    settle().await;
    assert_eq!(h.state().await, CoordinatorState::Running);
    assert!(h.exec_log.lock().is_empty());
}

#[actix::test]
async fn breakers_pause_reduce_and_halt() {
    let a = position(PositionSide::Long);
    let b = position(PositionSide::Short);
    let cases = [
        ("daily_loss", CoordinatorState::Paused, vec![]),
        (
            "weekly_loss",
            CoordinatorState::Paused,
            vec![format!("close {} 0.5", a.id), format!("close {} 0.5", b.id)],
        ),
        ("max_drawdown", CoordinatorState::Halted, vec!["close_all".to_owned()]),
    ];
    for (breach, state, closes) in cases {
        let h = start(
            Opts {
                positions: vec![a.clone(), b.clone()],
                ..Opts::default()
            },
            MemStore::default(),
        );
        settle().await;
        h.breaker(breach).await;
        assert_eq!(h.state().await, state, "{breach}");
        assert_eq!(h.exec_log.lock().clone(), closes, "{breach}");
        let ev = h.events.lock().clone();
        let e = ev
            .iter()
            .find(|e| e.event == "emergency_action")
            .expect("emergency_action event");
        assert_eq!(e.details["breach_type"], breach);
    }
    // An escalated actor halts; HALTED resumes only by an admin once the cause is cleared.
    let h = start(Opts::default(), MemStore::default());
    settle().await;
    h.coord
        .send(RiskAlert {
            meta: EventMeta::new("supervisor", t0()),
            alert_type: AlertType::ActorEscalated,
            severity: Severity::Critical,
            message: "escalated".into(),
            action_required: Some("halt_trading".into()),
            breach: None,
            symbol: None,
        })
        .await
        .unwrap();
    assert_eq!(h.state().await, CoordinatorState::Halted);
    for (trigger, ok) in [
        (Trigger::Resume, false),
        (Trigger::AdminResume { cause_cleared: false }, false),
        (Trigger::AdminResume { cause_cleared: true }, true),
    ] {
        let res = h
            .coord
            .send(Control {
                trigger,
                by: "admin".into(),
                reason: None,
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(res.is_ok(), ok, "{trigger:?}");
    }
    // Halted runs no schedules.
    h.breaker("max_drawdown").await;
    h.eval_at(0).await;
    assert!(h.agents_called().is_empty());
}

// ------------------------------------------------------------------ persistence

#[actix::test]
async fn state_and_task_clocks_survive_a_crash_and_a_restart() {
    let store = MemStore::default();
    let h = start(
        Opts {
            delay: Duration::from_millis(400),
            ..Opts::default()
        },
        store.clone(),
    );
    settle().await;
    h.coord
        .send(Control {
            trigger: Trigger::Pause,
            by: "op".into(),
            reason: None,
        })
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    h.eval_at(0).await;
    assert_eq!(h.agents_called(), vec![AgentName::TechnicalAnalysis]);
    // Persisted while in flight, before the task finished.
    let doc = store.0.lock().get("coordinator").cloned().unwrap();
    assert!(doc["tasks"]["ta_analysis"]["in_flight"].is_string(), "{doc}");
    // Crash mid-run: the restarted actor keeps PAUSED and re-runs the interrupted task once.
    h.registry.inject_fault("coordinator").await.unwrap();
    settle().await;
    assert_eq!(h.state().await, CoordinatorState::Paused);
    h.eval_at(1).await;
    assert_eq!(h.agents_called(), vec![AgentName::TechnicalAnalysis]);
    assert!(h.events.lock().iter().any(|e| e.event == "in_flight_tasks_recovered"));
    actix::clock::sleep(Duration::from_millis(600)).await;
    h.coord
        .send(TaskCommand {
            task: TaskName::SentimentAnalysis,
            command: TaskCommandKind::Disable,
            by: "op".into(),
        })
        .await
        .unwrap()
        .unwrap();
    // A new process on the same store: same state, same task clocks, same switches.
    let h2 = start(Opts::default(), store.clone());
    settle().await;
    assert_eq!(h2.state().await, CoordinatorState::Paused);
    let r = h2.report().await;
    let ta = r.tasks.iter().find(|t| t.name == TaskName::TaAnalysis).unwrap();
    assert_eq!(ta.last_run, Some(t0() + ChronoDuration::seconds(1)));
    assert!(
        !r.tasks
            .iter()
            .find(|t| t.name == TaskName::SentimentAnalysis)
            .unwrap()
            .enabled
    );
    // Not due before its interval elapsed.
    h2.eval_at(30).await;
    assert!(h2.agents_called().is_empty());
    h2.eval_at(61).await;
    assert_eq!(h2.agents_called(), vec![AgentName::TechnicalAnalysis]);
}

/// Leaves technical analysis the only task (three commands, each saved), then pauses tokio's clock.
async fn only_ta(h: &H) {
    settle().await;
    for task in [
        TaskName::RegimeDetection,
        TaskName::SentimentAnalysis,
        TaskName::TradingDecision,
    ] {
        h.coord
            .send(TaskCommand {
                task,
                command: TaskCommandKind::Disable,
                by: "op".into(),
            })
            .await
            .unwrap()
            .unwrap();
    }
    settle().await;
    tokio::time::pause();
}

/// Runs technical analysis at business minutes `minutes`, one after the other as fast as the
/// actors go, waiting for each run to finish.
async fn ta_burst(h: &H, minutes: std::ops::Range<i64>) {
    for m in minutes {
        let now = t0() + ChronoDuration::minutes(m);
        h.clock.set(now);
        h.coord.send(EvaluateSchedules { now }).await.unwrap();
        let mut polls = 0;
        loop {
            let r = h.report().await;
            let ta = r.tasks.iter().find(|t| t.name == TaskName::TaAnalysis).unwrap();
            if !ta.running && ta.last_run == Some(now) {
                break;
            }
            polls += 1;
            assert!(polls < 10_000, "the run at minute {m} did not finish: {ta:?}");
            actix::clock::sleep(Duration::from_millis(1)).await;
        }
    }
}

#[actix::test]
async fn task_completions_are_written_at_most_once_a_second() {
    let store = MemStore::default();
    let h = start(Opts::default(), store.clone());
    only_ta(&h).await;
    let before = store.saves();

    ta_burst(&h, 0..20).await;

    // Each start still writes its in-flight mark (a crashed run re-runs once); the twenty
    // completions ride along with those and add no save of their own.
    assert_eq!(store.saves() - before, 20);
    let doc = store.doc();
    assert_eq!(
        doc["statistics"]["total_task_runs"], 19,
        "the last completion is not written yet"
    );
    assert!(doc["tasks"]["ta_analysis"]["in_flight"].is_string(), "{doc}");
    // A second later it is.
    actix::clock::sleep(Duration::from_millis(1100)).await;
    assert_eq!(store.saves() - before, 21);
    let doc = store.doc();
    assert_eq!(doc["statistics"]["total_task_runs"], 20);
    assert!(doc["tasks"]["ta_analysis"]["in_flight"].is_null(), "{doc}");
}

#[actix::test]
async fn drain_writes_the_newest_task_clocks_and_a_new_process_restores_them() {
    let store = MemStore::default();
    let h = start(Opts::default(), store.clone());
    only_ta(&h).await;
    ta_burst(&h, 0..5).await;
    assert_eq!(store.doc()["statistics"]["total_task_runs"], 4);

    h.coord.send(Drain).await.unwrap();
    let doc = store.doc();
    assert_eq!(doc["statistics"]["total_task_runs"], 5);
    assert!(doc["tasks"]["ta_analysis"]["in_flight"].is_null(), "{doc}");

    let h2 = start(Opts::default(), store.clone());
    settle().await;
    let r = h2.report().await;
    let ta = r.tasks.iter().find(|t| t.name == TaskName::TaAnalysis).unwrap();
    assert_eq!(ta.last_run, Some(t0() + ChronoDuration::minutes(4)));
    assert_eq!(ta.runs, 5);
    assert_eq!(r.statistics.total_task_runs, 5);
    assert!(!h2.events.lock().iter().any(|e| e.event == "in_flight_tasks_recovered"));
    h2.eval_at(4 * 60 + 30).await;
    assert!(h2.agents_called().is_empty(), "not due before its interval");
}

#[actix::test]
async fn a_supervised_restart_keeps_task_completions_not_written_yet() {
    let store = MemStore::default();
    let h = start(Opts::default(), store.clone());
    only_ta(&h).await;
    ta_burst(&h, 0..3).await;
    assert!(store.doc()["tasks"]["ta_analysis"]["in_flight"].is_string());

    h.registry.inject_fault("coordinator").await.unwrap();
    settle().await;

    let r = h.report().await;
    let ta = r.tasks.iter().find(|t| t.name == TaskName::TaAnalysis).unwrap();
    assert_eq!((ta.runs, ta.last_run), (3, Some(t0() + ChronoDuration::minutes(2))));
    assert_eq!(r.statistics.total_task_runs, 3);
    assert!(!h.events.lock().iter().any(|e| e.event == "in_flight_tasks_recovered"));
    assert_eq!(
        store.doc()["statistics"]["total_task_runs"],
        3,
        "written after the restart"
    );
    h.agents_called();
    h.eval_at(2 * 60 + 30).await;
    assert!(h.agents_called().is_empty(), "the finished run is not run again");
}

#[actix::test]
async fn task_commands_run_enable_disable() {
    let h = start(Opts::default(), MemStore::default());
    settle().await;
    let v = h
        .coord
        .send(TaskCommand {
            task: TaskName::SentimentAnalysis,
            command: TaskCommandKind::Run,
            by: "op".into(),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.name, TaskName::SentimentAnalysis);
    settle().await;
    assert!(h.agents_called().contains(&AgentName::SentimentAnalysis));
    h.coord
        .send(TaskCommand {
            task: TaskName::TaAnalysis,
            command: TaskCommandKind::Disable,
            by: "op".into(),
        })
        .await
        .unwrap()
        .unwrap();
    h.eval_at(600).await;
    assert!(!h.agents_called().contains(&AgentName::TechnicalAnalysis));
}

use super::degradation::DegradationLevel;

// ------------------------------------------------------------------ paused tokio time

/// Start times (business seconds) of the finished runs of `task`.
fn starts(h: &H, task: &str) -> Vec<i64> {
    h.timeline
        .lock()
        .iter()
        .filter(|(t, ..)| t == task)
        .map(|(_, s, _)| *s)
        .collect()
}

fn every(from: i64, step: i64, to: i64) -> Vec<i64> {
    (0..).map(|k| from + k * step).take_while(|t| *t <= to).collect()
}

/// Starts the harness on tokio's paused clock with one business tick at t0, like the feed's first.
async fn start_paused(opts: Opts) -> H {
    tokio::time::pause();
    let h = start(
        Opts {
            paused_time: true,
            ..opts
        },
        MemStore::default(),
    );
    h.coord.send(EvaluateSchedules { now: h.now.now() }).await.unwrap();
    h
}

async fn control(h: &H, trigger: Trigger) {
    h.coord
        .send(Control {
            trigger,
            by: "op".into(),
            reason: None,
        })
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[actix::test]
async fn paused_time_every_schedule_fires_at_its_interval_after_its_dependencies() {
    let h = start_paused(Opts::default()).await;
    // Act: one business hour (and a bit) passes; the coordinator evaluates every second.
    tokio::time::sleep(Duration::from_secs(3630)).await;
    // Assert: TA runs on start and every 60 s; the others first run one interval after start.
    assert_eq!(starts(&h, "technical_analysis"), every(0, 60, 3630));
    assert_eq!(starts(&h, "regime_detection"), every(300, 300, 3630));
    assert_eq!(starts(&h, "sentiment_analysis"), vec![1800, 3600]);
    assert_eq!(starts(&h, "trading_decision"), vec![3600]);
    assert_eq!(starts(&h, "portfolio_check"), vec![3600]);
    // Dependencies due at the same instant finish first.
    let tl = h.timeline.lock().clone();
    let pos = |task: &str, at: i64| tl.iter().position(|(t, s, _)| t == task && *s == at).unwrap();
    for at in [300, 600, 1800, 3600] {
        assert!(pos("technical_analysis", at) < pos("regime_detection", at), "at {at}");
    }
    for dep in ["technical_analysis", "regime_detection", "sentiment_analysis"] {
        assert!(pos(dep, 3600) < pos("trading_decision", 3600), "{dep}");
    }
    let r = h.report().await;
    let view = |t: TaskName| r.tasks.iter().find(|v| v.name == t).unwrap().clone();
    // tokio's timers have a 1 ms resolution: compare whole seconds.
    let secs = |t: Option<DateTime<Utc>>| t.map(|t| (t - t0()).num_seconds());
    assert_eq!(secs(view(TaskName::TradingDecision).last_run), Some(3600));
    assert_eq!(secs(view(TaskName::TradingDecision).next_run), Some(7200));
    assert_eq!(view(TaskName::TaAnalysis).runs, 61);
}

#[actix::test]
async fn paused_time_a_slow_task_never_overlaps_itself_and_its_dependent_still_runs() {
    // Every agent takes 90 s: longer than TA's 60 s interval.
    let h = start_paused(Opts {
        delay: Duration::from_secs(90),
        timeout_seconds: 120,
        ..Opts::default()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(560)).await;
    let ta: Vec<(i64, i64)> = h
        .timeline
        .lock()
        .iter()
        .filter(|(t, ..)| t == "technical_analysis")
        .map(|(_, s, e)| (*s, *e))
        .collect();
    // Each run starts when the previous one ended (it is overdue by then), never earlier.
    assert_eq!(
        ta,
        vec![(0, 90), (90, 180), (180, 270), (270, 360), (360, 450), (450, 540)]
    );
    // The regime task (due at 300 s) waits for a TA run that started after it became due.
    assert_eq!(starts(&h, "regime_detection"), vec![450]);
    let r = h.report().await;
    assert_eq!(r.statistics.task_timeouts, 0);
}

#[actix::test]
async fn paused_time_pause_keeps_analysis_running_and_blocks_trades() {
    let h = start_paused(Opts::default()).await;
    h.equity(dec!(10000)).await;
    h.regime(Regime::Ranging).await;
    control(&h, Trigger::Pause).await;
    // Act: an hour passes while PAUSED; the scheduled decision publishes a BUY.
    tokio::time::sleep(Duration::from_secs(3601)).await;
    // Assert: every analysis task ran; the BUY was recorded as skipped and nothing was executed.
    assert_eq!(starts(&h, "technical_analysis").len(), 61);
    assert_eq!(starts(&h, "regime_detection").len(), 12);
    assert_eq!(starts(&h, "trading_decision"), vec![3600]);
    assert!(h.exec_log.lock().is_empty());
    let skipped: Vec<DecisionRecord> = h
        .audit
        .0
        .lock()
        .iter()
        .filter(|r| r.stage == "signal")
        .cloned()
        .collect();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].detail["skipped"].as_str().unwrap().contains("Paused"));
    assert_eq!(h.report().await.statistics.signals_skipped, 1);
    // Resumed: the next hourly decision is traded.
    control(&h, Trigger::Resume).await;
    h.equity(dec!(10000)).await;
    h.regime(Regime::Ranging).await;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(starts(&h, "trading_decision"), vec![3600, 7200]);
    assert_eq!(
        h.exec_log.lock().clone(),
        vec!["execute buy BTC/USDT".to_owned()],
        "{:#?}",
        h.audit.0.lock()
    );
}

#[actix::test]
async fn paused_time_a_circuit_breaker_alert_halts_everything() {
    let h = start_paused(Opts {
        positions: vec![position(PositionSide::Long)],
        ..Opts::default()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(120)).await;
    let update = |equity: Decimal, peak: Decimal| PortfolioUpdate {
        meta: EventMeta::new("position_tracker", h.now.now()),
        equity_usd: equity,
        peak_equity_usd: peak,
        drawdown_pct: Decimal::ZERO,
        open_exposure_usd: Decimal::ZERO,
        exposure_by_symbol: BTreeMap::new(),
        balances: BTreeMap::new(),
        allocation_pct: BTreeMap::new(),
        position_footprint: BTreeMap::new(),
    };
    // Act: the real risk engine sees a 25 % drawdown and publishes its breaker on the bus.
    h.risk.send(update(dec!(10000), dec!(10000))).await.unwrap();
    h.risk.send(update(dec!(7500), dec!(10000))).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Assert: HALTED, every position closed, and no schedule runs any more.
    let status = h.coord.send(GetStatus).await.unwrap().unwrap();
    assert_eq!(status.state, CoordinatorState::Halted);
    assert!(status.halt_reason.unwrap_or_default().contains("drawdown"));
    assert_eq!(h.exec_log.lock().clone(), vec!["close_all".to_owned()]);
    assert!(h
        .alerts
        .lock()
        .iter()
        .any(|a| a.alert_type == AlertType::CircuitBreaker && a.breach.as_deref() == Some("max_drawdown")));
    let runs = h.timeline.lock().len();
    assert_eq!(starts(&h, "technical_analysis"), vec![0, 60, 120]);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(h.timeline.lock().len(), runs, "nothing runs while HALTED");
    assert_eq!(h.exec_log.lock().len(), 1);
}
