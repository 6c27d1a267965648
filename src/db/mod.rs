//! Persistence: the deadpool pool, embedded refinery migrations, the PostgreSQL stores and the
//! in-memory store used by paper runs without a database.

// -- accounts and event outbox (issue 18) --
pub mod account;
pub mod outbox;

// -- the HTTP layer's stores: API audit log, idempotency keys --
pub mod api_audit;
pub mod idempotency;

mod memory;
mod orders;
mod pg;
mod portfolio;

pub use memory::MemoryStore;
pub use pg::PgStore;

use crate::settings::DatabaseSettings;
use anyhow::Context as _;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::NoTls;
use triplegain_actors::ports::Stores;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Builds a pool with connect, wait and recycle timeouts.
///
/// # Errors
/// When the URL does not parse.
pub fn build_pool(url: &str, settings: &DatabaseSettings) -> anyhow::Result<Pool> {
    let mut pg: tokio_postgres::Config = url.parse().context("DATABASE_URL is not a valid PostgreSQL URL")?;
    pg.connect_timeout(Duration::from_secs(settings.connect_timeout_secs));
    pg.application_name("triplegain");
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(settings.max_connections)
        .runtime(Runtime::Tokio1)
        .timeouts(Timeouts {
            wait: Some(Duration::from_secs(settings.wait_timeout_secs)),
            create: Some(Duration::from_secs(settings.connect_timeout_secs)),
            recycle: Some(Duration::from_secs(settings.connect_timeout_secs)),
        })
        .build()
        .context("building the database pool")
}

/// Applies every pending migration; a second run changes nothing. Returns the versions applied now.
///
/// # Errors
/// When the database is unreachable or a migration fails.
pub async fn migrate(pool: &Pool) -> anyhow::Result<Vec<String>> {
    let mut client = pool.get().await.context("connecting to PostgreSQL for migrations")?;
    let report = embedded::migrations::runner()
        .run_async(&mut **client)
        .await
        .context("running migrations")?;
    Ok(report.applied_migrations().iter().map(|m| m.to_string()).collect())
}

/// Stores backed by PostgreSQL.
pub fn pg_stores(pool: Pool) -> Stores {
    let store = Arc::new(PgStore::new(pool));
    Stores {
        state: store.clone(),
        audit: store.clone(),
        health: store.clone(),
        portfolio: store.clone(),
        orders: store,
    }
}

/// Stores backed by PostgreSQL whose audit writes also append to the export outbox in the same
/// transaction (event export on).
pub fn pg_stores_with_outbox(pool: Pool) -> Stores {
    let store = Arc::new(PgStore::with_outbox(pool));
    Stores {
        state: store.clone(),
        audit: store.clone(),
        health: store.clone(),
        portfolio: store.clone(),
        orders: store,
    }
}

/// Stores kept in memory (paper mode without a database), with the default record limits.
pub fn memory_stores() -> Stores {
    memory_stores_with(crate::settings::DatabaseSettings::default().memory_max_records)
}

/// Stores kept in memory, keeping at most `max_records` decision records and as many model
/// answers.
pub fn memory_stores_with(max_records: usize) -> Stores {
    let store = Arc::new(MemoryStore::with_max_records(max_records));
    Stores {
        state: store.clone(),
        audit: store.clone(),
        portfolio: Arc::new(triplegain_actors::portfolio::MemoryPortfolioStore::default()),
        health: store,
        orders: Arc::new(triplegain_actors::execution::store::MemoryOrderStore::default()),
    }
}
