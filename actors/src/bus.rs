//! Typed pub/sub. A [`Topic<E>`] fans an event out to actor [`Recipient`]s with
//! `try_send`, so a publisher never blocks; for an ordinary subscriber a full or closed mailbox
//! counts as a drop. A *reliable* subscriber ([`Topic::subscribe_reliable`], for money events:
//! fills, position closes, valuations, risk alerts) is never dropped on a full mailbox: the event
//! is queued past the mailbox's capacity and counted as `overflowed`. Only a closed mailbox (the
//! actor is gone) loses it. [`Latest<E>`] keeps the newest event per key with a TTL.

use crate::clock::SharedClock;
use crate::messages::BusEvent;
use actix::prelude::*;
use chrono::{DateTime, Duration, Utc};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Identifies one subscription; returned by [`Topic::subscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SubscriberId(u64);

type Filter<E> = Arc<dyn Fn(&E) -> bool + Send + Sync>;
type DropHook = Arc<dyn Fn(&str) + Send + Sync>;

struct Subscription<E: Message<Result = ()> + Send> {
    id: SubscriberId,
    name: String,
    recipient: Recipient<E>,
    filter: Option<Filter<E>>,
    /// Never dropped on a full mailbox.
    reliable: bool,
    stats: Arc<SubscriberCounters>,
}

#[derive(Debug, Default)]
struct SubscriberCounters {
    delivered: AtomicU64,
    dropped: AtomicU64,
    overflowed: AtomicU64,
}

/// Counters of one subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriberStats {
    pub id: SubscriberId,
    pub name: String,
    pub delivered: u64,
    pub dropped: u64,
    /// Deliveries to a reliable subscriber queued past its full mailbox (included in `delivered`).
    pub overflowed: u64,
    pub reliable: bool,
}

/// Outcome of one publish.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    pub delivered: usize,
    pub dropped: usize,
    pub filtered: usize,
}

struct TopicInner<E: Message<Result = ()> + Send> {
    subs: RwLock<Arc<Vec<Subscription<E>>>>,
    next_id: AtomicU64,
    published: AtomicU64,
    on_drop: Option<DropHook>,
}

/// One typed topic. Cheap to clone; clones share subscribers.
pub struct Topic<E: Message<Result = ()> + Send> {
    inner: Arc<TopicInner<E>>,
}

impl<E: Message<Result = ()> + Send> Clone for Topic<E> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<E: Message<Result = ()> + Send> Default for Topic<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: Message<Result = ()> + Send> Subscription<E> {
    fn clone_entry(&self) -> Self {
        Self {
            id: self.id,
            name: self.name.clone(),
            recipient: self.recipient.clone(),
            filter: self.filter.clone(),
            reliable: self.reliable,
            stats: Arc::clone(&self.stats),
        }
    }
}

impl<E: Message<Result = ()> + Send> Topic<E> {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(TopicInner {
                subs: RwLock::new(Arc::new(Vec::new())),
                next_id: AtomicU64::new(1),
                published: AtomicU64::new(0),
                on_drop: None,
            }),
        }
    }

    /// A topic that reports every dropped delivery by subscriber name (e.g. to the actor registry).
    pub fn with_drop_hook(hook: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Self {
            inner: Arc::new(TopicInner {
                subs: RwLock::new(Arc::new(Vec::new())),
                next_id: AtomicU64::new(1),
                published: AtomicU64::new(0),
                on_drop: Some(Arc::new(hook)),
            }),
        }
    }

    fn add(&self, name: &str, recipient: Recipient<E>, filter: Option<Filter<E>>, reliable: bool) -> SubscriberId {
        let id = SubscriberId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        let mut guard = self.inner.subs.write();
        let mut next: Vec<Subscription<E>> = guard.iter().map(Subscription::clone_entry).collect();
        next.push(Subscription {
            id,
            name: name.to_owned(),
            recipient,
            filter,
            reliable,
            stats: Arc::default(),
        });
        *guard = Arc::new(next);
        id
    }

    /// Subscribes `recipient` to every event.
    pub fn subscribe(&self, name: &str, recipient: Recipient<E>) -> SubscriberId {
        self.add(name, recipient, None, false)
    }

    /// Subscribes `recipient` to every event; a full mailbox never drops one (see the module
    /// documentation). For consumers whose state depends on every event: the risk engine's loss
    /// streak and daily P&L, the coordinator's halts, the rebalancer's batch fills.
    pub fn subscribe_reliable(&self, name: &str, recipient: Recipient<E>) -> SubscriberId {
        self.add(name, recipient, None, true)
    }

    /// [`Topic::subscribe_filtered`], reliable.
    pub fn subscribe_filtered_reliable(
        &self,
        name: &str,
        recipient: Recipient<E>,
        filter: impl Fn(&E) -> bool + Send + Sync + 'static,
    ) -> SubscriberId {
        self.add(name, recipient, Some(Arc::new(filter)), true)
    }

    /// Subscribes `recipient` to the events `filter` accepts.
    pub fn subscribe_filtered(
        &self,
        name: &str,
        recipient: Recipient<E>,
        filter: impl Fn(&E) -> bool + Send + Sync + 'static,
    ) -> SubscriberId {
        self.add(name, recipient, Some(Arc::new(filter)), false)
    }

    /// Removes a subscription; returns whether it existed.
    pub fn unsubscribe(&self, id: SubscriberId) -> bool {
        let mut guard = self.inner.subs.write();
        if !guard.iter().any(|s| s.id == id) {
            return false;
        }
        let next: Vec<Subscription<E>> = guard
            .iter()
            .filter(|s| s.id != id)
            .map(Subscription::clone_entry)
            .collect();
        *guard = Arc::new(next);
        true
    }

    pub fn subscriber_count(&self) -> usize {
        self.inner.subs.read().len()
    }

    pub fn published(&self) -> u64 {
        self.inner.published.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> Vec<SubscriberStats> {
        self.inner
            .subs
            .read()
            .iter()
            .map(|s| SubscriberStats {
                id: s.id,
                name: s.name.clone(),
                delivered: s.stats.delivered.load(Ordering::Relaxed),
                dropped: s.stats.dropped.load(Ordering::Relaxed),
                overflowed: s.stats.overflowed.load(Ordering::Relaxed),
                reliable: s.reliable,
            })
            .collect()
    }
}

impl<E: Message<Result = ()> + Send + Clone> Topic<E> {
    /// Delivers `event` to every matching subscriber with `try_send`; never blocks.
    ///
    /// Each filter runs once; the event is cloned for all matching subscribers but the last, which
    /// gets the original (no allocation besides the mailbox's own).
    pub fn publish(&self, event: E) -> Delivery {
        self.inner.published.fetch_add(1, Ordering::Relaxed);
        let subs = Arc::clone(&self.inner.subs.read());
        let mut out = Delivery::default();
        let mut pending: Option<&Subscription<E>> = None;
        for sub in subs.iter() {
            if !sub.filter.as_ref().is_none_or(|f| f(&event)) {
                out.filtered += 1;
                continue;
            }
            if let Some(prev) = pending.replace(sub) {
                self.deliver(prev, event.clone(), &mut out);
            }
        }
        if let Some(last) = pending {
            self.deliver(last, event, &mut out);
        }
        out
    }

    fn deliver(&self, sub: &Subscription<E>, msg: E, out: &mut Delivery) {
        match sub.recipient.try_send(msg) {
            Ok(()) => {
                sub.stats.delivered.fetch_add(1, Ordering::Relaxed);
                out.delivered += 1;
            }
            Err(SendError::Full(msg)) if sub.reliable => {
                // `do_send` ignores the mailbox's capacity: the event waits in the queue.
                sub.recipient.do_send(msg);
                sub.stats.delivered.fetch_add(1, Ordering::Relaxed);
                sub.stats.overflowed.fetch_add(1, Ordering::Relaxed);
                out.delivered += 1;
            }
            Err(err) => {
                sub.stats.dropped.fetch_add(1, Ordering::Relaxed);
                out.dropped += 1;
                let why = match err {
                    SendError::Full(_) => "mailbox full",
                    SendError::Closed(_) => "mailbox closed",
                };
                tracing::warn!(topic = std::any::type_name::<E>(), subscriber = %sub.name, why, "bus event dropped");
                if let Some(hook) = &self.inner.on_drop {
                    hook(&sub.name);
                }
            }
        }
    }
}

/// The newest event per key, each expiring `ttl` after its own timestamp (business clock).
pub struct Latest<E> {
    entries: Arc<Mutex<HashMap<String, E>>>,
    ttl: Duration,
    clock: SharedClock,
}

impl<E> Clone for Latest<E> {
    fn clone(&self) -> Self {
        Self {
            entries: Arc::clone(&self.entries),
            ttl: self.ttl,
            clock: Arc::clone(&self.clock),
        }
    }
}

impl<E: BusEvent> Latest<E> {
    pub fn new(ttl: Duration, clock: SharedClock) -> Self {
        Self {
            entries: Arc::default(),
            ttl,
            clock,
        }
    }

    fn fresh(&self, e: &E, now: DateTime<Utc>) -> bool {
        now.signed_duration_since(e.meta().timestamp) <= self.ttl
    }

    /// Stores `event` under its key, replacing an older one; drops expired entries as it goes.
    pub fn record(&self, event: E) {
        let now = self.clock.now();
        let mut map = self.entries.lock();
        map.retain(|_, e| now.signed_duration_since(e.meta().timestamp) <= self.ttl);
        let key = event.key();
        match map.get(&key) {
            Some(old) if old.meta().timestamp > event.meta().timestamp => {}
            _ => {
                map.insert(key, event);
            }
        }
    }

    /// The newest unexpired event for `key`.
    pub fn get(&self, key: &str) -> Option<E> {
        let now = self.clock.now();
        self.entries.lock().get(key).filter(|e| self.fresh(e, now)).cloned()
    }

    /// The newest unexpired event for `key` that is at most `max_age` old.
    pub fn get_max_age(&self, key: &str, max_age: Duration) -> Option<E> {
        let now = self.clock.now();
        self.get(key)
            .filter(|e| now.signed_duration_since(e.meta().timestamp) <= max_age)
    }

    /// Number of stored entries (expired ones included until the next `record` or `purge`).
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every expired entry; returns how many went.
    pub fn purge(&self) -> usize {
        let now = self.clock.now();
        let mut map = self.entries.lock();
        let before = map.len();
        map.retain(|_, e| now.signed_duration_since(e.meta().timestamp) <= self.ttl);
        before - map.len()
    }
}

/// Every topic of the system, one per seed topic (plus system events). Cloned into actors at wiring time.
#[derive(Clone, Default)]
pub struct Bus {
    pub candles: Topic<crate::messages::CandleClosed>,
    pub market_data: Topic<crate::messages::MarketSnapshot>,
    pub ta_signals: Topic<crate::messages::TaSignal>,
    pub regime_updates: Topic<crate::messages::RegimeUpdate>,
    pub sentiment_updates: Topic<crate::messages::SentimentUpdate>,
    pub trading_signals: Topic<crate::messages::TradingSignal>,
    pub risk_alerts: Topic<crate::messages::RiskAlert>,
    pub execution_events: Topic<crate::messages::ExecutionEvent>,
    pub portfolio_updates: Topic<crate::messages::PortfolioUpdate>,
    /// The rebalancer's holdings reports (never valuations).
    pub holdings_reports: Topic<crate::messages::HoldingsReport>,
    pub system_events: Topic<crate::messages::SystemEvent>,
    /// Business-clock ticks from the market data actor.
    pub business_ticks: Topic<crate::messages::BusinessTick>,
}

impl Bus {
    /// Events published so far per topic (all since start), for metrics.
    pub fn published_by_topic(&self) -> [(&'static str, u64); 12] {
        [
            ("candles", self.candles.published()),
            ("market_data", self.market_data.published()),
            ("ta_signals", self.ta_signals.published()),
            ("regime_updates", self.regime_updates.published()),
            ("sentiment_updates", self.sentiment_updates.published()),
            ("trading_signals", self.trading_signals.published()),
            ("risk_alerts", self.risk_alerts.published()),
            ("execution_events", self.execution_events.published()),
            ("portfolio_updates", self.portfolio_updates.published()),
            ("holdings_reports", self.holdings_reports.published()),
            ("system_events", self.system_events.published()),
            ("business_ticks", self.business_ticks.published()),
        ]
    }

    /// Every topic reports each dropped delivery to `hook` with the subscriber's name.
    pub fn with_drop_hook(hook: impl Fn(&str) + Send + Sync + 'static) -> Self {
        let hook: DropHook = Arc::new(hook);
        fn topic<E: Message<Result = ()> + Send>(hook: &DropHook) -> Topic<E> {
            let h = Arc::clone(hook);
            Topic::with_drop_hook(move |name| h(name))
        }
        Self {
            candles: topic(&hook),
            market_data: topic(&hook),
            ta_signals: topic(&hook),
            regime_updates: topic(&hook),
            sentiment_updates: topic(&hook),
            trading_signals: topic(&hook),
            risk_alerts: topic(&hook),
            execution_events: topic(&hook),
            portfolio_updates: topic(&hook),
            holdings_reports: topic(&hook),
            system_events: topic(&hook),
            business_ticks: topic(&hook),
        }
    }
}
