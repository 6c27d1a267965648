//! Analysis agents: technical analysis, regime detection, sentiment, trading decision.
//! Each agent has a pure core (`analyse` / `detect`) that the actors call.

pub mod regime_detection;
pub mod technical_analysis;
