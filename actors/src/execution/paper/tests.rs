#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap (CONVENTIONS §2.4)

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::domain::{ClientOrderId, OrderStatus, OrderType, PositionSide, Side, Timeframe};
use chrono::{Duration, TimeZone};
use futures::executor::block_on;
use rust_decimal_macros::dec;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).unwrap()
}

fn btc() -> Symbol {
    Symbol::parse("BTC/USDT").unwrap()
}

fn cid(s: &str) -> ClientOrderId {
    ClientOrderId::parse(s).unwrap()
}

fn cfg(slippage_bps: Decimal) -> PaperConfig {
    PaperConfig {
        max_slippage_bps: slippage_bps,
        ..PaperConfig::default()
    }
}

struct Env {
    ex: PaperExchange,
    clock: ManualClock,
}

fn env(config: PaperConfig) -> Env {
    let clock = ManualClock::new(t0());
    let ex = PaperExchange::new(config, Arc::new(clock.clone())).unwrap();
    Env { ex, clock }
}

impl Env {
    /// Moves the clock to t0 + `secs` and feeds a BTC/USDT trade price at that time.
    fn tick(&self, secs: i64, price: Decimal) -> Vec<PaperFill> {
        self.at(secs);
        self.ex.on_price(&btc(), price, self.clock.now())
    }

    fn at(&self, secs: i64) {
        self.clock.set(t0() + Duration::seconds(secs));
    }

    fn place(&self, r: OrderRequest) -> Result<OrderAck, ExchangeError> {
        block_on(self.ex.place_order(r))
    }

    fn bal(&self, asset: &str) -> Decimal {
        block_on(self.ex.balances())
            .unwrap()
            .get(asset)
            .copied()
            .unwrap_or_default()
    }

    fn avail(&self, asset: &str) -> Decimal {
        self.ex.available_balances().get(asset).copied().unwrap_or_default()
    }

    fn order(&self, c: &str) -> ExchangeOrder {
        let mut found = block_on(self.ex.query_orders(vec![OrderRef::Client(cid(c))])).unwrap();
        assert_eq!(found.len(), 1, "order {c} not found");
        found.remove(0)
    }

    fn open_count(&self) -> usize {
        block_on(self.ex.open_orders()).unwrap().len()
    }
}

fn req(c: &str, side: Side, order_type: OrderType, volume: Decimal, price: Option<Decimal>) -> OrderRequest {
    OrderRequest {
        client_order_id: cid(c),
        symbol: btc(),
        side,
        order_type,
        volume,
        price,
        price2: None,
        leverage: None,
        reduce_only: false,
        post_only: false,
        validate: false,
    }
}

fn market(c: &str, side: Side, volume: Decimal) -> OrderRequest {
    req(c, side, OrderType::Market, volume, None)
}

fn limit(c: &str, side: Side, volume: Decimal, price: Decimal) -> OrderRequest {
    req(c, side, OrderType::Limit, volume, Some(price))
}

/// Buys 0.1 BTC at 45 000 without slippage: USDT 5 488.30, BTC 0.1.
fn long_btc(e: &Env) {
    e.tick(0, dec!(45000));
    e.place(market("entry", Side::Buy, dec!(0.1))).unwrap();
    assert_eq!(e.tick(1, dec!(45000)).len(), 1);
    assert_eq!(e.bal("USDT"), dec!(5488.30));
    assert_eq!(e.bal("BTC"), dec!(0.1));
}

#[derive(Default)]
struct MemStore(parking_lot::Mutex<BTreeMap<String, serde_json::Value>>);

impl StateStore for MemStore {
    fn load_state(&self, key: &str) -> StoreFuture<Option<serde_json::Value>> {
        let v = self.0.lock().get(key).cloned();
        futures::future::ready(Ok(v)).boxed()
    }

    fn save_state(&self, key: &str, state: serde_json::Value) -> StoreFuture<()> {
        self.0.lock().insert(key.to_owned(), state);
        futures::future::ready(Ok(())).boxed()
    }
}

// ------------------------------------------------------------ market orders

#[test]
fn market_buy_waits_for_the_next_price_and_pays_the_taker_fee() {
    // Arrange: no slippage, so the numbers match the reference example (fee 11.70, USDT 5 488.30).
    let e = env(cfg(dec!(0)));
    e.tick(0, dec!(45000));

    // Act
    let ack = e.place(market("m1", Side::Buy, dec!(0.1))).unwrap();

    // Assert: nothing fills at placement; funds are held for the worst price plus the taker fee.
    assert_eq!(e.order("m1").status, OrderStatus::Pending);
    assert_eq!(e.bal("USDT"), dec!(10000));
    assert_eq!(e.avail("USDT"), dec!(10000) - dec!(4511.70));
    let fills = e.tick(1, dec!(45000));
    assert_eq!(fills.len(), 1);
    assert_eq!(
        (fills[0].price, fills[0].fee, fills[0].liquidity),
        (dec!(45000), dec!(11.70), Liquidity::Taker)
    );
    assert_eq!(fills[0].order_id, ack.exchange_order_id);
    assert_eq!(e.bal("USDT"), dec!(5488.30));
    assert_eq!(e.bal("BTC"), dec!(0.1));
    let o = e.order("m1");
    assert_eq!(
        (o.status, o.filled_volume, o.avg_fill_price, o.fee),
        (OrderStatus::Filled, dec!(0.1), Some(dec!(45000)), dec!(11.70))
    );
    assert!(e.ex.reserved_balances().is_empty());
}

#[test]
fn market_orders_fill_at_the_next_price_with_seeded_slippage() {
    let e = env(cfg(dec!(10)));
    e.tick(0, dec!(45000));
    e.place(market("b", Side::Buy, dec!(0.1))).unwrap();

    let buy = e.tick(1, dec!(45100)).remove(0);
    // Buys pay up by at most 10 bp of the *next* price, on the tick grid.
    assert!(
        buy.price > dec!(45100) && buy.price <= dec!(45145.1),
        "buy price {}",
        buy.price
    );
    assert_eq!(buy.price % dec!(0.1), dec!(0));
    assert_eq!(buy.fee, (buy.price * dec!(0.1) * dec!(0.0026)).round_dp(8));
    assert_eq!(e.bal("USDT"), dec!(10000) - buy.price * dec!(0.1) - buy.fee);

    e.place(market("s", Side::Sell, dec!(0.1))).unwrap();
    let sell = e.tick(2, dec!(45200)).remove(0);
    assert!(
        sell.price < dec!(45200) && sell.price >= dec!(45154.8),
        "sell price {}",
        sell.price
    );
    assert_eq!(e.bal("BTC"), dec!(0));
    assert_eq!(e.bal("USDT"), dec!(10000) - buy.cost - buy.fee + sell.cost - sell.fee);
    assert_eq!(e.ex.total_fees().get("USDT").copied(), Some(buy.fee + sell.fee));
    assert_eq!(e.ex.fills(), vec![buy, sell]);
}

#[test]
fn market_buy_is_cancelled_when_the_price_jumps_beyond_the_funds() {
    let e = env(cfg(dec!(0)));
    e.tick(0, dec!(45000));
    e.place(market("big", Side::Buy, dec!(0.22))).unwrap(); // holds 9 925.74 of 10 000
    assert!(e.tick(1, dec!(46000)).is_empty()); // 10 120 + fee > 10 000
    let o = e.order("big");
    assert_eq!((o.status, o.filled_volume), (OrderStatus::Cancelled, dec!(0)));
    assert_eq!(o.reason.as_deref(), Some("Insufficient funds"));
    assert_eq!((e.bal("USDT"), e.avail("USDT")), (dec!(10000), dec!(10000)));
}

#[test]
fn market_order_without_any_price_is_retryable_and_not_placed() {
    let e = env(cfg(dec!(0)));
    let err = e.place(market("m", Side::Buy, dec!(0.1))).unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(e.open_count(), 0);
}

// ------------------------------------------------------------ limit and contingent orders

#[test]
fn limit_buy_fills_only_when_the_price_crosses_with_the_maker_fee() {
    let e = env(cfg(dec!(10)));
    e.tick(0, dec!(45000));
    e.place(limit("l", Side::Buy, dec!(0.1), dec!(44000))).unwrap();

    assert!(e.tick(1, dec!(44500)).is_empty());
    assert!(e.tick(2, dec!(44000.1)).is_empty());
    assert_eq!(e.order("l").status, OrderStatus::Open);

    let fill = e.tick(3, dec!(43900)).remove(0);
    assert_eq!(
        (fill.price, fill.fee, fill.liquidity),
        (dec!(44000), dec!(7.04), Liquidity::Maker)
    );
    assert_eq!(e.bal("USDT"), dec!(5592.96));
    assert_eq!(e.bal("BTC"), dec!(0.1));
    assert_eq!(e.order("l").status, OrderStatus::Filled);
    assert!(e.tick(4, dec!(43000)).is_empty(), "a filled order never fills again");
}

#[test]
fn marketable_limit_takes_liquidity_but_never_through_its_limit() {
    let mut config = cfg(dec!(10));
    config.seed = 3;
    let e = env(config);
    e.tick(0, dec!(45000));
    e.place(limit("bound", Side::Buy, dec!(0.1), dec!(45010))).unwrap();
    let fill = e.tick(1, dec!(45005)).remove(0);
    assert_eq!(fill.liquidity, Liquidity::Taker);
    assert!(fill.price >= dec!(45005) && fill.price <= dec!(45010), "{}", fill.price);
    assert_eq!(fill.fee, (fill.cost * dec!(0.0026)).round_dp(8));
}

#[test]
fn post_only_limit_that_would_take_is_rejected() {
    let e = env(cfg(dec!(0)));
    e.tick(0, dec!(45000));
    let mut r = limit("po", Side::Buy, dec!(0.1), dec!(45100));
    r.post_only = true;
    assert_eq!(
        e.place(r).unwrap_err(),
        ExchangeError::Rejected("EOrder:Post only order".into())
    );
}

#[test]
fn stop_loss_sell_triggers_on_the_candle_low_at_the_trigger_price() {
    let e = env(cfg(dec!(0)));
    long_btc(&e);
    e.at(2);
    e.place(req("sl", Side::Sell, OrderType::StopLoss, dec!(0.1), Some(dec!(44000))))
        .unwrap();
    assert_eq!(
        e.avail("BTC"),
        dec!(0.1),
        "an exit order checks the base but holds none"
    );

    let candle = |minute: i64, o: Decimal, h: Decimal, l: Decimal, c: Decimal| Candle {
        symbol: btc(),
        timeframe: Timeframe::M1,
        open_time: t0() + Duration::minutes(minute),
        open: o,
        high: h,
        low: l,
        close: c,
        volume: dec!(1),
    };
    // A backtest asks first whether a candle would act; asking changes nothing.
    let quiet = candle(1, dec!(44800), dec!(44900), dec!(44500), dec!(44600));
    let through = candle(2, dec!(44300), dec!(44400), dec!(43900), dec!(44100));
    assert!(!e.ex.candle_would_act(&quiet));
    assert!(e.ex.candle_would_act(&through));
    assert_eq!(e.order("sl").status, OrderStatus::Open);
    assert!(e.ex.on_candle(&quiet).is_empty());
    assert_eq!(e.order("sl").status, OrderStatus::Open);

    assert!(e.ex.candle_would_act(&through));
    let fill = e.ex.on_candle(&through).remove(0);
    assert!(!e.ex.candle_would_act(&through), "nothing live is left to act on");
    assert_eq!(
        (fill.price, fill.fee, fill.liquidity),
        (dec!(44000), dec!(11.44), Liquidity::Taker)
    );
    assert_eq!(e.bal("BTC"), dec!(0));
    assert_eq!(e.bal("USDT"), dec!(5488.30) + dec!(4400) - dec!(11.44));
}

#[test]
fn stop_loss_gapped_through_fills_at_the_gap_price() {
    let e = env(cfg(dec!(0)));
    long_btc(&e);
    e.place(req("sl", Side::Sell, OrderType::StopLoss, dec!(0.1), Some(dec!(44000))))
        .unwrap();
    let fill = e.tick(5, dec!(43500)).remove(0);
    assert_eq!(fill.price, dec!(43500));
}

#[test]
fn take_profit_sell_triggers_when_the_price_reaches_it() {
    let e = env(cfg(dec!(0)));
    long_btc(&e);
    e.place(req(
        "tp",
        Side::Sell,
        OrderType::TakeProfit,
        dec!(0.1),
        Some(dec!(46000)),
    ))
    .unwrap();

    assert!(e.tick(5, dec!(45900)).is_empty());
    assert_eq!(e.order("tp").status, OrderStatus::Open);
    let fill = e.tick(6, dec!(46000)).remove(0);
    assert_eq!(
        (fill.price, fill.fee, fill.liquidity),
        (dec!(46000), dec!(11.96), Liquidity::Taker)
    );
    assert_eq!(e.bal("USDT"), dec!(5488.30) + dec!(4600) - dec!(11.96));
    assert_eq!(e.order("tp").status, OrderStatus::Filled);
}

#[test]
fn stop_loss_limit_triggers_on_price_and_fills_at_price2() {
    let e = env(cfg(dec!(0)));
    long_btc(&e);
    let mut r = req(
        "sll",
        Side::Sell,
        OrderType::StopLossLimit,
        dec!(0.1),
        Some(dec!(44000)),
    );
    r.price2 = Some(dec!(43900));
    e.place(r).unwrap();

    assert!(e.tick(5, dec!(44100)).is_empty());
    // Gapped below the limit: triggered, but a sell limit at 43 900 cannot fill at 43 800.
    assert!(e.tick(6, dec!(43800)).is_empty());
    assert_eq!(e.order("sll").status, OrderStatus::Open);
    let fill = e.tick(7, dec!(43950)).remove(0);
    assert_eq!((fill.price, fill.liquidity), (dec!(43900), Liquidity::Maker));
}

#[test]
fn a_candle_that_opened_before_the_order_only_shows_its_close() {
    let e = env(cfg(dec!(0)));
    e.tick(0, dec!(45000));
    e.at(90);
    e.place(limit("l", Side::Buy, dec!(0.1), dec!(44000))).unwrap();
    let candle = |minute: i64, low: Decimal, close: Decimal| Candle {
        symbol: btc(),
        timeframe: Timeframe::M1,
        open_time: t0() + Duration::minutes(minute),
        open: dec!(45000),
        high: dec!(45100),
        low,
        close,
        volume: dec!(1),
    };
    // The low of 43 000 happened before the order existed (the candle began at 60 s, the order at 90 s).
    assert!(e.ex.on_candle(&candle(1, dec!(43000), dec!(44500))).is_empty());
    let fill = e.ex.on_candle(&candle(2, dec!(43900), dec!(44500))).remove(0);
    assert_eq!(fill.price, dec!(44000));
}

#[test]
fn stale_price_updates_are_ignored() {
    let e = env(cfg(dec!(0)));
    e.tick(10, dec!(45000));
    e.place(limit("l", Side::Buy, dec!(0.1), dec!(41000))).unwrap();
    assert!(e
        .ex
        .on_price(&btc(), dec!(40000), t0() + Duration::seconds(5))
        .is_empty());
    assert_eq!(e.ex.last_price(&btc()), Some(dec!(45000)));
    assert_eq!(e.order("l").status, OrderStatus::Open);
}

// ------------------------------------------------------------ checks and rejections

#[test]
fn insufficient_funds_are_rejected_like_kraken() {
    let e = env(cfg(dec!(0)));
    e.tick(0, dec!(45000));
    let funds = ExchangeError::Rejected("EOrder:Insufficient funds".into());
    assert_eq!(e.place(market("too-big", Side::Buy, dec!(0.3))).unwrap_err(), funds);
    assert_eq!(
        e.place(limit("no-btc", Side::Sell, dec!(0.1), dec!(46000)))
            .unwrap_err(),
        funds
    );
    assert!(!e
        .place(market("too-big", Side::Buy, dec!(0.3)))
        .unwrap_err()
        .is_retryable());
    assert_eq!(e.open_count(), 0);
    assert_eq!(e.bal("USDT"), dec!(10000));
}

#[test]
fn minimums_unknown_pairs_and_missing_prices_are_refused() {
    let e = env(cfg(dec!(0)));
    e.tick(0, dec!(45000));
    let min = ExchangeError::Invalid("EOrder:Order minimum not met".into());
    assert_eq!(
        e.place(limit("a", Side::Buy, dec!(0.00004), dec!(45000))).unwrap_err(),
        min
    );
    // 0.000049999 truncates to 0.00004999 < ordermin 0.00005.
    assert_eq!(
        e.place(limit("b", Side::Buy, dec!(0.000049999), dec!(45000)))
            .unwrap_err(),
        min
    );
    assert!(e.place(limit("c", Side::Buy, dec!(0.00005), dec!(45000))).is_ok());

    let xrpbtc = Symbol::parse("XRP/BTC").unwrap();
    let mut r = limit("d", Side::Buy, dec!(10), dec!(0.000001));
    r.symbol = xrpbtc;
    assert_eq!(
        e.place(r).unwrap_err(),
        ExchangeError::Invalid("EOrder:Cost minimum not met".into())
    );

    let mut r = limit("e", Side::Buy, dec!(1), dec!(2000));
    r.symbol = Symbol::parse("ETH/USDT").unwrap();
    assert_eq!(
        e.place(r).unwrap_err(),
        ExchangeError::Rejected("EQuery:Unknown asset pair".into())
    );

    let no_price = req("f", Side::Buy, OrderType::Limit, dec!(0.1), None);
    assert_eq!(
        e.place(no_price).unwrap_err(),
        ExchangeError::Invalid("EGeneral:Invalid arguments:price".into())
    );
    let no_price2 = req(
        "g",
        Side::Sell,
        OrderType::TakeProfitLimit,
        dec!(0.1),
        Some(dec!(46000)),
    );
    assert_eq!(
        e.place(no_price2).unwrap_err(),
        ExchangeError::Invalid("EGeneral:Invalid arguments:price2".into())
    );
    let negative = req("h", Side::Buy, OrderType::Limit, dec!(-0.1), Some(dec!(45000)));
    assert_eq!(
        e.place(negative).unwrap_err(),
        ExchangeError::Invalid("EGeneral:Invalid arguments:volume".into())
    );
}

#[test]
fn duplicate_client_order_id_is_rejected() {
    let e = env(cfg(dec!(0)));
    e.tick(0, dec!(45000));
    e.place(limit("dup", Side::Buy, dec!(0.01), dec!(44000))).unwrap();
    let err = e.place(limit("dup", Side::Buy, dec!(0.01), dec!(43000))).unwrap_err();
    assert_eq!(err, ExchangeError::Rejected("EOrder:Duplicate cl_ord_id".into()));
    assert_eq!(e.open_count(), 1);
}

#[test]
fn price_is_quantised_to_the_tick_and_volume_truncated_to_the_lot() {
    let e = env(cfg(dec!(0)));
    e.tick(0, dec!(45000));
    let ack = e
        .place(limit("q", Side::Buy, dec!(0.123456789), dec!(44000.06)))
        .unwrap();
    let o = e.order("q");
    assert_eq!((o.volume, o.price), (dec!(0.12345678), Some(dec!(44000.1))));
    assert_eq!(ack.description, "buy 0.12345678 XBTUSDT @ limit 44000.1");
    let fill = e.tick(1, dec!(44000.1)).remove(0);
    assert_eq!((fill.price, fill.volume), (dec!(44000.1), dec!(0.12345678)));

    let xrp = Symbol::parse("XRP/USDT").unwrap();
    let mut r = limit("x", Side::Buy, dec!(20), dec!(0.512345678));
    r.symbol = xrp;
    e.place(r).unwrap();
    assert_eq!(e.order("x").price, Some(dec!(0.51235)));
}

#[test]
fn validate_only_places_nothing() {
    let e = env(cfg(dec!(0)));
    e.tick(0, dec!(45000));
    let mut r = limit("v", Side::Buy, dec!(0.1), dec!(44000));
    r.validate = true;
    let ack = e.place(r).unwrap();
    assert!(ack.exchange_order_id.is_empty());
    assert_eq!(e.open_count(), 0);
    assert!(e.ex.reserved_balances().is_empty());
}

// ------------------------------------------------------------ cancel, history, dead man's switch

#[test]
fn cancel_releases_the_held_funds() {
    let e = env(cfg(dec!(0)));
    e.tick(0, dec!(45000));
    e.place(limit("first", Side::Buy, dec!(0.2), dec!(44000))).unwrap();
    assert_eq!(e.avail("USDT"), dec!(10000) - dec!(8822.88));
    let funds = ExchangeError::Rejected("EOrder:Insufficient funds".into());
    assert_eq!(
        e.place(limit("second", Side::Buy, dec!(0.1), dec!(44000))).unwrap_err(),
        funds
    );

    block_on(e.ex.cancel_order(OrderRef::Client(cid("first")))).unwrap();
    let o = e.order("first");
    assert_eq!(
        (o.status, o.reason.as_deref()),
        (OrderStatus::Cancelled, Some("User requested"))
    );
    assert_eq!(e.avail("USDT"), dec!(10000));
    assert!(e.place(limit("second", Side::Buy, dec!(0.1), dec!(44000))).is_ok());

    let unknown = ExchangeError::Rejected("EOrder:Unknown order".into());
    assert_eq!(
        block_on(e.ex.cancel_order(OrderRef::Client(cid("first")))).unwrap_err(),
        unknown
    );
    assert_eq!(
        block_on(e.ex.cancel_order(OrderRef::Exchange("PAPER-9".into()))).unwrap_err(),
        unknown
    );
    assert!(e.tick(1, dec!(43000)).len() == 1, "only the live order fills");
    assert_eq!(e.order("first").status, OrderStatus::Cancelled);
}

#[test]
fn closed_history_is_trimmed_oldest_first_but_open_orders_stay() {
    let e = env(PaperConfig {
        max_history: 2,
        max_slippage_bps: dec!(0),
        ..PaperConfig::default()
    });
    e.tick(0, dec!(45000));
    e.place(limit("open", Side::Buy, dec!(0.01), dec!(30000))).unwrap();
    for c in ["c1", "c2", "c3"] {
        e.place(limit(c, Side::Buy, dec!(0.01), dec!(44000))).unwrap();
        block_on(e.ex.cancel_order(OrderRef::Client(cid(c)))).unwrap();
    }
    let found = block_on(e.ex.query_orders(["open", "c1", "c2", "c3"].map(|c| OrderRef::Client(cid(c))).to_vec()));
    let ids: Vec<String> = found
        .unwrap()
        .into_iter()
        .map(|o| o.client_order_id.unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["open", "c2", "c3"]);
}

#[test]
fn dead_mans_switch_cancels_everything_when_not_refreshed() {
    let e = env(cfg(dec!(0)));
    e.tick(0, dec!(45000));
    e.place(limit("l", Side::Buy, dec!(0.1), dec!(44000))).unwrap();
    block_on(e.ex.cancel_all_after(60)).unwrap();
    e.at(30);
    block_on(e.ex.cancel_all_after(60)).unwrap(); // refreshed: now fires at 90 s
    e.at(80);
    assert_eq!(e.open_count(), 1);
    e.at(91);
    assert_eq!(e.open_count(), 0);
    assert_eq!(e.order("l").reason.as_deref(), Some("Dead man's switch"));
    assert_eq!(e.avail("USDT"), dec!(10000));

    e.place(limit("m", Side::Buy, dec!(0.1), dec!(44000))).unwrap();
    block_on(e.ex.cancel_all_after(10)).unwrap();
    block_on(e.ex.cancel_all_after(0)).unwrap(); // disarmed
    e.at(500);
    assert_eq!(e.open_count(), 1);
}

// ------------------------------------------------------------ persistence and determinism

#[test]
fn snapshot_round_trip_through_the_state_store_keeps_balances_and_open_orders() {
    let store = MemStore::default();
    let e = env(cfg(dec!(10)));
    e.tick(0, dec!(45000));
    e.place(market("buy", Side::Buy, dec!(0.1))).unwrap();
    e.tick(1, dec!(45000));
    e.place(limit("sell", Side::Sell, dec!(0.05), dec!(47000))).unwrap();
    e.place(limit("bid", Side::Buy, dec!(0.01), dec!(40000))).unwrap();
    block_on(e.ex.save_to(&store)).unwrap();

    let restarted = env(cfg(dec!(10)));
    assert!(block_on(restarted.ex.load_from(&store)).unwrap());
    assert_eq!(
        block_on(restarted.ex.balances()).unwrap(),
        block_on(e.ex.balances()).unwrap()
    );
    assert_eq!(restarted.ex.available_balances(), e.ex.available_balances());
    assert_eq!(restarted.ex.reserved_balances(), e.ex.reserved_balances());
    assert_eq!(
        block_on(restarted.ex.open_orders()).unwrap(),
        block_on(e.ex.open_orders()).unwrap()
    );
    assert_eq!(restarted.ex.fills(), e.ex.fills());
    assert_eq!(restarted.order("buy").status, OrderStatus::Filled);

    // The restored account keeps trading: the resting sell fills, new ids do not collide.
    let fill = restarted.tick(2, dec!(47100)).remove(0);
    assert_eq!((fill.client_order_id, fill.price), (cid("sell"), dec!(47000)));
    let ack = restarted
        .place(limit("next", Side::Buy, dec!(0.01), dec!(40000)))
        .unwrap();
    assert_eq!(ack.exchange_order_id, "PAPER-0000000004");

    assert!(!block_on(env(cfg(dec!(0))).ex.load_from(&MemStore::default())).unwrap());
}

fn scenario(seed: u64) -> Vec<PaperFill> {
    let e = env(PaperConfig {
        seed,
        partial_fills: true,
        ..PaperConfig::default()
    });
    e.tick(0, dec!(45000));
    e.place(market("a", Side::Buy, dec!(0.1))).unwrap();
    e.place(limit("b", Side::Buy, dec!(0.05), dec!(44800))).unwrap();
    for (i, p) in [
        dec!(45010),
        dec!(44900),
        dec!(44700),
        dec!(44750),
        dec!(44650),
        dec!(44900),
    ]
    .into_iter()
    .enumerate()
    {
        e.tick(i as i64 + 1, p);
    }
    // May be refused if the buys are still partly open; the outcome is part of what must repeat.
    let _ = e.place(market("c", Side::Sell, dec!(0.03)));
    for i in 10..16 {
        e.tick(i, dec!(45100));
    }
    e.ex.fills()
}

#[test]
fn same_seed_gives_the_same_fills() {
    let first = scenario(7);
    assert!(first.len() >= 3);
    assert_eq!(first, scenario(7));
    assert_ne!(first, scenario(8));
}

#[test]
fn partial_fills_move_through_partially_filled_to_filled() {
    let e = env(PaperConfig {
        seed: 11,
        partial_fills: true,
        max_slippage_bps: dec!(0),
        ..PaperConfig::default()
    });
    e.tick(0, dec!(45000));
    e.place(market("p", Side::Buy, dec!(0.2))).unwrap();
    let mut statuses = vec![e.order("p").status];
    for i in 1..30 {
        e.tick(i, dec!(45000));
        let s = e.order("p").status;
        if statuses.last() != Some(&s) {
            statuses.push(s);
        }
        if s == OrderStatus::Filled {
            break;
        }
    }
    assert_eq!(
        statuses,
        vec![OrderStatus::Pending, OrderStatus::PartiallyFilled, OrderStatus::Filled]
    );
    let fills = e.ex.fills();
    assert!(fills.len() >= 2);
    assert_eq!(fills.iter().map(|f| f.volume).sum::<Decimal>(), dec!(0.2));
    assert_eq!(e.bal("BTC"), dec!(0.2));
    assert_eq!(e.order("p").fee, fills.iter().map(|f| f.fee).sum::<Decimal>());
    assert!(e.ex.reserved_balances().is_empty());
}

#[test]
fn cancel_after_a_partial_fill_keeps_the_filled_part() {
    let e = env(PaperConfig {
        seed: 11,
        partial_fills: true,
        max_slippage_bps: dec!(0),
        ..PaperConfig::default()
    });
    e.tick(0, dec!(45000));
    e.place(limit("p", Side::Buy, dec!(0.2), dec!(44000))).unwrap();
    let mut i = 1;
    while e.order("p").status == OrderStatus::Open && i < 30 {
        e.tick(i, dec!(43900));
        i += 1;
    }
    assert_eq!(e.order("p").status, OrderStatus::PartiallyFilled);
    block_on(e.ex.cancel_order(OrderRef::Client(cid("p")))).unwrap();
    let o = e.order("p");
    assert_eq!(o.status, OrderStatus::Cancelled);
    assert!(o.filled_volume > dec!(0) && o.filled_volume < dec!(0.2));
    assert_eq!(e.bal("BTC"), o.filled_volume);
    assert_eq!(e.bal("USDT"), dec!(10000) - o.filled_volume * dec!(44000) - o.fee);
    assert!(e.ex.reserved_balances().is_empty());
}

// ------------------------------------------------------------ margin

#[test]
fn short_with_leverage_two_tracks_margin_not_a_negative_balance() {
    let e = env(cfg(dec!(0)));
    e.tick(0, dec!(45000));
    let mut short = market("short", Side::Sell, dec!(0.1));
    short.leverage = Some(2);
    e.place(short).unwrap();
    e.tick(1, dec!(45000));

    let pos = e.ex.positions();
    assert_eq!(pos.len(), 1);
    assert_eq!(
        (pos[0].side, pos[0].volume, pos[0].avg_price),
        (PositionSide::Short, dec!(0.1), dec!(45000))
    );
    assert_eq!((pos[0].margin, pos[0].leverage), (dec!(2250), 2));
    assert_eq!(pos[0].unrealized_pnl(dec!(44000)), dec!(100));
    assert_eq!(e.bal("BTC"), dec!(0));
    assert_eq!(e.bal("USDT"), dec!(10000) - dec!(2250) - dec!(11.70));

    // Closing: a reduce-only buy (its volume is capped at the position) realises the P&L.
    let mut cover = market("cover", Side::Buy, dec!(0.2));
    cover.reduce_only = true;
    e.place(cover).unwrap();
    assert_eq!(e.order("cover").volume, dec!(0.1));
    let fill = e.tick(2, dec!(44000)).remove(0);
    assert_eq!(
        (fill.realized_pnl, fill.fee, fill.margin),
        (Some(dec!(100)), dec!(11.44), true)
    );
    assert!(e.ex.positions().is_empty());
    assert_eq!(e.bal("USDT"), dec!(7738.30) + dec!(2250) + dec!(100) - dec!(11.44));
    assert_eq!(e.bal("BTC"), dec!(0));
}

#[test]
fn margin_orders_respect_leverage_limits_and_reduce_only_needs_a_position() {
    let e = env(cfg(dec!(0)));
    e.tick(0, dec!(45000));
    let mut too_much = market("x", Side::Sell, dec!(0.1));
    too_much.leverage = Some(6);
    assert_eq!(
        e.place(too_much).unwrap_err(),
        ExchangeError::Invalid("EGeneral:Invalid arguments:leverage".into())
    );

    let mut reduce = market("y", Side::Buy, dec!(0.1));
    reduce.leverage = Some(2);
    reduce.reduce_only = true;
    assert_eq!(
        e.place(reduce).unwrap_err(),
        ExchangeError::Rejected("EOrder:Reduce only:No position exists".into())
    );

    // 10 000 USDT covers at most ~0.44 BTC of short at 2x (collateral 22 500 per BTC plus fees).
    let mut big = market("z", Side::Sell, dec!(0.5));
    big.leverage = Some(2);
    assert_eq!(
        e.place(big).unwrap_err(),
        ExchangeError::Rejected("EOrder:Insufficient margin".into())
    );
}

// ------------------------------------------------------------ fault injection

#[test]
fn fail_next_returns_the_injected_error_once() {
    let e = env(cfg(dec!(0)));
    e.tick(0, dec!(45000));
    e.ex.fail_next(ExchangeError::Retryable("EService:Busy".into()));
    let err = e.place(limit("a", Side::Buy, dec!(0.1), dec!(44000))).unwrap_err();
    assert_eq!(err, ExchangeError::Retryable("EService:Busy".into()));
    assert_eq!(e.open_count(), 0, "a plain injected failure has no effect");
    assert!(
        e.place(limit("a", Side::Buy, dec!(0.1), dec!(44000))).is_ok(),
        "only once"
    );

    // A lost answer: the order reaches the book, the caller sees Unknown, a query by client id finds it.
    e.ex.fail_next_op(PaperOp::PlaceOrder, ExchangeError::Unknown("timeout".into()), true);
    assert_eq!(
        e.bal("USDT"),
        dec!(10000),
        "other calls do not consume a targeted fault"
    );
    let err = e.place(limit("b", Side::Buy, dec!(0.01), dec!(43000))).unwrap_err();
    assert_eq!(err, ExchangeError::Unknown("timeout".into()));
    assert_eq!(e.order("b").status, OrderStatus::Open);
    assert_eq!(e.open_count(), 2);

    e.ex.fail_next_op(PaperOp::CancelOrder, ExchangeError::Unknown("timeout".into()), true);
    assert!(block_on(e.ex.cancel_order(OrderRef::Client(cid("b")))).is_err());
    assert_eq!(e.order("b").status, OrderStatus::Cancelled);
}

#[test]
fn stop_and_take_profit_may_cover_the_same_holding_but_never_sell_it_twice() {
    let e = env(cfg(dec!(0)));
    long_btc(&e);
    e.place(req("sl", Side::Sell, OrderType::StopLoss, dec!(0.1), Some(dec!(44000))))
        .unwrap();
    let mut tp = limit("tp", Side::Sell, dec!(0.1), dec!(46000));
    tp.reduce_only = true;
    e.place(tp).unwrap();
    // More than the holding is refused even for exits.
    let err = e
        .place(req(
            "sl2",
            Side::Sell,
            OrderType::StopLoss,
            dec!(0.2),
            Some(dec!(43000)),
        ))
        .unwrap_err();
    assert_eq!(err, ExchangeError::Rejected("EOrder:Insufficient funds".into()));

    assert_eq!(e.tick(5, dec!(43900)).len(), 1, "the stop sells the holding");
    // Nobody cancelled the take-profit (no OCO here): when it is reached there is nothing left to sell.
    assert!(e.tick(6, dec!(46100)).is_empty());
    let tp = e.order("tp");
    assert_eq!(
        (tp.status, tp.reason.as_deref()),
        (OrderStatus::Cancelled, Some("Insufficient funds"))
    );
    assert_eq!(e.bal("BTC"), dec!(0));
}

#[test]
fn equity_values_balances_and_margin_positions_at_the_last_price() {
    let e = env(cfg(dec!(0)));
    long_btc(&e); // USDT 5 488.30 + 0.1 BTC
    assert_eq!(e.ex.equity_in("USDT").total, dec!(5488.30) + dec!(4500));
    e.tick(2, dec!(46000));
    let eq = e.ex.equity_in("USDT");
    assert_eq!((eq.total, eq.unpriced.is_empty()), (dec!(5488.30) + dec!(4600), true));

    // A 2x short of 0.05 BTC at 46 000: collateral 1 150, fee 5.98; at 45 000 it gains 50.
    let mut short = market("s", Side::Sell, dec!(0.05));
    short.leverage = Some(2);
    e.place(short).unwrap();
    e.tick(3, dec!(46000));
    e.tick(4, dec!(45000));
    let eq = e.ex.equity_in("USDT");
    assert_eq!(eq.total, dec!(5488.30) - dec!(5.98) + dec!(4500) + dec!(50));

    e.ex.on_price(&Symbol::parse("XRP/BTC").unwrap(), dec!(0.00001), t0());
    assert!(
        e.ex.equity_in("BTC").unpriced.contains(&"USDT".to_owned()),
        "no USDT/BTC price: not guessed"
    );
}

// ------------------------------------------------------------ port usage

#[tokio::test]
async fn works_as_a_shared_exchange_port_with_static_send_futures() {
    let clock = ManualClock::new(t0());
    let paper = PaperExchange::new(cfg(dec!(0)), Arc::new(clock.clone())).unwrap();
    let port: Arc<dyn Exchange> = Arc::new(paper.clone());
    paper.on_price(&btc(), dec!(45000), t0());

    // The futures own everything they need, so they can be spawned and outlive the borrow of the port.
    let placed = tokio::spawn(port.place_order(limit("p", Side::Buy, dec!(0.1), dec!(44000))));
    let ack = placed.await.unwrap().unwrap();
    let open = tokio::spawn(port.open_orders()).await.unwrap().unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].exchange_order_id, ack.exchange_order_id);
    assert_eq!(open[0].status, OrderStatus::Open);
    let pairs = port.pairs().await.unwrap();
    assert_eq!(pairs.len(), 3);
}

#[test]
fn config_fills_missing_fields_with_defaults_and_money_is_serialised_as_strings() {
    let config: PaperConfig = serde_json::from_str(r#"{"taker_fee_pct": "0.4", "seed": 9}"#).unwrap();
    assert_eq!(
        (config.taker_fee_pct, config.maker_fee_pct, config.seed),
        (dec!(0.4), dec!(0.16), 9)
    );
    assert_eq!(config.initial_balances.get("USDT"), Some(&dec!(10000)));
    assert_eq!(config.pairs, PaperExchange::default_pairs());

    let bad = PaperConfig {
        taker_fee_pct: dec!(-1),
        ..PaperConfig::default()
    };
    assert!(PaperExchange::new(bad, Arc::new(ManualClock::new(t0()))).is_err());

    let e = env(cfg(dec!(0)));
    let json = serde_json::to_value(e.ex.snapshot()).unwrap();
    assert_eq!(json["balances"]["USDT"], serde_json::json!("10000"));
}
