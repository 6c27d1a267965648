//! Recent candles per symbol and timeframe, and the candle-derived fields of the market snapshot
//! (reference §2.2): current price, 24 h change and volume, volume against its average, the
//! candle lists per timeframe, data age and data-quality flags. Indicators and order-book
//! features are added by their own components.

use super::aggregate::{AggregateError, CandleAggregator};
use crate::domain::{Candle, Symbol, Timeframe};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

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

/// The candle-derived part of a `MarketSnapshot` (its [`MarketHeadline`], read through `Deref`)
/// with the kept candles of every timeframe and the flags spelled out.
#[derive(Debug, Clone, PartialEq)]
pub struct MarketSummary {
    pub headline: MarketHeadline,
    pub candles: BTreeMap<Timeframe, Vec<CandleSummary>>,
    /// `stale_data`, `insufficient_<tf>_candles`, `no_order_book`.
    pub missing_data_flags: Vec<String>,
}

impl std::ops::Deref for MarketSummary {
    type Target = MarketHeadline;

    fn deref(&self) -> &MarketHeadline {
        &self.headline
    }
}

/// Every field of a [`MarketSummary`] but the candle lists, computed from the kept candles
/// without copying them: the published snapshot (one per symbol after every batch) and the
/// agents' view need only these, and copying every kept candle of every timeframe each time
/// cost more than the rest of the market data actor together.
#[derive(Debug, Clone, PartialEq)]
pub struct MarketHeadline {
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
    /// `now` minus the close time of the newest candle of any timeframe, in seconds.
    pub data_age_seconds: i64,
    /// `data_age_seconds` is above [`MAX_AGE_SECONDS`].
    pub stale: bool,
    /// Per timeframe (index [`Timeframe::index`]): produced from the base but fewer than
    /// [`MIN_CANDLES_REQUIRED`] candles kept.
    pub insufficient: [bool; 6],
}

impl MarketHeadline {
    /// `stale_data`, `insufficient_<tf>_candles` (smallest timeframe first), `no_order_book`:
    /// the flags as the snapshot and [`MarketSummary`] carry them.
    pub fn missing_data_flags(&self) -> Vec<String> {
        let mut flags = Vec::with_capacity(2 + self.insufficient.iter().filter(|x| **x).count());
        if self.stale {
            flags.push("stale_data".to_owned());
        }
        for tf in Timeframe::ALL {
            if self.insufficient[tf.index()] {
                flags.push(insufficient_flag(tf).to_owned());
            }
        }
        flags.push("no_order_book".to_owned());
        flags
    }
}

/// `insufficient_<tf>_candles`, spelled out so that raising it does not format a string.
fn insufficient_flag(tf: Timeframe) -> &'static str {
    match tf {
        Timeframe::M1 => "insufficient_1m_candles",
        Timeframe::M5 => "insufficient_5m_candles",
        Timeframe::M15 => "insufficient_15m_candles",
        Timeframe::H1 => "insufficient_1h_candles",
        Timeframe::H4 => "insufficient_4h_candles",
        Timeframe::D1 => "insufficient_1d_candles",
    }
}

/// The kept candles of one symbol, one slot per timeframe (index [`Timeframe::index`]).
#[derive(Debug, Clone, Default)]
struct SymbolSeries {
    candles: [VecDeque<Candle>; 6],
    /// The kept candles as handed out by [`MarketHistory::recent`], built on the first request
    /// after a change and shared until the next one.
    shared: [Option<Arc<[Candle]>>; 6],
    /// Per primary timeframe, the headline's price fields as last computed. They change only
    /// with a candle of that timeframe or of 1h (once an hour for the default 1h primary) while
    /// a snapshot is built after every batch; a push clears the slots it affects.
    prices: [Cell<Option<PriceFields>>; 6],
}

/// The headline fields that depend only on the kept candles of the primary timeframe and of 1h.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PriceFields {
    /// Timeframe of the candle the fields follow: the primary, or a fallback while the primary
    /// has no candle yet.
    timeframe: Timeframe,
    timestamp: DateTime<Utc>,
    current_price: Decimal,
    price_24h_ago: Option<Decimal>,
    price_change_24h_pct: Option<Decimal>,
    volume_24h: Option<Decimal>,
    volume_vs_avg: Option<Decimal>,
}

impl SymbolSeries {
    fn get(&self, tf: Timeframe) -> &VecDeque<Candle> {
        &self.candles[tf.index()]
    }

    fn latest(&self, tf: Timeframe) -> Option<&Candle> {
        self.get(tf).back()
    }

    /// A candle of `tf` was stored: the price fields that read it are out of date.
    fn forget_prices(&self, tf: Timeframe) {
        if tf == Timeframe::H1 {
            self.prices.iter().for_each(|p| p.set(None));
        } else {
            self.prices[tf.index()].set(None);
        }
    }

    /// The price fields with `primary` as the primary timeframe, from the cache when the
    /// candles they read have not changed since. `None` before the first candle.
    fn prices(&self, primary: Timeframe) -> Option<PriceFields> {
        let slot = &self.prices[primary.index()];
        if let Some(p) = slot.get() {
            return Some(p);
        }
        let p = self.compute_prices(primary)?;
        // A fallback follows another timeframe's candles, which do not clear this slot.
        if p.timeframe == primary {
            slot.set(Some(p));
        }
        Some(p)
    }

    fn compute_prices(&self, primary: Timeframe) -> Option<PriceFields> {
        let latest = self
            .latest(primary)
            .or_else(|| Timeframe::ALL.into_iter().find_map(|tf| self.latest(tf)))?;
        let hourly = self.get(Timeframe::H1);
        let price_24h_ago = close_24h_before_last(hourly);
        let price_change_24h_pct = price_24h_ago
            .filter(|p| !p.is_zero())
            .map(|p| ((latest.close - p) / p * Decimal::ONE_HUNDRED).round_dp(4));
        let volume_24h = volume_of_last_24_hours(hourly);
        let volume_vs_avg = {
            let q = self.get(latest.timeframe);
            if q.len() < VOLUME_AVG_PERIOD {
                None
            } else {
                // Newest first, as the average has always been summed.
                let sum: Decimal = q.iter().rev().take(VOLUME_AVG_PERIOD).map(|c| c.volume).sum();
                let avg = sum / Decimal::from(VOLUME_AVG_PERIOD as u64);
                (!avg.is_zero()).then(|| (latest.volume / avg).round_dp(4))
            }
        };
        Some(PriceFields {
            timeframe: latest.timeframe,
            timestamp: latest.open_time,
            current_price: latest.close,
            price_24h_ago,
            price_change_24h_pct,
            volume_24h,
            volume_vs_avg,
        })
    }
}

/// Aggregates incoming base candles and keeps the latest candles of every timeframe.
#[derive(Debug, Clone)]
pub struct MarketHistory {
    aggregator: CandleAggregator,
    /// Candles kept per timeframe (index [`Timeframe::index`]).
    lookback: [usize; 6],
    series: HashMap<Symbol, SymbolSeries>,
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
            lookback: Timeframe::ALL.map(default_lookback),
            series: HashMap::new(),
        }
    }

    /// Keeps `n` (at least 1) candles of `tf`. For `volume_24h` and `price_24h_ago` the 1h
    /// lookback must be at least 25.
    #[must_use]
    pub fn with_lookback(mut self, tf: Timeframe, n: usize) -> Self {
        self.lookback[tf.index()] = n.max(1);
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
        // Base candle plus, at most, a gap-closed and a completed candle of each target.
        let mut closed = Vec::with_capacity(4);
        closed.push(candle.clone());
        self.aggregator.push_into(candle, &mut closed)?;
        let per_symbol = match self.series.get_mut(&candle.symbol) {
            Some(s) => s,
            None => self.series.entry(candle.symbol.clone()).or_default(),
        };
        for c in &closed {
            let i = c.timeframe.index();
            let q = &mut per_symbol.candles[i];
            q.push_back(c.clone());
            while q.len() > self.lookback[i] {
                q.pop_front();
            }
            per_symbol.shared[i] = None;
            per_symbol.forget_prices(c.timeframe);
        }
        Ok(closed)
    }

    /// The kept candles of `symbol` on `tf`, oldest first.
    pub fn candles(&self, symbol: &Symbol, tf: Timeframe) -> Vec<Candle> {
        self.series(symbol, tf)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The same candles as [`Self::candles`], shared: repeated requests between two candles of
    /// `tf` hand out one copy.
    pub fn recent(&mut self, symbol: &Symbol, tf: Timeframe) -> Arc<[Candle]> {
        let Some(per_symbol) = self.series.get_mut(symbol) else {
            return Arc::from([]);
        };
        let i = tf.index();
        let candles = &per_symbol.candles[i];
        Arc::clone(per_symbol.shared[i].get_or_insert_with(|| candles.iter().cloned().collect()))
    }

    pub fn latest(&self, symbol: &Symbol, tf: Timeframe) -> Option<&Candle> {
        self.series(symbol, tf).and_then(VecDeque::back)
    }

    fn series(&self, symbol: &Symbol, tf: Timeframe) -> Option<&VecDeque<Candle>> {
        self.series.get(symbol).map(|s| s.get(tf))
    }

    /// Symbols seen so far.
    pub fn symbols(&self) -> Vec<Symbol> {
        let mut s: Vec<Symbol> = self.series.keys().cloned().collect();
        s.sort();
        s
    }

    /// The candle-derived snapshot fields for `symbol` at business time `now`, with `primary`
    /// as the primary timeframe (reference default `1h`), without the candle lists. `None`
    /// before the symbol's first candle. Allocates nothing; the price fields are recomputed only
    /// after a candle of `primary` or 1h.
    pub fn headline(&self, symbol: &Symbol, primary: Timeframe, now: DateTime<Utc>) -> Option<MarketHeadline> {
        let per_symbol = self.series.get(symbol)?;
        let p = per_symbol.prices(primary)?;

        let newest_close = Timeframe::ALL
            .into_iter()
            .filter_map(|tf| {
                per_symbol
                    .latest(tf)
                    .map(|c| c.open_time + Duration::seconds(tf.seconds()))
            })
            .max()
            .unwrap_or(p.timestamp);
        let data_age_seconds = (now - newest_close).num_seconds().max(0);

        let base_secs = self.aggregator.base().seconds();
        // Timeframes below the base are never produced and are not missing.
        let insufficient =
            Timeframe::ALL.map(|tf| tf.seconds() >= base_secs && per_symbol.get(tf).len() < MIN_CANDLES_REQUIRED);

        Some(MarketHeadline {
            symbol: symbol.clone(),
            timestamp: p.timestamp,
            current_price: p.current_price,
            price_24h_ago: p.price_24h_ago,
            price_change_24h_pct: p.price_change_24h_pct,
            volume_24h: p.volume_24h,
            volume_vs_avg: p.volume_vs_avg,
            data_age_seconds,
            stale: data_age_seconds > MAX_AGE_SECONDS,
            insufficient,
        })
    }

    /// The candle-derived snapshot fields for `symbol` at business time `now` with the kept
    /// candles of every timeframe: [`Self::headline`] plus copies of the candles. `None` before
    /// the symbol's first candle.
    pub fn summary(&self, symbol: &Symbol, primary: Timeframe, now: DateTime<Utc>) -> Option<MarketSummary> {
        let h = self.headline(symbol, primary, now)?;
        let per_symbol = self.series.get(symbol)?;
        let candles = Timeframe::ALL
            .into_iter()
            .filter(|tf| !per_symbol.get(*tf).is_empty())
            .map(|tf| (tf, per_symbol.get(tf).iter().map(CandleSummary::from).collect()))
            .collect();
        let missing_data_flags = h.missing_data_flags();
        Some(MarketSummary {
            headline: h,
            candles,
            missing_data_flags,
        })
    }
}

// Hourly open times are aligned to the hour and strictly increasing (the aggregator refuses
// anything else), so the hours of the last day are the last entries of the series and are
// found by position instead of by scanning.

/// Close of the hourly candle opening 24 h before the last one opens. Without a gap in the last
/// day it is the 25th from the end; with one it is further back or missing, found by search.
fn close_24h_before_last(hourly: &VecDeque<Candle>) -> Option<Decimal> {
    let last = hourly.back()?;
    let target = last.open_time - Duration::hours(24);
    let n = hourly.len();
    if n >= 25 && hourly[n - 25].open_time == target {
        return Some(hourly[n - 25].close);
    }
    hourly
        .binary_search_by_key(&target, |c| c.open_time)
        .ok()
        .map(|i| hourly[i].close)
}

/// Sum of the volumes of the 24 hourly candles opening in the 23 h up to the last one, when all
/// 24 are kept: at most 24 hours fit in that span, so they are all there exactly when the 24th
/// from the end opens inside it. Summed oldest first.
fn volume_of_last_24_hours(hourly: &VecDeque<Candle>) -> Option<Decimal> {
    let last = hourly.back()?;
    let n = hourly.len();
    if n < 24 {
        return None;
    }
    let from = last.open_time - Duration::hours(23);
    (hourly[n - 24].open_time >= from).then(|| hourly.range(n - 24..).map(|c| c.volume).sum())
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

    /// The summary as computed before the headline existed: scans and copies the kept candles
    /// (read through the public accessors), formats the flags. The reference the fast paths are
    /// held to.
    fn reference_summary(
        h: &MarketHistory,
        symbol: &Symbol,
        primary: Timeframe,
        now: DateTime<Utc>,
    ) -> Option<MarketSummary> {
        let per_symbol: BTreeMap<Timeframe, VecDeque<Candle>> = Timeframe::ALL
            .into_iter()
            .map(|tf| (tf, h.candles(symbol, tf)))
            .filter(|(_, c)| !c.is_empty())
            .map(|(tf, c)| (tf, c.into_iter().collect()))
            .collect();
        let series = |tf: Timeframe| per_symbol.get(&tf);
        let last_of = |tf: Timeframe| series(tf).and_then(VecDeque::back);
        let latest = last_of(primary).or_else(|| Timeframe::ALL.into_iter().find_map(last_of))?;

        let hourly = series(Timeframe::H1);
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
        let volume_vs_avg = series(latest.timeframe).and_then(|q| {
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
        let stale = data_age_seconds > MAX_AGE_SECONDS;
        if stale {
            flags.push("stale_data".to_owned());
        }
        let mut candles = BTreeMap::new();
        let mut insufficient = [false; 6];
        for (i, tf) in Timeframe::ALL.into_iter().enumerate() {
            let q = per_symbol.get(&tf);
            let n = q.map_or(0, VecDeque::len);
            if tf.seconds() >= h.base().seconds() && n < MIN_CANDLES_REQUIRED {
                flags.push(format!("insufficient_{tf}_candles"));
                insufficient[i] = true;
            }
            if let Some(q) = q {
                candles.insert(tf, q.iter().map(CandleSummary::from).collect());
            }
        }
        flags.push("no_order_book".to_owned());
        Some(MarketSummary {
            headline: MarketHeadline {
                symbol: symbol.clone(),
                timestamp: latest.open_time,
                current_price: latest.close,
                price_24h_ago,
                price_change_24h_pct,
                volume_24h,
                volume_vs_avg,
                data_age_seconds,
                stale,
                insufficient,
            },
            candles,
            missing_data_flags: flags,
        })
    }

    /// Deterministic pseudo-random walk: step `i` of a linear congruential generator.
    fn noise(i: i64) -> i64 {
        (i.wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407)
            >> 33)
            .rem_euclid(1000)
    }

    /// A base candle at `at` with a price and volume that wander; every 7th hour has zero
    /// volume, so averages of zero occur too.
    fn wandering(base: Timeframe, at: DateTime<Utc>, i: i64) -> Candle {
        let p = Decimal::new(5_000_000 + noise(i) * 37 - 18_000, 2);
        let quiet = at.timestamp() / 3600 % 7 == 3;
        Candle {
            symbol: sym(),
            timeframe: base,
            open_time: at,
            open: p,
            high: p + Decimal::new(noise(i + 1), 2),
            low: p - Decimal::new(noise(i + 2), 2),
            close: p + Decimal::new(noise(i + 3) - 500, 3),
            volume: if quiet {
                Decimal::ZERO
            } else {
                Decimal::new(noise(i + 4) + 1, 3)
            },
        }
    }

    fn assert_headline_is_the_summary(h: &MarketHistory, primary: Timeframe, now: DateTime<Utc>, at: &str) {
        let want = reference_summary(h, &sym(), primary, now).expect("candles were pushed");
        let head = h.headline(&sym(), primary, now).expect("candles were pushed");
        let got = (
            head.symbol.clone(),
            head.timestamp,
            head.current_price,
            head.price_24h_ago,
            head.price_change_24h_pct,
            head.volume_24h,
            head.volume_vs_avg,
            head.data_age_seconds,
            head.missing_data_flags(),
        );
        let expected = (
            want.symbol.clone(),
            want.timestamp,
            want.current_price,
            want.price_24h_ago,
            want.price_change_24h_pct,
            want.volume_24h,
            want.volume_vs_avg,
            want.data_age_seconds,
            want.missing_data_flags.clone(),
        );
        assert_eq!(got, expected, "{at}, primary {primary}");
        assert_eq!(h.summary(&sym(), primary, now), Some(want), "{at}, primary {primary}");
    }

    #[test]
    fn headline_and_summary_equal_the_reference_over_days_with_gaps() {
        // Four days of minutes with holes: single minutes, a 40-minute stretch and two whole
        // hours, so the 24 h fields meet gaps at every offset of the day and are complete between.
        let mut h = MarketHistory::new().with_lookback(Timeframe::H1, 48);
        let mut short = MarketHistory::new().with_lookback(Timeframe::H1, 24);
        let (mut checked, mut complete_day, mut across_a_gap) = (0, 0, 0);
        for i in 0..4 * 1440 {
            let at = start() + Duration::minutes(i);
            let hour = i / 60;
            if i % 97 == 13 || (1000..1040).contains(&i) || hour == 30 || hour == 70 {
                continue;
            }
            let c = wandering(Timeframe::M1, at, i);
            h.push(&c).unwrap();
            short.push(&c).unwrap();
            // The actor's pattern: a 1h snapshot after every candle, other timeframes now and then.
            let now = at + Duration::seconds(60 + noise(i) % 90);
            assert_headline_is_the_summary(&h, Timeframe::H1, now, &format!("minute {i}"));
            let head = h.headline(&sym(), Timeframe::H1, now).unwrap();
            complete_day += usize::from(head.volume_24h.is_some());
            // A missing hour inside the last day, and the hour 24 h back is kept.
            across_a_gap += usize::from(head.volume_24h.is_none() && head.price_24h_ago.is_some());
            if i % 7 == 0 {
                for primary in Timeframe::ALL {
                    assert_headline_is_the_summary(&h, primary, now, &format!("minute {i}"));
                }
                assert_headline_is_the_summary(&short, Timeframe::H1, now, &format!("minute {i}, 24 kept"));
                checked += 1;
            }
        }
        assert!(checked > 700);
        assert!(
            complete_day > 1000 && across_a_gap > 1000,
            "{complete_day} {across_a_gap}"
        );
    }

    #[test]
    fn headline_equals_the_reference_on_an_hourly_base_with_gaps() {
        let mut h = MarketHistory::from_base(Timeframe::H1).with_lookback(Timeframe::H1, 48);
        let mut some_24h = 0;
        for i in 0..24 * 12 {
            if i % 31 == 5 || (100..103).contains(&i) {
                continue;
            }
            let at = start() + Duration::hours(i);
            h.push(&wandering(Timeframe::H1, at, i)).unwrap();
            let now = at + Duration::hours(1);
            for primary in Timeframe::ALL {
                assert_headline_is_the_summary(&h, primary, now, &format!("hour {i}"));
            }
            let head = h.headline(&sym(), Timeframe::H1, now).unwrap();
            some_24h += usize::from(head.price_24h_ago.is_some() && head.volume_24h.is_some());
        }
        assert!(some_24h > 30, "the 24 h fields were exercised: {some_24h}");
    }

    #[test]
    fn recent_candles_are_the_kept_candles_shared_until_the_next_candle() {
        let mut h = MarketHistory::new();
        for i in 0..130 {
            h.push(&minute(i)).unwrap();
        }
        let a = h.recent(&sym(), Timeframe::H1);
        let b = h.recent(&sym(), Timeframe::H1);
        assert_eq!(&a[..], &h.candles(&sym(), Timeframe::H1)[..]);
        assert!(Arc::ptr_eq(&a, &b), "no second copy");
        for i in 130..180 {
            h.push(&minute(i)).unwrap();
        }
        let c = h.recent(&sym(), Timeframe::H1);
        assert_eq!(c.len(), 3);
        assert_eq!(&c[..], &h.candles(&sym(), Timeframe::H1)[..]);
        assert_eq!(
            &h.recent(&sym(), Timeframe::M1)[..],
            &h.candles(&sym(), Timeframe::M1)[..]
        );
        assert!(h.recent(&Symbol::parse("XRP/USDT").unwrap(), Timeframe::H1).is_empty());
    }

    #[test]
    fn timeframe_index_is_the_position_in_all() {
        for (i, tf) in Timeframe::ALL.into_iter().enumerate() {
            assert_eq!(tf.index(), i, "{tf}");
        }
    }
}
