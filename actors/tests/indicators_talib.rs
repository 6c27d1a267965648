//! The indicator engine, fed candle by candle, reproduces the TA-Lib fixture
//! (`tests/fixtures/indicators_talib.json`, written by `tests/fixtures/gen_talib.py`) to 1e-8
//! relative, including where the warm-up ends.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use std::str::FromStr;
use triplegain_actors::domain::{Candle, Symbol, Timeframe};
use triplegain_actors::indicators::{IndicatorEngine, IndicatorSnapshot};

const FIXTURE: &str = include_str!("fixtures/indicators_talib.json");
const REL_TOL: f64 = 1e-8;

fn field(s: &IndicatorSnapshot, key: &str) -> Option<f64> {
    match key {
        "ema_9" => s.ema_9,
        "ema_21" => s.ema_21,
        "ema_50" => s.ema_50,
        "ema_200" => s.ema_200,
        "sma_20" => s.sma_20,
        "sma_50" => s.sma_50,
        "sma_200" => s.sma_200,
        "rsi_14" => s.rsi_14,
        "atr_14" => s.atr_14,
        "adx_14" => s.adx_14,
        "roc_10" => s.roc_10,
        "obv" => s.obv,
        "vwap" => s.vwap,
        "choppiness_14" => s.choppiness_14,
        "volume_sma_20" => s.volume_sma_20,
        "volume_vs_avg" => s.volume_vs_avg,
        "macd_line" => s.macd.line,
        "macd_signal" => s.macd.signal,
        "macd_histogram" => s.macd.histogram,
        "bb_upper" => s.bollinger_bands.upper,
        "bb_middle" => s.bollinger_bands.middle,
        "bb_lower" => s.bollinger_bands.lower,
        "bb_width" => s.bollinger_bands.width,
        "bb_position" => s.bollinger_bands.position,
        "stoch_rsi_k" => s.stochastic_rsi.k,
        "stoch_rsi_d" => s.stochastic_rsi.d,
        "supertrend_value" => s.supertrend.value,
        "supertrend_direction" => s.supertrend.direction.map(f64::from),
        "squeeze_detected" => s.squeeze_detected.map(|b| if b { 1.0 } else { 0.0 }),
        other => panic!("fixture has an indicator the test does not map: {other}"),
    }
}

fn expected_value(v: &Value) -> Option<f64> {
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Number(n) => n.as_f64(),
        other => panic!("unexpected fixture value {other}"),
    }
}

fn candle(raw: &Value, symbol: &Symbol) -> Candle {
    let d = |k: &str| Decimal::from_str(raw[k].as_str().unwrap()).unwrap();
    Candle {
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
    }
}

/// Every indicator the issue lists must be present in the fixture.
const REQUIRED: &[&str] = &[
    "ema_9",
    "ema_21",
    "ema_50",
    "ema_200",
    "sma_20",
    "sma_50",
    "sma_200",
    "rsi_14",
    "atr_14",
    "adx_14",
    "roc_10",
    "obv",
    "vwap",
    "choppiness_14",
    "volume_sma_20",
    "volume_vs_avg",
    "macd_line",
    "macd_signal",
    "macd_histogram",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "bb_width",
    "bb_position",
    "stoch_rsi_k",
    "stoch_rsi_d",
    "supertrend_value",
    "supertrend_direction",
    "squeeze_detected",
];

#[test]
fn engine_matches_talib_fixture_for_every_indicator() {
    let doc: Value = serde_json::from_str(FIXTURE).unwrap();
    let symbol = Symbol::parse("BTC/USDT").unwrap();
    let series = doc["series"].as_array().unwrap();
    assert!(!series.is_empty());
    let mut compared = 0usize;
    let mut failures = Vec::new();
    for s in series {
        let name = s["name"].as_str().unwrap();
        let candles = s["candles"].as_array().unwrap();
        let expected = s["expected"].as_object().unwrap();
        for key in REQUIRED {
            assert!(expected.contains_key(*key), "{name}: fixture lacks {key}");
        }
        let mut engine = IndicatorEngine::new();
        for (i, raw) in candles.iter().enumerate() {
            let snap = engine.update(&candle(raw, &symbol));
            for (key, values) in expected {
                let want = expected_value(&values.as_array().unwrap()[i]);
                let got = field(&snap, key);
                match (want, got) {
                    (None, None) => {}
                    (Some(w), Some(g)) => {
                        compared += 1;
                        let scale = w.abs().max(1e-12);
                        if (g - w).abs() / scale > REL_TOL && (g - w).abs() > 1e-12 {
                            failures.push(format!("{name}[{i}] {key}: got {g}, TA-Lib {w}"));
                        }
                    }
                    (w, g) => failures.push(format!(
                        "{name}[{i}] {key}: warm-up mismatch, got {g:?}, expected {w:?}"
                    )),
                }
            }
        }
        assert_eq!(engine.candles_applied(), candles.len() as u64);
    }
    assert!(
        failures.is_empty(),
        "{} mismatches, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(20)]
    );
    assert!(compared > 30_000, "compared only {compared} values");
}

#[test]
fn snapshot_serialises_with_the_documented_keys() {
    let doc: Value = serde_json::from_str(FIXTURE).unwrap();
    let symbol = Symbol::parse("BTC/USDT").unwrap();
    let mut engine = IndicatorEngine::new();
    for raw in doc["series"][0]["candles"].as_array().unwrap() {
        engine.update(&candle(raw, &symbol));
    }
    let json = serde_json::to_value(engine.snapshot()).unwrap();
    for key in [
        "ema_9",
        "ema_21",
        "ema_50",
        "ema_200",
        "sma_20",
        "sma_50",
        "sma_200",
        "rsi_14",
        "atr_14",
        "adx_14",
        "roc_10",
        "obv",
        "vwap",
        "choppiness_14",
        "volume_sma_20",
        "volume_vs_avg",
        "squeeze_detected",
    ] {
        assert!(
            json[key].is_number() || json[key].is_boolean(),
            "{key} missing or null: {json}"
        );
    }
    for (obj, keys) in [
        ("macd", &["line", "signal", "histogram"][..]),
        (
            "bollinger_bands",
            &["upper", "middle", "lower", "width", "position"][..],
        ),
        ("stochastic_rsi", &["k", "d"][..]),
        ("supertrend", &["value", "direction"][..]),
    ] {
        for k in keys {
            assert!(json[obj][k].is_number(), "{obj}.{k} missing: {json}");
        }
    }
}
