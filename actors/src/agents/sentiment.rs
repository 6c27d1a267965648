//! Sentiment agent, pure core: per-provider prompts (social via Grok, news via GPT), strict
//! parsing of each provider's answer, aggregation (reference §1.3), and the neutral fallback.
//!
//! Corrected behaviour compared with the reference system:
//! - the configured social and news weights are used as weights of a weighted mean;
//! - score boundaries are symmetric (±0.2 and ±0.6 belong to the stronger class on both sides);
//! - confidence is the mean of the successful providers, never floored upwards, and the
//!   neutral fallback (no key, every provider failed) has confidence 0 and says why;
//! - an unparseable or out-of-range provider answer is a failed provider, not a 0.3 guess.

use super::trading_decision::fields;
use crate::domain::{FearGreed, SentimentBias, Symbol};
use crate::messages::{EventMeta, SentimentUpdate};
use crate::ports::{ModelError, ModelRequest, ModelResponse};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const AGENT_NAME: &str = "sentiment";
pub const TEMPERATURE: f64 = 0.3;
pub const MAX_TOKENS: u32 = 2048;
pub const MAX_EVENTS: usize = 5;
pub const MAX_NARRATIVES: usize = 3;
const EVENT_CHARS: usize = 200;
const SOURCE_CHARS: usize = 100;
const NARRATIVE_CHARS: usize = 200;
const REASONING_CHARS: usize = 500;

/// What a provider is asked to assess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SentimentSource {
    /// Social media (Grok / X).
    Social,
    /// News (GPT).
    News,
}

impl SentimentSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Social => "social",
            Self::News => "news",
        }
    }
}

/// The system prompt for one source.
pub fn system_prompt(source: SentimentSource) -> String {
    let focus = match source {
        SentimentSource::Social => {
            "social media discussion (X/Twitter, Reddit, forums): crowd mood, narratives, influencer activity"
        }
        SentimentSource::News => {
            "news coverage: regulation, institutional flows, macro events, exchange and project announcements"
        }
    };
    format!(
        "You are a crypto market sentiment analyst focused on {focus}. Assess only what you can actually observe; \
         if you have no recent information, say so with a low confidence. Answer with one JSON object only, no prose: \
         {{\"bias\": \"very_bullish\" | \"bullish\" | \"neutral\" | \"bearish\" | \"very_bearish\", \
         \"score\": number -1..1, \"confidence\": number 0..1, \
         \"key_events\": [{{\"event\": string, \"impact\": \"positive\" | \"negative\" | \"neutral\", \
         \"significance\": \"low\" | \"medium\" | \"high\", \"source\": string}}] (at most 5), \
         \"narratives\": [string] (at most 3), \"reasoning\": string (at most 500 characters)}}"
    )
}

/// The user prompt: the asset (the part of the symbol before `/`).
pub fn build_user_prompt(symbol: &Symbol, source: SentimentSource) -> String {
    format!(
        "Analyse the current {} sentiment for {} ({}). Consider the last 24 hours. Reply with the JSON object described.",
        source.as_str(),
        symbol.base(),
        symbol
    )
}

pub fn build_request(symbol: &Symbol, source: SentimentSource, model: &str, timeout_ms: u64) -> ModelRequest {
    ModelRequest {
        model: model.to_string(),
        system_prompt: system_prompt(source),
        user_prompt: build_user_prompt(symbol, source),
        max_tokens: MAX_TOKENS,
        temperature: TEMPERATURE,
        timeout_ms,
    }
}

// ---------------------------------------------------------------- provider output

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Impact {
    Positive,
    Negative,
    Neutral,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Significance {
    Low,
    Medium,
    High,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyEvent {
    pub event: String,
    pub impact: Impact,
    pub significance: Significance,
    pub source: String,
}

/// One provider's validated answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderSentiment {
    pub bias: SentimentBias,
    /// -1..1
    pub score: f64,
    /// 0..1
    pub confidence: f64,
    pub key_events: Vec<KeyEvent>,
    pub narratives: Vec<String>,
    pub reasoning: String,
}

fn parse_enum<T>(
    field: &str,
    v: Option<&Value>,
    default: T,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, ModelError> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(Value::String(s)) => parse(s.trim().to_ascii_lowercase().as_str())
            .ok_or_else(|| fields::bad(field, &format!("unknown value {s:?}"))),
        Some(other) => Err(fields::bad(field, &format!("expected a string, got {other}"))),
    }
}

/// Parses and validates one provider's answer.
///
/// # Errors
/// `ModelError::BadOutput` naming the first offending field (e.g. `key_events[1].impact`).
pub fn parse_provider_output(text: &str) -> Result<ProviderSentiment, ModelError> {
    let obj = fields::json_object(text)?;
    let score = fields::req_f64_in(&obj, "score", -1.0, 1.0)?;
    let confidence = fields::req_f64_in(&obj, "confidence", 0.0, 1.0)?;
    let bias = match obj.get("bias") {
        None | Some(Value::Null) => bias_from_score(score),
        Some(Value::String(s)) => {
            SentimentBias::parse(s.trim().to_ascii_lowercase().as_str()).map_err(|e| fields::bad("bias", &e))?
        }
        Some(other) => return Err(fields::bad("bias", &format!("expected a string, got {other}"))),
    };
    let mut key_events = Vec::new();
    match obj.get("key_events") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate().take(MAX_EVENTS) {
                let field = format!("key_events[{i}]");
                let Value::Object(e) = item else {
                    return Err(fields::bad(&field, "expected an object"));
                };
                let event =
                    fields::req_str(e, "event").map_err(|_| fields::bad(&format!("{field}.event"), "missing"))?;
                let impact = parse_enum(
                    &format!("{field}.impact"),
                    e.get("impact"),
                    Impact::Neutral,
                    |s| match s {
                        "positive" => Some(Impact::Positive),
                        "negative" => Some(Impact::Negative),
                        "neutral" => Some(Impact::Neutral),
                        _ => None,
                    },
                )?;
                let significance = parse_enum(
                    &format!("{field}.significance"),
                    e.get("significance"),
                    Significance::Medium,
                    |s| match s {
                        "low" => Some(Significance::Low),
                        "medium" => Some(Significance::Medium),
                        "high" => Some(Significance::High),
                        _ => None,
                    },
                )?;
                let source = fields::opt_str(e, "source")
                    .map_err(|_| fields::bad(&format!("{field}.source"), "expected a string"))?
                    .unwrap_or_default();
                key_events.push(KeyEvent {
                    event: fields::truncate(event, EVENT_CHARS),
                    impact,
                    significance,
                    source: fields::truncate(&source, SOURCE_CHARS),
                });
            }
        }
        Some(_) => return Err(fields::bad("key_events", "expected an array")),
    }
    let narratives = match obj.get("narratives") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .take(MAX_NARRATIVES)
            .map(|(i, n)| match n {
                Value::String(s) => Ok(fields::truncate(s, NARRATIVE_CHARS)),
                _ => Err(fields::bad(&format!("narratives[{i}]"), "expected a string")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(fields::bad("narratives", "expected an array")),
    };
    let reasoning = fields::opt_str(&obj, "reasoning")?.unwrap_or_default();
    Ok(ProviderSentiment {
        bias,
        score,
        confidence,
        key_events,
        narratives,
        reasoning: fields::truncate(&reasoning, REASONING_CHARS),
    })
}

// ---------------------------------------------------------------- aggregation

/// One provider's result (answer or failure) for aggregation and storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderResult {
    pub provider: String,
    pub model: String,
    pub source: SentimentSource,
    pub outcome: Result<ProviderSentiment, String>,
    pub latency_ms: u64,
    pub cost_usd: Decimal,
}

impl ProviderResult {
    /// From a model call: parsed and validated, or the error.
    pub fn from_call(
        provider: &str,
        model: &str,
        source: SentimentSource,
        result: Result<ModelResponse, ModelError>,
    ) -> Self {
        match result {
            Ok(r) => Self {
                provider: r.provider.clone(),
                model: r.model.clone(),
                source,
                outcome: parse_provider_output(&r.text).map_err(|e| e.to_string()),
                latency_ms: r.latency_ms,
                cost_usd: r.cost_usd,
            },
            Err(e) => Self {
                provider: provider.to_string(),
                model: model.to_string(),
                source,
                outcome: Err(e.to_string()),
                latency_ms: 0,
                cost_usd: Decimal::ZERO,
            },
        }
    }
}

/// Aggregation weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregationConfig {
    pub social_weight: f64,
    pub news_weight: f64,
}

impl Default for AggregationConfig {
    fn default() -> Self {
        Self {
            social_weight: 0.6,
            news_weight: 0.6,
        }
    }
}

/// The aggregated sentiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentimentOutput {
    pub bias: SentimentBias,
    pub confidence: f64,
    pub fear_greed: FearGreed,
    /// -1..1
    pub overall_score: f64,
    pub social_score: f64,
    pub news_score: f64,
    pub social_available: bool,
    pub news_available: bool,
    pub key_events: Vec<KeyEvent>,
    pub narratives: Vec<String>,
    pub social_analysis: String,
    pub news_analysis: String,
    pub reasoning: String,
    pub model_used: String,
    pub latency_ms: u64,
    pub total_cost_usd: Decimal,
}

impl SentimentOutput {
    pub fn to_update(&self, meta: EventMeta, symbol: Symbol) -> SentimentUpdate {
        SentimentUpdate {
            meta,
            symbol,
            bias: self.bias,
            confidence: self.confidence,
            fear_greed: self.fear_greed,
            social_score: self.social_score,
            news_score: self.news_score,
            key_events: self.key_events.iter().map(|e| e.event.clone()).collect(),
        }
    }
}

/// Bias from a score in -1..1: ≥ 0.6 very bullish, ≥ 0.2 bullish, ≤ −0.6 very bearish,
/// ≤ −0.2 bearish, otherwise neutral (symmetric boundaries).
pub fn bias_from_score(score: f64) -> SentimentBias {
    if score >= 0.6 {
        SentimentBias::VeryBullish
    } else if score >= 0.2 {
        SentimentBias::Bullish
    } else if score <= -0.6 {
        SentimentBias::VeryBearish
    } else if score <= -0.2 {
        SentimentBias::Bearish
    } else {
        SentimentBias::Neutral
    }
}

/// Fear and greed with the same boundaries as [`bias_from_score`].
pub fn fear_greed_from_score(score: f64) -> FearGreed {
    match bias_from_score(score) {
        SentimentBias::VeryBullish => FearGreed::ExtremeGreed,
        SentimentBias::Bullish => FearGreed::Greed,
        SentimentBias::Neutral => FearGreed::Neutral,
        SentimentBias::Bearish => FearGreed::Fear,
        SentimentBias::VeryBearish => FearGreed::ExtremeFear,
    }
}

/// Neutral, confidence 0, with the reason (no key configured, every provider failed).
pub fn neutral_fallback(reason: impl Into<String>) -> SentimentOutput {
    SentimentOutput {
        bias: SentimentBias::Neutral,
        confidence: 0.0,
        fear_greed: FearGreed::Neutral,
        overall_score: 0.0,
        social_score: 0.0,
        news_score: 0.0,
        social_available: false,
        news_available: false,
        key_events: Vec::new(),
        narratives: Vec::new(),
        social_analysis: String::new(),
        news_analysis: String::new(),
        reasoning: fields::truncate(&reason.into(), REASONING_CHARS),
        model_used: "rule-based".to_string(),
        latency_ms: 0,
        total_cost_usd: Decimal::ZERO,
    }
}

/// Combines the providers' results (reference §1.3, corrected).
pub fn aggregate(results: &[ProviderResult], cfg: &AggregationConfig) -> SentimentOutput {
    let ok = |source: SentimentSource| {
        results.iter().find_map(|r| match (&r.outcome, r.source == source) {
            (Ok(s), true) => Some(s),
            _ => None,
        })
    };
    let social = ok(SentimentSource::Social);
    let news = ok(SentimentSource::News);
    let latency_ms = results.iter().map(|r| r.latency_ms).max().unwrap_or(0);
    let total_cost_usd: Decimal = results.iter().map(|r| r.cost_usd).sum();
    let overall = match (social, news) {
        (None, None) => {
            let why: Vec<String> = results
                .iter()
                .filter_map(|r| r.outcome.as_ref().err().map(|e| format!("{}: {e}", r.provider)))
                .collect();
            let reason = if why.is_empty() {
                "no sentiment provider configured".to_string()
            } else {
                format!("every sentiment provider failed ({})", why.join("; "))
            };
            let mut out = neutral_fallback(reason);
            out.latency_ms = latency_ms;
            out.total_cost_usd = total_cost_usd;
            return out;
        }
        (Some(s), Some(n)) => {
            let (ws, wn) = (cfg.social_weight.max(0.0), cfg.news_weight.max(0.0));
            if ws + wn > 0.0 {
                (s.score * ws + n.score * wn) / (ws + wn)
            } else {
                (s.score + n.score) / 2.0
            }
        }
        (Some(s), None) => s.score,
        (None, Some(n)) => n.score,
    };
    let overall = overall.clamp(-1.0, 1.0);
    let present: Vec<&ProviderSentiment> = social.into_iter().chain(news).collect();
    let confidence = present.iter().map(|p| p.confidence).sum::<f64>() / present.len().max(1) as f64;

    let mut events: Vec<KeyEvent> = present.iter().flat_map(|p| p.key_events.iter().cloned()).collect();
    events.sort_by_key(|e| std::cmp::Reverse(e.significance));
    let mut seen = std::collections::HashSet::new();
    events.retain(|e| seen.insert(e.event.to_lowercase().chars().take(50).collect::<String>()));
    events.truncate(MAX_EVENTS);
    let mut narratives: Vec<String> = Vec::new();
    for n in present.iter().flat_map(|p| p.narratives.iter()) {
        if !narratives.contains(n) && narratives.len() < MAX_NARRATIVES {
            narratives.push(n.clone());
        }
    }
    let social_analysis = social.map(|s| s.reasoning.clone()).unwrap_or_default();
    let news_analysis = news.map(|n| n.reasoning.clone()).unwrap_or_default();
    let mut parts = Vec::new();
    if social.is_some() {
        parts.push(format!("Social: {}", fields::truncate(&social_analysis, 200)));
    }
    if news.is_some() {
        parts.push(format!("News: {}", fields::truncate(&news_analysis, 200)));
    }
    let model_used = results
        .iter()
        .filter(|r| r.outcome.is_ok())
        .map(|r| format!("{}:{}", r.provider, r.model))
        .collect::<Vec<_>>()
        .join("+");
    SentimentOutput {
        bias: bias_from_score(overall),
        confidence: confidence.clamp(0.0, 1.0),
        fear_greed: fear_greed_from_score(overall),
        overall_score: overall,
        social_score: social.map_or(0.0, |s| s.score),
        news_score: news.map_or(0.0, |n| n.score),
        social_available: social.is_some(),
        news_available: news.is_some(),
        key_events: events,
        narratives,
        social_analysis,
        news_analysis,
        reasoning: fields::truncate(&parts.join(" | "), REASONING_CHARS),
        model_used,
        latency_ms,
        total_cost_usd,
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests assert by unwrapping"
)]
mod tests {
    use super::*;
    use chrono::Utc;
    use rust_decimal_macros::dec;

    fn answer(score: f64, confidence: f64) -> String {
        format!(
            r#"{{"bias":"{}","score":{score},"confidence":{confidence},
               "key_events":[{{"event":"ETF inflows","impact":"positive","significance":"high","source":"news"}},
                             {{"event":"Exchange hack rumour","impact":"negative","significance":"low","source":"x"}}],
               "narratives":["institutional demand"],"reasoning":"mood {score}"}}"#,
            bias_from_score(score)
        )
    }

    fn result(source: SentimentSource, outcome: Result<ProviderSentiment, String>) -> ProviderResult {
        let provider = if source == SentimentSource::Social {
            "xai"
        } else {
            "openai"
        };
        ProviderResult {
            provider: provider.into(),
            model: "m".into(),
            source,
            outcome,
            latency_ms: 100,
            cost_usd: dec!(0.01),
        }
    }

    #[test]
    fn score_boundaries_are_symmetric() {
        use SentimentBias::*;
        let table = [
            (1.0, VeryBullish),
            (0.6, VeryBullish),
            (0.59, Bullish),
            (0.2, Bullish),
            (0.19, Neutral),
            (0.0, Neutral),
            (-0.19, Neutral),
            (-0.2, Bearish),
            (-0.59, Bearish),
            (-0.6, VeryBearish),
            (-1.0, VeryBearish),
        ];
        for (score, bias) in table {
            assert_eq!(bias_from_score(score), bias, "{score}");
        }
        assert_eq!(fear_greed_from_score(-0.2), FearGreed::Fear);
        assert_eq!(fear_greed_from_score(0.6), FearGreed::ExtremeGreed);
    }

    #[test]
    fn parses_provider_answer() {
        let p = parse_provider_output(&format!("Here you go:\n```json\n{}\n```", answer(0.45, 0.7))).unwrap();
        assert_eq!(p.bias, SentimentBias::Bullish);
        assert_eq!(p.score, 0.45);
        assert_eq!(p.key_events.len(), 2);
        assert_eq!(p.key_events[0].significance, Significance::High);
        assert_eq!(p.narratives, vec!["institutional demand"]);
    }

    #[test]
    fn invalid_provider_answers_name_the_field() {
        let cases = [
            (r#"{"confidence":0.5}"#, "`score`"),
            (r#"{"score":1.5,"confidence":0.5}"#, "`score`"),
            (r#"{"score":0.1,"confidence":-0.1}"#, "`confidence`"),
            (r#"{"score":0.1,"confidence":0.5,"bias":"super_bullish"}"#, "`bias`"),
            (
                r#"{"score":0.1,"confidence":0.5,"key_events":[{"event":"x","impact":"huge"}]}"#,
                "`key_events[0].impact`",
            ),
            (
                r#"{"score":0.1,"confidence":0.5,"key_events":[{"impact":"positive"}]}"#,
                "`key_events[0].event`",
            ),
            (r#"{"score":0.1,"confidence":0.5,"narratives":"one"}"#, "`narratives`"),
        ];
        for (text, field) in cases {
            match parse_provider_output(text) {
                Err(ModelError::BadOutput(m)) => assert!(m.contains(field), "{text}: {m}"),
                other => panic!("{text}: expected BadOutput naming {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn aggregates_with_configured_weights() {
        let social = parse_provider_output(&answer(0.8, 0.6)).unwrap();
        let news = parse_provider_output(&answer(-0.4, 0.8)).unwrap();
        let results = [
            result(SentimentSource::Social, Ok(social)),
            result(SentimentSource::News, Ok(news)),
        ];
        // equal default weights: (0.8 + -0.4) / 2 = 0.2 → bullish
        let out = aggregate(&results, &AggregationConfig::default());
        assert!((out.overall_score - 0.2).abs() < 1e-9);
        assert_eq!(out.bias, SentimentBias::Bullish);
        assert!((out.confidence - 0.7).abs() < 1e-9);
        assert_eq!((out.social_score, out.news_score), (0.8, -0.4));
        assert!(out.social_available && out.news_available);
        assert_eq!(out.total_cost_usd, dec!(0.02));
        // news-heavy weights: (0.8×0.25 − 0.4×0.75) = −0.1 → neutral
        let out = aggregate(
            &results,
            &AggregationConfig {
                social_weight: 0.25,
                news_weight: 0.75,
            },
        );
        assert!((out.overall_score + 0.1).abs() < 1e-9);
        assert_eq!(out.bias, SentimentBias::Neutral);
        // events: high first, duplicates (same first 50 chars, any case) removed
        assert_eq!(out.key_events.len(), 2);
        assert_eq!(out.key_events[0].event, "ETF inflows");
        assert_eq!(out.narratives, vec!["institutional demand"]);
        assert!(
            out.reasoning.starts_with("Social: mood 0.8 | News: mood -0.4"),
            "{}",
            out.reasoning
        );
        assert_eq!(out.model_used, "xai:m+openai:m");
    }

    #[test]
    fn single_provider_uses_its_score_and_confidence_is_not_floored() {
        let news = parse_provider_output(&answer(-0.7, 0.1)).unwrap();
        let out = aggregate(
            &[
                result(SentimentSource::Social, Err("timeout".into())),
                result(SentimentSource::News, Ok(news)),
            ],
            &AggregationConfig::default(),
        );
        assert_eq!(out.bias, SentimentBias::VeryBearish);
        assert_eq!(out.fear_greed, FearGreed::ExtremeFear);
        assert!((out.confidence - 0.1).abs() < 1e-9);
        assert!(!out.social_available && out.news_available);
        assert_eq!(out.social_score, 0.0);
    }

    #[test]
    fn all_failed_or_unconfigured_is_neutral_with_zero_confidence_and_a_reason() {
        let out = aggregate(
            &[
                result(SentimentSource::Social, Err("circuit breaker open".into())),
                result(SentimentSource::News, Err("http 500".into())),
            ],
            &AggregationConfig::default(),
        );
        assert_eq!(
            (out.bias, out.fear_greed, out.confidence),
            (SentimentBias::Neutral, FearGreed::Neutral, 0.0)
        );
        assert!(
            out.reasoning.contains("circuit breaker open") && out.reasoning.contains("http 500"),
            "{}",
            out.reasoning
        );
        let none = aggregate(&[], &AggregationConfig::default());
        assert_eq!(none.confidence, 0.0);
        assert_eq!(none.reasoning, "no sentiment provider configured");
        let symbol = Symbol::parse("XRP/USDT").unwrap();
        let update = none.to_update(EventMeta::new("sentiment", Utc::now()), symbol.clone());
        assert_eq!(
            (update.bias, update.confidence, update.symbol),
            (SentimentBias::Neutral, 0.0, symbol)
        );
    }

    #[test]
    fn prompts_name_the_asset_and_source() {
        let s = Symbol::parse("XRP/BTC").unwrap();
        let r = build_request(&s, SentimentSource::Social, "grok-2", 30_000);
        assert!(r.user_prompt.contains("XRP") && r.user_prompt.contains("social"));
        assert!(r.system_prompt.contains("social media") && r.system_prompt.contains("JSON"));
        assert_eq!((r.temperature, r.max_tokens, r.timeout_ms), (0.3, 2048, 30_000));
        assert!(build_request(&s, SentimentSource::News, "gpt-4o", 1)
            .system_prompt
            .contains("news coverage"));
    }
}
