//! Candles → indicator engine → rule-based TA → regime detection with hysteresis, over the
//! fixture series: every output is in range, and clear market phases are recognised.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::HashSet;
use std::str::FromStr;
use triplegain_actors::agents::regime_detection::{detect, RegimeInput, RegimeTracker, TaSummary};
use triplegain_actors::agents::technical_analysis::{analyse, TaInput};
use triplegain_actors::domain::{Candle, Regime, Symbol, Timeframe};
use triplegain_actors::indicators::IndicatorEngine;

const FIXTURE: &str = include_str!("fixtures/indicators_talib.json");

#[test]
fn pipeline_over_fixture_series() {
    let doc: Value = serde_json::from_str(FIXTURE).unwrap();
    let symbol = Symbol::parse("BTC/USDT").unwrap();
    for series in doc["series"].as_array().unwrap() {
        let mut engine = IndicatorEngine::new();
        let mut tracker = RegimeTracker::default();
        let mut previous = None;
        let mut recent: Vec<Candle> = Vec::new();
        let mut regimes = HashSet::new();
        let mut biases = HashSet::new();
        for raw in series["candles"].as_array().unwrap() {
            let d = |k: &str| Decimal::from_str(raw[k].as_str().unwrap()).unwrap();
            let candle = Candle {
                symbol: symbol.clone(),
                timeframe: Timeframe::H1,
                open_time: DateTime::parse_from_rfc3339(raw["t"].as_str().unwrap())
                    .unwrap()
                    .with_timezone(&Utc),
                open: d("o"),
                high: d("h"),
                low: d("l"),
                close: d("c"),
                volume: d("v"),
            };
            let snap = engine.update(&candle);
            recent.push(candle.clone());
            if recent.len() > 20 {
                recent.remove(0);
            }
            let ta = analyse(&TaInput {
                symbol: &symbol,
                timeframe: Timeframe::H1,
                timestamp: candle.open_time,
                current_price: candle.close,
                indicators: &snap,
                previous: previous.as_ref(),
                recent_candles: &recent,
                timeframe_trends: &[],
            });
            assert!((0.0..=1.0).contains(&ta.confidence));
            assert!((0.0..=1.0).contains(&ta.trend_strength));
            assert!((-1.0..=1.0).contains(&ta.momentum_score));
            assert!(ta.reasoning.chars().count() <= 500);
            assert!(ta.support_levels.iter().all(|l| *l < candle.close));
            biases.insert(ta.bias);
            let detection = detect(&RegimeInput {
                current_price: candle.close,
                indicators: &snap,
                ta: Some(TaSummary::from(&ta)),
            });
            assert!((0.0..=1.0).contains(&detection.confidence));
            let out = tracker.observe(&symbol, detection, candle.open_time);
            assert!(out.reasoning.chars().count() <= 300);
            regimes.insert(out.regime);
            previous = Some(snap);
        }
        assert_eq!(biases.len(), 3, "{}: long, short and neutral all occur", series["name"]);
        assert!(regimes.len() >= 3, "{}: regimes seen {regimes:?}", series["name"]);
        assert!(
            regimes.contains(&Regime::TrendingBull) || regimes.contains(&Regime::VolatileBull),
            "{}: the up-trend phase is recognised: {regimes:?}",
            series["name"]
        );
    }
}
