//! TripleGain trading system: domain types, typed messages, the pub/sub bus,
//! supervision, and the trading actors. This crate performs no I/O of its own;
//! the outside world is reached through the traits in [`ports`].

pub mod agents;
pub mod bus;
pub mod clock;
pub mod coordinator;
pub mod domain;
pub mod execution;
pub mod indicators;
pub mod market;
pub mod messages;
pub mod portfolio;
pub mod ports;
pub mod risk;
pub mod supervision;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
