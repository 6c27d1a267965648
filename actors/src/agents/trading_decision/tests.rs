//! Unit tests of the decision core: rule-based model, output validation, consensus.
use super::*;
use crate::domain::{EntryStrictness, Timeframe, TrendDirection};
use chrono::{TimeZone, Utc};
use rust_decimal_macros::dec;

fn meta() -> EventMeta {
    EventMeta::new("test", Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap())
}

fn sym() -> Symbol {
    Symbol::parse("BTC/USDT").unwrap()
}

fn ta(bias: Bias, confidence: f64) -> TaSignal {
    TaSignal {
        meta: meta(),
        symbol: sym(),
        timeframe: Timeframe::H1,
        trend_direction: TrendDirection::Neutral,
        trend_strength: 0.6,
        momentum_score: 0.2,
        bias,
        confidence,
        reasoning: "test".into(),
    }
}

fn regime(r: Regime) -> RegimeUpdate {
    // Reference §4 parameters for the regimes used here.
    let (size, stop, tp) = match r {
        Regime::TrendingBull | Regime::TrendingBear => (1.0, 1.2, 2.0),
        Regime::Ranging => (0.75, 0.8, 1.5),
        Regime::VolatileBull | Regime::VolatileBear => (0.5, 1.5, 2.5),
        Regime::BreakoutPotential => (0.75, 1.0, 3.0),
        _ => (0.25, 1.0, 1.0),
    };
    RegimeUpdate {
        meta: meta(),
        symbol: sym(),
        regime: r,
        confidence: 0.8,
        position_size_multiplier: size,
        entry_strictness: EntryStrictness::Normal,
        stop_loss_atr_multiplier: stop,
        take_profit_atr_multiplier: tp,
        max_leverage: 3,
        previous_regime: None,
    }
}

fn sentiment(bias: SentimentBias, confidence: f64) -> SentimentUpdate {
    SentimentUpdate {
        meta: meta(),
        symbol: sym(),
        bias,
        confidence,
        fear_greed: crate::domain::FearGreed::Neutral,
        social_score: 0.0,
        news_score: 0.0,
        key_events: vec![],
    }
}

fn input(ta_: Option<TaSignal>, regime_: Option<RegimeUpdate>, sent: Option<SentimentUpdate>) -> DecisionInput {
    DecisionInput::new(sym(), dec!(50000), None, ta_, regime_, sent)
}

#[test]
fn rule_based_decision_table() {
    use SentimentBias as S;
    let cases: Vec<(&str, DecisionInput, TradeAction, f64)> = vec![
        ("no inputs", input(None, None, None), TradeAction::Hold, 0.0),
        (
            "no regime",
            input(Some(ta(Bias::Long, 0.9)), None, None),
            TradeAction::Hold,
            0.0,
        ),
        (
            "neutral bias",
            input(Some(ta(Bias::Neutral, 0.9)), Some(regime(Regime::TrendingBull)), None),
            TradeAction::Hold,
            0.5,
        ),
        (
            "long in bull trend",
            input(Some(ta(Bias::Long, 0.7)), Some(regime(Regime::TrendingBull)), None),
            TradeAction::Buy,
            0.75,
        ),
        (
            "short in bear trend + bearish sentiment",
            input(
                Some(ta(Bias::Short, 0.7)),
                Some(regime(Regime::TrendingBear)),
                Some(sentiment(S::Bearish, 0.6)),
            ),
            TradeAction::Sell,
            0.8,
        ),
        (
            "long in choppy",
            input(Some(ta(Bias::Long, 0.95)), Some(regime(Regime::Choppy)), None),
            TradeAction::Hold,
            0.5,
        ),
        (
            "long in unknown",
            input(Some(ta(Bias::Long, 0.95)), Some(regime(Regime::Unknown)), None),
            TradeAction::Hold,
            0.5,
        ),
        (
            "long against bear trend",
            input(Some(ta(Bias::Long, 0.95)), Some(regime(Regime::TrendingBear)), None),
            TradeAction::Hold,
            0.5,
        ),
        (
            "short against volatile bull",
            input(Some(ta(Bias::Short, 0.95)), Some(regime(Regime::VolatileBull)), None),
            TradeAction::Hold,
            0.5,
        ),
        (
            "strong opposing sentiment vetoes",
            input(
                Some(ta(Bias::Long, 0.95)),
                Some(regime(Regime::TrendingBull)),
                Some(sentiment(S::VeryBearish, 0.5)),
            ),
            TradeAction::Hold,
            0.5,
        ),
        (
            "weak opposing sentiment costs 0.10",
            input(
                Some(ta(Bias::Long, 0.72)),
                Some(regime(Regime::Ranging)),
                Some(sentiment(S::Bearish, 0.4)),
            ),
            TradeAction::Hold,
            0.5,
        ),
        (
            "ranging long at 0.70",
            input(Some(ta(Bias::Long, 0.70)), Some(regime(Regime::Ranging)), None),
            TradeAction::Buy,
            0.70,
        ),
        (
            "below 0.65",
            input(Some(ta(Bias::Long, 0.64)), Some(regime(Regime::Ranging)), None),
            TradeAction::Hold,
            0.5,
        ),
        (
            "sentiment pushes over 0.65",
            input(
                Some(ta(Bias::Long, 0.62)),
                Some(regime(Regime::Ranging)),
                Some(sentiment(S::Bullish, 0.3)),
            ),
            TradeAction::Buy,
            0.67,
        ),
    ];
    for (name, inp, action, conf) in cases {
        let d = rule_based_decision(&inp);
        assert_eq!(d.action, action, "{name}: {}", d.reasoning);
        assert!(
            (d.confidence - conf).abs() < 1e-9,
            "{name}: confidence {}",
            d.confidence
        );
        assert_eq!(d.leverage, 1, "{name}");
        if matches!(action, TradeAction::Buy | TradeAction::Sell) {
            assert_eq!(d.entry_price, Some(dec!(50000)), "{name}");
            assert!(d.stop_loss_pct.is_some(), "{name}: entries carry a stop");
        } else {
            assert!(d.stop_loss_pct.is_none() && d.entry_price.is_none(), "{name}");
        }
    }
}

#[test]
fn rule_based_levels_follow_the_regime() {
    // trending bull: stop 2 × 1.2 = 2.4 %; R:R max(1.5, 2.0/1.2 = 1.667) → TP 4.0 %; size 10 × 1.0
    let d = rule_based_decision(&input(
        Some(ta(Bias::Long, 0.8)),
        Some(regime(Regime::TrendingBull)),
        None,
    ));
    assert_eq!(d.stop_loss_pct, Some(dec!(2.4)));
    assert_eq!(d.take_profit_pct, Some(dec!(4)));
    assert_eq!(d.position_size_pct, Some(dec!(10)));
    // ranging: stop 2 × 0.8 = 1.6 %; R:R 1.5/0.8 = 1.875 → 3.0 %; size 7.5
    let d = rule_based_decision(&input(Some(ta(Bias::Long, 0.8)), Some(regime(Regime::Ranging)), None));
    assert_eq!(d.stop_loss_pct, Some(dec!(1.6)));
    assert_eq!(d.take_profit_pct, Some(dec!(3)));
    assert_eq!(d.position_size_pct, Some(dec!(7.5)));
    // breakout: stop 2 %; R:R 3 → 6 %
    let d = rule_based_decision(&input(
        Some(ta(Bias::Short, 0.8)),
        Some(regime(Regime::BreakoutPotential)),
        None,
    ));
    assert_eq!(
        (d.action, d.stop_loss_pct, d.take_profit_pct),
        (TradeAction::Sell, Some(dec!(2)), Some(dec!(6)))
    );
    // and the rule-based answer parses back through the model-output validator unchanged
    let back = parse_decision(&d.to_json().to_string(), dec!(50000)).unwrap();
    assert_eq!(back, d);
}

#[test]
fn parses_a_valid_answer_in_prose() {
    let t = "Decision below.\n```json\n{\"action\": \"buy\", \"confidence\": 0.8, \"entry_price\": 50000.5, \
             \"stop_loss_pct\": 2.5, \"take_profit_pct\": 5, \"position_size_pct\": 12.5, \"leverage\": 2.0, \
             \"reasoning\": \"trend up\"}\n```";
    let d = parse_decision(t, dec!(50000)).unwrap();
    assert_eq!(d.action, TradeAction::Buy);
    assert_eq!(d.entry_price, Some(dec!(50000.5)));
    assert_eq!(d.stop_loss_pct, Some(dec!(2.5)));
    assert_eq!(d.take_profit_pct, Some(dec!(5)));
    assert_eq!(d.position_size_pct, Some(dec!(12.5)));
    assert_eq!(d.leverage, 2);
}

#[test]
fn converts_absolute_levels_and_clamps_stop() {
    // stop 49000 on entry 50000 = 2 %; TP 53000 = 6 %
    let d = parse_decision(
        r#"{"action":"BUY","confidence":0.7,"entry_price":50000,"stop_loss":49000,"take_profit":53000}"#,
        dec!(1),
    )
    .unwrap();
    assert_eq!((d.stop_loss_pct, d.take_profit_pct), (Some(dec!(2)), Some(dec!(6))));
    // SELL against the current price; stop 0.5 % clamps up to 1 %
    let d = parse_decision(r#"{"action":"SELL","confidence":0.7,"stop_loss":100.5}"#, dec!(100)).unwrap();
    assert_eq!(d.stop_loss_pct, Some(dec!(1)));
    assert_eq!(d.entry_price, None);
    // 9 % clamps down to 5 %
    let d = parse_decision(r#"{"action":"BUY","confidence":0.7,"stop_loss_pct":9}"#, dec!(100)).unwrap();
    assert_eq!(d.stop_loss_pct, Some(dec!(5)));
}

#[test]
fn invalid_answers_name_the_field() {
    let cases = [
        ("I would buy here", "no JSON object"),
        (r#"{"confidence": 0.7}"#, "`action`"),
        (r#"{"action": "CLOSE", "confidence": 0.7}"#, "`action`"),
        (r#"{"action": "HOLD"}"#, "`confidence`"),
        (r#"{"action": "HOLD", "confidence": 1.5}"#, "`confidence`"),
        (r#"{"action": "HOLD", "confidence": "high"}"#, "`confidence`"),
        (r#"{"action": "BUY", "confidence": 0.8}"#, "`stop_loss_pct`"),
        (
            r#"{"action": "BUY", "confidence": 0.8, "stop_loss": 101}"#,
            "`stop_loss`",
        ),
        (
            r#"{"action": "SELL", "confidence": 0.8, "stop_loss_pct": 2, "take_profit": 105}"#,
            "`take_profit`",
        ),
        (
            r#"{"action": "BUY", "confidence": 0.8, "stop_loss_pct": -2}"#,
            "`stop_loss_pct`",
        ),
        (
            r#"{"action": "BUY", "confidence": 0.8, "stop_loss_pct": 2, "position_size_pct": 150}"#,
            "`position_size_pct`",
        ),
        (
            r#"{"action": "BUY", "confidence": 0.8, "stop_loss_pct": 2, "leverage": 10}"#,
            "`leverage`",
        ),
        (
            r#"{"action": "BUY", "confidence": 0.8, "stop_loss_pct": 2, "leverage": 1.5}"#,
            "`leverage`",
        ),
        (
            r#"{"action": "BUY", "confidence": 0.8, "stop_loss_pct": 2, "entry_price": "abc"}"#,
            "`entry_price`",
        ),
        (
            r#"{"action": "BUY", "confidence": 0.8, "stop_loss_pct": 2, "entry_price": 0}"#,
            "`entry_price`",
        ),
    ];
    for (text, field) in cases {
        match parse_decision(text, dec!(100)) {
            Err(ModelError::BadOutput(m)) => assert!(m.contains(field), "{text}: {m}"),
            other => panic!("{text}: expected BadOutput naming {field}, got {other:?}"),
        }
    }
}

fn vote(model: &str, action: TradeAction, confidence: f64) -> ModelVote {
    let entry = matches!(action, TradeAction::Buy | TradeAction::Sell);
    ModelVote {
        model: model.into(),
        provider: "p".into(),
        decision: Ok(DecisionOutput {
            action,
            confidence,
            entry_price: entry.then_some(dec!(100)),
            stop_loss_pct: entry.then_some(dec!(2)),
            take_profit_pct: entry.then_some(dec!(4)),
            position_size_pct: entry.then_some(dec!(10)),
            leverage: 1,
            reasoning: format!("{model} says {action}"),
        }),
        latency_ms: 100,
        input_tokens: 10,
        output_tokens: 5,
        cost_usd: dec!(0.01),
    }
}

fn votes(spec: &[(TradeAction, f64)], failed: usize) -> Vec<ModelVote> {
    let mut v: Vec<ModelVote> = spec
        .iter()
        .enumerate()
        .map(|(i, (a, c))| vote(&format!("m{i}"), *a, *c))
        .collect();
    for i in 0..failed {
        v.push(ModelVote::failed(
            &format!("f{i}"),
            "p",
            "model call timed out after 30000 ms",
        ));
    }
    v
}

#[test]
fn consensus_table() {
    use AgreementType::*;
    use TradeAction::{Buy as B, Hold as H, Sell as S};
    let cfg = ConsensusConfig::default();
    // (name, votes, failed models, action, agreement, confidence)
    type Case = (
        &'static str,
        Vec<(TradeAction, f64)>,
        usize,
        TradeAction,
        AgreementType,
        f64,
    );
    let cases: Vec<Case> = vec![
        (
            "unanimous 6/6: mean 0.7 + 0.15",
            vec![(B, 0.7); 6],
            0,
            B,
            Unanimous,
            0.85,
        ),
        ("unanimous caps at 1", vec![(B, 0.95); 6], 0, B, Unanimous, 1.0),
        (
            "5/6 strong majority +0.10",
            [vec![(S, 0.8); 5], vec![(B, 0.9)]].concat(),
            0,
            S,
            StrongMajority,
            0.9,
        ),
        (
            "4/6 is a majority (+0.05), not split",
            [vec![(B, 0.7); 4], vec![(H, 0.5); 2]].concat(),
            0,
            B,
            Majority,
            0.75,
        ),
        (
            "3/3 split is HOLD",
            [vec![(B, 0.9); 3], vec![(S, 0.9); 3]].concat(),
            0,
            H,
            Split,
            0.0,
        ),
        (
            "2/2/2 is HOLD",
            [vec![(B, 0.9); 2], vec![(S, 0.9); 2], vec![(H, 0.9); 2]].concat(),
            0,
            H,
            Split,
            0.0,
        ),
        (
            "3/5 keeps the action without boost",
            [vec![(B, 0.7); 3], vec![(S, 0.9); 2]].concat(),
            0,
            B,
            Split,
            0.7,
        ),
        (
            "3 valid of 6 is below quorum",
            vec![(B, 0.9); 3],
            3,
            H,
            InsufficientQuorum,
            0.0,
        ),
        (
            "4 valid of 6 with failures: unanimous among valid",
            vec![(S, 0.7); 4],
            2,
            S,
            Unanimous,
            0.85,
        ),
        ("no valid answer", vec![], 6, H, InsufficientQuorum, 0.0),
        ("unanimous HOLD", vec![(H, 0.6); 4], 0, H, Unanimous, 0.75),
    ];
    for (name, spec, failed, action, agreement, conf) in cases {
        let n = spec.len() + failed;
        let d = consensus(votes(&spec, failed), &cfg);
        assert_eq!(d.action, action, "{name}: {}", d.reasoning);
        assert_eq!(d.agreement, agreement, "{name}");
        assert!(
            (d.confidence - conf).abs() < 1e-9,
            "{name}: confidence {}",
            d.confidence
        );
        assert_eq!(d.total_models, n, "{name}: failed models still count");
        assert_eq!(d.model_votes.len(), n, "{name}: every model kept for model_comparisons");
        assert_eq!(d.valid_models, spec.len(), "{name}");
    }
}

#[test]
fn consensus_averages_levels_of_agreeing_models_and_sums_costs() {
    let mut v = votes(&[(TradeAction::Buy, 0.8); 4], 1);
    if let Ok(d) = &mut v[0].decision {
        d.entry_price = Some(dec!(104));
        d.stop_loss_pct = Some(dec!(3));
        d.leverage = 3;
    }
    v[1].latency_ms = 900;
    let d = consensus(v, &ConsensusConfig::default());
    assert_eq!(d.action, TradeAction::Buy);
    assert_eq!(d.entry_price, Some(dec!(101)));
    assert_eq!(d.stop_loss_pct, Some(dec!(2.25)));
    assert_eq!(d.take_profit_pct, Some(dec!(4)));
    assert_eq!(d.leverage, 1, "the most conservative leverage of the agreeing models");
    assert_eq!(d.total_cost_usd, dec!(0.04));
    assert_eq!(d.total_tokens, 60);
    assert_eq!(d.latency_ms, 900);
    assert_eq!(d.votes, vec![(TradeAction::Buy, 4)]);
    assert_eq!(d.agreeing_models, vec!["m0", "m1", "m2", "m3"]);
    assert!(
        d.reasoning
            .starts_with("Consensus: BUY (4/4 models agree, 100% strength)"),
        "{}",
        d.reasoning
    );
    let s = d.to_signal(meta(), sym());
    assert_eq!(
        (s.action, s.entry_price, s.leverage),
        (TradeAction::Buy, Some(dec!(101)), 1)
    );
}

#[test]
fn prompt_is_reproducible_and_carries_the_context() {
    let a = input(
        Some(ta(Bias::Long, 0.7)),
        Some(regime(Regime::TrendingBull)),
        Some(sentiment(SentimentBias::Bullish, 0.6)),
    );
    let mut b = a.clone();
    // new envelopes (random ids) must not change the prompt
    b.ta.as_mut().unwrap().meta = EventMeta::new("other", Utc::now());
    let pa = build_user_prompt(&a);
    assert_eq!(pa, build_user_prompt(&b));
    assert!(
        pa.contains("trending_bull") && pa.contains("\"bias\":\"long\"") && pa.contains("bullish"),
        "{pa}"
    );
    assert!(pa.contains("50000"));
    let r = build_request(&a, "deepseek-chat", 1024, 0.3, 30_000);
    assert_eq!(r.model, "deepseek-chat");
    assert!(r.system_prompt.contains("JSON") && r.system_prompt.contains("0.65"));
}

#[test]
fn model_vote_from_call_validates() {
    let ok = ModelResponse {
        provider: "deepseek".into(),
        model: "deepseek-chat".into(),
        text: r#"{"action":"HOLD","confidence":0.5,"reasoning":"unclear"}"#.into(),
        input_tokens: 1,
        output_tokens: 1,
        latency_ms: 5,
        cost_usd: Decimal::ZERO,
    };
    let v = ModelVote::from_call("deepseek-chat", "deepseek", Ok(ok.clone()), dec!(100));
    assert_eq!(v.decision.unwrap().action, TradeAction::Hold);
    let bad = ModelResponse {
        text: r#"{"action":"MOON","confidence":0.5}"#.into(),
        ..ok
    };
    let v = ModelVote::from_call("deepseek-chat", "deepseek", Ok(bad), dec!(100));
    assert!(v.decision.unwrap_err().contains("`action`"));
    let v = ModelVote::from_call("gpt-4o", "openai", Err(ModelError::Timeout(30000)), dec!(100));
    assert!(v.decision.is_err());
}
