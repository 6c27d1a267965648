//! The store of `Idempotency-Key`s (`POST /api/v1/trades`): a port with a PostgreSQL version
//! (`idempotency_keys`, shared by every server of the account) and an in-memory one (one server,
//! lost on restart) that follow the same rules, so the route behaves the same in both modes.

use futures::future::BoxFuture;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use triplegain_actors::domain::CorrelationId;
use triplegain_actors::ports::StoreError;
use uuid::Uuid;

/// How long a key is remembered.
pub const KEY_TTL: Duration = Duration::from_secs(24 * 3600);

/// A key as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    /// The HTTP status of the stored result; 0 while the request is pending.
    pub status: u16,
    pub response: serde_json::Value,
    pub correlation_id: Option<CorrelationId>,
    /// The server process that holds a pending key (`None` once handed to the order store).
    pub owner: Option<Uuid>,
    /// SHA-256 of the request body the key was claimed with.
    pub body_sha256: Option<String>,
    pub age: Duration,
}

/// What claiming a key needs.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    pub key: &'a str,
    pub token: &'a str,
    pub correlation_id: CorrelationId,
    pub owner: Uuid,
    pub body_sha256: &'a str,
}

/// The idempotency port.
pub trait IdempotencyStore: Send + Sync {
    /// `postgres` or `memory (lost on restart)`, for the `Idempotency-Store` header.
    fn kind(&self) -> &'static str;
    /// Forgets the key if older than [`KEY_TTL`], then reads it.
    fn current(&self, key: &str) -> BoxFuture<'static, Result<Option<KeyRecord>, StoreError>>;
    /// Claims a new pending key; `false` when it exists already.
    fn claim(&self, claim: Claim<'_>) -> BoxFuture<'static, Result<bool, StoreError>>;
    /// Stores a result for a key still pending (a dead request's result rebuilt from the orders).
    fn resolve_pending(&self, key: &str, result: serde_json::Value) -> BoxFuture<'static, Result<(), StoreError>>;
    /// Forgets a key still pending (a dead request that placed nothing).
    fn release_pending(&self, key: &str) -> BoxFuture<'static, Result<(), StoreError>>;
    /// Stores the result of a claimed key.
    fn finish(&self, key: &str, status: u16, body: serde_json::Value) -> BoxFuture<'static, Result<(), StoreError>>;
    /// Hands a pending key to the order store (its request ended in a server-side failure): the
    /// next repeat replays the order if one exists, or proceeds if none does.
    fn orphan(&self, key: &str) -> BoxFuture<'static, Result<(), StoreError>>;
}

fn query(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// `idempotency_keys` on PostgreSQL.
pub struct PgIdempotencyStore {
    pool: deadpool_postgres::Pool,
}

impl PgIdempotencyStore {
    pub fn new(pool: deadpool_postgres::Pool) -> Self {
        Self { pool }
    }
}

impl IdempotencyStore for PgIdempotencyStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn current(&self, key: &str) -> BoxFuture<'static, Result<Option<KeyRecord>, StoreError>> {
        let (pool, key) = (self.pool.clone(), key.to_owned());
        Box::pin(async move {
            let client = pool.get().await.map_err(query)?;
            client
                .execute(
                    "DELETE FROM idempotency_keys WHERE key = $1 AND created_at <= now() - interval '24 hours'",
                    &[&key],
                )
                .await
                .map_err(query)?;
            let row = client
                .query_opt(
                    "SELECT response, status, correlation_id, instance_id, request_sha256, \
                     EXTRACT(EPOCH FROM (now() - created_at))::float8 FROM idempotency_keys WHERE key = $1",
                    &[&key],
                )
                .await
                .map_err(query)?;
            Ok(row.map(|r| KeyRecord {
                status: u16::try_from(r.get::<_, i32>(1)).unwrap_or(0),
                response: r.get(0),
                correlation_id: r.get::<_, Option<Uuid>>(2).map(CorrelationId),
                owner: r.get(3),
                body_sha256: r.get(4),
                age: Duration::from_secs_f64(r.get::<_, f64>(5).max(0.0)),
            }))
        })
    }

    fn claim(&self, claim: Claim<'_>) -> BoxFuture<'static, Result<bool, StoreError>> {
        let pool = self.pool.clone();
        let (key, token, sha) = (
            claim.key.to_owned(),
            claim.token.to_owned(),
            claim.body_sha256.to_owned(),
        );
        let (cid, owner) = (claim.correlation_id.0, claim.owner);
        Box::pin(async move {
            let client = pool.get().await.map_err(query)?;
            let n = client
                .execute(
                    "INSERT INTO idempotency_keys (key, token_name, response, status, correlation_id, instance_id, request_sha256) \
                     VALUES ($1, $2, '{\"pending\": true}'::jsonb, 0, $3, $4, $5) ON CONFLICT (key) DO NOTHING",
                    &[&key, &token, &cid, &owner, &sha],
                )
                .await
                .map_err(query)?;
            Ok(n == 1)
        })
    }

    fn resolve_pending(&self, key: &str, result: serde_json::Value) -> BoxFuture<'static, Result<(), StoreError>> {
        let (pool, key) = (self.pool.clone(), key.to_owned());
        Box::pin(async move {
            let client = pool.get().await.map_err(query)?;
            client
                .execute(
                    "UPDATE idempotency_keys SET response = $2, status = 200 WHERE key = $1 AND status = 0",
                    &[&key, &result],
                )
                .await
                .map_err(query)?;
            Ok(())
        })
    }

    fn release_pending(&self, key: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        let (pool, key) = (self.pool.clone(), key.to_owned());
        Box::pin(async move {
            let client = pool.get().await.map_err(query)?;
            client
                .execute("DELETE FROM idempotency_keys WHERE key = $1 AND status = 0", &[&key])
                .await
                .map_err(query)?;
            Ok(())
        })
    }

    fn finish(&self, key: &str, status: u16, body: serde_json::Value) -> BoxFuture<'static, Result<(), StoreError>> {
        let (pool, key) = (self.pool.clone(), key.to_owned());
        Box::pin(async move {
            let client = pool.get().await.map_err(query)?;
            client
                .execute(
                    "UPDATE idempotency_keys SET response = $2, status = $3 WHERE key = $1",
                    &[&key, &body, &i32::from(status)],
                )
                .await
                .map_err(query)?;
            Ok(())
        })
    }

    fn orphan(&self, key: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        let (pool, key) = (self.pool.clone(), key.to_owned());
        Box::pin(async move {
            let client = pool.get().await.map_err(query)?;
            client
                .execute(
                    "UPDATE idempotency_keys SET instance_id = NULL WHERE key = $1 AND status = 0",
                    &[&key],
                )
                .await
                .map_err(query)?;
            Ok(())
        })
    }
}

struct MemoryKey {
    at: Instant,
    record: KeyRecord,
}

/// The keys of one server, in memory (no database): the same rules, lost on restart.
#[derive(Default, Clone)]
pub struct MemoryIdempotencyStore {
    keys: Arc<Mutex<HashMap<String, MemoryKey>>>,
}

impl MemoryIdempotencyStore {
    fn with_key<T>(&self, key: &str, f: impl FnOnce(&mut MemoryKey) -> T) -> Option<T> {
        self.keys.lock().get_mut(key).map(f)
    }
}

fn ready<T: Send + 'static>(v: T) -> BoxFuture<'static, Result<T, StoreError>> {
    Box::pin(futures::future::ready(Ok(v)))
}

impl IdempotencyStore for MemoryIdempotencyStore {
    fn kind(&self) -> &'static str {
        "memory (lost on restart)"
    }

    fn current(&self, key: &str) -> BoxFuture<'static, Result<Option<KeyRecord>, StoreError>> {
        let mut keys = self.keys.lock();
        let now = Instant::now();
        keys.retain(|_, k| now.duration_since(k.at) < KEY_TTL);
        let found = keys.get(key).map(|k| KeyRecord {
            age: now.duration_since(k.at),
            ..k.record.clone()
        });
        ready(found)
    }

    fn claim(&self, claim: Claim<'_>) -> BoxFuture<'static, Result<bool, StoreError>> {
        let mut keys = self.keys.lock();
        if keys.contains_key(claim.key) {
            return ready(false);
        }
        keys.insert(
            claim.key.to_owned(),
            MemoryKey {
                at: Instant::now(),
                record: KeyRecord {
                    status: 0,
                    response: serde_json::json!({"pending": true}),
                    correlation_id: Some(claim.correlation_id),
                    owner: Some(claim.owner),
                    body_sha256: Some(claim.body_sha256.to_owned()),
                    age: Duration::ZERO,
                },
            },
        );
        ready(true)
    }

    fn resolve_pending(&self, key: &str, result: serde_json::Value) -> BoxFuture<'static, Result<(), StoreError>> {
        self.with_key(key, |k| {
            if k.record.status == 0 {
                k.record.status = 200;
                k.record.response = result;
            }
        });
        ready(())
    }

    fn release_pending(&self, key: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut keys = self.keys.lock();
        if keys.get(key).is_some_and(|k| k.record.status == 0) {
            keys.remove(key);
        }
        ready(())
    }

    fn finish(&self, key: &str, status: u16, body: serde_json::Value) -> BoxFuture<'static, Result<(), StoreError>> {
        self.with_key(key, |k| {
            k.record.status = status;
            k.record.response = body;
        });
        ready(())
    }

    fn orphan(&self, key: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        self.with_key(key, |k| {
            if k.record.status == 0 {
                k.record.owner = None;
            }
        });
        ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim<'a>(key: &'a str, owner: Uuid) -> Claim<'a> {
        Claim {
            key,
            token: "operator",
            correlation_id: CorrelationId::new(),
            owner,
            body_sha256: "abc",
        }
    }

    #[tokio::test]
    async fn memory_keys_follow_the_same_rules_as_the_table() {
        let store = MemoryIdempotencyStore::default();
        let me = Uuid::new_v4();
        assert!(store.claim(claim("k", me)).await.unwrap());
        assert!(!store.claim(claim("k", me)).await.unwrap(), "a key is claimed once");
        let pending = store.current("k").await.unwrap().unwrap();
        assert_eq!((pending.status, pending.owner), (0, Some(me)));
        // A server-side failure hands the key to the order store.
        store.orphan("k").await.unwrap();
        assert_eq!(store.current("k").await.unwrap().unwrap().owner, None);
        // Resolved from the orders, then never changed by a release.
        store.resolve_pending("k", serde_json::json!({"ok": 1})).await.unwrap();
        store.release_pending("k").await.unwrap();
        let done = store.current("k").await.unwrap().unwrap();
        assert_eq!((done.status, done.response), (200, serde_json::json!({"ok": 1})));
        // A pending key that placed nothing is released.
        assert!(store.claim(claim("j", me)).await.unwrap());
        store.release_pending("j").await.unwrap();
        assert_eq!(store.current("j").await.unwrap(), None);
    }
}
