//! TripleGain server: settings, persistence, HTTP API and adapters around the actors crate.

pub mod kraken;
pub mod llm;
pub mod market;
