use super::{bus_event, EventMeta};
use serde::{Deserialize, Serialize};

/// Operational notifications (topic `system_events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemEvent {
    pub meta: EventMeta,
    pub event: String,
    pub details: serde_json::Value,
}
bus_event!(SystemEvent, "system_events", |e| e.event.clone());

/// Liveness probe every supervised actor answers; also the carrier of injected faults.
#[derive(Debug, Clone, Copy, actix::Message)]
#[rtype(result = "Result<(), crate::supervision::ActorError>")]
pub struct Ping;

/// The business clock moved (topic `business_ticks`): published by the market data actor after
/// each delivered batch of candles, so schedules run on business time in live, paper and replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusinessTick {
    pub meta: EventMeta,
    pub now: chrono::DateTime<chrono::Utc>,
}
bus_event!(BusinessTick, "business_ticks", |_e| "clock".to_owned());
