//! PostgreSQL implementation of the portfolio port: `rebalance_history`, `hodl_bags`,
//! `hodl_transactions`.

use super::PgStore;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use rust_decimal::Decimal;
use triplegain_actors::portfolio::store::HodlTxKind;
use triplegain_actors::portfolio::{HodlBag, HodlTransaction, PortfolioStore, RebalanceRecord};
use triplegain_actors::ports::{StoreError, StoreFuture};
use uuid::Uuid;

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn query(e: impl std::fmt::Display) -> StoreError {
    StoreError::Query(e.to_string())
}

fn to_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn dec(r: &tokio_postgres::Row, i: usize) -> Result<Decimal, StoreError> {
    r.try_get::<_, Decimal>(i).map(|d| d.normalize()).map_err(query)
}

fn opt_dec(r: &tokio_postgres::Row, i: usize) -> Result<Option<Decimal>, StoreError> {
    r.try_get::<_, Option<Decimal>>(i)
        .map(|d| d.map(|d| d.normalize()))
        .map_err(query)
}

fn to_u32(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

const REBALANCE_COLS: &str =
    "id, status, execution_strategy, plan, batch_index, batch_count, due_at, executed_at, created_at";

fn rebalance_row(r: &tokio_postgres::Row) -> Result<RebalanceRecord, StoreError> {
    Ok(RebalanceRecord {
        id: r.try_get(0).map_err(query)?,
        status: r.try_get(1).map_err(query)?,
        execution_strategy: r.try_get(2).map_err(query)?,
        plan: r.try_get(3).map_err(query)?,
        batch_index: to_u32(r.try_get(4).map_err(query)?),
        batch_count: to_u32(r.try_get(5).map_err(query)?),
        due_at: r.try_get(6).map_err(query)?,
        executed_at: r.try_get(7).map_err(query)?,
        created_at: r.try_get(8).map_err(query)?,
    })
}

impl PortfolioStore for PgStore {
    fn insert_rebalance(&self, rec: RebalanceRecord) -> StoreFuture<()> {
        let pool = self.pool().clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            client
                .execute(
                    &format!(
                        "INSERT INTO rebalance_history ({REBALANCE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                    ),
                    &[
                        &rec.id,
                        &rec.status,
                        &rec.execution_strategy,
                        &rec.plan,
                        &to_i32(rec.batch_index),
                        &to_i32(rec.batch_count),
                        &rec.due_at,
                        &rec.executed_at,
                        &rec.created_at,
                    ],
                )
                .await
                .map_err(query)?;
            Ok(())
        }
        .boxed()
    }

    fn finish_rebalance(
        &self,
        id: Uuid,
        status: String,
        executed_at: DateTime<Utc>,
        results: serde_json::Value,
    ) -> StoreFuture<()> {
        let pool = self.pool().clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            client
                .execute(
                    "UPDATE rebalance_history SET status = $2, executed_at = $3, \
                     plan = jsonb_set(plan, '{results}', $4::jsonb, true) WHERE id = $1",
                    &[&id, &status, &executed_at, &results],
                )
                .await
                .map_err(query)?;
            Ok(())
        }
        .boxed()
    }

    fn pending_rebalances(&self) -> StoreFuture<Vec<RebalanceRecord>> {
        let pool = self.pool().clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            let rows = client
                .query(
                    &format!(
                        "SELECT {REBALANCE_COLS} FROM rebalance_history WHERE status = 'pending' AND batch_index > 0 \
                         ORDER BY due_at"
                    ),
                    &[],
                )
                .await
                .map_err(query)?;
            rows.iter().map(rebalance_row).collect()
        }
        .boxed()
    }

    fn recent_rebalances(&self, limit: u32) -> StoreFuture<Vec<RebalanceRecord>> {
        let pool = self.pool().clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            let rows = client
                .query(
                    &format!(
                        "SELECT {REBALANCE_COLS} FROM rebalance_history ORDER BY created_at DESC, batch_index LIMIT $1"
                    ),
                    &[&i64::from(limit)],
                )
                .await
                .map_err(query)?;
            rows.iter().map(rebalance_row).collect()
        }
        .boxed()
    }

    fn load_hodl_bags(&self) -> StoreFuture<Vec<HodlBag>> {
        let pool = self.pool().clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            let rows = client
                .query(
                    "SELECT asset, balance, cost_basis_usd, pending_usd, accumulation_count, first_accumulation, \
                     last_accumulation FROM hodl_bags ORDER BY asset",
                    &[],
                )
                .await
                .map_err(query)?;
            rows.iter()
                .map(|r| {
                    Ok(HodlBag {
                        asset: r.try_get(0).map_err(query)?,
                        balance: dec(r, 1)?,
                        cost_basis_usd: dec(r, 2)?,
                        pending_usd: dec(r, 3)?,
                        accumulation_count: to_u32(r.try_get(4).map_err(query)?),
                        first_accumulation: r.try_get(5).map_err(query)?,
                        last_accumulation: r.try_get(6).map_err(query)?,
                    })
                })
                .collect()
        }
        .boxed()
    }

    fn record_hodl(&self, bags: Vec<HodlBag>, txs: Vec<HodlTransaction>) -> StoreFuture<()> {
        let pool = self.pool().clone();
        async move {
            let mut client = pool.get().await.map_err(unavailable)?;
            let tx = client.transaction().await.map_err(query)?;
            for b in &bags {
                tx.execute(
                    "INSERT INTO hodl_bags (asset, balance, cost_basis_usd, pending_usd, accumulation_count, \
                     first_accumulation, last_accumulation, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, now()) \
                     ON CONFLICT (asset) DO UPDATE SET balance = EXCLUDED.balance, \
                     cost_basis_usd = EXCLUDED.cost_basis_usd, pending_usd = EXCLUDED.pending_usd, \
                     accumulation_count = EXCLUDED.accumulation_count, \
                     first_accumulation = EXCLUDED.first_accumulation, \
                     last_accumulation = EXCLUDED.last_accumulation, updated_at = now()",
                    &[
                        &b.asset,
                        &b.balance,
                        &b.cost_basis_usd,
                        &b.pending_usd,
                        &to_i32(b.accumulation_count),
                        &b.first_accumulation,
                        &b.last_accumulation,
                    ],
                )
                .await
                .map_err(query)?;
            }
            for t in &txs {
                tx.execute(
                    "INSERT INTO hodl_transactions (id, asset, kind, amount_usd, amount_asset, price, \
                     source_trade_id, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &t.id,
                        &t.asset,
                        &t.kind.as_str(),
                        &t.amount_usd,
                        &t.amount_asset,
                        &t.price,
                        &t.source_trade_id,
                        &t.at,
                    ],
                )
                .await
                .map_err(query)?;
            }
            tx.commit().await.map_err(query)?;
            Ok(())
        }
        .boxed()
    }

    fn hodl_transactions(&self, asset: Option<String>, limit: u32) -> StoreFuture<Vec<HodlTransaction>> {
        let pool = self.pool().clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            let rows = client
                .query(
                    "SELECT id, asset, kind, amount_usd, amount_asset, price, source_trade_id, at \
                     FROM hodl_transactions WHERE ($1::text IS NULL OR asset = $1) ORDER BY at DESC, kind DESC LIMIT $2",
                    &[&asset, &i64::from(limit)],
                )
                .await
                .map_err(query)?;
            rows.iter()
                .map(|r| {
                    let kind: String = r.try_get(2).map_err(query)?;
                    Ok(HodlTransaction {
                        id: r.try_get(0).map_err(query)?,
                        asset: r.try_get(1).map_err(query)?,
                        kind: HodlTxKind::parse(&kind)
                            .ok_or_else(|| StoreError::Corrupt(format!("hodl transaction kind {kind:?}")))?,
                        amount_usd: dec(r, 3)?,
                        amount_asset: opt_dec(r, 4)?,
                        price: opt_dec(r, 5)?,
                        source_trade_id: r.try_get(6).map_err(query)?,
                        at: r.try_get(7).map_err(query)?,
                    })
                })
                .collect()
        }
        .boxed()
    }

    fn hodl_allocated_since(&self, since: DateTime<Utc>) -> StoreFuture<Decimal> {
        let pool = self.pool().clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            let row = client
                .query_one(
                    "SELECT COALESCE(SUM(amount_usd), 0) FROM hodl_transactions WHERE kind = 'allocation' AND at >= $1",
                    &[&since],
                )
                .await
                .map_err(query)?;
            dec(&row, 0)
        }
        .boxed()
    }
}
