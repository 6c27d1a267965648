//! Analysis agents: technical analysis, regime detection, sentiment, trading decision.
