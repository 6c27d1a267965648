//! Incremental indicator library. Values are `f64` (indicators are not money)
//! and `None` during warm-up.

mod engine;
pub mod primitives;

pub use engine::{Bar, IndicatorEngine, IndicatorError, VwapAnchor};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MacdValue {
    pub line: Option<f64>,
    pub signal: Option<f64>,
    pub histogram: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BollingerValue {
    pub upper: Option<f64>,
    pub middle: Option<f64>,
    pub lower: Option<f64>,
    pub width: Option<f64>,
    pub position: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StochRsiValue {
    pub k: Option<f64>,
    pub d: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SupertrendValue {
    pub value: Option<f64>,
    /// 1 = up trend, -1 = down trend.
    pub direction: Option<i8>,
}

/// All indicator values for the latest candle of one symbol and timeframe.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IndicatorSnapshot {
    pub ema_9: Option<f64>,
    pub ema_21: Option<f64>,
    pub ema_50: Option<f64>,
    pub ema_200: Option<f64>,
    pub sma_20: Option<f64>,
    pub sma_50: Option<f64>,
    pub sma_200: Option<f64>,
    pub rsi_14: Option<f64>,
    pub atr_14: Option<f64>,
    pub adx_14: Option<f64>,
    pub roc_10: Option<f64>,
    pub obv: Option<f64>,
    pub vwap: Option<f64>,
    pub choppiness_14: Option<f64>,
    pub volume_sma_20: Option<f64>,
    pub volume_vs_avg: Option<f64>,
    pub squeeze_detected: Option<bool>,
    pub macd: MacdValue,
    pub bollinger_bands: BollingerValue,
    pub stochastic_rsi: StochRsiValue,
    pub supertrend: SupertrendValue,
}
