//! Pure rebalance math: allocation (hodl bags excluded), the deterministic trade plan with the
//! configured target percentages, and the DCA batch split. No I/O; exact `Decimal` arithmetic.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The assets of the portfolio, in output order.
pub const ASSETS: [&str; 3] = ["BTC", "XRP", "USDT"];

/// Target allocation in percent; must sum to 100 ± 0.1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TargetAllocation {
    pub btc_pct: Decimal,
    pub xrp_pct: Decimal,
    pub usdt_pct: Decimal,
}

impl Default for TargetAllocation {
    fn default() -> Self {
        Self {
            btc_pct: Decimal::new(3333, 2),
            xrp_pct: Decimal::new(3333, 2),
            usdt_pct: Decimal::new(3334, 2),
        }
    }
}

impl TargetAllocation {
    pub fn of(&self, asset: &str) -> Decimal {
        match asset {
            "BTC" => self.btc_pct,
            "XRP" => self.xrp_pct,
            _ => self.usdt_pct,
        }
    }
}

/// Order type of rebalance trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionType {
    Market,
    Limit,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RebalancingSettings {
    pub enabled: bool,
    /// Rebalance when the largest deviation reaches this many percentage points.
    pub threshold_pct: Decimal,
    pub min_trade_usd: Decimal,
    pub execution_type: ExecutionType,
    pub check_interval_seconds: u64,
}

impl Default for RebalancingSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold_pct: Decimal::new(50, 1),
            min_trade_usd: Decimal::new(10, 0),
            execution_type: ExecutionType::Limit,
            check_interval_seconds: 3600,
        }
    }
}

/// Dollar-cost averaging of large plans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DcaSettings {
    pub enabled: bool,
    /// Plans whose trades sum to at least this are split.
    pub threshold_usd: Decimal,
    pub batches: u32,
    pub interval_hours: u32,
}

impl Default for DcaSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold_usd: Decimal::new(500, 0),
            batches: 6,
            interval_hours: 4,
        }
    }
}

/// `config/portfolio.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PortfolioConfig {
    pub target_allocation: TargetAllocation,
    pub rebalancing: RebalancingSettings,
    pub dca: DcaSettings,
    /// Hodl bags are subtracted from balances before any allocation math.
    pub exclude_hodl_bags: bool,
    /// Let a model choose the execution strategy (the deterministic plan is the fallback).
    pub use_model_strategy: bool,
}

/// A configuration the rebalancer cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("portfolio.{field}: {message}")]
pub struct PortfolioConfigError {
    pub field: String,
    pub message: String,
}

fn cfg_err(field: &str, message: impl Into<String>) -> PortfolioConfigError {
    PortfolioConfigError {
        field: field.to_owned(),
        message: message.into(),
    }
}

impl PortfolioConfig {
    /// The reference defaults, with `exclude_hodl_bags` on.
    pub fn reference() -> Self {
        Self {
            exclude_hodl_bags: true,
            ..Self::default()
        }
    }

    /// # Errors
    /// Targets not summing to 100 ± 0.1, a negative target, a non-positive threshold, zero batches.
    pub fn validate(&self) -> Result<(), PortfolioConfigError> {
        let t = &self.target_allocation;
        for (name, v) in [("btc_pct", t.btc_pct), ("xrp_pct", t.xrp_pct), ("usdt_pct", t.usdt_pct)] {
            if v < Decimal::ZERO || v > Decimal::ONE_HUNDRED {
                return Err(cfg_err(
                    &format!("target_allocation.{name}"),
                    format!("{v} is not within 0..100"),
                ));
            }
        }
        let sum = t.btc_pct + t.xrp_pct + t.usdt_pct;
        if (sum - Decimal::ONE_HUNDRED).abs() > Decimal::new(1, 1) {
            return Err(cfg_err(
                "target_allocation",
                format!("targets sum to {sum}, not 100 ± 0.1"),
            ));
        }
        if self.rebalancing.threshold_pct <= Decimal::ZERO {
            return Err(cfg_err("rebalancing.threshold_pct", "must be positive"));
        }
        if self.rebalancing.min_trade_usd < Decimal::ZERO {
            return Err(cfg_err("rebalancing.min_trade_usd", "must not be negative"));
        }
        if self.rebalancing.check_interval_seconds == 0 {
            return Err(cfg_err("rebalancing.check_interval_seconds", "must be at least 1"));
        }
        if self.dca.batches == 0 {
            return Err(cfg_err("dca.batches", "must be at least 1"));
        }
        Ok(())
    }
}

/// USD prices of the portfolio's assets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Prices {
    /// BTC/USDT
    pub btc: Decimal,
    /// XRP/USDT
    pub xrp: Decimal,
}

impl Prices {
    /// USD per unit of `asset` (USDT = 1).
    pub fn of(&self, asset: &str) -> Option<Decimal> {
        match asset {
            "BTC" => Some(self.btc),
            "XRP" => Some(self.xrp),
            "USDT" => Some(Decimal::ONE),
            _ => None,
        }
    }
}

/// The allocation of the available (non-hodl) holdings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Allocation {
    pub total_equity_usd: Decimal,
    pub btc_value_usd: Decimal,
    pub xrp_value_usd: Decimal,
    pub usdt_value_usd: Decimal,
    pub btc_pct: Decimal,
    pub xrp_pct: Decimal,
    pub usdt_pct: Decimal,
    pub max_deviation_pct: Decimal,
    /// Balance minus hodl bag, per asset, never below zero.
    pub available: BTreeMap<String, Decimal>,
    /// Hodl amounts taken out of the calculation.
    pub hodl_excluded: BTreeMap<String, Decimal>,
    pub prices: Prices,
    /// Hodl bags larger than the balance (clamped to zero) and similar anomalies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Allocation {
    pub fn pct_of(&self, asset: &str) -> Decimal {
        match asset {
            "BTC" => self.btc_pct,
            "XRP" => self.xrp_pct,
            _ => self.usdt_pct,
        }
    }

    pub fn value_of(&self, asset: &str) -> Decimal {
        match asset {
            "BTC" => self.btc_value_usd,
            "XRP" => self.xrp_value_usd,
            _ => self.usdt_value_usd,
        }
    }

    /// Allocation per asset in percent.
    pub fn pct_map(&self) -> BTreeMap<String, Decimal> {
        ASSETS.iter().map(|a| ((*a).to_owned(), self.pct_of(a))).collect()
    }
}

/// Decimal places kept in reported percentages.
const PCT_DP: u32 = 4;

/// Computes the allocation of `balances − hodl` (clamped at zero) at `prices`. A zero total
/// reports the targets (nothing to do) and a zero deviation.
pub fn allocation(
    balances: &BTreeMap<String, Decimal>,
    hodl: &BTreeMap<String, Decimal>,
    prices: Prices,
    targets: &TargetAllocation,
) -> Allocation {
    let mut available = BTreeMap::new();
    let mut warnings = Vec::new();
    let mut values = BTreeMap::new();
    for asset in ASSETS {
        let bal = balances.get(asset).copied().unwrap_or_default();
        let bag = hodl.get(asset).copied().unwrap_or_default();
        let mut avail = bal - bag;
        if avail < Decimal::ZERO {
            warnings.push(format!(
                "hodl bag {bag} {asset} exceeds the balance {bal}; available clamped to 0"
            ));
            avail = Decimal::ZERO;
        }
        available.insert(asset.to_owned(), avail);
        let price = prices.of(asset).unwrap_or_default();
        values.insert(asset, avail * price);
    }
    let value = |a: &str| values.get(a).copied().unwrap_or_default();
    let total = value("BTC") + value("XRP") + value("USDT");
    let exact_pct = |a: &str| {
        if total > Decimal::ZERO {
            value(a) / total * Decimal::ONE_HUNDRED
        } else {
            targets.of(a)
        }
    };
    let max_dev = ASSETS
        .iter()
        .map(|a| (exact_pct(a) - targets.of(a)).abs())
        .max()
        .unwrap_or_default();
    Allocation {
        total_equity_usd: total,
        btc_value_usd: value("BTC"),
        xrp_value_usd: value("XRP"),
        usdt_value_usd: value("USDT"),
        btc_pct: exact_pct("BTC").round_dp(PCT_DP).normalize(),
        xrp_pct: exact_pct("XRP").round_dp(PCT_DP).normalize(),
        usdt_pct: exact_pct("USDT").round_dp(PCT_DP).normalize(),
        max_deviation_pct: max_dev,
        available,
        hodl_excluded: hodl
            .iter()
            .filter(|(_, v)| !v.is_zero())
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        prices,
        warnings,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RebalanceAction {
    NoAction,
    Rebalance,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = RebalanceTradeAction)]
pub enum TradeAction {
    Buy,
    Sell,
}

/// How the plan is executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStrategy {
    /// Nothing to execute.
    None,
    Immediate,
    /// Split into batches a few hours apart.
    #[serde(rename = "dca_24h")]
    Dca24h,
}

impl ExecutionStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Immediate => "immediate",
            Self::Dca24h => "dca_24h",
        }
    }
}

/// One rebalance trade (seed schema).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RebalanceTrade {
    /// `BTC/USDT` or `XRP/USDT`.
    pub symbol: String,
    pub action: TradeAction,
    pub amount_usd: Decimal,
    pub execution_type: ExecutionType,
    /// 1 = sells (first), 2 = buys.
    pub priority: u32,
}

/// The trades of one DCA batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RebalanceBatch {
    pub index: u32,
    pub due_at: DateTime<Utc>,
    pub trades: Vec<RebalanceTrade>,
}

/// The rebalancer's output: the seed's schema (`timestamp`, `action`, `current_allocation`,
/// `target_allocation`, `rebalance_trades`, `reasoning`), with decimals as JSON strings (exact money,
/// as everywhere in the API) and the execution details added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RebalancePlan {
    pub id: Uuid,
    pub timestamp: DateTime<Utc>,
    pub action: RebalanceAction,
    pub current_allocation: Allocation,
    pub target_allocation: TargetAllocation,
    pub rebalance_trades: Vec<RebalanceTrade>,
    pub reasoning: String,
    pub forced: bool,
    pub execution_strategy: ExecutionStrategy,
    /// Batch 0 is executed at once; later batches when due.
    pub batches: Vec<RebalanceBatch>,
    /// True when a model was asked for the strategy and failed (deterministic plan used).
    pub used_fallback_strategy: bool,
}

/// The deterministic trades: per BTC and XRP (USDT is the quote leg) the difference to the
/// configured target value, at least `min_trade_usd`, amounts rounded to cents, sells first.
pub fn plan_trades(alloc: &Allocation, cfg: &PortfolioConfig) -> Vec<RebalanceTrade> {
    let mut trades = Vec::new();
    if alloc.total_equity_usd <= Decimal::ZERO {
        return trades;
    }
    for asset in ["BTC", "XRP"] {
        let target = alloc.total_equity_usd * cfg.target_allocation.of(asset) / Decimal::ONE_HUNDRED;
        let diff = (target - alloc.value_of(asset)).round_dp(2);
        if diff.abs() < cfg.rebalancing.min_trade_usd || diff.is_zero() {
            continue;
        }
        let action = if diff > Decimal::ZERO {
            TradeAction::Buy
        } else {
            TradeAction::Sell
        };
        trades.push(RebalanceTrade {
            symbol: format!("{asset}/USDT"),
            action,
            amount_usd: diff.abs(),
            execution_type: cfg.rebalancing.execution_type,
            priority: if action == TradeAction::Sell { 1 } else { 2 },
        });
    }
    trades.sort_by_key(|t| t.priority);
    trades
}

/// Splits `amount` into `n` parts rounded down to cents with the remainder in the first part;
/// the parts sum exactly to `amount` (which is itself taken in cents).
pub fn split_amount(amount: Decimal, n: u32) -> Vec<Decimal> {
    let n = n.max(1);
    let each = (amount / Decimal::from(n)).trunc_with_scale(2);
    let rest = amount - each * Decimal::from(n - 1);
    let mut parts = vec![each; n as usize];
    if let Some(first) = parts.first_mut() {
        *first = rest;
    }
    parts
}

/// Splits the trades into DCA batches: plans summing to at least the threshold start with the
/// configured batch count, reduced while any trade's per-batch amount would fall below the
/// minimum trade size; one batch means immediate execution.
pub fn batch_trades(
    trades: &[RebalanceTrade],
    cfg: &PortfolioConfig,
    now: DateTime<Utc>,
) -> (ExecutionStrategy, Vec<RebalanceBatch>) {
    if trades.is_empty() {
        return (ExecutionStrategy::None, Vec::new());
    }
    let total: Decimal = trades.iter().map(|t| t.amount_usd).sum();
    let mut n = if cfg.dca.enabled && total >= cfg.dca.threshold_usd {
        cfg.dca.batches.max(1)
    } else {
        1
    };
    while n > 1
        && trades
            .iter()
            .any(|t| (t.amount_usd / Decimal::from(n)).trunc_with_scale(2) < cfg.rebalancing.min_trade_usd)
    {
        n -= 1;
    }
    if n == 1 {
        return (
            ExecutionStrategy::Immediate,
            vec![RebalanceBatch {
                index: 0,
                due_at: now,
                trades: trades.to_vec(),
            }],
        );
    }
    let splits: Vec<Vec<Decimal>> = trades.iter().map(|t| split_amount(t.amount_usd, n)).collect();
    let batches = (0..n)
        .map(|i| RebalanceBatch {
            index: i,
            due_at: now + chrono::Duration::hours(i64::from(i) * i64::from(cfg.dca.interval_hours)),
            trades: trades
                .iter()
                .zip(&splits)
                .map(|(t, parts)| RebalanceTrade {
                    amount_usd: parts.get(i as usize).copied().unwrap_or_default(),
                    ..t.clone()
                })
                .collect(),
        })
        .collect();
    (ExecutionStrategy::Dca24h, batches)
}

/// The whole deterministic plan for an allocation.
pub fn plan(alloc: Allocation, cfg: &PortfolioConfig, force: bool, now: DateTime<Utc>) -> RebalancePlan {
    let threshold = cfg.rebalancing.threshold_pct;
    let dev = alloc.max_deviation_pct;
    let below = dev < threshold;
    let base = |action, trades, reasoning, strategy, batches| RebalancePlan {
        id: Uuid::new_v4(),
        timestamp: now,
        action,
        current_allocation: alloc.clone(),
        target_allocation: cfg.target_allocation.clone(),
        rebalance_trades: trades,
        reasoning,
        forced: force,
        execution_strategy: strategy,
        batches,
        used_fallback_strategy: false,
    };
    if below && !force {
        return base(
            RebalanceAction::NoAction,
            Vec::new(),
            format!("Deviation {:.1}% below threshold {threshold}%", dev),
            ExecutionStrategy::None,
            Vec::new(),
        );
    }
    let trades = plan_trades(&alloc, cfg);
    if trades.is_empty() {
        return base(
            RebalanceAction::NoAction,
            Vec::new(),
            format!(
                "Deviation {:.1}%: no trade reaches the minimum of ${}",
                dev, cfg.rebalancing.min_trade_usd
            ),
            ExecutionStrategy::None,
            Vec::new(),
        );
    }
    let (strategy, batches) = batch_trades(&trades, cfg, now);
    let why = if below {
        format!("Forced rebalance at deviation {dev:.1}% (threshold {threshold}%)")
    } else {
        format!("Deviation {dev:.1}% reaches threshold {threshold}%")
    };
    base(RebalanceAction::Rebalance, trades, why, strategy, batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn map(items: &[(&str, Decimal)]) -> BTreeMap<String, Decimal> {
        items.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// The seed's design portfolio: BTC 0.0345 ($1 535), XRP 2 150 ($1 290), USDT 1 275.
    fn design() -> (BTreeMap<String, Decimal>, Prices) {
        (
            map(&[("BTC", dec!(0.0345)), ("XRP", dec!(2150)), ("USDT", dec!(1275))]),
            Prices {
                btc: dec!(1535) / dec!(0.0345),
                xrp: dec!(0.6),
            },
        )
    }

    fn cfg() -> PortfolioConfig {
        PortfolioConfig::reference()
    }

    #[test]
    fn design_example_is_no_action_below_threshold() {
        let (bal, prices) = design();
        let a = allocation(&bal, &BTreeMap::new(), prices, &cfg().target_allocation);
        assert_eq!(a.total_equity_usd.round_dp(6), dec!(4100));
        assert_eq!(a.btc_pct.round_dp(1), dec!(37.4));
        assert_eq!(a.xrp_pct.round_dp(1), dec!(31.5));
        assert_eq!(a.usdt_pct.round_dp(1), dec!(31.1));
        assert_eq!(a.max_deviation_pct.round_dp(1), dec!(4.1));
        let p = plan(a, &cfg(), false, now());
        assert_eq!(p.action, RebalanceAction::NoAction);
        assert!(p.rebalance_trades.is_empty());
        assert!(p.reasoning.contains("below threshold"), "{}", p.reasoning);
    }

    #[test]
    fn forced_design_example_sells_btc_first_and_buys_xrp_with_configured_targets() {
        let (bal, prices) = design();
        let a = allocation(&bal, &BTreeMap::new(), prices, &cfg().target_allocation);
        let p = plan(a, &cfg(), true, now());
        assert_eq!(p.action, RebalanceAction::Rebalance);
        assert_eq!(p.rebalance_trades.len(), 2);
        let sell = &p.rebalance_trades[0];
        assert_eq!(
            (sell.symbol.as_str(), sell.action, sell.priority),
            ("BTC/USDT", TradeAction::Sell, 1)
        );
        // Target 33.33 % of $4 100 = $1 366.53 (not $1 366.67 of equal thirds).
        assert_eq!(sell.amount_usd, dec!(168.47));
        let buy = &p.rebalance_trades[1];
        assert_eq!(
            (buy.symbol.as_str(), buy.action, buy.priority),
            ("XRP/USDT", TradeAction::Buy, 2)
        );
        assert_eq!(buy.amount_usd, dec!(76.53));
        assert_eq!(p.execution_strategy, ExecutionStrategy::Immediate);
        assert_eq!(p.batches.len(), 1);
    }

    #[test]
    fn configured_targets_are_used_not_equal_thirds() {
        let mut c = cfg();
        c.target_allocation = TargetAllocation {
            btc_pct: dec!(50),
            xrp_pct: dec!(25),
            usdt_pct: dec!(25),
        };
        let bal = map(&[("BTC", dec!(1)), ("XRP", dec!(1000)), ("USDT", dec!(1000))]);
        let prices = Prices {
            btc: dec!(1000),
            xrp: dec!(1),
        };
        // 1000 each: BTC 33.3 % vs 50 → buy 500; XRP 33.3 % vs 25 → sell 250.
        let a = allocation(&bal, &BTreeMap::new(), prices, &c.target_allocation);
        let p = plan(a, &c, false, now());
        let t: Vec<_> = p
            .rebalance_trades
            .iter()
            .map(|t| (t.symbol.as_str(), t.action, t.amount_usd))
            .collect();
        assert_eq!(
            t,
            vec![
                ("XRP/USDT", TradeAction::Sell, dec!(250)),
                ("BTC/USDT", TradeAction::Buy, dec!(500))
            ]
        );
    }

    #[test]
    fn hodl_bags_are_excluded_and_clamped() {
        let bal = map(&[("BTC", dec!(0.0500)), ("XRP", dec!(2150)), ("USDT", dec!(1275))]);
        let hodl = map(&[("BTC", dec!(0.0155)), ("USDT", dec!(2000))]);
        let (_, prices) = design();
        let a = allocation(&bal, &hodl, prices, &cfg().target_allocation);
        assert_eq!(a.available["BTC"], dec!(0.0345));
        assert_eq!(a.btc_value_usd.round_dp(6), dec!(1535));
        assert_eq!(a.available["USDT"], Decimal::ZERO);
        assert_eq!(a.warnings.len(), 1, "{:?}", a.warnings);
        assert_eq!(a.hodl_excluded["BTC"], dec!(0.0155));
    }

    #[test]
    fn threshold_table() {
        // (btc value, xrp value, usdt value, force, expected action)
        let rows = [
            (dec!(1000), dec!(1000), dec!(1000), false, RebalanceAction::NoAction),
            (dec!(1000), dec!(1000), dec!(1000), true, RebalanceAction::NoAction), // nothing ≥ $10 to do
            (dec!(1140), dec!(930), dec!(930), false, RebalanceAction::NoAction),  // BTC 38 %: 4.67 < 5
            (dec!(1200), dec!(900), dec!(900), false, RebalanceAction::Rebalance),
            (dec!(0), dec!(0), dec!(0), true, RebalanceAction::NoAction),
        ];
        for (i, (b, x, u, force, want)) in rows.into_iter().enumerate() {
            let bal = map(&[("BTC", b), ("XRP", x), ("USDT", u)]);
            let prices = Prices {
                btc: Decimal::ONE,
                xrp: Decimal::ONE,
            };
            let a = allocation(&bal, &BTreeMap::new(), prices, &cfg().target_allocation);
            let p = plan(a.clone(), &cfg(), force, now());
            assert_eq!(p.action, want, "row {i}: {a:?}");
        }
    }

    #[test]
    fn deviation_exactly_at_threshold_rebalances() {
        // BTC 38.33 % of 100 vs target 33.33 → deviation exactly 5.
        let bal = map(&[("BTC", dec!(38.33)), ("XRP", dec!(28.33)), ("USDT", dec!(33.34))]);
        let prices = Prices {
            btc: Decimal::ONE,
            xrp: Decimal::ONE,
        };
        let a = allocation(&bal, &BTreeMap::new(), prices, &cfg().target_allocation);
        assert_eq!(a.max_deviation_pct, dec!(5));
        let mut c = cfg();
        c.rebalancing.min_trade_usd = dec!(1);
        assert_eq!(plan(a, &c, false, now()).action, RebalanceAction::Rebalance);
    }

    #[test]
    fn minimum_trade_size_filters_small_differences() {
        let bal = map(&[("BTC", dec!(1100)), ("XRP", dec!(900)), ("USDT", dec!(1000))]);
        let prices = Prices {
            btc: Decimal::ONE,
            xrp: Decimal::ONE,
        };
        let mut c = cfg();
        c.rebalancing.min_trade_usd = dec!(1000);
        let a = allocation(&bal, &BTreeMap::new(), prices, &c.target_allocation);
        let p = plan(a.clone(), &c, true, now());
        assert!(p.rebalance_trades.is_empty());
        assert_eq!(p.action, RebalanceAction::NoAction);
        // At $10 both trades qualify (target $999.90: BTC −100.10, XRP +99.90), sells first.
        let p = plan(a, &cfg(), true, now());
        let t: Vec<_> = p.rebalance_trades.iter().map(|t| (t.action, t.amount_usd)).collect();
        assert_eq!(
            t,
            vec![(TradeAction::Sell, dec!(100.10)), (TradeAction::Buy, dec!(99.90))]
        );
        // A $9.99 difference is not traded, $10.00 is.
        let bal = map(&[("BTC", dec!(3342.99)), ("XRP", dec!(3323)), ("USDT", dec!(3334.01))]);
        let a = allocation(&bal, &BTreeMap::new(), prices, &cfg().target_allocation);
        let t: Vec<_> = plan_trades(&a, &cfg())
            .iter()
            .map(|t| (t.symbol.clone(), t.amount_usd))
            .collect();
        assert_eq!(t, vec![("XRP/USDT".to_owned(), dec!(10.00))]);
    }

    #[test]
    fn split_of_1000_05_into_six_batches_is_exact() {
        let parts = split_amount(dec!(1000.05), 6);
        assert_eq!(parts.len(), 6);
        assert_eq!(parts[0], dec!(166.70));
        for p in &parts[1..] {
            assert_eq!(*p, dec!(166.67));
        }
        assert_eq!(parts.iter().copied().sum::<Decimal>(), dec!(1000.05));
    }

    #[test]
    fn large_plans_become_six_batches_four_hours_apart() {
        let trades = vec![
            RebalanceTrade {
                symbol: "BTC/USDT".into(),
                action: TradeAction::Sell,
                amount_usd: dec!(1000.05),
                execution_type: ExecutionType::Limit,
                priority: 1,
            },
            RebalanceTrade {
                symbol: "XRP/USDT".into(),
                action: TradeAction::Buy,
                amount_usd: dec!(600),
                execution_type: ExecutionType::Limit,
                priority: 2,
            },
        ];
        let (s, batches) = batch_trades(&trades, &cfg(), now());
        assert_eq!(s, ExecutionStrategy::Dca24h);
        assert_eq!(batches.len(), 6);
        for (i, b) in batches.iter().enumerate() {
            assert_eq!(b.due_at, now() + chrono::Duration::hours(4 * i as i64));
            assert_eq!(b.trades[0].action, TradeAction::Sell, "sells first in every batch");
        }
        assert_eq!(batches[0].trades[0].amount_usd, dec!(166.70));
        assert_eq!(batches[5].trades[0].amount_usd, dec!(166.67));
        for (k, want) in [(0, dec!(1000.05)), (1, dec!(600))] {
            let sum: Decimal = batches.iter().map(|b| b.trades[k].amount_usd).sum();
            assert_eq!(sum, want);
        }
    }

    #[test]
    fn batch_count_shrinks_so_no_batch_is_below_the_minimum() {
        let mk = |amount| RebalanceTrade {
            symbol: "BTC/USDT".into(),
            action: TradeAction::Buy,
            amount_usd: amount,
            execution_type: ExecutionType::Limit,
            priority: 2,
        };
        // $500 + $25: the $25 trade allows only 2 batches of ≥ $10.
        let (s, b) = batch_trades(&[mk(dec!(500)), mk(dec!(25))], &cfg(), now());
        assert_eq!(s, ExecutionStrategy::Dca24h);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].trades[1].amount_usd + b[1].trades[1].amount_usd, dec!(25));
        // A $15 trade cannot be split at all → immediate.
        let (s, b) = batch_trades(&[mk(dec!(500)), mk(dec!(15))], &cfg(), now());
        assert_eq!(s, ExecutionStrategy::Immediate);
        assert_eq!(b.len(), 1);
        // Below $500 no DCA.
        let (s, _) = batch_trades(&[mk(dec!(499.99))], &cfg(), now());
        assert_eq!(s, ExecutionStrategy::Immediate);
    }

    #[test]
    fn reference_mock_portfolio_and_large_sell() {
        let bal = map(&[("BTC", dec!(0.5)), ("XRP", dec!(10000)), ("USDT", dec!(5000))]);
        let prices = Prices {
            btc: dec!(45000),
            xrp: dec!(0.60),
        };
        let a = allocation(&bal, &BTreeMap::new(), prices, &cfg().target_allocation);
        assert_eq!(a.total_equity_usd, dec!(33500));
        let bal = map(&[("BTC", dec!(20000)), ("XRP", dec!(5000)), ("USDT", dec!(5000))]);
        let one = Prices {
            btc: Decimal::ONE,
            xrp: Decimal::ONE,
        };
        let mut c = cfg();
        c.target_allocation = TargetAllocation {
            btc_pct: dec!(33.3333333333),
            xrp_pct: dec!(33.3333333333),
            usdt_pct: dec!(33.3333333334),
        };
        let a = allocation(&bal, &BTreeMap::new(), one, &c.target_allocation);
        let p = plan(a, &c, false, now());
        assert_eq!(p.rebalance_trades[0].action, TradeAction::Sell);
        assert_eq!(p.rebalance_trades[0].amount_usd, dec!(10000));
    }

    #[test]
    fn config_validation() {
        assert!(cfg().validate().is_ok());
        let mut c = cfg();
        c.target_allocation.usdt_pct = dec!(40);
        assert_eq!(c.validate().unwrap_err().field, "target_allocation");
        let mut c = cfg();
        c.dca.batches = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn plan_json_matches_the_seed_schema() {
        let (bal, prices) = design();
        let a = allocation(&bal, &BTreeMap::new(), prices, &cfg().target_allocation);
        let p = plan(a, &cfg(), true, now());
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(serde_json::to_value(ExecutionStrategy::Dca24h).unwrap(), "dca_24h");
        assert_eq!(v["action"], "rebalance");
        assert!(v["timestamp"].is_string());
        assert_eq!(v["current_allocation"]["btc_pct"], "37.439");
        assert!(v["current_allocation"]["max_deviation_pct"].is_string());
        assert_eq!(v["target_allocation"]["usdt_pct"], "33.34");
        let t = &v["rebalance_trades"][0];
        assert_eq!(t["symbol"], "BTC/USDT");
        assert_eq!(t["action"], "sell");
        assert_eq!(t["amount_usd"], "168.47");
        assert_eq!(t["execution_type"], "limit");
        assert_eq!(t["priority"], 1);
        let back: RebalancePlan = serde_json::from_value(v).unwrap();
        assert_eq!(back.rebalance_trades, p.rebalance_trades);
    }
}
