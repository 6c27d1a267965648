//! The coordinator lifecycle as one transition table.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CoordinatorState {
    Running,
    Paused,
    Halted,
}

/// What asks the coordinator to change state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Operator pause.
    Pause,
    /// Operator resume (from PAUSED only).
    Resume,
    /// Operator or circuit-breaker halt.
    Halt,
    /// Admin resume from HALTED; allowed only once the cause is cleared.
    AdminResume { cause_cleared: bool },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("cannot {trigger:?} while {from:?}: {reason}")]
pub struct InvalidTransition {
    pub from: CoordinatorState,
    pub trigger: Trigger,
    pub reason: &'static str,
}

impl CoordinatorState {
    /// # Errors
    /// [`InvalidTransition`] when the table has no edge for `(self, trigger)`.
    pub fn transition(self, trigger: Trigger) -> Result<Self, InvalidTransition> {
        use CoordinatorState::*;
        let err = |reason| {
            Err(InvalidTransition {
                from: self,
                trigger,
                reason,
            })
        };
        match (self, trigger) {
            (Running, Trigger::Pause) => Ok(Paused),
            (Paused, Trigger::Pause) => err("already paused"),
            (Paused, Trigger::Resume) => Ok(Running),
            (Running, Trigger::Resume) => err("already running"),
            (Halted, Trigger::Pause | Trigger::Resume) => {
                err("halted; an admin must resume after the cause is cleared")
            }
            (Running | Paused, Trigger::Halt) => Ok(Halted),
            (Halted, Trigger::Halt) => err("already halted"),
            (Halted, Trigger::AdminResume { cause_cleared: true }) => Ok(Running),
            (Halted, Trigger::AdminResume { cause_cleared: false }) => err("the halt cause is not cleared"),
            (Running | Paused, Trigger::AdminResume { .. }) => err("not halted"),
        }
    }

    /// Whether new entries may be placed.
    pub fn trades(self) -> bool {
        self == Self::Running
    }
}

#[cfg(test)]
mod tests {
    use super::CoordinatorState::*;
    use super::*;

    #[test]
    fn transition_table() {
        let cases = [
            (Running, Trigger::Pause, Some(Paused)),
            (Paused, Trigger::Resume, Some(Running)),
            (Running, Trigger::Halt, Some(Halted)),
            (Paused, Trigger::Halt, Some(Halted)),
            (Halted, Trigger::Resume, None),
            (Halted, Trigger::AdminResume { cause_cleared: false }, None),
            (Halted, Trigger::AdminResume { cause_cleared: true }, Some(Running)),
            (Running, Trigger::Resume, None),
        ];
        for (from, trig, want) in cases {
            assert_eq!(from.transition(trig).ok(), want, "{from:?} --{trig:?}-->");
        }
    }
}
