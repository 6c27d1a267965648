//! The interface every analysis agent actor answers: the coordinator's schedules send
//! [`RunAnalysis`] per symbol; the agent publishes its typed event on the bus and replies.

use crate::domain::{CorrelationId, Symbol};
use actix::Message;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The four analysis agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentName {
    TechnicalAnalysis,
    RegimeDetection,
    SentimentAnalysis,
    TradingDecision,
}

impl AgentName {
    pub const ALL: [AgentName; 4] = [
        Self::TechnicalAnalysis,
        Self::RegimeDetection,
        Self::SentimentAnalysis,
        Self::TradingDecision,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TechnicalAnalysis => "technical_analysis",
            Self::RegimeDetection => "regime_detection",
            Self::SentimentAnalysis => "sentiment_analysis",
            Self::TradingDecision => "trading_decision",
        }
    }

    /// Accepts the canonical names and the short forms `ta`, `regime`, `sentiment`, `trading`.
    ///
    /// # Errors
    /// A message listing the accepted names.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "technical_analysis" | "ta" => Ok(Self::TechnicalAnalysis),
            "regime_detection" | "regime" => Ok(Self::RegimeDetection),
            "sentiment_analysis" | "sentiment" => Ok(Self::SentimentAnalysis),
            "trading_decision" | "trading" => Ok(Self::TradingDecision),
            _ => Err(format!(
                "unknown agent {s:?}; expected technical_analysis, regime_detection, sentiment_analysis or trading_decision"
            )),
        }
    }
}

impl std::fmt::Display for AgentName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Run one analysis for one symbol now.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<AgentRun, AgentError>")]
pub struct RunAnalysis {
    pub symbol: Symbol,
    pub correlation_id: CorrelationId,
}

/// The outcome of one run (the typed event has been published on the agent's topic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentRun {
    pub agent: AgentName,
    pub symbol: Symbol,
    pub timestamp: DateTime<Utc>,
    pub correlation_id: CorrelationId,
    /// The agent's output as JSON (the same document stored in `agent_outputs`).
    pub output: serde_json::Value,
    /// Whether a model answered (false = rule-based or fallback).
    pub model_used: Option<String>,
    pub llm_failed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AgentError {
    /// Not enough market data yet (warm-up).
    #[error("not enough data for {0}")]
    NoData(String),
    /// A dependency's output is missing (e.g. regime without TA).
    #[error("missing input: {0}")]
    MissingInput(String),
    #[error("agent failed: {0}")]
    Failed(String),
}
