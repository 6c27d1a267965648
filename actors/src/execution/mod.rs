//! Order lifecycle, the OrderExecutionManager actor (which also tracks positions), and the paper exchange.

pub mod api;
pub mod manager;
pub mod paper;
pub mod store;
