//! Living with it (issue 17): notifications to a local Telegram Bot API and webhook receiver, the
//! business clock across a restart, SSE keep-alive, one metric family per name, and the first-run
//! admin token.

use crate::execution::{body, limit_buy, price, ready};
use crate::helpers::{spawn_app_with, spawn_with_settings, test_settings, TestDb, OPERATOR, VIEWER};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use triplegain::notifier::{NotificationKind, TelegramSettings, WebhookSettings};
use triplegain::settings::{Secret, Settings};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const BOT_TOKEN: &str = "123456:TEST-bot-token";

fn telegram_ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "ok": true,
        "result": {"message_id": 7, "date": 1_700_000_000, "chat": {"id": 42, "type": "private"}, "text": "…"}
    }))
}

/// Answers with `script` in order (then the last one again), noting when each request came.
#[derive(Clone)]
struct Scripted {
    script: Arc<Vec<ResponseTemplate>>,
    seen: Arc<Mutex<Vec<(Instant, Value)>>>,
}

impl Scripted {
    fn new(script: Vec<ResponseTemplate>) -> Self {
        Self {
            script: Arc::new(script),
            seen: Arc::default(),
        }
    }

    fn seen(&self) -> Vec<(Instant, Value)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Respond for Scripted {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut seen = self.seen.lock().unwrap();
        seen.push((Instant::now(), serde_json::from_slice(&req.body).unwrap_or(Value::Null)));
        let i = (seen.len() - 1).min(self.script.len() - 1);
        self.script[i].clone()
    }
}

fn notify_to(s: &mut Settings, kinds: Vec<NotificationKind>, telegram: &MockServer, webhook: Option<&MockServer>) {
    s.notifications.events = kinds;
    s.notifications.telegram = TelegramSettings {
        enabled: true,
        base_url: telegram.uri(),
        chat_id: "42".into(),
        bot_token: Some(Secret::new(BOT_TOKEN)),
    };
    if let Some(w) = webhook {
        s.notifications.webhook = WebhookSettings {
            enabled: true,
            url: format!("{}/hooks/triplegain", w.uri()),
            auth_token: Some(Secret::new("webhook-secret-value")),
        };
    }
}

async fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A limit buy that fills: placed at 50 000, then the price trades through it.
async fn filled_buy(app: &crate::helpers::TestApp) -> String {
    crate::execution::buy_and_fill(app).await["correlation_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[actix_web::test]
async fn a_fill_and_a_halt_each_send_one_message_to_telegram_and_the_webhook() {
    // Arrange: a local Telegram Bot API and a webhook receiver.
    let telegram = MockServer::start().await;
    let bot = Scripted::new(vec![telegram_ok()]);
    Mock::given(method("POST"))
        .and(path(format!("/bot{BOT_TOKEN}/sendMessage")))
        .respond_with(bot.clone())
        .mount(&telegram)
        .await;
    let webhook = MockServer::start().await;
    let hook = Scripted::new(vec![ResponseTemplate::new(204)]);
    Mock::given(method("POST"))
        .and(path("/hooks/triplegain"))
        .respond_with(hook.clone())
        .mount(&webhook)
        .await;
    let app = spawn_app_with(|s| {
        notify_to(
            s,
            vec![NotificationKind::Fill, NotificationKind::Halt],
            &telegram,
            Some(&webhook),
        )
    })
    .await;
    ready(&app).await;

    // Act: a fill, then a halt.
    let cid = filled_buy(&app).await;
    wait_for("the fill message", 15, || (!bot.seen().is_empty()).then_some(())).await;
    let (s, b) = body(
        app.post(
            "/api/v1/coordinator/halt",
            Some(OPERATOR),
            Some(json!({"reason": "drill"})),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    wait_for("the halt message", 15, || {
        (bot.seen().len() >= 2 && hook.seen().len() >= 2).then_some(())
    })
    .await;
    // Nothing else follows (one message each).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Assert: Telegram got sendMessage for the chat with the expected texts.
    let sent: Vec<Value> = bot.seen().into_iter().map(|(_, b)| b).collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent.iter().all(|m| m["chat_id"] == "42"), "{sent:?}");
    let fill = sent[0]["text"].as_str().unwrap();
    assert!(
        fill.starts_with("Order filled: buy 0.02 BTC/USDT @ ") && fill.contains(", fee ") && fill.ends_with("(entry)"),
        "{fill}"
    );
    assert_eq!(sent[1]["text"], "Trading HALTED by operator: drill");
    // The webhook got the same two, as JSON with kind, correlation id and the bearer token.
    let hooks: Vec<Value> = hook.seen().into_iter().map(|(_, b)| b).collect();
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    assert_eq!(hooks[0]["kind"], "fill");
    assert_eq!(hooks[0]["correlation_id"], cid.as_str());
    assert_eq!(hooks[0]["symbol"], "BTC/USDT");
    assert_eq!(hooks[0]["text"], sent[0]["text"]);
    assert_eq!(hooks[1]["kind"], "halt");
    let auth = webhook.received_requests().await.unwrap();
    assert!(auth
        .iter()
        .all(|r| r.headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer webhook-secret-value")));
    app.shutdown().await;
}

#[actix_web::test]
async fn a_notifier_that_gets_429_and_500_retries_with_backoff_and_trading_is_not_slowed() {
    // Arrange: Telegram answers slowly with 429 (retry_after 1 s), then 500, then accepts.
    let telegram = MockServer::start().await;
    let too_many = ResponseTemplate::new(429)
        .set_delay(Duration::from_millis(1500))
        .set_body_json(json!({"ok": false, "error_code": 429,
            "description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}}));
    let broken = ResponseTemplate::new(500).set_body_json(json!({"ok": false, "error_code": 500,
        "description": "Internal Server Error"}));
    let bot = Scripted::new(vec![too_many.clone(), too_many, broken, telegram_ok()]);
    Mock::given(method("POST"))
        .and(path(format!("/bot{BOT_TOKEN}/sendMessage")))
        .respond_with(bot.clone())
        .mount(&telegram)
        .await;
    let app = spawn_app_with(|s| {
        notify_to(
            s,
            vec![NotificationKind::Fill, NotificationKind::TradeOpened],
            &telegram,
            None,
        );
        s.notifications.retry.first_delay_ms = 200;
        s.notifications.retry.max_delay_ms = 2000;
    })
    .await;
    ready(&app).await;

    // Act: a trade fills while the notifier struggles, then a second trade.
    filled_buy(&app).await;
    wait_for("the first attempt", 10, || (!bot.seen().is_empty()).then_some(())).await;
    let started = Instant::now();
    let (s, b) = body(
        app.post("/api/v1/trades/validate", Some(VIEWER), Some(limit_buy("500")))
            .await,
    )
    .await;
    let validate_took = started.elapsed();
    let started = Instant::now();
    let (s2, b2) = body(app.get("/api/v1/positions", Some(VIEWER)).await).await;
    let read_took = started.elapsed();

    // Assert: trading answers at once while deliveries wait and retry.
    assert_eq!(s, 200, "{b}");
    assert_eq!(s2, 200, "{b2}");
    assert_eq!(b2["positions"].as_array().unwrap().len(), 1, "{b2}");
    assert!(
        validate_took < Duration::from_millis(500),
        "validation took {validate_took:?}"
    );
    assert!(read_took < Duration::from_millis(500), "a read took {read_took:?}");
    // The first message is tried 4 times: 429 (waits retry_after), 429, 500 (back-off), 200.
    let seen = wait_for("the retried message to go through", 30, || {
        let seen = bot.seen();
        (seen.len() >= 5).then_some(seen)
    })
    .await;
    let first = &seen[0].1["text"];
    for (i, (_, b)) in seen.iter().enumerate().take(4) {
        assert_eq!(&b["text"], first, "attempt {i} resends the same message");
    }
    let gaps: Vec<Duration> = seen.windows(2).take(3).map(|w| w[1].0 - w[0].0).collect();
    // After a 429 the wait is Telegram's retry_after (1 s) on top of the slow answer (1.5 s).
    assert!(gaps[0] >= Duration::from_millis(2400), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(2400), "{gaps:?}");
    // After the 500, the exponential back-off (at least the first delay).
    assert!(gaps[2] >= Duration::from_millis(150), "{gaps:?}");
    // The second message (the position opened) follows the first, in order.
    let texts: Vec<String> = seen
        .iter()
        .map(|(_, b)| b["text"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("Position opened: long 0.02 BTC/USDT")),
        "{texts:?}"
    );
    // Retries are counted.
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    let retries = metrics
        .lines()
        .find(|l| l.starts_with("triplegain_notification_retries_total{channel=\"telegram\"}"))
        .unwrap_or_else(|| panic!("no retry counter:\n{metrics}"));
    let n: f64 = retries.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 3.0, "{retries}");
    assert!(metrics.contains("triplegain_notifications_sent_total{channel=\"telegram\",kind=\"fill\"}"));
    app.shutdown().await;
}

#[actix_web::test]
async fn a_restart_continues_the_business_clock_and_the_daily_pnl_period() {
    // Arrange: a paper run whose business clock ran three days ahead of the wall clock, and a
    // risk engine that started its daily period there.
    let db = TestDb::new().await;
    let settings = || {
        let mut s = test_settings();
        s.database.url = Some(Secret::new(db.url.clone()));
        s
    };
    let first = spawn_with_settings(settings()).await;
    let ahead = chrono::Utc::now() + chrono::Duration::days(3);
    first.state.business_clock.as_ref().expect("a feed clock").set(ahead);
    ready(&first).await;
    let (_, risk) = body(first.get("/api/v1/risk/state", Some(VIEWER)).await).await;
    let period: chrono::DateTime<chrono::Utc> = risk["state"]["daily_period_start"].as_str().unwrap().parse().unwrap();
    assert!(
        period > chrono::Utc::now() + chrono::Duration::days(2),
        "the daily period starts on the business clock: {risk}"
    );
    let before = first.state.clock.now();

    // Act: stop (drain) and start again on the same database.
    first.shutdown().await;
    let second = spawn_with_settings(settings()).await;

    // Assert: the clock continues from where it stopped, the API reports that time, and the
    // daily period is the same one (not moved backwards to wall time).
    let now = second.state.clock.now();
    assert!(now >= before, "business clock rewound: {now} < {before}");
    let (_, session) = body(second.get("/api/v1/session", Some(VIEWER)).await).await;
    let reported: chrono::DateTime<chrono::Utc> = session["business_time"].as_str().unwrap().parse().unwrap();
    assert!(reported >= before, "{session}");
    ready(&second).await;
    let (_, risk) = body(second.get("/api/v1/risk/state", Some(VIEWER)).await).await;
    let after: chrono::DateTime<chrono::Utc> = risk["state"]["daily_period_start"].as_str().unwrap().parse().unwrap();
    assert_eq!(after, period, "{risk}");
    let as_of: chrono::DateTime<chrono::Utc> = risk["as_of"].as_str().unwrap().parse().unwrap();
    assert!(as_of >= before, "{risk}");
    second.shutdown().await;
}

#[actix_web::test]
async fn the_event_stream_sends_keep_alive_comments() {
    let app = spawn_app_with(|s| s.server.sse_keep_alive_secs = 1).await;
    let mut resp = app.get("/api/v1/events?types=risk_alerts", Some(VIEWER)).await;
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b": connected"));
    let next = tokio::time::timeout(Duration::from_secs(3), resp.chunk())
        .await
        .expect("a keep-alive within 3 s")
        .unwrap()
        .unwrap();
    assert_eq!(&next[..], b": keep-alive\n\n");
    drop(resp);
    app.shutdown().await;
}

#[actix_web::test]
async fn metrics_have_one_typed_family_per_name() {
    let app = spawn_app_with(|_| {}).await;
    ready(&app).await;
    let _ = app.get("/api/v1/actors", Some(VIEWER)).await;
    let text = app.get("/metrics", None).await.text().await.unwrap();
    let mut families: Vec<(String, String)> = Vec::new();
    for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = l.split_whitespace().skip(2);
        let (name, kind) = (parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned());
        assert!(!families.iter().any(|(n, _)| *n == name), "{name} typed twice");
        families.push((name, kind));
    }
    // Every sample belongs to a typed family, and no family repeats another's counter without `_total`.
    for l in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let name = l.split(['{', ' ']).next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| families.iter().any(|(n, _)| n == f)))
            .unwrap_or(name);
        assert!(families.iter().any(|(n, _)| n == family), "untyped sample {name}");
    }
    for (name, _) in &families {
        if let Some(base) = name.strip_suffix("_total") {
            assert!(
                !families.iter().any(|(n, _)| n == base),
                "{base} duplicates the counter {name}"
            );
        }
    }
    app.shutdown().await;
}

#[actix_web::test]
async fn without_tokens_a_first_run_admin_token_is_generated_kept_and_used_again() {
    let dir = std::env::temp_dir().join(format!("tg-first-run-{}", uuid::Uuid::new_v4().simple()));
    let file = dir.join("data/admin-token");
    let no_tokens = |s: &mut Settings| {
        s.api.tokens.clear();
        s.api.admin_token_file = file.display().to_string();
    };
    let app = spawn_app_with(no_tokens).await;
    let token = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(token.len() >= 32, "{token}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let (s, b) = body(app.get("/api/v1/session", Some(&token)).await).await;
    assert_eq!((s, b["role"].as_str()), (200, Some("admin")), "{b}");
    assert_eq!(app.get("/api/v1/session", Some(VIEWER)).await.status(), 401);
    app.shutdown().await;

    // A restart reads the same token back.
    let again = spawn_app_with(no_tokens).await;
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);
    assert_eq!(again.get("/api/v1/session", Some(&token)).await.status(), 200);
    again.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_web::test]
async fn a_stop_hit_and_the_closed_trade_with_its_pnl_are_notified_and_a_new_day_sends_the_summary() {
    // Arrange: notify stop hits, closed trades and the daily summary.
    let telegram = MockServer::start().await;
    let bot = Scripted::new(vec![telegram_ok()]);
    Mock::given(method("POST"))
        .and(path(format!("/bot{BOT_TOKEN}/sendMessage")))
        .respond_with(bot.clone())
        .mount(&telegram)
        .await;
    let app = spawn_app_with(|s| {
        notify_to(
            s,
            vec![
                NotificationKind::StopHit,
                NotificationKind::TradeClosed,
                NotificationKind::DailySummary,
            ],
            &telegram,
            None,
        );
    })
    .await;
    ready(&app).await;
    filled_buy(&app).await;
    crate::execution::open_position(&app).await;

    // Act: the price falls through the stop at 49 000.
    price(&app, "48500");
    let texts = wait_for("the stop and the close", 20, || {
        let t: Vec<String> = bot
            .seen()
            .iter()
            .map(|(_, b)| b["text"].as_str().unwrap_or("").to_owned())
            .collect();
        (t.len() >= 2).then_some(t)
    })
    .await;

    // Assert: one stop-hit message and one close with its (negative) P&L.
    let stop = texts
        .iter()
        .find(|t| t.starts_with("Stop-loss triggered: sell 0.02 BTC/USDT filled @ "));
    assert!(stop.is_some(), "{texts:?}");
    let closed = texts
        .iter()
        .find(|t| t.starts_with("Position closed by stop-loss: BTC/USDT @ "))
        .unwrap_or_else(|| panic!("{texts:?}"));
    assert!(closed.contains(", P&L -"), "{closed}");
    assert!(closed.ends_with(" USD"), "{closed}");

    // Act: the business day ends.
    let next_day = app.state.clock.now() + chrono::Duration::days(1);
    app.state
        .bus
        .business_ticks
        .publish(triplegain_actors::messages::BusinessTick {
            meta: triplegain_actors::messages::EventMeta::new("test", next_day),
            now: next_day,
        });
    let summary = wait_for("the daily summary", 10, || {
        bot.seen()
            .iter()
            .map(|(_, b)| b["text"].as_str().unwrap_or("").to_owned())
            .find(|t| t.starts_with("Daily summary"))
    })
    .await;
    assert!(summary.contains("1 trades closed (0 won)"), "{summary}");
    assert!(summary.contains("realised P&L -"), "{summary}");
    app.shutdown().await;
}
