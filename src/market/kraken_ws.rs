//! Kraken public market data over WebSocket API v2 (`ohlc` at 1 minute, `ticker`), with the
//! public REST poller ([`KrakenPublicFeed`]) as the fallback while the socket is down.
//!
//! `ohlc` updates arrive on trades and carry the candle still forming; there is no "closed"
//! message: a new `interval_begin` for a symbol means its previous candle is final, and that one
//! is emitted. Candles are emitted once per symbol and minute across socket and REST (the newest
//! emitted open time per symbol filters both).

use super::kraken_public::KrakenPublicFeed;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use triplegain_actors::domain::{Candle, Symbol, Timeframe};
use triplegain_actors::ports::{FeedError, FeedItem, MarketFeed};

/// The last `ticker` values of a symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsTicker {
    pub last: Decimal,
    pub bid: Decimal,
    pub ask: Decimal,
}

#[derive(Default)]
struct FeedShared {
    up: AtomicBool,
    tickers: Mutex<BTreeMap<Symbol, WsTicker>>,
}

/// Closed 1-minute candles from the public WebSocket, REST while it is down.
pub struct KrakenWsFeed {
    url: String,
    symbols: Vec<Symbol>,
    rest: KrakenPublicFeed,
    rx: Option<mpsc::UnboundedReceiver<Candle>>,
    shared: Arc<FeedShared>,
    newest: HashMap<Symbol, DateTime<Utc>>,
    /// With the socket up and nothing closing, `next` answers `Idle` after this long.
    idle_after: Duration,
}

impl KrakenWsFeed {
    /// A feed on `url` (e.g. `wss://ws.kraken.com/v2`) falling back to `rest`.
    pub fn new(url: &str, symbols: Vec<Symbol>, rest: KrakenPublicFeed) -> Self {
        Self {
            url: url.to_owned(),
            symbols,
            rest,
            rx: None,
            shared: Arc::new(FeedShared::default()),
            newest: HashMap::new(),
            idle_after: Duration::from_secs(10),
        }
    }

    #[must_use]
    pub fn with_idle_after(mut self, d: Duration) -> Self {
        self.idle_after = d;
        self
    }

    /// Whether the socket is subscribed (else `next` polls REST).
    pub fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::SeqCst)
    }

    /// Last, bid and ask per symbol from the `ticker` channel.
    pub fn tickers(&self) -> BTreeMap<Symbol, WsTicker> {
        self.shared.tickers.lock().clone()
    }

    /// Starts the socket task (the first `next` does it too).
    pub fn start(&mut self) {
        if self.rx.is_some() {
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        self.rx = Some(rx);
        tokio::spawn(run(self.url.clone(), self.symbols.clone(), self.shared.clone(), tx));
    }

    /// Keeps the candles newer than the newest emitted for their symbol.
    fn fresh(&mut self, candles: Vec<Candle>) -> Vec<Candle> {
        let mut out = Vec::new();
        for c in candles {
            if self.newest.get(&c.symbol).is_some_and(|n| c.open_time <= *n) {
                continue;
            }
            self.newest.insert(c.symbol.clone(), c.open_time);
            out.push(c);
        }
        out
    }

    async fn next_item(&mut self) -> Result<FeedItem, FeedError> {
        self.start();
        if !self.is_up() {
            // Give a fresh connection a moment before falling back.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if self.is_up() {
            let mut got = Vec::new();
            if let Some(rx) = self.rx.as_mut() {
                if let Ok(Some(c)) = tokio::time::timeout(self.idle_after, rx.recv()).await {
                    got.push(c);
                    while let Ok(c) = rx.try_recv() {
                        got.push(c);
                    }
                }
            }
            got.sort_by_key(|c| c.open_time);
            let fresh = self.fresh(got);
            return Ok(if fresh.is_empty() {
                FeedItem::Idle
            } else {
                FeedItem::Candles(fresh)
            });
        }
        let item = self.rest.next().await?;
        Ok(match item {
            FeedItem::Candles(c) => {
                let fresh = self.fresh(c);
                if fresh.is_empty() {
                    FeedItem::Idle
                } else {
                    FeedItem::Candles(fresh)
                }
            }
            other => other,
        })
    }
}

impl MarketFeed for KrakenWsFeed {
    fn symbols(&self) -> Vec<Symbol> {
        self.symbols.clone()
    }

    fn next(&mut self) -> BoxFuture<'_, Result<FeedItem, FeedError>> {
        Box::pin(self.next_item())
    }
}

fn dec(v: &Value, k: &str) -> Option<Decimal> {
    v.get(k).and_then(crate::kraken::assets::parse_decimal)
}

/// One `ohlc` entry as a candle (`interval_begin` is its open time).
fn ohlc_candle(e: &Value) -> Option<Candle> {
    let symbol = Symbol::parse(e.get("symbol")?.as_str()?).ok()?;
    let begin = DateTime::parse_from_rfc3339(e.get("interval_begin")?.as_str()?)
        .ok()?
        .with_timezone(&Utc);
    Some(Candle {
        symbol,
        timeframe: Timeframe::M1,
        open_time: begin,
        open: dec(e, "open")?,
        high: dec(e, "high")?,
        low: dec(e, "low")?,
        close: dec(e, "close")?,
        volume: dec(e, "volume").unwrap_or(Decimal::ZERO),
    })
}

async fn run(url: String, symbols: Vec<Symbol>, shared: Arc<FeedShared>, tx: mpsc::UnboundedSender<Candle>) {
    let mut backoff = Duration::from_millis(500);
    let mut forming: HashMap<Symbol, Candle> = HashMap::new();
    loop {
        if tx.is_closed() {
            return;
        }
        match session(&url, &symbols, &shared, &tx, &mut forming).await {
            Ok(()) => backoff = Duration::from_millis(500),
            Err(e) => tracing::warn!(error = %e, "Kraken public WebSocket down; OHLC over REST meanwhile"),
        }
        shared.up.store(false, Ordering::SeqCst);
        tokio::time::sleep(backoff).await;
        backoff = backoff.saturating_mul(2).min(Duration::from_secs(30));
    }
}

async fn session(
    url: &str,
    symbols: &[Symbol],
    shared: &FeedShared,
    tx: &mpsc::UnboundedSender<Candle>,
    forming: &mut HashMap<Symbol, Candle>,
) -> Result<(), String> {
    let (stream, _) = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(url))
        .await
        .map_err(|_| format!("connecting to {url} timed out"))?
        .map_err(|e| format!("connecting to {url}: {e}"))?;
    let (mut sink, mut source) = stream.split();
    let names: Vec<&str> = symbols.iter().map(Symbol::as_str).collect();
    for (i, params) in [
        json!({"channel": "ohlc", "symbol": names, "interval": 1, "snapshot": false}),
        json!({"channel": "ticker", "symbol": names}),
    ]
    .into_iter()
    .enumerate()
    {
        let frame = json!({"method": "subscribe", "params": params, "req_id": i + 1});
        sink.send(Message::text(frame.to_string()))
            .await
            .map_err(|e| format!("subscribing: {e}"))?;
    }
    loop {
        let msg = match tokio::time::timeout(Duration::from_secs(10), source.next()).await {
            Err(_) => return Err("no frame for 10 s (heartbeat lost)".into()),
            Ok(None) | Ok(Some(Ok(Message::Close(_)))) => return Ok(()),
            Ok(Some(Err(e))) => return Err(format!("reading: {e}")),
            Ok(Some(Ok(m))) => m,
        };
        let Message::Text(text) = msg else { continue };
        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        if v.get("method").and_then(Value::as_str) == Some("subscribe") {
            if v.get("success").and_then(Value::as_bool) == Some(true) {
                if v.pointer("/result/channel").and_then(Value::as_str) == Some("ohlc") {
                    shared.up.store(true, Ordering::SeqCst);
                }
            } else {
                return Err(format!("subscription refused: {v}"));
            }
            continue;
        }
        let data = v.get("data").and_then(Value::as_array).cloned().unwrap_or_default();
        match v.get("channel").and_then(Value::as_str) {
            Some("ohlc") => {
                for e in &data {
                    let Some(c) = ohlc_candle(e) else { continue };
                    match forming.get(&c.symbol) {
                        Some(prev) if c.open_time > prev.open_time => {
                            if tx.send(prev.clone()).is_err() {
                                return Ok(());
                            }
                            forming.insert(c.symbol.clone(), c);
                        }
                        Some(prev) if c.open_time < prev.open_time => {}
                        _ => {
                            forming.insert(c.symbol.clone(), c);
                        }
                    }
                }
            }
            Some("ticker") => {
                let mut t = shared.tickers.lock();
                for e in &data {
                    let Some(symbol) = e
                        .get("symbol")
                        .and_then(Value::as_str)
                        .and_then(|s| Symbol::parse(s).ok())
                    else {
                        continue;
                    };
                    if let (Some(last), Some(bid), Some(ask)) = (dec(e, "last"), dec(e, "bid"), dec(e, "ask")) {
                        t.insert(symbol, WsTicker { last, bid, ask });
                    }
                }
            }
            _ => {}
        }
    }
}
