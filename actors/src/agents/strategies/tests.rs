//! Strategy panel tests on constructed indicator states: each strategy's rule, the regime gates,
//! the levels against the risk rules, and the panel through the consensus.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests assert by unwrapping"
)]

use super::*;
use crate::agents::trading_decision::{consensus, AgreementType, ConsensusConfig};
use crate::domain::{Bias, Candle, EntryStrictness, Symbol, Timeframe, TrendDirection};
use crate::indicators::{BollingerValue, IndicatorSnapshot, MacdValue};
use crate::messages::{EventMeta, MarketSnapshot, RegimeUpdate, SentimentUpdate, TaSignal};
use chrono::{Duration, TimeZone, Utc};
use rust_decimal::prelude::FromPrimitive;
use rust_decimal_macros::dec;
use std::sync::Arc;

fn meta() -> EventMeta {
    EventMeta::new("test", Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap())
}

fn sym() -> Symbol {
    Symbol::parse("BTC/USDT").unwrap()
}

fn regime(r: Regime) -> RegimeUpdate {
    let p = crate::agents::regime_detection::RegimeParameters::for_regime(r);
    RegimeUpdate {
        meta: meta(),
        symbol: sym(),
        regime: r,
        confidence: 0.8,
        position_size_multiplier: p.position_size_multiplier,
        entry_strictness: EntryStrictness::Normal,
        stop_loss_atr_multiplier: p.stop_loss_atr_multiplier,
        take_profit_atr_multiplier: p.take_profit_atr_multiplier,
        max_leverage: p.max_leverage,
        previous_regime: None,
    }
}

fn ta(bias: Bias) -> TaSignal {
    TaSignal {
        meta: meta(),
        symbol: sym(),
        timeframe: Timeframe::H1,
        trend_direction: TrendDirection::Neutral,
        trend_strength: 0.6,
        momentum_score: 0.0,
        bias,
        confidence: 0.7,
        reasoning: "test".into(),
    }
}

/// Hourly candles around `level`, the last closing at `last_close`.
fn candles(n: usize, level: f64, last_close: f64) -> Arc<[Candle]> {
    let d = |x: f64| Decimal::from_f64(x).unwrap().round_dp(4);
    (0..n)
        .map(|i| {
            let c = if i + 1 == n { last_close } else { level };
            Candle {
                symbol: sym(),
                timeframe: Timeframe::H1,
                open_time: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::hours(i as i64),
                open: d(level),
                high: d(c.max(level) * 1.002),
                low: d(c.min(level) * 0.998),
                close: d(c),
                volume: d(10.0),
            }
        })
        .collect()
}

/// A steady uptrend at price 101: stacked EMAs, ADX 35, positive rising MACD, RSI 66, ROC +2 %,
/// ATR 1 %, volume 1.6× average, the last close above the 20-candle channel.
fn uptrend() -> (IndicatorSnapshot, IndicatorSnapshot) {
    let ind = IndicatorSnapshot {
        ema_9: Some(100.0),
        ema_21: Some(98.0),
        ema_50: Some(95.0),
        rsi_14: Some(66.0),
        atr_14: Some(1.01),
        adx_14: Some(35.0),
        roc_10: Some(2.0),
        volume_vs_avg: Some(1.6),
        macd: MacdValue {
            line: Some(1.0),
            signal: Some(0.6),
            histogram: Some(0.4),
        },
        bollinger_bands: BollingerValue {
            upper: Some(102.0),
            middle: Some(98.0),
            lower: Some(94.0),
            width: Some(0.08),
            position: Some(0.875),
        },
        ..IndicatorSnapshot::default()
    };
    let mut prev = ind.clone();
    prev.macd.histogram = Some(0.3);
    (ind, prev)
}

/// The uptrend mirrored around 100 (a steady downtrend at price 99).
fn downtrend() -> (IndicatorSnapshot, IndicatorSnapshot) {
    let (mut ind, _) = uptrend();
    ind.ema_9 = Some(100.0);
    ind.ema_21 = Some(102.0);
    ind.ema_50 = Some(105.0);
    ind.rsi_14 = Some(34.0);
    ind.roc_10 = Some(-2.0);
    ind.macd.histogram = Some(-0.4);
    ind.bollinger_bands.position = Some(0.125);
    let mut prev = ind.clone();
    prev.macd.histogram = Some(-0.3);
    (ind, prev)
}

/// A quiet range at its lower band: RSI 27, position 0.03, middle band 2 % above.
fn range_low() -> IndicatorSnapshot {
    IndicatorSnapshot {
        ema_9: Some(99.0),
        ema_21: Some(99.5),
        ema_50: Some(99.8),
        rsi_14: Some(27.0),
        atr_14: Some(0.8),
        adx_14: Some(14.0),
        roc_10: Some(-1.2),
        volume_vs_avg: Some(1.0),
        macd: MacdValue {
            line: Some(-0.2),
            signal: Some(-0.1),
            histogram: Some(-0.1),
        },
        bollinger_bands: BollingerValue {
            upper: Some(102.0),
            middle: Some(100.0),
            lower: Some(97.9),
            width: Some(0.04),
            position: Some(0.03),
        },
        ..IndicatorSnapshot::default()
    }
}

fn input(
    price: Decimal,
    ind: IndicatorSnapshot,
    prev: Option<IndicatorSnapshot>,
    r: Regime,
    bias: Bias,
    trend: TrendDirection,
    last_close: f64,
) -> DecisionInput {
    let snapshot = MarketSnapshot {
        meta: meta(),
        symbol: sym(),
        current_price: price,
        price_24h_ago: None,
        price_change_24h_pct: None,
        volume_24h: None,
        volume_vs_avg: None,
        indicators: ind,
        indicators_at: None,
        data_age_seconds: 0,
        missing_data_flags: vec![],
    };
    let mut i = DecisionInput::new(sym(), price, Some(snapshot), Some(ta(bias)), Some(regime(r)), None);
    i.previous_indicators = prev;
    i.recent_candles = candles(40, 100.0, last_close);
    i.timeframe_trends = vec![
        (Timeframe::M1, trend),
        (Timeframe::M5, trend),
        (Timeframe::M15, trend),
        (Timeframe::H4, trend),
    ];
    i
}

fn up_input(r: Regime) -> DecisionInput {
    let (ind, prev) = uptrend();
    input(
        dec!(101),
        ind,
        Some(prev),
        r,
        Bias::Long,
        TrendDirection::Bullish,
        101.0,
    )
}

fn down_input(r: Regime) -> DecisionInput {
    let (ind, prev) = downtrend();
    input(dec!(99), ind, Some(prev), r, Bias::Short, TrendDirection::Bearish, 99.0)
}

fn panel(input: &DecisionInput) -> (Vec<ModelVote>, Vec<(String, String)>) {
    panel_votes(&StrategySettings::default(), input)
}

fn actions(votes: &[ModelVote]) -> Vec<(String, TradeAction)> {
    votes
        .iter()
        .map(|v| (v.model.clone(), v.decision.as_ref().unwrap().action))
        .collect()
}

fn decide(input: &DecisionInput) -> crate::agents::trading_decision::ConsensusDecision {
    let (votes, _) = panel(input);
    let mut cfg = ConsensusConfig::default();
    cfg.min_quorum = cfg.min_quorum.min(votes.len()).max(1);
    consensus(votes, &cfg)
}

/// Every entry's levels respect the risk rules: stop 0.5–5 %, reward:risk ≥ 1.5, size from the
/// regime multiplier.
fn assert_levels(d: &DecisionOutput, size_multiplier: Decimal) {
    let stop = d.stop_loss_pct.expect("entries carry a stop");
    let tp = d.take_profit_pct.expect("entries carry a take-profit");
    assert!(stop >= dec!(0.5) && stop <= dec!(5), "stop {stop}");
    assert!(tp / stop >= dec!(1.5), "reward:risk {tp}/{stop}");
    assert!(d.confidence >= MIN_ACTION_CONFIDENCE && d.confidence <= 1.0);
    let base = d.position_size_pct.unwrap() / size_multiplier;
    assert!(base == dec!(10) || base == dec!(8), "size {:?}", d.position_size_pct);
    assert_eq!(d.leverage, 1);
    assert!(d.entry_price.is_some());
}

#[test]
fn steady_uptrend_every_trend_strategy_votes_buy_and_the_panel_buys() {
    let inp = up_input(Regime::TrendingBull);
    let (votes, abstained) = panel(&inp);
    assert_eq!(
        actions(&votes),
        vec![
            ("rule:trend".into(), TradeAction::Buy),
            ("rule:momentum".into(), TradeAction::Buy),
            ("rule:breakout".into(), TradeAction::Buy),
        ]
    );
    assert_eq!(abstained.len(), 1);
    assert_eq!(abstained[0].0, "rule:mean_reversion");
    for v in &votes {
        assert_eq!(v.provider, RULE_PROVIDER);
        assert_levels(v.decision.as_ref().unwrap(), dec!(1));
    }
    // trend: 2 ATR × 1.2 (trending stop multiplier) = 2.4 % of 101 → TP 4.8 %
    let trend = votes[0].decision.as_ref().unwrap();
    assert_eq!(
        (trend.stop_loss_pct, trend.take_profit_pct),
        (Some(dec!(2.4)), Some(dec!(4.8)))
    );
    let d = decide(&inp);
    assert_eq!(d.action, TradeAction::Buy);
    assert_eq!(d.agreement, AgreementType::Unanimous);
    assert_eq!(d.total_models, 3);
    assert!(d.confidence > 0.8, "{}", d.confidence);
    assert!(
        d.stop_loss_pct.unwrap() >= dec!(0.5) && d.take_profit_pct.unwrap() / d.stop_loss_pct.unwrap() >= dec!(1.5)
    );
}

#[test]
fn no_long_entries_in_bear_regimes() {
    // the uptrend's indicators under a bear regime: the long setups are vetoed
    for r in [Regime::TrendingBear, Regime::VolatileBear] {
        let (votes, _) = panel(&up_input(r));
        assert!(
            votes
                .iter()
                .all(|v| v.decision.as_ref().unwrap().action != TradeAction::Buy),
            "{r}: {:?}",
            actions(&votes)
        );
        assert_eq!(decide(&up_input(r)).action, TradeAction::Hold, "{r}");
    }
    // a downtrend in a trending bear regime: shorts, never a long
    let inp = down_input(Regime::TrendingBear);
    let (votes, _) = panel(&inp);
    assert!(votes
        .iter()
        .all(|v| v.decision.as_ref().unwrap().action != TradeAction::Buy));
    let d = decide(&inp);
    assert_eq!(d.action, TradeAction::Sell, "{}", d.reasoning);
    for v in &votes {
        let o = v.decision.as_ref().unwrap();
        if o.action == TradeAction::Sell {
            assert_levels(o, dec!(1));
        }
    }
    // and no shorts in a bull regime
    let d = decide(&down_input(Regime::TrendingBull));
    assert_eq!(d.action, TradeAction::Hold, "{}", d.reasoning);
}

#[test]
fn choppy_and_unknown_regimes_hold() {
    for r in [Regime::Choppy, Regime::Unknown] {
        for inp in [up_input(r), down_input(r)] {
            let (votes, abstained) = panel(&inp);
            assert_eq!(votes.len(), 4, "{r}: every strategy is asked");
            assert!(abstained.is_empty());
            assert!(votes
                .iter()
                .all(|v| v.decision.as_ref().unwrap().action == TradeAction::Hold));
            let d = decide(&inp);
            assert_eq!(d.action, TradeAction::Hold, "{r}");
        }
    }
}

#[test]
fn ranging_trades_only_mean_reversion() {
    // at the lower band in a range: only mean reversion is asked, and it buys
    let inp = input(
        dec!(98),
        range_low(),
        None,
        Regime::Ranging,
        Bias::Short,
        TrendDirection::Bearish,
        98.0,
    );
    let (votes, abstained) = panel(&inp);
    assert_eq!(actions(&votes), vec![("rule:mean_reversion".into(), TradeAction::Buy)]);
    assert_eq!(abstained.len(), 3, "{abstained:?}");
    let o = votes[0].decision.as_ref().unwrap();
    assert_levels(o, dec!(0.75));
    // the target is at least the middle band (100 from 98 = 2.04 %)
    assert!(o.take_profit_pct.unwrap() >= dec!(2.04), "{:?}", o.take_profit_pct);
    assert_eq!(decide(&inp).action, TradeAction::Buy);
    // a strong trend's indicators in a ranging regime: trend, momentum and breakout abstain,
    // mean reversion sees no extreme → HOLD
    let d = decide(&up_input(Regime::Ranging));
    assert_eq!(d.action, TradeAction::Hold);
    assert_eq!(d.total_models, 1);
    // mean reversion never trades outside ranging regimes
    for r in [Regime::TrendingBull, Regime::BreakoutPotential, Regime::VolatileBull] {
        let mut inp = inp.clone();
        inp.regime = Some(regime(r));
        let (votes, _) = panel(&inp);
        assert!(votes.iter().all(|v| v.model != "rule:mean_reversion"), "{r}");
    }
}

#[test]
fn missing_inputs_hold_with_zero_confidence() {
    let mut inp = up_input(Regime::TrendingBull);
    inp.ta = None;
    let (votes, _) = panel(&inp);
    assert_eq!(votes.len(), 4);
    for v in &votes {
        let d = v.decision.as_ref().unwrap();
        assert_eq!((d.action, d.confidence), (TradeAction::Hold, 0.0));
    }
}

#[test]
fn opposing_sentiment_vetoes_and_weak_evidence_holds() {
    let mut inp = up_input(Regime::TrendingBull);
    inp.sentiment = Some(SentimentUpdate {
        meta: meta(),
        symbol: sym(),
        bias: crate::domain::SentimentBias::VeryBearish,
        confidence: 0.6,
        fear_greed: crate::domain::FearGreed::Neutral,
        social_score: 0.0,
        news_score: 0.0,
        key_events: vec![],
    });
    assert_eq!(decide(&inp).action, TradeAction::Hold);
    // breakout without volume, trend with a weak ADX, momentum overextended
    let (mut ind, prev) = uptrend();
    ind.volume_vs_avg = Some(0.7);
    ind.adx_14 = Some(15.0);
    ind.rsi_14 = Some(82.0);
    let inp = input(
        dec!(101),
        ind,
        Some(prev),
        Regime::TrendingBull,
        Bias::Long,
        TrendDirection::Bullish,
        101.0,
    );
    let (votes, _) = panel(&inp);
    assert!(
        votes
            .iter()
            .all(|v| v.decision.as_ref().unwrap().action == TradeAction::Hold),
        "{:?}",
        actions(&votes)
    );
    // the other timeframes against the trend: the trend strategy holds
    let mut inp = up_input(Regime::TrendingBull);
    inp.timeframe_trends
        .iter_mut()
        .for_each(|t| t.1 = TrendDirection::Bearish);
    let trend = evaluate(StrategyKind::Trend, &StrategySettings::default(), &inp);
    assert!(
        matches!(&trend, StrategyAnswer::Vote(d) if d.action == TradeAction::Hold),
        "{trend:?}"
    );
}

#[test]
fn stops_are_clamped_into_the_risk_range() {
    // a tiny ATR would give a 0.05 % stop: clamped up to 0.5 %; a huge one down to 5 %
    for (atr, want) in [(0.02, dec!(0.5)), (6.0, dec!(5))] {
        let (mut ind, prev) = uptrend();
        ind.atr_14 = Some(atr);
        let inp = input(
            dec!(101),
            ind,
            Some(prev),
            Regime::TrendingBull,
            Bias::Long,
            TrendDirection::Bullish,
            101.0,
        );
        let StrategyAnswer::Vote(d) = evaluate(StrategyKind::Trend, &StrategySettings::default(), &inp) else {
            panic!("trend asked in a trending regime")
        };
        assert_eq!(d.action, TradeAction::Buy);
        assert_eq!(d.stop_loss_pct, Some(want), "atr {atr}");
        assert!(d.take_profit_pct.unwrap() >= want * dec!(1.5));
    }
}

#[test]
fn disabled_strategies_are_not_asked_and_settings_validate() {
    let mut s = StrategySettings::default();
    s.breakout.enabled = false;
    let (votes, _) = panel_votes(&s, &up_input(Regime::TrendingBull));
    assert!(votes.iter().all(|v| v.model != "rule:breakout"));
    assert!(StrategySettings::none().enabled().is_empty());
    assert!(StrategySettings::default().validate().is_ok());
    let mut bad = StrategySettings::default();
    bad.trend.reward_risk = dec!(1.2);
    assert_eq!(bad.validate().unwrap_err().0, "trend.reward_risk");
    let bad = StrategySettings {
        min_stop_pct: dec!(6),
        ..StrategySettings::default()
    };
    assert_eq!(bad.validate().unwrap_err().0, "min_stop_pct");
    let mut bad = StrategySettings::default();
    bad.breakout.channel_candles = 1;
    assert_eq!(bad.validate().unwrap_err().0, "breakout.channel_candles");
}
