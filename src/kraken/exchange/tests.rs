use super::*;
use rust_decimal_macros::dec;
use std::sync::atomic::{AtomicU32, Ordering};

fn btc() -> PairInfo {
    PairInfo {
        max_leverage_sell: 3,
        ..triplegain_actors::testing::btc_usdt_pair()
    }
}

fn req(order_type: OrderType, volume: Decimal, price: Option<Decimal>) -> OrderRequest {
    OrderRequest {
        client_order_id: ClientOrderId::random(),
        symbol: Symbol::parse("BTC/USDT").unwrap(),
        side: Side::Buy,
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

#[test]
fn client_ids_round_trip_through_kraken_form() {
    let id = ClientOrderId::random();
    let k = kraken_cl_ord_id(&id).unwrap();
    assert_eq!(k.len(), 36, "{k}");
    assert_eq!(client_order_id_from_kraken(&k), Some(id.clone()));
    assert_eq!(client_order_id_from_kraken(&k.replace('-', "")), Some(id));
    let short = ClientOrderId::parse("sl-42").unwrap();
    assert_eq!(kraken_cl_ord_id(&short).unwrap(), "sl-42");
    assert_eq!(client_order_id_from_kraken("sl-42"), Some(short));
    let long = ClientOrderId::parse("this-is-a-much-too-long-free-text").unwrap();
    assert!(matches!(kraken_cl_ord_id(&long), Err(ExchangeError::Invalid(_))));
}

#[test]
fn prepare_quantises_and_checks_minimums() {
    let p = btc();
    let ok = prepare_order(&p, &req(OrderType::Limit, dec!(0.123456789), Some(dec!(45250.06)))).unwrap();
    assert_eq!(ok.price, Some(dec!(45250.1)));
    assert_eq!(ok.volume, dec!(0.12345678));
    assert_eq!(ok.pair, "XBTUSDT");
    assert!(ok.cl_ord_id.is_some());

    let cases: &[(OrderRequest, &str)] = &[
        (req(OrderType::Limit, dec!(0.00004), Some(dec!(45000))), "ordermin"),
        (
            req(OrderType::Limit, dec!(0.000000001), Some(dec!(45000))),
            "zero after truncation",
        ),
        (req(OrderType::Limit, dec!(0.0001), Some(dec!(1))), "costmin"),
        (req(OrderType::Limit, dec!(0.001), None), "needs a price"),
        (req(OrderType::Market, dec!(0.001), Some(dec!(45000))), "take no price"),
        (req(OrderType::StopLossLimit, dec!(0.001), Some(dec!(45000))), "price2"),
        (req(OrderType::Limit, dec!(0.001), Some(dec!(0.01))), "positive"),
        (
            OrderRequest {
                price2: Some(dec!(1)),
                ..req(OrderType::StopLoss, dec!(0.001), Some(dec!(44000)))
            },
            "takes no price2",
        ),
        (
            OrderRequest {
                post_only: true,
                ..req(OrderType::Market, dec!(0.001), None)
            },
            "post-only",
        ),
        (
            OrderRequest {
                leverage: Some(4),
                side: Side::Sell,
                ..req(OrderType::Limit, dec!(0.001), Some(dec!(45000)))
            },
            "leverage 4",
        ),
    ];
    for (r, needle) in cases {
        match prepare_order(&p, r) {
            Err(ExchangeError::Invalid(m)) => {
                assert!(m.contains(needle), "{needle:?} not in {m:?}")
            }
            other => panic!("{needle}: expected Invalid, got {other:?}"),
        }
    }
    // Leverage within the maximum is kept; 1 means spot and is dropped.
    let lev = OrderRequest {
        leverage: Some(5),
        ..req(OrderType::Limit, dec!(0.001), Some(dec!(45000)))
    };
    assert_eq!(prepare_order(&p, &lev).unwrap().leverage, Some(5));
    let spot = OrderRequest {
        leverage: Some(1),
        ..req(OrderType::Limit, dec!(0.001), Some(dec!(45000)))
    };
    assert_eq!(prepare_order(&p, &spot).unwrap().leverage, None);
    // Stop-loss-limit: trigger in price, limit in price2, both on the tick.
    let sll = OrderRequest {
        price2: Some(dec!(43999.94)),
        side: Side::Sell,
        ..req(OrderType::StopLossLimit, dec!(0.001), Some(dec!(44000.06)))
    };
    let sll = prepare_order(&p, &sll).unwrap();
    assert_eq!((sll.price, sll.price2), (Some(dec!(44000.1)), Some(dec!(43999.9))));
}

#[test]
fn kraken_orders_convert_with_status_mapping() {
    let pairs: BTreeMap<String, AssetPair> = serde_json::from_value(serde_json::json!({
        "XBTUSDT": {"altname": "XBTUSDT", "wsname": "XBT/USDT", "base": "XXBT", "quote": "USDT",
                    "pair_decimals": 1, "lot_decimals": 8, "tick_size": "0.1", "ordermin": "0.00005", "costmin": "0.5"}
    }))
    .unwrap();
    let reg = PairRegistry::build(&pairs, &[]).unwrap();
    let id = ClientOrderId::random();
    let order = |status: &str, exec: &str| -> KrakenOrder {
        serde_json::from_value(serde_json::json!({
            "status": status, "opentm": 1688666559.8974, "cl_ord_id": kraken_cl_ord_id(&id).unwrap(),
            "descr": {"pair": "XBTUSDT", "type": "buy", "ordertype": "limit", "price": "30010.0", "price2": "0", "leverage": "none", "order": "buy 1.25 XBTUSDT @ limit 30010.0"},
            "vol": "1.25000000", "vol_exec": exec, "cost": "0", "fee": "0.01", "price": "30009.5"
        }))
        .unwrap()
    };
    let cases = [
        ("pending", "0", OrderStatus::Pending),
        ("open", "0", OrderStatus::Open),
        ("open", "0.5", OrderStatus::PartiallyFilled),
        ("closed", "1.25", OrderStatus::Filled),
        ("canceled", "0.5", OrderStatus::Cancelled),
        ("expired", "0", OrderStatus::Expired),
    ];
    for (status, exec, want) in cases {
        let o = to_exchange_order("OABC", &order(status, exec), &reg).unwrap();
        assert_eq!(o.status, want, "{status}/{exec}");
        assert_eq!(o.client_order_id.as_ref(), Some(&id));
        assert_eq!(o.symbol.as_str(), "BTC/USDT");
        assert_eq!(o.price, Some(dec!(30010)));
        assert_eq!(o.avg_fill_price.is_some(), exec != "0");
    }
}

struct CountingExchange {
    arms: AtomicU32,
    disarms: AtomicU32,
    fail_first: bool,
}

impl Exchange for CountingExchange {
    fn pairs(&self) -> ExchangeFuture<Vec<PairInfo>> {
        async { Ok(vec![]) }.boxed()
    }
    fn place_order(&self, _: OrderRequest) -> ExchangeFuture<OrderAck> {
        async { Err(ExchangeError::Rejected("unused".into())) }.boxed()
    }
    fn cancel_order(&self, _: OrderRef) -> ExchangeFuture<()> {
        async { Ok(()) }.boxed()
    }
    fn query_orders(&self, _: Vec<OrderRef>) -> ExchangeFuture<Vec<ExchangeOrder>> {
        async { Ok(vec![]) }.boxed()
    }
    fn open_orders(&self) -> ExchangeFuture<Vec<ExchangeOrder>> {
        async { Ok(vec![]) }.boxed()
    }
    fn balances(&self) -> ExchangeFuture<BTreeMap<String, Decimal>> {
        async { Ok(BTreeMap::new()) }.boxed()
    }
    fn cancel_all_after(&self, timeout_secs: u32) -> ExchangeFuture<()> {
        let n = if timeout_secs == 0 {
            self.disarms.fetch_add(1, Ordering::SeqCst)
        } else {
            assert_eq!(timeout_secs, 7);
            self.arms.fetch_add(1, Ordering::SeqCst)
        };
        let fail = self.fail_first && n == 0 && timeout_secs != 0;
        async move {
            if fail {
                Err(ExchangeError::Retryable("EService:Busy".into()))
            } else {
                Ok(())
            }
        }
        .boxed()
    }
}

#[tokio::test]
async fn dead_mans_switch_arms_refreshes_and_disarms_on_stop() {
    let ex = Arc::new(CountingExchange {
        arms: AtomicU32::new(0),
        disarms: AtomicU32::new(0),
        fail_first: true,
    });
    let cfg = DeadMansSwitchConfig {
        timeout_secs: 7,
        refresh_every: Duration::from_millis(30),
    };
    let handle = spawn_dead_mans_switch(ex.clone(), cfg).unwrap();
    tokio::time::sleep(Duration::from_millis(110)).await;
    assert!(handle.is_running());
    handle.stop(true).await.unwrap();
    let arms = ex.arms.load(Ordering::SeqCst);
    // Armed at once (that one failed), then refreshed ~every 30 ms despite the failure.
    assert!((2..=6).contains(&arms), "arms = {arms}");
    assert_eq!(ex.disarms.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(70)).await;
    assert_eq!(ex.arms.load(Ordering::SeqCst), arms, "no refresh after stop");
}

#[tokio::test]
async fn dead_mans_switch_rejects_bad_settings_and_drop_does_not_disarm() {
    let ex = Arc::new(CountingExchange {
        arms: AtomicU32::new(0),
        disarms: AtomicU32::new(0),
        fail_first: false,
    });
    for cfg in [
        DeadMansSwitchConfig {
            timeout_secs: 0,
            refresh_every: Duration::from_secs(1),
        },
        DeadMansSwitchConfig {
            timeout_secs: 86_400,
            refresh_every: Duration::from_secs(1),
        },
        DeadMansSwitchConfig {
            timeout_secs: 7,
            refresh_every: Duration::from_secs(7),
        },
    ] {
        assert!(
            matches!(spawn_dead_mans_switch(ex.clone(), cfg), Err(ExchangeError::Invalid(_))),
            "{cfg:?}"
        );
    }
    let h = spawn_dead_mans_switch(
        ex.clone(),
        DeadMansSwitchConfig {
            timeout_secs: 7,
            refresh_every: Duration::from_millis(20),
        },
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    drop(h);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let arms = ex.arms.load(Ordering::SeqCst);
    assert!(arms >= 1);
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(ex.arms.load(Ordering::SeqCst), arms);
    assert_eq!(ex.disarms.load(Ordering::SeqCst), 0);
}
