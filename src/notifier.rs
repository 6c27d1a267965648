//! Notifications: an actor on the bus turns fills, positions opened and closed (with P&L), stops
//! and take-profits hit, risk alerts, halts, actor escalations and a daily summary into short
//! messages for Telegram (Bot API `sendMessage`) and a generic webhook (JSON POST).
//!
//! Trading never waits for a notification: the actor gets events by `try_send` from the bus,
//! formats them and hands them to one delivery task per channel through a bounded queue (a full
//! queue drops the message and counts it). Each delivery task keeps to `per_minute`, retries
//! transient failures (timeouts, 429, 5xx) with exponential back-off (honouring Telegram's
//! `retry_after`), and counts what it sent, retried, dropped and failed in metrics.

use crate::settings::{Secret, SettingsError};
use actix::prelude::*;
use backon::{ExponentialBuilder, Retryable as _};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use triplegain_actors::bus::Bus;
use triplegain_actors::domain::Severity;
use triplegain_actors::messages::{
    AlertType, BusinessTick, ExecutionEvent, ExecutionEventType, RiskAlert, SystemEvent,
};
use triplegain_actors::ports::OrderStore;
use triplegain_actors::supervised_basics;
use triplegain_actors::supervision::{guarded, start_supervised, Drain, Registry, SupervisedActor, SupervisionHandle};

/// The Telegram bot token's environment variable.
pub const TELEGRAM_TOKEN_VAR: &str = "TELEGRAM_BOT_TOKEN";
/// The webhook's bearer token's environment variable (optional).
pub const WEBHOOK_TOKEN_VAR: &str = "TRIPLEGAIN_WEBHOOK_TOKEN";

/// What can be notified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// An order filled (entries, exits, rebalances).
    Fill,
    TradeOpened,
    /// A position closed, with its realised P&L.
    TradeClosed,
    StopHit,
    TakeProfitHit,
    /// Risk alerts of high or critical severity (breakers, missing stops, execution errors).
    RiskAlert,
    /// The coordinator halted trading.
    Halt,
    /// An actor restarted too often and was fenced.
    ActorEscalation,
    /// Once per business day: fills, closed trades and realised P&L of the day before.
    DailySummary,
}

impl NotificationKind {
    pub const ALL: [Self; 9] = [
        Self::Fill,
        Self::TradeOpened,
        Self::TradeClosed,
        Self::StopHit,
        Self::TakeProfitHit,
        Self::RiskAlert,
        Self::Halt,
        Self::ActorEscalation,
        Self::DailySummary,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fill => "fill",
            Self::TradeOpened => "trade_opened",
            Self::TradeClosed => "trade_closed",
            Self::StopHit => "stop_hit",
            Self::TakeProfitHit => "take_profit_hit",
            Self::RiskAlert => "risk_alert",
            Self::Halt => "halt",
            Self::ActorEscalation => "actor_escalation",
            Self::DailySummary => "daily_summary",
        }
    }
}

/// `config/notifications.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationSettings {
    /// The kinds sent to every enabled channel.
    pub events: Vec<NotificationKind>,
    /// Messages per minute per channel (a burst of this many, refilled evenly).
    pub per_minute: u32,
    /// Messages waiting per channel; beyond that new ones are dropped (and counted).
    pub queue_capacity: usize,
    /// One HTTP attempt's deadline.
    pub timeout_ms: u64,
    pub retry: RetrySettings,
    pub telegram: TelegramSettings,
    pub webhook: WebhookSettings,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        Self {
            events: NotificationKind::ALL.to_vec(),
            per_minute: 20,
            queue_capacity: 256,
            timeout_ms: 10_000,
            retry: RetrySettings::default(),
            telegram: TelegramSettings::default(),
            webhook: WebhookSettings::default(),
        }
    }
}

/// Exponential back-off of failed deliveries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrySettings {
    pub first_delay_ms: u64,
    pub max_delay_ms: u64,
    /// Retries after the first attempt.
    pub max_retries: usize,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            first_delay_ms: 500,
            max_delay_ms: 30_000,
            max_retries: 5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelegramSettings {
    pub enabled: bool,
    pub base_url: String,
    /// The chat (or channel `@name`) messages go to.
    pub chat_id: String,
    /// `TELEGRAM_BOT_TOKEN`; never from a file.
    #[serde(skip_deserializing)]
    pub bot_token: Option<Secret>,
}

impl Default for TelegramSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            base_url: "https://api.telegram.org".into(),
            chat_id: String::new(),
            bot_token: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    pub enabled: bool,
    pub url: String,
    /// `TRIPLEGAIN_WEBHOOK_TOKEN`, sent as `Authorization: Bearer`; optional.
    #[serde(skip_deserializing)]
    pub auth_token: Option<Secret>,
}

fn is_http_url(s: &str) -> bool {
    reqwest::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

impl NotificationSettings {
    /// # Errors
    /// [`SettingsError`] naming the key or environment variable.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let err = |k: &str, m: String| {
            Err(SettingsError {
                source_name: k.to_owned(),
                message: m,
            })
        };
        if self.per_minute == 0 {
            return err("notifications.per_minute", "must be at least 1".into());
        }
        if self.queue_capacity == 0 {
            return err("notifications.queue_capacity", "must be at least 1".into());
        }
        if self.retry.max_delay_ms < self.retry.first_delay_ms {
            return err(
                "notifications.retry.max_delay_ms",
                format!(
                    "must be at least notifications.retry.first_delay_ms ({})",
                    self.retry.first_delay_ms
                ),
            );
        }
        let t = &self.telegram;
        if t.enabled {
            if t.bot_token.is_none() {
                return err(
                    TELEGRAM_TOKEN_VAR,
                    "notifications.telegram.enabled is true: set the bot token in TELEGRAM_BOT_TOKEN".into(),
                );
            }
            if t.chat_id.trim().is_empty() {
                return err(
                    "notifications.telegram.chat_id",
                    "notifications.telegram.enabled is true: set the chat id".into(),
                );
            }
            if !is_http_url(&t.base_url) {
                return err(
                    "notifications.telegram.base_url",
                    format!("{:?} is not an http(s) URL", t.base_url),
                );
            }
        }
        if self.webhook.enabled && !is_http_url(&self.webhook.url) {
            return err(
                "notifications.webhook.url",
                format!(
                    "notifications.webhook.enabled is true: {:?} is not an http(s) URL",
                    self.webhook.url
                ),
            );
        }
        Ok(())
    }

    fn any_channel(&self) -> bool {
        self.telegram.enabled || self.webhook.enabled
    }
}

/// One message for the channels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub kind: NotificationKind,
    pub text: String,
    pub timestamp: DateTime<Utc>,
    pub correlation_id: Option<String>,
    pub symbol: Option<String>,
}

/// Why an attempt failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    /// Timeouts, connection errors, 429 and 5xx: tried again.
    #[error("transient: {message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Any other 4xx (a wrong token or chat id): not retried.
    #[error("rejected: {0}")]
    Rejected(String),
}

impl DeliveryError {
    fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }
}

#[derive(Debug, Clone, Copy)]
enum ChannelKind {
    Telegram,
    Webhook,
}

impl ChannelKind {
    fn name(self) -> &'static str {
        match self {
            Self::Telegram => "telegram",
            Self::Webhook => "webhook",
        }
    }
}

#[derive(Clone)]
struct Channel {
    kind: ChannelKind,
    http: reqwest::Client,
    settings: Arc<NotificationSettings>,
}

fn classify(status: reqwest::StatusCode, body: &str) -> DeliveryError {
    let retry_after = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["parameters"]["retry_after"].as_u64())
        .map(Duration::from_secs);
    let message = format!("HTTP {status}: {}", body.chars().take(200).collect::<String>());
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        DeliveryError::Transient { message, retry_after }
    } else {
        DeliveryError::Rejected(message)
    }
}

impl Channel {
    async fn attempt(&self, n: &Notification) -> Result<(), DeliveryError> {
        let timeout = Duration::from_millis(self.settings.timeout_ms);
        let req = match self.kind {
            ChannelKind::Telegram => {
                let t = &self.settings.telegram;
                let token = t.bot_token.as_ref().map(Secret::expose).unwrap_or_default();
                let url = format!("{}/bot{token}/sendMessage", t.base_url.trim_end_matches('/'));
                self.http.post(url).json(&serde_json::json!({
                    "chat_id": t.chat_id,
                    "text": n.text,
                    "disable_web_page_preview": true,
                }))
            }
            ChannelKind::Webhook => {
                let w = &self.settings.webhook;
                let mut req = self.http.post(&w.url).json(&serde_json::json!({
                    "kind": n.kind.as_str(),
                    "text": n.text,
                    "timestamp": n.timestamp,
                    "correlation_id": n.correlation_id,
                    "symbol": n.symbol,
                }));
                if let Some(token) = &w.auth_token {
                    req = req.bearer_auth(token.expose());
                }
                req
            }
        };
        let resp = req
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| DeliveryError::Transient {
                // The URL holds the bot token: never print it.
                message: e.without_url().to_string(),
                retry_after: None,
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        Err(classify(status, &body))
    }

    /// Delivers `n`, retrying transient failures with exponential back-off.
    async fn deliver(&self, n: &Notification) -> Result<(), DeliveryError> {
        let r = &self.settings.retry;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(r.first_delay_ms))
            .with_max_delay(Duration::from_millis(r.max_delay_ms))
            .with_max_times(r.max_retries)
            .with_jitter();
        let channel = self.kind.name();
        let max = Duration::from_millis(r.max_delay_ms);
        (|| self.attempt(n))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(DeliveryError::is_transient)
            .adjust(move |e, d| match e {
                // Telegram says how long to wait; never longer than the configured maximum.
                DeliveryError::Transient {
                    retry_after: Some(after),
                    ..
                } => d.map(|_| (*after).min(max)),
                _ => d,
            })
            .notify(|e, after| {
                metrics::counter!("triplegain_notification_retries_total", "channel" => channel).increment(1);
                tracing::warn!(channel, error = %e, retry_in_ms = after.as_millis() as u64, "notification failed; retrying");
            })
            .await
    }

    /// The delivery loop of one channel.
    async fn run(self, mut rx: mpsc::Receiver<Notification>) {
        let channel = self.kind.name();
        let per_minute = NonZeroU32::new(self.settings.per_minute).unwrap_or(NonZeroU32::MIN);
        let limiter = governor::RateLimiter::direct(governor::Quota::per_minute(per_minute));
        while let Some(n) = rx.recv().await {
            limiter.until_ready().await;
            match self.deliver(&n).await {
                Ok(()) => {
                    metrics::counter!("triplegain_notifications_sent_total", "channel" => channel, "kind" => n.kind.as_str())
                        .increment(1);
                    tracing::debug!(channel, kind = n.kind.as_str(), "notification sent");
                }
                Err(e) => {
                    let reason = if e.is_transient() {
                        "retries_exhausted"
                    } else {
                        "rejected"
                    };
                    metrics::counter!("triplegain_notification_failures_total", "channel" => channel, "reason" => reason)
                        .increment(1);
                    tracing::error!(channel, kind = n.kind.as_str(), error = %e, "notification not delivered");
                }
            }
        }
    }
}

/// Counts of one business day, for the daily summary.
#[derive(Debug, Clone, Default, PartialEq)]
struct DayTally {
    fills: u32,
    closed: u32,
    wins: u32,
    realized_pnl: Decimal,
}

/// The notifier actor.
pub struct Notifier {
    sup: SupervisionHandle,
    kinds: BTreeSet<NotificationKind>,
    queues: Vec<(&'static str, mpsc::Sender<Notification>)>,
    orders: Arc<dyn OrderStore>,
    day: Option<NaiveDate>,
    tally: DayTally,
}

impl Notifier {
    /// Starts the notifier when a channel is enabled: its delivery tasks, and the actor
    /// subscribed to execution events, risk alerts, system events and business ticks.
    pub fn start(
        registry: &Registry,
        bus: &Bus,
        settings: &NotificationSettings,
        orders: Arc<dyn OrderStore>,
    ) -> Option<Addr<Self>> {
        if !settings.any_channel() {
            return None;
        }
        let shared = Arc::new(settings.clone());
        let http = reqwest::Client::new();
        let mut queues = Vec::new();
        for (enabled, kind) in [
            (settings.telegram.enabled, ChannelKind::Telegram),
            (settings.webhook.enabled, ChannelKind::Webhook),
        ] {
            if !enabled {
                continue;
            }
            let (tx, rx) = mpsc::channel(settings.queue_capacity);
            let channel = Channel {
                kind,
                http: http.clone(),
                settings: shared.clone(),
            };
            actix_web::rt::spawn(channel.run(rx));
            queues.push((kind.name(), tx));
        }
        let kinds: BTreeSet<NotificationKind> = settings.events.iter().copied().collect();
        tracing::info!(
            channels = %queues.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(","),
            kinds = %kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(","),
            "notifications on"
        );
        let addr = start_supervised(registry, "notifier", false, 4096, move |sup| Self {
            sup,
            kinds,
            queues,
            orders,
            day: None,
            tally: DayTally::default(),
        });
        bus.execution_events.subscribe("notifier", addr.clone().recipient());
        bus.risk_alerts.subscribe("notifier", addr.clone().recipient());
        bus.system_events.subscribe("notifier", addr.clone().recipient());
        bus.business_ticks.subscribe("notifier", addr.clone().recipient());
        Some(addr)
    }

    fn emit(&self, n: Notification) {
        if !self.kinds.contains(&n.kind) {
            return;
        }
        for (channel, q) in &self.queues {
            if q.try_send(n.clone()).is_err() {
                metrics::counter!("triplegain_notifications_dropped_total", "channel" => *channel).increment(1);
                tracing::warn!(
                    channel,
                    kind = n.kind.as_str(),
                    "notification queue full; message dropped"
                );
            }
        }
    }

    /// Rolls the business day at `now`; the day before gets its summary.
    fn roll_day(&mut self, now: DateTime<Utc>) {
        let today = now.date_naive();
        match self.day {
            None => self.day = Some(today),
            Some(day) if today > day => {
                let t = std::mem::take(&mut self.tally);
                self.day = Some(today);
                let text = format!(
                    "Daily summary {day}: {} fills, {} trades closed ({} won), realised P&L {} USD",
                    t.fills,
                    t.closed,
                    t.wins,
                    crate::trade_log::signed_usd(t.realized_pnl)
                );
                self.emit(Notification {
                    kind: NotificationKind::DailySummary,
                    text,
                    timestamp: now,
                    correlation_id: None,
                    symbol: None,
                });
            }
            Some(_) => {}
        }
    }
}

impl Actor for Notifier {
    type Context = Context<Self>;
    fn started(&mut self, _: &mut Context<Self>) {
        self.sup.on_started();
    }
}

impl actix::Supervised for Notifier {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.sup.on_restarting();
    }
}

impl SupervisedActor for Notifier {
    fn supervision(&self) -> &SupervisionHandle {
        &self.sup
    }
}

supervised_basics!(Notifier);

impl Handler<Drain> for Notifier {
    type Result = ();
    fn handle(&mut self, _: Drain, _: &mut Context<Self>) {}
}

/// The notification of an execution event, if any.
fn execution_notification(
    e: &ExecutionEvent,
    order: Option<&triplegain_actors::ports::OrderRecord>,
) -> Option<Notification> {
    let line = crate::trade_log::describe(e, order);
    let kind = match line.kind {
        "order_filled" => NotificationKind::Fill,
        "stop_loss_triggered" => NotificationKind::StopHit,
        "take_profit_triggered" => NotificationKind::TakeProfitHit,
        "position_opened" => NotificationKind::TradeOpened,
        "position_closed" => NotificationKind::TradeClosed,
        _ => return None,
    };
    let mut text = line.text;
    if let Some(first) = text.get(..1) {
        text = format!("{}{}", first.to_uppercase(), text.get(1..).unwrap_or(""));
    }
    Some(Notification {
        kind,
        text,
        timestamp: e.meta.timestamp,
        correlation_id: Some(e.meta.correlation_id.to_string()),
        symbol: Some(e.symbol.to_string()),
    })
}

impl Handler<ExecutionEvent> for Notifier {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, e: ExecutionEvent, _: &mut Context<Self>) -> Self::Result {
        let orders = self.orders.clone();
        let needs_order = matches!(
            e.event_type,
            ExecutionEventType::OrderFilled | ExecutionEventType::PositionClosed
        );
        Box::pin(
            async move {
                let order = if needs_order {
                    crate::trade_log::order_of(&orders, &e).await
                } else {
                    None
                };
                (e, order)
            }
            .into_actor(self)
            .map(|(e, order), act, ctx| {
                let _ = guarded(act, ctx, |act, _| {
                    act.roll_day(e.meta.timestamp);
                    match e.event_type {
                        ExecutionEventType::OrderFilled | ExecutionEventType::OrderPartiallyFilled => {
                            act.tally.fills += 1
                        }
                        ExecutionEventType::PositionClosed => {
                            act.tally.closed += 1;
                            let pnl = e.realized_pnl.unwrap_or_default();
                            act.tally.realized_pnl += pnl;
                            if pnl > Decimal::ZERO {
                                act.tally.wins += 1;
                            }
                        }
                        _ => {}
                    }
                    if let Some(n) = execution_notification(&e, order.as_ref()) {
                        act.emit(n);
                    }
                });
            }),
        )
    }
}

impl Handler<RiskAlert> for Notifier {
    type Result = ();
    fn handle(&mut self, a: RiskAlert, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, _| {
            let kind = match a.alert_type {
                AlertType::ActorEscalated => NotificationKind::ActorEscalation,
                _ if matches!(a.severity, Severity::High | Severity::Critical) => NotificationKind::RiskAlert,
                // Rejected trades and low-severity notices are routine: the log has them.
                _ => return,
            };
            let symbol = a.symbol.as_ref().map(ToString::to_string);
            let text = format!(
                "Risk alert ({}){}: {}",
                a.severity.as_str(),
                symbol.as_ref().map(|s| format!(" {s}")).unwrap_or_default(),
                a.message
            );
            act.emit(Notification {
                kind,
                text,
                timestamp: a.meta.timestamp,
                correlation_id: Some(a.meta.correlation_id.to_string()),
                symbol,
            });
        });
    }
}

impl Handler<SystemEvent> for Notifier {
    type Result = ();
    fn handle(&mut self, e: SystemEvent, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, _| {
            if e.event != "coordinator_halted" {
                return;
            }
            let by = e.details["by"].as_str().unwrap_or("unknown");
            let reason = e.details["reason"].as_str().unwrap_or("no reason given");
            act.emit(Notification {
                kind: NotificationKind::Halt,
                text: format!("Trading HALTED by {by}: {reason}"),
                timestamp: e.meta.timestamp,
                correlation_id: Some(e.meta.correlation_id.to_string()),
                symbol: None,
            });
        });
    }
}

impl Handler<BusinessTick> for Notifier {
    type Result = ();
    fn handle(&mut self, t: BusinessTick, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, _| act.roll_day(t.now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telegram_429_is_transient_with_its_retry_after_and_400_is_not() {
        let e = classify(
            reqwest::StatusCode::TOO_MANY_REQUESTS,
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 3","parameters":{"retry_after":3}}"#,
        );
        match e {
            DeliveryError::Transient { retry_after, .. } => assert_eq!(retry_after, Some(Duration::from_secs(3))),
            other => panic!("{other:?}"),
        }
        assert!(classify(reqwest::StatusCode::BAD_GATEWAY, "").is_transient());
        assert!(!classify(reqwest::StatusCode::BAD_REQUEST, r#"{"ok":false}"#).is_transient());
    }

    #[test]
    fn enabled_channels_need_their_settings() {
        let mut s = NotificationSettings::default();
        assert!(s.validate().is_ok());
        s.telegram.enabled = true;
        assert_eq!(s.validate().unwrap_err().source_name, TELEGRAM_TOKEN_VAR);
        s.telegram.bot_token = Some(Secret::new("123:abc"));
        assert_eq!(s.validate().unwrap_err().source_name, "notifications.telegram.chat_id");
        s.telegram.chat_id = "42".into();
        assert!(s.validate().is_ok());
        s.webhook.enabled = true;
        s.webhook.url = "not a url".into();
        assert_eq!(s.validate().unwrap_err().source_name, "notifications.webhook.url");
    }
}
