//! Order lifecycle in the core: loading, status polls, the exchange's view of an order, placement
//! answers, cancels until confirmed, and orders found on the exchange that are not tracked.

use super::{is_protective, is_unknown, Effect, ExecutionCore, Op};
use crate::domain::{OrderPurpose, OrderStatus, PositionStatus, Severity};
use crate::execution::api::{ExecutionError, OrderView, PositionView};
use crate::execution::store::UNRESOLVED;
use crate::messages::{AlertType, ExecutionEventType};
use crate::ports::{
    ExchangeError, ExchangeOrder, FillWrite, OrderAck, OrderRecord, OrderRef, PairInfo, StatusTransition, StoreError,
};
use rust_decimal::Decimal;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// What the placement future hands back: the store write of the pending record, then the exchange.
pub type PlaceOutcome = Result<Result<OrderAck, ExchangeError>, StoreError>;

/// What loading the state at start came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// Loaded: reconcile (poll) next.
    Ready,
    /// A read failed (alerted): load again later.
    Retry,
    /// Drained meanwhile: nothing to do.
    Ignored,
}

/// The orders one status poll asks the exchange about.
#[derive(Debug, Default)]
pub struct PollPlan {
    /// Acknowledged orders, by exchange id.
    pub known: Vec<(Uuid, OrderRef)>,
    /// Orders of unknown outcome, searched by client id.
    pub unknown: Vec<(Uuid, OrderRef)>,
}

impl ExecutionCore {
    /// The state read from the store and the exchange's pairs at start.
    pub fn on_loaded(
        &mut self,
        pairs: Result<Vec<PairInfo>, ExchangeError>,
        orders: Result<Vec<OrderRecord>, StoreError>,
        positions: Result<Vec<PositionView>, StoreError>,
    ) -> Loaded {
        if self.drained {
            return Loaded::Ignored;
        }
        let (pairs, orders, positions) = match (pairs, orders, positions) {
            (Ok(a), Ok(b), Ok(c)) => (a, b, c),
            (a, b, c) => {
                let why = [
                    a.err().map(|e| e.to_string()),
                    b.err().map(|e| e.to_string()),
                    c.err().map(|e| e.to_string()),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; ");
                tracing::error!(reason = %why, "execution manager could not load its state; retrying in 5 s");
                self.alert(
                    AlertType::Reconcile,
                    Severity::High,
                    None,
                    format!("execution state not loaded: {why}"),
                );
                return Loaded::Retry;
            }
        };
        self.pairs = pairs.into_iter().map(|p| (p.symbol.clone(), p)).collect();
        for o in orders {
            self.by_client.insert(o.view.client_order_id.clone(), o.view.id);
            self.orders.insert(o.view.id, o.clone());
            if o.view.status == OrderStatus::Pending {
                // Recorded before sending, then cut short by a restart: it may or may not be on the
                // exchange. Never taken for a working order: searched by client id like any unknown.
                let mut rec = o;
                rec.error_message = Some(format!("{UNRESOLVED} placement cut short by a restart"));
                self.transition(
                    &mut rec,
                    OrderStatus::Unknown,
                    serde_json::json!({"reason": "pending at restart; outcome unknown"}),
                );
            }
        }
        for p in positions {
            self.positions.insert(p.id, p);
        }
        tracing::info!(
            orders = self.orders.len(),
            positions = self.positions.len(),
            "execution state loaded; reconciling with the exchange"
        );
        self.ready = true;
        self.reconciled = false;
        Loaded::Ready
    }

    /// After the first poll since loading: every open position must be protected.
    pub fn finish_reconcile(&mut self) {
        self.reconciled = true;
        let ids: Vec<Uuid> = self.positions.keys().copied().collect();
        for id in ids {
            self.ensure_protection(id);
        }
        // The risk engine learns equity only from valuations: value the account right away.
        self.effect(Effect::RefreshBalances);
    }

    /// The next status poll, or `None` when there is nothing to ask (reconciliation finishes then).
    /// Acknowledged orders are asked for by exchange id (one batched QueryOrders on Kraken); orders
    /// of unknown outcome are searched by client id, all in one search (one OpenOrders and one
    /// ClosedOrders on Kraken) at most every `search_interval_ms`.
    pub fn poll_plan(&mut self) -> Option<PollPlan> {
        if !self.ready || self.polling {
            return None;
        }
        let now = self.now();
        let mut plan = PollPlan::default();
        for o in self.orders.values().filter(|o| !self.placing.contains(&o.view.id)) {
            match &o.view.exchange_order_id {
                Some(x) if !x.is_empty() => plan.known.push((o.view.id, OrderRef::Exchange(x.clone()))),
                _ => plan
                    .unknown
                    .push((o.view.id, OrderRef::Client(o.view.client_order_id.clone()))),
            }
        }
        let interval = chrono::Duration::milliseconds(i64::try_from(self.cfg.search_interval_ms).unwrap_or(i64::MAX));
        let search_due = self.last_search.is_none_or(|t| now - t >= interval);
        if !search_due {
            plan.unknown.clear();
        }
        if plan.known.is_empty() && plan.unknown.is_empty() {
            if !self.reconciled {
                self.finish_reconcile();
            }
            return None;
        }
        if !plan.unknown.is_empty() {
            self.last_search = Some(now);
        }
        self.polling = true;
        Some(plan)
    }

    /// The answer to one part of a poll (`asked`): applied by client id, then by exchange id.
    pub fn on_polled(&mut self, asked: Vec<Uuid>, res: Result<Vec<ExchangeOrder>, ExchangeError>, what: &str) {
        let found = match res {
            Ok(v) => v,
            Err(e) => {
                // No evidence either way: nothing counts as missing.
                tracing::warn!(error = %e, "{what} failed");
                return;
            }
        };
        let by_exchange_id: HashMap<String, Uuid> = self
            .orders
            .values()
            .filter_map(|o| o.view.exchange_order_id.clone().map(|x| (x, o.view.id)))
            .collect();
        let mut seen = HashSet::new();
        for ex in found {
            let id = ex
                .client_order_id
                .as_ref()
                .and_then(|cid| self.by_client.get(cid).copied())
                .or_else(|| by_exchange_id.get(&ex.exchange_order_id).copied());
            let Some(id) = id else { continue };
            if !seen.insert(id) {
                continue;
            }
            self.missing.remove(&id);
            self.missing_alerted.remove(&id);
            self.apply_update(id, &ex);
        }
        for id in asked {
            if seen.contains(&id) || !self.orders.contains_key(&id) {
                continue;
            }
            self.on_missing(id);
        }
    }

    /// The poll that was under way is done (its answers applied): another may start.
    pub fn poll_done(&mut self) {
        self.polling = false;
        if !self.reconciled {
            self.finish_reconcile();
        }
    }

    /// An order the exchange did not show. An order of unknown outcome is given up (never placed)
    /// only once the visibility window since it was sent has passed and `reconcile_attempts`
    /// searches missed it; until then a protective one is replaced at once (its position must not
    /// wait), and the original is cancelled if it still appears. An acknowledged order is never
    /// given up: it is alerted once after the window and kept asking for.
    pub fn on_missing(&mut self, id: Uuid) {
        let Some(rec) = self.orders.get(&id).cloned() else {
            return;
        };
        let n = {
            let n = self.missing.entry(id).or_insert(0);
            *n += 1;
            *n
        };
        let window = chrono::Duration::seconds(i64::try_from(self.cfg.visibility_window_secs).unwrap_or(i64::MAX));
        let window_over = self.now() - rec.view.created_at >= window;
        if !is_unknown(&rec) {
            if window_over && self.missing_alerted.insert(id) {
                let msg = format!(
                    "order {} ({}, exchange id {}) acknowledged but not shown by the exchange after {} s",
                    rec.view.client_order_id,
                    rec.view.purpose,
                    rec.view.exchange_order_id.as_deref().unwrap_or("-"),
                    self.cfg.visibility_window_secs
                );
                self.alert(AlertType::Reconcile, Severity::High, Some(rec.view.symbol.clone()), msg);
            }
            return;
        }
        if !window_over || n < self.cfg.reconcile_attempts.max(1) {
            if let Some(pid) = rec.view.position_id.filter(|_| is_protective(&rec)) {
                self.ensure_protection(pid);
            }
            return;
        }
        self.missing.remove(&id);
        let msg = format!(
            "order {} ({}) not on the exchange {} s after it was sent ({n} searches): never placed",
            rec.view.client_order_id,
            rec.view.purpose,
            (self.now() - rec.view.created_at).num_seconds()
        );
        let mut rec2 = rec.clone();
        rec2.error_message = Some("not found on the exchange after the visibility window; never placed".into());
        if rec.view.status != OrderStatus::Error {
            self.transition(&mut rec2, OrderStatus::Error, serde_json::json!({"reason": msg}));
        } else {
            rec2.view.updated_at = self.now();
            self.send(Op::Order(Box::new(rec2.clone())));
        }
        self.forget(id);
        self.alert(
            AlertType::Reconcile,
            Severity::Medium,
            Some(rec.view.symbol.clone()),
            msg,
        );
        if let Some(pid) = rec.view.position_id {
            self.ensure_protection(pid);
        }
    }

    /// Applies the exchange's view of one order. Idempotent: only what changed since the last view counts.
    pub fn apply_update(&mut self, id: Uuid, ex: &ExchangeOrder) {
        let Some(mut rec) = self.orders.get(&id).cloned() else {
            return;
        };
        let old_filled = rec.view.filled_volume;
        let new_filled = ex.filled_volume.max(old_filled);
        let delta = new_filled - old_filled;
        let fill_price = if delta > Decimal::ZERO {
            match (ex.avg_fill_price, rec.view.avg_fill_price) {
                (Some(new_avg), old_avg) => {
                    let p = (new_avg * new_filled - old_avg.unwrap_or(Decimal::ZERO) * old_filled) / delta;
                    if p > Decimal::ZERO {
                        p
                    } else {
                        new_avg
                    }
                }
                (None, _) => ex.price.or(rec.view.price).unwrap_or(Decimal::ZERO),
            }
        } else {
            Decimal::ZERO
        };
        let fee_delta = (ex.fee - rec.view.fee).max(Decimal::ZERO);
        if delta > Decimal::ZERO {
            // The order's new state, its trade and its position are written as one transaction.
            self.batch = Some(FillWrite::default());
        }
        if rec.view.exchange_order_id.is_none() {
            rec.view.exchange_order_id = Some(ex.exchange_order_id.clone());
        }
        rec.view.filled_volume = new_filled;
        if ex.avg_fill_price.is_some() {
            rec.view.avg_fill_price = ex.avg_fill_price;
        }
        rec.view.fee = rec.view.fee.max(ex.fee);
        let was_unknown = is_unknown(&rec);
        if was_unknown {
            rec.error_message = None;
        }
        let status_changed = ex.status != rec.view.status || delta > Decimal::ZERO;
        if status_changed {
            let detail = serde_json::json!({
                "exchange_order_id": ex.exchange_order_id,
                "filled_volume": new_filled,
                "reason": ex.reason,
            });
            if !self.transition(&mut rec, ex.status, detail) {
                rec.view.updated_at = self.now();
                self.write(Op::Order(Box::new(rec.clone())));
                if let Some(r) = self.orders.get_mut(&id) {
                    *r = rec.clone();
                }
            }
        } else if was_unknown {
            // Found as it was sent (e.g. `pending` on the book): no longer unknown.
            rec.view.updated_at = self.now();
            self.write(Op::Order(Box::new(rec.clone())));
            if let Some(r) = self.orders.get_mut(&id) {
                *r = rec.clone();
            }
        }
        if delta > Decimal::ZERO {
            let ty = if rec.view.status == OrderStatus::Filled {
                ExecutionEventType::OrderFilled
            } else {
                ExecutionEventType::OrderPartiallyFilled
            };
            self.publish(ty, &rec, delta, Some(fill_price), fee_delta, None);
            self.decision(
                rec.view.correlation_id,
                "order_filled",
                &rec.view.symbol,
                serde_json::json!({
                    "order_id": rec.view.id, "client_order_id": rec.view.client_order_id, "purpose": rec.view.purpose,
                    "filled": delta, "price": fill_price, "fee": fee_delta, "status": rec.view.status,
                }),
            );
            self.on_fill(&rec, delta, fill_price, fee_delta);
        }
        self.commit_fill();
        if self.superseded.contains(&id) && !rec.view.status.is_terminal() {
            // A protective order given up for a replacement appeared after all: one is enough.
            self.superseded.remove(&id);
            let msg = format!(
                "{} {} appeared late on the exchange after its replacement was placed; cancelling it",
                rec.view.purpose.as_str().replace('_', " "),
                rec.view.client_order_id
            );
            self.alert(
                AlertType::Reconcile,
                Severity::Medium,
                Some(rec.view.symbol.clone()),
                msg,
            );
            self.request_cancel(id);
        }
        match ex.status {
            OrderStatus::Cancelled | OrderStatus::Expired if status_changed => {
                self.publish(
                    ExecutionEventType::OrderCancelled,
                    &rec,
                    Decimal::ZERO,
                    None,
                    Decimal::ZERO,
                    None,
                );
            }
            OrderStatus::Rejected if status_changed => {
                self.publish(
                    ExecutionEventType::OrderRejected,
                    &rec,
                    Decimal::ZERO,
                    None,
                    Decimal::ZERO,
                    None,
                );
                let msg = format!(
                    "{} order {} rejected by the exchange: {}",
                    rec.view.purpose,
                    rec.view.client_order_id,
                    ex.reason.as_deref().unwrap_or("no reason given")
                );
                self.alert(
                    AlertType::ExecutionError,
                    Severity::High,
                    Some(rec.view.symbol.clone()),
                    msg,
                );
            }
            _ => {}
        }
        if rec.view.status.is_terminal() {
            self.on_terminal(&rec, ex, status_changed);
        }
        self.commit_fill();
        self.send(Op::SavePaper);
        if delta > Decimal::ZERO {
            self.effect(Effect::RefreshBalances);
        }
    }

    /// An order reached a final state on the exchange: forgotten, and its position re-checked.
    fn on_terminal(&mut self, rec: &OrderRecord, ex: &ExchangeOrder, status_changed: bool) {
        let id = rec.view.id;
        let ours = self.cancel_requested.contains(&id);
        let position_open = rec
            .view
            .position_id
            .is_some_and(|pid| self.positions.contains_key(&pid));
        if is_protective(rec)
            && !ours
            && position_open
            && matches!(rec.view.status, OrderStatus::Cancelled | OrderStatus::Expired)
            && status_changed
        {
            let msg = format!(
                "{} {} of position {} was {} on the exchange without our request ({}); replacing it",
                rec.view.purpose.as_str().replace('_', " "),
                rec.view.client_order_id,
                rec.view.position_id.map(|p| p.to_string()).unwrap_or_default(),
                rec.view.status,
                ex.reason.as_deref().unwrap_or("no reason given")
            );
            self.alert(
                AlertType::Reconcile,
                Severity::Medium,
                Some(rec.view.symbol.clone()),
                msg,
            );
        }
        self.forget(id);
        if let Some(pid) = rec.view.position_id {
            if is_protective(rec) && !ours {
                // A protective order ended without our asking (filled, or cancelled by the exchange):
                // the position is re-checked and re-protected if still open.
                self.ensure_protection(pid);
            }
            if rec.view.purpose == OrderPurpose::Close {
                // A close that ended with the position still there (never or partly filled): the position
                // is open again and needs its protection for what is left.
                self.reopen(pid);
            }
        }
    }

    /// A close that did not close: the position is open again and protected for what is left.
    fn reopen(&mut self, pid: Uuid) {
        if let Some(p) = self.positions.get_mut(&pid) {
            p.status = PositionStatus::Open;
            let snapshot = p.clone();
            self.send(Op::Position(Box::new(snapshot)));
        }
        self.ensure_protection(pid);
    }

    /// The pending record of a new order is about to be written and the order sent: the writes
    /// that go with it (the status log's first line).
    pub fn placement_status(&self, rec: &OrderRecord) -> StatusTransition {
        StatusTransition {
            order_id: rec.view.id,
            from: None,
            to: OrderStatus::Pending,
            filled_volume: Decimal::ZERO,
            detail: serde_json::json!({"purpose": rec.view.purpose}),
            at: rec.view.created_at,
        }
    }

    /// The answer to a placement: the order is working, refused, or of unknown outcome.
    pub fn on_placed(&mut self, id: Uuid, res: PlaceOutcome) -> Result<OrderView, ExecutionError> {
        self.placing.remove(&id);
        let Some(mut rec) = self.orders.get(&id).cloned() else {
            return Err(ExecutionError::Unavailable("order no longer tracked".into()));
        };
        let symbol = rec.view.symbol.clone();
        match res {
            Err(store) => {
                let why = format!("not sent: {store}");
                rec.error_message = Some(why.clone());
                self.transition(&mut rec, OrderStatus::Rejected, serde_json::json!({ "reason": why }));
                self.forget(id);
                Err(ExecutionError::Unavailable(format!(
                    "order not recorded, so not sent: {store}"
                )))
            }
            Ok(Ok(ack)) => {
                rec.view.exchange_order_id = Some(ack.exchange_order_id.clone());
                self.transition(
                    &mut rec,
                    OrderStatus::Open,
                    serde_json::json!({"exchange_order_id": ack.exchange_order_id, "description": ack.description}),
                );
                self.publish(
                    ExecutionEventType::OrderPlaced,
                    &rec,
                    Decimal::ZERO,
                    rec.view.price,
                    Decimal::ZERO,
                    None,
                );
                self.decision(
                    rec.view.correlation_id,
                    "order_placed",
                    &symbol,
                    serde_json::json!({
                        "order_id": id, "client_order_id": rec.view.client_order_id,
                        "exchange_order_id": ack.exchange_order_id, "purpose": rec.view.purpose,
                        "side": rec.view.side, "type": rec.view.order_type, "volume": rec.view.volume,
                        "price": rec.view.price,
                    }),
                );
                self.send(Op::SavePaper);
                if self.cancel_requested.contains(&id) {
                    // Cancelled while its placement was on the way.
                    self.request_cancel(id);
                }
                if self.instant_venue {
                    self.effect(Effect::Poll);
                }
                Ok(rec.view)
            }
            Ok(Err(ExchangeError::Unknown(msg))) => {
                rec.error_message = Some(format!("{UNRESOLVED} {msg}"));
                self.transition(&mut rec, OrderStatus::Unknown, serde_json::json!({"reason": msg}));
                self.publish(
                    ExecutionEventType::OrderError,
                    &rec,
                    Decimal::ZERO,
                    None,
                    Decimal::ZERO,
                    None,
                );
                self.decision(
                    rec.view.correlation_id,
                    "order_error",
                    &symbol,
                    serde_json::json!({"order_id": id, "client_order_id": rec.view.client_order_id, "error": msg}),
                );
                let text = format!(
                    "order {} outcome unknown ({msg}); reconciling by client id",
                    rec.view.client_order_id
                );
                self.alert(AlertType::ExecutionError, Severity::High, Some(symbol), text);
                Err(ExecutionError::Unknown(msg))
            }
            Ok(Err(e)) => {
                rec.error_message = Some(e.to_string());
                self.transition(
                    &mut rec,
                    OrderStatus::Rejected,
                    serde_json::json!({"reason": e.to_string()}),
                );
                self.publish(
                    ExecutionEventType::OrderRejected,
                    &rec,
                    Decimal::ZERO,
                    None,
                    Decimal::ZERO,
                    None,
                );
                self.decision(
                    rec.view.correlation_id,
                    "order_rejected",
                    &symbol,
                    serde_json::json!({"order_id": id, "client_order_id": rec.view.client_order_id, "error": e.to_string()}),
                );
                if !is_protective(&rec) {
                    // A refused protective order alerts in `protection_placed` (urgent for a stop).
                    let severity = if matches!(e, ExchangeError::Invalid(_)) {
                        Severity::Medium
                    } else {
                        Severity::High
                    };
                    let text = format!(
                        "{} {} {} {} refused: {e}",
                        rec.view.purpose, rec.view.side, rec.view.volume, rec.view.symbol
                    );
                    self.alert(AlertType::ExecutionError, severity, Some(symbol.clone()), text);
                }
                self.forget(id);
                if rec.view.purpose == OrderPurpose::Close {
                    if let Some(pid) = rec.view.position_id {
                        self.reopen(pid);
                    }
                }
                Err(match e {
                    ExchangeError::Invalid(m) => ExecutionError::Invalid(m),
                    other => ExecutionError::Rejected(other.to_string()),
                })
            }
        }
    }

    /// Cancels every working order of a position (one-cancels-other, orphan cleanup).
    pub(crate) fn cancel_position_orders(&mut self, pid: Uuid) {
        let ids: Vec<Uuid> = self
            .orders
            .values()
            .filter(|o| {
                o.view.position_id == Some(pid) && !o.view.status.is_terminal() && o.view.purpose != OrderPurpose::Entry
            })
            .map(|o| o.view.id)
            .collect();
        for id in ids {
            self.request_cancel(id);
        }
    }

    /// Cancels an order and keeps at it until the exchange shows it closed: each attempt is followed
    /// by a query of the order, and an attempt that failed or left the order open (an ambiguous
    /// reply, a late-visible order) is retried with back-off. One attempt runs at a time per order;
    /// asking again while one runs changes nothing.
    pub fn request_cancel(&mut self, id: Uuid) {
        if self.drained {
            return;
        }
        let Some(rec) = self.orders.get(&id) else { return };
        let target = match &rec.view.exchange_order_id {
            Some(x) if !x.is_empty() => OrderRef::Exchange(x.clone()),
            _ => OrderRef::Client(rec.view.client_order_id.clone()),
        };
        self.cancel_requested.insert(id);
        if self.placing.contains(&id) || !self.cancel_inflight.insert(id) {
            // Sent first (the placement's answer re-checks), or an attempt is on its way.
            return;
        }
        self.effect(Effect::Cancel { id, target });
    }

    /// The answers to one cancel attempt (the cancel, then the query of the order).
    pub fn on_cancel_result(
        &mut self,
        id: Uuid,
        cancelled: Result<(), ExchangeError>,
        seen: Result<Vec<ExchangeOrder>, ExchangeError>,
    ) {
        self.cancel_inflight.remove(&id);
        if let Ok(found) = &seen {
            let cid = self.orders.get(&id).map(|o| o.view.client_order_id.clone());
            let xid = self.orders.get(&id).and_then(|o| o.view.exchange_order_id.clone());
            if let Some(ex) = found.iter().find(|ex| {
                (ex.client_order_id.is_some() && ex.client_order_id == cid)
                    || Some(&ex.exchange_order_id) == xid.as_ref()
            }) {
                self.missing.remove(&id);
                self.apply_update(id, ex);
            }
        }
        let Some(rec) = self.orders.get(&id).cloned() else {
            // Closed on the exchange (cancelled, or filled first): done.
            return;
        };
        if self.drained || !self.cancel_requested.contains(&id) {
            return;
        }
        let n = {
            let n = self.cancel_attempts.entry(id).or_insert(0);
            *n += 1;
            *n
        };
        let why = match (&cancelled, &seen) {
            (Err(e), _) => format!("cancel failed: {e}"),
            (Ok(()), Err(e)) => format!("cancel sent, order state unavailable: {e}"),
            (Ok(()), Ok(_)) => "cancel sent, order not shown closed yet".to_owned(),
        };
        tracing::warn!(order = %rec.view.client_order_id, attempt = n, reason = %why, "cancel not confirmed; retrying");
        if n == 3 {
            let msg = format!(
                "cancel of {} {} not confirmed after {n} attempts ({why}); still retrying",
                rec.view.purpose, rec.view.client_order_id
            );
            self.alert(
                AlertType::ExecutionError,
                Severity::High,
                Some(rec.view.symbol.clone()),
                msg,
            );
        }
        let delay = self.backoff(n);
        self.effect(Effect::RetryCancel { id, delay });
    }

    /// An operator's cancel of one order: checked and recorded; the shell sends it.
    pub fn begin_cancel(&mut self, order_id: Uuid, reason: &str) -> Result<OrderRecord, ExecutionError> {
        let Some(rec) = self.orders.get(&order_id).cloned() else {
            return Err(ExecutionError::Invalid(format!("order {order_id} is not open")));
        };
        if self.placing.contains(&order_id) {
            return Err(ExecutionError::NotAllowed("order is still being placed".into()));
        }
        self.cancel_requested.insert(order_id);
        self.decision(
            rec.view.correlation_id,
            "order_cancel_requested",
            &rec.view.symbol,
            serde_json::json!({"order_id": order_id, "reason": reason}),
        );
        Ok(rec)
    }

    /// Whether an exchange order found by the sync needs a look in the store: it carries one of our
    /// client ids and is not tracked.
    pub fn untracked(&self, ex: &ExchangeOrder) -> bool {
        ex.client_order_id
            .as_ref()
            .is_some_and(|cid| cid.as_str().starts_with("tg-") && !self.by_client.contains_key(cid))
    }

    /// Every 30 s sync asks for recently closed orders too on its first run, every 10th, and while
    /// an order's outcome is unknown.
    pub fn sync_plan(&mut self) -> Option<bool> {
        if !self.ready || self.drained {
            return None;
        }
        self.syncs += 1;
        Some(self.syncs % 10 == 1 || self.orders.values().any(is_unknown))
    }

    /// An exchange order with our client id that is not tracked, with what the store holds for it.
    /// One the store knows but gave up (or that filled while invisible) is tracked again and
    /// applied: its fill opens the position and the position is protected. Others are alerted.
    pub fn on_untracked(&mut self, ex: ExchangeOrder, open: bool, stored: Result<Option<OrderRecord>, StoreError>) {
        let Some(cid) = ex.client_order_id.clone() else { return };
        if self.by_client.contains_key(&cid) || self.drained {
            return;
        }
        let stored = match stored {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, order = %cid, "store lookup failed; the next sync retries");
                return;
            }
        };
        let Some(mut rec) = stored else {
            self.synced_closed.insert(ex.exchange_order_id.clone());
            if open {
                let msg = format!(
                    "exchange order {} ({cid}, {} {} {}) is not tracked locally",
                    ex.exchange_order_id, ex.side, ex.volume, ex.symbol
                );
                self.alert(AlertType::Reconcile, Severity::High, Some(ex.symbol.clone()), msg);
            }
            return;
        };
        let given_up = rec.view.status == OrderStatus::Error;
        let behind = ex.filled_volume > rec.view.filled_volume
            || (!rec.view.status.is_terminal() && ex.status != rec.view.status);
        if !given_up && !behind {
            self.synced_closed.insert(ex.exchange_order_id.clone());
            return;
        }
        if ex.filled_volume > Decimal::ZERO || !ex.status.is_terminal() {
            // Money moved, or the order still works: an operator should know.
            let msg = format!(
                "order {cid} ({}), recorded as {}, is {} on the exchange (filled {}); tracking it again",
                rec.view.purpose, rec.view.status, ex.status, ex.filled_volume
            );
            self.alert(AlertType::Reconcile, Severity::High, Some(ex.symbol.clone()), msg);
        }
        if given_up {
            // Back to "outcome unknown", from where the exchange's view applies.
            rec.view.status = OrderStatus::Unknown;
        }
        let id = rec.view.id;
        self.by_client.insert(cid, id);
        self.orders.insert(id, rec);
        self.apply_update(id, &ex);
        if let Some(pid) = self.orders.get(&id).and_then(|o| o.view.position_id) {
            self.ensure_protection(pid);
        }
    }
}
