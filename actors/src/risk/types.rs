//! Risk vocabulary: proposals, verdicts, limits and the risk state the engine owns.

use crate::domain::{CorrelationId, EntryStrictness, Regime, Side, Symbol};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use uuid::Uuid;

/// Who asks for the trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProposalSource {
    Agent,
    Manual,
    /// A spot trade of the rebalancer: it changes holdings (balances), never opens a position.
    Rebalance,
    /// A hodl bag purchase: a spot buy into the bag, never a position.
    Hodl,
}

impl ProposalSource {
    /// Rebalance and hodl trades move holdings between assets: the execution manager places
    /// them as plain spot orders, with no position, no stop and no position-limit count.
    pub fn is_holding(self) -> bool {
        matches!(self, Self::Rebalance | Self::Hodl)
    }
}

/// A trade someone wants to make. `size_usd` is the capital committed; the notional
/// (what exposure, risk and correlation count) is `size_usd × leverage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TradeProposal {
    pub symbol: Symbol,
    pub side: Side,
    pub size_usd: Decimal,
    pub entry_price: Decimal,
    pub stop_loss: Option<Decimal>,
    pub take_profit: Option<Decimal>,
    pub leverage: u32,
    /// 0..1
    pub confidence: f64,
    pub regime: Regime,
    pub source: ProposalSource,
    pub correlation_id: CorrelationId,
    /// Closes or shrinks an existing position only; it never adds exposure.
    #[serde(default)]
    pub reduce_only: bool,
}

impl TradeProposal {
    /// `size_usd × leverage`.
    pub fn notional_usd(&self) -> Decimal {
        self.size_usd * Decimal::from(self.leverage)
    }

    /// Stop distance in percent of the entry price, when a stop is set.
    pub fn stop_distance_pct(&self) -> Option<Decimal> {
        let stop = self.stop_loss?;
        if self.entry_price <= Decimal::ZERO {
            return None;
        }
        Some((self.entry_price - stop).abs() / self.entry_price * Decimal::ONE_HUNDRED)
    }
}

/// Outcome of a validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerdictStatus {
    Approved,
    Modified,
    Rejected,
    Halted,
}

impl VerdictStatus {
    /// Approved or modified: the (possibly modified) proposal may be executed.
    pub fn is_approved(self) -> bool {
        matches!(self, Self::Approved | Self::Modified)
    }
}

/// Why a proposal was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RejectionCode {
    TradingHalted,
    CooldownActive,
    InvalidProposal,
    EquityUnavailable,
    StopLossRequired,
    StopLossTooTight,
    StopLossTooWide,
    RewardRiskTooLow,
    ConfidenceTooLow,
    PositionTooLarge,
    PositionTooSmall,
    RiskPerTradeExceeded,
    LeverageExceeded,
    ExposureExceeded,
    CorrelationExceeded,
    InsufficientMargin,
    /// No market price, or one older than `max_price_age_secs`: nothing is guessed.
    MarketPriceUnavailable,
    /// The limit price is more than `max_limit_deviation_pct` through the market.
    LimitPriceDeviation,
}

impl RejectionCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TradingHalted => "trading_halted",
            Self::CooldownActive => "cooldown_active",
            Self::InvalidProposal => "invalid_proposal",
            Self::EquityUnavailable => "equity_unavailable",
            Self::StopLossRequired => "stop_loss_required",
            Self::StopLossTooTight => "stop_loss_too_tight",
            Self::StopLossTooWide => "stop_loss_too_wide",
            Self::RewardRiskTooLow => "reward_risk_too_low",
            Self::ConfidenceTooLow => "confidence_too_low",
            Self::PositionTooLarge => "position_too_large",
            Self::PositionTooSmall => "position_too_small",
            Self::RiskPerTradeExceeded => "risk_per_trade_exceeded",
            Self::LeverageExceeded => "leverage_exceeded",
            Self::ExposureExceeded => "exposure_exceeded",
            Self::CorrelationExceeded => "correlation_exceeded",
            Self::InsufficientMargin => "insufficient_margin",
            Self::MarketPriceUnavailable => "market_price_unavailable",
            Self::LimitPriceDeviation => "limit_price_deviation",
        }
    }
}

impl std::fmt::Display for RejectionCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Figures computed on the final proposal, for the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerdictMetrics {
    /// Loss at the stop as percent of equity.
    pub risk_per_trade_pct: Option<Decimal>,
    /// Total exposure after the trade, percent of equity.
    pub exposure_after_pct: Option<Decimal>,
    /// Correlation-weighted exposure after the trade, percent of equity.
    pub correlated_exposure_pct: Option<Decimal>,
    pub margin_required_usd: Option<Decimal>,
    pub required_confidence: Option<f64>,
    pub leverage_cap: Option<u32>,
    /// The engine's own market price the proposal was valued at (never the proposer's).
    #[serde(default)]
    pub market_price: Option<Decimal>,
    /// When that price was observed.
    #[serde(default)]
    pub market_price_at: Option<DateTime<Utc>>,
}

/// The answer to a proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RiskVerdict {
    pub status: VerdictStatus,
    /// The codes that refused the proposal (empty unless rejected or halted).
    pub rejections: Vec<RejectionCode>,
    /// Human-readable detail of the rejection.
    pub reason: Option<String>,
    pub warnings: Vec<String>,
    /// One line per change made to the proposal.
    pub modifications: Vec<String>,
    /// The proposal as it may be executed (modified when `status` is `modified`).
    pub proposal: TradeProposal,
    pub metrics: VerdictMetrics,
    pub validation_ms: f64,
}

impl RiskVerdict {
    pub fn is_approved(&self) -> bool {
        self.status.is_approved()
    }
}

/// A circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Breaker {
    DailyLoss,
    WeeklyLoss,
    MaxDrawdown,
}

impl Breaker {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DailyLoss => "daily_loss",
            Self::WeeklyLoss => "weekly_loss",
            Self::MaxDrawdown => "max_drawdown",
        }
    }
}

/// Latest regime facts per symbol (from `RegimeUpdate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegimeInfo {
    pub regime: Regime,
    pub entry_strictness: EntryStrictness,
    pub at: DateTime<Utc>,
}

/// Volatility of one symbol: the latest ATR against its recent average.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VolatilityInfo {
    pub current_atr: f64,
    pub avg_atr: f64,
    pub spike_active: bool,
    /// Recent ATR samples the average is taken over, one per primary-timeframe candle (the
    /// reference's `avg_atr_20`: the mean ATR of the last `volatility_window` periods).
    #[serde(default)]
    #[schema(value_type = Vec<f64>)]
    pub samples: VecDeque<f64>,
    /// Open time of the candle of the newest sample; a snapshot of the same candle adds none.
    #[serde(default)]
    pub sampled_at: Option<DateTime<Utc>>,
}

/// One closed trade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TradeResult {
    pub symbol: Symbol,
    pub realized_pnl: Decimal,
    pub at: DateTime<Utc>,
    pub correlation_id: CorrelationId,
}

/// Everything the risk engine knows. Equity, drawdown and exposure come only from
/// `PortfolioUpdate`; trade results only from `ExecutionEvent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RiskState {
    /// `None` until the first portfolio update arrives.
    pub equity_usd: Option<Decimal>,
    pub peak_equity_usd: Decimal,
    /// Set by an admin drawdown reset: the peak is tracked from equity alone afterwards.
    pub peak_rebased: bool,
    /// The drawdown the breaker and the leverage caps read, on the configured
    /// [`DrawdownBasis`].
    pub drawdown_pct: Decimal,
    pub max_drawdown_pct: Decimal,
    /// The whole account's drawdown (holdings included), whatever the basis: reported, and what
    /// the breaker reads under [`DrawdownBasis::Account`].
    pub account_drawdown_pct: Decimal,
    /// The base of the trading equity: the equity of the first valuation (or of the last
    /// drawdown reset).
    pub trading_base_usd: Option<Decimal>,
    /// Realised P&L of closed positions since that base.
    pub trading_pnl_usd: Decimal,
    /// The highest `trading_pnl_usd` since that base.
    pub trading_peak_pnl_usd: Decimal,
    pub open_exposure_usd: Decimal,
    pub exposure_by_symbol: BTreeMap<String, Decimal>,
    pub available_margin_usd: Decimal,
    pub portfolio_updated_at: Option<DateTime<Utc>>,

    pub daily_pnl: Decimal,
    pub daily_period_start: Option<DateTime<Utc>>,
    /// Equity when the day started (the base of the daily loss percentage).
    pub daily_start_equity: Option<Decimal>,
    pub weekly_pnl: Decimal,
    pub weekly_period_start: Option<DateTime<Utc>>,
    pub weekly_start_equity: Option<Decimal>,
    pub trades_today: u32,

    pub consecutive_losses: u32,
    pub consecutive_wins: u32,
    pub cooldown_until: Option<DateTime<Utc>>,
    pub cooldown_reason: Option<String>,

    pub halted: bool,
    pub halt_reason: Option<String>,
    pub breakers: BTreeSet<Breaker>,
    /// A halt that is not a breaker (e.g. the state could not be loaded); only a full admin reset lifts it.
    pub hold_reason: Option<String>,
    /// A halt the engine learned from outside (the coordinator halted, an actor escalated):
    /// entries are refused while it is set; the coordinator's resume lifts it.
    pub external_halt: Option<String>,

    pub regimes: BTreeMap<String, RegimeInfo>,
    pub volatility: BTreeMap<String, VolatilityInfo>,
    /// The most recent trade results, newest last.
    #[schema(value_type = Vec<TradeResult>)]
    pub last_results: VecDeque<TradeResult>,
    /// Ids of recently applied events, so a redelivered event is not counted twice.
    #[schema(value_type = Vec<String>, format = Uuid)]
    pub seen_events: VecDeque<Uuid>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Default for RiskState {
    fn default() -> Self {
        Self {
            equity_usd: None,
            peak_equity_usd: Decimal::ZERO,
            peak_rebased: false,
            drawdown_pct: Decimal::ZERO,
            max_drawdown_pct: Decimal::ZERO,
            account_drawdown_pct: Decimal::ZERO,
            trading_base_usd: None,
            trading_pnl_usd: Decimal::ZERO,
            trading_peak_pnl_usd: Decimal::ZERO,
            open_exposure_usd: Decimal::ZERO,
            exposure_by_symbol: BTreeMap::new(),
            available_margin_usd: Decimal::ZERO,
            portfolio_updated_at: None,
            daily_pnl: Decimal::ZERO,
            daily_period_start: None,
            daily_start_equity: None,
            weekly_pnl: Decimal::ZERO,
            weekly_period_start: None,
            weekly_start_equity: None,
            trades_today: 0,
            consecutive_losses: 0,
            consecutive_wins: 0,
            cooldown_until: None,
            cooldown_reason: None,
            halted: false,
            halt_reason: None,
            breakers: BTreeSet::new(),
            hold_reason: None,
            external_halt: None,
            regimes: BTreeMap::new(),
            volatility: BTreeMap::new(),
            last_results: VecDeque::new(),
            seen_events: VecDeque::new(),
            updated_at: None,
        }
    }
}

/// Leverage caps by regime (reference §4, risk column).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RegimeLeverage {
    pub trending_bull: u32,
    pub trending_bear: u32,
    pub ranging: u32,
    pub volatile_bull: u32,
    pub volatile_bear: u32,
    pub choppy: u32,
    pub breakout_potential: u32,
    pub unknown: u32,
}

impl Default for RegimeLeverage {
    fn default() -> Self {
        Self {
            trending_bull: 5,
            trending_bear: 3,
            ranging: 2,
            volatile_bull: 2,
            volatile_bear: 2,
            choppy: 1,
            breakout_potential: 3,
            unknown: 1,
        }
    }
}

impl RegimeLeverage {
    pub fn cap(&self, regime: Regime) -> u32 {
        match regime {
            Regime::TrendingBull => self.trending_bull,
            Regime::TrendingBear => self.trending_bear,
            Regime::Ranging => self.ranging,
            Regime::VolatileBull => self.volatile_bull,
            Regime::VolatileBear => self.volatile_bear,
            Regime::Choppy => self.choppy,
            Regime::BreakoutPotential => self.breakout_potential,
            Regime::Unknown => self.unknown,
        }
    }
}

/// Confidence floors by regime (reference §3.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RegimeConfidence {
    pub trending: f64,
    pub ranging: f64,
    pub volatile: f64,
    pub choppy: f64,
    pub breakout_potential: f64,
    pub unknown: f64,
}

impl Default for RegimeConfidence {
    fn default() -> Self {
        Self {
            trending: 0.55,
            ranging: 0.60,
            volatile: 0.65,
            choppy: 0.75,
            breakout_potential: 0.60,
            unknown: 0.70,
        }
    }
}

impl RegimeConfidence {
    pub fn base(&self, regime: Regime) -> f64 {
        match regime {
            Regime::TrendingBull | Regime::TrendingBear => self.trending,
            Regime::Ranging => self.ranging,
            Regime::VolatileBull | Regime::VolatileBear => self.volatile,
            Regime::Choppy => self.choppy,
            Regime::BreakoutPotential => self.breakout_potential,
            Regime::Unknown => self.unknown,
        }
    }
}

/// A drawdown level and the leverage allowed from it on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrawdownLeverage {
    pub min_drawdown_pct: Decimal,
    pub max_leverage: u32,
}

/// What the drawdown breaker and the drawdown leverage caps measure.
///
/// The account's equity includes the rebalancer's holdings and the hodl bags, which are not
/// trading positions: a crypto market that falls 30 % takes a 33/33/33 portfolio about 20 % down
/// without one losing trade. Measured on the account, the drawdown breaker then halts every
/// strategy entry and every later rebalance until an admin resets it, for a loss no trading rule
/// caused. The default measures the trading book: the first valuation's equity plus the
/// realised P&L of closed positions. The account's drawdown is still computed and reported
/// (`account_drawdown_pct`, the portfolio valuation, the backtest report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DrawdownBasis {
    /// The trading book: base equity plus the realised P&L of positions since it.
    #[default]
    Trading,
    /// The whole account's equity, holdings included (the reference system's measure).
    Account,
}

/// Every threshold the risk engine applies (`config/risk.yaml`); defaults are the reference values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RiskLimits {
    pub max_leverage: u32,
    pub max_position_pct: Decimal,
    pub max_risk_per_trade_pct: Decimal,
    pub max_total_exposure_pct: Decimal,
    /// Exposure above this warns.
    pub exposure_warning_pct: Decimal,
    pub max_correlated_exposure_pct: Decimal,
    /// Correlated exposure above this share of the limit warns (0.8 → 32 % of 40 %).
    pub correlation_warning_ratio: Decimal,
    /// Only pairs correlated above this count.
    pub correlation_threshold: Decimal,
    /// Pair correlations, keyed `A|B` (either order is looked up).
    pub correlations: BTreeMap<String, Decimal>,
    /// Proposals smaller than this after every reduction are rejected.
    pub min_position_usd: Decimal,

    pub stop_loss_required: bool,
    pub manual_trades_require_stop: bool,
    pub min_stop_distance_pct: Decimal,
    pub max_stop_distance_pct: Decimal,
    pub min_reward_risk: Decimal,

    pub regime_confidence: RegimeConfidence,
    pub confidence_after_3_losses: f64,
    pub confidence_after_5_losses: f64,
    pub regime_leverage: RegimeLeverage,
    /// Sorted by `min_drawdown_pct` descending when applied.
    pub drawdown_leverage: Vec<DrawdownLeverage>,
    pub leverage_after_3_losses: u32,
    pub leverage_after_5_losses: u32,

    pub daily_loss_pct: Decimal,
    pub weekly_loss_pct: Decimal,
    pub max_drawdown_pct: Decimal,
    /// What `max_drawdown_pct` and `drawdown_leverage` are measured on.
    pub drawdown_basis: DrawdownBasis,
    /// Consecutive losses that trip the breaker (alert, long cooldown, halved size).
    pub consecutive_losses_breaker: u32,
    /// Consecutive losses that raise the confidence floor, cap leverage and lengthen the cooldown.
    pub consecutive_losses_warning: u32,
    pub consecutive_loss_size_reduction_pct: Decimal,

    pub post_trade_cooldown_min: i64,
    pub post_loss_cooldown_min: i64,
    pub consecutive_loss_3_cooldown_min: i64,
    pub consecutive_loss_5_cooldown_min: i64,
    pub volatility_spike_cooldown_min: i64,
    pub volatility_spike_multiplier: f64,
    pub volatility_size_reduction_pct: Decimal,
    /// ATR samples averaged for the spike test.
    pub volatility_window: usize,

    /// A limit price more than this through the engine's market price is refused (buy above,
    /// sell below).
    pub max_limit_deviation_pct: Decimal,
    /// A market price older than this is no price: the proposal is refused, not guessed.
    pub max_price_age_secs: i64,
}

impl Default for RiskLimits {
    fn default() -> Self {
        let correlations = [
            ("BTC/USDT|XRP/USDT", Decimal::new(75, 2)),
            ("BTC/USDT|XRP/BTC", Decimal::new(60, 2)),
            ("XRP/USDT|XRP/BTC", Decimal::new(85, 2)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Self {
            max_leverage: 5,
            max_position_pct: Decimal::new(20, 0),
            max_risk_per_trade_pct: Decimal::new(2, 0),
            max_total_exposure_pct: Decimal::new(80, 0),
            exposure_warning_pct: Decimal::new(70, 0),
            max_correlated_exposure_pct: Decimal::new(40, 0),
            correlation_warning_ratio: Decimal::new(8, 1),
            correlation_threshold: Decimal::new(5, 1),
            correlations,
            min_position_usd: Decimal::new(10, 0),
            stop_loss_required: true,
            manual_trades_require_stop: true,
            min_stop_distance_pct: Decimal::new(5, 1),
            max_stop_distance_pct: Decimal::new(50, 1),
            min_reward_risk: Decimal::new(15, 1),
            regime_confidence: RegimeConfidence::default(),
            confidence_after_3_losses: 0.10,
            confidence_after_5_losses: 0.20,
            regime_leverage: RegimeLeverage::default(),
            drawdown_leverage: vec![
                DrawdownLeverage {
                    min_drawdown_pct: Decimal::new(15, 0),
                    max_leverage: 1,
                },
                DrawdownLeverage {
                    min_drawdown_pct: Decimal::new(10, 0),
                    max_leverage: 2,
                },
                DrawdownLeverage {
                    min_drawdown_pct: Decimal::new(5, 0),
                    max_leverage: 3,
                },
            ],
            leverage_after_3_losses: 2,
            leverage_after_5_losses: 1,
            daily_loss_pct: Decimal::new(5, 0),
            weekly_loss_pct: Decimal::new(10, 0),
            max_drawdown_pct: Decimal::new(20, 0),
            drawdown_basis: DrawdownBasis::Trading,
            consecutive_losses_breaker: 5,
            consecutive_losses_warning: 3,
            consecutive_loss_size_reduction_pct: Decimal::new(50, 0),
            post_trade_cooldown_min: 5,
            post_loss_cooldown_min: 10,
            consecutive_loss_3_cooldown_min: 30,
            consecutive_loss_5_cooldown_min: 60,
            volatility_spike_cooldown_min: 15,
            volatility_spike_multiplier: 3.0,
            volatility_size_reduction_pct: Decimal::new(50, 0),
            volatility_window: 20,
            max_limit_deviation_pct: Decimal::new(2, 0),
            max_price_age_secs: 120,
        }
    }
}

impl RiskLimits {
    /// Correlation of two symbols: 1 for the same symbol, the table value in either order, else 0.
    pub fn correlation(&self, a: &str, b: &str) -> Decimal {
        if a == b {
            return Decimal::ONE;
        }
        self.correlations
            .get(&format!("{a}|{b}"))
            .or_else(|| self.correlations.get(&format!("{b}|{a}")))
            .copied()
            .unwrap_or(Decimal::ZERO)
    }

    /// Leverage cap for a drawdown level.
    pub fn drawdown_leverage_cap(&self, drawdown_pct: Decimal) -> Option<u32> {
        self.drawdown_leverage
            .iter()
            .filter(|d| drawdown_pct >= d.min_drawdown_pct)
            .max_by_key(|d| d.min_drawdown_pct)
            .map(|d| d.max_leverage)
    }
}

/// Entry strictness a regime implies when no regime update says otherwise (reference §4).
pub fn default_strictness(regime: Regime) -> EntryStrictness {
    match regime {
        Regime::TrendingBull | Regime::TrendingBear => EntryStrictness::Normal,
        Regime::Ranging | Regime::VolatileBull | Regime::VolatileBear | Regime::BreakoutPotential => {
            EntryStrictness::Strict
        }
        Regime::Choppy => EntryStrictness::VeryStrict,
        // Unknown regimes take the ranging parameters.
        Regime::Unknown => EntryStrictness::Strict,
    }
}

/// Confidence adjustment of an entry strictness (reference §3.3).
pub fn strictness_adjustment(s: EntryStrictness) -> f64 {
    match s {
        EntryStrictness::Relaxed => -0.05,
        EntryStrictness::Normal => 0.0,
        EntryStrictness::Strict => 0.05,
        EntryStrictness::VeryStrict => 0.10,
    }
}
