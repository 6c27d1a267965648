//! Many accounts on one database: one PostgreSQL schema per account.
//!
//! `app.account` names the account. The account `default` keeps its tables in `public` (so an
//! existing single-account database is unchanged); any other account `x` lives in the schema
//! `tg_x`. Every pooled connection of an account starts with `search_path = tg_x, public`, so
//! every query of the stores stays unqualified and reads and writes only that account's tables
//! (`public` stays on the path for extension functions such as TimescaleDB's, never for tables:
//! the migrations create every table in `tg_x` first). Migrations run inside the schema, each
//! schema with its own `refinery_schema_history`.
//!
//! One process per account: [`AccountLock`] holds a session advisory lock keyed by the account
//! on its own connection for the life of the process; a second server of the same account on
//! the same database refuses to start.

use crate::settings::{DatabaseSettings, DEFAULT_ACCOUNT};
use anyhow::Context as _;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use std::time::Duration;
use tokio_postgres::NoTls;

/// First key of the two-key advisory lock that marks "one process per account" ("tg" in ASCII).
const ACCOUNT_LOCK_CLASS: i32 = 0x7467;

/// The schema holding `account`'s tables: `None` for the default account (`public`).
pub fn schema_for(account: &str) -> Option<String> {
    (account != DEFAULT_ACCOUNT).then(|| format!("tg_{account}"))
}

fn pg_config(url: &str, settings: &DatabaseSettings, account: &str) -> anyhow::Result<tokio_postgres::Config> {
    let mut pg: tokio_postgres::Config = url.parse().context("DATABASE_URL is not a valid PostgreSQL URL")?;
    pg.connect_timeout(Duration::from_secs(settings.connect_timeout_secs));
    pg.application_name(format!("triplegain:{account}"));
    if let Some(schema) = schema_for(account) {
        // Account names are validated ([a-z][a-z0-9_]*), so the identifier needs no quoting.
        pg.options(format!("-c search_path={schema},public"));
    }
    Ok(pg)
}

/// A pool whose every connection works inside `account`'s schema.
///
/// # Errors
/// When the URL does not parse.
pub fn build_account_pool(url: &str, settings: &DatabaseSettings, account: &str) -> anyhow::Result<Pool> {
    let manager = Manager::from_config(
        pg_config(url, settings, account)?,
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

/// Creates `account`'s schema if it is missing (before migrations run inside it). Without
/// migrations (`database.run_migrations: false`) the schema must already hold the tables.
///
/// # Errors
/// When the database is unreachable, or the schema is missing and migrations are off.
pub async fn prepare_account_schema(pool: &Pool, account: &str, run_migrations: bool) -> anyhow::Result<()> {
    let Some(schema) = schema_for(account) else {
        return Ok(());
    };
    let client = pool
        .get()
        .await
        .context("connecting to PostgreSQL for the account schema")?;
    if run_migrations {
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await
            .with_context(|| format!("creating schema {schema} of account {account}"))?;
        return Ok(());
    }
    let orders = format!("{schema}.orders");
    let exists: Option<String> = client
        .query_one("SELECT to_regclass($1)::text", &[&orders])
        .await
        .context("checking the account schema")?
        .try_get(0)
        .context("checking the account schema")?;
    if exists.is_none() {
        anyhow::bail!(
            "account {account}: schema {schema} has no tables and database.run_migrations is false; run `triplegain migrate` with app.account: {account}"
        );
    }
    Ok(())
}

/// The single-instance lock of one account on one database, held for the life of the process.
pub struct AccountLock {
    client: tokio_postgres::Client,
    account: String,
    key: i32,
}

impl AccountLock {
    /// Takes the lock of `account` on its own connection, or fails at once when another process
    /// holds it.
    ///
    /// # Errors
    /// When the database is unreachable or another process runs this account.
    pub async fn acquire(url: &str, settings: &DatabaseSettings, account: &str) -> anyhow::Result<Self> {
        let (client, conn) = pg_config(url, settings, account)?
            .connect(NoTls)
            .await
            .context("connecting to PostgreSQL for the account lock")?;
        actix_web::rt::spawn(async move {
            if let Err(e) = conn.await {
                tracing::error!(error = %e, "account lock connection closed");
            }
        });
        let key: i32 = client
            .query_one("SELECT hashtext($1)", &[&format!("triplegain.account.{account}")])
            .await
            .context("hashing the account lock key")?
            .try_get(0)
            .context("hashing the account lock key")?;
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&ACCOUNT_LOCK_CLASS, &key])
            .await
            .context("taking the account lock")?
            .try_get(0)
            .context("taking the account lock")?;
        if !locked {
            anyhow::bail!(
                "another TripleGain process already runs account {account:?} on this database (app.account); one process per account"
            );
        }
        tracing::info!(account, "account lock held");
        Ok(Self {
            client,
            account: account.to_owned(),
            key,
        })
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// Releases the lock (also released when the process or its connection ends).
    pub async fn release(self) {
        if let Err(e) = self
            .client
            .execute("SELECT pg_advisory_unlock($1, $2)", &[&ACCOUNT_LOCK_CLASS, &self.key])
            .await
        {
            tracing::warn!(error = %e, account = %self.account, "account lock not released explicitly");
        }
    }
}
