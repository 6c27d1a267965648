//! Order lifecycle, the OrderExecutionManager and PositionTracker actors, and the paper exchange.

pub mod api;
pub mod paper;
