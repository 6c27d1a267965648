//! `triplegain analyze --candles FILE`: one JSON object for the last candle, with the indicator
//! library's values, the TA and the regime output; malformed files fail naming file and line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use triplegain::market::load_candles;
use triplegain_actors::domain::{Symbol, Timeframe};
use triplegain_actors::indicators::IndicatorEngine;
use triplegain_actors::market::CandleAggregator;

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let p = std::env::temp_dir().join(format!("tg-analyze-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// 300 hourly candles from 2025-01-01, a deterministic wave with a drift.
fn write_fixture(dir: &Path, name: &str) -> PathBuf {
    let mut text = String::from("timestamp,open,high,low,close,volume\n");
    let mut prev = 100.0_f64;
    for i in 0..300_i64 {
        let x = i as f64;
        let close = 100.0 * (0.0008 * x + 0.03 * (x / 9.0).sin() + 0.01 * (x / 2.3).cos()).exp();
        let (open, high, low) = (prev, prev.max(close) * 1.003, prev.min(close) * 0.997);
        let volume = 50.0 + 20.0 * (x / 5.0).sin().abs();
        text.push_str(&format!(
            "{},{open:.4},{high:.4},{low:.4},{close:.4},{volume:.3}\n",
            1_735_689_600 + i * 3600
        ));
        prev = close;
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn analyze(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_triplegain"))
        .arg("analyze")
        .args(args)
        .output()
        .expect("run triplegain")
}

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(text.trim().lines().count(), 1, "one JSON object on one line");
    serde_json::from_str(text.trim()).unwrap()
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

/// Equal JSON, numbers to 1e-12 relative (the decimal text of an f64 may round the last digit).
fn assert_close(got: &Value, want: &Value, at: &str) {
    match (got, want) {
        (Value::Number(g), Value::Number(w)) => {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0), "{at}: {g} != {w}");
        }
        (Value::Object(g), Value::Object(w)) => {
            assert_eq!(g.len(), w.len(), "{at}: keys");
            for (k, wv) in w {
                assert_close(&g[k], wv, &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(got, want, "{at}"),
    }
}

fn sorted(list: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = list.iter().map(|s| (*s).to_string()).collect();
    k.sort();
    k
}

#[test]
fn prints_the_last_candle_with_the_indicator_library_values() {
    // Arrange
    let dir = TempDir::new();
    let file = write_fixture(&dir.0, "BTC_USDT.csv");

    // Act
    let doc = json_of(&analyze(&["--candles", file.to_str().unwrap()]));

    // Assert: the documented keys, exactly.
    assert_eq!(
        keys(&doc),
        sorted(&[
            "symbol",
            "timeframe",
            "timestamp",
            "current_price",
            "indicators",
            "ta",
            "regime"
        ])
    );
    assert_eq!(doc["symbol"], "BTC/USDT", "symbol told from the file name");
    assert_eq!(doc["timeframe"], "1h", "the file's own timeframe");
    assert_eq!(doc["timestamp"], "2025-01-13T11:00:00Z");
    let ind = &doc["indicators"];
    assert_eq!(
        keys(ind),
        sorted(&[
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
            "macd",
            "bollinger_bands",
            "stochastic_rsi",
            "supertrend",
        ])
    );
    assert_eq!(keys(&ind["macd"]), sorted(&["line", "signal", "histogram"]));
    assert_eq!(
        keys(&ind["bollinger_bands"]),
        sorted(&["upper", "middle", "lower", "width", "position"])
    );
    assert_eq!(keys(&ind["stochastic_rsi"]), sorted(&["k", "d"]));
    assert_eq!(keys(&ind["supertrend"]), sorted(&["value", "direction"]));

    // The values are the indicator library's on the same candles.
    let symbol = Symbol::parse("BTC/USDT").unwrap();
    let candles = load_candles(&file, &symbol).unwrap();
    let mut engine = IndicatorEngine::new();
    let mut expected = None;
    for c in &candles {
        expected = Some(engine.update(c));
    }
    let expected = serde_json::to_value(expected.unwrap()).unwrap();
    assert_close(ind, &expected, "indicators");
    assert!(ind["ema_200"].is_number(), "300 candles warm every indicator");
    assert_eq!(doc["current_price"], candles.last().unwrap().close.to_string());
    assert_eq!(doc["ta"]["symbol"], "BTC/USDT");
    assert!(doc["ta"]["bias"].is_string() && doc["ta"]["confidence"].is_number());
    assert!(doc["regime"]["regime"].is_string());
    assert!(doc["regime"]["position_size_multiplier"].is_number());
}

#[test]
fn timeframe_aggregates_and_symbol_overrides() {
    // Arrange
    let dir = TempDir::new();
    let file = write_fixture(&dir.0, "prices.csv");

    // Act
    let doc = json_of(&analyze(&[
        "--candles",
        file.to_str().unwrap(),
        "--symbol",
        "XRP/USDT",
        "--timeframe",
        "4h",
    ]));

    // Assert: 300 hours = 75 four-hour candles, the last opening at hour 296.
    assert_eq!(
        (doc["symbol"].as_str(), doc["timeframe"].as_str()),
        (Some("XRP/USDT"), Some("4h"))
    );
    assert_eq!(doc["timestamp"], "2025-01-13T08:00:00Z");
    let symbol = Symbol::parse("XRP/USDT").unwrap();
    let mut agg = CandleAggregator::from_base(Timeframe::H1);
    let mut engine = IndicatorEngine::new();
    let mut expected = None;
    for c in load_candles(&file, &symbol).unwrap() {
        for h4 in agg
            .push(&c)
            .unwrap()
            .into_iter()
            .filter(|x| x.timeframe == Timeframe::H4)
        {
            expected = Some(engine.update(&h4));
        }
    }
    assert_eq!(engine.candles_applied(), 75);
    assert_close(
        &doc["indicators"],
        &serde_json::to_value(expected.unwrap()).unwrap(),
        "indicators",
    );
    assert!(doc["indicators"]["ema_200"].is_null(), "null while warming up");

    // Without --symbol a name that tells nothing is an error.
    let out = analyze(&["--candles", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--symbol"));
}

#[test]
fn a_malformed_file_fails_naming_file_and_line() {
    // Arrange: line 4 has a bad close.
    let dir = TempDir::new();
    let path = dir.0.join("BTC_USDT.csv");
    std::fs::write(
        &path,
        "timestamp,open,high,low,close,volume\n1735689600,1,2,0.5,1.5,10\n1735693200,1.5,2,1,1.8,10\n1735696800,1.8,2,1,abc,10\n",
    )
    .unwrap();

    // Act
    let out = analyze(&["--candles", path.to_str().unwrap()]);

    // Assert
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:4", path.display())), "{err}");
    assert!(out.stdout.is_empty());
}
