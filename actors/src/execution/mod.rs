//! Order lifecycle, the OrderExecutionManager and PositionTracker actors, and the paper exchange.

pub mod paper;
