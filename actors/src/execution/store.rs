//! The in-memory [`OrderStore`] (paper runs without a database, tests).

use super::api::PositionView;
use crate::domain::{OrderStatus, PositionStatus, Symbol};
use crate::ports::{OrderRecord, OrderStore, PositionSnapshotRecord, StatusTransition, StoreFuture, TradeRecord};
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

impl OrderStore for MemoryOrderStore {
    fn upsert_order(&self, rec: OrderRecord) -> StoreFuture<()> {
        let mut g = self.inner.lock();
        if let Some(&i) = g.index.get(&rec.view.id) {
            if let Some(slot) = g.orders.get_mut(i) {
                *slot = rec;
            }
        } else {
            let i = g.orders.len();
            g.index.insert(rec.view.id, i);
            g.orders.push(rec);
        }
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
        let mut g = self.inner.lock();
        if let Some(&i) = g.pos_index.get(&pos.id) {
            if let Some(slot) = g.positions.get_mut(i) {
                *slot = pos;
            }
        } else {
            let i = g.positions.len();
            g.pos_index.insert(pos.id, i);
            g.positions.push(pos);
        }
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
        self.inner.lock().trades.push(t);
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
