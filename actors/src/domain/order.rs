//! An order as the execution manager tracks it and the API and the decision trail show it.

use super::{ClientOrderId, CorrelationId, OrderPurpose, OrderStatus, OrderType, Side, Symbol};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An order as the API and the decision trail show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderView {
    pub id: Uuid,
    pub client_order_id: ClientOrderId,
    pub exchange_order_id: Option<String>,
    pub correlation_id: CorrelationId,
    pub position_id: Option<Uuid>,
    pub symbol: Symbol,
    pub side: Side,
    pub order_type: OrderType,
    pub purpose: OrderPurpose,
    pub status: OrderStatus,
    pub volume: Decimal,
    pub filled_volume: Decimal,
    pub price: Option<Decimal>,
    pub avg_fill_price: Option<Decimal>,
    pub fee: Decimal,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
