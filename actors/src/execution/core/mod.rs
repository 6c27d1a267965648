//! The execution core: the orders and positions the manager tracks, and every decision about them
//! (order lifecycle, fills and positions, stop/take-profit protection, trailing stops, the software
//! backup stop, reconciliation with the exchange, valuation), with no actix and no I/O.
//!
//! The core takes what happened (an exchange's view of an order, a placement's answer, a cancel's
//! result, a price, a clock reading) and changes its state; what must happen in the world because of
//! it is queued as an [`Effect`] (a store write, an event, an alert, an order to place or cancel, a
//! retry to schedule). The actor shell ([`super::manager`]) carries the effects out in the order they
//! were queued and feeds the answers back. Store writes keep their order because they are effects
//! too: a fill's order, status, trade and position are one [`Op::Fill`], queued before anything is
//! placed for it.
//!
//! P&L (reference §6.6, "leverage multiplies both"): a position's `size` is the volume traded on the
//! exchange, which already includes the leverage (`size_usd × leverage / price`), so
//! `pnl = (price − entry) × size` for longs and `(entry − price) × size` for shorts equals the reference's
//! `(price − entry) × margin_size × leverage`; `pnl % = (price − entry) / entry × 100 × leverage`.
//! Realised P&L is net of every fee paid (entry fees are booked when the entry fills).

mod orders;
mod positions;
mod protection;
mod trailing;
mod valuation;

#[cfg(test)]
mod tests;

pub use orders::{Loaded, PlaceOutcome, PollPlan};
pub use positions::TradePlan;
pub use protection::MovePlan;
pub use trailing::PriceEffect;

use super::api::{OrderView, PositionView};
use super::config::ExecutionConfig;
use super::store::UNRESOLVED;
use crate::clock::SharedClock;
use crate::domain::{
    ClientOrderId, CorrelationId, OrderPurpose, OrderStatus, OrderType, PositionSide, Priority, Severity, Side, Symbol,
};
use crate::messages::{AlertType, EventMeta, ExecutionEvent, ExecutionEventType, PortfolioUpdate, RiskAlert};
use crate::ports::{
    DecisionRecord, FillWrite, OrderRecord, OrderRef, OutboxEvent, PairInfo, PositionSnapshotRecord, StatusTransition,
    TradeRecord,
};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// The `source` of every event the manager publishes.
pub const SOURCE: &str = "execution_manager";

/// Unrealised P&L and P&L percent of a position at `price` (see the module doc).
pub fn position_pnl(
    side: PositionSide,
    entry: Decimal,
    price: Decimal,
    size: Decimal,
    leverage: u32,
) -> (Decimal, Decimal) {
    if entry <= Decimal::ZERO {
        return (Decimal::ZERO, Decimal::ZERO);
    }
    let diff = match side {
        PositionSide::Long => price - entry,
        PositionSide::Short => entry - price,
    };
    let pct = diff / entry * Decimal::ONE_HUNDRED * Decimal::from(leverage.max(1));
    (diff * size, pct)
}

/// One store write of the manager.
#[derive(Debug)]
pub enum Op {
    Order(Box<OrderRecord>),
    Status(StatusTransition),
    Position(Box<PositionView>),
    Trade(TradeRecord),
    /// One fill's order, status log, trade and position, in one transaction.
    Fill(Box<FillWrite>),
    Snapshot(PositionSnapshotRecord),
    Decision(DecisionRecord),
    /// An event for the export outbox: written with the state write queued just before it (the
    /// one it describes), or on its own when none is.
    Event(Box<OutboxEvent>),
    SavePaper,
    /// Answered once every write queued before it is done.
    Flush,
    /// As `Flush`, and the paper exchange's pending save is done too.
    FlushAll,
}

/// Which protective order of a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protect {
    StopLoss,
    TakeProfit,
}

impl Protect {
    pub fn purpose(self) -> OrderPurpose {
        match self {
            Self::StopLoss => OrderPurpose::StopLoss,
            Self::TakeProfit => OrderPurpose::TakeProfit,
        }
    }
}

/// What the world must do because of a change in the core, in the order queued.
#[derive(Debug)]
pub enum Effect {
    /// A store write, through the ordered writer.
    Write(Op),
    /// An execution event for the bus.
    Publish(Box<ExecutionEvent>),
    /// A valuation of the account for the bus.
    Valuation(Box<PortfolioUpdate>),
    Alert(Box<RiskAlert>),
    /// Send a protective order already tracked by the core (its record is in `orders`, marked
    /// placing); hand the answer to [`ExecutionCore::protection_placed`] for `replaces`.
    PlaceProtection {
        rec: Box<OrderRecord>,
        kind: Protect,
        replaces: Option<Uuid>,
    },
    /// One cancel attempt of a tracked order, followed by a query of it; the answers go to
    /// [`ExecutionCore::on_cancel_result`].
    Cancel {
        id: Uuid,
        target: OrderRef,
    },
    /// Ask [`ExecutionCore::request_cancel`] again after `delay`.
    RetryCancel {
        id: Uuid,
        delay: Duration,
    },
    /// Ask [`ExecutionCore::ensure_protection`] again after `delay`.
    RetryProtection {
        pid: Uuid,
        delay: Duration,
    },
    /// Close the whole position at market (the software backup stop).
    Close {
        pid: Uuid,
        correlation_id: CorrelationId,
        reason: String,
    },
    /// Read the balances and value the account ([`ExecutionCore::valuation`]).
    RefreshBalances,
    /// Poll order status now (the paper exchange fills at once).
    Poll,
}

/// Whether the placement outcome of `rec` is still unknown (`unknown`, or an `error` recorded as
/// unresolved by an older version).
pub fn is_unknown(rec: &OrderRecord) -> bool {
    rec.view.status == OrderStatus::Unknown
        || (rec.view.status == OrderStatus::Error
            && rec.error_message.as_deref().is_some_and(|m| m.starts_with(UNRESOLVED)))
}

pub fn is_protective(rec: &OrderRecord) -> bool {
    rec.view.purpose.is_protective()
}

/// A price known outside the core (the paper exchange's last trade), asked when the core has none.
pub type PriceLookup = Arc<dyn Fn(&Symbol) -> Option<Decimal> + Send + Sync>;

/// The manager's state and decisions (see the module doc).
pub struct ExecutionCore {
    pub(crate) cfg: ExecutionConfig,
    clock: SharedClock,
    /// Write execution events / valuations to the export outbox too.
    outbox_execution: bool,
    outbox_portfolio: bool,
    /// Prices the core does not hold itself (paper mode: the simulated market's last trade).
    fallback_price: PriceLookup,
    /// The venue answers at once (paper): poll right after a placement.
    pub(crate) instant_venue: bool,
    pub(crate) ready: bool,
    pub(crate) reconciled: bool,
    pub(crate) polling: bool,
    /// Drained for shutdown: nothing more is sent to the exchange (a second process may take over).
    pub(crate) drained: bool,
    /// Orders still tracked (non-terminal, or `error` being reconciled).
    pub(crate) orders: HashMap<Uuid, OrderRecord>,
    pub(crate) by_client: HashMap<ClientOrderId, Uuid>,
    /// Orders whose placement request is in flight (not polled).
    pub(crate) placing: HashSet<Uuid>,
    pub(crate) cancel_requested: HashSet<Uuid>,
    missing: HashMap<Uuid, u32>,
    /// Open and closing positions.
    pub(crate) positions: HashMap<Uuid, PositionView>,
    pub(crate) prices: HashMap<Symbol, Decimal>,
    pub(crate) pairs: HashMap<Symbol, PairInfo>,
    pub(crate) protect_inflight: HashSet<(Uuid, Protect)>,
    protect_failures: HashMap<(Uuid, Protect), u32>,
    pub(crate) protect_retry_scheduled: HashSet<Uuid>,
    /// Trailing stop: best price seen after activation, per position.
    trail_extreme: HashMap<Uuid, Decimal>,
    /// The valuation's peak equity (published with every valuation).
    peak_equity: Decimal,
    /// When orders of unknown outcome were last searched by client id.
    last_search: Option<DateTime<Utc>>,
    /// Acknowledged orders the exchange still did not show after the visibility window (alerted once).
    missing_alerted: HashSet<Uuid>,
    /// Cancels on their way to the exchange (one at a time per order; retried until confirmed).
    pub(crate) cancel_inflight: HashSet<Uuid>,
    cancel_attempts: HashMap<Uuid, u32>,
    /// Protective orders of unknown outcome that a replacement took over: cancelled if they appear.
    pub(crate) superseded: HashSet<Uuid>,
    /// Since when (monotonic time) each open position has had no working stop on the exchange.
    unprotected_since: HashMap<Uuid, Instant>,
    /// Positions whose unprotected time was alerted (once per episode).
    unprotected_alerted: HashSet<Uuid>,
    /// The writes of the fill being applied, committed as one transaction.
    batch: Option<FillWrite>,
    /// Closed exchange orders already checked against the store by the exchange sync.
    pub(crate) synced_closed: HashSet<String>,
    pub(crate) syncs: u64,
    effects: Vec<Effect>,
}

impl ExecutionCore {
    pub fn new(cfg: ExecutionConfig, clock: SharedClock) -> Self {
        Self {
            cfg,
            clock,
            outbox_execution: false,
            outbox_portfolio: false,
            fallback_price: Arc::new(|_| None),
            instant_venue: false,
            ready: false,
            reconciled: false,
            polling: false,
            drained: false,
            orders: HashMap::new(),
            by_client: HashMap::new(),
            placing: HashSet::new(),
            cancel_requested: HashSet::new(),
            missing: HashMap::new(),
            positions: HashMap::new(),
            prices: HashMap::new(),
            pairs: HashMap::new(),
            protect_inflight: HashSet::new(),
            protect_failures: HashMap::new(),
            protect_retry_scheduled: HashSet::new(),
            trail_extreme: HashMap::new(),
            peak_equity: Decimal::ZERO,
            last_search: None,
            missing_alerted: HashSet::new(),
            cancel_inflight: HashSet::new(),
            cancel_attempts: HashMap::new(),
            superseded: HashSet::new(),
            unprotected_since: HashMap::new(),
            unprotected_alerted: HashSet::new(),
            batch: None,
            synced_closed: HashSet::new(),
            syncs: 0,
            effects: Vec::new(),
        }
    }

    /// Events and valuations also go to the export outbox, in the transaction of their state.
    pub fn with_outbox(mut self, execution: bool, portfolio: bool) -> Self {
        self.outbox_execution = execution;
        self.outbox_portfolio = portfolio;
        self
    }

    /// Where to read a price the core has not seen (paper mode: the simulated market).
    pub fn with_fallback_price(mut self, lookup: PriceLookup) -> Self {
        self.fallback_price = lookup;
        self
    }

    /// The venue fills at once (paper mode): a placement is followed by a poll.
    pub fn with_instant_venue(mut self, instant: bool) -> Self {
        self.instant_venue = instant;
        self
    }

    /// The effects queued since the last call, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    pub fn cfg(&self) -> &ExecutionConfig {
        &self.cfg
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn positions(&self) -> impl Iterator<Item = &PositionView> {
        self.positions.values()
    }

    pub fn orders(&self) -> impl Iterator<Item = &OrderRecord> {
        self.orders.values()
    }

    pub fn set_price(&mut self, symbol: Symbol, price: Decimal) {
        self.prices.insert(symbol, price);
    }

    // -------------------------------------------------------------- effects

    fn effect(&mut self, e: Effect) {
        self.effects.push(e);
    }

    /// A store write: part of the fill being applied (one transaction), or on its own.
    fn write(&mut self, op: Op) {
        match (&mut self.batch, op) {
            (Some(b), Op::Order(o)) => b.orders.push(*o),
            (Some(b), Op::Status(t)) => b.statuses.push(t),
            (Some(b), Op::Position(p)) => b.positions.push(*p),
            (Some(b), Op::Trade(t)) => b.trades.push(t),
            (_, op) => self.effect(Effect::Write(op)),
        }
    }

    /// A store write on its own, never part of a fill's transaction.
    fn send(&mut self, op: Op) {
        self.effect(Effect::Write(op));
    }

    /// Sends the fill collected so far as one transaction (before anything is placed for it).
    fn commit_fill(&mut self) {
        if let Some(b) = self.batch.take() {
            if !b.is_empty() {
                self.send(Op::Fill(Box::new(b)));
            }
        }
    }

    fn publish(
        &mut self,
        event_type: ExecutionEventType,
        rec: &OrderRecord,
        size: Decimal,
        fill_price: Option<Decimal>,
        fee: Decimal,
        realized_pnl: Option<Decimal>,
    ) {
        let priority = match event_type {
            ExecutionEventType::PositionClosed | ExecutionEventType::OrderError => Priority::High,
            _ => Priority::Normal,
        };
        let event = ExecutionEvent {
            meta: EventMeta::caused_by(SOURCE, self.now(), rec.view.correlation_id).with_priority(priority),
            event_type,
            order_id: rec.view.id.to_string(),
            client_order_id: Some(rec.view.client_order_id.clone()),
            symbol: rec.view.symbol.clone(),
            side: rec.view.side,
            status: rec.view.status,
            size,
            fill_price,
            fee,
            realized_pnl,
            position_id: rec.view.position_id.map(|p| p.to_string()),
        };
        if self.outbox_execution {
            let symbol = Some(event.symbol.to_string());
            self.outbox(OutboxEvent::of(&event, symbol));
        }
        self.effect(Effect::Publish(Box::new(event)));
    }

    /// An event for the export outbox: part of the fill being applied (its transaction), or
    /// queued behind the state write it describes.
    fn outbox(&mut self, event: Result<OutboxEvent, serde_json::Error>) {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "event not serialisable for the outbox");
                return;
            }
        };
        match &mut self.batch {
            Some(b) => b.events.push(event),
            None => self.send(Op::Event(Box::new(event))),
        }
    }

    fn decision(&mut self, correlation_id: CorrelationId, stage: &str, symbol: &Symbol, detail: serde_json::Value) {
        let record = DecisionRecord {
            correlation_id,
            timestamp: self.now(),
            stage: stage.to_owned(),
            symbol: Some(symbol.to_string()),
            detail,
        };
        self.send(Op::Decision(record));
    }

    pub(crate) fn alert(&mut self, alert_type: AlertType, severity: Severity, symbol: Option<Symbol>, message: String) {
        tracing::error!(?alert_type, %severity, message = %message, "execution alert");
        let priority = if alert_type == AlertType::StopLossMissing {
            Priority::Urgent
        } else {
            Priority::High
        };
        let alert = RiskAlert {
            meta: EventMeta::new(SOURCE, self.now()).with_priority(priority),
            alert_type,
            severity,
            message,
            action_required: None,
            breach: None,
            symbol,
        };
        self.effect(Effect::Alert(Box::new(alert)));
    }

    // -------------------------------------------------------------- order records

    #[allow(clippy::too_many_arguments, reason = "one order's fields")]
    fn new_record(
        &self,
        correlation_id: CorrelationId,
        position_id: Option<Uuid>,
        symbol: &Symbol,
        side: Side,
        order_type: OrderType,
        purpose: OrderPurpose,
        volume: Decimal,
        price: Option<Decimal>,
        price2: Option<Decimal>,
        leverage: u32,
        reduce_only: bool,
        linked_order_id: Option<Uuid>,
    ) -> OrderRecord {
        let now = self.now();
        OrderRecord {
            view: OrderView {
                id: Uuid::new_v4(),
                client_order_id: ClientOrderId::random(),
                exchange_order_id: None,
                correlation_id,
                position_id,
                symbol: symbol.clone(),
                side,
                order_type,
                purpose,
                status: OrderStatus::Pending,
                volume,
                filled_volume: Decimal::ZERO,
                price,
                avg_fill_price: None,
                fee: Decimal::ZERO,
                created_at: now,
                updated_at: now,
            },
            price2,
            leverage: leverage.max(1),
            reduce_only,
            linked_order_id,
            error_message: None,
            stop_loss: None,
            take_profit: None,
        }
    }

    /// Starts tracking a new order whose placement is about to be sent (it is not polled until
    /// [`Self::on_placed`] has its answer).
    pub fn track(&mut self, rec: &OrderRecord) {
        let id = rec.view.id;
        self.by_client.insert(rec.view.client_order_id.clone(), id);
        self.orders.insert(id, rec.clone());
        self.placing.insert(id);
    }

    fn forget(&mut self, id: Uuid) {
        if let Some(rec) = self.orders.remove(&id) {
            self.by_client.remove(&rec.view.client_order_id);
        }
        self.cancel_requested.remove(&id);
        self.missing.remove(&id);
        self.missing_alerted.remove(&id);
        self.superseded.remove(&id);
        self.cancel_attempts.remove(&id);
    }

    /// Logs and persists a status change the lifecycle table allows; returns whether it happened.
    fn transition(&mut self, rec: &mut OrderRecord, to: OrderStatus, detail: serde_json::Value) -> bool {
        let from = rec.view.status;
        let allowed = from.can_transition_to(to) || (from == to && to == OrderStatus::PartiallyFilled);
        if !allowed {
            if from != to {
                tracing::warn!(order = %rec.view.client_order_id, %from, %to, "ignored invalid order transition");
            }
            return false;
        }
        let now = self.now();
        rec.view.status = to;
        rec.view.updated_at = now;
        self.write(Op::Order(Box::new(rec.clone())));
        self.write(Op::Status(StatusTransition {
            order_id: rec.view.id,
            from: Some(from),
            to,
            filled_volume: rec.view.filled_volume,
            detail,
            at: now,
        }));
        if let Some(r) = self.orders.get_mut(&rec.view.id) {
            *r = rec.clone();
        }
        true
    }

    /// Back-off of the `n`th retry (1-based): `protection_retry_ms` doubling up to the maximum.
    fn backoff(&self, n: u32) -> Duration {
        let base = self.cfg.protection_retry_ms.max(1);
        let max = self.cfg.protection_retry_max_ms.max(base);
        Duration::from_millis(base.saturating_mul(1u64 << n.saturating_sub(1).min(16)).min(max))
    }

    /// Forgets everything (a restart rebuilds the state from the store and the exchange).
    pub fn reset(&mut self) {
        self.ready = false;
        self.reconciled = false;
        self.polling = false;
        self.orders.clear();
        self.by_client.clear();
        self.placing.clear();
        self.cancel_requested.clear();
        self.missing.clear();
        self.positions.clear();
        self.protect_inflight.clear();
        self.protect_failures.clear();
        self.protect_retry_scheduled.clear();
        self.last_search = None;
        self.missing_alerted.clear();
        self.cancel_inflight.clear();
        self.cancel_attempts.clear();
        self.superseded.clear();
        self.unprotected_since.clear();
        self.unprotected_alerted.clear();
        self.batch = None;
        self.synced_closed.clear();
        self.effects.clear();
    }
}
