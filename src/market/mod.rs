//! Market feeds: simulated, Kraken public REST, CSV replay.
