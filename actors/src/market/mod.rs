//! Candle aggregation and the simulated price model shared by every feed. Pure: no I/O.

pub mod aggregate;
pub mod simulated;

pub use aggregate::{interval_start, interval_start_secs, AggregateError, CandleAggregator};
pub use simulated::{SimRegime, SimulatedMarket};
