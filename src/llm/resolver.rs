//! Conflict resolution by the configured model chain (reference §5.4, corrected): DeepSeek, then
//! Claude, all within one total deadline. An answer that does not parse or is out of range counts
//! as that model failing; when every model fails the coordinator uses its deterministic rules.

use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use triplegain_actors::coordinator::resolution::{parse_resolution, user_prompt, SYSTEM_PROMPT};
use triplegain_actors::coordinator::{ConflictRequest, ConflictResolution, ConflictResolver, ResolutionModel};
use triplegain_actors::ports::{ModelClient, ModelRequest};

/// One model of the chain.
#[derive(Clone)]
pub struct ResolverLink {
    pub client: Arc<dyn ModelClient>,
    pub model: String,
    pub timeout_ms: u64,
}

/// Asks each model in turn until one gives a valid answer, within `total` overall.
#[derive(Clone)]
pub struct ModelConflictResolver {
    links: Vec<ResolverLink>,
    total: Duration,
    max_tokens: u32,
}

impl ModelConflictResolver {
    pub fn new(links: Vec<ResolverLink>, total: Duration, max_tokens: u32) -> Self {
        Self {
            links,
            total,
            max_tokens,
        }
    }

    /// The chain of `models` whose provider has a client; `None` when none has.
    pub fn from_models(
        models: &[ResolutionModel],
        clients: &std::collections::BTreeMap<String, (Arc<dyn ModelClient>, u64)>,
        total: Duration,
        max_tokens: u32,
    ) -> Option<Self> {
        let links: Vec<ResolverLink> = models
            .iter()
            .filter_map(|m| {
                let (client, _) = clients.get(&m.provider)?;
                Some(ResolverLink {
                    client: Arc::clone(client),
                    model: m.model.clone(),
                    timeout_ms: m.timeout_ms,
                })
            })
            .collect();
        (!links.is_empty()).then(|| Self::new(links, total, max_tokens))
    }

    pub fn len(&self) -> usize {
        self.links.len()
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}

impl ConflictResolver for ModelConflictResolver {
    fn resolve(&self, req: ConflictRequest) -> BoxFuture<'static, Result<ConflictResolution, String>> {
        let links = self.links.clone();
        let deadline = Instant::now() + self.total;
        let request = ModelRequest {
            model: String::new(),
            system_prompt: SYSTEM_PROMPT.to_owned(),
            user_prompt: user_prompt(&req),
            max_tokens: self.max_tokens,
            temperature: 0.1,
            timeout_ms: 0,
        };
        let cid = req.signal.meta.correlation_id;
        Box::pin(async move {
            let mut failures: Vec<String> = Vec::new();
            for link in links {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    failures.push(format!("{}: no time left", link.model));
                    break;
                }
                let limit = left.min(Duration::from_millis(link.timeout_ms));
                let mut r = request.clone();
                r.model.clone_from(&link.model);
                r.timeout_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
                let name = format!("{}/{}", link.client.provider(), link.model);
                let outcome = match tokio::time::timeout(limit, link.client.complete(r)).await {
                    Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
                    Ok(Err(e)) => Err(e.to_string()),
                    Ok(Ok(resp)) => parse_resolution(&resp.text, &name).map_err(|e| format!("invalid answer: {e}")),
                };
                match outcome {
                    Ok(resolution) => {
                        tracing::info!(%cid, model = %name, action = ?resolution.action, "conflict resolved by model");
                        return Ok(resolution);
                    }
                    Err(e) => {
                        tracing::warn!(%cid, model = %name, error = %e, "conflict model failed");
                        failures.push(format!("{name}: {e}"));
                    }
                }
            }
            Err(failures.join("; "))
        })
    }
}
