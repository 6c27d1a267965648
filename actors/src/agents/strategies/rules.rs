//! The signal rules of the four strategies (module docs of [`super`] for the table). Indicator
//! math stays in `f64`, as in the analysis; the levels become decimals in [`super::evaluate`].
//!
//! Confidences (each capped at 0.95, an entry needs ≥ 0.65):
//! - trend: 0.60 + 0.20·clamp((ADX − min_adx)/20) + 0.15·alignment share (+0.05 when the TA
//!   bias agrees);
//! - momentum: 0.55 + 0.15·tanh(|histogram|/(0.25·ATR)) + 0.15·clamp(|RSI − 50|/25) +
//!   0.10·tanh(|ROC|/2);
//! - breakout: 0.62 + 0.15·clamp((volume ratio − min)/min) + 0.10·clamp((ADX − 20)/20) (+0.05 for a
//!   squeeze release);
//! - mean reversion: 0.60 + 0.20·clamp((threshold − RSI)/15) + 0.15·clamp(1 − position/threshold).

use super::{BreakoutParams, MeanReversionParams, MomentumParams, Setup, TrendParams};
use crate::domain::{Bias, Candle, Timeframe, TrendDirection};
use crate::indicators::IndicatorSnapshot;
use crate::messages::TaSignal;
use rust_decimal::prelude::ToPrimitive;

/// What the rules look at.
pub(crate) struct Ctx<'a> {
    /// The last close as a float, for comparisons with the (float) indicators only; the stop and
    /// take-profit are priced in `Decimal` from the market price (`StrategyInput::current_price`).
    pub level: f64,
    pub ind: &'a IndicatorSnapshot,
    pub previous: Option<&'a IndicatorSnapshot>,
    pub candles: &'a [Candle],
    pub trends: &'a [(Timeframe, TrendDirection)],
    pub ta: &'a TaSignal,
}

const CAP: f64 = 0.95;

fn unit(x: f64) -> f64 {
    if x.is_finite() {
        x.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

fn none(name: &str, why: impl std::fmt::Display) -> Setup {
    Setup::None(format!("{name}: {why}"))
}

fn entry(long: bool, confidence: f64, atr_pct: f64, min_tp: Option<f64>, reason: String) -> Setup {
    Setup::Entry {
        long,
        confidence: confidence.min(CAP),
        atr_pct,
        min_take_profit_pct: min_tp,
        reason,
    }
}

/// Trend following: stacked EMAs, ADX, agreement of the other timeframes; ATR stop.
pub(crate) fn trend(c: &Ctx<'_>, p: &TrendParams) -> Setup {
    let i = c.ind;
    let (Some(e9), Some(e21), Some(adx), Some(atr)) = (i.ema_9, i.ema_21, i.adx_14, i.atr_14) else {
        return none("trend", "EMA 9/21, ADX or ATR still warming up");
    };
    let long = e9 > e21;
    let stacked = i.ema_50.is_none_or(|e50| if long { e21 > e50 } else { e21 < e50 });
    let price_side = if long { c.level > e21 } else { c.level < e21 };
    if !(stacked && price_side) || e9 == e21 {
        return none(
            "trend",
            format!(
                "no stacked trend (EMA 9 {e9:.6}, EMA 21 {e21:.6}, price {:.6})",
                c.level
            ),
        );
    }
    if adx < p.min_adx {
        return none("trend", format!("ADX {adx:.1} below {}", p.min_adx));
    }
    let wanted = if long {
        TrendDirection::Bullish
    } else {
        TrendDirection::Bearish
    };
    let share = if c.trends.is_empty() {
        0.5
    } else {
        c.trends.iter().filter(|(_, t)| *t == wanted).count() as f64 / c.trends.len() as f64
    };
    if share < p.min_alignment {
        return none(
            "trend",
            format!("only {:.0}% of the other timeframes agree", share * 100.0),
        );
    }
    let ta_agrees = matches!((c.ta.bias, long), (Bias::Long, true) | (Bias::Short, false));
    let confidence = 0.60 + 0.20 * unit((adx - p.min_adx) / 20.0) + 0.15 * share + if ta_agrees { 0.05 } else { 0.0 };
    entry(
        long,
        confidence,
        p.atr_stop_multiplier * atr / c.level * 100.0,
        None,
        format!(
            "EMA 9/21/50 stacked, ADX {adx:.1}, {:.0}% of timeframes aligned",
            share * 100.0
        ),
    )
}

/// Momentum: MACD histogram positive and rising, RSI in the entry band, ROC confirming.
pub(crate) fn momentum(c: &Ctx<'_>, p: &MomentumParams) -> Setup {
    let i = c.ind;
    let (Some(hist), Some(rsi), Some(roc), Some(atr)) = (i.macd.histogram, i.rsi_14, i.roc_10, i.atr_14) else {
        return none("momentum", "MACD, RSI, ROC or ATR still warming up");
    };
    let prev = c.previous.and_then(|p| p.macd.histogram);
    let long = hist > 0.0;
    let rising = prev.is_none_or(|ph| if long { hist > ph } else { hist < ph });
    let rsi_ok = if long {
        (p.rsi_entry..=p.rsi_max).contains(&rsi)
    } else {
        (100.0 - p.rsi_max..=100.0 - p.rsi_entry).contains(&rsi)
    };
    let roc_ok = if long {
        roc >= p.min_roc_pct
    } else {
        roc <= -p.min_roc_pct
    };
    if hist == 0.0 || !rising || !rsi_ok || !roc_ok {
        return none(
            "momentum",
            format!("no momentum entry (histogram {hist:+.6}, RSI {rsi:.1}, ROC {roc:+.2} %)"),
        );
    }
    let confidence = 0.55
        + 0.15 * unit((hist.abs() / (0.25 * atr)).tanh())
        + 0.15 * unit((rsi - 50.0).abs() / 25.0)
        + 0.10 * unit((roc.abs() / 2.0).tanh());
    entry(
        long,
        confidence,
        p.atr_stop_multiplier * atr / c.level * 100.0,
        None,
        format!("MACD histogram {hist:+.6} rising, RSI {rsi:.1}, ROC {roc:+.2} %"),
    )
}

/// Breakout: the close leaves the Donchian channel of the candles before it, or a Bollinger
/// squeeze releases, with volume.
pub(crate) fn breakout(c: &Ctx<'_>, p: &BreakoutParams) -> Setup {
    let i = c.ind;
    let Some(atr) = i.atr_14 else {
        return none("breakout", "ATR still warming up");
    };
    let n = p.channel_candles;
    let (donchian_long, donchian_short, channel) = match c.candles.split_last() {
        Some((last, before)) if before.len() >= n => {
            let window = &before[before.len() - n..];
            let high = window.iter().map(|k| k.high).max().and_then(|d| d.to_f64());
            let low = window.iter().map(|k| k.low).min().and_then(|d| d.to_f64());
            let close = last.close.to_f64();
            match (high, low, close) {
                (Some(h), Some(l), Some(x)) => (x > h, x < l, Some((l, h))),
                _ => (false, false, None),
            }
        }
        _ => (false, false, None),
    };
    let released = c.previous.and_then(|p| p.squeeze_detected) == Some(true) && i.squeeze_detected != Some(true);
    let bb = &i.bollinger_bands;
    let release_long = released && bb.upper.is_some_and(|u| c.level > u);
    let release_short = released && bb.lower.is_some_and(|l| c.level < l);
    let long = donchian_long || release_long;
    let short = donchian_short || release_short;
    if long == short {
        let ch = channel.map_or("no channel yet".to_string(), |(l, h)| {
            format!("price {:.6} inside the {n}-candle channel {l:.6}..{h:.6}", c.level)
        });
        return none("breakout", ch);
    }
    let volume = i.volume_vs_avg.unwrap_or(0.0);
    if volume < p.min_volume_ratio {
        return none(
            "breakout",
            format!(
                "breakout without volume ({volume:.2}x average, needs {})",
                p.min_volume_ratio
            ),
        );
    }
    let min = p.min_volume_ratio.max(0.1);
    let adx = i.adx_14.unwrap_or(20.0);
    let is_release = if long { release_long } else { release_short };
    let confidence = 0.62
        + 0.15 * unit((volume - min) / min)
        + 0.10 * unit((adx - 20.0) / 20.0)
        + if is_release { 0.05 } else { 0.0 };
    let kind = if is_release {
        "Bollinger squeeze release"
    } else {
        "Donchian channel break"
    };
    entry(
        long,
        confidence,
        p.atr_stop_multiplier * atr / c.level * 100.0,
        None,
        format!("{kind} with volume {volume:.2}x average"),
    )
}

/// Mean reversion: RSI and Bollinger extremes; target at least the middle band.
pub(crate) fn mean_reversion(c: &Ctx<'_>, p: &MeanReversionParams) -> Setup {
    let i = c.ind;
    let bb = &i.bollinger_bands;
    let (Some(rsi), Some(pos), Some(mid), Some(atr)) = (i.rsi_14, bb.position, bb.middle, i.atr_14) else {
        return none("mean_reversion", "RSI, Bollinger bands or ATR still warming up");
    };
    let long = rsi <= p.rsi_oversold && pos <= p.band_position;
    let short = rsi >= 100.0 - p.rsi_oversold && pos >= 1.0 - p.band_position;
    if !(long || short) {
        return none(
            "mean_reversion",
            format!("no extreme (RSI {rsi:.1}, band position {pos:.2})"),
        );
    }
    let (rsi_depth, band_depth) = if long {
        ((p.rsi_oversold - rsi) / 15.0, 1.0 - pos / p.band_position.max(1e-9))
    } else {
        (
            (rsi - (100.0 - p.rsi_oversold)) / 15.0,
            1.0 - (1.0 - pos) / p.band_position.max(1e-9),
        )
    };
    let confidence = 0.60 + 0.20 * unit(rsi_depth) + 0.15 * unit(band_depth);
    let to_middle = (mid - c.level).abs() / c.level * 100.0;
    let side = if long { "oversold" } else { "overbought" };
    entry(
        long,
        confidence,
        p.atr_stop_multiplier * atr / c.level * 100.0,
        Some(to_middle),
        format!("{side}: RSI {rsi:.1}, band position {pos:.2}, middle band {to_middle:.2} % away"),
    )
}
