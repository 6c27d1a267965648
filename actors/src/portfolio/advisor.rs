//! A model (DeepSeek in the reference) chooses how a rebalance is executed. It may only pick
//! immediate vs batched execution and market vs limit orders; amounts and sides stay those of
//! the deterministic plan. Any failure keeps the deterministic plan.

use super::actor::{StrategyAdvice, StrategyAdvisor};
use super::rebalance::{ExecutionType, RebalancePlan};
use crate::ports::{ModelClient, ModelRequest};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::Deserialize;
use std::sync::Arc;

const SYSTEM_PROMPT: &str = "You decide how a crypto portfolio rebalance is executed. You may not change \
the trades' symbols, sides or amounts. Answer with JSON only: {\"execution_strategy\": \"immediate\" | \
\"dca_24h\", \"execution_type\": \"market\" | \"limit\", \"reasoning\": string}.";

/// Asks a chat model for the execution strategy.
pub struct ModelStrategyAdvisor {
    pub client: Arc<dyn ModelClient>,
    pub model: String,
    pub timeout_ms: u64,
}

#[derive(Debug, Deserialize)]
struct Answer {
    execution_strategy: String,
    execution_type: Option<ExecutionType>,
    #[serde(default)]
    reasoning: String,
}

/// Parses the model's answer (a JSON object, possibly inside a code fence).
///
/// # Errors
/// No JSON object, unknown strategy or execution type.
pub fn parse_advice(text: &str) -> Result<StrategyAdvice, String> {
    let start = text.find('{').ok_or("no JSON object in the answer")?;
    let end = text.rfind('}').ok_or("no JSON object in the answer")?;
    let json = text.get(start..=end).ok_or("no JSON object in the answer")?;
    let a: Answer = serde_json::from_str(json).map_err(|e| format!("unusable answer: {e}"))?;
    let immediate = match a.execution_strategy.as_str() {
        "immediate" => true,
        "dca_24h" => false,
        other => return Err(format!("unknown execution_strategy {other:?}")),
    };
    Ok(StrategyAdvice {
        immediate,
        execution_type: a.execution_type,
        reasoning: a.reasoning.chars().take(500).collect(),
    })
}

impl StrategyAdvisor for ModelStrategyAdvisor {
    fn advise(&self, plan: &RebalancePlan) -> BoxFuture<'static, Result<StrategyAdvice, String>> {
        let context = serde_json::json!({
            "current_allocation": plan.current_allocation,
            "target_allocation": plan.target_allocation,
            "trades": plan.rebalance_trades,
            "default_strategy": plan.execution_strategy,
        });
        let req = ModelRequest {
            model: self.model.clone(),
            system_prompt: SYSTEM_PROMPT.to_owned(),
            user_prompt: context.to_string(),
            max_tokens: 300,
            temperature: 0.0,
            timeout_ms: self.timeout_ms,
        };
        let fut = self.client.complete(req);
        async move {
            let resp = fut.await.map_err(|e| e.to_string())?;
            parse_advice(&resp.text)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answers_and_refuses_unknown_strategies() {
        let a = parse_advice("```json\n{\"execution_strategy\": \"immediate\", \"execution_type\": \"market\", \"reasoning\": \"thin book\"}\n```").unwrap();
        assert!(a.immediate);
        assert_eq!(a.execution_type, Some(ExecutionType::Market));
        assert_eq!(a.reasoning, "thin book");
        let a = parse_advice("{\"execution_strategy\": \"dca_24h\"}").unwrap();
        assert!(!a.immediate);
        assert_eq!(a.execution_type, None);
        assert!(parse_advice("{\"execution_strategy\": \"defer\"}").is_err());
        assert!(parse_advice("no json").is_err());
        assert!(parse_advice("{\"execution_strategy\": \"immediate\", \"execution_type\": \"stop\"}").is_err());
    }
}
