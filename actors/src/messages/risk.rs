use super::{bus_event, EventMeta};
use crate::domain::{Severity, Symbol};
use serde::{Deserialize, Serialize};

/// Kinds of risk alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertType {
    CircuitBreaker,
    TradeRejected,
    StopLossMissing,
    ActorEscalated,
    Reconcile,
    ExecutionError,
}

/// A risk notification (topic `risk_alerts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskAlert {
    pub meta: EventMeta,
    pub alert_type: AlertType,
    pub severity: Severity,
    pub message: String,
    /// e.g. `halt_trading`, `pause_trading`, `reduce_positions`.
    pub action_required: Option<String>,
    /// Which breaker tripped (`daily_loss`, `weekly_loss`, `max_drawdown`, …).
    pub breach: Option<String>,
    pub symbol: Option<Symbol>,
}
bus_event!(RiskAlert, "risk_alerts", |e| e
    .symbol
    .as_ref()
    .map_or_else(|| "*".to_owned(), ToString::to_string));
