//! Pure signal handling: consensus multiplier (reference §5.3), conflict detection and
//! deterministic resolution (§5.4), modification bounds, and building the trade proposal.

use super::degradation::DegradationLevel;
use super::schedule::SignalSettings;
use crate::domain::{Bias, Regime, SentimentBias, Side, TradeAction};
use crate::messages::{RegimeUpdate, SentimentUpdate, TaSignal, TradingSignal};
use crate::risk::{ProposalSource, TradeProposal};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The per-symbol inputs of one decision (already filtered by age).
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub ta: Option<TaSignal>,
    pub regime: Option<RegimeUpdate>,
    pub sentiment: Option<SentimentUpdate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consensus {
    pub present: u32,
    pub agreeing: u32,
    pub ratio: f64,
    pub multiplier: f64,
    pub original_confidence: f64,
    pub adjusted_confidence: f64,
}

fn regime_agrees(action: TradeAction, regime: Regime) -> bool {
    match action {
        TradeAction::Buy => matches!(regime, Regime::TrendingBull | Regime::BreakoutPotential),
        TradeAction::Sell => matches!(regime, Regime::TrendingBear),
        _ => false,
    }
}

/// Agreement of the same symbol's TA, regime and sentiment with the action.
pub fn consensus(action: TradeAction, confidence: f64, inputs: &Inputs, cfg: &SignalSettings) -> Consensus {
    let mut present = 0;
    let mut agreeing = 0;
    if let Some(ta) = &inputs.ta {
        present += 1;
        if matches!(
            (action, ta.bias),
            (TradeAction::Buy, Bias::Long) | (TradeAction::Sell, Bias::Short)
        ) {
            agreeing += 1;
        }
    }
    if let Some(r) = &inputs.regime {
        present += 1;
        if regime_agrees(action, r.regime) {
            agreeing += 1;
        }
    }
    if let Some(s) = &inputs.sentiment {
        present += 1;
        let agrees = match action {
            TradeAction::Buy => matches!(s.bias, SentimentBias::Bullish | SentimentBias::VeryBullish),
            TradeAction::Sell => matches!(s.bias, SentimentBias::Bearish | SentimentBias::VeryBearish),
            _ => false,
        };
        if agrees {
            agreeing += 1;
        }
    }
    let ratio = if present == 0 {
        0.5
    } else {
        f64::from(agreeing) / f64::from(present)
    };
    let multiplier = if present == 0 {
        1.0
    } else if ratio >= cfg.high_agreement_threshold {
        1.0 + (ratio - 0.5) * 2.0 * cfg.max_confidence_boost
    } else if ratio >= cfg.low_agreement_threshold {
        1.0
    } else {
        (1.0 - cfg.max_confidence_penalty) + ratio * cfg.max_confidence_penalty / cfg.low_agreement_threshold
    };
    Consensus {
        present,
        agreeing,
        ratio,
        multiplier,
        original_confidence: confidence,
        adjusted_confidence: (confidence * multiplier).clamp(0.0, 1.0),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictType {
    TaSentimentConflict,
    RegimeConflict,
    /// The regime changed while a position on the symbol is open.
    RegimeChange,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictInfo {
    pub conflict_type: ConflictType,
    pub description: String,
    pub agents_involved: Vec<String>,
    pub details: serde_json::Value,
}

/// TA vs sentiment with a confidence gap under the threshold, and any trade in a choppy regime.
pub fn detect_conflicts(action: TradeAction, inputs: &Inputs, cfg: &SignalSettings) -> Vec<ConflictInfo> {
    let mut out = Vec::new();
    if cfg.ta_sentiment_conflict {
        if let (Some(ta), Some(s)) = (&inputs.ta, &inputs.sentiment) {
            let opposed = matches!(
                (ta.bias, s.bias),
                (Bias::Long, SentimentBias::Bearish | SentimentBias::VeryBearish)
                    | (Bias::Short, SentimentBias::Bullish | SentimentBias::VeryBullish)
            );
            // Rounded to 1e-9 so that a gap of exactly the threshold (e.g. 0.75 − 0.55) is not one.
            let diff = ((ta.confidence - s.confidence).abs() * 1e9).round() / 1e9;
            if opposed && diff < cfg.invoke_llm_threshold {
                out.push(ConflictInfo {
                    conflict_type: ConflictType::TaSentimentConflict,
                    description: format!("TA is {} but sentiment is {}", ta.bias, s.bias),
                    agents_involved: vec!["technical_analysis".into(), "sentiment_analysis".into()],
                    details: serde_json::json!({
                        "ta_bias": ta.bias, "ta_confidence": ta.confidence,
                        "sent_bias": s.bias, "sent_confidence": s.confidence,
                        "confidence_diff": diff,
                    }),
                });
            }
        }
    }
    if cfg.regime_conflict && action != TradeAction::Hold {
        if let Some(r) = inputs.regime.as_ref().filter(|r| r.regime == Regime::Choppy) {
            out.push(ConflictInfo {
                conflict_type: ConflictType::RegimeConflict,
                description: "Avoid trading in choppy regime".into(),
                agents_involved: vec!["regime_detection".into(), "trading_decision".into()],
                details: serde_json::json!({"regime": r.regime, "regime_confidence": r.confidence, "action": action}),
            });
        }
    }
    out
}

/// A regime change (per the update's `previous_regime`) while `open_positions` are open on the symbol.
pub fn regime_change_conflict(regime: &RegimeUpdate, open_positions: usize) -> Option<ConflictInfo> {
    let previous = regime.previous_regime.filter(|p| *p != regime.regime)?;
    (open_positions > 0).then(|| ConflictInfo {
        conflict_type: ConflictType::RegimeChange,
        description: format!(
            "regime changed from {previous} to {} with a position open",
            regime.regime
        ),
        agents_involved: vec!["regime_detection".into(), "trading_decision".into()],
        details: serde_json::json!({
            "previous_regime": previous, "regime": regime.regime, "open_positions": open_positions,
        }),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolutionAction {
    Proceed,
    Wait,
    Modify,
    Abort,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Modifications {
    pub leverage: Option<i64>,
    pub size_reduction_pct: Option<f64>,
    pub entry_adjustment_pct: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictResolution {
    pub action: ResolutionAction,
    pub reasoning: String,
    pub confidence: f64,
    #[serde(default)]
    pub modifications: Option<Modifications>,
    /// `deterministic` or the model's name.
    #[serde(default)]
    pub resolved_by: String,
    /// Why the deterministic rules decided instead of the model (model failed, malformed, late).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

impl ConflictResolution {
    pub fn should_proceed(&self) -> bool {
        matches!(self.action, ResolutionAction::Proceed | ResolutionAction::Modify)
    }
}

/// What a conflict resolver is asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictRequest {
    pub signal: TradingSignal,
    pub adjusted_confidence: f64,
    pub conflicts: Vec<ConflictInfo>,
}

/// A model-backed resolver (the LLM chain); any error falls back to the deterministic rules.
pub trait ConflictResolver: Send + Sync + 'static {
    fn resolve(&self, req: ConflictRequest) -> BoxFuture<'static, Result<ConflictResolution, String>>;
}

/// The rule hierarchy: EMERGENCY waits; a choppy regime aborts; a TA/sentiment conflict waits
/// unless the decision's confidence is high.
pub fn deterministic_resolution(
    conflicts: &[ConflictInfo],
    confidence: f64,
    level: DegradationLevel,
    cfg: &SignalSettings,
) -> ConflictResolution {
    let (action, reasoning) = if level == DegradationLevel::Emergency {
        (ResolutionAction::Wait, "degradation EMERGENCY: no new entries")
    } else if conflicts
        .iter()
        .any(|c| c.conflict_type == ConflictType::RegimeConflict)
    {
        (ResolutionAction::Abort, "choppy regime: no trade")
    } else if conflicts.is_empty() || confidence >= cfg.proceed_confidence {
        (
            ResolutionAction::Proceed,
            "confidence high enough despite TA/sentiment disagreement",
        )
    } else {
        (
            ResolutionAction::Wait,
            "TA and sentiment disagree and confidence is not high",
        )
    };
    ConflictResolution {
        action,
        reasoning: reasoning.into(),
        confidence: if action == ResolutionAction::Wait { 0.3 } else { 0.5 },
        modifications: None,
        resolved_by: "deterministic".into(),
        fallback: None,
    }
}

/// Which conflicts may go to the model at this level (LIMITED: only regime conflicts; EMERGENCY: none).
pub fn model_eligible(conflicts: &[ConflictInfo], level: DegradationLevel) -> bool {
    match level {
        DegradationLevel::Normal | DegradationLevel::Reduced => !conflicts.is_empty(),
        DegradationLevel::Limited => conflicts
            .iter()
            .any(|c| c.conflict_type == ConflictType::RegimeConflict),
        DegradationLevel::Emergency => false,
    }
}

/// Applies bounded modifications: leverage 1..5, size reduction 0..100 %, entry ±50 % (≥ 0.0001).
/// A moved entry moves the stop-loss and take-profit with it, so their distances in percent stay
/// the ones the decision chose.
pub fn apply_modifications(p: &mut TradeProposal, m: &Modifications) {
    if let Some(l) = m.leverage {
        p.leverage = u32::try_from(l.clamp(1, i64::from(crate::domain::MAX_LEVERAGE))).unwrap_or(1);
    }
    if let Some(r) = m
        .size_reduction_pct
        .and_then(|r| Decimal::from_f64(r.clamp(0.0, 100.0)))
    {
        p.size_usd = (p.size_usd * (Decimal::ONE - r / Decimal::ONE_HUNDRED)).max(Decimal::ZERO);
    }
    if let Some(a) = m
        .entry_adjustment_pct
        .and_then(|a| Decimal::from_f64(a.clamp(-50.0, 50.0)))
    {
        let floor = Decimal::new(1, 4);
        let old = p.entry_price;
        p.entry_price = (old * (Decimal::ONE + a / Decimal::ONE_HUNDRED)).max(floor);
        if old > Decimal::ZERO {
            let factor = p.entry_price / old;
            p.stop_loss = p.stop_loss.map(|s| (s * factor).round_dp(8));
            p.take_profit = p.take_profit.map(|t| (t * factor).round_dp(8));
        }
    }
}

/// Market facts the proposal needs besides the signal.
#[derive(Debug, Clone, Default)]
pub struct Market {
    pub equity_usd: Option<Decimal>,
    pub price: Option<Decimal>,
    pub atr: Option<f64>,
}

/// Regime parameters of the agent table (reference §4); unknown → ranging.
pub fn regime_params(regime: Regime) -> (f64, f64, f64) {
    match regime {
        Regime::TrendingBull | Regime::TrendingBear => (1.0, 1.2, 2.0),
        Regime::VolatileBull | Regime::VolatileBear => (0.5, 1.5, 2.5),
        Regime::Choppy => (0.25, 1.0, 1.0),
        Regime::BreakoutPotential => (0.75, 1.0, 3.0),
        Regime::Ranging | Regime::Unknown => (0.75, 0.8, 1.5),
    }
}

fn dec(x: f64) -> Option<Decimal> {
    Decimal::from_f64(x)
}

/// Builds the proposal for a BUY or SELL: size = equity × `position_size_pct` % × the regime's size
/// multiplier; stop and take-profit from the decision's percentages, else regime ATR multiples.
///
/// # Errors
/// A reason when the action is not an entry or a needed fact is missing.
pub fn build_proposal(
    signal: &TradingSignal,
    adjusted_confidence: f64,
    regime: Option<&RegimeUpdate>,
    market: &Market,
    _now: DateTime<Utc>,
) -> Result<TradeProposal, String> {
    let side = match signal.action {
        TradeAction::Buy => Side::Buy,
        TradeAction::Sell => Side::Sell,
        other => return Err(format!("{other} does not open a position")),
    };
    let equity = market
        .equity_usd
        .filter(|e| *e > Decimal::ZERO)
        .ok_or("equity unknown (no portfolio update yet)")?;
    let pct = signal
        .position_size_pct
        .filter(|p| *p > Decimal::ZERO)
        .ok_or("the decision has no position_size_pct")?;
    let entry = signal
        .entry_price
        .filter(|p| *p > Decimal::ZERO)
        .or(market.price.filter(|p| *p > Decimal::ZERO))
        .ok_or("no entry price and no market price")?;
    let regime_name = regime.map_or(Regime::Ranging, |r| r.regime);
    let (table_size, table_stop, table_tp) = regime_params(regime_name);
    let (size_mult, stop_mult, tp_mult) = regime.map_or((table_size, table_stop, table_tp), |r| {
        (
            r.position_size_multiplier,
            r.stop_loss_atr_multiplier,
            r.take_profit_atr_multiplier,
        )
    });
    let size_mult = dec(size_mult).ok_or("invalid regime size multiplier")?;
    let size_usd = (equity * pct / Decimal::ONE_HUNDRED * size_mult).round_dp(2);
    let sign = if side == Side::Buy { Decimal::ONE } else { -Decimal::ONE };
    let atr = market.atr.and_then(dec).filter(|a| *a > Decimal::ZERO);
    let stop_loss = match (signal.stop_loss_pct, atr) {
        (Some(p), _) if p > Decimal::ZERO => Some(entry * (Decimal::ONE - sign * p / Decimal::ONE_HUNDRED)),
        (_, Some(a)) => dec(stop_mult).map(|m| entry - sign * a * m),
        _ => None,
    };
    let take_profit = match (signal.take_profit_pct, atr) {
        (Some(p), _) if p > Decimal::ZERO => Some(entry * (Decimal::ONE + sign * p / Decimal::ONE_HUNDRED)),
        (_, Some(a)) => dec(tp_mult).map(|m| entry + sign * a * m),
        _ => None,
    };
    Ok(TradeProposal {
        symbol: signal.symbol.clone(),
        side,
        size_usd,
        entry_price: entry,
        stop_loss: stop_loss.map(|s| s.round_dp(8)),
        take_profit: take_profit.map(|t| t.round_dp(8)),
        leverage: signal.leverage.max(1),
        confidence: adjusted_confidence,
        regime: regime_name,
        source: ProposalSource::Agent,
        correlation_id: signal.meta.correlation_id,
        reduce_only: false,
    })
}

/// For logs and the trail: a decimal as f64.
pub fn as_f64(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use crate::domain::{EntryStrictness, FearGreed, Symbol, Timeframe, TrendDirection};
    use crate::messages::EventMeta;
    use chrono::TimeZone;
    use rust_decimal_macros::dec;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
    }
    fn sym() -> Symbol {
        Symbol::parse("BTC/USDT").unwrap()
    }
    pub(crate) fn ta(bias: Bias, confidence: f64) -> TaSignal {
        TaSignal {
            meta: EventMeta::new("technical_analysis", now()),
            symbol: sym(),
            timeframe: Timeframe::parse("1h").unwrap_or(Timeframe::ALL[0]),
            trend_direction: TrendDirection::Neutral,
            trend_strength: 0.5,
            momentum_score: 0.0,
            bias,
            confidence,
            reasoning: String::new(),
        }
    }
    pub(crate) fn regime(r: Regime) -> RegimeUpdate {
        let (size, stop, tp) = regime_params(r);
        RegimeUpdate {
            meta: EventMeta::new("regime_detection", now()),
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
    pub(crate) fn sentiment(bias: SentimentBias, confidence: f64) -> SentimentUpdate {
        SentimentUpdate {
            meta: EventMeta::new("sentiment_analysis", now()),
            symbol: sym(),
            bias,
            confidence,
            fear_greed: FearGreed::Neutral,
            social_score: 0.0,
            news_score: 0.0,
            key_events: vec![],
        }
    }
    fn signal(action: TradeAction) -> TradingSignal {
        TradingSignal {
            meta: EventMeta::new("trading_decision", now()),
            symbol: sym(),
            action,
            confidence: 0.7,
            entry_price: Some(dec!(50000)),
            stop_loss_pct: Some(dec!(2)),
            take_profit_pct: Some(dec!(4)),
            position_size_pct: Some(dec!(10)),
            leverage: 2,
            reasoning: String::new(),
        }
    }

    #[test]
    fn consensus_table() {
        let cfg = SignalSettings::default();
        let all_buy = Inputs {
            ta: Some(ta(Bias::Long, 0.8)),
            regime: Some(regime(Regime::TrendingBull)),
            sentiment: Some(sentiment(SentimentBias::Bullish, 0.7)),
        };
        let two_of_three = Inputs {
            regime: Some(regime(Regime::Ranging)),
            ..all_buy.clone()
        };
        let none_agree = Inputs {
            ta: Some(ta(Bias::Short, 0.8)),
            regime: Some(regime(Regime::TrendingBear)),
            sentiment: Some(sentiment(SentimentBias::Bearish, 0.7)),
        };
        let one_of_three = Inputs {
            ta: Some(ta(Bias::Long, 0.8)),
            ..none_agree.clone()
        };
        let cases = [
            (TradeAction::Buy, Inputs::default(), 1.0),
            (TradeAction::Buy, all_buy.clone(), 1.30),
            // breakout_potential is a real regime name that agrees with BUY.
            (
                TradeAction::Buy,
                Inputs {
                    regime: Some(regime(Regime::BreakoutPotential)),
                    ..all_buy.clone()
                },
                1.30,
            ),
            (TradeAction::Buy, two_of_three, 1.0 + (2.0 / 3.0 - 0.5) * 0.6),
            (TradeAction::Buy, one_of_three, 1.0),
            (TradeAction::Buy, none_agree.clone(), 0.85),
            (TradeAction::Sell, none_agree, 1.30),
        ];
        for (action, inputs, want) in cases {
            let c = consensus(action, 0.7, &inputs, &cfg);
            assert!(
                (c.multiplier - want).abs() < 1e-9,
                "{action} {inputs:?}: {}",
                c.multiplier
            );
            assert!((c.adjusted_confidence - (0.7 * want).min(1.0)).abs() < 1e-9);
        }
    }

    #[test]
    fn conflict_detection_boundaries() {
        let cfg = SignalSettings::default();
        let cases = [
            (
                Bias::Long,
                0.70,
                SentimentBias::Bearish,
                0.55,
                Regime::TrendingBull,
                vec![ConflictType::TaSentimentConflict],
            ),
            // A gap of exactly 0.2 is not a conflict (strictly below the threshold).
            (
                Bias::Long,
                0.75,
                SentimentBias::Bearish,
                0.55,
                Regime::TrendingBull,
                vec![],
            ),
            (
                Bias::Short,
                0.6,
                SentimentBias::VeryBullish,
                0.6,
                Regime::Choppy,
                vec![ConflictType::TaSentimentConflict, ConflictType::RegimeConflict],
            ),
            (
                Bias::Long,
                0.6,
                SentimentBias::Bullish,
                0.6,
                Regime::Choppy,
                vec![ConflictType::RegimeConflict],
            ),
            (Bias::Neutral, 0.6, SentimentBias::Bearish, 0.6, Regime::Ranging, vec![]),
        ];
        for (tb, tc, sb, sc, r, want) in cases {
            let inputs = Inputs {
                ta: Some(ta(tb, tc)),
                regime: Some(regime(r)),
                sentiment: Some(sentiment(sb, sc)),
            };
            let got: Vec<_> = detect_conflicts(TradeAction::Buy, &inputs, &cfg)
                .into_iter()
                .map(|c| c.conflict_type)
                .collect();
            assert_eq!(got, want, "{tb} {tc} {sb} {sc} {r}");
        }
    }

    #[test]
    fn deterministic_resolution_table() {
        let cfg = SignalSettings::default();
        let ts = ConflictInfo {
            conflict_type: ConflictType::TaSentimentConflict,
            description: String::new(),
            agents_involved: vec![],
            details: serde_json::Value::Null,
        };
        let rc = ConflictInfo {
            conflict_type: ConflictType::RegimeConflict,
            ..ts.clone()
        };
        use DegradationLevel::*;
        use ResolutionAction::*;
        let cases = [
            (vec![ts.clone()], 0.6, Normal, Wait),
            (vec![ts.clone()], 0.8, Normal, Proceed),
            (vec![rc.clone()], 0.9, Normal, Abort),
            (vec![ts.clone(), rc.clone()], 0.9, Normal, Abort),
            (vec![ts.clone()], 0.9, Emergency, Wait),
        ];
        for (conflicts, conf, level, want) in cases {
            assert_eq!(deterministic_resolution(&conflicts, conf, level, &cfg).action, want);
        }
        assert!(model_eligible(std::slice::from_ref(&ts), Normal));
        assert!(!model_eligible(std::slice::from_ref(&ts), Limited));
        assert!(model_eligible(&[ts, rc.clone()], Limited));
        assert!(!model_eligible(&[rc], Emergency));
    }

    #[test]
    fn modification_bounds() {
        let mut p = build_proposal(
            &signal(TradeAction::Buy),
            0.7,
            None,
            &Market {
                equity_usd: Some(dec!(10000)),
                ..Market::default()
            },
            now(),
        )
        .unwrap();
        p.leverage = 5;
        p.size_usd = dec!(1000);
        p.entry_price = dec!(100);
        apply_modifications(
            &mut p,
            &Modifications {
                leverage: Some(2),
                size_reduction_pct: Some(50.0),
                entry_adjustment_pct: Some(5.0),
            },
        );
        assert_eq!((p.leverage, p.size_usd, p.entry_price), (2, dec!(500), dec!(105)));
        apply_modifications(
            &mut p,
            &Modifications {
                leverage: Some(50),
                size_reduction_pct: Some(250.0),
                entry_adjustment_pct: Some(-90.0),
            },
        );
        assert_eq!((p.leverage, p.size_usd, p.entry_price), (5, dec!(0), dec!(52.5)));
    }

    #[test]
    fn proposal_sizing_and_stops() {
        let m = Market {
            equity_usd: Some(dec!(10000)),
            price: Some(dec!(50000)),
            atr: Some(1000.0),
        };
        // 10 % of 10 000 × ranging 0.75 = 750; stop/TP from the decision's percentages.
        let p = build_proposal(
            &signal(TradeAction::Buy),
            0.8,
            Some(&regime(Regime::Ranging)),
            &m,
            now(),
        )
        .unwrap();
        assert_eq!(p.size_usd, dec!(750));
        assert_eq!(p.stop_loss, Some(dec!(49000)));
        assert_eq!(p.take_profit, Some(dec!(52000)));
        assert_eq!((p.side, p.leverage, p.source), (Side::Buy, 2, ProposalSource::Agent));
        // SELL without percentages: ATR × regime multipliers (trending_bear 1.2 / 2.0), above/below entry.
        let mut s = signal(TradeAction::Sell);
        s.stop_loss_pct = None;
        s.take_profit_pct = None;
        s.entry_price = None;
        let p = build_proposal(&s, 0.8, Some(&regime(Regime::TrendingBear)), &m, now()).unwrap();
        assert_eq!(p.size_usd, dec!(1000));
        assert_eq!(p.stop_loss, Some(dec!(51200)));
        assert_eq!(p.take_profit, Some(dec!(48000)));
        assert_eq!(p.correlation_id, s.meta.correlation_id);
        // Missing facts are reasons, not panics.
        assert!(build_proposal(&signal(TradeAction::CloseLong), 0.8, None, &m, now()).is_err());
        assert!(build_proposal(&signal(TradeAction::Buy), 0.8, None, &Market::default(), now()).is_err());
    }
}
