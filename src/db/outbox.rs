//! The transactional outbox of the event export (`event_outbox`, V060).
//!
//! [`append`] takes any client, so a store can call it inside the transaction that writes the
//! state an event describes: the event exists exactly when that state does. The relay reads rows
//! in `seq` order ([`pending`]) and deletes each once JetStream has acknowledged it
//! ([`delete_relayed`]).

use tokio_postgres::GenericClient;
use uuid::Uuid;

/// One event waiting in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub seq: i64,
    pub event_id: Uuid,
    pub topic: String,
    pub symbol: Option<String>,
    /// The event as JSON text.
    pub payload: String,
}

/// Appends one event; an event id already present is ignored (idempotent retries).
///
/// # Errors
/// The database error.
pub async fn append<C: GenericClient>(
    client: &C,
    event_id: Uuid,
    topic: &str,
    symbol: Option<&str>,
    payload: &serde_json::Value,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO event_outbox (event_id, topic, symbol, payload) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (event_id) DO NOTHING",
            &[&event_id, &topic, &symbol, payload],
        )
        .await?;
    Ok(())
}

/// The oldest `limit` rows, in `seq` order.
///
/// # Errors
/// The database error.
pub async fn pending<C: GenericClient>(client: &C, limit: i64) -> Result<Vec<OutboxRow>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT seq, event_id, topic, symbol, payload::text FROM event_outbox ORDER BY seq LIMIT $1",
            &[&limit],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(OutboxRow {
                seq: r.try_get(0)?,
                event_id: r.try_get(1)?,
                topic: r.try_get(2)?,
                symbol: r.try_get(3)?,
                payload: r.try_get(4)?,
            })
        })
        .collect()
}

/// Deletes the relayed rows; returns how many went.
///
/// # Errors
/// The database error.
pub async fn delete_relayed<C: GenericClient>(client: &C, seqs: &[i64]) -> Result<u64, tokio_postgres::Error> {
    if seqs.is_empty() {
        return Ok(0);
    }
    client
        .execute("DELETE FROM event_outbox WHERE seq = ANY($1)", &[&seqs])
        .await
}

/// Rows waiting.
///
/// # Errors
/// The database error.
pub async fn backlog<C: GenericClient>(client: &C) -> Result<i64, tokio_postgres::Error> {
    client
        .query_one("SELECT count(*) FROM event_outbox", &[])
        .await?
        .try_get(0)
}

/// The topic decisions are exported under.
pub const DECISIONS_TOPIC: &str = "decisions";

/// Appends a decision record (called by the audit store inside the transaction that records it).
///
/// # Errors
/// The database error.
pub async fn append_decision<C: GenericClient>(
    client: &C,
    rec: &triplegain_actors::ports::DecisionRecord,
) -> Result<(), tokio_postgres::Error> {
    let payload = serde_json::json!({
        "correlation_id": rec.correlation_id.0,
        "stage": rec.stage,
        "symbol": rec.symbol,
        "detail": rec.detail,
        "timestamp": rec.timestamp,
    });
    append(client, Uuid::new_v4(), DECISIONS_TOPIC, rec.symbol.as_deref(), &payload).await
}
