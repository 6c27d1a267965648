//! `GET /api/v1/events`: the live event stream (Server-Sent Events). Each connection gets its own
//! forwarding actor subscribed to the requested topics (`?types=a,b`, default all); a slow client
//! loses events (counted in the log) instead of slowing the bus, and a closed connection
//! unsubscribes.

use super::auth::Viewer;
use super::error::ApiError;
use super::state::AppState;
use actix::prelude::*;
use actix_web::{web, HttpResponse};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use triplegain_actors::bus::{Bus, SubscriberId};
use triplegain_actors::messages::{
    BusEvent, ExecutionEvent, PortfolioUpdate, RegimeUpdate, RiskAlert, SentimentUpdate, SystemEvent, TaSignal,
    TradingSignal,
};

/// Events buffered per client before the oldest unsent ones are dropped.
const CLIENT_BUFFER: usize = 1024;

/// The event types a client may ask for: each is a bus topic, sent as `event: <type>`. Market
/// data (candles, snapshots, clock ticks) is not streamed: it is per-candle volume, read through
/// the analysis routes instead.
pub const EVENT_TYPES: [&str; 8] = [
    "risk_alerts",
    "execution_events",
    "trading_signals",
    "portfolio_updates",
    "system_events",
    "ta_signals",
    "regime_updates",
    "sentiment_updates",
];

struct Forwarder {
    tx: mpsc::Sender<web::Bytes>,
    bus: Bus,
    ids: Vec<(&'static str, SubscriberId)>,
    dropped: u64,
    keep_alive: std::time::Duration,
}

const SUBSCRIBER: &str = "event_stream";

fn subscribe(bus: &Bus, topic: &'static str, me: &Addr<Forwarder>) -> Option<SubscriberId> {
    let me = me.clone();
    Some(match topic {
        "risk_alerts" => bus.risk_alerts.subscribe(SUBSCRIBER, me.recipient()),
        "execution_events" => bus.execution_events.subscribe(SUBSCRIBER, me.recipient()),
        "trading_signals" => bus.trading_signals.subscribe(SUBSCRIBER, me.recipient()),
        "portfolio_updates" => bus.portfolio_updates.subscribe(SUBSCRIBER, me.recipient()),
        "system_events" => bus.system_events.subscribe(SUBSCRIBER, me.recipient()),
        "ta_signals" => bus.ta_signals.subscribe(SUBSCRIBER, me.recipient()),
        "regime_updates" => bus.regime_updates.subscribe(SUBSCRIBER, me.recipient()),
        "sentiment_updates" => bus.sentiment_updates.subscribe(SUBSCRIBER, me.recipient()),
        _ => return None,
    })
}

fn unsubscribe(bus: &Bus, topic: &str, id: SubscriberId) {
    let _ = match topic {
        "risk_alerts" => bus.risk_alerts.unsubscribe(id),
        "execution_events" => bus.execution_events.unsubscribe(id),
        "trading_signals" => bus.trading_signals.unsubscribe(id),
        "portfolio_updates" => bus.portfolio_updates.unsubscribe(id),
        "system_events" => bus.system_events.unsubscribe(id),
        "ta_signals" => bus.ta_signals.unsubscribe(id),
        "regime_updates" => bus.regime_updates.unsubscribe(id),
        "sentiment_updates" => bus.sentiment_updates.unsubscribe(id),
        _ => false,
    };
}

impl Forwarder {
    fn forward<E: BusEvent + Serialize>(&mut self, event: &E, ctx: &mut Context<Self>) {
        let Ok(json) = serde_json::to_string(event) else { return };
        // `id:` is the event's id, so a client can tell what it has seen.
        let frame = format!("id: {}\nevent: {}\ndata: {json}\n\n", event.meta().id, E::TOPIC);
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
        // A client that went away is noticed even when no event flows.
        ctx.run_interval(std::time::Duration::from_secs(5), |act, ctx| {
            if act.tx.is_closed() {
                ctx.stop();
            }
        });
        // A comment line now and then keeps proxies and browsers from timing the stream out.
        ctx.run_interval(self.keep_alive, |act, ctx| {
            if let Err(mpsc::error::TrySendError::Closed(_)) =
                act.tx.try_send(web::Bytes::from_static(b": keep-alive\n\n"))
            {
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        for (topic, id) in self.ids.drain(..) {
            unsubscribe(&self.bus, topic, id);
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
forward!(
    RiskAlert,
    ExecutionEvent,
    TradingSignal,
    PortfolioUpdate,
    SystemEvent,
    TaSignal,
    RegimeUpdate,
    SentimentUpdate
);

/// Query of the event stream.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Comma-separated event types to stream (default: all): risk_alerts, execution_events,
    /// trading_signals, portfolio_updates, system_events, ta_signals, regime_updates,
    /// sentiment_updates.
    #[param(
        pattern = "^(risk_alerts|execution_events|trading_signals|portfolio_updates|system_events|ta_signals|regime_updates|sentiment_updates)( *, *(risk_alerts|execution_events|trading_signals|portfolio_updates|system_events|ta_signals|regime_updates|sentiment_updates))*$"
    )]
    pub types: Option<String>,
}

/// The requested types, each known; 422 naming `types` otherwise.
fn requested_types(q: &EventsQuery) -> Result<Vec<&'static str>, ApiError> {
    let Some(raw) = q.types.as_deref() else {
        return Ok(EVENT_TYPES.to_vec());
    };
    let mut out: Vec<&'static str> = Vec::new();
    for name in raw.split(',').map(str::trim) {
        let Some(known) = EVENT_TYPES.iter().find(|t| **t == name) else {
            return Err(ApiError::validation(
                "types",
                format!("unknown event type {name:?}; known: {}", EVENT_TYPES.join(", ")),
            ));
        };
        if !out.contains(known) {
            out.push(known);
        }
    }
    Ok(out)
}

/// Live event stream (Server-Sent Events): each bus event as `id: <event id>`, `event: <type>`
/// and a JSON `data:` line, with a `: keep-alive` comment every `server.sse_keep_alive_secs`;
/// `?types=a,b` streams only those types.
#[utoipa::path(get, path = "/api/v1/events", params(EventsQuery), security(("bearer" = [])),
    responses((status = 200, description = "text/event-stream of bus events", content_type = "text/event-stream"),
        (status = 422, description = "unknown event type in `types`"),
        (status = 429, description = "the token already holds api.guards.max_event_streams_per_token streams")))]
pub async fn events(
    auth: Viewer,
    state: web::Data<AppState>,
    q: web::Query<EventsQuery>,
    limits: Option<web::Data<super::limits::RateLimits>>,
) -> Result<HttpResponse, ApiError> {
    let types = requested_types(&q)?;
    // Concurrent streams per token are capped (`api.guards.max_event_streams_per_token`); the
    // slot is held by the response body and freed when the client goes.
    let slot = limits.map(|l| l.event_stream_slot(&auth.caller.name)).transpose()?;
    let (tx, rx) = mpsc::channel::<web::Bytes>(CLIENT_BUFFER);
    let bus = state.bus.clone();
    let keep_alive = state.sse_keep_alive;
    // Subscribed before the response starts: every event published after the client sees
    // `: connected` reaches it.
    Forwarder::create(move |ctx| {
        ctx.set_mailbox_capacity(CLIENT_BUFFER);
        let me = ctx.address();
        let ids = types
            .into_iter()
            .filter_map(|t| subscribe(&bus, t, &me).map(|id| (t, id)))
            .collect();
        Forwarder {
            tx,
            bus,
            ids,
            dropped: 0,
            keep_alive,
        }
    });
    let hello = futures::stream::once(async { Ok::<_, actix_web::Error>(web::Bytes::from_static(b": connected\n\n")) });
    let body = hello.chain(tokio_stream_from(rx)).map(move |item| {
        let _held = &slot;
        item
    });
    Ok(HttpResponse::Ok()
        .insert_header(("Content-Type", "text/event-stream"))
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(body))
}

fn tokio_stream_from(
    rx: mpsc::Receiver<web::Bytes>,
) -> impl futures::Stream<Item = Result<web::Bytes, actix_web::Error>> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok(b), rx)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_default_to_all_and_unknown_ones_name_the_field() {
        assert_eq!(requested_types(&EventsQuery::default()).unwrap(), EVENT_TYPES.to_vec());
        let q = EventsQuery {
            types: Some("system_events, risk_alerts,system_events".into()),
        };
        assert_eq!(requested_types(&q).unwrap(), vec!["system_events", "risk_alerts"]);
        for bad in ["bogus", "", "system_events,,risk_alerts", "candles"] {
            let err = requested_types(&EventsQuery {
                types: Some(bad.into()),
            })
            .unwrap_err();
            assert_eq!(err.status.as_u16(), 422, "{bad}");
            assert_eq!(err.body.field.as_deref(), Some("types"), "{bad}");
        }
    }
}
