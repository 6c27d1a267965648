//! Order lifecycle: the I/O-free execution core (orders, positions, protection, trailing stops,
//! reconciliation, valuation), the OrderExecutionManager actor shell around it, and the paper
//! exchange.

pub mod api;
pub mod config;
pub mod core;
pub mod manager;
pub mod paper;
pub mod store;
