//! Backtest: the report computed from a run's trades and equity curve.

pub mod report;

pub use report::{EquityPoint, Report, ReportInput, Timing, TradeRecord};
