//! Candle aggregation, recent-candle history with the candle-derived snapshot fields, and the
//! simulated price model shared by every feed. Pure: no I/O.

pub mod actor;
pub mod aggregate;
pub mod history;
pub mod simulated;

pub use actor::{CandleBatch, GetSnapshot, MarketData, MarketDataConfig, SymbolView};
pub use aggregate::{interval_start, interval_start_secs, AggregateError, CandleAggregator};
pub use history::{default_lookback, CandleSummary, MarketHeadline, MarketHistory, MarketSummary};
pub use simulated::{SimRegime, SimulatedMarket};
