//! From the in-process bus to the export: an actor subscribed to every exported topic. Its
//! handlers never wait: a money or audit event goes to the outbox writer's unbounded queue (the
//! writer commits it to `event_outbox` before anything is sent to NATS), an analysis event to
//! the analysis publisher's bounded buffer, or is dropped and counted when that is full.

use super::{is_durable, ExportSettings, ExportStats};
use actix::prelude::*;
use deadpool_postgres::Pool;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use triplegain_actors::bus::Bus;
use triplegain_actors::messages::{
    BusEvent, ExecutionEvent, PortfolioUpdate, RegimeUpdate, RiskAlert, SentimentUpdate, SystemEvent, TaSignal,
    TradingSignal,
};
use uuid::Uuid;

/// Mailbox of the bridge: the bus drops (and counts) deliveries beyond it.
const BRIDGE_MAILBOX: usize = 65_536;
/// The most rows the writer commits in one transaction.
const WRITE_BATCH: usize = 512;

/// One event on its way out.
#[derive(Debug, Clone)]
pub struct ExportEvent {
    pub id: Uuid,
    pub topic: &'static str,
    pub symbol: Option<String>,
    pub payload: serde_json::Value,
}

/// The symbol an event is about (the subject's last token), if any.
pub trait Exported: BusEvent + Serialize {
    fn symbol(&self) -> Option<String>;
}

macro_rules! exported_by_symbol {
    ($($ty:ty),+) => {$(
        impl Exported for $ty {
            fn symbol(&self) -> Option<String> {
                Some(self.symbol.to_string())
            }
        }
    )+};
}
exported_by_symbol!(ExecutionEvent, TaSignal, RegimeUpdate, SentimentUpdate, TradingSignal);

impl Exported for RiskAlert {
    fn symbol(&self) -> Option<String> {
        self.symbol.as_ref().map(ToString::to_string)
    }
}

impl Exported for PortfolioUpdate {
    fn symbol(&self) -> Option<String> {
        None
    }
}

impl Exported for SystemEvent {
    fn symbol(&self) -> Option<String> {
        None
    }
}

impl ExportEvent {
    /// The export form of a bus event.
    ///
    /// # Errors
    /// When the event does not serialise (not expected).
    pub fn of<E: Exported>(event: &E) -> Result<Self, serde_json::Error> {
        Ok(Self {
            id: event.meta().id,
            topic: E::TOPIC,
            symbol: event.symbol(),
            payload: serde_json::to_value(event)?,
        })
    }
}

struct Bridge {
    outbox: mpsc::UnboundedSender<ExportEvent>,
    analysis: mpsc::Sender<ExportEvent>,
    stats: Arc<ExportStats>,
}

impl Actor for Bridge {
    type Context = Context<Self>;
}

impl Bridge {
    fn take<E: Exported>(&mut self, event: &E) {
        if super::written_by_manager(E::TOPIC, &event.meta().source) {
            return; // already in the outbox, written with the state it describes
        }
        let ev = match ExportEvent::of(event) {
            Ok(ev) => ev,
            Err(e) => {
                tracing::error!(topic = E::TOPIC, error = %e, "event not exportable");
                return;
            }
        };
        if is_durable(ev.topic) {
            if self.outbox.send(ev).is_err() {
                tracing::error!(topic = E::TOPIC, "outbox writer stopped; event not exported");
            }
            return;
        }
        let topic = ev.topic;
        if self.analysis.try_send(ev).is_err() {
            ExportStats::add(&self.stats.dropped, 1);
            metrics::counter!("triplegain_export_dropped_total", "topic" => topic).increment(1);
        }
    }
}

macro_rules! bridge_handlers {
    ($($ty:ty),+) => {$(
        impl Handler<$ty> for Bridge {
            type Result = ();
            fn handle(&mut self, msg: $ty, _: &mut Context<Self>) {
                self.take(&msg);
            }
        }
    )+};
}
bridge_handlers!(
    ExecutionEvent,
    PortfolioUpdate,
    RiskAlert,
    SystemEvent,
    TaSignal,
    RegimeUpdate,
    SentimentUpdate,
    TradingSignal
);

const SUBSCRIBER: &str = "event_export";

/// Starts the bridge and subscribes it to every exported bus topic.
pub fn subscribe(
    bus: &Bus,
    settings: &ExportSettings,
    outbox: mpsc::UnboundedSender<ExportEvent>,
    analysis: mpsc::Sender<ExportEvent>,
    stats: Arc<ExportStats>,
) {
    let addr = Bridge::create(|ctx| {
        ctx.set_mailbox_capacity(BRIDGE_MAILBOX);
        Bridge {
            outbox,
            analysis,
            stats,
        }
    });
    let on = |t: &str| settings.exports(t);
    // Money and audit events reach the outbox reliably (a full mailbox queues, never drops);
    // analysis events may be dropped under pressure, and are counted.
    if on("execution_events") {
        bus.execution_events
            .subscribe_reliable(SUBSCRIBER, addr.clone().recipient());
    }
    if on("portfolio_updates") {
        bus.portfolio_updates
            .subscribe_reliable(SUBSCRIBER, addr.clone().recipient());
    }
    if on("risk_alerts") {
        bus.risk_alerts.subscribe_reliable(SUBSCRIBER, addr.clone().recipient());
    }
    if on("system_events") {
        bus.system_events
            .subscribe_reliable(SUBSCRIBER, addr.clone().recipient());
    }
    if on("ta_signals") {
        bus.ta_signals.subscribe(SUBSCRIBER, addr.clone().recipient());
    }
    if on("regime_updates") {
        bus.regime_updates.subscribe(SUBSCRIBER, addr.clone().recipient());
    }
    if on("sentiment_updates") {
        bus.sentiment_updates.subscribe(SUBSCRIBER, addr.clone().recipient());
    }
    if on("trading_signals") {
        bus.trading_signals.subscribe(SUBSCRIBER, addr.recipient());
    }
}

/// Commits queued money and audit events to `event_outbox` in arrival order, in batches, and
/// wakes the relay. A database error keeps the batch and retries it (never drops it). At stop it
/// writes what is queued, then ends.
pub async fn outbox_writer(
    pool: Pool,
    mut rx: mpsc::UnboundedReceiver<ExportEvent>,
    wake: Arc<tokio::sync::Notify>,
    stats: Arc<ExportStats>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut batch: Vec<ExportEvent> = Vec::with_capacity(WRITE_BATCH);
    let mut stopping = false;
    loop {
        if batch.is_empty() {
            if stopping {
                while batch.len() < WRITE_BATCH {
                    match rx.try_recv() {
                        Ok(ev) => batch.push(ev),
                        Err(_) => break,
                    }
                }
                if batch.is_empty() {
                    return;
                }
            } else {
                tokio::select! {
                    n = rx.recv_many(&mut batch, WRITE_BATCH) => {
                        if n == 0 {
                            return; // every sender is gone: the bridge stopped
                        }
                    }
                    _ = stop.changed() => {
                        stopping = true;
                        continue;
                    }
                }
            }
        }
        match write_batch(&pool, &batch).await {
            Ok(()) => {
                ExportStats::add(&stats.outboxed, batch.len() as u64);
                batch.clear();
                wake.notify_one();
            }
            Err(e) => {
                metrics::counter!("triplegain_export_errors_total", "stage" => "outbox_write").increment(1);
                tracing::error!(error = %format!("{e:#}"), events = batch.len(), "outbox write failed; retrying");
                if stopping {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Writes `events` to the outbox in one transaction.
///
/// # Errors
/// The database error.
pub async fn write_batch(pool: &Pool, events: &[ExportEvent]) -> anyhow::Result<()> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    for ev in events {
        crate::db::outbox::append(&*tx, ev.id, ev.topic, ev.symbol.as_deref(), &ev.payload).await?;
    }
    tx.commit().await?;
    Ok(())
}
