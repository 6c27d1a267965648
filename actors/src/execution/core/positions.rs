//! Positions in the core: what a fill does to a position, and the orders a trade, a spot holding
//! trade or a close becomes (sized, quantised and checked against the limits).

use super::{position_pnl, Effect, ExecutionCore, Op};
use crate::domain::{CorrelationId, OrderPurpose, OrderType, PositionSide, PositionStatus, Side, Symbol};
use crate::execution::api::{ExecuteTrade, ExecutionError, PositionView};
use crate::messages::ExecutionEventType;
use crate::ports::{OrderRecord, PairInfo, TradeRecord};
use rust_decimal::Decimal;
use uuid::Uuid;

/// What a trade request comes to.
#[derive(Debug)]
pub enum TradePlan {
    /// A new order to track and send.
    Order(Box<OrderRecord>),
    /// A reduce-only trade: close this fraction of the oldest opposing position.
    Close {
        pid: Uuid,
        fraction: Decimal,
        reason: String,
        correlation_id: CorrelationId,
    },
}

impl ExecutionCore {
    /// The fill of `delta` at `price` (fee `fee`) of a tracked order, applied to its position.
    pub(super) fn on_fill(&mut self, rec: &OrderRecord, delta: Decimal, price: Decimal, fee: Decimal) {
        let now = self.now();
        let Some(pid) = rec.view.position_id else {
            if rec.view.purpose.is_holding() {
                // A spot trade of holdings: a fill without a position.
                self.send(Op::Trade(TradeRecord {
                    id: Uuid::new_v4(),
                    order_id: rec.view.id,
                    position_id: None,
                    correlation_id: rec.view.correlation_id,
                    symbol: rec.view.symbol.clone(),
                    side: rec.view.side,
                    volume: delta,
                    price,
                    fee,
                    realized_pnl: None,
                    executed_at: now,
                }));
            }
            return;
        };
        let trade = |realized: Option<Decimal>| TradeRecord {
            id: Uuid::new_v4(),
            order_id: rec.view.id,
            position_id: Some(pid),
            correlation_id: rec.view.correlation_id,
            symbol: rec.view.symbol.clone(),
            side: rec.view.side,
            volume: delta,
            price,
            fee,
            realized_pnl: realized,
            executed_at: now,
        };
        if rec.view.purpose == OrderPurpose::Entry {
            self.write(Op::Trade(trade(None)));
            let opened = if let Some(p) = self.positions.get_mut(&pid) {
                let total = p.size + delta;
                p.entry_price = ((p.entry_price * p.size + price * delta) / total).normalize();
                p.size = total;
                p.fees += fee;
                p.realized_pnl -= fee;
                false
            } else {
                let side = match rec.view.side {
                    Side::Buy => PositionSide::Long,
                    Side::Sell => PositionSide::Short,
                };
                self.positions.insert(
                    pid,
                    PositionView {
                        id: pid,
                        correlation_id: rec.view.correlation_id,
                        symbol: rec.view.symbol.clone(),
                        side,
                        status: PositionStatus::Open,
                        size: delta,
                        entry_price: price,
                        exit_price: None,
                        leverage: rec.leverage.max(1),
                        stop_loss: rec.stop_loss,
                        take_profit: rec.take_profit,
                        stop_loss_order_id: None,
                        take_profit_order_id: None,
                        realized_pnl: -fee,
                        unrealized_pnl: None,
                        fees: fee,
                        opened_at: now,
                        closed_at: None,
                    },
                );
                true
            };
            let Some(p) = self.positions.get(&pid).cloned() else {
                return;
            };
            self.write(Op::Position(Box::new(p.clone())));
            if opened {
                self.publish(ExecutionEventType::PositionOpened, rec, delta, Some(price), fee, None);
                self.decision(
                    p.correlation_id,
                    "position_opened",
                    &p.symbol,
                    serde_json::json!({"position_id": pid, "side": p.side, "size": p.size, "entry_price": p.entry_price}),
                );
            }
            self.commit_fill();
            self.ensure_protection(pid);
            return;
        }
        // An exit: stop-loss, take-profit or close.
        let Some(p) = self.positions.get_mut(&pid) else {
            self.write(Op::Trade(trade(None)));
            tracing::warn!(position = %pid, "exit fill for a position that is not open");
            return;
        };
        let filled = delta.min(p.size);
        let (gross, _) = position_pnl(p.side, p.entry_price, price, filled, p.leverage);
        let pnl = gross - fee;
        p.realized_pnl += pnl;
        p.fees += fee;
        p.size -= filled;
        let closed = p.size <= Decimal::ZERO;
        if closed {
            p.size = Decimal::ZERO;
            p.status = PositionStatus::Closed;
            p.exit_price = Some(price);
            p.closed_at = Some(now);
            p.unrealized_pnl = None;
        }
        let p = p.clone();
        self.write(Op::Trade(trade(Some(pnl))));
        self.write(Op::Position(Box::new(p.clone())));
        self.commit_fill();
        if closed {
            self.positions.remove(&pid);
            self.unprotected_since.remove(&pid);
            self.unprotected_alerted.remove(&pid);
            self.trail_extreme.remove(&pid);
            self.cancel_position_orders(pid);
            self.publish(
                ExecutionEventType::PositionClosed,
                rec,
                filled,
                Some(price),
                fee,
                Some(p.realized_pnl),
            );
            self.decision(
                p.correlation_id,
                "position_closed",
                &p.symbol,
                serde_json::json!({
                    "position_id": pid, "reason": rec.view.purpose, "exit_price": price,
                    "realized_pnl": p.realized_pnl, "fees": p.fees,
                }),
            );
        } else {
            self.ensure_protection(pid);
        }
    }

    pub(crate) fn reference_price(&self, symbol: &Symbol, given: Option<Decimal>) -> Option<Decimal> {
        given
            .filter(|p| *p > Decimal::ZERO)
            .or_else(|| self.prices.get(symbol).copied())
            .or_else(|| (self.fallback_price)(symbol))
    }

    fn bounded_price(&self, side: Side, reference: Decimal, pair: &PairInfo) -> Decimal {
        let slip = self.cfg.market_order_slippage_pct / Decimal::ONE_HUNDRED;
        let p = match side {
            Side::Buy => reference * (Decimal::ONE + slip),
            Side::Sell => reference * (Decimal::ONE - slip),
        };
        pair.quantise_price(p)
    }

    /// The limit price of a `limit` or `market` (bounded) order, or why the type is refused.
    fn order_price(
        &self,
        msg: &ExecuteTrade,
        reference: Decimal,
        pair: &PairInfo,
        what: &str,
    ) -> Result<Decimal, ExecutionError> {
        match msg.order_type {
            OrderType::Limit => Ok(pair.quantise_price(reference)),
            OrderType::Market => Ok(self.bounded_price(msg.proposal().side, reference, pair)),
            other => Err(ExecutionError::Invalid(format!(
                "order_type {other} is not {what} (limit or market)"
            ))),
        }
    }

    /// Refuses a volume below the pair's minimum order or cost.
    fn check_minimums(volume: Decimal, price: Decimal, pair: &PairInfo, symbol: &Symbol) -> Result<(), ExecutionError> {
        if volume <= Decimal::ZERO || volume < pair.ordermin {
            return Err(ExecutionError::Invalid(format!(
                "volume {volume} below the minimum order {} for {symbol}",
                pair.ordermin
            )));
        }
        if volume * price < pair.costmin {
            return Err(ExecutionError::Invalid(format!(
                "order cost {} below the minimum cost {} for {symbol}",
                volume * price,
                pair.costmin
            )));
        }
        Ok(())
    }

    /// What an approved trade becomes: an entry, a spot holding trade, or a reduce-only close.
    pub fn plan_trade(&mut self, msg: &ExecuteTrade) -> Result<TradePlan, ExecutionError> {
        if !self.ready {
            return Err(ExecutionError::Unavailable("execution manager is still loading".into()));
        }
        let p = msg.proposal().clone();
        if p.source.is_holding() {
            return self.plan_holding(msg).map(|r| TradePlan::Order(Box::new(r)));
        }
        if p.reduce_only {
            return self.plan_reduce_only(msg);
        }
        let Some(pair) = self.pairs.get(&p.symbol).cloned() else {
            return Err(ExecutionError::Invalid(format!("symbol {} is not traded", p.symbol)));
        };
        let pair_max = match p.side {
            Side::Buy => pair.max_leverage_buy,
            Side::Sell => pair.max_leverage_sell,
        };
        let max = pair_max.clamp(1, crate::domain::MAX_LEVERAGE);
        if p.leverage == 0 || p.leverage > max {
            return Err(ExecutionError::Invalid(format!(
                "leverage {} outside 1..{max} for {}",
                p.leverage, p.symbol
            )));
        }
        let pending_entries = |sym: Option<&Symbol>| {
            self.orders
                .values()
                .filter(|o| o.view.purpose == OrderPurpose::Entry && o.view.filled_volume.is_zero())
                .filter(|o| sym.is_none_or(|s| &o.view.symbol == s))
                .count()
        };
        let on_symbol =
            self.positions.values().filter(|x| x.symbol == p.symbol).count() + pending_entries(Some(&p.symbol));
        if on_symbol >= self.cfg.max_positions_per_symbol {
            return Err(ExecutionError::NotAllowed(format!(
                "max_positions_per_symbol {} reached for {}",
                self.cfg.max_positions_per_symbol, p.symbol
            )));
        }
        let total = self.positions.len() + pending_entries(None);
        if total >= self.cfg.max_positions_total {
            return Err(ExecutionError::NotAllowed(format!(
                "max_positions_total {} reached",
                self.cfg.max_positions_total
            )));
        }
        let Some(reference) = self.reference_price(&p.symbol, msg.limit_price.or(Some(p.entry_price))) else {
            return Err(ExecutionError::Invalid(format!("no price known for {}", p.symbol)));
        };
        let price = self.order_price(msg, reference, &pair, "an entry type")?;
        let volume = match msg.volume {
            Some(v) => pair.quantise_volume(v),
            None => pair.quantise_volume(p.size_usd * Decimal::from(p.leverage) / reference),
        };
        Self::check_minimums(volume, price, &pair, &p.symbol)?;
        let mut rec = self.new_record(
            p.correlation_id,
            Some(Uuid::new_v4()),
            &p.symbol,
            p.side,
            OrderType::Limit,
            OrderPurpose::Entry,
            volume,
            Some(price),
            None,
            p.leverage,
            false,
            None,
        );
        rec.stop_loss = p.stop_loss;
        rec.take_profit = p.take_profit;
        self.decision(
            p.correlation_id,
            "order_submitted",
            &p.symbol,
            serde_json::json!({
                "order_id": rec.view.id, "client_order_id": rec.view.client_order_id,
                "requested_type": msg.order_type, "price": price, "volume": volume,
                "verdict": msg.verdict().status, "note": msg.note,
            }),
        );
        Ok(TradePlan::Order(Box::new(rec)))
    }

    /// A rebalance or hodl trade: a spot order that changes balances only. It opens no position,
    /// gets no stop or take-profit, and neither counts toward nor is refused by the position
    /// limits (`max_positions_per_symbol`, `max_positions_total`). Its fills are recorded as trades
    /// without a position, under the order purpose `rebalance` or `hodl`.
    fn plan_holding(&mut self, msg: &ExecuteTrade) -> Result<OrderRecord, ExecutionError> {
        let p = msg.proposal();
        let Some(pair) = self.pairs.get(&p.symbol).cloned() else {
            return Err(ExecutionError::Invalid(format!("symbol {} is not traded", p.symbol)));
        };
        if p.leverage != 1 {
            return Err(ExecutionError::Invalid(format!(
                "a {:?} trade is spot: leverage must be 1, got {}",
                p.source, p.leverage
            )));
        }
        let Some(reference) = self.reference_price(&p.symbol, msg.limit_price.or(Some(p.entry_price))) else {
            return Err(ExecutionError::Invalid(format!("no price known for {}", p.symbol)));
        };
        let price = self.order_price(msg, reference, &pair, "a spot trade type")?;
        let volume = match msg.volume {
            Some(v) => pair.quantise_volume(v),
            None => pair.quantise_volume(p.size_usd / reference),
        };
        Self::check_minimums(volume, price, &pair, &p.symbol)?;
        let purpose = if p.source == crate::risk::ProposalSource::Hodl {
            OrderPurpose::Hodl
        } else {
            OrderPurpose::Rebalance
        };
        let rec = self.new_record(
            p.correlation_id,
            None,
            &p.symbol,
            p.side,
            OrderType::Limit,
            purpose,
            volume,
            Some(price),
            None,
            1,
            false,
            None,
        );
        self.decision(
            p.correlation_id,
            "order_submitted",
            &p.symbol,
            serde_json::json!({
                "order_id": rec.view.id, "client_order_id": rec.view.client_order_id, "purpose": purpose,
                "requested_type": msg.order_type, "price": price, "volume": volume,
                "verdict": msg.verdict().status, "note": msg.note,
            }),
        );
        Ok(rec)
    }

    /// A reduce-only trade closes (part of) the oldest open position it opposes on its symbol.
    fn plan_reduce_only(&self, msg: &ExecuteTrade) -> Result<TradePlan, ExecutionError> {
        let p = msg.proposal();
        let closing_side = match p.side {
            Side::Sell => PositionSide::Long,
            Side::Buy => PositionSide::Short,
        };
        let Some(pos) = self
            .positions
            .values()
            .filter(|x| x.symbol == p.symbol && x.side == closing_side && x.status == PositionStatus::Open)
            .min_by_key(|x| x.opened_at)
        else {
            return Err(ExecutionError::Invalid(format!(
                "reduce-only {} on {}: no open {} position to reduce",
                p.side, p.symbol, closing_side
            )));
        };
        let fraction = match (msg.volume, self.reference_price(&p.symbol, Some(p.entry_price))) {
            (Some(v), _) if pos.size > Decimal::ZERO => (v / pos.size).min(Decimal::ONE),
            (None, Some(price)) if pos.size > Decimal::ZERO && p.size_usd > Decimal::ZERO => {
                (p.size_usd * Decimal::from(p.leverage.max(1)) / price / pos.size).min(Decimal::ONE)
            }
            _ => Decimal::ONE,
        };
        Ok(TradePlan::Close {
            pid: pos.id,
            fraction,
            reason: "reduce_only".into(),
            correlation_id: p.correlation_id,
        })
    }

    /// The reduce-only order that closes `fraction` of a position. A full close marks the position
    /// closing and cancels its stop and take-profit first, so nothing sells the holding twice.
    pub fn plan_close(
        &mut self,
        pid: Uuid,
        fraction: Decimal,
        reason: &str,
        correlation_id: CorrelationId,
    ) -> Result<OrderRecord, ExecutionError> {
        if !self.ready {
            return Err(ExecutionError::Unavailable("execution manager is still loading".into()));
        }
        if fraction <= Decimal::ZERO || fraction > Decimal::ONE {
            return Err(ExecutionError::Invalid("fraction must be in (0, 1]".into()));
        }
        let Some(pos) = self.positions.get(&pid).cloned() else {
            return Err(ExecutionError::Invalid(format!("position {pid} is not open")));
        };
        if pos.status == PositionStatus::Closing {
            return Err(ExecutionError::NotAllowed(format!("position {pid} is already closing")));
        }
        let Some(pair) = self.pairs.get(&pos.symbol).cloned() else {
            return Err(ExecutionError::Invalid(format!("symbol {} is not traded", pos.symbol)));
        };
        let reference = self.reference_price(&pos.symbol, None).unwrap_or(pos.entry_price);
        let full = fraction == Decimal::ONE;
        let volume = if full {
            pos.size
        } else {
            pair.quantise_volume(pos.size * fraction)
        };
        if volume <= Decimal::ZERO {
            return Err(ExecutionError::Invalid("nothing to close at that fraction".into()));
        }
        let side = match pos.side {
            PositionSide::Long => Side::Sell,
            PositionSide::Short => Side::Buy,
        };
        let price = self.bounded_price(side, reference, &pair);
        if full {
            if let Some(p) = self.positions.get_mut(&pid) {
                p.status = PositionStatus::Closing;
                let snapshot = p.clone();
                self.send(Op::Position(Box::new(snapshot)));
            }
            self.cancel_position_orders(pid);
        }
        let rec = self.new_record(
            correlation_id,
            Some(pid),
            &pos.symbol,
            side,
            OrderType::Limit,
            OrderPurpose::Close,
            volume,
            Some(price),
            None,
            pos.leverage,
            true,
            None,
        );
        self.decision(
            correlation_id,
            "close_requested",
            &pos.symbol,
            serde_json::json!({"position_id": pid, "fraction": fraction, "reason": reason, "volume": volume}),
        );
        Ok(rec)
    }

    /// The open positions a close-all covers, each with its correlation id.
    pub fn open_position_ids(&self) -> Vec<(Uuid, CorrelationId)> {
        self.positions
            .values()
            .filter(|p| p.status == PositionStatus::Open)
            .map(|p| (p.id, p.correlation_id))
            .collect()
    }

    /// Snapshots of every open position at its last price (every `snapshot_interval_secs`), then
    /// the price checks and a valuation.
    pub fn on_tick(&mut self) {
        let now = self.now();
        let mut snapshots = Vec::new();
        for p in self.positions.values_mut() {
            let Some(&price) = self.prices.get(&p.symbol) else {
                continue;
            };
            let (pnl, pct) = position_pnl(p.side, p.entry_price, price, p.size, p.leverage);
            p.unrealized_pnl = Some(pnl);
            snapshots.push(crate::ports::PositionSnapshotRecord {
                position_id: p.id,
                at: now,
                price,
                unrealized_pnl: pnl,
                unrealized_pnl_pct: pct.round_dp(8),
            });
        }
        for s in snapshots {
            self.send(Op::Snapshot(s));
        }
        self.on_prices();
        self.effect(Effect::RefreshBalances);
    }
}
