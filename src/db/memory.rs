use futures::FutureExt;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use triplegain_actors::domain::CorrelationId;
use triplegain_actors::ports::{
    AgentOutputRecord, AuditStore, DecisionRecord, ModelComparisonRecord, StateStore, StoreFuture, StoreHealth,
};

/// Decision records and model answers kept by default; older ones are dropped first.
const DEFAULT_MAX_RECORDS: usize = 100_000;

#[derive(Default)]
struct Inner {
    state: HashMap<String, serde_json::Value>,
    latest_outputs: HashMap<(String, String), AgentOutputRecord>,
    decisions: std::collections::VecDeque<DecisionRecord>,
    comparisons: std::collections::VecDeque<ModelComparisonRecord>,
}

/// In-memory implementation of the store ports. Nothing survives a restart.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    /// Most decision records, and most model answers, kept.
    max_records: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_max_records(DEFAULT_MAX_RECORDS)
    }
}

impl MemoryStore {
    /// A store keeping at most `max` decision records and `max` model answers (at least one).
    pub fn with_max_records(max: usize) -> Self {
        Self {
            inner: Arc::default(),
            max_records: max.max(1),
        }
    }
}

impl StateStore for MemoryStore {
    fn load_state(&self, key: &str) -> StoreFuture<Option<serde_json::Value>> {
        let v = self.inner.lock().state.get(key).cloned();
        async move { Ok(v) }.boxed()
    }

    fn save_state(&self, key: &str, state: serde_json::Value) -> StoreFuture<()> {
        self.inner.lock().state.insert(key.to_owned(), state);
        async { Ok(()) }.boxed()
    }
}

impl AuditStore for MemoryStore {
    fn record_agent_output(&self, rec: AgentOutputRecord) -> StoreFuture<()> {
        self.inner
            .lock()
            .latest_outputs
            .insert((rec.agent.clone(), rec.symbol.clone()), rec);
        async { Ok(()) }.boxed()
    }

    fn latest_agent_output(&self, agent: &str, symbol: &str) -> StoreFuture<Option<AgentOutputRecord>> {
        let v = self
            .inner
            .lock()
            .latest_outputs
            .get(&(agent.to_owned(), symbol.to_owned()))
            .cloned();
        async move { Ok(v) }.boxed()
    }

    fn record_decision(&self, rec: DecisionRecord) -> StoreFuture<()> {
        let mut inner = self.inner.lock();
        while inner.decisions.len() >= self.max_records {
            inner.decisions.pop_front();
        }
        inner.decisions.push_back(rec);
        async { Ok(()) }.boxed()
    }

    fn decision_chain(&self, correlation_id: CorrelationId) -> StoreFuture<Vec<DecisionRecord>> {
        let v: Vec<DecisionRecord> = self
            .inner
            .lock()
            .decisions
            .iter()
            .filter(|d| d.correlation_id == correlation_id)
            .cloned()
            .collect();
        async move { Ok(v) }.boxed()
    }

    fn recent_decisions(&self, symbol: Option<String>, limit: usize) -> StoreFuture<Vec<DecisionRecord>> {
        let v: Vec<DecisionRecord> = self
            .inner
            .lock()
            .decisions
            .iter()
            .rev()
            .filter(|d| symbol.is_none() || d.symbol == symbol)
            .take(limit)
            .cloned()
            .collect();
        async move { Ok(v) }.boxed()
    }

    fn record_model_comparison(&self, rec: ModelComparisonRecord) -> StoreFuture<()> {
        let mut inner = self.inner.lock();
        while inner.comparisons.len() >= self.max_records {
            inner.comparisons.pop_front();
        }
        inner.comparisons.push_back(rec);
        async { Ok(()) }.boxed()
    }

    fn model_comparisons(&self, agent: &str) -> StoreFuture<Vec<ModelComparisonRecord>> {
        let v: Vec<ModelComparisonRecord> = self
            .inner
            .lock()
            .comparisons
            .iter()
            .filter(|c| c.agent == agent)
            .cloned()
            .collect();
        async move { Ok(v) }.boxed()
    }
}

impl StoreHealth for MemoryStore {
    fn ping(&self) -> StoreFuture<()> {
        async { Ok(()) }.boxed()
    }

    fn durable(&self) -> bool {
        false
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use futures::executor::block_on;

    #[test]
    fn keeps_the_newest_decisions_up_to_its_limit() {
        let store = MemoryStore::with_max_records(3);
        let cid = CorrelationId::new();
        for i in 0..5 {
            block_on(store.record_decision(DecisionRecord {
                correlation_id: cid,
                timestamp: chrono::DateTime::from_timestamp(i, 0).unwrap(),
                stage: format!("stage-{i}"),
                symbol: None,
                detail: serde_json::Value::Null,
            }))
            .unwrap();
        }
        let kept: Vec<String> = block_on(store.decision_chain(cid))
            .unwrap()
            .into_iter()
            .map(|d| d.stage)
            .collect();
        assert_eq!(kept, ["stage-2", "stage-3", "stage-4"]);
    }
}
