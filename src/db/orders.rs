//! [`OrderStore`] on PostgreSQL: `orders`, `order_status_log`, `positions`, `position_snapshots`, `trades`.
//! NUMERIC columns map to `Decimal`, normalised on read (`50000.000000000000` reads as `50000`).

use super::pg::PgStore;
use deadpool_postgres::GenericClient;
use futures::FutureExt;
use rust_decimal::Decimal;
use tokio_postgres::Row;
use triplegain_actors::domain::{
    ClientOrderId, CorrelationId, OrderPurpose, OrderStatus, OrderType, PositionSide, PositionStatus, Side, Symbol,
};
use triplegain_actors::execution::api::{OrderView, PositionView};
use triplegain_actors::execution::store::UNRESOLVED;
use triplegain_actors::ports::{
    FillWrite, OrderRecord, OrderStore, PositionSnapshotRecord, StatusTransition, StoreError, StoreFuture, TradeRecord,
};
use uuid::Uuid;

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn query(e: impl std::fmt::Display) -> StoreError {
    StoreError::Query(e.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn dec(row: &Row, col: &str) -> Result<Decimal, StoreError> {
    row.try_get::<_, Decimal>(col).map(|d| d.normalize()).map_err(query)
}

fn dec_opt(row: &Row, col: &str) -> Result<Option<Decimal>, StoreError> {
    row.try_get::<_, Option<Decimal>>(col)
        .map(|d| d.map(|d| d.normalize()))
        .map_err(query)
}

fn text(row: &Row, col: &str) -> Result<String, StoreError> {
    row.try_get::<_, String>(col).map_err(query)
}

fn lev(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

const ORDER_COLS: &str = "id, client_order_id, exchange_order_id, correlation_id, position_id, symbol, side, order_type, \
     purpose, status, volume, filled_volume, price, price2, avg_fill_price, fee, leverage, reduce_only, linked_order_id, \
     error_message, created_at, updated_at, stop_loss, take_profit";

fn order_from_row(r: &Row) -> Result<OrderRecord, StoreError> {
    Ok(OrderRecord {
        view: OrderView {
            id: r.try_get("id").map_err(query)?,
            client_order_id: ClientOrderId::parse(&text(r, "client_order_id")?).map_err(corrupt)?,
            exchange_order_id: r.try_get("exchange_order_id").map_err(query)?,
            correlation_id: CorrelationId(
                r.try_get::<_, Option<Uuid>>("correlation_id")
                    .map_err(query)?
                    .unwrap_or_default(),
            ),
            position_id: r.try_get("position_id").map_err(query)?,
            symbol: Symbol::parse(&text(r, "symbol")?).map_err(corrupt)?,
            side: Side::parse(&text(r, "side")?).map_err(corrupt)?,
            order_type: OrderType::parse(&text(r, "order_type")?).map_err(corrupt)?,
            purpose: OrderPurpose::parse(&text(r, "purpose")?).map_err(corrupt)?,
            status: OrderStatus::parse(&text(r, "status")?).map_err(corrupt)?,
            volume: dec(r, "volume")?,
            filled_volume: dec(r, "filled_volume")?,
            price: dec_opt(r, "price")?,
            avg_fill_price: dec_opt(r, "avg_fill_price")?,
            fee: dec(r, "fee")?,
            created_at: r.try_get("created_at").map_err(query)?,
            updated_at: r.try_get("updated_at").map_err(query)?,
        },
        price2: dec_opt(r, "price2")?,
        leverage: u32::try_from(r.try_get::<_, i32>("leverage").map_err(query)?).unwrap_or(1),
        reduce_only: r.try_get("reduce_only").map_err(query)?,
        linked_order_id: r.try_get("linked_order_id").map_err(query)?,
        error_message: r.try_get("error_message").map_err(query)?,
        stop_loss: dec_opt(r, "stop_loss")?,
        take_profit: dec_opt(r, "take_profit")?,
    })
}

const POSITION_COLS: &str =
    "id, correlation_id, symbol, side, status, size, entry_price, exit_price, leverage, stop_loss, \
     take_profit, stop_loss_order_id, take_profit_order_id, realized_pnl, fees, opened_at, closed_at";

fn position_from_row(r: &Row) -> Result<PositionView, StoreError> {
    Ok(PositionView {
        id: r.try_get("id").map_err(query)?,
        correlation_id: CorrelationId(
            r.try_get::<_, Option<Uuid>>("correlation_id")
                .map_err(query)?
                .unwrap_or_default(),
        ),
        symbol: Symbol::parse(&text(r, "symbol")?).map_err(corrupt)?,
        side: PositionSide::parse(&text(r, "side")?).map_err(corrupt)?,
        status: PositionStatus::parse(&text(r, "status")?).map_err(corrupt)?,
        size: dec(r, "size")?,
        entry_price: dec(r, "entry_price")?,
        exit_price: dec_opt(r, "exit_price")?,
        leverage: u32::try_from(r.try_get::<_, i32>("leverage").map_err(query)?).unwrap_or(1),
        stop_loss: dec_opt(r, "stop_loss")?,
        take_profit: dec_opt(r, "take_profit")?,
        stop_loss_order_id: r.try_get("stop_loss_order_id").map_err(query)?,
        take_profit_order_id: r.try_get("take_profit_order_id").map_err(query)?,
        realized_pnl: dec(r, "realized_pnl")?,
        unrealized_pnl: None,
        fees: dec(r, "fees")?,
        opened_at: r.try_get("opened_at").map_err(query)?,
        closed_at: r.try_get("closed_at").map_err(query)?,
    })
}

fn trade_from_row(r: &Row) -> Result<TradeRecord, StoreError> {
    Ok(TradeRecord {
        id: r.try_get("id").map_err(query)?,
        order_id: r
            .try_get::<_, Option<Uuid>>("order_id")
            .map_err(query)?
            .unwrap_or_default(),
        position_id: r.try_get("position_id").map_err(query)?,
        correlation_id: CorrelationId(
            r.try_get::<_, Option<Uuid>>("correlation_id")
                .map_err(query)?
                .unwrap_or_default(),
        ),
        symbol: Symbol::parse(&text(r, "symbol")?).map_err(corrupt)?,
        side: Side::parse(&text(r, "side")?).map_err(corrupt)?,
        volume: dec(r, "volume")?,
        price: dec(r, "price")?,
        fee: dec(r, "fee")?,
        realized_pnl: dec_opt(r, "realized_pnl")?,
        executed_at: r.try_get("executed_at").map_err(query)?,
    })
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

async fn write_order<C: GenericClient>(c: &C, rec: &OrderRecord) -> Result<(), StoreError> {
    let v = &rec.view;
    c.execute(
        "INSERT INTO orders (id, client_order_id, exchange_order_id, correlation_id, position_id, symbol, side, \
         order_type, purpose, status, volume, filled_volume, price, price2, avg_fill_price, fee, leverage, \
         reduce_only, linked_order_id, error_message, created_at, updated_at, stop_loss, take_profit) \
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24) \
         ON CONFLICT (id) DO UPDATE SET exchange_order_id = EXCLUDED.exchange_order_id, \
         position_id = EXCLUDED.position_id, status = EXCLUDED.status, filled_volume = EXCLUDED.filled_volume, \
         avg_fill_price = EXCLUDED.avg_fill_price, fee = EXCLUDED.fee, linked_order_id = EXCLUDED.linked_order_id, \
         error_message = EXCLUDED.error_message, updated_at = EXCLUDED.updated_at",
        &[
            &v.id,
            &v.client_order_id.as_str(),
            &v.exchange_order_id,
            &v.correlation_id.0,
            &v.position_id,
            &v.symbol.as_str(),
            &v.side.as_str(),
            &v.order_type.as_str(),
            &v.purpose.as_str(),
            &v.status.as_str(),
            &v.volume,
            &v.filled_volume,
            &v.price,
            &rec.price2,
            &v.avg_fill_price,
            &v.fee,
            &lev(rec.leverage),
            &rec.reduce_only,
            &rec.linked_order_id,
            &rec.error_message,
            &v.created_at,
            &v.updated_at,
            &rec.stop_loss,
            &rec.take_profit,
        ],
    )
    .await
    .map_err(query)?;
    Ok(())
}

async fn write_status<C: GenericClient>(c: &C, t: &StatusTransition) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO order_status_log (order_id, from_status, to_status, filled_volume, detail, at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &t.order_id,
            &t.from.map(|s| s.as_str()),
            &t.to.as_str(),
            &t.filled_volume,
            &t.detail,
            &t.at,
        ],
    )
    .await
    .map_err(query)?;
    Ok(())
}

async fn write_position<C: GenericClient>(c: &C, p: &PositionView) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO positions (id, correlation_id, symbol, side, status, size, entry_price, exit_price, leverage, \
         stop_loss, take_profit, stop_loss_order_id, take_profit_order_id, realized_pnl, fees, opened_at, \
         closed_at, updated_at) \
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17, now()) \
         ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, size = EXCLUDED.size, \
         entry_price = EXCLUDED.entry_price, exit_price = EXCLUDED.exit_price, stop_loss = EXCLUDED.stop_loss, \
         take_profit = EXCLUDED.take_profit, stop_loss_order_id = EXCLUDED.stop_loss_order_id, \
         take_profit_order_id = EXCLUDED.take_profit_order_id, realized_pnl = EXCLUDED.realized_pnl, \
         fees = EXCLUDED.fees, closed_at = EXCLUDED.closed_at, updated_at = now()",
        &[
            &p.id,
            &p.correlation_id.0,
            &p.symbol.as_str(),
            &p.side.as_str(),
            &p.status.as_str(),
            &p.size,
            &p.entry_price,
            &p.exit_price,
            &lev(p.leverage),
            &p.stop_loss,
            &p.take_profit,
            &p.stop_loss_order_id,
            &p.take_profit_order_id,
            &p.realized_pnl,
            &p.fees,
            &p.opened_at,
            &p.closed_at,
        ],
    )
    .await
    .map_err(query)?;
    Ok(())
}

async fn write_trade<C: GenericClient>(c: &C, t: &TradeRecord) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO trades (id, order_id, position_id, correlation_id, symbol, side, volume, price, fee, \
         realized_pnl, executed_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) ON CONFLICT (id) DO NOTHING",
        &[
            &t.id,
            &t.order_id,
            &t.position_id,
            &t.correlation_id.0,
            &t.symbol.as_str(),
            &t.side.as_str(),
            &t.volume,
            &t.price,
            &t.fee,
            &t.realized_pnl,
            &t.executed_at,
        ],
    )
    .await
    .map_err(query)?;
    Ok(())
}

impl OrderStore for PgStore {
    fn upsert_order(&self, rec: OrderRecord) -> StoreFuture<()> {
        let pool = self.pool().clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            write_order(&client, &rec).await
        }
        .boxed()
    }

    fn record_fill(&self, fill: FillWrite) -> StoreFuture<()> {
        let pool = self.pool().clone();
        async move {
            if fill.is_empty() {
                return Ok(());
            }
            let mut client = pool.get().await.map_err(unavailable)?;
            let tx = client.transaction().await.map_err(unavailable)?;
            for o in &fill.orders {
                write_order(&tx, o).await?;
            }
            for t in &fill.statuses {
                write_status(&tx, t).await?;
            }
            for t in &fill.trades {
                write_trade(&tx, t).await?;
            }
            for p in &fill.positions {
                write_position(&tx, p).await?;
            }
            // The events that describe this state, in the same transaction (event export on).
            for e in &fill.events {
                super::outbox::append(&*tx, e.id, &e.topic, e.symbol.as_deref(), &e.payload)
                    .await
                    .map_err(query)?;
            }
            // Dropped without commit on any error above: nothing of the fill is written.
            tx.commit().await.map_err(query)
        }
        .boxed()
    }

    fn find_order_by_client_id(&self, client_order_id: ClientOrderId) -> StoreFuture<Option<OrderRecord>> {
        let pool = self.pool().clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            let sql = format!("SELECT {ORDER_COLS} FROM orders WHERE client_order_id = $1 ORDER BY created_at LIMIT 1");
            let row = client
                .query_opt(&sql, &[&client_order_id.as_str()])
                .await
                .map_err(query)?;
            row.as_ref().map(order_from_row).transpose()
        }
        .boxed()
    }

    fn append_status(&self, t: StatusTransition) -> StoreFuture<()> {
        let pool = self.pool().clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            write_status(&client, &t).await
        }
        .boxed()
    }

    fn load_active_orders(&self) -> StoreFuture<Vec<OrderRecord>> {
        let pool = self.pool().clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            let sql = format!(
                "SELECT {ORDER_COLS} FROM orders WHERE status IN ('pending', 'unknown', 'open', 'partially_filled') \
                 OR (status = 'error' AND error_message LIKE $1) ORDER BY created_at"
            );
            let pattern = format!("{UNRESOLVED}%");
            let rows = client.query(&sql, &[&pattern]).await.map_err(query)?;
            rows.iter().map(order_from_row).collect()
        }
        .boxed()
    }

    fn get_order(&self, id: Uuid) -> StoreFuture<Option<OrderRecord>> {
        let pool = self.pool().clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            let sql = format!("SELECT {ORDER_COLS} FROM orders WHERE id = $1");
            let row = client.query_opt(&sql, &[&id]).await.map_err(query)?;
            row.as_ref().map(order_from_row).transpose()
        }
        .boxed()
    }

    fn list_orders(&self, symbol: Option<Symbol>, open_only: bool, n: usize) -> StoreFuture<Vec<OrderRecord>> {
        let pool = self.pool().clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            let sql = format!(
                "SELECT {ORDER_COLS} FROM orders WHERE ($1::text IS NULL OR symbol = $1) \
                 AND (NOT $2 OR status IN ('pending', 'unknown', 'open', 'partially_filled')) \
                 ORDER BY created_at DESC, id LIMIT $3"
            );
            let sym = symbol.as_ref().map(|s| s.as_str().to_owned());
            let rows = client
                .query(&sql, &[&sym, &open_only, &limit(n)])
                .await
                .map_err(query)?;
            rows.iter().map(order_from_row).collect()
        }
        .boxed()
    }

    fn status_log(&self, order_id: Uuid) -> StoreFuture<Vec<StatusTransition>> {
        let pool = self.pool().clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            let rows = client
                .query(
                    "SELECT from_status, to_status, filled_volume, detail, at FROM order_status_log \
                     WHERE order_id = $1 ORDER BY id",
                    &[&order_id],
                )
                .await
                .map_err(query)?;
            rows.iter()
                .map(|r| {
                    Ok(StatusTransition {
                        order_id,
                        from: r
                            .try_get::<_, Option<String>>("from_status")
                            .map_err(query)?
                            .map(|s| OrderStatus::parse(&s).map_err(corrupt))
                            .transpose()?,
                        to: OrderStatus::parse(&text(r, "to_status")?).map_err(corrupt)?,
                        filled_volume: dec_opt(r, "filled_volume")?.unwrap_or_default(),
                        detail: r.try_get("detail").map_err(query)?,
                        at: r.try_get("at").map_err(query)?,
                    })
                })
                .collect()
        }
        .boxed()
    }

    fn upsert_position(&self, p: PositionView) -> StoreFuture<()> {
        let pool = self.pool().clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            write_position(&client, &p).await
        }
        .boxed()
    }

    fn load_open_positions(&self) -> StoreFuture<Vec<PositionView>> {
        let pool = self.pool().clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            let sql =
                format!("SELECT {POSITION_COLS} FROM positions WHERE status IN ('open', 'closing') ORDER BY opened_at");
            let rows = client.query(&sql, &[]).await.map_err(query)?;
            rows.iter().map(position_from_row).collect()
        }
        .boxed()
    }

    fn get_position(&self, id: Uuid) -> StoreFuture<Option<PositionView>> {
        let pool = self.pool().clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            let sql = format!("SELECT {POSITION_COLS} FROM positions WHERE id = $1");
            let row = client.query_opt(&sql, &[&id]).await.map_err(query)?;
            row.as_ref().map(position_from_row).transpose()
        }
        .boxed()
    }

    fn list_positions(
        &self,
        symbol: Option<Symbol>,
        status: Option<PositionStatus>,
        n: usize,
    ) -> StoreFuture<Vec<PositionView>> {
        let pool = self.pool().clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            let sql = format!(
                "SELECT {POSITION_COLS} FROM positions WHERE ($1::text IS NULL OR symbol = $1) \
                 AND ($2::text IS NULL OR status = $2) ORDER BY opened_at DESC, id LIMIT $3"
            );
            let sym = symbol.as_ref().map(|s| s.as_str().to_owned());
            let st = status.map(|s| s.as_str().to_owned());
            let rows = client.query(&sql, &[&sym, &st, &limit(n)]).await.map_err(query)?;
            rows.iter().map(position_from_row).collect()
        }
        .boxed()
    }

    fn insert_trade(&self, t: TradeRecord) -> StoreFuture<()> {
        let pool = self.pool().clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            write_trade(&client, &t).await
        }
        .boxed()
    }

    fn list_trades(&self, symbol: Option<Symbol>, n: usize) -> StoreFuture<Vec<TradeRecord>> {
        let pool = self.pool().clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            let sym = symbol.as_ref().map(|s| s.as_str().to_owned());
            let rows = client
                .query(
                    "SELECT id, order_id, position_id, correlation_id, symbol, side, volume, price, fee, realized_pnl, \
                     executed_at FROM trades WHERE ($1::text IS NULL OR symbol = $1) \
                     ORDER BY executed_at DESC, id LIMIT $2",
                    &[&sym, &limit(n)],
                )
                .await
                .map_err(query)?;
            rows.iter().map(trade_from_row).collect()
        }
        .boxed()
    }

    fn insert_snapshot(&self, s: PositionSnapshotRecord) -> StoreFuture<()> {
        let pool = self.pool().clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            client
                .execute(
                    "INSERT INTO position_snapshots (position_id, at, price, unrealized_pnl, unrealized_pnl_pct) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (position_id, at) DO NOTHING",
                    &[
                        &s.position_id,
                        &s.at,
                        &s.price,
                        &s.unrealized_pnl,
                        &s.unrealized_pnl_pct,
                    ],
                )
                .await
                .map_err(query)?;
            Ok(())
        }
        .boxed()
    }
}
