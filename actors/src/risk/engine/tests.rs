use super::*;
use crate::clock::{Clock, ManualClock};
use crate::domain::{OrderStatus, Regime, Side, Symbol};
use crate::risk::types::{ProposalSource, RejectionCode, VerdictStatus};
use crate::risk::DrawdownBasis;
use crate::supervision::{start_supervised, Registry, RestartPolicy};
use chrono::TimeZone;
use parking_lot::Mutex;
use rust_decimal_macros::dec;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// An in-memory [`StateStore`] with a save counter, an optional load delay and a switch
/// that makes loads fail.
#[derive(Clone, Default)]
struct MemStore {
    docs: Arc<Mutex<HashMap<String, serde_json::Value>>>,
    saves: Arc<AtomicUsize>,
    fail_loads: Arc<AtomicBool>,
    load_delay_ms: u64,
}

impl MemStore {
    fn doc(&self) -> Option<serde_json::Value> {
        self.docs.lock().get(RISK_STATE_KEY).cloned()
    }
}

impl StateStore for MemStore {
    fn load_state(&self, key: &str) -> crate::ports::StoreFuture<Option<serde_json::Value>> {
        let (docs, key, fail, delay) = (
            Arc::clone(&self.docs),
            key.to_owned(),
            self.fail_loads.load(Ordering::SeqCst),
            self.load_delay_ms,
        );
        Box::pin(async move {
            if delay > 0 {
                actix::clock::sleep(Duration::from_millis(delay)).await;
            }
            if fail {
                return Err(StoreError::Unavailable("database down".into()));
            }
            Ok(docs.lock().get(&key).cloned())
        })
    }

    fn save_state(&self, key: &str, state: serde_json::Value) -> crate::ports::StoreFuture<()> {
        let (docs, saves, key) = (Arc::clone(&self.docs), Arc::clone(&self.saves), key.to_owned());
        Box::pin(async move {
            saves.fetch_add(1, Ordering::SeqCst);
            docs.lock().insert(key, state);
            Ok(())
        })
    }
}

struct Collector(Arc<Mutex<Vec<RiskAlert>>>);
impl Actor for Collector {
    type Context = Context<Self>;
}
impl Handler<RiskAlert> for Collector {
    type Result = ();
    fn handle(&mut self, msg: RiskAlert, _: &mut Context<Self>) {
        self.0.lock().push(msg);
    }
}

struct Harness {
    addr: Addr<RiskEngine>,
    store: MemStore,
    alerts: Arc<Mutex<Vec<RiskAlert>>>,
    clock: ManualClock,
    registry: Registry,
    /// The market price the engine sees (observed now), `None` for no price.
    market: Arc<Mutex<Option<Decimal>>>,
}

/// A market that quotes its price as of the test clock's now.
struct TestMarket(ManualClock, Arc<Mutex<Option<Decimal>>>);

impl PriceSource for TestMarket {
    fn quote(&self, _: &Symbol) -> Option<Quote> {
        (*self.1.lock()).map(|price| Quote {
            price,
            at: self.0.now(),
        })
    }
}

fn wednesday() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
}

fn start(store: MemStore, clock: ManualClock) -> Harness {
    let topic = Topic::<RiskAlert>::new();
    let alerts = Arc::new(Mutex::new(Vec::new()));
    let collector = Collector(Arc::clone(&alerts)).start();
    topic.subscribe("collector", collector.recipient());
    let shared: SharedClock = Arc::new(clock.clone());
    let registry = Registry::new(RestartPolicy::default(), topic.clone(), Arc::clone(&shared));
    // These tests drive the drawdown breaker with valuations: the account basis.
    let cfg = RiskEngineConfig {
        limits: RiskLimits {
            drawdown_basis: DrawdownBasis::Account,
            ..RiskLimits::default()
        },
        store: Arc::new(store.clone()),
        alerts: topic,
        clock: shared,
    };
    let market = Arc::new(Mutex::new(Some(dec!(45000))));
    let source = Arc::new(TestMarket(clock.clone(), Arc::clone(&market)));
    let addr = start_supervised(&registry, "risk_engine", true, 64, move |sup| {
        RiskEngine::new(sup, cfg).with_price_source(source)
    });
    Harness {
        addr,
        store,
        alerts,
        clock,
        registry,
        market,
    }
}

fn btc() -> Symbol {
    Symbol::parse("BTC/USDT").unwrap()
}

fn portfolio(h: &Harness, equity: Decimal, peak: Decimal) -> PortfolioUpdate {
    PortfolioUpdate {
        meta: EventMeta::new("position_tracker", h.clock.now()),
        equity_usd: equity,
        peak_equity_usd: peak,
        drawdown_pct: Decimal::ZERO,
        open_exposure_usd: Decimal::ZERO,
        exposure_by_symbol: BTreeMap::new(),
        balances: BTreeMap::new(),
        allocation_pct: BTreeMap::new(),
        position_footprint: BTreeMap::new(),
    }
}

fn closed(h: &Harness, pnl: Decimal) -> ExecutionEvent {
    ExecutionEvent {
        meta: EventMeta::new("execution", h.clock.now()),
        event_type: ExecutionEventType::PositionClosed,
        order_id: "O-1".into(),
        client_order_id: None,
        symbol: btc(),
        side: Side::Sell,
        status: OrderStatus::Filled,
        size: dec!(0.01),
        fill_price: Some(dec!(45000)),
        fee: dec!(0),
        realized_pnl: Some(pnl),
        position_id: Some("P-1".into()),
    }
}

fn proposal() -> TradeProposal {
    TradeProposal {
        symbol: btc(),
        side: Side::Buy,
        size_usd: dec!(1000),
        entry_price: dec!(45000),
        stop_loss: Some(dec!(44100)),
        take_profit: Some(dec!(46800)),
        leverage: 1,
        confidence: 0.8,
        regime: Regime::TrendingBull,
        source: ProposalSource::Agent,
        correlation_id: CorrelationId::new(),
        reduce_only: false,
    }
}

async fn validate(h: &Harness) -> RiskVerdict {
    h.addr.send(ValidateTrade(proposal())).await.unwrap().unwrap()
}

async fn state(h: &Harness) -> RiskStateView {
    h.addr.send(GetRiskState).await.unwrap().unwrap()
}

/// Waits (at most 2 s) until `f` holds.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        actix::clock::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn stored(h: &Harness, field: &str) -> Option<serde_json::Value> {
    h.store.doc().map(|d| d[field].clone())
}

#[actix::test]
async fn equity_comes_only_from_portfolio_updates() {
    let h = start(MemStore::default(), ManualClock::new(wednesday()));
    let v = validate(&h).await;
    assert_eq!(v.rejections, vec![RejectionCode::EquityUnavailable]);
    h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
    let v = validate(&h).await;
    assert_eq!(v.status, VerdictStatus::Approved, "{v:?}");
}

#[actix::test]
async fn daily_loss_publishes_a_breaker_alert_and_halts_until_the_next_day() {
    let h = start(MemStore::default(), ManualClock::new(wednesday()));
    h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
    let loss = closed(&h, dec!(-600));
    let cid = loss.meta.correlation_id;
    h.addr.send(loss).await.unwrap();

    eventually("the daily-loss alert", || !h.alerts.lock().is_empty()).await;
    let alert = h.alerts.lock()[0].clone();
    assert_eq!(alert.alert_type, AlertType::CircuitBreaker);
    assert_eq!(alert.breach.as_deref(), Some("daily_loss"));
    assert_eq!(alert.severity, Severity::High);
    assert_eq!(alert.action_required.as_deref(), Some("pause_trading"));
    assert_eq!(alert.meta.correlation_id, cid, "the alert continues the trade's chain");

    let v = validate(&h).await;
    assert_eq!(
        (v.status, v.rejections.clone()),
        (VerdictStatus::Halted, vec![RejectionCode::TradingHalted])
    );

    // Another event on the same day does not alert twice.
    h.addr.send(portfolio(&h, dec!(9400), dec!(10000))).await.unwrap();
    assert_eq!(h.alerts.lock().len(), 1);

    h.clock.set(Utc.with_ymd_and_hms(2026, 11, 26, 0, 30, 0).unwrap());
    let v = validate(&h).await;
    assert_eq!(v.status, VerdictStatus::Approved, "{v:?}");
    let view = state(&h).await;
    assert_eq!(view.state.daily_pnl, dec!(0));
    assert_eq!(view.state.weekly_pnl, dec!(-600));
}

#[actix::test]
async fn weekly_pnl_resets_in_a_new_iso_week() {
    let h = start(MemStore::default(), ManualClock::new(wednesday()));
    h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
    h.addr.send(closed(&h, dec!(-300))).await.unwrap();
    h.clock.set(Utc.with_ymd_and_hms(2026, 11, 29, 23, 0, 0).unwrap()); // Sunday, same ISO week
    assert_eq!(state(&h).await.state.weekly_pnl, dec!(-300));
    h.clock.set(Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap()); // Tuesday, next ISO week
    let view = state(&h).await;
    assert_eq!(view.state.weekly_pnl, dec!(0));
    assert_eq!(view.state.weekly_period_start, Some(h.clock.now()));
}

/// Publishes `n` losing position closes in one burst (no yield) through `topic`.
fn burst(h: &Harness, topic: &Topic<ExecutionEvent>, n: usize) -> usize {
    (0..n).map(|_| topic.publish(closed(h, dec!(-1))).dropped).sum()
}

#[actix::test]
async fn a_burst_of_position_closes_past_a_full_mailbox_loses_none() {
    // The engine's mailbox holds 64: an ordinary subscription drops most of a 300-close burst.
    let lossy = start(MemStore::default(), ManualClock::new(wednesday()));
    lossy
        .addr
        .send(portfolio(&lossy, dec!(100000), dec!(100000)))
        .await
        .unwrap();
    let topic = Topic::<ExecutionEvent>::new();
    topic.subscribe("risk_engine", lossy.addr.clone().recipient());
    let dropped = burst(&lossy, &topic, 300);
    lossy.addr.send(Drain).await.unwrap();
    let seen = state(&lossy).await.state;
    assert!(dropped > 0, "the burst overflows the mailbox");
    assert_eq!(seen.daily_pnl, Decimal::from(-(300 - dropped as i64)));

    // The reliable subscription the server uses for money events counts every close.
    let h = start(MemStore::default(), ManualClock::new(wednesday()));
    h.addr.send(portfolio(&h, dec!(100000), dec!(100000))).await.unwrap();
    let topic = Topic::<ExecutionEvent>::new();
    topic.subscribe_reliable("risk_engine", h.addr.clone().recipient());
    assert_eq!(burst(&h, &topic, 300), 0);
    h.addr.send(Drain).await.unwrap();
    let view = state(&h).await;
    assert_eq!(view.state.daily_pnl, dec!(-300));
    assert_eq!(view.state.weekly_pnl, dec!(-300));
    assert_eq!(view.state.consecutive_losses, 300);
    assert_eq!(view.state.trades_today, 300);
    assert_eq!(view.state.trading_pnl_usd, dec!(-300));
    let stats = &topic.stats()[0];
    assert_eq!((stats.delivered, stats.dropped), (300, 0));
    assert!(stats.overflowed > 0, "{stats:?}");
}

#[actix::test]
async fn drawdown_breaker_needs_an_admin_reset() {
    let h = start(MemStore::default(), ManualClock::new(wednesday()));
    h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
    h.addr.send(portfolio(&h, dec!(7500), dec!(10000))).await.unwrap();
    eventually("the drawdown alert", || !h.alerts.lock().is_empty()).await;
    let alert = h.alerts.lock()[0].clone();
    assert_eq!(alert.breach.as_deref(), Some("max_drawdown"));
    assert_eq!(alert.severity, Severity::Critical);
    assert_eq!(alert.action_required.as_deref(), Some("close_all_positions"));

    h.clock.advance(chrono::Duration::days(8));
    assert_eq!(
        validate(&h).await.status,
        VerdictStatus::Halted,
        "period roll-over keeps it"
    );

    let refused = h
        .addr
        .send(ResetRisk {
            admin: false,
            scope: ResetScope::Drawdown,
        })
        .await
        .unwrap();
    assert!(
        matches!(refused, Err(RiskResetError::Refused(ResetError::AdminRequired(_)))),
        "{refused:?}"
    );
    assert_eq!(validate(&h).await.status, VerdictStatus::Halted);

    let view = h
        .addr
        .send(ResetRisk {
            admin: true,
            scope: ResetScope::Drawdown,
        })
        .await
        .unwrap()
        .unwrap();
    assert!(!view.halted);
    h.addr.send(portfolio(&h, dec!(7500), dec!(10000))).await.unwrap();
    let v = validate(&h).await;
    assert_eq!(v.status, VerdictStatus::Approved, "{v:?}");
}

#[actix::test]
async fn five_losses_alert_and_cool_down() {
    let h = start(MemStore::default(), ManualClock::new(wednesday()));
    h.addr.send(portfolio(&h, dec!(100000), dec!(100000))).await.unwrap();
    for _ in 0..5 {
        h.addr.send(closed(&h, dec!(-10))).await.unwrap();
    }
    eventually("the consecutive-loss alert", || !h.alerts.lock().is_empty()).await;
    assert_eq!(h.alerts.lock()[0].breach.as_deref(), Some("consecutive_losses"));
    let v = validate(&h).await;
    assert_eq!(v.rejections, vec![RejectionCode::CooldownActive]);
    h.clock.advance(chrono::Duration::minutes(61));
    let v = validate(&h).await;
    // After the cooldown: halved size and a 0.75 confidence floor (0.8 passes).
    assert_eq!(v.status, VerdictStatus::Modified, "{v:?}");
    assert_eq!(v.proposal.size_usd, dec!(500));
    assert_eq!(v.metrics.required_confidence, Some(0.75));
}

#[actix::test]
async fn a_redelivered_trade_result_counts_once() {
    let h = start(MemStore::default(), ManualClock::new(wednesday()));
    h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
    let ev = closed(&h, dec!(-100));
    h.addr.send(ev.clone()).await.unwrap();
    h.addr.send(ev).await.unwrap();
    let view = state(&h).await;
    assert_eq!(view.state.daily_pnl, dec!(-100));
    assert_eq!(view.state.consecutive_losses, 1);
}

#[actix::test]
async fn state_is_persisted_on_change_and_reloaded_after_a_crash() {
    let h = start(MemStore::default(), ManualClock::new(wednesday()));
    h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
    h.addr.send(closed(&h, dec!(-100))).await.unwrap();
    eventually("the loss to be persisted", || {
        stored(&h, "daily_pnl") == Some(serde_json::json!("-100"))
    })
    .await;

    // Change the stored document behind the engine's back: only a reload can see this.
    h.store.docs.lock().get_mut(RISK_STATE_KEY).unwrap()["consecutive_losses"] = serde_json::json!(4);

    h.registry.inject_fault("risk_engine").await.unwrap();
    let view = state(&h).await;
    assert_eq!(
        view.state.consecutive_losses, 4,
        "state reloaded from the store after the restart"
    );
    assert_eq!(view.state.daily_pnl, dec!(-100));
    assert_eq!(view.state.equity_usd, Some(dec!(10000)));
    let record = h.registry.get("risk_engine").unwrap();
    assert_eq!((record.starts, record.restarts), (2, 1));
    assert!(view.persistence_error.is_none());
}

#[actix::test]
async fn a_new_engine_restores_the_halt_before_answering() {
    let first = start(MemStore::default(), ManualClock::new(wednesday()));
    first
        .addr
        .send(portfolio(&first, dec!(10000), dec!(10000)))
        .await
        .unwrap();
    first
        .addr
        .send(portfolio(&first, dec!(7000), dec!(10000)))
        .await
        .unwrap();
    eventually("the breaker to be persisted", || {
        stored(&first, "breakers") == Some(serde_json::json!(["max_drawdown"]))
    })
    .await;

    // A second process on the same store, with a slow store: the first answer waits for the load.
    let store = MemStore {
        load_delay_ms: 200,
        ..first.store.clone()
    };
    let second = start(store, ManualClock::new(wednesday()));
    let v = validate(&second).await;
    assert_eq!(v.status, VerdictStatus::Halted, "{v:?}");
    assert!(v.reason.unwrap().contains("max_drawdown"));
}

#[actix::test]
async fn an_unreadable_store_halts_and_keeps_the_stored_state() {
    let store = MemStore::default();
    store
        .docs
        .lock()
        .insert(RISK_STATE_KEY.into(), serde_json::json!({"consecutive_losses": 2}));
    store.fail_loads.store(true, Ordering::SeqCst);
    let h = start(store, ManualClock::new(wednesday()));
    let v = validate(&h).await;
    assert_eq!(v.status, VerdictStatus::Halted);
    assert!(v.reason.unwrap().contains("could not be loaded"));

    h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
    h.addr.send(Drain).await.unwrap();
    assert_eq!(
        h.store.saves.load(Ordering::SeqCst),
        0,
        "nothing overwrites the stored state"
    );

    // An admin accepts the current state; saving resumes.
    let view = h
        .addr
        .send(ResetRisk {
            admin: true,
            scope: ResetScope::All,
        })
        .await
        .unwrap()
        .unwrap();
    assert!(!view.halted);
    h.addr.send(Drain).await.unwrap();
    assert_eq!(stored(&h, "consecutive_losses"), Some(serde_json::json!(0)));
}

#[actix::test]
async fn drain_writes_the_latest_state() {
    let h = start(MemStore::default(), ManualClock::new(wednesday()));
    h.addr.send(portfolio(&h, dec!(12345), dec!(12345))).await.unwrap();
    h.addr.send(Drain).await.unwrap();
    assert_eq!(stored(&h, "equity_usd"), Some(serde_json::json!("12345")));
}

/// A snapshot whose indicators include the BTC 1h candle that opened `hour` hours after
/// Wednesday 00:00 (before the clock's 10:00 for `hour` < 10).
fn snapshot(h: &Harness, atr: f64, hour: i64) -> MarketSnapshot {
    let day = wednesday() - chrono::Duration::hours(10);
    MarketSnapshot {
        meta: EventMeta::new("market", h.clock.now()),
        symbol: btc(),
        current_price: dec!(45000),
        price_24h_ago: None,
        price_change_24h_pct: None,
        volume_24h: None,
        volume_vs_avg: None,
        indicators: crate::indicators::IndicatorSnapshot {
            atr_14: Some(atr),
            ..Default::default()
        },
        indicators_at: Some(day + chrono::Duration::hours(hour)),
        data_age_seconds: 0,
        missing_data_flags: Vec::new(),
    }
}

#[actix::test]
async fn an_atr_spike_cools_down_then_halves_the_size() {
    let h = start(MemStore::default(), ManualClock::new(wednesday()));
    h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
    for hour in 0..5 {
        h.addr.send(snapshot(&h, 100.0, hour)).await.unwrap();
    }
    assert_eq!(validate(&h).await.status, VerdictStatus::Approved);
    h.addr.send(snapshot(&h, 450.0, 5)).await.unwrap();
    assert_eq!(validate(&h).await.rejections, vec![RejectionCode::CooldownActive]);
    h.clock.advance(chrono::Duration::minutes(16));
    let v = validate(&h).await;
    assert_eq!(v.status, VerdictStatus::Modified, "{v:?}");
    assert_eq!(v.proposal.size_usd, dec!(500));
    assert!(v.warnings.iter().any(|w| w.starts_with("volatility_spike")));
}

#[actix::test]
async fn regime_updates_set_the_entry_strictness() {
    let h = start(MemStore::default(), ManualClock::new(wednesday()));
    h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
    let mut p = proposal();
    p.regime = Regime::Ranging;
    p.confidence = 0.62;
    // Ranging defaults to strict: 0.60 + 0.05.
    let v = h.addr.send(ValidateTrade(p.clone())).await.unwrap().unwrap();
    assert_eq!(v.rejections, vec![RejectionCode::ConfidenceTooLow]);
    h.addr
        .send(RegimeUpdate {
            meta: EventMeta::new("regime", h.clock.now()),
            symbol: btc(),
            regime: Regime::Ranging,
            confidence: 0.7,
            position_size_multiplier: 0.75,
            entry_strictness: crate::domain::EntryStrictness::Normal,
            stop_loss_atr_multiplier: 0.8,
            take_profit_atr_multiplier: 1.5,
            max_leverage: 2,
            previous_regime: None,
        })
        .await
        .unwrap();
    let v = h.addr.send(ValidateTrade(p)).await.unwrap().unwrap();
    assert_eq!(v.status, VerdictStatus::Approved, "{v:?}");
    let json = serde_json::to_value(state(&h).await).unwrap();
    assert_eq!(json["state"]["regimes"]["BTC/USDT"]["entry_strictness"], "normal");
}

fn regime(h: &Harness, regime: Regime, entry_strictness: crate::domain::EntryStrictness) -> RegimeUpdate {
    RegimeUpdate {
        meta: EventMeta::new("regime", h.clock.now()),
        symbol: btc(),
        regime,
        confidence: 0.7,
        position_size_multiplier: 1.0,
        entry_strictness,
        stop_loss_atr_multiplier: 1.0,
        take_profit_atr_multiplier: 2.0,
        max_leverage: 3,
        previous_regime: None,
    }
}

fn saves(h: &Harness) -> usize {
    h.store.saves.load(Ordering::SeqCst)
}

/// Lets spawned saves run, then returns the save count.
async fn settled_saves(h: &Harness) -> usize {
    state(h).await;
    actix::clock::sleep(Duration::from_millis(30)).await;
    saves(h)
}

#[actix::test]
async fn snapshots_and_repeated_regimes_are_saved_only_with_a_durable_change_or_on_drain() {
    use crate::domain::EntryStrictness::{Normal, Strict};
    let h = start(MemStore::default(), ManualClock::new(wednesday()));
    h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
    h.addr.send(regime(&h, Regime::Ranging, Strict)).await.unwrap();
    eventually("the first regime to be saved", || {
        stored(&h, "regimes").is_some_and(|r| r["BTC/USDT"]["regime"] == serde_json::json!("ranging"))
    })
    .await;
    let before = settled_saves(&h).await;

    // Ten snapshots for each of three candles with an unchanged ATR, and thirty identical
    // regime updates: nothing is written.
    for hour in 0..3 {
        for _ in 0..10 {
            h.addr.send(snapshot(&h, 100.0, hour)).await.unwrap();
            h.addr.send(regime(&h, Regime::Ranging, Strict)).await.unwrap();
        }
    }
    assert_eq!(settled_saves(&h).await, before, "observations cause no save");
    assert_eq!(stored(&h, "volatility"), Some(serde_json::json!({})));
    let view = state(&h).await;
    assert_eq!(view.state.volatility["BTC/USDT"].samples, [100.0, 100.0, 100.0]);

    // A spike starts a cooldown: saved at once, with the samples before it.
    h.addr.send(snapshot(&h, 450.0, 3)).await.unwrap();
    eventually("the spike to be saved", || {
        stored(&h, "volatility").is_some_and(|v| v["BTC/USDT"]["spike_active"] == serde_json::json!(true))
    })
    .await;
    assert_eq!(
        stored(&h, "volatility").unwrap()["BTC/USDT"]["samples"],
        serde_json::json!([100.0, 100.0, 100.0, 450.0])
    );
    assert!(stored(&h, "cooldown_until").is_some_and(|c| c.is_string()));

    // A new strictness of the same regime is saved at once.
    let before = settled_saves(&h).await;
    h.addr.send(regime(&h, Regime::Ranging, Normal)).await.unwrap();
    eventually("the new strictness to be saved", || {
        stored(&h, "regimes").is_some_and(|r| r["BTC/USDT"]["entry_strictness"] == serde_json::json!("normal"))
    })
    .await;
    assert!(saves(&h) > before);

    // A new regime too.
    let before = settled_saves(&h).await;
    h.addr.send(regime(&h, Regime::TrendingBull, Normal)).await.unwrap();
    eventually("the new regime to be saved", || {
        stored(&h, "regimes").is_some_and(|r| r["BTC/USDT"]["regime"] == serde_json::json!("trending_bull"))
    })
    .await;
    assert!(saves(&h) > before);

    // Observations after the last save (a sample during the spike, a repeated regime a
    // minute later) stay in memory until Drain writes them.
    let before = settled_saves(&h).await;
    h.clock.advance(chrono::Duration::minutes(1));
    h.addr.send(snapshot(&h, 600.0, 4)).await.unwrap();
    h.addr.send(regime(&h, Regime::TrendingBull, Normal)).await.unwrap();
    assert_eq!(settled_saves(&h).await, before);
    h.addr.send(Drain).await.unwrap();
    let doc = h.store.doc().unwrap();
    assert_eq!(
        doc["volatility"]["BTC/USDT"]["samples"].as_array().map(Vec::len),
        Some(5)
    );
    assert_eq!(
        doc["regimes"]["BTC/USDT"]["at"],
        serde_json::to_value(h.clock.now()).unwrap()
    );
}

#[actix::test]
async fn proposals_are_valued_at_the_engines_market_price_never_their_own() {
    let h = start(MemStore::default(), ManualClock::new(wednesday()));
    h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
    // A sell at 400 against a 45 000 market: refused naming the deviation, not sized at 400.
    let mut p = proposal();
    p.side = Side::Sell;
    p.entry_price = dec!(400);
    p.stop_loss = Some(dec!(404));
    p.take_profit = Some(dec!(390));
    p.size_usd = dec!(20);
    let v = h.addr.send(ValidateTrade(p)).await.unwrap().unwrap();
    assert_eq!(v.status, VerdictStatus::Rejected);
    assert_eq!(v.rejections, vec![RejectionCode::LimitPriceDeviation], "{v:?}");
    assert_eq!(v.metrics.market_price, Some(dec!(45000)));
    // A buy 10x the market is refused the same way.
    let mut p = proposal();
    p.entry_price = dec!(450000);
    let v = h.addr.send(ValidateTrade(p)).await.unwrap().unwrap();
    assert_eq!(v.rejections, vec![RejectionCode::LimitPriceDeviation]);
    // Within the deviation the volume is kept and valued where it fills, the market:
    // 1 000 at 45 450 is 990.09… at 45 000, and the stop is judged against 45 000.
    let mut p = proposal();
    p.entry_price = dec!(45450);
    let v = h.addr.send(ValidateTrade(p)).await.unwrap().unwrap();
    assert!(v.is_approved(), "{v:?}");
    assert_eq!(v.proposal.entry_price, dec!(45000));
    assert!(
        v.proposal.size_usd > dec!(990) && v.proposal.size_usd < dec!(991),
        "{v:?}"
    );
}

#[actix::test]
async fn no_price_or_a_stale_price_refuses_entries_but_not_reductions() {
    let h = start(MemStore::default(), ManualClock::new(wednesday()));
    h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
    *h.market.lock() = None;
    let v = validate(&h).await;
    assert_eq!(v.rejections, vec![RejectionCode::MarketPriceUnavailable], "{v:?}");
    let mut r = proposal();
    r.reduce_only = true;
    r.side = Side::Sell;
    r.stop_loss = None;
    r.take_profit = None;
    assert!(h.addr.send(ValidateTrade(r)).await.unwrap().unwrap().is_approved());
    // A snapshot from the feed gives a price; once older than the limit it is no price.
    let mut snap = snapshot(&h, 100.0, 0);
    snap.indicators.atr_14 = None;
    h.addr.send(snap).await.unwrap();
    assert!(validate(&h).await.is_approved());
    h.clock
        .advance(chrono::Duration::seconds(RiskLimits::default().max_price_age_secs + 1));
    let v = validate(&h).await;
    assert_eq!(v.rejections, vec![RejectionCode::MarketPriceUnavailable], "{v:?}");
    assert!(v.reason.unwrap().contains("old"));
}

fn system_event(h: &Harness, event: &str) -> SystemEvent {
    SystemEvent {
        meta: EventMeta::new("coordinator", h.clock.now()),
        event: event.into(),
        details: serde_json::json!({"reason": "by hand"}),
    }
}

#[actix::test]
async fn a_coordinator_halt_or_an_escalation_halts_entries_until_the_coordinator_resumes() {
    let h = start(MemStore::default(), ManualClock::new(wednesday()));
    h.addr.send(portfolio(&h, dec!(10000), dec!(10000))).await.unwrap();
    assert!(validate(&h).await.is_approved());
    h.addr.send(system_event(&h, "coordinator_halted")).await.unwrap();
    let view = state(&h).await;
    assert!(view.halted, "the engine reports the halt");
    assert_eq!(view.halt_reason.as_deref(), Some("coordinator halted: by hand"));
    assert!(!view.state.halted, "no breaker of its own");
    let v = validate(&h).await;
    assert_eq!(v.status, VerdictStatus::Halted);
    let mut r = proposal();
    r.reduce_only = true;
    r.side = Side::Sell;
    r.stop_loss = None;
    r.take_profit = None;
    assert!(
        h.addr.send(ValidateTrade(r)).await.unwrap().unwrap().is_approved(),
        "reductions pass"
    );
    // The halt survives a restart.
    eventually("halt saved", || {
        stored(&h, "external_halt") == Some(serde_json::json!("coordinator halted: by hand"))
    })
    .await;
    h.addr.send(system_event(&h, "coordinator_resumed")).await.unwrap();
    assert!(!state(&h).await.halted);
    assert!(validate(&h).await.is_approved());

    h.addr
        .send(RiskAlert {
            meta: EventMeta::new("supervisor", h.clock.now()),
            alert_type: AlertType::ActorEscalated,
            severity: Severity::Critical,
            message: "actor x exceeded its restart intensity".into(),
            action_required: Some("halt_trading".into()),
            breach: Some("actor_escalated:x".into()),
            symbol: None,
        })
        .await
        .unwrap();
    assert_eq!(validate(&h).await.status, VerdictStatus::Halted);
}
