use super::*;
use rust_decimal_macros::dec;
use serde_json::json;
use triplegain_actors::domain::Symbol;

#[test]
fn credentials_debug_hides_secrets() {
    let c = KrakenCredentials::new("my-public-key", "c2VjcmV0");
    let s = format!("{c:?}");
    assert!(!s.contains("my-public-key") && !s.contains("c2VjcmV0"), "{s}");
    assert!(s.contains("REDACTED"));
}

#[test]
fn client_rejects_bad_setup() {
    let bad = KrakenCredentials::new("k", "not base64!!");
    assert_eq!(
        KrakenClient::new(KrakenConfig::default(), Some(bad)).unwrap_err(),
        KrakenSetupError::SecretNotBase64
    );
    let cfg = KrakenConfig {
        base_url: "api.kraken.com".into(),
        ..KrakenConfig::default()
    };
    assert!(matches!(
        KrakenClient::new(cfg, None),
        Err(KrakenSetupError::BadBaseUrl(_))
    ));
}

#[test]
fn add_order_form_has_exact_fields() {
    let p = AddOrderParams {
        pair: "XBTUSDT".into(),
        side: Side::Sell,
        order_type: OrderType::StopLossLimit,
        volume: dec!(0.00000100),
        price: Some(dec!(45000.0)),
        price2: Some(dec!(44900.50)),
        leverage: Some(2),
        reduce_only: true,
        post_only: false,
        validate: true,
        cl_ord_id: Some("abc".into()),
    };
    assert_eq!(
        p.to_form().encode(),
        "ordertype=stop-loss-limit&type=sell&pair=XBTUSDT&volume=0.000001&price=45000&price2=44900.5\
             &leverage=2&reduce_only=true&cl_ord_id=abc&validate=true"
    );
    let spot = AddOrderParams {
        leverage: Some(1),
        reduce_only: false,
        validate: false,
        post_only: true,
        ..p
    };
    let body = spot.to_form().encode();
    assert!(
        !body.contains("leverage") && body.contains("oflags=post") && !body.contains("validate"),
        "{body}"
    );
}

#[test]
fn ohlc_drops_the_unfinished_row() {
    let v = json!({
        "XXBTZUSD": [
            [1700000000, "100.1", "101", "99", "100.5", "100.2", "1.5", 10],
            [1700000060, "100.5", "102", "100", "101.5", "101.0", "2.25", 12],
            [1700000120, "101.5", "101.6", "101.4", "101.5", "101.5", "0.01", 1]
        ],
        "last": 1700000060
    });
    let sym = Symbol::parse("BTC/USD").unwrap();
    let c = parse_ohlc(&v, &sym, Timeframe::M1).unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].open, dec!(100.1));
    assert_eq!(c[1].close, dec!(101.5));
    assert_eq!(c[1].volume, dec!(2.25));
    assert_eq!(c[1].open_time.timestamp(), 1_700_000_060);
    assert!(parse_ohlc(&json!({"last": 1}), &sym, Timeframe::M1).is_err());
}

#[test]
fn balance_normalises_assets_and_skips_suffixed() {
    let v = json!({"XXBT": "0.5", "XXRP": "100.25", "USDT": "1000", "ZUSD": "12.3", "XBT.F": "9", "ETH2.S": "1"});
    let b = parse_balance(&v).unwrap();
    assert_eq!(b.get("BTC"), Some(&dec!(0.5)));
    assert_eq!(b.get("XRP"), Some(&dec!(100.25)));
    assert_eq!(b.get("USDT"), Some(&dec!(1000)));
    assert_eq!(b.get("USD"), Some(&dec!(12.3)));
    assert_eq!(b.len(), 4, "{b:?}");
}

#[test]
fn throttled_errors_carry_their_wait() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let errs = vec![format!("EService:Throttled: {}", now + 5)];
    let w = throttled_wait(&errs).unwrap();
    assert!(w >= Duration::from_secs(4) && w <= Duration::from_secs(5), "{w:?}");
    assert_eq!(throttled_wait(&["EService:Busy".to_owned()]), None);
    assert!(is_engine_limit(&ExchangeError::RateLimited(
        "EOrder:Rate limit exceeded".into()
    )));
    assert!(!is_engine_limit(&ExchangeError::RateLimited(
        "EAPI:Rate limit exceeded".into()
    )));
}

#[test]
fn balance_ex_subtracts_holds() {
    let v = json!({
        "XXBT": {"balance": "1.5", "hold_trade": "0.5"},
        "USDT": {"balance": "100", "credit": "10", "credit_used": "4", "hold_trade": "20"},
        "XBT.F": {"balance": "3"}
    });
    let b = parse_balance_ex(&v).unwrap();
    assert_eq!(b.get("BTC"), Some(&dec!(1.0)));
    assert_eq!(b.get("USDT"), Some(&dec!(86)));
    assert_eq!(b.len(), 2);
    assert!(parse_balance_ex(&json!({"XXBT": {"hold_trade": "1"}})).is_err());
}

#[test]
fn ticker_parses_last_bid_ask() {
    let v =
        json!({"XBTUSDT": {"a": ["45001.1", "1", "1.000"], "b": ["45000.9", "2", "2.000"], "c": ["45001.0", "0.01"]}});
    assert_eq!(
        parse_ticker(&v).unwrap(),
        Ticker {
            last: dec!(45001.0),
            bid: dec!(45000.9),
            ask: dec!(45001.1)
        }
    );
}

#[test]
fn envelope_separates_errors_warnings_and_garbage() {
    assert!(matches!(
        parse_envelope(r#"{"error":["EService:Busy"]}"#),
        Err(SendError::Kraken(_))
    ));
    assert!(parse_envelope(r#"{"error":["WGeneral:x"],"result":{"a":1}}"#).is_ok());
    assert!(matches!(
        parse_envelope("<html>502</html>"),
        Err(SendError::Malformed(_))
    ));
    assert!(matches!(
        parse_envelope(r#"{"error":[]}"#),
        Err(SendError::Malformed(_))
    ));
}

#[test]
fn order_times_convert() {
    let t = unix_secs_to_utc(1_688_666_559.5).unwrap();
    assert_eq!(t.timestamp(), 1_688_666_559);
    assert_eq!(t.timestamp_subsec_millis(), 500);
    assert_eq!(unix_secs_to_utc(0.0), None);
}
