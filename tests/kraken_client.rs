//! The Kraken client against a fake Kraken on 127.0.0.1 that speaks the real wire format:
//! it checks `API-Key`, recomputes `API-Sign` from the received body with the test secret,
//! refuses non-increasing nonces, and answers scripted results per method.

#[path = "common/kraken_wire.rs"]
mod kraken_wire;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use kraken_wire::{err, expected_signature, ok, parse_form, KEY, SECRET};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use triplegain::kraken::{
    client_order_id_from_kraken, kraken_cl_ord_id, spawn_dead_mans_switch, DeadMansSwitchConfig, KrakenClient,
    KrakenConfig, KrakenCredentials, KrakenExchange, Tier,
};
use triplegain_actors::domain::{ClientOrderId, OrderStatus, OrderType, Side, Symbol, Timeframe};
use triplegain_actors::ports::{Exchange, ExchangeError, OrderRef, OrderRequest};
use wiremock::matchers::{method, path, path_regex, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

// ---------------------------------------------------------------- fake Kraken

/// One private request the fake received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    nonce: u64,
    signature: String,
    form: HashMap<String, String>,
    outcome: &'static str,
}

#[derive(Default)]
struct FakeState {
    last_nonce: u64,
    seen: Vec<Seen>,
    /// Per method: scripted answers, used first-in first-out before the default.
    script: HashMap<String, VecDeque<Scripted>>,
    default: HashMap<String, Value>,
}

#[derive(Clone)]
enum Scripted {
    Body(Value),
    Status(u16),
    Delay(Duration, Value),
}

#[derive(Clone)]
struct Fake {
    server: Arc<MockServer>,
    state: Arc<Mutex<FakeState>>,
}

impl Fake {
    async fn start() -> Self {
        let server = Arc::new(MockServer::start().await);
        let state = Arc::new(Mutex::new(FakeState::default()));
        let st = state.clone();
        Mock::given(method("POST"))
            .and(path_regex("^/0/private/[A-Za-z]+$"))
            .respond_with(move |req: &Request| Self::private(&st, req))
            .mount(&server)
            .await;
        Self { server, state }
    }

    fn private(state: &Arc<Mutex<FakeState>>, req: &Request) -> ResponseTemplate {
        let path = req.url.path().to_owned();
        let method = path.trim_start_matches("/0/private/").to_owned();
        let body = String::from_utf8(req.body.clone()).unwrap();
        let form = parse_form(&body);
        let header = |h: &str| {
            req.headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let signature = header("API-Sign");
        let nonce_text = form.get("nonce").cloned().unwrap_or_default();
        let nonce: u64 = nonce_text.parse().unwrap_or(0);
        let mut st = state.lock().unwrap();
        let record = |outcome: &'static str, st: &mut FakeState| {
            st.seen.push(Seen {
                method: method.clone(),
                nonce,
                signature: signature.clone(),
                form: form.clone(),
                outcome,
            });
        };
        if header("API-Key") != KEY {
            record("bad key", &mut st);
            return ResponseTemplate::new(200).set_body_json(err("EAPI:Invalid key"));
        }
        assert!(header("content-type").starts_with("application/x-www-form-urlencoded"));
        assert!(!header("user-agent").is_empty(), "a User-Agent is sent");
        if signature != expected_signature(&path, &nonce_text, &req.body) {
            record("bad signature", &mut st);
            return ResponseTemplate::new(200).set_body_json(err("EAPI:Invalid signature"));
        }
        if nonce <= st.last_nonce {
            record("bad nonce", &mut st);
            return ResponseTemplate::new(200).set_body_json(err("EAPI:Invalid nonce"));
        }
        st.last_nonce = nonce;
        record("accepted", &mut st);
        let scripted = st.script.get_mut(&method).and_then(VecDeque::pop_front);
        match scripted {
            Some(Scripted::Body(v)) => ResponseTemplate::new(200).set_body_json(v),
            Some(Scripted::Status(s)) => ResponseTemplate::new(s).set_body_string("<html>bad gateway</html>"),
            Some(Scripted::Delay(d, v)) => ResponseTemplate::new(200).set_body_json(v).set_delay(d),
            None => match st.default.get(&method) {
                Some(v) => ResponseTemplate::new(200).set_body_json(v.clone()),
                None => ResponseTemplate::new(200).set_body_json(err("EGeneral:Unknown method")),
            },
        }
    }

    fn script(&self, method: &str, answers: Vec<Scripted>) {
        self.state
            .lock()
            .unwrap()
            .script
            .entry(method.to_owned())
            .or_default()
            .extend(answers);
    }

    fn default(&self, method: &str, envelope: Value) {
        self.state.lock().unwrap().default.insert(method.to_owned(), envelope);
    }

    fn seen(&self, method: &str) -> Vec<Seen> {
        self.state
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|s| s.method == method)
            .cloned()
            .collect()
    }

    fn all_seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    async fn mount_public(&self, name: &str, result: Value) {
        Mock::given(method("GET"))
            .and(path(format!("/0/public/{name}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(ok(result)))
            .mount(&self.server)
            .await;
    }

    fn config(&self) -> KrakenConfig {
        KrakenConfig {
            base_url: self.server.uri(),
            timeout: Duration::from_secs(2),
            tier: Tier::Pro,
            max_rate_wait: Duration::from_millis(200),
            read_attempts: 3,
            retry_backoff: Duration::from_millis(10),
            ..KrakenConfig::default()
        }
    }

    fn client(&self) -> KrakenClient {
        self.client_with(self.config())
    }

    fn client_with(&self, config: KrakenConfig) -> KrakenClient {
        KrakenClient::new(config, Some(KrakenCredentials::new(KEY, SECRET))).unwrap()
    }

    async fn exchange(&self) -> KrakenExchange {
        self.exchange_with(self.config()).await
    }

    async fn exchange_with(&self, config: KrakenConfig) -> KrakenExchange {
        self.mount_public("AssetPairs", asset_pairs()).await;
        KrakenExchange::connect(self.client_with(config), &symbols())
            .await
            .unwrap()
    }
}

fn symbols() -> Vec<Symbol> {
    ["BTC/USDT", "XRP/USDT", "XRP/BTC"]
        .iter()
        .map(|s| Symbol::parse(s).unwrap())
        .collect()
}

fn sym(s: &str) -> Symbol {
    Symbol::parse(s).unwrap()
}

/// AssetPairs excerpt in Kraken's shape (extra fields included, as Kraken sends them).
fn asset_pairs() -> Value {
    json!({
        "XBTUSDT": {"altname": "XBTUSDT", "wsname": "XBT/USDT", "aclass_base": "currency", "base": "XXBT",
            "aclass_quote": "currency", "quote": "USDT", "lot": "unit", "cost_decimals": 5, "pair_decimals": 1,
            "lot_decimals": 8, "lot_multiplier": 1, "leverage_buy": [2, 3, 4, 5], "leverage_sell": [2, 3, 4, 5],
            "fees": [[0, 0.4], [10000, 0.35]], "fees_maker": [[0, 0.25]], "fee_volume_currency": "ZUSD",
            "margin_call": 80, "margin_stop": 40, "ordermin": "0.00005", "costmin": "0.5", "tick_size": "0.1",
            "status": "online"},
        "XRPUSDT": {"altname": "XRPUSDT", "wsname": "XRP/USDT", "base": "XXRP", "quote": "USDT",
            "pair_decimals": 5, "lot_decimals": 8, "leverage_buy": [], "leverage_sell": [],
            "ordermin": "10", "costmin": "0.5", "tick_size": "0.00001", "status": "online"},
        "XXRPXXBT": {"altname": "XRPXBT", "wsname": "XRP/XBT", "base": "XXRP", "quote": "XXBT",
            "pair_decimals": 8, "lot_decimals": 8, "leverage_buy": [2, 3], "leverage_sell": [2],
            "ordermin": "10", "costmin": "0.00002", "tick_size": "0.00000001", "status": "online"},
        "XXBTZUSD": {"altname": "XBTUSD", "wsname": "XBT/USD", "base": "XXBT", "quote": "ZUSD",
            "pair_decimals": 1, "lot_decimals": 8, "ordermin": "0.0001", "costmin": "0.5", "tick_size": "0.1"}
    })
}

fn limit(symbol: &str, side: Side, volume: Decimal, price: Decimal) -> OrderRequest {
    OrderRequest {
        client_order_id: ClientOrderId::random(),
        symbol: sym(symbol),
        side,
        order_type: OrderType::Limit,
        volume,
        price: Some(price),
        price2: None,
        leverage: None,
        reduce_only: false,
        post_only: false,
        validate: false,
    }
}

fn add_order_ok(txid: &str) -> Value {
    ok(json!({"descr": {"order": "buy 0.12345678 XBTUSDT @ limit 45250.1"}, "txid": [txid]}))
}

fn kraken_order(cl_ord_id: &str, status: &str, vol_exec: &str) -> Value {
    json!({
        "refid": null, "userref": 0, "cl_ord_id": cl_ord_id, "status": status, "opentm": 1700000000.1234,
        "starttm": 0, "expiretm": 0,
        "descr": {"pair": "XBTUSDT", "type": "buy", "ordertype": "limit", "price": "45250.1", "price2": "0",
                  "leverage": "none", "order": "buy 0.12345678 XBTUSDT @ limit 45250.1", "close": ""},
        "vol": "0.12345678", "vol_exec": vol_exec, "cost": "0.00000", "fee": "0.00000", "price": "0.00000",
        "stopprice": "0.00000", "limitprice": "0.00000", "misc": "", "oflags": "fciq"
    })
}

// ---------------------------------------------------------------- signing and nonces

#[tokio::test]
async fn signed_private_calls_pass_verification_with_strictly_increasing_nonces() {
    // Arrange
    let fake = Fake::start().await;
    fake.default(
        "Balance",
        ok(json!({"XXBT": "0.5000000000", "XXRP": "120.5", "USDT": "1000.25", "ZUSD": "3.1", "XBT.F": "7"})),
    );
    fake.default("OpenOrders", ok(json!({"open": {}})));
    let client = fake.client();

    // Act
    let balances = client.balance().await.unwrap();
    client.open_orders(None).await.unwrap();
    client.balance().await.unwrap();
    let concurrent = futures::future::join_all((0..5).map(|_| {
        let c = client.clone();
        async move { c.balance().await }
    }))
    .await;

    // Assert
    assert!(concurrent.iter().all(Result::is_ok), "{concurrent:?}");
    let seen = fake.all_seen();
    assert_eq!(seen.len(), 8);
    assert!(seen.iter().all(|s| s.outcome == "accepted"), "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[1].nonce > w[0].nonce),
        "nonces must strictly increase: {seen:?}"
    );
    assert!(
        seen[0].nonce > 1_600_000_000_000 && seen[0].nonce < 10_000_000_000_000,
        "millisecond scale"
    );
    assert_eq!(balances.get("BTC"), Some(&dec!(0.5)));
    assert_eq!(balances.get("XRP"), Some(&dec!(120.5)));
    assert_eq!(balances.get("USDT"), Some(&dec!(1000.25)));
    assert_eq!(balances.get("USD"), Some(&dec!(3.1)));
    assert!(!balances.keys().any(|k| k.contains('.')), "{balances:?}");
}

#[tokio::test]
async fn a_wrong_secret_or_key_is_refused_by_the_fake_and_rejected_without_retry() {
    let fake = Fake::start().await;
    fake.default("Balance", ok(json!({})));
    let other_secret = B64.encode([7u8; 64]);
    let wrong_secret = KrakenClient::new(fake.config(), Some(KrakenCredentials::new(KEY, other_secret))).unwrap();
    let e = wrong_secret.balance().await.unwrap_err();
    assert!(
        matches!(&e, ExchangeError::Rejected(m) if m.contains("EAPI:Invalid signature")),
        "{e:?}"
    );

    let wrong_key = KrakenClient::new(fake.config(), Some(KrakenCredentials::new("nope", SECRET))).unwrap();
    let e = wrong_key.balance().await.unwrap_err();
    assert!(
        matches!(&e, ExchangeError::Rejected(m) if m.contains("EAPI:Invalid key")),
        "{e:?}"
    );
    assert_eq!(fake.all_seen().len(), 2, "fatal auth errors are not retried");

    let public_only = KrakenClient::new(fake.config(), None).unwrap();
    assert!(matches!(public_only.balance().await, Err(ExchangeError::Rejected(_))));
    assert_eq!(fake.all_seen().len(), 2, "no request without credentials");
}

#[tokio::test]
async fn a_retried_read_uses_a_new_nonce_and_a_new_signature() {
    let fake = Fake::start().await;
    fake.script(
        "Balance",
        vec![Scripted::Body(err("EService:Unavailable")), Scripted::Status(502)],
    );
    fake.default("Balance", ok(json!({"USDT": "5"})));

    let b = fake.client().balance().await.unwrap();

    assert_eq!(b.get("USDT"), Some(&dec!(5)));
    let seen = fake.seen("Balance");
    assert_eq!(seen.len(), 3, "two retries then success");
    assert!(seen.iter().all(|s| s.outcome == "accepted"));
    assert!(seen[1].nonce > seen[0].nonce && seen[2].nonce > seen[1].nonce);
    assert_ne!(seen[0].signature, seen[1].signature);
    assert_ne!(seen[1].signature, seen[2].signature);
}

#[tokio::test]
async fn reads_give_up_after_the_configured_attempts() {
    let fake = Fake::start().await;
    fake.default("Balance", err("EService:Busy"));
    let e = fake.client().balance().await.unwrap_err();
    assert!(matches!(e, ExchangeError::Retryable(_)), "{e:?}");
    assert_eq!(fake.seen("Balance").len(), 3);
}

#[tokio::test]
async fn invalid_nonce_on_add_order_is_retried_once_with_a_fresh_nonce() {
    // Arrange: Kraken refuses our nonce once (e.g. another user of the key got ahead).
    let fake = Fake::start().await;
    let ex = fake.exchange().await;
    fake.script("AddOrder", vec![Scripted::Body(err("EAPI:Invalid nonce"))]);
    fake.default("AddOrder", add_order_ok("OUF4EM-FRGI2-MQMWZD"));
    let req = limit("BTC/USDT", Side::Buy, dec!(0.01), dec!(45000));

    // Act
    let ack = ex.place_order(req.clone()).await.unwrap();

    // Assert
    assert_eq!(ack.exchange_order_id, "OUF4EM-FRGI2-MQMWZD");
    assert_eq!(ack.client_order_id, req.client_order_id);
    let seen = fake.seen("AddOrder");
    assert_eq!(seen.len(), 2);
    assert!(seen[1].nonce > seen[0].nonce);
    assert_ne!(seen[0].signature, seen[1].signature);
    assert_eq!(
        seen[0].form.get("cl_ord_id"),
        seen[1].form.get("cl_ord_id"),
        "same order, same client id"
    );

    // A nonce refused twice is not hammered (lock-out risk): rejected after one retry.
    fake.script(
        "AddOrder",
        vec![
            Scripted::Body(err("EAPI:Invalid nonce")),
            Scripted::Body(err("EAPI:Invalid nonce")),
        ],
    );
    let e = ex
        .place_order(limit("BTC/USDT", Side::Buy, dec!(0.01), dec!(45000)))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ExchangeError::Rejected(m) if m.contains("Invalid nonce")),
        "{e:?}"
    );
    assert_eq!(fake.seen("AddOrder").len(), 4);
}

#[tokio::test]
async fn the_fake_refuses_a_nonce_that_does_not_increase() {
    // Guards the meaning of the other tests: a stale nonce really is refused.
    let fake = Fake::start().await;
    fake.default("Balance", ok(json!({})));
    fake.state.lock().unwrap().last_nonce = u64::MAX - 1;
    let e = fake.client().balance().await.unwrap_err();
    assert!(
        matches!(&e, ExchangeError::Rejected(m) if m.contains("Invalid nonce")),
        "{e:?}"
    );
    let seen = fake.seen("Balance");
    assert_eq!(seen.len(), 2, "one retry with a fresh nonce, then stop");
    assert!(seen.iter().all(|s| s.outcome == "bad nonce"));
}

// ---------------------------------------------------------------- order outcomes

#[tokio::test]
async fn order_change_failures_are_classified_and_never_retried() {
    let fake = Fake::start().await;
    let ex = fake.exchange().await;
    type Check = fn(&ExchangeError) -> bool;
    let cases: Vec<(Scripted, Check, &str)> = vec![
        (
            Scripted::Body(err("EOrder:Insufficient funds")),
            |e| matches!(e, ExchangeError::Rejected(_)),
            "funds",
        ),
        (
            Scripted::Body(err("EGeneral:Invalid arguments:volume")),
            |e| matches!(e, ExchangeError::Rejected(_)),
            "args",
        ),
        (
            Scripted::Body(err("EService:Unavailable")),
            |e| matches!(e, ExchangeError::Unknown(_)),
            "unavailable",
        ),
        (
            Scripted::Body(err("EService:Busy")),
            |e| matches!(e, ExchangeError::Unknown(_)),
            "busy",
        ),
        (
            Scripted::Status(502),
            |e| matches!(e, ExchangeError::Unknown(_)),
            "HTTP 502",
        ),
        (
            Scripted::Body(err("EOrder:Rate limit exceeded")),
            |e| matches!(e, ExchangeError::RateLimited(_)),
            "limit",
        ),
    ];
    for (i, (answer, check, name)) in cases.into_iter().enumerate() {
        fake.script("AddOrder", vec![answer]);
        let e = ex
            .place_order(limit("BTC/USDT", Side::Buy, dec!(0.01), dec!(45000)))
            .await
            .unwrap_err();
        assert!(check(&e), "{name}: got {e:?}");
        assert_eq!(fake.seen("AddOrder").len(), i + 1, "{name}: exactly one request");
    }
}

#[tokio::test]
async fn an_add_order_timeout_is_unknown_and_resolved_by_client_id() {
    // Arrange: the order reaches the exchange but the answer comes too late.
    let fake = Fake::start().await;
    let cfg = KrakenConfig {
        timeout: Duration::from_millis(300),
        ..fake.config()
    };
    let ex = fake.exchange_with(cfg).await;
    fake.script(
        "AddOrder",
        vec![Scripted::Delay(Duration::from_secs(2), add_order_ok("OTX-1"))],
    );
    let req = limit("BTC/USDT", Side::Buy, dec!(0.12345678), dec!(45250.1));

    // Act
    let e = ex.place_order(req.clone()).await.unwrap_err();

    // Assert: unknown, not retried; the order is then found by its client id.
    assert!(matches!(e, ExchangeError::Unknown(_)), "{e:?}");
    let sent = fake.seen("AddOrder");
    assert_eq!(sent.len(), 1);
    let cl = sent[0].form.get("cl_ord_id").cloned().unwrap();
    fake.default(
        "OpenOrders",
        ok(json!({"open": {"OTX-1": kraken_order(&cl, "open", "0.00000000")}})),
    );

    let found = ex
        .query_orders(vec![OrderRef::Client(req.client_order_id.clone())])
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].exchange_order_id, "OTX-1");
    assert_eq!(found[0].client_order_id.as_ref(), Some(&req.client_order_id));
    assert_eq!(found[0].status, OrderStatus::Open);
    let lookups = fake.seen("OpenOrders");
    assert_eq!(lookups.last().unwrap().form.get("cl_ord_id"), Some(&cl));
    assert!(fake.seen("ClosedOrders").is_empty(), "found among open orders");
}

#[tokio::test]
async fn a_client_id_lookup_falls_back_to_closed_orders() {
    let fake = Fake::start().await;
    let ex = fake.exchange().await;
    let id = ClientOrderId::random();
    let cl = kraken_cl_ord_id(&id).unwrap();
    fake.default("OpenOrders", ok(json!({"open": {}})));
    fake.default(
        "ClosedOrders",
        ok(json!({"closed": {"OCL-1": kraken_order(&cl, "closed", "0.12345678")}, "count": 1})),
    );
    let found = ex.query_orders(vec![OrderRef::Client(id.clone())]).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].status, OrderStatus::Filled);
    assert_eq!(found[0].filled_volume, dec!(0.12345678));
    assert_eq!(fake.seen("ClosedOrders")[0].form.get("cl_ord_id"), Some(&cl));
}

// ---------------------------------------------------------------- pairs, quantisation, body

#[tokio::test]
async fn asset_pairs_map_our_symbols_with_precision() {
    let fake = Fake::start().await;
    let ex = fake.exchange().await;
    let pairs = ex.pairs().await.unwrap();
    assert_eq!(pairs.len(), 3, "only the wanted pairs: {pairs:?}");
    let get = |s: &str| pairs.iter().find(|p| p.symbol.as_str() == s).unwrap().clone();
    let btc = get("BTC/USDT");
    assert_eq!(btc.exchange_name, "XBTUSDT");
    assert_eq!((btc.tick_size, btc.price_decimals, btc.lot_decimals), (dec!(0.1), 1, 8));
    assert_eq!(
        (btc.ordermin, btc.costmin, btc.max_leverage_buy),
        (dec!(0.00005), dec!(0.5), 5)
    );
    let xrp = get("XRP/USDT");
    assert_eq!(xrp.exchange_name, "XRPUSDT");
    assert_eq!(
        (xrp.tick_size, xrp.ordermin, xrp.max_leverage_buy),
        (dec!(0.00001), dec!(10), 1)
    );
    let xrpbtc = get("XRP/BTC");
    assert_eq!(xrpbtc.exchange_name, "XXRPXXBT");
    assert_eq!((xrpbtc.tick_size, xrpbtc.costmin), (dec!(0.00000001), dec!(0.00002)));
    assert_eq!((xrpbtc.max_leverage_buy, xrpbtc.max_leverage_sell), (3, 2));
    // Every Kraken name of a pair maps back to our symbol.
    for name in ["XXRPXXBT", "XRPXBT", "XRP/XBT", "xrpxbt"] {
        assert_eq!(ex.registry().symbol_for(name), Some(&sym("XRP/BTC")), "{name}");
    }

    let unknown = KrakenExchange::connect(fake.client(), &[sym("DOGE/EUR")])
        .await
        .unwrap_err();
    assert!(
        matches!(&unknown, ExchangeError::Invalid(m) if m.contains("DOGE/EUR")),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn add_order_body_is_quantised_without_exponents_and_carries_cl_ord_id() {
    let fake = Fake::start().await;
    let ex = fake.exchange().await;
    fake.default("AddOrder", add_order_ok("OAAA-1"));

    let btc = limit("BTC/USDT", Side::Buy, dec!(0.123456789), dec!(45250.06));
    let ack = ex.place_order(btc.clone()).await.unwrap();
    let tiny = OrderRequest {
        post_only: true,
        ..limit("XRP/BTC", Side::Sell, dec!(25.000000019), dec!(0.00000100))
    };
    ex.place_order(tiny).await.unwrap();
    let stop = OrderRequest {
        order_type: OrderType::StopLossLimit,
        price: Some(dec!(44000.04)),
        price2: Some(dec!(43900.06)),
        reduce_only: true,
        leverage: Some(2),
        ..limit("BTC/USDT", Side::Sell, dec!(0.01), dec!(1))
    };
    ex.place_order(stop).await.unwrap();

    assert_eq!(ack.exchange_order_id, "OAAA-1");
    let sent = fake.seen("AddOrder");
    assert_eq!(sent.len(), 3);
    let field = |i: usize, k: &str| sent[i].form.get(k).cloned();
    assert_eq!(field(0, "pair").as_deref(), Some("XBTUSDT"));
    assert_eq!(field(0, "type").as_deref(), Some("buy"));
    assert_eq!(field(0, "ordertype").as_deref(), Some("limit"));
    assert_eq!(field(0, "price").as_deref(), Some("45250.1"));
    assert_eq!(field(0, "volume").as_deref(), Some("0.12345678"));
    let cl = field(0, "cl_ord_id").unwrap();
    assert_eq!(client_order_id_from_kraken(&cl), Some(btc.client_order_id));
    for absent in ["leverage", "oflags", "validate", "price2", "reduce_only"] {
        assert_eq!(field(0, absent), None, "{absent}");
    }

    assert_eq!(field(1, "price").as_deref(), Some("0.000001"), "never 1e-6");
    assert_eq!(field(1, "volume").as_deref(), Some("25.00000001"));
    assert_eq!(field(1, "oflags").as_deref(), Some("post"));
    for s in &sent {
        for k in ["price", "price2", "volume"] {
            let v = s.form.get(k).map(String::as_str).unwrap_or("");
            assert!(!v.to_ascii_lowercase().contains('e'), "{k}={v} uses an exponent");
        }
    }

    assert_eq!(field(2, "ordertype").as_deref(), Some("stop-loss-limit"));
    assert_eq!(field(2, "price").as_deref(), Some("44000"), "trigger in price");
    assert_eq!(field(2, "price2").as_deref(), Some("43900.1"), "limit in price2");
    assert_eq!(field(2, "reduce_only").as_deref(), Some("true"));
    assert_eq!(field(2, "leverage").as_deref(), Some("2"));
}

#[tokio::test]
async fn minimum_violations_are_refused_without_any_http_call() {
    let fake = Fake::start().await;
    let ex = fake.exchange().await;
    fake.default("AddOrder", add_order_ok("SHOULD-NOT-HAPPEN"));
    let cases = [
        (limit("BTC/USDT", Side::Buy, dec!(0.00004), dec!(45000)), "ordermin"),
        (limit("XRP/USDT", Side::Buy, dec!(9.99999999), dec!(0.6)), "ordermin"),
        (limit("BTC/USDT", Side::Buy, dec!(0.0001), dec!(4000)), "costmin"),
        (limit("XRP/BTC", Side::Buy, dec!(10), dec!(0.000001)), "costmin"),
        (
            limit("ETH/USDT", Side::Buy, dec!(1), dec!(2000)),
            "not a loaded Kraken pair",
        ),
    ];
    for (req, needle) in cases {
        let e = ex.place_order(req.clone()).await.unwrap_err();
        assert!(
            matches!(&e, ExchangeError::Invalid(m) if m.contains(needle)),
            "{needle}: {e:?}"
        );
    }
    assert!(
        fake.all_seen().is_empty(),
        "nothing may reach Kraken: {:?}",
        fake.all_seen()
    );
}

// ---------------------------------------------------------------- public data

#[tokio::test]
async fn ohlc_over_http_drops_the_forming_candle_and_ticker_reads_last_bid_ask() {
    let fake = Fake::start().await;
    let ex = fake.exchange().await;
    Mock::given(method("GET"))
        .and(path("/0/public/OHLC"))
        .and(query_param("pair", "XBTUSDT"))
        .and(query_param("interval", "60"))
        .and(query_param("since", "1700000000"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ok(json!({
            "XBTUSDT": [
                [1700000000, "45000.0", "45100.0", "44900.0", "45050.0", "45010.0", "12.5", 100],
                [1700003600, "45050.0", "45200.0", "45000.0", "45150.0", "45100.0", "8.25", 80],
                [1700007200, "45150.0", "45160.0", "45140.0", "45155.0", "45150.0", "0.1", 3]
            ],
            "last": 1700003600
        }))))
        .mount(&fake.server)
        .await;
    fake.mount_public(
        "Ticker",
        json!({"XRPUSDT": {"a": ["0.61234", "100", "100.000"], "b": ["0.61200", "50", "50.000"], "c": ["0.61220", "10"]}}),
    )
    .await;

    let candles = ex
        .ohlc(&sym("BTC/USDT"), Timeframe::H1, Some(1_700_000_000))
        .await
        .unwrap();
    assert_eq!(candles.len(), 2);
    assert_eq!(candles[0].symbol, sym("BTC/USDT"));
    assert_eq!(candles[0].timeframe, Timeframe::H1);
    assert_eq!(candles[1].open_time.timestamp(), 1_700_003_600);
    assert_eq!((candles[1].high, candles[1].volume), (dec!(45200.0), dec!(8.25)));

    let t = ex.ticker(&sym("XRP/USDT")).await.unwrap();
    assert_eq!((t.last, t.bid, t.ask), (dec!(0.61220), dec!(0.61200), dec!(0.61234)));
}

// ---------------------------------------------------------------- orders, cancel, switch

#[tokio::test]
async fn open_orders_convert_and_cancel_by_client_id_sends_cl_ord_id() {
    let fake = Fake::start().await;
    let ex = fake.exchange().await;
    let id = ClientOrderId::random();
    let cl = kraken_cl_ord_id(&id).unwrap();
    fake.default(
        "OpenOrders",
        ok(json!({"open": {
            "OPEN-1": kraken_order(&cl, "open", "0.02"),
            "OTHER-PAIR": {"status": "open", "descr": {"pair": "DOGEUSD", "type": "buy", "ordertype": "limit",
                           "price": "1"}, "vol": "1", "vol_exec": "0"}
        }})),
    );
    fake.default("CancelOrder", ok(json!({"count": 1})));
    fake.default(
        "QueryOrders",
        ok(json!({"OPEN-1": kraken_order(&cl, "canceled", "0.02")})),
    );

    let open = ex.open_orders().await.unwrap();
    assert_eq!(open.len(), 1, "orders on pairs we do not trade are skipped");
    assert_eq!(open[0].status, OrderStatus::PartiallyFilled);
    assert_eq!(open[0].client_order_id.as_ref(), Some(&id));
    assert_eq!(open[0].price, Some(dec!(45250.1)));

    ex.cancel_order(OrderRef::Client(id.clone())).await.unwrap();
    ex.cancel_order(OrderRef::Exchange("OPEN-1".into())).await.unwrap();
    let cancels = fake.seen("CancelOrder");
    assert_eq!(cancels[0].form.get("cl_ord_id"), Some(&cl));
    assert_eq!(cancels[1].form.get("txid").map(String::as_str), Some("OPEN-1"));

    let q = ex
        .query_orders(vec![OrderRef::Exchange("OPEN-1".into())])
        .await
        .unwrap();
    assert_eq!(q[0].status, OrderStatus::Cancelled);
    assert_eq!(
        fake.seen("QueryOrders")[0].form.get("txid").map(String::as_str),
        Some("OPEN-1")
    );
}

#[tokio::test]
async fn dead_mans_switch_refreshes_on_kraken_and_disarms_on_stop() {
    let fake = Fake::start().await;
    let ex = fake.exchange().await;
    fake.default(
        "CancelAllOrdersAfter",
        ok(json!({"currentTime": "2026-11-25T22:00:00Z", "triggerTime": "2026-11-25T22:01:00Z"})),
    );
    let handle = spawn_dead_mans_switch(
        Arc::new(ex),
        DeadMansSwitchConfig {
            timeout_secs: 60,
            refresh_every: Duration::from_millis(60),
        },
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    handle.stop(true).await.unwrap();
    let calls: Vec<String> = fake
        .seen("CancelAllOrdersAfter")
        .iter()
        .map(|s| s.form.get("timeout").cloned().unwrap())
        .collect();
    assert!(calls.len() >= 3, "{calls:?}");
    assert!(calls[..calls.len() - 1].iter().all(|t| t == "60"), "{calls:?}");
    assert_eq!(calls.last().map(String::as_str), Some("0"), "disarmed last");
}

// ---------------------------------------------------------------- rate counters under a burst

#[tokio::test]
async fn rest_counter_stops_a_burst_before_kraken_does() {
    let fake = Fake::start().await;
    fake.default("Balance", ok(json!({})));
    let cfg = KrakenConfig {
        tier: Tier::Starter,
        max_rate_wait: Duration::from_millis(100),
        ..fake.config()
    };
    let client = fake.client_with(cfg);

    let mut results = Vec::new();
    for _ in 0..16 {
        results.push(client.balance().await);
    }

    assert!(results[..15].iter().all(Result::is_ok));
    assert!(
        matches!(results[15], Err(ExchangeError::RateLimited(_))),
        "{:?}",
        results[15]
    );
    assert_eq!(fake.seen("Balance").len(), 15, "the 16th call never left");
}

#[tokio::test]
async fn rest_counter_waits_for_decay_when_allowed() {
    let fake = Fake::start().await;
    fake.default("Balance", ok(json!({})));
    // Pro: 20 max, −1/s. The 21st call waits up to 1 s, within the 1.5 s allowed.
    let cfg = KrakenConfig {
        tier: Tier::Pro,
        max_rate_wait: Duration::from_millis(1500),
        ..fake.config()
    };
    let client = fake.client_with(cfg);
    let started = std::time::Instant::now();
    for _ in 0..20 {
        client.balance().await.unwrap();
    }
    let burst = started.elapsed();
    let started = std::time::Instant::now();
    client.balance().await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited + burst >= Duration::from_millis(900),
        "burst {burst:?}, then waited {waited:?}"
    );
    assert_eq!(fake.seen("Balance").len(), 21);
}

#[tokio::test]
async fn cancelling_young_orders_exhausts_the_pair_trading_counter() {
    let fake = Fake::start().await;
    let cfg = KrakenConfig {
        tier: Tier::Starter,
        max_rate_wait: Duration::from_millis(100),
        ..fake.config()
    };
    let ex = fake.exchange_with(cfg).await;
    fake.default("CancelOrder", ok(json!({"count": 1})));
    let mut refused = None;
    for i in 0..10 {
        let txid = format!("OYOUNG-{i}");
        fake.script("AddOrder", vec![Scripted::Body(add_order_ok(&txid))]);
        if let Err(e) = ex
            .place_order(limit("BTC/USDT", Side::Buy, dec!(0.01), dec!(45000)))
            .await
        {
            refused = Some((i, "add", e));
            break;
        }
        if let Err(e) = ex.cancel_order(OrderRef::Exchange(txid)).await {
            refused = Some((i, "cancel", e));
            break;
        }
    }
    // Starter: 60 per pair. Each place + cancel within 5 s costs 1 + 8 = 9: the 7th cancel
    // (6·9 + 1 + 8 = 63) does not fit.
    let (cycle, what, e) = refused.expect("the burst must be stopped locally");
    assert_eq!((cycle, what), (6, "cancel"), "{e:?}");
    assert!(matches!(e, ExchangeError::RateLimited(_)), "{e:?}");
    assert_eq!(fake.seen("AddOrder").len(), 7);
    assert_eq!(fake.seen("CancelOrder").len(), 6, "the refused cancel never left");

    // Other pairs have their own counter.
    fake.script("AddOrder", vec![Scripted::Body(add_order_ok("OXRP-1"))]);
    ex.place_order(limit("XRP/USDT", Side::Buy, dec!(20), dec!(0.6)))
        .await
        .unwrap();
}

#[tokio::test]
async fn temporary_lockout_pauses_private_calls_locally() {
    let fake = Fake::start().await;
    fake.script("Balance", vec![Scripted::Body(err("EGeneral:Temporary lockout"))]);
    fake.default("Balance", ok(json!({})));
    let client = fake.client();
    let e = client.balance().await.unwrap_err();
    assert!(matches!(e, ExchangeError::RateLimited(_)), "{e:?}");
    let e = client.balance().await.unwrap_err();
    assert!(
        matches!(&e, ExchangeError::RateLimited(m) if m.contains("paused")),
        "{e:?}"
    );
    assert_eq!(fake.seen("Balance").len(), 1, "no call during the lock-out");
}

#[tokio::test]
async fn a_tick_size_rejection_reloads_the_pairs_and_is_not_retried() {
    let fake = Fake::start().await;
    let ex = fake.exchange().await;
    fake.script("AddOrder", vec![Scripted::Body(err("EOrder:Tick size check failed"))]);
    let e = ex
        .place_order(limit("BTC/USDT", Side::Buy, dec!(0.01), dec!(45000)))
        .await
        .unwrap_err();
    assert!(matches!(e, ExchangeError::Rejected(_)), "{e:?}");
    assert_eq!(fake.seen("AddOrder").len(), 1);
    let pair_loads = fake
        .server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/0/public/AssetPairs")
        .count();
    assert_eq!(pair_loads, 2, "loaded at connect and reloaded after the rejection");
    assert_eq!(ex.registry().pairs().count(), 3);
}

#[tokio::test]
async fn a_kraken_rate_limit_error_fills_the_local_counter() {
    let fake = Fake::start().await;
    fake.script("Balance", vec![Scripted::Body(err("EAPI:Rate limit exceeded"))]);
    fake.default("Balance", ok(json!({})));
    // Pro decays 1/s: after Kraken's refusal the retry must wait ~1 s, beyond the 200 ms allowed.
    let client = fake.client();
    let e = client.balance().await.unwrap_err();
    assert!(matches!(e, ExchangeError::RateLimited(_)), "{e:?}");
    assert_eq!(fake.seen("Balance").len(), 1);
    assert!(client.rest_gate().value() > 19.0, "{}", client.rest_gate().value());
    let e = client.balance().await.unwrap_err();
    assert!(matches!(e, ExchangeError::RateLimited(_)), "{e:?}");
    assert_eq!(
        fake.seen("Balance").len(),
        1,
        "refused locally while the counter decays"
    );
}
