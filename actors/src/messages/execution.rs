use super::{bus_event, EventMeta};
use crate::domain::{ClientOrderId, OrderStatus, Side, Symbol};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionEventType {
    OrderPlaced,
    OrderPartiallyFilled,
    OrderFilled,
    OrderCancelled,
    OrderRejected,
    OrderError,
    PositionOpened,
    PositionClosed,
}

/// An order or position lifecycle event (topic `execution_events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionEvent {
    pub meta: EventMeta,
    pub event_type: ExecutionEventType,
    pub order_id: String,
    pub client_order_id: Option<ClientOrderId>,
    pub symbol: Symbol,
    pub side: Side,
    pub status: OrderStatus,
    /// Base units filled by this event.
    pub size: Decimal,
    pub fill_price: Option<Decimal>,
    pub fee: Decimal,
    /// Realised P&L net of fees, on position-closing events.
    pub realized_pnl: Option<Decimal>,
    pub position_id: Option<String>,
}
bus_event!(ExecutionEvent, "execution_events", |e| e.symbol.to_string());
