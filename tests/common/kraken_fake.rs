//! A fake Kraken on 127.0.0.1 with an order book: verifies `API-Sign`, refuses non-increasing
//! nonces, keeps Kraken's per-key REST counter for the tier (answering `EAPI:Rate limit exceeded`
//! and counting a violation when a client overruns it), logs every private call with its time,
//! nonce and signature, and plays scripted faults per method. As on Kraken, a new order can
//! become visible late (OpenOrders, ClosedOrders, QueryOrders and CancelOrder do not see it
//! before its `visible_at`; the delay is set per order), an AddOrder or CancelOrder can take
//! effect although its reply is an error, and the engine can fill an order while it is invisible.
#![allow(dead_code, reason = "each test file uses its own subset")]

use super::kraken_wire::{err, expected_signature, ok, parse_form, KEY};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

#[derive(Debug, Clone)]
pub struct BookOrder {
    pub txid: String,
    pub cl: String,
    pub side: String,
    pub ordertype: String,
    pub price: String,
    pub price2: String,
    pub vol: String,
    pub status: String,
    pub vol_exec: String,
    pub avg: String,
    pub fee: String,
    /// Before this the order exists in the engine but no query shows it.
    pub visible_at: Instant,
}

impl BookOrder {
    pub fn visible(&self, now: Instant) -> bool {
        now >= self.visible_at
    }
}

/// A scripted answer to the next call of a method.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this Kraken error; nothing happens on the book.
    Error(String),
    /// The order reaches the book (AddOrder) or is cancelled (CancelOrder), but the answer is
    /// this Kraken error.
    PlaceThenError(String),
    /// The order reaches the book, but the answer comes only after this delay.
    PlaceThenDelay(Duration),
    /// Nothing happens; an `EService:Unavailable` answer comes only after this delay (a request
    /// still on its way when the client dies).
    Hang(Duration),
}

#[derive(Debug, Clone)]
pub struct Call {
    pub at: Instant,
    pub method: String,
    pub nonce: u64,
    pub signature: String,
    pub form: HashMap<String, String>,
}

pub struct Book {
    pub last_nonce: u64,
    pub bad_requests: u32,
    pub orders: Vec<BookOrder>,
    pub calls: Vec<Call>,
    /// Keyed by method, or `AddOrder:<ordertype>` for placements of one order type.
    pub script: HashMap<String, VecDeque<Fault>>,
    /// Kraken's REST counter for the key (tier maximum and decay per second).
    pub rest_max: f64,
    pub rest_decay: f64,
    rest_value: f64,
    rest_at: Option<Instant>,
    pub rate_violations: u32,
    /// Visibility delays of the next placed orders, in order; then `visibility_delay`.
    pub next_visibility: VecDeque<Duration>,
    pub visibility_delay: Duration,
}

impl Book {
    fn new(rest_max: f64, rest_decay: f64) -> Self {
        Self {
            last_nonce: 0,
            bad_requests: 0,
            orders: Vec::new(),
            calls: Vec::new(),
            script: HashMap::new(),
            rest_max,
            rest_decay,
            rest_value: 0.0,
            rest_at: None,
            rate_violations: 0,
            next_visibility: VecDeque::new(),
            visibility_delay: Duration::ZERO,
        }
    }

    pub fn calls_of(&self, m: &str) -> Vec<Call> {
        self.calls.iter().filter(|c| c.method == m).cloned().collect()
    }

    /// Most calls (all, and order calls) seen in any window of `window`.
    pub fn max_in_window(&self, window: Duration) -> (usize, usize) {
        let mut max_all = 0;
        let mut max_orders = 0;
        for (i, c) in self.calls.iter().enumerate() {
            let inside: Vec<&Call> = self.calls[i..]
                .iter()
                .filter(|d| d.at.duration_since(c.at) < window)
                .collect();
            max_all = max_all.max(inside.len());
            max_orders = max_orders.max(inside.iter().filter(|d| is_order_call(&d.method)).count());
        }
        (max_all, max_orders)
    }

    fn charge_rest(&mut self, method: &str, now: Instant) -> bool {
        let cost = match method {
            m if is_order_call(m) => 0.0,
            "ClosedOrders" | "TradesHistory" | "Ledgers" => 2.0,
            _ => 1.0,
        };
        if let Some(at) = self.rest_at {
            self.rest_value = (self.rest_value - now.duration_since(at).as_secs_f64() * self.rest_decay).max(0.0);
        }
        self.rest_at = Some(now);
        // Half a call of slack: the client charges its counter just before sending, we see the
        // call a moment later and have decayed a little less.
        if self.rest_value + cost > self.rest_max + 0.5 {
            self.rate_violations += 1;
            return false;
        }
        self.rest_value += cost;
        true
    }
}

pub fn is_order_call(m: &str) -> bool {
    matches!(m, "AddOrder" | "CancelOrder" | "EditOrder" | "AmendOrder" | "CancelAll")
}

pub fn order_json(o: &BookOrder) -> Value {
    json!({
        "refid": null, "userref": 0, "cl_ord_id": o.cl, "status": o.status, "opentm": 1700000000.1234,
        "starttm": 0, "expiretm": 0,
        "descr": {"pair": "XBTUSDT", "type": o.side, "ordertype": o.ordertype, "price": o.price, "price2": o.price2,
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
    let now = Instant::now();
    let mut b = book.lock().unwrap();
    b.calls.push(Call {
        at: now,
        method: name.clone(),
        nonce,
        signature: header("API-Sign"),
        form: f.clone(),
    });
    if header("API-Key") != KEY || header("API-Sign") != expected_signature(&p, &nonce_text, &req.body) {
        b.bad_requests += 1;
        return ResponseTemplate::new(200).set_body_json(err("EAPI:Invalid signature"));
    }
    if nonce <= b.last_nonce {
        b.bad_requests += 1;
        return ResponseTemplate::new(200).set_body_json(err("EAPI:Invalid nonce"));
    }
    b.last_nonce = nonce;
    if !b.charge_rest(&name, now) {
        return ResponseTemplate::new(200).set_body_json(err("EAPI:Rate limit exceeded"));
    }
    let scripted_key = format!("{name}:{}", f.get("ordertype").cloned().unwrap_or_default());
    let fault = [scripted_key, name.clone()]
        .iter()
        .find_map(|k| b.script.get_mut(k).and_then(VecDeque::pop_front));
    if let Some(Fault::Error(e)) = &fault {
        return ResponseTemplate::new(200).set_body_json(err(e));
    }
    if let Some(Fault::Hang(d)) = &fault {
        return ResponseTemplate::new(200)
            .set_body_json(err("EService:Unavailable"))
            .set_delay(*d);
    }
    let body = match name.as_str() {
        "AddOrder" => {
            let txid = format!("OTX-{}", b.orders.len() + 1);
            let cl = f.get("cl_ord_id").cloned().unwrap_or_default();
            if b.orders.iter().any(|o| o.cl == cl) {
                return ResponseTemplate::new(200).set_body_json(err("EOrder:Duplicate cl_ord_id"));
            }
            let g = |k: &str| f.get(k).cloned().unwrap_or_default();
            let delay = b.next_visibility.pop_front().unwrap_or(b.visibility_delay);
            b.orders.push(BookOrder {
                txid: txid.clone(),
                cl,
                side: g("type"),
                ordertype: g("ordertype"),
                price: g("price"),
                price2: f.get("price2").cloned().unwrap_or_else(|| "0".into()),
                vol: g("volume"),
                status: "open".into(),
                vol_exec: "0".into(),
                avg: "0".into(),
                fee: "0".into(),
                visible_at: now + delay,
            });
            match fault {
                Some(Fault::PlaceThenError(e)) => return ResponseTemplate::new(200).set_body_json(err(&e)),
                Some(Fault::PlaceThenDelay(d)) => {
                    return ResponseTemplate::new(200)
                        .set_body_json(ok(json!({"descr": {"order": "late"}, "txid": [txid]})))
                        .set_delay(d)
                }
                _ => {}
            }
            ok(json!({"descr": {"order": "ok"}, "txid": [txid]}))
        }
        "OpenOrders" | "ClosedOrders" => {
            let want_open = name == "OpenOrders";
            let cl = f.get("cl_ord_id");
            let m: serde_json::Map<String, Value> = b
                .orders
                .iter()
                .filter(|o| o.visible(now))
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
        "QueryOrders" => {
            let ids: Vec<String> = f
                .get("txid")
                .map(|t| t.split(',').map(str::to_owned).collect())
                .unwrap_or_default();
            let m: serde_json::Map<String, Value> = b
                .orders
                .iter()
                .filter(|o| o.visible(now) && ids.contains(&o.txid))
                .map(|o| (o.txid.clone(), order_json(o)))
                .collect();
            if m.is_empty() {
                err("EOrder:Invalid order")
            } else {
                ok(Value::Object(m))
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
                .find(|o| (o.cl == target || o.txid == target) && o.status == "open" && o.visible(now))
            {
                Some(o) => {
                    o.status = "canceled".into();
                    if let Some(Fault::PlaceThenError(e)) = &fault {
                        return ResponseTemplate::new(200).set_body_json(err(e));
                    }
                    ok(json!({"count": 1}))
                }
                None => err("EOrder:Unknown order"),
            }
        }
        "CancelAllOrdersAfter" => ok(json!({"currentTime": "2026-01-01T00:00:00Z", "triggerTime": "0"})),
        "Balance" => ok(json!({"USDT": "10000.0000", "XXBT": "0.0200000000"})),
        // The token the WebSocket fake (`kraken_ws_fake.rs`) accepts.
        "GetWebSocketsToken" => ok(json!({"token": "fake-ws-token-5f0c1d2e", "expires": 900})),
        _ => err("EGeneral:Unknown method"),
    };
    ResponseTemplate::new(200).set_body_json(body)
}

pub fn asset_pairs() -> Value {
    json!({
        "XBTUSDT": {"altname": "XBTUSDT", "wsname": "XBT/USDT", "base": "XXBT", "quote": "USDT",
            "pair_decimals": 1, "lot_decimals": 8, "leverage_buy": [2, 3, 4, 5], "leverage_sell": [2, 3, 4, 5],
            "ordermin": "0.00005", "costmin": "0.5", "tick_size": "0.1", "status": "online"},
        "XRPUSDT": {"altname": "XRPUSDT", "wsname": "XRP/USDT", "base": "XXRP", "quote": "USDT",
            "pair_decimals": 5, "lot_decimals": 8, "leverage_buy": [2, 3, 4, 5], "leverage_sell": [2, 3, 4, 5],
            "ordermin": "10", "costmin": "0.5", "tick_size": "0.00001", "status": "online"},
        "XXRPXXBT": {"altname": "XRPXBT", "wsname": "XRP/XBT", "base": "XXRP", "quote": "XXBT",
            "pair_decimals": 8, "lot_decimals": 8, "leverage_buy": [2, 3, 4, 5], "leverage_sell": [2, 3, 4, 5],
            "ordermin": "10", "costmin": "0.00002", "tick_size": "0.00000001", "status": "online"}
    })
}

/// A running fake Kraken and its book.
pub struct FakeKraken {
    pub server: MockServer,
    pub book: Arc<Mutex<Book>>,
}

impl FakeKraken {
    /// A fake whose REST counter follows the Pro tier (20, −1/s).
    pub async fn start() -> Self {
        Self::start_with_counter(20.0, 1.0).await
    }

    pub async fn start_with_counter(rest_max: f64, rest_decay: f64) -> Self {
        let server = MockServer::start().await;
        let book = Arc::new(Mutex::new(Book::new(rest_max, rest_decay)));
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
        Self { server, book }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    pub fn script(&self, key: &str, faults: impl IntoIterator<Item = Fault>) {
        self.book
            .lock()
            .unwrap()
            .script
            .entry(key.to_owned())
            .or_default()
            .extend(faults);
    }

    /// The next placed orders become visible after these delays (one per order).
    pub fn delay_visibility(&self, delays: impl IntoIterator<Item = Duration>) {
        self.book.lock().unwrap().next_visibility.extend(delays);
    }

    pub fn orders(&self) -> Vec<BookOrder> {
        self.book.lock().unwrap().orders.clone()
    }

    pub fn calls_of(&self, m: &str) -> Vec<Call> {
        self.book.lock().unwrap().calls_of(m)
    }

    /// Applies `f` to the first order matching `pred`.
    pub fn update(&self, pred: impl Fn(&BookOrder) -> bool, f: impl FnOnce(&mut BookOrder)) {
        let mut b = self.book.lock().unwrap();
        let o = b.orders.iter_mut().find(|o| pred(o)).expect("order on the fake book");
        f(o);
    }

    /// Every private call was signed correctly with a fresh nonce, no counter was overrun, and no
    /// window of a minute saw more than 60 private calls or 30 order calls.
    pub fn assert_clean(&self) {
        let b = self.book.lock().unwrap();
        assert_eq!(b.bad_requests, 0, "every private call signed with a fresh nonce");
        assert_eq!(b.rate_violations, 0, "the tier's REST counter was never overrun");
        let (all, orders) = b.max_in_window(Duration::from_secs(60));
        assert!(all <= 60, "{all} private calls within a minute");
        assert!(orders <= 30, "{orders} order calls within a minute");
    }
}
