//! The Coordinator actor: owns the RUNNING / PAUSED / HALTED lifecycle, persists it on every
//! change, restores it on start (a HALTED coordinator stays halted across restarts), and halts
//! on critical risk alerts.

use super::state::{CoordinatorState, InvalidTransition, Trigger};
use crate::clock::SharedClock;
use crate::messages::{AlertType, RiskAlert};
use crate::ports::StateStore;
use crate::supervised_basics;
use crate::supervision::{guarded, ActorError, Drain, SupervisedActor, SupervisionHandle};
use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const STATE_KEY: &str = "coordinator";

/// The persisted part of the coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersistedCoordinator {
    pub state: CoordinatorState,
    pub halt_reason: Option<String>,
    pub changed_at: DateTime<Utc>,
    pub changed_by: String,
}

/// `GET /api/v1/coordinator/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoordinatorStatus {
    pub state: CoordinatorState,
    pub halt_reason: Option<String>,
    pub changed_at: DateTime<Utc>,
    pub changed_by: String,
    pub persisted: bool,
}

/// An operator or admin command.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Result<CoordinatorStatus, InvalidTransition>, ActorError>")]
pub struct Control {
    pub trigger: Trigger,
    pub by: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<CoordinatorStatus, ActorError>")]
pub struct GetStatus;

pub struct Coordinator {
    sup: SupervisionHandle,
    store: Arc<dyn StateStore>,
    clock: SharedClock,
    current: PersistedCoordinator,
    persisted: bool,
}

impl Coordinator {
    pub fn new(sup: SupervisionHandle, store: Arc<dyn StateStore>, clock: SharedClock) -> Self {
        let now = clock.now();
        Self {
            sup,
            store,
            clock,
            current: PersistedCoordinator {
                state: CoordinatorState::Running,
                halt_reason: None,
                changed_at: now,
                changed_by: "startup".into(),
            },
            persisted: false,
        }
    }

    fn status(&self) -> CoordinatorStatus {
        CoordinatorStatus {
            state: self.current.state,
            halt_reason: self.current.halt_reason.clone(),
            changed_at: self.current.changed_at,
            changed_by: self.current.changed_by.clone(),
            persisted: self.persisted,
        }
    }

    fn apply(
        &mut self,
        trigger: Trigger,
        by: &str,
        reason: Option<String>,
        ctx: &mut Context<Self>,
    ) -> Result<CoordinatorStatus, InvalidTransition> {
        let next = self.current.state.transition(trigger)?;
        tracing::warn!(from = ?self.current.state, to = ?next, by, ?trigger, "coordinator state change");
        self.current = PersistedCoordinator {
            state: next,
            halt_reason: if next == CoordinatorState::Halted { reason } else { None },
            changed_at: self.clock.now(),
            changed_by: by.to_owned(),
        };
        self.persist(ctx);
        Ok(self.status())
    }

    /// Writes the state; the actor waits for the write so a crash never loses an acknowledged change.
    fn persist(&mut self, ctx: &mut Context<Self>) {
        let Ok(doc) = serde_json::to_value(&self.current) else {
            tracing::error!("coordinator state does not serialise");
            return;
        };
        let fut = self.store.save_state(STATE_KEY, doc);
        ctx.wait(fut.into_actor(self).map(|res, act, _| match res {
            Ok(()) => act.persisted = true,
            Err(e) => {
                act.persisted = false;
                tracing::error!(error = %e, "coordinator state not persisted");
            }
        }));
    }
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if !self.sup.on_started() {
            return;
        }
        let fut = self.store.load_state(STATE_KEY);
        ctx.wait(fut.into_actor(self).map(|res, act, _| match res {
            Ok(Some(doc)) => match serde_json::from_value::<PersistedCoordinator>(doc) {
                Ok(saved) => {
                    tracing::info!(state = ?saved.state, "coordinator state restored");
                    act.current = saved;
                    act.persisted = true;
                }
                Err(e) => tracing::error!(error = %e, "stored coordinator state is invalid; starting RUNNING"),
            },
            Ok(None) => tracing::info!("no stored coordinator state; starting RUNNING"),
            Err(e) => tracing::error!(error = %e, "coordinator state could not be loaded"),
        }));
    }
}

impl actix::Supervised for Coordinator {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.sup.on_restarting();
    }
}

impl SupervisedActor for Coordinator {
    fn supervision(&self) -> &SupervisionHandle {
        &self.sup
    }
}

supervised_basics!(Coordinator);

impl Handler<Drain> for Coordinator {
    type Result = ();
    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) {
        self.persist(ctx);
    }
}

impl Handler<Control> for Coordinator {
    type Result = Result<Result<CoordinatorStatus, InvalidTransition>, ActorError>;
    fn handle(&mut self, msg: Control, ctx: &mut Context<Self>) -> Self::Result {
        guarded(self, ctx, |act, ctx| act.apply(msg.trigger, &msg.by, msg.reason, ctx))
    }
}

impl Handler<GetStatus> for Coordinator {
    type Result = Result<CoordinatorStatus, ActorError>;
    fn handle(&mut self, _: GetStatus, ctx: &mut Context<Self>) -> Self::Result {
        guarded(self, ctx, |act, _| act.status())
    }
}

impl Handler<RiskAlert> for Coordinator {
    type Result = ();
    fn handle(&mut self, alert: RiskAlert, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, ctx| {
            let halts = alert.action_required.as_deref() == Some("halt_trading")
                || matches!(alert.alert_type, AlertType::ActorEscalated)
                || alert.breach.as_deref() == Some("max_drawdown");
            if halts && act.current.state != CoordinatorState::Halted {
                let _ = act.apply(Trigger::Halt, &alert.meta.source, Some(alert.message.clone()), ctx);
            }
        });
    }
}
