//! A position as the execution manager tracks it and the API shows it.

use super::{CorrelationId, PositionSide, PositionStatus, Symbol};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A position as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PositionView {
    pub id: Uuid,
    pub correlation_id: CorrelationId,
    pub symbol: Symbol,
    pub side: PositionSide,
    pub status: PositionStatus,
    pub size: Decimal,
    pub entry_price: Decimal,
    pub exit_price: Option<Decimal>,
    pub leverage: u32,
    pub stop_loss: Option<Decimal>,
    pub take_profit: Option<Decimal>,
    pub stop_loss_order_id: Option<Uuid>,
    pub take_profit_order_id: Option<Uuid>,
    pub realized_pnl: Decimal,
    pub unrealized_pnl: Option<Decimal>,
    pub fees: Decimal,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}
