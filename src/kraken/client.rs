//! The Kraken REST client: configuration, credentials, the signed private-request path with
//! nonces, rate counters and retries, and the typed endpoints.

use super::assets::{format_decimal, parse_decimal};
use super::errors::{
    classify, classify_http_status, classify_malformed, classify_transport, has_error, CallKind, INVALID_NONCE_PREFIX,
    LOCKOUT_PREFIX,
};
use super::limits::{rest_cost, CallBudget, Lane, RateGate, Tier, TradingLimiter};
use super::sign::{sign_with_key, FormBody, NonceSource};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use parking_lot::Mutex;
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use triplegain_actors::domain::{OrderType, Side, Timeframe};
use triplegain_actors::ports::ExchangeError;

mod endpoints;
pub use endpoints::{parse_balance, parse_balance_ex, parse_ohlc, parse_orders, parse_ticker};

/// Kraken's production REST endpoint.
pub const DEFAULT_BASE_URL: &str = "https://api.kraken.com";

/// Largest `CancelAllOrdersAfter` timeout Kraken accepts (exclusive).
pub const MAX_DEAD_MANS_SWITCH_SECS: u32 = 86_400;

/// API key and secret of one Kraken key. `Debug` never prints them.
#[derive(Clone)]
pub struct KrakenCredentials {
    pub api_key: SecretString,
    /// Base64 secret as shown by Kraken.
    pub api_secret: SecretString,
}

impl KrakenCredentials {
    pub fn new(api_key: impl Into<String>, api_secret: impl Into<String>) -> Self {
        Self {
            api_key: SecretString::from(api_key.into()),
            api_secret: SecretString::from(api_secret.into()),
        }
    }
}

impl fmt::Debug for KrakenCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KrakenCredentials")
            .field("api_key", &"[REDACTED]")
            .field("api_secret", &"[REDACTED]")
            .finish()
    }
}

/// Client settings; `Default` gives production values for a starter-tier key.
#[derive(Debug, Clone, PartialEq)]
pub struct KrakenConfig {
    /// Scheme, host and optional port, without `/0/...` (e.g. `https://api.kraken.com`).
    pub base_url: String,
    /// Whole-request timeout.
    pub timeout: Duration,
    pub tier: Tier,
    /// Longest the client waits for a local rate counter to decay before returning `RateLimited`.
    pub max_rate_wait: Duration,
    /// Total attempts for reads on retryable failures (1 = no retry). Order changes are never
    /// retried, except once with a fresh nonce after `EAPI:Invalid nonce`.
    pub read_attempts: u32,
    /// First back-off between read attempts; doubled on each further attempt.
    pub retry_backoff: Duration,
    /// How long private calls stay paused after `EGeneral:Temporary lockout`.
    pub lockout_pause: Duration,
    pub user_agent: String,
    /// Budget of private calls (every attempt counts) per `budget_window`.
    pub calls_per_minute: u32,
    /// Budget of order calls (`AddOrder`, `CancelOrder`, ...) per `budget_window`.
    pub order_calls_per_minute: u32,
    /// The window of both budgets (a minute; shorter only in tests).
    pub budget_window: Duration,
    /// REST counter points only the dead man's switch refresh may use (0 = no reserve).
    pub reserved_rest_points: f64,
    /// Private calls per `budget_window` only the dead man's switch refresh may use.
    pub reserved_calls: u32,
    /// Longest the switch refresh waits for its lane (a refusal must never outlast the switch).
    pub reserved_max_wait: Duration,
    /// Start the REST counter charged (maximum less the reserve) instead of empty, as Kraken's
    /// counter may still be after a restart.
    pub start_charged: bool,
}

impl Default for KrakenConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            timeout: Duration::from_secs(10),
            tier: Tier::Starter,
            max_rate_wait: Duration::from_secs(10),
            read_attempts: 3,
            retry_backoff: Duration::from_secs(1),
            lockout_pause: Duration::from_secs(15 * 60),
            user_agent: concat!("triplegain/", env!("CARGO_PKG_VERSION")).to_owned(),
            calls_per_minute: 60,
            order_calls_per_minute: 30,
            budget_window: Duration::from_secs(60),
            // The library default keeps the whole budget in one lane; `serve` (settings
            // `kraken.reserved_*`, `kraken.start_charged`) reserves a share for the switch.
            reserved_rest_points: 0.0,
            reserved_calls: 0,
            reserved_max_wait: Duration::from_secs(30),
            start_charged: false,
        }
    }
}

/// The client could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KrakenSetupError {
    #[error("Kraken API secret is not valid base64")]
    SecretNotBase64,
    #[error("Kraken base URL {0:?} must start with http:// or https://")]
    BadBaseUrl(String),
    #[error("HTTP client could not be built: {0}")]
    Http(String),
}

struct Keys {
    api_key: SecretString,
    secret: SecretBox<Vec<u8>>,
}

struct Inner {
    http: reqwest::Client,
    base_url: String,
    config: KrakenConfig,
    keys: Option<Keys>,
    nonces: NonceSource,
    /// Serialises "take nonce → sign → send" so requests reach Kraken in nonce order.
    send_lock: tokio::sync::Mutex<()>,
    rest: RateGate,
    trading: TradingLimiter,
    calls: CallBudget,
    order_calls: CallBudget,
    lockout_until: Mutex<Option<Instant>>,
}

/// Kraken REST client for one API key (or none, for public data). Cheap to clone.
#[derive(Clone)]
pub struct KrakenClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for KrakenClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KrakenClient")
            .field("base_url", &self.inner.base_url)
            .field("tier", &self.inner.config.tier)
            .field("authenticated", &self.inner.keys.is_some())
            .finish()
    }
}

// ---------------------------------------------------------------- DTOs

/// One entry of `AssetPairs` (the fields we use).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AssetPair {
    pub altname: String,
    #[serde(default)]
    pub wsname: Option<String>,
    pub base: String,
    pub quote: String,
    pub pair_decimals: u32,
    pub lot_decimals: u32,
    #[serde(default)]
    pub cost_decimals: Option<u32>,
    #[serde(default, deserialize_with = "de_opt_decimal")]
    pub tick_size: Option<Decimal>,
    #[serde(default, deserialize_with = "de_opt_decimal")]
    pub ordermin: Option<Decimal>,
    #[serde(default, deserialize_with = "de_opt_decimal")]
    pub costmin: Option<Decimal>,
    #[serde(default)]
    pub leverage_buy: Vec<u32>,
    #[serde(default)]
    pub leverage_sell: Vec<u32>,
    #[serde(default)]
    pub status: Option<String>,
}

/// Last trade, best bid and best ask of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticker {
    pub last: Decimal,
    pub bid: Decimal,
    pub ask: Decimal,
}

/// `descr` of an order.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct OrderDescription {
    #[serde(default)]
    pub pair: String,
    #[serde(default, rename = "type")]
    pub side: String,
    #[serde(default)]
    pub ordertype: String,
    #[serde(default, deserialize_with = "de_opt_decimal")]
    pub price: Option<Decimal>,
    #[serde(default, deserialize_with = "de_opt_decimal")]
    pub price2: Option<Decimal>,
    #[serde(default)]
    pub leverage: Option<String>,
    #[serde(default)]
    pub order: String,
}

/// An order as returned by OpenOrders / ClosedOrders / QueryOrders.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct KrakenOrder {
    #[serde(default)]
    pub cl_ord_id: Option<String>,
    #[serde(default)]
    pub userref: Option<Value>,
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub opentm: Option<f64>,
    #[serde(default)]
    pub closetm: Option<f64>,
    #[serde(default)]
    pub descr: OrderDescription,
    #[serde(deserialize_with = "de_decimal")]
    pub vol: Decimal,
    #[serde(default, deserialize_with = "de_decimal_or_zero")]
    pub vol_exec: Decimal,
    #[serde(default, deserialize_with = "de_decimal_or_zero")]
    pub cost: Decimal,
    #[serde(default, deserialize_with = "de_decimal_or_zero")]
    pub fee: Decimal,
    /// Average fill price.
    #[serde(default, deserialize_with = "de_opt_decimal")]
    pub price: Option<Decimal>,
    #[serde(default)]
    pub misc: Option<String>,
    #[serde(default)]
    pub oflags: Option<String>,
}

impl KrakenOrder {
    pub fn opened_at(&self) -> Option<DateTime<Utc>> {
        self.opentm.and_then(unix_secs_to_utc)
    }

    pub fn closed_at(&self) -> Option<DateTime<Utc>> {
        self.closetm.and_then(unix_secs_to_utc)
    }
}

fn unix_secs_to_utc(secs: f64) -> Option<DateTime<Utc>> {
    if !secs.is_finite() || secs <= 0.0 {
        return None;
    }
    let whole = secs.trunc() as i64;
    let nanos = ((secs - secs.trunc()) * 1e9).round().clamp(0.0, 999_999_999.0) as u32;
    Utc.timestamp_opt(whole, nanos).single()
}

/// Parameters of `AddOrder`, in Kraken's terms (pair name, already quantised decimals).
#[derive(Debug, Clone, PartialEq)]
pub struct AddOrderParams {
    /// Kraken pair id or altname.
    pub pair: String,
    pub side: Side,
    pub order_type: OrderType,
    pub volume: Decimal,
    /// Limit price, or trigger price of stop-loss / take-profit types.
    pub price: Option<Decimal>,
    /// Limit price of `*-limit` types.
    pub price2: Option<Decimal>,
    /// Sent only when greater than 1.
    pub leverage: Option<u32>,
    pub reduce_only: bool,
    pub post_only: bool,
    pub validate: bool,
    pub cl_ord_id: Option<String>,
}

impl AddOrderParams {
    /// The form fields (without the nonce), decimals without exponents.
    pub fn to_form(&self) -> FormBody {
        let mut f = FormBody::new();
        f.push("ordertype", self.order_type.as_str())
            .push("type", self.side.as_str())
            .push("pair", self.pair.clone())
            .push("volume", format_decimal(self.volume));
        if let Some(p) = self.price {
            f.push("price", format_decimal(p));
        }
        if let Some(p) = self.price2 {
            f.push("price2", format_decimal(p));
        }
        if let Some(l) = self.leverage.filter(|l| *l > 1) {
            f.push("leverage", l.to_string());
        }
        if self.reduce_only {
            f.push("reduce_only", "true");
        }
        if self.post_only {
            f.push("oflags", "post");
        }
        if let Some(id) = &self.cl_ord_id {
            f.push("cl_ord_id", id.clone());
        }
        if self.validate {
            f.push("validate", "true");
        }
        f
    }
}

/// Result of `AddOrder`: txids (empty for `validate`) and Kraken's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddOrderResult {
    pub txids: Vec<String>,
    pub description: String,
}

/// Which order to cancel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelTarget {
    Txid(String),
    ClOrdId(String),
}

impl CancelTarget {
    fn id(&self) -> &str {
        match self {
            Self::Txid(s) | Self::ClOrdId(s) => s,
        }
    }
}

/// Result of `CancelOrder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelResult {
    pub count: u64,
    pub pending: bool,
}

/// Result of `CancelAllOrdersAfter` (RFC 3339 texts; `trigger_time` is `0` when disarmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadMansSwitchStatus {
    pub current_time: String,
    pub trigger_time: String,
}

fn de_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    let v = Value::deserialize(d)?;
    parse_decimal(&v).ok_or_else(|| serde::de::Error::custom(format!("not a decimal: {v}")))
}

fn de_decimal_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    Ok(de_opt_decimal(d)?.unwrap_or(Decimal::ZERO))
}

fn de_opt_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(parse_decimal(&v))
}

/// Kraken OHLC interval (minutes) of a timeframe.
pub fn interval_minutes(tf: Timeframe) -> u32 {
    match tf {
        Timeframe::M1 => 1,
        Timeframe::M5 => 5,
        Timeframe::M15 => 15,
        Timeframe::H1 => 60,
        Timeframe::H4 => 240,
        Timeframe::D1 => 1440,
    }
}

// ---------------------------------------------------------------- client

impl KrakenClient {
    /// Builds a client; `credentials` may be `None` for public data only.
    ///
    /// # Errors
    /// [`KrakenSetupError`] for a secret that is not base64, a malformed base URL, or an HTTP
    /// client that cannot be built.
    pub fn new(config: KrakenConfig, credentials: Option<KrakenCredentials>) -> Result<Self, KrakenSetupError> {
        let base_url = config.base_url.trim().trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(KrakenSetupError::BadBaseUrl(config.base_url.clone()));
        }
        let keys = match credentials {
            None => None,
            Some(c) => {
                let secret = B64
                    .decode(c.api_secret.expose_secret().trim())
                    .map_err(|_| KrakenSetupError::SecretNotBase64)?;
                Some(Keys {
                    api_key: c.api_key,
                    secret: SecretBox::new(Box::new(secret)),
                })
            }
        };
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(config.user_agent.clone())
            .build()
            .map_err(|e| KrakenSetupError::Http(e.to_string()))?;
        let rest = RateGate::new("Kraken REST", config.tier.rest_limits(), config.max_rate_wait)
            .with_reserve(config.reserved_rest_points, config.reserved_max_wait);
        let rest = if config.start_charged {
            rest.starting_charged()
        } else {
            rest
        };
        let trading = TradingLimiter::new(config.tier.trading_limits(), config.max_rate_wait);
        let calls = CallBudget::new(
            "private call",
            config.calls_per_minute,
            config.budget_window,
            config.max_rate_wait,
        )
        .with_reserve(config.reserved_calls, config.reserved_max_wait);
        let order_calls = CallBudget::new(
            "order call",
            config.order_calls_per_minute,
            config.budget_window,
            config.max_rate_wait,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base_url,
                config,
                keys,
                nonces: NonceSource::new(),
                send_lock: tokio::sync::Mutex::new(()),
                rest,
                trading,
                calls,
                order_calls,
                lockout_until: Mutex::new(None),
            }),
        })
    }

    pub fn config(&self) -> &KrakenConfig {
        &self.inner.config
    }

    pub fn has_credentials(&self) -> bool {
        self.inner.keys.is_some()
    }

    /// The per-pair trading counters (also used by callers that want to inspect them).
    pub fn trading_limiter(&self) -> &TradingLimiter {
        &self.inner.trading
    }

    /// The per-key REST call counter.
    pub fn rest_gate(&self) -> &RateGate {
        &self.inner.rest
    }

    /// The private-call budget (every attempt counts).
    pub fn call_budget(&self) -> &CallBudget {
        &self.inner.calls
    }

    /// The order-call budget.
    pub fn order_call_budget(&self) -> &CallBudget {
        &self.inner.order_calls
    }

    // ------------------------------------------------------------ transport

    /// `GET /0/public/<method>`; reads are retried on retryable failures.
    ///
    /// # Errors
    /// Classified [`ExchangeError`].
    pub async fn public(&self, method: &str, query: &FormBody) -> Result<Value, ExchangeError> {
        let qs = query.encode();
        let url = if qs.is_empty() {
            format!("{}/0/public/{method}", self.inner.base_url)
        } else {
            format!("{}/0/public/{method}?{qs}", self.inner.base_url)
        };
        let mut attempt = 1;
        loop {
            let res = match self.inner.http.get(&url).send().await {
                Ok(resp) => read_envelope(resp, CallKind::Read).await,
                Err(e) => Err(classify_transport(&e, CallKind::Read)),
            };
            match res {
                Err(e) if e.is_retryable() && attempt < self.inner.config.read_attempts.max(1) => {
                    tracing::warn!(method, attempt, error = %e, "Kraken public call failed, retrying");
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// `POST /0/private/<method>` with a fresh nonce and signature on every attempt.
    ///
    /// Reads are retried on retryable failures up to `read_attempts`; order changes never are,
    /// except once with a fresh nonce after `EAPI:Invalid nonce` (refused before execution).
    ///
    /// # Errors
    /// Classified [`ExchangeError`]; `Rejected` without credentials.
    pub async fn private(&self, method: &str, params: &FormBody, kind: CallKind) -> Result<Value, ExchangeError> {
        self.private_in(method, params, kind, Lane::Normal).await
    }

    /// As [`Self::private`], charging the budgets in `lane` (the reserved lane is the dead man's
    /// switch's: normal calls never take its share, and it waits up to `reserved_max_wait`).
    ///
    /// # Errors
    /// As [`Self::private`].
    pub async fn private_in(
        &self,
        method: &str,
        params: &FormBody,
        kind: CallKind,
        lane: Lane,
    ) -> Result<Value, ExchangeError> {
        let max_wait = match lane {
            Lane::Normal => self.inner.config.max_rate_wait,
            Lane::Reserved => self.inner.config.reserved_max_wait.max(self.inner.config.max_rate_wait),
        };
        let Some(keys) = self.inner.keys.as_ref() else {
            return Err(ExchangeError::Rejected(format!(
                "Kraken {method} needs API credentials"
            )));
        };
        let mut attempt = 1;
        let mut nonce_retry_used = false;
        loop {
            self.check_lockout()?;
            // A budget counts calls sent: a slot is given back when a later gate refuses the call.
            let order_slot = if kind == CallKind::OrderChange {
                Some(self.inner.order_calls.acquire().await?)
            } else {
                None
            };
            let refund_order = || {
                if let Some(slot) = order_slot {
                    self.inner.order_calls.refund(slot);
                }
            };
            let call_slot = match self.inner.calls.acquire_in(lane).await {
                Ok(slot) => slot,
                Err(e) => {
                    refund_order();
                    return Err(e);
                }
            };
            if let Err(e) = self.inner.rest.acquire_in(rest_cost(method), lane).await {
                self.inner.calls.refund(call_slot);
                refund_order();
                return Err(e);
            }
            let res = self.send_private(keys, method, params).await;
            let err = match res {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if let SendError::Kraken(errors) = &err {
                if has_error(errors, LOCKOUT_PREFIX) {
                    *self.inner.lockout_until.lock() = Instant::now().checked_add(self.inner.config.lockout_pause);
                    tracing::error!(method, ?errors, "Kraken temporary lockout: pausing private calls");
                }
                if has_error(errors, INVALID_NONCE_PREFIX) {
                    if nonce_retry_used {
                        return Err(ExchangeError::Rejected(format!(
                            "{} persisted after one retry with a fresh nonce",
                            errors.join("; ")
                        )));
                    }
                    nonce_retry_used = true;
                    tracing::warn!(method, "Kraken refused the nonce; retrying once with a fresh nonce");
                    continue;
                }
            }
            let classified = err.classify(kind);
            let mut wait = self.backoff(attempt);
            if let SendError::Kraken(errors) = &err {
                if REST_LIMIT_PREFIXES.iter().any(|p| has_error(errors, p)) {
                    // Our estimate was low (the key is shared or the tier is wrong): start over full.
                    self.inner.rest.saturate();
                    wait = wait.max(self.inner.rest.unit_decay());
                }
                if let Some(until) = throttled_wait(errors) {
                    wait = wait.max(until);
                }
            }
            let may_retry = kind == CallKind::Read
                && classified.is_retryable()
                && !matches!(&err, SendError::Kraken(e) if has_error(e, LOCKOUT_PREFIX))
                && attempt < self.inner.config.read_attempts.max(1)
                && (!matches!(classified, ExchangeError::RateLimited(_)) || wait <= max_wait);
            if !may_retry {
                return Err(classified);
            }
            tracing::warn!(method, attempt, error = %classified, wait_ms = wait.as_millis() as u64,
                "Kraken private read failed, retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.inner
            .config
            .retry_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(10))
    }

    fn check_lockout(&self) -> Result<(), ExchangeError> {
        let mut guard = self.inner.lockout_until.lock();
        match *guard {
            Some(until) if Instant::now() < until => Err(ExchangeError::RateLimited(format!(
                "EGeneral:Temporary lockout: private calls paused for {} more s",
                until.saturating_duration_since(Instant::now()).as_secs()
            ))),
            Some(_) => {
                *guard = None;
                Ok(())
            }
            None => Ok(()),
        }
    }

    async fn send_private(&self, keys: &Keys, method: &str, params: &FormBody) -> Result<Value, SendError> {
        let path = format!("/0/private/{method}");
        let url = format!("{}{path}", self.inner.base_url);
        let response = {
            let _in_order = self.inner.send_lock.lock().await;
            let nonce = self.inner.nonces.next();
            let rest = params.encode();
            let body = if rest.is_empty() {
                format!("nonce={nonce}")
            } else {
                format!("nonce={nonce}&{rest}")
            };
            let signature = sign_with_key(&path, nonce, body.as_bytes(), keys.secret.expose_secret());
            self.inner
                .http
                .post(&url)
                .header("API-Key", keys.api_key.expose_secret())
                .header("API-Sign", signature)
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .map_err(SendError::Transport)?
        };
        read_envelope_raw(response).await
    }
}

// ---------------------------------------------------------------- envelope

/// Kraken errors meaning the per-key REST counter is over its limit.
const REST_LIMIT_PREFIXES: &[&str] = &[
    "eapi:rate limit exceeded",
    "egeneral:too many requests",
    "eauth:rate limit exceeded",
];

/// Kraken errors meaning a pair's matching-engine counter is over its limit.
const ENGINE_LIMIT_PREFIXES: &[&str] = &["eorder:rate limit exceeded"];

/// How long `EService:Throttled: <unix ts>` asks us to wait.
fn throttled_wait(errors: &[String]) -> Option<Duration> {
    let e = errors
        .iter()
        .find(|e| e.to_ascii_lowercase().starts_with("eservice:throttled"))?;
    let ts: u64 = e.rsplit(':').next()?.trim().parse().ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(Duration::from_secs(ts.saturating_sub(now)))
}

/// Whether an error from an order change says the pair's engine counter is full.
fn is_engine_limit(e: &ExchangeError) -> bool {
    match e {
        ExchangeError::RateLimited(m) => {
            let m = m.to_ascii_lowercase();
            ENGINE_LIMIT_PREFIXES.iter().any(|p| m.contains(p))
        }
        _ => false,
    }
}

enum SendError {
    Transport(reqwest::Error),
    Http(u16),
    Malformed(String),
    Kraken(Vec<String>),
}

impl SendError {
    fn classify(&self, kind: CallKind) -> ExchangeError {
        match self {
            Self::Transport(e) => classify_transport(e, kind),
            Self::Http(s) => classify_http_status(*s, kind),
            Self::Malformed(d) => classify_malformed(d, kind),
            Self::Kraken(errors) => classify(errors, kind),
        }
    }
}

async fn read_envelope(resp: reqwest::Response, kind: CallKind) -> Result<Value, ExchangeError> {
    read_envelope_raw(resp).await.map_err(|e| e.classify(kind))
}

async fn read_envelope_raw(resp: reqwest::Response) -> Result<Value, SendError> {
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(SendError::Http(status));
    }
    let text = resp.text().await.map_err(SendError::Transport)?;
    parse_envelope(&text)
}

fn parse_envelope(text: &str) -> Result<Value, SendError> {
    let v: Value = serde_json::from_str(text).map_err(|e| SendError::Malformed(format!("{e}")))?;
    let errors: Vec<String> = match v.get("error") {
        Some(Value::Array(a)) => a.iter().filter_map(|e| e.as_str().map(str::to_owned)).collect(),
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    };
    if errors.iter().any(|e| !e.trim().to_ascii_lowercase().starts_with('w')) {
        return Err(SendError::Kraken(errors));
    }
    for w in &errors {
        tracing::warn!(warning = %w, "Kraken warning");
    }
    match v.get("result") {
        Some(r) => Ok(r.clone()),
        None => Err(SendError::Malformed("no result and no error".into())),
    }
}

#[cfg(test)]
mod tests;
