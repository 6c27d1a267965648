//! The API audit log (every control action: who, what, the body's hash, the outcome): a port with
//! a PostgreSQL version (`api_audit_log`) and an in-memory one (the latest records, memory mode).

use futures::future::BoxFuture;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use triplegain_actors::ports::StoreError;

/// One control action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiAuditRecord {
    pub token_name: String,
    pub role: String,
    pub method: String,
    pub route: String,
    pub body_sha256: Option<String>,
    pub status: u16,
    pub result: String,
    /// The request id the HTTP middleware gave the request.
    pub request_id: Option<String>,
}

/// The audit port.
pub trait ApiAuditStore: Send + Sync {
    fn record(&self, rec: ApiAuditRecord) -> BoxFuture<'static, Result<(), StoreError>>;
    /// The latest records, oldest first (at most `limit`).
    fn recent(&self, limit: usize) -> BoxFuture<'static, Result<Vec<ApiAuditRecord>, StoreError>>;
}

/// `api_audit_log` on PostgreSQL.
pub struct PgApiAuditStore {
    pool: deadpool_postgres::Pool,
}

impl PgApiAuditStore {
    pub fn new(pool: deadpool_postgres::Pool) -> Self {
        Self { pool }
    }
}

fn query(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl ApiAuditStore for PgApiAuditStore {
    fn record(&self, rec: ApiAuditRecord) -> BoxFuture<'static, Result<(), StoreError>> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let client = pool.get().await.map_err(query)?;
            client
                .execute(
                    "INSERT INTO api_audit_log (token_name, role, method, route, body_sha256, status, result, request_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &rec.token_name,
                        &rec.role,
                        &rec.method,
                        &rec.route,
                        &rec.body_sha256,
                        &i32::from(rec.status),
                        &rec.result,
                        &rec.request_id,
                    ],
                )
                .await
                .map_err(query)?;
            Ok(())
        })
    }

    fn recent(&self, limit: usize) -> BoxFuture<'static, Result<Vec<ApiAuditRecord>, StoreError>> {
        let pool = self.pool.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Box::pin(async move {
            let client = pool.get().await.map_err(query)?;
            let rows = client
                .query(
                    "SELECT token_name, role, method, route, body_sha256, status, result, request_id FROM \
                     (SELECT * FROM api_audit_log ORDER BY id DESC LIMIT $1) r ORDER BY id",
                    &[&limit],
                )
                .await
                .map_err(query)?;
            Ok(rows
                .iter()
                .map(|r| ApiAuditRecord {
                    token_name: r.get(0),
                    role: r.get(1),
                    method: r.get(2),
                    route: r.get(3),
                    body_sha256: r.get(4),
                    status: u16::try_from(r.get::<_, i32>(5)).unwrap_or(0),
                    result: r.get(6),
                    request_id: r.get(7),
                })
                .collect())
        })
    }
}

/// The latest audit records in memory (memory mode), at most `capacity`.
#[derive(Clone)]
pub struct MemoryApiAuditStore {
    records: Arc<Mutex<VecDeque<ApiAuditRecord>>>,
    capacity: usize,
}

impl MemoryApiAuditStore {
    pub fn new(capacity: usize) -> Self {
        Self {
            records: Arc::default(),
            capacity: capacity.max(1),
        }
    }
}

impl ApiAuditStore for MemoryApiAuditStore {
    fn record(&self, rec: ApiAuditRecord) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut records = self.records.lock();
        if records.len() == self.capacity {
            records.pop_front();
        }
        records.push_back(rec);
        Box::pin(futures::future::ready(Ok(())))
    }

    fn recent(&self, limit: usize) -> BoxFuture<'static, Result<Vec<ApiAuditRecord>, StoreError>> {
        let records = self.records.lock();
        let skip = records.len().saturating_sub(limit);
        let out = records.iter().skip(skip).cloned().collect();
        Box::pin(futures::future::ready(Ok(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(route: &str) -> ApiAuditRecord {
        ApiAuditRecord {
            token_name: "operator".into(),
            role: "operator".into(),
            method: "POST".into(),
            route: route.into(),
            body_sha256: None,
            status: 200,
            result: "ok".into(),
            request_id: None,
        }
    }

    #[tokio::test]
    async fn the_memory_log_keeps_the_latest_records_in_order() {
        let log = MemoryApiAuditStore::new(2);
        for r in ["/a", "/b", "/c"] {
            log.record(rec(r)).await.unwrap();
        }
        let routes: Vec<String> = log.recent(10).await.unwrap().into_iter().map(|r| r.route).collect();
        assert_eq!(routes, ["/b", "/c"]);
        assert_eq!(log.recent(1).await.unwrap()[0].route, "/c");
    }
}
