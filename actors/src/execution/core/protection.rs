//! Protection in the core: every open position's stop-loss and take-profit on the exchange (placed,
//! resized, replaced, moved on request), the watchdog of positions without a working stop, and
//! orphaned protective orders.

use super::{is_protective, is_unknown, Effect, ExecutionCore, Op, Protect};
use crate::domain::{OrderStatus, OrderType, PositionSide, PositionStatus, Severity, Side};
use crate::execution::api::{ExecutionError, ModifyPosition, OrderView, PositionView};
use crate::messages::AlertType;
use crate::ports::OrderRecord;
use rust_decimal::Decimal;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// What moving a protective order comes to.
#[derive(Debug)]
pub enum MovePlan {
    /// Nothing to move on the exchange (protection off, or it already works there): the new
    /// value is stored.
    Stored,
    /// Send this new order (tracked, marked in flight); the old one is cancelled once it works.
    Place {
        rec: Box<OrderRecord>,
        replaces: Option<Uuid>,
    },
}

impl ExecutionCore {
    /// Makes the exchange's protective orders match the position: placed when missing, replaced when the
    /// size or price differs. Failures alert and retry with back-off.
    pub fn ensure_protection(&mut self, pid: Uuid) {
        if !self.ready {
            return;
        }
        let Some(pos) = self.positions.get(&pid).cloned() else {
            return;
        };
        if pos.status != PositionStatus::Open || pos.size <= Decimal::ZERO {
            return;
        }
        for kind in [Protect::StopLoss, Protect::TakeProfit] {
            let (enabled, target, current) = match kind {
                Protect::StopLoss => (self.cfg.auto_stop_loss, pos.stop_loss, pos.stop_loss_order_id),
                Protect::TakeProfit => (self.cfg.auto_take_profit, pos.take_profit, pos.take_profit_order_id),
            };
            let mut current_rec = current
                .filter(|id| !self.superseded.contains(id) && !self.cancel_requested.contains(id))
                .and_then(|id| self.orders.get(&id))
                .cloned();
            if current_rec.is_none() {
                // A protective order of this position that is tracked but not linked (its placement was
                // cut short by a restart, or its outcome is still unknown): adopt it, never send a second
                // while it may still appear.
                let unlinked = self
                    .orders
                    .values()
                    .filter(|o| {
                        o.view.position_id == Some(pid)
                            && o.view.purpose == kind.purpose()
                            && !self.cancel_requested.contains(&o.view.id)
                            && !self.superseded.contains(&o.view.id)
                    })
                    .max_by_key(|o| o.view.created_at)
                    .cloned();
                if let Some(o) = unlinked {
                    if self.placing.contains(&o.view.id) {
                        continue;
                    }
                    if current != Some(o.view.id) {
                        if let Some(p) = self.positions.get_mut(&pid) {
                            match kind {
                                Protect::StopLoss => p.stop_loss_order_id = Some(o.view.id),
                                Protect::TakeProfit => p.take_profit_order_id = Some(o.view.id),
                            }
                            let snapshot = p.clone();
                            self.send(Op::Position(Box::new(snapshot)));
                        }
                        tracing::info!(position = %pid, order = %o.view.client_order_id, kind = %kind.purpose(),
                            "adopted an unlinked protective order");
                    }
                    current_rec = Some(o);
                }
            }
            let Some(target) = target.filter(|_| enabled) else {
                if let Some(c) = current_rec {
                    self.request_cancel(c.view.id);
                }
                continue;
            };
            if self.protect_inflight.contains(&(pid, kind)) {
                continue;
            }
            let pair = self.pairs.get(&pos.symbol).cloned();
            let price = pair.as_ref().map_or(target, |p| p.quantise_price(target));
            let volume = pair.as_ref().map_or(pos.size, |p| p.quantise_volume(pos.size));
            if let Some(c) = &current_rec {
                if is_unknown(c) {
                    // Outcome unknown: the search by client id decides first. Once it missed the order,
                    // the position cannot wait for the visibility window: a replacement is placed and
                    // the original is cancelled if it appears.
                    if self.missing.get(&c.view.id).copied().unwrap_or(0) == 0 {
                        continue;
                    }
                } else {
                    let remaining = c.view.volume - c.view.filled_volume;
                    if remaining == volume && c.view.price == Some(price) {
                        continue;
                    }
                }
            }
            let rec = self.protection_record(&pos, kind, price, volume);
            self.protect_inflight.insert((pid, kind));
            self.track(&rec);
            self.effect(Effect::PlaceProtection {
                rec: Box::new(rec),
                kind,
                replaces: current_rec.map(|c| c.view.id),
            });
        }
    }

    /// The record of a new protective order of `pos` at `price` (quantised by the caller).
    fn protection_record(&self, pos: &PositionView, kind: Protect, price: Decimal, volume: Decimal) -> OrderRecord {
        let side = match pos.side {
            PositionSide::Long => Side::Sell,
            PositionSide::Short => Side::Buy,
        };
        let order_type = match kind {
            Protect::StopLoss => self.cfg.stop_loss_type,
            Protect::TakeProfit => self.cfg.take_profit_type,
        };
        // A `*-limit` stop sells no worse than the slippage bound beyond its trigger.
        let price2 = matches!(order_type, OrderType::StopLossLimit | OrderType::TakeProfitLimit).then(|| {
            let slip = self.cfg.market_order_slippage_pct / Decimal::ONE_HUNDRED;
            let p = match side {
                Side::Sell => price * (Decimal::ONE - slip),
                Side::Buy => price * (Decimal::ONE + slip),
            };
            self.pairs.get(&pos.symbol).map_or(p, |pi| pi.quantise_price(p))
        });
        let linked = match kind {
            Protect::StopLoss => pos.take_profit_order_id,
            Protect::TakeProfit => pos.stop_loss_order_id,
        };
        self.new_record(
            pos.correlation_id,
            Some(pos.id),
            &pos.symbol,
            side,
            order_type,
            kind.purpose(),
            volume,
            Some(price),
            price2,
            pos.leverage,
            // The take-profit is a plain limit on spot: reduce-only keeps it from reserving the base.
            kind == Protect::TakeProfit || pos.leverage > 1,
            linked,
        )
    }

    /// The answer to a protective order's placement (after [`Self::on_placed`]).
    pub fn protection_placed(
        &mut self,
        pid: Uuid,
        kind: Protect,
        replaces: Option<Uuid>,
        res: Result<OrderView, ExecutionError>,
    ) {
        self.protect_inflight.remove(&(pid, kind));
        match res {
            Ok(view) => {
                self.protect_failures.remove(&(pid, kind));
                let Some(p) = self.positions.get_mut(&pid) else {
                    // The position closed meanwhile: the new order is an orphan.
                    self.request_cancel(view.id);
                    return;
                };
                match kind {
                    Protect::StopLoss => p.stop_loss_order_id = Some(view.id),
                    Protect::TakeProfit => p.take_profit_order_id = Some(view.id),
                }
                let (sl, tp) = (p.stop_loss_order_id, p.take_profit_order_id);
                let snapshot = p.clone();
                self.send(Op::Position(Box::new(snapshot.clone())));
                // Link the pair both ways.
                for (me, other) in [(sl, tp), (tp, sl)] {
                    if let (Some(me), Some(other)) = (me, other) {
                        if let Some(o) = self.orders.get_mut(&me) {
                            if o.linked_order_id != Some(other) {
                                o.linked_order_id = Some(other);
                                let o = o.clone();
                                self.send(Op::Order(Box::new(o)));
                            }
                        }
                    }
                }
                if let Some(old) = replaces {
                    if self.orders.get(&old).is_some_and(is_unknown) {
                        // Never seen on the exchange: cancelled only if it appears (see `apply_update`).
                        self.superseded.insert(old);
                    } else {
                        self.request_cancel(old);
                    }
                }
                self.decision(
                    snapshot.correlation_id,
                    "protection_placed",
                    &snapshot.symbol,
                    serde_json::json!({"position_id": pid, "kind": kind.purpose(), "order_id": view.id,
                        "price": view.price, "volume": view.volume}),
                );
            }
            Err(e) => {
                let Some(pos) = self.positions.get(&pid).cloned() else {
                    return;
                };
                let n = {
                    let n = self.protect_failures.entry((pid, kind)).or_insert(0);
                    *n += 1;
                    *n
                };
                let (alert_type, severity) = match kind {
                    Protect::StopLoss => (AlertType::StopLossMissing, Severity::Critical),
                    Protect::TakeProfit => (AlertType::ExecutionError, Severity::High),
                };
                let msg = format!(
                    "{} for position {pid} not placed (attempt {n}): {e}; retrying",
                    kind.purpose().as_str().replace('_', " ")
                );
                self.alert(alert_type, severity, Some(pos.symbol.clone()), msg);
                if matches!(e, ExecutionError::Unknown(_)) {
                    // The order may exist: the poll resolves it by client id before anything is re-sent.
                    return;
                }
                if self.protect_retry_scheduled.insert(pid) {
                    let delay = self.backoff(n);
                    self.effect(Effect::RetryProtection { pid, delay });
                }
            }
        }
    }

    /// A scheduled retry of a position's protection is due.
    pub fn retry_protection(&mut self, pid: Uuid) {
        self.protect_retry_scheduled.remove(&pid);
        self.ensure_protection(pid);
    }

    /// Checks a stop / take-profit change; returns the protective orders to move, stop first.
    pub fn plan_modify(&self, msg: &ModifyPosition) -> Result<Vec<(Protect, Decimal)>, ExecutionError> {
        if !self.ready {
            return Err(ExecutionError::Unavailable("execution manager is still loading".into()));
        }
        let Some(p) = self.positions.get(&msg.position_id) else {
            return Err(ExecutionError::Invalid(format!(
                "position {} is not open",
                msg.position_id
            )));
        };
        if p.status != PositionStatus::Open {
            return Err(ExecutionError::NotAllowed(format!(
                "position {} is {}",
                msg.position_id, p.status
            )));
        }
        let reference = p.entry_price;
        for (name, v) in [("stop_loss", msg.stop_loss), ("take_profit", msg.take_profit)] {
            if v.is_some_and(|v| v <= Decimal::ZERO) {
                return Err(ExecutionError::Invalid(format!("{name} must be positive")));
            }
        }
        if msg.stop_loss.is_some_and(|sl| !p.side.stop_protects(reference, sl)) {
            return Err(ExecutionError::Invalid(format!(
                "stop_loss must be on the losing side of the entry price {reference}"
            )));
        }
        let pair = self.pairs.get(&p.symbol);
        let mut steps = Vec::new();
        for (kind, target) in [
            (Protect::StopLoss, msg.stop_loss),
            (Protect::TakeProfit, msg.take_profit),
        ] {
            let Some(target) = target else { continue };
            let quantised = pair.map_or(target, |pi| pi.quantise_price(target));
            if quantised <= Decimal::ZERO {
                return Err(ExecutionError::Invalid(format!(
                    "{} {target} is 0 on the pair's price tick",
                    kind.purpose()
                )));
            }
            if self.protect_inflight.contains(&(p.id, kind)) {
                return Err(ExecutionError::NotAllowed(format!(
                    "a {} order of this position is being placed; retry shortly",
                    kind.purpose()
                )));
            }
            steps.push((kind, target));
        }
        Ok(steps)
    }

    /// Moves one protective order to `target`: the new order is placed first and the stored
    /// value changes only once the exchange confirmed it ([`Self::moved`]); then the old order is
    /// cancelled. A refused order changes nothing (the old one keeps working). An order of unknown
    /// outcome leaves the old one working and is cancelled if it ever appears.
    pub fn plan_move(&mut self, pid: Uuid, kind: Protect, target: Decimal) -> Result<MovePlan, ExecutionError> {
        let Some(pos) = self.positions.get(&pid).cloned() else {
            return Err(ExecutionError::Invalid(format!("position {pid} is not open")));
        };
        let enabled = match kind {
            Protect::StopLoss => self.cfg.auto_stop_loss,
            Protect::TakeProfit => self.cfg.auto_take_profit,
        };
        let current = match kind {
            Protect::StopLoss => pos.stop_loss_order_id,
            Protect::TakeProfit => pos.take_profit_order_id,
        }
        .filter(|id| !self.superseded.contains(id) && !self.cancel_requested.contains(id))
        .and_then(|id| self.orders.get(&id))
        .cloned();
        let pair = self.pairs.get(&pos.symbol).cloned();
        let price = pair.as_ref().map_or(target, |p| p.quantise_price(target));
        let volume = pair.as_ref().map_or(pos.size, |p| p.quantise_volume(pos.size));
        let unchanged = current.as_ref().is_some_and(|c| {
            !is_unknown(c) && c.view.price == Some(price) && c.view.volume - c.view.filled_volume == volume
        });
        if !enabled || unchanged {
            // No exchange order to move (protection off, or it already works at that price).
            self.store_target(pid, kind, target);
            return Ok(MovePlan::Stored);
        }
        let rec = self.protection_record(&pos, kind, price, volume);
        self.protect_inflight.insert((pid, kind));
        Ok(MovePlan::Place {
            rec: Box::new(rec),
            replaces: current.map(|c| c.view.id),
        })
    }

    /// The answer to the new order of a [`MovePlan::Place`] (after [`Self::on_placed`]).
    pub fn moved(
        &mut self,
        pid: Uuid,
        kind: Protect,
        target: Decimal,
        new_id: Uuid,
        replaces: Option<Uuid>,
        res: Result<OrderView, ExecutionError>,
    ) -> Result<(), ExecutionError> {
        match res {
            Ok(view) => {
                self.store_target(pid, kind, target);
                self.protection_placed(pid, kind, replaces, Ok(view));
                Ok(())
            }
            Err(ExecutionError::Unknown(m)) => {
                self.protect_inflight.remove(&(pid, kind));
                self.superseded.insert(new_id);
                Err(ExecutionError::Unknown(format!(
                    "{m}; the {} stays at its old price and the new order is cancelled if it appears",
                    kind.purpose()
                )))
            }
            Err(e) => {
                self.protect_inflight.remove(&(pid, kind));
                tracing::warn!(position = %pid, kind = %kind.purpose(), error = %e,
                    "protective order change refused; the old order keeps working");
                Err(e)
            }
        }
    }

    /// Stores a confirmed stop / take-profit value of a position.
    fn store_target(&mut self, pid: Uuid, kind: Protect, target: Decimal) {
        let Some(p) = self.positions.get_mut(&pid) else {
            return;
        };
        match kind {
            Protect::StopLoss => p.stop_loss = Some(target),
            Protect::TakeProfit => p.take_profit = Some(target),
        }
        let view = p.clone();
        self.send(Op::Position(Box::new(view.clone())));
        self.decision(
            view.correlation_id,
            "position_modified",
            &view.symbol,
            serde_json::json!({"position_id": view.id, "kind": kind.purpose(), "stop_loss": view.stop_loss,
                "take_profit": view.take_profit}),
        );
    }

    /// Whether a stop order of position `p` works on the exchange (acknowledged, open, not being
    /// cancelled). A `pending` or `unknown` stop does not count.
    pub(super) fn stop_working(&self, p: &PositionView) -> bool {
        self.orders.values().any(|o| {
            o.view.position_id == Some(p.id)
                && o.view.purpose == Protect::StopLoss.purpose()
                && matches!(o.view.status, OrderStatus::Open | OrderStatus::PartiallyFilled)
                && !self.cancel_requested.contains(&o.view.id)
        })
    }

    /// A stop for position `p` is on its way (sent, or of unknown outcome and not yet given up).
    fn stop_pending(&self, p: &PositionView) -> bool {
        self.protect_inflight.contains(&(p.id, Protect::StopLoss))
            || self.orders.values().any(|o| {
                o.view.position_id == Some(p.id)
                    && o.view.purpose == Protect::StopLoss.purpose()
                    && (o.view.status == OrderStatus::Pending || is_unknown(o))
                    && !self.superseded.contains(&o.view.id)
                    && !self.cancel_requested.contains(&o.view.id)
            })
    }

    /// The software backup stop watches the price of `p`: no stop works on the exchange, and none
    /// is on its way, or the position has been unprotected for `max_unprotected_secs`.
    pub(super) fn backup_stop_armed(&self, p: &PositionView) -> bool {
        if self.stop_working(p) {
            return false;
        }
        let max = Duration::from_secs(self.cfg.max_unprotected_secs);
        let too_long = self
            .unprotected_since
            .get(&p.id)
            .is_some_and(|since| since.elapsed() >= max);
        !self.stop_pending(p) || too_long
    }

    /// The watchdog (every second, and on every candle), at monotonic time `now`: a position
    /// without a working stop for `max_unprotected_secs` raises a critical alert (once per episode)
    /// and arms the backup stop; protective orders whose position is gone are cancelled and alerted.
    pub fn check_protection(&mut self, now: Instant) {
        if !self.ready || !self.reconciled || self.drained {
            return;
        }
        let max = Duration::from_secs(self.cfg.max_unprotected_secs);
        let mut late = Vec::new();
        let mut fine = Vec::new();
        for p in self.positions.values() {
            let needs_stop = p.status == PositionStatus::Open
                && p.size > Decimal::ZERO
                && self.cfg.auto_stop_loss
                && p.stop_loss.is_some();
            if !needs_stop || self.stop_working(p) {
                fine.push(p.id);
                continue;
            }
            let since = self.unprotected_since.get(&p.id).copied().unwrap_or(now);
            if now.saturating_duration_since(since) >= max && !self.unprotected_alerted.contains(&p.id) {
                late.push((
                    p.id,
                    p.symbol.clone(),
                    p.stop_loss,
                    now.saturating_duration_since(since),
                ));
            }
            self.unprotected_since.entry(p.id).or_insert(since);
        }
        for id in fine {
            self.unprotected_since.remove(&id);
            self.unprotected_alerted.remove(&id);
        }
        let positions = &self.positions;
        self.unprotected_since.retain(|id, _| positions.contains_key(id));
        self.unprotected_alerted.retain(|id| positions.contains_key(id));
        let armed = !late.is_empty();
        for (pid, symbol, sl, for_how_long) in late {
            self.unprotected_alerted.insert(pid);
            let msg = format!(
                "position {pid} has had no working stop on the exchange for {} s; software backup stop armed at {}",
                for_how_long.as_secs(),
                sl.map(|s| s.to_string()).unwrap_or_default()
            );
            self.alert(AlertType::StopLossMissing, Severity::Critical, Some(symbol), msg);
        }
        // Orphans: protective orders whose position is gone.
        let orphans: Vec<OrderRecord> = self
            .orders
            .values()
            .filter(|o| {
                is_protective(o)
                    && o.view.position_id.is_some_and(|pid| !self.positions.contains_key(&pid))
                    && !self.cancel_requested.contains(&o.view.id)
                    && !self.placing.contains(&o.view.id)
            })
            .cloned()
            .collect();
        for o in orphans {
            let msg = format!(
                "orphan {} {} (position {} is closed or gone); cancelling it",
                o.view.purpose.as_str().replace('_', " "),
                o.view.client_order_id,
                o.view.position_id.map(|p| p.to_string()).unwrap_or_default()
            );
            self.alert(AlertType::Reconcile, Severity::Medium, Some(o.view.symbol.clone()), msg);
            self.request_cancel(o.view.id);
        }
        if armed {
            // The price may already be through the stop.
            self.on_prices();
        }
    }
}
