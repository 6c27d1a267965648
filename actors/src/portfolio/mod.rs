//! Portfolio rebalance math, hodl bags and the PortfolioRebalancer actor.
