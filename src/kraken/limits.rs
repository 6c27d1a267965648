//! Local copies of Kraken's rate counters, so we wait instead of provoking rate-limit errors.
//!
//! - The REST call counter per API key: +1 per call (+2 for history calls), decaying at the
//!   tier's rate, capped at the tier's maximum.
//! - The matching-engine (trading) counter per pair: +1 per AddOrder, and a penalty for
//!   cancelling (or amending/editing) an order that rested only briefly.
//!
//! The counters are pure ([`DecayingCounter`] takes the time as an argument); [`RateGate`] and
//! [`TradingLimiter`] wrap them with an async wait bounded by a configured maximum.

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use triplegain_actors::ports::ExchangeError;

/// Kraken verification tier of the account; selects the counter limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    #[default]
    Starter,
    Intermediate,
    Pro,
}

/// Which share of a budget a call may use. The dead man's switch refresh runs in the reserved
/// lane: normal calls (polling, balances, searches) stop short of the maximum by the configured
/// reserve, so they can never take the room the switch needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lane {
    #[default]
    Normal,
    Reserved,
}

/// Maximum of a counter and how fast it decays.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CounterLimits {
    pub max: f64,
    pub decay_per_sec: f64,
}

impl Tier {
    /// REST call counter per API key.
    pub fn rest_limits(self) -> CounterLimits {
        match self {
            Self::Starter => CounterLimits {
                max: 15.0,
                decay_per_sec: 0.33,
            },
            Self::Intermediate => CounterLimits {
                max: 20.0,
                decay_per_sec: 0.5,
            },
            Self::Pro => CounterLimits {
                max: 20.0,
                decay_per_sec: 1.0,
            },
        }
    }

    /// Matching-engine counter per pair.
    pub fn trading_limits(self) -> CounterLimits {
        match self {
            Self::Starter => CounterLimits {
                max: 60.0,
                decay_per_sec: 1.0,
            },
            Self::Intermediate => CounterLimits {
                max: 125.0,
                decay_per_sec: 2.34,
            },
            Self::Pro => CounterLimits {
                max: 180.0,
                decay_per_sec: 3.75,
            },
        }
    }

    /// # Errors
    /// Returns the unknown text.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "starter" => Ok(Self::Starter),
            "intermediate" => Ok(Self::Intermediate),
            "pro" => Ok(Self::Pro),
            _ => Err(format!(
                "unknown Kraken tier {s:?} (expected starter, intermediate or pro)"
            )),
        }
    }
}

/// REST counter cost of one call to `method`. Order placement and cancellation are not on the
/// REST counter (they use the trading counter); history calls cost 2.
pub fn rest_cost(method: &str) -> f64 {
    match method {
        "AddOrder" | "AddOrderBatch" | "CancelOrder" | "CancelOrderBatch" | "EditOrder" | "AmendOrder" => 0.0,
        "ClosedOrders" | "TradesHistory" | "Ledgers" | "QueryTrades" | "QueryLedgers" => 2.0,
        _ => 1.0,
    }
}

/// Trading counter cost of cancelling an order that has rested for `age` (fixed part 0).
pub fn cancel_cost(age: Duration) -> f64 {
    age_penalty(age, [8.0, 6.0, 5.0, 4.0, 2.0, 1.0])
}

/// Trading counter cost of amending an order that has rested for `age` (fixed part 1).
pub fn amend_cost(age: Duration) -> f64 {
    1.0 + age_penalty(age, [3.0, 2.0, 1.0, 0.0, 0.0, 0.0])
}

/// Trading counter cost of editing an order that has rested for `age` (fixed part 1).
pub fn edit_cost(age: Duration) -> f64 {
    1.0 + age_penalty(age, [6.0, 5.0, 4.0, 2.0, 1.0, 0.0])
}

/// Trading counter cost of placing an order.
pub const ADD_ORDER_COST: f64 = 1.0;

/// Penalty by resting time: <5 s, <10 s, <15 s, <45 s, <90 s, <300 s, then nothing.
fn age_penalty(age: Duration, table: [f64; 6]) -> f64 {
    let bounds = [5u64, 10, 15, 45, 90, 300];
    bounds
        .iter()
        .zip(table)
        .find(|(b, _)| age < Duration::from_secs(**b))
        .map_or(0.0, |(_, p)| p)
}

/// A counter that rises by each call's cost and decays linearly with time.
#[derive(Debug, Clone)]
pub struct DecayingCounter {
    limits: CounterLimits,
    value: f64,
    updated: Instant,
}

impl DecayingCounter {
    pub fn new(limits: CounterLimits, now: Instant) -> Self {
        Self {
            limits,
            value: 0.0,
            updated: now,
        }
    }

    /// A counter that starts at `value` (clamped to the maximum) instead of empty: after a restart
    /// Kraken's counter for the key may still be charged by the previous process.
    pub fn charged(limits: CounterLimits, value: f64, now: Instant) -> Self {
        Self {
            limits,
            value: value.clamp(0.0, limits.max),
            updated: now,
        }
    }

    fn decay(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.updated).as_secs_f64();
        self.value = (self.value - dt * self.limits.decay_per_sec).max(0.0);
        if now > self.updated {
            self.updated = now;
        }
    }

    /// Sets the counter to its maximum: Kraken said we are over the limit, so our estimate
    /// was low (another client shares the key or the pair).
    pub fn saturate(&mut self, now: Instant) {
        self.decay(now);
        self.value = self.value.max(self.limits.max);
    }

    /// The counter value at `now`.
    pub fn value_at(&mut self, now: Instant) -> f64 {
        self.decay(now);
        self.value
    }

    /// Charges `points` (Kraken's call-counter units, not money) if they fit under the maximum at
    /// `now`; otherwise returns how long to wait until they fit (`Duration::MAX` if they never can).
    ///
    /// # Errors
    /// The wait needed, when the points do not fit now.
    pub fn try_charge(&mut self, points: f64, now: Instant) -> Result<(), Duration> {
        let max = self.limits.max;
        self.try_charge_below(points, max, now)
    }

    /// As [`Self::try_charge`], with the points allowed only up to `ceiling` (at most the maximum):
    /// normal calls stop at the maximum less the reserve.
    ///
    /// # Errors
    /// The wait needed, when the points do not fit under the ceiling now.
    pub fn try_charge_below(&mut self, points: f64, ceiling: f64, now: Instant) -> Result<(), Duration> {
        let ceiling = ceiling.min(self.limits.max);
        self.decay(now);
        if self.value + points <= ceiling + 1e-9 {
            self.value += points;
            return Ok(());
        }
        if points > ceiling || self.limits.decay_per_sec <= 0.0 {
            return Err(Duration::MAX);
        }
        let secs = (self.value + points - ceiling) / self.limits.decay_per_sec;
        // Round up to whole milliseconds so the retry after the wait always fits.
        Err(Duration::from_millis(((secs * 1000.0).ceil() as u64).saturating_add(1)))
    }
}

/// An async gate over one [`DecayingCounter`]: waits for decay, up to `max_wait`.
#[derive(Debug)]
pub struct RateGate {
    name: String,
    counter: Mutex<DecayingCounter>,
    max_wait: Duration,
    /// Points at the top of the counter only the reserved lane may use.
    reserve: f64,
    /// Longest a reserved-lane call waits for decay.
    reserved_max_wait: Duration,
}

impl RateGate {
    pub fn new(name: impl Into<String>, limits: CounterLimits, max_wait: Duration) -> Self {
        Self {
            name: name.into(),
            counter: Mutex::new(DecayingCounter::new(limits, Instant::now())),
            max_wait,
            reserve: 0.0,
            reserved_max_wait: max_wait,
        }
    }

    /// Keeps the top `points` of the counter for the reserved lane, whose calls may wait up to
    /// `max_wait` for decay (normal calls keep the gate's own maximum wait).
    #[must_use]
    pub fn with_reserve(mut self, points: f64, max_wait: Duration) -> Self {
        let max = self.counter.lock().limits.max;
        self.reserve = points.clamp(0.0, (max - 1.0).max(0.0));
        self.reserved_max_wait = max_wait;
        self
    }

    /// Starts the counter charged to the normal lane's ceiling (maximum less the reserve) instead
    /// of empty: after a restart Kraken's counter is assumed to still hold what the previous
    /// process spent, so normal calls first wait for decay while the reserved lane has its room.
    #[must_use]
    pub fn starting_charged(self) -> Self {
        {
            let mut c = self.counter.lock();
            let ceiling = c.limits.max - self.reserve;
            *c = DecayingCounter::charged(c.limits, ceiling, Instant::now());
        }
        self
    }

    /// Points kept for the reserved lane.
    pub fn reserve(&self) -> f64 {
        self.reserve
    }

    /// Charges `points` (counter units, not money) in the normal lane, sleeping until the counter
    /// has decayed enough.
    ///
    /// # Errors
    /// [`ExchangeError::RateLimited`] when the wait would exceed the configured maximum.
    pub async fn acquire(&self, points: f64) -> Result<(), ExchangeError> {
        self.acquire_in(points, Lane::Normal).await
    }

    /// Charges `points` in `lane`: the normal lane stops at the maximum less the reserve, the
    /// reserved lane may use the whole counter and waits up to its own maximum.
    ///
    /// # Errors
    /// [`ExchangeError::RateLimited`] when the wait would exceed the lane's maximum.
    pub async fn acquire_in(&self, points: f64, lane: Lane) -> Result<(), ExchangeError> {
        if points <= 0.0 {
            return Ok(());
        }
        let (ceiling_less, max_wait) = match lane {
            Lane::Normal => (self.reserve, self.max_wait),
            Lane::Reserved => (0.0, self.reserved_max_wait),
        };
        let started = Instant::now();
        loop {
            let attempt = {
                let mut c = self.counter.lock();
                let ceiling = c.limits.max - ceiling_less;
                c.try_charge_below(points, ceiling, Instant::now())
            };
            let wait = match attempt {
                Ok(()) => return Ok(()),
                Err(wait) => wait,
            };
            let waited = started.elapsed();
            if waited.saturating_add(wait) > max_wait {
                return Err(ExchangeError::RateLimited(format!(
                    "{} counter full: {points} points need {:.1} s of decay, more than the {:.1} s allowed",
                    self.name,
                    wait.as_secs_f64(),
                    max_wait.as_secs_f64()
                )));
            }
            tracing::debug!(counter = %self.name, wait_ms = wait.as_millis() as u64, "rate counter full, waiting");
            tokio::time::sleep(wait).await;
        }
    }

    /// Marks the counter full after Kraken reported the limit exceeded.
    pub fn saturate(&self) {
        self.counter.lock().saturate(Instant::now());
    }

    /// Seconds one unit of cost takes to decay.
    pub fn unit_decay(&self) -> Duration {
        let rate = self.counter.lock().limits.decay_per_sec;
        if rate > 0.0 {
            Duration::from_secs_f64(1.0 / rate)
        } else {
            Duration::MAX
        }
    }

    /// Current counter value (for metrics and tests).
    pub fn value(&self) -> f64 {
        self.counter.lock().value_at(Instant::now())
    }
}

/// A sliding-window budget: at most `max` calls in any `window` (the account's own budgets of
/// 60 private calls and 30 order calls a minute, on top of Kraken's counters).
#[derive(Debug)]
pub struct CallBudget {
    name: String,
    max: usize,
    window: Duration,
    max_wait: Duration,
    calls: Mutex<std::collections::VecDeque<Instant>>,
    /// Calls per window only the reserved lane may take.
    reserve: usize,
    reserved_max_wait: Duration,
}

impl CallBudget {
    pub fn new(name: impl Into<String>, max: u32, window: Duration, max_wait: Duration) -> Self {
        Self {
            name: name.into(),
            max: max as usize,
            window,
            max_wait,
            calls: Mutex::new(std::collections::VecDeque::new()),
            reserve: 0,
            reserved_max_wait: max_wait,
        }
    }

    /// Keeps `calls` of every window for the reserved lane, whose calls may wait up to `max_wait`.
    #[must_use]
    pub fn with_reserve(mut self, calls: u32, max_wait: Duration) -> Self {
        self.reserve = (calls as usize).min(self.max.saturating_sub(1));
        self.reserved_max_wait = max_wait;
        self
    }

    /// Takes one call at `now` if the window has room; otherwise returns how long until it has.
    ///
    /// # Errors
    /// The wait needed (`Duration::MAX` for a budget of zero).
    pub fn try_take_at(&self, now: Instant) -> Result<(), Duration> {
        self.try_take_in(now, Lane::Normal)
    }

    /// As [`Self::try_take_at`] in `lane`: the normal lane leaves the reserve free.
    ///
    /// # Errors
    /// The wait needed (`Duration::MAX` for a budget of zero).
    pub fn try_take_in(&self, now: Instant, lane: Lane) -> Result<(), Duration> {
        let max = match lane {
            Lane::Normal => self.max.saturating_sub(self.reserve),
            Lane::Reserved => self.max,
        };
        if max == 0 {
            return Err(Duration::MAX);
        }
        let mut calls = self.calls.lock();
        while calls
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            calls.pop_front();
        }
        if calls.len() < max {
            calls.push_back(now);
            return Ok(());
        }
        // Room comes back when the call that leaves the normal lane's count under its maximum
        // leaves the window.
        let oldest = calls.get(calls.len() - max).copied().unwrap_or(now);
        Err(self
            .window
            .saturating_sub(now.saturating_duration_since(oldest))
            .saturating_add(Duration::from_millis(1)))
    }

    /// Takes one call, sleeping until the window has room; returns the slot (for [`Self::refund`]).
    ///
    /// # Errors
    /// [`ExchangeError::RateLimited`] when the wait would exceed the configured maximum.
    pub async fn acquire(&self) -> Result<Instant, ExchangeError> {
        self.acquire_in(Lane::Normal).await
    }

    /// As [`Self::acquire`] in `lane`.
    ///
    /// # Errors
    /// [`ExchangeError::RateLimited`] when the wait would exceed the lane's maximum.
    pub async fn acquire_in(&self, lane: Lane) -> Result<Instant, ExchangeError> {
        let max_wait = match lane {
            Lane::Normal => self.max_wait,
            Lane::Reserved => self.reserved_max_wait,
        };
        let started = Instant::now();
        loop {
            let now = Instant::now();
            let wait = match self.try_take_in(now, lane) {
                Ok(()) => return Ok(now),
                Err(w) => w,
            };
            if started.elapsed().saturating_add(wait) > max_wait {
                return Err(ExchangeError::RateLimited(format!(
                    "{} budget of {} calls per {} s used up; room again in {:.1} s, more than the {:.1} s allowed",
                    self.name,
                    self.max,
                    self.window.as_secs(),
                    wait.as_secs_f64(),
                    max_wait.as_secs_f64()
                )));
            }
            tracing::debug!(budget = %self.name, wait_ms = wait.as_millis() as u64, "call budget used up, waiting");
            tokio::time::sleep(wait).await;
        }
    }

    /// Gives back a slot taken by [`Self::acquire`] for a call that was not sent after all.
    pub fn refund(&self, slot: Instant) {
        let mut calls = self.calls.lock();
        if let Some(i) = calls.iter().position(|t| *t == slot) {
            calls.remove(i);
        }
    }

    /// Calls taken in the current window (for metrics and tests).
    pub fn used(&self) -> usize {
        let now = Instant::now();
        self.calls
            .lock()
            .iter()
            .filter(|t| now.saturating_duration_since(**t) < self.window)
            .count()
    }
}

/// How long [`TradingLimiter`] remembers an order's placement time: after 300 s no penalty applies.
const PENALTY_HORIZON: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct TradingState {
    pairs: HashMap<String, DecayingCounter>,
    /// Order id (txid or client id) → (pair, placement time).
    placed: HashMap<String, (String, Instant)>,
}

/// The per-pair matching-engine counters plus the placement times needed for cancel penalties.
#[derive(Debug)]
pub struct TradingLimiter {
    limits: CounterLimits,
    max_wait: Duration,
    state: Mutex<TradingState>,
}

impl TradingLimiter {
    pub fn new(limits: CounterLimits, max_wait: Duration) -> Self {
        Self {
            limits,
            max_wait,
            state: Mutex::new(TradingState {
                pairs: HashMap::new(),
                placed: HashMap::new(),
            }),
        }
    }

    /// Charges `points` (counter units) on `pair` at `now` (pure step; see [`Self::acquire`]).
    ///
    /// # Errors
    /// The wait needed when the cost does not fit.
    pub fn try_charge_at(&self, pair: &str, points: f64, now: Instant) -> Result<(), Duration> {
        let mut st = self.state.lock();
        let limits = self.limits;
        st.pairs
            .entry(pair.to_owned())
            .or_insert_with(|| DecayingCounter::new(limits, now))
            .try_charge(points, now)
    }

    /// Marks `pair`'s counter full after Kraken reported the engine limit exceeded.
    pub fn saturate(&self, pair: &str) {
        let now = Instant::now();
        let mut st = self.state.lock();
        let limits = self.limits;
        st.pairs
            .entry(pair.to_owned())
            .or_insert_with(|| DecayingCounter::new(limits, now))
            .saturate(now);
    }

    /// Counter value of `pair` at `now`.
    pub fn value_at(&self, pair: &str, now: Instant) -> f64 {
        self.state.lock().pairs.get_mut(pair).map_or(0.0, |c| c.value_at(now))
    }

    /// Charges `points` (counter units) on `pair`, sleeping until they fit.
    ///
    /// # Errors
    /// [`ExchangeError::RateLimited`] when the wait would exceed the configured maximum.
    pub async fn acquire(&self, pair: &str, points: f64) -> Result<(), ExchangeError> {
        if points <= 0.0 {
            return Ok(());
        }
        let started = Instant::now();
        loop {
            let wait = match self.try_charge_at(pair, points, Instant::now()) {
                Ok(()) => return Ok(()),
                Err(wait) => wait,
            };
            if started.elapsed().saturating_add(wait) > self.max_wait {
                return Err(ExchangeError::RateLimited(format!(
                    "trading counter for {pair} full: {points} points need {:.1} s of decay, more than the {:.1} s allowed",
                    wait.as_secs_f64(),
                    self.max_wait.as_secs_f64()
                )));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Remembers when the order known by `ids` (txids and/or client id) was placed on `pair`.
    pub fn record_placed(&self, pair: &str, ids: &[&str], now: Instant) {
        let mut st = self.state.lock();
        st.placed
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < PENALTY_HORIZON);
        for id in ids {
            st.placed.insert((*id).to_owned(), (pair.to_owned(), now));
        }
    }

    /// Pair and trading cost of cancelling the order `id` at `now`; `None` when we did not place
    /// it within the penalty horizon (then no penalty applies or the pair is unknown to us).
    pub fn cancel_charge_at(&self, id: &str, now: Instant) -> Option<(String, f64)> {
        let st = self.state.lock();
        let (pair, at) = st.placed.get(id)?;
        let cost = cancel_cost(now.saturating_duration_since(*at));
        (cost > 0.0).then(|| (pair.clone(), cost))
    }

    /// Charges the cancel penalty for `id` (if any), sleeping until it fits.
    ///
    /// # Errors
    /// [`ExchangeError::RateLimited`] when the wait would exceed the configured maximum.
    pub async fn acquire_cancel(&self, id: &str) -> Result<(), ExchangeError> {
        match self.cancel_charge_at(id, Instant::now()) {
            Some((pair, cost)) => self.acquire(&pair, cost).await,
            None => Ok(()),
        }
    }

    /// Forgets the placement time of `ids` (after a cancel).
    pub fn forget(&self, ids: &[&str]) {
        let mut st = self.state.lock();
        for id in ids {
            st.placed.remove(*id);
        }
    }
}

#[cfg(test)]
mod tests;
