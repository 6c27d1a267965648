//! Rule-based technical analysis (reference §1.1): a pure function from the indicator
//! snapshot of one symbol and timeframe to a [`TaOutput`].
//!
//! Rules:
//! * Needs RSI 14 and the MACD histogram. Without them (warm-up) the output is neutral with
//!   confidence 0 and the warning "insufficient data".
//! * `bias`: `long` if RSI > 60 and MACD histogram > 0; `short` if RSI < 40 and histogram < 0;
//!   otherwise `neutral`. `trend_direction` mirrors the bias.
//! * `rsi_signal`: RSI < 30 oversold, RSI > 70 overbought, otherwise neutral.
//! * `macd_signal`: by the sign of the histogram; `bullish_cross` / `bearish_cross` when the
//!   sign changed since the previous snapshot (when one is given).
//! * `trend_strength` = min(1, ADX/50) (0.5 while ADX is warming up).
//! * `momentum_score` in −1..1: the mean of (RSI − 50)/50, (stochastic RSI K − 50)/50 and
//!   tanh(histogram / (0.25·ATR)) over the components available.
//! * `confidence` ([`evidence_confidence`]) is computed from the evidence, each part 0..1 and
//!   measured in the direction of the bias (for a neutral bias: the direction of EMA 9 vs EMA 21,
//!   and the result halved):
//!   `0.30·alignment + 0.25·strength + 0.25·momentum + 0.10·volatility + 0.10·volume`, where
//!   - alignment = max(0, agreeing − opposing) / timeframes, over the analysed timeframe's
//!     EMA 9/21 trend and every other timeframe's (1m/5m/15m/1h/4h…);
//!   - strength = clamp((ADX − 15) / 25, 0, 1) (0 while ADX warms up);
//!   - momentum = the mean of clamp(tanh(histogram / (0.25·ATR))·d), clamp((RSI − 50)/25·d) and
//!     clamp(tanh(ROC 10 / 2)·d), each into 0..1, where d = ±1 is the direction;
//!   - volatility = 0.5 during a Bollinger squeeze or with no ATR, 0.2 when ATR/price > 5 %,
//!     0.6 when > 3 % or the Bollinger width exceeds 10 %, else 1;
//!   - volume = clamp(volume / 20-candle average / 1.5, 0, 1) (0.5 when unknown).
//!
//!   A strong aligned trend reaches 0.8–0.95; mixed or flat evidence stays below 0.4. (The
//!   reference used a constant 0.25, [`RULE_BASED_CONFIDENCE`], which made every rule-based
//!   decision a HOLD.) A model-backed analysis reports its own confidence.
//! * Support and resistance: Bollinger bands, SMA 20/50/200, EMA 50/200, VWAP, Supertrend and
//!   the high and low of the recent candles supplied, split at the current price, nearest
//!   first, at most three each, levels closer than 0.1 % merged. `current_position` from where
//!   the price sits between the nearest support and resistance (lower/upper quarter), else
//!   from the Bollinger position (< 0.2 / > 0.8).
//! * Reasoning at most 500 characters (497 + "...").

use crate::domain::{Bias, Candle, Symbol, Timeframe, TrendDirection};
use crate::indicators::IndicatorSnapshot;
use crate::messages::{EventMeta, TaSignal};
use chrono::{DateTime, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Confidence of the rule-based analysis (reference: indicator heuristic 0.25).
pub const RULE_BASED_CONFIDENCE: f64 = 0.25;
/// Maximum reasoning length in characters.
pub const MAX_REASONING_CHARS: usize = 500;
/// Name recorded as `model_used` for the rule-based analysis.
pub const RULE_BASED_MODEL: &str = "rule_based";

const MAX_LEVELS: usize = 3;
/// Levels closer than 0.1 % of the price to a kept one are merged into it.
const LEVEL_MERGE_FRACTION: Decimal = Decimal::from_parts(1, 0, 0, false, 3);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RsiSignal {
    Oversold,
    Neutral,
    Overbought,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MacdSignal {
    BullishCross,
    BearishCross,
    Bullish,
    Bearish,
    Neutral,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PricePosition {
    NearSupport,
    MidRange,
    NearResistance,
}

/// What the analysis looks at.
#[derive(Debug, Clone, Copy)]
pub struct TaInput<'a> {
    pub symbol: &'a Symbol,
    pub timeframe: Timeframe,
    pub timestamp: DateTime<Utc>,
    pub current_price: Decimal,
    pub indicators: &'a IndicatorSnapshot,
    /// The snapshot one candle earlier, for MACD crosses.
    pub previous: Option<&'a IndicatorSnapshot>,
    /// Recent candles of the analysed timeframe (may be empty), for swing highs and lows.
    pub recent_candles: &'a [Candle],
    /// Trend per other timeframe (e.g. EMA 9 vs EMA 21), for `timeframe_alignment`.
    pub timeframe_trends: &'a [(Timeframe, TrendDirection)],
}

/// Technical-analysis output (reference §1.1 `TAOutput`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaOutput {
    pub symbol: Symbol,
    pub timeframe: Timeframe,
    pub timestamp: DateTime<Utc>,
    pub trend_direction: TrendDirection,
    /// 0..1
    pub trend_strength: f64,
    /// Timeframes whose trend agrees with `trend_direction`.
    pub timeframe_alignment: Vec<String>,
    /// −1..1
    pub momentum_score: f64,
    pub rsi_signal: RsiSignal,
    pub macd_signal: MacdSignal,
    /// Nearest first; prices, so decimals (computed from the float indicators, rounded to 8 places).
    pub resistance_levels: Vec<Decimal>,
    /// Nearest first; prices, so decimals (computed from the float indicators, rounded to 8 places).
    pub support_levels: Vec<Decimal>,
    pub current_position: PricePosition,
    pub primary_signal: String,
    pub secondary_signals: Vec<String>,
    pub warnings: Vec<String>,
    pub bias: Bias,
    /// 0..1
    pub confidence: f64,
    pub reasoning: String,
    pub model_used: String,
}

/// Runs the rule-based analysis.
pub fn analyse(input: &TaInput<'_>) -> TaOutput {
    let ind = input.indicators;
    let price = input.current_price;
    let mut out = TaOutput::neutral(input.symbol, input.timeframe, input.timestamp);
    out.model_used = RULE_BASED_MODEL.to_string();

    let (Some(rsi), Some(hist)) = (ind.rsi_14, ind.macd.histogram) else {
        out.primary_signal = "No analysis available".to_string();
        out.warnings
            .push("insufficient data: RSI 14 and MACD are still warming up".to_string());
        out.reasoning = format!("Analysis for {}: indicators are still warming up", input.symbol);
        return out;
    };

    out.bias = bias_rule(rsi, hist);
    out.trend_direction = match out.bias {
        Bias::Long => TrendDirection::Bullish,
        Bias::Short => TrendDirection::Bearish,
        Bias::Neutral => TrendDirection::Neutral,
    };
    out.rsi_signal = rsi_signal(rsi);
    out.macd_signal = macd_signal(hist, input.previous.and_then(|p| p.macd.histogram));
    out.trend_strength = ind.adx_14.map_or(0.5, |adx| (adx / 50.0).clamp(0.0, 1.0));
    out.momentum_score = momentum(rsi, hist, ind.atr_14, ind.stochastic_rsi.k);
    let own_trend = timeframe_trend(ind).map(|t| (input.timeframe, t));
    out.confidence = evidence_confidence(out.bias, ind, price, own_trend, input.timeframe_trends);

    if price > Decimal::ZERO {
        let (support, resistance) = key_levels(price, ind, input.recent_candles);
        out.current_position = position(price, &support, &resistance, ind.bollinger_bands.position);
        out.support_levels = support;
        out.resistance_levels = resistance;
    } else {
        out.warnings
            .push("no valid current price: key levels skipped".to_string());
    }

    if out.trend_direction != TrendDirection::Neutral {
        out.timeframe_alignment = input
            .timeframe_trends
            .iter()
            .filter(|(_, t)| *t == out.trend_direction)
            .map(|(tf, _)| tf.to_string())
            .collect();
        let opposed = input
            .timeframe_trends
            .iter()
            .filter(|(_, t)| *t != out.trend_direction && *t != TrendDirection::Neutral)
            .count();
        if opposed > 0 {
            out.warnings
                .push(format!("{opposed} timeframe(s) trend against the {} bias", out.bias));
        }
    }

    out.primary_signal = match out.bias {
        Bias::Long => format!("long bias: RSI {rsi:.1} above 60 with MACD histogram {hist:+.4}"),
        Bias::Short => format!("short bias: RSI {rsi:.1} below 40 with MACD histogram {hist:+.4}"),
        Bias::Neutral => format!("no directional signal: RSI {rsi:.1}, MACD histogram {hist:+.4}"),
    };
    secondary_and_warnings(&mut out, ind, price, rsi);
    out.reasoning = truncate_reasoning(&reasoning_text(&out, ind));
    out
}

/// Weights of the evidence in [`evidence_confidence`] (sum 1).
pub const CONFIDENCE_WEIGHTS: [f64; 5] = [0.30, 0.25, 0.25, 0.10, 0.10];

/// The rule-based confidence (module docs): how strongly the evidence supports `bias`.
/// `own_trend` is the analysed timeframe's EMA 9/21 trend, `others` every other timeframe's.
pub fn evidence_confidence(
    bias: Bias,
    ind: &IndicatorSnapshot,
    price: Decimal,
    own_trend: Option<(Timeframe, TrendDirection)>,
    others: &[(Timeframe, TrendDirection)],
) -> f64 {
    let (direction, scale) = match bias {
        Bias::Long => (1.0, 1.0),
        Bias::Short => (-1.0, 1.0),
        Bias::Neutral => match own_trend.map(|(_, t)| t) {
            Some(TrendDirection::Bullish) => (1.0, 0.5),
            Some(TrendDirection::Bearish) => (-1.0, 0.5),
            _ => return 0.0,
        },
    };
    let wanted = if direction > 0.0 {
        TrendDirection::Bullish
    } else {
        TrendDirection::Bearish
    };
    let trends: Vec<TrendDirection> = own_trend
        .iter()
        .map(|(_, t)| *t)
        .chain(
            others
                .iter()
                .filter(|(tf, _)| own_trend.is_none_or(|(own, _)| own != *tf))
                .map(|(_, t)| *t),
        )
        .collect();
    let agree = trends.iter().filter(|t| **t == wanted).count() as f64;
    let oppose = trends
        .iter()
        .filter(|t| **t != wanted && **t != TrendDirection::Neutral)
        .count() as f64;
    let alignment = if trends.is_empty() {
        0.0
    } else {
        ((agree - oppose) / trends.len() as f64).max(0.0)
    };
    let strength = ind.adx_14.map_or(0.0, |adx| ((adx - 15.0) / 25.0).clamp(0.0, 1.0));
    let unit = |x: f64| if x.is_finite() { x.clamp(0.0, 1.0) } else { 0.0 };
    let mut parts = Vec::with_capacity(3);
    if let (Some(hist), Some(atr)) = (ind.macd.histogram, ind.atr_14.filter(|a| *a > 0.0)) {
        parts.push(unit((hist / (0.25 * atr)).tanh() * direction));
    }
    if let Some(rsi) = ind.rsi_14 {
        parts.push(unit((rsi - 50.0) / 25.0 * direction));
    }
    if let Some(roc) = ind.roc_10 {
        parts.push(unit((roc / 2.0).tanh() * direction));
    }
    let momentum = if parts.is_empty() {
        0.0
    } else {
        parts.iter().sum::<f64>() / parts.len() as f64
    };
    let price_f = price.to_f64().filter(|p| *p > 0.0);
    let atr_pct = match (ind.atr_14, price_f) {
        (Some(atr), Some(p)) => Some(atr / p * 100.0),
        _ => None,
    };
    let bb_width_pct = ind.bollinger_bands.width.map(|w| w * 100.0);
    let volatility = if ind.squeeze_detected == Some(true) {
        0.5
    } else {
        match atr_pct {
            None => 0.5,
            Some(a) if a > 5.0 => 0.2,
            Some(a) if a > 3.0 || bb_width_pct.is_some_and(|w| w > 10.0) => 0.6,
            Some(_) => 1.0,
        }
    };
    let volume = ind.volume_vs_avg.map_or(0.5, |v| unit(v / 1.5));
    let [wa, ws, wm, wv, wu] = CONFIDENCE_WEIGHTS;
    let c = (wa * alignment + ws * strength + wm * momentum + wv * volatility + wu * volume) * scale;
    (unit(c) * 10_000.0).round() / 10_000.0
}

/// Trend of one timeframe for the multi-timeframe state (reference §2.2): bullish if
/// EMA 9 > EMA 21, else bearish; `None` while either is warming up.
pub fn timeframe_trend(indicators: &IndicatorSnapshot) -> Option<TrendDirection> {
    match (indicators.ema_9, indicators.ema_21) {
        (Some(fast), Some(slow)) if fast > slow => Some(TrendDirection::Bullish),
        (Some(_), Some(_)) => Some(TrendDirection::Bearish),
        _ => None,
    }
}

/// Trend alignment score (reference §2.2): (bullish − bearish) / total, rounded to 2
/// decimals; 0 when no timeframe has a trend.
pub fn trend_alignment_score(trends: &[(Timeframe, TrendDirection)]) -> f64 {
    let bull = trends.iter().filter(|(_, t)| *t == TrendDirection::Bullish).count() as f64;
    let bear = trends.iter().filter(|(_, t)| *t == TrendDirection::Bearish).count() as f64;
    if trends.is_empty() {
        return 0.0;
    }
    (((bull - bear) / trends.len() as f64) * 100.0).round() / 100.0
}

/// §1.1: long if RSI > 60 and histogram > 0, short if RSI < 40 and histogram < 0.
pub fn bias_rule(rsi: f64, macd_histogram: f64) -> Bias {
    if rsi > 60.0 && macd_histogram > 0.0 {
        Bias::Long
    } else if rsi < 40.0 && macd_histogram < 0.0 {
        Bias::Short
    } else {
        Bias::Neutral
    }
}

pub fn rsi_signal(rsi: f64) -> RsiSignal {
    if rsi < 30.0 {
        RsiSignal::Oversold
    } else if rsi > 70.0 {
        RsiSignal::Overbought
    } else {
        RsiSignal::Neutral
    }
}

pub fn macd_signal(histogram: f64, previous_histogram: Option<f64>) -> MacdSignal {
    match previous_histogram {
        Some(prev) if prev <= 0.0 && histogram > 0.0 => MacdSignal::BullishCross,
        Some(prev) if prev >= 0.0 && histogram < 0.0 => MacdSignal::BearishCross,
        _ if histogram > 0.0 => MacdSignal::Bullish,
        _ if histogram < 0.0 => MacdSignal::Bearish,
        _ => MacdSignal::Neutral,
    }
}

fn momentum(rsi: f64, hist: f64, atr: Option<f64>, stoch_k: Option<f64>) -> f64 {
    let mut parts = vec![(rsi - 50.0) / 50.0];
    if let Some(atr) = atr.filter(|a| *a > 0.0) {
        parts.push((hist / (0.25 * atr)).tanh());
    }
    if let Some(k) = stoch_k {
        parts.push((k - 50.0) / 50.0);
    }
    let score = parts.iter().sum::<f64>() / parts.len() as f64;
    if score.is_finite() {
        score.clamp(-1.0, 1.0)
    } else {
        0.0
    }
}

fn key_levels(price: Decimal, ind: &IndicatorSnapshot, candles: &[Candle]) -> (Vec<Decimal>, Vec<Decimal>) {
    let swing_high = candles.iter().map(|c| c.high).max();
    let swing_low = candles.iter().map(|c| c.low).min();
    let from_indicators = [
        ind.bollinger_bands.upper,
        ind.bollinger_bands.lower,
        ind.sma_20,
        ind.sma_50,
        ind.sma_200,
        ind.ema_50,
        ind.ema_200,
        ind.vwap,
        ind.supertrend.value,
    ];
    let levels: Vec<Decimal> = from_indicators
        .into_iter()
        .flatten()
        .filter_map(as_price)
        .chain([swing_high, swing_low].into_iter().flatten())
        .filter(|v| *v > Decimal::ZERO)
        .collect();
    let mut support: Vec<Decimal> = levels.iter().copied().filter(|v| *v < price).collect();
    let mut resistance: Vec<Decimal> = levels.iter().copied().filter(|v| *v > price).collect();
    support.sort_by(|a, b| b.cmp(a));
    resistance.sort();
    (merge_levels(support, price), merge_levels(resistance, price))
}

/// An indicator value as a price level: finite and positive, at most 8 decimal places.
fn as_price(v: f64) -> Option<Decimal> {
    if !v.is_finite() || v <= 0.0 {
        return None;
    }
    Decimal::from_f64_retain(v).map(|d| d.round_dp(8).normalize())
}

/// Drops levels within 0.1 % of price of the previous kept one; keeps the nearest three.
fn merge_levels(sorted_nearest_first: Vec<Decimal>, price: Decimal) -> Vec<Decimal> {
    let mut kept: Vec<Decimal> = Vec::with_capacity(MAX_LEVELS);
    for level in sorted_nearest_first {
        if kept.len() == MAX_LEVELS {
            break;
        }
        let far = match kept.last() {
            Some(last) => (*last - level).abs() > price * LEVEL_MERGE_FRACTION,
            None => true,
        };
        if far {
            kept.push(level);
        }
    }
    kept
}

fn position(price: Decimal, support: &[Decimal], resistance: &[Decimal], bb_position: Option<f64>) -> PricePosition {
    if let (Some(s), Some(r)) = (support.first(), resistance.first()) {
        // Support is below the price and resistance above it, so the range is never empty.
        if let Some(frac) = (price - s).checked_div(r - s) {
            return if frac < Decimal::new(25, 2) {
                PricePosition::NearSupport
            } else if frac > Decimal::new(75, 2) {
                PricePosition::NearResistance
            } else {
                PricePosition::MidRange
            };
        }
    }
    match bb_position {
        Some(p) if p < 0.2 => PricePosition::NearSupport,
        Some(p) if p > 0.8 => PricePosition::NearResistance,
        _ => PricePosition::MidRange,
    }
}

fn secondary_and_warnings(out: &mut TaOutput, ind: &IndicatorSnapshot, price: Decimal, rsi: f64) {
    match out.macd_signal {
        MacdSignal::BullishCross => out.secondary_signals.push("MACD bullish cross".to_string()),
        MacdSignal::BearishCross => out.secondary_signals.push("MACD bearish cross".to_string()),
        _ => {}
    }
    match out.rsi_signal {
        RsiSignal::Overbought => out.warnings.push(format!("RSI overbought ({rsi:.1})")),
        RsiSignal::Oversold => out.warnings.push(format!("RSI oversold ({rsi:.1})")),
        RsiSignal::Neutral => {}
    }
    if let Some(ema200) = ind.ema_200 {
        if let Some(price) = price.to_f64() {
            let side = if price >= ema200 { "above" } else { "below" };
            out.secondary_signals.push(format!("price {side} EMA 200"));
        }
    }
    if let (Some(e9), Some(e21)) = (ind.ema_9, ind.ema_21) {
        let side = if e9 >= e21 { "above" } else { "below" };
        out.secondary_signals.push(format!("EMA 9 {side} EMA 21"));
    }
    match ind.supertrend.direction {
        Some(1) => out.secondary_signals.push("Supertrend up".to_string()),
        Some(-1) => out.secondary_signals.push("Supertrend down".to_string()),
        _ => {}
    }
    if let Some(adx) = ind.adx_14 {
        let kind = if adx > 25.0 { "trending" } else { "weak trend" };
        out.secondary_signals.push(format!("ADX {adx:.1} ({kind})"));
    }
    if ind.squeeze_detected == Some(true) {
        out.warnings
            .push("Bollinger squeeze: volatility expansion pending".to_string());
    }
    if let Some(v) = ind.volume_vs_avg.filter(|v| *v >= 2.0) {
        out.secondary_signals.push(format!("volume {v:.1}x average"));
    }
    let against = matches!(
        (out.bias, out.macd_signal),
        (Bias::Long, MacdSignal::BearishCross) | (Bias::Short, MacdSignal::BullishCross)
    );
    if against {
        out.warnings.push("MACD cross against the bias".to_string());
    }
}

fn reasoning_text(out: &TaOutput, ind: &IndicatorSnapshot) -> String {
    let mut parts = vec![format!("{} {}: {}", out.symbol, out.timeframe, out.primary_signal)];
    parts.push(format!(
        "momentum {:+.2}, trend strength {:.2}",
        out.momentum_score, out.trend_strength
    ));
    if let Some(adx) = ind.adx_14 {
        parts.push(format!("ADX {adx:.1}"));
    }
    if !out.secondary_signals.is_empty() {
        parts.push(out.secondary_signals.join(", "));
    }
    if !out.warnings.is_empty() {
        parts.push(format!("warnings: {}", out.warnings.join(", ")));
    }
    parts.join("; ")
}

/// Cuts `text` to [`MAX_REASONING_CHARS`] characters (497 + "..."), on character boundaries.
pub fn truncate_reasoning(text: &str) -> String {
    truncate_chars(text, MAX_REASONING_CHARS)
}

/// Cuts `text` to at most `max` characters, ending in "..." when cut.
pub fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max.saturating_sub(3)).collect();
    s.push_str("...");
    s
}

impl TaOutput {
    /// Everything neutral, confidence 0, default reasoning "Analysis for <symbol>".
    pub fn neutral(symbol: &Symbol, timeframe: Timeframe, timestamp: DateTime<Utc>) -> Self {
        Self {
            symbol: symbol.clone(),
            timeframe,
            timestamp,
            trend_direction: TrendDirection::Neutral,
            trend_strength: 0.5,
            timeframe_alignment: Vec::new(),
            momentum_score: 0.0,
            rsi_signal: RsiSignal::Neutral,
            macd_signal: MacdSignal::Neutral,
            resistance_levels: Vec::new(),
            support_levels: Vec::new(),
            current_position: PricePosition::MidRange,
            primary_signal: String::new(),
            secondary_signals: Vec::new(),
            warnings: Vec::new(),
            bias: Bias::Neutral,
            confidence: 0.0,
            reasoning: format!("Analysis for {symbol}"),
            model_used: String::new(),
        }
    }

    /// The output when the model call failed (reference §1.1): neutral, confidence 0,
    /// "No analysis available", warning "LLM call failed".
    pub fn model_failure(symbol: &Symbol, timeframe: Timeframe, timestamp: DateTime<Utc>, error: &str) -> Self {
        let mut out = Self::neutral(symbol, timeframe, timestamp);
        out.primary_signal = "No analysis available".to_string();
        out.warnings.push("LLM call failed".to_string());
        out.reasoning = truncate_reasoning(&format!("LLM error: {error}"));
        out
    }

    /// Brings an externally produced output (e.g. parsed from a model) into range: numbers
    /// clamped (non-finite → defaults), levels must be finite and positive, reasoning cut to
    /// 500 characters or defaulted when shorter than 10.
    pub fn sanitised(mut self) -> Self {
        let clamp = |x: f64, lo: f64, hi: f64, default: f64| {
            if x.is_finite() {
                x.clamp(lo, hi)
            } else {
                default
            }
        };
        self.trend_strength = clamp(self.trend_strength, 0.0, 1.0, 0.5);
        self.momentum_score = clamp(self.momentum_score, -1.0, 1.0, 0.0);
        self.confidence = clamp(self.confidence, 0.0, 1.0, 0.0);
        self.support_levels.retain(|v| *v > Decimal::ZERO);
        self.resistance_levels.retain(|v| *v > Decimal::ZERO);
        if self.reasoning.trim().chars().count() < 10 {
            self.reasoning = format!("Analysis for {}", self.symbol);
        }
        self.reasoning = truncate_reasoning(&self.reasoning);
        self
    }

    /// The bus event for this output.
    pub fn to_signal(&self, meta: EventMeta) -> TaSignal {
        TaSignal {
            meta,
            symbol: self.symbol.clone(),
            timeframe: self.timeframe,
            trend_direction: self.trend_direction,
            trend_strength: self.trend_strength,
            momentum_score: self.momentum_score,
            bias: self.bias,
            confidence: self.confidence,
            reasoning: self.reasoning.clone(),
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
