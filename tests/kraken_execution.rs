//! The execution manager on the Kraken adapter against a fake Kraken on 127.0.0.1 that verifies `API-Sign`,
//! refuses non-increasing nonces and keeps an order book: place → query → filled → stop and take-profit placed.

#[path = "common/kraken_wire.rs"]
mod kraken_wire;
use kraken_wire::{err, expected_signature, ok, parse_form, KEY, SECRET};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use triplegain::kraken::{KrakenClient, KrakenConfig, KrakenCredentials, KrakenExchange, Tier};
use triplegain_actors::bus::Topic;
use triplegain_actors::clock::SystemClock;
use triplegain_actors::domain::{CorrelationId, OrderStatus, OrderType, PositionStatus, Regime, Side, Symbol};
use triplegain_actors::execution::api::ExecuteTrade;
use triplegain_actors::execution::manager::{ExecutionConfig, IsReady, ManagerDeps, OrderExecutionManager, PollNow};
use triplegain_actors::messages::RiskAlert;
use triplegain_actors::risk::{ProposalSource, TradeProposal};
use triplegain_actors::supervision::{start_supervised, Registry, RestartPolicy};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

#[derive(Debug, Clone)]
struct BookOrder {
    txid: String,
    cl: String,
    side: String,
    ordertype: String,
    price: String,
    vol: String,
    status: String,
    vol_exec: String,
    avg: String,
    fee: String,
}

#[derive(Default)]
struct Book {
    last_nonce: u64,
    bad_requests: u32,
    orders: Vec<BookOrder>,
    calls: Vec<String>,
}

fn order_json(o: &BookOrder) -> Value {
    json!({
        "refid": null, "userref": 0, "cl_ord_id": o.cl, "status": o.status, "opentm": 1700000000.1234,
        "starttm": 0, "expiretm": 0,
        "descr": {"pair": "XBTUSDT", "type": o.side, "ordertype": o.ordertype, "price": o.price, "price2": "0",
                  "leverage": "none", "order": format!("{} {} XBTUSDT @ {}", o.side, o.vol, o.price), "close": ""},
        "vol": o.vol, "vol_exec": o.vol_exec, "cost": "0", "fee": o.fee, "price": o.avg,
        "stopprice": "0", "limitprice": "0", "misc": "", "oflags": "fciq"
    })
}

fn private(book: &Arc<Mutex<Book>>, req: &Request) -> ResponseTemplate {
    let p = req.url.path().to_owned();
    let name = p.trim_start_matches("/0/private/").to_owned();
    let f = parse_form(&String::from_utf8(req.body.clone()).unwrap());
    let header = |h: &str| {
        req.headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let nonce_text = f.get("nonce").cloned().unwrap_or_default();
    let nonce: u64 = nonce_text.parse().unwrap_or(0);
    let mut b = book.lock().unwrap();
    b.calls.push(name.clone());
    if header("API-Key") != KEY || header("API-Sign") != expected_signature(&p, &nonce_text, &req.body) {
        b.bad_requests += 1;
        return ResponseTemplate::new(200).set_body_json(err("EAPI:Invalid signature"));
    }
    if nonce <= b.last_nonce {
        b.bad_requests += 1;
        return ResponseTemplate::new(200).set_body_json(err("EAPI:Invalid nonce"));
    }
    b.last_nonce = nonce;
    let body = match name.as_str() {
        "AddOrder" => {
            let txid = format!("OTX-{}", b.orders.len() + 1);
            let cl = f.get("cl_ord_id").cloned().unwrap_or_default();
            if b.orders.iter().any(|o| o.cl == cl) {
                return ResponseTemplate::new(200).set_body_json(err("EOrder:Duplicate cl_ord_id"));
            }
            b.orders.push(BookOrder {
                txid: txid.clone(),
                cl,
                side: f.get("type").cloned().unwrap_or_default(),
                ordertype: f.get("ordertype").cloned().unwrap_or_default(),
                price: f.get("price").cloned().unwrap_or_default(),
                vol: f.get("volume").cloned().unwrap_or_default(),
                status: "open".into(),
                vol_exec: "0".into(),
                avg: "0".into(),
                fee: "0".into(),
            });
            ok(json!({"descr": {"order": "ok"}, "txid": [txid]}))
        }
        "OpenOrders" | "ClosedOrders" => {
            let want_open = name == "OpenOrders";
            let cl = f.get("cl_ord_id");
            let m: serde_json::Map<String, Value> = b
                .orders
                .iter()
                .filter(|o| (o.status == "open") == want_open)
                .filter(|o| cl.is_none_or(|c| &o.cl == c))
                .map(|o| (o.txid.clone(), order_json(o)))
                .collect();
            if want_open {
                ok(json!({ "open": m }))
            } else {
                ok(json!({ "closed": m, "count": m.len() }))
            }
        }
        "CancelOrder" => {
            let target = f
                .get("cl_ord_id")
                .or_else(|| f.get("txid"))
                .cloned()
                .unwrap_or_default();
            match b
                .orders
                .iter_mut()
                .find(|o| (o.cl == target || o.txid == target) && o.status == "open")
            {
                Some(o) => {
                    o.status = "canceled".into();
                    ok(json!({"count": 1}))
                }
                None => err("EOrder:Unknown order"),
            }
        }
        "Balance" => ok(json!({"USDT": "10000.0000", "XXBT": "0.0200000000"})),
        _ => err("EGeneral:Unknown method"),
    };
    ResponseTemplate::new(200).set_body_json(body)
}

fn asset_pairs() -> Value {
    json!({
        "XBTUSDT": {"altname": "XBTUSDT", "wsname": "XBT/USDT", "base": "XXBT", "quote": "USDT",
            "pair_decimals": 1, "lot_decimals": 8, "leverage_buy": [2, 3, 4, 5], "leverage_sell": [2, 3, 4, 5],
            "ordermin": "0.00005", "costmin": "0.5", "tick_size": "0.1", "status": "online"}
    })
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

#[actix::test]
async fn kraken_entry_fills_and_the_manager_places_stop_and_take_profit_for_the_fill() {
    let server = MockServer::start().await;
    let book = Arc::new(Mutex::new(Book::default()));
    let b2 = book.clone();
    Mock::given(method("POST"))
        .and(path_regex("^/0/private/[A-Za-z]+$"))
        .respond_with(move |req: &Request| private(&b2, req))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/0/public/AssetPairs"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ok(asset_pairs())))
        .mount(&server)
        .await;
    let config = KrakenConfig {
        base_url: server.uri(),
        timeout: Duration::from_secs(2),
        tier: Tier::Pro,
        max_rate_wait: Duration::from_secs(5),
        retry_backoff: Duration::from_millis(10),
        ..KrakenConfig::default()
    };
    let client = KrakenClient::new(config, Some(KrakenCredentials::new(KEY, SECRET))).unwrap();
    let btc = Symbol::parse("BTC/USDT").unwrap();
    let exchange = KrakenExchange::connect(client, std::slice::from_ref(&btc))
        .await
        .unwrap();

    let stores = triplegain::db::memory_stores();
    let alerts: Topic<RiskAlert> = Topic::new();
    let registry = Registry::new(RestartPolicy::default(), alerts.clone(), Arc::new(SystemClock));
    let deps = ManagerDeps {
        config: ExecutionConfig {
            poll_interval_ms: 100,
            ..ExecutionConfig::default()
        },
        exchange: Arc::new(exchange),
        paper: None,
        feed_paper: false,
        orders: stores.orders.clone(),
        state: stores.state.clone(),
        audit: stores.audit.clone(),
        events: Topic::new(),
        portfolio: Topic::new(),
        alerts,
        clock: Arc::new(SystemClock),
    };
    let addr = start_supervised(&registry, "execution_manager", true, 64, move |sup| {
        OrderExecutionManager::new(sup, deps)
    });
    for _ in 0..100 {
        if addr.send(IsReady).await.unwrap() {
            break;
        }
        actix::clock::sleep(Duration::from_millis(20)).await;
    }

    let proposal = TradeProposal {
        symbol: btc.clone(),
        side: Side::Buy,
        size_usd: dec("1000"),
        entry_price: dec("50000"),
        stop_loss: Some(dec("49000")),
        take_profit: Some(dec("52000")),
        leverage: 1,
        confidence: 0.8,
        regime: Regime::TrendingBull,
        source: ProposalSource::Manual,
        correlation_id: CorrelationId::new(),
        reduce_only: false,
    };
    let res = addr
        .send(ExecuteTrade {
            proposal,
            verdict: None,
            order_type: OrderType::Limit,
            limit_price: None,
            volume: None,
            note: None,
        })
        .await
        .unwrap()
        .unwrap();
    let entry = &res.orders[0];
    assert_eq!(entry.status, OrderStatus::Open);
    assert_eq!(entry.exchange_order_id.as_deref(), Some("OTX-1"));
    {
        let b = book.lock().unwrap();
        assert_eq!(b.orders.len(), 1);
        assert_eq!(b.orders[0].vol, "0.02");
        assert_eq!(b.orders[0].price, "50000");
        assert_eq!(b.orders[0].ordertype, "limit");
    }

    // Kraken fills the entry.
    {
        let mut b = book.lock().unwrap();
        let o = &mut b.orders[0];
        o.status = "closed".into();
        o.vol_exec = "0.02".into();
        o.avg = "49990.0".into();
        o.fee = "2.59948".into();
    }
    addr.do_send(PollNow);
    let mut protected = false;
    for _ in 0..150 {
        let b = book.lock().unwrap().orders.clone();
        let sl = b.iter().find(|o| o.ordertype == "stop-loss" && o.status == "open");
        let tp = b
            .iter()
            .find(|o| o.ordertype == "limit" && o.side == "sell" && o.status == "open");
        if let (Some(sl), Some(tp)) = (sl, tp) {
            assert_eq!(
                (sl.side.as_str(), sl.vol.as_str(), sl.price.as_str()),
                ("sell", "0.02", "49000")
            );
            assert_eq!((tp.vol.as_str(), tp.price.as_str()), ("0.02", "52000"));
            protected = true;
            break;
        }
        drop(b);
        actix::clock::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        protected,
        "stop and take-profit placed on Kraken: {:?}",
        book.lock().unwrap().orders
    );
    let positions = stores.orders.list_positions(None, None, 10).await.unwrap();
    assert_eq!(positions.len(), 1);
    assert_eq!(positions[0].status, PositionStatus::Open);
    assert_eq!(positions[0].entry_price, dec("49990"));
    assert_eq!(positions[0].fees, dec("2.59948"));

    // The take-profit fills on Kraken: the stop is cancelled there (one-cancels-other).
    {
        let mut b = book.lock().unwrap();
        let tp = b
            .orders
            .iter_mut()
            .find(|o| o.ordertype == "limit" && o.side == "sell")
            .unwrap();
        tp.status = "closed".into();
        tp.vol_exec = "0.02".into();
        tp.avg = "52000".into();
        tp.fee = "1.664".into();
    }
    addr.do_send(PollNow);
    let mut oco = false;
    for _ in 0..150 {
        if book
            .lock()
            .unwrap()
            .orders
            .iter()
            .any(|o| o.ordertype == "stop-loss" && o.status == "canceled")
        {
            oco = true;
            break;
        }
        actix::clock::sleep(Duration::from_millis(20)).await;
    }
    assert!(oco, "stop cancelled after the take-profit filled");
    let mut closed = None;
    for _ in 0..50 {
        let p = stores.orders.list_positions(None, None, 10).await.unwrap();
        if p[0].status == PositionStatus::Closed {
            closed = Some(p[0].clone());
            break;
        }
        actix::clock::sleep(Duration::from_millis(20)).await;
    }
    let closed = closed.expect("position closed");
    // (52000 − 49990) × 0.02 − 2.59948 − 1.664
    assert_eq!(closed.realized_pnl, dec("35.93652"));
    let b = book.lock().unwrap();
    assert_eq!(
        b.bad_requests, 0,
        "every private call carried a valid signature and a fresh nonce"
    );
    assert_eq!(
        b.orders.iter().filter(|o| o.side == "buy").count(),
        1,
        "one entry, never resubmitted"
    );
}
