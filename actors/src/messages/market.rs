use super::{bus_event, EventMeta};
use crate::domain::{Candle, Symbol};
use crate::indicators::IndicatorSnapshot;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A closed candle from the market feed (topic `market_data`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandleClosed {
    pub meta: EventMeta,
    pub candle: Candle,
}
bus_event!(CandleClosed, "market_data", |e| e.candle.symbol.to_string());

/// A market snapshot per symbol (topic `market_data`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarketSnapshot {
    pub meta: EventMeta,
    pub symbol: Symbol,
    pub current_price: Decimal,
    pub price_24h_ago: Option<Decimal>,
    pub price_change_24h_pct: Option<Decimal>,
    pub volume_24h: Option<Decimal>,
    pub volume_vs_avg: Option<Decimal>,
    pub indicators: IndicatorSnapshot,
    /// Open time of the last candle the indicators include (of the primary timeframe in a
    /// published snapshot): it changes only when such a candle closes, however often snapshots
    /// are published. `None` before the first candle and in events written before the field.
    #[serde(default)]
    pub indicators_at: Option<DateTime<Utc>>,
    pub data_age_seconds: i64,
    pub missing_data_flags: Vec<String>,
}
bus_event!(MarketSnapshot, "market_data", |e| e.symbol.to_string());
