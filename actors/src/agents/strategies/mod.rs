//! The deterministic strategy panel: the decision "models" that need no key (issue 15).
//!
//! Each strategy is a panel member named `rule:<strategy>` (provider `rule`) and answers like a
//! model: a [`DecisionOutput`] that goes, together with the answers of any language models that
//! have keys, through the very same [`consensus`](super::trading_decision::consensus) (quorum,
//! agreement classes, confidence bonus, HOLD when unclear), and is stored in `model_comparisons`.
//!
//! | strategy | trades in | long entry (short mirrored) |
//! |---|---|---|
//! | `rule:trend` | trending, volatile | EMA 9 > EMA 21 (> EMA 50), price above EMA 21, ADX ≥ `min_adx`, share of other timeframes trending the same way ≥ `min_alignment` |
//! | `rule:momentum` | trending, volatile, breakout_potential | MACD histogram > 0 and rising, RSI in `rsi_entry..rsi_max`, ROC 10 ≥ `min_roc_pct` |
//! | `rule:breakout` | breakout_potential, trending, volatile | close above the `channel_candles` Donchian high of the candles before it, or a Bollinger squeeze released upwards (previous candle squeezed, price above the upper band); volume ≥ `min_volume_ratio` × average |
//! | `rule:mean_reversion` | ranging only | RSI ≤ `rsi_oversold` and Bollinger position ≤ `band_position` (price at the lower band) |
//!
//! Outside the regimes it trades in, a strategy **abstains**: it is not asked, like a model
//! without a key, and the quorum is capped at the members that are asked. Every member that is
//! asked answers; the gates below turn an entry into a considered HOLD:
//! - technical analysis, regime or a price missing → HOLD, confidence 0;
//! - regime `choppy` or `unknown` → HOLD (nothing trades in chop);
//! - a long in `trending_bear`/`volatile_bear`, a short in `trending_bull`/`volatile_bull` → HOLD;
//! - sentiment against the entry with confidence ≥ 0.5 → HOLD;
//! - confidence below [`MIN_ACTION_CONFIDENCE`] → HOLD.
//!
//! Levels of every entry: stop = clamp(`atr_stop_multiplier` × ATR × regime stop multiplier,
//! `min_stop_pct`, `max_stop_pct`) percent of the price (risk rules: 0.5–5 %); take-profit =
//! stop × max(`reward_risk`, 1.5) (mean reversion: at least the distance to the middle band);
//! size = `base_position_pct` × regime size multiplier; leverage 1; entry at the current price.

mod rules;
#[cfg(test)]
mod tests;

use super::trading_decision::{
    fields, DecisionInput, DecisionOutput, ModelVote, MAX_REASONING_CHARS, MIN_ACTION_CONFIDENCE,
};
use crate::domain::{Regime, SentimentBias, TradeAction};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Provider name of every strategy in `model_comparisons`.
pub const RULE_PROVIDER: &str = "rule";
/// Lowest reward:risk any strategy may use (risk rule `min_reward_risk`).
pub const MIN_REWARD_RISK: Decimal = Decimal::from_parts(15, 0, 0, false, 1);
/// Sentiment against the entry with at least this confidence vetoes it.
pub const SENTIMENT_VETO_CONFIDENCE: f64 = 0.5;
/// Confidence of a considered HOLD.
pub const HOLD_CONFIDENCE: f64 = 0.5;

/// The strategies of the panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    Trend,
    Momentum,
    Breakout,
    MeanReversion,
}

impl StrategyKind {
    pub const ALL: [StrategyKind; 4] = [Self::Trend, Self::Momentum, Self::Breakout, Self::MeanReversion];

    /// The model name in votes and `model_comparisons`.
    pub fn model_name(self) -> &'static str {
        match self {
            Self::Trend => "rule:trend",
            Self::Momentum => "rule:momentum",
            Self::Breakout => "rule:breakout",
            Self::MeanReversion => "rule:mean_reversion",
        }
    }

    /// Regimes in which the strategy is asked (it abstains in the others). `choppy` and
    /// `unknown` are in every list: every strategy is asked there and answers HOLD.
    pub fn trades_in(self, regime: Regime) -> bool {
        use Regime::*;
        match self {
            Self::Trend => matches!(
                regime,
                TrendingBull | TrendingBear | VolatileBull | VolatileBear | Choppy | Unknown
            ),
            Self::Momentum | Self::Breakout => matches!(
                regime,
                TrendingBull | TrendingBear | VolatileBull | VolatileBear | BreakoutPotential | Choppy | Unknown
            ),
            Self::MeanReversion => matches!(regime, Ranging | Choppy | Unknown),
        }
    }
}

/// Levels and size of one strategy (its `atr_stop_multiplier`, `reward_risk`, `base_position_pct`).
#[derive(Debug, Clone, PartialEq)]
pub struct Levels {
    /// Stop distance in ATRs of the analysed timeframe (times the regime's stop multiplier).
    pub atr_stop_multiplier: f64,
    /// Take-profit distance / stop distance; at least 1.5.
    pub reward_risk: Decimal,
    /// Percent of equity before the regime's size multiplier.
    pub base_position_pct: Decimal,
}

/// `agents.trading_decision.strategies.trend`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrendParams {
    pub enabled: bool,
    pub min_adx: f64,
    /// Share (0..1) of the other timeframes whose EMA 9/21 trend agrees.
    pub min_alignment: f64,
    /// Stop distance in ATRs (times the regime's stop multiplier).
    pub atr_stop_multiplier: f64,
    /// Take-profit distance / stop distance; at least 1.5.
    pub reward_risk: Decimal,
    /// Percent of equity before the regime's size multiplier.
    pub base_position_pct: Decimal,
}

/// `agents.trading_decision.strategies.momentum`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MomentumParams {
    pub enabled: bool,
    /// Long needs RSI ≥ this (short ≤ 100 − this) …
    pub rsi_entry: f64,
    /// … and ≤ this (short ≥ 100 − this): no entries when overextended.
    pub rsi_max: f64,
    /// ROC 10 (percent) at least this in the entry direction.
    pub min_roc_pct: f64,
    /// Stop distance in ATRs (times the regime's stop multiplier).
    pub atr_stop_multiplier: f64,
    /// Take-profit distance / stop distance; at least 1.5.
    pub reward_risk: Decimal,
    /// Percent of equity before the regime's size multiplier.
    pub base_position_pct: Decimal,
}

/// `agents.trading_decision.strategies.breakout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakoutParams {
    pub enabled: bool,
    /// Donchian channel length in candles (before the breakout candle).
    pub channel_candles: usize,
    /// Volume of the breakout candle / 20-candle average, at least.
    pub min_volume_ratio: f64,
    /// Stop distance in ATRs (times the regime's stop multiplier).
    pub atr_stop_multiplier: f64,
    /// Take-profit distance / stop distance; at least 1.5.
    pub reward_risk: Decimal,
    /// Percent of equity before the regime's size multiplier.
    pub base_position_pct: Decimal,
}

/// `agents.trading_decision.strategies.mean_reversion`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeanReversionParams {
    pub enabled: bool,
    /// Long needs RSI ≤ this (short ≥ 100 − this).
    pub rsi_oversold: f64,
    /// Long needs Bollinger position ≤ this (short ≥ 1 − this).
    pub band_position: f64,
    /// Stop distance in ATRs (times the regime's stop multiplier).
    pub atr_stop_multiplier: f64,
    /// Take-profit distance / stop distance; at least 1.5.
    pub reward_risk: Decimal,
    /// Percent of equity before the regime's size multiplier.
    pub base_position_pct: Decimal,
}

/// `agents.trading_decision.strategies`: the panel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StrategySettings {
    pub trend: TrendParams,
    pub momentum: MomentumParams,
    pub breakout: BreakoutParams,
    pub mean_reversion: MeanReversionParams,
    /// Stop distance bounds, percent (risk rules `min_stop_distance_pct` / `max_stop_distance_pct`).
    pub min_stop_pct: Decimal,
    pub max_stop_pct: Decimal,
}

impl Default for TrendParams {
    fn default() -> Self {
        Self {
            enabled: true,
            min_adx: 20.0,
            min_alignment: 0.5,
            atr_stop_multiplier: 2.0,
            reward_risk: Decimal::new(20, 1),
            base_position_pct: Decimal::from(10),
        }
    }
}

impl Default for MomentumParams {
    fn default() -> Self {
        Self {
            enabled: true,
            rsi_entry: 55.0,
            rsi_max: 75.0,
            min_roc_pct: 0.3,
            atr_stop_multiplier: 1.5,
            reward_risk: Decimal::new(20, 1),
            base_position_pct: Decimal::from(10),
        }
    }
}

impl Default for BreakoutParams {
    fn default() -> Self {
        Self {
            enabled: true,
            channel_candles: 20,
            min_volume_ratio: 1.2,
            atr_stop_multiplier: 1.5,
            reward_risk: Decimal::new(25, 1),
            base_position_pct: Decimal::from(10),
        }
    }
}

impl Default for MeanReversionParams {
    fn default() -> Self {
        Self {
            enabled: true,
            rsi_oversold: 35.0,
            band_position: 0.1,
            atr_stop_multiplier: 1.5,
            reward_risk: Decimal::new(15, 1),
            base_position_pct: Decimal::from(8),
        }
    }
}

impl Default for StrategySettings {
    fn default() -> Self {
        Self {
            trend: TrendParams::default(),
            momentum: MomentumParams::default(),
            breakout: BreakoutParams::default(),
            mean_reversion: MeanReversionParams::default(),
            min_stop_pct: Decimal::new(5, 1),
            max_stop_pct: Decimal::from(5),
        }
    }
}

impl StrategySettings {
    /// No strategy enabled (a panel of language models only).
    pub fn none() -> Self {
        let mut s = Self::default();
        s.trend.enabled = false;
        s.momentum.enabled = false;
        s.breakout.enabled = false;
        s.mean_reversion.enabled = false;
        s
    }

    /// The enabled strategies, in panel order.
    pub fn enabled(&self) -> Vec<StrategyKind> {
        StrategyKind::ALL
            .into_iter()
            .filter(|k| match k {
                StrategyKind::Trend => self.trend.enabled,
                StrategyKind::Momentum => self.momentum.enabled,
                StrategyKind::Breakout => self.breakout.enabled,
                StrategyKind::MeanReversion => self.mean_reversion.enabled,
            })
            .collect()
    }

    /// The levels parameters of `kind`.
    pub fn levels_of(&self, kind: StrategyKind) -> Levels {
        let (atr_stop_multiplier, reward_risk, base_position_pct) = match kind {
            StrategyKind::Trend => (
                self.trend.atr_stop_multiplier,
                self.trend.reward_risk,
                self.trend.base_position_pct,
            ),
            StrategyKind::Momentum => (
                self.momentum.atr_stop_multiplier,
                self.momentum.reward_risk,
                self.momentum.base_position_pct,
            ),
            StrategyKind::Breakout => (
                self.breakout.atr_stop_multiplier,
                self.breakout.reward_risk,
                self.breakout.base_position_pct,
            ),
            StrategyKind::MeanReversion => (
                self.mean_reversion.atr_stop_multiplier,
                self.mean_reversion.reward_risk,
                self.mean_reversion.base_position_pct,
            ),
        };
        Levels {
            atr_stop_multiplier,
            reward_risk,
            base_position_pct,
        }
    }

    /// Checks every parameter; the error names the key below `agents.trading_decision.strategies`.
    ///
    /// # Errors
    /// `(key, reason)` of the first invalid parameter.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, why: &str| Err((k.to_string(), why.to_string()));
        let hundred = Decimal::ONE_HUNDRED;
        if self.min_stop_pct <= Decimal::ZERO || self.min_stop_pct >= self.max_stop_pct || self.max_stop_pct >= hundred
        {
            return err("min_stop_pct", "must satisfy 0 < min_stop_pct < max_stop_pct < 100");
        }
        for kind in StrategyKind::ALL {
            let name = kind.model_name().trim_start_matches("rule:");
            let l = self.levels_of(kind);
            if !(l.atr_stop_multiplier.is_finite() && l.atr_stop_multiplier > 0.0 && l.atr_stop_multiplier <= 10.0) {
                return err(&format!("{name}.atr_stop_multiplier"), "must be within (0, 10]");
            }
            if l.reward_risk < MIN_REWARD_RISK || l.reward_risk > Decimal::from(10) {
                return err(
                    &format!("{name}.reward_risk"),
                    "must be within 1.5..10 (risk rule min_reward_risk)",
                );
            }
            if l.base_position_pct <= Decimal::ZERO || l.base_position_pct > hundred {
                return err(&format!("{name}.base_position_pct"), "must be within (0, 100]");
            }
        }
        let t = &self.trend;
        if !(0.0..=100.0).contains(&t.min_adx) {
            return err("trend.min_adx", "must be within 0..100");
        }
        if !(0.0..=1.0).contains(&t.min_alignment) {
            return err("trend.min_alignment", "must be within 0..1");
        }
        let m = &self.momentum;
        if !(50.0..100.0).contains(&m.rsi_entry) || m.rsi_max <= m.rsi_entry || m.rsi_max > 100.0 {
            return err("momentum.rsi_entry", "must satisfy 50 <= rsi_entry < rsi_max <= 100");
        }
        if !(m.min_roc_pct.is_finite() && m.min_roc_pct >= 0.0) {
            return err("momentum.min_roc_pct", "must be a number >= 0");
        }
        let b = &self.breakout;
        if !(2..=500).contains(&b.channel_candles) {
            return err("breakout.channel_candles", "must be within 2..500");
        }
        if !(b.min_volume_ratio.is_finite() && b.min_volume_ratio >= 0.0) {
            return err("breakout.min_volume_ratio", "must be a number >= 0");
        }
        let r = &self.mean_reversion;
        if !(0.0..50.0).contains(&r.rsi_oversold) {
            return err("mean_reversion.rsi_oversold", "must be within 0..50");
        }
        if !(0.0..0.5).contains(&r.band_position) {
            return err("mean_reversion.band_position", "must be within 0..0.5");
        }
        Ok(())
    }
}

/// What a strategy's signal rule found: an entry with its raw levels, or why not.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Setup {
    Entry {
        long: bool,
        confidence: f64,
        /// Stop distance before the regime multiplier and the clamp, percent.
        atr_pct: f64,
        /// A take-profit distance the strategy wants at least (percent), e.g. the middle band.
        min_take_profit_pct: Option<f64>,
        reason: String,
    },
    None(String),
}

/// One strategy's answer: a vote, or an abstention (not asked in this regime).
#[derive(Debug, Clone, PartialEq)]
pub enum StrategyAnswer {
    Vote(DecisionOutput),
    Abstain(String),
}

/// The answer of `kind` for `input`.
pub fn evaluate(kind: StrategyKind, settings: &StrategySettings, input: &DecisionInput) -> StrategyAnswer {
    let name = kind.model_name();
    let hold = |c: f64, why: String| StrategyAnswer::Vote(DecisionOutput::hold(c, format!("{name}: {why}")));
    let (Some(ta), Some(regime), Some(snapshot)) = (&input.ta, &input.regime, &input.snapshot) else {
        return hold(0.0, "technical analysis, regime or market data missing".into());
    };
    let Some(price) = input.current_price.to_f64().filter(|p| *p > 0.0) else {
        return hold(0.0, "no current price".into());
    };
    if !kind.trades_in(regime.regime) {
        return StrategyAnswer::Abstain(format!("{name}: does not trade in a {} regime", regime.regime));
    }
    if matches!(regime.regime, Regime::Choppy | Regime::Unknown) {
        return hold(HOLD_CONFIDENCE, format!("no entries in a {} regime", regime.regime));
    }
    let ctx = rules::Ctx {
        level: price,
        ind: &snapshot.indicators,
        previous: input.previous_indicators.as_ref(),
        candles: &input.recent_candles,
        trends: &input.timeframe_trends,
        ta,
    };
    let setup = match kind {
        StrategyKind::Trend => rules::trend(&ctx, &settings.trend),
        StrategyKind::Momentum => rules::momentum(&ctx, &settings.momentum),
        StrategyKind::Breakout => rules::breakout(&ctx, &settings.breakout),
        StrategyKind::MeanReversion => rules::mean_reversion(&ctx, &settings.mean_reversion),
    };
    let (long, confidence, atr_pct, min_tp, reason) = match setup {
        Setup::None(why) => return hold(HOLD_CONFIDENCE, why),
        Setup::Entry {
            long,
            confidence,
            atr_pct,
            min_take_profit_pct,
            reason,
        } => (long, confidence, atr_pct, min_take_profit_pct, reason),
    };
    let side = if long { "long" } else { "short" };
    match regime.regime {
        Regime::TrendingBear | Regime::VolatileBear if long => {
            return hold(
                HOLD_CONFIDENCE,
                format!("{reason}; no longs in a {} regime", regime.regime),
            )
        }
        Regime::TrendingBull | Regime::VolatileBull if !long => {
            return hold(
                HOLD_CONFIDENCE,
                format!("{reason}; no shorts in a {} regime", regime.regime),
            )
        }
        _ => {}
    }
    if let Some(s) = &input.sentiment {
        let opposes = if long {
            matches!(s.bias, SentimentBias::Bearish | SentimentBias::VeryBearish)
        } else {
            matches!(s.bias, SentimentBias::Bullish | SentimentBias::VeryBullish)
        };
        if opposes && s.confidence >= SENTIMENT_VETO_CONFIDENCE {
            return hold(
                HOLD_CONFIDENCE,
                format!(
                    "{reason}; sentiment {} ({:.2}) against the {side}",
                    s.bias, s.confidence
                ),
            );
        }
    }
    let confidence = if confidence.is_finite() {
        ((confidence.clamp(0.0, 1.0)) * 10_000.0).round() / 10_000.0
    } else {
        0.0
    };
    if confidence < MIN_ACTION_CONFIDENCE {
        return hold(
            HOLD_CONFIDENCE,
            format!("{reason}; confidence {confidence:.2} below {MIN_ACTION_CONFIDENCE}"),
        );
    }
    let l = settings.levels_of(kind);
    let stop = (fields::dec(atr_pct * regime.stop_loss_atr_multiplier.max(0.1)))
        .clamp(settings.min_stop_pct, settings.max_stop_pct)
        .round_dp(2);
    let rr = l.reward_risk.max(MIN_REWARD_RISK);
    let take_profit = (stop * rr)
        .max(min_tp.map(fields::dec).unwrap_or(Decimal::ZERO))
        .min(Decimal::from(50))
        .round_dp(2);
    let size = (l.base_position_pct * fields::dec(regime.position_size_multiplier))
        .clamp(Decimal::ZERO, Decimal::ONE_HUNDRED)
        .round_dp(2);
    StrategyAnswer::Vote(DecisionOutput {
        action: if long { TradeAction::Buy } else { TradeAction::Sell },
        confidence,
        entry_price: Some(input.current_price),
        stop_loss_pct: Some(stop.normalize()),
        take_profit_pct: Some(take_profit.normalize()),
        position_size_pct: Some(size.normalize()),
        leverage: 1,
        reasoning: fields::truncate(
            &format!("{name}: {side} in {}: {reason}", regime.regime),
            MAX_REASONING_CHARS,
        ),
    })
}

/// The panel's votes (as model votes, for the consensus and `model_comparisons`) and the
/// abstentions (`model`, why).
pub fn panel_votes(settings: &StrategySettings, input: &DecisionInput) -> (Vec<ModelVote>, Vec<(String, String)>) {
    let mut votes = Vec::new();
    let mut abstained = Vec::new();
    for kind in settings.enabled() {
        match evaluate(kind, settings, input) {
            StrategyAnswer::Vote(d) => votes.push(ModelVote {
                model: kind.model_name().to_string(),
                provider: RULE_PROVIDER.to_string(),
                decision: Ok(d),
                latency_ms: 0,
                input_tokens: 0,
                output_tokens: 0,
                cost_usd: Decimal::ZERO,
            }),
            StrategyAnswer::Abstain(why) => abstained.push((kind.model_name().to_string(), why)),
        }
    }
    (votes, abstained)
}
