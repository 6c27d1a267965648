//! Domain types shared by every actor: symbols, sides, enums of the trading
//! vocabulary, candles, identifiers, orders and positions. Money is always `rust_decimal::Decimal`.

mod ids;
mod market;
mod order;
mod position;
mod symbol;
mod vocab;

pub use ids::{ClientOrderId, CorrelationId};
pub use market::{Candle, Timeframe};
pub use order::OrderView;
pub use position::PositionView;
pub use symbol::{Symbol, SymbolError};
pub use vocab::*;
