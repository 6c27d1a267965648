//! `GET /api/v1/events`: the live event stream (Server-Sent Events). Each connection gets its own
//! forwarding actor subscribed to the operational topics; a slow client loses events (counted in
//! the log) instead of slowing the bus, and a closed connection unsubscribes.

use super::auth::Viewer;
use crate::startup::AppState;
use actix::prelude::*;
use actix_web::{web, HttpResponse};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc;
use triplegain_actors::bus::{Bus, SubscriberId};
use triplegain_actors::messages::{BusEvent, ExecutionEvent, PortfolioUpdate, RiskAlert, SystemEvent, TradingSignal};

/// Events buffered per client before the oldest unsent ones are dropped.
const CLIENT_BUFFER: usize = 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/events", web::get().to(events));
}

struct Forwarder {
    tx: mpsc::Sender<web::Bytes>,
    bus: Bus,
    ids: Vec<(&'static str, SubscriberId)>,
    dropped: u64,
}

impl Forwarder {
    fn forward<E: BusEvent + Serialize>(&mut self, event: &E, ctx: &mut Context<Self>) {
        let Ok(json) = serde_json::to_string(event) else { return };
        let frame = format!("event: {}\ndata: {json}\n\n", E::TOPIC);
        match self.tx.try_send(web::Bytes::from(frame)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped += 1;
                tracing::warn!(dropped = self.dropped, "event stream client is slow; event dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => ctx.stop(),
        }
    }
}

impl Actor for Forwarder {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(CLIENT_BUFFER);
        let me = ctx.address();
        self.ids = vec![
            (
                "risk_alerts",
                self.bus.risk_alerts.subscribe("event_stream", me.clone().recipient()),
            ),
            (
                "execution_events",
                self.bus
                    .execution_events
                    .subscribe("event_stream", me.clone().recipient()),
            ),
            (
                "trading_signals",
                self.bus
                    .trading_signals
                    .subscribe("event_stream", me.clone().recipient()),
            ),
            (
                "portfolio_updates",
                self.bus
                    .portfolio_updates
                    .subscribe("event_stream", me.clone().recipient()),
            ),
            (
                "system_events",
                self.bus.system_events.subscribe("event_stream", me.recipient()),
            ),
        ];
        // A client that went away is noticed even when no event flows.
        ctx.run_interval(std::time::Duration::from_secs(5), |act, ctx| {
            if act.tx.is_closed() {
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        for (topic, id) in self.ids.drain(..) {
            let _ = match topic {
                "risk_alerts" => self.bus.risk_alerts.unsubscribe(id),
                "execution_events" => self.bus.execution_events.unsubscribe(id),
                "trading_signals" => self.bus.trading_signals.unsubscribe(id),
                "portfolio_updates" => self.bus.portfolio_updates.unsubscribe(id),
                _ => self.bus.system_events.unsubscribe(id),
            };
        }
    }
}

macro_rules! forward {
    ($($ty:ty),+) => {$(
        impl Handler<$ty> for Forwarder {
            type Result = ();
            fn handle(&mut self, msg: $ty, ctx: &mut Context<Self>) {
                self.forward(&msg, ctx);
            }
        }
    )+};
}
forward!(RiskAlert, ExecutionEvent, TradingSignal, PortfolioUpdate, SystemEvent);

/// Live event stream (Server-Sent Events): risk alerts, execution events, trading signals,
/// portfolio updates and system events, each as `event: <topic>` with a JSON `data:` line.
#[utoipa::path(get, path = "/api/v1/events", security(("bearer" = [])),
    responses((status = 200, description = "text/event-stream of bus events", content_type = "text/event-stream")))]
pub async fn events(_auth: Viewer, state: web::Data<AppState>) -> HttpResponse {
    let (tx, rx) = mpsc::channel::<web::Bytes>(CLIENT_BUFFER);
    let bus = state.bus.clone();
    // Subscribed before the response starts: every event published after the client sees
    // `: connected` reaches it.
    Forwarder::create(move |ctx| {
        ctx.set_mailbox_capacity(CLIENT_BUFFER);
        let me = ctx.address();
        let ids = vec![
            (
                "risk_alerts",
                bus.risk_alerts.subscribe("event_stream", me.clone().recipient()),
            ),
            (
                "execution_events",
                bus.execution_events.subscribe("event_stream", me.clone().recipient()),
            ),
            (
                "trading_signals",
                bus.trading_signals.subscribe("event_stream", me.clone().recipient()),
            ),
            (
                "portfolio_updates",
                bus.portfolio_updates.subscribe("event_stream", me.clone().recipient()),
            ),
            (
                "system_events",
                bus.system_events.subscribe("event_stream", me.recipient()),
            ),
        ];
        Forwarder {
            tx,
            bus,
            ids,
            dropped: 0,
        }
    });
    let hello = futures::stream::once(async { Ok::<_, actix_web::Error>(web::Bytes::from_static(b": connected\n\n")) });
    let body = hello.chain(tokio_stream_from(rx));
    HttpResponse::Ok()
        .insert_header(("Content-Type", "text/event-stream"))
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(body)
}

fn tokio_stream_from(
    rx: mpsc::Receiver<web::Bytes>,
) -> impl futures::Stream<Item = Result<web::Bytes, actix_web::Error>> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok(b), rx)) })
}
