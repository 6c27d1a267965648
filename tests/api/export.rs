//! The event export to NATS JetStream, the fleet control subjects and many accounts on one
//! database: the whole app against the real NATS server (127.0.0.1:4222, `NATS_URL` overrides;
//! a fresh stream and subject prefix per test) and a fresh PostgreSQL database.

use crate::execution::{body, buy_and_fill, limit_buy, open_position, price, ready};
use crate::helpers::{spawn_app_with, spawn_with_settings, test_settings, TestApp, TestDb, OPERATOR, VIEWER};
use async_nats::jetstream;
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use triplegain::settings::{Secret, Settings};

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Export on, with a stream and subject prefix of this test only.
fn export_on(s: &mut Settings, url: &str) -> (String, String) {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let stream = format!("T_{}", &tag[..12]);
    let prefix = format!("t{}", &tag[..12]);
    s.export.enabled = true;
    s.export.url = url.to_owned();
    s.export.stream.clone_from(&stream);
    s.export.subject_prefix.clone_from(&prefix);
    s.export.max_age_secs = 3600;
    s.export.max_bytes = 64 << 20;
    s.export.relay_poll_ms = 50;
    s.export.ack_timeout_ms = 1000;
    (stream, prefix)
}

/// An app exporting to a stream and subject prefix of its own, with a JetStream context on it.
async fn exporting_app() -> (TestApp, String, String, jetstream::Context) {
    let url = nats_url();
    let mut names = (String::new(), String::new());
    let app = spawn_app_with(|s| names = export_on(s, &url)).await;
    let (stream, prefix) = names;
    let (_, js) = js_for(&url).await;
    (app, stream, prefix, js)
}

async fn js_for(url: &str) -> (async_nats::Client, jetstream::Context) {
    let client = async_nats::connect(url).await.expect("NATS is up (see .ci/run)");
    (client.clone(), jetstream::new(client))
}

/// One message read back from the stream.
#[derive(Debug, Clone)]
struct Got {
    subject: String,
    id: String,
    stream_seq: u64,
    outbox_seq: Option<i64>,
    account: String,
    schema: String,
    event: Value,
}

/// Every message of `stream` under `filter`, read from the start until `done` holds for what
/// was read (or `within` passes).
async fn read_stream(
    js: &jetstream::Context,
    stream: &str,
    filter: &str,
    within: Duration,
    done: impl Fn(&[Got]) -> bool,
) -> Vec<Got> {
    let deadline = Instant::now() + within;
    loop {
        let mut got = Vec::new();
        if let Ok(s) = js.get_stream(stream).await {
            let consumer = s
                .create_consumer(jetstream::consumer::pull::OrderedConfig {
                    filter_subject: filter.to_owned(),
                    deliver_policy: jetstream::consumer::DeliverPolicy::All,
                    ..Default::default()
                })
                .await
                .unwrap();
            let pending = consumer.clone().info().await.map(|i| i.num_pending).unwrap_or(0);
            let mut msgs = consumer.messages().await.unwrap();
            while (got.len() as u64) < pending {
                let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(2), msgs.next()).await else {
                    break;
                };
                let h = |n: &str| {
                    m.headers
                        .as_ref()
                        .and_then(|h| h.get(n))
                        .map(|v| v.as_str().to_owned())
                        .unwrap_or_default()
                };
                got.push(Got {
                    subject: m.subject.to_string(),
                    id: m
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                        .map(|v| v.as_str().to_owned())
                        .unwrap_or_default(),
                    stream_seq: m.info().unwrap().stream_sequence,
                    outbox_seq: h("TripleGain-Outbox-Seq").parse().ok(),
                    account: h("TripleGain-Account"),
                    schema: h("TripleGain-Schema"),
                    event: serde_json::from_slice(&m.payload).unwrap(),
                });
            }
        }
        if done(&got) || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn types_of(got: &[Got]) -> Vec<String> {
    got.iter()
        .map(|g| g.event["event_type"].as_str().unwrap_or("?").to_owned())
        .collect()
}

fn has_fill_and_position(got: &[Got]) -> bool {
    let t = types_of(got);
    t.iter().any(|x| x == "order_filled") && t.iter().any(|x| x == "position_opened")
}

async fn outbox_rows(app: &TestApp, schema: &str) -> Vec<(String, String)> {
    let client = app.pool.as_ref().unwrap().get().await.unwrap();
    client
        .query(
            &format!("SELECT event_id::text, topic FROM {schema}.event_outbox ORDER BY seq"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn drop_stream(js: &jetstream::Context, stream: &str) {
    let _ = js.delete_stream(stream).await;
}

async fn trade_and_fill(app: &TestApp) -> String {
    let b = buy_and_fill(app).await;
    open_position(app).await;
    b["orders"][0]["id"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn a_manual_trade_s_events_arrive_on_their_subjects_in_order_with_their_ids() {
    // Arrange
    let (app, stream, prefix, js) = exporting_app().await;

    // Act: a manual limit buy that fills and becomes a protected position.
    let entry = trade_and_fill(&app).await;

    // Assert: the execution events, on the account's subject for the symbol, in order.
    let subject = format!("{prefix}.default.execution_events.BTC_USDT");
    let got = read_stream(&js, &stream, &subject, Duration::from_secs(15), |g| {
        types_of(g).iter().filter(|t| *t == "order_placed").count() >= 3 && has_fill_and_position(g)
    })
    .await;
    let types = types_of(&got);
    let entry_events: Vec<&str> = got
        .iter()
        .filter(|g| g.event["order_id"] == entry.as_str())
        .map(|g| g.event["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        entry_events.first().copied(),
        Some("order_placed"),
        "entry placed first: {types:?}"
    );
    let placed = types.iter().position(|t| t == "order_placed").unwrap();
    let filled = types.iter().position(|t| t == "order_filled").unwrap();
    let opened = types.iter().position(|t| t == "position_opened").unwrap();
    assert!(placed < filled && filled <= opened + 1, "order of events: {types:?}");
    // The stop and take-profit orders come after the position opened.
    assert!(
        types.iter().skip(opened).filter(|t| *t == "order_placed").count() >= 2,
        "{types:?}"
    );
    for g in &got {
        assert_eq!(g.subject, subject);
        assert_eq!(
            g.id,
            g.event["meta"]["id"].as_str().unwrap(),
            "Nats-Msg-Id is the event id"
        );
        assert_eq!(g.schema, triplegain::export::SCHEMA_VERSION);
        assert_eq!(g.account, "default");
    }
    let seqs: Vec<i64> = got.iter().map(|g| g.outbox_seq.unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "relayed in outbox order: {seqs:?}"
    );
    let stored: Vec<u64> = got.iter().map(|g| g.stream_seq).collect();
    assert!(
        stored.windows(2).all(|w| w[0] < w[1]),
        "stored in that order: {stored:?}"
    );
    let ids: std::collections::HashSet<&str> = got.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids.len(), got.len(), "each event once");
    // Money amounts stay decimal strings.
    let fill = got.iter().find(|g| g.event["event_type"] == "order_filled").unwrap();
    let fill_price: rust_decimal::Decimal = fill.event["fill_price"].as_str().unwrap().parse().unwrap();
    assert!(fill_price >= rust_decimal::Decimal::from(49_990), "{}", fill.event);

    // Portfolio updates (no symbol) and the decision trail of the trade are exported too.
    let portfolio = read_stream(
        &js,
        &stream,
        &format!("{prefix}.default.portfolio_updates"),
        Duration::from_secs(10),
        |g| !g.is_empty(),
    )
    .await;
    assert!(!portfolio.is_empty(), "portfolio updates exported");
    let decisions = read_stream(
        &js,
        &stream,
        &format!("{prefix}.default.decisions.>"),
        Duration::from_secs(10),
        |g| !g.is_empty(),
    )
    .await;
    assert!(!decisions.is_empty(), "decisions exported");
    // Everything was relayed: the outbox is empty.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !outbox_rows(&app, "public").await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(outbox_rows(&app, "public").await.is_empty(), "outbox drained");

    app.shutdown().await;
    drop_stream(&js, &stream).await;
}

#[actix_web::test]
async fn a_duplicated_publish_is_dropped_by_its_id() {
    // Arrange: the stream as the app creates it.
    let url = nats_url();
    let mut settings = test_settings();
    let (stream, prefix) = export_on(&mut settings, &url);
    let (_, js) = js_for(&url).await;
    triplegain::export::ensure_stream(&js, &settings.export).await.unwrap();
    let subject = triplegain::export::subject(&prefix, "default", "execution_events", Some("BTC/USDT"));
    let id = uuid::Uuid::new_v4().to_string();

    // Act: the same event published twice (as a relay retry after a lost ack would).
    let mut acks = Vec::new();
    for _ in 0..2 {
        let h = triplegain::export::headers(&id, "execution_events", "default", Some(1));
        let ack = js
            .publish_with_headers(subject.clone(), h, "{\"x\":1}".into())
            .await
            .unwrap()
            .await
            .unwrap();
        acks.push(ack);
    }

    // Assert
    assert!(!acks[0].duplicate);
    assert!(acks[1].duplicate, "the second copy is a duplicate");
    assert_eq!(acks[0].sequence, acks[1].sequence);
    let info = js
        .get_stream(&stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    assert_eq!(info, 1, "one message stored");
    drop_stream(&js, &stream).await;
}

#[actix_web::test]
async fn an_outbox_row_relayed_twice_is_stored_once() {
    // Arrange: a running app with its events relayed.
    let (app, stream, prefix, js) = exporting_app().await;
    trade_and_fill(&app).await;
    let subject = format!("{prefix}.default.execution_events.BTC_USDT");
    let first = read_stream(&js, &stream, &subject, Duration::from_secs(15), has_fill_and_position).await;
    let fill = first
        .iter()
        .find(|g| g.event["event_type"] == "order_filled")
        .unwrap()
        .clone();
    let before = js
        .get_stream(&stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;

    // Act: the fill event reaches the outbox again (a relay that crashed before deleting it).
    let client = app.pool.as_ref().unwrap().get().await.unwrap();
    triplegain::db::outbox::append(
        &**client,
        fill.id.parse().unwrap(),
        "execution_events",
        Some("BTC/USDT"),
        &fill.event,
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !outbox_rows(&app, "public").await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Assert: relayed (the row is gone) but not stored again.
    assert!(outbox_rows(&app, "public").await.is_empty(), "relayed");
    let after = read_stream(&js, &stream, &subject, Duration::from_secs(1), |_| false).await;
    assert_eq!(after.iter().filter(|g| g.id == fill.id).count(), 1, "stored once");
    let total = js
        .get_stream(&stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    assert!(total >= before, "{total} >= {before}");
    assert_eq!(after.len(), first.len() + (after.len() - first.len()), "no second copy");
    app.shutdown().await;
    drop_stream(&js, &stream).await;
}

#[actix_web::test]
async fn the_stream_deleted_while_trading_loses_no_execution_or_portfolio_event() {
    // Arrange: an open limit order, its placement exported.
    let (app, stream, prefix, js) = exporting_app().await;
    ready(&app).await;
    let (s, b) = body(
        app.post("/api/v1/trades", Some(OPERATOR), Some(limit_buy("1000")))
            .await,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let subject = format!("{prefix}.default.execution_events.BTC_USDT");
    read_stream(&js, &stream, &subject, Duration::from_secs(15), |g| !g.is_empty()).await;

    // Act: the stream goes away (an operator's mistake, a lost JetStream store), then the order
    // fills and the position opens.
    js.delete_stream(&stream).await.unwrap();
    price(&app, "49990");
    open_position(&app).await;

    // Assert: the fill and the position reach the stream (created again) from the outbox.
    let got = read_stream(&js, &stream, &subject, Duration::from_secs(20), has_fill_and_position).await;
    assert!(has_fill_and_position(&got), "after the outage: {:?}", types_of(&got));
    let portfolio = read_stream(
        &js,
        &stream,
        &format!("{prefix}.default.portfolio_updates"),
        Duration::from_secs(10),
        |g| !g.is_empty(),
    )
    .await;
    assert!(!portfolio.is_empty(), "portfolio updates after the outage");
    app.shutdown().await;
    drop_stream(&js, &stream).await;
}

/// A NATS server of this test only (same binary, random port, own store), so stopping it
/// affects nobody else.
struct OwnNats {
    child: Option<std::process::Child>,
    port: u16,
    dir: std::path::PathBuf,
}

impl OwnNats {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("tg-nats-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut me = Self { child: None, port, dir };
        me.up();
        me
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn up(&mut self) {
        let bin = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "/usr/sbin/nats-server".into());
        let child = std::process::Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server runs");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("own nats-server did not start");
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[actix_web::test]
async fn a_nats_restart_while_trading_loses_no_execution_or_portfolio_event() {
    // Arrange: the app exporting to a NATS server of this test.
    let mut nats = OwnNats::start();
    let url = nats.url();
    let mut names = (String::new(), String::new());
    let app = spawn_app_with(|s| names = export_on(s, &url)).await;
    let (stream, prefix) = names;
    ready(&app).await;
    let (s, b) = body(
        app.post("/api/v1/trades", Some(OPERATOR), Some(limit_buy("1000")))
            .await,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    {
        let (_, js) = js_for(&url).await;
        let subject = format!("{prefix}.default.execution_events.BTC_USDT");
        let got = read_stream(&js, &stream, &subject, Duration::from_secs(15), |g| !g.is_empty()).await;
        assert!(!got.is_empty(), "placement exported before the outage");
    }

    // Act: NATS goes down; the order fills and the position opens meanwhile.
    nats.down();
    let started = Instant::now();
    price(&app, "49990");
    open_position(&app).await;
    let mut waiting = Vec::new();
    while Instant::now() < started + Duration::from_secs(10) {
        waiting = outbox_rows(&app, "public").await;
        if waiting.iter().any(|(_, t)| t == "execution_events") && waiting.iter().any(|(_, t)| t == "portfolio_updates")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        waiting.iter().any(|(_, t)| t == "execution_events"),
        "execution events wait in the outbox while NATS is down: {waiting:?}"
    );
    // Trading went on without NATS: the position is open (checked above) and the API answers.
    let r = app.get("/api/v1/coordinator/status", Some(VIEWER)).await;
    assert_eq!(r.status(), 200);
    nats.up();

    // Assert: every event that waited is in the stream, in order, and the outbox drains.
    let (_, js) = js_for(&url).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !outbox_rows(&app, "public").await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        outbox_rows(&app, "public").await.is_empty(),
        "outbox drained after the restart"
    );
    let mut all = Vec::new();
    for topic in triplegain::export::DURABLE_TOPICS {
        for filter in [
            format!("{prefix}.default.{topic}"),
            format!("{prefix}.default.{topic}.>"),
        ] {
            all.extend(read_stream(&js, &stream, &filter, Duration::from_millis(300), |_| false).await);
        }
    }
    let stored: std::collections::HashSet<&str> = all.iter().map(|g| g.id.as_str()).collect();
    for (id, topic) in &waiting {
        assert!(stored.contains(id.as_str()), "{topic} event {id} reached the stream");
    }
    let exec: Vec<&Got> = all
        .iter()
        .filter(|g| g.subject.ends_with("execution_events.BTC_USDT"))
        .collect();
    assert!(has_fill_and_position(
        &exec.iter().map(|g| (*g).clone()).collect::<Vec<_>>()
    ));
    let seqs: Vec<i64> = exec.iter().filter_map(|g| g.outbox_seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in outbox order: {seqs:?}");
    app.shutdown().await;
}

async fn request(client: &async_nats::Client, subject: &str, token: Option<&str>, payload: Value) -> Value {
    let mut h = async_nats::HeaderMap::new();
    if let Some(t) = token {
        h.insert("Authorization", format!("Bearer {t}").as_str());
    }
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        client.request_with_headers(subject.to_owned(), h, payload.to_string().into()),
    )
    .await
    .expect("reply in time")
    .expect("reply");
    serde_json::from_slice(&r.payload).unwrap()
}

async fn state_of(app: &TestApp) -> String {
    let (_, b) = body(app.get("/api/v1/coordinator/status", Some(VIEWER)).await).await;
    b["state"].as_str().unwrap_or_default().to_owned()
}

async fn audit_rows(app: &TestApp, schema: &str) -> Vec<(String, String, String, i32)> {
    let client = app.pool.as_ref().unwrap().get().await.unwrap();
    client
        .query(
            &format!("SELECT token_name, method, route, status FROM {schema}.api_audit_log ORDER BY id"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

#[actix_web::test]
async fn a_halt_request_on_the_control_subject_halts_the_coordinator_and_is_audited() {
    // Arrange
    let url = nats_url();
    let mut names = (String::new(), String::new());
    let app = spawn_app_with(|s| names = export_on(s, &url)).await;
    let (stream, prefix) = names;
    let (client, js) = js_for(&url).await;
    let halt = format!("{prefix}.default.control.halt");

    // Act and assert: refused without a token, with a viewer token; done with an operator's.
    let r = request(&client, &halt, None, json!({})).await;
    assert_eq!(
        (r["ok"].clone(), r["error"]["code"].clone()),
        (json!(false), json!("unauthorized"))
    );
    let r = request(&client, &halt, Some(VIEWER), json!({})).await;
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    assert_eq!(state_of(&app).await, "running");
    let r = request(
        &client,
        &halt,
        None,
        json!({"token": OPERATOR, "reason": "fleet drill"}),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["account"], "default");
    assert_eq!(state_of(&app).await, "halted");
    let r = request(
        &client,
        &format!("{prefix}.default.control.resume"),
        Some(OPERATOR),
        json!({}),
    )
    .await;
    assert_eq!(r["error"]["code"], "conflict", "halted is left only by an admin: {r}");

    // Every request is in api_audit_log.
    let audit = audit_rows(&app, "public").await;
    let nats: Vec<_> = audit.iter().filter(|a| a.1 == "NATS").collect();
    assert_eq!(nats.len(), 4, "{audit:?}");
    assert_eq!(nats[0].3, 401);
    assert_eq!((nats[1].0.as_str(), nats[1].3), ("viewer", 403));
    assert_eq!(
        (nats[2].0.as_str(), nats[2].2.as_str(), nats[2].3),
        ("operator", halt.as_str(), 200)
    );
    assert_eq!(nats[3].3, 409);
    app.shutdown().await;
    drop_stream(&js, &stream).await;
}

#[actix_web::test]
async fn two_accounts_on_one_database_trade_independently() {
    // Arrange: accounts alpha and beta on one database, one stream, one prefix.
    let url = nats_url();
    let db = TestDb::new().await;
    let mut base = test_settings();
    base.database.url = Some(Secret::new(db.url.clone()));
    let (stream, prefix) = export_on(&mut base, &url);
    let mut sa = base.clone();
    sa.app.account = "alpha".into();
    let mut sb = base.clone();
    sb.app.account = "beta".into();
    let mut alpha = spawn_with_settings(sa.clone()).await;
    alpha.pool = Some(crate::helpers::pool_for(&db.name));
    let mut beta = spawn_with_settings(sb).await;
    beta.pool = Some(crate::helpers::pool_for(&db.name));
    let (client, js) = js_for(&url).await;

    // A second process of the same account is refused.
    let second = triplegain::startup::Application::build(sa).await;
    let err = second.err().expect("a second alpha is refused").to_string();
    assert!(err.contains("alpha"), "{err}");

    // Act: alpha trades; beta does not.
    trade_and_fill(&alpha).await;

    // Assert: no row crosses accounts.
    let (_, a_orders) = body(alpha.get("/api/v1/orders", Some(VIEWER)).await).await;
    let (_, b_orders) = body(beta.get("/api/v1/orders", Some(VIEWER)).await).await;
    assert!(a_orders["orders"].as_array().unwrap().len() >= 3, "{a_orders}");
    assert_eq!(b_orders["orders"].as_array().unwrap().len(), 0, "{b_orders}");
    let (_, b_pos) = body(beta.get("/api/v1/positions", Some(VIEWER)).await).await;
    assert_eq!(b_pos["positions"].as_array().unwrap().len(), 0, "{b_pos}");
    let pg = alpha.pool.as_ref().unwrap().get().await.unwrap();
    let count = |schema: &'static str, table: &'static str| {
        let pg = &pg;
        async move {
            pg.query_one(&format!("SELECT count(*) FROM {schema}.{table}"), &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    assert!(count("tg_alpha", "orders").await >= 3);
    assert_eq!(count("tg_beta", "orders").await, 0);
    assert_eq!(count("tg_beta", "positions").await, 0);
    assert_eq!(count("tg_beta", "trades").await, 0);
    assert_eq!(
        count("public", "orders").await,
        0,
        "the default account's tables stay untouched"
    );

    // No event crosses accounts: beta's subjects carry no execution event.
    let a_exec = read_stream(
        &js,
        &stream,
        &format!("{prefix}.alpha.execution_events.>"),
        Duration::from_secs(15),
        has_fill_and_position,
    )
    .await;
    assert!(has_fill_and_position(&a_exec));
    assert!(a_exec.iter().all(|g| g.account == "alpha"));
    let b_exec = read_stream(
        &js,
        &stream,
        &format!("{prefix}.beta.execution_events.>"),
        Duration::from_millis(500),
        |_| false,
    )
    .await;
    assert!(b_exec.is_empty(), "{b_exec:?}");

    // No control command crosses accounts: halting alpha leaves beta running.
    let r = request(
        &client,
        &format!("{prefix}.alpha.control.halt"),
        Some(OPERATOR),
        json!({}),
    )
    .await;
    assert_eq!(
        (r["ok"].clone(), r["account"].clone()),
        (json!(true), json!("alpha")),
        "{r}"
    );
    assert_eq!(state_of(&alpha).await, "halted");
    assert_eq!(state_of(&beta).await, "running");
    assert_eq!(audit_rows(&beta, "tg_beta").await.len(), 0, "beta audited nothing");

    // The fleet subject reaches every account: both answer, both are halted.
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.unwrap();
    let mut h = async_nats::HeaderMap::new();
    h.insert("Authorization", format!("Bearer {OPERATOR}").as_str());
    client
        .publish_with_reply_and_headers(format!("{prefix}.fleet.control.halt"), inbox, h, "{}".into())
        .await
        .unwrap();
    let mut accounts = Vec::new();
    for _ in 0..2 {
        let m = tokio::time::timeout(Duration::from_secs(10), replies.next())
            .await
            .expect("a reply per account")
            .unwrap();
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        accounts.push(v["account"].as_str().unwrap().to_owned());
    }
    accounts.sort();
    assert_eq!(accounts, vec!["alpha", "beta"]);
    assert_eq!(state_of(&beta).await, "halted");
    assert_eq!(audit_rows(&beta, "tg_beta").await.len(), 1);

    alpha.shutdown().await;
    beta.shutdown().await;
    drop_stream(&js, &stream).await;
    drop(db);
}

/// `triplegain tail`, the real binary: the consumer example prints a manual trade's execution
/// events from the stream, one JSON line each, with subject, id and topic, and stops at `--count`.
#[actix_web::test]
async fn tail_prints_a_manual_trade_s_execution_events_from_the_stream() {
    let (app, stream, prefix, js) = exporting_app().await;
    let entry = trade_and_fill(&app).await;
    let subject = format!("{prefix}.default.execution_events.BTC_USDT");
    // The events are on the stream before the tail starts (`--from-start` reads them back).
    let got = read_stream(&js, &stream, &subject, Duration::from_secs(15), has_fill_and_position).await;
    let want = got.len().min(3);
    let tail = tokio::process::Command::new(env!("CARGO_BIN_EXE_triplegain"))
        .args([
            "tail",
            "--account",
            "default",
            "--topic",
            "execution_events",
            "--from-start",
        ])
        .args(["--count", &want.to_string()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // A consumer needs neither the export switched on nor a database.
        .env_remove("DATABASE_URL")
        .env("TRIPLEGAIN__EXPORT__URL", nats_url())
        .env("TRIPLEGAIN__EXPORT__STREAM", &stream)
        .env("TRIPLEGAIN__EXPORT__SUBJECT_PREFIX", &prefix)
        .env_remove("TRIPLEGAIN_ENV")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), tail.wait_with_output())
        .await
        .expect("tail stops at --count")
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), want, "{lines:?}");
    for (line, g) in lines.iter().zip(&got) {
        assert_eq!(line["subject"], json!(subject));
        assert_eq!(line["topic"], "execution_events");
        assert_eq!(line["id"], json!(g.id), "the stream's order and ids");
        assert_eq!(line["event"]["meta"]["id"], json!(g.id));
    }
    assert!(
        got.iter().any(|g| g.event["order_id"] == json!(entry)),
        "the entry's events are on the stream"
    );
    app.shutdown().await;
}

/// Counts, in one statement (one snapshot), the stored fills and positions without the
/// execution event that describes them in the outbox, and the events without their state.
async fn outbox_disagreements(client: &deadpool_postgres::Object) -> (i64, i64) {
    let row = client
        .query_one(
            "WITH ev AS (SELECT payload->>'event_type' AS ty, payload->>'order_id' AS order_id, \
                    payload->>'position_id' AS position_id FROM event_outbox WHERE topic = 'execution_events') \
             SELECT \
               (SELECT count(*) FROM trades t WHERE NOT EXISTS (SELECT 1 FROM ev WHERE ev.order_id = t.order_id::text \
                    AND ev.ty IN ('order_filled', 'order_partially_filled'))) \
             + (SELECT count(*) FROM positions p WHERE NOT EXISTS (SELECT 1 FROM ev WHERE ev.position_id = p.id::text \
                    AND ev.ty = 'position_opened')) \
             + (SELECT count(*) FROM positions p WHERE p.status = 'closed' AND NOT EXISTS (SELECT 1 FROM ev \
                    WHERE ev.position_id = p.id::text AND ev.ty = 'position_closed')), \
               (SELECT count(*) FROM ev WHERE ev.ty IN ('order_filled', 'order_partially_filled') \
                    AND NOT EXISTS (SELECT 1 FROM trades t WHERE t.order_id::text = ev.order_id)) \
             + (SELECT count(*) FROM ev WHERE ev.ty = 'position_opened' \
                    AND NOT EXISTS (SELECT 1 FROM positions p WHERE p.id::text = ev.position_id)) \
             + (SELECT count(*) FROM ev WHERE ev.ty = 'position_closed' \
                    AND NOT EXISTS (SELECT 1 FROM positions p WHERE p.id::text = ev.position_id AND p.status = 'closed'))",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[actix_web::test]
async fn an_execution_event_is_in_the_outbox_exactly_when_the_state_it_describes_is_stored() {
    // Arrange: the export on with NATS unreachable, so every event stays in the outbox; a reader
    // compares the stored fills and positions with the outbox, one snapshot at a time, all along.
    let app = spawn_app_with(|s| {
        export_on(s, "nats://127.0.0.1:9");
        s.risk.post_trade_cooldown_min = 0;
        s.risk.post_loss_cooldown_min = 0;
    })
    .await;
    let pool = app.pool.clone().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let client = pool.get().await.unwrap();
            let (mut polls, mut seen) = (0u64, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let d = outbox_disagreements(&client).await;
                if d != (0, 0) {
                    seen.push(d);
                }
                polls += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (polls, seen)
        })
    };

    // Act: two trades open and close by hand (fills, positions opened and closed).
    for _ in 0..2 {
        buy_and_fill(&app).await;
        let pid = open_position(&app).await["id"].as_str().unwrap().to_owned();
        let (s, c) = body(
            app.post(&format!("/api/v1/positions/{pid}/close"), Some(OPERATOR), None)
                .await,
        )
        .await;
        assert_eq!(s, 200, "{c}");
        price(&app, "50100");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, p) = body(app.get(&format!("/api/v1/positions/{pid}"), Some(VIEWER)).await).await;
            if p["status"] == "closed" {
                break;
            }
            assert!(Instant::now() < deadline, "position closed: {p}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (polls, seen) = reader.await.unwrap();

    // Assert: never a fill or position without its event, nor an event ahead of its state.
    assert!(polls > 20, "the reader looked {polls} times");
    assert!(
        seen.is_empty(),
        "state and outbox disagreed (missing events, events without state): {seen:?}"
    );
    let client = app.pool.as_ref().unwrap().get().await.unwrap();
    let trades: i64 = client
        .query_one("SELECT count(*) FROM trades", &[])
        .await
        .unwrap()
        .get(0);
    let closed: i64 = client
        .query_one("SELECT count(*) FROM positions WHERE status = 'closed'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!((trades, closed), (4, 2), "two round trips stored");
    assert_eq!(outbox_disagreements(&client).await, (0, 0));
    app.shutdown().await;
}
