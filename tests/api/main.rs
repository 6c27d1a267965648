//! Integration tests: the whole app over real HTTP against a fresh PostgreSQL database per test.

mod helpers;
mod skeleton;
