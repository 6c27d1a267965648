//! Settlement in the paper exchange's engine: a fill's balances (spot) or margin position, and the
//! Kraken-style order description.

use super::*;

impl Engine {
    pub(super) fn settle(
        &mut self,
        o: &mut PaperOrder,
        volume: Decimal,
        price: Decimal,
        fee_pct: Decimal,
        liquidity: Liquidity,
        ts: DateTime<Utc>,
    ) -> Result<PaperFill, String> {
        let remaining = o.remaining();
        let released = if volume >= remaining {
            o.reserved
        } else {
            (o.reserved * volume / remaining).round_dp_with_strategy(SCALE, RoundingStrategy::ToZero)
        };
        let cost = price * volume;
        let fee =
            (cost * fee_pct / HUNDRED).round_dp_with_strategy(FEE_DECIMALS, RoundingStrategy::MidpointAwayFromZero);
        self.release(&o.reserve_asset, released);
        let settled = match o.margin_leverage {
            Some(lev) => self.settle_margin(o, volume, price, fee, lev, ts),
            None => self.settle_spot(o, volume, cost, fee),
        };
        let realized_pnl = match settled {
            Ok(pnl) => pnl,
            Err(reason) => {
                self.hold(&o.reserve_asset, released);
                return Err(reason);
            }
        };
        o.reserved -= released;
        o.filled_volume += volume;
        o.filled_cost += cost;
        o.fee += fee;
        if o.filled_volume >= o.volume || (o.reduce_only && o.margin_leverage.is_some() && !self.has_opposite(o)) {
            o.status = OrderStatus::Filled;
            o.closed_at = Some(ts);
            if !o.reserved.is_zero() {
                self.release(&o.reserve_asset, o.reserved);
                o.reserved = Decimal::ZERO;
            }
        } else {
            o.status = OrderStatus::PartiallyFilled;
        }
        Ok(PaperFill {
            order_id: o.id.clone(),
            client_order_id: o.client_order_id.clone(),
            symbol: o.symbol.clone(),
            side: o.side,
            order_type: o.order_type,
            volume,
            price,
            cost,
            fee,
            fee_asset: o.symbol.quote().to_owned(),
            liquidity,
            margin: o.margin_leverage.is_some(),
            realized_pnl,
            timestamp: ts,
        })
    }

    fn has_opposite(&self, o: &PaperOrder) -> bool {
        self.positions
            .get(o.symbol.as_str())
            .is_some_and(|p| p.side != position_side(o.side))
    }

    fn settle_spot(
        &mut self,
        o: &PaperOrder,
        volume: Decimal,
        cost: Decimal,
        fee: Decimal,
    ) -> Result<Option<Decimal>, String> {
        let (base, quote) = (o.symbol.base(), o.symbol.quote());
        match o.side {
            Side::Buy => {
                if self.available(quote) < cost + fee {
                    return Err("Insufficient funds".to_owned());
                }
                self.credit(quote, -(cost + fee));
                self.credit(base, volume);
            }
            Side::Sell => {
                if self.available(base) < volume {
                    return Err("Insufficient funds".to_owned());
                }
                self.credit(base, -volume);
                self.credit(quote, cost - fee);
            }
        }
        Ok(None)
    }

    fn settle_margin(
        &mut self,
        o: &PaperOrder,
        volume: Decimal,
        price: Decimal,
        fee: Decimal,
        leverage: u32,
        ts: DateTime<Utc>,
    ) -> Result<Option<Decimal>, String> {
        let key = o.symbol.as_str().to_owned();
        let quote = o.symbol.quote().to_owned();
        let side = position_side(o.side);
        let existing = self.positions.get(&key).cloned();
        let (reduced, pnl, freed) = match &existing {
            Some(p) if p.side != side => {
                let rv = volume.min(p.volume);
                let freed = if rv >= p.volume {
                    p.margin
                } else {
                    (p.margin * rv / p.volume).round_dp(SCALE)
                };
                let pnl = match p.side {
                    PositionSide::Long => (price - p.avg_price) * rv,
                    PositionSide::Short => (p.avg_price - price) * rv,
                };
                (rv, pnl, freed)
            }
            _ => (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO),
        };
        let opening = if o.reduce_only { Decimal::ZERO } else { volume - reduced };
        let collateral = (opening * price / Decimal::from(leverage.max(1))).round_dp(SCALE);
        if opening > Decimal::ZERO && self.available(&quote) + freed + pnl - fee - collateral < Decimal::ZERO {
            return Err("Insufficient margin".to_owned());
        }
        self.credit(&quote, freed + pnl - fee - collateral);
        if let Some(mut p) = existing {
            if p.side != side {
                p.volume -= reduced;
                p.margin -= freed;
                if p.volume.is_zero() {
                    self.positions.remove(&key);
                } else {
                    self.positions.insert(key.clone(), p);
                }
            } else if opening > Decimal::ZERO {
                let new_volume = p.volume + opening;
                p.avg_price = ((p.avg_price * p.volume + price * opening) / new_volume)
                    .round_dp(SCALE)
                    .normalize();
                p.volume = new_volume;
                p.margin += collateral;
                self.positions.insert(key.clone(), p);
                return Ok(None);
            }
        }
        if opening > Decimal::ZERO && !self.positions.contains_key(&key) {
            self.positions.insert(
                key,
                PaperPosition {
                    symbol: o.symbol.clone(),
                    side,
                    volume: opening,
                    avg_price: price,
                    margin: collateral,
                    leverage,
                    opened_at: ts,
                },
            );
        }
        Ok((reduced > Decimal::ZERO).then_some(pnl))
    }
}

pub(super) fn position_side(side: Side) -> PositionSide {
    match side {
        Side::Buy => PositionSide::Long,
        Side::Sell => PositionSide::Short,
    }
}

/// Kraken-style order description, e.g. `buy 0.1 XBTUSDT @ limit 45000.1`.
pub(super) fn describe(
    req: &OrderRequest,
    pair: &PairInfo,
    volume: Decimal,
    price: Option<Decimal>,
    price2: Option<Decimal>,
    leverage: Option<u32>,
) -> String {
    let mut s = format!(
        "{} {} {} @ {}",
        req.side,
        volume.normalize(),
        pair.exchange_name,
        req.order_type
    );
    if let Some(p) = price {
        s.push_str(&format!(" {}", p.normalize()));
    }
    if let Some(p) = price2 {
        s.push_str(&format!(" -> limit {}", p.normalize()));
    }
    if let Some(l) = leverage {
        s.push_str(&format!(" with {l}:1 leverage"));
    }
    s
}
