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
    /// What the open spot trading positions changed in the balances, per asset (a long: its base
    /// units held and the quote spent at entry, negative; a short: the reverse). The rebalancer
    /// takes it out of the balances, so it neither sells a strategy's position down nor buys it
    /// back: its 33/33/33 is the portfolio without the trades.
    #[serde(default)]
    pub position_footprint: BTreeMap<String, Decimal>,
}
bus_event!(PortfolioUpdate, "portfolio_updates", |_e| "portfolio".to_owned());

/// The rebalancer's view of the holdings it balances (topic `holdings_reports`): their value,
/// balances and allocation at the prices it planned with. Informational: equity, peak equity and
/// drawdown have one owner, the execution manager's valuations ([`PortfolioUpdate`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldingsReport {
    pub meta: EventMeta,
    /// Value of the balanced assets (BTC, XRP, USDT) in USD.
    pub value_usd: Decimal,
    /// Value per trading pair of the non-cash assets, in USD.
    pub value_by_symbol: BTreeMap<String, Decimal>,
    pub balances: BTreeMap<String, Decimal>,
    /// Allocation per asset in percent.
    pub allocation_pct: BTreeMap<String, Decimal>,
}
bus_event!(HoldingsReport, "holdings_reports", |_e| "portfolio".to_owned());
