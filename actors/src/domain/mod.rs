//! Domain types shared by every actor: symbols, sides, enums of the trading
//! vocabulary, candles and identifiers. Money is always `rust_decimal::Decimal`.

mod ids;
mod market;
mod symbol;
mod vocab;

pub use ids::{ClientOrderId, CorrelationId};
pub use market::{Candle, Timeframe};
pub use symbol::{Symbol, SymbolError};
pub use vocab::*;
