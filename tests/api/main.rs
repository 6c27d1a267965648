//! Integration tests: the whole app over real HTTP against a fresh PostgreSQL database per test.

mod helpers;
mod skeleton;

// Areas (each file owns its tests).
mod analysis;
mod contract;
mod events;
mod execution;
mod orchestration;
mod portfolio;
