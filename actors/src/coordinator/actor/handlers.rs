//! The Coordinator's message handlers: controls, status and report reads, schedule evaluation,
//! task commands, alerts, signals and the latest agent and portfolio updates.

use super::{
    Connect, Control, Coordinator, CoordinatorReport, CoordinatorStatus, EvaluateSchedules, GetLatestOutput, GetReport,
    GetStatus, NextDue, TaskCommand, TaskCommandKind, TaskView,
};
use crate::agents::api::AgentRun;
use crate::coordinator::state::{CoordinatorState, InvalidTransition};
use crate::messages::{
    MarketSnapshot, PortfolioUpdate, RegimeUpdate, RiskAlert, SentimentUpdate, TaSignal, TradingSignal,
};
use crate::supervision::{guarded, ActorError, Drain};
use actix::prelude::*;
use chrono::{DateTime, Utc};

/// Writes the newest state, with the routine changes not written yet.
impl Handler<Drain> for Coordinator {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) -> Self::Result {
        self.persist(ctx);
        // The decision trail queued so far is written before the process goes.
        let flush = self.audit_writer.as_ref().map(super::super::audit::AuditWriter::flush);
        Box::pin(async move {
            if let Some(flush) = flush {
                flush.await;
            }
        })
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

impl Handler<GetReport> for Coordinator {
    type Result = Result<CoordinatorReport, ActorError>;
    fn handle(&mut self, _: GetReport, ctx: &mut Context<Self>) -> Self::Result {
        guarded(self, ctx, |act, _| act.report())
    }
}

impl Handler<GetLatestOutput> for Coordinator {
    type Result = Result<Option<AgentRun>, ActorError>;
    fn handle(&mut self, msg: GetLatestOutput, ctx: &mut Context<Self>) -> Self::Result {
        guarded(self, ctx, |act, _| act.outputs.get(&(msg.agent, msg.symbol)).cloned())
    }
}

impl Handler<EvaluateSchedules> for Coordinator {
    type Result = ();
    fn handle(&mut self, msg: EvaluateSchedules, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, ctx| act.evaluate(msg.now, ctx));
    }
}

/// The market feed's business clock drives the schedules.
impl Handler<crate::messages::BusinessTick> for Coordinator {
    type Result = ();
    fn handle(&mut self, msg: crate::messages::BusinessTick, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, ctx| act.evaluate(msg.now, ctx));
    }
}

impl Handler<NextDue> for Coordinator {
    type Result = Option<DateTime<Utc>>;
    fn handle(&mut self, _: NextDue, ctx: &mut Context<Self>) -> Self::Result {
        guarded(self, ctx, |act, _| {
            if act.current.state == CoordinatorState::Halted {
                return None;
            }
            act.scheduler.next_due(&act.settings, act.level(), |t| act.connected(t))
        })
        .ok()
        .flatten()
    }
}

impl Handler<Connect> for Coordinator {
    type Result = ();
    fn handle(&mut self, msg: Connect, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, _| act.links.merge(msg.0));
    }
}

impl Handler<TaskCommand> for Coordinator {
    type Result = Result<TaskView, ActorError>;
    fn handle(&mut self, msg: TaskCommand, ctx: &mut Context<Self>) -> Self::Result {
        guarded(self, ctx, |act, ctx| {
            tracing::info!(task = %msg.task, command = ?msg.command, by = %msg.by, "task command");
            match msg.command {
                TaskCommandKind::Enable => act.scheduler.set_enabled(msg.task, true),
                TaskCommandKind::Disable => act.scheduler.set_enabled(msg.task, false),
                TaskCommandKind::Run => act.scheduler.force_run(msg.task),
            }
            act.persist(ctx);
            if msg.command == TaskCommandKind::Run {
                let now = act.clock.now();
                act.evaluate(now, ctx);
            }
            act.task_view(msg.task)
        })
    }
}

impl Handler<RiskAlert> for Coordinator {
    type Result = ();
    fn handle(&mut self, alert: RiskAlert, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, ctx| act.on_alert(alert, ctx));
    }
}

impl Handler<TradingSignal> for Coordinator {
    type Result = ();
    fn handle(&mut self, signal: TradingSignal, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, ctx| act.on_signal(signal, ctx));
    }
}

macro_rules! keep_latest {
    ($ty:ty, $field:ident) => {
        impl Handler<$ty> for Coordinator {
            type Result = ();
            fn handle(&mut self, msg: $ty, ctx: &mut Context<Self>) {
                let _ = guarded(self, ctx, |act, _| {
                    let key = msg.symbol.to_string();
                    let newer = act
                        .$field
                        .get(&key)
                        .is_none_or(|old| old.meta.timestamp <= msg.meta.timestamp);
                    if newer {
                        act.$field.insert(key, msg);
                    }
                });
            }
        }
    };
}

keep_latest!(TaSignal, ta);
keep_latest!(RegimeUpdate, regime);
keep_latest!(SentimentUpdate, sentiment);
keep_latest!(MarketSnapshot, snapshots);

impl Handler<PortfolioUpdate> for Coordinator {
    type Result = ();
    fn handle(&mut self, msg: PortfolioUpdate, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, _| act.portfolio = Some(msg));
    }
}
