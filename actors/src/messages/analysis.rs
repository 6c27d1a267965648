use super::{bus_event, EventMeta};
use crate::domain::{Bias, EntryStrictness, FearGreed, Regime, SentimentBias, Symbol, Timeframe, TrendDirection};
use serde::{Deserialize, Serialize};

/// Technical-analysis output (topic `ta_signals`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaSignal {
    pub meta: EventMeta,
    pub symbol: Symbol,
    pub timeframe: Timeframe,
    pub trend_direction: TrendDirection,
    /// 0..1
    pub trend_strength: f64,
    /// -1..1
    pub momentum_score: f64,
    pub bias: Bias,
    /// 0..1
    pub confidence: f64,
    pub reasoning: String,
}
bus_event!(TaSignal, "ta_signals", |e| e.symbol.to_string());

/// Regime classification (topic `regime_updates`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegimeUpdate {
    pub meta: EventMeta,
    pub symbol: Symbol,
    pub regime: Regime,
    pub confidence: f64,
    pub position_size_multiplier: f64,
    pub entry_strictness: EntryStrictness,
    pub stop_loss_atr_multiplier: f64,
    pub take_profit_atr_multiplier: f64,
    pub max_leverage: u32,
    pub previous_regime: Option<Regime>,
}
bus_event!(RegimeUpdate, "regime_updates", |e| e.symbol.to_string());

/// Sentiment output (topic `sentiment_updates`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentimentUpdate {
    pub meta: EventMeta,
    pub symbol: Symbol,
    pub bias: SentimentBias,
    pub confidence: f64,
    pub fear_greed: FearGreed,
    /// -1..1
    pub social_score: f64,
    /// -1..1
    pub news_score: f64,
    pub key_events: Vec<String>,
}
bus_event!(SentimentUpdate, "sentiment_updates", |e| e.symbol.to_string());
