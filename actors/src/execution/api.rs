//! The execution manager's request/response interface, used by the coordinator, the rebalancer,
//! the HTTP routes and the backtest. The OrderExecutionManager actor implements these handlers.

pub use crate::domain::{OrderView, PositionView};

use crate::domain::{CorrelationId, OrderType, PositionStatus, Symbol};
use crate::risk::{RiskApproved, RiskVerdict, TradeProposal};
use actix::Message;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Execution failures, by what the caller may do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum ExecutionError {
    /// The request itself is wrong (unknown position, below minimums, …): fix and resend.
    #[error("invalid execution request: {0}")]
    Invalid(String),
    /// The exchange refused the order; nothing was placed.
    #[error("order rejected by the exchange: {0}")]
    Rejected(String),
    /// The outcome is unknown; the order is tracked as `error` and reconciled by client id.
    #[error("order outcome unknown (reconciling): {0}")]
    Unknown(String),
    /// A limit (position count, exposure) or a state (halted) forbids it.
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// The execution manager is unavailable.
    #[error("execution unavailable: {0}")]
    Unavailable(String),
}

/// Place a trade the risk engine approved (possibly modified). Only an approval made by the risk
/// rules can be sent ([`RiskApproved`] has no public constructor; see [`crate::risk::approved`]).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<ExecutionResult, ExecutionError>")]
pub struct ExecuteTrade {
    /// The proposal to execute, with the verdict that approved it (kept in the decision trail).
    pub trade: RiskApproved<TradeProposal>,
    /// `limit` by default; `market` is sent as a limit bounded by the slippage limit (0.5 %).
    pub order_type: OrderType,
    /// Limit price; defaults to the proposal's entry price.
    pub limit_price: Option<Decimal>,
    /// Base units; when absent, derived from `proposal.size_usd` and a real price.
    pub volume: Option<Decimal>,
    pub note: Option<String>,
}

impl ExecuteTrade {
    /// A limit order at the approved proposal's entry price, sized from its `size_usd`.
    pub fn limit(trade: RiskApproved<TradeProposal>) -> Self {
        Self {
            trade,
            order_type: OrderType::Limit,
            limit_price: None,
            volume: None,
            note: None,
        }
    }

    /// The approved proposal.
    pub fn proposal(&self) -> &TradeProposal {
        self.trade.value()
    }

    pub fn verdict(&self) -> &RiskVerdict {
        self.trade.verdict()
    }
}

/// What an execution request produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExecutionResult {
    pub correlation_id: CorrelationId,
    pub orders: Vec<OrderView>,
    pub position_id: Option<Uuid>,
}

/// Close (part of) a position at market through a reduce-only order; cancels its stop and take-profit.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<ExecutionResult, ExecutionError>")]
pub struct ClosePosition {
    pub position_id: Uuid,
    /// Fraction 0 < f ≤ 1 of the position to close; 1 = all.
    pub fraction: Decimal,
    pub reason: String,
    pub correlation_id: CorrelationId,
}

/// Close every open position (emergency `halt_all`, drawdown breaker).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Vec<ExecutionResult>, ExecutionError>")]
pub struct CloseAllPositions {
    pub reason: String,
}

/// Move a position's stop-loss / take-profit; the exchange orders are replaced.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<PositionView, ExecutionError>")]
pub struct ModifyPosition {
    pub position_id: Uuid,
    pub stop_loss: Option<Decimal>,
    pub take_profit: Option<Decimal>,
}

/// Cancel an open order by our id.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<OrderView, ExecutionError>")]
pub struct CancelOrder {
    pub order_id: Uuid,
    pub reason: String,
}

/// List orders (open only when `open_only`).
#[derive(Debug, Clone, Default, Message)]
#[rtype(result = "Result<Vec<OrderView>, ExecutionError>")]
pub struct GetOrders {
    pub symbol: Option<Symbol>,
    pub open_only: bool,
    pub correlation_id: Option<CorrelationId>,
}

/// List positions.
#[derive(Debug, Clone, Default, Message)]
#[rtype(result = "Result<Vec<PositionView>, ExecutionError>")]
pub struct GetPositions {
    pub symbol: Option<Symbol>,
    /// `None` = all.
    pub status: Option<PositionStatus>,
}
