//! Candle aggregation, recent-candle history with the candle-derived snapshot fields, and the
//! simulated price model shared by every feed. Pure: no I/O.

pub mod aggregate;
pub mod history;
pub mod simulated;

pub use aggregate::{interval_start, interval_start_secs, AggregateError, CandleAggregator};
pub use history::{default_lookback, CandleSummary, MarketHistory, MarketSummary};
pub use simulated::{SimRegime, SimulatedMarket};
