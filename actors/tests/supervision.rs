#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]
//! A panic inside a handler restarts the actor with the same address; too many restarts escalate.

use actix::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use triplegain_actors::bus::Topic;
use triplegain_actors::clock::{SharedClock, SystemClock};
use triplegain_actors::messages::{AlertType, RiskAlert};
use triplegain_actors::supervision::{start_supervised, ActorError, ActorState, Registry, RestartPolicy};
use triplegain_actors::testing::{Generation, Probe};

struct AlertSink(Arc<parking_lot::Mutex<Vec<RiskAlert>>>);
impl Actor for AlertSink {
    type Context = Context<Self>;
}
impl Handler<RiskAlert> for AlertSink {
    type Result = ();
    fn handle(&mut self, msg: RiskAlert, _: &mut Context<Self>) {
        self.0.lock().push(msg);
    }
}

fn registry(max_restarts: u32) -> (Registry, Arc<parking_lot::Mutex<Vec<RiskAlert>>>) {
    let alerts = Topic::<RiskAlert>::new();
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let sink = AlertSink(seen.clone()).start();
    alerts.subscribe("alerts", sink.recipient());
    let clock: SharedClock = Arc::new(SystemClock);
    (
        Registry::new(
            RestartPolicy {
                max_restarts,
                window_secs: 60,
            },
            alerts,
            clock,
        ),
        seen,
    )
}

#[actix::test]
async fn injected_panic_restarts_actor_with_same_address() {
    // Arrange
    let (reg, _) = registry(5);
    let addr = start_supervised(&reg, "probe", true, 16, Probe::new);
    assert_eq!(addr.send(Generation).await.unwrap(), Ok(0));

    // Act: the next handler panics.
    reg.inject_fault("probe").await.unwrap();
    actix::clock::sleep(Duration::from_millis(50)).await;

    // Assert: same Addr still connected, serves the next message, restarted once.
    assert!(addr.connected());
    assert_eq!(addr.send(Generation).await.unwrap(), Ok(1));
    let rec = reg.get("probe").unwrap();
    assert_eq!(rec.restarts, 1);
    assert_eq!(rec.starts, 2);
    assert_eq!(rec.state, ActorState::Running);
    assert!(rec.last_crash_reason.unwrap().contains("injected fault"));
    assert!(reg.unready_reasons().is_empty());
}

#[actix::test]
async fn exceeding_restart_intensity_escalates_and_alerts() {
    let (reg, alerts) = registry(2);
    let addr = start_supervised(&reg, "probe", true, 16, Probe::new);
    for _ in 0..3 {
        reg.inject_fault("probe").await.unwrap();
        actix::clock::sleep(Duration::from_millis(30)).await;
    }
    let rec = reg.get("probe").unwrap();
    assert_eq!(rec.state, ActorState::Escalated);
    assert_eq!(rec.restarts, 3);
    // Fenced: it refuses work instead of running it.
    assert_eq!(
        addr.send(Generation).await.unwrap(),
        Err(ActorError::Escalated("probe".into()))
    );
    assert_eq!(reg.unready_reasons().len(), 1);
    actix::clock::sleep(Duration::from_millis(30)).await;
    let alerts = alerts.lock();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].alert_type, AlertType::ActorEscalated);
    assert_eq!(alerts[0].action_required.as_deref(), Some("halt_trading"));
}

#[actix::test]
async fn drain_reaches_every_actor() {
    let (reg, _) = registry(5);
    let _a = start_supervised(&reg, "a", false, 16, Probe::new);
    let _b = start_supervised(&reg, "b", false, 16, Probe::new);
    assert!(reg.drain_all(Duration::from_secs(2)).await);
}

#[actix::test]
async fn bus_drops_are_counted_per_actor_in_the_registry() {
    use triplegain_actors::bus::Bus;
    let sink: Arc<std::sync::OnceLock<Registry>> = Arc::default();
    let s = sink.clone();
    let bus = Bus::with_drop_hook(move |name| {
        if let Some(r) = s.get() {
            r.record_drop(name);
        }
    });
    let clock: SharedClock = Arc::new(SystemClock);
    let reg = Registry::new(RestartPolicy::default(), bus.risk_alerts.clone(), clock);
    sink.set(reg.clone()).ok();
    // A registered actor whose mailbox holds two alerts, and no chance to drain in between.
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    reg.register("slow", false);
    let slow = AlertSink::create({
        let seen = seen.clone();
        move |ctx| {
            ctx.set_mailbox_capacity(2);
            AlertSink(seen)
        }
    });
    bus.risk_alerts.subscribe("slow", slow.recipient());
    let alert = RiskAlert {
        meta: triplegain_actors::messages::EventMeta::new("test", chrono::Utc::now()),
        alert_type: AlertType::ExecutionError,
        severity: triplegain_actors::domain::Severity::Low,
        message: "x".into(),
        action_required: None,
        breach: None,
        symbol: None,
    };
    let mut dropped = 0;
    for _ in 0..6 {
        dropped += bus.risk_alerts.publish(alert.clone()).dropped;
    }
    assert!(dropped >= 3, "dropped {dropped}");
    assert_eq!(reg.get("slow").unwrap().mailbox_drops, dropped as u64);
}
