//! The coordinator: lifecycle state machine, schedules, conflicts, and its actor.

pub mod state;
