//! `Idempotency-Key` for `POST /api/v1/trades`: a repeat within 24 h returns the first result.
//!
//! A key is claimed (pending) before anything is placed, with the trade's correlation id and the
//! id of this server process. A pending key whose request died (its process is gone, or it is
//! older than [`PENDING_DEADLINE`]) is resolved from the order store when it is seen again:
//! when an order of its correlation id exists, its result is replayed (and stored); otherwise the
//! key is released and the request proceeds. The keys live behind the
//! [`crate::db::idempotency::IdempotencyStore`] port: in PostgreSQL, or without a database in
//! memory (per server, lost on restart, the same rules), and every response says which in
//! `Idempotency-Store`.

use super::error::ApiError;
use super::state::AppState;
use crate::db::idempotency::Claim;
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;
use std::time::Duration;
use triplegain_actors::domain::CorrelationId;
use triplegain_actors::execution::api::GetOrders;
use uuid::Uuid;

/// This server process; a pending key of another process belongs to a request that died with it.
static INSTANCE: LazyLock<Uuid> = LazyLock::new(Uuid::new_v4);

/// No request of this server stays in flight this long (execution timeouts are shorter).
pub const PENDING_DEADLINE: Duration = Duration::from_secs(120);

/// What to do with a request carrying a key.
pub enum Begin {
    /// The key is ours: run the request, then [`finish`].
    Claimed,
    /// The first result, to be returned as is.
    Replay(HttpResponse),
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
    key: &str,
    token: &str,
    body: &[u8],
    cid: CorrelationId,
) -> Result<Begin, ApiError> {
    let digest = sha(body);
    let store = &state.idempotency;
    if let Some(r) = store.current(key).await.map_err(store_error)? {
        if r.body_sha256.as_deref().is_some_and(|s| s != digest) {
            return Err(reused());
        }
        if r.status != 0 {
            return Ok(Begin::Replay(replay(i32::from(r.status), r.response)));
        }
        let alive = r.owner == Some(*INSTANCE) && r.age < PENDING_DEADLINE;
        if alive {
            return Err(in_progress());
        }
        // Its request died: resolve it from the order store.
        if let Some(old) = r.correlation_id {
            if let Some(result) = recovered_result(state, old).await? {
                tracing::warn!(key, correlation_id = %old, "idempotency key of a dead request replayed from the order store");
                store.resolve_pending(key, result.clone()).await.map_err(store_error)?;
                return Ok(Begin::Replay(replay(200, result)));
            }
        }
        tracing::warn!(key, "idempotency key of a dead request that placed nothing released");
        store.release_pending(key).await.map_err(store_error)?;
    }
    let claimed = store
        .claim(Claim {
            key,
            token,
            correlation_id: cid,
            owner: *INSTANCE,
            body_sha256: &digest,
        })
        .await
        .map_err(store_error)?;
    if claimed {
        Ok(Begin::Claimed)
    } else {
        Err(in_progress())
    }
}

/// Stores the result of a claimed key. A server-side failure (5xx: unavailable, outcome
/// unknown) is not a result to replay for 24 h: the key stays pending but is handed to the order
/// store, so the next retry replays the order if one exists or proceeds if none does.
pub async fn finish(state: &AppState, key: &str, status: u16, body: &serde_json::Value) {
    let res = if status >= 500 {
        state.idempotency.orphan(key).await
    } else {
        state.idempotency.finish(key, status, body.clone()).await
    };
    if let Err(e) = res {
        tracing::error!(key, error = %e, "idempotency result not stored");
    }
}

/// The `Idempotency-Store` header value: where keys are kept.
pub fn store_kind(state: &AppState) -> &'static str {
    state.idempotency.kind()
}
