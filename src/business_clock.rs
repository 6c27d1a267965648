//! The business clock of paper and simulated runs survives a restart. On a database the clock's
//! time is saved every second (and at drain) under the state key `business_clock`; at start the
//! clock and the simulated market resume from it when it is ahead of the wall clock, so the daily
//! and weekly P&L periods, cooldowns and schedules continue instead of rewinding.

use actix::prelude::*;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use triplegain_actors::clock::SharedClock;
use triplegain_actors::ports::StateStore;
use triplegain_actors::supervised_basics;
use triplegain_actors::supervision::{start_supervised, Drain, Registry, SupervisedActor, SupervisionHandle};

/// The state document holding the last saved business time.
pub const STATE_KEY: &str = "business_clock";

/// How often the keeper saves the clock.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// The business time a previous run reached, if one was saved.
pub async fn saved(store: &Arc<dyn StateStore>) -> Option<DateTime<Utc>> {
    match store.load_state(STATE_KEY).await {
        Ok(Some(v)) => v["now"].as_str().and_then(|s| s.parse::<DateTime<Utc>>().ok()),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "business clock not read; starting at wall time");
            None
        }
    }
}

fn state_of(now: DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({ "now": now.to_rfc3339() })
}

/// Where a paper or simulated run starts its business clock: where the last run stopped when
/// that is ahead of the wall clock, else now.
pub fn resume_from(saved: Option<DateTime<Utc>>, wall: DateTime<Utc>) -> DateTime<Utc> {
    match saved {
        Some(t) if t > wall => t,
        _ => wall,
    }
}

/// Saves the business clock while the process runs.
pub struct ClockKeeper {
    sup: SupervisionHandle,
    clock: SharedClock,
    store: Arc<dyn StateStore>,
    last_saved: Option<DateTime<Utc>>,
}

impl ClockKeeper {
    pub fn start(registry: &Registry, clock: SharedClock, store: Arc<dyn StateStore>) -> Addr<Self> {
        start_supervised(registry, "clock_keeper", false, 16, move |sup| Self {
            sup,
            clock,
            store,
            last_saved: None,
        })
    }

    fn save(&mut self, ctx: &mut Context<Self>) {
        let now = self.clock.now();
        if self.last_saved == Some(now) {
            return;
        }
        self.last_saved = Some(now);
        let store = self.store.clone();
        ctx.spawn(
            async move {
                if let Err(e) = store.save_state(STATE_KEY, state_of(now)).await {
                    tracing::warn!(error = %e, "business clock not saved");
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for ClockKeeper {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        self.sup.on_started();
        ctx.run_interval(SAVE_EVERY, |act, ctx| act.save(ctx));
    }
}

impl actix::Supervised for ClockKeeper {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.sup.on_restarting();
    }
}

impl SupervisedActor for ClockKeeper {
    fn supervision(&self) -> &SupervisionHandle {
        &self.sup
    }
}

supervised_basics!(ClockKeeper);

impl Handler<Drain> for ClockKeeper {
    type Result = ResponseFuture<()>;
    /// Answers once the final time is written, so a drained process resumes exactly there.
    fn handle(&mut self, _: Drain, _: &mut Context<Self>) -> Self::Result {
        let now = self.clock.now();
        self.last_saved = Some(now);
        let store = self.store.clone();
        Box::pin(async move {
            if let Err(e) = store.save_state(STATE_KEY, state_of(now)).await {
                tracing::warn!(error = %e, "business clock not saved at drain");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resumes_only_forward() {
        let wall: DateTime<Utc> = "2026-01-10T00:00:00Z".parse().unwrap();
        let ahead: DateTime<Utc> = "2026-01-12T06:00:00Z".parse().unwrap();
        let behind: DateTime<Utc> = "2026-01-09T00:00:00Z".parse().unwrap();
        assert_eq!(resume_from(Some(ahead), wall), ahead);
        assert_eq!(resume_from(Some(behind), wall), wall);
        assert_eq!(resume_from(None, wall), wall);
    }
}
