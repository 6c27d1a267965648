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
mod tests;
