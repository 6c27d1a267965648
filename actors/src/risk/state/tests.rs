use super::*;
use chrono::TimeZone;
use rust_decimal_macros::dec;
use std::collections::BTreeMap;

fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

fn btc() -> Symbol {
    Symbol::parse("BTC/USDT").unwrap()
}

/// A state that saw one portfolio update (equity 10 000) on Wednesday 2026-11-25 10:00.
fn funded(limits: &RiskLimits) -> RiskState {
    let mut s = RiskState::default();
    let t = at(2026, 11, 25, 10);
    s.roll_periods(t);
    s.apply_portfolio(dec!(10000), dec!(10000), dec!(0), BTreeMap::new(), t, limits);
    s
}

fn loss(s: &mut RiskState, pnl: Decimal, t: DateTime<Utc>, l: &RiskLimits) -> Vec<RiskEvent> {
    s.roll_periods(t);
    s.record_trade(&btc(), pnl, CorrelationId::new(), t, l)
}

#[test]
fn daily_loss_breaker_trips_at_5_percent_and_clears_at_utc_midnight() {
    let l = RiskLimits::default();
    let mut s = funded(&l);
    assert!(loss(&mut s, dec!(-499), at(2026, 11, 25, 11), &l).is_empty());
    assert!(!s.halted);
    let events = loss(&mut s, dec!(-1), at(2026, 11, 25, 12), &l);
    assert!(
        matches!(
            &events[..],
            [RiskEvent::BreakerTripped {
                breaker: Breaker::DailyLoss,
                ..
            }]
        ),
        "{events:?}"
    );
    assert!(s.halted);
    assert_eq!(s.halt_reason.as_deref(), Some("circuit breaker: daily_loss"));
    // Still the same UTC day at 23:00: no reset.
    assert!(!s.roll_periods(at(2026, 11, 25, 23)));
    assert!(s.halted);
    // First event after midnight resets the day; the week keeps its loss.
    assert!(s.roll_periods(at(2026, 11, 26, 0)));
    assert!(!s.halted, "{s:?}");
    assert_eq!(s.daily_pnl, dec!(0));
    assert_eq!(s.trades_today, 0);
    assert_eq!(s.weekly_pnl, dec!(-500));
}

#[test]
fn weekly_breaker_resets_on_the_first_event_of_a_new_iso_week_on_any_weekday() {
    let l = RiskLimits::default();
    let mut s = funded(&l);
    loss(&mut s, dec!(-450), at(2026, 11, 25, 11), &l); // Wed, week 48
    loss(&mut s, dec!(-450), at(2026, 11, 26, 11), &l); // Thu
    let events = loss(&mut s, dec!(-150), at(2026, 11, 28, 11), &l); // Sat: -1050 = 10.5 %
    assert!(events.iter().any(|e| matches!(
        e,
        RiskEvent::BreakerTripped {
            breaker: Breaker::WeeklyLoss,
            ..
        }
    )));
    assert!(s.halted);
    // Sunday is still ISO week 48.
    s.roll_periods(at(2026, 11, 29, 23));
    assert!(s.breakers.contains(&Breaker::WeeklyLoss));
    // Nothing happens on Monday; the first event is on Wednesday of week 49.
    assert!(s.roll_periods(at(2026, 12, 2, 9)));
    assert_eq!(s.weekly_pnl, dec!(0));
    assert!(!s.halted);
}

#[test]
fn iso_week_spans_the_year_boundary() {
    // 2026-12-31 (Thu) and 2027-01-01 (Fri) are both in ISO week 53 of 2026.
    assert!(same_iso_week(at(2026, 12, 31, 0), at(2027, 1, 1, 0)));
    assert!(!same_iso_week(at(2027, 1, 3, 23), at(2027, 1, 4, 0)));
}

#[test]
fn drawdown_breaker_needs_an_admin_and_rebases_the_peak() {
    let l = RiskLimits {
        drawdown_basis: DrawdownBasis::Account,
        ..RiskLimits::default()
    };
    let mut s = funded(&l);
    let t = at(2026, 11, 25, 12);
    let events = s.apply_portfolio(dec!(7900), dec!(10000), dec!(0), BTreeMap::new(), t, &l);
    assert!(matches!(
        &events[..],
        [RiskEvent::BreakerTripped {
            breaker: Breaker::MaxDrawdown,
            ..
        }]
    ));
    assert_eq!(s.drawdown_pct, dec!(21));
    assert!(s.halted);
    // Period roll-overs do not clear it.
    s.roll_periods(at(2026, 12, 10, 0));
    assert!(s.halted);
    assert_eq!(
        s.reset(ResetScope::Drawdown, false, t),
        Err(ResetError::AdminRequired("the drawdown breaker".into()))
    );
    assert_eq!(
        s.reset(ResetScope::All, false, t),
        Err(ResetError::AdminRequired("every breaker".into()))
    );
    assert!(s.halted);
    s.reset(ResetScope::Drawdown, true, t).unwrap();
    assert!(!s.halted);
    // The portfolio still reports the old peak; the breaker does not trip again at once.
    let events = s.apply_portfolio(dec!(7900), dec!(10000), dec!(0), BTreeMap::new(), t, &l);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(s.drawdown_pct, dec!(0));
    // A fresh 20 % fall from the new peak trips it again.
    let events = s.apply_portfolio(dec!(6320), dec!(10000), dec!(0), BTreeMap::new(), t, &l);
    assert!(matches!(
        &events[..],
        [RiskEvent::BreakerTripped {
            breaker: Breaker::MaxDrawdown,
            ..
        }]
    ));
}

#[test]
fn holdings_falling_with_the_market_do_not_trip_the_trading_drawdown() {
    let l = RiskLimits::default();
    assert_eq!(l.drawdown_basis, DrawdownBasis::Trading);
    let mut s = funded(&l);
    let t = at(2026, 11, 25, 12);
    // The market takes the holdings 25 % down: no trade lost anything.
    let events = s.apply_portfolio(dec!(7500), dec!(10000), dec!(0), BTreeMap::new(), t, &l);
    assert!(events.is_empty(), "{events:?}");
    assert!(!s.halted);
    assert_eq!(s.account_drawdown_pct, dec!(25));
    assert_eq!(s.drawdown_pct, dec!(0));
    assert_eq!(crate::risk::leverage_cap(Regime::TrendingBull, &s, &l), 5);
}

#[test]
fn realised_losses_trip_the_trading_drawdown_from_its_own_peak() {
    let l = RiskLimits {
        // Only the drawdown breaker is under test here.
        daily_loss_pct: dec!(100),
        weekly_loss_pct: dec!(100),
        ..RiskLimits::default()
    };
    let mut s = funded(&l);
    let t = at(2026, 11, 25, 12);
    // +1 000, then the holdings halve (ignored), then -2 300 from the 11 000 peak.
    assert!(s
        .record_trade(&btc(), dec!(1000), CorrelationId::new(), t, &l)
        .is_empty());
    s.apply_portfolio(dec!(5500), dec!(11000), dec!(0), BTreeMap::new(), t, &l);
    assert_eq!(s.account_drawdown_pct, dec!(50));
    assert_eq!(s.drawdown_pct, dec!(0));
    let events = s.record_trade(&btc(), dec!(-1200), CorrelationId::new(), t, &l);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(s.drawdown_pct, dec!(1200) / dec!(11000) * dec!(100));
    let events = s.record_trade(&btc(), dec!(-1100), CorrelationId::new(), t, &l);
    assert!(
        events.iter().any(|e| matches!(
            e,
            RiskEvent::BreakerTripped {
                breaker: Breaker::MaxDrawdown,
                ..
            }
        )),
        "{events:?}"
    );
    assert!(s.halted);
    assert_eq!(s.max_drawdown_pct, dec!(2300) / dec!(11000) * dec!(100));
    // An admin reset rebases the trading book at the current equity.
    s.reset(ResetScope::Drawdown, true, t).unwrap();
    assert!(!s.halted);
    assert_eq!((s.trading_base_usd, s.trading_pnl_usd), (Some(dec!(5500)), dec!(0)));
    assert_eq!(s.trading_drawdown_pct(), dec!(0));
}

#[test]
fn drawdown_exceeds_100_percent_with_negative_equity() {
    assert_eq!(drawdown_pct(dec!(-1000), dec!(10000)), dec!(110));
    assert_eq!(drawdown_pct(dec!(12000), dec!(10000)), dec!(0));
    assert_eq!(drawdown_pct(dec!(-5), dec!(0)), dec!(0));
}

#[test]
fn cooldowns_follow_the_loss_streak() {
    let l = RiskLimits::default();
    let mut s = funded(&l);
    let t = at(2026, 11, 25, 12);
    // (pnl, expected cooldown minutes from t, expected alert)
    let steps: [(Decimal, Option<i64>, bool); 6] = [
        (dec!(-10), Some(10), false),
        (dec!(-10), Some(10), false),
        (dec!(-10), Some(30), false),
        (dec!(-10), Some(30), false),
        (dec!(-10), Some(60), true),
        (dec!(-10), Some(60), false),
    ];
    for (i, (pnl, minutes, alert)) in steps.into_iter().enumerate() {
        s.cooldown_until = None;
        let events = s.record_trade(&btc(), pnl, CorrelationId::new(), t, &l);
        assert_eq!(
            s.cooldown_until,
            minutes.map(|m| t + Duration::minutes(m)),
            "loss {}",
            i + 1
        );
        let alerted = events.iter().any(|e| matches!(e, RiskEvent::ConsecutiveLosses { .. }));
        assert_eq!(alerted, alert, "loss {}", i + 1);
    }
    assert_eq!(s.consecutive_losses, 6);
    // A win ends the streak and adds no cooldown.
    s.cooldown_until = None;
    s.record_trade(&btc(), dec!(25), CorrelationId::new(), t, &l);
    assert_eq!((s.consecutive_losses, s.consecutive_wins), (0, 1));
    assert_eq!(s.cooldown_until, None);
    assert_eq!(s.trades_today, 7);
}

#[test]
fn cooldown_is_never_shortened() {
    let l = RiskLimits::default();
    let mut s = RiskState::default();
    let t = at(2026, 11, 25, 12);
    s.start_cooldown(t, 60, "long".into());
    s.position_opened(t, &l);
    assert_eq!(s.cooldown_until, Some(t + Duration::minutes(60)));
    assert_eq!(s.cooldown_reason.as_deref(), Some("long"));
    assert!(s.in_cooldown(t + Duration::minutes(59)));
    assert!(!s.in_cooldown(t + Duration::minutes(60)));
}

#[test]
fn post_trade_cooldown_after_opening() {
    let l = RiskLimits::default();
    let mut s = RiskState::default();
    let t = at(2026, 11, 25, 12);
    s.position_opened(t, &l);
    assert_eq!(s.cooldown_until, Some(t + Duration::minutes(5)));
}

/// The ATR of the BTC candle that opened `hour` hours after 2026-11-25 00:00 (`hour` < 48),
/// seen on 2026-11-27 at 00:00.
fn atr(s: &mut RiskState, value: f64, hour: i64, l: &RiskLimits) -> AtrOutcome {
    let candle = at(2026, 11, 25, 0) + Duration::hours(hour);
    s.record_atr("BTC/USDT", value, Some(candle), at(2026, 11, 27, 0), l)
}

#[test]
fn volatility_spike_starts_on_transition_and_clears() {
    let l = RiskLimits::default();
    let mut s = RiskState::default();
    let t = at(2026, 11, 27, 0);
    for hour in 0..5 {
        let out = atr(&mut s, 100.0, hour, &l);
        assert_eq!((out.change, out.events), (Change::Observed, vec![]));
    }
    // Exactly 3× is not a spike.
    assert!(atr(&mut s, 300.0, 5, &l).events.is_empty());
    assert!(!s.volatility_spike("BTC/USDT"));
    let out = atr(&mut s, 500.0, 6, &l);
    assert!(
        matches!(&out.events[..], [RiskEvent::VolatilitySpike { .. }]),
        "{out:?}"
    );
    assert_eq!(out.change, Change::Durable);
    assert!(s.volatility_spike("BTC/USDT"));
    assert_eq!(s.cooldown_until, Some(t + Duration::minutes(15)));
    // Still spiking: no new event, nothing durable.
    let out = atr(&mut s, 900.0, 7, &l);
    assert_eq!((out.change, out.events), (Change::Observed, vec![]));
    // The end of the spike is durable: the validation reads the flag.
    assert_eq!(atr(&mut s, 100.0, 8, &l).change, Change::Durable);
    assert!(!s.volatility_spike("BTC/USDT"));
    assert!(!s.volatility_spike("XRP/USDT"));
}

#[test]
fn the_atr_window_takes_one_sample_per_primary_candle() {
    let l = RiskLimits::default();
    let mut s = RiskState::default();
    atr(&mut s, 100.0, 0, &l);
    // Sixty snapshots of the next candle (one a minute live, or one per backtest batch).
    assert_eq!(atr(&mut s, 110.0, 1, &l).change, Change::Observed);
    for _ in 0..59 {
        let out = atr(&mut s, 110.0, 1, &l);
        assert_eq!((out.change, out.events), (Change::Unchanged, vec![]));
    }
    let v = &s.volatility["BTC/USDT"];
    assert_eq!(v.samples, [100.0, 110.0]);
    assert_eq!(v.avg_atr, 100.0, "the average of the samples before the newest");
    assert_eq!(v.sampled_at, Some(at(2026, 11, 25, 1)));
    // An older candle adds nothing either.
    assert_eq!(atr(&mut s, 500.0, 0, &l).change, Change::Unchanged);
    // The window holds `volatility_window` candles, however many snapshots came with them.
    for hour in 2..40 {
        for _ in 0..3 {
            atr(&mut s, hour as f64, hour, &l);
        }
    }
    let v = &s.volatility["BTC/USDT"];
    assert_eq!(v.samples.len(), l.volatility_window);
    assert_eq!(v.samples.front(), Some(&20.0));
}

#[test]
fn atr_without_a_candle_time_samples_every_snapshot_and_samples_from_the_future_restart_the_window() {
    let l = RiskLimits::default();
    let mut s = RiskState::default();
    let t = at(2026, 11, 25, 12);
    for _ in 0..3 {
        s.record_atr("BTC/USDT", 100.0, None, t, &l);
    }
    assert_eq!(s.volatility["BTC/USDT"].samples.len(), 3);

    // A stored state sampled up to 18:00 meets a clock at 12:00 (a replay of older data).
    let mut s = RiskState::default();
    s.record_atr("BTC/USDT", 100.0, Some(at(2026, 11, 25, 18)), at(2026, 11, 25, 19), &l);
    let out = s.record_atr("BTC/USDT", 50.0, Some(at(2026, 11, 25, 10)), t, &l);
    assert_eq!(out.change, Change::Observed);
    assert_eq!(s.volatility["BTC/USDT"].samples, [50.0]);
}

#[test]
fn only_a_new_regime_or_strictness_is_durable() {
    let mut s = RiskState::default();
    let (t1, t2) = (at(2026, 11, 25, 12), at(2026, 11, 25, 13));
    let strict = EntryStrictness::Strict;
    assert_eq!(s.update_regime(&btc(), Regime::Ranging, strict, t1), Change::Durable);
    assert_eq!(s.update_regime(&btc(), Regime::Ranging, strict, t2), Change::Observed);
    assert_eq!(s.regimes["BTC/USDT"].at, t2);
    assert_eq!(
        s.update_regime(&btc(), Regime::Ranging, EntryStrictness::Normal, t2),
        Change::Durable
    );
    assert_eq!(
        s.update_regime(&btc(), Regime::TrendingBull, EntryStrictness::Normal, t2),
        Change::Durable
    );
}

#[test]
fn redelivered_events_are_recognised() {
    let mut s = RiskState::default();
    let id = Uuid::new_v4();
    assert!(s.first_sighting(id));
    assert!(!s.first_sighting(id));
}

#[test]
fn exposure_percentages_are_of_equity() {
    let l = RiskLimits::default();
    let mut s = RiskState::default();
    let by_symbol = BTreeMap::from([("BTC/USDT".to_owned(), dec!(3000)), ("XRP/USDT".to_owned(), dec!(1000))]);
    s.apply_portfolio(
        dec!(10000),
        dec!(10000),
        dec!(4000),
        by_symbol,
        at(2026, 11, 25, 12),
        &l,
    );
    assert_eq!(s.symbol_exposure_pct("BTC/USDT"), dec!(30));
    assert_eq!(s.total_exposure_pct(), dec!(40));
    assert_eq!(s.available_margin_usd, dec!(6000));
}

#[test]
fn full_admin_reset_lifts_a_hold() {
    let mut s = RiskState::default();
    let t = at(2026, 11, 25, 12);
    s.halt("risk state could not be loaded".into());
    s.reset(ResetScope::Drawdown, true, t).unwrap();
    assert!(s.halted, "only a full reset lifts a hold");
    s.reset(ResetScope::All, true, t).unwrap();
    assert!(!s.halted);
}

#[test]
fn state_round_trips_through_json() {
    let l = RiskLimits::default();
    let mut s = funded(&l);
    loss(&mut s, dec!(-600), at(2026, 11, 25, 12), &l);
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["daily_pnl"], "-600");
    assert_eq!(json["breakers"][0], "daily_loss");
    let back: RiskState = serde_json::from_value(json).unwrap();
    assert_eq!(back, s);
}
