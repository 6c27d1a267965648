//! The response bodies of the control API that are not a single actor or store value: each is
//! what a handler serialises and what the OpenAPI document declares, so the document cannot
//! describe a shape the server does not send.

use crate::settings::Role;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use triplegain_actors::domain::{CorrelationId, TradingMode};
use triplegain_actors::execution::api::{OrderView, PositionView};
use triplegain_actors::portfolio::rebalance::{Allocation, TargetAllocation};
use triplegain_actors::portfolio::store::HodlTransaction;
use triplegain_actors::ports::{DecisionRecord, StatusTransition, TradeRecord};
use triplegain_actors::risk::RiskVerdict;
use triplegain_actors::supervision::{ActorRecord, RestartPolicy};
use utoipa::ToSchema;
use uuid::Uuid;

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    /// Always `alive`.
    #[schema(pattern = "^alive$")]
    pub status: &'static str,
}

/// Whether the server is ready.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    Ready,
    NotReady,
}

/// `GET /readyz`: 200 when ready, 503 with the reasons when not.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub status: ReadyStatus,
    /// Why not ready (absent when ready).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// `GET /api/v1/actors`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActorList {
    pub actors: Vec<ActorRecord>,
    pub restart_policy: RestartPolicy,
}

/// `POST /api/v1/actors/{name}/crash`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FaultInjected {
    pub actor: String,
    pub injected: bool,
    pub record: Option<ActorRecord>,
}

/// `GET /api/v1/session`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    pub name: String,
    pub role: Role,
    pub mode: TradingMode,
    pub business_time: DateTime<Utc>,
}

/// `GET /api/v1/positions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PositionList {
    pub positions: Vec<PositionView>,
}

/// `GET /api/v1/orders`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderList {
    pub orders: Vec<OrderView>,
}

/// `GET /api/v1/orders/{id}`: the order, how it relates to others, and its status history.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderDetail {
    pub order: OrderView,
    pub reduce_only: bool,
    /// The entry a protective order belongs to, or the order it replaced.
    pub linked_order_id: Option<Uuid>,
    pub error_message: Option<String>,
    /// Transitions, oldest first.
    pub status_log: Vec<StatusTransition>,
}

/// `GET /api/v1/trades`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TradeList {
    pub trades: Vec<TradeRecord>,
}

/// `POST /api/v1/trades/validate`: the risk engine's verdict, nothing placed.
#[derive(Debug, Serialize, ToSchema)]
pub struct TradeCheck {
    pub correlation_id: CorrelationId,
    pub verdict: RiskVerdict,
}

/// How a manual market order was placed.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarketOrderNote {
    /// Always `limit`: a market order is placed as a bounded limit order.
    #[schema(pattern = "^limit$")]
    pub placed_as: &'static str,
    /// The risk engine's market price the bound is taken from.
    pub market_price: Decimal,
    pub limit_price: Option<Decimal>,
    pub note: &'static str,
}

/// `POST /api/v1/trades`: the verdict, the orders placed and the position they open.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlacedTrade {
    pub correlation_id: CorrelationId,
    /// Absent on a result recovered from the order store after a crash (`recovered: true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<RiskVerdict>,
    /// Present and `true` when a repeat of a request that died was answered from the order
    /// store.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub recovered: bool,
    pub orders: Vec<OrderView>,
    pub position_id: Option<Uuid>,
    /// Present for `order_type: market`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub market_order: Option<MarketOrderNote>,
}

/// `GET /api/v1/decisions/{correlation_id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionChain {
    pub correlation_id: Uuid,
    /// Oldest first.
    pub records: Vec<DecisionRecord>,
}

/// `GET /api/v1/portfolio/allocation`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AllocationReport {
    pub timestamp: DateTime<Utc>,
    pub current_allocation: Allocation,
    pub target_allocation: TargetAllocation,
    pub threshold_pct: Decimal,
    pub needs_rebalance: bool,
}

/// `GET /api/v1/hodl/history`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HodlHistory {
    /// Newest first.
    pub transactions: Vec<HodlTransaction>,
    #[schema(minimum = 0)]
    pub count: usize,
    pub asset_filter: Option<String>,
    pub timestamp: DateTime<Utc>,
}
