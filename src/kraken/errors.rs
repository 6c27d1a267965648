//! Classification of Kraken failures into what the caller may do next.
//!
//! One function, [`classify`], matches Kraken's `E<Category>:<text>` strings case-insensitively
//! by prefix. The same string can mean different things for reads and for order-changing calls:
//! when the engine was busy or unavailable a read is simply retried, but an order may or may
//! not exist, so the outcome is [`ExchangeError::Unknown`] and the caller reconciles by client id.

use triplegain_actors::ports::ExchangeError;

/// What kind of call failed; decides how an ambiguous failure is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// Reads and idempotent refreshes (balances, queries, the dead man's switch).
    Read,
    /// Calls that change orders (AddOrder, CancelOrder): never retried blindly.
    OrderChange,
}

/// Kraken error strings (lower-case prefixes) that mean "rejected, nothing happened, do not
/// retry unchanged".
const REJECTED: &[&str] = &[
    "eapi:invalid key",
    "eapi:invalid signature",
    "eapi:bad request",
    "eapi:feature disabled",
    "egeneral:permission denied",
    "egeneral:invalid arguments",
    "egeneral:unknown method",
    "eorder:order minimum not met",
    "eorder:cost minimum not met",
    "eorder:tick size check failed",
    "eorder:invalid price",
    "eorder:insufficient funds",
    "eorder:insufficient margin",
    "eorder:margin",
    "eorder:orders limit exceeded",
    "eorder:scheduled orders limit exceeded",
    "eorder:positions limit exceeded",
    "eorder:unknown order",
    "eorder:invalid order",
    "eorder:unknown position",
    "eorder:cannot open position",
    "eorder:trading agreement required",
    "eorder:reduce only",
    "eorder:post only",
    "eservice:market in",
    "equery:unknown asset pair",
    "equery:unknown asset",
    "egeneral:invalid",
    "efunding:",
];

/// Rate limits (REST counter, concurrency, engine counter): not executed, back off then retry.
const RATE_LIMITED: &[&str] = &[
    "eapi:rate limit exceeded",
    "egeneral:too many requests",
    "eauth:rate limit exceeded",
    "eservice:throttled",
    "eorder:rate limit exceeded",
    "eorder:domain rate limit exceeded",
];

/// Engine busy or unavailable: reads retry, order changes have an unknown outcome.
const AMBIGUOUS: &[&str] = &[
    "eservice:unavailable",
    "eservice:busy",
    "egeneral:internal error",
    "eservice:deadline elapsed",
    "eservice:timeout",
];

/// The lock-out Kraken imposes after many bad authentication or nonce calls.
pub const LOCKOUT_PREFIX: &str = "egeneral:temporary lockout";

/// The nonce was not above the last accepted one; the request was refused before execution.
pub const INVALID_NONCE_PREFIX: &str = "eapi:invalid nonce";

fn starts_with_ci(error: &str, prefix: &str) -> bool {
    error.trim().to_ascii_lowercase().starts_with(prefix)
}

/// Whether any error in the list starts with `prefix` (case-insensitive).
pub fn has_error(errors: &[String], prefix: &str) -> bool {
    errors.iter().any(|e| starts_with_ci(e, prefix))
}

/// Classifies the error strings of one Kraken response (warnings, `W…`, are ignored).
///
/// - rejected (never retried): bad key/signature/permission, invalid arguments, minimums, tick
///   size, funds, margin, open-order caps, unknown pair/order, market modes;
/// - rate limited (nothing executed; back off, then retry): REST and engine counters, throttling,
///   the temporary lockout;
/// - `EAPI:Invalid nonce`: refused before execution, so retryable once with a fresh nonce (the
///   client does that itself);
/// - busy/unavailable/internal error/deadline: reads retryable, order changes unknown;
/// - anything unrecognised: reads rejected (no blind retries), order changes unknown (reconcile).
pub fn classify(errors: &[String], kind: CallKind) -> ExchangeError {
    let errors: Vec<&String> = errors
        .iter()
        .filter(|e| !e.trim().to_ascii_lowercase().starts_with('w'))
        .collect();
    let text = errors.iter().map(|e| e.as_str()).collect::<Vec<_>>().join("; ");
    let any = |list: &[&str]| errors.iter().any(|e| list.iter().any(|p| starts_with_ci(e, p)));

    if errors.is_empty() {
        return ExchangeError::Rejected("Kraken reported only warnings".into());
    }
    if any(&[LOCKOUT_PREFIX]) {
        return ExchangeError::RateLimited(format!("{text} (private calls paused)"));
    }
    if any(REJECTED) {
        return ExchangeError::Rejected(text);
    }
    if any(RATE_LIMITED) {
        return ExchangeError::RateLimited(text);
    }
    if any(&[INVALID_NONCE_PREFIX]) {
        return ExchangeError::Retryable(text);
    }
    if any(AMBIGUOUS) {
        return match kind {
            CallKind::Read => ExchangeError::Retryable(text),
            CallKind::OrderChange => ExchangeError::Unknown(text),
        };
    }
    // Lesson: anything saying "invalid" or "insufficient" is never retried.
    let lower = text.to_ascii_lowercase();
    if lower.contains("invalid") || lower.contains("insufficient") {
        return ExchangeError::Rejected(text);
    }
    match kind {
        CallKind::Read => ExchangeError::Rejected(format!("unrecognised Kraken error: {text}")),
        CallKind::OrderChange => ExchangeError::Unknown(format!("unrecognised Kraken error: {text}")),
    }
}

/// Classifies an HTTP status other than 200 (the request had trouble reaching Kraken).
pub fn classify_http_status(status: u16, kind: CallKind) -> ExchangeError {
    let text = format!("HTTP {status} from Kraken");
    match status {
        429 => ExchangeError::RateLimited(text),
        500..=599 => match kind {
            CallKind::Read => ExchangeError::Retryable(text),
            CallKind::OrderChange => ExchangeError::Unknown(text),
        },
        _ => ExchangeError::Rejected(text),
    }
}

/// Classifies a transport failure. A connection that could not be opened sent nothing; a
/// timeout or a broken connection after sending leaves an order change unknown.
pub fn classify_transport(err: &reqwest::Error, kind: CallKind) -> ExchangeError {
    let text = format!("transport error: {err}");
    if err.is_connect() && !err.is_timeout() {
        return ExchangeError::Retryable(text);
    }
    if err.is_builder() {
        return ExchangeError::Rejected(text);
    }
    match kind {
        CallKind::Read => ExchangeError::Retryable(text),
        CallKind::OrderChange => ExchangeError::Unknown(text),
    }
}

/// A response body that is not Kraken's JSON envelope (proxy error page, truncated body).
pub fn classify_malformed(detail: &str, kind: CallKind) -> ExchangeError {
    let text = format!("malformed Kraken response: {detail}");
    match kind {
        CallKind::Read => ExchangeError::Retryable(text),
        CallKind::OrderChange => ExchangeError::Unknown(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CallKind::{OrderChange, Read};

    #[derive(Debug, PartialEq)]
    enum Class {
        Retryable,
        Rejected,
        Unknown,
        RateLimited,
    }

    fn class(e: &ExchangeError) -> Class {
        match e {
            ExchangeError::Retryable(_) => Class::Retryable,
            ExchangeError::Rejected(_) => Class::Rejected,
            ExchangeError::Unknown(_) => Class::Unknown,
            ExchangeError::RateLimited(_) => Class::RateLimited,
            ExchangeError::Invalid(_) => panic!("classify never returns Invalid"),
        }
    }

    #[test]
    fn classification_table() {
        use Class::*;
        let table: &[(&str, CallKind, Class)] = &[
            ("EOrder:Insufficient funds", OrderChange, Rejected),
            ("eorder:insufficient FUNDS", OrderChange, Rejected),
            ("EOrder:Insufficient margin", OrderChange, Rejected),
            ("EGeneral:Invalid arguments", OrderChange, Rejected),
            (
                "EGeneral:Invalid arguments:volume minimum not met",
                OrderChange,
                Rejected,
            ),
            ("EOrder:Order minimum not met", OrderChange, Rejected),
            ("EOrder:Cost minimum not met", OrderChange, Rejected),
            ("EOrder:Tick size check failed", OrderChange, Rejected),
            (
                "EOrder:Invalid price:XXBTZEUR price can only be specified up to 1 decimals",
                OrderChange,
                Rejected,
            ),
            ("EOrder:Orders limit exceeded", OrderChange, Rejected),
            ("EAPI:Invalid key", Read, Rejected),
            ("EAPI:Invalid signature", Read, Rejected),
            ("EGeneral:Permission denied", Read, Rejected),
            ("EQuery:Unknown asset pair", Read, Rejected),
            ("EOrder:Unknown order", OrderChange, Rejected),
            ("EService:Market in cancel_only mode", OrderChange, Rejected),
            ("EAPI:Invalid nonce", Read, Retryable),
            ("EAPI:Invalid nonce", OrderChange, Retryable),
            ("EAPI:Rate limit exceeded", Read, RateLimited),
            ("EGeneral:Too many requests", Read, RateLimited),
            ("EService:Throttled: 1700000000", Read, RateLimited),
            ("EOrder:Rate limit exceeded", OrderChange, RateLimited),
            ("EOrder:Domain rate limit exceeded", OrderChange, RateLimited),
            ("EGeneral:Temporary lockout", Read, RateLimited),
            ("EService:Unavailable", Read, Retryable),
            ("EService:Unavailable", OrderChange, Unknown),
            ("EService:Busy", Read, Retryable),
            ("EService:Busy", OrderChange, Unknown),
            ("EGeneral:Internal error", OrderChange, Unknown),
            ("EService:Deadline elapsed", OrderChange, Unknown),
            ("ESomething:never seen", Read, Rejected),
            ("ESomething:never seen", OrderChange, Unknown),
            ("ESomething:invalid thing", OrderChange, Rejected),
        ];
        for (err, kind, want) in table {
            let got = classify(&[(*err).to_owned()], *kind);
            assert_eq!(class(&got), *want, "{err} as {kind:?} → {got:?}");
            assert!(got.to_string().contains(err), "message keeps Kraken's text: {got}");
        }
    }

    #[test]
    fn rejection_wins_over_ambiguity_and_warnings_are_ignored() {
        let errs = vec![
            "WGeneral:Something".to_owned(),
            "EService:Busy".into(),
            "EOrder:Insufficient funds".into(),
        ];
        assert!(matches!(classify(&errs, OrderChange), ExchangeError::Rejected(_)));
        let only_warn = vec!["WGeneral:Danger".to_owned()];
        assert!(matches!(classify(&only_warn, Read), ExchangeError::Rejected(_)));
    }

    #[test]
    fn http_status_classes() {
        assert!(matches!(
            classify_http_status(502, OrderChange),
            ExchangeError::Unknown(_)
        ));
        assert!(matches!(classify_http_status(503, Read), ExchangeError::Retryable(_)));
        assert!(matches!(
            classify_http_status(429, OrderChange),
            ExchangeError::RateLimited(_)
        ));
        assert!(matches!(classify_http_status(403, Read), ExchangeError::Rejected(_)));
        assert!(matches!(
            classify_malformed("<html>", OrderChange),
            ExchangeError::Unknown(_)
        ));
        assert!(matches!(
            classify_malformed("<html>", Read),
            ExchangeError::Retryable(_)
        ));
    }
}
