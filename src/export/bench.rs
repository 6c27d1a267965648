//! `triplegain bench-export`: export throughput beside a raw async-nats publish loop, in one run.
//!
//! Needs NATS with JetStream (`export.url`) and PostgreSQL (`DATABASE_URL`). It works in a fresh
//! stream and subject prefix and a fresh account schema, all removed at the end.

use super::bridge::{write_batch, ExportEvent};
use super::relay::{publish_analysis, Relay};
use super::{ensure_stream, headers, jetstream, subject, ExportSettings, ExportStats};
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One measured line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measure {
    pub name: &'static str,
    pub events: u64,
    pub secs: f64,
    pub per_sec: f64,
}

impl Measure {
    fn new(name: &'static str, events: u64, elapsed: Duration) -> Self {
        let secs = elapsed.as_secs_f64();
        Self {
            name,
            events,
            secs,
            per_sec: if secs > 0.0 { events as f64 / secs } else { 0.0 },
        }
    }
}

fn event(i: u64) -> ExportEvent {
    // The size of a real execution event (about 450 bytes of JSON).
    ExportEvent {
        id: uuid::Uuid::new_v4(),
        topic: "execution_events",
        symbol: Some("BTC/USDT".into()),
        payload: serde_json::json!({
            "meta": {"id": uuid::Uuid::new_v4(), "timestamp": "2026-01-01T00:00:00Z", "source": "execution_manager",
                     "correlation_id": uuid::Uuid::new_v4(), "priority": "normal"},
            "event_type": "order_filled", "order_id": uuid::Uuid::new_v4().to_string(), "client_order_id": null,
            "symbol": "BTC/USDT", "side": "buy", "status": "filled", "size": "0.02", "fill_price": format!("{}", 50_000 + i % 100),
            "fee": "0.26", "realized_pnl": null, "position_id": null
        }),
    }
}

/// Runs every measurement with `events` events each.
///
/// # Errors
/// NATS or PostgreSQL unreachable.
pub async fn run(base: &ExportSettings, database_url: &str, events: u64) -> anyhow::Result<Vec<Measure>> {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut settings = base.clone();
    settings.stream = format!("BENCH_{}", &tag[..10]);
    settings.subject_prefix = format!("bench{}", &tag[..10]);
    settings.max_age_secs = 3600;
    settings.max_bytes = 1 << 30;
    let account = format!("bench_{}", &tag[..10]);
    let client = super::connect(&settings, "triplegain-bench", true).await?;
    let js = jetstream(client.clone(), &settings);
    ensure_stream(&js, &settings).await?;
    let mut out = Vec::new();
    let bodies: Vec<(ExportEvent, Vec<u8>)> = (0..events)
        .map(|i| {
            let e = event(i);
            let body = serde_json::to_vec(&e.payload).unwrap_or_default();
            (e, body)
        })
        .collect();
    let subj = subject(&settings.subject_prefix, &account, "execution_events", Some("BTC/USDT"));

    // 1. Raw async-nats, core publish (no stream, no acknowledgement): the wire's ceiling.
    let raw_subject = format!("{}_raw.x", settings.subject_prefix);
    let t = Instant::now();
    for (_, body) in &bodies {
        client.publish(raw_subject.clone(), body.clone().into()).await?;
    }
    client.flush().await?;
    out.push(Measure::new("raw core publish (no ack)", events, t.elapsed()));

    // 2. Raw async-nats JetStream publish, acknowledgements awaited with 1 024 in flight.
    let t = Instant::now();
    let mut in_flight = FuturesOrdered::new();
    for (e, body) in &bodies {
        if in_flight.len() >= 1024 {
            if let Some(r) = in_flight.next().await {
                let _: async_nats::jetstream::publish::PublishAck = r?;
            }
        }
        let h = headers(&e.id.to_string(), e.topic, &account, None);
        let ack = js.publish_with_headers(subj.clone(), h, body.clone().into()).await?;
        in_flight.push_back(ack.into_future());
    }
    while let Some(r) = in_flight.next().await {
        r?;
    }
    out.push(Measure::new("raw JetStream publish + ack", events, t.elapsed()));

    // 3. The export's direct path (analysis topics): channel -> publisher -> acknowledged.
    let stats = Arc::new(ExportStats::default());
    let (tx, rx) = tokio::sync::mpsc::channel(settings.analysis_buffer.max(events as usize));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let publisher = tokio::spawn(publish_analysis(
        js.clone(),
        rx,
        settings.subject_prefix.clone(),
        account.clone(),
        stats.clone(),
        stop_rx,
    ));
    let t = Instant::now();
    for i in 0..events {
        let mut e = event(i);
        e.topic = "ta_signals";
        if tx.send(e).await.is_err() {
            break;
        }
    }
    while ExportStats::get(&stats.published) + ExportStats::get(&stats.dropped) < events {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    out.push(Measure::new(
        "export direct path + ack",
        ExportStats::get(&stats.published),
        t.elapsed(),
    ));
    let _ = stop.send(true);
    let _ = publisher.await;

    // 4. The outbox: write (one transaction per 512 events) then relay (publish, ack, delete).
    let db = crate::settings::DatabaseSettings::default();
    let pool = crate::db::account::build_account_pool(database_url, &db, &account)?;
    crate::db::account::prepare_account_schema(&pool, &account, true).await?;
    crate::db::migrate(&pool).await?;
    let result = async {
        let t = Instant::now();
        let evs: Vec<ExportEvent> = bodies.iter().map(|(e, _)| e.clone()).collect();
        for chunk in evs.chunks(512) {
            write_batch(&pool, chunk).await?;
        }
        out.push(Measure::new("outbox write (PostgreSQL)", events, t.elapsed()));
        let relay = Relay {
            pool: pool.clone(),
            js: js.clone(),
            settings: settings.clone(),
            account: account.clone(),
            stats: Arc::new(ExportStats::default()),
            wake: Arc::new(tokio::sync::Notify::new()),
        };
        let t = Instant::now();
        let mut relayed = 0u64;
        loop {
            let r = relay.round().await?;
            if r.relayed == 0 {
                break;
            }
            relayed += r.relayed as u64;
        }
        // Those ids were already published in step 2: the stream drops them as duplicates, so
        // this is the relay's rate with the acknowledgement path, storage aside.
        out.push(Measure::new(
            "outbox relay + ack + delete (duplicates)",
            relayed,
            t.elapsed(),
        ));
        let fresh: Vec<ExportEvent> = (0..events).map(event).collect();
        for chunk in fresh.chunks(512) {
            write_batch(&pool, chunk).await?;
        }
        let t = Instant::now();
        let mut relayed = 0u64;
        loop {
            let r = relay.round().await?;
            if r.relayed == 0 {
                break;
            }
            relayed += r.relayed as u64;
        }
        out.push(Measure::new("outbox relay + ack + delete (new)", relayed, t.elapsed()));
        anyhow::Ok(())
    }
    .await;
    if let Some(schema) = crate::db::account::schema_for(&account) {
        if let Ok(c) = pool.get().await {
            let _ = c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await;
        }
    }
    let _ = js.delete_stream(&settings.stream).await;
    result?;
    Ok(out)
}
