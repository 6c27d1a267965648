#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]
//! The seed's bus test table: pub/sub basic, multi-subscriber, filter, TTL expiry with flat
//! memory, concurrent publishers without loss; plus unsubscribe and drop counting.

use actix::prelude::*;
use chrono::{Duration as ChronoDuration, TimeZone, Utc};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use triplegain_actors::bus::{Latest, Topic};
use triplegain_actors::clock::{ManualClock, SharedClock};
use triplegain_actors::domain::{Bias, Symbol, Timeframe, TrendDirection};
use triplegain_actors::messages::{EventMeta, TaSignal};

fn signal(symbol: &str, confidence: f64, at: chrono::DateTime<Utc>) -> TaSignal {
    TaSignal {
        meta: EventMeta::new("technical_analysis", at),
        symbol: Symbol::parse(symbol).unwrap(),
        timeframe: Timeframe::H1,
        trend_direction: TrendDirection::Bullish,
        trend_strength: 0.7,
        momentum_score: 0.4,
        bias: Bias::Long,
        confidence,
        reasoning: String::new(),
    }
}

/// Collects what it receives.
struct Sink {
    got: Arc<parking_lot::Mutex<Vec<TaSignal>>>,
    count: Arc<AtomicUsize>,
}

impl Actor for Sink {
    type Context = Context<Self>;
}

impl Handler<TaSignal> for Sink {
    type Result = ();
    fn handle(&mut self, msg: TaSignal, _: &mut Context<Self>) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.got.lock().push(msg);
    }
}

#[derive(Message)]
#[rtype(result = "usize")]
struct Count;

impl Handler<Count> for Sink {
    type Result = usize;
    fn handle(&mut self, _: Count, _: &mut Context<Self>) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

fn sink(capacity: usize) -> (Addr<Sink>, Arc<parking_lot::Mutex<Vec<TaSignal>>>) {
    let got = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let g = got.clone();
    let addr = Sink::create(move |ctx| {
        ctx.set_mailbox_capacity(capacity);
        Sink {
            got: g,
            count: Arc::default(),
        }
    });
    (addr, got)
}

async fn settle(addr: &Addr<Sink>, want: usize) -> usize {
    for _ in 0..200 {
        let n = addr.send(Count).await.unwrap();
        if n >= want {
            return n;
        }
        actix::clock::sleep(Duration::from_millis(5)).await;
    }
    addr.send(Count).await.unwrap()
}

#[actix::test]
async fn publish_reaches_subscriber() {
    // Arrange
    let topic = Topic::<TaSignal>::new();
    let (addr, got) = sink(64);
    topic.subscribe("sink", addr.clone().recipient());
    // Act
    let d = topic.publish(signal("BTC/USDT", 0.6, Utc::now()));
    // Assert
    assert_eq!(d.delivered, 1);
    assert_eq!(settle(&addr, 1).await, 1);
    assert_eq!(got.lock()[0].symbol.as_str(), "BTC/USDT");
}

#[actix::test]
async fn every_subscriber_receives() {
    let topic = Topic::<TaSignal>::new();
    let sinks: Vec<_> = (0..3).map(|_| sink(64)).collect();
    for (i, (addr, _)) in sinks.iter().enumerate() {
        topic.subscribe(&format!("sink{i}"), addr.clone().recipient());
    }
    let d = topic.publish(signal("XRP/USDT", 0.5, Utc::now()));
    assert_eq!(d.delivered, 3);
    for (addr, got) in &sinks {
        assert_eq!(settle(addr, 1).await, 1);
        assert_eq!(got.lock()[0].symbol.as_str(), "XRP/USDT");
    }
}

#[actix::test]
async fn filter_blocks_message() {
    let topic = Topic::<TaSignal>::new();
    let (btc, btc_got) = sink(64);
    topic.subscribe_filtered("btc-only", btc.clone().recipient(), |e: &TaSignal| {
        e.symbol.base() == "BTC"
    });
    let d = topic.publish(signal("XRP/USDT", 0.5, Utc::now()));
    assert_eq!((d.delivered, d.filtered), (0, 1));
    topic.publish(signal("BTC/USDT", 0.5, Utc::now()));
    assert_eq!(settle(&btc, 1).await, 1);
    actix::clock::sleep(Duration::from_millis(20)).await;
    let got = btc_got.lock();
    assert_eq!(got.len(), 1, "the XRP event must not be delivered");
    assert_eq!(got[0].symbol.as_str(), "BTC/USDT");
}

#[actix::test]
async fn unsubscribe_stops_delivery() {
    let topic = Topic::<TaSignal>::new();
    let (addr, _) = sink(64);
    let id = topic.subscribe("sink", addr.clone().recipient());
    assert!(topic.unsubscribe(id));
    assert!(!topic.unsubscribe(id), "second unsubscribe finds nothing");
    let d = topic.publish(signal("BTC/USDT", 0.5, Utc::now()));
    assert_eq!(d.delivered, 0);
    assert_eq!(topic.subscriber_count(), 0);
}

#[actix::test]
async fn full_mailbox_counts_drops_and_never_blocks() {
    let topic = Topic::<TaSignal>::new();
    let (addr, _) = sink(2);
    topic.subscribe("slow", addr.clone().recipient());
    // No await between publishes: the actor cannot drain, so the mailbox fills.
    let mut dropped = 0;
    for _ in 0..10 {
        dropped += topic.publish(signal("BTC/USDT", 0.5, Utc::now())).dropped;
    }
    assert!(dropped >= 7, "dropped {dropped}");
    let stats = topic.stats();
    assert_eq!(stats[0].dropped as usize, dropped);
    assert_eq!(stats[0].delivered as usize + dropped, 10);
}

#[test]
fn latest_expires_by_ttl_and_memory_stays_flat() {
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let clock = ManualClock::new(start);
    let shared: SharedClock = Arc::new(clock.clone());
    let latest = Latest::<TaSignal>::new(ChronoDuration::seconds(300), shared);

    latest.record(signal("BTC/USDT", 0.7, start));
    assert!(latest.get("BTC/USDT").is_some());
    clock.advance(ChronoDuration::seconds(301));
    assert!(latest.get("BTC/USDT").is_none(), "expired after its TTL");

    // A million publishes over three symbols and a stream of one-off keys: memory stays bounded
    // by the live keys, never by the number of publishes.
    let symbols = ["BTC/USDT", "XRP/USDT", "XRP/BTC"];
    let mut max_len = 0;
    for i in 0..1_000_000u32 {
        if i % 1000 == 0 {
            clock.advance(ChronoDuration::seconds(1));
        }
        let now = clock.now_for_test();
        latest.record(signal(symbols[(i % 3) as usize], 0.5, now));
        if i % 10_000 == 0 {
            max_len = max_len.max(latest.len());
        }
    }
    assert!(max_len <= 3, "entries grew to {max_len}");
    assert_eq!(latest.len(), 3);
    clock.advance(ChronoDuration::seconds(400));
    assert_eq!(latest.purge(), 3);
    assert!(latest.is_empty());
}

trait NowForTest {
    fn now_for_test(&self) -> chrono::DateTime<Utc>;
}

impl NowForTest for ManualClock {
    fn now_for_test(&self) -> chrono::DateTime<Utc> {
        use triplegain_actors::clock::Clock;
        self.now()
    }
}

#[actix::test]
async fn concurrent_publishers_on_several_arbiters_lose_nothing() {
    const PUBLISHERS: usize = 4;
    const EACH: usize = 5_000;
    let topic = Topic::<TaSignal>::new();
    let (addr, _) = sink(PUBLISHERS * EACH);
    topic.subscribe("sink", addr.clone().recipient());

    let done = Arc::new(AtomicUsize::new(0));
    let arbiters: Vec<Arbiter> = (0..PUBLISHERS).map(|_| Arbiter::new()).collect();
    for (p, arbiter) in arbiters.iter().enumerate() {
        let topic = topic.clone();
        let done = done.clone();
        assert!(arbiter.spawn(async move {
            for i in 0..EACH {
                let d = topic.publish(signal("BTC/USDT", (p * EACH + i) as f64 / 1e6, Utc::now()));
                assert_eq!(d.dropped, 0);
            }
            done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    for _ in 0..500 {
        if done.load(Ordering::SeqCst) == PUBLISHERS {
            break;
        }
        actix::clock::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(done.load(Ordering::SeqCst), PUBLISHERS);
    assert_eq!(settle(&addr, PUBLISHERS * EACH).await, PUBLISHERS * EACH);
    assert_eq!(topic.published() as usize, PUBLISHERS * EACH);
    for a in arbiters {
        a.stop();
    }
}
