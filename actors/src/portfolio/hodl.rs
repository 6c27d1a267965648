//! Hodl bags: a share of every realised profit set aside per asset and excluded from rebalancing.
//! Pure ledger logic; the actor persists every change and places the purchases.

use super::store::HodlBag;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Split of each allocation in percent; USDT takes the rounding remainder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HodlSplit {
    pub usdt_pct: Decimal,
    pub xrp_pct: Decimal,
    pub btc_pct: Decimal,
}

impl Default for HodlSplit {
    fn default() -> Self {
        Self {
            usdt_pct: Decimal::new(3334, 2),
            xrp_pct: Decimal::new(3333, 2),
            btc_pct: Decimal::new(3333, 2),
        }
    }
}

/// Pending USD at which a purchase is made (USDT is held at once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HodlThresholds {
    pub usdt: Decimal,
    pub xrp: Decimal,
    pub btc: Decimal,
}

impl Default for HodlThresholds {
    fn default() -> Self {
        Self {
            usdt: Decimal::ONE,
            xrp: Decimal::new(25, 0),
            btc: Decimal::new(15, 0),
        }
    }
}

impl HodlThresholds {
    pub fn of(&self, asset: &str) -> Decimal {
        match asset {
            "USDT" => self.usdt,
            "BTC" => self.btc,
            _ => self.xrp,
        }
    }
}

/// `config/hodl.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HodlConfig {
    pub enabled: bool,
    /// Percent of each realised profit.
    pub allocation_pct: Decimal,
    pub split: HodlSplit,
    pub min_accumulation: HodlThresholds,
    pub max_single_accumulation_usd: Decimal,
    pub daily_accumulation_limit_usd: Decimal,
    pub min_profit_to_allocate_usd: Decimal,
}

impl Default for HodlConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allocation_pct: Decimal::new(10, 0),
            split: HodlSplit::default(),
            min_accumulation: HodlThresholds::default(),
            max_single_accumulation_usd: Decimal::new(1000, 0),
            daily_accumulation_limit_usd: Decimal::new(5000, 0),
            min_profit_to_allocate_usd: Decimal::ONE,
        }
    }
}

impl HodlConfig {
    /// # Errors
    /// A split not summing to 100, a percentage outside 0..100, negative limits.
    pub fn validate(&self) -> Result<(), String> {
        let s = &self.split;
        if (s.usdt_pct + s.xrp_pct + s.btc_pct - Decimal::ONE_HUNDRED).abs() > Decimal::new(1, 2) {
            return Err("hodl.split: must sum to 100".into());
        }
        if self.allocation_pct < Decimal::ZERO || self.allocation_pct > Decimal::ONE_HUNDRED {
            return Err("hodl.allocation_pct: must be within 0..100".into());
        }
        if self.max_single_accumulation_usd <= Decimal::ZERO || self.daily_accumulation_limit_usd <= Decimal::ZERO {
            return Err("hodl limits must be positive".into());
        }
        Ok(())
    }
}

/// Decimals kept in bag balances.
pub fn asset_decimals(asset: &str) -> u32 {
    match asset {
        "BTC" => 8,
        "XRP" => 6,
        _ => 2,
    }
}

/// Units bought for `pending_usd` at `price`, rounded down to the asset's decimals.
pub fn purchase_amount(asset: &str, pending_usd: Decimal, price: Decimal) -> Decimal {
    if price <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    (pending_usd / price).trunc_with_scale(asset_decimals(asset))
}

/// One profit's share, split per asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HodlAllocation {
    pub total_usd: Decimal,
    pub usdt_usd: Decimal,
    pub xrp_usd: Decimal,
    pub btc_usd: Decimal,
}

impl HodlAllocation {
    pub fn parts(&self) -> [(&'static str, Decimal); 3] {
        [("USDT", self.usdt_usd), ("XRP", self.xrp_usd), ("BTC", self.btc_usd)]
    }
}

/// Why a profit was not allocated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum HodlRefusal {
    #[error("hodl bags are disabled")]
    Disabled,
    #[error("profit {0} is below the minimum to allocate")]
    ProfitTooSmall(Decimal),
    #[error("daily hodl limit: {already} already today + {new} > {limit}")]
    DailyLimit {
        already: Decimal,
        new: Decimal,
        limit: Decimal,
    },
}

/// The split of one profit: `allocation_pct` rounded to cents, capped per allocation, parts
/// rounded down to cents with the remainder in USDT.
///
/// # Errors
/// Disabled, or the profit below the minimum.
pub fn split_profit(cfg: &HodlConfig, profit_usd: Decimal) -> Result<HodlAllocation, HodlRefusal> {
    if !cfg.enabled {
        return Err(HodlRefusal::Disabled);
    }
    if profit_usd <= Decimal::ZERO || profit_usd < cfg.min_profit_to_allocate_usd {
        return Err(HodlRefusal::ProfitTooSmall(profit_usd));
    }
    let total = (profit_usd * cfg.allocation_pct / Decimal::ONE_HUNDRED)
        .round_dp(2)
        .min(cfg.max_single_accumulation_usd);
    // XRP and BTC are rounded down to cents so the rounding remainder always goes to USDT.
    let xrp = (total * cfg.split.xrp_pct / Decimal::ONE_HUNDRED).trunc_with_scale(2);
    let btc = (total * cfg.split.btc_pct / Decimal::ONE_HUNDRED).trunc_with_scale(2);
    Ok(HodlAllocation {
        total_usd: total,
        usdt_usd: total - xrp - btc,
        xrp_usd: xrp,
        btc_usd: btc,
    })
}

/// The bags and today's allocated total.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HodlLedger {
    pub bags: BTreeMap<String, HodlBag>,
    pub day: Option<NaiveDate>,
    pub allocated_today: Decimal,
}

impl HodlLedger {
    pub fn new(bags: Vec<HodlBag>, allocated_today: Decimal, now: DateTime<Utc>) -> Self {
        Self {
            bags: bags.into_iter().map(|b| (b.asset.clone(), b)).collect(),
            day: Some(now.date_naive()),
            allocated_today,
        }
    }

    pub fn bag_mut(&mut self, asset: &str) -> &mut HodlBag {
        self.bags
            .entry(asset.to_owned())
            .or_insert_with(|| HodlBag::empty(asset))
    }

    /// Balance held per asset (what rebalancing excludes).
    pub fn balances(&self) -> BTreeMap<String, Decimal> {
        self.bags.iter().map(|(k, b)| (k.clone(), b.balance)).collect()
    }

    /// Applies one profit: daily limit checked including this allocation; USDT held at once,
    /// XRP and BTC added to pending. Returns the split.
    ///
    /// # Errors
    /// See [`HodlRefusal`].
    pub fn allocate(
        &mut self,
        cfg: &HodlConfig,
        profit_usd: Decimal,
        now: DateTime<Utc>,
    ) -> Result<HodlAllocation, HodlRefusal> {
        let alloc = split_profit(cfg, profit_usd)?;
        let today = now.date_naive();
        if self.day != Some(today) {
            self.day = Some(today);
            self.allocated_today = Decimal::ZERO;
        }
        if self.allocated_today + alloc.total_usd > cfg.daily_accumulation_limit_usd {
            return Err(HodlRefusal::DailyLimit {
                already: self.allocated_today,
                new: alloc.total_usd,
                limit: cfg.daily_accumulation_limit_usd,
            });
        }
        self.allocated_today += alloc.total_usd;
        for (asset, usd) in alloc.parts() {
            if usd.is_zero() {
                continue;
            }
            if asset == "USDT" {
                self.apply_purchase(asset, usd, usd, now);
            } else {
                self.bag_mut(asset).pending_usd += usd;
            }
        }
        Ok(alloc)
    }

    /// Assets whose pending amount reached the purchase threshold, with that amount.
    pub fn due_purchases(&self, cfg: &HodlConfig) -> Vec<(String, Decimal)> {
        self.bags
            .values()
            .filter(|b| b.asset != "USDT" && b.pending_usd > Decimal::ZERO)
            .filter(|b| b.pending_usd >= cfg.min_accumulation.of(&b.asset))
            .map(|b| (b.asset.clone(), b.pending_usd))
            .collect()
    }

    /// Books a purchase of `amount` units for `usd` of pending money.
    pub fn apply_purchase(&mut self, asset: &str, usd: Decimal, amount: Decimal, now: DateTime<Utc>) {
        let bag = self.bag_mut(asset);
        bag.balance += amount;
        bag.cost_basis_usd += usd;
        if asset != "USDT" {
            bag.pending_usd = (bag.pending_usd - usd).max(Decimal::ZERO);
        }
        bag.accumulation_count += 1;
        bag.first_accumulation.get_or_insert(now);
        bag.last_accumulation = Some(now);
    }
}

/// One bag as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HodlBagView {
    pub asset: String,
    pub balance: Decimal,
    pub cost_basis_usd: Decimal,
    pub pending_usd: Decimal,
    pub threshold_usd: Decimal,
    pub price_usd: Option<Decimal>,
    pub current_value_usd: Option<Decimal>,
    pub unrealized_pnl_usd: Option<Decimal>,
    pub unrealized_pnl_pct: Option<Decimal>,
    pub accumulation_count: u32,
    pub first_accumulation: Option<DateTime<Utc>>,
    pub last_accumulation: Option<DateTime<Utc>>,
}

/// All bags with valuation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HodlView {
    pub enabled: bool,
    pub bags: Vec<HodlBagView>,
    pub total_value_usd: Decimal,
    pub total_cost_basis_usd: Decimal,
    pub total_pending_usd: Decimal,
    pub allocated_today_usd: Decimal,
    pub daily_limit_usd: Decimal,
    pub timestamp: DateTime<Utc>,
}

/// Values every bag at `price` (USD per unit; USDT = 1). A bag without a price has no value.
pub fn view(
    ledger: &HodlLedger,
    cfg: &HodlConfig,
    price: impl Fn(&str) -> Option<Decimal>,
    now: DateTime<Utc>,
) -> HodlView {
    let mut bags = Vec::new();
    for asset in ["BTC", "XRP", "USDT"] {
        let bag = ledger.bags.get(asset).cloned().unwrap_or_else(|| HodlBag::empty(asset));
        let p = if asset == "USDT" {
            Some(Decimal::ONE)
        } else {
            price(asset)
        };
        let value = p.map(|p| (bag.balance * p).round_dp(2));
        let pnl = value.map(|v| v - bag.cost_basis_usd);
        let pnl_pct = pnl.and_then(|x| {
            (bag.cost_basis_usd > Decimal::ZERO).then(|| (x / bag.cost_basis_usd * Decimal::ONE_HUNDRED).round_dp(2))
        });
        bags.push(HodlBagView {
            asset: asset.to_owned(),
            balance: bag.balance,
            cost_basis_usd: bag.cost_basis_usd,
            pending_usd: bag.pending_usd,
            threshold_usd: cfg.min_accumulation.of(asset),
            price_usd: p,
            current_value_usd: value,
            unrealized_pnl_usd: pnl,
            unrealized_pnl_pct: pnl_pct,
            accumulation_count: bag.accumulation_count,
            first_accumulation: bag.first_accumulation,
            last_accumulation: bag.last_accumulation,
        });
    }
    HodlView {
        enabled: cfg.enabled,
        total_value_usd: bags.iter().filter_map(|b| b.current_value_usd).sum(),
        total_cost_basis_usd: bags.iter().map(|b| b.cost_basis_usd).sum(),
        total_pending_usd: bags.iter().map(|b| b.pending_usd).sum(),
        bags,
        allocated_today_usd: ledger.allocated_today,
        daily_limit_usd: cfg.daily_accumulation_limit_usd,
        timestamp: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn cfg() -> HodlConfig {
        HodlConfig::default()
    }

    #[test]
    fn profit_100_holds_usdt_and_leaves_xrp_btc_pending() {
        let mut l = HodlLedger::default();
        let a = l.allocate(&cfg(), dec!(100), now()).unwrap();
        assert_eq!(
            (a.total_usd, a.usdt_usd, a.xrp_usd, a.btc_usd),
            (dec!(10), dec!(3.34), dec!(3.33), dec!(3.33))
        );
        assert_eq!(l.bags["USDT"].balance, dec!(3.34));
        assert_eq!(l.bags["USDT"].pending_usd, Decimal::ZERO);
        assert_eq!(l.bags["XRP"].pending_usd, dec!(3.33));
        assert_eq!(l.bags["BTC"].pending_usd, dec!(3.33));
        assert!(l.due_purchases(&cfg()).is_empty());
        l.allocate(&cfg(), dec!(100), now()).unwrap();
        assert_eq!(l.bags["XRP"].pending_usd, dec!(6.66));
        assert_eq!(l.bags["BTC"].pending_usd, dec!(6.66));
        assert_eq!(l.bags["USDT"].balance, dec!(6.68));
    }

    #[test]
    fn split_table() {
        let rows = [
            (dec!(5000), Some(dec!(500.00))),
            (dec!(10), Some(dec!(1.00))),
            (dec!(33.33), Some(dec!(3.33))),
            (dec!(20000), Some(dec!(1000))),
            (dec!(50), Some(dec!(5.00))),
            (dec!(1), Some(dec!(0.10))),
            (dec!(0.99), None),
            (dec!(0.50), None),
            (dec!(-20), None),
        ];
        for (profit, want) in rows {
            let got = split_profit(&cfg(), profit).ok();
            assert_eq!(got.as_ref().map(|a| a.total_usd), want, "profit {profit}");
            if let Some(a) = got {
                assert_eq!(a.usdt_usd + a.xrp_usd + a.btc_usd, a.total_usd, "parts sum exactly");
                assert!(a.usdt_usd >= a.xrp_usd, "USDT takes the remainder");
            }
        }
        // Rounding remainder to USDT: $1.00 → 0.33 / 0.33 / 0.34; $0.10 → 0.03 / 0.03 / 0.04.
        let a = split_profit(&cfg(), dec!(1)).unwrap();
        assert_eq!((a.usdt_usd, a.xrp_usd, a.btc_usd), (dec!(0.04), dec!(0.03), dec!(0.03)));
        let a = split_profit(&cfg(), dec!(50)).unwrap();
        assert_eq!((a.usdt_usd, a.xrp_usd, a.btc_usd), (dec!(1.68), dec!(1.66), dec!(1.66)));
        let a = split_profit(&cfg(), dec!(20000)).unwrap();
        assert_eq!(
            (a.usdt_usd, a.xrp_usd, a.btc_usd),
            (dec!(333.40), dec!(333.30), dec!(333.30))
        );
    }

    #[test]
    fn disabled_allocates_nothing() {
        let mut c = cfg();
        c.enabled = false;
        assert_eq!(split_profit(&c, dec!(100)), Err(HodlRefusal::Disabled));
    }

    #[test]
    fn daily_cap_includes_the_new_allocation() {
        let mut l = HodlLedger::new(vec![], dec!(4990), now());
        // 4 990 + 10 = 5 000 exactly: accepted.
        l.allocate(&cfg(), dec!(100), now()).unwrap();
        assert_eq!(l.allocated_today, dec!(5000));
        // Anything more today is refused, and nothing changes.
        let before = l.clone();
        let e = l.allocate(&cfg(), dec!(10), now()).unwrap_err();
        assert!(matches!(e, HodlRefusal::DailyLimit { .. }), "{e:?}");
        assert_eq!(l, before);
        // 4 999 + 10 > 5 000: refused (the reference let this one through).
        let mut l = HodlLedger::new(vec![], dec!(4999), now());
        assert!(l.allocate(&cfg(), dec!(100), now()).is_err());
        // A new UTC day resets the counter.
        let tomorrow = now() + chrono::Duration::days(1);
        l.allocate(&cfg(), dec!(100), tomorrow).unwrap();
        assert_eq!(l.allocated_today, dec!(10));
    }

    #[test]
    fn thresholds_trigger_purchases() {
        let mut l = HodlLedger::default();
        l.bag_mut("XRP").pending_usd = dec!(24.99);
        l.bag_mut("BTC").pending_usd = dec!(15);
        let due = l.due_purchases(&cfg());
        assert_eq!(due, vec![("BTC".to_owned(), dec!(15))]);
        l.bag_mut("XRP").pending_usd = dec!(25);
        assert_eq!(l.due_purchases(&cfg()).len(), 2);
    }

    #[test]
    fn purchase_amounts_round_down() {
        assert_eq!(purchase_amount("XRP", dec!(30), dec!(0.60)), dec!(50.000000));
        assert_eq!(purchase_amount("XRP", dec!(25), dec!(0.7)), dec!(35.714285));
        assert_eq!(purchase_amount("BTC", dec!(15), dec!(45000)), dec!(0.00033333));
        assert_eq!(purchase_amount("BTC", dec!(15), Decimal::ZERO), Decimal::ZERO);
        let mut l = HodlLedger::default();
        l.bag_mut("XRP").pending_usd = dec!(30);
        l.apply_purchase("XRP", dec!(30), dec!(50), now());
        let b = &l.bags["XRP"];
        assert_eq!(
            (b.balance, b.cost_basis_usd, b.pending_usd, b.accumulation_count),
            (dec!(50), dec!(30), dec!(0), 1)
        );
    }

    #[test]
    fn view_values_bags_and_pnl() {
        let mut l = HodlLedger::default();
        l.apply_purchase("XRP", dec!(30), dec!(50), now());
        let v = view(&l, &cfg(), |a| (a == "XRP").then_some(dec!(0.9)), now());
        let xrp = v.bags.iter().find(|b| b.asset == "XRP").unwrap();
        assert_eq!(xrp.current_value_usd, Some(dec!(45.00)));
        assert_eq!(xrp.unrealized_pnl_usd, Some(dec!(15.00)));
        assert_eq!(xrp.unrealized_pnl_pct, Some(dec!(50.00)));
        let btc = v.bags.iter().find(|b| b.asset == "BTC").unwrap();
        assert_eq!(btc.current_value_usd, None);
    }
}
