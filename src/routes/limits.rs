//! Per-token rate limits (`api.rate_limit`): `GET` requests count as reads, every other method
//! as control, each against its own per-minute quota keyed by the token's name. A request over
//! the limit is answered 429 with `Retry-After` before any handler runs, so it changes nothing; a
//! refused control request is recorded in `api_audit_log` as `rate_limited`. Requests without a
//! known token are not counted (they are refused 401 by the handler), nor are `/healthz`,
//! `/readyz` and `/metrics`.

use super::auth::TokenTable;
use super::error::ApiError;
use super::state::AppState;
use crate::settings::{ApiGuardSettings, RateLimitSettings};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Paths that are never limited (probes and scrapes).
const UNLIMITED_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The limiters of one server.
pub struct RateLimits {
    tokens: Arc<TokenTable>,
    reads: Option<DefaultKeyedRateLimiter<String>>,
    control: Option<DefaultKeyedRateLimiter<String>>,
    guards: ApiGuardSettings,
    /// Failed authentications per client address in the last minute.
    auth_failures: parking_lot::Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
    /// Open event streams per token name.
    streams: Arc<parking_lot::Mutex<HashMap<String, u32>>>,
}

const AUTH_WINDOW: Duration = Duration::from_secs(60);

/// Statuses of a refused request that are audited for control routes.
const AUDITED_REFUSALS: [u16; 8] = [400, 401, 403, 409, 413, 415, 422, 429];

tokio::task_local! {
    /// The request being served: its id and whether a handler audited it.
    static REQUEST: RequestCtx;
}

#[derive(Clone)]
struct RequestCtx {
    id: String,
    audited: Arc<AtomicBool>,
}

/// Marks the current request as audited and returns its id (`None` outside a request).
pub fn mark_audited() -> Option<String> {
    REQUEST
        .try_with(|c| {
            c.audited.store(true, Ordering::SeqCst);
            c.id.clone()
        })
        .ok()
}

/// The id of a request: a client's `X-Request-Id` (printable ASCII, up to 64 characters) or a
/// new UUID.
fn request_id_of(req: &ServiceRequest) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// One open event stream of a token; the count drops with it.
pub struct StreamSlot {
    name: String,
    streams: Arc<parking_lot::Mutex<HashMap<String, u32>>>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut m = self.streams.lock();
        if let Some(n) = m.get_mut(&self.name) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.name);
            }
        }
    }
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
            guards: ApiGuardSettings::default(),
            auth_failures: parking_lot::Mutex::default(),
            streams: Arc::default(),
        }
    }

    /// Sets the failed-authentication throttle and the event-stream cap (`api.guards`).
    #[must_use]
    pub fn with_guards(mut self, guards: ApiGuardSettings) -> Self {
        self.guards = guards;
        self
    }

    /// `Err(wait)` while `ip` has used its failed-authentication quota.
    pub fn auth_blocked(&self, ip: IpAddr) -> Result<(), Duration> {
        let max = self.guards.auth_failures_per_minute;
        if max == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut m = self.auth_failures.lock();
        let Some(q) = m.get_mut(&ip) else { return Ok(()) };
        while q.front().is_some_and(|t| now.duration_since(*t) >= AUTH_WINDOW) {
            q.pop_front();
        }
        if q.is_empty() {
            m.remove(&ip);
            return Ok(());
        }
        if q.len() >= max as usize {
            let oldest = q.front().copied().unwrap_or(now);
            return Err(AUTH_WINDOW.saturating_sub(now.duration_since(oldest)));
        }
        Ok(())
    }

    /// Counts a failed authentication from `ip`.
    pub fn record_auth_failure(&self, ip: IpAddr) {
        if self.guards.auth_failures_per_minute == 0 {
            return;
        }
        let mut m = self.auth_failures.lock();
        // Bounded memory: a flood of addresses forgets the oldest entries first.
        if m.len() >= 100_000 && !m.contains_key(&ip) {
            let now = Instant::now();
            m.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < AUTH_WINDOW));
        }
        let q = m.entry(ip).or_default();
        q.push_back(Instant::now());
        while q.len() > self.guards.auth_failures_per_minute as usize {
            q.pop_front();
        }
    }

    /// A slot for one more event stream of `token_name`, or 429 over the cap.
    ///
    /// # Errors
    /// 429 `too_many_streams` when the token already holds `max_event_streams_per_token`.
    pub fn event_stream_slot(&self, token_name: &str) -> Result<StreamSlot, ApiError> {
        let max = self.guards.max_event_streams_per_token;
        let mut m = self.streams.lock();
        let n = m.entry(token_name.to_owned()).or_insert(0);
        if max != 0 && *n >= max {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                format!(
                    "token {token_name:?} already holds {max} event streams (api.guards.max_event_streams_per_token)"
                ),
            ));
        }
        *n += 1;
        Ok(StreamSlot {
            name: token_name.to_owned(),
            streams: Arc::clone(&self.streams),
        })
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

/// The middleware (`actix_web::middleware::from_fn`): gives every request an id (echoed as
/// `X-Request-Id` and written with its audit record), throttles failed authentication per client
/// address, applies the per-token rate limits, and audits every refused control request
/// (400/401/403/409/413/415/422/429) that no handler audited.
///
/// # Errors
/// Whatever the wrapped service returns.
pub async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    let ctx = RequestCtx {
        id: request_id_of(&req),
        audited: Arc::new(AtomicBool::new(false)),
    };
    let id = ctx.id.clone();
    let res = REQUEST.scope(ctx, guarded(req, next)).await;
    res.map(|mut r| {
        if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&id) {
            r.headers_mut()
                .insert(actix_web::http::header::HeaderName::from_static("x-request-id"), v);
        }
        r
    })
}

async fn guarded<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let limits = req.app_data::<web::Data<RateLimits>>().cloned();
    let Some(limits) = limits else {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    };
    if UNLIMITED_PATHS.contains(&req.path()) {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    }
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let class = RequestClass::of(req.method());
    let method = req.method().as_str().to_owned();
    let route = req.match_pattern().unwrap_or_else(|| req.path().to_owned());
    let ip = req.peer_addr().map(|a| a.ip());
    let caller = limits.caller(&req);
    let anonymous = || super::auth::Caller {
        name: "(unauthenticated)".to_owned(),
        role: crate::settings::Role::Viewer,
    };

    if let Some(ip) = ip {
        if let Err(wait) = limits.auth_blocked(ip) {
            let secs = retry_after_secs(wait);
            tracing::warn!(%ip, route = %route, retry_after_secs = secs, "failed authentication throttled");
            metrics::counter!("triplegain_http_auth_throttled_total").increment(1);
            if class == RequestClass::Control {
                if let Some(state) = &state {
                    let who = caller.clone().unwrap_or_else(anonymous);
                    state.audit(&who, &method, &route, None, 429, "auth_throttled").await;
                }
            }
            let msg = format!("too many failed authentications from this address; retry in {secs} s");
            return Ok(into_right(req, "auth_throttled", msg, secs));
        }
    }

    if let Some(caller) = &caller {
        if let Err(wait) = limits.check(&caller.name, class) {
            let secs = retry_after_secs(wait);
            let kind = match class {
                RequestClass::Read => "reads",
                RequestClass::Control => "control",
            };
            tracing::warn!(token = %caller.name, route = %route, class = kind, retry_after_secs = secs, "rate limit exceeded");
            metrics::counter!("triplegain_http_rate_limited_total", "token" => caller.name.clone(), "class" => kind)
                .increment(1);
            if class == RequestClass::Control {
                if let Some(state) = &state {
                    state.audit(caller, &method, &route, None, 429, "rate_limited").await;
                }
            }
            let msg = format!(
                "rate limit for {kind} exceeded for token {:?}; retry in {secs} s",
                caller.name
            );
            return Ok(into_right(req, "rate_limited", msg, secs));
        }
    }

    let res = next.call(req).await?;
    let status = res.status().as_u16();
    if status == 401 {
        if let Some(ip) = ip {
            limits.record_auth_failure(ip);
        }
    }
    let audited = REQUEST.try_with(|c| c.audited.load(Ordering::SeqCst)).unwrap_or(true);
    if class == RequestClass::Control && AUDITED_REFUSALS.contains(&status) && !audited {
        if let Some(state) = &state {
            let who = caller.unwrap_or_else(anonymous);
            let result = match status {
                400 => "bad_request",
                401 => "unauthorized",
                403 => "forbidden",
                409 => "conflict",
                413 => "payload_too_large",
                415 => "unsupported_media_type",
                422 => "validation_failed",
                _ => "too_many_requests",
            };
            state.audit(&who, &method, &route, None, status, result).await;
        }
    }
    Ok(res.map_into_left_body())
}

fn into_right<B>(req: ServiceRequest, code: &str, message: String, secs: u64) -> ServiceResponse<EitherBody<B>> {
    let mut response = ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message).error_response();
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&secs.to_string()) {
        response
            .headers_mut()
            .insert(actix_web::http::header::RETRY_AFTER, value);
    }
    req.into_response(response).map_into_right_body()
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
