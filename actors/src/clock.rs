//! Business time. Live runs tick from the wall clock; replays and tests move a manual clock.

use chrono::{DateTime, Utc};
use parking_lot::RwLock;
use std::sync::Arc;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock moved by hand (tests) or by the replay feed (backtests, simulated market).
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<RwLock<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Arc::new(RwLock::new(start)))
    }

    /// Moves the clock to `t`; time never goes backwards.
    pub fn set(&self, t: DateTime<Utc>) {
        let mut now = self.0.write();
        if t > *now {
            *now = t;
        }
    }

    /// Moves the clock to `t`, also backwards. Only for the start of a replay, before any
    /// business event happened.
    pub fn reset(&self, t: DateTime<Utc>) {
        *self.0.write() = t;
    }

    pub fn advance(&self, d: chrono::Duration) {
        let mut now = self.0.write();
        *now += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.read()
    }
}

/// Shared handle to whichever clock drives the process.
pub type SharedClock = Arc<dyn Clock>;
