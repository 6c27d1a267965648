//! `Idempotency-Key` for `POST /api/v1/trades`: a repeat within 24 h returns the first result.
//!
//! A key is claimed (pending) before anything is placed, with the trade's correlation id and the
//! id of this server process. A pending key whose request died (its process is gone, or it is
//! older than [`PENDING_DEADLINE`]) is resolved from the order store when it is seen again:
//! when an order of its correlation id exists, its result is replayed (and stored); otherwise the
//! key is released and the request proceeds. Without a database the keys are kept in memory (per
//! server, lost on restart) and every response says so in `Idempotency-Store: memory`.

use super::error::ApiError;
use super::limits::RateLimits;
use super::state::AppState;
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;
use std::time::{Duration, Instant};
use triplegain_actors::domain::CorrelationId;
use triplegain_actors::execution::api::GetOrders;
use uuid::Uuid;

/// This server process; a pending key of another process belongs to a request that died with it.
static INSTANCE: LazyLock<Uuid> = LazyLock::new(Uuid::new_v4);

/// No request of this server stays in flight this long (execution timeouts are shorter).
pub const PENDING_DEADLINE: Duration = Duration::from_secs(120);

/// How long a key is remembered.
const KEY_TTL: Duration = Duration::from_secs(24 * 3600);

/// What to do with a request carrying a key.
pub enum Begin {
    /// The key is ours: run the request, then [`finish`].
    Claimed,
    /// The first result, to be returned as is.
    Replay(HttpResponse),
}

/// A key held in memory (no database).
pub struct MemoryKey {
    at: Instant,
    body_sha256: String,
    result: Option<(u16, serde_json::Value)>,
}

fn sha(body: &[u8]) -> String {
    Sha256::digest(body).iter().map(|b| format!("{b:02x}")).collect()
}

fn in_progress() -> ApiError {
    ApiError::conflict("a request with this Idempotency-Key is in progress")
}

fn reused() -> ApiError {
    ApiError::validation("Idempotency-Key", "this Idempotency-Key was used with a different body")
}

fn store_error(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "idempotency store unavailable");
    ApiError::unavailable("idempotency store")
}

fn replay(status: i32, body: serde_json::Value) -> HttpResponse {
    let code = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    HttpResponse::build(code)
        .insert_header(("Idempotent-Replay", "true"))
        .json(body)
}

/// The result of a trade whose request died, rebuilt from the order store; `None` when it
/// placed nothing.
async fn recovered_result(state: &AppState, cid: CorrelationId) -> Result<Option<serde_json::Value>, ApiError> {
    let orders = state
        .execution
        .send(GetOrders {
            symbol: None,
            open_only: false,
            correlation_id: Some(cid),
        })
        .await
        .map_err(|e| ApiError::from_mailbox("execution manager", &e))?
        .map_err(|e| store_error(format!("{e:?}")))?;
    let entries: Vec<_> = orders
        .into_iter()
        .filter(|o| o.purpose == triplegain_actors::domain::OrderPurpose::Entry)
        .collect();
    if entries.is_empty() {
        return Ok(None);
    }
    let position_id = entries.first().and_then(|o| o.position_id);
    let recovered = super::views::PlacedTrade {
        correlation_id: cid,
        verdict: None,
        recovered: true,
        orders: entries,
        position_id,
        market_order: None,
    };
    serde_json::to_value(recovered)
        .map(Some)
        .map_err(|e| store_error(format!("recovered result does not serialise: {e}")))
}

/// Claims `key` for a request with `body` and correlation id `cid`, or answers it.
///
/// # Errors
/// 409 while another live request holds the key; 422 for a key reused with another body; 503
/// when the store is unreachable.
pub async fn begin(
    state: &AppState,
    guards: Option<&RateLimits>,
    key: &str,
    token: &str,
    body: &[u8],
    cid: CorrelationId,
) -> Result<Begin, ApiError> {
    let digest = sha(body);
    let Some(pool) = &state.pool else {
        let Some(guards) = guards else {
            return Ok(Begin::Claimed);
        };
        let mut keys = guards.memory_keys.lock();
        let now = Instant::now();
        keys.retain(|_, k| now.duration_since(k.at) < KEY_TTL);
        return match keys.get(key) {
            Some(k) if k.body_sha256 != digest => Err(reused()),
            Some(MemoryKey {
                result: Some((status, json)),
                ..
            }) => Ok(Begin::Replay(replay(i32::from(*status), json.clone()))),
            Some(_) => Err(in_progress()),
            None => {
                keys.insert(
                    key.to_owned(),
                    MemoryKey {
                        at: now,
                        body_sha256: digest,
                        result: None,
                    },
                );
                Ok(Begin::Claimed)
            }
        };
    };
    let client = pool.get().await.map_err(store_error)?;
    client
        .execute(
            "DELETE FROM idempotency_keys WHERE key = $1 AND created_at <= now() - interval '24 hours'",
            &[&key],
        )
        .await
        .map_err(store_error)?;
    let row = client
        .query_opt(
            "SELECT response, status, correlation_id, instance_id, request_sha256, \
             EXTRACT(EPOCH FROM (now() - created_at))::float8 FROM idempotency_keys WHERE key = $1",
            &[&key],
        )
        .await
        .map_err(store_error)?;
    if let Some(r) = row {
        let status: i32 = r.get(1);
        let stored_sha: Option<String> = r.get(4);
        if stored_sha.as_deref().is_some_and(|s| s != digest) {
            return Err(reused());
        }
        if status != 0 {
            return Ok(Begin::Replay(replay(status, r.get(0))));
        }
        let owner: Option<Uuid> = r.get(3);
        let age_secs: f64 = r.get(5);
        let alive = owner == Some(*INSTANCE) && age_secs < PENDING_DEADLINE.as_secs_f64();
        if alive {
            return Err(in_progress());
        }
        // Its request died: resolve it from the order store.
        let old_cid: Option<Uuid> = r.get(2);
        if let Some(old) = old_cid {
            if let Some(result) = recovered_result(state, CorrelationId(old)).await? {
                tracing::warn!(key, correlation_id = %old, "idempotency key of a dead request replayed from the order store");
                client
                    .execute(
                        "UPDATE idempotency_keys SET response = $2, status = 200 WHERE key = $1 AND status = 0",
                        &[&key, &result],
                    )
                    .await
                    .map_err(store_error)?;
                return Ok(Begin::Replay(replay(200, result)));
            }
        }
        tracing::warn!(key, "idempotency key of a dead request that placed nothing released");
        client
            .execute("DELETE FROM idempotency_keys WHERE key = $1 AND status = 0", &[&key])
            .await
            .map_err(store_error)?;
    }
    let n = client
        .execute(
            "INSERT INTO idempotency_keys (key, token_name, response, status, correlation_id, instance_id, request_sha256) \
             VALUES ($1, $2, '{\"pending\": true}'::jsonb, 0, $3, $4, $5) ON CONFLICT (key) DO NOTHING",
            &[&key, &token, &cid.0, &*INSTANCE, &digest],
        )
        .await
        .map_err(store_error)?;
    if n == 1 {
        Ok(Begin::Claimed)
    } else {
        Err(in_progress())
    }
}

/// Stores the result of a claimed key. A server-side failure (5xx: unavailable, outcome
/// unknown) is not a result to replay for 24 h: the key stays pending but is handed to the order
/// store, so the next retry replays the order if one exists or proceeds if none does.
pub async fn finish(state: &AppState, guards: Option<&RateLimits>, key: &str, status: u16, body: &serde_json::Value) {
    let Some(pool) = &state.pool else {
        if let Some(guards) = guards {
            let mut keys = guards.memory_keys.lock();
            if status >= 500 {
                keys.remove(key);
            } else if let Some(k) = keys.get_mut(key) {
                k.result = Some((status, body.clone()));
            }
        }
        return;
    };
    let Ok(client) = pool.get().await else {
        tracing::error!(key, "idempotency result not stored: database unavailable");
        return;
    };
    let res = if status >= 500 {
        client
            .execute(
                "UPDATE idempotency_keys SET instance_id = NULL WHERE key = $1 AND status = 0",
                &[&key],
            )
            .await
    } else {
        let status = i32::from(status);
        client
            .execute(
                "UPDATE idempotency_keys SET response = $2, status = $3 WHERE key = $1",
                &[&key, body, &status],
            )
            .await
    };
    if let Err(e) = res {
        tracing::error!(error = %e, "idempotency result not stored");
    }
}

/// The `Idempotency-Store` header value: where keys are kept.
pub fn store_kind(state: &AppState) -> &'static str {
    if state.pool.is_some() {
        "postgres"
    } else {
        "memory (lost on restart)"
    }
}
