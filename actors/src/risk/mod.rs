//! Risk: the pure validation pipeline (`rules`), the pure state transitions (`state`)
//! and the RiskEngine actor (`engine`), the sole owner of the risk state.

pub mod approved;
pub mod engine;
pub mod pricing;
pub mod rules;
pub mod state;
pub mod types;

#[cfg(any(test, feature = "testing"))]
pub use approved::judgement_for_tests;
pub use approved::{approve, verdict_of, ApproveTrade, Judgement, RiskApproved, RiskRefused};
pub use engine::{
    GetMarketPrice, GetRiskState, GetVerdictCounts, ResetRisk, RiskEngine, RiskEngineConfig, RiskResetError,
    RiskStateView, ValidateTrade, VerdictCounts, RISK_STATE_KEY,
};
pub use pricing::{MarketPrices, PriceSource, Quote};
pub use rules::{leverage_cap, required_confidence, validate};
pub use state::{ResetError, ResetScope, RiskEvent};
pub use types::*;
