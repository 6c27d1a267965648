//! Supervision: every actor starts under actix's `Supervisor`; every handler body
//! runs inside [`guarded`], which turns a panic into a logged crash plus
//! `ctx.stop()`, so the Supervisor restarts the actor with the same `Addr` and
//! mailbox. Restarts beyond the restart intensity escalate: the actor is fenced
//! (every message is refused), `/readyz` fails and a `RiskAlert` halts trading.

use crate::bus::Topic;
use crate::clock::SharedClock;
use crate::domain::{Priority, Severity};
use crate::messages::{AlertType, EventMeta, Ping, RiskAlert};
use actix::prelude::*;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Errors an actor reply can carry because of supervision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ActorError {
    #[error("actor {0} crashed while handling the message: {1}")]
    Crashed(String, String),
    #[error("actor {0} is escalated (restart intensity exceeded) and refuses work")]
    Escalated(String),
}

/// Erlang/OTP-style restart intensity: more than `max_restarts` within `window` escalates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RestartPolicy {
    pub max_restarts: u32,
    pub window_secs: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            window_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorState {
    Starting,
    Running,
    Restarting,
    Escalated,
    Stopped,
}

/// What the registry knows about one actor.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActorRecord {
    pub name: String,
    pub core: bool,
    pub state: ActorState,
    pub starts: u32,
    pub restarts: u32,
    pub last_crash_reason: Option<String>,
    pub last_crash_at: Option<DateTime<Utc>>,
    pub mailbox_drops: u64,
    pub connected: bool,
    #[serde(skip)]
    restart_times: VecDeque<Instant>,
}

/// What every guarded handler checks, kept per actor beside its record so the hot path reads
/// two atomics and never takes the registry's lock.
#[derive(Debug, Default)]
struct Flags {
    /// Mirrors `state == Escalated` (set once, under the registry lock, when it escalates).
    escalated: AtomicBool,
    /// An armed fault: the next guarded handler panics.
    fault: AtomicBool,
}

struct Entry {
    record: ActorRecord,
    flags: Arc<Flags>,
    ping: Option<Recipient<Ping>>,
    drain: Option<Recipient<Drain>>,
}

struct RegistryInner {
    actors: Mutex<BTreeMap<String, Entry>>,
    policy: RestartPolicy,
    alerts: Topic<RiskAlert>,
    clock: SharedClock,
}

/// The actor registry: one record per supervised actor. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<RegistryInner>,
}

/// Asks an actor to flush durable state before shutdown.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Drain;

thread_local! {
    static IN_GUARD: Cell<u32> = const { Cell::new(0) };
}

/// Whether the current thread is inside a guarded handler (the process panic hook uses this
/// to tell a supervised crash from a panic nobody will recover).
pub fn in_guarded_handler() -> bool {
    IN_GUARD.with(|g| g.get() > 0)
}

impl Registry {
    pub fn new(policy: RestartPolicy, alerts: Topic<RiskAlert>, clock: SharedClock) -> Self {
        Self {
            inner: Arc::new(RegistryInner {
                actors: Mutex::new(BTreeMap::new()),
                policy,
                alerts,
                clock,
            }),
        }
    }

    pub fn policy(&self) -> RestartPolicy {
        self.inner.policy
    }

    /// Registers `name` and returns the handle the actor keeps.
    pub fn register(&self, name: &str, core: bool) -> SupervisionHandle {
        let flags = Arc::new(Flags::default());
        self.inner.actors.lock().insert(
            name.to_owned(),
            Entry {
                record: ActorRecord {
                    name: name.to_owned(),
                    core,
                    state: ActorState::Starting,
                    starts: 0,
                    restarts: 0,
                    last_crash_reason: None,
                    last_crash_at: None,
                    mailbox_drops: 0,
                    connected: true,
                    restart_times: VecDeque::new(),
                },
                flags: Arc::clone(&flags),
                ping: None,
                drain: None,
            },
        );
        SupervisionHandle {
            name: Arc::from(name),
            registry: self.clone(),
            flags,
        }
    }

    fn attach(&self, name: &str, ping: Recipient<Ping>, drain: Recipient<Drain>) {
        if let Some(e) = self.inner.actors.lock().get_mut(name) {
            e.ping = Some(ping);
            e.drain = Some(drain);
        }
    }

    /// Snapshot of every record, in name order.
    pub fn snapshot(&self) -> Vec<ActorRecord> {
        self.inner
            .actors
            .lock()
            .values()
            .map(|e| {
                let mut r = e.record.clone();
                r.connected = e.ping.as_ref().is_none_or(Recipient::connected);
                r
            })
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<ActorRecord> {
        self.snapshot().into_iter().find(|r| r.name == name)
    }

    /// Reasons the process is not ready: escalated or disconnected core actors.
    pub fn unready_reasons(&self) -> Vec<String> {
        self.snapshot()
            .into_iter()
            .filter_map(|r| match (r.state, r.connected) {
                (ActorState::Escalated, _) => Some(format!("actor {} escalated after {} restarts", r.name, r.restarts)),
                (_, false) if r.core => Some(format!("core actor {} is not running", r.name)),
                _ => None,
            })
            .collect()
    }

    /// Counts a dropped delivery to `name`'s mailbox.
    pub fn record_drop(&self, name: &str) {
        if let Some(e) = self.inner.actors.lock().get_mut(name) {
            e.record.mailbox_drops += 1;
        }
    }

    /// Arms a fault: `name` panics inside its next handler, and a `Ping` is sent so that happens now.
    ///
    /// # Errors
    /// Returns a message when no actor has that name or it does not answer.
    pub async fn inject_fault(&self, name: &str) -> Result<(), String> {
        let ping = {
            let mut actors = self.inner.actors.lock();
            let entry = actors.get_mut(name).ok_or_else(|| format!("no actor named {name:?}"))?;
            entry.flags.fault.store(true, Ordering::SeqCst);
            entry.ping.clone()
        };
        let ping = ping.ok_or_else(|| format!("actor {name:?} is not started"))?;
        let before = self.get(name).map_or(0, |r| r.restarts);
        match ping.send(Ping).timeout(Duration::from_secs(5)).await {
            Ok(Err(_)) => Ok(()),
            // Another message may have reached the armed handler first: the crash still happened.
            Ok(Ok(())) if self.get(name).is_some_and(|r| r.restarts > before) => Ok(()),
            Ok(Ok(())) => Err(format!("actor {name:?} handled the ping without crashing")),
            Err(e) => Err(format!("actor {name:?} did not answer: {e}")),
        }
    }

    /// The ping address of a started actor (a caller that pings it often keeps it).
    pub fn ping_recipient(&self, name: &str) -> Option<Recipient<Ping>> {
        self.inner.actors.lock().get(name).and_then(|e| e.ping.clone())
    }

    /// Pings every actor; used by liveness checks.
    pub async fn ping(&self, name: &str, timeout: Duration) -> bool {
        let ping = self.inner.actors.lock().get(name).and_then(|e| e.ping.clone());
        match ping {
            Some(p) => matches!(p.send(Ping).timeout(timeout).await, Ok(Ok(()))),
            None => false,
        }
    }

    /// Sends `Drain` to every actor and waits for all of them, at most `deadline`.
    pub async fn drain_all(&self, deadline: Duration) -> bool {
        let drains: Vec<(String, Recipient<Drain>)> = self
            .inner
            .actors
            .lock()
            .iter()
            .filter_map(|(n, e)| e.drain.clone().map(|d| (n.clone(), d)))
            .collect();
        let all = futures::future::join_all(drains.into_iter().map(|(name, d)| async move {
            let ok = d.send(Drain).await.is_ok();
            if !ok {
                tracing::warn!(actor = %name, "actor did not drain");
            }
            ok
        }));
        match tokio_timeout(deadline, all).await {
            Some(results) => results.into_iter().all(|ok| ok),
            None => {
                tracing::error!(deadline_secs = deadline.as_secs(), "actor drain deadline passed");
                false
            }
        }
    }

    fn update<R>(&self, name: &str, f: impl FnOnce(&mut ActorRecord) -> R) -> Option<R> {
        self.inner.actors.lock().get_mut(name).map(|e| {
            let out = f(&mut e.record);
            e.flags
                .escalated
                .store(e.record.state == ActorState::Escalated, Ordering::SeqCst);
            out
        })
    }

    fn escalate(&self, name: &str, restarts: u32, reason: &str) {
        tracing::error!(
            actor = name,
            event = "escalated",
            restarts,
            reason,
            "restart intensity exceeded; actor fenced and trading halted"
        );
        let meta = EventMeta::new("supervisor", self.inner.clock.now()).with_priority(Priority::Urgent);
        self.inner.alerts.publish(RiskAlert {
            meta,
            alert_type: AlertType::ActorEscalated,
            severity: Severity::Critical,
            message: format!("actor {name} exceeded its restart intensity ({restarts} restarts): {reason}"),
            action_required: Some("halt_trading".to_owned()),
            breach: Some(format!("actor_escalated:{name}")),
            symbol: None,
        });
    }
}

async fn tokio_timeout<F: std::future::Future>(d: Duration, f: F) -> Option<F::Output> {
    let sleep = actix::clock::sleep(d);
    futures::pin_mut!(f);
    futures::pin_mut!(sleep);
    match futures::future::select(f, sleep).await {
        futures::future::Either::Left((v, _)) => Some(v),
        futures::future::Either::Right(_) => None,
    }
}

/// What an actor keeps to report its lifecycle to the registry.
#[derive(Clone)]
pub struct SupervisionHandle {
    name: Arc<str>,
    registry: Registry,
    flags: Arc<Flags>,
}

impl SupervisionHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Lock-free: read on every guarded handler.
    pub fn is_escalated(&self) -> bool {
        self.flags.escalated.load(Ordering::SeqCst)
    }

    /// Call from `Actor::started`. Returns `false` when the actor is escalated and must not load state.
    pub fn on_started(&self) -> bool {
        let res = self.registry.update(&self.name, |r| {
            if r.state == ActorState::Escalated {
                return (false, r.restarts);
            }
            r.starts += 1;
            r.state = ActorState::Running;
            (true, r.restarts)
        });
        match res {
            Some((true, 0)) => {
                tracing::info!(actor = %self.name, event = "started", restarts = 0, "actor started");
                true
            }
            Some((true, restarts)) => {
                tracing::warn!(actor = %self.name, event = "restarted", restarts, "actor restarted");
                true
            }
            _ => false,
        }
    }

    /// Call from `Supervised::restarting`. Applies the restart intensity.
    pub fn on_restarting(&self) {
        let policy = self.registry.policy();
        let window = Duration::from_secs(policy.window_secs);
        let now = Instant::now();
        let res = self.registry.update(&self.name, |r| {
            if r.state == ActorState::Escalated {
                return None;
            }
            r.restarts += 1;
            r.restart_times.push_back(now);
            while r.restart_times.front().is_some_and(|t| now.duration_since(*t) > window) {
                r.restart_times.pop_front();
            }
            if r.restart_times.len() > policy.max_restarts as usize {
                r.state = ActorState::Escalated;
                Some((true, r.restarts, r.last_crash_reason.clone().unwrap_or_default()))
            } else {
                r.state = ActorState::Restarting;
                Some((false, r.restarts, String::new()))
            }
        });
        if let Some(Some((true, restarts, reason))) = res {
            self.registry.escalate(&self.name, restarts, &reason);
        }
    }

    /// Records a crash; the caller stops the actor.
    pub fn on_crash(&self, reason: &str) {
        let clock_now = self.registry.inner.clock.now();
        let restarts = self
            .registry
            .update(&self.name, |r| {
                r.last_crash_reason = Some(reason.to_owned());
                r.last_crash_at = Some(clock_now);
                r.restarts
            })
            .unwrap_or(0);
        tracing::error!(actor = %self.name, event = "crashed", restarts, reason, "actor crashed; stopping for restart");
    }

    /// Call from `Actor::stopped` when the actor will not come back.
    pub fn on_stopped(&self) {
        self.registry.update(&self.name, |r| {
            if r.state != ActorState::Escalated {
                r.state = ActorState::Stopped;
            }
        });
    }
}

/// An actor that runs under supervision.
pub trait SupervisedActor: Actor<Context = Context<Self>> + actix::Supervised {
    fn supervision(&self) -> &SupervisionHandle;
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

struct GuardDepth;

impl GuardDepth {
    fn enter() -> Self {
        IN_GUARD.with(|g| g.set(g.get() + 1));
        GuardDepth
    }
}

impl Drop for GuardDepth {
    fn drop(&mut self) {
        IN_GUARD.with(|g| g.set(g.get().saturating_sub(1)));
    }
}

/// Runs a handler body under the panic guard. A panic becomes a crash record and
/// `ctx.stop()` (so the Supervisor restarts the actor); an escalated actor refuses the work.
///
/// # Errors
/// [`ActorError::Crashed`] when the body panicked, [`ActorError::Escalated`] when the actor is fenced.
pub fn guarded<A, R>(
    act: &mut A,
    ctx: &mut Context<A>,
    body: impl FnOnce(&mut A, &mut Context<A>) -> R,
) -> Result<R, ActorError>
where
    A: SupervisedActor,
{
    let flags = Arc::clone(&act.supervision().flags);
    if flags.escalated.load(Ordering::SeqCst) {
        return Err(ActorError::Escalated(act.supervision().name().to_owned()));
    }
    let outcome = {
        let _depth = GuardDepth::enter();
        catch_unwind(AssertUnwindSafe(|| {
            // Lock-free: a swap only when a fault is armed.
            if flags.fault.load(Ordering::Relaxed) && flags.fault.swap(false, Ordering::SeqCst) {
                inject_panic(act.supervision().name());
            }
            body(act, ctx)
        }))
    };
    match outcome {
        Ok(r) => Ok(r),
        Err(payload) => {
            let reason = panic_message(payload.as_ref());
            let handle = act.supervision().clone();
            handle.on_crash(&reason);
            ctx.stop();
            Err(ActorError::Crashed(handle.name().to_owned(), reason))
        }
    }
}

#[expect(clippy::panic, reason = "fault injection panics on purpose to exercise the guard")]
fn inject_panic(name: &str) {
    panic!("injected fault in actor {name}");
}

/// Starts `make`'s actor under a `Supervisor` on the current arbiter with an explicit mailbox capacity,
/// and attaches its ping and drain recipients to the registry.
pub fn start_supervised<A>(
    registry: &Registry,
    name: &str,
    core: bool,
    mailbox_capacity: usize,
    make: impl FnOnce(SupervisionHandle) -> A + 'static,
) -> Addr<A>
where
    A: SupervisedActor + Handler<Ping> + Handler<Drain>,
{
    let handle = registry.register(name, core);
    let addr = Supervisor::start(move |ctx: &mut Context<A>| {
        ctx.set_mailbox_capacity(mailbox_capacity);
        make(handle)
    });
    registry.attach(name, addr.clone().recipient(), addr.clone().recipient());
    addr
}

/// Implements `Handler<Ping>` (guarded) and a no-op `Handler<Drain>` for a supervised actor.
#[macro_export]
macro_rules! supervised_basics {
    ($ty:ty) => {
        impl ::actix::Handler<$crate::messages::Ping> for $ty {
            type Result = Result<(), $crate::supervision::ActorError>;
            fn handle(&mut self, _: $crate::messages::Ping, ctx: &mut Self::Context) -> Self::Result {
                $crate::supervision::guarded(self, ctx, |_, _| ())
            }
        }
    };
}
