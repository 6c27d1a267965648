//! Conflict resolution by a model (reference §5.4, corrected): the prompt that describes the
//! conflict and the strict parser of the model's answer. Anything malformed or out of range is
//! refused with the offending field named, so the coordinator falls back to the deterministic rules.

use super::signals::{ConflictRequest, ConflictResolution, Modifications, ResolutionAction};
use serde_json::{Map, Value};

/// Bounds of the modifications a model may ask for (reference §5.4).
pub const LEVERAGE_RANGE: (i64, i64) = (1, 5);
pub const SIZE_REDUCTION_RANGE: (f64, f64) = (0.0, 100.0);
pub const ENTRY_ADJUSTMENT_RANGE: (f64, f64) = (-50.0, 50.0);

/// The system prompt: the decision hierarchy and the exact answer format.
pub const SYSTEM_PROMPT: &str = "You are the coordinator of a crypto trading system. Analysis agents disagree \
about a trade. Decide what to do with it. Hierarchy: risk rules are absolute; agreement of technical analysis and \
market regime outweighs sentiment; sentiment only breaks ties; when everything disagrees, wait. \
Answer with ONE JSON object and nothing else: \
{\"action\": \"proceed\" | \"wait\" | \"modify\" | \"abort\", \"confidence\": number 0..1, \
\"reasoning\": string, \"modifications\": {\"leverage\": integer 1..5, \"size_reduction_pct\": number 0..100, \
\"entry_adjustment_pct\": number -50..50}}. \
\"modifications\" is required for \"modify\" (at least one field) and must be omitted or null otherwise.";

fn opt_num(d: Option<rust_decimal::Decimal>) -> String {
    d.map_or_else(|| "none".to_owned(), |v| v.normalize().to_string())
}

/// The user prompt: symbol, action, confidence, entry, stop, take-profit and every conflict.
pub fn user_prompt(req: &ConflictRequest) -> String {
    let s = &req.signal;
    let mut out = format!(
        "## Trade\nsymbol: {}\naction: {}\ndecision confidence: {:.3}\nconfidence after consensus: {:.3}\n\
         entry price: {}\nstop loss %: {}\ntake profit %: {}\nposition size % of equity: {}\nleverage: {}\n\
         reasoning: {}\n\n## Conflicts\n",
        s.symbol,
        s.action,
        s.confidence,
        req.adjusted_confidence,
        opt_num(s.entry_price),
        opt_num(s.stop_loss_pct),
        opt_num(s.take_profit_pct),
        opt_num(s.position_size_pct),
        s.leverage,
        s.reasoning,
    );
    for (i, c) in req.conflicts.iter().enumerate() {
        let kind = serde_json::to_value(c.conflict_type)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        out.push_str(&format!(
            "{}. {kind}: {} (agents: {}) details: {}\n",
            i + 1,
            c.description,
            c.agents_involved.join(", "),
            c.details
        ));
    }
    out.push_str("\n## Task\nResolve the conflict. Answer with the JSON object only.");
    out
}

fn bad(field: &str, why: impl std::fmt::Display) -> String {
    format!("field `{field}`: {why}")
}

/// The JSON object of the answer: the whole text, a ```json fence, or the first `{` to the last `}`.
fn object(text: &str) -> Result<Map<String, Value>, String> {
    let t = text.trim();
    let fenced = t.split("```").nth(1).map(|b| b.trim_start_matches("json").trim());
    let candidates = [
        Some(t),
        fenced,
        t.find('{').zip(t.rfind('}')).and_then(|(a, b)| t.get(a..=b)),
    ];
    for c in candidates.into_iter().flatten() {
        if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(c) {
            return Ok(m);
        }
    }
    let head: String = t.chars().take(100).collect();
    Err(format!("no JSON object in the answer: {head:?}"))
}

fn number(obj: &Map<String, Value>, field: &str) -> Result<Option<f64>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|x| x.is_finite())
            .map(Some)
            .ok_or_else(|| bad(field, "not a finite number")),
        Some(other) => Err(bad(field, format!("expected a number, got {other}"))),
    }
}

fn within(field: &str, x: f64, (lo, hi): (f64, f64)) -> Result<f64, String> {
    if x < lo || x > hi {
        return Err(bad(field, format!("{x} is outside {lo}..{hi}")));
    }
    Ok(x)
}

fn modifications(v: &Value) -> Result<Modifications, String> {
    let Value::Object(m) = v else {
        return Err(bad("modifications", format!("expected an object, got {v}")));
    };
    if let Some(k) = m
        .keys()
        .find(|k| !["leverage", "size_reduction_pct", "entry_adjustment_pct"].contains(&k.as_str()))
    {
        return Err(bad(&format!("modifications.{k}"), "unknown field"));
    }
    let leverage = match number(m, "leverage").map_err(|e| format!("modifications.{e}"))? {
        None => None,
        Some(l) if l.fract() == 0.0 && (LEVERAGE_RANGE.0 as f64..=LEVERAGE_RANGE.1 as f64).contains(&l) => {
            Some(l as i64)
        }
        Some(l) => {
            return Err(bad(
                "modifications.leverage",
                format!("{l} is not an integer {}..{}", LEVERAGE_RANGE.0, LEVERAGE_RANGE.1),
            ))
        }
    };
    let size = number(m, "size_reduction_pct")
        .map_err(|e| format!("modifications.{e}"))?
        .map(|x| within("modifications.size_reduction_pct", x, SIZE_REDUCTION_RANGE))
        .transpose()?;
    let entry = number(m, "entry_adjustment_pct")
        .map_err(|e| format!("modifications.{e}"))?
        .map(|x| within("modifications.entry_adjustment_pct", x, ENTRY_ADJUSTMENT_RANGE))
        .transpose()?;
    Ok(Modifications {
        leverage,
        size_reduction_pct: size,
        entry_adjustment_pct: entry,
    })
}

/// Parses and validates a model's answer.
///
/// # Errors
/// A message naming the field that is missing, misspelt or out of range.
pub fn parse_resolution(text: &str, resolved_by: &str) -> Result<ConflictResolution, String> {
    let obj = object(text)?;
    let action = match obj.get("action") {
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "proceed" => ResolutionAction::Proceed,
            "wait" => ResolutionAction::Wait,
            "modify" => ResolutionAction::Modify,
            "abort" => ResolutionAction::Abort,
            other => {
                return Err(bad(
                    "action",
                    format!("{other:?} is not proceed, wait, modify or abort"),
                ))
            }
        },
        Some(other) => return Err(bad("action", format!("expected a string, got {other}"))),
        None => return Err(bad("action", "missing")),
    };
    let confidence = number(&obj, "confidence")?.ok_or_else(|| bad("confidence", "missing"))?;
    let confidence = within("confidence", confidence, (0.0, 1.0))?;
    let reasoning = match obj.get("reasoning") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        Some(Value::String(_)) | None | Some(Value::Null) => return Err(bad("reasoning", "missing")),
        Some(other) => return Err(bad("reasoning", format!("expected a string, got {other}"))),
    };
    let mods = match obj.get("modifications") {
        None | Some(Value::Null) => None,
        Some(v) => Some(modifications(v)?),
    };
    let empty =
        |m: &Modifications| m.leverage.is_none() && m.size_reduction_pct.is_none() && m.entry_adjustment_pct.is_none();
    let modifications = match (action, mods) {
        (ResolutionAction::Modify, Some(m)) if !empty(&m) => Some(m),
        (ResolutionAction::Modify, _) => return Err(bad("modifications", "required for modify")),
        (_, Some(m)) if !empty(&m) => {
            return Err(bad("modifications", "only allowed with action modify"));
        }
        _ => None,
    };
    Ok(ConflictResolution {
        action,
        reasoning,
        confidence,
        modifications,
        resolved_by: resolved_by.to_owned(),
        fallback: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn answers_table() {
        let ok = |t: &str| parse_resolution(t, "m").unwrap();
        let err = |t: &str| parse_resolution(t, "m").unwrap_err();
        let r = ok(r#"{"action":"proceed","confidence":0.8,"reasoning":"TA and regime agree"}"#);
        assert_eq!(
            (r.action, r.confidence, r.modifications),
            (ResolutionAction::Proceed, 0.8, None)
        );
        let r = ok(
            "Sure:\n```json\n{\"action\":\"MODIFY\",\"confidence\":0.6,\"reasoning\":\"smaller\",\
                    \"modifications\":{\"leverage\":2,\"size_reduction_pct\":50}}\n```",
        );
        assert_eq!(
            r.modifications,
            Some(Modifications {
                leverage: Some(2),
                size_reduction_pct: Some(50.0),
                entry_adjustment_pct: None
            })
        );
        // (answer, field named in the error)
        let cases = [
            ("I would wait.", "no JSON object"),
            (r#"{"confidence":0.5,"reasoning":"x"}"#, "`action`"),
            (r#"{"action":"hold","confidence":0.5,"reasoning":"x"}"#, "`action`"),
            (r#"{"action":"wait","confidence":1.5,"reasoning":"x"}"#, "`confidence`"),
            (r#"{"action":"wait","reasoning":"x"}"#, "`confidence`"),
            (r#"{"action":"wait","confidence":0.5}"#, "`reasoning`"),
            (
                r#"{"action":"modify","confidence":0.5,"reasoning":"x"}"#,
                "`modifications`",
            ),
            (
                r#"{"action":"modify","confidence":0.5,"reasoning":"x","modifications":{}}"#,
                "`modifications`",
            ),
            (
                r#"{"action":"modify","confidence":0.5,"reasoning":"x","modifications":{"leverage":10}}"#,
                "`modifications.leverage`",
            ),
            (
                r#"{"action":"modify","confidence":0.5,"reasoning":"x","modifications":{"leverage":2.5}}"#,
                "`modifications.leverage`",
            ),
            (
                r#"{"action":"modify","confidence":0.5,"reasoning":"x","modifications":{"size_reduction_pct":150}}"#,
                "`modifications.size_reduction_pct`",
            ),
            (
                r#"{"action":"modify","confidence":0.5,"reasoning":"x","modifications":{"entry_adjustment_pct":-60}}"#,
                "`modifications.entry_adjustment_pct`",
            ),
            (
                r#"{"action":"modify","confidence":0.5,"reasoning":"x","modifications":{"stop_loss":1}}"#,
                "`modifications.stop_loss`",
            ),
            (
                r#"{"action":"proceed","confidence":0.5,"reasoning":"x","modifications":{"leverage":2}}"#,
                "`modifications`",
            ),
        ];
        for (text, field) in cases {
            let e = err(text);
            assert!(e.contains(field), "{text}: {e}");
        }
        // The exact bounds are accepted.
        let r = ok(
            r#"{"action":"modify","confidence":1,"reasoning":"x","modifications":{"leverage":5,"size_reduction_pct":100,"entry_adjustment_pct":-50}}"#,
        );
        assert_eq!(r.modifications.unwrap().entry_adjustment_pct, Some(-50.0));
    }
}
