use super::*;
use crate::domain::CorrelationId;
use crate::indicators::{BollingerValue, MacdValue, StochRsiValue, SupertrendValue};
use rust_decimal_macros::dec;

fn sym() -> Symbol {
    Symbol::parse("BTC/USDT").unwrap()
}

fn ts() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-01-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn snapshot(rsi: f64, hist: f64) -> IndicatorSnapshot {
    IndicatorSnapshot {
        ema_9: Some(101.0),
        ema_21: Some(100.0),
        ema_50: Some(98.0),
        ema_200: Some(90.0),
        sma_20: Some(99.5),
        sma_50: Some(97.0),
        sma_200: Some(91.0),
        rsi_14: Some(rsi),
        atr_14: Some(2.0),
        adx_14: Some(30.0),
        stochastic_rsi: StochRsiValue {
            k: Some(50.0),
            d: Some(50.0),
        },
        macd: MacdValue {
            line: Some(0.5),
            signal: Some(0.5 - hist),
            histogram: Some(hist),
        },
        bollinger_bands: BollingerValue {
            upper: Some(104.0),
            middle: Some(99.5),
            lower: Some(95.0),
            width: Some(0.09),
            position: Some(0.6),
        },
        supertrend: SupertrendValue {
            value: Some(96.0),
            direction: Some(1),
        },
        ..IndicatorSnapshot::default()
    }
}

fn input<'a>(ind: &'a IndicatorSnapshot, symbol: &'a Symbol) -> TaInput<'a> {
    TaInput {
        symbol,
        timeframe: Timeframe::H1,
        timestamp: ts(),
        current_price: dec!(100.5),
        indicators: ind,
        previous: None,
        recent_candles: &[],
        timeframe_trends: &[],
    }
}

#[test]
fn bias_rule_table() {
    let cases = [
        (65.0, 0.1, Bias::Long, "RSI > 60 and histogram > 0"),
        (60.0, 0.1, Bias::Neutral, "RSI exactly 60 is not above 60"),
        (65.0, 0.0, Bias::Neutral, "flat histogram"),
        (65.0, -0.1, Bias::Neutral, "RSI high but histogram negative"),
        (35.0, -0.1, Bias::Short, "RSI < 40 and histogram < 0"),
        (40.0, -0.1, Bias::Neutral, "RSI exactly 40 is not below 40"),
        (35.0, 0.1, Bias::Neutral, "RSI low but histogram positive"),
        (50.0, 0.3, Bias::Neutral, "mid RSI"),
    ];
    for (rsi, hist, want, why) in cases {
        assert_eq!(bias_rule(rsi, hist), want, "{why}");
    }
}

#[test]
fn timeframe_trend_and_alignment() {
    let mut ind = IndicatorSnapshot::default();
    assert_eq!(timeframe_trend(&ind), None);
    ind.ema_9 = Some(2.0);
    ind.ema_21 = Some(1.0);
    assert_eq!(timeframe_trend(&ind), Some(TrendDirection::Bullish));
    ind.ema_9 = Some(1.0);
    assert_eq!(
        timeframe_trend(&ind),
        Some(TrendDirection::Bearish),
        "equal EMAs are bearish"
    );
    use TrendDirection::*;
    assert_eq!(trend_alignment_score(&[]), 0.0);
    let t = [
        (Timeframe::M1, Bullish),
        (Timeframe::M5, Bullish),
        (Timeframe::H1, Bearish),
    ];
    assert_eq!(trend_alignment_score(&t), 0.33);
}

#[test]
fn rsi_signal_table() {
    for (rsi, want) in [
        (29.9, RsiSignal::Oversold),
        (30.0, RsiSignal::Neutral),
        (70.0, RsiSignal::Neutral),
        (70.1, RsiSignal::Overbought),
    ] {
        assert_eq!(rsi_signal(rsi), want, "rsi {rsi}");
    }
}

#[test]
fn macd_signal_table() {
    let cases = [
        (0.2, None, MacdSignal::Bullish),
        (-0.2, None, MacdSignal::Bearish),
        (0.0, None, MacdSignal::Neutral),
        (0.2, Some(-0.1), MacdSignal::BullishCross),
        (0.2, Some(0.0), MacdSignal::BullishCross),
        (-0.2, Some(0.1), MacdSignal::BearishCross),
        (0.2, Some(0.1), MacdSignal::Bullish),
        (-0.2, Some(-0.1), MacdSignal::Bearish),
    ];
    for (hist, prev, want) in cases {
        assert_eq!(macd_signal(hist, prev), want, "hist {hist} prev {prev:?}");
    }
}

#[test]
fn warm_up_gives_zero_confidence_and_a_warning() {
    let s = sym();
    let ind = IndicatorSnapshot {
        rsi_14: Some(70.0),
        ..IndicatorSnapshot::default()
    };
    let out = analyse(&input(&ind, &s));
    assert_eq!(out.confidence, 0.0);
    assert_eq!(out.bias, Bias::Neutral);
    assert_eq!(out.primary_signal, "No analysis available");
    assert!(out.warnings.iter().any(|w| w.starts_with("insufficient data")));
}

#[test]
fn analyse_paths_table() {
    let s = sym();
    let cases = [
        (66.0, 0.4, Bias::Long, TrendDirection::Bullish),
        (33.0, -0.4, Bias::Short, TrendDirection::Bearish),
        (52.0, 0.4, Bias::Neutral, TrendDirection::Neutral),
    ];
    for (rsi, hist, bias, dir) in cases {
        let ind = snapshot(rsi, hist);
        let out = analyse(&input(&ind, &s));
        assert_eq!(out.bias, bias, "rsi {rsi}");
        assert_eq!(out.trend_direction, dir, "rsi {rsi}");
        let own = timeframe_trend(&ind).map(|t| (Timeframe::H1, t));
        assert_eq!(out.confidence, evidence_confidence(bias, &ind, dec!(100.5), own, &[]));
        assert!(
            out.confidence > 0.0 && out.confidence < 1.0,
            "rsi {rsi}: {}",
            out.confidence
        );
        assert_eq!(out.model_used, RULE_BASED_MODEL);
        assert!((out.trend_strength - 0.6).abs() < 1e-12, "ADX 30 / 50");
        assert!(out.momentum_score.signum() == hist.signum() || rsi == 52.0);
        assert!((-1.0..=1.0).contains(&out.momentum_score));
        assert!(out.reasoning.chars().count() <= MAX_REASONING_CHARS);
        assert!(out.reasoning.contains("BTC/USDT"));
    }
}

#[test]
fn confidence_rises_with_alignment_and_falls_with_disagreement() {
    use Timeframe::*;
    use TrendDirection::{Bearish as Dn, Bullish as Up};
    let s = sym();
    let mut strong = snapshot(68.0, 0.8);
    strong.adx_14 = Some(42.0);
    strong.roc_10 = Some(3.0);
    strong.volume_vs_avg = Some(1.6);
    let run = |ind: &IndicatorSnapshot, trends: &[(Timeframe, TrendDirection)]| {
        analyse(&TaInput {
            timeframe_trends: trends,
            ..input(ind, &s)
        })
        .confidence
    };
    let aligned = run(&strong, &[(M1, Up), (M5, Up), (M15, Up), (H4, Up)]);
    let three_of_five = run(&strong, &[(M1, Dn), (M5, Up), (M15, Up), (H4, Dn)]);
    let opposed = run(&strong, &[(M1, Dn), (M5, Dn), (M15, Dn), (H4, Dn)]);
    assert!(aligned >= 0.85, "strong aligned trend is high: {aligned}");
    assert!(three_of_five < aligned - 0.15, "{three_of_five} vs {aligned}");
    assert!(opposed < three_of_five, "{opposed} vs {three_of_five}");
    // flat: no bias, weak ADX, quiet momentum → low
    let mut flat = snapshot(51.0, 0.01);
    flat.adx_14 = Some(12.0);
    flat.roc_10 = Some(0.05);
    flat.volume_vs_avg = Some(0.8);
    let f = run(&flat, &[(M1, Dn), (M5, Up), (M15, Dn), (H4, Up)]);
    assert!(f < 0.25, "flat evidence stays low: {f}");
    // weaker trend strength lowers the confidence, all else equal
    let mut weaker = strong.clone();
    weaker.adx_14 = Some(20.0);
    let w = run(&weaker, &[(M1, Up), (M5, Up), (M15, Up), (H4, Up)]);
    assert!(w < aligned, "{w} vs {aligned}");
    // the same evidence mirrored for a short bias scores the same
    let mut short = strong.clone();
    short.rsi_14 = Some(32.0);
    short.macd.histogram = Some(-0.8);
    short.roc_10 = Some(-3.0);
    short.ema_9 = Some(99.0);
    let sh = run(&short, &[(M1, Dn), (M5, Dn), (M15, Dn), (H4, Dn)]);
    assert!((sh - aligned).abs() < 1e-9, "{sh} vs {aligned}");
}

#[test]
fn momentum_is_mean_of_components() {
    // RSI 75 → +0.5; histogram 0.5 with ATR 2 → tanh(1); stoch K 50 → 0.
    let m = momentum(75.0, 0.5, Some(2.0), Some(50.0));
    assert!((m - (0.5 + 1f64.tanh()) / 3.0).abs() < 1e-12);
    assert_eq!(momentum(100.0, 0.0, None, None), 1.0);
    assert_eq!(momentum(0.0, 0.0, None, None), -1.0);
}

#[test]
fn key_levels_split_at_price_nearest_first_and_merged() {
    let s = sym();
    let ind = snapshot(66.0, 0.4);
    let out = analyse(&input(&ind, &s));
    // Above 100.5: BB upper 104. Below: sma_20 99.5, ema_50 98, sma_50 97, ...
    assert_eq!(out.resistance_levels, vec![dec!(104)]);
    assert_eq!(out.support_levels, vec![dec!(99.5), dec!(98), dec!(97)]);
    // Between 99.5 and 104 at 100.5 → fraction 0.22 → near support.
    assert_eq!(out.current_position, PricePosition::NearSupport);

    let merged = merge_levels(vec![dec!(99.99), dec!(99.95), dec!(99.0)], dec!(100.0));
    assert_eq!(merged, vec![dec!(99.99), dec!(99.0)], "levels within 0.1 % merge");
}

#[test]
fn position_table() {
    type Case<'a> = (&'a [Decimal], &'a [Decimal], Option<f64>, PricePosition);
    let cases: [Case<'_>; 6] = [
        (&[dec!(99.0)], &[dec!(101.0)], None, PricePosition::MidRange),
        (&[dec!(99.9)], &[dec!(104.0)], None, PricePosition::NearSupport),
        (&[dec!(96.0)], &[dec!(100.2)], None, PricePosition::NearResistance),
        (&[], &[], Some(0.1), PricePosition::NearSupport),
        (&[dec!(95.0)], &[], Some(0.9), PricePosition::NearResistance),
        (&[], &[], None, PricePosition::MidRange),
    ];
    for (sup, res, bb, want) in cases {
        assert_eq!(position(dec!(100.0), sup, res, bb), want, "{sup:?} {res:?} {bb:?}");
    }
}

#[test]
fn swing_levels_and_timeframe_alignment() {
    let s = sym();
    let ind = snapshot(66.0, 0.4);
    let candle = |h, l| Candle {
        symbol: s.clone(),
        timeframe: Timeframe::H1,
        open_time: ts(),
        open: dec!(100),
        high: h,
        low: l,
        close: dec!(100),
        volume: dec!(1),
    };
    let candles = vec![candle(dec!(102), dec!(99.8)), candle(dec!(101), dec!(99.9))];
    let trends = [
        (Timeframe::M15, TrendDirection::Bullish),
        (Timeframe::H4, TrendDirection::Bearish),
        (Timeframe::D1, TrendDirection::Bullish),
    ];
    let mut inp = input(&ind, &s);
    inp.recent_candles = &candles;
    inp.timeframe_trends = &trends;
    let out = analyse(&inp);
    assert_eq!(out.resistance_levels, vec![dec!(102), dec!(104)]);
    assert_eq!(out.support_levels.first(), Some(&dec!(99.8)));
    assert_eq!(out.timeframe_alignment, vec!["15m".to_string(), "1d".to_string()]);
    assert!(out.warnings.iter().any(|w| w.contains("1 timeframe(s) trend against")));
}

#[test]
fn macd_cross_and_squeeze_reported() {
    let s = sym();
    let mut ind = snapshot(66.0, 0.4);
    ind.squeeze_detected = Some(true);
    let prev = snapshot(58.0, -0.1);
    let mut inp = input(&ind, &s);
    inp.previous = Some(&prev);
    let out = analyse(&inp);
    assert_eq!(out.macd_signal, MacdSignal::BullishCross);
    assert!(out.secondary_signals.contains(&"MACD bullish cross".to_string()));
    assert!(out.warnings.iter().any(|w| w.contains("squeeze")));
}

#[test]
fn reasoning_truncates_on_char_boundaries() {
    let long = "é".repeat(600);
    let cut = truncate_reasoning(&long);
    assert_eq!(cut.chars().count(), 500);
    assert!(cut.ends_with("..."));
    assert_eq!(truncate_reasoning("short"), "short");
}

#[test]
fn model_failure_and_sanitise() {
    let s = sym();
    let f = TaOutput::model_failure(&s, Timeframe::H1, ts(), "timeout");
    assert_eq!(f.confidence, 0.0);
    assert_eq!(f.warnings, vec!["LLM call failed".to_string()]);
    assert_eq!(f.reasoning, "LLM error: timeout");

    let mut raw = TaOutput::neutral(&s, Timeframe::H1, ts());
    raw.confidence = 1.7;
    raw.momentum_score = f64::NAN;
    raw.trend_strength = -0.2;
    raw.support_levels = vec![Decimal::ZERO, dec!(95), dec!(-1)];
    raw.reasoning = "ok".to_string();
    let clean = raw.sanitised();
    assert_eq!(clean.confidence, 1.0);
    assert_eq!(clean.momentum_score, 0.0);
    assert_eq!(clean.trend_strength, 0.0);
    assert_eq!(clean.support_levels, vec![dec!(95)]);
    assert_eq!(clean.reasoning, "Analysis for BTC/USDT");
}

#[test]
fn converts_to_ta_signal_and_serialises() {
    let s = sym();
    let ind = snapshot(66.0, 0.4);
    let out = analyse(&input(&ind, &s));
    let meta = EventMeta::caused_by("technical_analysis", ts(), CorrelationId::new());
    let sig = out.to_signal(meta.clone());
    assert_eq!(sig.meta, meta);
    assert_eq!(sig.bias, Bias::Long);
    assert_eq!(sig.trend_direction, TrendDirection::Bullish);
    assert_eq!(sig.confidence, out.confidence);
    let json = serde_json::to_value(&out).unwrap();
    assert_eq!(json["bias"], "long");
    assert_eq!(json["macd_signal"], "bullish");
    assert_eq!(json["current_position"], "near_support");
    let back: TaOutput = serde_json::from_value(json).unwrap();
    assert_eq!(back, out);
}
