//! Prices in the core: trailing stops that follow the price, and the software backup stop that
//! closes a position whose stop is breached while no stop order works on the exchange.

use super::{position_pnl, Effect, ExecutionCore, Op};
use crate::domain::{PositionSide, PositionStatus, Severity, Symbol};
use crate::execution::api::PositionView;
use crate::messages::AlertType;
use rust_decimal::Decimal;

/// What a new last price does to one position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceEffect {
    None,
    /// The stop is breached while no stop order works on the exchange.
    Breached,
    /// The trailing stop is active: its best price, and the new stop if it improves.
    Trail {
        best: Decimal,
        stop: Option<Decimal>,
    },
}

impl ExecutionCore {
    /// On every price update: trailing stops move with the price (never once a minute only), and a
    /// position whose stop is breached while no stop order works on the exchange is closed at market
    /// (the backup trigger; a close refuses a position already closing, so it fires once).
    pub fn on_prices(&mut self) {
        let mut changed = Vec::new();
        let mut breached = Vec::new();
        let mut extremes = Vec::new();
        for p in self.positions.values() {
            let Some(&price) = self.prices.get(&p.symbol) else {
                continue;
            };
            match self.price_effect(p, price) {
                PriceEffect::None => {}
                PriceEffect::Breached => breached.push((p.id, p.correlation_id)),
                PriceEffect::Trail { best, stop } => {
                    extremes.push((p.id, best));
                    if let Some(stop) = stop {
                        let mut moved = p.clone();
                        moved.stop_loss = Some(stop);
                        changed.push(moved);
                    }
                }
            }
        }
        for (id, best) in extremes {
            self.trail_extreme.insert(id, best);
        }
        for p in &changed {
            if let Some(live) = self.positions.get_mut(&p.id) {
                live.stop_loss = p.stop_loss;
            }
        }
        for p in changed {
            self.send(Op::Position(Box::new(p.clone())));
            self.decision(
                p.correlation_id,
                "trailing_stop_moved",
                &p.symbol,
                serde_json::json!({"position_id": p.id, "stop_loss": p.stop_loss}),
            );
            self.ensure_protection(p.id);
        }
        for (pid, correlation_id) in breached {
            let symbol = self.positions.get(&pid).map(|p| p.symbol.clone());
            self.alert(
                AlertType::StopLossMissing,
                Severity::Critical,
                symbol,
                format!("stop of position {pid} breached without a working stop order; closing at market"),
            );
            self.effect(Effect::Close {
                pid,
                correlation_id,
                reason: "stop_loss_backup".into(),
            });
        }
    }

    /// What a last price of `price` does to position `p` (see [`Self::on_prices`]): nothing, the
    /// backup stop trigger, or a trailing stop update (the new best price, and the new stop when
    /// it improves on the current one).
    pub fn price_effect(&self, p: &PositionView, price: Decimal) -> PriceEffect {
        if p.status != PositionStatus::Open {
            return PriceEffect::None;
        }
        let trailing = &self.cfg.trailing_stop;
        let hit = p.stop_loss.is_some_and(|sl| match p.side {
            PositionSide::Long => price <= sl,
            PositionSide::Short => price >= sl,
        });
        if hit && self.backup_stop_armed(p) {
            return PriceEffect::Breached;
        }
        if !trailing.enabled {
            return PriceEffect::None;
        }
        let (_, pct) = position_pnl(p.side, p.entry_price, price, p.size, 1);
        let ext = self.trail_extreme.get(&p.id).copied();
        if ext.is_none() && pct < trailing.activation_pct {
            return PriceEffect::None;
        }
        let best = match (p.side, ext) {
            (PositionSide::Long, Some(e)) => e.max(price),
            (PositionSide::Short, Some(e)) => e.min(price),
            (_, None) => price,
        };
        let dist = trailing.distance_pct / Decimal::ONE_HUNDRED;
        let raw = match p.side {
            PositionSide::Long => best * (Decimal::ONE - dist),
            PositionSide::Short => best * (Decimal::ONE + dist),
        };
        let candidate = self.pairs.get(&p.symbol).map_or(raw, |pi| pi.quantise_price(raw));
        let better = match (p.side, p.stop_loss) {
            (_, None) => true,
            (PositionSide::Long, Some(s)) => candidate > s,
            (PositionSide::Short, Some(s)) => candidate < s,
        };
        if !better && ext == Some(best) {
            return PriceEffect::None;
        }
        PriceEffect::Trail {
            best,
            stop: better.then_some(candidate),
        }
    }

    /// How many of `prices` (in order) can be applied one after the other without anything
    /// happening here: no order or protection in flight, no stop breached, no trailing stop moved.
    /// A price that does nothing leaves the state as it was, so each is judged on the current state.
    pub fn quiet_prefix(&self, prices: &[(Symbol, Decimal)]) -> usize {
        let busy = !self.placing.is_empty()
            || !self.protect_inflight.is_empty()
            || !self.cancel_requested.is_empty()
            || self.polling
            || !self.ready;
        if busy {
            return 0;
        }
        prices
            .iter()
            .take_while(|(symbol, price)| {
                self.positions
                    .values()
                    .filter(|p| &p.symbol == symbol)
                    .all(|p| matches!(self.price_effect(p, *price), PriceEffect::None))
            })
            .count()
    }
}
