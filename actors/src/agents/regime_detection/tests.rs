use super::*;
use crate::domain::CorrelationId;
use crate::indicators::SupertrendValue;
use chrono::Duration;
use rust_decimal_macros::dec;

fn sym() -> Symbol {
    Symbol::parse("XRP/USDT").unwrap()
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-03-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// Price 100, bullish votes everywhere unless overridden.
fn ind(adx: f64, chop: f64, atr: f64, bullish: bool) -> IndicatorSnapshot {
    let (above, below) = if bullish { (95.0, 105.0) } else { (105.0, 95.0) };
    IndicatorSnapshot {
        ema_9: Some(if bullish { 101.0 } else { 99.0 }),
        ema_21: Some(100.0),
        ema_50: Some(above),
        ema_200: Some(above),
        rsi_14: Some(if bullish { 60.0 } else { 40.0 }),
        atr_14: Some(atr),
        adx_14: Some(adx),
        choppiness_14: Some(chop),
        supertrend: SupertrendValue {
            value: Some(below),
            direction: Some(if bullish { 1 } else { -1 }),
        },
        volume_vs_avg: Some(1.0),
        squeeze_detected: Some(false),
        ..IndicatorSnapshot::default()
    }
}

fn run(ind: &IndicatorSnapshot) -> RegimeDetection {
    detect(&RegimeInput {
        current_price: dec!(100),
        indicators: ind,
        ta: None,
    })
}

#[test]
fn classification_table() {
    let mut squeeze = ind(15.0, 50.0, 1.5, true);
    squeeze.squeeze_detected = Some(true);
    let mut mixed = ind(15.0, 50.0, 1.5, true);
    mixed.ema_50 = Some(105.0);
    mixed.ema_200 = Some(105.0);
    mixed.supertrend.direction = Some(-1);
    let cases: Vec<(&str, IndicatorSnapshot, Regime)> = vec![
        ("high ATR%, bullish", ind(30.0, 40.0, 3.5, true), Regime::VolatileBull),
        (
            "extreme ATR%, bearish",
            ind(30.0, 40.0, 6.0, false),
            Regime::VolatileBear,
        ),
        ("ADX 35 bullish", ind(35.0, 40.0, 1.5, true), Regime::TrendingBull),
        ("ADX 35 bearish", ind(35.0, 40.0, 1.5, false), Regime::TrendingBear),
        (
            "ADX exactly 25 is not trending",
            ind(25.0, 50.0, 1.5, true),
            Regime::Ranging,
        ),
        ("squeeze with weak ADX", squeeze, Regime::BreakoutPotential),
        ("choppiness 66", ind(18.0, 66.0, 1.5, true), Regime::Choppy),
        (
            "choppiness exactly 60 is not choppy",
            ind(18.0, 60.0, 1.5, true),
            Regime::Ranging,
        ),
        ("quiet, mixed direction", mixed, Regime::Ranging),
    ];
    for (why, snapshot, want) in cases {
        let d = run(&snapshot);
        assert_eq!(d.regime, want, "{why}: {}", d.reasoning);
        assert!(
            (0.4..=0.95).contains(&d.confidence),
            "{why}: confidence {}",
            d.confidence
        );
        assert!(d.reasoning.chars().count() <= MAX_REGIME_REASONING_CHARS);
    }
}

#[test]
fn clear_regimes_reach_the_change_threshold_and_borderline_ones_do_not() {
    let clear = run(&ind(45.0, 35.0, 1.5, true));
    assert_eq!(clear.regime, Regime::TrendingBull);
    assert!(clear.confidence >= 0.9, "{}", clear.confidence);
    let mut weak = ind(26.0, 50.0, 1.5, true);
    weak.ema_50 = Some(105.0);
    weak.supertrend.direction = Some(-1);
    let weak = run(&weak);
    assert_eq!(weak.regime, Regime::TrendingBull);
    assert!(weak.confidence < 0.7, "{}", weak.confidence);
}

#[test]
fn missing_indicators_use_reference_defaults_and_low_confidence() {
    let d = run(&IndicatorSnapshot::default());
    assert_eq!(d.regime, Regime::Ranging, "ADX 25 and choppiness 50 defaults");
    assert_eq!(d.confidence, DEGRADED_CONFIDENCE);
    assert_eq!(d.choppiness, 50.0);
    assert_eq!(d.trend_strength, 0.25);
    assert_eq!(d.volatility, Volatility::Normal);
    assert!(d.missing.contains(&"adx_14".to_string()));
    assert!(d.reasoning.contains("missing"));
    // Only ADX known and above 25: the reference rule RSI > 50 picks the side (RSI default 50 → bear).
    let partial = IndicatorSnapshot {
        adx_14: Some(40.0),
        ..IndicatorSnapshot::default()
    };
    assert_eq!(run(&partial).regime, Regime::TrendingBear);
}

#[test]
fn ta_direction_votes() {
    let mut snapshot = ind(35.0, 40.0, 1.5, true);
    // Make the indicator votes a tie: 2 bullish, 2 bearish.
    snapshot.ema_9 = None;
    snapshot.rsi_14 = Some(45.0);
    snapshot.supertrend.direction = Some(-1);
    let ta = TaSummary {
        trend_direction: TrendDirection::Bearish,
        trend_strength: 0.7,
        momentum_score: -0.3,
        bias: Bias::Short,
        confidence: 0.25,
    };
    let with_ta = detect(&RegimeInput {
        current_price: dec!(100),
        indicators: &snapshot,
        ta: Some(ta),
    });
    assert_eq!(with_ta.regime, Regime::TrendingBear);
    assert!(with_ta.direction_score < 0.0);
}

#[test]
fn volatility_and_volume_tables() {
    for (pct, want) in [
        (0.5, Volatility::Low),
        (1.0, Volatility::Normal),
        (2.99, Volatility::Normal),
        (3.0, Volatility::High),
        (5.0, Volatility::Extreme),
    ] {
        assert_eq!(volatility_class(pct), want, "{pct}");
    }
    for (v, want) in [
        (None, VolumeProfile::Stable),
        (Some(0.5), VolumeProfile::Decreasing),
        (Some(1.0), VolumeProfile::Stable),
        (Some(1.5), VolumeProfile::Increasing),
        (Some(3.2), VolumeProfile::Spike),
    ] {
        assert_eq!(volume_profile(v), want, "{v:?}");
    }
}

#[test]
fn parameter_table_matches_reference_section_4() {
    use EntryStrictness::*;
    let table = [
        (Regime::TrendingBull, 1.0, 1.2, 2.0, 5, Normal),
        (Regime::TrendingBear, 1.0, 1.2, 2.0, 3, Normal),
        (Regime::Ranging, 0.75, 0.8, 1.5, 2, Strict),
        (Regime::VolatileBull, 0.5, 1.5, 2.5, 2, Strict),
        (Regime::VolatileBear, 0.5, 1.5, 2.5, 2, Strict),
        (Regime::Choppy, 0.25, 1.0, 1.0, 1, VeryStrict),
        (Regime::BreakoutPotential, 0.75, 1.0, 3.0, 3, Strict),
        (Regime::Unknown, 0.75, 0.8, 1.5, 2, Strict),
    ];
    for (regime, size, stop, tp, lev, strict) in table {
        let p = RegimeParameters::for_regime(regime);
        assert_eq!(
            (
                p.position_size_multiplier,
                p.stop_loss_atr_multiplier,
                p.take_profit_atr_multiplier,
                p.max_leverage,
                p.entry_strictness
            ),
            (size, stop, tp, lev, strict),
            "{regime}"
        );
    }
}

#[test]
fn model_parameters_are_clamped() {
    let wild = RegimeParameters {
        position_size_multiplier: 9.0,
        stop_loss_atr_multiplier: 0.1,
        take_profit_atr_multiplier: f64::NAN,
        max_leverage: 20,
        entry_strictness: EntryStrictness::Relaxed,
    };
    let c = wild.clamped(Regime::Ranging);
    assert_eq!(c.position_size_multiplier, 1.5);
    assert_eq!(c.stop_loss_atr_multiplier, 0.5);
    assert_eq!(c.take_profit_atr_multiplier, 1.5);
    assert_eq!(c.max_leverage, 2);
}

fn detection(regime: Regime, confidence: f64) -> RegimeDetection {
    RegimeDetection {
        regime,
        confidence,
        volatility: Volatility::Normal,
        trend_strength: 0.3,
        volume_profile: VolumeProfile::Stable,
        choppiness: 50.0,
        adx_value: Some(30.0),
        atr_pct: Some(1.2),
        direction_score: 0.5,
        missing: Vec::new(),
        reasoning: format!("{regime} detected"),
    }
}

/// Each step: (detected regime, confidence) → (regime in force, periods, pending count).
#[test]
fn hysteresis_table() {
    use Regime::*;
    type Step = (Regime, f64, Regime, u32, Option<u32>);
    let steps: [Step; 10] = [
        (Ranging, 0.45, Ranging, 1, None),          // first detection always adopted
        (TrendingBull, 0.9, Ranging, 2, Some(1)),   // candidate 1/2
        (TrendingBull, 0.8, TrendingBull, 1, None), // confirmed on the 2nd consecutive run
        (Choppy, 0.75, TrendingBull, 2, Some(1)),   // candidate
        (TrendingBull, 0.6, TrendingBull, 3, None), // repeat of current clears the candidate
        (Choppy, 0.75, TrendingBull, 4, Some(1)),   // candidate starts again at 1
        (Choppy, 0.65, TrendingBull, 5, None),      // low confidence breaks the streak
        (Choppy, 0.75, TrendingBull, 6, Some(1)),
        (Ranging, 0.75, TrendingBull, 7, Some(1)), // a different candidate restarts the count
        (Ranging, 0.7, Ranging, 1, None),          // exactly 0.7 counts
    ];
    let mut tracker = RegimeTracker::default();
    let s = sym();
    let mut prev_regime = None;
    for (i, (det, conf, want, periods, pending)) in steps.into_iter().enumerate() {
        let now = t0() + Duration::seconds(300 * i as i64);
        let out = tracker.observe(&s, detection(det, conf), now);
        assert_eq!(out.regime, want, "step {i}");
        assert_eq!(out.periods_in_regime, periods, "step {i}");
        assert_eq!(out.pending_change.map(|p| p.consecutive), pending, "step {i}");
        assert_eq!(out.detected_regime, det, "step {i}");
        if prev_regime.is_some_and(|p| p != want) {
            assert_eq!(out.previous_regime, prev_regime, "step {i}");
            assert_eq!(out.regime_started, now, "step {i}");
        }
        prev_regime = Some(want);
    }
    assert_eq!(tracker.current(), Some(Ranging));
}

#[test]
fn suppressed_change_keeps_held_confidence_and_parameters() {
    let s = sym();
    let mut tracker = RegimeTracker::default();
    tracker.observe(&s, detection(Regime::TrendingBull, 0.82), t0());
    let out = tracker.observe(&s, detection(Regime::Choppy, 0.9), t0() + Duration::seconds(300));
    assert_eq!(out.regime, Regime::TrendingBull);
    assert_eq!(
        out.confidence, 0.82,
        "held regime's own confidence, not the suppressed detection's"
    );
    assert_eq!(out.parameters, RegimeParameters::for_regime(Regime::TrendingBull));
    assert_eq!(out.detected_confidence, 0.9);
    assert_eq!(
        out.pending_change,
        Some(PendingChange {
            regime: Regime::Choppy,
            confidence: 0.9,
            consecutive: 1
        })
    );
    assert!(out.reasoning.starts_with("holding trending_bull"));
    assert!(out.reasoning.chars().count() <= MAX_REGIME_REASONING_CHARS);
}

#[test]
fn restore_continues_the_stored_regime() {
    let s = sym();
    let mut first = RegimeTracker::default();
    first.observe(&s, detection(Regime::TrendingBear, 0.8), t0());
    let stored = first.observe(&s, detection(Regime::TrendingBear, 0.85), t0() + Duration::seconds(300));
    let mut restarted = RegimeTracker::default();
    restarted.restore(&stored, t0() + Duration::seconds(300 + 900), 300);
    assert_eq!(restarted.current(), Some(Regime::TrendingBear));
    // A single strong different detection does not flip the restored regime.
    let out = restarted.observe(&s, detection(Regime::Ranging, 0.9), t0() + Duration::seconds(1500));
    assert_eq!(out.regime, Regime::TrendingBear);
    assert_eq!(out.periods_in_regime, 2 + 3 + 1);
    assert_eq!(out.regime_started, t0());
}

#[test]
fn failure_output_is_defensive_and_converts_to_update() {
    let s = sym();
    let f = RegimeOutput::failure(&s, t0(), "model timed out");
    assert_eq!(f.regime, Regime::Choppy);
    assert_eq!(f.confidence, 0.0);
    assert_eq!(f.parameters.position_size_multiplier, 0.25);
    assert_eq!(f.parameters.entry_strictness, EntryStrictness::VeryStrict);

    let mut tracker = RegimeTracker::default();
    tracker.observe(&s, detection(Regime::Ranging, 0.8), t0());
    tracker.observe(&s, detection(Regime::VolatileBear, 0.8), t0());
    let out = tracker.observe(&s, detection(Regime::VolatileBear, 0.8), t0());
    let meta = EventMeta::caused_by("regime_detection", t0(), CorrelationId::new());
    let u = out.to_update(meta.clone());
    assert_eq!(u.meta, meta);
    assert_eq!(u.regime, Regime::VolatileBear);
    assert_eq!(u.previous_regime, Some(Regime::Ranging));
    assert_eq!(u.position_size_multiplier, 0.5);
    assert_eq!(u.stop_loss_atr_multiplier, 1.5);
    assert_eq!(u.take_profit_atr_multiplier, 2.5);
    assert_eq!(u.max_leverage, 2);
    assert_eq!(u.entry_strictness, EntryStrictness::Strict);

    let json = serde_json::to_value(&out).unwrap();
    assert_eq!(json["regime"], "volatile_bear");
    assert_eq!(json["position_size_multiplier"], 0.5);
    assert_eq!(json["entry_strictness"], "strict");
    let back: RegimeOutput = serde_json::from_value(json).unwrap();
    assert_eq!(back, out);
}
