//! Analysis agents: technical analysis, regime detection, sentiment, trading decision.
//! Each agent has a pure core (`analyse` / `detect`) that the actors call.

pub mod actors;
pub mod api;
pub mod regime_detection;
pub mod sentiment;
pub mod strategies;
pub mod technical_analysis;
pub mod trading_decision;
