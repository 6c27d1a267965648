//! TripleGain server: settings, persistence, HTTP API and adapters around the actors crate.
