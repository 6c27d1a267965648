//! [`IndicatorEngine`]: the full indicator set of reference §2.1 for one symbol and timeframe,
//! updated candle by candle.

use super::primitives::{Adx, Atr, Bollinger, Choppiness, Ema, Macd, Obv, Roc, Rsi, Sma, StochRsi, Supertrend, Vwap};
use super::{BollingerValue, IndicatorSnapshot, MacdValue, StochRsiValue, SupertrendValue};
use crate::domain::Candle;
use chrono::{DateTime, Utc};
use rust_decimal::prelude::ToPrimitive;

/// One candle as plain floats (the engine's input; [`IndicatorEngine::update`] converts a
/// [`Candle`] into this).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    pub open_time: DateTime<Utc>,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

impl Bar {
    /// Converts the decimal prices and volume of `candle` to `f64`.
    pub fn from_candle(candle: &Candle) -> Self {
        let f = |d: rust_decimal::Decimal| d.to_f64().unwrap_or(f64::NAN);
        Self {
            open_time: candle.open_time,
            open: f(candle.open),
            high: f(candle.high),
            low: f(candle.low),
            close: f(candle.close),
            volume: f(candle.volume),
        }
    }
}

/// How the VWAP accumulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VwapAnchor {
    /// Reset at every UTC day boundary (the configured "session" anchor).
    #[default]
    UtcSession,
    /// Never reset: cumulative since the engine started.
    Cumulative,
}

/// Why a candle was not applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IndicatorError {
    #[error("candle at {got} is not after the last applied candle at {last}")]
    OutOfOrder { last: DateTime<Utc>, got: DateTime<Utc> },
    #[error("candle at {at} has a non-finite or negative value")]
    InvalidValue { at: DateTime<Utc> },
}

/// Incremental indicators for one symbol and timeframe. Each update is O(1) (amortised O(1)
/// for rolling extremes) in time and memory: nothing is recomputed over history.
#[derive(Debug, Clone)]
pub struct IndicatorEngine {
    ema_9: Ema,
    ema_21: Ema,
    ema_50: Ema,
    ema_200: Ema,
    sma_20: Sma,
    sma_50: Sma,
    sma_200: Sma,
    rsi_14: Rsi,
    atr_14: Atr,
    adx_14: Adx,
    roc_10: Roc,
    obv: Obv,
    vwap: Vwap,
    vwap_anchor: VwapAnchor,
    choppiness_14: Choppiness,
    volume_sma_20: Sma,
    macd: Macd,
    bollinger: Bollinger,
    stoch_rsi: StochRsi,
    supertrend: Supertrend,
    squeeze_ema: Ema,
    squeeze_atr: Atr,
    last_time: Option<DateTime<Utc>>,
    last_close: Option<f64>,
    candles: u64,
    snapshot: IndicatorSnapshot,
}

impl Default for IndicatorEngine {
    fn default() -> Self {
        Self::new()
    }
}

/// Candles after which every indicator has a value (the longest window: EMA/SMA 200).
pub const WARM_UP_CANDLES: usize = 200;

/// Keltner multiplier of the squeeze test (BB 20/2 inside KC EMA 20 ± 1.5·ATR 20).
const SQUEEZE_KC_MULT: f64 = 1.5;
const SQUEEZE_PERIOD: usize = 20;

impl IndicatorEngine {
    /// The reference configuration: EMA 9/21/50/200, SMA 20/50/200, RSI 14, ATR 14, ADX 14,
    /// ROC 10, MACD 12/26/9, Bollinger 20/2, stochastic RSI 14/14/3/3, choppiness 14,
    /// Supertrend 10/3, volume SMA 20, squeeze BB 20/2 inside KC 20/1.5, session VWAP.
    pub fn new() -> Self {
        Self::with_vwap_anchor(VwapAnchor::default())
    }

    pub fn with_vwap_anchor(vwap_anchor: VwapAnchor) -> Self {
        Self {
            ema_9: Ema::new(9),
            ema_21: Ema::new(21),
            ema_50: Ema::new(50),
            ema_200: Ema::new(200),
            sma_20: Sma::new(20),
            sma_50: Sma::new(50),
            sma_200: Sma::new(200),
            rsi_14: Rsi::new(14),
            atr_14: Atr::new(14),
            adx_14: Adx::new(14),
            roc_10: Roc::new(10),
            obv: Obv::default(),
            vwap: Vwap::default(),
            vwap_anchor,
            choppiness_14: Choppiness::new(14),
            volume_sma_20: Sma::new(20),
            macd: Macd::new(12, 26, 9),
            bollinger: Bollinger::new(20, 2.0),
            stoch_rsi: StochRsi::new(14, 14, 3, 3),
            supertrend: Supertrend::new(10, 3.0),
            squeeze_ema: Ema::new(SQUEEZE_PERIOD),
            squeeze_atr: Atr::new(SQUEEZE_PERIOD),
            last_time: None,
            last_close: None,
            candles: 0,
            snapshot: IndicatorSnapshot::default(),
        }
    }

    /// Applies `candle` and returns the new snapshot. A candle that is not strictly after
    /// the last one, or carries invalid values, is not applied: the unchanged snapshot is
    /// returned and a warning logged (use [`Self::try_update`] to see the error).
    pub fn update(&mut self, candle: &Candle) -> IndicatorSnapshot {
        match self.try_update(candle) {
            Ok(snapshot) => snapshot,
            Err(err) => {
                tracing::warn!(symbol = %candle.symbol, timeframe = %candle.timeframe, error = %err, "candle ignored by indicator engine");
                self.snapshot.clone()
            }
        }
    }

    /// Applies `candle`.
    ///
    /// # Errors
    /// [`IndicatorError::OutOfOrder`] for a candle not after the last applied one,
    /// [`IndicatorError::InvalidValue`] for a negative price or volume.
    pub fn try_update(&mut self, candle: &Candle) -> Result<IndicatorSnapshot, IndicatorError> {
        self.apply(Bar::from_candle(candle)).cloned()
    }

    /// Applies one bar and returns a reference to the new snapshot (no clone).
    ///
    /// # Errors
    /// As [`Self::try_update`].
    pub fn apply(&mut self, bar: Bar) -> Result<&IndicatorSnapshot, IndicatorError> {
        if let Some(last) = self.last_time {
            if bar.open_time <= last {
                return Err(IndicatorError::OutOfOrder {
                    last,
                    got: bar.open_time,
                });
            }
        }
        let values = [bar.open, bar.high, bar.low, bar.close, bar.volume];
        if values.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return Err(IndicatorError::InvalidValue { at: bar.open_time });
        }
        self.last_time = Some(bar.open_time);
        self.last_close = Some(bar.close);
        self.candles += 1;
        let Bar {
            high,
            low,
            close,
            volume,
            ..
        } = bar;

        let s = &mut self.snapshot;
        s.ema_9 = self.ema_9.push(close);
        s.ema_21 = self.ema_21.push(close);
        s.ema_50 = self.ema_50.push(close);
        s.ema_200 = self.ema_200.push(close);
        s.sma_20 = self.sma_20.push(close);
        s.sma_50 = self.sma_50.push(close);
        s.sma_200 = self.sma_200.push(close);
        s.rsi_14 = self.rsi_14.push(close);
        s.atr_14 = self.atr_14.push(high, low, close);
        s.adx_14 = self.adx_14.push(high, low, close);
        s.roc_10 = self.roc_10.push(close);
        s.obv = Some(self.obv.push(close, volume));
        let anchor = match self.vwap_anchor {
            VwapAnchor::UtcSession => bar.open_time.timestamp().div_euclid(86_400),
            VwapAnchor::Cumulative => 0,
        };
        s.vwap = self.vwap.push(anchor, high, low, close, volume);
        s.choppiness_14 = self.choppiness_14.push(high, low, close);
        s.volume_sma_20 = self.volume_sma_20.push(volume);
        s.volume_vs_avg = s.volume_sma_20.and_then(|avg| (avg != 0.0).then(|| volume / avg));

        s.macd = match self.macd.push(close) {
            Some((line, signal, histogram)) => MacdValue {
                line: Some(line),
                signal: Some(signal),
                histogram: Some(histogram),
            },
            None => MacdValue::default(),
        };
        let bands = self.bollinger.push(close);
        s.bollinger_bands = match bands {
            Some((upper, middle, lower)) => BollingerValue {
                upper: Some(upper),
                middle: Some(middle),
                lower: Some(lower),
                width: (middle != 0.0).then(|| (upper - lower) / middle),
                position: Some(if upper > lower {
                    (close - lower) / (upper - lower)
                } else {
                    0.5
                }),
            },
            None => BollingerValue::default(),
        };
        s.stochastic_rsi = match self.stoch_rsi.push(close) {
            Some((k, d)) => StochRsiValue { k: Some(k), d: Some(d) },
            None => StochRsiValue::default(),
        };
        s.supertrend = match self.supertrend.push(high, low, close) {
            Some((value, direction)) => SupertrendValue {
                value: Some(value),
                direction: Some(direction),
            },
            None => SupertrendValue::default(),
        };
        let kc_mid = self.squeeze_ema.push(close);
        let kc_atr = self.squeeze_atr.push(high, low, close);
        s.squeeze_detected = match (bands, kc_mid, kc_atr) {
            (Some((upper, _, lower)), Some(mid), Some(atr)) => {
                let kc_upper = mid + SQUEEZE_KC_MULT * atr;
                let kc_lower = mid - SQUEEZE_KC_MULT * atr;
                Some(upper < kc_upper && lower > kc_lower)
            }
            _ => None,
        };
        Ok(&self.snapshot)
    }

    /// The snapshot after the last applied candle (all `None` before the first one).
    pub fn snapshot(&self) -> IndicatorSnapshot {
        self.snapshot.clone()
    }

    /// Number of candles applied.
    pub fn candles_applied(&self) -> u64 {
        self.candles
    }

    /// Close of the last applied candle.
    pub fn last_close(&self) -> Option<f64> {
        self.last_close
    }

    /// Open time of the last applied candle.
    pub fn last_open_time(&self) -> Option<DateTime<Utc>> {
        self.last_time
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]
mod tests {
    use super::*;
    use crate::domain::{Symbol, Timeframe};
    use chrono::Duration;
    use rust_decimal::Decimal;

    fn candle(i: i64, close: Decimal) -> Candle {
        Candle {
            symbol: Symbol::parse("BTC/USDT").unwrap(),
            timeframe: Timeframe::M1,
            open_time: DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc)
                + Duration::minutes(i),
            open: close,
            high: close + Decimal::ONE,
            low: close - Decimal::ONE,
            close,
            volume: Decimal::TEN,
        }
    }

    #[test]
    fn every_indicator_has_a_value_after_the_warm_up() {
        let mut e = IndicatorEngine::new();
        let mut snap = IndicatorSnapshot::default();
        for i in 0..WARM_UP_CANDLES as i64 {
            snap = e.update(&candle(i, Decimal::from(100 + (i * 7 % 11))));
        }
        let json = serde_json::to_string(&snap).unwrap();
        assert!(!json.contains("null"), "{json}");
    }

    #[test]
    fn warm_up_then_values() {
        let mut e = IndicatorEngine::new();
        assert_eq!(e.snapshot(), IndicatorSnapshot::default());
        let mut last = IndicatorSnapshot::default();
        for i in 0..40 {
            last = e.update(&candle(i, Decimal::from(100 + (i % 5))));
            if i < 8 {
                assert_eq!(last.ema_9, None, "candle {i}");
            }
        }
        assert!(last.ema_9.is_some() && last.rsi_14.is_some() && last.adx_14.is_some() && last.macd.signal.is_some());
        assert_eq!(last.sma_200, None);
        assert_eq!(e.candles_applied(), 40);
        assert_eq!(e.last_close(), Some(104.0));
    }

    #[test]
    fn out_of_order_and_invalid_candles_are_not_applied() {
        let mut e = IndicatorEngine::new();
        e.update(&candle(5, Decimal::from(100)));
        let before = e.snapshot();
        let err = e.try_update(&candle(5, Decimal::from(200))).unwrap_err();
        assert!(matches!(err, IndicatorError::OutOfOrder { .. }));
        assert!(matches!(
            e.try_update(&candle(4, Decimal::from(200))),
            Err(IndicatorError::OutOfOrder { .. })
        ));
        let mut bad = candle(6, Decimal::from(100));
        bad.volume = Decimal::from(-1);
        assert!(matches!(e.try_update(&bad), Err(IndicatorError::InvalidValue { .. })));
        // `update` ignores the rejected candle and returns the unchanged snapshot.
        assert_eq!(e.update(&candle(3, Decimal::from(1))), before);
        assert_eq!(e.candles_applied(), 1);
        assert_eq!(e.last_close(), Some(100.0));
    }

    #[test]
    fn cumulative_vwap_does_not_reset_at_midnight() {
        let mut session = IndicatorEngine::new();
        let mut cumulative = IndicatorEngine::with_vwap_anchor(VwapAnchor::Cumulative);
        let mut a = candle(23 * 60 + 59, Decimal::from(100));
        let mut b = candle(24 * 60, Decimal::from(200));
        a.high = a.close;
        a.low = a.close;
        b.high = b.close;
        b.low = b.close;
        for c in [&a, &b] {
            session.update(c);
            cumulative.update(c);
        }
        assert_eq!(session.snapshot().vwap, Some(200.0));
        assert_eq!(cumulative.snapshot().vwap, Some(150.0));
    }
}
