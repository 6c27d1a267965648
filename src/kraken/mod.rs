//! Kraken REST client: signing, nonces, rate limits, wire DTOs, error classes, and the
//! `Exchange` port on Kraken (`KrakenExchange`) with its dead man's switch.

pub mod assets;
pub mod client;
pub mod errors;
pub mod exchange;
pub mod limits;
pub mod sign;
pub mod ws;

pub use client::{
    AddOrderParams, AddOrderResult, AssetPair, CancelResult, CancelTarget, DeadMansSwitchStatus, KrakenClient,
    KrakenConfig, KrakenCredentials, KrakenOrder, KrakenSetupError, Ticker, DEFAULT_BASE_URL,
};
pub use errors::{classify, CallKind};
pub use exchange::{
    client_order_id_from_kraken, kraken_cl_ord_id, prepare_order, spawn_dead_mans_switch, DeadMansSwitchConfig,
    DeadMansSwitchHandle, KrakenExchange, PairRegistry,
};
pub use limits::{CallBudget, Lane, RateGate, Tier, TradingLimiter};
pub use sign::{sign, FormBody, NonceSource};
pub use ws::{KrakenLive, KrakenWs, WsConfig, WsStats};
