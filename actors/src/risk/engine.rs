//! The RiskEngine actor: the sole owner of the risk state. It validates proposals with
//! the pure pipeline, learns equity, drawdown and exposure from `PortfolioUpdate`, trade
//! results from `ExecutionEvent`, regimes from `RegimeUpdate` and ATR from
//! `MarketSnapshot`, trips circuit breakers (publishing a `RiskAlert`), and persists its
//! state on every durable change. ATR samples and repeated regimes (a snapshot comes with every
//! delivered batch, a regime update with every detection run) only change memory: they are
//! written with the next save (any durable change, or `Drain`), and a crash loses at most
//! those observations, which the next messages restate. State is loaded in `started()` before
//! any message is served, also after a supervised restart.

use super::pricing::{value_at_market, MarketPrices, PriceSource, Quote};
use super::rules::validate;
use super::state::{Change, ResetError, ResetScope, RiskEvent};
use super::types::{Breaker, ProposalSource, RiskLimits, RiskState, RiskVerdict, TradeProposal, VerdictStatus};
use crate::bus::Topic;
use crate::clock::SharedClock;
use crate::domain::{CorrelationId, Priority, Severity};
use crate::messages::{
    AlertType, EventMeta, ExecutionEvent, ExecutionEventType, MarketSnapshot, PortfolioUpdate, RegimeUpdate, RiskAlert,
    SystemEvent,
};
use crate::ports::{StateStore, StoreError};
use crate::supervision::{guarded, ActorError, Drain, SupervisedActor, SupervisionHandle};
use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::FutureExt;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Key of the risk state document in the [`StateStore`].
pub const RISK_STATE_KEY: &str = "risk_state";

/// Attempts and first back-off of every store call (100 ms, 200 ms, …).
const STORE_ATTEMPTS: u32 = 3;
const STORE_BACKOFF_MS: u64 = 100;

/// Validate a proposal against the engine's own state.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<RiskVerdict, ActorError>")]
pub struct ValidateTrade(pub TradeProposal);

/// Read the risk state.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<RiskStateView, ActorError>")]
pub struct GetRiskState;

/// The engine's market price of a symbol, when one no older than `max_price_age_secs` is known.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Option<Quote>")]
pub struct GetMarketPrice(pub crate::domain::Symbol);
/// The verdicts given since the engine started, counted by source, status and rejection code
/// (a backtest's report reads them).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<VerdictCounts, ActorError>")]
pub struct GetVerdictCounts;

/// Verdicts since start: keys are the wire spellings (`agent`, `approved`, `position_too_large`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictCounts {
    pub total: u64,
    pub by_status: std::collections::BTreeMap<String, u64>,
    /// One count per rejection code a verdict carries.
    pub by_code: std::collections::BTreeMap<String, u64>,
    /// Per proposal source (`agent`, `manual`, `rebalance`, `hodl`): verdicts by status.
    pub by_source: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
}

impl VerdictCounts {
    fn add(&mut self, source: ProposalSource, verdict: &RiskVerdict) {
        let status = verdict_status(verdict.status);
        self.total += 1;
        *self.by_status.entry(status.to_owned()).or_default() += 1;
        for code in &verdict.rejections {
            *self.by_code.entry(code.as_str().to_owned()).or_default() += 1;
        }
        let source = match source {
            ProposalSource::Agent => "agent",
            ProposalSource::Manual => "manual",
            ProposalSource::Rebalance => "rebalance",
            ProposalSource::Hodl => "hodl",
        };
        *self
            .by_source
            .entry(source.to_owned())
            .or_default()
            .entry(status.to_owned())
            .or_default() += 1;
    }
}

fn verdict_status(s: VerdictStatus) -> &'static str {
    match s {
        VerdictStatus::Approved => "approved",
        VerdictStatus::Modified => "modified",
        VerdictStatus::Rejected => "rejected",
        VerdictStatus::Halted => "halted",
    }
}

/// A manual reset; the drawdown breaker and a full reset need `admin`.
#[derive(Debug, Clone, Copy, Message, Serialize, Deserialize)]
#[rtype(result = "Result<RiskStateView, RiskResetError>")]
pub struct ResetRisk {
    pub admin: bool,
    pub scope: ResetScope,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum RiskResetError {
    #[error(transparent)]
    Refused(#[from] ResetError),
    #[error(transparent)]
    Actor(#[from] ActorError),
}

/// The risk state as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RiskStateView {
    pub as_of: DateTime<Utc>,
    pub halted: bool,
    pub halt_reason: Option<String>,
    pub in_cooldown: bool,
    pub daily_loss_pct: Decimal,
    pub weekly_loss_pct: Decimal,
    pub total_exposure_pct: Decimal,
    /// The last persistence failure, cleared by the next successful save.
    pub persistence_error: Option<String>,
    pub state: RiskState,
    pub limits: RiskLimits,
}

/// What the engine is built from.
#[derive(Clone)]
pub struct RiskEngineConfig {
    pub limits: RiskLimits,
    pub store: Arc<dyn StateStore>,
    pub alerts: Topic<RiskAlert>,
    pub clock: SharedClock,
}

/// Serialises saves so that an older state never overwrites a newer one, and coalesces a
/// burst of changes: each save writes the newest pending document, if any is left.
#[derive(Clone, Default)]
struct SaveGate {
    /// The version last written.
    written: Arc<futures::lock::Mutex<u64>>,
    /// The newest document not yet written.
    pending: Arc<parking_lot::Mutex<Option<(u64, serde_json::Value)>>>,
}

pub struct RiskEngine {
    sup: SupervisionHandle,
    cfg: RiskEngineConfig,
    state: RiskState,
    /// The stored state could not be read: nothing is saved until an admin resets everything,
    /// so the stored breakers are not overwritten.
    load_failed: bool,
    version: u64,
    gate: SaveGate,
    persistence_error: Arc<parking_lot::Mutex<Option<String>>>,
    /// The engine's own market prices; proposals are valued at them, never at their own price.
    prices: MarketPrices,
    /// Off only for harnesses that model no market ([`RiskEngine::trusting_proposal_prices`]).
    market_pricing: bool,
    /// Verdicts since start (not persisted).
    verdicts: VerdictCounts,
}

impl RiskEngine {
    pub fn new(sup: SupervisionHandle, cfg: RiskEngineConfig) -> Self {
        Self {
            sup,
            cfg,
            state: RiskState::default(),
            load_failed: false,
            version: 0,
            gate: SaveGate::default(),
            persistence_error: Arc::default(),
            prices: MarketPrices::default(),
            market_pricing: true,
            verdicts: VerdictCounts::default(),
        }
    }

    /// Adds a market price source (the paper exchange's last trades) beside the feed's snapshots.
    #[must_use]
    pub fn with_price_source(mut self, source: Arc<dyn PriceSource>) -> Self {
        self.prices.add_source(source);
        self
    }

    /// Judges proposals at their own `entry_price` without a market price: only for harnesses
    /// that model no market (coordinator and pipeline tests). Never used by the server.
    #[must_use]
    pub fn trusting_proposal_prices(mut self) -> Self {
        self.market_pricing = false;
        self
    }

    /// Values the proposal at the engine's market price, then runs the rules.
    fn judge(&self, proposal: &TradeProposal, now: DateTime<Utc>) -> RiskVerdict {
        if !self.market_pricing {
            return validate(proposal, &self.state, &self.cfg.limits, now);
        }
        let quote = self.prices.quote(&proposal.symbol);
        match value_at_market(proposal, quote, &self.cfg.limits, now) {
            Ok(valued) => {
                let mut verdict = validate(&valued.proposal, &self.state, &self.cfg.limits, now);
                if let Some(note) = valued.note {
                    verdict.warnings.push(note);
                }
                if let Some(q) = valued.quote {
                    verdict.metrics.market_price = Some(q.price);
                    verdict.metrics.market_price_at = Some(q.at);
                }
                verdict
            }
            Err(refusal) => {
                // A halt is reported first, as the pipeline does.
                let mut verdict = validate(proposal, &self.state, &self.cfg.limits, now);
                if verdict.status != VerdictStatus::Halted {
                    verdict.status = VerdictStatus::Rejected;
                    verdict.rejections = vec![refusal.code];
                    verdict.reason = Some(refusal.reason);
                    verdict.modifications.clear();
                    verdict.proposal = proposal.clone();
                }
                if let Some(q) = quote {
                    verdict.metrics.market_price = Some(q.price);
                    verdict.metrics.market_price_at = Some(q.at);
                }
                verdict
            }
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.cfg.clock.now()
    }

    fn view(&self) -> RiskStateView {
        let now = self.now();
        RiskStateView {
            as_of: now,
            halted: self.state.halted || self.state.external_halt.is_some(),
            halt_reason: self
                .state
                .halt_reason
                .clone()
                .or_else(|| self.state.external_halt.clone()),
            in_cooldown: self.state.in_cooldown(now),
            daily_loss_pct: self.state.daily_loss_pct(),
            weekly_loss_pct: self.state.weekly_loss_pct(),
            total_exposure_pct: self.state.total_exposure_pct(),
            persistence_error: self.persistence_error.lock().clone(),
            state: self.state.clone(),
            limits: self.cfg.limits.clone(),
        }
    }

    fn load(&mut self, ctx: &mut Context<Self>) {
        let store = Arc::clone(&self.cfg.store);
        let fut = with_retries(move || store.load_state(RISK_STATE_KEY));
        ctx.wait(fut.into_actor(self).map(|res, act, ctx| act.on_loaded(res, ctx)));
    }

    fn on_loaded(&mut self, res: Result<Option<serde_json::Value>, StoreError>, ctx: &mut Context<Self>) {
        let outcome = guarded(self, ctx, move |act, ctx| {
            match res {
                Ok(Some(json)) => match serde_json::from_value::<RiskState>(json) {
                    Ok(state) => {
                        tracing::info!(halted = state.halted, breakers = ?state.breakers, "risk state restored");
                        act.state = state;
                    }
                    Err(e) => act.fail_load(format!("stored risk state is unreadable: {e}")),
                },
                Ok(None) => tracing::info!("no stored risk state; starting fresh"),
                Err(e) => act.fail_load(format!("risk state could not be loaded: {e}")),
            }
            act.changed(ctx, CorrelationId::new());
        });
        if let Err(e) = outcome {
            tracing::error!(error = %e, "risk engine crashed while restoring its state");
        }
    }

    fn fail_load(&mut self, reason: String) {
        tracing::error!(%reason, "risk engine starts halted");
        self.load_failed = true;
        self.state = RiskState::default();
        self.state.halt(reason);
    }

    /// After a durable change: roll the periods, trip breakers, alert and persist.
    fn changed(&mut self, ctx: &mut Context<Self>, cid: CorrelationId) {
        self.settle(ctx, cid, Change::Durable);
    }

    /// After a change of the given reach: roll the periods, trip breakers, alert, and persist
    /// when anything durable changed (a period roll-over or a tripped breaker is). An observed
    /// change only stays in memory: every save writes the whole state, so it goes along with
    /// the next one, and `Drain` writes it at shutdown.
    fn settle(&mut self, ctx: &mut Context<Self>, cid: CorrelationId, change: Change) {
        let now = self.now();
        let rolled = self.state.roll_periods(now);
        let events = self.state.evaluate_breakers(&self.cfg.limits);
        let durable = change == Change::Durable || rolled || !events.is_empty();
        self.publish(events, cid);
        if durable {
            self.persist(ctx);
        }
    }

    fn publish(&self, events: Vec<RiskEvent>, cid: CorrelationId) {
        let now = self.now();
        for ev in events {
            let (severity, breach, action, message) = match ev {
                RiskEvent::BreakerTripped { breaker, detail } => {
                    let (severity, action) = match breaker {
                        Breaker::DailyLoss => (Severity::High, "pause_trading"),
                        Breaker::WeeklyLoss => (Severity::High, "reduce_positions"),
                        Breaker::MaxDrawdown => (Severity::Critical, "close_all_positions"),
                    };
                    (
                        severity,
                        breaker.as_str(),
                        action,
                        format!("circuit breaker {}: {detail}", breaker.as_str()),
                    )
                }
                RiskEvent::ConsecutiveLosses { losses, cooldown_min } => (
                    Severity::Medium,
                    "consecutive_losses",
                    "cooldown",
                    format!("{losses} consecutive losses; cooldown {cooldown_min} min, size halved"),
                ),
                RiskEvent::VolatilitySpike { symbol, ratio } => {
                    tracing::warn!(%symbol, ratio, "volatility spike; cooldown started");
                    continue;
                }
            };
            tracing::warn!(breach, ?severity, action, %message, "circuit breaker tripped");
            let priority = if severity == Severity::Critical {
                Priority::Urgent
            } else {
                Priority::High
            };
            self.cfg.alerts.publish(RiskAlert {
                meta: EventMeta::caused_by("risk_engine", now, cid).with_priority(priority),
                alert_type: AlertType::CircuitBreaker,
                severity,
                message,
                action_required: Some(action.to_owned()),
                breach: Some(breach.to_owned()),
                symbol: None,
            });
        }
    }

    /// A future that writes the current state (newest version wins).
    fn save_future(&mut self) -> Option<BoxFuture<'static, ()>> {
        if self.load_failed {
            return None;
        }
        let json = match serde_json::to_value(&self.state) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "risk state could not be serialised");
                return None;
            }
        };
        self.version += 1;
        *self.gate.pending.lock() = Some((self.version, json));
        let gate = self.gate.clone();
        let store = Arc::clone(&self.cfg.store);
        let err_slot = Arc::clone(&self.persistence_error);
        Some(
            async move {
                let mut written = gate.written.lock().await;
                let Some((version, json)) = gate.pending.lock().take() else {
                    return; // an earlier save already wrote the newest document
                };
                if *written >= version {
                    return;
                }
                let doc = json.clone();
                match with_retries(move || store.save_state(RISK_STATE_KEY, doc.clone())).await {
                    Ok(()) => {
                        *written = version;
                        *err_slot.lock() = None;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, version, "risk state could not be persisted");
                        *err_slot.lock() = Some(e.to_string());
                        // Keep it for the next save unless a newer document is already waiting.
                        gate.pending.lock().get_or_insert((version, json));
                    }
                }
            }
            .boxed(),
        )
    }

    fn persist(&mut self, ctx: &mut Context<Self>) {
        if let Some(fut) = self.save_future() {
            ctx.spawn(fut.into_actor(self));
        }
    }
}

/// Runs a store call up to [`STORE_ATTEMPTS`] times with doubling back-off.
async fn with_retries<T, F>(mut call: F) -> Result<T, StoreError>
where
    F: FnMut() -> BoxFuture<'static, Result<T, StoreError>>,
{
    let mut delay = STORE_BACKOFF_MS;
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt >= STORE_ATTEMPTS => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, attempt, "risk state store call failed; retrying");
                actix::clock::sleep(Duration::from_millis(delay)).await;
                delay *= 2;
                attempt += 1;
            }
        }
    }
}

impl Actor for RiskEngine {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.sup.on_started() {
            self.load(ctx);
        }
    }
}

impl actix::Supervised for RiskEngine {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.sup.on_restarting();
        // Volatile state goes (with observations not saved yet); `started()` reloads the
        // durable state.
        self.state = RiskState::default();
        self.load_failed = false;
    }
}

impl SupervisedActor for RiskEngine {
    fn supervision(&self) -> &SupervisionHandle {
        &self.sup
    }
}

crate::supervised_basics!(RiskEngine);

/// Writes the current state, with the observations no durable change has written yet.
impl Handler<Drain> for RiskEngine {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) -> Self::Result {
        match guarded(self, ctx, |act, _| act.save_future()) {
            Ok(Some(fut)) => fut,
            _ => Box::pin(async {}),
        }
    }
}

/// Counts the verdict in `triplegain_risk_verdicts_total{status, code}`: one sample per refusing
/// code, `code="none"` for a verdict without one.
fn record_verdict(verdict: &RiskVerdict) {
    let status = verdict_status(verdict.status);
    if verdict.rejections.is_empty() {
        metrics::counter!("triplegain_risk_verdicts_total", "status" => status, "code" => "none").increment(1);
    }
    for code in &verdict.rejections {
        metrics::counter!("triplegain_risk_verdicts_total", "status" => status, "code" => code.as_str()).increment(1);
    }
}

impl Handler<ValidateTrade> for RiskEngine {
    type Result = Result<RiskVerdict, ActorError>;
    fn handle(&mut self, msg: ValidateTrade, ctx: &mut Context<Self>) -> Self::Result {
        self.validate_now(&msg.0, ctx)
    }
}

impl RiskEngine {
    /// Judges a proposal on the current state (periods rolled first), counted and traced; shared by
    /// [`ValidateTrade`] and [`super::ApproveTrade`].
    pub(super) fn validate_now(
        &mut self,
        proposal: &TradeProposal,
        ctx: &mut Context<Self>,
    ) -> Result<RiskVerdict, ActorError> {
        guarded(self, ctx, |act, ctx| {
            let now = act.now();
            if act.state.roll_periods(now) {
                act.changed(ctx, proposal.correlation_id);
            }
            let verdict = act.judge(proposal, now);
            tracing::info!(
                cid = %proposal.correlation_id,
                symbol = %proposal.symbol,
                status = ?verdict.status,
                rejections = ?verdict.rejections,
                "trade validated"
            );
            record_verdict(&verdict);
            act.verdicts.add(proposal.source, &verdict);
            verdict
        })
    }
}

impl Handler<GetMarketPrice> for RiskEngine {
    type Result = Option<Quote>;
    fn handle(&mut self, msg: GetMarketPrice, _: &mut Context<Self>) -> Self::Result {
        let now = self.now();
        self.prices
            .quote(&msg.0)
            .filter(|q| (now - q.at).num_seconds() <= self.cfg.limits.max_price_age_secs)
    }
}

impl Handler<GetVerdictCounts> for RiskEngine {
    type Result = Result<VerdictCounts, ActorError>;
    fn handle(&mut self, _: GetVerdictCounts, ctx: &mut Context<Self>) -> Self::Result {
        guarded(self, ctx, |act, _| act.verdicts.clone())
    }
}

impl Handler<GetRiskState> for RiskEngine {
    type Result = Result<RiskStateView, ActorError>;
    fn handle(&mut self, _: GetRiskState, ctx: &mut Context<Self>) -> Self::Result {
        guarded(self, ctx, |act, ctx| {
            if act.state.roll_periods(act.now()) {
                act.changed(ctx, CorrelationId::new());
            }
            act.view()
        })
    }
}

impl Handler<ResetRisk> for RiskEngine {
    type Result = Result<RiskStateView, RiskResetError>;
    fn handle(&mut self, msg: ResetRisk, ctx: &mut Context<Self>) -> Self::Result {
        let res = guarded(self, ctx, |act, ctx| {
            let now = act.now();
            act.state.roll_periods(now);
            act.state.reset(msg.scope, msg.admin, now)?;
            if msg.scope == ResetScope::All {
                act.load_failed = false;
            }
            tracing::warn!(scope = ?msg.scope, admin = msg.admin, "risk state reset");
            act.changed(ctx, CorrelationId::new());
            Ok(act.view())
        });
        match res {
            Ok(inner) => inner.map_err(RiskResetError::Refused),
            Err(e) => Err(RiskResetError::Actor(e)),
        }
    }
}

impl Handler<PortfolioUpdate> for RiskEngine {
    type Result = ();
    fn handle(&mut self, msg: PortfolioUpdate, ctx: &mut Context<Self>) {
        let res = guarded(self, ctx, |act, ctx| {
            let now = act.now();
            act.state.roll_periods(now);
            let events = act.state.apply_portfolio(
                msg.equity_usd,
                msg.peak_equity_usd,
                msg.open_exposure_usd,
                msg.exposure_by_symbol,
                now,
                &act.cfg.limits,
            );
            act.publish(events, msg.meta.correlation_id);
            act.changed(ctx, msg.meta.correlation_id);
        });
        if let Err(e) = res {
            tracing::error!(error = %e, "portfolio update not applied");
        }
    }
}

impl Handler<ExecutionEvent> for RiskEngine {
    type Result = ();
    fn handle(&mut self, msg: ExecutionEvent, ctx: &mut Context<Self>) {
        let res = guarded(self, ctx, |act, ctx| {
            let relevant = matches!(
                msg.event_type,
                ExecutionEventType::PositionOpened | ExecutionEventType::PositionClosed
            );
            if !relevant || !act.state.first_sighting(msg.meta.id) {
                return;
            }
            let now = act.now();
            act.state.roll_periods(now);
            let cid = msg.meta.correlation_id;
            match (msg.event_type, msg.realized_pnl) {
                (ExecutionEventType::PositionOpened, _) => act.state.position_opened(now, &act.cfg.limits),
                (ExecutionEventType::PositionClosed, Some(pnl)) => {
                    let events = act.state.record_trade(&msg.symbol, pnl, cid, now, &act.cfg.limits);
                    act.publish(events, cid);
                }
                _ => {
                    tracing::warn!(symbol = %msg.symbol, "position closed without realised P&L; not counted")
                }
            }
            act.changed(ctx, cid);
        });
        if let Err(e) = res {
            tracing::error!(error = %e, "execution event not applied");
        }
    }
}

impl Handler<RegimeUpdate> for RiskEngine {
    type Result = ();
    fn handle(&mut self, msg: RegimeUpdate, ctx: &mut Context<Self>) {
        let res = guarded(self, ctx, |act, ctx| {
            let now = act.now();
            let change = act
                .state
                .update_regime(&msg.symbol, msg.regime, msg.entry_strictness, now);
            act.settle(ctx, msg.meta.correlation_id, change);
        });
        if let Err(e) = res {
            tracing::error!(error = %e, "regime update not applied");
        }
    }
}

impl Handler<MarketSnapshot> for RiskEngine {
    type Result = ();
    fn handle(&mut self, msg: MarketSnapshot, ctx: &mut Context<Self>) {
        let data_age = chrono::Duration::seconds(msg.data_age_seconds.max(0));
        self.prices.observe(
            &msg.symbol,
            Quote {
                price: msg.current_price,
                at: msg.meta.timestamp - data_age,
            },
        );
        let Some(atr) = msg.indicators.atr_14 else {
            return;
        };
        let res = guarded(self, ctx, |act, ctx| {
            let now = act.now();
            let outcome = act
                .state
                .record_atr(msg.symbol.as_str(), atr, msg.indicators_at, now, &act.cfg.limits);
            act.publish(outcome.events, msg.meta.correlation_id);
            act.settle(ctx, msg.meta.correlation_id, outcome.change);
        });
        if let Err(e) = res {
            tracing::error!(error = %e, "market snapshot not applied");
        }
    }
}

impl RiskEngine {
    /// Sets or lifts the halt learned from outside, persisting a change.
    fn set_external_halt(&mut self, halt: Option<String>, ctx: &mut Context<Self>, cid: CorrelationId) {
        if self.state.external_halt == halt {
            return;
        }
        match &halt {
            Some(reason) => tracing::warn!(%reason, "risk engine halts: entries refused"),
            None => tracing::info!("risk engine: the outside halt is lifted"),
        }
        self.state.external_halt = halt;
        self.changed(ctx, cid);
    }
}

/// Halts and resumes of the coordinator: halted means halted for every entry path.
impl Handler<SystemEvent> for RiskEngine {
    type Result = ();
    fn handle(&mut self, msg: SystemEvent, ctx: &mut Context<Self>) {
        let res = guarded(self, ctx, |act, ctx| {
            let cid = msg.meta.correlation_id;
            match msg.event.as_str() {
                "coordinator_halted" => {
                    let reason = msg.details.get("reason").and_then(|r| r.as_str()).map_or_else(
                        || "coordinator halted".to_owned(),
                        |r| format!("coordinator halted: {r}"),
                    );
                    act.set_external_halt(Some(reason), ctx, cid);
                }
                // Only an admin resume leaves HALTED; a resume from PAUSED finds nothing set.
                "coordinator_resumed" => act.set_external_halt(None, ctx, cid),
                _ => {}
            }
        });
        if let Err(e) = res {
            tracing::error!(error = %e, "system event not applied");
        }
    }
}

/// An actor that exceeded its restart intensity halts trading here too, at once.
impl Handler<RiskAlert> for RiskEngine {
    type Result = ();
    fn handle(&mut self, msg: RiskAlert, ctx: &mut Context<Self>) {
        if msg.alert_type != AlertType::ActorEscalated {
            return;
        }
        let res = guarded(self, ctx, |act, ctx| {
            act.set_external_halt(Some(msg.message.clone()), ctx, msg.meta.correlation_id);
        });
        if let Err(e) = res {
            tracing::error!(error = %e, "escalation not applied");
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::domain::{OrderStatus, Regime, Side, Symbol};
    use crate::risk::types::{ProposalSource, RejectionCode, VerdictStatus};
    use crate::risk::DrawdownBasis;
    use crate::supervision::{start_supervised, Registry, RestartPolicy};
    use chrono::TimeZone;
    use parking_lot::Mutex;
    use rust_decimal_macros::dec;
    use std::collections::{BTreeMap, HashMap};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// An in-memory [`StateStore`] with a save counter, an optional load delay and a switch
    /// that makes loads fail.
    #[derive(Clone, Default)]
    struct MemStore {
        docs: Arc<Mutex<HashMap<String, serde_json::Value>>>,
        saves: Arc<AtomicUsize>,
        fail_loads: Arc<AtomicBool>,
        load_delay_ms: u64,
    }

    impl MemStore {
        fn doc(&self) -> Option<serde_json::Value> {
            self.docs.lock().get(RISK_STATE_KEY).cloned()
        }
    }

    impl StateStore for MemStore {
        fn load_state(&self, key: &str) -> crate::ports::StoreFuture<Option<serde_json::Value>> {
            let (docs, key, fail, delay) = (
                Arc::clone(&self.docs),
                key.to_owned(),
                self.fail_loads.load(Ordering::SeqCst),
                self.load_delay_ms,
            );
            Box::pin(async move {
                if delay > 0 {
                    actix::clock::sleep(Duration::from_millis(delay)).await;
                }
                if fail {
                    return Err(StoreError::Unavailable("database down".into()));
                }
                Ok(docs.lock().get(&key).cloned())
            })
        }

        fn save_state(&self, key: &str, state: serde_json::Value) -> crate::ports::StoreFuture<()> {
            let (docs, saves, key) = (Arc::clone(&self.docs), Arc::clone(&self.saves), key.to_owned());
            Box::pin(async move {
                saves.fetch_add(1, Ordering::SeqCst);
                docs.lock().insert(key, state);
                Ok(())
            })
        }
    }

    struct Collector(Arc<Mutex<Vec<RiskAlert>>>);
    impl Actor for Collector {
        type Context = Context<Self>;
    }
    impl Handler<RiskAlert> for Collector {
        type Result = ();
        fn handle(&mut self, msg: RiskAlert, _: &mut Context<Self>) {
            self.0.lock().push(msg);
        }
    }

    struct Harness {
        addr: Addr<RiskEngine>,
        store: MemStore,
        alerts: Arc<Mutex<Vec<RiskAlert>>>,
        clock: ManualClock,
        registry: Registry,
        /// The market price the engine sees (observed now), `None` for no price.
        market: Arc<Mutex<Option<Decimal>>>,
    }

    /// A market that quotes its price as of the test clock's now.
    struct TestMarket(ManualClock, Arc<Mutex<Option<Decimal>>>);

    impl PriceSource for TestMarket {
        fn quote(&self, _: &Symbol) -> Option<Quote> {
            (*self.1.lock()).map(|price| Quote {
                price,
                at: self.0.now(),
            })
        }
    }

    fn wednesday() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
    }

    fn start(store: MemStore, clock: ManualClock) -> Harness {
        let topic = Topic::<RiskAlert>::new();
        let alerts = Arc::new(Mutex::new(Vec::new()));
        let collector = Collector(Arc::clone(&alerts)).start();
        topic.subscribe("collector", collector.recipient());
        let shared: SharedClock = Arc::new(clock.clone());
        let registry = Registry::new(RestartPolicy::default(), topic.clone(), Arc::clone(&shared));
        // These tests drive the drawdown breaker with valuations: the account basis.
        let cfg = RiskEngineConfig {
            limits: RiskLimits {
                drawdown_basis: DrawdownBasis::Account,
                ..RiskLimits::default()
            },
            store: Arc::new(store.clone()),
            alerts: topic,
            clock: shared,
        };
        let market = Arc::new(Mutex::new(Some(dec!(45000))));
        let source = Arc::new(TestMarket(clock.clone(), Arc::clone(&market)));
        let addr = start_supervised(&registry, "risk_engine", true, 64, move |sup| {
            RiskEngine::new(sup, cfg).with_price_source(source)
        });
        Harness {
            addr,
            store,
            alerts,
            clock,
            registry,
            market,
        }
    }

    fn btc() -> Symbol {
        Symbol::parse("BTC/USDT").unwrap()
    }

    fn portfolio(h: &Harness, equity: Decimal, peak: Decimal) -> PortfolioUpdate {
        PortfolioUpdate {
            meta: EventMeta::new("position_tracker", h.clock.now()),
            equity_usd: equity,
            peak_equity_usd: peak,
            drawdown_pct: Decimal::ZERO,
            open_exposure_usd: Decimal::ZERO,
            exposure_by_symbol: BTreeMap::new(),
            balances: BTreeMap::new(),
            allocation_pct: BTreeMap::new(),
            position_footprint: BTreeMap::new(),
        }
    }

    fn closed(h: &Harness, pnl: Decimal) -> ExecutionEvent {
        ExecutionEvent {
            meta: EventMeta::new("execution", h.clock.now()),
            event_type: ExecutionEventType::PositionClosed,
            order_id: "O-1".into(),
            client_order_id: None,
            symbol: btc(),
            side: Side::Sell,
            status: OrderStatus::Filled,
            size: dec!(0.01),
            fill_price: Some(dec!(45000)),
            fee: dec!(0),
            realized_pnl: Some(pnl),
            position_id: Some("P-1".into()),
        }
    }

    fn proposal() -> TradeProposal {
        TradeProposal {
            symbol: btc(),
            side: Side::Buy,
            size_usd: dec!(1000),
            entry_price: dec!(45000),
            stop_loss: Some(dec!(44100)),
            take_profit: Some(dec!(46800)),
            leverage: 1,
            confidence: 0.8,
            regime: Regime::TrendingBull,
            source: ProposalSource::Agent,
            correlation_id: CorrelationId::new(),
            reduce_only: false,
        }
    }

    async fn validate(h: &Harness) -> RiskVerdict {
        h.addr.send(ValidateTrade(proposal())).await.unwrap().unwrap()
    }

    async fn state(h: &Harness) -> RiskStateView {
        h.addr.send(GetRiskState).await.unwrap().unwrap()
    }

    /// Waits (at most 2 s) until `f` holds.
    async fn eventually(what: &str, f: impl Fn() -> bool) {
        for _ in 0..200 {
            if f() {
                return;
            }
            actix::clock::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    fn stored(h: &Harness, field: &str) -> Option<serde_json::Value> {
        h.store.doc().map(|d| d[field].clone())
    }

    #[actix::test]
    async fn equity_comes_only_from_portfolio_updates() {
        let h = start(MemStore::default(), ManualClock::new(wednesday()));
        let v = validate(&h).await;
        assert_eq!(v.rejections, vec![RejectionCode::EquityUnavailable]);
        h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
        let v = validate(&h).await;
        assert_eq!(v.status, VerdictStatus::Approved, "{v:?}");
    }

    #[actix::test]
    async fn daily_loss_publishes_a_breaker_alert_and_halts_until_the_next_day() {
        let h = start(MemStore::default(), ManualClock::new(wednesday()));
        h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
        let loss = closed(&h, dec!(-600));
        let cid = loss.meta.correlation_id;
        h.addr.send(loss).await.unwrap();

        eventually("the daily-loss alert", || !h.alerts.lock().is_empty()).await;
        let alert = h.alerts.lock()[0].clone();
        assert_eq!(alert.alert_type, AlertType::CircuitBreaker);
        assert_eq!(alert.breach.as_deref(), Some("daily_loss"));
        assert_eq!(alert.severity, Severity::High);
        assert_eq!(alert.action_required.as_deref(), Some("pause_trading"));
        assert_eq!(alert.meta.correlation_id, cid, "the alert continues the trade's chain");

        let v = validate(&h).await;
        assert_eq!(
            (v.status, v.rejections.clone()),
            (VerdictStatus::Halted, vec![RejectionCode::TradingHalted])
        );

        // Another event on the same day does not alert twice.
        h.addr.send(portfolio(&h, dec!(9400), dec!(10000))).await.unwrap();
        assert_eq!(h.alerts.lock().len(), 1);

        h.clock.set(Utc.with_ymd_and_hms(2026, 11, 26, 0, 30, 0).unwrap());
        let v = validate(&h).await;
        assert_eq!(v.status, VerdictStatus::Approved, "{v:?}");
        let view = state(&h).await;
        assert_eq!(view.state.daily_pnl, dec!(0));
        assert_eq!(view.state.weekly_pnl, dec!(-600));
    }

    #[actix::test]
    async fn weekly_pnl_resets_in_a_new_iso_week() {
        let h = start(MemStore::default(), ManualClock::new(wednesday()));
        h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
        h.addr.send(closed(&h, dec!(-300))).await.unwrap();
        h.clock.set(Utc.with_ymd_and_hms(2026, 11, 29, 23, 0, 0).unwrap()); // Sunday, same ISO week
        assert_eq!(state(&h).await.state.weekly_pnl, dec!(-300));
        h.clock.set(Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap()); // Tuesday, next ISO week
        let view = state(&h).await;
        assert_eq!(view.state.weekly_pnl, dec!(0));
        assert_eq!(view.state.weekly_period_start, Some(h.clock.now()));
    }

    /// Publishes `n` losing position closes in one burst (no yield) through `topic`.
    fn burst(h: &Harness, topic: &Topic<ExecutionEvent>, n: usize) -> usize {
        (0..n).map(|_| topic.publish(closed(h, dec!(-1))).dropped).sum()
    }

    #[actix::test]
    async fn a_burst_of_position_closes_past_a_full_mailbox_loses_none() {
        // The engine's mailbox holds 64: an ordinary subscription drops most of a 300-close burst.
        let lossy = start(MemStore::default(), ManualClock::new(wednesday()));
        lossy
            .addr
            .send(portfolio(&lossy, dec!(100000), dec!(100000)))
            .await
            .unwrap();
        let topic = Topic::<ExecutionEvent>::new();
        topic.subscribe("risk_engine", lossy.addr.clone().recipient());
        let dropped = burst(&lossy, &topic, 300);
        lossy.addr.send(Drain).await.unwrap();
        let seen = state(&lossy).await.state;
        assert!(dropped > 0, "the burst overflows the mailbox");
        assert_eq!(seen.daily_pnl, Decimal::from(-(300 - dropped as i64)));

        // The reliable subscription the server uses for money events counts every close.
        let h = start(MemStore::default(), ManualClock::new(wednesday()));
        h.addr.send(portfolio(&h, dec!(100000), dec!(100000))).await.unwrap();
        let topic = Topic::<ExecutionEvent>::new();
        topic.subscribe_reliable("risk_engine", h.addr.clone().recipient());
        assert_eq!(burst(&h, &topic, 300), 0);
        h.addr.send(Drain).await.unwrap();
        let view = state(&h).await;
        assert_eq!(view.state.daily_pnl, dec!(-300));
        assert_eq!(view.state.weekly_pnl, dec!(-300));
        assert_eq!(view.state.consecutive_losses, 300);
        assert_eq!(view.state.trades_today, 300);
        assert_eq!(view.state.trading_pnl_usd, dec!(-300));
        let stats = &topic.stats()[0];
        assert_eq!((stats.delivered, stats.dropped), (300, 0));
        assert!(stats.overflowed > 0, "{stats:?}");
    }

    #[actix::test]
    async fn drawdown_breaker_needs_an_admin_reset() {
        let h = start(MemStore::default(), ManualClock::new(wednesday()));
        h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
        h.addr.send(portfolio(&h, dec!(7500), dec!(10000))).await.unwrap();
        eventually("the drawdown alert", || !h.alerts.lock().is_empty()).await;
        let alert = h.alerts.lock()[0].clone();
        assert_eq!(alert.breach.as_deref(), Some("max_drawdown"));
        assert_eq!(alert.severity, Severity::Critical);
        assert_eq!(alert.action_required.as_deref(), Some("close_all_positions"));

        h.clock.advance(chrono::Duration::days(8));
        assert_eq!(
            validate(&h).await.status,
            VerdictStatus::Halted,
            "period roll-over keeps it"
        );

        let refused = h
            .addr
            .send(ResetRisk {
                admin: false,
                scope: ResetScope::Drawdown,
            })
            .await
            .unwrap();
        assert!(
            matches!(refused, Err(RiskResetError::Refused(ResetError::AdminRequired(_)))),
            "{refused:?}"
        );
        assert_eq!(validate(&h).await.status, VerdictStatus::Halted);

        let view = h
            .addr
            .send(ResetRisk {
                admin: true,
                scope: ResetScope::Drawdown,
            })
            .await
            .unwrap()
            .unwrap();
        assert!(!view.halted);
        h.addr.send(portfolio(&h, dec!(7500), dec!(10000))).await.unwrap();
        let v = validate(&h).await;
        assert_eq!(v.status, VerdictStatus::Approved, "{v:?}");
    }

    #[actix::test]
    async fn five_losses_alert_and_cool_down() {
        let h = start(MemStore::default(), ManualClock::new(wednesday()));
        h.addr.send(portfolio(&h, dec!(100000), dec!(100000))).await.unwrap();
        for _ in 0..5 {
            h.addr.send(closed(&h, dec!(-10))).await.unwrap();
        }
        eventually("the consecutive-loss alert", || !h.alerts.lock().is_empty()).await;
        assert_eq!(h.alerts.lock()[0].breach.as_deref(), Some("consecutive_losses"));
        let v = validate(&h).await;
        assert_eq!(v.rejections, vec![RejectionCode::CooldownActive]);
        h.clock.advance(chrono::Duration::minutes(61));
        let v = validate(&h).await;
        // After the cooldown: halved size and a 0.75 confidence floor (0.8 passes).
        assert_eq!(v.status, VerdictStatus::Modified, "{v:?}");
        assert_eq!(v.proposal.size_usd, dec!(500));
        assert_eq!(v.metrics.required_confidence, Some(0.75));
    }

    #[actix::test]
    async fn a_redelivered_trade_result_counts_once() {
        let h = start(MemStore::default(), ManualClock::new(wednesday()));
        h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
        let ev = closed(&h, dec!(-100));
        h.addr.send(ev.clone()).await.unwrap();
        h.addr.send(ev).await.unwrap();
        let view = state(&h).await;
        assert_eq!(view.state.daily_pnl, dec!(-100));
        assert_eq!(view.state.consecutive_losses, 1);
    }

    #[actix::test]
    async fn state_is_persisted_on_change_and_reloaded_after_a_crash() {
        let h = start(MemStore::default(), ManualClock::new(wednesday()));
        h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
        h.addr.send(closed(&h, dec!(-100))).await.unwrap();
        eventually("the loss to be persisted", || {
            stored(&h, "daily_pnl") == Some(serde_json::json!("-100"))
        })
        .await;

        // Change the stored document behind the engine's back: only a reload can see this.
        h.store.docs.lock().get_mut(RISK_STATE_KEY).unwrap()["consecutive_losses"] = serde_json::json!(4);

        h.registry.inject_fault("risk_engine").await.unwrap();
        let view = state(&h).await;
        assert_eq!(
            view.state.consecutive_losses, 4,
            "state reloaded from the store after the restart"
        );
        assert_eq!(view.state.daily_pnl, dec!(-100));
        assert_eq!(view.state.equity_usd, Some(dec!(10000)));
        let record = h.registry.get("risk_engine").unwrap();
        assert_eq!((record.starts, record.restarts), (2, 1));
        assert!(view.persistence_error.is_none());
    }

    #[actix::test]
    async fn a_new_engine_restores_the_halt_before_answering() {
        let first = start(MemStore::default(), ManualClock::new(wednesday()));
        first
            .addr
            .send(portfolio(&first, dec!(10000), dec!(10000)))
            .await
            .unwrap();
        first
            .addr
            .send(portfolio(&first, dec!(7000), dec!(10000)))
            .await
            .unwrap();
        eventually("the breaker to be persisted", || {
            stored(&first, "breakers") == Some(serde_json::json!(["max_drawdown"]))
        })
        .await;

        // A second process on the same store, with a slow store: the first answer waits for the load.
        let store = MemStore {
            load_delay_ms: 200,
            ..first.store.clone()
        };
        let second = start(store, ManualClock::new(wednesday()));
        let v = validate(&second).await;
        assert_eq!(v.status, VerdictStatus::Halted, "{v:?}");
        assert!(v.reason.unwrap().contains("max_drawdown"));
    }

    #[actix::test]
    async fn an_unreadable_store_halts_and_keeps_the_stored_state() {
        let store = MemStore::default();
        store
            .docs
            .lock()
            .insert(RISK_STATE_KEY.into(), serde_json::json!({"consecutive_losses": 2}));
        store.fail_loads.store(true, Ordering::SeqCst);
        let h = start(store, ManualClock::new(wednesday()));
        let v = validate(&h).await;
        assert_eq!(v.status, VerdictStatus::Halted);
        assert!(v.reason.unwrap().contains("could not be loaded"));

        h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
        h.addr.send(Drain).await.unwrap();
        assert_eq!(
            h.store.saves.load(Ordering::SeqCst),
            0,
            "nothing overwrites the stored state"
        );

        // An admin accepts the current state; saving resumes.
        let view = h
            .addr
            .send(ResetRisk {
                admin: true,
                scope: ResetScope::All,
            })
            .await
            .unwrap()
            .unwrap();
        assert!(!view.halted);
        h.addr.send(Drain).await.unwrap();
        assert_eq!(stored(&h, "consecutive_losses"), Some(serde_json::json!(0)));
    }

    #[actix::test]
    async fn drain_writes_the_latest_state() {
        let h = start(MemStore::default(), ManualClock::new(wednesday()));
        h.addr.send(portfolio(&h, dec!(12345), dec!(12345))).await.unwrap();
        h.addr.send(Drain).await.unwrap();
        assert_eq!(stored(&h, "equity_usd"), Some(serde_json::json!("12345")));
    }

    /// A snapshot whose indicators include the BTC 1h candle that opened `hour` hours after
    /// Wednesday 00:00 (before the clock's 10:00 for `hour` < 10).
    fn snapshot(h: &Harness, atr: f64, hour: i64) -> MarketSnapshot {
        let day = wednesday() - chrono::Duration::hours(10);
        MarketSnapshot {
            meta: EventMeta::new("market", h.clock.now()),
            symbol: btc(),
            current_price: dec!(45000),
            price_24h_ago: None,
            price_change_24h_pct: None,
            volume_24h: None,
            volume_vs_avg: None,
            indicators: crate::indicators::IndicatorSnapshot {
                atr_14: Some(atr),
                ..Default::default()
            },
            indicators_at: Some(day + chrono::Duration::hours(hour)),
            data_age_seconds: 0,
            missing_data_flags: Vec::new(),
        }
    }

    #[actix::test]
    async fn an_atr_spike_cools_down_then_halves_the_size() {
        let h = start(MemStore::default(), ManualClock::new(wednesday()));
        h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
        for hour in 0..5 {
            h.addr.send(snapshot(&h, 100.0, hour)).await.unwrap();
        }
        assert_eq!(validate(&h).await.status, VerdictStatus::Approved);
        h.addr.send(snapshot(&h, 450.0, 5)).await.unwrap();
        assert_eq!(validate(&h).await.rejections, vec![RejectionCode::CooldownActive]);
        h.clock.advance(chrono::Duration::minutes(16));
        let v = validate(&h).await;
        assert_eq!(v.status, VerdictStatus::Modified, "{v:?}");
        assert_eq!(v.proposal.size_usd, dec!(500));
        assert!(v.warnings.iter().any(|w| w.starts_with("volatility_spike")));
    }

    #[actix::test]
    async fn regime_updates_set_the_entry_strictness() {
        let h = start(MemStore::default(), ManualClock::new(wednesday()));
        h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
        let mut p = proposal();
        p.regime = Regime::Ranging;
        p.confidence = 0.62;
        // Ranging defaults to strict: 0.60 + 0.05.
        let v = h.addr.send(ValidateTrade(p.clone())).await.unwrap().unwrap();
        assert_eq!(v.rejections, vec![RejectionCode::ConfidenceTooLow]);
        h.addr
            .send(RegimeUpdate {
                meta: EventMeta::new("regime", h.clock.now()),
                symbol: btc(),
                regime: Regime::Ranging,
                confidence: 0.7,
                position_size_multiplier: 0.75,
                entry_strictness: crate::domain::EntryStrictness::Normal,
                stop_loss_atr_multiplier: 0.8,
                take_profit_atr_multiplier: 1.5,
                max_leverage: 2,
                previous_regime: None,
            })
            .await
            .unwrap();
        let v = h.addr.send(ValidateTrade(p)).await.unwrap().unwrap();
        assert_eq!(v.status, VerdictStatus::Approved, "{v:?}");
        let json = serde_json::to_value(state(&h).await).unwrap();
        assert_eq!(json["state"]["regimes"]["BTC/USDT"]["entry_strictness"], "normal");
    }

    fn regime(h: &Harness, regime: Regime, entry_strictness: crate::domain::EntryStrictness) -> RegimeUpdate {
        RegimeUpdate {
            meta: EventMeta::new("regime", h.clock.now()),
            symbol: btc(),
            regime,
            confidence: 0.7,
            position_size_multiplier: 1.0,
            entry_strictness,
            stop_loss_atr_multiplier: 1.0,
            take_profit_atr_multiplier: 2.0,
            max_leverage: 3,
            previous_regime: None,
        }
    }

    fn saves(h: &Harness) -> usize {
        h.store.saves.load(Ordering::SeqCst)
    }

    /// Lets spawned saves run, then returns the save count.
    async fn settled_saves(h: &Harness) -> usize {
        state(h).await;
        actix::clock::sleep(Duration::from_millis(30)).await;
        saves(h)
    }

    #[actix::test]
    async fn snapshots_and_repeated_regimes_are_saved_only_with_a_durable_change_or_on_drain() {
        use crate::domain::EntryStrictness::{Normal, Strict};
        let h = start(MemStore::default(), ManualClock::new(wednesday()));
        h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
        h.addr.send(regime(&h, Regime::Ranging, Strict)).await.unwrap();
        eventually("the first regime to be saved", || {
            stored(&h, "regimes").is_some_and(|r| r["BTC/USDT"]["regime"] == serde_json::json!("ranging"))
        })
        .await;
        let before = settled_saves(&h).await;

        // Ten snapshots for each of three candles with an unchanged ATR, and thirty identical
        // regime updates: nothing is written.
        for hour in 0..3 {
            for _ in 0..10 {
                h.addr.send(snapshot(&h, 100.0, hour)).await.unwrap();
                h.addr.send(regime(&h, Regime::Ranging, Strict)).await.unwrap();
            }
        }
        assert_eq!(settled_saves(&h).await, before, "observations cause no save");
        assert_eq!(stored(&h, "volatility"), Some(serde_json::json!({})));
        let view = state(&h).await;
        assert_eq!(view.state.volatility["BTC/USDT"].samples, [100.0, 100.0, 100.0]);

        // A spike starts a cooldown: saved at once, with the samples before it.
        h.addr.send(snapshot(&h, 450.0, 3)).await.unwrap();
        eventually("the spike to be saved", || {
            stored(&h, "volatility").is_some_and(|v| v["BTC/USDT"]["spike_active"] == serde_json::json!(true))
        })
        .await;
        assert_eq!(
            stored(&h, "volatility").unwrap()["BTC/USDT"]["samples"],
            serde_json::json!([100.0, 100.0, 100.0, 450.0])
        );
        assert!(stored(&h, "cooldown_until").is_some_and(|c| c.is_string()));

        // A new strictness of the same regime is saved at once.
        let before = settled_saves(&h).await;
        h.addr.send(regime(&h, Regime::Ranging, Normal)).await.unwrap();
        eventually("the new strictness to be saved", || {
            stored(&h, "regimes").is_some_and(|r| r["BTC/USDT"]["entry_strictness"] == serde_json::json!("normal"))
        })
        .await;
        assert!(saves(&h) > before);

        // A new regime too.
        let before = settled_saves(&h).await;
        h.addr.send(regime(&h, Regime::TrendingBull, Normal)).await.unwrap();
        eventually("the new regime to be saved", || {
            stored(&h, "regimes").is_some_and(|r| r["BTC/USDT"]["regime"] == serde_json::json!("trending_bull"))
        })
        .await;
        assert!(saves(&h) > before);

        // Observations after the last save (a sample during the spike, a repeated regime a
        // minute later) stay in memory until Drain writes them.
        let before = settled_saves(&h).await;
        h.clock.advance(chrono::Duration::minutes(1));
        h.addr.send(snapshot(&h, 600.0, 4)).await.unwrap();
        h.addr.send(regime(&h, Regime::TrendingBull, Normal)).await.unwrap();
        assert_eq!(settled_saves(&h).await, before);
        h.addr.send(Drain).await.unwrap();
        let doc = h.store.doc().unwrap();
        assert_eq!(
            doc["volatility"]["BTC/USDT"]["samples"].as_array().map(Vec::len),
            Some(5)
        );
        assert_eq!(
            doc["regimes"]["BTC/USDT"]["at"],
            serde_json::to_value(h.clock.now()).unwrap()
        );
    }

    #[actix::test]
    async fn proposals_are_valued_at_the_engines_market_price_never_their_own() {
        let h = start(MemStore::default(), ManualClock::new(wednesday()));
        h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
        // A sell at 400 against a 45 000 market: refused naming the deviation, not sized at 400.
        let mut p = proposal();
        p.side = Side::Sell;
        p.entry_price = dec!(400);
        p.stop_loss = Some(dec!(404));
        p.take_profit = Some(dec!(390));
        p.size_usd = dec!(20);
        let v = h.addr.send(ValidateTrade(p)).await.unwrap().unwrap();
        assert_eq!(v.status, VerdictStatus::Rejected);
        assert_eq!(v.rejections, vec![RejectionCode::LimitPriceDeviation], "{v:?}");
        assert_eq!(v.metrics.market_price, Some(dec!(45000)));
        // A buy 10x the market is refused the same way.
        let mut p = proposal();
        p.entry_price = dec!(450000);
        let v = h.addr.send(ValidateTrade(p)).await.unwrap().unwrap();
        assert_eq!(v.rejections, vec![RejectionCode::LimitPriceDeviation]);
        // Within the deviation the volume is kept and valued where it fills, the market:
        // 1 000 at 45 450 is 990.09… at 45 000, and the stop is judged against 45 000.
        let mut p = proposal();
        p.entry_price = dec!(45450);
        let v = h.addr.send(ValidateTrade(p)).await.unwrap().unwrap();
        assert!(v.is_approved(), "{v:?}");
        assert_eq!(v.proposal.entry_price, dec!(45000));
        assert!(
            v.proposal.size_usd > dec!(990) && v.proposal.size_usd < dec!(991),
            "{v:?}"
        );
    }

    #[actix::test]
    async fn no_price_or_a_stale_price_refuses_entries_but_not_reductions() {
        let h = start(MemStore::default(), ManualClock::new(wednesday()));
        h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
        *h.market.lock() = None;
        let v = validate(&h).await;
        assert_eq!(v.rejections, vec![RejectionCode::MarketPriceUnavailable], "{v:?}");
        let mut r = proposal();
        r.reduce_only = true;
        r.side = Side::Sell;
        r.stop_loss = None;
        r.take_profit = None;
        assert!(h.addr.send(ValidateTrade(r)).await.unwrap().unwrap().is_approved());
        // A snapshot from the feed gives a price; once older than the limit it is no price.
        let mut snap = snapshot(&h, 100.0, 0);
        snap.indicators.atr_14 = None;
        h.addr.send(snap).await.unwrap();
        assert!(validate(&h).await.is_approved());
        h.clock
            .advance(chrono::Duration::seconds(RiskLimits::default().max_price_age_secs + 1));
        let v = validate(&h).await;
        assert_eq!(v.rejections, vec![RejectionCode::MarketPriceUnavailable], "{v:?}");
        assert!(v.reason.unwrap().contains("old"));
    }

    fn system_event(h: &Harness, event: &str) -> SystemEvent {
        SystemEvent {
            meta: EventMeta::new("coordinator", h.clock.now()),
            event: event.into(),
            details: serde_json::json!({"reason": "by hand"}),
        }
    }

    #[actix::test]
    async fn a_coordinator_halt_or_an_escalation_halts_entries_until_the_coordinator_resumes() {
        let h = start(MemStore::default(), ManualClock::new(wednesday()));
        h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
        assert!(validate(&h).await.is_approved());
        h.addr.send(system_event(&h, "coordinator_halted")).await.unwrap();
        let view = state(&h).await;
        assert!(view.halted, "the engine reports the halt");
        assert_eq!(view.halt_reason.as_deref(), Some("coordinator halted: by hand"));
        assert!(!view.state.halted, "no breaker of its own");
        let v = validate(&h).await;
        assert_eq!(v.status, VerdictStatus::Halted);
        let mut r = proposal();
        r.reduce_only = true;
        r.side = Side::Sell;
        r.stop_loss = None;
        r.take_profit = None;
        assert!(
            h.addr.send(ValidateTrade(r)).await.unwrap().unwrap().is_approved(),
            "reductions pass"
        );
        // The halt survives a restart.
        eventually("halt saved", || {
            stored(&h, "external_halt") == Some(serde_json::json!("coordinator halted: by hand"))
        })
        .await;
        h.addr.send(system_event(&h, "coordinator_resumed")).await.unwrap();
        assert!(!state(&h).await.halted);
        assert!(validate(&h).await.is_approved());

        h.addr
            .send(RiskAlert {
                meta: EventMeta::new("supervisor", h.clock.now()),
                alert_type: AlertType::ActorEscalated,
                severity: Severity::Critical,
                message: "actor x exceeded its restart intensity".into(),
                action_required: Some("halt_trading".into()),
                breach: Some("actor_escalated:x".into()),
                symbol: None,
            })
            .await
            .unwrap();
        assert_eq!(validate(&h).await.status, VerdictStatus::Halted);
    }
}
