//! Strict extraction of the JSON object a model answers with.
//!
//! Models wrap JSON in ```json fences or put prose around it. [`extract_json_object`] finds the
//! first complete JSON *object* (in order: a ```json fence, any fence, the first balanced `{…}`
//! outside string literals) and parses it; anything else is [`ModelError::BadOutput`]. Field
//! validation against an agent's schema happens in the agent (`parse_*` functions in
//! `triplegain_actors::agents`), which names the offending field.

use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;
use triplegain_actors::agents::sentiment::{self, ProviderSentiment};
use triplegain_actors::agents::trading_decision::{self, DecisionOutput};
use triplegain_actors::ports::{ModelClient, ModelError, ModelFuture, ModelRequest};

/// The first JSON object in `text`.
///
/// # Errors
/// `BadOutput` quoting the first 100 characters when no parseable object is found.
pub fn extract_json_object(text: &str) -> Result<serde_json::Map<String, Value>, ModelError> {
    let mut candidates: Vec<&str> = Vec::new();
    candidates.extend(fenced_blocks(text, true));
    candidates.extend(fenced_blocks(text, false));
    candidates.push(text);
    for candidate in candidates {
        if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(candidate.trim()) {
            return Ok(map);
        }
        let mut from = 0;
        while let Some(obj) = balanced_object(candidate, from) {
            if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(obj.1) {
                return Ok(map);
            }
            from = obj.0 + 1;
        }
    }
    let head: String = text.chars().take(100).collect();
    Err(ModelError::BadOutput(format!("no JSON object in the answer: {head:?}")))
}

/// Extracts the object and deserialises it into `T` (serde names a missing field).
///
/// # Errors
/// `BadOutput` when no object is found or it does not match `T`.
pub fn parse_output<T: DeserializeOwned>(text: &str) -> Result<T, ModelError> {
    let map = extract_json_object(text)?;
    serde_json::from_value(Value::Object(map)).map_err(|e| ModelError::BadOutput(format!("schema mismatch: {e}")))
}

/// Extracts the object and validates it as a trading decision (fields named on error).
///
/// # Errors
/// `BadOutput` when no object is found or a field is missing, misspelt or out of range.
pub fn parse_decision(text: &str, current_price: Decimal) -> Result<DecisionOutput, ModelError> {
    let map = extract_json_object(text)?;
    trading_decision::parse_decision(&Value::Object(map).to_string(), current_price)
}

/// Extracts the object and validates it as one sentiment provider's answer.
///
/// # Errors
/// `BadOutput` when no object is found or a field is missing, misspelt or out of range.
pub fn parse_sentiment(text: &str) -> Result<ProviderSentiment, ModelError> {
    let map = extract_json_object(text)?;
    sentiment::parse_provider_output(&Value::Object(map).to_string())
}

/// Contents of ```json fences (`json_only`) or of every fence.
fn fenced_blocks(text: &str, json_only: bool) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let (lang, body_start) = match after.find('\n') {
            Some(nl) => (after[..nl].trim(), nl + 1),
            None => break,
        };
        let body = &after[body_start..];
        let Some(end) = body.find("```") else { break };
        let is_json = lang.eq_ignore_ascii_case("json");
        if is_json || !json_only {
            out.push(&body[..end]);
        }
        rest = &body[end + 3..];
    }
    out
}

/// The first balanced `{…}` starting at or after byte `from`, skipping braces inside strings.
/// Returns the start offset and the slice.
fn balanced_object(text: &str, from: usize) -> Option<(usize, &str)> {
    let bytes = text.as_bytes();
    let start = from + text.get(from..)?.find('{')?;
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate().skip(start) {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return text.get(start..=i).map(|s| (start, s));
                }
            }
            _ => {}
        }
    }
    None
}

/// Wraps a client so a successful answer carries exactly one JSON object (compact) as its text;
/// an answer without one fails with `BadOutput`, so a fallback chain moves on to the next model.
#[derive(Clone)]
pub struct JsonOutputClient {
    inner: Arc<dyn ModelClient>,
}

impl JsonOutputClient {
    pub fn new(inner: Arc<dyn ModelClient>) -> Self {
        Self { inner }
    }
}

impl ModelClient for JsonOutputClient {
    fn provider(&self) -> &str {
        self.inner.provider()
    }

    fn complete(&self, req: ModelRequest) -> ModelFuture {
        let fut = self.inner.complete(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            let map = extract_json_object(&resp.text)
                .map_err(|e| ModelError::BadOutput(format!("{}/{}: {e}", resp.provider, resp.model)))?;
            resp.text = Value::Object(map).to_string();
            Ok(resp)
        })
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

    #[test]
    fn extracts_from_json_fence() {
        let t = "Here is my analysis:\n```json\n{\"action\": \"BUY\", \"confidence\": 0.8}\n```\nThanks";
        let m = extract_json_object(t).unwrap();
        assert_eq!(m["action"], "BUY");
    }

    #[test]
    fn prefers_json_fence_over_earlier_plain_fence() {
        let t = "```\n{\"a\": 1}\n```\n```json\n{\"a\": 2}\n```";
        assert_eq!(extract_json_object(t).unwrap()["a"], 2);
    }

    #[test]
    fn extracts_after_leading_prose_with_braces_in_strings() {
        let t =
            "Sure! {not json} The answer: {\"reasoning\": \"uses {braces} and \\\"quotes\\\"\", \"n\": {\"x\": 1}} end";
        let m = extract_json_object(t).unwrap();
        assert_eq!(m["reasoning"], "uses {braces} and \"quotes\"");
        assert_eq!(m["n"]["x"], 1);
    }

    #[test]
    fn bare_object() {
        assert_eq!(extract_json_object("  {\"a\": true}  ").unwrap()["a"], true);
    }

    #[test]
    fn rejects_text_without_object() {
        for t in ["I think you should BUY", "[1, 2, 3]", "{\"a\": ", ""] {
            let e = extract_json_object(t).unwrap_err();
            assert!(
                matches!(e, ModelError::BadOutput(ref m) if m.contains("no JSON object")),
                "{t}: {e}"
            );
        }
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code, reason = "fields are read through Debug in assertions")]
    struct Out {
        action: String,
        confidence: f64,
    }

    #[test]
    fn validated_agent_outputs_after_prose_with_braces() {
        use triplegain_actors::domain::{SentimentBias, TradeAction};
        let t = "My view {short version}: ```json\n{\"action\": \"SELL\", \"confidence\": 0.7, \
                 \"stop_loss_pct\": 2, \"reasoning\": \"lower highs {4h}\"}\n``` done {x}";
        let d = parse_decision(t, rust_decimal::Decimal::ONE_HUNDRED).unwrap();
        assert_eq!(d.action, TradeAction::Sell);
        let e = parse_decision(
            "Note {a}: {\"action\": \"SELL\", \"confidence\": 2}",
            rust_decimal::Decimal::ONE_HUNDRED,
        )
        .unwrap_err();
        assert!(
            matches!(e, ModelError::BadOutput(ref m) if m.contains("`confidence`")),
            "{e}"
        );
        let s = parse_sentiment("Sentiment {today}: {\"score\": -0.3, \"confidence\": 0.6}").unwrap();
        assert_eq!(s.bias, SentimentBias::Bearish);
    }

    #[test]
    fn typed_parse_names_missing_field() {
        let e = parse_output::<Out>("```json\n{\"action\": \"BUY\"}\n```").unwrap_err();
        assert!(
            matches!(e, ModelError::BadOutput(ref m) if m.contains("confidence")),
            "{e}"
        );
        let ok = parse_output::<Out>("{\"action\": \"SELL\", \"confidence\": 0.7}").unwrap();
        assert_eq!(ok.action, "SELL");
    }
}
