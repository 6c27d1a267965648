//! The HTTP exchange shared by the model clients: one deadline per call, bounded retries with
//! exponential backoff on 429/529/5xx only, and status-to-[`ModelError`] mapping.

use reqwest::header::HeaderMap;
use std::time::Duration;
use tokio::time::Instant;
use triplegain_actors::ports::ModelError;

/// Bounded retries on rate limiting and server errors. The whole call, retries included, must
/// finish within the request's `timeout_ms`; a backoff that would pass it is not slept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff; doubled per retry.
    pub base_delay: Duration,
    /// Upper bound of one backoff (also caps a provider's `Retry-After`).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    fn backoff(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self.base_delay.saturating_mul(2u32.saturating_pow(retry));
        retry_after.unwrap_or(exp).min(self.max_delay)
    }
}

/// Sends `body` to `url` and returns the parsed JSON body of a 2xx answer.
pub(crate) async fn post_json(
    client: &reqwest::Client,
    provider: &str,
    url: &str,
    headers: HeaderMap,
    body: &serde_json::Value,
    timeout_ms: u64,
    policy: RetryPolicy,
) -> Result<serde_json::Value, ModelError> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    let mut retry = 0u32;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(ModelError::Timeout(timeout_ms));
        }
        let sent = client
            .post(url)
            .headers(headers.clone())
            .json(body)
            .timeout(remaining)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Err(ModelError::Timeout(timeout_ms)),
            Err(e) => {
                return Err(ModelError::Provider(format!(
                    "{provider}: transport error: {}",
                    transport_kind(&e)
                )))
            }
        };
        let status = response.status();
        let retry_after = parse_retry_after(response.headers());
        if status.is_success() {
            let text = match response.text().await {
                Ok(t) => t,
                Err(e) if e.is_timeout() => return Err(ModelError::Timeout(timeout_ms)),
                Err(e) => {
                    return Err(ModelError::Provider(format!(
                        "{provider}: reading the response failed: {}",
                        transport_kind(&e)
                    )))
                }
            };
            return serde_json::from_str(&text)
                .map_err(|e| ModelError::Provider(format!("{provider}: response body is not JSON: {e}")));
        }
        let detail = snippet(&response.text().await.unwrap_or_default());
        let code = status.as_u16();
        let err = match code {
            429 | 529 => ModelError::RateLimited(format!("{provider}: http {code}: {detail}")),
            500..=599 => ModelError::Provider(format!("{provider}: http {code}: {detail}")),
            401 | 403 => {
                return Err(ModelError::NotConfigured(format!(
                    "{provider}: authentication failed (http {code})"
                )))
            }
            _ => {
                return Err(ModelError::Provider(format!(
                    "{provider}: request rejected (http {code}): {detail}"
                )))
            }
        };
        if retry >= policy.max_retries {
            return Err(err);
        }
        let wait = policy.backoff(retry, retry_after);
        if Instant::now() + wait >= deadline {
            return Err(err);
        }
        tracing::warn!(
            provider,
            status = code,
            retry = retry + 1,
            wait_ms = wait.as_millis() as u64,
            "model call retried"
        );
        tokio::time::sleep(wait).await;
        retry += 1;
    }
}

/// A short description of a transport error that cannot carry headers (and so no key).
fn transport_kind(e: &reqwest::Error) -> &'static str {
    if e.is_connect() {
        "connection failed"
    } else if e.is_request() {
        "request failed"
    } else if e.is_body() || e.is_decode() {
        "body error"
    } else {
        "http error"
    }
}

fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let secs: f64 = v.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// The first 200 characters of an error body, with anything that looks like a key removed.
pub(crate) fn snippet(body: &str) -> String {
    let cut: String = body.chars().take(200).collect();
    redact(&cut)
}

/// Replaces `sk-…`, `Bearer …` and any run of 32+ key-like characters with `[redacted]`.
pub(crate) fn redact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, word) in s.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let keyish = word
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .count();
        if word.starts_with("sk-") || keyish >= 32 {
            out.push_str("[redacted]");
        } else {
            out.push_str(word);
        }
    }
    out.replace("Bearer [redacted]", "[redacted]")
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
    fn redacts_key_like_words() {
        let s = redact("invalid key sk-abc provided: Bearer abcdefghijklmnopqrstuvwxyz0123456789ABCD ok");
        assert!(!s.contains("sk-abc"));
        assert!(!s.contains("abcdefghijklmnopqrstuvwxyz0123456789ABCD"));
        assert!(s.contains("invalid key"));
        assert!(s.ends_with("ok"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
        };
        assert_eq!(p.backoff(0, None), Duration::from_millis(100));
        assert_eq!(p.backoff(1, None), Duration::from_millis(200));
        assert_eq!(p.backoff(2, None), Duration::from_millis(350));
        assert_eq!(p.backoff(0, Some(Duration::from_secs(10))), Duration::from_millis(350));
    }
}
