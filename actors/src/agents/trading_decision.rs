//! Trading decision agent, pure core: prompt, typed and validated model output, the
//! deterministic rule-based model, and the multi-model consensus (reference §1.4).
//!
//! Corrected behaviour compared with the reference system:
//! - agreement classes use exact rational comparisons, so 4 of 6 votes is a `majority`;
//! - models that failed or timed out stay in `total_models` and in the per-model results;
//! - the quorum counts valid answers, and a weak consensus (≤ 50 %) is always HOLD;
//! - model output is validated strictly: an out-of-range or misspelt field rejects the answer
//!   (naming the field) instead of being coerced to a default.

use crate::domain::{Bias, Candle, Regime, SentimentBias, Symbol, Timeframe, TradeAction, TrendDirection};
use crate::indicators::IndicatorSnapshot;
use crate::messages::{EventMeta, MarketSnapshot, RegimeUpdate, SentimentUpdate, TaSignal, TradingSignal};
use crate::ports::{ModelError, ModelRequest, ModelResponse};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Name under which outputs are stored and answers recorded.
pub const AGENT_NAME: &str = "trading_decision";
/// Reasoning is cut to this many characters.
pub const MAX_REASONING_CHARS: usize = 300;
/// BUY/SELL need at least this confidence (the prompt says so, and the rule-based model obeys it).
pub const MIN_ACTION_CONFIDENCE: f64 = 0.65;
/// Stop-loss percentages are clamped into this range.
pub const STOP_LOSS_PCT_MIN: Decimal = Decimal::ONE;
pub const STOP_LOSS_PCT_MAX: Decimal = Decimal::from_parts(5, 0, 0, false, 0);
/// Highest leverage a model may ask for (the risk engine applies its own, lower, regime limit).
pub const MAX_LEVERAGE: u32 = 5;

// ---------------------------------------------------------------- input and prompt

/// Everything the decision is made from.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionInput {
    pub symbol: Symbol,
    pub current_price: Decimal,
    pub snapshot: Option<MarketSnapshot>,
    pub ta: Option<TaSignal>,
    pub regime: Option<RegimeUpdate>,
    pub sentiment: Option<SentimentUpdate>,
    /// Indicators one primary candle earlier (squeeze release, MACD direction). Not in the prompt.
    pub previous_indicators: Option<IndicatorSnapshot>,
    /// Recent primary-timeframe candles, oldest first (Donchian channel). Not in the prompt.
    pub recent_candles: Arc<[Candle]>,
    /// EMA 9/21 trend of the other timeframes (alignment). Not in the prompt.
    pub timeframe_trends: Vec<(Timeframe, TrendDirection)>,
}

impl DecisionInput {
    /// An input with only the agents' outputs (no candles, no previous indicators).
    pub fn new(
        symbol: Symbol,
        current_price: Decimal,
        snapshot: Option<MarketSnapshot>,
        ta: Option<TaSignal>,
        regime: Option<RegimeUpdate>,
        sentiment: Option<SentimentUpdate>,
    ) -> Self {
        Self {
            symbol,
            current_price,
            snapshot,
            ta,
            regime,
            sentiment,
            previous_indicators: None,
            recent_candles: Arc::from(Vec::new()),
            timeframe_trends: Vec::new(),
        }
    }
}

pub const SYSTEM_PROMPT: &str = "You are the trading decision agent of a crypto trading system for Kraken spot and \
margin pairs. You weigh market data, technical analysis, the market regime and sentiment, and decide one action. \
Rules: BUY or SELL only with confidence >= 0.65; every BUY or SELL has a stop loss; reward:risk must be at least 1.5; \
when signals disagree or are unclear, HOLD. Answer with one JSON object only, no prose, with exactly these fields: \
{\"action\": \"BUY\" | \"SELL\" | \"HOLD\" | \"CLOSE_LONG\" | \"CLOSE_SHORT\", \"confidence\": number 0..1, \
\"entry_price\": number or null (null = market), \"stop_loss_pct\": number 1..5 (required for BUY/SELL), \
\"take_profit_pct\": number or null, \"position_size_pct\": number 0..100 (percent of equity) or null, \
\"leverage\": integer 1..5, \"reasoning\": string (at most 300 characters)}.";

/// The JSON of an event without its envelope (ids are random; prompts must be reproducible so
/// recorded answers can be replayed).
fn without_meta<T: Serialize>(event: &T) -> Value {
    match serde_json::to_value(event) {
        Ok(Value::Object(mut m)) => {
            m.remove("meta");
            Value::Object(m)
        }
        Ok(other) => other,
        Err(_) => Value::Null,
    }
}

/// The user prompt: market data, the other agents' outputs, and the task.
pub fn build_user_prompt(input: &DecisionInput) -> String {
    let market = match &input.snapshot {
        Some(s) => without_meta(s),
        None => json!({"symbol": input.symbol.as_str(), "current_price": input.current_price}),
    };
    let context = json!({
        "technical_analysis": input.ta.as_ref().map(without_meta),
        "regime": input.regime.as_ref().map(without_meta),
        "sentiment": input.sentiment.as_ref().map(without_meta),
    });
    format!(
        "## Market Data\nSymbol: {symbol}\nCurrent price: {price}\n{market}\n\n## Additional Context\n{context}\n\n\
         ## Task\nDecide the action for {symbol} now. Reply with the JSON object described in the instructions.",
        symbol = input.symbol,
        price = input.current_price,
        market = market,
        context = context,
    )
}

/// A model request for this agent.
pub fn build_request(
    input: &DecisionInput,
    model: &str,
    max_tokens: u32,
    temperature: f64,
    timeout_ms: u64,
) -> ModelRequest {
    ModelRequest {
        model: model.to_string(),
        system_prompt: SYSTEM_PROMPT.to_string(),
        user_prompt: build_user_prompt(input),
        max_tokens,
        temperature,
        timeout_ms,
    }
}

// ---------------------------------------------------------------- output

/// One model's validated decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionOutput {
    pub action: TradeAction,
    /// 0..1
    pub confidence: f64,
    /// `None` = market price.
    pub entry_price: Option<Decimal>,
    /// Distance of the stop from entry, percent (1..5). Required for BUY/SELL.
    pub stop_loss_pct: Option<Decimal>,
    /// Distance of the take-profit from entry, percent.
    pub take_profit_pct: Option<Decimal>,
    /// Percent of equity (0..100).
    pub position_size_pct: Option<Decimal>,
    pub leverage: u32,
    pub reasoning: String,
}

impl DecisionOutput {
    /// HOLD with a reason.
    pub fn hold(confidence: f64, reasoning: impl Into<String>) -> Self {
        Self {
            action: TradeAction::Hold,
            confidence: confidence.clamp(0.0, 1.0),
            entry_price: None,
            stop_loss_pct: None,
            take_profit_pct: None,
            position_size_pct: None,
            leverage: 1,
            reasoning: fields::truncate(&reasoning.into(), MAX_REASONING_CHARS),
        }
    }

    /// The wire JSON (as a model would answer); the rule-based model answers with this.
    pub fn to_json(&self) -> Value {
        json!({
            "action": self.action.as_str(),
            "confidence": self.confidence,
            "entry_price": self.entry_price.map(|d| d.to_string()),
            "stop_loss_pct": self.stop_loss_pct.map(|d| d.to_string()),
            "take_profit_pct": self.take_profit_pct.map(|d| d.to_string()),
            "position_size_pct": self.position_size_pct.map(|d| d.to_string()),
            "leverage": self.leverage,
            "reasoning": self.reasoning,
        })
    }

    pub fn to_signal(&self, meta: EventMeta, symbol: Symbol) -> TradingSignal {
        TradingSignal {
            meta,
            symbol,
            action: self.action,
            confidence: self.confidence,
            entry_price: self.entry_price,
            stop_loss_pct: self.stop_loss_pct,
            take_profit_pct: self.take_profit_pct,
            position_size_pct: self.position_size_pct,
            leverage: self.leverage,
            reasoning: self.reasoning.clone(),
        }
    }
}

/// Parses and validates a model's answer. Absolute `stop_loss` / `take_profit` prices are
/// accepted when the percentages are absent and converted against the entry (or `current_price`).
///
/// # Errors
/// `ModelError::BadOutput` naming the first offending field.
pub fn parse_decision(text: &str, current_price: Decimal) -> Result<DecisionOutput, ModelError> {
    let obj = fields::json_object(text)?;
    let action_text = fields::req_str(&obj, "action")?;
    let action =
        TradeAction::parse(action_text.trim().to_ascii_uppercase().as_str()).map_err(|e| fields::bad("action", &e))?;
    let confidence = fields::req_f64_in(&obj, "confidence", 0.0, 1.0)?;
    let entry_price = fields::opt_decimal(&obj, "entry_price")?;
    if let Some(p) = entry_price {
        if p <= Decimal::ZERO {
            return Err(fields::bad("entry_price", "must be positive"));
        }
    }
    let reference = entry_price.unwrap_or(current_price);
    let is_long = matches!(action, TradeAction::Buy);
    let is_entry = matches!(action, TradeAction::Buy | TradeAction::Sell);

    let stop_loss_pct = match fields::opt_decimal(&obj, "stop_loss_pct")? {
        Some(p) if p <= Decimal::ZERO || p >= Decimal::ONE_HUNDRED => {
            return Err(fields::bad("stop_loss_pct", "must be between 0 and 100 (exclusive)"))
        }
        Some(p) => Some(p.clamp(STOP_LOSS_PCT_MIN, STOP_LOSS_PCT_MAX)),
        None => match fields::opt_decimal(&obj, "stop_loss")? {
            Some(stop) if is_entry => {
                Some(distance_pct("stop_loss", stop, reference, !is_long)?.clamp(STOP_LOSS_PCT_MIN, STOP_LOSS_PCT_MAX))
            }
            _ => None,
        },
    };
    let take_profit_pct = match fields::opt_decimal(&obj, "take_profit_pct")? {
        Some(p) if p <= Decimal::ZERO || p >= Decimal::ONE_HUNDRED => {
            return Err(fields::bad("take_profit_pct", "must be between 0 and 100 (exclusive)"))
        }
        Some(p) => Some(p),
        None => match fields::opt_decimal(&obj, "take_profit")? {
            Some(tp) if is_entry => Some(distance_pct("take_profit", tp, reference, is_long)?),
            _ => None,
        },
    };
    let position_size_pct = fields::opt_decimal(&obj, "position_size_pct")?;
    if let Some(p) = position_size_pct {
        if p < Decimal::ZERO || p > Decimal::ONE_HUNDRED {
            return Err(fields::bad("position_size_pct", "must be within 0..100"));
        }
    }
    let leverage = match obj.get("leverage") {
        None | Some(Value::Null) => 1,
        // Integral numbers only (`2` or `2.0`); 1..=MAX_LEVERAGE.
        Some(v) => match v.as_f64().filter(|x| x.fract() == 0.0) {
            Some(l) if (1.0..=f64::from(MAX_LEVERAGE)).contains(&l) => l as u32,
            _ => {
                return Err(fields::bad(
                    "leverage",
                    &format!("must be an integer 1..{MAX_LEVERAGE}, got {v}"),
                ))
            }
        },
    };
    if is_entry && stop_loss_pct.is_none() {
        return Err(fields::bad("stop_loss_pct", "required for BUY and SELL"));
    }
    let reasoning = fields::opt_str(&obj, "reasoning")?.unwrap_or_default();
    Ok(DecisionOutput {
        action,
        confidence,
        entry_price: entry_price.map(|d| d.normalize()),
        stop_loss_pct: stop_loss_pct.map(|d| d.round_dp(4).normalize()),
        take_profit_pct: take_profit_pct.map(|d| d.round_dp(4).normalize()),
        position_size_pct: position_size_pct.map(|d| d.normalize()),
        leverage,
        reasoning: fields::truncate(&reasoning, MAX_REASONING_CHARS),
    })
}

/// Percent distance of `level` from `reference`; `above` says on which side it must lie.
fn distance_pct(field: &str, level: Decimal, reference: Decimal, above: bool) -> Result<Decimal, ModelError> {
    if reference <= Decimal::ZERO || level <= Decimal::ZERO {
        return Err(fields::bad(field, "price must be positive"));
    }
    if (above && level <= reference) || (!above && level >= reference) {
        let side = if above { "above" } else { "below" };
        return Err(fields::bad(
            field,
            &format!("{level} must lie {side} the entry {reference}"),
        ));
    }
    Ok(((level - reference).abs() / reference) * Decimal::ONE_HUNDRED)
}

// ---------------------------------------------------------------- rule-based model

/// Confidence of a HOLD when an input is missing.
pub const RULE_HOLD_NO_DATA_CONFIDENCE: f64 = 0.0;
/// Confidence of a considered HOLD (inputs present, conditions not met).
pub const RULE_HOLD_CONFIDENCE: f64 = 0.5;
/// Sentiment against the TA direction with at least this confidence vetoes the trade.
pub const SENTIMENT_VETO_CONFIDENCE: f64 = 0.5;
/// Base position size (percent of equity) before the regime multiplier.
pub const BASE_POSITION_PCT: Decimal = Decimal::TEN;

/// The deterministic decision: the default when no model key is configured and the last
/// fallback when every model fails.
///
/// | condition | result |
/// |---|---|
/// | TA, regime or a positive price missing | HOLD, confidence 0 |
/// | TA bias neutral | HOLD |
/// | regime `choppy` or `unknown` | HOLD |
/// | regime against the bias (bear regimes vs long, bull regimes vs short) | HOLD |
/// | sentiment against the bias with confidence ≥ 0.5 | HOLD |
/// | confidence = TA confidence + 0.05 (trending regime in the bias direction) + 0.05 (sentiment agrees, confidence ≥ 0.3) − 0.10 (weak opposing sentiment), clamped 0..1 | |
/// | confidence < 0.65 | HOLD |
/// | otherwise | BUY (long) / SELL (short) at the current price |
///
/// Levels: stop = clamp(2 % × regime stop multiplier, 1 %, 5 %); take-profit = stop × max(1.5,
/// TP multiplier ÷ stop multiplier); size = 10 % × regime size multiplier; leverage 1.
pub fn rule_based_decision(input: &DecisionInput) -> DecisionOutput {
    let (Some(ta), Some(regime)) = (&input.ta, &input.regime) else {
        return DecisionOutput::hold(
            RULE_HOLD_NO_DATA_CONFIDENCE,
            "rule-based: technical analysis or regime missing",
        );
    };
    if input.current_price <= Decimal::ZERO {
        return DecisionOutput::hold(RULE_HOLD_NO_DATA_CONFIDENCE, "rule-based: no current price");
    }
    let long = match ta.bias {
        Bias::Long => true,
        Bias::Short => false,
        Bias::Neutral => return DecisionOutput::hold(RULE_HOLD_CONFIDENCE, "rule-based: technical bias is neutral"),
    };
    match regime.regime {
        Regime::Choppy | Regime::Unknown => {
            return DecisionOutput::hold(
                RULE_HOLD_CONFIDENCE,
                format!("rule-based: no entries in a {} regime", regime.regime),
            )
        }
        Regime::TrendingBear | Regime::VolatileBear if long => {
            return DecisionOutput::hold(
                RULE_HOLD_CONFIDENCE,
                format!("rule-based: long bias against {}", regime.regime),
            )
        }
        Regime::TrendingBull | Regime::VolatileBull if !long => {
            return DecisionOutput::hold(
                RULE_HOLD_CONFIDENCE,
                format!("rule-based: short bias against {}", regime.regime),
            )
        }
        _ => {}
    }
    let mut confidence = ta.confidence;
    let mut notes = vec![
        format!("TA {} {:.2}", ta.bias, ta.confidence),
        format!("regime {}", regime.regime),
    ];
    if (long && regime.regime == Regime::TrendingBull) || (!long && regime.regime == Regime::TrendingBear) {
        confidence += 0.05;
    }
    if let Some(s) = &input.sentiment {
        let agrees = if long {
            matches!(s.bias, SentimentBias::Bullish | SentimentBias::VeryBullish)
        } else {
            matches!(s.bias, SentimentBias::Bearish | SentimentBias::VeryBearish)
        };
        let opposes = if long {
            matches!(s.bias, SentimentBias::Bearish | SentimentBias::VeryBearish)
        } else {
            matches!(s.bias, SentimentBias::Bullish | SentimentBias::VeryBullish)
        };
        if opposes && s.confidence >= SENTIMENT_VETO_CONFIDENCE {
            return DecisionOutput::hold(
                RULE_HOLD_CONFIDENCE,
                format!(
                    "rule-based: sentiment {} ({:.2}) against the technical bias",
                    s.bias, s.confidence
                ),
            );
        }
        if opposes {
            confidence -= 0.10;
        } else if agrees && s.confidence >= 0.3 {
            confidence += 0.05;
        }
        notes.push(format!("sentiment {}", s.bias));
    }
    let confidence = confidence.clamp(0.0, 1.0);
    if confidence < MIN_ACTION_CONFIDENCE {
        return DecisionOutput::hold(
            RULE_HOLD_CONFIDENCE,
            format!(
                "rule-based: confidence {confidence:.2} below {MIN_ACTION_CONFIDENCE} ({})",
                notes.join(", ")
            ),
        );
    }
    let stop_mult = fields::dec(regime.stop_loss_atr_multiplier).max(Decimal::new(1, 1));
    let tp_mult = fields::dec(regime.take_profit_atr_multiplier);
    let stop = (Decimal::TWO * stop_mult)
        .clamp(STOP_LOSS_PCT_MIN, STOP_LOSS_PCT_MAX)
        .round_dp(2);
    let reward_risk = (tp_mult / stop_mult).max(Decimal::new(15, 1));
    let take_profit = (stop * reward_risk).round_dp(2);
    let size = (BASE_POSITION_PCT * fields::dec(regime.position_size_multiplier))
        .clamp(Decimal::ZERO, Decimal::ONE_HUNDRED)
        .round_dp(2);
    DecisionOutput {
        action: if long { TradeAction::Buy } else { TradeAction::Sell },
        confidence,
        entry_price: Some(input.current_price),
        stop_loss_pct: Some(stop.normalize()),
        take_profit_pct: Some(take_profit.normalize()),
        position_size_pct: Some(size.normalize()),
        leverage: 1,
        reasoning: fields::truncate(&format!("rule-based: {}", notes.join(", ")), MAX_REASONING_CHARS),
    }
}

// ---------------------------------------------------------------- consensus

/// One model's answer (or failure), kept for `model_comparisons`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVote {
    pub model: String,
    pub provider: String,
    /// The validated decision, or why there is none (timeout, provider error, bad output).
    pub decision: Result<DecisionOutput, String>,
    pub latency_ms: u64,
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub cost_usd: Decimal,
}

impl ModelVote {
    /// From a model call: the response parsed and validated, or the error.
    pub fn from_call(
        model: &str,
        provider: &str,
        result: Result<ModelResponse, ModelError>,
        current_price: Decimal,
    ) -> Self {
        match result {
            Ok(resp) => Self {
                model: model.to_string(),
                provider: resp.provider.clone(),
                decision: parse_decision(&resp.text, current_price).map_err(|e| e.to_string()),
                latency_ms: resp.latency_ms,
                input_tokens: resp.input_tokens,
                output_tokens: resp.output_tokens,
                cost_usd: resp.cost_usd,
            },
            Err(e) => Self::failed(model, provider, e.to_string()),
        }
    }

    /// A model that produced nothing (timeout, error): counted in `total_models`, never valid.
    pub fn failed(model: &str, provider: &str, error: impl Into<String>) -> Self {
        Self {
            model: model.to_string(),
            provider: provider.to_string(),
            decision: Err(error.into()),
            latency_ms: 0,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: Decimal::ZERO,
        }
    }

    fn valid(&self) -> Option<&DecisionOutput> {
        self.decision.as_ref().ok()
    }
}

/// Consensus thresholds and confidence boosts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsensusConfig {
    /// Minimum number of valid answers; fewer → HOLD.
    pub min_quorum: usize,
    pub unanimous_boost: f64,
    pub strong_majority_boost: f64,
    pub majority_boost: f64,
}

impl Default for ConsensusConfig {
    fn default() -> Self {
        Self {
            min_quorum: 4,
            unanimous_boost: 0.15,
            strong_majority_boost: 0.10,
            majority_boost: 0.05,
        }
    }
}

/// How strongly the valid answers agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgreementType {
    /// Every valid answer voted the same.
    Unanimous,
    /// At least 5/6 of the valid answers.
    StrongMajority,
    /// At least 2/3 of the valid answers.
    Majority,
    /// More than 1/2 but less than 2/3 (action kept, no boost), or ≤ 1/2 (forced HOLD).
    Split,
    /// Fewer valid answers than the quorum (forced HOLD).
    InsufficientQuorum,
}

/// The consensus decision and everything needed to store it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsensusDecision {
    pub action: TradeAction,
    pub confidence: f64,
    /// Votes for the most-voted action / valid answers (0 when none are valid).
    pub consensus_strength: f64,
    pub agreement: AgreementType,
    /// Votes per action, in the order of `TradeAction::ALL`, actions without votes omitted.
    pub votes: Vec<(TradeAction, usize)>,
    pub agreeing_models: Vec<String>,
    pub valid_models: usize,
    /// Every model asked, including those that failed or timed out.
    pub total_models: usize,
    pub entry_price: Option<Decimal>,
    pub stop_loss_pct: Option<Decimal>,
    pub take_profit_pct: Option<Decimal>,
    pub position_size_pct: Option<Decimal>,
    pub leverage: u32,
    pub reasoning: String,
    pub total_cost_usd: Decimal,
    pub total_tokens: u64,
    /// Slowest model (they run in parallel).
    pub latency_ms: u64,
    pub model_votes: Vec<ModelVote>,
}

impl ConsensusDecision {
    pub fn to_signal(&self, meta: EventMeta, symbol: Symbol) -> TradingSignal {
        TradingSignal {
            meta,
            symbol,
            action: self.action,
            confidence: self.confidence,
            entry_price: self.entry_price,
            stop_loss_pct: self.stop_loss_pct,
            take_profit_pct: self.take_profit_pct,
            position_size_pct: self.position_size_pct,
            leverage: self.leverage,
            reasoning: self.reasoning.clone(),
        }
    }
}

fn mean_decimal(values: impl Iterator<Item = Decimal>) -> Option<Decimal> {
    let (sum, n) = values.fold((Decimal::ZERO, 0u32), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| (sum / Decimal::from(n)).round_dp(8).normalize())
}

/// Combines the models' answers (reference §1.4, corrected).
pub fn consensus(model_votes: Vec<ModelVote>, cfg: &ConsensusConfig) -> ConsensusDecision {
    let total_models = model_votes.len();
    let total_cost_usd = model_votes.iter().map(|v| v.cost_usd).sum();
    let total_tokens = model_votes
        .iter()
        .map(|v| u64::from(v.input_tokens) + u64::from(v.output_tokens))
        .sum();
    let latency_ms = model_votes.iter().map(|v| v.latency_ms).max().unwrap_or(0);
    let valid: Vec<(&str, &DecisionOutput)> = model_votes
        .iter()
        .filter_map(|v| v.valid().map(|d| (v.model.as_str(), d)))
        .collect();
    let valid_models = valid.len();
    let votes: Vec<(TradeAction, usize)> = TradeAction::ALL
        .iter()
        .map(|a| (*a, valid.iter().filter(|(_, d)| d.action == *a).count()))
        .filter(|(_, n)| *n > 0)
        .collect();
    // The most-voted action. Ties only occur at ≤ 50 % strength, which is forced to HOLD below.
    let (top_action, top_votes) = votes
        .iter()
        .copied()
        .max_by_key(|(_, n)| *n)
        .unwrap_or((TradeAction::Hold, 0));
    let strength = if valid_models == 0 {
        0.0
    } else {
        top_votes as f64 / valid_models as f64
    };
    let votes_text = votes
        .iter()
        .map(|(a, n)| format!("{a}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");

    let mut out = ConsensusDecision {
        action: TradeAction::Hold,
        confidence: 0.0,
        consensus_strength: strength,
        agreement: AgreementType::InsufficientQuorum,
        votes: votes.clone(),
        agreeing_models: Vec::new(),
        valid_models,
        total_models,
        entry_price: None,
        stop_loss_pct: None,
        take_profit_pct: None,
        position_size_pct: None,
        leverage: 1,
        reasoning: String::new(),
        total_cost_usd,
        total_tokens,
        latency_ms,
        model_votes: Vec::new(),
    };

    if valid_models == 0 || valid_models < cfg.min_quorum {
        out.reasoning = format!(
            "Consensus: HOLD (only {valid_models} of {total_models} models answered validly, quorum {}) | Votes: {votes_text}",
            cfg.min_quorum
        );
        out.model_votes = model_votes;
        return out;
    }
    // Exact rational thresholds: top/valid ≤ 1/2 → HOLD; ≥ 2/3 majority; ≥ 5/6 strong; = 1 unanimous.
    if 2 * top_votes <= valid_models {
        out.agreement = AgreementType::Split;
        out.agreeing_models = valid
            .iter()
            .filter(|(_, d)| d.action == TradeAction::Hold)
            .map(|(m, _)| (*m).to_string())
            .collect();
        out.reasoning = format!(
            "Consensus: HOLD (no majority: best {top_votes}/{valid_models} models, {:.0}% strength) | Votes: {votes_text}",
            strength * 100.0
        );
        out.model_votes = model_votes;
        return out;
    }
    let (agreement, boost) = if top_votes == valid_models {
        (AgreementType::Unanimous, cfg.unanimous_boost)
    } else if 6 * top_votes >= 5 * valid_models {
        (AgreementType::StrongMajority, cfg.strong_majority_boost)
    } else if 3 * top_votes >= 2 * valid_models {
        (AgreementType::Majority, cfg.majority_boost)
    } else {
        (AgreementType::Split, 0.0)
    };
    let agreeing: Vec<(&str, &DecisionOutput)> =
        valid.iter().copied().filter(|(_, d)| d.action == top_action).collect();
    let mean_conf = agreeing.iter().map(|(_, d)| d.confidence).sum::<f64>() / agreeing.len().max(1) as f64;
    out.action = top_action;
    out.agreement = agreement;
    out.confidence = (mean_conf + boost).clamp(0.0, 1.0);
    out.agreeing_models = agreeing.iter().map(|(m, _)| (*m).to_string()).collect();
    if top_action != TradeAction::Hold {
        out.entry_price = mean_decimal(agreeing.iter().filter_map(|(_, d)| d.entry_price));
        out.stop_loss_pct = mean_decimal(agreeing.iter().filter_map(|(_, d)| d.stop_loss_pct));
        out.take_profit_pct = mean_decimal(agreeing.iter().filter_map(|(_, d)| d.take_profit_pct));
        out.position_size_pct = mean_decimal(agreeing.iter().filter_map(|(_, d)| d.position_size_pct));
        out.leverage = agreeing.iter().map(|(_, d)| d.leverage).min().unwrap_or(1).max(1);
    }
    let excerpts: Vec<String> = agreeing
        .iter()
        .take(3)
        .map(|(m, d)| format!("{m}: {}", fields::truncate(&d.reasoning, 50)))
        .collect();
    out.reasoning = fields::truncate(
        &format!(
            "Consensus: {top_action} ({top_votes}/{valid_models} models agree, {:.0}% strength) | Votes: {votes_text} | {}",
            strength * 100.0,
            excerpts.join(" | ")
        ),
        1000,
    );
    out.model_votes = model_votes;
    out
}

// ---------------------------------------------------------------- field helpers

/// Field extraction shared by the agents' output parsers; every error names its field.
pub(crate) mod fields {
    use super::*;
    use std::str::FromStr;

    pub(crate) fn bad(field: &str, why: &str) -> ModelError {
        ModelError::BadOutput(format!("field `{field}`: {why}"))
    }

    /// The JSON object in `text`: the whole text, or the span from the first `{` to the last `}`.
    pub(crate) fn json_object(text: &str) -> Result<Map<String, Value>, ModelError> {
        let trimmed = text.trim();
        let parsed = serde_json::from_str::<Value>(trimmed).ok().or_else(|| {
            let start = trimmed.find('{')?;
            let end = trimmed.rfind('}')?;
            trimmed
                .get(start..=end)
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
        });
        match parsed {
            Some(Value::Object(m)) => Ok(m),
            _ => {
                let head: String = trimmed.chars().take(100).collect();
                Err(ModelError::BadOutput(format!("no JSON object in the answer: {head:?}")))
            }
        }
    }

    pub(crate) fn req_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, ModelError> {
        match obj.get(field) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(bad(field, &format!("expected a string, got {other}"))),
            None => Err(bad(field, "missing")),
        }
    }

    pub(crate) fn opt_str(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, ModelError> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(bad(field, &format!("expected a string, got {other}"))),
        }
    }

    fn number(v: &Value) -> Option<f64> {
        match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        }
    }

    /// A required number within `[lo, hi]`.
    pub(crate) fn req_f64_in(obj: &Map<String, Value>, field: &str, lo: f64, hi: f64) -> Result<f64, ModelError> {
        let v = obj.get(field).ok_or_else(|| bad(field, "missing"))?;
        let x = number(v)
            .filter(|x| x.is_finite())
            .ok_or_else(|| bad(field, &format!("expected a number, got {v}")))?;
        if x < lo || x > hi {
            return Err(bad(field, &format!("{x} is outside {lo}..{hi}")));
        }
        Ok(x)
    }

    /// An optional decimal (JSON number or numeric string), parsed from its text, not via f64.
    pub(crate) fn opt_decimal(obj: &Map<String, Value>, field: &str) -> Result<Option<Decimal>, ModelError> {
        let text = match obj.get(field) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.trim().to_string(),
            Some(other) => return Err(bad(field, &format!("expected a number, got {other}"))),
        };
        Decimal::from_str(&text)
            .or_else(|_| Decimal::from_scientific(&text))
            .map(Some)
            .map_err(|_| bad(field, &format!("not a decimal number: {text:?}")))
    }

    /// `f64` parameter (a multiplier) as a decimal; non-finite becomes zero.
    pub(crate) fn dec(x: f64) -> Decimal {
        Decimal::try_from(x).unwrap_or(Decimal::ZERO).round_dp(6)
    }

    /// At most `max` characters, the last three being `...` when cut.
    pub(crate) fn truncate(s: &str, max: usize) -> String {
        if s.chars().count() <= max {
            return s.to_string();
        }
        let mut out: String = s.chars().take(max.saturating_sub(3)).collect();
        out.push_str("...");
        out
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests assert by unwrapping"
)]
mod tests;
