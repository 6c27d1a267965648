//! Portfolio rebalance math, hodl bags and the PortfolioRebalancer actor.

pub mod actor;
pub mod advisor;
pub mod hodl;
pub mod rebalance;
pub mod store;

pub use actor::{
    CheckPortfolio, ConnectExecution, GetAllocation, GetHodl, GetHodlHistory, NextBatchDue, PortfolioError,
    PortfolioRebalancer, PortfolioRebalancerConfig, PriceSource, RebalanceTick, StrategyAdvice, StrategyAdvisor,
};
pub use advisor::ModelStrategyAdvisor;
pub use hodl::{HodlConfig, HodlView};
pub use rebalance::{Allocation, PortfolioConfig, RebalancePlan};
pub use store::{HodlBag, HodlTransaction, MemoryPortfolioStore, PortfolioStore, RebalanceRecord};
