//! Typed messages. The seed's string topics are Rust types here; nothing is
//! routed by string. Every bus event carries an [`EventMeta`].

mod analysis;
mod execution;
mod market;
mod portfolio;
mod risk;
mod system;
mod trading;

pub use analysis::{RegimeUpdate, SentimentUpdate, TaSignal};
pub use execution::{ExecutionEvent, ExecutionEventType};
pub use market::{CandleClosed, MarketSnapshot};
pub use portfolio::{HoldingsReport, PortfolioUpdate};
pub use risk::{AlertType, RiskAlert};
pub use system::{BusinessTick, Ping, SystemEvent};
pub use trading::TradingSignal;

use crate::domain::{CorrelationId, Priority};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Envelope fields every event carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMeta {
    pub id: Uuid,
    pub timestamp: DateTime<Utc>,
    pub source: String,
    pub correlation_id: CorrelationId,
    pub priority: Priority,
}

impl EventMeta {
    /// A new envelope starting a new decision chain.
    pub fn new(source: impl Into<String>, timestamp: DateTime<Utc>) -> Self {
        Self {
            id: Uuid::new_v4(),
            timestamp,
            source: source.into(),
            correlation_id: CorrelationId::new(),
            priority: Priority::Normal,
        }
    }

    /// A new envelope continuing the chain `correlation_id`.
    pub fn caused_by(source: impl Into<String>, timestamp: DateTime<Utc>, correlation_id: CorrelationId) -> Self {
        Self {
            correlation_id,
            ..Self::new(source, timestamp)
        }
    }

    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }
}

/// Implemented by every bus event: the topic name (stable, for export) and its envelope.
pub trait BusEvent: Clone + Send + 'static {
    const TOPIC: &'static str;
    fn meta(&self) -> &EventMeta;
    /// The key the `Latest` cache files this event under (usually the symbol).
    fn key(&self) -> String;
}

macro_rules! bus_event {
    ($ty:ty, $topic:literal, |$e:ident| $key:expr) => {
        impl actix::Message for $ty {
            type Result = ();
        }
        impl $crate::messages::BusEvent for $ty {
            const TOPIC: &'static str = $topic;
            fn meta(&self) -> &$crate::messages::EventMeta {
                &self.meta
            }
            fn key(&self) -> String {
                let $e = self;
                $key
            }
        }
    };
}
pub(crate) use bus_event;
