//! Live mode on Kraken: one process per API key (a PostgreSQL advisory lock), the WebSocket
//! session wired to the execution manager, and the safe shutdown (stops confirmed on the
//! exchange, then the dead man's switch disarmed).

use crate::kraken::{DeadMansSwitchHandle, KrakenExchange, KrakenWs};
use deadpool_postgres::Pool;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use triplegain_actors::domain::OrderStatus;
use triplegain_actors::ports::{Exchange, OrderRef, OrderStore};

/// Name of the advisory lock, as printed when a second process is refused.
pub const KEY_LOCK_NAME: &str = "triplegain.kraken_api_key";

/// A second process on the same Kraken API key was refused (exit 2).
#[derive(Debug, thiserror::Error)]
#[error(
    "another TripleGain process holds the PostgreSQL advisory lock {KEY_LOCK_NAME} ({key}) for this Kraken API key; \
     one process per key (Kraken's nonces, counters and the dead man's switch are per key)"
)]
pub struct KeyLockHeld {
    pub key: i64,
}

/// The advisory-lock key of an API key: the first 8 bytes of SHA-256 over a fixed prefix and the
/// key (the key itself never reaches the database).
pub fn key_lock_id(api_key: &str) -> i64 {
    let d = Sha256::digest(format!("{KEY_LOCK_NAME}:{api_key}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(d.get(..8).unwrap_or(&[0u8; 8]));
    i64::from_be_bytes(b)
}

/// Holds the session-level advisory lock on a connection taken out of the pool for good; the
/// lock goes with the connection when the process ends (or this is dropped).
pub struct KeyLock {
    pub key: i64,
    _client: deadpool_postgres::ClientWrapper,
}

impl KeyLock {
    /// Unlocks explicitly (the next process may take the key at once) and closes the connection.
    pub async fn release(self) {
        if let Err(e) = self
            ._client
            .execute("SELECT pg_advisory_unlock($1)", &[&self.key])
            .await
        {
            tracing::warn!(error = %e, "API key lock not released explicitly; it goes with the connection");
        }
    }
}

impl std::fmt::Debug for KeyLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLock").field("key", &self.key).finish()
    }
}

/// Takes the per-key lock, or fails with [`KeyLockHeld`] when another process has it.
///
/// # Errors
/// [`KeyLockHeld`] (exit 2 in `serve`), or the database error.
pub async fn take_key_lock(pool: &Pool, api_key: &str) -> anyhow::Result<KeyLock> {
    let key = key_lock_id(api_key);
    let obj = pool
        .get()
        .await
        .map_err(|e| anyhow::anyhow!("database unavailable for the API key lock: {e}"))?;
    let client = deadpool_postgres::Object::take(obj);
    let got: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await
        .map_err(|e| anyhow::anyhow!("taking the advisory lock {KEY_LOCK_NAME}: {e}"))?
        .get(0);
    if !got {
        return Err(KeyLockHeld { key }.into());
    }
    tracing::info!(
        lock = KEY_LOCK_NAME,
        key,
        "Kraken API key lock taken: this process owns the key"
    );
    Ok(KeyLock { key, _client: client })
}

/// What live mode keeps beyond the exchange port.
pub struct LiveKraken {
    /// Kraken over REST (the shutdown checks the stops there, not in the socket's cache).
    pub rest: KrakenExchange,
    pub ws: Option<KrakenWs>,
    pub dead_mans_switch: Mutex<Option<DeadMansSwitchHandle>>,
    pub key_lock: Mutex<Option<KeyLock>>,
    /// Longest the shutdown waits for every stop to be confirmed open on the exchange.
    pub confirm_deadline: Duration,
}

impl LiveKraken {
    /// After the execution manager drained: confirm every stop-loss (and take-profit) we track as
    /// working is open on Kraken, then disarm the dead man's switch so Kraken does not cancel
    /// them when its timeout runs out, then close the socket and release the key lock.
    pub async fn shutdown(&self, orders: Arc<dyn OrderStore>, exchange: Arc<dyn Exchange>) {
        let confirmed = self.confirm_stops(orders).await;
        let handle = self.dead_mans_switch.lock().take();
        if let Some(handle) = handle {
            // Stop refreshing first; then disarm (timeout 0), retried: an armed switch cancels
            // every stop a minute after we are gone.
            let _ = handle.stop(false).await;
            let mut disarmed = false;
            for attempt in 1..=5u32 {
                match exchange.cancel_all_after(0).await {
                    Ok(()) => {
                        disarmed = true;
                        break;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, attempt, "dead man's switch not disarmed yet; retrying");
                        tokio::time::sleep(Duration::from_millis(250u64 << attempt.min(4))).await;
                    }
                }
            }
            if disarmed {
                tracing::info!(
                    stops_confirmed = confirmed,
                    "dead man's switch disarmed; resting orders stay on Kraken"
                );
            } else {
                tracing::error!("dead man's switch could NOT be disarmed: Kraken cancels every order when it fires");
            }
        }
        if let Some(ws) = &self.ws {
            ws.stop();
        }
        let lock = self.key_lock.lock().take();
        if let Some(lock) = lock {
            lock.release().await;
        }
    }

    /// Whether every protective order the store holds as working is open on Kraken (REST).
    async fn confirm_stops(&self, orders: Arc<dyn OrderStore>) -> bool {
        let deadline = tokio::time::Instant::now() + self.confirm_deadline;
        loop {
            let active = match orders.load_active_orders().await {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(error = %e, "shutdown: protective orders not loaded");
                    return false;
                }
            };
            let stops: Vec<(String, Option<String>)> = active
                .iter()
                .filter(|o| o.view.purpose.is_protective())
                .map(|o| (o.view.client_order_id.to_string(), o.view.exchange_order_id.clone()))
                .collect();
            if stops.is_empty() {
                return true;
            }
            let refs: Vec<OrderRef> = stops
                .iter()
                .filter_map(|(_, x)| x.clone().filter(|x| !x.is_empty()).map(OrderRef::Exchange))
                .collect();
            let missing: Vec<String> = if refs.len() < stops.len() {
                stops
                    .iter()
                    .filter(|(_, x)| x.as_deref().is_none_or(str::is_empty))
                    .map(|(c, _)| c.clone())
                    .collect()
            } else {
                match self.rest.query_orders(refs).await {
                    Ok(found) => stops
                        .iter()
                        .filter(|(_, x)| {
                            !found.iter().any(|f| {
                                Some(&f.exchange_order_id) == x.as_ref()
                                    && matches!(
                                        f.status,
                                        OrderStatus::Open | OrderStatus::PartiallyFilled | OrderStatus::Pending
                                    )
                            })
                        })
                        .map(|(c, _)| c.clone())
                        .collect(),
                    Err(e) => vec![format!("query failed: {e}")],
                }
            };
            if missing.is_empty() {
                tracing::info!(stops = stops.len(), "shutdown: every stop confirmed open on Kraken");
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::error!(?missing, "shutdown: protective orders not confirmed on Kraken");
                return false;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Wakes the execution manager (`PollNow`) on every execution update of the socket: once at
/// once and once shortly after, so an update that lands during a poll in flight is not missed.
pub fn wake_on_updates(
    ws: &KrakenWs,
    manager: actix::Addr<triplegain_actors::execution::manager::OrderExecutionManager>,
) {
    let updates = ws.updates();
    actix_web::rt::spawn(async move {
        loop {
            updates.notified().await;
            if !manager.connected() {
                // Restarted actors keep their address; a closed one ends the waker.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            manager.do_send(triplegain_actors::execution::manager::PollNow);
            tokio::time::sleep(Duration::from_millis(150)).await;
            manager.do_send(triplegain_actors::execution::manager::PollNow);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_ids_depend_on_the_key_only() {
        assert_eq!(key_lock_id("k1"), key_lock_id("k1"));
        assert_ne!(key_lock_id("k1"), key_lock_id("k2"));
    }
}
