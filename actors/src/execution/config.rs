//! The execution manager's settings (reference §6.1): order defaults, position limits, tracking
//! intervals, contingent orders and the trailing stop. Read by the I/O-free core and by the actor
//! shell alike.

use crate::domain::OrderType;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Trailing stop (reference §6.1: disabled, activation 1.0 %, distance 1.5 %).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrailingStopConfig {
    pub enabled: bool,
    pub activation_pct: Decimal,
    pub distance_pct: Decimal,
}

impl Default for TrailingStopConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            activation_pct: Decimal::ONE,
            distance_pct: Decimal::new(15, 1),
        }
    }
}

/// Order defaults, position limits, tracking intervals and contingent orders (reference §6.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutionConfig {
    pub default_order_type: OrderType,
    /// Bound of a market order, sent as a limit this far through the reference price.
    pub market_order_slippage_pct: Decimal,
    /// Retries of a placement the exchange answered as retryable (nothing placed).
    pub max_retry_count: u32,
    pub retry_delay_ms: u64,
    pub max_positions_per_symbol: usize,
    pub max_positions_total: usize,
    /// Order status poll.
    pub poll_interval_ms: u64,
    /// Position snapshots, trailing stop and portfolio valuation.
    pub snapshot_interval_secs: u64,
    pub auto_stop_loss: bool,
    pub auto_take_profit: bool,
    /// `stop-loss` or `stop-loss-limit`.
    pub stop_loss_type: OrderType,
    /// `limit` or `take-profit`.
    pub take_profit_type: OrderType,
    /// First back-off of a failed protective placement; doubles up to `protection_retry_max_ms`.
    pub protection_retry_ms: u64,
    pub protection_retry_max_ms: u64,
    /// Searches in which an order of unknown outcome must be missing (after the visibility window)
    /// before it counts as never placed.
    pub reconcile_attempts: u32,
    /// How long an order may stay invisible on the exchange after it was sent (Kraken: up to about
    /// a minute under load). An order of unknown outcome is never given up before.
    pub visibility_window_secs: u64,
    /// Shortest time between two searches by client id (one OpenOrders and one ClosedOrders call
    /// for all orders of unknown outcome): keeps the searches within the REST budget.
    pub search_interval_ms: u64,
    /// A position without a working stop on the exchange for longer raises a critical alert and
    /// arms the software backup stop.
    pub max_unprotected_secs: u64,
    /// How often (wall clock) the protection watchdog runs; it also runs on every candle.
    pub protection_check_interval_ms: u64,
    /// How often (wall clock) open orders and positions are synchronised with the exchange.
    pub sync_interval_secs: u64,
    /// Whether the paper exchange's account is saved to the state store (a backtest's is not:
    /// it ends with the run).
    pub persist_paper: bool,
    pub trailing_stop: TrailingStopConfig,
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        Self {
            default_order_type: OrderType::Limit,
            market_order_slippage_pct: Decimal::new(5, 1),
            max_retry_count: 3,
            retry_delay_ms: 5000,
            max_positions_per_symbol: 2,
            max_positions_total: 6,
            poll_interval_ms: 5000,
            snapshot_interval_secs: 60,
            auto_stop_loss: true,
            auto_take_profit: true,
            stop_loss_type: OrderType::StopLoss,
            take_profit_type: OrderType::Limit,
            protection_retry_ms: 1000,
            protection_retry_max_ms: 60_000,
            reconcile_attempts: 3,
            visibility_window_secs: 90,
            search_interval_ms: 10_000,
            max_unprotected_secs: 10,
            protection_check_interval_ms: 1000,
            sync_interval_secs: 30,
            persist_paper: true,
            trailing_stop: TrailingStopConfig::default(),
        }
    }
}
