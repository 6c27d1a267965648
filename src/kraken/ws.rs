//! Kraken WebSocket API v2, private side: the `executions` channel (token from REST
//! `GetWebSocketsToken`) keeps an order-state cache, `add_order` / `cancel_order` go over the
//! socket with REST as the fallback, heartbeats and pings watch the connection, and every
//! reconnect resubscribes and reconciles the gap over REST before the cache is trusted again.
//!
//! [`KrakenLive`] is the [`Exchange`] port on top: it answers `query_orders` / `open_orders` from
//! the cache while the socket is up and synced (REST only as a slow safety net, every
//! `rest_every`, and whenever the socket is down), and [`KrakenWs::updates`] wakes whoever
//! tracks orders (the execution manager, through `PollNow`) when an execution arrives.

use super::assets::{format_decimal, parse_decimal};
use super::client::AddOrderParams;
use super::exchange::{client_order_id_from_kraken, kraken_cl_ord_id, KrakenExchange, PairRegistry};
use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_tungstenite::tungstenite::Message;
use triplegain_actors::domain::{OrderStatus, OrderType, Side};
use triplegain_actors::ports::{Exchange, ExchangeOrder, OrderRef};

mod live;
pub use live::KrakenLive;

/// Kraken's private WebSocket v2 endpoint.
pub const DEFAULT_PRIVATE_WS_URL: &str = "wss://ws-auth.kraken.com/v2";
/// Kraken's public WebSocket v2 endpoint.
pub const DEFAULT_PUBLIC_WS_URL: &str = "wss://ws.kraken.com/v2";

/// Settings of the private socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsConfig {
    pub private_url: String,
    /// How long a method call (`add_order`, `cancel_order`) waits for its reply; past it the
    /// outcome is unknown (the order is looked up by client id, as after an ambiguous REST reply).
    pub reply_timeout: Duration,
    /// No frame at all (Kraken sends a heartbeat every second) for this long: reconnect.
    pub heartbeat_timeout: Duration,
    /// Interval of our own `ping`.
    pub ping_every: Duration,
    /// First and largest wait between reconnect attempts (doubling).
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// REST safety net: the cache answers only while its last REST verification is younger.
    pub rest_every: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// With the socket synced, balances are read over REST at most this often, and again after
    /// every execution update (fills are what move them).
    pub balance_every: Duration,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            private_url: DEFAULT_PRIVATE_WS_URL.to_owned(),
            reply_timeout: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(10),
            ping_every: Duration::from_secs(15),
            reconnect_min: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            rest_every: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            balance_every: Duration::from_secs(300),
        }
    }
}

// ---------------------------------------------------------------- order cache

/// One order as the `executions` channel described it (entries are sparse: fields merge).
#[derive(Debug, Clone, PartialEq)]
struct CachedOrder {
    order_id: String,
    cl_ord_id: Option<String>,
    symbol: Option<String>,
    side: Option<Side>,
    order_type: Option<OrderType>,
    order_qty: Option<Decimal>,
    limit_price: Option<Decimal>,
    status: OrderStatus,
    cum_qty: Decimal,
    cum_cost: Decimal,
    avg_price: Option<Decimal>,
    fee: Decimal,
    exec_ids: HashSet<String>,
    opened_at: Option<DateTime<Utc>>,
    closed_at: Option<DateTime<Utc>>,
    reason: Option<String>,
    /// Missing from a snapshot after a reconnect while we thought it open: only REST may say.
    stale: bool,
}

fn rank(s: OrderStatus) -> u8 {
    match s {
        OrderStatus::Pending => 0,
        OrderStatus::Open => 1,
        OrderStatus::PartiallyFilled => 2,
        _ => 3,
    }
}

fn ws_status(s: &str) -> Option<OrderStatus> {
    Some(match s {
        "pending_new" => OrderStatus::Pending,
        "new" => OrderStatus::Open,
        "partially_filled" => OrderStatus::PartiallyFilled,
        "filled" => OrderStatus::Filled,
        "canceled" | "cancelled" => OrderStatus::Cancelled,
        "expired" => OrderStatus::Expired,
        _ => return None,
    })
}

fn dec_field(v: &Value, k: &str) -> Option<Decimal> {
    v.get(k).and_then(parse_decimal)
}

fn time_field(v: &Value, k: &str) -> Option<DateTime<Utc>> {
    v.get(k)
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

impl CachedOrder {
    fn new(order_id: &str) -> Self {
        Self {
            order_id: order_id.to_owned(),
            cl_ord_id: None,
            symbol: None,
            side: None,
            order_type: None,
            order_qty: None,
            limit_price: None,
            status: OrderStatus::Pending,
            cum_qty: Decimal::ZERO,
            cum_cost: Decimal::ZERO,
            avg_price: None,
            fee: Decimal::ZERO,
            exec_ids: HashSet::new(),
            opened_at: None,
            closed_at: None,
            reason: None,
            stale: false,
        }
    }

    /// Merges one `executions` entry. Fill quantities only grow; the status never goes back.
    fn merge(&mut self, e: &Value) {
        let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_owned);
        if let Some(c) = s("cl_ord_id") {
            self.cl_ord_id = Some(c);
        }
        if let Some(sym) = s("symbol") {
            self.symbol = Some(sym);
        }
        if let Some(side) = s("side").and_then(|x| Side::parse(&x).ok()) {
            self.side = Some(side);
        }
        if let Some(t) = s("order_type").and_then(|x| OrderType::parse(&x).ok()) {
            self.order_type = Some(t);
        }
        if let Some(q) = dec_field(e, "order_qty") {
            self.order_qty = Some(q);
        }
        if let Some(p) = dec_field(e, "limit_price") {
            self.limit_price = Some(p);
        }
        let exec_type = s("exec_type").unwrap_or_default();
        if exec_type == "trade" {
            let fresh = s("exec_id").is_none_or(|id| self.exec_ids.insert(id));
            if fresh {
                if let Some(fees) = e.get("fees").and_then(Value::as_array) {
                    self.fee += fees.iter().filter_map(|f| dec_field(f, "qty")).sum::<Decimal>();
                }
                if dec_field(e, "cum_qty").is_none() {
                    let q = dec_field(e, "last_qty").unwrap_or(Decimal::ZERO);
                    let p = dec_field(e, "last_price").unwrap_or(Decimal::ZERO);
                    self.cum_qty += q;
                    self.cum_cost += q * p;
                }
            }
        }
        if let Some(q) = dec_field(e, "cum_qty") {
            self.cum_qty = self.cum_qty.max(q);
        }
        if let Some(c) = dec_field(e, "cum_cost") {
            self.cum_cost = self.cum_cost.max(c);
        }
        if let Some(p) = dec_field(e, "avg_price").filter(|p| *p > Decimal::ZERO) {
            self.avg_price = Some(p);
        }
        if let Some(st) = s("order_status").as_deref().and_then(ws_status) {
            if rank(st) >= rank(self.status) {
                self.status = st;
            }
        }
        let ts = time_field(e, "timestamp");
        if exec_type == "new" || exec_type == "pending_new" {
            self.opened_at = self.opened_at.or(ts);
        }
        if self.status.is_terminal() {
            self.closed_at = self.closed_at.or(ts);
        }
        if let Some(r) = s("cancel_reason").or_else(|| s("reason")) {
            self.reason = Some(r);
        }
        self.stale = false;
    }

    /// Takes REST's view when it is at least as far along as ours.
    fn absorb(&mut self, o: &ExchangeOrder) {
        if rank(o.status) >= rank(self.status) || o.filled_volume > self.cum_qty {
            self.status = o.status;
        }
        if o.filled_volume >= self.cum_qty {
            self.cum_qty = o.filled_volume;
            self.avg_price = o.avg_fill_price.or(self.avg_price);
            if let Some(p) = o.avg_fill_price {
                self.cum_cost = p * o.filled_volume;
            }
            self.fee = self.fee.max(o.fee);
        }
        self.symbol = Some(o.symbol.to_string());
        self.side = Some(o.side);
        self.order_type = Some(o.order_type);
        self.order_qty = Some(o.volume);
        self.limit_price = self.limit_price.or(o.price);
        if let Some(c) = &o.client_order_id {
            if self.cl_ord_id.is_none() {
                self.cl_ord_id = kraken_cl_ord_id(c).ok();
            }
        }
        self.opened_at = self.opened_at.or(o.opened_at);
        self.closed_at = self.closed_at.or(o.closed_at);
        self.reason = self.reason.clone().or_else(|| o.reason.clone());
        self.stale = false;
    }

    /// Our view, when the channel told us enough about the order (and it is not stale).
    fn to_exchange(&self, registry: &PairRegistry) -> Option<ExchangeOrder> {
        if self.stale {
            return None;
        }
        let symbol = registry.symbol_for(self.symbol.as_deref()?)?.clone();
        let avg = self.avg_price.or_else(|| {
            (self.cum_qty > Decimal::ZERO && self.cum_cost > Decimal::ZERO).then(|| self.cum_cost / self.cum_qty)
        });
        let status = match self.status {
            OrderStatus::Open if self.cum_qty > Decimal::ZERO => OrderStatus::PartiallyFilled,
            s => s,
        };
        Some(ExchangeOrder {
            exchange_order_id: self.order_id.clone(),
            client_order_id: self.cl_ord_id.as_deref().and_then(client_order_id_from_kraken),
            symbol,
            side: self.side?,
            order_type: self.order_type?,
            status,
            volume: self.order_qty?,
            filled_volume: self.cum_qty,
            avg_fill_price: avg.filter(|_| self.cum_qty > Decimal::ZERO),
            fee: self.fee,
            price: self.limit_price.filter(|p| *p > Decimal::ZERO),
            opened_at: self.opened_at,
            closed_at: self.closed_at,
            reason: self.reason.clone(),
        })
    }
}

#[derive(Debug, Default)]
struct Cache {
    orders: HashMap<String, CachedOrder>,
    /// Kraken `cl_ord_id` → order id.
    by_cl: HashMap<String, String>,
    /// Subscribed, snapshot applied and the gap since the last connection reconciled over REST.
    synced: bool,
    /// Last REST verification of the cache.
    last_rest: Option<Instant>,
    /// When the previous connection went down (the start of the gap to reconcile).
    down_since: Option<DateTime<Utc>>,
    /// Balances last read over REST, and when; cleared by every execution update.
    balances: Option<(Instant, BTreeMap<String, Decimal>)>,
}

impl Cache {
    fn apply(&mut self, e: &Value) -> bool {
        let Some(id) = e.get("order_id").and_then(Value::as_str) else {
            return false;
        };
        let o = self.orders.entry(id.to_owned()).or_insert_with(|| CachedOrder::new(id));
        o.merge(e);
        if let Some(c) = &o.cl_ord_id {
            self.by_cl.insert(c.clone(), id.to_owned());
        }
        true
    }

    fn absorb(&mut self, o: &ExchangeOrder) {
        let entry = self
            .orders
            .entry(o.exchange_order_id.clone())
            .or_insert_with(|| CachedOrder::new(&o.exchange_order_id));
        entry.absorb(o);
        if let Some(c) = &entry.cl_ord_id {
            self.by_cl.insert(c.clone(), o.exchange_order_id.clone());
        }
    }

    fn lookup(&self, r: &OrderRef) -> Option<&CachedOrder> {
        match r {
            OrderRef::Exchange(x) => self.orders.get(x),
            OrderRef::Client(c) => {
                let cl = kraken_cl_ord_id(c).ok()?;
                self.by_cl.get(&cl).and_then(|id| self.orders.get(id))
            }
        }
    }

    /// Drops final orders nobody asked about for a while (keeps the cache small).
    fn prune(&mut self) {
        if self.orders.len() < 2_000 {
            return;
        }
        let cutoff = Utc::now() - chrono::Duration::hours(6);
        self.orders
            .retain(|_, o| !o.status.is_terminal() || o.closed_at.is_none_or(|t| t > cutoff));
        let orders = &self.orders;
        self.by_cl.retain(|_, id| orders.contains_key(id));
    }
}

// ---------------------------------------------------------------- the socket

/// Counters of the private socket (for metrics, logs and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WsStats {
    pub connects: u64,
    pub execution_messages: u64,
    pub gap_reconciliations: u64,
    pub orders_over_ws: u64,
    pub cancels_over_ws: u64,
}

struct Shared {
    config: WsConfig,
    rest: KrakenExchange,
    cache: Mutex<Cache>,
    /// Frames to the current connection; `None` while down.
    out: Mutex<Option<mpsc::UnboundedSender<String>>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Value>>>,
    /// The socket token and when REST handed it out (reused for reconnects within 10 minutes:
    /// Kraken accepts it for 15 minutes to connect).
    token: Mutex<Option<(String, Instant)>>,
    req_id: AtomicU64,
    up: AtomicBool,
    stopping: AtomicBool,
    updates: Arc<Notify>,
    stats: Mutex<WsStats>,
}

/// The private WebSocket v2 session. Cheap to clone; the connection task runs until
/// [`KrakenWs::stop`].
#[derive(Clone)]
pub struct KrakenWs {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for KrakenWs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KrakenWs")
            .field("url", &self.shared.config.private_url)
            .field("up", &self.is_up())
            .finish()
    }
}

/// Why a method call over the socket did not give an answer.
#[derive(Debug)]
enum CallFailure {
    /// The frame never left: REST may be used instead.
    NotSent,
    /// The frame left but no reply came: the outcome is unknown.
    NoReply(String),
}

impl KrakenWs {
    /// Starts the connection task (inside a tokio runtime, actix-rt included).
    pub fn spawn(rest: KrakenExchange, config: WsConfig) -> Self {
        let shared = Arc::new(Shared {
            config,
            rest,
            cache: Mutex::new(Cache::default()),
            out: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            token: Mutex::new(None),
            req_id: AtomicU64::new(1),
            up: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            updates: Arc::new(Notify::new()),
            stats: Mutex::new(WsStats::default()),
        });
        tokio::spawn(run(shared.clone()));
        Self { shared }
    }

    /// Connected and subscribed to `executions`.
    pub fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::SeqCst)
    }

    /// Up, snapshot applied and the gap reconciled: the cache may answer.
    pub fn is_synced(&self) -> bool {
        self.is_up() && self.shared.cache.lock().synced
    }

    /// Notified on every execution update and after every gap reconciliation.
    pub fn updates(&self) -> Arc<Notify> {
        self.shared.updates.clone()
    }

    pub fn stats(&self) -> WsStats {
        *self.shared.stats.lock()
    }

    /// Stops the connection task (at shutdown).
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Closing the outgoing channel ends the session loop.
        *self.shared.out.lock() = None;
    }

    /// Drops the current connection (as a network fault would); the task reconnects.
    pub fn drop_connection(&self) {
        *self.shared.out.lock() = None;
    }

    async fn call(&self, method: &str, params: String) -> Result<Value, CallFailure> {
        let id = self.shared.req_id.fetch_add(1, Ordering::SeqCst);
        let frame = format!(r#"{{"method":{},"params":{params},"req_id":{id}}}"#, json!(method));
        let (tx, rx) = oneshot::channel();
        self.shared.pending.lock().insert(id, tx);
        let sent = match self.shared.out.lock().as_ref() {
            Some(out) => out.send(frame).is_ok(),
            None => false,
        };
        if !sent {
            self.shared.pending.lock().remove(&id);
            return Err(CallFailure::NotSent);
        }
        match tokio::time::timeout(self.shared.config.reply_timeout, rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(CallFailure::NoReply(format!(
                "{method} over WebSocket: the connection closed before the reply"
            ))),
            Err(_) => {
                self.shared.pending.lock().remove(&id);
                Err(CallFailure::NoReply(format!(
                    "{method} over WebSocket: no reply within {} ms",
                    self.shared.config.reply_timeout.as_millis()
                )))
            }
        }
    }

    fn token(&self) -> Option<String> {
        self.shared.token.lock().as_ref().map(|(t, _)| t.clone())
    }
}

/// The `add_order` params for `p` (numbers as plain decimals, never floats), or `None` when the
/// socket cannot carry the order (leverage, validate-only): then REST places it.
fn add_order_params(p: &AddOrderParams, symbol: &str, token: &str) -> Option<String> {
    if p.validate || p.leverage.is_some_and(|l| l > 1) {
        return None;
    }
    let num = |d: Decimal| format_decimal(d);
    let mut f: Vec<String> = vec![
        format!(r#""order_type":{}"#, json!(p.order_type.as_str())),
        format!(r#""side":{}"#, json!(p.side.as_str())),
        format!(r#""order_qty":{}"#, num(p.volume)),
        format!(r#""symbol":{}"#, json!(symbol)),
    ];
    match p.order_type {
        OrderType::Market => {}
        OrderType::Limit => f.push(format!(r#""limit_price":{}"#, num(p.price?))),
        OrderType::StopLoss | OrderType::TakeProfit => f.push(format!(
            r#""triggers":{{"reference":"last","price":{},"price_type":"static"}}"#,
            num(p.price?)
        )),
        OrderType::StopLossLimit | OrderType::TakeProfitLimit => {
            f.push(format!(
                r#""triggers":{{"reference":"last","price":{},"price_type":"static"}}"#,
                num(p.price?)
            ));
            f.push(format!(r#""limit_price":{}"#, num(p.price2?)));
        }
    }
    if p.reduce_only {
        f.push(r#""reduce_only":true"#.to_owned());
    }
    if p.post_only {
        f.push(r#""post_only":true"#.to_owned());
    }
    if let Some(c) = &p.cl_ord_id {
        f.push(format!(r#""cl_ord_id":{}"#, json!(c)));
    }
    f.push(format!(r#""token":{}"#, json!(token)));
    Some(format!("{{{}}}", f.join(",")))
}

fn reply_error(v: &Value) -> Option<String> {
    if v.get("success").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    Some(match v.get("error") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "EGeneral:Internal error (no error text in the reply)".to_owned(),
    })
}

async fn run(shared: Arc<Shared>) {
    let mut backoff = shared.config.reconnect_min;
    while !shared.stopping.load(Ordering::SeqCst) {
        let started = Instant::now();
        let res = session(&shared).await;
        went_down(&shared);
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        match res {
            Ok(()) => tracing::warn!("Kraken WebSocket closed; reconnecting"),
            Err(e) => tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64,
                "Kraken WebSocket down; REST answers until it is back"),
        }
        // A connection that lived a while resets the back-off.
        if started.elapsed() > Duration::from_secs(30) {
            backoff = shared.config.reconnect_min;
        }
        tokio::time::sleep(backoff).await;
        backoff = backoff.saturating_mul(2).min(shared.config.reconnect_max);
    }
}

fn went_down(shared: &Shared) {
    let was_up = shared.up.swap(false, Ordering::SeqCst);
    *shared.out.lock() = None;
    // Waiting callers get "connection closed before the reply": outcome unknown.
    shared.pending.lock().clear();
    let mut c = shared.cache.lock();
    c.synced = false;
    if was_up || c.down_since.is_none() {
        c.down_since = Some(Utc::now());
    }
    drop(c);
    // Trackers should look again (over REST now) — once per outage, not per failed reconnect:
    // while down they poll REST at their own pace.
    if was_up {
        shared.updates.notify_one();
    }
}

async fn session(shared: &Arc<Shared>) -> Result<(), String> {
    let cached = shared
        .token
        .lock()
        .as_ref()
        .filter(|(_, at)| at.elapsed() < Duration::from_secs(600))
        .map(|(t, _)| t.clone());
    let token = match cached {
        Some(t) => t,
        None => {
            let t = shared
                .rest
                .client()
                .websockets_token()
                .await
                .map_err(|e| format!("GetWebSocketsToken: {e}"))?;
            *shared.token.lock() = Some((t.clone(), Instant::now()));
            t
        }
    };
    let (stream, _) = tokio::time::timeout(
        shared.config.connect_timeout,
        tokio_tungstenite::connect_async(shared.config.private_url.as_str()),
    )
    .await
    .map_err(|_| format!("connecting to {} timed out", shared.config.private_url))?
    .map_err(|e| format!("connecting to {}: {e}", shared.config.private_url))?;
    shared.stats.lock().connects += 1;
    let (mut sink, mut source) = stream.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    *shared.out.lock() = Some(tx);
    let sub = json!({"method": "subscribe", "params": {"channel": "executions", "token": token,
        "snap_orders": true, "snap_trades": false, "order_status": true}, "req_id": 0});
    sink.send(Message::text(sub.to_string()))
        .await
        .map_err(|e| format!("subscribing to executions: {e}"))?;
    let mut ping = tokio::time::interval(shared.config.ping_every);
    ping.tick().await;
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(frame) => sink.send(Message::text(frame)).await.map_err(|e| format!("sending: {e}"))?,
                None => {
                    let _ = sink.close().await;
                    return Ok(());
                }
            },
            _ = ping.tick() => {
                let id = shared.req_id.fetch_add(1, Ordering::SeqCst);
                sink.send(Message::text(json!({"method": "ping", "req_id": id}).to_string()))
                    .await
                    .map_err(|e| format!("ping: {e}"))?;
            }
            frame = tokio::time::timeout(shared.config.heartbeat_timeout, source.next()) => {
                let msg = match frame {
                    Err(_) => return Err(format!("no frame for {} ms (heartbeat lost)", shared.config.heartbeat_timeout.as_millis())),
                    Ok(None) => return Ok(()),
                    Ok(Some(Err(e))) => return Err(format!("reading: {e}")),
                    Ok(Some(Ok(m))) => m,
                };
                match msg {
                    Message::Text(t) => on_frame(shared, t.as_str()),
                    Message::Close(_) => return Ok(()),
                    _ => {}
                }
            }
        }
    }
}

fn on_frame(shared: &Arc<Shared>, text: &str) {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        tracing::warn!(frame = %text.chars().take(200).collect::<String>(), "unparsable Kraken WebSocket frame");
        return;
    };
    if let Some(method) = v.get("method").and_then(Value::as_str) {
        if method == "subscribe" {
            if let Some(e) = reply_error(&v) {
                tracing::error!(error = %e, "Kraken refused the executions subscription; new token, reconnecting");
                // A fresh token on the next connection; this one ends now.
                *shared.token.lock() = None;
                *shared.out.lock() = None;
            }
            return;
        }
        if let Some(id) = v.get("req_id").and_then(Value::as_u64) {
            let waiting = shared.pending.lock().remove(&id);
            match waiting {
                Some(tx) => {
                    let _ = tx.send(v);
                }
                // A reply after its caller gave up (the outcome was reported unknown): trackers
                // look again now rather than at their next poll.
                None if matches!(method, "add_order" | "cancel_order") => {
                    tracing::warn!(method, req_id = id, reply = %v, "late Kraken WebSocket reply; waking the trackers");
                    shared.updates.notify_one();
                }
                None => {}
            }
        }
        return;
    }
    if v.get("channel").and_then(Value::as_str) != Some("executions") {
        return; // heartbeat, status: liveness only
    }
    let data = v.get("data").and_then(Value::as_array).cloned().unwrap_or_default();
    let snapshot = v.get("type").and_then(Value::as_str) == Some("snapshot");
    shared.stats.lock().execution_messages += 1;
    if snapshot {
        let mut c = shared.cache.lock();
        let in_snapshot: HashSet<&str> = data
            .iter()
            .filter_map(|e| e.get("order_id").and_then(Value::as_str))
            .collect();
        // An order we thought working but absent from the snapshot of open orders changed while
        // we were away: only REST knows how.
        for o in c.orders.values_mut() {
            if !o.status.is_terminal() && !in_snapshot.contains(o.order_id.as_str()) {
                o.stale = true;
            }
        }
        for e in &data {
            c.apply(e);
        }
        c.prune();
        drop(c);
        shared.up.store(true, Ordering::SeqCst);
        tokio::spawn(reconcile_gap(shared.clone()));
        return;
    }
    let mut c = shared.cache.lock();
    let mut any = false;
    for e in &data {
        any |= c.apply(e);
    }
    if any {
        c.balances = None;
    }
    drop(c);
    if any {
        shared.updates.notify_one();
    }
}

/// After (re)subscribing: REST for every order the cache knows as not final (the stale ones
/// above all) and for the orders closed since the connection went down, then the cache is
/// trusted again and trackers are woken.
async fn reconcile_gap(shared: Arc<Shared>) {
    loop {
        if reconcile_once(&shared).await {
            break;
        }
        // Stay unsynced (REST answers); try again shortly while the socket is up.
        tokio::time::sleep(Duration::from_secs(5)).await;
        if !shared.up.load(Ordering::SeqCst) || shared.cache.lock().synced {
            break;
        }
    }
}

async fn reconcile_once(shared: &Arc<Shared>) -> bool {
    let (refs, since) = {
        let c = shared.cache.lock();
        let refs: Vec<OrderRef> = c
            .orders
            .values()
            .filter(|o| o.stale || !o.status.is_terminal())
            .map(|o| OrderRef::Exchange(o.order_id.clone()))
            .collect();
        (refs, c.down_since)
    };
    let registry = shared.rest.registry();
    let mut found: Vec<ExchangeOrder> = Vec::new();
    let mut ok = true;
    if !refs.is_empty() {
        match shared.rest.query_orders(refs).await {
            Ok(v) => found.extend(v),
            Err(e) => {
                ok = false;
                tracing::warn!(error = %e, "gap reconciliation: QueryOrders failed");
            }
        }
    }
    if let Some(since) = since {
        let start = since.timestamp() - 60;
        match shared.rest.client().closed_orders(None, Some(start)).await {
            Ok(m) => found.extend(
                m.iter()
                    .filter_map(|(t, o)| super::exchange::to_exchange_order(t, o, &registry)),
            ),
            Err(e) => {
                ok = false;
                tracing::warn!(error = %e, "gap reconciliation: ClosedOrders failed");
            }
        }
    }
    {
        let mut c = shared.cache.lock();
        for o in &found {
            c.absorb(o);
        }
        if ok {
            c.synced = true;
            c.last_rest = Some(Instant::now());
            c.down_since = None;
        }
    }
    shared.stats.lock().gap_reconciliations += 1;
    tracing::info!(
        orders = found.len(),
        complete = ok,
        "Kraken WebSocket gap reconciled over REST"
    );
    shared.updates.notify_one();
    ok
}

#[cfg(test)]
mod tests;
