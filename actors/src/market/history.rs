//! Recent candles per symbol and timeframe, and the candle-derived fields of the market snapshot
//! (reference §2.2): current price, 24 h change and volume, volume against its average, the
//! candle lists per timeframe, data age and data-quality flags. Indicators and order-book
//! features are added by their own components.

use super::aggregate::{AggregateError, CandleAggregator};
use crate::domain::{Candle, Symbol, Timeframe};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Candles kept per timeframe by default: 1m 60, 5m 48, 15m 32, 1h 48, 4h 30, 1d 30.
pub fn default_lookback(tf: Timeframe) -> usize {
    match tf {
        Timeframe::M1 => 60,
        Timeframe::M5 | Timeframe::H1 => 48,
        Timeframe::M15 => 32,
        Timeframe::H4 | Timeframe::D1 => 30,
    }
}

/// Fewer candles than this on a timeframe raises `insufficient_<tf>_candles`.
pub const MIN_CANDLES_REQUIRED: usize = 20;
/// Data older than this raises `stale_data`.
pub const MAX_AGE_SECONDS: i64 = 60;
/// Candles averaged for `volume_vs_avg`.
const VOLUME_AVG_PERIOD: usize = 20;

/// One candle as shown in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandleSummary {
    /// Start of the candle's interval.
    pub timestamp: DateTime<Utc>,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub volume: Decimal,
}

impl From<&Candle> for CandleSummary {
    fn from(c: &Candle) -> Self {
        Self {
            timestamp: c.open_time,
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            volume: c.volume,
        }
    }
}

/// The candle-derived part of a `MarketSnapshot`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarketSummary {
    pub symbol: Symbol,
    /// Open time of the latest primary-timeframe candle (or of the first timeframe with data).
    pub timestamp: DateTime<Utc>,
    /// Close of that candle.
    pub current_price: Decimal,
    /// Close of the 1h candle ending 24 h before the latest 1h candle ends.
    pub price_24h_ago: Option<Decimal>,
    /// Percent, rounded to 4 decimals.
    pub price_change_24h_pct: Option<Decimal>,
    /// Sum of the last 24 hourly volumes (base units), when all 24 are present.
    pub volume_24h: Option<Decimal>,
    /// Latest primary volume ÷ mean of the last 20 primary volumes (including the latest).
    pub volume_vs_avg: Option<Decimal>,
    pub candles: BTreeMap<Timeframe, Vec<CandleSummary>>,
    /// `now` minus the close time of the newest candle of any timeframe, in seconds.
    pub data_age_seconds: i64,
    /// `stale_data`, `insufficient_<tf>_candles`, `no_order_book`.
    pub missing_data_flags: Vec<String>,
}

/// Aggregates incoming base candles and keeps the latest candles of every timeframe.
#[derive(Debug, Clone)]
pub struct MarketHistory {
    aggregator: CandleAggregator,
    lookback: BTreeMap<Timeframe, usize>,
    series: HashMap<Symbol, BTreeMap<Timeframe, VecDeque<Candle>>>,
}

impl Default for MarketHistory {
    fn default() -> Self {
        Self::new()
    }
}

impl MarketHistory {
    /// Takes 1-minute candles and keeps [`default_lookback`] candles per timeframe.
    pub fn new() -> Self {
        Self::from_base(Timeframe::M1)
    }

    /// Takes candles of `base` (e.g. a replay of hourly candles) and builds the larger timeframes.
    pub fn from_base(base: Timeframe) -> Self {
        Self {
            aggregator: CandleAggregator::from_base(base),
            lookback: Timeframe::ALL
                .into_iter()
                .map(|tf| (tf, default_lookback(tf)))
                .collect(),
            series: HashMap::new(),
        }
    }

    /// Keeps `n` (at least 1) candles of `tf`. For `volume_24h` and `price_24h_ago` the 1h
    /// lookback must be at least 25.
    #[must_use]
    pub fn with_lookback(mut self, tf: Timeframe, n: usize) -> Self {
        self.lookback.insert(tf, n.max(1));
        self
    }

    pub fn base(&self) -> Timeframe {
        self.aggregator.base()
    }

    /// Stores a closed base candle and the higher-timeframe candles it closes; returns every
    /// candle closed by it, the base candle first, ready to publish as `CandleClosed`.
    ///
    /// # Errors
    /// [`AggregateError`] for a candle of another timeframe, misaligned or out of order; nothing
    /// is stored then.
    pub fn push(&mut self, candle: &Candle) -> Result<Vec<Candle>, AggregateError> {
        let higher = self.aggregator.push(candle)?;
        let mut closed = Vec::with_capacity(1 + higher.len());
        closed.push(candle.clone());
        closed.extend(higher);
        let per_symbol = self.series.entry(candle.symbol.clone()).or_default();
        for c in &closed {
            let keep = self.lookback.get(&c.timeframe).copied().unwrap_or(1);
            let q = per_symbol.entry(c.timeframe).or_default();
            q.push_back(c.clone());
            while q.len() > keep {
                q.pop_front();
            }
        }
        Ok(closed)
    }

    /// The kept candles of `symbol` on `tf`, oldest first.
    pub fn candles(&self, symbol: &Symbol, tf: Timeframe) -> Vec<Candle> {
        self.series(symbol, tf)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn latest(&self, symbol: &Symbol, tf: Timeframe) -> Option<&Candle> {
        self.series(symbol, tf).and_then(VecDeque::back)
    }

    fn series(&self, symbol: &Symbol, tf: Timeframe) -> Option<&VecDeque<Candle>> {
        self.series.get(symbol).and_then(|m| m.get(&tf))
    }

    /// Symbols seen so far.
    pub fn symbols(&self) -> Vec<Symbol> {
        let mut s: Vec<Symbol> = self.series.keys().cloned().collect();
        s.sort();
        s
    }

    /// The candle-derived snapshot fields for `symbol` at business time `now`, with `primary`
    /// as the primary timeframe (reference default `1h`). `None` before the symbol's first candle.
    pub fn summary(&self, symbol: &Symbol, primary: Timeframe, now: DateTime<Utc>) -> Option<MarketSummary> {
        let per_symbol = self.series.get(symbol)?;
        let latest = self
            .latest(symbol, primary)
            .or_else(|| Timeframe::ALL.into_iter().find_map(|tf| self.latest(symbol, tf)))?;

        let hourly = self.series(symbol, Timeframe::H1);
        let last_hour = hourly.and_then(VecDeque::back);
        let price_24h_ago = last_hour.and_then(|last| {
            let target = last.open_time - Duration::hours(24);
            hourly?.iter().rev().find(|c| c.open_time == target).map(|c| c.close)
        });
        let price_change_24h_pct = price_24h_ago
            .filter(|p| !p.is_zero())
            .map(|p| ((latest.close - p) / p * Decimal::ONE_HUNDRED).round_dp(4));
        let volume_24h = last_hour.and_then(|last| {
            let from = last.open_time - Duration::hours(23);
            let day: Vec<&Candle> = hourly?.iter().filter(|c| c.open_time >= from).collect();
            (day.len() == 24).then(|| day.iter().map(|c| c.volume).sum())
        });
        let volume_vs_avg = self.series(symbol, latest.timeframe).and_then(|q| {
            if q.len() < VOLUME_AVG_PERIOD {
                return None;
            }
            let sum: Decimal = q.iter().rev().take(VOLUME_AVG_PERIOD).map(|c| c.volume).sum();
            let avg = sum / Decimal::from(VOLUME_AVG_PERIOD as u64);
            (!avg.is_zero()).then(|| (latest.volume / avg).round_dp(4))
        });

        let newest_close = per_symbol
            .iter()
            .filter_map(|(tf, q)| q.back().map(|c| c.open_time + Duration::seconds(tf.seconds())))
            .max()
            .unwrap_or(latest.open_time);
        let data_age_seconds = (now - newest_close).num_seconds().max(0);

        let mut flags = Vec::new();
        if data_age_seconds > MAX_AGE_SECONDS {
            flags.push("stale_data".to_owned());
        }
        let mut candles = BTreeMap::new();
        for tf in Timeframe::ALL {
            let q = per_symbol.get(&tf);
            let n = q.map_or(0, VecDeque::len);
            // Timeframes below the base are never produced and are not missing.
            if tf.seconds() >= self.aggregator.base().seconds() && n < MIN_CANDLES_REQUIRED {
                flags.push(format!("insufficient_{tf}_candles"));
            }
            if let Some(q) = q {
                candles.insert(tf, q.iter().map(CandleSummary::from).collect());
            }
        }
        flags.push("no_order_book".to_owned());

        Some(MarketSummary {
            symbol: symbol.clone(),
            timestamp: latest.open_time,
            current_price: latest.close,
            price_24h_ago,
            price_change_24h_pct,
            volume_24h,
            volume_vs_avg,
            candles,
            data_age_seconds,
            missing_data_flags: flags,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rust_decimal_macros::dec;

    fn sym() -> Symbol {
        Symbol::parse("BTC/USDT").unwrap()
    }

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    /// Minute `i`: close 1000 + i, volume 1 (volume 2 on every 60th minute's last minute).
    fn minute(i: i64) -> Candle {
        let p = Decimal::from(1000 + i);
        Candle {
            symbol: sym(),
            timeframe: Timeframe::M1,
            open_time: start() + Duration::minutes(i),
            open: p,
            high: p + dec!(1),
            low: p - dec!(1),
            close: p,
            volume: if i % 60 == 59 { dec!(2) } else { dec!(1) },
        }
    }

    #[test]
    fn push_returns_the_base_candle_then_the_candles_it_closes() {
        let mut h = MarketHistory::new();
        for i in 0..4 {
            assert_eq!(h.push(&minute(i)).unwrap().len(), 1);
        }
        let out = h.push(&minute(4)).unwrap();
        let tfs: Vec<_> = out.iter().map(|c| c.timeframe).collect();
        assert_eq!(tfs, vec![Timeframe::M1, Timeframe::M5]);
        assert!(h.push(&minute(4)).is_err(), "a repeated minute is refused");
        assert_eq!(h.candles(&sym(), Timeframe::M1).len(), 5, "and not stored");
    }

    #[test]
    fn lookbacks_bound_every_series() {
        let mut h = MarketHistory::new().with_lookback(Timeframe::M5, 3);
        for i in 0..200 {
            h.push(&minute(i)).unwrap();
        }
        let m1 = h.candles(&sym(), Timeframe::M1);
        assert_eq!(m1.len(), 60);
        assert_eq!(m1.last().unwrap().open_time, start() + Duration::minutes(199));
        let m5 = h.candles(&sym(), Timeframe::M5);
        assert_eq!(
            m5.iter().map(|c| c.open_time).collect::<Vec<_>>(),
            (37..40).map(|k| start() + Duration::minutes(5 * k)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn summary_has_24h_change_volume_and_flags() {
        let mut h = MarketHistory::new();
        let minutes = 26 * 60;
        for i in 0..minutes {
            h.push(&minute(i)).unwrap();
        }
        let last_close = start() + Duration::minutes(minutes);
        let s = h
            .summary(&sym(), Timeframe::H1, last_close + Duration::seconds(30))
            .unwrap();
        // Latest 1h candle: hour 25 (minutes 1500..1559), close 1000 + 1559.
        assert_eq!(s.timestamp, start() + Duration::hours(25));
        assert_eq!(s.current_price, dec!(2559));
        // The hour 24 h earlier is hour 1, close 1000 + 119.
        assert_eq!(s.price_24h_ago, Some(dec!(1119)));
        assert_eq!(
            s.price_change_24h_pct,
            Some(((dec!(2559) - dec!(1119)) / dec!(1119) * dec!(100)).round_dp(4))
        );
        assert_eq!(s.volume_24h, Some(dec!(1464)), "24 hours × (59 + 2)");
        assert_eq!(s.volume_vs_avg, Some(dec!(1)), "every hour has the same volume");
        assert_eq!(s.data_age_seconds, 30);
        assert_eq!(s.candles[&Timeframe::H1].len(), 26);
        assert_eq!(s.candles[&Timeframe::M1].len(), 60);
        assert!(!s.missing_data_flags.contains(&"stale_data".to_owned()));
        assert!(s.missing_data_flags.contains(&"insufficient_4h_candles".to_owned()));
        assert!(s.missing_data_flags.contains(&"insufficient_1d_candles".to_owned()));
        assert!(!s.missing_data_flags.contains(&"insufficient_1h_candles".to_owned()));
        assert!(s.missing_data_flags.contains(&"no_order_book".to_owned()));

        let later = h
            .summary(&sym(), Timeframe::H1, last_close + Duration::seconds(61))
            .unwrap();
        assert!(later.missing_data_flags.contains(&"stale_data".to_owned()));
    }

    #[test]
    fn summary_without_a_day_of_history_has_no_24h_fields() {
        let mut h = MarketHistory::new();
        for i in 0..90 {
            h.push(&minute(i)).unwrap();
        }
        let s = h
            .summary(&sym(), Timeframe::H1, start() + Duration::minutes(90))
            .unwrap();
        assert_eq!(s.current_price, dec!(1059), "the one closed hour");
        assert_eq!(
            (s.price_24h_ago, s.price_change_24h_pct, s.volume_24h, s.volume_vs_avg),
            (None, None, None, None)
        );
        // A 4h primary has no candle yet: falls back to the first timeframe with data (1m).
        let s = h
            .summary(&sym(), Timeframe::H4, start() + Duration::minutes(90))
            .unwrap();
        assert_eq!(
            (s.timestamp, s.current_price),
            (start() + Duration::minutes(89), dec!(1089))
        );
        assert!(h
            .summary(&Symbol::parse("XRP/USDT").unwrap(), Timeframe::H1, start())
            .is_none());
    }
}
