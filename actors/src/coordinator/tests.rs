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
use crate::supervision::{start_supervised, Registry, RestartPolicy};
use actix::prelude::*;
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

// ------------------------------------------------------------------ doubles

#[derive(Clone, Default)]
struct MemStore(Arc<Mutex<HashMap<String, serde_json::Value>>>);

impl StateStore for MemStore {
    fn load_state(&self, key: &str) -> StoreFuture<Option<serde_json::Value>> {
        let v = self.0.lock().get(key).cloned();
        Box::pin(async move { Ok(v) })
    }
    fn save_state(&self, key: &str, state: serde_json::Value) -> StoreFuture<()> {
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

/// A fake agent: records `(agent, symbol, business time)` and answers after `delay`.
struct FakeAgent {
    name: AgentName,
    calls: Arc<Mutex<Vec<(AgentName, String)>>>,
    delay: Duration,
    llm_failed: bool,
    fail: bool,
}

impl Actor for FakeAgent {
    type Context = Context<Self>;
}

impl Handler<RunAnalysis> for FakeAgent {
    type Result = ResponseFuture<Result<AgentRun, AgentError>>;
    fn handle(&mut self, msg: RunAnalysis, _: &mut Context<Self>) -> Self::Result {
        self.calls.lock().push((self.name, msg.symbol.to_string()));
        let (name, delay, llm_failed, fail) = (self.name, self.delay, self.llm_failed, self.fail);
        Box::pin(async move {
            if !delay.is_zero() {
                actix::clock::sleep(delay).await;
            }
            if fail {
                return Err(AgentError::Failed("boom".into()));
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

/// Records every execution request; answers from a fixed position list.
struct FakeExec {
    unavailable: bool,
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
    type Result = Result<ExecutionResult, ExecutionError>;
    fn handle(&mut self, msg: ExecuteTrade, _: &mut Context<Self>) -> Self::Result {
        self.log
            .lock()
            .push(format!("execute {} {}", msg.proposal.side, msg.proposal.symbol));
        if self.unavailable {
            return Err(ExecutionError::Unavailable("exchange down".into()));
        }
        let cid = msg.proposal.correlation_id;
        self.trades.lock().push(msg);
        Ok(result(cid))
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
        }
    }
}

struct H {
    coord: Addr<Coordinator>,
    clock: ManualClock,
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
    let shared: SharedClock = Arc::new(clock.clone());
    let bus = Bus::default();
    let registry = Registry::new(RestartPolicy::default(), bus.risk_alerts.clone(), Arc::clone(&shared));
    let events = Arc::new(Mutex::new(Vec::new()));
    bus.system_events
        .subscribe("sink", Sink(Arc::clone(&events)).start().recipient());
    let alerts = Arc::new(Mutex::new(Vec::new()));
    bus.risk_alerts
        .subscribe("sink", Sink(Arc::clone(&alerts)).start().recipient());
    let risk_cfg = RiskEngineConfig {
        limits: RiskLimits::default(),
        store: Arc::new(MemStore::default()),
        alerts: Topic::new(),
        clock: Arc::clone(&shared),
    };
    let risk = start_supervised(&registry, "risk_engine", true, 64, move |sup| {
        RiskEngine::new(sup, risk_cfg)
    });
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut agents = BTreeMap::new();
    for name in AgentName::ALL {
        let a = FakeAgent {
            name,
            calls: Arc::clone(&calls),
            delay: opts.delay,
            llm_failed: opts.llm_failed,
            fail: opts.fail,
        }
        .start();
        agents.insert(name, a.recipient());
    }
    let exec_log = Arc::new(Mutex::new(Vec::new()));
    let trades = Arc::new(Mutex::new(Vec::new()));
    let exec = FakeExec {
        unavailable: opts.exec_unavailable,
        log: Arc::clone(&exec_log),
        trades: Arc::clone(&trades),
        positions: opts.positions,
    }
    .start();
    let links = CoordinatorLinks {
        agents,
        portfolio_check: None,
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
    let cfg = settings(opts.timeout_seconds, opts.resolution_timeout_ms);
    let coord = start_supervised(&registry, "coordinator", true, 256, move |sup| {
        Coordinator::new(sup, Arc::new(st), cl)
            .with_settings(cfg)
            .with_bus(b)
            .with_audit(Arc::new(au))
            .with_links(links)
    });
    H {
        coord,
        clock,
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
            meta: EventMeta::new("portfolio", self.clock.now()),
            equity_usd: equity,
            peak_equity_usd: equity,
            drawdown_pct: Decimal::ZERO,
            open_exposure_usd: Decimal::ZERO,
            exposure_by_symbol: BTreeMap::new(),
            balances: BTreeMap::new(),
            allocation_pct: BTreeMap::new(),
        };
        self.risk.send(p.clone()).await.unwrap();
        self.coord.send(p).await.unwrap();
    }

    async fn regime(&self, r: Regime) {
        let (size, stop, tp) = super::signals::regime_params(r);
        let u = RegimeUpdate {
            meta: EventMeta::new("regime_detection", self.clock.now()),
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
                meta: EventMeta::new("technical_analysis", self.clock.now()),
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
                meta: EventMeta::new("sentiment_analysis", self.clock.now()),
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

    async fn signal(&self, action: TradeAction, stop_pct: Option<Decimal>) -> CorrelationId {
        let s = TradingSignal {
            meta: EventMeta::new("trading_decision", self.clock.now()),
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
                meta: EventMeta::new("risk_engine", self.clock.now()),
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
    assert_eq!(trade.proposal.size_usd, dec!(750));
    assert_eq!(trade.proposal.stop_loss, Some(dec!(49000)));
    assert_eq!(trade.proposal.correlation_id, cid);
    assert!(trade.verdict.as_ref().unwrap().is_approved());
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
        (Some(None), 0, None),           // malformed → rules → wait
        (Some(Some(modify)), 200, None), // slow (timeout 100 ms) → rules → wait
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
            actix::clock::sleep(Duration::from_millis(300)).await;
        }
        let got = h.trades.lock().first().map(|t| t.proposal.size_usd);
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
    h.equity(dec!(10000)).await;
    h.regime(Regime::Ranging).await;
    h.ta(Bias::Long, 0.8).await;
    let cid = h.signal(TradeAction::Buy, Some(dec!(2))).await;
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
            meta: EventMeta::new("regime_detection", h.clock.now()),
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
