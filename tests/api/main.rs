//! Integration tests: the whole app over real HTTP against a fresh PostgreSQL database per test.

mod helpers;
#[path = "../common/kraken_fake.rs"]
mod kraken_fake;
#[path = "../common/kraken_wire.rs"]
mod kraken_wire;
mod skeleton;

// Areas (each file owns its tests).
mod analysis;
mod contract;
mod events;
mod execution;
mod export;
mod generated;
mod money;
mod operators;
mod orchestration;
mod portfolio;
mod schemathesis;
