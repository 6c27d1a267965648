//! The execution core on its own: plain function calls, no actix system, no exchange, no store.
//! Each test feeds what the exchange said and checks the state and the effects queued.

use super::*;
use crate::clock::ManualClock;
use crate::domain::{OrderStatus, PositionSide, PositionStatus, Regime};
use crate::execution::api::{ExecuteTrade, ExecutionError};
use crate::messages::ExecutionEventType;
use crate::ports::{ExchangeError, ExchangeOrder, OrderAck, PairInfo};
use crate::risk::{ProposalSource, RiskApproved, TradeProposal};
use chrono::TimeZone;
use rust_decimal_macros::dec;

fn btc() -> Symbol {
    Symbol::parse("BTC/USDT").unwrap()
}

fn pair() -> PairInfo {
    crate::testing::btc_usdt_pair()
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap()
}

/// A loaded, reconciled core with nothing tracked, on a manual clock.
fn core_with(cfg: ExecutionConfig) -> (ExecutionCore, ManualClock) {
    let clock = ManualClock::new(start());
    let mut core = ExecutionCore::new(cfg, Arc::new(clock.clone()));
    assert_eq!(core.on_loaded(Ok(vec![pair()]), Ok(vec![]), Ok(vec![])), Loaded::Ready);
    assert!(core.poll_plan().is_none(), "nothing tracked, nothing to poll");
    assert!(core.reconciled);
    core.take_effects();
    (core, clock)
}

fn core() -> (ExecutionCore, ManualClock) {
    core_with(ExecutionConfig::default())
}

fn buy(stop: Decimal, take_profit: Decimal) -> ExecuteTrade {
    ExecuteTrade::limit(RiskApproved::for_tests(TradeProposal {
        symbol: btc(),
        side: Side::Buy,
        size_usd: dec!(1000),
        entry_price: dec!(50000),
        stop_loss: Some(stop),
        take_profit: Some(take_profit),
        leverage: 1,
        confidence: 0.8,
        regime: Regime::TrendingBull,
        source: ProposalSource::Agent,
        correlation_id: CorrelationId::new(),
        reduce_only: false,
    }))
}

/// The exchange's view of `rec`.
fn seen(rec: &OrderRecord, status: OrderStatus, filled: Decimal, avg: Option<Decimal>, fee: Decimal) -> ExchangeOrder {
    ExchangeOrder {
        exchange_order_id: format!("X-{}", rec.view.client_order_id),
        client_order_id: Some(rec.view.client_order_id.clone()),
        symbol: rec.view.symbol.clone(),
        side: rec.view.side,
        order_type: rec.view.order_type,
        status,
        volume: rec.view.volume,
        filled_volume: filled,
        avg_fill_price: avg,
        fee,
        price: rec.view.price,
        opened_at: None,
        closed_at: None,
        reason: None,
    }
}

fn ack(rec: &OrderRecord) -> PlaceOutcome {
    Ok(Ok(OrderAck {
        exchange_order_id: format!("X-{}", rec.view.client_order_id),
        client_order_id: rec.view.client_order_id.clone(),
        description: "ok".into(),
    }))
}

/// Places and acknowledges an entry; returns its record.
fn placed_entry(core: &mut ExecutionCore, msg: &ExecuteTrade) -> OrderRecord {
    let TradePlan::Order(rec) = core.plan_trade(msg).unwrap() else {
        panic!("an entry is an order")
    };
    core.track(&rec);
    assert!(core.poll_plan().is_none(), "an order being placed is not polled");
    core.on_placed(rec.view.id, ack(&rec)).unwrap();
    core.orders[&rec.view.id].clone()
}

/// The protective orders the effects ask to place, by kind.
fn placements(effects: &[Effect]) -> Vec<(Protect, OrderRecord, Option<Uuid>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::PlaceProtection { rec, kind, replaces } => Some((*kind, (**rec).clone(), *replaces)),
            _ => None,
        })
        .collect()
}

fn published(effects: &[Effect]) -> Vec<&ExecutionEvent> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Publish(ev) => Some(&**ev),
            _ => None,
        })
        .collect()
}

fn cancels(effects: &[Effect]) -> Vec<Uuid> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Cancel { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

/// An entry filled and both protective orders placed and acknowledged: (entry, stop, take-profit).
fn protected_position(core: &mut ExecutionCore) -> (OrderRecord, OrderRecord, OrderRecord) {
    let entry = placed_entry(core, &buy(dec!(49000), dec!(52000)));
    core.take_effects();
    core.apply_update(
        entry.view.id,
        &seen(
            &entry,
            OrderStatus::Filled,
            entry.view.volume,
            Some(dec!(50000)),
            dec!(0.8),
        ),
    );
    let placed = placements(&core.take_effects());
    let mut sl = None;
    let mut tp = None;
    for (kind, rec, _) in placed {
        let view = core.on_placed(rec.view.id, ack(&rec)).unwrap();
        core.protection_placed(entry.view.position_id.unwrap(), kind, None, Ok(view));
        match kind {
            Protect::StopLoss => sl = Some(core.orders[&rec.view.id].clone()),
            Protect::TakeProfit => tp = Some(core.orders[&rec.view.id].clone()),
        }
    }
    core.take_effects();
    (entry, sl.unwrap(), tp.unwrap())
}

#[test]
fn pnl_follows_the_reference_examples() {
    let (p, pct) = position_pnl(PositionSide::Long, dec!(45000), dec!(46000), dec!(0.1), 1);
    assert_eq!(p, dec!(100));
    assert_eq!(pct.round_dp(3), dec!(2.222));
    assert_eq!(
        position_pnl(PositionSide::Long, dec!(45000), dec!(44000), dec!(0.1), 1).0,
        dec!(-100)
    );
    assert_eq!(
        position_pnl(PositionSide::Short, dec!(45000), dec!(44000), dec!(0.1), 1).0,
        dec!(100)
    );
    // 0.1 margin × 5 leverage = 0.5 traded.
    let (p, pct) = position_pnl(PositionSide::Long, dec!(45000), dec!(46000), dec!(0.5), 5);
    assert_eq!(p, dec!(500));
    assert_eq!(pct.round_dp(2), dec!(11.11));
    assert_eq!(
        position_pnl(PositionSide::Long, dec!(0), dec!(1), dec!(1), 1),
        (dec!(0), dec!(0))
    );
}

#[test]
fn an_entry_fill_is_written_as_one_transaction_before_its_stop_and_take_profit_are_sent() {
    let (mut core, _) = core();
    let entry = placed_entry(&mut core, &buy(dec!(49000.04), dec!(52000)));
    assert_eq!(entry.view.status, OrderStatus::Open);
    assert_eq!(entry.view.volume, dec!(0.02), "1000 USD at 50000, on the lot");
    core.take_effects();

    core.apply_update(
        entry.view.id,
        &seen(&entry, OrderStatus::Filled, dec!(0.02), Some(dec!(50000)), dec!(0.8)),
    );
    let effects = core.take_effects();
    let fill_at = effects
        .iter()
        .position(|e| matches!(e, Effect::Write(Op::Fill(f)) if f.trades.len() == 1 && f.positions.len() == 1))
        .expect("the order, its trade and the position in one write");
    let first_place = effects
        .iter()
        .position(|e| matches!(e, Effect::PlaceProtection { .. }))
        .expect("protection placed");
    assert!(
        fill_at < first_place,
        "the fill is stored before anything is placed for it"
    );

    let placed = placements(&effects);
    assert_eq!(placed.len(), 2);
    let (_, stop, _) = placed.iter().find(|(k, _, _)| *k == Protect::StopLoss).unwrap();
    assert_eq!(stop.view.price, Some(dec!(49000)), "quantised to the 0.1 tick");
    assert_eq!(stop.view.volume, dec!(0.02));
    assert_eq!(stop.view.side, Side::Sell);
    assert!(core.placing.contains(&stop.view.id), "tracked as being placed");
    let position = core.positions().next().unwrap();
    assert_eq!(position.size, dec!(0.02));
    assert_eq!(position.realized_pnl, dec!(-0.8), "the entry fee is booked at once");
    let events = published(&effects);
    assert!(events.iter().any(|e| e.event_type == ExecutionEventType::OrderFilled));
    assert!(events
        .iter()
        .any(|e| e.event_type == ExecutionEventType::PositionOpened));

    // The same view again changes nothing.
    core.apply_update(
        entry.view.id,
        &seen(&entry, OrderStatus::Filled, dec!(0.02), Some(dec!(50000)), dec!(0.8)),
    );
    let again = core.take_effects();
    assert!(published(&again).is_empty());
    assert!(placements(&again).is_empty());
    assert_eq!(core.positions().next().unwrap().size, dec!(0.02));
}

#[test]
fn a_stop_fill_closes_the_position_net_of_both_fees_and_cancels_the_take_profit() {
    let (mut core, _) = core();
    let (_, sl, tp) = protected_position(&mut core);
    core.apply_update(
        sl.view.id,
        &seen(&sl, OrderStatus::Filled, dec!(0.02), Some(dec!(49000)), dec!(0.78)),
    );
    let effects = core.take_effects();
    let closed = published(&effects)
        .into_iter()
        .find(|e| e.event_type == ExecutionEventType::PositionClosed)
        .expect("position closed");
    // (49000 − 50000) × 0.02 = −20, minus 0.8 entry and 0.78 exit fees.
    assert_eq!(closed.realized_pnl, Some(dec!(-21.58)));
    assert_eq!(cancels(&effects), vec![tp.view.id], "one cancels the other");
    assert_eq!(core.positions().count(), 0);
    assert!(placements(&effects).is_empty(), "a closed position gets no new stop");
}

#[test]
fn a_stop_of_unknown_outcome_is_replaced_after_a_missed_search_and_cancelled_when_it_appears_late() {
    let (mut core, _) = core();
    let entry = placed_entry(&mut core, &buy(dec!(49000), dec!(52000)));
    core.apply_update(
        entry.view.id,
        &seen(&entry, OrderStatus::Filled, dec!(0.02), Some(dec!(50000)), dec!(0)),
    );
    let pid = entry.view.position_id.unwrap();
    let placed = placements(&core.take_effects());
    let (_, stop, _) = placed
        .iter()
        .find(|(k, _, _)| *k == Protect::StopLoss)
        .cloned()
        .unwrap();
    // The exchange's reply was lost: the stop may or may not be on the book.
    let res = core.on_placed(stop.view.id, Ok(Err(ExchangeError::Unknown("timeout".into()))));
    assert!(matches!(res, Err(ExecutionError::Unknown(_))));
    core.protection_placed(pid, Protect::StopLoss, None, res.map(|_| unreachable!()));
    let effects = core.take_effects();
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::RetryProtection { .. })),
        "an order of unknown outcome is never re-sent blind"
    );
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::Alert(a) if a.alert_type == AlertType::StopLossMissing)));

    // The search by client id does not find it (not visible yet): a replacement goes out at once.
    core.on_polled(vec![stop.view.id], Ok(vec![]), "search");
    let placed = placements(&core.take_effects());
    assert_eq!(placed.len(), 1);
    let (kind, replacement, replaces) = placed[0].clone();
    assert_eq!((kind, replaces), (Protect::StopLoss, Some(stop.view.id)));
    let view = core.on_placed(replacement.view.id, ack(&replacement)).unwrap();
    core.protection_placed(pid, Protect::StopLoss, replaces, Ok(view));
    let effects = core.take_effects();
    assert!(
        cancels(&effects).is_empty(),
        "the original is only cancelled if it appears"
    );

    // The original shows up after all: one stop is enough.
    core.apply_update(stop.view.id, &seen(&stop, OrderStatus::Open, dec!(0), None, dec!(0)));
    assert_eq!(cancels(&core.take_effects()), vec![stop.view.id]);
    assert_eq!(
        core.positions().next().unwrap().stop_loss_order_id,
        Some(replacement.view.id)
    );
}

#[test]
fn an_unknown_order_is_given_up_only_after_the_visibility_window_and_the_searches() {
    let (mut core, clock) = core();
    let TradePlan::Order(rec) = core.plan_trade(&buy(dec!(49000), dec!(52000))).unwrap() else {
        panic!("an order")
    };
    core.track(&rec);
    let _ = core.on_placed(rec.view.id, Ok(Err(ExchangeError::Unknown("502".into()))));
    core.take_effects();
    for _ in 0..5 {
        core.on_missing(rec.view.id);
    }
    assert!(
        core.orders.contains_key(&rec.view.id),
        "never given up inside the window"
    );
    clock.advance(chrono::Duration::seconds(91));
    core.on_missing(rec.view.id);
    assert!(
        !core.orders.contains_key(&rec.view.id),
        "given up after the window and the searches"
    );
    let effects = core.take_effects();
    assert!(effects.iter().any(|e| matches!(e,
        Effect::Write(Op::Order(o)) if o.view.id == rec.view.id && o.view.status == OrderStatus::Error)));
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::Alert(a) if a.alert_type == AlertType::Reconcile)));
}

#[test]
fn a_breached_stop_without_a_working_stop_order_closes_at_market() {
    let (mut core, _) = core();
    let entry = placed_entry(&mut core, &buy(dec!(49000), dec!(52000)));
    core.apply_update(
        entry.view.id,
        &seen(&entry, OrderStatus::Filled, dec!(0.02), Some(dec!(50000)), dec!(0)),
    );
    let pid = entry.view.position_id.unwrap();
    for (kind, rec, _) in placements(&core.take_effects()) {
        let res = core.on_placed(rec.view.id, Ok(Err(ExchangeError::Rejected("margin".into()))));
        core.protection_placed(pid, kind, None, res);
    }
    let effects = core.take_effects();
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::RetryProtection { pid: p, .. } if *p == pid)));

    core.set_price(btc(), dec!(50100));
    core.on_prices();
    assert!(!core.take_effects().iter().any(|e| matches!(e, Effect::Close { .. })));
    core.set_price(btc(), dec!(48990));
    core.on_prices();
    let effects = core.take_effects();
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::Close { pid: p, reason, .. } if *p == pid && reason == "stop_loss_backup")));
    // The close marks the position closing: the trigger fires once.
    let close = core
        .plan_close(pid, Decimal::ONE, "stop_loss_backup", CorrelationId::new())
        .unwrap();
    assert!(close.reduce_only);
    assert_eq!(core.positions().next().unwrap().status, PositionStatus::Closing);
    core.take_effects();
    core.on_prices();
    assert!(!core.take_effects().iter().any(|e| matches!(e, Effect::Close { .. })));
}

#[test]
fn a_trailing_stop_follows_the_price_up_and_never_back() {
    let mut cfg = ExecutionConfig::default();
    cfg.trailing_stop.enabled = true;
    let (mut core, _) = core_with(cfg);
    let (_, sl, _) = protected_position(&mut core);
    // +0.5 %: below the 1 % activation.
    core.set_price(btc(), dec!(50250));
    core.on_prices();
    assert!(placements(&core.take_effects()).is_empty());
    // +2 %: the stop trails 1.5 % below 51000 = 50235.
    core.set_price(btc(), dec!(51000));
    core.on_prices();
    let placed = placements(&core.take_effects());
    assert_eq!(placed.len(), 1);
    assert_eq!(placed[0].0, Protect::StopLoss);
    assert_eq!(placed[0].1.view.price, Some(dec!(50235)));
    assert_eq!(placed[0].2, Some(sl.view.id), "the old stop is replaced");
    let view = core.on_placed(placed[0].1.view.id, ack(&placed[0].1)).unwrap();
    let pid = sl.view.position_id.unwrap();
    core.protection_placed(pid, Protect::StopLoss, Some(sl.view.id), Ok(view));
    assert_eq!(cancels(&core.take_effects()), vec![sl.view.id]);
    // Back down: the stop stays.
    core.set_price(btc(), dec!(50500));
    core.on_prices();
    assert!(placements(&core.take_effects()).is_empty());
    assert_eq!(core.positions().next().unwrap().stop_loss, Some(dec!(50235)));
}

#[test]
fn a_cancel_that_is_not_confirmed_is_retried_with_back_off_and_alerted_on_the_third_attempt() {
    let (mut core, _) = core();
    let (_, sl, _) = protected_position(&mut core);
    core.request_cancel(sl.view.id);
    assert_eq!(cancels(&core.take_effects()), vec![sl.view.id]);
    core.request_cancel(sl.view.id);
    assert!(cancels(&core.take_effects()).is_empty(), "one attempt at a time");
    let mut delays = Vec::new();
    for _ in 0..3 {
        core.on_cancel_result(sl.view.id, Err(ExchangeError::Retryable("busy".into())), Ok(vec![]));
        let effects = core.take_effects();
        for e in &effects {
            if let Effect::RetryCancel { delay, .. } = e {
                delays.push(*delay);
            }
        }
        core.request_cancel(sl.view.id);
        if delays.len() == 3 {
            assert!(effects
                .iter()
                .any(|e| matches!(e, Effect::Alert(a) if a.alert_type == AlertType::ExecutionError)));
        }
        core.take_effects();
    }
    assert_eq!(
        delays,
        vec![
            Duration::from_millis(1000),
            Duration::from_millis(2000),
            Duration::from_millis(4000)
        ]
    );
    // Shown cancelled: done, and nothing is retried.
    core.on_cancel_result(
        sl.view.id,
        Ok(()),
        Ok(vec![seen(&sl, OrderStatus::Cancelled, dec!(0), None, dec!(0))]),
    );
    let effects = core.take_effects();
    assert!(!effects.iter().any(|e| matches!(e, Effect::RetryCancel { .. })));
    assert!(!core.orders.contains_key(&sl.view.id));
}

#[test]
fn the_valuation_reads_balances_by_our_asset_codes_and_tracks_the_peak() {
    let (mut core, _) = core();
    core.set_price(btc(), dec!(50000));
    core.valuation([("BTC".to_owned(), dec!(0.1)), ("USDT".to_owned(), dec!(5000))].into());
    core.set_price(btc(), dec!(40000));
    core.valuation([("BTC".to_owned(), dec!(0.1)), ("USDT".to_owned(), dec!(5000))].into());
    let updates: Vec<_> = core
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Valuation(u) => Some(u),
            _ => None,
        })
        .collect();
    assert_eq!(updates[0].equity_usd, dec!(10000));
    assert_eq!(updates[1].equity_usd, dec!(9000));
    assert_eq!(updates[1].peak_equity_usd, dec!(10000));
    assert_eq!(updates[1].drawdown_pct, dec!(10));
}
