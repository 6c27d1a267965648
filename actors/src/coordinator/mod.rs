//! The coordinator: lifecycle state machine, schedules, degradation, signal handling and its actor.

pub mod actor;
pub mod audit;
pub mod degradation;
pub mod flow;
pub mod resolution;
pub mod schedule;
pub mod signals;
pub mod state;

pub use actor::{
    Connect, Control, Coordinator, CoordinatorReport, CoordinatorStatus, EvaluateSchedules, GetLatestOutput, GetReport,
    GetStatus, NextDue, Statistics, TaskCommand, TaskCommandKind, TaskView,
};
pub use degradation::{Degradation, DegradationLevel};
pub use flow::{CoordinatorLinks, ExecutionLinks, RunPortfolioCheck};
pub use schedule::{
    OrchestrationSettings, ResolutionModel, Scheduler, SignalSettings, TaskName, TaskSettings, TaskState, TaskTable,
};
pub use signals::{
    ConflictInfo, ConflictRequest, ConflictResolution, ConflictResolver, ConflictType, Modifications, ResolutionAction,
};
pub use state::{CoordinatorState, InvalidTransition, Trigger};

#[cfg(test)]
mod tests;
