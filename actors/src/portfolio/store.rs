//! The persistence port of the rebalancer and the hodl bags, and an in-memory implementation.

use crate::ports::StoreFuture;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use parking_lot::Mutex;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

/// One hodl bag (`hodl_bags`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HodlBag {
    pub asset: String,
    pub balance: Decimal,
    pub cost_basis_usd: Decimal,
    pub pending_usd: Decimal,
    pub accumulation_count: u32,
    pub first_accumulation: Option<DateTime<Utc>>,
    pub last_accumulation: Option<DateTime<Utc>>,
}

impl HodlBag {
    pub fn empty(asset: &str) -> Self {
        Self {
            asset: asset.to_owned(),
            balance: Decimal::ZERO,
            cost_basis_usd: Decimal::ZERO,
            pending_usd: Decimal::ZERO,
            accumulation_count: 0,
            first_accumulation: None,
            last_accumulation: None,
        }
    }
}

/// `allocation` (a profit share) or `purchase` (pending money turned into the asset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HodlTxKind {
    Allocation,
    Purchase,
}

impl HodlTxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allocation => "allocation",
            Self::Purchase => "purchase",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "allocation" => Some(Self::Allocation),
            "purchase" => Some(Self::Purchase),
            _ => None,
        }
    }
}

/// One row of `hodl_transactions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HodlTransaction {
    pub id: Uuid,
    pub asset: String,
    pub kind: HodlTxKind,
    pub amount_usd: Decimal,
    pub amount_asset: Option<Decimal>,
    pub price: Option<Decimal>,
    pub source_trade_id: Option<Uuid>,
    pub at: DateTime<Utc>,
}

/// One row of `rebalance_history`: a plan (batch 0, or a no-action check) or one later batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RebalanceRecord {
    pub id: Uuid,
    /// `no_action`, `pending`, `executing`, `executed`, `partial`, `failed`.
    pub status: String,
    pub execution_strategy: String,
    /// The whole plan on batch 0; `{plan_id, batch}` on later batches; outcomes under `results`.
    pub plan: serde_json::Value,
    pub batch_index: u32,
    pub batch_count: u32,
    pub due_at: Option<DateTime<Utc>>,
    pub executed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Persistence of rebalance plans and hodl bags.
pub trait PortfolioStore: Send + Sync + 'static {
    fn insert_rebalance(&self, rec: RebalanceRecord) -> StoreFuture<()>;
    /// Sets status, execution time and the outcome (`plan.results`).
    fn finish_rebalance(
        &self,
        id: Uuid,
        status: String,
        executed_at: DateTime<Utc>,
        results: serde_json::Value,
    ) -> StoreFuture<()>;
    /// Later batches not executed yet (status `pending`), by due time.
    fn pending_rebalances(&self) -> StoreFuture<Vec<RebalanceRecord>>;
    fn recent_rebalances(&self, limit: u32) -> StoreFuture<Vec<RebalanceRecord>>;
    fn load_hodl_bags(&self) -> StoreFuture<Vec<HodlBag>>;
    /// Writes the bags and the transactions together (one database transaction).
    fn record_hodl(&self, bags: Vec<HodlBag>, txs: Vec<HodlTransaction>) -> StoreFuture<()>;
    /// Newest first; `asset` filters.
    fn hodl_transactions(&self, asset: Option<String>, limit: u32) -> StoreFuture<Vec<HodlTransaction>>;
    /// Sum of allocations at or after `since` (the daily limit survives restarts).
    fn hodl_allocated_since(&self, since: DateTime<Utc>) -> StoreFuture<Decimal>;
}

#[derive(Default)]
struct Inner {
    rebalances: Vec<RebalanceRecord>,
    bags: BTreeMap<String, HodlBag>,
    txs: Vec<HodlTransaction>,
}

/// In-memory [`PortfolioStore`]; nothing survives the process.
#[derive(Clone, Default)]
pub struct MemoryPortfolioStore {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryPortfolioStore {
    /// Every stored rebalance row, in insertion order.
    pub fn rebalances(&self) -> Vec<RebalanceRecord> {
        self.inner.lock().rebalances.clone()
    }

    pub fn transactions(&self) -> Vec<HodlTransaction> {
        self.inner.lock().txs.clone()
    }
}

/// Keeps the in-memory history bounded.
const MAX_ROWS: usize = 10_000;

impl PortfolioStore for MemoryPortfolioStore {
    fn insert_rebalance(&self, rec: RebalanceRecord) -> StoreFuture<()> {
        let mut inner = self.inner.lock();
        if inner.rebalances.len() >= MAX_ROWS {
            inner.rebalances.remove(0);
        }
        inner.rebalances.push(rec);
        async { Ok(()) }.boxed()
    }

    fn finish_rebalance(
        &self,
        id: Uuid,
        status: String,
        executed_at: DateTime<Utc>,
        results: serde_json::Value,
    ) -> StoreFuture<()> {
        if let Some(r) = self.inner.lock().rebalances.iter_mut().find(|r| r.id == id) {
            r.status = status;
            r.executed_at = Some(executed_at);
            if let Some(obj) = r.plan.as_object_mut() {
                obj.insert("results".into(), results);
            }
        }
        async { Ok(()) }.boxed()
    }

    fn pending_rebalances(&self) -> StoreFuture<Vec<RebalanceRecord>> {
        let mut v: Vec<RebalanceRecord> = self
            .inner
            .lock()
            .rebalances
            .iter()
            .filter(|r| r.status == "pending")
            .cloned()
            .collect();
        v.sort_by_key(|r| r.due_at);
        async move { Ok(v) }.boxed()
    }

    fn recent_rebalances(&self, limit: u32) -> StoreFuture<Vec<RebalanceRecord>> {
        let v: Vec<RebalanceRecord> = self
            .inner
            .lock()
            .rebalances
            .iter()
            .rev()
            .take(limit as usize)
            .cloned()
            .collect();
        async move { Ok(v) }.boxed()
    }

    fn load_hodl_bags(&self) -> StoreFuture<Vec<HodlBag>> {
        let v: Vec<HodlBag> = self.inner.lock().bags.values().cloned().collect();
        async move { Ok(v) }.boxed()
    }

    fn record_hodl(&self, bags: Vec<HodlBag>, txs: Vec<HodlTransaction>) -> StoreFuture<()> {
        let mut inner = self.inner.lock();
        for b in bags {
            inner.bags.insert(b.asset.clone(), b);
        }
        inner.txs.extend(txs);
        if inner.txs.len() > MAX_ROWS {
            let excess = inner.txs.len() - MAX_ROWS;
            inner.txs.drain(..excess);
        }
        async { Ok(()) }.boxed()
    }

    fn hodl_transactions(&self, asset: Option<String>, limit: u32) -> StoreFuture<Vec<HodlTransaction>> {
        let v: Vec<HodlTransaction> = self
            .inner
            .lock()
            .txs
            .iter()
            .rev()
            .filter(|t| asset.as_ref().is_none_or(|a| &t.asset == a))
            .take(limit as usize)
            .cloned()
            .collect();
        async move { Ok(v) }.boxed()
    }

    fn hodl_allocated_since(&self, since: DateTime<Utc>) -> StoreFuture<Decimal> {
        let v = self
            .inner
            .lock()
            .txs
            .iter()
            .filter(|t| t.kind == HodlTxKind::Allocation && t.at >= since)
            .map(|t| t.amount_usd)
            .sum();
        async move { Ok(v) }.boxed()
    }
}
