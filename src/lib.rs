//! TripleGain server: settings, persistence, HTTP API and adapters around the actors crate.

pub mod analysis;
pub mod backtest;
pub mod bench;
pub mod cli;
pub mod db;
pub mod kraken;
pub mod live;
pub mod llm;
pub mod market;
pub mod observability;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod telemetry;
