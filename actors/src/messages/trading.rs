use super::{bus_event, EventMeta};
use crate::domain::{Symbol, TradeAction};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Trading decision (topic `trading_signals`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TradingSignal {
    pub meta: EventMeta,
    pub symbol: Symbol,
    pub action: TradeAction,
    pub confidence: f64,
    pub entry_price: Option<Decimal>,
    pub stop_loss_pct: Option<Decimal>,
    pub take_profit_pct: Option<Decimal>,
    /// Percent of equity to commit (0..100).
    pub position_size_pct: Option<Decimal>,
    pub leverage: u32,
    pub reasoning: String,
}
bus_event!(TradingSignal, "trading_signals", |e| e.symbol.to_string());
