use super::*;

#[test]
fn call_budget_allows_max_calls_per_window_and_reports_the_wait() {
    let b = CallBudget::new("orders", 3, Duration::from_secs(60), Duration::from_secs(1));
    let t0 = Instant::now();
    for i in 0..3 {
        assert_eq!(b.try_take_at(t0 + Duration::from_secs(i)), Ok(()));
    }
    let wait = b.try_take_at(t0 + Duration::from_secs(10)).unwrap_err();
    assert_eq!(wait, Duration::from_millis(50_001));
    // The first call leaves the window 60 s after it was made.
    assert_eq!(b.try_take_at(t0 + Duration::from_secs(60)), Ok(()));
    assert!(b.try_take_at(t0 + Duration::from_secs(60)).is_err());
    assert_eq!(
        CallBudget::new("none", 0, Duration::from_secs(60), Duration::ZERO).try_take_at(t0),
        Err(Duration::MAX)
    );
}

#[tokio::test]
async fn call_budget_refuses_when_the_wait_exceeds_the_maximum() {
    let b = CallBudget::new("calls", 2, Duration::from_secs(60), Duration::from_millis(50));
    b.acquire().await.unwrap();
    b.acquire().await.unwrap();
    assert_eq!(b.used(), 2);
    assert!(matches!(b.acquire().await, Err(ExchangeError::RateLimited(m)) if m.contains("2 calls per 60 s")));
    // A short window frees up within the allowed wait.
    let short = CallBudget::new("calls", 1, Duration::from_millis(30), Duration::from_millis(500));
    short.acquire().await.unwrap();
    let t = Instant::now();
    short.acquire().await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(20));
    // A refunded slot is free again at once.
    let b = CallBudget::new("calls", 1, Duration::from_secs(60), Duration::ZERO);
    let slot = b.acquire().await.unwrap();
    assert!(b.acquire().await.is_err());
    b.refund(slot);
    assert_eq!(b.used(), 0);
    b.acquire().await.unwrap();
}

#[test]
fn tier_tables_match_the_documented_limits() {
    assert_eq!(
        Tier::Starter.rest_limits(),
        CounterLimits {
            max: 15.0,
            decay_per_sec: 0.33
        }
    );
    assert_eq!(
        Tier::Intermediate.rest_limits(),
        CounterLimits {
            max: 20.0,
            decay_per_sec: 0.5
        }
    );
    assert_eq!(
        Tier::Pro.rest_limits(),
        CounterLimits {
            max: 20.0,
            decay_per_sec: 1.0
        }
    );
    assert_eq!(
        Tier::Starter.trading_limits(),
        CounterLimits {
            max: 60.0,
            decay_per_sec: 1.0
        }
    );
    assert_eq!(
        Tier::Intermediate.trading_limits(),
        CounterLimits {
            max: 125.0,
            decay_per_sec: 2.34
        }
    );
    assert_eq!(
        Tier::Pro.trading_limits(),
        CounterLimits {
            max: 180.0,
            decay_per_sec: 3.75
        }
    );
    assert_eq!(Tier::parse("PRO"), Ok(Tier::Pro));
    assert!(Tier::parse("gold").is_err());
}

#[test]
fn rest_costs_per_endpoint() {
    assert_eq!(rest_cost("Balance"), 1.0);
    assert_eq!(rest_cost("QueryOrders"), 1.0);
    assert_eq!(rest_cost("TradesHistory"), 2.0);
    assert_eq!(rest_cost("Ledgers"), 2.0);
    assert_eq!(rest_cost("ClosedOrders"), 2.0);
    assert_eq!(rest_cost("AddOrder"), 0.0);
    assert_eq!(rest_cost("CancelOrder"), 0.0);
}

#[test]
fn counter_fills_then_decays() {
    let t0 = Instant::now();
    let mut c = DecayingCounter::new(Tier::Starter.rest_limits(), t0);
    for _ in 0..15 {
        c.try_charge(1.0, t0).unwrap();
    }
    // Full: the 16th call must wait 1 / 0.33 s ≈ 3.03 s.
    let wait = c.try_charge(1.0, t0).unwrap_err();
    assert!(
        wait > Duration::from_millis(3000) && wait < Duration::from_millis(3100),
        "{wait:?}"
    );
    // A history call (cost 2) needs twice that.
    let wait2 = c.try_charge(2.0, t0).unwrap_err();
    assert!(
        wait2 > Duration::from_millis(6000) && wait2 < Duration::from_millis(6100),
        "{wait2:?}"
    );
    // After the advertised wait the call fits.
    let later = t0 + wait;
    c.try_charge(1.0, later).unwrap();
    // 30 s later the counter has decayed by 9.9.
    let v = c.value_at(later + Duration::from_secs(30));
    assert!((v - 5.1).abs() < 0.05, "{v}");
    // It never goes below zero.
    assert_eq!(c.value_at(later + Duration::from_secs(3600)), 0.0);
}

#[test]
fn saturating_after_a_kraken_limit_error_makes_callers_wait() {
    let t0 = Instant::now();
    let mut c = DecayingCounter::new(Tier::Pro.rest_limits(), t0);
    c.try_charge(1.0, t0).unwrap();
    c.saturate(t0);
    assert_eq!(c.value_at(t0), 20.0);
    let wait = c.try_charge(1.0, t0).unwrap_err();
    assert!(
        wait >= Duration::from_secs(1) && wait < Duration::from_millis(1100),
        "{wait:?}"
    );

    let lim = TradingLimiter::new(Tier::Starter.trading_limits(), Duration::from_secs(1));
    lim.saturate("XBTUSDT");
    assert!(lim.try_charge_at("XBTUSDT", 1.0, Instant::now()).is_err());
    assert!(lim.try_charge_at("XRPUSDT", 1.0, Instant::now()).is_ok());
}

#[test]
fn a_cost_above_the_maximum_never_fits() {
    let t0 = Instant::now();
    let mut c = DecayingCounter::new(
        CounterLimits {
            max: 5.0,
            decay_per_sec: 1.0,
        },
        t0,
    );
    assert_eq!(c.try_charge(6.0, t0), Err(Duration::MAX));
}

#[test]
fn cancel_penalty_by_resting_time() {
    let s = Duration::from_secs;
    let cases = [
        (0, 8.0),
        (4, 8.0),
        (5, 6.0),
        (9, 6.0),
        (10, 5.0),
        (14, 5.0),
        (15, 4.0),
        (44, 4.0),
        (45, 2.0),
        (89, 2.0),
        (90, 1.0),
        (299, 1.0),
        (300, 0.0),
        (3600, 0.0),
    ];
    for (age, cost) in cases {
        assert_eq!(cancel_cost(s(age)), cost, "cancel after {age} s");
    }
    assert_eq!(amend_cost(s(1)), 4.0);
    assert_eq!(amend_cost(s(20)), 1.0);
    assert_eq!(edit_cost(s(1)), 7.0);
    assert_eq!(edit_cost(s(60)), 2.0);
    assert_eq!(edit_cost(s(400)), 1.0);
}

#[test]
fn cancelling_a_young_order_costs_more_on_its_pair_only() {
    let lim = TradingLimiter::new(Tier::Starter.trading_limits(), Duration::from_secs(1));
    let t0 = Instant::now();
    lim.try_charge_at("XBTUSDT", ADD_ORDER_COST, t0).unwrap();
    lim.record_placed("XBTUSDT", &["OABC-1", "tg-1"], t0);

    // Cancelled after 2 s: penalty 8, charged on XBTUSDT.
    let t2 = t0 + Duration::from_secs(2);
    assert_eq!(lim.cancel_charge_at("OABC-1", t2), Some(("XBTUSDT".to_owned(), 8.0)));
    assert_eq!(lim.cancel_charge_at("tg-1", t2), Some(("XBTUSDT".to_owned(), 8.0)));
    // After 60 s only 2, after 5 minutes nothing; unknown orders cost nothing.
    assert_eq!(
        lim.cancel_charge_at("OABC-1", t0 + Duration::from_secs(60)),
        Some(("XBTUSDT".to_owned(), 2.0))
    );
    assert_eq!(lim.cancel_charge_at("OABC-1", t0 + Duration::from_secs(301)), None);
    assert_eq!(lim.cancel_charge_at("OTHER", t2), None);

    lim.try_charge_at("XBTUSDT", 8.0, t2).unwrap();
    let v = lim.value_at("XBTUSDT", t2);
    assert!((v - 8.0).abs() < 1e-9, "1 + 8 - 2 s of decay = {v}");
    assert_eq!(lim.value_at("XRPUSDT", t2), 0.0);

    // Place-then-cancel loops exhaust the pair: 6 cycles of 9 within a second fill 60.
    let mut t = t2;
    let mut refused = None;
    for i in 0..10 {
        t += Duration::from_millis(100);
        if let Err(w) = lim.try_charge_at("XBTUSDT", ADD_ORDER_COST + cancel_cost(Duration::ZERO), t) {
            refused = Some((i, w));
            break;
        }
    }
    let (i, wait) = refused.expect("the loop must hit the trading limit");
    assert!(i >= 5, "refused too early at cycle {i}");
    assert!(wait > Duration::ZERO && wait < Duration::from_secs(10), "{wait:?}");

    lim.forget(&["OABC-1", "tg-1"]);
    assert_eq!(lim.cancel_charge_at("OABC-1", t2), None);
}

#[tokio::test]
async fn gate_waits_for_decay_within_the_allowed_wait_and_refuses_beyond_it() {
    // 2 calls fit, decay 20/s → the third waits ~50 ms.
    let gate = RateGate::new(
        "rest",
        CounterLimits {
            max: 2.0,
            decay_per_sec: 20.0,
        },
        Duration::from_millis(500),
    );
    gate.acquire(1.0).await.unwrap();
    gate.acquire(1.0).await.unwrap();
    let started = Instant::now();
    gate.acquire(1.0).await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(40), "waited only {waited:?}");

    let strict = RateGate::new(
        "rest",
        CounterLimits {
            max: 1.0,
            decay_per_sec: 0.1,
        },
        Duration::from_millis(100),
    );
    strict.acquire(1.0).await.unwrap();
    let started = Instant::now();
    let err = strict.acquire(1.0).await.unwrap_err();
    assert!(matches!(err, ExchangeError::RateLimited(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "must refuse without sleeping"
    );
}

#[tokio::test]
async fn polling_never_takes_the_reserved_points_of_the_switch_refresh() {
    // Starter: 15 points, 0.33/s, 2 kept for the reserved lane.
    let gate = RateGate::new("rest", Tier::Starter.rest_limits(), Duration::from_millis(50))
        .with_reserve(2.0, Duration::from_secs(5));
    for _ in 0..13 {
        gate.acquire(1.0).await.unwrap();
    }
    // Polling is refused at 13 of 15 ...
    assert!(matches!(gate.acquire(1.0).await, Err(ExchangeError::RateLimited(_))));
    // ... while the switch refresh still finds its two points at once.
    let t = Instant::now();
    gate.acquire_in(1.0, Lane::Reserved).await.unwrap();
    gate.acquire_in(1.0, Lane::Reserved).await.unwrap();
    assert!(t.elapsed() < Duration::from_millis(20), "{:?}", t.elapsed());
    // After Kraken's rate-limit reply the counter is full: the refresh waits for one point of
    // decay (~3 s) instead of being refused, as its own maximum wait allows.
    gate.saturate();
    let gate_short = RateGate::new(
        "rest",
        CounterLimits {
            max: 15.0,
            decay_per_sec: 10.0,
        },
        Duration::from_millis(10),
    )
    .with_reserve(2.0, Duration::from_secs(2));
    gate_short.saturate();
    assert!(
        gate_short.acquire(1.0).await.is_err(),
        "normal lane waits ~300 ms: refused"
    );
    let t = Instant::now();
    gate_short.acquire_in(1.0, Lane::Reserved).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(90),
        "waited for decay: {:?}",
        t.elapsed()
    );
}

#[test]
fn the_call_budget_keeps_its_reserve_for_the_reserved_lane() {
    let b = CallBudget::new("calls", 5, Duration::from_secs(60), Duration::ZERO).with_reserve(2, Duration::ZERO);
    let t0 = Instant::now();
    for i in 0..3 {
        assert_eq!(b.try_take_in(t0 + Duration::from_secs(i), Lane::Normal), Ok(()));
    }
    // The normal lane waits until its first call leaves the window.
    assert_eq!(
        b.try_take_in(t0 + Duration::from_secs(10), Lane::Normal),
        Err(Duration::from_millis(50_001))
    );
    assert_eq!(b.try_take_in(t0 + Duration::from_secs(10), Lane::Reserved), Ok(()));
    assert_eq!(b.try_take_in(t0 + Duration::from_secs(11), Lane::Reserved), Ok(()));
    assert!(b.try_take_in(t0 + Duration::from_secs(12), Lane::Reserved).is_err());
    // With 5 calls in the window the normal lane needs three of them gone: the third left at 62 s.
    assert_eq!(
        b.try_take_in(t0 + Duration::from_secs(20), Lane::Normal),
        Err(Duration::from_millis(42_001))
    );
}

#[test]
fn a_restarted_limiter_starts_charged_to_the_normal_ceiling() {
    let gate = RateGate::new("rest", Tier::Starter.rest_limits(), Duration::ZERO)
        .with_reserve(2.0, Duration::ZERO)
        .starting_charged();
    let v = gate.value();
    assert!((v - 13.0).abs() < 0.01, "{v}");
    // Normal calls first wait for decay; the reserved lane has its two points.
    let mut c = DecayingCounter::charged(Tier::Starter.rest_limits(), 13.0, Instant::now());
    assert!(c.try_charge_below(1.0, 13.0, Instant::now()).is_err());
    assert!(c.try_charge_below(1.0, 15.0, Instant::now()).is_ok());
    assert_eq!(
        DecayingCounter::charged(Tier::Pro.rest_limits(), 99.0, Instant::now()).value,
        20.0
    );
}
