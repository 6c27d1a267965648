//! Valuation in the core: the account's balances at the last prices, with exposure, allocation and
//! the spot footprint of open positions. The exchange adapters hand balances over by our asset
//! codes (`BTC`, `USD`): venue codes such as Kraken's `XXBT` never reach the core.

use super::{Effect, ExecutionCore, SOURCE};
use crate::domain::{PositionSide, Symbol};
use crate::messages::{EventMeta, PortfolioUpdate};
use crate::ports::OutboxEvent;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// Quote assets valued at one US dollar.
const DOLLARS: [&str; 3] = ["USD", "USDT", "USDC"];

impl ExecutionCore {
    /// The last price of one unit of `asset` in US dollars, when one is known.
    pub(crate) fn asset_price_usd(&self, asset: &str) -> Option<Decimal> {
        if DOLLARS.contains(&asset) {
            return Some(Decimal::ONE);
        }
        self.prices
            .iter()
            .find(|(s, _)| s.base() == asset && DOLLARS.contains(&s.quote()))
            .map(|(_, p)| *p)
            .or_else(|| {
                ["USDT", "USD"]
                    .iter()
                    .filter_map(|q| Symbol::parse(&format!("{asset}/{q}")).ok())
                    .find_map(|s| (self.fallback_price)(&s))
            })
    }

    /// Values the account from its balances and queues the valuation for the bus (and for the
    /// export outbox when it is on).
    pub fn valuation(&mut self, balances: BTreeMap<String, Decimal>) {
        let mut values = BTreeMap::new();
        for (asset, amount) in &balances {
            if let Some(px) = self.asset_price_usd(asset) {
                values.insert(asset.clone(), *amount * px);
            }
        }
        let equity: Decimal = values.values().copied().sum();
        if equity > self.peak_equity {
            self.peak_equity = equity;
        }
        let drawdown = if self.peak_equity > Decimal::ZERO {
            ((self.peak_equity - equity) / self.peak_equity * Decimal::ONE_HUNDRED).round_dp(4)
        } else {
            Decimal::ZERO
        };
        let mut exposure: BTreeMap<String, Decimal> = BTreeMap::new();
        for p in self.positions.values() {
            let px = self.prices.get(&p.symbol).copied().unwrap_or(p.entry_price);
            *exposure.entry(p.symbol.to_string()).or_default() += p.size * px;
        }
        // Spot positions (leverage 1) hold their base and spent their quote; margin ones move no
        // spot balance.
        let mut footprint: BTreeMap<String, Decimal> = BTreeMap::new();
        for p in self
            .positions
            .values()
            .filter(|p| p.leverage <= 1 && p.size > Decimal::ZERO)
        {
            let sign = match p.side {
                PositionSide::Long => Decimal::ONE,
                PositionSide::Short => -Decimal::ONE,
            };
            *footprint.entry(p.symbol.base().to_owned()).or_default() += sign * p.size;
            *footprint.entry(p.symbol.quote().to_owned()).or_default() -= sign * p.size * p.entry_price;
        }
        let allocation = values
            .iter()
            .filter(|_| equity > Decimal::ZERO)
            .map(|(a, v)| (a.clone(), (*v / equity * Decimal::ONE_HUNDRED).round_dp(4)))
            .collect();
        let update = PortfolioUpdate {
            meta: EventMeta::new(SOURCE, self.now()),
            equity_usd: equity,
            peak_equity_usd: self.peak_equity,
            drawdown_pct: drawdown,
            open_exposure_usd: exposure.values().copied().sum(),
            exposure_by_symbol: exposure,
            balances,
            allocation_pct: allocation,
            position_footprint: footprint,
        };
        if self.outbox_portfolio {
            self.outbox(OutboxEvent::of(&update, None));
        }
        self.effect(Effect::Valuation(Box::new(update)));
    }
}
