//! Aggregation of base candles (normally 1-minute) into the higher timeframes
//! 5m, 15m, 1h, 4h and 1d, aligned to UTC interval boundaries.
//!
//! # When a higher-timeframe candle is emitted
//!
//! A higher-timeframe candle is emitted as soon as it is known to be complete:
//!
//! 1. when the **last base candle of its interval** arrives (for 5m from 1m: the candle opening at
//!    `:04`, `:09`, …), so a complete candle is never held back waiting for the next interval; or
//! 2. if that last base candle never came (a gap in the data), when the **first base candle of a
//!    later interval** arrives. Such a candle is built from the base candles that did arrive.
//!
//! An interval in which no base candle arrived at all produces no candle (gaps are not filled
//! with synthetic flat candles). Each push costs O(1): one map lookup per symbol plus a constant
//! amount of work per target timeframe.

use crate::domain::{Candle, Symbol, Timeframe};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::HashMap;

/// Why a base candle was refused. A refused candle leaves the aggregator unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggregateError {
    #[error("{symbol}: expected a {expected} candle, got {got}")]
    WrongTimeframe {
        symbol: Symbol,
        expected: Timeframe,
        got: Timeframe,
    },
    #[error("{symbol}: candle at {open_time} is not aligned to a {timeframe} boundary")]
    Misaligned {
        symbol: Symbol,
        timeframe: Timeframe,
        open_time: DateTime<Utc>,
    },
    #[error("{symbol}: candle at {open_time} is not after the previous candle at {previous}")]
    OutOfOrder {
        symbol: Symbol,
        open_time: DateTime<Utc>,
        previous: DateTime<Utc>,
    },
}

/// Start of the `tf` interval containing the unix second `secs` (UTC boundaries).
pub fn interval_start_secs(secs: i64, tf: Timeframe) -> i64 {
    secs - secs.rem_euclid(tf.seconds())
}

/// Start of the `tf` interval containing `t`.
pub fn interval_start(t: DateTime<Utc>, tf: Timeframe) -> DateTime<Utc> {
    let secs = t.timestamp();
    let start = interval_start_secs(secs, tf);
    t - chrono::Duration::seconds(secs - start) - chrono::Duration::nanoseconds(i64::from(t.timestamp_subsec_nanos()))
}

/// A higher-timeframe candle being built.
#[derive(Debug, Clone, PartialEq)]
struct Partial {
    start: i64,
    open_time: DateTime<Utc>,
    open: Decimal,
    high: Decimal,
    low: Decimal,
    close: Decimal,
    volume: Decimal,
}

impl Partial {
    fn new(start: i64, c: &Candle) -> Self {
        Self {
            start,
            open_time: c.open_time - chrono::Duration::seconds(c.open_time.timestamp() - start),
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            volume: c.volume,
        }
    }

    fn absorb(&mut self, c: &Candle) {
        self.high = self.high.max(c.high);
        self.low = self.low.min(c.low);
        self.close = c.close;
        self.volume += c.volume;
    }

    fn into_candle(self, symbol: &Symbol, timeframe: Timeframe) -> Candle {
        Candle {
            symbol: symbol.clone(),
            timeframe,
            open_time: self.open_time,
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            volume: self.volume,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct SymbolState {
    last_open: Option<i64>,
    /// One slot per target timeframe, in the order of `CandleAggregator::targets`.
    partials: Vec<Option<Partial>>,
}

/// Builds higher-timeframe candles from a stream of base candles, for any number of symbols.
#[derive(Debug, Clone)]
pub struct CandleAggregator {
    base: Timeframe,
    targets: Vec<Timeframe>,
    symbols: HashMap<Symbol, SymbolState>,
}

impl Default for CandleAggregator {
    fn default() -> Self {
        Self::new()
    }
}

impl CandleAggregator {
    /// Aggregates 1-minute candles into 5m, 15m, 1h, 4h and 1d.
    pub fn new() -> Self {
        Self::from_base(Timeframe::M1)
    }

    /// Aggregates candles of `base` into every larger timeframe (e.g. 1h into 4h and 1d).
    pub fn from_base(base: Timeframe) -> Self {
        let targets = Timeframe::ALL
            .into_iter()
            .filter(|tf| tf.seconds() > base.seconds() && tf.seconds() % base.seconds() == 0)
            .collect();
        Self {
            base,
            targets,
            symbols: HashMap::new(),
        }
    }

    pub fn base(&self) -> Timeframe {
        self.base
    }

    /// The timeframes this aggregator produces, smallest first.
    pub fn targets(&self) -> &[Timeframe] {
        &self.targets
    }

    /// Feeds one closed base candle and returns the higher-timeframe candles it closed, grouped by
    /// timeframe (smallest first) and in time order within a timeframe. A timeframe yields at most
    /// two candles per push: one closed by a gap and the one this candle completes.
    ///
    /// # Errors
    /// [`AggregateError`] when the candle has another timeframe than the base, is not aligned to
    /// its interval, or is not strictly after the previous candle of its symbol.
    pub fn push(&mut self, candle: &Candle) -> Result<Vec<Candle>, AggregateError> {
        let mut closed = Vec::new();
        self.push_into(candle, &mut closed)?;
        Ok(closed)
    }

    /// [`Self::push`] appending the closed candles to `closed`, so that a caller collecting
    /// them with other candles needs no second vector. On error `closed` is left as it was.
    ///
    /// # Errors
    /// As [`Self::push`].
    pub fn push_into(&mut self, candle: &Candle, closed: &mut Vec<Candle>) -> Result<(), AggregateError> {
        if candle.timeframe != self.base {
            return Err(AggregateError::WrongTimeframe {
                symbol: candle.symbol.clone(),
                expected: self.base,
                got: candle.timeframe,
            });
        }
        let t = candle.open_time.timestamp();
        if candle.open_time.timestamp_subsec_nanos() != 0 || interval_start_secs(t, self.base) != t {
            return Err(AggregateError::Misaligned {
                symbol: candle.symbol.clone(),
                timeframe: self.base,
                open_time: candle.open_time,
            });
        }
        let n_targets = self.targets.len();
        let state = self
            .symbols
            .entry(candle.symbol.clone())
            .or_insert_with(|| SymbolState {
                last_open: None,
                partials: vec![None; n_targets],
            });
        if let Some(prev) = state.last_open {
            if t <= prev {
                return Err(AggregateError::OutOfOrder {
                    symbol: candle.symbol.clone(),
                    open_time: candle.open_time,
                    previous: candle.open_time + chrono::Duration::seconds(prev - t),
                });
            }
        }
        state.last_open = Some(t);

        let base_secs = self.base.seconds();
        for (tf, slot) in self.targets.iter().zip(state.partials.iter_mut()) {
            let start = interval_start_secs(t, *tf);
            // A partial from an earlier interval is complete: the data skipped its last minutes.
            if slot.as_ref().is_some_and(|p| p.start != start) {
                if let Some(p) = slot.take() {
                    closed.push(p.into_candle(&candle.symbol, *tf));
                }
            }
            match slot {
                Some(p) => p.absorb(candle),
                None => *slot = Some(Partial::new(start, candle)),
            }
            // The last base candle of the interval completes it.
            if t + base_secs == start + tf.seconds() {
                if let Some(p) = slot.take() {
                    closed.push(p.into_candle(&candle.symbol, *tf));
                }
            }
        }
        Ok(())
    }

    /// The candle being built for `symbol` on `tf`, if any (incomplete by definition).
    pub fn in_progress(&self, symbol: &Symbol, tf: Timeframe) -> Option<Candle> {
        let idx = self.targets.iter().position(|t| *t == tf)?;
        let state = self.symbols.get(symbol)?;
        state.partials.get(idx)?.clone().map(|p| p.into_candle(symbol, tf))
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

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, h, m, 0).unwrap()
    }

    fn m1(at: DateTime<Utc>, o: Decimal, h: Decimal, l: Decimal, c: Decimal, v: Decimal) -> Candle {
        Candle {
            symbol: sym(),
            timeframe: Timeframe::M1,
            open_time: at,
            open: o,
            high: h,
            low: l,
            close: c,
            volume: v,
        }
    }

    /// A deterministic minute candle: price rises by one per minute of the day.
    fn minute(at: DateTime<Utc>) -> Candle {
        let k = Decimal::from(at.timestamp() / 60 % 1440);
        m1(at, dec!(100) + k, dec!(102) + k, dec!(99) + k, dec!(101) + k, dec!(1.5))
    }

    #[test]
    fn five_minutes_of_ones_make_one_five_minute_candle_at_the_last_minute() {
        let mut agg = CandleAggregator::new();
        let rows = [
            (dec!(10), dec!(12), dec!(9), dec!(11), dec!(1)),
            (dec!(11), dec!(15), dec!(10), dec!(14), dec!(2)),
            (dec!(14), dec!(14), dec!(7), dec!(8), dec!(3)),
            (dec!(8), dec!(9), dec!(8), dec!(9), dec!(4)),
        ];
        for (i, (o, h, l, c, v)) in rows.into_iter().enumerate() {
            let out = agg.push(&m1(t(10, i as u32), o, h, l, c, v)).unwrap();
            assert!(out.is_empty(), "nothing closes before the last minute, minute {i}");
        }
        let out = agg
            .push(&m1(t(10, 4), dec!(9), dec!(10), dec!(8.5), dec!(9.5), dec!(5)))
            .unwrap();
        assert_eq!(out.len(), 1);
        let c = &out[0];
        assert_eq!(c.timeframe, Timeframe::M5);
        assert_eq!(c.open_time, t(10, 0));
        assert_eq!(
            (c.open, c.high, c.low, c.close, c.volume),
            (dec!(10), dec!(15), dec!(7), dec!(9.5), dec!(15))
        );
        assert!(agg.in_progress(&sym(), Timeframe::M5).is_none());
        let h1 = agg.in_progress(&sym(), Timeframe::H1).unwrap();
        assert_eq!(h1.volume, dec!(15));
    }

    #[test]
    fn a_full_day_closes_every_timeframe_on_its_boundaries() {
        let mut agg = CandleAggregator::new();
        let day = Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap();
        let mut by_tf: HashMap<Timeframe, Vec<Candle>> = HashMap::new();
        for i in 0..1440 {
            for c in agg.push(&minute(day + chrono::Duration::minutes(i))).unwrap() {
                by_tf.entry(c.timeframe).or_default().push(c);
            }
        }
        assert_eq!(by_tf[&Timeframe::M5].len(), 288);
        assert_eq!(by_tf[&Timeframe::M15].len(), 96);
        assert_eq!(by_tf[&Timeframe::H1].len(), 24);
        assert_eq!(by_tf[&Timeframe::H4].len(), 6);
        assert_eq!(by_tf[&Timeframe::D1].len(), 1);
        for (tf, candles) in &by_tf {
            for c in candles {
                assert_eq!(c.open_time.timestamp() % tf.seconds(), 0, "{tf} aligned");
            }
        }
        let h4 = &by_tf[&Timeframe::H4][1]; // 04:00-08:00 = minutes 240..479
        assert_eq!(h4.open_time, t(4, 0));
        assert_eq!(h4.open, dec!(340));
        assert_eq!(h4.close, dec!(580));
        assert_eq!(h4.high, dec!(581));
        assert_eq!(h4.low, dec!(339));
        assert_eq!(h4.volume, dec!(360)); // 240 × 1.5
        let d = &by_tf[&Timeframe::D1][0];
        assert_eq!(
            (d.open, d.close, d.low, d.high),
            (dec!(100), dec!(1540), dec!(99), dec!(1541))
        );
        assert_eq!(d.volume, dec!(2160));
    }

    #[test]
    fn a_gap_closes_the_interval_when_the_next_interval_starts() {
        let mut agg = CandleAggregator::new();
        for m in 0..3 {
            assert!(agg.push(&minute(t(10, m))).unwrap().is_empty());
        }
        // 10:03 and 10:04 are missing; the data resumes at 10:12.
        let out = agg.push(&minute(t(10, 12))).unwrap();
        assert_eq!(out.len(), 1, "only the 10:00 five-minute candle closes: {out:?}");
        let c = &out[0];
        assert_eq!((c.timeframe, c.open_time), (Timeframe::M5, t(10, 0)));
        assert_eq!(c.volume, dec!(4.5));
        assert_eq!(c.close, minute(t(10, 2)).close);
        // No candle for the empty 10:05 interval; the 10:10 candle holds only 10:12 and 10:14,
        // and 10:14, the last minute of the 10:00 quarter, also completes the 15-minute candle.
        let out = agg.push(&minute(t(10, 14))).unwrap();
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!((out[0].timeframe, out[0].open_time), (Timeframe::M5, t(10, 10)));
        assert_eq!(out[0].open, minute(t(10, 12)).open);
        assert_eq!(out[0].volume, dec!(3));
        assert_eq!((out[1].timeframe, out[1].open_time), (Timeframe::M15, t(10, 0)));
        assert_eq!(out[1].open, minute(t(10, 0)).open);
        assert_eq!(out[1].close, minute(t(10, 14)).close);
        assert_eq!(out[1].volume, dec!(7.5), "five minutes arrived");
        assert!(agg.in_progress(&sym(), Timeframe::M15).is_none());
    }

    #[test]
    fn gap_across_several_timeframes_closes_each_smallest_first() {
        let mut agg = CandleAggregator::new();
        agg.push(&minute(t(3, 58))).unwrap();
        let out = agg.push(&minute(t(6, 1))).unwrap();
        let got: Vec<_> = out.iter().map(|c| (c.timeframe, c.open_time)).collect();
        assert_eq!(
            got,
            vec![
                (Timeframe::M5, t(3, 55)),
                (Timeframe::M15, t(3, 45)),
                (Timeframe::H1, t(3, 0)),
                (Timeframe::H4, t(0, 0))
            ]
        );
        assert!(agg.in_progress(&sym(), Timeframe::D1).is_some(), "the day is not over");
    }

    #[test]
    fn symbols_are_independent_and_bad_input_is_refused() {
        let mut agg = CandleAggregator::new();
        let xrp = Symbol::parse("XRP/USDT").unwrap();
        agg.push(&minute(t(10, 3))).unwrap();
        let mut other = minute(t(10, 0));
        other.symbol = xrp.clone();
        assert!(
            agg.push(&other).unwrap().is_empty(),
            "another symbol starts its own state"
        );
        assert!(matches!(
            agg.push(&minute(t(10, 3))),
            Err(AggregateError::OutOfOrder { .. })
        ));
        assert!(matches!(
            agg.push(&minute(t(10, 2))),
            Err(AggregateError::OutOfOrder { .. })
        ));
        let mut odd = minute(t(10, 5));
        odd.open_time += chrono::Duration::seconds(30);
        assert!(matches!(agg.push(&odd), Err(AggregateError::Misaligned { .. })));
        let mut hourly = minute(t(11, 0));
        hourly.timeframe = Timeframe::H1;
        assert!(matches!(agg.push(&hourly), Err(AggregateError::WrongTimeframe { .. })));
        // The refused candles changed nothing: 10:04 still closes 10:00-10:05 with 10:03 alone.
        let out = agg.push(&minute(t(10, 4))).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].volume, dec!(3));
    }

    #[test]
    fn hourly_base_builds_four_hour_and_daily() {
        let mut agg = CandleAggregator::from_base(Timeframe::H1);
        assert_eq!(agg.targets(), &[Timeframe::H4, Timeframe::D1]);
        let mut out = Vec::new();
        for h in 0..24 {
            let mut c = minute(t(h, 0));
            c.timeframe = Timeframe::H1;
            out.extend(agg.push(&c).unwrap());
        }
        assert_eq!(out.iter().filter(|c| c.timeframe == Timeframe::H4).count(), 6);
        assert_eq!(out.iter().filter(|c| c.timeframe == Timeframe::D1).count(), 1);
    }

    #[test]
    fn interval_start_floors_to_utc_boundaries() {
        let at = Utc.with_ymd_and_hms(2026, 1, 5, 13, 47, 31).unwrap();
        assert_eq!(interval_start(at, Timeframe::M15), t(13, 45));
        assert_eq!(interval_start(at, Timeframe::H4), t(12, 0));
        assert_eq!(interval_start(at, Timeframe::D1), t(0, 0));
    }
}
