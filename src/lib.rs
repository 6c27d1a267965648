//! TripleGain server: settings, persistence, HTTP API and adapters around the actors crate.

pub mod analysis;
pub mod backtest;
pub mod business_clock;
pub mod cli;
pub mod db;
pub mod export;
pub mod first_run;
pub mod kraken;
pub mod live;
pub mod llm;
pub mod market;
pub mod notifier;
pub mod observability;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod telemetry;
pub mod trade_log;
