use super::{bus_event, EventMeta};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Portfolio state change (topic `portfolio_updates`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortfolioUpdate {
    pub meta: EventMeta,
    pub equity_usd: Decimal,
    pub peak_equity_usd: Decimal,
    pub drawdown_pct: Decimal,
    pub open_exposure_usd: Decimal,
    /// Exposure per symbol in USD.
    pub exposure_by_symbol: BTreeMap<String, Decimal>,
    pub balances: BTreeMap<String, Decimal>,
    /// Allocation per asset in percent.
    pub allocation_pct: BTreeMap<String, Decimal>,
}
bus_event!(PortfolioUpdate, "portfolio_updates", |_e| "portfolio".to_owned());
