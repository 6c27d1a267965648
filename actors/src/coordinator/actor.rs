//! The Coordinator actor: owns the RUNNING / PAUSED / HALTED lifecycle, the schedules, the
//! degradation level and the handling of trading signals and circuit breakers. Its state (lifecycle,
//! task clocks, in-flight tasks, statistics) is restored on start. Lifecycle changes, symbol
//! pauses, degradation level changes, task starts and operator commands are persisted at once;
//! routine task completions and signal statistics at most once per [`ROUTINE_SAVE_EVERY`] of wall
//! time and on `Drain`: a process crash loses at most that much of them (an interrupted-looking
//! task re-runs once), a supervised restart none.

use super::degradation::{Degradation, DegradationLevel, Outcome};
use super::flow::{CoordinatorLinks, FlowDeps, RunPortfolioCheck, SignalOutcome};
use super::schedule::{OrchestrationSettings, Scheduler, TaskName, TaskState};
use super::signals::{Inputs, Market};
use super::state::{CoordinatorState, InvalidTransition, Trigger};
use crate::agents::api::{AgentError, AgentName, AgentRun, RunAnalysis};
use crate::bus::Bus;
use crate::clock::SharedClock;
use crate::domain::{CorrelationId, Priority, Severity, Symbol, TradeAction};
use crate::messages::{
    AlertType, MarketSnapshot, PortfolioUpdate, RegimeUpdate, RiskAlert, SentimentUpdate, TaSignal, TradingSignal,
};
use crate::ports::{AuditStore, StateStore};
use crate::supervised_basics;
use crate::supervision::{guarded, ActorError, SupervisedActor, SupervisionHandle};
use actix::clock::Instant;
use actix::prelude::*;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use futures::StreamExt;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

mod handlers;

const STATE_KEY: &str = "coordinator";

/// Least wall time between two saves for routine changes (task completions, statistics): a
/// backtest finishes tasks far faster than the store needs to hear about each.
pub const ROUTINE_SAVE_EVERY: Duration = Duration::from_secs(1);

/// Counters kept with the coordinator state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Statistics {
    pub total_task_runs: u64,
    pub task_failures: u64,
    pub task_timeouts: u64,
    pub signals_received: u64,
    pub signals_skipped: u64,
    pub conflicts_detected: u64,
    pub trades_routed: u64,
    pub trades_rejected: u64,
    pub positions_closed: u64,
    pub emergency_actions: u64,
}

/// The persisted part of the coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersistedCoordinator {
    pub state: CoordinatorState,
    pub halt_reason: Option<String>,
    pub changed_at: DateTime<Utc>,
    pub changed_by: String,
    #[serde(default)]
    pub tasks: BTreeMap<TaskName, TaskState>,
    #[serde(default)]
    pub statistics: Statistics,
    #[serde(default)]
    pub degradation: Degradation,
    /// Symbols paused after repeated execution errors, until the given business time.
    #[serde(default)]
    pub paused_symbols: BTreeMap<String, DateTime<Utc>>,
}

/// `GET /api/v1/coordinator/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CoordinatorStatus {
    pub state: CoordinatorState,
    pub halt_reason: Option<String>,
    pub changed_at: DateTime<Utc>,
    pub changed_by: String,
    pub persisted: bool,
}

/// An operator or admin command.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Result<CoordinatorStatus, InvalidTransition>, ActorError>")]
pub struct Control {
    pub trigger: Trigger,
    pub by: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<CoordinatorStatus, ActorError>")]
pub struct GetStatus;

/// Evaluate the schedules at business time `now` (sent on every business-clock tick).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct EvaluateSchedules {
    pub now: DateTime<Utc>,
}

/// The earliest business time at which a scheduled task is due (a task in flight: its start);
/// `None` while HALTED or when nothing is scheduled. A feed that runs ahead of the wall clock
/// (a backtest) delivers candles in larger batches up to this time.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Option<DateTime<Utc>>")]
pub struct NextDue;

/// Connects agents, risk, execution and the conflict model; set links replace older ones.
#[derive(Clone, Message)]
#[rtype(result = "()")]
pub struct Connect(pub CoordinatorLinks);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskCommandKind {
    Run,
    Enable,
    Disable,
}

/// An operator command on one task.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<TaskView, ActorError>")]
pub struct TaskCommand {
    pub task: TaskName,
    pub command: TaskCommandKind,
    pub by: String,
}

/// One task as the status shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskView {
    pub name: TaskName,
    pub agent: String,
    pub interval_seconds: u64,
    pub enabled: bool,
    pub running: bool,
    pub last_run: Option<DateTime<Utc>>,
    pub next_run: Option<DateTime<Utc>>,
    pub runs: u64,
    pub failures: u64,
    pub timeouts: u64,
}

/// The full status: lifecycle, degradation, tasks, statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CoordinatorReport {
    #[serde(flatten)]
    pub status: CoordinatorStatus,
    pub degradation_level: DegradationLevel,
    pub health: Degradation,
    pub tasks: Vec<TaskView>,
    pub statistics: Statistics,
    pub symbols: Vec<String>,
}

#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<CoordinatorReport, ActorError>")]
pub struct GetReport;

/// The newest output of one agent for one symbol.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Option<AgentRun>, ActorError>")]
pub struct GetLatestOutput {
    pub agent: AgentName,
    pub symbol: String,
}

/// The result of one symbol of one task run.
#[derive(Debug)]
enum SymbolRun {
    Done(Box<AgentRun>),
    /// Warm-up or a missing input: not a failure.
    NotReady(String),
    Failed(String),
    TimedOut,
}

pub struct Coordinator {
    sup: SupervisionHandle,
    store: Arc<dyn StateStore>,
    clock: SharedClock,
    current: PersistedCoordinator,
    persisted: bool,
    /// Routine changes not written yet.
    unsaved: bool,
    /// Whether the state is saved at all (off in a backtest, whose state ends with the run).
    persistence: bool,
    /// Wall time of the last write.
    last_save: Option<Instant>,
    /// A write of routine changes is scheduled.
    flush_scheduled: bool,
    /// The state at a supervised restart when it held unsaved changes: newer than the stored one,
    /// so it is restored instead.
    carried: Option<PersistedCoordinator>,
    settings: OrchestrationSettings,
    scheduler: Scheduler,
    links: CoordinatorLinks,
    bus: Bus,
    audit: Option<Arc<dyn AuditStore>>,
    /// The ordered writer of the decision trail (started with the actor).
    audit_writer: Option<super::audit::AuditWriter>,
    ta: HashMap<String, TaSignal>,
    regime: HashMap<String, RegimeUpdate>,
    sentiment: HashMap<String, SentimentUpdate>,
    snapshots: HashMap<String, MarketSnapshot>,
    portfolio: Option<PortfolioUpdate>,
    outputs: BTreeMap<(AgentName, String), AgentRun>,
    /// The business time of the last evaluation; dependents are re-evaluated when a task finishes.
    last_eval: Option<DateTime<Utc>>,
}

impl Coordinator {
    pub fn new(sup: SupervisionHandle, store: Arc<dyn StateStore>, clock: SharedClock) -> Self {
        let now = clock.now();
        let settings = OrchestrationSettings::default();
        Self {
            sup,
            store,
            scheduler: Scheduler::new(&settings, now),
            settings,
            clock,
            current: PersistedCoordinator {
                state: CoordinatorState::Running,
                halt_reason: None,
                changed_at: now,
                changed_by: "startup".into(),
                tasks: BTreeMap::new(),
                statistics: Statistics::default(),
                degradation: Degradation::default(),
                paused_symbols: BTreeMap::new(),
            },
            persisted: false,
            persistence: true,
            unsaved: false,
            last_save: None,
            flush_scheduled: false,
            carried: None,
            links: CoordinatorLinks::default(),
            bus: Bus::default(),
            audit: None,
            audit_writer: None,
            ta: HashMap::new(),
            regime: HashMap::new(),
            sentiment: HashMap::new(),
            snapshots: HashMap::new(),
            portfolio: None,
            outputs: BTreeMap::new(),
            last_eval: None,
        }
    }

    /// Whether the state is saved (default on). Off only where the state ends with the run
    /// (a backtest): the status then reports `persisted: false`.
    #[must_use]
    pub fn with_persistence(mut self, on: bool) -> Self {
        self.persistence = on;
        self
    }

    /// Schedules and signal settings (`config/orchestration.yaml`).
    pub fn with_settings(mut self, settings: OrchestrationSettings) -> Self {
        self.scheduler = Scheduler::new(&settings, self.clock.now());
        self.settings = settings;
        self
    }

    /// The bus it publishes system events and trade rejections on.
    pub fn with_bus(mut self, bus: Bus) -> Self {
        self.bus = bus;
        self
    }

    /// Where the decision trail is written.
    pub fn with_audit(mut self, audit: Arc<dyn AuditStore>) -> Self {
        self.audit = Some(audit);
        self
    }

    pub fn with_links(mut self, links: CoordinatorLinks) -> Self {
        self.links = links;
        self
    }

    fn status(&self) -> CoordinatorStatus {
        CoordinatorStatus {
            state: self.current.state,
            halt_reason: self.current.halt_reason.clone(),
            changed_at: self.current.changed_at,
            changed_by: self.current.changed_by.clone(),
            persisted: self.persisted,
        }
    }

    fn level(&self) -> DegradationLevel {
        self.current.degradation.level()
    }

    fn task_view(&self, t: TaskName) -> TaskView {
        let s = self.scheduler.state(t);
        TaskView {
            name: t,
            agent: t.agent().map_or("portfolio_rebalance", AgentName::as_str).to_owned(),
            interval_seconds: self.settings.tasks.get(t).interval_seconds,
            enabled: s.enabled,
            running: s.in_flight.is_some(),
            last_run: s.last_run,
            next_run: self.scheduler.next_run(t, &self.settings),
            runs: s.runs,
            failures: s.failures,
            timeouts: s.timeouts,
        }
    }

    fn report(&self) -> CoordinatorReport {
        CoordinatorReport {
            status: self.status(),
            degradation_level: self.level(),
            health: self.current.degradation.clone(),
            tasks: TaskName::ALL.into_iter().map(|t| self.task_view(t)).collect(),
            statistics: self.current.statistics.clone(),
            symbols: self.settings.symbols.clone(),
        }
    }

    fn deps(&self) -> FlowDeps {
        FlowDeps {
            links: self.links.clone(),
            audit: self.audit_writer.clone(),
            bus: self.bus.clone(),
            clock: Arc::clone(&self.clock),
            settings: self.settings.signals.clone(),
        }
    }

    fn apply(
        &mut self,
        trigger: Trigger,
        by: &str,
        reason: Option<String>,
        ctx: &mut Context<Self>,
    ) -> Result<CoordinatorStatus, InvalidTransition> {
        let from = self.current.state;
        let next = from.transition(trigger)?;
        tracing::warn!(from = ?from, to = ?next, by, ?trigger, "coordinator state change");
        self.current.state = next;
        self.current.halt_reason = if next == CoordinatorState::Halted { reason } else { None };
        self.current.changed_at = self.clock.now();
        self.current.changed_by = by.to_owned();
        self.persist(ctx);
        let event = match next {
            CoordinatorState::Running => "coordinator_resumed",
            CoordinatorState::Paused => "coordinator_paused",
            CoordinatorState::Halted => "coordinator_halted",
        };
        self.deps().system_event(
            event,
            CorrelationId::new(),
            Priority::High,
            serde_json::json!({ "from": from, "to": next, "by": by, "reason": self.current.halt_reason }),
        );
        Ok(self.status())
    }

    /// Writes the state; the actor waits for the write so a crash never loses an acknowledged change.
    fn persist(&mut self, ctx: &mut Context<Self>) {
        if !self.persistence {
            self.unsaved = false;
            return;
        }
        self.current.tasks = self.scheduler.tasks.clone();
        let Ok(doc) = serde_json::to_value(&self.current) else {
            tracing::error!("coordinator state does not serialise");
            return;
        };
        self.unsaved = false;
        self.last_save = Some(Instant::now());
        let fut = self.store.save_state(STATE_KEY, doc);
        ctx.wait(fut.into_actor(self).map(|res, act, _| match res {
            Ok(()) => act.persisted = true,
            Err(e) => {
                act.persisted = false;
                act.unsaved = true;
                tracing::error!(error = %e, "coordinator state not persisted");
            }
        }));
    }

    /// After a routine change (a task completion, statistics): writes at once when the last write
    /// is [`ROUTINE_SAVE_EVERY`] old, otherwise once that much wall time has passed since it. Any
    /// write in between takes the change along.
    fn persist_routine(&mut self, ctx: &mut Context<Self>) {
        self.unsaved = true;
        let since = self.last_save.map(|t| t.elapsed());
        match since {
            Some(since) if since < ROUTINE_SAVE_EVERY => {
                if !self.flush_scheduled {
                    self.flush_scheduled = true;
                    ctx.run_later(ROUTINE_SAVE_EVERY - since, |act, ctx| {
                        act.flush_scheduled = false;
                        let _ = guarded(act, ctx, |act, ctx| {
                            if act.unsaved {
                                act.persist(ctx);
                            }
                        });
                    });
                }
            }
            _ => self.persist(ctx),
        }
    }

    /// Counts an outcome; returns whether the degradation level changed.
    fn record_outcome(&mut self, outcome: Outcome) -> bool {
        let changed = self.current.degradation.record(outcome);
        if let Some((old, new)) = changed {
            let event = if new > old {
                "degradation_increased"
            } else {
                "degradation_recovery"
            };
            tracing::warn!(?old, ?new, "degradation level changed");
            let d = &self.current.degradation;
            let details = serde_json::json!({
                "old_level": old, "new_level": new,
                "llm_failures": d.llm_failures, "api_failures": d.api_failures,
            });
            self.deps()
                .system_event(event, CorrelationId::new(), Priority::High, details);
        }
        changed.is_some()
    }

    fn symbols(&self) -> Vec<Symbol> {
        self.settings
            .symbols
            .iter()
            .filter_map(|s| match Symbol::parse(s) {
                Ok(sym) => Some(sym),
                Err(e) => {
                    tracing::warn!(symbol = %s, error = %e, "configured symbol ignored");
                    None
                }
            })
            .collect()
    }

    fn connected(&self, t: TaskName) -> bool {
        match t.agent() {
            Some(a) => self.links.agents.contains_key(&a),
            None => self.links.portfolio_check.is_some(),
        }
    }

    /// Starts every due task (HALTED runs nothing; PAUSED keeps analysis running).
    fn evaluate(&mut self, now: DateTime<Utc>, ctx: &mut Context<Self>) {
        if self.current.state == CoordinatorState::Halted {
            return;
        }
        if self.last_eval.is_none_or(|t| now > t) {
            self.last_eval = Some(now);
        }
        let due: Vec<TaskName> = self
            .scheduler
            .due(now, &self.settings, self.level())
            .into_iter()
            .filter(|t| self.connected(*t))
            .collect();
        if due.is_empty() {
            return;
        }
        for t in &due {
            self.scheduler.mark_started(*t, now);
        }
        self.persist(ctx);
        for t in due {
            self.spawn_task(t, ctx);
        }
    }

    fn spawn_task(&mut self, task: TaskName, ctx: &mut Context<Self>) {
        let cfg = self.settings.tasks.get(task).clone();
        let timeout = Duration::from_secs(cfg.timeout_seconds.max(1));
        let fut: futures::future::BoxFuture<'static, Vec<(Option<Symbol>, SymbolRun)>> = match task.agent() {
            Some(agent) => {
                let Some(recipient) = self.links.agents.get(&agent).cloned() else {
                    return;
                };
                let symbols = self.symbols();
                let parallel = cfg.max_parallel_symbols.max(1);
                Box::pin(async move {
                    futures::stream::iter(symbols.into_iter().map(move |symbol| {
                        let recipient = recipient.clone();
                        async move {
                            let msg = RunAnalysis {
                                symbol: symbol.clone(),
                                correlation_id: CorrelationId::new(),
                            };
                            let run = match actix::clock::timeout(timeout, recipient.send(msg)).await {
                                Err(_) => SymbolRun::TimedOut,
                                Ok(Err(e)) => SymbolRun::Failed(e.to_string()),
                                Ok(Ok(Ok(run))) => SymbolRun::Done(Box::new(run)),
                                Ok(Ok(Err(AgentError::NoData(m) | AgentError::MissingInput(m)))) => {
                                    SymbolRun::NotReady(m)
                                }
                                Ok(Ok(Err(AgentError::Failed(m)))) => SymbolRun::Failed(m),
                            };
                            (Some(symbol), run)
                        }
                    }))
                    .buffer_unordered(parallel)
                    .collect()
                    .await
                })
            }
            None => {
                let Some(recipient) = self.links.portfolio_check.clone() else {
                    return;
                };
                Box::pin(async move {
                    let msg = RunPortfolioCheck {
                        correlation_id: CorrelationId::new(),
                    };
                    let run = match actix::clock::timeout(timeout, recipient.send(msg)).await {
                        Err(_) => SymbolRun::TimedOut,
                        Ok(Err(e)) => SymbolRun::Failed(e.to_string()),
                        Ok(Ok(Err(e))) => SymbolRun::Failed(e),
                        Ok(Ok(Ok(()))) => SymbolRun::NotReady("portfolio checked".into()),
                    };
                    vec![(None, run)]
                })
            }
        };
        ctx.spawn(fut.into_actor(self).map(move |results, act, ctx| {
            let _ = guarded(act, ctx, |act, ctx| act.finish_task(task, results, ctx));
        }));
    }

    fn finish_task(&mut self, task: TaskName, results: Vec<(Option<Symbol>, SymbolRun)>, ctx: &mut Context<Self>) {
        let (mut failures, mut timeouts) = (0u64, 0u64);
        let mut level_changed = false;
        for (symbol, run) in results {
            let sym = symbol
                .as_ref()
                .map_or_else(|| "PORTFOLIO".to_owned(), ToString::to_string);
            match run {
                SymbolRun::Done(run) => {
                    level_changed |= self.record_outcome(if run.llm_failed {
                        Outcome::LlmFailure
                    } else {
                        Outcome::Success
                    });
                    self.outputs.insert((run.agent, sym), *run);
                }
                SymbolRun::NotReady(why) => tracing::debug!(%task, symbol = %sym, why, "task not ready"),
                other => {
                    let error = match other {
                        SymbolRun::Failed(e) => e,
                        _ => {
                            timeouts += 1;
                            format!("timed out after {} s", self.settings.tasks.get(task).timeout_seconds)
                        }
                    };
                    failures += 1;
                    level_changed |= self.record_outcome(Outcome::ApiFailure);
                    tracing::warn!(%task, symbol = %sym, %error, "task failed");
                    self.deps().system_event(
                        "task_error",
                        CorrelationId::new(),
                        Priority::High,
                        serde_json::json!({ "task": task, "symbol": sym, "error": error }),
                    );
                }
            }
        }
        self.scheduler.mark_finished(task, failures, timeouts);
        let stats = &mut self.current.statistics;
        stats.total_task_runs += 1;
        stats.task_failures += failures;
        stats.task_timeouts += timeouts;
        if level_changed {
            self.persist(ctx);
        } else {
            self.persist_routine(ctx);
        }
        if let Some(now) = self.last_eval {
            self.evaluate(now, ctx);
        }
    }

    fn inputs_for(&self, symbol: &str) -> (Inputs, Market) {
        let now = self.clock.now();
        let cfg = &self.settings.signals;
        let fresh = |ts: DateTime<Utc>, max: i64| now.signed_duration_since(ts) <= ChronoDuration::seconds(max);
        let inputs = Inputs {
            ta: self
                .ta
                .get(symbol)
                .filter(|e| fresh(e.meta.timestamp, cfg.ta_max_age_seconds))
                .cloned(),
            regime: self
                .regime
                .get(symbol)
                .filter(|e| fresh(e.meta.timestamp, cfg.regime_max_age_seconds))
                .cloned(),
            sentiment: self
                .sentiment
                .get(symbol)
                .filter(|e| fresh(e.meta.timestamp, cfg.sentiment_max_age_seconds))
                .cloned(),
        };
        let snap = self.snapshots.get(symbol);
        let market = Market {
            equity_usd: self.portfolio.as_ref().map(|p| p.equity_usd),
            price: snap.map(|s| s.current_price),
            atr: snap.and_then(|s| s.indicators.atr_14),
        };
        (inputs, market)
    }

    fn on_signal(&mut self, signal: TradingSignal, ctx: &mut Context<Self>) {
        self.current.statistics.signals_received += 1;
        if signal.action == TradeAction::Hold {
            return;
        }
        let entry = matches!(signal.action, TradeAction::Buy | TradeAction::Sell);
        let now = self.clock.now();
        self.current.paused_symbols.retain(|_, until| *until > now);
        let symbol_pause = self.current.paused_symbols.get(signal.symbol.as_str()).copied();
        let skip = if !self.current.state.trades() {
            Some(format!("coordinator is {:?}", self.current.state))
        } else if entry && self.level() == DegradationLevel::Emergency {
            Some("degradation EMERGENCY: no new entries".to_owned())
        } else if let Some(until) = symbol_pause.filter(|_| entry) {
            Some(format!("{} paused after execution errors until {until}", signal.symbol))
        } else {
            None
        };
        let deps = self.deps();
        if let Some(why) = skip {
            self.current.statistics.signals_skipped += 1;
            tracing::info!(cid = %signal.meta.correlation_id, symbol = %signal.symbol, why, "signal not traded");
            let cid = signal.meta.correlation_id;
            let detail = serde_json::json!({ "signal": signal, "skipped": why });
            ctx.spawn(async move { deps.record(cid, "signal", Some(&signal.symbol), detail).await }.into_actor(self));
            return;
        }
        let (inputs, market) = self.inputs_for(signal.symbol.as_str());
        let level = self.level();
        let symbol = signal.symbol.clone();
        let cid = signal.meta.correlation_id;
        let fut = deps.process_signal(signal, inputs, market, level);
        ctx.spawn(fut.into_actor(self).map(move |outcome, act, ctx| {
            let paused = if let SignalOutcome::ExecutionFailed { error, .. } = &outcome {
                act.pause_symbol(&symbol, cid, error);
                true
            } else {
                false
            };
            let s = &mut act.current.statistics;
            match outcome {
                SignalOutcome::Dropped => s.signals_skipped += 1,
                SignalOutcome::Waited { conflicts } => {
                    s.conflicts_detected += conflicts as u64;
                    s.signals_skipped += 1;
                }
                SignalOutcome::Rejected { conflicts } => {
                    s.conflicts_detected += conflicts as u64;
                    s.trades_rejected += 1;
                }
                SignalOutcome::Routed { conflicts } => {
                    s.conflicts_detected += conflicts as u64;
                    s.trades_routed += 1;
                }
                SignalOutcome::ExecutionFailed { conflicts, .. } => {
                    s.conflicts_detected += conflicts as u64;
                    s.signals_skipped += 1;
                }
                SignalOutcome::Closed(n) => s.positions_closed += n as u64,
            }
            if paused {
                act.persist(ctx);
            } else {
                act.persist_routine(ctx);
            }
        }));
    }

    /// Pauses new entries on `symbol` after its execution failed on every retry, and alerts.
    fn pause_symbol(&mut self, symbol: &Symbol, cid: CorrelationId, error: &str) {
        let until = self.clock.now() + ChronoDuration::minutes(self.settings.signals.symbol_pause_minutes);
        tracing::error!(%symbol, %until, error, "execution keeps failing; symbol paused");
        self.current.paused_symbols.insert(symbol.to_string(), until);
        self.bus.risk_alerts.publish(RiskAlert {
            meta: crate::messages::EventMeta::caused_by("coordinator", self.clock.now(), cid)
                .with_priority(Priority::High),
            alert_type: AlertType::ExecutionError,
            severity: Severity::High,
            message: format!("execution failed after retries ({error}); {symbol} paused until {until}"),
            action_required: Some("pause_symbol".into()),
            breach: None,
            symbol: Some(symbol.clone()),
        });
    }

    /// Circuit breakers and escalations (reference §5.6, corrected): daily → pause, weekly → pause
    /// and reduce every position by 50 %, drawdown → halt and close all; escalations halt.
    fn on_alert(&mut self, alert: RiskAlert, ctx: &mut Context<Self>) {
        let breach = alert.breach.clone().unwrap_or_default();
        // A cooldown (consecutive losses) is enforced by the risk engine itself for its own
        // duration; pausing here would outlive it and stop trading until someone resumes by hand.
        if alert.action_required.as_deref() == Some("cooldown") {
            tracing::info!(breach = %breach, message = %alert.message, "risk cooldown: the risk engine refuses entries until it ends");
            return;
        }
        let action = match alert.alert_type {
            AlertType::CircuitBreaker => match breach.as_str() {
                "daily_loss" => "pause_trading",
                "weekly_loss" => "reduce_positions",
                "max_drawdown" => "halt_all",
                _ if matches!(alert.severity, Severity::High | Severity::Critical) => "halt_trading",
                _ => "pause_trading",
            },
            AlertType::ActorEscalated => "halt_trading",
            _ if alert.action_required.as_deref() == Some("halt_trading") => "halt_trading",
            _ => return,
        };
        let by = alert.meta.source.clone();
        let cid = alert.meta.correlation_id;
        match action {
            "pause_trading" | "reduce_positions" => {
                if self.current.state == CoordinatorState::Running {
                    let _ = self.apply(Trigger::Pause, &by, Some(alert.message.clone()), ctx);
                }
            }
            _ => {
                if self.current.state != CoordinatorState::Halted {
                    let _ = self.apply(Trigger::Halt, &by, Some(alert.message.clone()), ctx);
                }
            }
        }
        self.current.statistics.emergency_actions += 1;
        self.persist(ctx);
        let deps = self.deps();
        let details = serde_json::json!({
            "breach_type": breach, "action_taken": action,
            "alert_message": alert.message, "severity": alert.severity,
        });
        deps.system_event("emergency_action", cid, Priority::Urgent, details.clone());
        let fut = async move {
            deps.record(cid, "emergency_action", None, details).await;
            match action {
                "reduce_positions" => {
                    let fraction = Decimal::new(5, 1);
                    deps.close_positions(cid, None, None, fraction, "weekly loss breaker: reduce 50 %")
                        .await;
                }
                "halt_all" => {
                    deps.close_all(cid, "max drawdown breaker").await;
                }
                _ => {}
            }
        };
        ctx.spawn(fut.into_actor(self));
    }

    fn restore(&mut self, saved: PersistedCoordinator) {
        let interrupted = self.scheduler.restore(&saved.tasks);
        tracing::info!(state = ?saved.state, ?interrupted, "coordinator state restored");
        self.current = saved;
        self.persisted = true;
        if !interrupted.is_empty() {
            self.deps().system_event(
                "in_flight_tasks_recovered",
                CorrelationId::new(),
                Priority::High,
                serde_json::json!({ "tasks": interrupted, "action": "marked_for_rerun" }),
            );
        }
    }
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if !self.sup.on_started() {
            return;
        }
        self.scheduler.started_at = self.clock.now();
        self.audit_writer = self.audit.clone().map(super::audit::AuditWriter::start);
        let fut = self.store.load_state(STATE_KEY);
        ctx.wait(fut.into_actor(self).map(|res, act, ctx| {
            if let Some(carried) = act.carried.take() {
                // A supervised restart with routine changes the store has not seen yet.
                act.restore(carried);
                act.persist(ctx);
                return;
            }
            match res {
                Ok(Some(doc)) => match serde_json::from_value::<PersistedCoordinator>(doc) {
                    Ok(saved) => act.restore(saved),
                    Err(e) => tracing::error!(error = %e, "stored coordinator state is invalid; starting RUNNING"),
                },
                Ok(None) => tracing::info!("no stored coordinator state; starting RUNNING"),
                Err(e) => tracing::error!(error = %e, "coordinator state could not be loaded"),
            }
        }));
        let every = self.settings.evaluate_every_seconds;
        if every > 0 {
            ctx.run_interval(Duration::from_secs(every), |act, ctx| {
                let now = act.clock.now();
                let _ = guarded(act, ctx, |act, ctx| act.evaluate(now, ctx));
            });
        }
    }
}

impl actix::Supervised for Coordinator {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.sup.on_restarting();
        // The restart cancelled a scheduled write: the state restored after the load carries
        // the unsaved changes, with the runs cut short still marked in flight.
        self.flush_scheduled = false;
        if self.unsaved {
            let mut carried = self.current.clone();
            carried.tasks = self.scheduler.tasks.clone();
            self.carried = Some(carried);
        }
        // Runs cut short by the crash are re-run once, even if the stored state cannot be read.
        let tasks = self.scheduler.tasks.clone();
        self.scheduler.restore(&tasks);
    }
}

impl SupervisedActor for Coordinator {
    fn supervision(&self) -> &SupervisionHandle {
        &self.sup
    }
}

supervised_basics!(Coordinator);
