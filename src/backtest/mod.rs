//! Backtest: the full actor system on replayed candles, and the report computed from a run's
//! trades and equity curve.

pub mod report;
pub mod run;

pub use report::{EquityPoint, Report, ReportInput, Timing, TradeRecord};
pub use run::{parse_time, run, BacktestOptions, BacktestOutcome};
