use deadpool_postgres::Pool;
use futures::FutureExt;
use triplegain_actors::domain::CorrelationId;
use triplegain_actors::ports::{
    AgentOutputRecord, AuditStore, DecisionRecord, ModelComparisonRecord, StateStore, StoreError, StoreFuture,
    StoreHealth,
};

/// PostgreSQL implementation of the store ports.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// Also append decisions to `event_outbox` in the same transaction (event export on).
    outbox: bool,
}

impl PgStore {
    pub fn new(pool: Pool) -> Self {
        Self { pool, outbox: false }
    }

    /// As [`PgStore::new`], appending audit events to the export outbox in the transaction that
    /// writes them (see `db::outbox`).
    pub fn with_outbox(pool: Pool) -> Self {
        Self { pool, outbox: true }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn query(e: impl std::fmt::Display) -> StoreError {
    StoreError::Query(e.to_string())
}

/// Risk state lives in `risk_state`; every other named state document in `coordinator_state`.
fn state_table(key: &str) -> &'static str {
    if key.starts_with("risk") {
        "risk_state"
    } else {
        "coordinator_state"
    }
}

impl StateStore for PgStore {
    fn load_state(&self, key: &str) -> StoreFuture<Option<serde_json::Value>> {
        let pool = self.pool.clone();
        let key = key.to_owned();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            let sql = format!("SELECT state_data FROM {} WHERE key = $1", state_table(&key));
            let row = client.query_opt(&sql, &[&key]).await.map_err(query)?;
            row.map(|r| r.try_get::<_, serde_json::Value>(0).map_err(query))
                .transpose()
        }
        .boxed()
    }

    fn save_state(&self, key: &str, state: serde_json::Value) -> StoreFuture<()> {
        let pool = self.pool.clone();
        let key = key.to_owned();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            let sql = format!(
                "INSERT INTO {} (key, state_data, updated_at) VALUES ($1, $2, now()) \
                 ON CONFLICT (key) DO UPDATE SET state_data = EXCLUDED.state_data, updated_at = now()",
                state_table(&key)
            );
            client.execute(&sql, &[&key, &state]).await.map_err(query)?;
            Ok(())
        }
        .boxed()
    }
}

impl AuditStore for PgStore {
    fn record_agent_output(&self, rec: AgentOutputRecord) -> StoreFuture<()> {
        let pool = self.pool.clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            client
                .execute(
                    "INSERT INTO agent_outputs (agent, symbol, correlation_id, model, output, at) VALUES ($1, $2, $3, $4, $5, $6)",
                    &[&rec.agent, &rec.symbol, &rec.correlation_id.0, &rec.model, &rec.output, &rec.timestamp],
                )
                .await
                .map_err(query)?;
            Ok(())
        }
        .boxed()
    }

    fn latest_agent_output(&self, agent: &str, symbol: &str) -> StoreFuture<Option<AgentOutputRecord>> {
        let pool = self.pool.clone();
        let (agent, symbol) = (agent.to_owned(), symbol.to_owned());
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            let row = client
                .query_opt(
                    "SELECT agent, symbol, correlation_id, model, output, at FROM agent_outputs \
                     WHERE agent = $1 AND symbol = $2 ORDER BY at DESC, id DESC LIMIT 1",
                    &[&agent, &symbol],
                )
                .await
                .map_err(query)?;
            row.map(|r| -> Result<AgentOutputRecord, StoreError> {
                Ok(AgentOutputRecord {
                    agent: r.try_get(0).map_err(query)?,
                    symbol: r.try_get(1).map_err(query)?,
                    correlation_id: CorrelationId(
                        r.try_get::<_, Option<uuid::Uuid>>(2)
                            .map_err(query)?
                            .unwrap_or_default(),
                    ),
                    model: r.try_get(3).map_err(query)?,
                    output: r.try_get(4).map_err(query)?,
                    timestamp: r.try_get(5).map_err(query)?,
                })
            })
            .transpose()
        }
        .boxed()
    }

    fn record_decision(&self, rec: DecisionRecord) -> StoreFuture<()> {
        let pool = self.pool.clone();
        let outbox = self.outbox;
        async move {
            let mut client = pool.get().await.map_err(unavailable)?;
            let client = client.transaction().await.map_err(query)?;
            client
                .execute(
                    "INSERT INTO decisions (correlation_id, stage, symbol, detail, at) VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &rec.correlation_id.0,
                        &rec.stage,
                        &rec.symbol,
                        &rec.detail,
                        &rec.timestamp,
                    ],
                )
                .await
                .map_err(query)?;
            if outbox {
                super::outbox::append_decision(&*client, &rec).await.map_err(query)?;
            }
            client.commit().await.map_err(query)?;
            Ok(())
        }
        .boxed()
    }

    fn recent_decisions(&self, symbol: Option<String>, limit: usize) -> StoreFuture<Vec<DecisionRecord>> {
        let pool = self.pool.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            let rows = client
                .query(
                    "SELECT correlation_id, stage, symbol, detail, at FROM decisions \
                     WHERE ($1::TEXT IS NULL OR symbol = $1) ORDER BY id DESC LIMIT $2",
                    &[&symbol, &limit],
                )
                .await
                .map_err(query)?;
            rows.into_iter()
                .map(|r| {
                    Ok(DecisionRecord {
                        correlation_id: CorrelationId(r.try_get(0).map_err(query)?),
                        stage: r.try_get(1).map_err(query)?,
                        symbol: r.try_get(2).map_err(query)?,
                        detail: r.try_get(3).map_err(query)?,
                        timestamp: r.try_get(4).map_err(query)?,
                    })
                })
                .collect()
        }
        .boxed()
    }

    fn decision_chain(&self, correlation_id: CorrelationId) -> StoreFuture<Vec<DecisionRecord>> {
        let pool = self.pool.clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            let rows = client
                .query(
                    "SELECT stage, symbol, detail, at FROM decisions WHERE correlation_id = $1 ORDER BY id",
                    &[&correlation_id.0],
                )
                .await
                .map_err(query)?;
            rows.into_iter()
                .map(|r| {
                    Ok(DecisionRecord {
                        correlation_id,
                        stage: r.try_get(0).map_err(query)?,
                        symbol: r.try_get(1).map_err(query)?,
                        detail: r.try_get(2).map_err(query)?,
                        timestamp: r.try_get(3).map_err(query)?,
                    })
                })
                .collect()
        }
        .boxed()
    }

    fn record_model_comparison(&self, rec: ModelComparisonRecord) -> StoreFuture<()> {
        let pool = self.pool.clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            let latency = i64::try_from(rec.latency_ms).unwrap_or(i64::MAX);
            let input_tokens = i32::try_from(rec.input_tokens).unwrap_or(i32::MAX);
            let output_tokens = i32::try_from(rec.output_tokens).unwrap_or(i32::MAX);
            client
                .execute(
                    "INSERT INTO model_comparisons (correlation_id, symbol, agent, model, provider, prompt_hash, action, \
                     confidence, response, latency_ms, input_tokens, output_tokens, cost_usd, error, at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                    &[
                        &rec.correlation_id.0,
                        &rec.symbol,
                        &rec.agent,
                        &rec.model,
                        &rec.provider,
                        &rec.prompt_hash,
                        &rec.action,
                        &rec.confidence,
                        &rec.response,
                        &latency,
                        &input_tokens,
                        &output_tokens,
                        &rec.cost_usd,
                        &rec.error,
                        &rec.timestamp,
                    ],
                )
                .await
                .map_err(query)?;
            Ok(())
        }
        .boxed()
    }

    fn model_comparisons(&self, agent: &str) -> StoreFuture<Vec<ModelComparisonRecord>> {
        let pool = self.pool.clone();
        let agent = agent.to_owned();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            let rows = client
                .query(
                    "SELECT correlation_id, symbol, agent, model, provider, prompt_hash, action, confidence, response, \
                     latency_ms, input_tokens, output_tokens, cost_usd, error, at \
                     FROM model_comparisons WHERE agent = $1 ORDER BY id",
                    &[&agent],
                )
                .await
                .map_err(query)?;
            rows.into_iter()
                .map(|r| {
                    let latency: Option<i64> = r.try_get(9).map_err(query)?;
                    let input_tokens: Option<i32> = r.try_get(10).map_err(query)?;
                    let output_tokens: Option<i32> = r.try_get(11).map_err(query)?;
                    Ok(ModelComparisonRecord {
                        correlation_id: CorrelationId(
                            r.try_get::<_, Option<uuid::Uuid>>(0)
                                .map_err(query)?
                                .unwrap_or_default(),
                        ),
                        symbol: r.try_get(1).map_err(query)?,
                        agent: r.try_get(2).map_err(query)?,
                        model: r.try_get(3).map_err(query)?,
                        provider: r.try_get(4).map_err(query)?,
                        prompt_hash: r.try_get(5).map_err(query)?,
                        action: r.try_get(6).map_err(query)?,
                        confidence: r.try_get(7).map_err(query)?,
                        response: r.try_get(8).map_err(query)?,
                        latency_ms: latency.and_then(|v| u64::try_from(v).ok()).unwrap_or(0),
                        input_tokens: input_tokens.and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
                        output_tokens: output_tokens.and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
                        cost_usd: r.try_get(12).map_err(query)?,
                        error: r.try_get(13).map_err(query)?,
                        timestamp: r.try_get(14).map_err(query)?,
                    })
                })
                .collect()
        }
        .boxed()
    }
}

impl StoreHealth for PgStore {
    fn ping(&self) -> StoreFuture<()> {
        let pool = self.pool.clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            client.simple_query("SELECT 1").await.map_err(unavailable)?;
            Ok(())
        }
        .boxed()
    }

    fn durable(&self) -> bool {
        true
    }
}
