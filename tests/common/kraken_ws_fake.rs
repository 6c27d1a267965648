//! A fake Kraken WebSocket API v2 on 127.0.0.1 sharing the order book of the REST fake
//! (`kraken_fake.rs`): an order placed or cancelled over either is visible over both, and every
//! change on the book (a fill the test makes, a cancel) is sent on `executions` as Kraken does —
//! only while a connection is up: what happens while it is down is never replayed, the next
//! snapshot has open orders only. It speaks the documented frames: `status`, `heartbeat` every
//! second, `subscribe` acks (the private `executions` only with the token REST
//! `GetWebSocketsToken` handed out), snapshots and sparse updates (`new`, `trade`, `filled`,
//! `canceled`), `add_order` / `cancel_order` replies, `ping` / `pong`, and public `ohlc` /
//! `ticker` updates pushed by the test. It can drop every socket on command and refuse new ones.
//! Scripted faults for `add_order` are read from the REST book's script under `ws:add_order`.
#![allow(dead_code, reason = "each test file uses its own subset")]

use super::kraken_fake::{Book, BookOrder, Fault};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// The token the REST fake's `GetWebSocketsToken` returns.
pub const WS_TOKEN: &str = "fake-ws-token-5f0c1d2e";

pub struct WsShared {
    book: Arc<Mutex<Book>>,
    /// New connections are refused (closed before the handshake) while set.
    pub refuse: AtomicBool,
    /// Executions subscriptions accepted so far (one per (re)connection).
    pub subscriptions: AtomicU32,
    pub connections: AtomicU32,
    /// Every frame a client sent, in order.
    pub frames: Mutex<Vec<Value>>,
    drop_all: tokio::sync::watch::Sender<u64>,
    public: tokio::sync::broadcast::Sender<(String, Value)>,
}

pub struct FakeKrakenWs {
    pub url: String,
    pub shared: Arc<WsShared>,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn num(s: &str) -> Value {
    s.parse::<f64>().map(|f| json!(f)).unwrap_or(json!(0.0))
}

fn status_of(o: &BookOrder) -> &'static str {
    match o.status.as_str() {
        "closed" => "filled",
        "canceled" => "canceled",
        "expired" => "expired",
        "pending" => "pending_new",
        _ if o.vol_exec.parse::<f64>().unwrap_or(0.0) > 0.0 => "partially_filled",
        _ => "new",
    }
}

/// A full description of the order (snapshot entries and `new`).
fn full_entry(o: &BookOrder, exec_type: &str) -> Value {
    let mut e = json!({
        "order_id": o.txid, "symbol": "BTC/USDT", "side": o.side, "order_type": o.ordertype,
        "order_qty": num(&o.vol), "cum_qty": num(&o.vol_exec), "avg_price": num(&o.avg),
        "order_status": status_of(o), "time_in_force": "GTC", "timestamp": now_rfc3339(),
        "fee_usd_equiv": num(&o.fee),
    });
    if !exec_type.is_empty() {
        e["exec_type"] = json!(exec_type);
    }
    if !o.cl.is_empty() {
        e["cl_ord_id"] = json!(o.cl);
    }
    match o.ordertype.as_str() {
        "limit" => e["limit_price"] = num(&o.price),
        "stop-loss" | "take-profit" => e["triggers"] = json!({"reference": "last", "price": num(&o.price)}),
        "stop-loss-limit" | "take-profit-limit" => {
            e["triggers"] = json!({"reference": "last", "price": num(&o.price)});
            e["limit_price"] = num(&o.price2);
        }
        _ => {}
    }
    e
}

/// The sparse updates that take `prev` (None: unseen) to `now`.
fn updates(prev: Option<&BookOrder>, now: &BookOrder) -> Vec<Value> {
    let mut out = Vec::new();
    let base = match prev {
        Some(p) => p.clone(),
        None => {
            out.push(full_entry(
                &BookOrder {
                    status: "open".into(),
                    vol_exec: "0".into(),
                    avg: "0".into(),
                    fee: "0".into(),
                    ..now.clone()
                },
                "new",
            ));
            BookOrder {
                status: "open".into(),
                vol_exec: "0".into(),
                avg: "0".into(),
                fee: "0".into(),
                ..now.clone()
            }
        }
    };
    let f = |s: &str| s.parse::<f64>().unwrap_or(0.0);
    let dq = f(&now.vol_exec) - f(&base.vol_exec);
    if dq > 1e-12 {
        out.push(json!({
            "order_id": now.txid, "exec_type": "trade", "exec_id": format!("{}-{}", now.txid, now.vol_exec),
            "trade_id": out.len() + 1, "symbol": "BTC/USDT", "side": now.side, "order_type": now.ordertype,
            "last_qty": dq, "last_price": num(&now.avg), "liquidity_ind": "t",
            "order_status": if now.status == "closed" { "filled" } else { "partially_filled" },
            "fees": [{"asset": "USDT", "qty": f(&now.fee) - f(&base.fee)}], "timestamp": now_rfc3339(),
        }));
    }
    if now.status != base.status {
        let exec_type = match now.status.as_str() {
            "closed" => "filled",
            "canceled" => "canceled",
            "expired" => "expired",
            _ => "status",
        };
        out.push(json!({
            "order_id": now.txid, "exec_type": exec_type, "order_status": status_of(now),
            "cum_qty": num(&now.vol_exec), "avg_price": num(&now.avg), "timestamp": now_rfc3339(),
        }));
    }
    out
}

fn reply(method: &str, req_id: &Value, result: Result<Value, String>) -> Value {
    let mut v = json!({"method": method, "req_id": req_id, "time_in": now_rfc3339(), "time_out": now_rfc3339()});
    match result {
        Ok(r) => {
            v["success"] = json!(true);
            v["result"] = r;
        }
        Err(e) => {
            v["success"] = json!(false);
            v["error"] = json!(e);
        }
    }
    v
}

impl FakeKrakenWs {
    /// Serves WebSocket v2 on a random port over the REST fake's `book`.
    pub async fn start(book: Arc<Mutex<Book>>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/v2", listener.local_addr().unwrap());
        let (drop_all, _) = tokio::sync::watch::channel(0u64);
        let (public, _) = tokio::sync::broadcast::channel(1024);
        let shared = Arc::new(WsShared {
            book,
            refuse: AtomicBool::new(false),
            subscriptions: AtomicU32::new(0),
            connections: AtomicU32::new(0),
            frames: Mutex::new(Vec::new()),
            drop_all,
            public,
        });
        let s2 = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if s2.refuse.load(Ordering::SeqCst) {
                    drop(stream);
                    continue;
                }
                tokio::spawn(connection(s2.clone(), stream));
            }
        });
        Self { url, shared }
    }

    /// Drops every open socket at once, without a close frame (a network fault).
    pub fn drop_sockets(&self) {
        self.shared.drop_all.send_modify(|g| *g += 1);
    }

    /// While `true`, new connections are refused.
    pub fn refuse_connections(&self, refuse: bool) {
        self.shared.refuse.store(refuse, Ordering::SeqCst);
    }

    pub fn subscriptions(&self) -> u32 {
        self.shared.subscriptions.load(Ordering::SeqCst)
    }

    /// The client frames with this `method`.
    pub fn frames_of(&self, method: &str) -> Vec<Value> {
        self.shared
            .frames
            .lock()
            .unwrap()
            .iter()
            .filter(|f| f["method"] == method)
            .cloned()
            .collect()
    }

    /// Sends an update on a public channel (`ohlc`, `ticker`) to its subscribers.
    pub fn push_public(&self, channel: &str, data: Value) {
        let _ = self.shared.public.send((channel.to_owned(), data));
    }
}

async fn connection(st: Arc<WsShared>, stream: tokio::net::TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    st.connections.fetch_add(1, Ordering::SeqCst);
    let (mut tx, mut rx) = ws.split();
    let mut dropper = st.drop_all.subscribe();
    dropper.borrow_and_update();
    let mut public_rx = st.public.subscribe();
    let mut public_subs: Vec<String> = Vec::new();
    // Orders as last sent on `executions` (set by the subscription).
    let mut seen: Option<HashMap<String, BookOrder>> = None;
    let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
    let mut diff = tokio::time::interval(Duration::from_millis(20));
    // Replies held back by a scripted delay: (due, frame).
    let mut delayed: Vec<(tokio::time::Instant, Value)> = Vec::new();
    let status = json!({"channel": "status", "type": "update", "data": [{"api_version": "v2",
        "connection_id": 1, "system": "online", "version": "2.0.10"}]});
    if tx.send(Message::text(status.to_string())).await.is_err() {
        return;
    }
    loop {
        let mut out: Vec<Value> = Vec::new();
        tokio::select! {
            _ = dropper.changed() => return,
            m = rx.next() => {
                let text = match m {
                    Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                st.frames.lock().unwrap().push(v.clone());
                handle(&st, &v, &mut seen, &mut public_subs, &mut out, &mut delayed);
            }
            _ = heartbeat.tick() => out.push(json!({"channel": "heartbeat"})),
            _ = diff.tick() => {
                let now = tokio::time::Instant::now();
                delayed.retain(|(due, f)| {
                    if *due <= now { out.push(f.clone()); false } else { true }
                });
                if let Some(seen) = seen.as_mut() {
                    let book = st.book.lock().unwrap();
                    let mut data = Vec::new();
                    for o in &book.orders {
                        let ups = updates(seen.get(&o.txid), o);
                        if !ups.is_empty() {
                            data.extend(ups);
                            seen.insert(o.txid.clone(), o.clone());
                        }
                    }
                    if !data.is_empty() {
                        out.push(json!({"channel": "executions", "type": "update", "data": data, "sequence": 2}));
                    }
                }
            }
            p = public_rx.recv() => {
                if let Ok((channel, data)) = p {
                    if public_subs.contains(&channel) {
                        out.push(json!({"channel": channel, "type": "update", "data": data}));
                    }
                }
            }
        }
        for f in out {
            if tx.send(Message::text(f.to_string())).await.is_err() {
                return;
            }
        }
    }
}

fn handle(
    st: &WsShared,
    v: &Value,
    seen: &mut Option<HashMap<String, BookOrder>>,
    public_subs: &mut Vec<String>,
    out: &mut Vec<Value>,
    delayed: &mut Vec<(tokio::time::Instant, Value)>,
) {
    let method = v["method"].as_str().unwrap_or_default();
    let req_id = v.get("req_id").cloned().unwrap_or(Value::Null);
    let p = &v["params"];
    let token_ok = p["token"] == WS_TOKEN;
    match method {
        "ping" => {
            out.push(json!({"method": "pong", "req_id": req_id, "time_in": now_rfc3339(), "time_out": now_rfc3339()}))
        }
        "subscribe" => {
            let channel = p["channel"].as_str().unwrap_or_default().to_owned();
            if channel == "executions" {
                if !token_ok {
                    out.push(reply("subscribe", &req_id, Err("EAccount:Invalid token".into())));
                    return;
                }
                st.subscriptions.fetch_add(1, Ordering::SeqCst);
                out.push(reply(
                    "subscribe",
                    &req_id,
                    Ok(json!({"channel": "executions", "snapshot": true})),
                ));
                let book = st.book.lock().unwrap();
                let data: Vec<Value> = book
                    .orders
                    .iter()
                    .filter(|o| o.status == "open")
                    .map(|o| full_entry(o, ""))
                    .collect();
                *seen = Some(book.orders.iter().map(|o| (o.txid.clone(), o.clone())).collect());
                out.push(json!({"channel": "executions", "type": "snapshot", "data": data, "sequence": 1}));
            } else if channel == "ohlc" || channel == "ticker" {
                public_subs.push(channel.clone());
                out.push(reply(
                    "subscribe",
                    &req_id,
                    Ok(json!({"channel": channel, "symbol": p["symbol"][0]})),
                ));
            } else {
                out.push(reply(
                    "subscribe",
                    &req_id,
                    Err(format!("EGeneral:Invalid arguments:channel {channel}")),
                ));
            }
        }
        "add_order" => {
            if !token_ok {
                out.push(reply(method, &req_id, Err("EAccount:Invalid token".into())));
                return;
            }
            let mut b = st.book.lock().unwrap();
            let fault = b.script.get_mut("ws:add_order").and_then(|q| q.pop_front());
            if let Some(Fault::Error(e)) = &fault {
                out.push(reply(method, &req_id, Err(e.clone())));
                return;
            }
            let cl = p["cl_ord_id"].as_str().unwrap_or_default().to_owned();
            if !cl.is_empty() && b.orders.iter().any(|o| o.cl == cl) {
                out.push(reply(method, &req_id, Err("EOrder:Duplicate cl_ord_id".into())));
                return;
            }
            let txt = |x: &Value| match x {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                _ => String::new(),
            };
            let ordertype = p["order_type"].as_str().unwrap_or_default().to_owned();
            let (price, price2) = match ordertype.as_str() {
                "limit" => (txt(&p["limit_price"]), "0".to_owned()),
                "stop-loss" | "take-profit" => (txt(&p["triggers"]["price"]), "0".to_owned()),
                "stop-loss-limit" | "take-profit-limit" => (txt(&p["triggers"]["price"]), txt(&p["limit_price"])),
                _ => ("0".to_owned(), "0".to_owned()),
            };
            let txid = format!("OTX-{}", b.orders.len() + 1);
            let delay = b.next_visibility.pop_front().unwrap_or(b.visibility_delay);
            let visible_at = std::time::Instant::now() + delay;
            b.orders.push(BookOrder {
                txid: txid.clone(),
                cl: cl.clone(),
                side: p["side"].as_str().unwrap_or_default().to_owned(),
                ordertype,
                price,
                price2,
                vol: txt(&p["order_qty"]),
                status: "open".into(),
                vol_exec: "0".into(),
                avg: "0".into(),
                fee: "0".into(),
                visible_at,
            });
            let ok = reply(method, &req_id, Ok(json!({"order_id": txid, "cl_ord_id": cl})));
            match fault {
                Some(Fault::PlaceThenError(e)) => out.push(reply(method, &req_id, Err(e))),
                Some(Fault::PlaceThenDelay(d)) => delayed.push((tokio::time::Instant::now() + d, ok)),
                _ => out.push(ok),
            }
        }
        "cancel_order" => {
            if !token_ok {
                out.push(reply(method, &req_id, Err("EAccount:Invalid token".into())));
                return;
            }
            let ids: Vec<String> = ["order_id", "cl_ord_id"]
                .iter()
                .filter_map(|k| p[*k].as_array())
                .flatten()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect();
            let mut b = st.book.lock().unwrap();
            match b
                .orders
                .iter_mut()
                .find(|o| (ids.contains(&o.txid) || ids.contains(&o.cl)) && o.status == "open")
            {
                Some(o) => {
                    o.status = "canceled".into();
                    out.push(reply(method, &req_id, Ok(json!({"order_id": o.txid}))));
                }
                None => out.push(reply(method, &req_id, Err("EOrder:Unknown order".into()))),
            }
        }
        _ => out.push(reply(method, &req_id, Err(format!("EGeneral:Unknown method {method}")))),
    }
}
