//! The in-memory [`OrderStore`] (paper runs without a database, tests).

use super::api::PositionView;
use crate::domain::ClientOrderId;
use crate::domain::{OrderStatus, PositionStatus, Symbol};
use crate::ports::{
    FillWrite, OrderRecord, OrderStore, PositionSnapshotRecord, StatusTransition, StoreFuture, TradeRecord,
};
use futures::FutureExt;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// Prefix of `error_message` on an `error` order whose outcome is still being reconciled.
pub const UNRESOLVED: &str = "unresolved:";

/// Whether a stored order still needs tracking.
pub fn is_active(rec: &OrderRecord) -> bool {
    !rec.view.status.is_terminal()
        || (rec.view.status == OrderStatus::Error
            && rec.error_message.as_deref().is_some_and(|m| m.starts_with(UNRESOLVED)))
}

#[derive(Default)]
struct Inner {
    orders: Vec<OrderRecord>,
    log: Vec<StatusTransition>,
    positions: Vec<PositionView>,
    trades: Vec<TradeRecord>,
    snapshots: Vec<PositionSnapshotRecord>,
    index: HashMap<Uuid, usize>,
    pos_index: HashMap<Uuid, usize>,
}

/// Orders, positions and trades kept in memory; nothing survives a restart of the process.
#[derive(Clone, Default)]
pub struct MemoryOrderStore {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryOrderStore {
    /// Snapshots written so far (tests, diagnostics).
    pub fn snapshots(&self) -> Vec<PositionSnapshotRecord> {
        self.inner.lock().snapshots.clone()
    }
}

fn ready<T: Send + 'static>(v: T) -> StoreFuture<T> {
    async move { Ok(v) }.boxed()
}

impl Inner {
    fn put_order(&mut self, rec: OrderRecord) {
        if let Some(&i) = self.index.get(&rec.view.id) {
            if let Some(slot) = self.orders.get_mut(i) {
                *slot = rec;
            }
        } else {
            let i = self.orders.len();
            self.index.insert(rec.view.id, i);
            self.orders.push(rec);
        }
    }

    fn put_position(&mut self, pos: PositionView) {
        if let Some(&i) = self.pos_index.get(&pos.id) {
            if let Some(slot) = self.positions.get_mut(i) {
                *slot = pos;
            }
        } else {
            let i = self.positions.len();
            self.pos_index.insert(pos.id, i);
            self.positions.push(pos);
        }
    }

    fn put_trade(&mut self, t: TradeRecord) {
        self.trades.push(t);
    }
}

impl OrderStore for MemoryOrderStore {
    fn record_fill(&self, fill: FillWrite) -> StoreFuture<()> {
        // One lock for the whole fill: a reader sees all of it or none of it.
        let mut g = self.inner.lock();
        for o in fill.orders {
            g.put_order(o);
        }
        g.log.extend(fill.statuses);
        for t in fill.trades {
            g.put_trade(t);
        }
        for p in fill.positions {
            g.put_position(p);
        }
        ready(())
    }

    fn find_order_by_client_id(&self, client_order_id: ClientOrderId) -> StoreFuture<Option<OrderRecord>> {
        let v = self
            .inner
            .lock()
            .orders
            .iter()
            .find(|o| o.view.client_order_id == client_order_id)
            .cloned();
        ready(v)
    }

    fn upsert_order(&self, rec: OrderRecord) -> StoreFuture<()> {
        self.inner.lock().put_order(rec);
        ready(())
    }

    fn append_status(&self, t: StatusTransition) -> StoreFuture<()> {
        self.inner.lock().log.push(t);
        ready(())
    }

    fn load_active_orders(&self) -> StoreFuture<Vec<OrderRecord>> {
        let v = self
            .inner
            .lock()
            .orders
            .iter()
            .filter(|o| is_active(o))
            .cloned()
            .collect();
        ready(v)
    }

    fn get_order(&self, id: Uuid) -> StoreFuture<Option<OrderRecord>> {
        let g = self.inner.lock();
        let v = g.index.get(&id).and_then(|&i| g.orders.get(i)).cloned();
        ready(v)
    }

    fn list_orders(&self, symbol: Option<Symbol>, open_only: bool, limit: usize) -> StoreFuture<Vec<OrderRecord>> {
        let v = self
            .inner
            .lock()
            .orders
            .iter()
            .rev()
            .filter(|o| symbol.as_ref().is_none_or(|s| &o.view.symbol == s))
            .filter(|o| !open_only || !o.view.status.is_terminal())
            .take(limit)
            .cloned()
            .collect();
        ready(v)
    }

    fn status_log(&self, order_id: Uuid) -> StoreFuture<Vec<StatusTransition>> {
        let v = self
            .inner
            .lock()
            .log
            .iter()
            .filter(|t| t.order_id == order_id)
            .cloned()
            .collect();
        ready(v)
    }

    fn upsert_position(&self, pos: PositionView) -> StoreFuture<()> {
        self.inner.lock().put_position(pos);
        ready(())
    }

    fn load_open_positions(&self) -> StoreFuture<Vec<PositionView>> {
        let v = self
            .inner
            .lock()
            .positions
            .iter()
            .filter(|p| matches!(p.status, PositionStatus::Open | PositionStatus::Closing))
            .cloned()
            .collect();
        ready(v)
    }

    fn get_position(&self, id: Uuid) -> StoreFuture<Option<PositionView>> {
        let g = self.inner.lock();
        let v = g.pos_index.get(&id).and_then(|&i| g.positions.get(i)).cloned();
        ready(v)
    }

    fn list_positions(
        &self,
        symbol: Option<Symbol>,
        status: Option<PositionStatus>,
        limit: usize,
    ) -> StoreFuture<Vec<PositionView>> {
        let v = self
            .inner
            .lock()
            .positions
            .iter()
            .rev()
            .filter(|p| symbol.as_ref().is_none_or(|s| &p.symbol == s))
            .filter(|p| status.is_none_or(|s| p.status == s))
            .take(limit)
            .cloned()
            .collect();
        ready(v)
    }

    fn insert_trade(&self, t: TradeRecord) -> StoreFuture<()> {
        self.inner.lock().put_trade(t);
        ready(())
    }

    fn list_trades(&self, symbol: Option<Symbol>, limit: usize) -> StoreFuture<Vec<TradeRecord>> {
        let v = self
            .inner
            .lock()
            .trades
            .iter()
            .rev()
            .filter(|t| symbol.as_ref().is_none_or(|s| &t.symbol == s))
            .take(limit)
            .cloned()
            .collect();
        ready(v)
    }

    fn insert_snapshot(&self, s: PositionSnapshotRecord) -> StoreFuture<()> {
        self.inner.lock().snapshots.push(s);
        ready(())
    }
}
