//! The OrderExecutionManager actor: places orders, tracks them to a terminal state, keeps the
//! positions they open, protects every position with a stop-loss and a take-profit on the exchange,
//! and reconciles with the exchange after a restart.
//!
//! Position tracking lives inside this actor rather than in a separate PositionTracker: a position
//! changes only because an order filled, and its protective orders change only because the position
//! did. Keeping both in one owner makes "fill → grow position → resize stop" one step without a
//! message round trip in which a second fill or a restart could interleave, and gives reconciliation a
//! single state to rebuild.
//!
//! Invariants:
//! - every order carries a [`ClientOrderId`]; its record (status `pending`) is in the store before the
//!   request is sent; results are applied by client id, so a repeated answer changes nothing;
//! - exchange I/O runs in spawned futures (the mailbox keeps flowing); store writes go through one
//!   ordered writer task, so the store never sees an older state after a newer one;
//! - an ambiguous placement (`ExchangeError::Unknown`) is never re-sent: the order goes to `error` and is
//!   resolved by querying its client id;
//! - a position without its stop on the exchange raises an urgent `StopLossMissing` alert and the stop is
//!   retried with back-off until it is placed or the position is closed.
//!
//! P&L (reference §6.6, "leverage multiplies both"): a position's `size` is the volume traded on the
//! exchange, which already includes the leverage (`size_usd × leverage / price`), so
//! `pnl = (price − entry) × size` for longs and `(entry − price) × size` for shorts equals the reference's
//! `(price − entry) × margin_size × leverage`; `pnl % = (price − entry) / entry × 100 × leverage`.
//! Realised P&L is net of every fee paid (entry fees are booked when the entry fills).

use super::api::{
    CancelOrder, CloseAllPositions, ClosePosition, ExecuteTrade, ExecutionError, ExecutionResult, GetOrders,
    GetPositions, ModifyPosition, OrderView, PositionView,
};
use super::paper::PaperExchange;
use super::store::UNRESOLVED;
use crate::bus::Topic;
use crate::clock::SharedClock;
use crate::domain::{
    ClientOrderId, CorrelationId, OrderStatus, OrderType, PositionSide, PositionStatus, Priority, Severity, Side,
    Symbol,
};
use crate::messages::{
    AlertType, CandleClosed, EventMeta, ExecutionEvent, ExecutionEventType, PortfolioUpdate, RiskAlert,
};
use crate::ports::{
    AuditStore, DecisionRecord, Exchange, ExchangeError, ExchangeOrder, FillWrite, OrderAck, OrderRecord, OrderRef,
    OrderRequest, OrderStore, OutboxEvent, PairInfo, PositionSnapshotRecord, StateStore, StatusTransition, StoreError,
    TradeRecord,
};
use crate::supervision::{guarded, Drain, SupervisedActor, SupervisionHandle};
use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures::channel::{mpsc, oneshot};
use futures::StreamExt;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The `source` of every event the manager publishes.
pub const SOURCE: &str = "execution_manager";

// ------------------------------------------------------------------ configuration

/// Trailing stop (reference §6.1: disabled, activation 1.0 %, distance 1.5 %).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrailingStopConfig {
    pub enabled: bool,
    pub activation_pct: Decimal,
    pub distance_pct: Decimal,
}

impl Default for TrailingStopConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            activation_pct: Decimal::ONE,
            distance_pct: Decimal::new(15, 1),
        }
    }
}

/// Order defaults, position limits, tracking intervals and contingent orders (reference §6.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutionConfig {
    pub default_order_type: OrderType,
    /// Bound of a market order, sent as a limit this far through the reference price.
    pub market_order_slippage_pct: Decimal,
    /// Retries of a placement the exchange answered as retryable (nothing placed).
    pub max_retry_count: u32,
    pub retry_delay_ms: u64,
    pub max_positions_per_symbol: usize,
    pub max_positions_total: usize,
    /// Order status poll.
    pub poll_interval_ms: u64,
    /// Position snapshots, trailing stop and portfolio valuation.
    pub snapshot_interval_secs: u64,
    pub auto_stop_loss: bool,
    pub auto_take_profit: bool,
    /// `stop-loss` or `stop-loss-limit`.
    pub stop_loss_type: OrderType,
    /// `limit` or `take-profit`.
    pub take_profit_type: OrderType,
    /// First back-off of a failed protective placement; doubles up to `protection_retry_max_ms`.
    pub protection_retry_ms: u64,
    pub protection_retry_max_ms: u64,
    /// Searches in which an order of unknown outcome must be missing (after the visibility window)
    /// before it counts as never placed.
    pub reconcile_attempts: u32,
    /// How long an order may stay invisible on the exchange after it was sent (Kraken: up to about
    /// a minute under load). An order of unknown outcome is never given up before.
    pub visibility_window_secs: u64,
    /// Shortest time between two searches by client id (one OpenOrders and one ClosedOrders call
    /// for all orders of unknown outcome): keeps the searches within the REST budget.
    pub search_interval_ms: u64,
    /// A position without a working stop on the exchange for longer raises a critical alert and
    /// arms the software backup stop.
    pub max_unprotected_secs: u64,
    /// How often (wall clock) the protection watchdog runs; it also runs on every candle.
    pub protection_check_interval_ms: u64,
    /// How often (wall clock) open orders and positions are synchronised with the exchange.
    pub sync_interval_secs: u64,
    /// Whether the paper exchange's account is saved to the state store (a backtest's is not:
    /// it ends with the run).
    pub persist_paper: bool,
    pub trailing_stop: TrailingStopConfig,
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        Self {
            default_order_type: OrderType::Limit,
            market_order_slippage_pct: Decimal::new(5, 1),
            max_retry_count: 3,
            retry_delay_ms: 5000,
            max_positions_per_symbol: 2,
            max_positions_total: 6,
            poll_interval_ms: 5000,
            snapshot_interval_secs: 60,
            auto_stop_loss: true,
            auto_take_profit: true,
            stop_loss_type: OrderType::StopLoss,
            take_profit_type: OrderType::Limit,
            protection_retry_ms: 1000,
            protection_retry_max_ms: 60_000,
            reconcile_attempts: 3,
            visibility_window_secs: 90,
            search_interval_ms: 10_000,
            max_unprotected_secs: 10,
            protection_check_interval_ms: 1000,
            sync_interval_secs: 30,
            persist_paper: true,
            trailing_stop: TrailingStopConfig::default(),
        }
    }
}

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

// ------------------------------------------------------------------ P&L

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

// ------------------------------------------------------------------ store writer

enum Op {
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

struct Write {
    op: Op,
    ack: Option<oneshot::Sender<Result<(), StoreError>>>,
}

/// Work for the paper exchange's saver.
enum PaperWrite {
    Save,
    /// Answered once every save queued before it is done.
    Flush(oneshot::Sender<()>),
}

/// One ordered writer: every store write of the manager, in the order the actor made it.
///
/// The paper exchange is the venue: like Kraken, it must never be behind the order store after
/// a crash (an order the store knows by its exchange id that the restored exchange never saw
/// leaves a position without its stop, and balances that miss a fill refuse the next orders).
/// So before an order, status, position, trade or fill write, the writer saves the paper
/// exchange's snapshot if it changed since its last save ([`PaperSaver`]); the exchange may be
/// ahead of the store (the manager reconciles that at start, as with Kraken), never behind.
/// Changes no store write follows (prices, resting orders untouched) go to a throttled saver of
/// their own. The snapshot is serialised on a blocking thread so the actors sharing this
/// thread keep running. A `Flush` waits for both.
#[derive(Clone)]
struct Writer {
    tx: mpsc::UnboundedSender<Write>,
    paper_tx: Option<mpsc::UnboundedSender<PaperWrite>>,
    /// A paper save is queued and not yet started: a burst of changes is saved once.
    save_queued: Arc<std::sync::atomic::AtomicBool>,
}

const STORE_ATTEMPTS: u32 = 3;

/// A state write as one transaction together with the events that describe it.
fn with_events(op: Op, events: Vec<OutboxEvent>) -> FillWrite {
    let mut fill = FillWrite::default();
    match op {
        Op::Order(o) => fill.orders.push(*o),
        Op::Status(t) => fill.statuses.push(t),
        Op::Position(p) => fill.positions.push(*p),
        Op::Trade(t) => fill.trades.push(t),
        Op::Fill(f) => fill = *f,
        Op::Event(e) => fill.events.push(*e),
        Op::Snapshot(_) | Op::Decision(_) | Op::SavePaper | Op::Flush | Op::FlushAll => {}
    }
    fill.events.extend(events);
    fill
}
/// Shortest time between two paper exchange saves. A crash loses at most this much of the paper
/// exchange's changes (the manager reconciles against what was saved); a graceful stop saves all.
const PAPER_SAVE_INTERVAL: Duration = Duration::from_millis(500);

/// Serialises the paper exchange's snapshot on a blocking thread and saves it, retrying the store.
/// Returns whether it was saved.
async fn save_paper(paper: &PaperExchange, state: &dyn StateStore) -> bool {
    let p = paper.clone();
    let value = match tokio::task::spawn_blocking(move || serde_json::to_value(p.snapshot())).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "paper exchange snapshot not serialisable; save lost");
            return false;
        }
        Err(e) => {
            tracing::error!(error = %e, "paper exchange snapshot task failed; save lost");
            return false;
        }
    };
    for attempt in 1..=STORE_ATTEMPTS {
        match state
            .save_state(crate::execution::paper::STATE_KEY, value.clone())
            .await
        {
            Ok(()) => return true,
            Err(e) if attempt < STORE_ATTEMPTS => {
                tracing::warn!(error = %e, attempt, "paper exchange save failed; retrying");
                actix::clock::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            Err(e) => tracing::error!(error = %e, "paper exchange save lost"),
        }
    }
    false
}

/// Saves the paper exchange's snapshot when it changed since the last save. One lock orders the
/// saves of the writer and of the throttled saver, so an older snapshot never overwrites a newer
/// one.
#[derive(Clone)]
struct PaperSaver {
    paper: PaperExchange,
    state: Arc<dyn StateStore>,
    /// The revision the stored snapshot holds (at least).
    saved: Arc<futures::lock::Mutex<Option<u64>>>,
}

impl PaperSaver {
    async fn save_if_changed(&self) {
        let mut saved = self.saved.lock().await;
        // Read before the snapshot is taken: the snapshot holds at least this revision.
        let revision = self.paper.revision();
        if *saved == Some(revision) {
            return;
        }
        if save_paper(&self.paper, self.state.as_ref()).await {
            *saved = Some(revision);
        }
    }
}

impl Writer {
    fn start(deps: &ManagerDeps) -> Self {
        let (tx, mut rx) = mpsc::unbounded::<Write>();
        let orders = deps.orders.clone();
        let audit = deps.audit.clone();
        let state = deps.state.clone();
        let saver = deps
            .paper
            .clone()
            .filter(|_| deps.config.persist_paper)
            .map(|paper| PaperSaver {
                paper,
                state: state.clone(),
                saved: Arc::default(),
            });
        let save_queued = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let paper_tx = saver.clone().map(|saver| {
            let (ptx, mut prx) = mpsc::unbounded::<PaperWrite>();
            let queued = save_queued.clone();
            actix::spawn(async move {
                // At most one save per PAPER_SAVE_INTERVAL: a burst of changes is saved once, and
                // a flush saves what is pending at once.
                let mut pending = false;
                let mut last = std::time::Instant::now() - PAPER_SAVE_INTERVAL;
                let save = |last: &mut std::time::Instant| {
                    // Changes made from here on queue a new save.
                    queued.store(false, std::sync::atomic::Ordering::SeqCst);
                    *last = std::time::Instant::now();
                    let saver = saver.clone();
                    async move { saver.save_if_changed().await }
                };
                loop {
                    let next = if pending {
                        let wait = (last + PAPER_SAVE_INTERVAL).saturating_duration_since(std::time::Instant::now());
                        match actix::clock::timeout(wait, prx.next()).await {
                            Ok(next) => next,
                            Err(_) => {
                                pending = false;
                                save(&mut last).await;
                                continue;
                            }
                        }
                    } else {
                        prx.next().await
                    };
                    match next {
                        Some(PaperWrite::Save) => pending = true,
                        Some(PaperWrite::Flush(ack)) => {
                            if pending {
                                pending = false;
                                save(&mut last).await;
                            }
                            let _ = ack.send(());
                        }
                        None => {
                            if pending {
                                save(&mut last).await;
                            }
                            break;
                        }
                    }
                }
            });
            ptx
        });
        let paper_flush = paper_tx.clone();
        let outbox = deps.outbox.clone();
        actix::spawn(async move {
            // A write taken from the queue while looking for the events that follow a state write.
            let mut held: Option<Write> = None;
            loop {
                let w = match held.take() {
                    Some(w) => w,
                    None => match rx.next().await {
                        Some(w) => w,
                        None => break,
                    },
                };
                if let (Op::FlushAll, Some(ptx)) = (&w.op, &paper_flush) {
                    let (ack, done) = oneshot::channel();
                    if ptx.unbounded_send(PaperWrite::Flush(ack)).is_ok() {
                        let _ = done.await;
                    }
                }
                // The venue is saved before the store learns what happened on it. A record still
                // `pending` (written before it is sent) tells nothing the venue knows.
                let learns = match &w.op {
                    Op::Order(o) => o.view.status != OrderStatus::Pending,
                    Op::Status(t) => t.to != OrderStatus::Pending,
                    Op::Position(_) | Op::Trade(_) | Op::Fill(_) => true,
                    _ => false,
                };
                if let (true, Some(saver)) = (learns, &saver) {
                    saver.save_if_changed().await;
                }
                // The events published right after a state write (queued behind it by the same
                // handler) describe it: they go into its transaction.
                let mut events = Vec::new();
                let mut w = w;
                if matches!(
                    w.op,
                    Op::Order(_) | Op::Status(_) | Op::Position(_) | Op::Trade(_) | Op::Fill(_) | Op::Event(_)
                ) {
                    loop {
                        match rx.try_recv() {
                            Ok(Write { op: Op::Event(e), .. }) => events.push(*e),
                            Ok(next) => {
                                held = Some(next);
                                break;
                            }
                            Err(_) => break, // empty, or closed
                        }
                    }
                }
                if !events.is_empty() || matches!(w.op, Op::Event(_)) {
                    w.op = Op::Fill(Box::new(with_events(w.op, events)));
                }
                let wrote_events = matches!(&w.op, Op::Fill(f) if !f.events.is_empty());
                let mut attempt = 0;
                let res = loop {
                    let r = match &w.op {
                        Op::Order(o) => orders.upsert_order((**o).clone()).await,
                        Op::Status(t) => orders.append_status(t.clone()).await,
                        Op::Position(p) => orders.upsert_position((**p).clone()).await,
                        Op::Trade(t) => orders.insert_trade(t.clone()).await,
                        Op::Fill(f) => orders.record_fill((**f).clone()).await,
                        Op::Snapshot(s) => orders.insert_snapshot(s.clone()).await,
                        Op::Decision(d) => audit.record_decision(d.clone()).await,
                        Op::Event(_) | Op::SavePaper | Op::Flush | Op::FlushAll => Ok(()),
                    };
                    attempt += 1;
                    match r {
                        Err(e) if attempt < STORE_ATTEMPTS => {
                            tracing::warn!(error = %e, attempt, "execution store write failed; retrying");
                            actix::clock::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                        }
                        other => break other,
                    }
                };
                if let Err(e) = &res {
                    tracing::error!(error = %e, "execution store write lost");
                }
                if let (true, Ok(()), Some(sink)) = (wrote_events, &res, &outbox) {
                    (sink.committed)();
                }
                if let Some(ack) = w.ack {
                    let _ = ack.send(res);
                }
            }
        });
        Self {
            tx,
            paper_tx,
            save_queued,
        }
    }

    fn send(&self, op: Op) {
        if matches!(op, Op::SavePaper) {
            let Some(ptx) = &self.paper_tx else { return };
            if self.save_queued.swap(true, std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            if ptx.unbounded_send(PaperWrite::Save).is_err() {
                tracing::error!("paper exchange saver stopped; save lost");
            }
            return;
        }
        if self.tx.unbounded_send(Write { op, ack: None }).is_err() {
            tracing::error!("execution store writer stopped; write lost");
        }
    }

    fn acked(&self, op: Op) -> impl std::future::Future<Output = Result<(), StoreError>> + 'static {
        let (ack, rx) = oneshot::channel();
        let sent = self.tx.unbounded_send(Write { op, ack: Some(ack) }).is_ok();
        async move {
            if !sent {
                return Err(StoreError::Unavailable("execution store writer stopped".into()));
            }
            rx.await
                .unwrap_or_else(|_| Err(StoreError::Unavailable("execution store writer stopped".into())))
        }
    }
}

// ------------------------------------------------------------------ actor

/// What a new last price does to one position.
enum PriceEffect {
    None,
    /// The stop is breached while no stop order works on the exchange.
    Breached,
    /// The trailing stop is active: its best price, and the new stop if it improves.
    Trail {
        best: Decimal,
        stop: Option<Decimal>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Protect {
    StopLoss,
    TakeProfit,
}

impl Protect {
    fn purpose(self) -> &'static str {
        match self {
            Self::StopLoss => "stop_loss",
            Self::TakeProfit => "take_profit",
        }
    }
}

/// Whether the placement outcome of `rec` is still unknown (`unknown`, or an `error` recorded as
/// unresolved by an older version).
fn is_unknown(rec: &OrderRecord) -> bool {
    rec.view.status == OrderStatus::Unknown
        || (rec.view.status == OrderStatus::Error
            && rec.error_message.as_deref().is_some_and(|m| m.starts_with(UNRESOLVED)))
}

fn is_protective(rec: &OrderRecord) -> bool {
    matches!(rec.view.purpose.as_str(), "stop_loss" | "take_profit")
}

/// What the placement future hands back to the actor.
type PlaceOutcome = Result<Result<OrderAck, ExchangeError>, StoreError>;

pub struct OrderExecutionManager {
    sup: SupervisionHandle,
    deps: ManagerDeps,
    writer: Writer,
    ready: bool,
    reconciled: bool,
    polling: bool,
    /// Drained for shutdown: nothing more is sent to the exchange (a second process may take over).
    drained: bool,
    /// Orders still tracked (non-terminal, or `error` being reconciled).
    orders: HashMap<Uuid, OrderRecord>,
    by_client: HashMap<ClientOrderId, Uuid>,
    /// Orders whose placement request is in flight (not polled).
    placing: HashSet<Uuid>,
    cancel_requested: HashSet<Uuid>,
    missing: HashMap<Uuid, u32>,
    /// Open and closing positions.
    positions: HashMap<Uuid, PositionView>,
    prices: HashMap<Symbol, Decimal>,
    pairs: HashMap<Symbol, PairInfo>,
    protect_inflight: HashSet<(Uuid, Protect)>,
    protect_failures: HashMap<(Uuid, Protect), u32>,
    protect_retry_scheduled: HashSet<Uuid>,
    /// Trailing stop: best price seen after activation, per position.
    trail_extreme: HashMap<Uuid, Decimal>,
    peak_equity: Decimal,
    feed_timeframe: HashMap<Symbol, crate::domain::Timeframe>,
    /// When each cached price was made (end of its candle).
    price_at: HashMap<Symbol, DateTime<Utc>>,
    /// When orders of unknown outcome were last searched by client id.
    last_search: Option<DateTime<Utc>>,
    /// Acknowledged orders the exchange still did not show after the visibility window (alerted once).
    missing_alerted: HashSet<Uuid>,
    /// Cancels on their way to the exchange (one at a time per order; retried until confirmed).
    cancel_inflight: HashSet<Uuid>,
    cancel_attempts: HashMap<Uuid, u32>,
    /// Protective orders of unknown outcome that a replacement took over: cancelled if they appear.
    superseded: HashSet<Uuid>,
    /// Since when (wall time) each open position has had no working stop on the exchange.
    unprotected_since: HashMap<Uuid, actix::clock::Instant>,
    /// Positions whose unprotected time was alerted (once per episode).
    unprotected_alerted: HashSet<Uuid>,
    /// The writes of the fill being applied, committed as one transaction.
    batch: Option<FillWrite>,
    /// Closed exchange orders already checked against the store by `sync_with_exchange`.
    synced_closed: HashSet<String>,
    syncs: u64,
}

impl OrderExecutionManager {
    pub fn new(sup: SupervisionHandle, deps: ManagerDeps) -> Self {
        let writer = Writer::start(&deps);
        Self {
            sup,
            deps,
            writer,
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
            feed_timeframe: HashMap::new(),
            price_at: HashMap::new(),
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
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.deps.clock.now()
    }

    /// A store write: part of the fill being applied (one transaction), or on its own.
    fn write(&mut self, op: Op) {
        match (&mut self.batch, op) {
            (Some(b), Op::Order(o)) => b.orders.push(*o),
            (Some(b), Op::Status(t)) => b.statuses.push(t),
            (Some(b), Op::Position(p)) => b.positions.push(*p),
            (Some(b), Op::Trade(t)) => b.trades.push(t),
            (_, op) => self.writer.send(op),
        }
    }

    /// Sends the fill collected so far as one transaction (before anything is placed for it).
    fn commit_fill(&mut self) {
        if let Some(b) = self.batch.take() {
            if !b.is_empty() {
                self.writer.send(Op::Fill(Box::new(b)));
            }
        }
    }

    fn cfg(&self) -> &ExecutionConfig {
        &self.deps.config
    }

    // -------------------------------------------------------------- loading and reconciliation

    fn load(&mut self, ctx: &mut Context<Self>) {
        let flush = self.writer.acked(Op::Flush);
        let exchange = self.deps.exchange.clone();
        let store = self.deps.orders.clone();
        let fut = async move {
            let _ = flush.await;
            let pairs = exchange.pairs().await;
            let orders = store.load_active_orders().await;
            let positions = store.load_open_positions().await;
            (pairs, orders, positions)
        };
        ctx.spawn(fut.into_actor(self).map(|(pairs, orders, positions), act, ctx| {
            let _ = guarded(act, ctx, |act, ctx| act.on_loaded(pairs, orders, positions, ctx));
        }));
    }

    fn on_loaded(
        &mut self,
        pairs: Result<Vec<PairInfo>, ExchangeError>,
        orders: Result<Vec<OrderRecord>, StoreError>,
        positions: Result<Vec<PositionView>, StoreError>,
        ctx: &mut Context<Self>,
    ) {
        if self.drained {
            return;
        }
        let (pairs, orders, positions) = match (pairs, orders, positions) {
            (Ok(a), Ok(b), Ok(c)) => (a, b, c),
            (a, b, c) => {
                let why = [
                    a.err().map(|e| e.to_string()),
                    b.err().map(|e| e.to_string()),
                    c.err().map(|e| e.to_string()),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; ");
                tracing::error!(reason = %why, "execution manager could not load its state; retrying in 5 s");
                self.alert(
                    AlertType::Reconcile,
                    Severity::High,
                    None,
                    format!("execution state not loaded: {why}"),
                );
                ctx.run_later(Duration::from_secs(5), |act, ctx| act.load(ctx));
                return;
            }
        };
        self.pairs = pairs.into_iter().map(|p| (p.symbol.clone(), p)).collect();
        for o in orders {
            self.by_client.insert(o.view.client_order_id.clone(), o.view.id);
            self.orders.insert(o.view.id, o.clone());
            if o.view.status == OrderStatus::Pending {
                // Recorded before sending, then cut short by a restart: it may or may not be on the
                // exchange. Never taken for a working order: searched by client id like any unknown.
                let mut rec = o;
                rec.error_message = Some(format!("{UNRESOLVED} placement cut short by a restart"));
                self.transition(
                    &mut rec,
                    OrderStatus::Unknown,
                    serde_json::json!({"reason": "pending at restart; outcome unknown"}),
                );
            }
        }
        for p in positions {
            self.positions.insert(p.id, p);
        }
        tracing::info!(
            orders = self.orders.len(),
            positions = self.positions.len(),
            "execution state loaded; reconciling with the exchange"
        );
        self.ready = true;
        self.reconciled = false;
        self.poll(ctx);
    }

    /// After the first poll since loading: every open position must be protected.
    fn finish_reconcile(&mut self, ctx: &mut Context<Self>) {
        self.reconciled = true;
        let ids: Vec<Uuid> = self.positions.keys().copied().collect();
        for id in ids {
            self.ensure_protection(id, ctx);
        }
        // The risk engine learns equity only from portfolio updates: value the account right away.
        self.refresh_portfolio(ctx);
    }

    // -------------------------------------------------------------- polling

    fn poll(&mut self, ctx: &mut Context<Self>) {
        if !self.ready || self.polling {
            return;
        }
        // Acknowledged orders are asked for by exchange id (one batched QueryOrders on Kraken);
        // orders of unknown outcome are searched by client id, all in one search (one OpenOrders
        // and one ClosedOrders on Kraken) at most every `search_interval_ms`.
        let now = self.now();
        let mut known: Vec<(Uuid, OrderRef)> = Vec::new();
        let mut unknown: Vec<(Uuid, OrderRef)> = Vec::new();
        for o in self.orders.values().filter(|o| !self.placing.contains(&o.view.id)) {
            match &o.view.exchange_order_id {
                Some(x) if !x.is_empty() => known.push((o.view.id, OrderRef::Exchange(x.clone()))),
                _ => unknown.push((o.view.id, OrderRef::Client(o.view.client_order_id.clone()))),
            }
        }
        let interval = chrono::Duration::milliseconds(i64::try_from(self.cfg().search_interval_ms).unwrap_or(i64::MAX));
        let search_due = self.last_search.is_none_or(|t| now - t >= interval);
        if !search_due {
            unknown.clear();
        }
        if known.is_empty() && unknown.is_empty() {
            if !self.reconciled {
                self.finish_reconcile(ctx);
            }
            return;
        }
        if !unknown.is_empty() {
            self.last_search = Some(now);
        }
        self.polling = true;
        let exchange = self.deps.exchange.clone();
        let ask = |list: &[(Uuid, OrderRef)]| {
            let refs: Vec<OrderRef> = list.iter().map(|(_, r)| r.clone()).collect();
            let ids: Vec<Uuid> = list.iter().map(|(id, _)| *id).collect();
            let exchange = exchange.clone();
            let fut = async move {
                if refs.is_empty() {
                    None
                } else {
                    Some(exchange.query_orders(refs).await)
                }
            };
            (ids, fut)
        };
        let (known_ids, known_fut) = ask(&known);
        let (unknown_ids, unknown_fut) = ask(&unknown);
        // Independent: a failed search leaves the batch by exchange id alone, and vice versa.
        let fut = async move { futures::join!(known_fut, unknown_fut) };
        ctx.spawn(fut.into_actor(self).map(move |(k, u), act, ctx| {
            act.polling = false;
            let _ = guarded(act, ctx, |act, ctx| {
                if let Some(k) = k {
                    act.on_polled(known_ids, k, "order status poll", ctx);
                }
                if let Some(u) = u {
                    act.on_polled(unknown_ids, u, "search by client id", ctx);
                }
                if !act.reconciled {
                    act.finish_reconcile(ctx);
                }
            });
        }));
    }

    fn on_polled(
        &mut self,
        asked: Vec<Uuid>,
        res: Result<Vec<ExchangeOrder>, ExchangeError>,
        what: &str,
        ctx: &mut Context<Self>,
    ) {
        let found = match res {
            Ok(v) => v,
            Err(e) => {
                // No evidence either way: nothing counts as missing.
                tracing::warn!(error = %e, "{what} failed");
                return;
            }
        };
        let by_exchange_id: HashMap<String, Uuid> = self
            .orders
            .values()
            .filter_map(|o| o.view.exchange_order_id.clone().map(|x| (x, o.view.id)))
            .collect();
        let mut seen = HashSet::new();
        for ex in found {
            let id = ex
                .client_order_id
                .as_ref()
                .and_then(|cid| self.by_client.get(cid).copied())
                .or_else(|| by_exchange_id.get(&ex.exchange_order_id).copied());
            let Some(id) = id else { continue };
            if !seen.insert(id) {
                continue;
            }
            self.missing.remove(&id);
            self.missing_alerted.remove(&id);
            self.apply_update(id, &ex, ctx);
        }
        for id in asked {
            if seen.contains(&id) || !self.orders.contains_key(&id) {
                continue;
            }
            self.on_missing(id, ctx);
        }
    }

    /// An order the exchange did not show. An order of unknown outcome is given up (never placed)
    /// only once the visibility window since it was sent has passed and `reconcile_attempts`
    /// searches missed it; until then a protective one is replaced at once (its position must not
    /// wait), and the original is cancelled if it still appears. An acknowledged order is never
    /// given up: it is alerted once after the window and kept asking for.
    fn on_missing(&mut self, id: Uuid, ctx: &mut Context<Self>) {
        let Some(rec) = self.orders.get(&id).cloned() else {
            return;
        };
        let n = {
            let n = self.missing.entry(id).or_insert(0);
            *n += 1;
            *n
        };
        let window = chrono::Duration::seconds(i64::try_from(self.cfg().visibility_window_secs).unwrap_or(i64::MAX));
        let window_over = self.now() - rec.view.created_at >= window;
        if !is_unknown(&rec) {
            if window_over && self.missing_alerted.insert(id) {
                self.alert(
                    AlertType::Reconcile,
                    Severity::High,
                    Some(rec.view.symbol.clone()),
                    format!(
                        "order {} ({}, exchange id {}) acknowledged but not shown by the exchange after {} s",
                        rec.view.client_order_id,
                        rec.view.purpose,
                        rec.view.exchange_order_id.as_deref().unwrap_or("-"),
                        self.cfg().visibility_window_secs
                    ),
                );
            }
            return;
        }
        if !window_over || n < self.cfg().reconcile_attempts.max(1) {
            if let Some(pid) = rec.view.position_id.filter(|_| is_protective(&rec)) {
                self.ensure_protection(pid, ctx);
            }
            return;
        }
        self.missing.remove(&id);
        let msg = format!(
            "order {} ({}) not on the exchange {} s after it was sent ({n} searches): never placed",
            rec.view.client_order_id,
            rec.view.purpose,
            (self.now() - rec.view.created_at).num_seconds()
        );
        let mut rec2 = rec.clone();
        rec2.error_message = Some("not found on the exchange after the visibility window; never placed".into());
        if rec.view.status != OrderStatus::Error {
            self.transition(&mut rec2, OrderStatus::Error, serde_json::json!({"reason": msg}));
        } else {
            rec2.view.updated_at = self.now();
            self.writer.send(Op::Order(Box::new(rec2.clone())));
        }
        self.forget(id);
        self.alert(
            AlertType::Reconcile,
            Severity::Medium,
            Some(rec.view.symbol.clone()),
            msg,
        );
        if let Some(pid) = rec.view.position_id {
            self.ensure_protection(pid, ctx);
        }
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

    /// Applies the exchange's view of one order. Idempotent: only what changed since the last view counts.
    fn apply_update(&mut self, id: Uuid, ex: &ExchangeOrder, ctx: &mut Context<Self>) {
        let Some(mut rec) = self.orders.get(&id).cloned() else {
            return;
        };
        let old_filled = rec.view.filled_volume;
        let new_filled = ex.filled_volume.max(old_filled);
        let delta = new_filled - old_filled;
        let fill_price = if delta > Decimal::ZERO {
            match (ex.avg_fill_price, rec.view.avg_fill_price) {
                (Some(new_avg), old_avg) => {
                    let p = (new_avg * new_filled - old_avg.unwrap_or(Decimal::ZERO) * old_filled) / delta;
                    if p > Decimal::ZERO {
                        p
                    } else {
                        new_avg
                    }
                }
                (None, _) => ex.price.or(rec.view.price).unwrap_or(Decimal::ZERO),
            }
        } else {
            Decimal::ZERO
        };
        let fee_delta = (ex.fee - rec.view.fee).max(Decimal::ZERO);
        if delta > Decimal::ZERO {
            // The order's new state, its trade and its position are written as one transaction.
            self.batch = Some(FillWrite::default());
        }
        if rec.view.exchange_order_id.is_none() {
            rec.view.exchange_order_id = Some(ex.exchange_order_id.clone());
        }
        rec.view.filled_volume = new_filled;
        if ex.avg_fill_price.is_some() {
            rec.view.avg_fill_price = ex.avg_fill_price;
        }
        rec.view.fee = rec.view.fee.max(ex.fee);
        let was_unknown = is_unknown(&rec);
        if was_unknown {
            rec.error_message = None;
        }
        let status_changed = ex.status != rec.view.status || delta > Decimal::ZERO;
        if status_changed {
            let detail = serde_json::json!({
                "exchange_order_id": ex.exchange_order_id,
                "filled_volume": new_filled,
                "reason": ex.reason,
            });
            if !self.transition(&mut rec, ex.status, detail) {
                rec.view.updated_at = self.now();
                self.write(Op::Order(Box::new(rec.clone())));
                if let Some(r) = self.orders.get_mut(&id) {
                    *r = rec.clone();
                }
            }
        } else if was_unknown {
            // Found as it was sent (e.g. `pending` on the book): no longer unknown.
            rec.view.updated_at = self.now();
            self.write(Op::Order(Box::new(rec.clone())));
            if let Some(r) = self.orders.get_mut(&id) {
                *r = rec.clone();
            }
        }
        if delta > Decimal::ZERO {
            let ty = if rec.view.status == OrderStatus::Filled {
                ExecutionEventType::OrderFilled
            } else {
                ExecutionEventType::OrderPartiallyFilled
            };
            self.publish(ty, &rec, delta, Some(fill_price), fee_delta, None);
            self.decision(
                rec.view.correlation_id,
                "order_filled",
                &rec.view.symbol,
                serde_json::json!({
                    "order_id": rec.view.id, "client_order_id": rec.view.client_order_id, "purpose": rec.view.purpose,
                    "filled": delta, "price": fill_price, "fee": fee_delta, "status": rec.view.status,
                }),
            );
            self.on_fill(&rec, delta, fill_price, fee_delta, ctx);
        }
        self.commit_fill();
        if self.superseded.contains(&id) && !rec.view.status.is_terminal() {
            // A protective order given up for a replacement appeared after all: one is enough.
            self.superseded.remove(&id);
            self.alert(
                AlertType::Reconcile,
                Severity::Medium,
                Some(rec.view.symbol.clone()),
                format!(
                    "{} {} appeared late on the exchange after its replacement was placed; cancelling it",
                    rec.view.purpose.replace('_', " "),
                    rec.view.client_order_id
                ),
            );
            self.request_cancel(id, ctx);
        }
        match ex.status {
            OrderStatus::Cancelled | OrderStatus::Expired if status_changed => {
                self.publish(
                    ExecutionEventType::OrderCancelled,
                    &rec,
                    Decimal::ZERO,
                    None,
                    Decimal::ZERO,
                    None,
                );
            }
            OrderStatus::Rejected if status_changed => {
                self.publish(
                    ExecutionEventType::OrderRejected,
                    &rec,
                    Decimal::ZERO,
                    None,
                    Decimal::ZERO,
                    None,
                );
                self.alert(
                    AlertType::ExecutionError,
                    Severity::High,
                    Some(rec.view.symbol.clone()),
                    format!(
                        "{} order {} rejected by the exchange: {}",
                        rec.view.purpose,
                        rec.view.client_order_id,
                        ex.reason.as_deref().unwrap_or("no reason given")
                    ),
                );
            }
            _ => {}
        }
        if rec.view.status.is_terminal() {
            let ours = self.cancel_requested.contains(&id);
            let position_open = rec
                .view
                .position_id
                .is_some_and(|pid| self.positions.contains_key(&pid));
            if is_protective(&rec)
                && !ours
                && position_open
                && matches!(rec.view.status, OrderStatus::Cancelled | OrderStatus::Expired)
                && status_changed
            {
                self.alert(
                    AlertType::Reconcile,
                    Severity::Medium,
                    Some(rec.view.symbol.clone()),
                    format!(
                        "{} {} of position {} was {} on the exchange without our request ({}); replacing it",
                        rec.view.purpose.replace('_', " "),
                        rec.view.client_order_id,
                        rec.view.position_id.map(|p| p.to_string()).unwrap_or_default(),
                        rec.view.status,
                        ex.reason.as_deref().unwrap_or("no reason given")
                    ),
                );
            }
            self.forget(id);
            if let Some(pid) = rec.view.position_id {
                if matches!(rec.view.purpose.as_str(), "stop_loss" | "take_profit") && !ours {
                    // A protective order ended without our asking (filled, or cancelled by the exchange):
                    // the position is re-checked and re-protected if still open.
                    self.ensure_protection(pid, ctx);
                }
                if rec.view.purpose == "close" {
                    // A close that ended with the position still there (never or partly filled): the position
                    // is open again and needs its protection for what is left.
                    if let Some(p) = self.positions.get_mut(&pid) {
                        p.status = PositionStatus::Open;
                        let snapshot = p.clone();
                        self.writer.send(Op::Position(Box::new(snapshot)));
                    }
                    self.ensure_protection(pid, ctx);
                }
            }
        }
        self.commit_fill();
        self.writer.send(Op::SavePaper);
        if delta > Decimal::ZERO {
            self.refresh_portfolio(ctx);
        }
    }

    // -------------------------------------------------------------- positions

    fn on_fill(&mut self, rec: &OrderRecord, delta: Decimal, price: Decimal, fee: Decimal, ctx: &mut Context<Self>) {
        let now = self.now();
        let Some(pid) = rec.view.position_id else {
            if matches!(rec.view.purpose.as_str(), "rebalance" | "hodl") {
                // A spot trade of holdings: a fill without a position.
                self.writer.send(Op::Trade(TradeRecord {
                    id: Uuid::new_v4(),
                    order_id: rec.view.id,
                    position_id: None,
                    correlation_id: rec.view.correlation_id,
                    symbol: rec.view.symbol.clone(),
                    side: rec.view.side,
                    volume: delta,
                    price,
                    fee,
                    realized_pnl: None,
                    executed_at: now,
                }));
            }
            return;
        };
        let trade = |realized: Option<Decimal>| TradeRecord {
            id: Uuid::new_v4(),
            order_id: rec.view.id,
            position_id: Some(pid),
            correlation_id: rec.view.correlation_id,
            symbol: rec.view.symbol.clone(),
            side: rec.view.side,
            volume: delta,
            price,
            fee,
            realized_pnl: realized,
            executed_at: now,
        };
        if rec.view.purpose == "entry" {
            self.write(Op::Trade(trade(None)));
            let opened = if let Some(p) = self.positions.get_mut(&pid) {
                let total = p.size + delta;
                p.entry_price = ((p.entry_price * p.size + price * delta) / total).normalize();
                p.size = total;
                p.fees += fee;
                p.realized_pnl -= fee;
                false
            } else {
                let side = match rec.view.side {
                    Side::Buy => PositionSide::Long,
                    Side::Sell => PositionSide::Short,
                };
                self.positions.insert(
                    pid,
                    PositionView {
                        id: pid,
                        correlation_id: rec.view.correlation_id,
                        symbol: rec.view.symbol.clone(),
                        side,
                        status: PositionStatus::Open,
                        size: delta,
                        entry_price: price,
                        exit_price: None,
                        leverage: rec.leverage.max(1),
                        stop_loss: rec.stop_loss,
                        take_profit: rec.take_profit,
                        stop_loss_order_id: None,
                        take_profit_order_id: None,
                        realized_pnl: -fee,
                        unrealized_pnl: None,
                        fees: fee,
                        opened_at: now,
                        closed_at: None,
                    },
                );
                true
            };
            let Some(p) = self.positions.get(&pid).cloned() else {
                return;
            };
            self.write(Op::Position(Box::new(p.clone())));
            if opened {
                self.publish(ExecutionEventType::PositionOpened, rec, delta, Some(price), fee, None);
                self.decision(
                    p.correlation_id,
                    "position_opened",
                    &p.symbol,
                    serde_json::json!({"position_id": pid, "side": p.side, "size": p.size, "entry_price": p.entry_price}),
                );
            }
            self.commit_fill();
            self.ensure_protection(pid, ctx);
            return;
        }
        // An exit: stop-loss, take-profit or close.
        let Some(p) = self.positions.get_mut(&pid) else {
            self.write(Op::Trade(trade(None)));
            tracing::warn!(position = %pid, "exit fill for a position that is not open");
            return;
        };
        let filled = delta.min(p.size);
        let (gross, _) = position_pnl(p.side, p.entry_price, price, filled, p.leverage);
        let pnl = gross - fee;
        p.realized_pnl += pnl;
        p.fees += fee;
        p.size -= filled;
        let closed = p.size <= Decimal::ZERO;
        if closed {
            p.size = Decimal::ZERO;
            p.status = PositionStatus::Closed;
            p.exit_price = Some(price);
            p.closed_at = Some(now);
            p.unrealized_pnl = None;
        }
        let p = p.clone();
        self.write(Op::Trade(trade(Some(pnl))));
        self.write(Op::Position(Box::new(p.clone())));
        self.commit_fill();
        if closed {
            self.positions.remove(&pid);
            self.unprotected_since.remove(&pid);
            self.unprotected_alerted.remove(&pid);
            self.trail_extreme.remove(&pid);
            self.cancel_position_orders(pid, ctx);
            self.publish(
                ExecutionEventType::PositionClosed,
                rec,
                filled,
                Some(price),
                fee,
                Some(p.realized_pnl),
            );
            self.decision(
                p.correlation_id,
                "position_closed",
                &p.symbol,
                serde_json::json!({
                    "position_id": pid, "reason": rec.view.purpose, "exit_price": price,
                    "realized_pnl": p.realized_pnl, "fees": p.fees,
                }),
            );
        } else {
            self.ensure_protection(pid, ctx);
        }
    }

    /// Cancels every working order of a position (one-cancels-other, orphan cleanup).
    fn cancel_position_orders(&mut self, pid: Uuid, ctx: &mut Context<Self>) {
        let ids: Vec<Uuid> = self
            .orders
            .values()
            .filter(|o| o.view.position_id == Some(pid) && !o.view.status.is_terminal() && o.view.purpose != "entry")
            .map(|o| o.view.id)
            .collect();
        for id in ids {
            self.request_cancel(id, ctx);
        }
    }

    /// Cancels an order and keeps at it until the exchange shows it closed: each attempt is followed
    /// by a query of the order, and an attempt that failed or left the order open (an ambiguous
    /// reply, a late-visible order) is retried with back-off. One attempt runs at a time per order;
    /// asking again while one runs changes nothing.
    fn request_cancel(&mut self, id: Uuid, ctx: &mut Context<Self>) {
        if self.drained {
            return;
        }
        let Some(rec) = self.orders.get(&id) else { return };
        self.cancel_requested.insert(id);
        if self.placing.contains(&id) || !self.cancel_inflight.insert(id) {
            // Sent first (the placement's answer re-checks), or an attempt is on its way.
            return;
        }
        let exchange = self.deps.exchange.clone();
        let target = match &rec.view.exchange_order_id {
            Some(x) if !x.is_empty() => OrderRef::Exchange(x.clone()),
            _ => OrderRef::Client(rec.view.client_order_id.clone()),
        };
        let fut = async move {
            let cancelled = exchange.cancel_order(target.clone()).await;
            let seen = exchange.query_orders(vec![target]).await;
            (cancelled, seen)
        };
        ctx.spawn(fut.into_actor(self).map(move |(cancelled, seen), act, ctx| {
            act.cancel_inflight.remove(&id);
            let _ = guarded(act, ctx, |act, ctx| act.on_cancel_result(id, cancelled, seen, ctx));
        }));
    }

    fn on_cancel_result(
        &mut self,
        id: Uuid,
        cancelled: Result<(), ExchangeError>,
        seen: Result<Vec<ExchangeOrder>, ExchangeError>,
        ctx: &mut Context<Self>,
    ) {
        if let Ok(found) = &seen {
            let cid = self.orders.get(&id).map(|o| o.view.client_order_id.clone());
            let xid = self.orders.get(&id).and_then(|o| o.view.exchange_order_id.clone());
            if let Some(ex) = found.iter().find(|ex| {
                (ex.client_order_id.is_some() && ex.client_order_id == cid)
                    || Some(&ex.exchange_order_id) == xid.as_ref()
            }) {
                self.missing.remove(&id);
                self.apply_update(id, ex, ctx);
            }
        }
        let Some(rec) = self.orders.get(&id).cloned() else {
            // Closed on the exchange (cancelled, or filled first): done.
            return;
        };
        if self.drained || !self.cancel_requested.contains(&id) {
            return;
        }
        let n = {
            let n = self.cancel_attempts.entry(id).or_insert(0);
            *n += 1;
            *n
        };
        let why = match (&cancelled, &seen) {
            (Err(e), _) => format!("cancel failed: {e}"),
            (Ok(()), Err(e)) => format!("cancel sent, order state unavailable: {e}"),
            (Ok(()), Ok(_)) => "cancel sent, order not shown closed yet".to_owned(),
        };
        tracing::warn!(order = %rec.view.client_order_id, attempt = n, reason = %why, "cancel not confirmed; retrying");
        if n == 3 {
            self.alert(
                AlertType::ExecutionError,
                Severity::High,
                Some(rec.view.symbol.clone()),
                format!(
                    "cancel of {} {} not confirmed after {n} attempts ({why}); still retrying",
                    rec.view.purpose, rec.view.client_order_id
                ),
            );
        }
        let base = self.cfg().protection_retry_ms.max(1);
        let max = self.cfg().protection_retry_max_ms.max(base);
        let delay = base.saturating_mul(1u64 << n.saturating_sub(1).min(16)).min(max);
        ctx.run_later(Duration::from_millis(delay), move |act, ctx| {
            let _ = guarded(act, ctx, |act, ctx| act.request_cancel(id, ctx));
        });
    }

    /// Makes the exchange's protective orders match the position: placed when missing, replaced when the
    /// size or price differs. Failures alert and retry with back-off.
    fn ensure_protection(&mut self, pid: Uuid, ctx: &mut Context<Self>) {
        if !self.ready {
            return;
        }
        let Some(pos) = self.positions.get(&pid).cloned() else {
            return;
        };
        if pos.status != PositionStatus::Open || pos.size <= Decimal::ZERO {
            return;
        }
        for kind in [Protect::StopLoss, Protect::TakeProfit] {
            let (enabled, target, current) = match kind {
                Protect::StopLoss => (self.cfg().auto_stop_loss, pos.stop_loss, pos.stop_loss_order_id),
                Protect::TakeProfit => (self.cfg().auto_take_profit, pos.take_profit, pos.take_profit_order_id),
            };
            let mut current_rec = current
                .filter(|id| !self.superseded.contains(id) && !self.cancel_requested.contains(id))
                .and_then(|id| self.orders.get(&id))
                .cloned();
            if current_rec.is_none() {
                // A protective order of this position that is tracked but not linked (its placement was
                // cut short by a restart, or its outcome is still unknown): adopt it, never send a second
                // while it may still appear.
                let unlinked = self
                    .orders
                    .values()
                    .filter(|o| {
                        o.view.position_id == Some(pid)
                            && o.view.purpose == kind.purpose()
                            && !self.cancel_requested.contains(&o.view.id)
                            && !self.superseded.contains(&o.view.id)
                    })
                    .max_by_key(|o| o.view.created_at)
                    .cloned();
                if let Some(o) = unlinked {
                    if self.placing.contains(&o.view.id) {
                        continue;
                    }
                    if current != Some(o.view.id) {
                        if let Some(p) = self.positions.get_mut(&pid) {
                            match kind {
                                Protect::StopLoss => p.stop_loss_order_id = Some(o.view.id),
                                Protect::TakeProfit => p.take_profit_order_id = Some(o.view.id),
                            }
                            let snapshot = p.clone();
                            self.writer.send(Op::Position(Box::new(snapshot)));
                        }
                        tracing::info!(position = %pid, order = %o.view.client_order_id, kind = kind.purpose(),
                            "adopted an unlinked protective order");
                    }
                    current_rec = Some(o);
                }
            }
            let Some(target) = target.filter(|_| enabled) else {
                if let Some(c) = current_rec {
                    self.request_cancel(c.view.id, ctx);
                }
                continue;
            };
            if self.protect_inflight.contains(&(pid, kind)) {
                continue;
            }
            let pair = self.pairs.get(&pos.symbol).cloned();
            let price = pair.as_ref().map_or(target, |p| p.quantise_price(target));
            let volume = pair.as_ref().map_or(pos.size, |p| p.quantise_volume(pos.size));
            if let Some(c) = &current_rec {
                if is_unknown(c) {
                    // Outcome unknown: the search by client id decides first. Once it missed the order,
                    // the position cannot wait for the visibility window: a replacement is placed and
                    // the original is cancelled if it appears.
                    if self.missing.get(&c.view.id).copied().unwrap_or(0) == 0 {
                        continue;
                    }
                } else {
                    let remaining = c.view.volume - c.view.filled_volume;
                    if remaining == volume && c.view.price == Some(price) {
                        continue;
                    }
                }
            }
            self.place_protection(&pos, kind, price, volume, current_rec.map(|c| c.view.id), ctx);
        }
    }

    fn place_protection(
        &mut self,
        pos: &PositionView,
        kind: Protect,
        price: Decimal,
        volume: Decimal,
        replaces: Option<Uuid>,
        ctx: &mut Context<Self>,
    ) {
        let rec = self.protection_record(pos, kind, price, volume);
        self.protect_inflight.insert((pos.id, kind));
        let pid = pos.id;
        let fut = self.submit(rec, ctx);
        ctx.spawn(fut.map(move |res, act, ctx| {
            act.protect_inflight.remove(&(pid, kind));
            let _ = guarded(act, ctx, |act, ctx| {
                act.on_protection_result(pid, kind, replaces, res, ctx)
            });
        }));
    }

    /// The record of a new protective order of `pos` at `price` (quantised by the caller).
    fn protection_record(&self, pos: &PositionView, kind: Protect, price: Decimal, volume: Decimal) -> OrderRecord {
        let side = match pos.side {
            PositionSide::Long => Side::Sell,
            PositionSide::Short => Side::Buy,
        };
        let order_type = match kind {
            Protect::StopLoss => self.cfg().stop_loss_type,
            Protect::TakeProfit => self.cfg().take_profit_type,
        };
        // A `*-limit` stop sells no worse than the slippage bound beyond its trigger.
        let price2 = matches!(order_type, OrderType::StopLossLimit | OrderType::TakeProfitLimit).then(|| {
            let slip = self.cfg().market_order_slippage_pct / Decimal::ONE_HUNDRED;
            let p = match side {
                Side::Sell => price * (Decimal::ONE - slip),
                Side::Buy => price * (Decimal::ONE + slip),
            };
            self.pairs.get(&pos.symbol).map_or(p, |pi| pi.quantise_price(p))
        });
        let linked = match kind {
            Protect::StopLoss => pos.take_profit_order_id,
            Protect::TakeProfit => pos.stop_loss_order_id,
        };
        self.new_record(
            pos.correlation_id,
            Some(pos.id),
            &pos.symbol,
            side,
            order_type,
            kind.purpose(),
            volume,
            Some(price),
            price2,
            pos.leverage,
            // The take-profit is a plain limit on spot: reduce-only keeps it from reserving the base.
            kind == Protect::TakeProfit || pos.leverage > 1,
            linked,
        )
    }

    fn on_protection_result(
        &mut self,
        pid: Uuid,
        kind: Protect,
        replaces: Option<Uuid>,
        res: Result<OrderView, ExecutionError>,
        ctx: &mut Context<Self>,
    ) {
        match res {
            Ok(view) => {
                self.protect_failures.remove(&(pid, kind));
                let Some(p) = self.positions.get_mut(&pid) else {
                    // The position closed meanwhile: the new order is an orphan.
                    self.request_cancel(view.id, ctx);
                    return;
                };
                match kind {
                    Protect::StopLoss => p.stop_loss_order_id = Some(view.id),
                    Protect::TakeProfit => p.take_profit_order_id = Some(view.id),
                }
                let (sl, tp) = (p.stop_loss_order_id, p.take_profit_order_id);
                let snapshot = p.clone();
                self.writer.send(Op::Position(Box::new(snapshot.clone())));
                // Link the pair both ways.
                for (me, other) in [(sl, tp), (tp, sl)] {
                    if let (Some(me), Some(other)) = (me, other) {
                        if let Some(o) = self.orders.get_mut(&me) {
                            if o.linked_order_id != Some(other) {
                                o.linked_order_id = Some(other);
                                let o = o.clone();
                                self.writer.send(Op::Order(Box::new(o)));
                            }
                        }
                    }
                }
                if let Some(old) = replaces {
                    if self.orders.get(&old).is_some_and(is_unknown) {
                        // Never seen on the exchange: cancelled only if it appears (see `apply_update`).
                        self.superseded.insert(old);
                    } else {
                        self.request_cancel(old, ctx);
                    }
                }
                self.decision(
                    snapshot.correlation_id,
                    "protection_placed",
                    &snapshot.symbol,
                    serde_json::json!({"position_id": pid, "kind": kind.purpose(), "order_id": view.id,
                        "price": view.price, "volume": view.volume}),
                );
            }
            Err(e) => {
                let Some(pos) = self.positions.get(&pid).cloned() else {
                    return;
                };
                let n = {
                    let n = self.protect_failures.entry((pid, kind)).or_insert(0);
                    *n += 1;
                    *n
                };
                let (alert_type, severity) = match kind {
                    Protect::StopLoss => (AlertType::StopLossMissing, Severity::Critical),
                    Protect::TakeProfit => (AlertType::ExecutionError, Severity::High),
                };
                self.alert(
                    alert_type,
                    severity,
                    Some(pos.symbol.clone()),
                    format!(
                        "{} for position {pid} not placed (attempt {n}): {e}; retrying",
                        kind.purpose().replace('_', " ")
                    ),
                );
                if matches!(e, ExecutionError::Unknown(_)) {
                    // The order may exist: the poll resolves it by client id before anything is re-sent.
                    return;
                }
                self.schedule_protection_retry(pid, n, ctx);
            }
        }
    }

    fn schedule_protection_retry(&mut self, pid: Uuid, attempt: u32, ctx: &mut Context<Self>) {
        if !self.protect_retry_scheduled.insert(pid) {
            return;
        }
        let base = self.cfg().protection_retry_ms.max(1);
        let max = self.cfg().protection_retry_max_ms.max(base);
        let delay = base.saturating_mul(1u64 << attempt.saturating_sub(1).min(16)).min(max);
        ctx.run_later(Duration::from_millis(delay), move |act, ctx| {
            act.protect_retry_scheduled.remove(&pid);
            let _ = guarded(act, ctx, |act, ctx| act.ensure_protection(pid, ctx));
        });
    }

    // -------------------------------------------------------------- placing

    #[allow(clippy::too_many_arguments, reason = "one order's fields")]
    fn new_record(
        &self,
        correlation_id: CorrelationId,
        position_id: Option<Uuid>,
        symbol: &Symbol,
        side: Side,
        order_type: OrderType,
        purpose: &str,
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
                purpose: purpose.to_owned(),
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

    /// Records the order as `pending`, waits until the store has it, then sends it (retrying only what the
    /// exchange answered as retryable) and applies the answer.
    fn submit(
        &mut self,
        rec: OrderRecord,
        _ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Result<OrderView, ExecutionError>> {
        let id = rec.view.id;
        self.by_client.insert(rec.view.client_order_id.clone(), id);
        self.orders.insert(id, rec.clone());
        self.placing.insert(id);
        let stored = self.writer.acked(Op::Order(Box::new(rec.clone())));
        self.writer.send(Op::Status(StatusTransition {
            order_id: id,
            from: None,
            to: OrderStatus::Pending,
            filled_volume: Decimal::ZERO,
            detail: serde_json::json!({"purpose": rec.view.purpose}),
            at: rec.view.created_at,
        }));
        let req = OrderRequest {
            client_order_id: rec.view.client_order_id.clone(),
            symbol: rec.view.symbol.clone(),
            side: rec.view.side,
            order_type: rec.view.order_type,
            volume: rec.view.volume,
            price: rec.view.price,
            price2: rec.price2,
            leverage: (rec.leverage > 1).then_some(rec.leverage),
            reduce_only: rec.reduce_only,
            post_only: false,
            validate: false,
        };
        let exchange = self.deps.exchange.clone();
        let retries = self.cfg().max_retry_count;
        let delay = Duration::from_millis(self.cfg().retry_delay_ms);
        let fut = async move {
            stored.await?;
            let mut attempt = 0;
            loop {
                match exchange.place_order(req.clone()).await {
                    Err(e) if e.is_retryable() && attempt < retries => {
                        attempt += 1;
                        tracing::warn!(error = %e, attempt, "order placement retryable; retrying");
                        actix::clock::sleep(delay).await;
                    }
                    other => return Ok(other),
                }
            }
        };
        Box::pin(fut.into_actor(self).map(move |res: PlaceOutcome, act, ctx| {
            guarded(act, ctx, |act, ctx| act.on_placed(id, res, ctx))
                .unwrap_or_else(|e| Err(ExecutionError::Unavailable(e.to_string())))
        }))
    }

    fn on_placed(&mut self, id: Uuid, res: PlaceOutcome, ctx: &mut Context<Self>) -> Result<OrderView, ExecutionError> {
        self.placing.remove(&id);
        let Some(mut rec) = self.orders.get(&id).cloned() else {
            return Err(ExecutionError::Unavailable("order no longer tracked".into()));
        };
        let symbol = rec.view.symbol.clone();
        match res {
            Err(store) => {
                let why = format!("not sent: {store}");
                rec.error_message = Some(why.clone());
                self.transition(&mut rec, OrderStatus::Rejected, serde_json::json!({ "reason": why }));
                self.forget(id);
                Err(ExecutionError::Unavailable(format!(
                    "order not recorded, so not sent: {store}"
                )))
            }
            Ok(Ok(ack)) => {
                rec.view.exchange_order_id = Some(ack.exchange_order_id.clone());
                self.transition(
                    &mut rec,
                    OrderStatus::Open,
                    serde_json::json!({"exchange_order_id": ack.exchange_order_id, "description": ack.description}),
                );
                self.publish(
                    ExecutionEventType::OrderPlaced,
                    &rec,
                    Decimal::ZERO,
                    rec.view.price,
                    Decimal::ZERO,
                    None,
                );
                self.decision(
                    rec.view.correlation_id,
                    "order_placed",
                    &symbol,
                    serde_json::json!({
                        "order_id": id, "client_order_id": rec.view.client_order_id,
                        "exchange_order_id": ack.exchange_order_id, "purpose": rec.view.purpose,
                        "side": rec.view.side, "type": rec.view.order_type, "volume": rec.view.volume,
                        "price": rec.view.price,
                    }),
                );
                self.writer.send(Op::SavePaper);
                if self.cancel_requested.contains(&id) {
                    // Cancelled while its placement was on the way.
                    self.request_cancel(id, ctx);
                }
                if self.deps.paper.is_some() {
                    self.poll(ctx);
                }
                Ok(rec.view)
            }
            Ok(Err(ExchangeError::Unknown(msg))) => {
                rec.error_message = Some(format!("{UNRESOLVED} {msg}"));
                self.transition(&mut rec, OrderStatus::Unknown, serde_json::json!({"reason": msg}));
                self.publish(
                    ExecutionEventType::OrderError,
                    &rec,
                    Decimal::ZERO,
                    None,
                    Decimal::ZERO,
                    None,
                );
                self.decision(
                    rec.view.correlation_id,
                    "order_error",
                    &symbol,
                    serde_json::json!({"order_id": id, "client_order_id": rec.view.client_order_id, "error": msg}),
                );
                self.alert(
                    AlertType::ExecutionError,
                    Severity::High,
                    Some(symbol),
                    format!(
                        "order {} outcome unknown ({msg}); reconciling by client id",
                        rec.view.client_order_id
                    ),
                );
                Err(ExecutionError::Unknown(msg))
            }
            Ok(Err(e)) => {
                rec.error_message = Some(e.to_string());
                self.transition(
                    &mut rec,
                    OrderStatus::Rejected,
                    serde_json::json!({"reason": e.to_string()}),
                );
                self.publish(
                    ExecutionEventType::OrderRejected,
                    &rec,
                    Decimal::ZERO,
                    None,
                    Decimal::ZERO,
                    None,
                );
                self.decision(
                    rec.view.correlation_id,
                    "order_rejected",
                    &symbol,
                    serde_json::json!({"order_id": id, "client_order_id": rec.view.client_order_id, "error": e.to_string()}),
                );
                if !is_protective(&rec) {
                    // A refused protective order alerts in `on_protection_result` (urgent for a stop).
                    let severity = if matches!(e, ExchangeError::Invalid(_)) {
                        Severity::Medium
                    } else {
                        Severity::High
                    };
                    self.alert(
                        AlertType::ExecutionError,
                        severity,
                        Some(symbol.clone()),
                        format!(
                            "{} {} {} {} refused: {e}",
                            rec.view.purpose, rec.view.side, rec.view.volume, rec.view.symbol
                        ),
                    );
                }
                self.forget(id);
                if rec.view.purpose == "close" {
                    if let Some(pid) = rec.view.position_id {
                        if let Some(p) = self.positions.get_mut(&pid) {
                            p.status = PositionStatus::Open;
                            let snapshot = p.clone();
                            self.writer.send(Op::Position(Box::new(snapshot)));
                        }
                        self.ensure_protection(pid, ctx);
                    }
                }
                Err(match e {
                    ExchangeError::Invalid(m) => ExecutionError::Invalid(m),
                    other => ExecutionError::Rejected(other.to_string()),
                })
            }
        }
    }

    fn reference_price(&self, symbol: &Symbol, given: Option<Decimal>) -> Option<Decimal> {
        given
            .filter(|p| *p > Decimal::ZERO)
            .or_else(|| self.prices.get(symbol).copied())
            .or_else(|| self.deps.paper.as_ref().and_then(|p| p.last_price(symbol)))
    }

    fn bounded_price(&self, side: Side, reference: Decimal, pair: &PairInfo) -> Decimal {
        let slip = self.cfg().market_order_slippage_pct / Decimal::ONE_HUNDRED;
        let p = match side {
            Side::Buy => reference * (Decimal::ONE + slip),
            Side::Sell => reference * (Decimal::ONE - slip),
        };
        pair.quantise_price(p)
    }

    fn execute(&mut self, msg: ExecuteTrade, ctx: &mut Context<Self>) -> ResponseActFuture<Self, ExecResult> {
        if !self.ready {
            return fail(ExecutionError::Unavailable("execution manager is still loading".into()));
        }
        let p = msg.proposal.clone();
        if p.source.is_holding() {
            return self.execute_holding(&msg, ctx);
        }
        if p.reduce_only {
            return self.execute_reduce_only(&msg, ctx);
        }
        let Some(pair) = self.pairs.get(&p.symbol).cloned() else {
            return fail(ExecutionError::Invalid(format!("symbol {} is not traded", p.symbol)));
        };
        if p.leverage == 0 || p.leverage > 5 {
            return fail(ExecutionError::Invalid(format!("leverage {} outside 1..5", p.leverage)));
        }
        let pending_entries = |sym: Option<&Symbol>| {
            self.orders
                .values()
                .filter(|o| o.view.purpose == "entry" && o.view.filled_volume.is_zero())
                .filter(|o| sym.is_none_or(|s| &o.view.symbol == s))
                .count()
        };
        let on_symbol =
            self.positions.values().filter(|x| x.symbol == p.symbol).count() + pending_entries(Some(&p.symbol));
        if on_symbol >= self.cfg().max_positions_per_symbol {
            return fail(ExecutionError::NotAllowed(format!(
                "max_positions_per_symbol {} reached for {}",
                self.cfg().max_positions_per_symbol,
                p.symbol
            )));
        }
        let total = self.positions.len() + pending_entries(None);
        if total >= self.cfg().max_positions_total {
            return fail(ExecutionError::NotAllowed(format!(
                "max_positions_total {} reached",
                self.cfg().max_positions_total
            )));
        }
        let Some(reference) = self.reference_price(&p.symbol, msg.limit_price.or(Some(p.entry_price))) else {
            return fail(ExecutionError::Invalid(format!("no price known for {}", p.symbol)));
        };
        let price = match msg.order_type {
            OrderType::Limit => pair.quantise_price(reference),
            OrderType::Market => self.bounded_price(p.side, reference, &pair),
            other => {
                return fail(ExecutionError::Invalid(format!(
                    "order_type {other} is not an entry type (limit or market)"
                )))
            }
        };
        let volume = match msg.volume {
            Some(v) => pair.quantise_volume(v),
            None => pair.quantise_volume(p.size_usd * Decimal::from(p.leverage) / reference),
        };
        if volume <= Decimal::ZERO || volume < pair.ordermin {
            return fail(ExecutionError::Invalid(format!(
                "volume {volume} below the minimum order {} for {}",
                pair.ordermin, p.symbol
            )));
        }
        if volume * price < pair.costmin {
            return fail(ExecutionError::Invalid(format!(
                "order cost {} below the minimum cost {} for {}",
                volume * price,
                pair.costmin,
                p.symbol
            )));
        }
        let mut rec = self.new_record(
            p.correlation_id,
            Some(Uuid::new_v4()),
            &p.symbol,
            p.side,
            OrderType::Limit,
            "entry",
            volume,
            Some(price),
            None,
            p.leverage,
            false,
            None,
        );
        rec.stop_loss = p.stop_loss;
        rec.take_profit = p.take_profit;
        self.decision(
            p.correlation_id,
            "order_submitted",
            &p.symbol,
            serde_json::json!({
                "order_id": rec.view.id, "client_order_id": rec.view.client_order_id,
                "requested_type": msg.order_type, "price": price, "volume": volume,
                "verdict": msg.verdict.as_ref().map(|v| v.status), "note": msg.note,
            }),
        );
        let correlation_id = p.correlation_id;
        let position_id = rec.view.position_id;
        Box::pin(self.submit(rec, ctx).map(move |res, _, _| {
            res.map(|view| ExecutionResult {
                correlation_id,
                orders: vec![view],
                position_id,
            })
        }))
    }

    /// A rebalance or hodl trade: a spot order that changes balances only. It opens no position,
    /// gets no stop or take-profit, and neither counts toward nor is refused by the position
    /// limits (`max_positions_per_symbol`, `max_positions_total`). Its fills are recorded as trades
    /// without a position, under the order purpose `rebalance` or `hodl`.
    fn execute_holding(&mut self, msg: &ExecuteTrade, ctx: &mut Context<Self>) -> ResponseActFuture<Self, ExecResult> {
        let p = &msg.proposal;
        let Some(pair) = self.pairs.get(&p.symbol).cloned() else {
            return fail(ExecutionError::Invalid(format!("symbol {} is not traded", p.symbol)));
        };
        if p.leverage != 1 {
            return fail(ExecutionError::Invalid(format!(
                "a {:?} trade is spot: leverage must be 1, got {}",
                p.source, p.leverage
            )));
        }
        let Some(reference) = self.reference_price(&p.symbol, msg.limit_price.or(Some(p.entry_price))) else {
            return fail(ExecutionError::Invalid(format!("no price known for {}", p.symbol)));
        };
        let price = match msg.order_type {
            OrderType::Limit => pair.quantise_price(reference),
            OrderType::Market => self.bounded_price(p.side, reference, &pair),
            other => {
                return fail(ExecutionError::Invalid(format!(
                    "order_type {other} is not a spot trade type (limit or market)"
                )))
            }
        };
        let volume = match msg.volume {
            Some(v) => pair.quantise_volume(v),
            None => pair.quantise_volume(p.size_usd / reference),
        };
        if volume <= Decimal::ZERO || volume < pair.ordermin {
            return fail(ExecutionError::Invalid(format!(
                "volume {volume} below the minimum order {} for {}",
                pair.ordermin, p.symbol
            )));
        }
        if volume * price < pair.costmin {
            return fail(ExecutionError::Invalid(format!(
                "order cost {} below the minimum cost {} for {}",
                volume * price,
                pair.costmin,
                p.symbol
            )));
        }
        let purpose = if p.source == crate::risk::ProposalSource::Hodl {
            "hodl"
        } else {
            "rebalance"
        };
        let rec = self.new_record(
            p.correlation_id,
            None,
            &p.symbol,
            p.side,
            OrderType::Limit,
            purpose,
            volume,
            Some(price),
            None,
            1,
            false,
            None,
        );
        self.decision(
            p.correlation_id,
            "order_submitted",
            &p.symbol,
            serde_json::json!({
                "order_id": rec.view.id, "client_order_id": rec.view.client_order_id, "purpose": purpose,
                "requested_type": msg.order_type, "price": price, "volume": volume,
                "verdict": msg.verdict.as_ref().map(|v| v.status), "note": msg.note,
            }),
        );
        let correlation_id = p.correlation_id;
        Box::pin(self.submit(rec, ctx).map(move |res, _, _| {
            res.map(|view| ExecutionResult {
                correlation_id,
                orders: vec![view],
                position_id: None,
            })
        }))
    }

    /// A reduce-only trade closes (part of) the open positions it opposes on its symbol.
    fn execute_reduce_only(
        &mut self,
        msg: &ExecuteTrade,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, ExecResult> {
        let p = &msg.proposal;
        let closing_side = match p.side {
            Side::Sell => PositionSide::Long,
            Side::Buy => PositionSide::Short,
        };
        let Some(pos) = self
            .positions
            .values()
            .filter(|x| x.symbol == p.symbol && x.side == closing_side && x.status == PositionStatus::Open)
            .min_by_key(|x| x.opened_at)
            .cloned()
        else {
            return fail(ExecutionError::Invalid(format!(
                "reduce-only {} on {}: no open {} position to reduce",
                p.side, p.symbol, closing_side
            )));
        };
        let fraction = match (msg.volume, self.reference_price(&p.symbol, Some(p.entry_price))) {
            (Some(v), _) if pos.size > Decimal::ZERO => (v / pos.size).min(Decimal::ONE),
            (None, Some(price)) if pos.size > Decimal::ZERO && p.size_usd > Decimal::ZERO => {
                (p.size_usd * Decimal::from(p.leverage.max(1)) / price / pos.size).min(Decimal::ONE)
            }
            _ => Decimal::ONE,
        };
        self.close(pos.id, fraction, "reduce_only".into(), p.correlation_id, ctx)
    }

    fn close(
        &mut self,
        pid: Uuid,
        fraction: Decimal,
        reason: String,
        correlation_id: CorrelationId,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, ExecResult> {
        if !self.ready {
            return fail(ExecutionError::Unavailable("execution manager is still loading".into()));
        }
        if fraction <= Decimal::ZERO || fraction > Decimal::ONE {
            return fail(ExecutionError::Invalid("fraction must be in (0, 1]".into()));
        }
        let Some(pos) = self.positions.get(&pid).cloned() else {
            return fail(ExecutionError::Invalid(format!("position {pid} is not open")));
        };
        if pos.status == PositionStatus::Closing {
            return fail(ExecutionError::NotAllowed(format!("position {pid} is already closing")));
        }
        let Some(pair) = self.pairs.get(&pos.symbol).cloned() else {
            return fail(ExecutionError::Invalid(format!("symbol {} is not traded", pos.symbol)));
        };
        let Some(reference) = self.reference_price(&pos.symbol, None).or(Some(pos.entry_price)) else {
            return fail(ExecutionError::Invalid(format!("no price known for {}", pos.symbol)));
        };
        let full = fraction == Decimal::ONE;
        let volume = if full {
            pos.size
        } else {
            pair.quantise_volume(pos.size * fraction)
        };
        if volume <= Decimal::ZERO {
            return fail(ExecutionError::Invalid("nothing to close at that fraction".into()));
        }
        let side = match pos.side {
            PositionSide::Long => Side::Sell,
            PositionSide::Short => Side::Buy,
        };
        let price = self.bounded_price(side, reference, &pair);
        if full {
            // Stop and take-profit go first so nothing sells the holding twice.
            if let Some(p) = self.positions.get_mut(&pid) {
                p.status = PositionStatus::Closing;
                let snapshot = p.clone();
                self.writer.send(Op::Position(Box::new(snapshot)));
            }
            self.cancel_position_orders(pid, ctx);
        }
        let rec = self.new_record(
            correlation_id,
            Some(pid),
            &pos.symbol,
            side,
            OrderType::Limit,
            "close",
            volume,
            Some(price),
            None,
            pos.leverage,
            true,
            None,
        );
        self.decision(
            correlation_id,
            "close_requested",
            &pos.symbol,
            serde_json::json!({"position_id": pid, "fraction": fraction, "reason": reason, "volume": volume}),
        );
        Box::pin(self.submit(rec, ctx).map(move |res, _, _| {
            res.map(|view| ExecutionResult {
                correlation_id,
                orders: vec![view],
                position_id: Some(pid),
            })
        }))
    }

    /// Checks a stop / take-profit change; returns the protective orders to move, stop first.
    fn plan_modify(&self, msg: &ModifyPosition) -> Result<Vec<(Protect, Decimal)>, ExecutionError> {
        if !self.ready {
            return Err(ExecutionError::Unavailable("execution manager is still loading".into()));
        }
        let Some(p) = self.positions.get(&msg.position_id) else {
            return Err(ExecutionError::Invalid(format!(
                "position {} is not open",
                msg.position_id
            )));
        };
        if p.status != PositionStatus::Open {
            return Err(ExecutionError::NotAllowed(format!(
                "position {} is {}",
                msg.position_id, p.status
            )));
        }
        let reference = p.entry_price;
        for (name, v) in [("stop_loss", msg.stop_loss), ("take_profit", msg.take_profit)] {
            if v.is_some_and(|v| v <= Decimal::ZERO) {
                return Err(ExecutionError::Invalid(format!("{name} must be positive")));
            }
        }
        let wrong_side = |sl: Decimal| match p.side {
            PositionSide::Long => sl >= reference,
            PositionSide::Short => sl <= reference,
        };
        if msg.stop_loss.is_some_and(wrong_side) {
            return Err(ExecutionError::Invalid(format!(
                "stop_loss must be on the losing side of the entry price {reference}"
            )));
        }
        let pair = self.pairs.get(&p.symbol);
        let mut steps = Vec::new();
        for (kind, target) in [
            (Protect::StopLoss, msg.stop_loss),
            (Protect::TakeProfit, msg.take_profit),
        ] {
            let Some(target) = target else { continue };
            let quantised = pair.map_or(target, |pi| pi.quantise_price(target));
            if quantised <= Decimal::ZERO {
                return Err(ExecutionError::Invalid(format!(
                    "{} {target} is 0 on the pair's price tick",
                    kind.purpose()
                )));
            }
            if self.protect_inflight.contains(&(p.id, kind)) {
                return Err(ExecutionError::NotAllowed(format!(
                    "a {} order of this position is being placed; retry shortly",
                    kind.purpose()
                )));
            }
            steps.push((kind, target));
        }
        Ok(steps)
    }

    /// Moves one protective order to `target`: the new order is placed first and the stored
    /// value changes only once the exchange confirmed it; then the old order is cancelled. A
    /// refused order changes nothing (the old one keeps working). An order of unknown outcome
    /// leaves the old one working and is cancelled if it ever appears.
    fn move_protection(
        &mut self,
        pid: Uuid,
        kind: Protect,
        target: Decimal,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Result<(), ExecutionError>> {
        let Some(pos) = self.positions.get(&pid).cloned() else {
            return fail(ExecutionError::Invalid(format!("position {pid} is not open")));
        };
        let enabled = match kind {
            Protect::StopLoss => self.cfg().auto_stop_loss,
            Protect::TakeProfit => self.cfg().auto_take_profit,
        };
        let current = match kind {
            Protect::StopLoss => pos.stop_loss_order_id,
            Protect::TakeProfit => pos.take_profit_order_id,
        }
        .filter(|id| !self.superseded.contains(id) && !self.cancel_requested.contains(id))
        .and_then(|id| self.orders.get(&id))
        .cloned();
        let pair = self.pairs.get(&pos.symbol).cloned();
        let price = pair.as_ref().map_or(target, |p| p.quantise_price(target));
        let volume = pair.as_ref().map_or(pos.size, |p| p.quantise_volume(pos.size));
        let unchanged = current.as_ref().is_some_and(|c| {
            !is_unknown(c) && c.view.price == Some(price) && c.view.volume - c.view.filled_volume == volume
        });
        if !enabled || unchanged {
            // No exchange order to move (protection off, or it already works at that price).
            self.store_target(pid, kind, target);
            return Box::pin(fut::ready(Ok(())));
        }
        let rec = self.protection_record(&pos, kind, price, volume);
        let new_id = rec.view.id;
        let replaces = current.map(|c| c.view.id);
        self.protect_inflight.insert((pid, kind));
        let fut = self.submit(rec, ctx);
        Box::pin(fut.map(move |res, act, ctx| {
            act.protect_inflight.remove(&(pid, kind));
            match res {
                Ok(view) => {
                    act.store_target(pid, kind, target);
                    let _ = guarded(act, ctx, |act, ctx| {
                        act.on_protection_result(pid, kind, replaces, Ok(view), ctx)
                    });
                    Ok(())
                }
                Err(ExecutionError::Unknown(m)) => {
                    act.superseded.insert(new_id);
                    Err(ExecutionError::Unknown(format!(
                        "{m}; the {} stays at its old price and the new order is cancelled if it appears",
                        kind.purpose()
                    )))
                }
                Err(e) => {
                    tracing::warn!(position = %pid, kind = kind.purpose(), error = %e,
                        "protective order change refused; the old order keeps working");
                    Err(e)
                }
            }
        }))
    }

    /// Stores a confirmed stop / take-profit value of a position.
    fn store_target(&mut self, pid: Uuid, kind: Protect, target: Decimal) {
        let Some(p) = self.positions.get_mut(&pid) else {
            return;
        };
        match kind {
            Protect::StopLoss => p.stop_loss = Some(target),
            Protect::TakeProfit => p.take_profit = Some(target),
        }
        let view = p.clone();
        self.writer.send(Op::Position(Box::new(view.clone())));
        self.decision(
            view.correlation_id,
            "position_modified",
            &view.symbol,
            serde_json::json!({"position_id": view.id, "kind": kind.purpose(), "stop_loss": view.stop_loss,
                "take_profit": view.take_profit}),
        );
    }

    // -------------------------------------------------------------- periodic work

    /// Snapshots (every `snapshot_interval_secs`), then the price checks and a valuation.
    fn on_tick(&mut self, ctx: &mut Context<Self>) {
        let now = self.now();
        for p in self.positions.values_mut() {
            let Some(&price) = self.prices.get(&p.symbol) else {
                continue;
            };
            let (pnl, pct) = position_pnl(p.side, p.entry_price, price, p.size, p.leverage);
            p.unrealized_pnl = Some(pnl);
            self.writer.send(Op::Snapshot(PositionSnapshotRecord {
                position_id: p.id,
                at: now,
                price,
                unrealized_pnl: pnl,
                unrealized_pnl_pct: pct.round_dp(8),
            }));
        }
        self.on_prices(ctx);
        self.refresh_portfolio(ctx);
    }

    /// On every price update: trailing stops move with the price (never once a minute only), and a
    /// position whose stop is breached while no stop order works on the exchange is closed at market
    /// (the backup trigger; `close` refuses a position already closing, so it fires once).
    fn on_prices(&mut self, ctx: &mut Context<Self>) {
        let mut changed = Vec::new();
        let mut breached = Vec::new();
        let mut extremes = Vec::new();
        for p in self.positions.values() {
            let Some(&price) = self.prices.get(&p.symbol) else {
                continue;
            };
            match self.price_effect(p, price) {
                PriceEffect::None => {}
                PriceEffect::Breached => breached.push((p.id, p.correlation_id)),
                PriceEffect::Trail { best, stop } => {
                    extremes.push((p.id, best));
                    if let Some(stop) = stop {
                        let mut moved = p.clone();
                        moved.stop_loss = Some(stop);
                        changed.push(moved);
                    }
                }
            }
        }
        for (id, best) in extremes {
            self.trail_extreme.insert(id, best);
        }
        for p in &changed {
            if let Some(live) = self.positions.get_mut(&p.id) {
                live.stop_loss = p.stop_loss;
            }
        }
        for p in changed {
            self.writer.send(Op::Position(Box::new(p.clone())));
            self.decision(
                p.correlation_id,
                "trailing_stop_moved",
                &p.symbol,
                serde_json::json!({"position_id": p.id, "stop_loss": p.stop_loss}),
            );
            self.ensure_protection(p.id, ctx);
        }
        for (pid, correlation_id) in breached {
            let symbol = self.positions.get(&pid).map(|p| p.symbol.clone());
            self.alert(
                AlertType::StopLossMissing,
                Severity::Critical,
                symbol,
                format!("stop of position {pid} breached without a working stop order; closing at market"),
            );
            let fut = self.close(pid, Decimal::ONE, "stop_loss_backup".into(), correlation_id, ctx);
            ctx.spawn(fut.map(|res, _, _| {
                if let Err(e) = res {
                    tracing::error!(error = %e, "backup stop close failed");
                }
            }));
        }
    }

    /// What a last price of `price` does to position `p` (see [`Self::on_prices`]): nothing, the
    /// backup stop trigger, or a trailing stop update (the new best price, and the new stop when
    /// it improves on the current one).
    fn price_effect(&self, p: &PositionView, price: Decimal) -> PriceEffect {
        if p.status != PositionStatus::Open {
            return PriceEffect::None;
        }
        let trailing = &self.cfg().trailing_stop;
        let hit = p.stop_loss.is_some_and(|sl| match p.side {
            PositionSide::Long => price <= sl,
            PositionSide::Short => price >= sl,
        });
        if hit && self.backup_stop_armed(p) {
            return PriceEffect::Breached;
        }
        if !trailing.enabled {
            return PriceEffect::None;
        }
        let (_, pct) = position_pnl(p.side, p.entry_price, price, p.size, 1);
        let ext = self.trail_extreme.get(&p.id).copied();
        if ext.is_none() && pct < trailing.activation_pct {
            return PriceEffect::None;
        }
        let best = match (p.side, ext) {
            (PositionSide::Long, Some(e)) => e.max(price),
            (PositionSide::Short, Some(e)) => e.min(price),
            (_, None) => price,
        };
        let dist = trailing.distance_pct / Decimal::ONE_HUNDRED;
        let raw = match p.side {
            PositionSide::Long => best * (Decimal::ONE - dist),
            PositionSide::Short => best * (Decimal::ONE + dist),
        };
        let candidate = self.pairs.get(&p.symbol).map_or(raw, |pi| pi.quantise_price(raw));
        let better = match (p.side, p.stop_loss) {
            (_, None) => true,
            (PositionSide::Long, Some(s)) => candidate > s,
            (PositionSide::Short, Some(s)) => candidate < s,
        };
        if !better && ext == Some(best) {
            return PriceEffect::None;
        }
        PriceEffect::Trail {
            best,
            stop: better.then_some(candidate),
        }
    }

    /// Whether a stop order of position `p` works on the exchange (acknowledged, open, not being
    /// cancelled). A `pending` or `unknown` stop does not count.
    fn stop_working(&self, p: &PositionView) -> bool {
        self.orders.values().any(|o| {
            o.view.position_id == Some(p.id)
                && o.view.purpose == Protect::StopLoss.purpose()
                && matches!(o.view.status, OrderStatus::Open | OrderStatus::PartiallyFilled)
                && !self.cancel_requested.contains(&o.view.id)
        })
    }

    /// A stop for position `p` is on its way (sent, or of unknown outcome and not yet given up).
    fn stop_pending(&self, p: &PositionView) -> bool {
        self.protect_inflight.contains(&(p.id, Protect::StopLoss))
            || self.orders.values().any(|o| {
                o.view.position_id == Some(p.id)
                    && o.view.purpose == Protect::StopLoss.purpose()
                    && (o.view.status == OrderStatus::Pending || is_unknown(o))
                    && !self.superseded.contains(&o.view.id)
                    && !self.cancel_requested.contains(&o.view.id)
            })
    }

    /// The software backup stop watches the price of `p`: no stop works on the exchange, and none
    /// is on its way, or the position has been unprotected for `max_unprotected_secs`.
    fn backup_stop_armed(&self, p: &PositionView) -> bool {
        if self.stop_working(p) {
            return false;
        }
        let max = Duration::from_secs(self.cfg().max_unprotected_secs);
        let too_long = self
            .unprotected_since
            .get(&p.id)
            .is_some_and(|since| since.elapsed() >= max);
        !self.stop_pending(p) || too_long
    }

    /// Every second: a position without a working stop for `max_unprotected_secs` raises a
    /// critical alert (once per episode) and arms the backup stop; protective orders whose
    /// position is gone are cancelled and alerted.
    fn check_protection(&mut self, ctx: &mut Context<Self>) {
        if !self.ready || !self.reconciled || self.drained {
            return;
        }
        let now = actix::clock::Instant::now();
        let max = Duration::from_secs(self.cfg().max_unprotected_secs);
        let mut late = Vec::new();
        let mut fine = Vec::new();
        for p in self.positions.values() {
            let needs_stop = p.status == PositionStatus::Open
                && p.size > Decimal::ZERO
                && self.cfg().auto_stop_loss
                && p.stop_loss.is_some();
            if !needs_stop || self.stop_working(p) {
                fine.push(p.id);
                continue;
            }
            let since = self.unprotected_since.get(&p.id).copied().unwrap_or(now);
            if now.saturating_duration_since(since) >= max && !self.unprotected_alerted.contains(&p.id) {
                late.push((
                    p.id,
                    p.symbol.clone(),
                    p.stop_loss,
                    now.saturating_duration_since(since),
                ));
            }
            self.unprotected_since.entry(p.id).or_insert(since);
        }
        for id in fine {
            self.unprotected_since.remove(&id);
            self.unprotected_alerted.remove(&id);
        }
        let positions = &self.positions;
        self.unprotected_since.retain(|id, _| positions.contains_key(id));
        self.unprotected_alerted.retain(|id| positions.contains_key(id));
        let armed = !late.is_empty();
        for (pid, symbol, sl, for_how_long) in late {
            self.unprotected_alerted.insert(pid);
            self.alert(
                AlertType::StopLossMissing,
                Severity::Critical,
                Some(symbol),
                format!(
                    "position {pid} has had no working stop on the exchange for {} s; software backup stop armed at {}",
                    for_how_long.as_secs(),
                    sl.map(|s| s.to_string()).unwrap_or_default()
                ),
            );
        }
        // Orphans: protective orders whose position is gone.
        let orphans: Vec<OrderRecord> = self
            .orders
            .values()
            .filter(|o| {
                is_protective(o)
                    && o.view.position_id.is_some_and(|pid| !self.positions.contains_key(&pid))
                    && !self.cancel_requested.contains(&o.view.id)
                    && !self.placing.contains(&o.view.id)
            })
            .cloned()
            .collect();
        for o in orphans {
            self.alert(
                AlertType::Reconcile,
                Severity::Medium,
                Some(o.view.symbol.clone()),
                format!(
                    "orphan {} {} (position {} is closed or gone); cancelling it",
                    o.view.purpose.replace('_', " "),
                    o.view.client_order_id,
                    o.view.position_id.map(|p| p.to_string()).unwrap_or_default()
                ),
            );
            self.request_cancel(o.view.id, ctx);
        }
        if armed {
            // The price may already be through the stop.
            self.on_prices(ctx);
        }
    }

    /// How many of `prices` (in order) can be applied one after the other without anything
    /// happening here: no order or protection in flight, no stop breached, no trailing stop moved.
    /// A price that does nothing leaves the state as it was, so each is judged on the current state.
    fn quiet_prefix(&self, prices: &[(Symbol, Decimal)]) -> usize {
        let busy = !self.placing.is_empty()
            || !self.protect_inflight.is_empty()
            || !self.cancel_requested.is_empty()
            || self.polling
            || !self.ready;
        if busy {
            return 0;
        }
        prices
            .iter()
            .take_while(|(symbol, price)| {
                self.positions
                    .values()
                    .filter(|p| &p.symbol == symbol)
                    .all(|p| matches!(self.price_effect(p, *price), PriceEffect::None))
            })
            .count()
    }

    /// Every 30 s: orders on the exchange that carry our client ids but that we do not track, open
    /// ones and (every 10th sync, or while an order's outcome is unknown) recently closed ones. One
    /// the store knows but gave up (or that filled while invisible) is tracked again and applied:
    /// its fill opens the position and the position is protected. Others are alerted.
    fn sync_with_exchange(&mut self, ctx: &mut Context<Self>) {
        if !self.ready || self.drained {
            return;
        }
        self.syncs += 1;
        let with_closed = self.syncs % 10 == 1 || self.orders.values().any(is_unknown);
        let exchange = self.deps.exchange.clone();
        let fut = async move {
            let open = exchange.open_orders().await;
            let closed = if with_closed {
                Some(exchange.closed_orders().await)
            } else {
                None
            };
            (open, closed)
        };
        ctx.spawn(fut.into_actor(self).map(|(open, closed), act, ctx| {
            let _ = guarded(act, ctx, |act, ctx| {
                let mut candidates = Vec::new();
                match open {
                    Ok(v) => candidates.extend(v.into_iter().map(|o| (o, true))),
                    Err(e) => tracing::warn!(error = %e, "open orders unavailable; sync skipped"),
                }
                match closed {
                    Some(Ok(v)) => candidates.extend(
                        v.into_iter()
                            .filter(|o| !act.synced_closed.contains(&o.exchange_order_id))
                            .map(|o| (o, false)),
                    ),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "closed orders unavailable; sync of closed orders skipped")
                    }
                    None => {}
                }
                for (o, open) in candidates {
                    let Some(cid) = o.client_order_id.clone() else { continue };
                    if !cid.as_str().starts_with("tg-") || act.by_client.contains_key(&cid) {
                        continue;
                    }
                    let store = act.deps.orders.clone();
                    let lookup = async move { store.find_order_by_client_id(cid).await };
                    ctx.spawn(lookup.into_actor(act).map(move |stored, act, ctx| {
                        let _ = guarded(act, ctx, |act, ctx| act.on_untracked(o, open, stored, ctx));
                    }));
                }
            });
        }));
    }

    /// An exchange order with our client id that is not tracked (see [`Self::sync_with_exchange`]).
    fn on_untracked(
        &mut self,
        ex: ExchangeOrder,
        open: bool,
        stored: Result<Option<OrderRecord>, StoreError>,
        ctx: &mut Context<Self>,
    ) {
        let Some(cid) = ex.client_order_id.clone() else { return };
        if self.by_client.contains_key(&cid) || self.drained {
            return;
        }
        let stored = match stored {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, order = %cid, "store lookup failed; the next sync retries");
                return;
            }
        };
        let Some(mut rec) = stored else {
            self.synced_closed.insert(ex.exchange_order_id.clone());
            if open {
                self.alert(
                    AlertType::Reconcile,
                    Severity::High,
                    Some(ex.symbol.clone()),
                    format!(
                        "exchange order {} ({cid}, {} {} {}) is not tracked locally",
                        ex.exchange_order_id, ex.side, ex.volume, ex.symbol
                    ),
                );
            }
            return;
        };
        let given_up = rec.view.status == OrderStatus::Error;
        let behind = ex.filled_volume > rec.view.filled_volume
            || (!rec.view.status.is_terminal() && ex.status != rec.view.status);
        if !given_up && !behind {
            self.synced_closed.insert(ex.exchange_order_id.clone());
            return;
        }
        if ex.filled_volume > Decimal::ZERO || !ex.status.is_terminal() {
            // Money moved, or the order still works: an operator should know.
            self.alert(
                AlertType::Reconcile,
                Severity::High,
                Some(ex.symbol.clone()),
                format!(
                    "order {cid} ({}), recorded as {}, is {} on the exchange (filled {}); tracking it again",
                    rec.view.purpose, rec.view.status, ex.status, ex.filled_volume
                ),
            );
        }
        if given_up {
            // Back to "outcome unknown", from where the exchange's view applies.
            rec.view.status = OrderStatus::Unknown;
        }
        let id = rec.view.id;
        self.by_client.insert(cid, id);
        self.orders.insert(id, rec);
        self.apply_update(id, &ex, ctx);
        if let Some(pid) = self.orders.get(&id).and_then(|o| o.view.position_id) {
            self.ensure_protection(pid, ctx);
        }
    }

    fn refresh_portfolio(&mut self, ctx: &mut Context<Self>) {
        if self.drained {
            return;
        }
        let exchange = self.deps.exchange.clone();
        let fut = async move { exchange.balances().await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            let _ = guarded(act, ctx, |act, _| match res {
                Ok(b) => act.publish_portfolio(b),
                Err(e) => tracing::warn!(error = %e, "balances unavailable; portfolio not valued"),
            });
        }));
    }

    fn asset_price_usd(&self, asset: &str) -> Option<Decimal> {
        let a = match asset {
            "XXBT" | "XBT" => "BTC",
            "XXRP" => "XRP",
            "ZUSD" => "USD",
            other => other,
        };
        if matches!(a, "USD" | "USDT" | "USDC") {
            return Some(Decimal::ONE);
        }
        self.prices
            .iter()
            .find(|(s, _)| s.base() == a && matches!(s.quote(), "USD" | "USDT" | "USDC"))
            .map(|(_, p)| *p)
            .or_else(|| {
                self.deps.paper.as_ref().and_then(|paper| {
                    ["USDT", "USD"]
                        .iter()
                        .filter_map(|q| Symbol::parse(&format!("{a}/{q}")).ok())
                        .find_map(|s| paper.last_price(&s))
                })
            })
    }

    fn publish_portfolio(&mut self, balances: BTreeMap<String, Decimal>) {
        let mut values = BTreeMap::new();
        for (asset, amount) in &balances {
            if let Some(px) = self.asset_price_usd(asset) {
                values.insert(asset.clone(), *amount * px);
            }
        }
        let equity: Decimal = values.values().copied().sum();
        if equity > self.peak_equity {
            self.peak_equity = equity;
        }
        let drawdown = if self.peak_equity > Decimal::ZERO {
            ((self.peak_equity - equity) / self.peak_equity * Decimal::ONE_HUNDRED).round_dp(4)
        } else {
            Decimal::ZERO
        };
        let mut exposure: BTreeMap<String, Decimal> = BTreeMap::new();
        for p in self.positions.values() {
            let px = self.prices.get(&p.symbol).copied().unwrap_or(p.entry_price);
            *exposure.entry(p.symbol.to_string()).or_default() += p.size * px;
        }
        // Spot positions (leverage 1) hold their base and spent their quote; margin ones move no
        // spot balance.
        let mut footprint: BTreeMap<String, Decimal> = BTreeMap::new();
        for p in self
            .positions
            .values()
            .filter(|p| p.leverage <= 1 && p.size > Decimal::ZERO)
        {
            let sign = match p.side {
                PositionSide::Long => Decimal::ONE,
                PositionSide::Short => -Decimal::ONE,
            };
            *footprint.entry(p.symbol.base().to_owned()).or_default() += sign * p.size;
            *footprint.entry(p.symbol.quote().to_owned()).or_default() -= sign * p.size * p.entry_price;
        }
        let allocation = values
            .iter()
            .filter(|_| equity > Decimal::ZERO)
            .map(|(a, v)| (a.clone(), (*v / equity * Decimal::ONE_HUNDRED).round_dp(4)))
            .collect();
        let update = PortfolioUpdate {
            meta: EventMeta::new(SOURCE, self.now()),
            equity_usd: equity,
            peak_equity_usd: self.peak_equity,
            drawdown_pct: drawdown,
            open_exposure_usd: exposure.values().copied().sum(),
            exposure_by_symbol: exposure,
            balances,
            allocation_pct: allocation,
            position_footprint: footprint,
        };
        if self.deps.outbox.as_ref().is_some_and(|o| o.portfolio) {
            self.outbox(OutboxEvent::of(&update, None));
        }
        self.deps.portfolio.publish(update);
    }

    // -------------------------------------------------------------- events

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
        if self.deps.outbox.as_ref().is_some_and(|o| o.execution) {
            let symbol = Some(event.symbol.to_string());
            self.outbox(OutboxEvent::of(&event, symbol));
        }
        self.deps.events.publish(event);
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
            None => self.writer.send(Op::Event(Box::new(event))),
        }
    }

    fn decision(&self, correlation_id: CorrelationId, stage: &str, symbol: &Symbol, detail: serde_json::Value) {
        self.writer.send(Op::Decision(DecisionRecord {
            correlation_id,
            timestamp: self.now(),
            stage: stage.to_owned(),
            symbol: Some(symbol.to_string()),
            detail,
        }));
    }

    fn alert(&self, alert_type: AlertType, severity: Severity, symbol: Option<Symbol>, message: String) {
        tracing::error!(?alert_type, %severity, message = %message, "execution alert");
        let priority = if alert_type == AlertType::StopLossMissing {
            Priority::Urgent
        } else {
            Priority::High
        };
        self.deps.alerts.publish(RiskAlert {
            meta: EventMeta::new(SOURCE, self.now()).with_priority(priority),
            alert_type,
            severity,
            message,
            action_required: None,
            breach: None,
            symbol,
        });
    }

    fn reset(&mut self) {
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
    }
}

type ExecResult = Result<ExecutionResult, ExecutionError>;

fn fail<A: Actor, T: 'static>(e: ExecutionError) -> ResponseActFuture<A, Result<T, ExecutionError>> {
    Box::pin(fut::ready(Err(e)))
}

impl Actor for OrderExecutionManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if !self.sup.on_started() {
            return;
        }
        let poll = Duration::from_millis(self.cfg().poll_interval_ms.max(10));
        ctx.run_interval(poll, |act, ctx| {
            let _ = guarded(act, ctx, |act, ctx| act.poll(ctx));
        });
        let snap = Duration::from_secs(self.cfg().snapshot_interval_secs.max(1));
        ctx.run_interval(snap, |act, ctx| {
            let _ = guarded(act, ctx, |act, ctx| act.on_tick(ctx));
        });
        ctx.run_interval(Duration::from_secs(self.cfg().sync_interval_secs.max(1)), |act, ctx| {
            let _ = guarded(act, ctx, |act, ctx| act.sync_with_exchange(ctx));
        });
        let check = Duration::from_millis(self.cfg().protection_check_interval_ms.max(10));
        ctx.run_interval(check, |act, ctx| {
            let _ = guarded(act, ctx, |act, ctx| act.check_protection(ctx));
        });
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
        self.reset();
    }
}

impl SupervisedActor for OrderExecutionManager {
    fn supervision(&self) -> &SupervisionHandle {
        &self.sup
    }
}

crate::supervised_basics!(OrderExecutionManager);

/// Answered once every store write the manager queued before it is done (the paper exchange's
/// save before them included): the store then shows what the manager knew when it was sent.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct FlushWrites;

impl Handler<FlushWrites> for OrderExecutionManager {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: FlushWrites, _: &mut Context<Self>) -> Self::Result {
        let flush = self.writer.acked(Op::Flush);
        Box::pin(
            async move {
                if let Err(e) = flush.await {
                    tracing::warn!(error = %e, "execution writes not flushed");
                }
            }
            .into_actor(self),
        )
    }
}

impl Handler<Drain> for OrderExecutionManager {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: Drain, _: &mut Context<Self>) -> Self::Result {
        // From here on the manager neither polls, places nor cancels: the process is stopping, and the
        // next one reconciles from the store and the exchange.
        self.drained = true;
        self.ready = false;
        self.writer.send(Op::SavePaper);
        let flush = self.writer.acked(Op::FlushAll);
        Box::pin(
            async move {
                if let Err(e) = flush.await {
                    tracing::error!(error = %e, "execution state not flushed at shutdown");
                }
            }
            .into_actor(self),
        )
    }
}

impl Handler<CandleClosed> for OrderExecutionManager {
    type Result = ();
    fn handle(&mut self, msg: CandleClosed, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, ctx| {
            // An older candle than the last one seen for the symbol never overwrites its price.
            let end = msg.candle.open_time + chrono::Duration::seconds(msg.candle.timeframe.seconds());
            if act.price_at.get(&msg.candle.symbol).is_some_and(|last| end < *last) {
                return;
            }
            act.price_at.insert(msg.candle.symbol.clone(), end);
            act.prices.insert(msg.candle.symbol.clone(), msg.candle.close);
            // Only the finest timeframe of a symbol moves the paper exchange: the coarser candles repeat the
            // same trades.
            let finest = act
                .feed_timeframe
                .entry(msg.candle.symbol.clone())
                .or_insert(msg.candle.timeframe);
            if msg.candle.timeframe < *finest {
                *finest = msg.candle.timeframe;
            }
            if act.deps.feed_paper && msg.candle.timeframe == *finest {
                if let Some(paper) = &act.deps.paper {
                    paper.on_candle(&msg.candle);
                }
            }
            act.on_prices(ctx);
            if act.deps.paper.is_some() {
                act.poll(ctx);
            }
            // The watchdog on business time too: a replay's minutes pass faster than its timer.
            act.check_protection(ctx);
        });
    }
}

/// How many of these last prices, applied in order, would leave the manager's orders and
/// positions exactly as they are (no stop breached, no trailing stop moved, nothing in flight).
/// A backtest hands the candles of such prices to the pipeline in one batch.
#[derive(Debug, Clone, Message)]
#[rtype(result = "usize")]
pub struct QuietPrefix(pub Vec<(Symbol, Decimal)>);

impl Handler<QuietPrefix> for OrderExecutionManager {
    type Result = usize;
    fn handle(&mut self, msg: QuietPrefix, ctx: &mut Context<Self>) -> usize {
        guarded(self, ctx, |act, _| act.quiet_prefix(&msg.0)).unwrap_or(0)
    }
}

/// Asks for an immediate status poll (paper mode after a price update, tests).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct PollNow;

impl Handler<PollNow> for OrderExecutionManager {
    type Result = ();
    fn handle(&mut self, _: PollNow, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, ctx| act.poll(ctx));
    }
}

/// Runs the exchange sync (untracked open and recently closed orders with our client ids) now
/// (tests, operators).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct SyncNow;

impl Handler<SyncNow> for OrderExecutionManager {
    type Result = ();
    fn handle(&mut self, _: SyncNow, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, ctx| act.sync_with_exchange(ctx));
    }
}

/// A last-price update (paper mode, tests): recorded for sizing, valuation and trailing stops.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct PriceUpdate {
    pub symbol: Symbol,
    pub price: Decimal,
}

impl Handler<PriceUpdate> for OrderExecutionManager {
    type Result = ();
    fn handle(&mut self, msg: PriceUpdate, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, ctx| {
            act.prices.insert(msg.symbol, msg.price);
            act.on_prices(ctx);
            act.poll(ctx);
        });
    }
}

/// Runs the snapshot / trailing-stop / valuation pass now.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct SnapshotNow;

impl Handler<SnapshotNow> for OrderExecutionManager {
    type Result = ();
    fn handle(&mut self, _: SnapshotNow, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, ctx| act.on_tick(ctx));
    }
}

/// How much the manager is tracking: orders not final yet and positions not closed. A feed that
/// runs ahead of the wall clock (a backtest) hands over candles one minute at a time while any
/// is tracked, so fills, stops and trailing stops see every price at its own business time.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Activity")]
pub struct GetActivity;

/// The answer to [`GetActivity`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, MessageResponse)]
pub struct Activity {
    pub orders: usize,
    pub positions: usize,
    /// Exchange requests and store writes under way (placements, protective orders, cancels, a
    /// poll): a backtest lets the pipeline settle until none is left.
    pub in_flight: usize,
}

impl Activity {
    pub fn idle(&self) -> bool {
        self.orders == 0 && self.positions == 0
    }
}

impl Handler<GetActivity> for OrderExecutionManager {
    type Result = Activity;
    fn handle(&mut self, _: GetActivity, ctx: &mut Context<Self>) -> Activity {
        guarded(self, ctx, |act, _| Activity {
            orders: act.orders.len() + act.placing.len(),
            positions: act.positions.len(),
            in_flight: act.placing.len()
                + act.protect_inflight.len()
                + act.cancel_inflight.len()
                + usize::from(act.polling),
        })
        .unwrap_or(Activity {
            orders: usize::MAX,
            positions: usize::MAX,
            in_flight: usize::MAX,
        })
    }
}

/// Whether the manager has loaded its state and reconciled with the exchange.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "bool")]
pub struct IsReady;

impl Handler<IsReady> for OrderExecutionManager {
    type Result = bool;
    fn handle(&mut self, _: IsReady, ctx: &mut Context<Self>) -> bool {
        guarded(self, ctx, |act, _| act.ready && act.reconciled).unwrap_or(false)
    }
}

impl Handler<ExecuteTrade> for OrderExecutionManager {
    type Result = ResponseActFuture<Self, ExecResult>;
    fn handle(&mut self, msg: ExecuteTrade, ctx: &mut Context<Self>) -> Self::Result {
        guarded(self, ctx, |act, ctx| act.execute(msg, ctx))
            .unwrap_or_else(|e| fail(ExecutionError::Unavailable(e.to_string())))
    }
}

impl Handler<ClosePosition> for OrderExecutionManager {
    type Result = ResponseActFuture<Self, ExecResult>;
    fn handle(&mut self, msg: ClosePosition, ctx: &mut Context<Self>) -> Self::Result {
        guarded(self, ctx, |act, ctx| {
            act.close(msg.position_id, msg.fraction, msg.reason, msg.correlation_id, ctx)
        })
        .unwrap_or_else(|e| fail(ExecutionError::Unavailable(e.to_string())))
    }
}

impl Handler<CloseAllPositions> for OrderExecutionManager {
    type Result = ResponseActFuture<Self, Result<Vec<ExecutionResult>, ExecutionError>>;
    fn handle(&mut self, msg: CloseAllPositions, ctx: &mut Context<Self>) -> Self::Result {
        let res = guarded(self, ctx, |act, ctx| {
            let ids: Vec<Uuid> = act
                .positions
                .values()
                .filter(|p| p.status == PositionStatus::Open)
                .map(|p| p.id)
                .collect();
            let futs: Vec<_> = ids
                .into_iter()
                .map(|id| {
                    let cid = act.positions.get(&id).map(|p| p.correlation_id).unwrap_or_default();
                    act.close(id, Decimal::ONE, msg.reason.clone(), cid, ctx)
                })
                .collect();
            futs
        });
        match res {
            Err(e) => fail(ExecutionError::Unavailable(e.to_string())),
            Ok(futs) => {
                let mut all: ResponseActFuture<Self, Vec<ExecResult>> = Box::pin(fut::ready(Vec::new()));
                for f in futs {
                    all = Box::pin(all.then(move |mut acc, _, _| {
                        f.map(move |r, _, _| {
                            acc.push(r);
                            acc
                        })
                    }));
                }
                Box::pin(all.map(|results, _, _| {
                    let mut ok = Vec::new();
                    let mut errors = Vec::new();
                    for r in results {
                        match r {
                            Ok(v) => ok.push(v),
                            Err(e) => errors.push(e.to_string()),
                        }
                    }
                    if ok.is_empty() && !errors.is_empty() {
                        Err(ExecutionError::Unavailable(errors.join("; ")))
                    } else {
                        Ok(ok)
                    }
                }))
            }
        }
    }
}

impl Handler<ModifyPosition> for OrderExecutionManager {
    type Result = ResponseActFuture<Self, Result<PositionView, ExecutionError>>;
    fn handle(&mut self, msg: ModifyPosition, ctx: &mut Context<Self>) -> Self::Result {
        let steps = match guarded(self, ctx, |act, _| act.plan_modify(&msg)) {
            Err(e) => return fail(ExecutionError::Unavailable(e.to_string())),
            Ok(Err(e)) => return fail(e),
            Ok(Ok(steps)) => steps,
        };
        let pid = msg.position_id;
        let mut chain: ResponseActFuture<Self, Result<(), ExecutionError>> = Box::pin(fut::ready(Ok(())));
        for (kind, target) in steps {
            chain = Box::pin(chain.then(move |prev, act, ctx| {
                if let Err(e) = prev {
                    return fail(e);
                }
                act.move_protection(pid, kind, target, ctx)
            }));
        }
        Box::pin(chain.map(move |res, act, _| {
            res?;
            act.positions
                .get(&pid)
                .cloned()
                .ok_or_else(|| ExecutionError::Invalid(format!("position {pid} closed meanwhile")))
        }))
    }
}

impl Handler<CancelOrder> for OrderExecutionManager {
    type Result = ResponseActFuture<Self, Result<OrderView, ExecutionError>>;
    fn handle(&mut self, msg: CancelOrder, ctx: &mut Context<Self>) -> Self::Result {
        let res = guarded(self, ctx, |act, _| {
            let Some(rec) = act.orders.get(&msg.order_id).cloned() else {
                return Err(ExecutionError::Invalid(format!("order {} is not open", msg.order_id)));
            };
            if act.placing.contains(&msg.order_id) {
                return Err(ExecutionError::NotAllowed("order is still being placed".into()));
            }
            act.cancel_requested.insert(msg.order_id);
            act.decision(
                rec.view.correlation_id,
                "order_cancel_requested",
                &rec.view.symbol,
                serde_json::json!({"order_id": msg.order_id, "reason": msg.reason}),
            );
            Ok(rec)
        });
        let rec = match res {
            Err(e) => return fail(ExecutionError::Unavailable(e.to_string())),
            Ok(Err(e)) => return fail(e),
            Ok(Ok(rec)) => rec,
        };
        let exchange = self.deps.exchange.clone();
        let cid = rec.view.client_order_id.clone();
        let id = rec.view.id;
        let fut = async move {
            let cancelled = exchange.cancel_order(OrderRef::Client(cid.clone())).await;
            let seen = exchange.query_orders(vec![OrderRef::Client(cid)]).await;
            (cancelled, seen)
        };
        Box::pin(fut.into_actor(self).map(move |(cancelled, seen), act, ctx| {
            if let Ok(orders) = &seen {
                for ex in orders {
                    let _ = guarded(act, ctx, |act, ctx| act.apply_update(id, ex, ctx));
                }
            }
            if act.orders.contains_key(&id) {
                // Not shown closed yet (or the cancel failed): kept at until it is.
                let _ = guarded(act, ctx, |act, ctx| act.request_cancel(id, ctx));
            }
            let view = seen.ok().and_then(|v| v.into_iter().next()).map(|ex| {
                let mut v = rec.view.clone();
                v.status = ex.status;
                v.filled_volume = ex.filled_volume;
                v.avg_fill_price = ex.avg_fill_price;
                v.fee = ex.fee;
                v
            });
            match (cancelled, view) {
                (Ok(()), Some(v)) => Ok(v),
                (Ok(()), None) => Ok(rec.view),
                (Err(e), _) => Err(match e {
                    ExchangeError::Rejected(m) | ExchangeError::Invalid(m) => ExecutionError::Rejected(m),
                    ExchangeError::Unknown(m) => ExecutionError::Unknown(m),
                    other => ExecutionError::Unavailable(other.to_string()),
                }),
            }
        }))
    }
}

impl Handler<GetOrders> for OrderExecutionManager {
    type Result = ResponseFuture<Result<Vec<OrderView>, ExecutionError>>;
    fn handle(&mut self, msg: GetOrders, _: &mut Context<Self>) -> Self::Result {
        let flush = self.writer.acked(Op::Flush);
        let store = self.deps.orders.clone();
        Box::pin(async move {
            let _ = flush.await;
            let list = store
                .list_orders(msg.symbol, msg.open_only, 1000)
                .await
                .map_err(|e| ExecutionError::Unavailable(e.to_string()))?;
            Ok(list
                .into_iter()
                .map(|r| r.view)
                .filter(|v| msg.correlation_id.is_none_or(|c| v.correlation_id == c))
                .collect())
        })
    }
}

impl Handler<GetPositions> for OrderExecutionManager {
    type Result = ResponseActFuture<Self, Result<Vec<PositionView>, ExecutionError>>;
    fn handle(&mut self, msg: GetPositions, _: &mut Context<Self>) -> Self::Result {
        let flush = self.writer.acked(Op::Flush);
        let store = self.deps.orders.clone();
        let fut = async move {
            let _ = flush.await;
            store
                .list_positions(msg.symbol, msg.status, 1000)
                .await
                .map_err(|e| ExecutionError::Unavailable(e.to_string()))
        };
        Box::pin(fut.into_actor(self).map(|res, act, _| {
            res.map(|list| {
                list.into_iter()
                    .map(|mut p| {
                        if matches!(p.status, PositionStatus::Open | PositionStatus::Closing) {
                            if let Some(&px) = act.prices.get(&p.symbol) {
                                p.unrealized_pnl = Some(position_pnl(p.side, p.entry_price, px, p.size, p.leverage).0);
                            }
                        }
                        p
                    })
                    .collect()
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn pnl_follows_the_reference_examples() {
        let (p, pct) = position_pnl(PositionSide::Long, dec!(45000), dec!(46000), dec!(0.1), 1);
        assert_eq!(p, dec!(100));
        assert_eq!(pct.round_dp(3), dec!(2.222));
        assert_eq!(
            position_pnl(PositionSide::Long, dec!(45000), dec!(44000), dec!(0.1), 1).0,
            dec!(-100)
        );
        assert_eq!(
            position_pnl(PositionSide::Short, dec!(45000), dec!(44000), dec!(0.1), 1).0,
            dec!(100)
        );
        // 0.1 margin × 5 leverage = 0.5 traded.
        let (p, pct) = position_pnl(PositionSide::Long, dec!(45000), dec!(46000), dec!(0.5), 5);
        assert_eq!(p, dec!(500));
        assert_eq!(pct.round_dp(2), dec!(11.11));
        assert_eq!(
            position_pnl(PositionSide::Long, dec!(0), dec!(1), dec!(1), 1),
            (dec!(0), dec!(0))
        );
    }
}
