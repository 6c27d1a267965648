//! Per-token rate limits (`api.rate_limit`): `GET` requests count as reads, every other method
//! as control, each against its own per-minute quota keyed by the token's name. A request over
//! the limit is answered 429 with `Retry-After` before any handler runs, so it changes nothing; a
//! refused control request is recorded in `api_audit_log` as `rate_limited`. Requests without a
//! known token are not counted (they are refused 401 by the handler), nor are `/healthz`,
//! `/readyz` and `/metrics`.

use super::auth::TokenTable;
use super::error::ApiError;
use crate::settings::RateLimitSettings;
use crate::startup::AppState;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// Paths that are never limited (probes and scrapes).
const UNLIMITED_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The limiters of one server.
pub struct RateLimits {
    tokens: Arc<TokenTable>,
    reads: Option<DefaultKeyedRateLimiter<String>>,
    control: Option<DefaultKeyedRateLimiter<String>>,
}

fn limiter(per_minute: u32) -> Option<DefaultKeyedRateLimiter<String>> {
    NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

/// The request class a method counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestClass {
    Read,
    Control,
}

impl RequestClass {
    pub fn of(method: &Method) -> Self {
        if method == Method::GET {
            Self::Read
        } else {
            Self::Control
        }
    }
}

impl RateLimits {
    pub fn new(settings: RateLimitSettings, tokens: Arc<TokenTable>) -> Self {
        Self {
            tokens,
            reads: limiter(settings.reads_per_minute),
            control: limiter(settings.control_per_minute),
        }
    }

    /// `Err(wait)` when `token_name` has used its quota of `class`; `wait` is how long until the
    /// next request of that class is allowed.
    pub fn check(&self, token_name: &str, class: RequestClass) -> Result<(), Duration> {
        let limiter = match class {
            RequestClass::Read => &self.reads,
            RequestClass::Control => &self.control,
        };
        let Some(limiter) = limiter else { return Ok(()) };
        // Keyed by name: two tokens sharing a name share a quota.
        let key = token_name.to_owned();
        limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }

    fn caller(&self, req: &ServiceRequest) -> Option<super::auth::Caller> {
        let header = req.headers().get(actix_web::http::header::AUTHORIZATION)?;
        let token = header.to_str().ok()?.strip_prefix("Bearer ")?.trim();
        if token.is_empty() {
            return None;
        }
        self.tokens.identify(token)
    }
}

/// Whole seconds to wait, at least 1 (the header has second resolution).
fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// The middleware (`actix_web::middleware::from_fn`).
///
/// # Errors
/// Whatever the wrapped service returns.
pub async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    let limits = req.app_data::<web::Data<RateLimits>>().cloned();
    let Some(limits) = limits else {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    };
    if UNLIMITED_PATHS.contains(&req.path()) {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    }
    let Some(caller) = limits.caller(&req) else {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    };
    let class = RequestClass::of(req.method());
    let Err(wait) = limits.check(&caller.name, class) else {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    };
    let secs = retry_after_secs(wait);
    let kind = match class {
        RequestClass::Read => "reads",
        RequestClass::Control => "control",
    };
    let route = req.match_pattern().unwrap_or_else(|| req.path().to_owned());
    tracing::warn!(token = %caller.name, route = %route, class = kind, retry_after_secs = secs, "rate limit exceeded");
    metrics::counter!("triplegain_http_rate_limited_total", "token" => caller.name.clone(), "class" => kind)
        .increment(1);
    if class == RequestClass::Control {
        if let Some(state) = req.app_data::<web::Data<AppState>>() {
            state
                .audit(&caller, req.method().as_str(), &route, None, 429, "rate_limited")
                .await;
        }
    }
    let error = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!(
            "rate limit for {kind} exceeded for token {:?}; retry in {secs} s",
            caller.name
        ),
    );
    let mut response = error.error_response();
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&secs.to_string()) {
        response
            .headers_mut()
            .insert(actix_web::http::header::RETRY_AFTER, value);
    }
    Ok(req.into_response(response).map_into_right_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(5_900)), 6);
        assert_eq!(retry_after_secs(Duration::from_secs(6)), 6);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn quota_is_per_name_and_class_and_zero_is_unlimited() {
        let limits = RateLimits::new(
            RateLimitSettings {
                reads_per_minute: 2,
                control_per_minute: 0,
            },
            Arc::new(TokenTable::new(&[])),
        );
        assert!(limits.check("a", RequestClass::Read).is_ok());
        assert!(limits.check("a", RequestClass::Read).is_ok());
        let wait = limits.check("a", RequestClass::Read).unwrap_err();
        assert!(
            wait > Duration::from_secs(20) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(
            limits.check("b", RequestClass::Read).is_ok(),
            "another token has its own quota"
        );
        for _ in 0..100 {
            assert!(limits.check("a", RequestClass::Control).is_ok(), "0 = unlimited");
        }
    }
}
