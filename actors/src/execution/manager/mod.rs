//! The OrderExecutionManager actor: the shell around the I/O-free [`ExecutionCore`]. It places
//! orders, tracks them to a terminal state, keeps the positions they open, protects every position
//! with a stop-loss and a take-profit on the exchange, and reconciles with the exchange after a
//! restart; every decision about that is the core's, and the shell carries out the core's
//! [`Effect`]s (exchange requests in spawned futures, store writes through its ordered writer, bus
//! events, timers) and feeds the answers back.
//!
//! Position tracking lives with the orders rather than in a separate PositionTracker: a position
//! changes only because an order filled, and its protective orders change only because the position
//! did. Keeping both in one owner makes "fill → grow position → resize stop" one step without a
//! message round trip in which a second fill or a restart could interleave, and gives reconciliation a
//! single state to rebuild.
//!
//! Invariants:
//! - every order carries a [`crate::domain::ClientOrderId`]; its record (status `pending`) is in the
//!   store before the request is sent; results are applied by client id, so a repeated answer changes
//!   nothing;
//! - exchange I/O runs in spawned futures (the mailbox keeps flowing); store writes go through one
//!   ordered writer task, so the store never sees an older state after a newer one;
//! - an ambiguous placement (`ExchangeError::Unknown`) is never re-sent: the order goes to `unknown`
//!   and is resolved by querying its client id;
//! - a position without its stop on the exchange raises an urgent `StopLossMissing` alert and the stop is
//!   retried with back-off until it is placed or the position is closed.

mod handlers;
mod io;
mod writer;

pub use super::config::{ExecutionConfig, TrailingStopConfig};
pub use super::core::{position_pnl, SOURCE};
pub use handlers::{
    Activity, FlushWrites, GetActivity, IsReady, PollNow, PriceUpdate, QuietPrefix, SnapshotNow, SyncNow,
};

use super::core::{Effect, ExecutionCore};
use super::paper::PaperExchange;
use crate::bus::Topic;
use crate::clock::SharedClock;
use crate::messages::{ExecutionEvent, PortfolioUpdate, RiskAlert};
use crate::ports::{AuditStore, Exchange, OrderStore, StateStore};
use crate::supervision::{guarded, SupervisedActor, SupervisionHandle};
use actix::prelude::*;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use writer::Writer;

/// What the manager is built from.
#[derive(Clone)]
pub struct ManagerDeps {
    pub config: ExecutionConfig,
    pub exchange: Arc<dyn Exchange>,
    /// The paper exchange in paper mode: persisted after changes, and fed closed candles when `feed_paper`.
    pub paper: Option<PaperExchange>,
    pub feed_paper: bool,
    pub orders: Arc<dyn OrderStore>,
    pub state: Arc<dyn StateStore>,
    pub audit: Arc<dyn AuditStore>,
    pub events: Topic<ExecutionEvent>,
    pub portfolio: Topic<PortfolioUpdate>,
    pub alerts: Topic<RiskAlert>,
    pub clock: SharedClock,
    /// The event export's transactional outbox, when it is on: execution events and valuations
    /// are written in the transaction of the state they describe.
    pub outbox: Option<OutboxSink>,
}

/// Where the manager's events go besides the bus when the event export is on.
#[derive(Clone)]
pub struct OutboxSink {
    /// Write `execution_events` to the outbox (in the transaction of their order or fill).
    pub execution: bool,
    /// Write the valuations (`portfolio_updates`) to the outbox, in order with the fills.
    pub portfolio: bool,
    /// Called after a transaction that wrote events commits (wakes the relay).
    pub committed: Arc<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for OutboxSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxSink")
            .field("execution", &self.execution)
            .field("portfolio", &self.portfolio)
            .finish_non_exhaustive()
    }
}

pub struct OrderExecutionManager {
    sup: SupervisionHandle,
    deps: ManagerDeps,
    writer: Writer,
    core: ExecutionCore,
    feed_timeframe: HashMap<crate::domain::Symbol, crate::domain::Timeframe>,
    /// When each cached price was made (end of its candle).
    price_at: HashMap<crate::domain::Symbol, DateTime<Utc>>,
}

impl OrderExecutionManager {
    pub fn new(sup: SupervisionHandle, deps: ManagerDeps) -> Self {
        let writer = Writer::start(&deps);
        let core = Self::core_of(&deps);
        Self {
            sup,
            deps,
            writer,
            core,
            feed_timeframe: HashMap::new(),
            price_at: HashMap::new(),
        }
    }

    fn core_of(deps: &ManagerDeps) -> ExecutionCore {
        let outbox = deps.outbox.as_ref();
        let paper = deps.paper.clone();
        ExecutionCore::new(deps.config.clone(), deps.clock.clone())
            .with_outbox(outbox.is_some_and(|o| o.execution), outbox.is_some_and(|o| o.portfolio))
            .with_instant_venue(paper.is_some())
            .with_fallback_price(Arc::new(move |s| paper.as_ref().and_then(|p| p.last_price(s))))
    }

    /// Carries out what the core queued, in order, until nothing is left (an effect may queue more).
    fn run_effects(&mut self, ctx: &mut Context<Self>) {
        loop {
            let effects = self.core.take_effects();
            if effects.is_empty() {
                return;
            }
            for e in effects {
                self.run_effect(e, ctx);
            }
        }
    }

    fn run_effect(&mut self, effect: Effect, ctx: &mut Context<Self>) {
        match effect {
            Effect::Write(op) => self.writer.send(op),
            Effect::Publish(event) => {
                self.deps.events.publish(*event);
            }
            Effect::Valuation(update) => {
                self.deps.portfolio.publish(*update);
            }
            Effect::Alert(alert) => {
                self.deps.alerts.publish(*alert);
            }
            Effect::PlaceProtection { rec, kind, replaces } => {
                let pid = rec.view.position_id.unwrap_or_default();
                let fut = self.send_tracked(*rec);
                ctx.spawn(fut.map(move |res, act, ctx| {
                    let _ = guarded(act, ctx, |act, ctx| {
                        act.core.protection_placed(pid, kind, replaces, res);
                        act.run_effects(ctx);
                    });
                }));
            }
            Effect::Cancel { id, target } => self.send_cancel(id, target, ctx),
            Effect::RetryCancel { id, delay } => {
                ctx.run_later(delay, move |act, ctx| {
                    let _ = guarded(act, ctx, |act, ctx| {
                        act.core.request_cancel(id);
                        act.run_effects(ctx);
                    });
                });
            }
            Effect::RetryProtection { pid, delay } => {
                ctx.run_later(delay, move |act, ctx| {
                    let _ = guarded(act, ctx, |act, ctx| {
                        act.core.retry_protection(pid);
                        act.run_effects(ctx);
                    });
                });
            }
            Effect::Close {
                pid,
                correlation_id,
                reason,
            } => {
                let fut = self.close(pid, rust_decimal::Decimal::ONE, reason, correlation_id, ctx);
                ctx.spawn(fut.map(|res, _, _| {
                    if let Err(e) = res {
                        tracing::error!(error = %e, "backup stop close failed");
                    }
                }));
            }
            Effect::RefreshBalances => self.refresh_portfolio(ctx),
            Effect::Poll => self.poll(ctx),
        }
    }
}

impl Actor for OrderExecutionManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if !self.sup.on_started() {
            return;
        }
        let cfg = self.core.cfg().clone();
        ctx.run_interval(Duration::from_millis(cfg.poll_interval_ms.max(10)), |act, ctx| {
            let _ = guarded(act, ctx, |act, ctx| act.poll(ctx));
        });
        ctx.run_interval(Duration::from_secs(cfg.snapshot_interval_secs.max(1)), |act, ctx| {
            let _ = guarded(act, ctx, |act, ctx| {
                act.core.on_tick();
                act.run_effects(ctx);
            });
        });
        ctx.run_interval(Duration::from_secs(cfg.sync_interval_secs.max(1)), |act, ctx| {
            let _ = guarded(act, ctx, |act, ctx| act.sync_with_exchange(ctx));
        });
        ctx.run_interval(
            Duration::from_millis(cfg.protection_check_interval_ms.max(10)),
            |act, ctx| {
                let _ = guarded(act, ctx, |act, ctx| act.check_protection(ctx));
            },
        );
        self.load(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.sup.on_stopped();
    }
}

impl actix::Supervised for OrderExecutionManager {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.sup.on_restarting();
        // Everything is rebuilt from the store and the exchange in `started`.
        self.core.reset();
    }
}

impl SupervisedActor for OrderExecutionManager {
    fn supervision(&self) -> &SupervisionHandle {
        &self.sup
    }
}

crate::supervised_basics!(OrderExecutionManager);
