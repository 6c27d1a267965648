//! Traits the outside world implements: stores, the exchange, model clients, the market feed.
//! Every method returns a `'static` boxed future so actors can run it with `into_actor`.

use crate::domain::{Candle, ClientOrderId, CorrelationId, OrderStatus, OrderType, Side, Symbol};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

// ---------------------------------------------------------------- stores

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store query failed: {0}")]
    Query(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

pub type StoreFuture<T> = BoxFuture<'static, Result<T, StoreError>>;

/// Named JSON state documents (coordinator state, risk state, …), upserted whole.
pub trait StateStore: Send + Sync + 'static {
    fn load_state(&self, key: &str) -> StoreFuture<Option<serde_json::Value>>;
    fn save_state(&self, key: &str, state: serde_json::Value) -> StoreFuture<()>;
}

/// One agent output, kept for the audit trail and `GET /agents/{name}/latest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentOutputRecord {
    pub agent: String,
    pub symbol: String,
    pub timestamp: DateTime<Utc>,
    pub correlation_id: CorrelationId,
    pub model: Option<String>,
    pub output: serde_json::Value,
}

/// One link of a decision chain (signal, verdict, order, fill, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DecisionRecord {
    pub correlation_id: CorrelationId,
    pub timestamp: DateTime<Utc>,
    pub stage: String,
    pub symbol: Option<String>,
    pub detail: serde_json::Value,
}

/// One model answer (or failure) of an agent run, kept in `model_comparisons` for A/B
/// comparison and replay (keyed by agent, model and prompt hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelComparisonRecord {
    pub correlation_id: CorrelationId,
    pub timestamp: DateTime<Utc>,
    pub symbol: String,
    pub agent: String,
    pub model: String,
    pub provider: String,
    /// SHA-256 (hex) of the system prompt, a NUL byte and the user prompt.
    pub prompt_hash: String,
    /// The decided action (trading decision) or bias (sentiment), when the answer was valid.
    pub action: Option<String>,
    pub confidence: Option<f64>,
    /// The validated answer as JSON, when valid.
    pub response: Option<serde_json::Value>,
    pub latency_ms: u64,
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub cost_usd: Decimal,
    /// Why the answer is missing or invalid.
    pub error: Option<String>,
}

/// The audit trail: agent outputs and decision chains.
pub trait AuditStore: Send + Sync + 'static {
    fn record_agent_output(&self, rec: AgentOutputRecord) -> StoreFuture<()>;
    fn latest_agent_output(&self, agent: &str, symbol: &str) -> StoreFuture<Option<AgentOutputRecord>>;
    fn record_decision(&self, rec: DecisionRecord) -> StoreFuture<()>;
    fn decision_chain(&self, correlation_id: CorrelationId) -> StoreFuture<Vec<DecisionRecord>>;

    /// The latest decision records, newest first, of one symbol when given.
    fn recent_decisions(&self, symbol: Option<String>, limit: usize) -> StoreFuture<Vec<DecisionRecord>> {
        let _ = (symbol, limit);
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Stores one model answer. Stores that keep no comparisons accept and drop it.
    fn record_model_comparison(&self, rec: ModelComparisonRecord) -> StoreFuture<()> {
        let _ = rec;
        Box::pin(async { Ok(()) })
    }

    /// The stored model answers of `agent`, oldest first.
    fn model_comparisons(&self, agent: &str) -> StoreFuture<Vec<ModelComparisonRecord>> {
        let _ = agent;
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// Process-level health of the store.
pub trait StoreHealth: Send + Sync + 'static {
    /// `Ok` when the store answers; the in-memory store always does.
    fn ping(&self) -> StoreFuture<()>;
    /// Whether state survives a restart.
    fn durable(&self) -> bool;
}

/// Every store the actors use, as shared trait objects.
#[derive(Clone)]
pub struct Stores {
    pub state: Arc<dyn StateStore>,
    pub audit: Arc<dyn AuditStore>,
    pub health: Arc<dyn StoreHealth>,
    /// Orders, their status log, positions, snapshots and trades.
    pub orders: Arc<dyn OrderStore>,
    /// Rebalance history and hodl bags.
    pub portfolio: Arc<dyn crate::portfolio::PortfolioStore>,
}

// ---------------------------------------------------------------- order store

/// One order as stored: the API view plus what only execution needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub view: crate::domain::OrderView,
    pub price2: Option<Decimal>,
    pub leverage: u32,
    pub reduce_only: bool,
    /// The other half of a stop-loss / take-profit pair.
    pub linked_order_id: Option<uuid::Uuid>,
    pub error_message: Option<String>,
    /// Protection planned for the position an entry order opens.
    pub stop_loss: Option<Decimal>,
    pub take_profit: Option<Decimal>,
}

/// One order status transition (`order_status_log`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusTransition {
    pub order_id: uuid::Uuid,
    pub from: Option<OrderStatus>,
    pub to: OrderStatus,
    pub filled_volume: Decimal,
    pub detail: serde_json::Value,
    pub at: DateTime<Utc>,
}

/// One execution (fill) of an order (`trades`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TradeRecord {
    pub id: uuid::Uuid,
    pub order_id: uuid::Uuid,
    pub position_id: Option<uuid::Uuid>,
    pub correlation_id: CorrelationId,
    pub symbol: Symbol,
    pub side: Side,
    pub volume: Decimal,
    pub price: Decimal,
    pub fee: Decimal,
    pub realized_pnl: Option<Decimal>,
    pub executed_at: DateTime<Utc>,
}

/// One periodic valuation of an open position (`position_snapshots`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PositionSnapshotRecord {
    pub position_id: uuid::Uuid,
    pub at: DateTime<Utc>,
    pub price: Decimal,
    pub unrealized_pnl: Decimal,
    pub unrealized_pnl_pct: Decimal,
}

/// A bus event bound for the event export's transactional outbox: written in the same
/// transaction as the state it describes, so the event exists exactly when that state does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEvent {
    /// The event id (`Nats-Msg-Id` of the export).
    pub id: uuid::Uuid,
    /// The bus topic (`execution_events`, `portfolio_updates`).
    pub topic: String,
    /// The subject's symbol token, if the event is about one symbol.
    pub symbol: Option<String>,
    pub payload: serde_json::Value,
}

impl OutboxEvent {
    /// The outbox form of a bus event.
    ///
    /// # Errors
    /// When the event does not serialise (not expected for bus events).
    pub fn of<E: crate::messages::BusEvent + Serialize>(
        event: &E,
        symbol: Option<String>,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            id: event.meta().id,
            topic: E::TOPIC.to_owned(),
            symbol,
            payload: serde_json::to_value(event)?,
        })
    }
}

/// Everything one fill changes, written as one unit: the order(s) and their status log, the trade,
/// and the position, with the events that describe them (when the event export is on). A crash
/// never leaves the order filled without its trade and position, nor the fill without its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FillWrite {
    pub orders: Vec<OrderRecord>,
    pub statuses: Vec<StatusTransition>,
    pub trades: Vec<TradeRecord>,
    pub positions: Vec<crate::domain::PositionView>,
    /// Appended to the export outbox in the same transaction (stores without one ignore them).
    #[serde(default)]
    pub events: Vec<OutboxEvent>,
}

impl FillWrite {
    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
            && self.statuses.is_empty()
            && self.trades.is_empty()
            && self.positions.is_empty()
            && self.events.is_empty()
    }
}

/// Orders, positions and trades of the execution manager. Writes are upserts keyed by id.
pub trait OrderStore: Send + Sync + 'static {
    /// Writes a fill atomically (one PostgreSQL transaction): all of it or nothing.
    fn record_fill(&self, fill: FillWrite) -> StoreFuture<()>;
    /// The order with our client id, whatever its status.
    fn find_order_by_client_id(&self, client_order_id: ClientOrderId) -> StoreFuture<Option<OrderRecord>>;
    fn upsert_order(&self, rec: OrderRecord) -> StoreFuture<()>;
    fn append_status(&self, t: StatusTransition) -> StoreFuture<()>;
    /// Orders still in flight: pending, open, partially filled, and `error` orders not yet reconciled.
    fn load_active_orders(&self) -> StoreFuture<Vec<OrderRecord>>;
    fn get_order(&self, id: uuid::Uuid) -> StoreFuture<Option<OrderRecord>>;
    /// Newest first.
    fn list_orders(&self, symbol: Option<Symbol>, open_only: bool, limit: usize) -> StoreFuture<Vec<OrderRecord>>;
    fn status_log(&self, order_id: uuid::Uuid) -> StoreFuture<Vec<StatusTransition>>;
    fn upsert_position(&self, pos: crate::domain::PositionView) -> StoreFuture<()>;
    fn load_open_positions(&self) -> StoreFuture<Vec<crate::domain::PositionView>>;
    fn get_position(&self, id: uuid::Uuid) -> StoreFuture<Option<crate::domain::PositionView>>;
    /// Newest first; `status` `None` = all.
    fn list_positions(
        &self,
        symbol: Option<Symbol>,
        status: Option<crate::domain::PositionStatus>,
        limit: usize,
    ) -> StoreFuture<Vec<crate::domain::PositionView>>;
    fn insert_trade(&self, t: TradeRecord) -> StoreFuture<()>;
    /// Newest first.
    fn list_trades(&self, symbol: Option<Symbol>, limit: usize) -> StoreFuture<Vec<TradeRecord>>;
    fn insert_snapshot(&self, s: PositionSnapshotRecord) -> StoreFuture<()>;
}

// ---------------------------------------------------------------- exchange

/// Precision and minimums of one pair, read from the exchange at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairInfo {
    pub symbol: Symbol,
    /// The exchange's own name for the pair (e.g. `XBTUSDT`).
    pub exchange_name: String,
    pub tick_size: Decimal,
    pub price_decimals: u32,
    pub lot_decimals: u32,
    pub ordermin: Decimal,
    pub costmin: Decimal,
    pub max_leverage_buy: u32,
    pub max_leverage_sell: u32,
}

impl PairInfo {
    /// Price rounded to the nearest tick.
    pub fn quantise_price(&self, price: Decimal) -> Decimal {
        if self.tick_size.is_zero() {
            return price.round_dp(self.price_decimals);
        }
        ((price / self.tick_size).round() * self.tick_size).normalize()
    }

    /// Volume truncated (never rounded up) to the lot decimals.
    pub fn quantise_volume(&self, volume: Decimal) -> Decimal {
        volume.trunc_with_scale(self.lot_decimals).normalize()
    }
}

/// An order as sent to the exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderRequest {
    pub client_order_id: ClientOrderId,
    pub symbol: Symbol,
    pub side: Side,
    pub order_type: OrderType,
    /// Base units.
    pub volume: Decimal,
    /// Limit price, or trigger price for stop-loss / take-profit orders.
    pub price: Option<Decimal>,
    /// Limit price of `*-limit` contingent orders.
    pub price2: Option<Decimal>,
    pub leverage: Option<u32>,
    pub reduce_only: bool,
    pub post_only: bool,
    /// Validate only; nothing is placed.
    pub validate: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderAck {
    pub exchange_order_id: String,
    pub client_order_id: ClientOrderId,
    pub description: String,
}

/// The exchange's view of one order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExchangeOrder {
    pub exchange_order_id: String,
    pub client_order_id: Option<ClientOrderId>,
    pub symbol: Symbol,
    pub side: Side,
    pub order_type: OrderType,
    pub status: OrderStatus,
    pub volume: Decimal,
    pub filled_volume: Decimal,
    pub avg_fill_price: Option<Decimal>,
    pub fee: Decimal,
    pub price: Option<Decimal>,
    pub opened_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

/// Identifies an order to cancel or query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderRef {
    Exchange(String),
    Client(ClientOrderId),
}

/// Exchange failures, classified by what the caller may do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ExchangeError {
    /// Nothing happened on the exchange; retry with back-off (new nonce, new signature).
    #[error("transient exchange error: {0}")]
    Retryable(String),
    /// The exchange refused the request; never retry the same request.
    #[error("rejected by the exchange: {0}")]
    Rejected(String),
    /// The request may or may not have taken effect (timeout, 5xx, EService); query by client id first.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// Local rate limiter or the exchange's limiter said wait.
    #[error("rate limited: {0}")]
    RateLimited(String),
    /// Local validation (precision, minimums, unknown pair) failed before sending.
    #[error("invalid order: {0}")]
    Invalid(String),
}

impl ExchangeError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_) | Self::RateLimited(_))
    }
}

pub type ExchangeFuture<T> = BoxFuture<'static, Result<T, ExchangeError>>;

/// One exchange account: Kraken live or the paper exchange.
pub trait Exchange: Send + Sync + 'static {
    fn pairs(&self) -> ExchangeFuture<Vec<PairInfo>>;
    fn place_order(&self, req: OrderRequest) -> ExchangeFuture<OrderAck>;
    fn cancel_order(&self, order: OrderRef) -> ExchangeFuture<()>;
    fn query_orders(&self, orders: Vec<OrderRef>) -> ExchangeFuture<Vec<ExchangeOrder>>;
    fn open_orders(&self) -> ExchangeFuture<Vec<ExchangeOrder>>;
    /// Recently closed orders (filled, cancelled, expired), newest first; exchanges without a
    /// history (the paper exchange keeps its own) return none.
    fn closed_orders(&self) -> ExchangeFuture<Vec<ExchangeOrder>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn balances(&self) -> ExchangeFuture<BTreeMap<String, Decimal>>;
    /// Dead man's switch: cancel everything after `timeout_secs` unless refreshed (0 disarms).
    fn cancel_all_after(&self, timeout_secs: u32) -> ExchangeFuture<()>;
}

// ---------------------------------------------------------------- models

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRequest {
    pub model: String,
    pub system_prompt: String,
    pub user_prompt: String,
    pub max_tokens: u32,
    pub temperature: f64,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelResponse {
    pub provider: String,
    pub model: String,
    pub text: String,
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub latency_ms: u64,
    pub cost_usd: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ModelError {
    #[error("model call timed out after {0} ms")]
    Timeout(u64),
    #[error("model provider error: {0}")]
    Provider(String),
    #[error("model rate limited: {0}")]
    RateLimited(String),
    #[error("model output unusable: {0}")]
    BadOutput(String),
    #[error("model not configured: {0}")]
    NotConfigured(String),
}

pub type ModelFuture = BoxFuture<'static, Result<ModelResponse, ModelError>>;

/// A chat-completion style model endpoint.
pub trait ModelClient: Send + Sync + 'static {
    fn provider(&self) -> &str;
    fn complete(&self, req: ModelRequest) -> ModelFuture;
}

// ---------------------------------------------------------------- market

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    #[error("market data source failed: {0}")]
    Source(String),
    #[error("market data is malformed: {0}")]
    Malformed(String),
}

/// What a feed yields on each poll.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedItem {
    /// Newly closed candles, in time order.
    Candles(Vec<Candle>),
    /// Nothing new yet; poll again later.
    Idle,
    /// A finite feed (replay) is exhausted.
    End,
}

/// A source of closed candles: simulated, Kraken REST, or a CSV replay.
pub trait MarketFeed: Send + 'static {
    fn symbols(&self) -> Vec<Symbol>;
    fn next(&mut self) -> BoxFuture<'_, Result<FeedItem, FeedError>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn pair() -> PairInfo {
        crate::testing::btc_usdt_pair()
    }

    #[test]
    fn quantises_price_to_tick_and_truncates_volume() {
        let p = pair();
        assert_eq!(p.quantise_price(dec!(45250.06)), dec!(45250.1));
        assert_eq!(p.quantise_price(dec!(45250.04)), dec!(45250));
        assert_eq!(p.quantise_volume(dec!(0.123456789)), dec!(0.12345678));
    }
}
