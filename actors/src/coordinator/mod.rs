//! The coordinator: lifecycle state machine, schedules, conflicts, and its actor.

pub mod actor;
pub mod state;

pub use actor::{Control, Coordinator, CoordinatorStatus, GetStatus};
pub use state::{CoordinatorState, InvalidTransition, Trigger};
