//! The RiskEngine actor: the sole owner of the risk state. It validates proposals with
//! the pure pipeline, learns equity, drawdown and exposure from `PortfolioUpdate`, trade
//! results from `ExecutionEvent`, regimes from `RegimeUpdate` and ATR from
//! `MarketSnapshot`, trips circuit breakers (publishing a `RiskAlert`), and persists its
//! state on every change. State is loaded in `started()` before any message is served,
//! also after a supervised restart.

use super::rules::validate;
use super::state::{ResetError, ResetScope, RiskEvent};
use super::types::{Breaker, RiskLimits, RiskState, RiskVerdict, TradeProposal};
use crate::bus::Topic;
use crate::clock::SharedClock;
use crate::domain::{CorrelationId, Priority, Severity};
use crate::messages::{
    AlertType, EventMeta, ExecutionEvent, ExecutionEventType, MarketSnapshot, PortfolioUpdate,
    RegimeUpdate, RiskAlert,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// Serialises saves so that an older state never overwrites a newer one.
#[derive(Clone, Default)]
struct SaveGate(Arc<futures::lock::Mutex<u64>>);

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
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.cfg.clock.now()
    }

    fn view(&self) -> RiskStateView {
        let now = self.now();
        RiskStateView {
            as_of: now,
            halted: self.state.halted,
            halt_reason: self.state.halt_reason.clone(),
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
        ctx.wait(
            fut.into_actor(self)
                .map(|res, act, ctx| act.on_loaded(res, ctx)),
        );
    }

    fn on_loaded(
        &mut self,
        res: Result<Option<serde_json::Value>, StoreError>,
        ctx: &mut Context<Self>,
    ) {
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

    /// After any change: roll the periods, trip breakers, alert and persist.
    fn changed(&mut self, ctx: &mut Context<Self>, cid: CorrelationId) {
        let now = self.now();
        self.state.roll_periods(now);
        let events = self.state.evaluate_breakers(&self.cfg.limits);
        self.publish(events, cid);
        self.persist(ctx);
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
                RiskEvent::ConsecutiveLosses {
                    losses,
                    cooldown_min,
                } => (
                    Severity::Medium,
                    "consecutive_losses",
                    "cooldown",
                    format!(
                        "{losses} consecutive losses; cooldown {cooldown_min} min, size halved"
                    ),
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
        let version = self.version;
        let gate = self.gate.clone();
        let store = Arc::clone(&self.cfg.store);
        let err_slot = Arc::clone(&self.persistence_error);
        Some(
            async move {
                let mut written = gate.0.lock().await;
                if *written >= version {
                    return;
                }
                match with_retries(move || store.save_state(RISK_STATE_KEY, json.clone())).await {
                    Ok(()) => {
                        *written = version;
                        *err_slot.lock() = None;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, version, "risk state could not be persisted");
                        *err_slot.lock() = Some(e.to_string());
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

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.sup.on_stopped();
    }
}

impl actix::Supervised for RiskEngine {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.sup.on_restarting();
        // Volatile state goes; `started()` reloads the durable state.
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

impl Handler<Drain> for RiskEngine {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) -> Self::Result {
        match guarded(self, ctx, |act, _| act.save_future()) {
            Ok(Some(fut)) => fut,
            _ => Box::pin(async {}),
        }
    }
}

impl Handler<ValidateTrade> for RiskEngine {
    type Result = Result<RiskVerdict, ActorError>;
    fn handle(&mut self, msg: ValidateTrade, ctx: &mut Context<Self>) -> Self::Result {
        guarded(self, ctx, |act, ctx| {
            let now = act.now();
            if act.state.roll_periods(now) {
                act.changed(ctx, msg.0.correlation_id);
            }
            let verdict = validate(&msg.0, &act.state, &act.cfg.limits, now);
            tracing::info!(
                cid = %msg.0.correlation_id,
                symbol = %msg.0.symbol,
                status = ?verdict.status,
                rejections = ?verdict.rejections,
                "trade validated"
            );
            verdict
        })
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
                (ExecutionEventType::PositionOpened, _) => {
                    act.state.position_opened(now, &act.cfg.limits)
                }
                (ExecutionEventType::PositionClosed, Some(pnl)) => {
                    let events =
                        act.state
                            .record_trade(&msg.symbol, pnl, cid, now, &act.cfg.limits);
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
            act.state
                .update_regime(&msg.symbol, msg.regime, msg.entry_strictness, now);
            act.changed(ctx, msg.meta.correlation_id);
        });
        if let Err(e) = res {
            tracing::error!(error = %e, "regime update not applied");
        }
    }
}

impl Handler<MarketSnapshot> for RiskEngine {
    type Result = ();
    fn handle(&mut self, msg: MarketSnapshot, ctx: &mut Context<Self>) {
        let Some(atr) = msg.indicators.atr_14 else {
            return;
        };
        let res = guarded(self, ctx, |act, ctx| {
            let now = act.now();
            let events = act
                .state
                .record_atr(msg.symbol.as_str(), atr, now, &act.cfg.limits);
            act.publish(events, msg.meta.correlation_id);
            act.changed(ctx, msg.meta.correlation_id);
        });
        if let Err(e) = res {
            tracing::error!(error = %e, "market snapshot not applied");
        }
    }
}
