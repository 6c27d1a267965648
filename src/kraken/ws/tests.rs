use super::*;
use rust_decimal_macros::dec;

fn registry() -> PairRegistry {
    let pairs: BTreeMap<String, super::super::client::AssetPair> = serde_json::from_value(json!({
        "XBTUSDT": {"altname": "XBTUSDT", "wsname": "XBT/USDT", "base": "XXBT", "quote": "USDT",
                    "pair_decimals": 1, "lot_decimals": 8, "tick_size": "0.1", "ordermin": "0.00005", "costmin": "0.5"}
    }))
    .unwrap();
    PairRegistry::build(&pairs, &[]).unwrap()
}

#[test]
fn sparse_execution_entries_merge_into_one_order() {
    let mut c = Cache::default();
    let cl = "0b6a5e59-1f4c-4d3e-9f5a-5b7c0e0e0e0e";
    c.apply(
        &json!({"order_id": "OX-1", "exec_type": "pending_new", "order_status": "pending_new",
        "symbol": "BTC/USDT", "side": "buy", "order_type": "limit", "order_qty": 0.01, "limit_price": 45000.0,
        "cl_ord_id": cl, "timestamp": "2026-12-07T01:00:00.000000Z"}),
    );
    c.apply(&json!({"order_id": "OX-1", "exec_type": "new", "order_status": "new"}));
    c.apply(
        &json!({"order_id": "OX-1", "exec_type": "trade", "exec_id": "T1", "last_qty": 0.004,
        "last_price": 44990.0, "order_status": "partially_filled", "fees": [{"asset": "USDT", "qty": 0.1}]}),
    );
    // The same trade again (a resent message) counts once.
    c.apply(
        &json!({"order_id": "OX-1", "exec_type": "trade", "exec_id": "T1", "last_qty": 0.004,
        "last_price": 44990.0, "order_status": "partially_filled", "fees": [{"asset": "USDT", "qty": 0.1}]}),
    );
    let reg = registry();
    let o = c
        .lookup(&OrderRef::Exchange("OX-1".into()))
        .unwrap()
        .to_exchange(&reg)
        .unwrap();
    assert_eq!(o.status, OrderStatus::PartiallyFilled);
    assert_eq!(o.filled_volume, dec!(0.004));
    assert_eq!(o.avg_fill_price, Some(dec!(44990)));
    assert_eq!(o.fee, dec!(0.1));
    c.apply(
        &json!({"order_id": "OX-1", "exec_type": "trade", "exec_id": "T2", "last_qty": 0.006,
        "last_price": 45000.0, "order_status": "partially_filled", "fees": [{"asset": "USDT", "qty": 0.15}]}),
    );
    c.apply(
        &json!({"order_id": "OX-1", "exec_type": "filled", "order_status": "filled", "cum_qty": 0.01,
        "avg_price": 44996.0, "timestamp": "2026-12-07T01:00:05.000000Z"}),
    );
    // A late "new" never moves the status back.
    c.apply(&json!({"order_id": "OX-1", "exec_type": "new", "order_status": "new"}));
    let id = client_order_id_from_kraken(cl).unwrap();
    let o = c
        .lookup(&OrderRef::Client(id.clone()))
        .unwrap()
        .to_exchange(&reg)
        .unwrap();
    assert_eq!(o.status, OrderStatus::Filled);
    assert_eq!(o.filled_volume, dec!(0.01));
    assert_eq!(o.avg_fill_price, Some(dec!(44996)));
    assert_eq!(o.fee, dec!(0.25));
    assert_eq!(o.client_order_id, Some(id));
    assert!(o.closed_at.is_some());
    // An update for an order never described in full is not answerable from the cache.
    c.apply(&json!({"order_id": "OX-2", "exec_type": "canceled", "order_status": "canceled"}));
    assert!(c
        .lookup(&OrderRef::Exchange("OX-2".into()))
        .unwrap()
        .to_exchange(&reg)
        .is_none());
}

#[test]
fn add_order_frames_carry_plain_decimals_triggers_and_the_client_id() {
    let p = AddOrderParams {
        pair: "XBTUSDT".into(),
        side: Side::Sell,
        order_type: OrderType::StopLossLimit,
        volume: dec!(0.00012000),
        price: Some(dec!(44000.0)),
        price2: Some(dec!(43900.5)),
        leverage: None,
        reduce_only: true,
        post_only: false,
        validate: false,
        cl_ord_id: Some("abc".into()),
    };
    let text = add_order_params(&p, "BTC/USDT", "tok").unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(text.contains(r#""order_qty":0.00012"#), "{text}");
    assert_eq!(v["triggers"]["price"], json!(44000));
    assert_eq!(v["limit_price"], json!(43900.5));
    assert_eq!(v["order_type"], "stop-loss-limit");
    assert_eq!(v["cl_ord_id"], "abc");
    assert_eq!(v["token"], "tok");
    assert_eq!(v["reduce_only"], true);
    // Leverage and validate-only orders go over REST.
    assert!(add_order_params(
        &AddOrderParams {
            leverage: Some(2),
            ..p.clone()
        },
        "BTC/USDT",
        "t"
    )
    .is_none());
    assert!(add_order_params(&AddOrderParams { validate: true, ..p }, "BTC/USDT", "t").is_none());
}
