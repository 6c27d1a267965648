//! Rule-based regime detection (reference §1.2 and §4): a pure classifier
//! ([`detect`]) and the hysteresis that decides when a new regime is adopted
//! ([`RegimeTracker`]).
//!
//! Classification, first matching rule wins (missing indicators take the reference defaults
//! ADX 25, choppiness 50, RSI 50, and cap the confidence at 0.4):
//! 1. Volatility from ATR/price: < 1 % low, < 3 % normal, < 5 % high, else extreme.
//!    High or extreme volatility → `volatile_bull` / `volatile_bear`.
//! 2. ADX > 25 → `trending_bull` / `trending_bear`.
//! 3. Bollinger squeeze (bands inside the Keltner channel) → `breakout_potential`.
//! 4. Choppiness > 60 → `choppy`.
//! 5. Otherwise `ranging`.
//!
//! Direction is the mean vote of close vs EMA 50 and EMA 200, EMA 9 vs EMA 21, RSI vs 50,
//! the Supertrend direction and the TA trend direction; a tie falls back to the reference
//! rule (RSI > 50 → bull).
//!
//! Confidence is `0.4 + 0.55·clarity`, where clarity (0..1) measures how far the deciding
//! indicators are past their thresholds and how well the direction votes agree, so a clear
//! regime can reach the 0.7 that the hysteresis requires and a borderline one cannot.
//!
//! Hysteresis (reference §1.2): the first detection is adopted; a different regime is adopted
//! only after [`HysteresisConfig::change_periods`] consecutive detections with confidence ≥
//! [`HysteresisConfig::min_change_confidence`]; a detection of the current regime, or a
//! low-confidence one, resets the candidate. Corrected behaviour: while a change is
//! suppressed, the output keeps the held regime *and its own confidence and parameters*; the
//! suppressed detection is reported separately (`detected_regime`, `pending_change`) instead
//! of being mixed into the held regime.

use super::technical_analysis::{truncate_chars, TaOutput};
use crate::domain::{Bias, EntryStrictness, Regime, Symbol, TrendDirection};
use crate::indicators::IndicatorSnapshot;
use crate::messages::{EventMeta, RegimeUpdate, TaSignal};
use chrono::{DateTime, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Reasoning is at most this many characters.
pub const MAX_REGIME_REASONING_CHARS: usize = 300;
/// Confidence of a detection made with missing indicators (reference heuristic value).
pub const DEGRADED_CONFIDENCE: f64 = 0.4;
pub const ADX_TREND_THRESHOLD: f64 = 25.0;
pub const CHOPPINESS_THRESHOLD: f64 = 60.0;
/// Name recorded as `model_used` for the rule-based classification.
pub const RULE_BASED_MODEL: &str = "rule_based";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Volatility {
    Low,
    Normal,
    High,
    Extreme,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeProfile {
    Decreasing,
    Stable,
    Increasing,
    Spike,
}

/// Trading parameters of a regime (reference §4, agent columns).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegimeParameters {
    /// 0.25..1.5
    pub position_size_multiplier: f64,
    /// 0.5..2.0
    pub stop_loss_atr_multiplier: f64,
    /// 0.5..3.0
    pub take_profit_atr_multiplier: f64,
    pub max_leverage: u32,
    pub entry_strictness: EntryStrictness,
}

impl RegimeParameters {
    /// The §4 table. `unknown` takes the `ranging` parameters.
    pub fn for_regime(regime: Regime) -> Self {
        use EntryStrictness::{Normal, Strict, VeryStrict};
        let (size, stop, tp, lev, strict) = match regime {
            Regime::TrendingBull => (1.0, 1.2, 2.0, 5, Normal),
            Regime::TrendingBear => (1.0, 1.2, 2.0, 3, Normal),
            Regime::Ranging | Regime::Unknown => (0.75, 0.8, 1.5, 2, Strict),
            Regime::VolatileBull | Regime::VolatileBear => (0.5, 1.5, 2.5, 2, Strict),
            Regime::Choppy => (0.25, 1.0, 1.0, 1, VeryStrict),
            Regime::BreakoutPotential => (0.75, 1.0, 3.0, 3, Strict),
        };
        Self {
            position_size_multiplier: size,
            stop_loss_atr_multiplier: stop,
            take_profit_atr_multiplier: tp,
            max_leverage: lev,
            entry_strictness: strict,
        }
    }

    /// Clamps externally supplied (model) values into the §1.2 ranges; non-finite values take
    /// the regime defaults of `regime`, leverage is capped by the regime's maximum.
    pub fn clamped(self, regime: Regime) -> Self {
        let d = Self::for_regime(regime);
        let clamp = |x: f64, lo: f64, hi: f64, default: f64| {
            if x.is_finite() {
                x.clamp(lo, hi)
            } else {
                default
            }
        };
        Self {
            position_size_multiplier: clamp(self.position_size_multiplier, 0.25, 1.5, d.position_size_multiplier),
            stop_loss_atr_multiplier: clamp(self.stop_loss_atr_multiplier, 0.5, 2.0, d.stop_loss_atr_multiplier),
            take_profit_atr_multiplier: clamp(self.take_profit_atr_multiplier, 0.5, 3.0, d.take_profit_atr_multiplier),
            max_leverage: self.max_leverage.clamp(1, d.max_leverage),
            entry_strictness: self.entry_strictness,
        }
    }
}

/// The parts of the TA output the classifier uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TaSummary {
    pub trend_direction: TrendDirection,
    pub trend_strength: f64,
    pub momentum_score: f64,
    pub bias: Bias,
    pub confidence: f64,
}

impl From<&TaSignal> for TaSummary {
    fn from(s: &TaSignal) -> Self {
        Self {
            trend_direction: s.trend_direction,
            trend_strength: s.trend_strength,
            momentum_score: s.momentum_score,
            bias: s.bias,
            confidence: s.confidence,
        }
    }
}

impl From<&TaOutput> for TaSummary {
    fn from(s: &TaOutput) -> Self {
        Self {
            trend_direction: s.trend_direction,
            trend_strength: s.trend_strength,
            momentum_score: s.momentum_score,
            bias: s.bias,
            confidence: s.confidence,
        }
    }
}

/// What the classifier looks at.
#[derive(Debug, Clone, Copy)]
pub struct RegimeInput<'a> {
    pub current_price: Decimal,
    pub indicators: &'a IndicatorSnapshot,
    /// The latest TA output for the symbol, if any.
    pub ta: Option<TaSummary>,
}

/// One classification, before hysteresis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegimeDetection {
    pub regime: Regime,
    /// 0..1
    pub confidence: f64,
    pub volatility: Volatility,
    /// ADX/100, 0..1.
    pub trend_strength: f64,
    pub volume_profile: VolumeProfile,
    /// 0..100 (50 when unknown).
    pub choppiness: f64,
    pub adx_value: Option<f64>,
    pub atr_pct: Option<f64>,
    /// Mean direction vote, −1 (bearish) .. 1 (bullish).
    pub direction_score: f64,
    /// Indicators that were missing (their defaults were used).
    pub missing: Vec<String>,
    pub reasoning: String,
}

/// `x` mapped linearly from `lo..hi` onto `0..1`, clamped.
fn ramp(x: f64, lo: f64, hi: f64) -> f64 {
    if hi <= lo {
        return if x >= hi { 1.0 } else { 0.0 };
    }
    ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
}

impl Volatility {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
            Self::Extreme => "extreme",
        }
    }
}

pub fn volatility_class(atr_pct: f64) -> Volatility {
    if atr_pct < 1.0 {
        Volatility::Low
    } else if atr_pct < 3.0 {
        Volatility::Normal
    } else if atr_pct < 5.0 {
        Volatility::High
    } else {
        Volatility::Extreme
    }
}

pub fn volume_profile(volume_vs_avg: Option<f64>) -> VolumeProfile {
    match volume_vs_avg {
        Some(v) if v >= 3.0 => VolumeProfile::Spike,
        Some(v) if v >= 1.3 => VolumeProfile::Increasing,
        Some(v) if v <= 0.7 => VolumeProfile::Decreasing,
        _ => VolumeProfile::Stable,
    }
}

fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

fn direction_score(price: Option<f64>, ind: &IndicatorSnapshot, ta: Option<TaSummary>) -> f64 {
    let mut votes = Vec::with_capacity(6);
    if let Some(p) = price {
        if let Some(e) = ind.ema_50 {
            votes.push(sign(p - e));
        }
        if let Some(e) = ind.ema_200 {
            votes.push(sign(p - e));
        }
    }
    if let (Some(a), Some(b)) = (ind.ema_9, ind.ema_21) {
        votes.push(sign(a - b));
    }
    if let Some(r) = ind.rsi_14 {
        votes.push(sign(r - 50.0));
    }
    if let Some(d) = ind.supertrend.direction {
        votes.push(f64::from(d.signum()));
    }
    if let Some(ta) = ta {
        votes.push(match ta.trend_direction {
            TrendDirection::Bullish => 1.0,
            TrendDirection::Bearish => -1.0,
            TrendDirection::Neutral => 0.0,
        });
    }
    if votes.is_empty() {
        0.0
    } else {
        votes.iter().sum::<f64>() / votes.len() as f64
    }
}

/// Classifies the regime from one snapshot.
pub fn detect(input: &RegimeInput<'_>) -> RegimeDetection {
    let ind = input.indicators;
    let price = input.current_price.to_f64().filter(|p| p.is_finite() && *p > 0.0);
    let mut missing = Vec::new();
    let adx = ind.adx_14;
    if adx.is_none() {
        missing.push("adx_14".to_string());
    }
    let chop = ind.choppiness_14;
    if chop.is_none() {
        missing.push("choppiness_14".to_string());
    }
    if ind.rsi_14.is_none() {
        missing.push("rsi_14".to_string());
    }
    let atr_pct = match (ind.atr_14, price) {
        (Some(atr), Some(p)) => Some(atr / p * 100.0),
        _ => {
            missing.push("atr_14".to_string());
            None
        }
    };
    let adx_v = adx.unwrap_or(ADX_TREND_THRESHOLD);
    let chop_v = chop.unwrap_or(50.0);
    let rsi_v = ind.rsi_14.unwrap_or(50.0);
    let volatility = atr_pct.map_or(Volatility::Normal, volatility_class);
    let d = direction_score(price, ind, input.ta);
    let bullish = if d != 0.0 { d > 0.0 } else { rsi_v > 50.0 };
    let agreement = d.abs();

    let (regime, clarity, why) = if matches!(volatility, Volatility::High | Volatility::Extreme) {
        let pct = atr_pct.unwrap_or(0.0);
        let regime = if bullish {
            Regime::VolatileBull
        } else {
            Regime::VolatileBear
        };
        (
            regime,
            0.5 * ramp(pct, 3.0, 6.0) + 0.5 * agreement,
            format!("ATR {pct:.2}% of price ({} volatility)", volatility.as_str()),
        )
    } else if adx_v > ADX_TREND_THRESHOLD {
        let regime = if bullish {
            Regime::TrendingBull
        } else {
            Regime::TrendingBear
        };
        (
            regime,
            0.5 * ramp(adx_v, 25.0, 40.0) + 0.5 * agreement,
            format!("ADX {adx_v:.1} above 25"),
        )
    } else if ind.squeeze_detected == Some(true) {
        (
            Regime::BreakoutPotential,
            0.6 + 0.4 * ramp(25.0 - adx_v, 0.0, 10.0),
            "Bollinger bands inside the Keltner channel (squeeze)".to_string(),
        )
    } else if chop_v > CHOPPINESS_THRESHOLD {
        (
            Regime::Choppy,
            0.6 * ramp(chop_v, 60.0, 70.0) + 0.4 * (1.0 - agreement),
            format!("choppiness {chop_v:.1} above 60 with ADX {adx_v:.1}"),
        )
    } else {
        (
            Regime::Ranging,
            0.5 * ramp(25.0 - adx_v, 0.0, 10.0) + 0.5 * (1.0 - agreement),
            format!("ADX {adx_v:.1} and choppiness {chop_v:.1}: no trend"),
        )
    };
    let mut confidence = (0.4 + 0.55 * clarity.clamp(0.0, 1.0)).min(0.95);
    if !missing.is_empty() {
        confidence = confidence.min(DEGRADED_CONFIDENCE);
    }
    let mut reasoning = format!("{regime}: {why}; direction {d:+.2}");
    if !missing.is_empty() {
        reasoning.push_str(&format!("; missing {} (defaults used)", missing.join(", ")));
    }
    RegimeDetection {
        regime,
        confidence,
        volatility,
        trend_strength: (adx_v / 100.0).clamp(0.0, 1.0),
        volume_profile: volume_profile(ind.volume_vs_avg),
        choppiness: chop_v.clamp(0.0, 100.0),
        adx_value: adx,
        atr_pct,
        direction_score: d,
        missing,
        reasoning: truncate_chars(&reasoning, MAX_REGIME_REASONING_CHARS),
    }
}

/// Hysteresis settings (reference: 0.7 over 2 consecutive runs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HysteresisConfig {
    pub min_change_confidence: f64,
    pub change_periods: u32,
}

impl Default for HysteresisConfig {
    fn default() -> Self {
        Self {
            min_change_confidence: 0.7,
            change_periods: 2,
        }
    }
}

/// A regime change that has been detected but not yet confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PendingChange {
    pub regime: Regime,
    pub confidence: f64,
    pub consecutive: u32,
}

/// The published regime (reference §1.2 `RegimeOutput`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegimeOutput {
    pub symbol: Symbol,
    pub timestamp: DateTime<Utc>,
    /// The regime in force (after hysteresis).
    pub regime: Regime,
    /// Confidence in the regime in force: that of its latest confirming detection.
    pub confidence: f64,
    pub previous_regime: Option<Regime>,
    /// What this run detected (may differ from `regime` while a change is suppressed).
    pub detected_regime: Regime,
    pub detected_confidence: f64,
    pub pending_change: Option<PendingChange>,
    pub volatility: Volatility,
    pub trend_strength: f64,
    pub volume_profile: VolumeProfile,
    pub choppiness: f64,
    pub adx_value: Option<f64>,
    pub regime_started: DateTime<Utc>,
    pub periods_in_regime: u32,
    /// Not estimated by the rule-based classifier (empty); a model may fill it.
    pub transition_probabilities: BTreeMap<String, f64>,
    #[serde(flatten)]
    pub parameters: RegimeParameters,
    pub reasoning: String,
    pub model_used: String,
}

impl RegimeOutput {
    /// The output when classification failed (reference §1.2): `choppy`, confidence 0 and the
    /// most defensive parameters (size 0.25, `very_strict`). Does not touch any tracker state.
    pub fn failure(symbol: &Symbol, timestamp: DateTime<Utc>, error: &str) -> Self {
        Self {
            symbol: symbol.clone(),
            timestamp,
            regime: Regime::Choppy,
            confidence: 0.0,
            previous_regime: None,
            detected_regime: Regime::Choppy,
            detected_confidence: 0.0,
            pending_change: None,
            volatility: Volatility::Normal,
            trend_strength: 0.0,
            volume_profile: VolumeProfile::Stable,
            choppiness: 50.0,
            adx_value: None,
            regime_started: timestamp,
            periods_in_regime: 0,
            transition_probabilities: BTreeMap::new(),
            parameters: RegimeParameters::for_regime(Regime::Choppy),
            reasoning: truncate_chars(&format!("Regime detection failed: {error}"), MAX_REGIME_REASONING_CHARS),
            model_used: String::new(),
        }
    }

    /// The bus event for this output.
    pub fn to_update(&self, meta: EventMeta) -> RegimeUpdate {
        RegimeUpdate {
            meta,
            symbol: self.symbol.clone(),
            regime: self.regime,
            confidence: self.confidence,
            position_size_multiplier: self.parameters.position_size_multiplier,
            entry_strictness: self.parameters.entry_strictness,
            stop_loss_atr_multiplier: self.parameters.stop_loss_atr_multiplier,
            take_profit_atr_multiplier: self.parameters.take_profit_atr_multiplier,
            max_leverage: self.parameters.max_leverage,
            previous_regime: self.previous_regime,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Held {
    regime: Regime,
    confidence: f64,
    started: DateTime<Utc>,
    periods: u32,
    previous: Option<Regime>,
}

/// Regime state of one symbol across runs: applies the hysteresis.
#[derive(Debug, Clone, Default)]
pub struct RegimeTracker {
    config: HysteresisConfig,
    held: Option<Held>,
    pending: Option<PendingChange>,
}

impl RegimeTracker {
    pub fn new(config: HysteresisConfig) -> Self {
        Self {
            config,
            held: None,
            pending: None,
        }
    }

    /// The regime in force, if any detection was made or restored.
    pub fn current(&self) -> Option<Regime> {
        self.held.map(|h| h.regime)
    }

    /// Restores the state after a restart from the newest stored output: the regime and its
    /// confidence are kept, `periods_in_regime` becomes the elapsed time since that output
    /// divided by the run interval (at least the stored count).
    pub fn restore(&mut self, stored: &RegimeOutput, now: DateTime<Utc>, interval_secs: i64) {
        let elapsed = (now - stored.timestamp).num_seconds().max(0);
        let extra = if interval_secs > 0 { elapsed / interval_secs } else { 0 };
        let periods = u32::try_from(i64::from(stored.periods_in_regime).saturating_add(extra)).unwrap_or(u32::MAX);
        self.held = Some(Held {
            regime: stored.regime,
            confidence: stored.confidence,
            started: stored.regime_started,
            periods,
            previous: stored.previous_regime,
        });
        self.pending = None;
    }

    /// Applies the hysteresis to `detection` made at `now` and returns the output to publish.
    pub fn observe(&mut self, symbol: &Symbol, detection: RegimeDetection, now: DateTime<Utc>) -> RegimeOutput {
        let held = match self.held {
            None => {
                self.pending = None;
                Held {
                    regime: detection.regime,
                    confidence: detection.confidence,
                    started: now,
                    periods: 1,
                    previous: None,
                }
            }
            Some(mut held) if held.regime == detection.regime => {
                self.pending = None;
                held.confidence = detection.confidence;
                held.periods = held.periods.saturating_add(1);
                held
            }
            Some(mut held) => {
                if detection.confidence >= self.config.min_change_confidence {
                    let consecutive = match self.pending {
                        Some(p) if p.regime == detection.regime => p.consecutive + 1,
                        _ => 1,
                    };
                    if consecutive >= self.config.change_periods {
                        self.pending = None;
                        Held {
                            regime: detection.regime,
                            confidence: detection.confidence,
                            started: now,
                            periods: 1,
                            previous: Some(held.regime),
                        }
                    } else {
                        self.pending = Some(PendingChange {
                            regime: detection.regime,
                            confidence: detection.confidence,
                            consecutive,
                        });
                        held.periods = held.periods.saturating_add(1);
                        held
                    }
                } else {
                    self.pending = None;
                    held.periods = held.periods.saturating_add(1);
                    held
                }
            }
        };
        self.held = Some(held);

        let mut reasoning = if held.regime == detection.regime {
            detection.reasoning.clone()
        } else {
            let pending = match self.pending {
                Some(p) => format!(" (candidate {}/{})", p.consecutive, self.config.change_periods),
                None => String::new(),
            };
            format!(
                "holding {} ({} periods): detected {} at {:.2}{pending}; {}",
                held.regime, held.periods, detection.regime, detection.confidence, detection.reasoning
            )
        };
        reasoning = truncate_chars(&reasoning, MAX_REGIME_REASONING_CHARS);
        RegimeOutput {
            symbol: symbol.clone(),
            timestamp: now,
            regime: held.regime,
            confidence: held.confidence,
            previous_regime: held.previous,
            detected_regime: detection.regime,
            detected_confidence: detection.confidence,
            pending_change: self.pending,
            volatility: detection.volatility,
            trend_strength: detection.trend_strength,
            volume_profile: detection.volume_profile,
            choppiness: detection.choppiness,
            adx_value: detection.adx_value,
            regime_started: held.started,
            periods_in_regime: held.periods,
            transition_probabilities: BTreeMap::new(),
            parameters: RegimeParameters::for_regime(held.regime),
            reasoning,
            model_used: RULE_BASED_MODEL.to_string(),
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]
mod tests;
